//! The flood: many client addresses hammering the public shim at its rate
//! limit with forged callbacks and authorize requests, while gRPC callers
//! work. What it shows: how much of the gRPC throughput survives, and that
//! the forged callbacks caused no database write.
//!
//! Each flooding address sends at the shim's per-address limit (the server
//! trusts `X-Forwarded-For` from 127.0.0.1 here, so one process can be many
//! addresses), half forged callbacks (a state of the right shape with a
//! wrong MAC, a random cookie or none) and half authorize requests (which
//! set a cookie and write nothing). The flood is paced, so its own cost on
//! the shared cores is the same in every run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::processes::OFFICIAL;

/// Flooding client addresses.
pub(crate) const ADDRESSES: u32 = 20;
/// Requests a second per address: the shim's default limit.
pub(crate) const PER_ADDRESS: u32 = 50;

/// What the flood got back, by HTTP status.
#[derive(Debug, Clone, Default)]
pub(crate) struct FloodReport {
    /// Responses by status code (0: no response).
    pub(crate) statuses: BTreeMap<u16, u64>,
}

impl FloodReport {
    /// Requests sent.
    pub(crate) fn sent(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// `302: n, 400: n, ...`.
    pub(crate) fn summary(&self) -> String {
        self.statuses
            .iter()
            .map(|(status, n)| {
                let status = if *status == 0 {
                    "no answer".to_owned()
                } else {
                    status.to_string()
                };
                format!("{status}: {n}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A running flood; [`Flood::stop`] ends it and says what came back.
pub(crate) struct Flood {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    report: Arc<Mutex<FloodReport>>,
}

impl Flood {
    /// Starts flooding the shim at `http` (`http://127.0.0.1:PORT`).
    pub(crate) fn start(http: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let report = Arc::new(Mutex::new(FloodReport::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for address in 0..ADDRESSES {
            let (client, report, mut stopped) = (client.clone(), report.clone(), stopped.clone());
            let http = http.to_owned();
            tasks.spawn(async move {
                let forwarded_for = format!("198.18.{}.{}", address / 250, address % 250 + 1);
                let mut tick = tokio::time::interval(Duration::from_secs(1) / PER_ADDRESS);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut in_flight = tokio::task::JoinSet::new();
                for n in 0u64.. {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.changed() => break,
                    }
                    let request = forged_request(&client, &http, address, n)
                        .header("x-forwarded-for", &forwarded_for);
                    let report = report.clone();
                    in_flight.spawn(async move {
                        let status = request.send().await.map_or(0, |r| r.status().as_u16());
                        if let Ok(mut report) = report.lock() {
                            *report.statuses.entry(status).or_default() += 1;
                        }
                    });
                    while in_flight.try_join_next().is_some() {}
                }
                while in_flight.join_next().await.is_some() {}
            });
        }
        Ok(Self {
            stop,
            tasks,
            report,
        })
    }

    /// Stops the flood, waits for its last answers, and reports them.
    pub(crate) async fn stop(mut self) -> FloodReport {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.report
            .lock()
            .map(|report| report.clone())
            .unwrap_or_default()
    }
}

/// The `n`-th request of flooding `address`: a forged callback or an
/// authorize request, alternately.
fn forged_request(
    client: &reqwest::Client,
    http: &str,
    address: u32,
    n: u64,
) -> reqwest::RequestBuilder {
    if n.is_multiple_of(2) {
        let return_to = "https%3A%2F%2Fapp.example%2Fcb";
        return client.get(format!(
            "{http}/oauth/{OFFICIAL}/authorize?return_to={return_to}&scope=snsapi_userinfo"
        ));
    }
    let noise = uuid::Uuid::now_v7().simple().to_string();
    // The shape of a real state (version, id, expiry, MAC), far in the future.
    let state = format!("1{noise}4102444800{noise}");
    let request = client.get(format!(
        "{http}/oauth/{OFFICIAL}/callback?code=forged{address}x{n}&state={state}"
    ));
    if n % 4 == 1 {
        request.header("cookie", format!("wxid-login={noise}{noise}"))
    } else {
        request
    }
}

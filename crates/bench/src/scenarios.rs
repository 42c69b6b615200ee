//! The scenarios: what each stream sends, and what it prepares before the
//! clock starts (logins for tokens, codes minted in bulk from the simulator).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use server::pb::get_profile_request::Lookup;
use server::pb::identity_service_client::IdentityServiceClient;
use server::pb::{
    GetPhoneNumberRequest, GetProfileRequest, MiniProgramLoginRequest, RefreshTokenRequest,
    VerifyTokenRequest,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::echo::pb::EchoMessage;
use crate::echo::pb::echo_client::EchoClient;
use crate::load::{Measured, run};
use crate::processes::{CALLER_KEY, MINI};

/// What a scenario sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// The baseline's echo.
    Echo,
    /// VerifyToken of a live token: a JWT check and one session read.
    VerifyToken,
    /// GetProfile by user_id: one read.
    GetProfile,
    /// MiniProgramLogin: one WeChat call, an upsert, a session.
    MiniProgramLogin,
    /// RefreshToken: one rotation per call, each stream its own session.
    RefreshToken,
    /// GetPhoneNumber with the app token cached: one WeChat call.
    GetPhoneNumber,
    /// 90% VerifyToken and GetProfile, 10% MiniProgramLogin.
    Mixed,
}

impl Scenario {
    /// Every scenario against wechat-identity, in report order.
    pub(crate) const IDENTITY: [Scenario; 6] = [
        Scenario::VerifyToken,
        Scenario::GetProfile,
        Scenario::MiniProgramLogin,
        Scenario::RefreshToken,
        Scenario::GetPhoneNumber,
        Scenario::Mixed,
    ];

    /// Its name in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Echo => "echo (baseline)",
            Scenario::VerifyToken => "VerifyToken",
            Scenario::GetProfile => "GetProfile",
            Scenario::MiniProgramLogin => "MiniProgramLogin",
            Scenario::RefreshToken => "RefreshToken",
            Scenario::GetPhoneNumber => "GetPhoneNumber",
            Scenario::Mixed => "mixed 90/10",
        }
    }

    /// Whether each call spends a WeChat code minted beforehand.
    fn codes_per_call(self) -> Option<&'static str> {
        match self {
            Scenario::MiniProgramLogin | Scenario::Mixed => Some("login-code"),
            Scenario::GetPhoneNumber => Some("phone-code"),
            _ => None,
        }
    }
}

/// How hard and how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Concurrent streams.
    pub(crate) streams: usize,
    /// Unmeasured time before the clock starts.
    pub(crate) warmup: Duration,
    /// Measured time.
    pub(crate) duration: Duration,
    /// Calls per second over all streams; `None`: closed loop, as fast as
    /// answers come.
    pub(crate) pace: Option<f64>,
    /// The most calls a stream can make that spend a code (codes are minted
    /// before the run; a stream that runs out stops).
    pub(crate) codes_per_stream: usize,
}

type Client = IdentityServiceClient<InterceptedService<Channel, Bearer>>;

#[derive(Debug, Clone)]
struct Bearer(tonic::metadata::AsciiMetadataValue);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A channel per stream pair: HTTP/2 multiplexes, and a few connections
/// spread the load over the server's workers as real callers would.
async fn channels(url: &str, count: usize) -> Result<Vec<Channel>, String> {
    let mut all = Vec::new();
    for _ in 0..count {
        all.push(
            tonic::transport::Endpoint::from_shared(url.to_owned())
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(all)
}

fn client(channel: Channel) -> Result<Client, String> {
    let value = format!("Bearer {CALLER_KEY}")
        .parse()
        .map_err(|_| "caller key is not ASCII".to_owned())?;
    Ok(IdentityServiceClient::with_interceptor(
        channel,
        Bearer(value),
    ))
}

/// `count` fresh codes of `kind` for `user`, from the simulator's control API.
async fn mint(sim: &str, kind: &str, user: &str, count: usize) -> Result<Vec<String>, String> {
    let url = format!(
        "{sim}/sim/{kind}?app_id={MINI}&user={user}&count={}",
        count.max(2)
    );
    let body: serde_json::Value = reqwest::get(&url)
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(body["codes"]
        .as_array()
        .ok_or("no codes")?
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect())
}

/// A stream's own session: its user and tokens (refreshed in place).
#[derive(Debug)]
struct StreamState {
    user_id: String,
    access_token: String,
    refresh_token: Mutex<String>,
    codes: Mutex<Vec<String>>,
}

/// Runs `scenario` against the server at `url` (with its simulator at `sim`).
///
/// # Errors
/// The preparation failed (no connection, no codes, a login refused).
pub(crate) async fn measure(
    scenario: Scenario,
    url: &str,
    sim: &str,
    load: Load,
) -> Result<Measured, String> {
    let connections = load.streams.div_ceil(8).clamp(1, 8);
    let channels = channels(url, connections).await?;
    if scenario == Scenario::Echo {
        let clients: Vec<EchoClient<Channel>> = channels.into_iter().map(EchoClient::new).collect();
        let clients = Arc::new(clients);
        return Ok(run(
            load.streams,
            load.warmup,
            load.duration,
            load.pace,
            move |stream, _| {
                let mut client = clients[stream % clients.len()].clone();
                async move {
                    Some(
                        client
                            .echo(EchoMessage {
                                text: "ping".into(),
                            })
                            .await
                            .map(|_| ())
                            .map_err(|status| status.code()),
                    )
                }
            },
        )
        .await);
    }
    let clients: Vec<Client> = channels.into_iter().map(client).collect::<Result<_, _>>()?;
    let mut states = Vec::new();
    for stream in 0..load.streams {
        let user = format!("bench-{stream}");
        let mut login_client = clients[stream % clients.len()].clone();
        let code = mint(sim, "login-code", &user, 2).await?.remove(0);
        let login = login_client
            .mini_program_login(MiniProgramLoginRequest {
                app_id: MINI.into(),
                code,
            })
            .await
            .map_err(|s| format!("preparing login: {s}"))?
            .into_inner();
        let session = login.session.ok_or("no session")?;
        let codes = match scenario.codes_per_call() {
            Some(kind) => mint(sim, kind, &user, load.codes_per_stream).await?,
            None => Vec::new(),
        };
        states.push(StreamState {
            user_id: login.user_id,
            access_token: session.access_token,
            refresh_token: Mutex::new(session.refresh_token),
            codes: Mutex::new(codes),
        });
    }
    let states = Arc::new(states);
    let clients = Arc::new(clients);
    Ok(run(
        load.streams,
        load.warmup,
        load.duration,
        load.pace,
        move |stream, n| {
            let mut client = clients[stream % clients.len()].clone();
            let states = states.clone();
            async move { one_call(scenario, &mut client, &states[stream], n).await }
        },
    )
    .await)
}

/// One call; `None` when the stream has no minted code left.
async fn one_call(
    scenario: Scenario,
    client: &mut Client,
    state: &StreamState,
    n: u64,
) -> Option<Result<(), tonic::Code>> {
    let needs_code = match scenario {
        Scenario::MiniProgramLogin | Scenario::GetPhoneNumber => true,
        Scenario::Mixed => n.is_multiple_of(10),
        _ => false,
    };
    let code = if needs_code {
        Some(state.codes.lock().ok()?.pop()?)
    } else {
        None
    };
    Some(call_with(scenario, client, state, n, code).await)
}

async fn call_with(
    scenario: Scenario,
    client: &mut Client,
    state: &StreamState,
    n: u64,
    code: Option<String>,
) -> Result<(), tonic::Code> {
    // Each call spends at most one code: login and phone take the one given.
    let next_code = || code.clone();
    let verify = |client: &mut Client| {
        let request = VerifyTokenRequest {
            access_token: state.access_token.clone(),
        };
        let mut client = client.clone();
        async move {
            let answer = client.verify_token(request).await.map_err(|s| s.code())?;
            if answer.into_inner().active {
                Ok(())
            } else {
                Err(tonic::Code::Unauthenticated)
            }
        }
    };
    let profile = |client: &mut Client| {
        let request = GetProfileRequest {
            lookup: Some(Lookup::UserId(state.user_id.clone())),
            refresh_from_wechat: false,
        };
        let mut client = client.clone();
        async move {
            client
                .get_profile(request)
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }
    };
    let login = |client: &mut Client| {
        let code = next_code();
        let mut client = client.clone();
        async move {
            let code = code.ok_or(tonic::Code::ResourceExhausted)?;
            client
                .mini_program_login(MiniProgramLoginRequest {
                    app_id: MINI.into(),
                    code,
                })
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }
    };
    match scenario {
        Scenario::Echo => Err(tonic::Code::Unimplemented),
        Scenario::VerifyToken => verify(client).await,
        Scenario::GetProfile => profile(client).await,
        Scenario::MiniProgramLogin => login(client).await,
        Scenario::RefreshToken => {
            let presented = state
                .refresh_token
                .lock()
                .map_err(|_| tonic::Code::Internal)?
                .clone();
            let answer = client
                .refresh_token(RefreshTokenRequest {
                    refresh_token: presented,
                })
                .await
                .map_err(|s| s.code())?;
            let session = answer.into_inner().session.ok_or(tonic::Code::Internal)?;
            *state
                .refresh_token
                .lock()
                .map_err(|_| tonic::Code::Internal)? = session.refresh_token;
            Ok(())
        }
        Scenario::GetPhoneNumber => {
            let code = next_code().ok_or(tonic::Code::ResourceExhausted)?;
            client
                .get_phone_number(GetPhoneNumberRequest {
                    app_id: MINI.into(),
                    code,
                    user_id: String::new(),
                })
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }
        Scenario::Mixed => match n % 10 {
            0 => login(client).await,
            odd if odd % 2 == 1 => verify(client).await,
            _ => profile(client).await,
        },
    }
}

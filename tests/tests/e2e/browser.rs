//! The web login in a real headless Chromium: the browser opens the shim's
//! authorize URL (which sets the login cookie), follows WeChat's (the
//! simulator's) consent redirect and the callback (which it passes only with
//! that cookie), and lands on a test page at `return_to`, which shows the
//! ticket; the test then redeems that ticket with WebLogin and BindUser. A
//! second Chromium, replaying the first one's callback URL, gets no ticket.
//!
//! Chromium is Debian's `chromium` package, which `.ci/run` installs. Outside
//! CI the tests skip, saying so, when it is absent.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::RawQuery;
use axum::response::Html;
use e2e::web::{authorize_url, param};
use e2e::*;
use server::pb::bind_user_request::{Account, Proof};
use server::pb::{BindUserRequest, WebLoginRequest};
use url::Url;
use wechat_sim::{Consent, Endpoint};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The app's own page at `return_to`: it records every visit and shows the
/// ticket, as an app's login page would before handing it to its backend.
struct Landing {
    url: String,
    visits: Arc<Mutex<Vec<Url>>>,
}

impl Landing {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/landing", listener.local_addr().unwrap());
        let visits = Arc::new(Mutex::new(Vec::new()));
        let (seen, base) = (visits.clone(), url.clone());
        let page = axum::Router::new().route(
            "/landing",
            axum::routing::get(move |RawQuery(query): RawQuery| {
                let seen = seen.clone();
                let base = base.clone();
                async move {
                    let url = Url::parse(&format!("{base}?{}", query.unwrap_or_default())).unwrap();
                    let ticket = param(&url, "ticket").unwrap_or_default();
                    let error = param(&url, "error").unwrap_or_default();
                    seen.lock().unwrap().push(url);
                    Html(format!(
                        "<html><body><p id=\"ticket\">ticket={ticket};</p>\
                         <p id=\"error\">error={error};</p></body></html>"
                    ))
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, page).await.unwrap() });
        Self { url, visits }
    }

    fn visits(&self) -> Vec<Url> {
        self.visits.lock().unwrap().clone()
    }
}

/// Chromium, or `None` outside CI when it is not installed.
fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(CHROMIUM);
    if path.exists() {
        return Some(path);
    }
    assert!(
        !in_ci(),
        "the browser tests need Debian's chromium at {CHROMIUM}"
    );
    eprintln!("skipping a browser test: no {CHROMIUM} (apt-get install chromium)");
    None
}

/// Opens `url` in a fresh headless Chromium (a browser with no cookies) and
/// returns the DOM of the page it ends on, after every redirect.
async fn open_in_browser(chromium: &PathBuf, url: &str) -> String {
    open_in_browser_logged(chromium, url, None).await
}

/// [`open_in_browser`], writing Chromium's own log of every request it made
/// (its NetLog) to `net_log`.
async fn open_in_browser_logged(
    chromium: &PathBuf,
    url: &str,
    net_log: Option<&std::path::Path>,
) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(chromium);
    if let Some(net_log) = net_log {
        command.arg(format!("--log-net-log={}", net_log.display()));
    }
    let run = command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("chromium finished within a minute")
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The value the landing page shows for `name` (`name=value;`).
fn shown(dom: &str, name: &str) -> Option<String> {
    let start = dom.find(&format!("{name}="))? + name.len() + 1;
    let end = start + dom[start..].find(';')?;
    Some(dom[start..end].to_owned()).filter(|value| !value.is_empty())
}

async fn spawn_for(landing: &Landing, backend: Backend) -> Option<TestApp> {
    spawn_with(Options {
        allowed_return_to: vec![landing.url.clone()],
        ..Options::on(backend)
    })
    .await
}

async fn a_browser_logs_in_through_wechat_and_lands_with_a_ticket_that_logs_in_and_binds(
    backend: Backend,
) {
    let Some(chromium) = chromium() else { return };
    let landing = Landing::start().await;
    let Some(app) = spawn_for(&landing, backend).await else {
        return;
    };
    app.sim.set_browser_user("nina");
    let return_to = format!("{}?from=browser", landing.url);
    let authorize = authorize_url(
        &app,
        OFFICIAL,
        &[
            ("return_to", &return_to),
            ("scope", "snsapi_userinfo"),
            ("state", "b1"),
        ],
    );
    let dom = open_in_browser(&chromium, &authorize).await;
    let ticket = shown(&dom, "ticket").unwrap_or_else(|| panic!("no ticket on {dom}"));
    let visits = landing.visits();
    assert_eq!(visits.len(), 1, "{visits:?}");
    assert_eq!(param(&visits[0], "from").as_deref(), Some("browser"));
    assert_eq!(param(&visits[0], "state").as_deref(), Some("b1"));
    assert!(param(&visits[0], "code").is_none());

    let mut client = app.client();
    let login = client
        .web_login(WebLoginRequest {
            ticket: ticket.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.openid, app.sim.openid(OFFICIAL, "nina"));

    // A second browser login of the same person, bound to the company's account.
    let dom = open_in_browser(&chromium, &authorize).await;
    let ticket = shown(&dom, "ticket").unwrap();
    let profile = client
        .bind_user(BindUserRequest {
            account: Some(Account::ExternalId("crm-nina".into())),
            proof: Some(Proof::Ticket(ticket)),
            replace_existing: false,
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(profile.user_id, login.user_id);
    assert_eq!(profile.external_id, "crm-nina");
    assert_eq!(profile.nickname, app.sim.user("nina").nickname);
    app.stop().await;
}

async fn a_browser_is_never_sent_to_a_foreign_return_to_or_past_a_forged_state(backend: Backend) {
    let Some(chromium) = chromium() else { return };
    let landing = Landing::start().await;
    let Some(app) = spawn_for(&landing, backend).await else {
        return;
    };
    let foreign = format!("{}@evil.example", landing.url);
    let dom = open_in_browser(
        &chromium,
        &authorize_url(&app, OFFICIAL, &[("return_to", &foreign)]),
    )
    .await;
    assert!(dom.contains("Sign-in failed"), "{dom}");
    assert!(dom.contains("return_to"), "the page names the field: {dom}");

    let forged = format!(
        "{}/oauth/{OFFICIAL}/callback?code={}&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        app.http_base(),
        app.sim.mint_oauth_code(OFFICIAL, "mallory", "snsapi_base")
    );
    let dom = open_in_browser(&chromium, &forged).await;
    assert!(dom.contains("Sign-in failed"), "{dom}");
    assert!(
        landing.visits().is_empty(),
        "the browser never reached return_to"
    );
    assert_eq!(app.sim.calls(Endpoint::SnsAccessToken), 0);
    app.stop().await;
}

async fn a_browser_that_declines_lands_with_access_denied(backend: Backend) {
    let Some(chromium) = chromium() else { return };
    let landing = Landing::start().await;
    let Some(app) = spawn_for(&landing, backend).await else {
        return;
    };
    app.sim.set_consent(Consent::Deny);
    let dom = open_in_browser(
        &chromium,
        &authorize_url(
            &app,
            OFFICIAL,
            &[
                ("return_to", &landing.url),
                ("scope", "snsapi_userinfo"),
                ("state", "no"),
            ],
        ),
    )
    .await;
    assert_eq!(shown(&dom, "error").as_deref(), Some("access_denied"));
    assert_eq!(shown(&dom, "ticket"), None);
    assert_eq!(param(&landing.visits()[0], "state").as_deref(), Some("no"));
    app.stop().await;
}

async fn a_second_browser_replaying_the_callback_url_gets_no_ticket(backend: Backend) {
    let Some(chromium) = chromium() else { return };
    let landing = Landing::start().await;
    let Some(app) = spawn_for(&landing, backend).await else {
        return;
    };
    app.sim.set_browser_user("otto");
    // The user's browser goes all the way, its login cookie with it.
    let net_log = tempfile::tempdir().unwrap();
    let net_log = net_log.path().join("netlog.json");
    let dom = open_in_browser_logged(
        &chromium,
        &authorize_url(&app, WEBSITE, &[("return_to", &landing.url)]),
        Some(&net_log),
    )
    .await;
    let ticket = shown(&dom, "ticket").unwrap_or_else(|| panic!("no ticket on {dom}"));
    // The callback URL it went through, as a proxy log or its history would show it.
    let callback = callback_url_in(&std::fs::read_to_string(&net_log).unwrap(), &app)
        .unwrap_or_else(|| panic!("no callback URL in Chromium's log"));
    assert!(param(&Url::parse(&callback).unwrap(), "code").is_some());

    // Another browser replays it.
    let replayed = open_in_browser(&chromium, &callback).await;
    assert!(replayed.contains("Sign-in failed"), "{replayed}");
    assert!(replayed.contains("login_session_mismatch"), "{replayed}");
    assert_eq!(shown(&replayed, "ticket"), None);
    assert_eq!(landing.visits().len(), 1, "only the user's browser landed");

    let login = app
        .client()
        .web_login(WebLoginRequest { ticket })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(login.openid, app.sim.openid(WEBSITE, "otto"));
    assert_eq!(app.sim.calls(Endpoint::SnsAccessToken), 1);
    app.stop().await;
}

/// The first URL of the app's callback route in a Chromium NetLog.
fn callback_url_in(net_log: &str, app: &TestApp) -> Option<String> {
    let prefix = format!("{}/oauth/", app.http_base());
    let mut rest = net_log;
    while let Some(start) = rest.find(&prefix) {
        let candidate = &rest[start..];
        let end = candidate.find('"')?;
        let url = &candidate[..end];
        if url.contains("/callback?") {
            return Some(url.to_owned());
        }
        rest = &candidate[end..];
    }
    None
}

on_both_backends!(
    a_browser_logs_in_through_wechat_and_lands_with_a_ticket_that_logs_in_and_binds,
    a_browser_is_never_sent_to_a_foreign_return_to_or_past_a_forged_state,
    a_browser_that_declines_lands_with_access_denied,
    a_second_browser_replaying_the_callback_url_gets_no_ticket,
);

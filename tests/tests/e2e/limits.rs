//! Deadlines and load: a caller's deadline bounds the WeChat call and stops
//! retries, and a few hundred concurrent calls on one replica are served,
//! not shed. The public shim limits each client address on `/oauth/*`
//! (believing `X-Forwarded-For` only from trusted proxies) and cuts off a
//! client that trickles its headers.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::web::{authorize_url, get};
use e2e::*;
use server::pb::{MiniProgramLoginRequest, VerifyTokenRequest};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use wechat_sim::{Endpoint, Fault};

async fn a_callers_deadline_bounds_the_wechat_call_and_no_retry_starts_after_it(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    app.sim
        .inject(Endpoint::JsCode2Session, Fault::Delay { millis: 3_000 }, 3);
    let code = app.sim.mint_login_code(MINI, "tess");
    let mut request = tonic::Request::new(MiniProgramLoginRequest {
        app_id: MINI.into(),
        code: code.clone(),
    });
    request.set_timeout(Duration::from_millis(400));
    let started = Instant::now();
    let status = client.mini_program_login(request).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some("DEADLINE_EXCEEDED"));
    assert!(
        took < Duration::from_millis(2_000),
        "answered at the deadline, took {took:?}"
    );
    assert_eq!(
        app.sim.calls(Endpoint::JsCode2Session),
        1,
        "no retry after the deadline"
    );
    // WeChat may have spent the code: the same code is not sent again.
    let retry = client
        .mini_program_login(MiniProgramLoginRequest {
            app_id: MINI.into(),
            code,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&retry).as_deref(), Some("WECHAT_UNAVAILABLE"));
    assert_eq!(app.sim.calls(Endpoint::JsCode2Session), 1);
    app.stop().await;
}

async fn a_few_hundred_concurrent_calls_are_all_served(backend: Backend) {
    let app = spawn!(backend);
    let mut calls = tokio::task::JoinSet::new();
    for index in 0..300 {
        let mut client = app.client();
        let code =
            (index % 3 == 0).then(|| app.sim.mint_login_code(MINI, &format!("crowd-{index}")));
        calls.spawn(async move {
            match code {
                Some(code) => client
                    .mini_program_login(MiniProgramLoginRequest {
                        app_id: MINI.into(),
                        code,
                    })
                    .await
                    .map(|_| ()),
                None => client
                    .verify_token(VerifyTokenRequest {
                        access_token: "x".into(),
                    })
                    .await
                    .map(|_| ()),
            }
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = calls.join_next().await {
        if let Err(status) = done.unwrap() {
            failures.push(status.code());
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(
        app.sim.calls(Endpoint::JsCode2Session),
        100,
        "one WeChat call per login"
    );
    app.stop().await;
}

/// The shim with a rate limit of 5 requests at once, then 1 a second.
async fn spawn_limited(
    backend: Backend,
    trusted_proxies: &'static [&'static str],
) -> Option<TestApp> {
    spawn_with(Options::on(backend).configure(move |config| {
        let server = &mut config.config.server;
        server.oauth_rate_limit.per_second = 1;
        server.oauth_rate_limit.burst = 5;
        server.trusted_proxies = trusted_proxies.iter().map(|p| (*p).to_owned()).collect();
    }))
    .await
}

/// The status of an authorize request from a client that says it is `forwarded_for`.
async fn authorize_as(app: &TestApp, forwarded_for: &str) -> u16 {
    let url = authorize_url(app, OFFICIAL, &[("return_to", RETURN_TO)]);
    app.http
        .get(url)
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn the_shim_limits_each_client_address_and_believes_forwarded_for_only_from_its_proxies(
    backend: Backend,
) {
    let Some(app) = spawn_limited(backend, &["127.0.0.1"]).await else {
        return;
    };
    for _ in 0..5 {
        assert_eq!(authorize_as(&app, "198.51.100.1").await, 302);
    }
    assert_eq!(authorize_as(&app, "198.51.100.1").await, 429);
    let page = get(
        &app,
        &authorize_url(&app, OFFICIAL, &[("return_to", RETURN_TO)]),
    )
    .await;
    assert_eq!(
        page.status.as_u16(),
        302,
        "the proxy's own address is another client"
    );
    assert_eq!(
        authorize_as(&app, "198.51.100.2").await,
        302,
        "behind a trusted proxy, each client has its own budget"
    );
    assert_eq!(
        authorize_as(&app, "6.6.6.6, 198.51.100.1").await,
        429,
        "what the client wrote left of its address changes nothing"
    );
    let health = app
        .http
        .get(format!("{}/healthz", app.http_base()))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "only /oauth/* is limited");
    app.stop().await;

    // Without a trusted proxy, the header is the client's own claim: ignored.
    let Some(app) = spawn_limited(backend, &[]).await else {
        return;
    };
    for n in 0..5 {
        assert_eq!(authorize_as(&app, &format!("203.0.113.{n}")).await, 302);
    }
    let refused = app
        .http
        .get(authorize_url(&app, OFFICIAL, &[("return_to", RETURN_TO)]))
        .header("x-forwarded-for", "203.0.113.99")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        refused.headers()["x-wechat-identity-error"],
        "too_many_requests"
    );
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("too many sign-in requests")
    );
    app.stop().await;
}

async fn a_client_that_trickles_its_headers_is_cut_off(backend: Backend) {
    let Some(app) = spawn_with(Options::on(backend).configure(|config| {
        config.config.server.http_header_read_timeout = Duration::from_secs(1);
    }))
    .await
    else {
        return;
    };
    let mut slow = tokio::net::TcpStream::connect(app.http_addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    // The rest of the headers never comes: the shim must close the connection.
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was never closed");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after the header timeout, took {took:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("200 OK"),
        "the trickled request was not served: {answer}"
    );
    let ok = app
        .http
        .get(format!("{}/healthz", app.http_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "a prompt client is served");
    app.stop().await;
}

on_both_backends!(
    the_shim_limits_each_client_address_and_believes_forwarded_for_only_from_its_proxies,
    a_client_that_trickles_its_headers_is_cut_off,
    a_callers_deadline_bounds_the_wechat_call_and_no_retry_starts_after_it,
    a_few_hundred_concurrent_calls_are_all_served,
);

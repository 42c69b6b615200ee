//! Injected faults: system errors that burn codes, gateway failures, delays, resets, errcodes.

#![allow(clippy::unwrap_used)]

mod common;

use std::error::Error as _;
use std::time::{Duration, Instant};

use common::*;
use wechat_sim::{Endpoint, Fault, SimConfig, Simulator};

#[tokio::test]
async fn a_system_error_that_consumes_the_code_makes_the_retry_meet_40163() {
    let h = start().await;
    h.sim.inject(
        Endpoint::JsCode2Session,
        Fault::SystemError { consume_code: true },
        1,
    );
    let code = h.sim.mint_login_code(MINI, "alice");
    let first = h.jscode2session(MINI, MINI_SECRET, &code).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.errcode(), -1);
    assert!(first.text("errmsg").starts_with("system error, rid: "));
    assert_rid_suffix(&first.text("errmsg"));
    assert_eq!(
        h.jscode2session(MINI, MINI_SECRET, &code).await.errcode(),
        40163
    );
}

#[tokio::test]
async fn a_system_error_on_the_phone_endpoint_can_consume_the_code_in_the_body() {
    let h = start().await;
    let token = h
        .stable_token(MINI, MINI_SECRET, false)
        .await
        .text("access_token");
    h.sim.inject(
        Endpoint::GetUserPhoneNumber,
        Fault::SystemError { consume_code: true },
        1,
    );
    let code = h.sim.mint_phone_code(MINI, "alice");
    assert_eq!(h.phone_number(&token, &code).await.errcode(), -1);
    assert_eq!(h.phone_number(&token, &code).await.errcode(), 40029);
}

#[tokio::test]
async fn a_system_error_that_keeps_the_code_lets_the_retry_succeed() {
    let h = start().await;
    h.sim.inject(
        Endpoint::SnsAccessToken,
        Fault::SystemError {
            consume_code: false,
        },
        2,
    );
    let code = h.sim.mint_oauth_code(OFFICIAL, "alice", "snsapi_base");
    assert_eq!(
        h.oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &code)
            .await
            .errcode(),
        -1
    );
    assert_eq!(
        h.oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &code)
            .await
            .errcode(),
        -1
    );
    assert_eq!(
        h.oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &code)
            .await
            .errcode(),
        0
    );
}

#[tokio::test]
async fn a_connection_reset_is_a_transport_error_and_leaves_the_code_unused() {
    let h = start().await;
    // A pooled keep-alive connection must not hide the reset behind a silent retry.
    assert_eq!(h.cgi_token(MINI, MINI_SECRET).await.errcode(), 0);
    h.sim
        .inject(Endpoint::JsCode2Session, Fault::ConnectionReset, 1);
    let code = h.sim.mint_login_code(MINI, "alice");
    let result = h
        .http
        .get(h.url("/sns/jscode2session"))
        .query(&[
            ("appid", MINI),
            ("secret", MINI_SECRET),
            ("js_code", code.as_str()),
            ("grant_type", "authorization_code"),
        ])
        .send()
        .await;
    let error = result.expect_err("the connection should have been dropped");
    assert!(!error.is_status() && !error.is_decode(), "{error:?}");
    let io_error = std::iter::successors(error.source(), |&cause| cause.source())
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
        .expect("an I/O error underneath");
    assert_eq!(
        io_error.kind(),
        std::io::ErrorKind::ConnectionReset,
        "{error:?}"
    );
    assert_eq!(h.sim.calls(Endpoint::JsCode2Session), 1);
    // Nothing was processed: the code still works, on a new connection.
    assert_eq!(
        h.jscode2session(MINI, MINI_SECRET, &code).await.errcode(),
        0
    );
}

#[tokio::test]
async fn a_connection_reset_after_a_post_body_also_drops_the_connection() {
    let h = start().await;
    h.sim
        .inject(Endpoint::StableToken, Fault::ConnectionReset, 1);
    let result = h
        .http
        .post(h.url("/cgi-bin/stable_token"))
        .json(&serde_json::json!({ "grant_type": "client_credential", "appid": MINI, "secret": MINI_SECRET }))
        .send()
        .await;
    assert!(result.is_err());
    assert_eq!(h.stable_token(MINI, MINI_SECRET, false).await.errcode(), 0);
}

#[tokio::test]
async fn a_bare_router_served_by_axum_still_breaks_the_exchange_on_a_connection_reset() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::new(SimConfig::demo());
    sim.inject(Endpoint::Token, Fault::ConnectionReset, 1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, sim.router()).into_future());
    let result = reqwest::Client::new()
        .get(format!("http://{addr}/cgi-bin/token"))
        .send()
        .await;
    let error = result.expect_err("the failing body aborts the response before its head");
    assert!(error.is_request(), "{error:?}");
    server.abort();
}

#[tokio::test]
async fn an_http_status_fault_answers_that_status_with_a_non_json_body() {
    let h = start().await;
    h.sim
        .inject(Endpoint::Token, Fault::HttpStatus { status: 502 }, 1);
    let response = h
        .http
        .get(h.url("/cgi-bin/token"))
        .query(&[
            ("grant_type", "client_credential"),
            ("appid", MINI),
            ("secret", MINI_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_err(),
        "{body}"
    );
    assert!(body.contains("502"));
    assert_eq!(h.cgi_token(MINI, MINI_SECRET).await.errcode(), 0);
}

#[tokio::test]
async fn an_errcode_fault_answers_its_documented_errmsg_with_http_200() {
    let h = start().await;
    h.sim
        .inject(Endpoint::SnsUserInfo, Fault::Errcode { errcode: 45011 }, 1);
    let answer = h.user_info("any", "any").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.errcode(), 45011);
    assert!(
        answer
            .text("errmsg")
            .starts_with("api minute-quota reach limit")
    );
    assert_rid_suffix(&answer.text("errmsg"));
    assert_eq!(answer.content_type, "text/plain");
}

#[tokio::test]
async fn faults_queue_in_order_and_are_counted_as_calls() {
    let h = start().await;
    h.sim
        .inject(Endpoint::Token, Fault::Errcode { errcode: -1 }, 1);
    h.sim
        .inject(Endpoint::Token, Fault::Errcode { errcode: 40164 }, 1);
    assert_eq!(h.cgi_token(MINI, MINI_SECRET).await.errcode(), -1);
    let whitelist = h.cgi_token(MINI, MINI_SECRET).await;
    assert_eq!(whitelist.errcode(), 40164);
    assert!(whitelist.text("errmsg").contains("not in whitelist rid: "));
    assert_eq!(h.cgi_token(MINI, MINI_SECRET).await.errcode(), 0);
    assert_eq!(h.sim.calls(Endpoint::Token), 3);
    assert_eq!(h.sim.calls(Endpoint::StableToken), 0);
    h.sim.reset_calls();
    assert_eq!(h.sim.calls(Endpoint::Token), 0);
}

#[tokio::test]
async fn a_delay_fault_slows_one_answer_down() {
    let h = start().await;
    h.sim
        .inject(Endpoint::StableToken, Fault::Delay { millis: 300 }, 1);
    let started = Instant::now();
    assert_eq!(h.stable_token(MINI, MINI_SECRET, false).await.errcode(), 0);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    h.stable_token(MINI, MINI_SECRET, false).await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn configured_latency_delays_wechat_endpoints_but_not_the_control_api() {
    let mut config = SimConfig::demo();
    config.latency = Duration::from_millis(250);
    let h = start_with(config).await;
    let started = Instant::now();
    h.stable_token(MINI, MINI_SECRET, false).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    let started = Instant::now();
    let response = h.http.get(h.url("/sim/calls")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn a_shut_down_simulator_refuses_connections() {
    let h = start().await;
    let url = h.url("/sim/calls");
    assert!(h.http.get(&url).send().await.is_ok());
    h.running.shutdown().await;
    let fresh = reqwest::Client::new();
    let error = fresh
        .get(&url)
        .send()
        .await
        .expect_err("nothing listens any more");
    assert!(error.is_connect(), "{error:?}");
}

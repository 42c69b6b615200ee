//! Failover from the primary API host to the fallback while the primary is
//! unreachable, and back once it has been down long enough.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use wechat_client::{ClientConfig, Code, Deadline, Error, TransportFailure, WeChatClient};
use wechat_sim::{Endpoint, SimConfig, Simulator};

async fn free_port() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn an_unreachable_primary_fails_over_to_the_fallback_and_back() {
    let sim = Simulator::new(SimConfig::demo());
    let fallback = sim.spawn().await.unwrap();
    let primary_addr = free_port().await;
    let client = WeChatClient::new(ClientConfig {
        api_base: format!("http://{primary_addr}"),
        api_fallback: Some(fallback.base_url.clone()),
        retry: fast_retry(),
        failback_after: Duration::from_millis(300),
        ..ClientConfig::single_host(&fallback.base_url)
    })
    .unwrap();
    let app = creds(MINI, MINI_SECRET);

    // The primary refuses connections: the call succeeds through the fallback.
    let code = Code::new(sim.mint_login_code(MINI, "alice"));
    client
        .code_to_session(&app, &code, Deadline::none())
        .await
        .unwrap();
    assert_eq!(
        sim.calls(Endpoint::JsCode2Session),
        1,
        "the refused attempt never reached WeChat"
    );

    // The primary comes back; after the failback window requests return to it.
    let primary = sim
        .spawn_on(tokio::net::TcpListener::bind(primary_addr).await.unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    fallback.shutdown().await;
    let code = Code::new(sim.mint_login_code(MINI, "alice"));
    client
        .code_to_session(&app, &code, Deadline::none())
        .await
        .unwrap();
    assert_eq!(sim.calls(Endpoint::JsCode2Session), 2);
    primary.shutdown().await;
}

#[tokio::test]
async fn both_hosts_unreachable_is_a_connect_failure() {
    let client = WeChatClient::new(ClientConfig {
        api_base: format!("http://{}", free_port().await),
        api_fallback: Some(format!("http://{}", free_port().await)),
        retry: fast_retry(),
        ..ClientConfig::default()
    })
    .unwrap();
    let error = client
        .code_to_session(&creds(MINI, MINI_SECRET), &Code::new("c"), Deadline::none())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Transport {
                failure: TransportFailure::Connect,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_unavailable());
    assert!(
        !error.to_string().contains(MINI_SECRET),
        "no secret in the error text"
    );
}

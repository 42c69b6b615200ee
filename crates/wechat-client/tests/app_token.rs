//! The access token manager against the simulator: single flight, shared
//! lease, renewal after a rejection, and forced refresh within WeChat's limits.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use futures::future::join_all;
use wechat_client::{
    Code, Deadline, Error, ErrorKind, InMemoryTokenCache, TokenCache, TokenEndpoint,
    TokenManagerConfig,
};
use wechat_sim::{Endpoint, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_callers_on_a_cold_cache_cause_one_fetch() {
    let h = start().await;
    let manager = Arc::new(h.manager());
    let tasks = (0..1000).map(|_| {
        let manager = manager.clone();
        tokio::spawn(async move {
            manager
                .access_token(&app(MINI), Deadline::none())
                .await
                .unwrap()
        })
    });
    let tokens: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        tokens.windows(2).all(|pair| pair[0] == pair[1]),
        "everyone got the same token"
    );
    assert_eq!(h.sim.calls(Endpoint::StableToken), 1);
    assert_eq!(
        h.sim.calls(Endpoint::Token),
        0,
        "stable_token is the default"
    );
    let stats = manager.stats();
    assert_eq!(stats.fetches, 1);
    assert_eq!(stats.local_hits + stats.shared_hits, 999);
    assert_eq!(
        tokens[0].expose_secret(),
        h.sim.current_stable_token(MINI).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_managers_sharing_a_cache_fetch_once_between_them() {
    let h = start().await;
    let shared: Arc<dyn TokenCache> = Arc::new(InMemoryTokenCache::new());
    let replicas = [
        Arc::new(h.manager_with(shared.clone(), TokenManagerConfig::default())),
        Arc::new(h.manager_with(shared.clone(), TokenManagerConfig::default())),
    ];
    let tasks = (0..200).map(|i| {
        let manager = replicas[i % 2].clone();
        tokio::spawn(async move {
            manager
                .access_token(&app(MINI), Deadline::none())
                .await
                .unwrap()
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .for_each(|r| drop(r.unwrap()));
    assert_eq!(h.sim.calls(Endpoint::StableToken), 1);
}

#[tokio::test]
async fn each_app_has_its_own_token() {
    let h = start().await;
    let manager = h.manager();
    let mini = manager
        .access_token(&app(MINI), Deadline::none())
        .await
        .unwrap();
    let official = manager
        .access_token(&app(OFFICIAL), Deadline::none())
        .await
        .unwrap();
    assert_ne!(mini, official);
    assert_eq!(h.sim.calls(Endpoint::StableToken), 2);
    let unknown = manager
        .access_token(&app("wx0000000000000099"), Deadline::none())
        .await
        .unwrap_err();
    assert!(matches!(unknown, Error::UnknownApp(_)));
}

#[tokio::test]
async fn the_classic_endpoint_can_be_chosen() {
    let h = start().await;
    let config = TokenManagerConfig {
        endpoint: TokenEndpoint::Classic,
        ..TokenManagerConfig::default()
    };
    let manager = h.manager_with(Arc::new(InMemoryTokenCache::new()), config);
    manager
        .access_token(&app(MINI), Deadline::none())
        .await
        .unwrap();
    manager
        .access_token(&app(MINI), Deadline::none())
        .await
        .unwrap();
    assert_eq!(
        (
            h.sim.calls(Endpoint::Token),
            h.sim.calls(Endpoint::StableToken)
        ),
        (1, 0)
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_the_fetch_as_misconfiguration() {
    let h = start().await;
    let manager = wechat_client::AppTokenManager::new(
        h.client.clone(),
        [creds(MINI, "wrong-secret")],
        Arc::new(InMemoryTokenCache::new()),
        TokenManagerConfig::default(),
    );
    let error = manager
        .access_token(&app(MINI), Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::AppMisconfigured));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_calls_rejected_with_40001_renew_the_token_once() {
    let h = start().await;
    let manager = Arc::new(h.manager());
    let before = manager
        .access_token(&app(MINI), Deadline::none())
        .await
        .unwrap();
    h.sim.invalidate_access_tokens(MINI);

    let tasks = (0..50).map(|i| {
        let manager = manager.clone();
        let code = Code::new(h.sim.mint_phone_code(MINI, &format!("user{i}")));
        tokio::spawn(async move {
            manager
                .phone_number(&app(MINI), &code, None, Deadline::none())
                .await
        })
    });
    for result in join_all(tasks).await {
        result.unwrap().unwrap();
    }
    assert_eq!(
        h.sim.calls(Endpoint::StableToken),
        2,
        "one initial fetch, one renewal"
    );
    assert_eq!(
        manager.stats().forced_refreshes,
        0,
        "WeChat handed out a new token without forcing"
    );
    let after = manager
        .access_token(&app(MINI), Deadline::none())
        .await
        .unwrap();
    assert_ne!(before, after);
}

#[tokio::test]
async fn a_token_wechat_still_hands_out_after_rejecting_it_is_force_refreshed_within_limits() {
    let h = start().await;
    let manager = h.manager();
    manager
        .access_token(&app(MINI), Deadline::none())
        .await
        .unwrap();

    // WeChat rejects the token but a plain stable_token call returns it again.
    h.sim.inject(
        Endpoint::GetUserPhoneNumber,
        Fault::Errcode { errcode: 40001 },
        1,
    );
    let code = Code::new(h.sim.mint_phone_code(MINI, "alice"));
    manager
        .phone_number(&app(MINI), &code, None, Deadline::none())
        .await
        .unwrap();
    assert_eq!(manager.stats().forced_refreshes, 1);
    assert_eq!(
        h.sim.calls(Endpoint::StableToken),
        3,
        "initial, plain re-fetch, forced refresh"
    );

    // A second forced refresh within 30 s is refused rather than silently ignored by WeChat.
    h.sim.inject(
        Endpoint::GetUserPhoneNumber,
        Fault::Errcode { errcode: 40001 },
        1,
    );
    let code = Code::new(h.sim.mint_phone_code(MINI, "alice"));
    let error = manager
        .phone_number(&app(MINI), &code, None, Deadline::none())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ForceRefreshLimited { .. }),
        "{error:?}"
    );
    assert_eq!(manager.stats().forced_refreshes, 1);
}

#[tokio::test]
async fn a_rejection_of_an_already_replaced_token_does_not_refresh_again() {
    let h = start().await;
    let manager = h.manager();
    let old = manager
        .access_token(&app(MINI), Deadline::none())
        .await
        .unwrap();
    h.sim.invalidate_access_tokens(MINI);
    let new = manager
        .renew_rejected(&app(MINI), &old, Deadline::none())
        .await
        .unwrap();
    assert_ne!(old, new);
    // A late caller reports the same old token: the current one is returned, no fetch.
    let again = manager
        .renew_rejected(&app(MINI), &old, Deadline::none())
        .await
        .unwrap();
    assert_eq!(again, new);
    assert_eq!(h.sim.calls(Endpoint::StableToken), 2);
}

#[tokio::test]
async fn a_busy_token_endpoint_is_retried() {
    let h = start().await;
    h.sim.inject(
        Endpoint::StableToken,
        Fault::SystemError {
            consume_code: false,
        },
        2,
    );
    h.manager()
        .access_token(&app(MINI), Deadline::none())
        .await
        .unwrap();
    assert_eq!(h.sim.calls(Endpoint::StableToken), 3);
}

#[tokio::test]
async fn the_daily_quota_error_is_reported() {
    let h = start().await;
    h.sim
        .inject(Endpoint::StableToken, Fault::Errcode { errcode: 45009 }, 1);
    let error = h
        .manager()
        .access_token(&app(MINI), Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::QuotaExceeded));
}

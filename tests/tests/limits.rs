//! Deadlines and load: a caller's deadline bounds the WeChat call and stops
//! retries, and a few hundred concurrent calls on one replica are served,
//! not shed.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::*;
use server::pb::{MiniProgramLoginRequest, VerifyTokenRequest};
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

on_both_backends!(
    a_callers_deadline_bounds_the_wechat_call_and_no_retry_starts_after_it,
    a_few_hundred_concurrent_calls_are_all_served,
);

//! `/metrics` after traffic: RPCs by method and code, WeChat calls by endpoint
//! and errcode, app-token fetches and hits, sessions issued, refreshed,
//! refreshed within the reuse grace and reused, database pools; in
//! Prometheus' text format, with no secret in it; served on the admin
//! listener only, never on the public shim.
#![allow(clippy::unwrap_used)]

use e2e::*;
use server::pb::{GetPhoneNumberRequest, MiniProgramLoginRequest, RefreshTokenRequest};

async fn scrape(app: &TestApp) -> String {
    let response = app
        .http
        .get(format!("{}/metrics", app.admin_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    response.text().await.unwrap()
}

/// The value of the sample `name{labels}` in `text`.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name_and_labels} in:\n{text}"))
}

async fn metrics_count_rpcs_wechat_calls_tokens_and_sessions(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let login = client
        .mini_program_login(MiniProgramLoginRequest {
            app_id: MINI.into(),
            code: app.sim.mint_login_code(MINI, "mia"),
        })
        .await
        .unwrap()
        .into_inner();
    let bad = client
        .mini_program_login(MiniProgramLoginRequest {
            app_id: MINI.into(),
            code: "not-a-wechat-code".into(),
        })
        .await;
    assert!(bad.is_err());
    for user in ["mia", "max"] {
        client
            .get_phone_number(GetPhoneNumberRequest {
                app_id: MINI.into(),
                code: app.sim.mint_phone_code(MINI, user),
                user_id: String::new(),
            })
            .await
            .unwrap();
    }
    let refresh = login.session.unwrap().refresh_token;
    // Rotated; presented again within the reuse grace; then once more, two
    // generations back.
    client
        .refresh_token(RefreshTokenRequest {
            refresh_token: refresh.clone(),
        })
        .await
        .unwrap();
    client
        .refresh_token(RefreshTokenRequest {
            refresh_token: refresh.clone(),
        })
        .await
        .unwrap();
    let _ = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: refresh.clone(),
        })
        .await
        .unwrap_err();

    let text = scrape(&app).await;
    let rpcs = "wechat_identity_rpc_requests_total";
    assert_eq!(
        sample(
            &text,
            &format!(r#"{rpcs}{{method="MiniProgramLogin",code="Ok"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"{rpcs}{{method="MiniProgramLogin",code="InvalidArgument"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"{rpcs}{{method="GetPhoneNumber",code="Ok"}}"#)
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"{rpcs}{{method="RefreshToken",code="Unauthenticated"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"wechat_identity_rpc_duration_seconds_count{method="GetPhoneNumber"}"#
        ),
        2.0
    );
    let wechat = "wechat_identity_wechat_calls_total";
    assert_eq!(
        sample(
            &text,
            &format!(r#"{wechat}{{endpoint="sns/jscode2session",errcode="0"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"{wechat}{{endpoint="sns/jscode2session",errcode="40029"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"{wechat}{{endpoint="cgi-bin/stable_token",errcode="0"}}"#)
        ),
        1.0
    );
    let tokens = "wechat_identity_app_token_events_total";
    assert_eq!(
        sample(&text, &format!(r#"{tokens}{{event="fetched"}}"#)),
        1.0
    );
    assert!(sample(&text, &format!(r#"{tokens}{{event="local_hit"}}"#)) >= 1.0);
    let sessions = "wechat_identity_sessions_total";
    assert_eq!(
        sample(&text, &format!(r#"{sessions}{{event="issued"}}"#)),
        1.0
    );
    assert_eq!(
        sample(&text, &format!(r#"{sessions}{{event="refreshed"}}"#)),
        1.0
    );
    assert_eq!(
        sample(&text, &format!(r#"{sessions}{{event="grace"}}"#)),
        1.0
    );
    assert_eq!(
        sample(&text, &format!(r#"{sessions}{{event="reused"}}"#)),
        1.0
    );
    assert!(
        text.contains("wechat_identity_database_connections{pool="),
        "{text}"
    );
    assert!(
        !text.contains(&refresh) && !text.contains(&login.user_id),
        "ids and secrets stay out"
    );

    // Counters only grow: a second scrape after no traffic shows the same counts.
    let again = scrape(&app).await;
    assert_eq!(
        sample(&again, &format!(r#"{tokens}{{event="fetched"}}"#)),
        1.0
    );
    app.stop().await;
}

/// The public shim is what browsers and WeChat reach: it no longer serves
/// metrics, which live on the admin listener beside a liveness answer.
async fn metrics_are_served_on_the_admin_listener_and_not_on_the_public_shim(backend: Backend) {
    let app = spawn!(backend);
    assert_ne!(app.admin_addr, app.http_addr);
    let public = app
        .http
        .get(format!("{}/metrics", app.http_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404, "no /metrics on the public shim");
    let body = public.text().await.unwrap();
    assert!(!body.contains("wechat_identity_"), "{body}");

    let text = scrape(&app).await;
    assert!(
        text.contains("wechat_identity_app_token_events_total"),
        "{text}"
    );
    let healthz = app
        .http
        .get(format!("{}/healthz", app.admin_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    for public_only in ["/readyz", "/.well-known/jwks.json", "/oauth/x/authorize"] {
        let response = app
            .http
            .get(format!("{}{public_only}", app.admin_base()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{public_only} stays on the shim");
    }
    app.stop().await;
}

on_both_backends!(
    metrics_count_rpcs_wechat_calls_tokens_and_sessions,
    metrics_are_served_on_the_admin_listener_and_not_on_the_public_shim,
);

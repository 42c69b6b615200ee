//! The `/sim` control API, driven over HTTP as another process would.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use wechat_sim::Endpoint;

async fn control_get(h: &Harness, path_and_query: &str) -> (u16, String) {
    let response = h.http.get(h.url(path_and_query)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn control_post(h: &Harness, path: &str, body: &str) -> (u16, String) {
    let response = h
        .http
        .post(h.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn a_login_code_minted_over_http_logs_the_user_in() {
    let h = start().await;
    let (status, body) =
        control_post(&h, &format!("/sim/login-code?app_id={MINI}&user=carol"), "").await;
    assert_eq!(status, 200);
    let code = json_of(&body)["code"].as_str().unwrap().to_owned();
    let answer = h.jscode2session(MINI, MINI_SECRET, &code).await;
    assert_eq!(answer.text("openid"), h.sim.openid(MINI, "carol"));
    let (_, identity) = control_get(&h, &format!("/sim/identity?app_id={MINI}&user=carol")).await;
    let identity = json_of(&identity);
    assert_eq!(identity["openid"], answer.body["openid"]);
    assert_eq!(identity["unionid"], answer.body["unionid"]);
    assert_eq!(identity["session_key"], answer.body["session_key"]);
    let (_, lone) = control_get(&h, &format!("/sim/identity?app_id={LONE_MINI}&user=carol")).await;
    assert_eq!(json_of(&lone)["unionid"], Value::Null);
    assert_eq!(json_of(&lone)["session_key"], Value::Null);
}

#[tokio::test]
async fn phone_and_oauth_codes_can_be_minted_with_get() {
    let h = start().await;
    let (status, body) =
        control_get(&h, &format!("/sim/phone-code?app_id={MINI}&user=carol")).await;
    assert_eq!(status, 200);
    let phone_code = json_of(&body)["code"].as_str().unwrap().to_owned();
    let token = h.cgi_token(MINI, MINI_SECRET).await.text("access_token");
    assert_eq!(h.phone_number(&token, &phone_code).await.errcode(), 0);
    let (status, body) = control_get(
        &h,
        &format!("/sim/oauth-code?app_id={WEBSITE}&user=carol&scope=snsapi_login"),
    )
    .await;
    assert_eq!(status, 200);
    let oauth_code = json_of(&body)["code"].as_str().unwrap().to_owned();
    let tokens = h.oauth_exchange(WEBSITE, WEBSITE_SECRET, &oauth_code).await;
    assert_eq!(tokens.text("scope"), "snsapi_login");
}

#[tokio::test]
async fn calls_are_counted_per_endpoint_by_serde_name_and_can_be_reset() {
    let h = start().await;
    h.cgi_token(MINI, MINI_SECRET).await;
    h.jscode2session(MINI, MINI_SECRET, "x").await;
    h.jscode2session(MINI, MINI_SECRET, "y").await;
    let (status, body) = control_get(&h, "/sim/calls").await;
    assert_eq!(status, 200);
    let calls = json_of(&body);
    assert_eq!(calls["js_code2_session"], 2);
    assert_eq!(calls["token"], 1);
    assert_eq!(calls["stable_token"], 0);
    assert_eq!(calls.as_object().unwrap().len(), Endpoint::ALL.len());
    let (status, _) = control_post(&h, "/sim/calls/reset", "").await;
    assert_eq!(status, 204);
    assert_eq!(h.sim.calls(Endpoint::JsCode2Session), 0);
}

#[tokio::test]
async fn faults_injected_over_http_hit_the_next_calls() {
    let h = start().await;
    let body = json!({
        "endpoint": "stable_token",
        "fault": { "kind": "system_error", "consume_code": false },
        "times": 2,
    });
    let (status, _) = control_post(&h, "/sim/faults", &body.to_string()).await;
    assert_eq!(status, 204);
    assert_eq!(h.stable_token(MINI, MINI_SECRET, false).await.errcode(), -1);
    assert_eq!(h.stable_token(MINI, MINI_SECRET, false).await.errcode(), -1);
    assert_eq!(h.stable_token(MINI, MINI_SECRET, false).await.errcode(), 0);
    let errcode =
        json!({ "endpoint": "sns_user_info", "fault": { "kind": "errcode", "errcode": 50002 } });
    assert_eq!(
        control_post(&h, "/sim/faults", &errcode.to_string())
            .await
            .0,
        204
    );
    assert_eq!(h.user_info("t", "o").await.errcode(), 50002);
}

#[tokio::test]
async fn users_can_be_put_and_read_back_with_their_utf8_profile() {
    let h = start().await;
    let (status, body) = control_get(&h, "/sim/users/dave").await;
    assert_eq!(status, 200);
    let mut dave = json_of(&body);
    assert_eq!(dave["country"], "中国");
    dave["nickname"] = json!("大卫🎸");
    dave["phone"] = Value::Null;
    let (status, _) = control_post(&h, "/sim/users", &dave.to_string()).await;
    assert_eq!(status, 204);
    assert_eq!(h.sim.user("dave").nickname, "大卫🎸");
    assert!(h.sim.user("dave").phone.is_none());
}

#[tokio::test]
async fn the_clock_tokens_and_browser_can_be_driven_over_http() {
    let h = start().await;
    let code = h.sim.mint_login_code(MINI, "erin");
    assert_eq!(
        control_post(&h, "/sim/clock/advance", r#"{"seconds":301}"#)
            .await
            .0,
        204
    );
    assert_eq!(
        h.jscode2session(MINI, MINI_SECRET, &code).await.errcode(),
        40029
    );

    let token = h
        .stable_token(MINI, MINI_SECRET, false)
        .await
        .text("access_token");
    let invalidate = format!(r#"{{"app_id":"{MINI}"}}"#);
    assert_eq!(
        control_post(&h, "/sim/tokens/invalidate", &invalidate)
            .await
            .0,
        204
    );
    assert_eq!(h.phone_number(&token, "x").await.errcode(), 40001);

    assert_eq!(
        control_post(&h, "/sim/browser", r#"{"user":"erin","consent":"deny"}"#)
            .await
            .0,
        204
    );
    let page = format!(
        "/connect/qrconnect?appid={WEBSITE}&redirect_uri=https%3A%2F%2Fa.example%2Fcb&response_type=code&scope=snsapi_login&state=q"
    );
    let response = h.http.get(h.url(&page)).send().await.unwrap();
    assert_eq!(
        response.headers()["location"],
        "https://a.example/cb?state=q"
    );
    assert_eq!(
        control_post(&h, "/sim/browser", r#"{"consent":"allow"}"#)
            .await
            .0,
        204
    );
    let response = h.http.get(h.url(&page)).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(name, _)| name == "code")
        .map(|(_, value)| value.into_owned())
        .unwrap();
    let tokens = h.oauth_exchange(WEBSITE, WEBSITE_SECRET, &code).await;
    assert_eq!(tokens.text("openid"), h.sim.openid(WEBSITE, "erin"));
}

#[tokio::test]
async fn bad_control_input_gets_a_400_with_a_plain_message() {
    let h = start().await;
    let cases = [
        control_get(&h, "/sim/login-code?user=x").await,
        control_get(&h, &format!("/sim/login-code?app_id={MINI}")).await,
        control_get(&h, "/sim/login-code?app_id=wx-unknown&user=x").await,
        control_get(&h, &format!("/sim/oauth-code?app_id={OFFICIAL}&user=x")).await,
        control_post(&h, "/sim/users", "{not json").await,
        control_post(&h, "/sim/users", r#"{"key":"x"}"#).await,
        control_post(
            &h,
            "/sim/faults",
            r#"{"endpoint":"nope","fault":{"kind":"connection_reset"}}"#,
        )
        .await,
        control_post(
            &h,
            "/sim/faults",
            r#"{"endpoint":"token","fault":{"kind":"http_status","status":42}}"#,
        )
        .await,
        control_post(&h, "/sim/clock/advance", r#"{"seconds":-5}"#).await,
        control_post(&h, "/sim/tokens/invalidate", r#"{"app_id":"wx-unknown"}"#).await,
        control_post(&h, "/sim/browser", r#"{"consent":"maybe"}"#).await,
    ];
    for (index, (status, message)) in cases.iter().enumerate() {
        assert_eq!(*status, 400, "case {index}: {message}");
        assert!(!message.is_empty(), "case {index}");
    }
}

#[tokio::test]
async fn codes_can_be_minted_in_bulk_for_benchmarks() {
    let h = start().await;
    let (status, body) = control_get(
        &h,
        &format!("/sim/login-code?app_id={MINI}&user=bulk&count=3"),
    )
    .await;
    assert_eq!(status, 200);
    let codes: Vec<String> = json_of(&body)["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 3);
    assert!(
        codes[0] != codes[1] && codes[1] != codes[2],
        "each one fresh"
    );
    for code in &codes {
        let answer = h.jscode2session(MINI, MINI_SECRET, code).await;
        assert_eq!(answer.text("openid"), h.sim.openid(MINI, "bulk"));
    }
    for bad in ["0", "-1", "x", "100001"] {
        let (status, _) = control_get(
            &h,
            &format!("/sim/phone-code?app_id={MINI}&user=bulk&count={bad}"),
        )
        .await;
        assert_eq!(status, 400, "count={bad}");
    }
}

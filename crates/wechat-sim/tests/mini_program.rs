//! Mini program login, phone numbers and session checks, over real HTTP.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use wechat_sim::{SimConfig, SimPhone};

#[tokio::test]
async fn jscode2session_returns_openid_unionid_and_a_session_key_without_expires_in() {
    let h = start().await;
    let code = h.sim.mint_login_code(MINI, "alice");
    let answer = h.jscode2session(MINI, MINI_SECRET, &code).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.get("errcode"), None);
    assert_eq!(answer.text("openid"), h.sim.openid(MINI, "alice"));
    assert_eq!(Some(answer.text("unionid")), h.sim.unionid(MINI, "alice"));
    assert_eq!(
        Some(answer.text("session_key")),
        h.sim.session_key(MINI, "alice")
    );
    assert_eq!(answer.body.get("expires_in"), None);
}

#[tokio::test]
async fn a_mini_program_without_open_platform_gets_no_unionid() {
    let h = start().await;
    let code = h.sim.mint_login_code(LONE_MINI, "alice");
    let answer = h.jscode2session(LONE_MINI, LONE_MINI_SECRET, &code).await;
    assert_eq!(answer.text("openid"), h.sim.openid(LONE_MINI, "alice"));
    assert_eq!(answer.body.get("unionid"), None);
}

#[tokio::test]
async fn a_login_code_works_once_then_answers_40163() {
    let h = start().await;
    let code = h.sim.mint_login_code(MINI, "alice");
    assert_eq!(
        h.jscode2session(MINI, MINI_SECRET, &code).await.errcode(),
        0
    );
    let again = h.jscode2session(MINI, MINI_SECRET, &code).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.errcode(), 40163);
    assert!(again.text("errmsg").starts_with("code been used"));
    assert_rid_suffix(&again.text("errmsg"));
}

#[tokio::test]
async fn a_login_code_expires_after_five_minutes_of_sim_time() {
    let h = start().await;
    let code = h.sim.mint_login_code(MINI, "alice");
    h.sim.advance_clock(Duration::from_secs(301));
    let answer = h.jscode2session(MINI, MINI_SECRET, &code).await;
    assert_eq!(answer.errcode(), 40029);
    assert!(answer.text("errmsg").starts_with("invalid code, rid: "));
}

#[tokio::test]
async fn a_code_of_another_app_or_a_made_up_code_answers_40029() {
    let h = start().await;
    let code = h.sim.mint_login_code(LONE_MINI, "alice");
    assert_eq!(
        h.jscode2session(MINI, MINI_SECRET, &code).await.errcode(),
        40029
    );
    assert_eq!(
        h.jscode2session(MINI, MINI_SECRET, "made-up")
            .await
            .errcode(),
        40029
    );
}

#[tokio::test]
async fn wrong_credentials_and_missing_parameters_get_their_errcodes() {
    let h = start().await;
    let code = h.sim.mint_login_code(MINI, "alice");
    assert_eq!(
        h.jscode2session(MINI, "wrong", &code).await.errcode(),
        40125
    );
    assert_eq!(
        h.jscode2session("wx-unknown", MINI_SECRET, &code)
            .await
            .errcode(),
        40013
    );
    assert_eq!(
        h.jscode2session(OFFICIAL, OFFICIAL_SECRET, &code)
            .await
            .errcode(),
        40013
    );
    let no_code = h
        .get(
            "/sns/jscode2session",
            &[
                ("appid", MINI),
                ("secret", MINI_SECRET),
                ("grant_type", "authorization_code"),
            ],
        )
        .await;
    assert_eq!(no_code.errcode(), 41008);
    let no_appid = h.get("/sns/jscode2session", &[("js_code", &code)]).await;
    assert_eq!(no_appid.errcode(), 41002);
    // None of these used the code up.
    assert_eq!(
        h.jscode2session(MINI, MINI_SECRET, &code).await.errcode(),
        0
    );
}

#[tokio::test]
async fn sns_answers_are_text_plain_and_cgi_token_is_json_with_encoding() {
    let h = start().await;
    let answer = h.jscode2session(MINI, MINI_SECRET, "made-up").await;
    assert_eq!(answer.content_type, "text/plain");
    let token = h.cgi_token(MINI, MINI_SECRET).await;
    assert_eq!(token.content_type, "application/json; encoding=utf-8");
    let stable = h.stable_token(MINI, MINI_SECRET, false).await;
    assert_eq!(stable.content_type, "application/json");
}

#[tokio::test]
async fn the_sns_content_type_is_configurable() {
    let mut config = SimConfig::demo();
    config.sns_content_type = "application/json".to_owned();
    let h = start_with(config).await;
    let answer = h.jscode2session(MINI, MINI_SECRET, "made-up").await;
    assert_eq!(answer.content_type, "application/json");
}

#[tokio::test]
async fn each_login_replaces_the_session_key() {
    let h = start().await;
    let first = h
        .jscode2session(MINI, MINI_SECRET, &h.sim.mint_login_code(MINI, "alice"))
        .await
        .text("session_key");
    let second = h
        .jscode2session(MINI, MINI_SECRET, &h.sim.mint_login_code(MINI, "alice"))
        .await
        .text("session_key");
    assert_ne!(first, second);
    assert_eq!(h.sim.session_key(MINI, "alice"), Some(second));
}

#[tokio::test]
async fn getuserphonenumber_returns_the_users_phone_with_a_watermark() {
    let h = start().await;
    let mut alice = h.sim.user("alice");
    alice.phone = Some(SimPhone {
        phone_number: "+86 13800138000".to_owned(),
        pure_phone_number: "13800138000".to_owned(),
        country_code: "86".to_owned(),
    });
    h.sim.add_user(alice);
    let token = h
        .stable_token(MINI, MINI_SECRET, false)
        .await
        .text("access_token");
    let code = h.sim.mint_phone_code(MINI, "alice");
    let answer = h.phone_number(&token, &code).await;
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(answer.body["errcode"], 0);
    assert_eq!(answer.body["errmsg"], "ok");
    let info = &answer.body["phone_info"];
    assert_eq!(info["phoneNumber"], "+86 13800138000");
    assert_eq!(info["purePhoneNumber"], "13800138000");
    assert_eq!(info["countryCode"], "86");
    assert_eq!(info["watermark"]["appid"], MINI);
    assert!(info["watermark"]["timestamp"].as_u64().unwrap() > 1_600_000_000);
    // Single use: a used phone code is just an invalid code (§10).
    assert_eq!(h.phone_number(&token, &code).await.errcode(), 40029);
}

#[tokio::test]
async fn the_country_code_can_be_a_number() {
    let mut config = SimConfig::demo();
    config.phone_country_code_as_number = true;
    let h = start_with(config).await;
    let token = h.cgi_token(MINI, MINI_SECRET).await.text("access_token");
    let answer = h
        .phone_number(&token, &h.sim.mint_phone_code(MINI, "bob"))
        .await;
    assert_eq!(answer.body["phone_info"]["countryCode"], 86);
}

#[tokio::test]
async fn getuserphonenumber_rejects_bad_tokens_bodies_and_openids() {
    let h = start().await;
    let token = h.cgi_token(MINI, MINI_SECRET).await.text("access_token");
    let code = h.sim.mint_phone_code(MINI, "alice");
    assert_eq!(h.phone_number("not-a-token", &code).await.errcode(), 40001);
    let missing = h
        .post_json(
            "/wxa/business/getuserphonenumber",
            &[],
            &json!({ "code": code }),
        )
        .await;
    assert_eq!(missing.errcode(), 41001);
    let form = h
        .http
        .post(h.url("/wxa/business/getuserphonenumber"))
        .query(&[("access_token", token.as_str())])
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("code={code}"))
        .send()
        .await
        .unwrap();
    let form: serde_json::Value = form.json().await.unwrap();
    assert_eq!(form["errcode"], 47001);
    let wrong_openid = h
        .post_json(
            "/wxa/business/getuserphonenumber",
            &[("access_token", &token)],
            &json!({ "code": code, "openid": h.sim.openid(MINI, "mallory") }),
        )
        .await;
    assert_eq!(wrong_openid.errcode(), 40003);
    let right_openid = h
        .post_json(
            "/wxa/business/getuserphonenumber",
            &[("access_token", &token)],
            &json!({ "code": code, "openid": h.sim.openid(MINI, "alice") }),
        )
        .await;
    assert_eq!(right_openid.errcode(), 0);
    let expired_code = h.sim.mint_phone_code(MINI, "alice");
    h.sim.advance_clock(Duration::from_secs(7200));
    assert_eq!(h.phone_number(&token, &expired_code).await.errcode(), 42001);
}

fn signature(session_key: &str) -> String {
    let mac = Hmac::<Sha256>::new_from_slice(session_key.as_bytes()).unwrap();
    hex::encode(mac.chain_update(b"").finalize().into_bytes())
}

#[tokio::test]
async fn checksession_accepts_the_hmac_of_the_current_session_key_only() {
    let h = start().await;
    let first = h
        .jscode2session(MINI, MINI_SECRET, &h.sim.mint_login_code(MINI, "alice"))
        .await;
    let openid = first.text("openid");
    let token = h
        .stable_token(MINI, MINI_SECRET, false)
        .await
        .text("access_token");
    let check = |signature: String| {
        let h = &h;
        let token = token.clone();
        let openid = openid.clone();
        async move {
            h.get(
                "/wxa/checksession",
                &[
                    ("access_token", token.as_str()),
                    ("openid", openid.as_str()),
                    ("signature", signature.as_str()),
                    ("sig_method", "hmac_sha256"),
                ],
            )
            .await
        }
    };
    let ok = check(signature(&first.text("session_key"))).await;
    assert_eq!(ok.body, json!({ "errcode": 0, "errmsg": "ok" }));
    assert_eq!(check("00".repeat(32)).await.errcode(), 87009);
    // A new login replaces the key: the old signature no longer checks out.
    h.jscode2session(MINI, MINI_SECRET, &h.sim.mint_login_code(MINI, "alice"))
        .await;
    assert_eq!(
        check(signature(&first.text("session_key"))).await.errcode(),
        87009
    );
    let current = h.sim.session_key(MINI, "alice").unwrap();
    assert_eq!(check(signature(&current)).await.errcode(), 0);
    let stranger = h
        .get(
            "/wxa/checksession",
            &[
                ("access_token", token.as_str()),
                ("openid", h.sim.openid(MINI, "nobody").as_str()),
                ("signature", signature(&current).as_str()),
                ("sig_method", "hmac_sha256"),
            ],
        )
        .await;
    assert_eq!(stranger.errcode(), 40003);
}

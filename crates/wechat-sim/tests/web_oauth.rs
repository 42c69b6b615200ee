//! Web OAuth after the consent page: code exchange, refresh, userinfo and sns/auth.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::header::CONTENT_TYPE;
use wechat_sim::SimUser;

#[tokio::test]
async fn userinfo_returns_the_utf8_nickname_as_text_plain() {
    let h = start().await;
    let mut alice = h.sim.user("alice");
    alice.nickname = "张三🐼 Zhang \"san\"".to_owned();
    alice.sex = 2;
    h.sim.add_user(alice);
    let code = h.sim.mint_oauth_code(WEBSITE, "alice", "snsapi_login");
    let tokens = h.oauth_exchange(WEBSITE, WEBSITE_SECRET, &code).await;
    assert_eq!(tokens.content_type, "text/plain");
    assert_eq!(
        Some(tokens.text("unionid")),
        h.sim.unionid(WEBSITE, "alice")
    );
    let response = h
        .http
        .get(h.url("/sns/userinfo"))
        .query(&[
            ("access_token", tokens.text("access_token").as_str()),
            ("openid", tokens.text("openid").as_str()),
            ("lang", "zh_CN"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[CONTENT_TYPE], "text/plain");
    let raw = response.text().await.unwrap();
    assert!(raw.contains("张三🐼"), "not raw UTF-8: {raw}");
    let info: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(info["nickname"], "张三🐼 Zhang \"san\"");
    assert_eq!(info["sex"], 2);
    assert_eq!(info["province"], "广东");
    assert!(info["headimgurl"].as_str().unwrap().ends_with("/132"));
    assert!(info["privilege"].is_array());
    assert_eq!(
        Some(info["unionid"].as_str().unwrap().to_owned()),
        h.sim.unionid(WEBSITE, "alice")
    );
}

#[tokio::test]
async fn a_base_scope_token_gets_no_unionid_and_no_profile() {
    let h = start().await;
    let code = h.sim.mint_oauth_code(OFFICIAL, "alice", "snsapi_base");
    let tokens = h.oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &code).await;
    assert_eq!(tokens.body.get("unionid"), None);
    assert_eq!(tokens.body.get("is_snapshotuser"), None);
    let info = h
        .user_info(&tokens.text("access_token"), &tokens.text("openid"))
        .await;
    assert_eq!(info.errcode(), 48001);
}

#[tokio::test]
async fn oauth_codes_are_single_use_and_expire() {
    let h = start().await;
    let code = h.sim.mint_oauth_code(OFFICIAL, "alice", "snsapi_base");
    assert_eq!(
        h.oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &code)
            .await
            .errcode(),
        0
    );
    assert_eq!(
        h.oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &code)
            .await
            .errcode(),
        40163
    );
    let oa_code = h.sim.mint_oauth_code(OFFICIAL, "alice", "snsapi_base");
    let website_code = h.sim.mint_oauth_code(WEBSITE, "alice", "snsapi_login");
    h.sim.advance_clock(Duration::from_secs(301));
    assert_eq!(
        h.oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &oa_code)
            .await
            .errcode(),
        40029
    );
    // Website (qrconnect) codes live 10 minutes.
    assert_eq!(
        h.oauth_exchange(WEBSITE, WEBSITE_SECRET, &website_code)
            .await
            .errcode(),
        0
    );
    let mini_code = h.sim.mint_login_code(MINI, "alice");
    assert_eq!(
        h.oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &mini_code)
            .await
            .errcode(),
        40029
    );
}

#[tokio::test]
async fn userinfo_and_auth_check_token_expiry_and_openid() {
    let h = start().await;
    let code = h.sim.mint_oauth_code(OFFICIAL, "alice", "snsapi_userinfo");
    let tokens = h.oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &code).await;
    let (access, openid) = (tokens.text("access_token"), tokens.text("openid"));
    let auth = h
        .get(
            "/sns/auth",
            &[("access_token", &access), ("openid", &openid)],
        )
        .await;
    assert_eq!(
        auth.body,
        serde_json::json!({ "errcode": 0, "errmsg": "ok" })
    );
    let other = h.sim.openid(OFFICIAL, "bob");
    assert_eq!(h.user_info(&access, &other).await.errcode(), 40003);
    let auth_other = h
        .get(
            "/sns/auth",
            &[("access_token", &access), ("openid", &other)],
        )
        .await;
    assert_eq!(auth_other.errcode(), 40003);
    assert_eq!(h.user_info("bogus", &openid).await.errcode(), 40001);
    h.sim.advance_clock(Duration::from_secs(7200));
    assert_eq!(h.user_info(&access, &openid).await.errcode(), 42001);
    let auth_expired = h
        .get(
            "/sns/auth",
            &[("access_token", &access), ("openid", &openid)],
        )
        .await;
    assert_eq!(auth_expired.errcode(), 40014);
}

#[tokio::test]
async fn refresh_replaces_an_expired_access_token_and_keeps_the_refresh_token() {
    let h = start().await;
    let code = h.sim.mint_oauth_code(OFFICIAL, "alice", "snsapi_userinfo");
    let tokens = h.oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &code).await;
    let refresh_token = tokens.text("refresh_token");
    let refresh = |token: String| {
        let h = &h;
        async move {
            h.get(
                "/sns/oauth2/refresh_token",
                &[
                    ("appid", OFFICIAL),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &token),
                ],
            )
            .await
        }
    };
    let live = refresh(refresh_token.clone()).await;
    assert_eq!(live.text("access_token"), tokens.text("access_token"));
    assert_eq!(live.text("refresh_token"), refresh_token);
    assert_eq!(live.text("openid"), tokens.text("openid"));
    assert_eq!(live.text("scope"), "snsapi_userinfo");
    h.sim.advance_clock(Duration::from_secs(7201));
    let renewed = refresh(refresh_token.clone()).await;
    assert_ne!(renewed.text("access_token"), tokens.text("access_token"));
    let info = h
        .user_info(&renewed.text("access_token"), &renewed.text("openid"))
        .await;
    assert_eq!(info.errcode(), 0);
    assert_eq!(refresh("bogus".to_owned()).await.errcode(), 40030);
    h.sim.advance_clock(Duration::from_secs(30 * 24 * 3600));
    assert_eq!(refresh(refresh_token).await.errcode(), 42002);
}

#[tokio::test]
async fn snapshot_users_get_virtual_ids_and_a_placeholder_profile() {
    let h = start().await;
    let mut ghost: SimUser = h.sim.user("ghost");
    ghost.snapshot = true;
    h.sim.add_user(ghost);
    let code = h.sim.mint_oauth_code(OFFICIAL, "ghost", "snsapi_userinfo");
    let tokens = h.oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &code).await;
    assert_eq!(tokens.body["is_snapshotuser"], 1);
    assert_ne!(tokens.text("openid"), h.sim.openid(OFFICIAL, "ghost"));
    assert_ne!(
        Some(tokens.text("unionid")),
        h.sim.unionid(OFFICIAL, "ghost")
    );
    let info = h
        .user_info(&tokens.text("access_token"), &tokens.text("openid"))
        .await;
    assert_eq!(info.text("nickname"), "微信用户");
    assert_eq!(info.text("openid"), tokens.text("openid"));
}

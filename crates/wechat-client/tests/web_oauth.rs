//! Web OAuth against the simulator: the authorize URL it accepts, the code
//! exchange, refresh, userinfo in UTF-8 over `text/plain`, and sns/auth.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use wechat_client::{
    AppKind, AuthorizeRequest, Code, Deadline, ErrorKind, OAuthScope, OAuthState, WebRefreshToken,
};
use wechat_sim::{Consent, Endpoint, SimUser};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Follows the authorize page like a browser would and returns the callback URL.
async fn authorize(
    h: &Harness,
    kind: AppKind,
    app_id: &str,
    scope: OAuthScope,
    state: &str,
) -> url::Url {
    let app_id = app(app_id);
    let state = OAuthState::new(state).unwrap();
    let url = h
        .client
        .authorize_url(&AuthorizeRequest {
            app_id: &app_id,
            kind,
            redirect_uri: "https://app.example/cb?from=test",
            scope,
            state: &state,
            force_popup: false,
        })
        .expect("a web app has an authorize page");
    let response = no_redirects().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 302, "the simulator accepted {url}");
    url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
}

fn query(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn the_authorize_url_has_wechats_parameter_order_and_fragment() {
    let h = start().await;
    let app_id = app(OFFICIAL);
    let state = OAuthState::new("abc123").unwrap();
    let url = h.client.authorize_url(&AuthorizeRequest {
        app_id: &app_id,
        kind: AppKind::OfficialAccount,
        redirect_uri: "https://app.example/cb?x=1",
        scope: OAuthScope::UserInfo,
        state: &state,
        force_popup: false,
    });
    let expected = format!(
        "{}/connect/oauth2/authorize?appid={OFFICIAL}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fx%3D1&response_type=code&scope=snsapi_userinfo&state=abc123#wechat_redirect",
        h.running.base_url
    );
    assert_eq!(url.as_deref(), Some(expected.as_str()));
    let website = h
        .client
        .authorize_url(&AuthorizeRequest {
            app_id: &app(WEBSITE),
            kind: AppKind::Website,
            redirect_uri: "https://app.example/cb",
            scope: OAuthScope::Base,
            state: &state,
            force_popup: false,
        })
        .expect("a website has an authorize page");
    assert!(website.contains("/connect/qrconnect?appid="), "{website}");
    assert!(
        website.contains("&scope=snsapi_login&"),
        "websites always use snsapi_login: {website}"
    );
    let mini_program = h.client.authorize_url(&AuthorizeRequest {
        app_id: &app(OFFICIAL),
        kind: AppKind::MiniProgram,
        redirect_uri: "https://app.example/cb",
        scope: OAuthScope::Base,
        state: &state,
        force_popup: false,
    });
    assert_eq!(mini_program, None, "a mini program has no authorize page");
}

#[tokio::test]
async fn userinfo_flow_returns_tokens_unionid_and_a_utf8_profile() {
    let h = start().await;
    h.sim.add_user(SimUser {
        key: "carol".into(),
        nickname: "陈小花🌸✨".into(),
        sex: 2,
        province: "广东".into(),
        city: "深圳".into(),
        country: "中国".into(),
        headimgurl: "https://thirdwx.qlogo.cn/mmopen/carol/132".into(),
        privileges: vec!["chinaunicom".into()],
        phone: None,
        snapshot: false,
    });
    h.sim.set_browser_user("carol");
    let callback = authorize(
        &h,
        AppKind::OfficialAccount,
        OFFICIAL,
        OAuthScope::UserInfo,
        "s1",
    )
    .await;
    assert_eq!(
        callback.as_str().split('?').next(),
        Some("https://app.example/cb")
    );
    assert_eq!(
        query(&callback, "from").as_deref(),
        Some("test"),
        "the redirect_uri's own query is kept"
    );
    assert_eq!(query(&callback, "state").as_deref(), Some("s1"));
    let code = Code::new(query(&callback, "code").unwrap());

    let app_creds = creds(OFFICIAL, OFFICIAL_SECRET);
    let tokens = h
        .client
        .exchange_web_code(&app_creds, &code, Deadline::none())
        .await
        .unwrap();
    assert_eq!(tokens.openid.as_str(), h.sim.openid(OFFICIAL, "carol"));
    assert_eq!(
        tokens.unionid.clone().map(String::from),
        h.sim.unionid(OFFICIAL, "carol")
    );
    assert_eq!(tokens.granted_scope(), OAuthScope::UserInfo);
    assert!(!tokens.is_snapshot_user);

    let info = h
        .client
        .user_info(&tokens.access_token, &tokens.openid, Deadline::none())
        .await
        .unwrap();
    assert_eq!(info.nickname, "陈小花🌸✨");
    assert_eq!(
        (info.sex, info.city.as_str(), info.privileges.len()),
        (2, "深圳", 1)
    );
    assert_eq!(info.unionid, tokens.unionid);

    let reused = h
        .client
        .exchange_web_code(&app_creds, &code, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(reused.kind(), Some(ErrorKind::CodeUsed));
}

#[tokio::test]
async fn sns_answers_json_labelled_text_plain_and_the_client_reads_it() {
    let h = start().await;
    let code = h.sim.mint_oauth_code(OFFICIAL, "alice", "snsapi_base");
    let raw = reqwest::get(format!(
        "{}/sns/oauth2/access_token?appid={OFFICIAL}&secret={OFFICIAL_SECRET}&code={code}&grant_type=authorization_code",
        h.running.base_url
    ))
    .await
    .unwrap();
    assert!(
        raw.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "the quirk is on"
    );
    let code = Code::new(h.sim.mint_oauth_code(OFFICIAL, "alice", "snsapi_base"));
    h.client
        .exchange_web_code(&creds(OFFICIAL, OFFICIAL_SECRET), &code, Deadline::none())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_base_scope_token_has_no_unionid_and_may_not_read_userinfo() {
    let h = start().await;
    let callback = authorize(
        &h,
        AppKind::OfficialAccount,
        OFFICIAL,
        OAuthScope::Base,
        "s2",
    )
    .await;
    let code = Code::new(query(&callback, "code").unwrap());
    let tokens = h
        .client
        .exchange_web_code(&creds(OFFICIAL, OFFICIAL_SECRET), &code, Deadline::none())
        .await
        .unwrap();
    assert!(tokens.unionid.is_none());
    assert_eq!(tokens.granted_scope(), OAuthScope::Base);
    let error = h
        .client
        .user_info(&tokens.access_token, &tokens.openid, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::Unauthorized));
}

#[tokio::test]
async fn website_login_goes_through_qrconnect() {
    let h = start().await;
    let callback = authorize(&h, AppKind::Website, WEBSITE, OAuthScope::Login, "s3").await;
    let code = Code::new(query(&callback, "code").unwrap());
    let tokens = h
        .client
        .exchange_web_code(&creds(WEBSITE, WEBSITE_SECRET), &code, Deadline::none())
        .await
        .unwrap();
    assert_eq!(tokens.granted_scope(), OAuthScope::Login);
    assert_eq!(
        tokens.unionid.map(String::from),
        h.sim.unionid(OFFICIAL, "demo-user"),
        "one person across apps"
    );
}

#[tokio::test]
async fn a_declining_user_comes_back_with_state_only() {
    let h = start().await;
    h.sim.set_consent(Consent::Deny);
    let callback = authorize(
        &h,
        AppKind::OfficialAccount,
        OFFICIAL,
        OAuthScope::UserInfo,
        "s4",
    )
    .await;
    assert_eq!(query(&callback, "state").as_deref(), Some("s4"));
    assert_eq!(query(&callback, "code"), None);
}

#[tokio::test]
async fn refresh_renews_the_access_token_and_bad_refresh_tokens_are_rejected() {
    let h = start().await;
    let code = Code::new(h.sim.mint_oauth_code(OFFICIAL, "alice", "snsapi_userinfo"));
    let tokens = h
        .client
        .exchange_web_code(&creds(OFFICIAL, OFFICIAL_SECRET), &code, Deadline::none())
        .await
        .unwrap();
    h.sim.advance_clock(std::time::Duration::from_secs(7300));
    let expired = h
        .client
        .user_info(&tokens.access_token, &tokens.openid, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(expired.kind(), Some(ErrorKind::ExpiredCredential));
    assert!(
        !h.client
            .check_web_token(&tokens.access_token, &tokens.openid, Deadline::none())
            .await
            .unwrap()
    );

    let renewed = h
        .client
        .refresh_web_token(&app(OFFICIAL), &tokens.refresh_token, Deadline::none())
        .await
        .unwrap();
    assert_eq!(renewed.openid, tokens.openid);
    assert!(
        h.client
            .check_web_token(&renewed.access_token, &renewed.openid, Deadline::none())
            .await
            .unwrap()
    );
    h.client
        .user_info(&renewed.access_token, &renewed.openid, Deadline::none())
        .await
        .unwrap();

    let bogus = WebRefreshToken::new("not-a-refresh-token");
    let error = h
        .client
        .refresh_web_token(&app(OFFICIAL), &bogus, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::InvalidRefreshToken));

    h.sim
        .advance_clock(std::time::Duration::from_secs(31 * 86_400));
    let stale = h
        .client
        .refresh_web_token(&app(OFFICIAL), &tokens.refresh_token, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(stale.kind(), Some(ErrorKind::InvalidRefreshToken));
}

#[tokio::test]
async fn a_snapshot_user_is_flagged() {
    let h = start().await;
    let mut user = h.sim.user("snap");
    user.snapshot = true;
    h.sim.add_user(user);
    let code = Code::new(h.sim.mint_oauth_code(OFFICIAL, "snap", "snsapi_userinfo"));
    let tokens = h
        .client
        .exchange_web_code(&creds(OFFICIAL, OFFICIAL_SECRET), &code, Deadline::none())
        .await
        .unwrap();
    assert!(tokens.is_snapshot_user);
    assert_ne!(
        tokens.openid.as_str(),
        h.sim.openid(OFFICIAL, "snap"),
        "snapshot ids are virtual"
    );
}

#[tokio::test]
async fn sns_auth_checks_the_openid() {
    let h = start().await;
    let code = Code::new(h.sim.mint_oauth_code(OFFICIAL, "alice", "snsapi_base"));
    let tokens = h
        .client
        .exchange_web_code(&creds(OFFICIAL, OFFICIAL_SECRET), &code, Deadline::none())
        .await
        .unwrap();
    assert!(
        h.client
            .check_web_token(&tokens.access_token, &tokens.openid, Deadline::none())
            .await
            .unwrap()
    );
    let bob = wechat_client::OpenId::new(h.sim.openid(OFFICIAL, "bob")).unwrap();
    assert!(
        !h.client
            .check_web_token(&tokens.access_token, &bob, Deadline::none())
            .await
            .unwrap()
    );
    assert_eq!(h.sim.calls(Endpoint::SnsAuth), 2);
}

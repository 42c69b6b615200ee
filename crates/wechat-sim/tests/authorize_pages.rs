//! The consent pages: `/connect/oauth2/authorize` and `/connect/qrconnect`.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use url::Url;
use wechat_sim::{AppKind, Consent, SimApp, SimConfig};

const CALLBACK: &str = "https://app.example.com/wechat/callback";

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// GET an authorize page with this exact query string (order matters).
async fn open_page(h: &Harness, path: &str, raw_query: &str) -> reqwest::Response {
    h.http
        .get(format!("{}?{raw_query}", h.url(path)))
        .send()
        .await
        .unwrap()
}

fn authorize_query(app_id: &str, redirect_uri: &str, scope: &str, state: &str) -> String {
    format!(
        "appid={app_id}&redirect_uri={}&response_type=code&scope={scope}&state={state}",
        encode(redirect_uri)
    )
}

/// The query parameters of a redirect's Location.
fn redirect_params(response: &reqwest::Response) -> (Url, Vec<(String, String)>) {
    assert_eq!(response.status(), 302);
    let location = response.headers()[LOCATION].to_str().unwrap();
    let url = Url::parse(location).unwrap();
    let params = url.query_pairs().into_owned().collect();
    (url, params)
}

async fn assert_error_page(response: reqwest::Response, code: Option<&str>) {
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("参数错误"), "{page}");
    if let Some(code) = code {
        assert!(page.contains(code), "{code} missing from {page}");
    }
}

#[tokio::test]
async fn authorize_redirects_to_the_callback_with_code_and_state() {
    let h = start().await;
    h.sim.set_browser_user("alice");
    let query = authorize_query(OFFICIAL, CALLBACK, "snsapi_userinfo", "xyz123");
    let response = open_page(
        &h,
        "/connect/oauth2/authorize",
        &format!("{query}#wechat_redirect"),
    )
    .await;
    let (url, params) = redirect_params(&response);
    assert_eq!(url.host_str(), Some("app.example.com"));
    assert_eq!(url.path(), "/wechat/callback");
    assert_eq!(params[0].0, "code");
    assert_eq!(params[1], ("state".to_owned(), "xyz123".to_owned()));
    let exchanged = h
        .oauth_exchange(OFFICIAL, OFFICIAL_SECRET, &params[0].1)
        .await;
    assert_eq!(exchanged.text("openid"), h.sim.openid(OFFICIAL, "alice"));
    assert_eq!(exchanged.text("scope"), "snsapi_userinfo");
}

#[tokio::test]
async fn the_code_is_appended_to_a_callback_that_already_has_a_query() {
    let h = start().await;
    let query = authorize_query(
        OFFICIAL,
        "https://app.example.com/cb?next=/home&x=1#/spa",
        "snsapi_base",
        "s",
    );
    let response = open_page(&h, "/connect/oauth2/authorize", &query).await;
    let (url, params) = redirect_params(&response);
    assert_eq!(params[0], ("next".to_owned(), "/home".to_owned()));
    assert_eq!(params[1], ("x".to_owned(), "1".to_owned()));
    assert_eq!(params[2].0, "code");
    assert_eq!(params[3], ("state".to_owned(), "s".to_owned()));
    assert_eq!(url.fragment(), Some("/spa"));
}

#[tokio::test]
async fn parameters_out_of_the_documented_order_get_an_error_page() {
    let h = start().await;
    let swapped = format!(
        "redirect_uri={}&appid={OFFICIAL}&response_type=code&scope=snsapi_base&state=s",
        encode(CALLBACK)
    );
    assert_error_page(
        open_page(&h, "/connect/oauth2/authorize", &swapped).await,
        None,
    )
    .await;
    let bad_type = format!(
        "appid={OFFICIAL}&redirect_uri={}&response_type=token&scope=snsapi_base&state=s",
        encode(CALLBACK)
    );
    assert_error_page(
        open_page(&h, "/connect/oauth2/authorize", &bad_type).await,
        None,
    )
    .await;
    let with_extras = format!(
        "{}&forcePopup=true&connect_redirect=1",
        authorize_query(OFFICIAL, CALLBACK, "snsapi_base", "s")
    );
    let response = open_page(&h, "/connect/oauth2/authorize", &with_extras).await;
    assert_eq!(response.status(), 302);
}

#[tokio::test]
async fn authorize_error_pages_carry_the_documented_codes() {
    let h = start().await;
    let page = "/connect/oauth2/authorize";
    let empty_appid = authorize_query("", CALLBACK, "snsapi_base", "s");
    assert_error_page(open_page(&h, page, &empty_appid).await, Some("10012")).await;
    let unknown_appid = authorize_query("wx-unknown", CALLBACK, "snsapi_base", "s");
    assert_error_page(open_page(&h, page, &unknown_appid).await, Some("10012")).await;
    let no_redirect =
        format!("appid={OFFICIAL}&redirect_uri=&response_type=code&scope=snsapi_base&state=s");
    assert_error_page(open_page(&h, page, &no_redirect).await, Some("10011")).await;
    let no_scope = authorize_query(OFFICIAL, CALLBACK, "", "s");
    assert_error_page(open_page(&h, page, &no_scope).await, Some("10010")).await;
    let login_scope = authorize_query(OFFICIAL, CALLBACK, "snsapi_login", "s");
    assert_error_page(open_page(&h, page, &login_scope).await, Some("10005")).await;
    let website_on_oa_page = authorize_query(WEBSITE, CALLBACK, "snsapi_login", "s");
    assert_error_page(
        open_page(&h, page, &website_on_oa_page).await,
        Some("10016"),
    )
    .await;
    let userinfo_on_qr = authorize_query(WEBSITE, CALLBACK, "snsapi_userinfo", "s");
    assert_error_page(
        open_page(&h, "/connect/qrconnect", &userinfo_on_qr).await,
        Some("10005"),
    )
    .await;
}

#[tokio::test]
async fn a_long_or_odd_state_fails_on_authorize_but_not_on_qrconnect() {
    let h = start().await;
    let long_state = "a".repeat(235);
    let on_authorize = authorize_query(OFFICIAL, CALLBACK, "snsapi_base", &long_state);
    assert_error_page(
        open_page(&h, "/connect/oauth2/authorize", &on_authorize).await,
        None,
    )
    .await;
    let odd_state = authorize_query(OFFICIAL, CALLBACK, "snsapi_base", "a-b");
    assert_error_page(
        open_page(&h, "/connect/oauth2/authorize", &odd_state).await,
        None,
    )
    .await;
    let max_state = authorize_query(OFFICIAL, CALLBACK, "snsapi_base", &"a".repeat(128));
    assert_eq!(
        open_page(&h, "/connect/oauth2/authorize", &max_state)
            .await
            .status(),
        302
    );
    let on_qr = authorize_query(WEBSITE, CALLBACK, "snsapi_login", &long_state);
    let response = open_page(&h, "/connect/qrconnect", &on_qr).await;
    let (_, params) = redirect_params(&response);
    assert_eq!(params[1], ("state".to_owned(), long_state));
}

#[tokio::test]
async fn the_callback_host_must_match_the_configured_domain() {
    let mut config = SimConfig::demo();
    let mut oa = SimApp::new(
        "wxd0000000000000aa",
        "secret-aa",
        AppKind::OfficialAccount,
        None,
    );
    oa.oauth_domain = Some("app.example.com".to_owned());
    config.apps.push(oa);
    let h = start_with(config).await;
    let wrong_host = authorize_query(
        "wxd0000000000000aa",
        "https://pay.example.com/cb",
        "snsapi_base",
        "s",
    );
    assert_error_page(
        open_page(&h, "/connect/oauth2/authorize", &wrong_host).await,
        Some("10003"),
    )
    .await;
    let right_host = authorize_query("wxd0000000000000aa", CALLBACK, "snsapi_base", "s");
    assert_eq!(
        open_page(&h, "/connect/oauth2/authorize", &right_host)
            .await
            .status(),
        302
    );
}

#[tokio::test]
async fn a_refusing_user_is_sent_back_with_state_only() {
    let h = start().await;
    h.sim.set_consent(Consent::Deny);
    let query = authorize_query(WEBSITE, CALLBACK, "snsapi_login", "abc");
    let response = open_page(&h, "/connect/qrconnect", &query).await;
    let (_, params) = redirect_params(&response);
    assert_eq!(params, vec![("state".to_owned(), "abc".to_owned())]);
}

//! The browser's side of web login, one redirect at a time: the shim's
//! authorize URL, WeChat's (the simulator's) consent redirect, the callback,
//! and the landing on `return_to`.

use reqwest::StatusCode;
use url::Url;

use crate::TestApp;

/// A response seen by a browser that does not follow redirects.
#[derive(Debug)]
pub struct Hop {
    /// Its status.
    pub status: StatusCode,
    /// `Location`, parsed, for a redirect.
    pub location: Option<Url>,
    /// Every header, for the security headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body (an error page, for a 4xx).
    pub body: String,
}

/// A browser-like HTTP client that never follows redirects, so each hop shows.
pub fn browser() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Where the `302 Found` answering a GET of `url` points.
pub async fn redirect_of(url: &str) -> Url {
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND, "{url}");
    Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
}

/// GETs `url` without following a redirect.
pub async fn get(app: &TestApp, url: &str) -> Hop {
    let response = app.http.get(url).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let location = headers
        .get(reqwest::header::LOCATION)
        .map(|value| Url::parse(value.to_str().unwrap()).unwrap());
    let body = response.text().await.unwrap();
    Hop {
        status,
        location,
        headers,
        body,
    }
}

/// The shim's authorize URL for `app_id` with these query parameters.
pub fn authorize_url(app: &TestApp, app_id: &str, params: &[(&str, &str)]) -> String {
    let mut url = Url::parse(&format!("{}/oauth/{app_id}/authorize", app.http_base())).unwrap();
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    url.into()
}

/// The value of query parameter `name` of `url`.
pub fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Opens the authorize URL and lets WeChat answer: the callback URL WeChat
/// sends the browser to (with `code` and `state`, or only `state`).
pub async fn consent(app: &TestApp, authorize: &str) -> Url {
    let to_wechat = get(app, authorize).await;
    assert_eq!(to_wechat.status, StatusCode::FOUND, "{}", to_wechat.body);
    let wechat = to_wechat.location.unwrap();
    let to_callback = get(app, wechat.as_str()).await;
    assert_eq!(
        to_callback.status,
        StatusCode::FOUND,
        "WeChat's page: {}",
        to_callback.body
    );
    to_callback.location.unwrap()
}

/// Follows a callback URL: where the shim sends the browser back to.
pub async fn land(app: &TestApp, callback: &Url) -> Url {
    let back = get(app, callback.as_str()).await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    back.location.unwrap()
}

/// The whole browser flow: authorize, consent, callback; the `return_to` URL
/// the browser lands on.
pub async fn web_login(app: &TestApp, app_id: &str, params: &[(&str, &str)]) -> Url {
    let callback = consent(app, &authorize_url(app, app_id, params)).await;
    land(app, &callback).await
}

//! The browser's side of web login, one redirect at a time: the shim's
//! authorize URL, WeChat's (the simulator's) consent redirect, the callback,
//! and the landing on `return_to`.
//!
//! A [`Browser`] keeps the cookies the shim sets, as a real browser would (the
//! login cookie binds a login to the browser that started it); a fresh
//! `Browser` is a second browser, or an attacker's.

use std::sync::{Arc, Mutex};

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

impl Hop {
    /// The error page's reason (`x-wechat-identity-error`), if any.
    pub fn error(&self) -> Option<&str> {
        self.headers
            .get("x-wechat-identity-error")
            .and_then(|value| value.to_str().ok())
    }
}

/// A browser-like HTTP client that never follows redirects (so each hop
/// shows) and keeps cookies. Cookies are kept by name for every host and
/// port, as browsers do for one host; `Max-Age=0` deletes one. Enough for
/// the shim on 127.0.0.1, not a general cookie jar.
#[derive(Debug, Clone)]
pub struct Browser {
    client: reqwest::Client,
    cookies: Arc<Mutex<Vec<(String, String)>>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with no cookies.
    pub fn new() -> Self {
        Self {
            client: browser(),
            cookies: Arc::default(),
        }
    }

    /// GETs `url` with this browser's cookies, without following a redirect,
    /// and keeps the cookies the response sets.
    pub async fn get(&self, url: &str) -> Hop {
        let mut request = self.client.get(url);
        if let Some(header) = self.cookie_header() {
            request = request.header(reqwest::header::COOKIE, header);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all(reqwest::header::SET_COOKIE) {
            self.keep(set.to_str().unwrap());
        }
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

    /// The cookie named `name`, if this browser holds it.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .find(|(held, _)| held == name)
            .map(|(_, value)| value.clone())
    }

    /// Sets (or replaces) a cookie, as another page of the site could.
    pub fn set_cookie(&self, name: &str, value: &str) {
        let mut cookies = self.cookies.lock().unwrap();
        cookies.retain(|(held, _)| held != name);
        cookies.push((name.to_owned(), value.to_owned()));
    }

    /// Forgets every cookie.
    pub fn clear_cookies(&self) {
        self.cookies.lock().unwrap().clear();
    }

    fn cookie_header(&self) -> Option<String> {
        let cookies = self.cookies.lock().unwrap();
        (!cookies.is_empty()).then(|| {
            cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep(&self, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|pair| pair.trim().split_once('=')) else {
            return;
        };
        let deleted = parts.any(|attribute| attribute.trim().eq_ignore_ascii_case("max-age=0"));
        let mut cookies = self.cookies.lock().unwrap();
        cookies.retain(|(held, _)| held != name);
        if !deleted {
            cookies.push((name.to_owned(), value.to_owned()));
        }
    }
}

/// A plain HTTP client that never follows redirects and keeps no cookies.
pub fn browser() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Where the `302 Found` answering `browser`'s GET of `url` points.
pub async fn redirect_of(browser: &Browser, url: &str) -> Url {
    let hop = browser.get(url).await;
    assert_eq!(hop.status, StatusCode::FOUND, "{url}: {}", hop.body);
    hop.location.unwrap()
}

/// GETs `url` in the app's browser without following a redirect.
pub async fn get(app: &TestApp, url: &str) -> Hop {
    app.browser.get(url).await
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

/// Opens the authorize URL in the app's browser and lets WeChat answer: the
/// callback URL WeChat sends the browser to (with `code` and `state`, or only
/// `state`).
pub async fn consent(app: &TestApp, authorize: &str) -> Url {
    consent_in(&app.browser, authorize).await
}

/// [`consent`] in `browser`.
pub async fn consent_in(browser: &Browser, authorize: &str) -> Url {
    let to_wechat = browser.get(authorize).await;
    assert_eq!(to_wechat.status, StatusCode::FOUND, "{}", to_wechat.body);
    let wechat = to_wechat.location.unwrap();
    let to_callback = browser.get(wechat.as_str()).await;
    assert_eq!(
        to_callback.status,
        StatusCode::FOUND,
        "WeChat's page: {}",
        to_callback.body
    );
    to_callback.location.unwrap()
}

/// Follows a callback URL in the app's browser: where the shim sends the
/// browser back to.
pub async fn land(app: &TestApp, callback: &Url) -> Url {
    land_in(&app.browser, callback).await
}

/// [`land`] in `browser`.
pub async fn land_in(browser: &Browser, callback: &Url) -> Url {
    let back = browser.get(callback.as_str()).await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    back.location.unwrap()
}

/// The whole browser flow: authorize, consent, callback; the `return_to` URL
/// the browser lands on.
pub async fn web_login(app: &TestApp, app_id: &str, params: &[(&str, &str)]) -> Url {
    let callback = consent(app, &authorize_url(app, app_id, params)).await;
    land(app, &callback).await
}

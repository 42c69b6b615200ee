//! The browser's way through WeChat web login:
//! `GET /oauth/{app_id}/authorize` redirects to WeChat with a cookie that
//! binds the login to the browser; `GET /oauth/{app_id}/callback` sends the
//! browser back to the allowlisted `return_to` with a ticket, or with
//! `error=access_denied` when the user declined. Anything wrong with the
//! request is a plain error page and no redirect.
//!
//! The routes parse requests and render answers; what happens is decided in
//! `service::web_callback`. Both routes sit behind the shim's per-client rate
//! limit, its concurrency limit and its request timeout (`http::limits`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use tracing::Instrument;
use url::Url;
use wechat_client::Deadline;

use crate::error::ApiError;
use crate::http::pages::{error_page, redirect};
use crate::service::Services;
use crate::service::web_callback::{AuthorizeRequestParams, CallbackRequest};

/// What the OAuth routes need.
#[derive(Debug, Clone)]
pub(crate) struct OAuthShim {
    /// The service.
    pub services: Arc<Services>,
    /// The shim's public base URL, as browsers and WeChat reach it.
    pub public_base_url: Url,
    /// How long a callback may spend on WeChat and the database.
    pub request_timeout: Duration,
}

/// The authorize and callback routes.
pub(crate) fn oauth_routes(shim: OAuthShim) -> Router {
    Router::new()
        .route("/oauth/{app_id}/authorize", get(authorize))
        .route("/oauth/{app_id}/callback", get(callback))
        .with_state(shim)
}

impl OAuthShim {
    /// Where WeChat sends the browser back for `app_id`; the host must be the
    /// app's configured callback domain in the WeChat console.
    pub(crate) fn callback_url(&self, app_id: &str) -> String {
        format!(
            "{}/oauth/{app_id}/callback",
            self.public_base_url.as_str().trim_end_matches('/'),
        )
    }
}

async fn authorize(
    State(shim): State<OAuthShim>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = match Params::parse(query.as_deref()) {
        Ok(params) => params,
        Err(error) => return error_page(&error),
    };
    let cookies = cookie_headers(&headers);
    let started = shim.services.authorize(&AuthorizeRequestParams {
        app_id: &app_id,
        return_to: params.get("return_to"),
        scope: params.get("scope"),
        caller_state: params.get("state"),
        callback_url: &shim.callback_url(&app_id),
        cookies: &cookies,
    });
    match started {
        Ok(started) => {
            let mut response = redirect(&started.wechat_url);
            match HeaderValue::from_str(&started.set_cookie) {
                Ok(cookie) => {
                    response.headers_mut().insert(header::SET_COOKIE, cookie);
                    response
                }
                Err(error) => error_page(&ApiError::internal(error)),
            }
        }
        Err(error) => error_page(&error),
    }
}

async fn callback(
    State(shim): State<OAuthShim>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = match Params::parse(query.as_deref()) {
        Ok(params) => params,
        Err(error) => return error_page(&error),
    };
    let request = CallbackRequest {
        app_id,
        state: params.get("state").map(str::to_owned),
        code: params.get("code").map(str::to_owned),
        cookies: cookie_headers(&headers),
        deadline: Deadline::after(shim.request_timeout),
    };
    // The browser may go away (WeChat's double redirect aborts the first
    // request): the login still completes, so that the repeat can answer it.
    let services = shim.services.clone();
    let work = tokio::spawn(
        async move { services.web_callback(request).await }.instrument(tracing::Span::current()),
    );
    match work.await {
        Ok(Ok(location)) => redirect(&location),
        Ok(Err(error)) => error_page(&error),
        Err(error) => error_page(&ApiError::internal(error)),
    }
}

/// The request's `Cookie` headers.
fn cookie_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::to_owned)
        .collect()
}

/// Query parameters, each at most once.
#[derive(Debug, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let query = query.unwrap_or_default();
        if query.len() > 8192 {
            return Err(ApiError::field("query", "is too long"));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if pairs.iter().any(|(seen, _)| *seen == key) {
                return Err(ApiError::field(
                    key.into_owned(),
                    "must appear at most once",
                ));
            }
            pairs.push((key.into_owned(), value.into_owned()));
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_may_not_repeat() {
        assert!(Params::parse(Some("a=1&b=2")).is_ok());
        assert!(Params::parse(Some("return_to=x&return_to=y")).is_err());
        assert_eq!(
            Params::parse(Some("return_to=https%3A%2F%2Fa.example%2Fcb%3Fx%3D1"))
                .expect("parses")
                .get("return_to"),
            Some("https://a.example/cb?x=1")
        );
    }
}

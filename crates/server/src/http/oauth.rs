//! The browser's way through WeChat web login:
//! `GET /oauth/{app_id}/authorize` stores a state and redirects to WeChat;
//! `GET /oauth/{app_id}/callback` checks the state, finishes the login and
//! sends the browser back to the allowlisted `return_to` with a ticket, or
//! with `error=access_denied` when the user declined. Anything wrong with the
//! request is a plain error page and no redirect.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use secrecy::ExposeSecret;
use storage::StateUse;
use url::Url;
use wechat_client::Deadline;

use crate::apps::Wanted;
use crate::config::ResolvedApp;
use crate::error::ApiError;
use crate::http::pages::{error_page, redirect};
use crate::return_to;
use crate::service::{Services, WebOutcome};
use crate::validate;

/// How long a repeated callback waits for the first one to finish.
const REPEAT_WAIT: Duration = Duration::from_secs(10);
const REPEAT_POLL: Duration = Duration::from_millis(100);

/// What the OAuth routes need.
#[derive(Debug, Clone)]
pub struct OAuthShim {
    /// The service.
    pub services: Arc<Services>,
    /// The shim's public base URL, as browsers and WeChat reach it.
    pub public_base_url: Url,
    /// How long a callback may spend on WeChat and the database.
    pub request_timeout: Duration,
}

/// The authorize and callback routes.
pub fn oauth_routes(shim: OAuthShim) -> Router {
    Router::new()
        .route("/oauth/{app_id}/authorize", get(authorize))
        .route("/oauth/{app_id}/callback", get(callback))
        .with_state(shim)
}

impl OAuthShim {
    /// Where WeChat sends the browser back for `app`; the host must be the
    /// app's configured callback domain in the WeChat console.
    pub fn callback_url(&self, app: &ResolvedApp) -> String {
        format!(
            "{}/oauth/{}/callback",
            self.public_base_url.as_str().trim_end_matches('/'),
            app.app_id
        )
    }
}

async fn authorize(
    State(shim): State<OAuthShim>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match Params::parse(query.as_deref()) {
        Ok(params) => params,
        Err(error) => return error_page(&error),
    };
    let start = match shim.services.check_authorize(
        &app_id,
        params.get("return_to"),
        params.get("scope"),
        params.get("state"),
    ) {
        Ok(start) => start,
        Err(error) => return error_page(&error),
    };
    let callback = shim.callback_url(start.app);
    match shim.services.begin_authorize(&start, &callback).await {
        Ok(url) => match Url::parse(&url) {
            Ok(url) => redirect(&url),
            Err(error) => error_page(&ApiError::internal(error)),
        },
        Err(error) => error_page(&error),
    }
}

async fn callback(
    State(shim): State<OAuthShim>,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match Params::parse(query.as_deref()) {
        Ok(params) => params,
        Err(error) => return error_page(&error),
    };
    let request = match CallbackRequest::check(&shim, &app_id, &params) {
        Ok(request) => request,
        Err(error) => return error_page(&error),
    };
    // The browser may go away (WeChat's double redirect aborts the first
    // request): the login still completes, so that the repeat can answer it.
    match tokio::spawn(async move { request.finish(&shim).await }).await {
        Ok(response) => response,
        Err(error) => error_page(&ApiError::internal(error)),
    }
}

/// A callback whose parameters passed their checks.
#[derive(Debug)]
struct CallbackRequest {
    app: ResolvedApp,
    state: String,
    /// `None`: the user declined.
    code: Option<String>,
}

impl CallbackRequest {
    fn check(shim: &OAuthShim, app_id: &str, params: &Params) -> Result<Self, ApiError> {
        let app = shim
            .services
            .apps
            .resolve("app_id", app_id, Wanted::Web)?
            .clone();
        let state = params
            .get("state")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::field("state", "is required"))?;
        wechat_client::OAuthState::new(state.to_owned()).map_err(|_| invalid_state())?;
        let code = params.get("code").filter(|c| !c.is_empty());
        if let Some(code) = code {
            validate::code("code", code)?;
        }
        Ok(Self {
            app,
            state: state.to_owned(),
            code: code.map(str::to_owned),
        })
    }

    async fn finish(self, shim: &OAuthShim) -> Response {
        let services = &shim.services;
        let deadline = Deadline::after(shim.request_timeout);
        let started = tokio::time::Instant::now();
        loop {
            let used = services
                .storage
                .consume_oauth_state(
                    &self.state,
                    &self.app.app_id,
                    self.code.as_deref(),
                    std::time::SystemTime::now(),
                )
                .await;
            let record = match used {
                Err(error) => return error_page(&error.into()),
                Ok(StateUse::Invalid) => return error_page(&invalid_state()),
                Ok(StateUse::Pending) => {
                    if started.elapsed() >= REPEAT_WAIT {
                        return error_page(&ApiError::Unavailable);
                    }
                    tokio::time::sleep(REPEAT_POLL).await;
                    continue;
                }
                Ok(StateUse::RepeatDeclined(record)) => {
                    return self.back(&record, &[("error", "access_denied")]);
                }
                Ok(StateUse::RepeatFailed { record, failure }) => {
                    return self.back(&record, &failure_params(&failure));
                }
                Ok(StateUse::Repeat {
                    record,
                    identity,
                    is_new_user,
                }) => {
                    return match services.ticket_again(&identity, is_new_user).await {
                        Ok(ticket) => self.back(&record, &[("ticket", ticket.expose_secret())]),
                        Err(error) => error_page(&error),
                    };
                }
                Ok(StateUse::First(record)) => record,
            };
            let Some(code) = &self.code else {
                return self.back(&record, &[("error", "access_denied")]);
            };
            return match services
                .finish_web_login(&self.app, &self.state, code, deadline)
                .await
            {
                Ok(WebOutcome::LoggedIn(done)) => {
                    self.back(&record, &[("ticket", done.ticket.expose_secret())])
                }
                Ok(WebOutcome::SnapshotUser) => {
                    self.remember_failure(services, SNAPSHOT_USER).await;
                    self.back(&record, &failure_params(SNAPSHOT_USER))
                }
                Err(error) => {
                    tracing::warn!(app_id = %self.app.app_id, error = %error, "web login failed in the callback");
                    let failure = oauth_error(&error);
                    self.remember_failure(services, failure).await;
                    self.back(&record, &failure_params(failure))
                }
            };
        }
    }

    /// Lets a repeat of this callback answer with the same error at once.
    async fn remember_failure(&self, services: &Services, failure: &str) {
        if let Err(error) = services
            .storage
            .fail_oauth_state(&self.state, failure)
            .await
        {
            tracing::warn!(app_id = %self.app.app_id, error = %error, "could not record a failed web login on its state");
        }
    }

    /// The redirect to the state's `return_to` with `params` and the caller's
    /// state; `return_to` is checked against the allowlist again, in case the
    /// config changed since the authorize request.
    fn back(&self, record: &storage::OAuthStateRecord, params: &[(&str, &str)]) -> Response {
        let Some(url) = return_to::match_allowed(&record.return_to, &self.app.allowed_return_to)
        else {
            return error_page(&ApiError::field(
                "return_to",
                "is no longer an allowed return URL for this app",
            ));
        };
        let mut all = params.to_vec();
        if let Some(state) = &record.caller_state {
            all.push(("state", state));
        }
        redirect(&return_to::with_params(url, &all))
    }
}

/// The failure recorded for a snapshot-page virtual user (WECHAT_API.md §1):
/// `error=access_denied&error_description=snapshot_user`, since the user has to
/// authorize for real.
const SNAPSHOT_USER: &str = "snapshot_user";

/// The `return_to` parameters of a recorded failure.
fn failure_params(failure: &str) -> Vec<(&'static str, &str)> {
    if failure == SNAPSHOT_USER {
        vec![
            ("error", "access_denied"),
            ("error_description", SNAPSHOT_USER),
        ]
    } else {
        vec![("error", failure)]
    }
}

/// RFC 6749 §4.1.2.1 error codes for a login that failed after consent.
fn oauth_error(error: &ApiError) -> &'static str {
    match error {
        ApiError::WeChatUnavailable
        | ApiError::WeChatRateLimited
        | ApiError::Unavailable
        | ApiError::DeadlineExceeded => "temporarily_unavailable",
        _ => "server_error",
    }
}

fn invalid_state() -> ApiError {
    ApiError::field(
        "state",
        "this sign-in link is unknown, expired or already used",
    )
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

    #[test]
    fn failures_after_consent_map_to_oauth_errors() {
        assert_eq!(
            oauth_error(&ApiError::WeChatUnavailable),
            "temporarily_unavailable"
        );
        assert_eq!(
            oauth_error(&ApiError::WeChatCodeInvalid {
                field: "code".into()
            }),
            "server_error"
        );
    }
}

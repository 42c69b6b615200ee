//! The browser flow's server side: starting a WeChat web authorization and
//! finishing it in the callback, up to the single-use ticket that WebLogin or
//! BindUser redeems. The HTTP shim only parses requests and renders what this
//! decides.
//!
//! Nothing is written when a login starts ([`crate::web_binding`] seals its
//! context in the browser's cookie). A callback is checked (its state's MAC,
//! expiry and app, then the cookie sealed for that state) before any database
//! access or WeChat call; only then is the state claimed, the code exchanged,
//! and the login, its web tokens and profile, its ticket and the state's
//! consumption committed in one transaction.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use storage::{IdentityLogin, WebLoginClaim, WebLoginClaimed, WebLoginOutcome, WebTokens};
use url::Url;
use wechat_client::{AuthorizeRequest, Code, Deadline, OAuthScope, OAuthState};

use crate::apps::Wanted;
use crate::config::{AppKind, ResolvedApp};
use crate::error::ApiError;
use crate::metrics::WebLoginEvent;
use crate::return_to;
use crate::web_binding::{BindingError, CheckedState, LoginContext};

use super::{Services, now};

/// WeChat's refresh token lives 30 days (WECHAT_API.md §2).
const WEB_REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often a repeated callback looks whether the first one has finished.
const REPEAT_POLL: Duration = Duration::from_millis(100);
/// How long a claim outlives the callback's own deadline before another
/// callback may take it over (the last transaction may run past the deadline).
const CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// The failure recorded for a snapshot-page virtual user (WECHAT_API.md §1):
/// `error=access_denied&error_description=snapshot_user`, since the user has to
/// authorize for real.
const SNAPSHOT_USER: &str = "snapshot_user";

/// The redirect that starts a browser login.
#[derive(Debug)]
pub(crate) struct AuthorizeRedirect {
    /// WeChat's authorize (or qrconnect) page.
    pub wechat_url: Url,
    /// The `Set-Cookie` value binding the login to this browser.
    pub set_cookie: String,
}

/// An authorize request as the shim received it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthorizeRequestParams<'a> {
    /// The app in the path.
    pub app_id: &'a str,
    /// The `return_to` parameter.
    pub return_to: Option<&'a str>,
    /// The `scope` parameter.
    pub scope: Option<&'a str>,
    /// The caller's `state` parameter.
    pub caller_state: Option<&'a str>,
    /// Where WeChat is to send the browser back.
    pub callback_url: &'a str,
    /// The request's `Cookie` headers (logins already pending in the browser).
    pub cookies: &'a [String],
}

/// A callback as the shim received it.
#[derive(Debug)]
pub(crate) struct CallbackRequest {
    /// The app in the path.
    pub app_id: String,
    /// The `state` parameter.
    pub state: Option<String>,
    /// The `code` parameter; none when the user declined.
    pub code: Option<String>,
    /// The request's `Cookie` headers.
    pub cookies: Vec<String>,
    /// How long the callback may take.
    pub deadline: Deadline,
}

impl Services {
    /// `GET /oauth/{app_id}/authorize`: checks the request (the app is a web
    /// app, `return_to` is on its allowlist, the scope fits the app, the
    /// caller's state is sane) and answers the redirect to WeChat with the
    /// cookie that binds the login to the browser. Writes nothing.
    ///
    /// # Errors
    /// `AppNotFound` for an unknown or mini program app, `FieldInvalid` naming
    /// `return_to`, `scope` or `state`.
    pub(crate) fn authorize(
        &self,
        request: &AuthorizeRequestParams<'_>,
    ) -> Result<AuthorizeRedirect, ApiError> {
        let AuthorizeRequestParams {
            app_id,
            return_to,
            scope,
            caller_state,
            callback_url,
            cookies,
        } = *request;
        if app_id.is_empty() {
            return Err(ApiError::AppNotFound {
                field: "app_id".into(),
            });
        }
        let app = self.apps.resolve("app_id", app_id, Wanted::Web)?;
        let return_to = return_to
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ApiError::field("return_to", "is required"))?;
        let return_to =
            return_to::match_allowed(return_to, &app.allowed_return_to).ok_or_else(|| {
                ApiError::field("return_to", "is not an allowed return URL for this app")
            })?;
        let scope = match app.kind {
            AppKind::Website => OAuthScope::Login,
            _ => match scope.filter(|s| !s.is_empty()) {
                None => OAuthScope::Base,
                Some(value) => match OAuthScope::parse(value) {
                    Some(scope @ (OAuthScope::Base | OAuthScope::UserInfo)) => scope,
                    _ => {
                        return Err(ApiError::field(
                            "scope",
                            "must be snsapi_base or snsapi_userinfo",
                        ));
                    }
                },
            },
        };
        let caller_state = caller_state.filter(|s| !s.is_empty());
        if let Some(state) = caller_state
            && (state.len() > 256 || !state.bytes().all(|b| (0x20..=0x7e).contains(&b)))
        {
            return Err(ApiError::field(
                "state",
                "must be at most 256 printable ASCII characters",
            ));
        }
        let started = self
            .web_binding
            .start(
                &app.app_id,
                scope.as_str(),
                return_to.as_str(),
                caller_state,
                cookies.iter().map(String::as_str),
                now(),
            )
            .map_err(|error| match error {
                BindingError::TooLarge => {
                    ApiError::field("return_to", "together with state, is too long")
                }
                other => ApiError::internal(other),
            })?;
        let state = OAuthState::new(started.state)
            .map_err(|_| ApiError::internal("a generated state failed its own check"))?;
        let wechat_url = self.wechat.authorize_url(&AuthorizeRequest {
            app_id: &app.app_id,
            kind: app.kind,
            redirect_uri: callback_url,
            scope,
            state: &state,
            force_popup: false,
        });
        let wechat_url = wechat_url
            .ok_or_else(|| ApiError::internal("web login was started for a mini program"))?;
        self.metrics.web_login(WebLoginEvent::Started);
        Ok(AuthorizeRedirect {
            wechat_url: Url::parse(&wechat_url).map_err(ApiError::internal)?,
            set_cookie: started.set_cookie,
        })
    }

    /// `GET /oauth/{app_id}/callback`: where the browser goes next, the
    /// allowlisted `return_to` with `ticket` (or `error`) and the caller's
    /// `state`.
    ///
    /// A state that this service did not issue for this app, or that expired,
    /// or a browser without the cookie sealed for it, is refused before any
    /// database access or WeChat call. WeChat's repeat of a callback (same
    /// state, code and cookie within 30 s, three times at most) gets the first
    /// one's answer, with the same ticket and no second code exchange.
    ///
    /// # Errors
    /// `AppNotFound`, `FieldInvalid` (state, code, return_to),
    /// `LoginSessionMismatch`, `Unavailable` (storage, or a repeat that
    /// waited for the first callback in vain).
    pub(crate) async fn web_callback(&self, request: CallbackRequest) -> Result<Url, ApiError> {
        let app = self.apps.resolve("app_id", &request.app_id, Wanted::Web)?;
        let state = request
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::field("state", "is required"))?;
        let state = self
            .web_binding
            .check_state(&app.app_id, state, now())
            .map_err(|_| {
                self.metrics.web_login(WebLoginEvent::RefusedState);
                invalid_state()
            })?;
        let context = self
            .web_binding
            .open(
                request.cookies.iter().map(String::as_str),
                &state,
                &app.app_id,
            )
            .map_err(|_| {
                self.metrics.web_login(WebLoginEvent::RefusedBinding);
                ApiError::LoginSessionMismatch
            })?;
        let code = request.code.as_deref().filter(|c| !c.is_empty());
        if let Some(code) = code {
            crate::validate::code("code", code)?;
        }
        // Checked against the allowlist again, in case the config changed
        // since the login started.
        let return_to = return_to::match_allowed(&context.return_to, &app.allowed_return_to)
            .ok_or_else(|| {
                ApiError::field(
                    "return_to",
                    "is no longer an allowed return URL for this app",
                )
            })?;
        let back = |params: &[(&str, &str)]| back_to(&return_to, &context, params);
        let outcome = self
            .claimed_outcome(app, &state, code, request.deadline)
            .await?;
        Ok(match outcome {
            WebLoginOutcome::Ticket(ticket) => back(&[("ticket", ticket.expose_secret())]),
            WebLoginOutcome::Failed(failure) => back(&failure_params(&failure)),
        })
    }

    /// Claims the state and answers how its login ended: this callback's own
    /// work, or that of the callback it repeats.
    async fn claimed_outcome(
        &self,
        app: &ResolvedApp,
        state: &CheckedState,
        code: Option<&str>,
        deadline: Deadline,
    ) -> Result<WebLoginOutcome, ApiError> {
        let claim_ttl = deadline.remaining().unwrap_or(Duration::from_secs(30)) + CLAIM_MARGIN;
        loop {
            let claim = WebLoginClaim {
                state_id: state.state.clone(),
                app_id: app.app_id.clone(),
                code: code.map(str::to_owned),
                state_expires_at: state.expires_at,
                claim_ttl,
                at: now(),
            };
            match self.storage.claim_web_login(&claim).await? {
                WebLoginClaimed::Claimed { claimed_at } => {
                    self.metrics.web_login(WebLoginEvent::Claimed);
                    let Some(code) = code else {
                        return Err(ApiError::internal("a declined login was claimed"));
                    };
                    return self
                        .finish_claimed(app, &state.state, claimed_at, code, deadline)
                        .await;
                }
                WebLoginClaimed::Answered(outcome) => {
                    self.metrics.web_login(match (&outcome, code) {
                        (_, None) => WebLoginEvent::Declined,
                        _ => WebLoginEvent::Repeated,
                    });
                    return Ok(outcome);
                }
                WebLoginClaimed::Refused => {
                    self.metrics.web_login(WebLoginEvent::RefusedState);
                    return Err(invalid_state());
                }
                WebLoginClaimed::Pending => {
                    if deadline.remaining().is_some_and(|left| left <= REPEAT_POLL) {
                        return Err(ApiError::Unavailable);
                    }
                    tokio::time::sleep(REPEAT_POLL).await;
                }
            }
        }
    }

    /// Exchanges the code of a claimed state, fetches the profile when the
    /// granted scope allows, and completes the login with its ticket in one
    /// transaction; a failure after consent is recorded for WeChat's repeat.
    async fn finish_claimed(
        &self,
        app: &ResolvedApp,
        state: &str,
        claimed_at: SystemTime,
        code: &str,
        deadline: Deadline,
    ) -> Result<WebLoginOutcome, ApiError> {
        let failure = match self.exchange_web_code(app, code, deadline).await {
            Ok(Some(login)) => {
                match self
                    .storage
                    .complete_web_login(state, claimed_at, &login)
                    .await?
                {
                    Some((_, ticket)) => {
                        self.metrics.web_login(WebLoginEvent::LoggedIn);
                        return Ok(WebLoginOutcome::Ticket(ticket));
                    }
                    None => {
                        tracing::warn!(app_id = %app.app_id, "a web login lost its claim before completing");
                        return Err(ApiError::Unavailable);
                    }
                }
            }
            Ok(None) => SNAPSHOT_USER,
            Err(error) => {
                tracing::warn!(app_id = %app.app_id, error = %error, "web login failed in the callback");
                oauth_error(&error)
            }
        };
        self.metrics.web_login(WebLoginEvent::Failed);
        if !self
            .storage
            .fail_web_login(state, claimed_at, failure, now())
            .await?
        {
            tracing::warn!(app_id = %app.app_id, "a failed web login had lost its claim");
        }
        Ok(WebLoginOutcome::Failed(failure.to_owned()))
    }

    /// Exchanges `code` with WeChat (and fetches userinfo when the granted
    /// scope allows): the login to record, or `None` for a snapshot-page
    /// virtual user, whose ids are not real (WECHAT_API.md §1).
    async fn exchange_web_code(
        &self,
        app: &ResolvedApp,
        code: &str,
        deadline: Deadline,
    ) -> Result<Option<IdentityLogin>, ApiError> {
        let credentials = wechat_client::AppCredentials {
            app_id: app.app_id.clone(),
            secret: app.secret.clone(),
        };
        let tokens = self
            .wechat
            .exchange_web_code(&credentials, &Code::new(code), deadline)
            .await
            .map_err(|error| ApiError::from_wechat(error, "code"))?;
        if tokens.is_snapshot_user {
            return Ok(None);
        }
        let profile = if tokens.granted_scope().grants_userinfo() {
            match self
                .wechat
                .user_info(&tokens.access_token, &tokens.openid, deadline)
                .await
            {
                Ok(info) => Some(super::convert::profile_fields(info)),
                // The login stands without a profile; GetProfile can refresh it later.
                Err(error) => {
                    tracing::warn!(app_id = %app.app_id, error = %error, "userinfo failed after a web login; continuing without a profile");
                    None
                }
            }
        } else {
            None
        };
        let at = now();
        Ok(Some(IdentityLogin {
            app_id: app.app_id.clone(),
            app_kind: app.kind,
            openid: tokens.openid,
            unionid: tokens.unionid,
            scope: Some(tokens.scope.clone()),
            is_snapshot: false,
            session_key: None,
            web_tokens: Some(WebTokens {
                access_token: SecretString::from(tokens.access_token.expose_secret()),
                access_expires_at: super::web_token_expiry(at, tokens.expires_in),
                refresh_token: SecretString::from(tokens.refresh_token.expose_secret()),
                refresh_expires_at: at + WEB_REFRESH_TTL,
                scope: tokens.scope,
            }),
            profile,
            at,
        }))
    }
}

/// `return_to` with `params` and the caller's state.
fn back_to(return_to: &Url, context: &LoginContext, params: &[(&str, &str)]) -> Url {
    let mut all = params.to_vec();
    if let Some(state) = &context.caller_state {
        all.push(("state", state));
    }
    return_to::with_params(return_to.clone(), &all)
}

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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_snapshot_user_goes_back_as_access_denied_with_a_description() {
        assert_eq!(
            failure_params(SNAPSHOT_USER),
            vec![
                ("error", "access_denied"),
                ("error_description", SNAPSHOT_USER)
            ]
        );
        assert_eq!(
            failure_params("server_error"),
            vec![("error", "server_error")]
        );
    }
}

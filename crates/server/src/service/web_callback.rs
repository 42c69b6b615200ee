//! The browser flow's server side: starting a WeChat web authorization and
//! finishing it in the callback, up to the single-use ticket that WebLogin or
//! BindUser redeems.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use storage::{AppKind, IdentityLogin, IdentityRef, NewOAuthState, WebTokens};
use url::Url;
use wechat_client::{AuthorizeRequest, Code, Deadline, OAuthScope, OAuthState, WebAppKind};

use crate::apps::Wanted;
use crate::config::{AppKindName, ResolvedApp};
use crate::error::ApiError;
use crate::return_to;

use super::{Services, now};

/// WeChat's refresh token lives 30 days (WECHAT_API.md §2).
const WEB_REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A validated authorize request, before the state is stored.
#[derive(Debug)]
pub struct AuthorizeStart<'a> {
    /// The Official Account or website app.
    pub app: &'a ResolvedApp,
    /// `snsapi_base` or `snsapi_userinfo` (Official Accounts), `snsapi_login` (websites).
    pub scope: OAuthScope,
    /// The allowlisted return URL.
    pub return_to: Url,
    /// The caller's own state, handed back untouched.
    pub caller_state: Option<String>,
}

/// What the first callback of a state produced.
#[derive(Debug)]
pub enum WebOutcome {
    /// The user logged in; the ticket is ready.
    LoggedIn(WebLoginDone),
    /// WeChat answered for a snapshot-page virtual user, whose ids are not
    /// real (WECHAT_API.md §1): nothing is recorded, the user has to authorize
    /// for real.
    SnapshotUser,
}

/// A web login that succeeded.
#[derive(Debug)]
pub struct WebLoginDone {
    /// The identity that logged in.
    pub identity: IdentityRef,
    /// Whether this login created the user.
    pub is_new_user: bool,
    /// The ticket for WebLogin or BindUser.
    pub ticket: SecretString,
}

impl Services {
    /// Checks an authorize request: the app is a web app, `return_to` is on its
    /// allowlist, the scope fits the app, the caller's state is sane.
    ///
    /// # Errors
    /// `AppNotFound` for an unknown or mini program app, `FieldInvalid` naming
    /// `return_to`, `scope` or `state`.
    pub fn check_authorize<'a>(
        &'a self,
        app_id: &str,
        return_to: Option<&str>,
        scope: Option<&str>,
        caller_state: Option<&str>,
    ) -> Result<AuthorizeStart<'a>, ApiError> {
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
            AppKindName::Website => OAuthScope::Login,
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
        Ok(AuthorizeStart {
            app,
            scope,
            return_to,
            caller_state: caller_state.map(str::to_owned),
        })
    }

    /// Stores a state for `start` and returns WeChat's authorize URL, whose
    /// callback is `callback_url`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn begin_authorize(
        &self,
        start: &AuthorizeStart<'_>,
        callback_url: &str,
    ) -> Result<String, ApiError> {
        let token = self
            .storage
            .create_oauth_state(&NewOAuthState {
                app_id: start.app.app_id.clone(),
                scope: start.scope.as_str().to_owned(),
                return_to: start.return_to.to_string(),
                caller_state: start.caller_state.clone(),
                at: now(),
            })
            .await?;
        let state = OAuthState::new(token.expose_secret())
            .map_err(|_| ApiError::internal("a generated state failed its own check"))?;
        Ok(self.wechat.authorize_url(&AuthorizeRequest {
            app_id: &start.app.app_id,
            kind: match start.app.kind {
                AppKindName::Website => WebAppKind::Website,
                _ => WebAppKind::OfficialAccount,
            },
            redirect_uri: callback_url,
            scope: start.scope,
            state: &state,
            force_popup: false,
        }))
    }

    /// The first callback of a state: exchanges `code`, fetches the profile
    /// when the granted scope allows, records the login, mints a ticket and
    /// remembers the outcome on the state for WeChat's double redirect.
    ///
    /// # Errors
    /// WeChat's answer mapped by [`ApiError::from_wechat`], storage failures.
    pub async fn finish_web_login(
        &self,
        app: &ResolvedApp,
        state_token: &str,
        code: &str,
        deadline: Deadline,
    ) -> Result<WebOutcome, ApiError> {
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
            return Ok(WebOutcome::SnapshotUser);
        }
        let scope = tokens.granted_scope();
        let profile = if scope.grants_userinfo() {
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
        let login = IdentityLogin {
            app_id: app.app_id.clone(),
            app_kind: match app.kind {
                AppKindName::Website => AppKind::Website,
                _ => AppKind::OfficialAccount,
            },
            openid: tokens.openid.clone(),
            unionid: tokens.unionid.clone(),
            scope: Some(tokens.scope.clone()),
            is_snapshot: false,
            session_key: None,
            web_tokens: Some(WebTokens {
                access_token: SecretString::from(tokens.access_token.expose_secret()),
                access_expires_at: super::web_token_expiry(at, tokens.expires_in),
                refresh_token: SecretString::from(tokens.refresh_token.expose_secret()),
                refresh_expires_at: at + WEB_REFRESH_TTL,
                scope: tokens.scope.clone(),
            }),
            profile,
            at,
        };
        let outcome = self.storage.record_login(&login).await?;
        let identity = IdentityRef {
            app_id: app.app_id.clone(),
            openid: tokens.openid,
        };
        let ticket = self
            .storage
            .create_ticket(&identity, outcome.is_new_user, at)
            .await?;
        self.storage
            .complete_oauth_state(state_token, &identity, outcome.is_new_user)
            .await?;
        Ok(WebOutcome::LoggedIn(WebLoginDone {
            identity,
            is_new_user: outcome.is_new_user,
            ticket,
        }))
    }

    /// A fresh ticket for an identity an earlier callback logged in (WeChat's
    /// double redirect).
    ///
    /// # Errors
    /// Storage failures; `IdentityNotFound` if it was unbound in between.
    pub async fn ticket_again(
        &self,
        identity: &IdentityRef,
        is_new_user: bool,
    ) -> Result<SecretString, ApiError> {
        Ok(self
            .storage
            .create_ticket(identity, is_new_user, now())
            .await?)
    }
}

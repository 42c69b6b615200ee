//! Session tokens: open, rotate, verify, revoke; and the app access token.

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use storage::{IssuedSession, Rotation, SessionId};

use crate::apps::Wanted;
use crate::error::ApiError;
use crate::pb;
use crate::sessions::jwt::{Claims, new_token_id};
use crate::sessions::verify_cache::Verdict;
use crate::validate;

use crate::metrics::SessionEvent;

use super::{Ctx, Services, now, timestamp, timestamp_secs};

/// Whole seconds since the epoch, as JWT times are (0 before it).
fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Services {
    /// The answer for a session just opened, counted.
    pub(super) fn issued_session(&self, issued: &IssuedSession) -> pb::Session {
        self.metrics.session(SessionEvent::Issued);
        self.session_message(issued)
    }

    /// A fresh access token for `issued`, with its refresh token. The access
    /// token never outlives the session (`created_at + max_lifetime`).
    fn session_message(&self, issued: &IssuedSession) -> pb::Session {
        let session = &issued.session;
        let iat = unix_secs(now());
        let session_ends = session
            .created_at
            .checked_add(self.lifetimes.session.max_lifetime)
            .map_or(u64::MAX, unix_secs);
        let exp = iat
            .saturating_add(self.lifetimes.access.as_secs())
            .min(session_ends);
        let (issuer, audience) = self.keys.issuer_audience();
        let access_token = self.keys.sign(&Claims {
            sub: session.user_id.to_string(),
            sid: session.session_id.to_string(),
            app: session.app_id.to_string(),
            openid: session.openid.to_string(),
            iat,
            exp,
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            jti: new_token_id(),
        });
        pb::Session {
            access_token,
            access_token_expires_at: Some(timestamp_secs(exp)),
            refresh_token: issued.refresh_token.expose_secret().to_owned(),
            refresh_token_expires_at: Some(timestamp(issued.refresh_expires_at)),
            session_id: session.session_id.to_string(),
        }
    }

    /// `RefreshToken`: rotation with reuse detection, a grace for a lost
    /// answer, and the session's maximum lifetime.
    ///
    /// # Errors
    /// `REFRESH_TOKEN_INVALID`, `REFRESH_TOKEN_REUSED` (the session is
    /// revoked), `SESSION_EXPIRED`.
    pub(crate) async fn refresh_token(
        &self,
        _ctx: &Ctx,
        request: pb::RefreshTokenRequest,
    ) -> Result<pb::RefreshTokenResponse, ApiError> {
        validate::opaque_token("refresh_token", &request.refresh_token)?;
        let (issued, event) = match self
            .storage
            .rotate_refresh_token(&request.refresh_token, self.lifetimes.session, now())
            .await?
        {
            Rotation::Rotated(issued) => (issued, SessionEvent::Refreshed),
            Rotation::Grace(issued) => (issued, SessionEvent::Grace),
            Rotation::Reused { session_id } => {
                self.metrics.session(SessionEvent::Reused);
                tracing::warn!(%session_id, "retired refresh token presented: session revoked");
                return Err(ApiError::RefreshTokenReused);
            }
            Rotation::Expired { session_id } => {
                self.metrics.session(SessionEvent::Expired);
                tracing::info!(%session_id, "session past its max lifetime");
                return Err(ApiError::SessionExpired);
            }
            Rotation::Invalid => return Err(ApiError::RefreshTokenInvalid),
        };
        self.metrics.session(event);
        Ok(pb::RefreshTokenResponse {
            session: Some(self.session_message(&issued)),
        })
    }

    /// `VerifyToken`: never fails for a bad token, answers `active = false`.
    ///
    /// # Errors
    /// `FIELD_INVALID` for an empty token; storage unavailable.
    pub(crate) async fn verify_token(
        &self,
        _ctx: &Ctx,
        request: pb::VerifyTokenRequest,
    ) -> Result<pb::VerifyTokenResponse, ApiError> {
        if request.access_token.is_empty() {
            return Err(ApiError::field("access_token", "is required"));
        }
        let (verdict, lookup) = self
            .verify_cache
            .verify(&self.keys, &request.access_token, now())
            .await?;
        self.metrics.verify_lookup(lookup);
        match verdict {
            Verdict::Active { claims, user_id } => Ok(pb::VerifyTokenResponse {
                active: true,
                user_id: user_id.to_string(),
                session_id: claims.sid.clone(),
                app_id: claims.app.clone(),
                openid: claims.openid.clone(),
                expires_at: Some(timestamp_secs(claims.exp)),
            }),
            Verdict::Inactive(reason) => {
                tracing::debug!(reason, "access token inactive");
                Ok(pb::VerifyTokenResponse::default())
            }
        }
    }

    /// `RevokeSession`.
    ///
    /// # Errors
    /// `SESSION_NOT_FOUND` for an unknown session_id; an unknown refresh token succeeds.
    pub(crate) async fn revoke_session(
        &self,
        ctx: &Ctx,
        request: pb::RevokeSessionRequest,
    ) -> Result<pb::RevokeSessionResponse, ApiError> {
        use pb::revoke_session_request::Target;
        let actor = ctx.caller.name.to_string();
        match request.target {
            Some(Target::SessionId(id)) => {
                validate::session_id("session_id", &id)?;
                let session_id = SessionId::from_str(&id).map_err(|_| ApiError::SessionNotFound)?;
                if !self
                    .storage
                    .revoke_session(&session_id, "revoked by caller", &actor, now())
                    .await?
                {
                    // Already revoked succeeds; unknown does not.
                    self.storage
                        .session(&session_id)
                        .await?
                        .ok_or(ApiError::SessionNotFound)?;
                }
            }
            Some(Target::RefreshToken(token)) => {
                validate::opaque_token("refresh_token", &token)?;
                // Unknown tokens succeed too: the answer says nothing about a token.
                self.storage
                    .revoke_by_refresh_token(&token, "revoked by caller", &actor, now())
                    .await?;
            }
            None => return Err(validate::oneof_missing("target")),
        }
        Ok(pb::RevokeSessionResponse {})
    }

    /// `GetAppAccessToken`: the shared cache's token, for admin callers only
    /// (see [`crate::permissions`]).
    ///
    /// # Errors
    /// `APP_NOT_FOUND`, WeChat errors of a fetch.
    pub(crate) async fn app_access_token(
        &self,
        ctx: &Ctx,
        request: pb::GetAppAccessTokenRequest,
    ) -> Result<pb::GetAppAccessTokenResponse, ApiError> {
        validate::app_id("app_id", &request.app_id, false)?;
        let app = self
            .apps
            .resolve("app_id", &request.app_id, Wanted::TokenHolder)?;
        let token = self
            .tokens
            .current(&app.app_id, ctx.deadline)
            .await
            .map_err(|error| ApiError::from_wechat(error, "app_id"))?;
        Ok(pb::GetAppAccessTokenResponse {
            access_token: token.access_token.expose_secret().to_owned(),
            expires_at: Some(timestamp(token.expires_at)),
        })
    }
}

//! Logins: a mini program's `wx.login` code, or a web OAuth ticket.

use secrecy::SecretString;
use storage::{AppKind, CodeClaim, IdentityLogin, IdentityRef, LoginOutcome};
use wechat_client::{AppCredentials, Code, Endpoint};

use crate::apps::Wanted;
use crate::config::ResolvedApp;
use crate::error::ApiError;
use crate::pb;
use crate::validate;

use super::{Ctx, Services, now};

impl Services {
    /// `MiniProgramLogin`.
    ///
    /// # Errors
    /// See the RPC's comment in identity.proto.
    pub(crate) async fn mini_program_login(
        &self,
        ctx: &Ctx,
        request: pb::MiniProgramLoginRequest,
    ) -> Result<pb::MiniProgramLoginResponse, ApiError> {
        validate::app_id("app_id", &request.app_id, true)?;
        validate::code("code", &request.code)?;
        let app = self
            .apps
            .resolve("app_id", &request.app_id, Wanted::MiniProgram)?;
        let login = self.exchange_code(ctx, app, &request.code, "code").await?;
        // One transaction: the identity is never recorded without its session.
        let (outcome, issued) = self
            .storage
            .record_login_with_session(&login, self.lifetimes.session, &ctx.caller.name)
            .await?;
        log_merge(ctx, &outcome);
        Ok(pb::MiniProgramLoginResponse {
            user_id: outcome.user_id.to_string(),
            openid: login.openid.to_string(),
            unionid: login.unionid.map(String::from).unwrap_or_default(),
            is_new_user: outcome.is_new_user,
            session: Some(self.issued_session(&issued)),
        })
    }

    /// `WebLogin`: redeems a ticket from the OAuth callback and opens a
    /// session, in one transaction (a ticket is spent only by a login that
    /// committed).
    ///
    /// # Errors
    /// `TICKET_INVALID` for an unknown, expired or spent ticket.
    pub(crate) async fn web_login(
        &self,
        ctx: &Ctx,
        request: pb::WebLoginRequest,
    ) -> Result<pb::WebLoginResponse, ApiError> {
        validate::opaque_token("ticket", &request.ticket)?;
        let redeemed = self
            .storage
            .redeem_ticket(
                &request.ticket,
                self.lifetimes.session,
                &ctx.caller.name,
                now(),
            )
            .await?
            .ok_or_else(|| ApiError::TicketInvalid {
                field: "ticket".into(),
            })?;
        Ok(pb::WebLoginResponse {
            user_id: redeemed.user_id.to_string(),
            openid: redeemed.ticket.identity.openid.to_string(),
            unionid: redeemed.unionid.map(String::from).unwrap_or_default(),
            is_new_user: redeemed.ticket.is_new_user,
            session: Some(self.issued_session(&redeemed.session)),
        })
    }

    /// Exchanges a `wx.login` code once and records the login; answers the
    /// identity that logged in.
    pub(super) async fn exchange_login_code(
        &self,
        ctx: &Ctx,
        app: &ResolvedApp,
        code: &str,
        code_field: &str,
    ) -> Result<IdentityRef, ApiError> {
        let login = self.exchange_code(ctx, app, code, code_field).await?;
        let outcome = self.storage.record_login(&login).await?;
        log_merge(ctx, &outcome);
        Ok(IdentityRef {
            app_id: login.app_id,
            openid: login.openid,
        })
    }

    /// Exchanges a `wx.login` code with WeChat once: a code already exchanged
    /// is refused without asking WeChat, and a code WeChat may have consumed
    /// in a failed attempt is remembered so that its retry answers
    /// UNAVAILABLE, not CODE_USED. Answers the login to record.
    async fn exchange_code(
        &self,
        ctx: &Ctx,
        app: &ResolvedApp,
        code: &str,
        code_field: &str,
    ) -> Result<IdentityLogin, ApiError> {
        self.claim_code(app, code, code_field).await?;
        let credentials = AppCredentials {
            app_id: app.app_id.clone(),
            secret: app.secret.clone(),
        };
        let session = match self
            .wechat
            .code_to_session(&credentials, &Code::new(code), ctx.deadline)
            .await
        {
            Ok(session) => session,
            Err(error) => {
                self.after_failed_exchange(app, code, Endpoint::JsCode2Session, &error)
                    .await;
                return Err(ApiError::from_wechat(error, code_field));
            }
        };
        Ok(IdentityLogin {
            app_id: app.app_id.clone(),
            app_kind: AppKind::MiniProgram,
            openid: session.openid,
            unionid: session.unionid,
            scope: None,
            is_snapshot: false,
            session_key: Some(SecretString::from(session.session_key.expose_secret())),
            web_tokens: None,
            profile: None,
            at: now(),
        })
    }

    /// Claims a single-use WeChat code (a `wx.login` or phone code) before it
    /// is sent: a code the service exchanged before is refused without asking
    /// WeChat, and one a failed attempt may have spent answers UNAVAILABLE.
    pub(super) async fn claim_code(
        &self,
        app: &ResolvedApp,
        code: &str,
        code_field: &str,
    ) -> Result<(), ApiError> {
        match self.storage.claim_code(&app.app_id, code, now()).await? {
            CodeClaim::Fresh => Ok(()),
            CodeClaim::AlreadyUsed => Err(ApiError::WeChatCodeUsed {
                field: code_field.into(),
            }),
            CodeClaim::LostToFailedAttempt => Err(ApiError::WeChatUnavailable),
        }
    }

    /// Records what a failed exchange of `code` at `exchange` did to the
    /// code, so that a retry of the same code is answered right.
    pub(super) async fn after_failed_exchange(
        &self,
        app: &ResolvedApp,
        code: &str,
        exchange: Endpoint,
        error: &wechat_client::Error,
    ) {
        // A failure elsewhere (fetching the app token the exchange needs, or
        // its cache) happened before the code was sent.
        let bookkeeping = if error.never_sent() || error.endpoint() != Some(exchange) {
            // WeChat never saw the code: the caller may try it again.
            self.storage.release_code(&app.app_id, code).await
        } else if error.is_unavailable()
            || matches!(error, wechat_client::Error::DeadlineExceeded { .. })
        {
            self.storage.mark_code_ambiguous(&app.app_id, code).await
        } else {
            // WeChat answered definitively; the code stays spent.
            Ok(())
        };
        if let Err(storage_error) = bookkeeping {
            tracing::warn!(app_id = %app.app_id, error = %storage_error, "could not record the outcome of a failed code exchange");
        }
    }
}

fn log_merge(ctx: &Ctx, outcome: &LoginOutcome) {
    if let Some(merge) = &outcome.merged {
        tracing::info!(kept = %merge.kept_user_id, merged = %merge.merged_user_id, caller = %ctx.caller.name, "unionid proved two users one person: merged");
    }
}

//! Accounts: binding identities, profiles and phone numbers.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use storage::{
    Account, BindRequest, IdentityRef, ImportedIdentity, Phone, UserLookup, UserProfile, WebTokens,
};
use wechat_client::{
    AppId, Code, Endpoint, ErrorKind, OpenId, UnionId, WebAccessToken, WebRefreshToken,
};

use crate::apps::Wanted;
use crate::config::ResolvedApp;
use crate::error::ApiError;
use crate::pb;
use crate::validate;

use super::{Ctx, Services, convert, now, parse_user_id};

/// A web access token this close to expiry is refreshed before use.
const WEB_TOKEN_MARGIN: Duration = Duration::from_secs(60);

fn identity_ref(prefix: &str, identity: &pb::WechatIdentity) -> Result<IdentityRef, ApiError> {
    let app_field = format!("{prefix}.app_id");
    let openid_field = format!("{prefix}.openid");
    validate::app_id(&app_field, &identity.app_id, false)?;
    validate::wechat_id(&openid_field, &identity.openid)?;
    Ok(IdentityRef {
        app_id: AppId::new(identity.app_id.clone())
            .map_err(|e| ApiError::field(app_field, e.to_string()))?,
        openid: OpenId::new(identity.openid.clone())
            .map_err(|e| ApiError::field(openid_field, e.to_string()))?,
    })
}

/// A BindUser proof whose fields are valid and whose app is configured.
enum BindProof<'a> {
    Ticket(String),
    MiniProgramCode {
        app: &'a ResolvedApp,
        code: String,
    },
    Identity {
        app: &'a ResolvedApp,
        identity: IdentityRef,
    },
}

impl Services {
    /// The identity `prefix` names, with its app, checked in the contract's
    /// order: its fields, then its app (of any kind), before any record is read.
    fn known_identity(
        &self,
        prefix: &str,
        identity: &pb::WechatIdentity,
    ) -> Result<(IdentityRef, &ResolvedApp), ApiError> {
        let checked = identity_ref(prefix, identity)?;
        let app = self
            .apps
            .resolve(&format!("{prefix}.app_id"), &identity.app_id, Wanted::Any)?;
        Ok((checked, app))
    }

    /// `GetPhoneNumber`.
    ///
    /// # Errors
    /// See the RPC's comment in identity.proto.
    pub(crate) async fn phone_number(
        &self,
        ctx: &Ctx,
        request: pb::GetPhoneNumberRequest,
    ) -> Result<pb::GetPhoneNumberResponse, ApiError> {
        validate::app_id("app_id", &request.app_id, true)?;
        validate::code("code", &request.code)?;
        let user_id = match request.user_id.as_str() {
            "" => None,
            value => Some(parse_user_id("user_id", value)?),
        };
        let app = self
            .apps
            .resolve("app_id", &request.app_id, Wanted::MiniProgram)?;
        if let Some(user_id) = &user_id {
            // Before the code is spent: an unknown user must not cost the caller its code.
            self.storage
                .profile(&UserLookup::UserId(*user_id))
                .await?
                .ok_or(ApiError::UserNotFound)?;
        }
        self.claim_code(app, &request.code, "code").await?;
        let info = match self
            .tokens
            .phone_number(&app.app_id, &Code::new(&request.code), None, ctx.deadline)
            .await
        {
            Ok(info) => info,
            Err(error) => {
                self.after_failed_exchange(
                    app,
                    &request.code,
                    Endpoint::GetUserPhoneNumber,
                    &error,
                )
                .await;
                return Err(ApiError::from_wechat(error, "code"));
            }
        };
        let phone = Phone {
            phone_number: info.phone_number,
            pure_phone_number: info.pure_phone_number,
            country_code: info.country_code,
        };
        if let Some(user_id) = &user_id {
            self.storage.set_phone(user_id, &phone, now()).await?;
        }
        Ok(pb::GetPhoneNumberResponse {
            phone_number: phone.phone_number,
            pure_phone_number: phone.pure_phone_number,
            country_code: phone.country_code,
        })
    }

    /// `BindUser`.
    ///
    /// # Errors
    /// See the RPC's comment in identity.proto.
    pub(crate) async fn bind_user(
        &self,
        ctx: &Ctx,
        request: pb::BindUserRequest,
    ) -> Result<pb::BindUserResponse, ApiError> {
        use pb::bind_user_request::{Account as AccountField, Proof};
        // The contract's order: every field (the account's first), then the
        // proof's app, then the account's user; only then is the proof spent.
        let account = match &request.account {
            Some(AccountField::UserId(value)) => Account::UserId(parse_user_id("user_id", value)?),
            Some(AccountField::ExternalId(value)) => {
                validate::external_id("external_id", value)?;
                Account::ExternalId(value.clone())
            }
            None => return Err(validate::oneof_missing("account")),
        };
        let proof = match request.proof {
            Some(Proof::Ticket(ticket)) => {
                validate::opaque_token("ticket", &ticket)?;
                BindProof::Ticket(ticket)
            }
            Some(Proof::MiniProgramCode(code)) => {
                validate::app_id("mini_program_code.app_id", &code.app_id, true)?;
                validate::code("mini_program_code.code", &code.code)?;
                let app = self.apps.resolve(
                    "mini_program_code.app_id",
                    &code.app_id,
                    Wanted::MiniProgram,
                )?;
                BindProof::MiniProgramCode {
                    app,
                    code: code.code,
                }
            }
            Some(Proof::Identity(identity)) => {
                let (identity, app) = self.known_identity("identity", &identity)?;
                BindProof::Identity { app, identity }
            }
            None => return Err(validate::oneof_missing("proof")),
        };
        if let Account::UserId(user_id) = &account {
            self.storage
                .profile(&UserLookup::UserId(*user_id))
                .await?
                .ok_or(ApiError::UserNotFound)?;
        }
        let (identity, import) = match proof {
            BindProof::Ticket(presented) => {
                // Spent in the bind's own transaction: only a bind that
                // commits spends it, so after ALREADY_EXISTS the caller may
                // present it again with replace_existing.
                let profile = self
                    .storage
                    .bind_by_ticket(
                        &presented,
                        &account,
                        request.replace_existing,
                        &ctx.caller.name,
                        now(),
                    )
                    .await?
                    .ok_or_else(|| ApiError::TicketInvalid {
                        field: "ticket".into(),
                    })?;
                return Ok(pb::BindUserResponse {
                    profile: Some(convert::profile(profile)),
                });
            }
            BindProof::MiniProgramCode { app, code } => {
                let identity = self
                    .exchange_login_code(ctx, app, &code, "mini_program_code.code")
                    .await?;
                (identity, None)
            }
            BindProof::Identity { app, identity } => (
                identity,
                Some(ImportedIdentity {
                    app_kind: app.kind,
                    unionid: None,
                }),
            ),
        };
        let profile = self
            .storage
            .bind(&BindRequest {
                identity,
                import,
                account,
                replace_existing: request.replace_existing,
                actor: ctx.caller.name.to_string(),
                at: now(),
            })
            .await?;
        Ok(pb::BindUserResponse {
            profile: Some(convert::profile(profile)),
        })
    }

    /// `UnbindUser`.
    ///
    /// # Errors
    /// `APP_NOT_FOUND`, `IDENTITY_NOT_FOUND`.
    pub(crate) async fn unbind_user(
        &self,
        ctx: &Ctx,
        request: pb::UnbindUserRequest,
    ) -> Result<pb::UnbindUserResponse, ApiError> {
        let identity = request
            .identity
            .as_ref()
            .ok_or_else(|| ApiError::field("identity", "is required"))?;
        let (identity, _) = self.known_identity("identity", identity)?;
        let profile = self
            .storage
            .unbind(&identity, &ctx.caller.name, now())
            .await?;
        Ok(pb::UnbindUserResponse {
            profile: Some(convert::profile(profile)),
        })
    }

    /// `GetProfile`, optionally refreshed from WeChat first.
    ///
    /// # Errors
    /// See the RPC's comment in identity.proto.
    pub(crate) async fn profile(
        &self,
        ctx: &Ctx,
        request: pb::GetProfileRequest,
    ) -> Result<pb::GetProfileResponse, ApiError> {
        use pb::get_profile_request::Lookup;
        let (lookup, not_found) = match &request.lookup {
            Some(Lookup::UserId(value)) => (
                UserLookup::UserId(parse_user_id("user_id", value)?),
                ApiError::UserNotFound,
            ),
            Some(Lookup::ExternalId(value)) => {
                validate::external_id("external_id", value)?;
                (
                    UserLookup::ExternalId(value.clone()),
                    ApiError::UserNotFound,
                )
            }
            Some(Lookup::Identity(identity)) => {
                let (identity, _) = self.known_identity("identity", identity)?;
                (
                    UserLookup::Identity {
                        app_id: identity.app_id,
                        openid: identity.openid,
                    },
                    ApiError::IdentityNotFound,
                )
            }
            Some(Lookup::Unionid(value)) => {
                validate::wechat_id("unionid", value)?;
                let unionid = UnionId::new(value.clone())
                    .map_err(|e| ApiError::field("unionid", e.to_string()))?;
                (UserLookup::UnionId(unionid), ApiError::UserNotFound)
            }
            None => return Err(validate::oneof_missing("lookup")),
        };
        let user = if request.refresh_from_wechat {
            let user = self.storage.profile(&lookup).await?.ok_or(not_found)?;
            self.refresh_from_wechat(ctx, user).await?
        } else {
            let (user, source) = self.profile_cache.profile(&lookup).await?;
            self.metrics.profile_lookup(source);
            user.ok_or(not_found)?
        };
        Ok(pb::GetProfileResponse {
            profile: Some(convert::profile(user)),
        })
    }

    async fn refresh_from_wechat(
        &self,
        ctx: &Ctx,
        user: UserProfile,
    ) -> Result<UserProfile, ApiError> {
        let authorization = self
            .storage
            .latest_web_authorization(&user.user_id)
            .await?
            .ok_or(ApiError::NoWebAuthorization)?;
        let mut tokens = authorization.tokens;
        let expiring = tokens
            .access_expires_at
            .duration_since(now())
            .map_or(true, |left| left < WEB_TOKEN_MARGIN);
        if expiring {
            tokens = self
                .renew_web_tokens(ctx, &authorization.app_id, tokens)
                .await?;
        }
        let access = |tokens: &WebTokens| WebAccessToken::new(tokens.access_token.expose_secret());
        let info = match self
            .wechat
            .user_info(&access(&tokens), &authorization.openid, ctx.deadline)
            .await
        {
            Ok(info) => info,
            // WeChat dropped a token that had not expired yet: renew once and retry.
            Err(error)
                if matches!(
                    error.kind(),
                    Some(ErrorKind::InvalidCredential | ErrorKind::ExpiredCredential)
                ) =>
            {
                tokens = self
                    .renew_web_tokens(ctx, &authorization.app_id, tokens)
                    .await?;
                self.wechat
                    .user_info(&access(&tokens), &authorization.openid, ctx.deadline)
                    .await
                    .map_err(|error| ApiError::from_wechat(error, "refresh_from_wechat"))?
            }
            Err(error) => return Err(ApiError::from_wechat(error, "refresh_from_wechat")),
        };
        let fields = convert::profile_fields(info);
        let at = now();
        self.storage
            .update_profile(&user.user_id, &fields, at)
            .await?;
        self.storage
            .store_web_tokens(&authorization.app_id, &authorization.openid, &tokens, at)
            .await?;
        self.storage
            .profile(&UserLookup::UserId(user.user_id))
            .await?
            .ok_or(ApiError::UserNotFound)
    }

    async fn renew_web_tokens(
        &self,
        ctx: &Ctx,
        app_id: &AppId,
        tokens: WebTokens,
    ) -> Result<WebTokens, ApiError> {
        let refresh = WebRefreshToken::new(tokens.refresh_token.expose_secret());
        let renewed = self
            .wechat
            .refresh_web_token(app_id, &refresh, ctx.deadline)
            .await
            .map_err(|error| ApiError::from_wechat(error, "refresh_from_wechat"))?;
        let at: SystemTime = now();
        Ok(WebTokens {
            access_token: SecretString::from(renewed.access_token.expose_secret()),
            access_expires_at: super::web_token_expiry(at, renewed.expires_in),
            refresh_token: SecretString::from(renewed.refresh_token.expose_secret()),
            // Whether WeChat restarts the refresh token's 30 days is unverified (§3): keep the old expiry.
            refresh_expires_at: tokens.refresh_expires_at,
            scope: renewed.scope,
        })
    }
}

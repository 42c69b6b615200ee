//! Mini program login, phone number and session check (WECHAT_API.md §7, §10, §11).

use serde::Deserialize;

use crate::client::WeChatClient;
use crate::credentials::AppCredentials;
use crate::crypto;
use crate::deadline::Deadline;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::transport::Request;
use wechat_types::{AccessToken, Code, SessionKey};
use wechat_types::{AppId, OpenId, UnionId};

/// What `jscode2session` answers for a `wx.login` code (§7). `expires_in` is no
/// longer sent, so none is kept.
#[derive(Debug, Clone, Deserialize)]
pub struct CodeSession {
    /// The user's id in this mini program.
    pub openid: OpenId,
    /// The user's current session key; a newer login replaces it.
    pub session_key: SessionKey,
    /// The user's unionid, when the mini program is bound to an Open Platform account.
    #[serde(default)]
    pub unionid: Option<UnionId>,
}

/// A phone number from `getuserphonenumber` (§10).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneInfo {
    /// With the country prefix for numbers outside mainland China.
    pub phone_number: String,
    /// Without the country code.
    pub pure_phone_number: String,
    /// The country code as a string; WeChat sends a string or a number (§10).
    #[serde(deserialize_with = "crate::api::string_or_number")]
    pub country_code: String,
    /// Which app the number was issued to, and when.
    pub watermark: Watermark,
}

impl std::fmt::Debug for PhoneInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneInfo")
            .field("country_code", &self.country_code)
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

/// WeChat's stamp on user data: the app it is for and the issue time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Watermark {
    /// Unix seconds.
    pub timestamp: i64,
    /// The app the data was issued to.
    pub appid: String,
}

#[derive(Deserialize)]
struct PhoneNumberReply {
    phone_info: PhoneInfo,
}

#[derive(Deserialize)]
struct Ack {}

impl WeChatClient {
    /// Exchanges a `wx.login` code for the user's openid and session key (§7).
    ///
    /// # Errors
    /// [`Error::WeChat`] with `InvalidCode` (40029), `CodeUsed` (40163),
    /// `CodeLostToFailedAttempt`, `CodeBlocked` (40226), `RateLimited` (45011),
    /// `AppMisconfigured`, `Busy`; transport errors and [`Error::DeadlineExceeded`].
    pub async fn code_to_session(
        &self,
        app: &AppCredentials,
        code: &Code,
        deadline: Deadline,
    ) -> Result<CodeSession, Error> {
        let request = Request::get(
            Endpoint::JsCode2Session,
            vec![
                ("appid", app.app_id.as_str()),
                ("secret", app.secret.expose_secret()),
                ("js_code", code.expose_secret()),
                ("grant_type", "authorization_code"),
            ],
        );
        self.transport().call(request, deadline).await
    }

    /// Exchanges a phone-number code for the number (§10), with `access_token`
    /// given by the caller. Prefer [`crate::AppTokenManager::phone_number`], which
    /// supplies the token and renews it when WeChat rejects it.
    ///
    /// `openid`, when given, makes WeChat check that the code belongs to that user.
    ///
    /// # Errors
    /// As [`Self::code_to_session`], plus `InvalidCredential`/`ExpiredCredential`
    /// for a stale token and [`Error::Decode`] when the watermark names another app.
    pub async fn user_phone_number(
        &self,
        app_id: &AppId,
        access_token: &AccessToken,
        code: &Code,
        openid: Option<&OpenId>,
        deadline: Deadline,
    ) -> Result<PhoneInfo, Error> {
        let mut body = serde_json::json!({ "code": code.expose_secret() });
        if let Some(openid) = openid {
            body["openid"] = serde_json::Value::from(openid.as_str());
        }
        let request = Request::post_json(
            Endpoint::GetUserPhoneNumber,
            vec![("access_token", access_token.expose_secret())],
            body,
        );
        let reply: PhoneNumberReply = self.transport().call(request, deadline).await?;
        if reply.phone_info.watermark.appid != app_id.as_str() {
            return Err(Error::Decode {
                endpoint: Endpoint::GetUserPhoneNumber,
                detail: "watermark names another app".into(),
            });
        }
        Ok(reply.phone_info)
    }

    /// Asks WeChat whether `session_key` is still the user's current one (§11).
    /// `Ok(false)` when WeChat answers 87009 (the key is stale).
    ///
    /// # Errors
    /// `InvalidOpenId`, stale-token kinds, transport errors.
    pub async fn check_session(
        &self,
        access_token: &AccessToken,
        openid: &OpenId,
        session_key: &SessionKey,
        deadline: Deadline,
    ) -> Result<bool, Error> {
        let signature = crypto::session_key_signature(session_key);
        let request = Request::get(
            Endpoint::CheckSession,
            vec![
                ("access_token", access_token.expose_secret()),
                ("openid", openid.as_str()),
                ("signature", &signature),
                ("sig_method", "hmac_sha256"),
            ],
        );
        match self.transport().call::<Ack>(request, deadline).await {
            Ok(Ack {}) => Ok(true),
            Err(error) if error.kind() == Some(crate::ErrorKind::InvalidSignature) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

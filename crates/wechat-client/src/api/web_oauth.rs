//! Web OAuth for Official Account pages and website QR login (WECHAT_API.md §1–§6).

use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::client::WeChatClient;
use crate::credentials::AppCredentials;
use crate::deadline::Deadline;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::transport::Request;
use wechat_types::{AppId, AppKind, InvalidId, OpenId, UnionId};
use wechat_types::{Code, WebAccessToken, WebRefreshToken};

/// What the user is asked to grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthScope {
    /// `snsapi_base`: silent, openid only.
    Base,
    /// `snsapi_userinfo`: a consent page, then profile and unionid.
    UserInfo,
    /// `snsapi_login`: website QR login.
    Login,
}

impl OAuthScope {
    /// WeChat's name of the scope.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthScope::Base => "snsapi_base",
            OAuthScope::UserInfo => "snsapi_userinfo",
            OAuthScope::Login => "snsapi_login",
        }
    }

    /// Parses WeChat's name of a scope.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "snsapi_base" => Some(OAuthScope::Base),
            "snsapi_userinfo" => Some(OAuthScope::UserInfo),
            "snsapi_login" => Some(OAuthScope::Login),
            _ => None,
        }
    }

    /// Whether a token of this scope may call `sns/userinfo`.
    pub fn grants_userinfo(self) -> bool {
        !matches!(self, OAuthScope::Base)
    }
}

/// The `state` passed through the authorize page: 1 to 128 bytes of
/// `[A-Za-z0-9]`; longer values make WeChat show an error page (§1).
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthState(String);

impl OAuthState {
    /// Validates a state value.
    ///
    /// # Errors
    /// [`InvalidId`] when empty, longer than 128 bytes, or not alphanumeric.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
        let value = value.into();
        if value.is_empty()
            || value.len() > 128
            || !value.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(InvalidId::new(
                "state",
                "must be 1 to 128 ASCII letters and digits",
            ));
        }
        Ok(Self(value))
    }

    /// The state as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The state binds a browser to a login in progress: not for logs.
        f.write_str("OAuthState(<redacted>)")
    }
}

/// A browser authorization to send a user to.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest<'a> {
    /// The Official Account or website app.
    pub app_id: &'a AppId,
    /// Which authorize page: an Official Account's (`connect/oauth2/authorize`,
    /// §1) or a website's (`connect/qrconnect`, §6). A mini program has none.
    pub kind: AppKind,
    /// Where WeChat sends the browser back; its host must be the app's
    /// configured callback domain (§13).
    pub redirect_uri: &'a str,
    /// Ignored for websites, which always use `snsapi_login`.
    pub scope: OAuthScope,
    /// Returned untouched on the callback.
    pub state: &'a OAuthState,
    /// Show the consent popup even when WeChat would skip it (`forcePopup=true`, §1).
    pub force_popup: bool,
}

/// What `sns/oauth2/access_token` and `sns/oauth2/refresh_token` answer (§2, §3).
#[derive(Debug, Clone, Deserialize)]
pub struct WebAccessTokenResponse {
    /// The user's web access token, valid `expires_in` seconds.
    pub access_token: WebAccessToken,
    /// Seconds of validity (7200).
    pub expires_in: u64,
    /// The refresh token, valid 30 days.
    pub refresh_token: WebRefreshToken,
    /// The user's id in this app.
    pub openid: OpenId,
    /// The granted scopes, comma-separated.
    pub scope: String,
    /// Only for `snsapi_userinfo`/`snsapi_login` and an app bound to an Open Platform account.
    #[serde(default)]
    pub unionid: Option<UnionId>,
    /// Whether this is a snapshot-page virtual user whose ids are not real (§1).
    #[serde(default, rename = "is_snapshotuser", deserialize_with = "flag")]
    pub is_snapshot_user: bool,
}

impl WebAccessTokenResponse {
    /// The most capable scope among those granted.
    pub fn granted_scope(&self) -> OAuthScope {
        let scopes: Vec<_> = self
            .scope
            .split(',')
            .filter_map(|s| OAuthScope::parse(s.trim()))
            .collect();
        [OAuthScope::Login, OAuthScope::UserInfo]
            .into_iter()
            .find(|s| scopes.contains(s))
            .unwrap_or(OAuthScope::Base)
    }
}

/// A profile from `sns/userinfo` (§4).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct WebUserInfo {
    /// The user's id in this app.
    pub openid: OpenId,
    /// UTF-8, often CJK and emoji.
    #[serde(default)]
    pub nickname: String,
    /// 0 unknown, 1 male, 2 female; documented as a number, some fixtures send a string.
    #[serde(default, deserialize_with = "sex")]
    pub sex: u8,
    /// Province, as the user set it.
    #[serde(default)]
    pub province: String,
    /// City.
    #[serde(default)]
    pub city: String,
    /// Country.
    #[serde(default)]
    pub country: String,
    /// Avatar URL; empty when the user has none.
    #[serde(default)]
    pub headimgurl: String,
    /// Privileges such as `chinaunicom`.
    #[serde(default, rename = "privilege")]
    pub privileges: Vec<String>,
    /// When bound to an Open Platform account.
    #[serde(default)]
    pub unionid: Option<UnionId>,
}

impl fmt::Debug for WebUserInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data stays out of logs; the ids are enough to debug with.
        f.debug_struct("WebUserInfo")
            .field("openid", &self.openid)
            .field("unionid", &self.unionid)
            .finish_non_exhaustive()
    }
}

fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(
        Option::<serde_json::Value>::deserialize(deserializer)?.is_some_and(|v| {
            v.as_i64() == Some(1) || v.as_str() == Some("1") || v.as_bool() == Some(true)
        }),
    )
}

fn sex<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    let text = crate::api::string_or_number(deserializer)?;
    Ok(match text.as_str() {
        "1" => 1,
        "2" => 2,
        _ => 0,
    })
}

#[derive(Deserialize)]
struct Ack {}

impl WeChatClient {
    /// The authorize URL to redirect a browser to, with WeChat's parameters in
    /// the exact order its regex match needs (§1) and `#wechat_redirect`;
    /// `None` for a mini program, which has no authorize page.
    pub fn authorize_url(&self, request: &AuthorizeRequest<'_>) -> Option<String> {
        let (page, scope) = match request.kind {
            AppKind::OfficialAccount => ("/connect/oauth2/authorize", request.scope),
            AppKind::Website => ("/connect/qrconnect", OAuthScope::Login),
            AppKind::MiniProgram => return None,
        };
        let redirect: String =
            url::form_urlencoded::byte_serialize(request.redirect_uri.as_bytes()).collect();
        let mut url = format!(
            "{}{page}?appid={}&redirect_uri={redirect}&response_type=code&scope={}&state={}",
            self.open_base(),
            request.app_id.as_str(),
            scope.as_str(),
            request.state.as_str(),
        );
        if request.force_popup {
            url.push_str("&forcePopup=true");
        }
        url.push_str("#wechat_redirect");
        Some(url)
    }

    /// Exchanges a web OAuth code for the user's tokens (§2).
    ///
    /// # Errors
    /// `InvalidCode` (40029), `CodeUsed` (40163), `CodeLostToFailedAttempt`,
    /// `AppMisconfigured` (40013, 40125), `Busy`, transport errors.
    pub async fn exchange_web_code(
        &self,
        app: &AppCredentials,
        code: &Code,
        deadline: Deadline,
    ) -> Result<WebAccessTokenResponse, Error> {
        let request = Request::get(
            Endpoint::SnsAccessToken,
            vec![
                ("appid", app.app_id.as_str()),
                ("secret", app.secret.expose_secret()),
                ("code", code.expose_secret()),
                ("grant_type", "authorization_code"),
            ],
        );
        self.transport().call(request, deadline).await
    }

    /// Renews a user's web access token with the refresh token (§3).
    ///
    /// # Errors
    /// `InvalidRefreshToken` (40030, 42002, 42007): the user must authorize again.
    pub async fn refresh_web_token(
        &self,
        app_id: &AppId,
        refresh_token: &WebRefreshToken,
        deadline: Deadline,
    ) -> Result<WebAccessTokenResponse, Error> {
        let request = Request::get(
            Endpoint::SnsRefreshToken,
            vec![
                ("appid", app_id.as_str()),
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose_secret()),
            ],
        );
        self.transport().call(request, deadline).await
    }

    /// The user's profile (§4), in `zh_CN`.
    ///
    /// # Errors
    /// `Unauthorized` (48001) for a `snsapi_base` token, `InvalidCredential`
    /// (40001), `ExpiredCredential` (42001), `InvalidOpenId` (40003).
    pub async fn user_info(
        &self,
        access_token: &WebAccessToken,
        openid: &OpenId,
        deadline: Deadline,
    ) -> Result<WebUserInfo, Error> {
        let request = Request::get(
            Endpoint::SnsUserInfo,
            vec![
                ("access_token", access_token.expose_secret()),
                ("openid", openid.as_str()),
                ("lang", "zh_CN"),
            ],
        );
        self.transport().call(request, deadline).await
    }

    /// Whether a web access token is still valid for `openid` (§5): `Ok(false)`
    /// for 40014/40001/42001/40003.
    ///
    /// # Errors
    /// Transport errors and other errcodes.
    pub async fn check_web_token(
        &self,
        access_token: &WebAccessToken,
        openid: &OpenId,
        deadline: Deadline,
    ) -> Result<bool, Error> {
        let request = Request::get(
            Endpoint::SnsAuth,
            vec![
                ("access_token", access_token.expose_secret()),
                ("openid", openid.as_str()),
            ],
        );
        match self.transport().call::<Ack>(request, deadline).await {
            Ok(Ack {}) => Ok(true),
            Err(error)
                if matches!(
                    error.kind(),
                    Some(
                        crate::ErrorKind::InvalidCredential
                            | crate::ErrorKind::ExpiredCredential
                            | crate::ErrorKind::InvalidOpenId
                    )
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_must_be_short_and_alphanumeric() {
        assert!(OAuthState::new("abcXYZ019").is_ok());
        assert!(OAuthState::new("a".repeat(128)).is_ok());
        assert!(OAuthState::new("a".repeat(129)).is_err());
        assert!(OAuthState::new("a-b").is_err());
        assert!(OAuthState::new("").is_err());
    }

    #[test]
    fn userinfo_accepts_sex_as_number_or_string_and_utf8_nicknames() {
        let doc: WebUserInfo = serde_json::from_str(
            r#"{"openid":"o1","nickname":"小明🐼","sex":1,"privilege":["chinaunicom"]}"#,
        )
        .expect("documented shape");
        let fixture: WebUserInfo =
            serde_json::from_str(r#"{"openid":"o1","nickname":"x","sex":"2"}"#)
                .expect("string sex");
        assert_eq!((doc.sex, doc.nickname.as_str()), (1, "小明🐼"));
        assert_eq!(fixture.sex, 2);
    }

    #[test]
    fn snapshot_flag_is_read_only_when_one() {
        let base = r#"{"access_token":"a","expires_in":7200,"refresh_token":"r","openid":"o1","scope":"snsapi_userinfo""#;
        let snapshot: WebAccessTokenResponse =
            serde_json::from_str(&format!("{base},\"is_snapshotuser\":1}}")).expect("snapshot");
        let normal: WebAccessTokenResponse =
            serde_json::from_str(&format!("{base}}}")).expect("normal");
        assert!(snapshot.is_snapshot_user);
        assert!(!normal.is_snapshot_user);
        assert_eq!(normal.granted_scope(), OAuthScope::UserInfo);
    }
}

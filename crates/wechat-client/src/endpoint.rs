//! The WeChat endpoints the client calls, named once for errors, logs and metrics.

use std::fmt;

/// A WeChat endpoint the client calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET sns/jscode2session` (§7).
    JsCode2Session,
    /// `GET cgi-bin/token` (§8).
    Token,
    /// `POST cgi-bin/stable_token` (§9).
    StableToken,
    /// `POST wxa/business/getuserphonenumber` (§10).
    GetUserPhoneNumber,
    /// `GET wxa/checksession` (§11).
    CheckSession,
    /// `GET sns/oauth2/access_token` (§2).
    SnsAccessToken,
    /// `GET sns/oauth2/refresh_token` (§3).
    SnsRefreshToken,
    /// `GET sns/userinfo` (§4).
    SnsUserInfo,
    /// `GET sns/auth` (§5).
    SnsAuth,
}

impl Endpoint {
    /// The path on the API host.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::JsCode2Session => "/sns/jscode2session",
            Endpoint::Token => "/cgi-bin/token",
            Endpoint::StableToken => "/cgi-bin/stable_token",
            Endpoint::GetUserPhoneNumber => "/wxa/business/getuserphonenumber",
            Endpoint::CheckSession => "/wxa/checksession",
            Endpoint::SnsAccessToken => "/sns/oauth2/access_token",
            Endpoint::SnsRefreshToken => "/sns/oauth2/refresh_token",
            Endpoint::SnsUserInfo => "/sns/userinfo",
            Endpoint::SnsAuth => "/sns/auth",
        }
    }

    /// A stable name for logs, traces and metrics.
    pub fn name(self) -> &'static str {
        &self.path()[1..]
    }

    /// Whether the request spends a single-use code, which a retry must not spend blindly.
    pub fn consumes_code(self) -> bool {
        matches!(
            self,
            Endpoint::JsCode2Session | Endpoint::GetUserPhoneNumber | Endpoint::SnsAccessToken
        )
    }

    pub(crate) fn is_app_token_endpoint(self) -> bool {
        matches!(self, Endpoint::Token | Endpoint::StableToken)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

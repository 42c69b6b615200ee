//! The WeChat endpoints the simulator serves, as a closed set for counting calls and injecting faults.

use serde::{Deserialize, Serialize};

/// One WeChat endpoint. Serde names are snake_case (`js_code2_session`, `stable_token`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /sns/jscode2session` (WECHAT_API.md §7).
    JsCode2Session,
    /// `GET /cgi-bin/token` (§8).
    Token,
    /// `POST /cgi-bin/stable_token` (§9).
    StableToken,
    /// `POST /wxa/business/getuserphonenumber` (§10).
    GetUserPhoneNumber,
    /// `GET /wxa/checksession` (§11).
    CheckSession,
    /// `GET /connect/oauth2/authorize`, the Official Account consent page (§1).
    OAuthAuthorize,
    /// `GET /connect/qrconnect`, the website QR login page (§6).
    QrConnect,
    /// `GET /sns/oauth2/access_token` (§2).
    SnsAccessToken,
    /// `GET /sns/oauth2/refresh_token` (§3).
    SnsRefreshToken,
    /// `GET /sns/userinfo` (§4).
    SnsUserInfo,
    /// `GET /sns/auth` (§5).
    SnsAuth,
}

impl Endpoint {
    /// Every endpoint, in declaration order.
    pub const ALL: [Endpoint; 11] = [
        Endpoint::JsCode2Session,
        Endpoint::Token,
        Endpoint::StableToken,
        Endpoint::GetUserPhoneNumber,
        Endpoint::CheckSession,
        Endpoint::OAuthAuthorize,
        Endpoint::QrConnect,
        Endpoint::SnsAccessToken,
        Endpoint::SnsRefreshToken,
        Endpoint::SnsUserInfo,
        Endpoint::SnsAuth,
    ];

    /// The URL path WeChat serves this endpoint on.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::JsCode2Session => "/sns/jscode2session",
            Endpoint::Token => "/cgi-bin/token",
            Endpoint::StableToken => "/cgi-bin/stable_token",
            Endpoint::GetUserPhoneNumber => "/wxa/business/getuserphonenumber",
            Endpoint::CheckSession => "/wxa/checksession",
            Endpoint::OAuthAuthorize => "/connect/oauth2/authorize",
            Endpoint::QrConnect => "/connect/qrconnect",
            Endpoint::SnsAccessToken => "/sns/oauth2/access_token",
            Endpoint::SnsRefreshToken => "/sns/oauth2/refresh_token",
            Endpoint::SnsUserInfo => "/sns/userinfo",
            Endpoint::SnsAuth => "/sns/auth",
        }
    }

    /// The endpoint served on this path, if any.
    pub(crate) fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|endpoint| endpoint.path() == path)
    }

    /// The snake_case name used in the control API (the serde name).
    pub(crate) fn name(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => name,
            _ => format!("{self:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_maps_back_to_its_endpoint() {
        for endpoint in Endpoint::ALL {
            assert_eq!(Endpoint::from_path(endpoint.path()), Some(endpoint));
        }
    }

    #[test]
    fn serde_names_are_snake_case() {
        assert_eq!(Endpoint::JsCode2Session.name(), "js_code2_session");
        assert_eq!(Endpoint::OAuthAuthorize.name(), "o_auth_authorize");
        assert_eq!(Endpoint::SnsUserInfo.name(), "sns_user_info");
    }
}

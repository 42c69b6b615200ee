//! The HTTP surface: WeChat's endpoints, plus the control API under `/sim`.

mod app_token;
mod arrival;
mod authorize;
mod control;
mod mini_program;
mod web_oauth;

use std::collections::HashMap;

use axum::Router;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;

use crate::app_tokens::TokenCheck;
use crate::config::{SimApp, SimAppKind};
use crate::endpoint::Endpoint;
use crate::errcode;
use crate::reply;
use crate::simulator::Simulator;
use crate::state::State;

/// Every route the simulator serves. Faults, call counting and latency wrap only the
/// WeChat endpoints, never the control API.
pub(crate) fn router(sim: Simulator) -> Router {
    let wechat = Router::new()
        .route(
            Endpoint::JsCode2Session.path(),
            get(mini_program::js_code2_session),
        )
        .route(
            Endpoint::GetUserPhoneNumber.path(),
            post(mini_program::get_user_phone_number),
        )
        .route(
            Endpoint::CheckSession.path(),
            get(mini_program::check_session),
        )
        .route(Endpoint::Token.path(), get(app_token::token))
        .route(Endpoint::StableToken.path(), post(app_token::stable_token))
        .route(
            Endpoint::OAuthAuthorize.path(),
            get(authorize::oauth_authorize),
        )
        .route(Endpoint::QrConnect.path(), get(authorize::qr_connect))
        .route(
            Endpoint::SnsAccessToken.path(),
            get(web_oauth::access_token),
        )
        .route(
            Endpoint::SnsRefreshToken.path(),
            get(web_oauth::refresh_token),
        )
        .route(Endpoint::SnsUserInfo.path(), get(web_oauth::user_info))
        .route(Endpoint::SnsAuth.path(), get(web_oauth::auth))
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            arrival::arrival,
        ));
    wechat.merge(control::routes()).with_state(sim)
}

/// The outcome of a WeChat endpoint before encoding: a success body or an errcode.
type Outcome = Result<Value, i64>;

/// Encode an outcome the way this endpoint answers (WECHAT_API.md §0).
fn answer(sim: &Simulator, endpoint: Endpoint, outcome: Outcome) -> Response {
    match outcome {
        Ok(body) => reply::json_answer(sim.config(), endpoint, &body),
        Err(code) => reply::wechat_error(sim.config(), endpoint, code),
    }
}

/// Query parameters, first occurrence wins, empty values treated as absent.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn parse(raw_query: Option<&str>) -> Self {
        let mut params = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes()) {
            params
                .entry(name.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        Self(params)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

/// The registered app named by `appid`, if its kind may use this endpoint.
/// Missing: 41002; unknown or of a kind the endpoint does not serve: 40013.
fn app_of_kind<'a>(
    sim: &'a Simulator,
    app_id: Option<&str>,
    kinds: &[SimAppKind],
) -> Result<&'a SimApp, i64> {
    let app_id = app_id.ok_or(errcode::APPID_MISSING)?;
    sim.config()
        .app(app_id)
        .filter(|app| kinds.contains(&app.kind))
        .ok_or(errcode::INVALID_APPID)
}

/// `appid` and `secret` checked together (WECHAT_API.md §8, §12):
/// 41002/40013 for the appid, then 41004 missing and 40125 wrong secret.
fn authenticated_app<'a>(
    sim: &'a Simulator,
    app_id: Option<&str>,
    secret: Option<&str>,
    kinds: &[SimAppKind],
) -> Result<&'a SimApp, i64> {
    let app = app_of_kind(sim, app_id, kinds)?;
    let secret = secret.ok_or(errcode::APPSECRET_MISSING)?;
    if secret != app.secret {
        return Err(errcode::INVALID_APPSECRET);
    }
    Ok(app)
}

/// The app an app access token (`cgi-bin/token` or `stable_token`) belongs to:
/// 41001 missing, 40001 unknown/superseded/invalidated, 42001 expired.
fn app_of_access_token(state: &State, access_token: Option<&str>) -> Result<String, i64> {
    let access_token = access_token.ok_or(errcode::ACCESS_TOKEN_MISSING)?;
    match state.app_tokens.check(access_token, state.now()) {
        TokenCheck::Valid { app_id } => Ok(app_id),
        TokenCheck::Invalid => Err(errcode::INVALID_CREDENTIAL),
        TokenCheck::Expired => Err(errcode::ACCESS_TOKEN_EXPIRED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_keep_the_first_value_and_drop_empty_ones() {
        let params = Params::parse(Some("a=1&a=2&b=&c=%E4%B8%AD"));
        assert_eq!(params.get("a"), Some("1"));
        assert_eq!(params.get("b"), None);
        assert_eq!(params.get("c"), Some("中"));
        assert_eq!(Params::parse(None).get("a"), None);
    }
}

//! The HTTP surface: WeChat's endpoints, plus the control API under `/sim`.

mod answer;
mod app_checks;
mod app_token;
mod arrival;
mod authorize;
mod control;
mod mini_program;
mod params;
mod web_oauth;

use axum::Router;
use axum::routing::{get, post};

use crate::endpoint::Endpoint;
use crate::simulator::Simulator;

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

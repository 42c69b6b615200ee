//! Which app a request speaks for, checked the way WeChat checks it.

use wechat_types::AppKind;

use crate::app_tokens::TokenCheck;
use crate::config::SimApp;
use crate::errcode;
use crate::simulator::Simulator;
use crate::state::State;

/// The registered app named by `appid`, if its kind may use this endpoint.
/// Missing: 41002; unknown or of a kind the endpoint does not serve: 40013.
pub(super) fn app_of_kind<'a>(
    sim: &'a Simulator,
    app_id: Option<&str>,
    kinds: &[AppKind],
) -> Result<&'a SimApp, i64> {
    let app_id = app_id.ok_or(errcode::APPID_MISSING)?;
    sim.config()
        .app(app_id)
        .filter(|app| kinds.contains(&app.kind))
        .ok_or(errcode::INVALID_APPID)
}

/// `appid` and `secret` checked together (WECHAT_API.md §8, §12):
/// 41002/40013 for the appid, then 41004 missing and 40125 wrong secret.
pub(super) fn authenticated_app<'a>(
    sim: &'a Simulator,
    app_id: Option<&str>,
    secret: Option<&str>,
    kinds: &[AppKind],
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
pub(super) fn app_of_access_token(
    state: &State,
    access_token: Option<&str>,
) -> Result<String, i64> {
    let access_token = access_token.ok_or(errcode::ACCESS_TOKEN_MISSING)?;
    match state.app_tokens.check(access_token, state.now()) {
        TokenCheck::Valid { app_id } => Ok(app_id),
        TokenCheck::Invalid => Err(errcode::INVALID_CREDENTIAL),
        TokenCheck::Expired => Err(errcode::ACCESS_TOKEN_EXPIRED),
    }
}

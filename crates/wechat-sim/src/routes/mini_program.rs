//! Mini program endpoints: `jscode2session` (§7), `getuserphonenumber` (§10) and
//! `checksession` (§11) of WECHAT_API.md.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::answer::{Outcome, answer};
use super::app_checks::{app_of_access_token, authenticated_app};
use super::params::Params;
use crate::endpoint::Endpoint;
use crate::errcode;
use crate::ids;
use crate::simulator::Simulator;
use crate::state::{CodeKind, CodeRefusal};
use wechat_types::AppKind;

/// `GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code`.
pub(crate) async fn js_code2_session(
    State(sim): State<Simulator>,
    RawQuery(query): RawQuery,
) -> Response {
    let outcome = exchange_login_code(&sim, &Params::parse(query.as_deref()));
    answer(&sim, Endpoint::JsCode2Session, outcome)
}

fn exchange_login_code(sim: &Simulator, params: &Params) -> Outcome {
    let app = authenticated_app(
        sim,
        params.get("appid"),
        params.get("secret"),
        &[AppKind::MiniProgram],
    )?;
    if params.get("grant_type") != Some("authorization_code") {
        return Err(errcode::INVALID_GRANT_TYPE);
    }
    let code = params.get("js_code").ok_or(errcode::CODE_MISSING)?;
    let mut state = sim.state();
    let record = state
        .redeem_code(code, &app.app_id, |kind| *kind == CodeKind::Login)
        .map_err(|refusal| match refusal {
            CodeRefusal::Invalid => errcode::INVALID_CODE,
            CodeRefusal::Used => errcode::CODE_USED,
        })?;
    // WECHAT_API.md §7: every login issues a new session_key; one valid per user.
    let session_key = state.new_session_key(&app.app_id, &record.user);
    // WECHAT_API.md §7: no expires_in any more.
    let mut body = json!({
        "session_key": session_key,
        "openid": ids::openid(&app.app_id, &record.user),
    });
    if let Some(platform) = &app.open_platform {
        body["unionid"] = Value::from(ids::unionid(platform, &record.user));
    }
    Ok(body)
}

/// `POST /wxa/business/getuserphonenumber?access_token=…` with `{"code","openid"?}`.
pub(crate) async fn get_user_phone_number(
    State(sim): State<Simulator>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let outcome = exchange_phone_code(&sim, &Params::parse(query.as_deref()), &body);
    answer(&sim, Endpoint::GetUserPhoneNumber, outcome)
}

fn exchange_phone_code(sim: &Simulator, params: &Params, body: &[u8]) -> Outcome {
    let mut state = sim.state();
    let app_id = app_of_access_token(&state, params.get("access_token"))?;
    let app = sim.config().app(&app_id).ok_or(errcode::INVALID_APPID)?;
    if app.kind != AppKind::MiniProgram {
        return Err(errcode::API_UNAUTHORIZED);
    }
    // WECHAT_API.md §10: a form-encoded body gets 47001.
    let request: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| errcode::DATA_FORMAT_ERROR)?;
    let code = request
        .get("code")
        .and_then(Value::as_str)
        .filter(|code| !code.is_empty())
        .ok_or(errcode::CODE_MISSING)?;
    // WECHAT_API.md §10 lists 40029 for every bad code, a used one included.
    let record = state
        .check_code(code, &app_id, |kind| *kind == CodeKind::Phone)
        .map_err(|_| errcode::INVALID_CODE)?;
    if let Some(openid) = request.get("openid").and_then(Value::as_str)
        && openid != ids::openid(&app_id, &record.user)
    {
        return Err(errcode::INVALID_OPENID);
    }
    let phone = state
        .user(&record.user)
        .phone
        .clone()
        .ok_or(errcode::INVALID_CODE)?;
    state.burn_code(code);
    // WECHAT_API.md §10: countryCode is a string in the table, a number in the example.
    let country_code = if sim.config().phone_country_code_as_number {
        phone
            .country_code
            .parse::<u64>()
            .map_or_else(|_| Value::from(phone.country_code.clone()), Value::from)
    } else {
        Value::from(phone.country_code.clone())
    };
    Ok(json!({
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": phone.phone_number,
            "purePhoneNumber": phone.pure_phone_number,
            "countryCode": country_code,
            "watermark": { "timestamp": state.now().unix_secs(), "appid": app_id },
        },
    }))
}

/// `GET /wxa/checksession?access_token&openid&signature&sig_method=hmac_sha256`.
pub(crate) async fn check_session(
    State(sim): State<Simulator>,
    RawQuery(query): RawQuery,
) -> Response {
    let outcome = verify_session(&sim, &Params::parse(query.as_deref()));
    answer(&sim, Endpoint::CheckSession, outcome)
}

fn verify_session(sim: &Simulator, params: &Params) -> Outcome {
    let state = sim.state();
    let app_id = app_of_access_token(&state, params.get("access_token"))?;
    let openid = params.get("openid").ok_or(errcode::INVALID_OPENID)?;
    let session_key = state
        .session_key_by_openid(&app_id, openid)
        .ok_or(errcode::INVALID_OPENID)?;
    let signed = params.get("sig_method") == Some("hmac_sha256")
        && params.get("signature").is_some_and(|signature| {
            signature.eq_ignore_ascii_case(&session_signature(&session_key))
        });
    if !signed {
        return Err(errcode::INVALID_SIGNATURE);
    }
    Ok(json!({ "errcode": 0, "errmsg": "ok" }))
}

/// WECHAT_API.md §11: hex(HMAC-SHA256(key = the session_key's base64 text as UTF-8 bytes,
/// not decoded; message = "")).
pub(crate) fn session_signature(session_key: &str) -> String {
    let Ok(mac) = Hmac::<Sha256>::new_from_slice(session_key.as_bytes()) else {
        return String::new();
    };
    hex::encode(mac.chain_update(b"").finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_documented_construction() {
        // An independent recomputation of §11 for one key; the doc's own vector signs
        // a non-empty message, checked below.
        let mac = Hmac::<Sha256>::new_from_slice(b"o0q0otL8aEzpcZL/FT9WsQ==")
            .map(|mac| {
                hex::encode(
                    mac.chain_update(br#"{"foo":"bar"}"#)
                        .finalize()
                        .into_bytes(),
                )
            })
            .unwrap_or_default();
        assert!(mac.starts_with("654571f7"));
        assert!(mac.ends_with("aa0b"));
        assert_eq!(session_signature("o0q0otL8aEzpcZL/FT9WsQ==").len(), 64);
    }
}

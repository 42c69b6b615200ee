//! Web OAuth token and profile endpoints (WECHAT_API.md §2–§5), shared by Official
//! Accounts and website apps (§6).

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::answer::{Outcome, answer};
use super::app_checks::{app_of_kind, authenticated_app};
use super::params::Params;
use crate::config::SimApp;
use crate::endpoint::Endpoint;
use crate::errcode;
use crate::ids;
use crate::oauth_tokens::{AccessRefusal, OAuthGrant, OAuthIssued, RefreshRefusal};
use crate::simulator::Simulator;
use crate::state::{CodeKind, CodeRefusal};
use wechat_types::AppKind;

const WEB_KINDS: [AppKind; 2] = [AppKind::OfficialAccount, AppKind::Website];

/// Scopes that show the consent page and unlock the profile (and the unionid).
fn grants_profile(scope: &str) -> bool {
    scope
        .split(',')
        .any(|part| part == "snsapi_userinfo" || part == "snsapi_login")
}

/// `GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`.
pub(crate) async fn access_token(
    State(sim): State<Simulator>,
    RawQuery(query): RawQuery,
) -> Response {
    let outcome = exchange_oauth_code(&sim, &Params::parse(query.as_deref()));
    answer(&sim, Endpoint::SnsAccessToken, outcome)
}

fn exchange_oauth_code(sim: &Simulator, params: &Params) -> Outcome {
    let app = authenticated_app(sim, params.get("appid"), params.get("secret"), &WEB_KINDS)?;
    if params.get("grant_type") != Some("authorization_code") {
        return Err(errcode::INVALID_GRANT_TYPE);
    }
    let code = params.get("code").ok_or(errcode::CODE_MISSING)?;
    let mut state = sim.state();
    let record = state
        .redeem_code(code, &app.app_id, |kind| {
            matches!(kind, CodeKind::OAuth { .. })
        })
        .map_err(|refusal| match refusal {
            CodeRefusal::Invalid => errcode::INVALID_CODE,
            CodeRefusal::Used => errcode::CODE_USED,
        })?;
    let CodeKind::OAuth { scope } = record.kind else {
        return Err(errcode::INVALID_CODE);
    };
    let user = state.user(&record.user).clone();
    let grant = grant_for(app, &record.user, scope, user.snapshot);
    let now = state.now();
    let issued = state.oauth.issue(grant, now);
    let mut body = token_body(&issued);
    if let Some(unionid) = &issued.grant.unionid {
        body["unionid"] = Value::from(unionid.clone());
    }
    if issued.grant.snapshot {
        // WECHAT_API.md §2: present only for snapshot virtual users, value 1.
        body["is_snapshotuser"] = Value::from(1);
    }
    Ok(body)
}

/// What the app learns from this authorization. WECHAT_API.md §1: the snapshot page opens
/// for `snsapi_userinfo` in an Official Account, and its ids are virtual. §2, §6: a unionid
/// comes only with a profile scope and a bound app.
fn grant_for(app: &SimApp, user: &str, scope: String, snapshot_user: bool) -> OAuthGrant {
    let snapshot = snapshot_user
        && app.kind == AppKind::OfficialAccount
        && scope.split(',').any(|part| part == "snsapi_userinfo");
    let openid = if snapshot {
        ids::snapshot_openid(&app.app_id, user)
    } else {
        ids::openid(&app.app_id, user)
    };
    let unionid = app
        .open_platform
        .as_deref()
        .filter(|_| grants_profile(&scope))
        .map(|platform| {
            if snapshot {
                ids::snapshot_unionid(platform, user)
            } else {
                ids::unionid(platform, user)
            }
        });
    OAuthGrant {
        app_id: app.app_id.clone(),
        user: user.to_owned(),
        openid,
        unionid,
        scope,
        snapshot,
    }
}

fn token_body(issued: &OAuthIssued) -> Value {
    json!({
        "access_token": issued.access_token,
        "expires_in": issued.expires_in.as_secs(),
        "refresh_token": issued.refresh_token,
        "openid": issued.grant.openid,
        "scope": issued.grant.scope,
    })
}

/// `GET /sns/oauth2/refresh_token?appid&grant_type=refresh_token&refresh_token` (no secret).
pub(crate) async fn refresh_token(
    State(sim): State<Simulator>,
    RawQuery(query): RawQuery,
) -> Response {
    let outcome = refresh(&sim, &Params::parse(query.as_deref()));
    answer(&sim, Endpoint::SnsRefreshToken, outcome)
}

fn refresh(sim: &Simulator, params: &Params) -> Outcome {
    let app = app_of_kind(sim, params.get("appid"), &WEB_KINDS)?;
    if params.get("grant_type") != Some("refresh_token") {
        return Err(errcode::INVALID_GRANT_TYPE);
    }
    let refresh_token = params
        .get("refresh_token")
        .ok_or(errcode::REFRESH_TOKEN_MISSING)?;
    let mut state = sim.state();
    let now = state.now();
    let issued = state
        .oauth
        .refresh(&app.app_id, refresh_token, now)
        .map_err(|refusal| match refusal {
            RefreshRefusal::Invalid => errcode::INVALID_REFRESH_TOKEN,
            RefreshRefusal::Expired => errcode::REFRESH_TOKEN_EXPIRED,
        })?;
    Ok(token_body(&issued))
}

/// `GET /sns/userinfo?access_token&openid&lang`.
pub(crate) async fn user_info(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let outcome = profile(&sim, &Params::parse(query.as_deref()));
    answer(&sim, Endpoint::SnsUserInfo, outcome)
}

fn profile(sim: &Simulator, params: &Params) -> Outcome {
    let access_token = params
        .get("access_token")
        .ok_or(errcode::ACCESS_TOKEN_MISSING)?;
    let mut state = sim.state();
    let now = state.now();
    // WECHAT_API.md §4: 40001 for a bad token, 42001 for an expired one.
    let grant = state
        .oauth
        .check_access(access_token, now)
        .map_err(|refusal| match refusal {
            AccessRefusal::Unknown => errcode::INVALID_CREDENTIAL,
            AccessRefusal::Expired => errcode::ACCESS_TOKEN_EXPIRED,
        })?
        .clone();
    if params.get("openid") != Some(grant.openid.as_str()) {
        return Err(errcode::INVALID_OPENID);
    }
    if !grants_profile(&grant.scope) {
        return Err(errcode::API_UNAUTHORIZED);
    }
    let user = state.user(&grant.user).clone();
    // WECHAT_API.md §1: snapshot users read as "微信用户" with the default avatar.
    let user = if grant.snapshot {
        user.snapshot_view()
    } else {
        user
    };
    let mut body = json!({
        "openid": grant.openid,
        "nickname": user.nickname,
        "sex": user.sex,
        "province": user.province,
        "city": user.city,
        "country": user.country,
        "headimgurl": user.headimgurl,
        "privilege": user.privileges,
    });
    if let Some(unionid) = grant.unionid {
        body["unionid"] = Value::from(unionid);
    }
    Ok(body)
}

/// `GET /sns/auth?access_token&openid`.
pub(crate) async fn auth(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let outcome = check_access_token(&sim, &Params::parse(query.as_deref()));
    answer(&sim, Endpoint::SnsAuth, outcome)
}

fn check_access_token(sim: &Simulator, params: &Params) -> Outcome {
    let access_token = params
        .get("access_token")
        .ok_or(errcode::ACCESS_TOKEN_MISSING)?;
    let state = sim.state();
    // WECHAT_API.md §5: a bad token here is 40014, not 40001.
    let grant = state
        .oauth
        .check_access(access_token, state.now())
        .map_err(|_| errcode::INVALID_ACCESS_TOKEN)?;
    if params.get("openid") != Some(grant.openid.as_str()) {
        return Err(errcode::INVALID_OPENID);
    }
    Ok(json!({ "errcode": 0, "errmsg": "ok" }))
}

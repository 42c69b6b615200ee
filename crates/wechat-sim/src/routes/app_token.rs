//! App access token endpoints: `cgi-bin/token` (§8) and `cgi-bin/stable_token` (§9) of
//! WECHAT_API.md. Every app kind may call them.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::answer::{Outcome, answer};
use super::app_checks::authenticated_app;
use super::params::Params;
use crate::app_tokens::IssuedToken;
use crate::endpoint::Endpoint;
use crate::errcode;
use crate::simulator::Simulator;
use wechat_types::AppKind;

const ANY_KIND: [AppKind; 3] = [
    AppKind::MiniProgram,
    AppKind::OfficialAccount,
    AppKind::Website,
];

fn token_body(issued: &IssuedToken) -> Value {
    json!({
        "access_token": issued.access_token,
        "expires_in": issued.expires_in.as_secs(),
    })
}

/// `GET /cgi-bin/token?grant_type=client_credential&appid&secret`.
pub(crate) async fn token(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let outcome = issue_plain_token(&sim, &Params::parse(query.as_deref()));
    answer(&sim, Endpoint::Token, outcome)
}

fn issue_plain_token(sim: &Simulator, params: &Params) -> Outcome {
    if params.get("grant_type") != Some("client_credential") {
        return Err(errcode::INVALID_GRANT_TYPE);
    }
    let app = authenticated_app(sim, params.get("appid"), params.get("secret"), &ANY_KIND)?;
    let mut state = sim.state();
    let now = state.now();
    let issued = state
        .app_tokens
        .issue_plain(&app.app_id, now)
        .map_err(|_| errcode::DAILY_QUOTA)?;
    Ok(token_body(&issued))
}

/// `POST /cgi-bin/stable_token` with `{"grant_type","appid","secret","force_refresh"?}`.
pub(crate) async fn stable_token(State(sim): State<Simulator>, body: Bytes) -> Response {
    let outcome = issue_stable_token(&sim, &body);
    answer(&sim, Endpoint::StableToken, outcome)
}

fn issue_stable_token(sim: &Simulator, body: &[u8]) -> Outcome {
    // WECHAT_API.md §9: a non-JSON body answers 41002 `appid missing`.
    let request: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| errcode::APPID_MISSING)?;
    let text = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
    };
    let app = authenticated_app(sim, text("appid"), text("secret"), &ANY_KIND)?;
    if text("grant_type") != Some("client_credential") {
        return Err(errcode::INVALID_GRANT_TYPE);
    }
    let force_refresh = request
        .get("force_refresh")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut state = sim.state();
    let now = state.now();
    let issued = state.app_tokens.stable(&app.app_id, force_refresh, now);
    Ok(token_body(&issued))
}

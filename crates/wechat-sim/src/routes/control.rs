//! The control API under `/sim`: the HTTP twin of [`Simulator`]'s methods, for the demo,
//! benchmarks and other processes. Bad input gets a 400 with a plain message.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::params::Params;
use crate::browser::Consent;
use crate::endpoint::Endpoint;
use crate::faults::Fault;
use crate::reply::bad_control_input;
use crate::simulator::Simulator;
use crate::users::SimUser;

pub(crate) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/sim/login-code", get(login_code).post(login_code))
        .route("/sim/phone-code", get(phone_code).post(phone_code))
        .route("/sim/oauth-code", get(oauth_code).post(oauth_code))
        .route("/sim/users", post(put_user))
        .route("/sim/users/{key}", get(get_user))
        .route("/sim/identity", get(identity))
        .route("/sim/calls", get(calls))
        .route("/sim/calls/reset", post(reset_calls))
        .route("/sim/faults", post(inject_fault))
        .route("/sim/clock/advance", post(advance_clock))
        .route("/sim/tokens/invalidate", post(invalidate_tokens))
        .route("/sim/browser", post(set_browser))
}

/// What a control call answers: a response, or the message of a 400.
type Control = Result<Response, String>;

fn respond(outcome: Control) -> Response {
    outcome.unwrap_or_else(bad_control_input)
}

/// A required query parameter, or the message naming it.
fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, String> {
    params
        .get(name)
        .ok_or_else(|| format!("missing query parameter `{name}`"))
}

/// `app_id` and `user` from the query; the app must be registered.
fn app_and_user<'a>(sim: &Simulator, params: &'a Params) -> Result<(&'a str, &'a str), String> {
    let app_id = required(params, "app_id")?;
    if sim.config().app(app_id).is_none() {
        return Err(format!("unknown app_id `{app_id}`"));
    }
    Ok((app_id, required(params, "user")?))
}

/// A JSON body, or a message that says what is wrong with it.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|error| format!("bad JSON body: {error}"))
}

fn code_reply(code: String) -> Response {
    Json(json!({ "code": code })).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The most codes one control call mints (`count`), for benchmarks.
const MAX_COUNT: usize = 100_000;

/// `{"code": …}`, or with `count=N` (N > 1) `{"codes": […]}` of N fresh codes
/// for the same user: benchmarks mint their codes before the clock starts.
fn mint(params: &Params, one: impl Fn() -> String) -> Control {
    let count = match params.get("count") {
        None => 1,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_COUNT).contains(n))
            .ok_or_else(|| format!("`count` must be 1 to {MAX_COUNT}"))?,
    };
    if count == 1 {
        return Ok(code_reply(one()));
    }
    let codes: Vec<String> = (0..count).map(|_| one()).collect();
    Ok(Json(json!({ "codes": codes })).into_response())
}

async fn login_code(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    respond(
        app_and_user(&sim, &params)
            .and_then(|(app_id, user)| mint(&params, || sim.mint_login_code(app_id, user))),
    )
}

async fn phone_code(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    respond(
        app_and_user(&sim, &params)
            .and_then(|(app_id, user)| mint(&params, || sim.mint_phone_code(app_id, user))),
    )
}

async fn oauth_code(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    respond(mint_oauth_code(&sim, &Params::parse(query.as_deref())))
}

fn mint_oauth_code(sim: &Simulator, params: &Params) -> Control {
    let (app_id, user) = app_and_user(sim, params)?;
    let scope = required(params, "scope")?;
    Ok(code_reply(sim.mint_oauth_code(app_id, user, scope)))
}

async fn put_user(State(sim): State<Simulator>, body: Bytes) -> Response {
    respond(parse_body::<SimUser>(&body).and_then(|user| {
        if user.key.is_empty() {
            return Err("`key` must not be empty".to_owned());
        }
        sim.add_user(user);
        Ok(no_content())
    }))
}

async fn get_user(State(sim): State<Simulator>, Path(key): Path<String>) -> Response {
    Json(sim.user(&key)).into_response()
}

async fn identity(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    respond(app_and_user(&sim, &params).map(|(app_id, user)| {
        Json(json!({
            "openid": sim.openid(app_id, user),
            "unionid": sim.unionid(app_id, user),
            "session_key": sim.session_key(app_id, user),
        }))
        .into_response()
    }))
}

async fn calls(State(sim): State<Simulator>) -> Response {
    let counts: BTreeMap<String, u64> = Endpoint::ALL
        .into_iter()
        .map(|endpoint| (endpoint.name(), sim.calls(endpoint)))
        .collect();
    Json(counts).into_response()
}

async fn reset_calls(State(sim): State<Simulator>) -> Response {
    sim.reset_calls();
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    endpoint: Endpoint,
    fault: Fault,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

async fn inject_fault(State(sim): State<Simulator>, body: Bytes) -> Response {
    respond(parse_body::<FaultRequest>(&body).and_then(|request| {
        if let Fault::HttpStatus { status } = request.fault
            && StatusCode::from_u16(status).is_err()
        {
            return Err(format!("`{status}` is not an HTTP status"));
        }
        sim.inject(request.endpoint, request.fault, request.times);
        Ok(no_content())
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    seconds: u64,
}

async fn advance_clock(State(sim): State<Simulator>, body: Bytes) -> Response {
    respond(parse_body::<AdvanceRequest>(&body).map(|request| {
        sim.advance_clock(Duration::from_secs(request.seconds));
        no_content()
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateRequest {
    app_id: String,
}

async fn invalidate_tokens(State(sim): State<Simulator>, body: Bytes) -> Response {
    respond(parse_body::<InvalidateRequest>(&body).and_then(|request| {
        if sim.config().app(&request.app_id).is_none() {
            return Err(format!("unknown app_id `{}`", request.app_id));
        }
        sim.invalidate_access_tokens(&request.app_id);
        Ok(no_content())
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrowserRequest {
    user: Option<String>,
    consent: Option<Consent>,
}

async fn set_browser(State(sim): State<Simulator>, body: Bytes) -> Response {
    respond(parse_body::<BrowserRequest>(&body).and_then(|request| {
        if request.user.as_deref() == Some("") {
            return Err("`user` must not be empty".to_owned());
        }
        if let Some(user) = request.user {
            sim.set_browser_user(&user);
        }
        if let Some(consent) = request.consent {
            sim.set_consent(consent);
        }
        Ok(no_content())
    }))
}

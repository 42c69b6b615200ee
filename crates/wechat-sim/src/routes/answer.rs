//! How an endpoint's outcome becomes WeChat's answer.

use axum::response::Response;
use serde_json::Value;

use crate::endpoint::Endpoint;
use crate::reply;
use crate::simulator::Simulator;

/// The outcome of a WeChat endpoint before encoding: a success body or an errcode.
pub(super) type Outcome = Result<Value, i64>;

/// Encode an outcome the way this endpoint answers (WECHAT_API.md §0).
pub(super) fn answer(sim: &Simulator, endpoint: Endpoint, outcome: Outcome) -> Response {
    match outcome {
        Ok(body) => reply::json_answer(sim.config(), endpoint, &body),
        Err(code) => reply::wechat_error(sim.config(), endpoint, code),
    }
}

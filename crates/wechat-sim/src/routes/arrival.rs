//! What happens to every WeChat request on arrival: it is counted, delayed by the
//! configured latency, and meets the next scheduled fault, if any.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::params::Params;
use crate::connection_kill::ConnectionKill;
use crate::endpoint::Endpoint;
use crate::errcode;
use crate::faults::Fault;
use crate::reply;
use crate::simulator::Simulator;

/// Control requests and unknown paths pass straight through.
pub(crate) async fn arrival(
    State(sim): State<Simulator>,
    request: Request,
    next: Next,
) -> Response {
    let Some(endpoint) = Endpoint::from_path(request.uri().path()) else {
        return next.run(request).await;
    };
    let fault = {
        let mut state = sim.state();
        state.count_call(endpoint);
        state.faults.pop(endpoint)
    };
    tracing::debug!(endpoint = endpoint.path(), ?fault, "wechat request");
    let latency = sim.config().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let Some(fault) = fault else {
        return next.run(request).await;
    };
    match fault {
        Fault::Delay { millis } => {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            next.run(request).await
        }
        Fault::HttpStatus { status } => reply::gateway_failure(status),
        Fault::Errcode { errcode } => reply::wechat_error(sim.config(), endpoint, errcode),
        Fault::SystemError { consume_code } => {
            if consume_code && let Some(code) = code_in(endpoint, request).await {
                // WECHAT_API.md §2: a retry after -1 met 40163, the code was used anyway.
                sim.state().burn_code(&code);
            }
            reply::wechat_error(sim.config(), endpoint, errcode::SYSTEM_ERROR)
        }
        Fault::ConnectionReset => reset_connection(request).await,
    }
}

/// The one-time code a request carries, wherever its endpoint puts it.
async fn code_in(endpoint: Endpoint, request: Request) -> Option<String> {
    let params = Params::parse(request.uri().query());
    match endpoint {
        Endpoint::JsCode2Session => params.get("js_code").map(str::to_owned),
        Endpoint::SnsAccessToken => params.get("code").map(str::to_owned),
        Endpoint::GetUserPhoneNumber => {
            let body = read_body(request).await;
            let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
            json.get("code")?.as_str().map(str::to_owned)
        }
        _ => None,
    }
}

async fn read_body(request: Request) -> Bytes {
    axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap_or_default()
}

/// Read the whole request, then drop the TCP connection with no response at all.
///
/// Served by [`Simulator::spawn`], the connection task is told to reset the socket and
/// this future never completes. Mounted elsewhere (the bare [`Simulator::router`]),
/// there is no socket to reach: the answer is a body that fails at once, which makes the
/// server abort the connection mid-response.
async fn reset_connection(request: Request) -> Response {
    let kill = request.extensions().get::<ConnectionKill>().cloned();
    let _ = read_body(request).await;
    match kill {
        Some(kill) => {
            kill.trigger();
            std::future::pending().await
        }
        None => {
            let failure =
                std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected fault");
            Response::new(Body::from_stream(futures::stream::once(async move {
                Err::<Bytes, _>(failure)
            })))
        }
    }
}

//! A span per shim request: method, route template and status, never the
//! URI (a callback's query holds WeChat's code), a child of the caller's W3C
//! trace context when traces are on.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// Wraps a request in its `http` span.
pub(crate) async fn trace_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        route = %route,
        trace_id = tracing::field::Empty,
        status = tracing::field::Empty,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    crate::telemetry::mark_http_span(&span, request.method().as_str(), &route);
    crate::telemetry::adopt_parent(&span, |key| {
        request
            .headers()
            .get(key)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    });
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    crate::telemetry::answer_http_span(&span, response.status().as_u16());
    response
}

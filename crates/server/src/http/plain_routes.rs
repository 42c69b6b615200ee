//! `/healthz`, `/readyz`, `/.well-known/jwks.json` and the callback-domain
//! proof `MP_verify_<token>.txt` (WECHAT_API.md §13).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Whether the service can serve: database reachable, migrations applied.
#[async_trait]
pub(crate) trait Readiness: Send + Sync + std::fmt::Debug + 'static {
    /// `Ok` when ready; otherwise a short reason for the probe's body (no secrets).
    async fn ready(&self) -> Result<(), String>;
}

/// What the plain routes serve.
#[derive(Debug, Clone)]
pub(crate) struct ShimState {
    /// The JWKS document.
    pub jwks: Arc<str>,
    /// `MP_verify_` tokens of the configured apps; the file's content is the token (§13).
    pub mp_verify_tokens: Arc<HashMap<String, ()>>,
    /// The readiness check.
    pub readiness: Arc<dyn Readiness>,
}

/// The routes, ready to merge into the shim's router.
pub(crate) fn plain_routes(state: ShimState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/{file}", get(mp_verify))
        .with_state(state)
}

async fn readyz(State(state): State<ShimState>) -> Response {
    match state.readiness.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        )
            .into_response(),
    }
}

async fn jwks(State(state): State<ShimState>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        state.jwks.to_string(),
    )
        .into_response()
}

async fn mp_verify(State(state): State<ShimState>, Path(file): Path<String>) -> Response {
    let token = file
        .strip_prefix("MP_verify_")
        .and_then(|rest| rest.strip_suffix(".txt"));
    match token {
        Some(token) if state.mp_verify_tokens.contains_key(token) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            token.to_owned(),
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    #[derive(Debug)]
    struct Fixed(Result<(), String>);

    #[async_trait]
    impl Readiness for Fixed {
        async fn ready(&self) -> Result<(), String> {
            self.0.clone()
        }
    }

    fn state(ready: Result<(), String>) -> ShimState {
        ShimState {
            jwks: r#"{"keys":[]}"#.into(),
            mp_verify_tokens: Arc::new([("a1B2c3".to_owned(), ())].into_iter().collect()),
            readiness: Arc::new(Fixed(ready)),
        }
    }

    async fn get(router: Router, path: &str) -> (StatusCode, String, Option<String>) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            String::from_utf8_lossy(&body).into_owned(),
            content_type,
        )
    }

    #[tokio::test]
    async fn health_and_readiness_report_their_state() {
        assert_eq!(
            get(plain_routes(state(Ok(()))), "/healthz").await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(plain_routes(state(Ok(()))), "/readyz").await.0,
            StatusCode::OK
        );
        let (status, body, _) = get(
            plain_routes(state(Err("database unreachable".into()))),
            "/readyz",
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: database unreachable"
            )
        );
        assert_eq!(
            get(plain_routes(state(Err("x".into()))), "/healthz")
                .await
                .0,
            StatusCode::OK,
            "alive while not ready"
        );
    }

    #[tokio::test]
    async fn the_jwks_is_served_as_a_key_set() {
        let (status, body, content_type) =
            get(plain_routes(state(Ok(()))), "/.well-known/jwks.json").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"keys":[]}"#));
        assert_eq!(content_type.as_deref(), Some("application/jwk-set+json"));
    }

    #[tokio::test]
    async fn the_verification_file_answers_only_configured_tokens() {
        let (status, body, content_type) =
            get(plain_routes(state(Ok(()))), "/MP_verify_a1B2c3.txt").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "a1B2c3"));
        assert_eq!(content_type.as_deref(), Some("text/plain; charset=utf-8"));
        for path in [
            "/MP_verify_other.txt",
            "/MP_verify_a1B2c3.txt.bak",
            "/a1B2c3.txt",
            "/MP_verify_.txt",
        ] {
            assert_eq!(
                get(plain_routes(state(Ok(()))), path).await.0,
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }
}

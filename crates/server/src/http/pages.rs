//! The few responses the shim shows a browser itself: redirects, and a plain
//! error page. Neither ever carries a code, a token or a secret; pages are
//! static text plus an escaped message from the error table.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use url::Url;

use crate::error::ApiError;

/// Headers every shim response to a browser carries: nothing cached, no
/// referrer (a callback URL holds WeChat's code), no sniffing, no framing.
const BROWSER_HEADERS: [(header::HeaderName, &str); 4] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// A `302 Found` to `location`.
pub(crate) fn redirect(location: &Url) -> Response {
    let Ok(value) = HeaderValue::from_str(location.as_str()) else {
        return error_page(&ApiError::internal(
            "redirect location is not a header value",
        ));
    };
    let mut response = (StatusCode::FOUND, [(header::LOCATION, value)]).into_response();
    add_browser_headers(&mut response);
    response
}

/// An HTML page for `error`, with the error table's HTTP status.
pub(crate) fn error_page(error: &ApiError) -> Response {
    let status = error.http_status();
    match error {
        // The cause goes to the log, as on the gRPC side; the page says only
        // that something failed.
        ApiError::Internal(cause) => tracing::error!(cause = %cause, "sign-in page failed"),
        other if status.is_server_error() => {
            tracing::warn!(error = %other, "sign-in page failed");
        }
        _ => {}
    }
    let message = match error {
        // Internal causes stay in the log.
        ApiError::Internal(_) => "Something went wrong on our side.".to_owned(),
        other => other.to_string(),
    };
    let mut response = page(status, "Sign-in failed", &message, error.reason());
    if let Some(reason) = error.reason()
        && let Ok(value) = HeaderValue::from_str(&reason.to_ascii_lowercase())
    {
        response.headers_mut().insert(ERROR_HEADER, value);
    }
    response
}

/// The header naming an error page's reason (lower case), for scripts and tests.
pub(crate) const ERROR_HEADER: &str = "x-wechat-identity-error";

/// A page with `status`, a title, one paragraph and the error's reason (in
/// lower case, for support requests); every text is escaped.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    message: &str,
    reason: Option<&str>,
) -> Response {
    let reason = reason
        .map(|reason| {
            format!(
                "<p>Error code: <code>{}</code></p>\n",
                escape(&reason.to_ascii_lowercase())
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{message}</p>\n{reason}\
         <p>Go back to the app and start signing in again.</p></body></html>\n",
        title = escape(title),
        message = escape(message),
    );
    html(status, body)
}

/// An HTML response with the browser headers and a CSP that allows no
/// script, style or resource at all.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response();
    add_browser_headers(&mut response);
    response
}

fn add_browser_headers(response: &mut Response) {
    for (name, value) in BROWSER_HEADERS {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
}

/// `text` with HTML's special characters escaped, for element content and
/// double-quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }

    #[test]
    fn an_error_page_has_its_status_and_no_cache() {
        let response = error_page(&ApiError::field("return_to", "is required"));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[ERROR_HEADER], "field_invalid");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
    }

    /// Log output captured in memory.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_internal_error_page_logs_its_cause_and_shows_none_of_it() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let response = tracing::subscriber::with_default(subscriber, || {
            error_page(&ApiError::internal("the pool timed out after 5s"))
        });
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let log = String::from_utf8_lossy(&captured.0.lock().expect("not poisoned")).into_owned();
        assert!(log.contains("ERROR"), "{log}");
        assert!(log.contains("the pool timed out after 5s"), "{log}");
    }
}

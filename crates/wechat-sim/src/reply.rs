//! How WeChat answers: HTTP 200 with JSON errcodes, odd Content-Types, rid-suffixed errmsgs.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::config::SimConfig;
use crate::endpoint::Endpoint;
use crate::errcode::{self, errmsg};
use crate::ids;

/// The errmsg with its request-id suffix (WECHAT_API.md §0). The two messages captured
/// verbatim (40164 in §8, 45009 in §8) have no comma before `rid`; the rest use the
/// current `, rid:` form.
fn errmsg_with_rid(code: i64) -> String {
    let rid = ids::rid();
    match code {
        errcode::IP_NOT_IN_WHITELIST => {
            format!("invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist rid: {rid}")
        }
        errcode::DAILY_QUOTA => format!("{} rid: {rid}", errmsg(code)),
        _ => format!("{}, rid: {rid}", errmsg(code)),
    }
}

/// The Content-Type WeChat sends on this endpoint's JSON answers (WECHAT_API.md §0).
fn content_type(config: &SimConfig, endpoint: Endpoint) -> String {
    if endpoint.path().starts_with("/sns/") {
        config.sns_content_type.clone()
    } else if endpoint == Endpoint::Token {
        "application/json; encoding=utf-8".to_owned()
    } else {
        "application/json".to_owned()
    }
}

/// A JSON body with the endpoint's Content-Type and HTTP 200, serialized as UTF-8 (no
/// `\u` escapes: nicknames travel as raw CJK and emoji).
pub(crate) fn json_answer(config: &SimConfig, endpoint: Endpoint, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    let value = HeaderValue::from_str(&content_type(config, endpoint))
        .unwrap_or_else(|_| HeaderValue::from_static("text/plain"));
    response.headers_mut().insert(header::CONTENT_TYPE, value);
    response
}

/// A WeChat error: HTTP 200, `{"errcode":N,"errmsg":"…, rid: …"}` (WECHAT_API.md §0).
pub(crate) fn wechat_error(config: &SimConfig, endpoint: Endpoint, errcode: i64) -> Response {
    json_answer(
        config,
        endpoint,
        &json!({ "errcode": errcode, "errmsg": errmsg_with_rid(errcode) }),
    )
}

/// A gateway failure: the status with a small HTML body, as a proxy in front of WeChat sends.
pub(crate) fn gateway_failure(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!("<html>{} {reason}</html>", status.as_u16());
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// The authorize page's error page: HTTP 200 HTML, not JSON and not a redirect
/// (WECHAT_API.md §1, authorize-page errors). `code` is `None` for failures the doc's
/// table has no code for (parameter order, response_type, state).
pub(crate) fn authorize_error_page(code: Option<u32>, what: &str) -> Response {
    let code_line = code.map_or(String::new(), |code| format!("<p>错误码：{code}</p>"));
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>微信网页授权</title></head>\n\
         <body><h2>Oops! Something went wrong:(</h2><p>参数错误：{what}</p>{code_line}</body></html>\n"
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A plain-text 400 for bad control-API input.
pub(crate) fn bad_control_input(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errmsgs_carry_a_rid_suffix() {
        let message = errmsg_with_rid(errcode::CODE_USED);
        assert!(message.starts_with("code been used, rid: "));
        assert_eq!(message.len(), "code been used, rid: ".len() + 26);
    }

    #[test]
    fn the_quota_message_matches_the_capture() {
        assert!(
            errmsg_with_rid(errcode::DAILY_QUOTA)
                .starts_with("reach max api daily quota limit rid: ")
        );
    }
}

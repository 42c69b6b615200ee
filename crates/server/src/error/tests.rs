use tonic_types::StatusExt;

use super::*;

/// Every row of the reason table in identity.proto, as code and reason.
fn table() -> Vec<(ApiError, Code, Option<&'static str>)> {
    use ApiError::*;
    vec![
        (
            ApiError::field("code", "is empty"),
            Code::InvalidArgument,
            Some("FIELD_INVALID"),
        ),
        (
            AppAmbiguous {
                field: "app_id".into(),
            },
            Code::InvalidArgument,
            Some("APP_AMBIGUOUS"),
        ),
        (
            WeChatCodeInvalid {
                field: "code".into(),
            },
            Code::InvalidArgument,
            Some("WECHAT_CODE_INVALID"),
        ),
        (
            WeChatCodeUsed {
                field: "code".into(),
            },
            Code::InvalidArgument,
            Some("WECHAT_CODE_USED"),
        ),
        (
            TicketInvalid {
                field: "ticket".into(),
            },
            Code::InvalidArgument,
            Some("TICKET_INVALID"),
        ),
        (
            UnauthenticatedCaller,
            Code::Unauthenticated,
            Some("UNAUTHENTICATED_CALLER"),
        ),
        (
            RefreshTokenInvalid,
            Code::Unauthenticated,
            Some("REFRESH_TOKEN_INVALID"),
        ),
        (
            RefreshTokenReused,
            Code::Unauthenticated,
            Some("REFRESH_TOKEN_REUSED"),
        ),
        (
            SessionExpired,
            Code::Unauthenticated,
            Some("SESSION_EXPIRED"),
        ),
        (
            CallerNotPermitted {
                permission: "admin",
            },
            Code::PermissionDenied,
            Some("CALLER_NOT_PERMITTED"),
        ),
        (
            WeChatUserBlocked,
            Code::PermissionDenied,
            Some("WECHAT_USER_BLOCKED"),
        ),
        (
            AppNotFound {
                field: "app_id".into(),
            },
            Code::NotFound,
            Some("APP_NOT_FOUND"),
        ),
        (UserNotFound, Code::NotFound, Some("USER_NOT_FOUND")),
        (IdentityNotFound, Code::NotFound, Some("IDENTITY_NOT_FOUND")),
        (SessionNotFound, Code::NotFound, Some("SESSION_NOT_FOUND")),
        (
            IdentityAlreadyBound,
            Code::AlreadyExists,
            Some("IDENTITY_ALREADY_BOUND"),
        ),
        (
            ExternalIdTaken,
            Code::AlreadyExists,
            Some("EXTERNAL_ID_TAKEN"),
        ),
        (
            NoWebAuthorization,
            Code::FailedPrecondition,
            Some("NO_WEB_AUTHORIZATION"),
        ),
        (
            WebAuthorizationExpired,
            Code::FailedPrecondition,
            Some("WEB_AUTHORIZATION_EXPIRED"),
        ),
        (
            WeChatAppMisconfigured,
            Code::FailedPrecondition,
            Some("WECHAT_APP_MISCONFIGURED"),
        ),
        (
            WeChatRateLimited,
            Code::ResourceExhausted,
            Some("WECHAT_RATE_LIMITED"),
        ),
        (
            Overloaded,
            Code::ResourceExhausted,
            Some("SERVICE_OVERLOADED"),
        ),
        (
            WeChatUnavailable,
            Code::Unavailable,
            Some("WECHAT_UNAVAILABLE"),
        ),
        (
            DeadlineExceeded,
            Code::DeadlineExceeded,
            Some("DEADLINE_EXCEEDED"),
        ),
        (Unavailable, Code::Unavailable, None),
        (
            ApiError::internal("db exploded at row 7"),
            Code::Internal,
            None,
        ),
    ]
}

#[test]
fn every_error_has_the_code_and_reason_of_the_proto_table() {
    let proto = include_str!("../../../../proto/wechat/identity/v1/identity.proto");
    for (error, code, reason) in table() {
        let status = error.to_status();
        assert_eq!(status.code(), code, "{error:?}");
        let info = status.get_details_error_info();
        assert_eq!(
            info.as_ref().map(|i| i.reason.as_str()),
            reason,
            "{error:?}"
        );
        if let (Some(info), Some(reason)) = (info, reason) {
            assert_eq!(info.domain, ERROR_DOMAIN);
            assert!(
                proto.contains(&format!("// | {reason} ")),
                "{reason} is in the proto's table"
            );
        }
    }
}

#[test]
fn invalid_argument_names_the_field_in_a_bad_request() {
    for (error, code, _) in table() {
        let status = error.to_status();
        let bad_request = status.get_details_bad_request();
        if code == Code::InvalidArgument {
            let violations = bad_request.expect("BadRequest present").field_violations;
            assert_eq!(violations.len(), 1);
            assert!(!violations[0].field.is_empty());
        } else {
            assert!(bad_request.is_none(), "{error:?}");
        }
    }
}

#[test]
fn internal_errors_send_no_details_and_no_cause() {
    let status = ApiError::internal("db exploded at row 7").to_status();
    assert_eq!(status.message(), "internal error");
    assert!(status.details().is_empty());
}

#[test]
fn http_statuses_follow_the_grpc_mapping() {
    assert_eq!(
        ApiError::TicketInvalid {
            field: "ticket".into()
        }
        .http_status(),
        400
    );
    assert_eq!(ApiError::UnauthenticatedCaller.http_status(), 401);
    assert_eq!(ApiError::IdentityAlreadyBound.http_status(), 409);
    assert_eq!(ApiError::WeChatRateLimited.http_status(), 429);
    assert_eq!(ApiError::WeChatUnavailable.http_status(), 503);
    assert_eq!(ApiError::internal("x").http_status(), 500);
}

/// The shim's own refusals: pages with their HTTP status, never gRPC answers,
/// so they are not in the proto's table.
#[test]
fn the_shims_own_refusals_have_their_http_status_and_stay_out_of_the_contract() {
    let proto = include_str!("../../../../proto/wechat/identity/v1/identity.proto");
    for (error, status, reason) in [
        (
            ApiError::LoginSessionMismatch,
            400,
            "LOGIN_SESSION_MISMATCH",
        ),
        (ApiError::TooManyRequests, 429, "TOO_MANY_REQUESTS"),
    ] {
        assert_eq!(error.http_status(), status);
        assert_eq!(error.reason(), Some(reason));
        assert!(!proto.contains(reason), "{reason} is not a gRPC reason");
    }
}

//! The one error table of the service: every failure a caller can see, with
//! its gRPC code, its `google.rpc.ErrorInfo` reason (the table in
//! `identity.proto`) and its HTTP status for the browser shim.
//!
//! Internal details are logged where they happen and never sent: `Internal`
//! carries its cause only for the log line.

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo` domain of every reason.
pub const ERROR_DOMAIN: &str = "wechat-identity";

/// A failure as the caller sees it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// INVALID_ARGUMENT `FIELD_INVALID`: a field is missing, malformed or out of limits.
    #[error("{field}: {description}")]
    FieldInvalid {
        /// The field's path in proto names, or the oneof's name.
        field: String,
        /// What is wrong, without echoing the value.
        description: String,
    },
    /// INVALID_ARGUMENT `APP_AMBIGUOUS`: app_id empty but several apps of the kind exist.
    #[error("{field} is empty, but several apps of that kind are configured: name one")]
    AppAmbiguous {
        /// The app_id field.
        field: String,
    },
    /// INVALID_ARGUMENT `WECHAT_CODE_INVALID`.
    #[error("WeChat rejected the code as invalid or expired: get a new one")]
    WeChatCodeInvalid {
        /// The code field.
        field: String,
    },
    /// INVALID_ARGUMENT `WECHAT_CODE_USED`.
    #[error("the code was exchanged before: get a new one")]
    WeChatCodeUsed {
        /// The code field.
        field: String,
    },
    /// INVALID_ARGUMENT `TICKET_INVALID`: unknown, expired or spent, indistinguishably.
    #[error("the ticket is invalid, expired or spent")]
    TicketInvalid {
        /// The ticket field.
        field: String,
    },
    /// UNAUTHENTICATED `UNAUTHENTICATED_CALLER`.
    #[error("missing or unknown caller key: send `authorization: Bearer <key>`")]
    UnauthenticatedCaller,
    /// UNAUTHENTICATED `REFRESH_TOKEN_INVALID`.
    #[error("the refresh token is invalid or expired: log in again")]
    RefreshTokenInvalid,
    /// UNAUTHENTICATED `REFRESH_TOKEN_REUSED`; the session is revoked.
    #[error("the refresh token was already used; the session is revoked: log in again")]
    RefreshTokenReused,
    /// UNAUTHENTICATED `SESSION_EXPIRED`: the session reached its maximum lifetime.
    #[error("the session has reached its maximum lifetime: log in again")]
    SessionExpired,
    /// PERMISSION_DENIED `CALLER_NOT_PERMITTED`.
    #[error("this caller lacks the `{permission}` permission")]
    CallerNotPermitted {
        /// The permission the call needs.
        permission: &'static str,
    },
    /// PERMISSION_DENIED `WECHAT_USER_BLOCKED` (40226, 50002).
    #[error("WeChat refused this user")]
    WeChatUserBlocked,
    /// NOT_FOUND `APP_NOT_FOUND`.
    #[error("{field} names no configured app of the required kind")]
    AppNotFound {
        /// The app_id field.
        field: String,
    },
    /// NOT_FOUND `USER_NOT_FOUND`.
    #[error("no such user")]
    UserNotFound,
    /// NOT_FOUND `IDENTITY_NOT_FOUND`.
    #[error("no such WeChat identity")]
    IdentityNotFound,
    /// NOT_FOUND `SESSION_NOT_FOUND`.
    #[error("no such session")]
    SessionNotFound,
    /// ALREADY_EXISTS `IDENTITY_ALREADY_BOUND`.
    #[error("the identity is bound to another account: pass replace_existing to move it")]
    IdentityAlreadyBound,
    /// ALREADY_EXISTS `EXTERNAL_ID_TAKEN`.
    #[error(
        "another user holds this external_id: pass replace_existing to move the identity there"
    )]
    ExternalIdTaken,
    /// FAILED_PRECONDITION `NO_WEB_AUTHORIZATION`.
    #[error("the user has no web authorization of scope snsapi_userinfo")]
    NoWebAuthorization,
    /// FAILED_PRECONDITION `WEB_AUTHORIZATION_EXPIRED`.
    #[error("WeChat rejected the stored web authorization: the user must authorize again")]
    WebAuthorizationExpired,
    /// FAILED_PRECONDITION `WECHAT_APP_MISCONFIGURED`.
    #[error("WeChat rejected the app's configuration: an operator must fix it")]
    WeChatAppMisconfigured,
    /// RESOURCE_EXHAUSTED `WECHAT_RATE_LIMITED`.
    #[error("WeChat's quota is spent: back off")]
    WeChatRateLimited,
    /// UNAVAILABLE `WECHAT_UNAVAILABLE`.
    #[error("WeChat is unavailable: retry later")]
    WeChatUnavailable,
    /// DEADLINE_EXCEEDED `DEADLINE_EXCEEDED`.
    #[error("the deadline ran out inside the service")]
    DeadlineExceeded,
    /// FAILED_PRECONDITION `LOGIN_SESSION_MISMATCH`, on the HTTP shim only (a
    /// 400 page): the browser presenting a web login callback holds no login
    /// cookie for its state (it did not start that login, or the cookie was
    /// lost). Never a gRPC answer.
    #[error(
        "this sign-in was not started in this browser, or the browser lost its sign-in cookie: start signing in again"
    )]
    LoginSessionMismatch,
    /// RESOURCE_EXHAUSTED `TOO_MANY_REQUESTS`, on the HTTP shim only (a 429
    /// page): this client address sent more sign-in requests than the shim's
    /// rate limit allows. Never a gRPC answer.
    #[error("too many sign-in requests from this address: wait a moment and try again")]
    TooManyRequests,
    /// RESOURCE_EXHAUSTED `SERVICE_OVERLOADED`: more writes wait for the
    /// database than the service queues; this one was refused before
    /// anything was written.
    #[error("the service is overloaded: retry after a short pause")]
    Overloaded,
    /// UNAVAILABLE, no details: the service or its storage is unavailable.
    #[error("the service is temporarily unavailable")]
    Unavailable,
    /// INTERNAL, no details; the cause is for the log only.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// A `FIELD_INVALID` for `field`.
    pub fn field(field: impl Into<String>, description: impl Into<String>) -> Self {
        ApiError::FieldInvalid {
            field: field.into(),
            description: description.into(),
        }
    }

    /// An `INTERNAL` with a cause for the log.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(cause.into())
    }

    /// The gRPC status code (the proto's table).
    pub fn code(&self) -> Code {
        use ApiError::*;
        match self {
            FieldInvalid { .. }
            | AppAmbiguous { .. }
            | WeChatCodeInvalid { .. }
            | WeChatCodeUsed { .. }
            | TicketInvalid { .. } => Code::InvalidArgument,
            UnauthenticatedCaller | RefreshTokenInvalid | RefreshTokenReused | SessionExpired => {
                Code::Unauthenticated
            }
            CallerNotPermitted { .. } | WeChatUserBlocked => Code::PermissionDenied,
            AppNotFound { .. } | UserNotFound | IdentityNotFound | SessionNotFound => {
                Code::NotFound
            }
            IdentityAlreadyBound | ExternalIdTaken => Code::AlreadyExists,
            NoWebAuthorization
            | WebAuthorizationExpired
            | WeChatAppMisconfigured
            | LoginSessionMismatch => Code::FailedPrecondition,
            WeChatRateLimited | TooManyRequests | Overloaded => Code::ResourceExhausted,
            WeChatUnavailable | Unavailable => Code::Unavailable,
            DeadlineExceeded => Code::DeadlineExceeded,
            Internal(_) => Code::Internal,
        }
    }

    /// The stable `ErrorInfo` reason; `None` for the detail-less statuses.
    pub fn reason(&self) -> Option<&'static str> {
        use ApiError::*;
        Some(match self {
            FieldInvalid { .. } => "FIELD_INVALID",
            AppAmbiguous { .. } => "APP_AMBIGUOUS",
            WeChatCodeInvalid { .. } => "WECHAT_CODE_INVALID",
            WeChatCodeUsed { .. } => "WECHAT_CODE_USED",
            TicketInvalid { .. } => "TICKET_INVALID",
            UnauthenticatedCaller => "UNAUTHENTICATED_CALLER",
            RefreshTokenInvalid => "REFRESH_TOKEN_INVALID",
            RefreshTokenReused => "REFRESH_TOKEN_REUSED",
            SessionExpired => "SESSION_EXPIRED",
            CallerNotPermitted { .. } => "CALLER_NOT_PERMITTED",
            WeChatUserBlocked => "WECHAT_USER_BLOCKED",
            AppNotFound { .. } => "APP_NOT_FOUND",
            UserNotFound => "USER_NOT_FOUND",
            IdentityNotFound => "IDENTITY_NOT_FOUND",
            SessionNotFound => "SESSION_NOT_FOUND",
            IdentityAlreadyBound => "IDENTITY_ALREADY_BOUND",
            ExternalIdTaken => "EXTERNAL_ID_TAKEN",
            NoWebAuthorization => "NO_WEB_AUTHORIZATION",
            WebAuthorizationExpired => "WEB_AUTHORIZATION_EXPIRED",
            WeChatAppMisconfigured => "WECHAT_APP_MISCONFIGURED",
            WeChatRateLimited => "WECHAT_RATE_LIMITED",
            WeChatUnavailable => "WECHAT_UNAVAILABLE",
            DeadlineExceeded => "DEADLINE_EXCEEDED",
            LoginSessionMismatch => "LOGIN_SESSION_MISMATCH",
            TooManyRequests => "TOO_MANY_REQUESTS",
            Overloaded => "SERVICE_OVERLOADED",
            Unavailable | Internal(_) => return None,
        })
    }

    /// The field a `BadRequest` violation names, for INVALID_ARGUMENT.
    fn violated_field(&self) -> Option<&str> {
        use ApiError::*;
        match self {
            FieldInvalid { field, .. }
            | AppAmbiguous { field }
            | WeChatCodeInvalid { field }
            | WeChatCodeUsed { field }
            | TicketInvalid { field } => Some(field),
            _ => None,
        }
    }

    /// The HTTP status for the browser shim (Google's gRPC-to-HTTP mapping).
    pub fn http_status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self.code() {
            Code::InvalidArgument | Code::FailedPrecondition => S::BAD_REQUEST,
            Code::Unauthenticated => S::UNAUTHORIZED,
            Code::PermissionDenied => S::FORBIDDEN,
            Code::NotFound => S::NOT_FOUND,
            Code::AlreadyExists => S::CONFLICT,
            Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
            Code::Unavailable => S::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
            _ => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The status sent to a gRPC caller: code, a plain message, and the
    /// `ErrorInfo` (plus `BadRequest`) details. `Internal` sends nothing but its code.
    pub fn to_status(&self) -> tonic::Status {
        let Some(reason) = self.reason() else {
            return tonic::Status::new(self.code(), self.to_string());
        };
        let mut details =
            ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
        if let Some(field) = self.violated_field() {
            details.add_bad_request_violation(field, self.to_string());
        }
        tonic::Status::with_error_details(self.code(), self.to_string(), details)
    }

    /// Maps a WeChat client failure; `code_field` names the request field
    /// holding the code the call spent, for the code errors.
    pub fn from_wechat(error: wechat_client::Error, code_field: &str) -> Self {
        use wechat_client::{Error as E, ErrorKind as K};
        let field = || code_field.to_owned();
        match &error {
            E::WeChat(wechat) => match wechat.kind {
                K::InvalidCode | K::InvalidOpenId => ApiError::WeChatCodeInvalid { field: field() },
                K::CodeUsed => ApiError::WeChatCodeUsed { field: field() },
                K::CodeLostToFailedAttempt
                | K::Busy
                | K::InvalidCredential
                | K::ExpiredCredential => ApiError::WeChatUnavailable,
                K::CodeBlocked | K::UserLimited => ApiError::WeChatUserBlocked,
                K::InvalidRefreshToken => ApiError::WebAuthorizationExpired,
                K::RateLimited | K::QuotaExceeded => ApiError::WeChatRateLimited,
                K::AppMisconfigured | K::Unauthorized => ApiError::WeChatAppMisconfigured,
                _ => ApiError::internal(error),
            },
            E::DeadlineExceeded { .. } => ApiError::DeadlineExceeded,
            E::UnknownApp(_) => ApiError::AppNotFound {
                field: "app_id".into(),
            },
            E::TokenCache(_) => ApiError::Unavailable,
            E::Decode { .. } => ApiError::internal(error),
            _ if error.is_unavailable() => ApiError::WeChatUnavailable,
            _ => ApiError::WeChatUnavailable,
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        error.to_status()
    }
}

#[cfg(test)]
mod tests;

//! The client's errors: WeChat's own answers apart from transport failures.
//!
//! WeChat's raw `errmsg` is kept on [`WeChatError`] for logs only; no `Display`
//! here prints it, a URL (query strings carry secrets), or any secret.

use std::fmt;

use crate::endpoint::Endpoint;
use wechat_types::AppId;
use wechat_types::TokenCacheError;

/// Everything a WeChat call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// WeChat answered with a non-zero `errcode`.
    #[error(transparent)]
    WeChat(#[from] WeChatError),
    /// WeChat could not be reached, or the connection failed, on every attempt.
    #[error("{endpoint} unreachable after {attempts} attempt(s): {failure}")]
    Transport {
        /// The endpoint called.
        endpoint: Endpoint,
        /// Attempts made.
        attempts: u32,
        /// What went wrong on the last attempt.
        failure: TransportFailure,
        /// The underlying error, stripped of its URL.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// WeChat answered an HTTP status other than 200 (after retries, for 5xx).
    #[error("{endpoint} answered HTTP {status} after {attempts} attempt(s)")]
    HttpStatus {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// WeChat's body was not the documented JSON.
    #[error("{endpoint} answered a body that is not the documented JSON: {detail}")]
    Decode {
        /// The endpoint called.
        endpoint: Endpoint,
        /// What did not fit (never the body itself: it may hold secrets).
        detail: String,
    },
    /// The caller's deadline passed before the call could be made or finished.
    #[error("deadline exceeded before {endpoint} answered")]
    DeadlineExceeded {
        /// The endpoint that was to be called.
        endpoint: Endpoint,
    },
    /// The access token needs a forced refresh but WeChat's limits (20 a day,
    /// 30 s apart, WECHAT_API.md §9) forbid one now.
    #[error("access token of {app_id} needs a forced refresh, refused: {reason}")]
    ForceRefreshLimited {
        /// The app whose token is stuck.
        app_id: AppId,
        /// Which limit applies.
        reason: &'static str,
    },
    /// The app is not registered with the token manager.
    #[error("app {0} is not registered with the token manager")]
    UnknownApp(AppId),
    /// The shared token cache failed.
    #[error(transparent)]
    TokenCache(#[from] TokenCacheError),
}

impl Error {
    /// The kind of a WeChat `errcode` error, `None` for other errors.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Error::WeChat(e) => Some(e.kind),
            _ => None,
        }
    }

    /// Whether the error means WeChat is, for now, not answering usefully:
    /// transport failures, 5xx, `-1` after retries, or a deadline passed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::DeadlineExceeded { .. } => true,
            Error::HttpStatus { status, .. } => *status >= 500 || *status == 429,
            Error::WeChat(e) => {
                matches!(e.kind, ErrorKind::Busy | ErrorKind::CodeLostToFailedAttempt)
            }
            _ => false,
        }
    }

    /// The endpoint whose call failed; `None` for failures before any call
    /// (the token cache, an unknown app, a refused forced refresh).
    pub fn endpoint(&self) -> Option<Endpoint> {
        match self {
            Error::WeChat(e) => Some(e.endpoint),
            Error::Transport { endpoint, .. }
            | Error::HttpStatus { endpoint, .. }
            | Error::Decode { endpoint, .. }
            | Error::DeadlineExceeded { endpoint } => Some(*endpoint),
            _ => None,
        }
    }

    /// Whether WeChat cannot have received the request: the last attempt
    /// never connected (a login code sent this way is still unspent).
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            Error::Transport {
                failure: TransportFailure::Connect,
                ..
            }
        )
    }

    /// Whether an API call failed because its app access token is no longer valid.
    pub(crate) fn is_stale_app_token(&self) -> bool {
        matches!(
            self.kind(),
            Some(ErrorKind::InvalidCredential | ErrorKind::ExpiredCredential)
        )
    }
}

/// How a request failed to reach WeChat or to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportFailure {
    /// No connection could be made: the request never reached WeChat.
    Connect,
    /// No complete answer in time.
    Timeout,
    /// The connection broke after the request was sent.
    ConnectionLost,
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportFailure::Connect => "could not connect",
            TransportFailure::Timeout => "timed out",
            TransportFailure::ConnectionLost => "connection lost",
        })
    }
}

/// A non-zero `errcode` from WeChat.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint} answered errcode {errcode} ({kind:?})")]
pub struct WeChatError {
    /// The endpoint that answered.
    pub endpoint: Endpoint,
    /// WeChat's code (WECHAT_API.md §12).
    pub errcode: i64,
    /// What the code means for the caller.
    pub kind: ErrorKind,
    errmsg: String,
}

impl WeChatError {
    pub(crate) fn new(
        endpoint: Endpoint,
        errcode: i64,
        errmsg: String,
        after_ambiguous_attempt: bool,
    ) -> Self {
        let mut kind = ErrorKind::from_errcode(endpoint, errcode);
        if after_ambiguous_attempt
            && endpoint.consumes_code()
            && matches!(kind, ErrorKind::CodeUsed | ErrorKind::InvalidCode)
        {
            kind = ErrorKind::CodeLostToFailedAttempt;
        }
        Self {
            endpoint,
            errcode,
            kind,
            errmsg,
        }
    }

    /// WeChat's `errmsg`, verbatim (with its `rid:`), for logs. Never send it to a caller.
    pub fn raw_errmsg(&self) -> &str {
        &self.errmsg
    }
}

impl fmt::Debug for WeChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeChatError")
            .field("endpoint", &self.endpoint)
            .field("errcode", &self.errcode)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What an `errcode` means, grouped by what the caller should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 40029, 42003, 41008: the code is unknown, expired, of another app or missing.
    InvalidCode,
    /// 40163: the code was exchanged before.
    CodeUsed,
    /// 40163 or 40029 answered to a retry whose earlier attempt failed ambiguously
    /// (`-1`, 5xx, timeout, reset): WeChat consumed the code in that attempt
    /// (WECHAT_API.md §2). The caller did nothing wrong, but needs a new code.
    CodeLostToFailedAttempt,
    /// 40226: WeChat blocked this high-risk user's code.
    CodeBlocked,
    /// 40001, 40014, 41001 on an API call: the access token is invalid or not the latest.
    InvalidCredential,
    /// 42001: the access token expired.
    ExpiredCredential,
    /// 40030, 42002, 42007, 41003: the web refresh token is invalid or expired;
    /// the user must authorize again.
    InvalidRefreshToken,
    /// 45011: per-minute frequency limit.
    RateLimited,
    /// 45009: daily quota spent.
    QuotaExceeded,
    /// -1: WeChat is busy; retried already.
    Busy,
    /// The app's configuration is wrong: 40013 invalid appid, 40125 invalid
    /// secret, 40164 and 895xx IP allowlist, 40243 frozen secret, 61024, 40002,
    /// 41002, 41004, and 40001 from a token endpoint (a wrong AppSecret, §8).
    AppMisconfigured,
    /// 48001, 50001: the app or token lacks the scope or permission.
    Unauthorized,
    /// 50002: the user is limited by WeChat.
    UserLimited,
    /// 40003: the openid does not belong to this app or token.
    InvalidOpenId,
    /// 87009: the session_key signature does not match (the session_key is stale).
    InvalidSignature,
    /// 47001: the request was malformed (a bug on our side).
    BadRequest,
    /// A code not in WECHAT_API.md §12.
    Unknown,
}

impl ErrorKind {
    /// Classifies `errcode` as answered by `endpoint` (WECHAT_API.md §12; 40001
    /// means a wrong secret on the token endpoints, §8).
    pub fn from_errcode(endpoint: Endpoint, errcode: i64) -> Self {
        use ErrorKind::*;
        match errcode {
            -1 => Busy,
            40001 if endpoint.is_app_token_endpoint() => AppMisconfigured,
            40001 | 40014 | 41001 => InvalidCredential,
            42001 => ExpiredCredential,
            40029 | 42003 | 41008 => InvalidCode,
            40163 => CodeUsed,
            40226 => CodeBlocked,
            40030 | 42002 | 42007 | 41003 => InvalidRefreshToken,
            45011 => RateLimited,
            45009 => QuotaExceeded,
            40002 | 40013 | 40125 | 40164 | 40243 | 41002 | 41004 | 61024 | 89501 | 89503
            | 89506 | 89507 => AppMisconfigured,
            48001 | 50001 => Unauthorized,
            50002 => UserLimited,
            40003 => InvalidOpenId,
            87009 => InvalidSignature,
            47001 => BadRequest,
            _ => Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_errcode_has_a_kind() {
        let documented = [
            -1, 40001, 40002, 40003, 40013, 40014, 40029, 40030, 40125, 40163, 40164, 40226, 40243,
            41001, 41002, 41003, 41004, 41008, 42001, 42002, 42003, 42007, 45009, 45011, 47001,
            48001, 50001, 50002, 61024, 87009, 89501, 89503, 89506, 89507,
        ];
        for code in documented {
            assert_ne!(
                ErrorKind::from_errcode(Endpoint::SnsUserInfo, code),
                ErrorKind::Unknown,
                "{code}"
            );
        }
        assert_eq!(
            ErrorKind::from_errcode(Endpoint::SnsUserInfo, 12345),
            ErrorKind::Unknown
        );
    }

    #[test]
    fn errcode_40001_means_a_wrong_secret_on_token_endpoints() {
        assert_eq!(
            ErrorKind::from_errcode(Endpoint::Token, 40001),
            ErrorKind::AppMisconfigured
        );
        assert_eq!(
            ErrorKind::from_errcode(Endpoint::StableToken, 40001),
            ErrorKind::AppMisconfigured
        );
        assert_eq!(
            ErrorKind::from_errcode(Endpoint::GetUserPhoneNumber, 40001),
            ErrorKind::InvalidCredential
        );
    }

    #[test]
    fn a_used_code_after_an_ambiguous_attempt_is_reported_as_lost() {
        let e = WeChatError::new(
            Endpoint::JsCode2Session,
            40163,
            "code been used, rid: 1".into(),
            true,
        );
        assert_eq!(e.kind, ErrorKind::CodeLostToFailedAttempt);
        let e = WeChatError::new(
            Endpoint::JsCode2Session,
            40163,
            "code been used".into(),
            false,
        );
        assert_eq!(e.kind, ErrorKind::CodeUsed);
    }

    #[test]
    fn display_never_shows_the_raw_errmsg() {
        let e = WeChatError::new(
            Endpoint::Token,
            40164,
            "invalid ip 1.2.3.4, not in whitelist rid: x".into(),
            false,
        );
        assert!(!e.to_string().contains("1.2.3.4"));
        assert!(!format!("{e:?}").contains("1.2.3.4"));
        assert!(e.raw_errmsg().contains("1.2.3.4"));
    }
}

//! What each RPC does, apart from gRPC plumbing: checks in the contract's
//! order (fields, app, named records; the caller and its permissions were
//! checked before, in `grpc.rs`), then WeChat calls and writes. Every
//! function returns an [`ApiError`] from the one table.

mod account;
mod convert;
mod login;
mod sessions;
pub(crate) mod web_callback;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use storage::{StorageError, UserId};
use wechat_client::{AppTokenManager, Deadline, WeChatClient};

use crate::apps::Apps;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::sessions::jwt::TokenKeys;

/// Everything the RPCs need, shared by every request.
#[derive(Debug)]
pub(crate) struct Services {
    /// Users, identities, sessions.
    pub storage: storage::Storage,
    /// WeChat.
    pub wechat: WeChatClient,
    /// The apps' access tokens.
    pub tokens: Arc<AppTokenManager>,
    /// The configured apps.
    pub apps: Apps,
    /// JWT signing and verification keys.
    pub keys: Arc<TokenKeys>,
    /// Session lifetimes.
    pub lifetimes: Lifetimes,
    /// Counters and latencies for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// VerifyToken's memory of signatures and session standings.
    pub verify_cache: Arc<crate::sessions::verify_cache::VerifyCache>,
    /// GetProfile's memory of profiles.
    pub profile_cache: Arc<crate::profile_cache::ProfileCache>,
    /// The keys that bind a browser login to its browser.
    pub web_binding: Arc<crate::web_binding::WebBinding>,
}

/// How long session tokens live.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    /// Access token (JWT), never beyond the session's end.
    pub access: Duration,
    /// Refresh tokens, the session's longest life and the reuse grace.
    pub session: storage::SessionLifetimes,
}

/// Who asks, and until when.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The authenticated caller.
    pub caller: Arc<Caller>,
    /// The request's deadline.
    pub deadline: Deadline,
}

/// Storage's errors in the contract: the one table, matched exhaustively, so
/// a new storage error cannot reach a caller unmapped.
impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        use storage::{Constraint as C, Entity as E};
        match error {
            StorageError::NotFound(E::User) => ApiError::UserNotFound,
            StorageError::NotFound(E::Identity) => ApiError::IdentityNotFound,
            StorageError::NotFound(E::Session) => ApiError::SessionNotFound,
            StorageError::AlreadyExists(C::Identity) => ApiError::IdentityAlreadyBound,
            StorageError::AlreadyExists(C::ExternalId) => ApiError::ExternalIdTaken,
            StorageError::Unavailable => ApiError::Unavailable,
            StorageError::Overloaded => ApiError::Overloaded,
            // A reference to a row that is gone, or a key the service itself
            // chose colliding: a bug or a race the storage did not retry.
            StorageError::NotFound(E::Referenced)
            | StorageError::AlreadyExists(
                C::UnionId
                | C::User
                | C::Session
                | C::RefreshToken
                | C::Ticket
                | C::Code
                | C::WebLogin
                | C::SigningKey
                | C::Other,
            )
            | StorageError::Conflict(_)
            | StorageError::Corrupt(_)
            | StorageError::Keys(_)
            | StorageError::Internal => ApiError::internal(error),
        }
    }
}

/// When a web access token WeChat says lives `expires_in` seconds expires.
/// WeChat's are 2 h; a value beyond a day is not believed (and cannot
/// overflow the clock).
fn web_token_expiry(at: SystemTime, expires_in: u64) -> SystemTime {
    at + Duration::from_secs(expires_in.min(86_400))
}

fn parse_user_id(field: &str, value: &str) -> Result<UserId, ApiError> {
    crate::validate::user_id(field, value).map(UserId)
}

fn now() -> SystemTime {
    SystemTime::now()
}

/// A timestamp of whole unix seconds, as JWT claims hold them.
fn timestamp_secs(secs: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(secs).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

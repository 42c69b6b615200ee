//! A typed async client for the WeChat server APIs that wechat-identity uses.
//!
//! One [`WeChatClient`] serves any number of apps: every call names the app it
//! acts for, and base URLs are injected through [`ClientConfig`] so tests and the
//! demo point the client at `wechat-sim`.
//!
//! What the client takes care of, so callers do not have to:
//! - WeChat answers errors as HTTP 200 with an `errcode` body, and JSON as
//!   `text/plain`; every body is parsed as UTF-8 JSON whatever its Content-Type,
//!   and every `errcode` is mapped to an [`ErrorKind`] (WECHAT_API.md §0, §12).
//! - Transient failures (`-1`, 5xx, resets, unreachable hosts) are retried with
//!   capped, jittered exponential backoff inside the caller's [`Deadline`], with
//!   failover from `api.weixin.qq.com` to `api2.weixin.qq.com` and back.
//! - Single-use codes are never re-sent blindly: a code rejected after an
//!   ambiguous attempt is reported as [`ErrorKind::CodeLostToFailedAttempt`].
//! - The app access token is owned by [`AppTokenManager`]: cached, fetched once
//!   for any number of concurrent callers, refreshed once on 40001/42001, and
//!   force-refreshed within WeChat's limits.
//! - Secrets and tokens are newtypes that never print themselves.

mod api;
mod client;
mod config;
mod credentials;
pub mod crypto;
mod deadline;
mod endpoint;
mod error;
mod retry;
mod token_cache;
mod token_manager;
mod transport;

pub use api::app_token::AppTokenResponse;
pub use api::mini_program::{CodeSession, PhoneInfo};
pub use api::web_oauth::{
    AuthorizeRequest, OAuthScope, OAuthState, WebAccessTokenResponse, WebUserInfo,
};
pub use client::WeChatClient;
pub use config::{CallObserver, CallOutcome, ClientConfig, TokenEndpoint};
pub use credentials::AppCredentials;
pub use deadline::Deadline;
pub use endpoint::Endpoint;
pub use error::{Error, ErrorKind, TransportFailure, WeChatError};
pub use retry::RetryPolicy;
pub use token_cache::InMemoryTokenCache;
pub use token_manager::{AppTokenManager, TokenManagerConfig, TokenStats};
/// WeChat's shared types (ids, the app kind, secrets, the token cache seam),
/// re-exported so a caller of the client needs no second dependency.
pub use wechat_types::{
    AccessToken, AppId, AppKind, AppSecret, CachedToken, Code, ForceRefreshBudget, InvalidId,
    OpenId, SessionKey, TokenCache, TokenCacheError, UnionId, WebAccessToken, WebRefreshToken,
};

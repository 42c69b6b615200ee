//! What every wechat-identity crate means the same way: WeChat's identifiers,
//! the kind of an app, secrets that never print themselves, and the seam where
//! app access tokens are cached.
//!
//! A leaf crate: storage, the WeChat client, the simulator and the server all
//! depend on it, and it depends on none of them (nor on an HTTP or database
//! stack).

mod app_kind;
mod ids;
mod secret;
mod token_cache;

pub use app_kind::AppKind;
pub use ids::{AppId, InvalidId, OpenId, UnionId};
pub use secret::{
    AccessToken, AppSecret, Code, SessionKey, WebAccessToken, WebRefreshToken, constant_time_eq,
};
pub use token_cache::{CachedToken, ForceRefreshBudget, TokenCache, TokenCacheError};

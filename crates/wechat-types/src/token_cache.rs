//! Where app access tokens are kept between fetches: a small trait, so the
//! server can share tokens and the refresh lease across replicas through its
//! database or Redis (the storage crate), or keep them in one process (the
//! client's `InMemoryTokenCache`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::ids::AppId;
use crate::secret::AccessToken;

/// An app access token with what the manager needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    /// The token.
    pub access_token: AccessToken,
    /// When WeChat stops accepting it.
    pub expires_at: SystemTime,
    /// When it was fetched.
    pub fetched_at: SystemTime,
    /// Forced refreshes spent, carried from token to token.
    pub force_budget: ForceRefreshBudget,
}

impl CachedToken {
    /// Whether the token is still good for at least `margin`.
    pub fn fresh_for(&self, margin: Duration, now: SystemTime) -> bool {
        self.expires_at
            .duration_since(now)
            .is_ok_and(|left| left > margin)
    }
}

/// WeChat allows 20 forced `stable_token` refreshes a day, at least 30 s apart
/// (WECHAT_API.md §9); beyond that it silently refreshes nothing. The budget is
/// stored with the token so every replica sees the same count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForceRefreshBudget {
    /// The day (UTC+8, WeChat's) the count belongs to, as days since the epoch.
    pub day: i64,
    /// Forced refreshes spent that day.
    pub used: u32,
    /// The last forced refresh.
    pub last_forced_at: Option<SystemTime>,
}

impl ForceRefreshBudget {
    /// Why a forced refresh is not allowed now, or `None` when it is.
    pub fn refusal(
        &self,
        now: SystemTime,
        daily_limit: u32,
        min_interval: Duration,
    ) -> Option<&'static str> {
        if let Some(last) = self.last_forced_at
            && now
                .duration_since(last)
                .is_ok_and(|since| since < min_interval)
        {
            return Some("the previous forced refresh was less than 30 s ago");
        }
        if self.day == beijing_day(now) && self.used >= daily_limit {
            return Some("the daily limit of forced refreshes is spent");
        }
        None
    }

    /// Counts one forced refresh at `now`.
    pub fn record(&mut self, now: SystemTime) {
        let today = beijing_day(now);
        if self.day != today {
            self.day = today;
            self.used = 0;
        }
        self.used += 1;
        self.last_forced_at = Some(now);
    }
}

fn beijing_day(now: SystemTime) -> i64 {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from((secs + 8 * 3600) / 86_400).unwrap_or(i64::MAX)
}

/// The shared cache could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("token cache unavailable: {message}")]
pub struct TokenCacheError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TokenCacheError {
    /// An error with a message (no secrets in it) and an optional cause.
    pub fn new(
        message: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source,
        }
    }
}

/// Storage for app access tokens and the lease that makes one holder at a time
/// refresh an app's token. Implementations must be safe to share between
/// processes when they claim to be (the database and Redis ones are).
#[async_trait]
pub trait TokenCache: Send + Sync + std::fmt::Debug + 'static {
    /// The cached token of `app_id`, fresh or not.
    async fn load(&self, app_id: &AppId) -> Result<Option<CachedToken>, TokenCacheError>;

    /// Replaces the cached token of `app_id`.
    async fn store(&self, app_id: &AppId, token: &CachedToken) -> Result<(), TokenCacheError>;

    /// Takes the refresh lease of `app_id` for `ttl` if nobody else holds an
    /// unexpired one; `true` when `holder` now holds it.
    async fn try_lease(
        &self,
        app_id: &AppId,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, TokenCacheError>;

    /// Gives the lease back, if `holder` still holds it.
    async fn release_lease(&self, app_id: &AppId, holder: &str) -> Result<(), TokenCacheError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_refresh_budget_enforces_interval_and_daily_limit() {
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut budget = ForceRefreshBudget::default();
        assert_eq!(budget.refusal(start, 2, Duration::from_secs(30)), None);
        budget.record(start);
        assert!(
            budget
                .refusal(start + Duration::from_secs(10), 2, Duration::from_secs(30))
                .is_some()
        );
        assert_eq!(
            budget.refusal(start + Duration::from_secs(31), 2, Duration::from_secs(30)),
            None
        );
        budget.record(start + Duration::from_secs(31));
        assert!(
            budget
                .refusal(start + Duration::from_secs(100), 2, Duration::from_secs(30))
                .is_some()
        );
        // The next Beijing day starts a new count.
        assert_eq!(
            budget.refusal(
                start + Duration::from_secs(86_400),
                2,
                Duration::from_secs(30)
            ),
            None
        );
    }
}

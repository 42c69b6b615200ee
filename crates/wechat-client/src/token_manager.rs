//! The owner of app access tokens: cache, single flight, shared lease,
//! renewal after WeChat rejects a token, and forced refresh within limits.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rand::RngExt;
use tokio::time::Instant;

use crate::api::app_token::AppTokenResponse;
use crate::api::mini_program::PhoneInfo;
use crate::client::WeChatClient;
use crate::config::TokenEndpoint;
use crate::credentials::AppCredentials;
use crate::deadline::Deadline;
use crate::endpoint::Endpoint;
use crate::error::Error;
use wechat_types::{AccessToken, Code, SessionKey};
use wechat_types::{AppId, OpenId};
use wechat_types::{CachedToken, ForceRefreshBudget, TokenCache};

/// How the manager keeps tokens.
#[derive(Debug, Clone)]
pub struct TokenManagerConfig {
    /// Which endpoint issues tokens.
    pub endpoint: TokenEndpoint,
    /// A token is renewed this long before it expires. The default sits inside
    /// WeChat's own 5-minute renewal window, so a plain `stable_token` call then
    /// does return a new token (WECHAT_API.md §9).
    pub refresh_margin: Duration,
    /// How long one holder may keep the refresh lease.
    pub lease_ttl: Duration,
    /// How long a caller without a deadline waits for another holder's refresh.
    pub max_wait: Duration,
    /// Forced refreshes allowed per day (WeChat: 20).
    pub force_refresh_daily_limit: u32,
    /// Least time between forced refreshes (WeChat: 30 s).
    pub force_refresh_min_interval: Duration,
}

impl Default for TokenManagerConfig {
    fn default() -> Self {
        Self {
            endpoint: TokenEndpoint::Stable,
            refresh_margin: Duration::from_secs(240),
            lease_ttl: Duration::from_secs(15),
            max_wait: Duration::from_secs(10),
            force_refresh_daily_limit: 20,
            force_refresh_min_interval: Duration::from_secs(30),
        }
    }
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenStats {
    /// Tokens served from this process's memory.
    pub local_hits: u64,
    /// Tokens served from the shared cache (fetched by another holder).
    pub shared_hits: u64,
    /// Tokens fetched from WeChat.
    pub fetches: u64,
    /// Forced refreshes spent.
    pub forced_refreshes: u64,
    /// API calls whose token WeChat rejected (40001/42001).
    pub rejections: u64,
}

#[derive(Debug, Default)]
struct Counters {
    local_hits: AtomicU64,
    shared_hits: AtomicU64,
    fetches: AtomicU64,
    forced_refreshes: AtomicU64,
    rejections: AtomicU64,
}

/// A token fetched less than this long ago is not fetched again just because it
/// is inside the refresh margin: WeChat may not have renewed it yet.
const REFETCH_GUARD: Duration = Duration::from_secs(60);
const POLL_START: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(500);

/// Owns the access tokens of a set of apps. Any number of concurrent callers
/// on a cold cache cause one fetch per app; with a shared [`TokenCache`], any
/// number of replicas do too.
#[derive(Debug)]
pub struct AppTokenManager {
    client: WeChatClient,
    apps: HashMap<AppId, AppCredentials>,
    flights: HashMap<AppId, tokio::sync::Mutex<()>>,
    local: RwLock<HashMap<AppId, CachedToken>>,
    cache: Arc<dyn TokenCache>,
    config: TokenManagerConfig,
    holder: String,
    counters: Counters,
}

impl AppTokenManager {
    /// A manager for `apps`, keeping tokens in `cache`.
    pub fn new(
        client: WeChatClient,
        apps: impl IntoIterator<Item = AppCredentials>,
        cache: Arc<dyn TokenCache>,
        config: TokenManagerConfig,
    ) -> Self {
        let apps: HashMap<_, _> = apps
            .into_iter()
            .map(|app| (app.app_id.clone(), app))
            .collect();
        let flights = apps
            .keys()
            .map(|id| (id.clone(), tokio::sync::Mutex::new(())))
            .collect();
        let holder = format!(
            "{}-{:016x}",
            std::process::id(),
            rand::rng().random::<u64>()
        );
        Self {
            client,
            apps,
            flights,
            local: RwLock::default(),
            cache,
            config,
            holder,
            counters: Counters::default(),
        }
    }

    /// The client the manager calls WeChat with.
    pub fn client(&self) -> &WeChatClient {
        &self.client
    }

    /// A valid access token of `app_id`, fetched only when no fresh one is cached.
    ///
    /// # Errors
    /// [`Error::UnknownApp`], WeChat and transport errors of the fetch,
    /// [`Error::DeadlineExceeded`] while waiting for another holder's fetch,
    /// [`Error::TokenCache`].
    pub async fn access_token(
        &self,
        app_id: &AppId,
        deadline: Deadline,
    ) -> Result<AccessToken, Error> {
        Ok(self.current(app_id, deadline).await?.access_token)
    }

    /// The cached token of `app_id` with its expiry, fetched when needed.
    ///
    /// # Errors
    /// As [`Self::access_token`].
    pub async fn current(&self, app_id: &AppId, deadline: Deadline) -> Result<CachedToken, Error> {
        self.obtain(app_id, deadline, None).await
    }

    /// A token other than `rejected`, which WeChat refused. Fetches a new one
    /// only when `rejected` is still the current token, so many callers that saw
    /// the same rejection cause one refresh.
    ///
    /// # Errors
    /// As [`Self::access_token`], plus [`Error::ForceRefreshLimited`].
    pub async fn renew_rejected(
        &self,
        app_id: &AppId,
        rejected: &AccessToken,
        deadline: Deadline,
    ) -> Result<AccessToken, Error> {
        Ok(self
            .obtain(app_id, deadline, Some(rejected))
            .await?
            .access_token)
    }

    /// Runs `call` with the app's token; when WeChat rejects that token
    /// (40001/42001), renews it once and runs `call` once more.
    ///
    /// # Errors
    /// Whatever `call` or the token fetch fails with.
    pub async fn with_token<T, F, Fut>(
        &self,
        app_id: &AppId,
        deadline: Deadline,
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let token = self.access_token(app_id, deadline).await?;
        match call(token.clone()).await {
            Err(error) if error.is_stale_app_token() => {
                self.counters.rejections.fetch_add(1, Ordering::Relaxed);
                tracing::info!(app_id = %app_id, errcode = ?error.kind(), "wechat rejected the app access token, renewing once");
                let fresh = self.renew_rejected(app_id, &token, deadline).await?;
                call(fresh).await
            }
            other => other,
        }
    }

    /// The phone number behind a getPhoneNumber code (WECHAT_API.md §10).
    ///
    /// # Errors
    /// See [`WeChatClient::user_phone_number`].
    pub async fn phone_number(
        &self,
        app_id: &AppId,
        code: &Code,
        openid: Option<&OpenId>,
        deadline: Deadline,
    ) -> Result<PhoneInfo, Error> {
        self.with_token(app_id, deadline, |token| async move {
            self.client
                .user_phone_number(app_id, &token, code, openid, deadline)
                .await
        })
        .await
    }

    /// Whether `session_key` is still the user's current one (§11).
    ///
    /// # Errors
    /// See [`WeChatClient::check_session`].
    pub async fn check_session(
        &self,
        app_id: &AppId,
        openid: &OpenId,
        session_key: &SessionKey,
        deadline: Deadline,
    ) -> Result<bool, Error> {
        self.with_token(app_id, deadline, |token| async move {
            self.client
                .check_session(&token, openid, session_key, deadline)
                .await
        })
        .await
    }

    /// Counters since start.
    pub fn stats(&self) -> TokenStats {
        let c = &self.counters;
        TokenStats {
            local_hits: c.local_hits.load(Ordering::Relaxed),
            shared_hits: c.shared_hits.load(Ordering::Relaxed),
            fetches: c.fetches.load(Ordering::Relaxed),
            forced_refreshes: c.forced_refreshes.load(Ordering::Relaxed),
            rejections: c.rejections.load(Ordering::Relaxed),
        }
    }

    fn endpoint(&self) -> Endpoint {
        match self.config.endpoint {
            TokenEndpoint::Stable => Endpoint::StableToken,
            TokenEndpoint::Classic => Endpoint::Token,
        }
    }

    fn usable(&self, token: &CachedToken, rejected: Option<&AccessToken>) -> bool {
        if rejected.is_some_and(|r| *r == token.access_token) {
            return false;
        }
        let now = SystemTime::now();
        let recently_fetched = now
            .duration_since(token.fetched_at)
            .is_ok_and(|age| age < REFETCH_GUARD);
        token.fresh_for(self.config.refresh_margin, now)
            || (recently_fetched && token.fresh_for(Duration::ZERO, now))
    }

    fn local_usable(&self, app_id: &AppId, rejected: Option<&AccessToken>) -> Option<CachedToken> {
        let local = self.local.read().unwrap_or_else(|e| e.into_inner());
        local
            .get(app_id)
            .filter(|t| self.usable(t, rejected))
            .cloned()
    }

    fn remember(&self, app_id: &AppId, token: &CachedToken) {
        self.local
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app_id.clone(), token.clone());
    }

    async fn obtain(
        &self,
        app_id: &AppId,
        deadline: Deadline,
        rejected: Option<&AccessToken>,
    ) -> Result<CachedToken, Error> {
        if let Some(token) = self.local_usable(app_id, rejected) {
            self.counters.local_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(token);
        }
        let flight = self
            .flights
            .get(app_id)
            .ok_or_else(|| Error::UnknownApp(app_id.clone()))?;
        let wait_until = deadline
            .instant()
            .unwrap_or_else(|| Instant::now() + self.config.max_wait);
        let endpoint = self.endpoint();
        // One caller per app per process goes on; the others wait here and then
        // find the token it stored.
        let _flight = tokio::time::timeout_at(wait_until, flight.lock())
            .await
            .map_err(|_| Error::DeadlineExceeded { endpoint })?;
        if let Some(token) = self.local_usable(app_id, rejected) {
            self.counters.local_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(token);
        }
        let mut poll = POLL_START;
        loop {
            if let Some(token) = self.cache.load(app_id).await?
                && self.usable(&token, rejected)
            {
                self.counters.shared_hits.fetch_add(1, Ordering::Relaxed);
                self.remember(app_id, &token);
                return Ok(token);
            }
            if self
                .cache
                .try_lease(app_id, &self.holder, self.config.lease_ttl)
                .await?
            {
                let refreshed = self.refresh_under_lease(app_id, rejected, deadline).await;
                if let Err(error) = self.cache.release_lease(app_id, &self.holder).await {
                    tracing::warn!(app_id = %app_id, %error, "could not release the token refresh lease; it will expire");
                }
                let token = refreshed?;
                self.remember(app_id, &token);
                return Ok(token);
            }
            // Another replica holds the lease: wait for the token it stores.
            if Instant::now() + poll >= wait_until {
                return Err(Error::DeadlineExceeded { endpoint });
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(POLL_MAX);
        }
    }

    async fn refresh_under_lease(
        &self,
        app_id: &AppId,
        rejected: Option<&AccessToken>,
        deadline: Deadline,
    ) -> Result<CachedToken, Error> {
        // The previous holder may have stored a token between our load and our lease.
        let previous = self.cache.load(app_id).await?;
        if let Some(token) = previous.as_ref().filter(|t| self.usable(t, rejected)) {
            self.counters.shared_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(token.clone());
        }
        let mut budget = previous.map(|p| p.force_budget).unwrap_or_default();
        let app = self
            .apps
            .get(app_id)
            .ok_or_else(|| Error::UnknownApp(app_id.clone()))?;
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let token = match self.config.endpoint {
            TokenEndpoint::Classic => self.client.fetch_classic_token(app, deadline).await?,
            TokenEndpoint::Stable => {
                let token = self.client.fetch_stable_token(app, false, deadline).await?;
                if rejected.is_some_and(|r| *r == token.access_token) {
                    // WeChat still hands out the token it rejected: only a forced
                    // refresh replaces it, and those are scarce.
                    let now = SystemTime::now();
                    let limit = self.config.force_refresh_daily_limit;
                    if let Some(reason) =
                        budget.refusal(now, limit, self.config.force_refresh_min_interval)
                    {
                        tracing::warn!(app_id = %app_id, reason, "forced access token refresh refused");
                        return Err(Error::ForceRefreshLimited {
                            app_id: app_id.clone(),
                            reason,
                        });
                    }
                    budget.record(now);
                    self.counters
                        .forced_refreshes
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(app_id = %app_id, used_today = budget.used, "forcing an access token refresh");
                    self.client.fetch_stable_token(app, true, deadline).await?
                } else {
                    token
                }
            }
        };
        let token = cached(token, budget);
        self.cache.store(app_id, &token).await?;
        tracing::info!(app_id = %app_id, expires_in = token.expires_at.duration_since(token.fetched_at).map_or(0, |d| d.as_secs()), "fetched a new app access token");
        Ok(token)
    }
}

fn cached(response: AppTokenResponse, force_budget: ForceRefreshBudget) -> CachedToken {
    let now = SystemTime::now();
    CachedToken {
        access_token: response.access_token,
        expires_at: now + Duration::from_secs(response.expires_in),
        fetched_at: now,
        force_budget,
    }
}

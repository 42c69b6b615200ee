//! The token cache of a single process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use wechat_types::{AppId, CachedToken, TokenCache, TokenCacheError};

/// A cache for a single process.
#[derive(Debug, Default)]
pub struct InMemoryTokenCache {
    tokens: Mutex<HashMap<AppId, CachedToken>>,
    leases: Mutex<HashMap<AppId, (String, tokio::time::Instant)>>,
}

impl InMemoryTokenCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl TokenCache for InMemoryTokenCache {
    async fn load(&self, app_id: &AppId) -> Result<Option<CachedToken>, TokenCacheError> {
        Ok(self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(app_id)
            .cloned())
    }

    async fn store(&self, app_id: &AppId, token: &CachedToken) -> Result<(), TokenCacheError> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app_id.clone(), token.clone());
        Ok(())
    }

    async fn try_lease(
        &self,
        app_id: &AppId,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, TokenCacheError> {
        let now = tokio::time::Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        match leases.get(app_id) {
            Some((other, until)) if other != holder && *until > now => Ok(false),
            _ => {
                leases.insert(app_id.clone(), (holder.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, app_id: &AppId, holder: &str) -> Result<(), TokenCacheError> {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if leases.get(app_id).is_some_and(|(h, _)| h == holder) {
            leases.remove(app_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lease_has_one_holder_until_released_or_expired() {
        let cache = InMemoryTokenCache::new();
        let app = AppId::new("wx1").expect("valid");
        assert!(
            cache
                .try_lease(&app, "a", Duration::from_secs(10))
                .await
                .expect("lease")
        );
        assert!(
            !cache
                .try_lease(&app, "b", Duration::from_secs(10))
                .await
                .expect("lease")
        );
        cache.release_lease(&app, "b").await.expect("release");
        assert!(
            !cache
                .try_lease(&app, "b", Duration::from_secs(10))
                .await
                .expect("lease")
        );
        cache.release_lease(&app, "a").await.expect("release");
        assert!(
            cache
                .try_lease(&app, "b", Duration::from_millis(1))
                .await
                .expect("lease")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            cache
                .try_lease(&app, "a", Duration::from_secs(10))
                .await
                .expect("lease")
        );
    }
}

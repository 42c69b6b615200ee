//! The shared app-access-token cache behind the WeChat client's [`TokenCache`]:
//! tokens encrypted, and a lease so one replica at a time refreshes a token.

use std::time::{Duration, SystemTime};

use crate::sql::query;
use async_trait::async_trait;
use wechat_types::{
    AccessToken, AppId, CachedToken, ForceRefreshBudget, TokenCache, TokenCacheError,
};

use crate::Storage;
use crate::db::{get_opt_bytes, get_opt_i64, millis, millis_after, time};
use crate::error::StorageError;

/// [`TokenCache`] on the storage database. Every replica on the same database
/// sees the same tokens, the same forced-refresh budget and the same lease.
#[derive(Debug, Clone)]
pub struct DbTokenCache {
    storage: Storage,
}

pub(crate) fn token_aad(app_id: &AppId) -> String {
    format!("app_tokens.token:{app_id}")
}

fn cache_error(error: StorageError) -> TokenCacheError {
    TokenCacheError::new("database token cache failed", Some(Box::new(error)))
}

impl DbTokenCache {
    /// A cache on `storage`.
    pub fn new(storage: Storage) -> Self {
        Self { storage }
    }

    async fn load_inner(&self, app_id: &AppId) -> Result<Option<CachedToken>, StorageError> {
        let row = query(
            "SELECT token, expires_at, fetched_at, force_day, force_used, force_last_at \
             FROM app_tokens WHERE app_id = $1",
        )
        .bind(app_id.to_string())
        .fetch_optional(self.storage.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (Some(sealed), Some(expires_at), Some(fetched_at)) = (
            get_opt_bytes(&row, "token")?,
            get_opt_i64(&row, "expires_at")?,
            get_opt_i64(&row, "fetched_at")?,
        ) else {
            // A lease row without a token yet.
            return Ok(None);
        };
        let token = self.storage.keys().decrypt(&token_aad(app_id), &sealed)?;
        let token = String::from_utf8(token).map_err(|_| crate::db::corrupt("app token"))?;
        Ok(Some(CachedToken {
            access_token: AccessToken::new(token),
            expires_at: time(expires_at),
            fetched_at: time(fetched_at),
            force_budget: ForceRefreshBudget {
                day: row.get::<i64>("force_day")?,
                used: u32::try_from(row.get::<i64>("force_used")?).unwrap_or(u32::MAX),
                last_forced_at: get_opt_i64(&row, "force_last_at")?.map(time),
            },
        }))
    }

    async fn store_inner(&self, app_id: &AppId, token: &CachedToken) -> Result<(), StorageError> {
        let sealed = self.storage.keys().encrypt(
            &token_aad(app_id),
            token.access_token.expose_secret().as_bytes(),
        )?;
        self.storage.write_statement(query(
            "INSERT INTO app_tokens (app_id, token, expires_at, fetched_at, force_day, force_used, \
             force_last_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (app_id) DO UPDATE SET \
             token = excluded.token, expires_at = excluded.expires_at, \
             fetched_at = excluded.fetched_at, force_day = excluded.force_day, \
             force_used = excluded.force_used, force_last_at = excluded.force_last_at",
        )
        .bind(app_id.to_string())
        .bind(sealed)
        .bind(millis(token.expires_at))
        .bind(millis(token.fetched_at))
        .bind(token.force_budget.day)
        .bind(i64::from(token.force_budget.used))
        .bind(token.force_budget.last_forced_at.map(millis))
        ).await?;
        Ok(())
    }

    async fn try_lease_inner(
        &self,
        app_id: &AppId,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        let now = SystemTime::now();
        // One atomic statement on both engines: take the lease when nobody
        // holds it, it expired, or we hold it already (extending it).
        let lease = query(
            "INSERT INTO app_tokens (app_id, lease_holder, lease_expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (app_id) DO UPDATE SET lease_holder = excluded.lease_holder, \
             lease_expires_at = excluded.lease_expires_at \
             WHERE app_tokens.lease_holder IS NULL OR app_tokens.lease_expires_at <= $4 \
             OR app_tokens.lease_holder = excluded.lease_holder \
             RETURNING app_id",
        )
        .bind(app_id.to_string())
        .bind(holder.to_owned())
        .bind(millis_after(now, ttl))
        .bind(millis(now));
        let row = self
            .storage
            .write_autocommit(lease, |_, conn, lease| {
                Box::pin(async move { Ok(lease.clone().fetch_optional(conn).await?) })
            })
            .await?;
        Ok(row.is_some())
    }

    async fn release_lease_inner(&self, app_id: &AppId, holder: &str) -> Result<(), StorageError> {
        self.storage
            .write_statement(
                query(
                    "UPDATE app_tokens SET lease_holder = NULL, lease_expires_at = NULL \
             WHERE app_id = $1 AND lease_holder = $2",
                )
                .bind(app_id.to_string())
                .bind(holder.to_owned()),
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl TokenCache for DbTokenCache {
    async fn load(&self, app_id: &AppId) -> Result<Option<CachedToken>, TokenCacheError> {
        self.load_inner(app_id).await.map_err(cache_error)
    }

    async fn store(&self, app_id: &AppId, token: &CachedToken) -> Result<(), TokenCacheError> {
        self.store_inner(app_id, token).await.map_err(cache_error)
    }

    async fn try_lease(
        &self,
        app_id: &AppId,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, TokenCacheError> {
        self.try_lease_inner(app_id, holder, ttl)
            .await
            .map_err(cache_error)
    }

    async fn release_lease(&self, app_id: &AppId, holder: &str) -> Result<(), TokenCacheError> {
        self.release_lease_inner(app_id, holder)
            .await
            .map_err(cache_error)
    }
}

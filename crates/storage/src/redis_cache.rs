//! The shared app-access-token cache on Redis, for deployments that have one:
//! the same [`TokenCache`] contract as the database's, with the token sealed
//! by the storage key ring (Redis never sees it in the clear) and the refresh
//! lease as a key that expires by itself.
//!
//! Keys, under the configured prefix: `{prefix}:app-token:{app_id}` (JSON:
//! sealed token, times, forced-refresh budget) and
//! `{prefix}:app-token-lease:{app_id}` (the holder's id).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use wechat_types::{
    AccessToken, AppId, CachedToken, ForceRefreshBudget, TokenCache, TokenCacheError,
};

use crate::Storage;
use crate::crypto::key_id_of;
use crate::db::{millis, time};
use crate::error::StorageError;
use crate::rekey::{KeyUsage, RekeyProgress};

/// The budget of forced refreshes is per day: keep a record that long after
/// its token expired, so a new token inherits the day's count.
const KEEP_AFTER_EXPIRY: Duration = Duration::from_secs(2 * 86_400);

/// Takes the lease when it is free or already ours (extending it).
const TAKE_LEASE: &str = r"
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Replaces a token record only if it is still the one read, keeping its
/// remaining time to live.
const REPLACE_RECORD: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
  else
    redis.call('SET', KEYS[1], ARGV[2])
  end
  return 1
end
return 0
";

/// Drops the lease only if we still hold it.
const RELEASE_LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// [`TokenCache`] on Redis; every replica on the same Redis and prefix shares
/// tokens, budget and lease.
#[derive(Clone)]
pub struct RedisTokenCache {
    connection: ConnectionManager,
    prefix: String,
    storage: Storage,
}

impl std::fmt::Debug for RedisTokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokenCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    /// The token, sealed by the key ring, base64.
    token: String,
    expires_at: i64,
    fetched_at: i64,
    force_day: i64,
    force_used: u32,
    force_last_at: Option<i64>,
}

fn cache_error(
    what: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> TokenCacheError {
    TokenCacheError::new(format!("redis token cache: {what}"), Some(Box::new(error)))
}

fn token_aad(app_id: &AppId) -> String {
    format!("redis.app_token:{app_id}")
}

impl RedisTokenCache {
    /// Connects to `url` (`redis://` or `rediss://`); keys go under `prefix`.
    /// Tokens are sealed with `storage`'s key ring.
    ///
    /// # Errors
    /// A URL that does not parse, or a Redis that does not answer.
    pub async fn connect(
        url: &str,
        prefix: &str,
        storage: Storage,
    ) -> Result<Self, TokenCacheError> {
        let client = redis::Client::open(url).map_err(|e| cache_error("bad URL", e))?;
        let connection = ConnectionManager::new(client)
            .await
            .map_err(|e| cache_error("cannot connect", e))?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            storage,
        })
    }

    fn token_key(&self, app_id: &AppId) -> String {
        format!("{}:app-token:{app_id}", self.prefix)
    }

    fn lease_key(&self, app_id: &AppId) -> String {
        format!("{}:app-token-lease:{app_id}", self.prefix)
    }

    /// Every token record under this prefix: `(redis key, app id, record text)`.
    async fn records(&self) -> Result<Vec<(String, String, String)>, StorageError> {
        let unavailable = |error: redis::RedisError| {
            tracing::warn!(%error, "redis token cache: cannot list the token records");
            StorageError::Unavailable
        };
        let mut connection = self.connection.clone();
        let marker = format!("{}:app-token:", self.prefix);
        let pattern = format!("{marker}*");
        let mut names = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(200)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            names.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        names.sort();
        names.dedup();
        let mut records = Vec::new();
        for name in names {
            let Some(app_id) = name.strip_prefix(&marker).map(str::to_owned) else {
                continue;
            };
            let text: Option<String> = connection.get(&name).await.map_err(unavailable)?;
            if let Some(text) = text {
                records.push((name, app_id, text));
            }
        }
        Ok(records)
    }

    /// Re-encrypts every token record under the storage's current key,
    /// keeping each record's time to live; a record rewritten meanwhile by a
    /// replica is left to it. Records expire by themselves (2 days after
    /// their token), so this only shortens how long a retired key is needed.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn rekey(&self) -> Result<RekeyProgress, StorageError> {
        let keys = self.storage.keys();
        let mut done = RekeyProgress {
            column: "redis".to_owned(),
            batches: 1,
            ..RekeyProgress::default()
        };
        let mut connection = self.connection.clone();
        for (name, app_id, text) in self.records().await? {
            done.scanned += 1;
            let opened = serde_json::from_str::<Record>(&text)
                .ok()
                .and_then(|record| Some((B64.decode(&record.token).ok()?, record)))
                .and_then(|(sealed, record)| {
                    Some((sealed, record, AppId::new(app_id.as_str()).ok()?))
                });
            let Some((sealed, mut record, app_id)) = opened else {
                done.unreadable += 1;
                continue;
            };
            if key_id_of(&sealed).as_deref() == Some(keys.current_key_id()) {
                continue;
            }
            let aad = token_aad(&app_id);
            let plain = match keys.decrypt(&aad, &sealed) {
                Ok(plain) => plain,
                Err(error) => {
                    tracing::warn!(%error, "redis token cache: a token does not decrypt; left as it is");
                    done.unreadable += 1;
                    continue;
                }
            };
            record.token = B64.encode(keys.encrypt(&aad, &plain)?);
            let fresh = serde_json::to_string(&record).map_err(|_| StorageError::Internal)?;
            let replaced: i64 = redis::Script::new(REPLACE_RECORD)
                .key(&name)
                .arg(&text)
                .arg(fresh)
                .invoke_async(&mut connection)
                .await
                .map_err(|error| {
                    tracing::warn!(%error, "redis token cache: replace script failed");
                    StorageError::Unavailable
                })?;
            if replaced == 1 {
                done.rekeyed += 1;
            } else {
                done.changed_meanwhile += 1;
            }
        }
        Ok(done)
    }

    /// The token records under this prefix per key id.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn key_usage(&self) -> Result<KeyUsage, StorageError> {
        let mut usage = KeyUsage::default();
        for (_, _, text) in self.records().await? {
            let sealed = serde_json::from_str::<Record>(&text)
                .ok()
                .and_then(|record| B64.decode(&record.token).ok())
                .unwrap_or_default();
            usage.add_value(&sealed);
        }
        Ok(usage)
    }
}

#[async_trait]
impl TokenCache for RedisTokenCache {
    async fn load(&self, app_id: &AppId) -> Result<Option<CachedToken>, TokenCacheError> {
        let mut connection = self.connection.clone();
        let text: Option<String> = connection
            .get(self.token_key(app_id))
            .await
            .map_err(|e| cache_error("GET failed", e))?;
        let Some(text) = text else { return Ok(None) };
        let record: Record =
            serde_json::from_str(&text).map_err(|e| cache_error("unreadable record", e))?;
        let sealed = B64
            .decode(&record.token)
            .map_err(|e| cache_error("unreadable token", e))?;
        // decrypt_str's error carries no plaintext (a FromUtf8Error would).
        let token = self
            .storage
            .keys()
            .decrypt_str(&token_aad(app_id), &sealed)
            .map_err(|e| cache_error("cannot decrypt the token", e))?;
        Ok(Some(CachedToken {
            access_token: AccessToken::new(token.expose_secret()),
            expires_at: time(record.expires_at),
            fetched_at: time(record.fetched_at),
            force_budget: ForceRefreshBudget {
                day: record.force_day,
                used: record.force_used,
                last_forced_at: record.force_last_at.map(time),
            },
        }))
    }

    async fn store(&self, app_id: &AppId, token: &CachedToken) -> Result<(), TokenCacheError> {
        let sealed = self
            .storage
            .keys()
            .encrypt(
                &token_aad(app_id),
                token.access_token.expose_secret().as_bytes(),
            )
            .map_err(|e| cache_error("cannot encrypt the token", e))?;
        let record = Record {
            token: B64.encode(sealed),
            expires_at: millis(token.expires_at),
            fetched_at: millis(token.fetched_at),
            force_day: token.force_budget.day,
            force_used: token.force_budget.used,
            force_last_at: token.force_budget.last_forced_at.map(millis),
        };
        let text = serde_json::to_string(&record).map_err(|e| cache_error("cannot encode", e))?;
        let keep = token
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            + KEEP_AFTER_EXPIRY;
        let mut connection = self.connection.clone();
        connection
            .pset_ex::<_, _, ()>(
                self.token_key(app_id),
                text,
                u64::try_from(keep.as_millis()).unwrap_or(u64::MAX),
            )
            .await
            .map_err(|e| cache_error("SET failed", e))
    }

    async fn try_lease(
        &self,
        app_id: &AppId,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, TokenCacheError> {
        let mut connection = self.connection.clone();
        let taken: i64 = redis::Script::new(TAKE_LEASE)
            .key(self.lease_key(app_id))
            .arg(holder)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| cache_error("lease script failed", e))?;
        Ok(taken == 1)
    }

    async fn release_lease(&self, app_id: &AppId, holder: &str) -> Result<(), TokenCacheError> {
        let mut connection = self.connection.clone();
        redis::Script::new(RELEASE_LEASE)
            .key(self.lease_key(app_id))
            .arg(holder)
            .invoke_async::<i64>(&mut connection)
            .await
            .map(|_| ())
            .map_err(|e| cache_error("release script failed", e))
    }
}

//! The encryption keys against the data they protect: `wechat-identity
//! rekey` re-encrypts every value at rest under the current key, and
//! `check-config` says how many values each configured key still protects,
//! so that a retired key protecting none can leave the config.
//!
//! Rotation, start to end: add the new key as `current_key_id` and keep the
//! old one in `encryption.keys`; roll that config out to every replica (so
//! nothing writes under the old key any more); run `rekey`; once
//! `check-config` says the old key protects no value, remove it.

use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;
use storage::{KeyUsage, RedisTokenCache, RekeyOptions, RekeyProgress, Storage};

use crate::app::{connect_storage, open_storage};
use crate::config::ResolvedConfig;

/// How long `check-config` waits for the database or Redis before saying it
/// could not count.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Rows read per query when counting.
const COUNT_BATCH: u32 = 1000;

/// What `check-config` says about the keys: one line per key, and problems
/// an operator must fix (values no configured key can read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyCheck {
    /// One line per configured key.
    pub lines: Vec<String>,
    /// Values under key ids the config lacks, or without a key id at all.
    pub problems: Vec<String>,
}

/// Describes `usage` against the configured key ids (the current one first).
pub(crate) fn describe_usage(usage: &KeyUsage, configured: &[String]) -> KeyCheck {
    let mut check = KeyCheck::default();
    for (index, id) in configured.iter().enumerate() {
        let count = usage.count(id);
        let line = match (index, count) {
            (0, _) => format!("encryption key {id:?} (current): protects {count} value(s)"),
            (_, 0) => format!(
                "encryption key {id:?} (retired): protects no value; it may be removed from encryption.keys"
            ),
            (_, _) => format!(
                "encryption key {id:?} (retired): protects {count} value(s); run `wechat-identity rekey` before removing it"
            ),
        };
        check.lines.push(line);
    }
    for (id, count) in &usage.by_key {
        if !configured.contains(id) {
            check.problems.push(format!(
                "encryption: {count} stored value(s) are under key id {id:?}, which is not in encryption.keys and \
                 cannot be read; add that key back (not as current) and run `wechat-identity rekey`"
            ));
        }
    }
    if usage.malformed > 0 {
        check.problems.push(format!(
            "encryption: {} stored value(s) carry no key id (damaged)",
            usage.malformed
        ));
    }
    check
}

/// The SQLite file a `sqlite:` URL names, `None` for another engine; an
/// in-memory database names no file.
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Some(rest.split('?').next().unwrap_or(rest))
}

/// Counts the values each key id protects, in the database and (when
/// configured) in Redis. `Ok(None)` when there is no database yet; `Err`
/// saying why when it cannot be read. Nothing is written, not even a new
/// SQLite file.
///
/// # Errors
/// The database or Redis is unreachable or unreadable; the message holds no secret.
pub(crate) async fn usage(resolved: &ResolvedConfig) -> Result<Option<KeyUsage>, String> {
    if let Some(file) = sqlite_file(resolved.database_url.expose_secret())
        && (file.contains(":memory:") || !Path::new(file).exists())
    {
        return Ok(None);
    }
    let storage = tokio::time::timeout(CHECK_TIMEOUT, connect_storage(resolved, CHECK_TIMEOUT))
        .await
        .map_err(|_| "the database did not answer".to_owned())?
        .map_err(|e| e.to_string())?;
    let counted = count(&storage, resolved).await;
    storage.close().await;
    counted
}

async fn count(storage: &Storage, resolved: &ResolvedConfig) -> Result<Option<KeyUsage>, String> {
    let pending = storage
        .pending_migrations()
        .await
        .map_err(|e| format!("database: {e}"))?;
    if pending.contains(&1) {
        return Ok(None);
    }
    let mut usage = storage
        .key_usage(COUNT_BATCH)
        .await
        .map_err(|e| format!("database: {e}"))?;
    if let Some(cache) = redis_cache(storage, resolved).await? {
        let in_redis = cache.key_usage().await.map_err(|e| format!("redis: {e}"))?;
        usage.merge(&in_redis);
    }
    Ok(Some(usage))
}

async fn redis_cache(
    storage: &Storage,
    resolved: &ResolvedConfig,
) -> Result<Option<RedisTokenCache>, String> {
    let (Some(url), Some(redis)) = (&resolved.redis_url, &resolved.config.redis) else {
        return Ok(None);
    };
    let connect = RedisTokenCache::connect(url.expose_secret(), &redis.key_prefix, storage.clone());
    tokio::time::timeout(CHECK_TIMEOUT, connect)
        .await
        .map_err(|_| "redis did not answer".to_owned())?
        .map(Some)
        .map_err(|e| format!("redis: {e}"))
}

/// What a rekey run did, for its last lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RekeySummary {
    /// Values re-encrypted.
    pub rekeyed: u64,
    /// Values a running server rewrote meanwhile (under its own current key).
    pub changed_meanwhile: u64,
    /// Values no configured key decrypts, left as they were.
    pub unreadable: u64,
    /// Every column was walked to its end.
    pub finished: bool,
}

/// One progress line.
fn progress_line(progress: &RekeyProgress) -> String {
    format!(
        "rekey: {}: batch {}, {} read, {} re-encrypted, {} changed meanwhile, {} unreadable",
        progress.column,
        progress.batches,
        progress.scanned,
        progress.rekeyed,
        progress.changed_meanwhile,
        progress.unreadable
    )
}

/// Re-encrypts every value at rest under the current key: the database in
/// batches of `options.batch_size`, then the Redis token records when Redis is
/// configured; `progress` gets a line per batch.
///
/// # Errors
/// The database or Redis failed, or the schema is behind the binary; batches
/// committed before stay done, and running again goes on from there.
pub(crate) async fn rekey(
    resolved: &ResolvedConfig,
    options: &RekeyOptions,
    mut progress: impl FnMut(&str) + Send,
) -> Result<RekeySummary, String> {
    let storage = open_storage(resolved, false)
        .await
        .map_err(|e| e.to_string())?;
    let report = storage
        .rekey(options, |done| progress(&progress_line(done)))
        .await
        .map_err(|e| format!("rekey stopped: {e}; run it again to go on"))?;
    let mut summary = RekeySummary {
        rekeyed: report.rekeyed(),
        changed_meanwhile: report.columns.iter().map(|c| c.changed_meanwhile).sum(),
        unreadable: report.unreadable(),
        finished: report.finished,
    };
    if report.finished
        && let Some(cache) = redis_cache(&storage, resolved).await?
    {
        let done = cache
            .rekey()
            .await
            .map_err(|e| format!("rekey stopped at redis: {e}; run it again to go on"))?;
        progress(&progress_line(&done));
        summary.rekeyed += done.rekeyed;
        summary.changed_meanwhile += done.changed_meanwhile;
        summary.unreadable += done.unreadable;
    }
    storage.close().await;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(pairs: &[(&str, u64)], malformed: u64) -> KeyUsage {
        KeyUsage {
            by_key: pairs.iter().map(|(id, n)| ((*id).to_owned(), *n)).collect(),
            malformed,
        }
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn a_retired_key_protecting_nothing_may_be_removed_and_one_protecting_values_may_not() {
        let check = describe_usage(&usage(&[("k2", 12), ("k1", 3)], 0), &ids(&["k2", "k1"]));
        assert_eq!(
            check.lines,
            [
                "encryption key \"k2\" (current): protects 12 value(s)",
                "encryption key \"k1\" (retired): protects 3 value(s); run `wechat-identity rekey` before removing it",
            ]
        );
        assert!(check.problems.is_empty());

        let check = describe_usage(&usage(&[("k2", 15)], 0), &ids(&["k2", "k1"]));
        assert_eq!(
            check.lines[1],
            "encryption key \"k1\" (retired): protects no value; it may be removed from encryption.keys"
        );
        assert!(check.problems.is_empty());
    }

    #[test]
    fn values_under_a_key_the_config_lacks_are_a_problem_naming_the_key() {
        let check = describe_usage(&usage(&[("k2", 1), ("k0", 4)], 2), &ids(&["k2"]));
        assert_eq!(check.problems.len(), 2, "{check:?}");
        assert!(
            check.problems[0].contains("4 stored value(s) are under key id \"k0\""),
            "{check:?}"
        );
        assert!(check.problems[1].contains("2 stored value(s) carry no key id"));
    }

    #[test]
    fn only_a_sqlite_url_names_a_file() {
        assert_eq!(sqlite_file("sqlite://./data/x.db"), Some("./data/x.db"));
        assert_eq!(sqlite_file("sqlite:x.db?mode=rwc"), Some("x.db"));
        assert_eq!(sqlite_file("postgres://db/x"), None);
    }
}

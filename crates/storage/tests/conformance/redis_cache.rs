//! The token cache on Redis keeps the contract of the database's: round trip,
//! sealed at rest, one lease holder among replicas, expiry of a lease.

use std::time::Duration;

use redis::AsyncCommands;
use storage::RedisTokenCache;
use wechat_types::{AccessToken, CachedToken, ForceRefreshBudget, TokenCache};

use crate::support::{TestDb, app, key_ring, secs};
use test_support::in_ci;

const REDIS_ENV: &str = "WECHAT_IDENTITY_TEST_REDIS";
const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379";

fn redis_url() -> String {
    #[allow(clippy::disallowed_methods)] // the tests' own setting, not the service's config
    std::env::var(REDIS_ENV).unwrap_or_else(|_| REDIS_DEFAULT.to_owned())
}

/// A cache on the test Redis under a prefix of its own, or `None` (after
/// saying why) when Redis is unreachable outside CI.
async fn cache(db: &TestDb, prefix: &str) -> Option<RedisTokenCache> {
    match RedisTokenCache::connect(&redis_url(), prefix, db.storage.clone()).await {
        Ok(cache) => Some(cache),
        Err(error) => {
            assert!(
                !in_ci(),
                "the Redis tests need Redis (see {REDIS_ENV}): {error}"
            );
            eprintln!("skipping a Redis test: {error}");
            None
        }
    }
}

fn prefix() -> String {
    format!("wi-test-{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test]
async fn the_redis_token_cache_round_trips_a_token_sealed_at_rest() {
    let db = TestDb::sqlite().await.unwrap();
    let prefix = prefix();
    let Some(cache) = cache(&db, &prefix).await else {
        return;
    };
    let wxa = app("wxa");
    assert!(cache.load(&wxa).await.unwrap().is_none());
    let now = std::time::SystemTime::now();
    let mut budget = ForceRefreshBudget::default();
    budget.record(now);
    let token = CachedToken {
        access_token: AccessToken::new("REDIS-ACCESS-TOKEN-1"),
        expires_at: now + secs(7200),
        fetched_at: now,
        force_budget: budget,
    };
    cache.store(&wxa, &token).await.unwrap();
    let loaded = cache.load(&wxa).await.unwrap().unwrap();
    assert_eq!(loaded.access_token, token.access_token);
    assert_eq!(loaded.force_budget.used, 1);
    // Millisecond precision, as stored.
    let drift = |a: std::time::SystemTime, b: std::time::SystemTime| {
        a.duration_since(b)
            .or_else(|_| b.duration_since(a))
            .unwrap()
    };
    assert!(drift(loaded.expires_at, token.expires_at) < Duration::from_millis(1));

    let mut raw = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stored: String = raw.get(format!("{prefix}:app-token:wxa")).await.unwrap();
    assert!(!stored.contains("REDIS-ACCESS-TOKEN-1"), "sealed: {stored}");
    let ttl: i64 = raw.pttl(format!("{prefix}:app-token:wxa")).await.unwrap();
    assert!(
        ttl > 7_200_000,
        "kept past the token's expiry for the day's budget: {ttl}"
    );
    assert!(!format!("{cache:?}").contains("REDIS-ACCESS-TOKEN-1"));

    // Another key ring cannot read it: a clear error, not a wrong token.
    let other_db = TestDb::sqlite().await.unwrap();
    let stranger = RedisTokenCache::connect(&redis_url(), &prefix, other_db.storage.clone())
        .await
        .unwrap();
    assert!(stranger.load(&wxa).await.is_err());
    let _: () = raw.del(format!("{prefix}:app-token:wxa")).await.unwrap();
}

#[tokio::test]
async fn replicas_on_one_redis_contend_for_one_lease_which_expires() {
    let db = TestDb::sqlite().await.unwrap();
    let prefix = prefix();
    let Some(first) = cache(&db, &prefix).await else {
        return;
    };
    let again = db.connect_again(key_ring(&db.key)).await.unwrap();
    let second = RedisTokenCache::connect(&redis_url(), &prefix, again)
        .await
        .unwrap();
    crate::token_cache::contend_for_one_lease(&first, &second, Duration::from_millis(100)).await;
}

/// Rekey reaches the Redis token records too: each is re-encrypted under the
/// current key with its time to live kept, so the retired key can go before
/// the records expire.
#[tokio::test]
async fn rekey_moves_the_redis_token_records_to_the_current_key() {
    let db = TestDb::sqlite().await.unwrap();
    let prefix = prefix();
    let Some(old) = cache(&db, &prefix).await else {
        return;
    };
    let now = std::time::SystemTime::now();
    for id in ["wxa", "wxb"] {
        let token = CachedToken {
            access_token: AccessToken::new(format!("TOKEN-OF-{id}")),
            expires_at: now + secs(7200),
            fetched_at: now,
            force_budget: ForceRefreshBudget::default(),
        };
        old.store(&app(id), &token).await.unwrap();
    }
    // A lease is not a token record.
    assert!(old.try_lease(&app("wxa"), "r1", secs(60)).await.unwrap());
    assert_eq!(old.key_usage().await.unwrap().count("k1"), 2);

    let k2 = ("k2".to_owned(), storage::KeyRing::generate_key());
    let rotated = db
        .connect_again(storage::KeyRing::new(k2.clone(), vec![db.key.clone()]).unwrap())
        .await
        .unwrap();
    let rotated = RedisTokenCache::connect(&redis_url(), &prefix, rotated)
        .await
        .unwrap();
    let done = rotated.rekey().await.unwrap();
    assert_eq!((done.scanned, done.rekeyed, done.unreadable), (2, 2, 0));
    assert_eq!(rotated.rekey().await.unwrap().rekeyed, 0, "done once");
    let usage = rotated.key_usage().await.unwrap();
    assert_eq!((usage.count("k1"), usage.count("k2")), (0, 2), "{usage:?}");

    let only_k2 = db
        .connect_again(storage::KeyRing::new(k2, vec![]).unwrap())
        .await
        .unwrap();
    let reader = RedisTokenCache::connect(&redis_url(), &prefix, only_k2)
        .await
        .unwrap();
    for id in ["wxa", "wxb"] {
        let loaded = reader.load(&app(id)).await.unwrap().unwrap();
        assert_eq!(
            loaded.access_token,
            AccessToken::new(format!("TOKEN-OF-{id}"))
        );
    }
    let mut raw = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ttl: i64 = raw.pttl(format!("{prefix}:app-token:wxa")).await.unwrap();
    assert!(ttl > 7_200_000, "the time to live is kept: {ttl}");
    for key in ["app-token:wxa", "app-token:wxb", "app-token-lease:wxa"] {
        let _: () = raw.del(format!("{prefix}:{key}")).await.unwrap();
    }
}

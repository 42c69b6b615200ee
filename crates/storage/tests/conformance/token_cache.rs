use std::time::Duration;

use wechat_types::{AccessToken, CachedToken, ForceRefreshBudget, TokenCache};

use crate::support::{TestDb, app, key_ring, secs, t0};

pub(crate) async fn the_token_cache_round_trips_an_encrypted_token(db: TestDb) {
    let cache = db.storage.token_cache();
    let wxa = app("wxa");
    assert!(cache.load(&wxa).await.unwrap().is_none());
    let mut budget = ForceRefreshBudget::default();
    budget.record(t0());
    let token = CachedToken {
        access_token: AccessToken::new("ACCESS-TOKEN-1"),
        expires_at: t0() + secs(7200),
        fetched_at: t0(),
        force_budget: budget,
    };
    cache.store(&wxa, &token).await.unwrap();
    assert_eq!(cache.load(&wxa).await.unwrap(), Some(token.clone()));
    // A lease row for an app without a token yet is not a token.
    assert!(cache.try_lease(&app("wxb"), "r1", secs(10)).await.unwrap());
    assert!(cache.load(&app("wxb")).await.unwrap().is_none());
    // Leasing keeps the token; storing keeps the lease.
    assert!(cache.try_lease(&wxa, "r1", secs(10)).await.unwrap());
    assert_eq!(cache.load(&wxa).await.unwrap(), Some(token));
    assert!(!format!("{cache:?}").contains("ACCESS-TOKEN-1"));
}

pub(crate) async fn two_replicas_contend_for_one_lease(db: TestDb) {
    let other = db.connect_again(key_ring(&db.key)).await.unwrap();
    let (first, second) = (db.storage.token_cache(), other.token_cache());
    contend_for_one_lease(&*first, &*second, Duration::from_millis(50)).await;
}

/// Two replicas' caches, on any shared backend: exactly one takes the lease,
/// the holder may extend it, a stranger cannot release it, and a lease of
/// `short` is free again once it has run out.
pub(crate) async fn contend_for_one_lease(
    first: &dyn TokenCache,
    second: &dyn TokenCache,
    short: Duration,
) {
    let wxa = app("wxa");
    let ttl = Duration::from_secs(30);

    let (a, b) = tokio::join!(
        first.try_lease(&wxa, "replica-a", ttl),
        second.try_lease(&wxa, "replica-b", ttl)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one contender holds the lease");
    let (holder, holder_name, waiter, waiter_name) = if a {
        (first, "replica-a", second, "replica-b")
    } else {
        (second, "replica-b", first, "replica-a")
    };
    assert!(
        holder.try_lease(&wxa, holder_name, ttl).await.unwrap(),
        "the holder may extend"
    );
    waiter.release_lease(&wxa, waiter_name).await.unwrap();
    assert!(
        !waiter.try_lease(&wxa, waiter_name, ttl).await.unwrap(),
        "a stranger cannot release it"
    );
    holder.release_lease(&wxa, holder_name).await.unwrap();
    assert!(waiter.try_lease(&wxa, waiter_name, short).await.unwrap());
    tokio::time::sleep(short * 5 / 2).await;
    assert!(
        holder.try_lease(&wxa, holder_name, ttl).await.unwrap(),
        "an expired lease is free"
    );
    holder.release_lease(&wxa, holder_name).await.unwrap();
}

#![allow(clippy::unwrap_used)]

use std::time::SystemTime;

use storage::{IdentityLogin, IdentityRef, Phone};
use wechat_client::{AppId, OpenId};

use super::*;
use crate::test_replicas::{Replicas, on_one_sqlite_file};

const HOUR: Duration = Duration::from_secs(3600);
const APP: &str = "wxa0000000000000a1";

struct Fixture {
    _dir: tempfile::TempDir,
    storage: Storage,
    /// Another process on the same database file.
    replica: Storage,
}

async fn fixture() -> Fixture {
    let Replicas {
        dir,
        storage,
        replica,
    } = on_one_sqlite_file().await;
    Fixture {
        _dir: dir,
        storage,
        replica,
    }
}

impl Fixture {
    /// A user with one mini program identity.
    async fn user(&self, openid: &str) -> UserId {
        self.storage
            .record_login(&IdentityLogin {
                app_id: AppId::new(APP).unwrap(),
                app_kind: storage::AppKind::MiniProgram,
                openid: OpenId::new(openid).unwrap(),
                unionid: None,
                scope: None,
                is_snapshot: false,
                session_key: None,
                web_tokens: None,
                profile: None,
                at: SystemTime::now(),
            })
            .await
            .unwrap()
            .user_id
    }
}

fn identity(openid: &str) -> UserLookup {
    UserLookup::Identity {
        app_id: AppId::new(APP).unwrap(),
        openid: OpenId::new(openid).unwrap(),
    }
}

fn phone(number: &str) -> Phone {
    Phone {
        phone_number: number.into(),
        pure_phone_number: number.into(),
        country_code: "86".into(),
    }
}

async fn set_phone(storage: &Storage, user: &UserId, number: &str) {
    storage
        .set_phone(user, &phone(number), SystemTime::now())
        .await
        .unwrap();
}

/// The phone number `cache` answers for `lookup`, and from where.
async fn number(cache: &ProfileCache, lookup: &UserLookup) -> (Option<String>, Source) {
    let (profile, source) = cache.profile(lookup).await.unwrap();
    let number = profile.unwrap().phone.map(|phone| phone.pure_phone_number);
    (number, source)
}

/// Polls the epochs once (what `follow_epochs` does on its own schedule).
async fn poll(cache: &ProfileCache) {
    cache.poll_once(Instant::now()).await;
}

#[tokio::test]
async fn a_profile_read_once_is_answered_from_memory_until_it_changes_here() {
    let f = fixture().await;
    let cache = ProfileCache::new(f.storage.clone(), 100, HOUR);
    poll(&cache).await;
    let user = f.user("o1").await;
    let lookups = [UserLookup::UserId(user), identity("o1")];
    for lookup in &lookups {
        assert_eq!(number(&cache, lookup).await, (None, Source::Database));
        assert_eq!(number(&cache, lookup).await, (None, Source::Memory));
    }

    set_phone(&f.storage, &user, "13800000001").await;
    for lookup in &lookups {
        assert_eq!(
            number(&cache, lookup).await,
            (Some("13800000001".into()), Source::Database),
            "a change on this replica is seen at once, without a poll"
        );
    }
    assert_eq!(cache.len(), 2);
}

#[tokio::test]
async fn a_change_on_another_replica_is_seen_at_the_next_poll() {
    let f = fixture().await;
    let cache = ProfileCache::new(f.storage.clone(), 100, HOUR);
    poll(&cache).await;
    let user = f.user("o1").await;
    let lookup = UserLookup::UserId(user);
    assert_eq!(number(&cache, &lookup).await.1, Source::Database);

    set_phone(&f.replica, &user, "13800000002").await;
    assert_eq!(
        number(&cache, &lookup).await,
        (None, Source::Memory),
        "served from memory until the next poll"
    );
    poll(&cache).await;
    assert_eq!(
        number(&cache, &lookup).await,
        (Some("13800000002".into()), Source::Database)
    );
}

#[tokio::test]
async fn an_identity_moved_or_unbound_elsewhere_stops_answering_for_its_old_user() {
    let f = fixture().await;
    let cache = ProfileCache::new(f.storage.clone(), 100, HOUR);
    poll(&cache).await;
    let user = f.user("o1").await;
    f.storage
        .set_external_id(&user, Some("acct-1"), "test", SystemTime::now())
        .await
        .unwrap();
    let by_external = UserLookup::ExternalId("acct-1".into());
    for lookup in [&identity("o1"), &by_external] {
        let (profile, _) = cache.profile(lookup).await.unwrap();
        assert_eq!(profile.unwrap().user_id, user);
        assert_eq!(cache.profile(lookup).await.unwrap().1, Source::Memory);
    }

    f.replica
        .unbind(
            &IdentityRef {
                app_id: AppId::new(APP).unwrap(),
                openid: OpenId::new("o1").unwrap(),
            },
            "test",
            SystemTime::now(),
        )
        .await
        .unwrap();
    f.replica
        .set_external_id(&user, None, "test", SystemTime::now())
        .await
        .unwrap();
    poll(&cache).await;
    for lookup in [&identity("o1"), &by_external] {
        let (profile, source) = cache.profile(lookup).await.unwrap();
        assert!(profile.is_none(), "{lookup:?} still answered");
        assert_eq!(source, Source::Database);
    }
}

#[tokio::test]
async fn a_change_to_another_shard_leaves_an_entry_alone() {
    let f = fixture().await;
    let cache = ProfileCache::new(f.storage.clone(), 1000, HOUR);
    poll(&cache).await;
    let first = f.user("o-first").await;
    // A user of another shard (ids are random; a few tries find one).
    let mut n = 0;
    let other = loop {
        n += 1;
        let other = f.user(&format!("o{n}")).await;
        if profile_shard(&other) != profile_shard(&first) {
            break other;
        }
    };
    // Polled after the users were created: an entry tagged before its own
    // user's creation is (rightly) dropped at the next poll.
    poll(&cache).await;
    let lookup = UserLookup::UserId(first);
    assert_eq!(number(&cache, &lookup).await.1, Source::Database);
    set_phone(&f.storage, &other, "13800000003").await;
    set_phone(&f.replica, &other, "13800000004").await;
    poll(&cache).await;
    assert_eq!(number(&cache, &lookup).await, (None, Source::Memory));
}

#[tokio::test]
async fn without_a_recent_poll_or_with_a_zero_bound_every_call_reads() {
    let f = fixture().await;
    let user = f.user("o1").await;
    let lookup = UserLookup::UserId(user);

    let never_polled = ProfileCache::new(f.storage.clone(), 100, HOUR);
    for _ in 0..2 {
        assert_eq!(number(&never_polled, &lookup).await.1, Source::Database);
    }

    let propagation = Duration::from_millis(50);
    let cache = ProfileCache::new(f.storage.clone(), 100, propagation);
    poll(&cache).await;
    assert_eq!(number(&cache, &lookup).await.1, Source::Database);
    set_phone(&f.replica, &user, "13800000005").await;
    tokio::time::sleep(propagation * 2).await;
    assert_eq!(
        number(&cache, &lookup).await,
        (Some("13800000005".into()), Source::Database),
        "a poll older than the bound vouches for nothing"
    );

    let off = ProfileCache::new(f.storage.clone(), 100, Duration::ZERO);
    poll(&off).await;
    for _ in 0..2 {
        assert_eq!(number(&off, &lookup).await.1, Source::Database);
    }
    assert_eq!(off.len(), 0);
}

#[tokio::test]
async fn a_unionid_lookup_and_an_unknown_user_are_never_kept() {
    let f = fixture().await;
    let cache = ProfileCache::new(f.storage.clone(), 100, HOUR);
    poll(&cache).await;
    let unknown = UserLookup::UserId(UserId::generate());
    for _ in 0..2 {
        let (profile, source) = cache.profile(&unknown).await.unwrap();
        assert!(profile.is_none());
        assert_eq!(source, Source::Database);
    }
    let unionid = UserLookup::UnionId(wechat_client::UnionId::new("u-none").unwrap());
    for _ in 0..2 {
        assert_eq!(cache.profile(&unionid).await.unwrap().1, Source::Database);
    }
    assert_eq!(cache.len(), 0);
}

#[tokio::test]
async fn the_follower_keeps_the_epochs_fresh() {
    let f = fixture().await;
    let cache = Arc::new(ProfileCache::new(
        f.storage.clone(),
        100,
        Duration::from_millis(200),
    ));
    let follower = tokio::spawn(cache.clone().follow_epochs());
    let user = f.user("o1").await;
    let lookup = UserLookup::UserId(user);
    while cache.fresh_poll().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    number(&cache, &lookup).await;
    set_phone(&f.replica, &user, "13800000006").await;
    // Within the bound (however slow this machine, the loop ends once it has passed).
    while number(&cache, &lookup).await.0.is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    follower.abort();
}

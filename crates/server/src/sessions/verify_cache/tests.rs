#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use storage::{IdentityLogin, NewSession, SessionLifetimes, Storage};
use wechat_client::{AppId, OpenId};

use super::*;
use crate::sessions::jwt::{SigningKey, new_token_id};
use crate::test_replicas::{Replicas, on_one_sqlite_file};

const HOUR: Duration = Duration::from_secs(3600);

struct Fixture {
    _dir: tempfile::TempDir,
    storage: Storage,
    /// Another process on the same database file.
    replica: Storage,
    keys: TokenKeys,
}

async fn fixture() -> Fixture {
    let Replicas {
        dir,
        storage,
        replica,
    } = on_one_sqlite_file().await;
    let (signing, _) = SigningKey::generate().unwrap();
    let keys = TokenKeys::new(signing, Vec::new(), "iss".into(), "aud".into());
    Fixture {
        _dir: dir,
        storage,
        replica,
        keys,
    }
}

impl Fixture {
    /// A live session and an access token for it.
    async fn token(&self, openid: &str) -> (SessionId, String) {
        let app = AppId::new("wxa0000000000000a1").unwrap();
        let openid = OpenId::new(openid).unwrap();
        let user_id = self
            .storage
            .record_login(&IdentityLogin {
                app_id: app.clone(),
                app_kind: storage::AppKind::MiniProgram,
                openid: openid.clone(),
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
            .user_id;
        let issued = self
            .storage
            .create_session(&NewSession {
                user_id,
                app_id: app.clone(),
                openid: openid.clone(),
                lifetimes: SessionLifetimes {
                    refresh_ttl: 2 * HOUR,
                    max_lifetime: 2 * HOUR,
                    reuse_grace: Duration::ZERO,
                },
                actor: "test".into(),
                at: SystemTime::now(),
            })
            .await
            .unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let token = self.keys.sign(&Claims {
            sub: user_id.to_string(),
            sid: issued.session.session_id.to_string(),
            app: app.to_string(),
            openid: openid.to_string(),
            iat: now,
            exp: now + 600,
            iss: "iss".into(),
            aud: "aud".into(),
            jti: new_token_id(),
        });
        (issued.session.session_id, token)
    }
}

impl Fixture {
    /// What `cache` answers for `token` now, with this fixture's keys.
    async fn verdict(&self, cache: &VerifyCache, token: &str) -> Verdict {
        cache
            .verify(&self.keys, token, SystemTime::now())
            .await
            .unwrap()
            .0
    }
}

/// Logs `session` out through `storage` (this process, or the replica).
async fn revoke(storage: &Storage, session: &SessionId) {
    storage
        .revoke_session(session, "logout", "test", SystemTime::now())
        .await
        .unwrap();
}

fn is_active(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Active { .. })
}

/// Polls the epoch once (what `follow_epoch` does on its own schedule).
async fn poll(cache: &VerifyCache) {
    let started = Instant::now();
    let value = cache.storage.session_epoch().await.unwrap();
    *cache.polled.lock().unwrap() = Some(Polled { value, started });
}

#[tokio::test]
async fn a_verified_token_is_not_checked_again_but_a_forged_one_always_is() {
    let f = fixture().await;
    let cache = VerifyCache::new(f.storage.clone(), 100, HOUR);
    poll(&cache).await;
    let (_, token) = f.token("o1").await;
    let (first, lookup) = cache
        .verify(&f.keys, &token, SystemTime::now())
        .await
        .unwrap();
    assert!(is_active(&first));
    assert_eq!(lookup, Lookup::Verified);

    // Keys that know nothing: only a cached verification can still answer.
    let (stranger, _) = SigningKey::generate().unwrap();
    let strangers = TokenKeys::new(stranger, Vec::new(), "iss".into(), "aud".into());
    let (again, lookup) = cache
        .verify(&strangers, &token, SystemTime::now())
        .await
        .unwrap();
    assert!(is_active(&again));
    assert_eq!(lookup, Lookup::Memory);

    // Change a character inside the signature: the last one also carries
    // base64 padding bits, and changing those may only make it malformed.
    let mut forged = token.clone().into_bytes();
    let inside = forged.len() - 10;
    forged[inside] = if forged[inside] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for _ in 0..2 {
        let verdict = f.verdict(&cache, &forged).await;
        assert!(
            matches!(verdict, Verdict::Inactive("bad signature")),
            "{verdict:?}"
        );
    }
    let huge = "x".repeat(MAX_TOKEN_LEN + 1);
    let (verdict, lookup) = cache
        .verify(&f.keys, &huge, SystemTime::now())
        .await
        .unwrap();
    assert!(
        matches!(verdict, Verdict::Inactive("malformed")),
        "{verdict:?}"
    );
    assert_eq!(lookup, Lookup::Rejected);
    assert_eq!(cache.len(), 1, "a token that failed is never kept");
}

#[tokio::test]
async fn a_cached_token_still_expires() {
    let f = fixture().await;
    let cache = VerifyCache::new(f.storage.clone(), 100, HOUR);
    poll(&cache).await;
    let (_, token) = f.token("o1").await;
    assert!(is_active(&f.verdict(&cache, &token).await));
    let later = SystemTime::now() + Duration::from_secs(601);
    let verdict = cache.verify(&f.keys, &token, later).await.unwrap().0;
    assert!(matches!(verdict, Verdict::Inactive(_)), "{verdict:?}");
}

#[tokio::test]
async fn a_revocation_here_is_seen_at_once_one_elsewhere_at_the_next_poll() {
    let f = fixture().await;
    let cache = VerifyCache::new(f.storage.clone(), 100, HOUR);
    poll(&cache).await;
    let (here, token_here) = f.token("o1").await;
    let (there, token_there) = f.token("o2").await;
    for token in [&token_here, &token_there] {
        assert!(is_active(&f.verdict(&cache, token).await));
    }

    revoke(&f.storage, &here).await;
    let verdict = f.verdict(&cache, &token_here).await;
    assert!(
        !is_active(&verdict),
        "revoked by this process: no poll needed"
    );

    // Another replica's revocation: this cache vouches until it polls...
    assert!(is_active(&f.verdict(&cache, &token_there).await));
    revoke(&f.replica, &there).await;
    assert!(
        is_active(&f.verdict(&cache, &token_there).await),
        "served from memory until the next poll"
    );
    // ...and the poll sees the epoch move.
    poll(&cache).await;
    let (verdict, lookup) = cache
        .verify(&f.keys, &token_there, SystemTime::now())
        .await
        .unwrap();
    assert!(!is_active(&verdict), "{verdict:?}");
    assert_eq!(lookup, Lookup::SessionRead, "the signature stays known");
}

#[tokio::test]
async fn without_a_recent_poll_every_call_reads_the_session() {
    let f = fixture().await;
    let propagation = Duration::from_millis(50);
    let cache = VerifyCache::new(f.storage.clone(), 100, propagation);
    poll(&cache).await;
    let (session, token) = f.token("o1").await;
    assert!(is_active(&f.verdict(&cache, &token).await));
    revoke(&f.replica, &session).await;
    // No poll for longer than the bound: the cached standing is not trusted.
    tokio::time::sleep(propagation * 2).await;
    let verdict = f.verdict(&cache, &token).await;
    assert!(!is_active(&verdict), "{verdict:?}");

    // Propagation zero: never trusted, even right after a poll.
    let strict = VerifyCache::new(f.storage.clone(), 100, Duration::ZERO);
    poll(&strict).await;
    let (session, token) = f.token("o2").await;
    assert!(is_active(&f.verdict(&strict, &token).await));
    revoke(&f.replica, &session).await;
    assert!(!is_active(&f.verdict(&strict, &token).await));
}

#[tokio::test]
async fn the_follower_keeps_the_epoch_fresh() {
    let f = fixture().await;
    let cache = Arc::new(VerifyCache::new(
        f.storage.clone(),
        100,
        Duration::from_millis(200),
    ));
    let follower = tokio::spawn(cache.clone().follow_epoch());
    let (session, token) = f.token("o1").await;
    while cache.current_tag().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(is_active(&f.verdict(&cache, &token).await));
    revoke(&f.replica, &session).await;
    // Within the bound (however slow this machine, the loop ends once it has passed).
    while is_active(&f.verdict(&cache, &token).await) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    follower.abort();
}

#[tokio::test]
async fn memory_is_bounded_by_the_configured_entries() {
    let f = fixture().await;
    let cache = VerifyCache::new(f.storage.clone(), 64, HOUR);
    poll(&cache).await;
    for n in 0..300 {
        let (_, token) = f.token(&format!("o{n}")).await;
        assert!(is_active(&f.verdict(&cache, &token).await));
        assert!(cache.len() <= 64, "{} entries", cache.len());
    }
    let none = VerifyCache::new(f.storage.clone(), 0, HOUR);
    let (_, token) = f.token("o-none").await;
    assert!(is_active(&f.verdict(&none, &token).await));
    assert_eq!(none.len(), 0);
}

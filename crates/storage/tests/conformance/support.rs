//! Fresh databases for the conformance suite: a SQLite temp file, or a new
//! PostgreSQL database dropped again when the test ends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use storage::{
    AppKind, IdentityLogin, KeyRing, SessionLifetimes, Storage, StorageConfig, StorageError, UserId,
};
use test_support::postgres::TestDatabase;
use wechat_types::{AppId, OpenId, UnionId};

/// A fresh database with a migrated, key-checked storage on it.
pub(crate) struct TestDb {
    pub(crate) storage: Storage,
    pub(crate) config: StorageConfig,
    pub(crate) key: (String, SecretString),
    _dir: Option<tempfile::TempDir>,
    _postgres: Option<TestDatabase>,
}

pub(crate) fn key_ring(key: &(String, SecretString)) -> KeyRing {
    KeyRing::new(key.clone(), vec![]).expect("valid key ring")
}

impl TestDb {
    pub(crate) async fn sqlite() -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("storage.db").display());
        Some(Self::open(StorageConfig::new(url), Some(dir), None).await)
    }

    /// `None` (after saying why) when PostgreSQL is unreachable outside CI.
    pub(crate) async fn postgres() -> Option<Self> {
        let database = TestDatabase::create().await?;
        let url = database.url.clone();
        Some(Self::open(StorageConfig::new(url), None, Some(database)).await)
    }

    async fn open(
        config: StorageConfig,
        dir: Option<tempfile::TempDir>,
        postgres: Option<TestDatabase>,
    ) -> Self {
        let key = ("k1".to_owned(), KeyRing::generate_key());
        let storage = Storage::connect(&config, key_ring(&key))
            .await
            .expect("connect");
        storage.migrate().await.expect("migrate");
        storage.verify_keys().await.expect("keys");
        Self {
            storage,
            config,
            key,
            _dir: dir,
            _postgres: postgres,
        }
    }

    /// Another `Storage` on the same database, as a second replica would have.
    pub(crate) async fn connect_again(&self, keys: KeyRing) -> Result<Storage, StorageError> {
        Storage::connect(&self.config, keys).await
    }
}

/// A fixed clock start, so expiry tests need no sleeping.
pub(crate) fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Refresh tokens living `refresh_ttl`, sessions up to 90 days, and no reuse
/// grace: a retired token presented again revokes its session at once.
pub(crate) fn lifetimes(refresh_ttl: Duration) -> SessionLifetimes {
    SessionLifetimes {
        refresh_ttl,
        max_lifetime: secs(90 * 86_400),
        reuse_grace: Duration::ZERO,
    }
}

pub(crate) fn app(id: &str) -> AppId {
    AppId::new(id).expect("app id")
}

pub(crate) fn openid(id: &str) -> OpenId {
    OpenId::new(id).expect("openid")
}

pub(crate) fn unionid(id: &str) -> UnionId {
    UnionId::new(id).expect("unionid")
}

/// A bare login of `openid` in `app`.
pub(crate) fn login(
    app_id: &str,
    open_id: &str,
    union_id: Option<&str>,
    at: SystemTime,
) -> IdentityLogin {
    IdentityLogin {
        app_id: app(app_id),
        app_kind: AppKind::MiniProgram,
        openid: openid(open_id),
        unionid: union_id.map(unionid),
        scope: None,
        is_snapshot: false,
        session_key: None,
        web_tokens: None,
        profile: None,
        at,
    }
}

/// Logs in a fresh identity and returns its user.
pub(crate) async fn new_user(storage: &Storage, app_id: &str, open_id: &str) -> UserId {
    storage
        .record_login(&login(app_id, open_id, None, t0()))
        .await
        .expect("login")
        .user_id
}

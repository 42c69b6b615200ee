//! Fresh databases for the conformance suite: a SQLite temp file, or a new
//! PostgreSQL database dropped again when the test ends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use sqlx::{AnyConnection, AssertSqlSafe, Connection};
use storage::{
    AppKind, IdentityLogin, KeyRing, SessionLifetimes, Storage, StorageConfig, StorageError, UserId,
};
use wechat_client::{AppId, OpenId, UnionId};

/// The admin URL of the test PostgreSQL; overridable for other machines.
const POSTGRES_ENV: &str = "WECHAT_IDENTITY_TEST_POSTGRES";
const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh database with a migrated, key-checked storage on it.
pub(crate) struct TestDb {
    pub(crate) storage: Storage,
    pub(crate) config: StorageConfig,
    pub(crate) key: (String, SecretString),
    _dir: Option<tempfile::TempDir>,
    _postgres: Option<PostgresDrop>,
}

struct PostgresDrop {
    admin_url: String,
    database: String,
}

impl Drop for PostgresDrop {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let database = self.database.clone();
        // Drop runs outside async context guarantees: use a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = AnyConnection::connect(&admin_url).await.ok()?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.database);
        }
    }
}

/// Drops test databases that a killed run left behind. Their names carry a
/// UUID v7, so only those created over an hour ago go: a concurrent run's
/// databases are safe.
async fn drop_abandoned_databases(admin: &mut AnyConnection) {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'wi_test_%'",
        )
        .fetch_all(&mut *admin)
        .await
        .unwrap_or_default();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for name in names {
            let created = uuid::Uuid::parse_str(name.trim_start_matches("wi_test_"))
                .ok()
                .and_then(|id| id.get_timestamp())
                .map(|ts| {
                    let (secs, nanos) = ts.to_unix();
                    UNIX_EPOCH + Duration::new(secs, nanos)
                });
            if created.is_some_and(|created| created < hour_ago) {
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut *admin).await;
            }
        }
    })
    .await;
}

/// CI sets `CI=true`; there a missing PostgreSQL is a failure, not a skip.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.as_str(), "" | "0" | "false"))
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
        sqlx::any::install_default_drivers();
        let admin_url = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| POSTGRES_DEFAULT.to_owned());
        let mut admin = match AnyConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(error) => {
                if in_ci() {
                    panic!("postgres conformance needs PostgreSQL (see {POSTGRES_ENV}): {error}");
                }
                eprintln!("skipping postgres conformance: {error}");
                return None;
            }
        };
        drop_abandoned_databases(&mut admin).await;
        let database = format!("wi_test_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let guard = PostgresDrop {
            admin_url: admin_url.clone(),
            database: database.clone(),
        };
        let url = match admin_url.rfind('/') {
            Some(slash) => format!("{}/{database}", &admin_url[..slash]),
            None => panic!("{POSTGRES_ENV} must end with /database"),
        };
        Some(Self::open(StorageConfig::new(url), None, Some(guard)).await)
    }

    async fn open(
        config: StorageConfig,
        dir: Option<tempfile::TempDir>,
        postgres: Option<PostgresDrop>,
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

//! Users, WeChat identities, sessions and the shared app-token cache of
//! wechat-identity, on SQLite (one machine) or PostgreSQL (several replicas).
//!
//! One [`Storage`] serves both engines through sqlx's `Any` driver with runtime
//! queries; the same conformance suite (`tests/conformance`) runs on both. Every
//! change that touches several rows runs in one transaction, retried whole when
//! PostgreSQL reports a serialization failure or deadlock. Secrets are
//! encrypted with a [`KeyRing`] (AES-256-GCM) and never logged.

#![warn(missing_docs)]

mod audit;
mod binding;
mod changes;
mod checkpoint;
mod codes;
mod columns;
mod config;
mod credentials;
mod crypto;
mod db;
mod error;
mod group_commit;
mod identities;
mod ids;
mod merge;
mod profile_epoch;
mod reader;
mod redis_cache;
mod rekey;
mod session_epoch;
mod sessions;
mod signing_keys;
mod sql;
mod sqlite;
mod sweep;
mod tickets;
mod token_cache;
mod types;
mod users;
mod web_logins;

pub use config::{Engine, StorageConfig};

pub use crypto::KeyRing;
pub use error::{Constraint, Entity, StorageError};
pub use group_commit::GroupCommitStats;
pub use profile_epoch::{PROFILE_SHARDS, profile_shard};
pub use redis_cache::RedisTokenCache;
pub use rekey::{KeyUsage, RekeyOptions, RekeyProgress, RekeyReport};
pub use token_cache::DbTokenCache;
pub use types::{
    Account, AppKind, AuditEvent, BindRequest, CodeClaim, IdentityLogin, IdentityRef,
    ImportedIdentity, IssuedSession, LinkedIdentity, LoginOutcome, MergeRecord, NewSession,
    ParseError, Phone, ProfileFields, RedeemedTicket, Rotation, SessionId, SessionLifetimes,
    SessionRecord, SigningKey, SweepReport, Ticket, UserId, UserLookup, UserProfile,
    WebAuthorization, WebLoginClaim, WebLoginClaimed, WebLoginOutcome, WebTokens,
};
pub use web_logins::{
    MAX_REPEATS as WEB_LOGIN_MAX_REPEATS, REPEAT_WINDOW as WEB_LOGIN_REPEAT_WINDOW,
};

/// The profile columns of `users` (comma-separated), as every statement that
/// reads, writes or merges a profile names them; the schema test checks that
/// each column of `users` is one of them or one a merge handles by name.
pub const USER_PROFILE_COLUMNS: &str = columns::user_profile_columns!();

use std::sync::{Arc, LazyLock};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, AssertSqlSafe};
use tokio::sync::OnceCell;

use crate::crypto::LookupKey;
use crate::db::millis;
use crate::error::DbFailure;
use crate::sql::query;

/// The migrations, embedded by `build.rs` (`migrations/sqlite`, `migrations/postgres`).
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

static SQLITE_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| migrator(embedded::SQLITE));
static POSTGRES_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| migrator(embedded::POSTGRES));

/// A migrator over embedded `(version, description, sql)` migrations, the
/// same as sqlx's `migrate!` builds (same checksums, so databases migrated
/// by either agree).
fn migrator(migrations: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    use sqlx::SqlSafeStr as _;
    use sqlx::migrate::{Migration, MigrationType};
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

/// The storage function a write's work was written in (`rotate_refresh_token`),
/// for its span: a closure's type is named after the function around it.
/// `write` when the name has another shape.
fn operation_of<W>() -> &'static str {
    let mut path = std::any::type_name::<W>();
    while let Some(outer) = path.strip_suffix("::{{closure}}") {
        path = outer;
    }
    match path.rsplit("::").next() {
        Some(name)
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            name
        }
        _ => "write",
    }
}

/// How often a transaction that lost a race (PostgreSQL serialization failure,
/// deadlock, or a concurrent insert of the same key) is run again.
const MAX_TX_ATTEMPTS: u32 = 5;

/// The storage of the identity service. Cheap to clone; clones share pools.
#[derive(Clone, Debug)]
pub struct Storage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    engine: Engine,
    /// PostgreSQL: the one pool. SQLite: one sqlx connection for the
    /// migrations only; every write goes to the writer thread (`group_commit`).
    writer: AnyPool,
    /// SQLite: read-only rusqlite connections, used inline. PostgreSQL: the
    /// same pool as `writer`.
    reader: reader::Reader,
    keys: KeyRing,
    lookup_key: OnceCell<LookupKey>,
    /// Session-changing transactions committed by this process.
    local_session_changes: std::sync::atomic::AtomicU64,
    /// Profile-changing transactions committed by this process, by shard.
    local_profile_changes: Box<[std::sync::atomic::AtomicU64]>,
    /// SQLite: the writer thread that runs every write, those queued at one
    /// moment in one transaction. PostgreSQL: none; its pool runs writes side
    /// by side.
    group_commit: Option<group_commit::GroupCommit>,
    /// SQLite: the task that checkpoints the WAL off the commit path.
    checkpointer: Option<checkpoint::Checkpointer>,
    /// `sqlite::memory:`: the private directory its database file lives in,
    /// removed with the storage.
    _memory_dir: Option<tempfile::TempDir>,
}

impl Storage {
    /// Connects to the database named by `config.url`.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the database cannot be reached,
    /// [`StorageError::Internal`] for a URL naming an unsupported engine.
    pub async fn connect(config: &StorageConfig, keys: KeyRing) -> Result<Self, StorageError> {
        sqlx::any::install_default_drivers();
        let Some(engine) = config.engine() else {
            tracing::error!("storage url must start with sqlite: or postgres:");
            return Err(StorageError::Internal);
        };
        let (writer, reader, sqlite) = match engine {
            Engine::Sqlite => {
                let mut sqlite = connect_sqlite(config).await?;
                let reader = sqlite.reader.take().map_or_else(
                    || Err(StorageError::Internal),
                    |readers| Ok(reader::Reader::Sqlite(readers)),
                )?;
                (sqlite.migrations.clone(), reader, Some(sqlite))
            }
            Engine::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(config.postgres_max_connections.max(1))
                    .acquire_timeout(config.acquire_timeout)
                    .connect(&config.url)
                    .await?;
                (pool.clone(), reader::Reader::Pool(pool), None)
            }
        };
        let (writer_conn, checkpointer, memory_dir) = match sqlite {
            Some(sqlite) => (Some(sqlite.writer), sqlite.checkpointer, sqlite.memory_dir),
            None => (None, None, None),
        };
        let mut started = Ok(());
        let inner = Arc::new_cyclic(|inner| Inner {
            engine,
            writer,
            reader,
            keys,
            lookup_key: OnceCell::new(),
            local_session_changes: std::sync::atomic::AtomicU64::new(0),
            local_profile_changes: (0..PROFILE_SHARDS)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            group_commit: writer_conn.and_then(|conn| {
                group_commit::GroupCommit::start(inner.clone(), conn, config.sqlite_write_queue)
                    .map_err(|error| started = Err(error))
                    .ok()
            }),
            checkpointer,
            _memory_dir: memory_dir,
        });
        started?;
        Ok(Self { inner })
    }

    fn migrator(&self) -> &'static Migrator {
        match self.inner.engine {
            Engine::Sqlite => &SQLITE_MIGRATIONS,
            Engine::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies the embedded migrations that have not run yet. Idempotent, and
    /// safe to run from several replicas at once (sqlx takes a database lock).
    ///
    /// # Errors
    /// [`StorageError::Internal`] when a migration fails (details logged).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        self.migrator()
            .run(&self.inner.writer)
            .await
            .map_err(|error| {
                tracing::error!(error = %error, "migration failed");
                StorageError::Internal
            })
    }

    /// The versions of the embedded migrations this database has not applied
    /// (all of them on an empty database).
    ///
    /// # Errors
    /// The database could not be read.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, StorageError> {
        let applied: Vec<i64> =
            match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.inner.writer)
                .await
            {
                Ok(applied) => applied,
                // No bookkeeping table yet: nothing was ever applied. Any
                // other error (permissions, an outage) is reported as itself.
                Err(sqlx::Error::Database(db))
                    if db.code().as_deref() == Some("42P01")
                        || db.message().contains("no such table") =>
                {
                    Vec::new()
                }
                Err(error) => return Err(error.into()),
            };
        Ok(self
            .migrator()
            .iter()
            .map(|migration| migration.version)
            .filter(|version| !applied.contains(version))
            .collect())
    }

    /// Checks that the key ring decrypts the data: decrypts the key material
    /// written at first start (writing it now if absent).
    ///
    /// # Errors
    /// [`StorageError::Keys`] naming a missing key id, or saying the key does
    /// not match the data.
    pub async fn verify_keys(&self) -> Result<(), StorageError> {
        self.lookup_key().await.map(|_| ())
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<(), StorageError> {
        query("SELECT 1").execute(self.reader()).await?;
        // The writer thread runs. Not a write through its queue: under a
        // flood that queue is full for a moment, which must not mark the
        // only replica unready.
        if let Some(group) = &self.inner.group_commit
            && !group.is_running()
        {
            return Err(StorageError::Unavailable);
        }
        Ok(())
    }

    /// Closes the pools, waiting for connections in use to come back; for a
    /// graceful shutdown.
    pub async fn close(&self) {
        if let Some(group) = &self.inner.group_commit {
            group.close().await;
        }
        self.inner.writer.close().await;
        if let reader::Reader::Pool(pool) = &self.inner.reader {
            pool.close().await;
        }
    }

    /// The engine in use.
    pub fn engine(&self) -> Engine {
        self.inner.engine
    }

    pub(crate) fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    /// `(pool, open connections, idle connections)` of each pool: `reader`
    /// on SQLite (the idle readers kept; one in use for a read is open but
    /// not counted, and its writer is one connection on a thread of its own),
    /// one `main` pool on PostgreSQL.
    pub fn pool_stats(&self) -> Vec<(&'static str, usize, usize)> {
        let stats = |pool: &AnyPool| {
            (
                usize::try_from(pool.size()).unwrap_or(usize::MAX),
                pool.num_idle(),
            )
        };
        match self.inner.engine {
            Engine::Sqlite => match &self.inner.reader {
                reader::Reader::Sqlite(readers) => {
                    let idle = readers.idle();
                    vec![("reader", idle, idle)]
                }
                reader::Reader::Pool(pool) => {
                    let reader = stats(pool);
                    vec![("reader", reader.0, reader.1)]
                }
            },
            Engine::Postgres => {
                let main = stats(&self.inner.writer);
                vec![("main", main.0, main.1)]
            }
        }
    }

    /// What SQLite's group committer did so far; `None` on PostgreSQL,
    /// which commits each write on its own connection.
    pub fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        let mut stats = self.inner.group_commit.as_ref()?.stats();
        stats.checkpoints = self
            .inner
            .checkpointer
            .as_ref()
            .map_or(0, checkpoint::Checkpointer::completed);
        Some(stats)
    }

    pub(crate) fn reader(&self) -> &reader::Reader {
        &self.inner.reader
    }

    /// Runs `work` on `input` as one transaction: the one way this crate
    /// writes. On SQLite it runs on the writer thread, in a transaction it
    /// shares with the other writes queued at that moment (see
    /// `group_commit`; refused with [`StorageError::Overloaded`] when too
    /// many wait). On PostgreSQL it runs on a pooled connection. Either way a
    /// transaction that lost a race ([`DbFailure::Retry`]) runs again whole,
    /// so `work` may run more than once, and only the last run's writes stay.
    pub(crate) async fn write<I: Send + Sync + 'static, T: Send + 'static, W>(
        &self,
        input: I,
        work: W,
    ) -> Result<T, StorageError>
    where
        W: group_commit::Work<I, T>,
    {
        self.in_write_span::<W, _>(async {
            match &self.inner.group_commit {
                Some(group) => group.submit(input, work).await,
                None => self.postgres_transaction(&input, &work).await,
            }
        })
        .await
    }

    /// The CLIENT span of one write (a transaction, or statements in
    /// autocommit), named by the storage function that wrote it; on SQLite
    /// the group commit records how many writes shared its transaction
    /// (`db.operation.batch.size`). Its statements are spans under it (see
    /// `sql::Query`). At DEBUG: exported when traces are on, free otherwise.
    /// `W` is the write's work, whose type names the function.
    async fn in_write_span<W, T>(&self, write: impl std::future::Future<Output = T>) -> T {
        use tracing::Instrument;
        write.instrument(self.write_span::<W>()).await
    }

    fn write_span<W>(&self) -> tracing::Span {
        let span = tracing::debug_span!(
            "db",
            otel.name = tracing::field::Empty,
            otel.kind = "client",
            db.system.name = self.engine().system_name(),
            db.operation.name = tracing::field::Empty,
            db.operation.batch.size = tracing::field::Empty,
        );
        if !span.is_disabled() {
            let operation = operation_of::<W>();
            span.record("otel.name", operation);
            span.record("db.operation.name", operation);
        }
        span
    }

    /// [`Storage::write`] for work whose statements each stand alone (one
    /// insert-or-take-over and a read, say): on PostgreSQL they run outside
    /// a transaction, which saves its `BEGIN` and `COMMIT` round trips; on
    /// SQLite there is no difference.
    pub(crate) async fn write_autocommit<I: Send + Sync + 'static, T: Send + 'static, W>(
        &self,
        input: I,
        work: W,
    ) -> Result<T, StorageError>
    where
        W: group_commit::Work<I, T>,
    {
        self.in_write_span::<W, _>(async {
            let Some(group) = &self.inner.group_commit else {
                let mut conn = self.inner.writer.acquire().await?;
                let (outcome, changes) = changes::tracking(work(self, &mut *conn, &input)).await;
                // Autocommit: a failure part-way may have committed what came
                // before it, so the changes count either way.
                self.committed(&changes);
                return outcome.map_err(|failure| match failure {
                    DbFailure::Fatal(error) => error,
                    DbFailure::Retry => StorageError::Unavailable,
                });
            };
            group.submit(input, work).await
        })
        .await
    }

    /// One statement that stands alone, through [`Storage::write_autocommit`]:
    /// what it changed.
    pub(crate) async fn write_statement(&self, statement: sql::Query) -> Result<u64, StorageError> {
        self.write_autocommit(statement, |_, conn, statement| {
            Box::pin(async move { Ok(statement.clone().execute(conn).await?.rows_affected()) })
        })
        .await
    }

    async fn postgres_transaction<I, T>(
        &self,
        input: &I,
        work: &impl group_commit::Work<I, T>,
    ) -> Result<T, StorageError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut tx = self.inner.writer.begin().await?;
            let (outcome, changes) = changes::tracking(work(self, &mut *tx, input)).await;
            let outcome = match outcome {
                Ok(value) => tx.commit().await.map(|()| value).map_err(DbFailure::from),
                Err(failure) => Err(failure),
            };
            if outcome.is_ok() {
                // After the commit, so a read tagged before it cannot pass for after.
                self.committed(&changes);
            }
            if let Some(answer) = DbFailure::settle(outcome, attempt) {
                return answer;
            }
        }
    }

    /// The HMAC key for lookup hashes, loaded (or created at first start) once.
    pub(crate) async fn lookup_key(&self) -> Result<&LookupKey, StorageError> {
        self.inner
            .lookup_key
            .get_or_try_init(|| self.load_or_create_lookup_key())
            .await
    }

    /// A 32-byte key for `purpose`, derived from the database's random lookup
    /// key (HMAC-SHA256 with a domain label), so every replica on this
    /// database derives the same one and none is configured or stored. The
    /// server seals its browser-login cookies and signs its OAuth states with
    /// such keys.
    ///
    /// # Errors
    /// As [`Storage::verify_keys`] (the lookup key is loaded once).
    pub async fn derived_key(
        &self,
        purpose: &str,
    ) -> Result<secrecy::SecretBox<[u8; 32]>, StorageError> {
        let digest = self.lookup_key().await?.hash("derived_key", &[purpose]);
        let bytes: [u8; 32] = digest
            .try_into()
            .map_err(|_| StorageError::Keys("derived key has the wrong length".to_owned()))?;
        Ok(secrecy::SecretBox::new(Box::new(bytes)))
    }

    async fn load_or_create_lookup_key(&self) -> Result<LookupKey, StorageError> {
        let aad = key_material_aad("lookup_key");
        let fresh = LookupKey::generate();
        let sealed = self.keys().encrypt(&aad, fresh.bytes())?;
        // Several replicas may start at once: the first insert wins, all read it back.
        let stored: Vec<u8> = self
            .write_autocommit(sealed, |_, conn, sealed| {
                Box::pin(async move {
                    query(
                        "INSERT INTO key_material (name, ciphertext, created_at) \
                         VALUES ('lookup_key', $1, $2) ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(sealed.clone())
                    .bind(millis(std::time::SystemTime::now()))
                    .execute(&mut *conn)
                    .await?;
                    let stored =
                        query("SELECT ciphertext FROM key_material WHERE name = 'lookup_key'")
                            .fetch_one(conn)
                            .await?;
                    Ok(stored.get::<Vec<u8>>("ciphertext")?)
                })
            })
            .await?;
        let bytes = self.keys().decrypt(&aad, &stored)?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| StorageError::Keys("stored lookup key is malformed".to_owned()))?;
        Ok(LookupKey::from_bytes(bytes))
    }

    /// A handle for the WeChat client's token manager: the app access tokens,
    /// encrypted, shared by every replica on this database.
    pub fn token_cache(&self) -> Arc<dyn wechat_types::TokenCache> {
        Arc::new(DbTokenCache::new(self.clone()))
    }
}

/// Binds a `key_material` value to its name.
pub(crate) fn key_material_aad(name: &str) -> String {
    format!("key_material.ciphertext:{name}")
}

/// What a SQLite storage runs on.
struct SqliteParts {
    /// The writer connection (rusqlite), for the writer thread.
    writer: sqlite::SqliteConn,
    /// Read-only connections (taken out when the storage is built).
    reader: Option<sqlite::SqliteReaders>,
    /// One sqlx connection the migrations run on.
    migrations: AnyPool,
    checkpointer: Option<checkpoint::Checkpointer>,
    memory_dir: Option<tempfile::TempDir>,
}

async fn connect_sqlite(config: &StorageConfig) -> Result<SqliteParts, StorageError> {
    use std::str::FromStr as _;

    let url = if config.url.contains('?') {
        config.url.clone()
    } else {
        format!("{}?mode=rwc", config.url)
    };
    // `sqlite::memory:` would give each connection a database of its own; the
    // writer, the readers and the migrations must share one, so it is a file
    // in a private directory that goes away with the storage.
    let (url, memory_dir) = if url.contains(":memory:") || url.contains("mode=memory") {
        let dir = tempfile::tempdir().map_err(|error| {
            tracing::error!(%error, "cannot create a directory for an in-memory database");
            StorageError::Internal
        })?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("memory.db").display()
        );
        (url, Some(dir))
    } else {
        (url, None)
    };
    let path = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
        .map_err(|error| {
            tracing::error!(%error, "storage url is not a SQLite url");
            StorageError::Internal
        })?
        .get_filename()
        .to_owned();
    let busy_ms = config.sqlite_busy_timeout.as_millis();
    // A SQLite connection is a file handle in this process: it cannot drop
    // like a socket, so the ping sqlx sends on every acquire (a round trip to
    // the connection's worker thread) buys nothing.
    let migrations = AnyPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(config.acquire_timeout)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                sqlx::query(AssertSqlSafe(format!("PRAGMA busy_timeout = {busy_ms}")))
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("PRAGMA foreign_keys = ON")
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    let writer = sqlite::SqliteConn::open(
        &path,
        config.sqlite_busy_timeout,
        checkpoint::BACKSTOP_PAGES,
    )
    .map_err(StorageError::from)?;
    let reader = sqlite::SqliteReaders::open(
        &path,
        config.sqlite_busy_timeout,
        usize::try_from(config.sqlite_readers).unwrap_or(usize::MAX),
    )?;
    Ok(SqliteParts {
        writer,
        reader: Some(reader),
        migrations,
        checkpointer: Some(checkpoint::Checkpointer::start(url)),
        memory_dir,
    })
}

/// tonic handlers need `Send` futures: this fails to compile if one is not.
#[cfg(test)]
mod operation_names {
    use super::operation_of;

    fn name_of<F>(_: &F) -> &'static str {
        operation_of::<F>()
    }

    fn rotate_refresh_token() -> &'static str {
        let work = |_: u8| 0;
        name_of(&work)
    }

    #[test]
    fn a_write_is_named_by_the_function_its_work_was_written_in() {
        assert_eq!(rotate_refresh_token(), "rotate_refresh_token");
        assert_eq!(operation_of::<u8>(), "u8");
        assert_eq!(operation_of::<Vec<u8>>(), "write", "another shape");
    }
}

#[cfg(test)]
#[allow(dead_code, clippy::too_many_arguments)]
mod futures_are_send {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn assert_send<T: Send>(_: T) {}

    fn every_public_future(
        storage: &Storage,
        login: &IdentityLogin,
        lookup: &UserLookup,
        identity: &IdentityRef,
        bind: &BindRequest,
        claim: &WebLoginClaim,
        session: &NewSession,
        phone: &Phone,
        tokens: &WebTokens,
        at: SystemTime,
    ) {
        let (app, openid) = (&identity.app_id, &identity.openid);
        let user = UserId::generate();
        assert_send(storage.migrate());
        assert_send(storage.pending_migrations());
        assert_send(storage.verify_keys());
        assert_send(storage.ping());
        assert_send(storage.record_login(login));
        let lifetimes = SessionLifetimes {
            refresh_ttl: Duration::ZERO,
            max_lifetime: Duration::ZERO,
            reuse_grace: Duration::ZERO,
        };
        assert_send(storage.record_login_with_session(login, lifetimes, "a"));
        assert_send(storage.profile(lookup));
        assert_send(storage.set_phone(&user, phone, at));
        assert_send(storage.update_profile(&user, &ProfileFields::default(), at));
        assert_send(storage.user_by_phone("1", "86"));
        assert_send(storage.session_key(app, openid));
        assert_send(storage.latest_web_authorization(&user));
        assert_send(storage.store_web_tokens(app, openid, tokens, at));
        assert_send(storage.bind(bind));
        assert_send(storage.unbind(identity, "a", at));
        assert_send(storage.claim_code(app, "c", at));
        assert_send(storage.mark_code_ambiguous(app, "c"));
        assert_send(storage.release_code(app, "c"));
        assert_send(storage.claim_web_login(claim));
        assert_send(storage.complete_web_login("s", at, login));
        assert_send(storage.fail_web_login("s", at, "server_error", at));
        assert_send(storage.web_login_rows());
        assert_send(storage.derived_key("purpose"));
        assert_send(storage.create_ticket(identity, false, at));
        assert_send(storage.consume_ticket("t", at));
        assert_send(storage.redeem_ticket("t", lifetimes, "a", at));
        assert_send(storage.bind_by_ticket("t", &bind.account, false, "a", at));
        assert_send(storage.create_session(session));
        assert_send(storage.rotate_refresh_token("r", lifetimes, at));
        assert_send(storage.session(&SessionId::generate()));
        assert_send(storage.revoke_session(&SessionId::generate(), "r", "a", at));
        assert_send(storage.revoke_by_refresh_token("r", "r", "a", at));
        assert_send(storage.sweep_expired(at, 1));
        assert_send(storage.active_signing_keys());
        assert_send(storage.insert_signing_key("k", b"p", "{}", at));
        assert_send(storage.audit_events(None, 1));
        assert_send(storage.set_external_id(&user, None, "a", at));
        assert_send(storage.rekey(&RekeyOptions::default(), |_: &RekeyProgress| {}));
        assert_send(storage.key_usage(1));
    }
}

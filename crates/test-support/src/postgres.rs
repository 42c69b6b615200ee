//! A fresh PostgreSQL database per test (or per benchmark server), dropped
//! when it goes out of scope. Names carry a UUID v7 (`wi_test_<uuid>`), so a
//! later run can tell the ones a killed run left behind (dropped after an
//! hour) from a concurrent run's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{AnyConnection, AssertSqlSafe, Connection};

/// The variable that names the test PostgreSQL's admin URL.
pub const POSTGRES_ENV: &str = "WECHAT_IDENTITY_TEST_POSTGRES";
/// The admin URL when the variable is unset: the local server, trust auth.
pub const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PREFIX: &str = "wi_test_";

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    admin_url: String,
    name: String,
}

/// The admin URL of the test PostgreSQL.
#[allow(clippy::disallowed_methods)] // the tests' own setting, not the service's config
pub fn admin_url() -> String {
    std::env::var(POSTGRES_ENV).unwrap_or_else(|_| POSTGRES_DEFAULT.to_owned())
}

impl TestDatabase {
    /// A fresh database on the test PostgreSQL; `None` (after saying why)
    /// when it is unreachable outside CI. In CI that is a failure.
    pub async fn create() -> Option<Self> {
        match Self::create_at(&admin_url()).await {
            Ok(database) => Some(database),
            Err(error) => {
                assert!(
                    !crate::in_ci(),
                    "the PostgreSQL tests need PostgreSQL (see {POSTGRES_ENV}): {error}"
                );
                eprintln!("skipping a PostgreSQL test: {error}");
                None
            }
        }
    }

    /// A fresh database on the PostgreSQL at `admin_url` (which must end in
    /// `/database`).
    ///
    /// # Errors
    /// PostgreSQL is unreachable, or refused to create the database; the
    /// message names the host, never a password.
    pub async fn create_at(admin_url: &str) -> Result<Self, String> {
        sqlx::any::install_default_drivers();
        let mut admin = AnyConnection::connect(admin_url)
            .await
            .map_err(|e| format!("PostgreSQL at {}: {e}", host_of(admin_url)))?;
        // Once per process is enough to clear what killed runs left.
        static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
            drop_abandoned(&mut admin).await;
        }
        let name = format!("{PREFIX}{}", uuid::Uuid::now_v7().simple());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("creating a test database: {e}"))?;
        let _ = admin.close().await;
        let slash = admin_url
            .rfind('/')
            .ok_or_else(|| format!("{POSTGRES_ENV} must end with /database"))?;
        Ok(Self {
            url: format!("{}/{name}", &admin_url[..slash]),
            admin_url: admin_url.to_owned(),
            name,
        })
    }

    /// Makes the database refuse new connections and drops the open ones
    /// (`false`), as an outage would, or lets it accept them again (`true`).
    pub async fn allow_connections(&self, allow: bool) {
        let mut admin = AnyConnection::connect(&self.admin_url).await.unwrap();
        let name = &self.name;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {allow}"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        if !allow {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity WHERE datname = '{name}'"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
        }
        let _ = admin.close().await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run on a runtime thread: use a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = AnyConnection::connect(&admin_url).await.ok()?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Drops the databases of runs that were killed more than an hour ago.
async fn drop_abandoned(admin: &mut AnyConnection) {
    let names: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT datname::text FROM pg_database WHERE datname LIKE '{PREFIX}%'"
    )))
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for name in names {
        let created = uuid::Uuid::parse_str(name.trim_start_matches(PREFIX))
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
}

/// The host part of a database URL, for messages: no user, password or query.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('?').next().unwrap_or(rest)
}

//! How to reach the database and how big the pools are.

use std::fmt;
use std::time::Duration;

/// Where the data lives and how the connection pools are sized.
///
/// SQLite gets a writer pool of exactly one connection (so write transactions
/// never meet each other and never deadlock on a lock upgrade) and a pool of
/// `sqlite_readers` read-only connections; PostgreSQL gets one pool of
/// `postgres_max_connections`. See the crate README for the reasoning.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    /// Read-only SQLite connections (WAL lets them read while the writer writes).
    pub sqlite_readers: u32,
    /// PostgreSQL pool size.
    pub postgres_max_connections: u32,
    /// How long a request waits for a pooled connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// How long SQLite waits on a lock held by another process before giving up.
    pub sqlite_busy_timeout: Duration,
    /// SQLite: how many writes may wait for the writer; beyond it a write is
    /// refused at once with [`crate::StorageError::Overloaded`].
    pub sqlite_write_queue: usize,
}

impl StorageConfig {
    /// The defaults for `url`: 4 SQLite readers, 16 PostgreSQL connections,
    /// 5 s acquire timeout, 5 s SQLite busy timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            sqlite_readers: 4,
            postgres_max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
            sqlite_write_queue: 1024,
        }
    }

    /// The engine the URL names, if it names one we support.
    pub fn engine(&self) -> Option<Engine> {
        if self.url.starts_with("sqlite:") {
            Some(Engine::Sqlite)
        } else if self.url.starts_with("postgres:") || self.url.starts_with("postgresql:") {
            Some(Engine::Postgres)
        } else {
            None
        }
    }
}

/// Shows the URL without its password.
impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig")
            .field("url", &redact_password(&self.url))
            .field("sqlite_readers", &self.sqlite_readers)
            .field("postgres_max_connections", &self.postgres_max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("sqlite_busy_timeout", &self.sqlite_busy_timeout)
            .field("sqlite_write_queue", &self.sqlite_write_queue)
            .finish()
    }
}

/// `postgres://user:secret@host/db` becomes `postgres://user:<redacted>@host/db`.
fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.find('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:<redacted>{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// The database engine behind a [`crate::Storage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Embedded, one machine.
    Sqlite,
    /// Shared by several replicas.
    Postgres,
}

impl Engine {
    /// The engine as OpenTelemetry's `db.system.name` spells it: `"sqlite"`
    /// or `"postgresql"`.
    pub fn system_name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_database_password() {
        let config = StorageConfig::new("postgres://app:hunter2@db:5432/identity");
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("postgres://app:<redacted>@db:5432/identity"));
        assert_eq!(redact_password("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn engine_follows_the_url_scheme() {
        assert_eq!(
            StorageConfig::new("sqlite://x.db").engine(),
            Some(Engine::Sqlite)
        );
        assert_eq!(
            StorageConfig::new("postgresql://h/db").engine(),
            Some(Engine::Postgres)
        );
        assert_eq!(StorageConfig::new("mysql://h/db").engine(), None);
    }
}

//! The one error type of the crate, and the single place where database errors
//! become it.

use std::fmt;

/// What went wrong in storage. Messages never contain secrets or raw database
/// text: internal details are logged where they happen and not exposed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The thing named by `what` does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for: "user", "identity", ...
        what: &'static str,
    },
    /// The thing named by `what` already exists or is held by someone else.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What collided: "identity", "external_id", ...
        what: &'static str,
    },
    /// The change contradicts the current state of `what`.
    #[error("conflict on {what}")]
    Conflict {
        /// What the change conflicted with.
        what: &'static str,
    },
    /// The database could not be reached in time; the caller may retry later.
    #[error("storage unavailable")]
    Unavailable,
    /// The encryption keys do not fit the stored data or are malformed.
    #[error("encryption keys: {0}")]
    Keys(String),
    /// Anything else; the details were logged.
    #[error("internal storage error")]
    Internal,
}

/// A database error sorted for the crate: either final, or a lost race that is
/// worth running the whole transaction again for.
#[derive(Debug)]
pub(crate) enum DbFailure {
    /// Serialization failure, deadlock or a lost insert race: retry the transaction.
    Retry,
    /// A final error.
    Fatal(StorageError),
}

impl From<StorageError> for DbFailure {
    fn from(error: StorageError) -> Self {
        Self::Fatal(error)
    }
}

impl From<sqlx::Error> for DbFailure {
    fn from(error: sqlx::Error) -> Self {
        if is_retryable(&error) {
            Self::Retry
        } else {
            Self::Fatal(convert_sqlx_err(error))
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        convert_sqlx_err(error)
    }
}

impl fmt::Display for DbFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retry => f.write_str("transaction lost a race"),
            Self::Fatal(error) => error.fmt(f),
        }
    }
}

/// PostgreSQL's serialization failure and deadlock, which are cured by retrying.
fn is_retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("40001" | "40P01")),
        _ => false,
    }
}

/// Maps a database error to a [`StorageError`], once, for the whole crate.
///
/// Unique violations name the constraint's subject, foreign keys become
/// `NotFound`/`Conflict`, lost connections and pool timeouts `Unavailable`; the
/// rest is logged and becomes `Internal`.
pub(crate) fn convert_sqlx_err(error: sqlx::Error) -> StorageError {
    match &error {
        sqlx::Error::Database(db) => {
            let subject = constraint_subject(db.constraint().unwrap_or_default(), db.message());
            if db.is_unique_violation() {
                return StorageError::AlreadyExists { what: subject };
            }
            if db.is_foreign_key_violation() {
                // A missing parent is reported by the insert that referenced it.
                return if db.message().to_ascii_lowercase().contains("delete") {
                    StorageError::Conflict { what: subject }
                } else {
                    StorageError::NotFound { what: subject }
                };
            }
            if matches!(db.code().as_deref(), Some("5" | "6" | "517")) {
                // SQLITE_BUSY / SQLITE_LOCKED after busy_timeout.
                tracing::warn!(code = ?db.code(), "database busy");
                return StorageError::Unavailable;
            }
            if db.code().as_deref().is_some_and(is_postgres_outage) {
                tracing::warn!(code = ?db.code(), "database unavailable");
                return StorageError::Unavailable;
            }
            tracing::error!(code = ?db.code(), message = %db.message(), "database error");
            StorageError::Internal
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            tracing::warn!(error = %error, "database unavailable");
            StorageError::Unavailable
        }
        sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            tracing::warn!(error = %error, "database connection lost");
            StorageError::Unavailable
        }
        _ => {
            tracing::error!(error = %error, "database error");
            StorageError::Internal
        }
    }
}

/// PostgreSQL SQLSTATEs that mean the server is unreachable for now, not that
/// the query is wrong: connection exceptions (class 08), insufficient
/// resources (53, e.g. too many connections), operator intervention (57P01
/// admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now), and 55000
/// as it answers a connection to a database that accepts none.
fn is_postgres_outage(code: &str) -> bool {
    // SQLSTATEs are five characters; SQLite's numeric codes (e.g. 531) are not.
    code.len() == 5
        && (code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P")
            || code == "55000")
}

/// Which table a violated constraint protects, as a short noun. PostgreSQL names
/// the constraint; SQLite only says "UNIQUE constraint failed: users.external_id".
fn constraint_subject(constraint: &str, message: &str) -> &'static str {
    let haystack = format!("{constraint} {message}");
    let subjects = [
        ("external_id", "external_id"),
        ("identities", "identity"),
        ("unionids", "unionid"),
        ("users", "user"),
        ("sessions", "session"),
        ("refresh_tokens", "refresh_token"),
        ("signing_keys", "signing_key"),
        ("oauth_states", "oauth_state"),
        ("login_tickets", "ticket"),
        ("used_codes", "code"),
        ("audit_events", "audit_event"),
        ("key_material", "key_material"),
    ];
    subjects
        .iter()
        .find(|(needle, _)| haystack.contains(needle))
        .map_or("record", |(_, subject)| subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_subject_reads_both_engines() {
        assert_eq!(
            constraint_subject("", "UNIQUE constraint failed: users.external_id"),
            "external_id"
        );
        assert_eq!(
            constraint_subject("users_external_id_unique", "duplicate key"),
            "external_id"
        );
        assert_eq!(
            constraint_subject("identities_pkey", "duplicate"),
            "identity"
        );
        assert_eq!(constraint_subject("", "something else"), "record");
    }

    #[test]
    fn pool_timeout_is_unavailable() {
        assert!(matches!(
            convert_sqlx_err(sqlx::Error::PoolTimedOut),
            StorageError::Unavailable
        ));
    }
}

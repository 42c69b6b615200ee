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
    /// Too many writes are waiting already (SQLite's bounded write queue):
    /// refused at once, nothing written; the caller may retry after a pause.
    #[error("storage overloaded")]
    Overloaded,
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

/// A database error as the query layer (`sql.rs`) reports it, whichever
/// driver ran the statement: sorted once, here, into what the crate acts on.
#[derive(Debug)]
pub(crate) enum DbError {
    /// A unique key or primary key was violated; the constraint's name
    /// (PostgreSQL) or the driver's message (SQLite names table.column).
    Unique(String),
    /// A foreign key was violated, by a delete (`deleting`) or an insert.
    ForeignKey {
        /// A delete (or update) of a referenced row, rather than an insert.
        deleting: bool,
        /// The constraint's name or the driver's message.
        detail: String,
    },
    /// A serialization failure or deadlock (PostgreSQL): run the transaction again.
    Retry,
    /// The database could not be reached or stayed locked: try later.
    Unavailable(String),
    /// A statement expected a row and got none.
    NoRow,
    /// A value came back as another type than the code expects.
    Decode(String),
    /// Anything else (a bad statement, a full disk), with the driver's text.
    Other(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unique(detail) => write!(f, "unique violation: {detail}"),
            Self::ForeignKey { detail, .. } => write!(f, "foreign key violation: {detail}"),
            Self::Retry => f.write_str("serialization failure"),
            Self::Unavailable(detail) => write!(f, "database unavailable: {detail}"),
            Self::NoRow => f.write_str("no row"),
            Self::Decode(detail) => write!(f, "unexpected value: {detail}"),
            Self::Other(detail) => write!(f, "database error: {detail}"),
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) => {
                let detail = format!("{} {}", db.constraint().unwrap_or_default(), db.message());
                let code = db.code();
                let code = code.as_deref().unwrap_or_default();
                if matches!(code, "40001" | "40P01") {
                    Self::Retry
                } else if db.is_unique_violation() {
                    Self::Unique(detail)
                } else if db.is_foreign_key_violation() {
                    Self::ForeignKey {
                        deleting: db.message().to_ascii_lowercase().contains("delete"),
                        detail,
                    }
                } else if matches!(code, "5" | "6" | "517") || is_postgres_outage(code) {
                    // SQLITE_BUSY / SQLITE_LOCKED after busy_timeout, or PostgreSQL refusing.
                    Self::Unavailable(format!("{code}: {}", db.message()))
                } else {
                    Self::Other(format!("{code}: {}", db.message()))
                }
            }
            sqlx::Error::RowNotFound => Self::NoRow,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(error.to_string()),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::Decode(_) => Self::Decode(error.to_string()),
            _ => Self::Other(error.to_string()),
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ffi::ErrorCode;
        match &error {
            rusqlite::Error::SqliteFailure(failure, message) => {
                let detail = message.clone().unwrap_or_else(|| failure.to_string());
                match (failure.code, failure.extended_code) {
                    (ErrorCode::ConstraintViolation, 2067 | 1555) => Self::Unique(detail),
                    (ErrorCode::ConstraintViolation, 787) => Self::ForeignKey {
                        // SQLite says "FOREIGN KEY constraint failed" either way;
                        // deletes here are guarded, so a violation is an insert's.
                        deleting: false,
                        detail,
                    },
                    (ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked, _) => {
                        Self::Unavailable(detail)
                    }
                    _ => Self::Other(format!("{}: {detail}", failure.extended_code)),
                }
            }
            rusqlite::Error::QueryReturnedNoRows => Self::NoRow,
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::InvalidColumnIndex(_)
            | rusqlite::Error::InvalidColumnName(_) => Self::Decode(error.to_string()),
            _ => Self::Other(error.to_string()),
        }
    }
}

impl From<DbError> for DbFailure {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Retry => Self::Retry,
            error => Self::Fatal(error.into()),
        }
    }
}

impl From<DbError> for StorageError {
    fn from(error: DbError) -> Self {
        convert(error)
    }
}

impl From<sqlx::Error> for DbFailure {
    fn from(error: sqlx::Error) -> Self {
        DbError::from(error).into()
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        convert(error.into())
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

/// Maps a database error to a [`StorageError`], once, for the whole crate.
///
/// Unique violations name the constraint's subject, foreign keys become
/// `NotFound`/`Conflict`, lost connections and pool timeouts `Unavailable`; the
/// rest is logged and becomes `Internal`.
pub(crate) fn convert(error: DbError) -> StorageError {
    match error {
        DbError::Unique(detail) => StorageError::AlreadyExists {
            what: constraint_subject(&detail),
        },
        // A missing parent is reported by the insert that referenced it.
        DbError::ForeignKey {
            deleting: true,
            detail,
        } => StorageError::Conflict {
            what: constraint_subject(&detail),
        },
        DbError::ForeignKey {
            deleting: false,
            detail,
        } => StorageError::NotFound {
            what: constraint_subject(&detail),
        },
        DbError::Retry => {
            tracing::warn!("a statement lost a race outside a retried transaction");
            StorageError::Unavailable
        }
        DbError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "database unavailable");
            StorageError::Unavailable
        }
        error @ (DbError::NoRow | DbError::Decode(_) | DbError::Other(_)) => {
            tracing::error!(%error, "database error");
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
fn constraint_subject(haystack: &str) -> &'static str {
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
            constraint_subject("UNIQUE constraint failed: users.external_id"),
            "external_id"
        );
        assert_eq!(
            constraint_subject("users_external_id_unique duplicate key"),
            "external_id"
        );
        assert_eq!(constraint_subject("identities_pkey duplicate"), "identity");
        assert_eq!(constraint_subject("something else"), "record");
    }

    #[test]
    fn pool_timeout_is_unavailable() {
        assert!(matches!(
            convert(sqlx::Error::PoolTimedOut.into()),
            StorageError::Unavailable
        ));
    }
}

//! The one error type of the crate, and the single place where database errors
//! become it.

use std::fmt;

/// What went wrong in storage. Messages never contain secrets or raw database
/// text: internal details are logged where they happen and not exposed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The entity does not exist.
    #[error("{0} not found")]
    NotFound(Entity),
    /// A uniqueness rule refused the write: the thing exists already or is
    /// held by someone else.
    #[error("{0} already exists")]
    AlreadyExists(Constraint),
    /// The change contradicts the current state (a row still referenced by
    /// others, a value changed meanwhile).
    #[error("conflict on {0}")]
    Conflict(Constraint),
    /// The database could not be reached in time; the caller may retry later.
    #[error("storage unavailable")]
    Unavailable,
    /// Too many writes are waiting already (SQLite's bounded write queue):
    /// refused at once, nothing written; the caller may retry after a pause.
    #[error("storage overloaded")]
    Overloaded,
    /// A stored value does not parse (the database was written by something
    /// else, or damaged); names the value, never its content.
    #[error("stored {0} does not parse")]
    Corrupt(&'static str),
    /// The encryption keys do not fit the stored data or are malformed.
    #[error("encryption keys: {0}")]
    Keys(String),
    /// Anything else; the details were logged.
    #[error("internal storage error")]
    Internal,
}

/// What a [`StorageError::NotFound`] looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A user, by id, external id, unionid or identity.
    User,
    /// A WeChat identity (app id, openid).
    Identity,
    /// A session.
    Session,
    /// A row another row must reference (a foreign key found no parent).
    Referenced,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::User => "user",
            Self::Identity => "identity",
            Self::Session => "session",
            Self::Referenced => "referenced row",
        })
    }
}

/// The uniqueness rule (or reference) a write ran into: one per key of the
/// schema that a caller can meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    /// `users.external_id`: another user holds the external id.
    ExternalId,
    /// `identities` (app id, openid): the identity exists, or belongs elsewhere.
    Identity,
    /// `unionids`: the unionid is held by a user.
    UnionId,
    /// `users` by id.
    User,
    /// `sessions` by id.
    Session,
    /// `refresh_tokens`: by hash, or a session's generation.
    RefreshToken,
    /// `login_tickets` by hash.
    Ticket,
    /// `used_codes` by hash.
    Code,
    /// `web_logins` by state.
    WebLogin,
    /// `signing_keys` by kid.
    SigningKey,
    /// Any other table's key (bookkeeping rows a caller never names).
    Other,
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ExternalId => "external_id",
            Self::Identity => "identity",
            Self::UnionId => "unionid",
            Self::User => "user",
            Self::Session => "session",
            Self::RefreshToken => "refresh_token",
            Self::Ticket => "ticket",
            Self::Code => "code",
            Self::WebLogin => "web_login",
            Self::SigningKey => "signing_key",
            Self::Other => "record",
        })
    }
}

impl Constraint {
    /// The rule a driver's violation names, read exactly: PostgreSQL names
    /// the constraint (`users_external_id_unique`, `<table>_pkey`,
    /// `<table>_<columns>_key`); SQLite names the columns
    /// (`UNIQUE constraint failed: users.external_id`).
    pub(crate) fn of_violation(constraint: Option<&str>, message: &str) -> Self {
        let table = match constraint {
            Some("users_external_id_unique") => return Self::ExternalId,
            Some(name) => name,
            None => match message.split_once("constraint failed: ") {
                Some((_, "users.external_id")) => return Self::ExternalId,
                Some((_, columns)) => columns,
                None => "",
            },
        };
        let table = table.split(['.', ',']).next().unwrap_or_default();
        let table = table
            .strip_suffix("_pkey")
            .or_else(|| table.strip_suffix("_session_id_generation_key"))
            .unwrap_or(table);
        match table {
            "identities" => Self::Identity,
            "unionids" => Self::UnionId,
            "users" => Self::User,
            "sessions" => Self::Session,
            "refresh_tokens" => Self::RefreshToken,
            "login_tickets" => Self::Ticket,
            "used_codes" => Self::Code,
            "web_logins" => Self::WebLogin,
            "signing_keys" => Self::SigningKey,
            _ => Self::Other,
        }
    }
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

impl DbFailure {
    /// What attempt `attempt` of a transaction (counted from 1) came to:
    /// `Some` answer, or `None` to run it again (it lost a race and has
    /// attempts left). The one retry rule of every engine's write path.
    pub(crate) fn settle<T>(
        outcome: Result<T, Self>,
        attempt: u32,
    ) -> Option<Result<T, StorageError>> {
        match outcome {
            Ok(value) => Some(Ok(value)),
            Err(Self::Retry) if attempt < crate::MAX_TX_ATTEMPTS => {
                tracing::debug!(attempt, "transaction lost a race, retrying");
                None
            }
            Err(Self::Retry) => {
                tracing::warn!(attempt, "transaction kept losing races");
                Some(Err(StorageError::Unavailable))
            }
            Err(Self::Fatal(error)) => Some(Err(error)),
        }
    }
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
    /// A unique key or primary key was violated.
    Unique(Constraint),
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
            Self::Unique(constraint) => write!(f, "unique violation: {constraint}"),
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
                    Self::Unique(Constraint::of_violation(db.constraint(), db.message()))
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
                    (ErrorCode::ConstraintViolation, 2067 | 1555) => {
                        Self::Unique(Constraint::of_violation(None, &detail))
                    }
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
        DbError::Unique(constraint) => StorageError::AlreadyExists(constraint),
        DbError::ForeignKey {
            deleting: true,
            detail,
        } => {
            tracing::warn!(%detail, "a delete met a row still referenced");
            StorageError::Conflict(Constraint::Other)
        }
        // A missing parent is reported by the insert that referenced it.
        DbError::ForeignKey {
            deleting: false, ..
        } => StorageError::NotFound(Entity::Referenced),
        DbError::Retry => {
            tracing::warn!("a statement lost a race outside a retried transaction");
            StorageError::Unavailable
        }
        DbError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "database unavailable");
            StorageError::Unavailable
        }
        DbError::Decode(detail) => {
            tracing::error!(error = %detail, "a stored value has an unexpected type");
            StorageError::Corrupt("column")
        }
        error @ (DbError::NoRow | DbError::Other(_)) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_their_rule_on_both_engines() {
        let sqlite = |message| Constraint::of_violation(None, message);
        let postgres = |name| Constraint::of_violation(Some(name), "duplicate key value");
        assert_eq!(
            sqlite("UNIQUE constraint failed: users.external_id"),
            Constraint::ExternalId
        );
        assert_eq!(postgres("users_external_id_unique"), Constraint::ExternalId);
        assert_eq!(
            sqlite("UNIQUE constraint failed: identities.app_id, identities.openid"),
            Constraint::Identity
        );
        assert_eq!(postgres("identities_pkey"), Constraint::Identity);
        assert_eq!(postgres("users_pkey"), Constraint::User);
        assert_eq!(
            postgres("refresh_tokens_session_id_generation_key"),
            Constraint::RefreshToken
        );
        assert_eq!(
            sqlite(
                "UNIQUE constraint failed: refresh_tokens.session_id, refresh_tokens.generation"
            ),
            Constraint::RefreshToken
        );
        assert_eq!(postgres("key_material_pkey"), Constraint::Other);
        assert_eq!(sqlite("something else"), Constraint::Other);
    }

    #[test]
    fn pool_timeout_is_unavailable() {
        assert!(matches!(
            convert(sqlx::Error::PoolTimedOut.into()),
            StorageError::Unavailable
        ));
    }
}

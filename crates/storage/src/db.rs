//! Small helpers shared by the repositories: times, ids and row reading.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sql::Row;
use wechat_types::{AppId, OpenId, UnionId};

use crate::error::StorageError;
use crate::types::{SessionId, UserId};

/// A time as unix milliseconds, the way every table stores it.
pub(crate) fn millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The inverse of [`millis`].
pub(crate) fn time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// `at + ttl` in milliseconds.
pub(crate) fn millis_after(at: SystemTime, ttl: Duration) -> i64 {
    millis(at).saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// A stored value that does not parse: the database was written by something else.
pub(crate) fn corrupt(what: &'static str) -> StorageError {
    tracing::error!(what, "stored value does not parse");
    StorageError::Corrupt(what)
}

pub(crate) fn get_i64(row: &Row, column: &str) -> Result<i64, StorageError> {
    Ok(row.get::<i64>(column)?)
}

pub(crate) fn get_opt_i64(row: &Row, column: &str) -> Result<Option<i64>, StorageError> {
    Ok(row.get::<Option<i64>>(column)?)
}

pub(crate) fn get_string(row: &Row, column: &str) -> Result<String, StorageError> {
    Ok(row.get::<String>(column)?)
}

pub(crate) fn get_opt_string(row: &Row, column: &str) -> Result<Option<String>, StorageError> {
    Ok(row.get::<Option<String>>(column)?)
}

pub(crate) fn get_bytes(row: &Row, column: &str) -> Result<Vec<u8>, StorageError> {
    Ok(row.get::<Vec<u8>>(column)?)
}

pub(crate) fn get_opt_bytes(row: &Row, column: &str) -> Result<Option<Vec<u8>>, StorageError> {
    Ok(row.get::<Option<Vec<u8>>>(column)?)
}

pub(crate) fn get_time(row: &Row, column: &str) -> Result<SystemTime, StorageError> {
    get_i64(row, column).map(time)
}

pub(crate) fn get_opt_time(row: &Row, column: &str) -> Result<Option<SystemTime>, StorageError> {
    Ok(get_opt_i64(row, column)?.map(time))
}

pub(crate) fn get_user_id(row: &Row, column: &str) -> Result<UserId, StorageError> {
    get_string(row, column)?
        .parse()
        .map_err(|_| corrupt("user_id"))
}

pub(crate) fn get_session_id(row: &Row, column: &str) -> Result<SessionId, StorageError> {
    get_string(row, column)?
        .parse()
        .map_err(|_| corrupt("session_id"))
}

pub(crate) fn get_app_id(row: &Row, column: &str) -> Result<AppId, StorageError> {
    AppId::new(get_string(row, column)?).map_err(|_| corrupt("app_id"))
}

pub(crate) fn get_openid(row: &Row, column: &str) -> Result<OpenId, StorageError> {
    OpenId::new(get_string(row, column)?).map_err(|_| corrupt("openid"))
}

pub(crate) fn get_opt_unionid(row: &Row, column: &str) -> Result<Option<UnionId>, StorageError> {
    get_opt_string(row, column)?
        .map(|value| UnionId::new(value).map_err(|_| corrupt("unionid")))
        .transpose()
}

/// `$sql` (a literal) on SQLite, and `$sql` + ` FOR UPDATE` (or `$lock`) on
/// PostgreSQL: a static string either way, so a hot statement allocates no
/// SQL and its prepared form is found by the same text every time. SQLite
/// needs no lock: its single writer and `BEGIN IMMEDIATE` serialise writes.
macro_rules! locking_sql {
    ($engine:expr, $sql:expr) => {
        $crate::db::locking_sql!($engine, $sql, " FOR UPDATE")
    };
    ($engine:expr, $sql:expr, $lock:literal) => {
        match $engine {
            $crate::Engine::Sqlite => $sql,
            $crate::Engine::Postgres => concat!($sql, $lock),
        }
    };
}
pub(crate) use locking_sql;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        let at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        assert_eq!(time(millis(at)), at);
        assert_eq!(millis(UNIX_EPOCH), 0);
    }
}

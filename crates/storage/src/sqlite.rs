//! SQLite on rusqlite: the one writer connection, owned by one thread, and
//! the readers, used inline by the task that reads.
//!
//! sqlx runs each SQLite connection on a worker thread of its own and sends
//! every statement and every row across a channel; under load on two cores
//! each such hop cost 100–150 µs, several times SQLite's own work (see
//! BENCHMARKS.md). sqlx's `Any` driver offers no way to run statements on that
//! thread, and its raw handle needs `unsafe`, which this workspace forbids. So
//! the writer is a plain synchronous rusqlite connection, driven by the group
//! committer's thread (`group_commit.rs`): a statement is a function call,
//! its prepared form is kept per connection (keyed by the SQL text), and a
//! write pays one hop to reach the thread and one to answer.
//!
//! Reads run on the calling task's own thread, on a connection taken from a
//! small pool for the length of the read: a read of a few rows from pages in
//! memory takes microseconds, less than one hop to another thread would. In
//! WAL mode readers never wait for the writer.
//!
//! Both drivers link the same `libsqlite3-sys`, so SQLite is built once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{OpenFlags, ToSql};

use crate::error::DbError;
use crate::sql::{Conn, Kind, Outcome, Query, Row, Value};

/// How many prepared statements the writer keeps (every distinct SQL text of
/// the crate's writes fits).
const STATEMENT_CACHE: usize = 256;

/// The writer's connection.
pub(crate) struct SqliteConn {
    conn: rusqlite::Connection,
}

impl std::fmt::Debug for SqliteConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteConn")
    }
}

impl SqliteConn {
    /// Opens `path` read-write (creating it), in WAL mode, with the pragmas the
    /// storage README lists for the writer.
    pub(crate) fn open(
        path: &Path,
        busy_timeout: Duration,
        autocheckpoint_pages: u32,
    ) -> Result<Self, DbError> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(busy_timeout)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA wal_autocheckpoint = {autocheckpoint_pages}; PRAGMA foreign_keys = ON;"
        ))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self { conn })
    }

    /// Opens `path` for reading only (`query_only`), in the WAL mode the
    /// writer set.
    fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Self, DbError> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(busy_timeout)?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA query_only = ON;")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self { conn })
    }

    /// `BEGIN IMMEDIATE`: the write lock up front, so a second process on the
    /// same file makes us wait (busy timeout) instead of failing an upgrade.
    pub(crate) fn begin(&mut self) -> Result<(), DbError> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }

    pub(crate) fn commit(&mut self) -> Result<(), DbError> {
        Ok(self.conn.execute_batch("COMMIT")?)
    }

    /// Rolls back the open transaction, if any (SQLite may have ended it
    /// itself after some errors).
    pub(crate) fn rollback(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(error) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(%error, "rolling back a write failed");
        }
    }

    /// Runs every statement of `query` (several when its SQL holds several,
    /// separated by `;`, each taking the `$n` it names), keeping at most
    /// `max_rows` of the last one's rows.
    fn run_now(&mut self, query: &Query, max_rows: usize) -> Result<Outcome, DbError> {
        let mut outcome = Outcome::default();
        for sql in query
            .sql
            .split(';')
            .map(str::trim)
            .filter(|sql| !sql.is_empty())
        {
            outcome.rows.clear();
            let mut statement = self.conn.prepare_cached(sql)?;
            for index in 1..=statement.parameter_count() {
                let position = match statement.parameter_name(index) {
                    Some(name) => name
                        .strip_prefix('$')
                        .and_then(|number| number.parse::<usize>().ok())
                        .ok_or_else(|| DbError::Other(format!("parameter {name} is not $n")))?,
                    None => index,
                };
                // `$0` names no argument (and must not underflow).
                let value = position
                    .checked_sub(1)
                    .and_then(|at| query.args.get(at))
                    .ok_or_else(|| DbError::Other(format!("${position} has no argument")))?;
                statement.raw_bind_parameter(index, Bind(value))?;
            }
            if statement.column_count() == 0 {
                outcome.rows_affected += u64::try_from(statement.raw_execute()?).unwrap_or(0);
                continue;
            }
            let columns: Arc<[String]> = statement
                .column_names()
                .into_iter()
                .map(str::to_owned)
                .collect();
            let writes = !statement.readonly();
            let mut rows = statement.raw_query();
            // Stepped to the end even past `max_rows`: a data-changing
            // statement with RETURNING finishes its work that way.
            while let Some(row) = rows.next()? {
                if outcome.rows.len() < max_rows {
                    outcome.rows.push(read_row(row, &columns)?);
                }
            }
            drop(rows);
            if writes {
                outcome.rows_affected += self.conn.changes();
            }
        }
        Ok(outcome)
    }
}

/// SQLite as OpenTelemetry's `db.system.name` spells it.
pub(crate) const SYSTEM_NAME: &str = "sqlite";

impl Conn for SqliteConn {
    fn run(&mut self, query: Query, max_rows: usize) -> BoxFuture<'_, Result<Outcome, DbError>> {
        // Synchronous: the answer is there when the future is first polled.
        let outcome = self.run_now(&query, max_rows);
        Box::pin(std::future::ready(outcome))
    }

    fn system_name(&self) -> &'static str {
        SYSTEM_NAME
    }
}

/// SQLite's read connections: taken for one read, given back after it. A
/// read that finds none idle opens one (a file open, well under a
/// millisecond) rather than wait; at most `keep` idle ones are kept.
pub(crate) struct SqliteReaders {
    path: PathBuf,
    busy_timeout: Duration,
    keep: usize,
    idle: Mutex<Vec<SqliteConn>>,
}

impl std::fmt::Debug for SqliteReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReaders")
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl SqliteReaders {
    /// Readers of `path`, keeping `keep` connections open; opens one now, so
    /// a path that cannot be read fails here rather than at the first read.
    pub(crate) fn open(path: &Path, busy_timeout: Duration, keep: usize) -> Result<Self, DbError> {
        let first = SqliteConn::open_reader(path, busy_timeout)?;
        Ok(Self {
            path: path.to_owned(),
            busy_timeout,
            keep: keep.max(1),
            idle: Mutex::new(vec![first]),
        })
    }

    /// A connection for one read (or a few in a row).
    pub(crate) fn take(&self) -> Result<ReaderGuard<'_>, DbError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => SqliteConn::open_reader(&self.path, self.busy_timeout)?,
        };
        Ok(ReaderGuard {
            readers: self,
            conn: Some(conn),
        })
    }

    /// `(open, idle)`: the idle ones (the others are in use for a moment).
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    /// Runs one read.
    pub(crate) fn run_now(&self, query: &Query, max_rows: usize) -> Result<Outcome, DbError> {
        self.take()?.run_now(query, max_rows)
    }
}

/// A reader taken from [`SqliteReaders`]; given back when dropped.
pub(crate) struct ReaderGuard<'r> {
    readers: &'r SqliteReaders,
    conn: Option<SqliteConn>,
}

impl ReaderGuard<'_> {
    /// Runs one statement on the taken connection (held until the drop).
    fn run_now(&mut self, query: &Query, max_rows: usize) -> Result<Outcome, DbError> {
        match &mut self.conn {
            Some(conn) => conn.run_now(query, max_rows),
            None => Err(DbError::Other("a reader used after its return".to_owned())),
        }
    }
}

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        let (Some(conn), Ok(mut idle)) = (self.conn.take(), self.readers.idle.lock()) else {
            return;
        };
        if idle.len() < self.readers.keep {
            idle.push(conn);
        }
    }
}

impl Conn for ReaderGuard<'_> {
    fn run(&mut self, query: Query, max_rows: usize) -> BoxFuture<'_, Result<Outcome, DbError>> {
        let outcome = ReaderGuard::run_now(self, &query, max_rows);
        Box::pin(std::future::ready(outcome))
    }

    fn system_name(&self) -> &'static str {
        SYSTEM_NAME
    }
}

/// A [`Value`] as rusqlite binds it.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null(_) => ValueRef::Null,
            Value::Int(value) => ValueRef::Integer(*value),
            Value::Text(value) => ValueRef::Text(value.as_bytes()),
            Value::Bytes(value) => ValueRef::Blob(value),
        }))
    }
}

fn read_row(row: &rusqlite::Row<'_>, columns: &Arc<[String]>) -> Result<Row, DbError> {
    let mut values = Vec::with_capacity(columns.len());
    for index in 0..columns.len() {
        values.push(match row.get_ref(index)? {
            ValueRef::Null => Value::Null(Kind::Text),
            ValueRef::Integer(value) => Value::Int(value),
            ValueRef::Text(text) => Value::Text(
                std::str::from_utf8(text)
                    .map_err(|_| DbError::Decode(format!("column {index} is not UTF-8")))?
                    .to_owned(),
            ),
            ValueRef::Blob(bytes) => Value::Bytes(bytes.to_vec()),
            ValueRef::Real(_) => {
                return Err(DbError::Decode(format!("column {index} is a real number")));
            }
        });
    }
    Ok(Row {
        columns: columns.clone(),
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::query;

    fn run(conn: &mut SqliteConn, query: Query) -> Outcome {
        conn.run_now(&query, usize::MAX).expect("statement runs")
    }

    #[test]
    fn binds_by_the_number_a_placeholder_names_across_statements() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn =
            SqliteConn::open(&dir.path().join("t.db"), Duration::from_secs(1), 1000).expect("open");
        run(
            &mut conn,
            query("CREATE TABLE t (a INTEGER, b TEXT, c BLOB)"),
        );
        let done = run(
            &mut conn,
            query("INSERT INTO t (b, a, c) VALUES ($2, $1, $3); INSERT INTO t (a) VALUES ($1)")
                .bind(7_i64)
                .bind("seven")
                .bind(None::<Vec<u8>>),
        );
        assert_eq!(done.rows_affected, 2);
        let rows = run(&mut conn, query("SELECT a, b, c FROM t ORDER BY b IS NULL")).rows;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get::<i64>("a").ok(), Some(7));
        assert_eq!(rows[0].get::<String>("b").ok().as_deref(), Some("seven"));
        assert_eq!(rows[0].get::<Option<Vec<u8>>>("c").ok(), Some(None));
        assert_eq!(rows[1].get::<Option<String>>("b").ok(), Some(None));
    }

    #[test]
    fn returning_rows_count_as_changes_and_errors_are_sorted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn =
            SqliteConn::open(&dir.path().join("t.db"), Duration::from_secs(1), 1000).expect("open");
        run(&mut conn, query("CREATE TABLE t (k TEXT PRIMARY KEY)"));
        let done = run(
            &mut conn,
            query("INSERT INTO t (k) VALUES ($1) RETURNING k").bind("x"),
        );
        assert_eq!((done.rows_affected, done.rows.len()), (1, 1));
        let again = conn.run_now(&query("INSERT INTO t (k) VALUES ($1)").bind("x"), 0);
        assert!(matches!(again, Err(DbError::Unique(_))), "{again:?}");
        let unnumbered = conn.run_now(&query("SELECT $0"), 1);
        assert!(
            matches!(unnumbered, Err(DbError::Other(_))),
            "{unnumbered:?}"
        );
    }
}

//! Where reads outside a write go: PostgreSQL's pool, or SQLite's rusqlite
//! readers, which run on the calling thread (see `sqlite.rs`).

use futures::future::BoxFuture;
use sqlx::AnyPool;

use crate::error::DbError;
use crate::sql::{Conn, Executor, Outcome, Query, run_sqlx};
use crate::sqlite::{ReaderGuard, SqliteReaders};

/// The readers of a storage.
#[derive(Debug)]
pub(crate) enum Reader {
    Pool(AnyPool),
    Sqlite(SqliteReaders),
}

impl Reader {
    /// A connection for several reads in a row.
    pub(crate) async fn acquire(&self) -> Result<ReaderConn<'_>, DbError> {
        Ok(match self {
            Self::Pool(pool) => ReaderConn::Pool(pool.acquire().await?),
            Self::Sqlite(readers) => ReaderConn::Sqlite(readers.take()?),
        })
    }
}

impl<'e> Executor<'e> for &'e Reader {
    fn run(self, query: Query, max_rows: usize) -> BoxFuture<'e, Result<Outcome, DbError>> {
        match self {
            Reader::Pool(pool) => pool.run(query, max_rows),
            Reader::Sqlite(readers) => {
                Box::pin(std::future::ready(readers.run_now(&query, max_rows)))
            }
        }
    }

    fn system_name(&self) -> &'static str {
        match self {
            Reader::Pool(pool) => pool.system_name(),
            Reader::Sqlite(_) => crate::sqlite::SYSTEM_NAME,
        }
    }
}

/// A reader connection held for several reads.
pub(crate) enum ReaderConn<'r> {
    Pool(sqlx::pool::PoolConnection<sqlx::Any>),
    Sqlite(ReaderGuard<'r>),
}

impl Conn for ReaderConn<'_> {
    fn run(&mut self, query: Query, max_rows: usize) -> BoxFuture<'_, Result<Outcome, DbError>> {
        match self {
            Self::Pool(conn) => Box::pin(run_sqlx(conn, query, max_rows)),
            Self::Sqlite(guard) => guard.run(query, max_rows),
        }
    }

    fn system_name(&self) -> &'static str {
        match self {
            Self::Pool(conn) => Conn::system_name(&**conn),
            Self::Sqlite(guard) => guard.system_name(),
        }
    }
}

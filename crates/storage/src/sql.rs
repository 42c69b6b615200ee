//! The one way the repositories talk to a database: a [`Query`] (SQL with
//! `$1`, `$2`… placeholders, valid on both engines, and its arguments) run on
//! a [`Conn`], which answers owned [`Row`]s.
//!
//! Two kinds of connection implement [`Conn`]: sqlx's `AnyConnection`
//! (PostgreSQL) and rusqlite's (SQLite's writer and readers, `sqlite.rs`),
//! which run each statement on the calling thread instead of a channel hop
//! away. A repository function takes `&mut dyn Conn` and never knows which
//! one it got; reads outside a write go to a `reader::Reader`.

use std::borrow::Cow;
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::any::{AnyRow, AnyTypeInfoKind};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row as _, ValueRef as _};

use crate::error::DbError;

/// The type of a SQL `NULL` argument: PostgreSQL types every parameter, so a
/// null must still say what it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Text,
    Bytes,
}

/// A value going to or coming from the database. The schema uses integers,
/// text and bytes only (see the storage README), on both engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null(Kind),
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Self {
        Self::Bytes(value)
    }
}

impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Self::Bytes(value.to_vec())
    }
}

/// A Rust type with one SQL kind, so that its `None` binds as a typed null.
pub(crate) trait Typed: Into<Value> {
    const KIND: Kind;
}

impl Typed for i64 {
    const KIND: Kind = Kind::Int;
}
impl Typed for String {
    const KIND: Kind = Kind::Text;
}
impl Typed for &str {
    const KIND: Kind = Kind::Text;
}
impl Typed for Vec<u8> {
    const KIND: Kind = Kind::Bytes;
}
impl Typed for &[u8] {
    const KIND: Kind = Kind::Bytes;
}

impl<T: Typed> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null(T::KIND), Into::into)
    }
}

/// SQL and its arguments, `$n` taking the n-th.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) sql: Cow<'static, str>,
    pub(crate) args: Vec<Value>,
}

/// A query of fixed SQL (the common case: its prepared statement is kept per
/// connection, keyed by the text).
pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// What a statement did: rows changed, rows returned.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) rows_affected: u64,
    pub(crate) rows: Vec<Row>,
}

impl Outcome {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A connection a [`Query`] runs on: inside a transaction when the caller
/// opened one.
pub(crate) trait Conn: Send {
    /// Runs `query`, keeping at most `max_rows` of the rows it returns.
    fn run(&mut self, query: Query, max_rows: usize) -> BoxFuture<'_, Result<Outcome, DbError>>;

    /// The engine, as OpenTelemetry's `db.system.name` spells it.
    fn system_name(&self) -> &'static str;
}

impl Query {
    /// Binds the next `$n`.
    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Runs a statement, for what it changed.
    pub(crate) async fn execute(self, on: impl Executor<'_>) -> Result<Outcome, DbError> {
        self.run_traced(on, 0).await
    }

    /// The first row, if any.
    pub(crate) async fn fetch_optional(
        self,
        on: impl Executor<'_>,
    ) -> Result<Option<Row>, DbError> {
        Ok(self.run_traced(on, 1).await?.rows.pop())
    }

    /// The first row; [`DbError::NoRow`] when there is none.
    pub(crate) async fn fetch_one(self, on: impl Executor<'_>) -> Result<Row, DbError> {
        self.fetch_optional(on).await?.ok_or(DbError::NoRow)
    }

    /// Every row.
    pub(crate) async fn fetch_all(self, on: impl Executor<'_>) -> Result<Vec<Row>, DbError> {
        Ok(self.run_traced(on, usize::MAX).await?.rows)
    }

    /// Runs the statement in a CLIENT span as OpenTelemetry's database
    /// conventions have it: named `<OPERATION> <table>`, with
    /// `db.system.name`, `db.operation.name` and `db.collection.name`, never
    /// the statement's text or arguments. The span is at DEBUG: exported when
    /// traces are on (the exporter takes this crate's DEBUG spans), free
    /// otherwise.
    async fn run_traced(self, on: impl Executor<'_>, max_rows: usize) -> Result<Outcome, DbError> {
        use tracing::Instrument;
        let span = tracing::debug_span!(
            "db",
            otel.name = tracing::field::Empty,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system.name = on.system_name(),
            db.operation.name = tracing::field::Empty,
            db.collection.name = tracing::field::Empty,
        );
        if span.is_disabled() {
            return on.run(self, max_rows).await;
        }
        let (operation, collection) = summary(&self.sql);
        span.record("db.operation.name", operation);
        match collection {
            Some(table) => {
                span.record("otel.name", format!("{operation} {table}").as_str());
                span.record("db.collection.name", table);
            }
            None => {
                span.record("otel.name", operation);
            }
        }
        let outcome = on.run(self, max_rows).instrument(span.clone()).await;
        if outcome.is_err() {
            span.record("otel.status_code", "error");
        }
        outcome
    }
}

/// A statement's operation (its first keyword, or `WITH` for a CTE) and the
/// table it names first after `FROM`, `INTO` or `UPDATE`, for span names.
/// A statement's text never leaves the process: only these two words.
pub(crate) fn summary(sql: &str) -> (&'static str, Option<&str>) {
    const OPERATIONS: [&str; 8] = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT", "PRAGMA",
    ];
    let mut words = sql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ',' || c == ';')
        .filter(|word| !word.is_empty());
    let first = words.next().unwrap_or_default();
    let operation = OPERATIONS
        .into_iter()
        .find(|op| op.eq_ignore_ascii_case(first))
        .unwrap_or("STATEMENT");
    let mut previous = first;
    for word in words.chain(std::iter::once("")) {
        let names_a_table = ["FROM", "INTO", "UPDATE"]
            .iter()
            .any(|keyword| keyword.eq_ignore_ascii_case(previous));
        if names_a_table
            && !word.is_empty()
            && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return (operation, Some(word));
        }
        previous = word;
    }
    (operation, None)
}

/// Where a query can run: an open connection (a transaction), or a pool that
/// lends one for the statement.
pub(crate) trait Executor<'e>: Send {
    fn run(self, query: Query, max_rows: usize) -> BoxFuture<'e, Result<Outcome, DbError>>;

    /// The engine, as OpenTelemetry's `db.system.name` spells it.
    fn system_name(&self) -> &'static str;
}

impl<'e, 'c: 'e> Executor<'e> for &'e mut (dyn Conn + 'c) {
    fn run(self, query: Query, max_rows: usize) -> BoxFuture<'e, Result<Outcome, DbError>> {
        Conn::run(self, query, max_rows)
    }

    fn system_name(&self) -> &'static str {
        Conn::system_name(&**self)
    }
}

/// sqlx runs PostgreSQL only: SQLite's statements go through rusqlite.
const SQLX_SYSTEM: &str = "postgresql";

impl<'e> Executor<'e> for &'e AnyPool {
    fn run(self, query: Query, max_rows: usize) -> BoxFuture<'e, Result<Outcome, DbError>> {
        Box::pin(async move {
            let mut conn = self.acquire().await?;
            run_sqlx(&mut conn, query, max_rows).await
        })
    }

    fn system_name(&self) -> &'static str {
        SQLX_SYSTEM
    }
}

impl Conn for AnyConnection {
    fn run(&mut self, query: Query, max_rows: usize) -> BoxFuture<'_, Result<Outcome, DbError>> {
        Box::pin(run_sqlx(self, query, max_rows))
    }

    fn system_name(&self) -> &'static str {
        SQLX_SYSTEM
    }
}

pub(crate) async fn run_sqlx(
    conn: &mut AnyConnection,
    query: Query,
    max_rows: usize,
) -> Result<Outcome, DbError> {
    let Query { sql, args } = query;
    let mut statement = match sql {
        Cow::Borrowed(sql) => sqlx::query(sql),
        Cow::Owned(sql) => sqlx::query(AssertSqlSafe(sql)),
    };
    for value in args {
        statement = match value {
            Value::Null(Kind::Int) => statement.bind(None::<i64>),
            Value::Null(Kind::Text) => statement.bind(None::<String>),
            Value::Null(Kind::Bytes) => statement.bind(None::<Vec<u8>>),
            Value::Int(value) => statement.bind(value),
            Value::Text(value) => statement.bind(value),
            Value::Bytes(value) => statement.bind(value),
        };
    }
    let rows = match max_rows {
        0 => {
            let done = statement.execute(&mut *conn).await?;
            return Ok(Outcome {
                rows_affected: done.rows_affected(),
                rows: Vec::new(),
            });
        }
        1 => statement
            .fetch_optional(&mut *conn)
            .await?
            .into_iter()
            .collect(),
        _ => statement.fetch_all(&mut *conn).await?,
    };
    let Some(first) = rows.first() else {
        return Ok(Outcome::default());
    };
    let columns = column_names(first);
    let rows = rows
        .iter()
        .map(|row| row_from_sqlx(row, columns.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Outcome {
        rows_affected: u64::try_from(rows.len()).unwrap_or(u64::MAX),
        rows,
    })
}

fn column_names(row: &AnyRow) -> Arc<[String]> {
    use sqlx::Column as _;
    row.columns()
        .iter()
        .map(|column| column.name().to_owned())
        .collect()
}

fn row_from_sqlx(row: &AnyRow, columns: Arc<[String]>) -> Result<Row, DbError> {
    let mut values = Vec::with_capacity(columns.len());
    for index in 0..columns.len() {
        let raw = row.try_get_raw(index)?;
        let value = if raw.is_null() {
            Value::Null(Kind::Text)
        } else {
            match raw.type_info().kind() {
                AnyTypeInfoKind::Text => Value::Text(row.try_get::<String, _>(index)?),
                AnyTypeInfoKind::Blob => Value::Bytes(row.try_get::<Vec<u8>, _>(index)?),
                AnyTypeInfoKind::Bool => Value::Int(i64::from(row.try_get::<bool, _>(index)?)),
                _ => Value::Int(row.try_get::<i64, _>(index)?),
            }
        };
        values.push(value);
    }
    Ok(Row { columns, values })
}

/// One row of a result, owned.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) columns: Arc<[String]>,
    pub(crate) values: Vec<Value>,
}

impl Row {
    /// The value of `column` (a name, or a 0-based position).
    pub(crate) fn value(&self, column: impl ColumnRef) -> Result<&Value, DbError> {
        column
            .position(&self.columns)
            .and_then(|index| self.values.get(index))
            .ok_or_else(|| DbError::Decode(format!("no column {}", column.describe())))
    }
}

/// A column by name or by position.
pub(crate) trait ColumnRef: Copy {
    fn position(self, columns: &[String]) -> Option<usize>;
    fn describe(self) -> String;
}

impl ColumnRef for &str {
    fn position(self, columns: &[String]) -> Option<usize> {
        columns.iter().position(|name| name == self)
    }
    fn describe(self) -> String {
        self.to_owned()
    }
}

impl ColumnRef for usize {
    fn position(self, _: &[String]) -> Option<usize> {
        Some(self)
    }
    fn describe(self) -> String {
        format!("#{self}")
    }
}

/// A Rust value read from a [`Value`].
pub(crate) trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(value) => Some(*value),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(value) => Some(value.clone()),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Bytes(value) => Some(value.clone()),
            // SQLite hands back what was stored; a text column read as bytes
            // (a rekeyed text value) is its UTF-8.
            Value::Text(value) => Some(value.as_bytes().to_vec()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null(_) => Some(None),
            value => T::from_value(value).map(Some),
        }
    }
}

impl Row {
    /// `column` as a `T`; a type that does not match is a decode error.
    pub(crate) fn get<T: FromValue>(&self, column: impl ColumnRef) -> Result<T, DbError> {
        let value = self.value(column)?;
        T::from_value(value).ok_or_else(|| {
            DbError::Decode(format!(
                "column {} holds {}, not {}",
                column.describe(),
                value.kind_name(),
                std::any::type_name::<T>()
            ))
        })
    }
}

impl Value {
    fn kind_name(&self) -> &'static str {
        match self {
            Self::Null(_) => "NULL",
            Self::Int(_) => "an integer",
            Self::Text(_) => "text",
            Self::Bytes(_) => "bytes",
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_statement_is_summed_up_by_its_operation_and_first_table_only() {
        for (sql, operation, table) in [
            (
                "SELECT value FROM session_epoch WHERE id = 1",
                "SELECT",
                Some("session_epoch"),
            ),
            (
                "INSERT INTO used_codes (code_hash) VALUES ($1)",
                "INSERT",
                Some("used_codes"),
            ),
            (
                "  update users SET phone_hash = $1 WHERE user_id = $2",
                "UPDATE",
                Some("users"),
            ),
            (
                "DELETE FROM identities WHERE app_id = $1",
                "DELETE",
                Some("identities"),
            ),
            (
                "WITH login AS (UPDATE identities SET x = 1) SELECT 1",
                "WITH",
                Some("identities"),
            ),
            ("SELECT 1", "SELECT", None),
            ("VACUUM", "STATEMENT", None),
            ("", "STATEMENT", None),
        ] {
            assert_eq!(summary(sql), (operation, table), "{sql}");
        }
        // A value in the text is never taken for a table.
        assert_eq!(summary("SELECT * FROM 'secret'"), ("SELECT", None));
    }

    use super::*;

    #[test]
    fn a_none_binds_as_a_null_of_its_type() {
        assert_eq!(Value::from(None::<i64>), Value::Null(Kind::Int));
        assert_eq!(Value::from(None::<String>), Value::Null(Kind::Text));
        assert_eq!(Value::from(None::<Vec<u8>>), Value::Null(Kind::Bytes));
        assert_eq!(Value::from(Some(3_i64)), Value::Int(3));
    }

    #[test]
    fn rows_read_by_name_or_position_and_refuse_the_wrong_type() {
        let row = Row {
            columns: vec!["a".to_owned(), "b".to_owned()].into(),
            values: vec![Value::Int(7), Value::Null(Kind::Text)],
        };
        assert_eq!(row.get::<i64>("a").ok(), Some(7));
        assert_eq!(row.get::<i64>(0).ok(), Some(7));
        assert_eq!(row.get::<Option<String>>("b").ok(), Some(None));
        assert!(row.get::<String>("a").is_err());
        assert!(row.get::<i64>("c").is_err());
    }
}

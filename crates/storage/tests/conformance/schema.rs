//! The two engines' migrations build the same schema: the same tables, the
//! same columns with the same nullability, the same unique keys and the same
//! named indexes over the same columns. Types differ by engine on purpose
//! (`INTEGER`/`BIGINT`, `BLOB`/`BYTEA`) and are not compared.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::support::TestDb;

/// What is compared of one table.
#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// Column name → NOT NULL.
    columns: BTreeMap<String, bool>,
    /// The column lists of the primary key and every unique constraint or index.
    unique: BTreeSet<Vec<String>>,
    /// Indexes created by name (not those behind a constraint) → their columns.
    indexes: BTreeMap<String, Vec<String>>,
}

type Schema = BTreeMap<String, Table>;

async fn sqlite_schema(url: &str) -> Schema {
    let mut conn = SqliteConnection::connect(url).await.unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for (table,) in tables {
        let mut entry = Table::default();
        let columns: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT name, \"notnull\", pk FROM pragma_table_info(?)")
                .bind(&table)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let mut primary_key: Vec<(i64, String)> = Vec::new();
        for (name, not_null, pk) in columns {
            // SQLite lets a non-INTEGER primary key column hold NULL unless it
            // says NOT NULL; every writer here gives it a value, as PostgreSQL
            // demands, so a key column counts as NOT NULL.
            entry.columns.insert(name.clone(), not_null != 0 || pk > 0);
            if pk > 0 {
                primary_key.push((pk, name));
            }
        }
        primary_key.sort();
        if !primary_key.is_empty() {
            entry
                .unique
                .insert(primary_key.into_iter().map(|(_, name)| name).collect());
        }
        let indexes: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT name, \"unique\", origin FROM pragma_index_list(?)")
                .bind(&table)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        for (index, unique, origin) in indexes {
            let columns: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            let columns: Vec<String> = columns.into_iter().map(|(name,)| name).collect();
            if unique != 0 {
                entry.unique.insert(columns.clone());
            }
            if origin == "c" {
                entry.indexes.insert(index, columns);
            }
        }
        schema.insert(table, entry);
    }
    conn.close().await.unwrap();
    schema
}

async fn postgres_schema(url: &str) -> Schema {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' \
         AND table_name NOT LIKE '\\_sqlx%' ORDER BY table_name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for (table,) in tables {
        let mut entry = Table::default();
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, is_nullable::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for (name, nullable) in columns {
            entry.columns.insert(name, nullable == "NO");
        }
        // Every index with its columns in order, whether it backs a
        // constraint, and whether it is unique.
        let indexes: Vec<(String, bool, bool, Vec<String>)> = sqlx::query_as(
            "SELECT i.relname::text, x.indisunique, \
                    EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid), \
                    ARRAY(SELECT a.attname::text \
                          FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum \
                          ORDER BY k.ord) \
             FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_class t ON t.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = 'public' AND t.relname = $1",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for (index, unique, backs_constraint, columns) in indexes {
            if unique {
                entry.unique.insert(columns.clone());
            }
            if !backs_constraint {
                entry.indexes.insert(index, columns);
            }
        }
        schema.insert(table, entry);
    }
    conn.close().await.unwrap();
    schema
}

/// Every difference, one line each, naming the table and what differs.
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut found = Vec::new();
    let names: BTreeSet<&String> = sqlite.keys().chain(postgres.keys()).collect();
    for name in names {
        match (sqlite.get(name), postgres.get(name)) {
            (Some(_), None) => found.push(format!("{name}: only on SQLite")),
            (None, Some(_)) => found.push(format!("{name}: only on PostgreSQL")),
            (Some(s), Some(p)) => {
                if s.columns != p.columns {
                    found.push(format!(
                        "{name}: columns (name, NOT NULL) differ: SQLite {:?}, PostgreSQL {:?}",
                        s.columns, p.columns
                    ));
                }
                if s.unique != p.unique {
                    found.push(format!(
                        "{name}: unique keys differ: SQLite {:?}, PostgreSQL {:?}",
                        s.unique, p.unique
                    ));
                }
                if s.indexes != p.indexes {
                    found.push(format!(
                        "{name}: indexes differ: SQLite {:?}, PostgreSQL {:?}",
                        s.indexes, p.indexes
                    ));
                }
            }
            (None, None) => {}
        }
    }
    found
}

#[tokio::test]
async fn both_engines_migrate_to_the_same_tables_columns_keys_and_indexes() {
    let sqlite = TestDb::sqlite().await.unwrap();
    let Some(postgres) = TestDb::postgres().await else {
        return;
    };
    let sqlite = sqlite_schema(&sqlite.config.url).await;
    let postgres = postgres_schema(&postgres.config.url).await;
    assert!(
        sqlite.len() > 5
            && sqlite.values().any(|table| !table.indexes.is_empty())
            && sqlite
                .values()
                .any(|table| table.unique.iter().any(|key| key.len() > 1)),
        "the SQLite schema was read (tables, named indexes, composite keys): {:?}",
        sqlite.keys()
    );
    let found = differences(&sqlite, &postgres);
    assert!(
        found.is_empty(),
        "the migrations disagree:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_column_missing_on_one_engine_is_reported() {
    let table = |columns: &[(&str, bool)]| Table {
        columns: columns.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect(),
        ..Table::default()
    };
    let sqlite = Schema::from([("users".to_owned(), table(&[("id", true), ("nick", false)]))]);
    let postgres = Schema::from([("users".to_owned(), table(&[("id", true)]))]);
    let found = differences(&sqlite, &postgres);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("users: columns"), "{found:?}");
    assert!(differences(&sqlite, &sqlite).is_empty());
}

/// The columns of `users` a merge handles by name (merge.rs): keys and
/// times it keeps, the external id it moves, the phone it re-encrypts. Every
/// other column must be a profile column, which a merge copies as a list.
const USER_COLUMNS_MERGED_BY_NAME: [&str; 8] = [
    "user_id",
    "external_id",
    "created_at",
    "updated_at",
    "profile_updated_at",
    "phone_ciphertext",
    "phone_hash",
    "phone_updated_at",
];

#[tokio::test]
async fn every_column_of_users_is_one_a_merge_carries_over() {
    let db = TestDb::sqlite().await.unwrap();
    let schema = sqlite_schema(&db.config.url).await;
    let columns: BTreeSet<&str> = schema["users"].columns.keys().map(String::as_str).collect();
    let handled: BTreeSet<&str> = storage::USER_PROFILE_COLUMNS
        .split(", ")
        .chain(USER_COLUMNS_MERGED_BY_NAME)
        .collect();
    assert_eq!(
        columns, handled,
        "a column of users is neither in storage's profile column list (columns.rs) nor handled \
         by name in merge.rs: a merge would drop it"
    );
}

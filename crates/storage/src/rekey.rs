//! Key rotation to the end: re-encrypting every value at rest under the
//! current key (`wechat-identity rekey`), and counting the values each key id
//! still protects (`wechat-identity check-config`), so a retired key that
//! protects none can leave the config.
//!
//! Every encrypted column is listed once, in [`COLUMNS`], with its primary key
//! and the associated data that binds a value to its row (the same functions
//! the writers use, so the two cannot drift apart). A run walks each column in
//! batches ordered by primary key (keyset pagination, no offsets), one
//! transaction per batch. A value already under the current key is skipped
//! without being decrypted, so a run that stopped half-way resumes by running
//! again. Each value is replaced only while it is still the value read
//! (`... AND column = $old`): a server writing the row meanwhile wins, and its
//! value needs no rekey or is found by the next run.

use std::collections::BTreeMap;

use crate::sql::{Conn, Query, Row, query};
use wechat_types::{AppId, OpenId};

use crate::credentials::credential_aad;
use crate::crypto::key_id_of;
use crate::error::DbError;
use crate::error::{DbFailure, StorageError};
use crate::signing_keys::private_key_aad;
use crate::token_cache::token_aad;
use crate::users::phone_aad;
use crate::{Storage, key_material_aad};

/// One encrypted column: where it is, how its rows are named, and what binds
/// a value to its row.
struct EncryptedColumn {
    table: &'static str,
    column: &'static str,
    /// The primary key, in order.
    key_columns: &'static [&'static str],
    /// How the key parts are stored.
    key_kind: KeyKind,
    /// The associated data of the value in the row named by the key parts.
    aad: fn(&[String]) -> Option<String>,
}

/// How a column's primary key is stored; the walk carries every part as a
/// string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// TEXT, carried as itself.
    Text,
    /// Bytes (a hash), carried as URL-safe base64 without padding.
    Bytes,
}

impl KeyKind {
    fn read(self, row: &Row, index: usize) -> Result<String, DbError> {
        use base64::Engine as _;
        match self {
            KeyKind::Text => row.get::<String>(index),
            KeyKind::Bytes => row
                .get::<Vec<u8>>(index)
                .map(|bytes| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)),
        }
    }

    fn bind(self, query: Query, part: &str) -> Query {
        use base64::Engine as _;
        match self {
            KeyKind::Text => query.bind(part.to_owned()),
            KeyKind::Bytes => query.bind(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap_or_default(),
            ),
        }
    }
}

impl EncryptedColumn {
    fn name(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }
}

/// Every encrypted column of the schema. A migration that adds one adds it
/// here too, or `rekey` leaves its values under the old key and
/// `check-config` does not count them.
static COLUMNS: [EncryptedColumn; 8] = [
    EncryptedColumn {
        table: "key_material",
        column: "ciphertext",
        key_columns: &["name"],
        key_kind: KeyKind::Text,
        aad: key_material_row_aad,
    },
    EncryptedColumn {
        table: "users",
        column: "phone_ciphertext",
        key_columns: &["user_id"],
        key_kind: KeyKind::Text,
        aad: phone_row_aad,
    },
    EncryptedColumn {
        table: "wechat_credentials",
        column: "session_key",
        key_columns: &["app_id", "openid"],
        key_kind: KeyKind::Text,
        aad: session_key_row_aad,
    },
    EncryptedColumn {
        table: "wechat_credentials",
        column: "web_access_token",
        key_columns: &["app_id", "openid"],
        key_kind: KeyKind::Text,
        aad: web_access_row_aad,
    },
    EncryptedColumn {
        table: "wechat_credentials",
        column: "web_refresh_token",
        key_columns: &["app_id", "openid"],
        key_kind: KeyKind::Text,
        aad: web_refresh_row_aad,
    },
    EncryptedColumn {
        table: "app_tokens",
        column: "token",
        key_columns: &["app_id"],
        key_kind: KeyKind::Text,
        aad: app_token_row_aad,
    },
    EncryptedColumn {
        table: "signing_keys",
        column: "private_key",
        key_columns: &["kid"],
        key_kind: KeyKind::Text,
        aad: signing_key_row_aad,
    },
    EncryptedColumn {
        table: "web_logins",
        column: "ticket_ciphertext",
        key_columns: &["state_hash"],
        key_kind: KeyKind::Bytes,
        aad: web_login_ticket_row_aad,
    },
];

fn key_material_row_aad(key: &[String]) -> Option<String> {
    Some(key_material_aad(key.first()?))
}

fn phone_row_aad(key: &[String]) -> Option<String> {
    Some(phone_aad(&key.first()?.parse().ok()?))
}

fn credential_row_aad(column: &str, key: &[String]) -> Option<String> {
    let app_id = AppId::new(key.first()?.as_str()).ok()?;
    let openid = OpenId::new(key.get(1)?.as_str()).ok()?;
    Some(credential_aad(column, &app_id, &openid))
}

fn session_key_row_aad(key: &[String]) -> Option<String> {
    credential_row_aad("session_key", key)
}

fn web_access_row_aad(key: &[String]) -> Option<String> {
    credential_row_aad("web_access_token", key)
}

fn web_refresh_row_aad(key: &[String]) -> Option<String> {
    credential_row_aad("web_refresh_token", key)
}

fn app_token_row_aad(key: &[String]) -> Option<String> {
    Some(token_aad(&AppId::new(key.first()?.as_str()).ok()?))
}

fn signing_key_row_aad(key: &[String]) -> Option<String> {
    Some(private_key_aad(key.first()?))
}

fn web_login_ticket_row_aad(key: &[String]) -> Option<String> {
    Some(crate::web_logins::ticket_aad_of(key.first()?))
}

/// How a rekey run proceeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekeyOptions {
    /// Rows read (and at most rewritten) per transaction. Default 500.
    pub batch_size: u32,
    /// Stop after this many batches (all columns together), leaving the rest
    /// for the next run. Default: no limit.
    pub max_batches: Option<u64>,
}

impl Default for RekeyOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            max_batches: None,
        }
    }
}

/// What a run did to one column (or to the Redis token cache) so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RekeyProgress {
    /// `table.column`, or `redis` for the Redis token cache.
    pub column: String,
    /// Batches done.
    pub batches: u64,
    /// Values read.
    pub scanned: u64,
    /// Values now under the current key that were not before.
    pub rekeyed: u64,
    /// Values a server rewrote between the read and the update; left to it.
    pub changed_meanwhile: u64,
    /// Values no configured key decrypts (an unknown key id, a wrong key, a
    /// damaged value); left as they are and logged with their column.
    pub unreadable: u64,
}

/// What a rekey run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Per column, in schema order; a stopped run lists the columns it reached.
    pub columns: Vec<RekeyProgress>,
    /// Every column was walked to its end (false when `max_batches` stopped it).
    pub finished: bool,
}

impl RekeyReport {
    /// Values re-encrypted, all columns together.
    pub fn rekeyed(&self) -> u64 {
        self.columns.iter().map(|c| c.rekeyed).sum()
    }

    /// Values no configured key decrypts, all columns together.
    pub fn unreadable(&self) -> u64 {
        self.columns.iter().map(|c| c.unreadable).sum()
    }
}

/// How many stored values each key id protects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUsage {
    /// Values per key id (ids as stored, whether configured or not).
    pub by_key: BTreeMap<String, u64>,
    /// Values too short to carry a key id at all.
    pub malformed: u64,
}

impl KeyUsage {
    /// Values under `key_id`.
    pub fn count(&self, key_id: &str) -> u64 {
        self.by_key.get(key_id).copied().unwrap_or(0)
    }

    /// Counts one stored value.
    pub(crate) fn add_value(&mut self, stored: &[u8]) {
        match key_id_of(stored) {
            Some(id) => *self.by_key.entry(id).or_insert(0) += 1,
            None => self.malformed += 1,
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &KeyUsage) {
        for (id, count) in &other.by_key {
            *self.by_key.entry(id.clone()).or_insert(0) += count;
        }
        self.malformed += other.malformed;
    }
}

/// One batch's outcome.
#[derive(Debug, Default)]
struct Batch {
    scanned: u64,
    rekeyed: u64,
    changed_meanwhile: u64,
    unreadable: u64,
    /// The key of the last row read, where the next batch starts.
    last: Option<Vec<String>>,
}

/// A page of `(primary key parts, stored value)` after `after`, in key order.
async fn fetch_page(
    conn: &mut dyn Conn,
    column: &EncryptedColumn,
    after: Option<&[String]>,
    limit: u32,
) -> Result<Vec<(Vec<String>, Vec<u8>)>, DbError> {
    let keys = column.key_columns.join(", ");
    let (table, value) = (column.table, column.column);
    let mut sql = format!("SELECT {keys}, {value} FROM {table} WHERE {value} IS NOT NULL");
    if after.is_some() {
        let params: Vec<String> = (1..=column.key_columns.len())
            .map(|n| format!("${n}"))
            .collect();
        sql.push_str(&format!(" AND ({keys}) > ({})", params.join(", ")));
    }
    sql.push_str(&format!(" ORDER BY {keys} LIMIT {limit}"));
    // Identifiers come from COLUMNS and the limit is a number: nothing of a caller's is spliced.
    let mut query = query(sql);
    for part in after.unwrap_or_default() {
        query = column.key_kind.bind(query, part);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let width = column.key_columns.len();
    rows.iter()
        .map(|row| {
            let key = (0..width)
                .map(|index| column.key_kind.read(row, index))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((key, row.get::<Vec<u8>>(width)?))
        })
        .collect()
}

/// Replaces `old` by `fresh` in the row named by `key`, only if `old` is still
/// there; whether it was.
async fn replace_value(
    conn: &mut dyn Conn,
    column: &EncryptedColumn,
    key: &[String],
    old: &[u8],
    fresh: Vec<u8>,
) -> Result<bool, DbError> {
    let conditions: Vec<String> = column
        .key_columns
        .iter()
        .enumerate()
        .map(|(index, name)| format!("{name} = ${}", index + 2))
        .collect();
    let sql = format!(
        "UPDATE {table} SET {value} = $1 WHERE {conditions} AND {value} = ${old_param}",
        table = column.table,
        value = column.column,
        conditions = conditions.join(" AND "),
        old_param = column.key_columns.len() + 2,
    );
    let mut query = query(sql).bind(fresh);
    for part in key {
        query = column.key_kind.bind(query, part);
    }
    let done = query.bind(old.to_vec()).execute(&mut *conn).await?;
    Ok(done.rows_affected() > 0)
}

impl Storage {
    /// Re-encrypts every value at rest that is not under the current key, in
    /// batches of `options.batch_size`, one transaction each, calling
    /// `progress` after every batch. Values no key decrypts are counted and
    /// left alone; the run goes on.
    ///
    /// # Errors
    /// The database failed; the batches committed before stay done, and the
    /// next run goes on from there.
    pub async fn rekey(
        &self,
        options: &RekeyOptions,
        mut progress: impl FnMut(&RekeyProgress) + Send,
    ) -> Result<RekeyReport, StorageError> {
        let limit = options.batch_size.max(1);
        let mut batches_left = options.max_batches;
        let mut report = RekeyReport {
            columns: Vec::new(),
            finished: true,
        };
        'columns: for (index, column) in COLUMNS.iter().enumerate() {
            let mut done = RekeyProgress {
                column: column.name(),
                ..RekeyProgress::default()
            };
            let mut after: Option<Vec<String>> = None;
            loop {
                if batches_left == Some(0) {
                    report.finished = false;
                    report.columns.push(done);
                    break 'columns;
                }
                let batch = self
                    .write(
                        (index, after.clone()),
                        move |storage, conn, (index, after)| {
                            Box::pin(storage.rekey_batch(
                                conn,
                                &COLUMNS[*index],
                                after.as_deref(),
                                limit,
                            ))
                        },
                    )
                    .await?;
                batches_left = batches_left.map(|left| left.saturating_sub(1));
                done.batches += 1;
                done.scanned += batch.scanned;
                done.rekeyed += batch.rekeyed;
                done.changed_meanwhile += batch.changed_meanwhile;
                done.unreadable += batch.unreadable;
                progress(&done);
                match batch.last {
                    Some(last) if batch.scanned == u64::from(limit) => after = Some(last),
                    _ => break,
                }
            }
            report.columns.push(done);
        }
        Ok(report)
    }

    async fn rekey_batch(
        &self,
        conn: &mut dyn Conn,
        column: &EncryptedColumn,
        after: Option<&[String]>,
        limit: u32,
    ) -> Result<Batch, DbFailure> {
        let rows = fetch_page(conn, column, after, limit).await?;
        let keys = self.keys();
        let mut batch = Batch {
            scanned: rows.len() as u64,
            last: rows.last().map(|(key, _)| key.clone()),
            ..Batch::default()
        };
        for (key, sealed) in &rows {
            let key_id = key_id_of(sealed);
            if key_id.as_deref() == Some(keys.current_key_id()) {
                continue;
            }
            let plain = (column.aad)(key)
                .ok_or_else(|| StorageError::Keys("a row key does not parse".to_owned()))
                .and_then(|aad| Ok((keys.decrypt(&aad, sealed)?, aad)));
            let (plain, aad) = match plain {
                Ok(opened) => opened,
                Err(error) => {
                    // Neither the value nor the row's key goes to the log.
                    tracing::warn!(
                        column = %column.name(),
                        key_id = key_id.as_deref().unwrap_or("(none)"),
                        %error,
                        "a value does not decrypt with the configured keys; left as it is"
                    );
                    batch.unreadable += 1;
                    continue;
                }
            };
            let fresh = keys.encrypt(&aad, &plain)?;
            if replace_value(conn, column, key, sealed, fresh).await? {
                batch.rekeyed += 1;
            } else {
                batch.changed_meanwhile += 1;
            }
        }
        Ok(batch)
    }

    /// Counts the values at rest under each key id, reading `batch_size` rows
    /// at a time; nothing is decrypted or written.
    ///
    /// # Errors
    /// The database could not be read.
    pub async fn key_usage(&self, batch_size: u32) -> Result<KeyUsage, StorageError> {
        let limit = batch_size.max(1);
        let mut usage = KeyUsage::default();
        let mut conn = self.reader().acquire().await?;
        for column in &COLUMNS {
            let mut after: Option<Vec<String>> = None;
            loop {
                let rows = fetch_page(&mut conn, column, after.as_deref(), limit).await?;
                for (_, sealed) in &rows {
                    usage.add_value(sealed);
                }
                if rows.len() < limit as usize {
                    break;
                }
                after = rows.last().map(|(key, _)| key.clone());
            }
        }
        Ok(usage)
    }
}

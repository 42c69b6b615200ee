//! The session epoch: a counter bumped in the same transaction as every change
//! to a session's standing (revoked, or moved to another user by a merge).
//!
//! A replica that caches session state tags each entry with the epoch it read
//! *before* reading the session, and trusts the entry only while the epoch it
//! last polled is still that value: any change committed after the session
//! read moves the database's epoch, so the next poll drops the entry. Changes
//! this process commits also bump an in-process counter right after commit, so
//! the replica that revoked a session never answers from a stale entry.
//!
//! [`bump`] is the one thing a session-changing write calls: `Storage::write` runs
//! every transaction body under `changes::tracking` and moves the in-process
//! counter after a commit whose body bumped.

use std::sync::atomic::Ordering;

use crate::error::DbError;
use crate::sql::{Conn, query};

use crate::Storage;
use crate::changes;
use crate::db::get_i64;
use crate::error::StorageError;

/// Bumps the database's epoch; called inside the changing transaction (a
/// `Storage::write` body), last, after the session rows: every writer takes the
/// row locks in one order and holds the epoch's only briefly.
pub(crate) async fn bump(conn: &mut dyn Conn) -> Result<(), DbError> {
    query("UPDATE session_epoch SET value = value + 1 WHERE id = 1")
        .execute(conn)
        .await?;
    changes::note(|changes| changes.sessions = true);
    Ok(())
}

impl Storage {
    /// The database's session epoch: it moves whenever any replica revokes a
    /// session or moves one to another user.
    ///
    /// # Errors
    /// Database errors.
    pub async fn session_epoch(&self) -> Result<i64, StorageError> {
        let row = query("SELECT value FROM session_epoch WHERE id = 1")
            .fetch_one(self.reader())
            .await?;
        get_i64(&row, "value")
    }

    /// How many session-changing transactions this process has committed;
    /// read it before reading session state, like [`Storage::session_epoch`].
    pub fn local_session_changes(&self) -> u64 {
        self.inner.local_session_changes.load(Ordering::Acquire)
    }
}

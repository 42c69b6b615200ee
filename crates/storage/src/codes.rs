//! Used login codes: a replayed code is refused without asking WeChat.

use std::time::{Duration, SystemTime};

use crate::sql::{Conn, query};
use wechat_types::AppId;

use crate::Storage;
use crate::db::{millis, millis_after};
use crate::error::{DbFailure, StorageError};
use crate::types::CodeClaim;

/// WeChat's codes live five minutes; so do our records of them.
const CODE_TTL: Duration = Duration::from_secs(5 * 60);

impl Storage {
    async fn code_hash(&self, app_id: &AppId, code: &str) -> Result<Vec<u8>, StorageError> {
        Ok(self
            .lookup_key()
            .await?
            .hash("code", &[app_id.as_str(), code]))
    }

    /// Claims a code before exchanging it. The first claim wins (`Fresh`); an
    /// expired record counts as absent.
    ///
    /// # Errors
    /// Database errors.
    pub async fn claim_code(
        &self,
        app_id: &AppId,
        code: &str,
        at: SystemTime,
    ) -> Result<CodeClaim, StorageError> {
        let input = (self.code_hash(app_id, code).await?, app_id.to_string());
        // Each statement stands alone: a claim is one insert-or-take-over.
        self.write_autocommit(input, move |_, conn, (hash, app_id)| {
            Box::pin(claim_in_tx(conn, hash, app_id, at))
        })
        .await
    }

    /// The exchange of a claimed code failed ambiguously (WeChat may have
    /// consumed it): later claims answer `LostToFailedAttempt`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn mark_code_ambiguous(
        &self,
        app_id: &AppId,
        code: &str,
    ) -> Result<(), StorageError> {
        let hash = self.code_hash(app_id, code).await?;
        self.write_statement(
            query("UPDATE used_codes SET ambiguous = 1 WHERE code_hash = $1").bind(hash),
        )
        .await?;
        Ok(())
    }

    /// The exchange failed before WeChat saw the code: forget the claim so a
    /// retry is `Fresh`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn release_code(&self, app_id: &AppId, code: &str) -> Result<(), StorageError> {
        let hash = self.code_hash(app_id, code).await?;
        self.write_statement(query("DELETE FROM used_codes WHERE code_hash = $1").bind(hash))
            .await?;
        Ok(())
    }
}

async fn claim_in_tx(
    conn: &mut dyn Conn,
    hash: &[u8],
    app_id: &str,
    at: SystemTime,
) -> Result<CodeClaim, DbFailure> {
    // Insert, or take over an expired record; a live record is left alone
    // and nothing is returned.
    let claimed = query(
        "INSERT INTO used_codes (code_hash, app_id, claimed_at, expires_at, ambiguous) \
         VALUES ($1, $2, $3, $4, 0) ON CONFLICT (code_hash) DO UPDATE SET \
         claimed_at = excluded.claimed_at, expires_at = excluded.expires_at, ambiguous = 0 \
         WHERE used_codes.expires_at <= excluded.claimed_at RETURNING claimed_at",
    )
    .bind(hash.to_vec())
    .bind(app_id.to_owned())
    .bind(millis(at))
    .bind(millis_after(at, CODE_TTL))
    .fetch_optional(&mut *conn)
    .await?;
    if claimed.is_some() {
        return Ok(CodeClaim::Fresh);
    }
    let row = query("SELECT ambiguous FROM used_codes WHERE code_hash = $1")
        .bind(hash.to_vec())
        .fetch_optional(&mut *conn)
        .await?;
    let ambiguous = match row {
        Some(row) => row.get::<i64>("ambiguous")? != 0,
        None => false,
    };
    Ok(if ambiguous {
        CodeClaim::LostToFailedAttempt
    } else {
        CodeClaim::AlreadyUsed
    })
}

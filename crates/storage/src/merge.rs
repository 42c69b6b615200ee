//! Merging two users that a unionid proves to be one person.

use std::time::SystemTime;

use crate::sql::{Conn, query};

use crate::columns::user_profile_columns;
use crate::db::{get_opt_bytes, get_opt_i64, get_opt_string, locking_sql, millis};
use crate::error::{DbFailure, Entity, StorageError};
use crate::profile_epoch::touched;
use crate::types::{LoginOutcome, MergeRecord, UserId};
use crate::{Storage, audit};

/// The actor recorded for merges that logins cause.
const LOGIN_ACTOR: &str = "login";

impl Storage {
    /// Folds `absorbed` into `kept`: every identity, session and unionid moves,
    /// the external id moves if `kept` has none, the newer profile and phone
    /// win, and `absorbed` is deleted. Refused (and audited) when both users
    /// carry different external ids: the caller's systems say they are two.
    pub(crate) async fn merge_users(
        &self,
        conn: &mut dyn Conn,
        kept: &UserId,
        absorbed: &UserId,
        at: SystemTime,
    ) -> Result<LoginOutcome, DbFailure> {
        let mut users = Vec::with_capacity(2);
        for user_id in [kept, absorbed] {
            let row = query(locking_sql!(
                self.engine(),
                "SELECT external_id, profile_updated_at, phone_ciphertext, phone_updated_at \
                 FROM users WHERE user_id = $1"
            ))
            .bind(user_id.to_string())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StorageError::NotFound(Entity::User))?;
            users.push(row);
        }
        let (kept_row, absorbed_row) = (&users[0], &users[1]);
        let kept_external = get_opt_string(kept_row, "external_id")?;
        let absorbed_external = get_opt_string(absorbed_row, "external_id")?;
        if let (Some(a), Some(b)) = (&kept_external, &absorbed_external)
            && a != b
        {
            audit::record(
                conn,
                at,
                LOGIN_ACTOR,
                "merge_refused",
                Some(absorbed),
                Some(kept),
                serde_json::json!({ "reason": "users hold different external ids" }),
            )
            .await?;
            return Ok(LoginOutcome {
                user_id: *absorbed,
                is_new_user: false,
                merged: None,
            });
        }

        touched(kept);
        touched(absorbed);
        let moved = query("UPDATE identities SET user_id = $1 WHERE user_id = $2")
            .bind(kept.to_string())
            .bind(absorbed.to_string())
            .execute(&mut *conn)
            .await?
            .rows_affected();
        for statement in [
            "UPDATE sessions SET user_id = $1 WHERE user_id = $2",
            "UPDATE unionids SET user_id = $1 WHERE user_id = $2",
        ] {
            query(statement)
                .bind(kept.to_string())
                .bind(absorbed.to_string())
                .execute(&mut *conn)
                .await?;
        }
        if kept_external.is_none()
            && let Some(external_id) = &absorbed_external
        {
            query("UPDATE users SET external_id = NULL WHERE user_id = $1")
                .bind(absorbed.to_string())
                .execute(&mut *conn)
                .await?;
            query("UPDATE users SET external_id = $1 WHERE user_id = $2")
                .bind(external_id.clone())
                .bind(kept.to_string())
                .execute(&mut *conn)
                .await?;
        }
        let kept_profile_at = get_opt_i64(kept_row, "profile_updated_at")?;
        let absorbed_profile_at = get_opt_i64(absorbed_row, "profile_updated_at")?;
        if absorbed_profile_at > kept_profile_at {
            // Copied in the database, column by column of the one list, so a
            // profile column added later is carried over without a change here.
            query(concat!(
                "UPDATE users SET (",
                user_profile_columns!(),
                ", profile_updated_at) = (SELECT ",
                user_profile_columns!(),
                ", profile_updated_at FROM users WHERE user_id = $1) WHERE user_id = $2",
            ))
            .bind(absorbed.to_string())
            .bind(kept.to_string())
            .execute(&mut *conn)
            .await?;
        }
        let absorbed_phone = get_opt_bytes(absorbed_row, "phone_ciphertext")?;
        let kept_phone_at = get_opt_i64(kept_row, "phone_updated_at")?;
        let absorbed_phone_at = get_opt_i64(absorbed_row, "phone_updated_at")?;
        if let Some(sealed) = absorbed_phone
            && absorbed_phone_at > kept_phone_at
        {
            // The ciphertext is bound to its user: re-encrypt it for the kept one.
            let phone = self.open_phone(absorbed, &sealed)?;
            let (resealed, hash) = self.seal_phone(kept, &phone).await?;
            query(
                "UPDATE users SET phone_ciphertext = $1, phone_hash = $2, phone_updated_at = $3 \
                 WHERE user_id = $4",
            )
            .bind(resealed)
            .bind(hash)
            .bind(absorbed_phone_at)
            .bind(kept.to_string())
            .execute(&mut *conn)
            .await?;
        }
        query("UPDATE users SET updated_at = $1 WHERE user_id = $2")
            .bind(millis(at))
            .bind(kept.to_string())
            .execute(&mut *conn)
            .await?;
        query("DELETE FROM users WHERE user_id = $1")
            .bind(absorbed.to_string())
            .execute(&mut *conn)
            .await?;
        audit::record(
            conn,
            at,
            LOGIN_ACTOR,
            "merge",
            Some(kept),
            Some(absorbed),
            serde_json::json!({ "moved_identities": moved }),
        )
        .await?;
        // The absorbed user's sessions now answer for the kept user.
        crate::session_epoch::bump(conn).await?;
        tracing::info!(kept = %kept, merged = %absorbed, "merged two users proven one person by unionid");
        Ok(LoginOutcome {
            user_id: *kept,
            is_new_user: false,
            merged: Some(MergeRecord {
                kept_user_id: *kept,
                merged_user_id: *absorbed,
            }),
        })
    }
}

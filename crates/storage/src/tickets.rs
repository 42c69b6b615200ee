//! Login tickets: single-use, five-minute bearer handles on an identity.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use sqlx::AnyConnection;

use crate::Storage;
use crate::crypto::{random_token, token_hash};
use crate::db::{get_app_id, get_i64, get_openid, millis, millis_after};
use crate::error::StorageError;
use crate::types::{IdentityRef, Ticket};

const TICKET_TTL: Duration = Duration::from_secs(5 * 60);

impl Storage {
    /// A new ticket for an identity, valid five minutes; only its hash is
    /// stored. `is_new_user` says whether the login behind it created the user.
    ///
    /// # Errors
    /// `NotFound("identity")` for an unknown identity.
    pub async fn create_ticket(
        &self,
        identity: &IdentityRef,
        is_new_user: bool,
        at: SystemTime,
    ) -> Result<SecretString, StorageError> {
        let ticket = random_token();
        let mut conn = self.writer().acquire().await?;
        insert_ticket(&mut conn, &ticket, identity, is_new_user, at).await?;
        Ok(ticket)
    }

    /// Uses a ticket once. Unknown, expired and used tickets all answer `None`,
    /// so the answer tells an attacker nothing.
    ///
    /// # Errors
    /// Database errors.
    pub async fn consume_ticket(
        &self,
        ticket: &str,
        at: SystemTime,
    ) -> Result<Option<Ticket>, StorageError> {
        let row = sqlx::query(
            "UPDATE login_tickets SET used_at = $1 \
             WHERE ticket_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING app_id, openid, is_new_user",
        )
        .bind(millis(at))
        .bind(token_hash(ticket))
        .fetch_optional(self.writer())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Ticket {
            identity: IdentityRef {
                app_id: get_app_id(&row, "app_id")?,
                openid: get_openid(&row, "openid")?,
            },
            is_new_user: get_i64(&row, "is_new_user")? != 0,
        }))
    }

    /// Gives back a ticket that [`Storage::consume_ticket`] took for a call
    /// that then failed without effect, so that it may be presented again
    /// while it has not expired.
    ///
    /// # Errors
    /// Database errors.
    pub async fn release_ticket(&self, ticket: &str) -> Result<(), StorageError> {
        sqlx::query("UPDATE login_tickets SET used_at = NULL WHERE ticket_hash = $1")
            .bind(token_hash(ticket))
            .execute(self.writer())
            .await?;
        Ok(())
    }
}

/// Inserts `ticket` (its hash) for `identity`, valid five minutes.
///
/// # Errors
/// `NotFound("identity")` for an unknown identity.
pub(crate) async fn insert_ticket(
    conn: &mut AnyConnection,
    ticket: &SecretString,
    identity: &IdentityRef,
    is_new_user: bool,
    at: SystemTime,
) -> Result<(), StorageError> {
    let inserted = sqlx::query(
        "INSERT INTO login_tickets (ticket_hash, app_id, openid, created_at, expires_at, is_new_user) \
         SELECT $1, app_id, openid, $4, $5, $6 FROM identities WHERE app_id = $2 AND openid = $3",
    )
    .bind(token_hash(ticket.expose_secret()))
    .bind(identity.app_id.to_string())
    .bind(identity.openid.to_string())
    .bind(millis(at))
    .bind(millis_after(at, TICKET_TTL))
    .bind(i64::from(is_new_user))
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StorageError::NotFound { what: "identity" });
    }
    Ok(())
}

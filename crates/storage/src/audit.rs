//! The audit trail: who bound, unbound, merged or revoked what, and when.

use std::time::SystemTime;

use crate::sql::{Conn, query};

use crate::Storage;
use crate::db::{corrupt, get_opt_string, get_string, get_time, millis};
use crate::error::StorageError;
use crate::types::{AuditEvent, UserId};

/// Appends an event. `details` must hold no secret.
pub(crate) async fn record(
    conn: &mut dyn Conn,
    at: SystemTime,
    actor: &str,
    kind: &str,
    user_id: Option<&UserId>,
    other_user_id: Option<&UserId>,
    details: serde_json::Value,
) -> Result<(), StorageError> {
    query(
        "INSERT INTO audit_events (event_id, at, actor, kind, user_id, other_user_id, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(millis(at))
    .bind(actor.to_owned())
    .bind(kind.to_owned())
    .bind(user_id.map(ToString::to_string))
    .bind(other_user_id.map(ToString::to_string))
    .bind(details.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

impl Storage {
    /// The newest `limit` events, of one user (as either party) or of everyone.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_events(
        &self,
        user_id: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StorageError> {
        let rows = match user_id {
            Some(user_id) => {
                query(
                    "SELECT at, actor, kind, user_id, other_user_id, details FROM audit_events \
                     WHERE user_id = $1 OR other_user_id = $1 ORDER BY at DESC, event_id DESC LIMIT $2",
                )
                .bind(user_id.to_string())
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?
            }
            None => {
                query(
                    "SELECT at, actor, kind, user_id, other_user_id, details FROM audit_events \
                     ORDER BY at DESC, event_id DESC LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                let parse_user = |column| {
                    get_opt_string(row, column)?
                        .map(|value| value.parse::<UserId>().map_err(|_| corrupt("user_id")))
                        .transpose()
                };
                Ok(AuditEvent {
                    at: get_time(row, "at")?,
                    actor: get_string(row, "actor")?,
                    kind: get_string(row, "kind")?,
                    user_id: parse_user("user_id")?,
                    other_user_id: parse_user("other_user_id")?,
                    details: serde_json::from_str(&get_string(row, "details")?)
                        .map_err(|_| corrupt("audit details"))?,
                })
            })
            .collect()
    }
}

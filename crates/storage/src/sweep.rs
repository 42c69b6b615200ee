//! The periodic clean-up of expired rows, in small batches so it never holds
//! the (SQLite: single) writer for long.

use std::time::SystemTime;

use crate::Storage;
use crate::db::millis;
use crate::error::StorageError;
use crate::sql::query;
use crate::types::SweepReport;

/// Each statement deletes at most `$2` rows expired at `$1`.
const BATCHES: [(&str, &str); 6] = [
    (
        "oauth_states",
        "DELETE FROM oauth_states WHERE state_hash IN \
         (SELECT state_hash FROM oauth_states WHERE expires_at <= $1 LIMIT $2)",
    ),
    (
        "web_logins",
        "DELETE FROM web_logins WHERE state_hash IN \
         (SELECT state_hash FROM web_logins WHERE expires_at <= $1 LIMIT $2)",
    ),
    (
        "tickets",
        "DELETE FROM login_tickets WHERE ticket_hash IN \
         (SELECT ticket_hash FROM login_tickets WHERE expires_at <= $1 LIMIT $2)",
    ),
    (
        "used_codes",
        "DELETE FROM used_codes WHERE code_hash IN \
         (SELECT code_hash FROM used_codes WHERE expires_at <= $1 LIMIT $2)",
    ),
    (
        "refresh_tokens",
        "DELETE FROM refresh_tokens WHERE token_hash IN \
         (SELECT r.token_hash FROM refresh_tokens r JOIN sessions s ON s.session_id = r.session_id \
          WHERE r.expires_at <= $1 OR s.expires_at <= $1 LIMIT $2)",
    ),
    (
        "sessions",
        "DELETE FROM sessions WHERE session_id IN \
         (SELECT session_id FROM sessions WHERE expires_at <= $1 \
          AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.session_id = sessions.session_id) \
          LIMIT $2)",
    ),
];

impl Storage {
    /// Deletes rows expired at `at`: OAuth states, browser logins, tickets,
    /// used codes, refresh tokens, and sessions (after their refresh tokens);
    /// and forgets the tickets kept for WeChat's repeated callbacks once their
    /// window is over. Each statement takes at most `batch` rows and commits
    /// on its own, so requests interleave.
    ///
    /// # Errors
    /// Database errors.
    pub async fn sweep_expired(
        &self,
        at: SystemTime,
        batch: u32,
    ) -> Result<SweepReport, StorageError> {
        let batch = i64::from(batch.max(1));
        let mut report = SweepReport::default();
        let window_over = millis(at).saturating_sub(crate::web_logins::repeat_window_millis());
        loop {
            let forgotten = self
                .write_statement(
                    query(crate::web_logins::FORGET_TICKETS)
                        .bind(window_over)
                        .bind(batch),
                )
                .await?;
            report.web_login_tickets += forgotten;
            if forgotten < batch.unsigned_abs() {
                break;
            }
            tokio::task::yield_now().await;
        }
        for (table, statement) in BATCHES {
            loop {
                let deleted = self
                    .write_statement(query(statement).bind(millis(at)).bind(batch))
                    .await?;
                match table {
                    "oauth_states" => report.oauth_states += deleted,
                    "web_logins" => report.web_logins += deleted,
                    "tickets" => report.tickets += deleted,
                    "used_codes" => report.used_codes += deleted,
                    "refresh_tokens" => report.refresh_tokens += deleted,
                    _ => report.sessions += deleted,
                }
                if deleted < batch.unsigned_abs() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(report)
    }
}

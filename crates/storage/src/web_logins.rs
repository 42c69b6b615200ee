//! The server side of a browser login, from the callback on: a state is
//! claimed by the first callback whose state and cookie check out, and
//! completed, together with the login it produced and that login's ticket, in
//! one transaction. WeChat's repeat of the same callback (same state, same
//! code, within 30 s, at most three times) is answered from the completed row
//! with the same ticket, kept encrypted only for that window.
//!
//! Nothing is written when a login starts: its context travels sealed in the
//! browser's cookie (the server's `web_binding`), so a forged or foreign
//! callback never reaches this module.

use std::time::{Duration, SystemTime};

use crate::sql::{Conn, query};
use secrecy::SecretString;

use crate::crypto::{random_token, token_hash};
use crate::db::{
    get_i64, get_opt_bytes, get_opt_i64, get_opt_string, get_string, locking_sql, millis,
    millis_after,
};
use crate::error::{DbFailure, StorageError};
use crate::types::{
    IdentityLogin, IdentityRef, LoginOutcome, WebLoginClaim, WebLoginClaimed, WebLoginOutcome,
};
use crate::{Storage, tickets};

/// WeChat sometimes redirects twice with the same code and state within
/// seconds; its repeats are answered this long after the first completed.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(30);
/// How many repeats of one callback are answered; the next is refused.
pub const MAX_REPEATS: i64 = 3;

/// The outcome stored for a login that produced a ticket.
const TICKET: &str = "ticket";
/// The outcome of a callback without a code: the user declined.
const DECLINED: &str = "access_denied";

/// Associated data binding a stored ticket to its state.
fn ticket_aad(state_hash: &[u8]) -> String {
    use base64::Engine as _;
    ticket_aad_of(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(state_hash))
}

/// [`ticket_aad`] of a state hash already in URL-safe base64 (as `rekey`
/// carries it).
pub(crate) fn ticket_aad_of(state_hash_base64: &str) -> String {
    format!("web_logins.ticket_ciphertext:{state_hash_base64}")
}

impl Storage {
    /// Claims the state of a callback whose state and cookie the caller has
    /// verified, or answers a repeat of a callback that claimed it before.
    /// `claim.code` is `None` when the user declined: the state is then
    /// consumed at once with the outcome `access_denied`.
    ///
    /// # Errors
    /// Database or key errors.
    pub async fn claim_web_login(
        &self,
        claim: &WebLoginClaim,
    ) -> Result<WebLoginClaimed, StorageError> {
        let lookup = self.lookup_key().await?;
        let code_hash = match &claim.code {
            Some(code) => lookup.hash("oauth_code", &[claim.app_id.as_str(), code]),
            None => lookup.hash("oauth_declined", &[claim.app_id.as_str()]),
        };
        let input = (claim.clone(), code_hash);
        self.write(input, |storage, conn, (claim, code_hash)| {
            Box::pin(storage.claim_tx(conn, claim, code_hash))
        })
        .await
    }

    async fn claim_tx(
        &self,
        conn: &mut dyn Conn,
        claim: &WebLoginClaim,
        code_hash: &[u8],
    ) -> Result<WebLoginClaimed, DbFailure> {
        let state_hash = token_hash(&claim.state_id);
        let now = millis(claim.at);
        let declined = claim.code.is_none();
        let inserted = query(
            "INSERT INTO web_logins (state_hash, app_id, code_hash, claimed_at, claim_expires_at, \
             completed_at, outcome, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (state_hash) DO NOTHING",
        )
        .bind(state_hash.clone())
        .bind(claim.app_id.to_string())
        .bind(code_hash.to_vec())
        .bind(now)
        .bind(millis_after(claim.at, claim.claim_ttl))
        .bind(declined.then_some(now))
        .bind(declined.then(|| DECLINED.to_owned()))
        // The row outlives the state (so it is never claimed twice) and the
        // repeat window (so repeats find it).
        .bind(millis(claim.state_expires_at).max(millis_after(claim.at, REPEAT_WINDOW)))
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(if declined {
                WebLoginClaimed::Answered(WebLoginOutcome::Failed(DECLINED.to_owned()))
            } else {
                WebLoginClaimed::Claimed {
                    claimed_at: crate::db::time(now),
                }
            });
        }
        let row = query(locking_sql!(
            self.engine(),
            "SELECT app_id, code_hash, claimed_at, claim_expires_at, completed_at, outcome, \
             ticket_ciphertext, repeats FROM web_logins WHERE state_hash = $1"
        ))
        .bind(state_hash.clone())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            // Swept between the insert and the read: the state is long gone.
            return Ok(WebLoginClaimed::Refused);
        };
        let same_login = get_string(&row, "app_id")? == claim.app_id.as_str()
            && get_opt_bytes(&row, "code_hash")?.as_deref() == Some(code_hash);
        if !same_login {
            return Ok(WebLoginClaimed::Refused);
        }
        let Some(completed_at) = get_opt_i64(&row, "completed_at")? else {
            if get_i64(&row, "claim_expires_at")? > now {
                return Ok(WebLoginClaimed::Pending);
            }
            // The first claimer never finished (it crashed, or lost its
            // database): the claim passes to this callback.
            query(
                "UPDATE web_logins SET claimed_at = $1, claim_expires_at = $2 \
                 WHERE state_hash = $3 AND completed_at IS NULL",
            )
            .bind(now)
            .bind(millis_after(claim.at, claim.claim_ttl))
            .bind(state_hash.clone())
            .execute(&mut *conn)
            .await?;
            return Ok(WebLoginClaimed::Claimed {
                claimed_at: crate::db::time(now),
            });
        };
        let window = i64::try_from(REPEAT_WINDOW.as_millis()).unwrap_or(i64::MAX);
        if now.saturating_sub(completed_at) > window || get_i64(&row, "repeats")? >= MAX_REPEATS {
            return Ok(WebLoginClaimed::Refused);
        }
        let outcome = match get_opt_string(&row, "outcome")?.as_deref() {
            Some(TICKET) => match get_opt_bytes(&row, "ticket_ciphertext")? {
                Some(sealed) => WebLoginOutcome::Ticket(
                    self.keys().decrypt_str(&ticket_aad(&state_hash), &sealed)?,
                ),
                // Dropped by the sweep: the window is over.
                None => return Ok(WebLoginClaimed::Refused),
            },
            Some(failure) => WebLoginOutcome::Failed(failure.to_owned()),
            None => return Err(DbFailure::Fatal(crate::db::corrupt("web_logins.outcome"))),
        };
        query("UPDATE web_logins SET repeats = repeats + 1 WHERE state_hash = $1")
            .bind(state_hash)
            .execute(&mut *conn)
            .await?;
        Ok(WebLoginClaimed::Answered(outcome))
    }

    /// Completes a claimed login in one transaction: records it (as
    /// [`Storage::record_login`]), mints its ticket, and consumes the state
    /// with the ticket kept for WeChat's repeat. `None` when the claim taken
    /// at `claimed_at` is no longer held (another callback took it over after
    /// it expired): nothing is written then.
    ///
    /// # Errors
    /// Database or key errors.
    pub async fn complete_web_login(
        &self,
        state_id: &str,
        claimed_at: SystemTime,
        login: &IdentityLogin,
    ) -> Result<Option<(LoginOutcome, SecretString)>, StorageError> {
        let input = (token_hash(state_id), millis(claimed_at), login.clone());
        self.write(input, |storage, conn, (state_hash, claimed_at, login)| {
            Box::pin(storage.complete_tx(conn, state_hash, *claimed_at, login))
        })
        .await
    }

    async fn complete_tx(
        &self,
        conn: &mut dyn Conn,
        state_hash: &[u8],
        claimed_at: i64,
        login: &IdentityLogin,
    ) -> Result<Option<(LoginOutcome, SecretString)>, DbFailure> {
        // First, so that a lost claim costs nothing but this statement (and
        // on PostgreSQL, so that the row is locked for the rest).
        let held = query(
            "UPDATE web_logins SET completed_at = $1, outcome = $2 \
             WHERE state_hash = $3 AND claimed_at = $4 AND completed_at IS NULL",
        )
        .bind(millis(login.at))
        .bind(TICKET)
        .bind(state_hash.to_vec())
        .bind(claimed_at)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if held == 0 {
            return Ok(None);
        }
        let outcome = self.record_login_tx(conn, login).await?;
        let identity = IdentityRef {
            app_id: login.app_id.clone(),
            openid: login.openid.clone(),
        };
        let ticket = random_token();
        tickets::insert_ticket(conn, &ticket, &identity, outcome.is_new_user, login.at).await?;
        let sealed = self.keys().encrypt_str(&ticket_aad(state_hash), &ticket)?;
        query("UPDATE web_logins SET ticket_ciphertext = $1 WHERE state_hash = $2")
            .bind(sealed)
            .bind(state_hash.to_vec())
            .execute(&mut *conn)
            .await?;
        Ok(Some((outcome, ticket)))
    }

    /// Consumes a claimed state whose login failed after consent, with the
    /// OAuth error the browser is sent back with (`temporarily_unavailable`,
    /// `server_error`, ...), so that WeChat's repeat gets the same answer.
    /// `false` when the claim taken at `claimed_at` is no longer held.
    ///
    /// # Errors
    /// Database errors.
    pub async fn fail_web_login(
        &self,
        state_id: &str,
        claimed_at: SystemTime,
        failure: &str,
        at: SystemTime,
    ) -> Result<bool, StorageError> {
        let input = (
            token_hash(state_id),
            millis(claimed_at),
            failure.to_owned(),
            millis(at),
        );
        self.write(input, |_, conn, (state_hash, claimed_at, failure, at)| {
            Box::pin(async move {
                let held = query(
                    "UPDATE web_logins SET completed_at = $1, outcome = $2 \
                     WHERE state_hash = $3 AND claimed_at = $4 AND completed_at IS NULL",
                )
                .bind(*at)
                .bind(failure.clone())
                .bind(state_hash.clone())
                .bind(*claimed_at)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                Ok(held == 1)
            })
        })
        .await
    }

    /// How many browser logins were claimed (rows in `web_logins`): what the
    /// callbacks wrote. For tests and the flood benchmark.
    ///
    /// # Errors
    /// Database errors.
    pub async fn web_login_rows(&self) -> Result<u64, StorageError> {
        let count: i64 = query("SELECT COUNT(*) FROM web_logins")
            .fetch_one(self.reader())
            .await?
            .get(0)?;
        Ok(count.unsigned_abs())
    }
}

/// Forgets the tickets of completed logins whose repeat window is over (the
/// rows stay until their state expires, so the state is never claimed again).
pub(crate) const FORGET_TICKETS: &str = "UPDATE web_logins SET ticket_ciphertext = NULL \
     WHERE state_hash IN (SELECT state_hash FROM web_logins \
     WHERE ticket_ciphertext IS NOT NULL AND completed_at <= $1 LIMIT $2)";

/// The repeat window in milliseconds, for the sweep.
pub(crate) fn repeat_window_millis() -> i64 {
    i64::try_from(REPEAT_WINDOW.as_millis()).unwrap_or(i64::MAX)
}

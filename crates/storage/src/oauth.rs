//! OAuth states for the HTTP shim: hashed, single-use, ten minutes, with
//! WeChat's double redirect recognised.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use sqlx::{AnyConnection, AssertSqlSafe};
use wechat_client::AppId;

use crate::crypto::{random_alphanumeric, token_hash};
use crate::db::{
    for_update, get_app_id, get_i64, get_opt_bytes, get_opt_i64, get_opt_string, get_string,
    millis, millis_after,
};
use crate::error::{DbFailure, StorageError};
use crate::types::{IdentityRef, NewOAuthState, OAuthStateRecord, StateUse};
use crate::{Storage, write_tx};

const STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// WeChat sometimes redirects twice with the same code and state within seconds.
const REPEAT_WINDOW: Duration = Duration::from_secs(30);

impl Storage {
    /// A new state token bound to app, scope, return URL and the caller's own
    /// state; 32 characters of `[A-Za-z0-9]`, stored hashed.
    ///
    /// # Errors
    /// Database errors.
    pub async fn create_oauth_state(
        &self,
        state: &NewOAuthState,
    ) -> Result<SecretString, StorageError> {
        let token = random_alphanumeric(32);
        sqlx::query(
            "INSERT INTO oauth_states (state_hash, app_id, scope, return_to, caller_state, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token_hash(token.expose_secret()))
        .bind(state.app_id.to_string())
        .bind(state.scope.clone())
        .bind(state.return_to.clone())
        .bind(state.caller_state.clone())
        .bind(millis(state.at))
        .bind(millis_after(state.at, STATE_TTL))
        .execute(self.writer())
        .await?;
        Ok(token)
    }

    /// Uses a state in a callback carrying `code`, or no code when the user
    /// declined. The first use wins; the same state with the same code (or
    /// again without one) within 30 s is WeChat's double redirect: `Repeat` or
    /// `RepeatDeclined`, or `Pending` while the first callback is still
    /// exchanging the code. Anything else is `Invalid`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn consume_oauth_state(
        &self,
        token: &str,
        app_id: &AppId,
        code: Option<&str>,
        at: SystemTime,
    ) -> Result<StateUse, StorageError> {
        let state_hash = token_hash(token);
        let lookup = self.lookup_key().await?;
        let code_hash = match code {
            Some(code) => lookup.hash("oauth_code", &[app_id.as_str(), code]),
            None => lookup.hash("oauth_declined", &[app_id.as_str()]),
        };
        let declined = code.is_none();
        write_tx!(self, |tx| self
            .consume_state_tx(&mut tx, &state_hash, &code_hash, declined, app_id, at)
            .await)
    }

    /// Records the identity the first callback of a state logged in, and
    /// whether that login created the user, so a repeat of that callback can be
    /// answered without a second code exchange.
    ///
    /// # Errors
    /// `NotFound("oauth_state")` when the state is unknown or was never consumed.
    pub async fn complete_oauth_state(
        &self,
        token: &str,
        identity: &IdentityRef,
        is_new_user: bool,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE oauth_states SET identity_app_id = $1, identity_openid = $2, \
             identity_is_new_user = $3 WHERE state_hash = $4 AND consumed_at IS NOT NULL",
        )
        .bind(identity.app_id.to_string())
        .bind(identity.openid.to_string())
        .bind(i64::from(is_new_user))
        .bind(token_hash(token))
        .execute(self.writer())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound {
                what: "oauth_state",
            });
        }
        Ok(())
    }

    /// Records that the first callback of a state failed after consent with
    /// the OAuth error `failure` (e.g. `temporarily_unavailable`), so that a
    /// repeat of that callback gets the same answer instead of waiting.
    ///
    /// # Errors
    /// `NotFound("oauth_state")` when the state is unknown or was never consumed.
    pub async fn fail_oauth_state(&self, token: &str, failure: &str) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE oauth_states SET failure = $1 WHERE state_hash = $2 AND consumed_at IS NOT NULL",
        )
        .bind(failure.to_owned())
        .bind(token_hash(token))
        .execute(self.writer())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound {
                what: "oauth_state",
            });
        }
        Ok(())
    }

    async fn consume_state_tx(
        &self,
        conn: &mut AnyConnection,
        state_hash: &[u8],
        code_hash: &[u8],
        declined: bool,
        app_id: &AppId,
        at: SystemTime,
    ) -> Result<StateUse, DbFailure> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT app_id, scope, return_to, caller_state, expires_at, consumed_at, code_hash, \
                 identity_app_id, identity_openid, identity_is_new_user, failure FROM oauth_states WHERE state_hash = $1{}",
            for_update(self.engine())
        )))
        .bind(state_hash.to_vec())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(StateUse::Invalid);
        };
        let record = OAuthStateRecord {
            app_id: get_app_id(&row, "app_id")?,
            scope: get_string(&row, "scope")?,
            return_to: get_string(&row, "return_to")?,
            caller_state: get_opt_string(&row, "caller_state")?,
        };
        if record.app_id != *app_id {
            return Ok(StateUse::Invalid);
        }
        let now = millis(at);
        match get_opt_i64(&row, "consumed_at")? {
            None => {
                if get_i64(&row, "expires_at")? <= now {
                    return Ok(StateUse::Invalid);
                }
                sqlx::query(
                    "UPDATE oauth_states SET consumed_at = $1, code_hash = $2 \
                         WHERE state_hash = $3 AND consumed_at IS NULL",
                )
                .bind(now)
                .bind(code_hash.to_vec())
                .bind(state_hash.to_vec())
                .execute(&mut *conn)
                .await?;
                Ok::<_, DbFailure>(StateUse::First(record))
            }
            Some(consumed_at) => {
                let same_code = get_opt_bytes(&row, "code_hash")?.as_deref() == Some(code_hash);
                let window = i64::try_from(REPEAT_WINDOW.as_millis()).unwrap_or(i64::MAX);
                // Either side of the first use: a concurrent repeat may have read
                // the clock before the first callback did (or on another replica).
                let in_window = now.abs_diff(consumed_at) <= window.unsigned_abs();
                let identity = match (
                    get_opt_string(&row, "identity_app_id")?,
                    get_opt_string(&row, "identity_openid")?,
                ) {
                    (Some(app), Some(openid)) => Some(IdentityRef {
                        app_id: AppId::new(app).map_err(|_| crate::db::corrupt("app_id"))?,
                        openid: wechat_client::OpenId::new(openid)
                            .map_err(|_| crate::db::corrupt("openid"))?,
                    }),
                    _ => None,
                };
                if !(same_code && in_window) {
                    return Ok(StateUse::Invalid);
                }
                let failure = get_opt_string(&row, "failure")?;
                Ok(match (identity, failure) {
                    _ if declined => StateUse::RepeatDeclined(record),
                    (_, Some(failure)) => StateUse::RepeatFailed { record, failure },
                    (Some(identity), None) => StateUse::Repeat {
                        record,
                        identity,
                        is_new_user: get_i64(&row, "identity_is_new_user")? != 0,
                    },
                    (None, None) => StateUse::Pending,
                })
            }
        }
    }
}

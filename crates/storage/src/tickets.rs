//! Login tickets: single-use, five-minute bearer handles on an identity.

use std::time::{Duration, SystemTime};

use crate::sql::{Conn, query};
use secrecy::{ExposeSecret, SecretString};

use crate::Storage;
use crate::crypto::{random_token, token_hash};
use crate::db::{
    get_app_id, get_i64, get_openid, get_opt_unionid, get_user_id, millis, millis_after,
};
use crate::error::{Entity, StorageError};
use crate::types::{IdentityRef, NewSession, RedeemedTicket, SessionLifetimes, Ticket};

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
        let input = (ticket.clone(), identity.clone());
        self.write_autocommit(input, move |_, conn, (ticket, identity)| {
            Box::pin(async move {
                insert_ticket(conn, ticket, identity, is_new_user, at).await?;
                Ok(())
            })
        })
        .await?;
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
        self.write_autocommit(ticket.to_owned(), move |_, conn, ticket| {
            Box::pin(async move { Ok(spend_ticket(conn, ticket, at).await?) })
        })
        .await
    }

    /// Redeems a login ticket and opens a session through its identity, in
    /// one transaction: a ticket is spent only by a login that committed, and
    /// a committed login is never reported as failed. `Ok(None)` when the
    /// ticket is unknown, expired or spent.
    ///
    /// # Errors
    /// `NotFound("identity")` when the identity was unbound since the ticket
    /// was issued (the ticket stays unspent, and useless); database errors.
    pub async fn redeem_ticket(
        &self,
        ticket: &str,
        lifetimes: SessionLifetimes,
        actor: &str,
        at: SystemTime,
    ) -> Result<Option<RedeemedTicket>, StorageError> {
        let input = (ticket.to_owned(), actor.to_owned());
        self.write(input, move |storage, conn, (ticket, actor)| {
            Box::pin(async move {
                let Some(spent) = spend_ticket(conn, ticket, at).await? else {
                    return Ok(None);
                };
                let identity = query(
                    "SELECT user_id, unionid FROM identities WHERE app_id = $1 AND openid = $2",
                )
                .bind(spent.identity.app_id.to_string())
                .bind(spent.identity.openid.to_string())
                .fetch_optional(&mut *conn)
                .await?
                .ok_or(StorageError::NotFound(Entity::Identity))?;
                let user_id = get_user_id(&identity, "user_id")?;
                let unionid = get_opt_unionid(&identity, "unionid")?;
                let session = storage
                    .open_session_tx(
                        conn,
                        &NewSession {
                            user_id,
                            app_id: spent.identity.app_id.clone(),
                            openid: spent.identity.openid.clone(),
                            lifetimes,
                            actor: actor.clone(),
                            at,
                        },
                    )
                    .await?;
                Ok(Some(RedeemedTicket {
                    ticket: spent,
                    user_id,
                    unionid,
                    session,
                }))
            })
        })
        .await
    }
}

/// Inserts `ticket` (its hash) for `identity`, valid five minutes.
///
/// # Errors
/// `NotFound("identity")` for an unknown identity.
pub(crate) async fn insert_ticket(
    conn: &mut dyn Conn,
    ticket: &SecretString,
    identity: &IdentityRef,
    is_new_user: bool,
    at: SystemTime,
) -> Result<(), StorageError> {
    let inserted = query(
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
        return Err(StorageError::NotFound(Entity::Identity));
    }
    Ok(())
}

/// Spends `ticket` on `conn` (inside the caller's transaction, when there is
/// one): the identity it names, or `None` when it is unknown, expired or spent.
///
/// # Errors
/// Database errors.
pub(crate) async fn spend_ticket(
    conn: &mut dyn Conn,
    ticket: &str,
    at: SystemTime,
) -> Result<Option<Ticket>, StorageError> {
    let row = query(
        "UPDATE login_tickets SET used_at = $1 \
         WHERE ticket_hash = $2 AND used_at IS NULL AND expires_at > $1 \
         RETURNING app_id, openid, is_new_user",
    )
    .bind(millis(at))
    .bind(token_hash(ticket))
    .fetch_optional(&mut *conn)
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

//! Binding identities to accounts (user ids or the caller's external ids), and
//! unbinding them. Every change is one transaction and one audit event.

use std::time::SystemTime;

use crate::sql::{Conn, query};
use wechat_types::UnionId;

use crate::db::{get_opt_string, get_opt_unionid, get_user_id, locking_sql};
use crate::error::DbError;
use crate::error::{Constraint, DbFailure, Entity, StorageError};
use crate::identities::{NewIdentity, claim_unionid, insert_identity};
use crate::profile_epoch::touched;
use crate::types::{Account, BindRequest, IdentityRef, UserId, UserProfile};
use crate::users::insert_user;
use crate::{Storage, audit};

/// A concurrent bind took the external id between our check and our write:
/// run the bind again, which now sees the holder.
fn external_id_race(error: DbError) -> DbFailure {
    match error {
        DbError::Unique(_) => DbFailure::Retry,
        error => DbFailure::from(error),
    }
}

async fn external_id_of(
    conn: &mut dyn Conn,
    user_id: &UserId,
) -> Result<Option<String>, StorageError> {
    let row = query("SELECT external_id FROM users WHERE user_id = $1")
        .bind(user_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row
        .map(|row| get_opt_string(&row, "external_id"))
        .transpose()?
        .flatten())
}

async fn holder_of_external_id(
    conn: &mut dyn Conn,
    external_id: &str,
) -> Result<Option<UserId>, StorageError> {
    let row = query("SELECT user_id FROM users WHERE external_id = $1")
        .bind(external_id.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| get_user_id(&row, "user_id")).transpose()
}

async fn user_exists(conn: &mut dyn Conn, user_id: &UserId) -> Result<bool, StorageError> {
    Ok(query("SELECT 1 FROM users WHERE user_id = $1")
        .bind(user_id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

/// Points a unionid at `user_id` when the user that held it keeps no identity
/// carrying it (deleting the mapping when nobody does).
async fn follow_unionid(
    conn: &mut dyn Conn,
    unionid: &UnionId,
    from: &UserId,
    to: Option<&UserId>,
) -> Result<(), StorageError> {
    let still_there = query("SELECT 1 FROM identities WHERE user_id = $1 AND unionid = $2 LIMIT 1")
        .bind(from.to_string())
        .bind(unionid.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    if still_there {
        return Ok(());
    }
    match to {
        Some(to) => {
            query("UPDATE unionids SET user_id = $1 WHERE unionid = $2 AND user_id = $3")
                .bind(to.to_string())
                .bind(unionid.to_string())
                .bind(from.to_string())
                .execute(&mut *conn)
                .await?;
        }
        None => {
            query("DELETE FROM unionids WHERE unionid = $1 AND user_id = $2")
                .bind(unionid.to_string())
                .bind(from.to_string())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Revokes the sessions an identity opened for a user it no longer belongs to.
async fn end_identity_sessions(
    conn: &mut dyn Conn,
    identity: &IdentityRef,
    user_id: &UserId,
    reason: &str,
    at: SystemTime,
) -> Result<u64, StorageError> {
    let done = query(
        "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 \
         WHERE app_id = $3 AND openid = $4 AND user_id = $5 AND revoked_at IS NULL",
    )
    .bind(crate::db::millis(at))
    .bind(reason.to_owned())
    .bind(identity.app_id.to_string())
    .bind(identity.openid.to_string())
    .bind(user_id.to_string())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() > 0 {
        crate::session_epoch::bump(conn).await?;
    }
    Ok(done.rows_affected())
}

impl Storage {
    /// Binds an identity to an account (see the crate README for every case).
    ///
    /// # Errors
    /// `NotFound("identity")` for an unknown identity without `import`;
    /// `NotFound("user")` for an unknown target user; `AlreadyExists("identity")`
    /// when the identity is bound elsewhere, `AlreadyExists("external_id")` when
    /// another user holds the external id, both unless `replace_existing`.
    pub async fn bind(&self, request: &BindRequest) -> Result<UserProfile, StorageError> {
        // The answer is read inside the transaction: once the bind commits,
        // nothing is left that could fail and report it as not done (the
        // service gives a ticket back after a failed bind).
        self.write(request.clone(), |storage, conn, request| {
            Box::pin(async move {
                let user_id = storage.bind_tx(conn, request).await?;
                storage.profile_in_tx(conn, &user_id).await
            })
        })
        .await
    }

    /// Binds the identity a login ticket names, spending the ticket in the
    /// same transaction: a ticket is spent only by a bind that commits, so
    /// after `AlreadyExists` it may be presented again (with
    /// `replace_existing`). `Ok(None)` when the ticket is unknown, expired or
    /// spent.
    ///
    /// # Errors
    /// As [`Storage::bind`].
    pub async fn bind_by_ticket(
        &self,
        ticket: &str,
        account: &Account,
        replace_existing: bool,
        actor: &str,
        at: SystemTime,
    ) -> Result<Option<UserProfile>, StorageError> {
        let input = (ticket.to_owned(), account.clone(), actor.to_owned());
        self.write(input, move |storage, conn, (ticket, account, actor)| {
            Box::pin(async move {
                let Some(spent) = crate::tickets::spend_ticket(conn, ticket, at).await? else {
                    return Ok(None);
                };
                let request = BindRequest {
                    identity: spent.identity,
                    import: None,
                    account: account.clone(),
                    replace_existing,
                    actor: actor.clone(),
                    at,
                };
                let user_id = storage.bind_tx(conn, &request).await?;
                storage.profile_in_tx(conn, &user_id).await.map(Some)
            })
        })
        .await
    }

    /// The profile of `user_id` as the transaction on `conn` leaves it.
    async fn profile_in_tx(
        &self,
        conn: &mut dyn Conn,
        user_id: &UserId,
    ) -> Result<UserProfile, DbFailure> {
        self.load_profile(conn, user_id)
            .await?
            .ok_or(DbFailure::Fatal(StorageError::NotFound(Entity::User)))
    }

    async fn bind_tx(
        &self,
        conn: &mut dyn Conn,
        request: &BindRequest,
    ) -> Result<UserId, DbFailure> {
        let identity = &request.identity;
        let row = query(locking_sql!(
            self.engine(),
            "SELECT user_id, unionid FROM identities WHERE app_id = $1 AND openid = $2"
        ))
        .bind(identity.app_id.to_string())
        .bind(identity.openid.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return self.import_identity(conn, request).await;
        };
        let current = get_user_id(&row, "user_id")?;
        let unionid = get_opt_unionid(&row, "unionid")?;
        let already_exists = |constraint| DbFailure::Fatal(StorageError::AlreadyExists(constraint));

        let target = match &request.account {
            Account::UserId(target) => {
                if !user_exists(conn, target).await? {
                    return Err(StorageError::NotFound(Entity::User).into());
                }
                if *target == current {
                    return Ok(current);
                }
                if !request.replace_existing {
                    return Err(already_exists(Constraint::Identity));
                }
                *target
            }
            Account::ExternalId(external_id) => {
                let current_external = external_id_of(conn, &current).await?;
                let holder = holder_of_external_id(conn, external_id).await?;
                match (current_external, holder) {
                    (Some(own), _) if own == *external_id => return Ok(current),
                    (None, None) => {
                        touched(&current);
                        query(
                            "UPDATE users SET external_id = $1, updated_at = $2 WHERE user_id = $3",
                        )
                        .bind(external_id.clone())
                        .bind(crate::db::millis(request.at))
                        .bind(current.to_string())
                        .execute(&mut *conn)
                        .await
                        .map_err(external_id_race)?;
                        let details = serde_json::json!({
                            "app_id": identity.app_id.as_str(),
                            "external_id_set": true,
                        });
                        let actor = &request.actor;
                        audit::record(
                            conn,
                            request.at,
                            actor,
                            "bind",
                            Some(&current),
                            None,
                            details,
                        )
                        .await?;
                        return Ok(current);
                    }
                    (None, Some(_)) if !request.replace_existing => {
                        return Err(already_exists(Constraint::ExternalId));
                    }
                    (Some(_), _) if !request.replace_existing => {
                        return Err(already_exists(Constraint::Identity));
                    }
                    (_, Some(holder)) => holder,
                    (Some(_), None) => {
                        let fresh = UserId::generate();
                        insert_user(conn, &fresh, Some(external_id), request.at)
                            .await
                            .map_err(external_id_race)?;
                        fresh
                    }
                }
            }
        };

        touched(&current);
        touched(&target);
        query("UPDATE identities SET user_id = $1 WHERE app_id = $2 AND openid = $3")
            .bind(target.to_string())
            .bind(identity.app_id.to_string())
            .bind(identity.openid.to_string())
            .execute(&mut *conn)
            .await?;
        if let Some(unionid) = &unionid {
            follow_unionid(conn, unionid, &current, Some(&target)).await?;
        }
        let revoked =
            end_identity_sessions(conn, identity, &current, "identity_moved", request.at).await?;
        audit::record(
            conn,
            request.at,
            &request.actor,
            "bind",
            Some(&target),
            Some(&current),
            serde_json::json!({
                "app_id": identity.app_id.as_str(),
                "moved_from_user": current.to_string(),
                "revoked_sessions": revoked,
            }),
        )
        .await?;
        Ok(target)
    }

    /// A bind of an unknown identity: a trusted import creates it on the target.
    async fn import_identity(
        &self,
        conn: &mut dyn Conn,
        request: &BindRequest,
    ) -> Result<UserId, DbFailure> {
        let Some(import) = &request.import else {
            return Err(StorageError::NotFound(Entity::Identity).into());
        };
        let target = match &request.account {
            Account::UserId(user_id) => {
                if !user_exists(conn, user_id).await? {
                    return Err(StorageError::NotFound(Entity::User).into());
                }
                *user_id
            }
            Account::ExternalId(external_id) => {
                match holder_of_external_id(conn, external_id).await? {
                    Some(holder) => holder,
                    None => {
                        let fresh = UserId::generate();
                        insert_user(conn, &fresh, Some(external_id), request.at)
                            .await
                            .map_err(external_id_race)?;
                        fresh
                    }
                }
            }
        };
        let inserted = insert_identity(
            conn,
            NewIdentity {
                app_id: &request.identity.app_id,
                openid: &request.identity.openid,
                user_id: &target,
                unionid: import.unionid.as_ref(),
                app_kind: import.app_kind,
                scope: None,
                is_snapshot: false,
                at: request.at,
            },
        )
        .await?;
        if !inserted {
            return Err(DbFailure::Retry);
        }
        if let Some(unionid) = &import.unionid {
            claim_unionid(conn, unionid, &target).await?;
        }
        audit::record(
            conn,
            request.at,
            &request.actor,
            "bind",
            Some(&target),
            None,
            serde_json::json!({ "app_id": request.identity.app_id.as_str(), "imported": true }),
        )
        .await?;
        Ok(target)
    }

    /// Removes an identity and its credentials, ends its sessions, and returns
    /// what remains of its former user (who stays, possibly with no identity).
    ///
    /// # Errors
    /// `NotFound("identity")` for an unknown identity.
    pub async fn unbind(
        &self,
        identity: &IdentityRef,
        actor: &str,
        at: SystemTime,
    ) -> Result<UserProfile, StorageError> {
        // Read inside the transaction, as for `bind`: a committed unbind is
        // never answered with an error.
        let input = (identity.clone(), actor.to_owned());
        self.write(input, move |storage, conn, (identity, actor)| {
            Box::pin(async move {
                let user_id = storage.unbind_tx(conn, identity, actor, at).await?;
                storage.profile_in_tx(conn, &user_id).await
            })
        })
        .await
    }

    async fn unbind_tx(
        &self,
        conn: &mut dyn Conn,
        identity: &IdentityRef,
        actor: &str,
        at: SystemTime,
    ) -> Result<UserId, DbFailure> {
        let row = query(
            "DELETE FROM identities WHERE app_id = $1 AND openid = $2 RETURNING user_id, unionid",
        )
        .bind(identity.app_id.to_string())
        .bind(identity.openid.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Err(StorageError::NotFound(Entity::Identity).into());
        };
        let user_id = get_user_id(&row, "user_id")?;
        touched(&user_id);
        if let Some(unionid) = get_opt_unionid(&row, "unionid")? {
            follow_unionid(conn, &unionid, &user_id, None).await?;
        }
        let revoked =
            end_identity_sessions(conn, identity, &user_id, "identity_unbound", at).await?;
        let details = serde_json::json!({
            "app_id": identity.app_id.as_str(),
            "revoked_sessions": revoked,
        });
        audit::record(conn, at, actor, "unbind", Some(&user_id), None, details).await?;
        Ok(user_id)
    }
}

//! WeChat identities: logins and unionid linking. Merging lives in `merge.rs`,
//! the encrypted credentials in `credentials.rs`.

use std::time::SystemTime;

use crate::error::DbError;
use crate::sql::{Conn, query};
use wechat_types::{AppId, OpenId, UnionId};

use secrecy::ExposeSecret;

use crate::crypto::token_hash;
use crate::db::{get_opt_unionid, get_user_id, locking_sql, millis};
use crate::error::{DbFailure, StorageError};
use crate::profile_epoch::touched;
use crate::sessions::FreshSession;
use crate::types::{
    IdentityLogin, IssuedSession, LoginOutcome, NewSession, SessionLifetimes, UserId,
};
use crate::users::{insert_user, write_profile};
use crate::{Engine, Storage};

/// The columns of a new identity row.
pub(crate) struct NewIdentity<'a> {
    pub(crate) app_id: &'a AppId,
    pub(crate) openid: &'a OpenId,
    pub(crate) user_id: &'a UserId,
    pub(crate) unionid: Option<&'a UnionId>,
    pub(crate) app_kind: crate::AppKind,
    pub(crate) scope: Option<&'a str>,
    pub(crate) is_snapshot: bool,
    pub(crate) at: SystemTime,
}

/// Inserts an identity; `false` when it already exists (a concurrent insert won).
pub(crate) async fn insert_identity(
    conn: &mut dyn Conn,
    new: NewIdentity<'_>,
) -> Result<bool, DbError> {
    touched(new.user_id);
    let done = query(
        "INSERT INTO identities (app_id, openid, user_id, unionid, app_kind, scope, is_snapshot, \
         linked_at, last_login_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
         ON CONFLICT (app_id, openid) DO NOTHING",
    )
    .bind(new.app_id.to_string())
    .bind(new.openid.to_string())
    .bind(new.user_id.to_string())
    .bind(new.unionid.map(ToString::to_string))
    .bind(new.app_kind.as_str())
    .bind(new.scope.map(str::to_owned))
    .bind(i64::from(new.is_snapshot))
    .bind(millis(new.at))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that `unionid` belongs to `user_id` unless someone holds it already;
/// returns the holder afterwards.
pub(crate) async fn claim_unionid(
    conn: &mut dyn Conn,
    unionid: &UnionId,
    user_id: &UserId,
) -> Result<UserId, StorageError> {
    query(
        "INSERT INTO unionids (unionid, user_id) VALUES ($1, $2) ON CONFLICT (unionid) DO NOTHING",
    )
    .bind(unionid.to_string())
    .bind(user_id.to_string())
    .execute(&mut *conn)
    .await?;
    let row = query("SELECT user_id FROM unionids WHERE unionid = $1")
        .bind(unionid.to_string())
        .fetch_one(&mut *conn)
        .await?;
    get_user_id(&row, "user_id")
}

impl Storage {
    /// Records a successful WeChat login: creates the identity (and its user)
    /// on first sight, joins the user of a known unionid, upgrades an identity
    /// that shows its unionid for the first time (merging two users that prove
    /// to be one person), and stores the credentials and profile it brought.
    ///
    /// # Errors
    /// Database or key errors.
    pub async fn record_login(&self, login: &IdentityLogin) -> Result<LoginOutcome, StorageError> {
        self.write(login.clone(), |storage, conn, login| {
            Box::pin(storage.record_login_tx(conn, login))
        })
        .await
    }

    /// [`Storage::record_login`], and a session opened through the identity
    /// (as [`Storage::create_session`] would) in the same transaction: a login
    /// never leaves a recorded identity without the session it was for.
    ///
    /// # Errors
    /// As [`Storage::record_login`].
    pub async fn record_login_with_session(
        &self,
        login: &IdentityLogin,
        lifetimes: SessionLifetimes,
        actor: &str,
    ) -> Result<(LoginOutcome, IssuedSession), StorageError> {
        if let Some(done) = self.returning_login(login, lifetimes).await? {
            return Ok(done);
        }
        let input = (login.clone(), actor.to_owned());
        self.write(input, move |storage, conn, (login, actor)| {
            Box::pin(async move {
                let outcome = storage.record_login_tx(conn, login).await?;
                let new = NewSession {
                    user_id: outcome.user_id,
                    app_id: login.app_id.clone(),
                    openid: login.openid.clone(),
                    lifetimes,
                    actor: actor.clone(),
                    at: login.at,
                };
                // The user was just resolved (or created) in this transaction.
                let issued = storage.open_session_tx(conn, &new).await?;
                Ok((outcome, issued))
            })
        })
        .await
    }

    pub(crate) async fn record_login_tx(
        &self,
        conn: &mut dyn Conn,
        login: &IdentityLogin,
    ) -> Result<LoginOutcome, DbFailure> {
        let existing = query(locking_sql!(
            self.engine(),
            "SELECT user_id, unionid FROM identities WHERE app_id = $1 AND openid = $2"
        ))
        .bind(login.app_id.to_string())
        .bind(login.openid.to_string())
        .fetch_optional(&mut *conn)
        .await?;

        let outcome = match existing {
            Some(row) => {
                let user_id = get_user_id(&row, "user_id")?;
                let stored_unionid = get_opt_unionid(&row, "unionid")?;
                query(
                    "UPDATE identities SET last_login_at = $1, is_snapshot = $2, \
                     scope = COALESCE($3, scope) WHERE app_id = $4 AND openid = $5",
                )
                .bind(millis(login.at))
                .bind(i64::from(login.is_snapshot))
                .bind(login.scope.clone())
                .bind(login.app_id.to_string())
                .bind(login.openid.to_string())
                .execute(&mut *conn)
                .await?;
                match (&login.unionid, stored_unionid) {
                    (Some(unionid), None) => {
                        self.upgrade_identity(conn, login, &user_id, unionid)
                            .await?
                    }
                    (Some(shown), Some(stored)) if *shown != stored => {
                        tracing::warn!("identity showed a different unionid; keeping the first");
                        LoginOutcome {
                            user_id,
                            is_new_user: false,
                            merged: None,
                        }
                    }
                    _ => LoginOutcome {
                        user_id,
                        is_new_user: false,
                        merged: None,
                    },
                }
            }
            None => self.create_identity(conn, login).await?,
        };

        if let Some(profile) = &login.profile {
            write_profile(conn, &outcome.user_id, profile, login.at).await?;
        }
        if let Some(session_key) = &login.session_key {
            self.write_session_key(conn, &login.app_id, &login.openid, session_key, login.at)
                .await?;
        }
        if let Some(tokens) = &login.web_tokens {
            self.write_web_tokens(conn, &login.app_id, &login.openid, tokens, login.at)
                .await?;
        }
        Ok(outcome)
    }

    async fn create_identity(
        &self,
        conn: &mut dyn Conn,
        login: &IdentityLogin,
    ) -> Result<LoginOutcome, DbFailure> {
        let candidate = UserId::generate();
        let (user_id, is_new_user) = match &login.unionid {
            Some(unionid) => {
                let holder = query("SELECT user_id FROM unionids WHERE unionid = $1")
                    .bind(unionid.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                match holder {
                    Some(row) => (get_user_id(&row, "user_id")?, false),
                    None => {
                        insert_user(conn, &candidate, None, login.at).await?;
                        // A concurrent first login of the same person (any app)
                        // may have claimed it meanwhile: start over and join it.
                        if claim_unionid(conn, unionid, &candidate).await? != candidate {
                            return Err(DbFailure::Retry);
                        }
                        (candidate, true)
                    }
                }
            }
            None => {
                insert_user(conn, &candidate, None, login.at).await?;
                (candidate, true)
            }
        };
        let inserted = insert_identity(
            conn,
            NewIdentity {
                app_id: &login.app_id,
                openid: &login.openid,
                user_id: &user_id,
                unionid: login.unionid.as_ref(),
                app_kind: login.app_kind,
                scope: login.scope.as_deref(),
                is_snapshot: login.is_snapshot,
                at: login.at,
            },
        )
        .await?;
        if !inserted {
            // A concurrent login created this identity first.
            return Err(DbFailure::Retry);
        }
        Ok(LoginOutcome {
            user_id,
            is_new_user,
            merged: None,
        })
    }

    /// PostgreSQL: the login of a returning mini program user and its new
    /// session in one statement, one round trip instead of six. It applies
    /// when the identity exists and the login brings nothing that could move
    /// it (no first unionid, no profile, no web tokens); `None` (nothing
    /// written) otherwise, and the caller takes the general path. SQLite's
    /// statements are function calls on the writer's thread: it always takes
    /// the general path.
    async fn returning_login(
        &self,
        login: &IdentityLogin,
        lifetimes: SessionLifetimes,
    ) -> Result<Option<(LoginOutcome, IssuedSession)>, StorageError> {
        let Some(session_key) = &login.session_key else {
            return Ok(None);
        };
        if self.engine() != Engine::Postgres
            || login.app_kind != crate::AppKind::MiniProgram
            || login.profile.is_some()
            || login.web_tokens.is_some()
        {
            return Ok(None);
        }
        let sealed = self.seal_session_key(&login.app_id, &login.openid, session_key)?;
        let fresh = FreshSession::for_login(login.at, lifetimes);
        // Every part reads the identity's row as the UPDATE left it (locked,
        // after any concurrent merge or bind committed): the session opens
        // for whoever holds the identity now. A first unionid must go through
        // the general path (it may merge two users), so such a login updates
        // nothing here.
        let statement = query(
            "WITH login AS (UPDATE identities SET last_login_at = $1, is_snapshot = $2, \
             scope = COALESCE($3, scope) WHERE app_id = $4 AND openid = $5 \
             AND ($6::text IS NULL OR unionid IS NOT NULL) \
             RETURNING user_id, unionid, app_id, openid), \
             credentials AS (INSERT INTO wechat_credentials (app_id, openid, session_key, \
             session_key_updated_at) SELECT app_id, openid, $7, $1 FROM login \
             ON CONFLICT (app_id, openid) DO UPDATE SET session_key = excluded.session_key, \
             session_key_updated_at = excluded.session_key_updated_at), \
             opened AS (INSERT INTO sessions (session_id, user_id, app_id, openid, created_at, \
             expires_at) SELECT $8, user_id, app_id, openid, $1, $9 FROM login \
             RETURNING session_id), \
             first_token AS (INSERT INTO refresh_tokens (token_hash, session_id, generation, \
             created_at, expires_at) SELECT $10, session_id, 1, $1, $9 FROM opened) \
             SELECT user_id, unionid FROM login",
        )
        .bind(millis(login.at))
        .bind(i64::from(login.is_snapshot))
        .bind(login.scope.clone())
        .bind(login.app_id.to_string())
        .bind(login.openid.to_string())
        .bind(login.unionid.as_ref().map(ToString::to_string))
        .bind(sealed)
        .bind(fresh.session_id.to_string())
        .bind(fresh.expires_at)
        .bind(token_hash(fresh.token.expose_secret()));
        let row = self
            .write_autocommit(statement, |_, conn, statement| {
                Box::pin(async move { Ok(statement.clone().fetch_optional(conn).await?) })
            })
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user_id = get_user_id(&row, "user_id")?;
        if let (Some(shown), Some(stored)) = (&login.unionid, get_opt_unionid(&row, "unionid")?)
            && *shown != stored
        {
            tracing::warn!("identity showed a different unionid; keeping the first");
        }
        let issued = fresh.issued(user_id, &login.app_id, &login.openid, login.at);
        let outcome = LoginOutcome {
            user_id,
            is_new_user: false,
            merged: None,
        };
        Ok(Some((outcome, issued)))
    }

    /// An identity shows its unionid for the first time.
    async fn upgrade_identity(
        &self,
        conn: &mut dyn Conn,
        login: &IdentityLogin,
        user_id: &UserId,
        unionid: &UnionId,
    ) -> Result<LoginOutcome, DbFailure> {
        touched(user_id);
        query("UPDATE identities SET unionid = $1 WHERE app_id = $2 AND openid = $3")
            .bind(unionid.to_string())
            .bind(login.app_id.to_string())
            .bind(login.openid.to_string())
            .execute(&mut *conn)
            .await?;
        let holder = claim_unionid(conn, unionid, user_id).await?;
        if holder == *user_id {
            return Ok(LoginOutcome {
                user_id: *user_id,
                is_new_user: false,
                merged: None,
            });
        }
        self.merge_users(conn, &holder, user_id, login.at).await
    }
}

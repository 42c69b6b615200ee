//! Sessions and their refresh tokens: rotation with reuse detection.

use std::time::SystemTime;

use crate::sql::{Conn, Row, query};
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::{random_token, token_hash};
use crate::db::{
    get_app_id, get_bytes, get_i64, get_openid, get_opt_i64, get_opt_time, get_session_id,
    get_time, get_user_id, millis, millis_after, time,
};
use crate::error::{DbFailure, Entity, StorageError};
use crate::types::{
    IssuedSession, NewSession, Rotation, SessionId, SessionLifetimes, SessionRecord, UserId,
};
use crate::{Engine, Storage, audit, session_epoch};
use wechat_types::{AppId, OpenId};

/// The columns of a session record, as a literal for `concat!`.
macro_rules! session_columns {
    () => {
        "s.session_id, s.user_id, s.app_id, s.openid, s.created_at, s.expires_at, s.revoked_at"
    };
}

/// The answer of a rotation: `session` slid to `expires_at`, with its new token.
fn issued(session: SessionRecord, refresh_token: SecretString, expires_at: i64) -> IssuedSession {
    IssuedSession {
        session: SessionRecord {
            expires_at: time(expires_at),
            ..session
        },
        refresh_token,
        refresh_expires_at: time(expires_at),
    }
}

fn session_from_row(row: &Row) -> Result<SessionRecord, StorageError> {
    Ok(SessionRecord {
        session_id: get_session_id(row, "session_id")?,
        user_id: get_user_id(row, "user_id")?,
        app_id: get_app_id(row, "app_id")?,
        openid: get_openid(row, "openid")?,
        created_at: get_time(row, "created_at")?,
        expires_at: get_time(row, "expires_at")?,
        revoked_at: get_opt_time(row, "revoked_at")?,
    })
}

/// Marks a session revoked (if it is not already) and audits it.
pub(crate) async fn revoke_in_tx(
    conn: &mut dyn Conn,
    session_id: &SessionId,
    reason: &str,
    actor: &str,
    at: SystemTime,
) -> Result<bool, StorageError> {
    let row = query(
        "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 \
         WHERE session_id = $3 AND revoked_at IS NULL RETURNING user_id",
    )
    .bind(millis(at))
    .bind(reason.to_owned())
    .bind(session_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let user_id = get_user_id(&row, "user_id")?;
    audit::record(
        conn,
        at,
        actor,
        "revoke",
        Some(&user_id),
        None,
        serde_json::json!({ "session_id": session_id.to_string(), "reason": reason }),
    )
    .await?;
    session_epoch::bump(conn).await?;
    Ok(true)
}

impl Storage {
    /// Starts a session with its first refresh token (generation 1).
    ///
    /// # Errors
    /// `NotFound("user")` when the user does not exist, `NotFound("identity")`
    /// when the identity is not (or no longer) linked to that user.
    pub async fn create_session(&self, new: &NewSession) -> Result<IssuedSession, StorageError> {
        self.write(new.clone(), |storage, conn, new| {
            Box::pin(storage.create_session_tx(conn, new))
        })
        .await
    }

    /// Exchanges a refresh token for the next generation. Presenting a retired
    /// generation revokes the session (someone holds a copy of an old token),
    /// except for the generation just before the live one within
    /// `lifetimes.reuse_grace` of its rotation, which gets
    /// [`Rotation::Grace`]. No refresh token expires after `created_at +
    /// lifetimes.max_lifetime`; past it the session answers
    /// [`Rotation::Expired`].
    ///
    /// # Errors
    /// Database errors; every kind of bad token is `Ok(Rotation::Invalid)`.
    pub async fn rotate_refresh_token(
        &self,
        presented: &str,
        lifetimes: SessionLifetimes,
        at: SystemTime,
    ) -> Result<Rotation, StorageError> {
        let hash = token_hash(presented);
        if let Some(rotated) = self.rotate_at_once(&hash, lifetimes, at).await? {
            return Ok(rotated);
        }
        self.write(hash, move |storage, conn, hash| {
            Box::pin(storage.rotate_tx(conn, hash, lifetimes, at))
        })
        .await
    }

    /// PostgreSQL: the rotation of a live token of a live session in one
    /// statement, one round trip instead of four. `None` (nothing written)
    /// for any other case (a retired, expired or unknown token, a revoked or
    /// ended session, a rotation racing this one), which `rotate_tx` then
    /// sorts out. SQLite always takes `rotate_tx`: its statements are
    /// function calls on the writer's thread.
    async fn rotate_at_once(
        &self,
        hash: &[u8],
        lifetimes: SessionLifetimes,
        at: SystemTime,
    ) -> Result<Option<Rotation>, StorageError> {
        if self.engine() != Engine::Postgres {
            return Ok(None);
        }
        let token = random_token();
        let max_lifetime = i64::try_from(lifetimes.max_lifetime.as_millis())
            .map_or(i64::MAX / 4, |m| m.min(i64::MAX / 4));
        // The session row is locked first, as in `rotate_tx`. After a wait
        // the token's `retired_at` may be stale in `live`, but the UPDATE of
        // `retired` re-checks it on the row's latest version: a token a
        // concurrent rotation retired updates nothing, and nothing after it
        // runs.
        let statement = query(concat!(
            "WITH live AS (SELECT r.generation, ",
            session_columns!(),
            ", LEAST($3::bigint, s.created_at + $4::bigint) AS new_expires_at \
             FROM refresh_tokens r JOIN sessions s ON s.session_id = r.session_id \
             WHERE r.token_hash = $2 AND r.retired_at IS NULL AND r.expires_at > $1 \
             AND s.revoked_at IS NULL AND s.expires_at > $1 AND s.created_at + $4::bigint > $1 \
             FOR UPDATE OF s), \
             retired AS (UPDATE refresh_tokens SET retired_at = $1 FROM live \
             WHERE refresh_tokens.token_hash = $2 AND refresh_tokens.retired_at IS NULL \
             RETURNING live.session_id, live.generation, live.new_expires_at), \
             issued AS (INSERT INTO refresh_tokens (token_hash, session_id, generation, \
             created_at, expires_at) SELECT $5, session_id, generation + 1, $1, new_expires_at \
             FROM retired RETURNING session_id), \
             slid AS (UPDATE sessions SET expires_at = retired.new_expires_at \
             FROM retired JOIN issued ON issued.session_id = retired.session_id \
             WHERE sessions.session_id = retired.session_id) \
             SELECT live.*, retired.new_expires_at AS rotated_expires_at \
             FROM live JOIN retired ON retired.session_id = live.session_id"
        ))
        .bind(millis(at))
        .bind(hash.to_vec())
        .bind(millis_after(at, lifetimes.refresh_ttl))
        .bind(max_lifetime)
        .bind(token_hash(token.expose_secret()));
        let row = self
            .write_autocommit(statement, |_, conn, statement| {
                Box::pin(async move { Ok(statement.clone().fetch_optional(conn).await?) })
            })
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let session = session_from_row(&row)?;
        let expires_at = get_i64(&row, "rotated_expires_at")?;
        Ok(Some(Rotation::Rotated(issued(session, token, expires_at))))
    }

    async fn rotate_tx(
        &self,
        conn: &mut dyn Conn,
        hash: &[u8],
        lifetimes: SessionLifetimes,
        at: SystemTime,
    ) -> Result<Rotation, DbFailure> {
        // Only the session row is locked: every rotation of a session takes
        // that one lock first, so they run one at a time and never deadlock.
        // After a wait PostgreSQL re-reads the locked row only, so the token
        // columns may be stale; the one that can change, `retired_at`, only
        // goes from unset to set, and every write below is guarded by it and
        // checked, so a stale read runs the transaction again.
        let row = query(crate::db::locking_sql!(
            self.engine(),
            concat!(
                "SELECT r.generation, r.expires_at AS token_expires_at, r.retired_at, ",
                session_columns!(),
                " FROM refresh_tokens r JOIN sessions s ON s.session_id = r.session_id \
                 WHERE r.token_hash = $1"
            ),
            // Only the sessions row of the join.
            " FOR UPDATE OF s"
        ))
        .bind(hash.to_vec())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(Rotation::Invalid);
        };
        let session = session_from_row(&row)?;
        let now = millis(at);
        if session.revoked_at.is_some() {
            return Ok(Rotation::Invalid);
        }
        let ends_at = millis_after(session.created_at, lifetimes.max_lifetime);
        if now >= ends_at {
            return Ok(Rotation::Expired {
                session_id: session.session_id,
            });
        }
        if millis(session.expires_at) <= now || get_i64(&row, "token_expires_at")? <= now {
            return Ok(Rotation::Invalid);
        }
        let generation = get_i64(&row, "generation")?;
        let expires_at = millis_after(at, lifetimes.refresh_ttl).min(ends_at);
        let Some(retired_at) = get_opt_i64(&row, "retired_at")? else {
            let refresh_token = self
                .advance_generation(
                    conn,
                    hash,
                    &session.session_id,
                    generation + 1,
                    expires_at,
                    at,
                )
                .await?;
            return Ok(Rotation::Rotated(issued(
                session,
                refresh_token,
                expires_at,
            )));
        };
        // A zero grace is none at all (the comparison alone would let a
        // token retired this very millisecond through).
        let grace = i64::try_from(lifetimes.reuse_grace.as_millis()).unwrap_or(i64::MAX);
        if grace > 0
            && now.saturating_sub(retired_at) <= grace
            && let Some(refresh_token) = self
                .grace_tx(conn, &session, generation, expires_at, at)
                .await?
        {
            return Ok(Rotation::Grace(issued(session, refresh_token, expires_at)));
        }
        revoke_in_tx(
            conn,
            &session.session_id,
            "refresh_token_reuse",
            "refresh",
            at,
        )
        .await?;
        tracing::warn!(session_id = %session.session_id, "retired refresh token presented: session revoked");
        Ok(Rotation::Reused {
            session_id: session.session_id,
        })
    }

    /// Generation `presented` was retired within the grace: when generation
    /// `presented + 1` is still the session's live one (its answer was most
    /// likely lost), retires it and issues `presented + 2`, so the session
    /// keeps exactly one live token. `None` when a later rotation happened:
    /// the presented token is then older than the previous generation.
    async fn grace_tx(
        &self,
        conn: &mut dyn Conn,
        session: &SessionRecord,
        presented: i64,
        expires_at: i64,
        at: SystemTime,
    ) -> Result<Option<SecretString>, DbFailure> {
        let live = query(
            "SELECT token_hash FROM refresh_tokens \
             WHERE session_id = $1 AND generation = $2 AND retired_at IS NULL",
        )
        .bind(session.session_id.to_string())
        .bind(presented + 1)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(live) = live else {
            return Ok(None);
        };
        let live_hash = get_bytes(&live, "token_hash")?;
        let refresh_token = self
            .advance_generation(
                conn,
                &live_hash,
                &session.session_id,
                presented + 2,
                expires_at,
                at,
            )
            .await?;
        audit::record(
            conn,
            at,
            "refresh",
            "refresh_grace",
            Some(&session.user_id),
            None,
            serde_json::json!({
                "session_id": session.session_id.to_string(),
                "presented_generation": presented,
                "issued_generation": presented + 2,
            }),
        )
        .await?;
        tracing::info!(session_id = %session.session_id, "previous refresh token presented within the reuse grace: reissued");
        Ok(Some(refresh_token))
    }

    /// Retires the token `retiring_hash`, issues generation `generation`
    /// expiring at `expires_at`, and moves the session's expiry there: one
    /// round trip (three statements on SQLite, one with data-modifying CTEs
    /// on PostgreSQL). A token already retired changes nothing and runs the
    /// transaction again.
    async fn advance_generation(
        &self,
        conn: &mut dyn Conn,
        retiring_hash: &[u8],
        session_id: &SessionId,
        generation: i64,
        expires_at: i64,
        at: SystemTime,
    ) -> Result<SecretString, DbFailure> {
        let token = random_token();
        let (sql, expected) = match self.engine() {
            Engine::Sqlite => (
                "UPDATE refresh_tokens SET retired_at = $1 WHERE token_hash = $2 AND retired_at IS NULL; \
                 INSERT INTO refresh_tokens (token_hash, session_id, generation, created_at, expires_at) \
                 VALUES ($3, $4, $5, $1, $6); \
                 UPDATE sessions SET expires_at = $6 WHERE session_id = $4",
                3,
            ),
            Engine::Postgres => (
                "WITH retired AS (UPDATE refresh_tokens SET retired_at = $1 \
                 WHERE token_hash = $2 AND retired_at IS NULL RETURNING session_id), \
                 issued AS (INSERT INTO refresh_tokens (token_hash, session_id, generation, created_at, expires_at) \
                 SELECT $3, session_id, $5, $1, $6 FROM retired RETURNING session_id) \
                 UPDATE sessions SET expires_at = $6 FROM issued \
                 WHERE sessions.session_id = issued.session_id AND sessions.session_id = $4",
                1,
            ),
        };
        let changed = query(sql)
            .bind(millis(at))
            .bind(retiring_hash.to_vec())
            .bind(token_hash(token.expose_secret()))
            .bind(session_id.to_string())
            .bind(generation)
            .bind(expires_at)
            .execute(conn)
            .await?
            .rows_affected();
        if changed != expected {
            // A stale read of the token (see `rotate_tx`): never commit half
            // of it, run it again on fresh rows.
            tracing::debug!(
                changed,
                "refresh token rotation changed an unexpected number of rows"
            );
            return Err(DbFailure::Retry);
        }
        Ok(token)
    }

    /// A session by id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn session(
        &self,
        session_id: &SessionId,
    ) -> Result<Option<SessionRecord>, StorageError> {
        let row = query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.session_id = $1"
        ))
        .bind(session_id.to_string())
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Revokes a session; `false` when unknown or already revoked.
    ///
    /// # Errors
    /// Database errors.
    pub async fn revoke_session(
        &self,
        session_id: &SessionId,
        reason: &str,
        actor: &str,
        at: SystemTime,
    ) -> Result<bool, StorageError> {
        let input = (*session_id, reason.to_owned(), actor.to_owned());
        self.write(input, move |_, conn, (session_id, reason, actor)| {
            Box::pin(async move { Ok(revoke_in_tx(conn, session_id, reason, actor, at).await?) })
        })
        .await
    }

    /// Revokes the session a refresh token (of any generation) belongs to.
    ///
    /// # Errors
    /// Database errors.
    pub async fn revoke_by_refresh_token(
        &self,
        presented: &str,
        reason: &str,
        actor: &str,
        at: SystemTime,
    ) -> Result<bool, StorageError> {
        let hash = token_hash(presented);
        let input = (hash, reason.to_owned(), actor.to_owned());
        self.write(input, move |_, conn, (hash, reason, actor)| {
            Box::pin(async move {
                let row = query("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
                    .bind(hash.clone())
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(row) = row else { return Ok(false) };
                let session_id = get_session_id(&row, "session_id")?;
                Ok(revoke_in_tx(conn, &session_id, reason, actor, at).await?)
            })
        })
        .await
    }

    async fn create_session_tx(
        &self,
        conn: &mut dyn Conn,
        new: &NewSession,
    ) -> Result<IssuedSession, DbFailure> {
        let user_known = query("SELECT 1 FROM users WHERE user_id = $1")
            .bind(new.user_id.to_string())
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
        if !user_known {
            return Err(DbFailure::Fatal(StorageError::NotFound(Entity::User)));
        }
        self.open_session_tx(conn, new).await
    }

    /// [`Storage::create_session`] once the user is known to exist.
    pub(crate) async fn open_session_tx(
        &self,
        conn: &mut dyn Conn,
        new: &NewSession,
    ) -> Result<IssuedSession, DbFailure> {
        let FreshSession {
            session_id,
            expires_at,
            token,
        } = FreshSession::for_login(new.at, new.lifetimes);
        // The identity must (still) belong to the user: a merge or a bind
        // may have moved it since the caller looked. The session and its
        // first refresh token go in one round trip, both or neither.
        let (sql, expected) = match self.engine() {
            Engine::Sqlite => (
                "INSERT INTO sessions (session_id, user_id, app_id, openid, created_at, expires_at) \
                 SELECT $1, user_id, app_id, openid, $5, $6 FROM identities \
                 WHERE user_id = $2 AND app_id = $3 AND openid = $4; \
                 INSERT INTO refresh_tokens (token_hash, session_id, generation, created_at, expires_at) \
                 SELECT $7, session_id, 1, $5, $6 FROM sessions WHERE session_id = $1",
                2,
            ),
            Engine::Postgres => (
                "WITH opened AS (INSERT INTO sessions (session_id, user_id, app_id, openid, created_at, expires_at) \
                 SELECT $1, user_id, app_id, openid, $5, $6 FROM identities \
                 WHERE user_id = $2 AND app_id = $3 AND openid = $4 RETURNING session_id) \
                 INSERT INTO refresh_tokens (token_hash, session_id, generation, created_at, expires_at) \
                 SELECT $7, session_id, 1, $5, $6 FROM opened",
                1,
            ),
        };
        let inserted = query(sql)
            .bind(session_id.to_string())
            .bind(new.user_id.to_string())
            .bind(new.app_id.to_string())
            .bind(new.openid.to_string())
            .bind(millis(new.at))
            .bind(expires_at)
            .bind(token_hash(token.expose_secret()))
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if inserted != expected {
            return Err(DbFailure::Fatal(StorageError::NotFound(Entity::Identity)));
        }
        Ok(FreshSession {
            session_id,
            expires_at,
            token,
        }
        .issued(new.user_id, &new.app_id, &new.openid, new.at))
    }
}

/// What a new session is opened with: its id, the expiry of it and of its
/// first refresh token, and that token.
pub(crate) struct FreshSession {
    pub(crate) session_id: SessionId,
    pub(crate) expires_at: i64,
    pub(crate) token: SecretString,
}

impl FreshSession {
    /// A session opened at `at`: its first token lives `refresh_ttl`, never
    /// beyond the session's `max_lifetime`.
    pub(crate) fn for_login(at: SystemTime, lifetimes: SessionLifetimes) -> Self {
        Self {
            session_id: SessionId::generate(),
            expires_at: millis_after(at, lifetimes.refresh_ttl)
                .min(millis_after(at, lifetimes.max_lifetime)),
            token: random_token(),
        }
    }

    /// The session as opened for `user_id` through `(app_id, openid)`.
    pub(crate) fn issued(
        self,
        user_id: UserId,
        app_id: &AppId,
        openid: &OpenId,
        at: SystemTime,
    ) -> IssuedSession {
        IssuedSession {
            session: SessionRecord {
                session_id: self.session_id,
                user_id,
                app_id: app_id.clone(),
                openid: openid.clone(),
                created_at: time(millis(at)),
                expires_at: time(self.expires_at),
                revoked_at: None,
            },
            refresh_token: self.token,
            refresh_expires_at: time(self.expires_at),
        }
    }
}

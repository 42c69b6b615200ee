//! The encrypted WeChat credentials of each identity: the mini program
//! `session_key` and the web OAuth tokens.

use std::time::SystemTime;

use crate::sql::{Conn, query};
use secrecy::SecretString;
use wechat_types::{AppId, OpenId};

use crate::Storage;
use crate::db::{get_app_id, get_opt_bytes, get_opt_string, get_opt_time, get_time, millis};
use crate::error::{DbFailure, Entity, StorageError};
use crate::types::{UserId, WebAuthorization, WebTokens};

pub(crate) fn credential_aad(column: &str, app_id: &AppId, openid: &OpenId) -> String {
    format!("wechat_credentials.{column}:{app_id}:{openid}")
}

impl Storage {
    pub(crate) async fn write_session_key(
        &self,
        conn: &mut dyn Conn,
        app_id: &AppId,
        openid: &OpenId,
        session_key: &SecretString,
        at: SystemTime,
    ) -> Result<(), StorageError> {
        let sealed = self.seal_session_key(app_id, openid, session_key)?;
        query(
            "INSERT INTO wechat_credentials (app_id, openid, session_key, session_key_updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (app_id, openid) DO UPDATE SET \
             session_key = excluded.session_key, session_key_updated_at = excluded.session_key_updated_at",
        )
        .bind(app_id.to_string())
        .bind(openid.to_string())
        .bind(sealed)
        .bind(millis(at))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// A session_key encrypted for its identity's row.
    pub(crate) fn seal_session_key(
        &self,
        app_id: &AppId,
        openid: &OpenId,
        session_key: &SecretString,
    ) -> Result<Vec<u8>, StorageError> {
        self.keys()
            .encrypt_str(&credential_aad("session_key", app_id, openid), session_key)
    }

    pub(crate) async fn write_web_tokens(
        &self,
        conn: &mut dyn Conn,
        app_id: &AppId,
        openid: &OpenId,
        tokens: &WebTokens,
        at: SystemTime,
    ) -> Result<(), StorageError> {
        let keys = self.keys();
        let access = keys.encrypt_str(
            &credential_aad("web_access_token", app_id, openid),
            &tokens.access_token,
        )?;
        let refresh = keys.encrypt_str(
            &credential_aad("web_refresh_token", app_id, openid),
            &tokens.refresh_token,
        )?;
        query(
            "INSERT INTO wechat_credentials (app_id, openid, web_access_token, web_access_expires_at, \
             web_refresh_token, web_refresh_expires_at, web_scope, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (app_id, openid) DO UPDATE SET \
             web_access_token = excluded.web_access_token, \
             web_access_expires_at = excluded.web_access_expires_at, \
             web_refresh_token = excluded.web_refresh_token, \
             web_refresh_expires_at = excluded.web_refresh_expires_at, \
             web_scope = excluded.web_scope, last_used_at = excluded.last_used_at",
        )
        .bind(app_id.to_string())
        .bind(openid.to_string())
        .bind(access)
        .bind(millis(tokens.access_expires_at))
        .bind(refresh)
        .bind(millis(tokens.refresh_expires_at))
        .bind(tokens.scope.clone())
        .bind(millis(at))
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The mini program `session_key` of an identity, decrypted.
    ///
    /// # Errors
    /// Database or key errors; none stored is `Ok(None)`.
    pub async fn session_key(
        &self,
        app_id: &AppId,
        openid: &OpenId,
    ) -> Result<Option<SecretString>, StorageError> {
        let row =
            query("SELECT session_key FROM wechat_credentials WHERE app_id = $1 AND openid = $2")
                .bind(app_id.to_string())
                .bind(openid.to_string())
                .fetch_optional(self.reader())
                .await?;
        let Some(sealed) = row
            .map(|row| get_opt_bytes(&row, "session_key"))
            .transpose()?
            .flatten()
        else {
            return Ok(None);
        };
        self.keys()
            .decrypt_str(&credential_aad("session_key", app_id, openid), &sealed)
            .map(Some)
    }

    /// The web OAuth tokens of the user's most recently used identity whose
    /// scope grants user info (`snsapi_userinfo` or `snsapi_login`).
    ///
    /// # Errors
    /// Database or key errors.
    pub async fn latest_web_authorization(
        &self,
        user_id: &UserId,
    ) -> Result<Option<WebAuthorization>, StorageError> {
        let row = query(
            "SELECT c.app_id, c.openid, c.web_access_token, c.web_access_expires_at, \
             c.web_refresh_token, c.web_refresh_expires_at, c.web_scope, c.last_used_at \
             FROM wechat_credentials c JOIN identities i \
             ON i.app_id = c.app_id AND i.openid = c.openid \
             WHERE i.user_id = $1 AND c.web_access_token IS NOT NULL \
             AND c.web_refresh_token IS NOT NULL AND c.last_used_at IS NOT NULL \
             AND (c.web_scope LIKE '%snsapi_userinfo%' OR c.web_scope LIKE '%snsapi_login%') \
             ORDER BY c.last_used_at DESC, c.app_id LIMIT 1",
        )
        .bind(user_id.to_string())
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let app_id = get_app_id(&row, "app_id")?;
        let openid = crate::db::get_openid(&row, "openid")?;
        let missing = || crate::db::corrupt("web tokens");
        let access = get_opt_bytes(&row, "web_access_token")?.ok_or_else(missing)?;
        let refresh = get_opt_bytes(&row, "web_refresh_token")?.ok_or_else(missing)?;
        let keys = self.keys();
        let tokens = WebTokens {
            access_token: keys.decrypt_str(
                &credential_aad("web_access_token", &app_id, &openid),
                &access,
            )?,
            access_expires_at: get_opt_time(&row, "web_access_expires_at")?.ok_or_else(missing)?,
            refresh_token: keys.decrypt_str(
                &credential_aad("web_refresh_token", &app_id, &openid),
                &refresh,
            )?,
            refresh_expires_at: get_opt_time(&row, "web_refresh_expires_at")?
                .ok_or_else(missing)?,
            scope: get_opt_string(&row, "web_scope")?.unwrap_or_default(),
        };
        Ok(Some(WebAuthorization {
            app_id,
            openid,
            tokens,
            last_used_at: get_time(&row, "last_used_at")?,
        }))
    }

    /// Replaces an identity's web OAuth tokens (after a refresh) and marks them used.
    ///
    /// # Errors
    /// `NotFound("identity")` for an unknown identity.
    pub async fn store_web_tokens(
        &self,
        app_id: &AppId,
        openid: &OpenId,
        tokens: &WebTokens,
        at: SystemTime,
    ) -> Result<(), StorageError> {
        let input = (app_id.clone(), openid.clone(), tokens.clone());
        self.write(input, move |storage, conn, (app_id, openid, tokens)| {
            Box::pin(async move {
                let exists = query("SELECT 1 FROM identities WHERE app_id = $1 AND openid = $2")
                    .bind(app_id.to_string())
                    .bind(openid.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                if exists.is_none() {
                    return Err(DbFailure::Fatal(StorageError::NotFound(Entity::Identity)));
                }
                storage
                    .write_web_tokens(conn, app_id, openid, tokens, at)
                    .await?;
                Ok(())
            })
        })
        .await
    }
}

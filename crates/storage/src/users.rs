//! Users: profile, phone (encrypted, with an HMAC lookup hash) and lookups.

use std::time::SystemTime;

use crate::error::DbError;
use crate::sql::{Conn, Row, query};
use serde::{Deserialize, Serialize};
use wechat_types::UnionId;

use crate::Storage;
use crate::columns::user_profile_columns;
use crate::crypto::LookupKey;
use crate::db::{
    corrupt, get_app_id, get_i64, get_openid, get_opt_bytes, get_opt_string, get_opt_unionid,
    get_string, get_time, get_user_id, millis,
};
use crate::error::{DbFailure, Entity, StorageError};
use crate::profile_epoch::touched;
use crate::types::{
    AppKind, LinkedIdentity, Phone, ProfileFields, UserId, UserLookup, UserProfile,
};

/// A profile query: the user's columns and each linked identity's, one row per
/// identity in link order (a user without identities is one row, its identity
/// columns NULL), for the users matching `$condition`.
macro_rules! profile_query {
    ($condition:literal) => {
        concat!(
            "SELECT u.user_id, u.external_id, ",
            $crate::columns::user_profile_columns!(),
            ", u.phone_ciphertext, u.created_at, u.updated_at, \
             i.app_id, i.openid, i.unionid, i.app_kind, i.scope, i.is_snapshot, i.linked_at, \
             i.last_login_at \
             FROM users u LEFT JOIN identities i ON i.user_id = u.user_id WHERE ",
            $condition,
            " ORDER BY i.linked_at, i.app_id, i.openid"
        )
    };
}

/// The stored (encrypted) form of a phone number.
#[derive(Serialize, Deserialize)]
struct StoredPhone {
    phone_number: String,
    pure_phone_number: String,
    country_code: String,
}

pub(crate) fn phone_aad(user_id: &UserId) -> String {
    format!("users.phone_ciphertext:{user_id}")
}

pub(crate) fn phone_hash(key: &LookupKey, pure_phone_number: &str, country_code: &str) -> Vec<u8> {
    key.hash(
        "phone",
        &[country_code.trim_start_matches('+'), pure_phone_number],
    )
}

/// Inserts an empty user.
pub(crate) async fn insert_user(
    conn: &mut dyn Conn,
    user_id: &UserId,
    external_id: Option<&str>,
    at: SystemTime,
) -> Result<(), DbError> {
    touched(user_id);
    query(
        "INSERT INTO users (user_id, external_id, created_at, updated_at) VALUES ($1, $2, $3, $3)",
    )
    .bind(user_id.to_string())
    .bind(external_id.map(str::to_owned))
    .bind(millis(at))
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces a user's profile fields.
pub(crate) async fn write_profile(
    conn: &mut dyn Conn,
    user_id: &UserId,
    profile: &ProfileFields,
    at: SystemTime,
) -> Result<u64, DbError> {
    touched(user_id);
    let privileges = serde_json::to_string(&profile.privileges).unwrap_or_else(|_| "[]".into());
    let done = query(concat!(
        "UPDATE users SET (",
        user_profile_columns!(),
        ", profile_updated_at, updated_at) = ($1, $2, $3, $4, $5, $6, $7, $8, $8) WHERE user_id = $9",
    ))
    .bind(profile.nickname.clone())
    .bind(profile.avatar_url.clone())
    .bind(i64::from(profile.sex.min(2)))
    .bind(profile.province.clone())
    .bind(profile.city.clone())
    .bind(profile.country.clone())
    .bind(privileges)
    .bind(millis(at))
    .bind(user_id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

impl Storage {
    /// Encrypts a phone for a user's row.
    pub(crate) async fn seal_phone(
        &self,
        user_id: &UserId,
        phone: &Phone,
    ) -> Result<(Vec<u8>, Vec<u8>), StorageError> {
        let stored = StoredPhone {
            phone_number: phone.phone_number.clone(),
            pure_phone_number: phone.pure_phone_number.clone(),
            country_code: phone.country_code.clone(),
        };
        let plain = serde_json::to_vec(&stored).map_err(|_| StorageError::Internal)?;
        let sealed = self.keys().encrypt(&phone_aad(user_id), &plain)?;
        let key = self.lookup_key().await?;
        Ok((
            sealed,
            phone_hash(key, &phone.pure_phone_number, &phone.country_code),
        ))
    }

    pub(crate) fn open_phone(
        &self,
        user_id: &UserId,
        sealed: &[u8],
    ) -> Result<Phone, StorageError> {
        let plain = self.keys().decrypt(&phone_aad(user_id), sealed)?;
        let stored: StoredPhone = serde_json::from_slice(&plain).map_err(|_| corrupt("phone"))?;
        Ok(Phone {
            phone_number: stored.phone_number,
            pure_phone_number: stored.pure_phone_number,
            country_code: stored.country_code,
        })
    }

    /// The user a lookup names, with identities and decrypted phone: one
    /// statement, except for a unionid (which may need two lookups first).
    ///
    /// # Errors
    /// Database or key errors; an unknown user is `Ok(None)`.
    pub async fn profile(&self, lookup: &UserLookup) -> Result<Option<UserProfile>, StorageError> {
        let rows =
            match lookup {
                UserLookup::UserId(user_id) => {
                    query(profile_query!("u.user_id = $1"))
                        .bind(user_id.to_string())
                        .fetch_all(self.reader())
                        .await?
                }
                UserLookup::ExternalId(external_id) => {
                    query(profile_query!("u.external_id = $1"))
                        .bind(external_id.clone())
                        .fetch_all(self.reader())
                        .await?
                }
                UserLookup::Identity { app_id, openid } => query(profile_query!(
                    "u.user_id = (SELECT user_id FROM identities WHERE app_id = $1 AND openid = $2)"
                ))
                .bind(app_id.to_string())
                .bind(openid.to_string())
                .fetch_all(self.reader())
                .await?,
                UserLookup::UnionId(unionid) => {
                    let mut conn = self.reader().acquire().await?;
                    let Some(user_id) = user_of_unionid(&mut conn, unionid).await? else {
                        return Ok(None);
                    };
                    return self.load_profile(&mut conn, &user_id).await;
                }
            };
        self.profile_from_rows(&rows)
    }

    /// Loads a full profile on `conn` (a reader, or a write transaction).
    pub(crate) async fn load_profile(
        &self,
        conn: &mut dyn Conn,
        user_id: &UserId,
    ) -> Result<Option<UserProfile>, StorageError> {
        let rows = query(profile_query!("u.user_id = $1"))
            .bind(user_id.to_string())
            .fetch_all(&mut *conn)
            .await?;
        self.profile_from_rows(&rows)
    }

    /// A profile from the rows of a [`profile_query!`]: the user's columns
    /// repeat on each row, one row per identity (or one with no identity).
    fn profile_from_rows(&self, rows: &[Row]) -> Result<Option<UserProfile>, StorageError> {
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let user_id = get_user_id(row, "user_id")?;
        let privileges: Vec<String> = serde_json::from_str(&get_string(row, "privileges")?)
            .map_err(|_| corrupt("privileges"))?;
        let profile = ProfileFields {
            nickname: get_string(row, "nickname")?,
            avatar_url: get_string(row, "avatar_url")?,
            sex: u8::try_from(get_i64(row, "sex")?).map_err(|_| corrupt("sex"))?,
            province: get_string(row, "province")?,
            city: get_string(row, "city")?,
            country: get_string(row, "country")?,
            privileges,
        };
        let phone = get_opt_bytes(row, "phone_ciphertext")?
            .map(|sealed| self.open_phone(&user_id, &sealed))
            .transpose()?;
        let mut identities = Vec::with_capacity(rows.len());
        for row in rows {
            if get_opt_string(row, "app_id")?.is_some() {
                identities.push(identity_from_row(row)?);
            }
        }
        let unionid = identities
            .iter()
            .find_map(|identity| identity.unionid.clone());
        Ok(Some(UserProfile {
            user_id,
            external_id: get_opt_string(row, "external_id")?,
            unionid,
            profile,
            phone,
            identities,
            created_at: get_time(row, "created_at")?,
            updated_at: get_time(row, "updated_at")?,
        }))
    }

    /// Stores a user's phone number, encrypted, with its lookup hash.
    ///
    /// # Errors
    /// `NotFound("user")` for an unknown user.
    pub async fn set_phone(
        &self,
        user_id: &UserId,
        phone: &Phone,
        at: SystemTime,
    ) -> Result<(), StorageError> {
        let (sealed, hash) = self.seal_phone(user_id, phone).await?;
        let input = (sealed, hash, user_id.to_string());
        let changed = *user_id;
        self.write_autocommit(input, move |_, conn, (sealed, hash, user_id)| {
            Box::pin(async move {
                touched(&changed);
                let done = query(
                    "UPDATE users SET phone_ciphertext = $1, phone_hash = $2, \
                     phone_updated_at = $3, updated_at = $3 WHERE user_id = $4",
                )
                .bind(sealed.clone())
                .bind(hash.clone())
                .bind(millis(at))
                .bind(user_id.clone())
                .execute(conn)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(DbFailure::Fatal(StorageError::NotFound(Entity::User)));
                }
                Ok(())
            })
        })
        .await
    }

    /// Replaces a user's profile fields.
    ///
    /// # Errors
    /// `NotFound("user")` for an unknown user.
    pub async fn update_profile(
        &self,
        user_id: &UserId,
        profile: &ProfileFields,
        at: SystemTime,
    ) -> Result<(), StorageError> {
        let input = (*user_id, profile.clone());
        self.write_autocommit(input, move |_, conn, (user_id, profile)| {
            Box::pin(async move {
                if write_profile(conn, user_id, profile, at).await? == 0 {
                    return Err(DbFailure::Fatal(StorageError::NotFound(Entity::User)));
                }
                Ok(())
            })
        })
        .await
    }

    /// Users whose phone is this number (by its HMAC, never by plaintext).
    ///
    /// # Errors
    /// Database or key errors.
    pub async fn user_by_phone(
        &self,
        pure_phone_number: &str,
        country_code: &str,
    ) -> Result<Vec<UserId>, StorageError> {
        let hash = phone_hash(self.lookup_key().await?, pure_phone_number, country_code);
        let rows = query("SELECT user_id FROM users WHERE phone_hash = $1 ORDER BY user_id")
            .bind(hash)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(|row| get_user_id(row, "user_id")).collect()
    }
}

/// The user holding a unionid: the `unionids` row, else any identity carrying it.
pub(crate) async fn user_of_unionid(
    conn: &mut dyn Conn,
    unionid: &UnionId,
) -> Result<Option<UserId>, StorageError> {
    let row = query("SELECT user_id FROM unionids WHERE unionid = $1")
        .bind(unionid.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = row {
        return get_user_id(&row, "user_id").map(Some);
    }
    let row = query(
        "SELECT user_id FROM identities WHERE unionid = $1 ORDER BY linked_at, app_id LIMIT 1",
    )
    .bind(unionid.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| get_user_id(&row, "user_id")).transpose()
}

/// A linked identity from a row that has one.
fn identity_from_row(row: &Row) -> Result<LinkedIdentity, StorageError> {
    Ok(LinkedIdentity {
        app_id: get_app_id(row, "app_id")?,
        app_kind: AppKind::parse(&get_string(row, "app_kind")?).map_err(|_| corrupt("app_kind"))?,
        openid: get_openid(row, "openid")?,
        unionid: get_opt_unionid(row, "unionid")?,
        scope: get_opt_string(row, "scope")?,
        is_snapshot: row.get::<i64>("is_snapshot")? != 0,
        linked_at: get_time(row, "linked_at")?,
        last_login_at: get_time(row, "last_login_at")?,
    })
}

impl Storage {
    /// Sets (or clears) a user's external id directly, audited as a bind.
    ///
    /// # Errors
    /// `NotFound("user")` for an unknown user; `AlreadyExists("external_id")`
    /// when another user holds it (the database's unique constraint decides).
    pub async fn set_external_id(
        &self,
        user_id: &UserId,
        external_id: Option<&str>,
        actor: &str,
        at: SystemTime,
    ) -> Result<(), StorageError> {
        let input = (*user_id, external_id.map(str::to_owned), actor.to_owned());
        self.write(input, move |_, conn, (user_id, external_id, actor)| {
            Box::pin(async move {
                touched(user_id);
                let done =
                    query("UPDATE users SET external_id = $1, updated_at = $2 WHERE user_id = $3")
                        .bind(external_id.clone())
                        .bind(millis(at))
                        .bind(user_id.to_string())
                        .execute(&mut *conn)
                        .await?;
                if done.rows_affected() == 0 {
                    return Err(DbFailure::Fatal(StorageError::NotFound(Entity::User)));
                }
                crate::audit::record(
                    conn,
                    at,
                    actor,
                    "bind",
                    Some(user_id),
                    None,
                    serde_json::json!({ "external_id_set": external_id.is_some() }),
                )
                .await?;
                Ok(())
            })
        })
        .await
    }
}

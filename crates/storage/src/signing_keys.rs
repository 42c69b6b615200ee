//! Signing keys of the session JWTs, private halves encrypted.

use std::time::SystemTime;

use secrecy::SecretBox;

use crate::db::{get_opt_bytes, get_opt_time, get_string, get_time, millis};
use crate::error::StorageError;
use crate::sql::query;
use crate::types::SigningKey;
use crate::{Engine, Storage};

pub(crate) fn private_key_aad(kid: &str) -> String {
    format!("signing_keys.private_key:{kid}")
}

impl Storage {
    /// Keys not retired, newest first, private keys decrypted.
    ///
    /// # Errors
    /// Database or key errors.
    pub async fn active_signing_keys(&self) -> Result<Vec<SigningKey>, StorageError> {
        let rows = query(
            "SELECT kid, private_key, public_jwk, created_at, retired_at FROM signing_keys \
             WHERE retired_at IS NULL ORDER BY created_at DESC, kid",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                let kid = get_string(row, "kid")?;
                let sealed = get_opt_bytes(row, "private_key")?
                    .ok_or_else(|| crate::db::corrupt("private_key"))?;
                let private_key = self.keys().decrypt(&private_key_aad(&kid), &sealed)?;
                Ok(SigningKey {
                    private_key: SecretBox::new(Box::new(private_key)),
                    public_jwk: get_string(row, "public_jwk")?,
                    created_at: get_time(row, "created_at")?,
                    retired_at: get_opt_time(row, "retired_at")?,
                    kid,
                })
            })
            .collect()
    }

    /// Adds a signing key. Race-safe between replicas: when the kid exists
    /// already the call does nothing, and everyone reads back the active keys.
    ///
    /// # Errors
    /// Database or key errors.
    pub async fn insert_signing_key(
        &self,
        kid: &str,
        private_key: &[u8],
        public_jwk: &str,
        at: SystemTime,
    ) -> Result<(), StorageError> {
        let sealed = self.keys().encrypt(&private_key_aad(kid), private_key)?;
        self.write_statement(
            query(
                "INSERT INTO signing_keys (kid, private_key, public_jwk, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (kid) DO NOTHING",
            )
            .bind(kid.to_owned())
            .bind(sealed)
            .bind(public_jwk.to_owned())
            .bind(millis(at)),
        )
        .await?;
        Ok(())
    }

    /// Adds the first signing key, unless an active one exists: replicas
    /// starting at once on an empty database all end up with the one key
    /// that won, instead of each signing with its own (a replica that read
    /// back only its own key could not verify the others' tokens). `false`
    /// when another key was there first.
    ///
    /// # Errors
    /// Database or key errors.
    pub async fn insert_first_signing_key(
        &self,
        kid: &str,
        private_key: &[u8],
        public_jwk: &str,
        at: SystemTime,
    ) -> Result<bool, StorageError> {
        let sealed = self.keys().encrypt(&private_key_aad(kid), private_key)?;
        let input = (kid.to_owned(), sealed, public_jwk.to_owned());
        self.write(input, move |storage, conn, (kid, sealed, public_jwk)| {
            Box::pin(async move {
                if storage.engine() == Engine::Postgres {
                    // SQLite's BEGIN IMMEDIATE already serialises writers.
                    query("SELECT pg_advisory_xact_lock(7318201946501)")
                        .execute(&mut *conn)
                        .await?;
                }
                let existing = query("SELECT 1 FROM signing_keys WHERE retired_at IS NULL LIMIT 1")
                    .fetch_optional(&mut *conn)
                    .await?;
                if existing.is_some() {
                    return Ok(false);
                }
                query(
                    "INSERT INTO signing_keys (kid, private_key, public_jwk, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(kid.clone())
                .bind(sealed.clone())
                .bind(public_jwk.clone())
                .bind(millis(at))
                .execute(conn)
                .await?;
                Ok(true)
            })
        })
        .await
    }

    /// Retires a signing key; `false` when unknown or already retired.
    ///
    /// # Errors
    /// Database errors.
    pub async fn retire_signing_key(
        &self,
        kid: &str,
        at: SystemTime,
    ) -> Result<bool, StorageError> {
        let changed = self
            .write_statement(
                query(
                    "UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL",
                )
                .bind(millis(at))
                .bind(kid.to_owned()),
            )
            .await?;
        Ok(changed == 1)
    }
}

//! Encryption at rest (AES-256-GCM with a key ring), lookup hashes and random
//! tokens.
//!
//! A ciphertext is `[key_id_len: u8][key_id][12-byte nonce][ciphertext + tag]`.
//! The associated data names the table, column and row the value belongs to, so
//! a ciphertext copied into another row or column fails to decrypt.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::Mac;
use rand::RngExt as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

use crate::error::StorageError;

const NONCE_LEN: usize = 12;

/// The encryption keys: one current key that encrypts new values, and older
/// keys that still decrypt what they wrote. Each key has an id stored beside
/// every value it encrypted.
pub struct KeyRing {
    current_id: String,
    ciphers: HashMap<String, Aes256Gcm>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.ciphers.keys().collect();
        ids.sort();
        f.debug_struct("KeyRing")
            .field("current_id", &self.current_id)
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A key ring from base64-encoded 32-byte keys.
    ///
    /// # Errors
    /// [`StorageError::Keys`] when a key is not base64 of exactly 32 bytes, a
    /// key id is empty or longer than 255 bytes, or an id appears twice.
    pub fn new(
        current: (String, SecretString),
        older: Vec<(String, SecretString)>,
    ) -> Result<Self, StorageError> {
        let current_id = current.0.clone();
        let mut ciphers = HashMap::new();
        for (id, key) in std::iter::once(current).chain(older) {
            if id.is_empty() || id.len() > usize::from(u8::MAX) {
                return Err(StorageError::Keys(
                    "a key id must be 1 to 255 bytes".to_owned(),
                ));
            }
            let bytes = STANDARD
                .decode(key.expose_secret().trim())
                .map_err(|_| StorageError::Keys(format!("key {id:?} is not valid base64")))?;
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
                StorageError::Keys(format!("key {id:?} must be 32 bytes (AES-256)"))
            })?;
            let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(bytes));
            if ciphers.insert(id.clone(), cipher).is_some() {
                return Err(StorageError::Keys(format!("key id {id:?} appears twice")));
            }
        }
        Ok(Self {
            current_id,
            ciphers,
        })
    }

    /// A fresh random key, base64 encoded, for `KeyRing::new` or configuration.
    pub fn generate_key() -> SecretString {
        let bytes: [u8; 32] = rand::rng().random();
        SecretString::from(STANDARD.encode(bytes))
    }

    /// The id of the key that encrypts new values.
    pub fn current_key_id(&self) -> &str {
        &self.current_id
    }

    /// Whether `id` is one of the ring's keys.
    pub fn has_key(&self, id: &str) -> bool {
        self.ciphers.contains_key(id)
    }

    /// Encrypts `plaintext` with the current key, bound to `aad`.
    pub(crate) fn encrypt(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, StorageError> {
        let cipher = self
            .ciphers
            .get(&self.current_id)
            .ok_or_else(|| StorageError::Keys("the current key is missing".to_owned()))?;
        let nonce_bytes: [u8; NONCE_LEN] = rand::rng().random();
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StorageError::Internal)?;
        let id = self.current_id.as_bytes();
        let mut out = Vec::with_capacity(1 + id.len() + NONCE_LEN + sealed.len());
        // The id length fits: `new` refuses ids over 255 bytes.
        out.push(u8::try_from(id.len()).map_err(|_| StorageError::Internal)?);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a value written by [`KeyRing::encrypt`] with the same `aad`.
    pub(crate) fn decrypt(&self, aad: &str, stored: &[u8]) -> Result<Vec<u8>, StorageError> {
        let malformed = || StorageError::Keys("a stored ciphertext is malformed".to_owned());
        let (&id_len, rest) = stored.split_first().ok_or_else(malformed)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN + 16 {
            return Err(malformed());
        }
        let (id, rest) = rest.split_at(id_len);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let id = String::from_utf8_lossy(id);
        let cipher = self.ciphers.get(id.as_ref()).ok_or_else(|| {
            StorageError::Keys(format!(
                "data was encrypted with key id {id:?}, which is not in the key ring"
            ))
        })?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| malformed())?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                StorageError::Keys(format!(
                    "encryption key does not match the data (key id {id:?})"
                ))
            })
    }

    /// Encrypts a secret string.
    pub(crate) fn encrypt_str(
        &self,
        aad: &str,
        secret: &SecretString,
    ) -> Result<Vec<u8>, StorageError> {
        self.encrypt(aad, secret.expose_secret().as_bytes())
    }

    /// Decrypts a secret string.
    pub(crate) fn decrypt_str(
        &self,
        aad: &str,
        stored: &[u8],
    ) -> Result<SecretString, StorageError> {
        let bytes = self.decrypt(aad, stored)?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| StorageError::Keys("a decrypted value is not UTF-8".to_owned()))
    }
}

/// The id of the key that encrypted `stored` (its bytes 1..=len), without
/// decrypting it; `None` for a value too short to be a ciphertext.
pub(crate) fn key_id_of(stored: &[u8]) -> Option<String> {
    let (&id_len, rest) = stored.split_first()?;
    let id_len = usize::from(id_len);
    if id_len == 0 || rest.len() < id_len + NONCE_LEN + 16 {
        return None;
    }
    Some(String::from_utf8_lossy(&rest[..id_len]).into_owned())
}

/// The HMAC-SHA256 key for lookup hashes (phone numbers, login codes). It is
/// random, made at first start and kept encrypted in `key_material`, so
/// rotating the encryption key does not change any lookup hash.
#[derive(Clone)]
pub(crate) struct LookupKey(std::sync::Arc<SecretBox<[u8; 32]>>);

impl fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LookupKey(<redacted>)")
    }
}

impl LookupKey {
    pub(crate) fn generate() -> Self {
        Self::from_bytes(rand::rng().random())
    }

    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(std::sync::Arc::new(SecretBox::new(Box::new(bytes))))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }

    /// HMAC-SHA256 over the parts, each length-prefixed so ("ab","c") and
    /// ("a","bc") differ.
    pub(crate) fn hash(&self, domain: &str, parts: &[&str]) -> Vec<u8> {
        let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.bytes())
            .expect("HMAC accepts keys of any length");
        for part in std::iter::once(domain).chain(parts.iter().copied()) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().to_vec()
    }
}

/// SHA-256 of a random bearer token (refresh token, ticket, state): the
/// tokens carry 190+ bits of entropy, so a plain hash is enough.
pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// URL-safe base64 (no padding) of 32 random bytes.
pub(crate) fn random_token() -> SecretString {
    let bytes: [u8; 32] = rand::rng().random();
    SecretString::from(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ring(id: &str, key: &SecretString) -> KeyRing {
        KeyRing::new((id.to_owned(), key.clone()), vec![]).unwrap()
    }

    #[test]
    fn ciphertext_is_bound_to_its_associated_data() {
        let keys = ring("k1", &KeyRing::generate_key());
        let sealed = keys.encrypt("users.phone:u1", b"secret").unwrap();
        assert_eq!(keys.decrypt("users.phone:u1", &sealed).unwrap(), b"secret");
        assert!(keys.decrypt("users.phone:u2", &sealed).is_err());
        assert_eq!(&sealed[1..3], b"k1");
        assert_eq!(key_id_of(&sealed).as_deref(), Some("k1"));
        assert_eq!(
            key_id_of(b"\x02k1"),
            None,
            "too short to hold a nonce and tag"
        );
        assert_eq!(key_id_of(b""), None);
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        let short = SecretString::from(STANDARD.encode([0u8; 16]));
        assert!(KeyRing::new(("k".into(), short), vec![]).is_err());
        assert!(KeyRing::new(("k".into(), SecretString::from("%%%")), vec![]).is_err());
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let key = KeyRing::generate_key();
        let printed = format!("{:?}", ring("k1", &key));
        assert!(printed.contains("k1"));
        assert!(!printed.contains(key.expose_secret()));
    }
}

//! Access tokens: compact JWTs signed with Ed25519 (`alg: EdDSA`, `kid` header).
//! Claims: `sub` (user_id), `sid` (session_id), `app`, `openid`, `iat`, `exp`,
//! `iss`, `aud`, and `jti`, 128 random bits that make every token unique
//! (Ed25519 signatures are deterministic, and the other claims repeat within
//! a second). Keys are shared by every replica through storage, so any
//! replica verifies what another signed; retired keys still verify until
//! their tokens have expired.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The longest token accepted for verification (the contract's field limit).
pub(crate) const MAX_TOKEN_LEN: usize = 4096;
/// How far in the future `iat` may be (clock skew between replicas).
const IAT_SKEW: Duration = Duration::from_secs(60);

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// The user_id.
    pub sub: String,
    /// The session_id.
    pub sid: String,
    /// The app the session was opened through.
    pub app: String,
    /// The user's openid in that app.
    pub openid: String,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expires at, unix seconds.
    pub exp: u64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The token's own id: base64url of 128 random bits ([`new_token_id`]).
    /// Tokens signed before it existed carry none and still verify.
    #[serde(default)]
    pub jti: String,
}

/// A fresh `jti`: 16 bytes from the thread's CSPRNG (seeded from the OS), as
/// unpadded base64url, 22 characters.
pub(crate) fn new_token_id() -> String {
    let bytes: [u8; 16] = rand::random();
    B64.encode(bytes)
}

/// Why a token did not verify; for logs and metrics only (callers just see inactive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.as_str())]
pub(crate) enum Rejection {
    /// Not three base64url parts of JSON, or too long.
    Malformed,
    /// `alg` is not EdDSA (this blocks `none` and HMAC-confusion tokens).
    Algorithm,
    /// No key with that `kid`.
    UnknownKey,
    /// The signature does not match.
    Signature,
    /// Expired, or issued in the future.
    Time,
    /// Another issuer or audience.
    Audience,
}

impl Rejection {
    /// The reason, for logs and metrics (`Display` prints it too).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Algorithm => "wrong algorithm",
            Rejection::UnknownKey => "unknown key",
            Rejection::Signature => "bad signature",
            Rejection::Time => "expired or not yet valid",
            Rejection::Audience => "wrong issuer or audience",
        }
    }
}

/// An Ed25519 signing key with its id.
#[derive(Debug)]
pub(crate) struct SigningKey {
    kid: String,
    pair: Ed25519KeyPair,
}

/// A key could not be made or read.
#[derive(Debug, thiserror::Error)]
#[error("ed25519 key: {0}")]
pub(crate) struct KeyError(&'static str);

impl SigningKey {
    /// A new random key, with its PKCS#8 document (to store, encrypted).
    ///
    /// # Errors
    /// The system random source failed.
    pub(crate) fn generate() -> Result<(Self, Vec<u8>), KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError("cannot generate"))?;
        let key = Self::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    /// Reads a key from its PKCS#8 document; its `kid` derives from the public key.
    ///
    /// # Errors
    /// The document is not an Ed25519 PKCS#8 key.
    pub(crate) fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| KeyError("not an Ed25519 PKCS#8 key"))?;
        let kid = key_id(pair.public_key().as_ref());
        Ok(Self { kid, pair })
    }

    /// Reads a key from PEM, as `openssl genpkey -algorithm ed25519` writes it
    /// (`-----BEGIN PRIVATE KEY-----`, PKCS#8 v1 or v2).
    ///
    /// # Errors
    /// Not PEM, or not an Ed25519 key.
    pub(crate) fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let body = pem
            .trim()
            .strip_prefix("-----BEGIN PRIVATE KEY-----")
            .and_then(|rest| rest.strip_suffix("-----END PRIVATE KEY-----"))
            .ok_or(KeyError("not a PEM '-----BEGIN PRIVATE KEY-----' block"))?;
        let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(base64)
            .map_err(|_| KeyError("the PEM body is not base64"))?;
        Self::from_pkcs8(&der)
    }

    /// The key id: base64url of the first 12 bytes of SHA-256 of the public key.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key, raw 32 bytes.
    pub(crate) fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key as a JWK (JSON text).
    pub(crate) fn public_jwk(&self) -> String {
        jwk(&self.kid, self.public_key()).to_string()
    }
}

fn jwk(kid: &str, public_key: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": B64.encode(public_key),
        "kid": kid, "use": "sig", "alg": "EdDSA",
    })
}

fn key_id(public_key: &[u8]) -> String {
    B64.encode(&Sha256::digest(public_key)[..12])
}

/// Signs with the current key and verifies with every published one.
#[derive(Debug)]
pub(crate) struct TokenKeys {
    current: SigningKey,
    verifiers: HashMap<String, Vec<u8>>,
    issuer: String,
    audience: String,
    jwks: String,
}

#[derive(Serialize, Deserialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

impl TokenKeys {
    /// Keys for `issuer` and `audience`: `current` signs, `current` and every
    /// public key in `also_verify` (retired keys, raw 32 bytes) verify.
    pub(crate) fn new(
        current: SigningKey,
        also_verify: Vec<Vec<u8>>,
        issuer: String,
        audience: String,
    ) -> Self {
        let mut verifiers: HashMap<String, Vec<u8>> = also_verify
            .into_iter()
            .map(|public| (key_id(&public), public))
            .collect();
        verifiers.insert(current.kid.clone(), current.public_key().to_vec());
        let keys: Vec<_> = verifiers
            .iter()
            .map(|(kid, public)| jwk(kid, public))
            .collect();
        let jwks = serde_json::json!({ "keys": keys }).to_string();
        Self {
            current,
            verifiers,
            issuer,
            audience,
            jwks,
        }
    }

    /// The JSON Web Key Set to publish at `/.well-known/jwks.json`.
    pub(crate) fn jwks(&self) -> &str {
        &self.jwks
    }

    /// The issuer and audience tokens carry.
    pub(crate) fn issuer_audience(&self) -> (&str, &str) {
        (&self.issuer, &self.audience)
    }

    /// A signed token for `claims`.
    pub(crate) fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "EdDSA",
            typ: "JWT",
            kid: &self.current.kid,
        };
        // Serializing these plain structs cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let signature = self.current.pair.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(signature.as_ref()))
    }

    /// The claims of a valid token at `now`.
    ///
    /// # Errors
    /// A [`Rejection`] saying why the token is not valid.
    pub(crate) fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, Rejection> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Rejection::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed);
        };
        let header_json = B64.decode(header_b64).map_err(|_| Rejection::Malformed)?;
        let header: Header<'_> =
            serde_json::from_slice(&header_json).map_err(|_| Rejection::Malformed)?;
        if header.alg != "EdDSA" {
            return Err(Rejection::Algorithm);
        }
        let public = self
            .verifiers
            .get(header.kid)
            .ok_or(Rejection::UnknownKey)?;
        let signature = B64
            .decode(signature_b64)
            .map_err(|_| Rejection::Malformed)?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        UnparsedPublicKey::new(&ED25519, public)
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| Rejection::Signature)?;
        let payload = B64.decode(payload_b64).map_err(|_| Rejection::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| Rejection::Malformed)?;
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if claims.exp <= now_secs || claims.iat > now_secs + IAT_SKEW.as_secs() {
            return Err(Rejection::Time);
        }
        if claims.iss != self.issuer || claims.aud != self.audience {
            return Err(Rejection::Audience);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        let (key, _) = SigningKey::generate().expect("key");
        TokenKeys::new(key, Vec::new(), "wechat-identity".into(), "internal".into())
    }

    fn claims(now: u64) -> Claims {
        Claims {
            sub: "0190c1e2-0000-7000-8000-000000000001".into(),
            sid: "0190c1e2-0000-7000-8000-000000000002".into(),
            app: "wxd000000000000001".into(),
            openid: "oAbc".into(),
            iat: now,
            exp: now + 7200,
            iss: "wechat-identity".into(),
            aud: "internal".into(),
            jti: new_token_id(),
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let keys = keys();
        let claims = claims(1_800_000_000);
        let token = keys.sign(&claims);
        assert_eq!(keys.verify(&token, at(1_800_000_100)), Ok(claims));
        assert_eq!(keys.verify(&token, at(1_800_007_200)), Err(Rejection::Time));
        assert_eq!(
            keys.verify(&token, at(1_799_999_000)),
            Err(Rejection::Time),
            "issued in the future"
        );
    }

    #[test]
    fn tokens_of_one_session_in_one_second_differ_by_their_jti() {
        let keys = keys();
        let first = claims(1_800_000_000);
        let second = Claims {
            jti: new_token_id(),
            ..first.clone()
        };
        assert_ne!(keys.sign(&first), keys.sign(&second));
        for jti in [&first.jti, &second.jti] {
            assert_eq!(jti.len(), 22, "{jti}");
            assert_eq!(B64.decode(jti).map(|bytes| bytes.len()), Ok(16), "{jti}");
        }
        assert_ne!(first.jti, second.jti);
    }

    #[test]
    fn a_token_signed_before_jti_existed_still_verifies() {
        let keys = keys();
        let mut claims = serde_json::to_value(claims(1_800_000_000)).expect("json");
        claims.as_object_mut().expect("object").remove("jti");
        let header = B64.encode(
            serde_json::to_vec(&Header {
                alg: "EdDSA",
                typ: "JWT",
                kid: &keys.current.kid,
            })
            .expect("json"),
        );
        let input = format!(
            "{header}.{}",
            B64.encode(serde_json::to_vec(&claims).expect("json"))
        );
        let signature = B64.encode(keys.current.pair.sign(input.as_bytes()).as_ref());
        let verified = keys
            .verify(&format!("{input}.{signature}"), at(1_800_000_001))
            .expect("verifies");
        assert_eq!(verified.jti, "");
    }

    #[test]
    fn tampered_foreign_and_malformed_tokens_are_rejected() {
        let keys = keys();
        let token = keys.sign(&claims(1_800_000_000));
        let now = at(1_800_000_001);
        let mut forged = claims(1_800_000_000);
        forged.sub = "someone-else".into();
        let forged_payload = B64.encode(serde_json::to_vec(&forged).expect("json"));
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(keys.verify(&tampered, now), Err(Rejection::Signature));
        assert_eq!(
            self::keys().verify(&token, now),
            Err(Rejection::UnknownKey),
            "another service's key"
        );
        let none_header = B64.encode(br#"{"alg":"none","typ":"JWT","kid":"x"}"#);
        assert_eq!(
            keys.verify(&format!("{none_header}.{}.", parts[1]), now),
            Err(Rejection::Algorithm)
        );
        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(
                keys.verify(junk, now),
                Err(Rejection::Malformed),
                "{junk:.20}"
            );
        }
    }

    #[test]
    fn a_token_for_another_audience_or_issuer_is_rejected() {
        let (key, pkcs8) = SigningKey::generate().expect("key");
        let ours = TokenKeys::new(key, Vec::new(), "wechat-identity".into(), "internal".into());
        let token = ours.sign(&claims(1_800_000_000));
        let now = at(1_800_000_001);
        let same_key = |iss: &str, aud: &str| {
            TokenKeys::new(
                SigningKey::from_pkcs8(&pkcs8).expect("key"),
                Vec::new(),
                iss.into(),
                aud.into(),
            )
        };
        assert!(
            same_key("wechat-identity", "internal")
                .verify(&token, now)
                .is_ok()
        );
        assert_eq!(
            same_key("wechat-identity", "elsewhere").verify(&token, now),
            Err(Rejection::Audience)
        );
        assert_eq!(
            same_key("someone-else", "internal").verify(&token, now),
            Err(Rejection::Audience)
        );
    }

    #[test]
    fn retired_keys_still_verify_and_are_published() {
        let (old, _) = SigningKey::generate().expect("key");
        let old_public = old.public_key().to_vec();
        let old_keys = TokenKeys::new(old, Vec::new(), "i".into(), "a".into());
        let token = old_keys.sign(&Claims {
            iss: "i".into(),
            aud: "a".into(),
            ..claims(1_800_000_000)
        });
        let (new, _) = SigningKey::generate().expect("key");
        let rotated = TokenKeys::new(new, vec![old_public], "i".into(), "a".into());
        assert!(rotated.verify(&token, at(1_800_000_001)).is_ok());
        let jwks: serde_json::Value = serde_json::from_str(rotated.jwks()).expect("json");
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
    }

    #[test]
    fn a_key_round_trips_through_pkcs8_with_a_stable_kid() {
        let (key, pkcs8) = SigningKey::generate().expect("key");
        let again = SigningKey::from_pkcs8(&pkcs8).expect("reads back");
        assert_eq!(key.kid(), again.kid());
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
    }

    #[test]
    fn a_key_from_openssl_pem_signs_tokens_that_verify() {
        // `openssl genpkey -algorithm ed25519`: PKCS#8 v1, a throwaway test key.
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEIJfhlgveE/cuFiEwq+xGRCFbRL3zLlV/2k+nuWfP5F7q\n\
                   -----END PRIVATE KEY-----\n";
        let key = SigningKey::from_pem(pem).expect("an Ed25519 PEM key");
        let kid = key.kid().to_owned();
        let keys = TokenKeys::new(key, vec![], "iss".into(), "aud".into());
        assert!(keys.jwks().contains(&kid));
        let token = keys.sign(&Claims {
            iss: "iss".into(),
            aud: "aud".into(),
            ..claims(1_800_000_000)
        });
        assert!(keys.verify(&token, at(1_800_000_001)).is_ok());
        for bad in [
            "",
            "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----",
            "MC4CAQAw",
        ] {
            assert!(SigningKey::from_pem(bad).is_err(), "{bad}");
        }
    }
}

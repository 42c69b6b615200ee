//! The mini program's legacy crypto (WECHAT_API.md §11): decrypting
//! `encryptedData`, checking `rawData` signatures, and the `checksession` signature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::{Digest, Sha1};
use sha2::Sha256;

use wechat_types::AppId;
use wechat_types::{SessionKey, constant_time_eq};

/// Why user data could not be decrypted or trusted. Messages never include the
/// key, the ciphertext or the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The session key is not base64 of 16 bytes.
    #[error("session_key is not base64 of 16 bytes")]
    BadSessionKey,
    /// The iv is not base64 of 16 bytes.
    #[error("iv is not base64 of 16 bytes")]
    BadIv,
    /// The encrypted data is not base64 of whole AES blocks.
    #[error("encryptedData is not base64 of whole AES blocks")]
    BadCiphertext,
    /// Decryption failed: wrong key (a stale session_key) or tampered data.
    #[error("decryption failed: wrong session_key or tampered data")]
    Decrypt,
    /// The plaintext is not a JSON object with a watermark.
    #[error("decrypted data is not the documented JSON")]
    BadPlaintext,
    /// The watermark names another app.
    #[error("watermark appid does not match this app")]
    WrongApp,
    /// The watermark timestamp is too old, or in the future.
    #[error("watermark timestamp is outside the accepted window")]
    Stale,
}

/// What the watermark inside decrypted data must show.
#[derive(Debug, Clone, Copy)]
pub struct WatermarkCheck<'a> {
    /// The app the data must have been issued to.
    pub app_id: &'a AppId,
    /// The current time.
    pub now: SystemTime,
    /// How old the data may be; `None` skips the age check (for replaying stored data).
    pub max_age: Option<Duration>,
}

/// Clock skew tolerated for a watermark from the future.
const FUTURE_SKEW: Duration = Duration::from_secs(300);

/// Decrypts `encryptedData` (AES-128-CBC, PKCS#7, key = base64-decoded
/// session_key) and checks its watermark.
///
/// # Errors
/// [`CryptoError`] for malformed input, a wrong key, or a watermark that fails `check`.
pub fn decrypt_user_data(
    session_key: &SessionKey,
    encrypted_data: &str,
    iv: &str,
    check: &WatermarkCheck<'_>,
) -> Result<serde_json::Value, CryptoError> {
    let key: [u8; 16] = decode_16(session_key.expose_secret()).ok_or(CryptoError::BadSessionKey)?;
    let iv: [u8; 16] = decode_16(iv).ok_or(CryptoError::BadIv)?;
    let ciphertext = STANDARD
        .decode(encrypted_data)
        .map_err(|_| CryptoError::BadCiphertext)?;
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(CryptoError::BadCiphertext);
    }
    let plaintext = cbc::Decryptor::<aes::Aes128>::new(&key.into(), &iv.into())
        .decrypt_padded_vec::<Pkcs7>(&ciphertext)
        .map_err(|_| CryptoError::Decrypt)?;
    let value: serde_json::Value =
        serde_json::from_slice(&plaintext).map_err(|_| CryptoError::BadPlaintext)?;
    let watermark = value.get("watermark").ok_or(CryptoError::BadPlaintext)?;
    let appid = watermark
        .get("appid")
        .and_then(|a| a.as_str())
        .ok_or(CryptoError::BadPlaintext)?;
    let timestamp = watermark
        .get("timestamp")
        .and_then(|t| t.as_i64())
        .ok_or(CryptoError::BadPlaintext)?;
    if !constant_time_eq(appid.as_bytes(), check.app_id.as_str().as_bytes()) {
        return Err(CryptoError::WrongApp);
    }
    if let Some(max_age) = check.max_age {
        let issued = UNIX_EPOCH
            + Duration::from_secs(u64::try_from(timestamp).map_err(|_| CryptoError::Stale)?);
        let too_old = check
            .now
            .duration_since(issued)
            .is_ok_and(|age| age > max_age);
        let from_future = issued
            .duration_since(check.now)
            .is_ok_and(|ahead| ahead > FUTURE_SKEW);
        if too_old || from_future {
            return Err(CryptoError::Stale);
        }
    }
    Ok(value)
}

/// `sha1(rawData + session_key)` in hex: the signature `wx.getUserInfo` returns.
pub fn raw_data_signature(raw_data: &str, session_key: &SessionKey) -> String {
    let mut hasher = Sha1::new();
    hasher.update(raw_data.as_bytes());
    hasher.update(session_key.expose_secret().as_bytes());
    hex::encode(hasher.finalize())
}

/// Checks a `rawData` signature in constant time.
pub fn verify_raw_data(raw_data: &str, session_key: &SessionKey, signature: &str) -> bool {
    let expected = raw_data_signature(raw_data, session_key);
    constant_time_eq(
        expected.as_bytes(),
        signature.to_ascii_lowercase().as_bytes(),
    )
}

/// The `signature` for `wxa/checksession`: HMAC-SHA256 keyed with the
/// session_key's base64 text (not decoded) over the empty string, in hex.
pub fn session_key_signature(session_key: &SessionKey) -> String {
    hmac_sha256_hex(session_key.expose_secret().as_bytes(), b"")
}

fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

fn decode_16(text: &str) -> Option<[u8; 16]> {
    STANDARD.decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The official sample from WeChat's signature/decryption doc (WECHAT_API.md §11).
    const SAMPLE_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const SAMPLE_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const SAMPLE_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
    const SAMPLE_APP: &str = "wx4f4bc4dec97d474b";
    const SAMPLE_TIME: u64 = 1_477_314_187;

    fn app(id: &str) -> AppId {
        AppId::new(id).expect("valid app id")
    }

    fn check(app_id: &AppId, now: u64, max_age: Option<Duration>) -> WatermarkCheck<'_> {
        WatermarkCheck {
            app_id,
            now: UNIX_EPOCH + Duration::from_secs(now),
            max_age,
        }
    }

    #[test]
    fn decrypts_the_official_sample() {
        let app_id = app(SAMPLE_APP);
        let data = decrypt_user_data(
            &SessionKey::new(SAMPLE_KEY),
            SAMPLE_DATA,
            SAMPLE_IV,
            &check(&app_id, SAMPLE_TIME + 60, Some(Duration::from_secs(3600))),
        )
        .expect("the official sample decrypts");
        assert_eq!(data["openId"], "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
        assert_eq!(data["watermark"]["appid"], SAMPLE_APP);
        assert_eq!(data["watermark"]["timestamp"], SAMPLE_TIME);
    }

    #[test]
    fn rejects_a_watermark_of_another_app() {
        let other = app("wx0000000000000000");
        let result = decrypt_user_data(
            &SessionKey::new(SAMPLE_KEY),
            SAMPLE_DATA,
            SAMPLE_IV,
            &check(&other, SAMPLE_TIME, None),
        );
        assert_eq!(result, Err(CryptoError::WrongApp));
    }

    #[test]
    fn rejects_stale_and_future_watermarks() {
        let app_id = app(SAMPLE_APP);
        let key = SessionKey::new(SAMPLE_KEY);
        let old = check(&app_id, SAMPLE_TIME + 7200, Some(Duration::from_secs(3600)));
        let early = check(&app_id, SAMPLE_TIME - 3600, Some(Duration::from_secs(3600)));
        assert_eq!(
            decrypt_user_data(&key, SAMPLE_DATA, SAMPLE_IV, &old),
            Err(CryptoError::Stale)
        );
        assert_eq!(
            decrypt_user_data(&key, SAMPLE_DATA, SAMPLE_IV, &early),
            Err(CryptoError::Stale)
        );
    }

    #[test]
    fn a_wrong_key_or_malformed_input_is_an_error_not_garbage() {
        let app_id = app(SAMPLE_APP);
        let c = check(&app_id, SAMPLE_TIME, None);
        let wrong = SessionKey::new("HyVFkGl5F5OQWJZZaNzBBg==");
        assert!(matches!(
            decrypt_user_data(&wrong, SAMPLE_DATA, SAMPLE_IV, &c),
            Err(CryptoError::Decrypt | CryptoError::BadPlaintext)
        ));
        assert_eq!(
            decrypt_user_data(&SessionKey::new("abc"), SAMPLE_DATA, SAMPLE_IV, &c),
            Err(CryptoError::BadSessionKey)
        );
        assert_eq!(
            decrypt_user_data(&SessionKey::new(SAMPLE_KEY), SAMPLE_DATA, "abc", &c),
            Err(CryptoError::BadIv)
        );
        assert_eq!(
            decrypt_user_data(&SessionKey::new(SAMPLE_KEY), "abc", SAMPLE_IV, &c),
            Err(CryptoError::BadCiphertext)
        );
        assert_eq!(
            decrypt_user_data(&SessionKey::new(SAMPLE_KEY), "", SAMPLE_IV, &c),
            Err(CryptoError::BadCiphertext)
        );
    }

    #[test]
    fn raw_data_signature_matches_the_documented_vector() {
        // WECHAT_API.md §11: session_key HyVFkGl5F5OQWJZZaNzBBg== signs this rawData to 75e81ced….
        let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
        let key = SessionKey::new("HyVFkGl5F5OQWJZZaNzBBg==");
        assert_eq!(
            raw_data_signature(raw, &key),
            "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
        );
        assert!(verify_raw_data(
            raw,
            &key,
            "75E81CEDA165F4FFA64F4068AF58C64B8F54B88C"
        ));
        assert!(!verify_raw_data(
            raw,
            &key,
            "75e81ceda165f4ffa64f4068af58c64b8f54b88d"
        ));
        assert!(!verify_raw_data(
            &format!("{raw} "),
            &key,
            "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
        ));
    }

    #[test]
    fn checksession_hmac_matches_the_documented_vector() {
        // WECHAT_API.md §11: hmac('{"foo":"bar"}', key 'o0q0otL8aEzpcZL/FT9WsQ==') = 654571f7…aa0b.
        let signature = hmac_sha256_hex(b"o0q0otL8aEzpcZL/FT9WsQ==", br#"{"foo":"bar"}"#);
        assert!(
            signature.starts_with("654571f7") && signature.ends_with("aa0b"),
            "{signature}"
        );
        assert_eq!(
            session_key_signature(&SessionKey::new("o0q0otL8aEzpcZL/FT9WsQ==")).len(),
            64
        );
    }
}

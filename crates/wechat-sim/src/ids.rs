//! Identifiers: deterministic ones (openid, unionid) and random ones (codes, tokens, rids).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngExt as _;
use sha2::{Digest, Sha256};

/// Characters of `wx.login` codes and OAuth codes.
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Characters of access and refresh tokens (real ones also carry `_` and `-`).
const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// A 28-character id shaped like WeChat's: `o` then 27 URL-safe base64 characters of a hash.
fn hashed_id(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join(":").as_bytes());
    let encoded = URL_SAFE_NO_PAD.encode(digest);
    format!("o{}", &encoded[..27])
}

/// The openid of `user` in `app_id`: "o" + 27 chars of URL-safe base64 of sha256(app_id ":" user).
pub(crate) fn openid(app_id: &str, user: &str) -> String {
    hashed_id(&[app_id, user])
}

/// The unionid of `user` under an Open Platform account: the same for every app bound to it.
pub(crate) fn unionid(open_platform: &str, user: &str) -> String {
    hashed_id(&["unionid", open_platform, user])
}

/// The virtual openid a snapshot-page user gets (WECHAT_API.md §1 snapshot mode).
pub(crate) fn snapshot_openid(app_id: &str, user: &str) -> String {
    hashed_id(&["snapshot-openid", app_id, user])
}

/// The virtual unionid a snapshot-page user gets (WECHAT_API.md §1 snapshot mode).
pub(crate) fn snapshot_unionid(open_platform: &str, user: &str) -> String {
    hashed_id(&["snapshot-unionid", open_platform, user])
}

fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// A one-time code as `wx.login`, the phone button or the authorize page would hand out.
pub(crate) fn code() -> String {
    random_from(ALPHANUMERIC, 32)
}

/// An app access token. WECHAT_API.md §8: reserve 512 characters; real ones are ~150.
pub(crate) fn app_access_token() -> String {
    format!(
        "{}_{}",
        rand::rng().random_range(80..100),
        random_from(TOKEN_CHARS, 154)
    )
}

/// A web OAuth access or refresh token.
pub(crate) fn oauth_token() -> String {
    format!(
        "{}_{}",
        rand::rng().random_range(80..100),
        random_from(TOKEN_CHARS, 107)
    )
}

/// A session_key: base64 of 16 random bytes (WECHAT_API.md §7).
pub(crate) fn session_key() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    STANDARD.encode(bytes)
}

/// A request id as real errmsgs end with: `645ca8fe-448ccd42-1a78a4b0` (WECHAT_API.md §0).
pub(crate) fn rid() -> String {
    let mut rng = rand::rng();
    let groups: [u32; 3] = [rng.random(), rng.random(), rng.random()];
    format!("{:08x}-{:08x}-{:08x}", groups[0], groups[1], groups[2])
}

/// A stable small number derived from a string, for picking default profile details.
pub(crate) fn stable_number(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openids_are_28_chars_starting_with_o_and_differ_per_app() {
        let first = openid("wxd000000000000001", "alice");
        assert_eq!(first.len(), 28);
        assert!(first.starts_with('o'));
        assert_eq!(first, openid("wxd000000000000001", "alice"));
        assert_ne!(first, openid("wxd000000000000002", "alice"));
    }

    #[test]
    fn session_keys_are_base64_of_16_bytes() {
        let key = session_key();
        assert_eq!(
            STANDARD.decode(&key).map(|bytes| bytes.len()).ok(),
            Some(16)
        );
    }

    #[test]
    fn app_access_tokens_are_long() {
        assert!(app_access_token().len() >= 150);
    }

    #[test]
    fn rids_are_three_hex_groups() {
        let rid = rid();
        let groups: Vec<&str> = rid.split('-').collect();
        assert_eq!(groups.len(), 3);
        assert!(groups.iter().all(|group| group.len() == 8));
    }
}

//! Binds a browser login to the browser that started it, without storing
//! anything until its callback proves itself.
//!
//! `/authorize` seals the login's context (app, scope, `return_to`, the
//! caller's state, expiry) with AES-256-GCM in an `HttpOnly` cookie, and sends
//! WeChat a short state: a random id, its expiry and a MAC over both and the
//! app. WeChat allows a state of at most 128 characters of `[A-Za-z0-9]`
//! (WECHAT_API.md §1), so the context cannot ride in it. `/callback` then
//! checks, before any database access or WeChat call, that the state is one
//! this service issued for this app and has not expired, and that the browser
//! presents the cookie sealed for that very state. Someone who only sees a
//! callback URL (a proxy log, a screenshot, history) has no cookie; someone
//! who lures a victim to their own callback URL (login CSRF) cannot give the
//! victim's browser their cookie.
//!
//! One cookie holds the browser's pending logins (the newest three that fit),
//! so a login started in a second tab does not break the first.
//!
//! Both keys are derived from the database's lookup key, so every replica
//! checks what another issued.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use wechat_types::{AppId, constant_time_eq};

/// How long a browser login may take, from `/authorize` to the callback.
pub(crate) const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
/// The cookie's name when the shim is served over https: `__Host-` makes the
/// browser refuse it unless it is `Secure`, host-only and `Path=/`, so no
/// sibling subdomain can plant one.
pub(crate) const SECURE_COOKIE: &str = "__Host-wxid-login";
/// The cookie's name on a plain-http loopback base (the demo), where a
/// `Secure` cookie would never come back.
pub(crate) const PLAIN_COOKIE: &str = "wxid-login";

const STATE_VERSION: char = '1';
/// The random id: 128 bits, as 32 hex digits.
const ID_HEX: usize = 32;
/// The expiry: unix seconds, 10 digits.
const EXPIRY_DIGITS: usize = 10;
/// The MAC, truncated to 128 bits, as 32 hex digits.
const MAC_HEX: usize = 32;
/// The state's length: `1` + id + expiry + MAC (75, WeChat allows 128).
pub(crate) const STATE_LEN: usize = 1 + ID_HEX + EXPIRY_DIGITS + MAC_HEX;
/// The most cookies of our name looked at in one request.
const MAX_CANDIDATES: usize = 4;
/// Logins one browser may have under way at once (two tabs, a double click):
/// the cookie keeps the newest ones that fit.
pub(crate) const MAX_PENDING_LOGINS: usize = 3;
/// The largest sealed cookie value accepted (browsers keep at most 4096
/// bytes per cookie, name included).
const MAX_COOKIE_VALUE: usize = 4000;

/// A login's context, as sealed in the browser's cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoginContext {
    /// The state's id.
    pub id: String,
    /// The Official Account or website app.
    pub app_id: String,
    /// The OAuth scope requested.
    pub scope: String,
    /// Where the browser goes back to (allowlisted when the login started).
    pub return_to: String,
    /// The caller's own state, handed back untouched.
    pub caller_state: Option<String>,
    /// When the login expires, unix seconds.
    pub expires_at: u64,
}

/// A login just started: the state for WeChat and the cookie for the browser.
#[derive(Debug)]
pub(crate) struct StartedLogin {
    /// The state to send WeChat.
    pub state: String,
    /// The `Set-Cookie` value binding the login to this browser.
    pub set_cookie: String,
}

/// A state that this service issued for the app, not yet expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedState {
    /// The state as WeChat carried it back (the key of its claim).
    pub state: String,
    /// Its id, which the cookie must name.
    pub id: String,
    /// When it expires.
    pub expires_at: SystemTime,
}

/// Why a callback's state or cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BindingError {
    /// The state is malformed, forged, tampered with, for another app, or expired.
    #[error("unknown, forged or expired state")]
    BadState,
    /// No cookie, or none sealed for this state and app.
    #[error("the browser holds no login cookie for this state")]
    Mismatch,
    /// The login's context does not fit in a cookie.
    #[error("the login's context is too large for a cookie")]
    TooLarge,
    /// The system's random source failed.
    #[error("no randomness available")]
    Random,
}

/// The keys and cookie settings of browser binding.
pub(crate) struct WebBinding {
    state_key: hmac::Key,
    cookie_key: LessSafeKey,
    cookie_name: &'static str,
    secure: bool,
    random: SystemRandom,
}

impl std::fmt::Debug for WebBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebBinding")
            .field("cookie_name", &self.cookie_name)
            .finish_non_exhaustive()
    }
}

impl WebBinding {
    /// Binding with these keys; `secure` when the shim's public base is
    /// https (the cookie is then `__Host-` and `Secure`).
    pub(crate) fn new(state_key: &[u8; 32], cookie_key: &[u8; 32], secure: bool) -> Self {
        let cookie_key = UnboundKey::new(&AES_256_GCM, cookie_key)
            .map(LessSafeKey::new)
            .unwrap_or_else(|_| unreachable!("AES-256-GCM takes any 32-byte key"));
        Self {
            state_key: hmac::Key::new(hmac::HMAC_SHA256, state_key),
            cookie_key,
            cookie_name: if secure { SECURE_COOKIE } else { PLAIN_COOKIE },
            secure,
            random: SystemRandom::new(),
        }
    }

    /// Starts a login for `app_id`: a fresh state and the cookie sealing the
    /// login's context under the state's id, beside the logins still pending
    /// in the browser's `cookie_headers`.
    ///
    /// # Errors
    /// [`BindingError::TooLarge`] when the context alone exceeds a cookie;
    /// [`BindingError::Random`] when the system has no randomness.
    pub(crate) fn start<'a>(
        &self,
        app_id: &AppId,
        scope: &str,
        return_to: &str,
        caller_state: Option<&str>,
        cookie_headers: impl IntoIterator<Item = &'a str>,
        now: SystemTime,
    ) -> Result<StartedLogin, BindingError> {
        let mut id = [0u8; ID_HEX / 2];
        self.random
            .fill(&mut id)
            .map_err(|_| BindingError::Random)?;
        let id = hex::encode(id);
        let expires_at = unix_secs(now) + LOGIN_TTL.as_secs();
        let context = LoginContext {
            id: id.clone(),
            app_id: app_id.to_string(),
            scope: scope.to_owned(),
            return_to: return_to.to_owned(),
            caller_state: caller_state.map(str::to_owned),
            expires_at,
        };
        let mut logins = vec![context];
        logins.extend(
            self.pending(cookie_headers)
                .into_iter()
                .filter(|pending| pending.expires_at > unix_secs(now))
                .take(MAX_PENDING_LOGINS - 1),
        );
        // The newest first; older ones give way when they do not all fit.
        let value = loop {
            match self.seal(&logins) {
                Ok(value) => break value,
                Err(BindingError::TooLarge) if logins.len() > 1 => {
                    logins.pop();
                }
                Err(error) => return Err(error),
            }
        };
        let mut set_cookie = format!(
            "{}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
            self.cookie_name,
            LOGIN_TTL.as_secs()
        );
        if self.secure {
            set_cookie.push_str("; Secure");
        }
        let expiry = format!("{expires_at:0EXPIRY_DIGITS$}");
        let mac = self.state_mac(app_id.as_str(), &id, &expiry);
        Ok(StartedLogin {
            state: format!("{STATE_VERSION}{id}{expiry}{mac}"),
            set_cookie,
        })
    }

    /// Checks a callback's state: issued by this service for `app_id`, intact
    /// and not expired at `now`.
    ///
    /// # Errors
    /// [`BindingError::BadState`].
    pub(crate) fn check_state(
        &self,
        app_id: &AppId,
        state: &str,
        now: SystemTime,
    ) -> Result<CheckedState, BindingError> {
        let bad = BindingError::BadState;
        if state.len() != STATE_LEN || !state.starts_with(STATE_VERSION) || !state.is_ascii() {
            return Err(bad);
        }
        let (id, rest) = state[1..].split_at(ID_HEX);
        let (expiry, mac) = rest.split_at(EXPIRY_DIGITS);
        let presented = hex::decode(mac).map_err(|_| bad)?;
        // The state carries the tag's first 128 bits.
        let tag = hmac::sign(&self.state_key, &mac_input(app_id.as_str(), id, expiry));
        if !constant_time_eq(&tag.as_ref()[..MAC_HEX / 2], &presented) {
            return Err(bad);
        }
        let expires_at: u64 = expiry.parse().map_err(|_| bad)?;
        if expires_at <= unix_secs(now) {
            return Err(bad);
        }
        Ok(CheckedState {
            state: state.to_owned(),
            id: id.to_owned(),
            expires_at: UNIX_EPOCH + Duration::from_secs(expires_at),
        })
    }

    /// The login context sealed for `state` and `app_id` in one of the
    /// request's `Cookie` headers.
    ///
    /// # Errors
    /// [`BindingError::Mismatch`] when no such cookie is there.
    pub(crate) fn open<'a>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'a str>,
        state: &CheckedState,
        app_id: &AppId,
    ) -> Result<LoginContext, BindingError> {
        self.pending(cookie_headers)
            .into_iter()
            .find(|context| context.id == state.id && context.app_id == app_id.as_str())
            .ok_or(BindingError::Mismatch)
    }

    /// The logins sealed in the request's cookies of our name.
    fn pending<'a>(&self, cookie_headers: impl IntoIterator<Item = &'a str>) -> Vec<LoginContext> {
        cookie_headers
            .into_iter()
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == self.cookie_name)
            .take(MAX_CANDIDATES)
            .filter_map(|(_, value)| self.unseal(value.trim_matches('"')))
            .flatten()
            .collect()
    }

    fn seal(&self, logins: &[LoginContext]) -> Result<String, BindingError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| BindingError::Random)?;
        let mut sealed = serde_json::to_vec(logins).map_err(|_| BindingError::TooLarge)?;
        self.cookie_key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.cookie_name.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| BindingError::TooLarge)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        let value = B64.encode(bytes);
        if value.len() > MAX_COOKIE_VALUE {
            return Err(BindingError::TooLarge);
        }
        Ok(value)
    }

    fn unseal(&self, value: &str) -> Option<Vec<LoginContext>> {
        if value.len() > MAX_COOKIE_VALUE {
            return None;
        }
        let bytes = B64.decode(value).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .cookie_key
            .open_in_place(nonce, Aad::from(self.cookie_name.as_bytes()), &mut sealed)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }

    fn state_mac(&self, app_id: &str, id: &str, expiry: &str) -> String {
        let tag = hmac::sign(&self.state_key, &mac_input(app_id, id, expiry));
        hex::encode(&tag.as_ref()[..MAC_HEX / 2])
    }
}

/// The MAC's input: each part length-prefixed, so no two splits collide.
fn mac_input(app_id: &str, id: &str, expiry: &str) -> Vec<u8> {
    let mut input = Vec::with_capacity(64);
    for part in ["wechat-identity/oauth-state/v1", app_id, id, expiry] {
        input.extend_from_slice(&(part.len() as u64).to_be_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    input
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;

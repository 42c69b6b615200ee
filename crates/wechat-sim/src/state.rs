//! Everything the fake WeChat remembers between requests, behind one lock.

use std::collections::HashMap;
use std::time::Duration;

use crate::app_tokens::AppTokens;
use crate::browser::Browser;
use crate::clock::{SimClock, SimTime};
use crate::endpoint::Endpoint;
use crate::faults::FaultQueue;
use crate::ids;
use crate::oauth_tokens::OAuthTokens;
use crate::users::SimUser;

/// WECHAT_API.md §7, §10, §1: `wx.login`, phone and OA OAuth codes expire after 5 minutes.
pub(crate) const CODE_TTL: Duration = Duration::from_secs(5 * 60);
/// WECHAT_API.md §1: website (`qrconnect`) codes live 10 minutes.
pub(crate) const WEBSITE_CODE_TTL: Duration = Duration::from_secs(10 * 60);

/// What a one-time code was minted for; a code only works at its own endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CodeKind {
    /// From `wx.login`, for `jscode2session`.
    Login,
    /// From the `getPhoneNumber` button, for `getuserphonenumber`.
    Phone,
    /// From the authorize page, for `sns/oauth2/access_token`, granting this scope.
    OAuth { scope: String },
}

/// A minted code and what it stands for.
#[derive(Clone, Debug)]
pub(crate) struct CodeRecord {
    pub(crate) kind: CodeKind,
    pub(crate) app_id: String,
    pub(crate) user: String,
    expires_at: SimTime,
    used: bool,
}

/// Why a code was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CodeRefusal {
    /// Unknown, expired, of another app or another kind: 40029 `invalid code`.
    Invalid,
    /// Already exchanged once: 40163 `code been used` (WECHAT_API.md §2, §7).
    Used,
}

/// The simulator's memory. Methods never block and never await: the lock is held briefly.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) clock: SimClock,
    pub(crate) app_tokens: AppTokens,
    pub(crate) oauth: OAuthTokens,
    pub(crate) faults: FaultQueue,
    pub(crate) browser: Browser,
    users: HashMap<String, SimUser>,
    codes: HashMap<String, CodeRecord>,
    /// Code count above which expired codes are swept, so long benchmarks stay bounded.
    code_sweep_threshold: usize,
    /// (app_id, openid) → the one valid session_key of that user (WECHAT_API.md §7: one
    /// per user). Keyed by openid because `checksession` only knows the openid.
    session_keys: HashMap<(String, String), String>,
    calls: HashMap<Endpoint, u64>,
}

impl State {
    pub(crate) fn now(&self) -> SimTime {
        self.clock.now()
    }

    /// The user with this key, created with the default profile on first mention.
    pub(crate) fn user(&mut self, key: &str) -> &SimUser {
        self.users
            .entry(key.to_owned())
            .or_insert_with(|| SimUser::with_default_profile(key))
    }

    /// Add or replace a user.
    pub(crate) fn put_user(&mut self, user: SimUser) {
        self.users.insert(user.key.clone(), user);
    }

    /// Mint a single-use code for `user` in `app_id`, valid for `ttl` of sim time.
    pub(crate) fn mint_code(
        &mut self,
        kind: CodeKind,
        app_id: &str,
        user: &str,
        ttl: Duration,
    ) -> String {
        self.user(user);
        let now = self.now();
        self.sweep_expired_codes(now);
        let code = ids::code();
        self.codes.insert(
            code.clone(),
            CodeRecord {
                kind,
                app_id: app_id.to_owned(),
                user: user.to_owned(),
                expires_at: now + ttl,
                used: false,
            },
        );
        code
    }

    /// An expired code answers 40029 exactly like an unknown one, so forgetting it is invisible.
    fn sweep_expired_codes(&mut self, now: SimTime) {
        if self.codes.len() < self.code_sweep_threshold {
            return;
        }
        self.codes.retain(|_, record| record.expires_at > now);
        self.code_sweep_threshold = (self.codes.len() * 2).max(4096);
    }

    /// Look a code up for `app_id` without using it. `accepts` says which kinds fit the endpoint.
    pub(crate) fn check_code(
        &self,
        code: &str,
        app_id: &str,
        accepts: impl Fn(&CodeKind) -> bool,
    ) -> Result<CodeRecord, CodeRefusal> {
        let record = self.codes.get(code).ok_or(CodeRefusal::Invalid)?;
        if record.app_id != app_id || !accepts(&record.kind) {
            return Err(CodeRefusal::Invalid);
        }
        // An expired code is gone from WeChat's side, used or not.
        if self.now() >= record.expires_at {
            return Err(CodeRefusal::Invalid);
        }
        if record.used {
            return Err(CodeRefusal::Used);
        }
        Ok(record.clone())
    }

    /// Check a code and mark it used: WECHAT_API.md §7, §1, codes are single use.
    pub(crate) fn redeem_code(
        &mut self,
        code: &str,
        app_id: &str,
        accepts: impl Fn(&CodeKind) -> bool,
    ) -> Result<CodeRecord, CodeRefusal> {
        let record = self.check_code(code, app_id, accepts)?;
        self.burn_code(code);
        Ok(record)
    }

    /// Mark a code used whatever it is; unknown codes are ignored.
    pub(crate) fn burn_code(&mut self, code: &str) {
        if let Some(record) = self.codes.get_mut(code) {
            record.used = true;
        }
    }

    /// Issue a fresh session_key for `user` in `app_id`, replacing the previous one.
    pub(crate) fn new_session_key(&mut self, app_id: &str, user: &str) -> String {
        let session_key = ids::session_key();
        self.session_keys.insert(
            (app_id.to_owned(), ids::openid(app_id, user)),
            session_key.clone(),
        );
        session_key
    }

    /// The current session_key of `user` in `app_id`, if they ever logged in.
    pub(crate) fn session_key(&self, app_id: &str, user: &str) -> Option<String> {
        self.session_key_by_openid(app_id, &ids::openid(app_id, user))
    }

    /// The session_key of whoever has this openid in `app_id`, if they ever logged in.
    pub(crate) fn session_key_by_openid(&self, app_id: &str, openid: &str) -> Option<String> {
        self.session_keys
            .get(&(app_id.to_owned(), openid.to_owned()))
            .cloned()
    }

    pub(crate) fn count_call(&mut self, endpoint: Endpoint) {
        *self.calls.entry(endpoint).or_default() += 1;
    }

    pub(crate) fn calls(&self, endpoint: Endpoint) -> u64 {
        self.calls.get(&endpoint).copied().unwrap_or(0)
    }

    pub(crate) fn reset_calls(&mut self) {
        self.calls.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_kind(_: &CodeKind) -> bool {
        true
    }

    #[test]
    fn a_code_works_once_then_reports_used() {
        let mut state = State::default();
        let code = state.mint_code(CodeKind::Login, "wx1", "alice", CODE_TTL);
        assert!(state.redeem_code(&code, "wx1", any_kind).is_ok());
        assert_eq!(
            state.redeem_code(&code, "wx1", any_kind).err(),
            Some(CodeRefusal::Used)
        );
    }

    #[test]
    fn a_code_of_another_app_or_kind_is_invalid() {
        let mut state = State::default();
        let code = state.mint_code(CodeKind::Phone, "wx1", "alice", CODE_TTL);
        assert_eq!(
            state.check_code(&code, "wx2", any_kind).err(),
            Some(CodeRefusal::Invalid)
        );
        assert_eq!(
            state
                .check_code(&code, "wx1", |kind| *kind == CodeKind::Login)
                .err(),
            Some(CodeRefusal::Invalid)
        );
    }

    #[test]
    fn an_expired_code_is_invalid_even_if_used() {
        let mut state = State::default();
        let code = state.mint_code(CodeKind::Login, "wx1", "alice", CODE_TTL);
        state.burn_code(&code);
        state.clock.advance(CODE_TTL);
        assert_eq!(
            state.check_code(&code, "wx1", any_kind).err(),
            Some(CodeRefusal::Invalid)
        );
    }

    #[test]
    fn a_new_session_key_replaces_the_old_one() {
        let mut state = State::default();
        let first = state.new_session_key("wx1", "alice");
        let second = state.new_session_key("wx1", "alice");
        assert_ne!(first, second);
        assert_eq!(state.session_key("wx1", "alice"), Some(second.clone()));
        let openid = ids::openid("wx1", "alice");
        assert_eq!(state.session_key_by_openid("wx1", &openid), Some(second));
    }
}

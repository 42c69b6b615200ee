//! The simulator handle: what tests call to set the world up and look inside it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::browser::Consent;
use crate::config::SimConfig;
use crate::endpoint::Endpoint;
use crate::faults::Fault;
use crate::ids;
use crate::state::{CODE_TTL, CodeKind, State, WEBSITE_CODE_TTL};
use crate::users::SimUser;
use wechat_types::AppKind;

/// A fake WeChat. Cheap to clone: clones share one world.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

struct Shared {
    config: SimConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("apps", &self.shared.config.apps.len())
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// A fresh world with the configured apps, no users yet and no calls counted.
    pub fn new(config: SimConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State::default()),
            }),
        }
    }

    pub(crate) fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// The world, locked. Never held across an `.await`. A test that panicked while
    /// holding it leaves consistent data behind (every mutation is a single step).
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Add a user, or replace the one with the same key.
    pub fn add_user(&self, user: SimUser) {
        self.state().put_user(user);
    }

    /// The user with this key; an unknown key gets a default profile derived from it
    /// (a Chinese + emoji nickname, 广东/深圳/中国, a `+86 138…` phone) and is remembered.
    pub fn user(&self, key: &str) -> SimUser {
        self.state().user(key).clone()
    }

    /// A `wx.login` code for `user` in the mini program `app_id`: 5 minutes, single use (§7).
    pub fn mint_login_code(&self, app_id: &str, user: &str) -> String {
        self.state()
            .mint_code(CodeKind::Login, app_id, user, CODE_TTL)
    }

    /// A `getPhoneNumber` button code: 5 minutes, single use (WECHAT_API.md §10).
    pub fn mint_phone_code(&self, app_id: &str, user: &str) -> String {
        self.state()
            .mint_code(CodeKind::Phone, app_id, user, CODE_TTL)
    }

    /// A web OAuth code as the authorize page gives it after consent (§1, §6): single use,
    /// 5 minutes, or 10 minutes for website (`qrconnect`) apps.
    pub fn mint_oauth_code(&self, app_id: &str, user: &str, scope: &str) -> String {
        let website = self
            .config()
            .app(app_id)
            .is_some_and(|app| app.kind == AppKind::Website);
        let ttl = if website { WEBSITE_CODE_TTL } else { CODE_TTL };
        let kind = CodeKind::OAuth {
            scope: scope.to_owned(),
        };
        self.state().mint_code(kind, app_id, user, ttl)
    }

    /// The openid of `user` in `app_id`: `"o"` + 27 chars of URL-safe base64 of
    /// sha256(`app_id:user`). Deterministic, so tests can predict it.
    pub fn openid(&self, app_id: &str, user: &str) -> String {
        ids::openid(app_id, user)
    }

    /// The unionid of `user`, if `app_id` is bound to an Open Platform account; the same
    /// for every app bound to that account.
    pub fn unionid(&self, app_id: &str, user: &str) -> Option<String> {
        let platform = self.config().app(app_id)?.open_platform.as_deref()?;
        Some(ids::unionid(platform, user))
    }

    /// The session_key `jscode2session` last issued to `user` in `app_id`.
    pub fn session_key(&self, app_id: &str, user: &str) -> Option<String> {
        self.state().session_key(app_id, user)
    }

    /// How many requests this endpoint received (counted on arrival, faults included).
    pub fn calls(&self, endpoint: Endpoint) -> u64 {
        self.state().calls(endpoint)
    }

    /// Zero every call counter.
    pub fn reset_calls(&self) {
        self.state().reset_calls();
    }

    /// The next `times` calls of `endpoint` get `fault`, after any faults already queued.
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: u32) {
        self.state().faults.push(endpoint, fault, times);
    }

    /// Drop every fault still queued: WeChat behaves again.
    pub fn clear_faults(&self) {
        self.state().faults = crate::faults::FaultQueue::default();
    }

    /// Move the simulator's clock forward: codes, tokens and daily quotas age by `by`.
    pub fn advance_clock(&self, by: Duration) {
        self.state().clock.advance(by);
    }

    /// Every app access token of `app_id` (plain and stable) stops working now: calls with
    /// them get 40001, and the next `stable_token` call issues a fresh one.
    pub fn invalidate_access_tokens(&self, app_id: &str) {
        let mut state = self.state();
        let now = state.now();
        state.app_tokens.invalidate_app(app_id, now);
    }

    /// The stable access token of `app_id` that is valid now, if one was issued.
    pub fn current_stable_token(&self, app_id: &str) -> Option<String> {
        let state = self.state();
        state.app_tokens.current_stable(app_id, state.now())
    }

    /// Who is logged in to WeChat in the browser that opens the authorize pages.
    /// Default `"demo-user"`.
    pub fn set_browser_user(&self, user: &str) {
        self.state().browser.user = user.to_owned();
    }

    /// What the browser user answers on the consent page. Default [`Consent::Allow`].
    pub fn set_consent(&self, consent: Consent) {
        self.state().browser.consent = consent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unionids_are_shared_by_apps_of_one_platform_and_absent_without_one() {
        let sim = Simulator::new(SimConfig::demo());
        let mini = sim.unionid("wxd000000000000001", "alice");
        assert!(mini.is_some());
        assert_eq!(mini, sim.unionid("wxd000000000000002", "alice"));
        assert_eq!(sim.unionid("wxd000000000000004", "alice"), None);
        assert_eq!(sim.unionid("wx-unknown", "alice"), None);
    }

    #[test]
    fn unknown_users_get_a_remembered_default_profile() {
        let sim = Simulator::new(SimConfig::demo());
        let mut bob = sim.user("bob");
        assert_eq!(bob.province, "广东");
        bob.nickname = "Bob".to_owned();
        sim.add_user(bob);
        assert_eq!(sim.user("bob").nickname, "Bob");
    }
}

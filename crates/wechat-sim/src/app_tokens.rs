//! App access tokens: `cgi-bin/token` (§8) and `cgi-bin/stable_token` (§9) of WECHAT_API.md.

use std::collections::HashMap;
use std::time::Duration;

use crate::clock::SimTime;
use crate::ids;

/// WECHAT_API.md §8, §9: `expires_in` is 7200.
pub(crate) const APP_TOKEN_TTL: Duration = Duration::from_secs(7200);
/// WECHAT_API.md §8: a new `cgi-bin/token` leaves the previous one valid 5 more minutes.
const PLAIN_OVERLAP: Duration = Duration::from_secs(5 * 60);
/// WECHAT_API.md §9: the stable token is renewed in its last 5 minutes.
const STABLE_RENEW_WINDOW: Duration = Duration::from_secs(5 * 60);
/// WECHAT_API.md §8: 2000 `cgi-bin/token` calls per app per day.
const PLAIN_DAILY_QUOTA: u32 = 2000;
/// WECHAT_API.md §9: at most 20 forced refreshes per day…
const FORCED_REFRESH_DAILY_LIMIT: u32 = 20;
/// …and at least 30 s apart.
const FORCED_REFRESH_SPACING: Duration = Duration::from_secs(30);

/// What an API call learns about the access token it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    /// Good for this app.
    Valid { app_id: String },
    /// Never issued, superseded past its overlap, or invalidated: 40001.
    Invalid,
    /// Outlived its 7200 s: 42001.
    Expired,
}

/// The daily `cgi-bin/token` quota is used up: 45009.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QuotaExceeded;

/// A token handed to the caller and how long it has left.
#[derive(Clone, Debug)]
pub(crate) struct IssuedToken {
    pub(crate) access_token: String,
    pub(crate) expires_in: Duration,
}

#[derive(Debug)]
struct AppToken {
    app_id: String,
    expires_at: SimTime,
    /// When it stopped being accepted before its natural expiry, if it did.
    revoked_at: Option<SimTime>,
}

impl AppToken {
    fn check(&self, now: SimTime) -> TokenCheck {
        match self.revoked_at {
            Some(revoked_at) if revoked_at <= now && revoked_at < self.expires_at => {
                TokenCheck::Invalid
            }
            _ if now >= self.expires_at => TokenCheck::Expired,
            _ => TokenCheck::Valid {
                app_id: self.app_id.clone(),
            },
        }
    }

    /// Stop accepting the token at `at` unless it stops earlier anyway.
    fn revoke(&mut self, at: SimTime) {
        self.revoked_at = Some(self.revoked_at.map_or(at, |earlier| earlier.min(at)));
    }
}

/// The per-app state of `cgi-bin/stable_token`.
#[derive(Debug, Default)]
struct StableSlot {
    current: Option<String>,
    forced_day: u64,
    forced_today: u32,
    last_forced_at: Option<SimTime>,
}

/// Every app access token ever issued, and the bookkeeping of both token endpoints.
/// WECHAT_API.md §9: the two families are isolated; only their records share a map.
#[derive(Debug, Default)]
pub(crate) struct AppTokens {
    tokens: HashMap<String, AppToken>,
    latest_plain: HashMap<String, String>,
    plain_calls: HashMap<String, (u64, u32)>,
    stable: HashMap<String, StableSlot>,
}

impl AppTokens {
    fn issue(&mut self, app_id: &str, now: SimTime) -> IssuedToken {
        let access_token = ids::app_access_token();
        self.tokens.insert(
            access_token.clone(),
            AppToken {
                app_id: app_id.to_owned(),
                expires_at: now + APP_TOKEN_TTL,
                revoked_at: None,
            },
        );
        IssuedToken {
            access_token,
            expires_in: APP_TOKEN_TTL,
        }
    }

    /// `cgi-bin/token`: a new token on every call, within the daily quota.
    pub(crate) fn issue_plain(
        &mut self,
        app_id: &str,
        now: SimTime,
    ) -> Result<IssuedToken, QuotaExceeded> {
        let day = now.quota_day();
        let (counted_day, count) = self
            .plain_calls
            .entry(app_id.to_owned())
            .or_insert((day, 0));
        if *counted_day != day {
            *counted_day = day;
            *count = 0;
        }
        if *count >= PLAIN_DAILY_QUOTA {
            return Err(QuotaExceeded);
        }
        *count += 1;
        if let Some(previous) = self.latest_plain.get(app_id)
            && let Some(record) = self.tokens.get_mut(previous)
        {
            record.revoke(now + PLAIN_OVERLAP);
        }
        let issued = self.issue(app_id, now);
        self.latest_plain
            .insert(app_id.to_owned(), issued.access_token.clone());
        Ok(issued)
    }

    /// `cgi-bin/stable_token` with or without `force_refresh` (WECHAT_API.md §9).
    pub(crate) fn stable(
        &mut self,
        app_id: &str,
        force_refresh: bool,
        now: SimTime,
    ) -> IssuedToken {
        let mut slot = self.stable.remove(app_id).unwrap_or_default();
        let issued = self.stable_in_slot(&mut slot, app_id, force_refresh, now);
        self.stable.insert(app_id.to_owned(), slot);
        issued
    }

    fn stable_in_slot(
        &mut self,
        slot: &mut StableSlot,
        app_id: &str,
        force_refresh: bool,
        now: SimTime,
    ) -> IssuedToken {
        if force_refresh {
            let day = now.quota_day();
            if slot.forced_day != day {
                slot.forced_day = day;
                slot.forced_today = 0;
            }
            let spaced = slot
                .last_forced_at
                .is_none_or(|last| now.since(last) >= FORCED_REFRESH_SPACING);
            if spaced && slot.forced_today < FORCED_REFRESH_DAILY_LIMIT {
                if let Some(record) = slot.current.as_ref().and_then(|t| self.tokens.get_mut(t)) {
                    record.revoke(now);
                }
                slot.forced_today += 1;
                slot.last_forced_at = Some(now);
                let issued = self.issue(app_id, now);
                slot.current = Some(issued.access_token.clone());
                return issued;
            }
            // "否则不会刷新": a refused forced refresh is an ordinary call, not an error.
        }
        if let Some(current) = &slot.current
            && let Some(record) = self.tokens.get(current)
            && matches!(record.check(now), TokenCheck::Valid { .. })
            && now.until(record.expires_at) > STABLE_RENEW_WINDOW
        {
            return IssuedToken {
                access_token: current.clone(),
                expires_in: now.until(record.expires_at),
            };
        }
        // None yet, invalidated, expired, or in its last 5 minutes: renew. The old one
        // keeps its own expiry.
        let issued = self.issue(app_id, now);
        slot.current = Some(issued.access_token.clone());
        issued
    }

    /// The stable token a non-forced call would return now without renewing, if any.
    pub(crate) fn current_stable(&self, app_id: &str, now: SimTime) -> Option<String> {
        let current = self.stable.get(app_id)?.current.as_ref()?;
        let record = self.tokens.get(current)?;
        matches!(record.check(now), TokenCheck::Valid { .. }).then(|| current.clone())
    }

    /// Validate a token an API call carries.
    pub(crate) fn check(&self, token: &str, now: SimTime) -> TokenCheck {
        self.tokens
            .get(token)
            .map_or(TokenCheck::Invalid, |record| record.check(now))
    }

    /// Every token of the app, plain and stable, stops working now.
    pub(crate) fn invalidate_app(&mut self, app_id: &str, now: SimTime) {
        for record in self
            .tokens
            .values_mut()
            .filter(|record| record.app_id == app_id)
        {
            record.revoke(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;

    #[test]
    fn a_superseded_plain_token_works_five_more_minutes() {
        let mut clock = SimClock::default();
        let mut tokens = AppTokens::default();
        let first = tokens
            .issue_plain("wx1", clock.now())
            .map(|t| t.access_token);
        let first = first.unwrap_or_default();
        assert!(tokens.issue_plain("wx1", clock.now()).is_ok());
        clock.advance(Duration::from_secs(299));
        assert!(matches!(
            tokens.check(&first, clock.now()),
            TokenCheck::Valid { .. }
        ));
        clock.advance(Duration::from_secs(1));
        assert_eq!(tokens.check(&first, clock.now()), TokenCheck::Invalid);
    }

    #[test]
    fn an_unsuperseded_token_expires_after_7200_seconds() {
        let mut clock = SimClock::default();
        let mut tokens = AppTokens::default();
        let token = tokens.stable("wx1", false, clock.now()).access_token;
        clock.advance(APP_TOKEN_TTL);
        assert_eq!(tokens.check(&token, clock.now()), TokenCheck::Expired);
    }

    #[test]
    fn the_stable_token_renews_in_its_last_five_minutes() {
        let mut clock = SimClock::default();
        let mut tokens = AppTokens::default();
        let first = tokens.stable("wx1", false, clock.now()).access_token;
        clock.advance(APP_TOKEN_TTL - Duration::from_secs(301));
        assert_eq!(tokens.stable("wx1", false, clock.now()).access_token, first);
        clock.advance(Duration::from_secs(2));
        let renewed = tokens.stable("wx1", false, clock.now()).access_token;
        assert_ne!(renewed, first);
        assert!(matches!(
            tokens.check(&first, clock.now()),
            TokenCheck::Valid { .. }
        ));
    }

    #[test]
    fn the_daily_quota_stops_plain_tokens() {
        let clock = SimClock::default();
        let mut tokens = AppTokens::default();
        for _ in 0..PLAIN_DAILY_QUOTA {
            assert!(tokens.issue_plain("wx1", clock.now()).is_ok());
        }
        assert_eq!(
            tokens.issue_plain("wx1", clock.now()).err(),
            Some(QuotaExceeded)
        );
        assert!(tokens.issue_plain("wx2", clock.now()).is_ok());
    }
}

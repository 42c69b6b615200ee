//! Web OAuth access and refresh tokens (WECHAT_API.md §2–§5).

use std::collections::HashMap;
use std::time::Duration;

use crate::clock::SimTime;
use crate::ids;

/// WECHAT_API.md §2: `expires_in` is 7200.
pub(crate) const OAUTH_ACCESS_TTL: Duration = Duration::from_secs(7200);
/// WECHAT_API.md §3: a refresh_token lives 30 days.
const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a user granted an app on the authorize page.
#[derive(Clone, Debug)]
pub(crate) struct OAuthGrant {
    pub(crate) app_id: String,
    pub(crate) user: String,
    /// The openid the app sees (virtual for snapshot users).
    pub(crate) openid: String,
    /// Set only for `snsapi_userinfo`/`snsapi_login` grants of a bound app.
    pub(crate) unionid: Option<String>,
    pub(crate) scope: String,
    /// The user came through the snapshot page (WECHAT_API.md §1).
    pub(crate) snapshot: bool,
}

/// The tokens one exchange or refresh hands out.
#[derive(Clone, Debug)]
pub(crate) struct OAuthIssued {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) expires_in: Duration,
    pub(crate) grant: OAuthGrant,
}

/// Why a refresh was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefreshRefusal {
    /// 40030 `invalid refresh_token`.
    Invalid,
    /// 42002 `refresh_token expired`.
    Expired,
}

/// Why an access token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccessRefusal {
    /// Never issued, or replaced by a refresh.
    Unknown,
    /// Outlived its 7200 s.
    Expired,
}

#[derive(Debug)]
struct AccessRecord {
    grant: OAuthGrant,
    expires_at: SimTime,
}

#[derive(Debug)]
struct RefreshRecord {
    grant: OAuthGrant,
    issued_at: SimTime,
    access_token: String,
}

/// Every web OAuth token issued.
#[derive(Debug, Default)]
pub(crate) struct OAuthTokens {
    access: HashMap<String, AccessRecord>,
    refresh: HashMap<String, RefreshRecord>,
}

impl OAuthTokens {
    /// Tokens for a code just exchanged.
    pub(crate) fn issue(&mut self, grant: OAuthGrant, now: SimTime) -> OAuthIssued {
        let access_token = ids::oauth_token();
        let refresh_token = ids::oauth_token();
        self.access.insert(
            access_token.clone(),
            AccessRecord {
                grant: grant.clone(),
                expires_at: now + OAUTH_ACCESS_TTL,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            RefreshRecord {
                grant: grant.clone(),
                issued_at: now,
                access_token: access_token.clone(),
            },
        );
        OAuthIssued {
            access_token,
            refresh_token,
            expires_in: OAUTH_ACCESS_TTL,
            grant,
        }
    }

    /// WECHAT_API.md §3: an expired access token is replaced, an unexpired one extended.
    /// The refresh_token's own 30 days do not restart (the doc leaves it unverified; the
    /// stricter reading makes clients handle re-authorization).
    pub(crate) fn refresh(
        &mut self,
        app_id: &str,
        refresh_token: &str,
        now: SimTime,
    ) -> Result<OAuthIssued, RefreshRefusal> {
        let record = self
            .refresh
            .get_mut(refresh_token)
            .filter(|record| record.grant.app_id == app_id)
            .ok_or(RefreshRefusal::Invalid)?;
        if now.since(record.issued_at) >= REFRESH_TTL {
            return Err(RefreshRefusal::Expired);
        }
        let still_valid = self
            .access
            .get_mut(&record.access_token)
            .filter(|access| now < access.expires_at);
        match still_valid {
            Some(access) => access.expires_at = now + OAUTH_ACCESS_TTL,
            None => {
                self.access.remove(&record.access_token);
                let access_token = ids::oauth_token();
                self.access.insert(
                    access_token.clone(),
                    AccessRecord {
                        grant: record.grant.clone(),
                        expires_at: now + OAUTH_ACCESS_TTL,
                    },
                );
                record.access_token = access_token;
            }
        }
        Ok(OAuthIssued {
            access_token: record.access_token.clone(),
            refresh_token: refresh_token.to_owned(),
            expires_in: OAUTH_ACCESS_TTL,
            grant: record.grant.clone(),
        })
    }

    /// The grant behind an access token that is still good.
    pub(crate) fn check_access(
        &self,
        access_token: &str,
        now: SimTime,
    ) -> Result<&OAuthGrant, AccessRefusal> {
        let record = self
            .access
            .get(access_token)
            .ok_or(AccessRefusal::Unknown)?;
        if now >= record.expires_at {
            return Err(AccessRefusal::Expired);
        }
        Ok(&record.grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;

    fn grant() -> OAuthGrant {
        OAuthGrant {
            app_id: "wx1".to_owned(),
            user: "alice".to_owned(),
            openid: ids::openid("wx1", "alice"),
            unionid: None,
            scope: "snsapi_base".to_owned(),
            snapshot: false,
        }
    }

    #[test]
    fn refreshing_an_expired_token_replaces_it() {
        let mut clock = SimClock::default();
        let mut tokens = OAuthTokens::default();
        let issued = tokens.issue(grant(), clock.now());
        clock.advance(OAUTH_ACCESS_TTL);
        let refreshed = tokens.refresh("wx1", &issued.refresh_token, clock.now());
        let refreshed = refreshed.map(|r| r.access_token).unwrap_or_default();
        assert_ne!(refreshed, issued.access_token);
        assert!(tokens.check_access(&refreshed, clock.now()).is_ok());
        assert_eq!(
            tokens.check_access(&issued.access_token, clock.now()).err(),
            Some(AccessRefusal::Unknown)
        );
    }

    #[test]
    fn refreshing_a_live_token_extends_it() {
        let mut clock = SimClock::default();
        let mut tokens = OAuthTokens::default();
        let issued = tokens.issue(grant(), clock.now());
        clock.advance(Duration::from_secs(7000));
        let refreshed = tokens.refresh("wx1", &issued.refresh_token, clock.now());
        assert_eq!(
            refreshed.map(|r| r.access_token).ok().as_deref(),
            Some(issued.access_token.as_str())
        );
        clock.advance(Duration::from_secs(1000));
        assert!(
            tokens
                .check_access(&issued.access_token, clock.now())
                .is_ok()
        );
    }

    #[test]
    fn refresh_tokens_die_after_30_days_and_belong_to_one_app() {
        let mut clock = SimClock::default();
        let mut tokens = OAuthTokens::default();
        let issued = tokens.issue(grant(), clock.now());
        assert_eq!(
            tokens
                .refresh("wx2", &issued.refresh_token, clock.now())
                .err(),
            Some(RefreshRefusal::Invalid)
        );
        clock.advance(REFRESH_TTL);
        assert_eq!(
            tokens
                .refresh("wx1", &issued.refresh_token, clock.now())
                .err(),
            Some(RefreshRefusal::Expired)
        );
    }
}

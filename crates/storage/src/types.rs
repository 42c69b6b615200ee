//! The values the storage API takes and returns.

use std::fmt;
use std::time::{Duration, SystemTime};

use secrecy::{SecretBox, SecretString};
use wechat_types::{AppId, OpenId, UnionId};

pub use crate::ids::{ParseError, SessionId, UserId};
pub use wechat_types::AppKind;

/// An identity by its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentityRef {
    /// The app.
    pub app_id: AppId,
    /// The user's id in that app.
    pub openid: OpenId,
}

/// A redeemed login ticket: the identity it names and whether the login that
/// minted it created the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The identity that logged in on the web.
    pub identity: IdentityRef,
    /// The callback's login created the user.
    pub is_new_user: bool,
}

/// A login ticket redeemed for a session: what WebLogin answers.
#[derive(Debug)]
pub struct RedeemedTicket {
    /// The ticket's identity and whether its login created the user.
    pub ticket: Ticket,
    /// The user the identity belongs to now.
    pub user_id: UserId,
    /// The identity's unionid, when WeChat gave one.
    pub unionid: Option<UnionId>,
    /// The session opened through the identity.
    pub session: IssuedSession,
}

/// Profile fields WeChat gives (user info) or the caller sets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileFields {
    /// Display name.
    pub nickname: String,
    /// Avatar image URL.
    pub avatar_url: String,
    /// 0 unknown, 1 male, 2 female.
    pub sex: u8,
    /// Province.
    pub province: String,
    /// City.
    pub city: String,
    /// Country.
    pub country: String,
    /// WeChat privileges (e.g. `chinaunicom`).
    pub privileges: Vec<String>,
}

/// A phone number bound to a user. Stored encrypted; `Debug` hides the numbers.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone {
    /// With country code, as WeChat gives it (`+86 138...` or `138...`).
    pub phone_number: String,
    /// Without country code.
    pub pure_phone_number: String,
    /// Country code without `+`.
    pub country_code: String,
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Phone")
            .field("country_code", &self.country_code)
            .field("number", &"<redacted>")
            .finish()
    }
}

/// A user's web OAuth tokens for one identity.
#[derive(Debug, Clone)]
pub struct WebTokens {
    /// `access_token` of `sns/oauth2/access_token`.
    pub access_token: SecretString,
    /// When the access token expires.
    pub access_expires_at: SystemTime,
    /// `refresh_token`, valid 30 days.
    pub refresh_token: SecretString,
    /// When the refresh token expires.
    pub refresh_expires_at: SystemTime,
    /// The scope the tokens grant.
    pub scope: String,
}

/// One successful WeChat login, as the server learnt it.
#[derive(Debug, Clone)]
pub struct IdentityLogin {
    /// The app logged into.
    pub app_id: AppId,
    /// Its kind.
    pub app_kind: AppKind,
    /// The user's openid in the app.
    pub openid: OpenId,
    /// The unionid, when WeChat gave one.
    pub unionid: Option<UnionId>,
    /// The granted scope (web OAuth).
    pub scope: Option<String>,
    /// A snapshot-page (virtual) user.
    pub is_snapshot: bool,
    /// Mini program `session_key`, replacing the previous one.
    pub session_key: Option<SecretString>,
    /// Web OAuth tokens, replacing the previous ones.
    pub web_tokens: Option<WebTokens>,
    /// Profile fields from WeChat, replacing the stored ones.
    pub profile: Option<ProfileFields>,
    /// When the login happened.
    pub at: SystemTime,
}

/// Two users found to be one person and merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRecord {
    /// The user that remains (the one that already held the unionid).
    pub kept_user_id: UserId,
    /// The user that was folded into it and deleted.
    pub merged_user_id: UserId,
}

/// What [`crate::Storage::record_login`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    /// The user the identity belongs to now.
    pub user_id: UserId,
    /// The login created the user.
    pub is_new_user: bool,
    /// The login proved two users one person and merged them.
    pub merged: Option<MergeRecord>,
}

/// How to find a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserLookup {
    /// By user id.
    UserId(UserId),
    /// By the caller's own id for the user.
    ExternalId(String),
    /// By one of the user's identities.
    Identity {
        /// The app.
        app_id: AppId,
        /// The openid in that app.
        openid: OpenId,
    },
    /// By unionid.
    UnionId(UnionId),
}

/// An identity linked to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedIdentity {
    /// The app.
    pub app_id: AppId,
    /// Its kind.
    pub app_kind: AppKind,
    /// The openid.
    pub openid: OpenId,
    /// The unionid, if known.
    pub unionid: Option<UnionId>,
    /// Granted scope, if any.
    pub scope: Option<String>,
    /// A snapshot-page (virtual) user.
    pub is_snapshot: bool,
    /// First login (or import) time.
    pub linked_at: SystemTime,
    /// Last login time.
    pub last_login_at: SystemTime,
}

/// A user with everything known about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    /// The user.
    pub user_id: UserId,
    /// The caller's own id for the user.
    pub external_id: Option<String>,
    /// The unionid of the user's identities, if any has one.
    pub unionid: Option<UnionId>,
    /// Profile fields.
    pub profile: ProfileFields,
    /// Phone, decrypted.
    pub phone: Option<Phone>,
    /// Linked identities, oldest first.
    pub identities: Vec<LinkedIdentity>,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
}

/// Web OAuth tokens usable to refresh a profile from WeChat.
#[derive(Debug, Clone)]
pub struct WebAuthorization {
    /// The app.
    pub app_id: AppId,
    /// The openid.
    pub openid: OpenId,
    /// The tokens (decrypted).
    pub tokens: WebTokens,
    /// When they were last used.
    pub last_used_at: SystemTime,
}

/// Identity data a trusted caller imports with a bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedIdentity {
    /// The app's kind.
    pub app_kind: AppKind,
    /// The unionid, if known.
    pub unionid: Option<UnionId>,
}

/// The account an identity is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// An existing user.
    UserId(UserId),
    /// The user holding this external id (or taking it).
    ExternalId(String),
}

/// A request to bind an identity to an account.
#[derive(Debug, Clone)]
pub struct BindRequest {
    /// The identity.
    pub identity: IdentityRef,
    /// Create the identity if unknown (trusted import).
    pub import: Option<ImportedIdentity>,
    /// The target account.
    pub account: Account,
    /// Move the identity even if it is bound elsewhere.
    pub replace_existing: bool,
    /// The calling service, for the audit trail.
    pub actor: String,
    /// When.
    pub at: SystemTime,
}

/// What a login code's claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeClaim {
    /// Nobody exchanged this code yet: go ahead.
    Fresh,
    /// The code was exchanged before: refuse without asking WeChat.
    AlreadyUsed,
    /// An earlier exchange failed ambiguously; WeChat may have consumed the code.
    LostToFailedAttempt,
}

/// A callback's claim on its login state, once the state's MAC and the
/// browser's cookie have been checked.
#[derive(Clone)]
pub struct WebLoginClaim {
    /// The state's id (the authenticated id WeChat carried back).
    pub state_id: String,
    /// The app whose callback this is.
    pub app_id: AppId,
    /// WeChat's code; `None` when the user declined.
    pub code: Option<String>,
    /// When the state itself expires.
    pub state_expires_at: SystemTime,
    /// How long the claim is held before another callback may take it over
    /// (longer than the login may take).
    pub claim_ttl: Duration,
    /// When.
    pub at: SystemTime,
}

impl fmt::Debug for WebLoginClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebLoginClaim")
            .field("app_id", &self.app_id)
            .field("declined", &self.code.is_none())
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// What [`crate::Storage::claim_web_login`] decided.
#[derive(Debug)]
pub enum WebLoginClaimed {
    /// This callback holds the claim, taken at `claimed_at`: exchange the
    /// code and complete (or fail) the login.
    Claimed {
        /// The claim's start, which completing it must present.
        claimed_at: SystemTime,
    },
    /// The state is consumed: answer with this outcome (the first callback's
    /// own, or WeChat's repeat of it within its window).
    Answered(WebLoginOutcome),
    /// Another callback holds the claim and is still working: ask again shortly.
    Pending,
    /// Consumed with another code, for another app, repeated too often or too
    /// late: refuse.
    Refused,
}

/// How a consumed login state ended.
#[derive(Debug)]
pub enum WebLoginOutcome {
    /// The login succeeded; its ticket (the same for every repeat).
    Ticket(SecretString),
    /// The OAuth error the browser was sent back with (`access_denied`,
    /// `temporarily_unavailable`, `server_error`, `snapshot_user`).
    Failed(String),
}

/// How long a session and its refresh tokens live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetimes {
    /// Lifetime of each refresh token from its issue; each rotation slides
    /// the session's end by this much.
    pub refresh_ttl: Duration,
    /// The longest a session lives from its creation, however often it is
    /// refreshed: no refresh token expires later than `created_at +
    /// max_lifetime`, and past it a rotation answers [`Rotation::Expired`].
    pub max_lifetime: Duration,
    /// For how long after a rotation the token it retired may be presented
    /// again without revoking the session (its answer may have been lost):
    /// see [`Rotation::Grace`]. Zero: never. Only rotations read it.
    pub reuse_grace: Duration,
}

/// A new session.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The user.
    pub user_id: UserId,
    /// The app logged into.
    pub app_id: AppId,
    /// The identity's openid.
    pub openid: OpenId,
    /// How long the session and its first refresh token live.
    pub lifetimes: SessionLifetimes,
    /// The calling service.
    pub actor: String,
    /// When.
    pub at: SystemTime,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session.
    pub session_id: SessionId,
    /// Its user.
    pub user_id: UserId,
    /// The app logged into.
    pub app_id: AppId,
    /// The identity's openid.
    pub openid: OpenId,
    /// Created.
    pub created_at: SystemTime,
    /// Ends unless refreshed.
    pub expires_at: SystemTime,
    /// Revoked, if it was.
    pub revoked_at: Option<SystemTime>,
}

/// A session with a fresh refresh token.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    /// The session.
    pub session: SessionRecord,
    /// The refresh token; only its hash is stored.
    pub refresh_token: SecretString,
    /// When the refresh token expires.
    pub refresh_expires_at: SystemTime,
}

/// The result of presenting a refresh token.
#[derive(Debug, Clone)]
pub enum Rotation {
    /// A new generation was issued for the same session.
    Rotated(IssuedSession),
    /// The generation just before the session's live one was presented
    /// within [`SessionLifetimes::reuse_grace`] of the rotation that retired
    /// it: most likely that rotation's answer was lost. The live generation
    /// (which nobody should hold) was retired and a new one issued for the
    /// same session, and a `refresh_grace` audit event recorded.
    Grace(IssuedSession),
    /// A retired generation was presented (an older one, or after the
    /// grace): the session is revoked.
    Reused {
        /// The revoked session.
        session_id: SessionId,
    },
    /// The session has reached [`SessionLifetimes::max_lifetime`]: it ends,
    /// whatever token of it was presented.
    Expired {
        /// The session that ended.
        session_id: SessionId,
    },
    /// Unknown, expired, or the session is revoked.
    Invalid,
}

/// Rows removed by one sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepReport {
    /// Expired OAuth states (left by releases before browser binding).
    pub oauth_states: u64,
    /// Browser logins whose state expired.
    pub web_logins: u64,
    /// Tickets kept for WeChat's repeated callbacks, forgotten after the window.
    pub web_login_tickets: u64,
    /// Expired login tickets.
    pub tickets: u64,
    /// Expired used-code records.
    pub used_codes: u64,
    /// Expired refresh tokens.
    pub refresh_tokens: u64,
    /// Expired sessions.
    pub sessions: u64,
}

/// A JWT signing key.
#[derive(Debug)]
pub struct SigningKey {
    /// Key id.
    pub kid: String,
    /// The private key, decrypted.
    pub private_key: SecretBox<Vec<u8>>,
    /// The public key as a JWK.
    pub public_jwk: String,
    /// Created.
    pub created_at: SystemTime,
    /// Retired, if it was.
    pub retired_at: Option<SystemTime>,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// When.
    pub at: SystemTime,
    /// The calling service.
    pub actor: String,
    /// `bind`, `unbind`, `merge`, `merge_refused`, `revoke` or `refresh_grace`.
    pub kind: String,
    /// The user concerned.
    pub user_id: Option<UserId>,
    /// The other user of a merge or a move.
    pub other_user_id: Option<UserId>,
    /// Details, without secrets.
    pub details: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_debug_hides_the_numbers() {
        let phone = Phone {
            phone_number: "+86 13800000000".into(),
            pure_phone_number: "13800000000".into(),
            country_code: "86".into(),
        };
        assert!(!format!("{phone:?}").contains("13800000000"));
    }
}

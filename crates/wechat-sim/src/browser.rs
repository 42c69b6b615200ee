//! The person sitting at the simulated authorize page, and what they answer.

use serde::{Deserialize, Serialize};

/// What the browser user answers on the consent page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// Approve: the page redirects with `code` and `state`.
    Allow,
    /// Refuse: the page redirects with `state` only (WECHAT_API.md §1, callback).
    Deny,
}

/// Who "is in the browser" when `/connect/oauth2/authorize` or `/connect/qrconnect` is opened.
#[derive(Debug)]
pub(crate) struct Browser {
    pub(crate) user: String,
    pub(crate) consent: Consent,
}

impl Default for Browser {
    fn default() -> Self {
        Self {
            user: "demo-user".to_owned(),
            consent: Consent::Allow,
        }
    }
}

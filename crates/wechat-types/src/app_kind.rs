//! The kind of a WeChat app: one enum for the config, the database, the client
//! and the simulator.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::InvalidId;

/// The kind of WeChat app an identity, a config entry or a login belongs to.
/// Serialised (config, database) as `mini_program`, `official_account` or
/// `website`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// A mini program: `wx.login` codes, `session_key`, phone numbers.
    MiniProgram,
    /// An Official Account: web OAuth inside WeChat
    /// (`connect/oauth2/authorize`).
    OfficialAccount,
    /// A website app on the Open Platform: QR-code login
    /// (`connect/qrconnect`, `snsapi_login`).
    Website,
}

impl AppKind {
    /// Every kind, in a fixed order.
    pub const ALL: [AppKind; 3] = [Self::MiniProgram, Self::OfficialAccount, Self::Website];

    /// The stored and configured spelling: `mini_program`, `official_account`
    /// or `website`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MiniProgram => "mini_program",
            Self::OfficialAccount => "official_account",
            Self::Website => "website",
        }
    }

    /// Reads the stored spelling.
    ///
    /// # Errors
    /// [`InvalidId`] for any other string.
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or(InvalidId::new(
                "app_kind",
                "must be mini_program, official_account or website",
            ))
    }

    /// Whether a browser logs in with this kind through web OAuth (an
    /// Official Account page or a website's QR code).
    pub fn is_web(self) -> bool {
        !matches!(self, Self::MiniProgram)
    }
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AppKind {
    type Err = InvalidId;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_text_and_serde() {
        for kind in AppKind::ALL {
            assert_eq!(kind.as_str().parse::<AppKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).expect("serialises");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<AppKind>(&json).ok(), Some(kind));
        }
    }

    #[test]
    fn unknown_kinds_are_refused_with_the_rule() {
        let error = AppKind::parse("app").expect_err("not a kind");
        assert_eq!(
            error.to_string(),
            "app_kind must be mini_program, official_account or website"
        );
        assert!(serde_json::from_str::<AppKind>("\"miniprogram\"").is_err());
    }
}

//! The crate's own ids: users and sessions.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// A malformed id or name given to a `FromStr`/`parse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {problem}")]
pub struct ParseError {
    what: &'static str,
    problem: &'static str,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered (UUID v7) id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(value).map(Self).map_err(|_| ParseError {
                    what: $what,
                    problem: "expected a UUID such as 0190f3c2-7d1e-7c3a-9b8e-2f4d5a6b7c8d",
                })
            }
        }
    };
}

uuid_id!(
    /// A user of the identity service (UUID v7).
    UserId, "user_id"
);
uuid_id!(
    /// A login session (UUID v7).
    SessionId, "session_id"
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_reject_garbage() {
        let user = UserId::generate();
        assert_eq!(user.to_string().parse::<UserId>().unwrap(), user);
        let error = "not-a-uuid".parse::<SessionId>().unwrap_err();
        assert!(error.to_string().starts_with("invalid session_id"));
    }
}

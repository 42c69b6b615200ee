//! Identifiers that are easy to mix up, each its own type.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An identifier failed validation; the message names the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {problem}")]
pub struct InvalidId {
    what: &'static str,
    problem: &'static str,
}

impl InvalidId {
    /// An error saying `what` (the field) broke a rule: `problem` completes the
    /// sentence ("state" "must be 1 to 128 ASCII letters and digits").
    pub fn new(what: &'static str, problem: &'static str) -> Self {
        Self { what, problem }
    }
}

fn check_token_chars(what: &'static str, value: &str, max_len: usize) -> Result<(), InvalidId> {
    if value.is_empty() {
        return Err(InvalidId {
            what,
            problem: "is empty",
        });
    }
    if value.len() > max_len {
        return Err(InvalidId {
            what,
            problem: "is too long",
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(InvalidId {
            what,
            problem: "may only contain ASCII letters, digits, '_' and '-'",
        });
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Validates and wraps a ", $what, ": 1 to ", stringify!($max), " characters of `[A-Za-z0-9_-]`.")]
            ///
            /// # Errors
            /// [`InvalidId`] naming the rule the value broke.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
                let value = value.into();
                check_token_chars($what, &value, $max)?;
                Ok(Self(value))
            }

            /// The identifier as WeChat spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

identifier!(
    /// A WeChat app id (`wx…`): a mini program, Official Account or website app.
    AppId, "app_id", 32
);
identifier!(
    /// A user's id within one app. Not secret, but personal: log it sparingly.
    OpenId, "openid", 64
);
identifier!(
    /// A user's id across every app bound to one Open Platform account.
    UnionId, "unionid", 64
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_id_accepts_wechat_shaped_ids() {
        assert_eq!(
            AppId::new("wx4f4bc4dec97d474b").map(|a| a.to_string()),
            Ok("wx4f4bc4dec97d474b".into())
        );
    }

    #[test]
    fn identifiers_reject_empty_long_and_foreign_characters() {
        assert!(AppId::new("").is_err());
        assert!(AppId::new("x".repeat(33)).is_err());
        assert!(OpenId::new("o&evil=1").is_err());
        assert!(UnionId::new("o 1").is_err());
    }

    #[test]
    fn identifiers_deserialize_through_validation() {
        assert!(serde_json::from_str::<OpenId>("\"oGZUI0egBJY1zhBYw2KhdUfwVJJE\"").is_ok());
        assert!(serde_json::from_str::<OpenId>("\"bad id\"").is_err());
    }
}

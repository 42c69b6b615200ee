//! Secrets and tokens: newtypes that never show their value in `Debug`, have no
//! `Display`, and are only read through an explicit `expose_secret()`.

use std::fmt;

use serde::{Deserialize, Deserializer};

macro_rules! secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Box<str>);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into().into_boxed_str())
            }

            /// The secret itself. Call this only where the value leaves the process
            /// for WeChat or for encrypted storage.
            pub fn expose_secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<redacted>)", stringify!($name))
            }
        }

        /// Compared in constant time, so comparing tokens leaks nothing through timing.
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
            }
        }

        impl Eq for $name {}

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::new)
            }
        }
    };
}

secret!(
    /// An app's AppSecret.
    AppSecret
);
secret!(
    /// A mini program user's `session_key` (base64 of 16 bytes), the key of their
    /// encrypted data. It stays inside the service.
    SessionKey
);
secret!(
    /// An app access token (`cgi-bin/token` or `cgi-bin/stable_token`).
    AccessToken
);
secret!(
    /// A user's web OAuth access token (`sns/oauth2/access_token`).
    WebAccessToken
);
secret!(
    /// A user's web OAuth refresh token, valid 30 days.
    WebRefreshToken
);
secret!(
    /// A single-use code: a `wx.login` code, a phone-number code or a web OAuth code.
    /// Whoever holds an unused one can log in as its user, so it is a secret too.
    Code
);

/// Compares two byte strings without an early exit on the first difference
/// (the length is not hidden).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_secret() {
        let secret = AppSecret::new("super-secret-value");
        let key = SessionKey::new("HyVFkGl5F5OQWJZZaNzBBg==");
        let printed = format!("{secret:?} {key:?} {:?}", Some(Code::new("0a1b2c")));
        assert!(!printed.contains("super-secret-value"));
        assert!(!printed.contains("HyVFkGl5"));
        assert!(!printed.contains("0a1b2c"));
        assert!(printed.contains("AppSecret(<redacted>)"));
    }

    #[test]
    fn equality_compares_values() {
        assert_eq!(AccessToken::new("a"), AccessToken::new("a"));
        assert_ne!(AccessToken::new("a"), AccessToken::new("b"));
        assert_ne!(AccessToken::new("a"), AccessToken::new("ab"));
    }
}

//! What the end-to-end tests (`tests/`), the storage conformance suite and
//! the benchmark (`crates/bench`) share, so that none of them copies it:
//!
//! - [`config`]: the service's config built from the server's own types (a
//!   renamed field breaks the build, not a test at run time), with its
//!   secrets in an environment list, never inline;
//! - [`postgres`]: a fresh PostgreSQL database per test, dropped afterwards;
//! - [`process`]: a port nobody else was handed, and the real binary spawned
//!   and waited for.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

#[cfg(feature = "service")]
pub mod config;
pub mod postgres;
pub mod process;

/// Whether this runs in CI (`CI=true`), where a missing PostgreSQL, Redis or
/// browser fails a test instead of skipping it.
#[allow(clippy::disallowed_methods)] // the tests' own setting, not the service's config
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.as_str(), "" | "0" | "false"))
}

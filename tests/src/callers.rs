//! Callers holding each combination of permissions, beside the default
//! `core` and all-permissions callers, for the tests of who may call what.

use crate::{Backend, Client, Options, TestApp};

/// Every non-empty set of permissions a caller may be configured with.
pub const PERMISSION_SETS: [&[&str]; 7] = [
    &["core"],
    &["import"],
    &["admin"],
    &["core", "import"],
    &["core", "admin"],
    &["import", "admin"],
    &["core", "import", "admin"],
];

/// The caller configured with exactly `permissions` (one of [`PERMISSION_SETS`]).
pub fn caller_name(permissions: &[&str]) -> String {
    format!("holds-{}", permissions.join("-"))
}

fn key(permissions: &[&str]) -> String {
    format!("{}-caller-key-0000000000000000", permissions.join("-"))
}

/// Starts the service on `backend` with a caller for every set of
/// [`PERMISSION_SETS`]; `None` as [`crate::spawn_on`].
pub async fn spawn_with_permission_sets(backend: Backend) -> Option<TestApp> {
    let options = Options::on(backend).configure(|config| {
        for permissions in PERMISSION_SETS {
            let held: Vec<_> = permissions
                .iter()
                .map(|name| test_support::config::permission(name))
                .collect();
            *config =
                config
                    .clone()
                    .with_caller(&caller_name(permissions), &key(permissions), &held);
        }
    });
    crate::spawn_with(options).await
}

impl TestApp {
    /// A client of the caller holding exactly `permissions`; the service must
    /// have been started by [`spawn_with_permission_sets`].
    pub fn holding(&self, permissions: &[&str]) -> Client {
        self.client_with(Some(&format!("Bearer {}", key(permissions))))
    }
}

//! Two `Storage`s on one SQLite file, as two replicas of the service have:
//! what the caches' tests need to show a change made elsewhere.
#![allow(clippy::unwrap_used)]

use secrecy::SecretString;
use storage::{KeyRing, Storage, StorageConfig};

/// A migrated database file and two storages on it.
pub(crate) struct Replicas {
    /// Keeps the file alive.
    pub(crate) dir: tempfile::TempDir,
    /// This process's storage.
    pub(crate) storage: Storage,
    /// Another process on the same database file.
    pub(crate) replica: Storage,
}

/// A fresh file, migrated, with both storages open on it under one key.
pub(crate) async fn on_one_sqlite_file() -> Replicas {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let key = KeyRing::generate_key();
    let ring = || KeyRing::new(("k1".into(), SecretString::from(key.clone())), vec![]).unwrap();
    let storage = Storage::connect(&StorageConfig::new(url.clone()), ring())
        .await
        .unwrap();
    storage.migrate().await.unwrap();
    let replica = Storage::connect(&StorageConfig::new(url), ring())
        .await
        .unwrap();
    Replicas {
        dir,
        storage,
        replica,
    }
}

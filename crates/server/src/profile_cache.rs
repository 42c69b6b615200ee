//! GetProfile from memory, without serving a profile that changed.
//!
//! A profile read is one database round trip (on PostgreSQL, most of what
//! GetProfile costs). This cache keeps answers by what they were looked up by
//! (user_id, external_id or identity; a unionid lookup is never kept, since a
//! new identity of another user can change its answer), each tagged with the
//! user's profile shard epoch as last polled and this process's change count
//! of that shard, both taken *before* the read (see `storage::Storage::
//! profile_epochs`). Every change to a profile moves one of them: the
//! database's epoch by trigger in the changing transaction, seen here at the
//! next poll; the local count right after a commit on this replica. So a
//! change made here is seen by the next call at once; one made on another
//! replica within `profiles.cache_propagation`, the bound after which an
//! unpolled cache stops vouching and every call reads the database. An entry
//! is trusted only while its shard is where it was when read.
//!
//! Held profiles include decrypted phone numbers: they stay in this process's
//! memory like its keys, and are never logged (`Phone`'s `Debug` redacts).
//! Memory is bounded by a [`GenerationMap`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use storage::{
    PROFILE_SHARDS, Storage, StorageError, UserId, UserLookup, UserProfile, profile_shard,
};

use crate::generation_map::GenerationMap;

/// Where an answer came from, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// From memory: no database read.
    Memory,
    /// Read from the database (and kept when it may be).
    Database,
}

impl Source {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Memory => "memory",
            Source::Database => "database",
        }
    }
}

/// The GetProfile cache of one process.
#[derive(Debug)]
pub(crate) struct ProfileCache {
    storage: Storage,
    entries: GenerationMap<Key, Entry>,
    propagation: Duration,
    polled: Mutex<Option<Arc<Polled>>>,
}

/// What an answer was looked up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(UserId),
    External(String),
    Identity { app_id: String, openid: String },
}

impl Key {
    /// The key of a lookup, or `None` for one whose answer is never kept.
    fn of(lookup: &UserLookup) -> Option<Self> {
        match lookup {
            UserLookup::UserId(user_id) => Some(Key::User(*user_id)),
            UserLookup::ExternalId(external_id) => Some(Key::External(external_id.clone())),
            UserLookup::Identity { app_id, openid } => Some(Key::Identity {
                app_id: app_id.to_string(),
                openid: openid.to_string(),
            }),
            UserLookup::UnionId(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    profile: Arc<UserProfile>,
    shard: usize,
    database: i64,
    local: u64,
}

#[derive(Debug)]
struct Polled {
    epochs: Vec<i64>,
    started: Instant,
}

impl ProfileCache {
    /// A cache of at most `entries` profiles (about 1 KiB each), trusted for
    /// at most `propagation` after the last poll of the profile epochs (zero:
    /// never, every call reads the database).
    pub(crate) fn new(storage: Storage, entries: usize, propagation: Duration) -> Self {
        Self {
            storage,
            entries: GenerationMap::new(if propagation.is_zero() { 0 } else { entries }),
            propagation,
            polled: Mutex::new(None),
        }
    }

    /// The profile `lookup` names: from memory while its shard has not
    /// changed, else from the database.
    ///
    /// # Errors
    /// The profile could not be read.
    pub(crate) async fn profile(
        &self,
        lookup: &UserLookup,
    ) -> Result<(Option<UserProfile>, Source), StorageError> {
        let key = Key::of(lookup).filter(|_| self.entries.keeps_anything());
        let polled = key.as_ref().and_then(|_| self.fresh_poll());
        let (Some(key), Some(polled)) = (key, polled) else {
            return Ok((self.storage.profile(lookup).await?, Source::Database));
        };
        if let Some(entry) = self.entries.get(&key) {
            if polled.epochs[entry.shard] == entry.database
                && self.storage.local_profile_changes(entry.shard) == entry.local
            {
                return Ok((Some(UserProfile::clone(&entry.profile)), Source::Memory));
            }
            self.entries.remove(&key);
        }
        // Taken after the poll and before the read, the order correctness needs.
        let local = local_counts(&self.storage, &key);
        let profile = self.storage.profile(lookup).await?;
        if let Some(profile) = &profile {
            let shard = profile_shard(&profile.user_id);
            if let Some(local) = local.of(shard) {
                self.entries.insert(
                    key,
                    Entry {
                        profile: Arc::new(profile.clone()),
                        shard,
                        database: polled.epochs[shard],
                        local,
                    },
                );
            }
        }
        Ok((profile, Source::Database))
    }

    /// Polls the profile epochs every quarter of `propagation`, for as long
    /// as the service runs. Does nothing when nothing is ever kept.
    pub(crate) async fn follow_epochs(self: Arc<Self>) {
        if !self.entries.keeps_anything() {
            return;
        }
        let every = (self.propagation / 4).max(Duration::from_millis(5));
        loop {
            let started = Instant::now();
            self.poll_once(started).await;
            tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
        }
    }

    /// One poll of the epochs, stamped with when it started.
    async fn poll_once(&self, started: Instant) {
        match self.storage.profile_epochs().await {
            Ok(epochs) => {
                if let Ok(mut polled) = self.polled.lock() {
                    *polled = Some(Arc::new(Polled { epochs, started }));
                }
            }
            Err(error) => tracing::debug!(%error, "profile epoch poll failed"),
        }
    }

    /// The last poll, when it started recently enough to vouch for anything.
    fn fresh_poll(&self) -> Option<Arc<Polled>> {
        let polled = self.polled.lock().ok()?.clone()?;
        (polled.started.elapsed() < self.propagation).then_some(polled)
    }

    /// Entries held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// This process's change counts, taken before a read whose shard is known
/// (a user_id) or not yet (any other key: every shard's).
enum LocalCounts {
    One { shard: usize, count: u64 },
    All(Box<[u64; PROFILE_SHARDS]>),
}

fn local_counts(storage: &Storage, key: &Key) -> LocalCounts {
    match key {
        Key::User(user_id) => {
            let shard = profile_shard(user_id);
            LocalCounts::One {
                shard,
                count: storage.local_profile_changes(shard),
            }
        }
        Key::External(_) | Key::Identity { .. } => {
            LocalCounts::All(Box::new(std::array::from_fn(|shard| {
                storage.local_profile_changes(shard)
            })))
        }
    }
}

impl LocalCounts {
    /// The count of `shard` as taken, if it was.
    fn of(&self, shard: usize) -> Option<u64> {
        match self {
            LocalCounts::One {
                shard: taken,
                count,
            } => (*taken == shard).then_some(*count),
            LocalCounts::All(counts) => counts.get(shard).copied(),
        }
    }
}

#[cfg(test)]
mod tests;

//! What a write transaction changed that this process's caches depend on.
//!
//! `Storage::write` (and its autocommit sibling, and the SQLite writer's
//! batches) run every transaction body under [`tracking`]; the body notes a
//! session-standing change ([`crate::session_epoch::bump`]) or a profile
//! change ([`crate::profile_epoch::touched`]); after the commit, and only
//! then, `Storage::committed` moves this process's counters, so a cache entry
//! tagged before the commit cannot pass for one read after it.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::Ordering;

use crate::Storage;

tokio::task_local! {
    static CHANGES: Cell<Changes>;
}

/// The cache-relevant changes of one transaction body.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Changes {
    /// A session was revoked or moved to another user.
    pub(crate) sessions: bool,
    /// The profile shards touched, one bit for each of the 256.
    profile_shards: [u64; 4],
}

impl Changes {
    /// Marks a profile shard as touched.
    pub(crate) fn touch_profile_shard(&mut self, shard: u8) {
        self.profile_shards[usize::from(shard / 64)] |= 1 << (shard % 64);
    }

    /// The profile shards touched, ascending.
    pub(crate) fn profile_shards(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=u8::MAX)
            .filter(|shard| self.profile_shards[usize::from(shard / 64)] & (1 << (shard % 64)) != 0)
    }
}

/// Notes a change made by the transaction body running in this task.
pub(crate) fn note(change: impl FnOnce(&mut Changes)) {
    let noted = CHANGES.try_with(|cell| {
        let mut changes = cell.get();
        change(&mut changes);
        cell.set(changes);
    });
    debug_assert!(
        noted.is_ok(),
        "a cache-relevant change outside Storage::write"
    );
}

/// Runs a transaction body, and says what it changed.
pub(crate) async fn tracking<T>(body: impl Future<Output = T>) -> (T, Changes) {
    CHANGES
        .scope(Cell::new(Changes::default()), async {
            let output = body.await;
            (output, CHANGES.with(Cell::get))
        })
        .await
}

impl Storage {
    /// Called after a transaction committed, with what its body changed.
    pub(crate) fn committed(&self, changes: &Changes) {
        if changes.sessions {
            self.inner
                .local_session_changes
                .fetch_add(1, Ordering::AcqRel);
        }
        for shard in changes.profile_shards() {
            self.inner.local_profile_changes[usize::from(shard)].fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_shards_come_back_as_marked() {
        let mut changes = Changes::default();
        for shard in [0, 63, 64, 200, 255, 63] {
            changes.touch_profile_shard(shard);
        }
        assert_eq!(
            changes.profile_shards().collect::<Vec<_>>(),
            [0, 63, 64, 200, 255]
        );
        assert!(!changes.sessions);
    }
}

//! A bounded in-memory map for the service's caches (VerifyToken's and
//! GetProfile's): sharded behind mutexes, each shard keeping two generations
//! of entries and dropping the older one whole when the newer fills. An entry
//! found in the older generation moves to the newer, so what is used stays:
//! an approximate LRU with no bookkeeping on hits.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// At most about `entries` values by key; zero entries keeps nothing.
#[derive(Debug)]
pub(crate) struct GenerationMap<K, V> {
    shards: Box<[Mutex<Generations<K, V>>]>,
    /// Entries per generation per shard; zero: nothing is kept.
    generation_size: usize,
    hasher: RandomState,
}

#[derive(Debug)]
struct Generations<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
}

impl<K, V> Default for Generations<K, V> {
    fn default() -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq, V: Clone> GenerationMap<K, V> {
    /// A map of at most `entries` values (rounded up to fill its shards).
    pub(crate) fn new(entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            generation_size: entries.div_ceil(2 * SHARDS),
            hasher: RandomState::new(),
        }
    }

    /// Whether anything is ever kept.
    pub(crate) fn keeps_anything(&self) -> bool {
        self.generation_size > 0
    }

    /// The value under `key`, if held.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut shard = self.shard(key)?;
        if let Some(value) = shard.current.get(key) {
            return Some(value.clone());
        }
        let (key, value) = shard.previous.remove_entry(key)?;
        shard.insert(key, value.clone(), self.generation_size);
        Some(value)
    }

    /// Keeps `value` under `key`, replacing what was there.
    pub(crate) fn insert(&self, key: K, value: V) {
        if let Some(mut shard) = self.shard(&key) {
            shard.previous.remove(&key);
            shard.insert(key, value, self.generation_size);
        }
    }

    /// Forgets `key`.
    pub(crate) fn remove(&self, key: &K) {
        if let Some(mut shard) = self.shard(key) {
            shard.current.remove(key);
            shard.previous.remove(key);
        }
    }

    /// Entries held now (both generations).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|shard| shard.lock().ok())
            .map(|shard| shard.current.len() + shard.previous.len())
            .sum()
    }

    fn shard(&self, key: &K) -> Option<MutexGuard<'_, Generations<K, V>>> {
        if self.generation_size == 0 {
            return None;
        }
        // The modulo keeps the value below SHARDS, so the cast cannot truncate it.
        #[allow(clippy::cast_possible_truncation)]
        let index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        self.shards[index].lock().ok()
    }
}

impl<K: Hash + Eq, V> Generations<K, V> {
    fn insert(&mut self, key: K, value: V, generation_size: usize) {
        self.current.insert(key, value);
        if self.current.len() >= generation_size {
            self.previous = std::mem::take(&mut self.current);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_used_stays_and_the_rest_goes_within_the_bound() {
        let map = GenerationMap::new(64);
        map.insert(0u32, "kept");
        for n in 1..1000u32 {
            map.insert(n, "filler");
            assert_eq!(map.get(&0), Some("kept"), "after {n} others");
            assert!(map.len() <= 64 + SHARDS, "{} entries", map.len());
        }
        assert_eq!(map.get(&1), None, "an unused early entry is gone");
    }

    #[test]
    fn insert_replaces_and_remove_forgets() {
        let map = GenerationMap::new(100);
        map.insert("k", 1);
        map.insert("k", 2);
        assert_eq!(map.get(&"k"), Some(2));
        map.remove(&"k");
        assert_eq!(map.get(&"k"), None);
    }

    #[test]
    fn zero_entries_keeps_nothing() {
        let map = GenerationMap::new(0);
        map.insert(1, 1);
        assert_eq!(map.get(&1), None);
        assert_eq!(map.len(), 0);
        assert!(!map.keeps_anything());
    }
}

//! Bounded fingerprint cache keyed by a 128-bit hash of the raw SQL text.
//!
//! Applications send the same few hundred statement texts again and again, so a hit must be
//! cheap: one XXH3-128 pass over the text, a shared (read) lock on one of 16 shards, a probe, and
//! a reference-count increment. No allocation, no parsing. Misses fingerprint outside any lock.
//! Each shard holds at most `capacity / 16` entries and evicts with the CLOCK (second-chance)
//! policy, so a flood of unique statements cycles through the cache without growing it and
//! without pushing out the statements that keep getting hits.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;

use super::Fingerprint;

const SHARDS: usize = 16;

/// A bounded cache from SQL text to [`Fingerprint`], as used by [`Pool`](crate::Pool).
///
/// # Examples
/// ```
/// let cache = pgscope::FingerprintCache::new(1_000);
/// let a = cache.get("SELECT * FROM users WHERE id = 1");
/// let b = cache.get("SELECT * FROM users WHERE id = 1"); // a hit: no parsing, no allocation
/// assert_eq!(a, b);
/// assert_eq!(cache.len(), 1);
/// ```
pub struct FingerprintCache {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
    misses: AtomicU64,
}

#[derive(Default)]
struct Shard {
    index: HashKeyed<u128, usize>,
    slots: Vec<Slot>,
    hand: usize,
}

struct Slot {
    key: u128,
    fingerprint: Fingerprint,
    referenced: AtomicBool,
}

/// Keys that are already uniformly distributed hashes (text hashes, fingerprint ids): a map
/// keyed by them uses their low bits directly instead of hashing them again.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

/// A map keyed by a hash (a fingerprint id): no second hash per lookup.
pub(crate) type HashKeyed<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

impl std::fmt::Debug for FingerprintCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerprintCache")
            .field("len", &self.len())
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

impl FingerprintCache {
    /// A cache of at most `capacity` entries (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            per_shard,
            misses: AtomicU64::new(0),
        }
    }

    /// The fingerprint of `sql`, computed on a miss.
    pub fn get(&self, sql: &str) -> Fingerprint {
        self.lookup(sql).0
    }

    /// The fingerprint of `sql`, and a hash of its exact text (which differs when literal
    /// values differ: part of a statement's parameter set).
    pub(crate) fn lookup(&self, sql: &str) -> (Fingerprint, u64) {
        let key = xxhash_rust::xxh3::xxh3_128(sql.as_bytes());
        (self.get_keyed(sql, key), key as u64)
    }

    fn get_keyed(&self, sql: &str, key: u128) -> Fingerprint {
        if self.per_shard == 0 {
            return super::fingerprint(sql);
        }
        let shard = &self.shards[(key >> 64) as usize % SHARDS];
        {
            let guard = shard.read();
            if let Some(&slot) = guard.index.get(&key) {
                let slot = &guard.slots[slot];
                // Read before writing: hot entries stay marked, so their cache line is not
                // written (and bounced between cores) on every hit.
                if !slot.referenced.load(Ordering::Relaxed) {
                    slot.referenced.store(true, Ordering::Relaxed);
                }
                return slot.fingerprint.clone();
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let fingerprint = super::fingerprint(sql);
        let mut guard = shard.write();
        let shard = &mut *guard;
        if shard.index.contains_key(&key) {
            return fingerprint;
        }
        let new = Slot {
            key,
            fingerprint: fingerprint.clone(),
            referenced: AtomicBool::new(false),
        };
        if shard.slots.len() < self.per_shard {
            shard.index.insert(key, shard.slots.len());
            shard.slots.push(new);
            return fingerprint;
        }
        // CLOCK: skip (and clear) recently referenced slots; at most two sweeps.
        loop {
            let hand = shard.hand;
            shard.hand = (hand + 1) % shard.slots.len();
            if shard.slots[hand].referenced.swap(false, Ordering::Relaxed) {
                continue;
            }
            shard.index.remove(&shard.slots[hand].key);
            shard.index.insert(key, hand);
            shard.slots[hand] = new;
            return fingerprint;
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().slots.len()).sum()
    }

    /// Whether the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that had to fingerprint from scratch so far.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_of_unique_statements_stays_within_capacity_and_keeps_hot_entries() {
        let cache = FingerprintCache::new(160);
        let hot = "SELECT * FROM users WHERE id = $1";
        for i in 0..20_000 {
            cache.get(hot);
            cache.get(&format!("SELECT {i} FROM t{i}"));
        }
        assert!(cache.len() <= 160, "len {}", cache.len());
        let before = cache.misses();
        cache.get(hot);
        assert_eq!(cache.misses(), before, "hot statement was evicted");
    }

    #[test]
    fn zero_capacity_disables_caching() {
        let cache = FingerprintCache::new(0);
        assert_eq!(cache.get("SELECT 1").normalized(), "SELECT $1");
        assert_eq!(cache.len(), 0);
    }
}

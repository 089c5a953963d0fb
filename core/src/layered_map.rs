//! Maps of `u64` keys that a timeline restores at memory speed.
//!
//! A replay's largest tables (the ledger of live blocks, the program's ids, dlmalloc's freed
//! addresses) hold a hundred thousand entries on a big trace, and every seek restores them from
//! a checkpoint. Inserting that many keys into a hash table costs a cache miss each, several
//! milliseconds a table; writing them in key order into sorted arrays streams through memory at
//! a fraction of that. So a [`LayeredMap`] is a sorted, immutable base that restores write in
//! one pass and copies share, under a hash table of the changes made since (a seek replays a
//! few thousand operations: the changes stay small). A map built by replaying from empty has
//! no base: it is just its hash table, as fast as one.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use rustc_hash::FxHashMap;

/// Base keys per bucket of the base's directory, on average.
const KEYS_PER_BUCKET: usize = 2;

/// Capacity of the changes' hash table that a restore keeps (beyond, it starts a new one).
const SMALL_CHANGES: usize = 1 << 14;

/// A map from `u64` keys to small `Copy` values: a shared sorted base, and the changes since.
#[derive(Debug, Clone)]
pub struct LayeredMap<V> {
    base: Arc<Base<V>>,
    /// Entries added or replaced since the base was written, and `None` for base keys removed.
    changes: FxHashMap<u64, Option<V>>,
    /// What was written since [`Self::track_changes`], when tracking (a timeline recording,
    /// to store what changed between checkpoints rather than whole tables).
    journal: Option<Journal<V>>,
}

/// The keys written since tracking started.
#[derive(Debug, Clone)]
struct Journal<V> {
    /// Keys written since the changes were last read.
    recent: Vec<u64>,
    /// Keys written before that, in key order, with their values then (`None`: removed).
    earlier: Vec<(u64, Option<V>)>,
}

/// Entries sorted by key, with a directory that finds a key's neighbourhood without a
/// search: the keys' range is cut into equal buckets, and `buckets[b]` is the position of the
/// first entry in bucket `b` or after it. Heap addresses and ids spread over their range, so a
/// bucket holds an entry or two (a skewed set makes a few buckets long, and those are
/// searched). Keys sit beside their values: a lookup misses the cache once for both.
#[derive(Debug, Clone)]
struct Base<V> {
    entries: Vec<(u64, V)>,
    /// The first key; a key's bucket is `(key - low) >> shift`.
    low: u64,
    shift: u32,
    /// One entry per bucket and one past the last, so bucket `b` is `buckets[b]..buckets[b + 1]`.
    buckets: Vec<u32>,
}

impl<V> Default for Base<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            low: 0,
            shift: 0,
            buckets: Vec::new(),
        }
    }
}

impl<V: Copy> Base<V> {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn bucket(&self, key: u64) -> Option<usize> {
        let offset = key.checked_sub(self.low)?;
        Some(offset.checked_shr(self.shift).unwrap_or(0) as usize)
    }

    /// Lays the directory over the entries (ascending).
    fn index(&mut self) {
        self.buckets.clear();
        let (Some(&(low, _)), Some(&(high, _))) = (self.entries.first(), self.entries.last())
        else {
            return;
        };
        let wanted = (self.entries.len() / KEYS_PER_BUCKET).max(1) as u64;
        let span = high - low;
        // The least shift that cuts the span into at most `wanted` buckets.
        let shift = (0..64).find(|&shift| span >> shift < wanted).unwrap_or(64);
        self.low = low;
        self.shift = shift;
        let count = span.checked_shr(shift).unwrap_or(0) as usize + 1;
        self.buckets.reserve(count + 1);
        let mut at = 0usize;
        for bucket in 0..count {
            while self
                .entries
                .get(at)
                .and_then(|&(key, _)| self.bucket(key))
                .is_some_and(|b| b < bucket)
            {
                at += 1;
            }
            self.buckets.push(at as u32);
        }
        self.buckets.push(self.entries.len() as u32);
    }

    fn get(&self, key: u64) -> Option<V> {
        let bucket = self.bucket(key)?;
        let (&start, &end) = (self.buckets.get(bucket)?, self.buckets.get(bucket + 1)?);
        let entries = self.entries.get(start as usize..end as usize)?;
        if entries.len() <= 8 {
            entries.iter().find(|&&(k, _)| k == key).map(|&(_, v)| v)
        } else {
            let i = entries.binary_search_by_key(&key, |&(k, _)| k).ok()?;
            entries.get(i).map(|&(_, v)| v)
        }
    }

    fn bytes(&self) -> usize {
        self.entries.capacity() * size_of::<(u64, V)>() + self.buckets.capacity() * size_of::<u32>()
    }
}

impl<V> Default for LayeredMap<V> {
    fn default() -> Self {
        Self {
            base: Arc::default(),
            changes: FxHashMap::default(),
            journal: None,
        }
    }
}

impl<V: Copy> LayeredMap<V> {
    /// The value under `key`.
    pub fn get(&self, key: u64) -> Option<V> {
        match self.changes.get(&key) {
            Some(&slot) => slot,
            None => self.base.get(key),
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Sets the value under `key`; returns the one it replaces.
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        if let Some(journal) = &mut self.journal {
            journal.recent.push(key);
        }
        let old = match self.changes.entry(key) {
            Entry::Occupied(mut changed) => changed.insert(Some(value)),
            Entry::Vacant(vacant) => {
                vacant.insert(Some(value));
                self.base.get(key)
            }
        };
        self.dissolve_if_outgrown();
        old
    }

    /// Sets the value under `key`, without looking up the one it replaces (which a lookup in
    /// the base would cost).
    pub fn set(&mut self, key: u64, value: V) {
        if let Some(journal) = &mut self.journal {
            journal.recent.push(key);
        }
        self.changes.insert(key, Some(value));
        self.dissolve_if_outgrown();
    }

    /// Removes the value under `key`, if any, without looking it up: over a base, `key` is
    /// marked gone whether the base holds it or not.
    pub fn discard(&mut self, key: u64) {
        if let Some(journal) = &mut self.journal {
            journal.recent.push(key);
        }
        if self.base.is_empty() {
            self.changes.remove(&key);
        } else {
            self.changes.insert(key, None);
            self.dissolve_if_outgrown();
        }
    }

    /// Removes the value under `key` and returns it.
    pub fn remove(&mut self, key: u64) -> Option<V> {
        if let Some(journal) = &mut self.journal {
            journal.recent.push(key);
        }
        if self.base.is_empty() {
            return self.changes.remove(&key).flatten();
        }
        // The base cannot change: what is gone from it is marked gone above it.
        let old = match self.changes.entry(key) {
            Entry::Occupied(mut changed) => {
                if self.base.get(key).is_some() {
                    changed.insert(None)
                } else {
                    changed.remove()
                }
            }
            Entry::Vacant(vacant) => {
                let old = self.base.get(key);
                if old.is_some() {
                    vacant.insert(None);
                }
                old
            }
        };
        self.dissolve_if_outgrown();
        old
    }

    /// Starts (or restarts) keeping track of the keys written from now on.
    pub fn track_changes(&mut self) {
        match &mut self.journal {
            Some(journal) => {
                journal.recent.clear();
                journal.earlier.clear();
            }
            None => {
                self.journal = Some(Journal {
                    recent: Vec::new(),
                    earlier: Vec::new(),
                });
            }
        }
    }

    /// What changed since [`Self::track_changes`], when tracking: every key written since, in
    /// key order, with its value now (`None`: removed, though it may not have been there
    /// before). Only the keys written since the last call are looked up.
    pub fn tracked_changes(&mut self) -> Option<&[(u64, Option<V>)]> {
        let mut journal = self.journal.take()?;
        let mut recent = sorted_by_key(journal.recent.drain(..).map(|key| (key, ())).collect());
        recent.dedup_by_key(|&mut (key, ())| key);
        let now: Vec<(u64, Option<V>)> = recent
            .into_iter()
            .map(|(key, ())| (key, self.get(key)))
            .collect();
        // A key written again takes its value now (a removal included: it is kept as `None`).
        let earlier = std::mem::take(&mut journal.earlier);
        let mut merged = Vec::with_capacity(earlier.len() + now.len());
        let now = now.into_iter().map(|(key, value)| (key, Some(value)));
        merge_into(earlier.into_iter(), now, &mut merged);
        journal.earlier = merged;
        let journal = self.journal.insert(journal);
        Some(&journal.earlier)
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, V)> + '_ {
        let base = self.base.entries.iter().copied();
        base.filter(|(key, _)| !self.changes.contains_key(key))
            .chain(
                self.changes
                    .iter()
                    .filter_map(|(&key, &slot)| slot.map(|value| (key, value))),
            )
    }

    /// The entries in key order.
    pub fn sorted(&self) -> Vec<(u64, V)> {
        let changes = sorted_by_key(self.changes.iter().map(|(&k, &v)| (k, v)).collect());
        let mut merged = Vec::with_capacity(self.base.entries.len() + changes.len());
        merge_into(
            self.base.entries.iter().copied(),
            changes.into_iter(),
            &mut merged,
        );
        merged
    }

    /// Makes the map hold exactly the entries `fill` pushes, which must come in ascending key
    /// order, `count` of them (a hint). Reuses the base's buffer when no copy shares it.
    pub fn set_base(&mut self, count: usize, fill: impl FnOnce(&mut Vec<(u64, V)>)) {
        // A hash table grown by a long replay keeps its capacity when cleared: lookups would
        // scatter over megabytes for a handful of entries.
        if self.changes.capacity() > SMALL_CHANGES {
            self.changes = FxHashMap::default();
        } else {
            self.changes.clear();
        }
        // The old base's buffers, when no copy shares them.
        let mut base = Arc::get_mut(&mut self.base)
            .map(std::mem::take)
            .unwrap_or_default();
        base.entries.clear();
        base.entries.reserve(count);
        fill(&mut base.entries);
        base.index();
        self.base = Arc::new(base);
    }

    /// Host bytes this copy of the map costs: its changes, and the base when no other copy
    /// shares it.
    pub fn heap_bytes(&self) -> usize {
        let changes = self.changes.capacity() * (size_of::<(u64, Option<V>)>() + 1);
        let base = if Arc::strong_count(&self.base) == 1 {
            self.base.bytes()
        } else {
            0
        };
        changes + base
    }

    /// Once the changes outnumber the base, a replay has run far from where the base was
    /// written: the map turns back into a plain hash table, whose lookups are faster than the
    /// base's searches (amortised: the base's entries move once per as many changes).
    fn dissolve_if_outgrown(&mut self) {
        if self.base.is_empty() || self.changes.len() <= self.base.entries.len().max(64) {
            return;
        }
        let base = std::mem::take(&mut self.base);
        self.changes.reserve(base.entries.len());
        for &(key, value) in &base.entries {
            self.changes.entry(key).or_insert(Some(value));
        }
        self.changes.retain(|_, slot| slot.is_some());
    }
}

/// `base` (sorted by key) with `changes` (sorted by key) applied, pushed onto `out`: a
/// change's value replaces the base's, and `None` drops it.
pub(crate) fn merge_into<V: Copy>(
    mut base: impl Iterator<Item = (u64, V)>,
    changes: impl Iterator<Item = (u64, Option<V>)>,
    out: &mut Vec<(u64, V)>,
) {
    let mut next = base.next();
    for (key, change) in changes {
        while let Some(entry) = next.filter(|&(old, _)| old < key) {
            out.push(entry);
            next = base.next();
        }
        if next.is_some_and(|(old, _)| old == key) {
            next = base.next();
        }
        if let Some(value) = change {
            out.push((key, value));
        }
    }
    out.extend(next);
    out.extend(base);
}

/// `entries` sorted by key, least significant byte first (a radix sort: a checkpoint sorts a
/// table of a hundred thousand entries, where a comparison sort costs several times more).
/// Bytes that every key shares are skipped.
pub(crate) fn sorted_by_key<V: Copy>(mut entries: Vec<(u64, V)>) -> Vec<(u64, V)> {
    let Some(&first) = entries.first() else {
        return entries;
    };
    let mut spare = vec![first; entries.len()];
    for shift in (0..64).step_by(8) {
        let digit = |key: u64| ((key >> shift) & 0xff) as usize;
        let mut counts = [0usize; 256];
        for &(key, _) in &entries {
            counts[digit(key)] += 1;
        }
        if counts.contains(&entries.len()) {
            continue;
        }
        let mut next = [0usize; 256];
        let mut sum = 0;
        for (slot, count) in next.iter_mut().zip(counts) {
            *slot = sum;
            sum += count;
        }
        for &entry in &entries {
            let d = digit(entry.0);
            spare[next[d]] = entry;
            next[d] += 1;
        }
        std::mem::swap(&mut entries, &mut spare);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// What a test does to a map (and to the model beside it).
    #[derive(Debug, Clone)]
    enum Action {
        Insert(u64, u32),
        Remove(u64),
        Set(u64, u32),
        Discard(u64),
        /// Writes the map's entries as a new base (what a checkpoint restore does).
        Rebase,
        /// Continues with a copy, dropping the original (a waypoint restored).
        Clone,
    }

    /// Keys from a few clusters and a wide range, so that runs of operations hit the same
    /// keys, buckets fill unevenly and bases are both dense and sparse.
    fn key() -> impl Strategy<Value = u64> {
        prop_oneof![
            0..64u64,
            (0..64u64).prop_map(|k| 0x7f00_0000_0000 + k * 16),
            any::<u64>(),
        ]
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            6 => (key(), any::<u32>()).prop_map(|(k, v)| Action::Insert(k, v)),
            4 => key().prop_map(Action::Remove),
            3 => (key(), any::<u32>()).prop_map(|(k, v)| Action::Set(k, v)),
            2 => key().prop_map(Action::Discard),
            1 => Just(Action::Rebase),
            1 => Just(Action::Clone),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn a_layered_map_behaves_as_a_map(actions in proptest::collection::vec(action(), 0..400)) {
            let mut map = LayeredMap::default();
            let mut model = BTreeMap::new();
            for action in actions {
                match action {
                    Action::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                    Action::Remove(k) => prop_assert_eq!(map.remove(k), model.remove(&k)),
                    Action::Set(k, v) => {
                        map.set(k, v);
                        model.insert(k, v);
                    }
                    Action::Discard(k) => {
                        map.discard(k);
                        model.remove(&k);
                    }
                    Action::Rebase => {
                        let entries = map.sorted();
                        map.set_base(entries.len(), |base| base.extend(entries));
                    }
                    Action::Clone => {
                        let copy = map.clone();
                        map = copy;
                    }
                }
                let wanted: Vec<(u64, u32)> = model.iter().map(|(&k, &v)| (k, v)).collect();
                prop_assert_eq!(&map.sorted(), &wanted);
                let mut unordered: Vec<(u64, u32)> = map.iter().collect();
                unordered.sort_unstable();
                prop_assert_eq!(&unordered, &wanted);
                for &(k, v) in wanted.iter().take(8) {
                    prop_assert_eq!(map.get(k), Some(v));
                    prop_assert_eq!(map.get(k.wrapping_add(1)), model.get(&k.wrapping_add(1)).copied());
                }
            }
        }
    }

    #[test]
    fn a_copy_shares_its_base_and_its_changes_stay_its_own() {
        let mut map = LayeredMap::default();
        map.set_base(3, |base| base.extend([(10, 1u8), (20, 2), (30, 3)]));
        let mut copy = map.clone();
        assert_eq!(
            copy.heap_bytes(),
            map.heap_bytes(),
            "neither counts the shared base"
        );
        copy.insert(20, 9);
        copy.remove(10);
        assert_eq!(map.sorted(), [(10, 1), (20, 2), (30, 3)]);
        assert_eq!(copy.sorted(), [(20, 9), (30, 3)]);
        drop(map);
        assert!(
            copy.heap_bytes() >= 3 * 9,
            "the base is the copy's alone now"
        );
    }

    #[test]
    fn changes_outgrowing_the_base_turn_it_back_into_a_hash_table() {
        let mut map = LayeredMap::default();
        map.set_base(2, |base| base.extend([(1, ()), (2, ())]));
        for k in 100..300 {
            map.insert(k, ());
        }
        assert!(map.base.is_empty());
        assert!(map.contains_key(1) && map.contains_key(2) && map.contains_key(299));
        assert_eq!(map.sorted().len(), 202);
    }

    proptest! {
        #[test]
        fn the_radix_sort_sorts(keys in proptest::collection::vec(any::<u64>(), 0..300)) {
            let entries: Vec<(u64, usize)> = keys.iter().copied().zip(0..).collect();
            let mut wanted = entries.clone();
            wanted.sort_by_key(|&(k, i)| (k, i));
            prop_assert_eq!(sorted_by_key(entries), wanted);
        }
    }
}

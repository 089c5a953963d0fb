//! Keyed tables stored compactly, for timeline checkpoints.
//!
//! A replay's largest host structures are hash tables keyed by address or id with two numbers
//! per entry (the ledger of live blocks, the program's id -> pointer map). Cloned as they are,
//! they cost 25 bytes per slot with the table's slack; a checkpoint stores them instead sorted
//! by key, as varints: the gap to the previous key, the first value as a signed difference
//! from the previous entry's, the second as it is (a few bytes an entry), and rebuilds the
//! table on restore. Sets of addresses (dlmalloc's freed blocks) are stored the same way, as
//! the gaps between their sorted keys.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::layout::LiveEntry;
use crate::memory::{push_varint, read_varint};
use crate::replay::Held;

/// A table value made of two numbers.
pub(crate) trait Pair: Copy {
    /// The two numbers; the first is stored as a difference from the previous entry's (a
    /// pointer, which runs near its neighbours'), the second as it is (a size).
    fn to_pair(self) -> (u64, u64);
    /// The value back from its two numbers.
    fn from_pair(first: u64, second: u64) -> Self;
}

impl Pair for LiveEntry {
    fn to_pair(self) -> (u64, u64) {
        (self.requested, self.held)
    }

    fn from_pair(requested: u64, held: u64) -> Self {
        LiveEntry { requested, held }
    }
}

impl Pair for Held {
    fn to_pair(self) -> (u64, u64) {
        (self.ptr, self.size)
    }

    fn from_pair(ptr: u64, size: u64) -> Self {
        Held { ptr, size }
    }
}

/// A table's entries, sorted by key and delta-encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PackedTable {
    entries: usize,
    bytes: Vec<u8>,
}

fn zigzag(delta: u64) -> u64 {
    let signed = delta as i64;
    ((signed << 1) ^ (signed >> 63)) as u64
}

fn unzigzag(value: u64) -> u64 {
    ((value >> 1) as i64 ^ -((value & 1) as i64)) as u64
}

/// `entries` sorted by key, least significant byte first (a radix sort: a checkpoint sorts a
/// table of a hundred thousand entries, where a comparison sort costs several times more).
/// Bytes that every key shares are skipped.
fn sorted_by_key<V: Copy>(mut entries: Vec<(u64, V)>) -> Vec<(u64, V)> {
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

impl PackedTable {
    /// The entries of `table`, packed.
    pub(crate) fn pack<V: Pair>(table: &FxHashMap<u64, V>) -> Self {
        let sorted = sorted_by_key(table.iter().map(|(&k, &v)| (k, v)).collect());
        let mut bytes = Vec::with_capacity(sorted.len() * 6);
        let (mut last_key, mut last_first) = (0u64, 0u64);
        for (key, value) in sorted {
            let (first, second) = value.to_pair();
            push_varint(&mut bytes, key.wrapping_sub(last_key));
            push_varint(&mut bytes, zigzag(first.wrapping_sub(last_first)));
            push_varint(&mut bytes, second);
            (last_key, last_first) = (key, first);
        }
        bytes.shrink_to_fit();
        Self {
            entries: table.len(),
            bytes,
        }
    }

    /// The table back (its iteration order may differ from the packed table's).
    pub(crate) fn unpack<V: Pair>(&self) -> FxHashMap<u64, V> {
        let mut table = FxHashMap::default();
        self.unpack_into(&mut table);
        table
    }

    /// Makes `table` the table this was packed from, reusing its allocation (a fresh one of
    /// a few MiB costs more in page faults than filling it does).
    pub(crate) fn unpack_into<V: Pair>(&self, table: &mut FxHashMap<u64, V>) {
        table.clear();
        table.reserve(self.entries);
        let mut at = 0;
        let (mut key, mut first) = (0u64, 0u64);
        while at < self.bytes.len() {
            let (Some(gap), Some(delta), Some(second)) = (
                read_varint(&self.bytes, &mut at),
                read_varint(&self.bytes, &mut at),
                read_varint(&self.bytes, &mut at),
            ) else {
                break;
            };
            key = key.wrapping_add(gap);
            first = first.wrapping_add(unzigzag(delta));
            table.insert(key, V::from_pair(first, second));
        }
    }

    /// The keys of `set`, packed (sorted, as gaps).
    pub(crate) fn pack_set(set: &FxHashSet<u64>) -> Self {
        let sorted = sorted_by_key(set.iter().map(|&k| (k, ())).collect());
        let mut bytes = Vec::with_capacity(sorted.len() * 3);
        let mut last = 0u64;
        for (key, ()) in sorted {
            push_varint(&mut bytes, key.wrapping_sub(last));
            last = key;
        }
        bytes.shrink_to_fit();
        Self {
            entries: set.len(),
            bytes,
        }
    }

    /// The set [`Self::pack_set`] packed.
    pub(crate) fn unpack_set(&self) -> FxHashSet<u64> {
        let mut set = FxHashSet::default();
        self.unpack_set_into(&mut set);
        set
    }

    /// Makes `set` the set [`Self::pack_set`] packed, reusing its allocation.
    pub(crate) fn unpack_set_into(&self, set: &mut FxHashSet<u64>) {
        set.clear();
        set.reserve(self.entries);
        let (mut at, mut key) = (0, 0u64);
        while let Some(gap) = read_varint(&self.bytes, &mut at) {
            key = key.wrapping_add(gap);
            set.insert(key);
        }
    }

    /// Host bytes this packed table occupies.
    pub(crate) fn packed_bytes(&self) -> usize {
        self.bytes.capacity() + size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tables_come_back_whole(
            entries in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..200)
        ) {
            let table: FxHashMap<u64, Held> = entries
                .iter()
                .map(|&(k, ptr, size)| (k, Held { ptr, size }))
                .collect();
            let packed = PackedTable::pack(&table);
            prop_assert_eq!(packed.unpack::<Held>(), table);
        }
    }

    proptest! {
        #[test]
        fn sets_come_back_whole(keys in proptest::collection::hash_set(any::<u64>(), 0..200)) {
            let set: FxHashSet<u64> = keys.into_iter().collect();
            let mut back = FxHashSet::default();
            back.insert(7);
            PackedTable::pack_set(&set).unpack_set_into(&mut back);
            prop_assert_eq!(back, set);
        }
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

    #[test]
    fn nearby_keys_and_pointers_take_a_few_bytes_an_entry() {
        let table: FxHashMap<u64, LiveEntry> = (0..10_000u64)
            .map(|i| {
                let at = 0x1_0000_0000 + i * 48;
                (
                    at,
                    LiveEntry {
                        requested: 40,
                        held: 48,
                    },
                )
            })
            .collect();
        let packed = PackedTable::pack(&table);
        assert!(
            packed.packed_bytes() < 10_000 * 4,
            "{}",
            packed.packed_bytes()
        );
        assert_eq!(packed.unpack::<LiveEntry>(), table);
    }
}

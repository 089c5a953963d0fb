//! Keyed tables stored compactly, for timeline checkpoints.
//!
//! A replay's largest host structures are hash tables keyed by address or id with two numbers
//! per entry (the ledger of live blocks, the program's id -> pointer map). Cloned as they are,
//! they cost 25 bytes per slot with the table's slack; a checkpoint stores them instead sorted
//! by key, as varints: the gap to the previous key, the first value as a signed difference
//! from the previous entry's, the second as it is (a few bytes an entry), and a restore writes
//! them back, in key order, as a [`LayeredMap`]'s base. Sets of addresses (dlmalloc's freed
//! blocks) are stored the same way, as the gaps between their sorted keys.

use crate::layered_map::{LayeredMap, merge_into};
use crate::layout::LiveEntry;
use crate::memory::{push_varint, read_varint};
use crate::replay::IdEntry;

/// A table value made of two numbers (or of none, for a set).
pub(crate) trait Pair: Copy {
    /// Whether the values carry no numbers: a set's keys are stored alone.
    const NONE: bool = false;
    /// The two numbers; the first is stored as a difference from the previous entry's (a
    /// pointer, which runs near its neighbours'), the second as it is (a size).
    fn to_pair(self) -> (u64, u64);
    /// The value back from its two numbers.
    fn from_pair(first: u64, second: u64) -> Self;
}

impl Pair for () {
    const NONE: bool = true;

    fn to_pair(self) -> (u64, u64) {
        (0, 0)
    }

    fn from_pair(_: u64, _: u64) -> Self {}
}

impl Pair for LiveEntry {
    fn to_pair(self) -> (u64, u64) {
        (self.requested, self.held)
    }

    fn from_pair(requested: u64, held: u64) -> Self {
        LiveEntry { requested, held }
    }
}

impl Pair for IdEntry {
    /// The size shares its number with whether the block is held: no heap holds a block of
    /// 2^63 bytes.
    fn to_pair(self) -> (u64, u64) {
        (self.block.ptr, self.block.size << 1 | u64::from(self.held))
    }

    fn from_pair(ptr: u64, size_and_held: u64) -> Self {
        IdEntry {
            block: crate::replay::Held {
                ptr,
                size: size_and_held >> 1,
            },
            held: size_and_held & 1 != 0,
        }
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

impl PackedTable {
    /// The entries of `table`, packed.
    pub(crate) fn pack<V: Pair>(table: &LayeredMap<V>) -> Self {
        Self::pack_sorted(&table.sorted())
    }

    /// `entries` (sorted by key), packed.
    pub(crate) fn pack_sorted<V: Pair>(entries: &[(u64, V)]) -> Self {
        let per_entry = if V::NONE { 3 } else { 6 };
        let mut bytes = Vec::with_capacity(entries.len() * per_entry);
        let (mut last_key, mut last_first) = (0u64, 0u64);
        for &(key, value) in entries {
            push_varint(&mut bytes, key.wrapping_sub(last_key));
            last_key = key;
            if !V::NONE {
                let (first, second) = value.to_pair();
                push_varint(&mut bytes, zigzag(first.wrapping_sub(last_first)));
                push_varint(&mut bytes, second);
                last_first = first;
            }
        }
        bytes.shrink_to_fit();
        Self {
            entries: entries.len(),
            bytes,
        }
    }

    /// The entries, in key order.
    pub(crate) fn entries<V: Pair>(&self) -> Entries<'_, V> {
        Entries {
            bytes: &self.bytes,
            at: 0,
            key: 0,
            first: 0,
            value: std::marker::PhantomData,
        }
    }

    /// Makes `table` the table this was packed from, reusing its buffers.
    pub(crate) fn unpack_into<V: Pair>(&self, table: &mut LayeredMap<V>) {
        table.set_base(self.entries, |entries| entries.extend(self.entries::<V>()));
    }

    /// Makes `table` this table with `delta` applied, in one pass.
    pub(crate) fn unpack_with_into<V: Pair>(&self, delta: &TableDelta, table: &mut LayeredMap<V>) {
        table.set_base(self.entries + delta.present.entries, |entries| {
            merge_into(self.entries::<V>(), delta.changes::<V>(), entries);
        });
    }

    /// This table with `delta` applied, packed.
    pub(crate) fn with<V: Pair>(&self, delta: &TableDelta) -> Self {
        let mut entries = Vec::with_capacity(self.entries + delta.present.entries);
        merge_into(self.entries::<V>(), delta.changes::<V>(), &mut entries);
        Self::pack_sorted(&entries)
    }

    /// Host bytes this packed table occupies.
    pub(crate) fn packed_bytes(&self) -> usize {
        self.bytes.capacity() + size_of::<Self>()
    }
}

/// A packed table's entries, decoded one at a time.
pub(crate) struct Entries<'a, V> {
    bytes: &'a [u8],
    at: usize,
    key: u64,
    first: u64,
    value: std::marker::PhantomData<V>,
}

impl<V: Pair> Iterator for Entries<'_, V> {
    type Item = (u64, V);

    #[inline]
    fn next(&mut self) -> Option<(u64, V)> {
        self.key = self
            .key
            .wrapping_add(read_varint(self.bytes, &mut self.at)?);
        if V::NONE {
            return Some((self.key, V::from_pair(0, 0)));
        }
        let delta = unzigzag(read_varint(self.bytes, &mut self.at)?);
        self.first = self.first.wrapping_add(delta);
        let second = read_varint(self.bytes, &mut self.at)?;
        Some((self.key, V::from_pair(self.first, second)))
    }
}

/// What changed in a table since an earlier state of it: the entries added or replaced, with
/// their values now, and the keys removed (which need not have been there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TableDelta {
    present: PackedTable,
    removed: PackedTable,
}

impl TableDelta {
    /// The changes `table` has tracked (see [`LayeredMap::track_changes`]), packed.
    pub(crate) fn pack<V: Pair>(table: &mut LayeredMap<V>) -> Option<Self> {
        let changes = table.tracked_changes()?;
        let present: Vec<(u64, V)> = changes
            .iter()
            .filter_map(|&(key, value)| value.map(|v| (key, v)))
            .collect();
        let removed: Vec<(u64, ())> = changes
            .iter()
            .filter(|(_, value)| value.is_none())
            .map(|&(key, _)| (key, ()))
            .collect();
        Some(Self {
            present: PackedTable::pack_sorted(&present),
            removed: PackedTable::pack_sorted(&removed),
        })
    }

    /// The changes in key order: the new value, or `None` for a key removed.
    fn changes<'a, V: Pair + 'a>(&'a self) -> impl Iterator<Item = (u64, Option<V>)> + 'a {
        let mut present = self.present.entries::<V>().peekable();
        let mut removed = self.removed.entries::<()>().peekable();
        std::iter::from_fn(move || match (present.peek(), removed.peek()) {
            (Some(&(kept, _)), Some(&(gone, ()))) if gone < kept => {
                removed.next().map(|(key, ())| (key, None))
            }
            (Some(_), _) => present.next().map(|(key, value)| (key, Some(value))),
            (None, _) => removed.next().map(|(key, ())| (key, None)),
        })
    }

    /// Host bytes this delta occupies.
    pub(crate) fn packed_bytes(&self) -> usize {
        self.present.packed_bytes() + self.removed.packed_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Held;
    use proptest::prelude::*;

    fn map<V: Copy>(entries: impl IntoIterator<Item = (u64, V)>) -> LayeredMap<V> {
        let mut map = LayeredMap::default();
        for (key, value) in entries {
            map.insert(key, value);
        }
        map
    }

    fn unpacked<V: Pair>(packed: &PackedTable) -> Vec<(u64, V)> {
        let mut table = map([(7, V::from_pair(1, 2))]);
        packed.unpack_into(&mut table);
        table.sorted()
    }

    proptest! {
        #[test]
        fn tables_come_back_whole(
            entries in proptest::collection::vec(
                (any::<u64>(), any::<u64>(), 0..u64::MAX >> 1, any::<bool>()),
                0..200,
            )
        ) {
            let table = map(entries.iter().map(|&(k, ptr, size, held)| {
                (k, IdEntry { block: Held { ptr, size }, held })
            }));
            prop_assert_eq!(unpacked::<IdEntry>(&PackedTable::pack(&table)), table.sorted());
        }
    }

    proptest! {
        #[test]
        fn sets_come_back_whole(keys in proptest::collection::hash_set(any::<u64>(), 0..200)) {
            let set = map(keys.iter().map(|&k| (k, ())));
            let mut wanted: Vec<(u64, ())> = keys.into_iter().map(|k| (k, ())).collect();
            wanted.sort_unstable();
            prop_assert_eq!(unpacked::<()>(&PackedTable::pack(&set)), wanted);
        }
    }

    proptest! {
        /// A table packed whole, then changed while tracking: the whole table with the delta
        /// merged in (restored, or packed whole again) is the table as it ends.
        #[test]
        fn a_delta_leads_from_the_whole_table_to_the_changed_one(
            before in proptest::collection::vec((0..300u64, 0..1000u64), 0..200),
            changes in proptest::collection::vec((0..300u64, proptest::option::of(0..1000u64)), 0..200),
            rebase in any::<bool>(),
        ) {
            let entry = |v: u64| LiveEntry { requested: v, held: v * 2 };
            let mut table = map(before.iter().map(|&(k, v)| (k, entry(v))));
            if rebase {
                // Changes over a restored base take the other path through the map.
                let packed = PackedTable::pack(&table);
                packed.unpack_into(&mut table);
            }
            let whole = PackedTable::pack(&table);
            table.track_changes();
            for (i, &(key, value)) in changes.iter().enumerate() {
                match value {
                    Some(v) => table.insert(key, entry(v)),
                    None => table.remove(key),
                };
                // Changes read part way (a checkpoint between): later reads add to them.
                if i == changes.len() / 2 {
                    TableDelta::pack(&mut table);
                }
            }
            let delta = TableDelta::pack(&mut table).expect("tracking");
            let mut restored = map([(1000, entry(1))]);
            whole.unpack_with_into(&delta, &mut restored);
            prop_assert_eq!(restored.sorted(), table.sorted());
            prop_assert_eq!(unpacked::<LiveEntry>(&whole.with::<LiveEntry>(&delta)), table.sorted());
        }
    }

    #[test]
    fn a_table_not_tracking_has_no_delta() {
        let mut table = map([(1, ())]);
        assert!(TableDelta::pack(&mut table).is_none());
    }

    #[test]
    fn nearby_keys_and_pointers_take_a_few_bytes_an_entry() {
        let table = map((0..10_000u64).map(|i| {
            let at = 0x1_0000_0000 + i * 48;
            (
                at,
                LiveEntry {
                    requested: 40,
                    held: 48,
                },
            )
        }));
        let packed = PackedTable::pack(&table);
        assert!(
            packed.packed_bytes() < 10_000 * 4,
            "{}",
            packed.packed_bytes()
        );
        assert_eq!(unpacked::<LiveEntry>(&packed), table.sorted());
    }
}

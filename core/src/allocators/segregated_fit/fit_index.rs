//! A shortcut through unstack's bins that gives the answers its walks give.
//!
//! unstack finds a chunk by walking a bin from its head to the first chunk that is big enough,
//! and unlinks one by walking its bin from the head until it meets it. Both cost the length of
//! the bin, and bins grow long: at 100,000 live blocks a bin holds thousands of chunks too
//! small for the requests that start there, and replay spent nine tenths of its time walking.
//!
//! [`FitIndex`] keeps each bin's chunks in link order with their sizes, in a max tree, so that
//! "the first chunk in link order of at least `need` bytes" and "is this chunk on that bin" are
//! answered in O(log n) and O(1). It describes the lists the model linked, not the bytes, so it
//! may only stand in for a walk while the two cannot differ: the model keeps it only while no
//! byte of the heap was written by anyone else (see `SegregatedFit::trusted`), builds it by
//! walking the bins with every check a walk could fail, and updates it wherever it links or
//! unlinks a chunk. It is derived state: a copy of the model starts without one.

use rustc_hash::FxHashMap;

use super::N_BINS;
use crate::Addr;

/// One bin's chunks in link order: slots are handed out in push order, so the head is the
/// highest occupied slot and link order is descending slot order.
#[derive(Debug, Clone, Default)]
struct BinOrder {
    /// The chunk in each slot (stale once the slot is vacant).
    chunks: Vec<Addr>,
    /// Max tree over the slots' sizes: node 1 is the root and slot `i` the leaf
    /// `tree.len() / 2 + i`; a vacant slot is 0 (no chunk is that small).
    tree: Vec<u64>,
    /// Occupied slots.
    members: usize,
}

impl BinOrder {
    fn leaves(&self) -> usize {
        self.tree.len() / 2
    }

    fn set(&mut self, slot: usize, size: u64) {
        let mut node = self.leaves() + slot;
        self.tree[node] = size;
        while node > 1 {
            node /= 2;
            self.tree[node] = self.tree[2 * node].max(self.tree[2 * node + 1]);
        }
    }

    fn size_at(&self, slot: usize) -> u64 {
        self.tree[self.leaves() + slot]
    }

    /// The highest slot of at least `need` bytes: the first such chunk in link order.
    fn last_at_least(&self, need: u64) -> Option<usize> {
        if self.tree.get(1).is_none_or(|&max| max < need) {
            return None;
        }
        let mut node = 1;
        while node < self.leaves() {
            node = if self.tree[2 * node + 1] >= need {
                2 * node + 1
            } else {
                2 * node
            };
        }
        Some(node - self.leaves())
    }
}

/// Where every chunk on a bin stands in it (see the module docs).
#[derive(Debug, Clone, Default)]
pub(super) struct FitIndex {
    bins: [BinOrder; N_BINS],
    /// Bin and slot of every chunk on a bin.
    slots: FxHashMap<Addr, (u8, u32)>,
}

impl FitIndex {
    /// Records `chunk` of `size` bytes pushed on the head of `bin`. `size` must be non-zero.
    /// Returns false if the chunk is already on a bin (the lists are not what the index
    /// describes).
    pub(super) fn push(&mut self, bin: usize, chunk: Addr, size: u64) -> bool {
        if self.slots.contains_key(&chunk) {
            return false;
        }
        let order = &mut self.bins[bin];
        if order.chunks.len() == order.leaves() {
            self.compact(bin);
        }
        let order = &mut self.bins[bin];
        let slot = order.chunks.len();
        order.chunks.push(chunk);
        order.set(slot, size);
        order.members += 1;
        // Slots fit in u32: a bin is compacted to twice its members, and members are chunks of
        // at least 48 bytes in a heap of at most 2^63.
        self.slots.insert(chunk, (bin as u8, slot as u32));
        true
    }

    /// Forgets `chunk`, unlinked from its bin; returns the bin it was on.
    pub(super) fn remove(&mut self, chunk: Addr) -> Option<usize> {
        let (bin, slot) = self.slots.remove(&chunk)?;
        let order = &mut self.bins[bin as usize];
        order.set(slot as usize, 0);
        order.members -= 1;
        Some(bin as usize)
    }

    /// The bin `chunk` is on, if any.
    pub(super) fn bin_of(&self, chunk: Addr) -> Option<usize> {
        self.slots.get(&chunk).map(|&(bin, _)| bin as usize)
    }

    /// The first chunk in `bin`'s link order of at least `need` bytes, with its size.
    pub(super) fn first_fit(&self, bin: usize, need: u64) -> Option<(Addr, u64)> {
        let order = &self.bins[bin];
        let slot = order.last_at_least(need.max(1))?;
        Some((order.chunks[slot], order.size_at(slot)))
    }

    /// `bin`'s chunks and sizes in link order, head first.
    #[cfg(test)]
    pub(super) fn order(&self, bin: usize) -> Vec<(Addr, u64)> {
        let order = &self.bins[bin];
        (0..order.chunks.len())
            .rev()
            .filter(|&slot| order.size_at(slot) != 0)
            .map(|slot| (order.chunks[slot], order.size_at(slot)))
            .collect()
    }

    /// Chunks on all bins.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Host bytes it occupies.
    pub(super) fn host_bytes(&self) -> usize {
        let bins: usize = self
            .bins
            .iter()
            .map(|b| b.chunks.capacity() * size_of::<Addr>() + b.tree.capacity() * 8)
            .sum();
        bins + self.slots.capacity() * (size_of::<(Addr, (u8, u32))>() + 1)
    }

    /// Renumbers `bin`'s members from slot 0, in the same order, with room for as many again.
    fn compact(&mut self, bin: usize) {
        let order = &mut self.bins[bin];
        let kept: Vec<(Addr, u64)> = (0..order.chunks.len())
            .filter(|&slot| order.size_at(slot) != 0)
            .map(|slot| (order.chunks[slot], order.size_at(slot)))
            .collect();
        let leaves = (2 * kept.len()).max(16).next_power_of_two();
        order.chunks.clear();
        order.tree.clear();
        order.tree.resize(2 * leaves, 0);
        for (slot, &(chunk, size)) in kept.iter().enumerate() {
            order.chunks.push(chunk);
            order.tree[leaves + slot] = size;
            self.slots.insert(chunk, (bin as u8, slot as u32));
        }
        for node in (1..leaves).rev() {
            order.tree[node] = order.tree[2 * node].max(order.tree[2 * node + 1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bin as a plain list, head first, for comparison.
    fn first_fit_by_walking(list: &[(Addr, u64)], need: u64) -> Option<(Addr, u64)> {
        list.iter().copied().find(|&(_, size)| size >= need)
    }

    #[test]
    fn first_fit_and_membership_follow_pushes_and_removals() {
        let mut index = FitIndex::default();
        // Head first, as a walk would see it.
        let mut list: Vec<(Addr, u64)> = Vec::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..5_000u64 {
            if list.is_empty() || next() % 3 != 0 {
                let chunk = 0x1000 + round * 64;
                let size = 48 + (next() % 64) * 8;
                assert!(index.push(3, chunk, size));
                list.insert(0, (chunk, size));
            } else {
                let at = (next() % list.len() as u64) as usize;
                let (chunk, _) = list.remove(at);
                assert_eq!(index.remove(chunk), Some(3));
                assert_eq!(index.bin_of(chunk), None);
            }
            let need = 48 + (next() % 70) * 8;
            assert_eq!(index.first_fit(3, need), first_fit_by_walking(&list, need));
            assert_eq!(index.order(3), list);
        }
        assert!(list.iter().all(|&(c, _)| index.bin_of(c) == Some(3)));
        assert_eq!(index.first_fit(4, 48), None);
    }

    #[test]
    fn a_chunk_cannot_be_on_two_bins() {
        let mut index = FitIndex::default();
        assert!(index.push(1, 0x100, 64));
        assert!(!index.push(2, 0x100, 64));
        assert_eq!(index.bin_of(0x100), Some(1));
    }
}

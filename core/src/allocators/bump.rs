//! `bump`: SmallWorld's `BumpAllocator`.
//!
//! Blocks are packed back to back from the heap's start, with no header; `free` is recorded and
//! ignored, so freed bytes are never reused. When the next block does not fit, the allocation
//! fails with SmallWorld's "Memory is full". SmallWorld does not align; an explicit alignment
//! request (above 1) is honoured by skipping padding bytes, which the layout shows as padding.
//!
//! The arena logic here is shared with [`checked_bump`](super::checked_bump), which adds guard
//! bytes and reads a shadow state per byte off the block list.

use std::sync::Arc;

use crate::allocator::{AllocError, Allocator, ErrorKind, Trail, bytes};
use crate::layout::{Block, BlockState, Finding, HeapLayout, Ledger, Marker, NativeStat, Stats};
use crate::memory::Memory;
use crate::{Addr, AllocatorKind, ConfigError, HeapConfig, say};

/// Default first address of the bump heaps (a typical emulator heap address).
pub const DEFAULT_BASE: Addr = 0x1000_0000;
/// Default capacity of the bump heaps.
pub const DEFAULT_SIZE: u64 = 64 << 20;
/// Granularity in which the model materialises bytes behind the bumper.
const MATERIALISE_STEP: u64 = 4096;

/// One block a bump arena handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArenaBlock {
    /// First byte of the padding skipped before the block (== `start` when none).
    pub pad_start: Addr,
    /// First payload byte, the pointer returned.
    pub start: Addr,
    /// Payload bytes.
    pub size: u64,
    /// Guard bytes after the payload.
    pub guard: u64,
    /// Whether the program freed it.
    pub freed: bool,
}

impl ArenaBlock {
    /// One past the guard bytes: where the next block's padding starts.
    pub fn end(&self) -> Addr {
        self.start + self.size + self.guard
    }
}

/// Blocks per chunk of a [`BlockList`]: 32 KiB of placements, so a clone of a list of a
/// million blocks copies a thousand chunk pointers and the last chunk, not 32 MB.
const CHUNK_BLOCKS: usize = 1024;
/// Host bytes of one full chunk: its placements and the `Arc`'s two counts.
const CHUNK_HEAP_BYTES: usize = CHUNK_BLOCKS * size_of::<Placement>() + 2 * size_of::<usize>();

/// Where a block lies: the part of an [`ArenaBlock`] that never changes once it is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placement {
    pad_start: Addr,
    start: Addr,
    size: u64,
    guard: u64,
}

impl Placement {
    fn with_freed(self, freed: bool) -> ArenaBlock {
        ArenaBlock {
            pad_start: self.pad_start,
            start: self.start,
            size: self.size,
            guard: self.guard,
            freed,
        }
    }
}

/// The blocks of a bump arena in the order they were placed, cheap to clone.
///
/// A bump arena only ever appends, and a timeline keeps many copies of it (its checkpoints).
/// So placements live in chunks of [`CHUNK_BLOCKS`]: every full chunk is immutable behind an
/// [`Arc`] that all copies share, and only the last, growing chunk belongs to one list. The one
/// thing that changes after a push, whether the program freed the block, is kept apart in a
/// bit set, so freeing a block never copies a chunk. A clone copies the chunk pointers, the
/// last chunk and the bit set; pushes and frees on either side never show on the other.
#[derive(Debug, Clone, Default)]
pub(crate) struct BlockList {
    /// Full chunks of exactly [`CHUNK_BLOCKS`] placements, shared by every copy.
    chunks: Vec<Arc<[Placement]>>,
    /// The last chunk, shorter than [`CHUNK_BLOCKS`]; a clone copies it (at most 32 KiB).
    tail: Vec<Placement>,
    /// Bit `i % 64` of word `i / 64`: the program freed block `i`.
    freed: Vec<u64>,
}

impl BlockList {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.chunks.len() * CHUNK_BLOCKS + self.tail.len()
    }

    /// Appends a block (its `freed` flag included).
    pub fn push(&mut self, block: ArenaBlock) {
        let i = self.len();
        if i.is_multiple_of(64) {
            self.freed.push(0);
        }
        // Grow the tail by doubling up to exactly one chunk, never past it.
        if self.tail.len() == self.tail.capacity() {
            let want = (self.tail.capacity() * 2).clamp(4, CHUNK_BLOCKS);
            self.tail.reserve_exact(want - self.tail.len());
        }
        self.tail.push(Placement {
            pad_start: block.pad_start,
            start: block.start,
            size: block.size,
            guard: block.guard,
        });
        self.set_freed(i, block.freed);
        if self.tail.len() == CHUNK_BLOCKS {
            // Sealed: from now on shared, never written. The tail keeps its buffer.
            self.chunks.push(Arc::from(self.tail.as_slice()));
            self.tail.clear();
        }
    }

    fn placement(&self, i: usize) -> Option<&Placement> {
        let (chunk, offset) = (i / CHUNK_BLOCKS, i % CHUNK_BLOCKS);
        match self.chunks.get(chunk) {
            Some(placements) => placements.get(offset),
            None if chunk == self.chunks.len() => self.tail.get(offset),
            None => None,
        }
    }

    fn is_freed(&self, i: usize) -> bool {
        self.freed
            .get(i / 64)
            .is_some_and(|word| word & (1 << (i % 64)) != 0)
    }

    /// Block `i` (0 = the first placed), `None` past the end.
    pub fn get(&self, i: usize) -> Option<ArenaBlock> {
        self.placement(i).map(|p| p.with_freed(self.is_freed(i)))
    }

    /// Marks block `i` freed or live again; does nothing past the end.
    pub fn set_freed(&mut self, i: usize, freed: bool) {
        if i >= self.len() {
            return;
        }
        if let Some(word) = self.freed.get_mut(i / 64) {
            let bit = 1 << (i % 64);
            if freed {
                *word |= bit;
            } else {
                *word &= !bit;
            }
        }
    }

    /// The blocks in the order they were placed.
    pub fn iter(&self) -> impl Iterator<Item = ArenaBlock> + '_ {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .chain(&self.tail)
            .enumerate()
            .map(|(i, p)| p.with_freed(self.is_freed(i)))
    }

    /// Index of the first block for which `pred` is false, given that it holds for a prefix of
    /// the blocks and fails for the rest (as [`slice::partition_point`]).
    pub fn partition_point(&self, mut pred: impl FnMut(&ArenaBlock) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.get(mid).is_some_and(|b| pred(&b)) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }

    /// Host bytes this list holds that no other copy shares: the chunk pointers, the last
    /// chunk and the freed bits. A clone allocates exactly these.
    pub fn unshared_bytes(&self) -> usize {
        self.chunks.capacity() * size_of::<Arc<[Placement]>>()
            + self.tail.capacity() * size_of::<Placement>()
            + self.freed.capacity() * size_of::<u64>()
    }

    /// Host bytes of the full chunks that this list holds first: those no copy holds but
    /// this one and, at most, the one it was cloned from.
    ///
    /// A timeline takes a checkpoint by cloning the live state, so a chunk sealed since the
    /// last checkpoint is held by the live state and the new checkpoint only, and is counted
    /// for that checkpoint; every later checkpoint shares it and does not count it again.
    pub fn first_held_bytes(&self) -> usize {
        let first_held = self
            .chunks
            .iter()
            .filter(|chunk| Arc::strong_count(chunk) <= 2)
            .count();
        first_held * CHUNK_HEAP_BYTES
    }
}

/// A bump region: the state both bump variants share.
#[derive(Debug, Clone)]
pub(crate) struct Arena {
    pub memory: Memory,
    pub base: Addr,
    pub capacity: u64,
    pub bumper: Addr,
    /// Blocks in address order (a bump allocator only ever appends).
    pub blocks: BlockList,
    pub ledger: Ledger,
}

impl Arena {
    /// Host bytes outside the memory that this copy of the arena newly costs: the ledger, the
    /// block list's chunk pointers, last chunk and freed bits (a clone allocates these), and
    /// the list's full chunks that no earlier copy holds.
    ///
    /// Full chunks are shared by every copy, so a timeline's checkpoints hold one copy of
    /// them between them (the newest checkpoint's; every older one's are a prefix of it).
    /// Each is counted once, for the first checkpoint that holds it
    /// ([`BlockList::first_held_bytes`]), not again for every checkpoint after it. (When a
    /// timeline drops that checkpoint, the later ones that still hold the chunk were counted
    /// without it: this undercounts by up to the chunks' bytes, about 32 B per block.)
    pub fn side_bytes(&self) -> usize {
        self.blocks.unshared_bytes() + self.blocks.first_held_bytes() + self.ledger.heap_bytes()
    }

    pub fn new(kind: AllocatorKind, config: &HeapConfig) -> Result<Self, ConfigError> {
        let base = config.base.unwrap_or(DEFAULT_BASE);
        let capacity = config.size.or(config.max).unwrap_or(DEFAULT_SIZE);
        if base.checked_add(capacity).is_none() {
            return Err(ConfigError::invalid(
                kind,
                format!("heap at {base:#x} of {capacity} B runs past the end of the address space"),
            ));
        }
        if capacity > 1 << 40 {
            return Err(ConfigError::invalid(kind, "heap size above 1 TiB"));
        }
        Ok(Self {
            memory: Memory::new(base, 0),
            base,
            capacity,
            bumper: base,
            blocks: BlockList::default(),
            ledger: Ledger::default(),
        })
    }

    pub fn used(&self) -> u64 {
        self.bumper - self.base
    }

    pub fn end(&self) -> Addr {
        self.base + self.capacity
    }

    /// Places a block of `size` payload bytes followed by `guard` bytes at the bumper.
    pub fn bump(
        &mut self,
        size: u64,
        align: u64,
        guard: u64,
        trail: &mut Trail,
    ) -> Result<ArenaBlock, AllocError> {
        let full = || AllocError::new(ErrorKind::OutOfMemory, "Memory is full");
        let start = if align > 1 {
            if !align.is_power_of_two() {
                return Err(AllocError::new(
                    ErrorKind::Unsupported,
                    format!("alignment {align} is not a power of two"),
                ));
            }
            self.bumper
                .checked_next_multiple_of(align)
                .ok_or_else(full)?
        } else {
            self.bumper
        };
        let end = start
            .checked_add(size)
            .and_then(|e| e.checked_add(guard))
            .ok_or_else(full)?;
        if end > self.end() {
            say!(
                trail,
                "need {} at {start:#x}, but only {} remain before {:#x}: Memory is full",
                bytes(end - self.bumper),
                bytes(self.end() - self.bumper),
                self.end()
            );
            return Err(full());
        }
        if start > self.bumper {
            say!(
                trail,
                "skip {} of padding to align to {align}",
                bytes(start - self.bumper)
            );
        }
        let block = ArenaBlock {
            pad_start: self.bumper,
            start,
            size,
            guard,
            freed: false,
        };
        if guard > 0 {
            say!(
                trail,
                "bump {} + {} guard: {:#x} -> {end:#x}",
                bytes(size),
                bytes(guard),
                self.bumper
            );
        } else {
            say!(
                trail,
                "bump {}: {:#x} -> {end:#x}",
                bytes(size),
                self.bumper
            );
        }
        self.bumper = end;
        let materialise = end
            .next_multiple_of(MATERIALISE_STEP)
            .min(self.end())
            .saturating_sub(self.base);
        self.memory.grow_to(materialise);
        self.blocks.push(block);
        self.ledger.on_alloc(start, size, end - block.pad_start);
        self.ledger.set_footprint(self.used());
        Ok(block)
    }

    /// Index of the block whose payload starts exactly at `ptr`.
    pub fn find_start(&self, ptr: Addr) -> Option<usize> {
        // Zero-size blocks can share a start with the next block: take the last such block.
        let i = self.blocks.partition_point(|b| b.start <= ptr);
        i.checked_sub(1)
            .filter(|&i| self.blocks.get(i).is_some_and(|b| b.start == ptr))
    }

    /// The block whose payload starts exactly at `ptr`, with its index.
    pub fn block_starting_at(&self, ptr: Addr) -> Option<(usize, ArenaBlock)> {
        let i = self.find_start(ptr)?;
        Some((i, self.blocks.get(i)?))
    }

    /// Index of the block whose padding, payload or guard contains `addr`.
    pub fn find_containing(&self, addr: Addr) -> Option<usize> {
        let i = self.blocks.partition_point(|b| b.pad_start <= addr);
        i.checked_sub(1)
            .filter(|&i| self.blocks.get(i).is_some_and(|b| addr < b.end()))
    }

    /// Blocks, padding, guards and the unused tail as layout data.
    pub fn layout_blocks(&self, requested_known: bool) -> Vec<Block> {
        let mut out = Vec::with_capacity(self.blocks.len() * 2 + 1);
        for b in self.blocks.iter() {
            if b.start > b.pad_start {
                out.push(Block::plain(b.pad_start..b.start, BlockState::Padding));
            }
            if b.size > 0 {
                let state = if b.freed {
                    BlockState::Freed
                } else {
                    BlockState::Live
                };
                let mut block = Block::plain(b.start..b.start + b.size, state);
                if requested_known {
                    block.requested = Some(b.size);
                }
                out.push(block);
            }
            if b.guard > 0 {
                let at = b.start + b.size;
                out.push(Block::plain(at..at + b.guard, BlockState::Guard));
            }
        }
        if self.bumper < self.end() {
            out.push(Block::plain(self.bumper..self.end(), BlockState::Unused));
        }
        out
    }

    /// Invariants of any bump arena, checked against the block records.
    pub fn validate(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut at = self.base;
        for b in self.blocks.iter() {
            if b.pad_start != at {
                findings.push(Finding::at(
                    b.start,
                    format!(
                        "block at {:#x} does not follow the previous one (expected {at:#x})",
                        b.start
                    ),
                ));
            }
            if b.start < b.pad_start {
                findings.push(Finding::at(b.start, "block starts before its padding"));
            }
            at = b.end();
        }
        if at != self.bumper {
            findings.push(Finding::general(format!(
                "bumper is {:#x} but the last block ends at {at:#x}",
                self.bumper
            )));
        }
        if self.bumper > self.end() {
            findings.push(Finding::general(format!(
                "bumper {:#x} is past the heap's end {:#x}",
                self.bumper,
                self.end()
            )));
        }
        let live = self.blocks.iter().filter(|b| !b.freed).count() as u64;
        if live != self.ledger.stats().live_blocks {
            findings.push(Finding::general(format!(
                "{live} blocks are live but the ledger counts {}",
                self.ledger.stats().live_blocks
            )));
        }
        findings
    }

    pub fn markers(&self) -> Vec<Marker> {
        vec![Marker {
            name: "bumper".to_owned(),
            addr: self.bumper,
        }]
    }

    /// Payload bytes of the live block starting at `ptr`.
    pub fn usable_size(&self, ptr: Addr) -> Option<u64> {
        let (_, b) = self.block_starting_at(ptr)?;
        (!b.freed).then_some(b.size)
    }

    /// The arena as layout data, with the variant's own statistics.
    pub fn layout(&self, kind: AllocatorKind, native_stats: Vec<NativeStat>) -> HeapLayout {
        HeapLayout {
            kind,
            extent: self.base..self.end(),
            blocks: self.layout_blocks(true),
            free_lists: Vec::new(),
            markers: self.markers(),
            poisoned: None,
            stats: self.ledger.stats(),
            native_stats,
        }
    }
}

/// SmallWorld's `BumpAllocator(address, size)`.
#[derive(Debug, Clone)]
pub struct Bump {
    arena: Arena,
    ignored_frees: u64,
}

impl Bump {
    /// A bump heap of `config.size` bytes (default 64 MiB) at `config.base`
    /// (default `0x1000_0000`).
    pub fn from_config(config: &HeapConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            arena: Arena::new(AllocatorKind::Bump, config)?,
            ignored_frees: 0,
        })
    }

    /// The next address handed out.
    pub fn bumper(&self) -> Addr {
        self.arena.bumper
    }
}

impl Allocator for Bump {
    fn kind(&self) -> AllocatorKind {
        AllocatorKind::Bump
    }

    fn allocate(&mut self, size: u64, align: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        self.arena.bump(size, align, 0, trail).map(|b| b.start)
    }

    fn free(&mut self, ptr: Addr, trail: &mut Trail) -> Result<(), AllocError> {
        self.ignored_frees += 1;
        match self.arena.block_starting_at(ptr).filter(|(_, b)| !b.freed) {
            Some((i, block)) => {
                self.arena.blocks.set_freed(i, true);
                self.arena.ledger.on_free(ptr);
                say!(
                    trail,
                    "free({ptr:#x}) recorded and ignored: a bump allocator never reuses memory, so its {} stay held",
                    bytes(block.size)
                );
            }
            _ => say!(
                trail,
                "free({ptr:#x}) ignored: a bump allocator does nothing on free (and {ptr:#x} is not a live block)"
            ),
        }
        Ok(())
    }

    /// SmallWorld has no realloc: allocate, copy, and record the old block as freed. The old
    /// block is retired before the new one is placed, because after a zero-size block the new
    /// one starts at the very same address.
    fn realloc(&mut self, ptr: Addr, size: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        let (index, old) = self
            .arena
            .block_starting_at(ptr)
            .filter(|(_, b)| !b.freed)
            .ok_or_else(|| {
                AllocError::new(
                    ErrorKind::InvalidFree,
                    format!("realloc of {ptr:#x}, which is not a live block"),
                )
            })?;
        say!(
            trail,
            "no realloc in a bump allocator: allocate {} and copy",
            bytes(size)
        );
        self.arena.blocks.set_freed(index, true);
        let held = self.arena.ledger.on_free(ptr);
        match self.arena.bump(size, 0, 0, trail) {
            Ok(new) => {
                let copied = old.size.min(size);
                self.arena
                    .memory
                    .copy_within(ptr, new.start, copied)
                    .map_err(|e| AllocError::new(ErrorKind::Corrupted, e.to_string()))?;
                say!(
                    trail,
                    "copy {} {ptr:#x} -> {:#x}; the old block stays held, as every freed one does",
                    bytes(copied),
                    new.start
                );
                Ok(new.start)
            }
            Err(e) => {
                // realloc failing leaves the old block live, as C's does.
                self.arena.blocks.set_freed(index, false);
                if let Some(entry) = held {
                    self.arena.ledger.on_alloc(ptr, entry.requested, entry.held);
                }
                Err(e)
            }
        }
    }

    fn usable_size(&self, ptr: Addr) -> Option<u64> {
        self.arena.usable_size(ptr)
    }

    fn inspect(&self) -> HeapLayout {
        self.arena.layout(
            AllocatorKind::Bump,
            vec![
                NativeStat::new("used", self.arena.used()),
                NativeStat::new("capacity", self.arena.capacity),
                NativeStat::new("ignored_frees", self.ignored_frees),
            ],
        )
    }

    fn validate(&self) -> Vec<Finding> {
        self.arena.validate()
    }

    fn stats(&self) -> Stats {
        self.arena.ledger.stats()
    }

    fn memory(&self) -> &Memory {
        &self.arena.memory
    }

    fn memory_mut(&mut self) -> &mut Memory {
        &mut self.arena.memory
    }

    fn clone_box(&self) -> Box<dyn Allocator> {
        Box::new(self.clone())
    }

    fn ledger_mut(&mut self) -> Option<&mut Ledger> {
        Some(&mut self.arena.ledger)
    }

    fn side_bytes(&self) -> usize {
        self.arena.side_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(size: u64) -> Bump {
        Bump::from_config(&HeapConfig {
            base: Some(0x1000),
            size: Some(size),
            ..HeapConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn packs_blocks_back_to_back_and_ignores_free() {
        let mut heap = small(64);
        let mut t = Trail::on();
        assert_eq!(heap.allocate(10, 0, &mut t), Ok(0x1000));
        assert_eq!(heap.allocate(3, 0, &mut t), Ok(0x100a));
        heap.free(0x1000, &mut t).unwrap();
        assert_eq!(
            heap.allocate(4, 0, &mut t),
            Ok(0x100d),
            "freed bytes are never reused"
        );
        assert!(t.lines().iter().any(|l| l.contains("recorded and ignored")));
        let s = heap.stats();
        assert_eq!((s.live_blocks, s.requested_live, s.footprint), (2, 7, 17));
        assert!(heap.validate().is_empty());
    }

    #[test]
    fn realloc_of_a_zero_size_block_retires_it_before_bumping_to_the_same_address() {
        let mut heap = small(64);
        let mut t = Trail::off();
        let empty = heap.allocate(0, 0, &mut t).unwrap();
        let grown = heap.realloc(empty, 4, &mut t).unwrap();
        assert_eq!(grown, empty, "nothing was bumped past the empty block");
        let layout = heap.inspect();
        assert_eq!(
            layout.block_at(grown).map(|b| b.state),
            Some(BlockState::Live)
        );
        let s = heap.stats();
        assert_eq!((s.live_blocks, s.requested_live), (1, 4));
        // A failed realloc leaves the old block live.
        assert!(heap.realloc(grown, 1000, &mut t).is_err());
        assert_eq!(heap.usable_size(grown), Some(4));
        assert_eq!(heap.stats().live_blocks, 1);
        assert!(heap.validate().is_empty());
    }

    #[test]
    fn fails_with_memory_is_full_exactly_at_capacity() {
        let mut heap = small(16);
        let mut t = Trail::off();
        assert_eq!(heap.allocate(16, 0, &mut t), Ok(0x1000));
        let err = heap.allocate(1, 0, &mut t).unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::OutOfMemory, "Memory is full")
        );
        assert_eq!(
            heap.bumper(),
            0x1010,
            "a failed allocation leaves the bumper alone"
        );
    }

    #[test]
    fn alignment_requests_skip_padding_shown_in_the_layout() {
        let mut heap = small(64);
        let mut t = Trail::off();
        heap.allocate(3, 0, &mut t).unwrap();
        assert_eq!(heap.allocate(8, 16, &mut t), Ok(0x1010));
        let layout = heap.inspect();
        let states: Vec<_> = layout
            .blocks
            .iter()
            .map(|b| (b.range.clone(), b.state))
            .collect();
        assert_eq!(
            states,
            vec![
                (0x1000..0x1003, BlockState::Live),
                (0x1003..0x1010, BlockState::Padding),
                (0x1010..0x1018, BlockState::Live),
                (0x1018..0x1040, BlockState::Unused),
            ]
        );
        assert!(layout.check_tiling().is_empty());
        assert_eq!(heap.stats().held, 3 + 13 + 8);
    }

    /// Back-to-back blocks of sizes 0..7 (zero-size ones share a start with the next), every
    /// third with padding before it.
    fn placed(n: usize) -> Vec<ArenaBlock> {
        let mut at: Addr = 0x1000;
        (0..n)
            .map(|i| {
                let start = if i % 3 == 0 {
                    (at + 1).next_multiple_of(8)
                } else {
                    at
                };
                let block = ArenaBlock {
                    pad_start: at,
                    start,
                    size: (i % 8) as u64,
                    guard: (i % 2) as u64,
                    freed: false,
                };
                at = block.end();
                block
            })
            .collect()
    }

    fn list_of(blocks: &[ArenaBlock]) -> BlockList {
        let mut list = BlockList::default();
        for &b in blocks {
            list.push(b);
        }
        list
    }

    fn assert_same(list: &BlockList, model: &[ArenaBlock]) {
        assert_eq!(list.len(), model.len());
        assert_eq!(list.iter().collect::<Vec<_>>(), model);
        for (i, b) in model.iter().enumerate() {
            assert_eq!(list.get(i), Some(*b), "block {i}");
        }
        assert_eq!(list.get(model.len()), None);
    }

    #[test]
    fn block_list_pushes_across_chunk_boundaries() {
        for n in [
            0,
            1,
            CHUNK_BLOCKS - 1,
            CHUNK_BLOCKS,
            CHUNK_BLOCKS + 1,
            3 * CHUNK_BLOCKS + 17,
        ] {
            let mut model = placed(n);
            for i in (0..n).step_by(7) {
                model[i].freed = true;
            }
            let list = list_of(&model);
            assert_same(&list, &model);
            assert_eq!(list.chunks.len(), n / CHUNK_BLOCKS, "{n} blocks");
            assert!(
                list.tail.capacity() <= CHUNK_BLOCKS,
                "the tail never outgrows a chunk"
            );
        }
    }

    #[test]
    fn block_list_clones_share_full_chunks_but_never_see_each_others_changes() {
        let blocks = placed(3 * CHUNK_BLOCKS + 40);
        let (head, rest) = blocks.split_at(2 * CHUNK_BLOCKS + 10);
        let mut original = list_of(head);
        let mut copy = original.clone();
        assert!(
            original
                .chunks
                .iter()
                .zip(&copy.chunks)
                .all(|(a, b)| Arc::ptr_eq(a, b)),
            "full chunks are shared, not copied"
        );
        let mut original_model = head.to_vec();
        let mut copy_model = head.to_vec();
        // Frees in a shared chunk and in the tail, different on each side.
        for (i, freed) in [
            (5, true),
            (CHUNK_BLOCKS + 3, true),
            (2 * CHUNK_BLOCKS + 2, true),
        ] {
            original.set_freed(i, freed);
            original_model[i].freed = freed;
        }
        for i in [6, 2 * CHUNK_BLOCKS + 9] {
            copy.set_freed(i, true);
            copy_model[i].freed = true;
        }
        // The original grows past the next chunk boundary; the copy grows differently.
        for &b in rest {
            original.push(b);
            original_model.push(b);
        }
        let mut other = rest[0];
        other.size += 100;
        copy.push(other);
        copy_model.push(other);
        // Clearing a flag again (realloc's failure path) stays on its side too.
        original.set_freed(5, false);
        original_model[5].freed = false;
        assert_same(&original, &original_model);
        assert_same(&copy, &copy_model);
        assert_eq!(
            copy.get(5).map(|b| b.freed),
            Some(false),
            "never freed on this side"
        );
    }

    #[test]
    fn block_list_partition_point_agrees_with_a_vec() {
        let model = placed(2 * CHUNK_BLOCKS + 300);
        let list = list_of(&model);
        let first = model[0].pad_start;
        let last = model[model.len() - 1].end();
        for addr in (first.saturating_sub(2)..last + 2).step_by(3) {
            assert_eq!(
                list.partition_point(|b| b.start <= addr),
                model.partition_point(|b| b.start <= addr),
                "start <= {addr:#x}"
            );
            assert_eq!(
                list.partition_point(|b| b.pad_start <= addr),
                model.partition_point(|b| b.pad_start <= addr),
                "pad_start <= {addr:#x}"
            );
        }
    }

    #[test]
    fn block_list_clone_costs_its_tail_and_bits_not_its_full_chunks() {
        let short = list_of(&placed(CHUNK_BLOCKS + 5)).clone();
        let long = list_of(&placed(40 * CHUNK_BLOCKS + 5)).clone();
        // 39 more full chunks add only their pointers and their blocks' freed bits.
        let per_chunk = size_of::<Arc<[Placement]>>() + CHUNK_BLOCKS / 8;
        assert_eq!(
            long.unshared_bytes() - short.unshared_bytes(),
            39 * per_chunk
        );
        assert!(long.unshared_bytes() < 2 * CHUNK_BLOCKS * size_of::<Placement>());
    }

    #[test]
    fn each_full_chunk_is_counted_for_the_first_copy_that_holds_it() {
        let blocks = placed(12 * CHUNK_BLOCKS);
        let mut live = list_of(&blocks[..10 * CHUNK_BLOCKS + 3]);
        let first = live.clone();
        assert_eq!(first.first_held_bytes(), 10 * CHUNK_HEAP_BYTES);
        for &b in &blocks[10 * CHUNK_BLOCKS + 3..] {
            live.push(b);
        }
        let second = live.clone();
        assert_eq!(
            second.first_held_bytes(),
            2 * CHUNK_HEAP_BYTES,
            "the ten chunks `first` holds are paid for already"
        );
        drop((first, second));
        // Once no copy holds them any more, the next copy pays for them all.
        assert_eq!(live.clone().first_held_bytes(), 12 * CHUNK_HEAP_BYTES);
    }

    #[test]
    fn a_cloned_heap_frees_and_allocates_without_touching_the_original() {
        let mut heap = small(1 << 20);
        let mut t = Trail::off();
        let ptrs: Vec<Addr> = (0..3000)
            .map(|i| heap.allocate(1 + i % 5, 0, &mut t).unwrap())
            .collect();
        let before = heap.inspect();
        let mut copy = heap.clone();
        copy.free(ptrs[10], &mut t).unwrap();
        copy.free(ptrs[2999], &mut t).unwrap();
        copy.allocate(7, 0, &mut t).unwrap();
        assert_eq!(heap.inspect(), before);
        assert!(copy.validate().is_empty());
        assert_eq!(copy.usable_size(ptrs[10]), None);
        assert_eq!(heap.usable_size(ptrs[10]), Some(1));
    }
}

//! `bump`: SmallWorld's `BumpAllocator`.
//!
//! Blocks are packed back to back from the heap's start, with no header; `free` is recorded and
//! ignored, so freed bytes are never reused. When the next block does not fit, the allocation
//! fails with SmallWorld's "Memory is full". SmallWorld does not align; an explicit alignment
//! request (above 1) is honoured by skipping padding bytes, which the layout shows as padding.
//!
//! The arena logic here is shared with [`checked_bump`](super::checked_bump), which adds guard
//! bytes and a shadow state per byte on top of it.

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

/// A bump region: the state both bump variants share.
#[derive(Debug, Clone)]
pub(crate) struct Arena {
    pub memory: Memory,
    pub base: Addr,
    pub capacity: u64,
    pub bumper: Addr,
    /// Blocks in address order (a bump allocator only ever appends).
    pub blocks: Vec<ArenaBlock>,
    pub ledger: Ledger,
}

impl Arena {
    /// Host bytes outside the memory: the block list and the ledger.
    pub fn side_bytes(&self) -> usize {
        self.blocks.capacity() * size_of::<ArenaBlock>() + self.ledger.heap_bytes()
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
            blocks: Vec::new(),
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
        i.checked_sub(1).filter(|&i| self.blocks[i].start == ptr)
    }

    /// Index of the block whose padding, payload or guard contains `addr`.
    pub fn find_containing(&self, addr: Addr) -> Option<usize> {
        let i = self.blocks.partition_point(|b| b.pad_start <= addr);
        i.checked_sub(1).filter(|&i| addr < self.blocks[i].end())
    }

    /// Blocks, padding, guards and the unused tail as layout data.
    pub fn layout_blocks(&self, requested_known: bool) -> Vec<Block> {
        let mut out = Vec::with_capacity(self.blocks.len() * 2 + 1);
        for b in &self.blocks {
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
        for b in &self.blocks {
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
        let b = &self.blocks[self.find_start(ptr)?];
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
        match self.arena.find_start(ptr) {
            Some(i) if !self.arena.blocks[i].freed => {
                self.arena.blocks[i].freed = true;
                self.arena.ledger.on_free(ptr);
                say!(
                    trail,
                    "free({ptr:#x}) recorded and ignored: a bump allocator never reuses memory, so its {} stay held",
                    bytes(self.arena.blocks[i].size)
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
        let index = self
            .arena
            .find_start(ptr)
            .filter(|&i| !self.arena.blocks[i].freed)
            .ok_or_else(|| {
                AllocError::new(
                    ErrorKind::InvalidFree,
                    format!("realloc of {ptr:#x}, which is not a live block"),
                )
            })?;
        let old = self.arena.blocks[index];
        say!(
            trail,
            "no realloc in a bump allocator: allocate {} and copy",
            bytes(size)
        );
        self.arena.blocks[index].freed = true;
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
                self.arena.blocks[index].freed = false;
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
}

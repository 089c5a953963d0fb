//! `checked-bump`: SmallWorld's `CheckedBumpAllocator(address, size, guard_bytes)`.
//!
//! A bump allocator that keeps one shadow state per heap byte (never allocated, live, freed),
//! leaves `guard_bytes` (default 16) unallocated after each block, and never reuses freed
//! memory, so every out-of-bounds access, use after free and bad free can be caught.
//!
//! SmallWorld stores the shadow as a byte per heap byte. Here it is read off the block list
//! instead: blocks are laid end to end (padding, payload, guard), so the state of any byte is
//! one binary search away, and nothing has to be painted, stored in checkpoints or rebuilt
//! when a timeline moves (painting was half the cost of a replay and of a seek).
//!
//! Messages are SmallWorld's: "Access uninitialized bytes at …", "Access freed memory at …",
//! "Invalid Free at …", "Invalid access at … of size N", "Memory is full". On top of them each
//! finding gets a [`ViolationClass`]. Where SmallWorld has quirks this model does not copy them:
//! its capacity check subtracts the heap address from an offset, so a heap at a non-zero address
//! is never "full"; its allocation table is keyed by offset but `free` looks it up by address;
//! and its bounds check compares `offset + size` against the access size instead of the heap's.
//! The shadow here also remembers which never-allocated bytes are guards or alignment padding, so
//! an overflow into a guard is classed as a heap-buffer-overflow while SmallWorld's message for
//! it ("Access uninitialized bytes") is kept.

use crate::access::{Access, BadRange, Violation, ViolationClass};
use crate::allocator::{AllocError, Allocator, ErrorKind, Trail, bytes};
use crate::allocators::bump::Arena;
use crate::layout::{Finding, HeapLayout, Ledger, NativeStat, Stats};
use crate::memory::Memory;
use crate::{Addr, AllocatorKind, ConfigError, HeapConfig, say};

/// SmallWorld's default number of guard bytes after each block.
pub const DEFAULT_GUARD_BYTES: u64 = 16;

/// Shadow state of one heap byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Shadow {
    /// Never handed out, beyond the bumper (SmallWorld's 0).
    Unallocated = 0,
    /// Part of a live block (SmallWorld's 1).
    Live = 1,
    /// Part of a freed block (SmallWorld's 2).
    Freed = 2,
    /// A guard byte after a block (0 in SmallWorld).
    Guard = 3,
    /// Alignment padding before a block (0 in SmallWorld).
    Padding = 4,
}

impl Shadow {
    fn class(self) -> Option<ViolationClass> {
        match self {
            Shadow::Live => None,
            Shadow::Freed => Some(ViolationClass::UseAfterFree),
            Shadow::Guard => Some(ViolationClass::HeapBufferOverflow),
            Shadow::Unallocated | Shadow::Padding => Some(ViolationClass::WildAccess),
        }
    }
}

/// SmallWorld's `CheckedBumpAllocator`.
#[derive(Debug, Clone)]
pub struct CheckedBump {
    arena: Arena,
    guard: u64,
}

impl CheckedBump {
    /// A checked heap at `config.base` of `config.size` bytes, with `config.guard_bytes`
    /// (default 16) after each block.
    pub fn from_config(config: &HeapConfig) -> Result<Self, ConfigError> {
        let guard = config.guard_bytes.unwrap_or(DEFAULT_GUARD_BYTES);
        if guard > 1 << 20 {
            return Err(ConfigError::invalid(
                AllocatorKind::CheckedBump,
                format!("{guard} guard bytes per block is more than 1 MiB"),
            ));
        }
        let arena = Arena::new(AllocatorKind::CheckedBump, config)?;
        Ok(Self { arena, guard })
    }

    /// Guard bytes left after each block.
    pub fn guard_bytes(&self) -> u64 {
        self.guard
    }

    /// The shadow of `[from, to)` as runs of one state, in address order: each block is its
    /// padding, its payload (live or freed) and its guard, and whatever no block covers was
    /// never allocated.
    fn shadow_runs(&self, from: Addr, to: Addr) -> Vec<(std::ops::Range<Addr>, Shadow)> {
        let mut runs = Vec::new();
        let mut at = from;
        let mut i = self.arena.blocks.partition_point(|b| b.end() <= from);
        while at < to {
            let Some(b) = self.arena.blocks.get(i) else {
                runs.push((at..to, Shadow::Unallocated));
                break;
            };
            let payload = if b.freed { Shadow::Freed } else { Shadow::Live };
            let parts = [
                (b.pad_start, Shadow::Unallocated),
                (b.start, Shadow::Padding),
                (b.start + b.size, payload),
                (b.end(), Shadow::Guard),
            ];
            for (part_end, state) in parts {
                let end = part_end.min(to);
                if at < end {
                    runs.push((at..end, state));
                    at = end;
                }
            }
            i += 1;
        }
        runs
    }

    /// The block an access or free concerns: the one whose padding, payload or guard holds
    /// `addr`, else the last block before it.
    fn nearest_block(&self, addr: Addr) -> Option<std::ops::Range<Addr>> {
        let i = match self.arena.find_containing(addr) {
            Some(i) => i,
            None => self
                .arena
                .blocks
                .partition_point(|b| b.start <= addr)
                .checked_sub(1)?,
        };
        let b = self.arena.blocks.get(i)?;
        Some(b.start..b.start + b.size)
    }

    /// Checks an access of `len` bytes at `addr`, classifying every bad byte run.
    pub fn check(&self, addr: Addr, len: u64, access: Access) -> Option<Violation> {
        let heap_end = self.arena.end();
        let end = addr.saturating_add(len);
        if addr < self.arena.base || end > heap_end {
            let inside = addr.max(self.arena.base)..end.min(heap_end);
            let mut bad = Vec::new();
            if addr < self.arena.base {
                bad.push(BadRange {
                    range: addr..end.min(self.arena.base),
                    class: ViolationClass::OutOfHeap,
                });
            }
            if inside.start < inside.end {
                bad.extend(self.bad_runs(inside.start, inside.end));
            }
            if end > heap_end {
                bad.push(BadRange {
                    range: addr.max(heap_end)..end,
                    class: ViolationClass::OutOfHeap,
                });
            }
            return Some(Violation {
                class: ViolationClass::OutOfHeap,
                access: Some(access),
                addr,
                len,
                block: self.nearest_block(addr.clamp(self.arena.base, heap_end.saturating_sub(1))),
                bad,
                message: format!("Invalid access at {addr:#x} of size {len}"),
            });
        }
        // The common case, inside one live payload, answered from that block alone.
        if let Some(i) = self.arena.find_containing(addr)
            && let Some(b) = self.arena.blocks.get(i)
            && !b.freed
            && b.start <= addr
            && end <= b.start + b.size
        {
            return None;
        }
        let bad = self.bad_runs(addr, end);
        let first = bad.first()?;
        let message = match first.class {
            ViolationClass::UseAfterFree => {
                format!("Access freed memory at {:#x}", first.range.start)
            }
            _ => format!("Access uninitialized bytes at {:#x}", first.range.start),
        };
        Some(Violation {
            class: first.class,
            access: Some(access),
            addr,
            len,
            block: self.nearest_block(first.range.start),
            message,
            bad,
        })
    }

    /// The bytes of `[from, to)` an access may not touch, in runs of one class.
    fn bad_runs(&self, from: Addr, to: Addr) -> Vec<BadRange> {
        let mut runs: Vec<BadRange> = Vec::new();
        for (range, state) in self.shadow_runs(from, to) {
            let Some(class) = state.class() else {
                continue;
            };
            match runs.last_mut() {
                Some(run) if run.range.end == range.start && run.class == class => {
                    run.range.end = range.end;
                }
                _ => runs.push(BadRange { range, class }),
            }
        }
        runs
    }

    /// Classifies `free(ptr)`: `None` when `ptr` is a live block's start.
    pub fn check_free(&self, ptr: Addr) -> Option<Violation> {
        let class = match self.arena.block_starting_at(ptr) {
            Some((_, b)) if !b.freed => return None,
            Some(_) => ViolationClass::DoubleFree,
            None => ViolationClass::InvalidFree,
        };
        Some(Violation {
            class,
            access: None,
            addr: ptr,
            len: 0,
            bad: Vec::new(),
            block: if (self.arena.base..self.arena.end()).contains(&ptr) {
                self.nearest_block(ptr)
            } else {
                None
            },
            message: format!("Invalid Free at {ptr:#x}"),
        })
    }
}

impl Allocator for CheckedBump {
    fn kind(&self) -> AllocatorKind {
        AllocatorKind::CheckedBump
    }

    fn allocate(&mut self, size: u64, align: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        let block = self.arena.bump(size, align, self.guard, trail)?;
        say!(
            trail,
            "shadow: {} live at {:#x}, {} guard after it",
            bytes(size),
            block.start,
            bytes(self.guard)
        );
        Ok(block.start)
    }

    fn free(&mut self, ptr: Addr, trail: &mut Trail) -> Result<(), AllocError> {
        if let Some(violation) = self.check_free(ptr) {
            say!(trail, "{}: {}", violation.class, violation.message);
            let kind = match violation.class {
                ViolationClass::DoubleFree => ErrorKind::DoubleFree,
                _ => ErrorKind::InvalidFree,
            };
            return Err(AllocError::new(kind, violation.message));
        }
        let Some((i, block)) = self.arena.block_starting_at(ptr) else {
            return Err(AllocError::new(
                ErrorKind::InvalidFree,
                format!("Invalid Free at {ptr:#x}"),
            ));
        };
        let size = block.size;
        self.arena.blocks.set_freed(i, true);
        self.arena.ledger.on_free(ptr);
        say!(
            trail,
            "shadow: {} at {ptr:#x} marked freed; never reused, so later accesses are use-after-free",
            bytes(size)
        );
        Ok(())
    }

    fn usable_size(&self, ptr: Addr) -> Option<u64> {
        self.arena.usable_size(ptr)
    }

    fn inspect(&self) -> HeapLayout {
        self.arena.layout(
            AllocatorKind::CheckedBump,
            vec![
                NativeStat::new("used", self.arena.used()),
                NativeStat::new("capacity", self.arena.capacity),
                NativeStat::new("guard_bytes", self.guard),
            ],
        )
    }

    fn validate(&self) -> Vec<Finding> {
        // The shadow is read off the blocks, so it cannot disagree with them.
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

    fn check_access(&self, addr: Addr, len: u64, access: Access) -> Option<Violation> {
        self.check(addr, len, access)
    }

    fn check_free(&self, ptr: Addr) -> Option<Violation> {
        CheckedBump::check_free(self, ptr)
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

    fn heap_at(base: Addr, size: u64) -> CheckedBump {
        CheckedBump::from_config(&HeapConfig {
            base: Some(base),
            size: Some(size),
            ..HeapConfig::default()
        })
        .unwrap()
    }

    /// SmallWorld's shadow: a state byte per heap byte, painted block by block.
    fn painted_shadow(heap: &CheckedBump) -> Vec<Shadow> {
        let base = heap.arena.base;
        let mut shadow = vec![Shadow::Unallocated; (heap.arena.end() - base) as usize];
        let mut paint = |from: Addr, len: u64, state| {
            let from = (from - base) as usize;
            shadow[from..from + len as usize].fill(state);
        };
        for b in heap.arena.blocks.iter() {
            paint(b.pad_start, b.start - b.pad_start, Shadow::Padding);
            let payload = if b.freed { Shadow::Freed } else { Shadow::Live };
            paint(b.start, b.size, payload);
            paint(b.start + b.size, b.guard, Shadow::Guard);
        }
        shadow
    }

    /// Every access checked against the blocks finds what scanning a painted shadow byte by
    /// byte finds, as SmallWorld does: the same bad runs, classes and messages.
    #[test]
    fn checks_read_off_the_blocks_find_what_a_painted_shadow_finds() {
        for guard in [0, 3, 16] {
            let mut heap = CheckedBump::from_config(&HeapConfig {
                base: Some(0x4000),
                size: Some(1 << 14),
                guard_bytes: Some(guard),
                ..HeapConfig::default()
            })
            .unwrap();
            let mut live = Vec::new();
            for i in 0..90u64 {
                if i % 3 == 2 {
                    // Without guards, zero-size blocks share a start: freeing the first of
                    // them is refused, which is fine here.
                    let p: Addr = live.remove((i as usize * 7) % live.len());
                    let _ = heap.free(p, &mut Trail::off());
                } else {
                    let size = [0, 1, 7, 24, 40][i as usize % 5];
                    live.push(
                        heap.allocate(size, 1 << (i % 5), &mut Trail::off())
                            .unwrap(),
                    );
                }
            }
            let shadow = painted_shadow(&heap);
            let (base, end) = (heap.arena.base, heap.arena.end());
            let used = heap.arena.blocks.iter().last().map_or(base, |b| b.end());
            for from in (base..used + 8).step_by(3) {
                for len in [1, 2, 5, 9, 33] {
                    let to = (from + len).min(end);
                    // Byte by byte, merging neighbours of one class, as SmallWorld scans.
                    let mut want: Vec<BadRange> = Vec::new();
                    for a in from..to {
                        let Some(class) = shadow[(a - base) as usize].class() else {
                            continue;
                        };
                        match want.last_mut() {
                            Some(r) if r.range.end == a && r.class == class => r.range.end += 1,
                            _ => want.push(BadRange {
                                range: a..a + 1,
                                class,
                            }),
                        }
                    }
                    let got = heap.check(from, to - from, Access::Read);
                    assert_eq!(
                        got.as_ref().map(|v| &v.bad),
                        (!want.is_empty()).then_some(&want),
                        "guard {guard}, access {from:#x}+{}",
                        to - from
                    );
                }
            }
        }
    }

    #[test]
    fn overflow_into_guard_is_a_heap_buffer_overflow_with_smallworlds_message() {
        let mut heap = heap_at(0x2000, 0x1000);
        let p = heap.allocate(8, 0, &mut Trail::off()).unwrap();
        assert_eq!(p, 0x2000);
        assert_eq!(heap.check(p, 8, Access::Write), None);
        let v = heap.check(p + 4, 8, Access::Write).unwrap();
        assert_eq!(v.class, ViolationClass::HeapBufferOverflow);
        assert_eq!(v.message, "Access uninitialized bytes at 0x2008");
        assert_eq!(v.bad.len(), 1);
        assert_eq!(v.bad[0].range, 0x2008..0x200c);
        assert_eq!(v.block, Some(0x2000..0x2008));
    }

    #[test]
    fn freed_memory_is_never_reused_and_accesses_to_it_are_use_after_free() {
        let mut heap = heap_at(0x2000, 0x1000);
        let mut t = Trail::off();
        let p = heap.allocate(8, 0, &mut t).unwrap();
        heap.free(p, &mut t).unwrap();
        let q = heap.allocate(8, 0, &mut t).unwrap();
        assert_eq!(q, p + 8 + DEFAULT_GUARD_BYTES);
        let v = heap.check(p + 2, 1, Access::Read).unwrap();
        assert_eq!(v.class, ViolationClass::UseAfterFree);
        assert_eq!(v.message, "Access freed memory at 0x2002");
        assert!(heap.validate().is_empty());
    }

    #[test]
    fn bad_frees_are_classified_and_keep_smallworlds_message() {
        let mut heap = heap_at(0x2000, 0x1000);
        let mut t = Trail::off();
        let p = heap.allocate(8, 0, &mut t).unwrap();
        let interior = heap.free(p + 1, &mut t).unwrap_err();
        assert_eq!(interior.kind, ErrorKind::InvalidFree);
        assert_eq!(interior.message, "Invalid Free at 0x2001");
        heap.free(p, &mut t).unwrap();
        let twice = heap.free(p, &mut t).unwrap_err();
        assert_eq!(twice.kind, ErrorKind::DoubleFree);
        assert_eq!(twice.message, "Invalid Free at 0x2000");
        assert_eq!(
            heap.check_free(0x9999).map(|v| v.class),
            Some(ViolationClass::InvalidFree)
        );
    }

    #[test]
    fn accesses_straddling_the_heap_edge_are_invalid_accesses() {
        let mut heap = heap_at(0x2000, 0x40);
        heap.allocate(0x20, 0, &mut Trail::off()).unwrap();
        let v = heap.check(0x1ffc, 8, Access::Read).unwrap();
        assert_eq!(v.class, ViolationClass::OutOfHeap);
        assert_eq!(v.message, "Invalid access at 0x1ffc of size 8");
        assert_eq!(v.bad[0].range, 0x1ffc..0x2000);
        let v = heap.check(0x203c, 8, Access::Write).unwrap();
        assert_eq!(v.message, "Invalid access at 0x203c of size 8");
        assert_eq!(v.bad.last().map(|b| b.range.clone()), Some(0x2040..0x2044));
    }

    #[test]
    fn never_allocated_bytes_are_wild_and_memory_is_full_counts_the_guard() {
        // SmallWorld would never report "Memory is full" for a heap at a non-zero address.
        let mut heap = heap_at(0x7000_0000, 64);
        let mut t = Trail::off();
        heap.allocate(32, 0, &mut t).unwrap();
        let v = heap.check(0x7000_0030, 4, Access::Read).unwrap();
        assert_eq!(v.class, ViolationClass::WildAccess);
        let err = heap.allocate(1, 0, &mut t).unwrap_err();
        assert_eq!(err.message, "Memory is full", "48 used + 1 + 16 guard > 64");
        assert_eq!(
            heap.allocate(0, 0, &mut t),
            Ok(0x7000_0030),
            "0 + 16 guard still fits"
        );
    }
}

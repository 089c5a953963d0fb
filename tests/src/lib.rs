//! Shared helpers for heapscope's end-to-end tests and benchmarks: a seeded workload generator
//! and a driver that replays it straight into a model.
//!
//! The tests themselves live in `tests/tests/`, the benchmarks in `tests/benches/`.

use heapscope_core::{Addr, Allocator, Op, Trail};

/// A small, fast, seedable generator (SplitMix64): the workloads must be identical on every
/// machine and run, and need no statistical quality beyond that.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: no modulo bias worth caring about for test traces.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 100.0 < percent
    }
}

/// One call of a workload, naming blocks by dense slot numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Allocate `size` bytes into `slot`.
    Alloc {
        /// Slot the pointer goes to.
        slot: u32,
        /// Bytes.
        size: u32,
    },
    /// Free the block in `slot`.
    Free {
        /// Slot holding the pointer.
        slot: u32,
    },
}

/// A request size skewed towards small blocks, as real programs' are: half up to 64 B,
/// most of the rest up to 512 B, a few up to 4 KiB.
pub fn skewed_size(rng: &mut SplitMix64) -> u32 {
    let size = match rng.below(100) {
        0..50 => 1 + rng.below(64),
        50..90 => 1 + rng.below(512),
        _ => 1 + rng.below(4096),
    };
    size as u32
}

/// A random alloc/free workload of `len` calls: about 55 % allocations and 45 % frees of a
/// random live block, so the live set grows slowly, as in a long-running program.
pub fn random_workload(seed: u64, len: usize) -> Vec<Call> {
    // With no cap the steady workload never reaches its steady state.
    steady_workload(seed, len, usize::MAX)
}

/// Like [`random_workload`], but once `live_cap` blocks are live, allocations and frees are
/// equally likely: a program in its steady state, holding about `live_cap` blocks.
pub fn steady_workload(seed: u64, len: usize, live_cap: usize) -> Vec<Call> {
    let mut rng = SplitMix64::new(seed);
    let mut live: Vec<u32> = Vec::new();
    let mut next_slot = 0u32;
    let mut calls = Vec::with_capacity(len);
    while calls.len() < len {
        let alloc_percent = if live.len() < live_cap { 55 } else { 50 };
        if live.is_empty()
            || (live.len() < live_cap.saturating_mul(2) && rng.below(100) < alloc_percent)
        {
            calls.push(Call::Alloc {
                slot: next_slot,
                size: skewed_size(&mut rng),
            });
            live.push(next_slot);
            next_slot += 1;
        } else {
            let i = rng.below(live.len() as u64) as usize;
            calls.push(Call::Free {
                slot: live.swap_remove(i),
            });
        }
    }
    calls
}

/// Number of slots a workload uses.
pub fn slots(calls: &[Call]) -> usize {
    calls
        .iter()
        .map(|c| match *c {
            Call::Alloc { slot, .. } | Call::Free { slot } => slot as usize + 1,
        })
        .max()
        .unwrap_or(0)
}

/// Replays `calls` into `heap` without explanations; returns how many calls failed.
pub fn drive(heap: &mut dyn Allocator, calls: &[Call]) -> usize {
    let mut ptrs: Vec<Option<Addr>> = vec![None; slots(calls)];
    let mut trail = Trail::off();
    let mut failed = 0;
    for call in calls {
        match *call {
            Call::Alloc { slot, size } => match heap.allocate(u64::from(size), 0, &mut trail) {
                Ok(ptr) => ptrs[slot as usize] = Some(ptr),
                Err(_) => failed += 1,
            },
            Call::Free { slot } => {
                if let Some(ptr) = ptrs[slot as usize].take()
                    && heap.free(ptr, &mut trail).is_err()
                {
                    failed += 1;
                }
            }
        }
    }
    failed
}

/// The trace of `calls`, slots as block ids: the same workload for the timeline and the app.
pub fn workload_ops(calls: &[Call]) -> Vec<Op> {
    calls
        .iter()
        .map(|call| match *call {
            Call::Alloc { slot, size } => Op::Alloc {
                id: u64::from(slot),
                size: u64::from(size),
                align: 0,
            },
            Call::Free { slot } => Op::Free {
                id: u64::from(slot),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_reproducible_and_only_free_live_slots() {
        let a = random_workload(7, 10_000);
        assert_eq!(a, random_workload(7, 10_000));
        assert_ne!(a, random_workload(8, 10_000));
        let mut live = vec![false; slots(&a)];
        let mut allocs = 0;
        for call in &a {
            match *call {
                Call::Alloc { slot, size } => {
                    assert!(!live[slot as usize] && (1..=4096).contains(&size));
                    live[slot as usize] = true;
                    allocs += 1;
                }
                Call::Free { slot } => {
                    assert!(live[slot as usize]);
                    live[slot as usize] = false;
                }
            }
        }
        assert!((5000..6000).contains(&allocs), "{allocs} allocations");
    }
}

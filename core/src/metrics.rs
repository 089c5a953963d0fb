//! Fragmentation and overhead metrics, per step and per trace.
//!
//! The definitions, with their sources, are in `docs/metrics.md`. [`StepMetrics::of`] computes
//! a step's metrics from a full [`HeapLayout`]: it is the reference every faster, incremental
//! computation is tested against.

use serde::Serialize;

use crate::layout::{BlockState, HeapLayout};

/// Metrics of one allocator at one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StepMetrics {
    /// Bytes the program asked for and still holds.
    pub requested_live: u64,
    /// Bytes live blocks occupy (payload, headers, rounding, alignment slack, guards).
    pub held: u64,
    /// The allocator's footprint: heap extent, address space used or system bytes.
    pub footprint: u64,
    /// Highest footprint so far.
    pub peak_footprint: u64,
    /// `held - requested_live`: bytes lost to headers, rounding and alignment.
    pub internal_bytes: u64,
    /// `1 - sqrt(Σ f²) / Σ f` over the reusable free blocks `f` (0 when there are none).
    pub free_space_fragmentation: f64,
    /// Reusable free bytes (free blocks, the top chunk, the never-used tail).
    pub free_bytes: u64,
    /// The largest reusable free block.
    pub largest_free: u64,
    /// Number of reusable free blocks.
    pub free_blocks: u64,
}

impl StepMetrics {
    /// Computes the metrics of `layout`.
    pub fn of(layout: &HeapLayout) -> Self {
        let s = layout.stats;
        let mut sum = 0u64;
        let mut sum_sq = 0f64;
        let mut largest = 0u64;
        let mut count = 0u64;
        for block in &layout.blocks {
            if is_reusable(block.state) {
                let f = block.size();
                sum += f;
                sum_sq += (f as f64) * (f as f64);
                largest = largest.max(f);
                count += 1;
            }
        }
        Self {
            requested_live: s.requested_live,
            held: s.held,
            footprint: s.footprint,
            peak_footprint: s.peak_footprint,
            internal_bytes: s.held.saturating_sub(s.requested_live),
            free_space_fragmentation: free_space_fragmentation(sum, sum_sq),
            free_bytes: sum,
            largest_free: largest,
            free_blocks: count,
        }
    }

    /// `internal_bytes / held`, the share of held bytes the program did not ask for.
    pub fn internal_fragmentation(&self) -> f64 {
        ratio(self.internal_bytes, self.held)
    }
}

/// Whether bytes in `state` can serve a future allocation.
///
/// Free blocks, the top chunk and never-used space can; freed-but-quarantined blocks (bump,
/// checked-bump), guards, padding and allocator metadata cannot.
pub fn is_reusable(state: BlockState) -> bool {
    matches!(
        state,
        BlockState::Free | BlockState::Top | BlockState::Unused
    )
}

/// `1 - sqrt(Σ f²) / Σ f`, given `Σ f` and `Σ f²`; 0 when there is no free space.
pub fn free_space_fragmentation(sum: u64, sum_sq: f64) -> f64 {
    if sum == 0 {
        0.0
    } else {
        (1.0 - sum_sq.sqrt() / sum as f64).max(0.0)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Whole-trace measures, accumulated step by step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TraceMetrics {
    /// Steps seen.
    pub steps: u64,
    /// Operations the allocator refused.
    pub failed: u64,
    /// Highest requested live bytes.
    pub peak_live: u64,
    /// Highest footprint.
    pub peak_footprint: u64,
    /// Requested live bytes at the step of highest footprint (of several such steps, the one
    /// with the most live bytes).
    pub live_at_peak_footprint: u64,
}

impl TraceMetrics {
    /// Adds one step's metrics; `failed` says whether the step's operation failed.
    pub fn add(&mut self, m: &StepMetrics, failed: bool) {
        self.steps += 1;
        self.failed += u64::from(failed);
        self.peak_live = self.peak_live.max(m.requested_live);
        if m.footprint > self.peak_footprint {
            self.peak_footprint = m.footprint;
            self.live_at_peak_footprint = m.requested_live;
        } else if m.footprint == self.peak_footprint {
            // A footprint that plateaus (dlmalloc's first 64 KiB, a page of mmap) is at its
            // peak all along; measured at the plateau's first step, when the program holds a
            // few bytes, #3 would be thousands of percent for a heap that is later well used.
            self.live_at_peak_footprint = self.live_at_peak_footprint.max(m.requested_live);
        }
    }

    /// Johnstone & Wilson's measure #3: peak footprint over the live bytes at that moment,
    /// minus one (0.25 = 25 % more memory than live at the worst moment).
    pub fn jw3(&self) -> Option<f64> {
        (self.live_at_peak_footprint > 0)
            .then(|| self.peak_footprint as f64 / self.live_at_peak_footprint as f64 - 1.0)
    }

    /// Johnstone & Wilson's measure #4: peak footprint over peak live bytes, minus one.
    pub fn jw4(&self) -> Option<f64> {
        (self.peak_live > 0).then(|| self.peak_footprint as f64 / self.peak_live as f64 - 1.0)
    }

    /// CS:APP peak utilization: peak live bytes over peak footprint.
    pub fn utilization(&self) -> Option<f64> {
        (self.peak_footprint > 0).then(|| self.peak_live as f64 / self.peak_footprint as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Block, Stats};
    use crate::{AllocatorKind, HeapConfig, Op, Replayer, StepResult, Trail};

    fn layout_of(blocks: &[(u64, BlockState)], stats: Stats) -> HeapLayout {
        let mut at = 0;
        let blocks = blocks
            .iter()
            .map(|&(size, state)| {
                let b = Block::plain(at..at + size, state);
                at += size;
                b
            })
            .collect();
        HeapLayout {
            kind: AllocatorKind::Bump,
            extent: 0..at,
            blocks,
            free_lists: Vec::new(),
            markers: Vec::new(),
            poisoned: None,
            stats,
            native_stats: Vec::new(),
        }
    }

    #[test]
    fn free_space_fragmentation_by_hand() {
        // Free blocks 16 and 16: 1 - sqrt(256 + 256) / 32 = 1 - 22.627 / 32 = 0.29289.
        let l = layout_of(
            &[
                (16, BlockState::Free),
                (8, BlockState::Live),
                (16, BlockState::Free),
                (8, BlockState::Freed),
            ],
            Stats::default(),
        );
        let m = StepMetrics::of(&l);
        assert!((m.free_space_fragmentation - (1.0 - 512f64.sqrt() / 32.0)).abs() < 1e-12);
        assert_eq!((m.free_bytes, m.largest_free, m.free_blocks), (32, 16, 2));
        // One free block: no fragmentation. Four equal blocks: 1 - 2/4 = 0.5.
        let one = layout_of(
            &[(8, BlockState::Live), (64, BlockState::Top)],
            Stats::default(),
        );
        assert_eq!(StepMetrics::of(&one).free_space_fragmentation, 0.0);
        let four = layout_of(
            &[(4, BlockState::Free), (1, BlockState::Live)].repeat(4),
            Stats::default(),
        );
        assert!((StepMetrics::of(&four).free_space_fragmentation - 0.5).abs() < 1e-12);
        let none = layout_of(&[(8, BlockState::Live)], Stats::default());
        assert_eq!(StepMetrics::of(&none).free_space_fragmentation, 0.0);
    }

    #[test]
    fn a_headerless_bump_block_has_no_internal_fragmentation() {
        // Bump with no headers: 9 B requested = 9 B held.
        let mut r = Replayer::new(AllocatorKind::Bump.build(&HeapConfig::default()).unwrap());
        r.apply(
            &Op::Alloc {
                id: 1,
                size: 9,
                align: 0,
            },
            &mut Trail::off(),
        );
        let m = StepMetrics::of(&r.heap().inspect());
        assert_eq!((m.requested_live, m.held, m.internal_bytes), (9, 9, 0));
        assert_eq!(m.internal_fragmentation(), 0.0);
    }

    /// Per-trace measures of steps given as (requested live, footprint, failed).
    fn trace_of(steps: &[(u64, u64, bool)]) -> TraceMetrics {
        let mut t = TraceMetrics::default();
        for &(live, footprint, failed) in steps {
            let m = StepMetrics {
                requested_live: live,
                footprint,
                ..StepMetrics::default()
            };
            t.add(&m, failed);
        }
        t
    }

    #[test]
    fn trace_measures_by_hand() {
        // Live 100 at footprint 400, then live 300 at footprint 400 (not a new peak), then
        // live 200 at footprint 500: J&W #3 = 500/200 - 1 = 1.5, #4 = 500/300 - 1 = 0.667,
        // utilization = 300/500 = 0.6.
        let t = trace_of(&[(100, 400, false), (300, 400, false), (200, 500, true)]);
        assert_eq!(t.failed, 1);
        assert!((t.jw3().unwrap() - 1.5).abs() < 1e-12);
        assert!((t.jw4().unwrap() - (500.0 / 300.0 - 1.0)).abs() < 1e-12);
        assert!((t.utilization().unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(TraceMetrics::default().utilization(), None);
    }

    #[test]
    fn jw3_on_a_plateau_is_measured_where_the_most_is_live() {
        // Footprint 4096 from the first step on; live 9, then 1000, then 10: the footprint
        // peaks at every step, and at 1000 live J&W #3 = 4096/1000 - 1 = 3.096.
        let t = trace_of(&[(9, 4096, false), (1000, 4096, false), (10, 4096, false)]);
        assert_eq!(t.live_at_peak_footprint, 1000);
        assert!((t.jw3().unwrap() - 3.096).abs() < 1e-12);
    }

    #[test]
    fn checked_bump_quarantine_is_not_reusable_free_space() {
        let mut r = Replayer::new(
            AllocatorKind::CheckedBump
                .build(&HeapConfig {
                    base: Some(0),
                    size: Some(256),
                    guard_bytes: Some(16),
                    ..HeapConfig::default()
                })
                .unwrap(),
        );
        let mut t = Trail::off();
        for op in [
            Op::Alloc {
                id: 1,
                size: 32,
                align: 0,
            },
            Op::Free { id: 1 },
        ] {
            assert!(!matches!(
                r.apply(&op, &mut t).result,
                StepResult::Failed(_)
            ));
        }
        let m = StepMetrics::of(&r.heap().inspect());
        // Only the untouched tail after the first block and its guard is reusable.
        assert_eq!(
            (m.free_bytes, m.free_blocks, m.largest_free),
            (256 - 48, 1, 256 - 48)
        );
        assert_eq!(m.requested_live, 0);
    }

    #[test]
    fn unmapped_address_space_is_not_free_space() {
        // dlmalloc's mappings sit apart in the address space; the gaps are not its to use.
        let mut replay = Replayer::new(
            AllocatorKind::Dlmalloc
                .build(&HeapConfig::default())
                .unwrap(),
        );
        for (id, size) in [(1, 100), (2, 300_000), (3, 40)] {
            replay.apply(&Op::Alloc { id, size, align: 0 }, &mut Trail::off());
        }
        let layout = replay.heap().inspect();
        assert!(
            layout
                .blocks
                .iter()
                .any(|b| b.state == BlockState::Unmapped)
        );
        let m = StepMetrics::of(&layout);
        assert!(m.free_bytes <= m.footprint, "{m:?}");
    }
}

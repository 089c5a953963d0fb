//! Time travel: after any sequence of seeks, a timeline stands exactly where a fresh replay of
//! the same number of operations stands (layout, free lists, stats, bytes, the last step's
//! result and explanation, and what every later step does from there), for every allocator
//! variant.
//!
//! `PROPTEST_CASES=N` sets the depth (default 24 per variant).

#![allow(clippy::unwrap_used)]

use heapscope_core::{
    AllocatorKind, HeapConfig, Op, RecordOptions, Replayer, Step, Timeline, Trail,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Operations on a handful of ids, so frees, double frees, reuses and uses after free happen.
fn op() -> impl Strategy<Value = Op> {
    let id = 0u64..12;
    let size = prop_oneof![0u64..48, 48u64..600, 600u64..5000];
    prop_oneof![
        4 => (id.clone(), size.clone(), prop_oneof![Just(0u64), Just(16), Just(64)])
            .prop_map(|(id, size, align)| Op::Alloc { id, size, align }),
        1 => (id.clone(), 0u64..9, 0u64..64).prop_map(|(id, count, size)| Op::Calloc { id, count, size }),
        2 => (id.clone(), size).prop_map(|(id, size)| Op::Realloc { id, size }),
        4 => id.clone().prop_map(|id| Op::Free { id }),
        1 => (id.clone(), 0u64..80, 1u64..16).prop_map(|(id, offset, len)| Op::Read { id, offset, len }),
        1 => (id, 0u64..80, prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(id, offset, bytes)| Op::Write { id, offset, bytes }),
        1 => Just(Op::Mark { label: "mark".to_owned() }),
    ]
}

/// A fresh replay of the first `n` operations, and the last one's step explained.
fn fresh(kind: AllocatorKind, ops: &[Op], n: usize) -> (Replayer, Option<Step>) {
    let mut replay = Replayer::new(kind.build(&HeapConfig::default()).unwrap());
    let mut last = None;
    for (i, op) in ops[..n].iter().enumerate() {
        if i + 1 == n {
            last = Some(replay.apply(op, &mut Trail::on()));
        } else {
            replay.apply(op, &mut Trail::off());
        }
    }
    (replay, last)
}

fn same_state(
    timeline: &Timeline,
    step: Option<Step>,
    ops: &[Op],
    n: usize,
) -> Result<(), TestCaseError> {
    let kind = timeline.kind();
    let (expected, expected_step) = fresh(kind, ops, n);
    let (got, want) = (timeline.replay().heap(), expected.heap());
    prop_assert_eq!(timeline.position(), n);
    prop_assert_eq!(got.inspect(), want.inspect(), "{} layout at {}", kind, n);
    prop_assert_eq!(got.stats(), want.stats(), "{} stats at {}", kind, n);
    prop_assert!(got.memory() == want.memory(), "{} bytes at {}", kind, n);
    prop_assert_eq!(got.validate(), want.validate());
    prop_assert_eq!(step, expected_step, "{} step at {}", kind, n);
    if n > 0 {
        prop_assert_eq!(
            timeline.requested_live(n - 1),
            Some(want.stats().requested_live)
        );
        prop_assert_eq!(timeline.footprint(n - 1), Some(want.stats().footprint));
    }
    // State that no view shows (which pointers were freed before, say) must match too: both
    // go on through the rest of the trace alike.
    let mut went_on = timeline.replay().clone();
    let mut expected = expected;
    for (i, op) in ops.iter().enumerate().skip(n) {
        let (got, want) = (
            went_on.apply(op, &mut Trail::off()),
            expected.apply(op, &mut Trail::off()),
        );
        prop_assert_eq!(got, want, "{} step {} after a seek to {}", kind, i, n);
    }
    Ok(())
}

fn run(
    kind: AllocatorKind,
    ops: &[Op],
    seeks: &[prop::sample::Index],
    back: usize,
    spacing: usize,
    waypoints: Waypoints,
) -> Result<(), TestCaseError> {
    // Tight budgets force many checkpoints; generous ones force long replays from few.
    // Waypoints every few operations, with room for two or for all, exercise stepping back
    // through the memory journal and dropping the oldest.
    let options = RecordOptions {
        checkpoint_bytes_per_op: 1 << spacing,
        min_spacing: spacing,
        waypoint_spacing: Some(waypoints.spacing),
        waypoint_bytes: if waypoints.roomy { 64 << 20 } else { 0 },
    };
    let mut timeline = Timeline::record(
        kind,
        HeapConfig::default(),
        ops,
        &options,
        &mut |_, _, _| true,
    )
    .unwrap();
    prop_assert_eq!(timeline.len(), ops.len());
    for seek in seeks {
        let n = seek.index(ops.len() + 1);
        let step = timeline.seek(ops, n);
        same_state(&timeline, step, ops, n)?;
        // Jump back k steps and forward again.
        let k = n.saturating_sub(back);
        let step = timeline.seek(ops, k);
        same_state(&timeline, step, ops, k)?;
        let step = timeline.seek(ops, n);
        same_state(&timeline, step, ops, n)?;
        // Step back one at a time, as a learner does.
        for i in (n.saturating_sub(3)..n).rev() {
            let step = timeline.seek(ops, i);
            same_state(&timeline, step, ops, i)?;
        }
        // A copy has no memory journal: its waypoints must give way to checkpoints.
        if waypoints.clone_midway {
            timeline = timeline.clone();
        }
    }
    Ok(())
}

/// How the timeline under test keeps waypoints.
#[derive(Debug, Clone, Copy)]
struct Waypoints {
    spacing: usize,
    roomy: bool,
    clone_midway: bool,
}

fn waypoints() -> impl Strategy<Value = Waypoints> {
    (1usize..12, any::<bool>(), any::<bool>()).prop_map(|(spacing, roomy, clone_midway)| {
        Waypoints {
            spacing,
            roomy,
            clone_midway,
        }
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

macro_rules! seek_test {
    ($($test:ident => $kind:expr,)*) => {
        /// Every variant has a seek test.
        const COVERED: &[AllocatorKind] = &[$($kind),*];
        $(
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(cases()))]
                #[test]
                fn $test(
                    ops in prop::collection::vec(op(), 0..160),
                    seeks in prop::collection::vec(any::<prop::sample::Index>(), 1..8),
                    back in 1usize..40,
                    spacing in 1usize..9,
                    waypoints in waypoints(),
                ) {
                    run($kind, &ops, &seeks, back, spacing, waypoints)?;
                }
            }
        )*
    };
}

seek_test! {
    seek_bump => AllocatorKind::Bump,
    seek_checked_bump => AllocatorKind::CheckedBump,
    seek_freeing_bump => AllocatorKind::FreeingBump,
    seek_freeing_bump_tetcore => AllocatorKind::FreeingBumpTetcore,
    seek_segregated_fit => AllocatorKind::SegregatedFit,
    seek_dlmalloc => AllocatorKind::Dlmalloc,
    seek_nutmeg_pool => AllocatorKind::NutmegPool,
}

#[test]
fn every_variant_has_a_seek_test() {
    for kind in AllocatorKind::ALL {
        assert!(COVERED.contains(kind), "no seek test for {kind}");
    }
}

#[test]
fn recording_can_be_cancelled_and_reports_where() {
    let ops: Vec<Op> = (0..10_000)
        .map(|id| Op::Alloc {
            id,
            size: 8,
            align: 0,
        })
        .collect();
    let err = Timeline::record(
        AllocatorKind::Bump,
        HeapConfig::default(),
        &ops,
        &RecordOptions::default(),
        &mut |i, _, _| i < 4096,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "recording cancelled at step 4096");
}

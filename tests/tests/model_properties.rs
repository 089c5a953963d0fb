//! Properties every allocator model must keep on any sequence of calls:
//! no panic, `validate()` clean, a layout that tiles the heap, live blocks that never overlap,
//! user bytes that the allocator never overwrites, and counters that agree with the program.

use heapscope_core::{Addr, AllocatorKind, BlockState, ErrorKind, HeapConfig, Trail};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    Alloc { size: u64, align: u64 },
    Calloc { count: u64, size: u64 },
    Free { pick: usize },
    Realloc { pick: usize, size: u64 },
    BogusFree { pick: usize, offset: u64 },
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..64,
        3 => 64u64..1024,
        1 => 1024u64..70_000,
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (size(), prop_oneof![6 => Just(0u64), 1 => Just(8u64), 1 => Just(16u64), 1 => Just(64u64)])
            .prop_map(|(size, align)| Step::Alloc { size, align }),
        1 => (0u64..20, 0u64..40).prop_map(|(count, size)| Step::Calloc { count, size }),
        6 => any::<usize>().prop_map(|pick| Step::Free { pick }),
        2 => (any::<usize>(), size()).prop_map(|(pick, size)| Step::Realloc { pick, size }),
        1 => (any::<usize>(), 1u64..24).prop_map(|(pick, offset)| Step::BogusFree { pick, offset }),
    ]
}

/// Variants whose original frees whatever pointer it is given.
const TRUSTS_POINTERS: &[AllocatorKind] = &[
    AllocatorKind::FreeingBump,
    AllocatorKind::FreeingBumpTetcore,
];

/// A live block as the program sees it.
#[derive(Debug, Clone)]
struct Live {
    ptr: Addr,
    size: u64,
    fill: u8,
}

fn pattern(fill: u8, len: u64) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

fn run(kind: AllocatorKind, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut heap = kind
        .build(&HeapConfig::default())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut live: Vec<Live> = Vec::new();
    let mut next_fill = 1u8;
    let mut trail = Trail::on();
    for (i, step) in steps.iter().enumerate() {
        let at = format!("{kind}, step {i} ({step:?})");
        let mut placed: Option<(Addr, u64)> = None;
        match *step {
            Step::Alloc { size, align } => {
                if let Ok(ptr) = heap.allocate(size, align, &mut trail) {
                    if align > 1 {
                        prop_assert_eq!(ptr % align, 0, "{}: misaligned", at);
                    }
                    placed = Some((ptr, size));
                }
            }
            Step::Calloc { count, size } => {
                if let Ok(ptr) = heap.calloc(count, size, &mut trail) {
                    let total = count * size;
                    if total > 0 {
                        let zeroes = heap
                            .memory()
                            .slice(ptr, total)
                            .map_err(|e| TestCaseError::fail(format!("{at}: {e}")))?;
                        prop_assert!(
                            zeroes.iter().all(|&b| b == 0),
                            "{}: calloc memory not zeroed",
                            at
                        );
                    }
                    placed = Some((ptr, total));
                }
            }
            Step::Free { pick }
                if !live.is_empty() && !shares_address(&live, pick % live.len()) =>
            {
                let block = live.swap_remove(pick % live.len());
                check_intact(&*heap, &block, block.size, &at)?;
                let result = heap.free(block.ptr, &mut trail);
                prop_assert!(
                    result.is_ok()
                        || result
                            .as_ref()
                            .is_err_and(|e| e.kind == ErrorKind::Poisoned),
                    "{}: free of a live block failed: {:?}",
                    at,
                    result
                );
            }
            Step::Realloc { pick, size }
                if !live.is_empty() && !shares_address(&live, pick % live.len()) =>
            {
                let index = pick % live.len();
                let block = live[index].clone();
                check_intact(&*heap, &block, block.size, &at)?;
                if let Ok(ptr) = heap.realloc(block.ptr, size, &mut trail) {
                    live.swap_remove(index);
                    // realloc(p, 0) may free p and return NULL (unstack's does).
                    let kept = if ptr == 0 && size == 0 {
                        0
                    } else {
                        block.size.min(size)
                    };
                    if kept > 0 {
                        let bytes = heap
                            .memory()
                            .slice(ptr, kept)
                            .map_err(|e| TestCaseError::fail(format!("{at}: {e}")))?;
                        prop_assert_eq!(
                            bytes,
                            &pattern(block.fill, kept)[..],
                            "{}: realloc lost data",
                            at
                        );
                    }
                    placed = Some((ptr, size));
                }
            }
            // sc-allocator and Tetcore trust the pointer they are given and read whatever
            // precedes it as a header: an interior pointer is undefined behaviour there (the
            // differential test shows the models corrupt their heaps exactly as the originals
            // do). Every other model must refuse or ignore it and stay sound.
            Step::BogusFree { pick, offset }
                if !live.is_empty() && !TRUSTS_POINTERS.contains(&kind) =>
            {
                let block = &live[pick % live.len()];
                let bogus = block.ptr + offset.min(block.size.max(1));
                if !live.iter().any(|b| b.ptr == bogus) {
                    let _ = heap.free(bogus, &mut trail);
                }
            }
            _ => {}
        }
        // A zero-byte request may return NULL (unstack's malloc(0), calloc(0, n) and
        // realloc(p, 0) do): the program then holds no block.
        if let Some((ptr, size)) = placed.filter(|&(ptr, size)| !(ptr == 0 && size == 0)) {
            let fill = next_fill;
            next_fill = next_fill.wrapping_add(37);
            let written = heap.memory_mut().write(ptr, &pattern(fill, size));
            if let Err(e) = written {
                return Err(TestCaseError::fail(format!(
                    "{at}: returned block not writable: {e}"
                )));
            }
            live.push(Live { ptr, size, fill });
        }
        trail.take();

        let findings = heap.validate();
        let layout = heap.inspect();
        prop_assert!(
            findings.is_empty(),
            "{}: validate() found {:?}",
            at,
            findings
        );
        let tiling = layout.check_tiling();
        prop_assert!(
            tiling.is_empty(),
            "{}: layout does not tile: {:?}",
            at,
            tiling
        );

        let mut ranges: Vec<(Addr, Addr)> = live.iter().map(|b| (b.ptr, b.ptr + b.size)).collect();
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            prop_assert!(
                pair[0].1 <= pair[1].0,
                "{}: live blocks overlap: {:?}",
                at,
                pair
            );
        }
        for block in &live {
            check_intact(&*heap, block, block.size, &at)?;
            if block.size > 0 {
                let holder = layout.block_at(block.ptr);
                prop_assert!(
                    holder
                        .is_some_and(|b| b.state == BlockState::Live
                            && b.range.end >= block.ptr + block.size),
                    "{}: live block {:#x}+{} is not inside a live block of the layout: {:?}",
                    at,
                    block.ptr,
                    block.size,
                    holder
                );
            }
        }
        let stats = heap.stats();
        if layout.poisoned.is_none() {
            prop_assert_eq!(
                stats.live_blocks,
                live.len() as u64,
                "{}: live block count",
                at
            );
            prop_assert_eq!(
                stats.requested_live,
                live.iter().map(|b| b.size).sum::<u64>(),
                "{}: requested bytes",
                at
            );
        }
        prop_assert!(
            stats.held >= stats.requested_live,
            "{}: held < requested",
            at
        );
        prop_assert!(
            stats.peak_footprint >= stats.footprint,
            "{}: peak footprint",
            at
        );
    }
    Ok(())
}

/// Whether another live block starts where block `index` does (zero-size blocks can): which of
/// them a `free` of that address releases is the allocator's choice, so such frees are skipped.
fn shares_address(live: &[Live], index: usize) -> bool {
    live.iter()
        .enumerate()
        .any(|(j, b)| j != index && b.ptr == live[index].ptr)
}

fn check_intact(
    heap: &dyn heapscope_core::Allocator,
    block: &Live,
    len: u64,
    at: &str,
) -> Result<(), TestCaseError> {
    let bytes = heap
        .memory()
        .slice(block.ptr, len)
        .map_err(|e| TestCaseError::fail(format!("{at}: {e}")))?;
    prop_assert_eq!(
        bytes,
        &pattern(block.fill, len)[..],
        "{}: the allocator overwrote the live block at {:#x}",
        at,
        block.ptr
    );
    Ok(())
}

/// One property test per variant, so each is reported (and run in parallel) on its own.
macro_rules! invariants {
    ($($test:ident => $kind:expr),* $(,)?) => {
        /// The variants with a property test.
        const COVERED: &[AllocatorKind] = &[$($kind),*];

        proptest! {
            // PROPTEST_CASES raises the count for a deeper run.
            #![proptest_config(ProptestConfig {
                cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]
            $(
                #[test]
                fn $test(steps in prop::collection::vec(step(), 1..120)) {
                    run($kind, &steps)?;
                }
            )*
        }
    };
}

invariants! {
    bump_keeps_its_invariants => AllocatorKind::Bump,
    checked_bump_keeps_its_invariants => AllocatorKind::CheckedBump,
    freeing_bump_keeps_its_invariants => AllocatorKind::FreeingBump,
    freeing_bump_tetcore_keeps_its_invariants => AllocatorKind::FreeingBumpTetcore,
    segregated_fit_keeps_its_invariants => AllocatorKind::SegregatedFit,
    dlmalloc_keeps_its_invariants => AllocatorKind::Dlmalloc,
    nutmeg_pool_keeps_its_invariants => AllocatorKind::NutmegPool,
}

#[test]
fn every_variant_has_a_property_test() {
    // Adding a variant to `AllocatorKind::ALL` without a line above fails here.
    assert_eq!(COVERED, AllocatorKind::ALL);
}

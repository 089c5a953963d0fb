//! Each bundled teaching scenario, replayed: the point its description makes must hold, at the
//! steps it names. Step numbers in descriptions are the app's (1-based: step N is the state
//! after N operations); `steps[i]` here is operation i, i.e. the app's step i + 1.

// Helpers shared by the tests fail the test that calls them, as the tests themselves do.
#![allow(clippy::unwrap_used, clippy::panic)]

mod support {
    pub mod plywood_workload;
}

use std::path::{Path, PathBuf};

use heapscope_core::{
    Addr, AllocatorKind, BlockState, ErrorKind, HeapLayout, Op, Replayer, Scenario, Stats, Step,
    StepResult, Trail, ViolationClass,
};
use support::plywood_workload as ply;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn load(file: &str) -> Scenario {
    Scenario::load(&scenarios_dir().join(file)).unwrap_or_else(|e| panic!("{e}"))
}

/// One allocator's replay of a scenario, with what each operation did and the heap after it.
struct Run {
    steps: Vec<Step>,
    /// `layouts[i]`: the heap after operation i.
    layouts: Vec<HeapLayout>,
    replay: Replayer,
}

impl Run {
    fn placed(&self, i: usize) -> Addr {
        match &self.steps[i].result {
            StepResult::Placed(p) => *p,
            other => panic!("operation {i}: expected a placement, got {other:?}"),
        }
    }

    fn failed(&self, i: usize) -> (ErrorKind, String) {
        match &self.steps[i].result {
            StepResult::Failed(e) => (e.kind, e.message.clone()),
            other => panic!("operation {i}: expected a failure, got {other:?}"),
        }
    }

    fn succeeded(&self, i: usize) -> bool {
        matches!(
            self.steps[i].result,
            StepResult::Placed(_) | StepResult::Done
        )
    }

    fn stats(&self, i: usize) -> Stats {
        self.layouts[i].stats
    }

    /// Free-list nodes of the lists whose name starts with `prefix` (`"order 7 "`, `"bin 3 "`).
    fn nodes(&self, i: usize, prefix: &str) -> Vec<Addr> {
        self.layouts[i]
            .free_lists
            .iter()
            .filter(|l| l.name.starts_with(prefix))
            .flat_map(|l| l.nodes.iter().copied())
            .collect()
    }
}

/// Replays `scenario` on its allocator of `kind`, keeping every layout (the teaching scenarios
/// are short) or only the stats (`layouts: false`, for long traces).
fn run(scenario: &Scenario, kind: AllocatorKind) -> Run {
    let spec = scenario
        .allocator_specs()
        .into_iter()
        .find(|s| s.kind == kind)
        .unwrap_or_else(|| panic!("{} does not run {kind}", scenario.name));
    let mut replay = Replayer::new(spec.kind.build(&spec.config).unwrap());
    let mut steps = Vec::new();
    let mut layouts = Vec::new();
    for op in &scenario.ops {
        steps.push(replay.apply(op, &mut Trail::on()));
        layouts.push(replay.heap().inspect());
        let findings = replay.heap().validate();
        assert!(findings.is_empty(), "{kind}: {op}: {findings:?}");
    }
    Run {
        steps,
        layouts,
        replay,
    }
}

fn kinds(scenario: &Scenario) -> Vec<AllocatorKind> {
    scenario.allocator_specs().iter().map(|s| s.kind).collect()
}

/// Every `.ron` under `scenarios/` (recursively; `scenarios/guests/` belongs to the emulator
/// scenarios and is tested with them) loads, trace files included, and has operations.
#[test]
fn every_scenario_file_loads() {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "guests") && dir == scenarios_dir() {
                    continue;
                }
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "ron") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&scenarios_dir(), &mut found);
    assert!(found.len() >= 9, "{found:?}");
    for path in found {
        let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!scenario.ops.is_empty(), "{}", path.display());
        assert!(
            scenario.description.contains("Step"),
            "{}: a teaching scenario says which steps to look at",
            path.display()
        );
    }
}

#[test]
fn substrate_worst_case_strands_a_free_block() {
    let s = load("substrate-worst-case.ron");
    assert_eq!(
        kinds(&s),
        [AllocatorKind::FreeingBump, AllocatorKind::Dlmalloc]
    );
    let fb = run(&s, AllocatorKind::FreeingBump);
    // Step 1: one 32 KiB block (plus its header) fills the heap above heap_base exactly.
    assert_eq!(fb.placed(0), 0x7ff8 + 8);
    assert_eq!(fb.stats(0).held, 0x1_0000 - 0x7ff8);
    // Steps 2 to 4: freed, reused whole, freed again; nothing is live and one block is free.
    assert_eq!(fb.placed(2), fb.placed(0));
    assert_eq!(fb.stats(3).requested_live, 0);
    assert_eq!(fb.nodes(3, "order 12 "), [0x7ff8]);
    // Step 5: a small request fails with sc-allocator's error; steps 6 and 7 find it poisoned.
    assert_eq!(
        fb.failed(4),
        (
            ErrorKind::OutOfMemory,
            "Allocator ran out of space".to_owned()
        )
    );
    for i in [5, 6] {
        let (kind, message) = fb.failed(i);
        assert_eq!(kind, ErrorKind::Poisoned);
        assert!(message.contains("poisoned"), "{message}");
    }
    // dlmalloc, with the same 64 KiB of system memory, serves everything, step 5 from #1's space.
    let dl = run(&s, AllocatorKind::Dlmalloc);
    assert!((0..s.ops.len()).all(|i| dl.succeeded(i)));
    assert_eq!(dl.placed(4), dl.placed(0));
}

#[test]
fn power_of_two_waste_doubles_what_freeing_bump_holds() {
    let s = load("power-of-two-waste.ron");
    let sizes: Vec<u64> = s.ops.iter().filter_map(Op::request_size).collect();
    let requested: u64 = sizes.iter().sum();
    // sc-allocator: order size (a power of two, at least 8) plus the 8-byte header.
    let fb_held: u64 = sizes
        .iter()
        .map(|&n| n.max(8).next_power_of_two() + 8)
        .sum();
    let last = s.ops.len() - 1;

    let fb = run(&s, AllocatorKind::FreeingBump);
    assert_eq!(fb.stats(last).requested_live, requested);
    assert_eq!(fb.stats(last).held, fb_held);
    // Steps 1 and 2: 32 B costs 40, one byte more costs 72.
    assert_eq!(fb.stats(0).held, 40);
    assert_eq!(fb.stats(1).held - fb.stats(0).held, 72);
    // Every size but the first is 2^k + 1, so the blocks alone are at least 2^(k+1) / (2^k + 1)
    // of the request, summed: the bound the description's "twice" rests on.
    let above: Vec<u64> = sizes
        .iter()
        .copied()
        .filter(|n| !n.is_power_of_two())
        .collect();
    let bound =
        above.iter().map(|n| (n - 1) * 2).sum::<u64>() as f64 / above.iter().sum::<u64>() as f64;
    let ratio = fb_held as f64 / requested as f64;
    assert!(
        ratio >= bound && ratio > 1.9,
        "ratio {ratio}, bound {bound}"
    );

    for kind in [AllocatorKind::SegregatedFit, AllocatorKind::Dlmalloc] {
        let run = run(&s, kind);
        let held = run.stats(last).held;
        assert_eq!(run.stats(last).requested_live, requested);
        assert!(
            held < fb_held && (held as f64) < requested as f64 * 1.1,
            "{kind} holds {held} for {requested}"
        );
    }
}

#[test]
fn coalescing_merges_in_dlmalloc_and_not_in_freeing_bump() {
    let s = load("coalescing.ron");
    let dl = run(&s, AllocatorKind::Dlmalloc);
    let (a, b, c) = (dl.placed(0), dl.placed(1), dl.placed(2));
    // Step 6: #1 and #2 are one free chunk; step 7: #1, #2 and #3 are.
    let merged = |i: usize| dl.layouts[i].block_at(a).unwrap().clone();
    assert_eq!(merged(5).state, BlockState::Free);
    assert!(merged(5).range.contains(&b) && !merged(5).range.contains(&c));
    assert!(merged(6).range.contains(&c));
    assert_eq!(merged(6).size(), 3 * (c - b));
    // Steps 5 to 7: one free chunk on the lists each time, in ever bigger tree bins.
    for (i, bin) in [(4, "tree bin 3 "), (5, "tree bin 5 "), (6, "tree bin 6 ")] {
        let total: usize = dl.layouts[i].free_lists.iter().map(|l| l.nodes.len()).sum();
        assert_eq!(
            (total, dl.nodes(i, bin).len()),
            (1, 1),
            "after operation {i}"
        );
    }
    // Step 8: 3000 bytes come from the merged chunk, at #1's address.
    assert_eq!(dl.placed(7), a);

    let fb = run(&s, AllocatorKind::FreeingBump);
    let (a, b, c, d) = (fb.placed(0), fb.placed(1), fb.placed(2), fb.placed(3));
    // Step 7: three separate 1 KiB blocks on the order-7 list, newest first.
    assert_eq!(fb.nodes(6, "order 7 "), [c - 8, b - 8, a - 8]);
    for p in [a, b, c] {
        let block = fb.layouts[6].block_at(p).unwrap();
        assert_eq!((block.state, block.size()), (BlockState::Free, 1024 + 8));
    }
    // Step 8: order 9 is empty, so the bumper moves by 4 KiB + header past everything.
    assert!(fb.placed(7) > d);
    assert_eq!(fb.stats(7).footprint - fb.stats(6).footprint, 4096 + 8);
    assert_eq!(fb.nodes(7, "order 7 ").len(), 3);
}

#[test]
fn unstack_merges_forwards_only() {
    let s = load("unstack-forward-coalescing.ron");
    assert_eq!(kinds(&s), [AllocatorKind::SegregatedFit]);
    let sf = run(&s, AllocatorKind::SegregatedFit);
    let chunk = |p: Addr| p - 40;
    let (a, b, c, d) = (sf.placed(0), sf.placed(1), sf.placed(2), sf.placed(3));
    assert_eq!((b - a, c - b, d - c), (144, 144, 144));
    // Step 6: A and C each alone on bin 3, C first.
    assert_eq!(sf.nodes(5, "bin 3 "), [chunk(c), chunk(a)]);
    // Step 7: B absorbed C (288 bytes, bin 4); A, free and just before B, was not merged.
    let layout = &sf.layouts[6];
    let merged = layout.block_at(b).unwrap();
    assert_eq!(merged.state, BlockState::Free);
    assert_eq!(merged.range, chunk(b)..chunk(d));
    let stranded = layout.block_at(a).unwrap();
    assert_eq!(stranded.state, BlockState::Free);
    assert_eq!(stranded.range, chunk(a)..chunk(b));
    assert_eq!(sf.nodes(6, "bin 3 "), [chunk(a)]);
    assert_eq!(sf.nodes(6, "bin 4 "), [chunk(b)]);
    // Step 8: 432 bytes (A + B + C) are free and contiguous but in two chunks: placed after D.
    assert!(sf.placed(7) > d);
    // Step 9: the merged B + C fits 248 + 40 exactly.
    assert_eq!(sf.placed(8), b);
    assert_eq!(sf.nodes(8, "bin 3 "), [chunk(a)]);
}

#[test]
fn checked_bump_reports_overflow_use_after_free_and_double_free() {
    let s = load("checked-bump-catches-bugs.ron");
    let cb = run(&s, AllocatorKind::CheckedBump);
    let classes: Vec<Vec<ViolationClass>> = cb
        .steps
        .iter()
        .map(|st| st.violations.iter().map(|v| v.class).collect())
        .collect();
    use ViolationClass::*;
    let expected: [&[ViolationClass]; 9] = [
        &[],
        &[],
        &[HeapBufferOverflow],
        &[HeapBufferOverflow],
        &[],
        &[],
        &[UseAfterFree],
        &[UseAfterFree],
        &[DoubleFree],
    ];
    assert_eq!(classes, expected.map(<[_]>::to_vec));
    assert_eq!(cb.failed(8).0, ErrorKind::DoubleFree);
    // The overflow of step 4 is reported at the first byte past the block.
    let (p1, p2) = (cb.placed(0), cb.placed(5));
    assert_eq!(cb.steps[3].violations[0].bad[0].range, p1 + 16..p1 + 20);
    // Freed memory is not reused: #2 starts after #1 and its 16 guard bytes.
    assert_eq!(p2, p1 + 32);

    let bump = run(&s, AllocatorKind::Bump);
    assert!(bump.steps.iter().all(|st| st.violations.is_empty()));
    assert_eq!(bump.placed(5), bump.placed(0) + 16);
}

#[test]
fn nutmeg_places_the_string_and_function_after_the_bootstrap_datakeys() {
    let s = load("nutmeg-hello-world.ron");
    let nm = run(&s, AllocatorKind::NutmegPool);
    let base: Addr = 0x3000_0000;
    let cell = |i: u64| base + 8 * i;
    let mem = nm.replay.heap().memory();
    let word = |i: u64| mem.read_u64(cell(i)).unwrap();
    // Before step 1: three 5-cell datakeys; the DatakeyDatakey points to itself.
    assert_eq!(word(0), cell(0) | 1);
    assert_eq!(word(5), cell(0) | 1);
    assert_eq!(word(10), cell(0) | 1);
    // Step 1: length 14 in cell 15, datakey (StringDatakey) in 16, bytes in 17 and 18.
    let string = nm.placed(0);
    assert_eq!(string, cell(16));
    assert_eq!(word(15), 14 << 2);
    assert_eq!(word(16), cell(5) | 1);
    assert_eq!(mem.slice(cell(17), 14).unwrap(), b"Hello, world!\0");
    // Step 2: N, L in 19 and 20, datakey (FunctionDatakey) in 21, counts in 22, 8 words to 30.
    let function = nm.placed(1);
    assert_eq!(function, cell(21));
    assert_eq!((word(19), word(20), word(21)), (8 << 2, 0, cell(10) | 1));
    assert_eq!(
        word(22),
        1 << 16 | 1 << 32,
        "nparams 0, nextras 1, nlocals 1"
    );
    // The fourth word is the string's tagged object pointer, as the description says.
    assert_eq!(word(23 + 3), string | 1);
    // Step 3: the free is ignored; step 4: a BinarrayDatakey at 31, the block's bytes from 38.
    assert!(nm.succeeded(2));
    assert_eq!(
        nm.layouts[2].block_at(string).unwrap().state,
        BlockState::Freed
    );
    assert_eq!(nm.placed(3), cell(38));
    assert_eq!(word(37), cell(31) | 1);
}

#[test]
fn dlmalloc_reallocs_in_place_when_the_next_chunk_allows() {
    let s = load("realloc-in-place.ron");
    let dl = run(&s, AllocatorKind::Dlmalloc);
    assert_eq!(
        dl.placed(2),
        dl.placed(0),
        "step 3 grows into the top chunk"
    );
    assert_ne!(dl.placed(4), dl.placed(2), "step 5: #2 is in the way");
    assert_eq!(dl.placed(5), dl.placed(4), "step 6 shrinks in place");
    for kind in [AllocatorKind::FreeingBump, AllocatorKind::SegregatedFit] {
        let r = run(&s, kind);
        assert_ne!(r.placed(2), r.placed(0), "{kind} moves at step 3");
    }
    let fb = run(&s, AllocatorKind::FreeingBump);
    assert_eq!(
        fb.placed(5),
        fb.placed(0),
        "step 6 reuses the order-4 block of step 3"
    );
    // Whatever moved, the bytes written at step 2 came along.
    for kind in kinds(&s) {
        let r = run(&s, kind);
        let p = r.placed(5);
        assert_eq!(
            r.replay.heap().memory().slice(p, 4).unwrap(),
            [1, 2, 3, 4],
            "{kind}"
        );
    }
}

/// The committed trace is exactly what the generator makes; regenerate it with
/// `cargo test -p heapscope-core --test teaching_scenarios -- --ignored regenerate`.
#[test]
fn plywood_trace_is_the_generators_output() {
    let work = ply::generate();
    let path = scenarios_dir().join("traces/plywood-fragmentation.rep");
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == ply::to_rep(&work),
        "{} differs from the generator's output",
        path.display()
    );
    // The description's table gives the step at which each target is reached.
    let s = load("plywood-fragmentation.ron");
    let row: String = work.phase_ends.iter().map(|n| format!(" {n} |")).collect();
    assert!(
        s.description.contains(&format!("| step |{row}")),
        "the description's step row should be |{row}"
    );
    assert_eq!(s.ops.len(), work.ops.len());
    assert_eq!(work.phase_ends.len(), ply::TARGET_KB.len());
    // Sizes come from Plywood's three ranges, and each phase stops as soon as the live set
    // crosses its target: at or above it when growing, at or below it when shrinking.
    let mut sizes = std::collections::HashMap::new();
    let mut live = Vec::with_capacity(work.ops.len());
    let mut now = 0u64;
    for op in &work.ops {
        match *op {
            ply::WorkOp::Alloc { id, bytes } => {
                assert!(
                    [10..510, 5_000..20_000, 100_000..400_000]
                        .iter()
                        .any(|r| r.contains(&bytes)),
                    "{bytes}"
                );
                sizes.insert(id, u64::from(bytes));
                now += u64::from(bytes);
            }
            ply::WorkOp::Free { id } => now -= sizes[&id],
        }
        live.push(now);
    }
    let mut start = 0;
    for (&end, kb) in work.phase_ends.iter().zip(ply::TARGET_KB) {
        let target = u64::from(kb) * 1000;
        let before = if start == 0 { 0 } else { live[start - 1] };
        let reached = |n: u64| {
            if before < target {
                n >= target
            } else {
                n <= target
            }
        };
        assert!(
            reached(live[end - 1]),
            "target {kb} KB after {end} operations"
        );
        // Growing and shrinking go three operations at a time; the target is checked after each.
        assert!(
            (start..end - 1)
                .skip(2)
                .step_by(3)
                .all(|i| !reached(live[i]))
                || end - start < 3,
            "target {kb} KB reached before operation {end}"
        );
        start = end;
    }
    assert_eq!(live.last(), Some(&0));
}

#[test]
#[ignore = "rewrites scenarios/traces/plywood-fragmentation.rep"]
fn regenerate_plywood_trace() {
    let work = ply::generate();
    let path = scenarios_dir().join("traces/plywood-fragmentation.rep");
    std::fs::write(&path, ply::to_rep(&work)).unwrap();
    println!(
        "{}: {} operations, peak live {} B, targets reached after {:?} operations",
        path.display(),
        work.ops.len(),
        work.peak_live,
        work.phase_ends
    );
}

#[test]
fn plywood_workload_fragments_the_allocators_that_never_give_back() {
    let s = load("plywood-fragmentation.ron");
    let work = ply::generate();
    let at = |n: usize| n - 1; // after n operations
    let (peak_target, low_target) = (at(work.phase_ends[8]), at(work.phase_ends[9]));
    let mut peaks = Vec::new();
    for kind in kinds(&s) {
        let spec = s
            .allocator_specs()
            .into_iter()
            .find(|x| x.kind == kind)
            .unwrap();
        let mut replay = Replayer::new(kind.build(&spec.config).unwrap());
        let mut stats = Vec::with_capacity(s.ops.len());
        for op in &s.ops {
            let step = replay.apply(op, &mut Trail::off());
            assert!(
                matches!(step.result, StepResult::Placed(_) | StepResult::Done),
                "{kind}: {op}: {:?}",
                step.result
            );
            stats.push(replay.heap().stats());
        }
        assert!(replay.heap().validate().is_empty(), "{kind}");
        assert_eq!(stats[at(work.ops.len())].requested_live, 0);
        let peak = stats.last().unwrap().peak_footprint;
        let (at_peak, at_low) = (stats[peak_target].footprint, stats[low_target].footprint);
        match kind {
            // Unmaps its large blocks when they are freed, and trims the top.
            AllocatorKind::Dlmalloc => {
                assert_eq!(at_peak, peak);
                assert!(at_low * 10 < peak * 6, "{at_low} of {peak}");
            }
            // Never give memory back.
            AllocatorKind::FreeingBump | AllocatorKind::SegregatedFit => {
                assert_eq!(at_peak, peak, "{kind}");
                assert_eq!(at_low, peak, "{kind}");
            }
            // Never reuses anything: grows to the sum of every allocation.
            AllocatorKind::Bump => assert!(at_low > at_peak, "{kind}"),
            _ => unreachable!("{kind}"),
        }
        if kind == AllocatorKind::FreeingBump {
            let st = stats[at(work.phase_ends[6])];
            assert!(st.held as f64 > st.requested_live as f64 * 1.4, "{st:?}");
        }
        peaks.push(peak);
    }
    assert_eq!(
        kinds(&s),
        [
            AllocatorKind::Dlmalloc,
            AllocatorKind::SegregatedFit,
            AllocatorKind::FreeingBump,
            AllocatorKind::Bump
        ]
    );
    assert!(peaks.windows(2).all(|w| w[0] < w[1]), "{peaks:?}");
}

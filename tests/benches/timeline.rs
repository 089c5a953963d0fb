//! Time-travel costs on one million operations, for every allocator variant.
//!
//! The trace is [`heapscope_tests::random_workload`] (about 55 % allocations of skewed sizes
//! up to 4 KiB, 45 % frees of random live blocks, so about 100,000 blocks are live at the end),
//! seed fixed. For each variant, in one run:
//! - `replay`: a fresh replay without recording (median of `HS_RUNS` runs, default 3);
//! - `record`: [`Timeline::record`] of the same trace (median of the same number of runs), and
//!   the ratio record / replay (target: at most 3);
//! - `bytes/op`: what the recording keeps beyond the trace and the current state, both as the
//!   timeline counts it and as the process's allocator saw it (target: at most 64);
//! - `seek`: the median and 90th percentile of `HS_SEEKS` (default 200) seeks to random steps,
//!   each from where the previous one left off (target: median at most 5 ms).
//! - `back`: after every tenth of those seeks, five steps back one operation at a time, as a
//!   learner takes them (median and 90th percentile).
//!
//! Run with `cargo bench -p heapscope-tests --bench timeline` (`HS_OPS=N` for a shorter trace,
//! `HS_ONLY=name` for one variant, `HS_LIVE=N` for [`heapscope_tests::steady_workload`]: a
//! program in its steady state holding about N blocks instead of a growing one).

// A benchmark may stop on a broken setup; the counting allocator needs `unsafe impl`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use heapscope_core::{AllocatorKind, HeapConfig, Op, RecordOptions, Replayer, Timeline, Trail};
use heapscope_tests::{SplitMix64, random_workload, steady_workload, workload_ops};

/// Counts the bytes the process holds, to check the timeline's own accounting.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SEED: u64 = 0x7173_e11e;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn percentile(xs: &[Duration], p: f64) -> Duration {
    let mut xs = xs.to_vec();
    xs.sort();
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

fn replay(kind: AllocatorKind, ops: &[Op]) -> Duration {
    let start = Instant::now();
    let mut replay = Replayer::new(kind.build(&HeapConfig::default()).unwrap());
    let mut off = Trail::off();
    for op in ops {
        black_box(replay.apply(op, &mut off));
    }
    let took = start.elapsed();
    black_box(replay);
    took
}

fn record(kind: AllocatorKind, ops: &[Op]) -> (Duration, Timeline) {
    let start = Instant::now();
    let timeline = Timeline::record(
        kind,
        HeapConfig::default(),
        ops,
        &RecordOptions::default(),
        &mut |_, _, _| true,
    )
    .unwrap();
    (start.elapsed(), timeline)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n = env("HS_OPS", if smoke { 5_000 } else { 1_000_000 });
    let runs = env("HS_RUNS", if smoke { 1 } else { 3 });
    let seeks = env("HS_SEEKS", if smoke { 20 } else { 200 });
    let only = std::env::var("HS_ONLY").ok();
    let live = std::env::var("HS_LIVE").ok().and_then(|v| v.parse().ok());
    let calls = match live {
        Some(cap) => steady_workload(SEED, n, cap),
        None => random_workload(SEED, n),
    };
    let ops = workload_ops(&calls);
    let shape = live.map_or("growing live set".to_owned(), |cap| {
        format!("steady at about {cap} live blocks")
    });
    println!("timeline on {n} operations, {shape} ({runs} runs, {seeks} seeks; medians)");
    println!(
        "{:<22} {:>10} {:>10} {:>6} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "allocator",
        "replay",
        "record",
        "ratio",
        "B/op",
        "B/op(os)",
        "ckpts",
        "seek p50",
        "seek p90",
        "back p50",
        "back p90"
    );
    for &kind in AllocatorKind::ALL {
        if only.as_deref().is_some_and(|o| o != kind.name()) {
            continue;
        }
        let replays: Vec<Duration> = (0..runs).map(|_| replay(kind, &ops)).collect();
        let mut records = Vec::new();
        let mut timeline = None;
        let mut counted = 0isize;
        for _ in 0..runs {
            // Free the previous recording first, so the count sees this one alone.
            drop(timeline.take());
            let before = HELD.load(Ordering::Relaxed);
            let (took, t) = record(kind, &ops);
            // Includes the current state, which stands at the start (an empty heap).
            counted = HELD.load(Ordering::Relaxed) - before;
            records.push(took);
            timeline = Some(t);
        }
        let mut timeline = timeline.unwrap();
        let mut rng = SplitMix64::new(SEED ^ 0x5eed);
        let mut times = Vec::with_capacity(seeks);
        // After every tenth seek, a learner's steps back: one operation at a time, five times.
        let mut backs = Vec::new();
        for s in 0..seeks {
            let target = rng.below(n as u64 + 1) as usize;
            let start = Instant::now();
            black_box(timeline.seek(&ops, target));
            times.push(start.elapsed());
            if s % 10 == 0 {
                for back in (target.saturating_sub(5)..target).rev() {
                    let start = Instant::now();
                    black_box(timeline.seek(&ops, back));
                    backs.push(start.elapsed());
                }
            }
        }
        let (replay, record) = (median(replays), median(records));
        println!(
            "{:<22} {:>8.0}ms {:>8.0}ms {:>6.2} {:>9.1} {:>9.1} {:>6} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms",
            kind.name(),
            replay.as_secs_f64() * 1e3,
            record.as_secs_f64() * 1e3,
            record.as_secs_f64() / replay.as_secs_f64(),
            timeline.recorded_bytes() as f64 / n as f64,
            counted as f64 / n as f64,
            timeline.checkpoint_count(),
            median(times.clone()).as_secs_f64() * 1e3,
            percentile(&times, 0.9).as_secs_f64() * 1e3,
            median(backs.clone()).as_secs_f64() * 1e3,
            percentile(&backs, 0.9).as_secs_f64() * 1e3,
        );
    }
}

//! The `freeing-bump` model against `sc-allocator` 39.0.0 on one million operations.
//!
//! One fixed-seed trace (about 55% allocations of 1..=4096 bytes, skewed small, and 45% frees of
//! random live blocks) is replayed from a fresh allocator through both, with the model's trail
//! off. The model should take at most 1.5 times what the original takes.
//!
//! Run with `cargo bench -p heapscope-tests --bench freeing_bump` (criterion), or with
//! `HS_INTERLEAVE=15` set for alternating replays compared by their fastest runs.

// A benchmark may stop on a broken setup.
#![allow(clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use heapscope_core::{Allocator, AllocatorKind, HeapConfig, Trail};
use heapscope_tests::SplitMix64;
use sc_allocator::FreeingBumpHeapAllocator;
use sp_wasm_interface::Pointer;

const OPS: usize = 1_000_000;
const SEED: u64 = 0x5eed_f8ee_1b0b;
const PAGE: usize = 65536;
/// Where the heap starts, as a runtime's data section would leave it.
const HEAP_BASE: u32 = 1 << 20;

/// One step of the trace.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Allocate this many bytes.
    Alloc(u32),
    /// Free the live block at this index of the live list (then swap-remove it).
    Free(u32),
}

fn trace() -> Vec<Op> {
    let mut rng = SplitMix64::new(SEED);
    let mut ops = Vec::with_capacity(OPS);
    let mut live = 0u64;
    for _ in 0..OPS {
        if live == 0 || rng.chance(55.0) {
            let size = match rng.below(100) {
                0..50 => rng.range(1, 64),
                50..80 => rng.range(65, 512),
                80..95 => rng.range(513, 2048),
                _ => rng.range(2049, 4096),
            };
            ops.push(Op::Alloc(size as u32));
            live += 1;
        } else {
            ops.push(Op::Free(rng.below(live) as u32));
            live -= 1;
        }
    }
    ops
}

/// A wasm linear memory for sc-allocator: a vector grown in pages, up to 4 GiB.
struct VecMemory(Vec<u8>);

impl sc_allocator::Memory for VecMemory {
    fn with_access_mut<R>(&mut self, run: impl FnOnce(&mut [u8]) -> R) -> R {
        run(&mut self.0)
    }

    fn with_access<R>(&self, run: impl FnOnce(&[u8]) -> R) -> R {
        run(&self.0)
    }

    fn grow(&mut self, additional: u32) -> Result<(), ()> {
        let pages = self.pages() as usize + additional as usize;
        self.0.resize(pages * PAGE, 0);
        Ok(())
    }

    fn pages(&self) -> u32 {
        (self.0.len() / PAGE) as u32
    }

    fn max_pages(&self) -> Option<u32> {
        None
    }
}

/// Replays the trace through sc-allocator; returns a checksum of the pointers.
fn run_sc(
    ops: &[Op],
    live: &mut Vec<u32>,
    mem: &mut VecMemory,
    heap: &mut FreeingBumpHeapAllocator,
) -> u64 {
    let mut sum = 0u64;
    for &op in ops {
        match op {
            Op::Alloc(size) => {
                let Ok(p) = heap.allocate(mem, size) else {
                    return u64::MAX;
                };
                let p = u32::from(p);
                sum = sum.wrapping_add(u64::from(p));
                live.push(p);
            }
            Op::Free(i) => {
                let p = live.swap_remove(i as usize);
                if heap.deallocate(mem, Pointer::new(p)).is_err() {
                    return u64::MAX;
                }
            }
        }
    }
    sum ^ u64::from(heap.stats().address_space_used)
}

/// Replays the trace through the model, as the app does (a boxed `dyn Allocator`, trail off).
fn run_model(ops: &[Op], live: &mut Vec<u32>, heap: &mut dyn Allocator) -> u64 {
    let mut trail = Trail::off();
    let mut sum = 0u64;
    for &op in ops {
        match op {
            Op::Alloc(size) => {
                let Ok(p) = heap.allocate(u64::from(size), 0, &mut trail) else {
                    return u64::MAX;
                };
                sum = sum.wrapping_add(p);
                live.push(p as u32);
            }
            Op::Free(i) => {
                let p = live.swap_remove(i as usize);
                if heap.free(u64::from(p), &mut trail).is_err() {
                    return u64::MAX;
                }
            }
        }
    }
    sum ^ heap.stats().footprint
}

/// A fresh sc-allocator over one page of memory, as the model starts.
fn sc() -> (VecMemory, FreeingBumpHeapAllocator) {
    (
        VecMemory(vec![0; PAGE]),
        FreeingBumpHeapAllocator::new(HEAP_BASE),
    )
}

fn model() -> Box<dyn Allocator> {
    let config = HeapConfig {
        base: Some(u64::from(HEAP_BASE)),
        ..HeapConfig::default()
    };
    match AllocatorKind::FreeingBump.build(&config) {
        Ok(heap) => heap,
        Err(e) => panic!("cannot build the model: {e}"),
    }
}

/// With `HS_INTERLEAVE=N` set, times N alternating replays of each instead of running
/// criterion, and prints the fastest of each and their ratio: on a machine shared with other
/// work the fastest runs are the ones least disturbed, and alternating exposes both to the
/// same disturbances.
fn interleaved(ops: &[Op]) -> bool {
    let Some(n) = std::env::var("HS_INTERLEAVE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
    else {
        return false;
    };
    let (mut best_sc, mut best_model) = (Duration::MAX, Duration::MAX);
    for _ in 0..n {
        let (mut mem, mut heap) = sc();
        let mut live = Vec::with_capacity(OPS);
        let start = Instant::now();
        black_box(run_sc(ops, &mut live, &mut mem, &mut heap));
        best_sc = best_sc.min(start.elapsed());
        drop((mem, heap, live));

        let mut heap = model();
        let mut live = Vec::with_capacity(OPS);
        let start = Instant::now();
        black_box(run_model(ops, &mut live, heap.as_mut()));
        best_model = best_model.min(start.elapsed());
    }
    println!(
        "{n} alternating replays: fastest sc-allocator {best_sc:?}, fastest model {best_model:?}, ratio {:.3}",
        best_model.as_secs_f64() / best_sc.as_secs_f64()
    );
    true
}

fn bench(c: &mut Criterion) {
    let ops = trace();
    // Both must do the same work, or the comparison means nothing.
    let (mut mem, mut heap) = sc();
    let expected = run_sc(&ops, &mut Vec::with_capacity(OPS), &mut mem, &mut heap);
    drop((mem, heap));
    assert_ne!(expected, u64::MAX, "sc-allocator failed on the trace");
    assert_eq!(
        run_model(&ops, &mut Vec::with_capacity(OPS), model().as_mut()),
        expected,
        "the model and sc-allocator disagree on the trace"
    );

    if interleaved(&ops) {
        return;
    }

    let mut group = c.benchmark_group("freeing_bump_1M_ops");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("sc-allocator", |b| {
        b.iter_batched_ref(
            || {
                let (mem, heap) = sc();
                (Vec::with_capacity(OPS), mem, heap)
            },
            |(live, mem, heap)| black_box(run_sc(black_box(&ops), live, mem, heap)),
            BatchSize::PerIteration,
        );
    });
    group.bench_function("model", |b| {
        b.iter_batched_ref(
            || (Vec::with_capacity(OPS), model()),
            |(live, heap)| black_box(run_model(black_box(&ops), live, heap.as_mut())),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

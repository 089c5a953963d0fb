//! Replays one 1,000,000-call random workload through every allocator model, from scratch,
//! with explanations off: the cost of the models themselves.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use heapscope_core::{AllocatorKind, HeapConfig};
use heapscope_tests::{drive, random_workload};

const CALLS: usize = 1_000_000;

fn models(c: &mut Criterion) {
    let calls = random_workload(0x5eed, CALLS);
    let mut group = c.benchmark_group("replay 1M calls");
    group.sample_size(10);
    for &kind in AllocatorKind::ALL {
        group.bench_function(kind.name(), |b| {
            b.iter(|| {
                let mut heap = kind.build(&HeapConfig::default()).unwrap();
                black_box(drive(&mut *heap, &calls))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, models);
criterion_main!(benches);

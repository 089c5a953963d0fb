//! Frame time of the real app, driven headlessly with egui_kittest, on a 1,000,000-operation
//! trace with about 100,000 live blocks in every allocator's heap.
//!
//! Each measured frame is one egui pass of the whole app (`Harness::step`: layout, every panel,
//! the shapes, and AccessKit, which the real app does not build) plus tessellation of its shapes
//! into meshes; only uploading to the GPU is left out. Three allocators are recorded (bump,
//! freeing-bump, dlmalloc): recording all seven takes minutes, mostly `segregated-fit`, whose
//! first-fit search walks its free list as the original does.
//!
//! `cargo bench -p heapscope --bench frame`; `HEAPSCOPE_BENCH_OPS` and `HEAPSCOPE_BENCH_LIVE`
//! shrink the trace for a quick run. The median is in
//! `target/criterion/frame/<name>/new/estimates.json`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is right

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use egui_kittest::Harness;
use heapscope::app::{HeapscopeApp, StartOptions};
use heapscope::command::Command;

#[path = "../tests/support/workload.rs"]
mod workload;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The app with the big trace loaded, standing in its middle.
fn loaded_app() -> Harness<'static, HeapscopeApp> {
    let ops = env_usize("HEAPSCOPE_BENCH_OPS", 1_000_000);
    let live = env_usize("HEAPSCOPE_BENCH_LIVE", 100_000);
    let dir = std::env::temp_dir().join(format!("heapscope-frame-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("churn.rep"), workload::churn_rep(ops, live)).unwrap();
    let scenario = dir.join("churn.ron");
    std::fs::write(
        &scenario,
        r#"Scenario(
            name: "churn",
            allocators: [(kind: "bump"), (kind: "freeing-bump"), (kind: "dlmalloc")],
            trace: "churn.rep",
        )"#,
    )
    .unwrap();
    let started = Instant::now();
    let mut harness = Harness::builder()
        .with_size([1440.0, 900.0])
        .build_eframe(move |cc| {
            HeapscopeApp::new(
                &cc.egui_ctx,
                None,
                StartOptions {
                    file: Some(scenario.clone()),
                    step: Some(ops / 2),
                    fresh_settings: true,
                    ..StartOptions::default()
                },
            )
        });
    while harness.state().is_loading() {
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.run_steps(4);
    let session = harness.state().session();
    assert!(
        harness.state().error().is_none(),
        "{:?}",
        harness.state().error()
    );
    assert_eq!(session.len(), ops);
    let live_blocks: Vec<u64> = session
        .lanes
        .iter()
        .map(|l| l.layout.stats.live_blocks)
        .collect();
    eprintln!(
        "loaded {ops} operations on {} allocators in {:.1} s; live blocks at step {}: {live_blocks:?}",
        session.lanes.len(),
        started.elapsed().as_secs_f64(),
        session.cursor
    );
    std::fs::remove_dir_all(&dir).ok();
    harness
}

/// One frame: the egui pass and tessellation.
fn frame(harness: &mut Harness<'static, HeapscopeApp>) {
    harness.step();
    let shapes = harness.output().shapes.clone();
    let ppp = harness.output().pixels_per_point;
    std::hint::black_box(harness.ctx.tessellate(shapes, ppp));
}

fn frames(c: &mut Criterion) {
    let mut harness = loaded_app();
    let mut group = c.benchmark_group("frame");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("idle", |b| b.iter(|| frame(&mut harness)));
    harness.state_mut().push_command(Command::ToggleCompare);
    harness.run_steps(3);
    group.bench_function("idle_compare", |b| b.iter(|| frame(&mut harness)));
    harness.state_mut().push_command(Command::ToggleCompare);
    harness.run_steps(3);
    // A frame that also moves the cursor one step forward, as playback does: every lane
    // replays that step and inspects and validates its 100,000-block heap.
    group.bench_function("step_forward", |b| {
        b.iter(|| {
            harness.state_mut().push_command(Command::StepBy(1));
            frame(&mut harness);
        });
    });
    // One step back: every lane restores its nearest checkpoint and replays forward from it.
    group.sample_size(10);
    group.bench_function("step_back", |b| {
        b.iter(|| {
            harness.state_mut().push_command(Command::StepBy(-1));
            frame(&mut harness);
        });
    });
    group.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);

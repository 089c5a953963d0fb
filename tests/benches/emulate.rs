//! Emulation speed: guest instructions per second on a compute loop, bare Unicorn (no hook at
//! all) against heapscope's machine (memory hooks on the heap range only, code hooks at the heap
//! functions, and one block hook that keeps the instruction budget and the clock), and checked
//! heap accesses per second, with and without the hooks.
//!
//! The guest is `scenarios/guests/compute.elf`: `spin(n)` is a loop of 7 instructions with one
//! stack load and one stack store per iteration and no heap access; `sweep_at(a, n)` reads and
//! writes a heap word per iteration (9 instructions, 2 heap accesses). Instruction counts are
//! measured once with a counting hook (not assumed). After criterion's own output, a summary
//! prints the median of several timed runs of each case and the ratios.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use heapscope_core::emulate::{self, Exit, Image, Options};
use heapscope_core::{AllocatorKind, HeapConfig};
use unicorn_engine::{Arch, Mode, Prot, RegisterX86, Unicorn};

const SENTINEL: u64 = 0x1000;
const STACK_TOP: u64 = 0x7fff_0000_0000;
/// Where the bare runs put the array `sweep_at` works on.
const BARE_HEAP: u64 = 0x1000_0000;

const SPIN_N: u64 = 2_000_000;
const SWEEP_N: u64 = 250_000;

fn image() -> Image {
    Image::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/guests/compute.elf"))
        .expect("compute.elf loads")
}

/// A bare Unicorn machine with the image, a stack and a heap page: no hook at all.
fn bare(image: &Image) -> Unicorn<'static, ()> {
    let mut uc = Unicorn::new(Arch::X86, Mode::MODE_64).unwrap();
    uc.mem_map(0x40_0000, 0x10_000, Prot::ALL).unwrap();
    for s in &image.segments {
        uc.mem_write(s.addr, &s.data).unwrap();
    }
    uc.mem_map(SENTINEL, 0x1000, Prot::ALL).unwrap();
    uc.mem_map(STACK_TOP - (1 << 20), 1 << 20, Prot::READ | Prot::WRITE)
        .unwrap();
    uc.mem_map(BARE_HEAP, 0x1000, Prot::READ | Prot::WRITE)
        .unwrap();
    uc
}

/// Calls `function(args)` on a bare machine; returns `rax`.
fn bare_call(uc: &mut Unicorn<'_, ()>, image: &Image, function: &str, args: &[u64]) -> u64 {
    let rsp = STACK_TOP - 0x1000 - 8;
    uc.mem_write(rsp, &SENTINEL.to_le_bytes()).unwrap();
    uc.reg_write(RegisterX86::RSP, rsp).unwrap();
    for (r, &v) in [RegisterX86::RDI, RegisterX86::RSI].iter().zip(args) {
        uc.reg_write(*r, v).unwrap();
    }
    uc.emu_start(image.symbols[function], SENTINEL, 0, 0)
        .unwrap();
    uc.reg_read(RegisterX86::RAX).unwrap()
}

/// Instructions `function(args)` executes, counted with a code hook on a bare machine.
fn count_instructions(image: &Image, function: &str, args: &[u64]) -> u64 {
    let mut uc = bare(image);
    let counter = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let c = counter.clone();
    uc.add_code_hook(1, 0, move |_, _, _| c.set(c.get() + 1))
        .unwrap();
    bare_call(&mut uc, image, function, args);
    counter.get()
}

fn heapscope_spin(image: &Image, n: u64) -> emulate::Run {
    let options = Options {
        entry: "spin".to_owned(),
        args: vec![n],
        max_insns: u64::MAX,
        timeout: Duration::from_secs(60),
        ..Options::default()
    };
    let run = emulate::run(
        image,
        AllocatorKind::CheckedBump,
        &HeapConfig::default(),
        &options,
    )
    .unwrap();
    assert!(matches!(run.exit, Exit::Returned { .. }), "{}", run.exit);
    run
}

fn heapscope_sweep(image: &Image, kind: AllocatorKind, n: u64) -> emulate::Run {
    let options = Options {
        entry: "sweep".to_owned(),
        args: vec![n],
        max_insns: u64::MAX,
        timeout: Duration::from_secs(60),
        max_ops: usize::MAX,
        ..Options::default()
    };
    let run = emulate::run(image, kind, &HeapConfig::default(), &options).unwrap();
    assert!(matches!(run.exit, Exit::Returned { .. }), "{}", run.exit);
    assert_eq!(run.accesses.len() as u64, 2 * n);
    run
}

fn benches(c: &mut Criterion) {
    let image = image();
    let spin_insns = count_instructions(&image, "spin", &[SPIN_N]);
    let sweep_insns = count_instructions(&image, "sweep_at", &[BARE_HEAP, SWEEP_N]);

    let mut group = c.benchmark_group("emulate_spin");
    group.sample_size(10);
    group.throughput(Throughput::Elements(spin_insns));
    group.bench_function("bare_unicorn", |b| {
        let mut uc = bare(&image);
        b.iter(|| black_box(bare_call(&mut uc, &image, "spin", &[SPIN_N])));
    });
    group.bench_function("heapscope_heap_hooks", |b| {
        b.iter(|| black_box(heapscope_spin(&image, SPIN_N).op_count()));
    });
    group.finish();

    let mut group = c.benchmark_group("emulate_sweep");
    group.sample_size(10);
    group.throughput(Throughput::Elements(2 * SWEEP_N));
    group.bench_function("bare_unicorn", |b| {
        let mut uc = bare(&image);
        b.iter(|| {
            black_box(bare_call(
                &mut uc,
                &image,
                "sweep_at",
                &[BARE_HEAP, SWEEP_N],
            ))
        });
    });
    for kind in [AllocatorKind::CheckedBump, AllocatorKind::Dlmalloc] {
        group.bench_function(format!("heapscope_{kind}"), |b| {
            b.iter(|| black_box(heapscope_sweep(&image, kind, SWEEP_N).op_count()));
        });
    }
    group.finish();
    summary(&image, spin_insns, sweep_insns);
}

fn median_secs(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Medians of 7 runs of each case, as rates, and the ratios.
fn summary(image: &Image, spin_insns: u64, sweep_insns: u64) {
    let runs = 7;
    let mut uc = bare(image);
    let bare_spin = median_secs(runs, || {
        bare_call(&mut uc, image, "spin", &[SPIN_N]);
    });
    let hooked_spin = median_secs(runs, || {
        heapscope_spin(image, SPIN_N);
    });
    let bare_sweep = median_secs(runs, || {
        bare_call(&mut uc, image, "sweep_at", &[BARE_HEAP, SWEEP_N]);
    });
    let checked_sweep = median_secs(runs, || {
        heapscope_sweep(image, AllocatorKind::CheckedBump, SWEEP_N);
    });
    let accesses = 2 * SWEEP_N;
    let m = 1e6;
    println!("\nemulation summary (median of {runs} runs each)");
    println!(
        "  compute loop, {spin_insns} instructions: bare Unicorn {:.1} M insns/s, heapscope with heap hooks {:.1} M insns/s (ratio {:.2})",
        spin_insns as f64 / bare_spin / m,
        spin_insns as f64 / hooked_spin / m,
        hooked_spin / bare_spin
    );
    println!(
        "  heap sweep, {sweep_insns} instructions, {accesses} heap accesses: bare Unicorn {:.1} M accesses/s, heapscope checked-bump {:.2} M checked accesses/s (ratio {:.1})",
        accesses as f64 / bare_sweep / m,
        accesses as f64 / checked_sweep / m,
        checked_sweep / bare_sweep
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}

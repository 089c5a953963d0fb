//! Emulation runs on several threads at once give exactly what the same runs give one after
//! another, while yet another thread keeps setting up Unicorn engines (which is what once made
//! Unicorn's own timeout thread stop healthy runs early: see `machine.rs`).

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] functions

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use heapscope_core::emulate::{self, AccessRecord, Event, Exit, Image, Options};
use heapscope_core::{AllocatorKind, HeapConfig, Op};

/// What a run produced, all of it comparable.
#[derive(Debug, PartialEq)]
struct Outcome {
    exit: Exit,
    events: Vec<Event>,
    ops: Vec<Op>,
    accesses: Vec<AccessRecord>,
    heap: Vec<u8>,
}

struct Job {
    image: Arc<Image>,
    kind: AllocatorKind,
    options: Options,
}

impl Job {
    fn run(&self) -> Outcome {
        let run = emulate::run(
            &self.image,
            self.kind,
            &HeapConfig::default(),
            &self.options,
        )
        .unwrap();
        let memory = run.heap.memory();
        let heap = memory
            .slice(memory.base(), memory.end() - memory.base())
            .unwrap()
            .to_vec();
        Outcome {
            exit: run.exit.clone(),
            events: run.events.clone(),
            ops: run.ops(),
            accesses: run.accesses.clone(),
            heap,
        }
    }
}

fn jobs() -> Vec<Job> {
    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/guests");
    let load = |name: &str| Arc::new(Image::load(&guests.join(format!("{name}.elf"))).unwrap());
    let mut jobs = Vec::new();
    for name in [
        "strdup_overflow",
        "header_smash",
        "calloc_realloc",
        "use_after_free",
    ] {
        let image = load(name);
        for kind in [
            AllocatorKind::CheckedBump,
            AllocatorKind::Dlmalloc,
            AllocatorKind::FreeingBump,
        ] {
            jobs.push(Job {
                image: image.clone(),
                kind,
                options: Options {
                    max_insns: 1_000_000,
                    ..Options::default()
                },
            });
        }
    }
    // Long enough runs (a few million instructions) that engines are set up while they run,
    // one ending by returning and one by its budget.
    let compute = load("compute");
    for (entry, max_insns) in [("spin", u64::MAX), ("sweep", 2_000_000)] {
        jobs.push(Job {
            image: compute.clone(),
            kind: AllocatorKind::CheckedBump,
            options: Options {
                entry: entry.to_owned(),
                args: vec![300_000],
                max_insns,
                ..Options::default()
            },
        });
    }
    jobs
}

#[test]
fn parallel_runs_give_what_sequential_runs_give() {
    let jobs = Arc::new(jobs());
    let expected: Arc<Vec<Outcome>> = Arc::new(jobs.iter().map(Job::run).collect());
    assert!(matches!(
        expected[expected.len() - 2].exit,
        Exit::Returned { .. }
    ));
    assert_eq!(
        expected[expected.len() - 1].exit,
        Exit::BudgetExhausted {
            max_insns: 2_000_000
        }
    );
    let done = Arc::new(AtomicBool::new(false));
    let setup = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut engines = 0u32;
            while !done.load(Ordering::Relaxed) {
                let mut uc = unicorn_engine::Unicorn::new(
                    unicorn_engine::Arch::X86,
                    unicorn_engine::Mode::MODE_64,
                )
                .unwrap();
                // The first mapping sets the engine up.
                uc.mem_map(0x1000, 0x1000, unicorn_engine::Prot::ALL)
                    .unwrap();
                engines += 1;
            }
            engines
        })
    };
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (jobs, expected) = (jobs.clone(), expected.clone());
            std::thread::spawn(move || {
                for round in 0..2 {
                    // Each thread walks the jobs from a different place.
                    for k in 0..jobs.len() {
                        let i = (k + t * 5 + round) % jobs.len();
                        let got = jobs[i].run();
                        assert!(
                            got == expected[i],
                            "job {i} on thread {t}: ended with {} instead of {}",
                            got.exit,
                            expected[i].exit
                        );
                    }
                }
            })
        })
        .collect();
    let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
    done.store(true, Ordering::Relaxed);
    let engines = setup.join().unwrap();
    assert!(engines > 0);
    for r in results {
        if let Err(e) = r {
            std::panic::resume_unwind(e);
        }
    }
}

//! The guest programs in `scenarios/guests/` under every allocator: each runs to its expected
//! outcome, the checked allocator pins each violation to the instruction that caused it, the
//! others report the corruption their originals would find, and every run's trace replays to
//! the same heap.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};

use heapscope_core::emulate::report::ReportKind;
use heapscope_core::emulate::{self, Event, Exit, HeapFunction, Image, Options, Run};
use heapscope_core::{
    Access, AllocatorKind, BlockState, ErrorKind, HeapConfig, Replayer, StepResult, Trail,
    ViolationClass,
};

fn guests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/guests")
}

fn image(name: &str) -> Image {
    Image::load(&guests().join(format!("{name}.elf"))).unwrap()
}

fn options() -> Options {
    Options {
        max_insns: 1_000_000,
        ..Options::default()
    }
}

fn run(name: &str, kind: AllocatorKind) -> Run {
    emulate::run(&image(name), kind, &HeapConfig::default(), &options()).unwrap()
}

/// The address range of function `name` (up to the next symbol).
fn function_range(image: &Image, name: &str) -> std::ops::Range<u64> {
    let start = image.symbols[name];
    let end = image
        .symbols
        .values()
        .copied()
        .filter(|&a| a > start)
        .min()
        .unwrap_or(u64::MAX);
    start..end
}

const GUESTS: [&str; 9] = [
    "linked_list",
    "aligned",
    "strdup_overflow",
    "read_past_end",
    "use_after_free",
    "double_free",
    "header_smash",
    "calloc_realloc",
    "forever",
];

#[test]
fn correct_programs_return_their_value_with_no_finding_under_every_allocator() {
    for (name, value) in [("linked_list", 136), ("calloc_realloc", 784)] {
        for &kind in AllocatorKind::ALL {
            let run = run(name, kind);
            assert_eq!(run.exit, Exit::Returned { value }, "{name} on {kind}");
            assert_eq!(run.violations().count(), 0, "{name} on {kind}");
            assert_eq!(run.warnings().count(), 0, "{name} on {kind}");
            assert_eq!(run.corruption().count(), 0, "{name} on {kind}");
            assert!(
                run.calls().all(|c| c.result.is_ok()),
                "{name} on {kind}: a call failed"
            );
        }
    }
    let list = run("linked_list", AllocatorKind::Dlmalloc);
    let mallocs = list
        .calls()
        .filter(|c| c.function == HeapFunction::Malloc)
        .count();
    let frees = list
        .calls()
        .filter(|c| c.function == HeapFunction::Free)
        .count();
    assert_eq!((mallocs, frees), (16, 16));
    assert_eq!(list.heap.stats().live_blocks, 0);
    let grown = run("calloc_realloc", AllocatorKind::SegregatedFit);
    let reallocs = grown
        .calls()
        .filter(|c| c.function == HeapFunction::Realloc)
        .count();
    assert_eq!(reallocs, 4, "4 -> 8 -> 16 -> 32 -> 64 elements");
}

#[test]
fn segments_keep_their_permissions() {
    let image = image("linked_list");
    let code = image.symbols["main"];
    let text = image
        .segments
        .iter()
        .find(|s| (s.addr..s.addr + s.mem_size).contains(&code))
        .unwrap();
    assert!(text.perms.read && text.perms.exec && !text.perms.write);
    assert!(
        image
            .segments
            .iter()
            .all(|s| !(s.perms.write && s.perms.exec)),
        "no segment is writable and executable"
    );
}

#[test]
fn a_read_past_the_end_is_a_warning_about_unallocated_space_where_nothing_follows() {
    for kind in [AllocatorKind::Bump, AllocatorKind::FreeingBump] {
        let run = run("read_past_end", kind);
        assert_eq!(run.exit, Exit::Returned { value: 36 }, "{kind}");
        let warnings: Vec<_> = run.warnings().collect();
        assert_eq!(warnings.len(), 1, "{kind}: {warnings:#?}");
        let w = warnings[0];
        assert_eq!(w.class, ViolationClass::WildAccess, "{kind}");
        assert_eq!(w.hit, Some(BlockState::Unused), "{kind}");
        assert_eq!((w.access, w.size), (Access::Read, 4), "{kind}");
        let block = w.block.unwrap();
        assert_eq!((w.addr, block.end - block.start), (block.end, 32), "{kind}");
        assert!(
            w.report.contains("into space never handed out")
                && w.report
                    .contains("0 bytes past the end of the 32-byte block #1"),
            "{kind}: {}",
            w.report
        );
    }
}

#[test]
fn aligned_allocations_are_found_by_symbol_and_served_aligned_or_refused() {
    let mut served = Vec::new();
    for &kind in AllocatorKind::ALL {
        let run = run("aligned", kind);
        let calls: Vec<_> = run.calls().collect();
        assert_eq!(calls[0].function, HeapFunction::PosixMemalign, "{kind}");
        assert_eq!(calls[0].args[1..], [64, 40], "{kind}");
        match calls[0].result {
            Ok(Some(p)) => {
                served.push(kind);
                assert_eq!(p % 64, 0, "{kind}");
                // The pointer went back through the out argument: the program used it.
                assert_eq!(calls[1].function, HeapFunction::AlignedAlloc, "{kind}");
                let Ok(Some(q)) = calls[1].result else {
                    panic!(
                        "{kind}: aligned_alloc(32, 96) failed: {:?}",
                        calls[1].result
                    );
                };
                assert_eq!(q % 32, 0, "{kind}");
                assert_eq!(run.exit, Exit::Returned { value: 9900 }, "{kind}");
                assert_eq!(run.reports(), [], "{kind}");
                assert!(run.accesses.iter().any(|a| a.addr == p), "{kind}");
                assert!(run.accesses.iter().any(|a| a.addr == q + 95), "{kind}");
            }
            // posix_memalign returns EINVAL and the program gives up.
            ref refused => {
                assert!(
                    matches!(refused, Err(e) if e.kind == ErrorKind::Unsupported),
                    "{kind}: {refused:?}"
                );
                assert_eq!(run.exit, Exit::Returned { value: u64::MAX }, "{kind}");
            }
        }
    }
    for kind in [
        AllocatorKind::Bump,
        AllocatorKind::CheckedBump,
        AllocatorKind::Dlmalloc,
    ] {
        assert!(served.contains(&kind), "{kind} aligns to 64");
    }
}

/// Checks one violation: class, access, the instruction inside `main`, and where it lies.
fn expect_violation(
    run: &Run,
    image: &Image,
    index: usize,
    class: ViolationClass,
    access: Option<Access>,
    place: &str,
) {
    let violations: Vec<_> = run.violations().collect();
    let v = violations
        .get(index)
        .unwrap_or_else(|| panic!("no violation #{index}: {violations:#?}"));
    assert_eq!(v.violation.class, class, "{}", v.report);
    assert_eq!(v.violation.access, access, "{}", v.report);
    let pc = v.site.pc.unwrap();
    assert!(
        function_range(image, "main").contains(&pc),
        "pc {pc:#x} is not in main: {}",
        v.report
    );
    assert!(v.site.instruction.is_some(), "{}", v.report);
    assert!(v.report.contains(place), "{}", v.report);
    // The step is the op that did it.
    assert!(v.step < run.op_count());
}

#[test]
fn checked_bump_pins_each_bug_to_its_instruction() {
    let kind = AllocatorKind::CheckedBump;

    let img = image("strdup_overflow");
    let r = run("strdup_overflow", kind);
    assert_eq!(r.exit, Exit::Returned { value: 9 });
    // The NUL written one past the end, then read back by the length loop.
    expect_violation(
        &r,
        &img,
        0,
        ViolationClass::HeapBufferOverflow,
        Some(Access::Write),
        "0 bytes past the end of the 9-byte block #1",
    );
    expect_violation(
        &r,
        &img,
        1,
        ViolationClass::HeapBufferOverflow,
        Some(Access::Read),
        "0 bytes past the end of the 9-byte block #1",
    );
    let first = r.violations().next().unwrap();
    let write = r.accesses.iter().find(|a| a.step == first.step).unwrap();
    assert_eq!(
        (write.size, write.value, write.pc),
        (1, 0, first.site.pc.unwrap())
    );

    let img = image("read_past_end");
    let r = run("read_past_end", kind);
    assert_eq!(r.violations().count(), 1);
    expect_violation(
        &r,
        &img,
        0,
        ViolationClass::HeapBufferOverflow,
        Some(Access::Read),
        "0 bytes past the end of the 32-byte block #1",
    );
    assert_eq!(r.violations().next().unwrap().violation.len, 4);

    let img = image("use_after_free");
    let r = run("use_after_free", kind);
    assert_eq!(r.exit, Exit::Returned { value: 42 });
    expect_violation(
        &r,
        &img,
        0,
        ViolationClass::UseAfterFree,
        Some(Access::Read),
        "0 bytes inside the 32-byte block #1",
    );
    expect_violation(
        &r,
        &img,
        1,
        ViolationClass::UseAfterFree,
        Some(Access::Write),
        "(freed at step",
    );

    let img = image("double_free");
    let r = run("double_free", kind);
    assert_eq!(r.violations().count(), 1);
    expect_violation(
        &r,
        &img,
        0,
        ViolationClass::DoubleFree,
        None,
        "allocated at step 0 (freed at step 2)",
    );
    let second_free = r.calls().nth(2).unwrap();
    assert_eq!(
        second_free.result.as_ref().unwrap_err().kind,
        ErrorKind::DoubleFree
    );

    let img = image("header_smash");
    let r = run("header_smash", kind);
    // 64 bytes into a 24-byte block: 16 guard bytes, then the next block's padding and payload.
    let classes: Vec<_> = r.violations().map(|v| v.violation.class).collect();
    assert!(!classes.is_empty());
    assert!(
        classes
            .iter()
            .all(|c| *c == ViolationClass::HeapBufferOverflow)
    );
    expect_violation(
        &r,
        &img,
        0,
        ViolationClass::HeapBufferOverflow,
        Some(Access::Write),
        "0 bytes past the end of the 24-byte block #1",
    );
}

#[test]
fn stop_on_first_ends_at_the_first_violation() {
    let r = emulate::run(
        &image("header_smash"),
        AllocatorKind::CheckedBump,
        &HeapConfig::default(),
        &Options {
            stop_on_first: true,
            ..options()
        },
    )
    .unwrap();
    assert_eq!(r.exit, Exit::StoppedOnViolation);
    assert_eq!(r.violations().count(), 1);
}

#[test]
fn a_smashed_header_corrupts_each_allocator_as_it_would_the_original() {
    // freeing-bump: free() reads a garbage order from the header and poisons itself.
    for kind in [
        AllocatorKind::FreeingBump,
        AllocatorKind::FreeingBumpTetcore,
    ] {
        let r = run("header_smash", kind);
        assert_eq!(r.exit, Exit::Returned { value: 0 }, "{kind}");
        let frees: Vec<_> = r
            .calls()
            .filter(|c| c.function == HeapFunction::Free)
            .collect();
        assert_eq!(
            frees[0].result.as_ref().unwrap_err().kind,
            ErrorKind::Corrupted
        );
        assert_eq!(
            frees[1].result.as_ref().unwrap_err().kind,
            ErrorKind::Poisoned
        );
        assert!(r.heap.inspect().poisoned.is_some(), "{kind}");
    }
    // segregated-fit: free() checks the magic and refuses.
    let r = run("header_smash", AllocatorKind::SegregatedFit);
    let refused = r.calls().find(|c| c.result.is_err()).unwrap();
    let error = refused.result.as_ref().unwrap_err();
    assert_eq!(error.kind, ErrorKind::Corrupted);
    assert!(error.message.contains("magic"), "{}", error.message);
    assert!(r.corruption().count() > 0);
    // dlmalloc: its invariants fail once the next chunk's head is overwritten, before the free.
    let r = run("header_smash", AllocatorKind::Dlmalloc);
    let first_free_step = r
        .calls()
        .find(|c| c.function == HeapFunction::Free)
        .unwrap()
        .step;
    let corruption_step = r
        .events
        .iter()
        .find_map(|e| match e {
            Event::Corruption { step, .. } => Some(*step),
            _ => None,
        })
        .unwrap();
    assert_eq!(corruption_step, first_free_step);
    assert!(!r.heap.validate().is_empty());
    // Listed as a corruption report at the position validate() failed at: before the free.
    let report = r
        .reports()
        .into_iter()
        .find(|r| r.kind == ReportKind::Corruption)
        .unwrap();
    assert_eq!(report.position, first_free_step);
    assert_eq!(report.class, "heap-corruption");
    assert!(
        report.text.starts_with("heap corrupted: "),
        "{}",
        report.text
    );
    // And the warnings name the header hit.
    for kind in [
        AllocatorKind::FreeingBump,
        AllocatorKind::SegregatedFit,
        AllocatorKind::Dlmalloc,
    ] {
        let r = run("header_smash", kind);
        let first = r.warnings().next().unwrap();
        assert_eq!(first.access, Access::Write, "{kind}");
        assert_eq!(first.class, ViolationClass::HeapBufferOverflow, "{kind}");
        assert!(
            r.warnings().any(|w| w.report.contains("the header of")),
            "{kind}: {}",
            first.report
        );
        assert_eq!(r.violations().count(), 0, "{kind}");
    }
}

#[test]
fn other_allocators_flag_use_after_free_and_double_free_as_their_originals_do() {
    for kind in [
        AllocatorKind::FreeingBump,
        AllocatorKind::SegregatedFit,
        AllocatorKind::Dlmalloc,
    ] {
        let r = run("use_after_free", kind);
        let w: Vec<_> = r.warnings().collect();
        assert_eq!(w.len(), 2, "{kind}: {w:#?}");
        assert!(w.iter().all(|w| w.class == ViolationClass::UseAfterFree));
        // dlmalloc gives a freed chunk next to top back to top.
        let expected = if kind == AllocatorKind::Dlmalloc {
            BlockState::Top
        } else {
            BlockState::Free
        };
        assert!(w.iter().all(|w| w.hit == Some(expected)), "{kind}: {w:#?}");
    }
    // freeing-bump and dlmalloc refuse the second free; segregated-fit takes it.
    for (kind, refused) in [
        (AllocatorKind::FreeingBump, true),
        (AllocatorKind::Dlmalloc, true),
        (AllocatorKind::SegregatedFit, false),
    ] {
        let r = run("double_free", kind);
        let second = r
            .calls()
            .filter(|c| c.function == HeapFunction::Free)
            .nth(1)
            .unwrap();
        assert_eq!(second.result.is_err(), refused, "{kind}");
    }
}

#[test]
fn the_budget_ends_a_program_that_runs_forever() {
    for &kind in AllocatorKind::ALL {
        let r = run("forever", kind);
        assert_eq!(
            r.exit,
            Exit::BudgetExhausted {
                max_insns: 1_000_000
            },
            "{kind}"
        );
        assert_eq!(r.calls().count(), 1, "the malloc before the loop is kept");
    }
}

#[test]
fn every_run_replays_to_the_same_heap() {
    for name in GUESTS {
        let img = image(name);
        for &kind in AllocatorKind::ALL {
            let run = emulate::run(&img, kind, &HeapConfig::default(), &options()).unwrap();
            let mut replayer = Replayer::new(kind.build(&run.config).unwrap());
            let mut trail = Trail::off();
            let mut violations = Vec::new();
            for (step, op) in run.ops().iter().enumerate() {
                let outcome = replayer.apply(op, &mut trail);
                violations.extend(outcome.violations.into_iter().map(|v| (step, v)));
                if let Some(call) = run.calls().find(|c| c.step == step) {
                    let placed = match &outcome.result {
                        StepResult::Placed(p) => Ok(Some(*p)),
                        StepResult::Failed(e) => Err(e.clone()),
                        _ => Ok(None),
                    };
                    assert_eq!(placed, call.result, "{name} on {kind}, step {step}");
                }
            }
            let heap = replayer.heap();
            assert_eq!(heap.memory(), run.heap.memory(), "{name} on {kind}");
            assert_eq!(heap.inspect(), run.heap.inspect(), "{name} on {kind}");
            let recorded: Vec<_> = run
                .violations()
                .map(|v| (v.step, v.violation.clone()))
                .collect();
            assert_eq!(violations, recorded, "{name} on {kind}");
        }
    }
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = std::env::temp_dir().join(format!("heapscope-emulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let elf = std::fs::read(guests().join("linked_list.elf")).unwrap();
    let load = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        Image::load(&path).unwrap_err().to_string()
    };
    let err = load("text.elf", b"Scenario(name: \"not a program\")");
    assert!(
        err.contains("text.elf") && err.contains("not an ELF"),
        "{err}"
    );
    let mut arm = elf.clone();
    arm[18..20].copy_from_slice(&183u16.to_le_bytes());
    let err = load("arm.elf", &arm);
    assert!(
        err.contains("AArch64") && err.contains("x86-64 programs only"),
        "{err}"
    );
    let mut class32 = elf.clone();
    class32[4] = 1;
    class32[18..20].copy_from_slice(&3u16.to_le_bytes());
    let err = load("i386.elf", &class32);
    assert!(err.contains("32-bit"), "{err}");
    let mut pie = elf.clone();
    pie[16..18].copy_from_slice(&3u16.to_le_bytes());
    let err = load("pie.elf", &pie);
    assert!(err.contains("-no-pie"), "{err}");
    let err = load("short.elf", &elf[..40]);
    assert!(err.contains("malformed"), "{err}");
    let missing = Image::load(&dir.join("missing.elf"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("missing.elf"), "{missing}");
    let err = emulate::run(
        &image("linked_list"),
        AllocatorKind::Bump,
        &HeapConfig::default(),
        &Options {
            entry: "start_here".to_owned(),
            ..Options::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no function `start_here`") && err.contains("main") && err.contains("malloc"),
        "{err}"
    );
    // A heap placed over the program cannot be mapped: said, not panicked.
    let err = emulate::run(
        &image("linked_list"),
        AllocatorKind::Bump,
        &HeapConfig {
            base: Some(0x40_0000),
            ..HeapConfig::default()
        },
        &options(),
    );
    match err {
        Err(e) => assert!(e.to_string().contains("overlap"), "{e}"),
        Ok(run) => assert!(
            matches!(&run.exit, Exit::Fault { message, .. } if message.contains("overlap")),
            "{}",
            run.exit
        ),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_guest_scenario_loads_and_runs_its_allocators() {
    let mut seen = 0;
    for entry in std::fs::read_dir(guests()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ron") {
            continue;
        }
        seen += 1;
        let scenario = heapscope_core::Scenario::load(&path).unwrap();
        let program = scenario.program.as_ref().unwrap();
        let image = program.image(&path).unwrap();
        let mut options = program.options();
        options.max_insns = options.max_insns.min(1_000_000);
        for spec in scenario.allocator_specs() {
            let run = emulate::run(&image, spec.kind, &spec.config, &options).unwrap();
            assert!(
                matches!(
                    run.exit,
                    Exit::Returned { .. } | Exit::BudgetExhausted { .. }
                ),
                "{} on {}: {}",
                path.display(),
                spec.kind,
                run.exit
            );
        }
    }
    assert_eq!(seen, 10, "9 guests and the raw-code demo");
    // A scenario names either a program or operations.
    let err = heapscope_core::Scenario::from_ron(
        "Scenario(name: \"x\", ops: [FreeNull], program: (elf: \"a.elf\"))",
        Path::new("both.ron"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not both"), "{err}");
    let err = heapscope_core::Scenario::from_ron(
        "Scenario(name: \"x\", program: (elf: \"a.elf\", code: \"c3\"))",
        Path::new("both.ron"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("either an `elf` file or `code`"), "{err}");
}

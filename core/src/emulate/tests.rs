//! Tiny programs in raw machine code: the machine's plumbing, fault handling and limits.

use std::time::Duration;

use super::report::ReportKind;
use super::*;
use crate::replay::Replayer;
use crate::{Allocator, Trail};

/// `p = malloc(16); p[0] = 42 (8 bytes); ((char *)p)[16] = 1; free(p); return p[0];`
/// calling the heap functions through the runtime stubs.
const DEMO: &str = "53 bf10000000 b810100000 ffd0 4889c3 48c7032a000000 c6431001 4889df \
                    b840100000 ffd0 488b03 5b c3";

fn run_code(code: &str, kind: AllocatorKind, options: &Options) -> Run {
    let bytes = parse_hex(code).unwrap();
    let image = Image::from_code(&bytes, 0, "test").unwrap();
    run(&image, kind, &HeapConfig::default(), options).unwrap()
}

fn replayed(run: &Run) -> Box<dyn Allocator> {
    let mut replayer = Replayer::new(run.kind.build(&run.config).unwrap());
    for op in &run.ops() {
        replayer.apply(op, &mut Trail::off());
    }
    replayer.into_heap()
}

#[test]
fn raw_code_runs_with_checked_heap_and_reports_at_the_instruction() {
    let run = run_code(DEMO, AllocatorKind::CheckedBump, &Options::default());
    assert_eq!(run.exit, Exit::Returned { value: 42 });
    let violations: Vec<_> = run.violations().collect();
    assert_eq!(violations.len(), 2, "{violations:#?}");
    let overflow = violations[0];
    assert_eq!(overflow.violation.class, ViolationClass::HeapBufferOverflow);
    assert_eq!(overflow.site.pc, Some(image::CODE_BASE + 0x17));
    assert_eq!(
        overflow.site.instruction.as_deref(),
        Some("mov byte ptr [rbx+10h],1")
    );
    assert!(
        overflow
            .report
            .contains("is 0 bytes past the end of the 16-byte block #1"),
        "{}",
        overflow.report
    );
    let uaf = violations[1];
    assert_eq!(uaf.violation.class, ViolationClass::UseAfterFree);
    assert_eq!(uaf.site.pc, Some(image::CODE_BASE + 0x25));
    assert!(uaf.report.contains("(freed at step"), "{}", uaf.report);
    // The calls record where they came from.
    let calls: Vec<_> = run.calls().collect();
    assert_eq!(calls[0].function, HeapFunction::Malloc);
    assert_eq!(calls[0].pc, Some(image::CODE_BASE + 0xb));
    assert_eq!(calls[1].function, HeapFunction::Free);
}

#[test]
fn guest_writes_reach_the_model_and_model_writes_reach_the_guest() {
    for &kind in AllocatorKind::ALL {
        let run = run_code(DEMO, kind, &Options::default());
        let Some(ptr) = run
            .calls()
            .next()
            .and_then(|c| c.result.clone().ok().flatten())
        else {
            panic!("{kind}: malloc failed");
        };
        // The guest's heap is the allocator's memory, at the allocator's addresses.
        let memory = run.heap.memory();
        assert!(
            (memory.base()..memory.end()).contains(&ptr),
            "{kind}: {ptr:#x} outside [{:#x}, {:#x})",
            memory.base(),
            memory.end()
        );
        // The guest stored 42 at p[0] and then read p[0] back after the free: what it read is
        // what the model's memory held after its free.
        let Exit::Returned { value } = run.exit else {
            panic!("{kind}: {}", run.exit);
        };
        let read_back = run
            .accesses
            .iter()
            .rfind(|a| a.access == Access::Read)
            .map(|a| a.value);
        assert_eq!(read_back, Some(value), "{kind}");
        let stored = run
            .accesses
            .iter()
            .find(|a| a.access == Access::Write && a.addr == ptr)
            .map(|a| a.value);
        assert_eq!(stored, Some(42), "{kind}");
        let heap = replayed(&run);
        assert_eq!(heap.memory(), run.heap.memory(), "{kind}");
    }
}

#[test]
fn non_checking_allocators_warn_about_the_overflow_and_the_use_after_free() {
    let run = run_code(DEMO, AllocatorKind::FreeingBump, &Options::default());
    assert_eq!(run.violations().count(), 0);
    let warnings: Vec<_> = run.warnings().collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert_eq!(warnings[0].access, Access::Write);
    assert_eq!(warnings[0].addr, warnings[0].block.as_ref().unwrap().end);
    assert_eq!(warnings[1].class, ViolationClass::UseAfterFree);
    assert_eq!(warnings[1].hit, Some(BlockState::Free));
}

#[test]
fn stop_on_first_ends_the_run_at_the_first_violation() {
    let options = Options {
        stop_on_first: true,
        ..Options::default()
    };
    let run = run_code(DEMO, AllocatorKind::CheckedBump, &options);
    assert_eq!(run.exit, Exit::StoppedOnViolation);
    assert_eq!(run.violations().count(), 1);
    // The write that violated is the last op: nothing after it was recorded.
    assert!(matches!(run.ops().last(), Some(Op::WriteAt { .. })));
}

#[test]
fn reports_list_each_finding_once_with_the_position_that_shows_it() {
    let run = run_code(DEMO, AllocatorKind::CheckedBump, &Options::default());
    let reports = run.reports();
    let kinds: Vec<_> = reports.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [ReportKind::Violation, ReportKind::Violation]);
    let overflow = &reports[0];
    assert_eq!(overflow.class, "heap-buffer-overflow");
    assert_eq!(overflow.access, Some(Access::Write));
    assert_eq!(overflow.size, Some(1));
    assert_eq!(overflow.position, overflow.step + 1);
    assert_eq!(overflow.site.pc, Some(image::CODE_BASE + 0x17));
    assert_eq!(overflow.block.map(|b| b.end), overflow.addr);
    assert_eq!(
        Some(&overflow.text),
        run.violations().next().map(|v| &v.report)
    );
    let warned = run_code(DEMO, AllocatorKind::FreeingBump, &Options::default()).reports();
    assert!(warned.iter().all(|r| r.kind == ReportKind::Warning));
    assert_eq!(warned.len(), 2);

    // p = malloc(16); free(p); free(p);
    let double_free = "bf10000000 b810100000 ffd0 4889c3 4889c7 b840100000 ffd0 \
                       4889df b840100000 ffd0 c3";
    let run = run_code(double_free, AllocatorKind::CheckedBump, &Options::default());
    assert!(
        run.calls().any(|c| c.result.is_err()),
        "the second free is refused"
    );
    let reports = run.reports();
    assert_eq!(
        reports.len(),
        1,
        "the refusal the violation explains is not listed"
    );
    assert_eq!(reports[0].kind, ReportKind::Violation);
    assert_eq!(reports[0].class, "double-free");
    let refusals: Vec<_> = AllocatorKind::ALL
        .iter()
        .flat_map(|&kind| run_code(double_free, kind, &Options::default()).reports())
        .filter(|r| r.kind == ReportKind::Refused)
        .collect();
    assert!(
        !refusals.is_empty(),
        "some allocator refuses the second free"
    );
    for r in &refusals {
        assert!(r.text.starts_with("refused: free(0x"), "{}", r.text);
        assert_eq!(r.position, r.step + 1);
    }
}

#[test]
fn faults_end_the_run_with_a_clear_message_and_keep_the_trace() {
    // malloc(16), then read from address 0.
    let null_read = "bf10000000 b810100000 ffd0 488b042500000000 c3";
    let run = run_code(null_read, AllocatorKind::Bump, &Options::default());
    let Exit::Fault { pc, message } = &run.exit else {
        panic!("{}", run.exit);
    };
    assert_eq!(*pc, Some(image::CODE_BASE + 0xc));
    assert!(message.contains("null pointer"), "{message}");
    assert_eq!(run.op_count(), 1, "the malloc is kept");
    assert!(matches!(
        run.events.last(),
        Some(Event::Exit { step: 1, .. })
    ));

    let ud2 = run_code("0f0b", AllocatorKind::Bump, &Options::default());
    assert!(
        matches!(ud2.exit, Exit::InvalidInstruction { pc } if pc == image::CODE_BASE)
            || matches!(&ud2.exit, Exit::Fault { message, .. } if message.contains("invalid")),
        "{}",
        ud2.exit
    );
    // The code is mapped read and execute only: a write to it faults.
    let self_modifying = run_code(
        "c605f9ffffff90 c3",
        AllocatorKind::Bump,
        &Options::default(),
    );
    assert!(
        matches!(&self_modifying.exit, Exit::Fault { pc: Some(pc), message }
            if *pc == image::CODE_BASE && message.contains("WRITE to read-only memory")),
        "{}",
        self_modifying.exit
    );
    let syscall = run_code("0f05 c3", AllocatorKind::Bump, &Options::default());
    assert!(
        matches!(&syscall.exit, Exit::Fault { message, .. } if message.contains("system call")),
        "{}",
        syscall.exit
    );
    let wild_jump = run_code(
        "48b80000000000100000 ffe0",
        AllocatorKind::Bump,
        &Options::default(),
    );
    assert!(
        matches!(&wild_jump.exit, Exit::Fault { message, .. } if message.contains("unmapped")),
        "{}",
        wild_jump.exit
    );
}

#[test]
fn the_budget_and_the_clock_end_a_loop_that_never_returns() {
    let spin = "ebfe";
    let budget = run_code(
        spin,
        AllocatorKind::Bump,
        &Options {
            max_insns: 10_000,
            ..Options::default()
        },
    );
    assert_eq!(budget.exit, Exit::BudgetExhausted { max_insns: 10_000 });
    let started = std::time::Instant::now();
    let clock = run_code(
        spin,
        AllocatorKind::Bump,
        &Options {
            max_insns: u64::MAX,
            timeout: Duration::from_millis(100),
            ..Options::default()
        },
    );
    assert_eq!(clock.exit, Exit::Timeout { ms: 100 });
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_budget_counts_every_instruction_of_a_loop() {
    // p = malloc(16); then forever: mov [rax],rcx; inc rcx; jmp back (three instructions, one
    // heap write each time round).
    let code = "bf10000000 b810100000 ffd0 488908 48ffc1 ebf8";
    let writes = |max_insns| {
        let run = run_code(
            code,
            AllocatorKind::CheckedBump,
            &Options {
                max_insns,
                ..Options::default()
            },
        );
        assert_eq!(run.exit, Exit::BudgetExhausted { max_insns });
        run.accesses.len() as u64
    };
    let counts: Vec<u64> = (3_000..3_009).map(writes).collect();
    // One more write for every three more instructions, wherever in the loop the budget ends.
    for (i, pair) in counts.windows(2).enumerate() {
        let step = pair[1] - pair[0];
        assert!(step <= 1, "{counts:?}");
        if i >= 2 {
            assert_eq!(pair[1] - counts[i - 2], 1, "{counts:?}");
        }
    }
    assert!((990..=1_000).contains(&counts[0]), "{counts:?}");
}

#[test]
fn entry_and_arguments_follow_system_v() {
    // return rdi * 4 + rsi
    let sum = run_code(
        "488d047f 4801f8 4801f0 c3",
        AllocatorKind::Bump,
        &Options {
            args: vec![5, 3],
            ..Options::default()
        },
    );
    // lea rax,[rdi+rdi*2]; add rax,rdi; add rax,rsi -> 4*5 + 3
    assert_eq!(sum.exit, Exit::Returned { value: 23 });
    // Raw code entered past its first bytes: ud2 (never run), then mov eax,42; ret.
    let bytes = parse_hex("0f0b b82a000000 c3").unwrap();
    let image = Image::from_code(&bytes, 2, "offset").unwrap();
    let offset = run(
        &image,
        AllocatorKind::Bump,
        &HeapConfig::default(),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(offset.exit, Exit::Returned { value: 42 });
    let too_many = parse_hex("c3").unwrap();
    let image = Image::from_code(&too_many, 0, "t").unwrap();
    let err = run(
        &image,
        AllocatorKind::Bump,
        &HeapConfig::default(),
        &Options {
            args: vec![0; 7],
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("at most 6"), "{err}");
}

#[test]
fn hex_code_errors_say_what_is_wrong() {
    assert_eq!(
        parse_hex("0x48, 89 f8\nc3").unwrap(),
        vec![0x48, 0x89, 0xf8, 0xc3]
    );
    assert!(parse_hex("489").unwrap_err().contains("odd"));
    assert!(parse_hex("zz").unwrap_err().contains("`zz`"));
    let err = Image::from_code(&[0xc3], 4, "demo")
        .unwrap_err()
        .to_string();
    assert!(err.contains("entry offset 4"), "{err}");
}

/// `posix_memalign(&out, 64, 40); free(out + 8); aligned_alloc(16, 64); free(out);
/// realloc(out, 80);` through the runtime stubs.
const ODD_CALLS: &str = "534883ec104889e7be40000000ba28000000b860100000ffd0488b1c24488d7b08\
                         b840100000ffd0be40000000bf10000000b850100000ffd04889dfb840100000ffd0\
                         4889dfbe50000000b830100000ffd04883c4105bc3";

#[test]
fn aligned_calls_bad_frees_and_reallocs_of_freed_blocks() {
    for &kind in AllocatorKind::ALL {
        let run = run_code(ODD_CALLS, kind, &Options::default());
        assert!(matches!(run.exit, Exit::Returned { .. }), "{kind}");
        let calls: Vec<_> = run.calls().collect();
        let names: Vec<_> = calls.iter().map(|c| c.function).collect();
        assert_eq!(
            names,
            [
                HeapFunction::PosixMemalign,
                HeapFunction::Free,
                HeapFunction::AlignedAlloc,
                HeapFunction::Free,
                HeapFunction::Realloc,
            ],
            "{kind}"
        );
        match &calls[0].result {
            Ok(Some(_)) => {
                // The bad free names an address, not a block, and is passed on as made.
                assert!(
                    matches!(run.op(calls[1].step), Some(Op::FreeAt { .. })),
                    "{kind}"
                );
                // realloc of a freed pointer is not passed on: the guest gets NULL.
                assert!(calls[4].note.is_some(), "{kind}");
                assert!(
                    matches!(run.op(calls[4].step), Some(Op::Mark { .. })),
                    "{kind}"
                );
                assert_eq!(run.exit, Exit::Returned { value: 0 }, "{kind}");
            }
            // Allocators that cannot align to 64 refuse (posix_memalign returns EINVAL).
            result => assert!(
                matches!(result, Err(e) if e.kind == crate::ErrorKind::Unsupported),
                "{kind}: {result:?}"
            ),
        }
        let heap = replayed(&run);
        assert_eq!(heap.memory(), run.heap.memory(), "{kind}");
        assert_eq!(heap.inspect(), run.heap.inspect(), "{kind}");
    }
    let run = run_code(ODD_CALLS, AllocatorKind::CheckedBump, &Options::default());
    let calls: Vec<_> = run.calls().collect();
    let Ok(Some(out)) = calls[0].result else {
        panic!("posix_memalign failed: {:?}", calls[0].result);
    };
    assert_eq!(out % 64, 0);
    // posix_memalign stored the pointer through its first argument (on the stack).
    assert_eq!(calls[0].args[1..], [64, 40]);
    let violations: Vec<_> = run.violations().collect();
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert_eq!(violations[0].violation.class, ViolationClass::InvalidFree);
    assert_eq!(violations[0].site.pc, Some(image::CODE_BASE + 0x26));
    assert!(
        violations[0]
            .report
            .contains("8 bytes inside the 40-byte block #1")
    );
}

#[test]
fn a_write_through_the_pointer_realloc_moved_lands_where_the_guest_wrote_it() {
    // p = malloc(16); q = realloc(p, 4096); p[0] = 1; return q;
    let code = "53 bf10000000 b810100000 ffd0 4889c3 4889c7 be00100000 b830100000 ffd0 \
                48c70301000000 5b c3";
    let mut moved = 0;
    for &kind in AllocatorKind::ALL {
        let run = run_code(code, kind, &Options::default());
        let calls: Vec<_> = run.calls().collect();
        let (Ok(Some(p)), Ok(Some(q))) = (&calls[0].result, &calls[1].result) else {
            panic!("{kind}: {:?}", run.events);
        };
        let write = run.accesses.last().unwrap();
        assert_eq!((write.addr, write.value), (*p, 1), "{kind}");
        if p != q {
            moved += 1;
            // The id now names the new block: the access is recorded by its address.
            assert_eq!(write.owner, None, "{kind}");
            assert!(
                matches!(run.ops().last(), Some(Op::WriteAt { .. })),
                "{kind}"
            );
        }
        // Replaying the trace writes where the guest wrote.
        let heap = replayed(&run);
        assert_eq!(heap.memory(), run.heap.memory(), "{kind}");
        assert_eq!(run.heap.memory().read_u64(*p).ok(), Some(1), "{kind}");
        if kind == AllocatorKind::CheckedBump {
            let v = run.violations().next().expect("a use after the realloc");
            assert_eq!(v.violation.class, ViolationClass::UseAfterFree);
            assert_eq!(v.violation.addr, *p);
        }
    }
    assert!(moved > 0, "some allocator moves the block");
}

#[test]
fn code_translated_before_the_heap_existed_is_still_watched() {
    // `store(p)` runs once on the stack before the first malloc maps the heap, then on the
    // heap block: the second store must be seen (and mirrored into the model).
    let code = "534883ec104889e7e820000000bf10000000b810100000ffd04889c34889c7e809000000\
                488b034883c4105bc348c70707000000c3";
    for &kind in AllocatorKind::ALL {
        let run = run_code(code, kind, &Options::default());
        assert_eq!(run.exit, Exit::Returned { value: 7 }, "{kind}");
        let writes: Vec<_> = run
            .accesses
            .iter()
            .filter(|a| a.access == Access::Write)
            .collect();
        assert_eq!(writes.len(), 1, "{kind}: {writes:?}");
        assert_eq!(writes[0].value, 7);
        assert_eq!(writes[0].pc, image::CODE_BASE + 0x2d);
        let ptr = run
            .calls()
            .next()
            .and_then(|c| c.result.clone().ok().flatten());
        assert_eq!(
            ptr.and_then(|p| run.heap.memory().read_u64(p).ok()),
            Some(7),
            "{kind}"
        );
    }
}

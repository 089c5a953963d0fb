//! `heapscope emulate` as a user runs it: the guests in `scenarios/guests/`, the documented
//! JSON fields, and one clear message for a file it cannot run.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers outside #[test] functions

use std::process::Output;

use serde_json::Value;

#[path = "support/run.rs"]
mod run;

use run::{heapscope, stderr, stdout};

fn jsonl(o: &Output) -> Vec<Value> {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn jsonl_has_calls_violations_and_the_exit_with_the_documented_fields() {
    let lines = jsonl(&heapscope(&[
        "emulate",
        "scenarios/guests/strdup_overflow.elf",
        "--allocator",
        "checked-bump",
        "--format",
        "jsonl",
    ]));
    let malloc = &lines[0];
    assert_eq!(malloc["allocator"], "checked-bump");
    assert_eq!(malloc["step"], 0);
    assert_eq!(malloc["op"], "alloc");
    assert_eq!(malloc["function"], "malloc");
    assert_eq!(malloc["size"], 9);
    let block = malloc["addr"].as_u64().unwrap();
    let violations: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "violation").collect();
    assert_eq!(violations.len(), 2);
    let write = violations[0];
    assert_eq!(write["class"], "heap-buffer-overflow");
    assert_eq!(write["access"], "write");
    assert_eq!(write["addr"].as_u64(), Some(block + 9));
    assert_eq!(write["size"], 1);
    assert!(write["pc"].as_u64().unwrap() >= 0x40_1000);
    assert_eq!(write["block"]["start"].as_u64(), Some(block));
    assert_eq!(write["block"]["end"].as_u64(), Some(block + 9));
    assert_eq!(write["block"]["allocated_at"], 0);
    assert!(write["instruction"].as_str().unwrap().starts_with("mov"));
    assert_eq!(violations[1]["access"], "read");
    let free = lines.iter().find(|l| l["function"] == "free").unwrap();
    assert_eq!(free["op"], "free");
    let exit = lines.last().unwrap();
    assert_eq!(exit["kind"], "exit");
    assert_eq!(exit["reason"], "returned");
    assert_eq!(exit["value"], 9);
    // Steps only grow.
    let steps: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
}

#[test]
fn a_double_free_is_a_violation_without_an_access() {
    let lines = jsonl(&heapscope(&[
        "emulate",
        "scenarios/guests/double_free.ron",
        "-a",
        "checked-bump",
        "-f",
        "jsonl",
    ]));
    let v = lines.iter().find(|l| l["kind"] == "violation").unwrap();
    assert_eq!(v["class"], "double-free");
    assert!(v.get("access").is_none(), "{v}");
    assert_eq!(v["block"]["freed_at"], 2);
    let refused = lines
        .iter()
        .filter(|l| l["function"] == "free")
        .nth(1)
        .unwrap();
    assert_eq!(refused["error_kind"], "double-free");
}

#[test]
fn a_scenario_runs_its_allocators_and_the_table_shows_the_corruption() {
    let o = heapscope(&["emulate", "scenarios/guests/header_smash.ron"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for kind in ["checked-bump", "freeing-bump", "segregated-fit", "dlmalloc"] {
        assert!(text.contains(&format!("on {kind}\n")), "{kind}: {text}");
    }
    assert!(
        text.contains("heap-buffer-overflow: WRITE of 1 bytes at"),
        "{text}"
    );
    assert!(text.contains("not 0xc0ffee"), "{text}");
    assert!(
        text.contains("corruption: validate() finds the heap broken"),
        "{text}"
    );
    assert!(text.contains("more like it"), "{text}");
}

#[test]
fn limits_and_entry_are_taken_from_the_command_line() {
    let lines = jsonl(&heapscope(&[
        "emulate",
        "scenarios/guests/forever.elf",
        "-a",
        "bump",
        "--max-insns",
        "5000",
        "--format",
        "jsonl",
    ]));
    let exit = lines.last().unwrap();
    assert_eq!(exit["reason"], "budget-exhausted");
    // The clock ends it first when the budget is too large to.
    let started = std::time::Instant::now();
    let lines = jsonl(&heapscope(&[
        "emulate",
        "scenarios/guests/forever.elf",
        "-a",
        "bump",
        "--max-insns",
        "1000000000000",
        "--timeout-ms",
        "300",
        "--format",
        "jsonl",
    ]));
    let exit = lines.last().unwrap();
    assert_eq!(exit["reason"], "timeout", "{exit}");
    assert_eq!(exit["message"], "timed out after 300 ms");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let lines = jsonl(&heapscope(&[
        "emulate",
        "scenarios/guests/compute.elf",
        "-a",
        "dlmalloc",
        "--entry",
        "sweep",
        "--arg",
        "3",
        "--format",
        "jsonl",
    ]));
    assert_eq!(lines.len(), 3, "malloc, free, exit: {lines:?}");
    assert_eq!(lines[2]["reason"], "returned");
    let lines = jsonl(&heapscope(&[
        "emulate",
        "scenarios/guests/use_after_free.elf",
        "-a",
        "checked-bump",
        "--stop-on-first",
        "--format",
        "jsonl",
    ]));
    assert_eq!(lines.last().unwrap()["reason"], "stopped-on-violation");
}

#[test]
fn files_it_cannot_run_give_one_clear_message() {
    for (args, needle) in [
        (vec!["emulate", "scenarios/first-steps.ron"], "`program:`"),
        (vec!["emulate", "scenarios/guests/heap.h"], "heap.h"),
        (
            vec![
                "emulate",
                "scenarios/guests/linked_list.elf",
                "--entry",
                "nope",
            ],
            "no function `nope`",
        ),
        (vec!["emulate", "no-such-file.elf"], "no-such-file.elf"),
        (
            vec![
                "emulate",
                "scenarios/guests/linked_list.elf",
                "--max-insns",
                "x",
            ],
            "`x` is not a number",
        ),
    ] {
        let o = heapscope(&args);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

//! The command line as a user runs it: exit codes, one clear message on bad input, and the
//! documented fields of each output format.

#![allow(clippy::expect_used)] // test helpers outside #[test] functions

#[path = "support/run.rs"]
mod run;

use run::{heapscope, stderr, stdout};

#[test]
fn replay_jsonl_has_one_object_per_step_per_allocator_with_the_documented_fields() {
    let o = heapscope(&[
        "replay",
        "scenarios/first-steps.ron",
        "-a",
        "freeing-bump",
        "-a",
        "checked-bump",
        "--format",
        "jsonl",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ops = 14;
    assert_eq!(lines.len(), ops * 2);
    let first = &lines[0];
    assert_eq!(first["allocator"], "freeing-bump");
    assert_eq!(first["step"], 0);
    assert_eq!(first["op"], "alloc");
    assert_eq!(first["id"], 1);
    assert_eq!(first["size"], 9);
    // sc-allocator with heap base 0: header at 0, payload at 8.
    assert_eq!(first["addr"], 8);
    assert!(
        lines
            .iter()
            .all(|l| l["step"].as_u64().unwrap() < ops as u64)
    );
}

#[test]
fn freeing_bump_heap_settings_mean_what_sc_allocator_new_means() {
    // FreeingBumpHeapAllocator::new(13) + allocate(1) returns 24 (upstream's own test).
    let dir = std::env::temp_dir().join(format!("heapscope-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("one.rep");
    std::fs::write(&trace, "0\n1\n1\n1\na 0 1\n").unwrap();
    let o = heapscope(&[
        "replay",
        trace.to_str().unwrap(),
        "-a",
        "freeing-bump",
        "--heap-base",
        "13",
        "--format",
        "jsonl",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(line["addr"], 24);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_exits_1_with_one_message_naming_the_file_and_position() {
    let dir = std::env::temp_dir().join(format!("heapscope-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.ron");
    std::fs::write(
        &bad,
        "Scenario(\n  name: \"x\",\n  ops: [Alloc(id: 1)],\n)\n",
    )
    .unwrap();
    for args in [
        vec!["replay", bad.to_str().unwrap()],
        vec!["compare", bad.to_str().unwrap()],
        vec!["replay", "does-not-exist.rep"],
        vec!["replay", "scenarios/first-steps.ron", "-a", "tcmalloc"],
        vec!["replay", "scenarios/first-steps.ron", "--format", "xml"],
    ] {
        let o = heapscope(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(err.starts_with("heapscope: "), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
    }
    let o = heapscope(&["replay", bad.to_str().unwrap()]);
    assert!(stderr(&o).contains("bad.ron:3:"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_reports_every_allocator_with_trace_measures() {
    let o = heapscope(&["compare", "scenarios/first-steps.ron", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rows.len(), heapscope_core::AllocatorKind::ALL.len());
    for row in &rows {
        assert_eq!(row["ops"], 14);
        assert_eq!(row["failed"], 0);
        let util = row["utilization"].as_f64().unwrap();
        assert!(util > 0.0 && util <= 1.0, "{row}");
        assert!(row["peak_footprint"].as_u64().unwrap() >= row["peak_live"].as_u64().unwrap());
    }
}

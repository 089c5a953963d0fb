//! Every bundled scenario loads and replays on every allocator it names, and the default one
//! runs without a failed or skipped step.

use std::path::Path;

use heapscope_core::{Op, Replayer, Scenario, StepResult, Trail};

#[test]
fn bundled_scenarios_load_and_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ron") {
            continue;
        }
        count += 1;
        let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        for spec in scenario.allocator_specs() {
            let mut replay = Replayer::new(spec.kind.build(&spec.config).unwrap());
            for (i, op) in scenario.ops.iter().enumerate() {
                let step = replay.apply(op, &mut Trail::on());
                let silent_ok = matches!(op, Op::Mark { .. } | Op::Read { .. } | Op::Write { .. });
                assert!(
                    silent_ok || !step.log.is_empty(),
                    "{}: {} step {i} ({op}) explains nothing",
                    path.display(),
                    spec.kind
                );
                if path.ends_with("first-steps.ron") {
                    assert!(
                        !matches!(step.result, StepResult::Failed(_) | StepResult::Skipped(_)),
                        "{}: step {i} ({op}) on {}: {:?}",
                        path.display(),
                        spec.kind,
                        step.result
                    );
                }
            }
            let findings = replay.heap().validate();
            assert!(findings.is_empty(), "{}: {findings:?}", spec.kind);
        }
    }
    assert!(count >= 1, "no scenarios found in {}", dir.display());
}

#[test]
fn open_reads_traces_by_content_and_scenarios_as_ron() {
    let dir = std::env::temp_dir().join(format!("heapscope-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rep = dir.join("tiny.txt");
    std::fs::write(&rep, "0\n2\n3\n1\na 0 16\na 1 8\nf 0\n").unwrap();
    let scenario = Scenario::open(&rep).unwrap();
    assert_eq!(scenario.name, "tiny.txt");
    assert_eq!(scenario.ops.len(), 3);
    assert!(matches!(scenario.ops[2], Op::Free { .. }));

    let ron = dir.join("bad.ron");
    std::fs::write(&ron, "Scenario(\n  name: 3,\n)").unwrap();
    let err = Scenario::open(&ron).unwrap_err().to_string();
    assert!(err.contains("bad.ron:2:"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

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

//! The loaded scenario and each allocator's replay of it, positioned at one step.

use std::path::{Path, PathBuf};

use heapscope_core::{
    AllocatorKind, Finding, HeapConfig, HeapLayout, Op, RecordOptions, Replayer, Scenario,
    ScenarioError, Step, StepOutcome, Timeline,
};

/// Where the session's scenario came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Compiled into the binary, by file name.
    Bundled(&'static str),
    /// Read from disk.
    File(PathBuf),
}

/// One allocator's recorded replay of the scenario, positioned at the session's cursor.
#[derive(Debug)]
pub struct Lane {
    /// The variant.
    pub kind: AllocatorKind,
    /// The recording: per-step outcomes and counters, problems, and seeking.
    pub timeline: Timeline,
    /// The step that led to the current position (None before the first).
    pub last_step: Option<Step>,
    /// The heap at the current position.
    pub layout: HeapLayout,
    /// `validate()` at the current position.
    pub findings: Vec<Finding>,
}

impl Lane {
    fn record(kind: AllocatorKind, config: HeapConfig, ops: &[Op]) -> Result<Self, String> {
        let timeline = Timeline::record(
            kind,
            config,
            ops,
            &RecordOptions::default(),
            &mut |_, _, _| true,
        )
        .map_err(|e| format!("{kind}: {e}"))?;
        let layout = timeline.replay().heap().inspect();
        Ok(Self {
            kind,
            timeline,
            last_step: None,
            layout,
            findings: Vec::new(),
        })
    }

    /// Positions the lane after `cursor` operations.
    fn seek(&mut self, ops: &[Op], cursor: usize) {
        self.last_step = self.timeline.seek(ops, cursor);
        let heap = self.timeline.replay().heap();
        self.layout = heap.inspect();
        self.findings = heap.validate();
    }

    /// The replay at the current position.
    pub fn replay(&self) -> &Replayer {
        self.timeline.replay()
    }

    /// Whether operation `i` failed or raised a violation.
    pub fn is_problem(&self, i: usize) -> bool {
        matches!(
            self.timeline.outcome(i),
            Some(StepOutcome::Failed | StepOutcome::Violation)
        )
    }
}

/// A scenario loaded into the app.
#[derive(Debug)]
pub struct Session {
    /// Where it came from.
    pub source: Source,
    /// The scenario.
    pub scenario: Scenario,
    /// One lane per allocator.
    pub lanes: Vec<Lane>,
    /// Operations applied so far (0 = before the first).
    pub cursor: usize,
}

impl Session {
    /// Loads a scenario or trace file from disk.
    pub fn open(path: &Path) -> Result<Self, String> {
        let scenario = Scenario::open(path).map_err(|e: ScenarioError| e.to_string())?;
        Self::from_scenario(scenario, Source::File(path.to_owned()))
    }

    /// Loads a bundled scenario.
    pub fn bundled(file: &'static str, text: &str) -> Result<Self, String> {
        let scenario = Scenario::from_ron(text, Path::new(file)).map_err(|e| e.to_string())?;
        Self::from_scenario(scenario, Source::Bundled(file))
    }

    /// A session with no operations and no allocators (what is left if nothing loads).
    pub fn empty() -> Self {
        Self {
            source: Source::Bundled("empty"),
            scenario: Scenario {
                name: "(nothing loaded)".to_owned(),
                description: String::new(),
                allocators: Vec::new(),
                ops: Vec::new(),
                trace: None,
                format: None,
                flags: Vec::new(),
            },
            lanes: Vec::new(),
            cursor: 0,
        }
    }

    fn from_scenario(scenario: Scenario, source: Source) -> Result<Self, String> {
        let lanes = scenario
            .allocator_specs()
            .into_iter()
            .map(|spec| Lane::record(spec.kind, spec.config, &scenario.ops))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            source,
            scenario,
            lanes,
            cursor: 0,
        })
    }

    /// Whether the scenario has no operations.
    pub fn is_empty(&self) -> bool {
        self.scenario.ops.is_empty()
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.scenario.ops.len()
    }

    /// Moves every lane to stand after `cursor` operations (clamped).
    pub fn seek(&mut self, cursor: usize) {
        let cursor = cursor.min(self.len());
        self.cursor = cursor;
        for lane in &mut self.lanes {
            lane.seek(&self.scenario.ops, cursor);
        }
    }

    /// The operation that led to the current position.
    pub fn current_op(&self) -> Option<&Op> {
        self.cursor
            .checked_sub(1)
            .and_then(|i| self.scenario.ops.get(i))
    }

    /// Whether operation `i` failed or raised a violation on any lane.
    pub fn is_problem(&self, i: usize) -> bool {
        self.lanes.iter().any(|l| l.is_problem(i))
    }

    /// The position after the next (or previous) operation matching `pred`.
    pub fn find(&self, forward: bool, pred: impl Fn(usize) -> bool) -> Option<usize> {
        // Position p shows the result of op p - 1.
        if forward {
            (self.cursor..self.len()).find(|&i| pred(i)).map(|i| i + 1)
        } else {
            (0..self.cursor.saturating_sub(1))
                .rev()
                .find(|&i| pred(i))
                .map(|i| i + 1)
        }
    }

    /// Title for the window and toolbar.
    pub fn title(&self) -> String {
        match &self.source {
            Source::Bundled(_) => self.scenario.name.clone(),
            Source::File(path) => format!(
                "{} — {}",
                self.scenario.name,
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundled::default_scenario;
    use heapscope_core::Trail;

    #[test]
    fn seeking_anywhere_matches_a_fresh_replay() {
        let bundled = default_scenario();
        let mut session = Session::bundled(bundled.file, bundled.text).unwrap();
        let n = session.len();
        for cursor in [n, 3, 0, n / 2, 1] {
            session.seek(cursor);
            for lane in &session.lanes {
                let mut fresh = Replayer::new(lane.kind.build(lane.timeline.config()).unwrap());
                for op in &session.scenario.ops[..cursor] {
                    fresh.apply(op, &mut Trail::off());
                }
                assert_eq!(
                    lane.layout,
                    fresh.heap().inspect(),
                    "{} at {cursor}",
                    lane.kind
                );
                assert_eq!(lane.last_step.is_some(), cursor > 0);
            }
        }
    }
}

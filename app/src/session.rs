//! The loaded scenario and each allocator's replay of it, positioned at one step.

use std::path::{Path, PathBuf};

use heapscope_core::{
    AllocatorKind, Finding, HeapConfig, HeapLayout, Op, Replayer, Scenario, ScenarioError, Step,
    StepResult, Trail,
};

/// A replay state is kept every this many operations, so seeking replays at most this many.
const CHECKPOINT_EVERY: usize = 256;

/// Where the session's scenario came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Compiled into the binary, by file name.
    Bundled(&'static str),
    /// Read from disk.
    File(PathBuf),
}

/// How one operation went for one allocator, for timeline markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Nothing notable.
    Ok,
    /// The allocator refused the call.
    Failed,
    /// A checking allocator caught a bad access or free.
    Violation,
}

/// One allocator's replay of the scenario.
#[derive(Debug)]
pub struct Lane {
    /// The variant.
    pub kind: AllocatorKind,
    /// Its settings.
    pub config: HeapConfig,
    checkpoints: Vec<Replayer>,
    /// What each operation did, for the timeline.
    pub marks: Vec<Mark>,
    /// Live requested bytes after each operation (index i = after op i).
    pub live_bytes: Vec<u64>,
    /// The step that led to the current position (None before the first).
    pub last_step: Option<Step>,
    /// The heap at the current position.
    pub layout: HeapLayout,
    /// `validate()` at the current position.
    pub findings: Vec<Finding>,
    state: Replayer,
}

impl Lane {
    fn record(kind: AllocatorKind, config: HeapConfig, ops: &[Op]) -> Result<Self, String> {
        let heap = kind.build(&config).map_err(|e| e.to_string())?;
        let mut replay = Replayer::new(heap);
        let mut checkpoints = vec![replay.clone()];
        let mut marks = Vec::with_capacity(ops.len());
        let mut live_bytes = Vec::with_capacity(ops.len());
        let mut off = Trail::off();
        for (i, op) in ops.iter().enumerate() {
            let step = replay.apply(op, &mut off);
            marks.push(if !step.violations.is_empty() {
                Mark::Violation
            } else if matches!(step.result, StepResult::Failed(_)) {
                Mark::Failed
            } else {
                Mark::Ok
            });
            live_bytes.push(replay.heap().stats().requested_live);
            if (i + 1) % CHECKPOINT_EVERY == 0 {
                checkpoints.push(replay.clone());
            }
        }
        let layout = checkpoints[0].heap().inspect();
        Ok(Self {
            kind,
            config,
            state: checkpoints[0].clone(),
            checkpoints,
            marks,
            live_bytes,
            last_step: None,
            layout,
            findings: Vec::new(),
        })
    }

    /// Positions the lane after `cursor` operations.
    fn seek(&mut self, ops: &[Op], cursor: usize) {
        let base = (cursor.saturating_sub(1) / CHECKPOINT_EVERY).min(self.checkpoints.len() - 1);
        let mut replay = self.checkpoints[base].clone();
        let mut off = Trail::off();
        let from = base * CHECKPOINT_EVERY;
        self.last_step = None;
        for (i, op) in ops.iter().enumerate().take(cursor).skip(from) {
            if i + 1 == cursor {
                self.last_step = Some(replay.apply(op, &mut Trail::on()));
            } else {
                replay.apply(op, &mut off);
            }
        }
        self.layout = replay.heap().inspect();
        self.findings = replay.heap().validate();
        self.state = replay;
    }

    /// The replay at the current position.
    pub fn replay(&self) -> &Replayer {
        &self.state
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
                program: None,
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
        self.lanes
            .iter()
            .any(|l| l.marks.get(i).is_some_and(|m| *m != Mark::Ok))
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

    #[test]
    fn seeking_anywhere_matches_a_fresh_replay() {
        let bundled = default_scenario();
        let mut session = Session::bundled(bundled.file, bundled.text).unwrap();
        let n = session.len();
        for cursor in [n, 3, 0, n / 2, 1] {
            session.seek(cursor);
            for lane in &session.lanes {
                let mut fresh = Replayer::new(lane.kind.build(&lane.config).unwrap());
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

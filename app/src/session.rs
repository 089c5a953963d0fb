//! The loaded scenario and each allocator's replay of it, positioned at one step.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use heapscope_core::emulate::report::GuestReport;
use heapscope_core::emulate::{self, Image, Program};
use heapscope_core::scenario::AllocatorSpec;
use heapscope_core::{
    Addr, AllocatorKind, Block, Detail, Finding, HeapConfig, HeapLayout, Op, RecordOptions,
    Replayer, Scenario, ScenarioError, Step, StepOutcome, StepResult, Timeline, TimelineError,
};

use crate::loader::{LoadError, LoadProgress};
use crate::series::LaneSeries;

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
    /// What the metrics panel plots beyond the timeline's counters.
    pub series: LaneSeries,
    /// The step that led to the current position (None before the first).
    pub last_step: Option<Step>,
    /// The heap at the current position.
    pub layout: HeapLayout,
    /// `validate()` at the current position.
    pub findings: Vec<Finding>,
    /// The lane's own trace when it differs per allocator: an emulated program's heap calls
    /// and accesses, whose pointers (and so whose course) depend on the allocator.
    pub ops: Option<Vec<Op>>,
    /// How the emulated program ended, for an emulated lane.
    pub exit: Option<String>,
    /// The emulator's reports (violations with the guest instruction, suspicious accesses,
    /// corruption found, refused calls), in step order.
    pub guest_reports: Vec<GuestReport>,
    /// The last block described in full, with the position it was described at.
    described: RefCell<Option<(usize, Block)>>,
    /// The last run of blocks described in full, with the position it was described at.
    described_span: RefCell<Option<(usize, Vec<Block>)>>,
}

impl Lane {
    fn record(
        kind: AllocatorKind,
        config: HeapConfig,
        ops: &[Op],
        progress: &LoadProgress,
    ) -> Result<Self, LoadError> {
        let start = kind
            .build(&config)
            .map(Replayer::new)
            .map_err(|e| format!("{kind}: {e}"))?;
        let mut series = LaneSeries::new(ops.len(), &start);
        let timeline = Timeline::record(
            kind,
            config,
            ops,
            &RecordOptions::default(),
            &mut |i, step, replay| {
                series.record(step, replay);
                progress.tick(i).is_ok()
            },
        )
        .map_err(|e| match e {
            TimelineError::Cancelled(_) => LoadError::Cancelled,
            e => LoadError::Failed(format!("{kind}: {e}")),
        })?;
        progress.finish_lane(ops.len());
        let layout = timeline.replay().heap().inspect_detail(Detail::Outline);
        Ok(Self {
            kind,
            timeline,
            series,
            last_step: None,
            layout,
            findings: Vec::new(),
            ops: None,
            exit: None,
            guest_reports: Vec::new(),
            described: RefCell::new(None),
            described_span: RefCell::new(None),
        })
    }

    /// Runs `image` with its heap served by a fresh `spec` allocator and records the run.
    fn emulate(
        image: &Image,
        program: &Program,
        spec: &AllocatorSpec,
        progress: &LoadProgress,
    ) -> Result<Self, LoadError> {
        let run = emulate::run(image, spec.kind, &spec.config, &program.options())
            .map_err(|e| LoadError::Failed(format!("{}: {e}", spec.kind)))?;
        let ops = run.ops();
        let mut lane = Self::record(spec.kind, run.config.clone(), &ops, progress)?;
        lane.exit = Some(run.exit.to_string());
        lane.guest_reports = run.reports();
        lane.ops = Some(ops);
        Ok(lane)
    }

    /// The operations this lane steps through: its own, or the scenario's.
    fn ops<'a>(&'a self, shared: &'a [Op]) -> &'a [Op] {
        self.ops.as_deref().unwrap_or(shared)
    }

    /// Positions the lane after `cursor` operations of its trace (clamped to it).
    fn seek(&mut self, shared: &[Op], cursor: usize) {
        let ops = self.ops.as_deref().unwrap_or(shared);
        self.last_step = self.timeline.seek(ops, cursor);
        let heap = self.timeline.replay().heap();
        // An outline: describing every header of a large heap at every step would cost more
        // than the rest of the frame; the block looked at is described on demand.
        self.layout = heap.inspect_detail(Detail::Outline);
        self.findings = heap.validate();
    }

    /// The blocks overlapping `[lo, hi)` at the current position, described in full (for a map
    /// zoomed in to bytes). Remembers the last run, so panning within it costs nothing.
    pub fn described_span(&self, lo: Addr, hi: Addr) -> Vec<Block> {
        let blocks = &self.layout.blocks;
        let first = blocks.partition_point(|b| b.range.end <= lo);
        let count = blocks[first..]
            .iter()
            .take_while(|b| b.range.start < hi)
            .count();
        let Some(span) = blocks.get(first..first + count) else {
            return Vec::new();
        };
        let (Some(head), Some(tail)) = (span.first(), span.last()) else {
            return Vec::new();
        };
        let (start, end) = (head.range.start, tail.range.end);
        let position = self.timeline.position();
        if let Some((at, described)) = &*self.described_span.borrow()
            && *at == position
            && described.first().map(|b| b.range.start) == Some(start)
            && described.last().map(|b| b.range.end) == Some(end)
        {
            return described.clone();
        }
        let layout = self
            .replay()
            .heap()
            .inspect_detail(Detail::Span { start, end });
        let described: Vec<Block> = layout
            .blocks
            .into_iter()
            .filter(|b| b.range.start < end && start < b.range.end)
            .collect();
        *self.described_span.borrow_mut() = Some((position, described.clone()));
        described
    }

    /// The block holding `addr` at the current position, with its class and header fields
    /// decoded (the per-step layout is an outline). Remembers the last one, for a tooltip or
    /// inspector that asks every frame.
    pub fn described_block(&self, addr: Addr) -> Option<Block> {
        let range = self.layout.block_at(addr)?.range.clone();
        let position = self.timeline.position();
        if let Some((at, block)) = &*self.described.borrow()
            && *at == position
            && block.range == range
        {
            return Some(block.clone());
        }
        let described = self
            .replay()
            .heap()
            .inspect_detail(Detail::At(range.start))
            .blocks
            .into_iter()
            .find(|b| b.range == range)?;
        *self.described.borrow_mut() = Some((position, described.clone()));
        Some(described)
    }

    /// The replay at the current position.
    pub fn replay(&self) -> &Replayer {
        self.timeline.replay()
    }

    /// The emulator's reports on operation `i`.
    pub fn guest_reports_at(&self, i: usize) -> impl Iterator<Item = &str> {
        let from = self.guest_reports.partition_point(|r| r.step < i);
        self.guest_reports[from..]
            .iter()
            .take_while(move |r| r.step == i)
            .map(|r| r.text.as_str())
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
    /// Positions after each operation that failed or raised a violation on any lane, ascending.
    pub problem_positions: Vec<usize>,
    /// Positions after each mark, ascending.
    pub mark_positions: Vec<usize>,
    /// Every report (a violation, or a refusal no violation explains) of every lane, in step
    /// order.
    pub reports: Vec<ReportRef>,
}

/// One entry of the violations list: a lane's kept problem, and which of its violations (None:
/// the refusal itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportRef {
    /// Index of the lane.
    pub lane: usize,
    /// Index into the lane's `timeline.problems()`.
    pub problem: usize,
    /// Index into that problem's violations, or None for the refusal.
    pub violation: Option<usize>,
}

impl Session {
    /// Loads a scenario or trace file from disk.
    pub fn open(path: &Path) -> Result<Self, String> {
        Self::open_with(path, &LoadProgress::unobserved()).map_err(|e| e.to_string())
    }

    /// Loads a file, reporting to (and stopping when cancelled through) `progress`.
    pub fn open_with(path: &Path, progress: &LoadProgress) -> Result<Self, LoadError> {
        let scenario = Scenario::open(path).map_err(|e: ScenarioError| e.to_string())?;
        if progress.cancelled() {
            return Err(LoadError::Cancelled);
        }
        progress.set_total(scenario.ops.len() * scenario.allocator_specs().len());
        Self::from_scenario(scenario, Source::File(path.to_owned()), progress)
    }

    /// Loads a bundled scenario.
    pub fn bundled(file: &'static str, text: &str) -> Result<Self, String> {
        let mut scenario = Scenario::from_ron(text, Path::new(file)).map_err(|e| e.to_string())?;
        crate::bundled::load_bundled_trace(file, &mut scenario)?;
        Self::from_scenario(scenario, Source::Bundled(file), &LoadProgress::unobserved())
            .map_err(|e| e.to_string())
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
            problem_positions: Vec::new(),
            mark_positions: Vec::new(),
            reports: Vec::new(),
        }
    }

    fn from_scenario(
        scenario: Scenario,
        source: Source,
        progress: &LoadProgress,
    ) -> Result<Self, LoadError> {
        let mut scenario = scenario;
        let lanes = match scenario.program.clone() {
            None => scenario
                .allocator_specs()
                .into_iter()
                .map(|spec| Lane::record(spec.kind, spec.config, &scenario.ops, progress))
                .collect::<Result<Vec<_>, _>>()?,
            Some(program) => {
                // The program's path is relative to the scenario file.
                let origin = match &source {
                    Source::File(path) => path.clone(),
                    Source::Bundled(file) => PathBuf::from(file),
                };
                let image = program.image(&origin).map_err(|e| e.to_string())?;
                let lanes = scenario
                    .allocator_specs()
                    .iter()
                    .map(|spec| Lane::emulate(&image, &program, spec, progress))
                    .collect::<Result<Vec<_>, _>>()?;
                // The timeline and the step panel show the first allocator's trace; every lane
                // steps through its own (they differ only where the program's course does).
                scenario.ops = lanes
                    .first()
                    .map(|lane| lane.ops(&[]).to_vec())
                    .unwrap_or_default();
                lanes
            }
        };
        let mut session = Self {
            source,
            scenario,
            lanes,
            cursor: 0,
            problem_positions: Vec::new(),
            mark_positions: Vec::new(),
            reports: Vec::new(),
        };
        session.index();
        Ok(session)
    }

    /// Indexes problems and marks once, so jumping and drawing never scan the whole trace.
    fn index(&mut self) {
        self.problem_positions = (0..self.len())
            .filter(|&i| self.is_problem(i))
            .map(|i| i + 1)
            .collect();
        self.mark_positions = self
            .scenario
            .ops
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(op, Op::Mark { .. }))
            .map(|(i, _)| i + 1)
            .collect();
        let mut reports: Vec<(usize, ReportRef)> = Vec::new();
        for (lane_index, lane) in self.lanes.iter().enumerate() {
            for (k, problem) in lane.timeline.problems().iter().enumerate() {
                for v in 0..problem.violations.len() {
                    let report = ReportRef {
                        lane: lane_index,
                        problem: k,
                        violation: Some(v),
                    };
                    reports.push((problem.step, report));
                }
                // A refusal a violation explains (a double free) is listed once, as the
                // violation; skipped operations are the program's mistakes, not the allocator's.
                if problem.violations.is_empty() && matches!(problem.result, StepResult::Failed(_))
                {
                    let report = ReportRef {
                        lane: lane_index,
                        problem: k,
                        violation: None,
                    };
                    reports.push((problem.step, report));
                }
            }
        }
        // Stable: within a step, lanes in order and violations in order.
        reports.sort_by_key(|(step, r)| (*step, r.lane));
        self.reports = reports.into_iter().map(|(_, r)| r).collect();
    }

    /// The nearest position after (or before) the cursor among ascending `positions`.
    pub fn next_position(&self, positions: &[usize], forward: bool) -> Option<usize> {
        if forward {
            let i = positions.partition_point(|&p| p <= self.cursor);
            positions.get(i).copied()
        } else {
            let i = positions.partition_point(|&p| p < self.cursor);
            i.checked_sub(1).and_then(|i| positions.get(i).copied())
        }
    }

    /// Whether the scenario has no operations.
    pub fn is_empty(&self) -> bool {
        self.scenario.ops.is_empty()
    }

    /// Number of operations (of the longest lane, when lanes have their own).
    pub fn len(&self) -> usize {
        self.lanes
            .iter()
            .map(|lane| lane.ops(&self.scenario.ops).len())
            .max()
            .unwrap_or(0)
            .max(self.scenario.ops.len())
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
                    fresh.heap().inspect_detail(Detail::Outline),
                    "{} at {cursor}",
                    lane.kind
                );
                assert_eq!(lane.last_step.is_some(), cursor > 0);
                // The block looked at is described as the full layout describes it, also
                // after moving on (the remembered description is of another position).
                for block in fresh.heap().inspect().blocks {
                    assert_eq!(lane.described_block(block.range.start), Some(block));
                }
            }
        }
    }

    #[test]
    fn indexed_jumps_match_a_scan_of_the_trace() {
        let text = r#"Scenario(name: "jumps", allocators: [(kind: "checked-bump")], ops: [
            Alloc(id: 1, size: 8), Mark(label: "a"), Free(id: 1), Free(id: 1),
            Alloc(id: 2, size: 8), Read(id: 1, offset: 0, len: 1), Mark(label: "b"),
            Free(id: 2), Free(id: 2)])"#;
        let mut session = Session::bundled("jumps.ron", text).unwrap();
        assert!(!session.problem_positions.is_empty());
        assert_eq!(session.mark_positions, vec![2, 7]);
        let is_mark =
            |s: &Session, i: usize| matches!(s.scenario.ops.get(i), Some(Op::Mark { .. }));
        for cursor in 0..=session.len() {
            session.cursor = cursor;
            for forward in [true, false] {
                assert_eq!(
                    session.next_position(&session.problem_positions, forward),
                    session.find(forward, |i| session.is_problem(i)),
                    "problem from {cursor} forward {forward}"
                );
                assert_eq!(
                    session.next_position(&session.mark_positions, forward),
                    session.find(forward, |i| is_mark(&session, i)),
                    "mark from {cursor} forward {forward}"
                );
            }
        }
        // Reports come in step order, and every failed or violating step has one.
        let steps: Vec<usize> = session
            .reports
            .iter()
            .map(|r| session.lanes[r.lane].timeline.problems()[r.problem].step)
            .collect();
        assert!(steps.windows(2).all(|w| w[0] <= w[1]));
        let mut distinct = steps.clone();
        distinct.dedup();
        assert_eq!(
            distinct.iter().map(|s| s + 1).collect::<Vec<_>>(),
            session.problem_positions
        );
    }

    #[test]
    fn an_emulated_program_steps_like_a_trace_with_each_lane_on_its_own_ops() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/guests/strdup_overflow.ron");
        let mut session = Session::open(&path).unwrap();
        assert!(
            session.len() > 2,
            "the run recorded heap calls and accesses"
        );
        let checked = session
            .lanes
            .iter()
            .position(|l| l.kind == AllocatorKind::CheckedBump)
            .expect("the guest scenario runs checked-bump");
        let lane = &session.lanes[checked];
        assert!(lane.exit.as_deref().is_some_and(|e| e.contains("returned")));
        let first = lane
            .guest_reports
            .first()
            .expect("the overflow is reported");
        let (step, report) = (first.step, &first.text);
        assert!(
            report.contains("heap-buffer-overflow") && report.contains("pc 0x"),
            "{report}"
        );
        assert_eq!(lane.guest_reports_at(step).count(), 1);
        assert_eq!(lane.guest_reports_at(step + 1).count(), 0);
        assert!(
            lane.guest_reports[1].text.contains("READ"),
            "then the length loop reads it back"
        );
        assert!(
            lane.timeline
                .problems()
                .iter()
                .any(|p| !p.violations.is_empty()),
            "the one-byte overflow is caught on replay too"
        );
        let n = session.len();
        session.seek(n);
        for lane in &session.lanes {
            let ops = lane.ops.as_deref().unwrap();
            assert_eq!(lane.timeline.position(), ops.len().min(n));
            let mut fresh = Replayer::new(lane.kind.build(lane.timeline.config()).unwrap());
            for op in ops {
                fresh.apply(op, &mut Trail::off());
            }
            assert_eq!(
                lane.layout,
                fresh.heap().inspect_detail(Detail::Outline),
                "{}",
                lane.kind
            );
        }
        session.seek(1);
        assert!(session.current_op().is_some_and(|op| op.name() == "alloc"));
    }
}

//! Time travel: one allocator's replay of a trace, recorded once, positioned at any step.
//!
//! Recording replays the trace and keeps, per operation, its outcome and three counters
//! (requested live bytes, bytes held, footprint), the steps that went wrong in full, and
//! checkpoints: copies of the replay state with the heap bytes packed to their non-zero words.
//! [`Timeline::seek`] restores the nearest checkpoint at or before the target (or continues from
//! the current position when that is nearer) and replays forward, so every position is exactly
//! the state a fresh replay reaches; the last operation is replayed with the decision log on.
//!
//! Why checkpoints and not undo records: the models keep side state in host structures (ledger,
//! shadow bytes, block lists) that undo records would have to journal model by model, while a
//! checkpoint needs nothing from a model but `Clone`. Checkpoints are evenly spaced within a
//! byte budget per operation: whenever they exceed it, every other one is dropped and the
//! spacing doubles, so it adapts to the heap's size. The benchmark (`cargo bench -p heapscope-tests --bench
//! timeline`) measures what this costs and how fast seeks are.

use rustc_hash::FxHashSet;

use crate::Addr;
use crate::access::Violation;
use crate::allocator::Trail;
use crate::kind::{AllocatorKind, ConfigError, HeapConfig};
use crate::memory::{Memory, PackedMemory};
use crate::replay::{Replayer, Step, StepResult};
use crate::trace::Op;

/// Problems kept in full; past this, only their outcomes are (a trace that fails this often
/// fails the same way again and again, and the full records would outweigh the trace).
pub const MAX_PROBLEMS: usize = 65_536;

/// How a timeline spends memory on checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOptions {
    /// Checkpoint bytes allowed per recorded operation, on average over the trace so far.
    pub checkpoint_bytes_per_op: usize,
    /// Operations between two checkpoints to start with (doubled as the budget requires).
    pub min_spacing: usize,
}

impl Default for RecordOptions {
    fn default() -> Self {
        // Per-step records take 13 bytes and kept problems up to about 8: 40 keeps the whole
        // recording under 64 B per operation.
        Self {
            checkpoint_bytes_per_op: 40,
            min_spacing: 16,
        }
    }
}

/// What one operation did, in one word, for timeline markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// It did what was asked.
    Ok,
    /// It named a block the program does not hold; the allocator was not called.
    Skipped,
    /// The allocator refused the call.
    Failed,
    /// A checking allocator caught a bad access or free (whether or not the call failed).
    Violation,
}

impl StepOutcome {
    fn of(step: &Step) -> Self {
        if !step.violations.is_empty() {
            StepOutcome::Violation
        } else {
            match step.result {
                StepResult::Failed(_) => StepOutcome::Failed,
                StepResult::Skipped(_) => StepOutcome::Skipped,
                StepResult::Placed(_) | StepResult::Done => StepOutcome::Ok,
            }
        }
    }
}

/// A step that did not simply succeed, kept in full for lists of errors and violations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Index of the operation (0-based).
    pub step: usize,
    /// What the allocator answered.
    pub result: StepResult,
    /// What the checking allocator caught.
    pub violations: Vec<Violation>,
    /// The address the operation concerned.
    pub addr: Option<Addr>,
}

/// Why a timeline could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimelineError {
    /// The allocator's settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The caller asked to stop.
    #[error("recording cancelled at step {0}")]
    Cancelled(usize),
}

/// A per-step counter, kept in 32 bits until a value needs 64.
#[derive(Debug, Clone)]
enum Column {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl Column {
    fn with_capacity(n: usize) -> Self {
        Column::Narrow(Vec::with_capacity(n))
    }

    fn push(&mut self, value: u64) {
        match self {
            Column::Narrow(values) => match u32::try_from(value) {
                Ok(v) => values.push(v),
                Err(_) => {
                    let mut wide: Vec<u64> = values.iter().map(|&v| u64::from(v)).collect();
                    wide.reserve(values.capacity().saturating_sub(values.len()));
                    wide.push(value);
                    *self = Column::Wide(wide);
                }
            },
            Column::Wide(values) => values.push(value),
        }
    }

    fn get(&self, i: usize) -> Option<u64> {
        match self {
            Column::Narrow(values) => values.get(i).map(|&v| u64::from(v)),
            Column::Wide(values) => values.get(i).copied(),
        }
    }

    fn max_in(&self, range: std::ops::Range<usize>) -> Option<u64> {
        match self {
            Column::Narrow(values) => values.get(range)?.iter().max().map(|&v| u64::from(v)),
            Column::Wide(values) => values.get(range)?.iter().max().copied(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Column::Narrow(values) => values.capacity() * 4,
            Column::Wide(values) => values.capacity() * 8,
        }
    }
}

/// The replay state after `step` operations, with its heap bytes packed.
#[derive(Debug, Clone)]
struct Checkpoint {
    step: usize,
    /// The replay with an empty memory in place of the heap's.
    replay: Replayer,
    memory: PackedMemory,
    bytes: usize,
}

impl Checkpoint {
    fn take(state: &mut Replayer, step: usize) -> Self {
        // Clone everything but the memory, which is packed instead of copied.
        let memory = std::mem::replace(state.heap_mut().memory_mut(), Memory::new(0, 0));
        let replay = state.clone();
        *state.heap_mut().memory_mut() = memory;
        let memory = state.heap().memory().pack();
        let bytes = memory.packed_bytes() + replay.side_bytes() + size_of::<Self>();
        Self {
            step,
            replay,
            memory,
            bytes,
        }
    }

    fn restore(&self) -> Replayer {
        let mut replay = self.replay.clone();
        *replay.heap_mut().memory_mut() = self.memory.unpack();
        replay
    }

    /// Makes `state` this checkpoint's state, reusing its memory buffer.
    fn restore_into(&self, state: &mut Replayer) {
        let mut memory = std::mem::replace(state.heap_mut().memory_mut(), Memory::new(0, 0));
        self.memory.unpack_into(&mut memory);
        *state = self.replay.clone();
        *state.heap_mut().memory_mut() = memory;
    }
}

/// One allocator's recorded replay of a trace, positioned at one step.
#[derive(Debug, Clone)]
pub struct Timeline {
    kind: AllocatorKind,
    config: HeapConfig,
    outcomes: Vec<StepOutcome>,
    requested_live: Column,
    held: Column,
    footprint: Column,
    problems: Vec<Problem>,
    /// Always holds the state before the first operation, at index 0.
    checkpoints: Vec<Checkpoint>,
    /// Bit i: operation i is the last to name its id, so a freed id can be forgotten after it.
    last_mention: Vec<u64>,
    state: Replayer,
    position: usize,
}

/// Marks, for each operation, whether it is the last one naming its id.
fn last_mentions(ops: &[Op]) -> Vec<u64> {
    let mut bits = vec![0u64; ops.len().div_ceil(64)];
    let mut seen = FxHashSet::default();
    for (i, op) in ops.iter().enumerate().rev() {
        if let Some(id) = op.id()
            && seen.insert(id)
        {
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    bits
}

/// After the last operation naming an id, a freed id need not be remembered any more.
fn forget_if_last(last_mention: &[u64], i: usize, op: &Op, state: &mut Replayer) {
    if last_mention
        .get(i / 64)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
        && let Some(id) = op.id()
    {
        state.forget_freed(id);
    }
}

impl Timeline {
    /// Replays `ops` against a fresh `kind` allocator with `config` and records the timeline.
    ///
    /// `watch` sees each operation as it is recorded: its index, its step, and the replay
    /// standing after it (for progress, or for measures the timeline does not keep); recording
    /// stops with [`TimelineError::Cancelled`] when it returns `false`.
    pub fn record(
        kind: AllocatorKind,
        config: HeapConfig,
        ops: &[Op],
        options: &RecordOptions,
        watch: &mut dyn FnMut(usize, &Step, &Replayer) -> bool,
    ) -> Result<Self, TimelineError> {
        let mut state = Replayer::new(kind.build(&config)?);
        let last_mention = last_mentions(ops);
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut requested_live = Column::with_capacity(ops.len());
        let mut held = Column::with_capacity(ops.len());
        let mut footprint = Column::with_capacity(ops.len());
        let mut problems = Vec::new();
        let mut checkpoints = vec![Checkpoint::take(&mut state, 0)];
        let mut spent = checkpoints[0].bytes;
        let mut spacing = options.min_spacing.max(1);
        let mut off = Trail::off();
        for (i, op) in ops.iter().enumerate() {
            let step = state.apply(op, &mut off);
            if !watch(i, &step, &state) {
                return Err(TimelineError::Cancelled(i));
            }
            let outcome = StepOutcome::of(&step);
            let stats = state.heap().stats();
            outcomes.push(outcome);
            requested_live.push(stats.requested_live);
            held.push(stats.held);
            footprint.push(stats.footprint);
            if outcome != StepOutcome::Ok && problems.len() < MAX_PROBLEMS {
                problems.push(Problem {
                    step: i,
                    result: step.result,
                    violations: step.violations,
                    addr: step.addr,
                });
            }
            forget_if_last(&last_mention, i, op, &mut state);
            if (i + 1) % spacing == 0 {
                let checkpoint = Checkpoint::take(&mut state, i + 1);
                spent += checkpoint.bytes;
                checkpoints.push(checkpoint);
                // Over budget: keep every other checkpoint, so the spacing stays even and a
                // seek replays fewer than `spacing` operations wherever it lands.
                let budget = options.checkpoint_bytes_per_op.saturating_mul(i + 1);
                while spent > budget && checkpoints.len() > 1 {
                    spacing = spacing.saturating_mul(2);
                    checkpoints.retain(|c| c.step % spacing == 0);
                    spent = checkpoints.iter().map(|c| c.bytes).sum();
                }
            }
        }
        // Stand at the start, like a fresh replay.
        let state = checkpoints[0].restore();
        Ok(Self {
            kind,
            config,
            outcomes,
            requested_live,
            held,
            footprint,
            problems,
            checkpoints,
            last_mention,
            state,
            position: 0,
        })
    }

    /// The allocator variant.
    pub fn kind(&self) -> AllocatorKind {
        self.kind
    }

    /// The allocator's settings.
    pub fn config(&self) -> &HeapConfig {
        &self.config
    }

    /// Number of recorded operations.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// Operations applied at the current position (0 = before the first).
    pub fn position(&self) -> usize {
        self.position
    }

    /// The replay at the current position.
    pub fn replay(&self) -> &Replayer {
        &self.state
    }

    /// What operation `i` did.
    pub fn outcome(&self, i: usize) -> Option<StepOutcome> {
        self.outcomes.get(i).copied()
    }

    /// Every operation's outcome, in order.
    pub fn outcomes(&self) -> &[StepOutcome] {
        &self.outcomes
    }

    /// Requested live bytes after operation `i`.
    pub fn requested_live(&self, i: usize) -> Option<u64> {
        self.requested_live.get(i)
    }

    /// The highest requested live bytes after any operation in `range` (`None` when the range
    /// is empty or out of bounds): one column of a live-bytes curve.
    pub fn requested_live_max(&self, range: std::ops::Range<usize>) -> Option<u64> {
        self.requested_live.max_in(range)
    }

    /// Bytes held by live blocks after operation `i`.
    pub fn held(&self, i: usize) -> Option<u64> {
        self.held.get(i)
    }

    /// The allocator's footprint after operation `i`.
    pub fn footprint(&self, i: usize) -> Option<u64> {
        self.footprint.get(i)
    }

    /// The steps that failed, were skipped or raised violations, in order (the first
    /// [`MAX_PROBLEMS`]; [`Self::outcomes`] marks every one).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Number of checkpoints kept.
    pub fn checkpoint_count(&self) -> usize {
        self.checkpoints.len()
    }

    /// Host bytes the recording occupies beyond the trace and the current state: per-step
    /// records, problems and checkpoints.
    pub fn recorded_bytes(&self) -> usize {
        let problems: usize = self
            .problems
            .iter()
            .map(|p| {
                let message = match &p.result {
                    StepResult::Failed(e) => e.message.capacity(),
                    StepResult::Skipped(why) => why.capacity(),
                    StepResult::Placed(_) | StepResult::Done => 0,
                };
                let violations: usize = p
                    .violations
                    .iter()
                    .map(|v| size_of::<Violation>() + v.message.capacity())
                    .sum();
                size_of::<Problem>() + message + violations
            })
            .sum();
        self.outcomes.capacity()
            + self.requested_live.bytes()
            + self.held.bytes()
            + self.footprint.bytes()
            + self.last_mention.capacity() * 8
            + problems
            + self.checkpoints.iter().map(|c| c.bytes).sum::<usize>()
    }

    /// Moves to stand after `cursor` operations of `ops` (the trace this timeline recorded;
    /// clamped to its length), forward or backward, and returns the step that led there,
    /// explained by the allocator's decision log (`None` at the start).
    pub fn seek(&mut self, ops: &[Op], cursor: usize) -> Option<Step> {
        let cursor = cursor.min(self.len()).min(ops.len());
        // Reach the state before the last operation, then apply that one with the log on.
        let before = cursor.saturating_sub(1);
        let nearest = self
            .checkpoints
            .partition_point(|c| c.step <= before)
            .saturating_sub(1);
        let checkpoint = self.checkpoints.get(nearest)?;
        if !(checkpoint.step..=before).contains(&self.position) {
            checkpoint.restore_into(&mut self.state);
            self.position = checkpoint.step;
        }
        let mut off = Trail::off();
        while self.position < before {
            let i = self.position;
            let op = ops.get(i)?;
            self.state.apply(op, &mut off);
            forget_if_last(&self.last_mention, i, op, &mut self.state);
            self.position += 1;
        }
        if cursor == 0 {
            return None;
        }
        let op = ops.get(before)?;
        let step = self.state.apply(op, &mut Trail::on());
        forget_if_last(&self.last_mention, before, op, &mut self.state);
        self.position = cursor;
        Some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ViolationClass;

    /// `n` allocations of `size` bytes, ids 0..n.
    fn allocs(n: u64, size: u64) -> Vec<Op> {
        (0..n).map(|id| Op::Alloc { id, size, align: 0 }).collect()
    }

    fn record(kind: AllocatorKind, ops: &[Op]) -> Timeline {
        Timeline::record(
            kind,
            HeapConfig::default(),
            ops,
            &RecordOptions::default(),
            &mut |_, _, _| true,
        )
        .unwrap()
    }

    #[test]
    fn problems_name_their_steps_and_counters_follow_the_program() {
        let ops = vec![
            Op::Alloc {
                id: 1,
                size: 10,
                align: 0,
            },
            Op::Free { id: 1 },
            Op::Free { id: 1 },
            Op::Free { id: 7 },
            Op::Mark {
                label: "end".to_owned(),
            },
        ];
        let timeline = record(AllocatorKind::CheckedBump, &ops);
        assert_eq!(
            timeline.outcomes(),
            &[
                StepOutcome::Ok,
                StepOutcome::Ok,
                StepOutcome::Violation,
                StepOutcome::Skipped,
                StepOutcome::Ok
            ]
        );
        let steps: Vec<usize> = timeline.problems().iter().map(|p| p.step).collect();
        assert_eq!(steps, [2, 3]);
        assert_eq!(
            timeline.problems()[0].violations[0].class,
            ViolationClass::DoubleFree
        );
        assert_eq!(timeline.requested_live(0), Some(10));
        assert_eq!(timeline.requested_live(1), Some(0));
        assert_eq!(timeline.requested_live_max(0..5), Some(10));
        assert_eq!(timeline.requested_live_max(3..9), None);
    }

    #[test]
    fn counters_widen_past_32_bits_without_losing_earlier_values() {
        let mut column = Column::with_capacity(2);
        column.push(7);
        column.push(u64::from(u32::MAX) + 5);
        assert_eq!(column.get(0), Some(7));
        assert_eq!(column.get(1), Some(u64::from(u32::MAX) + 5));
        assert_eq!(column.max_in(0..2), Some(u64::from(u32::MAX) + 5));
    }

    #[test]
    fn seeking_back_to_the_start_gives_no_step_and_an_empty_heap() {
        let ops = allocs(100, 24);
        let mut timeline = record(AllocatorKind::Dlmalloc, &ops);
        assert!(timeline.seek(&ops, 100).is_some());
        assert_eq!(timeline.replay().heap().stats().live_blocks, 100);
        assert!(timeline.seek(&ops, 0).is_none());
        assert_eq!(timeline.replay().heap().stats().live_blocks, 0);
    }

    #[test]
    fn checkpoints_stay_evenly_spaced_within_the_budget() {
        let ops = allocs(100, 24);
        let generous = RecordOptions {
            checkpoint_bytes_per_op: 1 << 20,
            min_spacing: 10,
        };
        let tight = RecordOptions {
            checkpoint_bytes_per_op: 1,
            min_spacing: 10,
        };
        for (options, expected) in [(generous, 11), (tight, 1)] {
            let timeline = Timeline::record(
                AllocatorKind::Dlmalloc,
                HeapConfig::default(),
                &ops,
                &options,
                &mut |_, _, _| true,
            )
            .unwrap();
            assert_eq!(timeline.checkpoint_count(), expected);
            let steps: Vec<usize> = timeline.checkpoints.iter().map(|c| c.step).collect();
            let spacing = steps.get(1).copied().unwrap_or(1);
            assert!(
                steps.iter().enumerate().all(|(i, &s)| s == i * spacing),
                "{steps:?}"
            );
        }
    }
}

//! What the metrics and violations panels plot and list over the whole timeline, gathered while
//! a lane is recorded: one [`LaneSeries::record`] call per step.
//!
//! Byte counts come from the allocator's O(1) `stats()` and are kept for every step. Measures
//! that need the whole layout (`inspect()`, O(blocks)) are taken only at a bounded number of
//! evenly spaced sample steps, so recording a million-step trace stays linear.

use std::ops::Range;
use std::time::{Duration, Instant};

use heapscope_core::metrics::{StepMetrics, TraceMetrics};
use heapscope_core::{Addr, AllocError, Replayer, Step, StepResult, Violation};

/// At most this many layout samples per lane (plus the start).
pub const MAX_SAMPLES: usize = 512;

/// Sampling may always take this long per lane, however fast the replay itself is.
const MIN_SAMPLING_BUDGET: Duration = Duration::from_millis(40);

/// At most this many problems are kept per lane with their details; later ones are only counted
/// (a poisoned allocator fails every call after the first error).
pub const MAX_PROBLEMS: usize = 20_000;

/// A per-step series of byte counts, with min/max per fixed bucket of steps so that drawing any
/// range of it costs about as much as the number of pixel columns.
#[derive(Debug, Clone, Default)]
pub struct StepSeries {
    values: Vec<u64>,
    /// Steps per coarse bucket.
    bucket: usize,
    /// `(min, max)` of each full or partial bucket.
    coarse: Vec<(u64, u64)>,
}

impl StepSeries {
    fn new(capacity: usize) -> Self {
        // About 8,192 coarse buckets whatever the length.
        let bucket = (capacity / 8192).max(1);
        Self {
            values: Vec::with_capacity(capacity),
            bucket,
            coarse: Vec::with_capacity(capacity / bucket + 1),
        }
    }

    fn push(&mut self, value: u64) {
        if self.values.len().is_multiple_of(self.bucket) {
            self.coarse.push((value, value));
        } else if let Some((lo, hi)) = self.coarse.last_mut() {
            *lo = (*lo).min(value);
            *hi = (*hi).max(value);
        }
        self.values.push(value);
    }

    /// Number of positions recorded.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value at position `at` (0 = before the first operation).
    pub fn get(&self, at: usize) -> Option<u64> {
        self.values.get(at).copied()
    }

    /// Every value, by position.
    pub fn values(&self) -> &[u64] {
        &self.values
    }

    /// The highest value.
    pub fn max(&self) -> u64 {
        self.coarse.iter().map(|&(_, hi)| hi).max().unwrap_or(0)
    }

    /// Min and max over `range` (clamped), using whole coarse buckets where it can.
    fn min_max(&self, range: Range<usize>) -> Option<(u64, u64)> {
        let end = range.end.min(self.values.len());
        let mut at = range.start.min(end);
        let mut acc: Option<(u64, u64)> = None;
        let mut take = |lo: u64, hi: u64| {
            acc = Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        };
        while at < end {
            if at.is_multiple_of(self.bucket) && at + self.bucket <= end {
                if let Some(&(lo, hi)) = self.coarse.get(at / self.bucket) {
                    take(lo, hi);
                }
                at += self.bucket;
            } else {
                let v = self.values[at];
                take(v, v);
                at += 1;
            }
        }
        acc
    }

    /// Points `[position, value]` for drawing `range` in about `columns` pixel columns: every
    /// point when they fit, otherwise the min and the max of each column, so peaks and dips
    /// survive any zoom.
    pub fn decimated(&self, range: Range<usize>, columns: usize) -> Vec<[f64; 2]> {
        let end = range.end.min(self.values.len());
        let start = range.start.min(end);
        let len = end - start;
        let columns = columns.max(1);
        if len <= 2 * columns {
            return (start..end)
                .map(|i| [i as f64, self.values[i] as f64])
                .collect();
        }
        let mut points = Vec::with_capacity(2 * columns);
        let mut last = self.values[start];
        for c in 0..columns {
            let from = start + c * len / columns;
            let to = start + (c + 1) * len / columns;
            let Some((lo, hi)) = self.min_max(from..to) else {
                continue;
            };
            let x = from as f64;
            // Start the column with whichever extreme is nearer where the line was, so the
            // drawn path does not zig-zag.
            if last.abs_diff(lo) <= last.abs_diff(hi) {
                points.push([x, lo as f64]);
                points.push([x, hi as f64]);
                last = hi;
            } else {
                points.push([x, hi as f64]);
                points.push([x, lo as f64]);
                last = lo;
            }
        }
        points
    }
}

/// Layout measures at one sample step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Position (operations applied).
    pub at: usize,
    /// `1 - sqrt(Σ f²) / Σ f` over reusable free blocks.
    pub fragmentation: f64,
    /// The largest reusable free block.
    pub largest_free: u64,
    /// Reusable free bytes.
    pub free_bytes: u64,
}

/// What went wrong at one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemDetail {
    /// A checking allocator caught a bad access or free.
    Violation(Violation),
    /// The allocator refused the call.
    Failed(AllocError),
}

/// A failed operation or a violation, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Position after the operation (so seeking there shows it).
    pub at: usize,
    /// What happened.
    pub detail: ProblemDetail,
    /// The address the operation concerned (the pointer freed or accessed).
    pub addr: Option<Addr>,
}

impl Problem {
    /// The address whose block should be selected when the problem is shown.
    pub fn block_addr(&self) -> Option<Addr> {
        match &self.detail {
            ProblemDetail::Violation(v) => v.block.as_ref().map(|b| b.start).or(Some(v.addr)),
            ProblemDetail::Failed(_) => self.addr,
        }
    }

    /// A short class name (AddressSanitizer's for violations).
    pub fn class(&self) -> String {
        match &self.detail {
            ProblemDetail::Violation(v) => v.class.name().to_owned(),
            ProblemDetail::Failed(e) => {
                // ErrorKind serialises to its kebab-case name.
                let name = serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("{:?}", e.kind));
                format!("failed: {name}")
            }
        }
    }

    /// The allocator's message.
    pub fn message(&self) -> &str {
        match &self.detail {
            ProblemDetail::Violation(v) => &v.message,
            ProblemDetail::Failed(e) => &e.message,
        }
    }
}

/// One lane's metrics over the whole timeline, and every problem it met.
#[derive(Debug, Clone, Default)]
pub struct LaneSeries {
    /// Requested live bytes at each position (index 0 = before the first operation).
    pub requested_live: StepSeries,
    /// Bytes live blocks occupy, at each position.
    pub held: StepSeries,
    /// The allocator's footprint, at each position.
    pub footprint: StepSeries,
    /// Layout measures at evenly spaced positions (always the start and the end).
    pub samples: Vec<Sample>,
    sample_every: usize,
    total_steps: usize,
    started: Option<Instant>,
    sampling: Duration,
    /// Whole-trace measures (J&W #3/#4, utilization, failures).
    pub totals: TraceMetrics,
    /// Problems in step order (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// Problems met, including those not kept.
    pub problem_count: usize,
    /// Violations met (each violation of a step counts).
    pub violation_count: usize,
}

impl LaneSeries {
    /// Starts the series for a trace of `steps` operations with `replay` before the first.
    pub fn new(steps: usize, replay: &Replayer) -> Self {
        let mut series = Self {
            requested_live: StepSeries::new(steps + 1),
            held: StepSeries::new(steps + 1),
            footprint: StepSeries::new(steps + 1),
            samples: Vec::with_capacity(MAX_SAMPLES + 2),
            sample_every: steps.div_ceil(MAX_SAMPLES).max(1),
            total_steps: steps,
            started: Some(Instant::now()),
            ..Self::default()
        };
        series.push_stats(replay);
        series.sample(replay);
        series
    }

    /// Records the step just applied to `replay`; call once per operation, in order.
    pub fn record(&mut self, step: &Step, replay: &Replayer) {
        let at = self.requested_live.len();
        let stats = self.push_stats(replay);
        let failed = matches!(step.result, StepResult::Failed(_));
        self.totals.add(
            &StepMetrics {
                requested_live: stats.requested_live,
                footprint: stats.footprint,
                ..StepMetrics::default()
            },
            failed,
        );
        for v in &step.violations {
            self.violation_count += 1;
            self.problem(Problem {
                at,
                addr: step.addr,
                detail: ProblemDetail::Violation(v.clone()),
            });
        }
        // A refused call that a violation already explains (a double free) is listed once.
        if let StepResult::Failed(e) = &step.result
            && step.violations.is_empty()
        {
            self.problem(Problem {
                at,
                addr: step.addr,
                detail: ProblemDetail::Failed(e.clone()),
            });
        }
        if at.is_multiple_of(self.sample_every) || at == self.total_steps {
            self.sample(replay);
        }
    }

    fn push_stats(&mut self, replay: &Replayer) -> heapscope_core::Stats {
        let stats = replay.heap().stats();
        self.requested_live.push(stats.requested_live);
        self.held.push(stats.held);
        self.footprint.push(stats.footprint);
        stats
    }

    fn sample(&mut self, replay: &Replayer) {
        let began = Instant::now();
        let m = StepMetrics::of(&replay.heap().inspect());
        self.samples.push(Sample {
            at: self.requested_live.len() - 1,
            fragmentation: m.free_space_fragmentation,
            largest_free: m.largest_free,
            free_bytes: m.free_bytes,
        });
        self.sampling += began.elapsed();
        // Sampling may cost as much as the replay itself: when it costs more (large heaps make
        // `inspect` slow), sample half as often from here on and drop every other sample taken,
        // so the samples stay evenly spaced.
        let elapsed = self.started.map_or(Duration::ZERO, |s| s.elapsed());
        let replaying = elapsed.saturating_sub(self.sampling);
        if self.sampling > replaying.max(MIN_SAMPLING_BUDGET) {
            self.thin();
        }
    }

    /// Doubles the sampling interval, keeping the samples that fall on it (and the start).
    fn thin(&mut self) {
        self.sample_every = self.sample_every.saturating_mul(2);
        let every = self.sample_every;
        let end = self.total_steps;
        self.samples
            .retain(|s| s.at.is_multiple_of(every) || s.at == end);
        // What the kept samples cost is spent; the budget restarts from here.
        self.sampling /= 2;
    }

    fn problem(&mut self, problem: Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        }
    }

    /// Steps between layout samples.
    pub fn sample_every(&self) -> usize {
        self.sample_every
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapscope_core::{AllocatorKind, HeapConfig, Op, Trail};

    fn series_of(values: &[u64]) -> StepSeries {
        let mut s = StepSeries::new(values.len());
        s.bucket = 4;
        for &v in values {
            s.push(v);
        }
        s
    }

    #[test]
    fn decimation_keeps_every_extreme_of_each_column() {
        let values: Vec<u64> = (0..1000u64).map(|i| (i * 7919) % 1009).collect();
        let s = series_of(&values);
        let points = s.decimated(0..1000, 10);
        assert_eq!(points.len(), 20);
        for c in 0..10 {
            let chunk = &values[c * 100..(c + 1) * 100];
            let ys = [points[2 * c][1], points[2 * c + 1][1]];
            let lo = *chunk.iter().min().unwrap() as f64;
            let hi = *chunk.iter().max().unwrap() as f64;
            assert!(ys.contains(&lo) && ys.contains(&hi), "column {c}");
            assert_eq!(points[2 * c][0], (c * 100) as f64);
        }
        // An odd sub-range, not aligned to buckets, still sees its own extremes only.
        let points = s.decimated(3..9, 100);
        assert_eq!(points.len(), 6);
        assert_eq!(points[0], [3.0, values[3] as f64]);
        assert_eq!(s.min_max(3..9), {
            let c = &values[3..9];
            Some((*c.iter().min().unwrap(), *c.iter().max().unwrap()))
        });
        assert_eq!(s.max(), *values.iter().max().unwrap());
    }

    #[test]
    fn thinning_keeps_samples_evenly_spaced() {
        let replay = Replayer::new(AllocatorKind::Bump.build(&HeapConfig::default()).unwrap());
        let mut series = LaneSeries::new(100, &replay);
        series.samples.clear();
        for at in (0..=100).step_by(series.sample_every()) {
            series.samples.push(Sample {
                at,
                fragmentation: 0.0,
                largest_free: 0,
                free_bytes: 0,
            });
        }
        assert_eq!(series.sample_every(), 1);
        series.thin();
        series.thin();
        assert_eq!(series.sample_every(), 4);
        let ats: Vec<usize> = series.samples.iter().map(|s| s.at).collect();
        assert_eq!(ats, (0..=100).step_by(4).collect::<Vec<_>>());
    }

    #[test]
    fn recording_keeps_every_step_bounded_samples_and_every_problem() {
        let heap = AllocatorKind::CheckedBump
            .build(&HeapConfig::default())
            .unwrap();
        let mut replay = Replayer::new(heap);
        let mut ops = Vec::new();
        for id in 0..2000 {
            ops.push(Op::Alloc {
                id,
                size: 16,
                align: 0,
            });
        }
        // A double free and a read after free.
        ops.push(Op::Free { id: 3 });
        ops.push(Op::Free { id: 3 });
        ops.push(Op::Read {
            id: 3,
            offset: 0,
            len: 4,
        });
        let mut series = LaneSeries::new(ops.len(), &replay);
        for op in &ops {
            let step = replay.apply(op, &mut Trail::off());
            series.record(&step, &replay);
        }
        assert_eq!(series.requested_live.len(), ops.len() + 1);
        assert_eq!(series.requested_live.get(0), Some(0));
        assert_eq!(series.requested_live.get(2000), Some(2000 * 16));
        assert_eq!(series.requested_live.get(2001), Some(1999 * 16));
        assert!(series.samples.len() <= MAX_SAMPLES + 2);
        let every = series.sample_every();
        let inner = &series.samples[..series.samples.len() - 1];
        assert!(inner.windows(2).all(|w| w[1].at - w[0].at == every));
        assert_eq!(series.samples.first().map(|s| s.at), Some(0));
        assert_eq!(series.samples.last().map(|s| s.at), Some(ops.len()));
        let classes: Vec<(usize, String)> =
            series.problems.iter().map(|p| (p.at, p.class())).collect();
        assert!(
            classes.contains(&(2002, "double-free".to_owned())),
            "{classes:?}"
        );
        assert!(
            classes.contains(&(2003, "use-after-free".to_owned())),
            "{classes:?}"
        );
        assert!(classes.iter().all(|(at, _)| *at >= 2002));
        assert_eq!(series.totals.steps, ops.len() as u64);
        assert_eq!(series.totals.peak_live, 2000 * 16);
    }
}

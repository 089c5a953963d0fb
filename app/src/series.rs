//! What the metrics panel plots over the whole timeline beyond the timeline's own counters,
//! gathered while a lane is recorded: one [`LaneSeries::record`] call per step (from the
//! timeline's `watch`).
//!
//! The timeline keeps requested live bytes, held bytes and the footprint of every step; this adds
//! their min/max per fixed bucket of steps, so that drawing any range costs about as much as the
//! number of pixel columns. Measures that need the whole layout (`inspect()`, O(blocks)) are
//! taken only at a bounded number of evenly spaced sample steps, so recording a million-step
//! trace stays linear.

use std::ops::Range;
use std::time::{Duration, Instant};

use heapscope_core::metrics::{StepMetrics, TraceMetrics};
use heapscope_core::{Replayer, Step, StepResult, Timeline};

/// At most this many layout samples per lane (plus the start).
pub const MAX_SAMPLES: usize = 512;

/// Sampling may always take this long per lane, however fast the recording itself is.
const MIN_SAMPLING_BUDGET: Duration = Duration::from_millis(40);

/// Which of the timeline's per-step counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Bytes the program asked for and holds.
    RequestedLive,
    /// Bytes live blocks occupy.
    Held,
    /// The allocator's footprint.
    Footprint,
}

/// Min/max per fixed bucket of positions of one counter (the values themselves stay in the
/// timeline).
#[derive(Debug, Clone, Default)]
pub struct StepSeries {
    /// Positions recorded (the start included).
    len: usize,
    /// Positions per coarse bucket.
    bucket: usize,
    /// `(min, max)` of each full or partial bucket.
    coarse: Vec<(u64, u64)>,
}

impl StepSeries {
    fn new(capacity: usize) -> Self {
        // About 8,192 coarse buckets whatever the length.
        let bucket = (capacity / 8192).max(1);
        Self {
            len: 0,
            bucket,
            coarse: Vec::with_capacity(capacity / bucket + 1),
        }
    }

    fn push(&mut self, value: u64) {
        if self.len.is_multiple_of(self.bucket) {
            self.coarse.push((value, value));
        } else if let Some((lo, hi)) = self.coarse.last_mut() {
            *lo = (*lo).min(value);
            *hi = (*hi).max(value);
        }
        self.len += 1;
    }

    /// Number of positions recorded.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The highest value.
    pub fn max(&self) -> u64 {
        self.coarse.iter().map(|&(_, hi)| hi).max().unwrap_or(0)
    }

    /// Min and max over `range` (clamped), using whole coarse buckets where it can and `value`
    /// for single positions.
    fn min_max(&self, range: Range<usize>, value: &dyn Fn(usize) -> u64) -> Option<(u64, u64)> {
        let end = range.end.min(self.len);
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
                let v = value(at);
                take(v, v);
                at += 1;
            }
        }
        acc
    }

    /// Points `[position, value]` for drawing `range` in about `columns` pixel columns: every
    /// point when they fit, otherwise the min and the max of each column, so peaks and dips
    /// survive any zoom. `value` reads one position.
    pub fn decimated(
        &self,
        range: Range<usize>,
        columns: usize,
        value: &dyn Fn(usize) -> u64,
    ) -> Vec<[f64; 2]> {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        let len = end - start;
        let columns = columns.max(1);
        if len <= 2 * columns {
            return (start..end).map(|i| [i as f64, value(i) as f64]).collect();
        }
        let mut points = Vec::with_capacity(2 * columns);
        let mut last = value(start);
        for c in 0..columns {
            let from = start + c * len / columns;
            let to = start + (c + 1) * len / columns;
            let Some((lo, hi)) = self.min_max(from..to, value) else {
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

/// One lane's metrics over the whole timeline.
#[derive(Debug, Clone, Default)]
pub struct LaneSeries {
    /// Requested live bytes (position 0 = before the first operation).
    pub requested_live: StepSeries,
    /// Bytes live blocks occupy.
    pub held: StepSeries,
    /// The allocator's footprint.
    pub footprint: StepSeries,
    /// The three counters before the first operation (the timeline keeps those after each).
    start: [u64; 3],
    /// Layout measures at evenly spaced positions (always the start and the end).
    pub samples: Vec<Sample>,
    sample_every: usize,
    total_steps: usize,
    started: Option<Instant>,
    sampling: Duration,
    /// Whole-trace measures (J&W #3/#4, utilization, failures).
    pub totals: TraceMetrics,
    /// Violations met (each violation of a step counts).
    pub violation_count: usize,
    /// Reports in the violations list: violations, and refusals no violation explains.
    pub report_count: usize,
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
        let stats = series.push_stats(replay);
        series.start = [stats.requested_live, stats.held, stats.footprint];
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
        self.violation_count += step.violations.len();
        self.report_count += if step.violations.is_empty() {
            usize::from(failed)
        } else {
            step.violations.len()
        };
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
        // Sampling may add a quarter to the recording: when it costs more (large heaps make
        // `inspect` slow), sample half as often from here on and drop every other sample taken,
        // so the samples stay evenly spaced.
        let elapsed = self.started.map_or(Duration::ZERO, |s| s.elapsed());
        let recording = elapsed.saturating_sub(self.sampling);
        if self.sampling > (recording / 4).max(MIN_SAMPLING_BUDGET) {
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

    /// Steps between layout samples.
    pub fn sample_every(&self) -> usize {
        self.sample_every
    }

    fn counter(&self, counter: Counter) -> &StepSeries {
        match counter {
            Counter::RequestedLive => &self.requested_live,
            Counter::Held => &self.held,
            Counter::Footprint => &self.footprint,
        }
    }

    /// `counter` at position `at` (0 = before the first operation), read from `timeline`.
    pub fn value(&self, timeline: &Timeline, counter: Counter, at: usize) -> Option<u64> {
        let Some(i) = at.checked_sub(1) else {
            return Some(self.start[counter as usize]);
        };
        match counter {
            Counter::RequestedLive => timeline.requested_live(i),
            Counter::Held => timeline.held(i),
            Counter::Footprint => timeline.footprint(i),
        }
    }

    /// `counter` over positions `range`, decimated to about `columns` pixel columns.
    pub fn decimated(
        &self,
        timeline: &Timeline,
        counter: Counter,
        range: Range<usize>,
        columns: usize,
    ) -> Vec<[f64; 2]> {
        let value = |at: usize| self.value(timeline, counter, at).unwrap_or(0);
        self.counter(counter).decimated(range, columns, &value)
    }

    /// The highest value of `counter` over the whole timeline.
    pub fn max(&self, counter: Counter) -> u64 {
        self.counter(counter).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapscope_core::{AllocatorKind, HeapConfig, Op, RecordOptions};

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
        let value = |i: usize| values[i];
        let points = s.decimated(0..1000, 10, &value);
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
        let points = s.decimated(3..9, 100, &value);
        assert_eq!(points.len(), 6);
        assert_eq!(points[0], [3.0, values[3] as f64]);
        assert_eq!(s.min_max(3..9, &value), {
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
    fn recording_through_the_timeline_reads_every_step_and_counts_problems() {
        let mut ops = Vec::new();
        for id in 0..2000 {
            ops.push(Op::Alloc {
                id,
                size: 16,
                align: 0,
            });
        }
        // A double free (one report: the violation explains the refusal) and a read after free.
        ops.push(Op::Free { id: 3 });
        ops.push(Op::Free { id: 3 });
        ops.push(Op::Read {
            id: 3,
            offset: 0,
            len: 4,
        });
        let kind = AllocatorKind::CheckedBump;
        let start = Replayer::new(kind.build(&HeapConfig::default()).unwrap());
        let mut series = LaneSeries::new(ops.len(), &start);
        let timeline = Timeline::record(
            kind,
            HeapConfig::default(),
            &ops,
            &RecordOptions::default(),
            &mut |_, step, replay| {
                series.record(step, replay);
                true
            },
        )
        .unwrap();
        let live = |at| series.value(&timeline, Counter::RequestedLive, at);
        assert_eq!(series.requested_live.len(), ops.len() + 1);
        assert_eq!(live(0), Some(0));
        assert_eq!(live(2000), Some(2000 * 16));
        assert_eq!(live(2001), Some(1999 * 16));
        assert_eq!(series.max(Counter::RequestedLive), 2000 * 16);
        let points = series.decimated(&timeline, Counter::RequestedLive, 0..ops.len() + 1, 50);
        assert!(points.len() <= 100);
        assert!(points.iter().any(|p| p[1] == 32_000.0));
        assert!(series.samples.len() <= MAX_SAMPLES + 2);
        let every = series.sample_every();
        let inner = &series.samples[..series.samples.len() - 1];
        assert!(inner.windows(2).all(|w| w[1].at - w[0].at == every));
        assert_eq!(series.samples.first().map(|s| s.at), Some(0));
        assert_eq!(series.samples.last().map(|s| s.at), Some(ops.len()));
        assert_eq!(series.violation_count, 2);
        assert_eq!(series.report_count, 2);
        assert_eq!(series.totals.steps, ops.len() as u64);
        assert_eq!(series.totals.peak_live, 2000 * 16);
    }
}

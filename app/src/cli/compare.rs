//! `heapscope compare`: whole-trace measures of every chosen allocator over several files.

use std::io::Write;
use std::path::{Path, PathBuf};

use heapscope_core::metrics::{StepMetrics, TraceMetrics};
use heapscope_core::{AllocatorKind, Replayer, StepResult, Trail};
use serde_json::json;

use super::replay::{Progress, load};
use super::{CliError, RunOptions};

/// Output formats of `compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An aligned table.
    Table,
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON array of rows.
    Json,
}

/// Arguments of `compare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareArgs {
    /// Scenarios or traces.
    pub files: Vec<PathBuf>,
    /// Allocators and settings.
    pub run: RunOptions,
    /// Output format.
    pub format: Format,
}

/// Parses the arguments after `compare`.
pub fn parse(args: &[String]) -> Result<CompareArgs, String> {
    let formats = [
        ("table", Format::Table),
        ("csv", Format::Csv),
        ("json", Format::Json),
    ];
    let common = super::parse_common("compare", args, &formats)?;
    if common.files.is_empty() {
        return Err("compare needs at least one FILE".to_owned());
    }
    Ok(CompareArgs {
        files: common.files,
        run: common.run,
        format: common.format,
    })
}

/// One row of the comparison: a file, an allocator, and its whole-trace measures.
pub type Row<'a> = (&'a Path, AllocatorKind, usize, TraceMetrics);

/// Replays `path` on each allocator, keeping only the running counters (cheap on long traces).
fn measure(
    path: &Path,
    run: &RunOptions,
) -> Result<Vec<(AllocatorKind, usize, TraceMetrics)>, String> {
    let scenario = load(path)?;
    let progress = Progress::new(path, scenario.ops.len());
    let mut rows = Vec::new();
    for spec in run.specs(&scenario) {
        let heap = spec
            .kind
            .build(&spec.config)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut replay = Replayer::new(heap);
        let mut totals = TraceMetrics::default();
        let mut trail = Trail::off();
        for (step, op) in scenario.ops.iter().enumerate() {
            progress.tick(step);
            let failed = matches!(replay.apply(op, &mut trail).result, StepResult::Failed(_));
            let stats = replay.heap().stats();
            let m = StepMetrics {
                requested_live: stats.requested_live,
                footprint: stats.footprint,
                ..StepMetrics::default()
            };
            totals.add(&m, failed);
        }
        rows.push((spec.kind, scenario.ops.len(), totals));
    }
    progress.done();
    Ok(rows)
}

/// Runs `compare`, writing to `out`.
pub fn run(args: &CompareArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let mut measured = Vec::new();
    for path in &args.files {
        measured.push((path.as_path(), measure(path, &args.run)?));
    }
    let rows: Vec<Row<'_>> = measured
        .iter()
        .flat_map(|(path, rows)| {
            rows.iter()
                .map(move |&(kind, ops, t)| (*path, kind, ops, t))
        })
        .collect();
    let io = super::output_error;
    match args.format {
        Format::Table => write_table(out, &rows).map_err(io),
        Format::Csv => {
            writeln!(out, "file,allocator,ops,failed,peak_live,peak_footprint,live_at_peak_footprint,jw3,jw4,utilization").map_err(io)?;
            for (path, kind, ops, t) in &rows {
                writeln!(
                    out,
                    "{},{},{ops},{},{},{},{},{},{},{}",
                    file_name(path),
                    kind.name(),
                    t.failed,
                    t.peak_live,
                    t.peak_footprint,
                    t.live_at_peak_footprint,
                    opt(t.jw3()),
                    opt(t.jw4()),
                    opt(t.utilization())
                )
                .map_err(io)?;
            }
            Ok(())
        }
        Format::Json => {
            let list: Vec<_> = rows
                .iter()
                .map(|(path, kind, ops, t)| {
                    json!({
                        "file": path.display().to_string(),
                        "allocator": kind.name(),
                        "ops": ops,
                        "failed": t.failed,
                        "peak_live": t.peak_live,
                        "peak_footprint": t.peak_footprint,
                        "live_at_peak_footprint": t.live_at_peak_footprint,
                        "jw3": t.jw3(),
                        "jw4": t.jw4(),
                        "utilization": t.utilization(),
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(list)).map_err(io)
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_default()
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "-".to_owned())
}

/// Writes rows as an aligned table.
pub fn write_table(out: &mut dyn Write, rows: &[Row<'_>]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<21} {:>8} {:>7} {:>12} {:>14} {:>9} {:>9} {:>7}",
        "file",
        "allocator",
        "ops",
        "failed",
        "peak live",
        "peak footprint",
        "J&W #3",
        "J&W #4",
        "util"
    )?;
    for (path, kind, ops, t) in rows {
        writeln!(
            out,
            "{:<24} {:<21} {ops:>8} {:>7} {:>12} {:>14} {:>9} {:>9} {:>7}",
            file_name(path),
            kind.name(),
            t.failed,
            t.peak_live,
            t.peak_footprint,
            pct(t.jw3()),
            pct(t.jw4()),
            t.utilization()
                .map(|u| format!("{u:.3}"))
                .unwrap_or_else(|| "-".to_owned())
        )?;
    }
    Ok(())
}

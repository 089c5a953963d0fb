//! `heapscope replay`: every step of a file on every chosen allocator.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use heapscope_core::metrics::StepMetrics;
use heapscope_core::{AllocatorKind, Op, Replayer, Scenario, StepResult, Trail, Violation};
use serde_json::{Value, json};

use super::{CliError, RunOptions};

/// Output formats of `replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One aligned line per step per allocator.
    Table,
    /// One JSON object per step per allocator.
    Jsonl,
    /// Metrics per step per allocator.
    Csv,
    /// Whole-trace metrics per allocator.
    Summary,
}

/// Arguments of `replay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayArgs {
    /// The scenario or trace.
    pub file: PathBuf,
    /// Allocators and settings.
    pub run: RunOptions,
    /// Output format.
    pub format: Format,
}

/// Parses the arguments after `replay`.
pub fn parse(args: &[String]) -> Result<ReplayArgs, String> {
    let formats = [
        ("table", Format::Table),
        ("jsonl", Format::Jsonl),
        ("csv", Format::Csv),
        ("summary", Format::Summary),
    ];
    let common = super::parse_common("replay", args, &formats)?;
    let [file] = <[PathBuf; 1]>::try_from(common.files).map_err(|files| {
        if files.is_empty() {
            "replay needs a FILE".to_owned()
        } else {
            "replay takes one FILE".to_owned()
        }
    })?;
    Ok(ReplayArgs {
        file,
        run: common.run,
        format: common.format,
    })
}

/// Loads `path` as a scenario or trace, with a message that names the file on failure.
pub fn load(path: &Path) -> Result<Scenario, String> {
    Scenario::open(path).map_err(|e| e.to_string())
}

/// Runs `replay`, writing to `out`; progress goes to stderr when it is a terminal.
pub fn run(args: &ReplayArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let scenario = load(&args.file)?;
    let specs = args.run.specs(&scenario);
    let mut lanes = Vec::with_capacity(specs.len());
    for spec in &specs {
        let heap = spec
            .kind
            .build(&spec.config)
            .map_err(|e| format!("{}: {e}", args.file.display()))?;
        lanes.push((
            spec.kind,
            Replayer::new(heap),
            heapscope_core::metrics::TraceMetrics::default(),
        ));
    }
    let io = super::output_error;
    if args.format == Format::Csv {
        writeln!(out, "{CSV_HEADER}").map_err(io)?;
    }
    let progress = Progress::new(&args.file, scenario.ops.len());
    let mut trail = Trail::off();
    for (step, op) in scenario.ops.iter().enumerate() {
        progress.tick(step);
        for (kind, replay, totals) in &mut lanes {
            let outcome = replay.apply(op, &mut trail);
            let failed = matches!(outcome.result, StepResult::Failed(_));
            match args.format {
                Format::Jsonl => {
                    let mut line = json!({
                        "allocator": kind.name(),
                        "step": step,
                        "op": op.name(),
                    });
                    if let Some(id) = op.id() {
                        line["id"] = json!(id);
                    }
                    if let Some(size) = op.request_size() {
                        line["size"] = json!(size);
                    }
                    match &outcome.result {
                        StepResult::Placed(ptr) => line["addr"] = json!(ptr),
                        StepResult::Failed(e) => {
                            line["error"] = json!(e.message);
                            line["error_kind"] = json!(e.kind);
                        }
                        StepResult::Skipped(why) => line["skipped"] = json!(why),
                        StepResult::Done => {}
                    }
                    if !outcome.violations.is_empty() {
                        line["violations"] =
                            Value::Array(outcome.violations.iter().map(violation_json).collect());
                    }
                    writeln!(out, "{line}").map_err(io)?;
                }
                Format::Table => {
                    let result = match &outcome.result {
                        StepResult::Placed(ptr) => format!("-> {ptr:#x}"),
                        StepResult::Done => "ok".to_owned(),
                        StepResult::Failed(e) => format!("ERROR {e}"),
                        StepResult::Skipped(why) => format!("skipped: {why}"),
                    };
                    writeln!(
                        out,
                        "{step:>8}  {:<22} {:<34} {result}",
                        kind.name(),
                        op_text(op)
                    )
                    .map_err(io)?;
                    for v in &outcome.violations {
                        writeln!(
                            out,
                            "{:>8}  {:<22} {:<34} {}: {}",
                            "", "", "", v.class, v.message
                        )
                        .map_err(io)?;
                    }
                }
                Format::Csv => {
                    let m = StepMetrics::of(&replay.heap().inspect());
                    writeln!(out, "{}", csv_row(step, *kind, op, &outcome.result, &m))
                        .map_err(io)?;
                }
                Format::Summary => {}
            }
            let stats = replay.heap().stats();
            totals.add(
                &StepMetrics {
                    requested_live: stats.requested_live,
                    footprint: stats.footprint,
                    ..StepMetrics::default()
                },
                failed,
            );
        }
    }
    progress.done();
    if args.format == Format::Summary {
        let rows: Vec<_> = lanes
            .iter()
            .map(|(kind, _, t)| (args.file.as_path(), *kind, scenario.ops.len(), *t))
            .collect();
        super::compare::write_table(out, &rows).map_err(io)?;
    }
    Ok(())
}

/// The header of the per-step metrics CSV (`replay --format csv` and the app's export).
pub const CSV_HEADER: &str = "step,allocator,op,result,requested_live,held,footprint,peak_footprint,internal_bytes,free_space_fragmentation,free_bytes,largest_free,free_blocks";

/// One row of the per-step metrics CSV: what operation `step` did on `kind`, and the metrics
/// after it.
pub fn csv_row(
    step: usize,
    kind: AllocatorKind,
    op: &Op,
    result: &StepResult,
    m: &StepMetrics,
) -> String {
    let result = match result {
        StepResult::Placed(ptr) => format!("{ptr:#x}"),
        StepResult::Done => "ok".to_owned(),
        StepResult::Failed(e) => csv_field(&format!("error: {e}")),
        StepResult::Skipped(_) => "skipped".to_owned(),
    };
    format!(
        "{step},{},{},{result},{},{},{},{},{},{:.6},{},{},{}",
        kind.name(),
        op.name(),
        m.requested_live,
        m.held,
        m.footprint,
        m.peak_footprint,
        m.internal_bytes,
        m.free_space_fragmentation,
        m.free_bytes,
        m.largest_free,
        m.free_blocks
    )
}

fn op_text(op: &Op) -> String {
    let text = op.to_string();
    if text.chars().count() > 34 {
        format!("{}…", text.chars().take(33).collect::<String>())
    } else {
        text
    }
}

fn csv_field(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// A violation as JSON, in the shape `emulate` uses too.
pub fn violation_json(v: &Violation) -> Value {
    let mut value = json!({
        "kind": "violation",
        "class": v.class.name(),
        "addr": v.addr,
        "size": v.len,
        "message": v.message,
    });
    if let Some(access) = v.access {
        value["access"] = json!(access);
    }
    if let Some(block) = &v.block {
        value["block"] = json!({ "start": block.start, "end": block.end });
    }
    value
}

/// Progress on stderr, only when stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: usize,
    every: usize,
    enabled: bool,
}

impl Progress {
    /// Progress over `total` steps of `path`.
    pub fn new(path: &Path, total: usize) -> Self {
        Self {
            label: path.display().to_string(),
            total,
            every: (total / 100).max(1),
            enabled: std::io::stderr().is_terminal() && total >= 10_000,
        }
    }

    /// Reports reaching `step`.
    pub fn tick(&self, step: usize) {
        if self.enabled && step.is_multiple_of(self.every) {
            eprint!("\r{}: {}%", self.label, step * 100 / self.total.max(1));
        }
    }

    /// Clears the progress line.
    pub fn done(&self) {
        if self.enabled {
            eprint!("\r{}: done\n", self.label);
        }
    }
}

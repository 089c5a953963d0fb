//! `heapscope emulate`: run a program on Unicorn with its heap served by each chosen allocator.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use heapscope_core::emulate::{self, BlockInfo, Event, Exit, Image, Options, Run};
use heapscope_core::{Op, Scenario};
use serde_json::{Value, json};

use super::{CliError, RunOptions};

/// Output formats of `emulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Calls and findings, one per line, with the reports in full.
    Table,
    /// One JSON object per call, finding and exit.
    Jsonl,
}

/// Arguments of `emulate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulateArgs {
    /// The ELF file or scenario.
    pub file: PathBuf,
    /// Allocators and settings.
    pub run: RunOptions,
    /// `--entry`.
    pub entry: Option<String>,
    /// `--arg`, in order.
    pub args: Vec<u64>,
    /// `--max-insns`.
    pub max_insns: Option<u64>,
    /// `--timeout-ms`.
    pub timeout_ms: Option<u64>,
    /// `--stop-on-first`.
    pub stop_on_first: bool,
    /// Output format.
    pub format: Format,
}

/// Parses the arguments after `emulate`.
pub fn parse(args: &[String]) -> Result<EmulateArgs, String> {
    let mut parsed = EmulateArgs {
        file: PathBuf::new(),
        run: RunOptions::default(),
        entry: None,
        args: Vec::new(),
        max_insns: None,
        timeout_ms: None,
        stop_on_first: false,
        format: Format::Table,
    };
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if parsed.run.take(arg, &mut it)? {
            continue;
        }
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--entry" => parsed.entry = Some(value()?),
            "--arg" => parsed.args.push(super::number(arg, &value()?)?),
            "--max-insns" => parsed.max_insns = Some(super::number(arg, &value()?)?),
            "--timeout-ms" => parsed.timeout_ms = Some(super::number(arg, &value()?)?),
            "--stop-on-first" => parsed.stop_on_first = true,
            "--format" | "-f" => {
                parsed.format = match value()?.as_str() {
                    "table" => Format::Table,
                    "jsonl" => Format::Jsonl,
                    other => {
                        return Err(format!("--format: `{other}` is not one of table, jsonl"));
                    }
                };
            }
            flag if flag.starts_with('-') => {
                return Err(format!("emulate: unknown option `{flag}`"));
            }
            path => files.push(PathBuf::from(path)),
        }
    }
    parsed.file = match <[PathBuf; 1]>::try_from(files) {
        Ok([file]) => file,
        Err(files) if files.is_empty() => return Err("emulate needs a FILE".to_owned()),
        Err(_) => return Err("emulate takes one FILE".to_owned()),
    };
    Ok(parsed)
}

/// What to run: the image, the scenario it came with (or a stand-in), and the options.
fn load(args: &EmulateArgs) -> Result<(Image, Scenario, Options), String> {
    let path = &args.file;
    let head = read_head(path)?;
    let (image, scenario, mut options) = if head.starts_with(b"\x7fELF") {
        let image = Image::load(path).map_err(|e| e.to_string())?;
        let name = path.display().to_string();
        (
            image,
            Scenario::from_trace(name, Default::default()),
            Options::default(),
        )
    } else {
        let scenario = Scenario::load(path).map_err(|e| e.to_string())?;
        let Some(program) = &scenario.program else {
            return Err(format!(
                "{}: neither an ELF file nor a scenario with a `program:` \
                 (to replay a trace, use `heapscope replay`)",
                path.display()
            ));
        };
        let image = program.image(path).map_err(|e| e.to_string())?;
        let options = program.options();
        (image, scenario, options)
    };
    if let Some(entry) = &args.entry {
        options.entry.clone_from(entry);
    }
    if !args.args.is_empty() {
        options.args.clone_from(&args.args);
    }
    if let Some(n) = args.max_insns {
        options.max_insns = n;
    }
    if let Some(ms) = args.timeout_ms {
        options.timeout = Duration::from_millis(ms);
    }
    options.stop_on_first |= args.stop_on_first;
    Ok((image, scenario, options))
}

fn read_head(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut head = vec![0; 4];
    let n = file
        .read(&mut head)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    head.truncate(n);
    Ok(head)
}

/// Runs `emulate`, writing to `out`.
pub fn run(args: &EmulateArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let (image, scenario, options) = load(args)?;
    let io = super::output_error;
    for spec in args.run.specs(&scenario) {
        let run =
            emulate::run(&image, spec.kind, &spec.config, &options).map_err(|e| e.to_string())?;
        match args.format {
            Format::Jsonl => write_jsonl(out, &run).map_err(io)?,
            Format::Table => write_table(out, &image, &run).map_err(io)?,
        }
    }
    Ok(())
}

fn block_json(block: &BlockInfo) -> Value {
    let mut value = json!({
        "id": block.id,
        "start": block.start,
        "end": block.end,
        "allocated_at": block.allocated_at,
    });
    if let Some(t) = block.freed_at {
        value["freed_at"] = json!(t);
    }
    value
}

/// One JSON object per heap call, violation, warning, corruption report and exit.
fn write_jsonl(out: &mut dyn Write, run: &Run) -> std::io::Result<()> {
    let allocator = run.kind.name();
    for event in &run.events {
        let line = match event {
            Event::Call(call) => {
                let op = run.op(call.step);
                let mut line = json!({
                    "allocator": allocator,
                    "step": call.step,
                    "op": op.as_ref().map_or("call", Op::name),
                    "function": call.function.name(),
                    "args": call.args,
                });
                if let Some(op) = &op {
                    if let Some(id) = op.id() {
                        line["id"] = json!(id);
                    }
                    if let Some(size) = op.request_size() {
                        line["size"] = json!(size);
                    }
                }
                if let Some(pc) = call.pc {
                    line["pc"] = json!(pc);
                }
                match &call.result {
                    Ok(Some(ptr)) => line["addr"] = json!(ptr),
                    Ok(None) => {}
                    Err(e) => {
                        line["error"] = json!(e.message);
                        line["error_kind"] = json!(e.kind);
                    }
                }
                if let Some(note) = &call.note {
                    line["note"] = json!(note);
                }
                line
            }
            Event::Violation(v) => {
                let mut line = super::replay::violation_json(&v.violation);
                line["allocator"] = json!(allocator);
                line["step"] = json!(v.step);
                if let Some(pc) = v.site.pc {
                    line["pc"] = json!(pc);
                }
                if let Some(text) = &v.site.instruction {
                    line["instruction"] = json!(text);
                }
                if let Some(block) = &v.block {
                    line["block"] = block_json(block);
                }
                line["report"] = json!(v.report);
                line
            }
            Event::Warning(w) => {
                let mut line = json!({
                    "kind": "warning",
                    "allocator": allocator,
                    "step": w.step,
                    "class": w.class.name(),
                    "access": w.access,
                    "addr": w.addr,
                    "size": w.size,
                    "report": w.report,
                });
                if let Some(pc) = w.site.pc {
                    line["pc"] = json!(pc);
                }
                if let Some(text) = &w.site.instruction {
                    line["instruction"] = json!(text);
                }
                if let (Some(state), Some(range)) = (w.hit, &w.hit_range) {
                    line["hit"] = json!({ "state": state, "start": range.start, "end": range.end });
                }
                if let Some(block) = &w.block {
                    line["block"] = block_json(block);
                }
                line
            }
            Event::Corruption { step, findings } => json!({
                "kind": "corruption",
                "allocator": allocator,
                "step": step,
                "findings": findings,
            }),
            Event::Exit { step, exit } => {
                let mut line = json!({
                    "kind": "exit",
                    "allocator": allocator,
                    "step": step,
                    "reason": exit.reason(),
                    "message": exit.to_string(),
                });
                match exit {
                    Exit::Returned { value } => line["value"] = json!(value),
                    Exit::Fault { pc: Some(pc), .. } | Exit::InvalidInstruction { pc } => {
                        line["pc"] = json!(pc);
                    }
                    _ => {}
                }
                line
            }
        };
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n          ")
}

/// What makes two findings in a row "alike": the same kind, instruction, class and place.
fn fold_key(event: &Event) -> Option<(bool, Option<u64>, &'static str, Option<u64>)> {
    match event {
        Event::Violation(v) => Some((
            true,
            v.site.pc,
            v.violation.class.name(),
            v.block.as_ref().map(|b| b.start),
        )),
        Event::Warning(w) => Some((
            false,
            w.site.pc,
            w.class.name(),
            w.hit_range.as_ref().map(|r| r.start),
        )),
        _ => None,
    }
}

/// The calls and findings, with runs of alike findings (a loop overflowing byte by byte)
/// folded into the first.
fn write_table(out: &mut dyn Write, image: &Image, run: &Run) -> std::io::Result<()> {
    writeln!(out, "== {} on {}", image.origin, run.kind.name())?;
    let mut folded = 0usize;
    let mut last = None;
    for event in &run.events {
        let key = fold_key(event);
        if key.is_some() && key == last {
            folded += 1;
            continue;
        }
        if folded > 0 {
            writeln!(out, "          … and {folded} more like it")?;
            folded = 0;
        }
        last = key;
        match event {
            Event::Call(call) => {
                let args: Vec<String> = call.args.iter().map(|a| format!("{a:#x}")).collect();
                let result = match &call.result {
                    Ok(Some(ptr)) => format!("-> {ptr:#x}"),
                    Ok(None) => "ok".to_owned(),
                    Err(e) => format!("ERROR {e}"),
                };
                let from = call
                    .pc
                    .map(|pc| format!("  (from {pc:#x})"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:>8}  {}({}) {result}{from}",
                    call.step,
                    call.function.name(),
                    args.join(", ")
                )?;
                if let Some(note) = &call.note {
                    writeln!(out, "          {note}")?;
                }
            }
            Event::Violation(v) => writeln!(out, "{:>8}  {}", v.step, indent(&v.report))?,
            Event::Warning(w) => writeln!(out, "{:>8}  {}", w.step, indent(&w.report))?,
            Event::Corruption { step, findings } => {
                writeln!(
                    out,
                    "{step:>8}  corruption: validate() finds the heap broken:"
                )?;
                for f in findings {
                    writeln!(out, "          - {}", f.message)?;
                }
            }
            Event::Exit { step, exit } => writeln!(out, "{step:>8}  exit: {exit}")?,
        }
    }
    writeln!(
        out,
        "          {} ops ({} heap calls, {} heap accesses), {} violations, {} warnings",
        run.op_count(),
        run.calls().count(),
        run.accesses.len(),
        run.violations().count(),
        run.warnings().count()
    )
}

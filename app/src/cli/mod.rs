//! Command-line parsing, and the commands that run without a window.

pub mod compare;
pub mod emulate;
pub mod replay;

use std::path::PathBuf;

use heapscope_core::{AllocatorKind, HeapConfig};

use crate::app::{ScreenshotRequest, StartOptions};

/// Usage text.
pub const USAGE: &str = "\
usage: heapscope [FILE] [--step N] [--screenshot OUT.png] [--light|--dark] [--compare]
                 [--violations]
       heapscope replay FILE [--allocator NAME]... [--format table|jsonl|csv|summary]
                             [--heap-base N] [--heap-size N] [--heap-max N]
       heapscope compare FILE... [--allocator NAME]... [--format table|csv|json]
                             [--heap-base N] [--heap-size N] [--heap-max N]
       heapscope emulate FILE [--allocator NAME]... [--entry SYMBOL] [--arg N]...
                             [--max-insns N] [--timeout-ms N] [--stop-on-first]
                             [--format table|jsonl] [--heap-base N] [--heap-size N] [--heap-max N]

  FILE                a scenario (.ron) or a trace (malloclab .rep, glibc mtrace, ltrace),
                      recognised by its content; without it the default scenario opens
  --step N            stand after N operations
  --screenshot OUT    render one frame to a PNG and exit (needs a window system, e.g. xvfb-run)
  --light, --dark     force the theme
  --compare           start in compare mode (every allocator side by side)
  --violations        start with the violations list open
  --allocator NAME    run only this allocator (repeatable): bump, checked-bump, freeing-bump,
                      freeing-bump-tetcore, segregated-fit, dlmalloc, nutmeg-pool
  --heap-base/size/max  heap settings for every allocator run (decimal or 0x hex)
  emulate FILE        a static x86-64 ELF, or a scenario with a `program:`; its malloc, calloc,
                      realloc and free are served by each allocator (see scenarios/guests/)
";

/// Why a command-line run ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Bad input: print this one message and exit 1.
    Message(String),
    /// The reader of our output went away (`| head`): stop quietly, as Unix tools do.
    Quiet,
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::Message(message)
    }
}

/// Maps an output error: a closed pipe ends the run quietly, anything else is reported.
#[allow(clippy::needless_pass_by_value)] // the shape `map_err` wants
pub fn output_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::Quiet
    } else {
        CliError::Message(format!("writing output: {e}"))
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Print usage.
    Help,
    /// Open the app.
    Gui(StartOptions),
    /// Replay a file and print each step.
    Replay(replay::ReplayArgs),
    /// Compare allocators over files.
    Compare(compare::CompareArgs),
    /// Emulate a program against allocators.
    Emulate(emulate::EmulateArgs),
}

/// Which allocators to run and with what settings (shared by `replay` and `compare`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Chosen allocators; empty means the scenario's own (or all).
    pub allocators: Vec<AllocatorKind>,
    /// Settings that override the scenario's, for every allocator.
    pub config: HeapConfig,
}

impl RunOptions {
    /// Takes `--allocator` and `--heap-*` options; returns whether `arg` was one of them.
    fn take(&mut self, arg: &str, it: &mut std::slice::Iter<'_, String>) -> Result<bool, String> {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg {
            "--allocator" | "-a" => {
                let name = value(arg)?;
                self.allocators
                    .push(name.parse().map_err(|e| format!("--allocator: {e}"))?);
            }
            "--heap-base" => self.config.base = Some(number(arg, &value(arg)?)?),
            "--heap-size" => self.config.size = Some(number(arg, &value(arg)?)?),
            "--heap-max" => self.config.max = Some(number(arg, &value(arg)?)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The allocators to run for `scenario`, with these options' settings laid over its own.
    pub fn specs(
        &self,
        scenario: &heapscope_core::Scenario,
    ) -> Vec<heapscope_core::scenario::AllocatorSpec> {
        let mut specs = scenario.allocator_specs();
        if !self.allocators.is_empty() {
            specs = self
                .allocators
                .iter()
                .map(|&kind| {
                    specs.iter().find(|s| s.kind == kind).cloned().unwrap_or(
                        heapscope_core::scenario::AllocatorSpec {
                            kind,
                            config: HeapConfig::default(),
                        },
                    )
                })
                .collect();
        }
        for spec in &mut specs {
            let c = &self.config;
            spec.config.base = c.base.or(spec.config.base);
            spec.config.size = c.size.or(spec.config.size);
            spec.config.max = c.max.or(spec.config.max);
        }
        specs
    }
}

/// What `replay` and `compare` share on their command lines: files, allocator options and one
/// `--format` out of `formats`.
#[derive(Debug)]
pub struct Common<F> {
    /// Positional arguments.
    pub files: Vec<PathBuf>,
    /// Allocators and settings.
    pub run: RunOptions,
    /// The chosen format.
    pub format: F,
}

/// Parses the arguments after `command`; the first entry of `formats` is the default.
pub fn parse_common<F: Copy>(
    command: &str,
    args: &[String],
    formats: &[(&str, F)],
) -> Result<Common<F>, String> {
    let Some(&(_, mut format)) = formats.first() else {
        return Err(format!("{command}: no output formats"));
    };
    let mut run = RunOptions::default();
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if run.take(arg, &mut it)? {
            continue;
        }
        match arg.as_str() {
            "--format" | "-f" => {
                let value = it.next().ok_or("--format needs a value")?;
                format = formats
                    .iter()
                    .find(|(name, _)| name == value)
                    .map(|&(_, f)| f)
                    .ok_or_else(|| {
                        let names: Vec<&str> = formats.iter().map(|(n, _)| *n).collect();
                        format!("--format: `{value}` is not one of {}", names.join(", "))
                    })?;
            }
            flag if flag.starts_with('-') => {
                return Err(format!("{command}: unknown option `{flag}`"));
            }
            path => files.push(PathBuf::from(path)),
        }
    }
    Ok(Common { files, run, format })
}

/// A number in decimal or `0x` hexadecimal.
fn number(option: &str, text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => text.replace('_', "").parse(),
    };
    parsed.map_err(|_| format!("{option}: `{text}` is not a number"))
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    match args.first().map(String::as_str) {
        Some("replay") => return replay::parse(&args[1..]).map(Invocation::Replay),
        Some("compare") => return compare::parse(&args[1..]).map(Invocation::Compare),
        Some("emulate") => return emulate::parse(&args[1..]).map(Invocation::Emulate),
        _ => {}
    }
    let mut options = StartOptions::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Invocation::Help),
            "--step" => {
                let value = it.next().ok_or("--step needs a number")?;
                let step = value
                    .parse()
                    .map_err(|_| format!("--step: `{value}` is not a step number"))?;
                options.step = Some(step);
            }
            "--screenshot" => {
                let path = it.next().ok_or("--screenshot needs an output path")?;
                options.screenshot = Some(ScreenshotRequest {
                    path: PathBuf::from(path),
                    after_frames: 4,
                });
                options.fresh_settings = true;
            }
            "--light" => options.dark = Some(false),
            "--dark" => options.dark = Some(true),
            "--compare" => options.compare = true,
            "--violations" => options.dock = Some(crate::settings::DockTab::Violations),
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            file => {
                if options.file.replace(PathBuf::from(file)).is_some() {
                    return Err("only one FILE can be opened".to_owned());
                }
            }
        }
    }
    Ok(Invocation::Gui(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn parses_file_step_and_screenshot() {
        let Ok(Invocation::Gui(o)) = parse(&args(&[
            "a.ron",
            "--step",
            "3",
            "--screenshot",
            "o.png",
            "--light",
        ])) else {
            panic!("expected gui");
        };
        assert_eq!(o.file, Some(PathBuf::from("a.ron")));
        assert_eq!(o.step, Some(3));
        assert!(o.screenshot.is_some() && o.fresh_settings);
        assert_eq!(o.dark, Some(false));
    }

    #[test]
    fn parses_subcommands_with_allocators_and_heap_settings() {
        let Ok(Invocation::Replay(r)) = parse(&args(&[
            "replay",
            "t.rep",
            "--allocator",
            "freeing-bump",
            "-a",
            "dlmalloc",
            "--format",
            "jsonl",
            "--heap-base",
            "0x10",
            "--heap-size",
            "65_536",
        ])) else {
            panic!("expected replay");
        };
        assert_eq!(r.file, PathBuf::from("t.rep"));
        assert_eq!(
            r.run.allocators,
            vec![AllocatorKind::FreeingBump, AllocatorKind::Dlmalloc]
        );
        assert_eq!(
            (r.run.config.base, r.run.config.size),
            (Some(16), Some(65536))
        );
        assert_eq!(r.format, replay::Format::Jsonl);
        let Ok(Invocation::Compare(c)) =
            parse(&args(&["compare", "a.rep", "b.rep", "--format", "csv"]))
        else {
            panic!("expected compare");
        };
        assert_eq!(c.files.len(), 2);
        assert!(parse(&args(&["replay"])).unwrap_err().contains("FILE"));
        assert!(
            parse(&args(&["replay", "x", "-a", "tcmalloc"]))
                .unwrap_err()
                .contains("tcmalloc")
        );
        assert!(
            parse(&args(&["compare", "x", "--format", "jsonl"]))
                .unwrap_err()
                .contains("jsonl")
        );
    }

    #[test]
    fn rejects_bad_arguments_with_a_message() {
        assert!(parse(&args(&["--step", "x"])).unwrap_err().contains("`x`"));
        assert!(parse(&args(&["--bogus"])).unwrap_err().contains("--bogus"));
        assert!(parse(&args(&["a", "b"])).is_err());
    }
}

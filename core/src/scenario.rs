//! Scenarios: a trace with a description and the allocators to run it on, stored as RON.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::emulate::Program;
use crate::import::{Format, ImportError, import_file};
use crate::kind::{AllocatorKind, ConfigError, HeapConfig};
use crate::trace::{Flag, Op, Trace};

/// One allocator a scenario runs, with its settings.
///
/// Reading one checks that the allocator can be built, so that a bad entry is reported at its
/// place in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawSpec")]
pub struct AllocatorSpec {
    /// Which variant (`"freeing-bump"`, ...).
    pub kind: AllocatorKind,
    /// Its settings; unset ones take the variant's defaults.
    #[serde(default)]
    pub config: HeapConfig,
}

/// An [`AllocatorSpec`] as written, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "AllocatorSpec")]
struct RawSpec {
    kind: AllocatorKind,
    #[serde(default)]
    config: HeapConfig,
}

impl TryFrom<RawSpec> for AllocatorSpec {
    type Error = ConfigError;

    fn try_from(raw: RawSpec) -> Result<Self, Self::Error> {
        raw.kind.build(&raw.config)?;
        Ok(Self {
            kind: raw.kind,
            config: raw.config,
        })
    }
}

/// A scenario file.
///
/// Its operations are either written inline (`ops`) or imported from a trace file (`trace`,
/// with an optional `format`), never both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawScenario")]
pub struct Scenario {
    /// Title shown in the app.
    pub name: String,
    /// Markdown telling a learner what to look at.
    #[serde(default)]
    pub description: String,
    /// Allocators to run; empty means every variant with default settings.
    #[serde(default)]
    pub allocators: Vec<AllocatorSpec>,
    /// The operations (imported from `trace` by [`Scenario::load`] when that is set).
    #[serde(default)]
    pub ops: Vec<Op>,
    /// A trace file to import the operations from, relative to the scenario file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// The trace's format; detected from its content when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// What the importer noticed about the traced program, by step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
    /// A program to emulate instead of operations (`heapscope emulate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<Program>,
}

/// A [`Scenario`] as written, before its fields are checked against each other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "Scenario")]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    allocators: Vec<AllocatorSpec>,
    #[serde(default)]
    ops: Vec<Op>,
    #[serde(default)]
    trace: Option<String>,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    flags: Vec<Flag>,
    #[serde(default)]
    program: Option<Program>,
}

impl TryFrom<RawScenario> for Scenario {
    type Error = std::borrow::Cow<'static, str>;

    fn try_from(raw: RawScenario) -> Result<Self, Self::Error> {
        if raw.trace.is_some() && !(raw.ops.is_empty() && raw.flags.is_empty()) {
            return Err(
                "a scenario takes its operations either inline (`ops`) or from a \
                        `trace` file, not both"
                    .into(),
            );
        }
        if let Some(program) = &raw.program {
            if raw.trace.is_some() || !raw.ops.is_empty() {
                return Err("a scenario runs either a `program` or operations, not both".into());
            }
            program.check().map_err(|e| std::borrow::Cow::Owned(e.0))?;
        }
        if raw.format.is_some() && raw.trace.is_none() {
            return Err("`format` names the format of a `trace` file, and there is none".into());
        }
        Ok(Self {
            name: raw.name,
            description: raw.description,
            allocators: raw.allocators,
            ops: raw.ops,
            trace: raw.trace,
            format: raw.format,
            flags: raw.flags,
            program: raw.program,
        })
    }
}

/// A scenario that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The RON text is malformed or does not describe a scenario.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What was expected or wrong.
        message: String,
    },
    /// An allocator entry cannot be built.
    #[error("{path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ConfigError,
    },
    /// The trace file the scenario names cannot be imported.
    #[error("{path}: {source}")]
    Trace {
        /// The scenario file.
        path: PathBuf,
        /// Why (naming the trace file and its line).
        source: ImportError,
    },
}

/// Whether `text` starts, after blank lines, comments and RON extension attributes, like a
/// scenario: trace detectors are lenient (ltrace skips lines it does not know), so a broken
/// scenario must not be taken for a trace.
fn looks_like_ron(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with("#!["))
        .is_some_and(|l| l.starts_with("Scenario") || l.starts_with('('))
}

fn ron_options() -> ron::Options {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
}

impl Scenario {
    /// A scenario running the operations of an imported `trace` on every allocator.
    pub fn from_trace(name: impl Into<String>, trace: Trace) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            allocators: Vec::new(),
            ops: trace.ops,
            trace: None,
            format: None,
            flags: trace.flags,
            program: None,
        }
    }

    /// Parses RON `text`; `path` only names the source in errors.
    ///
    /// A `trace` the scenario names is not read: [`Scenario::load`] or
    /// [`Scenario::load_trace`] does that.
    pub fn from_ron(text: &str, path: &Path) -> Result<Self, ScenarioError> {
        // Allocator entries are checked while reading (see `AllocatorSpec`), so a bad one is
        // a parse error with its position.
        ron_options()
            .from_str(text)
            .map_err(|e| ScenarioError::Parse {
                path: path.to_owned(),
                line: e.span.start.line,
                column: e.span.start.col,
                message: e.code.to_string(),
            })
    }

    /// Reads and parses the scenario file at `path`, importing the trace it names.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut scenario = Self::from_ron(&text, path)?;
        scenario.load_trace(path)?;
        Ok(scenario)
    }

    /// Opens any file heapscope reads: a trace in a format [`detect`](crate::import::detect)
    /// recognises becomes a scenario named after the file, running every allocator; anything
    /// else is read as a RON scenario (and its errors are RON's, with line and column).
    pub fn open(path: &Path) -> Result<Self, ScenarioError> {
        let bytes = std::fs::read(path).map_err(|source| ScenarioError::Io {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        if let Some(format) = crate::import::detect(&text).filter(|_| !looks_like_ron(&text)) {
            let trace = crate::import::import(&text, format).map_err(|e| ScenarioError::Trace {
                path: path.to_owned(),
                source: e.in_file(path),
            })?;
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            return Ok(Self::from_trace(name, trace));
        }
        let mut scenario = Self::from_ron(&text, path)?;
        scenario.load_trace(path)?;
        Ok(scenario)
    }

    /// Imports the trace the scenario names (if any) into `ops` and `flags`, resolving its
    /// path against the directory of the scenario file at `path`.
    pub fn load_trace(&mut self, path: &Path) -> Result<(), ScenarioError> {
        let Some(trace) = &self.trace else {
            return Ok(());
        };
        let file = path.parent().unwrap_or(Path::new("")).join(trace);
        let imported = import_file(&file, self.format).map_err(|source| ScenarioError::Trace {
            path: path.to_owned(),
            source,
        })?;
        self.ops = imported.ops;
        self.flags = imported.flags;
        Ok(())
    }

    /// The allocators to run: the listed ones, or every variant with defaults.
    pub fn allocator_specs(&self) -> Vec<AllocatorSpec> {
        if self.allocators.is_empty() {
            AllocatorKind::ALL
                .iter()
                .map(|&kind| AllocatorSpec {
                    kind,
                    config: HeapConfig::default(),
                })
                .collect()
        } else {
            self.allocators.clone()
        }
    }

    /// The scenario as pretty RON. A scenario whose operations come from a `trace` file is
    /// written with the reference, not the imported operations.
    pub fn to_ron(&self) -> Result<String, ron::Error> {
        let pretty = ron::ser::PrettyConfig::new().struct_names(true);
        if self.trace.is_some() && !(self.ops.is_empty() && self.flags.is_empty()) {
            let reference = Self {
                name: self.name.clone(),
                description: self.description.clone(),
                allocators: self.allocators.clone(),
                ops: Vec::new(),
                trace: self.trace.clone(),
                format: self.format,
                flags: Vec::new(),
                program: self.program.clone(),
            };
            return ron_options().to_string_pretty(&reference, pretty);
        }
        ron_options().to_string_pretty(self, pretty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_scenario_with_implicit_some_and_round_trips() {
        let text = r#"Scenario(
            name: "t",
            allocators: [(kind: "checked-bump", config: (base: 0x1000, size: 4096))],
            ops: [Alloc(id: 1, size: 9), Free(id: 1), Mark(label: "done")],
        )"#;
        let scenario = Scenario::from_ron(text, Path::new("t.ron")).unwrap();
        assert_eq!(scenario.allocators[0].config.base, Some(0x1000));
        assert_eq!(scenario.ops.len(), 3);
        let again = Scenario::from_ron(&scenario.to_ron().unwrap(), Path::new("u.ron")).unwrap();
        assert_eq!(again, scenario);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let text = "Scenario(\n  name: \"t\",\n  ops: [Alloc(id: 1, sise: 9)],\n)";
        let err = Scenario::from_ron(text, Path::new("bad.ron"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.ron:3:"), "{err}");
        assert!(err.contains("sise"), "{err}");
        let err = Scenario::from_ron(
            r#"Scenario(name: "t", allocators: [(kind: "tcmalloc")])"#,
            Path::new("k.ron"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown allocator `tcmalloc`"), "{err}");
    }

    #[test]
    fn a_bad_allocator_entry_is_reported_at_its_line() {
        let text = "Scenario(\n  name: \"t\",\n  allocators: [\n    (kind: \"bump\", config: (size: 0x100000000000000)),\n  ],\n)";
        let err = Scenario::from_ron(text, Path::new("c.ron")).unwrap_err();
        let ScenarioError::Parse { line, message, .. } = &err else {
            panic!("expected a parse error, got {err}");
        };
        assert_eq!(*line, 4, "{err}");
        assert!(message.contains("1 TiB"), "{err}");
    }

    #[test]
    fn trace_and_inline_ops_are_exclusive() {
        for (text, needle) in [
            (
                "Scenario(\n name: \"t\",\n trace: \"t.rep\",\n ops: [FreeNull],\n)",
                "not both",
            ),
            (
                "Scenario(\n name: \"t\",\n format: \"mtrace\",\n)",
                "there is none",
            ),
            (
                "Scenario(\n name: \"t\",\n trace: \"t.rep\",\n format: \"valgrind\",\n)",
                "valgrind",
            ),
        ] {
            let err = Scenario::from_ron(text, Path::new("x.ron"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("x.ron:"), "{err}");
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn a_scenario_can_run_an_imported_trace_and_saves_the_reference() {
        let dir = std::env::temp_dir().join(format!("heapscope-scenario-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("traces")).unwrap();
        std::fs::write(
            dir.join("traces/t.log"),
            "malloc(16) = 0x10\nfree(0x10) = <void>\nfree(0x10) = <void>\n",
        )
        .unwrap();
        let path = dir.join("s.ron");
        std::fs::write(
            &path,
            "Scenario(name: \"imported\", trace: \"traces/t.log\", format: \"ltrace\")",
        )
        .unwrap();
        let scenario = Scenario::load(&path).unwrap();
        assert_eq!(scenario.ops.len(), 3);
        assert_eq!(scenario.ops[2], Op::Free { id: 1 });
        assert_eq!(scenario.flags.len(), 1);
        assert_eq!(scenario.flags[0].step, 2);
        // Saved, it keeps pointing at the trace instead of inlining it.
        let saved = scenario.to_ron().unwrap();
        assert!(
            saved.contains("traces/t.log") && !saved.contains("Free"),
            "{saved}"
        );
        let reread = Scenario::from_ron(&saved, &path).unwrap();
        assert_eq!(reread.trace, scenario.trace);
        assert!(reread.ops.is_empty());
        // Forced to the wrong format, the error names the scenario, the trace and its line.
        std::fs::write(
            &path,
            "Scenario(name: \"imported\", trace: \"traces/t.log\", format: \"mtrace\")",
        )
        .unwrap();
        let err = Scenario::load(&path).unwrap_err().to_string();
        assert!(err.contains("s.ron") && err.contains("t.log:1: "), "{err}");
        std::fs::write(&path, "Scenario(name: \"gone\", trace: \"nope.rep\")").unwrap();
        let err = Scenario::load(&path).unwrap_err().to_string();
        assert!(err.contains("nope.rep"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_imported_trace_exported_as_ron_reads_back_the_same() {
        let text = "= Start\n@ ./a.out:[0x4005d4] + 0x602010 0x10\n+ 0x602030 0x20\n\
                    < 0x602010\n> 0x602060 0x40\n- 0x602060\n- 0x602060\n- 0x999\n\
                    + (nil) 0x1000\n= End\n";
        let trace = crate::import::import(text, Format::Mtrace).unwrap();
        assert!(!trace.flags.is_empty());
        let scenario = Scenario::from_trace("exported", trace.clone());
        let ron = scenario.to_ron().unwrap();
        let back = Scenario::from_ron(&ron, Path::new("e.ron")).unwrap();
        assert_eq!(back.ops, trace.ops);
        assert_eq!(back.flags, trace.flags);
        assert_eq!(back, scenario);
    }
}

//! Scenarios: a trace with a description and the allocators to run it on, stored as RON.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::kind::{AllocatorKind, ConfigError, HeapConfig};
use crate::trace::Op;

/// One allocator a scenario runs, with its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocatorSpec {
    /// Which variant (`"freeing-bump"`, ...).
    pub kind: AllocatorKind,
    /// Its settings; unset ones take the variant's defaults.
    #[serde(default)]
    pub config: HeapConfig,
}

/// A scenario file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Title shown in the app.
    pub name: String,
    /// Markdown telling a learner what to look at.
    #[serde(default)]
    pub description: String,
    /// Allocators to run; empty means every variant with default settings.
    #[serde(default)]
    pub allocators: Vec<AllocatorSpec>,
    /// The operations.
    #[serde(default)]
    pub ops: Vec<Op>,
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
}

fn ron_options() -> ron::Options {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
}

impl Scenario {
    /// Parses RON `text`; `path` only names the source in errors.
    pub fn from_ron(text: &str, path: &Path) -> Result<Self, ScenarioError> {
        let scenario: Scenario =
            ron_options()
                .from_str(text)
                .map_err(|e| ScenarioError::Parse {
                    path: path.to_owned(),
                    line: e.span.start.line,
                    column: e.span.start.col,
                    message: e.code.to_string(),
                })?;
        for spec in &scenario.allocators {
            spec.kind
                .build(&spec.config)
                .map_err(|source| ScenarioError::Config {
                    path: path.to_owned(),
                    source,
                })?;
        }
        Ok(scenario)
    }

    /// Reads and parses the scenario file at `path`.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_ron(&text, path)
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

    /// The scenario as pretty RON.
    pub fn to_ron(&self) -> Result<String, ron::Error> {
        let pretty = ron::ser::PrettyConfig::new().struct_names(true);
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
}

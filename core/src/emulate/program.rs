//! A program in a scenario: an ELF file next to it, or raw machine code, with the run settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::image::{Image, parse_hex};
use super::{EmulateError, Options};

/// The `program:` of a scenario: what to emulate and how.
///
/// ```ron
/// program: (elf: "guests/linked_list.elf", entry: "main", max_insns: 1000000)
/// program: (code: "48 89 f8 c3", entry_offset: 0, args: [7])
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Program {
    /// An ELF executable, relative to the scenario file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elf: Option<String>,
    /// Raw x86-64 machine code in hex (instead of `elf`); it calls the heap functions at the
    /// runtime stubs (see [`super::layout::stub_addr`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Where in `code` to start.
    pub entry_offset: u64,
    /// The function to start at in `elf` (default `main`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Integer arguments (System V registers, at most six).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<u64>,
    /// Instruction budget (default [`super::DEFAULT_MAX_INSNS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_insns: Option<u64>,
    /// Wall-clock limit in milliseconds (default [`super::DEFAULT_TIMEOUT`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Stop at the first violation.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stop_on_first: bool,
}

/// A program entry that names nothing runnable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProgramError(pub String);

impl Program {
    /// Checks that exactly one of `elf` and `code` is given.
    pub fn check(&self) -> Result<(), ProgramError> {
        match (&self.elf, &self.code) {
            (Some(_), Some(_)) => Err(ProgramError(
                "a program is either an `elf` file or `code`, not both".to_owned(),
            )),
            (None, None) => Err(ProgramError(
                "a program needs an `elf` file or `code`".to_owned(),
            )),
            (None, Some(code)) => parse_hex(code).map(|_| ()).map_err(ProgramError),
            (Some(_), None) => Ok(()),
        }
    }

    /// The ELF file's path, resolved against the directory of the scenario at `scenario`.
    pub fn elf_path(&self, scenario: &Path) -> Option<PathBuf> {
        let elf = self.elf.as_ref()?;
        Some(scenario.parent().unwrap_or(Path::new("")).join(elf))
    }

    /// Loads the program named by the scenario file at `scenario`.
    pub fn image(&self, scenario: &Path) -> Result<Image, EmulateError> {
        if let Some(path) = self.elf_path(scenario) {
            return Image::load(&path);
        }
        let origin = format!("{} (program code)", scenario.display());
        let code =
            parse_hex(self.code.as_deref().unwrap_or("")).map_err(|message| EmulateError::Elf {
                origin: origin.clone(),
                message,
            })?;
        Image::from_code(&code, self.entry_offset, &origin)
    }

    /// The run options this program asks for.
    pub fn options(&self) -> Options {
        let defaults = Options::default();
        Options {
            entry: self.entry.clone().unwrap_or(defaults.entry),
            args: self.args.clone(),
            max_insns: self.max_insns.unwrap_or(defaults.max_insns),
            timeout: self
                .timeout_ms
                .map_or(defaults.timeout, Duration::from_millis),
            stop_on_first: self.stop_on_first,
            max_ops: defaults.max_ops,
        }
    }
}

//! Importing allocation traces recorded by other tools into [`Trace`]s.
//!
//! Three text formats are read:
//! - [`Format::Malloclab`]: the `.rep` traces of the CS:APP malloc lab (blocks named by ids);
//! - [`Format::Mtrace`]: the raw file glibc's `mtrace()` writes (blocks named by addresses);
//! - [`Format::Ltrace`]: `ltrace` output as villoc reads it (blocks named by addresses).
//!
//! Addresses are re-keyed to ids: every allocation gets a fresh id, so an address that comes
//! back after a free names a new block. Importing never fails because of what the traced
//! program did (double frees, frees of addresses it never got, failed allocations): those become
//! [`Flag`]s, and where a replay can show them they also become operations. Importing fails only
//! when the text is not of the format; the error names the line and what was expected there.

mod ltrace;
mod malloclab;
mod mtrace;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::trace::{Flag, Id, Op, Trace};

/// A trace format heapscope imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// CS:APP malloc lab `.rep` files: a header of four integers, then `a ID SIZE`,
    /// `r ID SIZE` and `f ID` lines.
    Malloclab,
    /// The raw output of glibc's `mtrace()`: `+ PTR SIZE`, `- PTR`, `< PTR` / `> PTR SIZE`, ...
    Mtrace,
    /// `ltrace` output: `malloc(16) = 0x602010`, `free(0x602010) = <void>`, ...
    Ltrace,
}

impl Format {
    /// Every format, in the order [`detect`] tries them.
    pub const ALL: [Format; 3] = [Format::Malloclab, Format::Mtrace, Format::Ltrace];

    /// The format's name in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Malloclab => "malloclab",
            Format::Mtrace => "mtrace",
            Format::Ltrace => "ltrace",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trace format `{0}` (expected malloclab, mtrace or ltrace)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .iter()
            .copied()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

impl Serialize for Format {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A trace that could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The text is not of the format.
    #[error("{}: {message}", at(path.as_deref(), *line))]
    Syntax {
        /// The file, when importing from one.
        path: Option<PathBuf>,
        /// 1-based line of the error.
        line: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No format was named and the content matches none.
    #[error(
        "{}: cannot tell the trace format from the content; name it (malloclab, mtrace or ltrace)",
        path.display()
    )]
    Undetected {
        /// The file.
        path: PathBuf,
    },
}

fn at(path: Option<&Path>, line: usize) -> String {
    match path {
        Some(path) => format!("{}:{line}", path.display()),
        None => format!("line {line}"),
    }
}

impl ImportError {
    /// The 1-based line the error is about, for syntax errors.
    pub fn line(&self) -> Option<usize> {
        match self {
            ImportError::Syntax { line, .. } => Some(*line),
            _ => None,
        }
    }

    pub(crate) fn in_file(self, file: &Path) -> Self {
        match self {
            ImportError::Syntax { line, message, .. } => ImportError::Syntax {
                path: Some(file.to_owned()),
                line,
                message,
            },
            other => other,
        }
    }
}

/// The format `text` is in, judged from its content; `None` if it looks like none of them.
pub fn detect(text: &str) -> Option<Format> {
    if malloclab::looks_like(text) {
        Some(Format::Malloclab)
    } else if mtrace::looks_like(text) {
        Some(Format::Mtrace)
    } else if ltrace::looks_like(text) {
        Some(Format::Ltrace)
    } else {
        None
    }
}

/// Imports `text` as a trace in `format`.
pub fn import(text: &str, format: Format) -> Result<Trace, ImportError> {
    match format {
        Format::Malloclab => malloclab::import(text),
        Format::Mtrace => mtrace::import(text),
        Format::Ltrace => ltrace::import(text),
    }
}

/// Reads and imports the trace file at `path`, in `format` or else the detected one.
///
/// Bytes that are not UTF-8 (a traced program's strings in `ltrace` output, say) are replaced,
/// as villoc does, rather than refused.
pub fn import_file(path: &Path, format: Option<Format>) -> Result<Trace, ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let Some(format) = format.or_else(|| detect(&text)) else {
        return Err(ImportError::Undetected {
            path: path.to_owned(),
        });
    };
    import(&text, format).map_err(|e| e.in_file(path))
}

/// A syntax error at `line`.
fn syntax(line: usize, message: impl Into<String>) -> ImportError {
    ImportError::Syntax {
        path: None,
        line,
        message: message.into(),
    }
}

/// `text` cut to a length fit for a message.
fn clip(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// One line of a trace.
struct Line<'a> {
    /// 1-based line number.
    no: usize,
    /// The text, without its line ending and surrounding white space.
    text: &'a str,
    /// Whether this is the last line and has no line ending: a file whose writer stopped in
    /// the middle of a line (a crash with a buffered stream) ends like this.
    cut: bool,
}

/// The lines of `text`, ending with `\n` or `\r\n`.
fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    let ends_open = !text.is_empty() && !text.ends_with('\n');
    let count = text.split('\n').count();
    text.split('\n').enumerate().map(move |(i, raw)| Line {
        no: i + 1,
        text: raw.trim(),
        cut: ends_open && i + 1 == count,
    })
}

/// Collects operations and flags.
#[derive(Debug, Default)]
struct Builder {
    trace: Trace,
}

impl Builder {
    fn push(&mut self, op: Op) {
        self.trace.ops.push(op);
    }

    /// Notes `message` about source line `line`, for the next operation pushed.
    fn flag(&mut self, line: usize, message: impl fmt::Display) {
        self.trace.flags.push(Flag {
            step: self.trace.ops.len(),
            message: format!("line {line}: {message}"),
        });
    }

    fn finish(self) -> Trace {
        self.trace
    }
}

/// What a free of an address found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freed {
    /// The address held this live block, now freed.
    Live(Id),
    /// The address was freed before and not handed out since: a double free of this block.
    Again(Id),
    /// The address was never handed out: it gets this fresh id, which no operation allocates.
    Unknown(Id),
}

/// What an address named before a `realloc` moved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Old {
    /// A live block.
    Live(Id),
    /// A block already freed.
    Freed(Id),
    /// Nothing the trace saw: a fresh id.
    Unknown(Id),
}

/// Maps addresses seen in a trace to block ids.
#[derive(Debug)]
struct AddrBook {
    live: FxHashMap<u64, Id>,
    /// Addresses whose last event was a free, with the block they named.
    freed: FxHashMap<u64, Id>,
    next: Id,
}

impl AddrBook {
    fn new() -> Self {
        Self {
            live: FxHashMap::default(),
            freed: FxHashMap::default(),
            next: 1,
        }
    }

    fn fresh(&mut self) -> Id {
        let id = self.next;
        self.next = self.next.saturating_add(1);
        id
    }

    /// Records that `addr` now names block `id`; returns a live block it named before (whose
    /// free the trace does not show).
    fn place(&mut self, addr: u64, id: Id) -> Option<Id> {
        self.freed.remove(&addr);
        self.live.insert(addr, id).filter(|&old| old != id)
    }

    /// A new block at `addr`: its fresh id, and a live block the address named before.
    fn alloc(&mut self, addr: u64) -> (Id, Option<Id>) {
        let id = self.fresh();
        (id, self.place(addr, id))
    }

    fn free(&mut self, addr: u64) -> Freed {
        if let Some(id) = self.live.remove(&addr) {
            self.freed.insert(addr, id);
            Freed::Live(id)
        } else if let Some(&id) = self.freed.get(&addr) {
            Freed::Again(id)
        } else {
            let id = self.fresh();
            self.freed.insert(addr, id);
            Freed::Unknown(id)
        }
    }

    /// Takes `addr` as the old pointer of a successful `realloc`: it names nothing afterwards.
    fn take(&mut self, addr: u64) -> Old {
        if let Some(id) = self.live.remove(&addr) {
            Old::Live(id)
        } else if let Some(id) = self.freed.remove(&addr) {
            Old::Freed(id)
        } else {
            Old::Unknown(self.fresh())
        }
    }

    /// The live block at `addr`, if any.
    #[cfg(test)]
    fn live(&self, addr: u64) -> Option<Id> {
        self.live.get(&addr).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_through_their_names() {
        for format in Format::ALL {
            assert_eq!(format.name().parse::<Format>().unwrap(), format);
            assert_eq!(format.to_string(), format.name());
        }
        assert_eq!("MTrace".parse::<Format>().unwrap(), Format::Mtrace);
        let err = "valgrind".parse::<Format>().unwrap_err().to_string();
        assert!(err.contains("valgrind"), "{err}");
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let err = import("1\n2\nx\n", Format::Malloclab).unwrap_err();
        assert_eq!(err.line(), Some(3));
        assert!(err.to_string().starts_with("line 3: "), "{err}");
        let err = err.in_file(Path::new("t.rep"));
        assert!(err.to_string().starts_with("t.rep:3: "), "{err}");
    }

    #[test]
    fn import_file_detects_overrides_and_reports_io_errors() {
        let dir = std::env::temp_dir().join(format!("heapscope-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trace.txt");
        std::fs::write(&path, "= Start\n+ 0x10 0x8\n- 0x10\n= End\n").unwrap();
        let trace = import_file(&path, None).unwrap();
        assert_eq!(trace.ops.len(), 2);
        // Forced to another format, the same text is refused with the file and line named.
        let err = import_file(&path, Some(Format::Malloclab))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}:1: ", path.display())), "{err}");
        std::fs::write(&path, "hello\nworld\n").unwrap();
        let err = import_file(&path, None).unwrap_err();
        assert!(matches!(err, ImportError::Undetected { .. }), "{err}");
        let missing = dir.join("missing.rep");
        let err = import_file(&missing, None).unwrap_err();
        assert!(matches!(err, ImportError::Io { .. }));
        assert!(err.to_string().contains("missing.rep"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn detect_tells_the_formats_apart() {
        assert_eq!(
            detect("20000\n2\n2\n1\na 0 8\nf 0\n"),
            Some(Format::Malloclab)
        );
        assert_eq!(
            detect("1 2 2 1\r\na 0 8\r\nf 0\r\n"),
            Some(Format::Malloclab)
        );
        assert_eq!(detect("= Start\n+ 0x10 0x8\n"), Some(Format::Mtrace));
        assert_eq!(
            detect("@ ./a.out:[0x4005d4] + 0x10 8\n"),
            Some(Format::Mtrace)
        );
        assert_eq!(
            detect("puts(\"hi\") = 3\nmalloc(16) = 0x602010\n"),
            Some(Format::Ltrace)
        );
        assert_eq!(
            detect("[pid 7] free(0x10) = <void>\n"),
            Some(Format::Ltrace)
        );
        assert_eq!(detect(""), None);
        assert_eq!(detect("hello world\n"), None);
    }

    #[test]
    fn lines_know_a_cut_last_line() {
        let cut: Vec<bool> = lines("a\r\nb").map(|l| l.cut).collect();
        assert_eq!(cut, [false, true]);
        let all: Vec<(usize, &str, bool)> =
            lines("a\r\nb\n").map(|l| (l.no, l.text, l.cut)).collect();
        assert_eq!(all, [(1, "a", false), (2, "b", false), (3, "", false)]);
    }

    #[test]
    fn the_address_book_gives_reused_addresses_new_ids() {
        let mut book = AddrBook::new();
        let (a, displaced) = book.alloc(0x10);
        assert_eq!(displaced, None);
        assert_eq!(book.free(0x10), Freed::Live(a));
        assert_eq!(book.free(0x10), Freed::Again(a));
        let (b, _) = book.alloc(0x10);
        assert_ne!(a, b);
        let (c, displaced) = book.alloc(0x10);
        assert_eq!(displaced, Some(b));
        assert_eq!(book.live(0x10), Some(c));
        let Freed::Unknown(u) = book.free(0x99) else {
            panic!("0x99 was never allocated");
        };
        assert_eq!(book.free(0x99), Freed::Again(u));
        assert_eq!(book.take(0x10), Old::Live(c));
        assert!(matches!(book.take(0x10), Old::Unknown(_)));
    }
}

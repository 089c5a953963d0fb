//! CS:APP malloc lab `.rep` traces.
//!
//! A header of four integers, one per line in every handout seen (white space of any kind is
//! accepted between them, as the lab driver's `fscanf` does): a suggested heap size or, in later
//! handouts, another number (both unused), the number of block ids, the number of operations,
//! and a weight (unused). Then one operation per line: `a ID BYTES` (`mm_malloc`), `r ID BYTES`
//! (`mm_realloc`), `f ID` (`mm_free`), and `f -1` (`free(NULL)`). Files come with `\r\n`
//! line endings and blank lines at the end.
//!
//! Some traces (`alaska.rep`) write `a ID` with no size. The driver reads the size with
//! `fscanf("%u %u")`, which then fails and leaves the size variable as the previous operation
//! set it; the importer does the same and flags each such line.

use rustc_hash::FxHashSet;

use super::{Builder, ImportError, clip, lines, syntax};
use crate::trace::{Id, Op, Trace};

/// What the header's integers are, in order.
const HEADER: [&str; 4] = [
    "suggested heap size",
    "number of ids",
    "number of operations",
    "weight",
];

/// Whether `text` starts like a malloc lab trace: four integers, then an operation or nothing.
pub(super) fn looks_like(text: &str) -> bool {
    let mut tokens = text.split_whitespace();
    let header = tokens
        .by_ref()
        .take(4)
        .filter(|t| t.parse::<i64>().is_ok())
        .count();
    header == 4 && matches!(tokens.next(), None | Some("a" | "r" | "f"))
}

/// The header's counts.
struct Header {
    ids: u64,
    ops: u64,
}

pub(super) fn import(text: &str) -> Result<Trace, ImportError> {
    let mut out = Builder::default();
    let mut header = Vec::with_capacity(4);
    let mut counts = None;
    let mut state = State::default();
    let mut last_line = 0;
    for line in lines(text) {
        last_line = line.no;
        if line.text.is_empty() {
            continue;
        }
        let Some(counts) = &counts else {
            for token in line.text.split_whitespace() {
                let Some(what) = HEADER.get(header.len()) else {
                    return Err(syntax(
                        line.no,
                        format!(
                            "expected the end of the header (four integers), found `{}`",
                            clip(token)
                        ),
                    ));
                };
                let Ok(value) = token.parse::<i64>() else {
                    return Err(syntax(
                        line.no,
                        format!(
                            "expected the header's {what} (an integer), found `{}`",
                            clip(token)
                        ),
                    ));
                };
                header.push(value);
            }
            if let [_, ids, ops, _] = header[..] {
                counts = Some(header_counts(line.no, ids, ops)?);
            }
            continue;
        };
        let op = parse_op(line.no, line.text)?;
        state.apply(&mut out, line.no, counts, op);
    }
    let Some(counts) = counts else {
        return Err(syntax(
            last_line.max(1),
            format!(
                "expected the header's {} (an integer), found the end of the file",
                HEADER.get(header.len()).unwrap_or(&"end")
            ),
        ));
    };
    let found = out.trace.ops.len();
    if u64::try_from(found).ok() != Some(counts.ops) {
        let step = usize::try_from(counts.ops).map_or(found, |n| n.min(found));
        out.trace.flags.push(crate::trace::Flag {
            step,
            message: format!(
                "the header says {} operations, the file has {found}",
                counts.ops
            ),
        });
        // Keep flags in step order: this one may point before the end.
        out.trace.flags.sort_by_key(|f| f.step);
    }
    Ok(out.finish())
}

fn header_counts(line: usize, ids: i64, ops: i64) -> Result<Header, ImportError> {
    let count = |value: i64, what: &str| {
        u64::try_from(value).map_err(|_| {
            syntax(
                line,
                format!("expected the header's {what} (a count, not negative), found {value}"),
            )
        })
    };
    Ok(Header {
        ids: count(ids, HEADER[1])?,
        ops: count(ops, HEADER[2])?,
    })
}

/// One operation line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Alloc(Id, Option<u64>),
    Realloc(Id, Option<u64>),
    Free(Id),
    FreeNull,
}

const EXPECTED_OP: &str = "expected an operation: `a ID BYTES`, `r ID BYTES` or `f ID`";

fn parse_op(no: usize, text: &str) -> Result<Line, ImportError> {
    let mut tokens = text.split_whitespace();
    let kind = tokens.next().unwrap_or_default();
    let id = tokens.next();
    let size = tokens.next();
    if let Some(extra) = tokens.next() {
        return Err(syntax(
            no,
            format!(
                "expected the end of the line after `{kind} ID BYTES`, found `{}`",
                clip(extra)
            ),
        ));
    }
    let block = |id: Option<&str>| -> Result<Id, ImportError> {
        let id = id.ok_or_else(|| syntax(no, format!("expected a block id after `{kind}`")))?;
        id.parse::<Id>().map_err(|_| {
            syntax(
                no,
                format!("expected a block id (a whole number), found `{}`", clip(id)),
            )
        })
    };
    let bytes = |size: Option<&str>| -> Result<Option<u64>, ImportError> {
        size.map(|s| {
            s.parse::<u64>().map_err(|_| {
                syntax(
                    no,
                    format!(
                        "expected a size in bytes (a whole number), found `{}`",
                        clip(s)
                    ),
                )
            })
        })
        .transpose()
    };
    match kind {
        "a" => Ok(Line::Alloc(block(id)?, bytes(size)?)),
        "r" => Ok(Line::Realloc(block(id)?, bytes(size)?)),
        "f" if id == Some("-1") && size.is_none() => Ok(Line::FreeNull),
        "f" => match size {
            None => Ok(Line::Free(block(id)?)),
            Some(extra) => Err(syntax(
                no,
                format!(
                    "expected the end of the line after `f ID`, found `{}`",
                    clip(extra)
                ),
            )),
        },
        _ => Err(syntax(no, format!("{EXPECTED_OP}, found `{}`", clip(text)))),
    }
}

/// Which ids the program holds, to flag what it does wrong.
#[derive(Debug, Default)]
struct State {
    live: FxHashSet<Id>,
    freed: FxHashSet<Id>,
    /// The size the driver's `fscanf` leaves behind for a line without one.
    last_size: u64,
}

impl State {
    fn size(&mut self, out: &mut Builder, no: usize, text: &str, size: Option<u64>) -> u64 {
        match size {
            Some(size) => self.last_size = size,
            None => out.flag(
                no,
                format!(
                    "`{text}` has no size: took {} B, the previous size, as the lab driver's \
                     fscanf does",
                    self.last_size
                ),
            ),
        }
        self.last_size
    }

    fn check_range(out: &mut Builder, no: usize, header: &Header, id: Id) {
        if id >= header.ids {
            out.flag(
                no,
                format!("id {id} is outside the header's {} ids", header.ids),
            );
        }
    }

    fn apply(&mut self, out: &mut Builder, no: usize, header: &Header, line: Line) {
        match line {
            Line::Alloc(id, size) => {
                Self::check_range(out, no, header, id);
                let size = self.size(out, no, &format!("a {id}"), size);
                if self.live.contains(&id) {
                    out.flag(
                        no,
                        format!("#{id} is allocated again while live: the old block leaks"),
                    );
                }
                self.live.insert(id);
                self.freed.remove(&id);
                out.push(Op::Alloc { id, size, align: 0 });
            }
            Line::Realloc(id, size) => {
                Self::check_range(out, no, header, id);
                let size = self.size(out, no, &format!("r {id}"), size);
                if self.freed.contains(&id) {
                    out.flag(
                        no,
                        format!(
                            "realloc of #{id}, which was freed: replayed as realloc(NULL, {size})"
                        ),
                    );
                }
                self.live.insert(id);
                self.freed.remove(&id);
                out.push(Op::Realloc { id, size });
            }
            Line::Free(id) => {
                Self::check_range(out, no, header, id);
                if self.freed.contains(&id) {
                    out.flag(no, format!("double free of #{id}"));
                } else if !self.live.contains(&id) {
                    out.flag(no, format!("free of #{id}, which was never allocated"));
                }
                self.live.remove(&id);
                self.freed.insert(id);
                out.push(Op::Free { id });
            }
            Line::FreeNull => out.push(Op::FreeNull),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{Format, detect};

    #[test]
    fn imports_every_operation_of_a_small_trace() {
        let text =
            "20000\r\n3\r\n6\r\n1\r\na 0 512\r\na 1 128\r\nr 0 640\r\nf 1\r\nf -1\r\nf 0\r\n\r\n";
        assert_eq!(detect(text), Some(Format::Malloclab));
        let trace = import(text).unwrap();
        assert_eq!(
            trace.ops,
            [
                Op::Alloc {
                    id: 0,
                    size: 512,
                    align: 0
                },
                Op::Alloc {
                    id: 1,
                    size: 128,
                    align: 0
                },
                Op::Realloc { id: 0, size: 640 },
                Op::Free { id: 1 },
                Op::FreeNull,
                Op::Free { id: 0 },
            ]
        );
        assert!(trace.flags.is_empty(), "{:?}", trace.flags);
    }

    #[test]
    fn header_on_one_line_and_an_empty_trace_are_accepted() {
        let trace = import("0 2 2 0\na 1 8\nf 1\n").unwrap();
        assert_eq!(trace.ops.len(), 2);
        assert!(trace.flags.is_empty());
        let empty = import("1\n0\n0\n1\n").unwrap();
        assert!(empty.ops.is_empty() && empty.flags.is_empty());
    }

    #[test]
    fn a_missing_size_repeats_the_previous_one_and_is_flagged() {
        let trace = import("0\n3\n3\n0\na 0 16\na 1 \na 2 1234\n").unwrap();
        assert_eq!(trace.ops[1].request_size(), Some(16));
        assert_eq!(trace.ops[2].request_size(), Some(1234));
        assert_eq!(trace.flags.len(), 1);
        assert_eq!(trace.flags[0].step, 1);
        assert!(
            trace.flags[0].message.starts_with("line 6: "),
            "{:?}",
            trace.flags
        );
    }

    #[test]
    fn a_count_mismatch_and_program_mistakes_are_flagged_not_refused() {
        let text = "1\n2\n3\n1\na 0 8\nf 0\nf 0\nf 1\na 5 8\nr 0 4\n";
        let trace = import(text).unwrap();
        assert_eq!(trace.ops.len(), 6);
        let messages: Vec<(usize, &str)> = trace
            .flags
            .iter()
            .map(|f| (f.step, f.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            [
                (2, "line 7: double free of #0"),
                (3, "line 8: free of #1, which was never allocated"),
                (3, "the header says 3 operations, the file has 6"),
                (4, "line 9: id 5 is outside the header's 2 ids"),
                (
                    5,
                    "line 10: realloc of #0, which was freed: replayed as realloc(NULL, 4)"
                ),
            ]
        );
        // The double free stays a second free of the same id, for the replay to catch.
        assert_eq!(trace.ops[2], Op::Free { id: 0 });
        let short = import("1\n2\n3\n1\na 0 8\n").unwrap();
        assert_eq!(short.flags.len(), 1);
        assert_eq!(short.flags[0].step, 1);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_line() {
        for (text, line, needle) in [
            ("1\n2\n", 3, "number of operations"),
            ("1\nx\n", 2, "number of ids"),
            ("1\n-2\n3\n1\n", 4, "not negative"),
            ("1\n2\n3\n1 a 0 8\n", 4, "end of the header"),
            ("1\n2\n3\n1\na\n", 5, "block id after `a`"),
            ("1\n2\n3\n1\na x 8\n", 5, "block id"),
            ("1\n2\n3\n1\na 0 -8\n", 5, "size in bytes"),
            ("1\n2\n3\n1\nf 0 8\n", 5, "end of the line"),
            ("1\n2\n3\n1\nf -2\n", 5, "block id"),
            ("1\n2\n3\n1\na 0 8 9\n", 5, "end of the line"),
            ("1\n2\n3\n1\n\nx 0 8\n", 6, "expected an operation"),
            ("", 1, "heap size"),
        ] {
            let err = import(text).unwrap_err();
            assert_eq!(err.line(), Some(line), "{text:?}: {err}");
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
    }
}

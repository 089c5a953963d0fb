//! `ltrace` output, as villoc (`villoc.py`) reads it.
//!
//! Heap calls are read from lines like `malloc(16) = 0x602010`, `calloc(4, 8) = 0x602030`,
//! `realloc(0x602010, 32) = 0x602060`, `free(0x602060) = <void>`, plus `reallocarray`,
//! `memalign` and `aligned_alloc`. A line may start with `[pid 1234] ` or `1234 ` (`ltrace -f`),
//! timestamps (`-t`, `-tt`, `-ttt`, `-r`) and `[0x4005d4] ` (`-i`); the function may carry the
//! library that called it (`prog->malloc(16)`); a `-T` duration may follow the result. Null
//! pointers read `0`, `(nil)`, `nil` or `NULL`. A call another thread interrupted is split into
//! `malloc(16 <unfinished ...>` and `<... malloc resumed> ) = 0x602010`; a call that never
//! returned ends with `<no return ...>`. `+++ exited ... +++` and `--- SIGSEGV ... ---` are
//! ignored, and villoc's annotations `@villoc(text) = <void>` become [`Op::Mark`]s.
//!
//! Arguments past the ones the function takes are ignored: ltrace prints some when it has no
//! prototype for the function (`aligned_alloc(64, 100, 0x55f43f7c4010, 0)`).
//!
//! Calls of other functions are skipped, like villoc does. Lines that are not ltrace lines at
//! all (program output mixed in, say) are flagged and skipped; a text without a single ltrace
//! line is refused. A heap call whose arguments do not read is refused with its line.
//!
//! Program mistakes are handled as for mtrace (see [`super::mtrace`]); a failed call
//! (`= 0`, `= (nil)`, or a result that is not a pointer, such as `<error>`) is a flag, and
//! `realloc(p, 0) = 0` is the free glibc makes of it. A `free` that never returned (glibc aborts
//! inside `free` on a double free) is still replayed, and flagged.

use rustc_hash::FxHashMap;

use super::{AddrBook, Builder, Freed, ImportError, Old, clip, lines, syntax};
use crate::trace::{Id, Op, Trace};

/// What one line holds, once its prefixes are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry<'a> {
    /// `+++ exited ... +++` or `--- SIGNAL ... ---`.
    Event,
    /// `NAME(ARGS) = RESULT`.
    Call {
        name: &'a str,
        args: &'a str,
        ret: &'a str,
    },
    /// `NAME(ARGS <unfinished ...>` (`returns`) or `NAME(ARGS <no return ...>`.
    Unfinished {
        name: &'a str,
        args: &'a str,
        returns: bool,
    },
    /// `<... NAME resumed> ARGS) = RESULT`.
    Resumed {
        name: &'a str,
        args: &'a str,
        ret: &'a str,
    },
    /// `NAME(...` that reads no further: a call of some other function, printed oddly.
    Other { name: &'a str },
}

/// The process id and the rest of a line without its `ltrace` prefixes.
fn strip_prefixes(mut text: &str) -> (Option<u64>, &str) {
    let mut pid = None;
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix("[pid ")
            && let Some((num, rest)) = after.split_once(']')
            && let Ok(n) = num.trim().parse::<u64>()
        {
            pid = Some(n);
            text = rest;
            continue;
        }
        let (token, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        if rest.is_empty() {
            return (pid, text);
        }
        // A pid (`ltrace -f -o`), or a time stamp: `12:34:56`, `12:34:56.123456`, `0.000123`.
        if token.starts_with(|c: char| c.is_ascii_digit())
            && token
                .chars()
                .all(|c| c.is_ascii_digit() || c == ':' || c == '.')
        {
            if pid.is_none() && token.chars().all(|c| c.is_ascii_digit()) {
                pid = token.parse().ok();
            }
            text = rest;
            continue;
        }
        // An instruction pointer (`ltrace -i`).
        if let Some(inner) = token.strip_prefix('[').and_then(|t| t.strip_suffix(']'))
            && inner.starts_with("0x")
        {
            text = rest;
            continue;
        }
        return (pid, text);
    }
}

/// Splits `ARGS) = RESULT` at the last `=` that follows a `)`.
fn split_tail(body: &str) -> Option<(&str, &str)> {
    body.rmatch_indices('=').find_map(|(at, _)| {
        let left = body[..at].trim_end();
        let args = left.strip_suffix(')')?;
        Some((args, body[at + 1..].trim()))
    })
}

const UNFINISHED: &str = "<unfinished ...>";
const NO_RETURN: &str = "<no return ...>";

/// What an ltrace line (without prefixes) is, or `None` if it is not one.
fn classify(text: &str) -> Option<Entry<'_>> {
    if (text.starts_with("+++") && text.ends_with("+++"))
        || (text.starts_with("---") && text.ends_with("---"))
    {
        return Some(Entry::Event);
    }
    if let Some(after) = text.strip_prefix("<... ") {
        let (name, tail) = after.split_once(" resumed>")?;
        let (args, ret) = split_tail(tail)?;
        return Some(Entry::Resumed {
            name: name.trim(),
            args,
            ret,
        });
    }
    let (callee, body) = text.split_once('(')?;
    // `prog->malloc`, `libc.so.6->free`: the part before `->` is the calling library.
    let name = callee.rsplit("->").next().unwrap_or(callee);
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let trimmed = body.trim_end();
    for (marker, returns) in [(UNFINISHED, true), (NO_RETURN, false)] {
        if let Some(args) = trimmed.strip_suffix(marker) {
            return Some(Entry::Unfinished {
                name,
                args: args.trim_end(),
                returns,
            });
        }
    }
    match split_tail(body) {
        Some((args, ret)) => Some(Entry::Call { name, args, ret }),
        None => Some(Entry::Other { name }),
    }
}

/// Whether some of the first lines of `text` are ltrace lines.
pub(super) fn looks_like(text: &str) -> bool {
    lines(text)
        .filter(|l| !l.text.is_empty())
        .take(200)
        .any(|l| classify(strip_prefixes(l.text).1).is_some())
}

/// The heap functions read, with their argument lists as the error messages show them.
fn shape(name: &str) -> Option<(usize, &'static str)> {
    Some(match name {
        "malloc" => (1, "malloc(SIZE)"),
        "calloc" => (2, "calloc(COUNT, SIZE)"),
        "realloc" => (2, "realloc(PTR, SIZE)"),
        "reallocarray" => (3, "reallocarray(PTR, COUNT, SIZE)"),
        "free" => (1, "free(PTR)"),
        "memalign" => (2, "memalign(ALIGN, SIZE)"),
        "aligned_alloc" => (2, "aligned_alloc(ALIGN, SIZE)"),
        _ => return None,
    })
}

/// A number as ltrace prints it: decimal, `0x` hexadecimal, a null pointer, or a negative
/// number (a size printed as signed), taken as the `size_t` it was.
fn number(token: &str) -> Option<u64> {
    let token = token.trim();
    match token {
        "(nil)" | "nil" | "NULL" => return Some(0),
        _ => {}
    }
    if let Some(hex) = token
        .strip_prefix("0x")
        .or_else(|| token.strip_prefix("0X"))
    {
        return u64::from_str_radix(hex, 16).ok();
    }
    if let Some(neg) = token.strip_prefix('-') {
        return neg.parse::<u64>().ok().map(u64::wrapping_neg);
    }
    token.parse().ok()
}

/// A heap call with its arguments read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Malloc(u64),
    Calloc(u64, u64),
    Realloc(Option<u64>, u64),
    Free(Option<u64>),
    Aligned(u64, u64),
}

impl Call {
    /// The call as the program made it, for messages.
    fn describe(self) -> String {
        let ptr = |p: Option<u64>| p.map_or("NULL".to_owned(), |a| format!("{a:#x}"));
        match self {
            Call::Malloc(size) => format!("malloc({size})"),
            Call::Calloc(count, size) => format!("calloc({count}, {size})"),
            Call::Realloc(old, size) => format!("realloc({}, {size})", ptr(old)),
            Call::Free(p) => format!("free({})", ptr(p)),
            Call::Aligned(align, size) => format!("aligned allocation({align}, {size})"),
        }
    }
}

/// Reads the arguments of heap function `name`; `Ok(None)` for other functions.
fn read_call(no: usize, name: &str, args: &str) -> Result<Option<Call>, ImportError> {
    let Some((count, form)) = shape(name) else {
        return Ok(None);
    };
    let parts: Vec<&str> = args
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    let values: Option<Vec<u64>> = parts.iter().take(count).map(|a| number(a)).collect();
    // ltrace prints more arguments than the function takes when it has no prototype for it
    // (`aligned_alloc(64, 100, 0x55f43f7c4010, 0)`): the extra ones are register garbage.
    let values = match values {
        Some(values) if values.len() >= count => values,
        _ => {
            return Err(syntax(
                no,
                format!(
                    "expected `{form}` with numbers, found `{name}({})`",
                    clip(args)
                ),
            ));
        }
    };
    let arg = |i: usize| values.get(i).copied().unwrap_or(0);
    let ptr = |i: usize| Some(arg(i)).filter(|&p| p != 0);
    Ok(Some(match name {
        "malloc" => Call::Malloc(arg(0)),
        "calloc" => Call::Calloc(arg(0), arg(1)),
        "realloc" => Call::Realloc(ptr(0), arg(1)),
        "reallocarray" => Call::Realloc(ptr(0), arg(1).saturating_mul(arg(2))),
        "free" => Call::Free(ptr(0)),
        _ => Call::Aligned(arg(0), arg(1)),
    }))
}

/// A call waiting for its `<... NAME resumed>` line.
#[derive(Debug)]
struct Pending {
    line: usize,
    args: String,
}

/// Replays heap calls into operations.
struct Importer {
    out: Builder,
    book: AddrBook,
    pending: FxHashMap<(Option<u64>, String), Pending>,
}

pub(super) fn import(text: &str) -> Result<Trace, ImportError> {
    let mut imp = Importer {
        out: Builder::default(),
        book: AddrBook::new(),
        pending: FxHashMap::default(),
    };
    let mut first_line = None;
    let mut recognised = false;
    for line in lines(text) {
        if line.text.is_empty() {
            continue;
        }
        first_line.get_or_insert(line.no);
        let (pid, rest) = strip_prefixes(line.text);
        let Some(entry) = classify(rest) else {
            imp.out.flag(
                line.no,
                format!("not an ltrace line, skipped: `{}`", clip(line.text)),
            );
            continue;
        };
        recognised = true;
        match imp.entry(line.no, pid, entry) {
            Ok(()) => {}
            Err(_) if line.cut => imp.out.flag(
                line.no,
                format!(
                    "the trace ends in the middle of a line (`{}`): dropped",
                    clip(line.text)
                ),
            ),
            Err(e) => return Err(e),
        }
    }
    if let Some(first) = first_line
        && !recognised
    {
        return Err(syntax(
            first,
            "expected ltrace lines such as `malloc(16) = 0x602010`; found none in the text",
        ));
    }
    let mut left: Vec<((Option<u64>, String), Pending)> = imp.pending.drain().collect();
    left.sort_by_key(|(_, p)| p.line);
    for ((_, name), p) in left {
        if name != "free" {
            imp.out.flag(
                p.line,
                format!(
                    "{name}({}) never returned: the trace ends first",
                    p.args.trim()
                ),
            );
        }
    }
    Ok(imp.out.finish())
}

impl Importer {
    fn entry(&mut self, no: usize, pid: Option<u64>, entry: Entry<'_>) -> Result<(), ImportError> {
        match entry {
            Entry::Event => Ok(()),
            Entry::Other { name } => {
                if shape(name).is_some() {
                    self.out.flag(
                        no,
                        format!(
                            "a `{name}(` call that does not read to its result (program output \
                             mixed in?): skipped"
                        ),
                    );
                }
                Ok(())
            }
            Entry::Call { name, args, ret } => self.call(no, name, args, ret),
            Entry::Unfinished {
                name: "@villoc", ..
            } => Ok(()),
            Entry::Unfinished {
                name,
                args,
                returns,
            } => {
                if shape(name).is_none() {
                    return Ok(());
                }
                if name == "free" {
                    // A free acts when called: replay it here, whatever follows.
                    let Some(Call::Free(ptr)) = read_call(no, name, args)? else {
                        return Ok(());
                    };
                    if !returns {
                        self.out.flag(
                            no,
                            format!(
                                "{} never returned: the program stopped inside it",
                                Call::Free(ptr).describe()
                            ),
                        );
                    }
                    self.free(no, ptr);
                } else if !returns {
                    // The arguments may be cut short, and there is no result: nothing to read.
                    self.out.flag(
                        no,
                        format!("{name}({}) never returned: nothing to replay", args.trim()),
                    );
                    return Ok(());
                }
                if returns {
                    self.pending.insert(
                        (pid, name.to_owned()),
                        Pending {
                            line: no,
                            args: args.to_owned(),
                        },
                    );
                }
                Ok(())
            }
            Entry::Resumed { name, args, ret } => {
                let Some(started) = self.pending.remove(&(pid, name.to_owned())) else {
                    if shape(name).is_some() {
                        self.out.flag(
                            no,
                            format!("`<... {name} resumed>` follows no unfinished call: skipped"),
                        );
                    }
                    return Ok(());
                };
                if name == "free" {
                    return Ok(());
                }
                let args = format!("{}{args}", started.args);
                self.call(no, name, &args, ret)
            }
        }
    }

    fn call(&mut self, no: usize, name: &str, args: &str, ret: &str) -> Result<(), ImportError> {
        if name == "@villoc" {
            self.out.push(Op::Mark {
                label: args.trim().to_owned(),
            });
            return Ok(());
        }
        let Some(call) = read_call(no, name, args)? else {
            return Ok(());
        };
        if let Call::Free(ptr) = call {
            self.free(no, ptr);
            return Ok(());
        }
        // The result's first word; `-T` may add a duration after it.
        let word = ret.split_whitespace().next().unwrap_or("");
        let Some(result) = number(word) else {
            self.out.flag(
                no,
                format!(
                    "{} returned `{}`, not a pointer: taken as a failure",
                    call.describe(),
                    clip(word)
                ),
            );
            return Ok(());
        };
        let result = Some(result).filter(|&p| p != 0);
        match (call, result) {
            // glibc's realloc(p, 0) frees p and returns NULL.
            (Call::Realloc(Some(old), 0), None) => self.free(no, Some(old)),
            (Call::Realloc(Some(_), _), None) => self.out.flag(
                no,
                format!(
                    "{} failed in the traced program: the block stays",
                    call.describe()
                ),
            ),
            (_, None) => self.out.flag(
                no,
                format!("{} failed in the traced program", call.describe()),
            ),
            (Call::Realloc(Some(old), size), Some(new)) => self.realloc(no, old, new, size),
            (Call::Realloc(None, size), Some(new)) => {
                let id = self.place(no, new);
                self.out.push(Op::Realloc { id, size });
            }
            (Call::Malloc(size), Some(new)) => {
                let id = self.place(no, new);
                self.out.push(Op::Alloc { id, size, align: 0 });
            }
            (Call::Calloc(count, size), Some(new)) => {
                let id = self.place(no, new);
                self.out.push(Op::Calloc { id, count, size });
            }
            (Call::Aligned(align, size), Some(new)) => {
                let id = self.place(no, new);
                self.out.push(Op::Alloc { id, size, align });
            }
            (Call::Free(_), Some(_)) => {}
        }
        Ok(())
    }

    /// A new block at `addr`.
    fn place(&mut self, no: usize, addr: u64) -> Id {
        let (id, displaced) = self.book.alloc(addr);
        self.displaced(no, addr, displaced);
        id
    }

    fn displaced(&mut self, no: usize, addr: u64, displaced: Option<Id>) {
        if let Some(old) = displaced {
            self.out.flag(
                no,
                format!(
                    "{addr:#x} is handed out again while #{old} still holds it: the trace \
                     misses its free"
                ),
            );
        }
    }

    fn free(&mut self, no: usize, ptr: Option<u64>) {
        let Some(addr) = ptr else {
            self.out.push(Op::FreeNull);
            return;
        };
        let id = match self.book.free(addr) {
            Freed::Live(id) => id,
            Freed::Again(id) => {
                self.out
                    .flag(no, format!("double free of #{id} ({addr:#x})"));
                id
            }
            Freed::Unknown(id) => {
                self.out.flag(
                    no,
                    format!(
                        "free of {addr:#x}, which the trace never saw allocated: replayed as a \
                         free of #{id}, a block no operation allocates"
                    ),
                );
                id
            }
        };
        self.out.push(Op::Free { id });
    }

    fn realloc(&mut self, no: usize, old: u64, new: u64, size: u64) {
        let id = match self.book.take(old) {
            Old::Live(id) => id,
            Old::Freed(id) => {
                self.out.flag(
                    no,
                    format!(
                        "realloc of #{id} ({old:#x}), which was freed: replayed as \
                         realloc(NULL, {size})"
                    ),
                );
                id
            }
            Old::Unknown(id) => {
                self.out.flag(
                    no,
                    format!(
                        "realloc of {old:#x}, which the trace never saw allocated: replayed as \
                         realloc(NULL, {size}) for #{id}"
                    ),
                );
                id
            }
        };
        let displaced = self.book.place(new, id);
        self.displaced(no, new, displaced);
        self.out.push(Op::Realloc { id, size });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{Format, detect};

    fn alloc(id: u64, size: u64) -> Op {
        Op::Alloc { id, size, align: 0 }
    }

    fn messages(trace: &Trace) -> Vec<(usize, String)> {
        trace
            .flags
            .iter()
            .map(|f| (f.step, f.message.clone()))
            .collect()
    }

    #[test]
    fn imports_every_heap_call_form() {
        let text = r#"__libc_start_main(0x400566, 1, 0x7ffd, 0x4005f0 <unfinished ...>
puts("hello, (world) = 3")                 = 19
malloc(16)                                 = 0x602010
prog->calloc(4, 8)                         = 0x602030
[pid 1234] realloc(0x602010, 32)           = 0x602060
1234 realloc(0, 8)                         = 0x602090
[0x4005d4] memalign(64, 100)               = 0x6020c0
12:34:56.123456 aligned_alloc(0x20, 0x40)  = 0x602140
libc.so.6->reallocarray(0x602090, 3, 4)    = 0x602190 <0.000012>
@villoc(after setup, #2) = <void>
free(0x602060)                             = <void>
free(0)                                    = <void>
free(nil) = <void>
--- SIGSEGV (Segmentation fault) ---
+++ killed by SIGSEGV +++
"#;
        assert_eq!(detect(text), Some(Format::Ltrace));
        let trace = import(text).unwrap();
        assert_eq!(
            trace.ops,
            [
                alloc(1, 16),
                Op::Calloc {
                    id: 2,
                    count: 4,
                    size: 8
                },
                Op::Realloc { id: 1, size: 32 },
                Op::Realloc { id: 3, size: 8 },
                Op::Alloc {
                    id: 4,
                    size: 100,
                    align: 64
                },
                Op::Alloc {
                    id: 5,
                    size: 0x40,
                    align: 0x20
                },
                Op::Realloc { id: 3, size: 12 },
                Op::Mark {
                    label: "after setup, #2".to_owned()
                },
                Op::Free { id: 1 },
                Op::FreeNull,
                Op::FreeNull,
            ]
        );
        // `__libc_start_main` never finished, but it is not a heap call.
        assert!(trace.flags.is_empty(), "{:?}", trace.flags);
    }

    #[test]
    fn split_calls_are_joined_per_process() {
        let text = "\
[pid 7] malloc(16 <unfinished ...>
[pid 8] malloc(32 <unfinished ...>
[pid 8] <... malloc resumed> )     = 0x20
[pid 7] free(0x30 <unfinished ...>
[pid 7] <... free resumed> )       = <void>
[pid 7] <... malloc resumed> )     = 0x10
[pid 7] realloc(0x10 <unfinished ...>
[pid 7] <... realloc resumed> , 48) = 0x40
[pid 8] <... calloc resumed> ) = 0x50
[pid 8] calloc(2, 2 <unfinished ...>
";
        let trace = import(text).unwrap();
        assert_eq!(
            trace.ops,
            [
                alloc(1, 32),
                Op::Free { id: 2 },
                alloc(3, 16),
                Op::Realloc { id: 3, size: 48 },
            ]
        );
        let flags = messages(&trace);
        assert_eq!(flags.len(), 3, "{flags:?}");
        assert!(flags[0].1.starts_with("line 4: free of 0x30"), "{flags:?}");
        assert!(
            flags[1]
                .1
                .starts_with("line 9: `<... calloc resumed>` follows no")
        );
        assert_eq!(
            flags[2],
            (
                4,
                "line 10: calloc(2, 2) never returned: the trace ends first".to_owned()
            )
        );
    }

    #[test]
    fn failures_double_frees_and_aborts_are_flagged() {
        let text = "\
malloc(16) = 0x10
malloc(1099511627776) = 0
calloc(1, 2) = (nil)
realloc(0x10, 4096) = NULL
malloc(8) = <error>
free(0x10) = <void>
free(0x10 <no return ...>
--- SIGABRT (Aborted) ---
+++ killed by SIGABRT +++
";
        let trace = import(text).unwrap();
        assert_eq!(
            trace.ops,
            [alloc(1, 16), Op::Free { id: 1 }, Op::Free { id: 1 }]
        );
        let flags = messages(&trace);
        let expect: [(usize, &str); 6] = [
            (
                1,
                "line 2: malloc(1099511627776) failed in the traced program",
            ),
            (1, "line 3: calloc(1, 2) failed"),
            (
                1,
                "line 4: realloc(0x10, 4096) failed in the traced program: the block stays",
            ),
            (1, "line 5: malloc(8) returned `<error>`, not a pointer"),
            (2, "line 7: free(0x10) never returned"),
            (2, "line 7: double free of #1 (0x10)"),
        ];
        assert_eq!(flags.len(), expect.len(), "{flags:#?}");
        for ((step, message), (want_step, want)) in flags.iter().zip(expect) {
            assert_eq!(*step, want_step, "{message}");
            assert!(message.starts_with(want), "{message} / {want}");
        }
    }

    #[test]
    fn addresses_are_rekeyed_through_reuse_and_realloc() {
        let text = "\
malloc(8) = 0x10
realloc(0x10, 0) = 0
malloc(8) = 0x10
malloc(8) = 0x10
realloc(0x99, 8) = 0x20
free(0x77) = <void>
free(0x77) = <void>
";
        let trace = import(text).unwrap();
        assert_eq!(
            trace.ops,
            [
                alloc(1, 8),
                Op::Free { id: 1 },
                alloc(2, 8),
                alloc(3, 8),
                Op::Realloc { id: 4, size: 8 },
                Op::Free { id: 5 },
                Op::Free { id: 5 },
            ]
        );
        let flags = messages(&trace);
        assert_eq!(flags.len(), 4, "{flags:#?}");
        assert!(
            flags[0]
                .1
                .starts_with("line 4: 0x10 is handed out again while #2")
        );
        assert!(
            flags[1]
                .1
                .starts_with("line 5: realloc of 0x99, which the trace never saw")
        );
        assert!(
            flags[2]
                .1
                .starts_with("line 6: free of 0x77, which the trace never saw")
        );
        assert_eq!(flags[3], (6, "line 7: double free of #5 (0x77)".to_owned()));
    }

    #[test]
    fn other_text_is_flagged_and_bad_heap_calls_are_refused() {
        let trace = import("Hello from the program\nmalloc(4) = 0x10\n").unwrap();
        assert_eq!(trace.ops, [alloc(1, 4)]);
        assert_eq!(trace.flags.len(), 1);
        assert!(trace.flags[0].message.contains("not an ltrace line"));
        // A heap call cut by the end of the file is dropped with a flag.
        let trace = import("malloc(4) = 0x10\nmalloc(zz) = 0x").unwrap();
        assert_eq!(trace.ops.len(), 1);
        assert!(trace.flags[0].message.contains("middle of a line"));
        for (text, line, needle) in [
            ("malloc(4) = 0x10\nmalloc(a) = 0x20\n", 2, "`malloc(SIZE)`"),
            ("calloc(4) = 0x20\n", 1, "`calloc(COUNT, SIZE)`"),
            ("free() = <void>\n", 1, "`free(PTR)`"),
            ("free(x, 0x10) = <void>\n", 1, "`free(PTR)`"),
            ("\nhello\nworld\n", 2, "found none"),
        ] {
            let err = import(text).unwrap_err();
            assert_eq!(err.line(), Some(line), "{text:?}: {err}");
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
        assert!(import("").unwrap().ops.is_empty());
        // ltrace and the program writing to one terminal: glibc's message splits the line.
        let mixed = "malloc(8) = 0x10\nfree(0x10) = <void>\n\
                     free(0x10free(): double free detected in tcache 2\n <no return ...>\n";
        let trace = import(mixed).unwrap();
        assert_eq!(trace.ops.len(), 2);
        let flags = messages(&trace);
        assert_eq!(flags.len(), 2, "{flags:?}");
        assert!(
            flags[0]
                .1
                .starts_with("line 3: a `free(` call that does not read")
        );
        assert!(flags[1].1.starts_with("line 4: not an ltrace line"));
    }

    #[test]
    fn prefixes_are_stripped() {
        assert_eq!(
            strip_prefixes("[pid 12] 0.000123 malloc(1)"),
            (Some(12), "malloc(1)")
        );
        assert_eq!(
            strip_prefixes("34 12:00:01 [0x4005d4] free(0)"),
            (Some(34), "free(0)")
        );
        assert_eq!(strip_prefixes("malloc(1)"), (None, "malloc(1)"));
    }

    /// Written by ltrace 0.7.3 (`ltrace -f -o`) for a program of ours: the calls of
    /// `reads_real_glibc_output` in the mtrace tests, a thread doing malloc(24)/free three
    /// times beside the main thread doing malloc(40)/free three times, `puts`, and a double
    /// free that glibc aborts in.
    #[test]
    fn reads_real_ltrace_output() {
        let text = "\
8827 malloc(16)                                  = 0x555d989752a0
8827 calloc(4, 8)                                = 0x555d989752c0
8827 realloc(0x555d989752a0, 64)                 = 0x555d989752f0
8827 malloc(5)                                   = 0x555d989752a0
8827 aligned_alloc(64, 100, 0x555d98975010, 0)   = 0x555d98975340
8827 malloc(4611686018427387904)                 = 0
8827 realloc(0x555d989752c0, 4611686018427387904) = 0
8827 pthread_create(0x7ffe40006590, 0, 0x555d5a5aa1a9, 0) = 0
8827 malloc(40 <unfinished ...>
8828 malloc(24 <unfinished ...>
8827 <... malloc resumed> )                      = 0x555d98975540
8827 free(0x555d98975540)                        = <void>
8827 malloc(40)                                  = 0x555d98975540
8827 free(0x555d98975540)                        = <void>
8827 malloc(40)                                  = 0x555d98975540
8828 <... malloc resumed> )                      = 0x7f8564000b70
8827 free(0x555d98975540 <unfinished ...>
8828 free(0x7f8564000b70 <unfinished ...>
8827 <... free resumed> )                        = <void>
8827 pthread_join(0x7f85699fe6c0, 0, 0x555d98975, 1 <unfinished ...>
8828 <... free resumed> )                        = <void>
8828 malloc(24)                                  = 0x7f8564000b70
8828 free(0x7f8564000b70)                        = <void>
8828 malloc(24)                                  = 0x7f8564000b70
8828 free(0x7f8564000b70)                        = <void>
8828 +++ exited (status 0) +++
8827 <... pthread_join resumed> )                = 0
8827 puts(\"hello (world) = 3\")                   = 18
8827 free(0x555d989752f0)                        = <void>
8827 free(0x555d989752a0)                        = <void>
8827 free(0x555d98975340)                        = <void>
8827 free(0x555d989752c0)                        = <void>
8827 malloc(0)                                   = 0x555d989752a0
8827 realloc(0x555d989752a0, 0)                  = 0
8827 malloc(8)                                   = 0x555d989752a0
8827 free(0x555d989752a0)                        = <void>
8827 free(0x555d989752a0 <no return ...>
8827 --- SIGABRT (Aborted) ---
8827 +++ killed by SIGABRT +++
";
        let trace = import(text).unwrap();
        let free = |id| Op::Free { id };
        assert_eq!(
            trace.ops,
            [
                alloc(1, 16),
                Op::Calloc {
                    id: 2,
                    count: 4,
                    size: 8
                },
                Op::Realloc { id: 1, size: 64 },
                alloc(3, 5),
                Op::Alloc {
                    id: 4,
                    size: 100,
                    align: 64
                },
                alloc(5, 40),
                free(5),
                alloc(6, 40),
                free(6),
                alloc(7, 40),
                alloc(8, 24),
                free(7),
                free(8),
                alloc(9, 24),
                free(9),
                alloc(10, 24),
                free(10),
                free(1),
                free(3),
                free(4),
                free(2),
                alloc(11, 0),
                free(11),
                alloc(12, 8),
                free(12),
                free(12),
            ]
        );
        let flags = messages(&trace);
        let expect: [(usize, &str); 4] = [
            (5, "line 6: malloc(4611686018427387904) failed"),
            (
                5,
                "line 7: realloc(0x555d989752c0, 4611686018427387904) failed",
            ),
            (25, "line 37: free(0x555d989752a0) never returned"),
            (25, "line 37: double free of #12"),
        ];
        assert_eq!(flags.len(), expect.len(), "{flags:#?}");
        for ((step, message), (want_step, want)) in flags.iter().zip(expect) {
            assert_eq!(*step, want_step, "{message}");
            assert!(message.starts_with(want), "{message} / {want}");
        }
    }
}

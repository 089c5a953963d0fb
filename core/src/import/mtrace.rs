//! The raw trace glibc's `mtrace()` writes (`MALLOC_TRACE=file`), as `mtrace.pl` reads it.
//!
//! Lines, each optionally after a caller `@ WHERE ` (`@ ./prog:[0x4005d4] `,
//! `@ /lib/libc.so.6:(clone+0x6d)[0x7f...] `, `@ [0x...] `):
//! - `= Start`, `= End` (any `= TEXT`): ignored;
//! - `+ PTR SIZE`: `malloc`, `calloc`, `memalign`, or `realloc(NULL, SIZE)`; `PTR` is `(nil)`
//!   when it failed;
//! - `- PTR`: `free`, or `realloc(PTR, 0)` returning `NULL`;
//! - `< OLD` then `> NEW SIZE`: a successful `realloc` of a non-null pointer;
//! - `! PTR SIZE`: a failed `realloc`.
//!
//! Pointers are printed with `%p` (`0x1a3b260`, `(nil)`), sizes with `%#lx` (`0x10`, but `0`).
//!
//! Program mistakes become flags: a `+` of an address still live (its free is not in the
//! trace) allocates a new id; a `-` of an address freed before is a second `Free` of the same
//! id; a `-` of an address the trace never saw allocated is a `Free` of a fresh id that no
//! operation allocates, so the replay shows it at its place (and skips it); a failed
//! allocation is a flag without an operation. The stream is buffered, so a program that
//! crashed can leave the last line cut short: that line is flagged and dropped.

use super::{AddrBook, Builder, Freed, ImportError, Old, clip, lines, syntax};
use crate::trace::{Op, Trace};

/// What an mtrace line says, after its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// `= TEXT`.
    Note,
    /// `+ PTR SIZE`.
    Alloc(Option<u64>, u64),
    /// `- PTR`.
    Free(Option<u64>),
    /// `< PTR`.
    ReallocFrom(Option<u64>),
    /// `> PTR SIZE`.
    ReallocTo(Option<u64>, u64),
    /// `! PTR SIZE`.
    ReallocFailed(Option<u64>, u64),
}

/// A parsed line: the event and its caller, if given.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    event: Event,
    caller: Option<String>,
}

const EXPECTED: &str = "expected an mtrace line: `+ PTR SIZE`, `- PTR`, `< PTR`, `> PTR SIZE`, \
                        `! PTR SIZE` or `= TEXT`, optionally after `@ CALLER`";

/// Parses one non-blank line; the error says what was expected.
fn parse(text: &str) -> Result<Parsed, String> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let (caller, rest) = match tokens.split_first() {
        Some((&"@", after)) => {
            // The caller may hold spaces (a file name); it ends with `]` before the event.
            let at = (1..after.len()).find(|&i| {
                is_event(after.get(i).copied())
                    && after.get(i - 1).is_some_and(|t| t.ends_with(']'))
            });
            let Some(at) = at else {
                return Err(format!(
                    "expected `@ CALLER[0x...]` followed by an event, found `{}`",
                    clip(text)
                ));
            };
            (Some(after[..at].join(" ")), &after[at..])
        }
        _ => (None, &tokens[..]),
    };
    let event = match rest {
        ["=", ..] => Event::Note,
        ["+", ptr, size] => Event::Alloc(pointer(ptr)?, hex_size(size)?),
        ["-", ptr] => Event::Free(pointer(ptr)?),
        ["<", ptr] => Event::ReallocFrom(pointer(ptr)?),
        [">", ptr, size] => Event::ReallocTo(pointer(ptr)?, hex_size(size)?),
        ["!", ptr, size] => Event::ReallocFailed(pointer(ptr)?, hex_size(size)?),
        [op @ ("+" | ">" | "!"), ..] => {
            return Err(format!(
                "expected `{op} PTR SIZE`, found `{}`",
                clip(&rest.join(" "))
            ));
        }
        [op @ ("-" | "<"), ..] => {
            return Err(format!(
                "expected `{op} PTR`, found `{}`",
                clip(&rest.join(" "))
            ));
        }
        _ => return Err(format!("{EXPECTED}, found `{}`", clip(text))),
    };
    Ok(Parsed { event, caller })
}

fn is_event(token: Option<&str>) -> bool {
    matches!(token, Some("=" | "+" | "-" | "<" | ">" | "!"))
}

/// A `%p` pointer: `0x...`, or `(nil)` (also `0x0`) for `NULL`.
fn pointer(token: &str) -> Result<Option<u64>, String> {
    if token == "(nil)" {
        return Ok(None);
    }
    token
        .strip_prefix("0x")
        .or_else(|| token.strip_prefix("0X"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .map(|addr| (addr != 0).then_some(addr))
        .ok_or_else(|| {
            format!(
                "expected a pointer (`0x...` or `(nil)`), found `{}`",
                clip(token)
            )
        })
}

/// A `%#lx` size: hexadecimal, with `0x` except for zero (accepted either way).
fn hex_size(token: &str) -> Result<u64, String> {
    let hex = token
        .strip_prefix("0x")
        .or_else(|| token.strip_prefix("0X"))
        .unwrap_or(token);
    u64::from_str_radix(hex, 16)
        .map_err(|_| format!("expected a size in hexadecimal, found `{}`", clip(token)))
}

/// Whether `text` looks like an mtrace file: it starts with `= Start`, or its first lines all
/// parse.
pub(super) fn looks_like(text: &str) -> bool {
    let mut first = lines(text)
        .filter(|l| !l.text.is_empty())
        .take(20)
        .peekable();
    if first.peek().is_some_and(|l| l.text == "= Start") {
        return true;
    }
    let mut seen = false;
    for line in first {
        if parse(line.text).is_err() && !line.cut {
            return false;
        }
        seen = true;
    }
    seen
}

/// An `<` waiting for its `>`.
struct Pending {
    line: usize,
    old: Option<u64>,
    caller: Option<String>,
}

/// ` (at CALLER)`, or nothing.
fn at(caller: Option<&str>) -> String {
    caller.map(|c| format!(" (at {c})")).unwrap_or_default()
}

pub(super) fn import(text: &str) -> Result<Trace, ImportError> {
    let mut out = Builder::default();
    let mut book = AddrBook::new();
    let mut pending: Option<Pending> = None;
    for line in lines(text) {
        if line.text.is_empty() {
            continue;
        }
        let parsed = match parse(line.text) {
            Ok(parsed) => parsed,
            Err(_) if line.cut => {
                out.flag(
                    line.no,
                    format!(
                        "the trace ends in the middle of a line (`{}`): dropped",
                        clip(line.text)
                    ),
                );
                continue;
            }
            Err(expected) => return Err(syntax(line.no, expected)),
        };
        let caller = parsed.caller.as_deref();
        if let Some(from) = pending.take() {
            if let Event::ReallocTo(new, size) = parsed.event {
                realloc(&mut out, &mut book, line.no, &from, new, size);
                continue;
            }
            unmatched_from(&mut out, &mut book, &from);
        }
        match parsed.event {
            Event::Note => {}
            Event::Alloc(None, size) => out.flag(
                line.no,
                format!(
                    "an allocation of {size} B failed in the traced program{}",
                    at(caller)
                ),
            ),
            Event::Alloc(Some(addr), size) => {
                let (id, displaced) = book.alloc(addr);
                if let Some(old) = displaced {
                    out.flag(
                        line.no,
                        format!(
                            "{addr:#x} is handed out again while #{old} still holds it: the \
                             trace misses its free{}",
                            at(caller)
                        ),
                    );
                }
                out.push(Op::Alloc { id, size, align: 0 });
            }
            Event::Free(None) => out.push(Op::FreeNull),
            Event::Free(Some(addr)) => free(&mut out, &mut book, line.no, addr, caller),
            Event::ReallocFrom(old) => {
                pending = Some(Pending {
                    line: line.no,
                    old,
                    caller: parsed.caller.clone(),
                });
            }
            Event::ReallocTo(new, size) => {
                let what = format!(
                    "`> {}` without the `< OLD` line before it",
                    new.map_or("(nil)".to_owned(), |a| format!("{a:#x}"))
                );
                match new {
                    Some(addr) => {
                        out.flag(
                            line.no,
                            format!("{what}: taken as malloc({size}){}", at(caller)),
                        );
                        let (id, _) = book.alloc(addr);
                        out.push(Op::Alloc { id, size, align: 0 });
                    }
                    None => out.flag(line.no, format!("{what}: ignored{}", at(caller))),
                }
            }
            Event::ReallocFailed(old, size) => {
                let old = old.map_or("NULL".to_owned(), |a| format!("{a:#x}"));
                out.flag(
                    line.no,
                    format!(
                        "realloc({old}, {size}) failed in the traced program: the block stays{}",
                        at(caller)
                    ),
                );
            }
        }
    }
    if let Some(from) = pending {
        unmatched_from(&mut out, &mut book, &from);
    }
    Ok(out.finish())
}

fn free(out: &mut Builder, book: &mut AddrBook, line: usize, addr: u64, caller: Option<&str>) {
    let id = match book.free(addr) {
        Freed::Live(id) => id,
        Freed::Again(id) => {
            out.flag(
                line,
                format!("double free of #{id} ({addr:#x}){}", at(caller)),
            );
            id
        }
        Freed::Unknown(id) => {
            out.flag(
                line,
                format!(
                    "free of {addr:#x}, which the trace never saw allocated: replayed as a \
                     free of #{id}, a block no operation allocates{}",
                    at(caller)
                ),
            );
            id
        }
    };
    out.push(Op::Free { id });
}

/// `< OLD` followed by `> NEW SIZE`.
fn realloc(
    out: &mut Builder,
    book: &mut AddrBook,
    line: usize,
    from: &Pending,
    new: Option<u64>,
    size: u64,
) {
    let caller = from.caller.as_deref();
    let (Some(old), Some(new)) = (from.old, new) else {
        match (from.old, new) {
            (None, Some(new)) => {
                // `realloc(NULL, SIZE)` is printed as `+`; take this odd pair as one too.
                let id = book.fresh();
                book.place(new, id);
                out.push(Op::Realloc { id, size });
            }
            _ => out.flag(
                line,
                format!(
                    "realloc pair with a `(nil)` result: taken as a failed realloc{}",
                    at(caller)
                ),
            ),
        }
        return;
    };
    let id = match book.take(old) {
        Old::Live(id) => id,
        Old::Freed(id) => {
            out.flag(
                from.line,
                format!(
                    "realloc of #{id} ({old:#x}), which was freed: replayed as \
                     realloc(NULL, {size}){}",
                    at(caller)
                ),
            );
            id
        }
        Old::Unknown(id) => {
            out.flag(
                from.line,
                format!(
                    "realloc of {old:#x}, which the trace never saw allocated: replayed as \
                     realloc(NULL, {size}) for #{id}{}",
                    at(caller)
                ),
            );
            id
        }
    };
    if let Some(displaced) = book.place(new, id) {
        out.flag(
            line,
            format!(
                "{new:#x} is handed out again while #{displaced} still holds it: the trace \
                 misses its free{}",
                at(caller)
            ),
        );
    }
    out.push(Op::Realloc { id, size });
}

/// A `<` whose `>` never came (the trace is cut or damaged): the old block is gone, so it is
/// taken as a free.
fn unmatched_from(out: &mut Builder, book: &mut AddrBook, from: &Pending) {
    let caller = from.caller.as_deref();
    match from.old {
        Some(addr) => {
            out.flag(
                from.line,
                format!(
                    "`< {addr:#x}` is not followed by its `> NEW SIZE` line: taken as a free{}",
                    at(caller)
                ),
            );
            free(out, book, from.line, addr, caller);
        }
        None => out.flag(
            from.line,
            format!(
                "`< (nil)` is not followed by its `> NEW SIZE` line: ignored{}",
                at(caller)
            ),
        ),
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
    fn imports_allocations_frees_and_realloc_pairs_with_callers() {
        let text = "\
= Start
@ ./prog:[0x4005d4] + 0x1a3b260 0x10
@ ./prog:(main+0x1f)[0x4005f3] + 0x1a3b280 0
+ 0x1a3b2a0 20
@ ./prog:[0x400610] < 0x1a3b260
@ ./prog:[0x400610] > 0x1a3b2c0 0x40
@ /lib/libc.so.6:(clone+0x6d)[0x7f1c2d3e4f50] - 0x1a3b2c0
@ [0x400700] - 0x1a3b280
- (nil)
- 0x1a3b2a0
= End
";
        assert_eq!(detect(text), Some(Format::Mtrace));
        let trace = import(text).unwrap();
        assert_eq!(
            trace.ops,
            [
                alloc(1, 16),
                alloc(2, 0),
                alloc(3, 0x20),
                Op::Realloc { id: 1, size: 64 },
                Op::Free { id: 1 },
                Op::Free { id: 2 },
                Op::FreeNull,
                Op::Free { id: 3 },
            ]
        );
        assert!(trace.flags.is_empty(), "{:?}", trace.flags);
    }

    #[test]
    fn a_reused_address_gets_a_new_id_and_a_double_free_frees_the_same_id_again() {
        let text = "+ 0x10 0x8\n- 0x10\n+ 0x10 0x18\n- 0x10\n- 0x10\n";
        let trace = import(text).unwrap();
        assert_eq!(
            trace.ops,
            [
                alloc(1, 8),
                Op::Free { id: 1 },
                alloc(2, 24),
                Op::Free { id: 2 },
                Op::Free { id: 2 },
            ]
        );
        assert_eq!(
            messages(&trace),
            [(4, "line 5: double free of #2 (0x10)".to_owned())]
        );
    }

    #[test]
    fn program_mistakes_and_failures_are_flags() {
        let text = "\
= Start
@ ./p:[0x1] + (nil) 0x100000000
- 0x50
- 0x50
+ 0x20 0x8
@ ./p:[0x2] ! 0x20 0x1000
+ 0x20 0x10
< 0x30
> 0x40 0x8
< 0x40
+ 0x60 0x8
> 0x70 0x8
> (nil) 0x8
< 0x20
";
        let trace = import(text).unwrap();
        assert_eq!(
            trace.ops,
            [
                Op::Free { id: 1 },
                Op::Free { id: 1 },
                alloc(2, 8),
                alloc(3, 16),
                Op::Realloc { id: 4, size: 8 },
                Op::Free { id: 4 },
                alloc(5, 8),
                alloc(6, 8),
                Op::Free { id: 3 },
            ]
        );
        let flags = messages(&trace);
        let expect: [(usize, &str); 10] = [
            (0, "line 2: an allocation of 4294967296 B failed"),
            (
                0,
                "line 3: free of 0x50, which the trace never saw allocated",
            ),
            (1, "line 4: double free of #1 (0x50)"),
            (3, "line 6: realloc(0x20, 4096) failed"),
            (
                3,
                "line 7: 0x20 is handed out again while #2 still holds it",
            ),
            (
                4,
                "line 8: realloc of 0x30, which the trace never saw allocated",
            ),
            (
                5,
                "line 10: `< 0x40` is not followed by its `> NEW SIZE` line",
            ),
            (7, "line 12: `> 0x70` without the `< OLD` line before it"),
            (8, "line 13: `> (nil)` without the `< OLD` line"),
            (8, "line 14: `< 0x20` is not followed"),
        ];
        assert_eq!(flags.len(), expect.len(), "{flags:#?}");
        for ((step, message), (want_step, want)) in flags.iter().zip(expect) {
            assert_eq!(*step, want_step, "{message}");
            assert!(message.starts_with(want), "{message} / {want}");
        }
        assert!(flags[0].1.ends_with("(at ./p:[0x1])"), "{}", flags[0].1);
    }

    #[test]
    fn a_cut_last_line_is_flagged_but_a_bad_line_elsewhere_is_refused() {
        let trace = import("= Start\n+ 0x10 0x8\n+ 0x2").unwrap();
        assert_eq!(trace.ops, [alloc(1, 8)]);
        assert_eq!(trace.flags.len(), 1);
        assert!(trace.flags[0].message.contains("middle of a line"));
        for (text, line, needle) in [
            ("= Start\n+ 0x2\n", 2, "`+ PTR SIZE`"),
            ("= Start\n- 0x10 0x8\n", 2, "`- PTR`"),
            ("= Start\n\n+ 0x10 zz\n", 3, "size in hexadecimal"),
            ("+ 1234 0x8\n", 1, "pointer"),
            ("@ ./prog + 0x10 0x8\n", 1, "@ CALLER"),
            ("= Start\nmalloc(16) = 0x10\n", 2, "expected an mtrace line"),
        ] {
            let err = import(text).unwrap_err();
            assert_eq!(err.line(), Some(line), "{text:?}: {err}");
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_caller_may_hold_spaces() {
        let parsed = parse("@ /opt/my app/lib.so:(f+0x1)[0x7f00] + 0x10 0x8").unwrap();
        assert_eq!(
            parsed.caller.as_deref(),
            Some("/opt/my app/lib.so:(f+0x1)[0x7f00]")
        );
        assert_eq!(parsed.event, Event::Alloc(Some(0x10), 8));
    }

    /// Written by glibc 2.36 (`libc_malloc_debug.so`) for a program of ours that calls
    /// malloc(16), calloc(4, 8), realloc(a, 64), realloc(NULL, 5), aligned_alloc(64, 100),
    /// malloc(1 << 62), realloc(b, 1 << 62), frees everything and free(NULL), then
    /// realloc(malloc(0), 0).
    #[test]
    fn reads_real_glibc_output() {
        let text = "\
= Start
@ ./p:[0x11b0] + 0x55c6e5a672a0 0x10
@ ./p:[0x11c3] + 0x55c6e5a674a0 0x20
@ ./p:[0x11d8] < 0x55c6e5a672a0
@ ./p:[0x11d8] > 0x55c6e5a674d0 0x40
@ ./p:[0x11e6] + 0x55c6e5a672a0 0x5
@ ./p:[0x11f9] + 0x55c6e5a67540 0x64
@ ./p:[0x120f] + (nil) 0x4000000000000000
@ ./p:[0x122c] ! 0x55c6e5a674a0 0x4000000000000000
@ ./p:[0x123c] - 0x55c6e5a674d0
@ ./p:[0x1248] - 0x55c6e5a672a0
@ ./p:[0x1254] - 0x55c6e5a67540
@ ./p:[0x1260] - 0x55c6e5a674a0
@ ./p:[0x126a] + 0x55c6e5a672a0 0
@ ./p:[0x127f] - 0x55c6e5a672a0
= End
";
        let trace = import(text).unwrap();
        assert_eq!(
            trace.ops,
            [
                alloc(1, 16),
                alloc(2, 32),
                Op::Realloc { id: 1, size: 64 },
                alloc(3, 5),
                alloc(4, 100),
                Op::Free { id: 1 },
                Op::Free { id: 3 },
                Op::Free { id: 4 },
                Op::Free { id: 2 },
                alloc(5, 0),
                Op::Free { id: 5 },
            ]
        );
        let flags = messages(&trace);
        assert_eq!(flags.len(), 2, "{flags:?}");
        assert!(
            flags[0]
                .1
                .starts_with("line 8: an allocation of 4611686018427387904 B failed")
        );
        assert!(
            flags[1]
                .1
                .starts_with("line 9: realloc(0x55c6e5a674a0, 4611686018427387904) failed")
        );
        assert!(flags.iter().all(|(step, _)| *step == 5));
    }
}

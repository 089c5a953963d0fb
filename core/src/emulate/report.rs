//! Reports in AddressSanitizer's words: what, READ/WRITE of N bytes at ADDR, the instruction,
//! and where the address lies relative to the block concerned.

use super::{BlockInfo, Event, Site};
use crate::Addr;
use crate::access::Access;
use crate::allocator::AllocError;

/// What a [`GuestReport`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// A bad access or free the checking allocator caught.
    Violation,
    /// An access a non-checking allocator lets through into a header, a free block or space
    /// never handed out.
    Warning,
    /// The allocator's `validate()` found its heap broken.
    Corruption,
    /// A heap call the allocator refused (a double free under dlmalloc, say).
    Refused,
}

impl ReportKind {
    /// Every kind, in the order lists filter them.
    pub const ALL: [ReportKind; 4] = [
        ReportKind::Violation,
        ReportKind::Warning,
        ReportKind::Corruption,
        ReportKind::Refused,
    ];

    /// The word a list shows for it.
    pub fn label(self) -> &'static str {
        match self {
            ReportKind::Violation => "violation",
            ReportKind::Warning => "warning",
            ReportKind::Corruption => "corruption",
            ReportKind::Refused => "refused call",
        }
    }
}

/// One finding of a run in a single shape, for lists: a violation, a warning, a corruption
/// report or a refused call, with where it happened in the guest and the block it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestReport {
    /// What it is.
    pub kind: ReportKind,
    /// The step (op index) it belongs to.
    pub step: usize,
    /// The position that shows it: after the access or call (`step + 1`); for corruption, the
    /// position at which `validate()` found it (`step`, before the call it was checked at).
    pub position: usize,
    /// The class (`heap-buffer-overflow`, `use-after-free`, …, `heap-corruption`, or the
    /// refusal's kind).
    pub class: String,
    /// Read or write, for accesses.
    pub access: Option<Access>,
    /// The address concerned: the access's first byte, the pointer freed, where the heap is
    /// broken.
    pub addr: Option<Addr>,
    /// Bytes accessed, for accesses.
    pub size: Option<u64>,
    /// The guest instruction.
    pub site: Site,
    /// The program's block concerned, when known.
    pub block: Option<BlockInfo>,
    /// The report in full, AddressSanitizer style (several lines).
    pub text: String,
}

impl GuestReport {
    /// The report of `event`, unless it is a successful call or the exit.
    pub fn of(event: &Event) -> Option<GuestReport> {
        match event {
            Event::Violation(v) => Some(GuestReport {
                kind: ReportKind::Violation,
                step: v.step,
                position: v.step + 1,
                class: v.violation.class.name().to_owned(),
                access: v.violation.access,
                addr: Some(v.violation.addr),
                size: v.violation.access.map(|_| v.violation.len),
                site: v.site.clone(),
                block: v.block,
                text: v.report.clone(),
            }),
            Event::Warning(w) => Some(GuestReport {
                kind: ReportKind::Warning,
                step: w.step,
                position: w.step + 1,
                class: w.class.name().to_owned(),
                access: Some(w.access),
                addr: Some(w.addr),
                size: Some(w.size),
                site: w.site.clone(),
                block: w.block,
                text: w.report.clone(),
            }),
            Event::Corruption { step, findings } => Some(GuestReport {
                kind: ReportKind::Corruption,
                step: *step,
                position: *step,
                class: "heap-corruption".to_owned(),
                access: None,
                addr: findings.iter().find_map(|f| f.addr),
                size: None,
                site: Site::default(),
                block: None,
                text: findings
                    .iter()
                    .map(|f| format!("heap corrupted: {}", f.message))
                    .collect::<Vec<_>>()
                    .join("\n"),
            }),
            Event::Call(call) => {
                let error: &AllocError = call.result.as_ref().err()?;
                let args: Vec<String> = call.args.iter().map(|a| format!("{a:#x}")).collect();
                Some(GuestReport {
                    kind: ReportKind::Refused,
                    step: call.step,
                    position: call.step + 1,
                    class: kebab(&format!("{:?}", error.kind)),
                    access: None,
                    addr: call.args.first().copied(),
                    size: None,
                    site: Site {
                        pc: call.pc,
                        instruction: None,
                    },
                    block: None,
                    text: format!(
                        "refused: {}({}): {}\n    {}",
                        call.function.name(),
                        args.join(", "),
                        error.message,
                        site_line(&Site {
                            pc: call.pc,
                            instruction: None
                        })
                    ),
                })
            }
            Event::Exit { .. } => None,
        }
    }
}

/// `DoubleFree` as `double-free`.
fn kebab(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Where `addr` lies relative to `block`, and when the block was allocated and freed:
/// "0x1009 is 0 bytes past the end of the 9-byte block [0x1000, 0x1009) allocated at step 0
/// (freed at step 3)".
pub fn locate(addr: Addr, block: &BlockInfo) -> String {
    let size = block.end - block.start;
    let place = if addr >= block.end {
        format!("{} bytes past the end of", addr - block.end)
    } else if addr < block.start {
        format!("{} bytes before", block.start - addr)
    } else {
        format!("{} bytes inside", addr - block.start)
    };
    let freed = block
        .freed_at
        .map(|t| format!(" (freed at step {t})"))
        .unwrap_or_default();
    format!(
        "{addr:#x} is {place} the {size}-byte block #{} [{:#x}, {:#x}) allocated at step {}{freed}",
        block.id, block.start, block.end, block.allocated_at
    )
}

/// The instruction line: "at pc 0x40102f: mov [rdi+rdx],al".
pub fn site_line(site: &Site) -> String {
    match (site.pc, &site.instruction) {
        (Some(pc), Some(text)) => format!("at pc {pc:#x}: {text}"),
        (Some(pc), None) => format!("at pc {pc:#x}"),
        _ => "at an unknown instruction".to_owned(),
    }
}

/// A bad access: "heap-buffer-overflow: WRITE of 1 bytes at 0x…", the instruction, and the
/// place relative to the block. `first_bad` is the first bad byte, described against `block`.
pub fn access_report(
    class: &str,
    access: Access,
    addr: Addr,
    len: u64,
    first_bad: Addr,
    site: &Site,
    block: Option<&BlockInfo>,
) -> String {
    let mut text = format!(
        "{class}: {access} of {len} bytes at {addr:#x}\n    {}",
        site_line(site)
    );
    if let Some(block) = block {
        text.push_str("\n    ");
        text.push_str(&locate(first_bad, block));
    }
    text
}

/// A bad free: "double-free: free(0x…)", the call, and the block.
pub fn free_report(class: &str, ptr: Addr, site: &Site, block: Option<&BlockInfo>) -> String {
    let mut text = format!("{class}: free({ptr:#x})\n    {}", site_line(site));
    if let Some(block) = block {
        text.push_str("\n    ");
        text.push_str(&locate(ptr, block));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_like_asan() {
        let block = BlockInfo {
            id: 1,
            start: 0x1000,
            end: 0x1009,
            allocated_at: 0,
            freed_at: Some(4),
        };
        assert_eq!(
            locate(0x1009, &block),
            "0x1009 is 0 bytes past the end of the 9-byte block #1 [0x1000, 0x1009) \
             allocated at step 0 (freed at step 4)"
        );
        assert!(locate(0x1002, &block).contains("2 bytes inside"));
        assert!(locate(0xff8, &block).contains("8 bytes before"));
        let text = access_report(
            "heap-buffer-overflow",
            Access::Write,
            0x1009,
            1,
            0x1009,
            &Site {
                pc: Some(0x40102f),
                instruction: Some("mov [rdi+rdx],al".to_owned()),
            },
            Some(&block),
        );
        assert!(
            text.starts_with(
                "heap-buffer-overflow: WRITE of 1 bytes at 0x1009\n    at pc 0x40102f: mov"
            ),
            "{text}"
        );
    }
}

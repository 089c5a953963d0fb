//! Reports in AddressSanitizer's words: what, READ/WRITE of N bytes at ADDR, the instruction,
//! and where the address lies relative to the block concerned.

use super::{BlockInfo, Site};
use crate::Addr;
use crate::access::Access;

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

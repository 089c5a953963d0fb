//! Where the emulator puts things in the guest's address space.
//!
//! Static executables load at 0x400000; allocator heaps sit at their configured bases
//! (bump 0x1000_0000, segregated-fit 0x2000_0000, nutmeg-pool 0x3000_0000, dlmalloc below
//! 0x7f00_0000_0000, freeing-bump at [`FREEING_BUMP_BASE`] under emulation); the stack is
//! above all of them. The first page stays unmapped so that null pointers fault.

use super::HeapFunction;
use crate::Addr;

/// Unicorn's page size on x86.
pub const PAGE: u64 = 0x1000;
/// The runtime page: the sentinel return address and, for raw code, the heap function stubs.
pub const RUNTIME_PAGE: Addr = 0x1000;
/// The return address the entry function is given: reaching it ends the run.
pub const SENTINEL: Addr = RUNTIME_PAGE;
/// One past the stack's highest byte.
pub const STACK_TOP: Addr = 0x7fff_0000_0000;
/// Stack size.
pub const STACK_SIZE: u64 = 1 << 20;
/// Freeing-bump's `heap_base` under emulation (its own default, 0, is where null points).
pub const FREEING_BUMP_BASE: Addr = 0x80_0000;
/// Bytes above [`FREEING_BUMP_BASE`] the fixed-size Tetcore flavour gets under emulation.
pub const TETCORE_HEAP_BYTES: u64 = 4 << 20;

/// Where raw machine code finds heap function `function`: a stub in the runtime page (call it
/// through a register: `mov eax, 0x1010; call rax` calls `malloc`).
pub fn stub_addr(function: HeapFunction) -> Addr {
    let index = HeapFunction::ALL
        .iter()
        .position(|&f| f == function)
        .unwrap_or(0) as u64;
    RUNTIME_PAGE + 0x10 * (index + 1)
}

/// `addr` rounded down to a page.
pub fn page_floor(addr: Addr) -> Addr {
    addr & !(PAGE - 1)
}

/// `addr` rounded up to a page (saturating at the top of the address space).
pub fn page_ceil(addr: Addr) -> Addr {
    addr.checked_next_multiple_of(PAGE).unwrap_or(!(PAGE - 1))
}

//! Heap access checks and the violations they find.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::Addr;

/// Direction of a guest access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "READ",
            Access::Write => "WRITE",
        })
    }
}

/// What kind of bad access or bad free it is (AddressSanitizer's names where it has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationClass {
    /// Past the end of a block, into its guard bytes.
    HeapBufferOverflow,
    /// Into a block that was freed.
    UseAfterFree,
    /// Into heap bytes that were never handed out (beyond the bumper, or padding).
    WildAccess,
    /// Partly or wholly outside the heap region.
    OutOfHeap,
    /// `free` of an address that is not the start of a live block.
    InvalidFree,
    /// `free` of a block that was already freed.
    DoubleFree,
}

impl ViolationClass {
    /// The kebab-case name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ViolationClass::HeapBufferOverflow => "heap-buffer-overflow",
            ViolationClass::UseAfterFree => "use-after-free",
            ViolationClass::WildAccess => "wild-access",
            ViolationClass::OutOfHeap => "out-of-heap",
            ViolationClass::InvalidFree => "invalid-free",
            ViolationClass::DoubleFree => "double-free",
        }
    }
}

impl fmt::Display for ViolationClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A contiguous run of bad bytes within one access, all of one class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRange {
    /// The bytes.
    pub range: Range<Addr>,
    /// Why they are bad.
    pub class: ViolationClass,
}

/// A bad access or bad free, as a checking allocator reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The class of the first bad byte (the one the original would have stopped at).
    pub class: ViolationClass,
    /// Read or write; `None` for a free.
    pub access: Option<Access>,
    /// First byte of the access (or the pointer freed).
    pub addr: Addr,
    /// Bytes accessed (0 for a free).
    pub len: u64,
    /// Every bad byte run, in address order.
    pub bad: Vec<BadRange>,
    /// The block the access concerns: the nearest block at or before the first bad byte.
    pub block: Option<Range<Addr>>,
    /// The original allocator's message for it.
    pub message: String,
}

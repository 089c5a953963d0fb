//! The interface every allocator model implements.

use std::fmt;

use serde::Serialize;

use crate::access::{Access, Violation};
use crate::layered_map::LayeredMap;
use crate::layout::{Detail, Finding, HeapLayout, Ledger, Stats};
use crate::memory::Memory;
use crate::trace::Op;
use crate::{Addr, AllocatorKind};

/// The plain-words explanation of one call, collected only when asked for.
///
/// Models write to it with [`say!`](crate::say), which formats nothing when the
/// trail is off, so replaying a million operations without explanations pays
/// nothing for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trail {
    lines: Option<Vec<String>>,
}

impl Trail {
    /// A trail that records every line.
    pub fn on() -> Self {
        Self {
            lines: Some(Vec::new()),
        }
    }

    /// A trail that records nothing.
    pub fn off() -> Self {
        Self { lines: None }
    }

    /// Whether lines are being recorded.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.lines.is_some()
    }

    /// Records one line (dropped when the trail is off).
    pub fn push(&mut self, line: String) {
        if let Some(lines) = &mut self.lines {
            lines.push(line);
        }
    }

    /// The recorded lines.
    pub fn lines(&self) -> &[String] {
        self.lines.as_deref().unwrap_or(&[])
    }

    /// Takes the recorded lines, leaving the trail empty (and still on, if it was).
    pub fn take(&mut self) -> Vec<String> {
        self.lines.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

/// Records a formatted line on a [`Trail`], formatting only when it is on.
#[macro_export]
macro_rules! say {
    ($trail:expr, $($arg:tt)*) => {
        if $trail.is_on() {
            $trail.push(format!($($arg)*));
        }
    };
}

/// What kind of failure an allocator reported; the UI colours and filters by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// No space left, and the heap may not grow further.
    OutOfMemory,
    /// The request exceeds what the allocator can ever serve in one block.
    TooLarge,
    /// `count * size` of a `calloc` overflows.
    SizeOverflow,
    /// The pointer given to `free`/`realloc` was never returned by the allocator.
    InvalidFree,
    /// The pointer given to `free`/`realloc` was already freed.
    DoubleFree,
    /// A header or link in memory is not what the allocator wrote.
    Corrupted,
    /// The allocator refused the call because an earlier error poisoned it.
    Poisoned,
    /// The original allocator has no way to honour this request (an alignment, say).
    Unsupported,
}

/// An allocator's refusal, with its own message (the original's wording where it has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{message}")]
pub struct AllocError {
    /// Classification for the UI.
    pub kind: ErrorKind,
    /// The message, in the original allocator's words where it has them.
    pub message: String,
}

impl AllocError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// One call into an allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// `malloc(size)` (with `align` <= 1 meaning the allocator's natural alignment).
    Allocate {
        /// Requested payload bytes.
        size: u64,
        /// Requested alignment; 0 or 1 means "whatever malloc gives".
        align: u64,
    },
    /// `free(ptr)`.
    Free {
        /// A pointer the allocator returned.
        ptr: Addr,
    },
    /// `realloc(ptr, size)`.
    Realloc {
        /// A pointer the allocator returned.
        ptr: Addr,
        /// New payload size.
        size: u64,
    },
    /// `calloc(count, size)`.
    Calloc {
        /// Number of elements.
        count: u64,
        /// Size of one element.
        size: u64,
    },
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Request::Allocate { size, align } if align > 1 => {
                write!(f, "allocate({size}, align {align})")
            }
            Request::Allocate { size, .. } => write!(f, "allocate({size})"),
            Request::Free { ptr } => write!(f, "free({ptr:#x})"),
            Request::Realloc { ptr, size } => write!(f, "realloc({ptr:#x}, {size})"),
            Request::Calloc { count, size } => write!(f, "calloc({count}, {size})"),
        }
    }
}

/// What a call returned and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The pointer returned (allocations) or nothing (frees), or the error.
    pub result: Result<Option<Addr>, AllocError>,
    /// The decision log, one plain sentence per line.
    pub log: Vec<String>,
}

/// An allocator model: the algorithm of a real allocator running over its own [`Memory`].
///
/// Implementations keep every header and link in [`Allocator::memory`] and read them back from
/// there, so that corrupting those bytes (as an emulated guest may) changes what the model does,
/// just as it would change what the original does.
pub trait Allocator: fmt::Debug + Send + Sync {
    /// Which variant this is.
    fn kind(&self) -> AllocatorKind;

    /// `malloc(size)` with an alignment request; `align` <= 1 means the natural alignment.
    fn allocate(&mut self, size: u64, align: u64, trail: &mut Trail) -> Result<Addr, AllocError>;

    /// `free(ptr)`. Allocators that cannot free record the call and ignore it.
    fn free(&mut self, ptr: Addr, trail: &mut Trail) -> Result<(), AllocError>;

    /// `realloc(ptr, size)`. The default is what a program gets when the allocator has no
    /// realloc of its own (Rust's `GlobalAlloc::realloc`): allocate, copy, free.
    fn realloc(&mut self, ptr: Addr, size: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        let old_size = self.usable_size(ptr).ok_or_else(|| {
            AllocError::new(
                ErrorKind::InvalidFree,
                format!("realloc of {ptr:#x}, which is not a live block"),
            )
        })?;
        crate::say!(
            trail,
            "no native realloc: allocate {size} B, copy, free the old block"
        );
        let new = self.allocate(size, 0, trail)?;
        let copied = old_size.min(size);
        self.memory_mut()
            .copy_within(ptr, new, copied)
            .map_err(|e| AllocError::new(ErrorKind::Corrupted, e.to_string()))?;
        crate::say!(trail, "copy {copied} B {ptr:#x} -> {new:#x}");
        self.free(ptr, trail)?;
        Ok(new)
    }

    /// `calloc(count, size)`. The default multiplies with overflow check, allocates and zeroes
    /// (Rust's `GlobalAlloc::alloc_zeroed`).
    fn calloc(&mut self, count: u64, size: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        let total = count.checked_mul(size).ok_or_else(|| {
            AllocError::new(
                ErrorKind::SizeOverflow,
                format!("calloc({count}, {size}): size overflows"),
            )
        })?;
        let ptr = self.allocate(total, 0, trail)?;
        self.memory_mut()
            .fill(ptr, total, 0)
            .map_err(|e| AllocError::new(ErrorKind::Corrupted, e.to_string()))?;
        crate::say!(trail, "zero {total} B at {ptr:#x}");
        Ok(ptr)
    }

    /// Allocates a typed object (`Op::String`, `Op::Function`). Allocators without typed
    /// objects allocate its plain byte size and copy its bytes in.
    fn allocate_object(&mut self, op: &Op, trail: &mut Trail) -> Result<Addr, AllocError> {
        let size = op.request_size().unwrap_or(0);
        crate::say!(trail, "{}: a plain allocation of {size} B here", op.name());
        let ptr = self.allocate(size, 0, trail)?;
        let bytes: Vec<u8> = match op {
            Op::String { text, .. } => text.bytes().chain([0]).collect(),
            Op::Function { words, .. } => words.iter().flat_map(|w| w.to_le_bytes()).collect(),
            _ => Vec::new(),
        };
        self.memory_mut()
            .write(ptr, &bytes)
            .map_err(|e| AllocError::new(ErrorKind::Corrupted, e.to_string()))?;
        Ok(ptr)
    }

    /// Payload bytes usable at `ptr` if it is a live block, `None` otherwise.
    fn usable_size(&self, ptr: Addr) -> Option<u64>;

    /// The whole layout as data: blocks, free lists, bumper or top, stats.
    fn inspect(&self) -> HeapLayout;

    /// [`Self::inspect`] decoding only what `detail` asks for; models whose layouts are costly
    /// to describe override it, the others describe everything.
    fn inspect_detail(&self, detail: Detail) -> HeapLayout {
        let _ = detail;
        self.inspect()
    }

    /// Invariants checked against the bytes; empty when the heap is sound.
    fn validate(&self) -> Vec<Finding>;

    /// Running counters, cheap to read after every call.
    fn stats(&self) -> Stats;

    /// The heap's bytes.
    fn memory(&self) -> &Memory;

    /// The heap's bytes, writable (an emulated guest writes through this).
    fn memory_mut(&mut self) -> &mut Memory;

    /// The heap's bytes, for a timeline to take out and put back, or to swap for the bytes of
    /// another step of the same replay along with the rest of the state. Unlike
    /// [`Self::memory_mut`] this is no write by the program, so a model that relies on nobody
    /// else writing its heap (segregated-fit's index of its bins) goes on relying on it.
    fn memory_slot(&mut self) -> &mut Memory {
        self.memory_mut()
    }

    /// Checks a guest access of `len` bytes at `addr`; only checking allocators report anything.
    fn check_access(&self, addr: Addr, len: u64, access: Access) -> Option<Violation> {
        let _ = (addr, len, access);
        None
    }

    /// Classifies `free(ptr)` before it happens; only checking allocators report anything.
    fn check_free(&self, ptr: Addr) -> Option<Violation> {
        let _ = ptr;
        None
    }

    /// A boxed copy (for checkpoints and side-by-side runs).
    fn clone_box(&self) -> Box<dyn Allocator>;

    /// Approximate bytes this model keeps on the host heap outside its [`Memory`] (the ledger,
    /// block lists, side tables): what a timeline checkpoint of it costs besides the bytes.
    fn side_bytes(&self) -> usize;

    /// The model's record of live blocks, for a timeline checkpoint to store its table
    /// compactly instead of copying it.
    fn ledger_mut(&mut self) -> Option<&mut Ledger> {
        None
    }

    /// Addresses the model remembers as freed (dlmalloc tells a double free from a wild
    /// pointer by them), for a timeline checkpoint to store compactly instead of copying.
    fn freed_set_mut(&mut self) -> Option<&mut LayeredMap<()>> {
        None
    }
}

impl Clone for Box<dyn Allocator> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

impl dyn Allocator {
    /// Performs `request`, collecting the decision log.
    pub fn perform(&mut self, request: Request) -> Outcome {
        let mut trail = Trail::on();
        let result = self.perform_with(request, &mut trail);
        Outcome {
            result,
            log: trail.take(),
        }
    }

    /// Performs `request`, explaining into `trail` (which may be off).
    pub fn perform_with(
        &mut self,
        request: Request,
        trail: &mut Trail,
    ) -> Result<Option<Addr>, AllocError> {
        match request {
            Request::Allocate { size, align } => self.allocate(size, align, trail).map(Some),
            Request::Free { ptr } => self.free(ptr, trail).map(|()| None),
            Request::Realloc { ptr, size } => self.realloc(ptr, size, trail).map(Some),
            Request::Calloc { count, size } => self.calloc(count, size, trail).map(Some),
        }
    }
}

/// Formats a byte count the way decision logs do: `24 B`, `4 KiB`, `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = KIB * 1024;
    const GIB: u64 = MIB * 1024;
    match n {
        n if n >= GIB && n % GIB == 0 => format!("{} GiB", n / GIB),
        n if n >= MIB && n % MIB == 0 => format!("{} MiB", n / MIB),
        n if n >= KIB && n % KIB == 0 => format!("{} KiB", n / KIB),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trail_formats_only_when_on() {
        let mut off = Trail::off();
        say!(off, "{}", 1);
        assert!(off.lines().is_empty());
        let mut on = Trail::on();
        say!(on, "bump {} -> {:#x}", bytes(24), 0x30);
        assert_eq!(on.take(), vec!["bump 24 B -> 0x30".to_owned()]);
        assert!(on.is_on());
    }

    #[test]
    fn byte_counts_use_exact_binary_units_only() {
        assert_eq!(bytes(8), "8 B");
        assert_eq!(bytes(65536), "64 KiB");
        assert_eq!(bytes(65537), "65537 B");
        assert_eq!(bytes(32 << 20), "32 MiB");
    }
}

//! Traces: allocator-independent lists of operations keyed by user-level ids.
//!
//! Because operations name blocks by id rather than by address, one trace drives every
//! allocator: each allocator's replay keeps its own id -> pointer map.

use serde::{Deserialize, Serialize};

/// A program-level name for one block, stable across allocators.
pub type Id = u64;

/// One operation of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Op {
    /// `malloc(size)`, or an aligned allocation when `align` > 1.
    Alloc {
        /// The block's id.
        id: Id,
        /// Requested bytes.
        size: u64,
        /// Requested alignment; 0 means whatever `malloc` gives.
        #[serde(default)]
        align: u64,
    },
    /// `calloc(count, size)`.
    Calloc {
        /// The block's id.
        id: Id,
        /// Element count.
        count: u64,
        /// Element size.
        size: u64,
    },
    /// `realloc(block, size)`; a block that is not live is allocated (`realloc(NULL, size)`).
    Realloc {
        /// The block's id.
        id: Id,
        /// New size.
        size: u64,
    },
    /// `free(block)`.
    Free {
        /// The block's id.
        id: Id,
    },
    /// `free(NULL)`: allowed by C, and a no-op.
    FreeNull,
    /// A read of `len` bytes at `offset` into the block (checked by checking allocators).
    Read {
        /// The block's id.
        id: Id,
        /// Offset from the block's start; may run past its end.
        offset: u64,
        /// Bytes read.
        len: u64,
    },
    /// A write of `bytes` at `offset` into the block (checked by checking allocators).
    Write {
        /// The block's id.
        id: Id,
        /// Offset from the block's start; may run past its end.
        offset: u64,
        /// The bytes written.
        bytes: Vec<u8>,
    },
    /// An annotation shown on the timeline.
    Mark {
        /// The text.
        label: String,
    },
    /// A Nutmeg string object; other allocators allocate its byte size.
    String {
        /// The block's id.
        id: Id,
        /// The string's text.
        text: String,
    },
    /// A Nutmeg function object; other allocators allocate its byte size.
    Function {
        /// The block's id.
        id: Id,
        /// Instruction words.
        words: Vec<u64>,
        /// Local variable count.
        nlocals: u64,
        /// Argument count.
        nargs: u64,
    },
    /// A read of `len` bytes at an address no block the program holds covers (a header, a
    /// free block, space never handed out); recorded by emulation.
    ReadAt {
        /// First byte read.
        addr: crate::Addr,
        /// Bytes read.
        len: u64,
    },
    /// A write of `bytes` at an address no block the program holds covers; recorded by
    /// emulation, so that a smashed header is smashed again on replay.
    WriteAt {
        /// First byte written.
        addr: crate::Addr,
        /// The bytes written.
        bytes: Vec<u8>,
    },
    /// `free(addr)` of an address that is not the start of any block the program held.
    FreeAt {
        /// The pointer passed to `free`.
        addr: crate::Addr,
    },
}

impl Op {
    /// The block this operation concerns, if any.
    pub fn id(&self) -> Option<Id> {
        match self {
            Op::Alloc { id, .. }
            | Op::Calloc { id, .. }
            | Op::Realloc { id, .. }
            | Op::Free { id }
            | Op::Read { id, .. }
            | Op::Write { id, .. }
            | Op::String { id, .. }
            | Op::Function { id, .. } => Some(*id),
            Op::FreeNull
            | Op::Mark { .. }
            | Op::ReadAt { .. }
            | Op::WriteAt { .. }
            | Op::FreeAt { .. } => None,
        }
    }

    /// The address this operation names directly (`ReadAt`, `WriteAt`, `FreeAt`), if any.
    pub fn addr(&self) -> Option<crate::Addr> {
        match self {
            Op::ReadAt { addr, .. } | Op::WriteAt { addr, .. } | Op::FreeAt { addr } => Some(*addr),
            _ => None,
        }
    }

    /// The short name used in tables and JSON (`alloc`, `free`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Alloc { .. } => "alloc",
            Op::Calloc { .. } => "calloc",
            Op::Realloc { .. } => "realloc",
            Op::Free { .. } => "free",
            Op::FreeNull => "free-null",
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::Mark { .. } => "mark",
            Op::String { .. } => "string",
            Op::Function { .. } => "function",
            Op::ReadAt { .. } => "read-at",
            Op::WriteAt { .. } => "write-at",
            Op::FreeAt { .. } => "free-at",
        }
    }

    /// Bytes a plain allocator is asked for by this operation, if it allocates.
    pub fn request_size(&self) -> Option<u64> {
        match self {
            Op::Alloc { size, .. } | Op::Realloc { size, .. } => Some(*size),
            Op::Calloc { count, size, .. } => Some(count.saturating_mul(*size)),
            // A C string: the text and its terminating NUL.
            Op::String { text, .. } => Some(text.len() as u64 + 1),
            Op::Function { words, .. } => Some(words.len() as u64 * 8),
            _ => None,
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Alloc { id, size, align } if *align > 1 => {
                write!(f, "#{id} = alloc({size}, align {align})")
            }
            Op::Alloc { id, size, .. } => write!(f, "#{id} = alloc({size})"),
            Op::Calloc { id, count, size } => write!(f, "#{id} = calloc({count}, {size})"),
            Op::Realloc { id, size } => write!(f, "#{id} = realloc(#{id}, {size})"),
            Op::Free { id } => write!(f, "free(#{id})"),
            Op::FreeNull => write!(f, "free(NULL)"),
            Op::Read { id, offset, len } => write!(f, "read #{id}[{offset}..+{len}]"),
            Op::Write { id, offset, bytes } => {
                write!(f, "write #{id}[{offset}..+{}]", bytes.len())
            }
            Op::Mark { label } => write!(f, "— {label}"),
            Op::String { id, text } => write!(f, "#{id} = string({text:?})"),
            Op::Function {
                id,
                words,
                nlocals,
                nargs,
            } => write!(
                f,
                "#{id} = function({} words, {nlocals} locals, {nargs} args)",
                words.len()
            ),
            Op::ReadAt { addr, len } => write!(f, "read [{addr:#x}..+{len}]"),
            Op::WriteAt { addr, bytes } => write!(f, "write [{addr:#x}..+{}]", bytes.len()),
            Op::FreeAt { addr } => write!(f, "free({addr:#x})"),
        }
    }
}

/// Something an importer noticed about the traced program (a free of an address it never got, a
/// double free, an allocation that failed, ...), tied to a place in the operations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    /// Index of the operation the flag is about. When the event produced no operation, the index
    /// of the next one (so it may equal the number of operations).
    pub step: usize,
    /// What was noticed, starting with the source line (`line 12: ...`).
    pub message: String,
}

/// An imported trace: operations keyed by ids, and what the importer noticed on the way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trace {
    /// The operations.
    pub ops: Vec<Op>,
    /// Remarks about the traced program, in step order.
    pub flags: Vec<Flag>,
}

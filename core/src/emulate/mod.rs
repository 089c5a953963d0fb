//! Emulation: real x86-64 programs on Unicorn, their heap served by an allocator model.
//!
//! A static, freestanding x86-64 executable (or a few bytes of machine code) is mapped into a
//! Unicorn machine and started at a function symbol with System V arguments and a sentinel
//! return address that ends the run. The program's `malloc`, `calloc`, `realloc`, `free`,
//! `aligned_alloc` and `posix_memalign` are found by symbol; a code hook at each address
//! services the call with the chosen [`Allocator`] and returns to the caller, so the
//! placeholder bodies never run.
//!
//! **The allocator's memory is the guest's heap.** The pages covering the model's
//! [`Memory`](crate::Memory) are mapped at the same addresses in Unicorn, and the two are kept
//! equal: every guest write to the heap is mirrored into the model from the write hook (which
//! runs just before the write, with its value), and after every heap call the bytes the model
//! changed (headers, links, zeroed or copied blocks) are pushed to Unicorn; when the model's
//! memory grows, more pages are mapped. So a guest that overflows into the next block's header
//! really corrupts the model, and the model's own checks (freeing-bump's poisoning,
//! segregated-fit's magic, dlmalloc's `validate()`) find it as the original would.
//!
//! **Memory hooks cover the heap range only.** Unicorn runs translated code at full speed
//! except where a hook asks to see an access; hooking the stack, the code and the data
//! segments would make every push and every global a callback. Only heap accesses say
//! anything about the heap, so only they are hooked (the range is re-registered when the heap
//! grows).
//!
//! **The run is a replayable trace.** Each heap call becomes an [`Op`] keyed by ids (each
//! pointer returned gets a new id), and each guest heap access becomes an op too: `Read`/`Write`
//! of a held block by id and offset when it falls inside what the program asked for, and
//! `ReadAt`/`WriteAt` by address otherwise (a header, a free block, space never handed out).
//! The machine applies the calls through a [`Replayer`](crate::Replayer) as they happen, and
//! checks and stores each access with the allocator directly (exactly what applying its op
//! does, without building the op: accesses are the hot path, recorded compactly as
//! [`AccessRecord`]s), so replaying [`Run::ops`] against a fresh allocator of the same kind and
//! settings reproduces the run's heap exactly; events (calls, violations, warnings, corruption,
//! the exit) name the step (op index) they belong to.
//!
//! Under `checked-bump` every access is checked and each bad one is a [`Violation`] reported
//! like AddressSanitizer does; under the other allocators, accesses into headers, free blocks or
//! unallocated space are [`Warning`]s naming the block they hit.

mod disasm;
mod heap_calls;
pub mod image;
pub mod layout;
mod limits;
mod machine;
mod program;
pub mod report;
mod tracker;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use image::{Image, Perms, Segment, parse_hex};
pub use program::{Program, ProgramError};

use crate::access::{Access, Violation, ViolationClass};
use crate::allocator::{AllocError, Allocator};
use crate::layout::{BlockState, Finding};
use crate::trace::Op;
use crate::{Addr, AllocatorKind, ConfigError, HeapConfig};

/// Default instruction budget.
pub const DEFAULT_MAX_INSNS: u64 = 50_000_000;
/// Default wall-clock limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit on recorded operations (heap calls and heap accesses).
pub const DEFAULT_MAX_OPS: usize = 2_000_000;

/// How to run a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The function to start at: a symbol, or a `0x…` address.
    pub entry: String,
    /// Integer arguments, passed in `rdi`, `rsi`, `rdx`, `rcx`, `r8`, `r9` (at most six).
    pub args: Vec<u64>,
    /// Instructions after which the run ends.
    pub max_insns: u64,
    /// Wall-clock time after which the run ends.
    pub timeout: Duration,
    /// End the run at the first violation (else collect them all).
    pub stop_on_first: bool,
    /// Operations after which the run ends (bounds the memory a run takes).
    pub max_ops: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            entry: "main".to_owned(),
            args: Vec::new(),
            max_insns: DEFAULT_MAX_INSNS,
            timeout: DEFAULT_TIMEOUT,
            stop_on_first: false,
            max_ops: DEFAULT_MAX_OPS,
        }
    }
}

/// A program that cannot be emulated at all (nothing ran).
#[derive(Debug, thiserror::Error)]
pub enum EmulateError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not an ELF64 x86-64 static executable, or the code is unusable.
    #[error("{origin}: {message}")]
    Elf {
        /// The file.
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// The entry function does not exist.
    #[error("{origin}: no function `{symbol}` (functions: {known})")]
    MissingSymbol {
        /// The file.
        origin: String,
        /// The name asked for.
        symbol: String,
        /// Names it has (the first few).
        known: String,
    },
    /// The options are unusable.
    #[error("{0}")]
    Options(String),
    /// The allocator settings are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Mapping the program, stack or heap failed (an overlap, say).
    #[error("{origin}: {message}")]
    Map {
        /// The file.
        origin: String,
        /// What could not be mapped.
        message: String,
    },
}

/// A heap function the emulator services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeapFunction {
    /// `malloc(size)`.
    Malloc,
    /// `calloc(count, size)`.
    Calloc,
    /// `realloc(ptr, size)`.
    Realloc,
    /// `free(ptr)`.
    Free,
    /// `aligned_alloc(alignment, size)`.
    AlignedAlloc,
    /// `posix_memalign(&ptr, alignment, size)`.
    PosixMemalign,
}

impl HeapFunction {
    /// Every function, in stub order.
    pub const ALL: [HeapFunction; 6] = [
        HeapFunction::Malloc,
        HeapFunction::Calloc,
        HeapFunction::Realloc,
        HeapFunction::Free,
        HeapFunction::AlignedAlloc,
        HeapFunction::PosixMemalign,
    ];

    /// The C name.
    pub fn name(self) -> &'static str {
        match self {
            HeapFunction::Malloc => "malloc",
            HeapFunction::Calloc => "calloc",
            HeapFunction::Realloc => "realloc",
            HeapFunction::Free => "free",
            HeapFunction::AlignedAlloc => "aligned_alloc",
            HeapFunction::PosixMemalign => "posix_memalign",
        }
    }

    /// How many integer arguments it takes.
    pub fn arity(self) -> usize {
        match self {
            HeapFunction::Malloc | HeapFunction::Free => 1,
            HeapFunction::Calloc | HeapFunction::Realloc | HeapFunction::AlignedAlloc => 2,
            HeapFunction::PosixMemalign => 3,
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Exit {
    /// The entry function returned.
    Returned {
        /// `rax` at the return.
        value: u64,
    },
    /// The instruction budget ran out.
    BudgetExhausted {
        /// The budget.
        max_insns: u64,
    },
    /// The wall-clock limit passed.
    Timeout {
        /// The limit in milliseconds.
        ms: u64,
    },
    /// A violation was found and the run was asked to stop at the first.
    StoppedOnViolation,
    /// An access to unmapped or protected memory, or an interrupt or system call.
    Fault {
        /// The instruction, when known.
        pc: Option<Addr>,
        /// What happened.
        message: String,
    },
    /// The processor met bytes that are no instruction.
    InvalidInstruction {
        /// Where.
        pc: Addr,
    },
    /// The run recorded as many operations as it may.
    TraceLimit {
        /// The limit.
        ops: usize,
    },
}

impl Exit {
    /// The kebab-case reason used in JSON.
    pub fn reason(&self) -> &'static str {
        match self {
            Exit::Returned { .. } => "returned",
            Exit::BudgetExhausted { .. } => "budget-exhausted",
            Exit::Timeout { .. } => "timeout",
            Exit::StoppedOnViolation => "stopped-on-violation",
            Exit::Fault { .. } => "fault",
            Exit::InvalidInstruction { .. } => "invalid-instruction",
            Exit::TraceLimit { .. } => "trace-limit",
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Returned { value } => {
                write!(f, "returned {value} ({value:#x})")
            }
            Exit::BudgetExhausted { max_insns } => {
                write!(f, "instruction budget of {max_insns} exhausted")
            }
            Exit::Timeout { ms } => write!(f, "timed out after {ms} ms"),
            Exit::StoppedOnViolation => write!(f, "stopped at the first violation"),
            Exit::Fault {
                pc: Some(pc),
                message,
            } => write!(f, "fault at pc {pc:#x}: {message}"),
            Exit::Fault { pc: None, message } => write!(f, "fault: {message}"),
            Exit::InvalidInstruction { pc } => write!(f, "invalid instruction at pc {pc:#x}"),
            Exit::TraceLimit { ops } => write!(f, "stopped after recording {ops} operations"),
        }
    }
}

/// One serviced heap call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    /// The step (op index) it recorded.
    pub step: usize,
    /// The function.
    pub function: HeapFunction,
    /// Its integer arguments.
    pub args: Vec<u64>,
    /// The call instruction's address, when it could be found.
    pub pc: Option<Addr>,
    /// What the allocator returned: a pointer, nothing (`free`), or its refusal.
    pub result: Result<Option<Addr>, AllocError>,
    /// What the emulator did instead of calling the allocator, if it did not call it.
    pub note: Option<String>,
}

/// One guest access to the heap, recorded compactly (no allocation per access): its op is
/// built only when asked for ([`AccessRecord::op`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRecord {
    /// The step (op index) it recorded.
    pub step: usize,
    /// Read or write.
    pub access: Access,
    /// First byte.
    pub addr: Addr,
    /// Bytes (1, 2, 4 or 8 for most instructions).
    pub size: u64,
    /// The value read or written (little-endian, the first `size` bytes).
    pub value: u64,
    /// The instruction.
    pub pc: Addr,
    /// The program's block the access is recorded against (`Read`/`Write` by id and offset);
    /// `None` for accesses recorded by address (`ReadAt`/`WriteAt`).
    pub owner: Option<Owner>,
}

/// The block an access is recorded against: its id and the offset into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The program's id for the block.
    pub id: crate::trace::Id,
    /// Bytes from the block's start.
    pub offset: u64,
}

impl AccessRecord {
    /// Bytes a write stores (the hook's value holds at most 8).
    fn stored_len(&self) -> usize {
        self.size.min(8) as usize
    }

    /// The trace operation this access is.
    pub fn op(&self) -> Op {
        let bytes = || self.value.to_le_bytes()[..self.stored_len()].to_vec();
        match (self.access, self.owner) {
            (Access::Read, Some(o)) => Op::Read {
                id: o.id,
                offset: o.offset,
                len: self.size,
            },
            (Access::Write, Some(o)) => Op::Write {
                id: o.id,
                offset: o.offset,
                bytes: bytes(),
            },
            (Access::Read, None) => Op::ReadAt {
                addr: self.addr,
                len: self.size,
            },
            (Access::Write, None) => Op::WriteAt {
                addr: self.addr,
                bytes: bytes(),
            },
        }
    }
}

/// Where a finding happened in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Site {
    /// The instruction's address.
    pub pc: Option<Addr>,
    /// The instruction, in Intel syntax.
    pub instruction: Option<String>,
}

/// What a tracked block is, for reports: its bounds and when it was allocated and freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BlockInfo {
    /// The program's id for it.
    pub id: u64,
    /// The pointer returned.
    pub start: Addr,
    /// One past the bytes requested.
    pub end: Addr,
    /// The step that allocated it.
    pub allocated_at: usize,
    /// The step that freed it, if it was freed.
    pub freed_at: Option<usize>,
}

/// A bad access or free the checking allocator caught.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationEvent {
    /// The step (op index).
    pub step: usize,
    /// The allocator's finding.
    pub violation: Violation,
    /// Where in the guest.
    pub site: Site,
    /// The block concerned, when the emulator knows it.
    pub block: Option<BlockInfo>,
    /// The AddressSanitizer-style report.
    pub report: String,
}

/// An access that a non-checking allocator lets through, but that hits a header, a free block
/// or space never handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The step (op index).
    pub step: usize,
    /// Read or write.
    pub access: Access,
    /// First byte.
    pub addr: Addr,
    /// Bytes.
    pub size: u64,
    /// What such an access would be called under a checking allocator.
    pub class: ViolationClass,
    /// The state of the allocator's block hit (from `inspect()`).
    pub hit: Option<BlockState>,
    /// The allocator's block hit, all of it.
    pub hit_range: Option<std::ops::Range<Addr>>,
    /// The program's block concerned, when the emulator knows it.
    pub block: Option<BlockInfo>,
    /// Where in the guest.
    pub site: Site,
    /// The report, in words.
    pub report: String,
}

/// Something noticed during a run, on its step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A heap call.
    Call(CallEvent),
    /// A violation (checking allocators).
    Violation(ViolationEvent),
    /// A suspicious access (other allocators).
    Warning(Warning),
    /// The allocator's `validate()` found its heap broken, first noticed at `step`.
    Corruption {
        /// The step before which it was checked (a heap call, or the end of the run).
        step: usize,
        /// The new findings.
        findings: Vec<Finding>,
    },
    /// The end of the run.
    Exit {
        /// The number of ops recorded.
        step: usize,
        /// Why.
        exit: Exit,
    },
}

impl Event {
    /// The step the event belongs to.
    pub fn step(&self) -> usize {
        match self {
            Event::Call(c) => c.step,
            Event::Violation(v) => v.step,
            Event::Warning(w) => w.step,
            Event::Corruption { step, .. } | Event::Exit { step, .. } => *step,
        }
    }
}

/// One emulation run against one allocator.
#[derive(Debug)]
pub struct Run {
    /// The allocator.
    pub kind: AllocatorKind,
    /// The settings it ran with (emulation defaults filled in); a fresh allocator built with
    /// them and replaying [`Run::ops`] ends in the same state as [`Run::heap`].
    pub config: HeapConfig,
    /// The heap calls' operations, each with its step, in step order (the rest of the trace
    /// is [`Run::accesses`]; [`Run::ops`] merges the two).
    pub call_ops: Vec<(usize, Op)>,
    /// Every guest heap access, in order (each also an op).
    pub accesses: Vec<AccessRecord>,
    /// Calls, violations, warnings, corruption and the exit, in step order.
    pub events: Vec<Event>,
    /// Why the run ended.
    pub exit: Exit,
    /// The allocator after the run.
    pub heap: Box<dyn Allocator>,
}

impl Run {
    /// The number of operations recorded (heap calls and heap accesses).
    pub fn op_count(&self) -> usize {
        self.call_ops.len() + self.accesses.len()
    }

    /// The operation at `step`.
    pub fn op(&self, step: usize) -> Option<Op> {
        if let Ok(i) = self.call_ops.binary_search_by_key(&step, |(s, _)| *s) {
            return self.call_ops.get(i).map(|(_, op)| op.clone());
        }
        let i = self.accesses.binary_search_by_key(&step, |a| a.step).ok()?;
        self.accesses.get(i).map(AccessRecord::op)
    }

    /// The trace: heap calls and heap accesses as operations, in order. Replaying it against a
    /// fresh allocator of the same kind and settings reproduces the run's heap.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops = Vec::with_capacity(self.op_count());
        let mut calls = self.call_ops.iter().peekable();
        for access in &self.accesses {
            while let Some((_, op)) = calls.next_if(|(step, _)| *step < access.step) {
                ops.push(op.clone());
            }
            ops.push(access.op());
        }
        ops.extend(calls.map(|(_, op)| op.clone()));
        ops
    }

    /// The violations found.
    pub fn violations(&self) -> impl Iterator<Item = &ViolationEvent> {
        self.events.iter().filter_map(|e| match e {
            Event::Violation(v) => Some(v),
            _ => None,
        })
    }

    /// The warnings raised.
    pub fn warnings(&self) -> impl Iterator<Item = &Warning> {
        self.events.iter().filter_map(|e| match e {
            Event::Warning(w) => Some(w),
            _ => None,
        })
    }

    /// The heap calls serviced.
    pub fn calls(&self) -> impl Iterator<Item = &CallEvent> {
        self.events.iter().filter_map(|e| match e {
            Event::Call(c) => Some(c),
            _ => None,
        })
    }

    /// Every finding as one list, in step order: violations, warnings, corruption reports and
    /// refused calls (a refusal that a violation on the same step explains, a double free
    /// under `checked-bump`, is listed once, as the violation).
    pub fn reports(&self) -> Vec<report::GuestReport> {
        let violated: std::collections::BTreeSet<usize> =
            self.violations().map(|v| v.step).collect();
        let mut reports: Vec<_> = self
            .events
            .iter()
            .filter_map(report::GuestReport::of)
            .filter(|r| !(r.kind == report::ReportKind::Refused && violated.contains(&r.step)))
            .collect();
        reports.sort_by_key(|r| r.step);
        reports
    }

    /// Every corruption finding reported.
    pub fn corruption(&self) -> impl Iterator<Item = &Finding> {
        self.events.iter().flat_map(|e| match e {
            Event::Corruption { findings, .. } => findings.as_slice(),
            _ => &[],
        })
    }
}

/// The settings an allocator gets under emulation: `config` with emulation defaults for what
/// it leaves unset. Freeing-bump's heap starts at address 0 by default, where the program's
/// null pointers point and below where static executables load; emulation moves it to
/// [`layout::FREEING_BUMP_BASE`] (and gives the fixed-size Tetcore flavour room above it).
pub fn emulation_config(kind: AllocatorKind, config: &HeapConfig) -> HeapConfig {
    let mut config = config.clone();
    if matches!(
        kind,
        AllocatorKind::FreeingBump | AllocatorKind::FreeingBumpTetcore
    ) {
        let base = *config.base.get_or_insert(layout::FREEING_BUMP_BASE);
        if kind == AllocatorKind::FreeingBumpTetcore && config.size.is_none() {
            config.size = Some(base + layout::TETCORE_HEAP_BYTES);
        }
    }
    config
}

/// Runs `image` with its heap served by a fresh `kind` allocator built from `config` (plus
/// [`emulation_config`]'s defaults).
///
/// Errors only when nothing can run (bad entry, overlapping mappings, bad settings); every way
/// a running program ends, faults included, is a [`Run`] with its [`Exit`] and the trace
/// recorded so far.
pub fn run(
    image: &Image,
    kind: AllocatorKind,
    config: &HeapConfig,
    options: &Options,
) -> Result<Run, EmulateError> {
    machine::run(image, kind, &emulation_config(kind, config), options)
}

#[cfg(test)]
mod tests;

//! heapscope-core: allocator models over real bytes.
//!
//! Each model in [`allocators`] runs the algorithm of a real allocator over its own
//! [`Memory`], writing headers and free-list links as bytes where the original writes them.
//! [`Allocator::inspect`] decodes those bytes into a [`HeapLayout`], and
//! [`Allocator::validate`] checks the invariants against them.

pub mod access;
pub mod allocator;
pub mod allocators;
pub mod emulate;
pub mod import;
pub mod kind;
pub mod layered_map;
pub mod layout;
pub mod memory;
pub mod metrics;
mod packed_table;
pub mod replay;
pub mod scenario;
pub mod timeline;
pub mod trace;

pub use access::{Access, BadRange, Violation, ViolationClass};
pub use allocator::{AllocError, Allocator, ErrorKind, Outcome, Request, Trail};
pub use import::{Format, ImportError};
pub use kind::{AllocatorKind, ConfigError, HeapConfig};
pub use layout::{
    Block, BlockState, Detail, Field, Finding, FreeList, HeapLayout, Marker, NativeStat, Stats,
};
pub use memory::{Memory, OutOfBounds};
pub use replay::{Replayer, Step, StepResult};
pub use scenario::{Scenario, ScenarioError};
pub use timeline::{Problem, RecordOptions, StepOutcome, Timeline, TimelineError};
pub use trace::{Flag, Id, Op, Trace};

/// An address in a model's address space.
pub type Addr = u64;

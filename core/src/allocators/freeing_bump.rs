//! `freeing-bump` and `freeing-bump-tetcore`: Substrate's freeing-bump heap allocator.
//!
//! The allocator that Substrate's wasm executor runs inside a runtime's linear memory. Every
//! request is rounded up to a power of two between 8 B and the largest allocation, its *order*
//! (`8 << order` bytes). Each block is preceded by an 8-byte little-endian header:
//!
//! - occupied: bit 32 set, the order in the low 32 bits;
//! - free: bit 32 clear, the low 32 bits link to the *header* of the next free block of the same
//!   order (`u32::MAX` ends the list).
//!
//! There is one LIFO free list per order, whose heads live in the allocator (not in memory).
//! An allocation pops the head of its order's list, reading the next link from the popped
//! block's header; when the list is empty it bumps the bumper by `8 + size`. A free reads the
//! order from the header at `ptr - 8` and pushes the block on that order's list. Freed blocks are
//! never split, merged or returned to the bumper. After *any* error the allocator is poisoned and
//! refuses every later call.
//!
//! The model's [`Memory`] is the whole wasm linear memory, starting at address 0.
//! [`HeapConfig`] maps as follows: `base` is the `heap_base` handed to
//! `FreeingBumpHeapAllocator::new` (default 0; rounded up to 8 as the original does), `size` the
//! initial memory in bytes (default 64 KiB) and, for [`Flavour::Substrate`], `max` the maximum
//! memory in bytes (default 4 GiB, the wasm32 limit; rounded down to whole pages).
//!
//! # The two flavours
//!
//! - [`Flavour::Substrate`] follows `sc-allocator` 39.0.0 (`src/freeing_bump.rs`): 23 orders
//!   (8 B ..= 32 MiB), memory that grows in 64 KiB wasm pages (to twice its pages, capped at the
//!   maximum, or to what the request needs if that is more), `AllocationStats`
//!   (`bytes_allocated`, `bytes_allocated_peak`, `bytes_allocated_sum`, `address_space_used`) as
//!   native stats, and a bounds check on free-list links that fails with "Invalid header pointer
//!   detected".
//! - [`Flavour::Tetcore`] follows Tetcore's copy of the older Substrate allocator
//!   (`tetcoin/tetcore`, `primitives/allocator/src/freeing_bump.rs` at commit
//!   `e77303e379b0ce32688c4f45b9610665747774e5`). It differs from the new form in that the memory
//!   is a fixed byte slice of any length (`size` is not rounded to pages, `max` is ignored, the
//!   memory never grows: a bump past its end is "Allocator ran out of space"); the largest
//!   allocation is 16 MiB (22 orders); the only statistic is `total_size` (bytes in occupied
//!   blocks, headers included); the free-list link check is an `assert!` that *panics* ("Pointer
//!   is looked up in list of free entries, into which only valid values are inserted; qed"),
//!   which the model reports as a [`ErrorKind::Corrupted`] error prefixed with `panicked: ` (the
//!   original's `PoisonBomb` poisons it while the panic unwinds, so the model poisons too); the
//!   free-time underflow message is "Unable to subtract from total heap size without overflow";
//!   and there is no shrinking-memory check.
//!
//! # Where the model departs from the original
//!
//! - Calls the original could never receive are refused *without* poisoning and without counting
//!   as a call: an alignment above 8 (or not a power of two), which the original cannot honour
//!   ([`ErrorKind::Unsupported`]), and a `free` of an address above `u32::MAX`, which is no wasm32
//!   pointer ([`ErrorKind::InvalidFree`]). A size above `u32::MAX` is above the largest
//!   allocation anyway and fails (and poisons) as "Requested allocation size is too large".
//! - The original keeps its counters in `u32` (and its bumper too); the model uses `u64`, so
//!   they agree everywhere below 4 GiB, where the original would overflow.
//! - The model's memory cannot shrink, so sc's "Shrinking of the underlying memory is observed"
//!   never happens.
//! - There is no native realloc or calloc: the trait's defaults (allocate + copy + free,
//!   allocate + zero) are what a wasm runtime's `GlobalAlloc` does on top of this allocator.
//!
//! # Errors, poisoning and what the UI sees
//!
//! Messages are the originals' `Error` `Display` texts ("Allocator ran out of space",
//! "Requested allocation size is too large", "Other: Invalid header pointer detected", "Other:
//! the allocator has been poisoned", ...). The [`ErrorKind`] is the model's reading of the
//! situation: a refused `free` of a pointer the ledger holds live is [`ErrorKind::Corrupted`]
//! (its header was overwritten), of a header on a free list [`ErrorKind::DoubleFree`], else
//! [`ErrorKind::InvalidFree`]. Calls are numbered from 1 (refused ones included), and
//! [`HeapLayout::poisoned`] names the call, its request and the error that poisoned the allocator.
//!
//! [`Allocator::inspect`] walks the headers from `heap_base` to the bumper (a free block's size
//! comes from the list it is on), shows the bytes below `heap_base` as metadata and those from
//! the bumper to the memory's end as unused, and lists every order's free list (23 or 22 of
//! them, in order) with *header* addresses as nodes, as the links in memory are.
//! [`Allocator::validate`] checks those walks against each other and against the ledger.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::allocator::{AllocError, Allocator, ErrorKind, Request, Trail, bytes};
use crate::layout::{
    Block, BlockState, Detail, Field, Finding, FreeList, HeapLayout, Ledger, LiveEntry, Marker,
    NativeStat, Stats,
};
use crate::memory::Memory;
use crate::{Addr, AllocatorKind, ConfigError, HeapConfig, say};

/// Bytes of the header before every block.
pub const HEADER_SIZE: u64 = 8;
/// Alignment of `heap_base` and of every pointer handed out.
pub const ALIGNMENT: u64 = 8;
/// Size of a wasm page, the unit in which memory grows.
pub const PAGE_SIZE: u64 = 65536;
/// Most pages a wasm32 memory can have (4 GiB).
pub const MAX_WASM_PAGES: u64 = 65536;
/// The smallest block: order 0.
pub const MIN_POSSIBLE_ALLOCATION: u64 = 8;
/// Link value that ends a free list.
pub const NIL_MARKER: u32 = u32::MAX;
/// Bit of a header that marks it occupied.
const OCCUPIED_BIT: u64 = 1 << 32;
/// Most orders any flavour has (the free-list heads array is this long).
const MAX_ORDERS: usize = 23;

/// Which original the model follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// `sc-allocator` 39.0.0: 23 orders up to 32 MiB, memory growing in wasm pages.
    Substrate,
    /// Tetcore's older form: 22 orders up to 16 MiB, fixed memory, `total_size`.
    Tetcore,
}

impl Flavour {
    /// The variant name this flavour is registered under.
    pub fn kind(self) -> AllocatorKind {
        match self {
            Flavour::Substrate => AllocatorKind::FreeingBump,
            Flavour::Tetcore => AllocatorKind::FreeingBumpTetcore,
        }
    }

    /// Number of orders (and free lists).
    pub fn orders(self) -> u32 {
        match self {
            Flavour::Substrate => 23,
            Flavour::Tetcore => 22,
        }
    }

    /// The largest request served (`MAX_POSSIBLE_ALLOCATION`).
    pub fn max_allocation(self) -> u64 {
        MIN_POSSIBLE_ALLOCATION << (self.orders() - 1)
    }

    /// Whether the memory grows in wasm pages when the bumper needs more.
    pub fn grows(self) -> bool {
        matches!(self, Flavour::Substrate)
    }

    /// What `deallocate` says when the byte count would go below zero.
    fn underflow_message(self) -> &'static str {
        match self {
            Flavour::Substrate => "underflow of the currently allocated bytes count",
            Flavour::Tetcore => "Unable to subtract from total heap size without overflow",
        }
    }
}

/// Block size of `order`.
#[inline]
fn order_size(order: u32) -> u64 {
    MIN_POSSIBLE_ALLOCATION << order
}

/// `order N (S B)`.
fn order_name(order: u32) -> String {
    format!("order {order} ({})", bytes(order_size(order)))
}

/// The order of a request of `size` bytes (`size` at most the largest allocation).
#[inline]
fn order_of(size: u64) -> u32 {
    let rounded = size.max(MIN_POSSIBLE_ALLOCATION).next_power_of_two();
    rounded.trailing_zeros() - MIN_POSSIBLE_ALLOCATION.trailing_zeros()
}

/// A header as read from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// Bit 32 set and a valid order.
    Occupied(u32),
    /// Bit 32 set but the low bits are no order of this flavour.
    BadOrder(u32),
    /// Bit 32 clear: the link to the next free header (`NIL_MARKER` ends the list).
    Free(u32),
}

impl Header {
    /// Decodes a raw header the way the original does (bits above 32 are ignored).
    #[inline]
    fn decode(raw: u64, orders: u32) -> Header {
        // Truncation is the point: the original keeps the low 32 bits.
        let data = raw as u32;
        if raw & OCCUPIED_BIT != 0 {
            if data < orders {
                Header::Occupied(data)
            } else {
                Header::BadOrder(data)
            }
        } else {
            Header::Free(data)
        }
    }

    fn occupied(order: u32) -> u64 {
        u64::from(order) | OCCUPIED_BIT
    }

    fn free(link: u32) -> u64 {
        u64::from(link)
    }

    /// The header explained for a student.
    fn meaning(self) -> String {
        match self {
            Header::Occupied(order) => format!("occupied, order {order}"),
            Header::BadOrder(order) => format!("occupied, invalid order {order}"),
            Header::Free(NIL_MARKER) => "end of list".to_owned(),
            Header::Free(link) => format!("next free -> {link:#x}"),
        }
    }
}

/// An error of the original allocator (its `Error` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    TooLarge,
    OutOfSpace,
    Other(&'static str),
    /// The original panics here (an `assert!`).
    Panic(&'static str),
}

impl Fault {
    /// The original's `Display` of the error.
    fn message(self) -> String {
        match self {
            Fault::TooLarge => "Requested allocation size is too large".to_owned(),
            Fault::OutOfSpace => "Allocator ran out of space".to_owned(),
            Fault::Other(msg) => format!("Other: {msg}"),
            Fault::Panic(msg) => format!("panicked: {msg}"),
        }
    }
}

const POISONED: &str = "the allocator has been poisoned";
const INVALID_HEADER_POINTER: &str = "Invalid header pointer detected";
const TETCORE_ASSERT: &str =
    "Pointer is looked up in list of free entries, into which only valid values are inserted; qed";

/// sc-allocator's `AllocationStats`, kept the same way (Tetcore's `total_size` is
/// `bytes_allocated`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocationStats {
    /// Bytes in occupied blocks right now, headers included.
    pub bytes_allocated: u64,
    /// Highest `bytes_allocated` so far.
    pub bytes_allocated_peak: u64,
    /// Bytes of every allocation ever made, headers included.
    pub bytes_allocated_sum: u128,
    /// `bumper - heap_base` as of the last successful allocation.
    pub address_space_used: u64,
}

/// What poisoned the allocator, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Poison {
    /// 1-based number of the call that failed.
    call: u64,
    request: Request,
    error: AllocError,
}

/// Substrate's `FreeingBumpHeapAllocator` over a wasm linear memory.
#[derive(Debug, Clone)]
pub struct FreeingBump {
    flavour: Flavour,
    memory: Memory,
    /// `heap_base` rounded up to 8: the original's `original_heap_base`.
    heap_base: Addr,
    bumper: Addr,
    /// Free-list heads: header addresses, `NIL_MARKER` for empty lists.
    heads: [u32; MAX_ORDERS],
    /// Pages the memory may grow to (Substrate).
    max_pages: u64,
    native: AllocationStats,
    /// Calls made so far (allocate and free, refused ones included).
    calls: u64,
    poison: Option<Poison>,
    ledger: Ledger,
}

type Fail = (Fault, ErrorKind);

impl FreeingBump {
    /// A freeing-bump heap of `flavour` set up from `config` (see the module docs).
    pub fn new(flavour: Flavour, config: &HeapConfig) -> Result<Self, ConfigError> {
        let kind = flavour.kind();
        let base = config.base.unwrap_or(0);
        // The original computes this in u32.
        if base > u64::from(u32::MAX) - (ALIGNMENT - 1) {
            return Err(ConfigError::invalid(
                kind,
                format!("heap_base {base:#x} does not fit a wasm32 address once aligned to 8"),
            ));
        }
        let heap_base = base.next_multiple_of(ALIGNMENT);
        let size = config.size.unwrap_or(PAGE_SIZE);
        let (len, max_pages) = match flavour {
            Flavour::Substrate => {
                let pages = size.div_ceil(PAGE_SIZE);
                let max_pages = config
                    .max
                    .map_or(MAX_WASM_PAGES, |max| (max / PAGE_SIZE).min(MAX_WASM_PAGES));
                if pages > MAX_WASM_PAGES {
                    return Err(ConfigError::invalid(
                        kind,
                        format!("initial memory of {size} B is above the wasm32 limit of 4 GiB"),
                    ));
                }
                if max_pages < pages {
                    return Err(ConfigError::invalid(
                        kind,
                        format!(
                            "maximum memory of {max_pages} pages is below the initial {pages} pages"
                        ),
                    ));
                }
                (pages * PAGE_SIZE, max_pages)
            }
            Flavour::Tetcore => {
                if size > u64::from(u32::MAX) {
                    return Err(ConfigError::invalid(
                        kind,
                        format!("memory of {size} B does not fit the original's u32 size"),
                    ));
                }
                (size, size.div_ceil(PAGE_SIZE))
            }
        };
        Ok(Self {
            flavour,
            memory: Memory::new(0, len),
            heap_base,
            bumper: heap_base,
            heads: [NIL_MARKER; MAX_ORDERS],
            max_pages,
            native: AllocationStats::default(),
            calls: 0,
            poison: None,
            ledger: Ledger::default(),
        })
    }

    /// `sc-allocator` 39.0.0's allocator, set up from `config`.
    pub fn from_config(config: &HeapConfig) -> Result<Self, ConfigError> {
        Self::new(Flavour::Substrate, config)
    }

    /// Tetcore's older allocator, set up from `config`.
    pub fn tetcore_from_config(config: &HeapConfig) -> Result<Self, ConfigError> {
        Self::new(Flavour::Tetcore, config)
    }

    /// Which original this follows.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The aligned heap base.
    pub fn heap_base(&self) -> Addr {
        self.heap_base
    }

    /// Where the next bumped block's header goes.
    pub fn bumper(&self) -> Addr {
        self.bumper
    }

    /// The original's own counters.
    pub fn allocation_stats(&self) -> AllocationStats {
        self.native
    }

    /// Whether an error has poisoned the allocator.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_some()
    }

    /// Header address at the head of `order`'s free list, if the list is not empty.
    pub fn free_list_head(&self, order: u32) -> Option<Addr> {
        if order >= self.flavour.orders() {
            return None;
        }
        let head = *self.heads.get(order as usize)?;
        (head != NIL_MARKER).then_some(u64::from(head))
    }

    /// The order a request of `size` bytes gets, if it is not too large.
    pub fn order_for(&self, size: u64) -> Option<u32> {
        (size <= self.flavour.max_allocation()).then(|| order_of(size))
    }

    /// Memory size in whole wasm pages (rounded up).
    pub fn memory_pages(&self) -> u64 {
        self.memory.len().div_ceil(PAGE_SIZE)
    }

    fn read_header(&self, at: Addr) -> Option<(u64, Header)> {
        let raw = self.memory.read_u64(at).ok()?;
        Some((raw, Header::decode(raw, self.flavour.orders())))
    }

    /// Records the poisoning error and returns it.
    fn poison_with(
        &mut self,
        request: Request,
        (fault, kind): Fail,
        trail: &mut Trail,
    ) -> AllocError {
        let error = AllocError::new(kind, fault.message());
        say!(trail, "poisoned: {}", error.message);
        self.poison = Some(Poison {
            call: self.calls,
            request,
            error: error.clone(),
        });
        error
    }

    /// The refusal of a poisoned allocator, or nothing.
    fn refuse_if_poisoned(&self, trail: &mut Trail) -> Result<(), AllocError> {
        match &self.poison {
            None => Ok(()),
            Some(p) => {
                say!(
                    trail,
                    "refused: poisoned since call #{} {} ({})",
                    p.call,
                    p.request,
                    p.error.message
                );
                Err(AllocError::new(
                    ErrorKind::Poisoned,
                    Fault::Other(POISONED).message(),
                ))
            }
        }
    }

    fn try_allocate(&mut self, size: u64, trail: &mut Trail) -> Result<Addr, Fail> {
        let flavour = self.flavour;
        if size > flavour.max_allocation() {
            say!(
                trail,
                "{} is above the largest allocation, {}",
                bytes(size),
                bytes(flavour.max_allocation())
            );
            return Err((Fault::TooLarge, ErrorKind::TooLarge));
        }
        let order = order_of(size);
        let block = order_size(order);
        let slot = order as usize;
        let head = self.heads.get(slot).copied().unwrap_or(NIL_MARKER);
        let header = if head != NIL_MARKER {
            let at = u64::from(head);
            // The original checks the whole block against the memory size (not the heap).
            if at + block + HEADER_SIZE > self.memory.len() {
                say!(
                    trail,
                    "{} -> order {order} ({}); free list[{order}] head {at:#x}: the block would end at {:#x}, past the memory's end {:#x}",
                    bytes(size),
                    bytes(block),
                    at + block + HEADER_SIZE,
                    self.memory.len()
                );
                return Err(match flavour {
                    Flavour::Substrate => {
                        (Fault::Other(INVALID_HEADER_POINTER), ErrorKind::Corrupted)
                    }
                    Flavour::Tetcore => (Fault::Panic(TETCORE_ASSERT), ErrorKind::Corrupted),
                });
            }
            let raw = self.memory.read_u64(at).map_err(|_| {
                (
                    Fault::Other("read out of heap bounds"),
                    ErrorKind::Corrupted,
                )
            })?;
            let next = match Header::decode(raw, flavour.orders()) {
                Header::Free(next) => next,
                Header::BadOrder(bad) => {
                    say!(
                        trail,
                        "free list[{order}] head {at:#x} has an occupied header with invalid order {bad}"
                    );
                    return Err((Fault::Other("invalid order"), ErrorKind::Corrupted));
                }
                Header::Occupied(_) => {
                    say!(
                        trail,
                        "free list[{order}] head {at:#x} has an occupied header"
                    );
                    return Err((
                        Fault::Other("free list points to a occupied header"),
                        ErrorKind::Corrupted,
                    ));
                }
            };
            if let Some(h) = self.heads.get_mut(slot) {
                *h = next;
            }
            if trail.is_on() {
                say!(trail, "{} -> order {order} ({})", bytes(size), bytes(block));
                say!(
                    trail,
                    "order {order}: pop {at:#x} from free list[{order}], {}",
                    match next {
                        NIL_MARKER => "which is now empty".to_owned(),
                        next => format!("next {next:#x}"),
                    }
                );
            }
            at
        } else {
            self.bump(size, order, trail)?
        };
        self.memory
            .write_u64(header, Header::occupied(order))
            .map_err(|_| {
                (
                    Fault::Other("write out of heap bounds"),
                    ErrorKind::Corrupted,
                )
            })?;
        let held = block + HEADER_SIZE;
        let n = &mut self.native;
        n.bytes_allocated += held;
        n.bytes_allocated_sum += u128::from(held);
        n.bytes_allocated_peak = n.bytes_allocated_peak.max(n.bytes_allocated);
        n.address_space_used = self.bumper - self.heap_base;
        let ptr = header + HEADER_SIZE;
        self.ledger.on_alloc(ptr, size, held);
        self.ledger.set_footprint(n.address_space_used);
        say!(
            trail,
            "header {header:#x} = occupied, order {order}; return {ptr:#x}"
        );
        Ok(ptr)
    }

    /// Takes `8 + block` bytes from the bumper, growing the memory first if it must.
    fn bump(&mut self, size: u64, order: u32, trail: &mut Trail) -> Result<Addr, Fail> {
        let need = order_size(order) + HEADER_SIZE;
        let required = self.bumper + need;
        let oos = (Fault::OutOfSpace, ErrorKind::OutOfMemory);
        if required > self.memory.len() {
            if !self.flavour.grows() {
                say!(
                    trail,
                    "{} -> order {order} ({}); free list[{order}] empty; bump {} at {:#x} would end at {required:#x}, past the memory's end {:#x}",
                    bytes(size),
                    bytes(order_size(order)),
                    bytes(need),
                    self.bumper,
                    self.memory.len()
                );
                return Err(oos);
            }
            let required_pages = required.div_ceil(PAGE_SIZE);
            let current = self.memory_pages();
            let max = self.max_pages;
            if current >= max {
                say!(
                    trail,
                    "{} -> order {order}; free list[{order}] empty; bump {} needs {required_pages} pages, but memory is already at its maximum of {max} pages",
                    bytes(size),
                    bytes(need)
                );
                return Err(oos);
            }
            if required_pages > max {
                say!(
                    trail,
                    "{} -> order {order}; free list[{order}] empty; bump {} needs {required_pages} pages, more than the maximum of {max} pages",
                    bytes(size),
                    bytes(need)
                );
                return Err(oos);
            }
            // Double, capped at the maximum, unless even more is needed.
            let next = (current * 2).min(max).max(required_pages);
            say!(
                trail,
                "memory grows {current} -> {next} pages ({})",
                bytes(next * PAGE_SIZE)
            );
            self.memory.grow_to(next * PAGE_SIZE);
        }
        let at = self.bumper;
        self.bumper = required;
        say!(
            trail,
            "{} -> order {order} ({}); free list[{order}] empty; bump {}: {at:#x} -> {required:#x}",
            bytes(size),
            bytes(order_size(order)),
            bytes(need)
        );
        Ok(at)
    }

    fn try_free(&mut self, ptr: Addr, trail: &mut Trail) -> Result<(), Fail> {
        // Load the header and take the ledger entry before looking at either: on a big heap
        // both are cache misses, and issuing them together lets the CPU wait for both at once
        // (the model's frees got about 15% faster). Refusals put the ledger entry back.
        let read = ptr
            .checked_sub(HEADER_SIZE)
            .map(|h| (h, self.memory.read_u64(h)));
        let entry = self.ledger.on_free(ptr);
        let Some((header, read)) = read else {
            say!(trail, "{ptr:#x} has no room for a header before it");
            self.unfree(ptr, entry);
            return Err((
                Fault::Other("Invalid pointer for deallocation"),
                ErrorKind::InvalidFree,
            ));
        };
        let Ok(raw) = read else {
            say!(
                trail,
                "header {header:#x} is outside the memory [0, {:#x})",
                self.memory.len()
            );
            self.unfree(ptr, entry);
            return Err((
                Fault::Other("read out of heap bounds"),
                ErrorKind::InvalidFree,
            ));
        };
        let order = match Header::decode(raw, self.flavour.orders()) {
            Header::Occupied(order) => order,
            h @ Header::BadOrder(_) => {
                say!(trail, "header {header:#x} reads {}", h.meaning());
                self.unfree(ptr, entry);
                return Err((Fault::Other("invalid order"), self.classify_bad_free(ptr)));
            }
            h @ Header::Free(_) => {
                say!(
                    trail,
                    "header {header:#x} reads free ({}), not occupied",
                    h.meaning()
                );
                self.unfree(ptr, entry);
                return Err((
                    Fault::Other("the allocation points to an empty header"),
                    self.classify_bad_free(ptr),
                ));
            }
        };
        let slot = order as usize;
        let prev = self.heads.get(slot).copied().unwrap_or(NIL_MARKER);
        if let Some(h) = self.heads.get_mut(slot) {
            // header < u32::MAX: it was read from a memory of at most 4 GiB.
            *h = u32::try_from(header).unwrap_or(NIL_MARKER);
        }
        self.memory
            .write_u64(header, Header::free(prev))
            .map_err(|_| {
                (
                    Fault::Other("write out of heap bounds"),
                    ErrorKind::Corrupted,
                )
            })?;
        let held = order_size(order) + HEADER_SIZE;
        if trail.is_on() {
            say!(
                trail,
                "free({ptr:#x}): header {header:#x} says occupied, {}",
                order_name(order)
            );
            say!(
                trail,
                "push {header:#x} on free list[{order}]: header {header:#x} = {}",
                Header::Free(prev).meaning()
            );
        }
        match self.native.bytes_allocated.checked_sub(held) {
            Some(left) => {
                self.native.bytes_allocated = left;
                Ok(())
            }
            None => Err((
                Fault::Other(self.flavour.underflow_message()),
                ErrorKind::Corrupted,
            )),
        }
    }

    /// Puts back a ledger entry taken by a free that was then refused.
    fn unfree(&mut self, ptr: Addr, entry: Option<LiveEntry>) {
        if let Some(e) = entry {
            // Re-adding what was just taken restores every counter (peaks included).
            self.ledger.on_alloc(ptr, e.requested, e.held);
        }
    }

    /// Why a free was refused: a damaged live block, a block already freed, or a bad pointer.
    fn classify_bad_free(&self, ptr: Addr) -> ErrorKind {
        if self.ledger.get(ptr).is_some() {
            return ErrorKind::Corrupted;
        }
        let header = ptr.wrapping_sub(HEADER_SIZE);
        let on_a_list = (0..self.flavour.orders()).any(|order| {
            self.walk_list(order, &mut FxHashMap::default())
                .0
                .contains(&header)
        });
        if on_a_list {
            ErrorKind::DoubleFree
        } else {
            ErrorKind::InvalidFree
        }
    }

    /// Follows `order`'s free list through memory: the header addresses in link order, and what
    /// stopped the walk early. `seen` maps every header already on some list to its order.
    fn walk_list(
        &self,
        order: u32,
        seen: &mut FxHashMap<Addr, u32>,
    ) -> (Vec<Addr>, Option<String>) {
        let mut nodes = Vec::new();
        let mut link = self
            .heads
            .get(order as usize)
            .copied()
            .unwrap_or(NIL_MARKER);
        let block = order_size(order);
        while link != NIL_MARKER {
            let at = u64::from(link);
            let from = match nodes.last() {
                Some(prev) => format!("{prev:#x} links"),
                None => "the head links".to_owned(),
            };
            if at < self.heap_base || at + HEADER_SIZE + block > self.bumper {
                return (
                    nodes,
                    Some(format!(
                        "{from} to {at:#x}, outside the heap [{:#x}, {:#x})",
                        self.heap_base, self.bumper
                    )),
                );
            }
            if !(at - self.heap_base).is_multiple_of(ALIGNMENT) {
                return (
                    nodes,
                    Some(format!("{from} to {at:#x}, which is not 8-byte aligned")),
                );
            }
            if let Some(&other) = seen.get(&at) {
                let problem = if other == order {
                    format!("{from} back to {at:#x}: a cycle")
                } else {
                    format!("{from} to {at:#x}, which is also on free list[{other}]")
                };
                return (nodes, Some(problem));
            }
            match self.read_header(at) {
                Some((_, Header::Free(next))) => {
                    seen.insert(at, order);
                    nodes.push(at);
                    link = next;
                }
                Some((_, h)) => {
                    return (
                        nodes,
                        Some(format!(
                            "{from} to {at:#x}, whose header reads {}",
                            h.meaning()
                        )),
                    );
                }
                None => {
                    return (
                        nodes,
                        Some(format!("{from} to {at:#x}, which cannot be read")),
                    );
                }
            }
        }
        (nodes, None)
    }

    /// Every free list, walked; plus which list each listed header is on.
    fn walk_lists(&self) -> (Vec<FreeList>, FxHashMap<Addr, u32>) {
        let mut seen = FxHashMap::default();
        let lists = (0..self.flavour.orders())
            .map(|order| {
                let (nodes, problem) = self.walk_list(order, &mut seen);
                FreeList {
                    name: order_name(order),
                    nodes,
                    problem,
                }
            })
            .collect();
        (lists, seen)
    }

    /// Walks the blocks from `heap_base` to the bumper header by header. Free blocks get their
    /// order from the list they are on (`listed`). Returns the blocks and, if the walk could not
    /// reach the bumper, where and why it stopped.
    fn walk_blocks(&self, listed: &FxHashMap<Addr, u32>) -> (Vec<Walked>, Option<(Addr, String)>) {
        let mut out = Vec::new();
        let mut at = self.heap_base;
        while at < self.bumper {
            let stuck = |why: String| Some((at, why));
            if at + HEADER_SIZE > self.bumper {
                return (
                    out,
                    stuck(format!("a header at {at:#x} would cross the bumper")),
                );
            }
            let Some((raw, header)) = self.read_header(at) else {
                return (out, stuck(format!("header {at:#x} is outside the memory")));
            };
            let order = match header {
                Header::Occupied(order) => order,
                Header::BadOrder(bad) => {
                    return (
                        out,
                        stuck(format!("header {at:#x} has invalid order {bad}")),
                    );
                }
                Header::Free(_) => match listed.get(&at) {
                    Some(&order) => order,
                    None => {
                        return (
                            out,
                            stuck(format!(
                                "header {at:#x} is free but on no free list, so its size is unknown"
                            )),
                        );
                    }
                },
            };
            let end = at + HEADER_SIZE + order_size(order);
            if end > self.bumper {
                return (
                    out,
                    stuck(format!(
                        "block {at:#x} of {} runs to {end:#x}, past the bumper {:#x}",
                        order_name(order),
                        self.bumper
                    )),
                );
            }
            out.push(Walked {
                header: at,
                raw,
                decoded: header,
                order,
            });
            at = end;
        }
        (out, None)
    }

    fn native_stats(&self) -> Vec<NativeStat> {
        let n = self.native;
        match self.flavour {
            Flavour::Substrate => vec![
                NativeStat::new("bytes_allocated", n.bytes_allocated),
                NativeStat::new("bytes_allocated_peak", n.bytes_allocated_peak),
                NativeStat::new(
                    "bytes_allocated_sum",
                    u64::try_from(n.bytes_allocated_sum).unwrap_or(u64::MAX),
                ),
                NativeStat::new("address_space_used", n.address_space_used),
            ],
            Flavour::Tetcore => vec![NativeStat::new("total_size", n.bytes_allocated)],
        }
    }
}

/// One block found by walking headers.
#[derive(Debug, Clone, Copy)]
struct Walked {
    header: Addr,
    raw: u64,
    decoded: Header,
    order: u32,
}

impl Walked {
    fn end(&self) -> Addr {
        self.header + HEADER_SIZE + order_size(self.order)
    }
}

impl Allocator for FreeingBump {
    fn kind(&self) -> AllocatorKind {
        self.flavour.kind()
    }

    fn allocate(&mut self, size: u64, align: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        if align > ALIGNMENT || (align > 1 && !align.is_power_of_two()) {
            // The original has no alignment parameter: such a call never reaches it, so it
            // neither counts nor poisons.
            say!(
                trail,
                "alignment {align} refused: freeing-bump only guarantees 8-byte alignment"
            );
            return Err(AllocError::new(
                ErrorKind::Unsupported,
                format!("alignment {align} is not supported (freeing-bump aligns to 8 only)"),
            ));
        }
        self.calls += 1;
        self.refuse_if_poisoned(trail)?;
        self.try_allocate(size, trail)
            .map_err(|fail| self.poison_with(Request::Allocate { size, align }, fail, trail))
    }

    fn free(&mut self, ptr: Addr, trail: &mut Trail) -> Result<(), AllocError> {
        if ptr > u64::from(u32::MAX) {
            say!(trail, "{ptr:#x} is no wasm32 pointer: refused");
            return Err(AllocError::new(
                ErrorKind::InvalidFree,
                format!("{ptr:#x} is not a wasm32 pointer"),
            ));
        }
        self.calls += 1;
        self.refuse_if_poisoned(trail)?;
        self.try_free(ptr, trail)
            .map_err(|fail| self.poison_with(Request::Free { ptr }, fail, trail))
    }

    fn usable_size(&self, ptr: Addr) -> Option<u64> {
        let header = ptr.checked_sub(HEADER_SIZE)?;
        if header < self.heap_base || header >= self.bumper {
            return None;
        }
        match self.read_header(header)? {
            (_, Header::Occupied(order)) => Some(order_size(order)),
            _ => None,
        }
    }

    fn inspect(&self) -> HeapLayout {
        self.inspect_detail(Detail::All)
    }

    fn inspect_detail(&self, detail: Detail) -> HeapLayout {
        let end = self.memory.len();
        let (free_lists, listed) = self.walk_lists();
        let (walked, stuck) = self.walk_blocks(&listed);
        let mut blocks = Vec::with_capacity(walked.len() + 3);
        let base = self.heap_base.min(end);
        if base > 0 {
            let mut below = Block::plain(0..base, BlockState::Metadata);
            below.class = Some("below heap_base".to_owned());
            blocks.push(below);
        }
        for w in &walked {
            let header = w.header..w.header + HEADER_SIZE;
            let payload = header.end..w.end();
            let (state, requested) = match w.decoded {
                Header::Occupied(_) => (BlockState::Live, self.ledger.requested(payload.start)),
                _ => (BlockState::Free, None),
            };
            let range = w.header..w.end();
            let (class, fields) = if detail.wants(&range) {
                (
                    Some(order_name(w.order)),
                    vec![Field::new(
                        "header",
                        header.clone(),
                        w.raw,
                        w.decoded.meaning(),
                    )],
                )
            } else {
                (None, Vec::new())
            };
            blocks.push(Block {
                range,
                header,
                payload,
                requested,
                state,
                class,
                fields,
            });
        }
        let bumper = self.bumper.min(end);
        if let Some((at, why)) = stuck
            && at < bumper
        {
            let mut rest = Block::plain(at..bumper, BlockState::Metadata);
            rest.class = Some("unreadable".to_owned());
            let raw = self.memory.read_u64(at).unwrap_or(0);
            let header_end = (at + HEADER_SIZE).min(bumper);
            rest.fields = vec![Field::new("header", at..header_end, raw, why)];
            blocks.push(rest);
        }
        if bumper.max(base) < end {
            blocks.push(Block::plain(bumper.max(base)..end, BlockState::Unused));
        }
        HeapLayout {
            kind: self.kind(),
            extent: 0..end,
            blocks,
            free_lists,
            markers: vec![Marker {
                name: "bumper".to_owned(),
                addr: self.bumper,
            }],
            poisoned: self.poison.as_ref().map(|p| {
                format!(
                    "poisoned by call #{} {}: {}",
                    p.call, p.request, p.error.message
                )
            }),
            stats: self.stats(),
            native_stats: self.native_stats(),
        }
    }

    fn validate(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        // Before the first allocation the bumper is heap_base, which may lie past the memory.
        if self.bumper > self.heap_base && self.bumper > self.memory.len() {
            findings.push(Finding::general(format!(
                "bumper {:#x} is past the memory's end {:#x}",
                self.bumper,
                self.memory.len()
            )));
        }
        let (lists, listed) = self.walk_lists();
        for (order, list) in lists.iter().enumerate() {
            if let Some(problem) = &list.problem {
                findings.push(Finding::general(format!("free list[{order}]: {problem}")));
            }
        }
        let (walked, stuck) = self.walk_blocks(&listed);
        let reached = match &stuck {
            Some((at, why)) => {
                findings.push(Finding::at(*at, format!("block walk stopped: {why}")));
                *at
            }
            None => self.bumper,
        };
        let starts: FxHashSet<Addr> = walked.iter().map(|w| w.header).collect();
        for (&at, &order) in &listed {
            if at < reached && !starts.contains(&at) {
                findings.push(Finding::at(
                    at,
                    format!("free list[{order}] links to {at:#x}, which is not a block header"),
                ));
            }
        }
        let mut occupied = 0u64;
        let mut occupied_bytes = 0u64;
        for w in &walked {
            if let Header::Occupied(order) = w.decoded {
                occupied += 1;
                occupied_bytes += order_size(order) + HEADER_SIZE;
                let ptr = w.header + HEADER_SIZE;
                match self.ledger.get(ptr) {
                    None => findings.push(Finding::at(
                        w.header,
                        format!("occupied block {ptr:#x} was never handed out (a forged header?)"),
                    )),
                    Some(e) if e.held != order_size(order) + HEADER_SIZE => {
                        findings.push(Finding::at(
                            w.header,
                            format!(
                                "block {ptr:#x} holds {} by its header, but {} were handed out",
                                bytes(order_size(order) + HEADER_SIZE),
                                bytes(e.held)
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        // In address order: the ledger's own order depends on its table's history.
        let mut live: Vec<Addr> = self.ledger.iter().map(|(ptr, _)| ptr).collect();
        live.sort_unstable();
        for ptr in live {
            let header = ptr.wrapping_sub(HEADER_SIZE);
            let occupied_here = walked
                .binary_search_by_key(&header, |w| w.header)
                .ok()
                .and_then(|i| walked.get(i))
                .is_some_and(|w| matches!(w.decoded, Header::Occupied(_)));
            if !occupied_here && header < reached {
                findings.push(Finding::at(
                    header,
                    format!("live block {ptr:#x} has no occupied header at {header:#x}"),
                ));
            }
        }
        let stats = self.ledger.stats();
        if stuck.is_none() {
            if occupied != stats.live_blocks {
                findings.push(Finding::general(format!(
                    "{occupied} occupied blocks in memory, but {} live blocks handed out",
                    stats.live_blocks
                )));
            }
            if occupied_bytes != self.native.bytes_allocated {
                findings.push(Finding::general(format!(
                    "occupied blocks hold {} but the allocator counts {}",
                    bytes(occupied_bytes),
                    bytes(self.native.bytes_allocated)
                )));
            }
        }
        if stats.held != self.native.bytes_allocated {
            findings.push(Finding::general(format!(
                "live blocks hold {} but the allocator counts {} allocated",
                bytes(stats.held),
                bytes(self.native.bytes_allocated)
            )));
        }
        if self.native.address_space_used != self.bumper - self.heap_base {
            findings.push(Finding::general(format!(
                "address_space_used is {} but the bumper is {} past heap_base",
                bytes(self.native.address_space_used),
                bytes(self.bumper - self.heap_base)
            )));
        }
        findings
    }

    fn stats(&self) -> Stats {
        self.ledger.stats()
    }

    fn memory(&self) -> &Memory {
        &self.memory
    }

    fn memory_mut(&mut self) -> &mut Memory {
        &mut self.memory
    }

    fn clone_box(&self) -> Box<dyn Allocator> {
        Box::new(self.clone())
    }

    fn ledger_mut(&mut self) -> Option<&mut Ledger> {
        Some(&mut self.ledger)
    }

    fn side_bytes(&self) -> usize {
        self.ledger.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE: u64 = PAGE_SIZE;

    /// sc's tests: `FreeingBumpHeapAllocator::new(base)` over `pages` pages, growing to `max`.
    fn substrate(base: u64, pages: u64, max_pages: Option<u64>) -> FreeingBump {
        FreeingBump::from_config(&HeapConfig {
            base: Some(base),
            size: Some(pages * PAGE),
            max: max_pages.map(|p| p * PAGE),
            ..HeapConfig::default()
        })
        .unwrap()
    }

    /// Tetcore's tests: `new(base)` over a byte slice of `len` bytes.
    fn tetcore(base: u64, len: u64) -> FreeingBump {
        FreeingBump::tetcore_from_config(&HeapConfig {
            base: Some(base),
            size: Some(len),
            ..HeapConfig::default()
        })
        .unwrap()
    }

    fn alloc(heap: &mut FreeingBump, size: u64) -> Result<Addr, AllocError> {
        heap.allocate(size, 0, &mut Trail::off())
    }

    fn free(heap: &mut FreeingBump, ptr: Addr) -> Result<(), AllocError> {
        heap.free(ptr, &mut Trail::off())
    }

    fn native(heap: &FreeingBump, name: &str) -> u64 {
        heap.inspect()
            .native_stats
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value)
            .unwrap()
    }

    fn assert_sound(heap: &FreeingBump) {
        let layout = heap.inspect();
        assert_eq!(layout.check_tiling(), Vec::new());
        assert_eq!(heap.validate(), Vec::new());
    }

    // ---- golden tests: sc-allocator 39.0.0, src/freeing_bump.rs, `mod tests` ----

    /// sc `test_pages_from_size`: the initial size is rounded up to whole pages.
    #[test]
    fn sc_initial_size_rounds_up_to_pages() {
        for (size, pages) in [(0, 0), (1, 1), (PAGE, 1), (PAGE + 1, 2), (2 * PAGE, 2)] {
            let heap = FreeingBump::from_config(&HeapConfig {
                size: Some(size),
                ..HeapConfig::default()
            })
            .unwrap();
            assert_eq!(heap.memory().len(), pages * PAGE, "size {size}");
        }
    }

    /// sc `should_allocate_properly`.
    #[test]
    fn sc_should_allocate_properly() {
        let mut heap = substrate(0, 1, None);
        assert_eq!(alloc(&mut heap, 1), Ok(HEADER_SIZE));
    }

    /// sc `should_always_align_pointers_to_multiples_of_8`.
    #[test]
    fn sc_should_always_align_pointers_to_multiples_of_8() {
        let mut heap = substrate(13, 1, None);
        assert_eq!(alloc(&mut heap, 1), Ok(24));
    }

    /// sc `should_increment_pointers_properly`.
    #[test]
    fn sc_should_increment_pointers_properly() {
        let mut heap = substrate(0, 1, None);
        assert_eq!(alloc(&mut heap, 1), Ok(HEADER_SIZE));
        assert_eq!(alloc(&mut heap, 9), Ok(24));
        assert_eq!(alloc(&mut heap, 1), Ok(24 + 16 + HEADER_SIZE));
        assert_sound(&heap);
    }

    /// sc `should_free_properly`.
    #[test]
    fn sc_should_free_properly() {
        let mut heap = substrate(0, 1, None);
        assert_eq!(alloc(&mut heap, 1), Ok(HEADER_SIZE));
        let ptr2 = alloc(&mut heap, 1).unwrap();
        assert_eq!(ptr2, 24);
        free(&mut heap, ptr2).unwrap();
        assert_eq!(heap.free_list_head(0), Some(ptr2 - HEADER_SIZE));
        assert_sound(&heap);
    }

    /// sc `should_deallocate_and_reallocate_properly`.
    #[test]
    fn sc_should_deallocate_and_reallocate_properly() {
        let padded_offset = 16;
        let mut heap = substrate(13, 1, None);
        assert_eq!(alloc(&mut heap, 1), Ok(padded_offset + HEADER_SIZE));
        let ptr2 = alloc(&mut heap, 9).unwrap();
        assert_eq!(ptr2, padded_offset + 16 + HEADER_SIZE);
        free(&mut heap, ptr2).unwrap();
        assert_eq!(alloc(&mut heap, 9), Ok(padded_offset + 16 + HEADER_SIZE));
        assert!((0..23).all(|o| heap.free_list_head(o).is_none()));
        assert_sound(&heap);
    }

    /// sc `should_build_linked_list_of_free_areas_properly`.
    #[test]
    fn sc_should_build_linked_list_of_free_areas_properly() {
        let mut heap = substrate(0, 1, None);
        let ptr1 = alloc(&mut heap, 8).unwrap();
        let ptr2 = alloc(&mut heap, 8).unwrap();
        let ptr3 = alloc(&mut heap, 8).unwrap();
        for p in [ptr1, ptr2, ptr3] {
            free(&mut heap, p).unwrap();
        }
        assert_eq!(heap.free_list_head(0), Some(ptr3 - HEADER_SIZE));
        assert_eq!(
            heap.inspect().free_lists[0].nodes,
            vec![ptr3 - 8, ptr2 - 8, ptr1 - 8]
        );
        assert_eq!(alloc(&mut heap, 8), Ok(ptr3));
        assert_eq!(heap.free_list_head(0), Some(ptr2 - HEADER_SIZE));
        assert_sound(&heap);
    }

    /// sc `should_not_allocate_if_too_large`.
    #[test]
    fn sc_should_not_allocate_if_too_large() {
        let mut heap = substrate(13, 1, Some(1));
        let err = alloc(&mut heap, PAGE - 13).unwrap_err();
        assert_eq!(err.message, "Allocator ran out of space");
        assert_eq!(err.kind, ErrorKind::OutOfMemory);
    }

    /// sc `should_not_allocate_if_full`.
    #[test]
    fn sc_should_not_allocate_if_full() {
        let mut heap = substrate(0, 1, Some(1));
        assert_eq!(alloc(&mut heap, PAGE / 2 - HEADER_SIZE), Ok(HEADER_SIZE));
        let err = alloc(&mut heap, PAGE / 2).unwrap_err();
        assert_eq!(err.message, "Allocator ran out of space");
    }

    /// sc `should_allocate_max_possible_allocation_size`.
    #[test]
    fn sc_should_allocate_max_possible_allocation_size() {
        let mut heap = substrate(0, 1, None);
        assert_eq!(alloc(&mut heap, 32 << 20), Ok(HEADER_SIZE));
        assert_eq!(heap.memory_pages(), ((32 << 20) + 8u64).div_ceil(PAGE));
    }

    /// sc `should_not_allocate_if_requested_size_too_large`.
    #[test]
    fn sc_should_not_allocate_if_requested_size_too_large() {
        let mut heap = substrate(0, 1, None);
        let err = alloc(&mut heap, (32 << 20) + 1).unwrap_err();
        assert_eq!(err.message, "Requested allocation size is too large");
        assert_eq!(err.kind, ErrorKind::TooLarge);
    }

    /// sc `should_return_error_when_bumper_greater_than_heap_size`: 1638 × 32 B fill one page.
    #[test]
    fn sc_should_return_error_when_bumper_greater_than_heap_size() {
        let mut heap = substrate(0, 1, Some(1));
        let ptrs: Vec<_> = (0..PAGE / 40)
            .map(|_| alloc(&mut heap, 32).unwrap())
            .collect();
        assert_eq!(ptrs.len(), 1638);
        assert_eq!(heap.allocation_stats().bytes_allocated, PAGE - 16);
        assert_eq!(heap.bumper(), PAGE - 16);
        for p in ptrs {
            free(&mut heap, p).unwrap();
        }
        let stats = heap.allocation_stats();
        assert_eq!(stats.bytes_allocated, 0);
        assert_eq!(stats.bytes_allocated_peak, PAGE - 16);
        assert_eq!(heap.bumper(), PAGE - 16);
        alloc(&mut heap, 8).unwrap();
        assert_eq!(heap.bumper(), heap.memory().len());
        assert_sound(&heap);
        let err = alloc(&mut heap, 8).unwrap_err();
        assert_eq!(err.message, "Allocator ran out of space");
    }

    /// sc `should_include_prefixes_in_total_heap_size`.
    #[test]
    fn sc_should_include_prefixes_in_total_heap_size() {
        let mut heap = substrate(1, 1, None);
        alloc(&mut heap, 9).unwrap();
        assert_eq!(heap.allocation_stats().bytes_allocated, HEADER_SIZE + 16);
        assert_eq!(native(&heap, "bytes_allocated"), HEADER_SIZE + 16);
    }

    /// sc `should_calculate_total_heap_size_to_zero`.
    #[test]
    fn sc_should_calculate_total_heap_size_to_zero() {
        let mut heap = substrate(13, 1, None);
        let ptr = alloc(&mut heap, 42).unwrap();
        assert_eq!(ptr, 16 + HEADER_SIZE);
        free(&mut heap, ptr).unwrap();
        assert_eq!(heap.allocation_stats().bytes_allocated, 0);
    }

    /// sc `should_calculate_total_size_of_zero`.
    #[test]
    fn sc_should_calculate_total_size_of_zero() {
        let mut heap = substrate(19, 1, None);
        for _ in 1..10 {
            let ptr = alloc(&mut heap, 42).unwrap();
            free(&mut heap, ptr).unwrap();
        }
        assert_eq!(heap.allocation_stats().bytes_allocated, 0);
        assert_eq!(heap.allocation_stats().bytes_allocated_sum, 9 * 72);
    }

    /// sc `should_read_and_write_u64_correctly` and `header_read_write`: headers are
    /// little-endian u64s, bit 32 for occupied, and decode back to what was written.
    #[test]
    fn sc_header_read_write() {
        let mut heap = substrate(0, 1, None);
        let p = alloc(&mut heap, 9).unwrap();
        assert_eq!(
            heap.memory().slice(p - 8, 8).unwrap(),
            &[1, 0, 0, 0, 1, 0, 0, 0],
            "order 1, occupied"
        );
        free(&mut heap, p).unwrap();
        assert_eq!(heap.memory().read_u64(p - 8).unwrap(), u64::from(u32::MAX));
        for header in [
            Header::Occupied(0),
            Header::Occupied(1),
            Header::Free(NIL_MARKER),
            Header::Free(0),
            Header::Free(4),
        ] {
            let raw = match header {
                Header::Occupied(o) => Header::occupied(o),
                Header::Free(l) => Header::free(l),
                Header::BadOrder(_) => unreachable!(),
            };
            assert_eq!(Header::decode(raw, 23), header);
        }
        assert_eq!(Header::decode(OCCUPIED_BIT | 23, 23), Header::BadOrder(23));
    }

    /// sc `should_get_item_size_from_order`, `should_get_max_item_size_from_index`, `test_n_orders`.
    #[test]
    fn sc_order_sizes() {
        assert_eq!(order_size(0), 8);
        assert_eq!(Flavour::Substrate.orders(), 23);
        assert_eq!(order_size(22), 33_554_432);
        assert_eq!(Flavour::Substrate.max_allocation(), order_size(22));
        assert_eq!(
            (order_of(0), order_of(8), order_of(9), order_of(33_554_432)),
            (0, 0, 1, 22)
        );
    }

    /// sc `deallocate_needs_to_maintain_linked_list`.
    #[test]
    fn sc_deallocate_needs_to_maintain_linked_list() {
        let mut heap = substrate(0, 1, None);
        let ptrs: Vec<_> = (0..4).map(|_| alloc(&mut heap, 8).unwrap()).collect();
        for &p in ptrs.iter().rev() {
            free(&mut heap, p).unwrap();
        }
        let again: Vec<_> = (0..4).map(|_| alloc(&mut heap, 8).unwrap()).collect();
        assert_eq!(ptrs, again);
    }

    /// sc `poison_oom`.
    #[test]
    fn sc_poison_oom() {
        let mut heap = substrate(0, 1, Some(1));
        let p = alloc(&mut heap, PAGE / 2).unwrap();
        let err = alloc(&mut heap, PAGE).unwrap_err();
        assert_eq!(err.message, "Allocator ran out of space");
        assert!(heap.is_poisoned());
        let refused = free(&mut heap, p).unwrap_err();
        assert_eq!(refused.message, "Other: the allocator has been poisoned");
        assert_eq!(refused.kind, ErrorKind::Poisoned);
        assert_eq!(
            heap.inspect().poisoned.as_deref(),
            Some("poisoned by call #2 allocate(65536): Allocator ran out of space")
        );
    }

    /// sc `accepts_growing_memory`: memory grown by someone else is used.
    #[test]
    fn sc_accepts_growing_memory() {
        let mut heap = substrate(0, 1, None);
        alloc(&mut heap, PAGE / 2).unwrap();
        alloc(&mut heap, PAGE / 2).unwrap();
        assert_eq!(heap.memory_pages(), 2, "the second block made it double");
        let len = heap.memory().len();
        heap.memory_mut().grow_to(len + PAGE);
        alloc(&mut heap, PAGE / 2).unwrap();
        assert_eq!(
            heap.memory_pages(),
            3,
            "no growth needed after the outside growth"
        );
        // sc `doesnt_accept_shrinking_memory` has no counterpart: a model's memory cannot shrink.
    }

    /// sc `should_grow_memory_when_running_out_of_memory`.
    #[test]
    fn sc_should_grow_memory_when_running_out_of_memory() {
        let mut heap = substrate(0, 1, None);
        assert_eq!(heap.memory_pages(), 1);
        alloc(&mut heap, PAGE * 2).unwrap();
        assert_eq!(heap.memory_pages(), 3);
    }

    /// sc `modifying_the_header_leads_to_an_error`.
    #[test]
    fn sc_modifying_the_header_leads_to_an_error() {
        let mut heap = substrate(0, 1, None);
        let ptr = alloc(&mut heap, 5).unwrap();
        free(&mut heap, ptr).unwrap();
        heap.memory_mut()
            .write_u64(ptr - HEADER_SIZE, Header::free(u32::MAX - 1))
            .unwrap();
        let findings = heap.validate();
        assert!(
            findings
                .iter()
                .any(|f| f.message.contains("outside the heap")),
            "{findings:?}"
        );
        alloc(&mut heap, 5).unwrap();
        let err = alloc(&mut heap, 5).unwrap_err();
        assert!(err.message.contains("Invalid header pointer"), "{err}");
        assert_eq!(err.message, "Other: Invalid header pointer detected");
        assert_eq!(err.kind, ErrorKind::Corrupted);
    }

    // ---- golden tests: Tetcore primitives/allocator/src/freeing_bump.rs, `mod tests` ----

    /// Tetcore `should_allocate_properly`, `should_always_align_pointers_to_multiples_of_8`,
    /// `should_increment_pointers_properly`.
    #[test]
    fn tetcore_should_allocate_and_increment_properly() {
        let mut heap = tetcore(0, PAGE);
        assert_eq!(alloc(&mut heap, 1), Ok(8));
        assert_eq!(alloc(&mut heap, 9), Ok(24));
        assert_eq!(alloc(&mut heap, 1), Ok(48));
        let mut heap = tetcore(13, PAGE);
        assert_eq!(alloc(&mut heap, 1), Ok(24));
    }

    /// Tetcore `should_free_properly`, `should_deallocate_and_reallocate_properly`,
    /// `should_build_linked_list_of_free_areas_properly`.
    #[test]
    fn tetcore_free_lists() {
        let mut heap = tetcore(0, PAGE);
        alloc(&mut heap, 1).unwrap();
        let ptr2 = alloc(&mut heap, 1).unwrap();
        free(&mut heap, ptr2).unwrap();
        assert_eq!(heap.free_list_head(0), Some(16));

        let mut heap = tetcore(13, PAGE);
        alloc(&mut heap, 1).unwrap();
        let ptr2 = alloc(&mut heap, 9).unwrap();
        assert_eq!(ptr2, 40);
        free(&mut heap, ptr2).unwrap();
        assert_eq!(alloc(&mut heap, 9), Ok(40));
        assert!((0..22).all(|o| heap.free_list_head(o).is_none()));

        let mut heap = tetcore(0, PAGE);
        let ptrs: Vec<_> = (0..3).map(|_| alloc(&mut heap, 8).unwrap()).collect();
        for &p in &ptrs {
            free(&mut heap, p).unwrap();
        }
        assert_eq!(heap.free_list_head(0), Some(ptrs[2] - 8));
        assert_eq!(alloc(&mut heap, 8), Ok(ptrs[2]));
        assert_eq!(heap.free_list_head(0), Some(ptrs[1] - 8));
        assert_eq!(heap.inspect().free_lists.len(), 22);
        assert_sound(&heap);
    }

    /// Tetcore `should_not_allocate_if_too_large`, `should_not_allocate_if_full`,
    /// `should_not_allocate_if_requested_size_too_large`.
    #[test]
    fn tetcore_refusals() {
        let mut heap = tetcore(13, PAGE);
        assert_eq!(
            alloc(&mut heap, PAGE - 13).unwrap_err().message,
            "Allocator ran out of space"
        );
        let mut heap = tetcore(0, PAGE);
        assert_eq!(alloc(&mut heap, PAGE / 2 - 8), Ok(8));
        assert_eq!(
            alloc(&mut heap, PAGE / 2).unwrap_err().message,
            "Allocator ran out of space"
        );
        assert_eq!(heap.memory().len(), PAGE, "Tetcore's memory never grows");
        let mut heap = tetcore(0, PAGE);
        let err = alloc(&mut heap, (16 << 20) + 1).unwrap_err();
        assert_eq!(err.message, "Requested allocation size is too large");
    }

    /// Tetcore `should_allocate_max_possible_allocation_size`.
    #[test]
    fn tetcore_should_allocate_max_possible_allocation_size() {
        let mut heap = tetcore(0, (16 << 20) + PAGE);
        assert_eq!(alloc(&mut heap, 16 << 20), Ok(8));
        assert_eq!(Flavour::Tetcore.max_allocation(), order_size(21));
    }

    /// Tetcore `should_return_error_when_bumper_greater_than_heap_size` (a 64-byte memory).
    #[test]
    fn tetcore_should_return_error_when_bumper_greater_than_heap_size() {
        let mut heap = tetcore(0, 64);
        let ptr1 = alloc(&mut heap, 32).unwrap();
        assert_eq!(ptr1, 8);
        free(&mut heap, ptr1).unwrap();
        assert_eq!(native(&heap, "total_size"), 0);
        assert_eq!(heap.bumper(), 40);
        let ptr2 = alloc(&mut heap, 16).unwrap();
        assert_eq!(ptr2, 48);
        free(&mut heap, ptr2).unwrap();
        assert_eq!(native(&heap, "total_size"), 0);
        assert_eq!(heap.bumper(), 64);
        assert_sound(&heap);
        assert_eq!(
            alloc(&mut heap, 8).unwrap_err().message,
            "Allocator ran out of space"
        );
    }

    /// Tetcore `should_include_prefixes_in_total_heap_size`,
    /// `should_calculate_total_heap_size_to_zero`, `should_calculate_total_size_of_zero`.
    #[test]
    fn tetcore_total_size() {
        let mut heap = tetcore(1, PAGE);
        alloc(&mut heap, 9).unwrap();
        assert_eq!(native(&heap, "total_size"), 24);
        let mut heap = tetcore(13, PAGE);
        let ptr = alloc(&mut heap, 42).unwrap();
        assert_eq!(ptr, 24);
        free(&mut heap, ptr).unwrap();
        assert_eq!(native(&heap, "total_size"), 0);
        let mut heap = tetcore(19, PAGE);
        for _ in 1..10 {
            let ptr = alloc(&mut heap, 42).unwrap();
            free(&mut heap, ptr).unwrap();
        }
        assert_eq!(native(&heap, "total_size"), 0);
        let names: Vec<_> = heap
            .inspect()
            .native_stats
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, vec!["total_size"]);
    }

    /// Tetcore `deallocate_needs_to_maintain_linked_list` (a 72-byte memory).
    #[test]
    fn tetcore_deallocate_needs_to_maintain_linked_list() {
        let mut heap = tetcore(0, 8 * 2 * 4 + 8);
        let ptrs: Vec<_> = (0..4).map(|_| alloc(&mut heap, 8).unwrap()).collect();
        for &p in &ptrs {
            free(&mut heap, p).unwrap();
        }
        let again: Vec<_> = (0..4).map(|_| alloc(&mut heap, 8).unwrap()).collect();
        assert_eq!(again, ptrs.iter().rev().copied().collect::<Vec<_>>());
    }

    /// Tetcore `poison_oom` (a 32-byte memory).
    #[test]
    fn tetcore_poison_oom() {
        let mut heap = tetcore(0, 32);
        alloc(&mut heap, 8).unwrap();
        let p = alloc(&mut heap, 8).unwrap();
        assert!(alloc(&mut heap, 8).is_err());
        assert!(heap.is_poisoned());
        assert!(free(&mut heap, p).is_err());
    }

    /// Tetcore's free-list check is an `assert!`: the model reports the panic and poisons.
    #[test]
    fn tetcore_forged_link_is_the_asserts_panic() {
        let mut heap = tetcore(0, PAGE);
        let ptr = alloc(&mut heap, 5).unwrap();
        free(&mut heap, ptr).unwrap();
        heap.memory_mut()
            .write_u64(ptr - 8, Header::free(u32::MAX - 1))
            .unwrap();
        alloc(&mut heap, 5).unwrap();
        let err = alloc(&mut heap, 5).unwrap_err();
        assert!(
            err.message.starts_with("panicked: Pointer is looked up"),
            "{err}"
        );
        assert!(heap.is_poisoned());
    }

    // ---- behaviour ----

    #[test]
    fn the_trail_explains_orders_pops_bumps_growth_and_poison() {
        let mut heap = substrate(0, 1, Some(2));
        let mut t = Trail::on();
        heap.allocate(1, 0, &mut t).unwrap();
        heap.allocate(9, 0, &mut t).unwrap();
        assert!(
            t.lines().contains(
                &"9 B -> order 1 (16 B); free list[1] empty; bump 24 B: 0x10 -> 0x28".to_owned()
            ),
            "{:?}",
            t.lines()
        );
        t.take();
        heap.free(0x18, &mut t).unwrap();
        heap.allocate(16, 0, &mut t).unwrap();
        assert!(
            t.lines()
                .contains(&"order 1: pop 0x10 from free list[1], which is now empty".to_owned()),
            "{:?}",
            t.lines()
        );
        t.take();
        heap.allocate(PAGE / 2, 0, &mut t).unwrap();
        heap.allocate(PAGE / 2, 0, &mut t).unwrap();
        assert!(
            t.lines()
                .contains(&"memory grows 1 -> 2 pages (128 KiB)".to_owned()),
            "{:?}",
            t.lines()
        );
        t.take();
        heap.allocate(PAGE, 0, &mut t).unwrap_err();
        assert_eq!(
            t.lines().last().map(String::as_str),
            Some("poisoned: Allocator ran out of space")
        );
        t.take();
        heap.allocate(1, 0, &mut t).unwrap_err();
        assert!(
            t.lines()[0].starts_with("refused: poisoned since call #7 allocate(65536)"),
            "{:?}",
            t.lines()
        );
    }

    #[test]
    fn the_trail_follows_links_through_pushes_and_pops() {
        let mut heap = substrate(0, 1, None);
        let mut t = Trail::on();
        let a = heap.allocate(9, 0, &mut t).unwrap();
        let b = heap.allocate(9, 0, &mut t).unwrap();
        heap.free(a, &mut t).unwrap();
        t.take();
        heap.free(b, &mut t).unwrap();
        assert_eq!(
            t.take(),
            vec![
                "free(0x20): header 0x18 says occupied, order 1 (16 B)",
                "push 0x18 on free list[1]: header 0x18 = next free -> 0x0",
            ]
        );
        heap.allocate(16, 0, &mut t).unwrap();
        assert_eq!(
            t.take(),
            vec![
                "16 B -> order 1 (16 B)",
                "order 1: pop 0x18 from free list[1], next 0x0",
                "header 0x18 = occupied, order 1; return 0x20",
            ]
        );
    }

    #[test]
    fn inspect_tiles_memory_and_decodes_headers() {
        let mut heap = substrate(13, 1, None);
        let a = alloc(&mut heap, 9).unwrap();
        let b = alloc(&mut heap, 100).unwrap();
        let c = alloc(&mut heap, 9).unwrap();
        free(&mut heap, a).unwrap();
        free(&mut heap, c).unwrap();
        let layout = heap.inspect();
        assert!(layout.check_tiling().is_empty());
        assert_eq!(layout.extent, 0..PAGE);
        let summary: Vec<_> = layout
            .blocks
            .iter()
            .map(|bl| (bl.range.clone(), bl.state, bl.class.clone(), bl.requested))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    0..16,
                    BlockState::Metadata,
                    Some("below heap_base".to_owned()),
                    None
                ),
                (
                    16..40,
                    BlockState::Free,
                    Some("order 1 (16 B)".to_owned()),
                    None
                ),
                (
                    40..176,
                    BlockState::Live,
                    Some("order 4 (128 B)".to_owned()),
                    Some(100)
                ),
                (
                    176..200,
                    BlockState::Free,
                    Some("order 1 (16 B)".to_owned()),
                    None
                ),
                (200..PAGE, BlockState::Unused, None, None),
            ]
        );
        let meanings: Vec<_> = layout.blocks[1..4]
            .iter()
            .map(|bl| bl.fields[0].meaning.clone())
            .collect();
        assert_eq!(
            meanings,
            vec!["end of list", "occupied, order 4", "next free -> 0x10"]
        );
        assert_eq!(layout.blocks[2].payload, b..b + 128);
        assert_eq!(layout.free_lists.len(), 23);
        assert_eq!(layout.free_lists[1].nodes, vec![176, 16]);
        assert_eq!(layout.free_lists[1].name, "order 1 (16 B)");
        assert_eq!(
            layout.markers,
            vec![Marker {
                name: "bumper".to_owned(),
                addr: 200
            }]
        );
        let names: Vec<_> = layout
            .native_stats
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "bytes_allocated",
                "bytes_allocated_peak",
                "bytes_allocated_sum",
                "address_space_used"
            ]
        );
        assert_eq!(layout.stats.footprint, 200 - 16);
        assert_eq!(layout.stats.held, 136);
        assert_eq!(layout.poisoned, None);
    }

    #[test]
    fn heap_base_beyond_the_memory_makes_it_grow_on_first_use() {
        let mut heap = substrate(3 * PAGE + 5, 1, None);
        assert!(heap.inspect().check_tiling().is_empty());
        assert_eq!(alloc(&mut heap, 8), Ok(3 * PAGE + 16));
        assert_eq!(heap.memory_pages(), 4);
        assert_sound(&heap);
    }

    #[test]
    fn alignment_above_8_is_unsupported_and_does_not_poison() {
        let mut heap = substrate(0, 1, None);
        assert_eq!(heap.allocate(4, 8, &mut Trail::off()), Ok(8));
        let err = heap.allocate(4, 16, &mut Trail::off()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unsupported);
        assert_eq!(
            heap.allocate(4, 3, &mut Trail::off()).unwrap_err().kind,
            ErrorKind::Unsupported
        );
        assert!(!heap.is_poisoned());
        assert_eq!(alloc(&mut heap, 4), Ok(24));
        let err = free(&mut heap, 1 << 40).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidFree);
        assert!(!heap.is_poisoned());
    }

    #[test]
    fn bad_frees_use_the_originals_messages_and_are_classified() {
        let mut heap = substrate(0, 1, None);
        let err = free(&mut heap, 3).unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (
                ErrorKind::InvalidFree,
                "Other: Invalid pointer for deallocation"
            )
        );

        let mut heap = substrate(0, 1, None);
        let p = alloc(&mut heap, 8).unwrap();
        free(&mut heap, p).unwrap();
        let err = free(&mut heap, p).unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (
                ErrorKind::DoubleFree,
                "Other: the allocation points to an empty header"
            )
        );

        let mut heap = substrate(0, 1, None);
        let p = alloc(&mut heap, 64).unwrap();
        let err = free(&mut heap, p + 16).unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (
                ErrorKind::InvalidFree,
                "Other: the allocation points to an empty header"
            )
        );
        assert!(heap.is_poisoned());
        assert!(
            heap.inspect()
                .poisoned
                .unwrap()
                .starts_with("poisoned by call #2 free(0x18)")
        );

        let mut heap = substrate(0, 1, None);
        let err = free(&mut heap, PAGE + 8).unwrap_err();
        assert_eq!(err.message, "Other: read out of heap bounds");
    }

    #[test]
    fn corrupted_bytes_give_findings_and_errors_never_panics() {
        let mut heap = substrate(0, 1, None);
        let a = alloc(&mut heap, 8).unwrap();
        let b = alloc(&mut heap, 8).unwrap();
        let c = alloc(&mut heap, 8).unwrap();
        free(&mut heap, a).unwrap();
        free(&mut heap, b).unwrap();
        // b's link (to a's header) now points at itself: a cycle.
        heap.memory_mut()
            .write_u64(b - 8, Header::free(u32::try_from(b - 8).unwrap()))
            .unwrap();
        let layout = heap.inspect();
        assert!(layout.check_tiling().is_empty());
        assert!(
            layout.free_lists[0]
                .problem
                .as_deref()
                .unwrap()
                .contains("cycle")
        );
        let findings = heap.validate();
        assert!(
            findings.iter().any(|f| f.message.contains("cycle")),
            "{findings:?}"
        );
        // A's header is now free but on no list: the walk says so.
        assert!(
            findings
                .iter()
                .any(|f| f.message.contains("on no free list")),
            "{findings:?}"
        );
        // Garbage in the live block's header: an invalid order.
        heap.memory_mut().write_u64(c - 8, u64::MAX).unwrap();
        let findings = heap.validate();
        assert!(!findings.is_empty());
        assert!(heap.inspect().check_tiling().is_empty());
        let before = heap.stats();
        let err = free(&mut heap, c).unwrap_err();
        assert_eq!(
            heap.stats(),
            before,
            "a refused free leaves the block live in the ledger"
        );
        assert_eq!(heap.usable_size(c), None);
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Corrupted, "Other: invalid order")
        );
        assert_eq!(alloc(&mut heap, 8).unwrap_err().kind, ErrorKind::Poisoned);
    }

    #[test]
    fn a_link_to_an_occupied_header_is_refused() {
        let mut heap = substrate(0, 1, None);
        let a = alloc(&mut heap, 8).unwrap();
        let live = alloc(&mut heap, 8).unwrap();
        free(&mut heap, a).unwrap();
        heap.memory_mut()
            .write_u64(a - 8, Header::free(u32::try_from(live - 8).unwrap()))
            .unwrap();
        assert!(
            heap.validate()
                .iter()
                .any(|f| f.message.contains("occupied"))
        );
        assert_eq!(alloc(&mut heap, 8), Ok(a));
        let err = alloc(&mut heap, 8).unwrap_err();
        assert_eq!(err.message, "Other: free list points to a occupied header");
    }

    #[test]
    fn every_byte_of_garbage_is_survivable() {
        // Any header value at any place: validate and inspect report, calls fail, nothing panics.
        for value in [
            0,
            1,
            u64::MAX,
            OCCUPIED_BIT,
            OCCUPIED_BIT | 22,
            0x10,
            0xffff_fff0,
            7,
        ] {
            for place in [0u64, 8, 16, 24, 40] {
                let mut heap = substrate(0, 1, Some(1));
                let ptrs: Vec<_> = (0..4).map(|i| alloc(&mut heap, 8 << i).unwrap()).collect();
                free(&mut heap, ptrs[1]).unwrap();
                free(&mut heap, ptrs[3]).unwrap();
                heap.memory_mut().write_u64(place, value).unwrap();
                let _ = heap.validate();
                assert!(heap.inspect().check_tiling().is_empty());
                for size in [8, 16, 64] {
                    let _ = alloc(&mut heap, size);
                }
                let _ = free(&mut heap, ptrs[0]);
                let _ = heap.validate();
                assert!(heap.inspect().check_tiling().is_empty());
            }
        }
    }

    #[test]
    fn realloc_and_calloc_are_the_trait_defaults() {
        let mut heap = substrate(0, 1, None);
        let mut t = Trail::off();
        let p = heap.allocate(8, 0, &mut t).unwrap();
        heap.memory_mut().write(p, b"abcdefgh").unwrap();
        let q = heap.realloc(p, 100, &mut t).unwrap();
        assert_eq!(heap.memory().slice(q, 8).unwrap(), b"abcdefgh");
        assert_eq!(heap.free_list_head(0), Some(p - 8));
        let z = heap.calloc(2, 4, &mut t).unwrap();
        assert_eq!(z, p, "reuses the freed 8-byte block");
        assert_eq!(heap.memory().slice(z, 8).unwrap(), &[0; 8]);
        assert_eq!(heap.usable_size(q), Some(128));
        assert_eq!(heap.usable_size(q + 8), None);
        assert_sound(&heap);
    }

    #[test]
    fn configurations_out_of_range_are_refused() {
        let bad = |flavour, config: HeapConfig| FreeingBump::new(flavour, &config).is_err();
        assert!(bad(
            Flavour::Substrate,
            HeapConfig {
                base: Some(u64::from(u32::MAX)),
                ..HeapConfig::default()
            }
        ));
        assert!(bad(
            Flavour::Substrate,
            HeapConfig {
                size: Some(2 * PAGE),
                max: Some(PAGE),
                ..HeapConfig::default()
            }
        ));
        assert!(bad(
            Flavour::Substrate,
            HeapConfig {
                size: Some(5 << 30),
                ..HeapConfig::default()
            }
        ));
        assert!(bad(
            Flavour::Tetcore,
            HeapConfig {
                size: Some(1 << 32),
                ..HeapConfig::default()
            }
        ));
        for kind in [
            AllocatorKind::FreeingBump,
            AllocatorKind::FreeingBumpTetcore,
        ] {
            let heap = kind.build(&HeapConfig::default()).unwrap();
            assert_eq!(heap.kind(), kind);
            assert_eq!(heap.memory().len(), PAGE);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of allocations and frees of live blocks leaves a sound heap whose
        /// counters agree with the ledger.
        #[test]
        fn random_traces_stay_sound(
            tetcore_flavour in any::<bool>(),
            ops in proptest::collection::vec((any::<bool>(), 0u64..5000, any::<prop::sample::Index>()), 1..200),
        ) {
            let mut heap = if tetcore_flavour { tetcore(8, 4 * PAGE) } else { substrate(8, 1, Some(4)) };
            let mut live = Vec::new();
            for (is_alloc, size, pick) in ops {
                if is_alloc || live.is_empty() {
                    match alloc(&mut heap, size) {
                        Ok(p) => live.push(p),
                        Err(e) => { prop_assert_eq!(e.kind, ErrorKind::OutOfMemory); break; }
                    }
                } else {
                    let p = live.swap_remove(pick.index(live.len()));
                    free(&mut heap, p).unwrap();
                }
            }
            prop_assert!(heap.inspect().check_tiling().is_empty());
            prop_assert_eq!(heap.validate(), Vec::new());
            prop_assert_eq!(heap.stats().live_blocks, live.len() as u64);
            prop_assert_eq!(heap.stats().held, heap.allocation_stats().bytes_allocated);
            prop_assert_eq!(heap.stats().footprint, heap.bumper() - heap.heap_base());
        }
    }
}

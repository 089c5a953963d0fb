//! `segregated-fit`: the NASM educational allocator of unstack (`bla-ce/unstack`, `inc/*.inc`).
//!
//! Every chunk starts with a 40-byte header of five little-endian quadwords, in this order:
//! `magic` (always `0xC0FFEE`, unstack's `MAGIC_VAL_HEAP_CORRUPT`), `size` (the whole chunk,
//! header included), `inuse` (0 free, anything else in use), `next` and `prev` (free-list links,
//! chunk addresses, 0 for none). The payload follows the header, so `malloc` returns
//! chunk + 40. Free chunks sit on one of 12 doubly linked lists, `seg_free_list[0..12]`, chosen
//! by the *data* size (chunk size - 40): `bin = floor(log2(data)) - 3`, clamped to 0..=11, so
//! bin 0 holds data sizes below 16 B, bin 1 [16, 32), ..., bin 10 [8 KiB, 16 KiB) and bin 11
//! everything from 16 KiB up. A chunk is pushed at the head of its bin (newest first).
//!
//! `malloc(n)`: the chunk size is `n + 40` rounded up to 8. The search starts at the bin of
//! the rounded data size and walks each bin from its head, taking the first chunk whose size
//! is at least the chunk size (first fit), moving to the next higher bin when a bin runs out.
//! The chunk is split when what would be left is more than 40 bytes (`size - 40 > need`);
//! the remainder gets a fresh header and goes on its bin. When nothing fits, the original
//! `mmap`s the chunk size rounded up to 4 KiB pages, makes one chunk of the whole mapping and
//! splits it the same way; memory never goes back to the system.
//!
//! `free(p)`: the header must carry the magic, else the original returns -1 (`FAILURE_CODE`)
//! and changes nothing; the model returns [`ErrorKind::Corrupted`] for a block it handed out
//! and [`ErrorKind::InvalidFree`] otherwise, never panicking. A chunk whose `inuse` is already
//! 0 is left alone and `free` returns 0: a double free is silently ignored, and the model
//! returns `Ok` and says so in the decision log. Otherwise the chunk merges with the chunk
//! right after it if that one is free, once and forwards only (nothing looks behind, and the
//! merged chunk does not look further), then goes on its bin. `realloc` is always
//! malloc + copy + free, copying `min(new size, old chunk size - 40)` bytes; `calloc` zeroes
//! the whole payload of the chunk it gets.
//!
//! How the model maps this onto one [`Memory`]:
//! - Each `mmap` is modelled as growth of the memory at its end, so the regions are
//!   contiguous and ascending, from `HeapConfig::base` (default [`DEFAULT_BASE`],
//!   `0x2000_0000`, page aligned like an `mmap` result). `HeapConfig::max` (default 1 GiB)
//!   bounds the bytes mapped in total; a request beyond it fails like a failing `mmap`
//!   ([`ErrorKind::OutOfMemory`]). `HeapConfig::size` is ignored: the original maps nothing
//!   before the first `malloc`.
//! - The original stops forward merging at `heap_start`, which it sets to the *end of its
//!   first mapping*. Linux places later anonymous mappings below earlier ones, so there every
//!   later region can merge forwards (into the region above it when they touch) and only the
//!   top of the first mapping is a hard stop. The model grows upwards instead, so it stops at
//!   the end of the mapped memory: the same rule mirrored, with the last region's end as the
//!   hard stop and a region's last chunk able to merge into the next region's first chunk.
//!   `heap_start` is still kept and shown, as the original computes it.
//! - The bin heads live outside the heap in the original (`.data`); here they are a field.
//! - Where the original would fault (a link or size leading outside the mapped bytes) or spin
//!   forever (a cycle in a bin), the model returns [`ErrorKind::Corrupted`] instead.
//! - The walks are what make unstack slow on a big heap, and the model gives their answers
//!   without taking them while it can prove they cannot differ: `fit_index` keeps each bin in
//!   link order with a max tree of sizes, for as long as no byte of the heap was written by
//!   anyone but the model and nothing it never handed out was freed. A call whose decision
//!   log is on always walks, so the log lists every chunk the original looks at.
//!
//! Quirks kept from the source: `malloc(0)` and `calloc` with a zero count or size return
//! NULL (0) without allocating; `free(NULL)` fails (-1), because the header address would be
//! negative; `realloc(NULL, n)` is `malloc(n)` and `realloc(p, 0)` frees `p` and returns NULL;
//! `realloc` reads the old size without checking the magic or `inuse` (so `realloc` of a
//! freed pointer can get that very chunk back from `malloc`, then free it, and return a
//! pointer to a free chunk), and if the final `free` fails, the new chunk stays allocated
//! (leaked) and realloc fails; `calloc` multiplies
//! with `mul` and keeps the low 64 bits, so an overflowing product silently asks for less;
//! the `mmapd` counter grows before `mmap` is called, so failed requests count too, and
//! `freed` grows before the `inuse` check, so double frees count too. Alignment: payloads are
//! 8-byte aligned (chunks start at page boundaries and sizes are multiples of 8); unstack's
//! `malloc` takes no alignment, so any request above 8 returns [`ErrorKind::Unsupported`].

mod fit_index;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::allocator::{AllocError, Allocator, ErrorKind, Trail, bytes};
use crate::layout::{
    Block, BlockState, Detail, Field, Finding, FreeList, HeapLayout, Ledger, Marker, NativeStat,
    Stats,
};
use crate::memory::Memory;
use crate::{Addr, AllocatorKind, ConfigError, HeapConfig, say};
use fit_index::FitIndex;

/// Default address of the first mapping: readable, page aligned, clear of the other models.
pub const DEFAULT_BASE: Addr = 0x2000_0000;
/// Default limit on the bytes mapped in total (1 GiB).
pub const DEFAULT_MAX: u64 = 1 << 30;
/// unstack's `MAGIC_VAL_HEAP_CORRUPT`, at the top of every header.
pub const MAGIC: u64 = 0xC0_FFEE;
/// unstack's `CHUNK_METADATA_LEN`: five quadwords.
pub const HEADER: u64 = 40;
/// unstack's `N_BINS`.
pub const N_BINS: usize = 12;
/// unstack's `PAGE_SIZE`, the unit of every `mmap`.
pub const PAGE_SIZE: u64 = 0x1000;
/// unstack's `FIRST_BIN_BSR_INDEX`: data sizes below 2^4 all land in bin 0.
const FIRST_BIN_BSR_INDEX: u32 = 3;
/// The smallest chunk `malloc` ever makes: `align8(1 + 40)`, also the smallest remainder a
/// split leaves (more than 40 bytes, in steps of 8).
pub const MIN_CHUNK: u64 = 48;

/// unstack's `get_bin`: the bin of a data size (`bsr(data) - 3`, clamped to `0..N_BINS`).
///
/// `bsr` of 0 is undefined on x86; unstack's own `get_bin` test expects bin 0 for it.
pub fn get_bin(data: u64) -> usize {
    let bsr = data.checked_ilog2().unwrap_or(0);
    (bsr.saturating_sub(FIRST_BIN_BSR_INDEX) as usize).min(N_BINS - 1)
}

/// unstack's `can_split`: whether a chunk of `size` bytes serving a `need`-byte chunk leaves
/// more than a header's worth (`size - 40 > need`, a signed comparison in the original).
pub fn can_split(size: u64, need: u64) -> bool {
    (size.wrapping_sub(HEADER) as i64) > (need as i64)
}

/// The data sizes a bin holds, as its name in the layout: `bin 2 [32, 64) B`.
fn bin_name(bin: usize) -> String {
    let lo = if bin == 0 { 0 } else { 1u64 << (bin + 3) };
    if bin + 1 >= N_BINS {
        format!("bin {bin} [{lo}, ∞) B")
    } else {
        format!("bin {bin} [{lo}, {}) B", 1u64 << (bin + 4))
    }
}

/// One quadword of the chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F {
    Magic,
    Size,
    Inuse,
    Next,
    Prev,
}

impl F {
    /// unstack's `CHUNK_OFFSET_*`.
    fn offset(self) -> u64 {
        match self {
            F::Magic => 0,
            F::Size => 8,
            F::Inuse => 16,
            F::Next => 24,
            F::Prev => 32,
        }
    }

    /// The field's name, after unstack's `CHUNK_OFFSET_*` constants.
    fn name(self) -> &'static str {
        match self {
            F::Magic => "magic",
            F::Size => "size",
            F::Inuse => "inuse",
            F::Next => "next",
            F::Prev => "prev",
        }
    }
}

/// Brent's cycle detection for a walk along `next` links, without allocating.
struct CycleGuard {
    saved: Addr,
    power: u64,
    steps: u64,
}

impl CycleGuard {
    fn new(start: Addr) -> Self {
        Self {
            saved: start,
            power: 1,
            steps: 0,
        }
    }

    /// Whether stepping on to `next` closes a loop.
    fn closes_loop(&mut self, next: Addr) -> bool {
        if next == self.saved {
            return true;
        }
        self.steps += 1;
        if self.steps == self.power {
            self.saved = next;
            self.power = self.power.saturating_mul(2);
            self.steps = 0;
        }
        false
    }
}

fn loop_error(bin: usize, at: Addr) -> AllocError {
    AllocError::new(
        ErrorKind::Corrupted,
        format!("bin {bin}'s list loops back to {at:#x}: the original would walk it forever"),
    )
}

/// A header as read from the bytes, for `inspect` and `validate`.
#[derive(Debug, Clone, Copy)]
struct ChunkView {
    at: Addr,
    magic: u64,
    size: u64,
    inuse: u64,
    next: u64,
    prev: u64,
}

impl ChunkView {
    fn fields(&self) -> Vec<Field> {
        let range = |f: F| {
            let start = self.at + f.offset();
            start..start + 8
        };
        let link = |v: u64, what: &str| {
            if v == 0 {
                "none".to_owned()
            } else {
                format!("{what} -> {v:#x}")
            }
        };
        vec![
            Field::new(
                F::Magic.name(),
                range(F::Magic),
                self.magic,
                if self.magic == MAGIC {
                    "magic ok"
                } else {
                    "BAD MAGIC"
                },
            ),
            Field::new(
                F::Size.name(),
                range(F::Size),
                self.size,
                format!(
                    "{} chunk, {} data",
                    bytes(self.size),
                    bytes(self.size.saturating_sub(HEADER))
                ),
            ),
            Field::new(
                F::Inuse.name(),
                range(F::Inuse),
                self.inuse,
                match self.inuse {
                    0 => "free",
                    1 => "in use",
                    _ => "in use (any non-zero value counts)",
                },
            ),
            Field::new(
                F::Next.name(),
                range(F::Next),
                self.next,
                link(self.next, "next in bin"),
            ),
            Field::new(
                F::Prev.name(),
                range(F::Prev),
                self.prev,
                link(self.prev, "previous in bin"),
            ),
        ]
    }
}

/// Where a walk of the chunks by size had to stop.
#[derive(Debug, Clone)]
struct WalkStop {
    at: Addr,
    reason: String,
    header: Option<ChunkView>,
}

/// The unstack allocator: segregated free lists, first fit, split, forward merge, `mmap`.
#[derive(Debug, Clone)]
pub struct SegregatedFit {
    memory: Memory,
    max: u64,
    /// unstack's `seg_free_list`: the head chunk of each bin, 0 when empty.
    seg_free_list: [Addr; N_BINS],
    /// unstack's `heap_start`: the end of the first mapping (0 before it).
    heap_start: Addr,
    /// unstack's `mallocd`: chunk bytes handed out, summed over every `malloc`.
    mallocd: u64,
    /// unstack's `freed`: chunk bytes seen by `free`, double frees included.
    freed: u64,
    /// unstack's `mmapd`: bytes asked of `mmap`, failed requests included.
    mmapd: u64,
    /// Start of each mapping, as the system would know them (for markers only).
    regions: Vec<Addr>,
    ledger: Ledger,
    /// Whether the bins are exactly the lists the model linked: true until a byte of the heap
    /// is written by anyone else (the program, a test) or a pointer the model never handed out
    /// is freed (its "chunk" may lie inside another, whose writes the index would not see).
    /// Nothing else can corrupt a heap. While it holds, [`FitIndex`] may answer for the walks
    /// (trail off); after, every search walks.
    trusted: bool,
    /// Chunks pushed on a bin and not unlinked since: what building the index visits.
    listed: u64,
    fit: DerivedFit,
}

/// The [`FitIndex`] as derived state: a copy (a checkpoint, a waypoint) starts without one and
/// builds its own from the bins, so it costs checkpoints nothing. It is built once walking has
/// cost as much as building would (so a short replay after a restore just walks).
#[derive(Default)]
struct DerivedFit {
    index: Option<FitIndex>,
    /// Chunks visited by walks since there was no index.
    walked: u64,
}

impl Clone for DerivedFit {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for DerivedFit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.index {
            Some(index) => write!(f, "FitIndex({} chunks)", index.len()),
            None => f.write_str("FitIndex(not built)"),
        }
    }
}

impl SegregatedFit {
    /// An empty heap whose first mapping will be at `config.base` (default `0x2000_0000`, must
    /// be a non-zero multiple of 4096), mapping at most `config.max` bytes (default 1 GiB).
    pub fn from_config(config: &HeapConfig) -> Result<Self, ConfigError> {
        let kind = AllocatorKind::SegregatedFit;
        let base = config.base.unwrap_or(DEFAULT_BASE);
        let max = config.max.unwrap_or(DEFAULT_MAX);
        if base == 0 || !base.is_multiple_of(PAGE_SIZE) {
            return Err(ConfigError::invalid(
                kind,
                format!("base {base:#x} must be a non-zero multiple of 4096, like an mmap result"),
            ));
        }
        if max > 1 << 40 {
            return Err(ConfigError::invalid(kind, "max above 1 TiB"));
        }
        // The original treats any pointer with the top bit set as an error (`jl .error`).
        if base.checked_add(max).is_none_or(|end| end > 1 << 63) {
            return Err(ConfigError::invalid(
                kind,
                format!(
                    "heap at {base:#x} of up to {max} B reaches addresses with the top bit set"
                ),
            ));
        }
        Ok(Self {
            memory: Memory::new(base, 0),
            max,
            seg_free_list: [0; N_BINS],
            heap_start: 0,
            mallocd: 0,
            freed: 0,
            mmapd: 0,
            regions: Vec::new(),
            ledger: Ledger::default(),
            trusted: true,
            listed: 0,
            fit: DerivedFit::default(),
        })
    }

    /// Stops trusting the bins to be what the model linked (see `trusted`).
    fn distrust(&mut self) {
        self.trusted = false;
        self.fit.index = None;
    }

    /// The fit index, built first if it is missing and walking has cost as much as building;
    /// `None` when the bins must be walked.
    fn fit_index(&mut self) -> Option<&FitIndex> {
        if !self.trusted {
            return None;
        }
        if self.fit.index.is_none() {
            if self.fit.walked < self.listed {
                return None;
            }
            let Some(index) = self.index_bins() else {
                self.distrust();
                return None;
            };
            self.fit.index = Some(index);
        }
        self.fit.index.as_ref()
    }

    /// Walks every bin into a [`FitIndex`]; `None` unless each is a clean list (in bounds,
    /// magic, free, back links, sizes of its class, no chunk twice).
    fn index_bins(&self) -> Option<FitIndex> {
        let mut index = FitIndex::default();
        let end = self.memory.end();
        let mut list = Vec::new();
        for bin in 0..N_BINS {
            list.clear();
            let mut prev = 0;
            let mut cur = self.seg_free_list[bin];
            while cur != 0 {
                let view = self.view(cur)?;
                let clean = view.magic == MAGIC
                    && view.inuse == 0
                    && view.prev == prev
                    && view.size >= MIN_CHUNK
                    && cur.checked_add(view.size).is_some_and(|e| e <= end)
                    && get_bin(view.size - HEADER) == bin
                    && list.len() as u64 <= self.memory.len() / MIN_CHUNK;
                if !clean {
                    return None;
                }
                list.push((cur, view.size));
                prev = cur;
                cur = view.next;
            }
            // Pushed tail first, as the model would have pushed them.
            for &(chunk, size) in list.iter().rev() {
                if !index.push(bin, chunk, size) {
                    return None;
                }
            }
        }
        Some(index)
    }

    /// The bin heads, unstack's `seg_free_list`.
    pub fn seg_free_list(&self) -> &[Addr; N_BINS] {
        &self.seg_free_list
    }

    /// unstack's `heap_start`: the end of the first mapping, 0 before any.
    pub fn heap_start(&self) -> Addr {
        self.heap_start
    }

    fn get(&self, chunk: Addr, f: F) -> Result<u64, AllocError> {
        self.memory
            .read_u64(chunk.wrapping_add(f.offset()))
            .map_err(|_| outside(chunk, f))
    }

    fn set(&mut self, chunk: Addr, f: F, value: u64) -> Result<(), AllocError> {
        self.memory
            .write_u64(chunk.wrapping_add(f.offset()), value)
            .map_err(|_| outside(chunk, f))
    }

    /// unstack's `remove_from_free_list`: finds `chunk` on the bin its size names and unlinks it;
    /// a chunk not found there is left alone, as the original does.
    fn remove_from_free_list(&mut self, chunk: Addr, trail: &mut Trail) -> Result<(), AllocError> {
        let bin = get_bin(self.get(chunk, F::Size)?.wrapping_sub(HEADER));
        // The index answers what the walk would find; the walk is kept when it is explained.
        let indexed = if trail.is_on() {
            None
        } else {
            self.fit_index()
                .map(|index| index.bin_of(chunk) == Some(bin))
        };
        let on_bin = match indexed {
            Some(on_bin) => on_bin,
            None => {
                let mut visits = 0;
                let on_bin = self.walk_to(bin, chunk, &mut visits);
                self.fit.walked = self.fit.walked.saturating_add(visits);
                on_bin?
            }
        };
        if !on_bin {
            say!(
                trail,
                "{chunk:#x} is not on bin {bin}, the bin its size names: nothing to unlink"
            );
            return Ok(());
        }
        let prev = self.get(chunk, F::Prev)?;
        let next = self.get(chunk, F::Next)?;
        if prev == 0 {
            if next != 0 {
                self.set(next, F::Prev, 0)?;
            }
            self.seg_free_list[bin] = next;
        } else if next == 0 {
            self.set(prev, F::Next, 0)?;
        } else {
            self.set(prev, F::Next, next)?;
            self.set(next, F::Prev, prev)?;
        }
        self.listed = self.listed.saturating_sub(1);
        if let Some(index) = &mut self.fit.index {
            index.remove(chunk);
        }
        say!(trail, "unlink {chunk:#x} from bin {bin}");
        Ok(())
    }

    /// Walks `bin` from its head as `remove_from_free_list` does: whether it meets `chunk`
    /// (counting the chunks it visits into `visits`).
    fn walk_to(&self, bin: usize, chunk: Addr, visits: &mut u64) -> Result<bool, AllocError> {
        let mut cur = self.seg_free_list[bin];
        let mut guard = CycleGuard::new(cur);
        while cur != chunk {
            if cur == 0 {
                return Ok(false);
            }
            *visits += 1;
            let next = self.get(cur, F::Next)?;
            if guard.closes_loop(next) {
                return Err(loop_error(bin, next));
            }
            cur = next;
        }
        Ok(true)
    }

    /// unstack's `add_to_free_list`: pushes `chunk` on the head of its bin. The chunk's own
    /// `prev` is not reset (it is always 0 by then unless the header was overwritten).
    fn add_to_free_list(&mut self, chunk: Addr, trail: &mut Trail) -> Result<(), AllocError> {
        let magic = self.get(chunk, F::Magic)?;
        if magic != MAGIC {
            // The original returns -1 here, which every caller ignores.
            say!(
                trail,
                "{chunk:#x} has magic {magic:#x}, not 0xc0ffee: not put on any bin"
            );
            return Ok(());
        }
        let size = self.get(chunk, F::Size)?;
        let bin = get_bin(size.wrapping_sub(HEADER));
        let head = self.seg_free_list[bin];
        if head != 0 {
            self.set(chunk, F::Next, head)?;
            self.set(head, F::Prev, chunk)?;
        }
        self.seg_free_list[bin] = chunk;
        self.listed += 1;
        if let Some(index) = &mut self.fit.index
            && !index.push(bin, chunk, size)
        {
            self.distrust();
        }
        say!(
            trail,
            "push {chunk:#x} ({}, data {}) on the head of bin {bin}",
            bytes(size),
            bytes(size.wrapping_sub(HEADER))
        );
        Ok(())
    }

    /// unstack's `_split`: cuts `chunk` down to `need` bytes and puts the rest on its bin.
    fn split(&mut self, chunk: Addr, need: u64, trail: &mut Trail) -> Result<(), AllocError> {
        if self.get(chunk, F::Inuse)? != 1 {
            self.remove_from_free_list(chunk, trail)?;
        }
        let old = self.get(chunk, F::Size)?;
        let rest_at = chunk.wrapping_add(need);
        let rest = old.wrapping_sub(need);
        if !self.memory.contains(rest_at, HEADER) {
            return Err(outside(rest_at, F::Magic));
        }
        self.set(chunk, F::Size, need)?;
        self.set(rest_at, F::Magic, MAGIC)?;
        self.set(rest_at, F::Inuse, 0)?;
        self.set(rest_at, F::Size, rest)?;
        self.set(rest_at, F::Next, 0)?;
        self.set(rest_at, F::Prev, 0)?;
        say!(
            trail,
            "split {chunk:#x}: keep {}, the other {} becomes a free chunk at {rest_at:#x}",
            bytes(need),
            bytes(rest)
        );
        self.add_to_free_list(rest_at, trail)
    }

    /// unstack's `search_chunk`: first fit from the bin of the data size upwards.
    fn search_chunk(&mut self, need: u64, trail: &mut Trail) -> Result<Option<Addr>, AllocError> {
        let first = get_bin(need - HEADER);
        say!(
            trail,
            "data {} -> bin {first}; search bins {first}..{}",
            bytes(need - HEADER),
            N_BINS - 1
        );
        // The index answers what the walk would find; the walk is kept when it is explained,
        // and for a need so large that the walk's signed comparison takes any chunk.
        let indexed = if trail.is_on() || need as i64 <= 0 {
            None
        } else {
            self.fit_index()
                .map(|index| (first..N_BINS).find_map(|bin| index.first_fit(bin, need)))
        };
        let found = match indexed {
            Some(found) => found,
            None => {
                let mut visits = 0;
                let found = self.walk_first_fit(first, need, trail, &mut visits);
                self.fit.walked = self.fit.walked.saturating_add(visits);
                found?
            }
        };
        let Some((chunk, size)) = found else {
            say!(trail, "no free chunk fits");
            return Ok(None);
        };
        let magic = self.get(chunk, F::Magic)?;
        if magic != MAGIC {
            say!(
                trail,
                "{chunk:#x} has magic {magic:#x}, not 0xc0ffee: malloc fails (-1)"
            );
            return Err(bad_magic_in_bin(chunk, magic));
        }
        if can_split(size, need) {
            self.split(chunk, need, trail)?;
        } else {
            say!(
                trail,
                "only {} would be left, not more than the 40 B header: hand out the whole {}",
                bytes(size.saturating_sub(need)),
                bytes(size)
            );
            self.remove_from_free_list(chunk, trail)?;
            self.set(chunk, F::Inuse, 1)?;
        }
        Ok(Some(chunk))
    }

    /// Walks the bins from `first` up as `search_chunk` does: the first chunk of at least
    /// `need` bytes, with its size (counting the chunks it visits into `visits`).
    fn walk_first_fit(
        &self,
        first: usize,
        need: u64,
        trail: &mut Trail,
        visits: &mut u64,
    ) -> Result<Option<(Addr, u64)>, AllocError> {
        let mut empty_from: Option<usize> = None;
        let mut found = None;
        'bins: for bin in first..N_BINS {
            let mut cur = self.seg_free_list[bin];
            if cur == 0 {
                empty_from.get_or_insert(bin);
                continue;
            }
            if let Some(from) = empty_from.take() {
                say_empty(trail, from, bin - 1);
            }
            let mut guard = CycleGuard::new(cur);
            loop {
                *visits += 1;
                let size = self.get(cur, F::Size)?;
                if size as i64 >= need as i64 {
                    say!(
                        trail,
                        "bin {bin}: {cur:#x} has {} >= {}: first fit",
                        bytes(size),
                        bytes(need)
                    );
                    found = Some((cur, size));
                    break 'bins;
                }
                say!(
                    trail,
                    "bin {bin}: {cur:#x} has {} < {}: too small",
                    bytes(size),
                    bytes(need)
                );
                let next = self.get(cur, F::Next)?;
                if next == 0 {
                    break;
                }
                if guard.closes_loop(next) {
                    return Err(loop_error(bin, next));
                }
                cur = next;
            }
        }
        if let Some(from) = empty_from {
            say_empty(trail, from, N_BINS - 1);
        }
        Ok(found)
    }

    /// unstack's `request_from_os` plus the chunk set-up in `malloc`: maps whole pages right
    /// after the current end, makes them one in-use chunk and splits it.
    fn request_from_os(&mut self, need: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        let pages = need.next_multiple_of(PAGE_SIZE);
        // Counted before the call, so a failed mmap counts too.
        self.mmapd = self.mmapd.wrapping_add(pages);
        let mapped = self.memory.len();
        if mapped.checked_add(pages).is_none_or(|m| m > self.max) {
            say!(
                trail,
                "mmap {} fails: {} of the {} limit already mapped",
                bytes(pages),
                bytes(mapped),
                bytes(self.max)
            );
            return Err(AllocError::new(
                ErrorKind::OutOfMemory,
                format!(
                    "mmap of {pages} B failed: the heap may not map more than {} B; malloc returns -1",
                    self.max
                ),
            ));
        }
        let region = self.memory.end();
        self.memory.grow_to(mapped + pages);
        self.regions.push(region);
        self.ledger.set_footprint(self.memory.len());
        say!(
            trail,
            "mmap {} (the chunk rounded up to pages) -> region at {region:#x}",
            bytes(pages)
        );
        self.set(region, F::Magic, MAGIC)?;
        self.set(region, F::Size, pages)?;
        self.set(region, F::Next, 0)?;
        self.set(region, F::Prev, 0)?;
        self.set(region, F::Inuse, 1)?;
        if self.heap_start == 0 {
            self.heap_start = region + pages;
            say!(
                trail,
                "first mapping: heap_start = its end, {:#x}",
                self.heap_start
            );
        }
        if can_split(pages, need) {
            self.split(region, need, trail)?;
        } else {
            say!(
                trail,
                "only {} would be left: the whole region is one chunk",
                bytes(pages - need)
            );
        }
        Ok(region)
    }

    /// unstack's `malloc`.
    fn malloc(&mut self, size: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        if size == 0 {
            say!(trail, "malloc(0) returns NULL (0) and allocates nothing");
            return Ok(0);
        }
        if size as i64 <= 0 {
            return Err(AllocError::new(
                ErrorKind::TooLarge,
                format!("malloc({size}): negative as a signed 64-bit size; malloc returns -1"),
            ));
        }
        let need = (size + HEADER).next_multiple_of(8);
        say!(
            trail,
            "{} + 40 B header = {} chunk (rounded up to 8)",
            bytes(size),
            bytes(need)
        );
        let chunk = match self.search_chunk(need, trail)? {
            Some(chunk) => chunk,
            None => self.request_from_os(need, trail)?,
        };
        let magic = self.get(chunk, F::Magic)?;
        if magic != MAGIC {
            return Err(bad_magic_in_bin(chunk, magic));
        }
        self.set(chunk, F::Next, 0)?;
        self.set(chunk, F::Prev, 0)?;
        self.set(chunk, F::Inuse, 1)?;
        let held = self.get(chunk, F::Size)?;
        self.mallocd = self.mallocd.wrapping_add(held);
        let ptr = chunk + HEADER;
        self.ledger.on_alloc(ptr, size, held);
        say!(
            trail,
            "chunk {chunk:#x} ({}) marked in use, links cleared: return {ptr:#x}",
            bytes(held)
        );
        Ok(ptr)
    }

    /// Forward byte copy, as `rep movsb` does it (differs from `memmove` only when the
    /// destination overlaps the source from above).
    fn copy_forward(&mut self, src: Addr, dst: Addr, len: u64) -> Result<(), AllocError> {
        let fault = |at: Addr| {
            AllocError::new(
                ErrorKind::Corrupted,
                format!(
                    "copying {len} B runs outside the heap at {at:#x}: the original would fault"
                ),
            )
        };
        if !self.memory.contains(src, len) {
            return Err(fault(src));
        }
        if !self.memory.contains(dst, len) {
            return Err(fault(dst));
        }
        if dst <= src || dst >= src + len {
            return self
                .memory
                .copy_within(src, dst, len)
                .map_err(|_| fault(src));
        }
        for i in 0..len {
            let byte = self
                .memory
                .slice(src + i, 1)
                .ok()
                .and_then(|s| s.first().copied())
                .ok_or_else(|| fault(src + i))?;
            self.memory
                .write(dst + i, &[byte])
                .map_err(|_| fault(dst + i))?;
        }
        Ok(())
    }

    fn view(&self, at: Addr) -> Option<ChunkView> {
        if !self.memory.contains(at, HEADER) {
            return None;
        }
        let read = |f: F| self.get(at, f).ok();
        Some(ChunkView {
            at,
            magic: read(F::Magic)?,
            size: read(F::Size)?,
            inuse: read(F::Inuse)?,
            next: read(F::Next)?,
            prev: read(F::Prev)?,
        })
    }

    /// The chunks in address order, walked by their sizes, and where the walk had to stop.
    fn walk_chunks(&self) -> (Vec<ChunkView>, Option<WalkStop>) {
        let mut out = Vec::new();
        let end = self.memory.end();
        let mut at = self.memory.base();
        while at < end {
            let Some(view) = self.view(at) else {
                return (
                    out,
                    Some(WalkStop {
                        at,
                        reason: format!("a 40 B header at {at:#x} would run past the end {end:#x}"),
                        header: None,
                    }),
                );
            };
            let reason = if view.size < HEADER {
                Some(format!(
                    "size {} is smaller than the 40 B header",
                    view.size
                ))
            } else if at.checked_add(view.size).is_none_or(|e| e > end) {
                Some(format!(
                    "size {:#x} runs past the end of the heap {end:#x}",
                    view.size
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return (
                    out,
                    Some(WalkStop {
                        at,
                        reason,
                        header: Some(view),
                    }),
                );
            }
            out.push(view);
            at += view.size;
        }
        (out, None)
    }

    /// A bin in link order, and what stopped the walk early.
    fn walk_bin(&self, bin: usize) -> (Vec<Addr>, Option<String>) {
        let mut nodes = Vec::new();
        let mut seen = FxHashSet::default();
        let mut cur = self.seg_free_list[bin];
        while cur != 0 {
            let Some(view) = self.view(cur) else {
                return (
                    nodes,
                    Some(format!("link to {cur:#x} points outside the heap")),
                );
            };
            if !seen.insert(cur) {
                return (nodes, Some(format!("cycle: {cur:#x} comes round again")));
            }
            nodes.push(cur);
            if view.magic != MAGIC {
                return (
                    nodes,
                    Some(format!("{cur:#x} has BAD MAGIC {:#x}", view.magic)),
                );
            }
            cur = view.next;
        }
        (nodes, None)
    }
}

fn say_empty(trail: &mut Trail, from: usize, to: usize) {
    if from == to {
        say!(trail, "bin {from}: empty");
    } else {
        say!(trail, "bins {from}..{to}: empty");
    }
}

fn outside(chunk: Addr, f: F) -> AllocError {
    AllocError::new(
        ErrorKind::Corrupted,
        format!(
            "the {} field of a chunk at {chunk:#x} is outside the heap: the original would fault",
            f.name()
        ),
    )
}

fn bad_magic_in_bin(chunk: Addr, magic: u64) -> AllocError {
    AllocError::new(
        ErrorKind::Corrupted,
        format!("chunk {chunk:#x} has magic {magic:#x}, not 0xc0ffee: malloc returns -1"),
    )
}

impl Allocator for SegregatedFit {
    fn kind(&self) -> AllocatorKind {
        AllocatorKind::SegregatedFit
    }

    fn allocate(&mut self, size: u64, align: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        if align > 1 && !(align.is_power_of_two() && align <= 8) {
            return Err(AllocError::new(
                ErrorKind::Unsupported,
                format!(
                    "alignment {align}: unstack's malloc takes no alignment and only guarantees 8"
                ),
            ));
        }
        self.malloc(size, trail)
    }

    fn free(&mut self, ptr: Addr, trail: &mut Trail) -> Result<(), AllocError> {
        if ptr as i64 <= 0 || ptr < HEADER {
            say!(
                trail,
                "free({ptr:#x}): the header would sit at a negative address: free returns -1"
            );
            return Err(AllocError::new(
                ErrorKind::InvalidFree,
                format!("free({ptr:#x}): no header can sit 40 B below it; free returns -1"),
            ));
        }
        let chunk = ptr - HEADER;
        let Ok(magic) = self.memory.read_u64(chunk) else {
            return Err(AllocError::new(
                ErrorKind::InvalidFree,
                format!(
                    "free({ptr:#x}): no heap memory at {chunk:#x}: the original would fault reading the header"
                ),
            ));
        };
        if magic != MAGIC {
            say!(
                trail,
                "magic at {chunk:#x} is {magic:#x}, not 0xc0ffee: free returns -1 and changes nothing"
            );
            let kind = if self.ledger.get(ptr).is_some() {
                ErrorKind::Corrupted
            } else {
                ErrorKind::InvalidFree
            };
            return Err(AllocError::new(
                kind,
                format!(
                    "free({ptr:#x}): magic at {chunk:#x} is {magic:#x}, not 0xc0ffee; free returns -1"
                ),
            ));
        }
        let size = self.get(chunk, F::Size)?;
        self.freed = self.freed.wrapping_add(size);
        if self.get(chunk, F::Inuse)? == 0 {
            say!(
                trail,
                "double free: chunk {chunk:#x} is already free (inuse = 0); the original returns 0 and does nothing"
            );
            return Ok(());
        }
        say!(trail, "chunk {chunk:#x}: magic ok, {}, in use", bytes(size));
        if self.ledger.get(ptr).is_none() {
            // A chunk the model never handed out may lie inside another, whose writes would
            // then change bins behind the index's back.
            self.distrust();
        }
        // unstack's `can_coalesce`, bounded by the end of the mapped memory (see the module doc).
        let next = chunk.wrapping_add(size);
        let end = self.memory.end();
        if next as i64 >= end as i64 {
            say!(
                trail,
                "no chunk after it ({next:#x} is the end of the heap): no merge"
            );
        } else if self.get(next, F::Inuse)? == 0 {
            self.remove_from_free_list(next, trail)?;
            let next_size = self.get(next, F::Size)?;
            let merged = self.get(chunk, F::Size)?.wrapping_add(next_size);
            self.set(chunk, F::Size, merged)?;
            say!(
                trail,
                "next chunk {next:#x} is free: merge, {} + {} = {} (forwards only, once)",
                bytes(size),
                bytes(next_size),
                bytes(merged)
            );
        } else {
            say!(trail, "next chunk {next:#x} is in use: no merge");
        }
        self.set(chunk, F::Inuse, 0)?;
        self.add_to_free_list(chunk, trail)?;
        self.ledger.on_free(ptr);
        Ok(())
    }

    /// unstack's `realloc`: never in place; malloc, copy `min(size, old chunk - 40)`, free.
    fn realloc(&mut self, ptr: Addr, size: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        if ptr == 0 {
            say!(trail, "realloc(NULL, {size}) is malloc({size})");
            return self.malloc(size, trail);
        }
        if ptr as i64 <= 0 {
            return Err(AllocError::new(
                ErrorKind::InvalidFree,
                format!("realloc({ptr:#x}, {size}): negative pointer; realloc returns -1"),
            ));
        }
        if size as i64 <= 0 && size != 0 {
            return Err(AllocError::new(
                ErrorKind::TooLarge,
                format!("realloc({ptr:#x}, {size}): negative size; realloc returns -1"),
            ));
        }
        if size == 0 {
            say!(trail, "realloc({ptr:#x}, 0) frees it and returns NULL");
            self.free(ptr, trail)?;
            return Ok(0);
        }
        let Some(chunk) = ptr.checked_sub(HEADER) else {
            return Err(AllocError::new(
                ErrorKind::InvalidFree,
                format!(
                    "realloc({ptr:#x}, {size}): no header can sit 40 B below it; realloc returns -1"
                ),
            ));
        };
        let Ok(old) = self.memory.read_u64(chunk + F::Size.offset()) else {
            return Err(AllocError::new(
                ErrorKind::InvalidFree,
                format!(
                    "realloc({ptr:#x}, {size}): no heap memory at {chunk:#x}: the original would fault reading the header"
                ),
            ));
        };
        say!(
            trail,
            "realloc: the old chunk says {} (magic and inuse unchecked); malloc a new one, copy, free the old",
            bytes(old)
        );
        let new = self.malloc(size, trail)?;
        let room = old.wrapping_sub(HEADER) as i64;
        let len = (size as i64).min(room);
        let Ok(len) = u64::try_from(len) else {
            return Err(AllocError::new(
                ErrorKind::Corrupted,
                format!(
                    "realloc({ptr:#x}): old chunk size {old} is below the header size, so the copy length is negative: the original would fault (the new chunk at {new:#x} stays allocated)"
                ),
            ));
        };
        self.copy_forward(ptr, new, len)?;
        say!(trail, "copy {} {ptr:#x} -> {new:#x}", bytes(len));
        if let Err(e) = self.free(ptr, trail) {
            say!(
                trail,
                "freeing the old chunk failed: realloc returns -1 and the new chunk at {new:#x} stays allocated (leaked)"
            );
            return Err(e);
        }
        Ok(new)
    }

    /// unstack's `calloc`: NULL for a zero count or size, `mul` keeping the low 64 bits,
    /// and the whole payload of the chunk zeroed.
    fn calloc(&mut self, count: u64, size: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        if count == 0 || size == 0 {
            say!(trail, "calloc with a zero count or size returns NULL (0)");
            return Ok(0);
        }
        let (total, overflowed) = count.overflowing_mul(size);
        if overflowed {
            say!(
                trail,
                "{count} x {size} overflows 64 bits; the original's mul keeps the low 64 bits: {total} B"
            );
        }
        let ptr = self.malloc(total, trail)?;
        if ptr == 0 {
            return Ok(0);
        }
        let chunk_size = self.get(ptr - HEADER, F::Size)?;
        let len = chunk_size.wrapping_sub(HEADER);
        self.memory.fill(ptr, len, 0).map_err(|_| {
            AllocError::new(
                ErrorKind::Corrupted,
                format!(
                    "zeroing {len} B at {ptr:#x} runs outside the heap: the original would fault"
                ),
            )
        })?;
        say!(
            trail,
            "zero the chunk's whole payload: {} at {ptr:#x}",
            bytes(len)
        );
        Ok(ptr)
    }

    fn usable_size(&self, ptr: Addr) -> Option<u64> {
        self.ledger.get(ptr)?;
        let chunk = ptr.checked_sub(HEADER)?;
        let view = self.view(chunk)?;
        (view.magic == MAGIC && view.inuse != 0)
            .then(|| view.size.checked_sub(HEADER))
            .flatten()
    }

    fn inspect(&self) -> HeapLayout {
        self.inspect_detail(Detail::All)
    }

    fn inspect_detail(&self, detail: Detail) -> HeapLayout {
        let end = self.memory.end();
        let (chunks, stop) = self.walk_chunks();
        let mut blocks = Vec::with_capacity(chunks.len() + 1);
        for c in &chunks {
            let live = c.inuse != 0;
            let range = c.at..c.at + c.size;
            let decode = detail.wants(&range);
            blocks.push(Block {
                range,
                header: c.at..c.at + HEADER,
                payload: c.at + HEADER..c.at + c.size,
                requested: if live {
                    self.ledger.requested(c.at + HEADER)
                } else {
                    None
                },
                state: if live {
                    BlockState::Live
                } else {
                    BlockState::Free
                },
                class: decode.then(|| format!("bin {}", get_bin(c.size - HEADER))),
                fields: if decode { c.fields() } else { Vec::new() },
            });
        }
        if let Some(stop) = stop {
            // The rest cannot be parsed: show it as one stretch, with whatever header it has.
            let header_end = if stop.header.is_some() {
                stop.at + HEADER
            } else {
                stop.at
            };
            blocks.push(Block {
                range: stop.at..end,
                header: stop.at..header_end,
                payload: header_end..end,
                requested: None,
                state: BlockState::Unused,
                class: Some(format!("not a chunk: {}", stop.reason)),
                fields: stop.header.map(|h| h.fields()).unwrap_or_default(),
            });
        }
        let free_lists = (0..N_BINS)
            .map(|bin| {
                let (nodes, problem) = self.walk_bin(bin);
                FreeList {
                    name: bin_name(bin),
                    nodes,
                    problem,
                }
            })
            .collect();
        let mut markers: Vec<Marker> = self
            .regions
            .iter()
            .enumerate()
            .map(|(i, &addr)| Marker {
                name: format!("mmap #{}", i + 1),
                addr,
            })
            .collect();
        if self.heap_start != 0 {
            markers.push(Marker {
                name: "heap_start (end of the first mmap)".to_owned(),
                addr: self.heap_start,
            });
        }
        HeapLayout {
            kind: AllocatorKind::SegregatedFit,
            extent: self.memory.base()..end,
            blocks,
            free_lists,
            markers,
            poisoned: None,
            stats: self.stats(),
            native_stats: vec![
                NativeStat::new("mallocd", self.mallocd),
                NativeStat::new("freed", self.freed),
                NativeStat::new("mmapd", self.mmapd),
                NativeStat::new("heap_start", self.heap_start),
            ],
        }
    }

    fn validate(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let (chunks, stop) = self.walk_chunks();
        if let Some(stop) = &stop {
            out.push(Finding::at(
                stop.at,
                format!("the chunks do not tile the heap: {}", stop.reason),
            ));
        }
        let by_addr: FxHashMap<Addr, &ChunkView> = chunks.iter().map(|c| (c.at, c)).collect();
        for c in &chunks {
            let at = c.at;
            if c.magic != MAGIC {
                out.push(Finding::at(
                    at,
                    format!("chunk {at:#x}: magic is {:#x}, not 0xc0ffee", c.magic),
                ));
            }
            if !c.size.is_multiple_of(8) {
                out.push(Finding::at(
                    at,
                    format!("chunk {at:#x}: size {} is not a multiple of 8", c.size),
                ));
            }
            if c.size < MIN_CHUNK {
                out.push(Finding::at(
                    at,
                    format!(
                        "chunk {at:#x}: size {} is below the smallest chunk malloc makes ({MIN_CHUNK} B)",
                        c.size
                    ),
                ));
            }
            if c.inuse > 1 {
                out.push(Finding::at(
                    at,
                    format!("chunk {at:#x}: inuse is {}, neither 0 nor 1", c.inuse),
                ));
            }
            if c.inuse != 0 && (c.next != 0 || c.prev != 0) {
                out.push(Finding::at(
                    at,
                    format!(
                        "chunk {at:#x} is in use but has links (next {:#x}, prev {:#x}); malloc clears them",
                        c.next, c.prev
                    ),
                ));
            }
        }
        let mut bin_of: FxHashMap<Addr, usize> = FxHashMap::default();
        for bin in 0..N_BINS {
            let mut prev = 0;
            let mut cur = self.seg_free_list[bin];
            let mut seen = FxHashSet::default();
            while cur != 0 {
                let Some(c) = by_addr.get(&cur) else {
                    out.push(Finding::at(
                        cur,
                        format!("bin {bin} links to {cur:#x}, which is not the start of a chunk"),
                    ));
                    break;
                };
                if !seen.insert(cur) {
                    out.push(Finding::at(
                        cur,
                        format!("bin {bin} loops: {cur:#x} comes round again"),
                    ));
                    break;
                }
                if let Some(other) = bin_of.insert(cur, bin) {
                    out.push(Finding::at(
                        cur,
                        format!("chunk {cur:#x} is on bin {other} and on bin {bin}"),
                    ));
                }
                if c.prev != prev {
                    out.push(Finding::at(
                        cur,
                        format!(
                            "chunk {cur:#x} on bin {bin}: prev is {:#x} but the chunk before it is {prev:#x}",
                            c.prev
                        ),
                    ));
                }
                if c.inuse != 0 {
                    out.push(Finding::at(
                        cur,
                        format!("chunk {cur:#x} is on bin {bin} but marked in use"),
                    ));
                }
                let want = get_bin(c.size.wrapping_sub(HEADER));
                if want != bin {
                    out.push(Finding::at(
                        cur,
                        format!(
                            "chunk {cur:#x} ({} B) belongs on bin {want} but is on bin {bin}",
                            c.size
                        ),
                    ));
                }
                prev = cur;
                cur = c.next;
            }
        }
        for c in &chunks {
            if c.inuse == 0 && !bin_of.contains_key(&c.at) {
                out.push(Finding::at(
                    c.at,
                    format!("free chunk {:#x} is on no bin, so it is lost", c.at),
                ));
            }
            if c.inuse != 0 && self.ledger.get(c.at + HEADER).is_none() {
                out.push(Finding::at(
                    c.at,
                    format!("chunk {:#x} is in use but was never handed out", c.at),
                ));
            }
        }
        // In address order: the ledger's own order depends on its table's history.
        let mut live: Vec<_> = self.ledger.iter().collect();
        live.sort_unstable_by_key(|&(ptr, _)| ptr);
        for (ptr, entry) in live {
            match by_addr.get(&ptr.wrapping_sub(HEADER)) {
                None => out.push(Finding::at(
                    ptr,
                    format!("block {ptr:#x} was handed out but no chunk starts 40 B below it"),
                )),
                Some(c) if c.inuse == 0 => out.push(Finding::at(
                    ptr,
                    format!("block {ptr:#x} was handed out and not freed, but its chunk is free"),
                )),
                Some(c) if c.size != entry.held => out.push(Finding::at(
                    ptr,
                    format!(
                        "block {ptr:#x} was handed out in a {} B chunk, which now says {} B",
                        entry.held, c.size
                    ),
                )),
                Some(_) => {}
            }
        }
        let footprint = self.ledger.stats().footprint;
        if footprint != self.memory.len() {
            out.push(Finding::general(format!(
                "{} B are mapped but the ledger's footprint is {footprint} B",
                self.memory.len()
            )));
        }
        out
    }

    fn stats(&self) -> Stats {
        self.ledger.stats()
    }

    fn memory(&self) -> &Memory {
        &self.memory
    }

    fn memory_mut(&mut self) -> &mut Memory {
        // Whoever writes may overwrite a header the bins run through.
        self.distrust();
        &mut self.memory
    }

    fn memory_slot(&mut self) -> &mut Memory {
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
            + self.regions.capacity() * size_of::<Addr>()
            + self.fit.index.as_ref().map_or(0, FitIndex::host_bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use proptest::prelude::*;

    use super::*;

    /// Each block's range and state.
    fn ranges(layout: &HeapLayout) -> Vec<(Range<Addr>, BlockState)> {
        layout
            .blocks
            .iter()
            .map(|b| (b.range.clone(), b.state))
            .collect()
    }

    fn heap() -> SegregatedFit {
        SegregatedFit::from_config(&HeapConfig::default()).unwrap()
    }

    fn heap_max(max: u64) -> SegregatedFit {
        SegregatedFit::from_config(&HeapConfig {
            max: Some(max),
            ..HeapConfig::default()
        })
        .unwrap()
    }

    fn malloc(h: &mut SegregatedFit, size: u64) -> Addr {
        h.allocate(size, 0, &mut Trail::off()).unwrap()
    }

    fn free(h: &mut SegregatedFit, ptr: Addr) {
        h.free(ptr, &mut Trail::off()).unwrap();
    }

    fn field(h: &SegregatedFit, ptr: Addr, f: F) -> u64 {
        h.memory().read_u64(ptr - HEADER + f.offset()).unwrap()
    }

    fn chunk_size(h: &SegregatedFit, ptr: Addr) -> u64 {
        field(h, ptr, F::Size)
    }

    /// The bins that hold anything.
    fn busy_bins(h: &SegregatedFit) -> Vec<usize> {
        (0..N_BINS).filter(|&b| h.seg_free_list[b] != 0).collect()
    }

    fn bin_nodes(h: &SegregatedFit, bin: usize) -> Vec<Addr> {
        let layout = h.inspect();
        assert_eq!(layout.free_lists[bin].problem, None);
        layout.free_lists[bin].nodes.clone()
    }

    fn assert_sound(h: &SegregatedFit) {
        let findings = h.validate();
        assert!(findings.is_empty(), "{findings:#?}");
        let layout = h.inspect();
        assert!(
            layout.check_tiling().is_empty(),
            "{:#?}",
            layout.check_tiling()
        );
        let covered: u64 = layout.blocks.iter().map(Block::size).sum();
        assert_eq!(covered, layout.extent.end - layout.extent.start);
    }

    /// The free chunk at the head of `bin`: its size, links and flag.
    fn head_of(h: &SegregatedFit, bin: usize) -> (u64, u64, u64, u64) {
        let chunk = h.seg_free_list[bin];
        assert_ne!(chunk, 0, "bin {bin} is empty");
        let p = chunk + HEADER;
        (
            chunk_size(h, p),
            field(h, p, F::Prev),
            field(h, p, F::Next),
            field(h, p, F::Inuse),
        )
    }

    // Golden: `tests/unit/malloc/coalesce_adjacent.s` (the copy of unstack's allocator in
    // bla-ce/herve, the version the issue quotes): malloc 16, 16, 32; free p2, free p1; p1's
    // chunk is then 32 + 2 * CHUNK_METADATA_LEN bytes.
    #[test]
    fn golden_coalesce_adjacent() {
        let mut h = heap();
        let p1 = malloc(&mut h, 16);
        let p2 = malloc(&mut h, 16);
        let p3 = malloc(&mut h, 32);
        free(&mut h, p2);
        free(&mut h, p1);
        assert_eq!(chunk_size(&h, p1), 32 + 2 * HEADER);
        assert_eq!(field(&h, p3, F::Inuse), 1);
        assert_sound(&h);
    }

    // unstack's own `tests/coalesce_adjacent.s` (3200eb2) frees in the other order: malloc 16,
    // 16; free p1, free p2; and expects 32 + 2 * 40 at p1. Against unstack's current
    // `free.inc` that cannot hold: p1's neighbour p2 is still in use when p1 is freed, and
    // nothing ever merges backwards, so p2 merges with the free rest of the page instead.
    #[test]
    fn unstack_coalesce_adjacent_order_shows_merging_is_forward_only() {
        let mut h = heap();
        let p1 = malloc(&mut h, 16);
        let p2 = malloc(&mut h, 16);
        free(&mut h, p1);
        free(&mut h, p2);
        assert_eq!(
            chunk_size(&h, p1),
            16 + HEADER,
            "no merge backwards into p1"
        );
        assert_eq!(
            chunk_size(&h, p2),
            PAGE_SIZE - (16 + HEADER),
            "p2 took the rest of the page"
        );
        assert_sound(&h);
    }

    // Golden: unstack `tests/get_bin.s`. unstack's copy expects bin 9 for 12000, which
    // needs N_BINS = 10; with unstack's N_BINS = 0xC it is bin 10, as herve's copy expects.
    #[test]
    fn golden_get_bin() {
        let cases = [
            (0, 0),
            (4, 0),
            (8, 0),
            (9, 0),
            (15, 0),
            (16, 1),
            (24, 1),
            (31, 1),
            (32, 2),
            (48, 2),
            (63, 2),
            (64, 3),
            (100, 3),
            (127, 3),
            (128, 4),
            (200, 4),
            (255, 4),
            (256, 5),
            (400, 5),
            (511, 5),
            (512, 6),
            (800, 6),
            (1023, 6),
            (1024, 7),
            (1500, 7),
            (2047, 7),
            (2048, 8),
            (3000, 8),
            (4096, 9),
            (5000, 9),
            (8000, 9),
            (12000, 10),
        ];
        for (data, bin) in cases {
            assert_eq!(get_bin(data), bin, "get_bin({data})");
        }
    }

    // Golden: unstack `tests/simple_allocation.s`.
    #[test]
    fn golden_simple_allocation() {
        let mut h = heap();
        let p1 = malloc(&mut h, 16);
        assert_eq!(chunk_size(&h, p1), 16 + HEADER);
        free(&mut h, p1);
        assert_sound(&h);
    }

    // Golden: unstack `tests/multiple_allocations.s`.
    #[test]
    fn golden_multiple_allocations() {
        let mut h = heap();
        let p1 = malloc(&mut h, 16);
        assert_eq!(chunk_size(&h, p1), 16 + HEADER);
        let p2 = malloc(&mut h, 32);
        assert_ne!(p2, p1);
        assert_eq!(chunk_size(&h, p2), 32 + HEADER);
        let p3 = malloc(&mut h, 64);
        assert_ne!(p3, p2);
        assert_eq!(chunk_size(&h, p3), 64 + HEADER);
        assert_sound(&h);
    }

    // Golden: unstack `tests/multiple_allocations_and_free.s`.
    #[test]
    fn golden_multiple_allocations_and_free() {
        let mut h = heap();
        let ps = [16, 32, 64].map(|n| malloc(&mut h, n));
        for p in ps {
            free(&mut h, p);
        }
        assert_eq!(h.stats().live_blocks, 0);
        assert_sound(&h);
    }

    // Golden: unstack `tests/split_chunks.s`.
    #[test]
    fn golden_split_chunks() {
        let mut h = heap();
        let p1 = malloc(&mut h, 128);
        free(&mut h, p1);
        let p2 = malloc(&mut h, 64);
        assert_eq!(p2, p1);
        assert_eq!(chunk_size(&h, p2), 64 + HEADER);
        assert_sound(&h);
    }

    // Golden: unstack `tests/free_list.s` (the bracketed comments are the test's own).
    #[test]
    fn golden_free_list() {
        let mut h = heap();
        // [ /56, 4040 ]
        let p1 = malloc(&mut h, 16);
        assert_eq!(busy_bins(&h), vec![8]);
        assert_eq!(head_of(&h, 8), (4040, 0, 0, 0));
        // [ /56, /72, 3968 ]
        let p2 = malloc(&mut h, 32);
        assert_eq!(busy_bins(&h), vec![8]);
        assert_eq!(head_of(&h, 8), (3968, 0, 0, 0));
        // [ /56, /72, /104, 3864 ]
        let _p3 = malloc(&mut h, 64);
        assert_eq!(busy_bins(&h), vec![8]);
        assert_eq!(head_of(&h, 8), (3864, 0, 0, 0));
        // [ 56, /72, /104, 3864 ]
        free(&mut h, p1);
        assert_eq!(busy_bins(&h), vec![1, 8]);
        assert_eq!(head_of(&h, 8), (3864, 0, 0, 0));
        assert_eq!(head_of(&h, 1), (56, 0, 0, 0));
        assert_eq!(field(&h, p1, F::Inuse), 0);
        // [ 56, 72, /104, 3864 ]
        free(&mut h, p2);
        assert_eq!(field(&h, p2, F::Inuse), 0);
        assert_eq!(busy_bins(&h), vec![1, 2, 8]);
        assert_eq!(head_of(&h, 1), (56, 0, 0, 0));
        assert_eq!(head_of(&h, 2), (72, 0, 0, 0));
        assert_eq!(head_of(&h, 8), (3864, 0, 0, 0));
        // [ /56, 72, /104, 3864 ]
        let p4 = malloc(&mut h, 16);
        assert_eq!(field(&h, p4, F::Inuse), 1);
        assert_eq!(chunk_size(&h, p4), 56);
        assert_eq!(p4, p1);
        assert_eq!(busy_bins(&h), vec![2, 8]);
        assert_eq!(head_of(&h, 2), (72, 0, 0, 0));
        assert_eq!(head_of(&h, 8), (3864, 0, 0, 0));
        // [ 128, /104, 3864 ]
        free(&mut h, p4);
        assert_eq!(field(&h, p4, F::Inuse), 0);
        assert_eq!(chunk_size(&h, p4), 128);
        assert_eq!(busy_bins(&h), vec![3, 8]);
        assert_eq!(head_of(&h, 3), (128, 0, 0, 0));
        assert_eq!(head_of(&h, 8), (3864, 0, 0, 0));
        // [ /128, /104, 3864 ]
        let p6 = malloc(&mut h, 88);
        assert_eq!(field(&h, p6, F::Inuse), 1);
        assert_eq!(chunk_size(&h, p6), 128);
        assert_eq!((p4, p6), (p1, p1));
        assert_eq!(busy_bins(&h), vec![8]);
        assert_eq!(head_of(&h, 8), (3864, 0, 0, 0));
        // [ /128, /104, /3864 ]
        malloc(&mut h, 3824);
        assert_eq!(busy_bins(&h), Vec::<usize>::new());
        // [ /128, /104, /3864, /4040 ] (plus a 56 B remainder the test's comment leaves out)
        let p7 = malloc(&mut h, 4000);
        free(&mut h, p7);
        malloc(&mut h, 400);
        assert_sound(&h);
    }

    // Golden: unstack `tests/multiple_mmap.s`.
    #[test]
    fn golden_multiple_mmap() {
        let mut h = heap();
        let p1 = malloc(&mut h, 2000);
        assert_eq!(chunk_size(&h, p1), 2000 + HEADER);
        free(&mut h, p1);
        let p2 = malloc(&mut h, 5000);
        assert_eq!(
            p2,
            h.regions[1] + HEADER,
            "5000 B fits nowhere: a second mapping"
        );
        assert_eq!(h.stats().footprint, PAGE_SIZE + 2 * PAGE_SIZE);
        assert_sound(&h);
    }

    // Golden: unstack `tests/use_chunk.s`, in the longer form of herve's copy (writes through
    // every block, then frees and reallocates).
    #[test]
    fn golden_use_chunk() {
        let mut h = heap();
        let p1 = malloc(&mut h, 1024);
        h.memory_mut().fill(p1, 1024, 0xFE).unwrap();
        free(&mut h, p1);
        let p2 = malloc(&mut h, 12);
        h.memory_mut().fill(p2, 12, 4).unwrap();
        let p3 = malloc(&mut h, 64);
        h.memory_mut().fill(p3, 64, 4).unwrap();
        free(&mut h, p3);
        malloc(&mut h, 24);
        assert_sound(&h);
    }

    // Golden: unstack `tests/use_last_chunk.s`.
    #[test]
    fn golden_use_last_chunk() {
        let mut h = heap();
        let p1 = malloc(&mut h, 12800);
        h.memory_mut().fill(p1, 12800, 0).unwrap();
        free(&mut h, p1);
        let p2 = malloc(&mut h, 12800);
        assert_eq!(p2, p1, "the merged chunk is found again in bin 10");
        free(&mut h, p2);
        assert_eq!(h.stats().footprint, 4 * PAGE_SIZE);
        assert_sound(&h);
    }

    // Ported from unstack `tests/first_fit.s` (b9d681e), written for the single free list the
    // allocator had before the bins. Its last step expected the 300 B request to reuse p3's
    // chunk; with LIFO bins the newest chunk in bin 8 (the rest of the third mapping) comes
    // first, so that is what the current algorithm hands out.
    #[test]
    fn ported_first_fit() {
        let mut h = heap();
        let p1 = malloc(&mut h, 10);
        free(&mut h, p1);
        let p2 = malloc(&mut h, 15);
        assert_eq!(p2, p1);
        let p3 = malloc(&mut h, 12);
        malloc(&mut h, 8000);
        free(&mut h, p3);
        let p5 = malloc(&mut h, 4149);
        assert_ne!(p5, p3);
        let p6 = malloc(&mut h, 300);
        let p5_chunk = (4149 + HEADER).next_multiple_of(8);
        assert_eq!(
            p6,
            p5 + p5_chunk,
            "the head of bin 8 is the newest free chunk"
        );
        assert_eq!(field(&h, p3, F::Inuse), 0);
        assert!(bin_nodes(&h, 8).contains(&(p3 - HEADER)));
        assert_sound(&h);
    }

    // Ported from unstack `tests/naive_allocator.s` (b9d681e). That version never split, so it
    // expected whole-page chunks (4096, 8192); the current one splits them down.
    #[test]
    fn ported_naive_allocator() {
        let mut h = heap();
        let p1 = malloc(&mut h, 10);
        assert_eq!((field(&h, p1, F::Inuse), field(&h, p1, F::Next)), (1, 0));
        let p2 = malloc(&mut h, 15);
        assert_eq!((field(&h, p2, F::Inuse), field(&h, p2, F::Next)), (1, 0));
        assert_eq!(chunk_size(&h, p2), (15 + HEADER).next_multiple_of(8));
        let p3 = malloc(&mut h, 8000);
        assert_eq!((field(&h, p3, F::Inuse), field(&h, p3, F::Next)), (1, 0));
        assert_eq!(chunk_size(&h, p3), 8000 + HEADER);
        assert_eq!(h.stats().footprint, 3 * PAGE_SIZE);
        free(&mut h, p2);
        assert_eq!(field(&h, p2, F::Inuse), 0);
        free(&mut h, p3);
        free(&mut h, p1);
        malloc(&mut h, 4000);
        assert_sound(&h);
    }

    #[test]
    fn bin_boundaries_are_powers_of_two_of_the_data_size() {
        for bin in 1..N_BINS {
            let lo = 1u64 << (bin + 3);
            assert_eq!(get_bin(lo - 1), bin - 1);
            assert_eq!(get_bin(lo), bin);
        }
        assert_eq!(get_bin(u64::MAX), N_BINS - 1);
        assert_eq!(bin_name(2), "bin 2 [32, 64) B");
        assert_eq!(bin_name(11), "bin 11 [16384, ∞) B");
    }

    #[test]
    fn search_starts_at_the_bin_of_the_rounded_data_size() {
        let mut h = heap();
        let a = malloc(&mut h, 8); // 48 B chunk, data 8 -> bin 0
        malloc(&mut h, 8);
        let b = malloc(&mut h, 16); // 56 B chunk, data 16 -> bin 1
        malloc(&mut h, 8);
        free(&mut h, a);
        free(&mut h, b);
        assert_eq!(busy_bins(&h), vec![0, 1, 8]);
        // 9 B rounds to 16 B of data: bin 1, never the 48 B chunk in bin 0.
        let mut t = Trail::on();
        assert_eq!(h.allocate(9, 0, &mut t), Ok(b));
        assert!(t.lines().iter().any(|l| l.contains("-> bin 1;")), "{t:?}");
        assert_eq!(malloc(&mut h, 8), a);
        assert_sound(&h);
    }

    #[test]
    fn an_empty_bin_sends_the_search_to_the_next_higher_one() {
        let mut h = heap();
        let a = malloc(&mut h, 100); // 144 B chunk, data 104 -> bin 3
        malloc(&mut h, 8);
        free(&mut h, a);
        // 16 B wants bin 1; bins 1 and 2 are empty, bin 3 holds a, which is split.
        let mut t = Trail::on();
        assert_eq!(h.allocate(16, 0, &mut t), Ok(a));
        assert!(
            t.lines().iter().any(|l| l.contains("bins 1..2: empty")),
            "{t:?}"
        );
        assert_eq!(chunk_size(&h, a), 56);
        let rest = a - HEADER + 56;
        assert_eq!(bin_nodes(&h, get_bin(144 - 56 - HEADER)), vec![rest]);
        assert_sound(&h);
    }

    #[test]
    fn first_fit_walks_a_bin_from_its_newest_chunk_and_skips_too_small_ones() {
        let mut h = heap();
        let x = malloc(&mut h, 24); // 64 B, bin 1
        malloc(&mut h, 8);
        let y = malloc(&mut h, 16); // 56 B, bin 1
        malloc(&mut h, 8);
        free(&mut h, x);
        free(&mut h, y);
        assert_eq!(
            bin_nodes(&h, 1),
            vec![y - HEADER, x - HEADER],
            "newest first"
        );
        let mut t = Trail::on();
        assert_eq!(h.allocate(24, 0, &mut t), Ok(x), "y is too small, x fits");
        assert!(t.lines().iter().any(|l| l.contains("too small")), "{t:?}");
        // A second 16 B request takes y, the head, even though the page's rest would fit too.
        assert_eq!(malloc(&mut h, 16), y);
        assert_sound(&h);
    }

    #[test]
    fn a_remainder_of_exactly_40_bytes_is_not_split_off_but_48_is() {
        // Chunk sizes are multiples of 8, so 40 vs 48 is the real boundary; the predicate
        // itself is strict: a 41 B remainder would be split.
        assert!(!can_split(56 + 40, 56));
        assert!(can_split(56 + 41, 56));

        let mut h = heap();
        let a = malloc(&mut h, 56); // 96 B chunk
        malloc(&mut h, 8);
        free(&mut h, a);
        let mut t = Trail::on();
        assert_eq!(h.allocate(16, 0, &mut t), Ok(a));
        assert_eq!(chunk_size(&h, a), 96, "56 B asked, 40 B left: whole chunk");
        assert_eq!(h.stats().held, 96 + 48);
        assert!(
            t.lines().iter().any(|l| l.contains("hand out the whole")),
            "{t:?}"
        );

        let b = malloc(&mut h, 64); // 104 B chunk
        malloc(&mut h, 8);
        free(&mut h, b);
        assert_eq!(malloc(&mut h, 16), b);
        assert_eq!(chunk_size(&h, b), 56, "48 B left: split");
        let rest = b - HEADER + 56;
        assert_eq!(bin_nodes(&h, 0), vec![rest]);
        assert_eq!(h.memory().read_u64(rest + 8).unwrap(), 48);
        assert_sound(&h);
    }

    #[test]
    fn each_miss_maps_whole_pages_after_the_last_mapping() {
        let mut h = heap_max(3 * PAGE_SIZE);
        assert_eq!(h.stats().footprint, 0);
        let a = malloc(&mut h, 5000);
        assert_eq!(a, DEFAULT_BASE + HEADER);
        assert_eq!(h.stats().footprint, 2 * PAGE_SIZE);
        assert_eq!(h.heap_start(), DEFAULT_BASE + 2 * PAGE_SIZE);
        // An exact page: no remainder, the whole mapping is the chunk.
        let b = malloc(&mut h, PAGE_SIZE - HEADER);
        assert_eq!(b, DEFAULT_BASE + 2 * PAGE_SIZE + HEADER);
        assert_eq!(chunk_size(&h, b), PAGE_SIZE);
        assert_eq!(h.stats().footprint, 3 * PAGE_SIZE);
        // Fits in the first mapping's rest (8192 - 5040 B): no growth.
        malloc(&mut h, 3000);
        assert_eq!(h.stats().footprint, 3 * PAGE_SIZE);
        // Beyond max: mmap fails, nothing changes but the `mmapd` counter (counted first).
        let err = h.allocate(4000, 0, &mut Trail::off()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::OutOfMemory);
        assert_eq!(h.stats().footprint, 3 * PAGE_SIZE);
        let mmapd = h
            .inspect()
            .native_stats
            .into_iter()
            .find(|s| s.name == "mmapd");
        assert_eq!(mmapd.map(|s| s.value), Some(4 * PAGE_SIZE));
        let markers: Vec<_> = h.inspect().markers.into_iter().map(|m| m.addr).collect();
        assert!(markers.contains(&(DEFAULT_BASE + 2 * PAGE_SIZE)));
        assert_sound(&h);
    }

    #[test]
    fn freeing_in_address_order_never_merges_backwards() {
        let mut h = heap();
        let [a, b, c, _d] = [16, 16, 16, 16].map(|n| malloc(&mut h, n));
        free(&mut h, b); // c is in use: b alone
        free(&mut h, c); // d is in use: c alone, and nothing looks back at b
        assert_eq!((chunk_size(&h, b), chunk_size(&h, c)), (56, 56));
        // Freeing a merges it with b only, once: c stays a separate free chunk.
        let mut t = Trail::on();
        h.free(a, &mut t).unwrap();
        assert_eq!(chunk_size(&h, a), 112);
        assert_eq!(chunk_size(&h, c), 56);
        assert!(t.lines().iter().any(|l| l.contains("merge")), "{t:?}");
        let free_blocks = h
            .inspect()
            .blocks
            .iter()
            .filter(|b| b.state == BlockState::Free)
            .count();
        assert_eq!(free_blocks, 3, "a+b, c, and the page's rest");
        assert_sound(&h);
    }

    #[test]
    fn the_last_chunk_of_a_mapping_merges_into_the_next_mapping() {
        // A model-specific consequence of contiguous mappings (see the module doc).
        let mut h = heap();
        let a = malloc(&mut h, PAGE_SIZE - HEADER);
        let b = malloc(&mut h, 16);
        free(&mut h, b);
        assert_eq!(chunk_size(&h, b), PAGE_SIZE);
        free(&mut h, a);
        assert_eq!(chunk_size(&h, a), 2 * PAGE_SIZE);
        assert_sound(&h);
    }

    #[test]
    fn a_double_free_is_ignored_but_logged() {
        let mut h = heap();
        let p = malloc(&mut h, 16);
        malloc(&mut h, 16);
        free(&mut h, p);
        let before = h.memory().clone();
        let mut t = Trail::on();
        assert_eq!(h.free(p, &mut t), Ok(()));
        assert!(t.lines().iter().any(|l| l.contains("double free")), "{t:?}");
        assert_eq!(h.memory(), &before, "no byte changes");
        assert_eq!(bin_nodes(&h, 1), vec![p - HEADER]);
        let freed = h
            .inspect()
            .native_stats
            .into_iter()
            .find(|s| s.name == "freed");
        assert_eq!(
            freed.map(|s| s.value),
            Some(2 * 56),
            "counted twice, as the original does"
        );
        assert_sound(&h);
    }

    #[test]
    fn realloc_moves_copies_and_frees() {
        let mut h = heap();
        let p = malloc(&mut h, 10); // 56 B chunk, 16 B of data room
        malloc(&mut h, 8);
        let data: Vec<u8> = (1..=16).collect();
        h.memory_mut().write(p, &data).unwrap();
        let mut t = Trail::on();
        let q = h.realloc(p, 100, &mut t).unwrap();
        assert_ne!(q, p, "never in place");
        assert_eq!(
            h.memory().slice(q, 16).unwrap(),
            &data[..],
            "all 16 B of the old chunk's room are copied, not just the 10 asked"
        );
        assert_eq!(field(&h, p, F::Inuse), 0);
        assert!(t.lines().iter().any(|l| l.contains("copy 16 B")), "{t:?}");
        // Shrinking copies only the new size. The 4 B request (a 48 B chunk) finds p's freed
        // 56 B chunk first and takes it whole, since only 8 B would be left.
        h.memory_mut().write(q, &[9; 8]).unwrap();
        let r = h.realloc(q, 4, &mut Trail::off()).unwrap();
        assert_eq!(r, p);
        assert_eq!(h.usable_size(r), Some(16));
        assert_eq!(h.memory().slice(r, 4).unwrap(), &[9; 4]);
        assert_eq!(
            h.memory().slice(r + 4, 4).unwrap(),
            &data[4..8],
            "only 4 B copied"
        );
        // NULL and zero-size forms.
        let s = h.realloc(0, 24, &mut Trail::off()).unwrap();
        assert_eq!(chunk_size(&h, s), 64);
        assert_eq!(h.realloc(s, 0, &mut Trail::off()), Ok(0));
        assert_eq!(field(&h, s, F::Inuse), 0);
        assert_eq!(h.stats().live_blocks, 2);
        assert_sound(&h);
    }

    #[test]
    fn realloc_whose_free_fails_leaks_the_new_chunk() {
        let mut h = heap();
        let p = malloc(&mut h, 16);
        h.memory_mut().write_u64(p - HEADER, 0xBAD).unwrap();
        let err = h.realloc(p, 32, &mut Trail::off()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupted);
        assert_eq!(h.stats().live_blocks, 2, "the new chunk stays allocated");
    }

    #[test]
    fn realloc_of_a_freed_pointer_returns_a_chunk_that_is_free_again() {
        let mut h = heap();
        let p = malloc(&mut h, 64);
        malloc(&mut h, 8);
        free(&mut h, p);
        let q = h.realloc(p, 32, &mut Trail::off()).unwrap();
        assert_eq!(q, p, "malloc finds the freed chunk first");
        assert_eq!(
            field(&h, q, F::Inuse),
            0,
            "and realloc's own free releases it"
        );
        assert_eq!(h.usable_size(q), None);
        assert_sound(&h);
    }

    #[test]
    fn calloc_zeroes_the_whole_chunk_payload() {
        let mut h = heap();
        let p = malloc(&mut h, 200); // 240 B chunk
        malloc(&mut h, 8);
        h.memory_mut().fill(p, 200, 0xAB).unwrap();
        free(&mut h, p);
        let q = h.calloc(10, 19, &mut Trail::off()).unwrap(); // 190 B -> 232 B chunk
        assert_eq!(q, p, "reuses the dirty chunk");
        let room = chunk_size(&h, q) - HEADER;
        assert!(room >= 190);
        assert!(h.memory().slice(q, room).unwrap().iter().all(|&b| b == 0));
        assert_eq!(h.stats().requested_live, 190 + 8);
        assert_eq!(h.calloc(0, 5, &mut Trail::off()), Ok(0));
        assert_eq!(h.calloc(5, 0, &mut Trail::off()), Ok(0));
        assert_sound(&h);
    }

    #[test]
    fn calloc_keeps_the_low_64_bits_of_an_overflowing_product() {
        let mut h = heap();
        let mut t = Trail::on();
        let p = h.calloc((1 << 63) + 1, 2, &mut t).unwrap();
        assert_eq!(h.stats().requested_live, 2);
        assert_eq!(chunk_size(&h, p), MIN_CHUNK);
        assert!(t.lines().iter().any(|l| l.contains("overflows")), "{t:?}");
    }

    #[test]
    fn zero_null_and_negative_arguments_follow_the_original() {
        let mut h = heap();
        let mut t = Trail::off();
        assert_eq!(h.allocate(0, 0, &mut t), Ok(0));
        assert_eq!(h.stats().footprint, 0, "malloc(0) maps nothing");
        assert_eq!(
            h.allocate(1 << 63, 0, &mut t).unwrap_err().kind,
            ErrorKind::TooLarge
        );
        assert_eq!(h.free(0, &mut t).unwrap_err().kind, ErrorKind::InvalidFree);
        assert_eq!(
            h.free(0x1234_5678, &mut t).unwrap_err().kind,
            ErrorKind::InvalidFree
        );
        let p = malloc(&mut h, 16);
        assert_eq!(
            h.free(p + 8, &mut t).unwrap_err().kind,
            ErrorKind::InvalidFree,
            "an interior pointer finds no magic"
        );
        assert_eq!(
            h.allocate(DEFAULT_MAX, 0, &mut t).unwrap_err().kind,
            ErrorKind::OutOfMemory
        );
        assert_sound(&h);
    }

    #[test]
    fn payloads_are_8_aligned_and_larger_alignments_are_unsupported() {
        let mut h = heap();
        let mut t = Trail::off();
        for (size, align) in [(3, 8), (17, 4), (1, 1), (40, 0)] {
            let p = h.allocate(size, align, &mut t).unwrap();
            assert_eq!(p % 8, 0);
        }
        for align in [16, 4096, 3] {
            assert_eq!(
                h.allocate(8, align, &mut t).unwrap_err().kind,
                ErrorKind::Unsupported
            );
        }
    }

    #[test]
    fn inspect_decodes_headers_and_bins() {
        let mut h = heap();
        let a = malloc(&mut h, 10);
        let b = malloc(&mut h, 30);
        free(&mut h, a);
        let layout = h.inspect();
        let base = DEFAULT_BASE;
        assert_eq!(
            ranges(&layout),
            vec![
                (base..base + 56, BlockState::Free),
                (base + 56..base + 56 + 72, BlockState::Live),
                (base + 128..base + PAGE_SIZE, BlockState::Free),
            ]
        );
        let live = &layout.blocks[1];
        assert_eq!(live.payload.start, b);
        assert_eq!(live.requested, Some(30));
        assert_eq!(live.class.as_deref(), Some("bin 2"));
        assert_eq!(live.header, b - HEADER..b);
        let names: Vec<_> = live.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["magic", "size", "inuse", "next", "prev"]);
        assert_eq!(live.fields[0].meaning, "magic ok");
        assert_eq!(live.fields[1].value, 72);
        assert_eq!(layout.free_lists.len(), N_BINS);
        assert_eq!(layout.free_lists[1].name, "bin 1 [16, 32) B");
        assert_eq!(layout.free_lists[1].nodes, vec![base]);
        assert_eq!(layout.stats.held, 72);
        assert_eq!(layout.stats.footprint, PAGE_SIZE);
        assert_sound(&h);
    }

    #[test]
    fn corrupted_headers_give_findings_and_errors_never_panics() {
        let mut h = heap();
        let a = malloc(&mut h, 16);
        let b = malloc(&mut h, 16);
        let c = malloc(&mut h, 100);
        malloc(&mut h, 8);
        free(&mut h, b);

        // Bad magic on a live chunk: validate names it, free refuses and changes nothing.
        let mut bad = h.clone();
        bad.memory_mut().write_u64(a - HEADER, 0xDEAD).unwrap();
        assert!(bad.validate().iter().any(|f| f.message.contains("magic")));
        assert_eq!(bad.inspect().blocks[0].fields[0].meaning, "BAD MAGIC");
        let before = bad.memory().clone();
        let err = bad.free(a, &mut Trail::off()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupted);
        assert_eq!(bad.memory(), &before);

        // A garbage size: the walk stops, the rest shows as unparsed, nothing panics.
        let mut bad = h.clone();
        bad.memory_mut()
            .write_u64(c - HEADER + 8, 0xFFFF_FFFF_FFFF_FFF0)
            .unwrap();
        assert!(!bad.validate().is_empty());
        let layout = bad.inspect();
        assert!(layout.check_tiling().is_empty());
        assert_eq!(
            layout.blocks.last().map(|b| b.state),
            Some(BlockState::Unused)
        );
        let _ = bad.free(c, &mut Trail::off());
        let _ = bad.allocate(5000, 0, &mut Trail::off());

        // A bin that loops: malloc reports it instead of spinning, inspect names the cycle.
        let mut bad = h.clone();
        bad.memory_mut()
            .write_u64(b - HEADER + 24, b - HEADER)
            .unwrap();
        let err = bad.allocate(20, 0, &mut Trail::off()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupted);
        assert!(err.message.contains("loops"), "{err}");
        let problem = bad.inspect().free_lists[1].problem.clone();
        assert!(problem.is_some_and(|p| p.contains("cycle")));
        assert!(bad.validate().iter().any(|f| f.message.contains("loops")));

        // A link out of the heap.
        let mut bad = h.clone();
        bad.memory_mut().write_u64(b - HEADER + 24, 0x10).unwrap();
        let problem = bad.inspect().free_lists[1].problem.clone();
        assert!(problem.is_some_and(|p| p.contains("outside")));
        assert_eq!(
            bad.allocate(20, 0, &mut Trail::off()).unwrap_err().kind,
            ErrorKind::Corrupted
        );

        // A free chunk whose flag says in use, and a live one whose flag says free.
        let mut bad = h.clone();
        bad.memory_mut().write_u64(b - HEADER + 16, 1).unwrap();
        bad.memory_mut().write_u64(a - HEADER + 16, 0).unwrap();
        let findings = bad.validate();
        assert!(findings.iter().any(|f| f.message.contains("marked in use")));
        assert!(findings.iter().any(|f| f.message.contains("on no bin")));
        assert_eq!(
            bad.free(a, &mut Trail::off()),
            Ok(()),
            "looks like a double free"
        );
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut h = heap();
            let mut t = Trail::on();
            let mut ptrs = Vec::new();
            for _ in 0..8 {
                ptrs.push(malloc(&mut h, next() % 600 + 1));
            }
            for _ in 0..4 {
                let len = h.memory().len();
                let at = DEFAULT_BASE + next() % len;
                let value = match next() % 4 {
                    0 => next(),
                    1 => DEFAULT_BASE + next() % len,
                    2 => next() % 128,
                    _ => 0,
                };
                let _ = h.memory_mut().write_u64(at & !7, value);
            }
            for &p in &ptrs {
                let _ = h.free(p, &mut t);
                let _ = h.allocate(next() % 300 + 1, 0, &mut t);
                let _ = h.realloc(p, next() % 300, &mut t);
                let _ = h.calloc(next() % 8, next() % 64, &mut t);
            }
            let _ = h.validate();
            assert!(h.inspect().check_tiling().is_empty());
        }
    }

    #[test]
    fn config_checks_the_base_and_the_limit() {
        let bad = |base, max| {
            SegregatedFit::from_config(&HeapConfig {
                base: Some(base),
                max: Some(max),
                ..HeapConfig::default()
            })
            .is_err()
        };
        assert!(bad(0, 1 << 20));
        assert!(bad(0x1234, 1 << 20));
        assert!(bad((1 << 63) - 0x1000, 1 << 20));
        assert!(!bad(0x1000, 1 << 20));
        let h = heap();
        assert_eq!(h.memory().base(), DEFAULT_BASE);
        assert_eq!(h.kind(), AllocatorKind::SegregatedFit);
    }

    /// One call of the differential test below.
    #[derive(Debug, Clone)]
    enum Call {
        Malloc(u64),
        Calloc(u64, u64),
        /// Frees the held pointer at this index (modulo how many are held).
        Free(usize),
        /// Frees a pointer freed before, again.
        FreeAgain(usize),
        Realloc(usize, u64),
        /// Reallocs a pointer freed before (unstack hands back a free chunk for it).
        ReallocFreed(usize, u64),
        /// Frees an address the model never handed out, this far into the heap.
        FreeWild(u64),
        /// The program writes these bytes this far into the heap.
        Write(u64, Vec<u8>),
    }

    /// How badly the program of the differential test behaves.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Program {
        /// Frees and reallocs only what it holds.
        Sound,
        /// Also frees and reallocs pointers it freed before (which unstack may take for
        /// chunks that are no longer there).
        Stale,
        /// Also frees wild pointers and writes over the heap.
        Wild,
    }

    fn call(program: Program) -> BoxedStrategy<Call> {
        let size = prop_oneof![
            6 => 1u64..200,
            3 => 200u64..5_000,
            1 => 5_000u64..40_000,
            1 => Just(0u64),
        ];
        let sound = prop_oneof![
            8 => size.clone().prop_map(Call::Malloc),
            1 => (0u64..20, 0u64..300).prop_map(|(n, s)| Call::Calloc(n, s)),
            8 => any::<usize>().prop_map(Call::Free),
            2 => (any::<usize>(), size.clone()).prop_map(|(i, s)| Call::Realloc(i, s)),
        ];
        let stale = prop_oneof![
            18 => sound.clone(),
            1 => any::<usize>().prop_map(Call::FreeAgain),
            1 => (any::<usize>(), size).prop_map(|(i, s)| Call::ReallocFreed(i, s)),
        ];
        match program {
            Program::Sound => sound.boxed(),
            Program::Stale => stale.boxed(),
            Program::Wild => prop_oneof![
                20 => stale,
                1 => (0u64..1 << 16).prop_map(Call::FreeWild),
                1 => (0u64..1 << 16, proptest::collection::vec(any::<u8>(), 1..48))
                    .prop_map(|(at, bytes)| Call::Write(at, bytes)),
            ]
            .boxed(),
        }
    }

    /// Applies `call` to `h`, with `held` and `freed` the program's pointers.
    fn perform(
        h: &mut SegregatedFit,
        call: &Call,
        held: &mut Vec<Addr>,
        freed: &mut Vec<Addr>,
        trail: &mut Trail,
    ) -> Result<Addr, AllocError> {
        let pick = |list: &Vec<Addr>, i: usize| (!list.is_empty()).then(|| list[i % list.len()]);
        let base = h.memory().base();
        let got = match call {
            Call::Malloc(size) => h.allocate(*size, 0, trail),
            Call::Calloc(n, size) => h.calloc(*n, *size, trail),
            Call::Free(i) => match pick(held, *i) {
                Some(p) => {
                    held.retain(|&q| q != p);
                    freed.push(p);
                    h.free(p, trail).map(|()| p)
                }
                None => Ok(0),
            },
            Call::FreeAgain(i) => match pick(freed, *i) {
                Some(p) => h.free(p, trail).map(|()| p),
                None => Ok(0),
            },
            Call::Realloc(i, size) => match pick(held, *i) {
                Some(p) => {
                    held.retain(|&q| q != p);
                    h.realloc(p, *size, trail)
                }
                None => Ok(0),
            },
            Call::ReallocFreed(i, size) => match pick(freed, *i) {
                Some(p) => h.realloc(p, *size, trail),
                None => Ok(0),
            },
            Call::FreeWild(at) => h.free(base + at, trail).map(|()| 0),
            Call::Write(at, bytes) => {
                let _ = h.memory_mut().write(base + at, bytes);
                Ok(0)
            }
        };
        if let Ok(p) = got
            && p != 0
            && matches!(
                call,
                Call::Malloc(_) | Call::Calloc(..) | Call::Realloc(..) | Call::ReallocFreed(..)
            )
        {
            held.push(p);
        }
        got
    }

    /// The index the model keeps, bin by bin, against one built afresh from the bytes.
    fn assert_index_is_exact(h: &mut SegregatedFit) {
        let Some(kept) = h.fit.index.take() else {
            return;
        };
        let fresh = h
            .index_bins()
            .expect("a trusted heap's bins are clean lists");
        for bin in 0..N_BINS {
            assert_eq!(kept.order(bin), fresh.order(bin), "bin {bin}");
        }
        h.fit.index = Some(kept);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The index changes nothing but speed: a model that uses it and one that walks every
        /// bin return the same for every call and leave the same bytes, however badly the
        /// program behaves; and while the model trusts its bins, the index kept up to date
        /// call by call equals one built afresh from the bytes.
        #[test]
        fn the_index_answers_as_the_walks_do(
            (program, calls) in prop_oneof![
                Just(Program::Sound),
                Just(Program::Stale),
                Just(Program::Wild)
            ]
            .prop_flat_map(|program| {
                (Just(program), proptest::collection::vec((any::<bool>(), call(program)), 1..400))
            }),
        ) {
            let mut indexed = heap_max(1 << 22);
            // Built at the first search instead of once walks have cost as much.
            indexed.fit.walked = u64::MAX;
            let mut walking = heap_max(1 << 22);
            walking.distrust();
            let (mut held_i, mut freed_i) = (Vec::new(), Vec::new());
            let (mut held_w, mut freed_w) = (Vec::new(), Vec::new());
            for (k, (explain, call)) in calls.iter().enumerate() {
                // Explained calls walk even with an index, and must keep it up to date.
                let mut trail = if *explain && k % 4 == 0 { Trail::on() } else { Trail::off() };
                let a = perform(&mut indexed, call, &mut held_i, &mut freed_i, &mut trail);
                let b = perform(&mut walking, call, &mut held_w, &mut freed_w, &mut Trail::off());
                prop_assert_eq!(&a, &b, "call {} {:?}", k, call);
                prop_assert_eq!(indexed.seg_free_list, walking.seg_free_list);
                prop_assert!(indexed.memory() == walking.memory(), "bytes differ after call {}", k);
                if indexed.trusted {
                    assert_index_is_exact(&mut indexed);
                }
                // A copy starts without the index and must build the same one.
                if k % 97 == 96 {
                    indexed = indexed.clone();
                    indexed.fit.walked = u64::MAX;
                }
            }
            prop_assert_eq!(indexed.inspect(), walking.inspect());
            prop_assert_eq!(indexed.validate(), walking.validate());
            if program == Program::Sound {
                prop_assert!(indexed.trusted, "nobody else wrote the heap, nothing was freed twice");
            }
        }
    }

    #[test]
    fn a_heap_written_only_by_the_model_builds_its_index_once_walking_costs_as_much() {
        let mut h = heap();
        let ptrs: Vec<Addr> = (1..200).map(|i| malloc(&mut h, i * 24)).collect();
        for &p in ptrs.iter().step_by(2) {
            free(&mut h, p);
        }
        // As after a timeline's restore: a copy, with no index and nothing walked yet.
        let mut h = h.clone();
        assert!(h.listed > 50 && h.fit.walked == 0 && h.fit.index.is_none());
        // Requests that walk past many small chunks, until the walks have visited as many
        // chunks as the bins hold.
        let mut rounds = 0;
        while h.fit.index.is_none() && rounds < 1_000 {
            let p = malloc(&mut h, 4_000);
            free(&mut h, p);
            rounds += 1;
        }
        assert!(rounds > 1, "built at once");
        assert!(h.trusted && h.fit.index.is_some());
        // A write by the program may break a link: from then on the bins are walked.
        h.memory_mut().write_u64(ptrs[0] - HEADER + 24, 0).unwrap();
        malloc(&mut h, 100);
        assert!(!h.trusted && h.fit.index.is_none());
    }
}

//! `dlmalloc`: Plywood's heap, which is Doug Lea's dlmalloc 2.8.6 underneath.
//!
//! Facts of the original this model keeps (64-bit build, `MALLOC_ALIGNMENT` 16, no `FOOTERS`):
//! chunks carry `prev_foot` and `head = size | PINUSE | CINUSE` in their first 16 bytes, the
//! payload starts at the "mem" pointer 16 bytes in, and an in-use chunk's last 8 payload bytes
//! overlap the next chunk's `prev_foot`. Requests become chunk sizes by adding 8 and rounding up to
//! 16 (at least 32). Free chunks below 256 B sit in 32 exact-size small bins (doubly linked
//! through `fd`/`bk` in the chunk's bytes, most recent first); larger ones in 32 tree bins, each
//! a bitwise trie of `child[2]`, `parent` and `index` stored in the free chunk, searched best
//! fit. `smallmap`/`treemap` mark the non-empty bins. The "designated victim" (dv) is the
//! remainder of the last split used for small requests; the top chunk borders the end of the
//! newest segment. Memory comes from the system in `granularity` units (64 KiB by default,
//! which is what Plywood's `Heap_DL` gets with `HAVE_MORECORE 0`, and what the `dlmalloc`
//! crate uses); contiguous regions merge into one segment, others get a segment record and
//! fenceposts. Requests of at least `mmap_threshold` (256 KiB) get their own mapping once the
//! heap exists. `free` coalesces both ways and gives top beyond the trim threshold (2 MiB) back.
//!
//! The `malloc_state` (Plywood keeps it in a static `Heap_DL`) lives in [`Memory`] at the
//! configured base, laid out as the C struct, so bins and their links are real addresses read
//! from bytes like every other link. The system's mappings go below it, top-down, as Linux's
//! `mmap` places them (see `system.rs`): each new region lands just below the previous one, so
//! a growing heap mostly takes dlmalloc's `prepend_alloc` path.
//!
//! Direct mapping is on by default, as in Plywood; [`Dlmalloc::with_mmap_threshold`] turns it
//! off, which is how the `dlmalloc` Rust crate (0.2.14) behaves: it has no direct-`mmap` path.
//!
//! Where the original would `abort()` (`CORRUPTION_ERROR_ACTION`) the model returns a
//! [`ErrorKind::Corrupted`] error and refuses further calls (it is poisoned); misuse that
//! dlmalloc's `ok_address`/`ok_inuse`/`ok_next`/`ok_pinuse` checks catch in `free`/`realloc`
//! (`USAGE_ERROR_ACTION`) is reported before anything is changed and leaves the heap usable.
//!
//! Where the model differs from the original, and why:
//! - `free` makes all of dlmalloc's checks before changing anything (the original checks the
//!   next chunk only after unlinking the previous one), so a refused free leaves no half-merge.
//! - A pointer the model never handed out (or already freed) is refused even when its bytes
//!   pass dlmalloc's checks; the original would go on and corrupt the heap. The message says so.
//! - The "system" is modelled (see `system.rs`): `mmap` places regions top-down below the
//!   `malloc_state` (highest free gap first, as Linux does in an address space of its own),
//!   `mremap` grows in place or moves, `HeapConfig.max` caps the bytes it holds. Where a real
//!   kernel puts mappings is outside dlmalloc and depends on the rest of the process; layouts
//!   and footprints depend on it.
//! - The `malloc_state` lies right above the mappings (it has to share the model's one linear
//!   memory with them), whereas Plywood's static `Heap_DL` lies in `.bss`, far below Linux's
//!   mmap area. So `ok_address` (`>= least_addr`) does not reject a corrupted link that points
//!   into the state, as it would in a real process; the back-pointer checks still catch it.
//! - `mparams.magic` is a constant (the original derives it from the time); it is unused without
//!   `FOOTERS`. `footprint_limit` stays 0: the system's limit plays that part.
//! - Plywood's `num_bytes_allocated` is reported as dlmalloc's `malloc_stats` "in use bytes"
//!   (footprint minus top and free chunks, so segment records and fenceposts count as used).

mod check;
mod inspect;
mod system;
#[cfg(test)]
mod tests;

use crate::allocator::{AllocError, Allocator, ErrorKind, Trail, bytes};
use crate::layered_map::LayeredMap;
use crate::layout::{Detail, Finding, HeapLayout, Ledger, Stats};
use crate::memory::Memory;
use crate::{Addr, AllocatorKind, ConfigError, HeapConfig, say};

use system::System;

/// Default address of the `malloc_state`; mappings are placed below it, top-down (like the
/// region below a Linux process's `mmap_base`).
pub const DEFAULT_BASE: Addr = 0x7f00_0000_0000;
/// How far below the base mappings may go (1 TiB).
const ADDRESS_SPAN: u64 = 1 << 40;
/// Default system granularity: 64 KiB (dlmalloc's default without contiguous `MORECORE`).
pub const DEFAULT_GRANULARITY: u64 = 64 << 10;
/// Default limit on bytes held from the system at once.
pub const DEFAULT_MAX: u64 = 1 << 30;
/// dlmalloc's `DEFAULT_MMAP_THRESHOLD`.
pub const DEFAULT_MMAP_THRESHOLD: u64 = 256 << 10;
/// dlmalloc's `DEFAULT_TRIM_THRESHOLD`.
pub const DEFAULT_TRIM_THRESHOLD: u64 = 2 << 20;
/// The system's page size.
pub const PAGE_SIZE: u64 = 4096;
const MAX_RELEASE_CHECK_RATE: u64 = 4095;

const SIZE_T: u64 = 8;
const MALLOC_ALIGNMENT: u64 = 16;
const CHUNK_ALIGN_MASK: u64 = MALLOC_ALIGNMENT - 1;
const CHUNK_OVERHEAD: u64 = SIZE_T;
const MMAP_CHUNK_OVERHEAD: u64 = 2 * SIZE_T;
const MMAP_FOOT_PAD: u64 = 4 * SIZE_T;
const MIN_CHUNK_SIZE: u64 = 32;
const MIN_REQUEST: u64 = MIN_CHUNK_SIZE - CHUNK_OVERHEAD - 1;
const MAX_SMALL_SIZE: u64 = MIN_LARGE_SIZE - 1;
const MAX_SMALL_REQUEST: u64 = MAX_SMALL_SIZE - CHUNK_ALIGN_MASK - CHUNK_OVERHEAD;
const MIN_LARGE_SIZE: u64 = 1 << TREEBIN_SHIFT;
/// `(-MIN_CHUNK_SIZE) << 2`: requests at or above this always fail.
const MAX_REQUEST: u64 = MIN_CHUNK_SIZE.wrapping_neg() << 2;
/// `pad_request(sizeof(struct malloc_segment))`.
const SEGMENT_CHUNK: u64 = 48;
/// Room kept after top: a segment record chunk plus a minimal chunk.
const TOP_FOOT_SIZE: u64 = SEGMENT_CHUNK + MIN_CHUNK_SIZE;
const SYS_ALLOC_PADDING: u64 = TOP_FOOT_SIZE + MALLOC_ALIGNMENT;

const PINUSE: u64 = 1;
const CINUSE: u64 = 2;
const INUSE: u64 = PINUSE | CINUSE;
const FLAG_BITS: u64 = 7;
const FENCEPOST_HEAD: u64 = INUSE | SIZE_T;

const NSMALLBINS: u32 = 32;
const NTREEBINS: u32 = 32;
const SMALLBIN_SHIFT: u32 = 3;
const TREEBIN_SHIFT: u32 = 8;

const USE_MMAP_BIT: u64 = 1;
const USE_NONCONTIGUOUS_BIT: u64 = 4;
const EXTERN_BIT: u64 = 8;
/// `mparams.magic` (time-based in the original; fixed here so runs repeat).
const MAGIC: u64 = 0x5858_5858;

/// Offsets of `struct malloc_state` (Plywood's `memory_dl::malloc_state`, 64-bit).
mod ms {
    pub const SMALLMAP: u64 = 0;
    pub const TREEMAP: u64 = 4;
    pub const DVSIZE: u64 = 8;
    pub const TOPSIZE: u64 = 16;
    pub const LEAST_ADDR: u64 = 24;
    pub const DV: u64 = 32;
    pub const TOP: u64 = 40;
    pub const TRIM_CHECK: u64 = 48;
    pub const RELEASE_CHECKS: u64 = 56;
    pub const MAGIC: u64 = 64;
    pub const SMALLBINS: u64 = 72;
    pub const TREEBINS: u64 = SMALLBINS + 66 * 8;
    pub const FOOTPRINT: u64 = TREEBINS + 32 * 8;
    pub const MAX_FOOTPRINT: u64 = FOOTPRINT + 8;
    pub const FOOTPRINT_LIMIT: u64 = FOOTPRINT + 16;
    pub const MFLAGS: u64 = FOOTPRINT + 24;
    pub const SEG: u64 = FOOTPRINT + 32;
    pub const SIZE: u64 = SEG + 48;
}

/// Offsets of `struct malloc_segment`.
mod sg {
    pub const BASE: u64 = 0;
    pub const SIZE: u64 = 8;
    pub const NEXT: u64 = 16;
    pub const SFLAGS: u64 = 24;
}

/// Most segments or list steps walked before a structure is declared cyclic.
const WALK_LIMIT: u64 = 1 << 22;

fn pad_request(req: u64) -> u64 {
    (req + CHUNK_OVERHEAD + CHUNK_ALIGN_MASK) & !CHUNK_ALIGN_MASK
}

fn request2size(req: u64) -> u64 {
    if req < MIN_REQUEST {
        MIN_CHUNK_SIZE
    } else {
        pad_request(req)
    }
}

fn align_offset(a: u64) -> u64 {
    a.wrapping_neg() & CHUNK_ALIGN_MASK
}

fn is_small(s: u64) -> bool {
    (s >> SMALLBIN_SHIFT) < u64::from(NSMALLBINS)
}

fn small_index(s: u64) -> u32 {
    (s >> SMALLBIN_SHIFT) as u32
}

fn small_index2size(i: u32) -> u64 {
    u64::from(i) << SMALLBIN_SHIFT
}

fn compute_tree_index(s: u64) -> u32 {
    let x = s >> TREEBIN_SHIFT;
    if x == 0 {
        0
    } else if x > 0xffff {
        NTREEBINS - 1
    } else {
        let k = 63 - x.leading_zeros();
        (k << 1) + ((s >> (k + TREEBIN_SHIFT - 1)) & 1) as u32
    }
}

fn leftshift_for_tree_index(i: u32) -> u32 {
    if i == NTREEBINS - 1 {
        0
    } else {
        63 - ((i >> 1) + TREEBIN_SHIFT - 2)
    }
}

fn minsize_for_tree_index(i: u32) -> u64 {
    (1u64 << ((i >> 1) + TREEBIN_SHIFT)) | (u64::from(i & 1) << ((i >> 1) + TREEBIN_SHIFT - 1))
}

fn left_bits(x: u32) -> u32 {
    (x << 1) | (x << 1).wrapping_neg()
}

fn least_bit(x: u32) -> u32 {
    x & x.wrapping_neg()
}

fn corrupt(message: String) -> AllocError {
    AllocError::new(ErrorKind::Corrupted, message)
}

/// The tunables dlmalloc keeps in `mparams`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Unit in which segments are obtained from the system.
    pub granularity: u64,
    /// Requests of at least this many bytes (chunk size) get their own mapping.
    pub mmap_threshold: u64,
    /// `free` trims top once it exceeds this.
    pub trim_threshold: u64,
}

/// Plywood's heap: dlmalloc 2.8.6 over a modelled `mmap`.
#[derive(Debug, Clone)]
pub struct Dlmalloc {
    mem: Memory,
    /// Address of the `malloc_state`.
    base: Addr,
    params: Params,
    sys: System,
    ledger: Ledger,
    /// Blocks freed and not handed out again, to tell a double free from a wild pointer.
    freed: LayeredMap<()>,
    poisoned: Option<String>,
}

type R<T> = Result<T, AllocError>;

impl Dlmalloc {
    /// A heap whose `malloc_state` is at `config.base` (default [`DEFAULT_BASE`], page aligned),
    /// getting memory in `config.granularity` units (default 64 KiB; a power of two of at least
    /// 4 KiB) from a system that holds at most `config.max` bytes at once (default 1 GiB) and
    /// maps them top-down below the base. `config.size` is ignored: dlmalloc asks the system
    /// only when it needs to. Chunks of at least [`DEFAULT_MMAP_THRESHOLD`] get their own
    /// mapping, as in Plywood (see [`Dlmalloc::with_mmap_threshold`]).
    pub fn from_config(config: &HeapConfig) -> Result<Self, ConfigError> {
        let kind = AllocatorKind::Dlmalloc;
        let base = config.base.unwrap_or(DEFAULT_BASE);
        let granularity = config.granularity.unwrap_or(DEFAULT_GRANULARITY);
        let max = config.max.unwrap_or(DEFAULT_MAX);
        if !base.is_multiple_of(PAGE_SIZE) {
            return Err(ConfigError::invalid(
                kind,
                format!("base {base:#x} is not page aligned ({PAGE_SIZE} B)"),
            ));
        }
        if !granularity.is_power_of_two() || !(PAGE_SIZE..=1 << 30).contains(&granularity) {
            return Err(ConfigError::invalid(
                kind,
                format!("granularity {granularity} is not a power of two between 4 KiB and 1 GiB"),
            ));
        }
        if max > ADDRESS_SPAN {
            return Err(ConfigError::invalid(kind, "max above 1 TiB"));
        }
        if base.checked_add(PAGE_SIZE).is_none() || base < max.saturating_add(PAGE_SIZE) {
            return Err(ConfigError::invalid(
                kind,
                format!(
                    "base {base:#x} leaves no room below it for {} of mappings",
                    bytes(max)
                ),
            ));
        }
        let floor = base.saturating_sub(ADDRESS_SPAN).max(PAGE_SIZE);
        let mut heap = Self {
            mem: Memory::new(base, PAGE_SIZE),
            base,
            params: Params {
                granularity,
                mmap_threshold: DEFAULT_MMAP_THRESHOLD,
                trim_threshold: DEFAULT_TRIM_THRESHOLD,
            },
            sys: System::new(floor, base, max, PAGE_SIZE),
            ledger: Ledger::default(),
            freed: LayeredMap::default(),
            poisoned: None,
        };
        // ensure_initialization(): the global state starts with mparams.default_mflags.
        heap.set_st(ms::MFLAGS, USE_MMAP_BIT | USE_NONCONTIGUOUS_BIT);
        Ok(heap)
    }

    /// `mallopt(M_MMAP_THRESHOLD, bytes)`: requests of at least `bytes` get their own mapping;
    /// `u64::MAX` turns direct mapping off.
    pub fn set_mmap_threshold(&mut self, bytes: u64) {
        self.params.mmap_threshold = bytes;
    }

    /// The same heap with direct mapping at `threshold`: `Some(bytes)` maps chunks of at least
    /// `bytes` on their own (Plywood: `Some(`[`DEFAULT_MMAP_THRESHOLD`]`)`, the default); `None`
    /// never does, like the `dlmalloc` Rust crate (0.2.14), whose large chunks come from the
    /// segments and stay there after `free` until top is trimmed.
    ///
    /// ```
    /// use heapscope_core::HeapConfig;
    /// use heapscope_core::allocators::dlmalloc::Dlmalloc;
    /// let like_the_crate = Dlmalloc::from_config(&HeapConfig::default())
    ///     .unwrap()
    ///     .with_mmap_threshold(None);
    /// assert_eq!(like_the_crate.params().mmap_threshold, u64::MAX);
    /// ```
    #[must_use]
    pub fn with_mmap_threshold(mut self, threshold: Option<u64>) -> Self {
        self.params.mmap_threshold = threshold.unwrap_or(u64::MAX);
        self
    }

    /// `mallopt(M_TRIM_THRESHOLD, bytes)`.
    pub fn set_trim_threshold(&mut self, bytes: u64) {
        self.params.trim_threshold = bytes;
    }

    /// The tunables in force.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Address of the `malloc_state`.
    pub fn state_addr(&self) -> Addr {
        self.base
    }

    /// The system's ceiling: mappings are placed top-down below this address, where the
    /// `malloc_state`'s page starts.
    pub fn system_ceiling(&self) -> Addr {
        self.sys.ceiling
    }

    /// Bytes the system currently has mapped for this heap (what a counting `mmap` reports).
    pub fn system_bytes(&self) -> u64 {
        self.sys.held
    }

    /// Most bytes the system ever had mapped at once.
    pub fn peak_system_bytes(&self) -> u64 {
        self.sys.peak
    }

    /// dlmalloc's `footprint` (bytes obtained from the system, as the state records it).
    pub fn footprint(&self) -> u64 {
        self.st(ms::FOOTPRINT)
    }

    /// dlmalloc's `max_footprint`.
    pub fn max_footprint(&self) -> u64 {
        self.st(ms::MAX_FOOTPRINT)
    }

    /// Why the heap refuses every call, if a corruption check failed.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    // ---- malloc_state fields (always inside memory, so reads cannot fail) ----

    fn st(&self, off: u64) -> u64 {
        self.mem.read_u64(self.base + off).unwrap_or(0)
    }

    fn set_st(&mut self, off: u64, v: u64) {
        let _ = self.mem.write_u64(self.base + off, v);
    }

    fn st32(&self, off: u64) -> u32 {
        self.mem.read_u32(self.base + off).unwrap_or(0)
    }

    fn set_st32(&mut self, off: u64, v: u32) {
        let _ = self.mem.write_u32(self.base + off, v);
    }

    fn smallmap(&self) -> u32 {
        self.st32(ms::SMALLMAP)
    }
    fn treemap(&self) -> u32 {
        self.st32(ms::TREEMAP)
    }
    fn dv(&self) -> Addr {
        self.st(ms::DV)
    }
    fn dvsize(&self) -> u64 {
        self.st(ms::DVSIZE)
    }
    fn top(&self) -> Addr {
        self.st(ms::TOP)
    }
    fn topsize(&self) -> u64 {
        self.st(ms::TOPSIZE)
    }
    fn least_addr(&self) -> Addr {
        self.st(ms::LEAST_ADDR)
    }
    fn set_dv(&mut self, p: Addr, size: u64) {
        self.set_st(ms::DV, p);
        self.set_st(ms::DVSIZE, size);
    }
    fn set_top(&mut self, p: Addr, size: u64) {
        self.set_st(ms::TOP, p);
        self.set_st(ms::TOPSIZE, size);
    }
    fn seg_head(&self) -> Addr {
        self.base + ms::SEG
    }
    fn smallbin_at(&self, i: u32) -> Addr {
        self.base + ms::SMALLBINS + 16 * u64::from(i)
    }
    fn treebin_at(&self, i: u32) -> Addr {
        self.base + ms::TREEBINS + 8 * u64::from(i)
    }
    fn use_mmap(&self) -> bool {
        self.st(ms::MFLAGS) & USE_MMAP_BIT != 0
    }
    fn add_footprint(&mut self, n: u64) {
        let fp = self.st(ms::FOOTPRINT).wrapping_add(n);
        self.set_st(ms::FOOTPRINT, fp);
        if fp > self.st(ms::MAX_FOOTPRINT) {
            self.set_st(ms::MAX_FOOTPRINT, fp);
        }
    }
    fn sub_footprint(&mut self, n: u64) {
        let fp = self.st(ms::FOOTPRINT).wrapping_sub(n);
        self.set_st(ms::FOOTPRINT, fp);
    }
    fn ok_address(&self, a: Addr) -> bool {
        a >= self.least_addr()
    }

    // ---- chunk bytes ----

    fn word(&self, a: Addr) -> R<u64> {
        self.mem
            .read_u64(a)
            .map_err(|e| corrupt(format!("reading a heap word: {e}")))
    }

    fn set_word(&mut self, a: Addr, v: u64) -> R<()> {
        self.mem
            .write_u64(a, v)
            .map_err(|e| corrupt(format!("writing a heap word: {e}")))
    }

    fn head(&self, p: Addr) -> R<u64> {
        self.word(p.wrapping_add(8))
    }
    fn set_head(&mut self, p: Addr, v: u64) -> R<()> {
        self.set_word(p.wrapping_add(8), v)
    }
    fn chunksize(&self, p: Addr) -> R<u64> {
        Ok(self.head(p)? & !FLAG_BITS)
    }
    fn fd(&self, p: Addr) -> R<Addr> {
        self.word(p.wrapping_add(16))
    }
    fn bk(&self, p: Addr) -> R<Addr> {
        self.word(p.wrapping_add(24))
    }
    fn set_fd(&mut self, p: Addr, v: Addr) -> R<()> {
        self.set_word(p.wrapping_add(16), v)
    }
    fn set_bk(&mut self, p: Addr, v: Addr) -> R<()> {
        self.set_word(p.wrapping_add(24), v)
    }
    fn child(&self, p: Addr, i: u64) -> R<Addr> {
        self.word(p.wrapping_add(32 + 8 * i))
    }
    fn parent(&self, p: Addr) -> R<Addr> {
        self.word(p.wrapping_add(48))
    }
    fn tindex(&self, p: Addr) -> R<u32> {
        self.mem
            .read_u32(p.wrapping_add(56))
            .map_err(|e| corrupt(format!("reading a tree index: {e}")))
    }

    fn set_inuse(&mut self, p: Addr, s: u64) -> R<()> {
        let h = self.head(p)?;
        self.set_head(p, (h & PINUSE) | s | CINUSE)?;
        let n = p.wrapping_add(s);
        let nh = self.head(n)?;
        self.set_head(n, nh | PINUSE)
    }
    fn set_inuse_and_pinuse(&mut self, p: Addr, s: u64) -> R<()> {
        self.set_head(p, s | PINUSE | CINUSE)?;
        let n = p.wrapping_add(s);
        let nh = self.head(n)?;
        self.set_head(n, nh | PINUSE)
    }
    fn set_size_and_pinuse_of_inuse_chunk(&mut self, p: Addr, s: u64) -> R<()> {
        self.set_head(p, s | PINUSE | CINUSE)
    }
    fn set_size_and_pinuse_of_free_chunk(&mut self, p: Addr, s: u64) -> R<()> {
        self.set_head(p, s | PINUSE)?;
        self.set_word(p.wrapping_add(s), s)
    }
    fn set_free_with_pinuse(&mut self, p: Addr, s: u64, n: Addr) -> R<()> {
        let nh = self.head(n)?;
        self.set_head(n, nh & !PINUSE)?;
        self.set_size_and_pinuse_of_free_chunk(p, s)
    }

    // ---- segments ----

    fn seg_base(&self, sp: Addr) -> R<Addr> {
        self.word(sp + sg::BASE)
    }
    fn seg_size(&self, sp: Addr) -> R<u64> {
        self.word(sp + sg::SIZE)
    }
    fn seg_next(&self, sp: Addr) -> R<Addr> {
        self.word(sp + sg::NEXT)
    }
    fn seg_flags(&self, sp: Addr) -> R<u64> {
        Ok(u64::from(self.mem.read_u32(sp + sg::SFLAGS).map_err(
            |e| corrupt(format!("reading a segment record: {e}")),
        )?))
    }

    /// The segment records, newest (`m->seg`) first: (record address, base, size, flags).
    fn segments(&self) -> R<Vec<(Addr, Addr, u64, u64)>> {
        let mut out = Vec::new();
        let mut sp = self.seg_head();
        while sp != 0 {
            if out.len() as u64 > WALK_LIMIT / 1024 {
                return Err(corrupt("the segment list does not end".to_owned()));
            }
            out.push((
                sp,
                self.seg_base(sp)?,
                self.seg_size(sp)?,
                self.seg_flags(sp)?,
            ));
            sp = self.seg_next(sp)?;
        }
        Ok(out)
    }

    /// `segment_holding(m, a)`: the record of the segment containing `a`.
    fn segment_holding(&self, a: Addr) -> R<Option<Addr>> {
        for (sp, b, s, _) in self.segments()? {
            if b <= a && a < b.wrapping_add(s) {
                return Ok(Some(sp));
            }
        }
        Ok(None)
    }

    /// `has_segment_link(m, ss)`: whether any segment record lies inside segment `ss`.
    fn has_segment_link(&self, ss: Addr) -> R<bool> {
        let b = self.seg_base(ss)?;
        let s = self.seg_size(ss)?;
        Ok(self
            .segments()?
            .iter()
            .any(|&(sp, ..)| b <= sp && sp < b.wrapping_add(s)))
    }

    // ---- bins ----

    fn insert_small_chunk(&mut self, p: Addr, s: u64, t: &mut Trail) -> R<()> {
        let i = small_index(s);
        let b = self.smallbin_at(i);
        let mut f = b;
        if self.smallmap() & (1 << i) == 0 {
            self.set_st32(ms::SMALLMAP, self.smallmap() | (1 << i));
        } else {
            let first = self.fd(b)?;
            if !self.ok_address(first) {
                return Err(self.corruption(format!(
                    "small bin {i}: first chunk {first:#x} is below the heap"
                )));
            }
            f = first;
        }
        self.set_fd(b, p)?;
        self.set_bk(f, p)?;
        self.set_fd(p, f)?;
        self.set_bk(p, b)?;
        say!(
            t,
            "put chunk {p:#x} ({}) at the front of small bin {i}",
            bytes(s)
        );
        Ok(())
    }

    fn unlink_small_chunk(&mut self, p: Addr, s: u64) -> R<()> {
        let f = self.fd(p)?;
        let b = self.bk(p)?;
        let i = small_index(s);
        let bin = self.smallbin_at(i);
        if !(f == bin || (self.ok_address(f) && self.bk(f)? == p)) {
            return Err(self.corruption(format!(
                "small bin {i}: chunk {p:#x} has fd {f:#x}, whose bk does not point back"
            )));
        }
        if b == f {
            self.set_st32(ms::SMALLMAP, self.smallmap() & !(1 << i));
        } else if b == bin || (self.ok_address(b) && self.fd(b)? == p) {
            self.set_bk(f, b)?;
            self.set_fd(b, f)?;
        } else {
            return Err(self.corruption(format!(
                "small bin {i}: chunk {p:#x} has bk {b:#x}, whose fd does not point back"
            )));
        }
        Ok(())
    }

    fn unlink_first_small_chunk(&mut self, b: Addr, p: Addr, i: u32) -> R<()> {
        let f = self.fd(p)?;
        if b == f {
            self.set_st32(ms::SMALLMAP, self.smallmap() & !(1 << i));
        } else if self.ok_address(f) && self.bk(f)? == p {
            self.set_bk(f, b)?;
            self.set_fd(b, f)?;
        } else {
            return Err(self.corruption(format!(
                "small bin {i}: first chunk {p:#x} has fd {f:#x}, whose bk does not point back"
            )));
        }
        Ok(())
    }

    fn insert_large_chunk(&mut self, x: Addr, s: u64, t: &mut Trail) -> R<()> {
        let i = compute_tree_index(s);
        let h = self.treebin_at(i);
        self.mem
            .write_u32(x.wrapping_add(56), i)
            .map_err(|e| corrupt(format!("writing a tree index: {e}")))?;
        self.set_word(x.wrapping_add(32), 0)?;
        self.set_word(x.wrapping_add(40), 0)?;
        if self.treemap() & (1 << i) == 0 {
            self.set_st32(ms::TREEMAP, self.treemap() | (1 << i));
            self.set_word(h, x)?;
            self.set_word(x.wrapping_add(48), h)?;
            self.set_fd(x, x)?;
            self.set_bk(x, x)?;
            say!(
                t,
                "chunk {x:#x} ({}) becomes the root of empty tree bin {i}",
                bytes(s)
            );
            return Ok(());
        }
        let mut node = self.word(h)?;
        let mut k = s << leftshift_for_tree_index(i);
        for _ in 0..WALK_LIMIT {
            if self.chunksize(node)? != s {
                let dir = (k >> 63) & 1;
                let c = node.wrapping_add(32 + 8 * dir);
                k <<= 1;
                let cv = self.word(c)?;
                if cv != 0 {
                    node = cv;
                } else if self.ok_address(c) {
                    self.set_word(c, x)?;
                    self.set_word(x.wrapping_add(48), node)?;
                    self.set_fd(x, x)?;
                    self.set_bk(x, x)?;
                    say!(
                        t,
                        "tree bin {i}: chunk {x:#x} ({}) hangs as child[{dir}] of {node:#x}",
                        bytes(s)
                    );
                    return Ok(());
                } else {
                    return Err(
                        self.corruption(format!("tree bin {i}: link {c:#x} below the heap"))
                    );
                }
            } else {
                let f = self.fd(node)?;
                if self.ok_address(node) && self.ok_address(f) {
                    self.set_fd(node, x)?;
                    self.set_bk(f, x)?;
                    self.set_fd(x, f)?;
                    self.set_bk(x, node)?;
                    self.set_word(x.wrapping_add(48), 0)?;
                    say!(
                        t,
                        "tree bin {i}: chunk {x:#x} joins the chain of same-size node {node:#x}"
                    );
                    return Ok(());
                }
                return Err(self.corruption(format!(
                    "tree bin {i}: node {node:#x} or its fd {f:#x} is below the heap"
                )));
            }
        }
        Err(self.corruption(format!("tree bin {i} does not end")))
    }

    fn unlink_large_chunk(&mut self, x: Addr) -> R<()> {
        let xp = self.parent(x)?;
        let mut r;
        if self.bk(x)? != x {
            let f = self.fd(x)?;
            r = self.bk(x)?;
            if self.ok_address(f) && self.bk(f)? == x && self.fd(r)? == x {
                self.set_bk(f, r)?;
                self.set_fd(r, f)?;
            } else {
                return Err(self.corruption(format!(
                    "tree chunk {x:#x}: its fd/bk neighbours do not point back"
                )));
            }
        } else {
            let mut rp = x.wrapping_add(40);
            r = self.word(rp)?;
            if r == 0 {
                rp = x.wrapping_add(32);
                r = self.word(rp)?;
            }
            if r != 0 {
                let mut steps = 0;
                loop {
                    let mut cp = r.wrapping_add(40);
                    if self.word(cp)? == 0 {
                        cp = r.wrapping_add(32);
                    }
                    let c = self.word(cp)?;
                    if c == 0 {
                        break;
                    }
                    rp = cp;
                    r = c;
                    steps += 1;
                    if steps > WALK_LIMIT {
                        return Err(self.corruption(format!("tree below {x:#x} does not end")));
                    }
                }
                if self.ok_address(rp) {
                    self.set_word(rp, 0)?;
                } else {
                    return Err(self.corruption(format!("tree link {rp:#x} below the heap")));
                }
            }
        }
        if xp != 0 {
            let idx = self.tindex(x)?;
            if idx >= NTREEBINS {
                return Err(self.corruption(format!("tree chunk {x:#x} has index {idx}")));
            }
            let h = self.treebin_at(idx);
            if x == self.word(h)? {
                self.set_word(h, r)?;
                if r == 0 {
                    self.set_st32(ms::TREEMAP, self.treemap() & !(1 << idx));
                }
            } else if self.ok_address(xp) {
                if self.child(xp, 0)? == x {
                    self.set_word(xp.wrapping_add(32), r)?;
                } else {
                    self.set_word(xp.wrapping_add(40), r)?;
                }
            } else {
                return Err(self.corruption(format!("tree parent {xp:#x} below the heap")));
            }
            if r != 0 {
                if !self.ok_address(r) {
                    return Err(self.corruption(format!("tree node {r:#x} below the heap")));
                }
                self.set_word(r.wrapping_add(48), xp)?;
                for dir in 0..2 {
                    let c = self.child(x, dir)?;
                    if c != 0 {
                        if !self.ok_address(c) {
                            return Err(
                                self.corruption(format!("tree child {c:#x} below the heap"))
                            );
                        }
                        self.set_word(r.wrapping_add(32 + 8 * dir), c)?;
                        self.set_word(c.wrapping_add(48), r)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn insert_chunk(&mut self, p: Addr, s: u64, t: &mut Trail) -> R<()> {
        if is_small(s) {
            self.insert_small_chunk(p, s, t)
        } else {
            self.insert_large_chunk(p, s, t)
        }
    }

    fn unlink_chunk(&mut self, p: Addr, s: u64) -> R<()> {
        if is_small(s) {
            self.unlink_small_chunk(p, s)
        } else {
            self.unlink_large_chunk(p)
        }
    }

    fn replace_dv(&mut self, p: Addr, s: u64, t: &mut Trail) -> R<()> {
        let dvs = self.dvsize();
        if dvs != 0 {
            let dv = self.dv();
            say!(t, "old dv {dv:#x} ({}) goes to its small bin", bytes(dvs));
            self.insert_small_chunk(dv, dvs, t)?;
        }
        self.set_dv(p, s);
        Ok(())
    }

    /// `CORRUPTION_ERROR_ACTION`: the original aborts; the model stops taking calls.
    fn corruption(&mut self, what: impl std::fmt::Display) -> AllocError {
        let message = format!("heap corrupted: {what} (dlmalloc would abort)");
        self.poisoned = Some(message.clone());
        corrupt(message)
    }

    // ---- malloc ----

    fn tmalloc_small(&mut self, nb: u64, t: &mut Trail) -> R<Addr> {
        let i = least_bit(self.treemap()).trailing_zeros();
        let mut v = self.word(self.treebin_at(i))?;
        let mut node = v;
        let mut rsize = self.chunksize(node)?.wrapping_sub(nb);
        for _ in 0..WALK_LIMIT {
            let l = self.child(node, 0)?;
            node = if l != 0 { l } else { self.child(node, 1)? };
            if node == 0 {
                break;
            }
            let trem = self.chunksize(node)?.wrapping_sub(nb);
            if trem < rsize {
                rsize = trem;
                v = node;
            }
        }
        if !self.ok_address(v) {
            return Err(self.corruption(format!("tree bin {i}: node {v:#x} below the heap")));
        }
        let r = v.wrapping_add(nb);
        if v >= r {
            return Err(self.corruption(format!("tree bin {i}: chunk {v:#x} has no size")));
        }
        say!(
            t,
            "smallest chunk in tree bin {i}: {v:#x} ({})",
            bytes(rsize.wrapping_add(nb))
        );
        self.unlink_large_chunk(v)?;
        if rsize < MIN_CHUNK_SIZE {
            self.set_inuse_and_pinuse(v, rsize.wrapping_add(nb))?;
        } else {
            self.set_size_and_pinuse_of_inuse_chunk(v, nb)?;
            self.set_size_and_pinuse_of_free_chunk(r, rsize)?;
            say!(
                t,
                "split: remainder {r:#x} ({}) becomes the dv",
                bytes(rsize)
            );
            self.replace_dv(r, rsize, t)?;
        }
        Ok(v.wrapping_add(16))
    }

    fn tmalloc_large(&mut self, nb: u64, t: &mut Trail) -> R<Option<Addr>> {
        let mut v = 0;
        let mut rsize = nb.wrapping_neg();
        let idx = compute_tree_index(nb);
        let mut node = self.word(self.treebin_at(idx))?;
        if node != 0 {
            let mut sizebits = nb << leftshift_for_tree_index(idx);
            let mut rst = 0;
            let mut steps = 0;
            loop {
                let trem = self.chunksize(node)?.wrapping_sub(nb);
                if trem < rsize {
                    v = node;
                    rsize = trem;
                    if rsize == 0 {
                        break;
                    }
                }
                let rt = self.child(node, 1)?;
                node = self.child(node, (sizebits >> 63) & 1)?;
                if rt != 0 && rt != node {
                    rst = rt;
                }
                if node == 0 {
                    node = rst;
                    break;
                }
                sizebits <<= 1;
                steps += 1;
                if steps > WALK_LIMIT {
                    return Err(self.corruption(format!("tree bin {idx} does not end")));
                }
            }
        }
        if node == 0 && v == 0 {
            let leftbits = left_bits(1 << idx) & self.treemap();
            if leftbits != 0 {
                let i = least_bit(leftbits).trailing_zeros();
                node = self.word(self.treebin_at(i))?;
            }
        }
        let mut steps = 0;
        while node != 0 {
            let trem = self.chunksize(node)?.wrapping_sub(nb);
            if trem < rsize {
                rsize = trem;
                v = node;
            }
            let l = self.child(node, 0)?;
            node = if l != 0 { l } else { self.child(node, 1)? };
            steps += 1;
            if steps > WALK_LIMIT {
                return Err(self.corruption("a tree bin does not end".to_owned()));
            }
        }
        // If dv is a better fit, let malloc use it.
        if v == 0 || rsize >= self.dvsize().wrapping_sub(nb) {
            return Ok(None);
        }
        if !self.ok_address(v) || v >= v.wrapping_add(nb) {
            return Err(self.corruption(format!("tree chunk {v:#x} is not a chunk")));
        }
        let r = v.wrapping_add(nb);
        say!(
            t,
            "best fit in the tree bins: {v:#x} ({})",
            bytes(rsize.wrapping_add(nb))
        );
        self.unlink_large_chunk(v)?;
        if rsize < MIN_CHUNK_SIZE {
            self.set_inuse_and_pinuse(v, rsize.wrapping_add(nb))?;
        } else {
            self.set_size_and_pinuse_of_inuse_chunk(v, nb)?;
            self.set_size_and_pinuse_of_free_chunk(r, rsize)?;
            say!(t, "split: remainder {r:#x} ({}) is binned", bytes(rsize));
            self.insert_chunk(r, rsize, t)?;
        }
        Ok(Some(v.wrapping_add(16)))
    }

    /// `dlmalloc(bytes)`: `Ok(None)` when the system refuses.
    fn internal_malloc(&mut self, req: u64, t: &mut Trail) -> R<Option<Addr>> {
        let nb;
        if req <= MAX_SMALL_REQUEST {
            nb = request2size(req);
            say!(
                t,
                "{} -> chunk of {} (+8 B head, rounded to 16, at least 32)",
                bytes(req),
                bytes(nb)
            );
            let mut idx = small_index(nb);
            let smallbits = self.smallmap() >> idx;
            if smallbits & 0x3 != 0 {
                idx += !smallbits & 1;
                let b = self.smallbin_at(idx);
                let p = self.fd(b)?;
                say!(t, "small bin {idx} has chunk {p:#x}: exact fit");
                self.unlink_first_small_chunk(b, p, idx)?;
                self.set_inuse_and_pinuse(p, small_index2size(idx))?;
                return Ok(Some(p.wrapping_add(16)));
            } else if nb > self.dvsize() {
                if smallbits != 0 {
                    let leftbits = (smallbits << idx) & left_bits(1 << idx);
                    let i = least_bit(leftbits).trailing_zeros();
                    let b = self.smallbin_at(i);
                    let p = self.fd(b)?;
                    say!(
                        t,
                        "small bin {idx} empty, dv too small; next non-empty small bin {i}: chunk {p:#x}"
                    );
                    self.unlink_first_small_chunk(b, p, i)?;
                    let rsize = small_index2size(i) - nb;
                    if rsize < MIN_CHUNK_SIZE {
                        self.set_inuse_and_pinuse(p, small_index2size(i))?;
                    } else {
                        self.set_size_and_pinuse_of_inuse_chunk(p, nb)?;
                        let r = p.wrapping_add(nb);
                        self.set_size_and_pinuse_of_free_chunk(r, rsize)?;
                        say!(
                            t,
                            "split: remainder {r:#x} ({}) becomes the dv",
                            bytes(rsize)
                        );
                        self.replace_dv(r, rsize, t)?;
                    }
                    return Ok(Some(p.wrapping_add(16)));
                } else if self.treemap() != 0 {
                    say!(
                        t,
                        "no small bin fits and dv is too small: try the tree bins"
                    );
                    return self.tmalloc_small(nb, t).map(Some);
                }
            }
        } else if req >= MAX_REQUEST {
            // dlmalloc sets nb to MAX_SIZE_T here so that sys_alloc fails.
            say!(t, "{} is at or above MAX_REQUEST: fail", bytes(req));
            return Ok(None);
        } else {
            nb = pad_request(req);
            say!(
                t,
                "{} -> chunk of {} (+8 B head, rounded to 16)",
                bytes(req),
                bytes(nb)
            );
            if self.treemap() != 0
                && let Some(mem) = self.tmalloc_large(nb, t)?
            {
                return Ok(Some(mem));
            }
        }

        let dvsize = self.dvsize();
        if nb <= dvsize {
            let rsize = dvsize - nb;
            let p = self.dv();
            if rsize >= MIN_CHUNK_SIZE {
                let r = p.wrapping_add(nb);
                self.set_dv(r, rsize);
                self.set_size_and_pinuse_of_free_chunk(r, rsize)?;
                self.set_size_and_pinuse_of_inuse_chunk(p, nb)?;
                say!(
                    t,
                    "split the dv {p:#x} ({}): the rest, {r:#x} ({}), stays dv",
                    bytes(dvsize),
                    bytes(rsize)
                );
            } else {
                self.set_dv(0, 0);
                self.set_inuse_and_pinuse(p, dvsize)?;
                say!(t, "use all of the dv {p:#x} ({})", bytes(dvsize));
            }
            return Ok(Some(p.wrapping_add(16)));
        }
        let topsize = self.topsize();
        if nb < topsize {
            let rsize = topsize - nb;
            let p = self.top();
            let r = p.wrapping_add(nb);
            self.set_top(r, rsize);
            self.set_head(r, rsize | PINUSE)?;
            self.set_size_and_pinuse_of_inuse_chunk(p, nb)?;
            say!(t, "split top {p:#x}: top is now {r:#x} ({})", bytes(rsize));
            return Ok(Some(p.wrapping_add(16)));
        }
        self.sys_alloc(nb, t)
    }

    fn mmap_alloc(&mut self, nb: u64, t: &mut Trail) -> R<Option<Addr>> {
        let Some(mmsize) = nb
            .checked_add(6 * SIZE_T + CHUNK_ALIGN_MASK)
            .and_then(|n| n.checked_next_multiple_of(PAGE_SIZE))
        else {
            return Ok(None);
        };
        let Some(mm) = self.sys.map(&mut self.mem, mmsize) else {
            say!(
                t,
                "mmap of {} refused by the system (holds {} of {})",
                bytes(mmsize),
                bytes(self.sys.held),
                bytes(self.sys.limit)
            );
            return Ok(None);
        };
        let offset = align_offset(mm + 16);
        let psize = mmsize - offset - MMAP_FOOT_PAD;
        let p = mm + offset;
        self.set_word(p, offset)?;
        self.set_head(p, psize)?;
        self.set_head(p + psize, FENCEPOST_HEAD)?;
        self.set_head(p + psize + SIZE_T, 0)?;
        if self.least_addr() == 0 || mm < self.least_addr() {
            self.set_st(ms::LEAST_ADDR, mm);
        }
        self.add_footprint(mmsize);
        say!(
            t,
            "{} >= mmap threshold {}: own mapping of {} at {mm:#x}",
            bytes(nb),
            bytes(self.params.mmap_threshold),
            bytes(mmsize)
        );
        Ok(Some(p.wrapping_add(16)))
    }

    fn init_top(&mut self, p: Addr, psize: u64) -> R<()> {
        let offset = align_offset(p.wrapping_add(16));
        let p = p.wrapping_add(offset);
        let psize = psize.wrapping_sub(offset);
        self.set_top(p, psize);
        self.set_head(p, psize | PINUSE)?;
        // The fake trailing chunk holding the overhead space.
        self.set_head(p.wrapping_add(psize), TOP_FOOT_SIZE)?;
        self.set_st(ms::TRIM_CHECK, self.params.trim_threshold);
        Ok(())
    }

    fn init_bins(&mut self) -> R<()> {
        for i in 0..NSMALLBINS {
            let b = self.smallbin_at(i);
            self.set_fd(b, b)?;
            self.set_bk(b, b)?;
        }
        Ok(())
    }

    fn sys_alloc(&mut self, nb: u64, t: &mut Trail) -> R<Option<Addr>> {
        if self.use_mmap()
            && nb >= self.params.mmap_threshold
            && self.topsize() != 0
            && let Some(mem) = self.mmap_alloc(nb, t)?
        {
            return Ok(Some(mem));
        }
        let g = self.params.granularity;
        let Some(asize) = nb
            .checked_add(SYS_ALLOC_PADDING)
            .and_then(|n| n.checked_next_multiple_of(g))
        else {
            return Ok(None);
        };
        say!(
            t,
            "no free chunk fits: ask the system for {} ({} + 96 B, rounded to {})",
            bytes(asize),
            bytes(nb),
            bytes(g)
        );
        let Some(tbase) = self.sys.map(&mut self.mem, asize) else {
            say!(
                t,
                "out of memory: the system refuses {} (holds {} of {})",
                bytes(asize),
                bytes(self.sys.held),
                bytes(self.sys.limit)
            );
            return Ok(None);
        };
        let tsize = asize;
        let mmap_flag = USE_MMAP_BIT;
        self.add_footprint(tsize);

        if self.top() == 0 {
            say!(
                t,
                "first segment [{tbase:#x}, {:#x}): set up the bins and top",
                tbase + tsize
            );
            if self.least_addr() == 0 || tbase < self.least_addr() {
                self.set_st(ms::LEAST_ADDR, tbase);
            }
            let head = self.seg_head();
            self.set_word(head + sg::BASE, tbase)?;
            self.set_word(head + sg::SIZE, tsize)?;
            self.set_word(head + sg::NEXT, 0)?;
            self.set_word(head + sg::SFLAGS, mmap_flag)?;
            self.set_st(ms::MAGIC, MAGIC);
            self.set_st(ms::RELEASE_CHECKS, MAX_RELEASE_CHECK_RATE);
            self.init_bins()?;
            self.init_top(tbase, tsize - TOP_FOOT_SIZE)?;
        } else {
            let segs = self.segments()?;
            let top = self.top();
            let append = segs
                .iter()
                .find(|&&(_, b, s, _)| tbase == b.wrapping_add(s))
                .copied();
            match append {
                Some((sp, b, s, f))
                    if f & EXTERN_BIT == 0
                        && f & USE_MMAP_BIT == mmap_flag
                        && b <= top
                        && top < b.wrapping_add(s) =>
                {
                    say!(
                        t,
                        "new region at {tbase:#x} follows the segment holding top: grow it and top"
                    );
                    self.set_word(sp + sg::SIZE, s.wrapping_add(tsize))?;
                    let topsize = self.topsize();
                    self.init_top(top, topsize.wrapping_add(tsize))?;
                }
                _ => {
                    if tbase < self.least_addr() {
                        self.set_st(ms::LEAST_ADDR, tbase);
                    }
                    let prepend = segs
                        .iter()
                        .find(|&&(_, b, _, _)| b == tbase.wrapping_add(tsize))
                        .copied();
                    match prepend {
                        Some((sp, oldbase, s, f))
                            if f & EXTERN_BIT == 0 && f & USE_MMAP_BIT == mmap_flag =>
                        {
                            say!(
                                t,
                                "new region at {tbase:#x} ends where segment {oldbase:#x} starts: prepend"
                            );
                            self.set_word(sp + sg::BASE, tbase)?;
                            self.set_word(sp + sg::SIZE, s.wrapping_add(tsize))?;
                            return self.prepend_alloc(tbase, oldbase, nb, t).map(Some);
                        }
                        _ => {
                            say!(
                                t,
                                "new region at {tbase:#x} is not next to top: add a segment"
                            );
                            self.add_segment(tbase, tsize, mmap_flag, t)?;
                        }
                    }
                }
            }
        }

        let topsize = self.topsize();
        if nb < topsize {
            let rsize = topsize - nb;
            let p = self.top();
            let r = p.wrapping_add(nb);
            self.set_top(r, rsize);
            self.set_head(r, rsize | PINUSE)?;
            self.set_size_and_pinuse_of_inuse_chunk(p, nb)?;
            say!(t, "split top {p:#x}: top is now {r:#x} ({})", bytes(rsize));
            return Ok(Some(p.wrapping_add(16)));
        }
        Ok(None)
    }

    fn prepend_alloc(&mut self, newbase: Addr, oldbase: Addr, nb: u64, t: &mut Trail) -> R<Addr> {
        let p = newbase + align_offset(newbase + 16);
        let mut oldfirst = oldbase.wrapping_add(align_offset(oldbase.wrapping_add(16)));
        let psize = oldfirst.wrapping_sub(p);
        let q = p + nb;
        let mut qsize = psize.wrapping_sub(nb);
        self.set_size_and_pinuse_of_inuse_chunk(p, nb)?;
        if oldfirst == self.top() {
            let tsize = self.topsize().wrapping_add(qsize);
            self.set_top(q, tsize);
            self.set_head(q, tsize | PINUSE)?;
        } else if oldfirst == self.dv() {
            let dsize = self.dvsize().wrapping_add(qsize);
            self.set_dv(q, dsize);
            self.set_size_and_pinuse_of_free_chunk(q, dsize)?;
        } else {
            if self.head(oldfirst)? & INUSE == PINUSE {
                let nsize = self.chunksize(oldfirst)?;
                self.unlink_chunk(oldfirst, nsize)?;
                oldfirst = oldfirst.wrapping_add(nsize);
                qsize = qsize.wrapping_add(nsize);
            }
            self.set_free_with_pinuse(q, qsize, oldfirst)?;
            self.insert_chunk(q, qsize, t)?;
        }
        Ok(p.wrapping_add(16))
    }

    fn add_segment(&mut self, tbase: Addr, tsize: u64, mmapped: u64, t: &mut Trail) -> R<()> {
        let old_top = self.top();
        let Some(oldsp) = self.segment_holding(old_top)? else {
            return Err(self.corruption(format!("top {old_top:#x} is in no segment")));
        };
        let old_end = self.seg_base(oldsp)?.wrapping_add(self.seg_size(oldsp)?);
        let rawsp = old_end.wrapping_sub(SEGMENT_CHUNK + 4 * SIZE_T + CHUNK_ALIGN_MASK);
        let asp = rawsp.wrapping_add(align_offset(rawsp.wrapping_add(16)));
        let csp = if asp < old_top.wrapping_add(MIN_CHUNK_SIZE) {
            old_top
        } else {
            asp
        };
        let ss = csp.wrapping_add(16);
        let mut p = csp.wrapping_add(SEGMENT_CHUNK);

        self.init_top(tbase, tsize - TOP_FOOT_SIZE)?;

        self.set_size_and_pinuse_of_inuse_chunk(csp, SEGMENT_CHUNK)?;
        let head = self.seg_head();
        for off in [sg::BASE, sg::SIZE, sg::NEXT, sg::SFLAGS] {
            let v = self.word(head + off)?;
            self.set_word(ss.wrapping_add(off), v)?;
        }
        self.set_word(head + sg::BASE, tbase)?;
        self.set_word(head + sg::SIZE, tsize)?;
        self.set_word(head + sg::SFLAGS, mmapped)?;
        self.set_word(head + sg::NEXT, ss)?;

        loop {
            let nextp = p.wrapping_add(SIZE_T);
            self.set_head(p, FENCEPOST_HEAD)?;
            if nextp.wrapping_add(SIZE_T) < old_end {
                p = nextp;
            } else {
                break;
            }
        }
        say!(
            t,
            "old segment ends with a segment record at {csp:#x} and fenceposts up to {old_end:#x}"
        );
        if csp != old_top {
            let q = old_top;
            let psize = csp.wrapping_sub(old_top);
            self.set_free_with_pinuse(q, psize, csp)?;
            say!(
                t,
                "the rest of the old top, {q:#x} ({}), is binned",
                bytes(psize)
            );
            self.insert_chunk(q, psize, t)?;
        }
        Ok(())
    }

    // ---- free ----

    /// The checks `dlfree` makes before touching anything, all done up front.
    /// Returns (chunk, size, next chunk).
    fn free_checks(&self, mem: Addr, what: &str) -> R<(Addr, u64, Addr)> {
        let usage = |kind, msg: String| AllocError::new(kind, format!("{what}({mem:#x}): {msg}"));
        let p = mem.wrapping_sub(16);
        let live = self.ledger.get(mem).is_some();
        // Only a refused free asks: a lookup saved on every other.
        let not_live_kind = |h: Option<u64>| match h {
            _ if self.freed.contains_key(mem) => ErrorKind::DoubleFree,
            Some(h) if h & INUSE == PINUSE && mem.is_multiple_of(MALLOC_ALIGNMENT) => {
                ErrorKind::DoubleFree
            }
            _ => ErrorKind::InvalidFree,
        };
        let bad = |msg: String, h: Option<u64>| {
            if live {
                corrupt(format!("{what}({mem:#x}): {msg}"))
            } else {
                usage(not_live_kind(h), msg)
            }
        };
        if self.top() == 0 || !self.ok_address(p) || !self.sys.is_mapped(p, 16) {
            return Err(usage(
                ErrorKind::InvalidFree,
                "not a pointer into this heap's mappings (or below least_addr)".to_owned(),
            ));
        }
        let head = self.head(p).ok();
        let Some(h) = head else {
            return Err(usage(
                ErrorKind::InvalidFree,
                "outside the heap's memory".to_owned(),
            ));
        };
        if h & INUSE == PINUSE {
            return Err(bad(
                format!("chunk {p:#x} is not in use (ok_inuse fails: CINUSE clear)"),
                head,
            ));
        }
        let psize = h & !FLAG_BITS;
        let next = p.wrapping_add(psize);
        if h & INUSE == 0 {
            // A directly mapped chunk: prev_foot is the offset into its mapping.
            let off = self.word(p).unwrap_or(u64::MAX);
            let len = psize.wrapping_add(off).wrapping_add(MMAP_FOOT_PAD);
            let start = p.wrapping_sub(off);
            let in_segment = self.segment_holding(p).ok().flatten().is_some();
            if in_segment || !self.sys.is_mapped(start, len) || psize == 0 {
                return Err(bad(
                    format!(
                        "chunk {p:#x} claims to be mmapped, but [{start:#x}, +{len}) is no mapping"
                    ),
                    head,
                ));
            }
        } else {
            if h & PINUSE == 0 {
                let prevsize = self.word(p).unwrap_or(0);
                let prev = p.wrapping_sub(prevsize);
                if !self.ok_address(prev) || prev >= p || self.head(prev).is_err() {
                    return Err(bad(
                        format!(
                            "previous chunk {prev:#x} (prev_foot {prevsize}) is outside the heap"
                        ),
                        head,
                    ));
                }
            }
            if next <= p {
                return Err(bad(
                    format!("chunk {p:#x} has size {psize} (ok_next fails)"),
                    head,
                ));
            }
            match self.head(next) {
                Ok(nh) if nh & PINUSE != 0 => {}
                Ok(_) => {
                    return Err(bad(
                        format!(
                            "next chunk {next:#x} says its previous chunk is free (ok_pinuse fails)"
                        ),
                        head,
                    ));
                }
                Err(_) => {
                    return Err(bad(
                        format!("next chunk {next:#x} is outside the heap's memory"),
                        head,
                    ));
                }
            }
        }
        if !live {
            // dlmalloc's checks pass, but this is no block the model handed out (an interior or
            // stale pointer whose bytes happen to look like a chunk). The original would go on and
            // wreck the heap; the model refuses.
            return Err(usage(
                not_live_kind(None),
                "not a block this heap handed out (dlmalloc's checks would not catch it)"
                    .to_owned(),
            ));
        }
        Ok((p, psize, next))
    }

    fn internal_free(&mut self, mem: Addr, t: &mut Trail) -> R<()> {
        let mut p = mem - 16;
        let h = self.head(p)?;
        let mut psize = h & !FLAG_BITS;
        let next = p.wrapping_add(psize);
        say!(t, "chunk {p:#x} ({})", bytes(psize));
        if h & PINUSE == 0 {
            let prevsize = self.word(p)?;
            if h & INUSE == 0 {
                let total = psize.wrapping_add(prevsize).wrapping_add(MMAP_FOOT_PAD);
                if self.sys.unmap(p.wrapping_sub(prevsize), total) {
                    self.sub_footprint(total);
                    say!(
                        t,
                        "directly mapped: munmap {} at {:#x}",
                        bytes(total),
                        p.wrapping_sub(prevsize)
                    );
                }
                return Ok(());
            }
            let prev = p.wrapping_sub(prevsize);
            psize = psize.wrapping_add(prevsize);
            p = prev;
            if !self.ok_address(prev) {
                return Err(self.corruption(format!("previous chunk {prev:#x} below the heap")));
            }
            if p != self.dv() {
                say!(t, "previous chunk {prev:#x} is free: unlink it and merge");
                self.unlink_chunk(p, prevsize)?;
            } else if self.head(next)? & INUSE == INUSE {
                say!(
                    t,
                    "previous chunk is the dv: merge, dv is now {p:#x} ({})",
                    bytes(psize)
                );
                self.set_st(ms::DVSIZE, psize);
                self.set_free_with_pinuse(p, psize, next)?;
                return Ok(());
            }
        }
        let nh = self.head(next)?;
        if nh & CINUSE == 0 {
            if next == self.top() {
                let tsize = self.topsize().wrapping_add(psize);
                self.set_top(p, tsize);
                self.set_head(p, tsize | PINUSE)?;
                if p == self.dv() {
                    self.set_dv(0, 0);
                }
                say!(
                    t,
                    "next chunk is top: merge, top is now {p:#x} ({})",
                    bytes(tsize)
                );
                if tsize > self.st(ms::TRIM_CHECK) {
                    say!(
                        t,
                        "top is above the trim threshold {}: trim",
                        bytes(self.st(ms::TRIM_CHECK))
                    );
                    self.sys_trim(0, t)?;
                }
                return Ok(());
            } else if next == self.dv() {
                let dsize = self.dvsize().wrapping_add(psize);
                self.set_dv(p, dsize);
                self.set_size_and_pinuse_of_free_chunk(p, dsize)?;
                say!(
                    t,
                    "next chunk is the dv: merge, dv is now {p:#x} ({})",
                    bytes(dsize)
                );
                return Ok(());
            } else {
                let nsize = nh & !FLAG_BITS;
                psize = psize.wrapping_add(nsize);
                say!(t, "next chunk {next:#x} is free: unlink it and merge");
                self.unlink_chunk(next, nsize)?;
                self.set_size_and_pinuse_of_free_chunk(p, psize)?;
                if p == self.dv() {
                    self.set_st(ms::DVSIZE, psize);
                    return Ok(());
                }
            }
        } else {
            self.set_free_with_pinuse(p, psize, next)?;
        }
        if is_small(psize) {
            self.insert_small_chunk(p, psize, t)?;
        } else {
            self.insert_large_chunk(p, psize, t)?;
            let rc = self.st(ms::RELEASE_CHECKS).wrapping_sub(1);
            self.set_st(ms::RELEASE_CHECKS, rc);
            if rc == 0 {
                say!(
                    t,
                    "every {MAX_RELEASE_CHECK_RATE} large frees: look for empty segments"
                );
                self.release_unused_segments(t)?;
            }
        }
        Ok(())
    }

    fn dispose_chunk(&mut self, mut p: Addr, mut psize: u64, t: &mut Trail) -> R<()> {
        let next = p.wrapping_add(psize);
        let h = self.head(p)?;
        if h & PINUSE == 0 {
            let prevsize = self.word(p)?;
            if h & INUSE == 0 {
                let total = psize.wrapping_add(prevsize).wrapping_add(MMAP_FOOT_PAD);
                if self.sys.unmap(p.wrapping_sub(prevsize), total) {
                    self.sub_footprint(total);
                }
                return Ok(());
            }
            let prev = p.wrapping_sub(prevsize);
            psize = psize.wrapping_add(prevsize);
            p = prev;
            if !self.ok_address(prev) {
                return Err(self.corruption(format!("previous chunk {prev:#x} below the heap")));
            }
            if p != self.dv() {
                self.unlink_chunk(p, prevsize)?;
            } else if self.head(next)? & INUSE == INUSE {
                self.set_st(ms::DVSIZE, psize);
                self.set_free_with_pinuse(p, psize, next)?;
                return Ok(());
            }
        }
        if !self.ok_address(next) {
            return Err(self.corruption(format!("next chunk {next:#x} below the heap")));
        }
        let nh = self.head(next)?;
        if nh & CINUSE == 0 {
            if next == self.top() {
                let tsize = self.topsize().wrapping_add(psize);
                self.set_top(p, tsize);
                self.set_head(p, tsize | PINUSE)?;
                if p == self.dv() {
                    self.set_dv(0, 0);
                }
                say!(t, "give {p:#x} back to top (now {})", bytes(tsize));
                return Ok(());
            } else if next == self.dv() {
                let dsize = self.dvsize().wrapping_add(psize);
                self.set_dv(p, dsize);
                self.set_size_and_pinuse_of_free_chunk(p, dsize)?;
                say!(t, "give {p:#x} to the dv (now {})", bytes(dsize));
                return Ok(());
            } else {
                let nsize = nh & !FLAG_BITS;
                psize = psize.wrapping_add(nsize);
                self.unlink_chunk(next, nsize)?;
                self.set_size_and_pinuse_of_free_chunk(p, psize)?;
                if p == self.dv() {
                    self.set_st(ms::DVSIZE, psize);
                    return Ok(());
                }
            }
        } else {
            self.set_free_with_pinuse(p, psize, next)?;
        }
        self.insert_chunk(p, psize, t)
    }

    fn sys_trim(&mut self, mut pad: u64, t: &mut Trail) -> R<bool> {
        let mut released = 0;
        if pad < MAX_REQUEST && self.top() != 0 {
            pad += TOP_FOOT_SIZE;
            let topsize = self.topsize();
            if topsize > pad {
                let unit = self.params.granularity;
                let extra = ((topsize - pad).div_ceil(unit) - 1) * unit;
                let top = self.top();
                let Some(sp) = self.segment_holding(top)? else {
                    return Err(self.corruption(format!("top {top:#x} is in no segment")));
                };
                let flags = self.seg_flags(sp)?;
                let (sbase, ssize) = (self.seg_base(sp)?, self.seg_size(sp)?);
                if flags & EXTERN_BIT == 0
                    && flags & USE_MMAP_BIT != 0
                    && ssize >= extra
                    && extra > 0
                    && !self.has_segment_link(sp)?
                {
                    let newsize = ssize - extra;
                    if self
                        .sys
                        .remap(&mut self.mem, sbase, ssize, newsize, false)
                        .is_some()
                    {
                        released = extra;
                    }
                }
                if released != 0 {
                    self.set_word(sp + sg::SIZE, ssize - released)?;
                    self.sub_footprint(released);
                    self.init_top(top, topsize - released)?;
                    say!(
                        t,
                        "trim: unmap the last {} of segment {sbase:#x}; top is now {}",
                        bytes(released),
                        bytes(self.topsize())
                    );
                }
            }
            released += self.release_unused_segments(t)?;
            if released == 0 && self.topsize() > self.st(ms::TRIM_CHECK) {
                self.set_st(ms::TRIM_CHECK, u64::MAX);
            }
        }
        Ok(released != 0)
    }

    fn release_unused_segments(&mut self, t: &mut Trail) -> R<u64> {
        let mut released = 0;
        let mut nsegs = 0;
        let mut pred = self.seg_head();
        let mut sp = self.seg_next(pred)?;
        while sp != 0 {
            let base = self.seg_base(sp)?;
            let size = self.seg_size(sp)?;
            let next = self.seg_next(sp)?;
            let flags = self.seg_flags(sp)?;
            nsegs += 1;
            if nsegs > WALK_LIMIT {
                return Err(self.corruption("the segment list does not end".to_owned()));
            }
            if flags & USE_MMAP_BIT != 0 && flags & EXTERN_BIT == 0 {
                let p = base.wrapping_add(align_offset(base.wrapping_add(16)));
                let h = self.head(p)?;
                let psize = h & !FLAG_BITS;
                if h & INUSE == PINUSE
                    && p.wrapping_add(psize) >= base.wrapping_add(size).wrapping_sub(TOP_FOOT_SIZE)
                {
                    if p == self.dv() {
                        self.set_dv(0, 0);
                    } else {
                        self.unlink_large_chunk(p)?;
                    }
                    if self.sys.unmap(base, size) {
                        released += size;
                        self.sub_footprint(size);
                        say!(
                            t,
                            "segment {base:#x} ({}) is all free: unmap it",
                            bytes(size)
                        );
                        sp = pred;
                        self.set_word(sp + sg::NEXT, next)?;
                    } else {
                        self.insert_large_chunk(p, psize, t)?;
                    }
                }
            }
            pred = sp;
            sp = next;
        }
        self.set_st(ms::RELEASE_CHECKS, nsegs.max(MAX_RELEASE_CHECK_RATE));
        Ok(released)
    }

    // ---- realloc / memalign ----

    fn mmap_resize(&mut self, oldp: Addr, nb: u64, t: &mut Trail) -> R<Option<Addr>> {
        let oldsize = self.chunksize(oldp)?;
        if is_small(nb) {
            return Ok(None);
        }
        if oldsize >= nb + SIZE_T && oldsize - nb <= self.params.granularity.saturating_mul(2) {
            say!(t, "mmapped chunk is big enough and not too big: keep it");
            return Ok(Some(oldp));
        }
        let offset = self.word(oldp)?;
        let oldmmsize = oldsize.wrapping_add(offset).wrapping_add(MMAP_FOOT_PAD);
        let Some(newmmsize) = nb
            .checked_add(6 * SIZE_T + CHUNK_ALIGN_MASK)
            .and_then(|n| n.checked_next_multiple_of(PAGE_SIZE))
        else {
            return Ok(None);
        };
        let Some(cp) = self.sys.remap(
            &mut self.mem,
            oldp.wrapping_sub(offset),
            oldmmsize,
            newmmsize,
            true,
        ) else {
            return Ok(None);
        };
        let newp = cp.wrapping_add(offset);
        let psize = newmmsize.wrapping_sub(offset).wrapping_sub(MMAP_FOOT_PAD);
        self.set_head(newp, psize)?;
        self.set_head(newp.wrapping_add(psize), FENCEPOST_HEAD)?;
        self.set_head(newp.wrapping_add(psize).wrapping_add(SIZE_T), 0)?;
        if cp < self.least_addr() {
            self.set_st(ms::LEAST_ADDR, cp);
        }
        self.add_footprint(newmmsize.wrapping_sub(oldmmsize));
        say!(
            t,
            "mremap {} -> {}: chunk now at {newp:#x}",
            bytes(oldmmsize),
            bytes(newmmsize)
        );
        Ok(Some(newp))
    }

    fn try_realloc_chunk(&mut self, p: Addr, nb: u64, t: &mut Trail) -> R<Option<Addr>> {
        let h = self.head(p)?;
        let oldsize = h & !FLAG_BITS;
        let next = p.wrapping_add(oldsize);
        if h & INUSE == 0 {
            return self.mmap_resize(p, nb, t);
        }
        if oldsize >= nb {
            let rsize = oldsize - nb;
            if rsize >= MIN_CHUNK_SIZE {
                let r = p.wrapping_add(nb);
                self.set_inuse(p, nb)?;
                self.set_inuse(r, rsize)?;
                say!(t, "shrink in place: free the last {}", bytes(rsize));
                self.dispose_chunk(r, rsize, t)?;
            } else {
                say!(t, "already big enough: keep the chunk as it is");
            }
            return Ok(Some(p));
        }
        if next == self.top() {
            let topsize = self.topsize();
            if oldsize.wrapping_add(topsize) > nb {
                let newsize = oldsize.wrapping_add(topsize);
                let newtopsize = newsize - nb;
                let newtop = p.wrapping_add(nb);
                self.set_inuse(p, nb)?;
                self.set_head(newtop, newtopsize | PINUSE)?;
                self.set_top(newtop, newtopsize);
                say!(
                    t,
                    "grow in place into top: top is now {newtop:#x} ({})",
                    bytes(newtopsize)
                );
                return Ok(Some(p));
            }
        } else if next == self.dv() {
            let dvs = self.dvsize();
            if oldsize.wrapping_add(dvs) >= nb {
                let dsize = oldsize.wrapping_add(dvs).wrapping_sub(nb);
                if dsize >= MIN_CHUNK_SIZE {
                    let r = p.wrapping_add(nb);
                    let n = r.wrapping_add(dsize);
                    self.set_inuse(p, nb)?;
                    self.set_size_and_pinuse_of_free_chunk(r, dsize)?;
                    let nh = self.head(n)?;
                    self.set_head(n, nh & !PINUSE)?;
                    self.set_dv(r, dsize);
                } else {
                    self.set_inuse(p, oldsize.wrapping_add(dvs))?;
                    self.set_dv(0, 0);
                }
                say!(t, "grow in place into the dv");
                return Ok(Some(p));
            }
        } else {
            let nh = self.head(next)?;
            if nh & CINUSE == 0 {
                let nextsize = nh & !FLAG_BITS;
                if oldsize.wrapping_add(nextsize) >= nb {
                    let rsize = oldsize.wrapping_add(nextsize).wrapping_sub(nb);
                    self.unlink_chunk(next, nextsize)?;
                    say!(t, "grow in place into the free chunk {next:#x}");
                    if rsize < MIN_CHUNK_SIZE {
                        self.set_inuse(p, oldsize.wrapping_add(nextsize))?;
                    } else {
                        let r = p.wrapping_add(nb);
                        self.set_inuse(p, nb)?;
                        self.set_inuse(r, rsize)?;
                        self.dispose_chunk(r, rsize, t)?;
                    }
                    return Ok(Some(p));
                }
            }
        }
        Ok(None)
    }

    fn internal_memalign(&mut self, align: u64, req: u64, t: &mut Trail) -> R<Option<Addr>> {
        let mut alignment = align.max(MIN_CHUNK_SIZE);
        if !alignment.is_power_of_two() {
            let mut a = MALLOC_ALIGNMENT << 1;
            while a < alignment {
                a <<= 1;
            }
            alignment = a;
        }
        let nb = request2size(req);
        let full = nb + alignment + MIN_CHUNK_SIZE - CHUNK_OVERHEAD;
        say!(
            t,
            "align {alignment}: allocate {} (chunk {} + alignment + 24 B) and trim it",
            bytes(full),
            bytes(nb)
        );
        let Some(mem) = self.internal_malloc(full, t)? else {
            return Ok(None);
        };
        let mut p = mem.wrapping_sub(16);
        if mem & (alignment - 1) != 0 {
            let br = (mem.wrapping_add(alignment - 1) & alignment.wrapping_neg()).wrapping_sub(16);
            let pos = if br.wrapping_sub(p) >= MIN_CHUNK_SIZE {
                br
            } else {
                br + alignment
            };
            let newp = pos;
            let leadsize = pos.wrapping_sub(p);
            let h = self.head(p)?;
            let newsize = (h & !FLAG_BITS).wrapping_sub(leadsize);
            if h & INUSE == 0 {
                let pf = self.word(p)?;
                self.set_word(newp, pf.wrapping_add(leadsize))?;
                self.set_head(newp, newsize)?;
            } else {
                self.set_inuse(newp, newsize)?;
                self.set_inuse(p, leadsize)?;
                say!(t, "give back the leading {} at {p:#x}", bytes(leadsize));
                self.dispose_chunk(p, leadsize, t)?;
            }
            p = newp;
        }
        let h = self.head(p)?;
        if h & INUSE != 0 {
            let size = h & !FLAG_BITS;
            if size > nb + MIN_CHUNK_SIZE {
                let rem = size - nb;
                let r = p.wrapping_add(nb);
                self.set_inuse(p, nb)?;
                self.set_inuse(r, rem)?;
                say!(t, "give back the trailing {} at {r:#x}", bytes(rem));
                self.dispose_chunk(r, rem, t)?;
            }
        }
        Ok(Some(p.wrapping_add(16)))
    }

    // ---- bookkeeping around the calls ----

    /// Errors found in the middle of an operation leave the heap half-changed: the original
    /// aborts there, so the model stops taking calls.
    fn guard<T>(&mut self, r: R<T>) -> R<T> {
        if let Err(e) = &r
            && e.kind == ErrorKind::Corrupted
            && self.poisoned.is_none()
        {
            self.poisoned = Some(e.message.clone());
        }
        r
    }

    fn refuse_if_poisoned(&self) -> R<()> {
        match &self.poisoned {
            Some(why) => Err(AllocError::new(
                ErrorKind::Poisoned,
                format!("heap refuses calls after an earlier error: {why}"),
            )),
            None => Ok(()),
        }
    }

    /// Bytes the chunk at `mem` holds, its mapping included when directly mapped.
    fn held_by(&self, mem: Addr) -> u64 {
        let p = mem.wrapping_sub(16);
        match self.head(p) {
            Ok(h) if h & INUSE == 0 => (h & !FLAG_BITS)
                .saturating_add(self.word(p).unwrap_or(0))
                .saturating_add(MMAP_FOOT_PAD),
            Ok(h) => h & !FLAG_BITS,
            Err(_) => 0,
        }
    }

    fn record_alloc(&mut self, mem: Addr, requested: u64) {
        self.freed.remove(mem);
        let held = self.held_by(mem);
        self.ledger.on_alloc(mem, requested, held);
        self.ledger.set_footprint(self.sys.held);
    }

    fn out_of_memory(&self, req: u64, t: &mut Trail) -> AllocError {
        say!(
            t,
            "out of memory: {} cannot be served (system holds {} of {})",
            bytes(req),
            bytes(self.sys.held),
            bytes(self.sys.limit)
        );
        AllocError::new(
            ErrorKind::OutOfMemory,
            format!(
                "out of memory: {req} B requested, the system refused more than its {} B",
                self.sys.limit
            ),
        )
    }

    fn too_large(req: u64) -> AllocError {
        AllocError::new(
            ErrorKind::TooLarge,
            format!("{req} B is at or above dlmalloc's MAX_REQUEST"),
        )
    }
}

impl Allocator for Dlmalloc {
    fn kind(&self) -> AllocatorKind {
        AllocatorKind::Dlmalloc
    }

    fn allocate(&mut self, size: u64, align: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        self.refuse_if_poisoned()?;
        let mem = if align > MALLOC_ALIGNMENT {
            if size >= MAX_REQUEST.wrapping_sub(align.max(MIN_CHUNK_SIZE)) || align > 1 << 40 {
                return Err(Self::too_large(size));
            }
            let r = self.internal_memalign(align, size, trail);
            self.guard(r)?
        } else {
            if size >= MAX_REQUEST {
                return Err(Self::too_large(size));
            }
            let r = self.internal_malloc(size, trail);
            self.guard(r)?
        };
        let Some(mem) = mem else {
            return Err(self.out_of_memory(size, trail));
        };
        self.record_alloc(mem, size);
        say!(trail, "return {mem:#x}");
        Ok(mem)
    }

    fn free(&mut self, ptr: Addr, trail: &mut Trail) -> Result<(), AllocError> {
        self.refuse_if_poisoned()?;
        if ptr == 0 {
            say!(trail, "free(NULL): nothing to do");
            return Ok(());
        }
        if let Err(e) = self.free_checks(ptr, "free") {
            say!(trail, "{}", e.message);
            return Err(e);
        }
        let r = self.internal_free(ptr, trail);
        self.guard(r)?;
        self.ledger.on_free(ptr);
        self.freed.insert(ptr, ());
        self.ledger.set_footprint(self.sys.held);
        Ok(())
    }

    fn realloc(&mut self, ptr: Addr, size: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        self.refuse_if_poisoned()?;
        if ptr == 0 {
            say!(trail, "realloc(NULL, n) is malloc(n)");
            return self.allocate(size, 0, trail);
        }
        if size >= MAX_REQUEST {
            return Err(Self::too_large(size));
        }
        let (p, ..) = match self.free_checks(ptr, "realloc") {
            Ok(c) => c,
            Err(e) => {
                say!(trail, "{}", e.message);
                return Err(e);
            }
        };
        let nb = request2size(size);
        say!(trail, "{} -> chunk of {}", bytes(size), bytes(nb));
        let r = self.try_realloc_chunk(p, nb, trail);
        if let Some(newp) = self.guard(r)? {
            let mem = newp + 16;
            self.ledger.on_free(ptr);
            self.freed.insert(ptr, ());
            self.record_alloc(mem, size);
            say!(trail, "return {mem:#x}");
            return Ok(mem);
        }
        say!(trail, "cannot resize in place: malloc, copy, free");
        let r = self.internal_malloc(size, trail);
        let Some(mem) = self.guard(r)? else {
            return Err(self.out_of_memory(size, trail));
        };
        let h = self.head(p)?;
        let overhead = if h & INUSE == 0 {
            MMAP_CHUNK_OVERHEAD
        } else {
            CHUNK_OVERHEAD
        };
        let oc = (h & !FLAG_BITS).saturating_sub(overhead);
        let n = oc.min(size);
        self.mem
            .copy_within(ptr, mem, n)
            .map_err(|e| corrupt(format!("copying the old block: {e}")))?;
        say!(trail, "copy {} {ptr:#x} -> {mem:#x}", bytes(n));
        let r = self.internal_free(ptr, trail);
        self.guard(r)?;
        self.ledger.on_free(ptr);
        self.freed.insert(ptr, ());
        self.record_alloc(mem, size);
        say!(trail, "return {mem:#x}");
        Ok(mem)
    }

    fn calloc(&mut self, count: u64, size: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        self.refuse_if_poisoned()?;
        let total = count.checked_mul(size).ok_or_else(|| {
            AllocError::new(
                ErrorKind::SizeOverflow,
                format!("calloc({count}, {size}): size overflows"),
            )
        })?;
        let mem = self.allocate(total, 0, trail)?;
        let mmapped = self
            .head(mem.wrapping_sub(16))
            .map(|h| h & INUSE == 0)
            .unwrap_or(false);
        if mmapped {
            say!(trail, "fresh mapping: already zero, no memset");
        } else {
            self.mem
                .fill(mem, total, 0)
                .map_err(|e| corrupt(e.to_string()))?;
            say!(trail, "zero {} at {mem:#x}", bytes(total));
        }
        Ok(mem)
    }

    fn usable_size(&self, ptr: Addr) -> Option<u64> {
        self.ledger.get(ptr)?;
        let h = self.head(ptr.checked_sub(16)?).ok()?;
        match h & INUSE {
            PINUSE => None,
            0 => (h & !FLAG_BITS).checked_sub(MMAP_CHUNK_OVERHEAD),
            _ => (h & !FLAG_BITS).checked_sub(CHUNK_OVERHEAD),
        }
    }

    fn inspect(&self) -> HeapLayout {
        inspect::layout(self, Detail::All)
    }

    fn inspect_detail(&self, detail: Detail) -> HeapLayout {
        inspect::layout(self, detail)
    }

    fn validate(&self) -> Vec<Finding> {
        check::validate(self)
    }

    fn stats(&self) -> Stats {
        self.ledger.stats()
    }

    fn memory(&self) -> &Memory {
        &self.mem
    }

    fn memory_mut(&mut self) -> &mut Memory {
        &mut self.mem
    }

    fn clone_box(&self) -> Box<dyn Allocator> {
        Box::new(self.clone())
    }

    fn freed_set_mut(&mut self) -> Option<&mut LayeredMap<()>> {
        Some(&mut self.freed)
    }

    fn ledger_mut(&mut self) -> Option<&mut Ledger> {
        Some(&mut self.ledger)
    }

    fn side_bytes(&self) -> usize {
        self.ledger.heap_bytes() + self.freed.heap_bytes() + self.sys.heap_bytes()
    }
}

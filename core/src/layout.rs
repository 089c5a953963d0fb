//! What `inspect()` and `validate()` return: a heap described as plain data.

use std::ops::Range;

use serde::Serialize;

use crate::layered_map::LayeredMap;
use crate::{Addr, AllocatorKind};

/// What a stretch of the address space is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockState {
    /// Allocated and not yet freed.
    Live,
    /// Freed, and available for reuse.
    Free,
    /// Freed, but never to be reused (checked-bump quarantine, bump's ignored frees).
    Freed,
    /// Guard bytes after a block (checked-bump).
    Guard,
    /// Bytes skipped to honour an alignment.
    Padding,
    /// Allocator-owned bookkeeping that is not a block (fenceposts, bootstrap objects, ...).
    Metadata,
    /// Mapped but never handed out, beyond the bumper.
    Unused,
    /// Address space between the allocator's mappings, not obtained from the system: shown so
    /// the mappings keep their real addresses, never reusable.
    Unmapped,
    /// dlmalloc's top chunk / the wilderness.
    Top,
}

/// One decoded header field, with the bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    /// Field name as the original source calls it (`head`, `magic`, `order`, ...).
    pub name: String,
    /// The bytes holding it.
    pub range: Range<Addr>,
    /// The raw value read from those bytes.
    pub value: u64,
    /// The value explained (`order 3 (64 B)`, `next free -> 0x40`, ...).
    pub meaning: String,
}

impl Field {
    /// A field named `name` at `range` with `value` explained by `meaning`.
    pub fn new(
        name: impl Into<String>,
        range: Range<Addr>,
        value: u64,
        meaning: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            range,
            value,
            meaning: meaning.into(),
        }
    }
}

/// How much of each block [`crate::Allocator::inspect_detail`] decodes from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Every block's class and header fields: [`crate::Allocator::inspect`].
    All,
    /// Geometry, state and request only (heap blocks' `class` is `None` and `fields` empty):
    /// what a map of a large heap redraws at every step, where formatting a hundred thousand
    /// headers' descriptions would cost more than everything else.
    Outline,
    /// The outline, with class and fields for the block holding this address only: what a
    /// tooltip or an inspector shows.
    At(Addr),
    /// The outline, with class and fields for the blocks overlapping `[start, end)`: what a
    /// map zoomed in to single bytes shows.
    Span {
        /// First address of interest.
        start: Addr,
        /// One past the last.
        end: Addr,
    },
}

impl Detail {
    /// Whether the block covering `range` is decoded.
    pub fn wants(self, range: &Range<Addr>) -> bool {
        match self {
            Detail::All => true,
            Detail::Outline => false,
            Detail::At(addr) => range.contains(&addr),
            Detail::Span { start, end } => range.start < end && start < range.end,
        }
    }
}

/// One block (or other stretch) of the heap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    /// Every byte of the block: header, payload, slack, footer.
    pub range: Range<Addr>,
    /// The header bytes (empty when the allocator keeps none).
    pub header: Range<Addr>,
    /// The bytes a program may use (for a free block: where a payload would go).
    pub payload: Range<Addr>,
    /// What the program asked for, when the block is live and the request is known.
    pub requested: Option<u64>,
    /// What the block is.
    pub state: BlockState,
    /// Size class, order or object kind, in words (`order 3`, `bin 2`, `string`).
    pub class: Option<String>,
    /// The header decoded field by field.
    pub fields: Vec<Field>,
}

impl Block {
    /// A block of `state` covering `range`, with no header and the whole range as payload.
    pub fn plain(range: Range<Addr>, state: BlockState) -> Self {
        Self {
            header: range.start..range.start,
            payload: range.clone(),
            range,
            requested: None,
            state,
            class: None,
            fields: Vec::new(),
        }
    }

    /// Total bytes.
    pub fn size(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Bytes held beyond the request: rounding inside the payload plus any footer.
    pub fn slack(&self) -> u64 {
        let payload = self.payload.end - self.payload.start;
        let tail = self.range.end - self.payload.end;
        payload.saturating_sub(self.requested.unwrap_or(payload)) + tail
    }
}

/// One free list or bin, in the order its links really run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreeList {
    /// `order 3 (64 B)`, `bin 2 [32, 64)`, `small bin 5`, ...
    pub name: String,
    /// Start addresses of the linked blocks, head first.
    pub nodes: Vec<Addr>,
    /// What stopped the walk early (a cycle, a link out of the heap), if anything did.
    pub problem: Option<String>,
}

/// A named position in the heap: the bumper, the top chunk, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Marker {
    /// What it is.
    pub name: String,
    /// Where it points.
    pub addr: Addr,
}

/// A statistic the original allocator itself keeps, under its own name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NativeStat {
    /// The original's name (`bytes_allocated_peak`, `num_bytes_allocated`, ...).
    pub name: String,
    /// Its value.
    pub value: u64,
}

impl NativeStat {
    /// `name = value`.
    pub fn new(name: impl Into<String>, value: u64) -> Self {
        Self {
            name: name.into(),
            value,
        }
    }
}

/// Running counters every model keeps the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Live blocks.
    pub live_blocks: u64,
    /// Sum of requested sizes of live blocks.
    pub requested_live: u64,
    /// Bytes live blocks occupy: payload plus headers, rounding, alignment slack and guards.
    pub held: u64,
    /// The heap's extent as the allocator sees it (used prefix, address space, or system bytes).
    pub footprint: u64,
    /// Highest `requested_live` so far.
    pub peak_requested_live: u64,
    /// Highest `held` so far.
    pub peak_held: u64,
    /// Highest `footprint` so far.
    pub peak_footprint: u64,
}

/// The live blocks a model has handed out, with what was asked for each.
///
/// The originals keep no record of requested sizes; the models keep this beside the bytes so a
/// learner can see rounding and slack.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    live: LayeredMap<LiveEntry>,
    /// Earlier blocks at an address that was handed out again while they were live (only
    /// zero-size blocks can share an address); the newest block at an address is in `live`.
    shadowed: Vec<(Addr, LiveEntry)>,
    stats: Stats,
}

/// What the [`Ledger`] knows of a live block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEntry {
    /// Bytes requested.
    pub requested: u64,
    /// Bytes the block holds, overheads included.
    pub held: u64,
}

impl Ledger {
    /// Approximate host bytes this copy of the ledger costs (see [`LayeredMap::heap_bytes`]).
    pub fn heap_bytes(&self) -> usize {
        self.live.heap_bytes() + self.shadowed.capacity() * size_of::<(Addr, LiveEntry)>()
    }

    /// The table of live blocks, taken out (left empty) for a checkpoint to store compactly.
    pub(crate) fn take_live(&mut self) -> LayeredMap<LiveEntry> {
        std::mem::take(&mut self.live)
    }

    /// Puts back a table [`Self::take_live`] took.
    pub(crate) fn put_live(&mut self, live: LayeredMap<LiveEntry>) {
        self.live = live;
    }

    /// Records a block handed out at `ptr`.
    pub fn on_alloc(&mut self, ptr: Addr, requested: u64, held: u64) {
        if let Some(old) = self.live.insert(ptr, LiveEntry { requested, held }) {
            self.shadowed.push((ptr, old));
        }
        let s = &mut self.stats;
        s.live_blocks += 1;
        s.requested_live += requested;
        s.held += held;
        s.peak_requested_live = s.peak_requested_live.max(s.requested_live);
        s.peak_held = s.peak_held.max(s.held);
    }

    /// Records the block at `ptr` as freed; returns what it was, if it was live.
    pub fn on_free(&mut self, ptr: Addr) -> Option<LiveEntry> {
        let entry = self.live.remove(ptr)?;
        if let Some(i) = self.shadowed.iter().rposition(|&(a, _)| a == ptr) {
            let (_, older) = self.shadowed.swap_remove(i);
            self.live.insert(ptr, older);
        }
        let s = &mut self.stats;
        s.live_blocks -= 1;
        s.requested_live -= entry.requested;
        s.held -= entry.held;
        Some(entry)
    }

    /// Sets the current footprint (and its peak).
    pub fn set_footprint(&mut self, footprint: u64) {
        self.stats.footprint = footprint;
        self.stats.peak_footprint = self.stats.peak_footprint.max(footprint);
    }

    /// What is known of the live block at `ptr`.
    pub fn get(&self, ptr: Addr) -> Option<LiveEntry> {
        self.live.get(ptr)
    }

    /// Requested size of the live block at `ptr`.
    pub fn requested(&self, ptr: Addr) -> Option<u64> {
        self.live.get(ptr).map(|e| e.requested)
    }

    /// The live blocks, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Addr, LiveEntry)> + '_ {
        self.live.iter().chain(self.shadowed.iter().copied())
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }
}

/// A broken invariant found by `validate()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Where it was found, when it has a place.
    pub addr: Option<Addr>,
    /// What is wrong, in words.
    pub message: String,
}

impl Finding {
    /// A finding at `addr`.
    pub fn at(addr: Addr, message: impl Into<String>) -> Self {
        Self {
            addr: Some(addr),
            message: message.into(),
        }
    }

    /// A finding with no particular place.
    pub fn general(message: impl Into<String>) -> Self {
        Self {
            addr: None,
            message: message.into(),
        }
    }
}

/// The whole heap at one moment, as `inspect()` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeapLayout {
    /// The model this came from.
    pub kind: AllocatorKind,
    /// The address space drawn: first address and one past the last.
    pub extent: Range<Addr>,
    /// Every block and gap in address order, non-overlapping, covering `extent`.
    pub blocks: Vec<Block>,
    /// Free lists or bins, in the allocator's own order.
    pub free_lists: Vec<FreeList>,
    /// The bumper, top chunk or next free cell, if the allocator has one.
    pub markers: Vec<Marker>,
    /// Why the allocator refuses every call, if it is poisoned.
    pub poisoned: Option<String>,
    /// Counters every model keeps.
    pub stats: Stats,
    /// The original's own statistics, under its own names.
    pub native_stats: Vec<NativeStat>,
}

impl HeapLayout {
    /// The block containing `addr`, if any.
    pub fn block_at(&self, addr: Addr) -> Option<&Block> {
        let i = self.blocks.partition_point(|b| b.range.end <= addr);
        self.blocks.get(i).filter(|b| b.range.contains(&addr))
    }

    /// Checks the structural promise of [`HeapLayout::blocks`]: sorted, non-overlapping,
    /// non-empty blocks, each with header and payload inside its range.
    pub fn check_tiling(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut at = self.extent.start;
        for block in &self.blocks {
            let r = &block.range;
            if r.start < at {
                findings.push(Finding::at(
                    r.start,
                    format!(
                        "block [{:#x}, {:#x}) overlaps the one before it",
                        r.start, r.end
                    ),
                ));
            }
            if r.start >= r.end {
                findings.push(Finding::at(r.start, "empty block"));
            }
            let inside = |x: &Range<Addr>| r.start <= x.start && x.start <= x.end && x.end <= r.end;
            if !inside(&block.header) || !inside(&block.payload) {
                findings.push(Finding::at(
                    r.start,
                    format!(
                        "block [{:#x}, {:#x}) has header or payload outside it",
                        r.start, r.end
                    ),
                ));
            }
            at = at.max(r.end);
        }
        if at > self.extent.end {
            findings.push(Finding::general(format!(
                "blocks run to {at:#x}, past the extent's end {:#x}",
                self.extent.end
            )));
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_tracks_peaks_and_forgets_freed_blocks() {
        let mut ledger = Ledger::default();
        ledger.on_alloc(0x10, 9, 24);
        ledger.on_alloc(0x30, 1, 16);
        ledger.set_footprint(64);
        assert_eq!(
            ledger.on_free(0x10),
            Some(LiveEntry {
                requested: 9,
                held: 24
            })
        );
        assert_eq!(ledger.on_free(0x10), None);
        ledger.set_footprint(32);
        let s = ledger.stats();
        assert_eq!((s.live_blocks, s.requested_live, s.held), (1, 1, 16));
        assert_eq!((s.peak_requested_live, s.peak_held), (10, 40));
        assert_eq!((s.footprint, s.peak_footprint), (32, 64));
    }

    #[test]
    fn ledger_counts_zero_size_blocks_sharing_an_address() {
        let mut ledger = Ledger::default();
        ledger.on_alloc(0x10, 0, 0);
        ledger.on_alloc(0x10, 4, 4);
        assert_eq!(ledger.stats().live_blocks, 2);
        assert_eq!(ledger.on_free(0x10).map(|e| e.requested), Some(4));
        assert_eq!(ledger.requested(0x10), Some(0));
        assert_eq!(ledger.on_free(0x10).map(|e| e.requested), Some(0));
        assert_eq!(ledger.stats().live_blocks, 0);
    }

    #[test]
    fn slack_counts_rounding_and_footer() {
        let mut block = Block::plain(0x10..0x30, BlockState::Live);
        block.header = 0x10..0x18;
        block.payload = 0x18..0x28;
        block.requested = Some(9);
        assert_eq!(block.slack(), 7 + 8);
    }
}

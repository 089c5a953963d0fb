//! Time travel: one allocator's replay of a trace, recorded once, positioned at any step.
//!
//! Recording replays the trace and keeps, per operation, its outcome and three counters
//! (requested live bytes, bytes held, footprint), the steps that went wrong in full, and
//! checkpoints: copies of the replay state with its bulk packed (the ledger, dlmalloc's freed
//! addresses and the program's id table to sorted delta-encoded entries, see `packed_table`,
//! whole or as the entries written since the last checkpoint that holds them whole; the
//! heap's bytes either whole, to their non-zero words, see [`PackedMemory`], or as the
//! words changed since the checkpoint before, see [`MemoryDelta`]). A few thousand operations
//! change a small part of a heap's words (5 % of segregated-fit's in 8,192 operations on a
//! steady heap, measured), so a checkpoint holds its heap as a delta until the deltas since the
//! last whole one add up to as many bytes as it: a restore then costs at most about two
//! whole-heap restores, and the budget buys several times more checkpoints.
//! [`Timeline::seek`] restores the nearest checkpoint at or before the target (or continues from
//! the current position when that is nearer) and replays forward, so every position is exactly
//! the state a fresh replay reaches; the last operation is replayed with the decision log on.
//! A restore writes the heap in one pass, zeroing only lines written since the last restore,
//! and writes each table in key order as the sorted base of a [`LayeredMap`] (no hashing), so
//! it costs what the state holds, not the heap's mapped length.
//!
//! Why checkpoints and not undo records: the models keep side state in host structures (ledger,
//! block lists, free sets) that undo records would have to journal model by model, and a seek
//! to a random step far from the current one would still have to walk (or materialise) about
//! as much state as a restore rebuilds. Checkpoints need nothing from a model but `Clone` and
//! the two hooks that hand over its bulk. They are evenly spaced within a byte budget per
//! operation: whenever they exceed it, every other one is dropped (its heap delta merged into
//! the next one's, its whole tables into the next one's table delta) and the spacing doubles,
//! so it adapts to the heap's size.
//!
//! Stepping back is the common case of seeking (a learner steps back one operation, then
//! another), and restoring a checkpoint for it would replay thousands of operations each time.
//! So a timeline keeps working waypoints near where it stands: copies of the replay without its
//! bytes, which come back by undoing the memory's write journal ([`Memory`]'s undo log) to the
//! waypoint's mark. A step lays a few down before its target (a long jump, one next to where it
//! lands), and they keep being laid as the timeline plays forward, spaced so that replaying between
//! two costs about what copying one does (measured), within a byte budget. The benchmark (`cargo
//! bench -p heapscope-tests --bench timeline`) measures what this costs and how fast seeks are.
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;

use crate::Addr;
use crate::access::Violation;
use crate::allocator::Trail;
use crate::kind::{AllocatorKind, ConfigError, HeapConfig};
use crate::layered_map::LayeredMap;
use crate::layout::{Ledger, LiveEntry};
use crate::memory::{Memory, MemoryDelta, PackedMemory};
use crate::packed_table::{PackedTable, Pair, TableDelta};
use crate::replay::{IdEntry, Replayer, Step, StepResult};
use crate::trace::Op;

/// Problems kept in full; past this, only their outcomes are (a trace that fails this often
/// fails the same way again and again, and the full records would outweigh the trace).
pub const MAX_PROBLEMS: usize = 65_536;

/// How a timeline spends memory on checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOptions {
    /// Checkpoint bytes allowed per recorded operation, on average over the trace so far;
    /// over the whole trace, the problems kept in full come out of the same allowance (they
    /// cannot be dropped, so a trace that fails often gets fewer checkpoints).
    pub checkpoint_bytes_per_op: usize,
    /// Operations between two checkpoints to start with (doubled as the budget requires).
    pub min_spacing: usize,
    /// Operations between two waypoints (working states kept for stepping back); `None`
    /// measures it: as many as replay in the time copying a waypoint takes.
    pub waypoint_spacing: Option<usize>,
    /// Host bytes the waypoints may hold together (at least two are kept).
    pub waypoint_bytes: usize,
}

impl Default for RecordOptions {
    fn default() -> Self {
        // Per-step records take 13 bytes: 40 more for checkpoints and problems keeps the
        // whole recording under 53 B per operation as counted, which leaves room below 64 for
        // what the process's allocator adds (up to 8 B per operation, measured).
        Self {
            checkpoint_bytes_per_op: 40,
            min_spacing: 512,
            waypoint_spacing: None,
            waypoint_bytes: 64 << 20,
        }
    }
}

/// What one operation did, in one word, for timeline markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// It did what was asked.
    Ok,
    /// It named a block the program does not hold; the allocator was not called.
    Skipped,
    /// The allocator refused the call.
    Failed,
    /// A checking allocator caught a bad access or free (whether or not the call failed).
    Violation,
}

impl StepOutcome {
    fn of(step: &Step) -> Self {
        if !step.violations.is_empty() {
            StepOutcome::Violation
        } else {
            match step.result {
                StepResult::Failed(_) => StepOutcome::Failed,
                StepResult::Skipped(_) => StepOutcome::Skipped,
                StepResult::Placed(_) | StepResult::Done => StepOutcome::Ok,
            }
        }
    }
}

/// A step that did not simply succeed, kept in full for lists of errors and violations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Index of the operation (0-based).
    pub step: usize,
    /// What the allocator answered.
    pub result: StepResult,
    /// What the checking allocator caught.
    pub violations: Vec<Violation>,
    /// The address the operation concerned.
    pub addr: Option<Addr>,
}

impl Problem {
    /// Host bytes this record occupies.
    fn host_bytes(&self) -> usize {
        let message = match &self.result {
            StepResult::Failed(e) => e.message.capacity(),
            StepResult::Skipped(why) => why.capacity(),
            StepResult::Placed(_) | StepResult::Done => 0,
        };
        let violations: usize = self
            .violations
            .iter()
            .map(|v| size_of::<Violation>() + v.message.capacity())
            .sum();
        size_of::<Self>() + message + violations
    }
}

/// Why a timeline could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimelineError {
    /// The allocator's settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The caller asked to stop.
    #[error("recording cancelled at step {0}")]
    Cancelled(usize),
}

/// A per-step counter, kept in 32 bits until a value needs 64.
#[derive(Debug, Clone)]
enum Column {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl Column {
    fn with_capacity(n: usize) -> Self {
        Column::Narrow(Vec::with_capacity(n))
    }

    fn push(&mut self, value: u64) {
        match self {
            Column::Narrow(values) => match u32::try_from(value) {
                Ok(v) => values.push(v),
                Err(_) => {
                    let mut wide: Vec<u64> = values.iter().map(|&v| u64::from(v)).collect();
                    wide.reserve(values.capacity().saturating_sub(values.len()));
                    wide.push(value);
                    *self = Column::Wide(wide);
                }
            },
            Column::Wide(values) => values.push(value),
        }
    }

    fn get(&self, i: usize) -> Option<u64> {
        match self {
            Column::Narrow(values) => values.get(i).map(|&v| u64::from(v)),
            Column::Wide(values) => values.get(i).copied(),
        }
    }

    fn max_in(&self, range: std::ops::Range<usize>) -> Option<u64> {
        match self {
            Column::Narrow(values) => values.get(range)?.iter().max().map(|&v| u64::from(v)),
            Column::Wide(values) => values.get(range)?.iter().max().copied(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Column::Narrow(values) => values.capacity() * 4,
            Column::Wide(values) => values.capacity() * 8,
        }
    }
}

/// The replay state after `step` operations, with its bulk packed.
#[derive(Debug, Clone)]
struct Checkpoint {
    step: usize,
    /// The replay with its bulk taken out: empty memories and tables.
    replay: Replayer,
    bulk: PackedBulk,
    /// Host bytes of `replay`, and of this record itself.
    side: usize,
}

impl Checkpoint {
    fn take(state: &mut Replayer, step: usize, packer: &mut Packer) -> Self {
        // Clone everything but the bulk, which is packed instead of copied.
        let mut bulk = Bulk::take(state);
        let replay = state.clone();
        let packed = PackedBulk {
            memory: packer.heaps.pack(&mut bulk.memory.0),
            tables: packer.tables.pack(&mut bulk),
        };
        bulk.put(state);
        Self {
            step,
            side: replay.side_bytes() + size_of::<Self>(),
            replay,
            bulk: packed,
        }
    }

    /// Host bytes this checkpoint holds.
    fn bytes(&self) -> usize {
        self.bulk.packed_bytes() + self.side
    }
}

/// Makes `state` the state of checkpoint `k`: its heap comes from the last full one at or
/// before it and the deltas after that, reusing the memory's buffer (only the lines written
/// since it was last restored are cleared) and the tables.
fn restore_into(checkpoints: &[Checkpoint], k: usize, state: &mut Replayer) {
    let Some(target) = checkpoints.get(k) else {
        return;
    };
    let mut bulk = Bulk::take(state);
    let len = match &target.bulk.memory {
        PackedHeap::Full(packed) => packed.memory_len(),
        PackedHeap::Delta(delta) => delta.memory_len(),
    };
    // A delta of the tables applies to the last whole tables before it.
    let whole = match &target.bulk.tables {
        PackedTables::Full(_) => None,
        PackedTables::Delta(_) => checkpoints
            .get(..=k)
            .unwrap_or(checkpoints)
            .iter()
            .rev()
            .find_map(|c| match &c.bulk.tables {
                PackedTables::Full(full) => Some(full),
                PackedTables::Delta(_) => None,
            }),
    };
    let tables = &mut bulk.tables;
    let mut restore_tables = move || match &target.bulk.tables {
        PackedTables::Full(full) => full.unpack_into(tables),
        PackedTables::Delta(delta) => {
            if let Some(whole) = whole {
                whole.unpack_with_into(delta, tables);
            }
        }
    };
    let memory = &mut bulk.memory.0;
    let mut restore_heap = || {
        for checkpoint in &checkpoints[last_full(checkpoints, k)..=k] {
            match &checkpoint.bulk.memory {
                PackedHeap::Full(packed) => packed.unpack_sized_into(memory, len),
                PackedHeap::Delta(delta) => delta.apply(memory),
            }
        }
    };
    // The heap and the tables are independent, and restoring either is a pass of scattered
    // writes that mostly waits on memory: big ones go side by side, on two cores.
    let tables_bytes = whole.map_or(0, |w| w.packed_bytes(PackedTable::packed_bytes))
        + target.bulk.tables.packed_bytes();
    if tables_bytes >= PARALLEL_TABLES_BYTES {
        side_by_side(restore_tables, restore_heap);
    } else {
        restore_tables();
        restore_heap();
    }
    *state = target.replay.clone();
    bulk.put(state);
}

/// Runs `other` on a thread of its own while `here` runs on this one; both here, one after the
/// other, when the system will not start a thread.
fn side_by_side(other: impl FnOnce() + Send, here: impl FnOnce()) {
    let other = Mutex::new(Some(other));
    // Whichever thread gets to it first runs it: the new one, or this one if there is none.
    let run_other = || {
        if let Some(job) = other.lock().ok().and_then(|mut slot| slot.take()) {
            job();
        }
    };
    std::thread::scope(|scope| {
        let _started = std::thread::Builder::new().spawn_scoped(scope, run_other);
        here();
    });
    run_other();
}

/// Packed tables from which a restore unpacks them on a thread of their own, beside the heap:
/// below it, starting a thread would cost more than it saves.
#[cfg(not(test))]
const PARALLEL_TABLES_BYTES: usize = 64 << 10;
/// Unit tests restore small tables side by side too, so that they cover that path; the
/// end-to-end tests (which build the library without `cfg(test)`) cover the other.
#[cfg(test)]
const PARALLEL_TABLES_BYTES: usize = 1;

/// The last checkpoint at or before `k` that holds its heap whole (the first always does).
fn last_full(checkpoints: &[Checkpoint], k: usize) -> usize {
    checkpoints
        .get(..=k)
        .unwrap_or(checkpoints)
        .iter()
        .rposition(|c| matches!(c.bulk.memory, PackedHeap::Full(_)))
        .unwrap_or(0)
}

/// What a checkpoint packs instead of cloning: the replay's byte arrays and its largest tables
/// (the ledger of live blocks, dlmalloc's freed addresses, the program's ids), taken out of a
/// state and put back.
struct Bulk {
    memory: HeapBytes,
    tables: LiveTables,
}

/// A replay's tables as it uses them.
type LiveTables = Tables<LayeredMap<LiveEntry>, LayeredMap<()>, LayeredMap<IdEntry>>;
/// A checkpoint's tables, packed whole.
type WholeTables = Tables<PackedTable, PackedTable, PackedTable>;
/// What changed in the tables since the last whole ones, packed.
type TableDeltas = Tables<TableDelta, TableDelta, TableDelta>;

/// The tables a replay keeps, in some form: its model's ledger and freed set, when it has
/// them, and the program's ids.
#[derive(Debug, Clone)]
struct Tables<L, F, I> {
    ledger: Option<L>,
    freed: Option<F>,
    ids: I,
}

impl Bulk {
    fn take(state: &mut Replayer) -> Self {
        Self {
            memory: HeapBytes::take(state),
            tables: Tables {
                ledger: state.heap_mut().ledger_mut().map(Ledger::take_live),
                freed: state.heap_mut().freed_set_mut().map(std::mem::take),
                ids: state.take_ids(),
            },
        }
    }

    fn put(self, state: &mut Replayer) {
        self.memory.put(state);
        let Tables { ledger, freed, ids } = self.tables;
        if let (Some(slot), Some(live)) = (state.heap_mut().ledger_mut(), ledger) {
            slot.put_live(live);
        }
        if let (Some(slot), Some(freed)) = (state.heap_mut().freed_set_mut(), freed) {
            *slot = freed;
        }
        state.put_ids(ids);
    }
}

/// A checkpoint's heap bytes: packed whole, or the words changed since the checkpoint before.
#[derive(Debug, Clone)]
enum PackedHeap {
    Full(PackedMemory),
    Delta(MemoryDelta),
}

impl PackedHeap {
    fn packed_bytes(&self) -> usize {
        match self {
            PackedHeap::Full(packed) => packed.packed_bytes(),
            PackedHeap::Delta(delta) => delta.packed_bytes(),
        }
    }

    /// `self`, taken from the state `earlier` leads to, following `earlier`, as one.
    fn after(self, earlier: PackedHeap) -> PackedHeap {
        match (earlier, self) {
            (_, full @ PackedHeap::Full(_)) => full,
            (PackedHeap::Delta(first), PackedHeap::Delta(then)) => {
                PackedHeap::Delta(first.then(&then))
            }
            (PackedHeap::Full(first), PackedHeap::Delta(then)) => {
                PackedHeap::Full(first.with(&then))
            }
        }
    }
}

/// Packs the heap of each checkpoint a recording takes: as the words changed since the one
/// before (a few thousand operations change a small part of a heap), or whole once the
/// deltas since the last whole one would cost more to apply than it does to unpack.
struct HeapPacker {
    /// The heap as the last checkpoint taken holds it.
    shadow: Memory,
    /// Packed bytes of the last whole heap kept, and of the deltas kept after it.
    full_bytes: usize,
    chain_bytes: usize,
    /// The heap change of checkpoints dropped after the last one kept: the next one taken
    /// starts from where they did.
    carry: Option<PackedHeap>,
}

impl HeapPacker {
    fn new() -> Self {
        Self {
            shadow: Memory::new(0, 0),
            full_bytes: 0,
            chain_bytes: 0,
            carry: None,
        }
    }

    fn pack(&mut self, memory: &mut Memory) -> PackedHeap {
        let delta = memory.delta_from(&self.shadow);
        memory.track_changes();
        let heap = match delta {
            Some(delta) => {
                delta.apply(&mut self.shadow);
                PackedHeap::Delta(delta)
            }
            None => {
                let packed = memory.pack();
                // Not a clone: a big mapping's zero pages would all be touched.
                self.shadow = packed.unpack();
                PackedHeap::Full(packed)
            }
        };
        let heap = match self.carry.take() {
            Some(earlier) => heap.after(earlier),
            None => heap,
        };
        match heap {
            PackedHeap::Delta(delta)
                if self.chain_bytes + delta.packed_bytes() <= self.full_bytes =>
            {
                self.chain_bytes += delta.packed_bytes();
                PackedHeap::Delta(delta)
            }
            PackedHeap::Delta(_) => self.full(memory.pack()),
            PackedHeap::Full(packed) => self.full(packed),
        }
    }

    fn full(&mut self, packed: PackedMemory) -> PackedHeap {
        self.full_bytes = packed.packed_bytes();
        self.chain_bytes = 0;
        PackedHeap::Full(packed)
    }

    /// Keeps the checkpoints at multiples of `spacing`; the heap change of each one dropped
    /// goes into the next one kept. Returns the bytes the checkpoints hold.
    fn thin(&mut self, checkpoints: &mut Vec<Checkpoint>, spacing: usize) -> usize {
        let mut pending: Option<PackedHeap> = None;
        let mut kept = Vec::with_capacity(checkpoints.len() / 2 + 1);
        for mut checkpoint in checkpoints.drain(..) {
            if let Some(earlier) = pending.take() {
                let heap = std::mem::replace(
                    &mut checkpoint.bulk.memory,
                    PackedHeap::Delta(MemoryDelta::default()),
                );
                checkpoint.bulk.memory = heap.after(earlier);
            }
            if checkpoint.step.is_multiple_of(spacing) {
                kept.push(checkpoint);
            } else {
                pending = Some(checkpoint.bulk.memory);
            }
        }
        *checkpoints = kept;
        if let Some(dropped) = pending {
            self.carry = Some(match self.carry.take() {
                Some(later) => later.after(dropped),
                None => dropped,
            });
        }
        let full = checkpoints
            .iter()
            .rposition(|c| matches!(c.bulk.memory, PackedHeap::Full(_)))
            .unwrap_or(0);
        self.full_bytes = checkpoints
            .get(full)
            .map_or(0, |c| c.bulk.memory.packed_bytes());
        self.chain_bytes = checkpoints
            .iter()
            .skip(full + 1)
            .map(|c| c.bulk.memory.packed_bytes())
            .sum();
        checkpoints.iter().map(Checkpoint::bytes).sum()
    }
}

/// A [`Bulk`], packed.
#[derive(Debug, Clone)]
struct PackedBulk {
    memory: PackedHeap,
    tables: PackedTables,
}

impl PackedBulk {
    fn packed_bytes(&self) -> usize {
        self.memory.packed_bytes() + self.tables.packed_bytes()
    }
}

/// A checkpoint's tables: whole, or what changed in them since the last checkpoint that holds
/// them whole (each delta is taken from that one, not from the checkpoint before: a restore
/// merges one delta into one whole table, in one pass).
#[derive(Debug, Clone)]
enum PackedTables {
    Full(WholeTables),
    Delta(TableDeltas),
}

impl PackedTables {
    fn packed_bytes(&self) -> usize {
        match self {
            PackedTables::Full(full) => full.packed_bytes(PackedTable::packed_bytes),
            PackedTables::Delta(delta) => delta.packed_bytes(TableDelta::packed_bytes),
        }
    }
}

impl<T> Tables<T, T, T> {
    fn packed_bytes(&self, bytes: impl Fn(&T) -> usize) -> usize {
        self.ledger.as_ref().map_or(0, &bytes)
            + self.freed.as_ref().map_or(0, &bytes)
            + bytes(&self.ids)
    }
}

impl WholeTables {
    fn pack(tables: &LiveTables) -> Self {
        Self {
            ledger: tables.ledger.as_ref().map(PackedTable::pack),
            freed: tables.freed.as_ref().map(PackedTable::pack),
            ids: PackedTable::pack(&tables.ids),
        }
    }

    /// Makes `tables` these, reusing them.
    fn unpack_into(&self, tables: &mut LiveTables) {
        unpack_table(&self.ledger, &mut tables.ledger, PackedTable::unpack_into);
        unpack_table(&self.freed, &mut tables.freed, PackedTable::unpack_into);
        self.ids.unpack_into(&mut tables.ids);
    }

    /// Makes `tables` these with `delta` applied, reusing them.
    fn unpack_with_into(&self, delta: &TableDeltas, tables: &mut LiveTables) {
        fn with<V: Pair>(
            full: &Option<PackedTable>,
            delta: &Option<TableDelta>,
            slot: &mut Option<LayeredMap<V>>,
        ) {
            unpack_table(full, slot, |full, table| match delta {
                Some(delta) => full.unpack_with_into(delta, table),
                None => full.unpack_into(table),
            });
        }
        with(&self.ledger, &delta.ledger, &mut tables.ledger);
        with(&self.freed, &delta.freed, &mut tables.freed);
        self.ids.unpack_with_into(&delta.ids, &mut tables.ids);
    }

    /// These tables with `delta` applied, packed.
    fn with(&self, delta: &TableDeltas) -> Self {
        fn apply<V: Pair>(
            full: &Option<PackedTable>,
            delta: &Option<TableDelta>,
        ) -> Option<PackedTable> {
            match (full, delta) {
                (Some(full), Some(delta)) => Some(full.with::<V>(delta)),
                (full, _) => full.clone(),
            }
        }
        Self {
            ledger: apply::<LiveEntry>(&self.ledger, &delta.ledger),
            freed: apply::<()>(&self.freed, &delta.freed),
            ids: self.ids.with::<IdEntry>(&delta.ids),
        }
    }
}

/// Unpacks an optional table into its slot, reusing the table there.
fn unpack_table<V: Pair>(
    packed: &Option<PackedTable>,
    slot: &mut Option<LayeredMap<V>>,
    unpack: impl FnOnce(&PackedTable, &mut LayeredMap<V>),
) {
    match (packed, slot.as_mut()) {
        (Some(packed), Some(table)) => unpack(packed, table),
        (Some(packed), None) => {
            let mut table = LayeredMap::default();
            unpack(packed, &mut table);
            *slot = Some(table);
        }
        (None, _) => *slot = None,
    }
}

/// Packs each checkpoint's tables: whole, or as what changed since the last whole ones while
/// that costs at most half as much (then a restore merges at most half a table's worth of
/// changes into a whole one).
struct TablePacker {
    /// Packed bytes of the last whole tables kept.
    full_bytes: usize,
    /// The tables' tracked changes no longer start from tables a checkpoint keeps whole.
    must_be_full: bool,
}

impl TablePacker {
    fn new() -> Self {
        Self {
            full_bytes: 0,
            must_be_full: true,
        }
    }

    fn pack(&mut self, bulk: &mut Bulk) -> PackedTables {
        if !self.must_be_full
            && let Some(delta) = bulk.tables.deltas()
            && delta.packed_bytes(TableDelta::packed_bytes) * 2 <= self.full_bytes
        {
            return PackedTables::Delta(delta);
        }
        let full = Tables::pack(&bulk.tables);
        self.full_bytes = full.packed_bytes(PackedTable::packed_bytes);
        self.must_be_full = false;
        bulk.tables.track_changes();
        PackedTables::Full(full)
    }

    /// Before the checkpoints not at multiples of `spacing` are dropped: a kept checkpoint
    /// whose delta starts from dropped whole tables is given whole tables instead (the
    /// deltas after it still hold: they list every key changed since the dropped tables).
    fn thin(&mut self, checkpoints: &mut [Checkpoint], spacing: usize) {
        // The last checkpoint dropped with whole tables that no kept one has replaced yet.
        let mut dropped_full = None;
        let mut last_full_bytes = self.full_bytes;
        for i in 0..checkpoints.len() {
            let (before, rest) = checkpoints.split_at_mut(i);
            let Some(checkpoint) = rest.first_mut() else {
                break;
            };
            let kept = checkpoint.step.is_multiple_of(spacing);
            match (&checkpoint.bulk.tables, kept) {
                (PackedTables::Full(_), false) => dropped_full = Some(i),
                (PackedTables::Full(full), true) => {
                    dropped_full = None;
                    last_full_bytes = full.packed_bytes(PackedTable::packed_bytes);
                }
                (PackedTables::Delta(delta), true) => {
                    let full = dropped_full
                        .take()
                        .and_then(|j| match &before[j].bulk.tables {
                            PackedTables::Full(full) => Some(full),
                            PackedTables::Delta(_) => None,
                        });
                    if let Some(full) = full {
                        let whole = full.with(delta);
                        last_full_bytes = whole.packed_bytes(PackedTable::packed_bytes);
                        checkpoint.bulk.tables = PackedTables::Full(whole);
                    }
                }
                (PackedTables::Delta(_), false) => {}
            }
        }
        self.full_bytes = last_full_bytes;
        // The changes tracked since dropped whole tables that no kept checkpoint follows do
        // not lead from the whole tables kept before them.
        if dropped_full.is_some() {
            self.must_be_full = true;
        }
    }
}

impl LiveTables {
    fn track_changes(&mut self) {
        if let Some(ledger) = &mut self.ledger {
            ledger.track_changes();
        }
        if let Some(freed) = &mut self.freed {
            freed.track_changes();
        }
        self.ids.track_changes();
    }

    /// The changes tracked in every table, packed (`None` if one was not tracking).
    fn deltas(&mut self) -> Option<TableDeltas> {
        let ledger = match &mut self.ledger {
            Some(ledger) => Some(TableDelta::pack(ledger)?),
            None => None,
        };
        let freed = match &mut self.freed {
            Some(freed) => Some(TableDelta::pack(freed)?),
            None => None,
        };
        Some(Tables {
            ledger,
            freed,
            ids: TableDelta::pack(&mut self.ids)?,
        })
    }
}

/// Packs the checkpoints' heaps and tables, each as a whole or as a delta.
struct Packer {
    heaps: HeapPacker,
    tables: TablePacker,
}

impl Packer {
    fn new() -> Self {
        Self {
            heaps: HeapPacker::new(),
            tables: TablePacker::new(),
        }
    }

    /// Keeps the checkpoints at multiples of `spacing`; returns the bytes they hold.
    fn thin(&mut self, checkpoints: &mut Vec<Checkpoint>, spacing: usize) -> usize {
        self.tables.thin(checkpoints, spacing);
        self.heaps.thin(checkpoints, spacing)
    }
}

/// Operations between two waypoints to start with; then as many as replay in the time a
/// waypoint takes to copy, so that stepping back costs about two copies' time at most.
const WAYPOINT_SPACING: usize = 1024;
/// Bounds on the measured spacing.
const WAYPOINT_SPACING_RANGE: std::ops::RangeInclusive<usize> = 64..=8192;
/// Waypoints a backward seek lays down before its target, for the steps back that follow.
const WAYPOINTS_PER_SEEK: usize = 4;

/// A state the timeline passed on its way to where it stands, kept to step back to: the replay
/// without its memory, whose bytes are recovered by undoing the memory's journal to `mark`.
///
/// Waypoints are working state, not part of the recording: they make stepping back (one step,
/// or a few thousand) cost a journal undo and a copy of the side state instead of a checkpoint
/// restore and a long replay.
#[derive(Debug, Clone)]
struct Waypoint {
    step: usize,
    side: Replayer,
    /// Where the heap's journal stood.
    mark: usize,
    bytes: usize,
}

/// The state's heap bytes, taken out (to copy the rest of the state without them) and put
/// back, and their journal.
struct HeapBytes(Memory);

impl HeapBytes {
    fn take(state: &mut Replayer) -> Self {
        Self(std::mem::replace(
            state.heap_mut().memory_slot(),
            Memory::new(0, 0),
        ))
    }

    fn put(self, state: &mut Replayer) {
        *state.heap_mut().memory_slot() = self.0;
    }

    /// Starts the journal if it is not running, and returns where it stands.
    fn mark(&mut self) -> Option<usize> {
        if self.0.journal_mark().is_none() {
            self.0.start_journal();
        }
        self.0.journal_mark()
    }
}

/// One allocator's recorded replay of a trace, positioned at one step.
#[derive(Debug, Clone)]
pub struct Timeline {
    kind: AllocatorKind,
    config: HeapConfig,
    outcomes: Vec<StepOutcome>,
    requested_live: Column,
    held: Column,
    footprint: Column,
    problems: Vec<Problem>,
    /// Always holds the state before the first operation, at index 0.
    checkpoints: Vec<Checkpoint>,
    /// Bit i: operation i is the last to name its id, so a freed id can be forgotten after it.
    last_mention: Vec<u64>,
    state: Replayer,
    position: usize,
    /// Ascending, all at or before `position`, their marks in the state's memory journals.
    waypoints: Vec<Waypoint>,
    /// Operations between waypoints, measured unless the options fix it.
    waypoint_spacing: usize,
    waypoint_spacing_fixed: bool,
    waypoint_bytes: usize,
    /// What copying the last waypoint took.
    waypoint_cost: Duration,
}

/// Marks, for each operation, whether it is the last one naming its id.
fn last_mentions(ops: &[Op]) -> Vec<u64> {
    let mut bits = vec![0u64; ops.len().div_ceil(64)];
    let mut mark = |i: usize| bits[i / 64] |= 1 << (i % 64);
    // Ids are usually small and dense (importers number blocks as they meet them): then a bit
    // per id is much faster than a set of a million ids.
    let max_id = ops.iter().filter_map(Op::id).max().unwrap_or(0);
    match usize::try_from(max_id) {
        Ok(max) if max < ops.len().saturating_mul(4).max(1 << 16) => {
            let mut seen = vec![0u64; max / 64 + 1];
            for (i, op) in ops.iter().enumerate().rev() {
                if let Some(id) = op.id().and_then(|id| usize::try_from(id).ok()) {
                    let word = &mut seen[id / 64];
                    if *word & (1 << (id % 64)) == 0 {
                        *word |= 1 << (id % 64);
                        mark(i);
                    }
                }
            }
        }
        _ => {
            let mut seen = FxHashSet::default();
            for (i, op) in ops.iter().enumerate().rev() {
                if let Some(id) = op.id()
                    && seen.insert(id)
                {
                    mark(i);
                }
            }
        }
    }
    bits
}

/// After the last operation naming an id, a freed id need not be remembered any more.
fn forget_if_last(last_mention: &[u64], i: usize, op: &Op, state: &mut Replayer) {
    if last_mention
        .get(i / 64)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
        && let Some(id) = op.id()
    {
        state.forget_freed(id);
    }
}

impl Timeline {
    /// Replays `ops` against a fresh `kind` allocator with `config` and records the timeline.
    ///
    /// `watch` sees each operation as it is recorded: its index, its step, and the replay
    /// standing after it (for progress, or for measures the timeline does not keep); recording
    /// stops with [`TimelineError::Cancelled`] when it returns `false`.
    pub fn record(
        kind: AllocatorKind,
        config: HeapConfig,
        ops: &[Op],
        options: &RecordOptions,
        watch: &mut dyn FnMut(usize, &Step, &Replayer) -> bool,
    ) -> Result<Self, TimelineError> {
        let mut state = Replayer::new(kind.build(&config)?);
        let last_mention = last_mentions(ops);
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut requested_live = Column::with_capacity(ops.len());
        let mut held = Column::with_capacity(ops.len());
        let mut footprint = Column::with_capacity(ops.len());
        let mut problems = Vec::new();
        let mut packer = Packer::new();
        let mut checkpoints = vec![Checkpoint::take(&mut state, 0, &mut packer)];
        let mut spent = checkpoints[0].bytes();
        let mut problem_bytes = 0;
        let mut spacing = options.min_spacing.max(1);
        let mut off = Trail::off();
        for (i, op) in ops.iter().enumerate() {
            let step = state.apply(op, &mut off);
            if !watch(i, &step, &state) {
                return Err(TimelineError::Cancelled(i));
            }
            let outcome = StepOutcome::of(&step);
            let stats = state.heap().stats();
            outcomes.push(outcome);
            requested_live.push(stats.requested_live);
            held.push(stats.held);
            footprint.push(stats.footprint);
            if outcome != StepOutcome::Ok && problems.len() < MAX_PROBLEMS {
                let problem = Problem {
                    step: i,
                    result: step.result,
                    violations: step.violations,
                    addr: step.addr,
                };
                problem_bytes += problem.host_bytes();
                problems.push(problem);
            }
            forget_if_last(&last_mention, i, op, &mut state);
            if (i + 1) % spacing == 0 {
                // Over budget: keep every other checkpoint, so the spacing stays even and a
                // seek replays fewer than `spacing` operations wherever it lands. The budget
                // grows with the operations recorded (so the spacing follows the state's
                // size), and the problems kept come out of the whole trace's share.
                let per_op = options.checkpoint_bytes_per_op;
                let budget = per_op.saturating_mul(i + 1).min(
                    per_op
                        .saturating_mul(ops.len())
                        .saturating_sub(problem_bytes),
                );
                let thin = |spacing: &mut usize,
                            checkpoints: &mut Vec<Checkpoint>,
                            packer: &mut Packer| {
                    *spacing = spacing.saturating_mul(2);
                    packer.thin(checkpoints, *spacing)
                };
                // The state only grows between checkpoints as a rule: when one the size of the
                // last would not fit, make room first rather than take one to drop it at once.
                let expected = checkpoints.last().map_or(0, Checkpoint::bytes);
                while spent + expected > budget && checkpoints.len() > 1 {
                    spent = thin(&mut spacing, &mut checkpoints, &mut packer);
                }
                if (i + 1) % spacing == 0 {
                    let checkpoint = Checkpoint::take(&mut state, i + 1, &mut packer);
                    spent += checkpoint.bytes();
                    checkpoints.push(checkpoint);
                    while spent > budget && checkpoints.len() > 1 {
                        spent = thin(&mut spacing, &mut checkpoints, &mut packer);
                    }
                }
            }
        }
        // Stand at the start, like a fresh replay, in buffers sized for it (not the end's).
        drop(state);
        let mut state = checkpoints[0].replay.clone();
        restore_into(&checkpoints, 0, &mut state);
        Ok(Self {
            kind,
            config,
            outcomes,
            requested_live,
            held,
            footprint,
            problems,
            checkpoints,
            last_mention,
            state,
            position: 0,
            waypoints: Vec::new(),
            waypoint_spacing: options.waypoint_spacing.unwrap_or(WAYPOINT_SPACING).max(1),
            waypoint_spacing_fixed: options.waypoint_spacing.is_some(),
            waypoint_bytes: options.waypoint_bytes,
            waypoint_cost: Duration::ZERO,
        })
    }

    /// The allocator variant.
    pub fn kind(&self) -> AllocatorKind {
        self.kind
    }

    /// The allocator's settings.
    pub fn config(&self) -> &HeapConfig {
        &self.config
    }

    /// Number of recorded operations.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// Operations applied at the current position (0 = before the first).
    pub fn position(&self) -> usize {
        self.position
    }

    /// The replay at the current position.
    pub fn replay(&self) -> &Replayer {
        &self.state
    }

    /// What operation `i` did.
    pub fn outcome(&self, i: usize) -> Option<StepOutcome> {
        self.outcomes.get(i).copied()
    }

    /// Every operation's outcome, in order.
    pub fn outcomes(&self) -> &[StepOutcome] {
        &self.outcomes
    }

    /// Requested live bytes after operation `i`.
    pub fn requested_live(&self, i: usize) -> Option<u64> {
        self.requested_live.get(i)
    }

    /// The highest requested live bytes after any operation in `range` (`None` when the range
    /// is empty or out of bounds): one column of a live-bytes curve.
    pub fn requested_live_max(&self, range: std::ops::Range<usize>) -> Option<u64> {
        self.requested_live.max_in(range)
    }

    /// Bytes held by live blocks after operation `i`.
    pub fn held(&self, i: usize) -> Option<u64> {
        self.held.get(i)
    }

    /// The allocator's footprint after operation `i`.
    pub fn footprint(&self, i: usize) -> Option<u64> {
        self.footprint.get(i)
    }

    /// The steps that failed, were skipped or raised violations, in order (the first
    /// [`MAX_PROBLEMS`]; [`Self::outcomes`] marks every one).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Number of checkpoints kept.
    pub fn checkpoint_count(&self) -> usize {
        self.checkpoints.len()
    }

    /// Host bytes the recording occupies beyond the trace and the current state: per-step
    /// records, problems and checkpoints.
    pub fn recorded_bytes(&self) -> usize {
        let problems: usize = self.problems.iter().map(Problem::host_bytes).sum();
        self.outcomes.capacity()
            + self.requested_live.bytes()
            + self.held.bytes()
            + self.footprint.bytes()
            + self.last_mention.capacity() * 8
            + problems
            + self
                .checkpoints
                .iter()
                .map(Checkpoint::bytes)
                .sum::<usize>()
    }

    /// Moves to stand after `cursor` operations of `ops` (the trace this timeline recorded;
    /// clamped to its length), forward or backward, and returns the step that led there,
    /// explained by the allocator's decision log (`None` at the start).
    pub fn seek(&mut self, ops: &[Op], cursor: usize) -> Option<Step> {
        let cursor = cursor.min(self.len()).min(ops.len());
        // Reach the state before the last operation, then apply that one with the log on.
        let before = cursor.saturating_sub(1);
        let nearest = self
            .checkpoints
            .partition_point(|c| c.step <= before)
            .saturating_sub(1);
        let checkpoint_step = self.checkpoints.get(nearest)?.step;
        // A step (either way) moves less than the waypoints laid before a target span.
        let stepping = before.abs_diff(self.position) <= WAYPOINTS_PER_SEEK * self.waypoint_spacing;
        if !(checkpoint_step..=before).contains(&self.position) {
            let waypoint = self.waypoints.iter().rposition(|w| w.step <= before);
            let restored = waypoint.is_some_and(|k| {
                self.waypoints[k].step >= checkpoint_step && self.restore_waypoint(k)
            });
            if !restored {
                restore_into(&self.checkpoints, nearest, &mut self.state);
                self.position = checkpoint_step;
                self.waypoints.clear();
            }
        }
        // Waypoints go down just before the target of a step (steps back are likely to follow,
        // and playing forward keeps laying them). A long jump lays one, next to where it lands,
        // so that a first step back from there is cheap too: not all along the way, where
        // copying them would cost more than the jump's replay.
        let spacing = self.waypoint_spacing;
        let lay_from = if stepping {
            before.saturating_sub(WAYPOINTS_PER_SEEK * spacing)
        } else {
            before.saturating_sub(spacing)
        };
        let replay_from = self.position;
        let started = Instant::now();
        let mut laying = Duration::ZERO;
        while self.position < before {
            let i = self.position;
            if i >= lay_from && i.is_multiple_of(spacing) {
                self.lay_waypoint();
                laying += self.waypoint_cost;
            }
            let op = ops.get(i)?;
            self.state.advance(op);
            forget_if_last(&self.last_mention, i, op, &mut self.state);
            self.position += 1;
        }
        // Enough operations to time one: space waypoints so that replaying between two costs
        // what copying one does.
        let replayed = before - replay_from;
        if replayed >= 256 && !self.waypoint_cost.is_zero() && !self.waypoint_spacing_fixed {
            let per_op = started.elapsed().saturating_sub(laying)
                / u32::try_from(replayed).unwrap_or(u32::MAX);
            let ops = self.waypoint_cost.as_nanos() / per_op.as_nanos().max(1);
            self.waypoint_spacing = usize::try_from(ops).unwrap_or(usize::MAX).clamp(
                *WAYPOINT_SPACING_RANGE.start(),
                *WAYPOINT_SPACING_RANGE.end(),
            );
        }
        if cursor == 0 {
            return None;
        }
        if before >= lay_from && before.is_multiple_of(spacing) {
            self.lay_waypoint();
        }
        let op = ops.get(before)?;
        let step = self.state.apply(op, &mut Trail::on());
        forget_if_last(&self.last_mention, before, op, &mut self.state);
        self.position = cursor;
        Some(step)
    }

    /// Keeps the current state as a waypoint, starting the memory journals if they are off.
    fn lay_waypoint(&mut self) {
        if self
            .waypoints
            .last()
            .is_some_and(|w| w.step >= self.position)
        {
            return;
        }
        let started = Instant::now();
        let mut memory = HeapBytes::take(&mut self.state);
        // Waypoints marked in a journal that has since gone (this timeline is a copy, or a
        // checkpoint was restored) would undo the wrong writes in a new one.
        if memory.0.journal_mark().is_none() {
            self.waypoints.clear();
        }
        let mark = memory.mark();
        let side = self.state.clone();
        memory.put(&mut self.state);
        let Some(mark) = mark else {
            return;
        };
        self.waypoint_cost = started.elapsed();
        let bytes = side.side_bytes() + size_of::<Waypoint>();
        self.waypoints.push(Waypoint {
            step: self.position,
            side,
            mark,
            bytes,
        });
        // Over budget: drop the oldest, and the journal entries only it needed.
        let mut total: usize = self.waypoints.iter().map(|w| w.bytes).sum();
        while total > self.waypoint_bytes && self.waypoints.len() > 2 {
            total -= self.waypoints.remove(0).bytes;
            let oldest = self.waypoints[0].mark;
            self.state
                .heap_mut()
                .memory_slot()
                .forget_journal_before(oldest);
        }
    }

    /// Moves back to waypoint `k` (dropping the later ones); false when the journal no longer
    /// reaches it (this timeline is a clone, whose memory has no journal).
    fn restore_waypoint(&mut self, k: usize) -> bool {
        let Some(waypoint) = self.waypoints.get(k) else {
            return false;
        };
        let mut memory = HeapBytes::take(&mut self.state);
        if !memory.0.undo_to(waypoint.mark) {
            memory.put(&mut self.state);
            self.waypoints.clear();
            return false;
        }
        self.state = waypoint.side.clone();
        memory.put(&mut self.state);
        self.position = waypoint.step;
        self.waypoints.truncate(k + 1);
        true
    }

    /// Host bytes of working state kept to step back quickly (waypoints and the memory journal);
    /// not part of [`Self::recorded_bytes`].
    pub fn working_bytes(&self) -> usize {
        self.waypoints.iter().map(|w| w.bytes).sum::<usize>()
            + self.state.heap().memory().journal_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ViolationClass;

    /// `n` allocations of `size` bytes, ids 0..n.
    fn allocs(n: u64, size: u64) -> Vec<Op> {
        (0..n).map(|id| Op::Alloc { id, size, align: 0 }).collect()
    }

    #[test]
    fn side_by_side_runs_both_jobs_once() {
        let (mut left, mut right) = (0, 0);
        side_by_side(|| left += 1, || right += 1);
        assert_eq!((left, right), (1, 1));
    }

    #[test]
    fn last_mentions_are_the_same_for_small_and_huge_ids() {
        let ops = |spread: u64| -> Vec<Op> {
            let id = |k: u64| k * spread;
            vec![
                Op::Alloc {
                    id: id(1),
                    size: 8,
                    align: 0,
                },
                Op::Alloc {
                    id: id(2),
                    size: 8,
                    align: 0,
                },
                Op::Free { id: id(1) },
                Op::Mark { label: "x".into() },
                Op::Free { id: id(2) },
                Op::Alloc {
                    id: id(1),
                    size: 8,
                    align: 0,
                },
                Op::Free { id: id(3) },
                Op::Free { id: id(1) },
            ]
        };
        let wanted = vec![0b1101_0000];
        assert_eq!(last_mentions(&ops(1)), wanted);
        assert_eq!(last_mentions(&ops(1 << 40)), wanted);
    }

    fn record(kind: AllocatorKind, ops: &[Op]) -> Timeline {
        Timeline::record(
            kind,
            HeapConfig::default(),
            ops,
            &RecordOptions::default(),
            &mut |_, _, _| true,
        )
        .unwrap()
    }

    #[test]
    fn problems_name_their_steps_and_counters_follow_the_program() {
        let ops = vec![
            Op::Alloc {
                id: 1,
                size: 10,
                align: 0,
            },
            Op::Free { id: 1 },
            Op::Free { id: 1 },
            Op::Free { id: 7 },
            Op::Mark {
                label: "end".to_owned(),
            },
        ];
        let timeline = record(AllocatorKind::CheckedBump, &ops);
        assert_eq!(
            timeline.outcomes(),
            &[
                StepOutcome::Ok,
                StepOutcome::Ok,
                StepOutcome::Violation,
                StepOutcome::Skipped,
                StepOutcome::Ok
            ]
        );
        let steps: Vec<usize> = timeline.problems().iter().map(|p| p.step).collect();
        assert_eq!(steps, [2, 3]);
        assert_eq!(
            timeline.problems()[0].violations[0].class,
            ViolationClass::DoubleFree
        );
        assert_eq!(timeline.requested_live(0), Some(10));
        assert_eq!(timeline.requested_live(1), Some(0));
        assert_eq!(timeline.requested_live_max(0..5), Some(10));
        assert_eq!(timeline.requested_live_max(3..9), None);
    }

    #[test]
    fn counters_widen_past_32_bits_without_losing_earlier_values() {
        let mut column = Column::with_capacity(2);
        column.push(7);
        column.push(u64::from(u32::MAX) + 5);
        assert_eq!(column.get(0), Some(7));
        assert_eq!(column.get(1), Some(u64::from(u32::MAX) + 5));
        assert_eq!(column.max_in(0..2), Some(u64::from(u32::MAX) + 5));
    }

    #[test]
    fn seeking_back_to_the_start_gives_no_step_and_an_empty_heap() {
        let ops = allocs(100, 24);
        let mut timeline = record(AllocatorKind::Dlmalloc, &ops);
        assert!(timeline.seek(&ops, 100).is_some());
        assert_eq!(timeline.replay().heap().stats().live_blocks, 100);
        assert!(timeline.seek(&ops, 0).is_none());
        assert_eq!(timeline.replay().heap().stats().live_blocks, 0);
    }

    #[test]
    fn checkpoints_between_whole_ones_hold_deltas_that_thinning_merges() {
        // Blocks of mixed sizes, some freed: every few operations change a few headers.
        let mut ops = Vec::new();
        for id in 0..3000u64 {
            ops.push(Op::Alloc {
                id,
                size: 16 + id % 7 * 24,
                align: 0,
            });
            if id % 3 == 2 {
                ops.push(Op::Free { id: id - 1 });
            }
            // Now and then a double free, or a free of a block held long.
            if id % 50 == 0 && id >= 100 {
                ops.push(Op::Free { id: id - 98 });
            }
        }
        let mut last_mention = std::collections::HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            last_mention.insert(op.id().unwrap_or(0), i);
        }
        let record = |per_op| {
            let options = RecordOptions {
                checkpoint_bytes_per_op: per_op,
                min_spacing: 16,
                ..RecordOptions::default()
            };
            Timeline::record(
                AllocatorKind::Dlmalloc,
                HeapConfig::default(),
                &ops,
                &options,
                &mut |_, _, _| true,
            )
            .unwrap()
        };
        // Budgets that thin the checkpoints more or less often, so that whole checkpoints are
        // dropped before deltas, between them and at the end.
        let roomy = record(1 << 20);
        let thinned: Vec<Timeline> = [70, 110, 170].into_iter().map(record).collect();
        for timeline in std::iter::once(&roomy).chain(&thinned) {
            let heap_deltas = timeline
                .checkpoints
                .iter()
                .filter(|c| matches!(c.bulk.memory, PackedHeap::Delta(_)))
                .count();
            let table_deltas = timeline
                .checkpoints
                .iter()
                .filter(|c| matches!(c.bulk.tables, PackedTables::Delta(_)))
                .count();
            let count = timeline.checkpoint_count();
            assert!(heap_deltas > count / 2, "{heap_deltas} heap deltas");
            assert!(table_deltas > count / 2, "{table_deltas} table deltas");
        }
        assert!(thinned[0].checkpoint_count() < roomy.checkpoint_count() / 2);
        // Every checkpoint, restored, is the state a fresh replay reaches there.
        for timeline in std::iter::once(&roomy).chain(&thinned) {
            let mut fresh = Replayer::new(
                AllocatorKind::Dlmalloc
                    .build(&HeapConfig::default())
                    .unwrap(),
            );
            let mut at = 0;
            for (k, checkpoint) in timeline.checkpoints.iter().enumerate() {
                for op in &ops[at..checkpoint.step] {
                    fresh.apply(op, &mut Trail::off());
                }
                at = checkpoint.step;
                let mut restored = checkpoint.replay.clone();
                restore_into(&timeline.checkpoints, k, &mut restored);
                let mut reused = timeline.replay().clone();
                restore_into(&timeline.checkpoints, k, &mut reused);
                for state in [&restored, &reused] {
                    assert_eq!(state.heap().stats(), fresh.heap().stats(), "{k}");
                    assert_eq!(state.heap().memory(), fresh.heap().memory(), "{k}");
                    // The tables: the ledger's requests show in the layout, the ids in what
                    // each names, and dlmalloc's freed set in which frees are double (of the
                    // ids the trace names again: the timeline forgets the others).
                    let layouts_agree = state.heap().inspect() == fresh.heap().inspect();
                    assert!(layouts_agree, "checkpoint {k}: the layouts differ");
                    let (mut again, mut twice) = (state.clone(), fresh.clone());
                    let named_again = |id: &u64| last_mention[id] >= checkpoint.step;
                    for id in (0..3000).step_by(5).filter(named_again) {
                        assert_eq!(state.held(id), fresh.held(id), "checkpoint {k}, #{id}");
                        let op = Op::Free { id };
                        assert_eq!(
                            again.apply(&op, &mut Trail::off()),
                            twice.apply(&op, &mut Trail::off()),
                            "checkpoint {k}, free #{id}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn checkpoints_stay_evenly_spaced_within_the_budget() {
        let ops = allocs(100, 24);
        let generous = RecordOptions {
            checkpoint_bytes_per_op: 1 << 20,
            min_spacing: 10,
            ..RecordOptions::default()
        };
        let tight = RecordOptions {
            checkpoint_bytes_per_op: 1,
            min_spacing: 10,
            ..RecordOptions::default()
        };
        for (options, expected) in [(generous, 11), (tight, 1)] {
            let timeline = Timeline::record(
                AllocatorKind::Dlmalloc,
                HeapConfig::default(),
                &ops,
                &options,
                &mut |_, _, _| true,
            )
            .unwrap();
            assert_eq!(timeline.checkpoint_count(), expected);
            let steps: Vec<usize> = timeline.checkpoints.iter().map(|c| c.step).collect();
            let spacing = steps.get(1).copied().unwrap_or(1);
            assert!(
                steps.iter().enumerate().all(|(i, &s)| s == i * spacing),
                "{steps:?}"
            );
        }
    }
}

//! The linear memory every model keeps its heap in.
//!
//! Headers, footers and free-list links are stored here as little-endian
//! bytes, exactly where the real allocator would write them, so that a
//! visualiser (or an emulated guest) reads the same bytes the allocator does.

use crate::Addr;

/// An access outside the currently mapped bytes of a [`Memory`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access of {len} B at {addr:#x} is outside memory [{start:#x}, {end:#x})")]
pub struct OutOfBounds {
    /// First byte of the access.
    pub addr: Addr,
    /// Length of the access in bytes.
    pub len: u64,
    /// First mapped address.
    pub start: Addr,
    /// One past the last mapped address.
    pub end: Addr,
}

/// A contiguous, zero-initialised byte range `[base, base + len)` that can grow
/// at its end (like wasm memory, `sbrk`, or a page-granular `mmap` arena), or at its start
/// (like the region below Linux's `mmap_base`, which fills top-down).
pub struct Memory {
    base: Addr,
    /// The buffer the mapping lies in, at `front..front + len`, so that the mapping grows
    /// either way by moving its bounds (until the buffer is full), and a restore lands on any
    /// base the buffer covers without moving a byte: a heap growing downwards (dlmalloc's
    /// mmaps) has a different base at each stage. Bytes outside the mapping may be left over
    /// from a longer one (a restore does not clear them); they lie in dirty lines, and are
    /// cleared when the mapping grows over them.
    bytes: Vec<u8>,
    /// Where the mapping starts in `bytes`: a multiple of [`LINE`], so that a line of the
    /// buffer is a line of the mapping.
    front: usize,
    len: usize,
    /// Lines of the buffer that may hold non-zero bytes, so that clearing and packing touch
    /// only those. Every byte outside them is zero.
    dirty: DirtyLines,
    /// Undo log of writes, kept while a timeline may step back over them.
    journal: Option<Box<Journal>>,
    /// Lines written since [`Self::track_changes`] was last called, while a timeline records
    /// deltas: what [`Self::delta_from`] compares.
    touched: Option<Box<DirtyLines>>,
}

/// Bytes per line of [`DirtyLines`]: a cache line, so clearing one costs about what reading
/// or writing a word in it would.
const LINE: usize = 64;

/// Which [`LINE`]-byte lines of a memory were written since it was last all zero: every byte
/// outside them is zero. Restoring a checkpoint clears only these lines instead of the whole
/// mapping (a 64 MiB heap whose headers fill a few MiB), and packing skips the rest unread.
#[derive(Debug, Clone, Default)]
struct DirtyLines {
    bits: Vec<u64>,
}

impl DirtyLines {
    /// Marks the lines holding the byte range `range`: the common case of a range inside one
    /// line already covered by the bits is kept short enough to inline into every write.
    #[inline(always)]
    fn mark(&mut self, range: &std::ops::Range<usize>) {
        if let Some(last) = range.end.checked_sub(1)
            && range.start / LINE == last / LINE
            && let Some(bits) = self.bits.get_mut(last / LINE / 64)
        {
            *bits |= 1 << (last / LINE % 64);
            return;
        }
        self.mark_range(range);
    }

    /// Makes room for `lines` lines, so that marks below skip growing the bits.
    fn cover(&mut self, lines: usize) {
        let words = lines.div_ceil(64);
        if words > self.bits.len() {
            self.bits.resize(words, 0);
        }
    }

    /// Marks the lines holding the byte range `range`, growing the bits as needed.
    #[inline(never)]
    fn mark_range(&mut self, range: &std::ops::Range<usize>) {
        if range.is_empty() {
            return;
        }
        let (first, last) = (range.start / LINE, (range.end - 1) / LINE);
        let (first_word, last_word) = (first / 64, last / 64);
        if last_word >= self.bits.len() {
            self.bits.resize(last_word + 1, 0);
        }
        // Whole words at a time: a fill of a block marks a run of lines.
        let from_first = u64::MAX << (first % 64);
        let to_last = u64::MAX >> (63 - last % 64);
        if first_word == last_word {
            self.bits[first_word] |= from_first & to_last;
        } else {
            self.bits[first_word] |= from_first;
            self.bits[first_word + 1..last_word].fill(u64::MAX);
            self.bits[last_word] |= to_last;
        }
    }

    #[inline]
    fn is_marked(&self, line: usize) -> bool {
        self.bits
            .get(line / 64)
            .is_some_and(|w| w & (1 << (line % 64)) != 0)
    }

    /// Unmarks the lines `lines` (known to be zero again).
    fn unmark(&mut self, lines: std::ops::Range<usize>) {
        if lines.is_empty() {
            return;
        }
        let (first, last) = (lines.start, lines.end - 1);
        let (first_word, last_word) = (first / 64, (last / 64).min(self.bits.len()));
        let from_first = u64::MAX << (first % 64);
        let to_last = u64::MAX >> (63 - last % 64);
        for (i, word) in self
            .bits
            .iter_mut()
            .enumerate()
            .take(last_word + 1)
            .skip(first_word)
        {
            let mut mask = u64::MAX;
            if i == first_word {
                mask &= from_first;
            }
            if i == last / 64 {
                mask &= to_last;
            }
            *word &= !mask;
        }
    }

    /// The first line at or after `line` that may be dirty, below `lines`.
    fn next_marked(&self, line: usize, lines: usize) -> Option<usize> {
        if line >= lines {
            return None;
        }
        let mut word = line / 64;
        let mut bits = self.bits.get(word)? & (u64::MAX << (line % 64));
        // Words up to the one holding the last line asked about: a gap between two runs
        // being restored must not scan on through clean lines to the heap's end.
        let last_word = (lines - 1) / 64;
        loop {
            if bits != 0 {
                let found = word * 64 + bits.trailing_zeros() as usize;
                return (found < lines).then_some(found);
            }
            if word >= last_word {
                return None;
            }
            word += 1;
            bits = *self.bits.get(word)?;
        }
    }

    /// The first line at or after `line` that is not marked, or `lines` if there is none
    /// below it.
    fn next_clear(&self, line: usize, lines: usize) -> usize {
        let mut word = line / 64;
        let Some(&first) = self.bits.get(word) else {
            return line.min(lines);
        };
        let mut clear = !first & (u64::MAX << (line % 64));
        loop {
            if clear != 0 {
                return (word * 64 + clear.trailing_zeros() as usize).min(lines);
            }
            word += 1;
            if word * 64 >= lines {
                return lines;
            }
            match self.bits.get(word) {
                Some(&bits) => clear = !bits,
                None => return (word * 64).min(lines),
            }
        }
    }

    /// These lines among `lines`, for bytes moved `by` bytes up (down when negative): a move
    /// by part of a line marks both lines each one straddles.
    fn moved(&self, lines: std::ops::Range<usize>, by: isize) -> DirtyLines {
        let mut moved = DirtyLines::default();
        let mut next = lines.start;
        while let Some(line) = self.next_marked(next, lines.end) {
            next = line + 1;
            if let Some(start) = (line * LINE).checked_add_signed(by) {
                moved.mark_range(&(start..start + LINE));
            }
        }
        moved
    }

    fn clear(&mut self) {
        self.bits.clear();
    }
}

/// The bytes a memory had before each write since its journal started, so that writes can be
/// undone in reverse order down to any earlier [`Memory::journal_mark`].
#[derive(Debug, Default)]
struct Journal {
    entries: Vec<Undo>,
    /// Old bytes of the [`Undo::Bytes`] entries, in entry order.
    old: Vec<u8>,
    /// Entries forgotten from the front: marks count from the journal's start.
    forgotten: usize,
}

#[derive(Debug, Clone, Copy)]
enum Undo {
    /// `len` bytes at `offset` were overwritten; their old values end the journal's `old`.
    Bytes { offset: usize, len: usize },
    /// The mapping grew at its end from `len` bytes.
    GrewUp { len: usize },
    /// The mapping grew at its start by `extra` bytes.
    GrewDown { extra: usize },
}

impl Clone for Memory {
    /// A copy of the bytes, in a buffer just long enough for them; the journal stays with the
    /// original.
    fn clone(&self) -> Self {
        let (bytes, dirty) = self.rebuffered(0, self.len);
        Self {
            base: self.base,
            bytes,
            front: 0,
            len: self.len,
            dirty,
            journal: None,
            touched: None,
        }
    }
}

impl PartialEq for Memory {
    fn eq(&self, other: &Self) -> bool {
        self.base == other.base && self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Memory {}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("base", &format_args!("{:#x}", self.base))
            .field("len", &self.len)
            .finish()
    }
}

impl Memory {
    /// A memory of `len` zero bytes starting at `base`.
    pub fn new(base: Addr, len: u64) -> Self {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        Self {
            base,
            bytes: vec![0; len],
            front: 0,
            len,
            dirty: DirtyLines::default(),
            journal: None,
            touched: None,
        }
    }

    /// The mapping's bytes, with `slack` zero bytes before them and `total` bytes in all, in a
    /// new buffer, and the lines that may be dirty there. Only dirty lines are copied: the
    /// system's zeroed pages cost nothing until written.
    fn rebuffered(&self, slack: usize, total: usize) -> (Vec<u8>, DirtyLines) {
        let mut bytes = vec![0; total];
        let end = self.front + self.len;
        let mut line = self.front / LINE;
        let lines = end.div_ceil(LINE);
        while let Some(first) = self.dirty.next_marked(line, lines) {
            let clean = self.dirty.next_clear(first, lines);
            let (from, to) = ((first * LINE).max(self.front), (clean * LINE).min(end));
            let at = slack + (from - self.front);
            bytes[at..at + (to - from)].copy_from_slice(&self.bytes[from..to]);
            line = clean;
        }
        // Only the mapping's lines move: what lay outside it is not copied.
        let by = slack as isize - self.front as isize;
        (bytes, self.dirty.moved(self.front / LINE..lines, by))
    }

    /// Moves the mapping into a new buffer of `total` bytes, `slack` of them before it.
    fn rebuffer(&mut self, slack: usize, total: usize) {
        let (bytes, dirty) = self.rebuffered(slack, total);
        let by = slack as isize - self.front as isize;
        let lines = self.front / LINE..(self.front + self.len).div_ceil(LINE);
        if let Some(touched) = self.touched.as_mut() {
            **touched = touched.moved(lines, by);
        }
        self.bytes = bytes;
        self.dirty = dirty;
        self.front = slack;
    }

    /// Starts (or restarts, empty) recording the old bytes of every write, so that
    /// [`Self::undo_to`] can take them back.
    pub(crate) fn start_journal(&mut self) {
        self.journal = Some(Box::default());
    }

    /// A position in the journal to undo back to (`None` when no journal is kept).
    pub(crate) fn journal_mark(&self) -> Option<usize> {
        self.journal.as_ref().map(|j| j.forgotten + j.entries.len())
    }

    /// Host bytes the journal holds.
    pub(crate) fn journal_bytes(&self) -> usize {
        self.journal.as_ref().map_or(0, |j| {
            j.entries.capacity() * size_of::<Undo>() + j.old.capacity()
        })
    }

    /// Undoes every write recorded after `mark`. False (and nothing undone) when the journal
    /// does not reach back that far.
    pub(crate) fn undo_to(&mut self, mark: usize) -> bool {
        // The lines undone here are not tracked.
        self.touched = None;
        let Some(mut journal) = self.journal.take() else {
            return false;
        };
        if mark < journal.forgotten || mark > journal.forgotten + journal.entries.len() {
            self.journal = Some(journal);
            return false;
        }
        while journal.forgotten + journal.entries.len() > mark {
            let Some(undo) = journal.entries.pop() else {
                break;
            };
            // Growths are undone after the writes that followed them: the bytes they left
            // outside the mapping are zero again, as they were before.
            match undo {
                Undo::Bytes { offset, len } => {
                    let from = journal.old.len() - len;
                    let at = self.front + offset;
                    self.bytes[at..at + len].copy_from_slice(&journal.old[from..]);
                    journal.old.truncate(from);
                }
                Undo::GrewUp { len } => self.len = len,
                Undo::GrewDown { extra } => {
                    self.front += extra;
                    self.len -= extra;
                    self.base += extra as u64;
                    if !self.front.is_multiple_of(LINE) {
                        // It grew by part of a line: back at a line, as mappings start.
                        let slack = self.front.next_multiple_of(LINE);
                        self.rebuffer(slack, slack + self.len);
                    }
                }
            }
        }
        self.journal = Some(journal);
        true
    }

    /// Forgets the journal's entries before `mark`: nothing can be undone past it any more.
    pub(crate) fn forget_journal_before(&mut self, mark: usize) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let n = mark
            .saturating_sub(journal.forgotten)
            .min(journal.entries.len());
        let old_bytes: usize = journal.entries[..n]
            .iter()
            .map(|u| match u {
                Undo::Bytes { len, .. } => *len,
                _ => 0,
            })
            .sum();
        journal.entries.drain(..n);
        journal.old.drain(..old_bytes);
        journal.forgotten += n;
    }

    /// Marks `range` (of the buffer) dirty before a write, and records its old bytes when
    /// journaling.
    #[inline]
    fn note_write(&mut self, range: &std::ops::Range<usize>) {
        self.dirty.mark(range);
        if let Some(touched) = self.touched.as_mut() {
            touched.mark(range);
        }
        if let Some(journal) = self.journal.as_mut() {
            journal.entries.push(Undo::Bytes {
                offset: range.start - self.front,
                len: range.len(),
            });
            journal.old.extend_from_slice(&self.bytes[range.clone()]);
        }
    }

    /// First mapped address.
    pub fn base(&self) -> Addr {
        self.base
    }

    /// One past the last mapped address.
    pub fn end(&self) -> Addr {
        self.base + self.len()
    }

    /// Number of mapped bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether no byte is mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Grows (never shrinks) the mapping to `new_len` bytes; new bytes are zero.
    pub fn grow_to(&mut self, new_len: u64) {
        let new_len = usize::try_from(new_len).unwrap_or(usize::MAX);
        if new_len > self.len {
            if let Some(journal) = self.journal.as_mut() {
                journal.entries.push(Undo::GrewUp { len: self.len });
            }
            self.extend_to(new_len);
        }
    }

    /// Moves the mapping's end to `new_len` bytes past its start, clearing what a longer
    /// mapping left there, or into a bigger buffer when this one ends before (at least twice
    /// the length, so that a heap growing a page at a time moves only now and then).
    fn extend_to(&mut self, new_len: usize) {
        if self.front + new_len > self.bytes.len() {
            let total = self.front + new_len.max(2 * self.len);
            self.rebuffer(self.front, total);
        } else {
            self.zero_gap(self.front + self.len, self.front + new_len);
        }
        self.len = new_len;
    }

    /// Grows (never shrinks) the mapping downwards so that it starts at `new_base`; new bytes are
    /// zero. For systems that place mappings top-down, as Linux's `mmap` does.
    pub fn grow_down_to(&mut self, new_base: Addr) {
        if new_base >= self.base {
            return;
        }
        let Some(extra) = usize::try_from(self.base - new_base).ok() else {
            return;
        };
        let Some(len) = extra.checked_add(self.len) else {
            return;
        };
        if extra > self.front || !(self.front - extra).is_multiple_of(LINE) {
            // Room below for as much again, so that a heap doubling downwards moves only now
            // and then.
            let room = len.max(LINE).next_multiple_of(LINE);
            self.rebuffer(room + extra, room + extra + self.len);
        }
        self.zero_gap(self.front - extra, self.front);
        self.front -= extra;
        self.len = len;
        self.base = new_base;
        if let Some(journal) = self.journal.as_mut() {
            journal.entries.push(Undo::GrewDown { extra });
        }
    }

    /// Whether `[addr, addr + len)` lies inside the mapping.
    pub fn contains(&self, addr: Addr, len: u64) -> bool {
        addr >= self.base && addr.checked_add(len).is_some_and(|end| end <= self.end())
    }

    /// Where `[addr, addr + len)` lies in the buffer.
    fn range(&self, addr: Addr, len: u64) -> Result<std::ops::Range<usize>, OutOfBounds> {
        if !self.contains(addr, len) {
            return Err(OutOfBounds {
                addr,
                len,
                start: self.base,
                end: self.end(),
            });
        }
        // Both fit in usize: the mapping itself is in a Vec.
        let start = self.front + (addr - self.base) as usize;
        Ok(start..start + len as usize)
    }

    /// The mapped bytes `[addr, addr + len)`.
    pub fn slice(&self, addr: Addr, len: u64) -> Result<&[u8], OutOfBounds> {
        let range = self.range(addr, len)?;
        Ok(&self.bytes[range])
    }

    /// The mapped bytes `[addr, addr + len)`, writable.
    pub fn slice_mut(&mut self, addr: Addr, len: u64) -> Result<&mut [u8], OutOfBounds> {
        let range = self.range(addr, len)?;
        self.note_write(&range);
        Ok(&mut self.bytes[range])
    }

    /// All mapped bytes, starting at [`Self::base`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.front..self.front + self.len]
    }

    fn read_array<const N: usize>(&self, addr: Addr) -> Result<[u8; N], OutOfBounds> {
        let mut out = [0; N];
        out.copy_from_slice(self.slice(addr, N as u64)?);
        Ok(out)
    }

    /// Reads a little-endian `u32`.
    pub fn read_u32(&self, addr: Addr) -> Result<u32, OutOfBounds> {
        self.read_array(addr).map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn read_u64(&self, addr: Addr) -> Result<u64, OutOfBounds> {
        self.read_array(addr).map(u64::from_le_bytes)
    }

    /// Writes a little-endian `u32`.
    pub fn write_u32(&mut self, addr: Addr, value: u32) -> Result<(), OutOfBounds> {
        self.write(addr, &value.to_le_bytes())
    }

    /// Writes a little-endian `u64`.
    pub fn write_u64(&mut self, addr: Addr, value: u64) -> Result<(), OutOfBounds> {
        self.write(addr, &value.to_le_bytes())
    }

    /// Copies `data` to `addr`.
    pub fn write(&mut self, addr: Addr, data: &[u8]) -> Result<(), OutOfBounds> {
        self.slice_mut(addr, data.len() as u64)?
            .copy_from_slice(data);
        Ok(())
    }

    /// Sets `len` bytes at `addr` to `byte`.
    pub fn fill(&mut self, addr: Addr, len: u64, byte: u8) -> Result<(), OutOfBounds> {
        self.slice_mut(addr, len)?.fill(byte);
        Ok(())
    }

    /// Copies `len` bytes from `src` to `dst` (the ranges may overlap, like `memmove`).
    pub fn copy_within(&mut self, src: Addr, dst: Addr, len: u64) -> Result<(), OutOfBounds> {
        let from = self.range(src, len)?;
        let to = self.range(dst, len)?;
        self.note_write(&to);
        self.bytes.copy_within(from, to.start);
        Ok(())
    }
}

/// A [`Memory`] stored compactly: only its runs of non-zero 8-byte words, delta-encoded, with
/// words that repeat one byte stored once per run, and runs of words whose high halves are
/// among a few common ones (zero, the heap's own addresses) stored as their low halves.
///
/// A heap is mostly zero payload with headers and links sprinkled through it, and what a
/// program writes is often one byte repeated, so a packed copy is a small fraction of the
/// memory's length: this is what makes timeline checkpoints cheap. Headers and links are
/// sizes, flags and addresses into the heap: their high halves take only a few values.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedMemory {
    base: Addr,
    len: u64,
    /// `[zero words before the run][words in the run << 2 | kind][the run]`, where the run
    /// is its bytes (`LITERAL`), its one repeated byte (`FILL`), or a 2-bit index into
    /// `highs` per word, four to a byte, then each word's low half (`NARROW`); varints,
    /// repeated.
    runs: Vec<u8>,
    /// The high halves `NARROW` words may have; the first is always zero.
    highs: [u32; HIGHS],
}

impl std::fmt::Debug for PackedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMemory")
            .field("base", &format_args!("{:#x}", self.base))
            .field("len", &self.len)
            .field("packed", &self.runs.len())
            .field("highs", &format_args!("{:x?}", self.highs))
            .finish()
    }
}

const WORD: usize = 8;

pub(crate) fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a varint at `at`, moving past it. Most are one byte (small gaps and counts): that
/// case is kept short enough to inline into the decoders' loops.
#[inline(always)]
pub(crate) fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let byte = *bytes.get(*at)?;
    if byte < 0x80 {
        *at += 1;
        return Some(u64::from(byte));
    }
    // Two bytes: most gaps and sizes in a packed table.
    if let Some(&next) = bytes.get(*at + 1)
        && next < 0x80
    {
        *at += 2;
        return Some(u64::from(byte & 0x7f) | u64::from(next) << 7);
    }
    read_long_varint(bytes, at)
}

#[inline(never)]
fn read_long_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

fn is_zero(bytes: &[u8]) -> bool {
    // Folding with OR lets the compiler vectorise the test.
    bytes.iter().fold(0u8, |acc, b| acc | b) == 0
}

/// Run kinds, in the low two bits of a run's length: words copied as they are, words that all
/// repeat one byte (stored once), or words stored as their low halves and an index into the
/// common high halves.
const LITERAL: u64 = 0;
const FILL: u64 = 1;
const NARROW: u64 = 2;
/// Words set to zero (only in a [`MemoryDelta`]; a packed memory skips them).
const ZERO: u64 = 3;
const KIND_BITS: u32 = 2;

/// Common high halves a packed memory keeps (a `NARROW` word's index takes two bits).
const HIGHS: usize = 4;

/// The byte a whole word repeats (a shadow state, a fill pattern), if it is one and not zero.
fn repeated_byte(word: u64) -> Option<u8> {
    let byte = word as u8;
    (byte != 0 && word == u64::from(byte) * 0x0101_0101_0101_0101).then_some(byte)
}

/// Builds runs (of a [`PackedMemory`] or a [`MemoryDelta`]) from words given in increasing
/// order; a run goes on only through consecutive words, and the words between two runs are
/// skipped (zero in a packed memory, unchanged in a delta).
struct Packer {
    /// Length of the memory in bytes (its last word may be cut short).
    len: usize,
    runs: Vec<u8>,
    /// End of the last run written.
    last_end: usize,
    /// The run being built: its first word, one past its last, and its repeated byte if a
    /// fill (zero for a run of words set to zero, which only deltas have).
    open: Option<(usize, usize, Option<u8>)>,
    /// The open literal run's words.
    words: Vec<u64>,
    /// The common high halves met so far (taken as they come, the first always zero), and
    /// how many.
    highs: [u32; HIGHS],
    highs_used: usize,
}

impl Packer {
    fn new(len: usize) -> Self {
        Self {
            len,
            runs: Vec::new(),
            last_end: 0,
            open: None,
            words: Vec::new(),
            highs: [0; HIGHS],
            highs_used: 1,
        }
    }

    /// Whether word `w` lies wholly inside the memory.
    fn whole(&self, w: usize) -> bool {
        (w + 1).saturating_mul(WORD) <= self.len
    }

    /// The index of `high` among the common high halves, taking a free slot for a new one.
    fn high_index(&mut self, high: u32) -> Option<u8> {
        let used = &self.highs[..self.highs_used];
        if let Some(i) = used.iter().position(|&h| h == high) {
            return u8::try_from(i).ok();
        }
        if self.highs_used == HIGHS {
            return None;
        }
        self.highs[self.highs_used] = high;
        self.highs_used += 1;
        u8::try_from(self.highs_used - 1).ok()
    }

    /// Appends the open literal run as a `NARROW` run, if every word is whole and its high
    /// half is common (or can become so); otherwise writes nothing and returns false.
    fn push_narrow(&mut self, start: usize, end: usize) -> bool {
        let (saved_highs, saved_used) = (self.highs, self.highs_used);
        if !self.whole(end - 1) {
            return false;
        }
        for k in 0..self.words.len() {
            if self.high_index((self.words[k] >> 32) as u32).is_none() {
                // Slots taken for this run would be wasted on a literal one.
                (self.highs, self.highs_used) = (saved_highs, saved_used);
                return false;
            }
        }
        push_varint(&mut self.runs, ((end - start) as u64) << KIND_BITS | NARROW);
        for first in (0..self.words.len()).step_by(4) {
            let mut tags = 0u8;
            for k in first..(first + 4).min(self.words.len()) {
                let tag = self.high_index((self.words[k] >> 32) as u32).unwrap_or(0);
                tags |= tag << (2 * (k - first));
            }
            self.runs.push(tags);
        }
        for &word in &self.words {
            self.runs.extend_from_slice(&(word as u32).to_le_bytes());
        }
        true
    }

    /// Adds word `w` with its value (zero-padded past the memory's end). A zero word ends the
    /// open run: it is skipped, and reads back as zero from a packed memory.
    fn push(&mut self, w: usize, value: u64) {
        if value == 0 {
            self.close();
            return;
        }
        let fill = repeated_byte(value).filter(|_| self.whole(w));
        match self.open {
            Some((start, end, Some(byte))) if end == w && fill == Some(byte) => {
                self.open = Some((start, w + 1, Some(byte)));
            }
            Some((start, end, None)) if end == w => {
                // Two equal repeated-byte words in a row are worth a fill of their own.
                if fill.is_some() && self.words.last() == Some(&value) {
                    self.words.pop();
                    self.open = Some((start, w - 1, None));
                    self.close();
                    self.open = Some((w - 1, w + 1, fill));
                } else {
                    self.open = Some((start, w + 1, None));
                    self.words.push(value);
                }
            }
            _ => {
                self.close();
                self.open = Some((w, w + 1, None));
                self.words.push(value);
            }
        }
    }

    /// Adds word `w` of a delta: its new value, which may be zero.
    fn push_changed(&mut self, w: usize, value: u64) {
        if value != 0 {
            self.push(w, value);
            return;
        }
        match self.open {
            Some((start, end, Some(0))) if end == w => self.open = Some((start, w + 1, Some(0))),
            _ => {
                self.close();
                self.open = Some((w, w + 1, Some(0)));
            }
        }
    }

    fn close(&mut self) {
        let Some((start, end, fill)) = self.open.take() else {
            return;
        };
        if start == end {
            self.words.clear();
            return;
        }
        push_varint(&mut self.runs, (start - self.last_end) as u64);
        let count = ((end - start) as u64) << KIND_BITS;
        match fill {
            Some(0) => push_varint(&mut self.runs, count | ZERO),
            Some(byte) => {
                push_varint(&mut self.runs, count | FILL);
                self.runs.push(byte);
            }
            None if self.push_narrow(start, end) => {}
            None => {
                push_varint(&mut self.runs, count | LITERAL);
                let last = self.words.len() - 1;
                for (k, word) in self.words.iter().enumerate() {
                    let bytes = word.to_le_bytes();
                    // The memory's last word may be cut short.
                    let n = if k == last {
                        (self.len - (start + k) * WORD).min(WORD)
                    } else {
                        WORD
                    };
                    self.runs.extend_from_slice(&bytes[..n]);
                }
            }
        }
        self.words.clear();
        self.last_end = end;
    }

    /// The runs, closed and trimmed (a checkpoint keeps them for the whole session).
    fn finish(mut self) -> (Vec<u8>, [u32; HIGHS]) {
        self.close();
        self.runs.shrink_to_fit();
        (self.runs, self.highs)
    }
}

/// Word `w` of `bytes`, zero-padded past the end.
fn word_at(bytes: &[u8], w: usize) -> u64 {
    let start = w * WORD;
    match bytes.get(start..start + WORD) {
        Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => {
            let mut padded = [0u8; WORD];
            let tail = bytes.get(start..).unwrap_or(&[]);
            padded[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(padded)
        }
    }
}

impl Memory {
    /// A packed copy of this memory.
    pub fn pack(&self) -> PackedMemory {
        let bytes = self.as_bytes();
        let mut packer = Packer::new(bytes.len());
        let words = bytes.len().div_ceil(WORD);
        // Lines never written are zero: only the dirty ones are read.
        for dirty in self.dirty_lines() {
            let first = dirty * (LINE / WORD);
            let last = (first + LINE / WORD).min(words);
            // A line written and cleared again: one wide test instead of eight.
            let zero_line = bytes
                .get(dirty * LINE..(dirty + 1) * LINE)
                .is_some_and(is_zero);
            if !zero_line {
                for w in first..last {
                    packer.push(w, word_at(bytes, w));
                }
            }
        }
        let (runs, highs) = packer.finish();
        PackedMemory {
            base: self.base,
            len: self.len(),
            runs,
            highs,
        }
    }

    /// The lines of the mapping (counted from its start) that may hold non-zero bytes.
    fn dirty_lines(&self) -> impl Iterator<Item = usize> + '_ {
        let skip = self.front / LINE;
        let lines = (self.front + self.len).div_ceil(LINE);
        let mut next = skip;
        std::iter::from_fn(move || {
            let line = self.dirty.next_marked(next, lines)?;
            next = line + 1;
            Some(line - skip)
        })
    }
}

impl PackedMemory {
    /// Bytes this packed copy occupies.
    pub fn packed_bytes(&self) -> usize {
        self.runs.capacity() + size_of::<Self>()
    }

    /// The memory this was packed from.
    pub fn unpack(&self) -> Memory {
        // `vec![0; n]` asks the system for zeroed pages, which cost nothing until written.
        let mut memory = Memory::new(self.base, self.len);
        self.write_runs(&mut memory);
        memory
    }

    /// Turns `memory` into the memory this was packed from, reusing its buffer and clearing
    /// only the lines written since it was last all zero (a restore costs what the two states
    /// hold, not the mapping's length).
    pub fn unpack_into(&self, memory: &mut Memory) {
        self.unpack_sized_into(memory, self.len);
    }

    /// Length of the memory this was packed from.
    pub fn memory_len(&self) -> u64 {
        self.len
    }

    /// [`Self::unpack_into`], with the memory `len` bytes long (at least the packed length:
    /// the bytes past it are zero), so that deltas applied next need not grow it.
    pub fn unpack_sized_into(&self, memory: &mut Memory, len: u64) {
        let len = usize::try_from(len.max(self.len)).unwrap_or(usize::MAX);
        // A journal of the old contents would undo into the wrong bytes, and the lines
        // written here are not tracked.
        memory.journal = None;
        memory.touched = None;
        // Where this base lies in the memory's buffer, if the buffer holds the whole mapping
        // there: then only the lines written before and the words written now are touched.
        let front = (i128::from(self.base) - i128::from(memory.base))
            .checked_add(memory.front as i128)
            .and_then(|front| usize::try_from(front).ok())
            .filter(|&front| {
                front.is_multiple_of(LINE)
                    && front
                        .checked_add(len)
                        .is_some_and(|end| end <= memory.bytes.len())
            });
        if let Some(front) = front {
            memory.base = self.base;
            memory.front = front;
            memory.len = len;
            overwrite_runs(&self.runs, &self.highs, memory, self.len);
        } else {
            // A fresh buffer: the system's zeroed pages cost nothing until written, where
            // growing a smaller one would copy it and fill the rest. A heap found lower
            // than before grows downwards: room below it keeps the next such restores in it.
            let room = if self.base < memory.base {
                len.next_multiple_of(LINE)
            } else {
                0
            };
            memory.base = self.base;
            memory.bytes = vec![0; room + len];
            memory.front = room;
            memory.len = len;
            memory.dirty.clear();
            self.write_runs(memory);
        }
    }

    fn write_runs(&self, memory: &mut Memory) {
        write_runs(&self.runs, &self.highs, memory, self.len);
    }
}

/// The words of a memory that changed since an earlier state of it (same base, no longer),
/// packed like a [`PackedMemory`]: gaps between runs are words left as they were, and words
/// set to zero have runs of their own. What a checkpoint between two full ones keeps of the
/// heap: a few thousand operations change a small part of a heap's words.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MemoryDelta {
    len: u64,
    runs: Vec<u8>,
    highs: [u32; HIGHS],
}

impl std::fmt::Debug for MemoryDelta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDelta")
            .field("len", &self.len)
            .field("packed", &self.runs.len())
            .finish()
    }
}

impl Memory {
    /// Starts (or restarts) keeping track of the lines written from now on, so that a
    /// [`Self::delta_from`] a copy taken now reads only those.
    pub fn track_changes(&mut self) {
        match self.touched.as_mut() {
            Some(touched) => touched.clear(),
            None => self.touched = Some(Box::default()),
        }
    }

    /// What changed from `earlier`, which must be this memory at an earlier time that it
    /// only grew from at its end (`None` when it is not: another base, or longer). When
    /// [`Self::track_changes`] was called as `earlier` was copied, and nothing but writes
    /// changed the memory since, only the lines written since are compared.
    pub fn delta_from(&self, earlier: &Memory) -> Option<MemoryDelta> {
        if earlier.base != self.base || earlier.len > self.len {
            return None;
        }
        let (bytes, earlier_bytes) = (self.as_bytes(), earlier.as_bytes());
        let len = bytes.len();
        let words = len.div_ceil(WORD);
        let lines = len.div_ceil(LINE);
        let mut packer = Packer::new(len);
        // Outside the lines either memory marks, both are zero; outside the lines written
        // since `earlier`, both are the same. Each marks lines of its own buffer.
        let (mine, theirs) = match self.touched.as_deref() {
            Some(touched) => ((touched, self.front), (touched, self.front)),
            None => ((&self.dirty, self.front), (&earlier.dirty, earlier.front)),
        };
        let next_marked = |(dirty, front): (&DirtyLines, usize), line: usize| {
            let skip = front / LINE;
            dirty
                .next_marked(line + skip, lines + skip)
                .map(|found| found - skip)
        };
        let mut line = 0;
        loop {
            let next = match (next_marked(mine, line), next_marked(theirs, line)) {
                (None, None) => break,
                (Some(a), None) | (None, Some(a)) => a,
                (Some(a), Some(b)) => a.min(b),
            };
            line = next + 1;
            let range = next * LINE..((next + 1) * LINE).min(len);
            if earlier_bytes.get(range.clone()) == Some(&bytes[range.clone()]) {
                continue;
            }
            for w in range.start / WORD..range.end.div_ceil(WORD).min(words) {
                let (old, new) = (word_at(earlier_bytes, w), word_at(bytes, w));
                if old != new {
                    packer.push_changed(w, new);
                }
            }
        }
        let (runs, highs) = packer.finish();
        Some(MemoryDelta {
            len: self.len(),
            runs,
            highs,
        })
    }
}

impl MemoryDelta {
    /// Bytes this delta occupies.
    pub fn packed_bytes(&self) -> usize {
        self.runs.capacity() + size_of::<Self>()
    }

    /// Turns `memory`, the state this delta was taken from (or that state at a greater
    /// length, zero past its own), into the later one.
    pub fn apply(&self, memory: &mut Memory) {
        // A journal of the old contents would undo into the wrong bytes, and the lines
        // written here are not tracked.
        memory.journal = None;
        memory.touched = None;
        // Memories only grow: a memory restored at a later length keeps it.
        let len = usize::try_from(self.len).unwrap_or(usize::MAX);
        if len > memory.len {
            memory.extend_to(len);
        }
        write_runs(&self.runs, &self.highs, memory, self.len);
    }

    /// Length of the memory this delta leads to.
    pub fn memory_len(&self) -> u64 {
        self.len
    }

    /// The words this delta sets, in order, with their values (zero-padded past the end).
    fn changes(&self) -> Vec<(usize, u64)> {
        let len = usize::try_from(self.len).unwrap_or(usize::MAX);
        let mut changes = Vec::new();
        let mut words = Vec::new();
        for run in Runs::new(&self.runs, len) {
            words.clear();
            words.resize(run.end - run.start, 0);
            run.write(&self.highs, &mut words);
            let set = (0..run.count.min(words.len().div_ceil(WORD)))
                .map(|k| (run.first_word + k, word_at(&words, k)));
            changes.extend(set);
        }
        changes
    }

    /// This delta followed by `later` (taken from the state this one leads to), as one.
    pub fn then(&self, later: &MemoryDelta) -> MemoryDelta {
        let len = usize::try_from(later.len).unwrap_or(usize::MAX);
        let (first, second) = (self.changes(), later.changes());
        let mut packer = Packer::new(len);
        let (mut i, mut j) = (0, 0);
        while i < first.len() || j < second.len() {
            // The later value wins where both set a word.
            let (w, value) = match (first.get(i), second.get(j)) {
                (Some(&a), Some(&b)) if a.0 < b.0 => {
                    i += 1;
                    a
                }
                (Some(&a), Some(&b)) => {
                    i += usize::from(a.0 == b.0);
                    j += 1;
                    b
                }
                (Some(&a), None) => {
                    i += 1;
                    a
                }
                (None, Some(&b)) => {
                    j += 1;
                    b
                }
                (None, None) => break,
            };
            packer.push_changed(w, value);
        }
        let (runs, highs) = packer.finish();
        MemoryDelta {
            len: later.len,
            runs,
            highs,
        }
    }
}

impl PackedMemory {
    /// This memory with `delta` applied, packed again.
    pub fn with(&self, delta: &MemoryDelta) -> PackedMemory {
        // Mapped at the delta's length from the start: growing a big mapping would copy it,
        // and fresh zero pages cost nothing until the runs write them.
        let mut memory = Memory::new(self.base, delta.len.max(self.len));
        write_runs(&self.runs, &self.highs, &mut memory, self.len);
        delta.apply(&mut memory);
        memory.pack()
    }
}

/// One run of packed words: the bytes it sets (cut at the length packed), its kind and body.
struct Run<'a> {
    first_word: usize,
    count: usize,
    start: usize,
    end: usize,
    kind: u64,
    body: &'a [u8],
}

impl Run<'_> {
    /// Sets `out` (the run's bytes, `start..end`) to the run's words.
    #[inline(always)]
    fn write(&self, highs: &[u32; HIGHS], out: &mut [u8]) {
        match self.kind {
            ZERO => out.fill(0),
            FILL => out.fill(self.body.first().copied().unwrap_or(0)),
            NARROW => {
                let (tags, lows) = self.body.split_at(self.count.div_ceil(4));
                let words = out.chunks_exact_mut(WORD).zip(lows.chunks_exact(4));
                for (i, (out, low)) in words.enumerate() {
                    let tag = (tags[i / 4] >> (2 * (i % 4))) & 3;
                    let high = u64::from(highs[usize::from(tag)]) << 32;
                    let low = u64::from(u32::from_le_bytes(low.try_into().unwrap_or([0; 4])));
                    out.copy_from_slice(&(high | low).to_le_bytes());
                }
            }
            _ => out.copy_from_slice(self.body),
        }
    }
}

/// The runs of a [`PackedMemory`] or [`MemoryDelta`] packed from `len` bytes, in order; a
/// truncated one ends them.
struct Runs<'a> {
    runs: &'a [u8],
    len: usize,
    at: usize,
    word: usize,
}

impl<'a> Runs<'a> {
    fn new(runs: &'a [u8], len: usize) -> Self {
        Self {
            runs,
            len,
            at: 0,
            word: 0,
        }
    }
}

impl<'a> Iterator for Runs<'a> {
    type Item = Run<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<Run<'a>> {
        let gap = read_varint(self.runs, &mut self.at)?;
        let head = read_varint(self.runs, &mut self.at)?;
        let count = usize::try_from(head >> KIND_BITS).unwrap_or(usize::MAX);
        let first_word = self
            .word
            .saturating_add(usize::try_from(gap).unwrap_or(usize::MAX));
        let start = first_word.saturating_mul(WORD).min(self.len);
        let end = first_word
            .saturating_add(count)
            .saturating_mul(WORD)
            .min(self.len);
        let kind = head & ((1 << KIND_BITS) - 1);
        let body_len = match kind {
            ZERO => 0,
            FILL => 1,
            NARROW => count.saturating_mul(4).saturating_add(count.div_ceil(4)),
            _ => end - start,
        };
        let body = self.runs.get(self.at..self.at.saturating_add(body_len))?;
        self.at += body_len;
        self.word = first_word.saturating_add(count);
        Some(Run {
            first_word,
            count,
            start,
            end,
            kind,
            body,
        })
    }
}

/// Writes packed runs into `memory` (at least as long as the `packed_len` bytes they were
/// packed from): each run's words are set, and the words between runs are left as they are.
fn write_runs(runs: &[u8], highs: &[u32; HIGHS], memory: &mut Memory, packed_len: u64) {
    // The runs were packed from `packed_len` bytes: that is where a last word is cut short.
    let len = usize::try_from(packed_len)
        .unwrap_or(usize::MAX)
        .min(memory.len);
    let front = memory.front;
    memory.dirty.cover((front + len).div_ceil(LINE));
    for run in Runs::new(runs, len) {
        let at = front + run.start..front + run.end;
        run.write(highs, &mut memory.bytes[at.clone()]);
        memory.dirty.mark(&at);
    }
}

/// Makes `memory`'s mapping the runs' words, and zero between them, in one pass: the lines that
/// may hold old bytes are zeroed around the words written into them, not filled first and
/// written again (a heap's headers dirty most of its lines, and a restore that touches each
/// line once takes half the cache misses of one that clears them all first). Old bytes
/// outside the mapping stay until it grows over them: a heap restored to an earlier, shorter
/// state mostly never does.
fn overwrite_runs(runs: &[u8], highs: &[u32; HIGHS], memory: &mut Memory, packed_len: u64) {
    let front = memory.front;
    let run_len = usize::try_from(packed_len)
        .unwrap_or(usize::MAX)
        .min(memory.len);
    memory.dirty.cover((front + memory.len).div_ceil(LINE));
    let mut cursor = front;
    for run in Runs::new(runs, run_len) {
        let at = front + run.start..front + run.end;
        memory.zero_gap(cursor, at.start);
        run.write(highs, &mut memory.bytes[at.clone()]);
        memory.dirty.mark(&at);
        cursor = at.end;
    }
    memory.zero_gap(cursor, front + memory.len);
}

impl Memory {
    /// Zeroes the bytes `from..to` of the buffer (between two runs being written in order)
    /// that may not be zero: those in marked lines. Whole lines zeroed are unmarked.
    fn zero_gap(&mut self, mut from: usize, to: usize) {
        if from >= to {
            return;
        }
        // A gap starting inside a line: the run before it wrote the line, or it was dirty.
        if !from.is_multiple_of(LINE) {
            let end = to.min(from.next_multiple_of(LINE));
            if self.dirty.is_marked(from / LINE) {
                self.bytes[from..end].fill(0);
            }
            from = end;
        }
        let (first, last) = (from / LINE, to / LINE);
        let mut line = first;
        while let Some(dirty) = self.dirty.next_marked(line, last) {
            let clean = self.dirty.next_clear(dirty, last);
            self.bytes[dirty * LINE..clean * LINE].fill(0);
            self.dirty.unmark(dirty..clean);
            line = clean;
        }
        // A gap ending inside a line: the run after it writes the rest of the line.
        let tail = last * LINE;
        if from <= tail && tail < to && self.dirty.is_marked(last) {
            self.bytes[tail..to].fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_little_endian_values_and_rejects_out_of_range() {
        let mut memory = Memory::new(0x1000, 16);
        memory.write_u32(0x1004, 0xdead_beef).unwrap();
        assert_eq!(memory.slice(0x1004, 4).unwrap(), &[0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(memory.read_u32(0x1004).unwrap(), 0xdead_beef);
        memory.write_u64(0x1008, u64::MAX - 1).unwrap();
        assert_eq!(memory.read_u64(0x1008).unwrap(), u64::MAX - 1);
        assert!(memory.read_u64(0x100c).is_err());
        assert!(memory.read_u32(0xffc).is_err());
        assert!(memory.read_u32(u64::MAX - 1).is_err());
    }

    #[test]
    fn grows_with_zeroes_and_moves_overlapping_ranges() {
        let mut memory = Memory::new(0, 4);
        memory.write(0, &[1, 2, 3, 4]).unwrap();
        memory.grow_to(8);
        assert_eq!(memory.as_bytes(), &[1, 2, 3, 4, 0, 0, 0, 0]);
        memory.copy_within(0, 2, 4).unwrap();
        assert_eq!(memory.as_bytes(), &[1, 2, 1, 2, 3, 4, 0, 0]);
        memory.grow_to(2);
        assert_eq!(memory.len(), 8);
    }

    #[test]
    fn grows_down_keeping_addresses_and_bytes() {
        let mut memory = Memory::new(0x100, 4);
        memory.write(0x100, &[1, 2, 3, 4]).unwrap();
        memory.grow_down_to(0xfc);
        assert_eq!((memory.base(), memory.end()), (0xfc, 0x104));
        assert_eq!(memory.as_bytes(), &[0, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(memory.read_u32(0x100).unwrap(), 0x0403_0201);
        memory.grow_down_to(0x200);
        assert_eq!(memory.base(), 0xfc, "never shrinks");
    }
    #[test]
    fn the_journal_undoes_writes_and_growth_back_to_any_mark() {
        let mut memory = Memory::new(0x1000, 32);
        memory.write_u64(0x1000, 7).unwrap();
        memory.start_journal();
        let start = memory.journal_mark().unwrap();
        let before = memory.clone();
        memory.write_u64(0x1008, 0xdead_beef).unwrap();
        memory.fill(0x1000, 4, 0xAA).unwrap();
        let middle_mark = memory.journal_mark().unwrap();
        let middle = memory.clone();
        memory.grow_to(64);
        memory.copy_within(0x1000, 0x1020, 16).unwrap();
        memory.grow_down_to(0xF00);
        memory.write(0xF00, b"xyz").unwrap();
        assert!(memory.undo_to(middle_mark));
        assert_eq!(memory, middle);
        assert!(memory.undo_to(start));
        assert_eq!(memory, before);
        // Forgotten entries cannot be undone; later ones still can.
        memory.write_u64(0x1010, 1).unwrap();
        let late = memory.journal_mark().unwrap();
        let late_state = memory.clone();
        memory.write_u64(0x1010, 2).unwrap();
        memory.forget_journal_before(late);
        assert!(!memory.undo_to(start));
        assert!(memory.undo_to(late));
        assert_eq!(memory, late_state);
    }

    #[test]
    fn packing_keeps_every_byte_and_skips_zero_runs() {
        let mut memory = Memory::new(0x7000, 4096 + 5);
        memory.write_u64(0x7000, 0x1122).unwrap();
        memory.write(0x7009, &[7, 0, 0, 0, 0, 0, 0, 0, 9]).unwrap();
        memory.write_u64(0x7000 + 2048, u64::MAX).unwrap();
        memory.write(0x7000 + 4096 + 4, &[5]).unwrap();
        let packed = memory.pack();
        assert_eq!(packed.unpack(), memory);
        let mut reused = Memory::new(0x10, 9000);
        reused.fill(0x10, 9000, 0xaa).unwrap();
        packed.unpack_into(&mut reused);
        assert_eq!(reused, memory);
        assert!(packed.packed_bytes() < 200, "{packed:?}");
        let empty = Memory::new(0x10, 0);
        assert_eq!(empty.pack().unpack(), empty);
    }

    #[test]
    fn fills_of_one_byte_pack_to_a_few_bytes() {
        let mut memory = Memory::new(0, 1 << 20);
        memory.fill(3, 500_000, 2).unwrap();
        memory.fill(500_003, 100_000, 3).unwrap();
        let packed = memory.pack();
        assert!(packed.packed_bytes() < 100, "{packed:?}");
        assert_eq!(packed.unpack(), memory);
    }

    #[test]
    fn words_with_common_high_halves_pack_to_their_low_halves() {
        let mut memory = Memory::new(0x7f00_0000_0000, 64 * 1024 + 4);
        let base = memory.base();
        // Headers and links: sizes, addresses in the heap, an occupied bit above 32.
        for i in 0..2000u64 {
            let value = match i % 3 {
                0 => 0x40 | (i & 7),
                1 => base + i * 24,
                _ => (1 << 32) | (i % 25),
            };
            memory.write_u64(base + i * 8, value).unwrap();
        }
        let narrow = memory.pack();
        assert_eq!(narrow.unpack(), memory);
        // 2000 words: a quarter byte of index and four bytes of low half each.
        assert!(narrow.packed_bytes() < 2000 * 9 / 2 + 100, "{narrow:?}");
        // Two more high halves than the slots hold: those words go literal, and everything
        // still comes back, including a last word cut short by the memory's end.
        memory.write_u64(base + 30_000, 2 << 32).unwrap();
        memory.write_u64(base + 30_008, 3 << 32).unwrap();
        memory.write_u64(base + 30_016, 4 << 32).unwrap();
        memory.write(base + 64 * 1024, &[1, 2, 3, 4]).unwrap();
        let mixed = memory.pack();
        assert_eq!(mixed.unpack(), memory);
        let mut reused = narrow.unpack();
        mixed.unpack_into(&mut reused);
        assert_eq!(reused, memory);
    }

    #[test]
    fn a_delta_keeps_only_the_words_that_changed() {
        let mut before = Memory::new(0x2000_0000, 1 << 20);
        for i in 0..10_000u64 {
            before.write_u64(0x2000_0000 + i * 96, 0xC0FFEE).unwrap();
        }
        let mut after = before.clone();
        after.write_u64(0x2000_0000 + 96 * 5000, 0).unwrap();
        after
            .write_u64(0x2000_0000 + 96 * 5001 + 8, 0x2000_0040)
            .unwrap();
        after.grow_to((1 << 20) + 13);
        after
            .write(0x2000_0000 + (1 << 20) + 8, &[1, 2, 3, 4, 5])
            .unwrap();
        let delta = after.delta_from(&before).unwrap();
        assert!(delta.packed_bytes() < 100, "{delta:?}");
        let mut restored = before.pack().unpack();
        delta.apply(&mut restored);
        assert_eq!(restored, after);
        // A whole memory whose last word was cut short, then grown, with a delta merged in.
        let mut short = Memory::new(0x100, 13);
        short.write(0x108, &[1, 2, 3, 4, 5]).unwrap();
        let mut grown = short.clone();
        grown.grow_to(100);
        grown.write(0x10c, &[9, 9, 9, 9, 9, 9]).unwrap();
        let delta = grown.delta_from(&short).unwrap();
        assert_eq!(short.pack().with(&delta).unpack(), grown);
        // Not an earlier state of the same memory: another base, or a longer one.
        assert!(after.delta_from(&Memory::new(0x1000, 16)).is_none());
        assert!(before.delta_from(&after).is_none());
    }

    /// One change to a memory, for the property test.
    #[derive(Debug, Clone)]
    enum Change {
        Word(u64, u64),
        Write(u64, Vec<u8>),
        Fill(u64, u64, u8),
        Copy(u64, u64, u64),
        GrowUp(u64),
        GrowDown(u64),
    }

    fn apply(memory: &mut Memory, change: &Change) {
        let base = memory.base();
        let len = memory.len().max(1);
        match change {
            Change::Word(at, value) => {
                let _ = memory.write_u64(base + at % len, *value);
            }
            Change::Write(at, bytes) => {
                let _ = memory.write(base + at % len, bytes);
            }
            Change::Fill(at, n, byte) => {
                let _ = memory.fill(base + at % len, *n, *byte);
            }
            Change::Copy(from, to, n) => {
                let _ = memory.copy_within(base + from % len, base + to % len, *n);
            }
            Change::GrowUp(extra) => memory.grow_to(memory.len() + extra),
            Change::GrowDown(extra) => memory.grow_down_to(base.saturating_sub(*extra)),
        }
    }

    fn change() -> impl Strategy<Value = Change> {
        // Words whose high halves come from a small set, more than a packed memory keeps.
        let word = (0..6u64, any::<u32>()).prop_map(|(high, low)| (high << 32) | u64::from(low));
        prop_oneof![
            3 => (0..4096u64, word).prop_map(|(a, w)| Change::Word(a, w)),
            4 => (0..4096u64, proptest::collection::vec(any::<u8>(), 1..40))
                .prop_map(|(a, b)| Change::Write(a, b)),
            2 => (0..4096u64, 0..300u64, any::<u8>()).prop_map(|(a, n, b)| Change::Fill(a, n, b)),
            1 => (0..4096u64, 0..4096u64, 0..200u64).prop_map(|(a, b, n)| Change::Copy(a, b, n)),
            1 => (0..700u64).prop_map(Change::GrowUp),
            1 => prop_oneof![(0..200u64), (1..4u64).prop_map(|k| k * 64)].prop_map(Change::GrowDown),
        ]
    }

    use proptest::prelude::*;

    /// Every non-zero byte of `memory`'s buffer, in the mapping or outside it, lies in a line
    /// marked dirty; the mapping starts at a line.
    fn check_buffer(memory: &Memory) -> Result<(), TestCaseError> {
        prop_assert!(memory.front.is_multiple_of(LINE));
        for (i, &b) in memory.bytes.iter().enumerate() {
            prop_assert!(
                b == 0 || memory.dirty.is_marked(i / LINE),
                "byte {i} of the buffer is {b}, mapping at {}",
                memory.front
            );
        }
        Ok(())
    }

    /// Changes that keep a memory's base, as the heaps a timeline records do.
    fn change_in_place() -> impl Strategy<Value = Change> {
        change().prop_filter("keeps the base", |c| !matches!(c, Change::GrowDown(_)))
    }

    proptest! {
        /// A delta taken between two states turns the first into the second, whether the first
        /// was written in place or restored from a packed copy, and two deltas in a row merge
        /// into one that does the same.
        #[test]
        fn deltas_lead_from_one_state_to_the_next(
            first in proptest::collection::vec(change(), 0..30),
            second in proptest::collection::vec(change_in_place(), 0..30),
            third in proptest::collection::vec(change_in_place(), 0..30),
        ) {
            let mut a = Memory::new(0x10_000, 2048);
            for c in &first {
                apply(&mut a, c);
            }
            let mut b = a.clone();
            b.track_changes();
            for c in &second {
                apply(&mut b, c);
            }
            // Read off the lines written, or compared wherever either memory was written.
            let untracked = b.clone();
            prop_assert!(untracked.touched.is_none(), "a copy tracks nothing");
            prop_assert_eq!(b.delta_from(&a), untracked.delta_from(&a));
            let mut c = b.clone();
            for change in &third {
                apply(&mut c, change);
            }
            let ab = b.delta_from(&a).unwrap();
            let bc = c.delta_from(&b).unwrap();
            let mut stepped = a.pack().unpack();
            ab.apply(&mut stepped);
            prop_assert_eq!(&stepped, &b);
            bc.apply(&mut stepped);
            prop_assert_eq!(&stepped, &c);
            let mut merged = a.clone();
            ab.then(&bc).apply(&mut merged);
            prop_assert_eq!(&merged, &c);
            prop_assert_eq!(&a.pack().with(&ab.then(&bc)).unpack(), &c);
            // No change, no runs.
            prop_assert!(c.delta_from(&c).unwrap().runs.is_empty());
        }

        /// Packing and restoring into a memory that went its own way gives back every byte,
        /// and outside the lines marked dirty every byte is zero.
        #[test]
        fn restoring_clears_only_what_was_written_and_loses_nothing(
            base in prop_oneof![Just(0x10_000u64), Just(0x10_040u64)],
            first in proptest::collection::vec(change(), 0..30),
            second in proptest::collection::vec(change(), 0..30),
            undo_some in any::<bool>(),
            lower_by in prop_oneof![Just(64u64), Just(4096u64), Just(8u64)],
        ) {
            let mut wanted = Memory::new(0x10_000, 2048);
            for c in &first {
                apply(&mut wanted, c);
            }
            let mut reused = Memory::new(base, 1024);
            reused.start_journal();
            let (early, late) = second.split_at(second.len() / 2);
            for c in early {
                apply(&mut reused, c);
            }
            let mark = reused.journal_mark();
            for c in late {
                apply(&mut reused, c);
            }
            if undo_some && let Some(mark) = mark {
                prop_assert!(reused.undo_to(mark));
            }
            check_buffer(&wanted)?;
            check_buffer(&reused)?;
            let packed = wanted.pack();
            packed.unpack_into(&mut reused);
            prop_assert_eq!(&reused, &wanted);
            check_buffer(&reused)?;
            prop_assert_eq!(&packed.unpack(), &wanted);
            // A heap that grew downwards since, and back: restores to other bases, in the same
            // buffer when it has room.
            let mut lower = wanted.clone();
            lower.grow_down_to(wanted.base() - lower_by);
            let _ = lower.fill(lower.base(), 100, 0xAB);
            for target in [&lower, &wanted, &lower] {
                target.pack().unpack_into(&mut reused);
                prop_assert_eq!(&reused, target);
                check_buffer(&reused)?;
            }
            // Growing down over what the lower heap left below a restored one: zeroes.
            wanted.pack().unpack_into(&mut reused);
            reused.grow_down_to(lower.base());
            let mut grown = wanted.clone();
            grown.grow_down_to(lower.base());
            prop_assert_eq!(&reused, &grown);
            check_buffer(&reused)?;
            // Restored twice over: what the first restore wrote is cleared by the second, and
            // what lies past the shorter mapping reads as zero when it grows back over it.
            Memory::new(0x10_000, 100).pack().unpack_into(&mut reused);
            prop_assert_eq!(&reused, &Memory::new(0x10_000, 100));
            check_buffer(&reused)?;
            reused.grow_to(2048);
            let mut grown = Memory::new(0x10_000, 100);
            grown.grow_to(2048);
            prop_assert_eq!(&reused, &grown);
        }
    }
}

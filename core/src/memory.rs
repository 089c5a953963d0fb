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
    bytes: Vec<u8>,
    /// Undo log of writes, kept while a timeline may step back over them.
    journal: Option<Box<Journal>>,
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
    /// A copy of the bytes; the journal stays with the original.
    fn clone(&self) -> Self {
        Self {
            base: self.base,
            bytes: self.bytes.clone(),
            journal: None,
        }
    }
}

impl PartialEq for Memory {
    fn eq(&self, other: &Self) -> bool {
        self.base == other.base && self.bytes == other.bytes
    }
}

impl Eq for Memory {}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("base", &format_args!("{:#x}", self.base))
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl Memory {
    /// A memory of `len` zero bytes starting at `base`.
    pub fn new(base: Addr, len: u64) -> Self {
        Self {
            base,
            bytes: vec![0; usize::try_from(len).unwrap_or(usize::MAX)],
            journal: None,
        }
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
        let Some(journal) = self.journal.as_mut() else {
            return false;
        };
        if mark < journal.forgotten || mark > journal.forgotten + journal.entries.len() {
            return false;
        }
        while journal.forgotten + journal.entries.len() > mark {
            let Some(undo) = journal.entries.pop() else {
                break;
            };
            match undo {
                Undo::Bytes { offset, len } => {
                    let from = journal.old.len() - len;
                    self.bytes[offset..offset + len].copy_from_slice(&journal.old[from..]);
                    journal.old.truncate(from);
                }
                Undo::GrewUp { len } => self.bytes.truncate(len),
                Undo::GrewDown { extra } => {
                    self.bytes.drain(..extra);
                    self.base += extra as u64;
                }
            }
        }
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

    /// Records the old bytes of `range` before a write, when journaling.
    #[inline]
    fn note_write(&mut self, range: &std::ops::Range<usize>) {
        if let Some(journal) = self.journal.as_mut() {
            journal.entries.push(Undo::Bytes {
                offset: range.start,
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
        self.bytes.len() as u64
    }

    /// Whether no byte is mapped.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Grows (never shrinks) the mapping to `new_len` bytes; new bytes are zero.
    pub fn grow_to(&mut self, new_len: u64) {
        let new_len = usize::try_from(new_len).unwrap_or(usize::MAX);
        if new_len > self.bytes.len() {
            if let Some(journal) = self.journal.as_mut() {
                journal.entries.push(Undo::GrewUp {
                    len: self.bytes.len(),
                });
            }
            self.bytes.resize(new_len, 0);
        }
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
        let Some(len) = extra.checked_add(self.bytes.len()) else {
            return;
        };
        let mut bytes = vec![0; len];
        bytes[extra..].copy_from_slice(&self.bytes);
        self.bytes = bytes;
        self.base = new_base;
        if let Some(journal) = self.journal.as_mut() {
            journal.entries.push(Undo::GrewDown { extra });
        }
    }

    /// Whether `[addr, addr + len)` lies inside the mapping.
    pub fn contains(&self, addr: Addr, len: u64) -> bool {
        addr >= self.base && addr.checked_add(len).is_some_and(|end| end <= self.end())
    }

    fn range(&self, addr: Addr, len: u64) -> Result<std::ops::Range<usize>, OutOfBounds> {
        if !self.contains(addr, len) {
            return Err(OutOfBounds {
                addr,
                len,
                start: self.base,
                end: self.end(),
            });
        }
        // Both fit in usize: the mapping itself is a Vec.
        let start = (addr - self.base) as usize;
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
        &self.bytes
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

/// A [`Memory`] stored compactly: only its runs of non-zero 8-byte words, delta-encoded.
///
/// A heap is mostly zero payload with headers and links sprinkled through it, so a packed copy
/// is a small fraction of the memory's length: this is what makes timeline checkpoints cheap.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedMemory {
    base: Addr,
    len: u64,
    /// `[zero words before the run][words in the run][the run's bytes]`, varints, repeated.
    runs: Vec<u8>,
}

impl std::fmt::Debug for PackedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMemory")
            .field("base", &format_args!("{:#x}", self.base))
            .field("len", &self.len)
            .field("packed", &self.runs.len())
            .finish()
    }
}

const WORD: usize = 8;
/// Zero chunks are skipped this many bytes at a time: one wide test per cache line.
const CHUNK: usize = 64;

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
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

impl Memory {
    /// A packed copy of this memory.
    pub fn pack(&self) -> PackedMemory {
        let mut runs = Vec::new();
        let words = self.bytes.len().div_ceil(WORD);
        let word_at = |w: usize| -> &[u8] {
            let start = w * WORD;
            &self.bytes[start..(start + WORD).min(self.bytes.len())]
        };
        let mut w = 0;
        let mut last_end = 0;
        while w < words {
            // Skip whole zero chunks quickly, then word by word.
            let at = w * WORD;
            if at.is_multiple_of(CHUNK)
                && at + CHUNK <= self.bytes.len()
                && is_zero(&self.bytes[at..at + CHUNK])
            {
                w += CHUNK / WORD;
                continue;
            }
            if is_zero(word_at(w)) {
                w += 1;
                continue;
            }
            let start = w;
            while w < words && !is_zero(word_at(w)) {
                w += 1;
            }
            push_varint(&mut runs, (start - last_end) as u64);
            push_varint(&mut runs, (w - start) as u64);
            runs.extend_from_slice(&self.bytes[start * WORD..(w * WORD).min(self.bytes.len())]);
            last_end = w;
        }
        PackedMemory {
            base: self.base,
            len: self.len(),
            runs,
        }
    }
}

impl PackedMemory {
    /// Bytes this packed copy occupies.
    pub fn packed_bytes(&self) -> usize {
        self.runs.len() + size_of::<Self>()
    }

    /// The memory this was packed from.
    pub fn unpack(&self) -> Memory {
        // `vec![0; n]` asks the system for zeroed pages, which cost nothing until written.
        let mut memory = Memory::new(self.base, self.len);
        self.write_runs(&mut memory.bytes);
        memory
    }

    /// Turns `memory` into the memory this was packed from, reusing its buffer: clearing
    /// pages already mapped is much cheaper than faulting fresh zero pages in one by one.
    pub fn unpack_into(&self, memory: &mut Memory) {
        let len = usize::try_from(self.len).unwrap_or(usize::MAX);
        // A journal of the old contents would undo into the wrong bytes.
        memory.journal = None;
        memory.base = self.base;
        memory.bytes.clear();
        memory.bytes.resize(len, 0);
        self.write_runs(&mut memory.bytes);
    }

    fn write_runs(&self, bytes: &mut [u8]) {
        let mut at = 0;
        let mut word = 0usize;
        while at < self.runs.len() {
            let (Some(gap), Some(count)) = (
                read_varint(&self.runs, &mut at),
                read_varint(&self.runs, &mut at),
            ) else {
                break;
            };
            word = word.saturating_add(gap as usize);
            let start = word.saturating_mul(WORD).min(bytes.len());
            let end = word
                .saturating_add(count as usize)
                .saturating_mul(WORD)
                .min(bytes.len());
            let n = end - start;
            let Some(data) = self.runs.get(at..at + n) else {
                break;
            };
            bytes[start..end].copy_from_slice(data);
            at += n;
            word = word.saturating_add(count as usize);
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
}

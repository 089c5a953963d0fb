//! The "operating system" the dlmalloc model gets memory from: `mmap`/`munmap`/`mremap` over one
//! linear address range.
//!
//! Plywood's heap is built with `HAVE_MORECORE 0` and `HAVE_MMAP 1`, so every segment and every
//! large chunk comes from `mmap`. This system places mappings first-fit from its start address,
//! so a heap that grows while nothing else is mapped after it gets contiguous regions (which
//! dlmalloc merges into one segment, as with `sbrk`), while a region freed in the middle is
//! reused by the next mapping that fits. Bytes are materialised lazily: [`Memory`] only grows to
//! the end of the highest mapping ever made.

use std::collections::BTreeMap;

use crate::Addr;
use crate::memory::Memory;

/// Highest address span the system hands out, past its start (1 TiB).
const SPAN: u64 = 1 << 40;

/// Mapped address ranges and the counter of bytes held.
#[derive(Debug, Clone)]
pub(crate) struct System {
    /// First address a mapping may take.
    pub start: Addr,
    /// Most bytes that may be mapped at once (`HeapConfig.max`).
    pub limit: u64,
    /// Page size: mappings are multiples of it.
    pub page: u64,
    /// Mapped ranges, start -> end, disjoint and coalesced.
    ranges: BTreeMap<Addr, Addr>,
    /// Bytes currently mapped.
    pub held: u64,
    /// Most bytes ever mapped at once.
    pub peak: u64,
    /// Number of successful `mmap` calls.
    pub maps: u64,
}

impl System {
    pub fn new(start: Addr, limit: u64, page: u64) -> Self {
        Self {
            start,
            limit,
            page,
            ranges: BTreeMap::new(),
            held: 0,
            peak: 0,
            maps: 0,
        }
    }

    /// The mapped ranges in address order (coalesced).
    pub fn ranges(&self) -> impl Iterator<Item = (Addr, Addr)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e))
    }

    /// Whether `[addr, addr + len)` is wholly mapped.
    pub fn is_mapped(&self, addr: Addr, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        match self.ranges.range(..=addr).next_back() {
            Some((_, &e)) => end <= e,
            None => false,
        }
    }

    /// Lowest free address where `len` bytes fit, if any.
    fn find_gap(&self, len: u64) -> Option<Addr> {
        let mut at = self.start;
        for (&s, &e) in &self.ranges {
            if s >= at && s - at >= len {
                return Some(at);
            }
            at = at.max(e);
        }
        let end = self.start.checked_add(SPAN)?;
        (at.checked_add(len)? <= end).then_some(at)
    }

    fn insert(&mut self, addr: Addr, end: Addr) {
        let mut s = addr;
        let mut e = end;
        // Merge with a neighbour ending at `addr` and one starting at `end`.
        if let Some((&ps, &pe)) = self.ranges.range(..addr).next_back()
            && pe == addr
        {
            s = ps;
            self.ranges.remove(&ps);
        }
        if let Some(ne) = self.ranges.remove(&end) {
            e = ne;
        }
        self.ranges.insert(s, e);
    }

    fn remove(&mut self, addr: Addr, end: Addr) -> bool {
        let Some((&s, &e)) = self.ranges.range(..=addr).next_back() else {
            return false;
        };
        if end > e {
            return false;
        }
        self.ranges.remove(&s);
        if s < addr {
            self.ranges.insert(s, addr);
        }
        if end < e {
            self.ranges.insert(end, e);
        }
        true
    }

    fn account(&mut self, mem: &mut Memory, addr: Addr, len: u64) {
        self.held += len;
        self.peak = self.peak.max(self.held);
        let end = addr + len;
        // Fresh pages read as zero, as mmap's do (dlmalloc's calloc relies on it).
        let old_end = mem.end();
        if end > old_end {
            mem.grow_to(end - mem.base());
        }
        let clear_to = end.min(old_end);
        if clear_to > addr {
            let _ = mem.fill(addr, clear_to - addr, 0);
        }
    }

    /// `mmap(len)`: maps `len` bytes (a page multiple) at the lowest gap, or refuses when that
    /// would hold more than the limit.
    pub fn map(&mut self, mem: &mut Memory, len: u64) -> Option<Addr> {
        if len == 0 || !len.is_multiple_of(self.page) || self.held.checked_add(len)? > self.limit {
            return None;
        }
        let addr = self.find_gap(len)?;
        self.insert(addr, addr + len);
        self.account(mem, addr, len);
        self.maps += 1;
        Some(addr)
    }

    /// `munmap(addr, len)`: fails unless the whole range is mapped.
    pub fn unmap(&mut self, addr: Addr, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        if len == 0 || !self.remove(addr, end) {
            return false;
        }
        self.held -= len;
        true
    }

    /// `mremap(addr, old, new, may_move)`: resizes a mapping in place when the bytes after it are
    /// free, or moves it (copying the contents) when allowed.
    pub fn remap(
        &mut self,
        mem: &mut Memory,
        addr: Addr,
        old: u64,
        new: u64,
        may_move: bool,
    ) -> Option<Addr> {
        if !self.is_mapped(addr, old) || new == 0 || !new.is_multiple_of(self.page) {
            return None;
        }
        if new <= old {
            if new < old {
                self.unmap(addr + new, old - new).then_some(())?;
            }
            return Some(addr);
        }
        let grow = new - old;
        if self.held.checked_add(grow)? > self.limit {
            return None;
        }
        let tail = addr.checked_add(old)?;
        let tail_end = tail.checked_add(grow)?;
        // The mapping ends at `tail` (it may be coalesced with neighbours), so the bytes after it
        // are free only if no range starts before `tail_end` and runs past `tail`.
        let tail_taken = self
            .ranges
            .range(..tail_end)
            .next_back()
            .is_some_and(|(_, &e)| e > tail);
        let tail_free = !tail_taken && tail_end <= self.start.checked_add(SPAN)?;
        if tail_free {
            self.insert(tail, tail + grow);
            self.account(mem, tail, grow);
            return Some(addr);
        }
        if !may_move {
            return None;
        }
        // Like the kernel's mremap, moving does not hold old and new pages at once: the old
        // mapping goes first (its bytes kept aside), so the new one may even overlap it.
        if self.held - old + new > self.limit {
            return None;
        }
        let saved = mem.slice(addr, old).ok()?.to_vec();
        self.unmap(addr, old);
        let Some(to) = self.map(mem, new) else {
            // Put the old mapping back as it was.
            self.insert(addr, addr + old);
            self.held += old;
            return None;
        };
        let _ = mem.write(to, &saved);
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_reuses_holes_and_coalesces_neighbours() {
        let mut mem = Memory::new(0x1000, 0);
        let mut sys = System::new(0x1000, 0x10000, 0x1000);
        let a = sys.map(&mut mem, 0x2000).unwrap();
        let b = sys.map(&mut mem, 0x1000).unwrap();
        assert_eq!((a, b), (0x1000, 0x3000));
        assert_eq!(sys.ranges().collect::<Vec<_>>(), vec![(0x1000, 0x4000)]);
        assert!(sys.unmap(0x1000, 0x1000));
        assert!(!sys.unmap(0x1000, 0x1000), "already unmapped");
        assert_eq!(sys.map(&mut mem, 0x1000), Some(0x1000));
        assert_eq!(sys.held, 0x3000);
        assert_eq!(sys.map(&mut mem, 0x10000), None, "over the limit");
        assert_eq!(mem.end(), 0x4000);
    }

    #[test]
    fn remap_grows_in_place_or_moves_with_the_bytes() {
        let mut mem = Memory::new(0, 0);
        let mut sys = System::new(0, 1 << 20, 0x1000);
        let a = sys.map(&mut mem, 0x1000).unwrap();
        mem.write_u64(a + 8, 42).unwrap();
        assert_eq!(sys.remap(&mut mem, a, 0x1000, 0x2000, false), Some(a));
        let b = sys.map(&mut mem, 0x1000).unwrap();
        assert_eq!(b, 0x2000);
        assert_eq!(sys.remap(&mut mem, a, 0x2000, 0x3000, false), None);
        let c = sys.remap(&mut mem, a, 0x2000, 0x3000, true).unwrap();
        assert_eq!(c, 0x3000);
        assert_eq!(mem.read_u64(c + 8).unwrap(), 42);
        assert_eq!(sys.held, 0x4000);
    }
}

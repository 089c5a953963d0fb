//! The "operating system" the dlmalloc model gets memory from: `mmap`/`munmap`/`mremap` below
//! one ceiling address, placed top-down as Linux places anonymous mappings.
//!
//! Plywood's heap is built with `HAVE_MORECORE 0` and `HAVE_MMAP 1`, so every segment and every
//! large chunk comes from `mmap`. Linux gives a new mapping the highest free gap that fits below
//! its mmap base, so in an address space where nothing else happens each mapping lands directly
//! below the previous one, and a hole left by `munmap` is reused by the next mapping that fits
//! (the highest such hole first). For dlmalloc this means that a heap growing by new mappings
//! usually finds the new region just *below* a segment, and takes its `prepend_alloc` path; a
//! region is appended to a segment only when it lands right above it (in a hole).
//!
//! With this placement the `dlmalloc` crate over the real kernel and over this system give the
//! same footprints on the malloclab traces, as long as the process has no holes of its own
//! below its mmap base (the differential test in `tests/` checks the crate over a copy of these
//! rules against the model).
//!
//! Bytes are materialised lazily: [`Memory`] grows downwards to the lowest mapping ever made.

use std::collections::BTreeMap;

use crate::Addr;
use crate::memory::Memory;

/// Mapped address ranges below a ceiling and the counter of bytes held.
#[derive(Debug, Clone)]
pub(crate) struct System {
    /// Mappings end at or below this address (Linux's `mmap_base`).
    pub ceiling: Addr,
    /// Lowest address a mapping may take.
    pub floor: Addr,
    /// Most bytes that may be mapped at once (`HeapConfig.max`).
    pub limit: u64,
    /// Page size: mappings are multiples of it.
    pub page: u64,
    /// Mapped ranges, start -> end, disjoint and coalesced (like the kernel's merged VMAs).
    ranges: BTreeMap<Addr, Addr>,
    /// Bytes currently mapped.
    pub held: u64,
    /// Most bytes ever mapped at once.
    pub peak: u64,
    /// Number of successful `mmap` calls.
    pub maps: u64,
}

impl System {
    /// Approximate host bytes of the mapping table.
    pub fn heap_bytes(&self) -> usize {
        // A B-tree node holds up to 11 pairs; count a pair and its share of the node.
        self.ranges.len() * 2 * size_of::<(Addr, Addr)>()
    }

    pub fn new(floor: Addr, ceiling: Addr, limit: u64, page: u64) -> Self {
        Self {
            ceiling,
            floor,
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

    /// Lowest mapped address, if anything is mapped.
    pub fn lowest(&self) -> Option<Addr> {
        self.ranges.keys().next().copied()
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

    /// Highest free address where `len` bytes fit below the ceiling (Linux's top-down
    /// `vm_unmapped_area`), if any.
    fn find_gap(&self, len: u64) -> Option<Addr> {
        let mut end = self.ceiling;
        for (&s, &e) in self.ranges.iter().rev() {
            if end >= e && end - e >= len {
                return Some(end - len);
            }
            end = end.min(s);
        }
        (end >= self.floor && end - self.floor >= len).then(|| end - len)
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

    /// Counts `[addr, addr + len)` as newly mapped and makes its bytes exist and read zero.
    fn account(&mut self, mem: &mut Memory, addr: Addr, len: u64) {
        self.held += len;
        self.peak = self.peak.max(self.held);
        let old_base = mem.base();
        if addr < old_base {
            // Grow at least by the memory's own length, so a heap growing a page at a time
            // does not copy its bytes at every step.
            let doubled = old_base.saturating_sub(mem.len());
            let page_floor = self.floor - self.floor % self.page;
            mem.grow_down_to(addr.min(doubled.max(page_floor)));
        }
        // Fresh pages read as zero, as mmap's do (dlmalloc's calloc relies on it); bytes that
        // existed before may hold what an earlier mapping left there.
        let end = addr + len;
        let clear_from = addr.max(old_base);
        if end > clear_from {
            let _ = mem.fill(clear_from, end - clear_from, 0);
        }
    }

    /// `mmap(len)`: maps `len` bytes (a page multiple) at the highest gap, or refuses when that
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

    /// `mremap(addr, old, new, may_move)`: shrinks in place, grows in place when the bytes after
    /// the mapping are free, or moves it (copying the contents) when allowed. Like the kernel,
    /// a move picks its new place while the old mapping still stands, and counts the bytes
    /// once: held grows by `new - old`.
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
        if !tail_taken && tail_end <= self.ceiling {
            self.insert(tail, tail_end);
            self.account(mem, tail, grow);
            return Some(addr);
        }
        if !may_move {
            return None;
        }
        let to = self.find_gap(new)?;
        let saved = mem.slice(addr, old).ok()?.to_vec();
        self.remove(addr, tail);
        self.held -= old;
        self.insert(to, to + new);
        self.account(mem, to, new);
        let _ = mem.write(to, &saved);
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: Addr = 0x10_0000;

    fn system() -> (Memory, System) {
        (
            Memory::new(TOP, 0x1000),
            System::new(0x1000, TOP, 1 << 20, 0x1000),
        )
    }

    #[test]
    fn maps_top_down_and_reuses_the_highest_hole() {
        let (mut mem, mut sys) = system();
        let a = sys.map(&mut mem, 0x2000).unwrap();
        let b = sys.map(&mut mem, 0x1000).unwrap();
        assert_eq!(
            (a, b),
            (TOP - 0x2000, TOP - 0x3000),
            "each below the previous"
        );
        assert_eq!(sys.ranges().collect::<Vec<_>>(), vec![(TOP - 0x3000, TOP)]);
        let c = sys.map(&mut mem, 0x1000).unwrap();
        assert!(sys.unmap(a, 0x1000));
        assert!(sys.unmap(c, 0x1000));
        assert!(!sys.unmap(c, 0x1000), "already unmapped");
        // Holes at TOP - 0x2000 and TOP - 0x4000: the higher one wins.
        assert_eq!(sys.map(&mut mem, 0x1000), Some(TOP - 0x2000));
        // The hole above is too small: the highest place that fits is below b.
        assert_eq!(sys.map(&mut mem, 0x2000), Some(TOP - 0x5000));
        assert_eq!(sys.held, 0x5000);
        assert_eq!(sys.peak, 0x5000);
        assert_eq!(sys.map(&mut mem, 1 << 20), None, "over the limit");
        assert!(mem.base() <= TOP - 0x5000);
        assert_eq!(mem.end(), TOP + 0x1000);
    }

    #[test]
    fn fresh_mappings_read_zero_even_where_an_old_one_was() {
        let (mut mem, mut sys) = system();
        let a = sys.map(&mut mem, 0x1000).unwrap();
        mem.write_u64(a + 8, 42).unwrap();
        assert!(sys.unmap(a, 0x1000));
        assert_eq!(sys.map(&mut mem, 0x1000), Some(a));
        assert_eq!(mem.read_u64(a + 8).unwrap(), 0);
    }

    #[test]
    fn runs_out_of_address_space_at_the_floor() {
        let mut mem = Memory::new(0x4000, 0x1000);
        let mut sys = System::new(0x1000, 0x4000, 1 << 20, 0x1000);
        assert_eq!(sys.map(&mut mem, 0x3000), Some(0x1000));
        assert_eq!(sys.map(&mut mem, 0x1000), None);
        assert_eq!(mem.base(), 0x1000);
    }

    #[test]
    fn remap_grows_in_place_or_moves_with_the_bytes() {
        let (mut mem, mut sys) = system();
        let a = sys.map(&mut mem, 0x1000).unwrap();
        assert_eq!(
            sys.remap(&mut mem, a, 0x1000, 0x2000, false),
            None,
            "the ceiling is right above"
        );
        let b = sys.map(&mut mem, 0x1000).unwrap();
        mem.write_u64(b + 8, 77).unwrap();
        assert!(sys.unmap(a, 0x1000));
        // Room above b now: it grows in place.
        assert_eq!(sys.remap(&mut mem, b, 0x1000, 0x2000, false), Some(b));
        assert_eq!(sys.held, 0x2000);
        // No room for 0x3000 above: it moves below (the old mapping still stands while the
        // kernel picks the place), keeping its bytes and counting them once.
        let c = sys.remap(&mut mem, b, 0x2000, 0x3000, true).unwrap();
        assert_eq!(c, b - 0x3000);
        assert_eq!(mem.read_u64(c + 8).unwrap(), 77);
        assert_eq!(sys.held, 0x3000);
        assert_eq!(sys.peak, 0x3000);
        assert!(!sys.is_mapped(b, 0x1000));
        // Shrinking gives the tail back.
        assert_eq!(sys.remap(&mut mem, c, 0x3000, 0x1000, false), Some(c));
        assert_eq!(sys.held, 0x1000);
    }
}

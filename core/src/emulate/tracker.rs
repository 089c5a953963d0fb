//! The blocks the guest holds and held, by address: which id an access belongs to, and what to
//! say about a block in a report (its bounds, when it was allocated and freed).

use std::collections::BTreeMap;

use super::BlockInfo;
use crate::Addr;
use crate::trace::Id;

/// Live and freed blocks of one run.
#[derive(Debug, Default)]
pub struct Tracker {
    live: BTreeMap<Addr, BlockInfo>,
    /// The most recently freed block at each address.
    freed: BTreeMap<Addr, BlockInfo>,
}

fn containing(map: &BTreeMap<Addr, BlockInfo>, addr: Addr, len: u64) -> Option<&BlockInfo> {
    let (_, b) = map.range(..=addr).next_back()?;
    let end = addr.checked_add(len)?;
    (end <= b.end && addr < b.end.max(b.start + 1)).then_some(b)
}

impl Tracker {
    /// Records block `id` of `size` bytes at `ptr`, allocated at `step`.
    pub fn allocated(&mut self, id: Id, ptr: Addr, size: u64, step: usize) {
        self.live.insert(
            ptr,
            BlockInfo {
                id,
                start: ptr,
                end: ptr.saturating_add(size),
                allocated_at: step,
                freed_at: None,
            },
        );
    }

    /// Records the live block at `ptr` as freed at `step`.
    pub fn freed(&mut self, ptr: Addr, step: usize) {
        if let Some(mut b) = self.live.remove(&ptr) {
            b.freed_at = Some(step);
            self.freed.insert(ptr, b);
        }
    }

    /// Records that the live block at `old` now is `size` bytes at `new` (a realloc at `step`).
    pub fn moved(&mut self, old: Addr, new: Addr, size: u64, step: usize) {
        if let Some(b) = self.live.remove(&old) {
            if new != old {
                self.freed.insert(
                    old,
                    BlockInfo {
                        freed_at: Some(step),
                        ..b
                    },
                );
            }
            self.allocated(b.id, new, size, step);
        }
    }

    /// The live block starting at `ptr`.
    pub fn live_at(&self, ptr: Addr) -> Option<&BlockInfo> {
        self.live.get(&ptr)
    }

    /// The freed block that started at `ptr`, unless a live one starts there now.
    pub fn freed_at(&self, ptr: Addr) -> Option<&BlockInfo> {
        if self.live.contains_key(&ptr) {
            return None;
        }
        self.freed.get(&ptr)
    }

    /// The live block whose requested bytes hold all of `[addr, addr + len)`.
    pub fn live_containing(&self, addr: Addr, len: u64) -> Option<&BlockInfo> {
        containing(&self.live, addr, len)
    }

    /// The freed block whose bytes held all of `[addr, addr + len)`.
    pub fn freed_containing(&self, addr: Addr, len: u64) -> Option<&BlockInfo> {
        containing(&self.freed, addr, len)
    }

    /// The block a report about `addr` should name: the live or freed block holding it, else
    /// the nearest live block below it (an overflow runs up from there), else the nearest
    /// freed one below, else the nearest live one above.
    pub fn concerning(&self, addr: Addr) -> Option<&BlockInfo> {
        self.live_containing(addr, 1)
            .or_else(|| self.freed_containing(addr, 1))
            .or_else(|| self.live.range(..=addr).next_back().map(|(_, b)| b))
            .or_else(|| self.freed.range(..=addr).next_back().map(|(_, b)| b))
            .or_else(|| self.live.range(addr..).next().map(|(_, b)| b))
    }

    /// The block (live, else freed) that starts at `ptr`.
    pub fn starting_at(&self, ptr: Addr) -> Option<&BlockInfo> {
        self.live.get(&ptr).or_else(|| self.freed.get(&ptr))
    }
}

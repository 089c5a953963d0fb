//! Replaying a trace against one allocator.

use crate::access::{Access, Violation};
use crate::allocator::{AllocError, Allocator, Trail};
use crate::layered_map::LayeredMap;
use crate::trace::{Id, Op};
use crate::{Addr, say};

/// What one operation did to one allocator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    /// An allocation (or reallocation) returned this pointer.
    Placed(Addr),
    /// A free, read, write or mark that succeeded.
    Done,
    /// The allocator refused the call.
    Failed(AllocError),
    /// The operation named a block the program does not hold (free of an unknown id, ...):
    /// nothing was asked of the allocator.
    Skipped(String),
}

/// One operation's outcome, explanation and findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The result.
    pub result: StepResult,
    /// The allocator's decision log (empty when replayed without explanations).
    pub log: Vec<String>,
    /// Bad accesses or frees the allocator caught.
    pub violations: Vec<Violation>,
    /// The address the operation concerned: the pointer placed, freed or accessed.
    pub addr: Option<Addr>,
}

/// A block the program holds, as this allocator placed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Pointer returned.
    pub ptr: Addr,
    /// Bytes requested.
    pub size: u64,
}

/// What the program's id names: a block it holds, or one it freed (reads and writes through
/// a freed id are uses after free, and freeing it again is a double free).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdEntry {
    pub block: Held,
    pub held: bool,
}

/// One allocator replaying a trace, with the program's id -> pointer map.
#[derive(Debug, Clone)]
pub struct Replayer {
    heap: Box<dyn Allocator>,
    ids: LayeredMap<IdEntry>,
}

impl Replayer {
    /// Starts replaying into `heap`.
    pub fn new(heap: Box<dyn Allocator>) -> Self {
        Self {
            heap,
            ids: LayeredMap::default(),
        }
    }

    /// The allocator.
    pub fn heap(&self) -> &dyn Allocator {
        &*self.heap
    }

    /// The allocator, for the timeline to swap its memory in and out (and for the emulator
    /// to check and store heap accesses directly, as applying their ops would).
    pub(crate) fn heap_mut(&mut self) -> &mut dyn Allocator {
        &mut *self.heap
    }

    /// Drops what is remembered of a freed `id`: for a timeline that knows the trace never
    /// names it again, so it need not carry the entry through every checkpoint.
    pub(crate) fn forget_freed(&mut self, id: Id) {
        if self.dangling(id).is_some() {
            self.ids.discard(id);
        }
    }

    /// The program's id table, taken out (left empty) for a checkpoint to store compactly.
    pub(crate) fn take_ids(&mut self) -> LayeredMap<IdEntry> {
        std::mem::take(&mut self.ids)
    }

    /// Puts back the table [`Self::take_ids`] took.
    pub(crate) fn put_ids(&mut self, ids: LayeredMap<IdEntry>) {
        self.ids = ids;
    }

    /// Approximate host bytes of the replay outside the allocator's memory.
    pub fn side_bytes(&self) -> usize {
        self.heap.side_bytes() + self.ids.heap_bytes()
    }

    /// The allocator, handed over (the replay ends).
    pub fn into_heap(self) -> Box<dyn Allocator> {
        self.heap
    }

    /// The block the program holds under `id`, if any.
    pub fn held(&self, id: Id) -> Option<Held> {
        self.ids.get(id).filter(|e| e.held).map(|e| e.block)
    }

    /// Applies one operation, explaining into `trail` (which may be off).
    pub fn apply(&mut self, op: &Op, trail: &mut Trail) -> Step {
        let mut violations = Vec::new();
        let result = self.dispatch(op, trail, &mut violations);
        if let StepResult::Skipped(why) = &result {
            say!(trail, "{why}");
        }
        let addr = match &result {
            StepResult::Placed(ptr) => Some(*ptr),
            _ if op.addr().is_some() => op.addr(),
            _ => op.id().and_then(|id| self.ids.get(id)).map(|e| e.block.ptr),
        };
        Step {
            result,
            log: trail.take(),
            violations,
            addr,
        }
    }

    /// Applies `op` for its effect on the state alone, with no log and no [`Step`] to build:
    /// what a seek replays on its way to the step it shows.
    pub fn advance(&mut self, op: &Op) {
        let _ = self.dispatch(op, &mut Trail::off(), &mut Vec::new());
    }

    fn dispatch(
        &mut self,
        op: &Op,
        trail: &mut Trail,
        violations: &mut Vec<Violation>,
    ) -> StepResult {
        match op {
            Op::Alloc { id, size, align } => {
                self.place(*id, *size, trail, |h, t| h.allocate(*size, *align, t))
            }
            Op::Calloc { id, count, size } => {
                let total = count.saturating_mul(*size);
                self.place(*id, total, trail, |h, t| h.calloc(*count, *size, t))
            }
            Op::String { id, .. } | Op::Function { id, .. } => {
                let size = op.request_size().unwrap_or(0);
                self.place(*id, size, trail, |h, t| h.allocate_object(op, t))
            }
            Op::Realloc { id, size } => match self.held(*id) {
                None => {
                    say!(trail, "#{id} is not held: realloc(NULL, {size}) allocates");
                    self.place(*id, *size, trail, |h, t| h.allocate(*size, 0, t))
                }
                Some(old) => match self.heap.realloc(old.ptr, *size, trail) {
                    Ok(ptr) => {
                        self.hold(*id, Held { ptr, size: *size });
                        StepResult::Placed(ptr)
                    }
                    Err(e) => StepResult::Failed(e),
                },
            },
            Op::Free { id } => {
                // A freed id still names its old pointer: freeing it again is a real double free,
                // passed to the allocator so it can do what the original does with one.
                let (old, again) = match self.ids.get(*id) {
                    Some(entry) => (entry.block, !entry.held),
                    None => {
                        return StepResult::Skipped(format!(
                            "free(#{id}): the program never held a block #{id}"
                        ));
                    }
                };
                if again {
                    say!(trail, "#{id} was already freed: free({:#x}) again", old.ptr);
                }
                if let Some(v) = self.heap.check_free(old.ptr) {
                    violations.push(v);
                }
                match self.heap.free(old.ptr, trail) {
                    Ok(()) => {
                        let freed = IdEntry {
                            block: old,
                            held: false,
                        };
                        self.ids.set(*id, freed);
                        StepResult::Done
                    }
                    Err(e) => StepResult::Failed(e),
                }
            }
            Op::FreeNull => {
                say!(trail, "free(NULL) does nothing");
                StepResult::Done
            }
            Op::Read { id, offset, len } => {
                self.access(*id, *offset, *len, Access::Read, None, trail, violations)
            }
            Op::Write { id, offset, bytes } => self.access(
                *id,
                *offset,
                bytes.len() as u64,
                Access::Write,
                Some(bytes),
                trail,
                violations,
            ),
            Op::Mark { .. } => StepResult::Done,
            Op::ReadAt { addr, len } => {
                self.access_at(*addr, *len, Access::Read, None, trail, violations)
            }
            Op::WriteAt { addr, bytes } => self.access_at(
                *addr,
                bytes.len() as u64,
                Access::Write,
                Some(bytes),
                trail,
                violations,
            ),
            Op::FreeAt { addr } => {
                if let Some(v) = self.heap.check_free(*addr) {
                    violations.push(v);
                }
                match self.heap.free(*addr, trail) {
                    Ok(()) => StepResult::Done,
                    Err(e) => StepResult::Failed(e),
                }
            }
        }
    }

    fn place(
        &mut self,
        id: Id,
        size: u64,
        trail: &mut Trail,
        call: impl FnOnce(&mut dyn Allocator, &mut Trail) -> Result<Addr, AllocError>,
    ) -> StepResult {
        if self.held(id).is_some() {
            say!(trail, "#{id} is already held: the old block leaks");
        }
        match call(&mut *self.heap, trail) {
            Ok(ptr) => {
                self.hold(id, Held { ptr, size });
                StepResult::Placed(ptr)
            }
            Err(e) => StepResult::Failed(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn access(
        &mut self,
        id: Id,
        offset: u64,
        len: u64,
        access: Access,
        data: Option<&[u8]>,
        trail: &mut Trail,
        violations: &mut Vec<Violation>,
    ) -> StepResult {
        // A dangling id still names the address it had: that is how a use after free happens.
        let Some(block) = self.ids.get(id).map(|e| e.block) else {
            return StepResult::Skipped(format!(
                "{access} of #{id}: the program never held block #{id}"
            ));
        };
        let addr = block.ptr.saturating_add(offset);
        self.access_at(addr, len, access, data, trail, violations)
    }

    /// An access at an absolute address: checked, and for a write, stored in the heap's bytes.
    fn access_at(
        &mut self,
        addr: Addr,
        len: u64,
        access: Access,
        data: Option<&[u8]>,
        trail: &mut Trail,
        violations: &mut Vec<Violation>,
    ) -> StepResult {
        if let Some(v) = self.heap.check_access(addr, len, access) {
            say!(trail, "{}: {}", v.class, v.message);
            violations.push(v);
        }
        if let Some(bytes) = data
            && self.heap.memory_mut().write(addr, bytes).is_err()
        {
            say!(
                trail,
                "write of {len} B at {addr:#x} is outside the heap's memory: dropped"
            );
        }
        StepResult::Done
    }

    /// Where the freed `id` pointed.
    fn dangling(&self, id: Id) -> Option<Held> {
        self.ids.get(id).filter(|e| !e.held).map(|e| e.block)
    }

    /// Records that the program holds `block` under `id` (any freed block it named is
    /// forgotten: the id names the new one now).
    fn hold(&mut self, id: Id, block: Held) {
        self.ids.set(id, IdEntry { block, held: true });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AllocatorKind, ErrorKind, HeapConfig, ViolationClass};

    fn replayer(kind: AllocatorKind) -> Replayer {
        Replayer::new(kind.build(&HeapConfig::default()).unwrap())
    }

    #[test]
    fn a_second_free_of_an_id_reaches_the_allocator_as_a_double_free() {
        let mut r = replayer(AllocatorKind::CheckedBump);
        let mut t = Trail::on();
        r.apply(
            &Op::Alloc {
                id: 1,
                size: 8,
                align: 0,
            },
            &mut t,
        );
        assert_eq!(
            r.apply(&Op::Free { id: 1 }, &mut t).result,
            StepResult::Done
        );
        let again = r.apply(&Op::Free { id: 1 }, &mut t);
        assert!(matches!(&again.result, StepResult::Failed(e) if e.kind == ErrorKind::DoubleFree));
        assert_eq!(again.violations.len(), 1);
        assert_eq!(again.violations[0].class, ViolationClass::DoubleFree);
        let never = r.apply(&Op::Free { id: 9 }, &mut t);
        assert!(matches!(never.result, StepResult::Skipped(_)));
    }

    #[test]
    fn reads_through_a_freed_id_are_uses_after_free_and_writes_land_in_memory() {
        let mut r = replayer(AllocatorKind::CheckedBump);
        let mut t = Trail::off();
        let StepResult::Placed(ptr) = r
            .apply(
                &Op::Alloc {
                    id: 1,
                    size: 8,
                    align: 0,
                },
                &mut t,
            )
            .result
        else {
            panic!("allocation failed");
        };
        let write = r.apply(
            &Op::Write {
                id: 1,
                offset: 6,
                bytes: vec![1, 2, 3],
            },
            &mut t,
        );
        assert_eq!(
            write.violations[0].class,
            ViolationClass::HeapBufferOverflow
        );
        assert_eq!(r.heap().memory().slice(ptr + 6, 2).unwrap(), &[1, 2]);
        r.apply(&Op::Free { id: 1 }, &mut t);
        let read = r.apply(
            &Op::Read {
                id: 1,
                offset: 0,
                len: 4,
            },
            &mut t,
        );
        assert_eq!(read.violations[0].class, ViolationClass::UseAfterFree);
        assert_eq!(read.addr, Some(ptr));
    }
}

//! Servicing the guest's heap calls with the allocator: each call becomes one [`Op`] keyed by
//! ids, applied through the [`Replayer`](crate::Replayer), so the run is a replayable trace.

use super::machine::Machine;
use super::{CallEvent, Event, Exit, HeapFunction, Site, ViolationEvent, report};
use crate::Addr;
use crate::replay::StepResult;
use crate::trace::Op;

/// `errno` values `posix_memalign` returns.
const ENOMEM: u64 = 12;
const EINVAL: u64 = 22;

/// What the guest gets back from a heap call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Return {
    /// `rax`.
    pub value: u64,
    /// A pointer to store for the guest (`posix_memalign`'s `*out`): where and what.
    pub store: Option<(Addr, u64)>,
}

impl Machine<'_> {
    /// Services `function(args)` called from the instruction at `pc`.
    pub fn heap_call(
        &mut self,
        function: HeapFunction,
        args: [u64; 3],
        pc: Option<Addr>,
    ) -> Return {
        let null = Return {
            value: 0,
            store: None,
        };
        if self.stop.is_some() {
            return null;
        }
        if self.step() >= self.max_ops {
            self.stop = Some(Exit::TraceLimit { ops: self.max_ops });
            return null;
        }
        self.check_corruption();
        let step = self.step();
        self.hot = None;
        let [a, b, c] = args;
        let mut note = None;
        let (op, requested) = match function {
            HeapFunction::Malloc => (self.fresh_alloc(a, 0), a),
            HeapFunction::AlignedAlloc => (self.fresh_alloc(b, a), b),
            HeapFunction::PosixMemalign => (self.fresh_alloc(c, b), c),
            HeapFunction::Calloc => {
                let id = self.fresh_id();
                (
                    Op::Calloc {
                        id,
                        count: a,
                        size: b,
                    },
                    a.saturating_mul(b),
                )
            }
            HeapFunction::Realloc => match (a, self.tracker.live_at(a)) {
                (0, _) => {
                    let id = self.fresh_id();
                    (Op::Realloc { id, size: b }, b)
                }
                (_, Some(block)) => (
                    Op::Realloc {
                        id: block.id,
                        size: b,
                    },
                    b,
                ),
                (ptr, None) => {
                    // A trace has no way to realloc an address the program does not hold, and
                    // no allocator model is asked to: the guest gets NULL.
                    let text = format!(
                        "realloc({ptr:#x}, {b}) of a pointer the program does not hold: \
                         not passed to the allocator, returned NULL"
                    );
                    note = Some(text.clone());
                    (Op::Mark { label: text }, 0)
                }
            },
            HeapFunction::Free => match a {
                0 => (Op::FreeNull, 0),
                ptr => match (self.tracker.live_at(ptr), self.tracker.freed_at(ptr)) {
                    (Some(block), _) | (None, Some(block)) => (Op::Free { id: block.id }, 0),
                    (None, None) => (Op::FreeAt { addr: ptr }, 0),
                },
            },
        };
        // Violations of a call are about the pointer passed in, so the block it names is
        // looked up before the call changes anything.
        let concerned = match function {
            HeapFunction::Free | HeapFunction::Realloc if a != 0 => self
                .tracker
                .starting_at(a)
                .or_else(|| self.tracker.concerning(a))
                .copied(),
            _ => None,
        };
        let outcome = self.replayer.apply(&op, &mut self.trail);
        self.call_ops.push((step, op.clone()));
        self.layout = None;
        let site = Site {
            pc,
            instruction: pc.and_then(|pc| self.disasm.text(self.image, pc)),
        };
        for violation in outcome.violations {
            let report = report::free_report(violation.class.name(), a, &site, concerned.as_ref());
            self.events.push(Event::Violation(ViolationEvent {
                step,
                violation,
                site: site.clone(),
                block: concerned,
                report,
            }));
            if self.stop_on_first {
                self.stop = Some(Exit::StoppedOnViolation);
            }
        }
        let result = match &outcome.result {
            StepResult::Placed(ptr) => Ok(Some(*ptr)),
            StepResult::Done => Ok(None),
            StepResult::Failed(e) => Err(e.clone()),
            StepResult::Skipped(why) => {
                note.get_or_insert_with(|| why.clone());
                Ok(None)
            }
        };
        let placed = match &outcome.result {
            StepResult::Placed(ptr) => Some(*ptr),
            _ => None,
        };
        match (&op, placed) {
            (Op::Realloc { id, .. }, Some(new)) if self.tracker.live_at(a).is_some() && a != 0 => {
                let _ = id;
                self.tracker.moved(a, new, requested, step);
            }
            (Op::Alloc { id, .. } | Op::Calloc { id, .. } | Op::Realloc { id, .. }, Some(ptr)) => {
                self.tracker.allocated(*id, ptr, requested, step);
            }
            (Op::Free { .. }, None) if result.is_ok() => self.tracker.freed(a, step),
            _ => {}
        }
        let value = match function {
            HeapFunction::Free => 0,
            HeapFunction::PosixMemalign => match &result {
                Ok(_) => 0,
                Err(e) if e.kind == crate::ErrorKind::Unsupported => EINVAL,
                Err(_) => ENOMEM,
            },
            _ => placed.unwrap_or(0),
        };
        let store = match (function, placed) {
            (HeapFunction::PosixMemalign, Some(ptr)) => Some((a, ptr)),
            _ => None,
        };
        self.events.push(Event::Call(CallEvent {
            step,
            function,
            args: args[..function.arity()].to_vec(),
            pc,
            result,
            note,
        }));
        Return { value, store }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn fresh_alloc(&mut self, size: u64, align: u64) -> Op {
        let id = self.fresh_id();
        Op::Alloc { id, size, align }
    }
}

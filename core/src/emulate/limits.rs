//! The instruction budget and the wall clock, watched from a hook on each translated block.
//!
//! Unicorn offers both in `emu_start`, but neither is usable as it is:
//! - its instruction count is a code hook on every instruction (a helper call each, which
//!   also walks every other code hook, the heap functions' included): it made a heap loop
//!   three times slower;
//! - its timeout is a thread that polls every 2 µs (a busy core) and reads a clock whose source
//!   is a process-wide flag that every engine being set up resets (`init_get_clock` in
//!   `machine_initialize`): while another thread starts an engine, the timer can compare two
//!   different clocks, think the time is up and stop a healthy run (a third of parallel runs
//!   ended early in a stress test).
//!
//! So a block hook counts each block's instructions before the block runs (Unicorn calls it
//! before its own stop check, so a stop asked for there runs nothing of the block) and looks at
//! the clock every few thousand blocks. When the next block would overrun the budget, the run
//! pauses at its start and the last few instructions are counted one by one by Unicorn's own
//! count (see [`super::machine`]), so a budget ends the run after exactly that many
//! instructions. (A heap function's placeholder body counts as translated, though the hook
//! at its entry returns before it runs: a few instructions per heap call.)

use std::time::{Duration, Instant};

use iced_x86::{Decoder, DecoderOptions};
use rustc_hash::FxHashMap;

use crate::Addr;

/// Blocks entered between two looks at the clock (a look costs about as much as a few hundred
/// blocks of a tight loop).
const BLOCKS_PER_CLOCK_CHECK: u64 = 1 << 12;

/// What the block hook decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Run the block.
    Run,
    /// The wall-clock limit has passed.
    TimedOut,
    /// The block would overrun the budget: pause before it.
    BudgetTail,
}

/// The limits of one run and what has been used of them.
#[derive(Debug)]
pub struct Limits {
    max_insns: u64,
    deadline: Instant,
    /// Instructions of the blocks entered so far.
    executed: u64,
    blocks: u64,
    /// Instructions per translated block, by its start and byte size.
    block_insns: FxHashMap<(Addr, u32), u64>,
    /// The last block entered and its instructions (a loop enters the same one again and again).
    last: (Addr, u32, u64),
    /// Set once the run pauses for the budget's tail: Unicorn counts from there on.
    counting_by_unicorn: bool,
}

impl Limits {
    /// Limits starting now.
    pub fn new(max_insns: u64, timeout: Duration) -> Self {
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
            .unwrap_or(now);
        Self {
            max_insns,
            deadline,
            executed: 0,
            blocks: 0,
            block_insns: FxHashMap::default(),
            last: (0, 0, 0),
            counting_by_unicorn: false,
        }
    }

    /// A block of `size` bytes at `addr` is about to run; `code` gives its bytes (asked only
    /// the first time the block is seen; fewer bytes when not all are known).
    pub fn on_block<'c>(
        &mut self,
        addr: Addr,
        size: u32,
        code: impl FnOnce() -> &'c [u8],
    ) -> Verdict {
        self.blocks += 1;
        if self.blocks.is_multiple_of(BLOCKS_PER_CLOCK_CHECK) && Instant::now() >= self.deadline {
            return Verdict::TimedOut;
        }
        if self.counting_by_unicorn {
            return Verdict::Run;
        }
        let insns = match self.last {
            (a, s, insns) if (a, s) == (addr, size) && insns > 0 => insns,
            _ => {
                let insns = *self
                    .block_insns
                    .entry((addr, size))
                    .or_insert_with(|| count_instructions(addr, code()));
                self.last = (addr, size, insns);
                insns
            }
        };
        if self.executed.saturating_add(insns) > self.max_insns {
            self.counting_by_unicorn = true;
            return Verdict::BudgetTail;
        }
        self.executed += insns;
        Verdict::Run
    }

    /// Instructions left of the budget (once paused for its tail, what Unicorn is to count).
    pub fn remaining(&self) -> u64 {
        self.max_insns.saturating_sub(self.executed)
    }

    /// Whether the run paused for the budget's tail.
    pub fn at_budget_tail(&self) -> bool {
        self.counting_by_unicorn
    }
}

/// Instructions in a block's bytes (at least 1: a block whose bytes are unknown, a runtime stub,
/// is one instruction).
fn count_instructions(addr: Addr, bytes: &[u8]) -> u64 {
    let Ok(mut decoder) = Decoder::try_with_ip(64, bytes, addr, DecoderOptions::NONE) else {
        return 1;
    };
    let mut count = 0;
    while decoder.can_decode() {
        let _ = decoder.decode();
        count += 1;
    }
    count.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_counted_by_their_instructions_and_the_tail_is_left_to_unicorn() {
        // inc rax; inc rax; jmp $-6: three instructions in 8 bytes.
        let code = [0x48, 0xff, 0xc0, 0x48, 0xff, 0xc0, 0xeb, 0xf8];
        let mut limits = Limits::new(7, Duration::from_secs(60));
        assert_eq!(limits.on_block(0x1000, 8, || &code), Verdict::Run);
        // Counted once, then looked up.
        assert_eq!(limits.on_block(0x1000, 8, || &[]), Verdict::Run);
        assert_eq!(limits.remaining(), 1);
        assert_eq!(limits.on_block(0x1000, 8, || &code), Verdict::BudgetTail);
        assert!(limits.at_budget_tail());
        assert_eq!(limits.remaining(), 1);
        assert_eq!(limits.on_block(0x1000, 8, || &code), Verdict::Run);
        // A block whose bytes are unknown counts as one instruction.
        let mut limits = Limits::new(1, Duration::from_secs(60));
        assert_eq!(limits.on_block(0x2000, 1, || &[]), Verdict::Run);
        assert_eq!(limits.on_block(0x2000, 1, || &[]), Verdict::BudgetTail);
    }

    #[test]
    fn the_clock_is_read_every_few_thousand_blocks() {
        let mut limits = Limits::new(u64::MAX, Duration::ZERO);
        let verdicts: Vec<_> = (0..BLOCKS_PER_CLOCK_CHECK)
            .map(|_| limits.on_block(0x1000, 0, || &[]))
            .collect();
        assert!(
            verdicts[..verdicts.len() - 1]
                .iter()
                .all(|v| *v == Verdict::Run)
        );
        assert_eq!(verdicts.last(), Some(&Verdict::TimedOut));
    }
}

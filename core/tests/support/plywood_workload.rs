//! Plywood's heap fragmentation workload (`apps/fragmentation-test/fragmentation-test.cpp` in
//! preshing/plywood), regenerated as a CS:APP malloclab trace.
//!
//! Facts taken from Plywood's sources:
//! - `Random random{0}`: Plywood's `Random(u64 seed)` is xoroshiro128** seeded with
//!   `s[0] = shuffleBits(seed + 1)`, `s[1] = shuffleBits(s[0] + 1)` (MurmurHash3's `fmix64`),
//!   then two outputs discarded; `generateU32()` is the low 32 bits of `generateU64()`.
//! - Sizes: with large blocks allowed, 1 in 10 is in [100000, 400000); otherwise 1 in 4 is in
//!   [5000, 20000), the rest in [10, 510). Each test draws a fresh number, in that order.
//! - Targets (KB of 1000 bytes): 400, 100, 2000, 400, 5000, 2000, 10000, 8000, 10000, 400, 2000,
//!   0. Below a target it grows (add, free a random block, add) until it reaches it; above, it
//!   shrinks (free a random block, add a block without large sizes, free) until at or below it.
//! - A random block is `allBlocks[random % count]`, removed with `eraseQuick` (the last entry
//!   moves into its slot).

/// Plywood's `Random`: xoroshiro128** with Plywood's seeding.
#[derive(Debug, Clone)]
pub struct PlyRandom {
    s: [u64; 2],
}

/// MurmurHash3's `fmix64`, Plywood's `shuffleBits(u64)`.
fn shuffle_bits(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

impl PlyRandom {
    /// `Random(u64 seed)`.
    pub fn new(seed: u64) -> Self {
        let s0 = shuffle_bits(seed.wrapping_add(1));
        let s1 = shuffle_bits(s0.wrapping_add(1));
        let mut r = Self { s: [s0, s1] };
        r.next_u64();
        r.next_u64();
        r
    }

    /// `generateU64()`.
    pub fn next_u64(&mut self) -> u64 {
        let s0 = self.s[0];
        let mut s1 = self.s[1];
        let result = s0.wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        s1 ^= s0;
        self.s[0] = s0.rotate_left(24) ^ s1 ^ (s1 << 16);
        self.s[1] = s1.rotate_left(37);
        result
    }

    /// `generateU32()`: the low half.
    pub fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
}

/// The live-set targets, in KB of 1000 bytes, as Plywood's test lists them.
pub const TARGET_KB: [u32; 12] = [
    400, 100, 2000, 400, 5000, 2000, 10000, 8000, 10000, 400, 2000, 0,
];

/// One operation of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkOp {
    /// `Heap::alloc(bytes)` for block `id`.
    Alloc { id: u64, bytes: u32 },
    /// `Heap::free` of block `id`.
    Free { id: u64 },
}

/// The generated workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Every call, in order.
    pub ops: Vec<WorkOp>,
    /// For each target, how many operations had run when the live set reached it.
    pub phase_ends: Vec<usize>,
    /// Highest live byte count.
    pub peak_live: u64,
}

struct State {
    random: PlyRandom,
    /// `allBlocks`: (id, bytes), in Plywood's order.
    blocks: Vec<(u64, u32)>,
    live: u64,
    next_id: u64,
    out: Workload,
}

impl State {
    /// `getRandomAllocationSize(allowLarge)`; `&&` short-circuits, so no draw without large.
    fn size(&mut self, allow_large: bool) -> u32 {
        if allow_large && self.random.next_u32().is_multiple_of(10) {
            return self.random.next_u32() % (400_000 - 100_000) + 100_000;
        }
        if self.random.next_u32().is_multiple_of(4) {
            return self.random.next_u32() % 15_000 + 5_000;
        }
        self.random.next_u32() % 500 + 10
    }

    fn add(&mut self, allow_large: bool) {
        let bytes = self.size(allow_large);
        let id = self.next_id;
        self.next_id += 1;
        self.blocks.push((id, bytes));
        self.live += u64::from(bytes);
        self.out.peak_live = self.out.peak_live.max(self.live);
        self.out.ops.push(WorkOp::Alloc { id, bytes });
    }

    fn free_random(&mut self) {
        if self.blocks.is_empty() {
            return;
        }
        let count = u32::try_from(self.blocks.len()).unwrap_or(u32::MAX);
        let i = (self.random.next_u32() % count) as usize;
        let (id, bytes) = self.blocks.swap_remove(i);
        self.live -= u64::from(bytes);
        self.out.ops.push(WorkOp::Free { id });
    }
}

/// Runs Plywood's fragmentation test as it is: seed 0, the original targets.
pub fn generate() -> Workload {
    let mut st = State {
        random: PlyRandom::new(0),
        blocks: Vec::new(),
        live: 0,
        next_id: 0,
        out: Workload {
            ops: Vec::new(),
            phase_ends: Vec::new(),
            peak_live: 0,
        },
    };
    for kb in TARGET_KB {
        let target = u64::from(kb) * 1000;
        if st.live < target {
            while st.live < target {
                st.add(true);
                st.free_random();
                st.add(true);
            }
        } else {
            while st.live > target {
                st.free_random();
                st.add(false);
                st.free_random();
            }
        }
        st.out.phase_ends.push(st.out.ops.len());
    }
    st.out
}

/// The workload as a malloclab `.rep` file (ids are allocation order).
pub fn to_rep(work: &Workload) -> String {
    use std::fmt::Write as _;
    let ids = work
        .ops
        .iter()
        .filter(|op| matches!(op, WorkOp::Alloc { .. }))
        .count();
    let mut text = String::with_capacity(work.ops.len() * 12);
    let _ = write!(text, "0\n{ids}\n{}\n1\n", work.ops.len());
    for op in &work.ops {
        let _ = match op {
            WorkOp::Alloc { id, bytes } => writeln!(text, "a {id} {bytes}"),
            WorkOp::Free { id } => writeln!(text, "f {id}"),
        };
    }
    text
}

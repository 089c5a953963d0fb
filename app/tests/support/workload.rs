//! A synthetic malloc-lab trace for tests and benchmarks: `live` allocations, then frees of
//! random live blocks each followed by a new allocation, up to `ops` operations, so about
//! `live` blocks stay live throughout. Deterministic (a fixed linear congruential generator).

/// The trace as `.rep` text.
pub fn churn_rep(ops: usize, live: usize) -> String {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    let live = live.min(ops);
    let ids = live + (ops - live).div_ceil(2);
    let mut out = format!("0\n{ids}\n{ops}\n1\n");
    let mut held: Vec<usize> = Vec::with_capacity(live);
    let mut id = 0;
    let mut written = 0;
    while written < ops {
        if held.len() < live || written % 2 == live % 2 {
            let size = 8 + next(249);
            out.push_str(&format!("a {id} {size}\n"));
            held.push(id);
            id += 1;
        } else {
            let at = next(held.len() as u64) as usize;
            let victim = held.swap_remove(at);
            out.push_str(&format!("f {victim}\n"));
        }
        written += 1;
    }
    out
}

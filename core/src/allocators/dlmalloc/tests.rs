use super::*;
use crate::layout::BlockState;

fn heap() -> Dlmalloc {
    Dlmalloc::from_config(&HeapConfig::default()).unwrap()
}

fn heap_with(granularity: u64, max: u64) -> Dlmalloc {
    Dlmalloc::from_config(&HeapConfig {
        granularity: Some(granularity),
        max: Some(max),
        ..HeapConfig::default()
    })
    .unwrap()
}

fn off() -> Trail {
    Trail::off()
}

/// The heap is sound: no findings and a clean tiling.
#[track_caller]
fn sound(h: &Dlmalloc) {
    let findings = h.validate();
    assert!(findings.is_empty(), "{findings:#?}");
    let layout = h.inspect();
    let tiling = layout.check_tiling();
    assert!(tiling.is_empty(), "{tiling:#?}");
    assert_eq!(
        layout.blocks.last().map(|b| b.range.end),
        Some(layout.extent.end)
    );
    // Every live block's usable bytes are the payload of one Live block of the layout.
    for (mem, entry) in h.ledger.iter() {
        let usable = h.usable_size(mem).unwrap();
        assert!(usable >= entry.requested);
        let block = layout.block_at(mem).unwrap();
        assert_eq!(block.state, BlockState::Live, "{block:?}");
        assert_eq!(block.payload, mem..mem + usable, "{block:?}");
        assert_eq!(block.requested, Some(entry.requested));
    }
    // Free chunks end with their footer, which holds their size.
    for block in layout.blocks.iter().filter(|b| b.state == BlockState::Free) {
        let foot = block.fields.last().unwrap();
        assert_eq!(foot.name, "foot (next.prev_foot)");
        assert_eq!(foot.range, block.range.end - 8..block.range.end);
        assert_eq!(foot.value, block.size(), "{block:?}");
    }
}

fn list<'a>(layout: &'a HeapLayout, prefix: &str) -> Option<&'a crate::layout::FreeList> {
    layout
        .free_lists
        .iter()
        .find(|l| l.name.starts_with(prefix))
}

#[test]
fn plywood_coalescing_test() {
    // Plywood's heap test "coalescing": three 120-byte blocks, free the first two, and a
    // 220-byte request must reuse the first block's address (the two freed chunks merged).
    let mut h = heap();
    let mut t = off();
    let a = h.allocate(120, 0, &mut t).unwrap();
    let b = h.allocate(120, 0, &mut t).unwrap();
    let c = h.allocate(120, 0, &mut t).unwrap();
    assert_eq!(
        (b - a, c - b),
        (128, 128),
        "120 B -> 128 B chunks, back to back"
    );
    h.free(a, &mut t).unwrap();
    h.free(b, &mut t).unwrap();
    sound(&h);
    let layout = h.inspect();
    let merged = layout.block_at(a).unwrap();
    assert_eq!(merged.state, BlockState::Free);
    assert_eq!(merged.size(), 256, "a and b coalesced into one 256 B chunk");
    assert_eq!(merged.class.as_deref(), Some("tree bin 0"));
    let d = h.allocate(220, 0, &mut t).unwrap();
    assert_eq!(d, a);
    sound(&h);
}

#[test]
fn requests_round_to_chunks_with_a_32_byte_minimum() {
    let mut h = heap();
    let mut t = off();
    let first = h.allocate(0, 0, &mut t).unwrap();
    assert_eq!(
        first,
        h.system_ceiling() - (64 << 10) + 16,
        "first chunk at the base of the first 64 KiB segment, right below the state"
    );
    let mut prev = first;
    for (req, chunk) in [
        (0u64, 32u64),
        (23, 32),
        (24, 32),
        (25, 48),
        (232, 240),
        (233, 256),
    ] {
        let p = h.allocate(req, 0, &mut t).unwrap();
        assert_eq!(p % 16, 0);
        let _ = chunk;
        prev = p;
        assert_eq!(h.usable_size(p), Some(request2size(req) - 8));
        assert_eq!(request2size(req), chunk, "request {req}");
    }
    let _ = prev;
    sound(&h);
}

#[test]
fn small_bins_are_exact_size_and_last_in_first_out() {
    let mut h = heap();
    let mut t = off();
    let ps: Vec<_> = (0..6).map(|_| h.allocate(40, 0, &mut t).unwrap()).collect();
    // Free every other block so none can coalesce.
    for &p in &[ps[0], ps[2], ps[4]] {
        h.free(p, &mut t).unwrap();
    }
    sound(&h);
    let layout = h.inspect();
    let bin = list(&layout, "small bin 6 (48 B)").expect("48 B chunks in small bin 6");
    assert_eq!(
        bin.nodes,
        vec![ps[4] - 8, ps[2] - 8, ps[0] - 8],
        "fd order: newest first (nodes are the chunks' head words)"
    );
    assert_eq!(bin.problem, None);
    assert_eq!(h.smallmap(), 1 << 6);
    let again = h.allocate(33, 0, &mut t).unwrap();
    assert_eq!(again, ps[4], "exact fit takes the front of the bin");
    sound(&h);
}

#[test]
fn a_split_small_chunk_leaves_a_designated_victim_used_for_the_next_requests() {
    let mut h = heap();
    let mut t = off();
    let big = h.allocate(200, 0, &mut t).unwrap(); // 208 B chunk
    let _guard = h.allocate(8, 0, &mut t).unwrap();
    h.free(big, &mut t).unwrap();
    let a = h.allocate(40, 0, &mut t).unwrap(); // 48 B from the 208 B chunk
    assert_eq!(a, big);
    assert_eq!((h.dv(), h.dvsize()), (big - 16 + 48, 160));
    let layout = h.inspect();
    assert!(
        layout
            .markers
            .iter()
            .any(|m| m.name == "dv" && m.addr == big + 32)
    );
    assert_eq!(
        list(&layout, "dv").map(|l| l.nodes.clone()),
        Some(vec![big + 40]),
        "nodes are block starts: the dv chunk's head word"
    );
    let dv_block = layout.block_at(big + 40).unwrap();
    assert_eq!(dv_block.range, big + 40..big + 40 + 160);
    assert_eq!(dv_block.class.as_deref(), Some("dv"));
    let b = h.allocate(40, 0, &mut t).unwrap();
    assert_eq!(b, a + 48, "carved from the dv");
    assert_eq!(h.dvsize(), 112);
    sound(&h);
}

#[test]
fn tree_bins_give_the_best_fit() {
    let mut h = heap();
    let mut t = off();
    let sizes = [1000u64, 600, 2000, 700, 650];
    let mut ps = Vec::new();
    for &s in &sizes {
        ps.push(h.allocate(s, 0, &mut t).unwrap());
        h.allocate(8, 0, &mut t).unwrap(); // keep them apart
    }
    for &p in &ps {
        h.free(p, &mut t).unwrap();
    }
    sound(&h);
    let layout = h.inspect();
    let in_trees: usize = layout
        .free_lists
        .iter()
        .filter(|l| l.name.starts_with("tree bin"))
        .map(|l| l.nodes.len())
        .sum();
    assert_eq!(in_trees, 5);
    // 640 B chunk: the 656 B chunk (650 requested) is the best fit, not the first freed.
    let q = h.allocate(630, 0, &mut t).unwrap();
    assert_eq!(q, ps[4]);
    let r = h.allocate(690, 0, &mut t).unwrap();
    assert_eq!(r, ps[3], "704 B chunk for 690 B");
    sound(&h);
}

#[test]
fn same_size_tree_chunks_chain_and_are_walked_in_order() {
    let mut h = heap();
    let mut t = off();
    let mut ps = Vec::new();
    for s in [300u64, 300, 300, 500, 260] {
        ps.push(h.allocate(s, 0, &mut t).unwrap());
        h.allocate(8, 0, &mut t).unwrap();
    }
    for &p in &ps {
        h.free(p, &mut t).unwrap();
    }
    sound(&h);
    let layout = h.inspect();
    let nodes: Vec<Addr> = layout
        .free_lists
        .iter()
        .filter(|l| l.name.starts_with("tree bin"))
        .flat_map(|l| l.nodes.clone())
        .collect();
    let sizes: Vec<u64> = nodes
        .iter()
        .map(|&n| layout.block_at(n).unwrap().size())
        .collect();
    let mut sorted = sizes.clone();
    sorted.sort_unstable();
    assert_eq!(sizes, sorted, "in-order walk gives ascending sizes");
    assert_eq!(sizes.iter().filter(|&&s| s == 320).count(), 3);
}

#[test]
fn freeing_next_to_top_merges_into_top_and_trims_past_the_threshold() {
    let mut h = heap();
    let mut t = off();
    let a = h.allocate(100, 0, &mut t).unwrap();
    let top_before = h.top();
    h.free(a, &mut t).unwrap();
    assert_eq!(h.top(), a - 16, "top moved down over the freed chunk");
    assert_eq!(h.footprint(), 64 << 10);
    // Grow the heap past the trim threshold without direct mapping, then free it all.
    h.set_mmap_threshold(u64::MAX);
    let big = h.allocate(3 << 20, 0, &mut t).unwrap();
    assert!(h.footprint() > 3 << 20);
    let mut trail = Trail::on();
    h.free(big, &mut trail).unwrap();
    assert!(
        trail.lines().iter().any(|l| l.contains("trim")),
        "{trail:?}"
    );
    assert_eq!(
        h.footprint(),
        64 << 10,
        "trimmed back to one granularity unit"
    );
    assert_eq!(h.system_bytes(), h.footprint());
    assert_ne!(top_before, 0);
    sound(&h);
}

#[test]
fn large_requests_get_their_own_mapping_and_give_it_back() {
    let mut h = heap();
    let mut t = off();
    let small = h.allocate(10, 0, &mut t).unwrap();
    let fp = h.footprint();
    let mut trail = Trail::on();
    let big = h.allocate(300 << 10, 0, &mut trail).unwrap();
    assert!(trail.lines().iter().any(|l| l.contains("own mapping")));
    let mapped = (300u64 << 10) + 8 + 48 + 15;
    let mapped = mapped.next_multiple_of(PAGE_SIZE);
    assert_eq!(h.footprint(), fp + mapped);
    let layout = h.inspect();
    let block = layout.block_at(big).unwrap();
    assert_eq!(block.class.as_deref(), Some("mmapped chunk"));
    assert_eq!(block.requested, Some(300 << 10));
    sound(&h);
    // calloc from a fresh mapping skips the memset but still reads zero.
    let z = h.calloc(1, 400 << 10, &mut t).unwrap();
    assert!(
        h.memory()
            .slice(z, 400 << 10)
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );
    h.free(big, &mut t).unwrap();
    h.free(z, &mut t).unwrap();
    assert_eq!(h.footprint(), fp);
    h.free(small, &mut t).unwrap();
    sound(&h);
}

#[test]
fn realloc_shrinks_and_grows_in_place_when_it_can() {
    let mut h = heap();
    let mut t = off();
    let a = h.allocate(100, 0, &mut t).unwrap();
    h.memory_mut().fill(a, 100, 0xab).unwrap();
    // Next to top: grows in place.
    let a2 = h.realloc(a, 1000, &mut t).unwrap();
    assert_eq!(a2, a);
    let b = h.allocate(100, 0, &mut t).unwrap();
    // Shrink in place: the tail becomes free.
    let a3 = h.realloc(a, 200, &mut t).unwrap();
    assert_eq!(a3, a);
    sound(&h);
    // Grow into the following free chunk (the tail freed above).
    let a4 = h.realloc(a, 600, &mut t).unwrap();
    assert_eq!(a4, a);
    assert_eq!(h.memory().slice(a, 100).unwrap(), &[0xab; 100][..]);
    // No room: moves, copying the bytes.
    let a5 = h.realloc(a, 5000, &mut t).unwrap();
    assert_ne!(a5, a);
    assert_eq!(h.memory().slice(a5, 100).unwrap(), &[0xab; 100][..]);
    assert_eq!(h.usable_size(a), None);
    h.free(b, &mut t).unwrap();
    h.free(a5, &mut t).unwrap();
    sound(&h);
}

#[test]
fn realloc_of_a_mapped_chunk_uses_mremap() {
    let mut h = heap();
    let mut t = off();
    h.allocate(10, 0, &mut t).unwrap();
    let p = h.allocate(300 << 10, 0, &mut t).unwrap();
    h.memory_mut().write_u64(p, 77).unwrap();
    let same = h.realloc(p, (300 << 10) - 1000, &mut t).unwrap();
    assert_eq!(same, p, "close enough: kept");
    let q = h.realloc(p, 2 << 20, &mut t).unwrap();
    assert_eq!(h.memory().read_u64(q).unwrap(), 77);
    assert!(h.usable_size(q).unwrap() >= 2 << 20);
    sound(&h);
    h.free(q, &mut t).unwrap();
    sound(&h);
}

#[test]
fn aligned_allocations_give_back_the_leading_and_trailing_space() {
    let mut h = heap();
    let mut t = off();
    h.allocate(24, 0, &mut t).unwrap();
    for align in [32u64, 64, 256, 4096, 48] {
        let p = h.allocate(100, align, &mut t).unwrap();
        let want = if align.is_power_of_two() { align } else { 64 };
        assert_eq!(p % want, 0, "align {align}");
        let layout = h.inspect();
        let chunk = layout.block_at(p).unwrap();
        assert!(
            chunk.size() <= request2size(100) + MIN_CHUNK_SIZE,
            "trailing space given back"
        );
        sound(&h);
    }
    // Aligned and mapped.
    let p = h.allocate(1 << 20, 1 << 16, &mut t).unwrap();
    assert_eq!(p % (1 << 16), 0);
    sound(&h);
    h.free(p, &mut t).unwrap();
    sound(&h);
}

#[test]
fn calloc_zeroes_a_reused_chunk() {
    let mut h = heap();
    let mut t = off();
    let a = h.allocate(64, 0, &mut t).unwrap();
    h.allocate(8, 0, &mut t).unwrap();
    h.memory_mut().fill(a, 64, 0xff).unwrap();
    h.free(a, &mut t).unwrap();
    let z = h.calloc(8, 8, &mut t).unwrap();
    assert_eq!(z, a);
    assert!(h.memory().slice(z, 64).unwrap().iter().all(|&b| b == 0));
    assert_eq!(
        h.calloc(u64::MAX, 2, &mut t).unwrap_err().kind,
        ErrorKind::SizeOverflow
    );
}

#[test]
fn a_gap_after_top_makes_a_new_segment_with_record_and_fenceposts() {
    let mut h = heap_with(4096, 64 << 20);
    let mut t = off();
    let a = h.allocate(100, 0, &mut t).unwrap();
    // A direct mapping lands right below the first segment...
    let big = h.allocate(300 << 10, 0, &mut t).unwrap();
    // ...so growing the heap cannot be contiguous: the new region goes below that mapping.
    let mut trail = Trail::on();
    let c = h.allocate(8000, 0, &mut trail).unwrap();
    assert!(
        trail.lines().iter().any(|l| l.contains("add a segment")),
        "{:?}",
        trail.lines()
    );
    assert!(c < big);
    sound(&h);
    let layout = h.inspect();
    let states: Vec<_> = layout
        .blocks
        .iter()
        .filter_map(|b| b.class.clone())
        .collect();
    assert!(states.iter().any(|c| c == "segment record"), "{states:?}");
    assert!(states.iter().any(|c| c == "fenceposts"));
    assert!(states.iter().any(|c| c == "mmapped chunk"));
    assert_eq!(h.segments().unwrap().len(), 2);
    // Free everything: the direct mapping goes back and the old segment can be released.
    h.free(big, &mut t).unwrap();
    h.free(a, &mut t).unwrap();
    h.free(c, &mut t).unwrap();
    sound(&h);
    assert!(h.sys_trim(0, &mut t).unwrap());
    assert_eq!(
        h.segments().unwrap().len(),
        1,
        "the emptied old segment is unmapped"
    );
    sound(&h);
}

#[test]
fn out_of_memory_when_the_system_refuses() {
    let mut h = heap_with(4096, 64 << 10);
    let mut t = Trail::on();
    let err = h.allocate(100 << 10, 0, &mut t).unwrap_err();
    assert_eq!(err.kind, ErrorKind::OutOfMemory);
    assert!(
        t.lines().iter().any(|l| l.starts_with("out of memory")),
        "{t:?}"
    );
    let mut kept = Vec::new();
    let mut t = off();
    loop {
        match h.allocate(1000, 0, &mut t) {
            Ok(p) => kept.push(p),
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::OutOfMemory);
                break;
            }
        }
    }
    assert!(kept.len() > 50);
    assert!(h.system_bytes() <= 64 << 10);
    sound(&h);
    for p in kept {
        h.free(p, &mut t).unwrap();
    }
    sound(&h);
    assert_eq!(
        h.allocate(u64::MAX - 5, 0, &mut t).unwrap_err().kind,
        ErrorKind::TooLarge
    );
}

#[test]
fn bad_frees_are_refused_without_touching_the_heap() {
    let mut h = heap();
    let mut t = off();
    let a = h.allocate(40, 0, &mut t).unwrap();
    let b = h.allocate(40, 0, &mut t).unwrap();
    let before = h.memory().clone();
    assert_eq!(
        h.free(a + 8, &mut t).unwrap_err().kind,
        ErrorKind::InvalidFree
    );
    assert_eq!(
        h.free(0x10, &mut t).unwrap_err().kind,
        ErrorKind::InvalidFree
    );
    assert_eq!(h.memory(), &before);
    h.free(a, &mut t).unwrap();
    let err = h.free(a, &mut t).unwrap_err();
    assert_eq!(err.kind, ErrorKind::DoubleFree);
    assert!(err.message.contains("ok_inuse"), "{}", err.message);
    h.free(b, &mut t).unwrap();
    // b merged with a and top: b's old header is stale, still a double free.
    assert_eq!(h.free(b, &mut t).unwrap_err().kind, ErrorKind::DoubleFree);
    assert_eq!(
        h.realloc(b, 10, &mut t).unwrap_err().kind,
        ErrorKind::DoubleFree
    );
    assert!(h.poisoned().is_none());
    sound(&h);
    assert!(h.allocate(10, 0, &mut t).is_ok());
}

#[test]
fn a_corrupted_head_is_reported_and_refused_not_panicked_on() {
    let mut h = heap();
    let mut t = off();
    let a = h.allocate(40, 0, &mut t).unwrap();
    let b = h.allocate(40, 0, &mut t).unwrap();
    let c = h.allocate(40, 0, &mut t).unwrap();
    sound(&h);
    // An overflow from a clears b's CINUSE bit.
    let head_b = h.memory().read_u64(b - 8).unwrap();
    h.memory_mut().write_u64(b - 8, head_b & !CINUSE).unwrap();
    let findings = h.validate();
    assert!(
        findings.iter().any(|f| f.addr == Some(b - 16)),
        "{findings:#?}"
    );
    let err = h.free(b, &mut t).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Corrupted);
    assert!(err.message.contains("ok_inuse"));
    // A garbage size: free reports it, the layout stays tiled.
    h.memory_mut()
        .write_u64(b - 8, 0xdead_beef_0000_0003)
        .unwrap();
    assert_eq!(h.free(b, &mut t).unwrap_err().kind, ErrorKind::Corrupted);
    assert!(h.inspect().check_tiling().is_empty());
    assert!(!h.validate().is_empty());
    h.free(a, &mut t).unwrap();
    h.free(c, &mut t).unwrap();
    let _ = h.allocate(100, 0, &mut t);
    let _ = h.realloc(b, 1000, &mut t);
}

#[test]
fn a_corrupted_bin_link_is_caught_like_dlmalloc_and_poisons_the_heap() {
    let mut h = heap();
    let mut t = off();
    let a = h.allocate(40, 0, &mut t).unwrap();
    h.allocate(8, 0, &mut t).unwrap();
    let b = h.allocate(40, 0, &mut t).unwrap();
    h.allocate(8, 0, &mut t).unwrap();
    h.free(a, &mut t).unwrap();
    h.free(b, &mut t).unwrap();
    // Use after free: overwrite b's fd (the first word of its payload).
    h.memory_mut().write_u64(b, 0x4141_4141_4141).unwrap();
    let findings = h.validate();
    assert!(!findings.is_empty());
    let layout = h.inspect();
    let bin = list(&layout, "small bin 6").unwrap();
    assert!(bin.problem.is_some(), "{bin:?}");
    let err = h.allocate(40, 0, &mut t).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Corrupted);
    assert!(h.poisoned().is_some());
    assert_eq!(
        h.allocate(1, 0, &mut t).unwrap_err().kind,
        ErrorKind::Poisoned
    );
    assert!(h.inspect().poisoned.is_some());
}

#[test]
fn garbage_everywhere_never_panics() {
    let mut h = heap();
    let mut t = off();
    let mut ps: Vec<Addr> = (0..40)
        .map(|i| h.allocate(17 * i + 1, 0, &mut t).unwrap())
        .collect();
    for p in ps.iter().step_by(3) {
        h.free(*p, &mut t).unwrap();
    }
    ps.push(h.allocate(300 << 10, 0, &mut t).unwrap());
    // The first segment: 64 KiB right below the malloc_state.
    let start = h.system_ceiling() - (64 << 10);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..200 {
        let mut g = h.clone();
        for _ in 0..(1 + round % 7) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let off = (seed % 4000) & !7;
            let target = if round % 5 == 0 {
                (g.base + (seed % 900)) & !7
            } else {
                start + off
            };
            let _ = g.memory_mut().write_u64(target, seed.rotate_left(round));
        }
        let _ = g.validate();
        let _ = g.inspect().check_tiling();
        for &p in &ps {
            let _ = g.free(p, &mut t);
            let _ = g.realloc(p, seed % 3000, &mut t);
        }
        let _ = g.allocate(seed % 5000, 0, &mut t);
        let _ = g.allocate(seed % 500, 64, &mut t);
        let _ = g.calloc(3, seed % 100, &mut t);
        let _ = g.validate();
        let _ = g.inspect();
    }
}

#[test]
fn random_workload_keeps_the_heap_sound_and_the_data_intact() {
    for granularity in [4096u64, 64 << 10] {
        let mut h = heap_with(granularity, 256 << 20);
        let mut t = off();
        let mut live: Vec<(Addr, u64, u8)> = Vec::new();
        let mut seed = 12345u64 + granularity;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        for step in 0..4000u64 {
            let r = rnd() % 100;
            if r < 50 || live.is_empty() {
                let size = match rnd() % 10 {
                    0 => rnd() % (600 << 10),
                    1..=3 => rnd() % 4000,
                    _ => rnd() % 250,
                };
                let align = if rnd() % 10 == 0 {
                    1 << (5 + rnd() % 8)
                } else {
                    0
                };
                let p = h.allocate(size, align, &mut t).unwrap();
                if align > 0 {
                    assert_eq!(p % align, 0);
                }
                let tag = (step % 251) as u8;
                h.memory_mut().fill(p, size, tag).unwrap();
                live.push((p, size, tag));
            } else if r < 80 {
                let i = (rnd() as usize) % live.len();
                let (p, size, tag) = live.swap_remove(i);
                assert!(
                    h.memory().slice(p, size).unwrap().iter().all(|&b| b == tag),
                    "step {step}"
                );
                h.free(p, &mut t).unwrap();
            } else {
                let i = (rnd() as usize) % live.len();
                let (p, size, tag) = live[i];
                let new = rnd() % 3000;
                let q = h.realloc(p, new, &mut t).unwrap();
                let kept = size.min(new);
                assert!(
                    h.memory().slice(q, kept).unwrap().iter().all(|&b| b == tag),
                    "step {step}"
                );
                h.memory_mut().fill(q, new, tag).unwrap();
                live[i] = (q, new, tag);
            }
            if step % 500 == 0 {
                sound(&h);
            }
        }
        sound(&h);
        assert_eq!(h.stats().live_blocks, live.len() as u64);
        assert_eq!(h.stats().footprint, h.footprint());
        for (p, ..) in live {
            h.free(p, &mut t).unwrap();
        }
        sound(&h);
        let native = h.inspect().native_stats;
        let used = native
            .iter()
            .find(|s| s.name == "num_bytes_allocated")
            .unwrap()
            .value;
        let records = h.segments().unwrap().len() as u64 - 1;
        assert_eq!(
            used,
            records * TOP_FOOT_SIZE,
            "only segment records and fenceposts remain in use"
        );
    }
}

#[test]
fn config_is_checked() {
    for bad in [3000u64, 2048, 0] {
        let r = Dlmalloc::from_config(&HeapConfig {
            granularity: Some(bad),
            ..HeapConfig::default()
        });
        assert!(r.is_err(), "granularity {bad}");
    }
    assert!(
        Dlmalloc::from_config(&HeapConfig {
            base: Some(0x1234),
            ..HeapConfig::default()
        })
        .is_err()
    );
    // Mappings go below the base: it must leave room for `max` bytes of them.
    let low = |base: u64, max: u64| {
        Dlmalloc::from_config(&HeapConfig {
            base: Some(base),
            max: Some(max),
            ..HeapConfig::default()
        })
    };
    assert!(low(0x10_0000, 1 << 20).is_err());
    assert!(low(0x10_1000, 1 << 20).is_ok());
    assert!(
        low(u64::MAX - 0xfff, 1 << 20).is_err(),
        "no room for the state's page"
    );
    let h = heap_with(4096, 1 << 20);
    assert_eq!(h.params().granularity, 4096);
    assert_eq!(heap().params().granularity, 64 << 10);
    assert_eq!(heap().params().mmap_threshold, 256 << 10);
    assert_eq!(heap().system_ceiling(), DEFAULT_BASE);
}

#[test]
fn a_small_base_runs_out_of_address_space_not_into_a_panic() {
    // Room for exactly 4 pages below the state (page 0 is never mapped).
    let mut h = Dlmalloc::from_config(&HeapConfig {
        base: Some(0x5000),
        max: Some(0x4000),
        granularity: Some(4096),
        ..HeapConfig::default()
    })
    .unwrap();
    let mut t = off();
    // 8000 B take 8 KiB regions: [0x3000, 0x5000), then [0x1000, 0x3000), prepended.
    let a = h.allocate(8000, 0, &mut t).unwrap();
    let b = h.allocate(8000, 0, &mut t).unwrap();
    assert_eq!((a, b), (0x3010, 0x1010));
    let mut trail = Trail::on();
    let e = h.allocate(8000, 0, &mut trail).unwrap_err();
    assert!(
        trail.lines().iter().any(|l| l.contains("refuses")),
        "{:?}",
        trail.lines()
    );
    assert_eq!(e.kind, ErrorKind::OutOfMemory);
    sound(&h);
}

#[test]
fn a_heap_growing_by_new_mappings_prepends_them_to_its_segment() {
    // Linux places each new mapping right below the previous one: dlmalloc finds the new
    // region ending where its segment starts and takes `prepend_alloc`.
    let mut h = heap_with(4096, 64 << 20);
    let mut t = Trail::on();
    let first = h.allocate(100, 0, &mut t).unwrap();
    assert_eq!(first, h.system_ceiling() - 4096 + 16);
    let mut lowest = first;
    for _ in 0..20 {
        let p = h.allocate(5000, 0, &mut t).unwrap();
        lowest = lowest.min(p);
        sound(&h);
    }
    let prepends = t.lines().iter().filter(|l| l.contains("prepend")).count();
    assert!(prepends >= 5, "{:?}", t.lines());
    assert_eq!(
        prepends as u64,
        h.sys.maps - 1,
        "every region after the first"
    );
    let segs = h.segments().unwrap();
    assert_eq!(segs.len(), 1, "one segment, grown downwards");
    let (_, base, size, _) = segs[0];
    assert_eq!(base + size, h.system_ceiling());
    assert_eq!(h.footprint(), size);
    assert_eq!(h.system_bytes(), size);
    // A prepended region's first chunk is the new block; the rest joins what followed it.
    assert_eq!(lowest, base + 16);
}

#[test]
fn without_direct_mapping_large_chunks_stay_in_the_segments() {
    // The `dlmalloc` crate's setting.
    let mut h = heap().with_mmap_threshold(None);
    assert_eq!(h.params().mmap_threshold, u64::MAX);
    let mut t = Trail::on();
    h.allocate(10, 0, &mut t).unwrap();
    let big = h.allocate(300 << 10, 0, &mut t).unwrap();
    assert!(!t.lines().iter().any(|l| l.contains("own mapping")));
    assert_eq!(h.segments().unwrap().len(), 1);
    let layout = h.inspect();
    let block = layout.block_at(big).unwrap();
    assert!(
        block
            .class
            .as_deref()
            .is_some_and(|c| c.starts_with("chunk "))
    );
    assert_eq!(h.usable_size(big), Some(block.payload.end - big));
    sound(&h);
    // Plywood's default maps it on its own.
    let mut p = heap();
    p.allocate(10, 0, &mut t).unwrap();
    let big = p.allocate(300 << 10, 0, &mut t).unwrap();
    assert_eq!(
        p.inspect().block_at(big).unwrap().class.as_deref(),
        Some("mmapped chunk")
    );
}

#[test]
fn explains_itself_only_when_asked() {
    let mut h = heap();
    let mut t = Trail::on();
    let p = h.allocate(9, 0, &mut t).unwrap();
    let lines = t.take();
    assert!(
        lines.iter().any(|l| l.contains("9 B -> chunk of 32 B")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ask the system for 64 KiB")),
        "{lines:?}"
    );
    h.free(p, &mut t).unwrap();
    assert!(t.lines().iter().any(|l| l.contains("top")));
    let mut quiet = Trail::off();
    h.allocate(9, 0, &mut quiet).unwrap();
    assert!(quiet.lines().is_empty());
}

#[test]
fn inspect_decodes_headers_and_state() {
    let mut h = heap();
    let mut t = off();
    let a = h.allocate(50, 0, &mut t).unwrap();
    let b = h.allocate(300, 0, &mut t).unwrap();
    h.allocate(8, 0, &mut t).unwrap();
    h.free(b, &mut t).unwrap();
    let layout = h.inspect();
    let live = layout.block_at(a).unwrap();
    assert_eq!(live.state, BlockState::Live);
    assert_eq!(
        live.header,
        a - 8..a,
        "the head word; prev_foot is the block before"
    );
    assert_eq!(
        live.payload,
        a..a + 56,
        "64 B chunk: 56 usable bytes, the last 8 in the next chunk's prev_foot"
    );
    assert_eq!(h.usable_size(a), Some(56));
    assert_eq!(live.requested, Some(50));
    let head = live.fields.iter().find(|f| f.name == "head").unwrap();
    assert_eq!(head.value, 64 | PINUSE | CINUSE);
    let free = layout.block_at(b).unwrap();
    assert_eq!(free.state, BlockState::Free);
    let names: Vec<_> = free.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "head",
            "fd",
            "bk",
            "child[0]",
            "child[1]",
            "parent",
            "index",
            "foot (next.prev_foot)"
        ]
    );
    let foot = free.fields.last().unwrap();
    assert_eq!(foot.value, 320, "the footer holds the free chunk's size");
    assert_eq!(foot.range, free.range.end - 8..free.range.end);
    assert_eq!(free.payload.end, foot.range.start);
    assert_eq!(free.range, b - 8..b + 312);
    assert!(layout.blocks.iter().any(|b| b.state == BlockState::Top));
    assert!(
        layout
            .markers
            .iter()
            .any(|m| m.name == "top" && m.addr == h.top())
    );
    // The malloc_state sits above the mappings, at the system's ceiling.
    let state = layout.block_at(h.state_addr()).unwrap();
    assert_eq!(state.range.start, h.system_ceiling());
    assert_eq!(state.state, BlockState::Metadata);
    let fp = state.fields.iter().find(|f| f.name == "footprint").unwrap();
    assert_eq!(fp.value, 64 << 10);
    let stat = |n: &str| {
        layout
            .native_stats
            .iter()
            .find(|s| s.name == n)
            .unwrap()
            .value
    };
    assert_eq!(stat("virtual_memory_size"), 64 << 10);
    assert_eq!(stat("num_bytes_allocated"), 64 + 32);
}

#[test]
fn extreme_values_in_the_state_and_the_chunks_never_panic() {
    let mut h = heap();
    let mut t = off();
    let mut ps: Vec<Addr> = (0..30)
        .map(|i| h.allocate(40 * i + 1, 0, &mut t).unwrap())
        .collect();
    ps.push(h.allocate(300 << 10, 0, &mut t).unwrap());
    ps.push(h.allocate(100, 256, &mut t).unwrap());
    for p in ps.iter().step_by(2) {
        h.free(*p, &mut t).unwrap();
    }
    // The first segment: 64 KiB right below the malloc_state.
    let start = h.system_ceiling() - (64 << 10);
    let values = [
        0,
        1,
        7,
        8,
        0x80,
        u64::MAX,
        u64::MAX - 7,
        u64::MAX - 15,
        1 << 63,
        start,
        start + 0x100,
    ];
    // Every word of the malloc_state, then every word of the first 2 KiB of chunks.
    let targets = (0..ms::SIZE / 8)
        .map(|w| h.state_addr() + 8 * w)
        .chain((0..256).map(|w| start + 8 * w));
    for (k, addr) in targets.enumerate() {
        let v = values[k % values.len()];
        let mut g = h.clone();
        g.memory_mut().write_u64(addr, v).unwrap();
        let _ = g.validate();
        assert!(g.inspect().check_tiling().is_empty());
        let _ = g.allocate(24, 0, &mut t);
        let _ = g.allocate(3000, 0, &mut t);
        let _ = g.allocate(100, 64, &mut t);
        for &p in &ps {
            let _ = g.realloc(p, 500, &mut t);
            let _ = g.free(p, &mut t);
        }
        let _ = g.allocate(400 << 10, 0, &mut t);
        let _ = g.calloc(10, 10, &mut t);
        let _ = g.validate();
        let _ = g.inspect();
    }
}

#[test]
fn extreme_values_anywhere_never_panic() {
    let mut h = heap_with(4096, 64 << 20);
    let mut t = off();
    let mut ps: Vec<Addr> = (0..60)
        .map(|i| {
            h.allocate((i * 97) % 1500 + 1, if i % 9 == 0 { 64 } else { 0 }, &mut t)
                .unwrap()
        })
        .collect();
    ps.push(h.allocate(300 << 10, 0, &mut t).unwrap());
    let c = h.allocate(20000, 0, &mut t).unwrap();
    ps.push(c);
    for p in ps.iter().step_by(3) {
        h.free(*p, &mut t).unwrap();
    }
    // Every word of the memory: the mappings below and the malloc_state above them.
    let (lo, hi) = (h.memory().base(), h.memory().end());
    let words = (hi - lo) / 8;
    let values = [
        0,
        1,
        3,
        0x1b,
        u64::MAX,
        u64::MAX - 7,
        u64::MAX - 15,
        1 << 63,
        lo,
        hi - 8,
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..1500u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut g = h.clone();
        let addr = lo + 8 * (seed % words);
        g.memory_mut()
            .write_u64(addr, values[(round % values.len() as u64) as usize])
            .unwrap();
        let _ = g.validate();
        let _ = g.inspect();
        let p = ps[(seed % ps.len() as u64) as usize];
        let _ = g.free(p, &mut t);
        let _ = g.realloc(ps[(round % ps.len() as u64) as usize], seed % 5000, &mut t);
        let _ = g.allocate(seed % 300, 0, &mut t);
        let _ = g.allocate(seed % 70000, 32, &mut t);
        let _ = g.validate();
    }
}

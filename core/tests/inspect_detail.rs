//! `inspect_detail`: an outline is the full layout without descriptions, and asking for one
//! address describes exactly that block as the full layout does.

#![allow(clippy::unwrap_used)]

use heapscope_core::{AllocatorKind, Detail, HeapConfig, HeapLayout, Op, Replayer, Trail};

/// Allocations of mixed sizes (some large enough for dlmalloc's tree bins and direct
/// mappings), every third one freed, so that heaps hold live, free and coalesced blocks.
fn ops() -> Vec<Op> {
    let mut ops = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for id in 0..400u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = match x % 10 {
            0 => 300_000,
            1..=3 => 600 + x % 3000,
            _ => 1 + x % 200,
        };
        ops.push(Op::Alloc { id, size, align: 0 });
        if id % 3 == 2 {
            ops.push(Op::Free { id: id - 1 });
        }
    }
    ops
}

fn check(kind: AllocatorKind, full: &HeapLayout, heap: &dyn heapscope_core::Allocator) {
    let outline = heap.inspect_detail(Detail::Outline);
    assert_eq!(outline.blocks.len(), full.blocks.len(), "{kind}");
    assert_eq!(outline.free_lists, full.free_lists, "{kind}");
    assert_eq!(outline.stats, full.stats, "{kind}");
    let mut described = 0;
    for (o, f) in outline.blocks.iter().zip(&full.blocks) {
        assert_eq!(
            (&o.range, &o.header, &o.payload, o.requested, o.state),
            (&f.range, &f.header, &f.payload, f.requested, f.state),
            "{kind}: outline geometry"
        );
        // Either left undescribed or described exactly as in the full layout.
        assert!(o.fields.is_empty() || o.fields == f.fields, "{kind}");
        assert!(o.class.is_none() || o.class == f.class, "{kind}");
        described += usize::from(!o.fields.is_empty());
    }
    // The point of an outline: most blocks are not described.
    let described_in_full = full.blocks.iter().filter(|b| !b.fields.is_empty()).count();
    if described_in_full > 40
        && matches!(
            kind,
            AllocatorKind::FreeingBump | AllocatorKind::SegregatedFit | AllocatorKind::Dlmalloc
        )
    {
        assert!(
            described * 4 < described_in_full,
            "{kind}: {described} of {described_in_full}"
        );
    }
    // A span describes the blocks it overlaps, and only those.
    if let (Some(a), Some(b)) = (full.blocks.get(2), full.blocks.get(5)) {
        let (start, end) = (a.range.start + 1, b.range.start + 1);
        let span = heap.inspect_detail(Detail::Span { start, end });
        for (s, f) in span.blocks.iter().zip(&full.blocks) {
            if f.range.start < end && start < f.range.end {
                assert_eq!(s, f, "{kind}: span");
            }
        }
    }
    for f in full.blocks.iter().step_by(7) {
        let one = heap.inspect_detail(Detail::At(f.range.start));
        let got = one.blocks.iter().find(|b| b.range == f.range).unwrap();
        assert_eq!(got, f, "{kind}: block at {:#x}", f.range.start);
    }
}

#[test]
fn outlines_and_single_blocks_agree_with_the_full_layout() {
    let ops = ops();
    for &kind in AllocatorKind::ALL {
        let mut replay = Replayer::new(kind.build(&HeapConfig::default()).unwrap());
        for (i, op) in ops.iter().enumerate() {
            replay.apply(op, &mut Trail::off());
            if i % 97 == 0 || i + 1 == ops.len() {
                let full = replay.heap().inspect();
                check(kind, &full, replay.heap());
            }
        }
    }
}

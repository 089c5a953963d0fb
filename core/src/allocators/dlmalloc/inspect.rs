//! `inspect()` for the dlmalloc model: every chunk decoded from its bytes.

use std::collections::HashSet;

use super::{
    CINUSE, Dlmalloc, FENCEPOST_HEAD, FLAG_BITS, INUSE, MMAP_FOOT_PAD, NSMALLBINS, NTREEBINS,
    PINUSE, SEGMENT_CHUNK, SIZE_T, TOP_FOOT_SIZE, WALK_LIMIT, align_offset, compute_tree_index,
    is_small, minsize_for_tree_index, ms, small_index,
};
use crate::allocator::bytes;
use crate::layout::{Block, BlockState, Detail, Field, FreeList, HeapLayout, Marker, NativeStat};
use crate::{Addr, AllocatorKind};

/// Pushes `block`, or an unused gap before it, keeping the list tiled.
struct Tiler {
    blocks: Vec<Block>,
    at: Addr,
    detail: Detail,
}

impl Tiler {
    fn gap_to(&mut self, to: Addr, state: BlockState) {
        if to > self.at {
            self.blocks.push(Block::plain(self.at..to, state));
            self.at = to;
        }
    }

    fn push(&mut self, block: Block) {
        if block.range.start < self.at || block.range.end <= block.range.start {
            return;
        }
        self.gap_to(block.range.start, BlockState::Unused);
        self.at = block.range.end;
        self.blocks.push(block);
    }
}

fn field(m: &Dlmalloc, name: &str, at: Addr, meaning: impl Into<String>) -> Option<Field> {
    let v = m.mem.read_u64(at).ok()?;
    Some(Field::new(name, at..at + 8, v, meaning))
}

fn flags(h: u64) -> String {
    format!(
        "size {}, PINUSE={} (previous chunk {}), CINUSE={}",
        bytes(h & !FLAG_BITS),
        h & PINUSE,
        if h & PINUSE != 0 { "in use" } else { "free" },
        (h & CINUSE) >> 1
    )
}

impl Dlmalloc {
    /// The block of the chunk at `p` inside a segment. It runs from the chunk's `head` word to
    /// the end of the next chunk's `prev_foot` (cut at `limit`, the segment's end): an in-use
    /// chunk's data runs into that word, and a free chunk's footer is that word. The chunk's own
    /// `prev_foot` belongs to the block before it.
    fn chunk_block(
        &self,
        p: Addr,
        size: u64,
        state: BlockState,
        class: impl FnOnce() -> String,
        limit: Addr,
        detail: Detail,
    ) -> Block {
        let start = p.saturating_add(SIZE_T);
        let end = p
            .saturating_add(size)
            .saturating_add(SIZE_T)
            .min(limit)
            .max(start);
        let mut b = Block::plain(start..end, state);
        b.header = start..start.saturating_add(SIZE_T).min(end);
        b.payload = b.header.end..end;
        if !detail.wants(&b.range) {
            // The footer still bounds a free chunk's payload.
            if state == BlockState::Free
                && end - end.saturating_sub(SIZE_T).max(b.header.end) == SIZE_T
            {
                b.payload.end = end - SIZE_T;
            }
            return b;
        }
        b.class = Some(class());
        let h = self.head(p).unwrap_or(0);
        b.fields.extend(field(self, "head", start, flags(h)));
        if state == BlockState::Free {
            // The footer: the next chunk's prev_foot, which holds this chunk's size.
            let foot_at = end.saturating_sub(SIZE_T).max(b.header.end);
            if end - foot_at == SIZE_T {
                b.payload.end = foot_at;
                let foot = self.word(foot_at).unwrap_or(0);
                let meaning = if foot == size {
                    format!("this free chunk's size, {}", bytes(size))
                } else {
                    format!(
                        "{} (should be this free chunk's size, {})",
                        bytes(foot),
                        bytes(size)
                    )
                };
                let mut fields = Vec::new();
                fields.extend(field(self, "fd", p + 16, "next chunk in the bin"));
                fields.extend(field(self, "bk", p + 24, "previous chunk in the bin"));
                if !is_small(size) && size >= 64 && p != self.dv() {
                    fields.extend(field(self, "child[0]", p + 32, "left subtree"));
                    fields.extend(field(self, "child[1]", p + 40, "right subtree"));
                    fields.extend(field(
                        self,
                        "parent",
                        p + 48,
                        "parent node (0: a same-size chain member)",
                    ));
                    if let Ok(i) = self.mem.read_u32(p + 56) {
                        fields.push(Field::new(
                            "index",
                            p + 56..p + 60,
                            u64::from(i),
                            format!("tree bin {i}"),
                        ));
                    }
                }
                // Only fields that lie in the payload (a corrupted size can make it tiny).
                let payload = b.payload.clone();
                b.fields.extend(
                    fields
                        .into_iter()
                        .filter(|f| payload.start <= f.range.start && f.range.end <= payload.end),
                );
                b.fields
                    .extend(field(self, "foot (next.prev_foot)", foot_at, meaning));
            }
        }
        b
    }

    /// A directly mapped chunk `[p, p + psize)`: unlike a segment chunk it owns its `prev_foot`
    /// (the offset of the chunk into its mapping), and its data ends where the mapping's
    /// fenceposts start (usable size = size - 16).
    fn mmapped_block(&self, p: Addr, psize: u64) -> Block {
        let end = p.saturating_add(psize);
        let mut b = Block::plain(p..end, BlockState::Live);
        b.header = p..(p + 16).min(end);
        b.payload = b.header.end..end;
        b.class = Some("mmapped chunk".to_owned());
        let h = self.head(p).unwrap_or(0);
        let off = self.word(p).unwrap_or(0);
        b.fields.extend(field(
            self,
            "prev_foot",
            p,
            format!("offset {off} of the chunk into its own mapping"),
        ));
        b.fields.extend(field(self, "head", p + 8, flags(h)));
        b
    }

    fn state_block(&self) -> Block {
        let b0 = self.base;
        let mut b = Block::plain(b0..b0 + ms::SIZE, BlockState::Metadata);
        b.header = b0..b0 + ms::SIZE;
        b.payload = b.header.end..b.header.end;
        b.class = Some("malloc_state (Plywood's Heap_DL)".to_owned());
        let u32f = |name: &str, off: u64, what: &str| {
            let v = self.mem.read_u32(b0 + off).unwrap_or(0);
            Field::new(
                name,
                b0 + off..b0 + off + 4,
                u64::from(v),
                format!("{what}: {v:#034b}"),
            )
        };
        b.fields
            .push(u32f("smallmap", ms::SMALLMAP, "non-empty small bins"));
        b.fields
            .push(u32f("treemap", ms::TREEMAP, "non-empty tree bins"));
        let words: [(&str, u64, &str); 11] = [
            ("dvsize", ms::DVSIZE, "size of the designated victim"),
            ("topsize", ms::TOPSIZE, "size of top"),
            ("least_addr", ms::LEAST_ADDR, "lowest address obtained"),
            ("dv", ms::DV, "designated victim"),
            ("top", ms::TOP, "top chunk"),
            ("trim_check", ms::TRIM_CHECK, "trim when top exceeds this"),
            (
                "release_checks",
                ms::RELEASE_CHECKS,
                "large frees until a segment scan",
            ),
            ("footprint", ms::FOOTPRINT, "bytes from the system"),
            (
                "max_footprint",
                ms::MAX_FOOTPRINT,
                "most bytes ever from the system",
            ),
            ("seg.base", ms::SEG, "newest segment"),
            ("seg.size", ms::SEG + 8, "its size"),
        ];
        for (name, off, what) in words {
            b.fields.extend(field(self, name, b0 + off, what));
        }
        b.fields.extend(field(
            self,
            "seg.next",
            b0 + ms::SEG + 16,
            "older segment record",
        ));
        b.fields.extend(field(
            self,
            "footprint_limit",
            b0 + ms::FOOTPRINT_LIMIT,
            "0: no limit of dlmalloc's own",
        ));
        b
    }

    /// Chunks of one segment `[base, end)`, each tiled from its `head` word to the end of the
    /// next chunk's `prev_foot` (see [`Dlmalloc::chunk_block`]).
    fn walk_segment(&self, tiler: &mut Tiler, base: Addr, end: Addr, records: &HashSet<Addr>) {
        let top = self.top();
        let dv = self.dv();
        let mut q = base + align_offset(base + 16);
        // The first chunk's prev_foot (and any alignment before it) belongs to no chunk.
        let mut lead = Block::plain(base..(q + SIZE_T).min(end), BlockState::Metadata);
        lead.class = Some("segment start: the first chunk's prev_foot (unused)".to_owned());
        lead.header = lead.range.clone();
        lead.payload = lead.range.end..lead.range.end;
        lead.fields.extend(field(
            self,
            "prev_foot",
            q,
            "unused: no chunk precedes the first one",
        ));
        tiler.push(lead);
        let mut steps = 0u64;
        while q < end {
            steps += 1;
            if steps > WALK_LIMIT {
                break;
            }
            if q == top {
                let tsize = self.topsize();
                let tend = q.saturating_add(tsize).min(end);
                let b = self.chunk_block(
                    q,
                    tend - q,
                    BlockState::Top,
                    || "top".to_owned(),
                    end,
                    tiler.detail,
                );
                let foot_start = b.range.end;
                tiler.push(b);
                if foot_start < end {
                    // The fake chunk after top: TOP_FOOT_SIZE bytes kept for a segment record.
                    let mut foot = Block::plain(foot_start..end, BlockState::Metadata);
                    foot.class = Some(format!(
                        "top foot ({} B kept for a segment record)",
                        TOP_FOOT_SIZE
                    ));
                    foot.header = foot_start..(foot_start + SIZE_T).min(end);
                    foot.payload = foot.header.end..end;
                    foot.fields.extend(field(
                        self,
                        "head",
                        foot_start,
                        "fake chunk size: TOP_FOOT_SIZE",
                    ));
                    tiler.push(foot);
                }
                return;
            }
            let Ok(h) = self.head(q) else { break };
            if h == FENCEPOST_HEAD {
                let start = q + SIZE_T;
                let mut b = Block::plain(start..end, BlockState::Metadata);
                b.class = Some("fenceposts".to_owned());
                b.header = b.range.clone();
                b.payload = end..end;
                b.fields
                    .extend(field(self, "head", start, "FENCEPOST_HEAD (INUSE | 8)"));
                tiler.push(b);
                return;
            }
            let size = h & !FLAG_BITS;
            if size == 0 || q.saturating_add(size) > end {
                break;
            }
            let block = if h & CINUSE != 0 {
                if records.contains(&(q + 16)) && size == SEGMENT_CHUNK {
                    let mut b = self.chunk_block(
                        q,
                        size,
                        BlockState::Metadata,
                        || "segment record".to_owned(),
                        end,
                        Detail::All,
                    );
                    b.fields
                        .extend(field(self, "seg.base", q + 16, "older segment's base"));
                    b.fields.extend(field(self, "seg.size", q + 24, "its size"));
                    b.fields
                        .extend(field(self, "seg.next", q + 32, "next record"));
                    b
                } else {
                    let mut b = self.chunk_block(
                        q,
                        size,
                        BlockState::Live,
                        || format!("chunk {}", bytes(size)),
                        end,
                        tiler.detail,
                    );
                    b.requested = self.ledger.requested(q + 16);
                    b
                }
            } else {
                let class = || {
                    if q == dv {
                        "dv".to_owned()
                    } else if is_small(size) {
                        format!("small bin {}", small_index(size))
                    } else {
                        format!("tree bin {}", compute_tree_index(size))
                    }
                };
                self.chunk_block(q, size, BlockState::Free, class, end, tiler.detail)
            };
            tiler.push(block);
            q += size;
        }
        // Unreadable chunk headers: show the rest of the segment as one unexplained stretch.
        let from = tiler.at.max(base);
        if from < end {
            let mut b = Block::plain(from..end, BlockState::Metadata);
            b.class = Some("unreadable: chunk sizes do not add up".to_owned());
            tiler.push(b);
        }
    }

    /// Directly mapped chunks in `[start, end)` (mappings that belong to no segment).
    /// `live` holds the live pointers in address order: an aligned allocation can put a mapped
    /// chunk past the start of its mapping (its `prev_foot` says how far), and the stale header
    /// left at the start must not be taken for it.
    fn walk_mappings(&self, tiler: &mut Tiler, start: Addr, end: Addr, live: &[Addr]) {
        let mut at = start;
        while at < end {
            let first = live.partition_point(|&mem| mem < at.saturating_add(16));
            let found = live[first..]
                .iter()
                .take_while(|&&mem| mem < end)
                .map(|&mem| mem - 16)
                .find(|&p| {
                    self.head(p).is_ok_and(|h| h & INUSE == 0) && self.word(p).ok() == Some(p - at)
                });
            let p = found.unwrap_or(at + align_offset(at + 16));
            let off = self.word(p).unwrap_or(u64::MAX);
            let h = self.head(p).unwrap_or(0);
            let psize = h & !FLAG_BITS;
            let len = psize.saturating_add(off).saturating_add(MMAP_FOOT_PAD);
            if h & INUSE != 0
                || psize == 0
                || p.checked_sub(off) != Some(at)
                || at.saturating_add(len) > end
            {
                let mut b = Block::plain(at..end, BlockState::Metadata);
                b.class = Some("mapping without a readable chunk".to_owned());
                tiler.push(b);
                return;
            }
            tiler.gap_to(p, BlockState::Padding);
            let mut b = self.mmapped_block(p, psize);
            b.requested = self.ledger.requested(p + 16);
            tiler.push(b);
            let mut foot = Block::plain(p + psize..at + len, BlockState::Metadata);
            foot.class = Some("mmap foot (fenceposts)".to_owned());
            foot.fields
                .extend(field(self, "head", p + psize + 8, "FENCEPOST_HEAD"));
            tiler.push(foot);
            at += len;
        }
    }

    /// The bins in link order. Nodes are where the chunks' blocks start (their `head` words,
    /// chunk + 8); the links in the bytes hold the chunk addresses, 8 bytes lower.
    pub(super) fn free_lists(&self) -> Vec<FreeList> {
        let mut lists = Vec::new();
        let limit = self.mem.len() / 16 + 2;
        let smallmap = self.smallmap();
        for i in 0..NSMALLBINS {
            if smallmap & (1 << i) == 0 {
                continue;
            }
            let b = self.smallbin_at(i);
            let mut nodes = Vec::new();
            let mut problem = None;
            let mut seen = HashSet::new();
            let mut x = self.fd(b).unwrap_or(0);
            while x != b {
                if !seen.insert(x) || nodes.len() as u64 > limit {
                    problem = Some(format!("cycle at {x:#x}"));
                    break;
                }
                if !self.ok_address(x) || self.head(x).is_err() {
                    problem = Some(format!("link to {x:#x}, outside the heap"));
                    break;
                }
                nodes.push(x.wrapping_add(SIZE_T));
                match self.fd(x) {
                    Ok(n) => x = n,
                    Err(_) => {
                        problem = Some(format!("cannot read fd of {x:#x}"));
                        break;
                    }
                }
            }
            lists.push(FreeList {
                name: format!("small bin {i} ({})", bytes(u64::from(i) << 3)),
                nodes,
                problem,
            });
        }
        let treemap = self.treemap();
        for i in 0..NTREEBINS {
            if treemap & (1 << i) == 0 {
                continue;
            }
            let mut nodes = Vec::new();
            let mut problem = None;
            let mut seen = HashSet::new();
            let root = self.word(self.treebin_at(i)).unwrap_or(0);
            self.in_order(root, 0, &mut nodes, &mut seen, &mut problem, limit);
            let hi = if i + 1 < NTREEBINS {
                bytes(minsize_for_tree_index(i + 1))
            } else {
                "...".to_owned()
            };
            lists.push(FreeList {
                name: format!("tree bin {i} [{}, {hi})", bytes(minsize_for_tree_index(i))),
                nodes,
                problem,
            });
        }
        if self.dvsize() != 0 {
            lists.push(FreeList {
                name: format!("dv ({})", bytes(self.dvsize())),
                nodes: vec![self.dv().wrapping_add(SIZE_T)],
                problem: None,
            });
        }
        lists
    }

    fn in_order(
        &self,
        t: Addr,
        depth: u32,
        nodes: &mut Vec<Addr>,
        seen: &mut HashSet<Addr>,
        problem: &mut Option<String>,
        limit: u64,
    ) {
        if t == 0 || problem.is_some() {
            return;
        }
        if depth > 70 || !self.ok_address(t) || self.head(t).is_err() {
            *problem = Some(format!(
                "tree link to {t:#x} is outside the heap or too deep"
            ));
            return;
        }
        let left = self.child(t, 0).unwrap_or(0);
        let right = self.child(t, 1).unwrap_or(0);
        self.in_order(left, depth + 1, nodes, seen, problem, limit);
        if problem.is_some() {
            return;
        }
        let mut u = t;
        loop {
            if !seen.insert(u) || nodes.len() as u64 > limit {
                *problem = Some(format!("cycle at {u:#x}"));
                return;
            }
            nodes.push(u.wrapping_add(SIZE_T));
            match self.fd(u) {
                Ok(n) if n == t => break,
                Ok(n) if self.ok_address(n) && self.head(n).is_ok() => u = n,
                _ => {
                    *problem = Some(format!("chain of {t:#x} leaves the heap"));
                    return;
                }
            }
        }
        self.in_order(right, depth + 1, nodes, seen, problem, limit);
    }

    /// dlmalloc's `malloc_stats` "in use bytes": footprint minus top (and its foot) minus every
    /// free chunk in the segments.
    pub(super) fn in_use_bytes(&self) -> u64 {
        if self.top() == 0 {
            return 0;
        }
        let mut used = self
            .footprint()
            .saturating_sub(self.topsize().saturating_add(TOP_FOOT_SIZE));
        let Ok(segs) = self.segments() else {
            return used;
        };
        for (_, base, size, _) in segs {
            let end = base.saturating_add(size);
            let mut q = base.wrapping_add(align_offset(base.wrapping_add(16)));
            let mut steps = 0;
            while q >= base && q < end && q != self.top() && steps < WALK_LIMIT {
                let Ok(h) = self.head(q) else { break };
                if h == FENCEPOST_HEAD || h & !FLAG_BITS == 0 {
                    break;
                }
                if h & INUSE == PINUSE {
                    used = used.saturating_sub(h & !FLAG_BITS);
                }
                q = q.saturating_add(h & !FLAG_BITS);
                steps += 1;
            }
        }
        used
    }
}

pub(super) fn layout(m: &Dlmalloc, detail: Detail) -> HeapLayout {
    // The mappings lie below the malloc_state; the extent starts at the lowest one (the memory
    // may reach further down, over bytes of mappings since released).
    let start = m.sys.lowest().unwrap_or(m.base).min(m.base);
    let end = m.mem.end().max(m.base);
    let mut tiler = Tiler {
        blocks: Vec::new(),
        at: start,
        detail,
    };

    let segs = m.segments().unwrap_or_default();
    let records: HashSet<Addr> = segs.iter().map(|&(sp, ..)| sp).collect();
    let mut seg_ranges: Vec<(Addr, Addr)> = if m.top() == 0 {
        Vec::new()
    } else {
        segs.iter()
            .map(|&(_, b, s, _)| (b, b.saturating_add(s)))
            .filter(|&(b, e)| b >= start && e <= m.base && b < e)
            .collect()
    };
    seg_ranges.sort_unstable();
    // Mapped ranges minus segments are direct mappings.
    let mut pieces: Vec<(Addr, Addr, bool)> = Vec::new();
    for (s, e) in m.sys.ranges() {
        let mut at = s;
        for &(b, be) in &seg_ranges {
            if be <= at || b >= e {
                continue;
            }
            if b > at {
                pieces.push((at, b, false));
            }
            pieces.push((b.max(at), be.min(e), true));
            at = be.min(e);
        }
        if at < e {
            pieces.push((at, e, false));
        }
    }
    let mut live: Vec<Addr> = m.ledger.iter().map(|(mem, _)| mem).collect();
    live.sort_unstable();
    for (s, e, is_seg) in pieces {
        tiler.gap_to(s, BlockState::Unmapped);
        if is_seg {
            m.walk_segment(&mut tiler, s, e, &records);
        } else {
            m.walk_mappings(&mut tiler, s, e, &live);
        }
        tiler.gap_to(e, BlockState::Metadata);
    }
    tiler.gap_to(m.base, BlockState::Unmapped);
    tiler.push(m.state_block());
    tiler.gap_to(end, BlockState::Unmapped);

    let mut markers = Vec::new();
    if m.top() != 0 {
        markers.push(Marker {
            name: "top".to_owned(),
            addr: m.top(),
        });
    }
    if m.dvsize() != 0 {
        markers.push(Marker {
            name: "dv".to_owned(),
            addr: m.dv(),
        });
    }
    HeapLayout {
        kind: AllocatorKind::Dlmalloc,
        extent: start..end,
        blocks: tiler.blocks,
        free_lists: m.free_lists(),
        markers,
        poisoned: m.poisoned.clone(),
        stats: m.ledger.stats(),
        native_stats: vec![
            NativeStat::new("num_bytes_allocated", m.in_use_bytes()),
            NativeStat::new("virtual_memory_size", m.footprint()),
            NativeStat::new("footprint", m.footprint()),
            NativeStat::new("max_footprint", m.max_footprint()),
            NativeStat::new("topsize", m.topsize()),
            NativeStat::new("dvsize", m.dvsize()),
        ],
    }
}

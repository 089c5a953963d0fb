//! `validate()`: dlmalloc's `do_check_*` family, reporting findings instead of asserting.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use super::{
    CHUNK_ALIGN_MASK, Dlmalloc, FENCEPOST_HEAD, FLAG_BITS, INUSE, MIN_CHUNK_SIZE, MIN_LARGE_SIZE,
    MMAP_FOOT_PAD, NSMALLBINS, NTREEBINS, PAGE_SIZE, PINUSE, SIZE_T, TOP_FOOT_SIZE, WALK_LIMIT,
    align_offset, compute_tree_index, is_small, minsize_for_tree_index, request2size, small_index,
};
use crate::Addr;
use crate::layout::Finding;

/// Stop after this many findings: a wrecked heap would otherwise report millions.
const MAX_FINDINGS: usize = 200;

struct Checker<'a> {
    m: &'a Dlmalloc,
    findings: RefCell<Vec<Finding>>,
    /// Every chunk reachable from a bin, with the bin it was reached from: `bin_find` looks
    /// here instead of walking the bin again for every chunk, which is quadratic on long bins.
    members: RefCell<Option<HashMap<Addr, Bin>>>,
}

/// A bin: small bins by index, tree bins offset by 32.
type Bin = u32;

impl Checker<'_> {
    fn fail(&self, at: Addr, msg: String) {
        let mut f = self.findings.borrow_mut();
        if f.len() < MAX_FINDINGS {
            f.push(Finding::at(at, msg));
        }
    }

    fn check(&self, cond: bool, at: Addr, msg: impl FnOnce() -> String) -> bool {
        if !cond {
            self.fail(at, msg());
        }
        cond
    }

    fn word(&self, a: Addr) -> Option<u64> {
        let v = self.m.mem.read_u64(a).ok();
        if v.is_none() {
            self.fail(a, format!("cannot read the word at {a:#x}: outside memory"));
        }
        v
    }

    fn head(&self, p: Addr) -> Option<u64> {
        self.word(p.wrapping_add(8))
    }

    fn size(&self, p: Addr) -> Option<u64> {
        Some(self.head(p)? & !FLAG_BITS)
    }

    fn fd(&self, p: Addr) -> Option<Addr> {
        self.word(p.wrapping_add(16))
    }

    fn bk(&self, p: Addr) -> Option<Addr> {
        self.word(p.wrapping_add(24))
    }

    fn do_check_any_chunk(&self, p: Addr) -> Option<()> {
        let h = self.head(p)?;
        self.check(
            (p + 16) & CHUNK_ALIGN_MASK == 0 || h == FENCEPOST_HEAD,
            p,
            || format!("chunk {p:#x} is misaligned"),
        );
        self.check(self.m.ok_address(p), p, || {
            format!("chunk {p:#x} is below least_addr")
        });
        Some(())
    }

    fn do_check_top_chunk(&self, p: Addr) -> Option<()> {
        let m = self.m;
        let sp = m.segment_holding(p).ok().flatten();
        let h = self.head(p)?;
        let sz = h & !INUSE;
        if !self.check(sp.is_some(), p, || format!("top {p:#x} lies in no segment")) {
            return None;
        }
        let sp = sp?;
        self.do_check_any_chunk(p)?;
        self.check(sz == m.topsize(), p, || {
            format!("top's head says {sz} B but topsize is {}", m.topsize())
        });
        self.check(sz > 0, p, || "top has size 0".to_owned());
        let seg_end = m.seg_base(sp).ok()?.wrapping_add(m.seg_size(sp).ok()?);
        self.check(
            sz == seg_end.wrapping_sub(p).wrapping_sub(TOP_FOOT_SIZE),
            p,
            || format!("top does not end {TOP_FOOT_SIZE} B before its segment's end {seg_end:#x}"),
        );
        self.check(h & PINUSE != 0, p, || {
            "top's PINUSE is clear: the chunk before top is free".to_owned()
        });
        let foot = self.head(p.wrapping_add(sz))?;
        self.check(foot & PINUSE == 0, p, || {
            "the fake chunk after top has PINUSE set".to_owned()
        });
        Some(())
    }

    fn do_check_mmapped_chunk(&self, p: Addr) -> Option<()> {
        let h = self.head(p)?;
        let sz = h & !FLAG_BITS;
        let len = sz.wrapping_add(self.word(p)?).wrapping_add(MMAP_FOOT_PAD);
        self.check(h & INUSE == 0, p, || format!("{p:#x} is not mmapped"));
        self.check(self.m.use_mmap(), p, || {
            "mmapped chunk but mmap is off".to_owned()
        });
        self.do_check_any_chunk(p)?;
        self.check(!is_small(sz), p, || {
            format!("mmapped chunk {p:#x} is small ({sz} B)")
        });
        self.check(len & (PAGE_SIZE - 1) == 0, p, || {
            format!("mmapped chunk {p:#x}: mapping length {len} is not a page multiple")
        });
        self.check(self.head(p.wrapping_add(sz))? == FENCEPOST_HEAD, p, || {
            format!("mmapped chunk {p:#x} lacks its trailing fencepost")
        });
        self.check(
            self.head(p.wrapping_add(sz).wrapping_add(SIZE_T))? == 0,
            p,
            || format!("mmapped chunk {p:#x}: the word after its fencepost is not 0"),
        );
        Some(())
    }

    fn do_check_inuse_chunk(&self, p: Addr) -> Option<()> {
        self.do_check_any_chunk(p)?;
        let h = self.head(p)?;
        let sz = h & !FLAG_BITS;
        self.check(h & INUSE != PINUSE, p, || {
            format!("chunk {p:#x} is not in use")
        });
        let nh = self.head(p.wrapping_add(sz))?;
        self.check(nh & PINUSE != 0, p, || {
            format!("the chunk after {p:#x} says {p:#x} is free (PINUSE clear)")
        });
        if h & INUSE != 0 && h & PINUSE == 0 {
            let prev = p.wrapping_sub(self.word(p)?);
            let psz = self.size(prev)?;
            self.check(prev.wrapping_add(psz) == p, p, || {
                format!("chunk {p:#x}: prev_foot does not lead to a chunk ending here")
            });
        }
        if h & INUSE == 0 {
            self.do_check_mmapped_chunk(p)?;
        }
        Some(())
    }

    fn do_check_free_chunk(&self, p: Addr) -> Option<()> {
        let m = self.m;
        let h = self.head(p)?;
        let sz = h & !FLAG_BITS;
        let next = p.wrapping_add(sz);
        self.do_check_any_chunk(p)?;
        self.check(h & INUSE == PINUSE || h & INUSE == 0, p, || {
            format!("free chunk {p:#x} is marked in use")
        });
        let nh = self.head(next)?;
        self.check(nh & PINUSE == 0, p, || {
            format!("the chunk after free chunk {p:#x} has PINUSE set")
        });
        self.check(h & INUSE != 0, p, || {
            format!("free chunk {p:#x} looks mmapped")
        });
        if p != m.dv() && p != m.top() {
            if sz >= MIN_CHUNK_SIZE {
                self.check(sz & CHUNK_ALIGN_MASK == 0, p, || {
                    format!("free chunk {p:#x} has unaligned size {sz}")
                });
                self.check(self.word(next)? == sz, p, || {
                    format!("free chunk {p:#x}: the foot after it does not repeat its size {sz}")
                });
                self.check(h & PINUSE != 0, p, || {
                    format!("free chunk {p:#x} follows another free chunk (not coalesced)")
                });
                self.check(next == m.top() || nh & INUSE != PINUSE, p, || {
                    format!("free chunk {p:#x} is followed by another free chunk (not coalesced)")
                });
                let fd = self.fd(p)?;
                let bk = self.bk(p)?;
                self.check(self.bk(fd)? == p, p, || {
                    format!("free chunk {p:#x}: fd {fd:#x} does not point back (fd->bk)")
                });
                self.check(self.fd(bk)? == p, p, || {
                    format!("free chunk {p:#x}: bk {bk:#x} does not point back (bk->fd)")
                });
            } else {
                self.check(sz == SIZE_T, p, || {
                    format!("free chunk {p:#x} of {sz} B is below the minimum size")
                });
            }
        }
        Some(())
    }

    fn do_check_smallbin(&self, i: u32) -> Option<()> {
        let m = self.m;
        let b = m.smallbin_at(i);
        let mut p = self.bk(b)?;
        let empty = m.smallmap() & (1 << i) == 0;
        if p == b {
            self.check(empty, b, || {
                format!("small bin {i} is empty but marked in smallmap")
            });
        }
        if !empty {
            // An emptied bin keeps stale links (dlmalloc only clears its smallmap bit), so a
            // corrupted smallmap can send the walk round a loop that never comes back to the bin.
            let mut seen = HashSet::new();
            while p != b {
                if !self.check(
                    seen.insert(p) && (seen.len() as u64) < WALK_LIMIT,
                    b,
                    || format!("small bin {i} is cyclic: {p:#x} comes round again"),
                ) {
                    return None;
                }
                if !self.check(m.ok_address(p), b, || {
                    format!("small bin {i} links to {p:#x}, below the heap")
                }) {
                    return None;
                }
                let size = self.size(p)?;
                self.do_check_free_chunk(p);
                self.check(small_index(size) == i, p, || {
                    format!("chunk {p:#x} of {size} B is in small bin {i}")
                });
                let nb = self.bk(p)?;
                self.check(nb == b || self.size(nb)? == size, p, || {
                    format!("small bin {i} mixes sizes at {p:#x}")
                });
                let q = p.wrapping_add(size);
                if self.head(q)? != FENCEPOST_HEAD {
                    self.do_check_inuse_chunk(q);
                }
                p = nb;
            }
        }
        Some(())
    }

    fn do_check_treebin(&self, i: u32) -> Option<()> {
        let m = self.m;
        let tb = m.treebin_at(i);
        let t = self.word(tb)?;
        let empty = m.treemap() & (1 << i) == 0;
        if t == 0 {
            self.check(empty, tb, || {
                format!("tree bin {i} is empty but marked in treemap")
            });
        }
        if !empty {
            self.check(t != 0, tb, || {
                format!("tree bin {i} marked in treemap but has no root")
            });
            self.do_check_tree(t, 0);
        }
        Some(())
    }

    fn do_check_tree(&self, t: Addr, depth: u32) -> Option<()> {
        let m = self.m;
        if !self.check(depth <= 70 && m.ok_address(t), t, || {
            format!("tree node {t:#x} is below the heap or the tree is too deep")
        }) {
            return None;
        }
        let tindex = m.mem.read_u32(t.wrapping_add(56)).ok()?;
        let tsize = self.size(t)?;
        let idx = compute_tree_index(tsize);
        self.check(tindex == idx, t, || {
            format!("tree chunk {t:#x} of {tsize} B records index {tindex}, belongs in {idx}")
        });
        self.check(tsize >= MIN_LARGE_SIZE, t, || {
            format!("tree chunk {t:#x} is small ({tsize} B)")
        });
        self.check(tsize >= minsize_for_tree_index(idx), t, || {
            format!("tree chunk {t:#x} too small for bin {idx}")
        });
        self.check(
            idx == NTREEBINS - 1 || tsize < minsize_for_tree_index(idx + 1),
            t,
            || format!("tree chunk {t:#x} too large for bin {idx}"),
        );
        let mut u = t;
        let mut head = 0;
        let mut seen = HashSet::new();
        loop {
            if !self.check(
                seen.insert(u) && (seen.len() as u64) < WALK_LIMIT,
                t,
                || format!("chain of {t:#x} is cyclic: {u:#x} comes round again"),
            ) {
                return None;
            }
            self.do_check_any_chunk(u)?;
            let uindex = m.mem.read_u32(u.wrapping_add(56)).ok()?;
            self.check(uindex == tindex, u, || {
                format!("chain member {u:#x} has index {uindex}")
            });
            self.check(self.size(u)? == tsize, u, || {
                format!("chain member {u:#x} differs in size from {t:#x}")
            });
            let h = self.head(u)?;
            self.check(h & INUSE == PINUSE, u, || {
                format!("tree chunk {u:#x} is in use")
            });
            let nh = self.head(u.wrapping_add(tsize))?;
            self.check(nh & PINUSE == 0, u, || {
                format!("the chunk after tree chunk {u:#x} has PINUSE set")
            });
            let (fd, bk) = (self.fd(u)?, self.bk(u)?);
            self.check(self.bk(fd)? == u, u, || {
                format!("tree chunk {u:#x}: fd->bk is not it")
            });
            self.check(self.fd(bk)? == u, u, || {
                format!("tree chunk {u:#x}: bk->fd is not it")
            });
            let parent = self.word(u.wrapping_add(48))?;
            let left = self.word(u.wrapping_add(32))?;
            let right = self.word(u.wrapping_add(40))?;
            if parent == 0 {
                self.check(left == 0 && right == 0, u, || {
                    format!("chain member {u:#x} has children")
                });
            } else {
                self.check(head == 0, u, || {
                    format!("two nodes of one chain have parents ({u:#x})")
                });
                head = u;
                self.check(parent != u, u, || {
                    format!("tree node {u:#x} is its own parent")
                });
                let up = self.word(parent.wrapping_add(32)).unwrap_or(0) == u
                    || self.word(parent.wrapping_add(40)).unwrap_or(0) == u
                    || self.word(parent).unwrap_or(0) == u;
                self.check(up, u, || {
                    format!("tree node {u:#x}: its parent {parent:#x} does not point to it")
                });
                for (c, dir) in [(left, 0), (right, 1)] {
                    if c != 0 {
                        let cp = self.word(c.wrapping_add(48))?;
                        self.check(cp == u, c, || {
                            format!("child[{dir}] {c:#x} of {u:#x} has parent {cp:#x}")
                        });
                        if self.check(c != u, u, || format!("tree node {u:#x} is its own child")) {
                            self.do_check_tree(c, depth + 1);
                        }
                    }
                }
                if left != 0 && right != 0 {
                    self.check(self.size(left)? < self.size(right)?, u, || {
                        format!("tree node {u:#x}: left child is not smaller than right")
                    });
                }
            }
            u = fd;
            if u == t {
                break;
            }
        }
        self.check(head != 0, t, || {
            format!("no node of the chain of {t:#x} is in the tree")
        });
        Some(())
    }

    /// Walks every bin once (bounded, cycle-safe) and records which bin each chunk is in.
    fn bin_members(&self) -> HashMap<Addr, Bin> {
        let m = self.m;
        let mut out = HashMap::new();
        for i in 0..NSMALLBINS {
            if m.smallmap() & (1 << i) == 0 {
                continue;
            }
            let b = m.smallbin_at(i);
            let mut p = m.mem.read_u64(b + 16).unwrap_or(b);
            let mut steps = 0u64;
            while p != b && steps < WALK_LIMIT {
                if out.insert(p, i).is_some() {
                    break;
                }
                let Ok(n) = m.mem.read_u64(p.wrapping_add(16)) else {
                    break;
                };
                p = n;
                steps += 1;
            }
        }
        for i in 0..NTREEBINS {
            if m.treemap() & (1 << i) == 0 {
                continue;
            }
            let root = m.mem.read_u64(m.treebin_at(i)).unwrap_or(0);
            let mut stack = vec![(root, 0u32)];
            let mut seen = HashSet::new();
            while let Some((t, depth)) = stack.pop() {
                if t == 0 || depth > 70 || !seen.insert(t) || seen.len() as u64 > WALK_LIMIT {
                    continue;
                }
                let mut u = t;
                for _ in 0..WALK_LIMIT {
                    out.insert(u, NSMALLBINS + i);
                    match m.mem.read_u64(u.wrapping_add(16)) {
                        Ok(n) if n != t && !out.contains_key(&n) => u = n,
                        _ => break,
                    }
                }
                for dir in 0..2 {
                    if let Ok(c) = m.mem.read_u64(t.wrapping_add(32 + 8 * dir)) {
                        stack.push((c, depth + 1));
                    }
                }
            }
        }
        out
    }

    /// `bin_find(m, x)`: whether `x` is in the bin its size belongs to.
    fn bin_find(&self, x: Addr) -> Option<bool> {
        let size = self.size(x)?;
        let want = if is_small(size) {
            small_index(size)
        } else {
            NSMALLBINS + compute_tree_index(size)
        };
        let mut members = self.members.borrow_mut();
        let members = members.get_or_insert_with(|| self.bin_members());
        Some(members.get(&x) == Some(&want))
    }

    fn traverse_and_check(&self) -> Option<u64> {
        let m = self.m;
        if m.top() == 0 {
            return Some(0);
        }
        let segs = match m.segments() {
            Ok(s) => s,
            Err(e) => {
                self.fail(m.seg_head(), e.message);
                return None;
            }
        };
        let mut sum = m.topsize().wrapping_add(TOP_FOOT_SIZE);
        for (_, base, size, _) in segs {
            let end = base.wrapping_add(size);
            let mut q = base.wrapping_add(align_offset(base.wrapping_add(16)));
            let mut lastq = 0;
            let h = self.head(q)?;
            self.check(h & PINUSE != 0, q, || {
                format!("first chunk {q:#x} of segment {base:#x} has PINUSE clear")
            });
            let mut steps = 0u64;
            while base <= q && q < end && q != m.top() {
                let h = self.head(q)?;
                if h == FENCEPOST_HEAD {
                    break;
                }
                steps += 1;
                let sz = h & !FLAG_BITS;
                if !self.check(sz != 0 && steps < WALK_LIMIT, q, || {
                    format!("chunk {q:#x} has size 0: the walk of segment {base:#x} stops")
                }) {
                    break;
                }
                sum = sum.wrapping_add(sz);
                if h & INUSE != PINUSE {
                    self.check(!self.bin_find(q).unwrap_or(false), q, || {
                        format!("in-use chunk {q:#x} is also in a bin")
                    });
                    self.do_check_inuse_chunk(q);
                } else {
                    self.check(q == m.dv() || self.bin_find(q).unwrap_or(false), q, || {
                        format!("free chunk {q:#x} is neither the dv nor in its bin")
                    });
                    if lastq != 0 {
                        let lh = self.head(lastq).unwrap_or(0);
                        self.check(lh & INUSE != PINUSE, q, || {
                            format!("two free chunks in a row at {lastq:#x} and {q:#x}")
                        });
                    }
                    self.do_check_free_chunk(q);
                }
                lastq = q;
                q = q.wrapping_add(sz);
            }
        }
        Some(sum)
    }

    fn do_check_malloc_state(&self) {
        let m = self.m;
        for i in 0..NSMALLBINS {
            self.do_check_smallbin(i);
        }
        for i in 0..NTREEBINS {
            self.do_check_treebin(i);
        }
        if m.dvsize() != 0 {
            let dv = m.dv();
            if self.do_check_any_chunk(dv).is_some() {
                let sz = self.size(dv).unwrap_or(0);
                self.check(m.dvsize() == sz, dv, || {
                    format!("dvsize is {} but the dv's head says {sz}", m.dvsize())
                });
                self.check(m.dvsize() >= MIN_CHUNK_SIZE, dv, || {
                    "dv below the minimum size".to_owned()
                });
                self.check(!self.bin_find(dv).unwrap_or(false), dv, || {
                    "the dv is also in a bin".to_owned()
                });
            }
        }
        if m.top() != 0 {
            let top = m.top();
            self.do_check_top_chunk(top);
            self.check(m.topsize() > 0, top, || "topsize is 0".to_owned());
            self.check(!self.bin_find(top).unwrap_or(false), top, || {
                "top is also in a bin".to_owned()
            });
        }
        if let Some(total) = self.traverse_and_check() {
            self.check(total <= m.footprint(), m.base, || {
                format!(
                    "chunks add up to {total} B, more than the footprint {}",
                    m.footprint()
                )
            });
        }
        self.check(m.footprint() <= m.max_footprint(), m.base, || {
            "footprint exceeds max_footprint".to_owned()
        });
        self.check(m.footprint() == m.sys.held, m.base, || {
            format!(
                "footprint {} differs from what the system has mapped ({})",
                m.footprint(),
                m.sys.held
            )
        });
    }

    /// The model's own record against the bytes: every block handed out must still be an
    /// in-use chunk big enough for its request (`do_check_inuse_chunk` on each).
    fn check_ledger(&self) {
        let m = self.m;
        let mut live: Vec<_> = m.ledger.iter().collect();
        live.sort_unstable_by_key(|&(a, _)| a);
        for (mem, entry) in live {
            let p = mem.wrapping_sub(16);
            let Some(h) = self.head(p) else { continue };
            if !self.check(h & INUSE != PINUSE, p, || {
                format!("block {mem:#x} was handed out and not freed, but its chunk is marked free")
            }) {
                continue;
            }
            let sz = h & !FLAG_BITS;
            let need = request2size(entry.requested);
            self.check(sz >= need, p, || {
                format!(
                    "block {mem:#x}: chunk of {sz} B is smaller than its request needs ({need} B)"
                )
            });
            self.do_check_inuse_chunk(p);
        }
    }
}

pub(super) fn validate(m: &Dlmalloc) -> Vec<Finding> {
    let c = Checker {
        m,
        findings: RefCell::new(Vec::new()),
        members: RefCell::new(None),
    };
    if let Some(why) = &m.poisoned {
        c.fail(m.base, why.clone());
    }
    c.do_check_malloc_state();
    c.check_ledger();
    c.findings.into_inner()
}

//! The dlmalloc model against the real `dlmalloc` crate (0.2.14, a straight Rust port of
//! dlmalloc 2.8.6), replaying the CS:APP malloclab traces through both.
//!
//! The crate gets a counting "system" with the same placement rule as the model's: Linux's
//! top-down `mmap` (each region in the highest free gap below a ceiling, so a growing heap
//! usually gets a region right below its segment and dlmalloc prepends it), made deterministic
//! over one reserved arena, and granularity 4096 through `Dlmalloc::set_granularity(4096)`.
//! Two model runs per trace:
//! - configured like the crate, which has no direct-`mmap` path
//!   (`Dlmalloc::with_mmap_threshold(None)`): the two must agree pointer for pointer (as offsets
//!   below the ceiling), and the peak footprints within 5 % (they are equal);
//! - configured as Plywood (chunks of 256 KiB and more get their own mapping): its deviations
//!   from the crate are printed, not asserted, since they come from that path alone.
//!
//! A second test checks the reference figures quoted in /work/shared/README.md.
//!
//! The traces are read from /work/shared at test time and never copied into the repository.

// The crate's system-allocator trait is `unsafe` to implement and its entry points are
// `unsafe fn`s over raw pointers; this is the only place in the workspace that needs it.
#![allow(unsafe_code)]
// The replay helpers outside `#[test]` functions fail loudly like the tests themselves.
#![allow(clippy::expect_used, clippy::panic)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use heapscope_core::allocators::dlmalloc::Dlmalloc as Model;
use heapscope_core::{Allocator, HeapConfig, Trail};

const TRACE_DIR: &str = "/work/shared/traces/malloclab";
const ARENA: usize = 1 << 30;
const PAGE: usize = 4096;
const GRANULARITY: u64 = 4096;

/// One trace operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Alloc(usize, u64),
    Realloc(usize, u64),
    Free(Option<usize>),
}

/// Parses a malloclab `.rep` file: a header of integers (usually four lines: suggested heap
/// size, number of ids, number of operations, weight; some files put them on one line), then
/// `a ID BYTES`, `r ID BYTES`, `f ID` lines (`f -1` is free(NULL); a missing size is 0).
/// Line ends may be LF, CRLF or CR. Returns (ids, declared ops, ops).
fn parse(text: &str) -> Result<(usize, usize, Vec<Op>), String> {
    let mut header: Vec<u64> = Vec::new();
    let mut ops = Vec::new();
    for (n, line) in text.split(['\n', '\r']).enumerate() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let id = |w: Option<&str>| -> Result<Option<usize>, String> {
            let w = w.ok_or(format!("line {}: missing id", n + 1))?;
            let v: i64 = w
                .parse()
                .map_err(|e| format!("line {}: id {w:?}: {e}", n + 1))?;
            Ok(usize::try_from(v).ok())
        };
        match first {
            "a" | "r" => {
                let Some(i) = id(words.next())? else {
                    return Err(format!("line {}: negative id", n + 1));
                };
                let size = match words.next() {
                    Some(w) => w.parse().map_err(|e| format!("line {}: {e}", n + 1))?,
                    None => 0,
                };
                ops.push(if first == "a" {
                    Op::Alloc(i, size)
                } else {
                    Op::Realloc(i, size)
                });
            }
            "f" => ops.push(Op::Free(id(words.next())?)),
            _ if ops.is_empty() => {
                for w in std::iter::once(first).chain(words) {
                    header.push(w.parse().map_err(|e| format!("header {w:?}: {e}"))?);
                }
            }
            other => return Err(format!("line {}: unknown op {other:?}", n + 1)),
        }
    }
    if header.len() < 3 {
        return Err(format!(
            "header has {} numbers, expected at least 3",
            header.len()
        ));
    }
    Ok((header[1] as usize, header[2] as usize, ops))
}

/// Top-down bookkeeping of mapped ranges (offsets into the arena), as the model's system and
/// as Linux's `mmap`: a new mapping takes the highest free gap below the arena's end.
#[derive(Default)]
struct Ranges {
    map: BTreeMap<usize, usize>,
    held: usize,
    peak: usize,
}

impl Ranges {
    fn map(&mut self, len: usize) -> Option<usize> {
        let mut end = ARENA;
        let mut found = None;
        for (&s, &e) in self.map.iter().rev() {
            if end >= e && end - e >= len {
                found = Some(end - len);
                break;
            }
            end = end.min(s);
        }
        let start = match found {
            Some(a) => a,
            None if end >= len => end - len,
            None => return None,
        };
        let (mut s, mut e) = (start, start + len);
        if let Some((&ps, &pe)) = self.map.range(..s).next_back()
            && pe == s
        {
            self.map.remove(&ps);
            s = ps;
        }
        if let Some(ne) = self.map.remove(&e) {
            e = ne;
        }
        self.map.insert(s, e);
        self.held += len;
        self.peak = self.peak.max(self.held);
        Some(start)
    }

    fn unmap(&mut self, start: usize, len: usize) -> bool {
        let end = start + len;
        let Some((&s, &e)) = self.map.range(..=start).next_back() else {
            return false;
        };
        if end > e {
            return false;
        }
        self.map.remove(&s);
        if s < start {
            self.map.insert(s, start);
        }
        if end < e {
            self.map.insert(end, e);
        }
        self.held -= len;
        true
    }
}

/// The crate's "system": pages of one big zeroed allocation, counted.
struct Counting {
    /// The allocation as made (freed on drop).
    raw: *mut u8,
    /// Its first page boundary: offset 0 of the arena.
    base: *mut u8,
    ranges: RefCell<Ranges>,
}

/// Alignment 16 keeps `alloc_zeroed` on `calloc`, whose fresh pages are zero without a memset;
/// the page alignment is done by hand.
fn arena_layout() -> Layout {
    Layout::from_size_align(ARENA + PAGE, 16).expect("arena layout")
}

// SAFETY: the arena pointer is owned by this value and only used through it.
unsafe impl Send for Counting {}

impl Counting {
    fn new() -> Self {
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(arena_layout()) };
        assert!(!raw.is_null(), "could not reserve the arena");
        let base = raw.wrapping_add(raw.align_offset(PAGE));
        Self {
            raw,
            base,
            ranges: RefCell::new(Ranges::default()),
        }
    }

    fn offset(&self, p: *mut u8) -> usize {
        p as usize - self.base as usize
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.raw, arena_layout()) }
    }
}

// SAFETY: every region handed out lies inside the arena, is page aligned and is not handed out
// again until it is freed.
unsafe impl dlmalloc::Allocator for Counting {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        let size = size.next_multiple_of(PAGE);
        match self.ranges.borrow_mut().map(size) {
            Some(off) => (self.base.wrapping_add(off), size, 0),
            None => (std::ptr::null_mut(), 0, 0),
        }
    }

    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        std::ptr::null_mut()
    }

    fn free_part(&self, ptr: *mut u8, oldsize: usize, newsize: usize) -> bool {
        let off = self.offset(ptr);
        self.ranges
            .borrow_mut()
            .unmap(off + newsize, oldsize - newsize)
    }

    fn free(&self, ptr: *mut u8, size: usize) -> bool {
        let off = self.offset(ptr);
        self.ranges.borrow_mut().unmap(off, size)
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        true
    }

    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        PAGE
    }
}

/// What one replay saw.
struct Run {
    /// How far below the system's ceiling each returned pointer lies, in order.
    offsets: Vec<u64>,
    peak_footprint: u64,
    live: LiveBytes,
}

/// The program's live bytes: the sum of the live blocks' requested sizes (a realloc replaces
/// the size), and the same with every request rounded up to 8 bytes; with their peaks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LiveBytes {
    sizes: Vec<Option<u64>>,
    live: u64,
    live8: u64,
    peak: u64,
    peak8: u64,
}

impl LiveBytes {
    fn new(ids: usize) -> Self {
        Self {
            sizes: vec![None; ids],
            live: 0,
            live8: 0,
            peak: 0,
            peak8: 0,
        }
    }

    fn free(&mut self, i: usize) {
        if let Some(n) = self.sizes[i].take() {
            self.live -= n;
            self.live8 -= n.next_multiple_of(8);
        }
    }

    fn set(&mut self, i: usize, n: u64) {
        self.free(i);
        self.sizes[i] = Some(n);
        self.live += n;
        self.live8 += n.next_multiple_of(8);
        self.peak = self.peak.max(self.live);
        self.peak8 = self.peak8.max(self.live8);
    }
}

fn replay_crate(ops: &[Op], ids: usize) -> Run {
    let mut heap = dlmalloc::Dlmalloc::new_with_allocator(Counting::new());
    assert!(heap.set_granularity(GRANULARITY as usize));
    let mut ptrs: Vec<*mut u8> = vec![std::ptr::null_mut(); ids];
    let mut live = LiveBytes::new(ids);
    let mut offsets = Vec::with_capacity(ops.len());
    for &op in ops {
        match op {
            Op::Alloc(i, n) | Op::Realloc(i, n) => {
                let old = ptrs[i];
                // SAFETY: `old` is null or a live pointer from this heap.
                let p = unsafe {
                    if matches!(op, Op::Alloc(..)) || old.is_null() {
                        heap.c_malloc(n as usize)
                    } else {
                        heap.c_realloc(old, n as usize)
                    }
                };
                assert!(!p.is_null(), "crate ran out of its 1 GiB arena");
                offsets.push((ARENA - heap.allocator().offset(p)) as u64);
                ptrs[i] = p;
                live.set(i, n);
            }
            Op::Free(Some(i)) if !ptrs[i].is_null() => {
                // SAFETY: a live pointer from this heap.
                unsafe { heap.c_free(ptrs[i]) };
                ptrs[i] = std::ptr::null_mut();
                live.free(i);
            }
            Op::Free(_) => {}
        }
    }
    let peak_footprint = heap.allocator().ranges.borrow().peak as u64;
    Run {
        offsets,
        peak_footprint,
        live,
    }
}

/// Why Plywood's setting is off the crate where it is.
const PLYWOOD_DEVIATIONS: &str = "the crate never maps a chunk on its own; dlmalloc 2.8.6 as \
    Plywood builds it maps chunks of 256 KiB and more directly, gives them back on free and \
    resizes them with mremap. In realloc and realloc-bal one block grows by 128 B per realloc up \
    to 600 KiB, each time with a fresh 128 B block right after it, so it never grows in place: \
    the crate moves it inside its segments all the way (malloc, copy, free; the freed copies are \
    too small for the next one) and peaks at 2.5 times the block; Plywood does that only up to \
    256 KiB (a 572 KiB segment, kept: top stays under the 2 MiB trim threshold) and then gives \
    the block a mapping of its own that mremap moves, so it peaks at the segment plus the \
    block (-21.8 %). Where large chunks come and go among small ones (freeciv, login, xterm) \
    the two differ by about 1 % either way. With direct mapping off the model equals the crate \
    exactly (asserted).";

/// How the model is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// No direct mapping, like the crate.
    LikeTheCrate,
    /// Plywood's default: chunks of 256 KiB and more get their own mapping.
    Plywood,
}

fn model(setup: Setup) -> Model {
    let heap = Model::from_config(&HeapConfig {
        granularity: Some(GRANULARITY),
        max: Some(ARENA as u64),
        ..HeapConfig::default()
    })
    .expect("model config");
    match setup {
        Setup::LikeTheCrate => heap.with_mmap_threshold(None),
        Setup::Plywood => heap,
    }
}

fn replay_model(ops: &[Op], ids: usize, setup: Setup) -> Run {
    let mut heap = model(setup);
    let ceiling = heap.system_ceiling();
    let mut t = Trail::off();
    let mut ptrs: Vec<u64> = vec![0; ids];
    let mut live = LiveBytes::new(ids);
    let mut offsets = Vec::with_capacity(ops.len());
    for (k, &op) in ops.iter().enumerate() {
        match op {
            Op::Alloc(i, n) | Op::Realloc(i, n) => {
                let p = if matches!(op, Op::Alloc(..)) || ptrs[i] == 0 {
                    heap.allocate(n, 0, &mut t)
                } else {
                    heap.realloc(ptrs[i], n, &mut t)
                }
                .unwrap_or_else(|e| panic!("op {k} {op:?}: {e}"));
                offsets.push(ceiling - p);
                ptrs[i] = p;
                live.set(i, n);
            }
            Op::Free(Some(i)) if ptrs[i] != 0 => {
                heap.free(ptrs[i], &mut t)
                    .unwrap_or_else(|e| panic!("op {k} {op:?}: {e}"));
                ptrs[i] = 0;
                live.free(i);
            }
            Op::Free(_) => {}
        }
    }
    let findings = heap.validate();
    assert!(
        findings.is_empty(),
        "model unsound after the trace: {:?}",
        &findings[..findings.len().min(5)]
    );
    assert_eq!(heap.stats().peak_footprint, heap.peak_system_bytes());
    assert_eq!(heap.max_footprint(), heap.peak_system_bytes());
    assert_eq!(heap.stats().peak_requested_live, live.peak);
    Run {
        offsets,
        peak_footprint: heap.peak_system_bytes(),
        live,
    }
}

/// A trace's name and operations, with the number of ids it uses.
fn load(path: &Path) -> (String, usize, Vec<Op>) {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).expect("readable trace");
    let (ids, _declared, ops) = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ids = ops
        .iter()
        .filter_map(|op| match *op {
            Op::Alloc(i, _) | Op::Realloc(i, _) | Op::Free(Some(i)) => Some(i + 1),
            Op::Free(None) => None,
        })
        .max()
        .unwrap_or(0)
        .max(ids);
    (name, ids, ops)
}

fn traces() -> Option<Vec<PathBuf>> {
    let dir = Path::new(TRACE_DIR);
    if !dir.is_dir() {
        return None;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rep"))
        .collect();
    files.sort();
    Some(files)
}

#[test]
fn parser_reads_both_header_layouts_and_all_line_ends() {
    let four = "1\r\n3\r\n4\r\n1\r\na 0 10\r\nr 0 20\rf 0\nf -1\na 2 \n";
    let (ids, declared, ops) = parse(four).unwrap();
    assert_eq!((ids, declared), (3, 4));
    assert_eq!(
        ops,
        vec![
            Op::Alloc(0, 10),
            Op::Realloc(0, 20),
            Op::Free(Some(0)),
            Op::Free(None),
            Op::Alloc(2, 0)
        ]
    );
    let one_line = "20000 2 2 1\na 1 5\nf 1\n";
    assert_eq!(parse(one_line).unwrap().0, 2);
    assert!(parse("1\n2\na 0 1\n").is_err(), "too short a header");
    assert!(parse("1 2 3 4\nx 0 1\n").is_err());
}

#[test]
fn model_matches_the_dlmalloc_crate_on_malloclab_traces() {
    let Some(files) = traces() else {
        println!("note: {TRACE_DIR} is absent; the differential test was skipped");
        return;
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for path in files {
        let (name, ids, ops) = load(&path);
        if ops.len() < 1000 {
            continue;
        }
        // HEAPSCOPE_TRACE=name replays only the traces whose name contains it.
        if let Ok(only) = std::env::var("HEAPSCOPE_TRACE")
            && !name.contains(&only)
        {
            continue;
        }
        let t0 = Instant::now();
        let real = replay_crate(&ops, ids);
        let t1 = Instant::now();
        let like = replay_model(&ops, ids, Setup::LikeTheCrate);
        if std::env::var("HEAPSCOPE_TIMING").is_ok() {
            println!("{name}: crate {:?}, model {:?}", t1 - t0, t1.elapsed());
        }
        // Plywood's setting differs only for chunks of 256 KiB and more.
        let big = ops
            .iter()
            .any(|op| matches!(*op, Op::Alloc(_, n) | Op::Realloc(_, n) if n + 8 >= 256 << 10));
        let plywood = if big {
            replay_model(&ops, ids, Setup::Plywood).peak_footprint
        } else {
            like.peak_footprint
        };
        if let Some(k) =
            (0..real.offsets.len()).find(|&k| real.offsets.get(k) != like.offsets.get(k))
        {
            failures.push(format!(
                "{name}: pointer #{k} differs: crate ceiling-{:#x}, model ceiling-{:#x}",
                real.offsets[k],
                like.offsets.get(k).copied().unwrap_or(0)
            ));
        }
        let rel =
            |model: u64| (model as f64 - real.peak_footprint as f64) / real.peak_footprint as f64;
        let diff = rel(like.peak_footprint);
        // The issue's bound, for the model configured like the crate (it is in fact exact).
        if diff.abs() > 0.05 {
            failures.push(format!(
                "{name}: model peak footprint {} is {:+.1} % off the crate's {}",
                like.peak_footprint,
                diff * 100.0,
                real.peak_footprint
            ));
        }
        if like.peak_footprint != real.peak_footprint {
            failures.push(format!(
                "{name}: peak footprint {} != crate's {}",
                like.peak_footprint, real.peak_footprint
            ));
        }
        let plywood_diff = rel(plywood);
        if plywood_diff.abs() > 0.05 {
            notes.push(format!(
                "{name}: Plywood's setting is {:+.1} % off the crate ({plywood} B vs {} B)",
                plywood_diff * 100.0,
                real.peak_footprint
            ));
        }
        assert_eq!(like.live, real.live);
        rows.push((
            name,
            ops.len(),
            real.peak_footprint,
            like.peak_footprint,
            plywood,
            plywood_diff,
            real.live.peak,
        ));
    }
    println!(
        "{:<20} {:>7} {:>11} {:>11} {:>11} {:>8} {:>6} {:>6}",
        "trace", "ops", "crate peak", "model peak", "plywood", "ply.diff", "util", "u.ply"
    );
    for (name, n, real, model, plywood, diff, live) in &rows {
        println!(
            "{name:<20} {n:>7} {real:>11} {model:>11} {plywood:>11} {:>+7.1}% {:>6.3} {:>6.3}",
            diff * 100.0,
            *live as f64 / *model as f64,
            *live as f64 / *plywood as f64
        );
    }
    println!(
        "{} traces in {:.1} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    for note in &notes {
        println!("note: {note}");
    }
    if !notes.is_empty() {
        println!("note: {PLYWOOD_DEVIATIONS}");
    }
    assert!(
        rows.len() >= 30,
        "expected the malloclab traces, replayed {}",
        rows.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The figures /work/shared/README.md quotes for the `dlmalloc` crate (0.2.14, granularity
/// 4096): peak live bytes / peak system footprint.
///
/// Measured outside the repository with the crate over the real Linux `mmap` (a counting
/// wrapper making the same `mmap`/`mremap`/`munmap` calls as the crate's own `System`):
/// amptjp-bal, binary-bal, coalescing-bal and random-bal replayed in that order in one process
/// peak at 2,035,712 / 958,464 / 16,384 / 16,007,168 B, as the crate over the top-down system
/// above does and as the model set up like the crate does. (Alone in a fresh process a trace's
/// first regions go into holes of the process's address space and some peaks move: binary-bal
/// 962,560 B, random-bal 16,076,800 B.) Divided into the sums of requested sizes (the
/// README's "peak live" column, checked here) that gives 0.988 / 0.601 / 0.500 / 0.943, and
/// amptjp-bal's 0.989 cannot come from 2,012,279 live bytes over any whole number of pages.
/// With each request rounded up to 8 bytes the quotients are exactly the README's
/// 0.989 / 0.601 / 0.500 / 0.944, so that is how those figures count live bytes.
#[test]
fn reference_figures_of_the_shared_readme() {
    let Some(files) = traces() else {
        println!("note: {TRACE_DIR} is absent; the reference figures were not checked");
        return;
    };
    // (trace, README's peak live, README's util, util of the raw requested sizes)
    let expected = [
        ("amptjp-bal", 2_012_279, "0.989", "0.988"),
        ("binary-bal", 576_000, "0.601", "0.601"),
        ("coalescing-bal", 8_190, "0.500", "0.500"),
        ("random-bal", 15_100_270, "0.944", "0.943"),
    ];
    for (trace, peak_live, quoted, raw) in expected {
        let path = files
            .iter()
            .find(|p| p.file_stem().is_some_and(|s| s == trace))
            .unwrap_or_else(|| panic!("{trace}.rep is missing"));
        let (_, ids, ops) = load(path);
        let run = replay_model(&ops, ids, Setup::LikeTheCrate);
        let fp = run.peak_footprint as f64;
        let util8 = format!("{:.3}", run.live.peak8 as f64 / fp);
        let util = format!("{:.3}", run.live.peak as f64 / fp);
        println!(
            "{trace:<16} peak live {:>10} ({:>10} rounded to 8) / peak footprint {:>10}: {util} ({util8})",
            run.live.peak, run.live.peak8, run.peak_footprint
        );
        assert_eq!(run.live.peak, peak_live, "{trace}: the README's peak live");
        assert_eq!(util8, quoted, "{trace}: the README's figure");
        assert_eq!(util, raw, "{trace}: raw requested sizes");
    }
}

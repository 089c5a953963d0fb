//! Differential test: heapscope's `freeing-bump` model against `sc-allocator` 39.0.0 itself.
//!
//! Thousands of seeded random traces (allocations skewed small with some large and some huge,
//! frees of live blocks, a few bogus and double frees, a few guest writes over headers, memory
//! limits small enough to be hit) run through `sc_allocator::FreeingBumpHeapAllocator` over a
//! `Vec<u8>` memory and through the model. After every step both must agree on the pointer or
//! the error message, on `AllocationStats`, on the memory size and on poisoning; at the end of
//! every trace on every byte of memory.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use heapscope_core::allocators::freeing_bump::{AllocationStats, FreeingBump};
use heapscope_core::{Allocator, HeapConfig, Trail};
use heapscope_tests::SplitMix64;
use sc_allocator::FreeingBumpHeapAllocator;
use sp_wasm_interface::Pointer;

const PAGE: usize = 65536;
const TRACES: u64 = 8000;

/// A wasm linear memory as sc-allocator's own tests build it: a vector grown in pages.
struct VecMemory {
    data: Vec<u8>,
    max_pages: Option<u32>,
}

impl sc_allocator::Memory for VecMemory {
    fn with_access_mut<R>(&mut self, run: impl FnOnce(&mut [u8]) -> R) -> R {
        run(&mut self.data)
    }

    fn with_access<R>(&self, run: impl FnOnce(&[u8]) -> R) -> R {
        run(&self.data)
    }

    fn grow(&mut self, additional: u32) -> Result<(), ()> {
        let pages = self.pages() + additional;
        if pages > self.max_pages.unwrap_or(65536) {
            return Err(());
        }
        // A fresh zeroed vector and one copy: `resize` is slow in unoptimised test builds.
        let mut grown = vec![0; pages as usize * PAGE];
        grown[..self.data.len()].copy_from_slice(&self.data);
        self.data = grown;
        Ok(())
    }

    fn pages(&self) -> u32 {
        (self.data.len() / PAGE) as u32
    }

    fn max_pages(&self) -> Option<u32> {
        self.max_pages
    }
}

/// How one trace is set up.
#[derive(Debug, Clone, Copy)]
struct Setup {
    heap_base: u32,
    pages: u32,
    max_pages: Option<u32>,
    /// Largest request size drawn.
    size_cap: u64,
    bogus_percent: f64,
    corrupt_percent: f64,
    steps: usize,
    trail: bool,
}

impl Setup {
    fn draw(rng: &mut SplitMix64) -> Self {
        let heap_base = match rng.below(5) {
            0 => 0,
            1 => 13,
            2 => rng.below(200) as u32,
            3 => 1024 + rng.below(64) as u32,
            _ => 70_000 + rng.below(16) as u32, // beyond the first page
        };
        let pages = if rng.chance(3.0) {
            0
        } else {
            rng.range(1, 3) as u32
        };
        let (max_pages, size_cap) = match rng.below(100) {
            0..40 => (Some(pages.max(2)), 48 << 10),
            40..75 => (Some(pages + rng.range(1, 8) as u32), 300 << 10),
            // Requests up to 40 MiB: above 32 MiB too large, below it out of space.
            75..85 => (Some(pages + rng.range(8, 24) as u32), 40 << 20),
            _ => (None, 4096),
        };
        Self {
            heap_base,
            pages,
            max_pages,
            size_cap,
            bogus_percent: if rng.chance(50.0) { 0.0 } else { 1.0 },
            corrupt_percent: if rng.chance(85.0) { 0.0 } else { 1.5 },
            steps: rng.range(50, 400) as usize,
            trail: rng.chance(5.0),
        }
    }
}

/// A request size: mostly small, some large, a few up to the trace's cap.
fn draw_size(rng: &mut SplitMix64, cap: u64) -> u64 {
    let size = match rng.below(1000) {
        0..600 => rng.range(0, 64),
        600..850 => rng.range(65, 1024),
        850..970 => rng.range(1025, 16 << 10),
        _ => rng.range(16 << 10, cap.max(16 << 10)),
    };
    size.min(cap)
}

fn same_stats(sc: &sc_allocator::AllocationStats, model: AllocationStats) -> bool {
    u64::from(sc.bytes_allocated) == model.bytes_allocated
        && u64::from(sc.bytes_allocated_peak) == model.bytes_allocated_peak
        && sc.bytes_allocated_sum == model.bytes_allocated_sum
        && u64::from(sc.address_space_used) == model.address_space_used
}

/// What happened in one trace, for the totals.
#[derive(Default)]
struct Tally {
    steps: u64,
    errors: BTreeMap<String, u64>,
    bogus_ok: u64,
    corruptions: u64,
}

fn run_trace(seed: u64, tally: &mut Tally) {
    let mut rng = SplitMix64::new(seed);
    let setup = Setup::draw(&mut rng);
    let ctx = format!("seed {seed} {setup:?}");
    let mut mem = VecMemory {
        data: vec![0; setup.pages as usize * PAGE],
        max_pages: setup.max_pages,
    };
    let mut sc = FreeingBumpHeapAllocator::new(setup.heap_base);
    let mut model = FreeingBump::from_config(&HeapConfig {
        base: Some(u64::from(setup.heap_base)),
        size: Some(u64::from(setup.pages) * PAGE as u64),
        max: Some(
            setup
                .max_pages
                .map_or(4 << 30, |p| u64::from(p) * PAGE as u64),
        ),
        ..HeapConfig::default()
    })
    .unwrap();
    let mut trail = if setup.trail {
        Trail::on()
    } else {
        Trail::off()
    };
    let mut live: Vec<u32> = Vec::new();
    let mut freed: Vec<u32> = Vec::new();
    let mut corrupted = false;
    let mut after_poison = 0;

    for step in 0..setup.steps {
        tally.steps += 1;
        let roll = rng.below(1000) as f64 / 10.0;
        let (what, sc_res, model_res) = if roll < setup.corrupt_percent {
            // A guest writes over a header: both memories get the same bytes.
            let target = match rng.below(3) {
                0 if !freed.is_empty() => freed[rng.below(freed.len() as u64) as usize] - 8,
                1 if !live.is_empty() => live[rng.below(live.len() as u64) as usize] - 8,
                _ => (rng.below(mem.data.len().max(8) as u64 / 8) * 8) as u32,
            };
            let value: u64 = match rng.below(5) {
                0 => u64::from(u32::MAX - 1),
                1 => (1 << 32) | rng.below(30),
                2 if !live.is_empty() => u64::from(live[rng.below(live.len() as u64) as usize] - 8),
                3 => rng.below(mem.data.len() as u64 + 64),
                _ => rng.next_u64(),
            };
            let at = target as usize;
            if at + 8 <= mem.data.len() {
                mem.data[at..at + 8].copy_from_slice(&value.to_le_bytes());
                model
                    .memory_mut()
                    .write_u64(u64::from(target), value)
                    .unwrap();
                corrupted = true;
                tally.corruptions += 1;
            }
            continue;
        } else if roll < setup.corrupt_percent + setup.bogus_percent {
            let ptr: u32 = match rng.below(4) {
                0 if !freed.is_empty() => freed[rng.below(freed.len() as u64) as usize],
                1 if !live.is_empty() => {
                    live[rng.below(live.len() as u64) as usize] + 8 * rng.range(1, 4) as u32
                }
                2 => rng.below(8) as u32,
                _ => rng.below(mem.data.len() as u64 + 4096) as u32,
            };
            let sc_res = sc.deallocate(&mut mem, Pointer::new(ptr)).map(|()| None);
            let model_res = model.free(u64::from(ptr), &mut trail).map(|()| None);
            if sc_res.is_ok() {
                tally.bogus_ok += 1;
                live.retain(|&p| p != ptr);
            }
            (format!("bogus free({ptr:#x})"), sc_res, model_res)
        } else if live.is_empty() || rng.chance(55.0) {
            let size = draw_size(&mut rng, setup.size_cap);
            let sc_res = sc
                .allocate(&mut mem, size as u32)
                .map(|p| Some(u32::from(p)));
            let model_res = model.allocate(size, 0, &mut trail).map(Some);
            if let Ok(Some(p)) = sc_res {
                live.push(p);
                freed.retain(|&f| f != p);
            }
            (format!("allocate({size})"), sc_res, model_res)
        } else {
            let ptr = live.swap_remove(rng.below(live.len() as u64) as usize);
            let sc_res = sc.deallocate(&mut mem, Pointer::new(ptr)).map(|()| None);
            let model_res = model.free(u64::from(ptr), &mut trail).map(|()| None);
            if sc_res.is_ok() {
                freed.push(ptr);
            } else {
                live.push(ptr);
            }
            (format!("free({ptr:#x})"), sc_res, model_res)
        };
        trail.take();
        let sc_res = sc_res.map_err(|e| e.to_string());
        let model_res = model_res
            .map(|p| p.map(|p| u32::try_from(p).unwrap()))
            .map_err(|e| e.message);
        assert_eq!(sc_res, model_res, "{ctx}, step {step}: {what}");
        assert!(
            same_stats(&sc.stats(), model.allocation_stats()),
            "{ctx}, step {step}: {what}: stats {:?} vs {:?}",
            sc.stats(),
            model.allocation_stats()
        );
        assert_eq!(
            mem.data.len() as u64,
            model.memory().len(),
            "{ctx}, step {step}: {what}: memory size"
        );
        if let Err(message) = &sc_res {
            *tally.errors.entry(message.clone()).or_default() += 1;
            assert!(
                model.is_poisoned(),
                "{ctx}, step {step}: model not poisoned"
            );
            after_poison += 1;
            if after_poison > 3 {
                break;
            }
        }
    }

    assert!(
        mem.data == model.memory().as_bytes(),
        "{ctx}: memory bytes differ"
    );
    let layout = model.inspect();
    assert_eq!(layout.check_tiling(), Vec::new(), "{ctx}: tiling");
    let findings = model.validate();
    if !corrupted {
        assert_eq!(findings, Vec::new(), "{ctx}: validate");
        assert_eq!(model.stats().live_blocks, live.len() as u64, "{ctx}: live");
    }
}

#[test]
fn model_matches_sc_allocator_on_random_traces() {
    let mut tally = Tally::default();
    for seed in 0..TRACES {
        run_trace(seed, &mut tally);
    }
    println!(
        "{TRACES} traces, {} steps, {} bogus frees that hit a live block, {} header corruptions",
        tally.steps, tally.bogus_ok, tally.corruptions
    );
    for (message, count) in &tally.errors {
        println!("{count:>6}  {message}");
    }
    // The traces must reach every way the original fails, or they prove less than they claim.
    for message in [
        "Allocator ran out of space",
        "Requested allocation size is too large",
        "Other: the allocator has been poisoned",
        "Other: Invalid header pointer detected",
        "Other: the allocation points to an empty header",
        "Other: Invalid pointer for deallocation",
        "Other: read out of heap bounds",
        "Other: invalid order",
        "Other: free list points to a occupied header",
        "Other: underflow of the currently allocated bytes count",
    ] {
        assert!(
            tally.errors.get(message).is_some_and(|&n| n > 0),
            "no trace hit `{message}`: {:?}",
            tally.errors
        );
    }
}

/// The largest block, freed and reused, then one byte more: the traces above keep memories
/// small (growing a big memory is slow in unoptimised builds), so this runs it once.
#[test]
fn a_32_mib_block_fits_when_the_maximum_allows() {
    let max_pages = 600;
    let mut mem = VecMemory {
        data: vec![0; PAGE],
        max_pages: Some(max_pages),
    };
    let mut sc = FreeingBumpHeapAllocator::new(100);
    let mut model = FreeingBump::from_config(&HeapConfig {
        base: Some(100),
        max: Some(u64::from(max_pages) * PAGE as u64),
        ..HeapConfig::default()
    })
    .unwrap();
    let mut trail = Trail::on();
    let mut frees = Vec::new();
    for size in [9, 32 << 20, 0, 32 << 20, (32 << 20) + 1, 8] {
        let a = sc
            .allocate(&mut mem, size)
            .map(u32::from)
            .map_err(|e| e.to_string());
        let b = model
            .allocate(u64::from(size), 0, &mut trail)
            .map(|p| u32::try_from(p).unwrap())
            .map_err(|e| e.message);
        assert_eq!(a, b, "allocate({size})");
        assert!(same_stats(&sc.stats(), model.allocation_stats()));
        assert_eq!(mem.data.len() as u64, model.memory().len());
        if size == 32 << 20
            && let Ok(p) = a
        {
            frees.push(p);
            let sc_free = sc
                .deallocate(&mut mem, Pointer::new(p))
                .map_err(|e| e.to_string());
            let model_free = model.free(u64::from(p), &mut trail).map_err(|e| e.message);
            assert_eq!(sc_free, model_free);
        }
    }
    assert_eq!(frees.len(), 2);
    assert_eq!(frees[0], frees[1], "the freed 32 MiB block is reused");
    assert!(model.is_poisoned(), "32 MiB + 1 is too large and poisons");
    assert!(mem.data == model.memory().as_bytes());
}

/// sc's `should_return_error_when_bumper_greater_than_heap_size`, run through both at once.
#[test]
fn one_page_of_32_byte_blocks_fills_both_alike() {
    let mut mem = VecMemory {
        data: vec![0; PAGE],
        max_pages: Some(1),
    };
    let mut sc = FreeingBumpHeapAllocator::new(0);
    let mut model = FreeingBump::from_config(&HeapConfig {
        max: Some(PAGE as u64),
        ..HeapConfig::default()
    })
    .unwrap();
    let mut trail = Trail::off();
    for _ in 0..PAGE / 40 {
        let a = u32::from(sc.allocate(&mut mem, 32).unwrap());
        let b = model.allocate(32, 0, &mut trail).unwrap();
        assert_eq!(u64::from(a), b);
    }
    assert!(same_stats(&sc.stats(), model.allocation_stats()));
    assert_eq!(model.allocation_stats().bytes_allocated, PAGE as u64 - 16);
    assert!(mem.data == model.memory().as_bytes());
}

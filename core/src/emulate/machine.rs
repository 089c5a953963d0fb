//! The Unicorn machine: mapping the program, stack and heap, the hooks, and one run.
//!
//! Hooks are plain functions over [`Machine`], the state Unicorn carries for them. They never
//! panic (a panic cannot unwind through Unicorn's C frames): every failure becomes an [`Exit`]
//! and a request to stop.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use unicorn_engine::{
    Arch, HookType, MemType, Mode, Prot, RegisterX86, UcHookId, Unicorn, X86Insn, uc_error,
};

use super::disasm::Disassembler;
use super::image::{Image, Perms};
use super::layout::{self, PAGE, page_ceil, page_floor};
use super::limits::{Limits, Verdict};
use super::tracker::Tracker;
use super::{
    AccessRecord, BlockInfo, EmulateError, Event, Exit, HeapFunction, Options, Owner, Run, Site,
    ViolationEvent, Warning, report,
};
use crate::access::{Access, ViolationClass};
use crate::allocator::Trail;
use crate::layout::{BlockState, HeapLayout};
use crate::replay::Replayer;
use crate::trace::{Id, Op};
use crate::{Addr, AllocatorKind, HeapConfig};

/// Size of the chunks compared when pushing the model's changes to Unicorn.
const SYNC_CHUNK: usize = 256;

/// Everything the hooks need: the allocator (through a replayer), the trace, the events.
#[derive(Debug)]
pub struct Machine<'i> {
    pub image: &'i Image,
    pub kind: AllocatorKind,
    /// Whether the allocator checks accesses itself (its violations replace warnings).
    checking: bool,
    pub replayer: Replayer,
    pub trail: Trail,
    /// The heap calls' ops, with their steps.
    pub call_ops: Vec<(usize, Op)>,
    pub accesses: Vec<AccessRecord>,
    pub events: Vec<Event>,
    pub tracker: Tracker,
    /// The live block the last access fell in (a loop touches the same block over and over);
    /// cleared by every heap call.
    pub hot: Option<BlockInfo>,
    pub next_id: Id,
    pub disasm: Disassembler,
    /// `inspect()` of the heap as the last heap call left it (guest writes do not refresh it:
    /// warnings describe where an access lands in the heap the allocator laid out).
    pub layout: Option<HeapLayout>,
    /// The first step since the last `validate()` that wrote outside the held blocks.
    dirty_since: Option<usize>,
    /// Corruption findings already reported.
    reported: BTreeSet<String>,
    pub stop: Option<Exit>,
    pub stop_on_first: bool,
    pub max_ops: usize,
    /// Lowest heap address (freeing-bump's memory starts at 0, its heap at `heap_base`).
    heap_floor: Addr,
    /// The heap pages mapped in Unicorn.
    window: Range<Addr>,
    mem_hooks: Vec<UcHookId>,
    /// What the last bad memory access was, for the fault message.
    fault: Option<(Option<Addr>, String)>,
    /// The instruction budget and the clock.
    limits: Limits,
    /// The wall-clock limit as asked for (for the exit).
    timeout_ms: u64,
    scratch: Vec<u8>,
}

type Uc<'a, 'i> = Unicorn<'a, Machine<'i>>;

fn prot(perms: Perms) -> Prot {
    let mut p = Prot::NONE;
    if perms.read {
        p |= Prot::READ;
    }
    if perms.write {
        p |= Prot::WRITE;
    }
    if perms.exec {
        p |= Prot::EXEC;
    }
    p
}

impl<'i> Machine<'i> {
    fn new(
        image: &'i Image,
        kind: AllocatorKind,
        config: &HeapConfig,
        options: &Options,
    ) -> Result<Self, EmulateError> {
        let heap = kind.build(config)?;
        let heap_floor = match kind {
            AllocatorKind::FreeingBump | AllocatorKind::FreeingBumpTetcore => {
                config.base.unwrap_or(0).next_multiple_of(8)
            }
            _ => 0,
        };
        Ok(Self {
            image,
            kind,
            checking: kind == AllocatorKind::CheckedBump,
            replayer: Replayer::new(heap),
            trail: Trail::off(),
            call_ops: Vec::new(),
            accesses: Vec::new(),
            events: Vec::new(),
            tracker: Tracker::default(),
            hot: None,
            next_id: 0,
            disasm: Disassembler::default(),
            layout: None,
            dirty_since: None,
            reported: BTreeSet::new(),
            stop: None,
            stop_on_first: options.stop_on_first,
            max_ops: options.max_ops,
            heap_floor,
            window: 0..0,
            mem_hooks: Vec::new(),
            fault: None,
            limits: Limits::new(options.max_insns, options.timeout),
            timeout_ms: u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX),
            scratch: Vec::new(),
        })
    }

    /// The heap bytes the guest sees: the model's memory from the heap floor up.
    fn heap_span(&self) -> Range<Addr> {
        let memory = self.replayer.heap().memory();
        memory.base().max(self.heap_floor)..memory.end()
    }

    fn site(&mut self, pc: Addr) -> Site {
        Site {
            pc: Some(pc),
            instruction: self.disasm.text(self.image, pc),
        }
    }

    /// Runs `validate()` if the guest wrote outside its blocks since the last time, and reports
    /// what is new.
    pub fn check_corruption(&mut self) {
        if self.dirty_since.take().is_none() {
            return;
        }
        let step = self.step();
        let findings: Vec<_> = self
            .replayer
            .heap()
            .validate()
            .into_iter()
            .filter(|f| self.reported.insert(f.message.clone()))
            .collect();
        if !findings.is_empty() {
            self.events.push(Event::Corruption { step, findings });
        }
    }

    /// The number of ops recorded: the step the next one gets.
    pub fn step(&self) -> usize {
        self.call_ops.len() + self.accesses.len()
    }

    /// The live block holding all of `[addr, addr + len)`, looked up in the tracker only when
    /// the block the last access fell in does not hold it.
    fn live_holding(&mut self, addr: Addr, len: u64) -> Option<BlockInfo> {
        let holds = |b: &BlockInfo| addr >= b.start && addr.saturating_add(len) <= b.end;
        if let Some(b) = self.hot.filter(holds) {
            return Some(b);
        }
        let found = self.tracker.live_containing(addr, len).copied();
        if found.is_some() {
            self.hot = found;
        }
        found
    }

    /// One guest access to the heap; returns whether the run must stop.
    ///
    /// The hot path of a run: the access is checked by the allocator and (a write) stored in
    /// its memory directly, as replaying its op would, and recorded compactly; nothing is
    /// allocated unless something is reported.
    pub fn on_access(
        &mut self,
        access: Access,
        addr: Addr,
        len: u64,
        value: u64,
        pc: Addr,
    ) -> bool {
        if self.stop.is_some() {
            return true;
        }
        let step = self.step();
        if step >= self.max_ops {
            self.stop = Some(Exit::TraceLimit { ops: self.max_ops });
            return true;
        }
        let inside = self.live_holding(addr, len);
        let freed = match inside {
            Some(_) => None,
            None => self.tracker.freed_containing(addr, len).copied(),
        };
        // An access is recorded against a block by id when replaying that id lands on this
        // address: always for a live block; for a freed one unless a realloc moved its id on
        // (then the id names the new block, and only the address says where the access went).
        let owner = inside
            .or(freed.filter(|b| self.replayer.held(b.id).is_none()))
            .map(|b| Owner {
                id: b.id,
                offset: addr - b.start,
            });
        let stored = len.min(8);
        let value = match access {
            Access::Write => value,
            // Read hooks run before the read: the model holds the bytes about to be read.
            Access::Read => self
                .replayer
                .heap()
                .memory()
                .slice(addr, stored)
                .map_or(0, |b| {
                    let mut word = [0; 8];
                    word[..b.len()].copy_from_slice(b);
                    u64::from_le_bytes(word)
                }),
        };
        // Classified against the heap as the allocator laid it out at the last call, before
        // this access changes any byte of it.
        if inside.is_none() && !self.checking {
            self.warn(step, access, addr, len, pc, freed.is_some());
        }
        // What replaying the op does: check the access, then store a write's bytes.
        let heap = self.replayer.heap_mut();
        let violation = match access {
            Access::Read => heap.check_access(addr, len, access),
            Access::Write => heap.check_access(addr, stored, access),
        };
        if access == Access::Write {
            // A write outside the model's memory is dropped, as replaying it would drop it.
            let _ = heap
                .memory_mut()
                .write(addr, &value.to_le_bytes()[..stored as usize]);
        }
        self.accesses.push(AccessRecord {
            step,
            access,
            addr,
            size: len,
            value,
            pc,
            owner,
        });
        if inside.is_none() && access == Access::Write {
            self.dirty_since.get_or_insert(step);
        }
        let Some(violation) = violation else {
            return false;
        };
        let site = self.site(pc);
        let first_bad = violation.bad.first().map_or(addr, |b| b.range.start);
        let block = violation
            .block
            .as_ref()
            .and_then(|r| self.tracker.starting_at(r.start))
            .or_else(|| self.tracker.concerning(first_bad))
            .copied();
        let report = report::access_report(
            violation.class.name(),
            access,
            addr,
            len,
            first_bad,
            &site,
            block.as_ref(),
        );
        self.events.push(Event::Violation(ViolationEvent {
            step,
            violation,
            site,
            block,
            report,
        }));
        if self.stop_on_first {
            self.stop = Some(Exit::StoppedOnViolation);
        }
        self.stop_on_first
    }

    /// Flags an access outside the program's blocks that the allocator lets through; `freed`
    /// when it lies in a block the program freed.
    fn warn(&mut self, step: usize, access: Access, addr: Addr, len: u64, pc: Addr, freed: bool) {
        let heap = self.replayer.heap();
        let layout = self.layout.get_or_insert_with(|| heap.inspect());
        let hit = layout.block_at(addr);
        let (class, what) = match hit {
            Some(b) if b.header.contains(&addr) => {
                (ViolationClass::HeapBufferOverflow, "the header of")
            }
            Some(b) => match b.state {
                BlockState::Live if addr >= b.payload.end => {
                    (ViolationClass::HeapBufferOverflow, "the footer of")
                }
                BlockState::Live => (
                    ViolationClass::HeapBufferOverflow,
                    "the slack past the requested bytes of",
                ),
                BlockState::Free | BlockState::Freed => {
                    (ViolationClass::UseAfterFree, "the free block")
                }
                BlockState::Guard => (ViolationClass::HeapBufferOverflow, "the guard bytes"),
                BlockState::Padding => (ViolationClass::WildAccess, "alignment padding"),
                BlockState::Metadata => (ViolationClass::WildAccess, "allocator metadata"),
                BlockState::Unused => (ViolationClass::WildAccess, "space never handed out"),
                BlockState::Top => (ViolationClass::WildAccess, "the top chunk"),
                BlockState::Unmapped => (ViolationClass::OutOfHeap, "unmapped address space"),
            },
            None => (ViolationClass::OutOfHeap, "no block of"),
        };
        // Whatever the allocator made of a freed block since (a free chunk, part of top, a
        // new block's header), the program is using memory it gave back.
        let class = if freed {
            ViolationClass::UseAfterFree
        } else {
            class
        };
        let hit_state = hit.map(|b| b.state);
        let hit_range = hit.map(|b| b.range.clone());
        let block = self.tracker.concerning(addr).copied();
        let site = self.site(pc);
        let place = match &hit_range {
            Some(r) => format!("{what} [{:#x}, {:#x})", r.start, r.end),
            None => format!("{what} the heap"),
        };
        let mut report = format!(
            "{class} (warning: {} lets it through): {access} of {len} bytes at {addr:#x} into {place}\n    {}",
            self.kind,
            report::site_line(&site)
        );
        if let Some(b) = &block {
            report.push_str("\n    ");
            report.push_str(&report::locate(addr, b));
        }
        self.events.push(Event::Warning(Warning {
            step,
            access,
            addr,
            size: len,
            class,
            hit: hit_state,
            hit_range,
            block,
            site,
            report,
        }));
    }
}

fn map_error(image: &Image, what: &str, range: Range<Addr>, e: uc_error) -> EmulateError {
    EmulateError::Map {
        origin: image.origin.clone(),
        message: format!(
            "cannot map the {what} at [{:#x}, {:#x}): {e:?}{}",
            range.start,
            range.end,
            if e == uc_error::MAP {
                " (it overlaps another mapping)"
            } else {
                ""
            }
        ),
    }
}

/// Maps the image's segments page by page, giving a page shared by two segments both their
/// rights, and copies the file bytes in.
fn map_image(uc: &mut Uc<'_, '_>, image: &Image) -> Result<(), EmulateError> {
    let mut pages: BTreeMap<Addr, Perms> = BTreeMap::new();
    for s in &image.segments {
        let range = page_floor(s.addr)..page_ceil(s.addr + s.mem_size);
        if (range.end - range.start) / PAGE + pages.len() as u64 > 1 << 18 {
            return Err(EmulateError::Elf {
                origin: image.origin.clone(),
                message: "segments larger than 1 GiB".to_owned(),
            });
        }
        if range.start < layout::RUNTIME_PAGE + PAGE {
            return Err(EmulateError::Elf {
                origin: image.origin.clone(),
                message: format!(
                    "a segment at {:#x} is in the first two pages, which the emulator keeps",
                    s.addr
                ),
            });
        }
        for page in (range.start..range.end).step_by(PAGE as usize) {
            let entry = pages.entry(page).or_default();
            *entry = entry.union(s.perms);
        }
    }
    let mut runs: Vec<(Range<Addr>, Perms)> = Vec::new();
    for (&page, &perms) in &pages {
        match runs.last_mut() {
            Some((r, p)) if r.end == page && *p == perms => r.end = page + PAGE,
            _ => runs.push((page..page + PAGE, perms)),
        }
    }
    for (range, perms) in runs {
        uc.mem_map(range.start, range.end - range.start, prot(perms))
            .map_err(|e| map_error(image, "program", range.clone(), e))?;
    }
    for s in &image.segments {
        uc.mem_write(s.addr, &s.data)
            .map_err(|e| map_error(image, "program", s.addr..s.addr + s.mem_size, e))?;
    }
    Ok(())
}

/// Maps the heap pages the model's memory now covers, re-registers the heap hooks when they
/// changed, and pushes every byte the model changed to Unicorn.
fn sync_heap(uc: &mut Uc<'_, '_>) -> Result<(), String> {
    let span = uc.get_data().heap_span();
    if span.start >= span.end {
        return Ok(());
    }
    let want = page_floor(span.start)..page_ceil(span.end);
    let have = uc.get_data().window.clone();
    let mut new_pages = Vec::new();
    if have.start >= have.end {
        new_pages.push(want.clone());
    } else {
        if want.start < have.start {
            new_pages.push(want.start..have.start);
        }
        if want.end > have.end {
            new_pages.push(have.end..want.end);
        }
    }
    for range in &new_pages {
        uc.mem_map(
            range.start,
            range.end - range.start,
            Prot::READ | Prot::WRITE,
        )
        .map_err(|e| {
            format!(
                "the heap grew to [{:#x}, {:#x}), which cannot be mapped: {e:?} \
                     (does it overlap the program or the stack?)",
                range.start, range.end
            )
        })?;
    }
    if !new_pages.is_empty() {
        let window = if have.start >= have.end {
            want
        } else {
            want.start.min(have.start)..want.end.max(have.end)
        };
        watch(uc, window)?;
    }
    // Push the model's changes: compare chunk by chunk, write the runs that differ.
    let len = (span.end - span.start) as usize;
    let mut guest = std::mem::take(&mut uc.get_data_mut().scratch);
    guest.resize(len, 0);
    uc.mem_read(span.start, &mut guest)
        .map_err(|e| format!("reading the heap back: {e:?}"))?;
    let mut writes: Vec<(Addr, Vec<u8>)> = Vec::new();
    {
        let model = uc
            .get_data()
            .replayer
            .heap()
            .memory()
            .slice(span.start, span.end - span.start)
            .map_err(|e| e.to_string())?;
        let mut at = 0;
        while at < len {
            let end = (at + SYNC_CHUNK).min(len);
            if model[at..end] != guest[at..end] {
                let addr = span.start + at as u64;
                match writes.last_mut() {
                    Some((a, bytes)) if *a + bytes.len() as u64 == addr => {
                        bytes.extend_from_slice(&model[at..end]);
                    }
                    _ => writes.push((addr, model[at..end].to_vec())),
                }
            }
            at = end;
        }
    }
    uc.get_data_mut().scratch = guest;
    for (addr, bytes) in writes {
        uc.mem_write(addr, &bytes)
            .map_err(|e| format!("writing the heap at {addr:#x}: {e:?}"))?;
    }
    Ok(())
}

/// Hooks reads and writes over `window` (only there: see the module docs), replacing the
/// hooks over the old window.
fn watch(uc: &mut Uc<'_, '_>, window: Range<Addr>) -> Result<(), String> {
    let old = std::mem::take(&mut uc.get_data_mut().mem_hooks);
    for id in old {
        uc.remove_hook(id)
            .map_err(|e| format!("removing a heap hook: {e:?}"))?;
    }
    let id = uc
        .add_mem_hook(
            HookType::MEM_READ | HookType::MEM_WRITE,
            window.start,
            window.end - 1,
            on_heap_access,
        )
        .map_err(|e| format!("hooking the heap: {e:?}"))?;
    let machine = uc.get_data_mut();
    machine.mem_hooks.push(id);
    machine.window = window;
    Ok(())
}

fn on_heap_access(uc: &mut Uc<'_, '_>, ty: MemType, addr: u64, size: usize, value: i64) -> bool {
    let access = match ty {
        MemType::READ => Access::Read,
        MemType::WRITE => Access::Write,
        _ => return true,
    };
    // RIP directly: `pc_read` would first ask Unicorn for the mode, a second call per access.
    let pc = uc.reg_read(RegisterX86::RIP).unwrap_or(0);
    if uc
        .get_data_mut()
        .on_access(access, addr, size as u64, value as u64, pc)
    {
        let _ = uc.emu_stop();
    }
    true
}

fn stop_with(uc: &mut Uc<'_, '_>, exit: Exit) {
    uc.get_data_mut().stop.get_or_insert(exit);
    let _ = uc.emu_stop();
}

fn on_heap_call(uc: &mut Uc<'_, '_>, function: HeapFunction) {
    let reg = |uc: &Uc<'_, '_>, r| uc.reg_read(r).unwrap_or(0);
    let args = [
        reg(uc, RegisterX86::RDI),
        reg(uc, RegisterX86::RSI),
        reg(uc, RegisterX86::RDX),
    ];
    let rsp = reg(uc, RegisterX86::RSP);
    let mut word = [0u8; 8];
    if uc.mem_read(rsp, &mut word).is_err() {
        let pc = uc.pc_read().ok();
        return stop_with(
            uc,
            Exit::Fault {
                pc,
                message: format!("{}: no return address at rsp {rsp:#x}", function.name()),
            },
        );
    }
    let ret = u64::from_le_bytes(word);
    let machine = uc.get_data_mut();
    let call = machine
        .disasm
        .call_before(machine.image, ret)
        .map(|(pc, _)| pc);
    let answer = machine.heap_call(function, args, call);
    if let Some((out, ptr)) = answer.store {
        let window = uc.get_data().window.clone();
        if window.contains(&out) {
            // The allocator stores through a pointer into the heap: a heap write like any.
            let pc = call.unwrap_or(ret);
            uc.get_data_mut().on_access(Access::Write, out, 8, ptr, pc);
        } else if uc.mem_write(out, &ptr.to_le_bytes()).is_err() {
            return stop_with(
                uc,
                Exit::Fault {
                    pc: call,
                    message: format!("posix_memalign: cannot store the pointer at {out:#x}"),
                },
            );
        }
    }
    if let Err(message) = sync_heap(uc) {
        return stop_with(uc, Exit::Fault { pc: call, message });
    }
    let set = [
        (RegisterX86::RAX, answer.value),
        (RegisterX86::RSP, rsp.wrapping_add(8)),
        (RegisterX86::RIP, ret),
    ];
    for (r, v) in set {
        if uc.reg_write(r, v).is_err() {
            return stop_with(
                uc,
                Exit::Fault {
                    pc: call,
                    message: format!("cannot return from {}", function.name()),
                },
            );
        }
    }
    if uc.get_data().stop.is_some() {
        let _ = uc.emu_stop();
    }
}

/// A translated block is about to run: count it against the budget, now and then look at the
/// clock (see [`super::limits`]).
fn on_block(uc: &mut Uc<'_, '_>, addr: Addr, size: u32) {
    let machine = uc.get_data_mut();
    let image = machine.image;
    match machine
        .limits
        .on_block(addr, size, || image.code_at(addr, size as usize))
    {
        Verdict::Run => {}
        Verdict::TimedOut => {
            let ms = machine.timeout_ms;
            stop_with(uc, Exit::Timeout { ms });
        }
        // Not an exit: the run resumes with Unicorn counting (see `run`).
        Verdict::BudgetTail => {
            let _ = uc.emu_stop();
        }
    }
}

fn on_bad_memory(uc: &mut Uc<'_, '_>, ty: MemType, addr: u64, size: usize, _value: i64) -> bool {
    let what = match ty {
        MemType::READ_UNMAPPED => "READ of unmapped memory",
        MemType::WRITE_UNMAPPED => "WRITE to unmapped memory",
        MemType::FETCH_UNMAPPED => "jump to unmapped memory",
        MemType::READ_PROT => "READ of unreadable memory",
        MemType::WRITE_PROT => "WRITE to read-only memory",
        MemType::FETCH_PROT => "jump to non-executable memory",
        _ => "bad memory access",
    };
    let pc = uc.pc_read().ok();
    let null = if addr < PAGE { " (a null pointer)" } else { "" };
    uc.get_data_mut().fault = Some((pc, format!("{what}: {size} bytes at {addr:#x}{null}")));
    false
}

/// Sets up the machine, runs the program, and collects the run.
pub fn run(
    image: &Image,
    kind: AllocatorKind,
    config: &HeapConfig,
    options: &Options,
) -> Result<Run, EmulateError> {
    if options.args.len() > 6 {
        return Err(EmulateError::Options(format!(
            "{} arguments given; at most 6 go in registers",
            options.args.len()
        )));
    }
    let entry = image.resolve(&options.entry)?;
    let machine = Machine::new(image, kind, config, options)?;
    let unicorn_error = |what: &str, e: uc_error| EmulateError::Map {
        origin: image.origin.clone(),
        message: format!("{what}: {e:?}"),
    };
    let mut uc = Unicorn::new_with_data(Arch::X86, Mode::MODE_64, machine)
        .map_err(|e| unicorn_error("starting Unicorn", e))?;
    map_image(&mut uc, image)?;
    let runtime = layout::RUNTIME_PAGE..layout::RUNTIME_PAGE + PAGE;
    uc.mem_map(runtime.start, PAGE, Prot::READ | Prot::EXEC)
        .map_err(|e| map_error(image, "runtime page", runtime.clone(), e))?;
    let mut stubs = vec![0xf4u8; PAGE as usize]; // hlt
    for f in HeapFunction::ALL {
        let at = (layout::stub_addr(f) - layout::RUNTIME_PAGE) as usize;
        if let Some(b) = stubs.get_mut(at) {
            *b = 0xc3; // ret
        }
    }
    uc.mem_write(runtime.start, &stubs)
        .map_err(|e| map_error(image, "runtime page", runtime.clone(), e))?;
    let stack = layout::STACK_TOP - layout::STACK_SIZE..layout::STACK_TOP;
    uc.mem_map(stack.start, layout::STACK_SIZE, Prot::READ | Prot::WRITE)
        .map_err(|e| map_error(image, "stack", stack.clone(), e))?;
    sync_heap(&mut uc).map_err(|message| EmulateError::Map {
        origin: image.origin.clone(),
        message,
    })?;
    for f in HeapFunction::ALL {
        if let Some(&addr) = image.symbols.get(f.name()) {
            uc.add_code_hook(addr, addr, move |uc, _, _| on_heap_call(uc, f))
                .map_err(|e| unicorn_error("hooking the heap functions", e))?;
        }
    }
    uc.add_mem_hook(HookType::MEM_INVALID, 1, 0, on_bad_memory)
        .map_err(|e| unicorn_error("hooking faults", e))?;
    uc.add_insn_invalid_hook(|uc| {
        let pc = uc.pc_read().ok();
        uc.get_data_mut().fault = Some((pc, "invalid instruction".to_owned()));
        false
    })
    .map_err(|e| unicorn_error("hooking invalid instructions", e))?;
    uc.add_intr_hook(|uc, number| {
        let pc = uc.pc_read().ok();
        let what = match number {
            0 => "divide error".to_owned(),
            3 => "breakpoint (int3)".to_owned(),
            6 => "invalid opcode".to_owned(),
            13 => "general protection fault".to_owned(),
            14 => "page fault".to_owned(),
            n => format!("interrupt {n}"),
        };
        stop_with(uc, Exit::Fault { pc, message: what });
    })
    .map_err(|e| unicorn_error("hooking interrupts", e))?;
    uc.add_insn_sys_hook(X86Insn::SYSCALL, 1, 0, |uc| {
        let pc = uc.pc_read().ok();
        stop_with(
            uc,
            Exit::Fault {
                pc,
                message: "system call (a freestanding program has no kernel)".to_owned(),
            },
        );
    })
    .map_err(|e| unicorn_error("hooking system calls", e))?;
    let rsp = layout::STACK_TOP - 0x1000 - 8;
    uc.mem_write(rsp, &layout::SENTINEL.to_le_bytes())
        .map_err(|e| map_error(image, "stack", stack.clone(), e))?;
    let arg_regs = [
        RegisterX86::RDI,
        RegisterX86::RSI,
        RegisterX86::RDX,
        RegisterX86::RCX,
        RegisterX86::R8,
        RegisterX86::R9,
    ];
    for (r, &v) in arg_regs.iter().zip(&options.args) {
        uc.reg_write(*r, v)
            .map_err(|e| unicorn_error("setting arguments", e))?;
    }
    uc.reg_write(RegisterX86::RSP, rsp)
        .map_err(|e| unicorn_error("setting the stack", e))?;
    // The budget and the clock are watched from a block hook, not by emu_start (see
    // `limits`): Unicorn neither counts nor times here, until the budget's last few
    // instructions, which it counts one by one.
    uc.add_block_hook(1, 0, on_block)
        .map_err(|e| unicorn_error("hooking blocks for the budget and the clock", e))?;
    // The clock starts now, the setup done.
    uc.get_data_mut().limits = Limits::new(options.max_insns, options.timeout);
    let mut result = uc.emu_start(entry, layout::SENTINEL, 0, 0);
    // The instructions that were left when the run paused for the budget's tail, if it did.
    let mut tail_left = None;
    if result.is_ok() && uc.get_data().stop.is_none() && uc.get_data().limits.at_budget_tail() {
        let remaining = uc.get_data().limits.remaining();
        tail_left = Some(remaining);
        if remaining > 0 {
            let at = uc.pc_read().unwrap_or(0);
            // Unicorn's count is a code hook: blocks translated without it must go.
            result = uc.ctl_flush_tb().and_then(|()| {
                let count = usize::try_from(remaining).unwrap_or(usize::MAX);
                uc.emu_start(at, layout::SENTINEL, 0, count)
            });
        }
    }
    let pc = uc.pc_read().ok();
    let rax = uc.reg_read(RegisterX86::RAX).unwrap_or(0);
    let machine = uc.get_data_mut();
    let exit = if let Some(exit) = machine.stop.take() {
        exit
    } else {
        match result {
            Err(uc_error::INSN_INVALID) => Exit::InvalidInstruction {
                pc: machine
                    .fault
                    .take()
                    .and_then(|(p, _)| p)
                    .or(pc)
                    .unwrap_or(0),
            },
            Err(e) => {
                let (fault_pc, message) = machine
                    .fault
                    .take()
                    .unwrap_or((pc, format!("Unicorn stopped: {e:?}")));
                Exit::Fault {
                    pc: fault_pc.or(pc),
                    message,
                }
            }
            Ok(()) if pc == Some(layout::SENTINEL) => Exit::Returned { value: rax },
            // Otherwise Unicorn stops without an error at a `hlt`, and when its count runs out,
            // which it only keeps in the budget's tail; there a `hlt` is told by the byte
            // before the pc.
            Ok(()) => {
                let after_hlt = pc
                    .and_then(|pc| pc.checked_sub(1))
                    .filter(|&at| image.code_at(at, 1) == [0xf4]);
                match (tail_left, after_hlt) {
                    (Some(0), _) | (Some(_), None) => Exit::BudgetExhausted {
                        max_insns: options.max_insns,
                    },
                    (Some(_), Some(at)) => Exit::Fault {
                        pc: Some(at),
                        message: "hlt".to_owned(),
                    },
                    (None, at) => Exit::Fault {
                        pc: at.or(pc),
                        message: "hlt".to_owned(),
                    },
                }
            }
        }
    };
    let step = machine.step();
    machine.dirty_since.get_or_insert(step);
    machine.check_corruption();
    machine.events.push(Event::Exit {
        step,
        exit: exit.clone(),
    });
    // Hand the allocator out: a placeholder heap (an empty bump arena) takes its place.
    let placeholder = AllocatorKind::Bump
        .build(&HeapConfig {
            size: Some(0),
            ..HeapConfig::default()
        })
        .map_err(EmulateError::Config)?;
    let replayer = std::mem::replace(&mut machine.replayer, Replayer::new(placeholder));
    Ok(Run {
        kind,
        config: config.clone(),
        call_ops: std::mem::take(&mut machine.call_ops),
        accesses: std::mem::take(&mut machine.accesses),
        events: std::mem::take(&mut machine.events),
        exit,
        heap: replayer.into_heap(),
    })
}

//! `nutmeg-pool`: the heap of the Nutmeg machine (`sfkleach/nutmeg-run`, `src/heap.cpp`).
//!
//! The Nutmeg heap is one `Pool` of 64-bit cells (`POOL_SIZE_CELLS` = 131,072 cells, 1 MiB),
//! handed out by bumping `next_free_` a whole number of cells at a time. There is no free and
//! no garbage collector yet: a `free` is recorded and ignored, as in the bump model, and when
//! the next object does not fit `Pool::allocate` throws `std::bad_alloc` (an out-of-memory
//! error here). `Heap::init_datakeys` first places three 5-cell datakeys at the start of the
//! pool: the self-referential DatakeyDatakey (cell 0), the StringDatakey (cell 5) and the
//! FunctionDatakey (cell 10), so the first object a program gets starts at cell 15.
//!
//! # Object layout
//!
//! Every object is laid out as `docs/heap-object-layout.md` says: its *position 0* is the
//! datakey cell, a pointer tagged `001` to the datakey object that gives its type; lengths sit
//! at negative positions as integers tagged `x00` (shifted left by 2); the object pointer is the
//! address of position 0, as upstream's object pointers are.
//!
//! | object      | cells                                                                     |
//! |-------------|---------------------------------------------------------------------------|
//! | datakey     | 0 datakey (-> DatakeyDatakey), 1 Flavour, 2 NumWords, 3 NumCells, 4 BitWidth |
//! | string      | -1 length L (bytes, NUL included), 0 datakey (-> StringDatakey), 1.. bytes |
//! | function    | -2 N (instruction words), -1 L (T-block, 0), 0 datakey, 1 counts, 2.. words |
//! | binarray    | -1 length L (bytes), 0 datakey (-> BinarrayDatakey), 1.. bytes            |
//!
//! The counts cell of a function packs `nparams` (bits 0-15), `nextras = nlocals - nparams`
//! (bits 16-31) and `nlocals` (bits 32-47); bits 48-63 are reserved. Flavour numbers are
//! upstream's `enum class Flavour`: Datakey 0, Record 1, Vector 2, Binarray 3, Function 4.
//!
//! # Where upstream's code differs from its doc, and which one this model follows
//!
//! Read: `docs/heap-object-layout.md` (newest stored version, commit `dbc4c2c`, and the older
//! `98f1c2e`, `a103bef`, `3978f70`), `src/heap.cpp`/`heap.hpp` (newest stored `a647533`, older
//! `28458fc`, `801b3ef`), `src/value.hpp`, `src/machine.cpp`, `docs/specs/tagging-scheme.md`
//! and `docs/tasks/2025-11-30-13:00-implement-heap.md`.
//!
//! 1. **Datakey field order.** The doc puts the datakey at position 0, then Flavour, NumWords,
//!    NumCells, BitWidth. The code writes Flavour in the first cell, BitWidth (StringDatakey: 8)
//!    in the second, leaves two cells unused and puts the datakey in the *last* (fifth) cell, and
//!    its datakey pointers point at the first (Flavour) cell, so for datakeys "the untagged
//!    pointer always points to a datakey" does not hold. *Followed the doc.* Both use 5 cells,
//!    so the datakeys start at cells 0, 5 and 10 either way.
//! 2. **Flavour of the String- and FunctionDatakey.** The code writes Flavour = Datakey (0) in
//!    all three bootstrap datakeys. In the doc the Flavour of a datakey describes its instances
//!    (the DatakeyDatakey has Flavour 0 because its instances are datakeys) and the heap task
//!    says strings are binarrays with BitWidth 8. *Followed the doc:* StringDatakey has Flavour
//!    Binarray (3) and BitWidth 8, FunctionDatakey has Flavour Function (4).
//! 3. **DatakeyDatakey's NumWords.** The doc's table gives NumWords 1, NumCells 0; the code
//!    leaves them 0. *Followed the doc* (1), though the doc is not consistent with itself here:
//!    its datakey layout has four raw fields after the datakey. The heap walk sizes datakey
//!    objects by their flavour (5 cells), not by NumWords.
//! 4. **Tagged datakey cells.** The doc says the datakey cell is tagged (pointer tag `001`); the
//!    code stores raw, untagged pointers there (`obj_ptr[0].ptr = string_datakey_`, and
//!    `is_function_object` compares raw pointers). *Followed the doc:* `address | 1`.
//! 5. **Tagged string length.** The doc says the length at position -1 is a tagged integer
//!    (`x00`); the code stores the raw byte count (`base[0].u64 = char_count`, so a length of 6
//!    carries the float tag `10`). The function lengths N and L are tagged in both. *Followed
//!    the doc:* `L << 2`. This is what lets a heap walk tell length cells (`x00`) from datakey
//!    cells (`001`), which [`Allocator::validate`] relies on.
//! 6. **String terminator.** The doc says nothing of a NUL; `Machine::allocate_string` passes
//!    `size() + 1` bytes and the heap copies the NUL and counts it in the length. *Followed the
//!    code:* a string of k bytes has length k + 1 and takes `2 + ceil((k + 1) / 8)` cells.
//! 7. **Function counts cell.** The newest doc and code agree on the 16-bit
//!    nparams/nextras/nlocals packing above; older versions of both put nlocals in the low and
//!    nargs in the high 32 bits ("position 1.5"). *Followed the newest.* Upstream masks
//!    silently; here the counts are `u16` and `nargs > nlocals` (a negative nextras) is refused.
//! 8. **T-block.** The doc has a T-block of L 32-bit entries after the instructions; the code
//!    omits it and writes L = 0, as the heap task asks. *Followed the code* (L = 0); the heap
//!    walk still sizes a function with `ceil(L / 2)` T-block cells, as the doc would.
//! 9. **Odd integers.** `docs/specs/tagging-scheme.md` says odd integers use tag `001`; the code
//!    (`make_tagged_int`, a shift left by 2) gives them `100`, and `001` is the pointer tag.
//!    *Followed the code.*
//! 10. **Binarray entries.** The doc's summary calls binarrays "arrays of raw 64-bit fields" but
//!     its table gives entries of BitWidth bits. *Followed the table* (strings: 8-bit entries).
//!
//! # What this model adds
//!
//! * **Plain byte allocations.** `Allocator::allocate(size, align)` makes a binarray of `size`
//!   8-bit entries. Upstream's bootstrap has no datakey for plain binarrays (the StringDatakey
//!   marks strings), so the first byte allocation creates a **BinarrayDatakey** (Flavour
//!   Binarray, BitWidth 8) just before it, the way upstream creates datakeys: 5 cells bumped
//!   from the pool, its datakey cell pointing at the DatakeyDatakey. It is created only when it
//!   and the object both fit, so a refused request changes nothing.
//! * **What `allocate` returns.** Not the object pointer (position 0, the datakey cell) but the
//!   address of position 1, where the payload bytes start: `size` bytes from there belong to
//!   the object, so a C-like trace can write them without clobbering the datakey. The object
//!   pointer is the returned address minus 8. [`NutmegPool::allocate_string`] and
//!   [`NutmegPool::allocate_function`] return object pointers, as upstream's do.
//! * **Alignment.** Objects are cell-aligned; a request above 8 is `Unsupported`.
//! * **Realloc.** Upstream has none: a byte block gets allocate + copy + ignored free, as the
//!   trait's default would do; a string or function object is refused as `Unsupported`.
//! * **Memory.** The pool lives at `HeapConfig.base` (default `0x3000_0000`, which must be
//!   8-byte aligned for the pointer tags) and is `HeapConfig.size` rounded down to whole cells
//!   (default 131,072 cells); like upstream's `std::vector`, it is all there and zeroed from the
//!   start.
//!
//! # Inspect and validate
//!
//! [`Allocator::inspect`] shows each object as one block: its header is the length cells at
//! negative positions plus the datakey cell; its payload is everything from position 1 on (the
//! bytes of a string or binarray, the counts cell and code of a function, the four fields of a
//! datakey). Requested sizes: a string's length (NUL included), a function's counts cell plus
//! its words (`8 + 8N`), a byte block's `size`. Datakeys are `Metadata`, named in the class;
//! freed objects are `Freed`; cells past `next_free` are `Unused`, and a `next_free` marker
//! points at the next free cell. [`Allocator::validate`] walks the cells from the pool's start
//! as a garbage collector would: `x00` cells are lengths, the first `001` cell is the datakey,
//! which must point to a datakey met earlier in the walk (the DatakeyDatakey to itself); the
//! datakey's flavour must match the number of length cells, the lengths must keep the object
//! below `next_free`, and the walk must end exactly there. Each object is then checked against
//! what the model placed and the ledger.
//!
//! Allocation reads nothing back from the pool (upstream keeps `next_free_` outside it), so
//! corrupt cells never change where the next object goes; [`Allocator::inspect`] and
//! [`Allocator::validate`] decode every object from the cells.

use crate::allocator::{AllocError, Allocator, ErrorKind, Trail, bytes};
use crate::layout::{
    Block, BlockState, Field, Finding, HeapLayout, Ledger, Marker, NativeStat, Stats,
};
use crate::memory::{Memory, OutOfBounds};
use crate::trace::Op;
use crate::{Addr, AllocatorKind, ConfigError, HeapConfig, say};

/// Default address of the pool's first cell.
pub const DEFAULT_BASE: Addr = 0x3000_0000;
/// Bytes in a cell.
pub const CELL: u64 = 8;
/// Upstream's `POOL_SIZE_CELLS`: 1 MiB of 8-byte cells.
pub const DEFAULT_CELLS: u64 = 131_072;
/// Cells the three bootstrap datakeys take at the start of the pool.
pub const BOOTSTRAP_CELLS: u64 = 3 * DATAKEY_CELLS;
/// Cells of one datakey object.
pub const DATAKEY_CELLS: u64 = 5;
/// Largest pool this model builds (it is materialised up front).
pub const MAX_SIZE: u64 = 1 << 30;

/// Pointer tag (`001`).
pub const TAG_PTR: u64 = 0b001;
const TAG_MASK_3BIT: u64 = 0b111;
const TAG_MASK_2BIT: u64 = 0b11;
/// Findings after which `validate` stops looking.
const MAX_FINDINGS: usize = 64;
/// Characters of a string shown in previews.
const PREVIEW_CHARS: usize = 40;

/// `address | 001`: a pointer as a Nutmeg cell holds it.
pub fn tag_ptr(addr: Addr) -> u64 {
    addr | TAG_PTR
}

/// `n << 2`: a (non-negative) integer as a Nutmeg cell holds it.
pub fn tag_int(n: u64) -> u64 {
    n << 2
}

/// Whether a cell holds a pointer (tag `001`).
pub fn is_tagged_ptr(cell: u64) -> bool {
    cell & TAG_MASK_3BIT == TAG_PTR
}

/// Whether a cell holds an integer (tag `x00`).
pub fn is_tagged_int(cell: u64) -> bool {
    cell & TAG_MASK_2BIT == 0
}

/// The address in a pointer cell.
pub fn untag_ptr(cell: u64) -> Addr {
    cell & !TAG_MASK_3BIT
}

/// The integer in an integer cell (arithmetic shift, as `as_detagged_int`).
pub fn untag_int(cell: u64) -> i64 {
    (cell as i64) >> 2
}

/// The `enum class Flavour` of `heap.hpp`: what kind of object a datakey describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Datakey objects (the DatakeyDatakey's instances).
    Datakey = 0,
    /// Fixed records of raw words and tagged cells.
    Record = 1,
    /// Records followed by a counted run of tagged cells.
    Vector = 2,
    /// Records followed by a counted run of BitWidth-bit entries (strings are these).
    Binarray = 3,
    /// Function objects.
    Function = 4,
}

impl Flavour {
    /// The flavour a raw Flavour field holds, if it is one.
    pub fn from_raw(raw: u64) -> Option<Flavour> {
        Some(match raw {
            0 => Flavour::Datakey,
            1 => Flavour::Record,
            2 => Flavour::Vector,
            3 => Flavour::Binarray,
            4 => Flavour::Function,
            _ => return None,
        })
    }

    /// Upstream's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Datakey => "Datakey",
            Flavour::Record => "Record",
            Flavour::Vector => "Vector",
            Flavour::Binarray => "Binarray",
            Flavour::Function => "Function",
        }
    }

    /// Length cells at negative positions.
    fn length_cells(self) -> u64 {
        match self {
            Flavour::Datakey | Flavour::Record => 0,
            Flavour::Vector | Flavour::Binarray => 1,
            Flavour::Function => 2,
        }
    }
}

/// The datakeys this model creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datakey {
    /// The datakey of every datakey, including itself (cell 0).
    DatakeyDatakey,
    /// The datakey of strings (cell 5).
    StringDatakey,
    /// The datakey of function objects (cell 10).
    FunctionDatakey,
    /// The datakey of plain byte binarrays (this model's addition, made on first use).
    BinarrayDatakey,
}

impl Datakey {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Datakey::DatakeyDatakey => "DatakeyDatakey",
            Datakey::StringDatakey => "StringDatakey",
            Datakey::FunctionDatakey => "FunctionDatakey",
            Datakey::BinarrayDatakey => "BinarrayDatakey",
        }
    }

    /// Flavour, NumWords, NumCells and BitWidth as it is created with them.
    fn fields(self) -> [u64; 4] {
        match self {
            Datakey::DatakeyDatakey => [Flavour::Datakey as u64, 1, 0, 0],
            Datakey::StringDatakey | Datakey::BinarrayDatakey => {
                [Flavour::Binarray as u64, 0, 0, 8]
            }
            Datakey::FunctionDatakey => [Flavour::Function as u64, 0, 0, 0],
        }
    }
}

/// What an object in the pool is, as the model placed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A datakey object.
    Datakey(Datakey),
    /// A string (binarray of BitWidth 8 under the StringDatakey).
    String,
    /// A function object.
    Function,
    /// A plain byte allocation (binarray of BitWidth 8 under the BinarrayDatakey).
    Bytes,
}

impl ObjectKind {
    fn length_cells(self) -> u64 {
        match self {
            ObjectKind::Datakey(_) => 0,
            ObjectKind::String | ObjectKind::Bytes => 1,
            ObjectKind::Function => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ObjectKind::Datakey(d) => d.name(),
            ObjectKind::String => "string",
            ObjectKind::Function => "function",
            ObjectKind::Bytes => "binarray",
        }
    }
}

/// One object the model placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placed {
    /// First cell (the lowest length cell, or the datakey cell).
    start: Addr,
    /// Cells it takes.
    cells: u64,
    kind: ObjectKind,
    /// Bytes asked for (0 for datakeys).
    requested: u64,
    freed: bool,
}

impl Placed {
    /// Position 0, the datakey cell: the object pointer.
    fn object(&self) -> Addr {
        self.start + self.kind.length_cells() * CELL
    }

    /// What the caller was handed: the payload start for byte blocks, else the object pointer.
    fn handle(&self) -> Addr {
        match self.kind {
            ObjectKind::Bytes => self.object() + CELL,
            _ => self.object(),
        }
    }

    fn end(&self) -> Addr {
        self.start + self.cells * CELL
    }
}

/// The shape the cells of one object give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Key {
        flavour: u64,
        num_words: u64,
        num_cells: u64,
        bit_width: u64,
    },
    Record,
    Vector {
        len: u64,
    },
    Binarray {
        len: u64,
    },
    Function {
        n: u64,
        l: u64,
        counts: u64,
    },
}

/// One object as decoded from the cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decoded {
    start: Addr,
    /// Position 0.
    object: Addr,
    end: Addr,
    /// Where the datakey cell points.
    datakey: Addr,
    shape: Shape,
}

/// The Nutmeg machine's `Heap`: one pool, bootstrap datakeys, typed bump allocation.
#[derive(Debug, Clone)]
pub struct NutmegPool {
    memory: Memory,
    base: Addr,
    /// Pool size in cells.
    cells: u64,
    /// Upstream's `Pool::next_free_`: index of the next free cell.
    next_free: u64,
    /// Objects in address order (the pool only ever appends).
    objects: Vec<Placed>,
    binarray_datakey: Option<Addr>,
    ledger: Ledger,
    ignored_frees: u64,
}

fn corrupted(e: &OutOfBounds) -> AllocError {
    AllocError::new(ErrorKind::Corrupted, e.to_string())
}

fn bad_alloc(kind: ErrorKind) -> AllocError {
    AllocError::new(kind, "std::bad_alloc")
}

/// `1 data cell`, `3 data cells`.
fn data_cells_words(n: u64) -> String {
    if n == 1 {
        "1 data cell".to_owned()
    } else {
        format!("{n} data cells")
    }
}

/// A short, escaped preview of a text.
fn preview(text: &str) -> String {
    let mut out: String = text.chars().take(PREVIEW_CHARS).collect();
    if text.chars().nth(PREVIEW_CHARS).is_some() {
        out.push('…');
    }
    format!("\"{}\"", out.escape_debug())
}

/// A cell explained by its tag, as `cell_to_string` would.
fn describe_cell(cell: u64) -> String {
    match cell & TAG_MASK_3BIT {
        0b000 | 0b100 => format!("tagged int {}", untag_int(cell)),
        0b010 | 0b110 => format!("tagged float (raw {cell:#x})"),
        0b001 => format!("tagged pointer -> {:#x}", untag_ptr(cell)),
        0b111 => match cell {
            0x7 => "false".to_owned(),
            0xf => "true".to_owned(),
            0x17 => "nil".to_owned(),
            0x1f => "undef".to_owned(),
            _ => format!("special literal {cell:#x}"),
        },
        _ => format!("reserved tag (raw {cell:#x})"),
    }
}

impl NutmegPool {
    /// A pool at `config.base` (default `0x3000_0000`) of `config.size` bytes rounded down to
    /// cells (default 131,072 cells, 1 MiB), with the three bootstrap datakeys in place.
    pub fn from_config(config: &HeapConfig) -> Result<Self, ConfigError> {
        let kind = AllocatorKind::NutmegPool;
        let base = config.base.unwrap_or(DEFAULT_BASE);
        if !base.is_multiple_of(CELL) {
            return Err(ConfigError::invalid(
                kind,
                format!(
                    "pool base {base:#x} is not 8-byte aligned: pointer tags need the low 3 bits"
                ),
            ));
        }
        let size = config.size.or(config.max).unwrap_or(DEFAULT_CELLS * CELL);
        if size > MAX_SIZE {
            return Err(ConfigError::invalid(kind, "pool above 1 GiB"));
        }
        let cells = size / CELL;
        if cells < BOOTSTRAP_CELLS {
            return Err(ConfigError::invalid(
                kind,
                format!(
                    "a pool of {cells} cells cannot hold the {BOOTSTRAP_CELLS} cells of the bootstrap datakeys"
                ),
            ));
        }
        if base.checked_add(cells * CELL).is_none() {
            return Err(ConfigError::invalid(
                kind,
                format!("pool at {base:#x} runs past the end of the address space"),
            ));
        }
        let mut pool = Self {
            memory: Memory::new(base, cells * CELL),
            base,
            cells,
            next_free: 0,
            objects: Vec::new(),
            binarray_datakey: None,
            ledger: Ledger::default(),
            ignored_frees: 0,
        };
        let mut quiet = Trail::off();
        for key in [
            Datakey::DatakeyDatakey,
            Datakey::StringDatakey,
            Datakey::FunctionDatakey,
        ] {
            pool.make_datakey(key, &mut quiet)
                .map_err(|e| ConfigError::invalid(kind, e.message))?;
        }
        Ok(pool)
    }

    /// The DatakeyDatakey's object pointer (the pool's first cell).
    pub fn datakey_datakey(&self) -> Addr {
        self.base
    }

    /// The StringDatakey's object pointer (cell 5).
    pub fn string_datakey(&self) -> Addr {
        self.base + DATAKEY_CELLS * CELL
    }

    /// The FunctionDatakey's object pointer (cell 10).
    pub fn function_datakey(&self) -> Addr {
        self.base + 2 * DATAKEY_CELLS * CELL
    }

    /// The BinarrayDatakey's object pointer, once the first byte allocation has made it.
    pub fn binarray_datakey(&self) -> Option<Addr> {
        self.binarray_datakey
    }

    /// Upstream's `next_free_`: the index of the next free cell.
    pub fn next_free(&self) -> u64 {
        self.next_free
    }

    /// Address of the next free cell.
    pub fn next_free_addr(&self) -> Addr {
        self.cell_addr(self.next_free)
    }

    /// Pool size in cells.
    pub fn capacity_cells(&self) -> u64 {
        self.cells
    }

    /// The object pointer (datakey cell) of the byte block `allocate` returned as `payload`.
    pub fn object_of(&self, payload: Addr) -> Option<Addr> {
        self.find(payload)
            .filter(|o| o.kind == ObjectKind::Bytes)
            .map(|o| o.object())
    }

    fn cell_addr(&self, index: u64) -> Addr {
        self.base + index * CELL
    }

    fn end(&self) -> Addr {
        self.cell_addr(self.cells)
    }

    fn write_cell(&mut self, addr: Addr, value: u64) -> Result<(), AllocError> {
        self.memory
            .write_u64(addr, value)
            .map_err(|e| corrupted(&e))
    }

    /// Refuses a request of `n` cells that does not fit, as `Pool::allocate` does.
    fn check_room(&self, n: Option<u64>, trail: &mut Trail) -> Result<u64, AllocError> {
        let left = self.cells - self.next_free;
        match n {
            Some(n) if n <= left => Ok(n),
            Some(n) if n <= self.cells => {
                say!(
                    trail,
                    "need {n} cells at cell {}, but only {left} remain before the pool's end {:#x}: std::bad_alloc",
                    self.next_free,
                    self.end()
                );
                Err(bad_alloc(ErrorKind::OutOfMemory))
            }
            _ => {
                say!(
                    trail,
                    "need more cells than the whole pool has ({}): std::bad_alloc",
                    self.cells
                );
                Err(bad_alloc(ErrorKind::TooLarge))
            }
        }
    }

    /// Bumps `next_free` by `n` cells that [`Self::check_room`] said fit; returns the first.
    fn take(&mut self, n: u64, trail: &mut Trail) -> Addr {
        let start = self.next_free_addr();
        say!(
            trail,
            "bump {n} cells ({}): next_free {} -> {} ({start:#x} -> {:#x})",
            bytes(n * CELL),
            self.next_free,
            self.next_free + n,
            self.cell_addr(self.next_free + n)
        );
        self.next_free += n;
        self.ledger.set_footprint(self.next_free * CELL);
        start
    }

    /// Places a datakey object, the way `init_datakeys` does: 5 cells at the bump pointer.
    fn make_datakey(&mut self, key: Datakey, trail: &mut Trail) -> Result<Addr, AllocError> {
        self.check_room(Some(DATAKEY_CELLS), trail)?;
        let at = self.take(DATAKEY_CELLS, trail);
        // The DatakeyDatakey is the first object, so it points at itself.
        let datakey = if key == Datakey::DatakeyDatakey {
            at
        } else {
            self.base
        };
        self.write_cell(at, tag_ptr(datakey))?;
        for (i, value) in (1..).zip(key.fields()) {
            self.write_cell(at + i * CELL, value)?;
        }
        let [flavour, num_words, num_cells, bit_width] = key.fields();
        say!(
            trail,
            "{} at {at:#x}: datakey -> DatakeyDatakey, Flavour {flavour}, NumWords {num_words}, NumCells {num_cells}, BitWidth {bit_width}",
            key.name()
        );
        self.objects.push(Placed {
            start: at,
            cells: DATAKEY_CELLS,
            kind: ObjectKind::Datakey(key),
            requested: 0,
            freed: false,
        });
        Ok(at)
    }

    fn record(&mut self, placed: Placed) {
        self.objects.push(placed);
        self.ledger
            .on_alloc(placed.handle(), placed.requested, placed.cells * CELL);
    }

    /// `Machine::allocate_string`: a string object holding `text` and a NUL, under the
    /// StringDatakey. Returns the object pointer (the datakey cell).
    pub fn allocate_string(&mut self, text: &str, trail: &mut Trail) -> Result<Addr, AllocError> {
        // Upstream counts the NUL it copies in the length.
        let char_count = text.len() as u64 + 1;
        let data_cells = char_count.div_ceil(CELL);
        say!(
            trail,
            "string {}: {} + NUL = {} -> {}, plus length and datakey",
            preview(text),
            bytes(text.len() as u64),
            bytes(char_count),
            data_cells_words(data_cells)
        );
        let total = self.check_room(data_cells.checked_add(2), trail)?;
        let start = self.take(total, trail);
        let object = start + CELL;
        self.write_cell(start, tag_int(char_count))?;
        self.write_cell(object, tag_ptr(self.string_datakey()))?;
        self.memory
            .write(object + CELL, text.as_bytes())
            .map_err(|e| corrupted(&e))?;
        self.memory
            .write(object + CELL + text.len() as u64, &[0])
            .map_err(|e| corrupted(&e))?;
        say!(
            trail,
            "length {char_count} at {start:#x}, datakey -> StringDatakey at {object:#x}, bytes from {:#x}; object pointer {object:#x}",
            object + CELL
        );
        self.record(Placed {
            start,
            cells: total,
            kind: ObjectKind::String,
            requested: char_count,
            freed: false,
        });
        Ok(object)
    }

    /// `Machine::allocate_function`: a function object with `words` as its instruction words,
    /// under the FunctionDatakey. `nlocals` counts the arguments too. Returns the object
    /// pointer (the datakey cell).
    pub fn allocate_function(
        &mut self,
        words: &[u64],
        nlocals: u16,
        nargs: u16,
        trail: &mut Trail,
    ) -> Result<Addr, AllocError> {
        if nargs > nlocals {
            say!(
                trail,
                "{nargs} arguments but {nlocals} locals: nlocals counts the arguments, so nextras would be negative"
            );
            return Err(AllocError::new(
                ErrorKind::Unsupported,
                format!("function with nargs {nargs} > nlocals {nlocals}"),
            ));
        }
        let n = words.len() as u64;
        say!(
            trail,
            "function of {n} instruction words, nlocals {nlocals}, nargs {nargs}: N, L, datakey, counts + {n} words"
        );
        let total = self.check_room(n.checked_add(4), trail)?;
        let start = self.take(total, trail);
        let object = start + 2 * CELL;
        let counts =
            u64::from(nargs) | (u64::from(nlocals - nargs) << 16) | (u64::from(nlocals) << 32);
        self.write_cell(start, tag_int(n))?;
        self.write_cell(start + CELL, tag_int(0))?;
        self.write_cell(object, tag_ptr(self.function_datakey()))?;
        self.write_cell(object + CELL, counts)?;
        let code = object + 2 * CELL;
        for (i, &word) in (0..).zip(words) {
            self.write_cell(code + i * CELL, word)?;
        }
        say!(
            trail,
            "N {n} and L 0 at {start:#x}, datakey -> FunctionDatakey at {object:#x}, counts {counts:#x}, code from {code:#x}; object pointer {object:#x}"
        );
        self.record(Placed {
            start,
            cells: total,
            kind: ObjectKind::Function,
            requested: (n + 1) * CELL,
            freed: false,
        });
        Ok(object)
    }

    /// The live (or freed) object whose handle is `ptr`.
    fn find(&self, ptr: Addr) -> Option<&Placed> {
        let i = self.objects.partition_point(|o| o.handle() < ptr);
        self.objects.get(i).filter(|o| o.handle() == ptr)
    }

    fn find_index(&self, ptr: Addr) -> Option<usize> {
        let i = self.objects.partition_point(|o| o.handle() < ptr);
        self.objects.get(i).filter(|o| o.handle() == ptr).map(|_| i)
    }

    /// The name of the datakey object at `addr`, if the model made one there.
    fn datakey_name(&self, addr: Addr) -> Option<&'static str> {
        self.datakeys()
            .find(|&(a, _)| a == addr)
            .map(|(_, d)| d.name())
    }

    /// The datakeys the model made, with their object pointers.
    fn datakeys(&self) -> impl Iterator<Item = (Addr, Datakey)> + '_ {
        self.objects.iter().filter_map(|o| match o.kind {
            ObjectKind::Datakey(d) => Some((o.object(), d)),
            _ => None,
        })
    }

    fn read(&self, addr: Addr) -> Result<u64, String> {
        self.memory
            .read_u64(addr)
            .map_err(|_| format!("cell {addr:#x} is outside the pool"))
    }

    /// Decodes the object whose first cell is `start` from the cells alone. A datakey cell
    /// must point at one of `datakeys` (or, for the object at the pool's start, at itself).
    fn decode(&self, start: Addr, limit: Addr, datakeys: &[Addr]) -> Result<Decoded, String> {
        let c0 = self.read(start)?;
        let mut lengths = [0u64; 2];
        let mut negs = 0u64;
        let mut cell = c0;
        while !is_tagged_ptr(cell) {
            if !is_tagged_int(cell) {
                return Err(format!(
                    "cell {:#x} is neither a length (tag x00) nor a datakey (tag 001): {}",
                    start + negs * CELL,
                    describe_cell(cell)
                ));
            }
            let slot = lengths.get_mut(negs as usize).ok_or_else(|| {
                format!("three length cells from {start:#x}: no flavour has more than two")
            })?;
            let len = untag_int(cell);
            *slot = u64::try_from(len)
                .map_err(|_| format!("negative length {len} at {:#x}", start + negs * CELL))?;
            negs += 1;
            cell = self.read(start + negs * CELL)?;
        }
        let object = start + negs * CELL;
        let datakey = untag_ptr(cell);
        let self_ref = object == self.base && datakey == object;
        if !self_ref && !datakeys.contains(&datakey) {
            return Err(format!(
                "datakey cell {object:#x} points to {datakey:#x}, which is not a datakey"
            ));
        }
        let key_field = |i: u64| self.read(datakey + i * CELL);
        let raw_flavour = key_field(1)?;
        let flavour = Flavour::from_raw(raw_flavour).ok_or_else(|| {
            format!("datakey {datakey:#x} has Flavour {raw_flavour}, which is no flavour")
        })?;
        if flavour.length_cells() != negs {
            return Err(format!(
                "object at {object:#x} has {negs} length cells, but its datakey's flavour {} has {}",
                flavour.name(),
                flavour.length_cells()
            ));
        }
        let fixed = key_field(2)?.checked_add(key_field(3)?);
        let too_long = || format!("object at {object:#x} has a length that cannot fit the pool");
        let [first, second] = lengths;
        let (cells, shape) = match flavour {
            Flavour::Datakey => (
                DATAKEY_CELLS,
                Shape::Key {
                    flavour: self.read(object + CELL)?,
                    num_words: self.read(object + 2 * CELL)?,
                    num_cells: self.read(object + 3 * CELL)?,
                    bit_width: self.read(object + 4 * CELL)?,
                },
            ),
            Flavour::Record => (
                fixed.and_then(|f| f.checked_add(1)).ok_or_else(too_long)?,
                Shape::Record,
            ),
            Flavour::Vector => (
                fixed
                    .and_then(|f| f.checked_add(first))
                    .and_then(|c| c.checked_add(1))
                    .ok_or_else(too_long)?,
                Shape::Vector { len: first },
            ),
            Flavour::Binarray => {
                let bit_width = key_field(4)?;
                if !(1..=64).contains(&bit_width) {
                    return Err(format!(
                        "datakey {datakey:#x} has BitWidth {bit_width}, outside 1..=64"
                    ));
                }
                let data = first
                    .checked_mul(bit_width)
                    .map(|bits| bits.div_ceil(64))
                    .ok_or_else(too_long)?;
                (
                    fixed
                        .and_then(|f| f.checked_add(data))
                        .and_then(|c| c.checked_add(1))
                        .ok_or_else(too_long)?,
                    Shape::Binarray { len: first },
                )
            }
            Flavour::Function => (
                first
                    .checked_add(second.div_ceil(2))
                    .and_then(|c| c.checked_add(2))
                    .ok_or_else(too_long)?,
                Shape::Function {
                    n: first,
                    l: second,
                    counts: self.read(object + CELL)?,
                },
            ),
        };
        let end = cells
            .checked_mul(CELL)
            .and_then(|b| object.checked_add(b))
            .filter(|&end| end <= limit)
            .ok_or_else(|| {
                format!(
                    "object at {object:#x} ({} of {cells} cells) runs past the next free cell {limit:#x}",
                    flavour.name()
                )
            })?;
        Ok(Decoded {
            start,
            object,
            end,
            datakey,
            shape,
        })
    }

    /// The text of a string object at `object`, without its NUL, decoded from the cells.
    pub fn string_text(&self, object: Addr) -> Option<String> {
        let len = self.read(object.checked_sub(CELL)?).ok()?;
        if !is_tagged_int(len) {
            return None;
        }
        let len = u64::try_from(untag_int(len)).ok()?;
        let bytes = self.memory.slice(object.checked_add(CELL)?, len).ok()?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    /// `(nlocals, nargs)` of a function object at `object`, decoded from its counts cell.
    pub fn function_counts(&self, object: Addr) -> Option<(u16, u16)> {
        let counts = self.read(object.checked_add(CELL)?).ok()?;
        Some(((counts >> 32) as u16, counts as u16))
    }

    fn key_fields(&self, object: Addr, shape: Shape) -> Vec<Field> {
        let Shape::Key {
            flavour,
            num_words,
            num_cells,
            bit_width,
        } = shape
        else {
            return Vec::new();
        };
        let flavour_meaning = Flavour::from_raw(flavour).map_or_else(
            || format!("{flavour} (no such flavour)"),
            |f| format!("{flavour} = {} (its instances' flavour)", f.name()),
        );
        let at = |i: u64| object + i * CELL..object + (i + 1) * CELL;
        vec![
            Field::new("Flavour", at(1), flavour, flavour_meaning),
            Field::new(
                "NumWords",
                at(2),
                num_words,
                format!("{num_words} raw words"),
            ),
            Field::new(
                "NumCells",
                at(3),
                num_cells,
                format!("{num_cells} tagged cells"),
            ),
            Field::new(
                "BitWidth",
                at(4),
                bit_width,
                format!("{bit_width}-bit entries"),
            ),
        ]
    }

    /// Fields of an object decoded from its cells.
    fn fields(&self, d: &Decoded) -> Vec<Field> {
        let raw = |addr: Addr| self.read(addr).unwrap_or(0);
        let cell = |addr: Addr| addr..addr + CELL;
        let mut fields = Vec::new();
        match d.shape {
            Shape::Vector { len } | Shape::Binarray { len } => {
                let is_string = d.datakey == self.string_datakey();
                let unit = if is_string { " (NUL included)" } else { "" };
                fields.push(Field::new(
                    "Length",
                    cell(d.start),
                    raw(d.start),
                    format!("tagged int {len}: {len} entries{unit}"),
                ));
            }
            Shape::Function { n, l, .. } => {
                fields.push(Field::new(
                    "N",
                    cell(d.start),
                    raw(d.start),
                    format!("tagged int {n}: instruction words"),
                ));
                fields.push(Field::new(
                    "L",
                    cell(d.start + CELL),
                    raw(d.start + CELL),
                    format!("tagged int {l}: T-block entries"),
                ));
            }
            Shape::Key { .. } | Shape::Record => {}
        }
        let target = self.datakey_name(d.datakey).unwrap_or("a datakey");
        let own = if d.datakey == d.object {
            " (itself)"
        } else {
            ""
        };
        fields.push(Field::new(
            "datakey",
            cell(d.object),
            raw(d.object),
            format!("tagged pointer -> {target}{own} at {:#x}", d.datakey),
        ));
        match d.shape {
            Shape::Key { .. } => fields.extend(self.key_fields(d.object, d.shape)),
            Shape::Function { counts, .. } => {
                let p = d.object + CELL;
                let part = |shift: u32| (counts >> shift) & 0xffff;
                for (i, name, meaning) in [
                    (0, "nparams", "arguments"),
                    (1, "nextras", "locals beyond the arguments"),
                    (2, "nlocals", "locals, arguments included"),
                    (3, "reserved", "unused"),
                ] {
                    let value = part(16 * i);
                    fields.push(Field::new(
                        name,
                        p + 2 * u64::from(i)..p + 2 * u64::from(i) + 2,
                        value,
                        format!("{value} {meaning}"),
                    ));
                }
            }
            Shape::Binarray { len } if d.datakey == self.string_datakey() => {
                let text = self.string_text(d.object).unwrap_or_default();
                fields.push(Field::new(
                    "text",
                    d.object + CELL..d.object + CELL + len,
                    len,
                    preview(&text),
                ));
            }
            _ => {}
        }
        fields
    }

    /// One object as a layout block, its geometry from the model, its fields from the cells.
    fn block(&self, o: &Placed, datakeys: &[Addr]) -> Block {
        let object = o.object();
        let state = match o.kind {
            ObjectKind::Datakey(_) => BlockState::Metadata,
            _ if o.freed => BlockState::Freed,
            _ => BlockState::Live,
        };
        let mut class = match o.kind {
            ObjectKind::Bytes => "binarray (8-bit)".to_owned(),
            kind => kind.name().to_owned(),
        };
        let fields = match self.decode(o.start, self.next_free_addr(), datakeys) {
            Ok(d) => {
                if d.end != o.end() {
                    class.push_str(&format!(
                        " (corrupt: its cells give {} cells, {} were allocated)",
                        (d.end - d.start) / CELL,
                        o.cells
                    ));
                }
                self.fields(&d)
            }
            Err(problem) => {
                class.push_str(&format!(" (undecodable: {problem})"));
                (o.start..=object)
                    .step_by(CELL as usize)
                    .map(|at| {
                        let raw = self.read(at).unwrap_or(0);
                        let name = if at == object { "datakey" } else { "length" };
                        Field::new(name, at..at + CELL, raw, describe_cell(raw))
                    })
                    .collect()
            }
        };
        Block {
            range: o.start..o.end(),
            header: o.start..object + CELL,
            payload: (object + CELL).min(o.end())..o.end(),
            requested: (state != BlockState::Metadata).then_some(o.requested),
            state,
            class: Some(class),
            fields,
        }
    }

    /// The datakey each kind of object must point to.
    fn expected_datakey(&self, kind: ObjectKind) -> Option<Addr> {
        match kind {
            ObjectKind::Datakey(_) => Some(self.base),
            ObjectKind::String => Some(self.string_datakey()),
            ObjectKind::Function => Some(self.function_datakey()),
            ObjectKind::Bytes => self.binarray_datakey,
        }
    }

    /// Checks one decoded object against what the model placed there.
    fn check_object(&self, d: &Decoded, placed: Option<&Placed>, findings: &mut Vec<Finding>) {
        let Some(o) = placed else {
            findings.push(Finding::at(
                d.start,
                format!(
                    "the cells show an object at {:#x} where the model placed none",
                    d.start
                ),
            ));
            return;
        };
        if d.end != o.end() {
            findings.push(Finding::at(
                d.start,
                format!(
                    "{} at {:#x}: its cells give {} cells, but {} were allocated",
                    o.kind.name(),
                    d.object,
                    (d.end - d.start) / CELL,
                    o.cells
                ),
            ));
        }
        if let Some(expected) = self.expected_datakey(o.kind)
            && d.datakey != expected
        {
            let got = self.datakey_name(d.datakey).unwrap_or("another datakey");
            findings.push(Finding::at(
                d.object,
                format!(
                    "{} at {:#x} points to {got} at {:#x}, not to its datakey {expected:#x}",
                    o.kind.name(),
                    d.object,
                    d.datakey
                ),
            ));
        }
        match (o.kind, d.shape) {
            (
                ObjectKind::Datakey(key),
                Shape::Key {
                    flavour,
                    num_words,
                    num_cells,
                    bit_width,
                },
            ) if [flavour, num_words, num_cells, bit_width] != key.fields() => {
                findings.push(Finding::at(
                    d.object,
                    format!(
                        "{} has Flavour {flavour}, NumWords {num_words}, NumCells {num_cells}, BitWidth {bit_width}; it was made with {:?}",
                        key.name(),
                        key.fields()
                    ),
                ));
            }
            (_, Shape::Function { counts, .. }) => {
                let (nparams, nextras, nlocals) = (
                    counts & 0xffff,
                    (counts >> 16) & 0xffff,
                    (counts >> 32) & 0xffff,
                );
                if counts >> 48 != 0 || nlocals.checked_sub(nparams) != Some(nextras) {
                    findings.push(Finding::at(
                        d.object + CELL,
                        format!(
                            "function at {:#x}: counts {counts:#x} do not add up (nparams {nparams} + nextras {nextras} != nlocals {nlocals}, or reserved bits set)",
                            d.object
                        ),
                    ));
                }
            }
            (ObjectKind::String, Shape::Binarray { len }) => {
                let last = len
                    .checked_sub(1)
                    .and_then(|i| self.memory.slice(d.object + CELL + i, 1).ok())
                    .and_then(|b| b.first().copied());
                if last != Some(0) {
                    findings.push(Finding::at(
                        d.object,
                        format!("string at {:#x} does not end in its NUL", d.object),
                    ));
                }
            }
            _ => {}
        }
    }
}

impl Allocator for NutmegPool {
    fn kind(&self) -> AllocatorKind {
        AllocatorKind::NutmegPool
    }

    fn allocate(&mut self, size: u64, align: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        if align > CELL || (align > 1 && !align.is_power_of_two()) {
            say!(
                trail,
                "alignment {align}: Nutmeg objects are aligned to 8-byte cells and no more"
            );
            return Err(AllocError::new(
                ErrorKind::Unsupported,
                format!("alignment {align} is not supported: cells are 8 bytes"),
            ));
        }
        let data_cells = size.div_ceil(CELL);
        say!(
            trail,
            "{} -> binarray of {size} 8-bit entries: {}, plus length and datakey",
            bytes(size),
            data_cells_words(data_cells)
        );
        let object_cells = data_cells.checked_add(2);
        let key_cells = if self.binarray_datakey.is_none() {
            say!(
                trail,
                "first byte block: a BinarrayDatakey ({DATAKEY_CELLS} cells) goes first"
            );
            DATAKEY_CELLS
        } else {
            0
        };
        let need = self.check_room(object_cells.and_then(|c| c.checked_add(key_cells)), trail)?;
        let total = need - key_cells;
        let datakey = match self.binarray_datakey {
            Some(at) => at,
            None => {
                let at = self.make_datakey(Datakey::BinarrayDatakey, trail)?;
                self.binarray_datakey = Some(at);
                at
            }
        };
        let start = self.take(total, trail);
        let object = start + CELL;
        self.write_cell(start, tag_int(size))?;
        self.write_cell(object, tag_ptr(datakey))?;
        let payload = object + CELL;
        say!(
            trail,
            "length {size} at {start:#x}, datakey -> BinarrayDatakey at {object:#x}; payload {payload:#x} (object pointer {object:#x})"
        );
        self.record(Placed {
            start,
            cells: total,
            kind: ObjectKind::Bytes,
            requested: size,
            freed: false,
        });
        Ok(payload)
    }

    /// Nutmeg's own typed objects: a trace's `String` and `Function` become a string object
    /// and a function object, as `Machine::allocate_string` and `allocate_function` make them.
    fn allocate_object(&mut self, op: &Op, trail: &mut Trail) -> Result<Addr, AllocError> {
        match op {
            Op::String { text, .. } => self.allocate_string(text, trail),
            Op::Function {
                words,
                nlocals,
                nargs,
                ..
            } => {
                // Upstream packs the counts in 16-bit fields.
                let (Ok(locals), Ok(args)) = (u16::try_from(*nlocals), u16::try_from(*nargs))
                else {
                    say!(
                        trail,
                        "nlocals {nlocals}, nargs {nargs}: the counts cell has 16 bits for each"
                    );
                    return Err(AllocError::new(
                        ErrorKind::Unsupported,
                        format!(
                            "function with nlocals {nlocals}, nargs {nargs}: counts are 16-bit"
                        ),
                    ));
                };
                self.allocate_function(words, locals, args, trail)
            }
            other => self.allocate(other.request_size().unwrap_or(0), 0, trail),
        }
    }

    fn free(&mut self, ptr: Addr, trail: &mut Trail) -> Result<(), AllocError> {
        self.ignored_frees += 1;
        let Some(i) = self.find_index(ptr) else {
            say!(
                trail,
                "free({ptr:#x}) ignored: the Nutmeg heap has no free (and {ptr:#x} is no object handed out)"
            );
            return Ok(());
        };
        let Some(o) = self.objects.get_mut(i) else {
            return Ok(());
        };
        match o.kind {
            ObjectKind::Datakey(key) => say!(
                trail,
                "free({ptr:#x}) ignored: that is the {}, which lives as long as the heap",
                key.name()
            ),
            _ if o.freed => say!(
                trail,
                "free({ptr:#x}) ignored again: the {} there was already freed, and nothing is ever reused",
                o.kind.name()
            ),
            kind => {
                o.freed = true;
                let cells = o.cells;
                self.ledger.on_free(ptr);
                say!(
                    trail,
                    "free({ptr:#x}) recorded and ignored: no free and no garbage collector yet, so the {}'s {cells} cells stay in the pool",
                    kind.name()
                );
            }
        }
        Ok(())
    }

    fn realloc(&mut self, ptr: Addr, size: u64, trail: &mut Trail) -> Result<Addr, AllocError> {
        let found = self.find(ptr).filter(|o| !o.freed).copied();
        if let Some(o) = found
            && matches!(o.kind, ObjectKind::String | ObjectKind::Function)
        {
            say!(
                trail,
                "realloc({ptr:#x}) refused: it is a {} object, not a byte block",
                o.kind.name()
            );
            return Err(AllocError::new(
                ErrorKind::Unsupported,
                format!(
                    "realloc of the {} object at {ptr:#x}: the Nutmeg heap has no realloc",
                    o.kind.name()
                ),
            ));
        }
        let old = self.usable_size(ptr).ok_or_else(|| {
            AllocError::new(
                ErrorKind::InvalidFree,
                format!("realloc of {ptr:#x}, which is not a live block"),
            )
        })?;
        say!(
            trail,
            "no realloc in the Nutmeg heap: allocate {}, copy, free the old block",
            bytes(size)
        );
        let new = self.allocate(size, 0, trail)?;
        let copied = old.min(size);
        self.memory
            .copy_within(ptr, new, copied)
            .map_err(|e| corrupted(&e))?;
        say!(trail, "copy {} {ptr:#x} -> {new:#x}", bytes(copied));
        self.free(ptr, trail)?;
        Ok(new)
    }

    fn usable_size(&self, ptr: Addr) -> Option<u64> {
        self.find(ptr)
            .filter(|o| o.kind == ObjectKind::Bytes && !o.freed)
            .map(|o| o.requested)
    }

    fn inspect(&self) -> HeapLayout {
        let datakeys: Vec<Addr> = self.datakeys().map(|(a, _)| a).collect();
        let mut blocks: Vec<Block> = self
            .objects
            .iter()
            .map(|o| self.block(o, &datakeys))
            .collect();
        if self.next_free < self.cells {
            blocks.push(Block::plain(
                self.next_free_addr()..self.end(),
                BlockState::Unused,
            ));
        }
        HeapLayout {
            kind: AllocatorKind::NutmegPool,
            extent: self.base..self.end(),
            blocks,
            free_lists: Vec::new(),
            markers: vec![Marker {
                name: "next_free".to_owned(),
                addr: self.next_free_addr(),
            }],
            poisoned: None,
            stats: self.stats(),
            native_stats: vec![
                NativeStat::new("next_free", self.next_free),
                NativeStat::new("POOL_SIZE_CELLS", self.cells),
                NativeStat::new("ignored_frees", self.ignored_frees),
            ],
        }
    }

    fn validate(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        let limit = self.next_free_addr();
        if self.next_free > self.cells {
            findings.push(Finding::general(format!(
                "next_free {} is past the pool's {} cells",
                self.next_free, self.cells
            )));
            return findings;
        }
        // Walk the cells alone, from the pool's start, as a garbage collector would.
        let mut seen_datakeys: Vec<Addr> = Vec::new();
        let mut at = self.base;
        while at < limit {
            if findings.len() >= MAX_FINDINGS {
                findings.push(Finding::general("too many findings; stopped looking"));
                return findings;
            }
            let i = self.objects.partition_point(|o| o.start < at);
            let placed = self.objects.get(i).filter(|o| o.start == at);
            match self.decode(at, limit, &seen_datakeys) {
                Ok(d) => {
                    if matches!(d.shape, Shape::Key { .. }) {
                        seen_datakeys.push(d.object);
                    }
                    self.check_object(&d, placed, &mut findings);
                    at = d.end;
                }
                Err(problem) => {
                    findings.push(Finding::at(at, problem));
                    // Pick the walk up again at the next object the model placed.
                    match self.objects.iter().find(|o| o.start > at) {
                        Some(next) => at = next.start,
                        None => {
                            findings.push(Finding::at(
                                at,
                                format!(
                                    "the heap walk stops at {at:#x}, short of the next free cell {limit:#x}"
                                ),
                            ));
                            break;
                        }
                    }
                }
            }
        }
        let live = self
            .objects
            .iter()
            .filter(|o| !o.freed && !matches!(o.kind, ObjectKind::Datakey(_)))
            .collect::<Vec<_>>();
        if live.len() as u64 != self.ledger.stats().live_blocks {
            findings.push(Finding::general(format!(
                "{} objects are live but the ledger counts {}",
                live.len(),
                self.ledger.stats().live_blocks
            )));
        }
        for o in live {
            if self.ledger.requested(o.handle()) != Some(o.requested) {
                findings.push(Finding::at(
                    o.handle(),
                    format!(
                        "the ledger does not know the {} at {:#x} as asked for",
                        o.kind.name(),
                        o.handle()
                    ),
                ));
            }
        }
        findings
    }

    fn stats(&self) -> Stats {
        self.ledger.stats()
    }

    fn memory(&self) -> &Memory {
        &self.memory
    }

    fn memory_mut(&mut self) -> &mut Memory {
        &mut self.memory
    }

    fn clone_box(&self) -> Box<dyn Allocator> {
        Box::new(self.clone())
    }

    fn ledger_mut(&mut self) -> Option<&mut Ledger> {
        Some(&mut self.ledger)
    }

    fn side_bytes(&self) -> usize {
        self.ledger.heap_bytes() + self.objects.capacity() * size_of::<Placed>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Addr = DEFAULT_BASE;

    fn pool() -> NutmegPool {
        NutmegPool::from_config(&HeapConfig::default()).unwrap()
    }

    fn small(cells: u64) -> NutmegPool {
        NutmegPool::from_config(&HeapConfig {
            base: Some(0x1000),
            size: Some(cells * CELL),
            ..HeapConfig::default()
        })
        .unwrap()
    }

    fn cell(heap: &NutmegPool, index: u64) -> u64 {
        heap.memory().read_u64(B + index * CELL).unwrap()
    }

    fn cells_of(heap: &NutmegPool, index: u64, n: u64) -> Vec<u64> {
        (index..index + n).map(|i| cell(heap, i)).collect()
    }

    fn sound(heap: &NutmegPool) {
        assert_eq!(heap.validate(), Vec::new());
        assert_eq!(heap.inspect().check_tiling(), Vec::new());
    }

    // Golden: `Heap::Heap()` makes a pool of POOL_SIZE_CELLS = 1 MiB / 8 = 131,072 cells, and
    // `init_datakeys` bumps three 5-cell datakeys (heap.cpp), laid out as the doc's
    // "Datakey-objects" table (docs/heap-object-layout.md, dbc4c2c).
    #[test]
    fn bootstrap_places_three_datakeys_at_cells_0_5_10_with_a_self_reference() {
        let heap = pool();
        assert_eq!(heap.capacity_cells(), 131_072);
        assert_eq!(heap.memory().len(), 1 << 20);
        assert_eq!(heap.next_free(), 15);
        assert_eq!(
            (
                heap.datakey_datakey(),
                heap.string_datakey(),
                heap.function_datakey()
            ),
            (B, B + 40, B + 80)
        );
        // DatakeyDatakey: self-pointer tagged 001, Flavour 0, NumWords 1, NumCells 0.
        assert_eq!(cells_of(&heap, 0, 5), vec![B | 1, 0, 1, 0, 0]);
        // StringDatakey: a binarray datakey with BitWidth 8.
        assert_eq!(cells_of(&heap, 5, 5), vec![B | 1, 3, 0, 0, 8]);
        assert_eq!(cells_of(&heap, 10, 5), vec![B | 1, 4, 0, 0, 0]);
        let layout = heap.inspect();
        let classes: Vec<_> = layout
            .blocks
            .iter()
            .map(|b| (b.range.start, b.state, b.class.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            classes,
            vec![
                (B, BlockState::Metadata, "DatakeyDatakey".to_owned()),
                (B + 40, BlockState::Metadata, "StringDatakey".to_owned()),
                (B + 80, BlockState::Metadata, "FunctionDatakey".to_owned()),
                (B + 120, BlockState::Unused, String::new()),
            ]
        );
        let first = &layout.blocks[0];
        assert_eq!(first.fields[0].name, "datakey");
        assert!(first.fields[0].meaning.contains("DatakeyDatakey (itself)"));
        assert_eq!(
            layout.markers,
            vec![Marker {
                name: "next_free".to_owned(),
                addr: B + 120
            }]
        );
        sound(&heap);
    }

    // Golden: tests/test_machine.cpp "Machine can allocate strings" allocates "hello" then
    // "world" and reads them back; Machine::allocate_string passes size() + 1, and
    // Heap::allocate_string takes 2 + ceil(6 / 8) = 3 cells for each.
    #[test]
    fn hello_and_world_strings_follow_the_bootstrap_and_read_back() {
        let mut heap = pool();
        let mut t = Trail::on();
        let hello = heap.allocate_string("hello", &mut t).unwrap();
        let world = heap.allocate_string("world", &mut t).unwrap();
        assert_eq!((hello, world), (B + 16 * CELL, B + 19 * CELL));
        assert_eq!(heap.string_text(hello).as_deref(), Some("hello"));
        assert_eq!(heap.string_text(world).as_deref(), Some("world"));
        assert_eq!(heap.next_free(), 21);
        assert!(t.lines().iter().any(|l| l.contains("next_free 15 -> 18")));
        sound(&heap);
    }

    // Golden: the hello-world string object, cell by cell (doc: Binarray-objects, position -1
    // length, 0 datakey, bytes from 1; the length counts the NUL as heap.cpp does).
    #[test]
    fn hello_world_string_object_layout() {
        let mut heap = pool();
        let obj = heap
            .allocate_string("Hello, world!", &mut Trail::off())
            .unwrap();
        assert_eq!(obj, B + 16 * CELL);
        assert_eq!(cell(&heap, 15), 14 << 2, "length 14 (13 + NUL), tagged x00");
        assert_eq!(
            cell(&heap, 16),
            (B + 40) | 1,
            "tagged pointer to StringDatakey"
        );
        assert_eq!(
            heap.memory().slice(obj + CELL, 16).unwrap(),
            b"Hello, world!\0\0\0"
        );
        assert_eq!(heap.next_free(), 19);
        let layout = heap.inspect();
        let block = layout.block_at(obj).unwrap();
        assert_eq!(block.range, B + 120..B + 152);
        assert_eq!(block.header, B + 120..B + 136);
        assert_eq!(block.payload, B + 136..B + 152);
        assert_eq!(block.requested, Some(14));
        assert_eq!(block.class.as_deref(), Some("string"));
        let text = block.fields.iter().find(|f| f.name == "text").unwrap();
        assert_eq!(text.meaning, "\"Hello, world!\"");
        let dk = block.fields.iter().find(|f| f.name == "datakey").unwrap();
        assert!(dk.meaning.contains("StringDatakey"), "{}", dk.meaning);
        sound(&heap);
    }

    // Golden: tests/test_bundle_reader.cpp compiles a function with nlocals 2, nparams 1 into 8
    // instruction words; Heap::allocate_function (a647533) lays it out as N, L, datakey, the
    // nparams | nextras << 16 | nlocals << 32 counts cell, then the words (doc: Function-objects).
    #[test]
    fn function_object_layout() {
        let mut heap = pool();
        let words: Vec<u64> = (0..8).map(|i| 0x5555_0000 + i).collect();
        let obj = heap
            .allocate_function(&words, 2, 1, &mut Trail::off())
            .unwrap();
        assert_eq!(obj, B + 17 * CELL);
        let mut expected = vec![8 << 2, 0, (B + 80) | 1, 0x0000_0002_0001_0001];
        expected.extend(&words);
        assert_eq!(cells_of(&heap, 15, 12), expected);
        assert_eq!(heap.next_free(), 27);
        assert_eq!(heap.function_counts(obj), Some((2, 1)));
        let layout = heap.inspect();
        let block = layout.block_at(obj).unwrap();
        assert_eq!(block.range, B + 120..B + 216);
        assert_eq!(block.header, B + 120..B + 144);
        let field = |n: &str| block.fields.iter().find(|f| f.name == n).unwrap().value;
        assert_eq!(
            (
                field("N"),
                field("nparams"),
                field("nextras"),
                field("nlocals")
            ),
            (32, 1, 1, 2)
        );
        sound(&heap);
    }

    // A trace's typed operations reach the typed allocations, not plain byte blocks.
    #[test]
    fn trace_strings_and_functions_become_typed_objects() {
        let mut heap = pool();
        let mut t = Trail::off();
        let text = Op::String {
            id: 1,
            text: "hello".into(),
        };
        let s = heap.allocate_object(&text, &mut t).unwrap();
        assert_eq!(
            s,
            B + 16 * CELL,
            "right after the bootstrap, no BinarrayDatakey"
        );
        assert_eq!(heap.string_text(s).as_deref(), Some("hello"));
        let function = Op::Function {
            id: 2,
            words: vec![7; 3],
            nlocals: 2,
            nargs: 1,
        };
        let f = heap.allocate_object(&function, &mut t).unwrap();
        assert_eq!(f, B + 20 * CELL);
        assert_eq!(heap.function_counts(f), Some((2, 1)));
        let too_many = Op::Function {
            id: 3,
            words: Vec::new(),
            nlocals: 70_000,
            nargs: 0,
        };
        let err = heap.allocate_object(&too_many, &mut t).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unsupported);
        sound(&heap);
    }

    #[test]
    fn string_lengths_take_the_right_number_of_cells() {
        // k bytes + NUL -> 2 + ceil((k + 1) / 8) cells.
        for (len, cells) in [(0, 3), (7, 3), (8, 4), (9, 4), (15, 4), (16, 5)] {
            let mut heap = pool();
            let text = "x".repeat(len);
            let obj = heap.allocate_string(&text, &mut Trail::off()).unwrap();
            assert_eq!(heap.next_free() - 15, cells, "{len} bytes");
            assert_eq!(heap.string_text(obj).unwrap(), text);
            assert_eq!(heap.stats().held, cells * CELL);
            sound(&heap);
        }
    }

    #[test]
    fn functions_take_four_cells_plus_their_words() {
        for n in [0u64, 1, 5, 100] {
            let mut heap = pool();
            let words: Vec<u64> = (0..n).collect();
            heap.allocate_function(&words, 3, 3, &mut Trail::off())
                .unwrap();
            assert_eq!(heap.next_free() - 15, 4 + n);
            sound(&heap);
        }
        let mut heap = pool();
        let err = heap
            .allocate_function(&[], 1, 2, &mut Trail::off())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unsupported);
        assert_eq!(heap.next_free(), 15, "a refused function takes nothing");
    }

    #[test]
    fn byte_allocation_is_a_binarray_under_its_own_datakey() {
        let mut heap = pool();
        let mut t = Trail::on();
        let p = heap.allocate(10, 0, &mut t).unwrap();
        assert!(t.lines().iter().any(|l| l.contains("BinarrayDatakey")));
        // BinarrayDatakey at cells 15..20, then length, datakey, 2 data cells.
        assert_eq!(heap.binarray_datakey(), Some(B + 120));
        assert_eq!(cells_of(&heap, 15, 5), vec![B | 1, 3, 0, 0, 8]);
        assert_eq!(cells_of(&heap, 20, 2), vec![10 << 2, (B + 120) | 1]);
        assert_eq!(p, B + 22 * CELL);
        assert_eq!(heap.object_of(p), Some(B + 21 * CELL));
        assert_eq!(heap.usable_size(p), Some(10));
        assert_eq!(heap.next_free(), 24);
        // All ten payload bytes belong to the object; writing them keeps the heap sound.
        heap.memory_mut().fill(p, 10, 0xab).unwrap();
        sound(&heap);
        // The second byte block reuses the datakey.
        let q = heap.allocate(1, 8, &mut Trail::off()).unwrap();
        assert_eq!(q, B + 26 * CELL);
        let layout = heap.inspect();
        let block = layout.block_at(p).unwrap();
        assert_eq!(block.class.as_deref(), Some("binarray (8-bit)"));
        assert_eq!(block.payload, p..p + 16);
        assert_eq!(block.requested, Some(10));
        assert_eq!(block.slack(), 6);
        assert_eq!(
            layout.block_at(B + 120).unwrap().class.as_deref(),
            Some("BinarrayDatakey")
        );
        sound(&heap);
    }

    #[test]
    fn alignment_above_a_cell_is_unsupported() {
        let mut heap = pool();
        for align in [16, 4096, 3] {
            let err = heap.allocate(8, align, &mut Trail::off()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Unsupported, "align {align}");
        }
        assert_eq!(heap.next_free(), 15);
        assert!(
            heap.allocate(8, 8, &mut Trail::off())
                .unwrap()
                .is_multiple_of(8)
        );
    }

    #[test]
    fn exhaustion_comes_exactly_at_the_pool_end() {
        // 40 cells: 15 bootstrap, 5 BinarrayDatakey, 20 left.
        let mut heap = small(40);
        let mut t = Trail::on();
        let p = heap.allocate(18 * 8, 0, &mut t).unwrap();
        assert_eq!(heap.next_free(), 40);
        assert_eq!(
            p + 18 * 8,
            0x1000 + 40 * 8,
            "the payload ends at the pool end"
        );
        let err = heap.allocate(0, 0, &mut t).unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::OutOfMemory, "std::bad_alloc")
        );
        assert!(heap.allocate_string("", &mut t).is_err());
        assert!(heap.allocate_function(&[], 0, 0, &mut t).is_err());
        assert_eq!(heap.next_free(), 40);
        assert!(
            heap.inspect()
                .blocks
                .iter()
                .all(|b| b.state != BlockState::Unused)
        );
        sound(&heap);

        // One cell short fails, and leaves no BinarrayDatakey behind.
        let mut heap = small(40);
        let err = heap.allocate(18 * 8 + 1, 0, &mut t).unwrap_err();
        assert_eq!(err.kind, ErrorKind::OutOfMemory);
        assert_eq!((heap.next_free(), heap.binarray_datakey()), (15, None));
        let err = heap.allocate(u64::MAX, 0, &mut t).unwrap_err();
        assert_eq!(err.kind, ErrorKind::TooLarge);
        sound(&heap);
    }

    // Golden: 1 MiB pool; the last cell is cell 131,071 (heap.cpp POOL_SIZE_CELLS).
    #[test]
    fn the_default_pool_is_full_after_exactly_131072_cells() {
        let mut heap = pool();
        let left = 131_072 - 15 - 5 - 2;
        heap.allocate(left * 8, 0, &mut Trail::off()).unwrap();
        assert_eq!(heap.next_free(), 131_072);
        assert_eq!(heap.next_free_addr(), B + (1 << 20));
        assert!(heap.allocate_string("", &mut Trail::off()).is_err());
        sound(&heap);
    }

    #[test]
    fn frees_are_recorded_and_ignored() {
        let mut heap = pool();
        let mut t = Trail::on();
        let s = heap.allocate_string("gone", &mut t).unwrap();
        let p = heap.allocate(24, 0, &mut t).unwrap();
        let before = heap.next_free();
        heap.free(s, &mut t).unwrap();
        heap.free(p, &mut t).unwrap();
        heap.free(p, &mut t).unwrap();
        heap.free(heap.string_datakey(), &mut t).unwrap();
        heap.free(0x42, &mut t).unwrap();
        assert!(t.lines().iter().any(|l| l.contains("recorded and ignored")));
        assert_eq!(heap.next_free(), before, "free gives nothing back");
        let q = heap.allocate(24, 0, &mut t).unwrap();
        assert!(q > p, "freed cells are never reused");
        assert_eq!(heap.stats().live_blocks, 1);
        let layout = heap.inspect();
        assert_eq!(layout.block_at(s).unwrap().state, BlockState::Freed);
        assert_eq!(layout.block_at(p).unwrap().state, BlockState::Freed);
        assert_eq!(
            layout.block_at(heap.string_datakey()).unwrap().state,
            BlockState::Metadata
        );
        assert!(
            layout
                .native_stats
                .contains(&NativeStat::new("ignored_frees", 5))
        );
        assert_eq!(heap.string_text(s).as_deref(), Some("gone"));
        sound(&heap);
    }

    #[test]
    fn realloc_copies_byte_blocks_and_refuses_typed_objects() {
        let mut heap = pool();
        let mut t = Trail::off();
        let p = heap.allocate(4, 0, &mut t).unwrap();
        heap.memory_mut().write(p, b"abcd").unwrap();
        let q = heap.realloc(p, 12, &mut t).unwrap();
        assert_eq!(heap.memory().slice(q, 4).unwrap(), b"abcd");
        assert_eq!(heap.usable_size(p), None);
        assert_eq!(heap.usable_size(q), Some(12));
        let s = heap.allocate_string("s", &mut t).unwrap();
        let err = heap.realloc(s, 40, &mut t).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unsupported);
        let err = heap.realloc(0x10, 4, &mut t).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidFree);
        let c = heap.calloc(3, 5, &mut t).unwrap();
        assert_eq!(heap.memory().slice(c, 15).unwrap(), &[0; 15]);
        sound(&heap);
    }

    #[test]
    fn config_rounds_to_cells_and_refuses_bad_pools() {
        let heap = NutmegPool::from_config(&HeapConfig {
            base: Some(0x8000),
            size: Some(20 * 8 + 7),
            ..HeapConfig::default()
        })
        .unwrap();
        assert_eq!(heap.capacity_cells(), 20);
        assert_eq!(heap.inspect().extent, 0x8000..0x8000 + 160);
        let bad = |base: u64, size: u64| {
            NutmegPool::from_config(&HeapConfig {
                base: Some(base),
                size: Some(size),
                ..HeapConfig::default()
            })
            .is_err()
        };
        assert!(bad(0x8004, 1024), "unaligned base");
        assert!(bad(0x8000, 14 * 8), "no room for the bootstrap");
        assert!(bad(u64::MAX - 15, 1024), "past the address space");
        assert!(bad(0, 2 << 30), "too big");
        assert!(!bad(0, 15 * 8));
    }

    #[test]
    fn validate_reports_corrupt_cells_and_nothing_panics() {
        let mut heap = pool();
        let mut t = Trail::off();
        let s = heap.allocate_string("hello", &mut t).unwrap();
        let f = heap.allocate_function(&[1, 2, 3], 1, 0, &mut t).unwrap();
        let p = heap.allocate(9, 0, &mut t).unwrap();
        sound(&heap);

        // A raw (untagged) string length, as upstream's own code writes it.
        let mut h = heap.clone();
        h.memory_mut().write_u64(s - CELL, 6).unwrap();
        let findings = h.validate();
        assert!(!findings.is_empty());
        assert!(
            findings[0].message.contains("neither a length"),
            "{findings:?}"
        );
        assert!(h.inspect().check_tiling().is_empty());

        // A string whose datakey points to the FunctionDatakey.
        let mut h = heap.clone();
        let fdk = h.function_datakey();
        h.memory_mut().write_u64(s, tag_ptr(fdk)).unwrap();
        assert!(!h.validate().is_empty());

        // A datakey pointer to a non-datakey.
        let mut h = heap.clone();
        h.memory_mut().write_u64(f, tag_ptr(s)).unwrap();
        assert!(
            h.validate()
                .iter()
                .any(|x| x.message.contains("not a datakey"))
        );

        // A length too long for the pool, and a corrupt counts cell.
        let mut h = heap.clone();
        h.memory_mut()
            .write_u64(p - 2 * CELL, u64::MAX << 2)
            .unwrap();
        h.memory_mut().write_u64(f + CELL, u64::MAX).unwrap();
        let findings = h.validate();
        assert!(findings.len() >= 2, "{findings:?}");

        // A function whose N shrank: the walk sees a shorter object, then stray code words.
        let mut h = heap.clone();
        h.memory_mut().write_u64(f - 2 * CELL, tag_int(1)).unwrap();
        let findings = h.validate();
        assert!(
            findings[0]
                .message
                .contains("give 5 cells, but 7 were allocated"),
            "{findings:?}"
        );
        assert!(findings.len() >= 2, "the stray words do not decode either");

        // The last object's length grown past the next free cell.
        let mut h = heap.clone();
        h.memory_mut().write_u64(p - 2 * CELL, tag_int(64)).unwrap();
        let findings = h.validate();
        assert!(
            findings
                .iter()
                .any(|x| x.message.contains("runs past the next free cell")),
            "{findings:?}"
        );

        // A broken bootstrap: the DatakeyDatakey no longer points at itself.
        let mut h = heap.clone();
        h.memory_mut().write_u64(B, 0x1f).unwrap();
        assert!(!h.validate().is_empty());
        let layout = h.inspect();
        assert!(layout.check_tiling().is_empty());
        assert!(
            layout.blocks[0]
                .class
                .as_deref()
                .unwrap()
                .contains("undecodable")
        );

        // Garbage everywhere: findings, no panics, and allocation still works.
        let mut h = heap.clone();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..h.next_free() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            h.memory_mut().write_u64(B + i * CELL, x).unwrap();
        }
        assert!(!h.validate().is_empty());
        assert!(h.inspect().check_tiling().is_empty());
        assert!(h.allocate(5, 0, &mut t).is_ok());
        assert!(h.allocate_string("still", &mut t).is_ok());
        assert!(h.free(p, &mut t).is_ok());
        let _ = h.realloc(p, 3, &mut t);
        let _ = h.string_text(s);
        let _ = h.string_text(B);
    }

    #[test]
    fn garbage_over_every_cell_value_never_panics() {
        let heap = {
            let mut h = pool();
            let mut t = Trail::off();
            h.allocate_string("abc", &mut t).unwrap();
            h.allocate_function(&[7; 4], 2, 2, &mut t).unwrap();
            h.allocate(3, 0, &mut t).unwrap();
            h
        };
        let interesting = [
            0,
            1,
            2,
            3,
            4,
            7,
            0x17,
            u64::MAX,
            u64::MAX - 3,
            1 << 62,
            B | 1,
            (B + 40) | 1,
            (B + 80) | 1,
            (B + 120) | 1,
            (B + 8) | 1,
            B + (1 << 20) + 1,
        ];
        for i in 0..heap.next_free() {
            for &v in &interesting {
                let mut h = heap.clone();
                h.memory_mut().write_u64(B + i * CELL, v).unwrap();
                let _ = h.validate();
                assert!(h.inspect().check_tiling().is_empty());
            }
        }
    }

    #[test]
    fn mixed_work_stays_sound_and_counts_add_up() {
        let mut heap = small(400);
        let mut t = Trail::off();
        let mut handed = 0;
        for i in 0..30u64 {
            let r = match i % 3 {
                0 => heap.allocate(i, 0, &mut t),
                1 => heap.allocate_string(&"y".repeat(i as usize), &mut t),
                _ => heap.allocate_function(&vec![i; i as usize % 5], 4, 1, &mut t),
            };
            match r {
                Ok(p) => {
                    handed += 1;
                    if i % 4 == 0 {
                        heap.free(p, &mut t).unwrap();
                        handed -= 1;
                    }
                }
                Err(e) => assert_eq!(e.kind, ErrorKind::OutOfMemory),
            }
            sound(&heap);
        }
        let s = heap.stats();
        assert_eq!(s.live_blocks, handed);
        assert_eq!(s.footprint, heap.next_free() * CELL);
    }
}

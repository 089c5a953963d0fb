//! What the emulator runs: the loadable segments and function symbols of a static x86-64 ELF
//! executable, or a few bytes of raw machine code.

use std::collections::BTreeMap;
use std::path::Path;

use object::read::elf::ElfFile64;
use object::{Object, ObjectKind, ObjectSegment, ObjectSymbol, SegmentFlags, SymbolKind};

use super::EmulateError;
use crate::Addr;

/// Where raw machine code is loaded.
pub const CODE_BASE: Addr = 0x40_0000;

/// Access rights of a mapped segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl Perms {
    /// Read and execute: code.
    pub const CODE: Perms = Perms {
        read: true,
        write: false,
        exec: true,
    };
    /// Read and write: data, stack, heap.
    pub const DATA: Perms = Perms {
        read: true,
        write: true,
        exec: false,
    };

    /// Both sets of rights (for pages two segments share).
    #[must_use]
    pub fn union(self, other: Perms) -> Perms {
        Perms {
            read: self.read || other.read,
            write: self.write || other.write,
            exec: self.exec || other.exec,
        }
    }
}

/// One loadable segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// First address.
    pub addr: Addr,
    /// Bytes in memory (the part past `data` is zero, like `.bss`).
    pub mem_size: u64,
    /// The bytes from the file.
    pub data: Vec<u8>,
    /// Access rights.
    pub perms: Perms,
}

/// A program ready to map: segments and function symbols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Where it came from (a file name), for messages.
    pub origin: String,
    /// Loadable segments.
    pub segments: Vec<Segment>,
    /// Function symbols by name.
    pub symbols: BTreeMap<String, Addr>,
}

const EM_X86_64: u16 = 62;

fn machine_name(machine: u16) -> String {
    let name = match machine {
        3 => "x86 (32-bit)",
        40 => "ARM",
        183 => "AArch64",
        243 => "RISC-V",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC 64",
        22 => "S/390",
        _ => return format!("machine {machine}"),
    };
    name.to_owned()
}

impl Image {
    /// Reads and parses the ELF file at `path`.
    pub fn load(path: &Path) -> Result<Image, EmulateError> {
        let bytes = std::fs::read(path).map_err(|source| EmulateError::Io {
            path: path.to_owned(),
            source,
        })?;
        Image::parse_elf(&bytes, &path.display().to_string())
    }

    /// Parses a static, non-PIE ELF64 x86-64 executable; `origin` names it in errors.
    pub fn parse_elf(bytes: &[u8], origin: &str) -> Result<Image, EmulateError> {
        let fail = |message: String| EmulateError::Elf {
            origin: origin.to_owned(),
            message,
        };
        if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(fail(
                "not an ELF file (it does not start with \\x7fELF)".to_owned(),
            ));
        }
        let class = bytes.get(4).copied().unwrap_or(0);
        let machine = bytes
            .get(18..20)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
        if class != 2 || machine != EM_X86_64 {
            let bits = if class == 1 { "32-bit" } else { "64-bit" };
            return Err(fail(format!(
                "a {bits} ELF for {}; heapscope emulates 64-bit x86-64 programs only",
                machine_name(machine)
            )));
        }
        let file = ElfFile64::<object::Endianness>::parse(bytes)
            .map_err(|e| fail(format!("malformed ELF: {e}")))?;
        match file.kind() {
            ObjectKind::Executable => {}
            ObjectKind::Dynamic => {
                return Err(fail(
                    "position-independent or dynamically linked; link it with -static -no-pie"
                        .to_owned(),
                ));
            }
            other => {
                return Err(fail(format!(
                    "not an executable ({other:?}); link it with -static -no-pie"
                )));
            }
        }
        let mut segments = Vec::new();
        for segment in file.segments() {
            let data = segment
                .data()
                .map_err(|e| fail(format!("segment at {:#x}: {e}", segment.address())))?;
            let flags = match segment.flags() {
                SegmentFlags::Elf { p_flags, .. } => Some(p_flags),
                _ => None,
            };
            let has = |flag| flags.is_some_and(|f| f.contains(flag));
            let mem_size = segment.size();
            if mem_size == 0 {
                continue;
            }
            if segment.address().checked_add(mem_size).is_none() {
                return Err(fail(format!(
                    "segment at {:#x} of {mem_size} B runs past the address space",
                    segment.address()
                )));
            }
            segments.push(Segment {
                addr: segment.address(),
                mem_size,
                data: data.to_vec(),
                perms: Perms {
                    read: has(object::elf::PF_R),
                    write: has(object::elf::PF_W),
                    exec: has(object::elf::PF_X),
                },
            });
        }
        if segments.is_empty() {
            return Err(fail("no loadable segment".to_owned()));
        }
        let mut symbols = BTreeMap::new();
        for symbol in file.symbols() {
            if symbol.kind() != SymbolKind::Text || symbol.is_undefined() {
                continue;
            }
            if let Ok(name) = symbol.name()
                && !name.is_empty()
            {
                symbols.insert(name.to_owned(), symbol.address());
            }
        }
        Ok(Image {
            origin: origin.to_owned(),
            segments,
            symbols,
        })
    }

    /// Raw machine code loaded at [`CODE_BASE`], entered at `entry_offset`; the entry is the
    /// symbol `main`, and the heap functions are at the runtime page's stubs
    /// (see [`super::layout::stub_addr`]).
    pub fn from_code(code: &[u8], entry_offset: u64, origin: &str) -> Result<Image, EmulateError> {
        if entry_offset >= code.len() as u64 {
            return Err(EmulateError::Elf {
                origin: origin.to_owned(),
                message: format!(
                    "entry offset {entry_offset} is outside the {} bytes of code",
                    code.len()
                ),
            });
        }
        let mut symbols = BTreeMap::new();
        symbols.insert("main".to_owned(), CODE_BASE + entry_offset);
        for function in super::HeapFunction::ALL {
            symbols.insert(
                function.name().to_owned(),
                super::layout::stub_addr(function),
            );
        }
        Ok(Image {
            origin: origin.to_owned(),
            segments: vec![Segment {
                addr: CODE_BASE,
                mem_size: code.len() as u64,
                data: code.to_vec(),
                perms: Perms::CODE,
            }],
            symbols,
        })
    }

    /// The address of function `name`, or of a `0x…` address given as the name.
    pub fn resolve(&self, name: &str) -> Result<Addr, EmulateError> {
        if let Some(&addr) = self.symbols.get(name) {
            return Ok(addr);
        }
        if let Some(hex) = name.strip_prefix("0x")
            && let Ok(addr) = u64::from_str_radix(hex, 16)
        {
            return Ok(addr);
        }
        let mut known: Vec<&str> = self.symbols.keys().map(String::as_str).collect();
        known.truncate(20);
        Err(EmulateError::MissingSymbol {
            origin: self.origin.clone(),
            symbol: name.to_owned(),
            known: if known.is_empty() {
                "none: the file has no symbol table".to_owned()
            } else {
                known.join(", ")
            },
        })
    }

    /// Up to `len` bytes of the image at `addr` (fewer at a segment's end), for the
    /// disassembler.
    pub fn code_at(&self, addr: Addr, len: usize) -> &[u8] {
        for s in &self.segments {
            if addr >= s.addr && addr < s.addr + s.data.len() as u64 {
                let start = (addr - s.addr) as usize;
                let end = start.saturating_add(len).min(s.data.len());
                return s.data.get(start..end).unwrap_or(&[]);
            }
        }
        &[]
    }
}

/// Parses hex machine code: pairs of hex digits, with spaces, newlines, commas and `0x`
/// prefixes ignored.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let cleaned: String = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .map(|word| word.strip_prefix("0x").unwrap_or(word))
        .collect();
    if !cleaned.len().is_multiple_of(2) {
        return Err(format!(
            "machine code has an odd number of hex digits ({})",
            cleaned.len()
        ));
    }
    (0..cleaned.len())
        .step_by(2)
        .map(|i| {
            let pair = cleaned.get(i..i + 2).unwrap_or("");
            u8::from_str_radix(pair, 16)
                .map_err(|_| format!("`{pair}` at hex digit {i} is not a hex byte"))
        })
        .collect()
}

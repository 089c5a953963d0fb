//! Instruction text for reports, decoded with iced-x86 from the program image.
//!
//! Each address is decoded once and cached: a loop touching the heap a million times names
//! the same few instructions, so this costs nothing per access.

use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic};
use rustc_hash::FxHashMap;

use super::image::Image;
use crate::Addr;

/// Decodes and formats instructions of one image, caching the text by address.
#[derive(Debug, Default)]
pub struct Disassembler {
    cache: FxHashMap<Addr, String>,
}

fn decode(image: &Image, pc: Addr) -> Option<Instruction> {
    let bytes = image.code_at(pc, 15);
    let mut decoder = Decoder::try_with_ip(64, bytes, pc, DecoderOptions::NONE).ok()?;
    if !decoder.can_decode() {
        return None;
    }
    let instruction = decoder.decode();
    (!instruction.is_invalid()).then_some(instruction)
}

impl Disassembler {
    /// The instruction at `pc` in Intel syntax, or `None` when there is no valid one there.
    pub fn text(&mut self, image: &Image, pc: Addr) -> Option<String> {
        if let Some(text) = self.cache.get(&pc) {
            return Some(text.clone());
        }
        let instruction = decode(image, pc)?;
        let mut text = String::new();
        IntelFormatter::new().format(&instruction, &mut text);
        // Name the target of a direct call or jump, as objdump does.
        let target = instruction.near_branch_target();
        if target != 0
            && let Some((name, _)) = image.symbols.iter().find(|&(_, &addr)| addr == target)
        {
            text.push_str(&format!(" <{name}>"));
        }
        self.cache.insert(pc, text.clone());
        Some(text)
    }

    /// The call instruction that returns to `ret`: the address and text of the call just
    /// before it (tried at the lengths a call can have), if there is one.
    pub fn call_before(&mut self, image: &Image, ret: Addr) -> Option<(Addr, String)> {
        for len in [5u64, 2, 3, 6, 7, 4, 8, 9] {
            let Some(pc) = ret.checked_sub(len) else {
                continue;
            };
            if let Some(i) = decode(image, pc)
                && i.len() as u64 == len
                && i.mnemonic() == Mnemonic::Call
            {
                return self.text(image, pc).map(|text| (pc, text));
            }
        }
        None
    }
}

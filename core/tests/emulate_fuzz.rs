//! Property tests for the emulator's parsers: damaged guest executables, random bytes and random
//! hex text given to the ELF loader and the raw-code reader are refused with a message, never a
//! panic; a damaged executable that still loads runs to some exit within its budget.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use heapscope_core::emulate::{self, Image, Options, parse_hex};
use heapscope_core::{AllocatorKind, HeapConfig};
use proptest::prelude::*;

fn guest() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/guests/linked_list.elf");
    std::fs::read(path).expect("the guest is committed")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_executables_are_refused_or_run_within_budget(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = guest();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        match Image::parse_elf(&bytes, "damaged.elf") {
            Err(e) => prop_assert!(!e.to_string().is_empty()),
            Ok(image) => {
                let options = Options {
                    max_insns: 20_000,
                    timeout: Duration::from_millis(500),
                    ..Options::default()
                };
                // Whatever the damage, the run ends (or is refused) with a reason.
                if let Ok(run) =
                    emulate::run(&image, AllocatorKind::CheckedBump, &HeapConfig::default(), &options)
                {
                    prop_assert!(!run.exit.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn random_bytes_are_not_an_executable(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(Image::parse_elf(&bytes, "random.bin").is_err());
    }

    #[test]
    fn hex_text_parses_or_says_why(text in "[0-9a-fA-Fx, \\n;#g-]{0,64}") {
        match parse_hex(&text) {
            Ok(code) => {
                // Whatever parsed runs as raw code to an exit, within budget.
                if let Ok(image) = Image::from_code(&code, 0, "fuzz") {
                    let options = Options {
                        max_insns: 10_000,
                        timeout: Duration::from_millis(500),
                        ..Options::default()
                    };
                    let _ = emulate::run(&image, AllocatorKind::Bump, &HeapConfig::default(), &options);
                }
            }
            Err(why) => prop_assert!(!why.is_empty()),
        }
    }
}

//! Property tests for the trace importers and the scenario reader: whatever the input (random
//! bytes, lines pieced together from the formats' fragments, damaged valid samples), detecting
//! and importing never panics, a refusal names a line inside the text, an imported trace keeps
//! its flags in order, and it survives export to scenario RON and back. `Scenario::from_ron`
//! gets the same treatment.

// Tests may unwrap, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use heapscope_core::import::{Format, detect, import};
use heapscope_core::{Scenario, ScenarioError};
use proptest::prelude::*;

const MALLOCLAB: &str = "20000\r\n4\r\n9\r\n1\r\na 0 512\r\na 1 128\r\nr 0 640\r\nf 1\r\n\
                         f -1\r\na 2 \r\na 3 16\r\nf 0\r\nf 3\r\n\r\n";

const MTRACE: &str = "= Start\n@ ./prog:[0x4005d4] + 0x1a3b260 0x10\n\
                      @ ./prog:(main+0x1f)[0x4005f3] + 0x1a3b280 0\n+ 0x1a3b2a0 20\n\
                      @ ./prog:[0x400610] < 0x1a3b260\n@ ./prog:[0x400610] > 0x1a3b2c0 0x40\n\
                      @ /lib/libc.so.6:(clone+0x6d)[0x7f1c2d3e4f50] - 0x1a3b2c0\n\
                      - 0x1a3b2c0\n- 0xdead0\n! 0x1a3b280 0x1000\n+ (nil) 0x100000\n\
                      - (nil)\n= End\n";

const LTRACE: &str = "__libc_start_main(0x400566, 1, 0x7ffd, 0x4005f0 <unfinished ...>\n\
                      malloc(16)                     = 0x602010\n\
                      prog->calloc(4, 8)             = 0x602030\n\
                      [pid 12] realloc(0x602010, 32) = 0x602060\n\
                      12 realloc(0, 8)               = 0x602090\n\
                      @villoc(checkpoint, A) = <void>\n\
                      [pid 13] malloc(24 <unfinished ...>\n\
                      [pid 13] <... malloc resumed> ) = 0x6020c0\n\
                      malloc(99999999999) = (nil)\n\
                      free(0x602060) = <void>\n\
                      free(0x602060 <no return ...>\n\
                      --- SIGABRT (Aborted) ---\n\
                      +++ killed by SIGABRT +++\n";

const SCENARIO: &str = include_str!("../../scenarios/first-steps.ron");

const SMALL_SCENARIO: &str = "Scenario(\n  name: \"t\",\n  description: r#\"a *b*\"#,\n  \
                              allocators: [(kind: \"checked-bump\", config: (base: 0x1000, \
                              size: 4096)), (kind: \"bump\")],\n  ops: [Alloc(id: 1, size: 9), \
                              Realloc(id: 1, size: 20), Write(id: 1, offset: 2, bytes: [1, 2]), \
                              Free(id: 1), FreeNull, Mark(label: \"done\")],\n  \
                              flags: [(step: 3, message: \"line 4: x\")],\n)\n";

/// Number of lines an error may point at: every line, plus the one after a final newline.
fn line_count(text: &str) -> usize {
    text.split('\n').count()
}

/// Detects and imports `text` in every format; checks what comes back.
fn check_import(text: &str) {
    let detected = detect(text);
    if let Some(format) = detected {
        assert!(Format::ALL.contains(&format));
    }
    for format in Format::ALL {
        match import(text, format) {
            Ok(trace) => {
                assert!(
                    trace.flags.windows(2).all(|w| w[0].step <= w[1].step),
                    "{format}: flags out of order"
                );
                assert!(
                    trace.flags.iter().all(|f| f.step <= trace.ops.len()),
                    "{format}: a flag points past the operations"
                );
                let scenario = Scenario::from_trace("fuzz", trace.clone());
                let ron = scenario.to_ron().unwrap();
                let back = Scenario::from_ron(&ron, Path::new("fuzz.ron"))
                    .unwrap_or_else(|e| panic!("{format}: exported RON does not read: {e}"));
                assert_eq!(back.ops, trace.ops, "{format}");
                assert_eq!(back.flags, trace.flags, "{format}");
            }
            Err(e) => {
                let line = e
                    .line()
                    .unwrap_or_else(|| panic!("{format}: error without a line: {e}"));
                assert!(
                    (1..=line_count(text)).contains(&line),
                    "{format}: line {line} of {}: {e}",
                    line_count(text)
                );
                assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
            }
        }
    }
}

/// Reads `text` as a scenario; checks that a refusal names a line inside it.
fn check_ron(text: &str) {
    match Scenario::from_ron(text, Path::new("fuzz.ron")) {
        Ok(scenario) => {
            // What reads writes back and reads again the same.
            let ron = scenario.to_ron().unwrap();
            let back = Scenario::from_ron(&ron, Path::new("again.ron")).unwrap();
            assert_eq!(back, scenario);
        }
        Err(ScenarioError::Parse { line, column, .. }) => {
            assert!(
                (1..=line_count(text)).contains(&line),
                "line {line} of {}",
                line_count(text)
            );
            assert!(column >= 1);
        }
        Err(e) => panic!("from_ron refused without a position: {e}"),
    }
}

/// One way to damage a text.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    SwapLines(usize, usize),
    DropLine(usize),
    RepeatLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (at, any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        at.prop_map(Mutation::Delete),
        at.prop_map(Mutation::Truncate),
        (at, at).prop_map(|(i, j)| Mutation::SwapLines(i, j)),
        at.prop_map(Mutation::DropLine),
        at.prop_map(Mutation::RepeatLine),
    ]
}

/// The lines of `bytes` (at least one).
fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// `text` damaged by `mutations`, as bytes read leniently (as `import_file` does).
fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip(i, b) => {
                if let Some(byte) = bytes.get_mut(i % len) {
                    *byte ^= b;
                }
            }
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Mutation::Delete(i) => {
                if !bytes.is_empty() {
                    bytes.remove(i % len);
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            Mutation::SwapLines(i, j) => {
                let mut lines = split_lines(&bytes);
                let n = lines.len();
                lines.swap(i % n, j % n);
                bytes = lines.join(&b'\n');
            }
            Mutation::DropLine(i) => {
                let mut lines = split_lines(&bytes);
                let n = lines.len();
                lines.remove(i % n);
                bytes = lines.join(&b'\n');
            }
            Mutation::RepeatLine(i) => {
                let mut lines = split_lines(&bytes);
                let n = lines.len();
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
                bytes = lines.join(&b'\n');
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A number as the formats write them, often small so that addresses and ids collide.
fn num() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..6).prop_map(|n| n.to_string()),
        (0u64..0x40).prop_map(|n| format!("{:#x}", n * 16)),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!("{n:#x}")),
        Just("-1".to_owned()),
        Just("(nil)".to_owned()),
        Just("0".to_owned()),
        Just("".to_owned()),
    ]
}

/// A line built from fragments of all three formats.
fn fragment_line() -> impl Strategy<Value = String> {
    let n = num;
    prop_oneof![
        // malloc lab
        n().prop_map(|a| a),
        (n(), n()).prop_map(|(i, s)| format!("a {i} {s}")),
        (n(), n()).prop_map(|(i, s)| format!("r {i} {s}")),
        n().prop_map(|i| format!("f {i}")),
        // mtrace
        Just("= Start".to_owned()),
        Just("= End".to_owned()),
        (n(), n()).prop_map(|(p, s)| format!("+ {p} {s}")),
        n().prop_map(|p| format!("- {p}")),
        n().prop_map(|p| format!("< {p}")),
        (n(), n()).prop_map(|(p, s)| format!("> {p} {s}")),
        (n(), n()).prop_map(|(p, s)| format!("! {p} {s}")),
        (n(), n(), n()).prop_map(|(c, p, s)| format!("@ ./prog:[{c}] + {p} {s}")),
        n().prop_map(|p| format!("@ /lib/libc.so.6:(clone+0x6d)[0x7f00] - {p}")),
        // ltrace
        (n(), n()).prop_map(|(s, r)| format!("malloc({s}) = {r}")),
        (n(), n(), n()).prop_map(|(c, s, r)| format!("calloc({c}, {s}) = {r}")),
        (n(), n(), n()).prop_map(|(p, s, r)| format!("realloc({p}, {s}) = {r}")),
        n().prop_map(|p| format!("free({p}) = <void>")),
        n().prop_map(|p| format!("free({p} <no return ...>")),
        (n(), n()).prop_map(|(pid, s)| format!("[pid {pid}] malloc({s} <unfinished ...>")),
        (n(), n()).prop_map(|(pid, r)| format!("[pid {pid}] <... malloc resumed> ) = {r}")),
        (n(), n()).prop_map(|(pid, r)| format!("{pid} prog->malloc(8) = {r}")),
        "[ -~]{0,12}".prop_map(|t| format!("@villoc({t}) = <void>")),
        Just("--- SIGSEGV (Segmentation fault) ---".to_owned()),
        Just("+++ exited (status 0) +++".to_owned()),
        // anything
        "[ -~]{0,20}",
    ]
}

fn fragment_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(fragment_line(), 0..24),
        prop::sample::select(vec!["\n", "\r\n"]),
        any::<bool>(),
    )
        .prop_map(|(lines, end, last)| {
            let mut text = lines.join(end);
            if last {
                text.push_str(end);
            }
            text
        })
}

/// A line of RON built from scenario fragments.
fn ron_fragment() -> impl Strategy<Value = String> {
    let n = num;
    prop_oneof![
        Just("Scenario(".to_owned()),
        Just(")".to_owned()),
        Just("name: \"x\",".to_owned()),
        Just("description: r#\"d\"#,".to_owned()),
        Just("allocators: [".to_owned()),
        Just("(kind: \"bump\"),".to_owned()),
        Just("(kind: \"checked-bump\", config: (size: 4096)),".to_owned()),
        Just("],".to_owned()),
        Just("ops: [".to_owned()),
        (n(), n()).prop_map(|(i, s)| format!("Alloc(id: {i}, size: {s}),")),
        n().prop_map(|i| format!("Free(id: {i}),")),
        Just("FreeNull,".to_owned()),
        Just("trace: \"t.rep\",".to_owned()),
        Just("format: \"mtrace\",".to_owned()),
        Just("flags: [(step: 1, message: \"m\")],".to_owned()),
        Just("// comment".to_owned()),
        "[ -~]{0,16}",
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        check_import(&text);
        check_ron(&text);
    }

    #[test]
    fn lines_from_format_fragments_never_panic(text in fragment_text()) {
        check_import(&text);
        // Behind a malloc lab header the same lines go down the operation parser.
        check_import(&format!("1\n4\n8\n1\n{text}"));
    }

    #[test]
    fn damaged_samples_never_panic(
        sample in prop::sample::select(vec![MALLOCLAB, MTRACE, LTRACE]),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        check_import(&mutate(sample, &mutations));
    }

    #[test]
    fn ron_from_fragments_never_panics(
        lines in prop::collection::vec(ron_fragment(), 0..20),
    ) {
        check_ron(&lines.join("\n"));
    }

    #[test]
    fn damaged_scenarios_never_panic(
        sample in prop::sample::select(vec![SCENARIO, SMALL_SCENARIO]),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        check_ron(&mutate(sample, &mutations));
    }
}

#[test]
fn the_samples_import_in_their_detected_format() {
    for (sample, format) in [
        (MALLOCLAB, Format::Malloclab),
        (MTRACE, Format::Mtrace),
        (LTRACE, Format::Ltrace),
    ] {
        assert_eq!(detect(sample), Some(format));
        let trace = import(sample, format).unwrap();
        assert!(!trace.ops.is_empty() && !trace.flags.is_empty(), "{format}");
        check_import(sample);
    }
    check_ron(SCENARIO);
    check_ron(SMALL_SCENARIO);
    assert!(Scenario::from_ron(SMALL_SCENARIO, Path::new("s.ron")).is_ok());
}

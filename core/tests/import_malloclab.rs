//! Every CS:APP malloc lab trace in the shared trace folder imports, with the operations its
//! header announces (or a flag saying otherwise), and the small ones replay on every allocator.
//!
//! The traces are not in the repository (their licence forbids copying them): they are read
//! from `$HEAPSCOPE_MALLOCLAB_TRACES`, or else from `shared/traces/malloclab` beside the
//! repository. The test is skipped, with a note, when neither exists.

// Tests may unwrap, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use heapscope_core::import::{Format, detect, import_file};
use heapscope_core::{AllocatorKind, HeapConfig, Op, Replayer, Trail};

fn trace_dir() -> PathBuf {
    std::env::var_os("HEAPSCOPE_MALLOCLAB_TRACES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/malloclab"),
        PathBuf::from,
    )
}

/// The header's operation count and the operation lines, counted without the importer.
fn census(text: &str) -> (u64, u64, Vec<char>) {
    let mut tokens = text.split_whitespace();
    let header: Vec<i64> = tokens
        .by_ref()
        .take(4)
        .map(|t| t.parse().unwrap())
        .collect();
    let kinds = text
        .lines()
        .skip_while(|l| l.split_whitespace().all(|t| t.parse::<i64>().is_ok()))
        .filter_map(|l| l.trim().chars().next())
        .collect();
    (header[1] as u64, header[2] as u64, kinds)
}

#[test]
fn every_malloclab_trace_imports_with_its_header_count() {
    let dir = trace_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "note: {} is absent; malloc lab traces not checked",
            dir.display()
        );
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rep"))
        .collect();
    paths.sort();
    let mut mismatched = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(detect(&text), Some(Format::Malloclab), "{}", path.display());
        let trace = import_file(path, None).unwrap_or_else(|e| panic!("{e}"));
        let (ids, announced, kinds) = census(&text);
        assert_eq!(trace.ops.len(), kinds.len(), "{}", path.display());
        for (op, kind) in trace.ops.iter().zip(&kinds) {
            let ok = matches!(
                (op, kind),
                (Op::Alloc { .. }, 'a')
                    | (Op::Realloc { .. }, 'r')
                    | (Op::Free { .. } | Op::FreeNull, 'f')
            );
            assert!(ok, "{}: {op} from a `{kind}` line", path.display());
            assert!(
                op.id().is_none_or(|id| id < ids),
                "{}: {op}",
                path.display()
            );
        }
        let count_flag = trace
            .flags
            .iter()
            .any(|f| f.message.starts_with("the header says"));
        assert_eq!(
            count_flag,
            trace.ops.len() as u64 != announced,
            "{}: header {announced}, imported {}",
            path.display(),
            trace.ops.len()
        );
        if count_flag {
            mismatched.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        assert!(
            trace.flags.windows(2).all(|w| w[0].step <= w[1].step)
                && trace.flags.iter().all(|f| f.step <= trace.ops.len()),
            "{}",
            path.display()
        );
        // The small traces replay on every allocator without a panic.
        if trace.ops.len() <= 2000 {
            for kind in AllocatorKind::ALL {
                let mut replay = Replayer::new(kind.build(&HeapConfig::default()).unwrap());
                for op in &trace.ops {
                    replay.apply(op, &mut Trail::off());
                }
            }
        }
    }
    assert!(!paths.is_empty(), "no .rep files in {}", dir.display());
    eprintln!(
        "{} malloc lab traces imported; header count differs in: {mismatched:?}",
        paths.len()
    );
}

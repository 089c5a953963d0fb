//! Scenarios compiled into the binary, so the app opens on something useful anywhere.

use heapscope_core::Scenario;
use heapscope_core::import::{detect, import};

/// A scenario shipped inside the binary.
#[derive(Debug, Clone, Copy)]
pub struct Bundled {
    /// File name under `scenarios/`.
    pub file: &'static str,
    /// RON text.
    pub text: &'static str,
}

/// A trace file a bundled scenario names with `trace:`, shipped inside the binary too.
#[derive(Debug, Clone, Copy)]
pub struct BundledTrace {
    /// Path as the scenario writes it (relative to `scenarios/`).
    pub path: &'static str,
    /// The trace's text.
    pub text: &'static str,
}

/// Includes `scenarios/$file` as a [`Bundled`].
macro_rules! bundle {
    ($file:literal) => {
        Bundled {
            file: $file,
            text: include_str!(concat!("../../scenarios/", $file)),
        }
    };
}

/// Every bundled scenario; the first is the default.
pub const BUNDLED: &[Bundled] = &[
    bundle!("first-steps.ron"),
    bundle!("substrate-worst-case.ron"),
    bundle!("power-of-two-waste.ron"),
    bundle!("coalescing.ron"),
    bundle!("unstack-forward-coalescing.ron"),
    bundle!("checked-bump-catches-bugs.ron"),
    bundle!("nutmeg-hello-world.ron"),
    bundle!("plywood-fragmentation.ron"),
    bundle!("realloc-in-place.ron"),
];

/// The trace files bundled scenarios refer to.
pub const BUNDLED_TRACES: &[BundledTrace] = &[BundledTrace {
    path: "traces/plywood-fragmentation.rep",
    text: include_str!("../../scenarios/traces/plywood-fragmentation.rep"),
}];

/// The scenario the app opens with.
pub fn default_scenario() -> &'static Bundled {
    &BUNDLED[0]
}

/// Fills in the operations of a bundled scenario (from `file`) that names a `trace`, from the
/// bundled copy of that trace: a bundled scenario has no directory to read it from.
pub fn load_bundled_trace(file: &str, scenario: &mut Scenario) -> Result<(), String> {
    let Some(path) = &scenario.trace else {
        return Ok(());
    };
    let trace = BUNDLED_TRACES
        .iter()
        .find(|t| t.path == path)
        .ok_or_else(|| format!("{file}: the trace `{path}` is not bundled"))?;
    let format = scenario
        .format
        .or_else(|| detect(trace.text))
        .ok_or_else(|| format!("{file}: {path}: the trace's format is not recognised"))?;
    let imported = import(trace.text, format).map_err(|e| format!("{file}: {path}: {e}"))?;
    scenario.ops = imported.ops;
    scenario.flags = imported.flags;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every `.ron` directly under `scenarios/` is offered in the picker, and each bundled one
    /// reads the same from the binary as from disk (its trace included).
    #[test]
    fn every_scenario_file_is_bundled_and_loads_as_from_disk() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "ron"))
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut bundled: Vec<String> = BUNDLED.iter().map(|b| b.file.to_owned()).collect();
        bundled.sort();
        assert_eq!(bundled, on_disk);
        assert_eq!(default_scenario().file, "first-steps.ron");
        for b in BUNDLED {
            let mut scenario = Scenario::from_ron(b.text, Path::new(b.file)).unwrap();
            load_bundled_trace(b.file, &mut scenario).unwrap();
            let from_disk = Scenario::load(&dir.join(b.file)).unwrap();
            assert_eq!(scenario, from_disk, "{}", b.file);
            assert!(!scenario.ops.is_empty(), "{}", b.file);
        }
    }

    #[test]
    fn a_trace_that_is_not_bundled_is_an_error_not_an_empty_scenario() {
        let mut scenario = Scenario::from_ron(
            r#"Scenario(name: "t", trace: "traces/elsewhere.rep")"#,
            Path::new("t.ron"),
        )
        .unwrap();
        let err = load_bundled_trace("t.ron", &mut scenario).unwrap_err();
        assert!(err.contains("traces/elsewhere.rep"), "{err}");
    }
}

//! Scenarios compiled into the binary, so the app opens on something useful anywhere.

/// A scenario shipped inside the binary.
#[derive(Debug, Clone, Copy)]
pub struct Bundled {
    /// File name under `scenarios/`.
    pub file: &'static str,
    /// RON text.
    pub text: &'static str,
}

/// Every bundled scenario; the first is the default.
pub const BUNDLED: &[Bundled] = &[Bundled {
    file: "first-steps.ron",
    text: include_str!("../../scenarios/first-steps.ron"),
}];

/// The scenario the app opens with.
pub fn default_scenario() -> &'static Bundled {
    &BUNDLED[0]
}

//! Settings that persist across runs (eframe storage), kept apart from runtime state.

use std::path::PathBuf;

use heapscope_core::AllocatorKind;
use serde::{Deserialize, Serialize};

/// How many recent files the Open menu remembers.
const RECENT_LIMIT: usize = 10;

/// The persisted part of the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Dark (true) or light theme.
    pub dark: bool,
    /// Playback speed, steps per second.
    pub steps_per_second: f32,
    /// Recently opened files, newest first.
    pub recent: Vec<PathBuf>,
    /// Allocators whose lanes are hidden.
    pub hidden: Vec<AllocatorKind>,
    /// Whether the scenario description panel is open.
    pub show_description: bool,
    /// Whether every lane of the heap map uses one bytes-per-pixel scale.
    pub shared_scale: bool,
    /// Whether the dock under the heap map (metrics, violations) is open.
    pub show_dock: bool,
    /// Which tab of the dock is shown.
    pub dock_tab: DockTab,
    /// Compare mode: every chosen allocator side by side, overlaid metrics.
    pub compare: bool,
}

/// The tabs of the dock under the heap map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DockTab {
    /// Plots over the whole timeline and the per-trace table.
    #[default]
    Metrics,
    /// Every failed operation and violation.
    Violations,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dark: true,
            steps_per_second: 4.0,
            recent: Vec::new(),
            hidden: Vec::new(),
            show_description: true,
            shared_scale: false,
            show_dock: true,
            dock_tab: DockTab::Metrics,
            compare: false,
        }
    }
}

impl Settings {
    /// Key under which eframe stores the settings.
    pub const KEY: &str = "heapscope.settings";

    /// Parses stored settings; `Err` carries a notice for the user when they are corrupt.
    pub fn from_stored(text: Option<String>) -> (Self, Option<String>) {
        match text {
            None => (Self::default(), None),
            Some(text) => match ron::from_str(&text) {
                Ok(settings) => (settings, None),
                Err(e) => (
                    Self::default(),
                    Some(format!(
                        "Saved settings were unreadable ({e}); using defaults."
                    )),
                ),
            },
        }
    }

    /// Remembers `path` as the most recent file.
    pub fn remember(&mut self, path: PathBuf) {
        self.recent.retain(|p| p != &path);
        self.recent.insert(0, path);
        self.recent.truncate(RECENT_LIMIT);
    }

    /// Whether `kind`'s lane is shown.
    pub fn shows(&self, kind: AllocatorKind) -> bool {
        !self.hidden.contains(&kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_settings_fall_back_to_defaults_with_a_notice() {
        let (settings, notice) = Settings::from_stored(Some("Settings(dark: maybe".into()));
        assert_eq!(settings, Settings::default());
        assert!(notice.is_some_and(|n| n.contains("unreadable")));
        let stored = ron::to_string(&Settings {
            dark: false,
            ..Settings::default()
        })
        .unwrap();
        let (settings, notice) = Settings::from_stored(Some(stored));
        assert!(!settings.dark && notice.is_none());
    }

    #[test]
    fn recent_files_are_unique_newest_first_and_bounded() {
        let mut settings = Settings::default();
        for i in 0..12 {
            settings.remember(PathBuf::from(format!("{i}.ron")));
        }
        settings.remember(PathBuf::from("5.ron"));
        assert_eq!(settings.recent.len(), RECENT_LIMIT);
        assert_eq!(settings.recent[0], PathBuf::from("5.ron"));
        assert_eq!(
            settings
                .recent
                .iter()
                .filter(|p| p.ends_with("5.ron"))
                .count(),
            1
        );
    }
}

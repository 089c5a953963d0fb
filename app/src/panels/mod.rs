//! The app's panels, one per file. Each reads a [`View`] and pushes [`Command`]s.

pub mod allocator_state;
pub mod compare;
pub mod description;
pub mod dock;
pub mod free_lists;
pub mod heap_map;
pub mod inspector;
pub mod loading;
pub mod metrics;
pub mod this_step;
pub mod timeline;
pub mod toolbar;
pub mod violations;

use crate::command::{Command, Selection};
use crate::session::{Lane, Session};
use crate::settings::Settings;

/// What the panels read while drawing one frame.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// A file being opened in the background.
    pub loading: Option<&'a crate::loader::Loading>,
    /// The loaded scenario.
    pub session: &'a Session,
    /// Persisted settings.
    pub settings: &'a Settings,
    /// The selected block.
    pub selection: Option<Selection>,
    /// Whether playback is running.
    pub playing: bool,
}

impl<'a> View<'a> {
    /// The lanes the user wants to see.
    pub fn visible_lanes(&self) -> impl Iterator<Item = &'a Lane> + 'a {
        let settings = self.settings;
        self.session
            .lanes
            .iter()
            .filter(move |l| settings.shows(l.kind))
    }
}

/// Where panels put their requests.
pub type Commands = Vec<Command>;

/// Bytes in a short, rounded form for axes and tables ("12.3 KiB").
pub fn short_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n.abs();
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let sign = if n < 0.0 { "-" } else { "" };
    if unit == 0 || value >= 100.0 {
        format!("{sign}{value:.0} {}", UNITS[unit])
    } else {
        format!("{sign}{value:.1} {}", UNITS[unit])
    }
}

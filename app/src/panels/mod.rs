//! The app's panels, one per file. Each reads a [`View`] and pushes [`Command`]s.

pub mod allocator_state;
pub mod compare;
pub mod description;
pub mod dock;
pub mod free_lists;
pub mod guest_reports;
pub mod heap_map;
pub mod inspector;
pub mod loading;
pub mod metrics;
pub mod this_step;
pub mod timeline;
pub mod toolbar;
pub mod violations;

use eframe::egui;

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

/// `counter` of `lane` over `range`, decimated to `columns`, kept between frames: the series
/// never change once recorded, so only a new range or width recomputes it.
pub fn decimated_points(
    ctx: &egui::Context,
    lane: &Lane,
    counter: crate::series::Counter,
    range: std::ops::Range<usize>,
    columns: usize,
) -> std::sync::Arc<Vec<[f64; 2]>> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        std::ptr::from_ref(&lane.series) as usize,
        lane.timeline.len(),
        counter as u8,
        range.start,
        range.end,
        columns,
    )
        .hash(&mut h);
    let key = h.finish();
    // One slot per lane, counter and width: the scrubber and the plots do not evict each other.
    let id = egui::Id::unique(("decimated_points", lane.kind, counter as u8, columns));
    let cached: Option<(u64, std::sync::Arc<Vec<[f64; 2]>>)> = ctx.data(|d| d.get_temp(id));
    if let Some((k, points)) = cached
        && k == key
    {
        return points;
    }
    let points =
        std::sync::Arc::new(
            lane.series
                .decimated(&lane.timeline, counter, range, columns),
        );
    ctx.data_mut(|d| d.insert_temp(id, (key, std::sync::Arc::clone(&points))));
    points
}

//! Exports: metrics per step as CSV (the same columns as `heapscope replay --format csv`), the
//! loaded trace as a self-contained scenario RON, and parts of the window as PNG.
//!
//! File writing runs on a worker thread; the result comes back over a channel the app polls.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};

use eframe::egui::{self, ColorImage, Id, Rect};
use heapscope_core::metrics::StepMetrics;
use heapscope_core::scenario::AllocatorSpec;
use heapscope_core::{Replayer, Scenario, Trail};

use crate::cli::replay::{CSV_HEADER, csv_row};

/// What can be exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    /// Metrics per step and allocator, as CSV.
    MetricsCsv,
    /// The loaded operations as a scenario RON file.
    ScenarioRon,
    /// The heap map as drawn, as PNG.
    HeapMapPng,
    /// The metrics plots as drawn, as PNG.
    PlotsPng,
}

impl ExportKind {
    /// Suggested file name and the extension filter for the save dialog.
    pub fn file_name_and_extension(self, stem: &str) -> (String, &'static str) {
        let (suffix, ext) = match self {
            ExportKind::MetricsCsv => ("-metrics", "csv"),
            ExportKind::ScenarioRon => ("", "ron"),
            ExportKind::HeapMapPng => ("-heap-map", "png"),
            ExportKind::PlotsPng => ("-metrics", "png"),
        };
        (format!("{stem}{suffix}.{ext}"), ext)
    }

    /// Where panels record the rectangle a PNG export crops to.
    pub fn rect_id(self) -> Id {
        Id::unique(("heapscope_export_rect", self as u8))
    }
}

/// Remembers where `kind`'s part of the window was drawn this frame.
pub fn remember_rect(ctx: &egui::Context, kind: ExportKind, rect: Rect) {
    ctx.data_mut(|d| d.insert_temp(kind.rect_id(), rect));
}

/// Where `kind`'s part of the window was last drawn.
pub fn remembered_rect(ctx: &egui::Context, kind: ExportKind) -> Option<Rect> {
    ctx.data(|d| d.get_temp(kind.rect_id()))
}

/// The part of a full-window screenshot inside `rect` (in points).
pub fn crop(image: &ColorImage, rect: Rect, pixels_per_point: f32) -> ColorImage {
    image.region(&rect, Some(pixels_per_point))
}

/// Writes metrics per step for every allocator in `specs`, step by step, in the row order of
/// `heapscope replay --format csv`.
pub fn metrics_csv(
    scenario: &Scenario,
    specs: &[AllocatorSpec],
    out: &mut dyn Write,
) -> Result<(), String> {
    let mut lanes = Vec::with_capacity(specs.len());
    for spec in specs {
        let heap = spec.kind.build(&spec.config).map_err(|e| e.to_string())?;
        lanes.push((spec.kind, Replayer::new(heap)));
    }
    let io = |e: std::io::Error| e.to_string();
    writeln!(out, "{CSV_HEADER}").map_err(io)?;
    let mut trail = Trail::off();
    for (step, op) in scenario.ops.iter().enumerate() {
        for (kind, replay) in &mut lanes {
            let outcome = replay.apply(op, &mut trail);
            let m = StepMetrics::of(&replay.heap().inspect());
            writeln!(out, "{}", csv_row(step, *kind, op, &outcome.result, &m)).map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

/// The scenario as RON with its operations written out, so the file stands alone (a scenario
/// that referenced a trace file gets that trace's operations inline).
pub fn scenario_ron(scenario: &Scenario) -> Result<String, String> {
    let standalone = Scenario {
        trace: None,
        format: None,
        ..scenario.clone()
    };
    standalone.to_ron().map_err(|e| e.to_string())
}

/// A finished export: what was written where, or why not.
pub type ExportResult = Result<PathBuf, String>;

/// Runs file exports on worker threads and hands back their results.
#[derive(Debug)]
pub struct Exporter {
    done_tx: Sender<ExportResult>,
    done_rx: Receiver<ExportResult>,
    running: usize,
}

impl Default for Exporter {
    fn default() -> Self {
        let (done_tx, done_rx) = channel();
        Self {
            done_tx,
            done_rx,
            running: 0,
        }
    }
}

impl Exporter {
    /// Writes `scenario`'s metrics CSV (or its RON) to `path` on a worker thread.
    pub fn spawn(
        &mut self,
        ctx: &egui::Context,
        kind: ExportKind,
        scenario: Scenario,
        specs: Vec<AllocatorSpec>,
        path: PathBuf,
    ) {
        let done = self.done_tx.clone();
        let ctx = ctx.clone();
        self.running += 1;
        std::thread::spawn(move || {
            let result = match kind {
                ExportKind::MetricsCsv => {
                    write_with(&path, |out| metrics_csv(&scenario, &specs, out))
                }
                _ => scenario_ron(&scenario).and_then(|text| {
                    write_with(&path, |out| {
                        out.write_all(text.as_bytes()).map_err(|e| e.to_string())
                    })
                }),
            };
            // The app may have quit meanwhile; nobody is left to tell.
            let _ = done.send(result.map(|()| path));
            ctx.request_repaint();
        });
    }

    /// A sender for results produced elsewhere (the PNG screenshot callback).
    pub fn sender(&self) -> Sender<ExportResult> {
        self.done_tx.clone()
    }

    /// Results that arrived since the last call.
    pub fn finished(&mut self) -> Vec<ExportResult> {
        let results: Vec<_> = self.done_rx.try_iter().collect();
        self.running = self.running.saturating_sub(results.len());
        results
    }

    /// Whether a worker is still writing.
    pub fn busy(&self) -> bool {
        self.running > 0
    }
}

fn write_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), String>,
) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BufWriter::new(file);
    write(&mut out).map_err(|e| format!("{}: {e}", path.display()))?;
    out.flush().map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundled::default_scenario;

    fn scenario() -> Scenario {
        let b = default_scenario();
        Scenario::from_ron(b.text, Path::new(b.file)).unwrap()
    }

    #[test]
    fn metrics_csv_matches_the_command_line_csv() {
        let scenario = scenario();
        let dir = std::env::temp_dir().join(format!("heapscope-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.ron");
        std::fs::write(&file, default_scenario().text).unwrap();
        let mut ours = Vec::new();
        metrics_csv(&scenario, &scenario.allocator_specs(), &mut ours).unwrap();
        let mut cli = Vec::new();
        let args = crate::cli::replay::parse(&[
            file.display().to_string(),
            "--format".to_owned(),
            "csv".to_owned(),
        ])
        .unwrap();
        crate::cli::replay::run(&args, &mut cli).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(cli).unwrap()
        );
        let lines = scenario.ops.len() * scenario.allocator_specs().len() + 1;
        let mut again = Vec::new();
        metrics_csv(&scenario, &scenario.allocator_specs(), &mut again).unwrap();
        assert_eq!(String::from_utf8(again).unwrap().lines().count(), lines);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exported_ron_stands_alone_and_reads_back_the_same_operations() {
        let mut scenario = scenario();
        scenario.trace = Some("elsewhere.rep".to_owned());
        let text = scenario_ron(&scenario).unwrap();
        let back = Scenario::from_ron(&text, Path::new("back.ron")).unwrap();
        assert_eq!(back.ops, scenario.ops);
        assert_eq!(back.name, scenario.name);
        assert!(back.trace.is_none());
    }

    #[test]
    fn crop_takes_the_rectangle_in_pixels() {
        // 4 x 2 points at 2 pixels per point: an 8 x 4 image whose pixel (x, y) has red = x.
        let mut image = ColorImage::filled([8, 4], egui::Color32::BLACK);
        for y in 0..4 {
            for x in 0..8 {
                image.pixels[y * 8 + x] = egui::Color32::from_rgb(x as u8, y as u8, 0);
            }
        }
        let part = crop(
            &image,
            Rect::from_min_max(egui::pos2(1.0, 1.0), egui::pos2(3.0, 2.0)),
            2.0,
        );
        assert_eq!(part.size, [4, 2]);
        assert_eq!(part.pixels[0], egui::Color32::from_rgb(2, 2, 0));
        assert_eq!(part.pixels[7], egui::Color32::from_rgb(5, 3, 0));
    }
}

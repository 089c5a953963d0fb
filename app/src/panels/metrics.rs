//! Metrics over the whole timeline: requested live vs held vs footprint, free-space
//! fragmentation and the largest free block, with the current step marked (click or drag a plot
//! to seek), and the per-trace table (J&W #3/#4, utilization, failures).
//!
//! Byte series hold every step and are decimated to min/max per pixel column when drawn; the
//! layout measures are sampled at evenly spaced steps (see [`crate::series`]).

use eframe::egui::{self, Color32, Id, RichText, ScrollArea, Ui};
use egui_plot::{GridMark, HoverPosition, Line, LineStyle, Plot, PlotPoints, VLine};
use heapscope_core::AllocatorKind;

use super::{Commands, View, short_bytes};
use crate::command::Command;
use crate::palette;
use crate::series::{Counter, LaneSeries};
use crate::session::Lane;

/// Width kept for the per-trace table beside the plots.
const TABLE_WIDTH: f32 = 560.0;

/// How a plot's values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Bytes,
    Ratio,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Unit::Bytes => short_bytes(value),
            Unit::Ratio => format!("{value:.2}"),
        }
    }
}

/// Where a curve's points come from.
enum Source<'a> {
    /// A counter of every step, decimated to the plot's width.
    Steps(&'a Lane, Counter),
    /// Sample steps, drawn as they are.
    Samples(Vec<[f64; 2]>),
}

struct Curve<'a> {
    name: String,
    colour: Color32,
    dashed: bool,
    source: Source<'a>,
}

/// The lanes the metrics are drawn for: every visible lane in compare mode, else the chosen one.
fn plotted_lanes<'a>(ui: &mut Ui, view: &View<'a>) -> Vec<&'a Lane> {
    let visible: Vec<&Lane> = view.visible_lanes().collect();
    if view.settings.compare {
        return visible;
    }
    let id = Id::unique("metrics_lane");
    let chosen: Option<AllocatorKind> = ui.data(|d| d.get_temp(id));
    let preferred = chosen
        .or(view.selection.map(|s| s.kind))
        .and_then(|k| visible.iter().copied().find(|l| l.kind == k));
    let lane = preferred.or(visible.first().copied());
    if let Some(current) = lane {
        let mut kind = current.kind;
        egui::ComboBox::from_id_salt("metrics_lane_combo")
            .selected_text(kind.name())
            .show_ui(ui, |ui| {
                for l in &visible {
                    ui.selectable_value(&mut kind, l.kind, l.kind.name());
                }
            })
            .response
            .on_hover_text("Allocator whose metrics are plotted (compare mode overlays them all)");
        if kind != current.kind {
            ui.data_mut(|d| d.insert_temp(id, kind));
        }
    }
    lane.into_iter().collect()
}

/// Draws the metrics panel.
pub fn show(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    let session = view.session;
    let cursor = session.cursor;
    let mut lanes = Vec::new();
    ui.horizontal(|ui| {
        lanes = plotted_lanes(ui, view);
        if let [lane] = lanes.as_slice() {
            let at = |counter| {
                let value = lane.series.value(&lane.timeline, counter, cursor);
                short_bytes(value.unwrap_or(0) as f64)
            };
            ui.label(
                RichText::new(format!(
                    "at step {cursor}: requested {} · held {} · footprint {}",
                    at(Counter::RequestedLive),
                    at(Counter::Held),
                    at(Counter::Footprint)
                ))
                .monospace()
                .small(),
            );
            // The bytes plot's legend, out here so it covers none of its lines.
            ui.add_space(12.0);
            let dark = ui.visuals().dark_mode;
            for (name, colour) in [
                ("footprint", palette::FOOTPRINT),
                ("held", palette::HELD),
                ("requested", palette::REQUESTED),
            ] {
                let (r, _) =
                    ui.allocate_exact_size(egui::Vec2::new(14.0, 10.0), egui::Sense::hover());
                ui.painter().hline(
                    r.x_range(),
                    r.center().y,
                    egui::Stroke::new(2.0, palette::on_theme(colour, dark)),
                );
                ui.label(RichText::new(name).monospace().small());
                ui.add_space(6.0);
            }
        } else {
            // One legend for all three plots: in-plot legends would cover the lines.
            for lane in &lanes {
                let (r, _) = ui.allocate_exact_size(egui::Vec2::splat(10.0), egui::Sense::hover());
                ui.painter()
                    .rect_filled(r, 2.0, palette::lane_colour(lane.kind));
                ui.label(RichText::new(lane.kind.name()).monospace().small());
                ui.add_space(6.0);
            }
            ui.label(RichText::new("- - requested").monospace().small().weak());
        }
    });
    if lanes.is_empty() {
        ui.label(RichText::new("No allocator is shown.").weak());
        return;
    }
    let spacing = ui.spacing().item_spacing.x;
    // The table takes its natural width (measured last frame), the plots share the rest.
    let table_id = Id::unique("trace_table_width");
    let natural: f32 = ui.data(|d| d.get_temp(table_id)).unwrap_or(TABLE_WIDTH);
    let table_width = natural.min(ui.available_width() * 0.5);
    let plot_width = ((ui.available_width() - table_width - 3.0 * spacing) / 3.0).max(120.0);
    let plot_height = (ui.available_height() - 22.0).max(80.0);
    let compare = lanes.len() > 1 || view.settings.compare;
    let sample_every = lanes.first().map_or(1, |l| l.series.sample_every());

    let shown = ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.set_width(plot_width);
            ui.label(RichText::new("Bytes").strong()).on_hover_text(
                "Requested live bytes (what the program holds), held bytes (what its blocks \
                 occupy) and the allocator's footprint, at every step",
            );
            plot(
                ui,
                "metrics_bytes",
                [plot_width, plot_height],
                view,
                bytes_curves(&lanes, compare),
                Unit::Bytes,
                commands,
            );
        });
        let sampled = format!(
            "Sampled at {} evenly spaced steps (every {sample_every} steps): this measure needs \
             the whole layout, so it is not computed at every step.",
            lanes.first().map_or(0, |l| l.series.samples.len())
        );
        ui.vertical(|ui| {
            ui.set_width(plot_width);
            ui.label(RichText::new("Free-space fragmentation").strong())
                .on_hover_text(format!(
                    "1 - sqrt(sum f^2) / sum f over reusable free blocks f: 0 = one free block, \
                     near 1 = free space in many small pieces. {sampled}"
                ));
            let curves = sample_curves(&lanes, |s| s.fragmentation);
            plot(
                ui,
                "metrics_fragmentation",
                [plot_width, plot_height],
                view,
                curves,
                Unit::Ratio,
                commands,
            );
        });
        ui.vertical(|ui| {
            ui.set_width(plot_width);
            ui.label(RichText::new("Largest free block").strong())
                .on_hover_text(format!(
                    "The largest request that could be served without growing. {sampled}"
                ));
            let curves = sample_curves(&lanes, |s| s.largest_free as f64);
            plot(
                ui,
                "metrics_largest_free",
                [plot_width, plot_height],
                view,
                curves,
                Unit::Bytes,
                commands,
            );
        });
        ui.vertical(|ui| {
            ui.set_max_width(table_width);
            let shown = ScrollArea::both()
                .id_salt("trace_table")
                .show(ui, |ui| trace_table(ui, view, compare));
            let width = shown.content_size.x + 4.0;
            if (width - natural).abs() > 1.0 {
                ui.data_mut(|d| d.insert_temp(table_id, width));
                ui.ctx().request_repaint();
            }
        });
    });
    crate::export::remember_rect(
        ui.ctx(),
        crate::export::ExportKind::PlotsPng,
        shown.response.rect,
    );
}

fn bytes_curves<'a>(lanes: &[&'a Lane], compare: bool) -> Vec<Curve<'a>> {
    let mut curves = Vec::new();
    if compare {
        if let Some(first) = lanes.first() {
            curves.push(Curve {
                name: "requested".to_owned(),
                colour: palette::FOOTPRINT,
                dashed: true,
                source: Source::Steps(first, Counter::RequestedLive),
            });
        }
        for lane in lanes {
            curves.push(Curve {
                name: format!("{} footprint", lane.kind.name()),
                colour: palette::lane_colour(lane.kind),
                dashed: false,
                source: Source::Steps(lane, Counter::Footprint),
            });
        }
    } else if let Some(lane) = lanes.first() {
        for (name, colour, counter) in [
            ("footprint", palette::FOOTPRINT, Counter::Footprint),
            ("held", palette::HELD, Counter::Held),
            ("requested", palette::REQUESTED, Counter::RequestedLive),
        ] {
            curves.push(Curve {
                name: name.to_owned(),
                colour,
                dashed: false,
                source: Source::Steps(lane, counter),
            });
        }
    }
    curves
}

fn sample_curves<'a>(
    lanes: &[&'a Lane],
    value: impl Fn(&crate::series::Sample) -> f64,
) -> Vec<Curve<'a>> {
    lanes
        .iter()
        .map(|lane| Curve {
            name: lane.kind.name().to_owned(),
            colour: palette::lane_colour(lane.kind),
            dashed: false,
            source: Source::Samples(
                lane.series
                    .samples
                    .iter()
                    .map(|s| [s.at as f64, value(s)])
                    .collect(),
            ),
        })
        .collect()
}

/// One plot over the whole timeline with the playhead; click or drag seeks.
fn plot(
    ui: &mut Ui,
    id: &str,
    [width, height]: [f32; 2],
    view: &View<'_>,
    curves: Vec<Curve<'_>>,
    unit: Unit,
    commands: &mut Commands,
) {
    let n = view.session.len();
    let cursor = view.session.cursor;
    let link = Id::unique("metrics_plots");
    let playhead = ui.visuals().strong_text_color();
    let dark = ui.visuals().dark_mode;
    let mut plot = Plot::new(id)
        .width(width)
        .height(height)
        .link_axis(link, [true, false])
        .link_cursor(link, [true, false])
        .allow_drag(false)
        .allow_boxed_zoom(false)
        .allow_zoom([true, false])
        .allow_scroll([true, false])
        .allow_axis_zoom_drag(false)
        .include_x(0.0)
        .include_x(n.max(1) as f64)
        .include_y(0.0)
        .show_crosshair(false)
        .y_axis_min_width(64.0)
        .x_axis_formatter(|mark: GridMark, _| format!("{}", mark.value.round()))
        .y_axis_formatter(move |mark: GridMark, _| unit.format(mark.value))
        .label_formatter(move |pos: &HoverPosition<'_>| match pos {
            HoverPosition::NearDataPoint {
                plot_name,
                position,
                ..
            } => Some(format!(
                "{plot_name}\nstep {}: {}",
                position.x.round(),
                unit.format(position.y)
            )),
            HoverPosition::Elsewhere { position } => {
                Some(format!("step {}", position.x.round().clamp(0.0, n as f64)))
            }
        });
    match unit {
        Unit::Ratio => plot = plot.include_y(1.0),
        // Byte axes step in powers of two, so marks read 16 KiB, 32 KiB, ... not 9.5 MiB.
        Unit::Bytes => {
            plot = plot.y_grid_spacer(egui_plot::uniform_grid_spacer(|input| {
                let small = input.base_step_size.max(1.0).log2().ceil().exp2();
                [small, small * 4.0, small * 16.0]
            }));
        }
    }
    let columns = width.max(1.0) as usize;
    let ctx = ui.ctx().clone();
    let response = plot.show(ui, |plot_ui| {
        // Only the visible steps (and one view's width either side, for panning) are
        // decimated, at the view's pixel density; before the first zoom that is all of them.
        let (range, range_columns) = if plot_ui.auto_bounds().x {
            (0..n + 1, columns)
        } else {
            let b = plot_ui.plot_bounds();
            let span = (b.max()[0] - b.min()[0]).max(1.0);
            let lo = (b.min()[0] - span).max(0.0) as usize;
            let hi = ((b.max()[0] + span).max(0.0) as usize + 1).min(n + 1);
            let cols = (columns as f64 * (hi.saturating_sub(lo)) as f64 / span).ceil() as usize;
            (lo..hi, cols.clamp(1, 4 * columns))
        };
        for curve in curves {
            let points = match curve.source {
                Source::Steps(lane, counter) => {
                    super::decimated_points(&ctx, lane, counter, range.clone(), range_columns)
                        .to_vec()
                }
                Source::Samples(points) => points,
            };
            let mut line = Line::new(curve.name, PlotPoints::new(points))
                .color(palette::on_theme(curve.colour, dark))
                .width(1.5);
            if curve.dashed {
                line = line.style(LineStyle::dashed_loose());
            }
            plot_ui.line(line);
        }
        plot_ui.vline(VLine::new("", cursor as f64).color(playhead).width(1.5));
    });
    let r = &response.response;
    if (r.clicked() || r.dragged())
        && let Some(pos) = r.interact_pointer_pos()
    {
        let x = response.transform.value_from_position(pos).x;
        let target = x.round().clamp(0.0, n as f64) as usize;
        if target != cursor {
            commands.push(Command::Seek(target));
        }
    }
}

/// The per-trace table: one row per shown allocator.
fn trace_table(ui: &mut Ui, view: &View<'_>, compare: bool) {
    let pct = |v: Option<f64>| {
        v.map_or_else(
            || "-".to_owned(),
            |v| {
                if v.abs() >= 10.0 {
                    format!("{:.0} %", v * 100.0)
                } else {
                    format!("{:.1} %", v * 100.0)
                }
            },
        )
    };
    egui::Grid::new("trace_metrics_table")
        .num_columns(8)
        .striped(true)
        .spacing([10.0, 3.0])
        .show(ui, |ui| {
            for (title, hover) in [
                ("allocator", "The allocator model"),
                (
                    "J&W #3",
                    "Johnstone & Wilson #3: peak footprint over the live bytes at that moment, \
                     minus one (lower is better)",
                ),
                (
                    "J&W #4",
                    "Johnstone & Wilson #4: peak footprint over peak live bytes, minus one \
                     (lower is better)",
                ),
                (
                    "utilization",
                    "CS:APP peak utilization: peak live bytes over peak footprint (higher is \
                     better)",
                ),
                ("peak live", "Highest requested live bytes"),
                ("peak footprint", "Highest footprint"),
                ("failed", "Operations the allocator refused"),
                (
                    "violations",
                    "Bad accesses and frees a checking allocator caught",
                ),
            ] {
                ui.label(RichText::new(title).strong().small())
                    .on_hover_text(hover);
            }
            ui.end_row();
            for lane in view.visible_lanes() {
                let s: &LaneSeries = &lane.series;
                let t = &s.totals;
                let name = RichText::new(lane.kind.name()).monospace();
                if compare {
                    ui.label(name.color(palette::on_theme(
                        palette::lane_colour(lane.kind),
                        ui.visuals().dark_mode,
                    )));
                } else {
                    ui.label(name);
                }
                ui.monospace(pct(t.jw3()));
                ui.monospace(pct(t.jw4()));
                ui.monospace(
                    t.utilization()
                        .map_or_else(|| "-".to_owned(), |u| format!("{u:.3}")),
                );
                ui.monospace(short_bytes(t.peak_live as f64));
                ui.monospace(short_bytes(t.peak_footprint as f64));
                let failed = RichText::new(t.failed.to_string()).monospace();
                ui.label(if t.failed > 0 {
                    failed.color(palette::PROBLEM)
                } else {
                    failed
                });
                let violations = RichText::new(s.violation_count.to_string()).monospace();
                ui.label(if s.violation_count > 0 {
                    violations.color(palette::PROBLEM)
                } else {
                    violations
                });
                ui.end_row();
            }
        });
}

//! Compare mode's summary: every shown allocator at the current step, one row each, with a bar
//! that splits its footprint into what the program asked for, what the blocks add on top, and
//! the rest, all on one scale, so the difference in overhead and fragmentation shows at a glance.

use eframe::egui::{self, Color32, Id, Pos2, Rect, RichText, Sense, Ui, Vec2};
use heapscope_core::AllocatorKind;
use heapscope_core::metrics::StepMetrics;

use super::{View, short_bytes};
use crate::palette;

/// Width of the footprint bar.
const BAR_WIDTH: f32 = 260.0;

/// Step metrics of every shown lane, cached per position: they need a walk over the layout.
#[derive(Clone, Default)]
struct Cached {
    key: (usize, usize, String),
    rows: Vec<(AllocatorKind, StepMetrics)>,
}

fn rows(ui: &Ui, view: &View<'_>) -> Vec<(AllocatorKind, StepMetrics)> {
    let session = view.session;
    let key = (session.cursor, session.len(), session.title());
    let id = Id::unique("compare_rows");
    let cached: Option<Cached> = ui.data(|d| d.get_temp(id));
    let mut rows = match cached {
        Some(c) if c.key == key => c.rows,
        _ => {
            let rows: Vec<_> = session
                .lanes
                .iter()
                .map(|l| (l.kind, StepMetrics::of(&l.layout)))
                .collect();
            ui.data_mut(|d| {
                d.insert_temp(
                    id,
                    Cached {
                        key,
                        rows: rows.clone(),
                    },
                );
            });
            rows
        }
    };
    rows.retain(|(kind, _)| view.settings.shows(*kind));
    rows
}

/// Draws the summary table.
pub fn show(ui: &mut Ui, view: &View<'_>) {
    let rows = rows(ui, view);
    if rows.is_empty() {
        return;
    }
    let dark = ui.visuals().dark_mode;
    let rest = palette::state_fill(heapscope_core::BlockState::Unused, dark);
    egui::Grid::new("compare_summary")
        .num_columns(8)
        .striped(true)
        .spacing([12.0, 3.0])
        .show(ui, |ui| {
            for (title, hover) in [
                ("allocator", "Line colour in the overlaid plots"),
                (
                    "share of footprint",
                    "Each allocator's footprint as 100 %. Blue: bytes the program asked for. \
                     Orange: what its blocks add (headers, rounding, slack, guards). Grey: the \
                     rest (free, top, never used).",
                ),
                ("live", "Live blocks"),
                ("held", "Bytes live blocks occupy"),
                ("footprint", "The allocator's footprint"),
                (
                    "internal",
                    "Held bytes the program did not ask for, as a share of held bytes",
                ),
                (
                    "free-space frag.",
                    "1 - sqrt(sum f^2) / sum f over reusable free blocks",
                ),
                ("largest free", "The largest reusable free block"),
            ] {
                ui.label(RichText::new(title).strong().small())
                    .on_hover_text(hover);
            }
            ui.end_row();
            let live_blocks = |kind: AllocatorKind| {
                view.session
                    .lanes
                    .iter()
                    .find(|l| l.kind == kind)
                    .map_or(0, |l| l.layout.stats.live_blocks)
            };
            for (kind, m) in &rows {
                ui.horizontal(|ui| {
                    let (swatch, _) = ui.allocate_exact_size(Vec2::splat(10.0), Sense::hover());
                    ui.painter()
                        .rect_filled(swatch, 2.0, palette::lane_colour(*kind));
                    ui.label(RichText::new(kind.name()).monospace());
                });
                footprint_bar(ui, m, rest);
                ui.monospace(live_blocks(*kind).to_string());
                ui.monospace(short_bytes(m.held as f64));
                ui.monospace(short_bytes(m.footprint as f64));
                ui.monospace(format!("{:.1} %", m.internal_fragmentation() * 100.0));
                ui.monospace(format!("{:.3}", m.free_space_fragmentation));
                ui.monospace(short_bytes(m.largest_free as f64));
                ui.end_row();
            }
        });
}

fn footprint_bar(ui: &mut Ui, m: &StepMetrics, rest: Color32) {
    let widest = m.footprint.max(m.held).max(1);
    let (rect, response) = ui.allocate_exact_size(Vec2::new(BAR_WIDTH, 12.0), Sense::hover());
    let painter = ui.painter();
    let x_of = |v: u64| rect.left() + BAR_WIDTH * (v as f64 / widest as f64) as f32;
    let span = |from: u64, to: u64, colour: Color32| {
        if to > from {
            painter.rect_filled(
                Rect::from_min_max(
                    Pos2::new(x_of(from), rect.top()),
                    Pos2::new(x_of(to).max(x_of(from) + 1.0), rect.bottom()),
                ),
                0.0,
                colour,
            );
        }
    };
    let total = m.footprint.max(m.held);
    span(0, total, rest);
    span(0, m.held, palette::HELD);
    span(0, m.requested_live.min(m.held), palette::REQUESTED);
    response.on_hover_text(format!(
        "{:.1} % of the footprint is requested: requested {} · held {} · footprint {}",
        100.0 * m.requested_live as f64 / widest as f64,
        short_bytes(m.requested_live as f64),
        short_bytes(m.held as f64),
        short_bytes(m.footprint as f64)
    ));
}

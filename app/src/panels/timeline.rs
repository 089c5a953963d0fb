//! The scrubber: the whole trace, drag to seek, with problems, marks and live bytes drawn on it.

use eframe::egui::{self, Color32, Pos2, Rect, Sense, Stroke, Ui, Vec2};

use super::{Commands, View};
use crate::command::Command;
use crate::palette;
use crate::series::Counter;

/// Height of the scrubber.
const HEIGHT: f32 = 46.0;

/// Draws the timeline.
pub fn show(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    let session = view.session;
    let n = session.len();
    let (response, painter) = ui.allocate_painter(
        Vec2::new(ui.available_width(), HEIGHT),
        Sense::click_and_drag(),
    );
    let rect = response.rect;
    let visuals = ui.visuals();
    painter.rect_filled(rect, 4.0, visuals.extreme_bg_color);
    if n == 0 {
        return;
    }
    let x_of = |pos: usize| rect.left() + rect.width() * pos as f32 / n as f32;

    // Live bytes of the first visible lane, as a filled curve behind everything: the highest
    // value in each pixel column, from the lane's min/max buckets (cost ~ columns, not steps).
    let columns = rect.width().max(1.0) as usize;
    if let Some(lane) = view.visible_lanes().next() {
        let peak = lane.series.max(Counter::RequestedLive).max(1) as f32;
        // On the dark theme's near-black track a faint fill disappears: stronger there, and an
        // edge along the top of the curve in the full colour on both themes.
        let fill = visuals
            .selection
            .bg_fill
            .gamma_multiply(if visuals.dark_mode { 0.55 } else { 0.35 });
        let edge = visuals.selection.bg_fill;
        let mut column_high = vec![0u64; columns];
        if n < columns {
            // Fewer steps than pixels: each column shows the step it lies in.
            for (c, high) in column_high.iter_mut().enumerate() {
                let at = (c * n / columns + 1).min(n);
                *high = lane
                    .series
                    .value(&lane.timeline, Counter::RequestedLive, at)
                    .unwrap_or(0);
            }
        } else {
            let points =
                super::decimated_points(ui.ctx(), lane, Counter::RequestedLive, 0..n + 1, columns);
            for &[at, value] in points.iter() {
                let c = ((at / (n + 1) as f64) * columns as f64) as usize;
                if let Some(high) = column_high.get_mut(c.min(columns - 1)) {
                    *high = (*high).max(value as u64);
                }
            }
        }
        for (c, high) in column_high.into_iter().enumerate() {
            let h = (rect.height() - 6.0) * high as f32 / peak;
            let x = rect.left() + c as f32;
            painter.rect_filled(
                Rect::from_min_max(
                    Pos2::new(x, rect.bottom() - h),
                    Pos2::new(x + 1.0, rect.bottom()),
                ),
                0.0,
                fill,
            );
            if h >= 1.0 {
                painter.rect_filled(
                    Rect::from_min_max(
                        Pos2::new(x, rect.bottom() - h),
                        Pos2::new(x + 1.0, rect.bottom() - h + 1.5),
                    ),
                    0.0,
                    edge,
                );
            }
        }
    }

    // Marks and problems as ticks, from the session's indexes: one tick per pixel column at
    // most, found by binary search, so a million problems cost no more than a few.
    let ticks = |positions: &[usize], each: &mut dyn FnMut(f32)| {
        let mut from = 0;
        while let Some(&p) = positions.get(from) {
            let x = x_of(p);
            each(x);
            // Skip to the first position drawn at least one pixel further right.
            let next_x = x + 1.0;
            let next_pos = (((next_x - rect.left()) / rect.width()) * n as f32).ceil() as usize;
            from += positions[from..].partition_point(|&q| q < next_pos.max(p + 1));
        }
    };
    ticks(&session.mark_positions, &mut |x| {
        painter.vline(
            x,
            rect.top()..=rect.bottom(),
            Stroke::new(1.5, palette::MARK),
        );
    });
    let mut last_problem_x = f32::NEG_INFINITY;
    ticks(&session.problem_positions, &mut |x| {
        if x - last_problem_x >= 2.0 {
            last_problem_x = x;
            painter.vline(
                x,
                rect.top()..=rect.top() + 12.0,
                Stroke::new(2.0, palette::PROBLEM),
            );
        }
    });

    // The playhead.
    let x = x_of(session.cursor);
    painter.vline(
        x,
        rect.top()..=rect.bottom(),
        Stroke::new(2.0, visuals.strong_text_color()),
    );
    painter.circle_filled(
        Pos2::new(x, rect.top() + 3.0),
        4.0,
        visuals.strong_text_color(),
    );

    if let Some(pos) = response.interact_pointer_pos()
        && (response.clicked() || response.dragged())
    {
        let t = ((pos.x - rect.left()) / rect.width()).clamp(0.0, 1.0);
        let target = (t * n as f32).round() as usize;
        if target != session.cursor {
            commands.push(Command::Seek(target));
        }
    }
    let response = response.on_hover_text(
        "Drag to seek. Red ticks: errors and violations; blue lines: marks; shade: live bytes",
    );
    if let Some(pos) = response.hover_pos() {
        let t = ((pos.x - rect.left()) / rect.width()).clamp(0.0, 1.0);
        let step = (t * n as f32).round() as usize;
        painter.vline(
            pos.x,
            rect.top()..=rect.bottom(),
            Stroke::new(1.0, Color32::from_gray(140)),
        );
        let label = step
            .checked_sub(1)
            .and_then(|i| session.scenario.ops.get(i))
            .map(|op| format!("{step}: {op}"))
            .unwrap_or_else(|| "0: start".to_owned());
        painter.text(
            Pos2::new(rect.left() + 6.0, rect.bottom() - 4.0),
            egui::Align2::LEFT_BOTTOM,
            label,
            egui::FontId::monospace(11.0),
            visuals.text_color(),
        );
    }
}

//! The scrubber: the whole trace, drag to seek, with problems, marks and live bytes drawn on it.

use eframe::egui::{self, Color32, Pos2, Rect, Sense, Stroke, Ui, Vec2};
use heapscope_core::Op;

use super::{Commands, View};
use crate::command::Command;
use crate::palette;

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

    // Live bytes of the first visible lane, as a filled curve behind everything.
    if let Some(lane) = view.visible_lanes().next() {
        let peak = lane.timeline.requested_live_max(0..n).unwrap_or(0).max(1) as f32;
        let columns = rect.width().max(1.0) as usize;
        let fill = visuals.selection.bg_fill.gamma_multiply(0.35);
        for c in 0..columns {
            // The column shows the highest live value among the ops it covers.
            let from = c * n / columns;
            let to = ((c + 1) * n / columns).max(from + 1).min(n);
            let high = lane.timeline.requested_live_max(from..to).unwrap_or(0) as f32;
            let h = (rect.height() - 6.0) * high / peak;
            let x = rect.left() + c as f32;
            painter.rect_filled(
                Rect::from_min_max(
                    Pos2::new(x, rect.bottom() - h),
                    Pos2::new(x + 1.0, rect.bottom()),
                ),
                0.0,
                fill,
            );
        }
    }

    // Marks and problems as ticks: a pixel column gets one tick however many ops it covers.
    let mut last_problem_x = f32::NEG_INFINITY;
    for (i, op) in session.scenario.ops.iter().enumerate() {
        let x = x_of(i + 1);
        if matches!(op, Op::Mark { .. }) {
            painter.vline(
                x,
                rect.top()..=rect.bottom(),
                Stroke::new(1.5, palette::MARK),
            );
        }
        if session.is_problem(i) && x - last_problem_x >= 2.0 {
            last_problem_x = x;
            painter.vline(
                x,
                rect.top()..=rect.top() + 12.0,
                Stroke::new(2.0, palette::PROBLEM),
            );
        }
    }

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

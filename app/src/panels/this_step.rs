//! "This step": the operation, each allocator's answer, and its decision log in plain words.

use eframe::egui::{RichText, Ui};
use heapscope_core::StepResult;

use super::View;
use crate::palette;

/// Draws the current step for every visible lane.
pub fn show(ui: &mut Ui, view: &View<'_>) {
    let session = view.session;
    let Some(op) = session.current_op() else {
        ui.label(RichText::new("Before the first operation. Step forward to begin.").weak());
        return;
    };
    ui.label(
        RichText::new(format!("step {}: {op}", session.cursor))
            .monospace()
            .strong(),
    );
    ui.add_space(4.0);
    for lane in view.visible_lanes() {
        let Some(step) = &lane.last_step else {
            continue;
        };
        ui.horizontal(|ui| {
            ui.label(RichText::new(lane.kind.name()).strong());
            let (text, colour) = match &step.result {
                StepResult::Placed(ptr) => (format!("→ {ptr:#x}"), ui.visuals().text_color()),
                StepResult::Done => ("ok".to_owned(), ui.visuals().weak_text_color()),
                StepResult::Failed(e) => (format!("error: {e}"), palette::PROBLEM),
                StepResult::Skipped(why) => (format!("skipped: {why}"), ui.visuals().warn_fg_color),
            };
            ui.label(RichText::new(text).monospace().color(colour));
        });
        for line in &step.log {
            ui.label(RichText::new(format!("  {line}")).monospace().small());
        }
        for v in &step.violations {
            ui.label(
                RichText::new(format!("  {}: {}", v.class, v.message))
                    .monospace()
                    .small()
                    .color(palette::PROBLEM),
            );
        }
        for report in lane.guest_reports_at(session.cursor.saturating_sub(1)) {
            ui.label(
                RichText::new(report)
                    .monospace()
                    .small()
                    .color(palette::PROBLEM),
            );
        }
        ui.add_space(4.0);
    }
}

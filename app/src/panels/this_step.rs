//! "This step": the operation, each allocator's answer, and its decision log in plain words.

use eframe::egui::{RichText, Ui};
use heapscope_core::StepResult;

use super::View;
use crate::palette;

/// Text size of the decision log: smaller than the body, still readable at a glance.
const LOG_SIZE: f32 = 11.5;

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
                // A checked access that completed but was caught is not "ok".
                StepResult::Done if !step.violations.is_empty() => {
                    ("violation".to_owned(), palette::PROBLEM)
                }
                StepResult::Done => ("ok".to_owned(), ui.visuals().weak_text_color()),
                StepResult::Failed(e) => (format!("error: {e}"), palette::PROBLEM),
                StepResult::Skipped(why) => (format!("skipped: {why}"), ui.visuals().warn_fg_color),
            };
            ui.label(RichText::new(text).monospace().color(colour));
        });
        let caught: Vec<String> = step
            .violations
            .iter()
            .map(|v| format!("{}: {}", v.class, v.message))
            .collect();
        // The log repeats what was caught; that line is shown once, in red, below.
        for line in step.log.iter().filter(|l| !caught.contains(l)) {
            ui.label(RichText::new(format!("  {line}")).size(LOG_SIZE));
        }
        for line in &caught {
            ui.label(
                RichText::new(format!("  {line}"))
                    .size(LOG_SIZE)
                    .color(palette::PROBLEM),
            );
        }
        for report in lane.guest_reports_at(session.cursor.saturating_sub(1)) {
            ui.label(
                RichText::new(report)
                    .monospace()
                    .size(LOG_SIZE)
                    .color(palette::PROBLEM),
            );
        }
        ui.add_space(4.0);
    }
}

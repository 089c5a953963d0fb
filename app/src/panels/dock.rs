//! The dock under the heap map: tabs for the metrics plots and the violations list.

use eframe::egui::{Ui, vec2};

use super::{Commands, View};
use crate::command::Command;
use crate::settings::DockTab;

/// Draws the tab row and the chosen tab.
pub fn show(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    let problems: usize = view.visible_lanes().map(|l| l.series.report_count).sum();
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        let tabs = [
            (
                DockTab::Metrics,
                "Metrics".to_owned(),
                "Plots over the whole timeline and the per-trace table",
            ),
            (
                DockTab::Violations,
                format!("Violations ({problems})"),
                "Every failed operation and violation, AddressSanitizer style",
            ),
        ];
        for (tab, title, hover) in tabs {
            if ui
                .selectable_label(view.settings.dock_tab == tab, title)
                .on_hover_text(hover)
                .clicked()
            {
                commands.push(Command::ShowDockTab(tab));
            }
        }
    });
    ui.separator();
    match view.settings.dock_tab {
        DockTab::Metrics => super::metrics::show(ui, view, commands),
        DockTab::Violations => super::violations::show(ui, view, commands),
    }
    // Fill the dock, so a short tab does not shrink it (the panel keeps the height it used).
    let rest = ui.available_size();
    if rest.y > 0.0 {
        ui.allocate_space(vec2(rest.x.max(0.0), rest.y));
    }
}

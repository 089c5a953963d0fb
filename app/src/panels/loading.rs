//! The loading banner: which file is being opened, how far recording has got, and Cancel.

use eframe::egui::{self, ProgressBar, RichText, Ui};

use super::{Commands, View};
use crate::command::Command;

/// Draws the banner while a file loads.
pub fn show(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    let Some(loading) = view.loading else {
        return;
    };
    let name = loading.path.file_name().map_or_else(
        || loading.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    egui::Frame::new()
        .fill(ui.visuals().faint_bg_color)
        .stroke(ui.visuals().widgets.noninteractive.bg_stroke)
        .inner_margin(6.0)
        .corner_radius(4.0)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                let (text, bar) = match loading.progress.fraction() {
                    None => (
                        format!("Reading {name}…"),
                        ProgressBar::new(0.0).animate(true),
                    ),
                    Some(f) => (
                        format!("Replaying {name} on every allocator…"),
                        ProgressBar::new(f).show_percentage(),
                    ),
                };
                ui.label(RichText::new(text).strong());
                ui.add(bar.desired_width(240.0));
                if ui
                    .button("Cancel")
                    .on_hover_text("Cancel loading; what was loaded before stays")
                    .clicked()
                {
                    commands.push(Command::CancelLoad);
                }
            });
        });
    ui.add_space(4.0);
}

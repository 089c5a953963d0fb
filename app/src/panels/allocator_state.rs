//! Each allocator's own state: markers, its native statistics, poisoning and `validate()`.

use eframe::egui::{self, RichText, Ui};

use super::View;
use crate::palette;

/// Draws the state of every visible lane.
pub fn show(ui: &mut Ui, view: &View<'_>) {
    for lane in view.visible_lanes() {
        let layout = &lane.layout;
        // The banner stands outside the lane's (maybe collapsed) details: it cannot be missed.
        if let Some(why) = &layout.poisoned {
            egui::Frame::new()
                .fill(palette::PROBLEM)
                .inner_margin(6.0)
                .corner_radius(4.0)
                .show(ui, |ui| {
                    ui.label(
                        RichText::new(format!("{} POISONED\n{why}", lane.kind))
                            .strong()
                            .size(16.0)
                            .color(egui::Color32::WHITE),
                    );
                });
        }
        egui::CollapsingHeader::new(RichText::new(lane.kind.name()).strong())
            .id_salt(("state", lane.kind))
            .default_open(layout.poisoned.is_some() || !lane.findings.is_empty())
            .show(ui, |ui| {
                if let Some(exit) = &lane.exit {
                    ui.label(RichText::new(format!("program: {exit}")).monospace());
                }
                egui::Grid::new(("native", lane.kind))
                    .num_columns(2)
                    .striped(true)
                    .show(ui, |ui| {
                        for marker in &layout.markers {
                            ui.label(&marker.name);
                            ui.monospace(format!("{:#x}", marker.addr));
                            ui.end_row();
                        }
                        for stat in &layout.native_stats {
                            ui.label(&stat.name);
                            ui.monospace(stat.value.to_string());
                            ui.end_row();
                        }
                        let s = layout.stats;
                        for (name, value) in [
                            ("peak requested", s.peak_requested_live),
                            ("peak held", s.peak_held),
                            ("peak footprint", s.peak_footprint),
                        ] {
                            ui.label(name);
                            ui.monospace(value.to_string());
                            ui.end_row();
                        }
                    });
                if lane.findings.is_empty() {
                    ui.label(RichText::new("validate(): clean").weak().small());
                } else {
                    for f in &lane.findings {
                        ui.label(
                            RichText::new(format!("validate(): {}", f.message))
                                .color(palette::PROBLEM)
                                .small(),
                        );
                    }
                }
            });
    }
}

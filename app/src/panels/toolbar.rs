//! The top bar: files, scenarios, transport and lane toggles.

use eframe::egui::{self, Button, RichText, Ui};

use super::{Commands, View};
use crate::bundled::BUNDLED;
use crate::command::Command;
use crate::export::ExportKind;

/// Draws the toolbar.
pub fn show(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    ui.horizontal_wrapped(|ui| {
        ui.menu_button("Open", |ui| {
            if ui
                .button("Open file…")
                .on_hover_text("Open a scenario (Ctrl+O)")
                .clicked()
            {
                commands.push(Command::OpenDialog);
            }
            ui.separator();
            ui.label(RichText::new("Bundled scenarios").weak());
            for bundled in BUNDLED {
                if ui.button(bundled.file).clicked() {
                    commands.push(Command::OpenBundled(bundled.file));
                }
            }
            if !view.settings.recent.is_empty() {
                ui.separator();
                ui.label(RichText::new("Recent files").weak());
                for path in &view.settings.recent {
                    let name = path.file_name().map_or_else(
                        || path.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    if ui
                        .button(name)
                        .on_hover_text(path.display().to_string())
                        .clicked()
                    {
                        commands.push(Command::Open(path.clone()));
                    }
                }
                if ui
                    .button("Clear recent files")
                    .on_hover_text("Forget the files opened before")
                    .clicked()
                {
                    commands.push(Command::ClearRecent);
                }
            }
        });
        ui.menu_button("Export", |ui| {
            let exports = [
                (
                    ExportKind::MetricsCsv,
                    "Metrics per step (CSV)…",
                    "Every step on every allocator: the columns of `heapscope replay --format csv`",
                ),
                (
                    ExportKind::ScenarioRon,
                    "Trace as scenario (RON)…",
                    "The loaded operations as a scenario file that stands alone",
                ),
                (
                    ExportKind::HeapMapPng,
                    "Heap map (PNG)…",
                    "The heap map as it is drawn now",
                ),
                (
                    ExportKind::PlotsPng,
                    "Metrics plots (PNG)…",
                    "The metrics plots and table as drawn now (open the Metrics tab first)",
                ),
            ];
            for (kind, label, hover) in exports {
                if ui.button(label).on_hover_text(hover).clicked() {
                    commands.push(Command::Export(kind));
                }
            }
        });
        ui.separator();
        transport(ui, view, commands);
        ui.separator();
        for lane in &view.session.lanes {
            let mut shown = view.settings.shows(lane.kind);
            if ui
                .toggle_value(&mut shown, lane.kind.name())
                .on_hover_text(format!(
                    "Show or hide {} ({})",
                    lane.kind,
                    lane.kind.origin()
                ))
                .changed()
            {
                commands.push(Command::ToggleLane(lane.kind));
            }
        }
        ui.separator();
        let mut compare = view.settings.compare;
        if ui
            .toggle_value(&mut compare, "Compare")
            .on_hover_text(
                "Compare mode: every shown allocator side by side on one byte scale, with \
                 overlaid metrics and a summary table",
            )
            .changed()
        {
            commands.push(Command::ToggleCompare);
        }
        let mut dock = view.settings.show_dock;
        if ui
            .toggle_value(&mut dock, "Metrics")
            .on_hover_text("Show or hide the metrics and violations dock")
            .changed()
        {
            commands.push(Command::ToggleDock);
        }
        let theme = if view.settings.dark { "☀" } else { "🌙" };
        if ui
            .button(theme)
            .on_hover_text("Switch between dark and light theme")
            .clicked()
        {
            commands.push(Command::ToggleTheme);
        }
    });
}

fn transport(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    let session = view.session;
    let at_start = session.cursor == 0;
    let at_end = session.cursor >= session.len();
    let button = |ui: &mut Ui, enabled: bool, glyph: &str, hover: &str| {
        ui.add_enabled(enabled, Button::new(RichText::new(glyph).size(15.0)))
            .on_hover_text(hover)
            .on_disabled_hover_text(hover)
            .clicked()
    };
    if button(ui, !at_start, "⏮", "To start (Home)") {
        commands.push(Command::Seek(0));
    }
    if button(
        ui,
        session
            .next_position(&session.problem_positions, false)
            .is_some(),
        "⚠⏴",
        "Previous error or violation",
    ) {
        commands.push(Command::JumpToProblem { forward: false });
    }
    if button(ui, !at_start, "⏴", "Step back (Left; Shift: 10 steps)") {
        commands.push(Command::StepBy(-1));
    }
    let play = if view.playing { "⏸" } else { "▶" };
    if button(ui, !at_end || view.playing, play, "Play / pause (Space)") {
        commands.push(Command::TogglePlay);
    }
    if button(ui, !at_end, "⏵", "Step forward (Right; Shift: 10 steps)") {
        commands.push(Command::StepBy(1));
    }
    if button(
        ui,
        session
            .next_position(&session.problem_positions, true)
            .is_some(),
        "⏵⚠",
        "Next error or violation",
    ) {
        commands.push(Command::JumpToProblem { forward: true });
    }
    if button(ui, !at_end, "⏭", "To end (End)") {
        commands.push(Command::Seek(session.len()));
    }
    if button(
        ui,
        session
            .next_position(&session.mark_positions, false)
            .is_some(),
        "⚑⏴",
        "Previous mark",
    ) {
        commands.push(Command::JumpToMark { forward: false });
    }
    if button(
        ui,
        session
            .next_position(&session.mark_positions, true)
            .is_some(),
        "⏵⚑",
        "Next mark",
    ) {
        commands.push(Command::JumpToMark { forward: true });
    }
    ui.label(
        RichText::new(format!("step {} / {}", session.cursor, session.len()))
            .monospace()
            .strong(),
    )
    .on_hover_text("Operations applied so far");
    let mut speed = view.settings.steps_per_second;
    let slider = egui::Slider::new(&mut speed, 0.5..=60.0)
        .logarithmic(true)
        .suffix(" steps/s")
        .max_decimals(1);
    if ui.add(slider).on_hover_text("Playback speed").changed() {
        commands.push(Command::SetSpeed(speed));
    }
}

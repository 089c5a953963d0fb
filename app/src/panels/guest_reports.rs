//! The violations panel of an emulated program: each run's findings, AddressSanitizer style
//! (class, READ/WRITE of N bytes at ADDR, the guest instruction, the block and its steps),
//! with violations, warnings, corruption reports and refused calls filtered apart; clicking
//! one seeks to its step and selects its block, as trace reports do.

use std::sync::Arc;

use eframe::egui::{self, RichText, ScrollArea, Ui};
use heapscope_core::AllocatorKind;
use heapscope_core::emulate::report::{GuestReport, ReportKind};

use super::{Commands, View};
use crate::command::{Command, Selection};
use crate::palette;
use crate::session::Lane;

/// Lines of a report's text shown in its row (the rest on hover).
const TEXT_LINES: usize = 3;

/// Which kinds are listed, in [`ReportKind::ALL`] order.
type Filter = [bool; 4];

/// One row: the lane and the index of its report.
#[derive(Debug, Clone, Copy)]
struct Row {
    lane: usize,
    report: usize,
}

/// The rows of shown lanes and kinds, in position order, and how many of each kind the shown
/// lanes have; kept between frames (a run touching freed memory in a loop warns a lot).
#[derive(Clone)]
struct Rows {
    rows: Arc<Vec<Row>>,
    counts: [usize; 4],
}

fn kind_index(kind: ReportKind) -> usize {
    ReportKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

fn rows(ui: &Ui, view: &View<'_>, filter: Filter) -> Rows {
    type Cached = (String, usize, Vec<AllocatorKind>, Filter, Rows);
    let session = view.session;
    let id = egui::Id::unique("guest_report_rows");
    let key = (
        session.title(),
        session.lanes.len(),
        view.settings.hidden.clone(),
        filter,
    );
    if let Some((title, lanes, hidden, f, rows)) = ui.data(|d| d.get_temp::<Cached>(id))
        && (title, lanes, hidden, f) == key
    {
        return rows;
    }
    let mut counts = [0; 4];
    let mut rows: Vec<(usize, Row)> = Vec::new();
    for (lane_index, lane) in session.lanes.iter().enumerate() {
        if !view.settings.shows(lane.kind) {
            continue;
        }
        for (i, report) in lane.guest_reports.iter().enumerate() {
            let k = kind_index(report.kind);
            counts[k] += 1;
            if filter[k] {
                let row = Row {
                    lane: lane_index,
                    report: i,
                };
                rows.push((report.position, row));
            }
        }
    }
    // Stable: within a position, lanes in order and reports in order.
    rows.sort_by_key(|(position, row)| (*position, row.lane));
    let rows = Rows {
        rows: Arc::new(rows.into_iter().map(|(_, row)| row).collect()),
        counts,
    };
    ui.data_mut(|d| d.insert_temp::<Cached>(id, (key.0, key.1, key.2, key.3, rows.clone())));
    rows
}

/// Draws the list of the emulator's reports.
pub fn show(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    let filter_id = egui::Id::unique("guest_report_filter");
    let mut filter: Filter = ui.data(|d| d.get_temp(filter_id)).unwrap_or([true; 4]);
    let listed = rows(ui, view, filter);
    ui.horizontal(|ui| {
        ui.label(RichText::new("Emulator reports:").strong());
        for (i, kind) in ReportKind::ALL.iter().enumerate() {
            let n = listed.counts[i];
            let plural = if n == 1 { "" } else { "s" };
            ui.toggle_value(&mut filter[i], format!("{n} {}{plural}", kind.label()))
                .on_hover_text(format!("List the {}s", kind.label()));
        }
        ui.label(RichText::new("Click a report to go to its step and block").weak());
    });
    ui.data_mut(|d| d.insert_temp(filter_id, filter));
    if listed.rows.is_empty() {
        ui.add_space(8.0);
        let text = if listed.counts.iter().sum::<usize>() == 0 {
            "The emulator reported nothing on this program."
        } else {
            "No report of the kinds chosen."
        };
        ui.label(RichText::new(text).weak().italics());
        return;
    }
    ScrollArea::vertical()
        .id_salt("guest_reports_list")
        .auto_shrink([false, false])
        .show_rows(
            ui,
            super::violations::ROW_HEIGHT,
            listed.rows.len(),
            |ui, range| {
                for row in listed.rows.get(range).unwrap_or_default() {
                    let Some(lane) = view.session.lanes.get(row.lane) else {
                        continue;
                    };
                    if let Some(report) = lane.guest_reports.get(row.report) {
                        draw(ui, view, lane, report, commands);
                    }
                }
            },
        );
}

/// The headline's tag and colour.
fn tag(kind: ReportKind) -> (&'static str, egui::Color32) {
    match kind {
        ReportKind::Violation => ("ERROR", palette::PROBLEM),
        ReportKind::Warning => ("WARNING", egui::Color32::from_rgb(0xe0, 0x9a, 0x2c)),
        ReportKind::Corruption => ("CORRUPTION", palette::PROBLEM),
        ReportKind::Refused => ("REFUSED", egui::Color32::from_rgb(0xb0, 0x6c, 0xe0)),
    }
}

/// The first line: "ERROR: heap-buffer-overflow on address 0x4a0009".
fn headline(report: &GuestReport) -> String {
    let (tag, _) = tag(report.kind);
    match report.addr {
        Some(addr) => format!("{tag}: {} on address {addr:#x}", report.class),
        None => format!("{tag}: {}", report.class),
    }
}

/// One report.
fn draw(ui: &mut Ui, view: &View<'_>, lane: &Lane, report: &GuestReport, commands: &mut Commands) {
    let current = report.position == view.session.cursor;
    let (_, colour) = tag(report.kind);
    let (response, mut inner) = super::violations::report_row(ui, current, colour);
    // Labels that neither wrap (a row has room for four lines) nor take the row's click.
    let label = |text: RichText| egui::Label::new(text).selectable(false).truncate();
    inner.horizontal(|ui| {
        ui.add(label(
            RichText::new(headline(report))
                .monospace()
                .strong()
                .color(colour),
        ));
        ui.add(label(super::violations::step_and_lane(
            ui,
            report.position,
            lane.kind,
        )));
    });
    let lines: Vec<&str> = report.text.lines().collect();
    for line in lines.iter().take(TEXT_LINES) {
        inner.add(label(RichText::new(line.trim_start()).monospace()));
    }
    let more = lines.len().saturating_sub(TEXT_LINES);
    let hover = if more > 0 {
        format!(
            "Go to this step and select the block\n\n{}",
            lines[TEXT_LINES..].join("\n")
        )
    } else {
        "Go to this step and select the block".to_owned()
    };
    let response = response.on_hover_text(hover);
    if response.clicked() {
        commands.push(Command::Seek(report.position));
        let addr = report.block.map(|b| b.start).or(report.addr);
        commands.push(Command::Select(addr.map(|addr| Selection {
            kind: lane.kind,
            addr,
        })));
    }
}

//! Every failed operation and every violation over the whole timeline, listed the way
//! AddressSanitizer reports them; clicking one seeks to its step and selects its block. An
//! emulated program lists the emulator's reports instead (see [`super::guest_reports`]).

use eframe::egui::{self, RichText, ScrollArea, Sense, Stroke, StrokeKind, Ui, Vec2};
use heapscope_core::timeline::MAX_PROBLEMS;
use heapscope_core::{AllocError, AllocatorKind, Problem, StepResult, Violation, allocator::bytes};

use super::{Commands, View};
use crate::command::{Command, Selection};
use crate::palette;
use crate::session::{Lane, ReportRef};

/// Height of one report.
pub(super) const ROW_HEIGHT: f32 = 78.0;

/// One entry of the list, resolved.
struct Report<'a> {
    lane: &'a Lane,
    /// Position after the operation.
    at: usize,
    addr: Option<u64>,
    what: What<'a>,
}

enum What<'a> {
    Violation(&'a Violation),
    Refused(&'a AllocError),
}

impl Report<'_> {
    /// The address whose block is selected when the report is clicked.
    fn block_addr(&self) -> Option<u64> {
        match self.what {
            What::Violation(v) => v.block.as_ref().map(|b| b.start).or(Some(v.addr)),
            What::Refused(_) => self.addr,
        }
    }
}

fn resolve<'a>(view: &View<'a>, r: ReportRef) -> Option<Report<'a>> {
    let lane = view.session.lanes.get(r.lane)?;
    if !view.settings.shows(lane.kind) {
        return None;
    }
    let problem: &Problem = lane.timeline.problems().get(r.problem)?;
    let what = match r.violation {
        Some(v) => What::Violation(problem.violations.get(v)?),
        None => match &problem.result {
            StepResult::Failed(e) => What::Refused(e),
            _ => return None,
        },
    };
    Some(Report {
        lane,
        at: problem.step + 1,
        addr: problem.addr,
        what,
    })
}

/// The reports of shown lanes, cached per session and set of hidden lanes (a poisoned
/// allocator on a long trace has a million of them).
fn visible_reports(ui: &Ui, view: &View<'_>) -> std::sync::Arc<Vec<ReportRef>> {
    type Cached = (
        String,
        usize,
        Vec<AllocatorKind>,
        std::sync::Arc<Vec<ReportRef>>,
    );
    let session = view.session;
    let id = egui::Id::unique("visible_reports");
    let key = (
        session.title(),
        session.reports.len(),
        view.settings.hidden.clone(),
    );
    if let Some((title, len, hidden, reports)) = ui.data(|d| d.get_temp::<Cached>(id))
        && (title, len, hidden) == key
    {
        return reports;
    }
    let reports: std::sync::Arc<Vec<ReportRef>> = std::sync::Arc::new(
        session
            .reports
            .iter()
            .copied()
            .filter(|r| {
                session
                    .lanes
                    .get(r.lane)
                    .is_some_and(|l| view.settings.shows(l.kind))
            })
            .collect(),
    );
    ui.data_mut(|d| d.insert_temp::<Cached>(id, (key.0, key.1, key.2, reports.clone())));
    reports
}

/// Draws the violations panel.
pub fn show(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    let session = view.session;
    // An emulated program's own reports name the guest instruction, and warn and report
    // corruption where the trace's replay only sees the calls: they take the list's place.
    if session.scenario.program.is_some() {
        return super::guest_reports::show(ui, view, commands);
    }
    let filtered;
    let shown: &[ReportRef] = if view.settings.hidden.is_empty() {
        &session.reports
    } else {
        filtered = visible_reports(ui, view);
        &filtered
    };
    let (violations, failed, reports) = view.visible_lanes().fold((0, 0, 0), |(v, f, r), lane| {
        let s = &lane.series;
        (
            v + s.violation_count,
            f + s.totals.failed as usize,
            r + s.report_count,
        )
    });
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!(
                "{reports} reports: {violations} violations, {failed} refused operations"
            ))
            .strong(),
        )
        .on_hover_text("A refused free that a violation explains (a double free) is listed once");
        if reports > shown.len() {
            ui.label(
                RichText::new(format!(
                    "(the first {MAX_PROBLEMS} problem steps per allocator are listed)"
                ))
                .weak(),
            );
        }
        ui.label(RichText::new("Click a report to go to its step and block").weak());
    });
    if shown.is_empty() {
        ui.add_space(8.0);
        ui.label(
            RichText::new("No allocator reported a problem on this trace.")
                .weak()
                .italics(),
        );
        return;
    }
    ScrollArea::vertical()
        .id_salt("violations_list")
        .auto_shrink([false, false])
        .show_rows(ui, ROW_HEIGHT, shown.len(), |ui, rows| {
            for r in shown.get(rows).unwrap_or_default() {
                if let Some(report) = resolve(view, *r) {
                    draw(ui, view, &report, commands);
                }
            }
        });
}

/// One report, AddressSanitizer style.
fn draw(ui: &mut Ui, view: &View<'_>, problem: &Report<'_>, commands: &mut Commands) {
    let lane = problem.lane;
    let current = problem.at == view.session.cursor;
    let (response, mut inner) = report_row(ui, current, palette::PROBLEM);
    let op = problem
        .at
        .checked_sub(1)
        .and_then(|i| view.session.scenario.ops.get(i))
        .map(ToString::to_string)
        .unwrap_or_default();
    inner.horizontal(|ui| {
        let headline = match (&problem.what, problem.addr) {
            (What::Violation(v), _) => {
                format!("ERROR: {} on address {:#x}", v.class, first_bad(v))
            }
            (What::Refused(e), Some(addr)) => {
                format!("ERROR: {} at {addr:#x}", refusal(e))
            }
            (What::Refused(e), None) => format!("ERROR: {}", refusal(e)),
        };
        ui.label(
            RichText::new(headline)
                .monospace()
                .strong()
                .color(palette::PROBLEM),
        );
        ui.label(step_and_lane(ui, problem.at, lane.kind));
    });
    let second = match &problem.what {
        What::Violation(v) => match v.access {
            Some(access) => format!("{access} of size {} at {:#x} by {op}", v.len, v.addr),
            None => format!("free of {:#x} by {op}", v.addr),
        },
        What::Refused(_) => format!("refused: {op}"),
    };
    inner.label(RichText::new(second).monospace());
    let third = match &problem.what {
        What::Violation(v) => location(v),
        What::Refused(_) => String::new(),
    };
    let message = match &problem.what {
        What::Violation(v) => v.message.as_str(),
        What::Refused(e) => e.message.as_str(),
    };
    let weak = inner.visuals().weak_text_color();
    if third.is_empty() {
        inner.label(RichText::new(message).color(weak));
    } else {
        inner.label(RichText::new(third).monospace());
        inner.label(RichText::new(message).color(weak));
    }
    let response = response.on_hover_text("Go to this step and select the block");
    if response.clicked() {
        commands.push(Command::Seek(problem.at));
        commands.push(Command::Select(problem.block_addr().map(|addr| {
            Selection {
                kind: lane.kind,
                addr,
            }
        })));
    }
}

/// "refused: out-of-memory": the error's kebab-case kind.
/// One report's row, `ROW_HEIGHT` tall: a clickable card with a stripe of `colour` down its left
/// edge, outlined when it is the current step's. Returns the card's response and the child
/// UI to write the report's lines into.
pub(super) fn report_row(
    ui: &mut Ui,
    current: bool,
    colour: egui::Color32,
) -> (egui::Response, Ui) {
    let width = ui.available_width();
    let (rect, response) =
        ui.allocate_exact_size(Vec2::new(width, ROW_HEIGHT - 4.0), Sense::click());
    let visuals = ui.visuals();
    let fill = if response.hovered() {
        visuals.widgets.hovered.weak_bg_fill
    } else if current {
        visuals.selection.bg_fill.gamma_multiply(0.35)
    } else {
        visuals.faint_bg_color
    };
    ui.painter().rect_filled(rect, 4.0, fill);
    ui.painter().rect_filled(
        egui::Rect::from_min_size(rect.min, Vec2::new(3.0, rect.height())),
        0.0,
        colour,
    );
    if current {
        ui.painter().rect_stroke(
            rect,
            4.0,
            Stroke::new(1.0, visuals.strong_text_color()),
            StrokeKind::Inside,
        );
    }
    let mut inner = ui.new_child(
        egui::UiBuilder::new()
            .max_rect(rect.shrink2(Vec2::new(10.0, 3.0)))
            .layout(egui::Layout::top_down(egui::Align::Min)),
    );
    inner.spacing_mut().item_spacing.y = 1.0;
    (response, inner)
}

/// "step N · allocator", in the allocator's colour.
pub(super) fn step_and_lane(ui: &Ui, step: usize, kind: AllocatorKind) -> RichText {
    RichText::new(format!("step {step} · {}", kind.name()))
        .monospace()
        .color(palette::on_theme(
            palette::lane_colour(kind),
            ui.visuals().dark_mode,
        ))
}

fn refusal(e: &AllocError) -> String {
    let kind = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", e.kind));
    format!("refused: {kind}")
}

/// The first bad byte of a violation (where the original would have stopped).
fn first_bad(v: &Violation) -> u64 {
    v.bad.first().map_or(v.addr, |b| b.range.start)
}

/// Where the bad byte lies relative to the block, as AddressSanitizer words it.
fn location(v: &Violation) -> String {
    let Some(block) = &v.block else {
        return String::new();
    };
    let at = first_bad(v);
    let size = block.end.saturating_sub(block.start);
    let place = if at < block.start {
        format!("{} to the left of", bytes(block.start - at))
    } else if at >= block.end {
        format!("{} to the right of", bytes(at - block.end))
    } else {
        format!("{} inside of", bytes(at - block.start))
    };
    format!(
        "{at:#x} is located {place} the {}-byte region [{:#x},{:#x})",
        size, block.start, block.end
    )
}

//! The heap map: each allocator's address space drawn to scale, one lane per allocator, all on
//! one shared byte scale so their footprints compare at a glance.
//!
//! Drawing follows the zoom: blocks wider than a pixel are drawn one by one, blocks narrower
//! than a pixel are binned per pixel column and the column takes the colour of the state holding
//! most of its bytes, so a heap of a hundred thousand blocks costs one rectangle per column.
//! At byte zoom the bytes themselves are drawn in hex.

use std::sync::Arc;

use eframe::egui::{
    self, Align2, Color32, FontId, Pos2, Rect, RichText, Sense, Stroke, StrokeKind, Ui, Vec2,
};
use heapscope_core::{Addr, Block, BlockState, HeapLayout, StepResult, allocator::bytes};

use super::{Commands, View};
use crate::command::{Command, Selection};
use crate::palette;
use crate::session::Lane;

const BAR_HEIGHT: f32 = 34.0;
/// Bar height in compare mode, where every allocator shares the screen.
const COMPARE_BAR_HEIGHT: f32 = 22.0;
/// Pixels per byte from which bytes are drawn in hex.
const HEX_ZOOM: f64 = 18.0;

/// The window onto the lanes, in units of each lane's fitted span: `start` 0 and `span` 1 show
/// exactly the part of the heap in use. Zooming and panning change these, so the view keeps
/// following the heaps as they grow.
#[derive(Debug, Clone, Copy)]
struct MapView {
    start: f64,
    span: f64,
}

impl Default for MapView {
    fn default() -> Self {
        Self {
            start: 0.0,
            span: 1.0,
        }
    }
}

/// Large allocator bookkeeping at the heap's start (dlmalloc's state) is skipped when fitting.
const SKIP_LEADING_METADATA: u64 = 1024;

/// The part of a lane worth drawing when fitted: from the heap's start (past a large leading
/// metadata block) to the end of the last block the program holds or held, leaving out free
/// space, the top chunk and never-used space at the end.
fn fit_window(layout: &HeapLayout) -> (Addr, u64) {
    let lo = match layout.blocks.first() {
        Some(b) if b.state == BlockState::Metadata && b.size() > SKIP_LEADING_METADATA => {
            b.range.end
        }
        _ => layout.extent.start,
    };
    // Trailing metadata (dlmalloc's top foot and state) does not stretch the fit.
    let held = |s: BlockState| {
        matches!(
            s,
            BlockState::Live | BlockState::Freed | BlockState::Guard | BlockState::Padding
        )
    };
    let last = |pred: &dyn Fn(BlockState) -> bool| {
        layout
            .blocks
            .iter()
            .rev()
            .find(|b| pred(b.state))
            .map(|b| b.range.end)
    };
    let hi = last(&held)
        .or_else(|| last(&|s| s == BlockState::Metadata))
        .unwrap_or(lo)
        .max(lo);
    (lo, hi.saturating_sub(lo))
}

/// Draws every visible lane and the legend.
pub fn show(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    // Keep clear of the floating scroll bar, which covers the right end of the content (and
    // with it the bars' end addresses) while the pointer is over the map.
    let scroll = &ui.spacing().scroll;
    let gutter = scroll.bar_width + scroll.bar_inner_margin + scroll.bar_outer_margin;
    ui.set_max_width((ui.available_width() - gutter).max(0.0));
    let id = ui.scope_id().with("heap_map_view");
    let mut map: MapView = ui.data_mut(|d| *d.get_temp_mut_or_default(id));
    // Compare mode always draws every lane on one byte scale.
    let shared = view.settings.shared_scale || view.settings.compare;
    let widest = view
        .visible_lanes()
        .map(|l| fit_window(&l.layout).1)
        .max()
        .unwrap_or(0);

    for lane in view.visible_lanes() {
        let (lo, own) = fit_window(&lane.layout);
        let fit_bytes = ((if shared { widest } else { own }) as f64 * 1.1).max(64.0);
        lane_header(ui, lane, view.settings.compare);
        lane_bar(ui, view, lane, lo, fit_bytes, &mut map, commands);
        ui.add_space(6.0);
    }
    legend(ui, view, commands);
    ui.data_mut(|d| d.insert_temp(id, map));
    crate::export::remember_rect(
        ui.ctx(),
        crate::export::ExportKind::HeapMapPng,
        ui.min_rect().intersect(ui.clip_rect()),
    );
}

fn lane_header(ui: &mut Ui, lane: &Lane, swatch: bool) {
    let s = lane.layout.stats;
    // Wrapped: a long poisoning reason must not widen the map past the panel.
    ui.horizontal_wrapped(|ui| {
        if swatch {
            // The lane's line colour in the overlaid plots.
            let (r, _) = ui.allocate_exact_size(Vec2::splat(10.0), Sense::hover());
            ui.painter()
                .rect_filled(r, 2.0, palette::lane_colour(lane.kind));
        }
        ui.label(RichText::new(lane.kind.name()).strong().size(14.0));
        ui.label(RichText::new(lane.kind.origin()).weak().size(11.0));
        ui.separator();
        ui.label(
            RichText::new(format!(
                "{} live · {} requested · {} held · footprint {}",
                s.live_blocks,
                bytes(s.requested_live),
                bytes(s.held),
                bytes(s.footprint)
            ))
            .size(11.0)
            .weak(),
        );
        if let Some(why) = &lane.layout.poisoned {
            ui.label(
                RichText::new(format!("POISONED: {why}"))
                    .strong()
                    .color(palette::PROBLEM),
            );
        }
        if !lane.findings.is_empty() {
            ui.label(
                RichText::new(format!("⚠ {} invariant findings", lane.findings.len()))
                    .color(palette::PROBLEM),
            )
            .on_hover_text(
                lane.findings
                    .iter()
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn lane_bar(
    ui: &mut Ui,
    view: &View<'_>,
    lane: &Lane,
    lo: Addr,
    fit_bytes: f64,
    map: &mut MapView,
    commands: &mut Commands,
) {
    let dark = ui.visuals().dark_mode;
    let bar_height = if view.settings.compare {
        COMPARE_BAR_HEIGHT
    } else {
        BAR_HEIGHT
    };
    let (response, painter) = ui.allocate_painter(
        Vec2::new(ui.available_width(), bar_height + 14.0),
        Sense::click_and_drag(),
    );
    let rect = Rect::from_min_size(
        response.rect.min,
        Vec2::new(response.rect.width(), bar_height),
    );
    let layout = &lane.layout;
    let origin = lo as f64;
    let px_per_byte = f64::from(rect.width()) / (map.span * fit_bytes);
    let view_start = map.start * fit_bytes;
    let x_of =
        |addr: Addr| rect.left() + ((addr as f64 - origin - view_start) * px_per_byte) as f32;
    let addr_of =
        |x: f32| (origin + view_start + f64::from(x - rect.left()) / px_per_byte).max(0.0) as Addr;
    let view_lo = addr_of(rect.left());
    let view_hi = addr_of(rect.right()).saturating_add(1);

    painter.rect_filled(rect, 3.0, palette::state_fill(BlockState::Unused, dark));
    let painter = painter.with_clip_rect(rect);
    let separator = ui.visuals().extreme_bg_color;

    // Sub-pixel blocks are binned per column: bytes per state, drawn as the dominant state.
    // Binning walks every visible block, so the result is kept until the layout or the view
    // changes: an idle frame over a hundred thousand blocks costs one rectangle per column.
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            lane.kind,
            view.session.cursor,
            view.session.len(),
            layout.blocks.as_ptr() as usize,
            layout.blocks.len(),
        )
            .hash(&mut h);
        for f in [rect.left(), rect.width()] {
            f.to_bits().hash(&mut h);
        }
        for f in [origin, px_per_byte, view_start] {
            f.to_bits().hash(&mut h);
        }
        h.finish()
    };
    let cache_id = ui.scope_id().with(("heap_map_bins", lane.kind));
    let cached: Option<(u64, Arc<Vec<DrawItem>>)> = ui.data(|d| d.get_temp(cache_id));
    let items = match cached {
        Some((k, items)) if k == key => items,
        _ => {
            let items = Arc::new(bin_blocks(layout, view_lo, view_hi, rect, &x_of));
            ui.data_mut(|d| d.insert_temp(cache_id, (key, Arc::clone(&items))));
            items
        }
    };
    for item in items.iter() {
        match *item {
            DrawItem::Column { column, slot } => {
                let x = rect.left() + column as f32;
                let state = palette::LEGEND
                    .get(slot)
                    .copied()
                    .unwrap_or(BlockState::Unused);
                painter.rect_filled(
                    Rect::from_min_max(Pos2::new(x, rect.top()), Pos2::new(x + 1.0, rect.bottom())),
                    0.0,
                    palette::state_fill(state, dark),
                );
            }
            DrawItem::Block(index) => {
                if let Some(block) = layout.blocks.get(index) {
                    let x0 = x_of(block.range.start);
                    let x1 = x_of(block.range.end);
                    draw_block(&painter, block, x0, x1, rect, dark, separator, px_per_byte);
                }
            }
        }
    }

    if px_per_byte >= HEX_ZOOM {
        draw_hex(
            &painter,
            lane,
            rect,
            view_lo,
            view_hi,
            &x_of,
            px_per_byte as f32,
            dark,
        );
    }

    // The block the current step touched, and what a checking allocator caught.
    if let Some(step) = &lane.last_step {
        if let Some(block) = step.addr.and_then(|a| layout.block_at(a)) {
            let r = Rect::from_min_max(
                Pos2::new(x_of(block.range.start), rect.top()),
                Pos2::new(
                    x_of(block.range.end).max(x_of(block.range.start) + 2.0),
                    rect.bottom(),
                ),
            );
            let colour = if matches!(step.result, StepResult::Failed(_)) {
                palette::PROBLEM
            } else {
                ui.visuals().strong_text_color()
            };
            painter.rect_stroke(r, 2.0, Stroke::new(2.0, colour), StrokeKind::Inside);
        }
        for violation in &step.violations {
            for bad in &violation.bad {
                let x0 = x_of(bad.range.start);
                let x1 = x_of(bad.range.end).max(x0 + 3.0);
                painter.rect_filled(
                    Rect::from_min_max(Pos2::new(x0, rect.top()), Pos2::new(x1, rect.bottom())),
                    0.0,
                    palette::PROBLEM,
                );
            }
        }
    }
    if let Some(sel) = view.selection.filter(|s| s.kind == lane.kind)
        && let Some(block) = layout.block_at(sel.addr)
    {
        let r = Rect::from_min_max(
            Pos2::new(x_of(block.range.start), rect.top() - 1.0),
            Pos2::new(
                x_of(block.range.end).max(x_of(block.range.start) + 2.0),
                rect.bottom() + 1.0,
            ),
        );
        painter.rect_stroke(
            r,
            2.0,
            Stroke::new(2.5, Color32::from_rgb(0xff, 0xd0, 0x40)),
            StrokeKind::Outside,
        );
    }
    for marker in &layout.markers {
        let x = x_of(marker.addr);
        painter.vline(
            x,
            rect.top() - 2.0..=rect.bottom() + 2.0,
            Stroke::new(2.0, ui.visuals().strong_text_color()),
        );
    }

    // Marker names under the bar, then the end addresses where they do not collide.
    let full = ui.painter();
    let label_y = rect.bottom() + 1.0;
    let weak = ui.visuals().weak_text_color();
    let font = FontId::monospace(10.0);
    let mut taken: Vec<Rect> = Vec::new();
    for marker in &layout.markers {
        let x = x_of(marker.addr);
        if x >= rect.left() && x <= rect.right() {
            // Centred under the marker, unless that would cut it at either end of the bar.
            let anchor = if x > rect.right() - 80.0 {
                Align2::RIGHT_TOP
            } else if x < rect.left() + 80.0 {
                Align2::LEFT_TOP
            } else {
                Align2::CENTER_TOP
            };
            let text = format!("{} {:#x}", marker.name, marker.addr)
                .trim_start()
                .to_owned();
            // Markers closer than their labels are wide (many bins' heads, say) keep the
            // first label: overlapping ones would be unreadable smudges.
            let galley = full.layout_no_wrap(text, font.clone(), ui.visuals().text_color());
            let r = anchor.anchor_size(Pos2::new(x, label_y), galley.size());
            if !taken.iter().any(|t| t.expand(4.0).intersects(r)) {
                full.galley(r.min, galley, ui.visuals().text_color());
                taken.push(r);
            }
        }
    }
    for (x, anchor, addr) in [
        (rect.left(), Align2::LEFT_TOP, view_lo),
        (rect.right(), Align2::RIGHT_TOP, view_hi),
    ] {
        let text = format!("{addr:#x}");
        let galley = full.layout_no_wrap(text.clone(), font.clone(), weak);
        let r = anchor.anchor_size(Pos2::new(x, label_y), galley.size());
        if !taken.iter().any(|t| t.expand(4.0).intersects(r)) {
            full.text(Pos2::new(x, label_y), anchor, text, font.clone(), weak);
        }
    }

    // Zoom with the wheel around the pointer, pan by dragging, double-click to fit.
    if let Some(pos) = response.hover_pos() {
        let scroll = ui.input(|i| i.smooth_scroll_delta.y);
        if scroll != 0.0 {
            let t = f64::from((pos.x - rect.left()) / rect.width());
            let at = map.start + t * map.span;
            let factor = (-f64::from(scroll) * 0.004).exp();
            map.span = (map.span * factor).clamp(4.0 / fit_bytes, 1e6);
            map.start = at - t * map.span;
        }
    }
    if response.dragged() {
        map.start -= f64::from(response.drag_delta().x / rect.width()) * map.span;
    }
    if response.double_clicked() {
        *map = MapView::default();
    }
    if response.clicked()
        && let Some(pos) = response.interact_pointer_pos()
    {
        let addr = addr_of(pos.x);
        let selection = layout.block_at(addr).map(|b| Selection {
            kind: lane.kind,
            addr: b.range.start,
        });
        commands.push(Command::Select(selection));
    }
    if let Some(pos) = response.hover_pos()
        && rect.contains(pos)
        && let Some(block) = lane.described_block(addr_of(pos.x))
    {
        let addr = addr_of(pos.x);
        response.on_hover_ui_at_pointer(|ui| block_tooltip(ui, &block, addr));
    }
}

/// What the heap map draws for a lane at one view: a block wide enough to draw on its own, or
/// a one-pixel column of sub-pixel blocks in its dominant state.
#[derive(Debug, Clone, Copy)]
enum DrawItem {
    /// One pixel column, in the state (index into `palette::LEGEND`) holding most of its bytes.
    Column { column: i64, slot: usize },
    /// A block (index into the layout) at least a pixel and a half wide.
    Block(usize),
}

/// Number of legend states, one byte count each when binning a column.
const SLOTS: usize = palette::LEGEND.len();

/// Index of `state` in `palette::LEGEND`.
fn legend_slot(state: BlockState) -> usize {
    match state {
        BlockState::Live => 0,
        BlockState::Free => 1,
        BlockState::Freed => 2,
        BlockState::Guard => 3,
        BlockState::Padding => 4,
        BlockState::Metadata => 5,
        BlockState::Top => 6,
        BlockState::Unused => 7,
        BlockState::Unmapped => 8,
    }
}

/// Walks the blocks in `[view_lo, view_hi)` once and decides what to draw.
fn bin_blocks(
    layout: &HeapLayout,
    view_lo: Addr,
    view_hi: Addr,
    rect: Rect,
    x_of: &dyn Fn(Addr) -> f32,
) -> Vec<DrawItem> {
    let mut items = Vec::new();
    let mut column: Option<(i64, [u64; SLOTS])> = None;
    let flush = |column: &mut Option<(i64, [u64; SLOTS])>, items: &mut Vec<DrawItem>| {
        if let Some((c, counts)) = column.take() {
            let slot = (0..SLOTS).max_by_key(|&i| counts[i]).unwrap_or(0);
            items.push(DrawItem::Column { column: c, slot });
        }
    };
    let first = layout.blocks.partition_point(|b| b.range.end <= view_lo);
    for (offset, block) in layout.blocks[first..]
        .iter()
        .take_while(|b| b.range.start < view_hi)
        .enumerate()
    {
        let x0 = x_of(block.range.start);
        let x1 = x_of(block.range.end);
        if x1 - x0 >= 1.5 {
            flush(&mut column, &mut items);
            items.push(DrawItem::Block(first + offset));
        } else {
            let c = (x0 - rect.left()).floor() as i64;
            if column.as_ref().is_some_and(|(cur, _)| *cur != c) {
                flush(&mut column, &mut items);
            }
            let entry = column.get_or_insert((c, [0; SLOTS]));
            entry.1[legend_slot(block.state)] += block.size();
        }
    }
    flush(&mut column, &mut items);
    items
}

#[allow(clippy::too_many_arguments)]
fn draw_block(
    painter: &egui::Painter,
    block: &Block,
    x0: f32,
    x1: f32,
    rect: Rect,
    dark: bool,
    separator: Color32,
    px_per_byte: f64,
) {
    let body = Rect::from_min_max(Pos2::new(x0, rect.top()), Pos2::new(x1, rect.bottom()));
    painter.rect_filled(body, 0.0, palette::state_fill(block.state, dark));
    if block.header.end > block.header.start {
        let hx1 = x0 + ((block.header.end - block.header.start) as f64 * px_per_byte) as f32;
        painter.rect_filled(
            Rect::from_min_max(body.min, Pos2::new(hx1.min(x1), rect.bottom())),
            0.0,
            palette::header_fill(block.state, dark),
        );
    }
    // Slack after the request: a lighter band along the bottom of live blocks.
    if block.state == BlockState::Live && block.slack() > 0 {
        let used_end = block.payload.start + block.requested.unwrap_or(0);
        let sx0 = x0 + ((used_end - block.range.start) as f64 * px_per_byte) as f32;
        if x1 - sx0 >= 1.0 {
            painter.rect_filled(
                Rect::from_min_max(
                    Pos2::new(sx0, rect.top() + rect.height() * 0.55),
                    Pos2::new(x1, rect.bottom()),
                ),
                0.0,
                Color32::from_white_alpha(70),
            );
        }
    }
    if x1 - x0 >= 4.0 {
        painter.vline(
            x1 - 0.5,
            rect.top()..=rect.bottom(),
            Stroke::new(1.0, separator),
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn draw_hex(
    painter: &egui::Painter,
    lane: &Lane,
    rect: Rect,
    lo: Addr,
    hi: Addr,
    x_of: &dyn Fn(Addr) -> f32,
    px: f32,
    dark: bool,
) {
    let memory = lane.replay().heap().memory();
    let font = FontId::monospace((px * 0.55).clamp(8.0, 13.0));
    let colour = if dark {
        Color32::from_gray(235)
    } else {
        Color32::from_gray(20)
    };
    // Header fields are named along the top of the bar, over the bytes they were read from;
    // the bytes sit below them.
    let described = lane.described_span(lo, hi);
    let fields = draw_field_names(painter, &described, rect, x_of, colour);
    let hex_y = if fields {
        rect.bottom() - rect.height() * 0.32
    } else {
        rect.center().y
    };
    for addr in lo..hi {
        if let Ok(byte) = memory.slice(addr, 1) {
            let x = x_of(addr) + px / 2.0;
            painter.text(
                Pos2::new(x, hex_y),
                Align2::CENTER_CENTER,
                format!("{:02x}", byte[0]),
                font.clone(),
                colour,
            );
        }
    }
}

/// Names each decoded header field of `blocks` over its bytes, with a bracket spanning them;
/// a name too long for its bytes is cut to fit. Returns whether any field was drawn.
fn draw_field_names(
    painter: &egui::Painter,
    blocks: &[Block],
    rect: Rect,
    x_of: &dyn Fn(Addr) -> f32,
    colour: Color32,
) -> bool {
    let font = FontId::proportional(10.0);
    let top = rect.top() + 2.0;
    let mut any = false;
    for block in blocks {
        for field in &block.fields {
            // A field cut by the view's edge is named over the part that shows.
            let x0 = x_of(field.range.start).max(rect.left()) + 2.0;
            let x1 = x_of(field.range.end).min(rect.right()) - 2.0;
            if x1 - x0 < 8.0 {
                continue;
            }
            any = true;
            painter.hline(x0..=x1, top, Stroke::new(1.0, colour.gamma_multiply(0.6)));
            for x in [x0, x1] {
                painter.vline(
                    x,
                    top..=top + 3.0,
                    Stroke::new(1.0, colour.gamma_multiply(0.6)),
                );
            }
            // The name with its meaning when there is room, else the longest prefix of the
            // name that fits between the bracket's ends.
            let room = x1 - x0 - 4.0;
            let explained = format!("{}: {}", field.name, field.meaning);
            let mut text = field.name.clone();
            let galley = painter.layout_no_wrap(explained, font.clone(), colour);
            let galley = if galley.size().x <= room {
                galley
            } else {
                loop {
                    let galley = painter.layout_no_wrap(text.clone(), font.clone(), colour);
                    if galley.size().x <= room || text.pop().is_none() {
                        break galley;
                    }
                }
            };
            if galley.size().x <= room {
                painter.galley(
                    Pos2::new((x0 + x1 - galley.size().x) / 2.0, top + 1.0),
                    galley,
                    colour,
                );
            }
        }
    }
    any
}

fn block_tooltip(ui: &mut Ui, block: &Block, addr: Addr) {
    ui.label(RichText::new(format!("{} block", palette::state_name(block.state))).strong());
    if let Some(class) = &block.class {
        ui.label(class);
    }
    egui::Grid::new("block_tooltip")
        .num_columns(2)
        .show(ui, |ui| {
            ui.label("range");
            ui.monospace(format!(
                "[{:#x}, {:#x}) {}",
                block.range.start,
                block.range.end,
                bytes(block.size())
            ));
            ui.end_row();
            if block.header.end > block.header.start {
                ui.label("header");
                ui.monospace(format!(
                    "[{:#x}, {:#x})",
                    block.header.start, block.header.end
                ));
                ui.end_row();
            }
            ui.label("payload");
            ui.monospace(format!(
                "[{:#x}, {:#x}) {}",
                block.payload.start,
                block.payload.end,
                bytes(block.payload.end - block.payload.start)
            ));
            ui.end_row();
            if let Some(req) = block.requested {
                ui.label("requested");
                ui.monospace(format!("{} (slack {})", bytes(req), bytes(block.slack())));
                ui.end_row();
            }
            ui.label("pointer");
            ui.monospace(format!("{addr:#x}"));
            ui.end_row();
            for field in &block.fields {
                ui.label(&field.name);
                ui.monospace(format!("{:#x}  {}", field.value, field.meaning));
                ui.end_row();
            }
        });
}

fn legend(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    let dark = ui.visuals().dark_mode;
    // Each swatch and its name wrap together, never a swatch at a line's end without its name.
    let entry = |ui: &mut Ui, colour: Color32, name: &str| {
        let font = egui::TextStyle::Small.resolve(ui.style());
        let text_width = ui
            .painter()
            .layout_no_wrap(name.to_owned(), font, Color32::WHITE)
            .size()
            .x;
        let width = 12.0 + 2.0 * ui.spacing().item_spacing.x + text_width;
        if ui.available_size_before_wrap().x < width {
            ui.end_row();
        }
        ui.horizontal(|ui| {
            let (rect, _) = ui.allocate_exact_size(Vec2::splat(12.0), Sense::hover());
            ui.painter().rect_filled(rect, 2.0, colour);
            ui.label(RichText::new(name).small());
        });
        ui.add_space(6.0);
    };
    ui.horizontal_wrapped(|ui| {
        for &state in palette::LEGEND {
            entry(
                ui,
                palette::state_fill(state, dark),
                palette::state_name(state),
            );
        }
        entry(ui, palette::header_fill(BlockState::Live, dark), "header");
        entry(ui, palette::PROBLEM, "bad access");
    });
    ui.horizontal(|ui| {
        let mut shared = view.settings.shared_scale || view.settings.compare;
        if ui
            .add_enabled(
                !view.settings.compare,
                egui::Checkbox::new(&mut shared, "one byte scale for all"),
            )
            .on_hover_text(
                "Draw every allocator on the same bytes-per-pixel scale, to compare footprints",
            )
            .changed()
        {
            commands.push(Command::ToggleSharedScale);
        }
        ui.label(
            RichText::new("Wheel: zoom · drag: pan · double-click: fit · click: inspect")
                .weak()
                .small(),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_slots_follow_the_legend() {
        for (i, &state) in palette::LEGEND.iter().enumerate() {
            assert_eq!(legend_slot(state), i, "{state:?}");
        }
    }
}

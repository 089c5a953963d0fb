//! The inspector: the selected block's header decoded field by field, and its bytes in hex.

use eframe::egui::{self, RichText, Ui};
use heapscope_core::allocator::bytes;

use super::{Commands, View};
use crate::command::Command;
use crate::palette;

/// Bytes of a block shown in the hex dump at most.
const DUMP_LIMIT: u64 = 256;

/// Draws the inspector for the selected block, if any.
pub fn show(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    let Some(selection) = view.selection else {
        ui.label(
            RichText::new("Click a block in the heap map or a free-list node to inspect it.")
                .weak(),
        );
        return;
    };
    let Some(lane) = view.session.lanes.iter().find(|l| l.kind == selection.kind) else {
        return;
    };
    let Some(block) = lane.described_block(selection.addr) else {
        ui.label(
            RichText::new(format!(
                "{}: nothing at {:#x} at this step",
                lane.kind, selection.addr
            ))
            .weak(),
        );
        return;
    };
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!(
                "{} · {}",
                lane.kind,
                palette::state_name(block.state)
            ))
            .strong(),
        );
        if ui
            .small_button("✖")
            .on_hover_text("Clear the selection")
            .clicked()
        {
            commands.push(Command::Select(None));
        }
    });
    egui::Grid::new("inspector_fields")
        .num_columns(3)
        .striped(true)
        .show(ui, |ui| {
            ui.label("block");
            ui.monospace(format!(
                "[{:#x}, {:#x})",
                block.range.start, block.range.end
            ));
            ui.monospace(bytes(block.size()));
            ui.end_row();
            if let Some(class) = &block.class {
                ui.label("class");
                ui.label(class);
                ui.label("");
                ui.end_row();
            }
            if let Some(requested) = block.requested {
                ui.label("requested");
                ui.monospace(bytes(requested));
                ui.monospace(format!("slack {}", bytes(block.slack())));
                ui.end_row();
            }
            for field in &block.fields {
                ui.label(RichText::new(&field.name).strong());
                ui.monospace(format!("@{:#x} = {:#x}", field.range.start, field.value));
                ui.label(&field.meaning);
                ui.end_row();
            }
        });
    ui.add_space(4.0);
    let memory = lane.replay().heap().memory();
    let len = block.size().min(DUMP_LIMIT);
    match memory.slice(block.range.start, len) {
        Ok(data) => {
            let mut text = String::new();
            for (row, chunk) in data.chunks(16).enumerate() {
                let addr = block.range.start + row as u64 * 16;
                let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                let ascii: String = chunk
                    .iter()
                    .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
                    .collect();
                text.push_str(&format!("{addr:#010x}  {:<47}  {ascii}\n", hex.join(" ")));
            }
            if block.size() > len {
                text.push_str(&format!("… {} more", bytes(block.size() - len)));
            }
            ui.label(RichText::new(text).monospace().small());
        }
        Err(_) => {
            ui.label(RichText::new("(these bytes are not materialised yet: all zero)").weak());
        }
    }
}

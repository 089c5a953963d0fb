//! Free lists and bins, each drawn as the chain its links really make.

use eframe::egui::{RichText, Ui};

use super::{Commands, View};
use crate::command::{Command, Selection};
use crate::palette;

/// Nodes shown per list before eliding the rest.
const NODES_SHOWN: usize = 12;

/// Draws the non-empty free lists of every visible lane.
pub fn show(ui: &mut Ui, view: &View<'_>, commands: &mut Commands) {
    if view
        .visible_lanes()
        .all(|lane| lane.layout.free_lists.is_empty())
    {
        ui.label(
            RichText::new(
                "None of the shown allocators keeps a free list: they never reuse freed memory.",
            )
            .weak(),
        );
        return;
    }
    for lane in view.visible_lanes() {
        let lists: Vec<_> = lane
            .layout
            .free_lists
            .iter()
            .filter(|l| !l.nodes.is_empty() || l.problem.is_some())
            .collect();
        if lane.layout.free_lists.is_empty() {
            continue;
        }
        ui.label(RichText::new(format!("{} ({} non-empty)", lane.kind, lists.len())).strong());
        if lists.is_empty() {
            ui.label(RichText::new("  all lists empty").weak().small());
        }
        for list in lists {
            ui.horizontal_wrapped(|ui| {
                ui.label(RichText::new(&list.name).monospace().small());
                ui.label(
                    RichText::new(format!("{}:", list.nodes.len()))
                        .weak()
                        .small(),
                );
                for (i, &node) in list.nodes.iter().take(NODES_SHOWN).enumerate() {
                    if i > 0 {
                        ui.label(RichText::new("→").monospace().weak());
                    }
                    let selected = view.selection.is_some_and(|s| {
                        s.kind == lane.kind
                            && lane
                                .layout
                                .block_at(s.addr)
                                .is_some_and(|b| b.range.contains(&node))
                    });
                    if ui
                        .selectable_label(
                            selected,
                            RichText::new(format!("{node:#x}")).monospace().small(),
                        )
                        .on_hover_text("Select this block")
                        .clicked()
                    {
                        commands.push(Command::Select(Some(Selection {
                            kind: lane.kind,
                            addr: node,
                        })));
                    }
                }
                if list.nodes.len() > NODES_SHOWN {
                    ui.label(
                        RichText::new(format!("… {} more", list.nodes.len() - NODES_SHOWN))
                            .weak()
                            .small(),
                    );
                }
                if let Some(problem) = &list.problem {
                    ui.label(RichText::new(problem).color(palette::PROBLEM).small());
                }
            });
        }
        ui.add_space(4.0);
    }
}

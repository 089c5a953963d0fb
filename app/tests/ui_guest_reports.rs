//! An emulated guest scenario in the real app (egui_kittest, no GPU): the violations panel
//! lists the emulator's reports AddressSanitizer style, filters them by kind, and clicking one
//! seeks to its step and selects its block.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::path::Path;

use egui_kittest::kittest::Queryable;
use heapscope::command::Command;

#[path = "support/harness.rs"]
mod harness;
use harness::{app, click_hover, settle};
use heapscope_core::AllocatorKind;
use heapscope_core::emulate::report::ReportKind;

#[test]
fn a_guest_report_is_listed_asan_style_and_clicking_it_seeks_to_its_step() {
    let mut h = app();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/guests/use_after_free.ron");
    h.state_mut().push_command(Command::Open(path));
    h.state_mut().push_command(Command::ShowDockTab(
        heapscope::settings::DockTab::Violations,
    ));
    h.run_steps(1);
    settle(&mut h);
    assert_eq!(
        h.state().session().scenario.name,
        "Emulated: use after free",
        "{:?}",
        h.state().error()
    );
    assert_eq!(h.state().session().cursor, 0);
    // checked-bump's report of the read after the free, with the guest instruction and the
    // block's steps.
    let (position, block_start, write_position) = {
        let lane = h
            .state()
            .session()
            .lanes
            .iter()
            .find(|l| l.kind == AllocatorKind::CheckedBump)
            .expect("the scenario runs checked-bump");
        let first = lane
            .guest_reports
            .iter()
            .find(|r| r.kind == ReportKind::Violation)
            .expect("checked-bump reports the use after free");
        assert_eq!(first.class, "use-after-free");
        let write = lane
            .guest_reports
            .iter()
            .rfind(|r| r.kind == ReportKind::Violation)
            .unwrap();
        assert!(write.position > first.position);
        (
            first.position,
            first.block.expect("the freed block").start,
            write.position,
        )
    };
    assert!(position > 0);
    // Other allocators warn about the same accesses (the list starts with them); the filter
    // leaves the violations alone.
    assert!(
        h.query_all_by_label_contains("WARNING: use-after-free")
            .count()
            >= 1
    );
    click_hover(&mut h, "List the warnings");
    assert_eq!(
        h.query_all_by_label_contains("WARNING: use-after-free")
            .count(),
        0
    );
    click_hover(&mut h, "List the refused calls");
    click_hover(&mut h, "List the corruptions");
    assert_eq!(
        h.query_all_by_label_contains("ERROR: use-after-free on address")
            .count(),
        2,
        "the read and the write after the free"
    );
    assert_eq!(
        h.query_all_by_label_contains("READ of 8 bytes at").count(),
        1
    );
    assert_eq!(
        h.query_all_by_label_contains("WRITE of 8 bytes at").count(),
        1
    );
    assert_eq!(h.query_all_by_label_contains("at pc 0x").count(), 2);
    assert_eq!(h.query_all_by_label_contains("(freed at step").count(), 2);
    // The first report listed is now checked-bump's read after the free.
    h.get_all_by(|node| {
        node.description()
            .is_some_and(|d| d.starts_with("Go to this step"))
    })
    .next()
    .expect("a report")
    .click();
    h.run_steps(2);
    assert_eq!(h.state().session().cursor, position);
    let selection = h.state().selection().expect("the block is selected");
    assert_eq!(selection.kind, AllocatorKind::CheckedBump);
    assert_eq!(selection.addr, block_start);
    // A click on a report's text goes to its step too.
    h.get_by_label_contains("WRITE of 8 bytes at").click();
    h.run_steps(2);
    assert_eq!(h.state().session().cursor, write_position);
}

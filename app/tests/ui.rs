//! The real app driven through its widgets with egui_kittest (no GPU needed): stepping,
//! playing, seeking on the timeline, selecting from the free lists, and a broken file that
//! leaves the loaded scenario in place.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use heapscope::app::HeapscopeApp;
use heapscope::command::Command;

#[path = "support/harness.rs"]
mod harness;
use harness::{app, click_hover, settle};

#[path = "support/workload.rs"]
mod workload;

fn cursor(harness: &Harness<'static, HeapscopeApp>) -> usize {
    harness.state().session().cursor
}

#[test]
fn opens_on_the_default_scenario_and_steps_forward_and_back() {
    let mut h = app();
    assert_eq!(h.state().session().scenario.name, "First steps");
    assert_eq!(cursor(&h), 0);
    click_hover(&mut h, "Step forward");
    assert_eq!(cursor(&h), 1);
    assert!(h.get_all_by_label_contains("step 1: #1 = alloc(9)").count() >= 1);
    click_hover(&mut h, "Step forward");
    click_hover(&mut h, "Step back");
    assert_eq!(cursor(&h), 1);
    h.key_press(egui::Key::ArrowRight);
    h.run_steps(2);
    assert_eq!(cursor(&h), 2);
    h.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::ArrowRight);
    h.run_steps(2);
    assert_eq!(cursor(&h), 12);
    h.key_press(egui::Key::End);
    h.run_steps(2);
    assert_eq!(cursor(&h), h.state().session().len());
    h.key_press(egui::Key::Home);
    h.run_steps(2);
    assert_eq!(cursor(&h), 0);
}

#[test]
fn play_advances_until_paused() {
    let mut h = app();
    click_hover(&mut h, "Play / pause");
    assert!(h.state().playing());
    // Several frames of playback at the default 4 steps per second.
    for _ in 0..40 {
        h.step();
    }
    let reached = cursor(&h);
    assert!(reached >= 1, "playback did not advance");
    click_hover(&mut h, "Play / pause");
    assert!(!h.state().playing());
    for _ in 0..20 {
        h.step();
    }
    assert_eq!(cursor(&h), reached, "paused playback moved");
}

#[test]
fn clicking_the_timeline_seeks() {
    let mut h = app();
    h.get_by(|node| {
        node.description()
            .is_some_and(|d| d.starts_with("Drag to seek"))
    })
    .click();
    h.run_steps(2);
    let n = h.state().session().len();
    let c = cursor(&h);
    // The middle of the scrubber is the middle of the trace.
    assert!(c.abs_diff(n / 2) <= 1, "cursor {c} of {n}");
}

#[test]
fn a_free_list_node_selects_its_block() {
    let mut h = app();
    // Close the dock so the details column has room to show the free lists.
    h.state_mut().push_command(Command::ToggleDock);
    // After step 4 (free(#2)) freeing-bump has one block on a free list.
    for _ in 0..4 {
        click_hover(&mut h, "Step forward");
    }
    assert!(h.state().selection().is_none());
    h.get_all_by(|node| node.description().as_deref() == Some("Select this block"))
        .next()
        .expect("a free-list node")
        .click();
    h.run_steps(2);
    let selection = h.state().selection().expect("selected");
    let lane = h
        .state()
        .session()
        .lanes
        .iter()
        .find(|l| l.kind == selection.kind)
        .unwrap();
    let block = lane.layout.block_at(selection.addr).expect("a block there");
    assert_eq!(block.state, heapscope_core::BlockState::Free);
    // The inspector now decodes the selected block's header.
    let heading = format!("{} · free", selection.kind);
    assert_eq!(
        h.query_all_by_label_contains(&heading).count(),
        1,
        "{heading}"
    );
}

#[test]
fn a_broken_file_shows_its_error_and_keeps_the_loaded_scenario() {
    let mut h = app();
    click_hover(&mut h, "Step forward");
    let dir = std::env::temp_dir().join(format!("heapscope-ui-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("broken.ron");
    std::fs::write(
        &bad,
        "Scenario(\n  name: \"broken\",\n  ops: [Free(idd: 1)],\n)\n",
    )
    .unwrap();
    h.state_mut().push_command(Command::Open(bad.clone()));
    h.run_steps(1);
    settle(&mut h);
    let error = h.state().error().expect("an error").to_owned();
    assert!(error.contains("broken.ron:3:"), "{error}");
    assert_eq!(
        h.get_all_by_label_contains("broken.ron:3:").count(),
        1,
        "one error banner"
    );
    assert_eq!(h.state().session().scenario.name, "First steps");
    assert_eq!(cursor(&h), 1, "the loaded scenario and its position stay");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A scenario with an overflow, a use after free and a double free (checked-bump catches them)
/// and an allocation too large for anyone.
const BUGS: &str = r#"Scenario(
    name: "bugs",
    ops: [
        Alloc(id: 1, size: 16),
        Alloc(id: 2, size: 32),
        Write(id: 1, offset: 12, bytes: [1, 2, 3, 4, 5, 6, 7, 8]),
        Free(id: 2),
        Read(id: 2, offset: 0, len: 4),
        Alloc(id: 3, size: 8),
        Free(id: 2),
        Free(id: 1),
    ],
)
"#;

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("heapscope-ui-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn clicking_a_violation_seeks_to_it_and_selects_its_block() {
    let mut h = app();
    let path = temp_file("bugs.ron", BUGS);
    h.state_mut().push_command(Command::Open(path));
    h.state_mut().push_command(Command::ShowDockTab(
        heapscope::settings::DockTab::Violations,
    ));
    h.run_steps(1);
    settle(&mut h);
    assert_eq!(
        h.state().session().scenario.name,
        "bugs",
        "{:?}",
        h.state().error()
    );
    // The overflow (step 3) is listed first; clicking it moves the cursor there.
    h.get_all_by(|node| {
        node.description()
            .is_some_and(|d| d.starts_with("Go to this step"))
    })
    .next()
    .expect("a report")
    .click();
    h.run_steps(2);
    assert_eq!(cursor(&h), 3);
    let selection = h.state().selection().expect("the block is selected");
    assert_eq!(selection.kind, heapscope_core::AllocatorKind::CheckedBump);
    // It selects the overflowed block: #1, the first block of the heap.
    let lane = &h.state().session().lanes[1];
    assert_eq!(lane.kind, heapscope_core::AllocatorKind::CheckedBump);
    let block = lane.layout.block_at(selection.addr).expect("a block");
    assert_eq!(block.state, heapscope_core::BlockState::Live);
    assert_eq!(
        Some(block.payload.start),
        lane.replay().held(1).map(|b| b.ptr)
    );
    // The toolbar walks problems in step order: the use after free is next (step 5).
    h.key_press(egui::Key::Home);
    h.run_steps(2);
    click_hover(&mut h, "Next error or violation");
    assert_eq!(cursor(&h), 3);
    click_hover(&mut h, "Next error or violation");
    assert!(cursor(&h) > 3);
    let second = cursor(&h);
    click_hover(&mut h, "Previous error or violation");
    assert_eq!(cursor(&h), 3);
    assert!(h.state().session().is_problem(second - 1));
}

#[test]
fn compare_mode_shows_every_allocator_on_one_scale_with_a_summary() {
    let mut h = app();
    assert!(!h.state().settings().compare);
    assert_eq!(h.query_all_by_label("share of footprint").count(), 0);
    let names = |h: &Harness<'static, HeapscopeApp>| -> Vec<usize> {
        h.state()
            .session()
            .lanes
            .iter()
            .map(|l| h.query_all_by_label(l.kind.name()).count())
            .collect()
    };
    let before = names(&h);
    click_hover(&mut h, "Compare mode");
    assert!(h.state().settings().compare);
    // The summary has one row per allocator, the details column makes way, and the map's
    // byte-scale checkbox is forced on.
    assert_eq!(h.get_all_by_label("share of footprint").count(), 1);
    // Each allocator gains a summary row and an entry in the plots' shared legend, and loses
    // its entry in the (hidden) "This step" section.
    let after = names(&h);
    assert_eq!(after.len(), 7);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(*a, b + 2 - 1, "{before:?} -> {after:?}");
    }
    assert_eq!(h.query_all_by_label("This step").count(), 0);
    // Stepping still moves every lane together.
    click_hover(&mut h, "Step forward");
    assert_eq!(cursor(&h), 1);
    click_hover(&mut h, "Compare mode");
    assert!(!h.state().settings().compare);
    assert_eq!(h.get_all_by_label("This step").count(), 1);
}

#[test]
fn a_long_load_shows_progress_and_cancel_keeps_the_loaded_scenario() {
    let mut h = app();
    click_hover(&mut h, "Step forward");
    // Big enough that recording seven allocators takes far longer than a few frames.
    let path = temp_file("long.rep", &workload::churn_rep(400_000, 20_000));
    h.state_mut().push_command(Command::Open(path));
    h.run_steps(2);
    assert!(h.state().is_loading());
    // The old scenario stays usable while the new one loads.
    assert_eq!(h.state().session().scenario.name, "First steps");
    assert_eq!(h.get_all_by_label_contains("long.rep").count(), 1);
    click_hover(&mut h, "Cancel loading");
    assert!(!h.state().is_loading());
    assert_eq!(h.state().session().scenario.name, "First steps");
    assert_eq!(cursor(&h), 1);
    assert_eq!(h.get_all_by_label_contains("Stopped loading").count(), 1);
}

#[test]
fn a_file_loads_in_the_background_and_replaces_the_session() {
    let mut h = app();
    let path = temp_file("small.rep", &workload::churn_rep(2_000, 100));
    h.state_mut().push_command(Command::Open(path.clone()));
    h.run_steps(1);
    settle(&mut h);
    assert!(h.state().error().is_none(), "{:?}", h.state().error());
    assert_eq!(h.state().session().len(), 2_000);
    assert_eq!(cursor(&h), 0);
    assert_eq!(h.state().settings().recent.first(), Some(&path));
    // Every lane holds about the 100 blocks the workload keeps live.
    for lane in &h.state().session().lanes {
        let live = lane.series.requested_live.len();
        assert_eq!(live, 2_001, "{}", lane.kind);
    }
}

#[test]
fn clicking_a_metrics_plot_seeks_to_that_step() {
    let mut h = app();
    assert_eq!(cursor(&h), 0);
    let bytes = h.get_by_label("Bytes").rect();
    let next = h.get_by_label("Free-space fragmentation").rect();
    // The plot fills the column under its title; its y axis takes the first 64 points.
    let x = (bytes.left() + 64.0 + next.left()) / 2.0;
    let at = egui::pos2(x, bytes.bottom() + 60.0);
    h.hover_at(at);
    h.drag_at(at);
    h.drop_at(at);
    h.run_steps(2);
    let n = h.state().session().len();
    let c = cursor(&h);
    assert!(c > n / 4 && c < 3 * n / 4, "cursor {c} of {n}");
}

#[test]
fn a_bundled_scenario_opens_from_the_open_menu() {
    let mut h = app();
    click_hover(&mut h, "Step forward");
    h.get_by_label("Open").click();
    h.run_steps(2);
    h.get_by_label("coalescing.ron").click();
    h.run_steps(2);
    let session = h.state().session();
    assert_eq!(session.scenario.name, "Coalescing");
    assert_eq!(
        cursor(&h),
        0,
        "a newly opened scenario starts at its beginning"
    );
    assert!(h.get_all_by_label_contains("Coalescing").count() >= 1);
}

/// A file as the window system hands it over when dropped.
#[derive(Debug)]
struct DroppedPath(std::path::PathBuf);

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &std::path::Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn a_file_dropped_on_the_window_opens() {
    let mut h = app();
    let path = temp_file("dropped.ron", BUGS);
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(DroppedPath(path)));
    h.run_steps(1);
    settle(&mut h);
    assert_eq!(h.state().session().scenario.name, "bugs");
}

/// Whether a button's visible text is only symbols (an icon), not words.
fn is_icon(label: &str) -> bool {
    !label.chars().any(char::is_alphanumeric)
}

/// Every button whose face is only an icon, in the harness's current state, paired with its
/// hover text (empty when it has none).
fn icon_buttons(h: &Harness<'static, HeapscopeApp>) -> Vec<(String, String)> {
    use egui::accesskit::Role;
    use egui_kittest::kittest::NodeT;
    h.get_all_by(|node| node.role() == Role::Button)
        .filter_map(|node| {
            let node = node.accesskit_node();
            let label = node.label().unwrap_or_default();
            is_icon(&label).then(|| (label, node.description().unwrap_or_default()))
        })
        .collect()
}

#[test]
fn every_icon_button_has_hover_text() {
    assert!(is_icon("⏵⚠") && is_icon("✖") && !is_icon("Open"));
    let mut h = app();
    let mut seen = icon_buttons(&h);
    // The buttons that appear only in other states: playing (pause), an error banner (dismiss),
    // compare mode and the violations tab.
    click_hover(&mut h, "Play / pause");
    seen.extend(icon_buttons(&h));
    click_hover(&mut h, "Play / pause");
    h.state_mut()
        .push_command(Command::Open("/nonexistent/heapscope.ron".into()));
    h.run_steps(1);
    settle(&mut h);
    assert!(h.state().error().is_some());
    seen.extend(icon_buttons(&h));
    h.state_mut().push_command(Command::ToggleCompare);
    h.state_mut().push_command(Command::ShowDockTab(
        heapscope::settings::DockTab::Violations,
    ));
    h.run_steps(2);
    seen.extend(icon_buttons(&h));
    let glyphs: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
    // The transport, the theme switch, pause and dismiss were all looked at.
    for expected in ["⏮", "⏴", "▶", "⏸", "⏵", "⏭", "✖"] {
        assert!(
            glyphs.contains(&expected),
            "{expected} not found in {glyphs:?}"
        );
    }
    let bare: Vec<_> = seen.iter().filter(|(_, hover)| hover.is_empty()).collect();
    assert!(bare.is_empty(), "icon buttons without hover text: {bare:?}");
}

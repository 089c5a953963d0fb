//! Image snapshots of the real app, rendered by wgpu on a software rasterizer (Mesa's lavapipe,
//! or llvmpipe through EGL) and compared with the reference PNGs in `tests/snapshots/`.
//!
//! The threshold tolerates renderer noise only (see [`options`]): a changed label or a colour
//! shifted by more than a few levels fails. After an intended change to the look, regenerate with
//! `UPDATE_SNAPSHOTS=1 cargo test -p heapscope --test snapshots` and look at every PNG before
//! committing it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use eframe::egui;
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use heapscope::app::{HeapscopeApp, StartOptions};
use heapscope::command::Command;
use heapscope::settings::DockTab;

/// The window size of every snapshot: the app's default layout at a common laptop size.
const SIZE: [f32; 2] = [1280.0, 800.0];

/// How close a rendering must be to its reference.
///
/// The references are drawn by lavapipe (Mesa's Vulkan rasterizer; `.ci/setup` installs it).
/// Measured noise: the same six frames drawn instead by llvmpipe (OpenGL through EGL) differ in
/// at most 188 pixels per frame, by one level of one channel; the comparison (dify) still counts
/// 128 of them (faint plot grid lines in the light theme) over a per-pixel threshold of 0.1 and
/// one over 0.2. egui_kittest's default of 0.6 is looser than that noise needs; at 0.2 a changed
/// label, the problem red shifted by 16 levels of blue, or the hex text by 20 grey levels, each
/// fails by hundreds to thousands of pixels. A few pixels over it are allowed, for an antialiased
/// edge another Mesa version places differently.
fn options() -> SnapshotOptions {
    SnapshotOptions::new().threshold(0.2).max_failed_pixels(8)
}

/// Compares the harness's frame with `tests/snapshots/{name}.png`.
fn snapshot(harness: &mut Harness<'static, HeapscopeApp>, name: &str) {
    harness.snapshot_options(name, &options());
}

/// The app on fresh settings, drawn by wgpu, after `setup` has queued its commands.
fn app(options: StartOptions, setup: &[Command]) -> Harness<'static, HeapscopeApp> {
    let mut harness = Harness::builder()
        .with_size(SIZE)
        .wgpu()
        .build_eframe(|cc| {
            HeapscopeApp::new(
                &cc.egui_ctx,
                None,
                StartOptions {
                    fresh_settings: true,
                    ..options
                },
            )
        });
    for command in setup {
        harness.state_mut().push_command(command.clone());
    }
    // Commands apply after a frame; layout (panel sizes, plot bounds) settles a few frames on.
    harness.run_steps(6);
    harness
}

#[test]
fn main_view_dark() {
    // Step 4 frees #2: freeing-bump has a block on a free list, dlmalloc a free chunk.
    let mut h = app(
        StartOptions {
            step: Some(4),
            ..StartOptions::default()
        },
        &[],
    );
    assert!(h.get_all_by_label_contains("step 4: ").count() >= 1);
    snapshot(&mut h, "main_view_dark");
}

#[test]
fn poisoned_banner_light() {
    let mut h = app(
        StartOptions {
            dark: Some(false),
            ..StartOptions::default()
        },
        &[
            Command::OpenBundled("substrate-worst-case.ron"),
            Command::JumpToProblem { forward: true },
        ],
    );
    let session = h.state().session();
    assert_eq!(session.scenario.name, "Substrate's worst case");
    assert!(session.lanes.iter().any(|l| l.layout.poisoned.is_some()));
    snapshot(&mut h, "poisoned_banner_light");
}

#[test]
fn compare_mode() {
    let mut h = app(
        StartOptions {
            compare: true,
            step: Some(6),
            ..StartOptions::default()
        },
        &[],
    );
    assert_eq!(h.get_all_by_label("share of footprint").count(), 1);
    snapshot(&mut h, "compare_mode");
}

#[test]
fn heap_map_at_byte_zoom() {
    let mut h = app(
        StartOptions {
            step: Some(6),
            ..StartOptions::default()
        },
        &[Command::ToggleDock],
    );
    // Wheel over the left end of the first lane's bar until the bytes are drawn in hex.
    // The lane header is the leftmost "bump" label under the toolbar; its bar lies below it.
    let header = h
        .get_all_by_label("bump")
        .map(|n| n.rect())
        .filter(|r| r.top() > 60.0)
        .min_by(|a, b| a.left().total_cmp(&b.left()))
        .expect("the bump lane header");
    let at = egui::pos2(header.left() + 40.0, header.bottom() + 20.0);
    h.hover_at(at);
    for _ in 0..5 {
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, 100.0),
            modifiers: egui::Modifiers::NONE,
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Wheel,
        });
        h.run_steps(4);
    }
    // Move the pointer to the empty end of the title row, so no tooltip covers the bytes.
    h.hover_at(egui::pos2(header.right() + 400.0, 76.0));
    h.run_steps(20);
    snapshot(&mut h, "heap_map_at_byte_zoom");
}

#[test]
fn violations_on_checked_bump() {
    let mut h = app(
        StartOptions {
            dock: Some(DockTab::Violations),
            ..StartOptions::default()
        },
        &[
            Command::OpenBundled("checked-bump-catches-bugs.ron"),
            Command::JumpToProblem { forward: true },
        ],
    );
    assert!(
        h.get_all_by(|n| n
            .description()
            .is_some_and(|d| d.starts_with("Go to this step")))
            .count()
            >= 3
    );
    snapshot(&mut h, "violations_on_checked_bump");
}

#[test]
fn metrics_over_a_whole_trace() {
    let mut h = app(
        StartOptions {
            dock: Some(DockTab::Metrics),
            ..StartOptions::default()
        },
        &[
            Command::OpenBundled("power-of-two-waste.ron"),
            Command::Seek(usize::MAX),
        ],
    );
    assert_eq!(h.get_all_by_label("Free-space fragmentation").count(), 1);
    snapshot(&mut h, "metrics_over_a_whole_trace");
}

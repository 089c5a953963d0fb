//! The real app in an egui_kittest harness (no GPU), and what the UI tests do with it.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use heapscope::app::{HeapscopeApp, StartOptions};

/// The app on fresh settings (nothing persisted from earlier runs), a few frames in.
pub fn app() -> Harness<'static, HeapscopeApp> {
    let mut harness = Harness::builder()
        .with_size([1440.0, 900.0])
        .build_eframe(|cc| {
            HeapscopeApp::new(
                &cc.egui_ctx,
                None,
                StartOptions {
                    fresh_settings: true,
                    ..StartOptions::default()
                },
            )
        });
    harness.run_steps(3);
    harness
}

/// Clicks the widget whose hover text starts with `hover` (how icon buttons are found).
pub fn click_hover(harness: &mut Harness<'static, HeapscopeApp>, hover: &str) {
    harness
        .get_by(|node| node.description().is_some_and(|d| d.starts_with(hover)))
        .click();
    harness.run_steps(2);
}

/// Runs frames until a file being opened has loaded (or failed), at most twenty seconds.
pub fn settle(harness: &mut Harness<'static, HeapscopeApp>) {
    let start = std::time::Instant::now();
    while harness.state().is_loading() && start.elapsed().as_secs() < 20 {
        harness.step();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        !harness.state().is_loading(),
        "the file did not load in time"
    );
    harness.run_steps(2);
}

//! heapscope: see inside heap allocators (the binary: GUI and command line).
//!
//! `heapscope [FILE]` opens the app (on the bundled default scenario without FILE);
//! `heapscope FILE --screenshot OUT.png [--step N]` renders one frame to a PNG and exits.

use std::process::ExitCode;

use eframe::egui;
use heapscope::{app, cli};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(cli::Invocation::Help) => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(cli::Invocation::Gui(options)) => run_gui(options),
        Ok(cli::Invocation::Replay(args)) => {
            report(cli::replay::run(&args, &mut std::io::stdout().lock()))
        }
        Ok(cli::Invocation::Compare(args)) => {
            report(cli::compare::run(&args, &mut std::io::stdout().lock()))
        }
        Ok(cli::Invocation::Emulate(args)) => {
            report(cli::emulate::run(&args, &mut std::io::stdout().lock()))
        }
        Err(message) => {
            eprintln!("heapscope: {message}\n\n{}", cli::USAGE);
            ExitCode::FAILURE
        }
    }
}

/// Exit 0, or print the one message saying what was wrong and exit 1.
fn report(result: Result<(), cli::CliError>) -> ExitCode {
    match result {
        Ok(()) | Err(cli::CliError::Quiet) => ExitCode::SUCCESS,
        Err(cli::CliError::Message(message)) => {
            eprintln!("heapscope: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_gui(options: app::StartOptions) -> ExitCode {
    let screenshot = options.screenshot.is_some();
    let result_slot: std::sync::Arc<std::sync::Mutex<Option<app::ScreenshotResult>>> =
        Default::default();
    let slot = std::sync::Arc::clone(&result_slot);
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("heapscope")
            .with_inner_size([1440.0, 860.0])
            .with_min_inner_size([720.0, 480.0]),
        persist_window: !screenshot,
        // Test builds also compile eframe's wgpu renderer (for the image snapshots); the
        // window always draws with glow, whatever else is compiled in.
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    let run = eframe::run_native(
        "heapscope",
        native,
        Box::new(move |cc| {
            let app = app::HeapscopeApp::new(&cc.egui_ctx, cc.storage, options);
            if let Ok(mut s) = slot.lock() {
                *s = Some(std::sync::Arc::clone(&app.screenshot_result));
            }
            Ok(Box::new(app))
        }),
    );
    if let Err(e) = run {
        eprintln!("heapscope: could not open a window: {e}");
        return ExitCode::FAILURE;
    }
    if screenshot {
        let outcome = result_slot
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .and_then(|r| r.lock().ok().and_then(|o| o.clone()));
        return match outcome {
            Some(Ok(())) => ExitCode::SUCCESS,
            Some(Err(e)) => {
                eprintln!("heapscope: {e}");
                ExitCode::FAILURE
            }
            None => {
                eprintln!("heapscope: the window closed before a screenshot was taken");
                ExitCode::FAILURE
            }
        };
    }
    ExitCode::SUCCESS
}

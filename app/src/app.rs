//! The eframe app: persisted settings, the loaded session, and the command loop.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eframe::egui::{self, Key, RichText, ScrollArea, Ui};

use crate::bundled::{BUNDLED, default_scenario};
use crate::command::{Command, Selection};
use crate::export::{ExportKind, Exporter};
use crate::loader::{LoadError, Loading};
use crate::palette;
use crate::panels::{self, Commands, View};
use crate::session::{Session, Source};
use crate::settings::{DockTab, Settings};

/// A request to render one frame to a PNG and quit (`--screenshot`).
#[derive(Debug, Clone)]
pub struct ScreenshotRequest {
    /// Where to write the PNG.
    pub path: PathBuf,
    /// Frames to let pass first, so layout and fonts settle.
    pub after_frames: u32,
}

/// What the app starts on.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// A file to open instead of the default scenario.
    pub file: Option<PathBuf>,
    /// Step to stand on after loading.
    pub step: Option<usize>,
    /// Render one frame to a PNG and exit.
    pub screenshot: Option<ScreenshotRequest>,
    /// Ignore stored settings (for reproducible screenshots and tests).
    pub fresh_settings: bool,
    /// Force the theme.
    pub dark: Option<bool>,
    /// Start in compare mode.
    pub compare: bool,
    /// Open the dock on this tab.
    pub dock: Option<DockTab>,
}

/// Outcome of a `--screenshot` run, shared with the screenshot callback.
pub type ScreenshotResult = Arc<Mutex<Option<Result<(), String>>>>;

/// The heapscope app.
pub struct HeapscopeApp {
    settings: Settings,
    session: Session,
    selection: Option<Selection>,
    playing: bool,
    /// Time accumulated towards the next playback step.
    play_clock: f64,
    error: Option<String>,
    notice: Option<String>,
    commands: Commands,
    exporter: Exporter,
    /// A file being opened on a worker thread.
    loading: Option<Loading>,
    /// Where to stand once the file being loaded is ready (`--step`).
    pending_step: Option<usize>,
    screenshot: Option<ScreenshotRequest>,
    frames: u32,
    /// Where a `--screenshot` run reports back.
    pub screenshot_result: ScreenshotResult,
}

impl std::fmt::Debug for HeapscopeApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapscopeApp")
            .field("cursor", &self.session.cursor)
            .finish_non_exhaustive()
    }
}

impl HeapscopeApp {
    /// Builds the app, reading settings from `storage` unless told not to.
    pub fn new(
        ctx: &egui::Context,
        storage: Option<&dyn eframe::Storage>,
        options: StartOptions,
    ) -> Self {
        if options.fresh_settings {
            // Panel sizes and scroll positions are stored state too: start from none of it.
            ctx.memory_mut(|m| *m = egui::Memory::default());
        }
        let (mut settings, notice) = if options.fresh_settings {
            (Settings::default(), None)
        } else {
            Settings::from_stored(storage.and_then(|s| s.get_string(Settings::KEY)))
        };
        if let Some(dark) = options.dark {
            settings.dark = dark;
        }
        if options.compare {
            settings.compare = true;
        }
        if let Some(tab) = options.dock {
            settings.show_dock = true;
            settings.dock_tab = tab;
        }
        let bundled = default_scenario();
        let mut session = match Session::bundled(bundled.file, bundled.text) {
            Ok(session) => session,
            Err(e) => unreachable_default(&e),
        };
        // A file named on the command line loads in the background over the default scenario.
        let loading = options
            .file
            .as_deref()
            .map(|path| Loading::start(ctx, path));
        if loading.is_none() {
            session.seek(options.step.unwrap_or(0));
        }
        let app = Self {
            settings,
            session,
            selection: None,
            playing: false,
            play_clock: 0.0,
            error: None,
            notice,
            commands: Vec::new(),
            exporter: Exporter::default(),
            loading,
            pending_step: options.step,
            screenshot: options.screenshot,
            frames: 0,
            screenshot_result: Arc::new(Mutex::new(None)),
        };
        app.apply_theme(ctx);
        app
    }

    fn theme(&self) -> egui::Theme {
        if self.settings.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        }
    }

    fn apply_theme(&self, ctx: &egui::Context) {
        ctx.set_theme(self.theme());
    }

    /// Queues a command as if a panel had pushed it (tests, and the command line).
    pub fn push_command(&mut self, command: Command) {
        self.commands.push(command);
    }

    /// The loaded session (for tests).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The current error banner text (for tests).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The persisted settings (for tests).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The selected block (for tests).
    pub fn selection(&self) -> Option<Selection> {
        self.selection
    }

    /// Whether playback runs (for tests).
    pub fn playing(&self) -> bool {
        self.playing
    }

    /// Whether a file is being loaded (for tests).
    pub fn is_loading(&self) -> bool {
        self.loading.is_some()
    }

    /// Starts loading `path` on a worker thread, abandoning any load still running.
    fn open(&mut self, ctx: &egui::Context, path: &std::path::Path) {
        if let Some(old) = self.loading.take() {
            old.progress.cancel();
        }
        self.loading = Some(Loading::start(ctx, path));
    }

    /// Installs the loaded session when the worker is done; until then the old one stays.
    fn poll_loading(&mut self, ctx: &egui::Context) {
        let Some(loading) = &self.loading else {
            return;
        };
        let Some(result) = loading.poll() else {
            ctx.request_repaint_after(Duration::from_millis(50));
            return;
        };
        let path = loading.path.clone();
        self.loading = None;
        match result {
            Ok(session) => {
                self.session = session;
                self.session.seek(self.pending_step.take().unwrap_or(0));
                self.selection = None;
                self.playing = false;
                self.error = None;
                self.settings.remember(path);
            }
            Err(LoadError::Cancelled) => {
                self.pending_step = None;
                self.notice = Some(format!("Stopped loading {}", path.display()));
            }
            // The session loaded before stays: a bad file costs nothing.
            Err(LoadError::Failed(e)) => {
                self.pending_step = None;
                self.error = Some(e);
            }
        }
    }

    fn apply(&mut self, ctx: &egui::Context, command: Command) {
        let session = &mut self.session;
        match command {
            Command::Seek(to) => session.seek(to),
            Command::StepBy(delta) => {
                let to = session.cursor.saturating_add_signed(delta);
                session.seek(to);
            }
            Command::TogglePlay => {
                if !self.playing && session.cursor >= session.len() {
                    session.seek(0);
                }
                self.playing = !self.playing;
                self.play_clock = 0.0;
            }
            Command::SetSpeed(speed) => self.settings.steps_per_second = speed.clamp(0.5, 60.0),
            Command::JumpToProblem { forward } => {
                if let Some(to) = session.next_position(&session.problem_positions, forward) {
                    session.seek(to);
                }
            }
            Command::JumpToMark { forward } => {
                if let Some(to) = session.next_position(&session.mark_positions, forward) {
                    session.seek(to);
                }
            }
            Command::OpenDialog => {
                let picked = rfd::FileDialog::new()
                    .add_filter(
                        "scenarios and traces",
                        &["ron", "rep", "mtrace", "trace", "txt", "log"],
                    )
                    .add_filter("all files", &["*"])
                    .pick_file();
                if let Some(path) = picked {
                    self.open(ctx, &path);
                }
            }
            Command::Open(path) => self.open(ctx, &path),
            Command::CancelLoad => {
                if let Some(loading) = self.loading.take() {
                    loading.progress.cancel();
                    self.notice = Some(format!(
                        "Stopped loading {}; what was loaded stays",
                        loading.path.display()
                    ));
                }
            }
            Command::OpenBundled(file) => {
                if let Some(b) = BUNDLED.iter().find(|b| b.file == file) {
                    match Session::bundled(b.file, b.text) {
                        Ok(mut s) => {
                            s.seek(0);
                            self.session = s;
                            self.selection = None;
                            self.error = None;
                        }
                        Err(e) => self.error = Some(e),
                    }
                }
            }
            Command::Select(selection) => self.selection = selection,
            Command::ToggleLane(kind) => {
                if let Some(i) = self.settings.hidden.iter().position(|k| *k == kind) {
                    self.settings.hidden.remove(i);
                } else {
                    self.settings.hidden.push(kind);
                }
            }
            Command::ToggleSharedScale => self.settings.shared_scale = !self.settings.shared_scale,
            Command::ToggleTheme => {
                self.settings.dark = !self.settings.dark;
                self.apply_theme(ctx);
            }
            Command::DismissError => {
                self.error = None;
                self.notice = None;
            }
            Command::ToggleDock => self.settings.show_dock = !self.settings.show_dock,
            Command::ShowDockTab(tab) => {
                self.settings.show_dock = true;
                self.settings.dock_tab = tab;
            }
            Command::ToggleCompare => self.settings.compare = !self.settings.compare,
            Command::Export(kind) => self.export(ctx, kind),
            Command::ClearRecent => self.settings.recent.clear(),
        }
    }

    fn export(&mut self, ctx: &egui::Context, kind: ExportKind) {
        let stem = match &self.session.source {
            Source::File(path) => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Source::Bundled(file) => file.trim_end_matches(".ron").to_owned(),
        };
        let (name, ext) = kind.file_name_and_extension(&stem);
        let Some(path) = rfd::FileDialog::new()
            .set_file_name(name)
            .add_filter(ext, &[ext])
            .save_file()
        else {
            return;
        };
        match kind {
            ExportKind::MetricsCsv | ExportKind::ScenarioRon => {
                let specs = self
                    .session
                    .lanes
                    .iter()
                    .map(|l| heapscope_core::scenario::AllocatorSpec {
                        kind: l.kind,
                        config: l.timeline.config().clone(),
                    })
                    .collect();
                self.exporter
                    .spawn(ctx, kind, self.session.scenario.clone(), specs, path);
            }
            ExportKind::HeapMapPng | ExportKind::PlotsPng => {
                let Some(rect) = crate::export::remembered_rect(ctx, kind) else {
                    self.error = Some("Export: that part of the window is not shown".to_owned());
                    return;
                };
                let done = self.exporter.sender();
                let pixels_per_point = ctx.pixels_per_point();
                ctx.request_screenshot(move |image| {
                    let part = crate::export::crop(&image, rect, pixels_per_point);
                    let result = crate::screenshot::write_png(&path, &part).map(|()| path);
                    // The app may have quit meanwhile; nobody is left to tell.
                    let _ = done.send(result);
                });
            }
        }
    }

    fn finished_exports(&mut self) {
        for result in self.exporter.finished() {
            match result {
                Ok(path) => self.notice = Some(format!("Exported {}", path.display())),
                Err(e) => self.error = Some(format!("Export failed: {e}")),
            }
        }
    }

    fn keyboard(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        ctx.input(|i| {
            let stride = if i.modifiers.shift { 10 } else { 1 };
            if i.key_pressed(Key::ArrowRight) {
                self.commands.push(Command::StepBy(stride));
            }
            if i.key_pressed(Key::ArrowLeft) {
                self.commands.push(Command::StepBy(-stride));
            }
            if i.key_pressed(Key::Home) {
                self.commands.push(Command::Seek(0));
            }
            if i.key_pressed(Key::End) {
                self.commands.push(Command::Seek(usize::MAX));
            }
            if i.key_pressed(Key::Space) {
                self.commands.push(Command::TogglePlay);
            }
            if i.modifiers.command && i.key_pressed(Key::O) {
                self.commands.push(Command::OpenDialog);
            }
            for file in &i.raw.dropped_files {
                self.commands.push(Command::Open(file.path().to_owned()));
            }
        });
    }

    fn playback(&mut self, ctx: &egui::Context) {
        if !self.playing {
            return;
        }
        let dt = f64::from(ctx.input(|i| i.stable_dt)).min(0.25);
        self.play_clock += dt * f64::from(self.settings.steps_per_second);
        let steps = self.play_clock.floor();
        if steps >= 1.0 {
            self.play_clock -= steps;
            self.commands.push(Command::StepBy(steps as isize));
        }
        if self.session.cursor >= self.session.len() {
            self.playing = false;
        }
        ctx.request_repaint_after(Duration::from_millis(16));
    }

    fn screenshot_logic(&mut self, ctx: &egui::Context) {
        let Some(request) = &self.screenshot else {
            return;
        };
        // The picture is of the file asked for: wait until it is loaded.
        if self.loading.is_some() {
            ctx.request_repaint();
            return;
        }
        self.frames += 1;
        if self.frames == request.after_frames {
            let path = request.path.clone();
            let result = Arc::clone(&self.screenshot_result);
            let ctx2 = ctx.clone();
            ctx.request_screenshot(move |image| {
                let outcome = crate::screenshot::write_png(&path, &image);
                if let Ok(mut slot) = result.lock() {
                    *slot = Some(outcome);
                }
                ctx2.send_viewport_cmd(egui::ViewportCommand::Close);
            });
        }
        ctx.request_repaint();
    }
}

/// The bundled default scenario is part of the build and tested; if it ever failed to parse the
/// app shows the error over an empty session rather than crashing.
fn unreachable_default(error: &str) -> Session {
    let text = format!(
        "Scenario(name: \"(bundled scenario failed to load: {})\")",
        error.replace('"', "'")
    );
    Session::bundled("empty.ron", &text).unwrap_or_else(|_| Session::empty())
}

impl eframe::App for HeapscopeApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // The chosen theme holds even if the host set another after the app was built.
        if ctx.options(|o| o.theme_preference) != self.theme().into() {
            self.apply_theme(ctx);
        }
        self.keyboard(ctx);
        self.poll_loading(ctx);
        self.finished_exports();
        self.playback(ctx);
        self.screenshot_logic(ctx);
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        // Panels record where they are drawn each frame; a part not drawn cannot be exported.
        ctx.data_mut(|d| {
            for kind in [ExportKind::HeapMapPng, ExportKind::PlotsPng] {
                d.remove::<egui::Rect>(kind.rect_id());
            }
        });
        let mut commands = std::mem::take(&mut self.commands);
        {
            let view = View {
                loading: self.loading.as_ref(),
                session: &self.session,
                settings: &self.settings,
                selection: self.selection,
                playing: self.playing,
            };
            egui::Panel::top("toolbar").show(ui, |ui| {
                ui.add_space(3.0);
                panels::toolbar::show(ui, &view, &mut commands);
                ui.add_space(2.0);
            });
            egui::Panel::bottom("timeline").show(ui, |ui| {
                ui.add_space(4.0);
                panels::timeline::show(ui, &view, &mut commands);
                ui.add_space(4.0);
            });
            if self.settings.show_dock {
                egui::Panel::bottom("dock")
                    .default_size(250.0)
                    .min_size(140.0)
                    .resizable(true)
                    .show(ui, |ui| panels::dock::show(ui, &view, &mut commands));
            }
            // Compare mode gives the whole width to the allocators side by side.
            let compare = self.settings.compare;
            if self.settings.show_description && !compare {
                egui::Panel::left("description")
                    .default_size(280.0)
                    .resizable(true)
                    .show(ui, |ui| {
                        ScrollArea::vertical().show(ui, |ui| panels::description::show(ui, &view));
                    });
            }
            if !compare {
                egui::Panel::right("details")
                    .default_size(380.0)
                    .resizable(true)
                    .show(ui, |ui| {
                        ScrollArea::vertical().show(ui, |ui| {
                            section(ui, "This step", |ui| panels::this_step::show(ui, &view));
                            section(ui, "Inspector", |ui| {
                                panels::inspector::show(ui, &view, &mut commands);
                            });
                            section(ui, "Free lists", |ui| {
                                panels::free_lists::show(ui, &view, &mut commands);
                            });
                            section(ui, "Allocator state", |ui| {
                                panels::allocator_state::show(ui, &view);
                            });
                        });
                    });
            }
            egui::CentralPanel::default().show(ui, |ui| {
                panels::loading::show(ui, &view, &mut commands);
                banners(ui, &self.error, &self.notice, &mut commands);
                ui.horizontal(|ui| {
                    ui.heading(self.session.title());
                    let step = match self.session.current_op() {
                        Some(op) => format!("step {}: {op}", self.session.cursor),
                        None => "before the first step".to_owned(),
                    };
                    ui.label(RichText::new(step).monospace().strong());
                });
                ui.add_space(4.0);
                if compare {
                    panels::compare::show(ui, &view);
                    ui.add_space(6.0);
                }
                ScrollArea::vertical()
                    .show(ui, |ui| panels::heap_map::show(ui, &view, &mut commands));
            });
        }
        for command in commands {
            self.apply(&ctx, command);
        }
    }

    fn persist_egui_memory(&self) -> bool {
        // A `--screenshot` run leaves the user's window layout alone.
        self.screenshot.is_none()
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.screenshot.is_some() {
            return;
        }
        if let Ok(text) = ron::to_string(&self.settings) {
            storage.set_string(Settings::KEY, text);
        }
    }
}

fn banners(ui: &mut Ui, error: &Option<String>, notice: &Option<String>, commands: &mut Commands) {
    for (text, is_error) in [(error, true), (notice, false)] {
        let Some(text) = text else { continue };
        let fill = if is_error {
            palette::PROBLEM
        } else {
            egui::Color32::from_rgb(0x9a, 0x6b, 0x10)
        };
        egui::Frame::new()
            .fill(fill)
            .inner_margin(6.0)
            .corner_radius(4.0)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.label(RichText::new(text).color(egui::Color32::WHITE).strong());
                    if ui.small_button("✖").on_hover_text("Dismiss").clicked() {
                        commands.push(Command::DismissError);
                    }
                });
            });
        ui.add_space(4.0);
    }
}

fn section(ui: &mut Ui, title: &str, body: impl FnOnce(&mut Ui)) {
    egui::CollapsingHeader::new(RichText::new(title).strong().size(14.0))
        .default_open(true)
        .show(ui, body);
    ui.add_space(2.0);
}

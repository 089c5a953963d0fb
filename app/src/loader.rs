//! Opening files off the UI thread: parse and record every lane on a worker, with progress the
//! UI can show and a flag that cancels the work. The old session stays until the new one is
//! ready.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, channel};

use eframe::egui;

use crate::session::Session;

/// Operations recorded between two progress updates (and cancellation checks).
const TICK_EVERY: usize = 4096;

/// Progress of one load, shared between the worker and the UI.
#[derive(Debug, Default)]
pub struct LoadProgress {
    cancel: AtomicBool,
    /// Operations recorded so far, over all lanes.
    done: AtomicUsize,
    /// Operations to record in all (0 while the file is still being read).
    total: AtomicUsize,
}

/// Why a load ended without a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The user cancelled it.
    Cancelled,
    /// The file could not be read, parsed or replayed (file:line:col and what was wrong).
    Failed(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Cancelled => f.write_str("loading was cancelled"),
            LoadError::Failed(message) => f.write_str(message),
        }
    }
}

impl From<String> for LoadError {
    fn from(message: String) -> Self {
        LoadError::Failed(message)
    }
}

impl LoadProgress {
    /// Progress that nobody watches and nothing cancels (loads on the calling thread).
    pub fn unobserved() -> Self {
        Self::default()
    }

    /// Asks the worker to stop at its next check.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether cancelling was asked for.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Announces the number of operations to record over all lanes.
    pub fn set_total(&self, total: usize) {
        self.total.store(total, Ordering::Relaxed);
    }

    /// Called by the record loop with the index of each operation: counts progress and stops
    /// the loop when the load was cancelled.
    pub fn tick(&self, index: usize) -> Result<(), LoadError> {
        if (index + 1).is_multiple_of(TICK_EVERY) {
            self.done.fetch_add(TICK_EVERY, Ordering::Relaxed);
            if self.cancelled() {
                return Err(LoadError::Cancelled);
            }
        }
        Ok(())
    }

    /// Counts the operations of a finished lane that the last ticks did not.
    pub fn finish_lane(&self, ops: usize) {
        self.done.fetch_add(ops % TICK_EVERY, Ordering::Relaxed);
    }

    /// Fraction done, or `None` while the file is still being read.
    pub fn fraction(&self) -> Option<f32> {
        let total = self.total.load(Ordering::Relaxed);
        (total > 0).then(|| (self.done.load(Ordering::Relaxed) as f32 / total as f32).min(1.0))
    }
}

/// A load running on a worker thread.
#[derive(Debug)]
pub struct Loading {
    /// The file being opened.
    pub path: PathBuf,
    /// Its progress.
    pub progress: Arc<LoadProgress>,
    result: Receiver<Result<Session, LoadError>>,
}

impl Loading {
    /// Starts loading `path` on a worker thread; `ctx` is woken when it is done.
    pub fn start(ctx: &egui::Context, path: &Path) -> Self {
        let progress = Arc::new(LoadProgress::default());
        let (tx, rx) = channel();
        let worker_progress = Arc::clone(&progress);
        let worker_path = path.to_owned();
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let result = Session::open_with(&worker_path, &worker_progress);
            // The app may have quit or moved on to another file; nobody is left to tell.
            let _ = tx.send(result);
            ctx.request_repaint();
        });
        Self {
            path: path.to_owned(),
            progress,
            result: rx,
        }
    }

    /// The outcome once the worker is done.
    pub fn poll(&self) -> Option<Result<Session, LoadError>> {
        match self.result.try_recv() {
            Ok(result) => Some(result),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(LoadError::Failed(format!(
                "{}: the loading thread stopped unexpectedly",
                self.path.display()
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_count_and_cancelling_stops_at_the_next_check() {
        let progress = LoadProgress::default();
        assert_eq!(progress.fraction(), None);
        progress.set_total(2 * TICK_EVERY + 10);
        for i in 0..TICK_EVERY {
            progress.tick(i).unwrap();
        }
        assert!((progress.fraction().unwrap() - 4096.0 / 8202.0).abs() < 1e-6);
        progress.cancel();
        let stopped = (TICK_EVERY..2 * TICK_EVERY).find(|&i| progress.tick(i).is_err());
        assert_eq!(stopped, Some(2 * TICK_EVERY - 1));
    }
}

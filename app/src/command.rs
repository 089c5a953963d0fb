//! What the UI asks for. Panels push commands while drawing; the app applies them after the
//! frame, so no panel mutates state another panel is still reading.

use std::path::PathBuf;

use heapscope_core::{Addr, AllocatorKind};

use crate::export::ExportKind;
use crate::settings::DockTab;

/// A block chosen by the user: which allocator lane, and the block's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// The allocator.
    pub kind: AllocatorKind,
    /// Any address inside the block.
    pub addr: Addr,
}

/// One request from the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Stand after this many operations (0 = before the first).
    Seek(usize),
    /// Move by this many operations (negative = back).
    StepBy(isize),
    /// Start or stop playback.
    TogglePlay,
    /// Set the playback speed in steps per second.
    SetSpeed(f32),
    /// Jump to the next (or previous, when `forward` is false) failed step or violation.
    JumpToProblem {
        /// Direction.
        forward: bool,
    },
    /// Jump to the next (or previous) mark.
    JumpToMark {
        /// Direction.
        forward: bool,
    },
    /// Ask for a file with the system dialog.
    OpenDialog,
    /// Load this file (on a worker thread).
    Open(PathBuf),
    /// Stop loading the file being opened; what was loaded before stays.
    CancelLoad,
    /// Load a scenario bundled into the binary.
    OpenBundled(&'static str),
    /// Select a block (or clear the selection).
    Select(Option<Selection>),
    /// Show or hide an allocator's lane.
    ToggleLane(AllocatorKind),
    /// Switch the heap map between one shared byte scale and one fitted scale per lane.
    ToggleSharedScale,
    /// Switch between dark and light.
    ToggleTheme,
    /// Dismiss the error banner.
    DismissError,
    /// Open or close the dock under the heap map.
    ToggleDock,
    /// Show this tab of the dock (opening it).
    ShowDockTab(DockTab),
    /// Switch compare mode on or off.
    ToggleCompare,
    /// Ask where to save, then export.
    Export(ExportKind),
    /// Forget the recent files.
    ClearRecent,
}

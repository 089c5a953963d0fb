//! heapscope: the desktop app and command line over `heapscope-core`.
//!
//! The app keeps persisted [`settings`] apart from the runtime [`session`]; panels in [`panels`]
//! read a [`panels::View`] and push [`command::Command`]s, which [`app::HeapscopeApp`] applies
//! after the frame.

pub mod app;
pub mod bundled;
pub mod cli;
pub mod command;
pub mod export;
pub mod loader;
pub mod palette;
pub mod panels;
pub mod screenshot;
pub mod series;
pub mod session;
pub mod settings;

//! Colours for block states, shared by every panel so the legend means the same everywhere.

use eframe::egui::Color32;
use heapscope_core::BlockState;

/// Fill colour for a block in `state`.
pub fn state_fill(state: BlockState, dark: bool) -> Color32 {
    match (state, dark) {
        (BlockState::Live, _) => Color32::from_rgb(0x3d, 0x84, 0xe6),
        (BlockState::Free, _) => Color32::from_rgb(0x4c, 0xb0, 0x6a),
        (BlockState::Freed, _) => Color32::from_rgb(0x9a, 0x7f, 0xc9),
        (BlockState::Guard, _) => Color32::from_rgb(0xe0, 0x8a, 0x3c),
        (BlockState::Padding, _) => Color32::from_rgb(0xd8, 0xc0, 0x4a),
        (BlockState::Metadata, _) => Color32::from_rgb(0x2f, 0xa8, 0xa8),
        (BlockState::Top, true) => Color32::from_rgb(0x3a, 0x5a, 0x44),
        (BlockState::Top, false) => Color32::from_rgb(0xb7, 0xd9, 0xbf),
        (BlockState::Unused, true) => Color32::from_rgb(0x2a, 0x2d, 0x33),
        (BlockState::Unused, false) => Color32::from_rgb(0xe3, 0xe5, 0xe8),
        (BlockState::Unmapped, true) => Color32::from_rgb(0x16, 0x17, 0x1a),
        (BlockState::Unmapped, false) => Color32::from_rgb(0xf6, 0xf7, 0xf8),
    }
}

/// Fill colour for the header part of a block in `state`: the same hue, darker.
pub fn header_fill(state: BlockState, dark: bool) -> Color32 {
    let c = state_fill(state, dark);
    let k = 0.55;
    Color32::from_rgb(
        (f32::from(c.r()) * k) as u8,
        (f32::from(c.g()) * k) as u8,
        (f32::from(c.b()) * k) as u8,
    )
}

/// Colour for errors and violations.
pub const PROBLEM: Color32 = Color32::from_rgb(0xe5, 0x48, 0x4d);

/// Colour for timeline marks.
pub const MARK: Color32 = Color32::from_rgb(0x6c, 0xa8, 0xf0);

/// Short legend name of a state.
pub fn state_name(state: BlockState) -> &'static str {
    match state {
        BlockState::Live => "live",
        BlockState::Free => "free",
        BlockState::Freed => "freed (never reused)",
        BlockState::Guard => "guard",
        BlockState::Padding => "padding",
        BlockState::Metadata => "allocator data",
        BlockState::Unused => "never used",
        BlockState::Unmapped => "not mapped",
        BlockState::Top => "top / wilderness",
    }
}

/// Every state, in legend order.
pub const LEGEND: &[BlockState] = &[
    BlockState::Live,
    BlockState::Free,
    BlockState::Freed,
    BlockState::Guard,
    BlockState::Padding,
    BlockState::Metadata,
    BlockState::Top,
    BlockState::Unused,
    BlockState::Unmapped,
];

/// A distinct line colour per allocator, for overlaid plots and compare mode.
pub fn lane_colour(kind: heapscope_core::AllocatorKind) -> Color32 {
    const COLOURS: [Color32; 7] = [
        Color32::from_rgb(0x4e, 0x9a, 0xf0),
        Color32::from_rgb(0xf0, 0x8c, 0x3c),
        Color32::from_rgb(0x3c, 0xb8, 0x6a),
        Color32::from_rgb(0xd9, 0x5c, 0xc8),
        Color32::from_rgb(0xe8, 0xc5, 0x3a),
        Color32::from_rgb(0x3c, 0xc8, 0xd0),
        Color32::from_rgb(0xa8, 0x80, 0xf0),
    ];
    let i = heapscope_core::AllocatorKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0);
    COLOURS[i % COLOURS.len()]
}

/// Colour of requested (live) bytes in plots.
pub const REQUESTED: Color32 = Color32::from_rgb(0x4e, 0x9a, 0xf0);
/// Colour of held bytes in plots.
pub const HELD: Color32 = Color32::from_rgb(0xf0, 0x8c, 0x3c);
/// Colour of the footprint in plots.
pub const FOOTPRINT: Color32 = Color32::from_rgb(0x9a, 0xa4, 0xb0);

/// A line or text colour that reads on the theme's background: colours are darkened on light.
pub fn on_theme(colour: Color32, dark: bool) -> Color32 {
    if dark {
        colour
    } else {
        let k = 0.72;
        Color32::from_rgb(
            (f32::from(colour.r()) * k) as u8,
            (f32::from(colour.g()) * k) as u8,
            (f32::from(colour.b()) * k) as u8,
        )
    }
}

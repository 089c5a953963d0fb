//! Writing a rendered frame to a PNG (`--screenshot`).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use eframe::egui::ColorImage;

/// Encodes `image` as an RGBA PNG at `path`.
pub fn write_png(path: &Path, image: &ColorImage) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = File::create(path).map_err(|e| fail(&e))?;
    let [w, h] = image.size;
    let mut encoder = png::Encoder::new(BufWriter::new(file), w as u32, h as u32);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| fail(&e))?;
    let rgba: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    writer.write_image_data(&rgba).map_err(|e| fail(&e))?;
    writer.finish().map_err(|e| fail(&e))
}

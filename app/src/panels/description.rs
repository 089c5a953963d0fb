//! The scenario's description: the small subset of Markdown scenarios use (headings,
//! paragraphs, lists, pipe tables, `**bold**`, `` `code` ``), laid out as wrapped rich text.

use eframe::egui::{self, FontId, RichText, TextFormat, Ui, text::LayoutJob};

use super::View;

/// Draws the scenario's name and description.
pub fn show(ui: &mut Ui, view: &View<'_>) {
    ui.label(
        RichText::new(&view.session.scenario.name)
            .heading()
            .strong(),
    );
    ui.add_space(4.0);
    for block in blocks(&view.session.scenario.description) {
        match block {
            Md::Heading(text) if text != view.session.scenario.name => {
                ui.add_space(4.0);
                ui.label(RichText::new(text).strong().size(15.0));
            }
            Md::Heading(_) => {}
            Md::Paragraph(text) => {
                ui.label(inline(ui, &text, ""));
                ui.add_space(4.0);
            }
            Md::Item(bullet, text) => {
                ui.label(inline(ui, &text, &format!("{bullet} ")));
            }
            Md::Table(rows) => {
                table(ui, &rows);
                ui.add_space(4.0);
            }
        }
    }
}

/// A pipe table as a grid. A table wider than it is long (a row of values per heading, say)
/// is turned on its side, so it fits the narrow panel.
fn table(ui: &mut Ui, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let cell = |r: usize, c: usize| -> &str {
        let (r, c) = if columns > rows.len() { (c, r) } else { (r, c) };
        rows.get(r)
            .and_then(|row| row.get(c))
            .map_or("", String::as_str)
    };
    let (shown_rows, shown_columns) = if columns > rows.len() {
        (columns, rows.len())
    } else {
        (rows.len(), columns)
    };
    egui::Grid::new(ui.next_auto_id())
        .striped(true)
        .num_columns(shown_columns)
        .show(ui, |ui| {
            for r in 0..shown_rows {
                for c in 0..shown_columns {
                    let text = cell(r, c);
                    // The heading row (or, on its side, column) stands out.
                    let text =
                        if (columns > rows.len() && c == 0) || (columns <= rows.len() && r == 0) {
                            format!("**{text}**")
                        } else {
                            text.to_owned()
                        };
                    ui.label(inline(ui, &text, ""));
                }
                ui.end_row();
            }
        });
}

#[derive(Debug, PartialEq)]
enum Md {
    Heading(String),
    Paragraph(String),
    Item(String, String),
    /// A pipe table's rows of cells, the separator row left out.
    Table(Vec<Vec<String>>),
}

/// Splits Markdown into headings, paragraphs and list items (continuation lines joined).
fn blocks(text: &str) -> Vec<Md> {
    let mut out: Vec<Md> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            open = false;
            continue;
        }
        if trimmed.starts_with('|') {
            let cells: Vec<String> = trimmed
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            let separator = cells
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')));
            if !separator {
                match out.last_mut() {
                    Some(Md::Table(rows)) if open => rows.push(cells),
                    _ => out.push(Md::Table(vec![cells])),
                }
            }
            open = true;
        } else if let Some(h) = trimmed.strip_prefix('#') {
            out.push(Md::Heading(h.trim_start_matches('#').trim().to_owned()));
            open = false;
        } else if let Some(item) = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
        {
            out.push(Md::Item("•".to_owned(), item.to_owned()));
            open = true;
        } else if let Some((n, item)) = trimmed
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        {
            out.push(Md::Item(format!("{n}."), item.to_owned()));
            open = true;
        } else if open && !matches!(out.last(), Some(Md::Table(_))) {
            match out.last_mut() {
                Some(Md::Paragraph(p) | Md::Item(_, p)) => {
                    p.push(' ');
                    p.push_str(trimmed);
                }
                _ => out.push(Md::Paragraph(trimmed.to_owned())),
            }
        } else {
            out.push(Md::Paragraph(trimmed.to_owned()));
            open = true;
        }
    }
    out
}

/// Lays out `**bold**` and `` `code` `` spans.
fn inline(ui: &Ui, text: &str, prefix: &str) -> LayoutJob {
    let visuals = ui.visuals();
    let body = FontId::proportional(13.5);
    let normal = TextFormat {
        font_id: body.clone(),
        color: visuals.text_color(),
        ..Default::default()
    };
    let bold = TextFormat {
        font_id: body,
        color: visuals.strong_text_color(),
        ..Default::default()
    };
    let code = TextFormat {
        font_id: FontId::monospace(12.5),
        color: visuals.strong_text_color(),
        background: visuals.code_bg_color,
        ..Default::default()
    };
    let mut job = LayoutJob::default();
    job.wrap.max_width = ui.available_width();
    if !prefix.is_empty() {
        job.append(prefix, 8.0, normal.clone());
    }
    // One pass, toggling bold on `**` and code on a backtick (no bold markers inside code).
    let (mut bold_on, mut code_on) = (false, false);
    let mut segment = String::new();
    let mut flush = |segment: &mut String, bold_on: bool, code_on: bool| {
        if !segment.is_empty() {
            let format = match (bold_on, code_on) {
                (_, true) => code.clone(),
                (true, false) => bold.clone(),
                (false, false) => normal.clone(),
            };
            job.append(segment, 0.0, format);
            segment.clear();
        }
    };
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !code_on && rest.starts_with("**") {
            flush(&mut segment, bold_on, code_on);
            bold_on = !bold_on;
            rest = &rest[2..];
        } else if c == '`' {
            flush(&mut segment, bold_on, code_on);
            code_on = !code_on;
            rest = &rest[1..];
        } else {
            segment.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    flush(&mut segment, bold_on, code_on);
    job
}

#[cfg(test)]
mod tests {
    use super::*;
    use eframe::egui;

    #[test]
    fn splits_headings_paragraphs_and_wrapped_list_items() {
        let md =
            "# Title\n\nSome text\nacross lines.\n\n1. **first** item\n   continues\n- bullet\n";
        assert_eq!(
            blocks(md),
            vec![
                Md::Heading("Title".into()),
                Md::Paragraph("Some text across lines.".into()),
                Md::Item("1.".into(), "**first** item continues".into()),
                Md::Item("•".into(), "bullet".into()),
            ]
        );
    }

    #[test]
    fn pipe_tables_become_rows_of_cells() {
        let md = "Before.\n\n| a | b |\n|---|:-:|\n| 1 | `2` |\nafter\n";
        assert_eq!(
            blocks(md),
            vec![
                Md::Paragraph("Before.".into()),
                Md::Table(vec![
                    vec!["a".into(), "b".into()],
                    vec!["1".into(), "`2`".into()],
                ]),
                Md::Paragraph("after".into()),
            ]
        );
    }

    #[test]
    fn unterminated_markup_does_not_panic() {
        let ctx = egui::Context::default();
        let mut output = ctx.run_ui(Default::default(), |ui| {
            for text in ["**open", "`open", "a ** b ` c", "**", "`", "é**ü`ß", ""] {
                let job = inline(ui, text, "");
                assert_eq!(job.text, text.replace("**", "").replace('`', ""));
            }
        });
        output.textures_delta.clear();
    }
}

//! `index.html`: one self-contained page. Figures are inline SVG, styles
//! inline; it loads nothing, so it reads the same offline. Links point only
//! to the report's own files beside it.

use std::fmt::Write as _;

use super::Provenance;
use super::figures::{Figure, Section};
use super::svg::escape;
use super::tables::Table;

/// What the page shows, in order.
pub(crate) struct Page<'a> {
    pub experiment: &'a str,
    pub summary: &'a [String],
    pub figures: &'a [Figure],
    pub size_tables: &'a [Table],
    pub failures: Option<&'a Table>,
    /// Last stderr lines, when any run wrote one.
    pub stderr: Option<&'a Table>,
    pub cells: Option<&'a Table>,
    /// Native against wasm, when effects.parquet has rows.
    pub effects: Option<&'a Table>,
    pub compare: Option<&'a Table>,
    pub provenance: &'a Provenance,
    pub provenance_tables: &'a [Table],
    /// Shown in a section that has nothing to draw: why.
    pub notes: &'a [(Section, String)],
}

const STYLE: &str = "
body { font-family: 'DejaVu Sans', Verdana, Arial, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 1.5em 3em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.meta { color: #555; margin-top: 0; }
nav a { margin-right: 1em; }
figure { margin: 1.5em 0; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #444; font-size: 0.92em; max-width: 60em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.failed td { background: #fdecea; color: #8a1c1c; }
tr.emulated td { background: #fff4e5; }
.note { color: #555; font-size: 0.92em; }
.scroll { overflow-x: auto; }
.files { font-size: 0.85em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; }
dd { margin: 0; font-family: monospace; }
";

/// An SVG document as an element of an HTML page: no XML declaration,
/// and no namespace attribute, which HTML does not need.
fn inline_svg(svg: &str) -> String {
    let body = svg
        .trim_start()
        .strip_prefix("<?xml")
        .and_then(|rest| rest.split_once("?>"))
        .map_or(svg, |(_, rest)| rest);
    body.trim()
        .replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1)
}

fn section_id(section: Section) -> &'static str {
    match section {
        Section::Startup => "startup",
        Section::Sizes => "sizes",
        Section::Pull => "pull",
        Section::Distribution => "repetitions",
        Section::Drift => "drift",
        Section::Compare => "compare",
    }
}

fn figure_html(out: &mut String, figure: &Figure) {
    let _ = write!(
        out,
        "<figure id=\"figure-{name}\">\n{svg}\n<figcaption><strong>{title}.</strong> {caption} \
         <span class=\"files\"><a href=\"figures/{name}.svg\">SVG</a> · \
         <a href=\"figures/{name}.png\">PNG</a></span></figcaption>\n</figure>\n",
        name = figure.name,
        svg = inline_svg(&figure.svg),
        title = escape(&figure.title),
        caption = escape(&figure.caption),
    );
}

fn table_html(out: &mut String, table: &Table) {
    let _ = write!(
        out,
        "<h3 id=\"table-{name}\">{title}</h3>\n<p class=\"note\">{note} \
         <span class=\"files\"><a href=\"tables/{name}.csv\">CSV</a> · \
         <a href=\"tables/{name}.md\">Markdown</a></span></p>\n<div class=\"scroll\">{table}</div>\n",
        name = table.name,
        title = escape(&table.title),
        note = escape(&table.note),
        table = table.to_html(),
    );
}

pub(crate) fn render(page: &Page) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{name}: report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header>\n<h1>{name}</h1>\n<p class=\"meta\">Report of the experiment's results, written \
         {date} by pipeline {version}.</p>\n</header>\n",
        name = escape(page.experiment),
        date = escape(&page.provenance.generated_at),
        version = escape(&page.provenance.tool_version),
    );
    let sections = [
        Section::Startup,
        Section::Sizes,
        Section::Pull,
        Section::Distribution,
        Section::Drift,
        Section::Compare,
    ];
    out.push_str("<nav>\n<a href=\"#summary\">Summary</a>");
    for section in sections {
        if section == Section::Compare && page.compare.is_none() {
            continue;
        }
        let _ = write!(
            out,
            "<a href=\"#{}\">{}</a>",
            section_id(section),
            escape(section.heading())
        );
    }
    out.push_str("<a href=\"#failures\">Failures</a><a href=\"#cells\">Cells</a><a href=\"#provenance\">Provenance</a>\n</nav>\n");

    out.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n<ul>\n");
    for line in page.summary {
        let _ = writeln!(out, "<li>{}</li>", escape(line));
    }
    out.push_str("</ul>\n</section>\n");

    for section in sections {
        if section == Section::Compare && page.compare.is_none() {
            continue;
        }
        let _ = write!(
            out,
            "<section id=\"{}\">\n<h2>{}</h2>\n",
            section_id(section),
            escape(section.heading())
        );
        let mut any = false;
        for figure in page.figures.iter().filter(|f| f.section == section) {
            figure_html(&mut out, figure);
            any = true;
        }
        if section == Section::Sizes {
            for table in page.size_tables {
                table_html(&mut out, table);
                any = true;
            }
        }
        if section == Section::Compare
            && let Some(table) = page.compare
        {
            table_html(&mut out, table);
            any = true;
        }
        for (_, note) in page.notes.iter().filter(|(s, _)| *s == section) {
            let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(note));
            any = true;
        }
        if !any {
            out.push_str("<p class=\"note\">Nothing to show for this experiment.</p>\n");
        }
        out.push_str("</section>\n");
    }

    out.push_str("<section id=\"failures\">\n<h2>Failures</h2>\n");
    match page.failures {
        Some(table) if !table.rows.is_empty() => table_html(&mut out, table),
        Some(_) => out.push_str("<p class=\"note\">No run failed.</p>\n"),
        None => out.push_str("<p class=\"note\">No results.parquet: no runs to check.</p>\n"),
    }
    if let Some(table) = page.stderr {
        table_html(&mut out, table);
    }
    out.push_str("</section>\n<section id=\"cells\">\n<h2>Cells</h2>\n");
    match page.cells {
        Some(table) => table_html(&mut out, table),
        None => out.push_str("<p class=\"note\">No cells were measured.</p>\n"),
    }
    if let Some(table) = page.effects {
        table_html(&mut out, table);
    }
    out.push_str("</section>\n");

    let provenance = page.provenance;
    out.push_str("<section id=\"provenance\">\n<h2>Provenance</h2>\n<dl>\n");
    let mut facts: Vec<(&str, String)> = vec![
        ("experiment", page.experiment.to_string()),
        ("report written", provenance.generated_at.clone()),
        ("pipeline version", provenance.tool_version.clone()),
        (
            "experiment fingerprint",
            provenance
                .fingerprint
                .clone()
                .unwrap_or_else(|| "unknown (no aggregate stage in journal.jsonl)".into()),
        ),
    ];
    if let Some(current) = &provenance.plan_fingerprint {
        facts.push(("fingerprint of the spec now", current.clone()));
    }
    if let Some((first, last)) = &provenance.measured {
        facts.push((
            "runs measured",
            format!("{first} to {last} (hosts' clocks)"),
        ));
    }
    facts.push(("tables read", provenance.tables_read.join(", ")));
    facts.push(("emulated hosts", provenance.emulation_rule.clone()));
    for (term, value) in facts {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", escape(term), escape(&value));
    }
    out.push_str("</dl>\n");
    for table in page.provenance_tables {
        table_html(&mut out, table);
    }
    out.push_str("</section>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_svg_drops_the_declaration_and_namespace() {
        let svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"a\"></svg>\n";
        assert_eq!(inline_svg(svg), "<svg id=\"a\"></svg>");
    }
}

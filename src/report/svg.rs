//! The report's charts, written as SVG text: bars with confidence
//! intervals, strips of every repetition, scatter over run order, and
//! ratio intervals. Each chart is one self-contained SVG that a browser
//! shows inline and resvg turns into the PNG, so the two never differ.
//!
//! Drawn by hand rather than through a plotting crate because every mark
//! here carries report-specific meaning (n, failed, emulated, a tooltip
//! naming the cell) that generic bar and scatter series do not have.

use std::fmt::Write as _;

/// Fonts in preference order; the PNG renderer has DejaVu Sans embedded.
pub(crate) const FONT_FAMILY: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

pub(crate) const FAILED_COLOR: &str = "#c62828";
pub(crate) const EMULATED_COLOR: &str = "#b35900";
const AXIS_COLOR: &str = "#333333";
const GRID_COLOR: &str = "#e3e3e3";

/// Escapes text for XML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Text placement and look.
#[derive(Clone, Copy)]
pub(crate) struct TextStyle {
    pub size: f64,
    pub anchor: &'static str,
    pub color: &'static str,
    pub bold: bool,
    /// Degrees, around the text's anchor point.
    pub rotate: f64,
}

impl TextStyle {
    pub const fn new(size: f64) -> Self {
        TextStyle {
            size,
            anchor: "start",
            color: AXIS_COLOR,
            bold: false,
            rotate: 0.0,
        }
    }

    pub const fn middle(self) -> Self {
        TextStyle {
            anchor: "middle",
            ..self
        }
    }

    pub const fn end(self) -> Self {
        TextStyle {
            anchor: "end",
            ..self
        }
    }

    pub const fn color(self, color: &'static str) -> Self {
        TextStyle { color, ..self }
    }

    pub const fn bold(self) -> Self {
        TextStyle { bold: true, ..self }
    }

    pub const fn rotate(self, rotate: f64) -> Self {
        TextStyle { rotate, ..self }
    }
}

/// An SVG document being drawn.
pub(crate) struct Svg {
    id: String,
    width: f64,
    height: f64,
    body: String,
}

impl Svg {
    /// `id` must be unique within a page, since ids of several inline SVGs
    /// share one document.
    pub fn new(id: &str, width: f64, height: f64) -> Svg {
        let mut svg = Svg {
            id: id.to_string(),
            width,
            height,
            body: String::new(),
        };
        svg.rect(0.0, 0.0, width, height, "#ffffff", "");
        svg
    }

    /// The id of the hatch pattern that marks emulated hosts.
    pub fn hatch(&self) -> String {
        format!("url(#{}-hatch)", self.id)
    }

    pub fn rect(&mut self, x: f64, y: f64, width: f64, height: f64, fill: &str, extra: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}"{}{extra}/>"#,
            width.max(0.0),
            height.max(0.0),
            if extra.is_empty() { "" } else { " " },
        );
    }

    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), stroke: &str, width: f64) {
        let _ = writeln!(
            self.body,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="{width}"/>"#,
            from.0, from.1, to.0, to.1
        );
    }

    pub fn dashed_line(&mut self, from: (f64, f64), to: (f64, f64), stroke: &str) {
        let _ = writeln!(
            self.body,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="1" stroke-dasharray="4 3"/>"#,
            from.0, from.1, to.0, to.1
        );
    }

    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, width: f64) {
        let mut coordinates = String::new();
        for (x, y) in points {
            let _ = write!(coordinates, "{x:.1},{y:.1} ");
        }
        let _ = writeln!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}"/>"#,
            coordinates.trim_end()
        );
    }

    pub fn circle(&mut self, center: (f64, f64), radius: f64, fill: &str, stroke: &str) {
        let _ = writeln!(
            self.body,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{radius}" fill="{fill}" fill-opacity="0.75" stroke="{stroke}" stroke-width="0.8"/>"#,
            center.0, center.1
        );
    }

    /// An ✕ of two strokes: a failed run or cell.
    pub fn cross(&mut self, center: (f64, f64), half: f64, color: &str) {
        let (x, y) = center;
        self.line((x - half, y - half), (x + half, y + half), color, 2.0);
        self.line((x - half, y + half), (x + half, y - half), color, 2.0);
    }

    pub fn text(&mut self, x: f64, y: f64, content: &str, style: TextStyle) {
        let weight = if style.bold {
            r#" font-weight="bold""#
        } else {
            ""
        };
        let transform = if style.rotate == 0.0 {
            String::new()
        } else {
            format!(r#" transform="rotate({} {x:.1} {y:.1})""#, style.rotate)
        };
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{}" text-anchor="{}" fill="{}"{weight}{transform}>{}</text>"#,
            style.size,
            style.anchor,
            style.color,
            escape(content)
        );
    }

    /// Starts a group whose marks show `tooltip` on hover in a browser.
    pub fn begin_group(&mut self, tooltip: &str) {
        let _ = writeln!(self.body, "<g><title>{}</title>", escape(tooltip));
    }

    pub fn end_group(&mut self) {
        self.body.push_str("</g>\n");
    }

    pub fn finish(self, title: &str) -> String {
        format!(
            r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" id="{id}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{font}" role="img" aria-label="{label}">
<title>{label}</title>
<defs><pattern id="{id}-hatch" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)"><rect width="2" height="6" fill="#000000" fill-opacity="0.28"/></pattern></defs>
{body}</svg>
"##,
            id = self.id,
            w = self.width.ceil(),
            h = self.height.ceil(),
            font = FONT_FAMILY,
            label = escape(title),
            body = self.body
        )
    }
}

/// A linear map from data values to pixels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    pub min: f64,
    pub max: f64,
    pub from: f64,
    pub to: f64,
}

impl Scale {
    pub fn at(&self, value: f64) -> f64 {
        if (self.max - self.min).abs() < f64::EPSILON {
            return self.from;
        }
        self.from + (value - self.min) / (self.max - self.min) * (self.to - self.from)
    }
}

/// Round tick values covering `min..=max`, about `target` of them.
pub(crate) fn nice_ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    let (min, max) = if max > min {
        (min, max)
    } else {
        (min, min + 1.0)
    };
    let raw = (max - min) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|factor| factor * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (min / step).floor() * step;
    let mut ticks = Vec::new();
    let mut tick = first;
    while tick < max + step * 0.999 {
        ticks.push(if tick.abs() < step * 1e-9 { 0.0 } else { tick });
        tick += step;
        if ticks.len() > 50 {
            break;
        }
    }
    ticks
}

/// Ticks from zero to just above `max`: of the round steps giving about
/// five to eight ticks, the one that wastes the least room on top.
pub(crate) fn ticks_from_zero(max: f64) -> Vec<f64> {
    (5..=8)
        .map(|target| nice_ticks(0.0, max, target))
        .min_by(|a, b| {
            let top = |ticks: &Vec<f64>| ticks.last().copied().unwrap_or(f64::MAX);
            top(a).total_cmp(&top(b)).then(a.len().cmp(&b.len()))
        })
        .unwrap_or_default()
}

/// A tick label with as many decimals as the step between ticks needs.
pub(crate) fn tick_label(value: f64, ticks: &[f64]) -> String {
    let step = if ticks.len() > 1 {
        (ticks[1] - ticks[0]).abs()
    } else {
        1.0
    };
    // The fewest decimals that write the step exactly (2.5 needs one).
    let decimals = (0..=6)
        .find(|&decimals| {
            let scaled = step * 10f64.powi(decimals);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(6);
    let decimals = usize::try_from(decimals).unwrap_or(6);
    format!("{value:.decimals$}")
}

/// A number for an annotation: three significant digits, more for large.
pub(crate) fn short_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Approximate width of text in the embedded font, for layout.
fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.6
}

/// A colour and its name in the legend.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub name: String,
    pub color: &'static str,
}

/// How a bar's cell came out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BarState {
    Measured,
    /// Every run failed; the reason.
    Failed(String),
}

/// One bar: stacked segments (series index, value), the interval of its
/// total and how many values it stands for.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    pub label: String,
    pub tooltip: String,
    pub segments: Vec<(usize, f64)>,
    pub interval: Option<(f64, f64)>,
    pub n: usize,
    pub failed_runs: usize,
    pub state: BarState,
    pub emulated: bool,
    /// Drawn above the bar: the value itself, for sizes.
    pub value_label: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct BarGroup {
    pub label: Vec<String>,
    pub emulated: bool,
    pub bars: Vec<Bar>,
}

/// Grouped, optionally stacked bars from zero.
#[derive(Debug, Clone)]
pub(crate) struct BarChart {
    pub title: String,
    pub y_label: String,
    pub x_label: String,
    pub series: Vec<Series>,
    pub groups: Vec<BarGroup>,
    /// Horizontal room per bar, px.
    pub bar_slot: f64,
}

const TITLE: TextStyle = TextStyle::new(15.0).bold();
const LABEL: TextStyle = TextStyle::new(12.0);
const TICK: TextStyle = TextStyle::new(10.5);
const SMALL: TextStyle = TextStyle::new(9.0);

/// The chart's title and a legend row under it.
fn title_and_legend(svg: &mut Svg, title: &str, left: f64, legend: &[(String, LegendMark)]) {
    svg.text(left, 22.0, title, TITLE);
    let mut x = left;
    for (name, mark) in legend {
        match mark {
            LegendMark::Swatch(color) => svg.rect(x, 33.0, 11.0, 11.0, color, ""),
            LegendMark::Hatch => {
                let hatch = svg.hatch();
                svg.rect(x, 33.0, 11.0, 11.0, "#ffffff", r##"stroke="#777777""##);
                svg.rect(x, 33.0, 11.0, 11.0, &hatch, "");
            }
            LegendMark::Cross => svg.cross((x + 5.5, 38.5), 4.0, FAILED_COLOR),
            LegendMark::Dot(color) => svg.circle((x + 5.5, 38.5), 4.0, color, "#333333"),
            LegendMark::Line => svg.line((x, 38.5), (x + 11.0, 38.5), "#000000", 2.0),
        }
        svg.text(x + 15.0, 43.0, name, TICK);
        x += 15.0 + text_width(name, 10.5) + 16.0;
    }
}

pub(crate) enum LegendMark {
    Swatch(&'static str),
    Hatch,
    Cross,
    Dot(&'static str),
    Line,
}

/// Y axis with grid lines and a rotated label.
fn y_axis(svg: &mut Svg, scale: &Scale, ticks: &[f64], left: f64, right: f64, label: &str) {
    for tick in ticks {
        let y = scale.at(*tick);
        svg.line((left, y), (right, y), GRID_COLOR, 1.0);
        svg.text(left - 6.0, y + 3.5, &tick_label(*tick, ticks), TICK.end());
    }
    svg.line((left, scale.from), (left, scale.to), AXIS_COLOR, 1.0);
    let middle = f64::midpoint(scale.from, scale.to);
    svg.text(16.0, middle, label, LABEL.middle().rotate(-90.0));
}

impl BarChart {
    pub fn render(&self, id: &str) -> String {
        let left = 78.0;
        let top = 62.0;
        let plot_height = 300.0;
        let group_gap = 20.0;
        let bars: usize = self.groups.iter().map(|group| group.bars.len()).sum();
        let gaps = self.groups.len() as f64 * group_gap;
        let legend_width: f64 = self
            .legend()
            .iter()
            .map(|(name, _)| 31.0 + text_width(name, 10.5))
            .sum();
        // Few bars spread over the width the title or legend needs anyway.
        let wanted = legend_width.max(text_width(&self.title, 15.0)).max(480.0);
        let bar_slot =
            ((wanted - gaps) / bars.max(1) as f64).clamp(self.bar_slot, self.bar_slot * 2.0);
        let plot_width = bars as f64 * bar_slot + gaps;
        let width = (left + plot_width + 24.0)
            .max(left + legend_width + 24.0)
            .max(text_width(&self.title, 15.0) + left + 24.0)
            .max(560.0);
        let label_lines = self
            .groups
            .iter()
            .map(|group| group.label.len())
            .max()
            .unwrap_or(1);
        let bar_label_lines = self
            .groups
            .iter()
            .flat_map(|group| &group.bars)
            .map(|bar| bar.label.lines().count())
            .max()
            .unwrap_or(1);
        let group_label_offset = 30.0 + (bar_label_lines.max(1) - 1) as f64 * 10.0;
        let height = top + plot_height + group_label_offset + label_lines as f64 * 13.0 + 24.0;
        let mut svg = Svg::new(id, width, height);
        title_and_legend(&mut svg, &self.title, left, &self.legend());

        let highest = self
            .groups
            .iter()
            .flat_map(|group| &group.bars)
            .map(|bar| {
                let total: f64 = bar.segments.iter().map(|(_, value)| value).sum();
                bar.interval.map_or(total, |(_, high)| high.max(total))
            })
            .fold(0.0, f64::max);
        let ticks = ticks_from_zero(highest * 1.08);
        let top_tick = ticks.last().copied().unwrap_or(1.0).max(1e-9);
        let baseline = top + plot_height;
        let group_label_top = baseline + group_label_offset;
        let scale = Scale {
            min: 0.0,
            max: top_tick,
            from: baseline,
            to: top,
        };
        y_axis(
            &mut svg,
            &scale,
            &ticks,
            left,
            left + plot_width,
            &self.y_label,
        );

        let bar_width = (bar_slot - 8.0).clamp(6.0, 64.0);
        let mut x = left + group_gap / 2.0;
        for group in &self.groups {
            let group_start = x;
            for bar in &group.bars {
                let center = x + bar_slot / 2.0;
                self.draw_bar(&mut svg, &scale, bar, center, bar_width);
                for (line, text) in bar.label.lines().enumerate() {
                    svg.text(
                        center,
                        baseline + 13.0 + line as f64 * 10.0,
                        text,
                        SMALL.middle(),
                    );
                }
                x += bar_slot;
            }
            let group_center = f64::midpoint(group_start, x);
            for (line, text) in group.label.iter().enumerate() {
                let style = if group.emulated && text.contains("emulated") {
                    TICK.middle().color(EMULATED_COLOR)
                } else {
                    TICK.middle()
                };
                svg.text(
                    group_center,
                    group_label_top + line as f64 * 13.0,
                    text,
                    style,
                );
            }
            x += group_gap;
            svg.line(
                (x - group_gap / 2.0, baseline),
                (x - group_gap / 2.0, baseline + 4.0),
                AXIS_COLOR,
                1.0,
            );
        }
        svg.line(
            (left, baseline),
            (left + plot_width, baseline),
            AXIS_COLOR,
            1.0,
        );
        svg.text(
            left + plot_width / 2.0,
            height - 8.0,
            &self.x_label,
            LABEL.middle(),
        );
        svg.finish(&self.title)
    }

    fn legend(&self) -> Vec<(String, LegendMark)> {
        let mut legend: Vec<(String, LegendMark)> = self
            .series
            .iter()
            .map(|series| (series.name.clone(), LegendMark::Swatch(series.color)))
            .collect();
        let bars = || self.groups.iter().flat_map(|group| &group.bars);
        if bars().any(|bar| bar.interval.is_some()) {
            legend.push(("95% CI of the mean".into(), LegendMark::Line));
        }
        if bars().any(|bar| bar.emulated) {
            legend.push(("emulated host".into(), LegendMark::Hatch));
        }
        if bars().any(|bar| matches!(bar.state, BarState::Failed(_))) {
            legend.push(("failed cell".into(), LegendMark::Cross));
        }
        legend
    }

    fn draw_bar(&self, svg: &mut Svg, scale: &Scale, bar: &Bar, center: f64, width: f64) {
        let baseline = scale.from;
        svg.begin_group(&bar.tooltip);
        let mut label_top;
        match &bar.state {
            BarState::Failed(_) => {
                svg.cross((center, baseline - 9.0), 5.0, FAILED_COLOR);
                svg.text(
                    center + 3.5,
                    baseline - 20.0,
                    "failed",
                    SMALL.color(FAILED_COLOR).rotate(-90.0),
                );
                label_top = baseline - 56.0;
            }
            BarState::Measured => {
                let mut bottom = 0.0;
                for (series, value) in &bar.segments {
                    let (y_low, y_high) = (scale.at(bottom), scale.at(bottom + value));
                    let color = self.series.get(*series).map_or("#888888", |s| s.color);
                    svg.rect(
                        center - width / 2.0,
                        y_high,
                        width,
                        y_low - y_high,
                        color,
                        "",
                    );
                    bottom += value;
                }
                let bar_top = scale.at(bottom);
                if bar.emulated {
                    let hatch = svg.hatch();
                    svg.rect(
                        center - width / 2.0,
                        bar_top,
                        width,
                        baseline - bar_top,
                        &hatch,
                        "",
                    );
                }
                label_top = bar_top;
                if let Some((low, high)) = bar.interval {
                    let (y_low, y_high) = (scale.at(low.max(0.0)), scale.at(high));
                    svg.line((center, y_low), (center, y_high), "#000000", 1.2);
                    svg.line(
                        (center - 4.0, y_high),
                        (center + 4.0, y_high),
                        "#000000",
                        1.2,
                    );
                    svg.line((center - 4.0, y_low), (center + 4.0, y_low), "#000000", 1.2);
                    label_top = label_top.min(y_high);
                }
            }
        }
        let mut y = label_top - 4.0;
        if bar.failed_runs > 0 && bar.state == BarState::Measured {
            svg.text(
                center,
                y,
                &format!("{} failed", bar.failed_runs),
                SMALL.middle().color(FAILED_COLOR),
            );
            y -= 10.0;
        }
        svg.text(center, y, &format!("n={}", bar.n), SMALL.middle());
        if let Some(value) = &bar.value_label {
            svg.text(center, y - 10.0, value, SMALL.middle());
        }
        svg.end_group();
    }
}

/// One row of a strip chart: every repetition of a cell.
#[derive(Debug, Clone)]
pub(crate) struct StripRow {
    pub label: String,
    pub emulated: bool,
    pub color: &'static str,
    /// (value, tooltip)
    pub values: Vec<(f64, String)>,
    pub median: Option<f64>,
    pub interval: Option<(f64, f64)>,
    pub failed_runs: usize,
    /// Set when every run failed: why.
    pub failure: Option<String>,
}

/// Horizontal strips, one row per cell, every repetition a dot.
#[derive(Debug, Clone)]
pub(crate) struct StripChart {
    pub title: String,
    pub x_label: String,
    pub series: Vec<Series>,
    pub rows: Vec<StripRow>,
}

impl StripChart {
    pub fn render(&self, id: &str) -> String {
        let row_height = 17.0;
        let label_width = self
            .rows
            .iter()
            .map(|row| text_width(&Self::row_label(row), 10.0))
            .fold(120.0, f64::max)
            .min(520.0);
        let left = label_width + 16.0;
        let plot_width = 520.0;
        let note_width = 120.0;
        let top = 62.0;
        let plot_height = self.rows.len().max(1) as f64 * row_height;
        let width = left + plot_width + note_width;
        let height = top + plot_height + 58.0;
        let mut svg = Svg::new(id, width, height);
        let mut legend: Vec<(String, LegendMark)> = self
            .series
            .iter()
            .map(|series| (series.name.clone(), LegendMark::Dot(series.color)))
            .collect();
        legend.push(("median".into(), LegendMark::Line));
        if self.rows.iter().any(|row| row.failed_runs > 0) {
            legend.push(("failed run".into(), LegendMark::Cross));
        }
        title_and_legend(&mut svg, &self.title, 10.0, &legend);

        let highest = self
            .rows
            .iter()
            .flat_map(|row| row.values.iter().map(|(value, _)| *value))
            .fold(0.0, f64::max);
        let ticks = ticks_from_zero(highest * 1.05);
        let scale = Scale {
            min: 0.0,
            max: ticks.last().copied().unwrap_or(1.0),
            from: left,
            to: left + plot_width,
        };
        let bottom = top + plot_height;
        for tick in &ticks {
            let x = scale.at(*tick);
            svg.line((x, top), (x, bottom), GRID_COLOR, 1.0);
            svg.text(x, bottom + 14.0, &tick_label(*tick, &ticks), TICK.middle());
        }
        for (index, row) in self.rows.iter().enumerate() {
            let y = top + index as f64 * row_height + row_height / 2.0;
            if index % 2 == 1 {
                svg.rect(
                    left,
                    y - row_height / 2.0,
                    plot_width,
                    row_height,
                    "#f5f5f5",
                    "",
                );
            }
            let label_style = if row.emulated {
                TextStyle::new(10.0).end().color(EMULATED_COLOR)
            } else {
                TextStyle::new(10.0).end()
            };
            svg.text(left - 6.0, y + 3.5, &Self::row_label(row), label_style);
            if let Some(reason) = &row.failure {
                svg.begin_group(reason);
                svg.cross((left + 8.0, y), 4.0, FAILED_COLOR);
                svg.text(
                    left + 18.0,
                    y + 3.5,
                    &format!("failed: {}", truncate(reason, 70)),
                    TextStyle::new(10.0).color(FAILED_COLOR),
                );
                svg.end_group();
            }
            for (position, (value, tooltip)) in row.values.iter().enumerate() {
                // A fixed jitter by position keeps equal values apart and the
                // picture the same on every run.
                let jitter = ((position * 7) % 9) as f64 - 4.0;
                svg.begin_group(tooltip);
                svg.circle((scale.at(*value), y + jitter * 0.9), 2.6, row.color, "none");
                svg.end_group();
            }
            if let Some((low, high)) = row.interval {
                svg.line((scale.at(low), y), (scale.at(high), y), "#555555", 1.0);
            }
            if let Some(median) = row.median {
                let x = scale.at(median);
                svg.line((x, y - 6.5), (x, y + 6.5), "#000000", 2.0);
            }
            let mut note = format!("n={}", row.values.len());
            if row.failed_runs > 0 && row.failure.is_none() {
                svg.cross((left + plot_width + 8.0, y), 3.5, FAILED_COLOR);
                let _ = write!(note, ", {} failed", row.failed_runs);
            }
            svg.text(
                left + plot_width + 16.0,
                y + 3.5,
                &note,
                TextStyle::new(10.0),
            );
        }
        svg.line((left, bottom), (left + plot_width, bottom), AXIS_COLOR, 1.0);
        svg.text(
            left + plot_width / 2.0,
            height - 10.0,
            &self.x_label,
            LABEL.middle(),
        );
        svg.finish(&self.title)
    }

    fn row_label(row: &StripRow) -> String {
        if row.emulated {
            format!("{} (emulated)", row.label)
        } else {
            row.label.clone()
        }
    }
}

fn truncate(text: &str, chars: usize) -> String {
    let first_line = text.lines().next().unwrap_or_default();
    if first_line.chars().count() <= chars {
        first_line.to_string()
    } else {
        let mut cut: String = first_line.chars().take(chars).collect();
        cut.push('…');
        cut
    }
}

/// A point of a scatter chart.
#[derive(Debug, Clone)]
pub(crate) struct Point {
    pub x: f64,
    pub y: f64,
    pub series: usize,
    pub tooltip: String,
}

/// Points over a numeric x, a reference line, a running line, and failed
/// runs as crosses on the x axis.
#[derive(Debug, Clone)]
pub(crate) struct ScatterChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub points: Vec<Point>,
    /// (x, tooltip) of runs that failed.
    pub failed: Vec<(f64, String)>,
    pub reference_y: Option<f64>,
    /// A smoothed line through the points, and its legend name.
    pub line: Option<(String, Vec<(f64, f64)>)>,
    pub emulated: bool,
}

impl ScatterChart {
    pub fn render(&self, id: &str) -> String {
        let left = 78.0;
        let top = 62.0;
        let plot_width = 680.0;
        let plot_height = 300.0;
        let width = left + plot_width + 30.0;
        let height = top + plot_height + 62.0;
        let mut svg = Svg::new(id, width, height);
        let mut legend: Vec<(String, LegendMark)> = self
            .series
            .iter()
            .map(|series| (series.name.clone(), LegendMark::Dot(series.color)))
            .collect();
        if let Some((name, _)) = &self.line {
            legend.push((name.clone(), LegendMark::Line));
        }
        if !self.failed.is_empty() {
            legend.push(("failed run".into(), LegendMark::Cross));
        }
        if self.emulated {
            legend.push(("emulated host".into(), LegendMark::Hatch));
        }
        title_and_legend(&mut svg, &self.title, left, &legend);
        let xs = self
            .points
            .iter()
            .map(|point| point.x)
            .chain(self.failed.iter().map(|(x, _)| *x));
        let (x_min, x_max) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        let (x_min, x_max) = if x_min.is_finite() {
            (x_min, x_max.max(x_min + 1.0))
        } else {
            (0.0, 1.0)
        };
        let x_ticks = nice_ticks(x_min, x_max, 8);
        let y_high = self
            .points
            .iter()
            .map(|point| point.y)
            .chain(self.reference_y)
            .fold(0.0, f64::max);
        let y_ticks = ticks_from_zero(y_high * 1.05);
        let x_scale = Scale {
            min: x_ticks.first().copied().unwrap_or(x_min),
            max: x_ticks.last().copied().unwrap_or(x_max),
            from: left,
            to: left + plot_width,
        };
        let baseline = top + plot_height;
        let y_scale = Scale {
            min: 0.0,
            max: y_ticks.last().copied().unwrap_or(1.0),
            from: baseline,
            to: top,
        };
        if self.emulated {
            let hatch = svg.hatch();
            svg.rect(
                left,
                top,
                plot_width,
                plot_height,
                &hatch,
                r#"opacity="0.25""#,
            );
        }
        y_axis(
            &mut svg,
            &y_scale,
            &y_ticks,
            left,
            left + plot_width,
            &self.y_label,
        );
        for tick in &x_ticks {
            let x = x_scale.at(*tick);
            svg.line((x, baseline), (x, baseline + 4.0), AXIS_COLOR, 1.0);
            svg.text(
                x,
                baseline + 16.0,
                &tick_label(*tick, &x_ticks),
                TICK.middle(),
            );
        }
        svg.line(
            (left, baseline),
            (left + plot_width, baseline),
            AXIS_COLOR,
            1.0,
        );
        if let Some(reference) = self.reference_y {
            let y = y_scale.at(reference);
            svg.dashed_line((left, y), (left + plot_width, y), "#555555");
        }
        for point in &self.points {
            let color = self.series.get(point.series).map_or("#888888", |s| s.color);
            svg.begin_group(&point.tooltip);
            svg.circle(
                (x_scale.at(point.x), y_scale.at(point.y)),
                2.8,
                color,
                "none",
            );
            svg.end_group();
        }
        if let Some((_, line)) = &self.line {
            let pixels: Vec<(f64, f64)> = line
                .iter()
                .map(|(x, y)| (x_scale.at(*x), y_scale.at(*y)))
                .collect();
            svg.polyline(&pixels, "#000000", 1.6);
        }
        for (x, tooltip) in &self.failed {
            svg.begin_group(tooltip);
            svg.cross((x_scale.at(*x), baseline - 6.0), 4.0, FAILED_COLOR);
            svg.end_group();
        }
        svg.text(
            left + plot_width / 2.0,
            height - 10.0,
            &self.x_label,
            LABEL.middle(),
        );
        svg.finish(&self.title)
    }
}

/// One row of an interval chart: an estimate with its interval.
#[derive(Debug, Clone)]
pub(crate) struct IntervalRow {
    pub label: String,
    pub estimate: Option<f64>,
    pub interval: Option<(f64, f64)>,
    /// Filled when significant, hollow when not.
    pub highlighted: bool,
    pub note: String,
    /// Shown in place of the estimate when there is none.
    pub missing: Option<String>,
    pub emulated: bool,
}

/// Estimates with intervals against a reference value, one row each.
#[derive(Debug, Clone)]
pub(crate) struct IntervalChart {
    pub title: String,
    pub x_label: String,
    pub reference: f64,
    pub highlighted_name: String,
    pub plain_name: String,
    pub rows: Vec<IntervalRow>,
}

impl IntervalChart {
    pub fn render(&self, id: &str) -> String {
        let row_height = 17.0;
        let label = |row: &IntervalRow| {
            if row.emulated {
                format!("{} (emulated)", row.label)
            } else {
                row.label.clone()
            }
        };
        let label_width = self
            .rows
            .iter()
            .map(|row| text_width(&label(row), 10.0))
            .fold(120.0, f64::max)
            .min(520.0);
        let left = label_width + 16.0;
        let plot_width = 460.0;
        let note_width = 240.0;
        let top = 62.0;
        let plot_height = self.rows.len().max(1) as f64 * row_height;
        let width = left + plot_width + note_width;
        let height = top + plot_height + 58.0;
        let mut svg = Svg::new(id, width, height);
        let legend = vec![
            (self.highlighted_name.clone(), LegendMark::Dot("#1f4e9c")),
            (self.plain_name.clone(), LegendMark::Dot("#ffffff")),
            ("95% bootstrap CI".into(), LegendMark::Line),
        ];
        title_and_legend(&mut svg, &self.title, 10.0, &legend);
        let values = self
            .rows
            .iter()
            .flat_map(|row| {
                row.estimate
                    .into_iter()
                    .chain(row.interval.into_iter().flat_map(|(low, high)| [low, high]))
            })
            .filter(|value| value.is_finite())
            .chain([self.reference]);
        let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let ticks = nice_ticks(low.min(self.reference) * 0.95, high * 1.05, 6);
        let scale = Scale {
            min: ticks.first().copied().unwrap_or(0.0),
            max: ticks.last().copied().unwrap_or(2.0),
            from: left,
            to: left + plot_width,
        };
        let bottom = top + plot_height;
        for tick in &ticks {
            let x = scale.at(*tick);
            svg.line((x, top), (x, bottom), GRID_COLOR, 1.0);
            svg.text(x, bottom + 14.0, &tick_label(*tick, &ticks), TICK.middle());
        }
        let reference = scale.at(self.reference);
        svg.dashed_line((reference, top), (reference, bottom), "#555555");
        for (index, row) in self.rows.iter().enumerate() {
            let y = top + index as f64 * row_height + row_height / 2.0;
            let style = if row.emulated {
                TextStyle::new(10.0).end().color(EMULATED_COLOR)
            } else {
                TextStyle::new(10.0).end()
            };
            svg.text(left - 6.0, y + 3.5, &label(row), style);
            svg.begin_group(&format!("{}: {}", row.label, row.note));
            if let Some((low, high)) = row.interval {
                svg.line((scale.at(low), y), (scale.at(high), y), "#000000", 1.2);
            }
            match (row.estimate, &row.missing) {
                (Some(estimate), _) => {
                    let fill = if row.highlighted {
                        "#1f4e9c"
                    } else {
                        "#ffffff"
                    };
                    svg.circle((scale.at(estimate), y), 4.0, fill, "#1f4e9c");
                }
                (None, Some(reason)) => {
                    svg.cross((left + 8.0, y), 4.0, FAILED_COLOR);
                    svg.text(
                        left + 18.0,
                        y + 3.5,
                        reason,
                        TextStyle::new(10.0).color(FAILED_COLOR),
                    );
                }
                (None, None) => {}
            }
            svg.end_group();
            svg.text(
                left + plot_width + 10.0,
                y + 3.5,
                &row.note,
                TextStyle::new(10.0),
            );
        }
        svg.line((left, bottom), (left + plot_width, bottom), AXIS_COLOR, 1.0);
        svg.text(
            left + plot_width / 2.0,
            height - 10.0,
            &self.x_label,
            LABEL.middle(),
        );
        svg.finish(&self.title)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 9.3, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(
            nice_ticks(0.0, 1200.0, 6),
            vec![0.0, 200.0, 400.0, 600.0, 800.0, 1000.0, 1200.0]
        );
        // 500s would reach 2000; 200s stop at 1600.
        assert_eq!(ticks_from_zero(1501.0).last(), Some(&1600.0));
        let small = nice_ticks(0.9, 1.1, 4);
        assert!(
            small.first().unwrap() <= &0.9 && small.last().unwrap() >= &1.1,
            "{small:?}"
        );
        assert_eq!(tick_label(0.5, &[0.0, 0.5, 1.0]), "0.5");
        assert_eq!(tick_label(0.25, &[0.0, 0.25, 0.5]), "0.25");
        assert_eq!(tick_label(250.0, &[0.0, 250.0]), "250");
    }

    #[test]
    fn text_is_escaped() {
        let mut svg = Svg::new("t", 10.0, 10.0);
        svg.text(0.0, 0.0, "a<b & \"c\"", TextStyle::new(10.0));
        let out = svg.finish("x & y");
        assert!(out.contains("a&lt;b &amp; &quot;c&quot;"));
        assert!(out.contains("<title>x &amp; y</title>"));
    }
}

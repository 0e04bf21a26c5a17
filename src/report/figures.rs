//! The paper's views, drawn from whatever cells an experiment has:
//! start-up bars (Figures 4–6), image sizes (Figures 7 and 8), pull time per
//! architecture (Figure 9), every repetition of each cell, and drift over
//! the run order.

use std::collections::BTreeMap;

use crate::results::stats;

use super::cells::{Cell, HostInfo, Metric, is_wasm_target, short_target};
use super::read::ImageRow;
use super::svg::{
    Bar, BarChart, BarGroup, BarState, Point, ScatterChart, Series, StripChart, StripRow,
    short_number,
};

/// Where a figure goes on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Section {
    Startup,
    Sizes,
    Pull,
    Distribution,
    Drift,
    Compare,
}

impl Section {
    pub fn heading(self) -> &'static str {
        match self {
            Section::Startup => "Start-up time (Figures 4–6)",
            Section::Sizes => "Image sizes (Figures 7 and 8)",
            Section::Pull => "Pull time per architecture (Figure 9)",
            Section::Distribution => "Every repetition",
            Section::Drift => "Drift over the run order",
            Section::Compare => "Comparison with another run",
        }
    }
}

/// One figure: its file name (without extension) and its SVG.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub name: String,
    pub section: Section,
    pub title: String,
    pub caption: String,
    pub svg: String,
}

/// A file-name-safe form of `parts` joined by `-`.
pub(crate) fn slug(parts: &[&str]) -> String {
    let mut out = String::new();
    for part in parts {
        if !out.is_empty() {
            out.push('-');
        }
        let mut last_dash = true;
        for c in part.chars() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
                last_dash = false;
            } else if !last_dash {
                out.push('-');
                last_dash = true;
            }
        }
        while out.ends_with('-') {
            out.pop();
        }
    }
    out
}

const NATIVE_COLOR: &str = "#4c72b0";
const WASM_COLOR: &str = "#8e5bb5";

fn native_and_wasm() -> Vec<Series> {
    vec![
        Series {
            name: "native image".into(),
            color: NATIVE_COLOR,
        },
        Series {
            name: "wasm image".into(),
            color: WASM_COLOR,
        },
    ]
}

/// Native targets first (by name), wasm last.
fn target_order(target: &str) -> (bool, &str) {
    (is_wasm_target(target), target)
}

fn scenario_order(scenario: &str) -> (u8, &str) {
    match scenario {
        "fresh" => (0, scenario),
        "cached" => (1, scenario),
        _ => (2, scenario),
    }
}

/// `aarch64, emulated` or `x86_64`: a host's label under its bars.
fn host_note(host: Option<&HostInfo>) -> String {
    let arch = host
        .and_then(|info| info.architecture.clone())
        .unwrap_or_else(|| "architecture unknown".into());
    if host.is_some_and(|info| info.emulated) {
        format!("{arch}, emulated")
    } else {
        arch
    }
}

fn emulated_suffix(emulated: bool) -> &'static str {
    if emulated { ", emulated host" } else { "" }
}

fn interval_text(summary: &stats::Summary) -> String {
    if summary.n > 1 {
        format!(
            "95% CI [{}, {}]",
            short_number(summary.ci95_low),
            short_number(summary.ci95_high)
        )
    } else {
        "no interval from one run".into()
    }
}

/// The interval to draw: none for a single run, whose interval is undefined.
fn drawn_interval(summary: &stats::Summary) -> Option<(f64, f64)> {
    (summary.n > 1 && summary.ci95_low.is_finite() && summary.ci95_high.is_finite())
        .then_some((summary.ci95_low, summary.ci95_high))
}

/// Figures 4 to 6: per workload, variant and engine, pull plus time to
/// main for each language on each host, native against wasm, fresh and
/// cached.
pub(crate) fn startup_figures(cells: &[Cell], hosts: &BTreeMap<String, HostInfo>) -> Vec<Figure> {
    let mut by_figure: BTreeMap<(&str, &str, &str), Vec<&Cell>> = BTreeMap::new();
    for cell in cells {
        by_figure
            .entry((&cell.key.workload, &cell.key.variant, &cell.key.engine))
            .or_default()
            .push(cell);
    }
    let mut figures = Vec::new();
    for ((workload, variant, engine), cells) in by_figure {
        // Only the scenarios with a measured bar get legend entries.
        let measured = |cached: bool| {
            cells.iter().any(|cell| {
                (cell.key.scenario == "cached") == cached && cell.startup_parts().is_some()
            })
        };
        let mut series = Vec::new();
        let mut first_series = [0, 0];
        for (cached, [pull, main], names) in [
            (
                false,
                ["#d62728", "#1f77b4"],
                ["pull, fresh", "to main, fresh"],
            ),
            (
                true,
                ["#e8b400", "#2ca02c"],
                ["pull, cached", "to main, cached"],
            ),
        ] {
            if measured(cached) {
                first_series[usize::from(cached)] = series.len();
                series.push(Series {
                    name: names[0].into(),
                    color: pull,
                });
                series.push(Series {
                    name: names[1].into(),
                    color: main,
                });
            }
        }
        let mut groups: BTreeMap<(&str, &str), Vec<&Cell>> = BTreeMap::new();
        for cell in &cells {
            groups
                .entry((&cell.key.host, &cell.key.language))
                .or_default()
                .push(cell);
        }
        let mut bar_groups = Vec::new();
        for ((host, language), mut group_cells) in groups {
            group_cells.sort_by(|a, b| {
                (target_order(&a.key.target), scenario_order(&a.key.scenario))
                    .cmp(&(target_order(&b.key.target), scenario_order(&b.key.scenario)))
            });
            let info = hosts.get(host);
            bar_groups.push(BarGroup {
                label: vec![language.to_string(), host.to_string(), host_note(info)],
                emulated: info.is_some_and(|info| info.emulated),
                bars: group_cells
                    .iter()
                    .map(|cell| {
                        startup_bar(
                            cell,
                            first_series[usize::from(cell.key.scenario == "cached")],
                        )
                    })
                    .collect(),
            });
        }
        let chart = BarChart {
            title: format!("Start-up time: {workload} ({variant}), {engine}"),
            y_label: Metric::Startup.axis_label().into(),
            x_label: "language, host and its architecture; each bar one image target and scenario"
                .into(),
            series,
            groups: bar_groups,
            bar_slot: 40.0,
        };
        let name = slug(&["startup", workload, variant, engine]);
        figures.push(Figure {
            svg: chart.render(&name),
            name,
            section: Section::Startup,
            title: chart.title.clone(),
            caption: "Each bar is one cell: the mean pull time and the mean time from the \
                      create request to main over its ok runs, stacked; the whisker is the 95% \
                      confidence interval of the mean of their sum, n the runs it is over. \
                      Hatched bars were measured on an emulated host; a cross marks a cell \
                      whose every run failed."
                .into(),
        });
    }
    figures
}

fn startup_bar(cell: &Cell, first_series: usize) -> Bar {
    let target = format!("{}\n{}", short_target(&cell.key.target), cell.key.scenario);
    let failed_runs = cell.failed_count();
    let total = cell.total_runs();
    let summary = cell.stats(Metric::Startup);
    let parts = cell.startup_parts();
    if let (Some(summary), Some((pull, main))) = (summary, parts) {
        Bar {
            label: target,
            tooltip: format!(
                "{}{}: mean {} ms (pull {} + to main {}), {}, n={} of {} runs{}",
                cell.key.label(),
                emulated_suffix(cell.emulated),
                short_number(summary.mean),
                short_number(pull),
                short_number(main),
                interval_text(&summary),
                summary.n,
                total,
                if failed_runs > 0 {
                    format!(", {failed_runs} failed")
                } else {
                    String::new()
                }
            ),
            segments: vec![(first_series, pull), (first_series + 1, main)],
            interval: drawn_interval(&summary),
            n: summary.n,
            failed_runs,
            state: BarState::Measured,
            emulated: cell.emulated,
            value_label: None,
        }
    } else {
        let reason = cell
            .first_error()
            .unwrap_or("no ok run measured the time to main")
            .to_string();
        Bar {
            label: target,
            tooltip: format!(
                "{}{}: failed ({} of {} runs): {reason}",
                cell.key.label(),
                emulated_suffix(cell.emulated),
                failed_runs,
                total
            ),
            segments: Vec::new(),
            interval: None,
            n: 0,
            failed_runs,
            state: BarState::Failed(reason),
            emulated: cell.emulated,
            value_label: None,
        }
    }
}

/// The unit sizes are shown in: kB up to 10 MB, else MB (both decimal, as
/// Docker and registries count).
pub(crate) fn size_unit(largest_bytes: u64) -> (&'static str, f64) {
    if largest_bytes >= 10_000_000 {
        ("MB", 1e6)
    } else {
        ("KB", 1e3)
    }
}

/// Figures 7 and 8: image sizes on the host (uncompressed) and in the
/// registry (compressed), per language and target.
pub(crate) fn size_figures(images: &[ImageRow]) -> Vec<Figure> {
    let mut by_figure: BTreeMap<(&str, &str), Vec<&ImageRow>> = BTreeMap::new();
    for image in images {
        by_figure
            .entry((&image.workload, &image.variant))
            .or_default()
            .push(image);
    }
    let mut figures = Vec::new();
    for ((workload, variant), rows) in by_figure {
        for (kind, where_, size) in [
            (
                "host",
                "on the host, uncompressed",
                (|image: &ImageRow| image.host_size_bytes) as fn(&ImageRow) -> u64,
            ),
            (
                "registry",
                "in the registry, compressed",
                |image: &ImageRow| image.oci_size_bytes,
            ),
        ] {
            let largest = rows.iter().map(|image| size(image)).max().unwrap_or(0);
            let (unit, divisor) = size_unit(largest);
            let mut groups: BTreeMap<&str, Vec<&ImageRow>> = BTreeMap::new();
            for image in &rows {
                groups.entry(&image.language).or_default().push(image);
            }
            let bar_groups = groups
                .into_iter()
                .map(|(language, mut images)| {
                    images.sort_by(|a, b| target_order(&a.target).cmp(&target_order(&b.target)));
                    BarGroup {
                        label: vec![language.to_string()],
                        emulated: false,
                        bars: images
                            .iter()
                            .map(|image| {
                                let value = size(image) as f64 / divisor;
                                Bar {
                                    label: short_target(&image.target).to_string(),
                                    tooltip: format!(
                                        "{} {} {}: {} {unit} {where_} ({} bytes), {}",
                                        image.language,
                                        image.target,
                                        image.variant,
                                        short_number(value),
                                        size(image),
                                        image.image_ref
                                    ),
                                    segments: vec![(
                                        usize::from(is_wasm_target(&image.target)),
                                        value,
                                    )],
                                    interval: None,
                                    n: 1,
                                    failed_runs: 0,
                                    state: BarState::Measured,
                                    emulated: false,
                                    value_label: Some(short_number(value)),
                                }
                            })
                            .collect(),
                    }
                })
                .collect();
            let chart = BarChart {
                title: format!("Image size {where_}: {workload} ({variant})"),
                y_label: format!("image size {where_} ({unit})"),
                x_label: "language; each bar one image target".into(),
                series: native_and_wasm(),
                groups: bar_groups,
                bar_slot: 46.0,
            };
            let name = slug(&["size", kind, workload, variant]);
            figures.push(Figure {
                svg: chart.render(&name),
                name,
                section: Section::Sizes,
                title: chart.title.clone(),
                caption: format!(
                    "The size of each platform image {where_}, in {unit} (1 {unit} = {} bytes). \
                     A size is exact, one image each (n=1), so it has no interval.",
                    if unit == "MB" { "1,000,000" } else { "1,000" }
                ),
            });
        }
    }
    figures
}

/// Figure 9: pull time per host architecture, native against wasm, per
/// workload, variant, engine and scenario.
pub(crate) fn pull_figures(cells: &[Cell], hosts: &BTreeMap<String, HostInfo>) -> Vec<Figure> {
    let mut by_figure: BTreeMap<(&str, &str, &str, &str), Vec<&Cell>> = BTreeMap::new();
    for cell in cells {
        by_figure
            .entry((
                &cell.key.workload,
                &cell.key.variant,
                &cell.key.engine,
                &cell.key.scenario,
            ))
            .or_default()
            .push(cell);
    }
    let mut figures = Vec::new();
    for ((workload, variant, engine, scenario), cells) in by_figure {
        let languages: std::collections::BTreeSet<&str> = cells
            .iter()
            .map(|cell| cell.key.language.as_str())
            .collect();
        let mut groups: BTreeMap<&str, Vec<&Cell>> = BTreeMap::new();
        for cell in &cells {
            groups.entry(&cell.key.host).or_default().push(cell);
        }
        let bar_groups = groups
            .into_iter()
            .map(|(host, mut group_cells)| {
                group_cells.sort_by(|a, b| {
                    (&a.key.language, target_order(&a.key.target))
                        .cmp(&(&b.key.language, target_order(&b.key.target)))
                });
                let info = hosts.get(host);
                BarGroup {
                    label: vec![host.to_string(), host_note(info)],
                    emulated: info.is_some_and(|info| info.emulated),
                    bars: group_cells
                        .iter()
                        .map(|cell| pull_bar(cell, languages.len() > 1))
                        .collect(),
                }
            })
            .collect();
        let chart = BarChart {
            title: format!("Pull time: {workload} ({variant}), {engine}, {scenario} pulls"),
            y_label: Metric::Pull.axis_label().into(),
            x_label: "host and its architecture; each bar one image".into(),
            series: native_and_wasm(),
            groups: bar_groups,
            bar_slot: if languages.len() > 1 { 62.0 } else { 44.0 },
        };
        let name = slug(&["pull", workload, variant, engine, scenario]);
        figures.push(Figure {
            svg: chart.render(&name),
            name,
            section: Section::Pull,
            title: chart.title.clone(),
            caption: "Mean pull time over the ok runs of each cell, with the 95% confidence \
                      interval of the mean and n. Hatched: emulated host; a cross: every run \
                      failed."
                .into(),
        });
    }
    figures
}

fn pull_bar(cell: &Cell, with_language: bool) -> Bar {
    let label = if with_language {
        format!("{} {}", cell.key.language, short_target(&cell.key.target))
    } else {
        short_target(&cell.key.target).to_string()
    };
    let failed_runs = cell.failed_count();
    let series = usize::from(cell.key.is_wasm());
    if let Some(summary) = cell.stats(Metric::Pull) {
        Bar {
            label,
            tooltip: format!(
                "{}{}: mean pull {} ms, {}, n={}{}",
                cell.key.label(),
                emulated_suffix(cell.emulated),
                short_number(summary.mean),
                interval_text(&summary),
                summary.n,
                if failed_runs > 0 {
                    format!(", {failed_runs} failed")
                } else {
                    String::new()
                }
            ),
            segments: vec![(series, summary.mean)],
            interval: drawn_interval(&summary),
            n: summary.n,
            failed_runs,
            state: BarState::Measured,
            emulated: cell.emulated,
            value_label: None,
        }
    } else {
        let reason = cell
            .first_error()
            .unwrap_or("no ok run timed a pull")
            .to_string();
        Bar {
            label,
            tooltip: format!(
                "{}{}: failed: {reason}",
                cell.key.label(),
                emulated_suffix(cell.emulated)
            ),
            segments: Vec::new(),
            interval: None,
            n: 0,
            failed_runs,
            state: BarState::Failed(reason),
            emulated: cell.emulated,
            value_label: None,
        }
    }
}

fn strip_label(cell: &Cell) -> String {
    format!(
        "{} {} {} · {} {} {}",
        cell.key.language,
        short_target(&cell.key.target),
        cell.key.variant,
        cell.key.host,
        cell.key.engine,
        cell.key.scenario
    )
}

/// Every repetition of every cell, per workload and metric: medians
/// alone hide noise and warm-up effects.
pub(crate) fn distribution_figures(cells: &[Cell]) -> Vec<Figure> {
    let mut by_workload: BTreeMap<&str, Vec<&Cell>> = BTreeMap::new();
    for cell in cells.iter().filter(|cell| !cell.runs.is_empty()) {
        by_workload
            .entry(&cell.key.workload)
            .or_default()
            .push(cell);
    }
    let mut figures = Vec::new();
    for (workload, cells) in by_workload {
        for metric in [Metric::Pull, Metric::ToMain] {
            let rows: Vec<StripRow> = cells
                .iter()
                .map(|cell| {
                    let summary = cell.stats(metric);
                    StripRow {
                        label: strip_label(cell),
                        emulated: cell.emulated,
                        color: if cell.key.is_wasm() {
                            WASM_COLOR
                        } else {
                            NATIVE_COLOR
                        },
                        values: cell
                            .runs
                            .iter()
                            .filter(|run| run.ok)
                            .filter_map(|run| {
                                let value = metric.value(run)?;
                                Some((
                                    value,
                                    format!(
                                        "{}: iteration {}{}: {} ms",
                                        cell.key.label(),
                                        run.iteration,
                                        run.sequence
                                            .map(|s| format!(", run {s} on the host"))
                                            .unwrap_or_default(),
                                        short_number(value)
                                    ),
                                ))
                            })
                            .collect(),
                        median: summary.map(|s| s.median),
                        interval: summary.as_ref().and_then(drawn_interval),
                        failed_runs: cell.failed_count(),
                        failure: cell
                            .failed()
                            .then(|| cell.first_error().unwrap_or("not ok").to_string()),
                    }
                })
                .collect();
            if rows
                .iter()
                .all(|row| row.values.is_empty() && row.failure.is_none())
            {
                continue;
            }
            let chart = StripChart {
                title: format!("Every repetition: {workload}, {}", metric.name()),
                x_label: metric.axis_label().into(),
                series: native_and_wasm(),
                rows,
            };
            let name = slug(&["runs", workload, metric.name()]);
            figures.push(Figure {
                svg: chart.render(&name),
                name,
                section: Section::Distribution,
                title: chart.title.clone(),
                caption: "One row per cell, one dot per ok run; the black tick is the median, \
                          the grey line the 95% confidence interval of the mean. Failed runs \
                          are counted on the right; a row of a cell whose every run failed says \
                          why."
                    .into(),
            });
        }
    }
    figures
}

/// How many neighbours the running median over the run order spans.
const DRIFT_WINDOW: usize = 9;

/// Each run relative to its cell's median, over the host's run order: a
/// slow drift or a warm-up effect shows as a trend away from 1.
pub(crate) fn drift_figures(cells: &[Cell], hosts: &BTreeMap<String, HostInfo>) -> Vec<Figure> {
    let mut by_host: BTreeMap<&str, Vec<&Cell>> = BTreeMap::new();
    for cell in cells {
        if cell.runs.iter().any(|run| run.sequence.is_some()) {
            by_host.entry(&cell.key.host).or_default().push(cell);
        }
    }
    let series = vec![
        Series {
            name: "fresh".into(),
            color: "#d62728",
        },
        Series {
            name: "cached".into(),
            color: "#2ca02c",
        },
    ];
    let mut figures = Vec::new();
    for (host, cells) in by_host {
        let emulated = hosts.get(host).is_some_and(|info| info.emulated);
        for metric in [Metric::Pull, Metric::ToMain] {
            let mut points = Vec::new();
            let mut failed = Vec::new();
            for cell in &cells {
                let median = stats::median(&cell.ok_values(metric)).filter(|m| *m > 0.0);
                for run in &cell.runs {
                    let Some(sequence) = run.sequence else {
                        continue;
                    };
                    let x = sequence as f64;
                    if !run.ok {
                        failed.push((
                            x,
                            format!(
                                "{}: iteration {} failed: {}",
                                cell.key.label(),
                                run.iteration,
                                run.error.as_deref().unwrap_or("not ok")
                            ),
                        ));
                        continue;
                    }
                    if let (Some(value), Some(median)) = (metric.value(run), median) {
                        points.push(Point {
                            x,
                            y: value / median,
                            series: usize::from(cell.key.scenario == "cached"),
                            tooltip: format!(
                                "{}: run {sequence}, iteration {}: {} ms, {:.2}× the cell's median",
                                cell.key.label(),
                                run.iteration,
                                short_number(value),
                                value / median
                            ),
                        });
                    }
                }
            }
            if points.is_empty() && failed.is_empty() {
                continue;
            }
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            let ratios: Vec<f64> = points.iter().map(|point| point.y).collect();
            let line: Vec<(f64, f64)> = points
                .iter()
                .enumerate()
                .filter_map(|(index, point)| {
                    let from = index.saturating_sub(DRIFT_WINDOW / 2);
                    let to = (index + DRIFT_WINDOW / 2 + 1).min(ratios.len());
                    stats::median(&ratios[from..to]).map(|median| (point.x, median))
                })
                .collect();
            let info = hosts.get(host);
            let chart = ScatterChart {
                title: format!(
                    "Drift over the run order: {host} ({}), {}",
                    host_note(info),
                    metric.name()
                ),
                x_label: "position in the host's run order (sequence, runs)".into(),
                y_label: format!("{} ÷ its cell's median (ratio)", metric.name()),
                series: series.clone(),
                points,
                failed,
                reference_y: Some(1.0),
                line: Some((format!("running median of {DRIFT_WINDOW}"), line)),
                emulated,
            };
            let name = slug(&["drift", host, metric.name()]);
            figures.push(Figure {
                svg: chart.render(&name),
                name,
                section: Section::Drift,
                title: chart.title.clone(),
                caption: "Each ok run's value divided by its cell's median, in the order the \
                          host ran them; the line is a running median. A trend away from 1 is \
                          drift or warm-up; crosses on the axis are failed runs."
                    .into(),
            });
        }
    }
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(
            slug(&["startup", "Matrix Multiplication", "linux/amd64", "a--b"]),
            "startup-matrix-multiplication-linux-amd64-a-b"
        );
    }

    #[test]
    fn sizes_switch_to_megabytes_past_ten() {
        assert_eq!(size_unit(9_999_999).0, "KB");
        assert_eq!(size_unit(10_000_000).0, "MB");
    }
}

//! `--compare`: two runs of an experiment side by side, for before/after
//! studies (a new engine version, another host). For each cell both runs
//! have, and each of start-up, pull and time to main:
//!
//! - the ratio of medians, this run ÷ the other (above 1: this run is slower),
//!   with a 95% percentile bootstrap interval (2,000 resamples of each run,
//!   seeded, so a report is reproducible);
//! - a two-sided Mann–Whitney U test of the two samples (exact for small
//!   samples without ties), its p-value adjusted with Holm's method over
//!   every comparison in the report, and the difference called significant
//!   when the adjusted p is below 0.05.
//!
//! Cells are matched by host name; when the two runs share no host name
//! (a study of another host), by the hosts' architecture instead.

use std::collections::{BTreeMap, BTreeSet};

use crate::results::stats;

use super::cells::{Cell, CellKey, HostInfo, Metric};
use super::figures::{Figure, Section, slug};
use super::svg::{IntervalChart, IntervalRow, short_number};
use super::tables::Table;

pub(crate) const BOOTSTRAP_RESAMPLES: usize = 2_000;
pub(crate) const BOOTSTRAP_SEED: u64 = 0x5EED;
pub(crate) const SIGNIFICANCE_LEVEL: f64 = 0.05;

const COMPARED_METRICS: [Metric; 3] = [Metric::Startup, Metric::Pull, Metric::ToMain];

/// How cells of the two runs were paired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostMatching {
    ByName,
    ByArchitecture,
}

#[derive(Debug, Clone)]
pub(crate) struct Comparison {
    pub table: Table,
    pub figures: Vec<Figure>,
    pub matching: HostMatching,
    /// Cells in both runs.
    pub matched_cells: usize,
    pub compared: usize,
    pub significant: usize,
    pub only_here: usize,
    pub only_there: usize,
}

/// One (cell, metric) row.
struct Row {
    key: CellKey,
    other_host: String,
    metric: Metric,
    emulated: bool,
    status: String,
    here: Option<stats::Summary>,
    there: Option<stats::Summary>,
    ratio: Option<f64>,
    interval: Option<(f64, f64)>,
    p_value: Option<f64>,
    p_adjusted: Option<f64>,
}

fn matching_key(
    cell: &Cell,
    matching: HostMatching,
    hosts: &BTreeMap<String, HostInfo>,
) -> CellKey {
    let mut key = cell.key.clone();
    if matching == HostMatching::ByArchitecture {
        key.host = hosts
            .get(&cell.key.host)
            .and_then(|info| info.architecture.clone())
            .unwrap_or_else(|| cell.key.host.clone());
    }
    key
}

pub(crate) fn compare(
    here: &[Cell],
    here_hosts: &BTreeMap<String, HostInfo>,
    there: &[Cell],
    there_hosts: &BTreeMap<String, HostInfo>,
    other_name: &str,
) -> Comparison {
    let names_here: BTreeSet<&str> = here.iter().map(|c| c.key.host.as_str()).collect();
    let shared_name = there
        .iter()
        .any(|cell| names_here.contains(cell.key.host.as_str()));
    let matching = if shared_name || there.is_empty() {
        HostMatching::ByName
    } else {
        HostMatching::ByArchitecture
    };
    let there_by_key: BTreeMap<CellKey, &Cell> = there
        .iter()
        .map(|cell| (matching_key(cell, matching, there_hosts), cell))
        .collect();
    let mut used_there = BTreeSet::new();
    let mut rows = Vec::new();
    let mut matched_cells = 0;
    for cell in here {
        let key = matching_key(cell, matching, here_hosts);
        let other = there_by_key.get(&key).copied();
        if other.is_some() {
            matched_cells += 1;
            used_there.insert(key.clone());
        }
        for metric in COMPARED_METRICS {
            let this_values = cell.ok_values(metric);
            let mut row = Row {
                key: cell.key.clone(),
                other_host: other.map(|o| o.key.host.clone()).unwrap_or_default(),
                metric,
                emulated: cell.emulated,
                status: String::new(),
                here: cell.stats(metric),
                there: other.and_then(|o| o.stats(metric)),
                ratio: None,
                interval: None,
                p_value: None,
                p_adjusted: None,
            };
            let Some(other) = other else {
                if metric == Metric::Startup {
                    row.status = "only in this run".into();
                    rows.push(row);
                }
                continue;
            };
            let other_values = other.ok_values(metric);
            row.status = match (this_values.is_empty(), other_values.is_empty()) {
                (false, false) => "compared".into(),
                (true, false) if cell.failed() => "failed in this run".into(),
                (false, true) if other.failed() => "failed in the other run".into(),
                (true, true) if cell.failed() || other.failed() => "failed in both runs".into(),
                _ => "no values".into(),
            };
            if row.status == "no values" {
                continue;
            }
            if row.status == "compared" {
                let (this_median, other_median) =
                    (stats::median(&this_values), stats::median(&other_values));
                row.ratio = match (this_median, other_median) {
                    (Some(up), Some(down)) if down != 0.0 => Some(up / down),
                    _ => None,
                };
                row.interval = stats::bootstrap_ratio_of_medians(
                    &this_values,
                    &other_values,
                    BOOTSTRAP_RESAMPLES,
                    BOOTSTRAP_SEED,
                );
                row.p_value = stats::mann_whitney_u(&this_values, &other_values).map(|t| t.p_value);
            }
            rows.push(row);
        }
    }
    let mut only_other_run = 0;
    for cell in there {
        let key = matching_key(cell, matching, there_hosts);
        if !used_there.contains(&key) {
            only_other_run += 1;
            rows.push(Row {
                key: cell.key.clone(),
                other_host: cell.key.host.clone(),
                metric: Metric::Startup,
                emulated: cell.emulated,
                status: "only in the other run".into(),
                here: None,
                there: cell.stats(Metric::Startup),
                ratio: None,
                interval: None,
                p_value: None,
                p_adjusted: None,
            });
        }
    }
    let tested: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].p_value.is_some())
        .collect();
    let adjusted = stats::holm_adjust(
        &tested
            .iter()
            .filter_map(|&i| rows[i].p_value)
            .collect::<Vec<f64>>(),
    );
    for (&index, p) in tested.iter().zip(adjusted) {
        rows[index].p_adjusted = Some(p);
    }
    let significant = rows
        .iter()
        .filter(|row| row.p_adjusted.is_some_and(|p| p < SIGNIFICANCE_LEVEL))
        .count();
    let only_this_run = rows
        .iter()
        .filter(|row| row.status == "only in this run")
        .count();
    Comparison {
        figures: figures(&rows, other_name),
        table: table(&rows, other_name, matching),
        matching,
        matched_cells,
        compared: tested.len(),
        significant,
        only_here: only_this_run,
        only_there: only_other_run,
    }
}

fn format_p(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 0.0001 => format!("{p:.1e}"),
        Some(p) => format!("{p:.4}"),
        None => String::new(),
    }
}

fn significance(row: &Row) -> &'static str {
    match row.p_adjusted {
        Some(p) if p < SIGNIFICANCE_LEVEL => "yes",
        Some(_) => "no",
        None => "",
    }
}

fn table(rows: &[Row], other_name: &str, matching: HostMatching) -> Table {
    let optional =
        |value: Option<f64>, format: fn(f64) -> String| value.map(format).unwrap_or_default();
    let two = |value: f64| format!("{value:.2}");
    let three = |value: f64| format!("{value:.3}");
    Table {
        name: "compare".into(),
        title: format!("This run against {other_name}"),
        note: format!(
            "Ratio: median of this run ÷ median of the other, over ok runs (above 1: this run \
             is slower); its 95% interval is a percentile bootstrap ({BOOTSTRAP_RESAMPLES} \
             resamples, seed {BOOTSTRAP_SEED}). p: two-sided Mann–Whitney U; p (Holm): adjusted \
             over all {} comparisons; significant when p (Holm) < {SIGNIFICANCE_LEVEL}. Cells \
             are matched by {}.",
            rows.iter().filter(|row| row.p_value.is_some()).count(),
            match matching {
                HostMatching::ByName => "host name",
                HostMatching::ByArchitecture => "host architecture, as the runs share no host name",
            }
        ),
        columns: [
            "workload",
            "variant",
            "language",
            "target",
            "host",
            "other host",
            "engine",
            "scenario",
            "metric",
            "status",
            "n",
            "median (ms)",
            "other n",
            "other median (ms)",
            "ratio",
            "ratio ci95 low",
            "ratio ci95 high",
            "p",
            "p (Holm)",
            "significant",
        ]
        .map(String::from)
        .to_vec(),
        rows: rows
            .iter()
            .map(|row| {
                let status = if row.status.starts_with("failed") {
                    // The page styles rows with a `failed` cell.
                    format!("failed ({})", row.status)
                } else {
                    row.status.clone()
                };
                vec![
                    row.key.workload.clone(),
                    row.key.variant.clone(),
                    row.key.language.clone(),
                    row.key.target.clone(),
                    row.key.host.clone(),
                    row.other_host.clone(),
                    row.key.engine.clone(),
                    row.key.scenario.clone(),
                    row.metric.name().to_string(),
                    status,
                    row.here.map(|s| s.n.to_string()).unwrap_or_default(),
                    optional(row.here.map(|s| s.median), two),
                    row.there.map(|s| s.n.to_string()).unwrap_or_default(),
                    optional(row.there.map(|s| s.median), two),
                    optional(row.ratio, three),
                    optional(row.interval.map(|(low, _)| low), three),
                    optional(row.interval.map(|(_, high)| high), three),
                    format_p(row.p_value),
                    format_p(row.p_adjusted),
                    significance(row).to_string(),
                ]
            })
            .collect(),
    }
}

fn figures(rows: &[Row], other_name: &str) -> Vec<Figure> {
    let mut figures = Vec::new();
    for metric in COMPARED_METRICS {
        let chart_rows: Vec<IntervalRow> = rows
            .iter()
            .filter(|row| row.metric == metric && !row.status.starts_with("only"))
            .map(|row| {
                let note = match (row.ratio, row.p_adjusted) {
                    (Some(ratio), Some(p)) => format!(
                        "×{} p(Holm)={} n={}/{}",
                        short_number(ratio),
                        format_p(Some(p)),
                        row.here.map_or(0, |s| s.n),
                        row.there.map_or(0, |s| s.n)
                    ),
                    _ => row.status.clone(),
                };
                IntervalRow {
                    label: row.key.label(),
                    estimate: row.ratio,
                    interval: row.interval,
                    highlighted: significance(row) == "yes",
                    missing: row.ratio.is_none().then(|| row.status.clone()),
                    note,
                    emulated: row.emulated,
                }
            })
            .collect();
        if chart_rows.is_empty() {
            continue;
        }
        let chart = IntervalChart {
            title: format!("This run ÷ {other_name}: median {}", metric.name()),
            x_label: format!(
                "ratio of median {}, this run ÷ other run (×; 1 = no change)",
                metric.name()
            ),
            reference: 1.0,
            highlighted_name: "significant (Holm-adjusted p < 0.05)".into(),
            plain_name: "not significant".into(),
            rows: chart_rows,
        };
        let name = slug(&["compare", metric.name()]);
        figures.push(Figure {
            svg: chart.render(&name),
            name,
            section: Section::Compare,
            title: chart.title.clone(),
            caption: "Each row a cell: the ratio of its median in this run to its median in the \
                      other, with a 95% bootstrap interval; filled when the Mann–Whitney U test, \
                      Holm-adjusted over every comparison, finds the difference significant."
                .into(),
        });
    }
    figures
}

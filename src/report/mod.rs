//! `pipeline report`: the paper's figures and tables from an experiment's
//! Parquet tables, written to `out/<experiment>/report/` as one
//! self-contained `index.html`, every figure as SVG and PNG, and every
//! table as CSV and Markdown (docs/report.md).
//!
//! - `read`: the tables, as plain rows;
//! - `cells`: cells, their statistics, and which hosts are emulated;
//! - `figures` (drawn with `svg`, rasterised by `png`): the views;
//! - `tables`: the paper's Tables 2–4, cells, failures, provenance;
//! - `compare`: two runs side by side;
//! - `html`: the page.

mod cells;
mod compare;
mod figures;
mod html;
mod png;
mod read;
mod svg;
mod tables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::plan::{StageId, StageKind};

use cells::{Cell, HostInfo, Metric, is_wasm_target};
use figures::{Figure, Section};
use read::Tables;
use tables::Table;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: no such folder; run `pipeline apply` first, or name an out/<experiment> folder", path.display())]
    NoOutDir { path: PathBuf },
    #[error("{}: no results tables (images, hosts, results or summary .parquet); run `pipeline apply` first", path.display())]
    NoTables { path: PathBuf },
    #[error("{}: {message}", path.display())]
    BadTable { path: PathBuf, message: String },
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to draw {}: {message}", path.display())]
    Draw { path: PathBuf, message: String },
}

impl ReportError {
    /// Whether the input is at fault (exit 2) rather than the run (exit 1).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            ReportError::NoOutDir { .. }
                | ReportError::NoTables { .. }
                | ReportError::BadTable { .. }
        )
    }
}

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// `out/<experiment>`: where the tables are, and where `report/` goes.
    pub out_dir: PathBuf,
    /// Another run's `out/<experiment>` to compare with.
    pub compare: Option<PathBuf>,
    /// The aggregate fingerprint of the experiment's plan as it is now,
    /// when the report was asked for by spec.
    pub plan_fingerprint: Option<String>,
    /// The architecture hosts are compared with when `hosts.parquet` has no
    /// `emulated` column; this machine's by default.
    pub runner_arch: String,
    pub generated_at: SystemTime,
}

impl ReportOptions {
    pub fn new(out_dir: PathBuf) -> Self {
        ReportOptions {
            out_dir,
            compare: None,
            plan_fingerprint: None,
            runner_arch: std::env::consts::ARCH.to_string(),
            generated_at: SystemTime::now(),
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ReportOutcome {
    pub dir: PathBuf,
    pub index: PathBuf,
    pub figures: usize,
    pub tables: usize,
    /// The short summary, one line each, as the page also shows it.
    pub summary: Vec<String>,
}

/// Where the data came from and when.
#[derive(Debug, Clone)]
pub(crate) struct Provenance {
    pub tool_version: String,
    pub generated_at: String,
    pub fingerprint: Option<String>,
    pub plan_fingerprint: Option<String>,
    /// First and last run start, UTC.
    pub measured: Option<(String, String)>,
    pub tables_read: Vec<String>,
    pub emulation_rule: String,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn from_epoch_ms(ms: i64) -> Option<String> {
    let ms = u64::try_from(ms).ok()?;
    Some(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
}

/// The experiment's name: the out folder is `out/<experiment>`.
fn experiment_name(dir: &Path) -> String {
    std::path::absolute(dir)
        .ok()
        .and_then(|dir| {
            dir.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| dir.display().to_string())
}

/// The aggregate stage's fingerprint from the journal: it covers every
/// run, so it names the experiment as measured.
fn journal_fingerprint(dir: &Path) -> Option<String> {
    let journal = crate::journal::read_journal(&dir.join("journal.jsonl")).ok()?;
    match journal.outcome(&StageId::new(StageKind::Aggregate, ""))? {
        crate::journal::Outcome::Done(done) => Some(done.fingerprint.clone()),
        crate::journal::Outcome::Failed { fingerprint, .. } => {
            Some(format!("{fingerprint} (the aggregate stage failed)"))
        }
    }
}

/// Reads the tables of `options.out_dir` (and of the run to compare with)
/// and writes the report beside them.
pub fn generate(options: &ReportOptions) -> Result<ReportOutcome, ReportError> {
    let tables = read::read_tables(&options.out_dir)?;
    let other = options
        .compare
        .as_deref()
        .map(read::read_tables)
        .transpose()?;
    let experiment = experiment_name(&options.out_dir);
    let hosts = cells::host_infos(&tables, &options.runner_arch);
    let cells = cells::cells(&tables, &hosts);
    let images = tables.images.clone().unwrap_or_default();

    let mut notes: Vec<(Section, String)> = Vec::new();
    let mut all_figures: Vec<Figure> = Vec::new();
    if tables.runs.is_some() {
        all_figures.extend(figures::startup_figures(&cells, &hosts));
    } else {
        notes.push((
            Section::Startup,
            "results.parquet is missing: start-up bars need every run (summary.parquet has no \
             interval for pull + to_main)."
                .into(),
        ));
    }
    if images.is_empty() {
        notes.push((Section::Sizes, "images.parquet is missing or empty.".into()));
    } else {
        all_figures.extend(figures::size_figures(&images));
    }
    all_figures.extend(figures::pull_figures(&cells, &hosts));
    all_figures.extend(figures::distribution_figures(&cells));
    all_figures.extend(figures::drift_figures(&cells, &hosts));
    if tables.runs.is_none() {
        notes.push((
            Section::Distribution,
            "results.parquet is missing: there are no single runs to show.".into(),
        ));
    } else if tables
        .runs
        .iter()
        .flatten()
        .all(|run| run.sequence.is_none())
    {
        notes.push((
            Section::Drift,
            "results.parquet has no sequence column: the run order is unknown.".into(),
        ));
    }

    let mut size_tables = Vec::new();
    if !images.is_empty() {
        size_tables.push(tables::reduction_table(&images));
        size_tables.push(tables::architecture_table(&images));
    }
    let failures = tables.runs.as_ref().map(|_| tables::failures_table(&cells));
    let stderr = tables
        .runs
        .as_ref()
        .map(|_| tables::stderr_table(&cells))
        .filter(|table| !table.rows.is_empty());
    let cells_table = (!cells.is_empty()).then(|| tables::cells_table(&cells, &hosts));
    let effects_table = tables
        .effects
        .as_deref()
        .filter(|effects| !effects.is_empty())
        .map(tables::effects_table);
    let mut provenance_tables = vec![tables::hosts_table(tables.hosts.as_ref(), &hosts)];
    if !images.is_empty() {
        provenance_tables.push(tables::images_table(&images));
    }

    let comparison = other.as_ref().map(|other| {
        let other_hosts = cells::host_infos(other, &options.runner_arch);
        let other_cells = cells::cells(other, &other_hosts);
        let name = options
            .compare
            .as_deref()
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        compare::compare(&cells, &hosts, &other_cells, &other_hosts, &name)
    });
    if let Some(comparison) = &comparison {
        all_figures.extend(comparison.figures.iter().cloned());
    }

    let measured = measured_period(&tables);
    let provenance = Provenance {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        generated_at: rfc3339(options.generated_at),
        fingerprint: journal_fingerprint(&options.out_dir),
        plan_fingerprint: options.plan_fingerprint.clone(),
        measured,
        tables_read: read::TABLE_NAMES
            .iter()
            .filter(|name| options.out_dir.join(name).is_file())
            .map(|name| (*name).to_string())
            .collect(),
        emulation_rule: if tables
            .hosts
            .as_ref()
            .is_some_and(|h| h.has_column("emulated"))
        {
            "as hosts.parquet's emulated column says".into()
        } else {
            format!(
                "hosts.parquet has no emulated column: a host whose architecture is not this \
                 machine's ({}) is taken as emulated",
                cells::canonical_arch(&options.runner_arch)
            )
        },
    };
    let mut summary = summary_lines(&experiment, &tables, &cells, &hosts, &images);
    if let (Some(measured), Some(now)) = (&provenance.fingerprint, &provenance.plan_fingerprint)
        && !measured.starts_with(now.as_str())
    {
        summary.push(
            "the spec has changed since these results were measured (its fingerprint differs \
             from the journal's); `pipeline apply` brings them up to date"
                .into(),
        );
    }
    if let Some(comparison) = &comparison {
        summary.push(format!(
            "against {}: {} cells matched by {}, {} comparisons, {} significant (Holm-adjusted \
             Mann–Whitney p < 0.05); {} cells only here, {} only there",
            options
                .compare
                .as_deref()
                .unwrap_or(Path::new(""))
                .display(),
            comparison.matched_cells,
            match comparison.matching {
                compare::HostMatching::ByName => "host name",
                compare::HostMatching::ByArchitecture => "host architecture",
            },
            comparison.compared,
            comparison.significant,
            comparison.only_here,
            comparison.only_there
        ));
    }

    let mut all_tables: Vec<&Table> = size_tables.iter().collect();
    all_tables.extend(failures.iter());
    all_tables.extend(stderr.iter());
    all_tables.extend(cells_table.iter());
    all_tables.extend(effects_table.iter());
    all_tables.extend(provenance_tables.iter());
    if let Some(comparison) = &comparison {
        all_tables.push(&comparison.table);
    }
    let page = html::Page {
        experiment: &experiment,
        summary: &summary,
        figures: &all_figures,
        size_tables: &size_tables,
        failures: failures.as_ref(),
        stderr: stderr.as_ref(),
        cells: cells_table.as_ref(),
        effects: effects_table.as_ref(),
        compare: comparison.as_ref().map(|c| &c.table),
        provenance: &provenance,
        provenance_tables: &provenance_tables,
        notes: &notes,
    };
    let index_html = html::render(&page);
    let dir = options.out_dir.join("report");
    write_report(&dir, &index_html, &all_figures, &all_tables)?;
    Ok(ReportOutcome {
        index: dir.join("index.html"),
        dir,
        figures: all_figures.len(),
        tables: all_tables.len(),
        summary,
    })
}

/// First and last run start, from the hosts' clocks.
fn measured_period(tables: &Tables) -> Option<(String, String)> {
    let starts = tables
        .runs
        .iter()
        .flatten()
        .filter_map(|run| run.started_at_ms);
    let (first, last) = starts.fold(
        (None, None),
        |(first, last): (Option<i64>, Option<i64>), ms| {
            (
                Some(first.map_or(ms, |f| f.min(ms))),
                Some(last.map_or(ms, |l| l.max(ms))),
            )
        },
    );
    Some((from_epoch_ms(first?)?, from_epoch_ms(last?)?))
}

fn summary_lines(
    experiment: &str,
    tables: &Tables,
    cells: &[Cell],
    hosts: &BTreeMap<String, HostInfo>,
    images: &[read::ImageRow],
) -> Vec<String> {
    let mut lines = Vec::new();
    let failed = cells.iter().filter(|cell| cell.failed()).count();
    let partly = cells
        .iter()
        .filter(|cell| !cell.failed() && cell.failed_count() > 0)
        .count();
    let emulated = cells.iter().filter(|cell| cell.emulated).count();
    let runs = tables.runs.as_ref().map_or(0, Vec::len);
    lines.push(format!(
        "{experiment}: {} cells ({failed} failed, {partly} with some failed runs, {emulated} on \
         emulated hosts), {runs} runs, {} images, {} hosts",
        cells.len(),
        images.len(),
        hosts.len()
    ));
    // Wasm against native start-up: per host, engine, language and fresh/cached.
    let mut native: BTreeMap<(&str, &str, &str, &str, &str, &str), f64> = BTreeMap::new();
    for cell in cells.iter().filter(|cell| !cell.key.is_wasm()) {
        if let Some(summary) = cell.stats(Metric::Startup) {
            let k = &cell.key;
            native.insert(
                (
                    &k.workload,
                    &k.variant,
                    &k.host,
                    &k.engine,
                    &k.scenario,
                    &k.language,
                ),
                summary.mean,
            );
        }
    }
    for scenario in ["fresh", "cached"] {
        let ratios: Vec<f64> = cells
            .iter()
            .filter(|cell| cell.key.is_wasm() && cell.key.scenario == scenario)
            .filter_map(|cell| {
                let k = &cell.key;
                let native = native.get(&(
                    k.workload.as_str(),
                    k.variant.as_str(),
                    k.host.as_str(),
                    k.engine.as_str(),
                    k.scenario.as_str(),
                    k.language.as_str(),
                ))?;
                Some(cell.stats(Metric::Startup)?.mean / native)
            })
            .filter(|ratio| ratio.is_finite())
            .collect();
        if let Some(median) = crate::results::stats::median(&ratios) {
            let (low, high) = ratios
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                    (lo.min(*r), hi.max(*r))
                });
            lines.push(format!(
                "{scenario} start-up (pull + to_main, mean), wasm ÷ native on the same host and \
                 engine: median {median:.2}× over {} pairs (from {low:.2}× to {high:.2}×)",
                ratios.len()
            ));
        }
    }
    let mut shares = Vec::new();
    for wasm in images.iter().filter(|image| is_wasm_target(&image.target)) {
        for native in images.iter().filter(|image| {
            !is_wasm_target(&image.target)
                && image.workload == wasm.workload
                && image.variant == wasm.variant
                && image.language == wasm.language
                && image.host_size_bytes > 0
        }) {
            shares.push(wasm.host_size_bytes as f64 / native.host_size_bytes as f64 * 100.0);
        }
    }
    if let Some(median) = crate::results::stats::median(&shares) {
        let (low, high) = shares
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
                (lo.min(*s), hi.max(*s))
            });
        lines.push(format!(
            "wasm images on the host are {median:.0}% of the native ones (median of {} pairs; \
             {low:.0}% to {high:.0}%)",
            shares.len()
        ));
    }
    lines
}

/// Writes the report into a fresh folder beside `dir`, then puts it in
/// place of `dir`, so no figure of an earlier report survives.
fn write_report(
    dir: &Path,
    index_html: &str,
    figures: &[Figure],
    tables: &[&Table],
) -> Result<(), ReportError> {
    let staging = dir.with_file_name(format!("report.tmp-{}", std::process::id()));
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    let create = |path: &Path| {
        std::fs::create_dir_all(path).map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    if staging.exists() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    create(&staging.join("figures"))?;
    create(&staging.join("tables"))?;
    let renderer = png::PngRenderer::new();
    for figure in figures {
        let svg_path = staging.join("figures").join(format!("{}.svg", figure.name));
        write(&svg_path, figure.svg.as_bytes())?;
        let png_path = staging.join("figures").join(format!("{}.png", figure.name));
        let png = renderer
            .render(&figure.svg)
            .map_err(|message| ReportError::Draw {
                path: png_path.clone(),
                message,
            })?;
        write(&png_path, &png)?;
    }
    for table in tables {
        write(
            &staging.join("tables").join(format!("{}.csv", table.name)),
            table.to_csv().as_bytes(),
        )?;
        write(
            &staging.join("tables").join(format!("{}.md", table.name)),
            table.to_markdown().as_bytes(),
        )?;
    }
    write(&staging.join("index.html"), index_html.as_bytes())?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|source| ReportError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::rename(&staging, dir).map_err(|source| ReportError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

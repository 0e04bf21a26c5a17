//! Cells (one image on one host and engine in one scenario), their runs and
//! statistics, and what the report knows about each host.

use std::collections::BTreeMap;

use crate::results::stats::{self, Summary};

use super::read::{HostTable, RunRow, SummaryRow, Tables};

/// What identifies a cell, in the order figures and tables sort by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct CellKey {
    pub workload: String,
    pub variant: String,
    pub host: String,
    pub engine: String,
    pub scenario: String,
    pub language: String,
    pub target: String,
    pub runtime: String,
}

impl CellKey {
    /// A wasm target, or a native platform's image that a wasm runtime runs
    /// (a precompiled module): wasm runtimes' names say so (wasmtime,
    /// wasmedge, wasmer), runc's and crun's do not.
    pub fn is_wasm(&self) -> bool {
        is_wasm_target(&self.target) || self.runtime.contains("wasm")
    }

    /// `rust linux/amd64 optimized · lab-amd64 docker fresh`.
    pub fn label(&self) -> String {
        format!(
            "{} {} {} · {} {} {}",
            self.language, self.target, self.variant, self.host, self.engine, self.scenario
        )
    }

    fn of_run(row: &RunRow) -> CellKey {
        CellKey {
            workload: row.workload.clone(),
            variant: row.variant.clone(),
            host: row.host.clone(),
            engine: row.engine.clone(),
            scenario: row.scenario.clone(),
            language: row.language.clone(),
            target: row.target.clone(),
            runtime: row.runtime.clone(),
        }
    }

    fn of_summary(row: &SummaryRow) -> CellKey {
        CellKey {
            workload: row.workload.clone(),
            variant: row.variant.clone(),
            host: row.host.clone(),
            engine: row.engine.clone(),
            scenario: row.scenario.clone(),
            language: row.language.clone(),
            target: row.target.clone(),
            runtime: row.runtime.clone(),
        }
    }
}

pub(crate) fn is_wasm_target(target: &str) -> bool {
    target == "wasm" || target.starts_with("wasi/") || target.ends_with("/wasm")
}

/// `linux/arm64` → `arm64`; `wasm` stays.
pub(crate) fn short_target(target: &str) -> &str {
    target.strip_prefix("linux/").unwrap_or(target)
}

/// A measured quantity of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Metric {
    Pull,
    ToMain,
    /// Pull plus time to main of the same run: the paper's start-up time.
    /// A pull the scenario skipped (`pull_ms` null in an ok run) counts as 0.
    Startup,
    Run,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::Pull, Metric::ToMain, Metric::Startup, Metric::Run];

    /// The column name, or for start-up the sum's name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Pull => "pull_ms",
            Metric::ToMain => "to_main_ms",
            Metric::Startup => "startup_ms",
            Metric::Run => "run_ms",
        }
    }

    /// An axis label, with its unit.
    pub fn axis_label(self) -> &'static str {
        match self {
            Metric::Pull => "pull time (ms)",
            Metric::ToMain => "time to main (ms)",
            Metric::Startup => "start-up time: pull + to_main (ms)",
            Metric::Run => "run time to exit (ms)",
        }
    }

    pub fn value(self, run: &RunRow) -> Option<f64> {
        match self {
            Metric::Pull => run.pull_ms,
            Metric::ToMain => run.to_main_ms,
            Metric::Startup => Some(run.pull_ms.unwrap_or(0.0) + run.to_main_ms?),
            Metric::Run => run.run_ms,
        }
    }

    fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| metric.name() == name)
    }
}

/// One cell: its runs in iteration order, or only its summary when
/// `results.parquet` is missing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cell {
    pub key: CellKey,
    pub runs: Vec<RunRow>,
    pub emulated: bool,
    /// From `summary.parquet`, used only when there are no runs.
    summaries: BTreeMap<Metric, Summary>,
    /// The median's bootstrap 95% interval, from `summary.parquet`: it needs
    /// the experiment's seed, which only the writer knows.
    median_intervals: BTreeMap<Metric, (f64, f64)>,
    /// How the cell fared against `measure.until`, from `summary.parquet`.
    pub until: Option<UntilStatus>,
}

/// A cell against `measure.until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UntilStatus {
    /// Ok runs, in the order they started, after which the target was met.
    pub runs_to_target: Option<u64>,
    /// Some planned runs were left out.
    pub stopped_early: bool,
}

impl UntilStatus {
    pub fn describe(self) -> String {
        match (self.runs_to_target, self.stopped_early) {
            (Some(runs), true) => format!("met after {runs} runs, stopped"),
            (Some(runs), false) => format!("met after {runs} runs"),
            (None, _) => "not met".to_string(),
        }
    }
}

impl Cell {
    pub fn total_runs(&self) -> usize {
        if self.runs.is_empty() {
            self.summaries.values().map(|s| s.n).max().unwrap_or(0)
        } else {
            self.runs.len()
        }
    }

    pub fn failed_runs(&self) -> impl Iterator<Item = &RunRow> {
        self.runs.iter().filter(|run| !run.ok)
    }

    pub fn failed_count(&self) -> usize {
        self.failed_runs().count()
    }

    /// Every run failed: the cell has no measurement to show.
    pub fn failed(&self) -> bool {
        !self.runs.is_empty() && self.runs.iter().all(|run| !run.ok)
    }

    /// Why the cell's first failed run failed.
    pub fn first_error(&self) -> Option<&str> {
        self.failed_runs()
            .find_map(|run| run.error.as_deref())
            .or_else(|| self.failed_runs().next().map(|_| "not ok"))
    }

    /// The metric's values over the ok runs, in iteration order.
    pub fn ok_values(&self, metric: Metric) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|run| run.ok)
            .filter_map(|run| metric.value(run))
            .collect()
    }

    /// Statistics over the ok runs that have the value; `None` if none has.
    pub fn stats(&self, metric: Metric) -> Option<Summary> {
        if self.runs.is_empty() {
            return self.summaries.get(&metric).copied();
        }
        stats::summarize(&self.ok_values(metric))
    }

    pub fn median_interval(&self, metric: Metric) -> Option<(f64, f64)> {
        self.median_intervals.get(&metric).copied()
    }

    /// Means of pull and to_main over the ok runs with a to_main, so that
    /// the two parts of a start-up bar add up to its mean.
    pub fn startup_parts(&self) -> Option<(f64, f64)> {
        let both: Vec<(f64, f64)> = self
            .runs
            .iter()
            .filter(|run| run.ok)
            .filter_map(|run| Some((run.pull_ms.unwrap_or(0.0), run.to_main_ms?)))
            .collect();
        if both.is_empty() {
            return None;
        }
        let count = both.len() as f64;
        Some((
            both.iter().map(|(pull, _)| pull).sum::<f64>() / count,
            both.iter().map(|(_, main)| main).sum::<f64>() / count,
        ))
    }
}

/// What the report knows of a host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostInfo {
    pub name: String,
    /// `uname -m` as the host reported it, or inferred from the native
    /// images it ran when `hosts.parquet` lacks it.
    pub architecture: Option<String>,
    pub emulated: bool,
    /// Why the report thinks the host is (not) emulated.
    pub emulation_basis: String,
}

/// The machine's name for an architecture, as `uname -m` gives it.
pub(crate) fn canonical_arch(name: &str) -> String {
    match name {
        "amd64" | "x86-64" | "x64" => "x86_64".into(),
        "arm64" | "aarch64_be" => "aarch64".into(),
        "armv7l" | "arm/v7" | "armhf" => "arm".into(),
        "ppc64el" => "ppc64le".into(),
        other => other.into(),
    }
}

/// The architecture of a native target: `linux/arm64/v8` → `aarch64`.
fn target_arch(target: &str) -> Option<String> {
    if is_wasm_target(target) {
        return None;
    }
    let arch = target.split('/').nth(1)?;
    Some(canonical_arch(arch))
}

/// Hosts from `hosts.parquet`, and any host that only the results name.
/// Emulation comes from the `emulated` column when the table has one;
/// otherwise a host whose architecture differs from `runner_arch` (where
/// the report runs, normally the runner of the experiment) is taken as
/// emulated, as on the lab, where only the runner's architecture is native.
pub(crate) fn host_infos(tables: &Tables, runner_arch: &str) -> BTreeMap<String, HostInfo> {
    let runner_arch = canonical_arch(runner_arch);
    let mut hosts = BTreeMap::new();
    let empty = HostTable::default();
    let table = tables.hosts.as_ref().unwrap_or(&empty);
    for row in 0..table.rows.len() {
        let Some(name) = table.value(row, "host") else {
            continue;
        };
        let architecture = table.value(row, "architecture").map(canonical_arch);
        let column = table
            .value(row, "emulated")
            .map(|value| matches!(value.trim(), "true" | "1" | "yes"));
        let (emulated, basis) = match (column, &architecture) {
            (Some(emulated), _) => (emulated, "the emulated column of hosts.parquet".to_string()),
            (None, Some(arch)) if *arch != runner_arch => (
                true,
                format!("architecture {arch} differs from this machine's {runner_arch}"),
            ),
            (None, Some(_)) => (
                false,
                format!("architecture is this machine's ({runner_arch})"),
            ),
            (None, None) => (false, "architecture unknown".to_string()),
        };
        hosts.insert(
            name.to_string(),
            HostInfo {
                name: name.to_string(),
                architecture,
                emulated,
                emulation_basis: basis,
            },
        );
    }
    let named_in_runs = tables
        .runs
        .iter()
        .flatten()
        .map(|run| (run.host.clone(), target_arch(&run.target)))
        .chain(
            tables
                .summary
                .iter()
                .flatten()
                .map(|row| (row.host.clone(), target_arch(&row.target))),
        );
    for (host, native_arch) in named_in_runs {
        let info = hosts.entry(host.clone()).or_insert_with(|| HostInfo {
            name: host,
            architecture: None,
            emulated: false,
            emulation_basis: "not in hosts.parquet; architecture unknown".into(),
        });
        // A host runs native images of its own architecture.
        if info.architecture.is_none()
            && let Some(arch) = native_arch
        {
            info.emulated = arch != runner_arch;
            info.emulation_basis = if info.emulated {
                format!("not in hosts.parquet; ran {arch} images, not this machine's {runner_arch}")
            } else {
                format!("not in hosts.parquet; ran images of this machine's {runner_arch}")
            };
            info.architecture = Some(arch);
        }
    }
    hosts
}

/// Every cell of the experiment: from the runs when `results.parquet` is
/// there (failed cells included), else from `summary.parquet`.
pub(crate) fn cells(tables: &Tables, hosts: &BTreeMap<String, HostInfo>) -> Vec<Cell> {
    let mut by_key: BTreeMap<CellKey, Cell> = BTreeMap::new();
    let emulated = |host: &str| hosts.get(host).is_some_and(|info| info.emulated);
    if let Some(runs) = &tables.runs {
        for run in runs {
            let key = CellKey::of_run(run);
            by_key
                .entry(key.clone())
                .or_insert_with(|| Cell {
                    emulated: emulated(&key.host),
                    key,
                    runs: Vec::new(),
                    summaries: BTreeMap::new(),
                    median_intervals: BTreeMap::new(),
                    until: None,
                })
                .runs
                .push(run.clone());
        }
        for cell in by_key.values_mut() {
            cell.runs.sort_by_key(|run| run.iteration);
        }
    } else if let Some(rows) = &tables.summary {
        for row in rows {
            let Some(metric) = Metric::parse(&row.metric) else {
                continue;
            };
            let key = CellKey::of_summary(row);
            let n = usize::try_from(row.n).unwrap_or(usize::MAX);
            by_key
                .entry(key.clone())
                .or_insert_with(|| Cell {
                    emulated: emulated(&key.host),
                    key,
                    runs: Vec::new(),
                    summaries: BTreeMap::new(),
                    median_intervals: BTreeMap::new(),
                    until: None,
                })
                .summaries
                .insert(
                    metric,
                    Summary {
                        n,
                        median: row.median,
                        mean: row.mean,
                        std_dev: f64::NAN,
                        ci95_low: row.ci95_low,
                        ci95_high: row.ci95_high,
                    },
                );
        }
    }
    for row in tables.summary.iter().flatten() {
        if let (Some(metric), Some(interval)) = (Metric::parse(&row.metric), row.median_ci95)
            && let Some(cell) = by_key.get_mut(&CellKey::of_summary(row))
        {
            cell.median_intervals.insert(metric, interval);
        }
        if let Some(met) = row.until_met
            && let Some(cell) = by_key.get_mut(&CellKey::of_summary(row))
        {
            cell.until = Some(UntilStatus {
                runs_to_target: row.runs_to_target.filter(|_| met),
                stopped_early: row.stopped_early.unwrap_or(false),
            });
        }
    }
    by_key.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_precompiled_module_on_a_native_platform_is_wasm() {
        let key = |target: &str, runtime: &str| CellKey {
            workload: "w".into(),
            variant: "precompiled".into(),
            host: "h".into(),
            engine: "containerd".into(),
            scenario: "fresh".into(),
            language: "rust".into(),
            target: target.into(),
            runtime: runtime.into(),
        };
        assert!(key("linux/amd64", "wasmtime").is_wasm());
        assert!(key("wasm", "wasmtime").is_wasm());
        assert!(!key("linux/amd64", "runc").is_wasm());
    }

    fn run(host: &str, target: &str, ok: bool, pull: f64, main: f64) -> RunRow {
        RunRow {
            workload: "w".into(),
            language: "rust".into(),
            variant: "optimized".into(),
            target: target.into(),
            platform: String::new(),
            host: host.into(),
            engine: "docker".into(),
            runtime: "runc".into(),
            scenario: "fresh".into(),
            iteration: 0,
            sequence: None,
            image_digest: None,
            pull_ms: Some(pull),
            to_main_ms: Some(main),
            run_ms: None,
            ok,
            started_at_ms: None,
            error: (!ok).then(|| "exit code 1".to_string()),
            stderr_tail: None,
        }
    }

    #[test]
    fn emulation_from_the_column_or_from_the_architecture() {
        let with_column = HostTable {
            columns: vec!["host".into(), "architecture".into(), "emulated".into()],
            rows: vec![
                vec![
                    Some("a".into()),
                    Some("aarch64".into()),
                    Some("false".into()),
                ],
                vec![Some("b".into()), Some("x86_64".into()), Some("true".into())],
            ],
        };
        let tables = Tables {
            hosts: Some(with_column),
            ..Tables::default()
        };
        let hosts = host_infos(&tables, "x86_64");
        assert!(
            !hosts["a"].emulated,
            "the column wins over the architecture"
        );
        assert!(hosts["b"].emulated);

        let without = HostTable {
            columns: vec!["host".into(), "architecture".into()],
            rows: vec![
                vec![Some("a".into()), Some("aarch64".into())],
                vec![Some("b".into()), Some("x86_64".into())],
            ],
        };
        let tables = Tables {
            hosts: Some(without),
            runs: Some(vec![run("c", "linux/arm64", true, 1.0, 1.0)]),
            ..Tables::default()
        };
        let hosts = host_infos(&tables, "x86_64");
        assert!(hosts["a"].emulated);
        assert!(!hosts["b"].emulated);
        // Not in hosts.parquet: its native arm64 images say what it is.
        assert!(hosts["c"].emulated);
        assert_eq!(hosts["c"].architecture.as_deref(), Some("aarch64"));
    }

    #[test]
    fn until_comes_from_the_summary_and_shows_in_the_cells_table() {
        let summary =
            |target: &str, met: Option<bool>, runs: Option<u64>, stopped: bool| SummaryRow {
                workload: "w".into(),
                language: "rust".into(),
                variant: "optimized".into(),
                target: target.into(),
                host: "h".into(),
                engine: "docker".into(),
                runtime: "runc".into(),
                scenario: "fresh".into(),
                metric: "to_main_ms".into(),
                n: 1,
                median: 1.0,
                mean: 1.0,
                ci95_low: 1.0,
                ci95_high: 1.0,
                median_ci95: None,
                until_met: met,
                runs_to_target: runs,
                stopped_early: met.map(|_| stopped),
            };
        let tables = Tables {
            runs: Some(vec![
                run("h", "linux/amd64", true, 1.0, 1.0),
                run("h", "linux/arm64", true, 1.0, 1.0),
                run("h", "wasm", true, 1.0, 1.0),
                run("h", "linux/riscv64", true, 1.0, 1.0),
            ]),
            summary: Some(vec![
                summary("linux/amd64", Some(true), Some(6), true),
                summary("linux/arm64", Some(true), Some(20), false),
                summary("wasm", Some(false), None, false),
                summary("linux/riscv64", None, None, false),
            ]),
            ..Tables::default()
        };
        let cells = cells(&tables, &BTreeMap::new());
        let table = super::super::tables::cells_table(&cells, &BTreeMap::new());
        let target = table.columns.iter().position(|c| c == "target").unwrap();
        let until = table.columns.iter().position(|c| c == "until").unwrap();
        let mut shown: Vec<(String, String)> = table
            .rows
            .iter()
            .filter(|row| row.contains(&"to_main_ms".to_string()))
            .map(|row| (row[target].clone(), row[until].clone()))
            .collect();
        shown.sort();
        assert_eq!(
            shown,
            [
                ("linux/amd64".into(), "met after 6 runs, stopped".into()),
                ("linux/arm64".into(), "met after 20 runs".into()),
                ("linux/riscv64".into(), String::new()),
                ("wasm".into(), "not met".into()),
            ]
        );
    }

    #[test]
    fn a_cell_whose_runs_all_failed_is_kept_as_failed() {
        let tables = Tables {
            runs: Some(vec![
                run("h", "wasm", false, 1.0, 2.0),
                run("h", "linux/amd64", true, 10.0, 5.0),
            ]),
            ..Tables::default()
        };
        let cells = cells(&tables, &BTreeMap::new());
        assert_eq!(cells.len(), 2);
        let wasm = cells.iter().find(|cell| cell.key.is_wasm()).unwrap();
        assert!(wasm.failed());
        assert_eq!(wasm.first_error(), Some("exit code 1"));
        assert!(wasm.stats(Metric::Startup).is_none());
        let native = cells.iter().find(|cell| !cell.key.is_wasm()).unwrap();
        assert!((native.stats(Metric::Startup).unwrap().mean - 15.0).abs() < 1e-9);
        assert_eq!(native.startup_parts(), Some((10.0, 5.0)));
    }
}

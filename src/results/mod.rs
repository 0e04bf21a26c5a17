//! Results as Parquet: `images.parquet`, `hosts.parquet`, `results.parquet`,
//! `summary.parquet` and `effects.parquet` under `out/<experiment>/`. The
//! columns are documented in docs/results.md.

mod effects;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::events::{
    EventSink, HostFacts, ImageRecord, RunRecord, SinkError, StageEvent, StageOutput,
};
use crate::journal::{JournalState, Outcome};
use crate::plan::fingerprint::FingerprintBuilder;
use crate::plan::{Plan, StageWork};
use crate::spec::RunMetric;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("failed to write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {}: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
}

/// One column of a table being written.
pub enum Column {
    Text(Vec<Option<String>>),
    Float(Vec<Option<f64>>),
    Unsigned(Vec<Option<u64>>),
    Unsigned32(Vec<Option<u32>>),
    Signed(Vec<Option<i64>>),
    Signed32(Vec<Option<i32>>),
    Flag(Vec<Option<bool>>),
    /// Milliseconds since the epoch, UTC.
    Timestamp(Vec<Option<i64>>),
}

impl Column {
    fn into_array(self) -> (DataType, ArrayRef) {
        match self {
            Column::Text(values) => (DataType::Utf8, Arc::new(StringArray::from(values))),
            Column::Float(values) => (DataType::Float64, Arc::new(Float64Array::from(values))),
            Column::Unsigned(values) => (DataType::UInt64, Arc::new(UInt64Array::from(values))),
            Column::Unsigned32(values) => (DataType::UInt32, Arc::new(UInt32Array::from(values))),
            Column::Signed(values) => (DataType::Int64, Arc::new(Int64Array::from(values))),
            Column::Signed32(values) => (DataType::Int32, Arc::new(Int32Array::from(values))),
            Column::Flag(values) => (DataType::Boolean, Arc::new(BooleanArray::from(values))),
            Column::Timestamp(values) => (
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC")),
            ),
        }
    }
}

/// Writes a table atomically: a reader never sees half a file, and a failed
/// write leaves the previous file in place.
pub fn write_table(path: &Path, columns: Vec<(&str, bool, Column)>) -> Result<(), ResultsError> {
    let io = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let parquet = |error: &dyn std::fmt::Display| ResultsError::Parquet {
        path: path.to_path_buf(),
        message: error.to_string(),
    };
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays = Vec::with_capacity(columns.len());
    for (name, nullable, column) in columns {
        let (data_type, array) = column.into_array();
        fields.push(Field::new(name, data_type, nullable));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(Arc::clone(&schema), arrays).map_err(|error| parquet(&error))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let temporary = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&temporary).map_err(io)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer =
        ArrowWriter::try_new(file, schema, Some(properties)).map_err(|error| parquet(&error))?;
    writer.write(&batch).map_err(|error| parquet(&error))?;
    let file = writer.into_inner().map_err(|error| parquet(&error))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

fn text<T: ToString>(values: impl Iterator<Item = T>) -> Column {
    Column::Text(values.map(|value| Some(value.to_string())).collect())
}

/// Keeps the results tables equal to what the journal holds: every
/// output of the plan's current fingerprints, whichever apply produced it.
/// It starts from the journal as the apply found it and follows the apply's
/// events, so `--only`, a failed or an interrupted apply never shrink the
/// tables; a re-measured run replaces its row. The plan is the whole
/// experiment's, not the part an apply runs.
pub struct ResultsWriter {
    plan: Arc<Plan>,
    dir: PathBuf,
    journal: JournalState,
    changed: bool,
}

impl ResultsWriter {
    pub fn new(plan: Arc<Plan>, dir: &Path, journal: JournalState) -> Self {
        ResultsWriter {
            plan,
            dir: dir.to_path_buf(),
            journal,
            changed: false,
        }
    }

    /// Every current output, by kind of table.
    fn collect(&self) -> Collected {
        let mut collected = Collected::default();
        for (node, stage) in self.plan.graph.stages() {
            let fingerprint = stage.fingerprint.to_hex();
            let output = match self.journal.outcome(&stage.id) {
                Some(Outcome::Done(done)) if done.fingerprint == fingerprint => &done.output,
                Some(Outcome::Failed {
                    fingerprint: failed,
                    output: Some(output),
                    ..
                }) if *failed == fingerprint => output,
                _ => continue,
            };
            match (&stage.work, output) {
                (StageWork::Push { image }, StageOutput::Image(record)) => {
                    collected.images.insert(*image, record.clone());
                }
                (StageWork::PrepareHost { host }, StageOutput::Host(facts)) => {
                    collected.hosts.insert(*host, facts.clone());
                }
                (StageWork::Run(run), StageOutput::Run(record)) if !run.warmup => {
                    collected.runs.insert(node.index(), record.clone());
                }
                (StageWork::Run(run), StageOutput::NotNeeded { .. }) => {
                    collected.not_needed.insert(run.cell);
                }
                _ => {}
            }
        }
        collected
    }

    /// Writes every table, atomically each.
    pub fn write(&self) -> Result<(), ResultsError> {
        let collected = self.collect();
        if !collected.images.is_empty() {
            write_table(
                &self.dir.join("images.parquet"),
                image_columns(&self.plan, &collected.images),
            )?;
        }
        if !collected.hosts.is_empty() {
            write_table(
                &self.dir.join("hosts.parquet"),
                host_columns(&collected.hosts),
            )?;
        }
        if !collected.runs.is_empty() {
            write_table(
                &self.dir.join("results.parquet"),
                result_columns(&self.plan, &collected.runs, &collected.hosts),
            )?;
            let runs: Vec<(usize, RunRecord)> = collected.runs.into_iter().collect();
            write_summary(
                &self.plan,
                &runs,
                &collected.not_needed,
                &self.dir.join("summary.parquet"),
            )?;
            effects::write_effects(&self.plan, &runs, &self.dir.join("effects.parquet"))?;
        }
        Ok(())
    }

    /// Whether a table that would have rows does not exist.
    fn tables_missing(&self) -> bool {
        // The common case, a no-op apply with every table there, needs no
        // pass over the journal.
        if ["images", "hosts", "results", "summary", "effects"]
            .iter()
            .all(|table| self.dir.join(format!("{table}.parquet")).exists())
        {
            return false;
        }
        let collected = self.collect();
        let missing = |table: &str| !self.dir.join(format!("{table}.parquet")).exists();
        (!collected.images.is_empty() && missing("images"))
            || (!collected.hosts.is_empty() && missing("hosts"))
            || (!collected.runs.is_empty()
                && (missing("results") || missing("summary") || missing("effects")))
    }
}

#[derive(Default)]
struct Collected {
    images: BTreeMap<usize, ImageRecord>,
    hosts: BTreeMap<usize, HostFacts>,
    runs: BTreeMap<usize, RunRecord>,
    /// Cells with runs left out because they met `measure.until`.
    not_needed: BTreeSet<usize>,
}

impl EventSink for ResultsWriter {
    fn on_event(&mut self, event: &StageEvent) -> Result<(), SinkError> {
        if event.body.is_durable() && self.journal.record(event) {
            self.changed = true;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if !self.changed && !self.tables_missing() {
            return Ok(());
        }
        self.write().map_err(|error| SinkError {
            path: self.dir.clone(),
            source: std::io::Error::other(error.to_string()),
        })
    }
}

fn image_columns(
    plan: &Plan,
    images: &BTreeMap<usize, ImageRecord>,
) -> Vec<(&'static str, bool, Column)> {
    let experiment = &plan.experiment;
    let rows: Vec<(&crate::plan::Image, &ImageRecord)> = images
        .iter()
        .map(|(index, record)| (&experiment.images[*index], record))
        .collect();
    vec![
        (
            "experiment",
            false,
            text(rows.iter().map(|_| &experiment.name)),
        ),
        (
            "workload",
            false,
            text(rows.iter().map(|(image, _)| &image.workload)),
        ),
        (
            "language",
            false,
            text(rows.iter().map(|(image, _)| &image.language)),
        ),
        (
            "variant",
            false,
            text(rows.iter().map(|(image, _)| &image.variant)),
        ),
        (
            "target",
            false,
            text(rows.iter().map(|(image, _)| image.target.to_string())),
        ),
        (
            "platform",
            false,
            text(rows.iter().map(|(_, record)| &record.platform)),
        ),
        (
            "image_ref",
            false,
            text(rows.iter().map(|(_, record)| &record.image_ref)),
        ),
        (
            "digest",
            false,
            text(rows.iter().map(|(_, record)| &record.digest)),
        ),
        (
            "host_size_bytes",
            false,
            Column::Unsigned(rows.iter().map(|(_, r)| Some(r.host_size_bytes)).collect()),
        ),
        (
            "oci_size_bytes",
            false,
            Column::Unsigned(rows.iter().map(|(_, r)| Some(r.oci_size_bytes)).collect()),
        ),
    ]
}

fn host_columns(hosts: &BTreeMap<usize, HostFacts>) -> Vec<(&'static str, bool, Column)> {
    let facts: Vec<&HostFacts> = hosts.values().collect();
    vec![
        ("host", false, text(facts.iter().map(|f| &f.host))),
        (
            "architecture",
            false,
            text(facts.iter().map(|f| &f.architecture)),
        ),
        ("cpu_model", false, text(facts.iter().map(|f| &f.cpu_model))),
        (
            "cores",
            false,
            Column::Unsigned32(facts.iter().map(|f| Some(f.cores)).collect()),
        ),
        ("kernel", false, text(facts.iter().map(|f| &f.kernel))),
        (
            "docker_version",
            true,
            Column::Text(facts.iter().map(|f| f.docker_version.clone()).collect()),
        ),
        (
            "containerd_version",
            true,
            Column::Text(facts.iter().map(|f| f.containerd_version.clone()).collect()),
        ),
        (
            "shims",
            false,
            Column::Text(facts.iter().map(|f| Some(f.shims.join(","))).collect()),
        ),
        (
            "shim_versions",
            false,
            Column::Text(
                facts
                    .iter()
                    .map(|f| Some(f.shim_versions.join(",")))
                    .collect(),
            ),
        ),
        (
            "shim_machines",
            false,
            Column::Text(
                facts
                    .iter()
                    .map(|f| Some(f.shim_machines.join(",")))
                    .collect(),
            ),
        ),
        (
            "wasm_machine",
            true,
            Column::Text(facts.iter().map(|f| f.wasm_machine.clone()).collect()),
        ),
        (
            "agent_target",
            false,
            text(facts.iter().map(|f| &f.agent_target)),
        ),
        (
            "emulated",
            false,
            Column::Flag(facts.iter().map(|f| Some(f.emulated)).collect()),
        ),
        (
            "emulated_cpu",
            true,
            Column::Text(facts.iter().map(|f| f.emulated_cpu.clone()).collect()),
        ),
    ]
}

/// One row per measured run, in plan order.
fn result_columns(
    plan: &Plan,
    runs: &BTreeMap<usize, RunRecord>,
    hosts: &BTreeMap<usize, HostFacts>,
) -> Vec<(&'static str, bool, Column)> {
    let experiment = &plan.experiment;
    let rows: Vec<(&crate::plan::RunSubject, &RunRecord)> = runs
        .iter()
        .filter_map(|(node, record)| {
            match &plan
                .graph
                .stage(petgraph::graph::NodeIndex::new(*node))
                .work
            {
                StageWork::Run(run) => Some((run, record)),
                _ => None,
            }
        })
        .collect();
    let cell = |run: &crate::plan::RunSubject| &experiment.cells[run.cell];
    let image = |run: &crate::plan::RunSubject| &experiment.images[cell(run).image];
    let phase = |ms: fn(&RunRecord) -> Option<f64>| {
        Column::Float(rows.iter().map(|(_, record)| ms(record)).collect())
    };
    vec![
        (
            "experiment",
            false,
            text(rows.iter().map(|_| &experiment.name)),
        ),
        (
            "workload",
            false,
            text(rows.iter().map(|(run, _)| &image(run).workload)),
        ),
        (
            "language",
            false,
            text(rows.iter().map(|(run, _)| &image(run).language)),
        ),
        (
            "variant",
            false,
            text(rows.iter().map(|(run, _)| &image(run).variant)),
        ),
        (
            "target",
            false,
            text(rows.iter().map(|(run, _)| image(run).target.to_string())),
        ),
        (
            "platform",
            false,
            text(rows.iter().map(|(run, _)| image(run).target.oci_platform())),
        ),
        (
            "host",
            false,
            text(
                rows.iter()
                    .map(|(run, _)| &experiment.hosts[cell(run).host].name),
            ),
        ),
        (
            "engine",
            false,
            text(rows.iter().map(|(run, _)| cell(run).engine.as_str())),
        ),
        (
            "runtime",
            false,
            text(rows.iter().map(|(run, _)| &cell(run).runtime)),
        ),
        (
            // So engine versions can be compared like any other dimension.
            "engine_version",
            true,
            Column::Text(
                rows.iter()
                    .map(|(run, _)| {
                        let facts = hosts.get(&cell(run).host)?;
                        match cell(run).engine {
                            crate::spec::Engine::Docker => facts.docker_version.clone(),
                            crate::spec::Engine::Containerd => facts.containerd_version.clone(),
                        }
                    })
                    .collect(),
            ),
        ),
        (
            "scenario",
            false,
            text(rows.iter().map(|(run, _)| cell(run).scenario.as_str())),
        ),
        (
            "iteration",
            false,
            Column::Signed32(
                rows.iter()
                    .map(|(run, _)| i32::try_from(run.iteration).ok())
                    .collect(),
            ),
        ),
        (
            "sequence",
            false,
            Column::Unsigned32(rows.iter().map(|(run, _)| Some(run.sequence)).collect()),
        ),
        (
            "image_ref",
            false,
            text(rows.iter().map(|(_, record)| &record.image_ref)),
        ),
        (
            "image_digest",
            false,
            text(rows.iter().map(|(_, record)| &record.image_digest)),
        ),
        (
            "pull_ms",
            true,
            Column::Float(rows.iter().map(|(_, r)| r.pull_ms).collect()),
        ),
        (
            "pulled_bytes",
            true,
            Column::Unsigned(rows.iter().map(|(_, r)| r.pulled_bytes).collect()),
        ),
        ("create_ms", true, phase(|r| r.create_ms)),
        ("start_ms", true, phase(|r| r.start_ms)),
        ("to_main_ms", true, phase(|r| r.to_main_ms)),
        ("exit_ms", true, phase(|r| r.exit_ms)),
        ("remove_ms", true, phase(|r| r.remove_ms)),
        ("run_ms", true, phase(|r| r.run_ms)),
        (
            "exit_code",
            true,
            Column::Signed(rows.iter().map(|(_, r)| r.exit_code).collect()),
        ),
        (
            "ok",
            false,
            Column::Flag(rows.iter().map(|(_, r)| Some(r.ok)).collect()),
        ),
        (
            "started_at",
            true,
            Column::Timestamp(
                rows.iter()
                    .map(|(_, r)| r.started_at_ms.and_then(|ms| i64::try_from(ms).ok()))
                    .collect(),
            ),
        ),
        (
            "error",
            true,
            Column::Text(rows.iter().map(|(_, r)| r.error.clone()).collect()),
        ),
        (
            "stderr_tail",
            true,
            Column::Text(rows.iter().map(|(_, r)| r.stderr_tail.clone()).collect()),
        ),
    ]
}

/// The measured runs that were ok: cell, node and record, in plan order.
fn ok_measured_runs<'a>(
    plan: &'a Plan,
    runs: &'a [(usize, RunRecord)],
) -> impl Iterator<Item = (usize, usize, &'a RunRecord)> {
    runs.iter().filter_map(|(node, record)| {
        match &plan
            .graph
            .stage(petgraph::graph::NodeIndex::new(*node))
            .work
        {
            StageWork::Run(run) if !run.warmup && record.ok => Some((run.cell, *node, record)),
            _ => None,
        }
    })
}

/// The measured runs that were ok, by cell.
fn ok_runs_by_cell<'a>(
    plan: &'a Plan,
    runs: &'a [(usize, RunRecord)],
) -> BTreeMap<usize, Vec<&'a RunRecord>> {
    let mut by_cell: BTreeMap<usize, Vec<&RunRecord>> = BTreeMap::new();
    for (cell, _, record) in ok_measured_runs(plan, runs) {
        by_cell.entry(cell).or_default().push(record);
    }
    by_cell
}

/// Each summarised metric, by column name, with its values over `records`.
fn metric_values(records: &[&RunRecord]) -> [(&'static str, Vec<f64>); 7] {
    RunMetric::ALL.map(|metric| {
        let values = records
            .iter()
            .filter_map(|record| record.metric(metric))
            .collect();
        (metric.as_str(), values)
    })
}

/// How a cell fared against `measure.until`.
#[derive(Debug, Clone, Copy, Default)]
struct UntilOutcome {
    /// Ok runs, in the order they started, after which the target was first met.
    runs_to_target: Option<u64>,
    /// Some of its planned runs were left out as not needed.
    stopped_early: bool,
}

/// Per cell, its [`UntilOutcome`]; empty without `measure.until`.
fn until_outcomes(
    plan: &Plan,
    runs: &[(usize, RunRecord)],
    not_needed: &BTreeSet<usize>,
) -> BTreeMap<usize, UntilOutcome> {
    let Some(until) = plan.experiment.measure.until else {
        return BTreeMap::new();
    };
    // The walker looked at the runs as they finished; their start on the
    // host's clock is that order, the plan's order breaks ties.
    let mut started: BTreeMap<usize, Vec<(u64, usize, f64)>> = BTreeMap::new();
    for (cell, node, record) in ok_measured_runs(plan, runs) {
        if let Some(value) = record.metric(until.metric) {
            started.entry(cell).or_default().push((
                record.started_at_ms.unwrap_or(u64::MAX),
                node,
                value,
            ));
        }
    }
    started
        .into_iter()
        .map(|(cell, mut values)| {
            values.sort_by_key(|&(at, node, _)| (at, node));
            let values: Vec<f64> = values.into_iter().map(|(_, _, value)| value).collect();
            let outcome = UntilOutcome {
                runs_to_target: until.runs_to_target(&values).map(|runs| runs as u64),
                stopped_early: not_needed.contains(&cell),
            };
            (cell, outcome)
        })
        .collect()
}

/// The seed of one bootstrap: `measure.seed`, the statistic, the metric and
/// the cells resampled, by name rather than index, so a cell keeps its
/// intervals when others are added to the experiment.
fn bootstrap_seed(plan: &Plan, statistic: &str, metric: &str, cells: &[usize]) -> u64 {
    let experiment = &plan.experiment;
    let mut builder = FingerprintBuilder::new("bootstrap");
    builder
        .bytes("measure.seed", &experiment.measure.seed.to_le_bytes())
        .str("statistic", statistic)
        .str("metric", metric);
    for &index in cells {
        let cell = &experiment.cells[index];
        let image = &experiment.images[cell.image];
        builder
            .str("workload", &image.workload)
            .str("language", &image.language)
            .str("variant", &image.variant)
            .str("target", &image.target.to_string())
            .str("host", &experiment.hosts[cell.host].name)
            .str("engine", cell.engine.as_str())
            .str("runtime", &cell.runtime)
            .str("scenario", cell.scenario.as_str());
    }
    builder.finish().to_u64()
}

/// One row of summary.parquet.
struct SummaryRow {
    cell: usize,
    metric: &'static str,
    summary: stats::Summary,
    median_ci95: Option<stats::Interval>,
    bootstrap_seed: u64,
}

/// Statistics per cell and metric, from the measured runs that were ok.
pub fn write_summary(
    plan: &Plan,
    runs: &[(usize, RunRecord)],
    not_needed: &BTreeSet<usize>,
    path: &Path,
) -> Result<usize, ResultsError> {
    let until = until_outcomes(plan, runs, not_needed);
    let mut rows: Vec<SummaryRow> = Vec::new();
    for (cell, records) in &ok_runs_by_cell(plan, runs) {
        for (metric, values) in metric_values(records) {
            if let Some(summary) = stats::summarize(&values) {
                let seed = bootstrap_seed(plan, "median", metric, &[*cell]);
                rows.push(SummaryRow {
                    cell: *cell,
                    metric,
                    summary,
                    median_ci95: stats::bootstrap_median(&values, stats::BOOTSTRAP_RESAMPLES, seed),
                    bootstrap_seed: seed,
                });
            }
        }
    }
    let float = |value: fn(&SummaryRow) -> f64| {
        Column::Float(rows.iter().map(|row| Some(value(row))).collect())
    };
    let cells: Vec<usize> = rows.iter().map(|row| row.cell).collect();
    let mut columns = cell_columns(plan, &cells, CellColumns::All);
    columns.extend([
        ("metric", false, text(rows.iter().map(|r| r.metric))),
        (
            "n",
            false,
            Column::Unsigned(rows.iter().map(|r| Some(r.summary.n as u64)).collect()),
        ),
        ("median", false, float(|r| r.summary.median)),
        ("mean", false, float(|r| r.summary.mean)),
        ("std_dev", false, float(|r| r.summary.std_dev)),
        ("ci95_low", false, float(|r| r.summary.ci95_low)),
        ("ci95_high", false, float(|r| r.summary.ci95_high)),
        (
            "median_ci95_low",
            true,
            Column::Float(rows.iter().map(|r| r.median_ci95.map(|i| i.0)).collect()),
        ),
        (
            "median_ci95_high",
            true,
            Column::Float(rows.iter().map(|r| r.median_ci95.map(|i| i.1)).collect()),
        ),
    ]);
    columns.extend(bootstrap_columns(rows.iter().map(|r| r.bootstrap_seed)));
    // Null without `measure.until`; the same on every row of a cell.
    let outcome = |row: &SummaryRow| {
        plan.experiment
            .measure
            .until
            .map(|_| until.get(&row.cell).copied().unwrap_or_default())
    };
    columns.extend([
        (
            "until_met",
            true,
            Column::Flag(
                rows.iter()
                    .map(|r| outcome(r).map(|o| o.runs_to_target.is_some()))
                    .collect(),
            ),
        ),
        (
            "runs_to_target",
            true,
            Column::Unsigned(
                rows.iter()
                    .map(|r| outcome(r).and_then(|o| o.runs_to_target))
                    .collect(),
            ),
        ),
        (
            "stopped_early",
            true,
            Column::Flag(
                rows.iter()
                    .map(|r| outcome(r).map(|o| o.stopped_early))
                    .collect(),
            ),
        ),
    ]);
    write_table(path, columns)?;
    Ok(rows.len())
}

/// `bootstrap_resamples` and `bootstrap_seed`, for rows with these seeds.
fn bootstrap_columns(seeds: impl Iterator<Item = u64>) -> [(&'static str, bool, Column); 2] {
    let seeds: Vec<Option<u64>> = seeds.map(Some).collect();
    [
        (
            "bootstrap_resamples",
            false,
            Column::Unsigned(vec![Some(stats::BOOTSTRAP_RESAMPLES as u64); seeds.len()]),
        ),
        ("bootstrap_seed", false, Column::Unsigned(seeds)),
    ]
}

/// Which of a cell's naming columns a table has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CellColumns {
    All,
    /// All but `target` and `runtime`: what the two cells of a native/wasm
    /// pair share.
    Shared,
}

/// The columns that name each row's cell, `experiment` to `scenario`.
fn cell_columns(
    plan: &Plan,
    cells: &[usize],
    which: CellColumns,
) -> Vec<(&'static str, bool, Column)> {
    let experiment = &plan.experiment;
    let cell = |index: &usize| &experiment.cells[*index];
    let image = |index: &usize| &experiment.images[cell(index).image];
    let mut columns = vec![
        (
            "experiment",
            false,
            text(cells.iter().map(|_| &experiment.name)),
        ),
        (
            "workload",
            false,
            text(cells.iter().map(|c| &image(c).workload)),
        ),
        (
            "language",
            false,
            text(cells.iter().map(|c| &image(c).language)),
        ),
        (
            "variant",
            false,
            text(cells.iter().map(|c| &image(c).variant)),
        ),
        (
            "target",
            false,
            text(cells.iter().map(|c| image(c).target.to_string())),
        ),
        (
            "host",
            false,
            text(cells.iter().map(|c| &experiment.hosts[cell(c).host].name)),
        ),
        (
            "engine",
            false,
            text(cells.iter().map(|c| cell(c).engine.as_str())),
        ),
        (
            "runtime",
            false,
            text(cells.iter().map(|c| &cell(c).runtime)),
        ),
        (
            "scenario",
            false,
            text(cells.iter().map(|c| cell(c).scenario.as_str())),
        ),
    ];
    if which == CellColumns::Shared {
        columns.retain(|(name, _, _)| !matches!(*name, "target" | "runtime"));
    }
    columns
}

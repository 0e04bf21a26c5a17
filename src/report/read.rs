//! Reads the Parquet tables of an experiment's out folder (docs/results.md)
//! into plain rows. Columns are found by name and cast to the type the
//! report needs, so a table written by an older or newer writer still reads
//! as long as the columns it uses are there; optional ones may be absent.

use std::path::Path;

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::ReportError;

/// One row of `images.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImageRow {
    pub workload: String,
    pub language: String,
    pub variant: String,
    pub target: String,
    pub platform: String,
    pub image_ref: String,
    pub digest: String,
    pub host_size_bytes: u64,
    pub oci_size_bytes: u64,
}

/// One row of `results.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunRow {
    pub workload: String,
    pub language: String,
    pub variant: String,
    pub target: String,
    pub platform: String,
    pub host: String,
    pub engine: String,
    pub runtime: String,
    pub scenario: String,
    pub iteration: i64,
    pub sequence: Option<u64>,
    pub image_digest: Option<String>,
    pub pull_ms: Option<f64>,
    pub to_main_ms: Option<f64>,
    pub run_ms: Option<f64>,
    pub ok: bool,
    pub started_at_ms: Option<i64>,
    pub error: Option<String>,
    /// The last line the program wrote to stderr (optional column).
    pub stderr_tail: Option<String>,
}

/// One row of `summary.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SummaryRow {
    pub workload: String,
    pub language: String,
    pub variant: String,
    pub target: String,
    pub host: String,
    pub engine: String,
    pub runtime: String,
    pub scenario: String,
    pub metric: String,
    pub n: u64,
    pub median: f64,
    pub mean: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
    /// The median's bootstrap interval; absent from older tables.
    pub median_ci95: Option<(f64, f64)>,
    /// Whether the cell met `measure.until`; `None` without it.
    pub until_met: Option<bool>,
    pub runs_to_target: Option<u64>,
    pub stopped_early: Option<bool>,
}

/// One row of `effects.parquet`: one metric of a native/wasm pair of cells.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EffectRow {
    pub workload: String,
    pub language: String,
    pub variant: String,
    pub host: String,
    pub engine: String,
    pub scenario: String,
    pub metric: String,
    pub native_target: String,
    pub wasm_target: String,
    pub native_n: u64,
    pub wasm_n: u64,
    pub native_median: f64,
    pub wasm_median: f64,
    pub hl_shift: f64,
    pub hl_shift_ci95: Option<(f64, f64)>,
    pub cliffs_delta: f64,
    pub cliffs_delta_ci95: Option<(f64, f64)>,
}

/// `hosts.parquet`, every column kept as text for the provenance table,
/// plus the few the report reasons about.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HostTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl HostTable {
    pub fn value(&self, row: usize, column: &str) -> Option<&str> {
        let index = self.columns.iter().position(|name| name == column)?;
        self.rows.get(row)?.get(index)?.as_deref()
    }

    pub fn has_column(&self, column: &str) -> bool {
        self.columns.iter().any(|name| name == column)
    }
}

/// The tables found in one out folder; a missing file is `None`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tables {
    pub images: Option<Vec<ImageRow>>,
    pub hosts: Option<HostTable>,
    pub runs: Option<Vec<RunRow>>,
    pub summary: Option<Vec<SummaryRow>>,
    pub effects: Option<Vec<EffectRow>>,
}

pub(crate) const TABLE_NAMES: [&str; 5] = [
    "images.parquet",
    "hosts.parquet",
    "results.parquet",
    "summary.parquet",
    "effects.parquet",
];

/// Reads every table there is in `dir`. No folder, or none of the four
/// tables in it, is invalid input.
pub(crate) fn read_tables(dir: &Path) -> Result<Tables, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::NoOutDir {
            path: dir.to_path_buf(),
        });
    }
    if !TABLE_NAMES.iter().any(|name| dir.join(name).is_file()) {
        return Err(ReportError::NoTables {
            path: dir.to_path_buf(),
        });
    }
    let table = |name: &str| {
        let path = dir.join(name);
        if path.is_file() {
            read_batches(&path).map(|batches| Some((path, batches)))
        } else {
            Ok(None)
        }
    };
    let images = table("images.parquet")?
        .map(|(path, batches)| image_rows(&path, &batches))
        .transpose()?;
    let hosts = table("hosts.parquet")?
        .map(|(path, batches)| host_table(&path, &batches))
        .transpose()?;
    let runs = table("results.parquet")?
        .map(|(path, batches)| run_rows(&path, &batches))
        .transpose()?;
    let summary = table("summary.parquet")?
        .map(|(path, batches)| summary_rows(&path, &batches))
        .transpose()?;
    let effects = table("effects.parquet")?
        .map(|(path, batches)| effect_rows(&path, &batches))
        .transpose()?;
    Ok(Tables {
        images,
        hosts,
        runs,
        summary,
        effects,
    })
}

fn read_batches(path: &Path) -> Result<Vec<RecordBatch>, ReportError> {
    let invalid = |message: String| ReportError::BadTable {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(ParquetRecordBatchReaderBuilder::build)
        .map_err(|error| invalid(format!("not a readable parquet file: {error}")))?;
    reader
        .collect::<Result<Vec<RecordBatch>, _>>()
        .map_err(|error| invalid(format!("not a readable parquet file: {error}")))
}

/// The columns of one batch, cast to what the report reads.
struct Columns<'a> {
    path: &'a Path,
    batch: &'a RecordBatch,
}

impl Columns<'_> {
    fn column(&self, name: &str, to: &DataType) -> Result<Option<ArrayRef>, ReportError> {
        let Some(column) = self.batch.column_by_name(name) else {
            return Ok(None);
        };
        arrow::compute::cast(column, to)
            .map(Some)
            .map_err(|error| ReportError::BadTable {
                path: self.path.to_path_buf(),
                message: format!("column `{name}` cannot be read as {to}: {error}"),
            })
    }

    fn missing(&self, name: &str) -> ReportError {
        ReportError::BadTable {
            path: self.path.to_path_buf(),
            message: format!("no column `{name}` (docs/results.md lists the columns)"),
        }
    }

    fn text(&self, name: &str) -> Result<Vec<Option<String>>, ReportError> {
        Ok(match self.column(name, &DataType::Utf8)? {
            Some(array) => array
                .as_string::<i32>()
                .iter()
                .map(|value| value.map(str::to_string))
                .collect(),
            None => vec![None; self.batch.num_rows()],
        })
    }

    fn required_text(&self, name: &str) -> Result<Vec<String>, ReportError> {
        if self.batch.column_by_name(name).is_none() {
            return Err(self.missing(name));
        }
        Ok(self
            .text(name)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    fn float(&self, name: &str) -> Result<Vec<Option<f64>>, ReportError> {
        Ok(match self.column(name, &DataType::Float64)? {
            Some(array) => array.as_primitive::<Float64Type>().iter().collect(),
            None => vec![None; self.batch.num_rows()],
        })
    }

    fn required_float(&self, name: &str) -> Result<Vec<f64>, ReportError> {
        if self.batch.column_by_name(name).is_none() {
            return Err(self.missing(name));
        }
        Ok(self
            .float(name)?
            .into_iter()
            .map(|value| value.unwrap_or(f64::NAN))
            .collect())
    }

    /// An interval from its two optional columns: `None` where either is null.
    fn interval(&self, low: &str, high: &str) -> Result<Vec<Option<(f64, f64)>>, ReportError> {
        let (low, high) = (self.float(low)?, self.float(high)?);
        Ok(low
            .into_iter()
            .zip(high)
            .map(|(low, high)| Some((low?, high?)))
            .collect())
    }

    fn required_unsigned(&self, name: &str) -> Result<Vec<u64>, ReportError> {
        if self.batch.column_by_name(name).is_none() {
            return Err(self.missing(name));
        }
        Ok(self
            .unsigned(name)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    fn unsigned(&self, name: &str) -> Result<Vec<Option<u64>>, ReportError> {
        Ok(match self.column(name, &DataType::UInt64)? {
            Some(array) => array.as_primitive::<UInt64Type>().iter().collect(),
            None => vec![None; self.batch.num_rows()],
        })
    }

    fn signed(&self, name: &str) -> Result<Vec<Option<i64>>, ReportError> {
        // A timestamp casts to its count of units (ms here) since the epoch.
        let Some(column) = self.batch.column_by_name(name) else {
            return Ok(vec![None; self.batch.num_rows()]);
        };
        let array = arrow::compute::cast(column, &DataType::Int64).map_err(|error| {
            ReportError::BadTable {
                path: self.path.to_path_buf(),
                message: format!("column `{name}` cannot be read as an integer: {error}"),
            }
        })?;
        Ok(array.as_primitive::<Int64Type>().iter().collect())
    }

    fn flag(&self, name: &str) -> Result<Vec<Option<bool>>, ReportError> {
        Ok(match self.column(name, &DataType::Boolean)? {
            Some(array) => array.as_boolean().iter().collect(),
            None => vec![None; self.batch.num_rows()],
        })
    }
}

fn image_rows(path: &Path, batches: &[RecordBatch]) -> Result<Vec<ImageRow>, ReportError> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns = Columns { path, batch };
        let workload = columns.required_text("workload")?;
        let language = columns.required_text("language")?;
        let variant = columns.required_text("variant")?;
        let target = columns.required_text("target")?;
        let platform = columns.text("platform")?;
        let image_ref = columns.text("image_ref")?;
        let digest = columns.text("digest")?;
        for name in ["host_size_bytes", "oci_size_bytes"] {
            if batch.column_by_name(name).is_none() {
                return Err(columns.missing(name));
            }
        }
        let host = columns.unsigned("host_size_bytes")?;
        let oci = columns.unsigned("oci_size_bytes")?;
        for row in 0..batch.num_rows() {
            rows.push(ImageRow {
                workload: workload[row].clone(),
                language: language[row].clone(),
                variant: variant[row].clone(),
                target: target[row].clone(),
                platform: platform[row].clone().unwrap_or_default(),
                image_ref: image_ref[row].clone().unwrap_or_default(),
                digest: digest[row].clone().unwrap_or_default(),
                host_size_bytes: host[row].unwrap_or(0),
                oci_size_bytes: oci[row].unwrap_or(0),
            });
        }
    }
    Ok(rows)
}

fn run_rows(path: &Path, batches: &[RecordBatch]) -> Result<Vec<RunRow>, ReportError> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns = Columns { path, batch };
        let workload = columns.required_text("workload")?;
        let language = columns.required_text("language")?;
        let variant = columns.required_text("variant")?;
        let target = columns.required_text("target")?;
        let platform = columns.text("platform")?;
        let host = columns.required_text("host")?;
        let engine = columns.required_text("engine")?;
        let runtime = columns.text("runtime")?;
        let scenario = columns.required_text("scenario")?;
        let iteration = columns.signed("iteration")?;
        let sequence = columns.unsigned("sequence")?;
        let image_digest = columns.text("image_digest")?;
        let pull = columns.float("pull_ms")?;
        let to_main = columns.float("to_main_ms")?;
        let run = columns.float("run_ms")?;
        if batch.column_by_name("ok").is_none() {
            return Err(columns.missing("ok"));
        }
        let ok = columns.flag("ok")?;
        let started_at = columns.signed("started_at")?;
        let error = columns.text("error")?;
        let stderr_tail = columns.text("stderr_tail")?;
        for row in 0..batch.num_rows() {
            rows.push(RunRow {
                workload: workload[row].clone(),
                language: language[row].clone(),
                variant: variant[row].clone(),
                target: target[row].clone(),
                platform: platform[row].clone().unwrap_or_default(),
                host: host[row].clone(),
                engine: engine[row].clone(),
                runtime: runtime[row].clone().unwrap_or_default(),
                scenario: scenario[row].clone(),
                iteration: iteration[row].unwrap_or(0),
                sequence: sequence[row],
                image_digest: image_digest[row].clone(),
                pull_ms: pull[row].filter(|value| value.is_finite()),
                to_main_ms: to_main[row].filter(|value| value.is_finite()),
                run_ms: run[row].filter(|value| value.is_finite()),
                ok: ok[row].unwrap_or(false),
                started_at_ms: started_at[row],
                error: error[row].clone(),
                stderr_tail: stderr_tail[row].clone().filter(|line| !line.is_empty()),
            });
        }
    }
    Ok(rows)
}

fn summary_rows(path: &Path, batches: &[RecordBatch]) -> Result<Vec<SummaryRow>, ReportError> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns = Columns { path, batch };
        let workload = columns.required_text("workload")?;
        let language = columns.required_text("language")?;
        let variant = columns.required_text("variant")?;
        let target = columns.required_text("target")?;
        let host = columns.required_text("host")?;
        let engine = columns.required_text("engine")?;
        let runtime = columns.text("runtime")?;
        let scenario = columns.required_text("scenario")?;
        let metric = columns.required_text("metric")?;
        let n = columns.required_unsigned("n")?;
        let median = columns.required_float("median")?;
        let mean = columns.required_float("mean")?;
        let low = columns.required_float("ci95_low")?;
        let high = columns.required_float("ci95_high")?;
        let median_ci95 = columns.interval("median_ci95_low", "median_ci95_high")?;
        let until_met = columns.flag("until_met")?;
        let runs_to_target = columns.unsigned("runs_to_target")?;
        let stopped_early = columns.flag("stopped_early")?;
        for row in 0..batch.num_rows() {
            rows.push(SummaryRow {
                workload: workload[row].clone(),
                language: language[row].clone(),
                variant: variant[row].clone(),
                target: target[row].clone(),
                host: host[row].clone(),
                engine: engine[row].clone(),
                runtime: runtime[row].clone().unwrap_or_default(),
                scenario: scenario[row].clone(),
                metric: metric[row].clone(),
                n: n[row],
                median: median[row],
                mean: mean[row],
                ci95_low: low[row],
                ci95_high: high[row],
                median_ci95: median_ci95[row],
                until_met: until_met[row],
                runs_to_target: runs_to_target[row],
                stopped_early: stopped_early[row],
            });
        }
    }
    Ok(rows)
}

fn effect_rows(path: &Path, batches: &[RecordBatch]) -> Result<Vec<EffectRow>, ReportError> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns = Columns { path, batch };
        let text = |name| columns.required_text(name);
        let (workload, language, variant) =
            (text("workload")?, text("language")?, text("variant")?);
        let (host, engine, scenario) = (text("host")?, text("engine")?, text("scenario")?);
        let (metric, native_target, wasm_target) = (
            text("metric")?,
            text("native_target")?,
            text("wasm_target")?,
        );
        let native_n = columns.required_unsigned("native_n")?;
        let wasm_n = columns.required_unsigned("wasm_n")?;
        let native_median = columns.required_float("native_median")?;
        let wasm_median = columns.required_float("wasm_median")?;
        let hl_shift = columns.required_float("hl_shift")?;
        let hl_shift_ci95 = columns.interval("hl_shift_ci95_low", "hl_shift_ci95_high")?;
        let cliffs_delta = columns.required_float("cliffs_delta")?;
        let cliffs_delta_ci95 =
            columns.interval("cliffs_delta_ci95_low", "cliffs_delta_ci95_high")?;
        for row in 0..batch.num_rows() {
            rows.push(EffectRow {
                workload: workload[row].clone(),
                language: language[row].clone(),
                variant: variant[row].clone(),
                host: host[row].clone(),
                engine: engine[row].clone(),
                scenario: scenario[row].clone(),
                metric: metric[row].clone(),
                native_target: native_target[row].clone(),
                wasm_target: wasm_target[row].clone(),
                native_n: native_n[row],
                wasm_n: wasm_n[row],
                native_median: native_median[row],
                wasm_median: wasm_median[row],
                hl_shift: hl_shift[row],
                hl_shift_ci95: hl_shift_ci95[row],
                cliffs_delta: cliffs_delta[row],
                cliffs_delta_ci95: cliffs_delta_ci95[row],
            });
        }
    }
    Ok(rows)
}

fn host_table(path: &Path, batches: &[RecordBatch]) -> Result<HostTable, ReportError> {
    let mut table = HostTable::default();
    for batch in batches {
        let schema = batch.schema();
        if table.columns.is_empty() {
            table.columns = schema
                .fields()
                .iter()
                .map(|field| field.name().clone())
                .collect();
        }
        let columns = Columns { path, batch };
        if batch.column_by_name("host").is_none() {
            return Err(columns.missing("host"));
        }
        let mut values: Vec<Vec<Option<String>>> = Vec::new();
        for name in &table.columns {
            values.push(columns.text(name)?);
        }
        for row in 0..batch.num_rows() {
            table
                .rows
                .push(values.iter().map(|column| column[row].clone()).collect());
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_and_an_empty_one_are_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            read_tables(&missing),
            Err(ReportError::NoOutDir { path }) if path == missing
        ));
        assert!(matches!(
            read_tables(dir.path()),
            Err(ReportError::NoTables { .. })
        ));
    }

    #[test]
    fn a_table_that_is_not_parquet_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("images.parquet"), b"not parquet").unwrap();
        let error = read_tables(dir.path()).unwrap_err();
        assert!(error.is_invalid_input());
        assert!(error.to_string().contains("images.parquet"), "{error}");
    }
}

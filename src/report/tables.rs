//! The report's tables, each written as CSV and Markdown and shown in the
//! page: the paper's Tables 2 and 3 (host against registry size with the
//! reduction), Table 4 (sizes across architectures), every cell's
//! statistics, the failed runs, and the provenance of hosts and images.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::cells::{Cell, HostInfo, Metric, is_wasm_target};
use super::read::{EffectRow, HostTable, ImageRow};
use super::svg::escape;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    /// File name without extension.
    pub name: String,
    pub title: String,
    /// What the table shows and how its numbers are computed.
    pub note: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// RFC 4180: fields with a comma, quote or line break are quoted.
    pub fn to_csv(&self) -> String {
        let field = |text: &str| {
            if text.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", text.replace('"', "\"\""))
            } else {
                text.to_string()
            }
        };
        let mut out = String::new();
        for row in std::iter::once(&self.columns).chain(&self.rows) {
            let fields: Vec<String> = row.iter().map(|text| field(text)).collect();
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let cell = |text: &str| text.replace('|', "\\|").replace('\n', " ");
        let mut out = format!("# {}\n\n{}\n\n", self.title, self.note);
        let header: Vec<String> = self.columns.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(
            out,
            "|{}|",
            self.columns
                .iter()
                .map(|_| " --- ")
                .collect::<Vec<_>>()
                .join("|")
        );
        for row in &self.rows {
            let fields: Vec<String> = row.iter().map(|text| cell(text)).collect();
            let _ = writeln!(out, "| {} |", fields.join(" | "));
        }
        out
    }

    /// Rows whose first cell says `failed` are marked for the page's style.
    pub fn to_html(&self) -> String {
        let mut out = String::from("<table>\n<thead><tr>");
        for column in &self.columns {
            let _ = write!(out, "<th>{}</th>", escape(column));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in &self.rows {
            let failed = row.iter().any(|text| text == "failed");
            let emulated = row.iter().any(|text| text == "emulated");
            let class = match (failed, emulated) {
                (true, _) => r#" class="failed""#,
                (false, true) => r#" class="emulated""#,
                _ => "",
            };
            let _ = write!(out, "<tr{class}>");
            for text in row {
                let _ = write!(out, "<td>{}</td>", escape(text));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        out
    }
}

/// The paper's Equation 1: how much smaller the compressed registry image
/// is than the image on the host, in percent.
pub(crate) fn reduction_percent(host_bytes: u64, oci_bytes: u64) -> Option<f64> {
    (host_bytes > 0).then(|| (1.0 - oci_bytes as f64 / host_bytes as f64) * 100.0)
}

fn target_kind(target: &str) -> &'static str {
    if is_wasm_target(target) {
        "wasm"
    } else {
        "native"
    }
}

/// Images in a stable order: workload, variant, language, native targets
/// by name, then wasm.
fn sorted_images(images: &[ImageRow]) -> Vec<&ImageRow> {
    let mut sorted: Vec<&ImageRow> = images.iter().collect();
    sorted.sort_by(|a, b| {
        (
            &a.workload,
            &a.variant,
            &a.language,
            is_wasm_target(&a.target),
            &a.target,
        )
            .cmp(&(
                &b.workload,
                &b.variant,
                &b.language,
                is_wasm_target(&b.target),
                &b.target,
            ))
    });
    sorted
}

/// Tables 2 and 3: host size against OCI (registry) size per image.
pub(crate) fn reduction_table(images: &[ImageRow]) -> Table {
    let rows = sorted_images(images)
        .into_iter()
        .map(|image| {
            vec![
                image.workload.clone(),
                image.variant.clone(),
                image.language.clone(),
                image.target.clone(),
                target_kind(&image.target).to_string(),
                format!("{:.2}", image.host_size_bytes as f64 / 1e3),
                format!("{:.2}", image.oci_size_bytes as f64 / 1e3),
                reduction_percent(image.host_size_bytes, image.oci_size_bytes)
                    .map_or_else(|| "n/a".to_string(), |value| format!("{value:.1}")),
            ]
        })
        .collect();
    Table {
        name: "size-reduction".into(),
        title: "Host size against OCI registry size (the paper's Tables 2 and 3)".into(),
        note: "Host size: the image's files uncompressed, as the building engine reports them; \
               OCI size: config plus layers as stored in the registry, compressed. 1 KB = 1,000 \
               bytes. Reduction = (1 − OCI size / host size) × 100, the paper's Equation 1."
            .into(),
        columns: [
            "workload",
            "variant",
            "language",
            "target",
            "kind",
            "host size (KB)",
            "OCI size (KB)",
            "reduction (%)",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Table 4: each image's size across architectures, with wasm beside the
/// native targets and each as a share of the largest native image.
pub(crate) fn architecture_table(images: &[ImageRow]) -> Table {
    let mut largest_native: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for image in images.iter().filter(|image| !is_wasm_target(&image.target)) {
        let entry = largest_native
            .entry((&image.workload, &image.variant, &image.language))
            .or_default();
        *entry = (*entry).max(image.host_size_bytes);
    }
    let largest = images
        .iter()
        .map(|image| image.host_size_bytes.max(image.oci_size_bytes))
        .max()
        .unwrap_or(0);
    // The paper gives Table 4 in MB; tiny images read better in KB.
    let (unit, divisor) = if largest >= 1_000_000 {
        ("MB", 1e6)
    } else {
        ("KB", 1e3)
    };
    let rows = sorted_images(images)
        .into_iter()
        .map(|image| {
            let share = largest_native
                .get(&(
                    image.workload.as_str(),
                    image.variant.as_str(),
                    image.language.as_str(),
                ))
                .filter(|largest| **largest > 0)
                .map_or_else(
                    || "n/a".to_string(),
                    |largest| {
                        format!(
                            "{:.1}",
                            image.host_size_bytes as f64 / *largest as f64 * 100.0
                        )
                    },
                );
            vec![
                image.workload.clone(),
                image.variant.clone(),
                image.language.clone(),
                image.target.clone(),
                format!("{:.3}", image.host_size_bytes as f64 / divisor),
                format!("{:.3}", image.oci_size_bytes as f64 / divisor),
                share,
            ]
        })
        .collect();
    Table {
        name: "size-by-architecture".into(),
        title: "Image sizes across architectures (the paper's Table 4)".into(),
        note: format!(
            "Each platform image of the multi-platform index; 1 {unit} = {} bytes. The last \
             column is the host size as a percentage of the largest native image of the same \
             workload, variant and language.",
            if unit == "MB" { "1,000,000" } else { "1,000" }
        ),
        columns: vec![
            "workload".into(),
            "variant".into(),
            "language".into(),
            "target".into(),
            format!("host size ({unit})"),
            format!("OCI size ({unit})"),
            "host size, % of largest native".into(),
        ],
        rows,
    }
}

fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}")
    } else {
        String::new()
    }
}

/// The two ends of an interval, or two empty fields.
fn interval_fields(interval: Option<(f64, f64)>, format: fn(f64) -> String) -> [String; 2] {
    interval.map_or_else(Default::default, |(low, high)| [format(low), format(high)])
}

/// Every cell and metric: n, failures, the median and mean with their 95%
/// intervals.
/// Failed cells keep their rows, with status `failed`.
pub(crate) fn cells_table(cells: &[Cell], hosts: &BTreeMap<String, HostInfo>) -> Table {
    let mut rows = Vec::new();
    for cell in cells {
        let status = if cell.failed() {
            "failed"
        } else if cell.failed_count() > 0 {
            "partly failed"
        } else {
            "ok"
        };
        let emulated = if hosts.get(&cell.key.host).is_some_and(|info| info.emulated) {
            "emulated"
        } else {
            "native"
        };
        for metric in Metric::ALL {
            let summary = cell.stats(metric);
            if summary.is_none() && !cell.failed() {
                continue;
            }
            let key = &cell.key;
            let mut row = vec![
                key.workload.clone(),
                key.variant.clone(),
                key.language.clone(),
                key.target.clone(),
                key.host.clone(),
                emulated.to_string(),
                key.engine.clone(),
                key.runtime.clone(),
                key.scenario.clone(),
                metric.name().to_string(),
                status.to_string(),
                cell.total_runs().to_string(),
                cell.failed_count().to_string(),
                cell.until
                    .map(super::cells::UntilStatus::describe)
                    .unwrap_or_default(),
            ];
            if let Some(summary) = summary {
                let [median_low, median_high] =
                    interval_fields(cell.median_interval(metric), number);
                row.extend([
                    summary.n.to_string(),
                    number(summary.median),
                    median_low,
                    median_high,
                    number(summary.mean),
                    number(summary.ci95_low),
                    number(summary.ci95_high),
                ]);
            } else {
                row.push("0".to_string());
                row.extend(std::iter::repeat_n(String::new(), 6));
            }
            rows.push(row);
        }
    }
    Table {
        name: "cells".into(),
        title: "Every cell's statistics".into(),
        note: "Over the ok runs of each cell (n of them); startup_ms is pull_ms + to_main_ms of \
               the same run. The median's ci95 is the seeded percentile bootstrap interval \
               summary.parquet records (none for startup_ms, which it does not summarise); the \
               mean's is Student's t interval. A cell whose every run failed is listed with \
               status failed; `emulated` marks cells measured on an emulated host. `until` says \
               after how many runs a cell met `measure.until` and whether it then stopped."
            .into(),
        columns: [
            "workload",
            "variant",
            "language",
            "target",
            "host",
            "host CPU",
            "engine",
            "runtime",
            "scenario",
            "metric",
            "status",
            "runs",
            "failed runs",
            "until",
            "n",
            "median (ms)",
            "median ci95 low (ms)",
            "median ci95 high (ms)",
            "mean (ms)",
            "mean ci95 low (ms)",
            "mean ci95 high (ms)",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Native against wasm, from effects.parquet: per pair of cells and metric,
/// the Hodges–Lehmann shift and Cliff's delta with their intervals.
pub(crate) fn effects_table(effects: &[EffectRow]) -> Table {
    let delta = |value: f64| format!("{value:.3}");
    let rows = effects
        .iter()
        .map(|effect| {
            let mut row = vec![
                effect.workload.clone(),
                effect.variant.clone(),
                effect.language.clone(),
                effect.host.clone(),
                effect.engine.clone(),
                effect.scenario.clone(),
                effect.metric.clone(),
                effect.native_target.clone(),
                effect.wasm_target.clone(),
                effect.native_n.to_string(),
                effect.wasm_n.to_string(),
                number(effect.native_median),
                number(effect.wasm_median),
                number(effect.hl_shift),
            ];
            row.extend(interval_fields(effect.hl_shift_ci95, number));
            row.push(delta(effect.cliffs_delta));
            row.extend(interval_fields(effect.cliffs_delta_ci95, delta));
            row
        })
        .collect();
    Table {
        name: "effects".into(),
        title: "Native against wasm".into(),
        note: "For each native cell and the wasm cell that differs from it only in target and \
               runtime, per metric, over the ok runs (effects.parquet). Shift: the \
               Hodges–Lehmann estimate, the median of every difference wasm − native (above 0: \
               wasm is slower), with Moses' distribution-free 95% interval, empty when too few \
               runs allow one. Cliff's delta: P(wasm slower) − P(wasm faster) over all pairs \
               of runs, from −1 to 1, with a seeded 95% percentile bootstrap interval."
            .into(),
        columns: [
            "workload",
            "variant",
            "language",
            "host",
            "engine",
            "scenario",
            "metric",
            "native target",
            "wasm target",
            "native n",
            "wasm n",
            "native median (ms)",
            "wasm median (ms)",
            "shift (ms)",
            "shift ci95 low (ms)",
            "shift ci95 high (ms)",
            "Cliff's delta",
            "delta ci95 low",
            "delta ci95 high",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// What programs wrote last to stderr, per cell and line: a program that
/// exits 0 after printing an error is ok in every statistic, and shows here.
pub(crate) fn stderr_table(cells: &[Cell]) -> Table {
    let mut rows = Vec::new();
    for cell in cells {
        let mut lines: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for run in &cell.runs {
            if let Some(line) = run.stderr_tail.as_deref() {
                let counts = lines.entry(line).or_default();
                counts.0 += 1;
                counts.1 += usize::from(run.ok);
            }
        }
        for (line, (runs, ok)) in lines {
            let key = &cell.key;
            rows.push(vec![
                key.workload.clone(),
                key.variant.clone(),
                key.language.clone(),
                key.target.clone(),
                key.host.clone(),
                key.engine.clone(),
                key.scenario.clone(),
                runs.to_string(),
                ok.to_string(),
                line.to_string(),
            ]);
        }
    }
    Table {
        name: "stderr".into(),
        title: "Last stderr lines".into(),
        note: "The last line each run wrote to stderr (results.parquet's stderr_tail), by cell; \
               runs that are ok count in the statistics even when this line reports an error."
            .into(),
        columns: [
            "workload",
            "variant",
            "language",
            "target",
            "host",
            "engine",
            "scenario",
            "runs",
            "ok runs",
            "last stderr line",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Every failed run and why.
pub(crate) fn failures_table(cells: &[Cell]) -> Table {
    let mut rows = Vec::new();
    for cell in cells {
        for run in cell.failed_runs() {
            let key = &cell.key;
            rows.push(vec![
                key.workload.clone(),
                key.variant.clone(),
                key.language.clone(),
                key.target.clone(),
                key.host.clone(),
                key.engine.clone(),
                key.scenario.clone(),
                run.iteration.to_string(),
                run.sequence.map(|s| s.to_string()).unwrap_or_default(),
                "failed".into(),
                run.error.clone().unwrap_or_default(),
            ]);
        }
    }
    Table {
        name: "failed-runs".into(),
        title: "Failed runs".into(),
        note: "Runs with ok = false in results.parquet; they count in no statistic.".into(),
        columns: [
            "workload",
            "variant",
            "language",
            "target",
            "host",
            "engine",
            "scenario",
            "iteration",
            "sequence",
            "status",
            "error",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Provenance: every column of hosts.parquet, plus how the report decided
/// whether each host is emulated.
pub(crate) fn hosts_table(table: Option<&HostTable>, hosts: &BTreeMap<String, HostInfo>) -> Table {
    let empty = HostTable::default();
    let table = table.unwrap_or(&empty);
    let mut columns = table.columns.clone();
    if columns.is_empty() {
        columns.push("host".into());
    }
    columns.extend(["emulated (report)".to_string(), "why".to_string()]);
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut listed = std::collections::BTreeSet::new();
    for (index, row) in table.rows.iter().enumerate() {
        let name = table.value(index, "host").unwrap_or_default();
        listed.insert(name.to_string());
        let mut cells: Vec<String> = row.iter().map(|v| v.clone().unwrap_or_default()).collect();
        let info = hosts.get(name);
        cells.push(emulated_word(info));
        cells.push(
            info.map(|info| info.emulation_basis.clone())
                .unwrap_or_default(),
        );
        rows.push(cells);
    }
    // Hosts the results name that hosts.parquet lacks.
    for (name, info) in hosts.iter().filter(|(name, _)| !listed.contains(*name)) {
        let mut cells = vec![String::new(); columns.len() - 2];
        let host_column = columns.iter().position(|c| c == "host").unwrap_or(0);
        cells[host_column].clone_from(name);
        if let Some(arch_column) = columns.iter().position(|c| c == "architecture") {
            cells[arch_column] = info.architecture.clone().unwrap_or_default();
        }
        cells.push(emulated_word(Some(info)));
        cells.push(info.emulation_basis.clone());
        rows.push(cells);
    }
    Table {
        name: "hosts".into(),
        title: "Hosts".into(),
        note: "Every column of hosts.parquet (the facts each host's prepare stage recorded: \
               architecture, CPU, kernel, engine and shim versions), and whether the report \
               treats the host as emulated, and why."
            .into(),
        columns,
        rows,
    }
}

fn emulated_word(info: Option<&HostInfo>) -> String {
    match info {
        Some(info) if info.emulated => "emulated".into(),
        Some(_) => "native".into(),
        None => String::new(),
    }
}

/// Provenance: every image with its reference and registry digest.
pub(crate) fn images_table(images: &[ImageRow]) -> Table {
    let rows = sorted_images(images)
        .into_iter()
        .map(|image| {
            vec![
                image.workload.clone(),
                image.variant.clone(),
                image.language.clone(),
                image.target.clone(),
                image.platform.clone(),
                image.image_ref.clone(),
                image.digest.clone(),
                image.host_size_bytes.to_string(),
                image.oci_size_bytes.to_string(),
            ]
        })
        .collect();
    Table {
        name: "images".into(),
        title: "Images".into(),
        note: "Every platform image pushed, as images.parquet has it.".into(),
        columns: [
            "workload",
            "variant",
            "language",
            "target",
            "platform",
            "image_ref",
            "digest",
            "host_size_bytes",
            "oci_size_bytes",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(language: &str, target: &str, host: u64, oci: u64) -> ImageRow {
        ImageRow {
            workload: "sorting".into(),
            language: language.into(),
            variant: "optimized".into(),
            target: target.into(),
            platform: String::new(),
            image_ref: String::new(),
            digest: String::new(),
            host_size_bytes: host,
            oci_size_bytes: oci,
        }
    }

    #[test]
    fn reduction_is_the_papers_equation() {
        // The paper's Table 2, Rust native: 610 KB on the host, 259.27 KB in the registry.
        let value = reduction_percent(610_000, 259_270).unwrap();
        assert!((value - 57.496_721).abs() < 1e-5, "{value}");
        assert_eq!(reduction_percent(0, 10), None);
        let table = reduction_table(&[
            image("rust", "wasm", 96_000, 40_790),
            image("rust", "linux/amd64", 610_000, 259_270),
        ]);
        // Native before wasm.
        assert_eq!(table.rows[0][3], "linux/amd64");
        assert_eq!(table.rows[0][7], "57.5");
        assert_eq!(table.rows[1][7], "57.5");
        assert_eq!(table.rows[1][5], "96.00");
    }

    #[test]
    fn csv_quotes_and_markdown_escapes() {
        let table = Table {
            name: "t".into(),
            title: "T".into(),
            note: "n".into(),
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec!["x,y".into(), "say \"hi\" | there".into()]],
        };
        assert_eq!(
            table.to_csv(),
            "a,b\r\n\"x,y\",\"say \"\"hi\"\" | there\"\r\n"
        );
        assert!(
            table
                .to_markdown()
                .contains("| x,y | say \"hi\" \\| there |")
        );
    }

    #[test]
    fn architecture_shares_are_of_the_largest_native_image() {
        let table = architecture_table(&[
            image("cpp", "linux/amd64", 1_650_000, 600_000),
            image("cpp", "linux/arm64", 1_550_000, 590_000),
            image("cpp", "wasm", 816_000, 300_000),
        ]);
        assert_eq!(table.columns[4], "host size (MB)");
        assert_eq!(table.rows[0][6], "100.0");
        assert_eq!(table.rows[2][3], "wasm");
        assert_eq!(table.rows[2][4], "0.816");
        assert_eq!(table.rows[2][6], "49.5");
    }
}

//! `pipeline report` on small, realistic results tables written here with
//! the columns docs/results.md documents: the files it writes, what the
//! figures and tables say, failed and emulated cells, and `--compare`.

mod common;
#[path = "common/report_tables.rs"]
mod report_tables;

use report_tables::{column, csv_rows, read};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

const EXPERIMENT: &str = "matrix-multiplication";
const WORKLOAD: &str = "matrix-multiplication";
const REPETITIONS: u32 = 10;
/// The cell whose every run fails.
const FAILED_LANGUAGE: &str = "cpp";
const FAILED_ERROR: &str = "wasmtime shim exited: out of memory";

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn strings(values: impl IntoIterator<Item = impl Into<String>>) -> ArrayRef {
    Arc::new(StringArray::from(
        values.into_iter().map(Into::into).collect::<Vec<String>>(),
    ))
}

/// The architecture `uname -m` gives on this machine, and one it does not.
fn runner_and_foreign_arch() -> (&'static str, &'static str) {
    let runner = std::env::consts::ARCH;
    let foreign = if runner == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    (runner, foreign)
}

/// Image sizes: the paper's Table 2 (sorting) for amd64 and wasm, and an
/// arm64 image a little smaller than amd64's.
fn image_sizes() -> Vec<(&'static str, &'static str, u64, u64)> {
    vec![
        ("rust", "linux/amd64", 610_000, 259_270),
        ("rust", "linux/arm64", 598_000, 251_000),
        ("rust", "wasm", 96_000, 40_790),
        ("cpp", "linux/amd64", 2_180_000, 746_240),
        ("cpp", "linux/arm64", 2_050_000, 701_000),
        ("cpp", "wasm", 212_000, 68_500),
    ]
}

/// How a set of results is made.
#[derive(Clone)]
struct Results {
    /// Multiplies every to_main value: 2.0 makes a clearly slower run.
    to_main_factor: f64,
    /// Writes hosts.parquet's `emulated` column, by host.
    emulated_column: Option<BTreeMap<&'static str, bool>>,
    /// A third host, a real riscv64 board.
    with_board: bool,
}

impl Default for Results {
    fn default() -> Self {
        Results {
            to_main_factor: 1.0,
            emulated_column: None,
            with_board: false,
        }
    }
}

/// A small deterministic noise source, so each run is a little different.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Host {
    name: &'static str,
    arch: &'static str,
    native_target: &'static str,
    slowdown: f64,
}

fn hosts(results: &Results) -> Vec<Host> {
    let (runner, foreign) = runner_and_foreign_arch();
    let mut hosts = vec![
        Host {
            name: "lab-amd64",
            arch: runner,
            native_target: "linux/amd64",
            slowdown: 1.0,
        },
        Host {
            name: "lab-arm64",
            arch: foreign,
            native_target: "linux/arm64",
            slowdown: 3.0,
        },
    ];
    if results.with_board {
        hosts.push(Host {
            name: "board-riscv64",
            arch: "riscv64",
            native_target: "linux/riscv64",
            slowdown: 5.0,
        });
    }
    hosts
}

/// Writes images, hosts, results and summary .parquet into `dir`.
fn write_results(dir: &Path, results: &Results) {
    std::fs::create_dir_all(dir).unwrap();
    let images = image_sizes();
    write_parquet(
        &dir.join("images.parquet"),
        vec![
            ("experiment", strings(images.iter().map(|_| EXPERIMENT))),
            ("workload", strings(images.iter().map(|_| WORKLOAD))),
            ("language", strings(images.iter().map(|i| i.0))),
            ("variant", strings(images.iter().map(|_| "optimized"))),
            ("target", strings(images.iter().map(|i| i.1))),
            (
                "platform",
                strings(
                    images
                        .iter()
                        .map(|i| if i.1 == "wasm" { "wasi/wasm" } else { i.1 }),
                ),
            ),
            (
                "image_ref",
                strings(images.iter().map(|i| {
                    format!(
                        "registry.test:5000/{WORKLOAD}-{}:optimized-{}",
                        i.0,
                        i.1.replace('/', "-")
                    )
                })),
            ),
            (
                "digest",
                strings(
                    images
                        .iter()
                        .enumerate()
                        .map(|(n, _)| format!("sha256:{n:064x}")),
                ),
            ),
            (
                "host_size_bytes",
                Arc::new(UInt64Array::from(
                    images.iter().map(|i| i.2).collect::<Vec<_>>(),
                )),
            ),
            (
                "oci_size_bytes",
                Arc::new(UInt64Array::from(
                    images.iter().map(|i| i.3).collect::<Vec<_>>(),
                )),
            ),
        ],
    );

    let hosts = hosts(results);
    let mut host_columns: Vec<(&str, ArrayRef)> = vec![
        ("host", strings(hosts.iter().map(|h| h.name))),
        ("architecture", strings(hosts.iter().map(|h| h.arch))),
        (
            "cpu_model",
            strings(hosts.iter().map(|_| "Test CPU @ 3.0GHz")),
        ),
        (
            "cores",
            Arc::new(UInt32Array::from(
                hosts.iter().map(|_| 2u32).collect::<Vec<_>>(),
            )),
        ),
        ("kernel", strings(hosts.iter().map(|_| "6.1.0-test"))),
        ("docker_version", strings(hosts.iter().map(|_| "26.1.5"))),
        (
            "containerd_version",
            strings(hosts.iter().map(|_| "1.7.24")),
        ),
        (
            "shims",
            strings(
                hosts
                    .iter()
                    .map(|_| "containerd-shim-runc-v2,containerd-shim-wasmtime-v1"),
            ),
        ),
    ];
    if let Some(emulated) = &results.emulated_column {
        host_columns.push((
            "emulated",
            Arc::new(BooleanArray::from(
                hosts
                    .iter()
                    .map(|h| emulated[h.name])
                    .collect::<Vec<bool>>(),
            )),
        ));
    }
    write_parquet(&dir.join("hosts.parquet"), host_columns);

    // One row per run: every host runs its native image and the wasm image
    // of each language, fresh and cached, interleaved in rounds.
    let mut rows: Vec<Run> = Vec::new();
    let mut noise = Noise(42);
    for host in &hosts {
        let mut sequence = 0u32;
        for iteration in 0..REPETITIONS {
            for language in ["rust", "cpp"] {
                for target in [host.native_target, "wasm"] {
                    for scenario in ["fresh", "cached"] {
                        let wasm = target == "wasm";
                        let pull = if scenario == "fresh" {
                            (if wasm { 240.0 } else { 300.0 }) + 30.0 * noise.next()
                        } else {
                            12.0 + 3.0 * noise.next()
                        } * host.slowdown;
                        let to_main = ((if wasm { 190.0 } else { 70.0 }) + 15.0 * noise.next())
                            * host.slowdown
                            * results.to_main_factor;
                        // Every run of cpp wasm, cached, on the foreign host fails.
                        let failed = host.name == "lab-arm64"
                            && language == FAILED_LANGUAGE
                            && wasm
                            && scenario == "cached";
                        // One run of another cell fails, so a cell can be partly failed.
                        let flaky = host.name == "lab-amd64"
                            && language == "rust"
                            && !wasm
                            && scenario == "fresh"
                            && iteration == 3;
                        rows.push(Run {
                            host: host.name,
                            language,
                            target,
                            scenario,
                            iteration,
                            sequence,
                            pull_ms: Some(pull),
                            to_main_ms: (!failed).then_some(to_main),
                            whole_run_ms: (!failed).then_some(to_main + 400.0),
                            ok: !failed && !flaky,
                            error: if failed {
                                Some(FAILED_ERROR.to_string())
                            } else if flaky {
                                Some("result line did not match".to_string())
                            } else {
                                None
                            },
                            stderr_tail: (host.name == "lab-arm64" && language == "rust" && wasm)
                                .then_some(STDERR_WARNING),
                        });
                        sequence += 1;
                    }
                }
            }
        }
    }
    write_parquet(
        &dir.join("results.parquet"),
        vec![
            ("experiment", strings(rows.iter().map(|_| EXPERIMENT))),
            ("workload", strings(rows.iter().map(|_| WORKLOAD))),
            ("language", strings(rows.iter().map(|r| r.language))),
            ("variant", strings(rows.iter().map(|_| "optimized"))),
            ("target", strings(rows.iter().map(|r| r.target))),
            (
                "platform",
                strings(rows.iter().map(|r| {
                    if r.target == "wasm" {
                        "wasi/wasm"
                    } else {
                        r.target
                    }
                })),
            ),
            ("host", strings(rows.iter().map(|r| r.host))),
            ("engine", strings(rows.iter().map(|_| "docker"))),
            (
                "runtime",
                strings(rows.iter().map(|r| {
                    if r.target == "wasm" {
                        "wasmtime"
                    } else {
                        "runc"
                    }
                })),
            ),
            ("scenario", strings(rows.iter().map(|r| r.scenario))),
            (
                "iteration",
                Arc::new(Int32Array::from(
                    rows.iter()
                        .map(|r| r.iteration.cast_signed())
                        .collect::<Vec<_>>(),
                )),
            ),
            (
                "sequence",
                Arc::new(UInt32Array::from(
                    rows.iter().map(|r| r.sequence).collect::<Vec<_>>(),
                )),
            ),
            (
                "image_ref",
                strings(
                    rows.iter()
                        .map(|r| format!("registry.test:5000/{}", r.language)),
                ),
            ),
            ("image_digest", strings(rows.iter().map(|_| "sha256:00"))),
            (
                "pull_ms",
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.pull_ms).collect::<Vec<_>>(),
                )),
            ),
            (
                "pulled_bytes",
                Arc::new(UInt64Array::from(
                    rows.iter()
                        .map(|r| Some(if r.scenario == "fresh" { 250_000 } else { 0 }))
                        .collect::<Vec<Option<u64>>>(),
                )),
            ),
            (
                "to_main_ms",
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.to_main_ms).collect::<Vec<_>>(),
                )),
            ),
            (
                "run_ms",
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.whole_run_ms).collect::<Vec<_>>(),
                )),
            ),
            (
                "exit_code",
                Arc::new(Int64Array::from(
                    rows.iter()
                        .map(|r| Some(i64::from(!r.ok)))
                        .collect::<Vec<_>>(),
                )),
            ),
            (
                "ok",
                Arc::new(BooleanArray::from(
                    rows.iter().map(|r| r.ok).collect::<Vec<_>>(),
                )),
            ),
            (
                "started_at",
                Arc::new(
                    TimestampMillisecondArray::from(
                        rows.iter()
                            .map(|r| Some(1_764_400_000_000 + i64::from(r.sequence) * 1_500))
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            ),
            (
                "error",
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.error.clone()).collect::<Vec<_>>(),
                )),
            ),
            (
                "stderr_tail",
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.stderr_tail).collect::<Vec<_>>(),
                )),
            ),
        ],
    );

    // summary.parquet as the writer makes it: ok runs only, per cell and metric.
    let mut cells: BTreeMap<CellKey, Vec<&Run>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.ok) {
        cells
            .entry((row.host, row.language, row.target, row.scenario))
            .or_default()
            .push(row);
    }
    let mut summary: Vec<(CellKey, &str, Vec<f64>)> = Vec::new();
    for (key, runs) in &cells {
        summary.push((
            *key,
            "pull_ms",
            runs.iter().filter_map(|r| r.pull_ms).collect(),
        ));
        summary.push((
            *key,
            "to_main_ms",
            runs.iter().filter_map(|r| r.to_main_ms).collect(),
        ));
        summary.push((
            *key,
            "run_ms",
            runs.iter().filter_map(|r| r.whole_run_ms).collect(),
        ));
    }
    let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let median = |v: &Vec<f64>| {
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n % 2 == 1 {
            s[n / 2]
        } else {
            f64::midpoint(s[n / 2 - 1], s[n / 2])
        }
    };
    let sd = |v: &Vec<f64>| {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)).sqrt()
    };
    let half = |v: &Vec<f64>| 2.262 * sd(v) / (v.len() as f64).sqrt();
    write_parquet(
        &dir.join("summary.parquet"),
        vec![
            ("experiment", strings(summary.iter().map(|_| EXPERIMENT))),
            ("workload", strings(summary.iter().map(|_| WORKLOAD))),
            ("language", strings(summary.iter().map(|s| s.0.1))),
            ("variant", strings(summary.iter().map(|_| "optimized"))),
            ("target", strings(summary.iter().map(|s| s.0.2))),
            ("host", strings(summary.iter().map(|s| s.0.0))),
            ("engine", strings(summary.iter().map(|_| "docker"))),
            (
                "runtime",
                strings(
                    summary
                        .iter()
                        .map(|s| if s.0.2 == "wasm" { "wasmtime" } else { "runc" }),
                ),
            ),
            ("scenario", strings(summary.iter().map(|s| s.0.3))),
            ("metric", strings(summary.iter().map(|s| s.1))),
            (
                "n",
                Arc::new(UInt64Array::from(
                    summary.iter().map(|s| s.2.len() as u64).collect::<Vec<_>>(),
                )),
            ),
            (
                "median",
                Arc::new(Float64Array::from(
                    summary.iter().map(|s| median(&s.2)).collect::<Vec<_>>(),
                )),
            ),
            (
                "mean",
                Arc::new(Float64Array::from(
                    summary.iter().map(|s| mean(&s.2)).collect::<Vec<_>>(),
                )),
            ),
            (
                "std_dev",
                Arc::new(Float64Array::from(
                    summary.iter().map(|s| sd(&s.2)).collect::<Vec<_>>(),
                )),
            ),
            (
                "ci95_low",
                Arc::new(Float64Array::from(
                    summary
                        .iter()
                        .map(|s| mean(&s.2) - half(&s.2))
                        .collect::<Vec<_>>(),
                )),
            ),
            (
                "ci95_high",
                Arc::new(Float64Array::from(
                    summary
                        .iter()
                        .map(|s| mean(&s.2) + half(&s.2))
                        .collect::<Vec<_>>(),
                )),
            ),
            // Not a bootstrap: the report shows what the table says.
            (
                "median_ci95_low",
                Arc::new(Float64Array::from(
                    summary
                        .iter()
                        .map(|s| median(&s.2) - 1.0)
                        .collect::<Vec<_>>(),
                )),
            ),
            (
                "median_ci95_high",
                Arc::new(Float64Array::from(
                    summary
                        .iter()
                        .map(|s| median(&s.2) + 1.0)
                        .collect::<Vec<_>>(),
                )),
            ),
        ],
    );

    // One effect, with values the report must print as they are.
    let float = |value: f64| -> ArrayRef { Arc::new(Float64Array::from(vec![value])) };
    let count = |value: u64| -> ArrayRef { Arc::new(UInt64Array::from(vec![value])) };
    write_parquet(
        &dir.join("effects.parquet"),
        vec![
            ("experiment", strings([EXPERIMENT])),
            ("workload", strings([WORKLOAD])),
            ("language", strings(["rust"])),
            ("variant", strings(["optimized"])),
            ("host", strings(["lab-amd64"])),
            ("engine", strings(["docker"])),
            ("scenario", strings(["fresh"])),
            ("metric", strings(["to_main_ms"])),
            ("native_target", strings(["linux/amd64"])),
            ("native_runtime", strings(["runc"])),
            ("wasm_target", strings(["wasm"])),
            ("wasm_runtime", strings(["wasmtime"])),
            ("native_n", count(10)),
            ("wasm_n", count(9)),
            ("native_median", float(70.0)),
            ("wasm_median", float(110.0)),
            ("hl_shift", float(40.25)),
            ("hl_shift_ci95_low", float(35.5)),
            ("hl_shift_ci95_high", float(44.0)),
            ("cliffs_delta", float(0.9)),
            (
                "cliffs_delta_ci95_low",
                Arc::new(Float64Array::from(vec![None::<f64>])),
            ),
            ("cliffs_delta_ci95_high", float(1.0)),
        ],
    );
}

/// host, language, target, scenario
type CellKey = (&'static str, &'static str, &'static str, &'static str);

struct Run {
    host: &'static str,
    language: &'static str,
    target: &'static str,
    scenario: &'static str,
    iteration: u32,
    sequence: u32,
    pull_ms: Option<f64>,
    to_main_ms: Option<f64>,
    whole_run_ms: Option<f64>,
    ok: bool,
    error: Option<String>,
    stderr_tail: Option<&'static str>,
}

/// What the rust wasm cells on lab-arm64 write last to stderr in every run,
/// although it exits 0: ok in the statistics, and shown in the report.
const STDERR_WARNING: &str = "warning: input.txt not found, counting nothing";

fn pipeline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args)
        .output()
        .expect("the pipeline binary runs")
}

fn report(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["report", out.to_str().unwrap()];
    args.extend(extra);
    let output = pipeline(&args);
    assert!(
        output.status.success(),
        "pipeline report failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

/// The rows of a Markdown table file, as cells, header first.
fn markdown_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|line| line.starts_with("| "))
        .filter(|line| !line.chars().all(|c| matches!(c, '|' | '-' | ' ')))
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect()
}

/// Whether the page shows the table `name`.
fn page_has_table(report_dir: &Path, name: &str) -> bool {
    read(&report_dir.join("index.html")).contains(&format!("<h3 id=\"table-{name}\">"))
}

fn experiment_out(root: &Path) -> PathBuf {
    root.join("out").join(EXPERIMENT)
}

#[test]
fn writes_every_file_and_a_self_contained_page() {
    let root = tempfile::tempdir().unwrap();
    let out = experiment_out(root.path());
    write_results(&out, &Results::default());
    let output = report(&out, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("{EXPERIMENT}: 16 cells (1 failed, 1 with some failed runs, 8 on emulated hosts), 160 runs, 6 images, 2 hosts")), "{stdout}");
    assert!(stdout.contains("wasm images on the host are"), "{stdout}");
    assert!(stdout.contains("report: "), "{stdout}");

    let report_dir = out.join("report");
    let figures = report_dir.join("figures");
    for name in [
        "startup-matrix-multiplication-optimized-docker",
        "size-host-matrix-multiplication-optimized",
        "size-registry-matrix-multiplication-optimized",
        "pull-matrix-multiplication-optimized-docker-fresh",
        "pull-matrix-multiplication-optimized-docker-cached",
        "runs-matrix-multiplication-pull-ms",
        "runs-matrix-multiplication-to-main-ms",
        "drift-lab-amd64-to-main-ms",
        "drift-lab-arm64-pull-ms",
    ] {
        assert!(figures.join(format!("{name}.svg")).is_file(), "{name}.svg");
        assert!(figures.join(format!("{name}.png")).is_file(), "{name}.png");
    }
    for name in [
        "size-reduction",
        "size-by-architecture",
        "cells",
        "effects",
        "failed-runs",
        "hosts",
        "images",
    ] {
        assert!(
            report_dir.join(format!("tables/{name}.csv")).is_file(),
            "{name}.csv"
        );
        assert!(
            report_dir.join(format!("tables/{name}.md")).is_file(),
            "{name}.md"
        );
    }

    let page = read(&report_dir.join("index.html"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page names a URL"
    );
    assert!(!page.contains("<script") && !page.contains("<img") && !page.contains("<link"));
    let svgs = files_with_extension(&figures, "svg");
    assert_eq!(
        page.matches("<svg ").count(),
        svgs.len(),
        "every figure inline, once"
    );
    for svg in &svgs {
        let stem = svg.file_stem().unwrap().to_str().unwrap();
        assert!(
            page.contains(&format!("<svg id=\"{stem}\"")),
            "{stem} is not inline"
        );
    }
    // Provenance: versions from hosts.parquet, the tool's version and the date.
    assert!(page.contains("26.1.5") && page.contains("1.7.24"));
    assert!(page.contains(env!("CARGO_PKG_VERSION")));
    assert!(
        page.contains("2025-11-29T07:06:40Z"),
        "the measured period is shown"
    );

    // A second report replaces the first whole.
    std::fs::write(figures.join("stale.svg"), "<svg/>").unwrap();
    report(&out, &["--quiet"]);
    assert!(!figures.join("stale.svg").exists());
}

#[test]
fn figures_are_svg_with_labelled_axes_and_n_and_pngs_with_pixels() {
    let root = tempfile::tempdir().unwrap();
    let out = experiment_out(root.path());
    write_results(&out, &Results::default());
    report(&out, &["--quiet"]);
    let figures = out.join("report/figures");
    let unit = regex::Regex::new(r"\((ms|KB|MB|ratio|sequence, runs|×; 1 = no change)\)").unwrap();
    let svgs = files_with_extension(&figures, "svg");
    assert!(svgs.len() >= 9, "{svgs:?}");
    for path in &svgs {
        let text = read(path);
        let document = roxmltree::Document::parse(&text)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let texts: Vec<String> = document
            .descendants()
            .filter(|node| node.has_tag_name("text"))
            .filter_map(|node| node.text().map(str::to_string))
            .collect();
        assert!(
            texts.iter().any(|t| unit.is_match(t)),
            "{}: no axis label with a unit in {texts:?}",
            path.display()
        );
        if path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("startup")
            || path
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("pull")
        {
            assert!(
                texts.iter().any(|t| t == "n=10"),
                "{}: no n=10",
                path.display()
            );
            assert!(
                texts.iter().any(|t| t == "95% CI of the mean"),
                "{}: no interval legend",
                path.display()
            );
        }
    }
    let startup = read(&figures.join("startup-matrix-multiplication-optimized-docker.svg"));
    assert!(startup.contains(">start-up time: pull + to_main (ms)</text>"));
    // The flaky cell has 9 ok runs of 10 and says so.
    assert!(startup.contains(">n=9</text>") && startup.contains(">1 failed</text>"));
    let sizes = read(&figures.join("size-host-matrix-multiplication-optimized.svg"));
    assert!(sizes.contains(">image size on the host, uncompressed (KB)</text>"));
    assert!(sizes.contains(">n=1</text>") && sizes.contains(">610</text>"));

    for path in files_with_extension(&figures, "png") {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        assert!(
            frame.width >= 1000 && frame.height >= 600,
            "{}: {}x{}",
            path.display(),
            frame.width,
            frame.height
        );
        let channels = frame.line_size / frame.width as usize;
        let ink = pixels[..frame.buffer_size()]
            .chunks(channels)
            .filter(|pixel| pixel[..3].iter().any(|value| *value < 200))
            .count();
        let share = ink as f64 / f64::from(frame.width * frame.height);
        // Text, axes and marks: not blank, not a solid block.
        assert!(
            share > 0.01 && share < 0.6,
            "{}: {share:.3} of the pixels are dark",
            path.display()
        );
    }
}

#[test]
fn a_failed_cell_is_shown_as_failed() {
    let root = tempfile::tempdir().unwrap();
    let out = experiment_out(root.path());
    write_results(&out, &Results::default());
    report(&out, &["--quiet"]);
    let report_dir = out.join("report");
    let startup =
        read(&report_dir.join("figures/startup-matrix-multiplication-optimized-docker.svg"));
    assert!(startup.contains(">failed</text>"), "no failed mark");
    assert!(startup.contains(">failed cell</text>"), "no legend entry");
    assert!(startup.contains(&format!(
        "{FAILED_LANGUAGE} wasm optimized · lab-arm64 docker cached, emulated host: failed (10 of 10 runs): {FAILED_ERROR}"
    )));
    let runs = read(&report_dir.join("figures/runs-matrix-multiplication-to-main-ms.svg"));
    assert!(runs.contains(&format!("failed: {FAILED_ERROR}")));

    let cells = csv_rows(&read(&report_dir.join("tables/cells.csv")));
    let (language, target, host, scenario, status, n) = (
        column(&cells, "language"),
        column(&cells, "target"),
        column(&cells, "host"),
        column(&cells, "scenario"),
        column(&cells, "status"),
        column(&cells, "n"),
    );
    let failed: Vec<&Vec<String>> = cells.iter().filter(|row| row[status] == "failed").collect();
    assert!(!failed.is_empty());
    for row in failed {
        assert_eq!(
            (
                row[language].as_str(),
                row[target].as_str(),
                row[host].as_str(),
                row[scenario].as_str(),
                row[n].as_str()
            ),
            (FAILED_LANGUAGE, "wasm", "lab-arm64", "cached", "0")
        );
    }
    // The median's interval as summary.parquet has it; none for startup_ms.
    let (metric, median, median_low, median_high) = (
        column(&cells, "metric"),
        column(&cells, "median (ms)"),
        column(&cells, "median ci95 low (ms)"),
        column(&cells, "median ci95 high (ms)"),
    );
    for row in cells[1..].iter().filter(|row| row[status] != "failed") {
        if row[metric] == "startup_ms" {
            assert_eq!(
                (row[median_low].as_str(), row[median_high].as_str()),
                ("", "")
            );
        } else {
            let value = |index: usize| row[index].parse::<f64>().unwrap();
            assert!(
                (value(median) - value(median_low) - 1.0).abs() < 0.011,
                "{row:?}"
            );
            assert!(
                (value(median_high) - value(median) - 1.0).abs() < 0.011,
                "{row:?}"
            );
        }
    }
    let effects = markdown_rows(&read(&report_dir.join("tables/effects.md")));
    assert_eq!(
        effects[1..],
        [[
            WORKLOAD,
            "optimized",
            "rust",
            "lab-amd64",
            "docker",
            "fresh",
            "to_main_ms",
            "linux/amd64",
            "wasm",
            "10",
            "9",
            "70.00",
            "110.00",
            "40.25",
            "35.50",
            "44.00",
            "0.900",
            "",
            "",
        ]
        .map(String::from)
        .to_vec()],
        "a missing end leaves the interval empty"
    );
    assert!(page_has_table(&report_dir, "effects"));
    let failures = markdown_rows(&read(&report_dir.join("tables/failed-runs.md")));
    assert_eq!(
        failures.len(),
        1 + 10 + 1,
        "header, the failed cell's 10 runs, the flaky run"
    );
    let page = read(&report_dir.join("index.html"));
    assert!(page.contains("<tr class=\"failed\">"));
}

#[test]
fn a_cell_on_an_emulated_host_is_marked() {
    let root = tempfile::tempdir().unwrap();
    // hosts.parquet without an emulated column: the architecture decides.
    let out = experiment_out(root.path());
    write_results(&out, &Results::default());
    report(&out, &["--quiet"]);
    let (runner, foreign) = runner_and_foreign_arch();
    let startup =
        read(&out.join("report/figures/startup-matrix-multiplication-optimized-docker.svg"));
    assert!(startup.contains(&format!(">{foreign}, emulated</text>")));
    assert!(startup.contains(&format!(">{runner}</text>")));
    assert!(startup.contains(">emulated host</text>"), "legend");
    assert!(startup.contains("-hatch)"), "emulated bars are hatched");
    let cells = csv_rows(&read(&out.join("report/tables/cells.csv")));
    let (host, cpu) = (column(&cells, "host"), column(&cells, "host CPU"));
    for row in &cells[1..] {
        let expected = if row[host] == "lab-arm64" {
            "emulated"
        } else {
            "native"
        };
        assert_eq!(row[cpu], expected, "{row:?}");
    }

    // With the column, it decides: a real riscv64 board is not emulated.
    let other = root.path().join("with-column").join(EXPERIMENT);
    write_results(
        &other,
        &Results {
            emulated_column: Some(BTreeMap::from([
                ("lab-amd64", false),
                ("lab-arm64", true),
                ("board-riscv64", false),
            ])),
            with_board: true,
            ..Results::default()
        },
    );
    report(&other, &["--quiet"]);
    let startup =
        read(&other.join("report/figures/startup-matrix-multiplication-optimized-docker.svg"));
    assert!(startup.contains(">riscv64</text>"));
    assert!(!startup.contains(">riscv64, emulated</text>"));
    assert!(startup.contains(&format!(">{foreign}, emulated</text>")));
    let hosts = read(&other.join("report/tables/hosts.md"));
    assert!(hosts.contains("the emulated column of hosts.parquet"));
}

#[test]
fn size_reduction_follows_the_papers_formula() {
    let root = tempfile::tempdir().unwrap();
    let out = experiment_out(root.path());
    write_results(&out, &Results::default());
    report(&out, &["--quiet"]);
    let rows = markdown_rows(&read(&out.join("report/tables/size-reduction.md")));
    let (language, target, host, oci, reduction) = (
        column(&rows, "language"),
        column(&rows, "target"),
        column(&rows, "host size (KB)"),
        column(&rows, "OCI size (KB)"),
        column(&rows, "reduction (%)"),
    );
    assert_eq!(rows.len(), 1 + image_sizes().len());
    for (lang, tgt, host_bytes, oci_bytes) in image_sizes() {
        let row = rows
            .iter()
            .find(|row| row[language] == lang && row[target] == tgt)
            .unwrap_or_else(|| panic!("no row for {lang} {tgt}"));
        let expected = (1.0 - oci_bytes as f64 / host_bytes as f64) * 100.0;
        assert_eq!(row[reduction], format!("{expected:.1}"), "{lang} {tgt}");
        assert_eq!(row[host], format!("{:.2}", host_bytes as f64 / 1000.0));
        assert_eq!(row[oci], format!("{:.2}", oci_bytes as f64 / 1000.0));
    }
    // The paper's Table 2 rows for these sizes.
    let paper = [
        ("rust", "linux/amd64", "57.5"),
        ("cpp", "linux/amd64", "65.8"),
        ("rust", "wasm", "57.5"),
        ("cpp", "wasm", "67.7"),
    ];
    for (lang, tgt, value) in paper {
        let row = rows
            .iter()
            .find(|row| row[language] == lang && row[target] == tgt)
            .unwrap();
        assert_eq!(row[reduction], value, "{lang} {tgt}");
    }
    let by_arch = markdown_rows(&read(&out.join("report/tables/size-by-architecture.md")));
    let wasm = by_arch
        .iter()
        .find(|row| {
            row[column(&by_arch, "language")] == "cpp" && row[column(&by_arch, "target")] == "wasm"
        })
        .unwrap();
    assert_eq!(wasm[column(&by_arch, "host size (MB)")], "0.212");
}

#[test]
fn compare_gives_ratios_and_flags_only_real_differences() {
    let root = tempfile::tempdir().unwrap();
    let before = root.path().join("before").join(EXPERIMENT);
    let same = root.path().join("same").join(EXPERIMENT);
    let slower = root.path().join("slower").join(EXPERIMENT);
    write_results(&before, &Results::default());
    write_results(&same, &Results::default());
    write_results(
        &slower,
        &Results {
            to_main_factor: 2.0,
            ..Results::default()
        },
    );

    let rows_against = |other: &Path| {
        let output = report(&before, &["--compare", other.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let rows = markdown_rows(&read(&before.join("report/tables/compare.md")));
        assert!(
            before
                .join("report/figures/compare-to-main-ms.svg")
                .is_file()
        );
        (rows, stdout)
    };

    let (rows, stdout) = rows_against(&same);
    assert!(stdout.contains("16 cells matched by host name"), "{stdout}");
    assert!(stdout.contains(", 0 significant"), "{stdout}");
    let (metric, ratio, significant, status) = (
        column(&rows, "metric"),
        column(&rows, "ratio"),
        column(&rows, "significant"),
        column(&rows, "status"),
    );
    let compared: Vec<&Vec<String>> = rows
        .iter()
        .filter(|row| row[status] == "compared")
        .collect();
    assert_eq!(compared.len(), 15 * 3, "15 measured cells × 3 metrics");
    for row in &compared {
        assert_eq!(row[ratio], "1.000", "{row:?}");
        assert_eq!(row[significant], "no", "{row:?}");
    }
    assert!(
        rows.iter().any(|row| row[status].starts_with("failed")),
        "the failed cell stays"
    );

    let (rows, stdout) = rows_against(&slower);
    assert!(!stdout.contains(", 0 significant"), "{stdout}");
    for row in rows.iter().filter(|row| row[status] == "compared") {
        match row[metric].as_str() {
            "to_main_ms" => {
                assert_eq!(row[ratio], "0.500", "{row:?}");
                assert_eq!(row[significant], "yes", "{row:?}");
            }
            "pull_ms" => {
                assert_eq!(row[ratio], "1.000", "{row:?}");
                assert_eq!(row[significant], "no", "{row:?}");
            }
            _ => {}
        }
    }
}

#[test]
fn bad_input_exits_2_naming_the_path() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("out/nothing-here");
    let output = pipeline(&["report", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");

    let empty = root.path().join("out/empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = pipeline(&["report", empty.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no results tables") && stderr.contains(empty.to_str().unwrap()),
        "{stderr}"
    );

    let out = experiment_out(root.path());
    write_results(&out, &Results::default());
    let output = pipeline(&[
        "report",
        out.to_str().unwrap(),
        "--compare",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains(missing.to_str().unwrap()));

    std::fs::write(out.join("results.parquet"), b"not parquet").unwrap();
    let output = pipeline(&["report", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("results.parquet"));
}

#[test]
fn a_spec_names_its_out_folder_and_current_fingerprint() {
    let project = common::Project::new();
    project.write("experiments/demo.yaml", common::SPEC);
    write_results(&project.path("out/demo"), &Results::default());
    let output = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["report", "experiments/demo.yaml"])
        .current_dir(project.dir.path())
        .output()
        .expect("the pipeline binary runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("demo: 16 cells"), "{stdout}");
    let page = read(&project.path("out/demo/report/index.html"));
    let fingerprint =
        regex::Regex::new(r"<dt>fingerprint of the spec now</dt><dd>[0-9a-f]{16,}</dd>").unwrap();
    assert!(fingerprint.is_match(&page));
}

/// Headless Chromium (Debian's `chromium`, which scripts/install-deps
/// installs) opens the page with every network request refused: something
/// is drawn, every figure is there, and no resource failed to load.
#[test]
fn a_browser_shows_the_page_offline() {
    let root = tempfile::tempdir().unwrap();
    let out = experiment_out(root.path());
    write_results(&out, &Results::default());
    report(&out, &["--quiet"]);
    let page = out.join("report/index.html");
    let figures = files_with_extension(&out.join("report/figures"), "svg").len();
    assert!(figures > 0);

    let browser = |extra: &[&str]| {
        let output = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                // No network: every host resolves to nothing, and no proxy
                // or other route is left.
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--proxy-server=127.0.0.1:9",
                "--disable-background-networking",
                "--window-size=1280,2400",
            ])
            .arg(format!(
                "--user-data-dir={}",
                root.path().join("profile").display()
            ))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium runs (scripts/install-deps installs it)");
        assert!(
            output.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };

    // The DOM after loading: every figure. The browser's net log has every
    // request it made; those made for the page carry the page's `file://`
    // isolation key. A self-contained page makes none, so none can fail
    // (the browser's own update and account checks carry other keys).
    let net_log = root.path().join("net-log.json");
    let dumped = browser(&[
        "--dump-dom",
        &format!("--log-net-log={}", net_log.display()),
    ]);
    let dom = String::from_utf8_lossy(&dumped.stdout);
    assert_eq!(
        dom.matches("<svg id=\"").count(),
        figures,
        "every figure is in the loaded page"
    );
    let log: serde_json::Value =
        serde_json::from_str(&read(&net_log)).expect("the net log is JSON");
    let page_requests: Vec<&str> = log["events"]
        .as_array()
        .expect("net log events")
        .iter()
        .filter(|event| {
            event["params"]["network_isolation_key"]
                .as_str()
                .is_some_and(|key| key.starts_with("file://"))
        })
        .filter_map(|event| event["params"]["url"].as_str())
        .collect();
    assert!(
        page_requests.is_empty(),
        "the page loaded resources: {page_requests:?}"
    );

    // The screenshot is not blank: a good share of it is neither the
    // background nor one flat colour.
    let screenshot = root.path().join("page.png");
    browser(&[&format!("--screenshot={}", screenshot.display())]);
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&screenshot).expect("a screenshot"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    let pixels = &pixels[..frame.buffer_size()];
    let background = &pixels[..channels];
    let drawn = pixels
        .chunks(channels)
        .filter(|pixel| *pixel != background)
        .count();
    let total = pixels.len() / channels;
    let colours: std::collections::HashSet<&[u8]> = pixels.chunks(channels).collect();
    assert!(
        drawn * 50 > total && colours.len() > 16,
        "the screenshot looks blank: {drawn} of {total} pixels drawn, {} colours",
        colours.len()
    );
}

/// A program that exits 0 after printing an error: its runs are ok, and the
/// report's stderr table shows the line, with how many runs printed it.
#[test]
fn the_last_stderr_line_of_ok_runs_is_shown() {
    let root = tempfile::tempdir().unwrap();
    let out = experiment_out(root.path());
    write_results(&out, &Results::default());
    report(&out, &["--quiet"]);
    let report_dir = out.join("report");
    let rows = markdown_rows(&read(&report_dir.join("tables/stderr.md")));
    let line = column(&rows, "last stderr line");
    let host = column(&rows, "host");
    let language = column(&rows, "language");
    let runs = column(&rows, "runs");
    let ok = column(&rows, "ok runs");
    let shown: Vec<&Vec<String>> = rows[1..].iter().collect();
    assert!(!shown.is_empty(), "{rows:?}");
    for row in &shown {
        assert_eq!(row[line], STDERR_WARNING, "{row:?}");
        assert_eq!(
            (row[host].as_str(), row[language].as_str()),
            ("lab-arm64", "rust")
        );
        assert_eq!(row[runs], row[ok], "every such run is ok: {row:?}");
        assert_eq!(row[runs], REPETITIONS.to_string(), "{row:?}");
    }
    assert!(page_has_table(&report_dir, "stderr"));
    assert!(read(&report_dir.join("index.html")).contains(STDERR_WARNING));
}

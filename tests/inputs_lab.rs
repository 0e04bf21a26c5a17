//! A third-party program brought in unmodified, end to end on the lab
//! (tests/fixtures/inputs): it takes no arguments, reads `input.txt` from
//! its working directory, prints its own start line and no result line, and
//! keeps separate C++ sources for its wasm image. Each workload is built
//! only for the targets it has sources for, and every run on two lab hosts
//! via Docker and containerd is ok, with what the program wrote to stderr
//! in the results.

#[path = "common/lab.rs"]
mod lab;
#[path = "common/python.rs"]
mod python;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

const EXPERIMENT: &str = "wordcount";

/// The program's last stderr line: the variable's quotes, `$` and backslash
/// came through the Dockerfile and both engines as written, and the count
/// is that of the input file the image placed in its working directory.
const STDERR_TAIL: &str = r#"words in "input.txt" ($PWD\app): 9 words"#;

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

/// The project's templates and the fixture, in a temporary tree.
fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary folder");
        let root = dir.path().to_path_buf();
        lab::copy_dir(
            &lab::repository().join("templates"),
            &root.join("templates"),
        );
        lab::copy_dir(&lab::repository().join("tests/fixtures/inputs"), &root);
        Tree { _dir: dir, root }
    })
}

fn pipeline(args: &[&str]) -> Output {
    lab::lab();
    let tree = tree();
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args)
        .arg(tree.root.join(format!("experiments/{EXPERIMENT}.yaml")))
        .arg("-i")
        .arg(lab::repository().join(".lab/inventory.yaml"))
        .arg("--out")
        .arg(tree.root.join("out"))
        .current_dir(lab::repository())
        .output()
        .expect("pipeline runs")
}

fn out_dir() -> PathBuf {
    tree().root.join("out").join(EXPERIMENT)
}

/// The whole experiment, once for every test of this file.
fn applied() -> &'static Output {
    static OUTPUT: OnceLock<Result<Output, String>> = OnceLock::new();
    let result = OUTPUT.get_or_init(|| {
        lab::require_shim();
        let output = pipeline(&["apply"]);
        if output.status.success() {
            Ok(output)
        } else {
            Err(lab::describe_output(&output))
        }
    });
    match result {
        Ok(output) => output,
        Err(message) => panic!("{message}"),
    }
}

#[test]
fn each_workload_is_built_only_for_the_targets_it_has_sources_for() {
    applied();
    let rows = python::query_parquet(
        &out_dir().join("images.parquet"),
        "SELECT workload, target FROM t ORDER BY ALL",
    );
    assert_eq!(
        rows,
        serde_json::json!([
            ["wordcount", "linux/amd64"],
            ["wordcount", "linux/arm64"],
            ["wordcount-wasm", "wasm"],
        ])
    );
}

#[test]
fn the_unmodified_program_runs_ok_on_two_hosts_via_both_engines() {
    applied();
    let rows = python::query_parquet(
        &out_dir().join("results.parquet"),
        "SELECT workload, host, engine, runtime, target, count(*), bool_and(ok), \
         min(to_main_ms), min(stderr_tail), max(stderr_tail), max(exit_code) \
         FROM t GROUP BY ALL ORDER BY ALL",
    );
    let rows = rows.as_array().expect("rows");
    // Native on its own host, wasm on both; two engines each: 8 cells.
    assert_eq!(rows.len(), 8, "{rows:#?}");
    let cells: Vec<(String, String, String)> = rows
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_string(),
                row[1].as_str().unwrap().to_string(),
                row[4].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (workload, host, target) in &cells {
        let expected = match workload.as_str() {
            "wordcount" => format!("linux/{}", host.trim_start_matches("lab-")),
            _ => "wasm".to_string(),
        };
        assert_eq!(*target, expected, "{cells:?}");
    }
    for row in rows {
        assert_eq!(row[5], 2, "two measured repetitions: {row}");
        assert_eq!(row[6], true, "every run ok: {row}");
        assert!(
            row[7].as_f64().unwrap() > 0.0,
            "a to_main from its own marker: {row}"
        );
        assert_eq!(row[8], STDERR_TAIL, "{row}");
        assert_eq!(row[9], STDERR_TAIL, "{row}");
        assert_eq!(row[10], 0, "{row}");
        assert_eq!(row[3] == "wasmtime", row[4] == "wasm", "{row}");
    }
    let types = python::parquet_types(&out_dir().join("results.parquet"));
    assert_eq!(types["stderr_tail"], "string", "{types}");
}

#[test]
fn the_last_stderr_line_is_in_the_stage_log() {
    applied();
    let log = out_dir()
        .join("logs/run__wordcount__cpp__optimized__linux-amd64__lab-amd64__docker__fresh__0.log");
    let text =
        std::fs::read_to_string(&log).unwrap_or_else(|error| panic!("{}: {error}", log.display()));
    assert!(
        text.contains(&format!("stderr (last line): {STDERR_TAIL}")),
        "{text}"
    );
}

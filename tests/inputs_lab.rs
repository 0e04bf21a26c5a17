//! A third-party program brought in unmodified, end to end on the lab
//! (tests/fixtures/inputs): it takes no arguments, reads `input.txt` from
//! its working directory, prints its own start line and no result line, and
//! keeps separate sources for its wasm image, in C++, Rust (with a crate
//! from crates.io) and Go (with a module from outside the standard library,
//! served by a Go module proxy in files, tests/fixtures/goproxy). Each
//! workload is built only for the targets it has sources for, its
//! dependencies are vendored on the runner and the builds stay offline, and
//! every run on two lab hosts via Docker and containerd is ok, with what the
//! program wrote to stderr in the results.

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

/// The project's templates and the fixture, in a temporary tree.
fn tree() -> &'static lab::Tree {
    static TREE: OnceLock<lab::Tree> = OnceLock::new();
    TREE.get_or_init(|| lab::Tree::copy(&["templates"], "tests/fixtures/inputs"))
}

/// Where the vendor stage finds `go` and fetches from: the test's own Go
/// module proxy and caches, so the first apply really fetches.
fn registries(command: &mut Command, tree: &lab::Tree) {
    let go_dir = std::env::var_os("PIPELINE_GO")
        .map(PathBuf::from)
        .and_then(|go| go.parent().map(PathBuf::from));
    let path = std::env::join_paths(go_dir.into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    command
        .env("PATH", path)
        .env(
            "GOPROXY",
            format!(
                "file://{}",
                lab::repository().join("tests/fixtures/goproxy").display()
            ),
        )
        // A private module, as sum.golang.org would not know it; go.sum pins it.
        .env("GONOSUMDB", "example.com")
        .env("GOMODCACHE", tree.root.join("go-modules"))
        .env("GOFLAGS", "-modcacherw")
        .env("CARGO_HOME", tree.root.join("cargo-home"));
}

/// No registry at all: Go's proxy off, cargo offline with an empty home.
fn no_registries(command: &mut Command, tree: &lab::Tree) {
    command
        .env("GOPROXY", "off")
        .env("GOMODCACHE", tree.root.join("go-modules-empty"))
        .env("CARGO_HOME", tree.root.join("cargo-home-empty"))
        .env("CARGO_NET_OFFLINE", "true");
}

fn pipeline(args: &[&str]) -> Output {
    pipeline_with(args, EXPERIMENT, registries)
}

fn pipeline_with(args: &[&str], experiment: &str, env: fn(&mut Command, &lab::Tree)) -> Output {
    lab::lab();
    let tree = tree();
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    command
        .args(args)
        .arg(tree.root.join(format!("experiments/{experiment}.yaml")))
        .arg("-i")
        .arg(lab::repository().join(".lab/inventory.yaml"))
        .arg("--out")
        .arg(tree.root.join("out"))
        .current_dir(lab::repository());
    env(&mut command, tree);
    command.output().expect("pipeline runs")
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
        "SELECT workload, language, target FROM t ORDER BY ALL",
    );
    let mut expected = Vec::new();
    for language in ["cpp", "go", "rust"] {
        expected.push(serde_json::json!(["wordcount", language, "linux/amd64"]));
        expected.push(serde_json::json!(["wordcount", language, "linux/arm64"]));
    }
    for language in ["cpp", "go", "rust"] {
        expected.push(serde_json::json!(["wordcount-wasm", language, "wasm"]));
    }
    assert_eq!(rows, serde_json::Value::Array(expected));
}

#[test]
fn the_unmodified_program_runs_ok_on_two_hosts_via_both_engines() {
    applied();
    let rows = python::query_parquet(
        &out_dir().join("results.parquet"),
        "SELECT workload, host, engine, runtime, target, count(*), bool_and(ok), \
         min(to_main_ms), min(stderr_tail), max(stderr_tail), max(exit_code), language \
         FROM t GROUP BY ALL ORDER BY ALL",
    );
    let rows = rows.as_array().expect("rows");
    // Per language, native on its own host, wasm on both; two engines
    // each: 8 cells, 24 in all.
    assert_eq!(rows.len(), 24, "{rows:#?}");
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
    // The whole output is in the log, and only there: not in the journal.
    assert!(text.contains("stdout| lines=3 words=9 bytes=44"), "{text}");
    assert!(text.contains(&format!("stderr| {STDERR_TAIL}")), "{text}");
    let journal = std::fs::read_to_string(out_dir().join("journal.jsonl")).expect("journal");
    assert!(
        !journal.contains("words=9 bytes"),
        "output reached the journal"
    );
}

#[test]
fn dependencies_are_vendored_on_the_runner_and_the_builds_use_them() {
    applied();
    let dockerfiles = out_dir().join("dockerfiles");
    let read = |path: &str| {
        std::fs::read_to_string(dockerfiles.join(path))
            .unwrap_or_else(|error| panic!("{path}: {error}"))
    };
    let rust = read("wordcount/rust/optimized/linux-arm64.Dockerfile");
    assert!(rust.contains("COPY vendor/ ./vendor/"), "{rust}");
    assert!(rust.contains("replace-with = \"vendored\""), "{rust}");
    assert!(rust.contains("--offline"), "{rust}");
    let go = read("wordcount-wasm/go/optimized/wasm.Dockerfile");
    assert!(go.contains("COPY vendor/ ./vendor/"), "{go}");
    assert!(go.contains("GOFLAGS=-mod=vendor"), "{go}");
    let cpp = read("wordcount/cpp/optimized/linux-amd64.Dockerfile");
    assert!(!cpp.contains("vendor"), "C++ does not vendor: {cpp}");

    // The vendored trees hold the crate and the module, and the two
    // workloads that share a lockfile share one tree.
    let cache = tree().root.join("out/.vendor");
    let mut trees: Vec<String> = std::fs::read_dir(&cache)
        .unwrap_or_else(|error| panic!("{}: {error}", cache.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    trees.sort();
    assert_eq!(trees.len(), 2, "{trees:?}");
    assert!(
        trees[0].starts_with("go-") && trees[1].starts_with("rust-"),
        "{trees:?}"
    );
    assert!(
        cache
            .join(&trees[0])
            .join("example.com/textcount/textcount.go")
            .is_file()
    );
    assert!(cache.join(&trees[0]).join("modules.txt").is_file());
    let crates: Vec<String> = std::fs::read_dir(cache.join(&trees[1]))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        crates.iter().any(|name| name.starts_with("memchr")),
        "{crates:?}"
    );

    // Of the two stages that share the rust tree, one ran the tool, whose
    // own output is in its log, and the other, waiting for it, reused it.
    let logs: Vec<String> = ["wordcount", "wordcount-wasm"]
        .iter()
        .map(|workload| {
            std::fs::read_to_string(out_dir().join(format!("logs/vendor__{workload}__rust.log")))
                .expect("vendor log")
        })
        .collect();
    let ran: Vec<&String> = logs
        .iter()
        .filter(|log| log.contains("$ cargo vendor --locked") && log.contains("Vendoring memchr"))
        .collect();
    let reused = logs
        .iter()
        .filter(|log| log.contains("reusing the vendored tree"))
        .count();
    assert_eq!((ran.len(), reused), (1, 1), "{logs:#?}");
}

/// A second experiment over the same sources and output folder reuses the
/// vendored trees with every registry out of reach.
#[test]
fn a_second_apply_reuses_the_vendored_trees_without_any_registry() {
    applied();
    let tree = tree();
    let spec = std::fs::read_to_string(tree.root.join(format!("experiments/{EXPERIMENT}.yaml")))
        .expect("fixture spec");
    let again = "wordcount-again";
    std::fs::write(
        tree.root.join(format!("experiments/{again}.yaml")),
        spec.replace("experiment: wordcount\n", &format!("experiment: {again}\n")),
    )
    .expect("second spec");
    let output = pipeline_with(&["apply", "--only", "vendor"], again, no_registries);
    assert!(output.status.success(), "{}", lab::describe_output(&output));
    let logs = tree.root.join("out").join(again).join("logs");
    for stage in [
        "wordcount__rust",
        "wordcount__go",
        "wordcount-wasm__rust",
        "wordcount-wasm__go",
    ] {
        let log = std::fs::read_to_string(logs.join(format!("vendor__{stage}.log")))
            .unwrap_or_else(|error| panic!("{stage}: {error}"));
        assert!(log.contains("reusing the vendored tree"), "{stage}: {log}");
        assert!(!log.contains("$ "), "no command ran for {stage}: {log}");
    }
}

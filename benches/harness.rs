//! The harness's own accuracy and overhead, measured on the lab side by side
//! with the methods it replaces (docs/performance.md keeps the figures):
//!
//! 1. start-up: the pipeline's `to_main` against the paper's method, a
//!    `date +%s%N` on the host and then `ctr run --rm` / `docker run --rm`,
//!    for the same image, host and repetitions. Target: pipeline/paper ≤ 0.65
//!    with a standard deviation no larger;
//! 2. pull: the pipeline's fresh `pull_ms` against `ctr images pull` of the
//!    same image from the same registry endpoint (TLS) on the same host.
//!    Target ≤ 0.5;
//! 3. an apply's wall time over the critical path of its stages' times
//!    (target ≤ 1.05), and the makespan of three hosts measuring in
//!    parallel (isolation off) over that of the slowest of them alone
//!    (target ≤ 1.2).
//!
//! The memory of an apply is benches/apply_memory.rs's. Needs what the lab
//! tests need (scripts/install-deps, the shim built; the lab is brought up
//! here). Repetitions: PIPELINE_BENCH_REPETITIONS, 20 unless set. Prints
//! each figure and ratio; exits 1 when a target is missed.

#[path = "../tests/common/apply.rs"]
mod apply;
#[path = "../tests/common/lab.rs"]
mod lab;
#[path = "../tests/common/python.rs"]
mod python;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The lab's amd64 host: native, so nothing is emulated in the comparison.
const HOST: &str = "lab-amd64";
const WASM_RUNTIME: &str = "io.containerd.wasmtime.v1";

/// One ok run of results.parquet, the columns the benchmark compares.
#[derive(Debug, Clone)]
struct Row {
    engine: String,
    target: String,
    scenario: String,
    image_ref: String,
    pull_ms: Option<f64>,
    to_main_ms: Option<f64>,
}

/// The ok runs, read with DuckDB as the tests read the tables.
fn read_results(path: &Path) -> Vec<Row> {
    let rows = python::query_parquet(
        path,
        "SELECT engine, target, scenario, image_ref, pull_ms, to_main_ms FROM t WHERE ok",
    );
    let text = |value: &serde_json::Value| value.as_str().expect("text").to_string();
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|row| Row {
            engine: text(&row[0]),
            target: text(&row[1]),
            scenario: text(&row[2]),
            image_ref: text(&row[3]),
            pull_ms: row[4].as_f64(),
            to_main_ms: row[5].as_f64(),
        })
        .collect()
}

/// Median and sample standard deviation.
fn median_sd(values: &[f64]) -> (f64, f64) {
    assert!(!values.is_empty(), "no values to summarise");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        f64::midpoint(sorted[middle - 1], sorted[middle])
    } else {
        sorted[middle]
    };
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let variance =
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len().max(2) - 1) as f64;
    (median, variance.sqrt())
}

/// Runs a bash script on a lab host over SSH with the lab's key, as a user
/// of the paper's scripts would log in; returns its stdout.
fn on_host(address: &str, script: &str) -> String {
    let ssh = lab::repository().join(".lab/ssh");
    let mut child = Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            ssh.join("known_hosts").display()
        ))
        .arg("-i")
        .arg(ssh.join("id_ed25519"))
        .arg(format!("root@{address}"))
        .arg("bash -s")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script written");
    let output = child.wait_with_output().expect("ssh ends");
    assert!(
        output.status.success(),
        "the script failed on {address}: {}\n{script}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn host_address(name: &str) -> String {
    lab::lab()
        .hosts
        .iter()
        .find(|entry| entry.host.name == name)
        .unwrap_or_else(|| panic!("no lab host {name}"))
        .host
        .address
        .clone()
}

/// The paper's start-up method for one image: pulled once, then `repetitions`
/// times a `date +%s%N` followed by `ctr run --rm` or `docker run --rm`, and
/// the program's main-start timestamp minus that date.
fn paper_to_main(engine: &str, target: &str, image: &str, repetitions: usize) -> Vec<f64> {
    let wasm = target == "wasm";
    let platform = if wasm { "wasi/wasm" } else { target };
    let cgroup = format!("/plab-{HOST}");
    let (pull, run) = if engine == "containerd" {
        let runtime = if wasm {
            format!("--runtime {WASM_RUNTIME}")
        } else {
            String::new()
        };
        (
            format!(
                "ctr -n paper images pull --plain-http --platform {platform} {image} >/dev/null"
            ),
            format!(
                "ctr -n paper run --rm --platform {platform} {runtime} --cgroup {cgroup}/paper-$i {image} paper-$i"
            ),
        )
    } else {
        let runtime = if wasm {
            format!("--runtime={WASM_RUNTIME}")
        } else {
            String::new()
        };
        (
            format!("docker pull -q --platform {platform} {image} >/dev/null"),
            format!("docker run --rm --platform {platform} {runtime} {image}"),
        )
    };
    let script = format!(
        "set -e\n{pull}\nfor i in $(seq {repetitions}); do\n  start=$(date +%s%N)\n  out=$({run})\n  \
         main=$(sed -n 's/^PIPELINE_MAIN_START_NS=//p' <<<\"$out\")\n  echo \"$start $main\"\ndone\n"
    );
    on_host(&host_address(HOST), &script)
        .lines()
        .map(|line| {
            let (start, main) = line.split_once(' ').expect("two timestamps");
            let start: i64 = start.parse().expect("date +%s%N");
            let main: i64 = main
                .parse()
                .unwrap_or_else(|_| panic!("no main-start marker in a paper run: {line}"));
            (main - start) as f64 / 1e6
        })
        .collect()
}

/// `ctr images pull` of an image that was removed first, timed on the host,
/// from the endpoint the pipeline pulls from (the lab's registry over TLS).
fn ctr_pull(image: &str, repetitions: usize) -> Vec<f64> {
    let image = image.replace(
        &format!(":{}/", pipeline::lab::REGISTRY_PORT),
        &format!(":{}/", pipeline::lab::REGISTRY_TLS_PORT),
    );
    // The lab's CA, which the hosts' daemons trust the same way.
    let trust = lab::repository().join(".lab/tls/trust.pem");
    let trust = trust.display();
    let script = format!(
        "set -e\nexport SSL_CERT_FILE={trust}\nfor i in $(seq {repetitions}); do\n  ctr -n paper images rm --sync {image} >/dev/null 2>&1 || true\n  \
         start=$(date +%s%N)\n  ctr -n paper images pull --platform linux/amd64 {image} >/dev/null\n  \
         end=$(date +%s%N)\n  echo $((end - start))\ndone\nctr -n paper images rm --sync {image} >/dev/null\n"
    );
    on_host(&host_address(HOST), &script)
        .lines()
        .map(|line| line.trim().parse::<f64>().expect("ns") / 1e6)
        .collect()
}

/// When stage `id` could finish at best: its own time after the latest of
/// the stages it needs.
fn finish(
    id: &str,
    needs: &BTreeMap<String, Vec<String>>,
    took: &BTreeMap<String, f64>,
    memo: &mut BTreeMap<String, f64>,
) -> f64 {
    if let Some(done) = memo.get(id) {
        return *done;
    }
    let mut before = 0.0_f64;
    for need in needs.get(id).into_iter().flatten() {
        before = before.max(finish(need, needs, took, memo));
    }
    let done = before + took.get(id).copied().unwrap_or(0.0);
    memo.insert(id.to_string(), done);
    done
}

/// What the apply started at `since_ms` (epoch ms) could take at best, from
/// its stages' times in the journal: the longest chain of stages that need
/// each other, or the measured runs one after another, whichever is longer.
fn best_case_ms(experiment: &apply::Experiment, since_ms: u64) -> f64 {
    let mut started = BTreeMap::new();
    let mut took = BTreeMap::new();
    for event in apply::JournalTail::read(&experiment.journal_path()) {
        if event.at_ms < since_ms {
            continue;
        }
        match event.event.as_str() {
            "started" => {
                started.insert(event.stage.clone(), event.at_ms);
            }
            "succeeded" | "failed" => {
                if let Some(start) = started.get(&event.stage) {
                    took.insert(
                        event.stage.clone(),
                        event.at_ms.saturating_sub(*start) as f64,
                    );
                }
            }
            _ => {}
        }
    }
    let plan = experiment.plan();
    let needs: BTreeMap<String, Vec<String>> = plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|stage| {
            let id = stage["id"].as_str().expect("id").to_string();
            let needs = stage["needs"]
                .as_array()
                .expect("needs")
                .iter()
                .map(|need| need.as_str().expect("a stage id").to_string())
                .collect();
            (id, needs)
        })
        .collect();
    let mut memo = BTreeMap::new();
    let chain = needs
        .keys()
        .map(|id| finish(id, &needs, &took, &mut memo))
        .fold(0.0, f64::max);
    // The lab's hosts share one machine, whose measured runs take turns: the
    // runs one after another are a path too, whatever the graph allows.
    let runs_in_turn: f64 = took
        .iter()
        .filter(|(id, _)| id.starts_with("run/"))
        .map(|(_, ms)| ms)
        .sum();
    chain.max(runs_in_turn)
}

/// The lab's hosts, for the makespan comparison: each runs the same cells
/// (the wasm image through both engines).
const FLEET: [&str; 3] = ["lab-amd64", "lab-arm64", "lab-riscv64"];

/// The lab's inventory with measurement isolation off (each host its own
/// machine, as on a real fleet), and its paths made absolute so it can sit
/// in the bench's tree.
fn fleet_inventory(tree: &apply::Tree) -> std::path::PathBuf {
    let lab_dir = lab::repository().join(".lab");
    let text =
        std::fs::read_to_string(lab_dir.join("inventory.yaml")).expect("the lab's inventory");
    let mut fleet = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("pipeline_machine:") {
            continue;
        }
        match trimmed.split_once(": ") {
            Some((key @ ("ansible_ssh_private_key_file" | "pipeline_known_hosts"), relative)) => {
                let indent = &line[..line.len() - trimmed.len()];
                let _ = writeln!(fleet, "{indent}{key}: {}", lab_dir.join(relative).display());
            }
            _ => {
                let _ = writeln!(fleet, "{line}");
            }
        }
    }
    tree.write("inventory-fleet.yaml", &fleet);
    tree.path("inventory-fleet.yaml")
}

/// The wall time of applies that only measure (images pushed before): the
/// fleet's hosts together, then each alone, with the same cells per host.
fn fleet_makespans(tree: &apply::Tree, repetitions: usize) -> (f64, Vec<(String, f64)>) {
    let inventory = fleet_inventory(tree);
    let timed = |name: &str, hosts: Vec<&'static str>| {
        let mut shape = apply::Shape::hello(name);
        shape.targets = vec!["wasm"];
        shape.hosts = hosts;
        shape.scenarios = vec!["cached"];
        shape.repetitions = u32::try_from(repetitions).expect("repetitions");
        let experiment = tree.experiment(&shape);
        let run = |args: &[&str]| {
            let output = experiment
                .command_on(args, &inventory)
                .output()
                .expect("pipeline runs");
            assert!(
                output.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        run(&["apply", "--only", "index"]);
        let started = Instant::now();
        run(&["apply"]);
        started.elapsed().as_secs_f64() * 1e3
    };
    let parallel = timed("harness-fleet", FLEET.to_vec());
    let alone = FLEET
        .iter()
        .map(|host| {
            (
                (*host).to_string(),
                timed(&format!("harness-{host}"), vec![host]),
            )
        })
        .collect();
    (parallel, alone)
}

/// CPU seconds (user and system) the waited-for children of this process
/// used so far: the pipeline and the ssh clients it starts.
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &raw mut usage) };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn epoch_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    u64::try_from(now.expect("after 1970").as_millis()).expect("ms fit")
}

fn main() {
    let repetitions: usize = std::env::var("PIPELINE_BENCH_REPETITIONS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20);
    lab::lab();
    let _turn = apply::lab_turn();
    let tree = apply::Tree::new();
    let mut report = String::new();
    let mut missed = Vec::new();

    // --- 1. start-up: each cell alone, as the paper's loop runs it --------
    // One apply per cell, so its repetitions follow each other as the
    // paper's loop's do, then the paper's method on the same image and host.
    for engine in ["containerd", "docker"] {
        for target in ["linux/amd64", "wasm"] {
            let mut shape =
                apply::Shape::hello(&format!("harness-{engine}-{}", target.replace('/', "-")));
            shape.targets = vec![target];
            shape.hosts = vec![HOST];
            shape.engines = vec![engine];
            shape.scenarios = vec!["cached"];
            shape.repetitions = u32::try_from(repetitions).expect("repetitions");
            let experiment = tree.experiment(&shape);
            let applied = experiment.run(&["apply"]);
            assert_eq!(applied.code(), Some(0), "{}", applied.describe());
            let rows = read_results(&experiment.table("results"));
            let pipeline: Vec<f64> = rows.iter().filter_map(|row| row.to_main_ms).collect();
            let image = &rows.first().expect("measured rows").image_ref;
            let paper = paper_to_main(engine, target, image, repetitions);
            let ((pm, ps), (qm, qs)) = (median_sd(&pipeline), median_sd(&paper));
            let ratio = pm / qm;
            let _ = writeln!(
                report,
                "start-up {engine} {target}: pipeline to_main {pm:.1} ms (sd {ps:.1}, n {}) / paper's method {qm:.1} ms (sd {qs:.1}, n {}) = {ratio:.2} (target ≤ 0.65, sd no larger: {})",
                pipeline.len(),
                paper.len(),
                if ps <= qs { "yes" } else { "no" }
            );
            if ratio > 0.65 || ps > qs {
                missed.push("start-up against the paper's method");
            }
        }
    }

    // --- 2 and 3a. fresh pulls, and the apply's overhead --------------------
    let mut shape = apply::Shape::hello("harness");
    shape.targets = vec!["linux/amd64", "wasm"];
    shape.hosts = vec![HOST];
    shape.repetitions = u32::try_from(repetitions).expect("repetitions");
    let experiment = tree.experiment(&shape);
    // A first apply builds and pushes; the timed one prepares the host,
    // measures and writes the tables.
    let built = experiment.run(&["apply", "--only", "index"]);
    assert_eq!(built.code(), Some(0), "{}", built.describe());
    let since_ms = epoch_ms();
    let cpu_before = children_cpu_s();
    let started = Instant::now();
    let measured = experiment.run(&["apply"]);
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    let cpu_s = children_cpu_s() - cpu_before;
    assert_eq!(measured.code(), Some(0), "{}", measured.describe());
    let rows = read_results(&experiment.table("results"));
    let bound = best_case_ms(&experiment, since_ms);
    let ratio = wall_ms / bound;
    let _ = writeln!(
        report,
        "apply of {} runs: wall time {:.1} s over its best case {:.1} s = {ratio:.3} (target ≤ 1.05); the runner's own CPU (pipeline and ssh) {cpu_s:.1} s",
        rows.len(),
        wall_ms / 1e3,
        bound / 1e3
    );
    if ratio > 1.05 {
        missed.push("apply wall time over its best case");
    }

    let fresh: Vec<&Row> = rows
        .iter()
        .filter(|row| {
            row.engine == "containerd" && row.target == "linux/amd64" && row.scenario == "fresh"
        })
        .collect();
    let pipeline: Vec<f64> = fresh.iter().filter_map(|row| row.pull_ms).collect();
    let ctr = ctr_pull(&fresh.first().expect("fresh rows").image_ref, repetitions);
    let ((pm, ps), (cm, cs)) = (median_sd(&pipeline), median_sd(&ctr));
    let ratio = pm / cm;
    let _ = writeln!(
        report,
        "fresh pull, containerd, linux/amd64: pipeline {pm:.1} ms (sd {ps:.1}) / ctr images pull {cm:.1} ms (sd {cs:.1}) = {ratio:.2} (target ≤ 0.5)"
    );
    if ratio > 0.5 {
        missed.push("pull against ctr images pull");
    }

    // --- 3b. three hosts in parallel against each alone -----------------
    let (parallel, alone) = fleet_makespans(&tree, repetitions.div_ceil(4));
    let slowest = alone.iter().map(|(_, ms)| *ms).fold(0.0, f64::max);
    let ratio = parallel / slowest;
    let _ = writeln!(
        report,
        "makespan of {} measuring in parallel (isolation off) {:.1} s / the slowest alone {:.1} s ({}) = {ratio:.2} (target ≤ 1.2)",
        FLEET.join(", "),
        parallel / 1e3,
        slowest / 1e3,
        alone
            .iter()
            .map(|(host, ms)| format!("{host} {:.1} s", ms / 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if ratio > 1.2 {
        missed.push("three hosts against one");
    }

    print!("{report}");
    if !missed.is_empty() {
        eprintln!("missed: {}", missed.join("; "));
        std::process::exit(1);
    }
}

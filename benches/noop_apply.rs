//! A no-op re-apply of an experiment of about 1,000 cells, end to end: load
//! the plan from disk, read the journal, walk every stage, find each up to
//! date, and leave the tables alone. The first apply runs on the fake
//! backends of tests/common/fakes.rs, so the journal and the tables are
//! real files. Target: under 500 ms, for the first re-apply (which also
//! compacts the journal) and for the mean of later ones; the run prints
//! both as ratios of the target and fails above it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::{ProjectShape, apply, fakes, project};
use criterion::{Criterion, criterion_group};
use pipeline::plan::{PlanOptions, load_plan};

/// 4 workloads × 4 languages × 3 targets (amd64, arm64, wasm) on 4 hosts
/// per architecture, Docker and containerd, fresh and cached: native images
/// run on the hosts of their architecture and wasm on all, so 16 images ×
/// 16 host slots × 2 engines × 2 scenarios = 1,024 cells.
const SHAPE: ProjectShape = ProjectShape {
    name: "noop",
    workloads: 4,
    languages: 4,
    hosts_per_arch: 4,
    repetitions: 10,
    unoptimized: false,
};
const TIME_TARGET: Duration = Duration::from_millis(500);
const TABLES: [&str; 4] = ["images", "hosts", "results", "summary"];

fn modified(dir: &Path) -> Vec<SystemTime> {
    TABLES
        .iter()
        .map(|table| {
            let path = dir.join(format!("{table}.parquet"));
            std::fs::metadata(&path)
                .and_then(|metadata| metadata.modified())
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        })
        .collect()
}

/// A no-op re-apply, checked to be one: nothing ran, no backend was
/// called, no table was written.
fn noop_apply(spec: &Path, out_root: &Path, fakes: &fakes::Fakes, stages: usize) -> Duration {
    let dir = out_root.join("noop");
    let tables_before = modified(&dir);
    let calls_before = fakes.calls();
    let started = Instant::now();
    let (summary, ran) = apply(spec, out_root, fakes);
    let elapsed = started.elapsed();
    assert_eq!(ran, Vec::<String>::new(), "a no-op apply runs nothing");
    assert_eq!(summary.up_to_date, stages);
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(
        fakes.calls(),
        calls_before,
        "a no-op apply calls no backend"
    );
    assert_eq!(
        modified(&dir),
        tables_before,
        "a no-op apply writes no table"
    );
    elapsed
}

fn noop_reapply(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let spec = project(dir.path(), &SHAPE);
    let out_root = dir.path().join("out");
    let plan = load_plan(&spec, &PlanOptions::default()).expect("the spec is valid");
    let stages = plan.graph.len();
    let cells = plan.experiment.cells.len();
    drop(plan);
    assert!(
        (900..=1100).contains(&cells),
        "the benchmark is about 1,000 cells, got {cells}"
    );

    let fakes = fakes::Fakes::new();
    let started = Instant::now();
    let (summary, _) = apply(&spec, &out_root, &fakes);
    assert_eq!(summary.succeeded, stages, "{:?}", summary.failed);
    println!(
        "full apply of {cells} cells, {stages} stages on fake backends: {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // The first re-apply also compacts the journal (one line per stage
    // instead of a start and an end), which later ones need not do. It
    // should run nothing either, but is timed whatever it does: it is what
    // a user waits for after an apply that measured.
    let calls_before = fakes.calls();
    let started = Instant::now();
    let (summary, ran) = apply(&spec, &out_root, &fakes);
    let first = started.elapsed();
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(fakes.calls(), calls_before, "a re-apply calls no backend");
    println!(
        "first re-apply (compacts the journal): {:.3} s = {:.2} × the 500 ms target",
        first.as_secs_f64(),
        first.as_secs_f64() / TIME_TARGET.as_secs_f64()
    );
    if !ran.is_empty() {
        println!(
            "  not a no-op: {} stage(s) ran again although nothing changed: {}",
            ran.len(),
            ran.join(", ")
        );
    }

    let mut group = c.benchmark_group("apply");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function(format!("no-op re-apply of {stages} stages"), |b| {
        b.iter(|| noop_apply(&spec, &out_root, &fakes, stages));
    });
    group.finish();

    // The mean of a few more runs decides pass or fail, after criterion's report.
    let runs = 5;
    let total: Duration = (0..runs)
        .map(|_| noop_apply(&spec, &out_root, &fakes, stages))
        .sum();
    let mean = total / runs;
    println!(
        "no-op re-apply of {cells} cells, {stages} stages, mean of {runs}: {:.3} s = {:.2} × the 500 ms target",
        mean.as_secs_f64(),
        mean.as_secs_f64() / TIME_TARGET.as_secs_f64()
    );
    if mean > TIME_TARGET || first > TIME_TARGET {
        eprintln!("a no-op re-apply is over its target");
        std::process::exit(1);
    }
}

criterion_group!(benches, noop_reapply);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}

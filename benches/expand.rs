//! Expands a spec into a DAG of over 100,000 stages, end to end (YAML, inventory,
//! project tree, expansion). Targets: under 1 s and under 300 MiB peak memory;
//! the run prints both figures as ratios of their targets and fails above them.

mod common;

use std::time::{Duration, Instant};

use common::{PeakAllocator, ProjectShape, project};
use criterion::{Criterion, criterion_group};
use pipeline::plan::{PlanOptions, load_plan};

#[global_allocator]
static ALLOCATOR: PeakAllocator = PeakAllocator;

/// 5 workloads × 4 languages × 2 variants × 3 targets on 20 hosts.
const SHAPE: ProjectShape = ProjectShape {
    name: "large",
    workloads: 5,
    languages: 4,
    hosts_per_arch: 10,
    repetitions: 15,
    unoptimized: true,
};
const TIME_TARGET: Duration = Duration::from_secs(1);
const MEMORY_TARGET: usize = 300 * 1024 * 1024;

fn expand(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let spec = project(dir.path(), &SHAPE);
    let options = PlanOptions::default();

    // One measured expansion first, for the memory figure and the stage count.
    let baseline = PeakAllocator::reset();
    let started = Instant::now();
    let plan = load_plan(&spec, &options).expect("the benchmark spec is valid");
    let elapsed = started.elapsed();
    let peak = PeakAllocator::peak_since(baseline);
    let stages = plan.graph.len();
    drop(plan);
    assert!(
        stages >= 100_000,
        "the benchmark must expand at least 100,000 stages, got {stages}"
    );
    println!(
        "expand {stages} stages: first run {:.3} s ({:.2} of the 1 s target), peak heap {:.1} MiB ({:.2} of the 300 MiB target)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() / TIME_TARGET.as_secs_f64(),
        peak as f64 / (1024.0 * 1024.0),
        peak as f64 / MEMORY_TARGET as f64
    );

    let mut group = c.benchmark_group("plan");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function(format!("expand {stages} stages"), |b| {
        b.iter(|| load_plan(&spec, &options).expect("valid"));
    });
    group.finish();

    // The mean of a few more runs decides pass or fail, after criterion's report.
    let runs = 5;
    let started = Instant::now();
    for _ in 0..runs {
        drop(load_plan(&spec, &options).expect("valid"));
    }
    let mean = started.elapsed() / runs;
    println!(
        "mean of {runs}: {:.3} s = {:.2} × time target; peak {:.2} × memory target",
        mean.as_secs_f64(),
        mean.as_secs_f64() / TIME_TARGET.as_secs_f64(),
        peak as f64 / MEMORY_TARGET as f64
    );
    if mean > TIME_TARGET || peak > MEMORY_TARGET {
        eprintln!("expansion is over its target");
        std::process::exit(1);
    }
}

criterion_group!(benches, expand);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}

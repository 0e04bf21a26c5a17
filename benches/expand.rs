//! Expands a spec into a DAG of over 100,000 stages, end to end (YAML, inventory,
//! project tree, expansion). Targets: under 1 s and under 300 MiB peak memory;
//! the run prints both figures as ratios of their targets and fails above them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use pipeline::plan::{PlanOptions, load_plan};

/// Counts live heap bytes and remembers the highest count since the last reset.
struct PeakAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: PeakAllocator = PeakAllocator;

const WORKLOADS: usize = 5;
const LANGUAGES: usize = 4;
const HOSTS_PER_ARCH: usize = 10;
const REPETITIONS: usize = 15;
const TIME_TARGET: Duration = Duration::from_secs(1);
const MEMORY_TARGET: usize = 300 * 1024 * 1024;

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create folder");
    std::fs::write(path, text).expect("write");
}

/// A project of 5 workloads × 4 languages × 2 variants × 3 targets on 20 hosts.
fn large_project(root: &Path) -> std::path::PathBuf {
    let languages: Vec<String> = (0..LANGUAGES).map(|l| format!("lang{l}")).collect();
    for language in &languages {
        for template in ["optimized", "unoptimized", "wasm"] {
            write(
                root,
                &format!("templates/{language}/{template}.Dockerfile.j2"),
                "FROM scratch\n",
            );
        }
    }
    let mut spec = String::from("experiment: large\nworkloads:\n");
    for workload in 0..WORKLOADS {
        let name = format!("workload{workload}");
        write(
            root,
            &format!("workloads/{name}/workload.yaml"),
            &format!("binary: {name}\nresult: ok\n"),
        );
        write(
            root,
            &format!("workloads/{name}/data/input.txt"),
            &"data\n".repeat(1000),
        );
        for language in &languages {
            write(
                root,
                &format!("workloads/{name}/{language}/main.src"),
                &format!("{name} {language}\n"),
            );
        }
        let _ = writeln!(
            spec,
            "  - name: {name}\n    languages: [{}]",
            languages.join(", ")
        );
    }
    spec.push_str(
        "variants:\n  optimized:\n  unoptimized:\ntargets: [linux/amd64, linux/arm64, wasm]\n",
    );
    spec.push_str("runs:\n  - hosts: [all]\n    engines: [docker, containerd]\n    scenarios: [fresh, cached]\n");
    let _ = writeln!(
        spec,
        "measure:\n  repetitions: {REPETITIONS}\n  warmup: 1\n  order: shuffled"
    );
    write(root, "experiments/large.yaml", &spec);

    let mut inventory = String::from(
        "all:\n  vars:\n    pipeline_registry: registry.test:5000\n    pipeline_engines: [docker, containerd]\n    pipeline_runtimes: [runc, wasmtime]\n  hosts:\n",
    );
    for host in 0..HOSTS_PER_ARCH * 2 {
        let arch = if host % 2 == 0 { "amd64" } else { "arm64" };
        let _ = writeln!(
            inventory,
            "    host{host}:\n      ansible_host: 10.1.0.{host}\n      pipeline_platform: linux/{arch}"
        );
    }
    write(root, "inventory.yaml", &inventory);
    root.join("experiments/large.yaml")
}

fn expand(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let spec = large_project(dir.path());
    let options = PlanOptions::default();

    // One measured expansion first, for the memory figure and the stage count.
    LIVE.store(0, Ordering::Relaxed);
    let baseline = LIVE.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let started = Instant::now();
    let plan = load_plan(&spec, &options).expect("the benchmark spec is valid");
    let elapsed = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
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

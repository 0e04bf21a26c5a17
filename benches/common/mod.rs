//! What the benchmarks on fake backends share: a synthetic project of any
//! size, an in-process `pipeline apply` of it, and a heap counter.
#![allow(dead_code)]

#[path = "../../tests/common/fakes.rs"]
pub mod fakes;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pipeline::apply::{ApplyRun, OutputLayout, PipelineWorker, run_plan};
use pipeline::events::{EventBody, EventSink, SinkError, StageEvent};
use pipeline::exec::{ApplySummary, Backoff};
use pipeline::plan::{PlanOptions, load_plan};

/// Counts live heap bytes and remembers the highest count since
/// [`PeakAllocator::reset`]. A benchmark installs it with
/// `#[global_allocator]`.
pub struct PeakAllocator;

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

impl PeakAllocator {
    /// Starts a measurement: the peak becomes what is live now.
    pub fn reset() -> usize {
        let live = LIVE.load(Ordering::Relaxed);
        PEAK.store(live, Ordering::Relaxed);
        live
    }

    /// The highest live heap since `reset`, above what was live then.
    pub fn peak_since(baseline: usize) -> usize {
        PEAK.load(Ordering::Relaxed).saturating_sub(baseline)
    }
}

pub fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create folder");
    std::fs::write(path, text).expect("write");
}

/// A synthetic experiment: `workloads` × `languages` built for amd64, arm64
/// and wasm (and `unoptimized` too when asked), run on `hosts_per_arch`
/// amd64 and as many arm64 hosts, Docker and containerd, fresh and cached:
/// native images run on the hosts of their architecture and wasm on all, so
/// it has 16 × workloads × languages × hosts_per_arch cells per variant.
pub struct ProjectShape {
    pub name: &'static str,
    pub workloads: usize,
    pub languages: usize,
    pub hosts_per_arch: usize,
    pub repetitions: usize,
    pub unoptimized: bool,
}

impl ProjectShape {
    pub fn cells(&self) -> usize {
        let variants = if self.unoptimized { 2 } else { 1 };
        16 * self.workloads * self.languages * self.hosts_per_arch * variants
    }
}

/// Writes the project of `shape` into `root`; returns its spec's path.
pub fn project(root: &Path, shape: &ProjectShape) -> PathBuf {
    let languages: Vec<String> = (0..shape.languages).map(|l| format!("lang{l}")).collect();
    for language in &languages {
        for template in ["optimized", "unoptimized", "wasm"] {
            write(
                root,
                &format!("templates/{language}/{template}.Dockerfile.j2"),
                "FROM scratch\n",
            );
        }
    }
    let mut spec = format!("experiment: {}\nworkloads:\n", shape.name);
    for workload in 0..shape.workloads {
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
    if shape.unoptimized {
        spec.push_str("variants:\n  optimized:\n  unoptimized:\n");
    }
    spec.push_str("targets: [linux/amd64, linux/arm64, wasm]\n");
    spec.push_str("runs:\n  - hosts: [all]\n    engines: [docker, containerd]\n    scenarios: [fresh, cached]\n");
    let _ = writeln!(
        spec,
        "measure:\n  repetitions: {}\n  warmup: 1\n  order: shuffled",
        shape.repetitions
    );
    let spec_path = format!("experiments/{}.yaml", shape.name);
    write(root, &spec_path, &spec);

    let mut inventory = String::from(
        "all:\n  vars:\n    pipeline_registry: registry.test:5000\n    pipeline_engines: [docker, containerd]\n    pipeline_runtimes: [runc, wasmtime]\n  hosts:\n",
    );
    for host in 0..shape.hosts_per_arch * 2 {
        let arch = if host % 2 == 0 { "amd64" } else { "arm64" };
        let _ = writeln!(
            inventory,
            "    host{host}:\n      ansible_host: 10.1.{}.{}\n      pipeline_platform: linux/{arch}",
            host / 250,
            host % 250
        );
    }
    write(root, "inventory.yaml", &inventory);
    root.join(spec_path)
}

/// The display: remembers which stages started, so a re-apply that was
/// meant to be a no-op can say what it ran.
#[derive(Default)]
pub struct StartedStages(pub Vec<String>);

impl EventSink for StartedStages {
    fn on_event(&mut self, event: &StageEvent) -> Result<(), SinkError> {
        if matches!(event.body, EventBody::Started { .. }) {
            self.0.push(event.stage.to_string());
        }
        Ok(())
    }
}

/// `pipeline apply <spec>` as the program runs it, minus SSH: a runtime, the
/// plan loaded from disk, the worker, and the walk, on the fake backends.
pub fn apply(spec: &Path, out_root: &Path, fakes: &fakes::Fakes) -> (ApplySummary, Vec<String>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let plan = Arc::new(load_plan(spec, &PlanOptions::default()).expect("the spec is valid"));
    let layout = OutputLayout::new(out_root, &plan.experiment.name);
    let worker = Arc::new(PipelineWorker::new(
        &plan,
        fakes.backends(),
        layout.dir.clone(),
    ));
    let run = ApplyRun {
        plan: Arc::clone(&plan),
        experiment_plan: plan,
        layout: &layout,
        worker,
        forced: Vec::new(),
        backoff: Backoff::default(),
    };
    let mut started = StartedStages::default();
    let summary = runtime
        .block_on(run_plan(run, &mut started, std::future::pending()))
        .expect("apply");
    (summary, started.0)
}

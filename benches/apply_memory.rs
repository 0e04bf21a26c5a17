//! Peak heap of a whole `pipeline apply` (plan, walk, journal, the Parquet
//! tables) at about 100, 1,000 and 10,000 cells, on the fake backends of
//! tests/common/fakes.rs, so only the tool's own memory counts. An apply
//! keeps every stage's latest outcome (what a resume reuses and the tables
//! are written from), so its memory grows with the cells; the targets bound
//! it per cell: from 1,000 to 10,000 cells the peak grows at most 1.1 times
//! as fast as the cells do, and stays under 512 MiB at 10,000. The run prints
//! each figure, the plan's share and the ratios, and fails above the targets.

mod common;

use std::time::Instant;

use common::{PeakAllocator, ProjectShape, apply, fakes, project};
use pipeline::plan::{PlanOptions, load_plan};

#[global_allocator]
static ALLOCATOR: PeakAllocator = PeakAllocator;

const SHAPES: [ProjectShape; 3] = [
    ProjectShape {
        name: "cells-100",
        workloads: 1,
        languages: 1,
        hosts_per_arch: 6,
        repetitions: 10,
        unoptimized: false,
    },
    ProjectShape {
        name: "cells-1k",
        workloads: 4,
        languages: 4,
        hosts_per_arch: 4,
        repetitions: 10,
        unoptimized: false,
    },
    ProjectShape {
        name: "cells-10k",
        workloads: 8,
        languages: 8,
        hosts_per_arch: 10,
        repetitions: 10,
        unoptimized: false,
    },
];
const MEMORY_TARGET: usize = 512 * 1024 * 1024;
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks shapes by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let mut peaks = Vec::new();
    for shape in &SHAPES {
        if !filter.is_empty() && !filter.iter().any(|name| shape.name.contains(name.as_str())) {
            continue;
        }
        let dir = tempfile::tempdir().expect("temporary folder");
        let spec = project(dir.path(), shape);
        // The plan alone, for the breakdown: an apply holds it throughout.
        let baseline = PeakAllocator::reset();
        let plan = load_plan(&spec, &PlanOptions::default()).expect("the spec is valid");
        let plan_heap = PeakAllocator::peak_since(baseline);
        drop(plan);
        let fakes = fakes::Fakes::new();
        let baseline = PeakAllocator::reset();
        let started = Instant::now();
        let (summary, _) = apply(&spec, &dir.path().join("out"), &fakes);
        let elapsed = started.elapsed();
        let peak = PeakAllocator::peak_since(baseline);
        assert!(summary.failed.is_empty(), "{:?}", summary.failed);
        let runs = shape.cells() * (shape.repetitions + 1);
        println!(
            "apply of {} cells ({} stages, {runs} container runs) on fake backends: {:.1} s, peak heap {:.1} MiB (the plan alone {:.1} MiB), {:.0} bytes per cell, {:.2} × the 512 MiB target",
            shape.cells(),
            summary.succeeded,
            elapsed.as_secs_f64(),
            peak as f64 / MIB,
            plan_heap as f64 / MIB,
            peak as f64 / shape.cells() as f64,
            peak as f64 / MEMORY_TARGET as f64
        );
        peaks.push((shape.cells(), peak));
    }
    let mut over = peaks.iter().any(|(_, peak)| *peak > MEMORY_TARGET);
    for pair in peaks.windows(2) {
        let ((small_cells, small), (large_cells, large)) = (pair[0], pair[1]);
        let growth = large as f64 / small as f64;
        let cells = large_cells as f64 / small_cells as f64;
        println!(
            "{small_cells} → {large_cells} cells ({cells:.1} ×): peak heap {growth:.2} × ({:.2} of the cells' growth)",
            growth / cells
        );
        over |= growth > 1.1 * cells;
    }
    if over {
        eprintln!("an apply's memory is over its target");
        std::process::exit(1);
    }
}

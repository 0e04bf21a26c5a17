//! `aggregate`: counts what the experiment measured. The summary table
//! itself is written by the results writer whenever results change, so it
//! also holds runs that `--only` or an earlier apply measured.

use crate::events::StageOutput;
use crate::exec::Job;
use crate::plan::{StageKind, StageWork};

pub fn run(job: &Job) -> StageOutput {
    let plan = &job.plan;
    let mut cells: Vec<usize> = job
        .inputs
        .of_kind(StageKind::Run)
        .filter_map(|(id, output)| {
            let node = plan.graph.node(id)?;
            match (&plan.graph.stage(node).work, output) {
                (StageWork::Run(run), StageOutput::Run(record)) if !run.warmup && record.ok => {
                    Some(run.cell)
                }
                _ => None,
            }
        })
        .collect();
    let runs = cells.len();
    cells.sort_unstable();
    cells.dedup();
    StageOutput::Aggregated {
        cells: cells.len(),
        runs,
    }
}

//! `prepare-host`: connects to the host (installing the agent), records
//! its facts, and checks that it has what its cells need. It leaves
//! nothing behind that later stages rely on: they connect on their own.

use crate::agent::wire::{AgentRequest, AgentResponse};
use crate::apply::ApplyContext;
use crate::events::{HostFacts, StageOutput};
use crate::exec::{Job, StageFailure};
use crate::plan::StageWork;

pub async fn run(
    context: &ApplyContext,
    job: &Job,
    host: usize,
) -> Result<StageOutput, StageFailure> {
    let plan = &job.plan;
    let experiment = &plan.experiment;
    let settings = &experiment.hosts[host];
    // Check only what this host's cells in this apply use (`--only` may
    // have left some out).
    let mut cells: Vec<usize> = plan
        .graph
        .stages()
        .filter_map(|(_, stage)| match &stage.work {
            StageWork::Run(run) if experiment.cells[run.cell].host == host => Some(run.cell),
            _ => None,
        })
        .collect();
    cells.sort_unstable();
    cells.dedup();
    let cells: Vec<&crate::plan::Cell> =
        cells.iter().map(|&cell| &experiment.cells[cell]).collect();
    let mut engines: Vec<crate::spec::Engine> = cells.iter().map(|cell| cell.engine).collect();
    engines.sort();
    engines.dedup();
    let request = AgentRequest::Facts {
        engines: engines
            .iter()
            .map(|engine| super::engine_address(plan, host, *engine, None))
            .collect(),
        qemu_cpu: settings.qemu_cpu.clone(),
    };
    let facts = match context.hosts.call(host, request, &job.cancel).await {
        Ok(AgentResponse::Facts(facts)) => facts,
        Ok(other) => return Err(super::unexpected("facts", &other)),
        Err(error) => return Err(super::host_failure(&error)),
    };
    let mut runtimes: Vec<&str> = cells.iter().map(|cell| cell.runtime.as_str()).collect();
    runtimes.sort_unstable();
    runtimes.dedup();
    for runtime in runtimes.into_iter().filter(|runtime| *runtime != "runc") {
        let shim = format!("containerd-shim-{runtime}-v1");
        if !facts.shims.contains(&shim) {
            return Err(StageFailure::fatal(format!(
                "host {} has no {shim} on its PATH, which its {runtime} cells need (found: {})",
                settings.name,
                if facts.shims.is_empty() {
                    "none".to_string()
                } else {
                    facts.shims.join(", ")
                }
            )));
        }
    }
    job.log.line(format!(
        "{}: {} {} cores, kernel {}, docker {:?}, containerd {:?}, shims {}",
        settings.name,
        facts.architecture,
        facts.cores,
        facts.kernel,
        facts.docker_version,
        facts.containerd_version,
        facts.shims.join(",")
    ));
    Ok(StageOutput::Host(HostFacts {
        host: settings.name.clone(),
        ..facts
    }))
}

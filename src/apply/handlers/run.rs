//! `run`: one measured (or warm-up) container run on a host.

use crate::agent::wire::{AgentRequest, AgentResponse, MeasureRequest};
use crate::apply::ApplyContext;
use crate::events::StageOutput;
use crate::exec::{Job, StageFailure};
use crate::plan::RunSubject;

pub async fn run(
    context: &ApplyContext,
    job: &Job,
    run: &RunSubject,
) -> Result<StageOutput, StageFailure> {
    let plan = &job.plan;
    let experiment = &plan.experiment;
    let stage = job.stage();
    let cell = &experiment.cells[run.cell];
    let image = &experiment.images[cell.image];
    let request = AgentRequest::Measure(MeasureRequest {
        engine: super::engine_address(
            plan,
            cell.host,
            cell.engine,
            context.backends.registry_credentials.as_ref(),
        ),
        image_ref: image.image_ref(),
        platform: image.target.oci_platform().to_string(),
        runtime: crate::backend::runtime_type(&cell.runtime),
        scenario: cell.scenario,
        name: format!("pipeline-{}", stage.fingerprint.short()),
        args: Some(image.run.args.clone()),
        // Rounded up: the agent must never get less time than the stage.
        timeout_s: stage.limit.timeout.map_or(300, |timeout| {
            u64::try_from(timeout.as_millis().div_ceil(1000)).unwrap_or(u64::MAX)
        }),
        cgroup_parent: experiment.hosts[cell.host].cgroup_parent.clone(),
        // qemu reads it from the environment of the program it emulates.
        env: experiment.hosts[cell.host]
            .qemu_cpu
            .iter()
            .map(|cpu| format!("QEMU_CPU={cpu}"))
            .collect(),
        marker: image.run.marker.pattern.clone(),
        marker_unit: image.run.marker.unit,
        result: image.run.result_pattern.clone(),
    });
    let mut record = match context.hosts.call(cell.host, request, &job.cancel).await {
        Ok(AgentResponse::Measured(record)) => record,
        Ok(other) => return Err(super::unexpected("measure", &other)),
        Err(error) => return Err(super::host_failure(&error)),
    };
    job.log.line(format!(
        "pull {:?} ms ({:?} bytes), to main {:?} ms, run {:?} ms, exit {:?}",
        record.pull_ms, record.pulled_bytes, record.to_main_ms, record.run_ms, record.exit_code
    ));
    job.log.line(format!(
        "phases (ms from the create request): create {:?}, start {:?}, main {:?}, exit {:?}, remove {:?}",
        record.create_ms, record.start_ms, record.to_main_ms, record.exit_ms, record.remove_ms
    ));
    // The whole output goes to the stage log, and only there.
    let output = std::mem::take(&mut record.output);
    for (stream, text) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        for line in text.lines() {
            job.log.line(format!("{stream}| {line}"));
        }
    }
    if let Some(tail) = &record.stderr_tail {
        job.log.line(format!("stderr (last line): {tail}"));
    }
    if record.ok {
        Ok(StageOutput::Run(record))
    } else {
        let message = record
            .error
            .clone()
            .unwrap_or_else(|| "the run was not ok".into());
        Err(StageFailure::fatal(message).with_partial(StageOutput::Run(record)))
    }
}

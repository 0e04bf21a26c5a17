//! `pull`: puts an image on a host's engine once, for its cached cells.

use crate::agent::wire::{AgentRequest, AgentResponse};
use crate::apply::ApplyContext;
use crate::events::StageOutput;
use crate::exec::{Job, StageFailure};

pub async fn run(
    context: &ApplyContext,
    job: &Job,
    image: usize,
    host: usize,
    engine: crate::spec::Engine,
) -> Result<StageOutput, StageFailure> {
    let image = &job.plan.experiment.images[image];
    let request = AgentRequest::EnsureImage {
        engine: super::engine_address(
            &job.plan,
            host,
            engine,
            context.backends.registry_credentials.as_ref(),
        ),
        image_ref: image.image_ref(),
        platform: image.target.oci_platform().to_string(),
    };
    match context.hosts.call(host, request, &job.cancel).await {
        Ok(AgentResponse::Image { digest, .. }) => Ok(StageOutput::Pulled {
            image_ref: image.image_ref(),
            digest,
        }),
        Ok(other) => Err(super::unexpected("pull", &other)),
        Err(error) => Err(super::host_failure(&error)),
    }
}

//! `push`: the built image into the registry as a single-platform image,
//! then read back to record its digest and compressed size.

use crate::apply::ApplyContext;
use crate::backend::registry::ImageRef;
use crate::events::{ImageRecord, StageOutput};
use crate::exec::{Job, StageFailure};
use crate::plan::StageKind;

pub async fn run(
    context: &ApplyContext,
    job: &Job,
    image: usize,
) -> Result<StageOutput, StageFailure> {
    let image = &job.plan.experiment.images[image];
    let Some(StageOutput::Image(built)) = job.inputs.one(StageKind::Build) else {
        return Err(StageFailure::fatal("nothing was built"));
    };
    let image_ref = image.image_ref();
    let platform = image.target.oci_platform();
    context
        .backends
        .builder
        .push(&image_ref, Some(&platform), &job.log)
        .await
        .map_err(|error| super::build_failure(&error))?;
    let reference =
        ImageRef::parse(&image_ref).map_err(|error| StageFailure::fatal(error.to_string()))?;
    let manifest = context
        .backends
        .registry
        .manifest(&reference)
        .await
        .map_err(|error| super::registry_failure(&error))?;
    if manifest.is_index() {
        return Err(StageFailure::fatal(format!(
            "{image_ref} was pushed as an index; a single platform manifest was expected"
        )));
    }
    job.log.line(format!(
        "pushed {image_ref} as {} ({} bytes compressed)",
        manifest.digest,
        manifest.compressed_size()
    ));
    Ok(StageOutput::Image(ImageRecord {
        digest: manifest.digest.clone(),
        oci_size_bytes: manifest.compressed_size(),
        ..built.clone()
    }))
}

//! `index`: one multi-platform OCI index over the pushed platform images
//! of a workload, language and variant.

use crate::apply::ApplyContext;
use crate::backend::registry::{ImageRef, IndexEntry};
use crate::events::StageOutput;
use crate::exec::{Job, StageFailure};

pub async fn run(
    context: &ApplyContext,
    job: &Job,
    images: &[usize],
) -> Result<StageOutput, StageFailure> {
    let experiment = &job.plan.experiment;
    let registry = &context.backends.registry;
    let parse =
        |text: &str| ImageRef::parse(text).map_err(|error| StageFailure::fatal(error.to_string()));
    let mut entries = Vec::with_capacity(images.len());
    for &index in images {
        let image = &experiment.images[index];
        let manifest = registry
            .manifest(&parse(&image.image_ref())?)
            .await
            .map_err(|error| super::registry_failure(&error))?;
        let platform = image.target.oci_platform();
        entries.push(IndexEntry {
            digest: manifest.digest,
            size: manifest.bytes.len() as u64,
            media_type: manifest.media_type,
            os: platform.os,
            architecture: platform.architecture,
            variant: platform.variant,
        });
    }
    let Some(first) = images.first() else {
        return Err(StageFailure::fatal("an index stage over no images"));
    };
    let reference = parse(&experiment.images[*first].index_ref())?;
    let (digest, _) = registry
        .put_index(&reference, &entries)
        .await
        .map_err(|error| super::registry_failure(&error))?;
    let platforms: Vec<String> = images
        .iter()
        .map(|&i| experiment.images[i].target.oci_platform().to_string())
        .collect();
    job.log.line(format!(
        "index {reference} {digest}: {}",
        platforms.join(", ")
    ));
    Ok(StageOutput::Index {
        image_ref: reference.to_string(),
        digest,
        platforms,
    })
}

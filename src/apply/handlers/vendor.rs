//! `vendor`: the dependencies of one workload's sources in one language,
//! fetched on the runner by the language's command, or found in the cache.

use crate::apply::ApplyContext;
use crate::backend::vendor::VendorRequest;
use crate::events::StageOutput;
use crate::exec::{Job, StageFailure};

pub async fn run(
    context: &ApplyContext,
    job: &Job,
    image: usize,
) -> Result<StageOutput, StageFailure> {
    let experiment = &job.plan.experiment;
    let image = &experiment.images[image];
    let Some(source) = &image.vendor else {
        return Err(StageFailure::fatal(
            "the image's language does not vendor its dependencies",
        ));
    };
    let sources = experiment.project_root.join(&source.sources);
    let request = VendorRequest {
        command: &source.command,
        sources: &sources,
        output: &source.output,
        // Shared by every experiment under the same output folder, and
        // named by what the tree depends on.
        cache_dir: context.vendor_cache().join(format!(
            "{}-{}",
            image.language,
            source.key.short()
        )),
    };
    let record = context
        .backends
        .vendor
        .vendor(&request, &job.log)
        .await
        .map_err(|error| super::failure(error.to_string(), error.is_retryable()))?;
    Ok(StageOutput::Vendored(record))
}

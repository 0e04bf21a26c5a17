//! `build`: the rendered Dockerfile built with the workload's sources (and
//! its `data/` and vendored dependencies, and the wasm precompiler for images
//! that need it) as the context.

use crate::apply::ApplyContext;
use crate::backend::builder::BuildContext;
use crate::events::StageOutput;
use crate::exec::{Job, StageFailure};
use crate::plan::StageKind;

/// Where templates find `wasm-precompile` in the build context (docs/spec.md).
const PRECOMPILER_IN_CONTEXT: &str = "precompiler/wasm-precompile";

pub async fn run(
    context: &ApplyContext,
    job: &Job,
    image: usize,
) -> Result<StageOutput, StageFailure> {
    let experiment = &job.plan.experiment;
    let image = &experiment.images[image];
    let Some(StageOutput::Rendered { dockerfile }) = job.inputs.one(StageKind::Render) else {
        return Err(StageFailure::fatal("the build has no rendered Dockerfile"));
    };
    let workload_dir = experiment
        .project_root
        .join("workloads")
        .join(&image.workload);
    let mut folders = vec![("src".to_string(), workload_dir.join(&image.language))];
    if image.has_data {
        folders.push(("data".to_string(), workload_dir.join("data")));
    }
    if image.vendor.is_some() {
        let Some(StageOutput::Vendored(vendored)) = job.inputs.one(StageKind::Vendor) else {
            return Err(StageFailure::fatal(
                "the build has no vendored dependencies",
            ));
        };
        if !vendored.dir.is_dir() {
            return Err(StageFailure::fatal(format!(
                "the vendored dependencies {} are gone; run the vendor stage again with --from vendor/{}/{}",
                vendored.dir.display(),
                image.workload,
                image.language
            )));
        }
        folders.push(("vendor".to_string(), vendored.dir.clone()));
    }
    let mut files = Vec::new();
    if image.needs_precompiler() {
        let precompiler = &experiment.precompiler;
        if precompiler.digest.is_none() {
            return Err(StageFailure::fatal(format!(
                "no wasm precompiler at {}: build it with `cargo build --release -p containerd-shim-wasmtime --features precompiler` (or name it with --precompiler)",
                precompiler.path.display()
            )));
        }
        files.push((PRECOMPILER_IN_CONTEXT.to_string(), precompiler.path.clone()));
    }
    let build_context = BuildContext {
        dockerfile,
        folders: &folders,
        files: &files,
    };
    let platform = image.target.oci_platform();
    let record = context
        .backends
        .builder
        .build(&image.image_ref(), &platform, &build_context, &job.log)
        .await
        .map_err(|error| super::build_failure(&error))?;
    Ok(StageOutput::Image(record))
}

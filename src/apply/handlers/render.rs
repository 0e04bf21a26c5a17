//! `render`: the image's Dockerfile from its language's template, labelled
//! with the toolchain versions of the bases it is built from.

use crate::apply::ApplyContext;
use crate::events::StageOutput;
use crate::exec::{Job, StageFailure};
use crate::plan::StageKind;

pub fn run(context: &ApplyContext, job: &Job, image: usize) -> Result<StageOutput, StageFailure> {
    let experiment = &job.plan.experiment;
    let image = &experiment.images[image];
    let toolchain = job
        .inputs
        .of_kind(StageKind::Base)
        .filter_map(|(_, output)| match output {
            StageOutput::Image(record) => Some(record.toolchain.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let dockerfile = crate::render::render_dockerfile(
        &experiment.project_root,
        &experiment.name,
        image,
        job.stage().fingerprint,
        &toolchain,
    )
    .map_err(|error| StageFailure::fatal(error.to_string()))?;
    let path = context
        .out_dir
        .join("dockerfiles")
        .join(format!("{}.Dockerfile", image.path()));
    write(&path, &dockerfile).map_err(StageFailure::fatal)?;
    Ok(StageOutput::Rendered { dockerfile })
}

fn write(path: &std::path::Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).map_err(|error| error.to_string())?;
    }
    fs_err::write(path, text).map_err(|error| error.to_string())
}

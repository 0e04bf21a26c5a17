//! `base`: a Debian root file system made into an image and pushed, so
//! image builds can start `FROM` it.

use crate::apply::ApplyContext;
use crate::backend::builder::{BaseRecipe, Debootstrap};
use crate::events::StageOutput;
use crate::exec::{Job, StageFailure};
use crate::plan::model::BaseImage;

pub async fn run(
    context: &ApplyContext,
    job: &Job,
    base: usize,
) -> Result<StageOutput, StageFailure> {
    let bases = &job.plan.experiment.bases;
    let own = recipe(&bases[base]);
    let parent = bases[base]
        .from
        .as_ref()
        .and_then(|name| bases.iter().find(|other| &other.name == name))
        .map(recipe);
    let record = context
        .backends
        .builder
        .base(&own, parent.as_ref(), &job.log)
        .await
        .map_err(|error| super::build_failure(&error))?;
    Ok(StageOutput::Image(record))
}

fn recipe(base: &BaseImage) -> BaseRecipe {
    BaseRecipe {
        name: base.name.clone(),
        platform: base.platform.clone(),
        from: base.from.clone(),
        debootstrap: base.debootstrap.as_ref().map(|debootstrap| Debootstrap {
            suite: debootstrap.suite.clone(),
            variant: debootstrap.variant.clone(),
            mirror: debootstrap.mirror.clone(),
        }),
        packages: base.packages.clone(),
        run: base.run.clone(),
        image_ref: base.image_ref.clone(),
        cache_key: base.fingerprint.to_hex(),
    }
}

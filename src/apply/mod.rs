//! `pipeline apply`: connects the plan to the backends. The walker decides
//! what runs when; the handler of each stage kind (in `handlers/`) decides
//! what a stage does.

mod handlers;
pub mod hosts;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::Backends;
use crate::events::StageOutput;
use crate::exec::{BoxFuture, Job, StageFailure, StageWorker};
use crate::plan::{Plan, StageWork};
use hosts::HostPool;

/// What the stage handlers share for one apply.
pub struct ApplyContext {
    pub backends: Backends,
    pub hosts: HostPool,
    /// `out/<experiment>/`, where rendered Dockerfiles are kept.
    pub out_dir: PathBuf,
}

impl ApplyContext {
    /// Vendored dependency trees, beside the experiments' output folders.
    pub fn vendor_cache(&self) -> PathBuf {
        self.out_dir
            .parent()
            .unwrap_or(&self.out_dir)
            .join(".vendor")
    }
}

/// The [`StageWorker`] of an apply: hands each stage to its kind's handler.
#[derive(Clone)]
pub struct PipelineWorker {
    context: Arc<ApplyContext>,
}

impl PipelineWorker {
    pub fn new(plan: &Plan, backends: Backends, out_dir: PathBuf) -> PipelineWorker {
        let hosts = HostPool::new(Arc::clone(&backends.hosts), &plan.experiment.hosts);
        PipelineWorker {
            context: Arc::new(ApplyContext {
                backends,
                hosts,
                out_dir,
            }),
        }
    }
}

impl StageWorker for PipelineWorker {
    fn run(&self, job: Job) -> BoxFuture<Result<StageOutput, StageFailure>> {
        let context = Arc::clone(&self.context);
        Box::pin(async move {
            let work = job.stage().work.clone();
            let context = context.as_ref();
            match work {
                StageWork::Base { base } => handlers::base::run(context, &job, base).await,
                StageWork::Vendor { image } => handlers::vendor::run(context, &job, image).await,
                StageWork::Render { image } => handlers::render::run(context, &job, image),
                StageWork::Build { image } => handlers::build::run(context, &job, image).await,
                StageWork::Push { image } => handlers::push::run(context, &job, image).await,
                StageWork::Index { images } => handlers::index::run(context, &job, &images).await,
                StageWork::PrepareHost { host } => {
                    handlers::prepare_host::run(context, &job, host).await
                }
                StageWork::Pull {
                    image,
                    host,
                    engine,
                } => handlers::pull::run(context, &job, image, host, engine).await,
                StageWork::Run(run) => handlers::run::run(context, &job, &run).await,
                StageWork::Aggregate => Ok(handlers::aggregate::run(&job)),
            }
        })
    }
}

/// Where an apply keeps what it makes, under `out/<experiment>/`.
pub struct OutputLayout {
    pub dir: PathBuf,
}

impl OutputLayout {
    pub fn new(out_root: &Path, experiment: &str) -> OutputLayout {
        OutputLayout {
            dir: out_root.join(experiment),
        }
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
}

/// What an apply runs, beyond the plan.
pub struct ApplyRun<'a> {
    /// The stages to walk (the whole plan, or the part `--only` picked).
    pub plan: Arc<Plan>,
    /// The whole experiment, whose tables are written.
    pub experiment_plan: Arc<Plan>,
    pub layout: &'a OutputLayout,
    pub worker: Arc<dyn StageWorker>,
    /// Stages to redo whatever the journal says (`--from`).
    pub forced: Vec<petgraph::graph::NodeIndex>,
    /// Waits between attempts of a failed stage.
    pub backoff: crate::exec::Backoff,
}

/// Runs the plan to the end (or until `interrupt`), resuming from the
/// journal: every event goes to the journal, the stage logs, the results
/// tables and `display`.
pub async fn run_plan(
    run: ApplyRun<'_>,
    display: &mut dyn crate::events::EventSink,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<crate::exec::ApplySummary, ApplyError> {
    let path = run.layout.journal();
    let journal = crate::journal::read_journal(&path)?;
    crate::journal::compact(&path, &journal)?;
    let mut journal_writer = crate::journal::JournalWriter::open(&path)?;
    let mut logs = crate::progress::StageLogFiles::new(run.layout.logs());
    let mut results =
        crate::results::ResultsWriter::new(run.experiment_plan, &run.layout.dir, journal.clone());
    let summary = crate::exec::Walker::new(run.plan, run.worker, journal)
        .force(run.forced)
        .backoff(run.backoff)
        .sink(&mut journal_writer)
        .sink(&mut logs)
        .sink(&mut results)
        .sink(display)
        .run(interrupt)
        .await?;
    Ok(summary)
}

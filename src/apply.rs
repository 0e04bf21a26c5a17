//! `pipeline apply`: the stage worker that connects the plan to the
//! backends. The walker decides what runs when; this decides what a stage does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::agent::{AgentRequest, AgentResponse, EngineAddress, MeasureRequest};
use crate::backend::builder::{BuildContext, EngineBuilder};
use crate::backend::registry::{ImageRef, IndexEntry, RegistryClient};
use crate::backend::ssh::Transport;
use crate::events::{ImageRecord, StageOutput};
use crate::exec::{BoxFuture, Job, StageFailure, StageLog, StageWorker};
use crate::plan::target::Platform;
use crate::plan::{Plan, StageKind, Subject};

/// Builds images for the plan; the implementation talks to an engine.
pub trait ImageBuilder: Send + Sync + 'static {
    /// Builds a base image from its spec and returns its record (not pushed).
    fn base(
        &self,
        plan: &Plan,
        base: usize,
        log: StageLog,
    ) -> BoxFuture<Result<ImageRecord, String>>;
    /// Builds one image from a rendered Dockerfile and its context folders.
    fn build(&self, request: BuildRequest, log: StageLog)
    -> BoxFuture<Result<ImageRecord, String>>;
    /// Pushes a built image to its registry, as an image for `platform`
    /// when one is given, else with the platform the engine recorded.
    fn push(
        &self,
        image_ref: String,
        platform: Option<Platform>,
        log: StageLog,
    ) -> BoxFuture<Result<(), String>>;
}

impl ImageBuilder for EngineBuilder {
    fn base(
        &self,
        plan: &Plan,
        base: usize,
        log: StageLog,
    ) -> BoxFuture<Result<ImageRecord, String>> {
        let bases = &plan.experiment.bases;
        let spec = bases[base].clone();
        let parent = spec
            .from
            .as_ref()
            .and_then(|name| bases.iter().find(|other| &other.name == name))
            .cloned();
        let builder = self.clone();
        Box::pin(async move {
            builder
                .base(&spec, parent.as_ref(), &log)
                .await
                .map_err(|error| error.to_string())
        })
    }

    fn build(
        &self,
        request: BuildRequest,
        log: StageLog,
    ) -> BoxFuture<Result<ImageRecord, String>> {
        let builder = self.clone();
        Box::pin(async move {
            let platform = Platform::parse(&request.platform).map_err(|error| error.to_string())?;
            let context = BuildContext {
                dockerfile: &request.dockerfile,
                folders: &request.context,
            };
            EngineBuilder::build(&builder, &request.image_ref, &platform, &context, &log)
                .await
                .map_err(|error| error.to_string())
        })
    }

    fn push(
        &self,
        image_ref: String,
        platform: Option<Platform>,
        log: StageLog,
    ) -> BoxFuture<Result<(), String>> {
        let builder = self.clone();
        Box::pin(async move {
            match platform {
                Some(platform) => builder
                    .publish(&image_ref, &platform, &log)
                    .await
                    .map(|_| ()),
                None => builder.push_as_is(&image_ref, &log).await,
            }
            .map_err(|error| error.to_string())
        })
    }
}

/// What a build needs: the Dockerfile text and the folders of its context.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub image_ref: String,
    pub platform: String,
    pub dockerfile: String,
    /// Context entries: name in the context → folder on disk.
    pub context: Vec<(String, PathBuf)>,
}

pub struct ApplySettings {
    pub out_dir: PathBuf,
    pub inventory_dir: PathBuf,
    /// This binary, copied to hosts as their agent.
    pub agent_binary: PathBuf,
    /// Identifies the agent binary's version on hosts.
    pub agent_version: String,
    /// Where SSH keeps its control sockets.
    pub control_dir: PathBuf,
}

#[derive(Clone)]
pub struct PipelineWorker {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ApplySettings,
    builder: Arc<dyn ImageBuilder>,
    registry: RegistryClient,
    /// One connection and installed agent per host, opened by its prepare stage.
    hosts: Mutex<HashMap<usize, (Transport, PathBuf)>>,
}

impl PipelineWorker {
    pub fn new(settings: ApplySettings, builder: Arc<dyn ImageBuilder>) -> PipelineWorker {
        PipelineWorker {
            inner: Arc::new(Inner {
                settings,
                builder,
                registry: RegistryClient::new(),
                hosts: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl StageWorker for PipelineWorker {
    fn run(&self, job: Job) -> BoxFuture<Result<StageOutput, StageFailure>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.run(job).await })
    }
}

fn retryable(message: &impl ToString) -> StageFailure {
    StageFailure::retryable(message.to_string())
}

fn image_input(job: &Job, kind: StageKind) -> Option<&ImageRecord> {
    job.inputs.iter().find_map(|(id, output)| match output {
        StageOutput::Image(record) if id.as_str().starts_with(kind.as_str()) => Some(record),
        _ => None,
    })
}

impl Inner {
    async fn run(&self, job: Job) -> Result<StageOutput, StageFailure> {
        let plan = Arc::clone(&job.plan);
        let stage = job.stage().clone();
        let experiment = &plan.experiment;
        match (&stage.kind, &stage.subject) {
            (StageKind::Base, Subject::Base { base }) => {
                let record = self
                    .builder
                    .base(&plan, *base, job.log.clone())
                    .await
                    .map_err(|error| retryable(&error))?;
                self.builder
                    .push(record.image_ref.clone(), None, job.log.clone())
                    .await
                    .map_err(|error| retryable(&error))?;
                Ok(StageOutput::Image(record))
            }
            (StageKind::Render, Subject::Image { image }) => {
                let toolchain = job
                    .inputs
                    .values()
                    .filter_map(|output| match output {
                        StageOutput::Image(record) => Some(record.toolchain.clone()),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                let dockerfile = crate::render::render_dockerfile(
                    &experiment.project_root,
                    &experiment.name,
                    &experiment.images[*image],
                    stage.fingerprint,
                    &toolchain,
                )
                .map_err(|error| StageFailure::fatal(error.to_string()))?;
                let path = self
                    .settings
                    .out_dir
                    .join("dockerfiles")
                    .join(format!("{}.Dockerfile", experiment.images[*image].path()));
                write(&path, &dockerfile).map_err(StageFailure::fatal)?;
                Ok(StageOutput::Rendered { dockerfile })
            }
            (StageKind::Build, Subject::Image { image }) => {
                let image = &experiment.images[*image];
                let dockerfile = job
                    .inputs
                    .values()
                    .find_map(|output| match output {
                        StageOutput::Rendered { dockerfile } => Some(dockerfile.clone()),
                        _ => None,
                    })
                    .ok_or_else(|| StageFailure::fatal("the build has no rendered Dockerfile"))?;
                let workload_dir = experiment
                    .project_root
                    .join("workloads")
                    .join(&image.workload);
                let mut context = vec![("src".to_string(), workload_dir.join(&image.language))];
                if workload_dir.join("data").is_dir() {
                    context.push(("data".to_string(), workload_dir.join("data")));
                }
                let request = BuildRequest {
                    image_ref: image.image_ref(),
                    platform: image.target.oci_platform().to_string(),
                    dockerfile,
                    context,
                };
                let record = self
                    .builder
                    .build(request, job.log.clone())
                    .await
                    .map_err(StageFailure::fatal)?;
                Ok(StageOutput::Image(record))
            }
            (StageKind::Push, Subject::Image { image }) => {
                let image = &experiment.images[*image];
                let built = image_input(&job, StageKind::Build)
                    .ok_or_else(|| StageFailure::fatal("nothing was built"))?
                    .clone();
                self.builder
                    .push(
                        image.image_ref(),
                        Some(image.target.oci_platform()),
                        job.log.clone(),
                    )
                    .await
                    .map_err(|error| retryable(&error))?;
                let reference = ImageRef::parse(&image.image_ref())
                    .map_err(|error| StageFailure::fatal(error.to_string()))?;
                let manifest = self
                    .registry
                    .manifest(&reference)
                    .await
                    .map_err(|error| retryable(&error))?;
                if manifest.is_index() {
                    return Err(StageFailure::fatal(format!(
                        "{} was pushed as an index; a single platform manifest was expected",
                        image.image_ref()
                    )));
                }
                job.log.line(format!(
                    "pushed {} as {} ({} bytes compressed)",
                    image.image_ref(),
                    manifest.digest,
                    manifest.compressed_size()
                ));
                Ok(StageOutput::Image(ImageRecord {
                    digest: manifest.digest.clone(),
                    oci_size_bytes: manifest.compressed_size(),
                    ..built
                }))
            }
            (StageKind::Index, Subject::Index { images }) => self.index(&plan, images, &job).await,
            (StageKind::PrepareHost, Subject::Host { host }) => {
                self.prepare(&plan, *host, &job).await
            }
            (
                StageKind::Pull,
                Subject::Pull {
                    image,
                    host,
                    engine,
                },
            ) => {
                let image = &experiment.images[*image];
                let request = AgentRequest::EnsureImage {
                    engine: Self::engine_address(&plan, *host, *engine),
                    image_ref: image.image_ref(),
                    platform: image.target.oci_platform().to_string(),
                };
                match self.agent(*host, &request).await? {
                    AgentResponse::Image { digest, .. } => Ok(StageOutput::Pulled {
                        image_ref: image.image_ref(),
                        digest,
                    }),
                    other => Err(retryable(&format!("unexpected agent answer {other:?}"))),
                }
            }
            (StageKind::Run, Subject::Run(run)) => {
                let cell = &experiment.cells[run.cell];
                let image = &experiment.images[cell.image];
                let request = AgentRequest::Measure(MeasureRequest {
                    engine: Self::engine_address(&plan, cell.host, cell.engine),
                    image_ref: image.image_ref(),
                    platform: image.target.oci_platform().to_string(),
                    runtime: crate::backend::runtime_type(&cell.runtime),
                    scenario: cell.scenario,
                    name: format!("pipeline-{}", stage.fingerprint.short()),
                    args: Some(image.run.args.clone()),
                    timeout_s: stage.limit.timeout.map_or(300, |timeout| timeout.as_secs()),
                    cgroup_parent: experiment.hosts[cell.host].cgroup_parent.clone(),
                    marker: image.run.marker.pattern.clone(),
                    marker_unit: image.run.marker.unit,
                    result: image.run.result_pattern.clone(),
                });
                match self.agent(cell.host, &request).await? {
                    AgentResponse::Measured(record) => {
                        job.log.line(format!(
                            "pull {:?} ms ({:?} bytes), to main {:?} ms, run {:?} ms, exit {:?}",
                            record.pull_ms,
                            record.pulled_bytes,
                            record.to_main_ms,
                            record.run_ms,
                            record.exit_code
                        ));
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
                    other => Err(StageFailure::fatal(format!(
                        "unexpected agent answer {other:?}"
                    ))),
                }
            }
            (StageKind::Aggregate, Subject::Aggregate) => {
                let runs: Vec<(usize, crate::events::RunRecord)> = job
                    .inputs
                    .iter()
                    .filter_map(|(id, output)| match output {
                        StageOutput::Run(record) => plan
                            .graph
                            .node(id)
                            .map(|node| (node.index(), record.clone())),
                        _ => None,
                    })
                    .collect();
                let cells = crate::results::write_summary(
                    &plan,
                    &runs,
                    &self.settings.out_dir.join("summary.parquet"),
                )
                .map_err(|error| StageFailure::fatal(error.to_string()))?;
                Ok(StageOutput::Aggregated {
                    cells,
                    runs: runs.len(),
                })
            }
            (kind, _) => Err(StageFailure::fatal(format!(
                "stage kind {kind} has an unexpected subject"
            ))),
        }
    }

    fn engine_address(plan: &Plan, host: usize, engine: crate::spec::Engine) -> EngineAddress {
        let settings = &plan.experiment.hosts[host];
        EngineAddress {
            engine,
            socket: match engine {
                crate::spec::Engine::Docker => settings.docker_socket.clone(),
                crate::spec::Engine::Containerd => settings.containerd_socket.clone(),
            },
            namespace: settings.containerd_namespace.clone(),
            pull_endpoint: settings.containerd_pull_endpoint.clone(),
            registry: plan.experiment.registry.clone(),
        }
    }

    async fn index(
        &self,
        plan: &Plan,
        images: &[usize],
        job: &Job,
    ) -> Result<StageOutput, StageFailure> {
        let experiment = &plan.experiment;
        let mut entries = Vec::new();
        for &index in images {
            let image = &experiment.images[index];
            let reference = ImageRef::parse(&image.image_ref())
                .map_err(|error| StageFailure::fatal(error.to_string()))?;
            let manifest = self
                .registry
                .manifest(&reference)
                .await
                .map_err(|error| retryable(&error))?;
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
        let reference = ImageRef::parse(&experiment.images[images[0]].index_ref())
            .map_err(|error| StageFailure::fatal(error.to_string()))?;
        let (digest, _) = self
            .registry
            .put_index(&reference, &entries)
            .await
            .map_err(|error| retryable(&error))?;
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

    async fn prepare(
        &self,
        plan: &Plan,
        host: usize,
        job: &Job,
    ) -> Result<StageOutput, StageFailure> {
        let experiment = &plan.experiment;
        let settings = &experiment.hosts[host];
        let transport = Transport::connect(
            settings,
            &self.settings.inventory_dir,
            &self.settings.control_dir,
        )
        .await
        .map_err(|error| retryable(&error))?;
        let agent = transport
            .install_agent(&self.settings.agent_binary, &self.settings.agent_version)
            .await
            .map_err(|error| retryable(&error))?;
        self.hosts.lock().await.insert(host, (transport, agent));
        // Check only what this host's cells in this apply use (`--only` may
        // have left some out).
        let mut cell_indices: Vec<usize> = plan
            .graph
            .stages()
            .filter_map(|(_, stage)| match &stage.subject {
                Subject::Run(run) if experiment.cells[run.cell].host == host => Some(run.cell),
                _ => None,
            })
            .collect();
        cell_indices.sort_unstable();
        cell_indices.dedup();
        let cells: Vec<&crate::plan::Cell> = cell_indices
            .iter()
            .map(|&cell| &experiment.cells[cell])
            .collect();
        let mut engines: Vec<crate::spec::Engine> = cells.iter().map(|cell| cell.engine).collect();
        engines.sort();
        engines.dedup();
        let request = AgentRequest::Facts {
            engines: engines
                .iter()
                .map(|engine| Self::engine_address(plan, host, *engine))
                .collect(),
        };
        let facts = match self.agent(host, &request).await {
            Ok(AgentResponse::Facts(facts)) => facts,
            Ok(other) => {
                return Err(StageFailure::fatal(format!(
                    "unexpected agent answer {other:?}"
                )));
            }
            Err(failure) => {
                return Err(StageFailure::fatal(format!(
                    "host {} is not ready: {}",
                    settings.name, failure.message
                )));
            }
        };
        let mut runtimes: Vec<&str> = cells.iter().map(|cell| cell.runtime.as_str()).collect();
        runtimes.sort_unstable();
        runtimes.dedup();
        for runtime in runtimes {
            if runtime == "runc" {
                continue;
            }
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
        Ok(StageOutput::Host(crate::events::HostFacts {
            host: settings.name.clone(),
            ..facts
        }))
    }

    /// Sends one request to the host's agent.
    async fn agent(
        &self,
        host: usize,
        request: &AgentRequest,
    ) -> Result<AgentResponse, StageFailure> {
        let (transport, agent) = self
            .hosts
            .lock()
            .await
            .get(&host)
            .cloned()
            .ok_or_else(|| StageFailure::fatal("the host was not prepared"))?;
        let input =
            serde_json::to_vec(request).map_err(|error| StageFailure::fatal(error.to_string()))?;
        let output = transport
            .run(&agent.to_string_lossy(), &["agent"], &input)
            .await
            .map_err(|error| retryable(&error))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text.lines().last().unwrap_or_default();
        match serde_json::from_str::<AgentResponse>(line) {
            Ok(AgentResponse::Error { message }) => Err(StageFailure::fatal(message)),
            Ok(response) => Ok(response),
            Err(_) => Err(retryable(&format!(
                "the agent on {} gave no answer (exit {:?}): {}",
                transport.host(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))),
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|error| format!("failed to create {}: {error}", parent.display()))?;
    }
    std::fs::write(path, text)
        .map_err(|error| format!("failed to write {}: {error}", path.display()))
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

/// Runs the plan to the end (or until `interrupt`), resuming from the
/// journal: every event goes to the journal, the stage logs, the results
/// tables and `display`.
pub async fn run_plan(
    plan: Arc<Plan>,
    layout: &OutputLayout,
    worker: Arc<dyn StageWorker>,
    display: &mut dyn crate::events::EventSink,
    interrupt: impl std::future::Future<Output = ()>,
) -> Result<crate::exec::ApplySummary, ApplyError> {
    let journal = crate::journal::read_journal(&layout.journal())?;
    let mut journal_writer = crate::journal::JournalWriter::open(&layout.journal())?;
    let mut logs = crate::progress::StageLogFiles::new(layout.logs());
    let mut results = crate::results::ResultsWriter::new(Arc::clone(&plan), &layout.dir);
    let summary = crate::exec::Walker::new(plan, worker, journal)
        .sink(&mut journal_writer)
        .sink(&mut logs)
        .sink(&mut results)
        .sink(display)
        .run(interrupt)
        .await?;
    Ok(summary)
}

//! The agent: `pipeline agent` runs on a measured host, reads one
//! [`wire::AgentCall`] line on stdin and answers with one
//! [`wire::AgentReply`] line on stdout. It talks to the host's engines over
//! their local sockets, so pulls happen on the host's network and every
//! timestamp of a measurement comes from the host's clock.
//!
//! The runner keeps stdin open while it waits. If stdin ends first, the
//! runner gave up (a timeout, ^C, a lost connection): the agent stops, and
//! removes the container it was running, before it exits.

pub mod wire;

use std::time::Duration;

use regex::Regex;
use tokio_util::sync::CancellationToken;

use crate::backend::containerd::ContainerdEngine;
use crate::backend::docker::DockerEngine;
use crate::backend::measure::{OutputCheck, record};
use crate::backend::{Engine, EngineError, PullReport, RunReport, RunRequest};
use crate::records::{HostFacts, RunRecord};
use crate::spec::Scenario;
use wire::{
    AGENT_PROTOCOL, AgentCall, AgentError, AgentReply, AgentRequest, AgentResponse, EngineAddress,
    MeasureRequest,
};

/// Answers one call; `cancel` fires when the runner stops waiting.
pub async fn serve(call: AgentCall, cancel: CancellationToken) -> AgentReply {
    let outcome = if call.protocol == AGENT_PROTOCOL {
        handle(call.request, &cancel).await
    } else {
        Err(AgentError::Protocol {
            agent: AGENT_PROTOCOL,
            runner: call.protocol,
        })
    };
    AgentReply {
        protocol: AGENT_PROTOCOL,
        outcome,
    }
}

async fn handle(
    request: AgentRequest,
    cancel: &CancellationToken,
) -> Result<AgentResponse, AgentError> {
    match request {
        AgentRequest::Facts { engines } => Ok(AgentResponse::Facts(facts(&engines).await?)),
        AgentRequest::EnsureImage {
            engine,
            image_ref,
            platform,
        } => {
            let _turn = HostTurn::take().await;
            let engine = HostEngine::connect(&engine).await?;
            tokio::select! {
                pulled = pull_image(&engine, &image_ref, &platform) => Ok(pulled?),
                () = cancel.cancelled() => Err(AgentError::Cancelled {
                    cleanup: "the pull was abandoned".into(),
                }),
            }
        }
        AgentRequest::Measure(request) => {
            let check = OutputCheck {
                marker: Regex::new(&request.marker).map_err(|error| AgentError::Request {
                    message: format!("marker pattern: {error}"),
                })?,
                marker_unit: request.marker_unit,
                result: Regex::new(&request.result).map_err(|error| AgentError::Request {
                    message: format!("result pattern: {error}"),
                })?,
            };
            let _turn = HostTurn::take().await;
            let engine = HostEngine::connect(&request.engine).await?;
            tokio::select! {
                measured = measure_with(&engine, &request, &check) => {
                    Ok(AgentResponse::Measured(measured?))
                }
                () = cancel.cancelled() => {
                    let cleanup = match engine.clean_up(&request.name, &request.image_ref).await {
                        Ok(()) => format!("container {} removed", request.name),
                        Err(error) => format!("cleaning up failed: {error}"),
                    };
                    Err(AgentError::Cancelled { cleanup })
                }
            }
        }
    }
}

/// One engine of the host, chosen by the request.
enum HostEngine {
    Docker(DockerEngine),
    Containerd(ContainerdEngine),
}

impl HostEngine {
    async fn connect(address: &EngineAddress) -> Result<HostEngine, EngineError> {
        Ok(match address.engine {
            crate::spec::Engine::Docker => {
                HostEngine::Docker(DockerEngine::connect(&address.socket)?)
            }
            crate::spec::Engine::Containerd => {
                let mut engine = ContainerdEngine::connect(
                    std::path::Path::new(&address.socket),
                    &address.namespace,
                )
                .await?;
                if let Some(endpoint) = &address.pull_endpoint {
                    engine = engine.with_pull_endpoint(&address.registry, endpoint);
                }
                HostEngine::Containerd(engine)
            }
        })
    }
}

impl Engine for HostEngine {
    async fn version(&self) -> Result<String, EngineError> {
        match self {
            HostEngine::Docker(engine) => engine.version().await,
            HostEngine::Containerd(engine) => Engine::version(engine).await,
        }
    }
    async fn has_image(&self, image_ref: &str) -> Result<bool, EngineError> {
        match self {
            HostEngine::Docker(engine) => engine.has_image(image_ref).await,
            HostEngine::Containerd(engine) => Engine::has_image(engine, image_ref).await,
        }
    }
    async fn remove_image(&self, image_ref: &str) -> Result<(), EngineError> {
        match self {
            HostEngine::Docker(engine) => engine.remove_image(image_ref).await,
            HostEngine::Containerd(engine) => Engine::remove_image(engine, image_ref).await,
        }
    }
    async fn pull(&self, image_ref: &str, platform: &str) -> Result<PullReport, EngineError> {
        match self {
            HostEngine::Docker(engine) => engine.pull(image_ref, platform).await,
            HostEngine::Containerd(engine) => Engine::pull(engine, image_ref, platform).await,
        }
    }
    async fn run(&self, request: &RunRequest) -> Result<RunReport, EngineError> {
        match self {
            HostEngine::Docker(engine) => engine.run(request).await,
            HostEngine::Containerd(engine) => Engine::run(engine, request).await,
        }
    }
    async fn clean_up(&self, name: &str, image_ref: &str) -> Result<(), EngineError> {
        match self {
            HostEngine::Docker(engine) => engine.clean_up(name, image_ref).await,
            HostEngine::Containerd(engine) => engine.clean_up(name, image_ref).await,
        }
    }
}

/// One pull or measurement at a time on a host, across agent processes:
/// an agent that is still cleaning up after a cancelled run holds it, so
/// the next measurement cannot overlap the last one. The lock file is named
/// by the host's network namespace and name, so hosts that share a file
/// system (the lab's) still measure independently.
struct HostTurn {
    _file: Option<std::fs::File>,
}

impl HostTurn {
    async fn take() -> HostTurn {
        let path = std::env::temp_dir().join(format!("pipeline-agent-{}.lock", host_identity()));
        let file = tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .ok()?;
            lock_exclusive(&file).then_some(file)
        })
        .await
        .ok()
        .flatten();
        // Without a lock file (a read-only /tmp) the agent still measures;
        // the runner's per-host limit keeps calls apart.
        HostTurn { _file: file }
    }
}

#[cfg(unix)]
fn lock_exclusive(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function's caller owns; the lock
    // is released when the file is closed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) == 0 }
}

#[cfg(not(unix))]
fn lock_exclusive(_file: &std::fs::File) -> bool {
    true
}

fn host_identity() -> String {
    let namespace = std::fs::read_link("/proc/self/ns/net")
        .map(|link| link.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let digest = blake3::hash(format!("{namespace}\n{}", name.trim()).as_bytes());
    digest.to_hex()[..16].to_string()
}

async fn pull_image(
    engine: &impl Engine,
    image_ref: &str,
    platform: &str,
) -> Result<AgentResponse, EngineError> {
    let pull = engine.pull(image_ref, platform).await?;
    Ok(AgentResponse::Image {
        digest: pull.digest,
        pulled_bytes: pull.bytes_transferred,
        pull_ms: pull.duration.as_secs_f64() * 1e3,
    })
}

async fn measure_with(
    engine: &impl Engine,
    request: &MeasureRequest,
    check: &OutputCheck,
) -> Result<RunRecord, EngineError> {
    {
        let pull = match request.scenario {
            // Fresh: nothing of the image may be left, so the pull transfers every blob.
            Scenario::Fresh => {
                engine
                    .make_fresh(&request.image_ref, &request.platform)
                    .await?;
                engine.pull(&request.image_ref, &request.platform).await?
            }
            // Cached: the image is present; the pull is a timed no-op that
            // only checks the registry, as `docker run --pull always` would.
            // A fresh cell of an image sharing a layer may have evicted it
            // since the pull stage: it is put back first, untimed.
            Scenario::Cached => {
                if !engine.has_image(&request.image_ref).await? {
                    engine.pull(&request.image_ref, &request.platform).await?;
                }
                engine.pull(&request.image_ref, &request.platform).await?
            }
        };
        let run = engine
            .run(&RunRequest {
                image_ref: request.image_ref.clone(),
                platform: request.platform.clone(),
                runtime: request.runtime.clone(),
                name: request.name.clone(),
                args: request.args.clone(),
                timeout: Duration::from_secs(request.timeout_s),
                cgroup_parent: request.cgroup_parent.clone(),
            })
            .await?;
        let mut measured = record(&request.image_ref, &pull.digest, Some(&pull), &run, check);
        if request.scenario == Scenario::Fresh && pull.bytes_transferred == 0 {
            measured.ok = false;
            measured.error =
                Some("a fresh pull transferred no bytes: the image was still cached".into());
        }
        if request.scenario == Scenario::Cached && pull.bytes_transferred > 0 {
            measured.ok = false;
            measured.error = Some(format!(
                "a cached pull transferred {} bytes: the image was not all there",
                pull.bytes_transferred
            ));
        }
        Ok(measured)
    }
}

async fn facts(engines: &[EngineAddress]) -> Result<HostFacts, EngineError> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find(|line| {
            line.starts_with("model name") || line.starts_with("uarch") || line.starts_with("Model")
        })
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    let uname = |flag: &str| {
        std::process::Command::new("uname")
            .arg(flag)
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let mut facts = HostFacts {
        host: uname("-n"),
        architecture: uname("-m"),
        cpu_model,
        cores: u32::try_from(
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        )
        .unwrap_or(1),
        kernel: uname("-r"),
        shims: shims_on_path(),
        ..HostFacts::default()
    };
    for address in engines {
        let version = HostEngine::connect(address).await?.version().await?;
        match address.engine {
            crate::spec::Engine::Docker => facts.docker_version = Some(version),
            crate::spec::Engine::Containerd => facts.containerd_version = Some(version),
        }
    }
    Ok(facts)
}

/// containerd finds shims as `containerd-shim-<name>-<version>` on its PATH.
fn shims_on_path() -> Vec<String> {
    let mut shims: Vec<String> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
        })
        .filter(|name| name.starts_with("containerd-shim-"))
        .collect();
    shims.sort();
    shims.dedup();
    shims
}

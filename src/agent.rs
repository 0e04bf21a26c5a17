//! The agent: `pipeline agent` runs on a measured host, reads one JSON
//! request on stdin and answers with one JSON line on stdout. It talks to the
//! host's engines over their local sockets, so pulls happen on the host's
//! network and every timestamp of a measurement comes from the host's clock.

use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::backend::containerd::ContainerdEngine;
use crate::backend::docker::DockerEngine;
use crate::backend::measure::{OutputCheck, record};
use crate::backend::{Engine, EngineError, RunRequest};
use crate::events::{HostFacts, RunRecord};
use crate::spec::{Scenario, TimeUnit};

/// Which engine on the host, and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineAddress {
    pub engine: crate::spec::Engine,
    pub socket: String,
    /// containerd namespace; unused by Docker.
    pub namespace: String,
    /// containerd only: fetch images named `registry/...` through this
    /// HTTPS `host:port` serving the same content (the transfer service of
    /// containerd 1.7 does not speak plain HTTP).
    #[serde(default)]
    pub pull_endpoint: Option<String>,
    #[serde(default)]
    pub registry: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum AgentRequest {
    /// What the host is and which engines and shims it has.
    Facts { engines: Vec<EngineAddress> },
    /// Makes the image present (pulling it if needed), for cached cells.
    EnsureImage {
        engine: EngineAddress,
        image_ref: String,
        platform: String,
    },
    /// One measured run.
    Measure(MeasureRequest),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasureRequest {
    pub engine: EngineAddress,
    pub image_ref: String,
    pub platform: String,
    /// containerd runtime type.
    pub runtime: String,
    pub scenario: Scenario,
    pub name: String,
    pub args: Option<Vec<String>>,
    pub timeout_s: u64,
    /// Parent cgroup for containerd's containers (Docker has its own setting).
    pub cgroup_parent: Option<String>,
    pub marker: String,
    pub marker_unit: TimeUnit,
    pub result: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum AgentResponse {
    Facts(HostFacts),
    Image {
        digest: String,
        pulled_bytes: u64,
        pull_ms: f64,
    },
    Measured(RunRecord),
    Error {
        message: String,
    },
}

pub async fn serve(request: AgentRequest) -> AgentResponse {
    let result = match request {
        AgentRequest::Facts { engines } => facts(&engines).await.map(AgentResponse::Facts),
        AgentRequest::EnsureImage {
            engine,
            image_ref,
            platform,
        } => ensure_image(&engine, &image_ref, &platform).await,
        AgentRequest::Measure(request) => measure(&request).await.map(AgentResponse::Measured),
    };
    result.unwrap_or_else(|message| AgentResponse::Error { message })
}

/// Connects to the engine the address names and runs `$work` with it,
/// statically dispatched to each engine type.
macro_rules! with_engine {
    ($address:expr, |$engine:ident| $work:expr) => {{
        let address: &EngineAddress = $address;
        match address.engine {
            crate::spec::Engine::Docker => {
                let $engine =
                    DockerEngine::connect(&address.socket).map_err(|error| error.to_string())?;
                $work.await.map_err(|error: EngineError| error.to_string())
            }
            crate::spec::Engine::Containerd => {
                let mut $engine = ContainerdEngine::connect(
                    std::path::Path::new(&address.socket),
                    &address.namespace,
                )
                .await
                .map_err(|error| error.to_string())?;
                if let Some(endpoint) = &address.pull_endpoint {
                    $engine = $engine.with_pull_endpoint(&address.registry, endpoint);
                }
                $work.await.map_err(|error: EngineError| error.to_string())
            }
        }
    }};
}

async fn ensure_image(
    address: &EngineAddress,
    image_ref: &str,
    platform: &str,
) -> Result<AgentResponse, String> {
    with_engine!(address, |engine| pull_image(&engine, image_ref, platform))
}

async fn measure(request: &MeasureRequest) -> Result<RunRecord, String> {
    let check = OutputCheck {
        marker: Regex::new(&request.marker).map_err(|error| format!("marker pattern: {error}"))?,
        marker_unit: request.marker_unit,
        result: Regex::new(&request.result).map_err(|error| format!("result pattern: {error}"))?,
    };
    with_engine!(&request.engine, |engine| measure_with(
        &engine, request, &check
    ))
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

async fn facts(engines: &[EngineAddress]) -> Result<HostFacts, String> {
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
        match address.engine {
            crate::spec::Engine::Docker => {
                facts.docker_version = Some(with_engine!(address, |engine| engine.version())?);
            }
            crate::spec::Engine::Containerd => {
                facts.containerd_version = Some(with_engine!(address, |engine| engine.version())?);
            }
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

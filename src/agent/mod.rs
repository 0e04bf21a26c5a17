//! The agent: `pipeline agent` runs on a measured host, reads one
//! [`wire::AgentCall`] line on stdin and answers with one
//! [`wire::AgentReply`] line on stdout. It talks to the host's engines over
//! their local sockets, so pulls happen on the host's network and every
//! timestamp of a measurement comes from the host's clock.
//!
//! The runner keeps stdin open while it waits. If stdin ends first, the
//! runner gave up (a timeout, ^C, a lost connection): the agent stops, and
//! removes the container it was running, before it exits.

mod stdio;
pub mod wire;

pub use stdio::{StdioError, run_on_stdio};

use std::time::Duration;

use regex::Regex;
use tokio_util::sync::CancellationToken;

use crate::backend::containerd::ContainerdEngine;
use crate::backend::docker::DockerEngine;
use crate::backend::measure::{OutputCheck, record};
use crate::backend::{Engine, EngineError, PullReport, RunReport, RunRequest};
use crate::records::{HostFacts, RunRecord};
use crate::terms::Scenario;
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
        AgentRequest::Facts { engines, qemu_cpu } => {
            Ok(AgentResponse::Facts(facts(&engines, qemu_cpu).await?))
        }
        AgentRequest::EnsureImage {
            engine,
            image_ref,
            platform,
        } => {
            let _turn = HostTurn::take().await;
            let engine = HostEngine::connect(&engine).await?;
            // A pull cut off midway leaves the engine holding a lease on
            // what it fetched, which keeps later fresh pulls from being
            // fresh: it is let finish, and the cancel answered after.
            let pulled = pull_image(&engine, &image_ref, &platform).await?;
            if cancel.is_cancelled() {
                return Err(AgentError::Cancelled {
                    cleanup: "the pull was let finish".into(),
                });
            }
            Ok(pulled)
        }
        AgentRequest::Measure(request) => {
            let check = OutputCheck {
                marker: Regex::new(&request.marker).map_err(|error| AgentError::Request {
                    message: format!("marker pattern: {error}"),
                })?,
                marker_unit: request.marker_unit,
                result: request
                    .result
                    .as_deref()
                    .map(Regex::new)
                    .transpose()
                    .map_err(|error| AgentError::Request {
                        message: format!("result pattern: {error}"),
                    })?,
            };
            let _turn = HostTurn::take().await;
            let engine = HostEngine::connect(&request.engine).await?;
            measure_with(&engine, &request, &check, cancel)
                .await
                .map(AgentResponse::Measured)
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
            crate::terms::Engine::Docker => HostEngine::Docker(
                DockerEngine::connect(&address.socket)?
                    .with_credentials(address.credentials.clone()),
            ),
            crate::terms::Engine::Containerd => {
                let mut engine = ContainerdEngine::connect(
                    std::path::Path::new(&address.socket),
                    &address.namespace,
                )
                .await?
                .with_credentials(address.credentials.clone());
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

/// Pulls as the scenario says, then runs. A cancel is taken at the end of
/// the pull (see [`handle`]'s pull) or during the run, whose container is
/// then removed.
async fn measure_with(
    engine: &impl Engine,
    request: &MeasureRequest,
    check: &OutputCheck,
    cancel: &CancellationToken,
) -> Result<RunRecord, AgentError> {
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
        if cancel.is_cancelled() {
            return Err(AgentError::Cancelled {
                cleanup: "stopped after the pull, before the run".into(),
            });
        }
        let run_request = RunRequest {
            image_ref: request.image_ref.clone(),
            platform: request.platform.clone(),
            runtime: request.runtime.clone(),
            name: request.name.clone(),
            args: request.args.clone(),
            timeout: Duration::from_secs(request.timeout_s),
            cgroup_parent: request.cgroup_parent.clone(),
            env: request.env.clone(),
        };
        let run = tokio::select! {
            run = engine.run(&run_request) => run?,
            () = cancel.cancelled() => {
                let cleanup = match engine.clean_up(&request.name, &request.image_ref).await {
                    Ok(()) => format!("container {} removed", request.name),
                    Err(error) => format!("cleaning up failed: {error}"),
                };
                return Err(AgentError::Cancelled { cleanup });
            }
        };
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

async fn facts(
    engines: &[EngineAddress],
    qemu_cpu: Option<String>,
) -> Result<HostFacts, EngineError> {
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
    let names = uname();
    let mut facts = HostFacts {
        host: names.nodename,
        architecture: names.machine,
        cpu_model,
        cores: u32::try_from(
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        )
        .unwrap_or(1),
        kernel: names.release,
        shims: shims_on_path(),
        agent_target: agent_target(),
        emulated: qemu_cpu.is_some(),
        emulated_cpu: qemu_cpu,
        ..HostFacts::default()
    };
    for shim in facts.shims.iter().filter(|shim| !shim.contains("-runc-")) {
        if let Some(version) = shim_version(shim) {
            facts.shim_versions.push(format!("{shim} {version}"));
        }
        if let Some(machine) = program_machine(shim) {
            facts.shim_machines.push(format!("{shim} {machine}"));
        }
    }
    facts.wasm_machine = ["wasmtime-runner", "containerd-shim-wasmtime-v1"]
        .into_iter()
        .find_map(program_machine)
        .map(str::to_string);
    for address in engines {
        let version = HostEngine::connect(address).await?.version().await?;
        match address.engine {
            crate::terms::Engine::Docker => facts.docker_version = Some(version),
            crate::terms::Engine::Containerd => facts.containerd_version = Some(version),
        }
    }
    Ok(facts)
}

struct UnameNames {
    nodename: String,
    machine: String,
    release: String,
}

/// The system call, not the program: under qemu's user emulation it names
/// the emulated machine, as a board of that architecture would.
fn uname() -> UnameNames {
    // SAFETY: `utsname` is plain bytes, and uname fills it in or fails.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    let filled = unsafe { libc::uname(&raw mut names) } == 0;
    let field = |bytes: &[libc::c_char]| {
        if !filled {
            return String::new();
        }
        let bytes: Vec<u8> = bytes
            .iter()
            .take_while(|byte| **byte != 0)
            .map(|byte| byte.to_ne_bytes()[0])
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    UnameNames {
        nodename: field(&names.nodename),
        machine: field(&names.machine),
        release: field(&names.release),
    }
}

/// The target this agent was built for, as rustc names it.
fn agent_target() -> String {
    let env = if cfg!(target_env = "musl") {
        "musl"
    } else {
        "gnu"
    };
    // rustc names the riscv64 Linux targets after the ISA profile they need.
    let arch = match std::env::consts::ARCH {
        "riscv64" => "riscv64gc",
        other => other,
    };
    format!("{arch}-unknown-linux-{env}")
}

/// What a shim says of its version (`-v`, as containerd's shims answer:
/// a `Version:` line); `None` when it does not answer within seconds.
fn shim_version(shim: &str) -> Option<String> {
    let mut child = std::process::Command::new(shim)
        .arg("-v")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut text).ok()?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("Version:"))
        .map(|version| version.trim().to_string())
}

/// The folders of the PATH, in order.
fn path_dirs() -> Vec<std::path::PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default()
}

/// The machine a program on the PATH was built for, from its ELF header:
/// what decides whether it runs natively or under qemu's emulation.
fn program_machine(program: &str) -> Option<&'static str> {
    let path = path_dirs()
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())?;
    let mut header = [0u8; 20];
    std::io::Read::read_exact(&mut std::fs::File::open(path).ok()?, &mut header).ok()?;
    if !header.starts_with(b"\x7fELF") {
        return None;
    }
    Some(match u16::from_le_bytes([header[18], header[19]]) {
        0x3e => "x86_64",
        0xb7 => "aarch64",
        0xf3 => "riscv64",
        _ => "other",
    })
}

/// containerd finds shims as `containerd-shim-<name>-<version>` on its PATH.
fn shims_on_path() -> Vec<String> {
    let mut shims: Vec<String> = path_dirs()
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

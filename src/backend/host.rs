//! Reaching a measured host's agent: a [`HostConnector`] opens a
//! [`HostSession`] (an SSH connection with the agent installed, or the
//! runner's own machine), and a session carries agent calls.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ssh::{Transport, TransportError};
use crate::agent::wire::{AGENT_PROTOCOL, AgentCall, AgentError, AgentReply, AgentResponse};
use crate::inventory::HostSettings;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a cancelled agent gets to remove its container before the
/// runner stops waiting for it.
pub const CANCEL_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    #[error("failed to connect to host {host}: {message}")]
    Connect { host: String, message: String },
    #[error("failed to install the agent on host {host}: {message}")]
    Install { host: String, message: String },
    #[error("lost the connection to host {host}: {message}")]
    Connection { host: String, message: String },
    #[error("the agent on host {host} gave no answer (exit {status:?}): {stderr}")]
    NoAnswer {
        host: String,
        status: Option<i32>,
        stderr: String,
    },
    #[error("on host {host}: {error}")]
    Agent { host: String, error: AgentError },
    #[error("the call to host {host} was cancelled")]
    Cancelled { host: String },
}

impl HostError {
    /// A host that could not be reached, or whose agent died without an
    /// answer, may work on the next attempt; an agent's own answer says.
    pub fn is_retryable(&self) -> bool {
        match self {
            HostError::Connect { .. }
            | HostError::Install { .. }
            | HostError::Connection { .. }
            | HostError::NoAnswer { .. } => true,
            HostError::Agent { error, .. } => error.is_retryable(),
            HostError::Cancelled { .. } => false,
        }
    }

    /// Whether the session is unusable and the next call must reconnect.
    pub fn drops_session(&self) -> bool {
        matches!(
            self,
            HostError::Connection { .. } | HostError::NoAnswer { .. }
        )
    }
}

/// A live connection to one host's agent.
pub trait HostSession: Send + Sync {
    /// Sends one call; firing `cancel` tells the agent to stop and clean up.
    fn call<'a>(
        &'a self,
        call: &'a AgentCall,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<AgentResponse, HostError>>;
}

/// Opens sessions to hosts.
pub trait HostConnector: Send + Sync {
    fn connect<'a>(
        &'a self,
        host: &'a HostSettings,
    ) -> BoxFuture<'a, Result<Arc<dyn HostSession>, HostError>>;
}

/// This program built for each architecture a host may have, by the name
/// `uname -m` gives it (`x86_64`, `aarch64`, `riscv64`).
#[derive(Debug, Clone, Default)]
pub struct AgentBinaries {
    by_arch: BTreeMap<String, PathBuf>,
}

impl AgentBinaries {
    /// `dir/<arch>/pipeline` for every architecture built there
    /// (scripts/build-agents), and the runner itself for its own
    /// architecture unless `dir` has one.
    pub fn find(runner: &Path, dir: Option<&Path>) -> AgentBinaries {
        let mut by_arch = BTreeMap::new();
        if let Some(entries) = dir.and_then(|dir| std::fs::read_dir(dir).ok()) {
            for entry in entries.flatten() {
                let binary = entry.path().join("pipeline");
                if binary.is_file() {
                    by_arch.insert(entry.file_name().to_string_lossy().into_owned(), binary);
                }
            }
        }
        by_arch
            .entry(std::env::consts::ARCH.to_string())
            .or_insert_with(|| runner.to_path_buf());
        AgentBinaries { by_arch }
    }

    pub fn for_arch(&self, arch: &str) -> Option<&Path> {
        self.by_arch.get(arch).map(PathBuf::as_path)
    }

    pub fn archs(&self) -> Vec<&str> {
        self.by_arch.keys().map(String::as_str).collect()
    }
}

/// Names a build of the agent, so a host runs exactly the build the runner
/// has and never a stale copy with the same version number. Size and
/// modification time tell builds apart without reading the file.
pub fn agent_version(binary: &Path) -> std::io::Result<String> {
    let metadata = std::fs::metadata(binary)?;
    let modified = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    Ok(format!(
        "{}-{:x}-{modified:x}",
        env!("CARGO_PKG_VERSION"),
        metadata.len()
    ))
}

/// Hosts over SSH (or the runner itself for `ansible_connection: local`),
/// with this program installed on them as the agent.
pub struct SshConnector {
    /// Relative key and `known_hosts` paths are relative to this folder.
    pub inventory_dir: PathBuf,
    /// Where SSH keeps its control sockets for this apply.
    pub control_dir: PathBuf,
    /// The agent for each architecture.
    pub agents: AgentBinaries,
}

struct SshSession {
    transport: Transport,
    agent: PathBuf,
    /// `QEMU_CPU=<model>` on an emulated host: the agent runs under qemu too.
    environment: Option<String>,
}

impl HostConnector for SshConnector {
    fn connect<'a>(
        &'a self,
        host: &'a HostSettings,
    ) -> BoxFuture<'a, Result<Arc<dyn HostSession>, HostError>> {
        Box::pin(async move {
            let transport = Transport::connect(host, &self.inventory_dir, &self.control_dir)
                .await
                .map_err(|error| HostError::Connect {
                    host: host.name.clone(),
                    message: transport_message(&error),
                })?;
            let install_error = |message: String| HostError::Install {
                host: host.name.clone(),
                message,
            };
            // An emulated host reports the runner's machine; it runs what its
            // platform names, as a board of that platform would, or, when no
            // agent was built for that, the runner's own (it runs there too).
            let (arch, binary, environment) = if let Some(cpu) = &host.qemu_cpu {
                let arch = host.platform.machine();
                if let Some(binary) = self.agents.for_arch(arch) {
                    (arch.to_string(), binary, Some(format!("QEMU_CPU={cpu}")))
                } else {
                    let own = std::env::consts::ARCH;
                    let binary = self.agents.for_arch(own).ok_or_else(|| {
                        install_error(format!("there is no agent for {arch} or {own}"))
                    })?;
                    (own.to_string(), binary, None)
                }
            } else {
                let arch = if matches!(transport, Transport::Local { .. }) {
                    std::env::consts::ARCH.to_string()
                } else {
                    let output = transport
                        .run("uname", &["-m"], b"")
                        .await
                        .map_err(|error| install_error(transport_message(&error)))?;
                    String::from_utf8_lossy(&output.stdout).trim().to_string()
                };
                let binary = self.agents.for_arch(&arch).ok_or_else(|| {
                    install_error(format!(
                        "the host is {arch} and there is no agent for {arch} (built: {}); \
                         scripts/build-agents {arch} builds one",
                        self.agents.archs().join(", ")
                    ))
                })?;
                (arch, binary, None)
            };
            let version = agent_version(binary)
                .map_err(|error| install_error(format!("{}: {error}", binary.display())))?;
            let agent = transport
                .install_agent(binary, &format!("{arch}-{version}"))
                .await
                .map_err(|error| install_error(transport_message(&error)))?;
            let session: Arc<dyn HostSession> = Arc::new(SshSession {
                transport,
                agent,
                environment,
            });
            Ok(session)
        })
    }
}

fn transport_message(error: &TransportError) -> String {
    match error {
        TransportError::Connect { message, .. } | TransportError::Command { message, .. } => {
            message.clone()
        }
        TransportError::HostKey { problem, .. } => problem.to_string(),
        TransportError::Cancelled { .. } => "cancelled".into(),
    }
}

impl HostSession for SshSession {
    fn call<'a>(
        &'a self,
        call: &'a AgentCall,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<AgentResponse, HostError>> {
        Box::pin(async move {
            let host = self.transport.host().to_string();
            let mut line = serde_json::to_vec(call).map_err(|error| HostError::Agent {
                host: host.clone(),
                error: AgentError::Request {
                    message: error.to_string(),
                },
            })?;
            line.push(b'\n');
            let agent = self.agent.to_string_lossy();
            let (program, args): (&str, Vec<&str>) = match &self.environment {
                Some(assignment) => ("env", vec![assignment.as_str(), agent.as_ref(), "agent"]),
                None => (agent.as_ref(), vec!["agent"]),
            };
            let output = self
                .transport
                .call(program, &args, &line, cancel, CANCEL_GRACE)
                .await
                .map_err(|error| match error {
                    TransportError::Cancelled { .. } => HostError::Cancelled { host: host.clone() },
                    other => HostError::Connection {
                        host: host.clone(),
                        message: transport_message(&other),
                    },
                })?;
            let text = String::from_utf8_lossy(&output.stdout);
            let last = text.lines().last().unwrap_or_default();
            match serde_json::from_str::<AgentReply>(last) {
                Ok(reply) if reply.protocol != AGENT_PROTOCOL => Err(HostError::Agent {
                    host,
                    error: AgentError::Protocol {
                        agent: reply.protocol,
                        runner: AGENT_PROTOCOL,
                    },
                }),
                Ok(reply) => reply
                    .outcome
                    .map_err(|error| HostError::Agent { host, error }),
                // ssh exits 255 when the connection itself failed.
                Err(_) if output.status == Some(255) || output.status.is_none() => {
                    Err(HostError::Connection {
                        host,
                        message: last_lines(&output.stderr),
                    })
                }
                Err(_) => Err(HostError::NoAnswer {
                    host,
                    status: output.status,
                    stderr: last_lines(&output.stderr),
                }),
            }
        })
    }
}

fn last_lines(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Ends SSH master connections that earlier applies of this user left
/// behind when they were killed: each apply keeps its control sockets in
/// `pipeline-ssh-<pid>` under `parent`, and a folder whose process is gone
/// is stale.
pub fn end_stale_masters(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("pipeline-ssh-"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // openssh keeps each master's socket in a folder of its own.
        let sockets = std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|child| match std::fs::read_dir(child.path()) {
                Ok(inner) => inner.flatten().map(|socket| socket.path()).collect(),
                Err(_) => vec![child.path()],
            });
        for socket in sockets {
            let _ = std::process::Command::new("ssh")
                .arg("-S")
                .arg(&socket)
                .args(["-O", "exit", "stale-master"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

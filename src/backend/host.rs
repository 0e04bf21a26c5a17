//! Reaching a measured host's agent: a [`HostConnector`] opens a
//! [`HostSession`] (an SSH connection with the agent installed, or the
//! runner's own machine), and a session carries agent calls.

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

/// Hosts over SSH (or the runner itself for `ansible_connection: local`),
/// with this program installed on them as the agent.
pub struct SshConnector {
    /// Relative key and `known_hosts` paths are relative to this folder.
    pub inventory_dir: PathBuf,
    /// Where SSH keeps its control sockets for this apply.
    pub control_dir: PathBuf,
    /// The agent binary to upload, and the version it is installed under.
    pub agent_binary: PathBuf,
    pub agent_version: String,
}

struct SshSession {
    transport: Transport,
    agent: PathBuf,
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
            let agent = transport
                .install_agent(&self.agent_binary, &self.agent_version)
                .await
                .map_err(|error| HostError::Install {
                    host: host.name.clone(),
                    message: transport_message(&error),
                })?;
            let session: Arc<dyn HostSession> = Arc::new(SshSession { transport, agent });
            Ok(session)
        })
    }
}

fn transport_message(error: &TransportError) -> String {
    match error {
        TransportError::Connect { message, .. } | TransportError::Command { message, .. } => {
            message.clone()
        }
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
            let output = self
                .transport
                .call(
                    &self.agent.to_string_lossy(),
                    &["agent"],
                    &line,
                    cancel,
                    CANCEL_GRACE,
                )
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
        if let Ok(sockets) = std::fs::read_dir(entry.path()) {
            for socket in sockets.flatten() {
                let _ = std::process::Command::new("ssh")
                    .arg("-S")
                    .arg(socket.path())
                    .args(["-O", "exit", "stale-master"])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

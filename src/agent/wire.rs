//! What the runner and a host's agent say to each other: one JSON line each
//! way. The runner sends an [`AgentCall`] and keeps the agent's stdin open
//! while it waits; closing it early (a timeout, ^C, a dropped connection)
//! tells the agent to cancel and clean up. The agent answers with one
//! [`AgentReply`] line.

use serde::{Deserialize, Serialize};

use crate::backend::EngineError;
use crate::backend::credentials::RegistryCredentials;
use crate::records::{HostFacts, RunRecord};
use crate::terms::{Scenario, TimeUnit};

/// Bumped whenever a message changes shape; a mismatch is refused by both sides.
pub const AGENT_PROTOCOL: u32 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentCall {
    pub protocol: u32,
    pub request: AgentRequest,
}

impl AgentCall {
    pub fn new(request: AgentRequest) -> AgentCall {
        AgentCall {
            protocol: AGENT_PROTOCOL,
            request,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentReply {
    pub protocol: u32,
    pub outcome: Result<AgentResponse, AgentError>,
}

/// Which engine on the host, and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineAddress {
    pub engine: crate::terms::Engine,
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
    /// For pulls from `registry`. Here, on the agent's stdin, is the only
    /// place the password is written out; it never goes on a command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<RegistryCredentials>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum AgentRequest {
    /// What the host is and which engines and shims it has.
    Facts {
        engines: Vec<EngineAddress>,
        /// The CPU model qemu emulates on this host, if it is emulated.
        #[serde(default)]
        qemu_cpu: Option<String>,
    },
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
    /// The container's name; a cancelled run is cleaned up by it.
    pub name: String,
    pub args: Option<Vec<String>>,
    pub timeout_s: u64,
    /// Parent cgroup for containerd's containers (Docker has its own setting).
    pub cgroup_parent: Option<String>,
    /// Added to the container's environment.
    #[serde(default)]
    pub env: Vec<String>,
    pub marker: String,
    pub marker_unit: TimeUnit,
    /// The workload's result pattern; `None` checks the exit code alone.
    #[serde(default)]
    pub result: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum AgentResponse {
    Facts(HostFacts),
    Image {
        digest: String,
        pulled_bytes: u64,
        pull_ms: f64,
    },
    Measured(RunRecord),
}

/// Why the agent could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", content = "detail", rename_all = "kebab-case")]
pub enum AgentError {
    #[error(
        "the agent speaks protocol {agent} and the runner {runner}: the host runs another build of pipeline"
    )]
    Protocol { agent: u32, runner: u32 },
    #[error("invalid agent request: {message}")]
    Request { message: String },
    #[error(transparent)]
    Engine(EngineError),
    #[error("cancelled; {cleanup}")]
    Cancelled { cleanup: String },
}

impl AgentError {
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Engine(error) => error.is_retryable(),
            // Whoever cancelled decides what comes next.
            AgentError::Protocol { .. }
            | AgentError::Request { .. }
            | AgentError::Cancelled { .. } => false,
        }
    }
}

impl From<EngineError> for AgentError {
    fn from(error: EngineError) -> Self {
        AgentError::Engine(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_kind_across_the_wire() {
        let reply = AgentReply {
            protocol: AGENT_PROTOCOL,
            outcome: Err(AgentError::Engine(EngineError::image(
                "pull",
                "r/x:1",
                "received unexpected HTTP status: 503 Service Unavailable",
            ))),
        };
        let line = serde_json::to_string(&reply).unwrap();
        let back: AgentReply = serde_json::from_str(&line).unwrap();
        let error = back.outcome.unwrap_err();
        assert!(error.is_retryable(), "{line}");
        assert_eq!(error, reply.outcome.unwrap_err());

        let failed_run = AgentError::Engine(EngineError::Container {
            name: "c".into(),
            message: "start task: exec format error".into(),
        });
        assert!(!failed_run.is_retryable());
        assert!(
            !AgentError::Protocol {
                agent: 1,
                runner: 2
            }
            .is_retryable()
        );
    }
}

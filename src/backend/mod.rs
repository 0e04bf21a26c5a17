//! Backends behind small traits: the container engines a host runs
//! (Docker through bollard, containerd through containerd-client). These run
//! on the measured host itself, inside the agent, so every timestamp of a
//! measurement comes from the host's clock.

// The agent's: the engines of the host it runs on, and what it measures.
pub mod containerd;
pub mod credentials;
pub mod docker;
pub mod measure;
pub mod registry;

// The runner's: building, the hosts over SSH, vendoring.
with_feature! { "runner";
    pub mod builder;
    pub mod host;
    pub mod oci;
    mod runner;
    pub mod ssh;
    pub mod vendor;
    pub use runner::{Backends, ImageBuilder, Registry, WorkLog};
}

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An error and its sources, one line: the cause a backend's error wraps (a
/// gRPC status, ssh's own words on why it refused a host) is often the part
/// that says what went wrong.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// What went wrong in an engine. It crosses the agent's wire as it is, so
/// the runner knows whether another attempt can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EngineError {
    #[error("failed to connect to {engine} at {socket}: {message}")]
    Connect {
        engine: String,
        socket: String,
        message: String,
    },
    #[error("{action} {image} failed: {message}")]
    Image {
        action: String,
        image: String,
        message: String,
        /// The registry or the network failed, not the image: worth retrying.
        transient: bool,
    },
    #[error("container {name} failed: {message}")]
    Container { name: String, message: String },
    #[error("container {name} did not exit within {seconds} s")]
    Timeout { name: String, seconds: u64 },
    /// A combination reported to fail, refused before it can hang a run.
    #[error("{engine} {version} with {runtime}: {reason}")]
    KnownFailure {
        engine: String,
        version: String,
        runtime: String,
        reason: String,
    },
}

impl EngineError {
    pub fn image(action: &str, image: &str, message: impl std::fmt::Display) -> EngineError {
        let message = message.to_string();
        EngineError::Image {
            action: action.to_string(),
            image: image.to_string(),
            transient: is_transient(&message),
            message,
        }
    }

    /// An engine that cannot be reached may come back; a registry that
    /// answered 5xx or dropped the connection too. A container that failed
    /// or hung will do the same again.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Connect { .. } => true,
            EngineError::Image { transient, .. } => *transient,
            EngineError::Container { .. }
            | EngineError::Timeout { .. }
            | EngineError::KnownFailure { .. } => false,
        }
    }
}

/// Engines pass registry failures on as text; these are the ones that say
/// the registry or the network was unavailable rather than the image wrong.
pub fn is_transient(message: &str) -> bool {
    const SIGNS: [&str; 14] = [
        "connection refused",
        "connection reset",
        "broken pipe",
        "no route to host",
        "i/o timeout",
        "timed out",
        "temporarily unavailable",
        "service unavailable",
        "bad gateway",
        "gateway timeout",
        "too many requests",
        " 502",
        " 503",
        " 504",
    ];
    let message = message.to_ascii_lowercase();
    SIGNS.iter().any(|sign| message.contains(sign)) || message.ends_with(": eof")
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq)]
pub struct PullReport {
    pub duration: Duration,
    /// The digest the reference resolved to in the registry (an index for a
    /// multi-platform image), like Docker's repo digest.
    pub digest: String,
    /// The manifest chosen for the requested platform (equal to `digest` for
    /// a single-platform image; empty when the engine does not say).
    pub platform_manifest_digest: String,
    /// Bytes fetched from the registry; 0 means everything was already present.
    pub bytes_transferred: u64,
}

/// One container run as an engine saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub image_ref: String,
    /// `linux/arm64`, `wasi/wasm`, ...
    pub platform: String,
    /// A containerd runtime type, such as `io.containerd.runc.v2` or `io.containerd.wasmtime.v1`.
    pub runtime: String,
    pub name: String,
    /// Replaces the image's command when set.
    pub args: Option<Vec<String>>,
    pub timeout: Duration,
    /// Parent cgroup (a cgroupfs path such as `/plab-h1`); the container gets `<parent>/<name>`.
    pub cgroup_parent: Option<String>,
    /// `KEY=value` pairs added to the image's environment, such as
    /// `QEMU_CPU` for a host whose CPU is emulated.
    pub env: Vec<String>,
}

/// One run as an engine saw it. Every timestamp is ns since the epoch on the
/// host's wall clock, where the agent and the engine both run; the phases are
/// `None` where the engine could not give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Just before the create request: the origin of every phase.
    pub create_requested_ns: u64,
    /// The create request answered (containerd: container, snapshot and task
    /// created).
    pub created_ns: Option<u64>,
    /// The task started, as the engine stamped it, else when its start
    /// request was answered. Engines stamp it after the runtime's start
    /// returned, so a short program's main can come slightly earlier.
    pub started_ns: Option<u64>,
    /// When the agent learned of the exit: what `run_ms` has always measured.
    pub exited_ns: u64,
    /// The task exited, as the engine stamped it, else when its wait
    /// request was answered.
    pub task_exited_ns: Option<u64>,
    /// The container and its task were gone: the remove request answered.
    pub removed_ns: Option<u64>,
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// A container engine on the host.
pub trait Engine: Send + Sync {
    fn version(&self) -> impl Future<Output = Result<String, EngineError>> + Send;
    fn has_image(&self, image_ref: &str) -> impl Future<Output = Result<bool, EngineError>> + Send;
    /// Removes the image and its content, so that the next pull transfers every
    /// blob again; other images that share a layer with it are removed too.
    fn remove_image(&self, image_ref: &str)
    -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Leaves nothing of the image on the host, for a fresh pull. An absent
    /// image is pulled first: its layers are how other images that share them
    /// (and would keep them cached) are found.
    fn make_fresh(
        &self,
        image_ref: &str,
        platform: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send {
        async move {
            if !self.has_image(image_ref).await? {
                self.pull(image_ref, platform).await?;
            }
            self.remove_image(image_ref).await
        }
    }
    fn pull(
        &self,
        image_ref: &str,
        platform: &str,
    ) -> impl Future<Output = Result<PullReport, EngineError>> + Send;
    fn run(
        &self,
        request: &RunRequest,
    ) -> impl Future<Output = Result<RunReport, EngineError>> + Send;
    /// Removes whatever a run named `name` of `image_ref` left behind when it
    /// was cut short: container, task, snapshot, temporary image records.
    /// What is already gone is no error.
    fn clean_up(
        &self,
        name: &str,
        image_ref: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
}

/// The containerd runtime type of a runtime name in the inventory.
pub fn runtime_type(runtime: &str) -> String {
    match runtime {
        "runc" => "io.containerd.runc.v2".to_string(),
        "wasmtime" => "io.containerd.wasmtime.v1".to_string(),
        // Already a type, or a name the user configured in the engine.
        other => other.to_string(),
    }
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        })
}

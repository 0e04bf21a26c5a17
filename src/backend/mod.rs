//! Backends behind small traits: the container engines a host runs
//! (Docker through bollard, containerd through containerd-client). These run
//! on the measured host itself, inside the agent, so every timestamp of a
//! measurement comes from the host's clock.

pub mod builder;
pub mod containerd;
pub mod docker;
pub mod measure;
pub mod oci;
pub mod registry;
pub mod ssh;

use std::future::Future;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("failed to connect to {engine} at {socket}: {message}")]
    Connect {
        engine: &'static str,
        socket: String,
        message: String,
    },
    #[error("{action} {image} failed: {message}")]
    Image {
        action: &'static str,
        image: String,
        message: String,
    },
    #[error("container {name} failed: {message}")]
    Container { name: String, message: String },
    #[error("container {name} did not exit within {seconds} s")]
    Timeout { name: String, seconds: u64 },
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The host's wall clock (ns since the epoch) just before the create request.
    pub create_requested_ns: u64,
    /// When the engine reported the task started, if it does; after the
    /// runtime's start returned, so possibly after a short program's main.
    pub task_started_event_ns: Option<u64>,
    pub exited_ns: u64,
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

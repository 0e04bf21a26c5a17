//! containerd 1.7 through its gRPC API (containerd-client), on the host's own socket.
//!
//! Pulls go through containerd's transfer service, so the registry traffic and the
//! unpacking happen inside the daemon as they would for any transfer-service client.
//! In containerd 1.7 that service speaks HTTPS only and reads no `hosts.toml`; a
//! plain-HTTP registry is reached through an HTTPS endpoint serving the same
//! content (`with_pull_endpoint`), and the image keeps the name it was asked for.
//! The daemon must be configured for it (see `TRANSFER_CONFIG_HINT`): containerd 1.7
//! only unpacks platforms listed in the transfer plugin's `unpack_config`, and each
//! non-host platform needs `differ = "walking"` there, because the plugin otherwise
//! looks for a differ registered for that platform, finds none (the walking differ
//! only advertises the host platform) and fails to load. The walking differ just
//! applies tar layers, so it works for any architecture and for `wasi/wasm`.
//!
//! Containers are created the way `ctr run` does it, but without ctr: an OCI runtime
//! spec built here from the image config, a container record, an overlayfs snapshot
//! on top of the image's unpacked layers, a task whose stdout/stderr are FIFOs that
//! this process reads, then start, wait, and delete everything again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containerd_client::services::v1 as api;
use containerd_client::services::v1::snapshots as snap;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};
use containerd_client::types::transfer::{
    ImageStore, OciRegistry, RegistryResolver, UnpackConfiguration,
};
use containerd_client::{to_any, tonic};
use prost::Message;
use prost_types::Any;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::credentials::RegistryCredentials;
use super::error_chain;
use super::registry::{ImageRef, RegistryClient};
use super::{Engine, EngineError, PullReport, RunReport, RunRequest, now_ns};

const ENGINE: &str = "containerd";
/// The snapshotter images are unpacked into and containers run from.
pub const SNAPSHOTTER: &str = "overlayfs";
/// The type URL containerd uses for an OCI runtime spec stored as JSON.
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Output beyond this is dropped, so a chatty workload cannot exhaust the agent's memory.
const OUTPUT_LIMIT: usize = 16 << 20;
const SIGKILL: u32 = 9;

/// What the daemon needs in its config for `pull` to unpack a platform (shown in errors).
pub const TRANSFER_CONFIG_HINT: &str = "[[plugins.\"io.containerd.transfer.v1.local\".unpack_config]] \
     with platform = \"<os/arch>\", snapshotter = \"overlayfs\", differ = \"walking\"";

pub struct ContainerdEngine {
    channel: Channel,
    socket: PathBuf,
    namespace: String,
    fifo_dir: PathBuf,
    /// `(registry, endpoint)`: images of `registry` are fetched from `endpoint`.
    pull_endpoints: Vec<(String, String)>,
    /// Answers the registry's challenge before each pull, with credentials.
    registry: RegistryClient,
}

impl ContainerdEngine {
    pub async fn connect(socket: &Path, namespace: &str) -> Result<Self, EngineError> {
        let fail = |message: String| EngineError::Connect {
            engine: ENGINE.into(),
            socket: socket.display().to_string(),
            message,
        };
        if !is_identifier(namespace) {
            return Err(fail(format!("invalid containerd namespace {namespace:?}")));
        }
        let channel = containerd_client::connect(socket)
            .await
            .map_err(|error| fail(error_chain(&error)))?;
        let engine = ContainerdEngine {
            channel,
            socket: socket.to_path_buf(),
            namespace: namespace.to_string(),
            fifo_dir: std::env::temp_dir().join("pipeline-containerd-io"),
            pull_endpoints: Vec::new(),
            registry: RegistryClient::new(),
        };
        // A socket that accepts connections is not yet a working containerd; ask
        // once so a broken daemon is reported here, not in the middle of a measurement.
        engine.version().await?;
        Ok(engine)
    }

    /// Fetches images named `registry/...` from `endpoint` (`host:port` of an HTTPS
    /// registry with the same content) and stores them under their own name, so
    /// `run`, `has_image` and `remove_image` keep using the name the caller knows.
    #[must_use]
    pub fn with_pull_endpoint(mut self, registry: &str, endpoint: &str) -> Self {
        self.pull_endpoints
            .push((registry.to_string(), endpoint.to_string()));
        self
    }

    /// Pulls as this user. The transfer service's own way to ask for
    /// credentials is a stream back to the client; a ready `Authorization`
    /// header does the same for one pull, and Basic and token auth alike.
    #[must_use]
    pub fn with_credentials(mut self, credentials: Option<RegistryCredentials>) -> Self {
        self.registry = RegistryClient::with_credentials(credentials);
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// containerd's version string, e.g. `1.7.24`.
    pub async fn version(&self) -> Result<String, EngineError> {
        let response = api::version_client::VersionClient::new(self.channel.clone())
            .version(())
            .await
            .map_err(|status| EngineError::Connect {
                engine: ENGINE.into(),
                socket: self.socket.display().to_string(),
                message: status_message(&status),
            })?
            .into_inner();
        Ok(response.version)
    }

    /// Platforms the task runtime plugin declares (its `platforms` setting), e.g.
    /// `linux/amd64`, `linux/arm64`. A hint only: containerd does not enforce it.
    pub async fn runtime_platforms(&self) -> Result<Vec<String>, EngineError> {
        let request = api::PluginsRequest {
            filters: vec!["type==io.containerd.runtime.v2,id==task".to_string()],
        };
        let response = api::introspection_client::IntrospectionClient::new(self.channel.clone())
            .plugins(request)
            .await
            .map_err(|status| EngineError::Connect {
                engine: ENGINE.into(),
                socket: self.socket.display().to_string(),
                message: status_message(&status),
            })?
            .into_inner();
        Ok(response
            .plugins
            .iter()
            .flat_map(|plugin| plugin.platforms.iter())
            .map(|p| {
                let mut text = format!("{}/{}", p.os, p.architecture);
                if !p.variant.is_empty() {
                    text = format!("{text}/{}", p.variant);
                }
                text
            })
            .collect())
    }

    pub async fn has_image(&self, image_ref: &str) -> Result<bool, EngineError> {
        self.get_image(image_ref)
            .await
            .map(|image| image.is_some())
            .map_err(image_error("inspect", image_ref))
    }

    /// Removes the image and everything it brought into this namespace: blobs and
    /// unpacked snapshots. Another image that shares a blob with it goes too,
    /// or that blob would stay cached and the next pull would not fetch it;
    /// what the remaining images use is kept.
    pub async fn remove_image(&self, image_ref: &str) -> Result<(), EngineError> {
        let fail = image_error("remove", image_ref);
        let Some(image) = self.get_image(image_ref).await.map_err(&fail)? else {
            return Ok(());
        };
        let mut own = self.image_resources(&image).await.map_err(&fail)?;
        let alias_prefix = platform_alias(image_ref, "");
        let mut kept = ImageResources::default();
        for other in self.list_images().await.map_err(&fail)? {
            if other.name.starts_with(&alias_prefix) {
                // Left by an interrupted wasm run; it goes with the image.
                self.delete_image_record(&other.name, false)
                    .await
                    .map_err(&fail)?;
            } else if other.name != image_ref {
                let resources = self.image_resources(&other).await.map_err(&fail)?;
                if resources.blobs.is_disjoint(&own.blobs) {
                    kept.extend(resources);
                } else {
                    self.delete_image_record(&other.name, false)
                        .await
                        .map_err(&fail)?;
                    own.extend(resources);
                }
            }
        }
        // sync = true runs the garbage collector before answering: unreferenced
        // blobs (including what a wasm shim cached for the image) and snapshots are
        // normally gone when this returns.
        self.delete_image_record(image_ref, true)
            .await
            .map_err(&fail)?;
        // Whatever the collector kept (e.g. a lease from an interrupted pull) is
        // removed explicitly: the next pull must transfer every blob again.
        for chain in own.snapshots.iter().rev() {
            if kept.snapshots.contains(chain) {
                continue;
            }
            let request = snap::RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: chain.clone(),
            };
            match self.snapshots().remove(self.request(request)).await {
                Ok(_) => {}
                Err(status) if status.code() == Code::NotFound => {}
                Err(status) => {
                    return Err(fail(format!(
                        "snapshot {chain} is still in use: {}",
                        status_message(&status)
                    )));
                }
            }
        }
        for digest in &own.blobs {
            if kept.blobs.contains(digest) {
                continue;
            }
            let request = api::DeleteContentRequest {
                digest: digest.clone(),
            };
            match self.content().delete(self.request(request)).await {
                Ok(_) => {}
                Err(status) if status.code() == Code::NotFound => {}
                Err(status) => {
                    return Err(fail(format!("blob {digest}: {}", status_message(&status))));
                }
            }
        }
        Ok(())
    }

    /// Pulls `image_ref` for one platform through the transfer service, unpacked into
    /// the overlayfs snapshotter. `bytes_transferred` is the size of the blobs that
    /// were not in this namespace's content store before (with the daemon's
    /// `content_sharing_policy = "isolated"` that is what came from the registry).
    pub async fn pull(&self, image_ref: &str, platform: &str) -> Result<PullReport, EngineError> {
        let fail = image_error("pull", image_ref);
        let wanted = Platform::parse(platform).map_err(&fail)?;
        let before = self.content_sizes().await.map_err(&fail)?;

        let registry_error = |error| EngineError::image("pull", image_ref, error);
        let image = ImageRef::parse(image_ref).map_err(registry_error)?;
        let authorization = self
            .registry
            .pull_authorization(&image)
            .await
            .map_err(registry_error)?;
        let source = OciRegistry {
            reference: pull_source(&self.pull_endpoints, image_ref),
            resolver: authorization.map(|value| RegistryResolver {
                headers: HashMap::from([("Authorization".to_string(), value.expose().to_string())]),
                ..RegistryResolver::default()
            }),
        };
        let destination = ImageStore {
            name: image_ref.to_string(),
            // Fetch only this platform's manifest and blobs, like `docker pull --platform`.
            platforms: vec![wanted.to_proto()],
            unpacks: vec![UnpackConfiguration {
                platform: Some(wanted.to_proto()),
                snapshotter: SNAPSHOTTER.to_string(),
            }],
            ..ImageStore::default()
        };
        let request = api::TransferRequest {
            source: Some(to_any(&source)),
            destination: Some(to_any(&destination)),
            options: Some(api::TransferOptions::default()),
        };
        let started = Instant::now();
        let outcome = api::transfer_client::TransferClient::new(self.channel.clone())
            .transfer(self.request(request))
            .await;
        let duration = started.elapsed();
        outcome.map_err(|status| fail(pull_hint(&status, platform)))?;

        let after = self.content_sizes().await.map_err(&fail)?;
        let bytes_transferred = after
            .iter()
            .filter(|(digest, _)| !before.contains_key(*digest))
            .map(|(_, size)| *size)
            .sum();
        let resolved = self.resolve(image_ref, &wanted).await.map_err(&fail)?;
        // The transfer service only unpacks what the daemon config allows; check that
        // the rootfs really exists now rather than failing later in `run`.
        if let Some(chain) = resolved.chain_id()
            && !self.snapshot_exists(&chain).await.map_err(&fail)?
        {
            return Err(fail(format!(
                "pulled but not unpacked for {platform} (snapshot {chain} missing); the daemon needs {TRANSFER_CONFIG_HINT}"
            )));
        }
        Ok(PullReport {
            duration,
            digest: resolved.target_digest,
            platform_manifest_digest: resolved.manifest_digest,
            bytes_transferred,
        })
    }

    /// Runs one container to completion. `create_requested_ns` is taken just before
    /// the container-create request; the snapshot, task creation and start that follow
    /// are part of what the workload's marker is measured against. The start is the
    /// shim's `/tasks/start` event, else the start reply; the exit is the shim's
    /// timestamp; the removal is when task, container and snapshot are deleted.
    pub async fn run(&self, request: &RunRequest) -> Result<RunReport, EngineError> {
        let name = request.name.as_str();
        let fail = |message: String| EngineError::Container {
            name: name.to_string(),
            message,
        };
        if !is_identifier(name) {
            return Err(fail("the name is not a valid containerd identifier ([A-Za-z0-9] words joined by . _ -, at most 76 characters)".into()));
        }
        let image_fail = image_error("run", &request.image_ref);
        let platform = Platform::parse(&request.platform).map_err(&image_fail)?;
        let image = self
            .resolve(&request.image_ref, &platform)
            .await
            .map_err(&image_fail)?;
        let spec = runtime_spec(&image.config, request, &self.namespace).map_err(fail)?;
        if let Some(chain) = image.chain_id()
            && !self.snapshot_exists(&chain).await.map_err(&image_fail)?
        {
            return Err(image_fail(format!(
                "not unpacked for {} (pull it for that platform first)",
                request.platform
            )));
        }

        // A container left by an interrupted earlier run would block the name.
        self.remove_container(name).await;
        // runwasi shims load wasm modules from the layers of the manifest the
        // container's image name points at, and cannot read an index (they then fall
        // back to the file in the rootfs). For them, name the platform's manifest.
        let alias = (!request.runtime.starts_with("io.containerd.runc.")
            && image.manifest_digest != image.target_digest)
            .then(|| platform_alias(&request.image_ref, &image.manifest_digest));
        if let Some(alias) = &alias {
            self.create_alias(alias, &image.manifest)
                .await
                .map_err(&image_fail)?;
        }
        let container_image = alias.as_deref().unwrap_or(&request.image_ref);
        let output = match OutputCapture::create(&self.fifo_dir, &self.namespace, name) {
            Ok(output) => output,
            Err(error) => {
                if let Some(alias) = &alias {
                    let _ = self.delete_image_record(alias, false).await;
                }
                return Err(fail(format!(
                    "cannot create output FIFOs under {}: {error}",
                    self.fifo_dir.display()
                )));
            }
        };
        let started_event = self.watch_task_start(name).await;

        let create_requested_ns = now_ns();
        let outcome = self
            .create_start_wait(request, container_image, &image, spec, &output)
            .await;

        let mut cleanup = self.remove_container(name).await;
        let removed_ns = cleanup.is_none().then(now_ns);
        if let Some(alias) = &alias
            && let Err(problem) = self.delete_image_record(alias, false).await
        {
            cleanup = Some(format!("delete image alias {alias}: {problem}"));
        }
        let (stdout, stderr) = output.finish().await;
        let task_started_event_ns = match started_event {
            Some(mut handle) if outcome.is_ok() => {
                // The event was published right after start; if it did not come by
                // now it will not come.
                let ns = match tokio::time::timeout(Duration::from_secs(1), &mut handle).await {
                    Ok(Ok(ns)) => ns,
                    _ => None,
                };
                handle.abort();
                ns
            }
            Some(handle) => {
                handle.abort();
                None
            }
            None => None,
        };
        let task = outcome?;
        if let Some(problem) = cleanup {
            return Err(fail(problem));
        }
        Ok(RunReport {
            create_requested_ns,
            created_ns: Some(task.created_ns),
            started_ns: Some(task_started_event_ns.unwrap_or(task.start_replied_ns)),
            exited_ns: task.exited_ns,
            task_exited_ns: Some(task.exited_ns),
            removed_ns,
            exit_code: task.exit_code,
            stdout,
            stderr,
        })
    }
}

impl Engine for ContainerdEngine {
    async fn version(&self) -> Result<String, EngineError> {
        ContainerdEngine::version(self).await
    }
    async fn has_image(&self, image_ref: &str) -> Result<bool, EngineError> {
        ContainerdEngine::has_image(self, image_ref).await
    }
    async fn remove_image(&self, image_ref: &str) -> Result<(), EngineError> {
        ContainerdEngine::remove_image(self, image_ref).await
    }
    async fn pull(&self, image_ref: &str, platform: &str) -> Result<PullReport, EngineError> {
        ContainerdEngine::pull(self, image_ref, platform).await
    }
    async fn run(&self, request: &RunRequest) -> Result<RunReport, EngineError> {
        ContainerdEngine::run(self, request).await
    }
    async fn clean_up(&self, name: &str, image_ref: &str) -> Result<(), EngineError> {
        let fail = |message: String| EngineError::Container {
            name: name.to_string(),
            message,
        };
        let mut problems: Vec<String> = self.remove_container(name).await.into_iter().collect();
        // Platform aliases are named `<ref>@<digest>`: only runs make them.
        let alias_prefix = format!("{image_ref}@");
        for image in self.list_images().await.map_err(fail)? {
            if image.name.starts_with(&alias_prefix)
                && let Err(problem) = self.delete_image_record(&image.name, false).await
            {
                problems.push(format!("delete image alias {}: {problem}", image.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(fail(problems.join("; ")))
        }
    }
}

// ----------------------------------------------------------------- running ----

impl ContainerdEngine {
    /// Create container, snapshot and task, start, and wait.
    async fn create_start_wait(
        &self,
        request: &RunRequest,
        container_image: &str,
        image: &ResolvedImage,
        spec: serde_json::Value,
        output: &OutputCapture,
    ) -> Result<TaskRun, EngineError> {
        let name = request.name.as_str();
        let fail = |what: &str, status: &Status| EngineError::Container {
            name: name.to_string(),
            message: format!("{what}: {}", status_message(status)),
        };
        let container = api::Container {
            id: name.to_string(),
            image: container_image.to_string(),
            runtime: Some(api::container::Runtime {
                name: request.runtime.clone(),
                options: None,
            }),
            spec: Some(Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value: spec.to_string().into_bytes(),
            }),
            snapshotter: SNAPSHOTTER.to_string(),
            snapshot_key: name.to_string(),
            ..api::Container::default()
        };
        let create = api::CreateContainerRequest {
            container: Some(container),
        };
        self.containers()
            .create(self.request(create))
            .await
            .map_err(|s| fail("create container", &s))?;

        // The container record references the snapshot key, which keeps the new
        // snapshot safe from garbage collection without a lease.
        let prepare = snap::PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: name.to_string(),
            parent: image.chain_id().unwrap_or_default(),
            labels: HashMap::new(),
        };
        let mounts = self
            .snapshots()
            .prepare(self.request(prepare))
            .await
            .map_err(|s| fail("prepare rootfs snapshot", &s))?
            .into_inner()
            .mounts;

        let create_task = api::CreateTaskRequest {
            container_id: name.to_string(),
            rootfs: mounts,
            stdout: output.stdout.display().to_string(),
            stderr: output.stderr.display().to_string(),
            ..api::CreateTaskRequest::default()
        };
        self.tasks()
            .create(self.request(create_task))
            .await
            .map_err(|s| fail("create task", &s))?;
        let created_ns = now_ns();

        // Wait is requested before start so that no exit can be missed.
        let mut tasks = self.tasks();
        let wait_request = self.request(api::WaitRequest {
            container_id: name.to_string(),
            exec_id: String::new(),
        });
        let wait: JoinHandle<Result<api::WaitResponse, Status>> = tokio::spawn(async move {
            tasks
                .wait(wait_request)
                .await
                .map(tonic::Response::into_inner)
        });

        let start = api::StartRequest {
            container_id: name.to_string(),
            exec_id: String::new(),
        };
        if let Err(status) = self.tasks().start(self.request(start)).await {
            wait.abort();
            return Err(fail("start task", &status));
        }
        let start_replied_ns = now_ns();
        let waited = match tokio::time::timeout(request.timeout, wait).await {
            Ok(joined) => joined.map_err(|error| EngineError::Container {
                name: name.to_string(),
                message: format!("wait: {error}"),
            })?,
            Err(_) => {
                return Err(EngineError::Timeout {
                    name: name.to_string(),
                    seconds: request.timeout.as_secs(),
                });
            }
        };
        let exit = waited.map_err(|s| fail("wait", &s))?;
        let exited_ns = exit
            .exited_at
            .as_ref()
            .and_then(timestamp_ns)
            .unwrap_or_else(now_ns);
        Ok(TaskRun {
            exit_code: i64::from(exit.exit_status),
            created_ns,
            start_replied_ns,
            exited_ns,
        })
    }

    /// Kills and deletes the task, then deletes the container and its snapshot; each
    /// step tolerates "not found". Returns a description of what could not be removed.
    async fn remove_container(&self, name: &str) -> Option<String> {
        let mut problems = Vec::new();
        let kill = api::KillRequest {
            container_id: name.to_string(),
            exec_id: String::new(),
            signal: SIGKILL,
            all: true,
        };
        if self.tasks().kill(self.request(kill)).await.is_ok() {
            // The task was still running (timeout or leftover): let it die before delete.
            let wait = api::WaitRequest {
                container_id: name.to_string(),
                exec_id: String::new(),
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                self.tasks().wait(self.request(wait)),
            )
            .await;
        }
        // Each step runs even when one before it failed; "not found" means done.
        let mut note = |step: &str, outcome: Result<(), Status>| {
            if let Err(status) = outcome
                && status.code() != Code::NotFound
            {
                problems.push(format!("{step}: {}", status_message(&status)));
            }
        };
        let delete = api::DeleteTaskRequest {
            container_id: name.to_string(),
        };
        let outcome = self.tasks().delete(self.request(delete)).await;
        note("delete task", outcome.map(drop));
        let delete = api::DeleteContainerRequest {
            id: name.to_string(),
        };
        let outcome = self.containers().delete(self.request(delete)).await;
        note("delete container", outcome.map(drop));
        let remove = snap::RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: name.to_string(),
        };
        let outcome = self.snapshots().remove(self.request(remove)).await;
        note("remove snapshot", outcome.map(drop));
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// Subscribes to this namespace's `/tasks/start` events and returns a handle that
    /// yields the event timestamp for container `name`. containerd sends no response
    /// headers on a subscription until the first event, so readiness is proven by
    /// publishing a private sync event and seeing it come back. `None` when the
    /// subscription could not be confirmed (the run goes on without the timestamp).
    async fn watch_task_start(&self, name: &str) -> Option<JoinHandle<Option<u64>>> {
        let token = format!("p{}n{}", std::process::id(), now_ns());
        let sync_topic = format!("/pipeline/sync/{token}");
        let namespace = &self.namespace;
        let filters = vec![
            format!("namespace==\"{namespace}\",topic==\"/tasks/start\""),
            format!("namespace==\"{namespace}\",topic==\"{sync_topic}\""),
        ];
        let mut client = api::events_client::EventsClient::new(self.channel.clone());
        let subscribe = self.request(api::SubscribeRequest { filters });
        let (ready_tx, mut ready_rx) = oneshot::channel::<()>();
        let container = name.to_string();
        let topic = sync_topic.clone();
        let handle = tokio::spawn(async move {
            let mut stream = client.subscribe(subscribe).await.ok()?.into_inner();
            let mut ready = Some(ready_tx);
            while let Ok(Some(envelope)) = stream.message().await {
                if envelope.topic == topic {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    continue;
                }
                let Some(event) = envelope.event else {
                    continue;
                };
                let Ok(start) =
                    containerd_client::events::TaskStart::decode(event.value.as_slice())
                else {
                    continue;
                };
                if start.container_id == container {
                    return envelope.timestamp.as_ref().and_then(timestamp_ns);
                }
            }
            None
        });
        let mut events = api::events_client::EventsClient::new(self.channel.clone());
        for _ in 0..20 {
            let publish = api::PublishRequest {
                topic: sync_topic.clone(),
                event: Some(Any {
                    type_url: "google.protobuf.Empty".to_string(),
                    value: Vec::new(),
                }),
            };
            if events.publish(self.request(publish)).await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(100), &mut ready_rx).await {
                Ok(Ok(())) => return Some(handle),
                Ok(Err(_)) => break, // the subscription ended
                Err(_) => {}         // not subscribed yet: publish again
            }
        }
        handle.abort();
        None
    }
}

/// What `create_start_wait` saw of a task, ns on the host's clock.
struct TaskRun {
    exit_code: i64,
    /// Container, snapshot and task created: the last create request answered.
    created_ns: u64,
    /// The start request answered.
    start_replied_ns: u64,
    /// The shim's exit timestamp, else when the wait was answered.
    exited_ns: u64,
}

/// The stdout/stderr FIFOs of one run and the tasks draining them. This process holds
/// a write end of each FIFO itself, so the readers see no end-of-file before the shim
/// has connected; `finish` drops those and reads until the shim's ends are closed too.
struct OutputCapture {
    dir: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    holders: Vec<pipe::Sender>,
    readers: Vec<Drain>,
}

/// A FIFO reader task and the buffer it fills (shared, so a stuck reader's output so
/// far is not lost).
struct Drain {
    buffer: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl OutputCapture {
    fn create(base: &Path, namespace: &str, name: &str) -> std::io::Result<OutputCapture> {
        let dir = base.join(format!("{namespace}-{name}-{}", now_ns()));
        std::fs::create_dir_all(&dir)?;
        let mut capture = OutputCapture {
            stdout: dir.join("stdout"),
            stderr: dir.join("stderr"),
            dir,
            holders: Vec::new(),
            readers: Vec::new(),
        };
        for path in [capture.stdout.clone(), capture.stderr.clone()] {
            make_fifo(&path)?;
            let mut receiver = pipe::OpenOptions::new().open_receiver(&path)?;
            capture
                .holders
                .push(pipe::OpenOptions::new().open_sender(&path)?);
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&buffer);
            let reader = tokio::spawn(async move {
                let mut chunk = vec![0u8; 64 << 10];
                while let Ok(n) = receiver.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    let mut sink = sink
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let room = OUTPUT_LIMIT.saturating_sub(sink.len());
                    sink.extend_from_slice(&chunk[..n.min(room)]);
                }
            });
            capture.readers.push(Drain {
                buffer,
                task: reader,
            });
        }
        Ok(capture)
    }

    /// Call after the task is deleted (its shim has closed its write ends).
    async fn finish(mut self) -> (String, String) {
        self.holders.clear();
        let mut texts = Vec::new();
        for Drain { buffer, mut task } in std::mem::take(&mut self.readers) {
            // A shim that never let go of the FIFO must not hang the run: keep what came.
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
            let bytes = buffer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            texts.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let stderr = texts.pop().unwrap_or_default();
        let stdout = texts.pop().unwrap_or_default();
        (stdout, stderr)
    }
}

fn make_fifo(path: &Path) -> std::io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte")
    })?;
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The OCI runtime spec for one run: the image's entrypoint/cmd/env/workdir/user on
/// top of the defaults containerd's own clients use for Linux containers (own pid,
/// ipc, uts, mount and network namespaces; the network one has only loopback).
fn runtime_spec(
    config: &ImageConfig,
    request: &RunRequest,
    namespace: &str,
) -> Result<serde_json::Value, String> {
    let exec = config.config.clone().unwrap_or_default();
    let mut args = exec.entrypoint.unwrap_or_default();
    match &request.args {
        Some(overrides) => args.extend(overrides.iter().cloned()),
        None => args.extend(exec.cmd.unwrap_or_default()),
    }
    if args.is_empty() {
        return Err(format!(
            "image {} has no entrypoint or command and no args were given",
            request.image_ref
        ));
    }
    let mut env = exec.env.unwrap_or_default();
    if !env.iter().any(|var| var.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env.extend(request.env.iter().cloned());
    let cwd = exec
        .working_dir
        .filter(|dir| !dir.is_empty())
        .unwrap_or_else(|| "/".to_string());
    let (uid, gid) = parse_user(exec.user.as_deref().unwrap_or(""))?;
    let cgroups_path = match &request.cgroup_parent {
        Some(parent) if parent.starts_with('/') => {
            format!("{}/{}", parent.trim_end_matches('/'), request.name)
        }
        Some(parent) => {
            return Err(format!(
                "cgroup parent {parent:?} must be an absolute cgroupfs path"
            ));
        }
        // Same default as ctr: one cgroup directory per containerd namespace.
        None => format!("/{namespace}/{}", request.name),
    };
    let caps = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];
    Ok(serde_json::json!({
        "ociVersion": "1.1.0",
        "process": {
            "terminal": false,
            "user": { "uid": uid, "gid": gid },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs" },
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] },
            { "destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "network" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi", "/sys/devices/virtual/powercap"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    }))
}

/// Numeric `uid[:gid]` only: resolving user names would need the rootfs's /etc/passwd.
fn parse_user(user: &str) -> Result<(u32, u32), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
    match (uid.parse(), gid.parse()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => Err(format!(
            "image user {user:?} is not numeric uid[:gid] (user names are not supported)"
        )),
    }
}

// ------------------------------------------------------------------ images ----

/// An OCI platform as `os/arch[/variant]`, normalised the way registries spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Platform {
    os: String,
    architecture: String,
    variant: String,
}

impl Platform {
    fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|part| part.is_empty()) {
            return Err(format!("platform {text:?} is not os/arch[/variant]"));
        }
        let architecture = normalise_arch(parts[1]);
        let variant = normalise_variant(&architecture, parts.get(2).copied().unwrap_or(""));
        Ok(Platform {
            os: parts[0].to_lowercase(),
            architecture,
            variant,
        })
    }

    /// An empty variant in the request accepts any variant.
    fn matches(&self, os: &str, architecture: &str, variant: &str) -> bool {
        let architecture = normalise_arch(architecture);
        self.os == os.to_lowercase()
            && self.architecture == architecture
            && (self.variant.is_empty()
                || self.variant == normalise_variant(&architecture, variant))
    }

    fn to_proto(&self) -> containerd_client::types::Platform {
        containerd_client::types::Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
            os_version: String::new(),
        }
    }
}

fn normalise_arch(arch: &str) -> String {
    match arch.to_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        other => other.to_string(),
    }
}

fn normalise_variant(arch: &str, variant: &str) -> String {
    // arm64 without a variant means v8.
    if arch == "arm64" && variant == "v8" {
        String::new()
    } else {
        variant.to_lowercase()
    }
}

#[derive(Debug, Clone, Deserialize)]
struct OciDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    platform: Option<OciPlatform>,
}

#[derive(Debug, Clone, Deserialize)]
struct OciPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// An index or a manifest (which one is known from the media type, or from the fields).
#[derive(Debug, Deserialize)]
struct OciDocument {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    manifests: Option<Vec<OciDescriptor>>,
    #[serde(default)]
    config: Option<OciDescriptor>,
    #[serde(default)]
    layers: Vec<OciDescriptor>,
}

#[derive(Debug, Clone, Deserialize)]
struct ImageConfig {
    #[serde(default)]
    config: Option<ExecConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ExecConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// An image resolved for one platform.
struct ResolvedImage {
    target_digest: String,
    /// The platform's manifest (the image target itself for a single-platform image).
    manifest: containerd_client::types::Descriptor,
    manifest_digest: String,
    config: ImageConfig,
}

impl ResolvedImage {
    fn chain_id(&self) -> Option<String> {
        chain_id(
            self.config
                .rootfs
                .as_ref()
                .map_or(&[][..], |rootfs| &rootfs.diff_ids),
        )
    }
}

/// Blobs and snapshots (chain IDs, base first) an image has in the store.
#[derive(Default)]
struct ImageResources {
    blobs: BTreeSet<String>,
    snapshots: Vec<String>,
}

impl ImageResources {
    fn extend(&mut self, other: ImageResources) {
        self.blobs.extend(other.blobs);
        self.snapshots.extend(other.snapshots);
    }
}

/// The snapshot name of a layer stack (the OCI image spec's `ChainID`).
fn chain_id(diff_ids: &[String]) -> Option<String> {
    let mut ids = diff_ids.iter();
    let mut chain = ids.next()?.clone();
    for diff_id in ids {
        chain = format!(
            "sha256:{:x}",
            Sha256::digest(format!("{chain} {diff_id}").as_bytes())
        );
    }
    Some(chain)
}

fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    (1..=diff_ids.len())
        .filter_map(|n| chain_id(&diff_ids[..n]))
        .collect()
}

fn is_index(media_type: &str, document: &OciDocument) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.index.v1+json"
            | "application/vnd.docker.distribution.manifest.list.v2+json"
    ) || (media_type.is_empty() && document.manifests.is_some())
}

impl ContainerdEngine {
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Ok(value) = self.namespace.parse() {
            request.metadata_mut().insert("containerd-namespace", value);
        }
        request
    }

    fn images(&self) -> api::images_client::ImagesClient<Channel> {
        api::images_client::ImagesClient::new(self.channel.clone())
    }
    fn content(&self) -> api::content_client::ContentClient<Channel> {
        api::content_client::ContentClient::new(self.channel.clone())
    }
    fn snapshots(&self) -> snap::snapshots_client::SnapshotsClient<Channel> {
        snap::snapshots_client::SnapshotsClient::new(self.channel.clone())
    }
    fn containers(&self) -> api::containers_client::ContainersClient<Channel> {
        api::containers_client::ContainersClient::new(self.channel.clone())
    }
    fn tasks(&self) -> api::tasks_client::TasksClient<Channel> {
        api::tasks_client::TasksClient::new(self.channel.clone())
    }

    async fn create_alias(
        &self,
        alias: &str,
        manifest: &containerd_client::types::Descriptor,
    ) -> Result<(), String> {
        let image = api::Image {
            name: alias.to_string(),
            target: Some(manifest.clone()),
            ..api::Image::default()
        };
        let request = api::CreateImageRequest {
            image: Some(image),
            source_date_epoch: None,
        };
        match self.images().create(self.request(request)).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => Ok(()),
            Err(status) => Err(format!(
                "create image alias {alias}: {}",
                status_message(&status)
            )),
        }
    }

    async fn delete_image_record(&self, name: &str, sync: bool) -> Result<(), String> {
        let request = api::DeleteImageRequest {
            name: name.to_string(),
            sync,
            target: None,
        };
        match self.images().delete(self.request(request)).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(status_message(&status)),
        }
    }

    async fn get_image(&self, name: &str) -> Result<Option<api::Image>, String> {
        let request = api::GetImageRequest {
            name: name.to_string(),
        };
        match self.images().get(self.request(request)).await {
            Ok(response) => Ok(response.into_inner().image),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status_message(&status)),
        }
    }

    async fn list_images(&self) -> Result<Vec<api::Image>, String> {
        let request = api::ListImagesRequest::default();
        match self.images().list(self.request(request)).await {
            Ok(response) => Ok(response.into_inner().images),
            Err(status) => Err(status_message(&status)),
        }
    }

    async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, Status> {
        let request = api::ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let mut stream = self
            .content()
            .read(self.request(request))
            .await?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream.message().await? {
            data.extend_from_slice(&chunk.data);
        }
        Ok(data)
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(&self, digest: &str) -> Result<T, String> {
        let data = self
            .read_blob(digest)
            .await
            .map_err(|status| format!("blob {digest}: {}", status_message(&status)))?;
        serde_json::from_slice(&data)
            .map_err(|error| format!("blob {digest} is not the JSON expected: {error}"))
    }

    /// Index -> the manifest for `platform` -> its config.
    async fn resolve(&self, image_ref: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let image = self
            .get_image(image_ref)
            .await?
            .ok_or_else(|| "image not found (pull it first)".to_string())?;
        let target = image
            .target
            .ok_or_else(|| "image record has no target".to_string())?;
        let mut document: OciDocument = self.read_json(&target.digest).await?;
        let mut manifest = target.clone();
        let media_type = if target.media_type.is_empty() {
            document.media_type.clone()
        } else {
            target.media_type.clone()
        };
        if is_index(&media_type, &document) {
            let wanted = document
                .manifests
                .unwrap_or_default()
                .into_iter()
                .find(|entry| {
                    entry.platform.as_ref().is_some_and(|p| {
                        platform.matches(&p.os, &p.architecture, p.variant.as_deref().unwrap_or(""))
                    })
                })
                .ok_or_else(|| {
                    format!(
                        "the index has no manifest for {}/{}",
                        platform.os, platform.architecture
                    )
                })?;
            document = self.read_json(&wanted.digest).await?;
            manifest = containerd_client::types::Descriptor {
                media_type: if wanted.media_type.is_empty() {
                    document.media_type.clone()
                } else {
                    wanted.media_type
                },
                digest: wanted.digest,
                size: wanted.size,
                annotations: HashMap::new(),
            };
        }
        let manifest_digest = manifest.digest.clone();
        let config_descriptor = document
            .config
            .ok_or_else(|| format!("manifest {manifest_digest} has no config"))?;
        let config = self.read_json(&config_descriptor.digest).await?;
        Ok(ResolvedImage {
            target_digest: target.digest,
            manifest,
            manifest_digest,
            config,
        })
    }

    /// Everything of `image` that is present in this namespace, all platforms.
    async fn image_resources(&self, image: &api::Image) -> Result<ImageResources, String> {
        let mut resources = ImageResources::default();
        let Some(target) = &image.target else {
            return Ok(resources);
        };
        let mut pending = vec![(target.media_type.clone(), target.digest.clone())];
        let mut seen = HashSet::new();
        while let Some((media_type, digest)) = pending.pop() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            let data = match self.read_blob(&digest).await {
                Ok(data) => data,
                // Other platforms of an index are usually not in the store.
                Err(status) if status.code() == Code::NotFound => continue,
                Err(status) => return Err(status_message(&status)),
            };
            resources.blobs.insert(digest.clone());
            let Ok(document) = serde_json::from_slice::<OciDocument>(&data) else {
                continue;
            };
            if is_index(&media_type, &document) {
                for entry in document.manifests.unwrap_or_default() {
                    pending.push((entry.media_type, entry.digest));
                }
                continue;
            }
            // Layers are only listed as blobs; a layer blob is removed whether or not
            // it is still in the store.
            for layer in &document.layers {
                resources.blobs.insert(layer.digest.clone());
            }
            if let Some(config) = &document.config {
                resources.blobs.insert(config.digest.clone());
                if let Ok(config) = self.read_json::<ImageConfig>(&config.digest).await {
                    let diff_ids = config
                        .rootfs
                        .map(|rootfs| rootfs.diff_ids)
                        .unwrap_or_default();
                    resources.snapshots.extend(chain_ids(&diff_ids));
                }
            }
        }
        Ok(resources)
    }

    /// Digest -> size of every blob in this namespace's content store.
    async fn content_sizes(&self) -> Result<HashMap<String, u64>, String> {
        let request = api::ListContentRequest::default();
        let mut stream = self
            .content()
            .list(self.request(request))
            .await
            .map_err(|status| status_message(&status))?
            .into_inner();
        let mut sizes = HashMap::new();
        while let Some(page) = stream
            .message()
            .await
            .map_err(|status| status_message(&status))?
        {
            for info in page.info {
                sizes.insert(info.digest, u64::try_from(info.size).unwrap_or(0));
            }
        }
        Ok(sizes)
    }

    async fn snapshot_exists(&self, key: &str) -> Result<bool, String> {
        let request = snap::StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: key.to_string(),
        };
        match self.snapshots().stat(self.request(request)).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(status_message(&status)),
        }
    }
}

// ----------------------------------------------------------------- helpers ----

/// The reference the transfer service fetches for `image_ref`: the first
/// `(registry, endpoint)` whose registry names the image's registry swaps it.
fn pull_source(endpoints: &[(String, String)], image_ref: &str) -> String {
    endpoints
        .iter()
        .find_map(|(registry, endpoint)| {
            image_ref
                .strip_prefix(registry.as_str())
                .filter(|rest| rest.starts_with('/'))
                .map(|rest| format!("{endpoint}{rest}"))
        })
        .unwrap_or_else(|| image_ref.to_string())
}

/// Name of the image record that points at one platform's manifest of `image_ref`.
fn platform_alias(image_ref: &str, manifest_digest: &str) -> String {
    format!("{image_ref}@{manifest_digest}")
}

fn image_error<'a, E: std::fmt::Display>(
    action: &'static str,
    image: &'a str,
) -> impl Fn(E) -> EngineError + 'a {
    move |error| EngineError::image(action, image, error)
}

/// Adds the likely fix to the two transfer-service failures that have one.
fn pull_hint(status: &Status, platform: &str) -> String {
    let message = status_message(status);
    if message.contains("no unpack platforms defined") {
        format!(
            "{message} (containerd has no transfer unpack config for {platform}; it needs {TRANSFER_CONFIG_HINT})"
        )
    } else if message.contains("server gave HTTP response to HTTPS client") {
        format!(
            "{message} (containerd 1.7's transfer service always uses HTTPS: pull through a TLS endpoint of the registry, `pipeline_containerd_pull_endpoint`)"
        )
    } else {
        message
    }
}

fn status_message(status: &Status) -> String {
    let message = status.message().trim();
    if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        message.to_string()
    }
}

fn timestamp_ns(timestamp: &prost_types::Timestamp) -> Option<u64> {
    let seconds = u64::try_from(timestamp.seconds).ok().filter(|s| *s > 0)?;
    Some(seconds * 1_000_000_000 + u64::try_from(timestamp.nanos).ok()?)
}

/// containerd's identifier rule (namespaces, container IDs): words of [A-Za-z0-9]
/// joined by single `.`, `_` or `-`, at most 76 characters.
fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 76
        && text
            .split(['.', '_', '-'])
            .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_follows_the_image_spec() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let expected = format!("sha256:{:x}", Sha256::digest(b"sha256:aaaa sha256:bbbb"));
        assert_eq!(chain_id(&[a.clone(), b.clone()]), Some(expected.clone()));
        assert_eq!(chain_ids(&[a.clone(), b]), vec![a, expected]);
    }

    #[test]
    fn platforms_normalise_like_registries() {
        let arm = Platform::parse("linux/arm64").unwrap();
        assert!(arm.matches("linux", "arm64", "v8"));
        assert!(arm.matches("linux", "aarch64", ""));
        assert!(!arm.matches("linux", "amd64", ""));
        let wasm = Platform::parse("wasi/wasm").unwrap();
        assert!(wasm.matches("wasi", "wasm", ""));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//").is_err());
    }

    #[test]
    fn pull_endpoints_replace_the_registry_only() {
        let endpoints = vec![("10.0.0.1:5000".to_string(), "10.0.0.1:5443".to_string())];
        assert_eq!(
            pull_source(&endpoints, "10.0.0.1:5000/app:1"),
            "10.0.0.1:5443/app:1"
        );
        assert_eq!(
            pull_source(&endpoints, "10.0.0.1:50000/app:1"),
            "10.0.0.1:50000/app:1"
        );
        assert_eq!(pull_source(&endpoints, "other/app:1"), "other/app:1");
        assert_eq!(
            pull_source(&[], "10.0.0.1:5000/app:1"),
            "10.0.0.1:5000/app:1"
        );
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("pipeline-test.run_1"));
        assert!(!is_identifier("a--b"));
        assert!(!is_identifier("a/b"));
        assert!(!is_identifier(""));
        assert!(!is_identifier(&"a".repeat(77)));
    }

    #[test]
    fn spec_takes_args_over_cmd_and_keeps_entrypoint() {
        let config: ImageConfig = serde_json::from_str(
            r#"{"config":{"Entrypoint":["/hello"],"Cmd":["0"],"Env":["A=1"],"WorkingDir":"/w","User":"1000:1000"},
                "rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let request = RunRequest {
            image_ref: "r".into(),
            platform: "linux/amd64".into(),
            runtime: "io.containerd.runc.v2".into(),
            name: "c1".into(),
            args: Some(vec!["7".into()]),
            timeout: Duration::from_secs(1),
            cgroup_parent: Some("/plab-h1/".into()),
            env: vec!["QEMU_CPU=cortex-a57".into()],
        };
        let spec = runtime_spec(&config, &request, "ns").unwrap();
        assert_eq!(spec["process"]["args"], serde_json::json!(["/hello", "7"]));
        assert_eq!(spec["process"]["env"][0], DEFAULT_PATH);
        let env = spec["process"]["env"].as_array().unwrap();
        assert_eq!(env.last().unwrap(), "QEMU_CPU=cortex-a57", "{env:?}");
        assert_eq!(spec["process"]["cwd"], "/w");
        assert_eq!(spec["process"]["user"]["uid"], 1000);
        assert_eq!(spec["linux"]["cgroupsPath"], "/plab-h1/c1");
        let defaults = RunRequest {
            args: None,
            cgroup_parent: None,
            ..request
        };
        let spec = runtime_spec(&config, &defaults, "ns").unwrap();
        assert_eq!(spec["process"]["args"], serde_json::json!(["/hello", "0"]));
        assert_eq!(spec["linux"]["cgroupsPath"], "/ns/c1");
    }

    #[test]
    fn user_names_are_refused() {
        assert_eq!(parse_user("").unwrap(), (0, 0));
        assert_eq!(parse_user("5").unwrap(), (5, 0));
        assert!(parse_user("nobody").is_err());
    }
}

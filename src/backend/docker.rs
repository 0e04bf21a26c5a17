//! Docker Engine through its API (bollard), on the host's own socket.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptions,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures::StreamExt;

use super::credentials::RegistryCredentials;
use super::{Engine, EngineError, PullReport, RunReport, RunRequest, now_ns};

/// Credentials as the engine API takes them (its `X-Registry-Auth`), for
/// the registry of `image_ref`.
pub(crate) fn engine_credentials(
    credentials: Option<&RegistryCredentials>,
    image_ref: &str,
) -> Option<DockerCredentials> {
    credentials.map(|credentials| DockerCredentials {
        username: Some(credentials.username.clone()),
        password: Some(credentials.password.expose().to_string()),
        serveraddress: image_ref
            .split_once('/')
            .map(|(registry, _)| registry.to_string()),
        ..DockerCredentials::default()
    })
}

pub struct DockerEngine {
    docker: Docker,
    registry: super::registry::RegistryClient,
    credentials: Option<RegistryCredentials>,
}

impl DockerEngine {
    pub fn connect(socket: &str) -> Result<DockerEngine, EngineError> {
        let docker = Docker::connect_with_unix(socket, 600, bollard::API_DEFAULT_VERSION).map_err(
            |error| EngineError::Connect {
                engine: "docker".into(),
                socket: socket.to_string(),
                message: error.to_string(),
            },
        )?;
        Ok(DockerEngine {
            docker,
            registry: super::registry::RegistryClient::new(),
            credentials: None,
        })
    }

    /// Pulls (and the registry look-ups that size them) as this user.
    #[must_use]
    pub fn with_credentials(mut self, credentials: Option<RegistryCredentials>) -> Self {
        self.registry = super::registry::RegistryClient::with_credentials(credentials.clone());
        self.credentials = credentials;
        self
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

/// Docker 28 and newer are reported to hang with runwasi-based shims such as
/// the wasmtime shim: a wasm run there is refused up front, as a failed run
/// that says why, rather than left to time out.
fn known_failure(version: &str, runtime: &str) -> Option<EngineError> {
    let major: u32 = version.split('.').next()?.parse().ok()?;
    (!is_native_runtime(runtime) && major >= 28).then(|| EngineError::KnownFailure {
        engine: "docker".into(),
        version: version.to_string(),
        runtime: runtime.to_string(),
        reason: "Docker 28 and newer are known to hang with runwasi-based shims; \
                 measure wasm through Docker 26, or through containerd"
            .into(),
    })
}

fn is_native_runtime(runtime: &str) -> bool {
    runtime == "runc" || runtime.starts_with("io.containerd.runc.")
}

/// An image's layers, by uncompressed digest (the same layer in two images
/// has the same diff ID whatever its compression).
fn layer_set(image: &bollard::models::ImageInspect) -> BTreeSet<String> {
    image
        .root_fs
        .as_ref()
        .and_then(|root| root.layers.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn image_error<'a>(
    action: &'static str,
    image: &'a str,
) -> impl Fn(bollard::errors::Error) -> EngineError + 'a {
    move |error| EngineError::image(action, image, error)
}

impl Engine for DockerEngine {
    async fn version(&self) -> Result<String, EngineError> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|error| EngineError::Connect {
                engine: "docker".into(),
                socket: String::new(),
                message: error.to_string(),
            })?;
        Ok(version.version.unwrap_or_default())
    }

    async fn has_image(&self, image_ref: &str) -> Result<bool, EngineError> {
        match self.docker.inspect_image(image_ref).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(error) => Err(image_error("inspect", image_ref)(error)),
        }
    }

    async fn remove_image(&self, image_ref: &str) -> Result<(), EngineError> {
        let layers = match self.docker.inspect_image(image_ref).await {
            Ok(image) => layer_set(&image),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(()),
            Err(error) => return Err(image_error("inspect", image_ref)(error)),
        };
        // An image sharing a layer with this one would keep that layer cached,
        // and the next pull would not fetch it: it goes too.
        let mut doomed = vec![image_ref.to_string()];
        let images = self.list_images_settled(image_ref).await?;
        for summary in images {
            let other = match self.docker.inspect_image(&summary.id).await {
                Ok(other) => other,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => continue,
                Err(error) => return Err(image_error("inspect", &summary.id)(error)),
            };
            if !layer_set(&other).is_disjoint(&layers) {
                doomed.push(summary.id);
            }
        }
        let options = RemoveImageOptionsBuilder::default()
            .force(true)
            .noprune(false)
            .build();
        for image in &doomed {
            match self
                .docker
                .remove_image(image, Some(options.clone()), None)
                .await
            {
                Ok(_)
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(error) => return Err(image_error("remove", image)(error)),
            }
        }
        Ok(())
    }

    async fn pull(&self, image_ref: &str, platform: &str) -> Result<PullReport, EngineError> {
        let options = CreateImageOptionsBuilder::default()
            .from_image(image_ref)
            .platform(platform)
            .build();
        let started = Instant::now();
        let credentials = engine_credentials(self.credentials.as_ref(), image_ref);
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        // Each blob reports its total while downloading; the largest total per blob is its size.
        // Small blobs may go straight to "Download complete" without a total;
        // their sizes come from the registry's manifest below.
        let mut blob_sizes: HashMap<String, u64> = HashMap::new();
        let mut digest = String::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(image_error("pull", image_ref))?;
            if let Some(error) = info.error_detail.and_then(|detail| detail.message) {
                return Err(EngineError::image("pull", image_ref, error));
            }
            let status = info.status.unwrap_or_default();
            if let Some(found) = status.strip_prefix("Digest: ") {
                digest = found.trim().to_string();
            }
            let downloading =
                status.starts_with("Downloading") || status.starts_with("Download complete");
            if let (Some(id), true) = (info.id, downloading) {
                let total = info
                    .progress_detail
                    .and_then(|detail| detail.total)
                    .and_then(|t| u64::try_from(t).ok());
                let size = blob_sizes.entry(id).or_default();
                *size = (*size).max(total.unwrap_or(0));
            }
        }
        let duration = started.elapsed();
        let unknown: Vec<String> = blob_sizes
            .iter()
            .filter(|(_, size)| **size == 0)
            .map(|(id, _)| id.clone())
            .collect();
        if !unknown.is_empty() {
            let sizes = super::registry::layer_sizes(&self.registry, image_ref, platform)
                .await
                .map_err(|error| EngineError::image("pull", image_ref, error))?;
            for id in unknown {
                let size = sizes
                    .iter()
                    .find(|(digest, _)| digest.trim_start_matches("sha256:").starts_with(&id))
                    .map_or(0, |(_, size)| *size);
                blob_sizes.insert(id, size);
            }
        }
        Ok(PullReport {
            duration,
            digest,
            platform_manifest_digest: String::new(),
            bytes_transferred: blob_sizes.values().sum(),
        })
    }

    async fn run(&self, request: &RunRequest) -> Result<RunReport, EngineError> {
        let name = request.name.clone();
        let failure = |error: bollard::errors::Error| EngineError::Container {
            name: name.clone(),
            message: error.to_string(),
        };
        // Only a wasm run asks the engine its version: native runs, most of
        // them, pay no extra round trip.
        if !is_native_runtime(&request.runtime)
            && let Some(refused) = known_failure(&self.version().await?, &request.runtime)
        {
            return Err(refused);
        }
        // A container left by an interrupted earlier run would block the name.
        let remove = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = self
            .docker
            .remove_container(&request.name, Some(remove.clone()))
            .await;
        let options = CreateContainerOptionsBuilder::default()
            .name(&request.name)
            .platform(&request.platform)
            .build();
        let body = ContainerCreateBody {
            image: Some(request.image_ref.clone()),
            cmd: request.args.clone(),
            env: (!request.env.is_empty()).then(|| request.env.clone()),
            // The engine's default network, as the paper's `docker run` had:
            // an explicit `none` made dockerd 26 take about 45 ms longer to
            // reach main on the lab (150 against 105 ms, docs/performance.md).
            host_config: Some(HostConfig {
                runtime: Some(request.runtime.clone()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let create_requested_ns = now_ns();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(failure)?;
        let created_ns = now_ns();
        let outcome = async {
            self.docker
                .start_container(&request.name, None)
                .await
                .map_err(failure)?;
            let start_replied_ns = now_ns();
            let mut wait = self.docker.wait_container(&request.name, None);
            let exit_code = match tokio::time::timeout(request.timeout, wait.next()).await {
                Err(_) => {
                    return Err(EngineError::Timeout {
                        name: request.name.clone(),
                        seconds: request.timeout.as_secs(),
                    });
                }
                Ok(Some(Ok(response))) => response.status_code,
                // bollard turns a non-zero exit into an error that carries the code.
                Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError {
                    code, ..
                }))) => code,
                Ok(Some(Err(error))) => return Err(failure(error)),
                Ok(None) => {
                    return Err(EngineError::Container {
                        name: request.name.clone(),
                        message: "wait ended without a status".into(),
                    });
                }
            };
            let exited_ns = now_ns();
            let (output, stamps) =
                tokio::join!(self.output(&request.name), self.task_stamps(&request.name));
            let (stdout, stderr) = output.map_err(failure)?;
            Ok(RunReport {
                create_requested_ns,
                created_ns: Some(created_ns),
                started_ns: Some(stamps.started_ns.unwrap_or(start_replied_ns)),
                exited_ns,
                task_exited_ns: Some(stamps.exited_ns.unwrap_or(exited_ns)),
                removed_ns: None,
                exit_code,
                stdout,
                stderr,
            })
        }
        .await;
        let removed = self
            .docker
            .remove_container(&request.name, Some(remove))
            .await;
        let removed_ns = now_ns();
        outcome.map(|report| RunReport {
            removed_ns: removed.is_ok().then_some(removed_ns),
            ..report
        })
    }

    async fn clean_up(&self, name: &str, _image_ref: &str) -> Result<(), EngineError> {
        self.remove_container(name).await
    }
}

impl DockerEngine {
    /// Every image, as `docker images -a` lists them. With the containerd
    /// image store, the list fails with 404 while another client is removing
    /// an image whose config is already gone; a moment later it is whole.
    async fn list_images_settled(
        &self,
        image_ref: &str,
    ) -> Result<Vec<bollard::models::ImageSummary>, EngineError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.docker.list_images(None::<ListImagesOptions>).await {
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) if attempt < 5 => tokio::time::sleep(Duration::from_millis(200)).await,
                result => return result.map_err(image_error("list", image_ref)),
            }
        }
    }

    /// Removes the container `name`, running or not; gone already is fine.
    pub async fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        let remove = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(name, Some(remove)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(error) => Err(EngineError::Container {
                name: name.to_string(),
                message: error.to_string(),
            }),
        }
    }

    /// When the task started and exited, as the daemon recorded them: the
    /// start when the runtime's start returned, the exit as the runtime's exit
    /// event dated it. A container that cannot be inspected has neither.
    async fn task_stamps(&self, name: &str) -> TaskStamps {
        let state = match self.docker.inspect_container(name, None).await {
            Ok(container) => container.state.unwrap_or_default(),
            Err(_) => return TaskStamps::default(),
        };
        let stamp = |text: Option<String>| text.as_deref().and_then(rfc3339_ns);
        TaskStamps {
            started_ns: stamp(state.started_at),
            exited_ns: stamp(state.finished_at),
        }
    }

    async fn output(&self, name: &str) -> Result<(String, String), bollard::errors::Error> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let mut logs = self.docker.logs(name, Some(options));
        let (mut stdout, mut stderr) = (String::new(), String::new());
        while let Some(item) = logs.next().await {
            match item? {
                bollard::container::LogOutput::StdOut { message } => {
                    stdout.push_str(&String::from_utf8_lossy(&message));
                }
                bollard::container::LogOutput::StdErr { message } => {
                    stderr.push_str(&String::from_utf8_lossy(&message));
                }
                _ => {}
            }
        }
        Ok((stdout, stderr))
    }
}

/// The daemon's own timestamps of a container's task, ns since the epoch.
#[derive(Debug, Default, PartialEq, Eq)]
struct TaskStamps {
    started_ns: Option<u64>,
    exited_ns: Option<u64>,
}

/// Docker's RFC 3339 time in UTC with up to nanoseconds, as ns since the
/// epoch. `None` for the zero time (`0001-01-01T00:00:00Z`) the daemon shows
/// for a phase that did not happen, and for anything it cannot read.
fn rfc3339_ns(text: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339(text).ok()?;
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_nanos()).ok()
}

/// How long a pull may take before the engine's own timeout applies.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_timestamps_keep_their_nanoseconds() {
        assert_eq!(
            rfc3339_ns("2026-11-29T21:14:02.123456789Z"),
            Some(1_795_986_842_123_456_789)
        );
        // Go drops trailing zeros of the fraction.
        assert_eq!(
            rfc3339_ns("2026-11-29T21:14:02.1Z"),
            Some(1_795_986_842_100_000_000)
        );
        assert_eq!(
            rfc3339_ns("2026-11-29T21:14:02Z"),
            Some(1_795_986_842_000_000_000)
        );
    }

    #[test]
    fn the_zero_time_and_garbage_are_no_timestamp() {
        assert_eq!(rfc3339_ns("0001-01-01T00:00:00Z"), None);
        assert_eq!(rfc3339_ns(""), None);
        assert_eq!(rfc3339_ns("yesterday"), None);
        // Docker writes UTC; an offset is not read.
        assert_eq!(rfc3339_ns("2026-11-29T22:14:02.5+01:00"), None);
    }

    #[test]
    fn wasm_through_docker_28_and_newer_is_a_known_failure() {
        let refused = |version, runtime| known_failure(version, runtime).is_some();
        assert!(refused("28.2.2", "io.containerd.wasmtime.v1"));
        assert!(refused("29.0.0", "wasmtime"));
        assert!(!refused("26.1.5+dfsg1", "io.containerd.wasmtime.v1"));
        assert!(!refused("28.2.2", "runc"));
        assert!(!refused("28.2.2", "io.containerd.runc.v2"));
        let message = known_failure("28.2.2", "io.containerd.wasmtime.v1")
            .expect("refused")
            .to_string();
        assert!(
            message.starts_with("docker 28.2.2 with io.containerd.wasmtime.v1: "),
            "{message}"
        );
    }
}

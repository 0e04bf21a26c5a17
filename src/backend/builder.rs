//! Builds images on a Docker engine and publishes them to an OCI registry.
//!
//! Platform images are built with the engine's classic builder on the
//! builder's own platform (build stages cross-compile; nothing is emulated)
//! and then published by the pipeline itself: the engine exports the image,
//! the config is given the target's os/architecture, and config, layers and
//! manifest are uploaded to the registry. That is how a `FROM scratch` image
//! holding an arm64 binary, or a `.wasm` module, gets the right platform: the
//! classic builder would stamp the builder's own, and BuildKit cannot be fed
//! a build context through the engine API without a file-sync session.
//!
//! Base images are Debian root file systems made with debootstrap, packages
//! installed with apt in a chroot, imported into the engine as one layer.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, PushImageOptionsBuilder,
};
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::WorkLog;
use super::credentials::{PASSWORD_VARIABLE, RegistryCredentials, USERNAME_VARIABLE};
use super::registry::{ImageRef, OCI_MANIFEST, RegistryClient, RegistryError, sha256_digest};
use crate::platform::Platform;
use crate::records::ImageRecord;

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Label prefix under which a base image records its package versions.
const TOOLCHAIN_LABEL: &str = "dev.pipeline.toolchain.";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the builder engine: {0}")]
    Engine(#[from] bollard::errors::Error),
    #[error("building {image}: {message}")]
    Build { image: String, message: String },
    #[error("base image {base}: {message}")]
    Base { base: String, message: String },
    #[error("exporting {image} from the engine: {message}")]
    Export { image: String, message: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl BuildError {
    /// Failures of the registry or of the connection to the engine may pass;
    /// a Dockerfile that does not build will fail again.
    pub fn is_retryable(&self) -> bool {
        match self {
            BuildError::Registry(error) => error.is_retryable(),
            BuildError::Engine(error) => super::is_transient(&error.to_string()),
            BuildError::Build { .. } | BuildError::Base { .. } | BuildError::Export { .. } => false,
        }
    }
}

/// A base image to make: a Debian root file system from debootstrap, or a
/// copy of the base it is built `from`, plus packages and commands.
#[derive(Debug, Clone)]
pub struct BaseRecipe {
    pub name: String,
    pub platform: Platform,
    pub from: Option<String>,
    pub debootstrap: Option<Debootstrap>,
    pub packages: Vec<String>,
    pub run: Vec<String>,
    pub image_ref: String,
    /// Names the cached root file system: equal keys, equal trees.
    pub cache_key: String,
}

#[derive(Debug, Clone)]
pub struct Debootstrap {
    pub suite: String,
    pub variant: Option<String>,
    pub mirror: Option<String>,
}

/// A build context: the Dockerfile, folders and single files copied in
/// under given names.
pub struct BuildContext<'a> {
    pub dockerfile: &'a str,
    pub folders: &'a [(String, PathBuf)],
    pub files: &'a [(String, PathBuf)],
}

#[derive(Clone)]
pub struct EngineBuilder {
    docker: Docker,
    registry: RegistryClient,
    credentials: Option<RegistryCredentials>,
    /// Holds debootstrap's package cache, shared by every base.
    cache_dir: PathBuf,
}

impl EngineBuilder {
    pub fn connect(socket: &Path, cache_dir: PathBuf) -> Result<EngineBuilder, BuildError> {
        let docker = Docker::connect_with_unix(
            &socket.to_string_lossy(),
            3600,
            bollard::API_DEFAULT_VERSION,
        )?;
        Ok(EngineBuilder {
            docker,
            registry: RegistryClient::new(),
            credentials: None,
            cache_dir,
        })
    }

    /// Pushes (through the registry API and through the engine) as this user.
    #[must_use]
    pub fn with_credentials(mut self, credentials: Option<RegistryCredentials>) -> Self {
        self.registry = RegistryClient::with_credentials(credentials.clone());
        self.credentials = credentials;
        self
    }

    /// Builds `image_ref` from the context; returns the engine's record of it
    /// (size as the engine counts it; digest and registry size come with publishing).
    pub async fn build(
        &self,
        image_ref: &str,
        platform: &Platform,
        context: &BuildContext<'_>,
        log: &dyn WorkLog,
    ) -> Result<ImageRecord, BuildError> {
        let failure = |message: String| BuildError::Build {
            image: image_ref.to_string(),
            message,
        };
        let body = context_tar(context).map_err(|error| failure(error.to_string()))?;
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(image_ref)
            .rm(true)
            .forcerm(true)
            // Everything a build needs is in its context or its base images.
            .networkmode("none")
            .pull("false")
            .build();
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_full(body.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|error| failure(error.to_string()))?;
            if let Some(text) = info.stream {
                for line in text.lines().filter(|line| !line.trim().is_empty()) {
                    log.line(line.to_string());
                }
            }
            if let Some(detail) = info.error_detail {
                return Err(failure(detail.message.unwrap_or_default()));
            }
        }
        let exported = self.export(image_ref).await?;
        let size = exported.unpacked_size().map_err(failure)?;
        log.line(format!("built {image_ref}: {size} bytes of files"));
        Ok(ImageRecord {
            image_ref: image_ref.to_string(),
            digest: String::new(),
            platform: platform.to_string(),
            host_size_bytes: size,
            oci_size_bytes: 0,
            toolchain: BTreeMap::new(),
        })
    }

    /// Publishes a built image to its registry as a single-platform OCI
    /// image for `platform`; returns the manifest digest and the compressed
    /// size (config plus layers).
    pub async fn publish(
        &self,
        image_ref: &str,
        platform: &Platform,
        log: &dyn WorkLog,
    ) -> Result<(String, u64), BuildError> {
        let export_error = |message: String| BuildError::Export {
            image: image_ref.to_string(),
            message,
        };
        let exported = self.export(image_ref).await?;
        let config = retarget_config(&exported.config, platform).map_err(export_error)?;
        let target = ImageRef::parse(image_ref)?;

        let mut layers = Vec::with_capacity(exported.layers.len());
        let mut compressed_size = 0u64;
        for layer in exported.layers {
            let size = layer.len() as u64;
            let media_type = if layer.starts_with(&[0x1f, 0x8b]) {
                LAYER_GZIP
            } else {
                LAYER_TAR
            };
            let digest = self.registry.put_blob(&target, layer).await?;
            compressed_size += size;
            layers
                .push(serde_json::json!({"mediaType": media_type, "digest": digest, "size": size}));
        }
        let config_size = config.len() as u64;
        let config_digest = self.registry.put_blob(&target, config).await?;
        compressed_size += config_size;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
            "layers": layers,
        });
        let bytes =
            serde_json::to_vec(&manifest).map_err(|error| export_error(error.to_string()))?;
        let expected = sha256_digest(&bytes);
        let digest = self
            .registry
            .put_manifest(&target, OCI_MANIFEST, bytes)
            .await?;
        if digest != expected {
            return Err(export_error(format!(
                "the registry stored the manifest as {digest}, not {expected}"
            )));
        }
        log.line(format!(
            "published {image_ref} for {platform}: {digest}, {compressed_size} bytes compressed"
        ));
        Ok((digest, compressed_size))
    }

    /// The image as the engine exports it (`docker save`).
    async fn export(&self, image_ref: &str) -> Result<ExportedImage, BuildError> {
        let mut archive = Vec::new();
        let mut stream = self.docker.export_image(image_ref);
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk?);
        }
        ExportedImage::read(&archive).map_err(|message| BuildError::Export {
            image: image_ref.to_string(),
            message,
        })
    }

    /// The record of a base image already in the engine, if it is there.
    pub async fn existing_base(&self, base: &BaseRecipe) -> Option<ImageRecord> {
        let inspect = self.docker.inspect_image(&base.image_ref).await.ok()?;
        let toolchain = inspect
            .config
            .and_then(|config| config.labels)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(key, value)| {
                key.strip_prefix(TOOLCHAIN_LABEL)
                    .map(|name| (name.to_string(), value))
            })
            .collect();
        Some(ImageRecord {
            image_ref: base.image_ref.clone(),
            digest: inspect.id.unwrap_or_default(),
            platform: base.platform.to_string(),
            host_size_bytes: inspect
                .size
                .and_then(|size| u64::try_from(size).ok())
                .unwrap_or(0),
            oci_size_bytes: 0,
            toolchain,
        })
    }

    /// Makes a base image: a debootstrap root file system, or a copy of the
    /// root file system of the base it is built `from`, with packages
    /// installed by apt and commands run in a chroot; then imports it.
    /// `parent` is the base named by `from`.
    pub async fn base(
        &self,
        base: &BaseRecipe,
        parent: Option<&BaseRecipe>,
        log: &dyn WorkLog,
    ) -> Result<ImageRecord, BuildError> {
        if let Some(record) = self.existing_base(base).await {
            log.line(format!("{} is already in the engine", base.image_ref));
            return Ok(record);
        }
        let rootfs = self.rootfs_dir(base);
        let parent_rootfs = parent.map(|parent| self.rootfs_dir(parent));
        self.make_rootfs(base, &rootfs, parent_rootfs.as_deref(), log)
            .await?;
        let toolchain = package_versions(&rootfs, &base.packages, log).await;
        self.import(base, &rootfs, &toolchain, log).await?;
        self.existing_base(base)
            .await
            .ok_or_else(|| BuildError::Base {
                base: base.name.clone(),
                message: "the engine does not list the image it just imported".into(),
            })
    }

    /// Where a base's root file system is kept, by fingerprint, so that bases
    /// built `from` it start from a copy instead of a new debootstrap.
    pub fn rootfs_dir(&self, base: &BaseRecipe) -> PathBuf {
        self.cache_dir
            .join("bases")
            .join(&base.cache_key)
            .join("rootfs")
    }

    async fn make_rootfs(
        &self,
        base: &BaseRecipe,
        rootfs: &Path,
        parent_rootfs: Option<&Path>,
        log: &dyn WorkLog,
    ) -> Result<(), BuildError> {
        let failure = |message: String| BuildError::Base {
            base: base.name.clone(),
            message,
        };
        let done_marker = rootfs.with_file_name("complete");
        if done_marker.exists() {
            log.line(format!(
                "reusing the root file system in {}",
                rootfs.display()
            ));
            return Ok(());
        }
        // A half-made tree from an interrupted run is not worth repairing.
        if rootfs.exists() {
            std::fs::remove_dir_all(rootfs)
                .map_err(|error| failure(format!("removing {}: {error}", rootfs.display())))?;
        }
        let parent = rootfs.parent().unwrap_or(rootfs);
        std::fs::create_dir_all(parent)
            .map_err(|error| failure(format!("creating {}: {error}", parent.display())))?;
        let rootfs_text = rootfs.to_string_lossy().to_string();

        if let Some(debootstrap) = &base.debootstrap {
            let package_cache = self.cache_dir.join("debootstrap");
            std::fs::create_dir_all(&package_cache).map_err(|error| {
                failure(format!("creating {}: {error}", package_cache.display()))
            })?;
            let mut args = vec![
                format!("--arch={}", debian_arch(&base.platform)),
                format!("--cache-dir={}", package_cache.display()),
            ];
            if let Some(variant) = &debootstrap.variant {
                args.push(format!("--variant={variant}"));
            }
            args.push(debootstrap.suite.clone());
            args.push(rootfs_text.clone());
            args.push(
                debootstrap
                    .mirror
                    .clone()
                    .unwrap_or_else(machine_debian_mirror),
            );
            run_logged("debootstrap", &args, log)
                .await
                .map_err(failure)?;
        } else {
            let from = base.from.as_deref().unwrap_or_default();
            let source =
                parent_rootfs.ok_or_else(|| failure(format!("base `{from}` is unknown")))?;
            if !source.with_file_name("complete").is_file() {
                return Err(failure(format!(
                    "the root file system of base `{from}` is not in {}; remove its image from the builder engine to have it made again",
                    source.display()
                )));
            }
            run_logged(
                "cp",
                &[
                    "-a".into(),
                    "--reflink=auto".into(),
                    source.to_string_lossy().to_string(),
                    rootfs_text.clone(),
                ],
                log,
            )
            .await
            .map_err(failure)?;
        }

        for step in apt_steps(&base.packages) {
            chroot_logged(rootfs, &step, log).await.map_err(failure)?;
        }
        // The base's `run` commands are the user's own shell, run as written.
        for command in &base.run {
            let shell = ["/bin/sh".to_string(), "-c".to_string(), command.clone()];
            chroot_logged(rootfs, &shell, log).await.map_err(failure)?;
        }
        std::fs::write(&done_marker, base.image_ref.as_bytes())
            .map_err(|error| failure(format!("writing {}: {error}", done_marker.display())))?;
        Ok(())
    }

    async fn import(
        &self,
        base: &BaseRecipe,
        rootfs: &Path,
        toolchain: &BTreeMap<String, String>,
        log: &dyn WorkLog,
    ) -> Result<(), BuildError> {
        let failure = |message: String| BuildError::Base {
            base: base.name.clone(),
            message,
        };
        let (repository, tag) = repository_and_tag(&base.image_ref);
        let mut changes: Vec<String> = toolchain
            .iter()
            .map(|(name, version)| format!("LABEL {TOOLCHAIN_LABEL}{name}=\"{version}\""))
            .collect();
        changes.push("CMD [\"/bin/sh\"]".into());
        // tar streams the tree; the engine reads it as it comes.
        let mut child = tokio::process::Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "-C"])
            .arg(rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| failure(format!("starting tar: {error}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failure("tar has no stdout".into()))?;
        let body =
            tokio_util::io::ReaderStream::new(stdout).filter_map(|chunk| async move { chunk.ok() });
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repository)
            .tag(tag)
            .platform(&base.platform.to_string())
            .changes(changes)
            .build();
        let mut stream =
            self.docker
                .create_image(Some(options), Some(bollard::body_stream(body)), None);
        while let Some(item) = stream.next().await {
            let info = item?;
            if let Some(detail) = info.error_detail {
                return Err(failure(detail.message.unwrap_or_default()));
            }
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|error| failure(format!("tar: {error}")))?;
        if !output.status.success() {
            return Err(failure(format!(
                "tar failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        log.line(format!("imported {}", base.image_ref));
        Ok(())
    }

    /// Pushes an image as the engine has it (bases: their platform is right).
    pub async fn push_as_is(&self, image_ref: &str, log: &dyn WorkLog) -> Result<(), BuildError> {
        let (repository, tag) = repository_and_tag(image_ref);
        let options = PushImageOptionsBuilder::default().tag(tag).build();
        let credentials = super::docker::engine_credentials(self.credentials.as_ref(), image_ref);
        let mut stream = self
            .docker
            .push_image(repository, Some(options), credentials);
        while let Some(item) = stream.next().await {
            // dockerd reports a refused push either as an error in the
            // stream or as an error detail in a message; both get the hint.
            let refusal = match item {
                Err(error) => Some(error.to_string()),
                Ok(info) => info
                    .error_detail
                    .map(|detail| detail.message.unwrap_or_default()),
            };
            if let Some(message) = refusal {
                // The engine says "no basic auth credentials" or
                // "unauthorized"; where credentials come from is ours to say.
                let hint = if self.credentials.is_none()
                    && (message.contains("auth") || message.contains("denied"))
                {
                    format!(
                        " (the registry wants credentials: set {USERNAME_VARIABLE} and \
                         {PASSWORD_VARIABLE}, or log in with `docker login`)"
                    )
                } else {
                    String::new()
                };
                return Err(BuildError::Build {
                    image: image_ref.to_string(),
                    message: format!("push: {message}{hint}"),
                });
            }
        }
        log.line(format!("pushed {image_ref}"));
        Ok(())
    }
}

/// The Debian mirror this machine's apt uses (the first `deb` source that is
/// not a security archive), so that bases come from wherever the machine is
/// allowed to fetch packages; Debian's own address when there is none.
fn machine_debian_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        paths.sort();
        texts.extend(
            paths
                .iter()
                .filter(|path| path.extension().is_some_and(|ext| ext == "sources"))
                .filter_map(|path| std::fs::read_to_string(path).ok()),
        );
    }
    let one_line = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    debian_mirror_from(&texts, &one_line).unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

fn debian_mirror_from(deb822: &[String], one_line: &str) -> Option<String> {
    let usable = |uri: &str| uri.starts_with("http") && !uri.contains("security");
    for text in deb822 {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(str::trim)
            };
            if field("Enabled:") == Some("no")
                || !field("Types:").is_some_and(|t| t.contains("deb"))
            {
                continue;
            }
            if let Some(uri) = field("URIs:").and_then(|uris| uris.split_whitespace().next())
                && usable(uri)
            {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    one_line.lines().find_map(|line| {
        let mut words = line
            .split_whitespace()
            .filter(|word| !word.starts_with('['));
        (words.next() == Some("deb"))
            .then(|| words.next())
            .flatten()
            .filter(|uri| usable(uri))
            .map(|uri| uri.trim_end_matches('/').to_string())
    })
}

/// `registry:port/name:tag` as the engine API takes it: name and tag apart
/// (a colon before the last `/` is the registry's port, not a tag).
fn repository_and_tag(image_ref: &str) -> (&str, &str) {
    image_ref
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .unwrap_or((image_ref, "latest"))
}

/// Debian's name for a platform's architecture.
fn debian_arch(platform: &Platform) -> String {
    match (platform.architecture.as_str(), platform.variant.as_deref()) {
        ("arm", Some("v7")) => "armhf".into(),
        ("arm", _) => "armel".into(),
        ("386", _) => "i386".into(),
        (other, _) => other.into(),
    }
}

/// The build context as a tar: the Dockerfile at the top, each folder under its name.
fn context_tar(context: &BuildContext<'_>) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    // A linker's output may have holes; GNU sparse entries are refused by
    // dockerd's classic builder ("unhandled tar header type 83").
    tar.sparse(false);
    // Contents, names and the owner's exec bit only: what the fingerprint
    // hashes, so equal fingerprints send equal contexts.
    tar.mode(tar::HeaderMode::Deterministic);
    let mut header = tar::Header::new_gnu();
    header.set_size(context.dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", context.dockerfile.as_bytes())?;
    for (name, folder) in context.folders {
        tar.append_dir(name, folder)?;
        // The same files the build fingerprint hashes, no more.
        for entry in crate::tree::entries(folder)? {
            let path = folder.join(&entry.relative);
            let inside = Path::new(name).join(&entry.relative);
            if entry.is_dir {
                tar.append_dir(&inside, &path)?;
            } else {
                tar.append_path_with_name(&path, &inside)?;
            }
        }
    }
    for (name, file) in context.files {
        tar.append_path_with_name(file, name)?;
    }
    tar.into_inner()
}

/// An image as `docker save` writes it: config and layer blobs, in order.
struct ExportedImage {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

impl ExportedImage {
    fn read(archive: &[u8]) -> Result<ExportedImage, String> {
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut tar = tar::Archive::new(archive);
        for entry in tar.entries().map_err(|error| error.to_string())? {
            let mut entry = entry.map_err(|error| error.to_string())?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry
                .path()
                .map_err(|error| error.to_string())?
                .to_string_lossy()
                .to_string();
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|error| error.to_string())?;
            files.insert(path, bytes);
        }
        let manifest: Value = files
            .get("manifest.json")
            .ok_or("the archive has no manifest.json")
            .and_then(|bytes| {
                serde_json::from_slice(bytes).map_err(|_| "manifest.json is not JSON")
            })?;
        let entry = manifest
            .as_array()
            .and_then(|entries| entries.first())
            .ok_or("manifest.json lists no image")?;
        let mut take = |path: &Value| -> Result<Vec<u8>, String> {
            let path = path.as_str().ok_or("manifest.json names a blob oddly")?;
            files
                .remove(path)
                .ok_or_else(|| format!("the archive has no {path}"))
        };
        let config = take(&entry["Config"])?;
        let layers = entry["Layers"]
            .as_array()
            .ok_or("manifest.json lists no layers")?
            .iter()
            .map(&mut take)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExportedImage { config, layers })
    }
}

impl ExportedImage {
    /// The bytes of every file the layers hold, uncompressed: the size the
    /// image takes once unpacked on a host. (With the containerd image
    /// store, the engine's own `Size` counts compressed blobs instead.)
    fn unpacked_size(&self) -> Result<u64, String> {
        let mut total = 0;
        for layer in &self.layers {
            let reader: Box<dyn Read + '_> = if layer.starts_with(&[0x1f, 0x8b]) {
                Box::new(flate2::read::GzDecoder::new(layer.as_slice()))
            } else {
                Box::new(layer.as_slice())
            };
            let mut archive = tar::Archive::new(reader);
            for entry in archive.entries().map_err(|error| error.to_string())? {
                let entry = entry.map_err(|error| error.to_string())?;
                if entry.header().entry_type().is_file() {
                    total += entry.header().size().map_err(|error| error.to_string())?;
                }
            }
        }
        Ok(total)
    }
}

/// The image config with `platform`'s os, architecture and variant.
fn retarget_config(config: &[u8], platform: &Platform) -> Result<Vec<u8>, String> {
    let mut value: Value =
        serde_json::from_slice(config).map_err(|error| format!("the image config: {error}"))?;
    let object = value
        .as_object_mut()
        .ok_or("the image config is not an object")?;
    object.insert("os".into(), Value::String(platform.os.clone()));
    object.insert(
        "architecture".into(),
        Value::String(platform.architecture.clone()),
    );
    match &platform.variant {
        Some(variant) => object.insert("variant".into(), Value::String(variant.clone())),
        None => object.remove("variant"),
    };
    serde_json::to_vec(&value).map_err(|error| error.to_string())
}

/// Versions of the named packages in a root file system, by package.
async fn package_versions(
    rootfs: &Path,
    packages: &[String],
    log: &dyn WorkLog,
) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    if packages.is_empty() {
        return versions;
    }
    let output = tokio::process::Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            rootfs.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f=${Package}\t${Version}\n", "--"])
        // dpkg-query takes `name[:arch]`, without apt's `=version`.
        .args(packages.iter().map(|package| {
            package
                .split_once('=')
                .map_or(package.as_str(), |(name, _)| name)
        }))
        .output()
        .await;
    match output {
        Ok(output) => {
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                if let Some((name, version)) = line.split_once('\t')
                    && !version.is_empty()
                {
                    versions.insert(name.to_string(), version.to_string());
                }
            }
        }
        Err(error) => log.line(format!("dpkg-query: {error}")),
    }
    versions
}

/// The commands that install `packages` in a root file system, each an
/// argument vector: package names reach apt-get as arguments after `--`,
/// never as shell text, so none can add a command or an option.
fn apt_steps(packages: &[String]) -> Vec<Vec<String>> {
    if packages.is_empty() {
        return Vec::new();
    }
    let words =
        |words: &[&str]| -> Vec<String> { words.iter().map(|w| (*w).to_string()).collect() };
    // `pkg:arm64` asks for a foreign architecture's package (multiarch).
    let mut foreign: Vec<&str> = packages
        .iter()
        .filter_map(|package| crate::plan::names::check_package(package).ok().flatten())
        .collect();
    foreign.sort_unstable();
    foreign.dedup();
    let mut steps: Vec<Vec<String>> = foreign
        .into_iter()
        .map(|arch| words(&["dpkg", "--add-architecture", arch]))
        .collect();
    let apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"];
    steps.push(words(&[&apt[..], &["update", "-q"]].concat()));
    let mut install = words(
        &[
            &apt[..],
            &["install", "-y", "-q", "--no-install-recommends", "--"],
        ]
        .concat(),
    );
    install.extend(packages.iter().cloned());
    steps.push(install);
    steps.push(words(&["apt-get", "clean"]));
    // A fixed text: the glob needs a shell, and nothing of the spec is in it.
    steps.push(words(&["/bin/sh", "-c", "rm -rf /var/lib/apt/lists/*"]));
    steps
}

/// Runs `sh` with the script that mounts /proc in the root file system `$0`
/// and executes the command given as the remaining arguments in a chroot.
const CHROOT_SCRIPT: &str = r#"mount -t proc proc "$0/proc" && exec chroot "$0" "$@""#;

/// `sh -c CHROOT_SCRIPT rootfs command...`: the command's words stay
/// separate arguments all the way into the chroot.
fn chroot_command(rootfs: &Path, command: &[String]) -> Vec<String> {
    let mut args = vec![
        "sh".to_string(),
        "-c".to_string(),
        CHROOT_SCRIPT.to_string(),
        rootfs.to_string_lossy().to_string(),
    ];
    args.extend(command.iter().cloned());
    args
}

async fn chroot_logged(rootfs: &Path, command: &[String], log: &dyn WorkLog) -> Result<(), String> {
    // A private mount namespace: /proc mounted for apt's maintainer scripts
    // disappears with the process, even when it is killed.
    let mut args: Vec<String> = ["--mount", "--propagation", "private", "--fork"]
        .iter()
        .map(|word| (*word).to_string())
        .collect();
    args.extend(chroot_command(rootfs, command));
    run_logged("unshare", &args, log).await
}

/// Runs a program, copying its output lines into the stage log.
async fn run_logged(program: &str, args: &[String], log: &dyn WorkLog) -> Result<(), String> {
    log.line(format!("$ {program} {}", args.join(" ")));
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .env("PATH", crate::system::admin_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("starting {program}: {error}"))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut tail: Vec<String> = Vec::new();
    let (out_tail, err_tail) = tokio::join!(forward_lines(stdout, log), forward_lines(stderr, log));
    tail.extend(out_tail);
    tail.extend(err_tail);
    let status = child
        .wait()
        .await
        .map_err(|error| format!("{program}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed ({status}); last output:\n{}",
            tail.join("\n")
        ))
    }
}

/// Copies a child's output into the log; returns the last lines for an error message.
async fn forward_lines<R: tokio::io::AsyncRead + Unpin>(
    reader: Option<R>,
    log: &dyn WorkLog,
) -> Vec<String> {
    let mut kept = std::collections::VecDeque::new();
    if let Some(reader) = reader {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.line(line.clone());
            kept.push_back(line);
            if kept.len() > 20 {
                kept.pop_front();
            }
        }
    }
    kept.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with a hole, as a linker may leave one, goes into the context
    /// as a plain file: dockerd's classic builder refuses GNU sparse entries.
    #[test]
    fn a_sparse_file_enters_the_context_as_a_plain_file() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let tool = dir.path().join("tool");
        {
            let file = std::fs::File::create(&tool).expect("create");
            file.set_len(1 << 20).expect("a hole of 1 MiB");
            std::os::unix::fs::FileExt::write_at(&file, b"end", (1 << 20) - 3).expect("write");
        }
        let files = [("tools/tool".to_string(), tool)];
        let context = BuildContext {
            dockerfile: "FROM scratch\n",
            folders: &[],
            files: &files,
        };
        let bytes = context_tar(&context).expect("context");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut types = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            types.push((
                entry.path().expect("path").display().to_string(),
                entry.header().entry_type(),
                entry.size(),
            ));
        }
        assert_eq!(
            types,
            [
                ("Dockerfile".to_string(), tar::EntryType::Regular, 13),
                ("tools/tool".to_string(), tar::EntryType::Regular, 1 << 20),
            ]
        );
    }

    #[test]
    fn retargeting_sets_the_platform_and_keeps_the_rest() {
        let config = br#"{"architecture":"amd64","os":"linux","variant":"v8","rootfs":{"diff_ids":["sha256:1"]}}"#;
        let wasm = Platform::parse("wasi/wasm").unwrap();
        let out: Value = serde_json::from_slice(&retarget_config(config, &wasm).unwrap()).unwrap();
        assert_eq!(out["os"], "wasi");
        assert_eq!(out["architecture"], "wasm");
        assert!(out.get("variant").is_none());
        assert_eq!(out["rootfs"]["diff_ids"][0], "sha256:1");
    }

    #[test]
    fn the_mirror_comes_from_apt_sources() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            debian_mirror_from(&[deb822.to_string()], "").as_deref(),
            Some("http://mirror.example/debian")
        );
        let list = "# comment\ndeb [signed-by=/k.gpg] http://other.example/debian bookworm main\n";
        assert_eq!(
            debian_mirror_from(&[], list).as_deref(),
            Some("http://other.example/debian")
        );
        assert_eq!(debian_mirror_from(&[], ""), None);
    }

    /// Stand-ins for `mount` and `chroot` that record what they were given
    /// instead of doing it, so the real wrapper runs without root.
    fn fake_tools(dir: &Path) -> std::ffi::OsString {
        use std::os::unix::fs::PermissionsExt as _;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for (name, body) in [
            ("mount", "exit 0\n"),
            (
                "chroot",
                "shift\nfor word in \"$@\"; do printf '%s\\n' \"$word\"; done > \"$RECORD\"\n",
            ),
        ] {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut path = bin.into_os_string();
        path.push(":/usr/bin:/bin");
        path
    }

    #[test]
    fn hostile_packages_reach_apt_as_arguments_only() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        let hostile = vec![
            "g++".to_string(),
            format!("g++; touch {}", canary.display()),
            format!("$(touch {})", canary.display()),
            format!("`touch {}`", canary.display()),
            "-oAPT::Get::AllowUnauthenticated=true".to_string(),
            format!("x\ntouch {}", canary.display()),
        ];
        let steps = apt_steps(&hostile);
        let install = steps
            .iter()
            .find(|step| step.contains(&"install".to_string()))
            .unwrap();
        let separator = install.iter().position(|word| word == "--").unwrap();
        assert_eq!(install[separator + 1..], hostile[..]);
        let path = fake_tools(dir.path());
        let record = dir.path().join("record");
        let rootfs = dir.path().join("rootfs");
        for step in &steps {
            let command = chroot_command(&rootfs, step);
            let status = std::process::Command::new(&command[0])
                .args(&command[1..])
                .env("PATH", &path)
                .env("RECORD", &record)
                .status()
                .unwrap();
            assert!(status.success());
            let recorded = std::fs::read_to_string(&record).unwrap();
            // Every word arrives whole; a word with a line break arrives as two lines.
            assert_eq!(recorded, format!("{}\n", step.join("\n")));
        }
        assert!(!canary.exists(), "a package name ran as a command");
    }

    #[test]
    fn debian_names_of_architectures() {
        assert_eq!(
            debian_arch(&Platform::parse("linux/arm64").unwrap()),
            "arm64"
        );
        assert_eq!(
            debian_arch(&Platform::parse("linux/arm/v7").unwrap()),
            "armhf"
        );
    }
}

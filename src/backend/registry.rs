//! An OCI registry through the distribution API: read manifests to learn
//! what was pushed and how big it is compressed, upload blobs and
//! manifests, and publish multi-platform indexes.
//!
//! Plain HTTP only for now: the lab registry and most private test
//! registries speak it; HTTPS registries are not supported yet.

use std::fmt::Write as _;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("`{0}` is not an image reference of the form registry/repository[:tag|@digest]")]
    Reference(String),
    #[error("{action} {target} failed: {message}")]
    Request {
        action: &'static str,
        target: String,
        message: String,
    },
    #[error("{target} is not a manifest this tool understands: {message}")]
    Manifest { target: String, message: String },
}

impl RegistryError {
    /// A registry that answered 5xx or 429, or could not be reached, may
    /// answer the next attempt; a missing or malformed manifest will not.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Request { message, .. } => {
                message.starts_with("HTTP 5")
                    || message.starts_with("HTTP 429")
                    || message.contains("error sending request")
                    || super::is_transient(message)
            }
            RegistryError::Reference(_) | RegistryError::Manifest { .. } => false,
        }
    }
}

/// `registry/repository:tag` or `registry/repository@sha256:...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    /// A tag or a digest.
    pub reference: String,
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, RegistryError> {
        let error = || RegistryError::Reference(text.to_string());
        let (registry, rest) = text.split_once('/').ok_or_else(error)?;
        let (repository, reference) = match rest.split_once('@') {
            Some((repository, digest)) => (repository, digest),
            None => match rest.rsplit_once(':') {
                Some((repository, tag)) if !tag.contains('/') => (repository, tag),
                _ => (rest, "latest"),
            },
        };
        if registry.is_empty() || repository.is_empty() || reference.is_empty() {
            return Err(error());
        }
        Ok(ImageRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            reference: reference.to_string(),
        })
    }

    fn url(&self, kind: &str, reference: &str) -> String {
        format!(
            "http://{}/v2/{}/{kind}/{reference}",
            self.registry, self.repository
        )
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let separator = if self.reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        write!(
            f,
            "{}/{}{separator}{}",
            self.registry, self.repository, self.reference
        )
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut text = String::with_capacity(71);
    text.push_str("sha256:");
    for byte in hash {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// A manifest as the registry returned it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// Config plus layers: the bytes a pull of this single-platform image transfers.
    pub fn compressed_size(&self) -> u64 {
        let size = |value: &Value| value.get("size").and_then(Value::as_u64).unwrap_or(0);
        let config = self.json.get("config").map_or(0, size);
        let layers: u64 = self
            .json
            .get("layers")
            .and_then(Value::as_array)
            .map_or(0, |layers| layers.iter().map(size).sum());
        config + layers
    }
}

/// One platform image inside an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Clone, Default)]
pub struct RegistryClient {
    http: reqwest::Client,
}

impl RegistryClient {
    pub fn new() -> RegistryClient {
        RegistryClient {
            http: reqwest::Client::new(),
        }
    }

    pub async fn manifest(&self, image: &ImageRef) -> Result<Manifest, RegistryError> {
        let target = image.to_string();
        let failure = |message: String| RegistryError::Request {
            action: "fetching the manifest of",
            target: target.clone(),
            message,
        };
        let response = self
            .http
            .get(image.url("manifests", &image.reference))
            .header(
                "Accept",
                [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", "),
            )
            .send()
            .await
            .map_err(|error| failure(error.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failure(format!("HTTP {status}")));
        }
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| failure(error.to_string()))?
            .to_vec();
        let json: Value =
            serde_json::from_slice(&bytes).map_err(|error| RegistryError::Manifest {
                target: target.clone(),
                message: error.to_string(),
            })?;
        let media_type = json
            .get("mediaType")
            .and_then(Value::as_str)
            .map_or(media_type, str::to_string);
        Ok(Manifest {
            digest: sha256_digest(&bytes),
            media_type,
            bytes,
            json,
        })
    }

    /// Uploads a blob in one request unless the registry has it already.
    pub async fn put_blob(
        &self,
        repository: &ImageRef,
        bytes: Vec<u8>,
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(&bytes);
        let target = format!("{}/{}", repository.registry, repository.repository);
        let failure = |message: String| RegistryError::Request {
            action: "uploading a blob to",
            target: target.clone(),
            message,
        };
        let head = self
            .http
            .head(repository.url("blobs", &digest))
            .send()
            .await
            .map_err(|e| failure(e.to_string()))?;
        if head.status().is_success() {
            return Ok(digest);
        }
        let start = self
            .http
            .post(format!(
                "http://{}/v2/{}/blobs/uploads/",
                repository.registry, repository.repository
            ))
            .send()
            .await
            .map_err(|e| failure(e.to_string()))?;
        let location = start
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                failure(format!(
                    "HTTP {} without an upload location",
                    start.status()
                ))
            })?
            .to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", repository.registry)
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = self
            .http
            .put(format!("{location}{separator}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| failure(e.to_string()))?;
        if !done.status().is_success() {
            return Err(failure(format!("HTTP {}", done.status())));
        }
        Ok(digest)
    }

    pub async fn put_manifest(
        &self,
        image: &ImageRef,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(&bytes);
        let target = image.to_string();
        let response = self
            .http
            .put(image.url("manifests", &image.reference))
            .header("Content-Type", media_type)
            .body(bytes)
            .send()
            .await
            .map_err(|error| RegistryError::Request {
                action: "pushing the manifest of",
                target: target.clone(),
                message: error.to_string(),
            })?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(RegistryError::Request {
                action: "pushing the manifest of",
                target,
                message: format!("HTTP {status}: {body}"),
            });
        }
        Ok(digest)
    }

    /// Publishes an OCI image index over the given platform manifests.
    pub async fn put_index(
        &self,
        image: &ImageRef,
        entries: &[IndexEntry],
    ) -> Result<(String, u64), RegistryError> {
        let manifests: Vec<Value> = entries
            .iter()
            .map(|entry| {
                let mut platform = json!({"os": entry.os, "architecture": entry.architecture});
                if let Some(variant) = &entry.variant {
                    platform["variant"] = json!(variant);
                }
                json!({"mediaType": entry.media_type, "digest": entry.digest, "size": entry.size, "platform": platform})
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        let bytes = serde_json::to_vec(&index).map_err(|error| RegistryError::Manifest {
            target: image.to_string(),
            message: error.to_string(),
        })?;
        let size = bytes.len() as u64;
        let digest = self.put_manifest(image, OCI_INDEX, bytes).await?;
        Ok((digest, size))
    }
}

/// Digest and size of each layer of the image for `platform` (`os/arch[/variant]`).
pub async fn layer_sizes(
    client: &RegistryClient,
    image_ref: &str,
    platform: &str,
) -> Result<Vec<(String, u64)>, RegistryError> {
    let image = ImageRef::parse(image_ref)?;
    let mut manifest = client.manifest(&image).await?;
    if manifest.is_index() {
        let mut parts = platform.split('/');
        let (os, architecture, variant) = (parts.next(), parts.next(), parts.next());
        let chosen = manifest
            .json
            .get("manifests")
            .and_then(Value::as_array)
            .and_then(|entries| {
                entries.iter().find(|entry| {
                    let p = &entry["platform"];
                    p["os"].as_str() == os
                        && p["architecture"].as_str() == architecture
                        && (variant.is_none() || p["variant"].as_str() == variant)
                })
            })
            .and_then(|entry| entry["digest"].as_str())
            .ok_or_else(|| RegistryError::Manifest {
                target: image_ref.to_string(),
                message: format!("no {platform} image in the index"),
            })?
            .to_string();
        manifest = client
            .manifest(&ImageRef {
                reference: chosen,
                ..image
            })
            .await?;
    }
    Ok(manifest
        .json
        .get("layers")
        .and_then(Value::as_array)
        .map(|layers| {
            layers
                .iter()
                .map(|layer| {
                    (
                        layer["digest"].as_str().unwrap_or_default().to_string(),
                        layer["size"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let image = ImageRef::parse("10.0.0.1:5000/exp/face-cpp:optimized-linux-arm64").unwrap();
        assert_eq!(image.registry, "10.0.0.1:5000");
        assert_eq!(image.repository, "exp/face-cpp");
        assert_eq!(image.reference, "optimized-linux-arm64");
        let pinned = ImageRef::parse("r:1/a/b@sha256:abc").unwrap();
        assert_eq!(pinned.reference, "sha256:abc");
        assert_eq!(pinned.to_string(), "r:1/a/b@sha256:abc");
        assert_eq!(ImageRef::parse("r:1/a").unwrap().reference, "latest");
        assert!(ImageRef::parse("nothing").is_err());
    }

    #[test]
    fn compressed_size_is_config_plus_layers() {
        let json = json!({"config": {"size": 10}, "layers": [{"size": 100}, {"size": 5}]});
        let manifest = Manifest {
            digest: String::new(),
            media_type: OCI_MANIFEST.into(),
            bytes: Vec::new(),
            json,
        };
        assert_eq!(manifest.compressed_size(), 115);
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

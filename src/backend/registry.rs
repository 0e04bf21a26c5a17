//! An OCI registry through the distribution API: read manifests to learn
//! what was pushed and how big it is compressed, upload blobs and
//! manifests, and publish multi-platform indexes.
//!
//! Plain HTTP only for now: the lab registry and most private test
//! registries speak it; HTTPS registries are not supported yet. Registries
//! that want credentials get them (see `credentials`): HTTP Basic, or the
//! Docker token flow through a realm also reached over plain HTTP.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::credentials::{PASSWORD_VARIABLE, RegistryCredentials, Secret, USERNAME_VARIABLE};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPTED_MANIFESTS: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

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
    /// Missing or refused credentials: another attempt will not help.
    #[error("{action} {target} failed: the registry {registry} {reason}")]
    Unauthorized {
        action: &'static str,
        target: String,
        registry: String,
        reason: String,
    },
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
            RegistryError::Reference(_)
            | RegistryError::Manifest { .. }
            | RegistryError::Unauthorized { .. } => false,
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

/// Which rights a request needs: registries with token auth grant them per
/// repository and action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Pull,
    Push,
}

/// One request's purpose, for its errors.
struct Operation<'a> {
    action: &'static str,
    target: String,
    image: &'a ImageRef,
}

impl<'a> Operation<'a> {
    fn on(action: &'static str, image: &'a ImageRef) -> Operation<'a> {
        Operation {
            action,
            target: image.to_string(),
            image,
        }
    }

    fn failed(&self, message: impl std::fmt::Display) -> RegistryError {
        RegistryError::Request {
            action: self.action,
            target: self.target.clone(),
            message: message.to_string(),
        }
    }

    fn unauthorized(&self, reason: String) -> RegistryError {
        RegistryError::Unauthorized {
            action: self.action,
            target: self.target.clone(),
            registry: self.image.registry.clone(),
            reason,
        }
    }
}

/// A registry's `WWW-Authenticate` challenge: the scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    /// Lowercase: `basic`, `bearer`.
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// `Bearer realm="https://auth/token",service="registry",scope="repository:a/b:pull,push"`.
    fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            let Some((key, after)) = rest.split_once('=') else {
                break;
            };
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((index, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = index + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            } else {
                let (value, after) = after.split_once(',').unwrap_or((after, ""));
                (value.trim().to_string(), after)
            };
            params.push((key.trim().to_ascii_lowercase(), value));
            rest = after;
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A client of one registry's distribution API. With credentials, it answers
/// the registry's challenges: HTTP Basic (distribution's htpasswd), or the
/// Docker token flow (Bearer) through the realm the registry names.
#[derive(Clone, Default)]
pub struct RegistryClient {
    http: reqwest::Client,
    credentials: Option<RegistryCredentials>,
    /// `Authorization` values the registry accepted, by repository and
    /// access; Basic grants everything at once and is kept under `*`.
    granted: Arc<Mutex<HashMap<String, Secret>>>,
}

impl RegistryClient {
    pub fn new() -> RegistryClient {
        RegistryClient::default()
    }

    pub fn with_credentials(credentials: Option<RegistryCredentials>) -> RegistryClient {
        RegistryClient {
            credentials,
            ..RegistryClient::default()
        }
    }

    fn grant_key(image: &ImageRef, access: Access) -> String {
        format!("{} {access:?}", image.repository)
    }

    fn granted(&self, key: &str) -> Option<Secret> {
        let granted = self
            .granted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        granted.get(key).or_else(|| granted.get("*")).cloned()
    }

    fn grant(&self, key: String, authorization: Secret) {
        self.granted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, authorization);
    }

    /// Sends the request with what the registry granted before; on a 401,
    /// answers the challenge and sends it once more.
    async fn send(
        &self,
        operation: &Operation<'_>,
        access: Access,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let key = Self::grant_key(operation.image, access);
        let attempt = |authorization: Option<&Secret>| {
            let request = request
                .try_clone()
                .ok_or_else(|| operation.failed("the request cannot be repeated"))?;
            Ok::<_, RegistryError>(match authorization {
                Some(value) => request.header(AUTHORIZATION, value.expose()),
                None => request,
            })
        };
        let response = attempt(self.granted(&key).as_ref())?
            .send()
            .await
            .map_err(|error| operation.failed(error))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .and_then(Challenge::parse);
        let authorization = self.answer(operation, challenge.as_ref()).await?;
        let response = attempt(Some(&authorization))?
            .send()
            .await
            .map_err(|error| operation.failed(error))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(operation.unauthorized(self.refused()));
        }
        let basic = challenge.is_some_and(|challenge| challenge.scheme == "basic");
        self.grant(if basic { "*".to_string() } else { key }, authorization);
        Ok(response)
    }

    /// The `Authorization` value that answers `challenge`.
    async fn answer(
        &self,
        operation: &Operation<'_>,
        challenge: Option<&Challenge>,
    ) -> Result<Secret, RegistryError> {
        let scheme = challenge.map_or("", |challenge| challenge.scheme.as_str());
        match (scheme, &self.credentials) {
            ("basic", Some(credentials)) => Ok(credentials.basic_authorization()),
            ("basic", None) => Err(operation.unauthorized(Self::missing("Basic"))),
            ("bearer", _) => {
                let challenge = challenge.ok_or_else(|| operation.failed("HTTP 401"))?;
                self.token(operation, challenge).await
            }
            _ => Err(operation.unauthorized(format!(
                "answered HTTP 401 without a challenge this tool answers ({})",
                if scheme.is_empty() { "none" } else { scheme }
            ))),
        }
    }

    /// The Docker token flow: the realm hands out a token for the scope
    /// the registry asked for, to the user when there are credentials.
    async fn token(
        &self,
        operation: &Operation<'_>,
        challenge: &Challenge,
    ) -> Result<Secret, RegistryError> {
        let realm = challenge
            .param("realm")
            .ok_or_else(|| operation.failed("a Bearer challenge without a realm"))?;
        let query: Vec<(&str, &str)> = ["service", "scope"]
            .into_iter()
            .filter_map(|name| challenge.param(name).map(|value| (name, value)))
            .collect();
        let url = reqwest::Url::parse_with_params(realm, &query)
            .map_err(|error| operation.failed(format!("the token realm {realm:?}: {error}")))?;
        let mut request = self.http.get(url);
        if let Some(credentials) = &self.credentials {
            request = request.header(AUTHORIZATION, credentials.basic_authorization().expose());
        }
        let response = request
            .send()
            .await
            .map_err(|error| operation.failed(format!("the token service {realm}: {error}")))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(operation.unauthorized(match &self.credentials {
                Some(_) => self.refused(),
                None => Self::missing("token"),
            }));
        }
        if !status.is_success() {
            return Err(
                operation.failed(format!("the token service {realm} answered HTTP {status}"))
            );
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|error| operation.failed(format!("the token service {realm}: {error}")))?;
        answer
            .get("token")
            .or_else(|| answer.get("access_token"))
            .and_then(Value::as_str)
            .map(|token| Secret::new(format!("Bearer {token}")))
            .ok_or_else(|| operation.failed(format!("the token service {realm} gave no token")))
    }

    fn missing(scheme: &str) -> String {
        format!(
            "requires credentials ({scheme} auth) and none were found: set {USERNAME_VARIABLE} \
             and {PASSWORD_VARIABLE}, or log in with `docker login`"
        )
    }

    fn refused(&self) -> String {
        match &self.credentials {
            Some(credentials) => format!(
                "refused the credentials of user `{}` (HTTP 401)",
                credentials.username
            ),
            None => "refused the request (HTTP 401)".to_string(),
        }
    }

    /// The `Authorization` header an engine's own pull of `image` needs, for
    /// engines that take one ready-made (containerd's transfer service): the
    /// registry is asked which scheme it wants, and Basic is assumed when it
    /// cannot be asked over plain HTTP.
    pub async fn pull_authorization(
        &self,
        image: &ImageRef,
    ) -> Result<Option<Secret>, RegistryError> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        let operation = Operation::on("authorizing a pull of", image);
        let request = self.manifest_request(reqwest::Method::HEAD, image);
        match self.send(&operation, Access::Pull, request).await {
            Ok(_) => Ok(self.granted(&Self::grant_key(image, Access::Pull))),
            Err(RegistryError::Request { .. }) => Ok(Some(credentials.basic_authorization())),
            Err(error) => Err(error),
        }
    }

    fn manifest_request(
        &self,
        method: reqwest::Method,
        image: &ImageRef,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, image.url("manifests", &image.reference))
            .header("Accept", ACCEPTED_MANIFESTS.join(", "))
    }

    pub async fn manifest(&self, image: &ImageRef) -> Result<Manifest, RegistryError> {
        let operation = Operation::on("fetching the manifest of", image);
        let request = self.manifest_request(reqwest::Method::GET, image);
        let response = self.send(&operation, Access::Pull, request).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(operation.failed(format!("HTTP {status}")));
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
            .map_err(|error| operation.failed(error))?
            .to_vec();
        let json: Value =
            serde_json::from_slice(&bytes).map_err(|error| RegistryError::Manifest {
                target: operation.target.clone(),
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
        let operation = Operation {
            action: "uploading a blob to",
            target: format!("{}/{}", repository.registry, repository.repository),
            image: repository,
        };
        let head = self
            .send(
                &operation,
                Access::Push,
                self.http.head(repository.url("blobs", &digest)),
            )
            .await?;
        if head.status().is_success() {
            return Ok(digest);
        }
        let start = self
            .send(
                &operation,
                Access::Push,
                self.http.post(format!(
                    "http://{}/v2/{}/blobs/uploads/",
                    repository.registry, repository.repository
                )),
            )
            .await?;
        let location = start
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                operation.failed(format!(
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
        let upload = self
            .http
            .put(format!("{location}{separator}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(bytes);
        let done = self.send(&operation, Access::Push, upload).await?;
        if !done.status().is_success() {
            return Err(operation.failed(format!("HTTP {}", done.status())));
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
        let operation = Operation::on("pushing the manifest of", image);
        let request = self
            .http
            .put(image.url("manifests", &image.reference))
            .header("Content-Type", media_type)
            .body(bytes);
        let response = self.send(&operation, Access::Push, request).await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(operation.failed(format!("HTTP {status}: {body}")));
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

    #[test]
    fn challenges_keep_quoted_commas() {
        let challenge = Challenge::parse(
            r#"Bearer realm="http://auth.test/token",service="registry.test",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(challenge.scheme, "bearer");
        assert_eq!(challenge.param("realm"), Some("http://auth.test/token"));
        assert_eq!(challenge.param("service"), Some("registry.test"));
        assert_eq!(challenge.param("scope"), Some("repository:a/b:pull,push"));
        let basic = Challenge::parse(r#"Basic realm="Registry \"Realm\"""#).unwrap();
        assert_eq!(basic.scheme, "basic");
        assert_eq!(basic.param("realm"), Some(r#"Registry "Realm""#));
        assert_eq!(Challenge::parse("Basic").unwrap().params, Vec::new());
        assert_eq!(Challenge::parse("  "), None);
    }

    #[test]
    fn unauthorized_is_final_and_names_the_registry() {
        let error = RegistryError::Unauthorized {
            action: "pushing the manifest of",
            target: "r:1/a:b".into(),
            registry: "r:1".into(),
            reason: RegistryClient::with_credentials(Some(RegistryCredentials {
                username: "alice".into(),
                password: Secret::new("pw"),
            }))
            .refused(),
        };
        assert!(!error.is_retryable());
        assert_eq!(
            error.to_string(),
            "pushing the manifest of r:1/a:b failed: the registry r:1 refused the credentials of user `alice` (HTTP 401)"
        );
    }
}

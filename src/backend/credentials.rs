//! Registry credentials, found where Docker's own tools find them: an
//! environment override, then the Docker config's credential helpers, its
//! credential store, and its `auths` entries.
//!
//! The password only ever leaves this process on the agent's stdin and in
//! the `Authorization` headers sent to the registry; everywhere else
//! ([`Debug`], [`Display`], error messages) it reads `<redacted>`.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Set together, these two win over the Docker config (for CI).
pub const USERNAME_VARIABLE: &str = "PIPELINE_REGISTRY_USERNAME";
pub const PASSWORD_VARIABLE: &str = "PIPELINE_REGISTRY_PASSWORD";

/// A password or token. It serializes as itself, for the agent's wire only;
/// formatting it never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for a request header or the engine's API.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A user and password for one registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: Secret,
}

impl RegistryCredentials {
    /// The value of an HTTP Basic `Authorization` header.
    pub fn basic_authorization(&self) -> Secret {
        Secret(format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.username, self.password.expose()))
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{set} is set but {unset} is not: set both, or neither to use the Docker config")]
    HalfSet {
        set: &'static str,
        unset: &'static str,
    },
    #[error("failed to read the Docker config {}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error(
        "the Docker config {} has an `auth` for {registry} that is not base64 of user:password",
        path.display()
    )]
    Auth { path: PathBuf, registry: String },
    #[error("the credential helper docker-credential-{helper} failed for {registry}: {message}")]
    Helper {
        helper: String,
        registry: String,
        message: String,
    },
}

/// Where credentials are looked for; [`CredentialLookup::from_environment`]
/// is what Docker's CLI would look at.
#[derive(Debug, Clone, Default)]
pub struct CredentialLookup {
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `config.json` of the Docker config folder.
    pub docker_config: Option<PathBuf>,
    /// Where `docker-credential-<name>` programs are searched (a PATH).
    pub helper_path: Option<OsString>,
}

impl CredentialLookup {
    /// The override variables, `$DOCKER_CONFIG/config.json` (by default
    /// `~/.docker/config.json`) and the helpers on `PATH`.
    pub fn from_environment() -> CredentialLookup {
        let folder = std::env::var_os("DOCKER_CONFIG")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker")));
        CredentialLookup {
            username: std::env::var(USERNAME_VARIABLE)
                .ok()
                .filter(|value| !value.is_empty()),
            password: std::env::var(PASSWORD_VARIABLE)
                .ok()
                .filter(|value| !value.is_empty())
                .map(Secret),
            docker_config: folder.map(|dir| dir.join("config.json")),
            helper_path: std::env::var_os("PATH"),
        }
    }

    /// The credentials for `registry` (`host:port`), `None` when there are none.
    pub fn resolve(&self, registry: &str) -> Result<Option<RegistryCredentials>, CredentialsError> {
        match (&self.username, &self.password) {
            (Some(username), Some(password)) => {
                return Ok(Some(RegistryCredentials {
                    username: username.clone(),
                    password: password.clone(),
                }));
            }
            (Some(_), None) => {
                return Err(CredentialsError::HalfSet {
                    set: USERNAME_VARIABLE,
                    unset: PASSWORD_VARIABLE,
                });
            }
            (None, Some(_)) => {
                return Err(CredentialsError::HalfSet {
                    set: PASSWORD_VARIABLE,
                    unset: USERNAME_VARIABLE,
                });
            }
            (None, None) => {}
        }
        let Some(path) = &self.docker_config else {
            return Ok(None);
        };
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(CredentialsError::Config {
                    path: path.clone(),
                    message: error.to_string(),
                });
            }
        };
        // Read as a value, not into types: a mistyped field would otherwise
        // be quoted in the error, and that field may hold a password.
        let config: Value =
            serde_json::from_str(&text).map_err(|error| CredentialsError::Config {
                path: path.clone(),
                message: format!(
                    "not JSON (line {}, column {})",
                    error.line(),
                    error.column()
                ),
            })?;
        let helper = entry_for(&config, "credHelpers", registry)
            .and_then(Value::as_str)
            .or_else(|| config.get("credsStore").and_then(Value::as_str))
            .filter(|helper| !helper.is_empty());
        if let Some(helper) = helper
            && let Some(found) = self.ask_helper(helper, registry)?
        {
            return Ok(Some(found));
        }
        let Some(entry) = entry_for(&config, "auths", registry) else {
            return Ok(None);
        };
        let text = |name: &str| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .filter(|value| !value.is_empty())
        };
        if let Some(auth) = text("auth") {
            let bad = || CredentialsError::Auth {
                path: path.clone(),
                registry: registry.to_string(),
            };
            let decoded = BASE64.decode(auth.trim()).map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
            return Ok(Some(RegistryCredentials {
                username: username.to_string(),
                password: Secret::new(password),
            }));
        }
        Ok(match (text("username"), text("password")) {
            (Some(username), Some(password)) => Some(RegistryCredentials {
                username: username.to_string(),
                password: Secret::new(password),
            }),
            _ => None,
        })
    }

    /// `docker-credential-<helper> get`, the server on stdin, as Docker does.
    /// A helper that knows no credentials for it answers `None`.
    fn ask_helper(
        &self,
        helper: &str,
        registry: &str,
    ) -> Result<Option<RegistryCredentials>, CredentialsError> {
        let failure = |message: String| CredentialsError::Helper {
            helper: helper.to_string(),
            registry: registry.to_string(),
            message,
        };
        if !helper
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(failure("not a helper name".into()));
        }
        let program = format!("docker-credential-{helper}");
        let path = self
            .helper_path
            .as_ref()
            .and_then(|path| {
                std::env::split_paths(path)
                    .map(|dir| dir.join(&program))
                    .find(|candidate| candidate.is_file())
            })
            .ok_or_else(|| failure(format!("{program} is not on PATH")))?;
        let mut child = Command::new(&path)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| failure(format!("{}: {error}", path.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading is judged by its answer.
            let _ = stdin.write_all(server_address(registry).as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|error| failure(format!("{}: {error}", path.display())))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            if stdout.contains("credentials not found") {
                return Ok(None);
            }
            // The helper's own words, but only its first line: a helper has
            // no reason to print a secret on failure, and less is safer.
            let said = String::from_utf8_lossy(&output.stderr);
            let said = [stdout.as_ref(), said.as_ref()]
                .iter()
                .flat_map(|text| text.lines())
                .find(|line| !line.trim().is_empty())
                .unwrap_or("no output")
                .chars()
                .take(200)
                .collect::<String>();
            return Err(failure(format!("{}: {said}", output.status)));
        }
        let answer: Value = serde_json::from_str(&stdout)
            .map_err(|_| failure("its answer is not the JSON a helper gives".into()))?;
        let field = |name: &str| {
            answer
                .get(name)
                .and_then(Value::as_str)
                .filter(|value| !value.is_empty())
        };
        match (field("Username"), field("Secret")) {
            // An identity token is exchanged through OAuth, which this tool
            // does not do; the user and password of `auths` may still serve.
            (Some("<token>") | None, _) | (_, None) => Ok(None),
            (Some(username), Some(secret)) => Ok(Some(RegistryCredentials {
                username: username.to_string(),
                password: Secret::new(secret),
            })),
        }
    }
}

/// The entry of `section` (`auths`, `credHelpers`) whose key names the
/// registry's host.
fn entry_for<'a>(config: &'a Value, section: &str, registry: &str) -> Option<&'a Value> {
    let host = hostname(registry);
    config
        .get(section)
        .and_then(Value::as_object)?
        .iter()
        .find(|(server, _)| hostname(server) == host)
        .map(|(_, entry)| entry)
}

/// Docker Hub's several names, as its config keys them.
const DOCKER_HUB: &str = "index.docker.io";

/// The host (and port) a Docker config key names: keys may carry a scheme
/// and a path (`https://index.docker.io/v1/`).
fn hostname(server: &str) -> &str {
    let server = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = server.split('/').next().unwrap_or(server);
    match host {
        "docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        other => other,
    }
}

/// What Docker hands a credential helper for a registry.
fn server_address(registry: &str) -> String {
    if hostname(registry) == DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(dir: &Path, config: &str) -> CredentialLookup {
        let path = dir.join("config.json");
        fs_err::write(&path, config).unwrap();
        CredentialLookup {
            docker_config: Some(path),
            helper_path: Some(dir.as_os_str().to_owned()),
            ..CredentialLookup::default()
        }
    }

    fn user_of(found: Option<RegistryCredentials>) -> Option<(String, String)> {
        found.map(|c| (c.username, c.password.expose().to_string()))
    }

    #[test]
    fn secrets_never_format() {
        let credentials = RegistryCredentials {
            username: "alice".into(),
            password: Secret::new("hunter2-very-secret"),
        };
        let shown = format!(
            "{credentials:?} {} {:?}",
            credentials.password,
            credentials.basic_authorization()
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
        // On the agent's wire it is the secret itself.
        let wire = serde_json::to_string(&credentials).unwrap();
        assert!(wire.contains("hunter2-very-secret"), "{wire}");
        let back: RegistryCredentials = serde_json::from_str(&wire).unwrap();
        assert_eq!(back, credentials);
        assert_eq!(
            credentials.basic_authorization().expose(),
            "Basic YWxpY2U6aHVudGVyMi12ZXJ5LXNlY3JldA=="
        );
    }

    #[test]
    fn auths_entries_match_the_registry_host() {
        let dir = tempfile::tempdir().unwrap();
        // `auth` is base64 of user:password; the key may carry a scheme and path.
        let found = lookup(
            dir.path(),
            r#"{"auths": {"http://10.0.0.1:5001/v2/": {"auth": "Ym9iOnMzY3I6ZXQ="},
                          "other:5000": {"username": "carol", "password": "pw"}}}"#,
        );
        assert_eq!(
            user_of(found.resolve("10.0.0.1:5001").unwrap()),
            Some(("bob".into(), "s3cr:et".into()))
        );
        assert_eq!(
            user_of(found.resolve("other:5000").unwrap()),
            Some(("carol".into(), "pw".into()))
        );
        assert_eq!(found.resolve("10.0.0.1:5000").unwrap(), None);
        let hub = lookup(
            dir.path(),
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"}}}"#,
        );
        assert_eq!(
            user_of(hub.resolve("docker.io").unwrap()),
            Some(("u".into(), "p".into()))
        );
    }

    #[test]
    fn the_environment_wins_and_must_be_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut found = lookup(dir.path(), r#"{"auths": {"r:1": {"auth": "Ym9iOnB3"}}}"#);
        found.username = Some("ci".into());
        found.password = Some(Secret::new("from-env"));
        assert_eq!(
            user_of(found.resolve("r:1").unwrap()),
            Some(("ci".into(), "from-env".into()))
        );
        found.password = None;
        let error = found.resolve("r:1").unwrap_err().to_string();
        assert!(error.contains(PASSWORD_VARIABLE), "{error}");
    }

    #[test]
    fn broken_configs_are_named_without_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let found = lookup(
            dir.path(),
            r#"{"auths": {"r:1": {"auth": "not base64 s3cret!"}}}"#,
        );
        let error = found.resolve("r:1").unwrap_err().to_string();
        assert!(
            error.contains("config.json") && error.contains("r:1"),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "{error}");
        let found = lookup(dir.path(), r#"{"auths": "s3cret" "#);
        let error = found.resolve("r:1").unwrap_err().to_string();
        assert!(error.contains("not JSON"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        let missing = CredentialLookup {
            docker_config: Some(dir.path().join("absent/config.json")),
            ..CredentialLookup::default()
        };
        assert_eq!(missing.resolve("r:1").unwrap(), None);
    }

    #[cfg(unix)]
    fn helper(dir: &Path, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("docker-credential-{name}"));
        fs_err::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn credential_helpers_are_asked_with_the_server_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        // Answers only for the server it is asked about on stdin.
        helper(
            dir.path(),
            "fake",
            r#"read server
if [ "$1" = get ] && [ "$server" = "r:1" ]; then
  echo '{"ServerURL":"r:1","Username":"helped","Secret":"from-helper"}'
else
  echo "credentials not found in native keychain"; exit 1
fi"#,
        );
        helper(dir.path(), "broken", "echo 'keychain locked' >&2; exit 3");
        let per_registry = lookup(
            dir.path(),
            r#"{"credHelpers": {"r:1": "fake"}, "auths": {"r:2": {"auth": "Ym9iOnB3"}}}"#,
        );
        assert_eq!(
            user_of(per_registry.resolve("r:1").unwrap()),
            Some(("helped".into(), "from-helper".into()))
        );
        assert_eq!(
            user_of(per_registry.resolve("r:2").unwrap()),
            Some(("bob".into(), "pw".into()))
        );
        // A store that knows nothing of the registry leaves `auths` to answer.
        let store = lookup(
            dir.path(),
            r#"{"credsStore": "fake", "auths": {"r:2": {"auth": "Ym9iOnB3"}}}"#,
        );
        assert_eq!(
            user_of(store.resolve("r:2").unwrap()),
            Some(("bob".into(), "pw".into()))
        );
        let broken = lookup(dir.path(), r#"{"credsStore": "broken"}"#);
        let error = broken.resolve("r:1").unwrap_err().to_string();
        assert!(
            error.contains("docker-credential-broken") && error.contains("keychain locked"),
            "{error}"
        );
        let absent = lookup(dir.path(), r#"{"credsStore": "absent"}"#);
        let error = absent.resolve("r:1").unwrap_err().to_string();
        assert!(error.contains("not on PATH"), "{error}");
    }
}

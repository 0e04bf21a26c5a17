//! The tool's own view of an inventory host: `pipeline_*` and `ansible_*` variables, typed.

use serde_json::{Map, Value};

use crate::platform::Platform;

/// How the runner reaches a host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Connection {
    /// Commands run on the runner's own machine.
    Local,
    Ssh {
        address: String,
        port: u16,
        user: Option<String>,
        private_key: Option<String>,
        /// `known_hosts` file for strict host-key checking; default the user's.
        known_hosts: Option<String>,
        /// What an unknown host key means: `pipeline_host_key_checking`.
        host_key_checking: HostKeyChecking,
    },
}

/// What SSH does with a host key that `known_hosts` does not hold. A
/// changed key is a failure either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyChecking {
    /// An unknown key is a failure: keys are put in `known_hosts` beforehand.
    #[default]
    Strict,
    /// An unknown key is trusted on first use and recorded in `known_hosts`.
    AcceptNew,
}

impl HostKeyChecking {
    fn parse(host: &str, text: &str) -> Result<HostKeyChecking, String> {
        match text {
            "strict" => Ok(HostKeyChecking::Strict),
            "accept-new" => Ok(HostKeyChecking::AcceptNew),
            other => Err(format!(
                "host `{host}`: `pipeline_host_key_checking: {other}` is not supported; use `strict` (the default) or `accept-new`"
            )),
        }
    }
}

/// Everything the plan and the backends read from one host's resolved variables.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostSettings {
    pub name: String,
    pub platform: Platform,
    pub engines: Vec<String>,
    pub runtimes: Vec<String>,
    pub docker_socket: String,
    pub containerd_socket: String,
    pub containerd_namespace: String,
    pub connection: Connection,
    /// Measured runs at once on this host; 1 keeps runs from disturbing each other.
    pub max_parallel: u32,
    /// Parent cgroup for containers containerd starts (Docker has its own setting).
    pub cgroup_parent: Option<String>,
    /// `host:port` of an HTTPS endpoint serving the registry's content, which
    /// containerd pulls through (containerd 1.7's transfer service speaks HTTPS only).
    pub containerd_pull_endpoint: Option<String>,
    /// The physical machine the host runs on. Hosts on one machine (the
    /// lab's, or VMs of one server) measure one at a time, so they do not
    /// disturb each other; default: the host is a machine of its own.
    pub machine: String,
    /// qemu's CPU model for a host whose CPU is emulated (`cortex-a57`),
    /// given to every process emulated there through `QEMU_CPU`.
    pub qemu_cpu: Option<String>,
}

pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const DEFAULT_CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

impl HostSettings {
    /// Reads the settings; the error is a message about the named variable.
    pub fn from_vars(name: &str, vars: &Map<String, Value>) -> Result<HostSettings, String> {
        let platform_text = string_var(vars, "pipeline_platform")?.ok_or_else(|| {
            format!("host `{name}` has no `pipeline_platform` variable (for example `linux/arm64`)")
        })?;
        let platform = Platform::parse(&platform_text)
            .map_err(|error| format!("host `{name}`: `pipeline_platform`: {error}"))?;
        let engines = list_var(vars, "pipeline_engines")?.unwrap_or_else(|| vec!["docker".into()]);
        for engine in &engines {
            if engine != "docker" && engine != "containerd" {
                return Err(format!(
                    "host `{name}`: `pipeline_engines` names `{engine}`; known engines are docker and containerd"
                ));
            }
        }
        let runtimes = list_var(vars, "pipeline_runtimes")?.unwrap_or_else(|| vec!["runc".into()]);
        let connection = match string_var(vars, "ansible_connection")?.as_deref() {
            Some("local") => Connection::Local,
            None | Some("ssh" | "smart" | "paramiko" | "openssh") => Connection::Ssh {
                address: string_var(vars, "ansible_host")?.unwrap_or_else(|| name.to_string()),
                port: port_var(vars)?,
                user: string_var(vars, "ansible_user")?,
                private_key: string_var(vars, "ansible_ssh_private_key_file")?,
                known_hosts: string_var(vars, "pipeline_known_hosts")?,
                host_key_checking: string_var(vars, "pipeline_host_key_checking")?
                    .map(|text| HostKeyChecking::parse(name, &text))
                    .transpose()?
                    .unwrap_or_default(),
            },
            Some(other) => {
                return Err(format!(
                    "host `{name}`: `ansible_connection: {other}` is not supported; use `ssh` or `local`"
                ));
            }
        };
        let max_parallel = match vars.get("pipeline_max_parallel") {
            None => 1,
            Some(value) => value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("`pipeline_max_parallel` must be a positive whole number, not {value}")
                })?,
        };
        Ok(HostSettings {
            name: name.to_string(),
            platform,
            engines,
            runtimes,
            docker_socket: string_var(vars, "pipeline_docker_socket")?
                .unwrap_or_else(|| DEFAULT_DOCKER_SOCKET.into()),
            containerd_socket: string_var(vars, "pipeline_containerd_socket")?
                .unwrap_or_else(|| DEFAULT_CONTAINERD_SOCKET.into()),
            containerd_namespace: string_var(vars, "pipeline_containerd_namespace")?
                .unwrap_or_else(|| "pipeline".into()),
            connection,
            max_parallel,
            cgroup_parent: string_var(vars, "pipeline_cgroup_parent")?,
            containerd_pull_endpoint: string_var(vars, "pipeline_containerd_pull_endpoint")?,
            machine: string_var(vars, "pipeline_machine")?.unwrap_or_else(|| name.to_string()),
            qemu_cpu: string_var(vars, "pipeline_qemu_cpu")?,
        })
    }

    pub fn has_engine(&self, engine: &str) -> bool {
        self.engines.iter().any(|known| known == engine)
    }

    pub fn has_runtime(&self, runtime: &str) -> bool {
        self.runtimes.iter().any(|known| known == runtime)
    }
}

fn string_var(vars: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match vars.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        // Ansible stringifies scalars in these places; so do we.
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(other) => Err(format!("`{key}` must be a string, not {other}")),
    }
}

fn list_var(vars: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, String> {
    match vars.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("`{key}` must be a list of strings, not {item}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        // A comma-separated string is how such lists often arrive from `-e`.
        Some(Value::String(text)) => Ok(Some(
            text.split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(str::to_string)
                .collect(),
        )),
        Some(other) => Err(format!("`{key}` must be a list of strings, not {other}")),
    }
}

fn port_var(vars: &Map<String, Value>) -> Result<u16, String> {
    match vars.get("ansible_port") {
        None | Some(Value::Null) => Ok(22),
        Some(Value::Number(number)) => number
            .as_u64()
            .and_then(|port| u16::try_from(port).ok())
            .ok_or_else(|| format!("`ansible_port` {number} is not a port number")),
        Some(Value::String(text)) => text
            .parse()
            .map_err(|_| format!("`ansible_port` `{text}` is not a port number")),
        Some(other) => Err(format!("`ansible_port` must be a number, not {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(value: &Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn reads_ssh_and_local_hosts() {
        let host = HostSettings::from_vars(
            "edge",
            &vars(
                &json!({"pipeline_platform": "linux/aarch64", "ansible_host": "10.0.0.2",
                         "ansible_port": "2222", "pipeline_engines": ["containerd"]}),
            ),
        )
        .unwrap();
        assert_eq!(host.platform.to_string(), "linux/arm64");
        assert_eq!(
            host.connection,
            Connection::Ssh {
                address: "10.0.0.2".into(),
                port: 2222,
                user: None,
                private_key: None,
                known_hosts: None,
                host_key_checking: HostKeyChecking::Strict,
            }
        );
        assert!(host.has_engine("containerd") && !host.has_engine("docker"));
        let local = HostSettings::from_vars(
            "me",
            &vars(&json!({"pipeline_platform": "linux/amd64", "ansible_connection": "local"})),
        )
        .unwrap();
        assert_eq!(local.connection, Connection::Local);
    }

    #[test]
    fn host_key_checking_is_strict_unless_accept_new_is_asked_for() {
        let checking = |value: Value| {
            let mut vars = vars(&json!({"pipeline_platform": "linux/amd64"}));
            if !value.is_null() {
                vars.insert("pipeline_host_key_checking".into(), value);
            }
            HostSettings::from_vars("edge", &vars).map(|host| match host.connection {
                Connection::Ssh {
                    host_key_checking, ..
                } => host_key_checking,
                Connection::Local => unreachable!("an ssh host"),
            })
        };
        assert_eq!(checking(Value::Null), Ok(HostKeyChecking::Strict));
        assert_eq!(checking(json!("strict")), Ok(HostKeyChecking::Strict));
        assert_eq!(
            checking(json!("accept-new")),
            Ok(HostKeyChecking::AcceptNew)
        );
        assert_eq!(
            checking(json!("no")),
            Err("host `edge`: `pipeline_host_key_checking: no` is not supported; use `strict` (the default) or `accept-new`".into())
        );
    }

    #[test]
    fn rejects_missing_platform_and_unknown_engine() {
        assert!(
            HostSettings::from_vars("a", &Map::new())
                .unwrap_err()
                .contains("pipeline_platform")
        );
        let error = HostSettings::from_vars(
            "a",
            &vars(&json!({"pipeline_platform": "linux/amd64", "pipeline_engines": ["podman"]})),
        )
        .unwrap_err();
        assert!(error.contains("podman"));
    }
}

//! Reaching a host: one multiplexed SSH master connection per host through
//! the system's OpenSSH (so the user's ssh config and agent apply), or the
//! runner's own machine for `ansible_connection: local`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use openssh::{KnownHosts, Session, SessionBuilder};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::error_chain;
use crate::inventory::{Connection, HostKeyChecking, HostSettings};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("failed to connect to host {host} over ssh: {message}")]
    Connect { host: String, message: String },
    #[error("failed to connect to host {host} over ssh: {problem}")]
    HostKey {
        host: String,
        problem: HostKeyProblem,
    },
    #[error("the command on host {host} was cancelled")]
    Cancelled { host: String },
    #[error("`{command}` on host {host} failed: {message}")]
    Command {
        host: String,
        command: String,
        message: String,
    },
}

/// Why SSH did not trust a host: the key it showed and `known_hosts` disagree.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyProblem {
    #[error(
        "the host key of {name} is not in {known_hosts}; add it there once its fingerprint \
         is checked (`ssh-keyscan -p {port} {address}` prints it), or set \
         `pipeline_host_key_checking: accept-new` to record it on first use"
    )]
    Unknown {
        /// The host as known_hosts names it: `address`, or `[address]:port`.
        name: String,
        address: String,
        port: u16,
        known_hosts: String,
    },
    #[error(
        "the host key of {name} is not the one {known_hosts} holds for it: the host was \
         reinstalled, or something is in between; remove the old key \
         (`ssh-keygen -R '{name}'`) only once it is clear which"
    )]
    Changed { name: String, known_hosts: String },
}

impl HostKeyProblem {
    /// Reads OpenSSH's own words for a rejected host key, if that is what
    /// `message` (its stderr, passed on by the openssh crate) says.
    fn recognise(
        message: &str,
        address: &str,
        port: u16,
        known_hosts: String,
    ) -> Option<HostKeyProblem> {
        let name = if port == 22 {
            address.to_string()
        } else {
            format!("[{address}]:{port}")
        };
        if message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || message.contains("Host key for") && message.contains("has changed")
        {
            Some(HostKeyProblem::Changed { name, known_hosts })
        } else if message.contains("Host key verification failed")
            || message.contains("host key is known for")
        {
            Some(HostKeyProblem::Unknown {
                name,
                address: address.to_string(),
                port,
                known_hosts,
            })
        } else {
            None
        }
    }
}

/// How commands reach one host.
#[derive(Clone)]
pub enum Transport {
    Ssh { host: String, session: Arc<Session> },
    Local { host: String },
}

/// A finished command's output.
pub struct CommandOutput {
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Transport {
    /// Relative key and `known_hosts` paths are relative to the inventory's folder.
    pub async fn connect(
        host: &HostSettings,
        inventory_dir: &Path,
        control_dir: &Path,
    ) -> Result<Transport, TransportError> {
        let Connection::Ssh {
            address,
            port,
            user,
            private_key,
            known_hosts,
            host_key_checking,
        } = &host.connection
        else {
            return Ok(Transport::Local {
                host: host.name.clone(),
            });
        };
        let resolve = |path: &str| {
            let path = Path::new(path);
            if path.is_absolute() {
                path.to_path_buf()
            } else {
                inventory_dir.join(path)
            }
        };
        let mut builder = SessionBuilder::default();
        // Strict by default: an unknown or changed host key is an error, never
        // a prompt. accept-new trusts an unknown key once; a changed one never.
        builder
            .known_hosts_check(match host_key_checking {
                HostKeyChecking::Strict => KnownHosts::Strict,
                HostKeyChecking::AcceptNew => KnownHosts::Add,
            })
            .port(*port)
            .connect_timeout(std::time::Duration::from_secs(10));
        if let Some(user) = user {
            builder.user(user.clone());
        }
        if let Some(key) = private_key {
            builder.keyfile(resolve(key));
        }
        if let Some(file) = known_hosts {
            builder.user_known_hosts_file(resolve(file));
        }
        std::fs::create_dir_all(control_dir).map_err(|error| TransportError::Connect {
            host: host.name.clone(),
            message: format!("failed to create {}: {error}", control_dir.display()),
        })?;
        builder.control_directory(control_dir);
        let session = builder.connect(address).await.map_err(|error| {
            let message = error_chain(&error);
            // ssh's own default, unless the user's ssh config names another.
            let known_hosts = known_hosts.as_deref().map_or_else(
                || "the user's known_hosts (~/.ssh/known_hosts; `pipeline_known_hosts` names another)".to_string(),
                |file| resolve(file).display().to_string(),
            );
            match HostKeyProblem::recognise(&message, address, *port, known_hosts) {
                Some(problem) => TransportError::HostKey {
                    host: host.name.clone(),
                    problem,
                },
                None => TransportError::Connect {
                    host: host.name.clone(),
                    message,
                },
            }
        })?;
        Ok(Transport::Ssh {
            host: host.name.clone(),
            session: Arc::new(session),
        })
    }

    pub fn host(&self) -> &str {
        match self {
            Transport::Ssh { host, .. } | Transport::Local { host } => host,
        }
    }

    /// Runs `program args` on the host with `input` on its stdin, which is
    /// then closed.
    pub async fn run(
        &self,
        program: &str,
        args: &[&str],
        input: &[u8],
    ) -> Result<CommandOutput, TransportError> {
        self.call(
            program,
            args,
            input,
            &CancellationToken::new(),
            Duration::ZERO,
        )
        .await
    }

    /// Like [`Self::run`], but stdin stays open until the program exits or
    /// `cancel` fires. Cancelling closes stdin, which the program takes as
    /// the sign to stop, and waits up to `grace` for it to finish cleaning up.
    pub async fn call(
        &self,
        program: &str,
        args: &[&str],
        input: &[u8],
        cancel: &CancellationToken,
        grace: Duration,
    ) -> Result<CommandOutput, TransportError> {
        let failure = |message: String| TransportError::Command {
            host: self.host().to_string(),
            command: format!("{program} {}", args.join(" ")),
            message,
        };
        let hold_stdin = !grace.is_zero();
        match self {
            Transport::Ssh { session, .. } => {
                let mut command = session.command(program);
                command
                    .args(args)
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped());
                let mut child = command
                    .spawn()
                    .await
                    .map_err(|error| failure(error.to_string()))?;
                let mut stdin = child.stdin().take();
                if let Some(stdin) = stdin.as_mut() {
                    stdin
                        .write_all(input)
                        .await
                        .map_err(|error| failure(error.to_string()))?;
                    stdin
                        .flush()
                        .await
                        .map_err(|error| failure(error.to_string()))?;
                }
                if !hold_stdin {
                    drop(stdin.take());
                }
                let output = child.wait_with_output();
                let output = wait_or_cancel(output, stdin, cancel, grace)
                    .await
                    .ok_or_else(|| TransportError::Cancelled {
                        host: self.host().to_string(),
                    })?
                    .map_err(|error| failure(error.to_string()))?;
                Ok(CommandOutput {
                    status: output.status.code(),
                    stdout: output.stdout,
                    stderr: output.stderr,
                })
            }
            Transport::Local { .. } => {
                let mut child = tokio::process::Command::new(program)
                    .args(args)
                    .env("PATH", crate::system::admin_path())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|error| failure(error.to_string()))?;
                let mut stdin = child.stdin.take();
                if let Some(stdin) = stdin.as_mut() {
                    stdin
                        .write_all(input)
                        .await
                        .map_err(|error| failure(error.to_string()))?;
                }
                if !hold_stdin {
                    drop(stdin.take());
                }
                let output = child.wait_with_output();
                let output = wait_or_cancel(output, stdin, cancel, grace)
                    .await
                    .ok_or_else(|| TransportError::Cancelled {
                        host: self.host().to_string(),
                    })?
                    .map_err(|error| failure(error.to_string()))?;
                Ok(CommandOutput {
                    status: output.status.code(),
                    stdout: output.stdout,
                    stderr: output.stderr,
                })
            }
        }
    }

    /// Puts this very binary on the host, once per version, and returns its
    /// path there. The agent must match the host's architecture: the lab's
    /// hosts share the runner's, and real boards need a build of their own.
    pub async fn install_agent(
        &self,
        binary: &Path,
        version: &str,
    ) -> Result<PathBuf, TransportError> {
        if matches!(self, Transport::Local { .. }) {
            return Ok(binary.to_path_buf());
        }
        let remote = format!("/tmp/pipeline-agent-{version}");
        let check = self.run("test", &["-x", &remote], b"").await?;
        if check.status == Some(0) {
            return Ok(PathBuf::from(remote));
        }
        let bytes = std::fs::read(binary).map_err(|error| TransportError::Command {
            host: self.host().to_string(),
            command: "install agent".into(),
            message: format!("failed to read {}: {error}", binary.display()),
        })?;
        // A unique temporary name: hosts may share /tmp (the lab's do), and
        // two uploads of one version must not move each other's file away.
        let script = format!(
            "part=$(mktemp {remote}.XXXXXX) && cat > \"$part\" && chmod 755 \"$part\" && mv -f \"$part\" {remote}"
        );
        let output = self.run("sh", &["-c", &script], &bytes).await?;
        if output.status != Some(0) {
            return Err(TransportError::Command {
                host: self.host().to_string(),
                command: "install agent".into(),
                message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(PathBuf::from(remote))
    }
}

/// Waits for `output`; if `cancel` fires first, closes `stdin` and gives the
/// program `grace` to finish. `None` when cancelled.
async fn wait_or_cancel<T, W>(
    output: impl std::future::Future<Output = T>,
    stdin: Option<W>,
    cancel: &CancellationToken,
    grace: Duration,
) -> Option<T> {
    tokio::pin!(output);
    tokio::select! {
        done = &mut output => return Some(done),
        () = cancel.cancelled() => {}
    }
    drop(stdin);
    let _ = tokio::time::timeout(grace, &mut output).await;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_host_key_refusals_are_told_apart_from_other_failures() {
        let unknown = "ssh exited: No ED25519 host key is known for [10.0.0.2]:2222 and you have requested strict checking.\r\nHost key verification failed.";
        let changed = "@@@@@@@@@@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n...\r\nHost key verification failed.";
        let file = || "inventory/known_hosts".to_string();
        assert!(matches!(
            HostKeyProblem::recognise(unknown, "10.0.0.2", 2222, file()),
            Some(HostKeyProblem::Unknown { name, .. }) if name == "[10.0.0.2]:2222"
        ));
        assert!(matches!(
            HostKeyProblem::recognise(changed, "edge", 22, file()),
            Some(HostKeyProblem::Changed { name, .. }) if name == "edge"
        ));
        assert!(
            HostKeyProblem::recognise(
                "connect to host edge port 22: Connection refused",
                "edge",
                22,
                file()
            )
            .is_none()
        );
    }
}

//! Starting, watching and stopping the lab's own processes.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LabError;
use crate::system::admin_path;

/// A program started detached, in a process group of its own (so a Ctrl-C
/// at the terminal does not reach it), with its output in a log file.
pub struct Daemon {
    program: String,
    args: Vec<String>,
    log: Option<PathBuf>,
}

impl Daemon {
    pub fn new(program: &str) -> Daemon {
        Daemon {
            program: program.to_string(),
            args: Vec::new(),
            log: None,
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Daemon {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_string()));
        self
    }

    pub fn log(mut self, path: &Path) -> Daemon {
        self.log = Some(path.to_path_buf());
        self
    }

    pub fn spawn(self) -> Result<u32, LabError> {
        let command_text = format!("{} {}", self.program, self.args.join(" "));
        let failure = |message: String| LabError::Command {
            command: command_text.clone(),
            message,
        };
        let output = match &self.log {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|error| failure(error.to_string()))?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|error| failure(format!("{}: {error}", path.display())))?;
                let copy = file
                    .try_clone()
                    .map_err(|error| failure(error.to_string()))?;
                (Stdio::from(file), Stdio::from(copy))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new(&self.program)
            .args(&self.args)
            .env("PATH", admin_path())
            .stdin(Stdio::null())
            .stdout(output.0)
            .stderr(output.1)
            .process_group(0)
            .spawn()
            .map_err(|error| failure(error.to_string()))?;
        // The child outlives this process on purpose; `lab down` stops it by pid.
        Ok(child.id())
    }
}

/// Runs a command to completion; a non-zero exit is an error with its stderr.
pub fn run_checked(program: &str, args: &[&str]) -> Result<String, LabError> {
    let output = Command::new(program)
        .args(args)
        .env("PATH", admin_path())
        .stdin(Stdio::null())
        .output()
        .map_err(|error| LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            message: error.to_string(),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Alive and not a zombie: an orphan may wait a while for init to reap it.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// SIGTERM, then SIGKILL for whatever is still alive after `grace`.
pub fn terminate(pids: &[u32], grace: Duration) {
    let living: Vec<u32> = pids.iter().copied().filter(|pid| alive(*pid)).collect();
    for pid in &living {
        signal(*pid, "TERM");
    }
    let started = Instant::now();
    while started.elapsed() < grace && living.iter().any(|pid| alive(*pid)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in living.into_iter().filter(|pid| alive(*pid)) {
        signal(pid, "KILL");
    }
}

/// Kills every process that shares the anchor's mount namespace, except the anchor.
pub fn kill_namespace_members(anchor: u32) {
    let Ok(namespace) = std::fs::read_link(format!("/proc/{anchor}/ns/mnt")) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != anchor
            && std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .ok()
                .as_ref()
                == Some(&namespace)
        {
            signal(pid, "KILL");
        }
    }
}

pub fn lab_namespaces() -> Vec<String> {
    let Ok(listing) = run_checked("ip", &["netns", "list"]) else {
        return Vec::new();
    };
    let mut names: Vec<String> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with("plab-"))
        .map(str::to_string)
        .collect();
    // Hosts before the switch, which holds their bridge ports.
    names.sort_by_key(|name| name == "plab-switch");
    names
}

/// Removes a cgroup the lab's engines created, depth first (they are empty by now).
pub fn remove_cgroups(name: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for controller in controllers.flatten() {
        remove_tree(&controller.path().join(name));
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                remove_tree(&entry.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}

pub fn tcp_open(address: &str) -> bool {
    address
        .parse()
        .ok()
        .and_then(|socket| {
            std::net::TcpStream::connect_timeout(&socket, Duration::from_millis(200)).ok()
        })
        .is_some()
}

/// A minimal GET that succeeds on status 200; enough for readiness checks.
pub fn http_ok(url_without_scheme: &str) -> bool {
    let Some((address, path)) = url_without_scheme.split_once('/') else {
        return false;
    };
    let Some(socket) = address.parse().ok() else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&socket, Duration::from_millis(300))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET /{path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200")
}

pub fn docker_ping(socket: &Path) -> bool {
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.ends_with("OK")
}

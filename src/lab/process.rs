//! Starting, watching and stopping the lab's own processes.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::os::fd::OwnedFd;

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use super::LabError;
use super::identity::{self, Pinned, ProcessIdentity, Runner, Verdict};
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

    /// Starts the program; the pidfd is taken while the child is not yet
    /// reaped, so it names this very process whatever happens to the PID.
    pub fn spawn(self) -> Result<Spawned, LabError> {
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
        let pid = child.id();
        let pidfd = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| failure(format!("{pid} is not a valid process id")))
            .and_then(|raw| {
                pidfd_open(raw, PidfdFlags::empty()).map_err(|error| failure(error.to_string()))
            })?;
        // The child outlives this process on purpose; `lab down` stops it
        // after proving it is still this child (see `identity`).
        Ok(Spawned { pid, pidfd })
    }
}

/// A process just started, held by a pidfd until it is known to serve.
pub struct Spawned {
    pub pid: u32,
    pidfd: OwnedFd,
}

impl Spawned {
    /// Kills it: a part that did not start is not left running unrecorded.
    pub fn kill(&self) {
        let _ = pidfd_send_signal(&self.pidfd, Signal::KILL);
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

/// A recorded process with the name reports use for it.
#[derive(Clone)]
pub struct Recorded<'a> {
    pub name: String,
    pub process: &'a ProcessIdentity,
}

impl<'a> Recorded<'a> {
    pub fn new(name: impl Into<String>, process: &'a ProcessIdentity) -> Recorded<'a> {
        Recorded {
            name: name.into(),
            process,
        }
    }

    /// Pinned when it proves to be the lab's; a process that does not is
    /// reported and left alone.
    fn pin(&self, runner: &Runner, report: &mut dyn FnMut(&str)) -> Option<Pinned> {
        match self.process.verify(runner) {
            Verdict::Ours(pinned) => Some(pinned),
            Verdict::Gone => None,
            Verdict::NotOurs(reason) => {
                report(&format!(
                    "spared PID {} (recorded as {}): {reason}",
                    self.process.pid, self.name
                ));
                None
            }
        }
    }
}

/// SIGTERM, then SIGKILL for whatever is still alive after `grace`; only
/// processes proven the lab's are signalled, each through its pidfd.
pub fn terminate(
    processes: &[Recorded<'_>],
    grace: Duration,
    runner: &Runner,
    report: &mut dyn FnMut(&str),
) {
    let pinned: Vec<Pinned> = processes
        .iter()
        .filter_map(|recorded| recorded.pin(runner, report))
        .collect();
    for process in &pinned {
        process.signal(Signal::TERM);
    }
    let started = Instant::now();
    while started.elapsed() < grace && pinned.iter().any(|process| !process.exited()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for process in pinned.iter().filter(|process| !process.exited()) {
        process.signal(Signal::KILL);
    }
}

/// Kills every process in the anchor's mount namespace, except the anchor.
/// Only once the anchor is proven the lab's (so the namespace is the one the
/// lab made, and not the runner's), and while the anchor is pinned, so the
/// namespace lives on, and its inode cannot name another, during the scan.
pub fn kill_namespace_members(
    anchor: &Recorded<'_>,
    runner: &Runner,
    report: &mut dyn FnMut(&str),
) {
    let pinned = match anchor.process.verify(runner) {
        Verdict::Ours(pinned) => pinned,
        Verdict::Gone => return,
        Verdict::NotOurs(reason) => {
            report(&format!(
                "left alone the processes in the mount namespace of PID {} (recorded as {}): {reason}",
                anchor.process.pid, anchor.name
            ));
            return;
        }
    };
    let namespace = anchor.process.mount_namespace;
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
        if pid != pinned.pid
            && identity::mount_namespace_of(pid) == Some(namespace)
            && let Some(member) = identity::pin_in_namespace(pid, namespace, runner)
        {
            member.signal(Signal::KILL);
        }
    }
    drop(pinned);
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

//! Proof that a process is one the lab started. A PID alone proves nothing:
//! after a reboot, or once the lab's process has exited, the number may name
//! anything. The lab records facts no other process shares (the boot, the
//! start time and the namespaces) and signals only through a pidfd taken
//! before those facts are checked, so a PID reused after the check is not hit.

use std::os::fd::OwnedFd;

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
use serde::{Deserialize, Serialize};

/// What the lab records about each process it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks from boot to the process's start.
    pub start_ticks: u64,
    /// The kernel's boot id: start times only compare within one boot.
    pub boot_id: String,
    /// Inode of `/proc/<pid>/ns/mnt`.
    pub mount_namespace: u64,
    /// Inode of `/proc/<pid>/ns/net`.
    pub net_namespace: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("failed to read the identity of process {pid}: {reason}")]
pub struct IdentityError {
    pub pid: u32,
    pub reason: String,
}

/// Facts about the process doing the checking: what it must never signal.
#[derive(Debug, Clone)]
pub struct Runner {
    pub pid: u32,
    pub mount_namespace: u64,
}

impl Runner {
    pub fn current() -> Result<Runner, IdentityError> {
        let pid = std::process::id();
        Ok(Runner {
            pid,
            mount_namespace: namespace_inode("self", "mnt")
                .map_err(|reason| IdentityError { pid, reason })?,
        })
    }
}

/// A process proven to be the recorded one, held by a pidfd.
#[derive(Debug)]
pub struct Pinned {
    pub pid: u32,
    pidfd: OwnedFd,
}

impl Pinned {
    /// Signals the pinned process; a process that has exited since is no error.
    pub fn signal(&self, signal: Signal) {
        let _ = pidfd_send_signal(&self.pidfd, signal);
    }

    /// Exited, or a zombie: either way nothing left to signal.
    pub fn exited(&self) -> bool {
        !alive(self.pid)
    }
}

/// The outcome of checking a recorded process.
#[derive(Debug)]
pub enum Verdict {
    /// Every recorded fact matches: it is the lab's, and pinned.
    Ours(Pinned),
    /// No process (or only a zombie) has the recorded PID.
    Gone,
    /// A process has the PID but is not the one recorded; never signalled.
    NotOurs(String),
}

impl ProcessIdentity {
    /// Reads the facts of a running process.
    pub fn observe(pid: u32) -> Result<ProcessIdentity, IdentityError> {
        let failure = |reason: String| IdentityError { pid, reason };
        let proc_name = pid.to_string();
        let stat = read_stat(pid).map_err(failure)?;
        Ok(ProcessIdentity {
            pid,
            start_ticks: stat.start_ticks,
            boot_id: boot_id().map_err(failure)?,
            mount_namespace: namespace_inode(&proc_name, "mnt").map_err(failure)?,
            net_namespace: namespace_inode(&proc_name, "net").map_err(failure)?,
        })
    }

    /// Checks every recorded fact against the process now at the PID, and
    /// refuses PID 1, the runner itself and anything in the runner's mount
    /// namespace whatever the record says.
    pub fn verify(&self, runner: &Runner) -> Verdict {
        let pid = self.pid;
        if pid <= 1 {
            return Verdict::NotOurs(format!("PID {pid} is never the lab's"));
        }
        if pid == runner.pid {
            return Verdict::NotOurs("it is this very process".into());
        }
        let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            return Verdict::NotOurs(format!("{pid} is not a valid process id"));
        };
        // Pinned first, checked second: if the PID is reused after the
        // check, the pidfd still names the process that was checked.
        let pidfd = match pidfd_open(raw, PidfdFlags::empty()) {
            Ok(pidfd) => pidfd,
            Err(rustix::io::Errno::SRCH) => return Verdict::Gone,
            Err(error) => return Verdict::NotOurs(format!("it cannot be pinned: {error}")),
        };
        match self.mismatch(runner) {
            Ok(None) => Verdict::Ours(Pinned { pid, pidfd }),
            Ok(Some(reason)) => Verdict::NotOurs(reason),
            Err(Gone) => Verdict::Gone,
        }
    }

    /// Why the process at the PID is not the recorded one, if it is not.
    fn mismatch(&self, runner: &Runner) -> Result<Option<String>, Gone> {
        let proc_name = self.pid.to_string();
        let stat = read_stat(self.pid).map_err(|_| Gone)?;
        if stat.zombie {
            return Err(Gone);
        }
        let boot = boot_id().unwrap_or_default();
        if boot != self.boot_id {
            return Ok(Some(
                "it was recorded before the machine last started".into(),
            ));
        }
        if stat.start_ticks != self.start_ticks {
            return Ok(Some(format!(
                "it started at tick {}, the lab's process at tick {}: the PID was reused",
                stat.start_ticks, self.start_ticks
            )));
        }
        let mount = match namespace_inode(&proc_name, "mnt") {
            Ok(mount) => mount,
            Err(reason) => {
                return Ok(Some(format!(
                    "its mount namespace cannot be read: {reason}"
                )));
            }
        };
        if mount == runner.mount_namespace {
            return Ok(Some("it shares this runner's mount namespace".into()));
        }
        if mount != self.mount_namespace {
            return Ok(Some(format!(
                "its mount namespace is {mount}, the lab's process's was {}",
                self.mount_namespace
            )));
        }
        let net = match namespace_inode(&proc_name, "net") {
            Ok(net) => net,
            Err(reason) => {
                return Ok(Some(format!(
                    "its network namespace cannot be read: {reason}"
                )));
            }
        };
        if net != self.net_namespace {
            return Ok(Some(format!(
                "its network namespace is {net}, the lab's process's was {}",
                self.net_namespace
            )));
        }
        Ok(None)
    }
}

/// The process vanished while it was being checked.
struct Gone;

struct Stat {
    start_ticks: u64,
    zombie: bool,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from its closing parenthesis.
fn read_stat(pid: u32) -> Result<Stat, String> {
    let path = format!("/proc/{pid}/stat");
    let text = fs_err::read_to_string(&path).map_err(|error| error.to_string())?;
    parse_stat(&text).ok_or_else(|| format!("unreadable {path}"))
}

fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(") ")?;
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); the start time is field 22.
    let state = fields.next()?;
    let start_ticks = fields.nth(22 - 4)?.parse().ok()?;
    Some(Stat {
        start_ticks,
        zombie: state == "Z",
    })
}

fn boot_id() -> Result<String, String> {
    fs_err::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|text| text.trim().to_string())
        .map_err(|error| error.to_string())
}

/// The inode in a namespace link such as `mnt:[4026531841]`.
fn namespace_inode(proc_name: &str, kind: &str) -> Result<u64, String> {
    let path = format!("/proc/{proc_name}/ns/{kind}");
    let target = fs_err::read_link(&path).map_err(|error| error.to_string())?;
    parse_namespace_link(&target.to_string_lossy())
        .ok_or_else(|| format!("unreadable namespace link {path}: {}", target.display()))
}

fn parse_namespace_link(target: &str) -> Option<u64> {
    target
        .split_once(":[")
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .and_then(|inode| inode.parse().ok())
}

/// The mount namespace inode of any process, for scanning /proc.
pub fn mount_namespace_of(pid: u32) -> Option<u64> {
    namespace_inode(&pid.to_string(), "mnt").ok()
}

/// Alive and not a zombie: an orphan may wait a while for init to reap it.
pub fn alive(pid: u32) -> bool {
    read_stat(pid).is_ok_and(|stat| !stat.zombie)
}

/// Pins a process found by scanning /proc, checking after the pin that it
/// is still in `mount_namespace` (its PID may have been reused in between).
pub fn pin_in_namespace(pid: u32, mount_namespace: u64, runner: &Runner) -> Option<Pinned> {
    if pid <= 1 || pid == runner.pid || mount_namespace == runner.mount_namespace {
        return None;
    }
    let raw = i32::try_from(pid).ok().and_then(Pid::from_raw)?;
    let pidfd = pidfd_open(raw, PidfdFlags::empty()).ok()?;
    (mount_namespace_of(pid) == Some(mount_namespace)).then_some(Pinned { pid, pidfd })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_parentheses_in_the_name() {
        let line = "4242 (we ird) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.start_ticks, 987_654);
        assert!(!stat.zombie);
        let zombie = "7 (sh) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
        assert!(parse_stat(zombie).expect("parses").zombie);
        assert!(parse_stat("7 (sh) S 1 2").is_none());
    }

    #[test]
    fn namespace_links_give_their_inode() {
        assert_eq!(
            parse_namespace_link("mnt:[4026531841]"),
            Some(4_026_531_841)
        );
        assert_eq!(parse_namespace_link("net:[12"), None);
        assert_eq!(parse_namespace_link("garbage"), None);
    }

    #[test]
    fn the_runner_its_namespace_and_pid_1_are_never_ours() {
        let runner = Runner::current().expect("own facts");
        let me = ProcessIdentity::observe(runner.pid).expect("own identity");
        assert!(
            matches!(me.verify(&runner), Verdict::NotOurs(reason) if reason.contains("this very process"))
        );
        let init = ProcessIdentity {
            pid: 1,
            ..me.clone()
        };
        assert!(matches!(init.verify(&runner), Verdict::NotOurs(_)));
    }

    #[test]
    fn a_child_is_ours_only_while_every_fact_matches() {
        let runner = Runner::current().expect("own facts");
        // unshare gives the child a mount namespace of its own, as the lab's processes have.
        let mut child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "slave", "sleep", "30"])
            .spawn()
            .expect("unshare sleep");
        let pid = child.id();
        let wait = std::time::Instant::now();
        while mount_namespace_of(pid) == Some(runner.mount_namespace)
            && wait.elapsed() < std::time::Duration::from_secs(5)
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let recorded = ProcessIdentity::observe(pid).expect("identity");
        let reused = ProcessIdentity {
            start_ticks: recorded.start_ticks + 1,
            ..recorded.clone()
        };
        assert!(
            matches!(reused.verify(&runner), Verdict::NotOurs(reason) if reason.contains("reused"))
        );
        let other_boot = ProcessIdentity {
            boot_id: "another boot".into(),
            ..recorded.clone()
        };
        assert!(matches!(other_boot.verify(&runner), Verdict::NotOurs(_)));
        let other_net = ProcessIdentity {
            net_namespace: recorded.net_namespace + 1,
            ..recorded.clone()
        };
        assert!(matches!(other_net.verify(&runner), Verdict::NotOurs(_)));
        let Verdict::Ours(pinned) = recorded.verify(&runner) else {
            panic!("the child itself is ours");
        };
        pinned.signal(Signal::KILL);
        let _ = child.wait();
        assert!(pinned.exited());
        assert!(matches!(recorded.verify(&runner), Verdict::Gone));
    }
}

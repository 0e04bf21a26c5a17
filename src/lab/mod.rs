//! The local lab: several real hosts on one machine. Each host is a network
//! namespace on a bridge with its own address, plus a mount namespace with a
//! private /run in which its own sshd, containerd and dockerd run, so its
//! engines listen on the standard sockets and its image stores are its own.
//! A registry and a builder engine serve all hosts.
//!
//! Every daemon is started detached, each in a mount namespace that is not
//! the runner's, and recorded in `.lab/state.json` with what proves it the
//! lab's own (see `identity`); `down` stops only processes that pass that
//! proof. One lab per machine: see `registration`. The recipe is in
//! docs/lab-notes.md.

mod config;
mod identity;
mod probe;
mod process;
mod registration;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use identity::{IdentityError, ProcessIdentity, Runner, Verdict};
use probe::Probe;
use process::{Daemon, Recorded, Spawned, run_checked, terminate};
pub use registration::MACHINE_REGISTRATION;
use registration::{Claim, Registration};

pub const SUBNET: &str = "10.203.77";
pub const REGISTRY_PORT: u16 = 5000;
/// The same registry content over HTTPS: containerd 1.7's transfer service pulls
/// over HTTPS only (it ignores `hosts.toml`, so `http://` cannot be configured).
pub const REGISTRY_TLS_PORT: u16 = 5443;
/// A second registry pair, on its own storage, that wants a user and password
/// (htpasswd): the lab's test of registries that need credentials.
pub const AUTH_REGISTRY_PORT: u16 = 5001;
pub const AUTH_REGISTRY_TLS_PORT: u16 = 5444;
/// The one user of the authenticated registry; its password is made on `up`.
pub const AUTH_REGISTRY_USER: &str = "pipeline-lab";
const STATE_FILE: &str = "state.json";
/// The wasmtime shim's program name, as containerd looks it up on its PATH
/// for the runtime `io.containerd.wasmtime.v1`.
const SHIM_PROGRAM: &str = "containerd-shim-wasmtime-v1";
/// What the shim of an emulated host hands its modules to, found beside it.
const RUNNER_PROGRAM: &str = "wasmtime-runner";
const SWITCH_NAMESPACE: &str = "plab-switch";
const BRIDGE: &str = "plab0";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("failed to run `{command}`: {message}")]
    Command { command: String, message: String },
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not serving: {why}\nlast lines of {}:\n{tail}", log.display())]
    NotServing {
        what: String,
        why: String,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "another lab is up on this machine, from {}: labs share namespace names, \
         the subnet {SUBNET}.0/24 and ports, so only one runs at a time; take it down \
         first with `pipeline lab down --dir {}`",
        owner.display(),
        owner.display()
    )]
    AnotherLab { owner: PathBuf },
    #[error(
        "{} is not a state file this version can read ({reason}); the processes it \
         lists cannot be proven the lab's, so none is touched: stop them by hand \
         (or with the pipeline that started them), then remove the file",
        path.display()
    )]
    UnreadableState { path: PathBuf, reason: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{0}")]
    Setup(String),
}

/// One lab host: its name, address, the platform its inventory entry
/// declares, and the containerd it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabHost {
    pub name: String,
    pub address: String,
    pub platform: String,
    #[serde(default)]
    pub containerd: ContainerdRelease,
}

/// The builder engine is not measured, and Docker 26, which builds on it,
/// was made against containerd 1.7.
const BUILDER_CONTAINERD: ContainerdRelease = ContainerdRelease::V1_7;

/// The containerd release a lab host runs: forky's 2.x by default, trixie's
/// 1.7 when asked for, so an experiment can compare the two as a dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ContainerdRelease {
    #[serde(rename = "1.7")]
    V1_7,
    #[default]
    #[serde(rename = "2")]
    V2,
}

impl ContainerdRelease {
    /// `2` (or `2.1`, `2.x`) and `1.7`.
    pub fn parse(text: &str) -> Option<ContainerdRelease> {
        match text {
            "2" | "2.x" | "2.1" => Some(ContainerdRelease::V2),
            "1.7" => Some(ContainerdRelease::V1_7),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerdRelease::V1_7 => "1.7",
            ContainerdRelease::V2 => "2",
        }
    }

    /// The folder of scripts/install-deps' prefix holding this release's
    /// containerd, ctr and runc shim.
    fn bin_dir(self, deps: &Path) -> PathBuf {
        match self {
            ContainerdRelease::V1_7 => deps.join("bin"),
            ContainerdRelease::V2 => deps.join("containerd-2/bin"),
        }
    }
}

/// The first three hosts match the shipped inventory.yaml.
pub fn default_hosts(count: usize) -> Vec<LabHost> {
    let platforms = ["linux/amd64", "linux/arm64", "linux/riscv64"];
    (0..count)
        .map(|index| {
            let platform = platforms[index % platforms.len()];
            let arch = platform.trim_start_matches("linux/");
            let name = if index < platforms.len() {
                format!("lab-{arch}")
            } else {
                format!("lab-{arch}-{}", index / platforms.len() + 1)
            };
            LabHost {
                name,
                address: format!("{SUBNET}.{}", 11 + index),
                platform: platform.to_string(),
                containerd: ContainerdRelease::default(),
            }
        })
        .collect()
}

/// Applies `lab up --containerd` choices: `RELEASE` for every host, then
/// `HOST=RELEASE` for one, whatever their order on the command line.
pub fn choose_containerd(hosts: &mut [LabHost], choices: &[String]) -> Result<(), String> {
    let release = |text: &str| {
        ContainerdRelease::parse(text).ok_or_else(|| {
            format!(
                "--containerd {}: the lab runs containerd `2` or `1.7`",
                crate::diagnostic::escape_control(text)
            )
        })
    };
    let (per_host, everywhere): (Vec<&String>, Vec<&String>) =
        choices.iter().partition(|choice| choice.contains('='));
    for choice in everywhere {
        let chosen = release(choice)?;
        for host in hosts.iter_mut() {
            host.containerd = chosen;
        }
    }
    for choice in per_host {
        let (name, text) = choice.split_once('=').unwrap_or_default();
        let chosen = release(text)?;
        let host = hosts
            .iter_mut()
            .find(|host| host.name == name)
            .ok_or_else(|| {
                format!(
                    "--containerd {}: the lab has no host `{}`",
                    crate::diagnostic::escape_control(choice),
                    crate::diagnostic::escape_control(name)
                )
            })?;
        host.containerd = chosen;
    }
    Ok(())
}

/// Where the lab keeps its files and finds its programs.
#[derive(Debug, Clone)]
pub struct LabLayout {
    /// `.lab` in the project root unless `PIPELINE_LAB_DIR` says otherwise.
    pub root: PathBuf,
    /// The prefix `scripts/install-deps` fills.
    pub deps: PathBuf,
    /// The runner's wasmtime shim, when built: on the PATH of the hosts of
    /// the runner's architecture.
    pub shim: Option<PathBuf>,
    /// Where the wasmtime runners of other architectures are
    /// (`scripts/build-shims --runner`): `<uname -m>/wasmtime-runner`. An
    /// emulated host's shim hands each module to the runner of the host's
    /// architecture, which compiles and runs it under qemu, as a board's
    /// shim would on its own CPU.
    pub foreign_runners: Option<PathBuf>,
    /// The machine-wide record of which lab folder is up
    /// ([`MACHINE_REGISTRATION`] except in tests).
    pub registration: PathBuf,
}

impl LabLayout {
    pub fn new(root: PathBuf, deps: PathBuf) -> LabLayout {
        LabLayout {
            root,
            deps,
            shim: None,
            foreign_runners: None,
            registration: PathBuf::from(MACHINE_REGISTRATION),
        }
    }

    pub fn state_file(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }

    fn host_dir(&self, host: &str) -> PathBuf {
        self.root.join("hosts").join(host)
    }

    pub fn ssh_dir(&self) -> PathBuf {
        self.root.join("ssh")
    }

    /// The host's own programs: its wasmtime shim.
    fn bin_dir(&self, host: &str) -> PathBuf {
        self.host_dir(host).join("bin")
    }

    /// The wasmtime runner built for the architecture of an emulated host's
    /// `platform`, when there is one.
    fn foreign_runner(&self, platform: &str) -> Option<PathBuf> {
        let platform = crate::platform::Platform::parse(platform).ok()?;
        if platform.machine() == std::env::consts::ARCH {
            return None;
        }
        let runner = self
            .foreign_runners
            .as_ref()?
            .join(platform.machine())
            .join(RUNNER_PROGRAM);
        runner.is_file().then_some(runner)
    }

    /// PATH for a host's daemons and SSH sessions: the host's own programs
    /// (shim), then its containerd release, then the prefix, all before the
    /// machine's older containerd and runc.
    fn daemon_path(&self, host: &str, containerd: ContainerdRelease) -> String {
        let release = containerd.bin_dir(&self.deps);
        let prefix = self.deps.join("bin");
        let mut folders = vec![self.bin_dir(host), release.clone()];
        if release != prefix {
            folders.push(prefix);
        }
        let mut path = folders
            .iter()
            .map(|folder| folder.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        path.push_str(":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path
    }

    pub fn registry_address(&self) -> String {
        format!("{SUBNET}.1:{REGISTRY_PORT}")
    }

    pub fn registry_tls_address(&self) -> String {
        format!("{SUBNET}.1:{REGISTRY_TLS_PORT}")
    }

    pub fn auth_registry_address(&self) -> String {
        format!("{SUBNET}.1:{AUTH_REGISTRY_PORT}")
    }

    pub fn auth_registry_tls_address(&self) -> String {
        format!("{SUBNET}.1:{AUTH_REGISTRY_TLS_PORT}")
    }

    /// The authenticated registry's htpasswd file, storage and Docker config.
    pub fn auth_registry_dir(&self) -> PathBuf {
        self.root.join("registry-auth")
    }

    /// A Docker config folder (`DOCKER_CONFIG`) holding the authenticated
    /// registry's user and password.
    pub fn auth_docker_config(&self) -> PathBuf {
        self.auth_registry_dir().join("docker")
    }

    /// Every registry address the lab serves, for the engines' `insecure-registries`.
    fn registry_addresses(&self) -> Vec<String> {
        vec![self.registry_address(), self.auth_registry_address()]
    }

    fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// The trust bundle the daemons get as `SSL_CERT_FILE` (see `config::tls_files`).
    fn trust_bundle(&self) -> PathBuf {
        self.tls_dir().join("trust.pem")
    }
}

/// What is running, as recorded by `up`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabState {
    pub hosts: Vec<HostState>,
    pub registry: Option<ProcessIdentity>,
    /// The HTTPS registry on the same storage.
    #[serde(default)]
    pub registry_tls: Option<ProcessIdentity>,
    /// The registry that wants credentials, and its HTTPS twin.
    #[serde(default)]
    pub registry_auth: Option<ProcessIdentity>,
    #[serde(default)]
    pub registry_auth_tls: Option<ProcessIdentity>,
    pub builder: Option<EngineSet>,
    /// Fingerprint of the configuration the lab was started with; a lab whose
    /// configuration code changed since is restarted by `up`.
    #[serde(default)]
    pub config: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    pub host: LabHost,
    pub anchor: ProcessIdentity,
    pub sshd: ProcessIdentity,
    pub engines: EngineSet,
}

/// A containerd and a dockerd inside one anchor's mount namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineSet {
    pub anchor: ProcessIdentity,
    pub containerd: ProcessIdentity,
    pub dockerd: ProcessIdentity,
}

/// What `state.json` holds.
enum StateFile {
    Missing,
    Recorded(Box<LabState>),
    Unreadable(String),
}

/// One part of the lab: its recorded process, its log, and how it proves it serves.
pub struct Component {
    pub name: String,
    pub process: ProcessIdentity,
    pub log: PathBuf,
    /// `None` for anchors, which serve nothing but their namespaces.
    probe: Option<Probe>,
}

impl Component {
    /// The lab's own process, answering; `Err` says why not.
    fn check(&self, runner: &Runner) -> Result<(), String> {
        match self.process.verify(runner) {
            Verdict::Ours(_) => {}
            Verdict::Gone => return Err(format!("its process {} is gone", self.process.pid)),
            Verdict::NotOurs(reason) => {
                return Err(format!(
                    "PID {} is no longer its process: {reason}",
                    self.process.pid
                ));
            }
        }
        match &self.probe {
            Some(probe) => answers_on_own_port(probe, self.process.pid),
            None => Ok(()),
        }
    }

    fn not_serving(&self, why: String) -> LabError {
        LabError::NotServing {
            what: self.name.clone(),
            why,
            tail: probe::log_tail(&self.log, LOG_TAIL_LINES),
            log: self.log.clone(),
        }
    }
}

/// How often a running lab's part is asked before it counts as not serving.
const CHECK_ATTEMPTS: u32 = 3;

/// How much of a component's log an error shows.
const LOG_TAIL_LINES: usize = 20;

impl LabState {
    /// The recorded state; `None` when there is none or it cannot be read.
    pub fn load(layout: &LabLayout) -> Option<LabState> {
        LabState::read(layout).ok().flatten()
    }

    /// The recorded state, `None` when there is none, and an error when
    /// there is one this version cannot read.
    pub fn read(layout: &LabLayout) -> Result<Option<LabState>, LabError> {
        match read_state(&layout.state_file()) {
            StateFile::Missing => Ok(None),
            StateFile::Recorded(state) => Ok(Some(*state)),
            StateFile::Unreadable(reason) => Err(LabError::UnreadableState {
                path: layout.state_file(),
                reason,
            }),
        }
    }

    fn save(&self, layout: &LabLayout) -> Result<(), LabError> {
        let path = layout.state_file();
        let text = serde_json::to_string_pretty(self)
            .map_err(|error| LabError::Setup(error.to_string()))?;
        write_file(&path, &text)
    }

    /// Each registry of the lab with its recorded process, if it was started.
    fn registries(&self) -> [(LabRegistry, Option<&ProcessIdentity>); 4] {
        [
            (LabRegistry::Open, self.registry.as_ref()),
            (LabRegistry::OpenTls, self.registry_tls.as_ref()),
            (LabRegistry::Auth, self.registry_auth.as_ref()),
            (LabRegistry::AuthTls, self.registry_auth_tls.as_ref()),
        ]
    }

    fn recorded_registries(&self) -> Vec<Recorded<'_>> {
        self.registries()
            .into_iter()
            .filter_map(|(registry, process)| {
                process.map(|process| Recorded::new(registry.name(), process))
            })
            .collect()
    }

    /// Every recorded process, named, in the order `components` gives.
    fn recorded(&self) -> Vec<Recorded<'_>> {
        let mut recorded = self.recorded_registries();
        if let Some(builder) = &self.builder {
            recorded.extend(builder.recorded("builder"));
        }
        for host in &self.hosts {
            recorded.extend(host.engines.recorded(&host.host.name));
            recorded.push(Recorded::new(
                format!("sshd of {}", host.host.name),
                &host.sshd,
            ));
        }
        recorded
    }

    /// Every recorded process is running and proven the lab's.
    pub fn all_alive(&self) -> bool {
        let Ok(runner) = Runner::current() else {
            return false;
        };
        !self.hosts.is_empty()
            && self
                .recorded()
                .iter()
                .all(|recorded| matches!(recorded.process.verify(&runner), Verdict::Ours(_)))
    }

    /// Any recorded process is running and proven the lab's.
    fn any_alive(&self, runner: &Runner) -> bool {
        self.recorded()
            .iter()
            .any(|recorded| matches!(recorded.process.verify(runner), Verdict::Ours(_)))
    }

    /// Every part of the lab with its probe, anchors before what runs in them.
    pub fn components(&self, layout: &LabLayout) -> Vec<Component> {
        let mut components = Vec::new();
        for (kind, process) in self.registries() {
            if let Some(process) = process {
                let registry = RegistryParts::new(layout, kind);
                components.push(Component {
                    name: registry.what(),
                    process: process.clone(),
                    log: registry.log,
                    probe: Some(registry.probe),
                });
            }
        }
        if let Some(builder) = &self.builder {
            components.extend(builder.components(layout, "builder"));
        }
        for host in &self.hosts {
            let name = &host.host.name;
            components.extend(host.engines.components(layout, name));
            components.push(Component {
                name: format!("sshd of {name}"),
                process: host.sshd.clone(),
                log: layout.host_dir(name).join("log/sshd.log"),
                probe: Some(Probe::Ssh {
                    address: format!("{}:22", host.host.address),
                }),
            });
        }
        components
    }

    /// Every component is the lab's own process and answers; the first that
    /// does not is an error carrying the tail of its log.
    pub fn check_serving(&self, layout: &LabLayout, runner: &Runner) -> Result<(), LabError> {
        for component in self.components(layout) {
            // A busy machine (two cores, emulated builds) can make one answer
            // late; a stopped or wedged daemon misses every attempt.
            let mut attempts = 1;
            while let Err(why) = component.check(runner) {
                if attempts == CHECK_ATTEMPTS {
                    return Err(component.not_serving(why));
                }
                attempts += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        Ok(())
    }

    /// The builder's Docker socket, reached through its anchor's private /run.
    pub fn builder_socket(&self) -> Option<PathBuf> {
        self.builder.as_ref().map(|builder| {
            PathBuf::from(format!("/proc/{}/root/run/docker.sock", builder.anchor.pid))
        })
    }
}

impl EngineSet {
    fn recorded(&self, name: &str) -> [Recorded<'_>; 3] {
        [
            Recorded::new(format!("anchor of {name}"), &self.anchor),
            Recorded::new(format!("containerd of {name}"), &self.containerd),
            Recorded::new(format!("dockerd of {name}"), &self.dockerd),
        ]
    }

    fn components(&self, layout: &LabLayout, name: &str) -> [Component; 3] {
        let logs = layout.host_dir(name).join("log");
        let (containerd_probe, docker_probe) = engine_probes(self.anchor.pid);
        [
            Component {
                name: format!("the namespace of {name}"),
                process: self.anchor.clone(),
                log: logs.join("anchor.log"),
                probe: None,
            },
            Component {
                name: format!("containerd of {name}"),
                process: self.containerd.clone(),
                log: logs.join("containerd.log"),
                probe: Some(containerd_probe),
            },
            Component {
                name: format!("dockerd of {name}"),
                process: self.dockerd.clone(),
                log: logs.join("dockerd.log"),
                probe: Some(docker_probe),
            },
        ]
    }
}

/// containerd's and dockerd's probes, on their sockets in the anchor's private /run.
fn engine_probes(anchor: u32) -> (Probe, Probe) {
    let run = format!("/proc/{anchor}/root/run");
    (
        Probe::Containerd {
            socket: format!("{run}/containerd/containerd.sock"),
        },
        Probe::Docker {
            socket: format!("{run}/docker.sock"),
        },
    )
}

fn read_state(path: &Path) -> StateFile {
    match std::fs::read_to_string(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => StateFile::Missing,
        Err(error) => StateFile::Unreadable(error.to_string()),
        Ok(text) => match serde_json::from_str(&text) {
            Ok(state) => StateFile::Recorded(Box::new(state)),
            Err(error) => StateFile::Unreadable(error.to_string()),
        },
    }
}

/// The CPU qemu emulates for a lab host of `platform`: the cores of the
/// boards the paper measured (a Jetson Nano's Cortex-A57; SiFive's U54,
/// the closest qemu has to a VisionFive2's U74). qemu's default `max` CPU
/// advertises extensions such as SVE, whose string routines it emulates
/// very slowly, and which the boards do not have.
pub fn emulated_cpu(platform: &str) -> Option<&'static str> {
    match platform {
        "linux/arm64" => Some("cortex-a57"),
        "linux/riscv64" => Some("sifive-u54"),
        _ => None,
    }
}

/// The lab's inventory: the hosts `up` made, in the shape of the shipped
/// inventory.yaml, with paths relative to the lab folder. With
/// `authenticated`, the hosts use the registry that wants credentials
/// (`inventory-auth.yaml`; an apply then needs `DOCKER_CONFIG` set to
/// [`LabLayout::auth_docker_config`]).
pub fn inventory_yaml(layout: &LabLayout, hosts: &[LabHost], authenticated: bool) -> String {
    let (registry, pull_endpoint, note) = if authenticated {
        (
            layout.auth_registry_address(),
            layout.auth_registry_tls_address(),
            "# Its registry wants credentials: apply with DOCKER_CONFIG=registry-auth/docker\n# (relative to this folder) or PIPELINE_REGISTRY_USERNAME/PASSWORD.\n",
        )
    } else {
        (layout.registry_address(), layout.registry_tls_address(), "")
    };
    let mut text = format!(
        "# Written by `pipeline lab up`.\n{note}all:\n  vars:\n    pipeline_registry: {registry}\n    pipeline_containerd_pull_endpoint: {pull_endpoint}\n    ansible_user: root\n    ansible_ssh_private_key_file: ssh/id_ed25519\n    pipeline_known_hosts: ssh/known_hosts\n    pipeline_engines: [docker, containerd]\n    pipeline_runtimes: [{}]\n    pipeline_machine: runner\n  children:\n    lab:\n      hosts:\n",
        if layout.shim.is_some() {
            "runc, wasmtime"
        } else {
            "runc"
        }
    );
    for host in hosts {
        let _ = write!(
            text,
            "        {}:
          ansible_host: {}
          pipeline_platform: {}
          pipeline_cgroup_parent: /plab-{}
",
            host.name, host.address, host.platform, host.name
        );
        if let Some(cpu) = emulated_cpu(&host.platform) {
            let _ = writeln!(text, "          pipeline_qemu_cpu: {cpu}");
        }
    }
    text
}

pub fn write_file(path: &Path, text: &str) -> Result<(), LabError> {
    let error = |source| LabError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    std::fs::write(path, text).map_err(error)
}

/// Brings the lab up; a lab that is already fully up and serving is left as
/// it is, one with a part gone is restarted, and one with a part that runs
/// but does not answer is an error with that part's log.
pub fn up(
    layout: &LabLayout,
    hosts: &[LabHost],
    report: &mut dyn FnMut(&str),
) -> Result<LabState, LabError> {
    let runner = Runner::current()?;
    let mut registration = Registration::lock(&layout.registration, report)?;
    let owner = registration.owner()?;
    let owner_running = owner.as_deref().is_some_and(|owner| {
        owner != layout.root
            && matches!(read_state(&owner.join(STATE_FILE)),
                StateFile::Recorded(state) if state.any_alive(&runner))
    });
    match registration::decide(&layout.root, owner.as_deref(), owner_running) {
        Claim::Free => {}
        Claim::Taken(owner) => return Err(LabError::AnotherLab { owner }),
        Claim::Stale(owner) => report(&format!(
            "nothing of the lab in {} runs any more; this one takes its place",
            owner.display()
        )),
    }
    let fingerprint = config_fingerprint(layout, hosts);
    match read_state(&layout.state_file()) {
        StateFile::Missing => {}
        StateFile::Unreadable(reason) => {
            return Err(LabError::UnreadableState {
                path: layout.state_file(),
                reason,
            });
        }
        StateFile::Recorded(state) => {
            let same_hosts = state.hosts.iter().map(|h| &h.host).eq(hosts.iter());
            let alive = state.all_alive();
            if alive && same_hosts && state.config == fingerprint {
                // Running is not serving: a stopped or wedged daemon fails here,
                // with its log, rather than being reported up or restarted blindly.
                state.check_serving(layout, &runner)?;
                registration.set_owner(Some(&layout.root))?;
                // containerd looks the shim up on every container start, so a
                // rebuilt shim takes effect without a restart.
                install_shims(layout, hosts, report)?;
                report("the lab is already up");
                return Ok(*state);
            }
            report(if alive && same_hosts {
                "the lab's configuration changed; restarting it"
            } else {
                "a previous lab is partly up or different; taking it down first"
            });
            stop_recorded(&state, &runner, report);
            remove_cgroups(&state);
            remove_state_file(layout)?;
        }
    }
    let started = Instant::now();
    check_programs(layout, hosts)?;
    install_shims(layout, hosts, report)?;
    config::ssh_keys(layout, hosts)?;
    let tls = config::tls_files(&layout.tls_dir(), &format!("{SUBNET}.1"))?;
    config::auth_registry_user(
        &layout.auth_registry_dir(),
        AUTH_REGISTRY_USER,
        &[
            layout.auth_registry_address(),
            layout.auth_registry_tls_address(),
        ],
    )?;
    // Registered before anything is made, so a failure half way leaves a lab
    // that `down` from this folder (and only this folder) clears.
    registration.set_owner(Some(&layout.root))?;
    report("network: bridge and host namespaces");
    // Namespaces outlive the processes that used them: a run that was killed,
    // or a checkout whose .lab was removed, leaves them behind without a state
    // file. This folder holds the machine's registration and no other lab
    // runs, so any `plab-` namespace is a leftover.
    network_down();
    if let Err(error) = network_up(hosts) {
        network_down();
        return Err(error);
    }
    let mut state = LabState {
        config: fingerprint,
        ..LabState::default()
    };
    // Record as we go, so a failure half way can still be taken down.
    let result = (|| {
        for kind in LabRegistry::ALL {
            report(kind.what());
            let process = Some(start_registry(layout, kind, &tls, &runner)?);
            match kind {
                LabRegistry::Open => state.registry = process,
                LabRegistry::OpenTls => state.registry_tls = process,
                LabRegistry::Auth => state.registry_auth = process,
                LabRegistry::AuthTls => state.registry_auth_tls = process,
            }
            state.save(layout)?;
        }
        report("builder engine");
        state.builder = Some(start_engines(
            layout,
            "builder",
            BUILDER_CONTAINERD,
            None,
            None,
            &runner,
        )?);
        state.save(layout)?;
        for host in hosts {
            report(&format!(
                "host {} ({}, {})",
                host.name, host.address, host.platform
            ));
            state.hosts.push(start_host(layout, host, &runner)?);
            state.save(layout)?;
        }
        // Each part answered when it started; one that died or stopped
        // answering while the others started is caught here.
        state.check_serving(layout, &runner)
    })();
    if let Err(error) = result {
        let _ = state.save(layout);
        return Err(error);
    }
    report(&format!(
        "the lab is up in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(state)
}

/// Puts the shim (when built) on each host's PATH, with the wasmtime runner
/// of the host's architecture beside it on an emulated host, or removes
/// stale copies. Copied under a temporary name and renamed, so a shim that
/// is running keeps its old file and the next container gets the new one.
fn install_shims(
    layout: &LabLayout,
    hosts: &[LabHost],
    report: &mut dyn FnMut(&str),
) -> Result<(), LabError> {
    for host in hosts {
        let bin = layout.bin_dir(&host.name);
        let runner = layout
            .shim
            .as_ref()
            .and_then(|_| layout.foreign_runner(&host.platform));
        if layout.shim.is_some() && runner.is_none() && emulated_cpu(&host.platform).is_some() {
            // Still a host that runs wasm, but natively: its hosts.parquet
            // row (`wasm_machine`) says so.
            report(&format!(
                "{}: no wasmtime runner built for {} in {}; wasm runs there natively, not emulated (scripts/build-shims --runner builds it)",
                host.name,
                host.platform,
                layout
                    .foreign_runners
                    .as_ref()
                    .map_or_else(|| "target/shims".to_string(), |dir| dir.display().to_string()),
            ));
        }
        for (program, source) in [(SHIM_PROGRAM, layout.shim.as_ref()), (RUNNER_PROGRAM, runner.as_ref())] {
            let target = bin.join(program);
            let Some(source) = source else {
                let _ = std::fs::remove_file(&target);
                continue;
            };
            std::fs::create_dir_all(&bin).map_err(|source| LabError::Write {
                path: bin.clone(),
                source,
            })?;
            let partial = bin.join(format!(".{program}.partial"));
            std::fs::copy(source, &partial)
                .and_then(|_| std::fs::rename(&partial, &target))
                .map_err(|source| LabError::Write {
                    path: target,
                    source,
                })?;
        }
    }
    Ok(())
}

/// Everything `up` would write for these hosts, hashed: a change to the lab's
/// configuration code shows as a different fingerprint.
fn config_fingerprint(layout: &LabLayout, hosts: &[LabHost]) -> String {
    let mut hasher = blake3::Hasher::new();
    let mut part = |text: &str| {
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    };
    let tls = layout.tls_dir();
    let certificate = tls.join("registry.crt");
    let key = tls.join("registry.key");
    for kind in LabRegistry::ALL {
        part(&kind.config(layout, (&certificate, &key)));
    }
    for address in layout.registry_addresses() {
        part(&config::registry_hosts_toml(&address));
    }
    part(&layout.trust_bundle().to_string_lossy());
    let builder = ("builder", BUILDER_CONTAINERD, None);
    let lab_hosts = hosts.iter().map(|host| {
        (
            host.name.as_str(),
            host.containerd,
            emulated_cpu(&host.platform),
        )
    });
    for (name, containerd, cpu) in std::iter::once(builder).chain(lab_hosts) {
        let dir = layout.host_dir(name);
        part(cpu.unwrap_or_default());
        part(&layout.daemon_path(name, containerd));
        part(&config::containerd_config(&dir, containerd));
        part(&config::docker_daemon_json(
            &dir,
            name,
            &layout.registry_addresses(),
        ));
        part(&config::sshd_config(
            layout,
            name,
            &layout.daemon_path(name, containerd),
        ));
    }
    hasher.finalize().to_hex().to_string()
}

fn check_programs(layout: &LabLayout, hosts: &[LabHost]) -> Result<(), LabError> {
    let mut programs = vec![
        layout.deps.join("bin/containerd"),
        layout.deps.join("bin/dockerd"),
        layout.deps.join("bin/runc"),
    ];
    for host in hosts {
        programs.push(host.containerd.bin_dir(&layout.deps).join("containerd"));
    }
    for path in programs {
        if !path.exists() {
            return Err(LabError::Setup(format!(
                "{} is missing: run scripts/install-deps first (it installs docker 26, containerd 1.7 and 2.1 into {})",
                path.display(),
                layout.deps.display()
            )));
        }
    }
    for program in [
        "/usr/sbin/sshd",
        "/usr/bin/docker-registry",
        "/usr/bin/ssh-keygen",
        "/usr/bin/openssl",
    ] {
        if !Path::new(program).exists() {
            return Err(LabError::Setup(format!(
                "{program} is missing: run scripts/install-deps first"
            )));
        }
    }
    Ok(())
}

fn host_namespace(host: &str) -> String {
    format!("plab-{host}")
}

/// Removes the bridge and every `plab-` namespace; quiet when there are none.
/// The root end of the bridge link is deleted explicitly: namespace teardown
/// in the kernel is asynchronous, and a quick `up` after `down` would
/// otherwise find it still there.
fn network_down() {
    if run_checked("ip", &["link", "show", BRIDGE]).is_ok() {
        let _ = run_checked("ip", &["link", "del", BRIDGE]);
    }
    for namespace in process::lab_namespaces() {
        let _ = run_checked("ip", &["netns", "del", &namespace]);
    }
}

/// The lab is IPv4 only; IPv6 link-local chatter would only add noise to
/// pull timings. Best effort: a kernel without IPv6, or a read-only
/// /proc/sys, has nothing to turn off or does not let us, and the lab works
/// either way. nsenter rather than `ip netns exec`, which also remounts /sys.
fn disable_ipv6(namespace: &str) {
    let _ = run_checked(
        "nsenter",
        &[
            &format!("--net=/run/netns/{namespace}"),
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
        ],
    );
}

fn network_up(hosts: &[LabHost]) -> Result<(), LabError> {
    // The bridge lives in a namespace of its own: bridged frames between hosts
    // would otherwise cross the machine's FORWARD chain, which Docker sets to DROP.
    let ip = |args: &[&str]| run_checked("ip", args);
    let in_switch = |args: &[&str]| {
        let mut full = vec!["-n", SWITCH_NAMESPACE];
        full.extend_from_slice(args);
        run_checked("ip", &full)
    };
    ip(&["netns", "add", SWITCH_NAMESPACE])?;
    disable_ipv6(SWITCH_NAMESPACE);
    in_switch(&["link", "set", "lo", "up"])?;
    in_switch(&["link", "add", "name", BRIDGE, "type", "bridge"])?;
    in_switch(&["link", "set", BRIDGE, "up"])?;
    ip(&[
        "link",
        "add",
        "name",
        BRIDGE,
        "type",
        "veth",
        "peer",
        "name",
        "up0",
        "netns",
        SWITCH_NAMESPACE,
    ])?;
    let _ = run_checked(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{BRIDGE}.disable_ipv6=1")],
    );
    ip(&["addr", "add", &format!("{SUBNET}.1/24"), "dev", BRIDGE])?;
    ip(&["link", "set", BRIDGE, "up"])?;
    in_switch(&["link", "set", "up0", "master", BRIDGE, "up"])?;
    for host in hosts {
        let namespace = host_namespace(&host.name);
        let port = format!("p-{}", host.name);
        ip(&["netns", "add", &namespace])?;
        disable_ipv6(&namespace);
        in_switch(&[
            "link", "add", "name", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &namespace,
        ])?;
        in_switch(&["link", "set", &port, "master", BRIDGE, "up"])?;
        run_checked(
            "ip",
            &[
                "-n",
                &namespace,
                "addr",
                "add",
                &format!("{}/24", host.address),
                "dev",
                "eth0",
            ],
        )?;
        run_checked("ip", &["-n", &namespace, "link", "set", "lo", "up"])?;
        run_checked("ip", &["-n", &namespace, "link", "set", "eth0", "up"])?;
    }
    Ok(())
}

/// The lab's registries: an open one and one that wants credentials, each
/// over plain HTTP and as an HTTPS twin on the same storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabRegistry {
    Open,
    OpenTls,
    Auth,
    AuthTls,
}

impl LabRegistry {
    const ALL: [LabRegistry; 4] = [
        LabRegistry::Open,
        LabRegistry::OpenTls,
        LabRegistry::Auth,
        LabRegistry::AuthTls,
    ];

    /// Its name in the state file's records and its files' names.
    fn name(self) -> &'static str {
        match self {
            LabRegistry::Open => "registry",
            LabRegistry::OpenTls => "registry-tls",
            LabRegistry::Auth => "registry-auth",
            LabRegistry::AuthTls => "registry-auth-tls",
        }
    }

    fn what(self) -> &'static str {
        match self {
            LabRegistry::Open => "registry",
            LabRegistry::OpenTls => "registry over TLS",
            LabRegistry::Auth => "registry with credentials",
            LabRegistry::AuthTls => "registry with credentials over TLS",
        }
    }

    fn tls(self) -> bool {
        matches!(self, LabRegistry::OpenTls | LabRegistry::AuthTls)
    }

    fn authenticated(self) -> bool {
        matches!(self, LabRegistry::Auth | LabRegistry::AuthTls)
    }

    fn address(self, layout: &LabLayout) -> String {
        match self {
            LabRegistry::Open => layout.registry_address(),
            LabRegistry::OpenTls => layout.registry_tls_address(),
            LabRegistry::Auth => layout.auth_registry_address(),
            LabRegistry::AuthTls => layout.auth_registry_tls_address(),
        }
    }

    /// Its config, log and storage folder; a pair shares one.
    fn dir(self, layout: &LabLayout) -> PathBuf {
        if self.authenticated() {
            layout.auth_registry_dir()
        } else {
            layout.root.join("registry")
        }
    }

    /// The distribution config; `tls` is the certificate and key the HTTPS
    /// twins serve.
    fn config(self, layout: &LabLayout, tls: (&Path, &Path)) -> String {
        let dir = self.dir(layout);
        config::registry_config(
            &dir.join("data"),
            &self.address(layout),
            self.tls().then_some(tls),
            self.authenticated()
                .then(|| dir.join(config::HTPASSWD))
                .as_deref(),
        )
    }
}

/// How a lab registry is started and checked.
struct RegistryParts {
    address: String,
    config: PathBuf,
    log: PathBuf,
    probe: Probe,
}

impl RegistryParts {
    fn new(layout: &LabLayout, kind: LabRegistry) -> RegistryParts {
        let address = kind.address(layout);
        let dir = kind.dir(layout);
        let probe = match kind {
            LabRegistry::Open => Probe::Registry {
                address: address.clone(),
            },
            LabRegistry::Auth => Probe::AuthRegistry {
                address: address.clone(),
            },
            LabRegistry::OpenTls | LabRegistry::AuthTls => Probe::TlsRegistry {
                address: address.clone(),
            },
        };
        RegistryParts {
            config: dir.join(format!("{}.yml", kind.name())),
            log: dir.join(format!("{}.log", kind.name())),
            address,
            probe,
        }
    }

    fn what(&self) -> String {
        format!("the registry on {}", self.address)
    }
}

/// One of the lab's registries. It runs in a mount namespace of its own (a
/// slave of the machine's, so it sees the same files): no lab process
/// shares the runner's, which is what lets `down` refuse to signal anything
/// that does.
fn start_registry(
    layout: &LabLayout,
    kind: LabRegistry,
    tls: &config::TlsFiles,
    runner: &Runner,
) -> Result<ProcessIdentity, LabError> {
    let RegistryParts {
        address,
        config,
        log,
        probe,
    } = RegistryParts::new(layout, kind);
    write_file(&config, &kind.config(layout, (&tls.certificate, &tls.key)))?;
    let spawned = Daemon::new("unshare")
        .args(["--mount", "--propagation", "slave", "--"])
        .args([
            "/usr/bin/docker-registry",
            "serve",
            &config.to_string_lossy(),
        ])
        .log(&log)
        .spawn()?;
    let pid = spawned.pid;
    let component = Starting {
        what: format!("the registry on {address}"),
        spawned,
        log,
        limit: Duration::from_secs(10),
    };
    component.await_serving(runner, || answers_on_own_port(&probe, pid))
}

/// The probe answers, from a socket of the process itself: a port answered
/// by another program (a lab of another checkout, say) is not this one serving.
fn answers_on_own_port(probe: &Probe, pid: u32) -> Result<(), String> {
    probe.ask()?;
    match probe.tcp_port() {
        Some(port) if !probe::listens_on(pid, port) => Err(format!(
            "port {port} answers, but not from its process {pid}"
        )),
        _ => Ok(()),
    }
}

/// A process just started, until it serves.
struct Starting {
    what: String,
    spawned: Spawned,
    log: PathBuf,
    limit: Duration,
}

impl Starting {
    /// Waits until `ready` holds, then records the process's identity. A
    /// process that exits, or does not become ready in time, is an error
    /// with the tail of its log, and is killed if it still runs. The
    /// identity is read only once it is ready: by then `nsenter` and
    /// `unshare` have entered the namespaces for good.
    fn await_serving(
        self,
        runner: &Runner,
        mut ready: impl FnMut() -> Result<(), String>,
    ) -> Result<ProcessIdentity, LabError> {
        let pid = self.spawned.pid;
        let started = Instant::now();
        let why = loop {
            if !identity::alive(pid) {
                break format!("its process {pid} exited");
            }
            match ready() {
                Ok(()) => {
                    let identity = ProcessIdentity::observe(pid)?;
                    if identity.mount_namespace == runner.mount_namespace {
                        break format!(
                            "its process {pid} runs in the runner's mount namespace, \
                             where `lab down` could never stop it"
                        );
                    }
                    return Ok(identity);
                }
                Err(why) if started.elapsed() >= self.limit => {
                    break format!("not ready within {} s: {why}", self.limit.as_secs());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        self.spawned.kill();
        Err(LabError::NotServing {
            what: self.what,
            why,
            tail: probe::log_tail(&self.log, LOG_TAIL_LINES),
            log: self.log,
        })
    }
}

/// An anchor process holding a mount namespace with a private /run and
/// /var/log, optionally inside a host's network namespace.
fn start_anchor(
    layout: &LabLayout,
    name: &str,
    network: Option<&str>,
    runner: &Runner,
) -> Result<ProcessIdentity, LabError> {
    let dir = layout.host_dir(name);
    let log = dir.join("log/anchor.log");
    let script = "mount -t tmpfs -o mode=0755,size=64m plab-run /run && \
                  mount -t tmpfs -o mode=0755,size=16m plab-log /var/log && \
                  mkdir -p /run/sshd /run/containerd && exec sleep infinity";
    let mut daemon = match network {
        Some(namespace) => {
            Daemon::new("nsenter").args([&format!("--net=/run/netns/{namespace}"), "--", "unshare"])
        }
        None => Daemon::new("unshare"),
    };
    daemon = daemon
        .args([
            "--mount",
            "--propagation",
            "slave",
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .log(&log);
    let spawned = daemon.spawn()?;
    let ready = PathBuf::from(format!("/proc/{}/root/run/sshd", spawned.pid));
    let component = Starting {
        what: format!("the namespace of {name}"),
        spawned,
        log,
        limit: Duration::from_secs(5),
    };
    component.await_serving(runner, || {
        if ready.exists() {
            Ok(())
        } else {
            Err(format!("{} does not exist yet", ready.display()))
        }
    })
}

/// Runs a program inside an anchor's namespaces.
fn in_anchor(anchor: u32, program: &str) -> Daemon {
    Daemon::new("nsenter").args([
        "--target",
        &anchor.to_string(),
        "--mount",
        "--net",
        "--",
        program,
    ])
}

fn start_engines(
    layout: &LabLayout,
    name: &str,
    containerd: ContainerdRelease,
    network: Option<&str>,
    emulated_cpu: Option<&str>,
    runner: &Runner,
) -> Result<EngineSet, LabError> {
    let anchor = start_anchor(layout, name, network, runner)?;
    match start_daemons(layout, name, containerd, emulated_cpu, &anchor, runner) {
        Ok((containerd, dockerd)) => Ok(EngineSet {
            anchor,
            containerd,
            dockerd,
        }),
        Err(error) => {
            // Not recorded yet: whatever started in the namespace is
            // stopped here, or nothing would stop it.
            let anchor = Recorded::new(format!("anchor of {name}"), &anchor);
            process::kill_namespace_members(&anchor, runner, &mut |_| {});
            terminate(&[anchor], Duration::from_secs(5), runner, &mut |_| {});
            Err(error)
        }
    }
}

/// containerd, then dockerd on it, in the anchor's namespaces.
fn start_daemons(
    layout: &LabLayout,
    name: &str,
    containerd: ContainerdRelease,
    emulated_cpu: Option<&str>,
    anchor: &ProcessIdentity,
    runner: &Runner,
) -> Result<(ProcessIdentity, ProcessIdentity), LabError> {
    let dir = layout.host_dir(name);
    let path = format!("PATH={}", layout.daemon_path(name, containerd));
    // containerd starts its shims with its own environment: the wasmtime
    // shim of an emulated host, run by qemu, emulates the host's CPU.
    let cpu = emulated_cpu.map(|cpu| format!("QEMU_CPU={cpu}"));
    // Go's TLS stack reads SSL_CERT_FILE: both daemons trust the lab CA (and
    // the machine's CAs) without touching the machine's trust store.
    let trust = format!("SSL_CERT_FILE={}", layout.trust_bundle().display());
    let containerd_config = dir.join("containerd/config.toml");
    write_file(
        &containerd_config,
        &config::containerd_config(&dir, containerd),
    )?;
    for address in layout.registry_addresses() {
        let hosts_toml = dir
            .join("containerd/certs.d")
            .join(&address)
            .join("hosts.toml");
        write_file(&hosts_toml, &config::registry_hosts_toml(&address))?;
    }
    let log = dir.join("log/containerd.log");
    let spawned = in_anchor(anchor.pid, "env")
        .args([path.as_str(), trust.as_str()])
        .args(cpu.as_deref())
        .args([
            "containerd",
            "--config",
            &containerd_config.to_string_lossy(),
        ])
        .log(&log)
        .spawn()?;
    let (containerd_probe, docker_probe) = engine_probes(anchor.pid);
    let containerd = Starting {
        what: format!("containerd of {name}"),
        spawned,
        log,
        limit: Duration::from_secs(10),
    }
    .await_serving(runner, || containerd_probe.ask())?;

    let daemon_json = dir.join("docker/daemon.json");
    write_file(
        &daemon_json,
        &config::docker_daemon_json(&dir, name, &layout.registry_addresses()),
    )?;
    let log = dir.join("log/dockerd.log");
    let spawned = in_anchor(anchor.pid, "env")
        .args([
            path.as_str(),
            trust.as_str(),
            "dockerd",
            "--config-file",
            &daemon_json.to_string_lossy(),
        ])
        .log(&log)
        .spawn()?;
    let dockerd = Starting {
        what: format!("dockerd of {name}"),
        spawned,
        log,
        limit: Duration::from_secs(30),
    }
    .await_serving(runner, || docker_probe.ask())?;
    Ok((containerd, dockerd))
}

fn start_host(layout: &LabLayout, host: &LabHost, runner: &Runner) -> Result<HostState, LabError> {
    let namespace = host_namespace(&host.name);
    let engines = start_engines(
        layout,
        &host.name,
        host.containerd,
        Some(&namespace),
        emulated_cpu(&host.platform),
        runner,
    )?;
    let dir = layout.host_dir(&host.name);
    let sshd_config = dir.join("ssh/sshd_config");
    write_file(
        &sshd_config,
        &config::sshd_config(
            layout,
            &host.name,
            &layout.daemon_path(&host.name, host.containerd),
        ),
    )?;
    let log = dir.join("log/sshd.log");
    let spawned = in_anchor(engines.anchor.pid, "/usr/sbin/sshd")
        .args([
            "-D",
            "-f",
            &sshd_config.to_string_lossy(),
            "-E",
            &log.to_string_lossy(),
        ])
        .log(&dir.join("log/sshd.out"))
        .spawn()?;
    let probe = Probe::Ssh {
        address: format!("{}:22", host.address),
    };
    let pid = spawned.pid;
    let sshd = Starting {
        what: format!("sshd of {}", host.name),
        spawned,
        log,
        limit: Duration::from_secs(5),
    }
    .await_serving(runner, || answers_on_own_port(&probe, pid));
    let sshd = match sshd {
        Ok(sshd) => sshd,
        Err(error) => {
            // Not recorded yet: stopped here, or nothing would stop it.
            stop_engine_set(&engines, &host.name, &[], runner, &mut |_| {});
            return Err(error);
        }
    };
    Ok(HostState {
        host: host.clone(),
        anchor: engines.anchor.clone(),
        sshd,
        engines,
    })
}

/// Stops the recorded processes that prove to be the lab's, and removes the
/// network only when this folder is the machine's registered lab; idempotent.
pub fn down(layout: &LabLayout, report: &mut dyn FnMut(&str)) -> Result<(), LabError> {
    let runner = Runner::current()?;
    let mut registration = Registration::lock(&layout.registration, report)?;
    let owner = registration.owner()?;
    let state = match read_state(&layout.state_file()) {
        StateFile::Missing => None,
        StateFile::Recorded(state) => Some(*state),
        StateFile::Unreadable(reason) => {
            report(
                &LabError::UnreadableState {
                    path: layout.state_file(),
                    reason,
                }
                .to_string(),
            );
            None
        }
    };
    if let Some(state) = &state {
        stop_recorded(state, &runner, report);
        remove_state_file(layout)?;
    }
    if owner.as_deref() == Some(layout.root.as_path()) {
        if let Some(state) = &state {
            remove_cgroups(state);
        }
        // Namespaces go last.
        network_down();
        registration.set_owner(None)?;
    } else {
        // The namespace names are the same for every lab folder: removing
        // them from here would take another folder's lab off the network.
        let registered = owner.map_or_else(
            || "no lab is registered".to_string(),
            |owner| format!("the registered lab is {}", owner.display()),
        );
        report(&format!(
            "{} is not the lab registered on this machine ({registered}): network namespaces and cgroups are left alone",
            layout.root.display()
        ));
    }
    report("the lab is down");
    Ok(())
}

fn remove_state_file(layout: &LabLayout) -> Result<(), LabError> {
    let path = layout.state_file();
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(LabError::Write {
            path,
            source: error,
        }),
        _ => Ok(()),
    }
}

/// The engines put their containers' cgroups under `plab-<host>`.
fn remove_cgroups(state: &LabState) {
    for host in &state.hosts {
        process::remove_cgroups(&format!("plab-{}", host.host.name));
    }
    process::remove_cgroups("plab-builder");
}

/// Stops what `state` records, sparing (and naming) every process that is
/// not provably the lab's.
fn stop_recorded(state: &LabState, runner: &Runner, report: &mut dyn FnMut(&str)) {
    for host in &state.hosts {
        report(&format!("host {}", host.host.name));
        let sshd = Recorded::new(format!("sshd of {}", host.host.name), &host.sshd);
        stop_engine_set(&host.engines, &host.host.name, &[sshd], runner, report);
    }
    if let Some(builder) = &state.builder {
        report("builder engine");
        stop_engine_set(builder, "builder", &[], runner, report);
    }
    let registries = state.recorded_registries();
    if !registries.is_empty() {
        report("registry");
        terminate(&registries, Duration::from_secs(5), runner, report);
    }
}

fn stop_engine_set(
    engines: &EngineSet,
    name: &str,
    others: &[Recorded<'_>],
    runner: &Runner,
    report: &mut dyn FnMut(&str),
) {
    let [anchor, containerd, dockerd] = engines.recorded(name);
    // dockerd first: it stops its containers through containerd.
    terminate(&[dockerd], Duration::from_secs(15), runner, report);
    let mut rest = others.to_vec();
    rest.push(containerd);
    terminate(&rest, Duration::from_secs(5), runner, report);
    // Whatever is left in the anchor's mount namespace (shims, ssh sessions)
    // is the lab's, once the anchor is proven the lab's own.
    process::kill_namespace_members(&anchor, runner, report);
    terminate(&[anchor], Duration::from_secs(5), runner, report);
}

/// One line per lab component, for `pipeline lab status`: its name, what it
/// is or why it is not serving, and whether it serves.
pub fn status(layout: &LabLayout) -> Vec<(String, String, bool)> {
    let Some(state) = LabState::load(layout) else {
        return Vec::new();
    };
    let Ok(runner) = Runner::current() else {
        return Vec::new();
    };
    state
        .components(layout)
        .into_iter()
        .map(|component| match component.check(&runner) {
            Ok(()) => (
                component.name,
                format!("PID {}", component.process.pid),
                true,
            ),
            Err(why) => (component.name, why, false),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_release_defaults_to_2_and_a_host_setting_wins() {
        let mut hosts = default_hosts(3);
        assert!(
            hosts
                .iter()
                .all(|host| host.containerd == ContainerdRelease::V2)
        );
        let choices = ["lab-arm64=2".to_string(), "1.7".to_string()];
        choose_containerd(&mut hosts, &choices).expect("valid choices");
        let releases: Vec<_> = hosts.iter().map(|host| host.containerd.as_str()).collect();
        assert_eq!(releases, ["1.7", "2", "1.7"]);

        let unknown = choose_containerd(&mut hosts, &["lab-mips=2".to_string()]);
        assert_eq!(
            unknown.expect_err("no such host"),
            "--containerd lab-mips=2: the lab has no host `lab-mips`"
        );
        let release = choose_containerd(&mut hosts, &["1.6".to_string()]);
        assert_eq!(
            release.expect_err("no such release"),
            "--containerd 1.6: the lab runs containerd `2` or `1.7`"
        );
        // Each release has its own programs, and a 1.7 host's PATH has no 2.x folder.
        let layout = LabLayout::new(PathBuf::from("lab"), PathBuf::from("deps"));
        assert!(
            layout
                .daemon_path("lab-amd64", ContainerdRelease::V2)
                .starts_with("lab/hosts/lab-amd64/bin:deps/containerd-2/bin:deps/bin:")
        );
        assert!(
            layout
                .daemon_path("lab-arm64", ContainerdRelease::V1_7)
                .starts_with("lab/hosts/lab-arm64/bin:deps/bin:/usr")
        );
    }

    /// A second `up` while another folder's lab runs refuses, naming that
    /// folder, before it makes anything. The "running" lab is one process
    /// this test starts and records as the other lab's registry.
    #[test]
    fn up_refuses_while_another_folders_lab_runs() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut layout = LabLayout::new(dir.path().join("second/.lab"), PathBuf::new());
        layout.registration = dir.path().join("owner");
        let first = dir.path().join("first/.lab");
        let mut child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "slave", "sleep", "30"])
            .spawn()
            .expect("unshare sleep");
        let runner = Runner::current().expect("own facts");
        let started = Instant::now();
        let identity = loop {
            let identity = ProcessIdentity::observe(child.id()).expect("identity");
            if identity.mount_namespace != runner.mount_namespace
                || started.elapsed() > Duration::from_secs(5)
            {
                break identity;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let state = LabState {
            registry: Some(identity),
            ..LabState::default()
        };
        state
            .save(&LabLayout::new(first.clone(), PathBuf::new()))
            .expect("first lab's state");
        let mut quiet = |_: &str| {};
        Registration::lock(&layout.registration, &mut quiet)
            .and_then(|mut registration| registration.set_owner(Some(&first)))
            .expect("register the first lab");

        let error = up(&layout, &default_hosts(1), &mut quiet).expect_err("refused");
        let _ = child.kill();
        let _ = child.wait();
        let message = error.to_string();
        assert!(
            matches!(&error, LabError::AnotherLab { owner } if *owner == first),
            "{message}"
        );
        assert!(
            message.contains(&format!("pipeline lab down --dir {}", first.display())),
            "{message}"
        );
        assert!(!layout.root.exists(), "nothing of the second lab was made");
    }

    /// A component that dies, or runs without answering, fails `up` with
    /// the tail of its log and is not left running; a component in the
    /// runner's own mount namespace is refused, since `down` could never stop it.
    #[test]
    fn a_component_that_does_not_serve_fails_with_its_log() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let runner = Runner::current().expect("own facts");
        let start = |program: &[&str], limit: u64| {
            let log = dir.path().join("component.log");
            let spawned = Daemon::new(program[0])
                .args(&program[1..])
                .log(&log)
                .spawn()
                .expect("spawn");
            Starting {
                what: "the test component".into(),
                spawned,
                log,
                limit: Duration::from_secs(limit),
            }
        };
        let gone = |pid: u32| {
            let started = Instant::now();
            while identity::alive(pid) && started.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(10));
            }
            !identity::alive(pid)
        };
        let in_own_namespace = |script: &'static str| {
            [
                "unshare",
                "--mount",
                "--propagation",
                "slave",
                "sh",
                "-c",
                script,
            ]
        };

        let dies = start(
            &in_own_namespace("echo listening failed: address in use >&2; exit 3"),
            10,
        );
        let message = dies
            .await_serving(&runner, || Err("not yet".into()))
            .expect_err("it exited")
            .to_string();
        assert!(
            message.starts_with("the test component is not serving: its process"),
            "{message}"
        );
        assert!(message.contains("exited"), "{message}");
        assert!(
            message.ends_with("listening failed: address in use"),
            "{message}"
        );

        let silent = start(&in_own_namespace("echo started; exec sleep 30"), 1);
        let pid = silent.spawned.pid;
        let message = silent
            .await_serving(&runner, || Err("GET /v2/ got no answer".into()))
            .expect_err("never ready")
            .to_string();
        assert!(
            message.contains("not ready within 1 s: GET /v2/ got no answer"),
            "{message}"
        );
        assert!(message.contains("started"), "{message}");
        assert!(gone(pid), "a component that never served is killed");

        let beside_runner = start(&["sleep", "30"], 1);
        let pid = beside_runner.spawned.pid;
        let message = beside_runner
            .await_serving(&runner, || Ok(()))
            .expect_err("refused")
            .to_string();
        assert!(
            message.contains("runs in the runner's mount namespace"),
            "{message}"
        );
        assert!(gone(pid), "a refused component is killed");
    }
}

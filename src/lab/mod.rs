//! The local lab: several real hosts on one machine. Each host is a network
//! namespace on a bridge with its own address, plus a mount namespace with a
//! private /run in which its own sshd, containerd and dockerd run, so its
//! engines listen on the standard sockets and its image stores are its own.
//! A registry and a builder engine serve all hosts.
//!
//! Every daemon is started detached and recorded in `.lab/state.json`;
//! `down` stops exactly those processes. The recipe is in docs/lab-notes.md.

mod config;
mod process;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use process::{Daemon, alive, run_checked, terminate};

pub const SUBNET: &str = "10.203.77";
pub const REGISTRY_PORT: u16 = 5000;
/// The same registry content over HTTPS: containerd 1.7's transfer service pulls
/// over HTTPS only (it ignores `hosts.toml`, so `http://` cannot be configured).
pub const REGISTRY_TLS_PORT: u16 = 5443;
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
    #[error("{what} did not become ready within {seconds} s; see {}", log.display())]
    NotReady {
        what: String,
        seconds: u64,
        log: PathBuf,
    },
    #[error("{0}")]
    Setup(String),
}

/// One lab host: its name, address and the platform its inventory entry declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabHost {
    pub name: String,
    pub address: String,
    pub platform: String,
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
            }
        })
        .collect()
}

/// Where the lab keeps its files and finds its programs.
#[derive(Debug, Clone)]
pub struct LabLayout {
    /// `.lab` in the project root unless `PIPELINE_LAB_DIR` says otherwise.
    pub root: PathBuf,
    /// The prefix `scripts/install-deps` fills.
    pub deps: PathBuf,
    /// The wasmtime shim to put on every host's PATH, when built.
    pub shim: Option<PathBuf>,
}

impl LabLayout {
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    fn host_dir(&self, host: &str) -> PathBuf {
        self.root.join("hosts").join(host)
    }

    pub fn ssh_dir(&self) -> PathBuf {
        self.root.join("ssh")
    }

    fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }

    /// PATH for every lab daemon: the lab's own programs (shim) and the
    /// prefix come before the machine's older containerd and runc.
    fn daemon_path(&self) -> String {
        format!(
            "{}:{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.bin_dir().display(),
            self.deps.join("bin").display()
        )
    }

    pub fn registry_address(&self) -> String {
        format!("{SUBNET}.1:{REGISTRY_PORT}")
    }

    pub fn registry_tls_address(&self) -> String {
        format!("{SUBNET}.1:{REGISTRY_TLS_PORT}")
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
    pub registry: Option<u32>,
    /// The HTTPS registry on the same storage.
    #[serde(default)]
    pub registry_tls: Option<u32>,
    pub builder: Option<EngineSet>,
    /// Fingerprint of the configuration the lab was started with; a lab whose
    /// configuration code changed since is restarted by `up`.
    #[serde(default)]
    pub config: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    pub host: LabHost,
    pub anchor: u32,
    pub sshd: u32,
    pub engines: EngineSet,
}

/// A containerd and a dockerd inside one anchor's mount namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineSet {
    pub anchor: u32,
    pub containerd: u32,
    pub dockerd: u32,
}

impl LabState {
    pub fn load(layout: &LabLayout) -> Option<LabState> {
        let text = std::fs::read_to_string(layout.state_file()).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, layout: &LabLayout) -> Result<(), LabError> {
        let path = layout.state_file();
        let text = serde_json::to_string_pretty(self)
            .map_err(|error| LabError::Setup(error.to_string()))?;
        write_file(&path, &text)
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.registry.into_iter().chain(self.registry_tls).collect();
        for host in &self.hosts {
            pids.extend([
                host.anchor,
                host.sshd,
                host.engines.anchor,
                host.engines.containerd,
                host.engines.dockerd,
            ]);
        }
        if let Some(builder) = &self.builder {
            pids.extend([builder.anchor, builder.containerd, builder.dockerd]);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    pub fn all_alive(&self) -> bool {
        !self.hosts.is_empty() && self.pids().into_iter().all(alive)
    }

    /// The builder's Docker socket, reached through its anchor's private /run.
    pub fn builder_socket(&self) -> Option<PathBuf> {
        self.builder
            .as_ref()
            .map(|builder| PathBuf::from(format!("/proc/{}/root/run/docker.sock", builder.anchor)))
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
/// inventory.yaml, with paths relative to the lab folder.
pub fn inventory_yaml(layout: &LabLayout, hosts: &[LabHost]) -> String {
    let mut text = format!(
        "# Written by `pipeline lab up`.\nall:\n  vars:\n    pipeline_registry: {}\n    pipeline_containerd_pull_endpoint: {}\n    ansible_user: root\n    ansible_ssh_private_key_file: ssh/id_ed25519\n    pipeline_known_hosts: ssh/known_hosts\n    pipeline_engines: [docker, containerd]\n    pipeline_runtimes: [{}]\n    pipeline_machine: runner\n  children:\n    lab:\n      hosts:\n",
        layout.registry_address(),
        layout.registry_tls_address(),
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

/// Brings the lab up; a lab that is already fully up is left as it is.
pub fn up(
    layout: &LabLayout,
    hosts: &[LabHost],
    report: &mut dyn FnMut(&str),
) -> Result<LabState, LabError> {
    let fingerprint = config_fingerprint(layout, hosts);
    if let Some(state) = LabState::load(layout) {
        let same_hosts = state.hosts.iter().map(|h| &h.host).eq(hosts.iter());
        let alive = state.all_alive();
        if alive && same_hosts && state.config == fingerprint {
            // containerd looks the shim up on every container start, so a
            // rebuilt shim takes effect without a restart.
            install_shim(layout)?;
            report("the lab is already up");
            return Ok(state);
        }
        report(if alive && same_hosts {
            "the lab's configuration changed; restarting it"
        } else {
            "a previous lab is partly up or different; taking it down first"
        });
        down(layout, report)?;
    }
    let started = Instant::now();
    check_programs(layout)?;
    install_shim(layout)?;
    config::ssh_keys(layout, hosts)?;
    let tls = config::tls_files(&layout.tls_dir(), &format!("{SUBNET}.1"))?;
    report("network: bridge and host namespaces");
    // Namespaces outlive the processes that used them: a run that was killed,
    // or a checkout whose .lab was removed, leaves them behind without a state
    // file. Their names are the lab's own, so they are cleared before use.
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
        report("registry");
        state.registry = Some(start_registry(layout, None)?);
        state.save(layout)?;
        report("registry over TLS");
        state.registry_tls = Some(start_registry(layout, Some(&tls))?);
        state.save(layout)?;
        report("builder engine");
        state.builder = Some(start_engines(layout, "builder", None)?);
        state.save(layout)?;
        for host in hosts {
            report(&format!(
                "host {} ({}, {})",
                host.name, host.address, host.platform
            ));
            state.hosts.push(start_host(layout, host)?);
            state.save(layout)?;
        }
        Ok(())
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

/// Puts the shim (when built) on the daemons' PATH, or removes a stale copy.
/// Copied under a temporary name and renamed, so a shim that is running keeps
/// its old file and the next container gets the new one.
fn install_shim(layout: &LabLayout) -> Result<(), LabError> {
    let bin = layout.bin_dir();
    let target = bin.join("containerd-shim-wasmtime-v1");
    let Some(shim) = &layout.shim else {
        let _ = std::fs::remove_file(&target);
        return Ok(());
    };
    std::fs::create_dir_all(&bin).map_err(|source| LabError::Write {
        path: bin.clone(),
        source,
    })?;
    let partial = bin.join(".containerd-shim-wasmtime-v1.partial");
    std::fs::copy(shim, &partial)
        .and_then(|_| std::fs::rename(&partial, &target))
        .map_err(|source| LabError::Write {
            path: target,
            source,
        })?;
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
    let data = layout.root.join("registry/data");
    let tls = layout.tls_dir();
    part(&config::registry_config(
        &data,
        &layout.registry_address(),
        None,
    ));
    part(&config::registry_config(
        &data,
        &layout.registry_tls_address(),
        Some((&tls.join("registry.crt"), &tls.join("registry.key"))),
    ));
    part(&config::registry_hosts_toml(&layout.registry_address()));
    part(&layout.daemon_path());
    part(&layout.trust_bundle().to_string_lossy());
    for name in std::iter::once("builder").chain(hosts.iter().map(|host| host.name.as_str())) {
        let dir = layout.host_dir(name);
        part(&config::containerd_config(&dir));
        part(&config::docker_daemon_json(
            &dir,
            name,
            &layout.registry_address(),
        ));
        part(&config::sshd_config(layout, name, &layout.daemon_path()));
    }
    hasher.finalize().to_hex().to_string()
}

fn check_programs(layout: &LabLayout) -> Result<(), LabError> {
    for program in ["containerd", "dockerd", "runc"] {
        let path = layout.deps.join("bin").join(program);
        if !path.exists() {
            return Err(LabError::Setup(format!(
                "{} is missing: run scripts/install-deps first (it installs docker 26 and containerd 1.7 into {})",
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

/// The plain-HTTP registry, or with `tls` its HTTPS twin on the same storage.
fn start_registry(layout: &LabLayout, tls: Option<&config::TlsFiles>) -> Result<u32, LabError> {
    let dir = layout.root.join("registry");
    let (address, name) = match tls {
        None => (layout.registry_address(), "registry"),
        Some(_) => (layout.registry_tls_address(), "registry-tls"),
    };
    let config = dir.join(format!("{name}.yml"));
    write_file(
        &config,
        &config::registry_config(
            &dir.join("data"),
            &address,
            tls.map(|files| (files.certificate.as_path(), files.key.as_path())),
        ),
    )?;
    let log = dir.join(format!("{name}.log"));
    let daemon = Daemon::new("/usr/bin/docker-registry")
        .args(["serve", &config.to_string_lossy()])
        .log(&log)
        .spawn()?;
    let what = format!("the registry on {address}");
    if tls.is_some() {
        // It listens only once its certificate is loaded.
        wait_until(&what, &log, Duration::from_secs(10), || {
            process::tcp_open(&address)
        })?;
    } else {
        let url = format!("{address}/v2/");
        wait_until(&what, &log, Duration::from_secs(10), || {
            process::http_ok(&url)
        })?;
    }
    Ok(daemon)
}

/// An anchor process holding a mount namespace with a private /run and
/// /var/log, optionally inside a host's network namespace.
fn start_anchor(layout: &LabLayout, name: &str, network: Option<&str>) -> Result<u32, LabError> {
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
    let pid = daemon.spawn()?;
    let ready = PathBuf::from(format!("/proc/{pid}/root/run/sshd"));
    wait_until(
        &format!("the namespace of {name}"),
        &log,
        Duration::from_secs(5),
        || ready.exists(),
    )?;
    Ok(pid)
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
    network: Option<&str>,
) -> Result<EngineSet, LabError> {
    let dir = layout.host_dir(name);
    let anchor = start_anchor(layout, name, network)?;
    let path = format!("PATH={}", layout.daemon_path());
    // Go's TLS stack reads SSL_CERT_FILE: both daemons trust the lab CA (and
    // the machine's CAs) without touching the machine's trust store.
    let trust = format!("SSL_CERT_FILE={}", layout.trust_bundle().display());
    let containerd_config = dir.join("containerd/config.toml");
    write_file(&containerd_config, &config::containerd_config(&dir))?;
    let hosts_toml = dir
        .join("containerd/certs.d")
        .join(layout.registry_address())
        .join("hosts.toml");
    write_file(
        &hosts_toml,
        &config::registry_hosts_toml(&layout.registry_address()),
    )?;
    let log = dir.join("log/containerd.log");
    let containerd = in_anchor(anchor, "env")
        .args([
            path.as_str(),
            trust.as_str(),
            "containerd",
            "--config",
            &containerd_config.to_string_lossy(),
        ])
        .log(&log)
        .spawn()?;
    let socket = PathBuf::from(format!(
        "/proc/{anchor}/root/run/containerd/containerd.sock"
    ));
    wait_until(
        &format!("containerd of {name}"),
        &log,
        Duration::from_secs(10),
        || socket.exists(),
    )?;

    let daemon_json = dir.join("docker/daemon.json");
    write_file(
        &daemon_json,
        &config::docker_daemon_json(&dir, name, &layout.registry_address()),
    )?;
    let log = dir.join("log/dockerd.log");
    let dockerd = in_anchor(anchor, "env")
        .args([
            path.as_str(),
            trust.as_str(),
            "dockerd",
            "--config-file",
            &daemon_json.to_string_lossy(),
        ])
        .log(&log)
        .spawn()?;
    let socket = PathBuf::from(format!("/proc/{anchor}/root/run/docker.sock"));
    wait_until(
        &format!("dockerd of {name}"),
        &log,
        Duration::from_secs(30),
        || process::docker_ping(&socket),
    )?;
    Ok(EngineSet {
        anchor,
        containerd,
        dockerd,
    })
}

fn start_host(layout: &LabLayout, host: &LabHost) -> Result<HostState, LabError> {
    let namespace = host_namespace(&host.name);
    let engines = start_engines(layout, &host.name, Some(&namespace))?;
    let dir = layout.host_dir(&host.name);
    let sshd_config = dir.join("ssh/sshd_config");
    write_file(
        &sshd_config,
        &config::sshd_config(layout, &host.name, &layout.daemon_path()),
    )?;
    let log = dir.join("log/sshd.log");
    let sshd = in_anchor(engines.anchor, "/usr/sbin/sshd")
        .args([
            "-D",
            "-f",
            &sshd_config.to_string_lossy(),
            "-E",
            &log.to_string_lossy(),
        ])
        .log(&dir.join("log/sshd.out"))
        .spawn()?;
    let address = format!("{}:22", host.address);
    wait_until(
        &format!("sshd of {}", host.name),
        &log,
        Duration::from_secs(5),
        || process::tcp_open(&address),
    )?;
    Ok(HostState {
        host: host.clone(),
        anchor: engines.anchor,
        sshd,
        engines,
    })
}

fn wait_until(
    what: &str,
    log: &Path,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), LabError> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(LabError::NotReady {
        what: what.to_string(),
        seconds: limit.as_secs(),
        log: log.to_path_buf(),
    })
}

/// Stops every recorded process and removes the namespaces; idempotent.
pub fn down(layout: &LabLayout, report: &mut dyn FnMut(&str)) -> Result<(), LabError> {
    if let Some(state) = LabState::load(layout) {
        for host in &state.hosts {
            report(&format!("host {}", host.host.name));
            stop_engine_set(&host.engines, &[host.sshd]);
        }
        if let Some(builder) = &state.builder {
            report("builder engine");
            stop_engine_set(builder, &[]);
        }
        let registries: Vec<u32> = state
            .registry
            .into_iter()
            .chain(state.registry_tls)
            .collect();
        if !registries.is_empty() {
            report("registry");
            terminate(&registries, Duration::from_secs(5));
        }
        for host in &state.hosts {
            process::remove_cgroups(&format!("plab-{}", host.host.name));
        }
        process::remove_cgroups("plab-builder");
        let _ = std::fs::remove_file(layout.state_file());
    }
    // Namespaces go last.
    network_down();
    report("the lab is down");
    Ok(())
}

fn stop_engine_set(engines: &EngineSet, others: &[u32]) {
    // dockerd first: it stops its containers through containerd.
    terminate(&[engines.dockerd], Duration::from_secs(15));
    let mut rest = others.to_vec();
    rest.push(engines.containerd);
    terminate(&rest, Duration::from_secs(5));
    // Whatever is left in the anchor's mount namespace (shims, ssh sessions)
    // can only be the lab's own.
    process::kill_namespace_members(engines.anchor);
    terminate(&[engines.anchor], Duration::from_secs(5));
}

/// One line per lab process, for `pipeline lab status`.
pub fn status(layout: &LabLayout) -> Vec<(String, String, bool)> {
    let Some(state) = LabState::load(layout) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    if let Some(registry) = state.registry {
        let answering = process::http_ok(&format!("{}/v2/", layout.registry_address()));
        lines.push((
            "registry".to_string(),
            layout.registry_address(),
            alive(registry) && answering,
        ));
    }
    if let Some(registry) = state.registry_tls {
        let address = layout.registry_tls_address();
        let answering = process::tcp_open(&address);
        lines.push((
            "registry-tls".to_string(),
            address,
            alive(registry) && answering,
        ));
    }
    if let Some(builder) = &state.builder {
        lines.push((
            "builder".to_string(),
            "dockerd, containerd".to_string(),
            alive(builder.dockerd) && alive(builder.containerd),
        ));
    }
    for host in &state.hosts {
        let up = [host.sshd, host.engines.containerd, host.engines.dockerd]
            .into_iter()
            .all(alive)
            && process::tcp_open(&format!("{}:22", host.host.address));
        lines.push((
            host.host.name.clone(),
            format!("{} {}", host.host.address, host.host.platform),
            up,
        ));
    }
    lines
}

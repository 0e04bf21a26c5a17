//! The lab's configuration files, written fresh on every `lab up`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{ContainerdRelease, LabError, LabHost, LabLayout, process::run_checked, write_file};

/// The registry's distribution config. With `tls` (certificate, key) it serves
/// HTTPS; a registry and its TLS twin share one storage folder, so an image
/// pushed to the plain-HTTP one can be pulled from the TLS one at once. With
/// `htpasswd` it wants a user and password (HTTP Basic).
pub fn registry_config(
    data: &Path,
    address: &str,
    tls: Option<(&Path, &Path)>,
    htpasswd: Option<&Path>,
) -> String {
    let mut text = format!(
        "version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {address}
  secret: pipeline-lab-local-only
",
        data.display()
    );
    if let Some((certificate, key)) = tls {
        let _ = write!(
            text,
            "  tls:\n    certificate: {}\n    key: {}\n",
            certificate.display(),
            key.display()
        );
    }
    if let Some(htpasswd) = htpasswd {
        let _ = write!(
            text,
            "auth:\n  htpasswd:\n    realm: pipeline-lab\n    path: {}\n",
            htpasswd.display()
        );
    }
    text
}

/// The authenticated registry's users, in its folder.
pub const HTPASSWD: &str = "htpasswd";

/// bcrypt's lowest cost.
const LAB_BCRYPT_COST: u32 = 4;

/// Makes a new random password for `user`: the registry's htpasswd (bcrypt,
/// as distribution requires) and a Docker config (`docker/config.json`) that
/// holds it for each of `addresses`, both readable by their owner only.
pub fn auth_registry_user(dir: &Path, user: &str, addresses: &[String]) -> Result<(), LabError> {
    let mut random = [0_u8; 24];
    let urandom = Path::new("/dev/urandom");
    std::io::Read::read_exact(
        &mut std::fs::File::open(urandom).map_err(|source| LabError::Write {
            path: urandom.to_path_buf(),
            source,
        })?,
        &mut random,
    )
    .map_err(|source| LabError::Write {
        path: urandom.to_path_buf(),
        source,
    })?;
    // URL-safe base64 has no `:`, which would end the user in `user:password`.
    let password =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, random);
    // The registry checks the hash on every request, and pulls are timed:
    // a low cost keeps that quick, and a random 192-bit password needs no
    // slow hash to resist guessing.
    let hash = bcrypt::hash(&password, LAB_BCRYPT_COST)
        .map_err(|error| LabError::Setup(format!("hashing the registry password: {error}")))?;
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{user}:{password}"),
    );
    let auths: serde_json::Map<String, serde_json::Value> = addresses
        .iter()
        .map(|address| (address.clone(), serde_json::json!({ "auth": auth })))
        .collect();
    let docker_config = serde_json::to_string_pretty(&serde_json::json!({ "auths": auths }))
        .map_err(|error| LabError::Setup(error.to_string()))?;
    write_private(&dir.join(HTPASSWD), &format!("{user}:{hash}\n"))?;
    write_private(&dir.join("docker/config.json"), &docker_config)
}

/// Writes a file only its owner may read, from its creation on.
fn write_private(path: &Path, text: &str) -> Result<(), LabError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let error = |source| LabError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    // A file left by an older lab may have wider permissions; start over.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error(e)),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(error)
}

/// Platforms the lab's containerd runs and unpacks: the three lab CPUs and wasm.
pub const CONTAINERD_PLATFORMS: [&str; 4] =
    ["linux/amd64", "linux/arm64", "linux/riscv64", "wasi/wasm"];

/// containerd keeps its data in the host's folder and its state in the
/// host's private /run; blobs are not shared between namespaces, so a fresh
/// pull in one namespace really transfers them.
///
/// The transfer service unpacks only the platforms listed in `unpack_config`.
/// Each entry names the walking differ: the plugin otherwise looks for a differ
/// registered for that platform, and the walking differ only advertises the
/// host's, so any other platform (arm64, riscv64, wasi/wasm) made the whole
/// transfer plugin fail to load. It just applies tar layers, whatever they hold.
///
/// 2.x reads the same settings as configuration version 3, where Kubernetes'
/// CRI is several plugins; none of them is wanted, so none runs beside the
/// measured containers.
pub fn containerd_config(host_dir: &Path, release: ContainerdRelease) -> String {
    let quoted: Vec<String> = CONTAINERD_PLATFORMS
        .iter()
        .map(|platform| format!("\"{platform}\""))
        .collect();
    let (version, release_plugins) = match release {
        ContainerdRelease::V1_7 => (2, ""),
        ContainerdRelease::V2 => (
            3,
            r#"  "io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.differ.v1.erofs",
  "io.containerd.nri.v1.nri",
"#,
        ),
    };
    let mut text = format!(
        r#"version = {version}
root = "{root}"
state = "/run/containerd"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
{release_plugins}  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "/run/containerd/containerd.sock"
[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{opt}"
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
  [plugins."io.containerd.metadata.v1.bolt"]
    content_sharing_policy = "isolated"
  [plugins."io.containerd.runtime.v2.task"]
    platforms = [{platforms}]
  [plugins."io.containerd.transfer.v1.local"]
    config_path = "{certs}"
    max_concurrent_downloads = 3
"#,
        root = host_dir.join("containerd/root").display(),
        opt = host_dir.join("containerd/opt").display(),
        certs = host_dir.join("containerd/certs.d").display(),
        platforms = quoted.join(", "),
    );
    for platform in CONTAINERD_PLATFORMS {
        let _ = write!(
            text,
            r#"    [[plugins."io.containerd.transfer.v1.local".unpack_config]]
      platform = "{platform}"
      snapshotter = "overlayfs"
      differ = "walking"
"#
        );
    }
    text
}

pub fn registry_hosts_toml(address: &str) -> String {
    format!(
        "server = \"http://{address}\"\n[host.\"http://{address}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n"
    )
}

/// dockerd on the host's containerd with the containerd image store; no
/// bridge and no iptables, so the machine's firewall is never touched.
pub fn docker_daemon_json(host_dir: &Path, name: &str, registries: &[String]) -> String {
    let value = serde_json::json!({
        "hosts": ["unix:///run/docker.sock"],
        "data-root": host_dir.join("docker/data"),
        "containerd": "/run/containerd/containerd.sock",
        "features": {"containerd-snapshotter": true, "buildkit": true},
        "insecure-registries": registries,
        "iptables": false,
        "ip6tables": false,
        "ip-forward": false,
        "ip-masq": false,
        "bridge": "none",
        "userland-proxy": false,
        "cgroup-parent": format!("/plab-{name}"),
        "exec-opts": ["native.cgroupdriver=cgroupfs"],
        "log-level": "info",
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

pub fn sshd_config(layout: &LabLayout, host: &str, path: &str) -> String {
    let dir = layout.host_dir(host);
    format!(
        "Port 22
ListenAddress 0.0.0.0
HostKey {host_key}
PidFile /run/sshd.pid
AuthorizedKeysFile {authorized}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
MaxStartups 64:30:128
MaxSessions 64
SetEnv PATH={path} PIPELINE_LAB_HOST={host}
Subsystem sftp internal-sftp
",
        host_key = dir.join("ssh/ssh_host_ed25519_key").display(),
        authorized = layout.ssh_dir().join("authorized_keys").display(),
    )
}

/// The lab key, one host key per host, and the `known_hosts` file that pins them.
pub fn ssh_keys(layout: &LabLayout, hosts: &[LabHost]) -> Result<(), LabError> {
    let ssh = layout.ssh_dir();
    let key = ssh.join("id_ed25519");
    if !key.exists() {
        std::fs::create_dir_all(&ssh).map_err(|source| LabError::Write {
            path: ssh.clone(),
            source,
        })?;
        generate_key(&key, "pipeline-lab")?;
    }
    let public =
        std::fs::read_to_string(key.with_extension("pub")).map_err(|source| LabError::Write {
            path: key.with_extension("pub"),
            source,
        })?;
    write_file(&ssh.join("authorized_keys"), &public)?;
    let mut known_hosts = String::new();
    for host in hosts {
        let host_key = layout.host_dir(&host.name).join("ssh/ssh_host_ed25519_key");
        if !host_key.exists() {
            if let Some(parent) = host_key.parent() {
                std::fs::create_dir_all(parent).map_err(|source| LabError::Write {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            generate_key(&host_key, &format!("plab-{}", host.name))?;
        }
        let public = std::fs::read_to_string(host_key.with_extension("pub")).map_err(|source| {
            LabError::Write {
                path: host_key.with_extension("pub"),
                source,
            }
        })?;
        let mut fields = public.split_whitespace();
        let (Some(kind), Some(body)) = (fields.next(), fields.next()) else {
            return Err(LabError::Setup(format!(
                "unreadable host key {}",
                host_key.display()
            )));
        };
        let _ = writeln!(known_hosts, "{} {kind} {body}", host.address);
    }
    write_file(&ssh.join("known_hosts"), &known_hosts)
}

/// The lab's certificate authority and the TLS registry's certificate, made
/// once with the openssl CLI and kept (like the SSH keys) across `down`/`up`.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// The machine's CA bundle plus the lab CA: the daemons' `SSL_CERT_FILE`.
    pub trust: PathBuf,
}

/// Where the machine keeps its CA bundle (Debian's ca-certificates).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn tls_files(dir: &Path, registry_ip: &str) -> Result<TlsFiles, LabError> {
    let files = TlsFiles {
        ca: dir.join("ca.crt"),
        certificate: dir.join("registry.crt"),
        key: dir.join("registry.key"),
        trust: dir.join("trust.pem"),
    };
    let ca_key = dir.join("ca.key");
    let path = |p: &Path| p.to_string_lossy().into_owned();
    if !(files.ca.exists() && ca_key.exists() && files.certificate.exists() && files.key.exists()) {
        std::fs::create_dir_all(dir).map_err(|source| LabError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let request = dir.join("registry.csr");
        let extensions = dir.join("registry.ext");
        write_file(
            &extensions,
            &format!(
                "subjectAltName=IP:{registry_ip}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )?;
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut ca_args = vec!["req", "-x509", "-nodes", "-days", "3650"];
        ca_args.extend(curve);
        let (ca_key_text, ca_text) = (path(&ca_key), path(&files.ca));
        ca_args.extend([
            "-subj",
            "/CN=pipeline lab CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &ca_key_text,
            "-out",
            &ca_text,
        ]);
        run_checked("openssl", &ca_args)?;
        let (key_text, request_text) = (path(&files.key), path(&request));
        let subject = format!("/CN={registry_ip}");
        let mut request_args = vec!["req", "-nodes"];
        request_args.extend(curve);
        request_args.extend([
            "-subj",
            &subject,
            "-keyout",
            &key_text,
            "-out",
            &request_text,
        ]);
        run_checked("openssl", &request_args)?;
        let serial = path(&dir.join("ca.srl"));
        run_checked(
            "openssl",
            &[
                "x509",
                "-req",
                "-days",
                "825",
                "-in",
                &request_text,
                "-CA",
                &ca_text,
                "-CAkey",
                &ca_key_text,
                "-CAserial",
                &serial,
                "-CAcreateserial",
                "-extfile",
                &path(&extensions),
                "-out",
                &path(&files.certificate),
            ],
        )?;
    }
    // Rewritten on every `up`, so an updated system bundle is picked up.
    let mut trust = std::fs::read_to_string(SYSTEM_CA_BUNDLE).unwrap_or_default();
    let ca = std::fs::read_to_string(&files.ca).map_err(|source| LabError::Write {
        path: files.ca.clone(),
        source,
    })?;
    if !trust.is_empty() && !trust.ends_with('\n') {
        trust.push('\n');
    }
    trust.push_str(&ca);
    write_file(&files.trust, &trust)?;
    Ok(files)
}

/// A new ed25519 key pair at `path` (and `path.pub`), without a passphrase.
fn generate_key(path: &Path, comment: &str) -> Result<(), LabError> {
    run_checked(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            comment,
            "-f",
            &path.to_string_lossy(),
        ],
    )?;
    Ok(())
}

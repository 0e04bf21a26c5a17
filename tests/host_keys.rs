//! Host keys against a real sshd this test starts on a loopback port, with
//! throwaway keys: strict checking (the default) refuses an unknown key,
//! naming the host and the known_hosts file; `accept-new` records it; a
//! changed key is refused either way. No lab is needed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pipeline::backend::ssh::{HostKeyProblem, Transport, TransportError};
use pipeline::inventory::HostSettings;
use serde_json::{Value, json};

const HOST: &str = "keyed-host";

fn keygen(path: &Path) {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "throwaway", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// sshd on 127.0.0.1:`port` with `host_key`, killed when dropped. It runs in
/// a mount namespace with a /run of its own, where its privilege separation
/// folder goes, so nothing of the machine's changes.
struct Sshd(Child);

impl Sshd {
    fn start(dir: &Path, port: u16, host_key: &Path) -> Sshd {
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n",
                host_key.display(),
                dir.join("authorized_keys").display()
            ),
        )
        .expect("sshd_config");
        let script = format!(
            "mount -t tmpfs -o mode=0755 test-run /run && mkdir -p /run/sshd && \
             exec /usr/sbin/sshd -D -e -f '{}'",
            config.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        let mut sshd = Sshd(child);
        let started = Instant::now();
        loop {
            use std::io::Read;
            let banner = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                let mut bytes = [0_u8; 8];
                s.read_exact(&mut bytes).map(|()| bytes)
            });
            if banner.is_ok_and(|bytes| bytes.starts_with(b"SSH-2.0-")) {
                return sshd;
            }
            assert!(
                matches!(sshd.0.try_wait(), Ok(None)),
                "sshd exited (run as root, with openssh-server installed)"
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not answer"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    port: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temporary folder");
        for key in ["client", "host_a", "host_b"] {
            keygen(&dir.path().join(key));
        }
        std::fs::copy(
            dir.path().join("client.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        std::fs::write(dir.path().join("known_hosts"), "").expect("known_hosts");
        Setup {
            dir,
            port: free_port(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn host(&self, checking: Option<&str>) -> HostSettings {
        let mut vars = json!({
            "pipeline_platform": "linux/amd64",
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": "client",
            "pipeline_known_hosts": "known_hosts",
        });
        if let (Some(checking), Value::Object(map)) = (checking, &mut vars) {
            map.insert("pipeline_host_key_checking".into(), json!(checking));
        }
        let Value::Object(vars) = vars else {
            unreachable!("an object")
        };
        HostSettings::from_vars(HOST, &vars).expect("host settings")
    }

    /// Connects, and on success runs a command, so the connection is real.
    fn connect(&self, checking: Option<&str>) -> Result<(), TransportError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let control = self.path("control");
            let transport =
                Transport::connect(&self.host(checking), self.dir.path(), &control).await?;
            let output = transport.run("echo", &["reached"], b"").await?;
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "reached");
            Ok(())
        })
    }

    fn known_hosts(&self) -> String {
        std::fs::read_to_string(self.path("known_hosts")).expect("known_hosts")
    }
}

#[test]
fn strict_by_default_accept_new_on_request_and_a_changed_key_always_refused() {
    let setup = Setup::new();
    let known_hosts = setup.path("known_hosts");
    let sshd = Sshd::start(setup.dir.path(), setup.port, &setup.path("host_a"));

    let error = setup.connect(None).expect_err("an unknown key is refused");
    let message = error.to_string();
    eprintln!("unknown key, strict: {message}");
    assert!(
        matches!(
            &error,
            TransportError::HostKey { host, problem: HostKeyProblem::Unknown { .. } } if host == HOST
        ),
        "{error:?}"
    );
    assert!(
        message.contains(HOST) && message.contains(&known_hosts.display().to_string()),
        "the message names the host and the known_hosts file: {message}"
    );
    assert!(
        message.contains("pipeline_host_key_checking: accept-new"),
        "{message}"
    );
    assert_eq!(setup.known_hosts(), "", "strict checking records nothing");

    // Explicitly strict is the same as the default.
    assert!(matches!(
        setup.connect(Some("strict")),
        Err(TransportError::HostKey { .. })
    ));

    setup
        .connect(Some("accept-new"))
        .unwrap_or_else(|error| panic!("accept-new trusts a new key: {error}"));
    let recorded = setup.known_hosts();
    let host_a = std::fs::read_to_string(setup.path("host_a.pub")).expect("host key");
    let key_body = host_a.split_whitespace().nth(1).expect("key body");
    // Debian's ssh hashes host names in known_hosts; ssh-keygen -F finds them.
    let found = Command::new("ssh-keygen")
        .args(["-F", &format!("[127.0.0.1]:{}", setup.port), "-f"])
        .arg(&known_hosts)
        .output()
        .expect("ssh-keygen -F runs");
    assert!(
        found.status.success() && recorded.contains(key_body),
        "accept-new recorded the key for the host's address and port: {recorded:?}"
    );
    setup
        .connect(None)
        .unwrap_or_else(|error| panic!("once recorded, strict checking passes: {error}"));

    // The same address and port, another host key.
    drop(sshd);
    let _sshd = Sshd::start(setup.dir.path(), setup.port, &setup.path("host_b"));
    for checking in [None, Some("accept-new")] {
        let error = setup
            .connect(checking)
            .expect_err("a changed key is refused");
        let message = error.to_string();
        eprintln!("changed key, {checking:?}: {message}");
        assert!(
            matches!(
                &error,
                TransportError::HostKey {
                    problem: HostKeyProblem::Changed { .. },
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            message.contains(HOST) && message.contains(&known_hosts.display().to_string()),
            "{message}"
        );
    }
    assert_eq!(
        setup.known_hosts(),
        recorded,
        "a changed key is not recorded"
    );
}

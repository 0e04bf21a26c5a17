//! Is a lab component serving? A live PID is not enough (a stopped daemon
//! is alive, and a port may be answered by someone else's process), so each
//! probe asks the component a question and wants an answer within a bound.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// How long one answer may take.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(2);

/// How a component proves it serves.
#[derive(Debug, Clone)]
pub enum Probe {
    /// An HTTP registry: `GET /v2/` answers 200.
    Registry { address: String },
    /// An HTTP registry that wants credentials: `GET /v2/` without them
    /// answers 401 with a Basic challenge.
    AuthRegistry { address: String },
    /// An HTTPS registry. A plain HTTP request gets Go's TLS server's own
    /// answer (400, "client sent an HTTP request to an HTTPS server"): proof
    /// that the server reads and answers, without a TLS client here.
    TlsRegistry { address: String },
    /// dockerd: `GET /_ping` over its socket answers `OK`.
    Docker { socket: String },
    /// containerd: the version service answers over gRPC.
    Containerd { socket: String },
    /// sshd: the banner `SSH-2.0-...`.
    Ssh { address: String },
}

impl Probe {
    /// `Err` says what was asked and what came back.
    pub fn ask(&self) -> Result<(), String> {
        match self {
            Probe::Registry { address } => {
                let answer = http_exchange(address, "GET /v2/ HTTP/1.0\r\n\r\n")?;
                expect_status(&answer, "200", "GET /v2/")
            }
            Probe::AuthRegistry { address } => {
                let answer = http_exchange(address, "GET /v2/ HTTP/1.0\r\n\r\n")?;
                expect_status(&answer, "401", "GET /v2/ without credentials")?;
                let challenged = answer
                    .lines()
                    .take_while(|line| !line.is_empty())
                    .any(|line| {
                        let line = line.to_ascii_lowercase();
                        line.starts_with("www-authenticate:") && line.contains("basic")
                    });
                if challenged {
                    Ok(())
                } else {
                    Err(format!(
                        "GET /v2/ on {address} answered 401 without a Basic challenge"
                    ))
                }
            }
            Probe::TlsRegistry { address } => {
                let answer = http_exchange(address, "GET /v2/ HTTP/1.0\r\n\r\n")?;
                expect_status(&answer, "400", "a plain HTTP request to the TLS port")
            }
            Probe::Docker { socket } => {
                let mut stream = std::os::unix::net::UnixStream::connect(socket)
                    .map_err(|error| format!("connecting to {socket}: {error}"))?;
                let _ = stream.set_read_timeout(Some(ANSWER_LIMIT));
                let _ = stream.set_write_timeout(Some(ANSWER_LIMIT));
                let answer = exchange(&mut stream, "GET /_ping HTTP/1.0\r\n\r\n")
                    .map_err(|error| format!("GET /_ping on {socket}: {error}"))?;
                if answer.ends_with("OK") {
                    Ok(())
                } else {
                    Err(format!(
                        "GET /_ping on {socket} answered {:?}",
                        first_line(&answer)
                    ))
                }
            }
            Probe::Containerd { socket } => containerd_version(Path::new(socket)),
            Probe::Ssh { address } => {
                let mut stream = connect_tcp(address)?;
                let mut banner = [0_u8; 64];
                let read = stream
                    .read(&mut banner)
                    .map_err(|error| format!("reading the banner of {address}: {error}"))?;
                let banner = String::from_utf8_lossy(&banner[..read]);
                if banner.starts_with("SSH-2.0-") {
                    Ok(())
                } else {
                    Err(format!(
                        "{address} sent {:?}, not an SSH banner",
                        first_line(&banner)
                    ))
                }
            }
        }
    }

    /// The TCP port the component's own process must be listening on.
    pub fn tcp_port(&self) -> Option<u16> {
        match self {
            Probe::Registry { address }
            | Probe::AuthRegistry { address }
            | Probe::TlsRegistry { address }
            | Probe::Ssh { address } => address
                .parse::<SocketAddr>()
                .ok()
                .map(|socket| socket.port()),
            Probe::Docker { .. } | Probe::Containerd { .. } => None,
        }
    }
}

fn connect_tcp(address: &str) -> Result<TcpStream, String> {
    let socket: SocketAddr = address
        .parse()
        .map_err(|error| format!("bad address {address}: {error}"))?;
    let stream = TcpStream::connect_timeout(&socket, ANSWER_LIMIT)
        .map_err(|error| format!("connecting to {address}: {error}"))?;
    let _ = stream.set_read_timeout(Some(ANSWER_LIMIT));
    let _ = stream.set_write_timeout(Some(ANSWER_LIMIT));
    Ok(stream)
}

fn http_exchange(address: &str, request: &str) -> Result<String, String> {
    let mut stream = connect_tcp(address)?;
    exchange(&mut stream, request).map_err(|error| format!("asking {address}: {error}"))
}

/// Writes the request and reads the answer to its end (HTTP/1.0 closes),
/// keeping at most 64 KiB; a silent peer is an error once the read times out.
fn exchange(stream: &mut (impl Read + Write), request: &str) -> std::io::Result<String> {
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                answer.extend_from_slice(&buffer[..read]);
                if answer.len() > 64 * 1024 {
                    break;
                }
            }
            // The answer so far counts only if there is one.
            Err(error) if answer.is_empty() => {
                return Err(std::io::Error::new(
                    error.kind(),
                    format!("no answer within {} s ({error})", ANSWER_LIMIT.as_secs()),
                ));
            }
            Err(_) => break,
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn expect_status(answer: &str, status: &str, asked: &str) -> Result<(), String> {
    let line = first_line(answer);
    let mut words = line.split_whitespace();
    let is_http = words.next().is_some_and(|word| word.starts_with("HTTP/1."));
    if is_http && words.next() == Some(status) {
        Ok(())
    } else {
        Err(format!("{asked} answered {line:?}, not {status}"))
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn containerd_version(socket: &Path) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("failed to start the async runtime: {error}"))?;
    runtime.block_on(async {
        // `connect` asks for the version: a socket alone is not a containerd.
        let connect = crate::backend::containerd::ContainerdEngine::connect(socket, "default");
        match tokio::time::timeout(ANSWER_LIMIT, connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "containerd on {} gave no version within {} s",
                socket.display(),
                ANSWER_LIMIT.as_secs()
            )),
        }
    })
}

/// Whether process `pid` itself holds a socket listening on TCP `port`, so
/// an answer on the port is its answer and not another program's.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let own: HashSet<u64> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            target
                .to_str()
                .and_then(|text| text.strip_prefix("socket:["))
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inode| inode.parse().ok())
        })
        .collect();
    ["tcp", "tcp6"].iter().any(|table| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .is_ok_and(|text| listening_inodes(&text, port).any(|inode| own.contains(&inode)))
    })
}

/// Inodes of the sockets in a `/proc/net/tcp` table listening on `port`.
fn listening_inodes(table: &str, port: u16) -> impl Iterator<Item = u64> + '_ {
    const LISTEN: &str = "0A";
    table.lines().skip(1).filter_map(move |line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = fields.get(1)?.rsplit_once(':')?.1;
        let listening = fields.get(3) == Some(&LISTEN);
        (listening && u16::from_str_radix(local_port, 16).ok()? == port)
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

/// The last `lines` lines of a log (from its last 16 KiB), for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 16 * 1024;
    let Ok(mut file) = fs_err::File::open(path) else {
        return format!("({} cannot be read)", path.display());
    };
    let length = file.metadata().map_or(0, |meta| meta.len());
    let start = length.saturating_sub(WINDOW);
    let mut bytes = Vec::new();
    if std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start)).is_err()
        || file.read_to_end(&mut bytes).is_err()
    {
        return format!("({} cannot be read)", path.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    if tail.is_empty() {
        format!("({} is empty)", path.display())
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    #[test]
    fn listening_sockets_are_found_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 014DCB0A:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1388 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening_inodes(table, 5000).collect::<Vec<_>>(), [31337]);
        assert_eq!(listening_inodes(table, 22).collect::<Vec<_>>(), [777]);
        assert_eq!(listening_inodes(table, 80).count(), 0);
    }

    #[test]
    fn statuses_are_read_from_the_first_line_only() {
        assert!(expect_status("HTTP/1.1 200 OK\r\n\r\n{}", "200", "GET").is_ok());
        assert!(expect_status("HTTP/1.0 400 Bad Request\r\n", "400", "GET").is_ok());
        let error = expect_status("HTTP/1.1 404 Not Found\r\n\r\n200", "200", "GET /v2/")
            .expect_err("404 is not 200");
        assert_eq!(
            error,
            "GET /v2/ answered \"HTTP/1.1 404 Not Found\", not 200"
        );
        assert!(expect_status("", "200", "GET").is_err());
    }

    #[test]
    fn a_log_tail_is_its_last_lines() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let log = dir.path().join("daemon.log");
        let text = (1..=100).fold(String::new(), |mut text, n| {
            let _ = writeln!(text, "line {n}");
            text
        });
        fs_err::write(&log, text).expect("write");
        assert_eq!(log_tail(&log, 3), "line 98\nline 99\nline 100");
        fs_err::write(&log, "").expect("write");
        assert!(log_tail(&log, 3).contains("is empty"));
        assert!(log_tail(&dir.path().join("missing.log"), 3).contains("cannot be read"));
    }

    /// A listener that accepts and then never answers, as a SIGSTOPped
    /// daemon does (the kernel completes the handshake for it), fails the
    /// probe within the bound instead of passing or hanging.
    #[test]
    fn a_silent_listener_is_not_serving() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let started = std::time::Instant::now();
        let error = Probe::Registry {
            address: address.clone(),
        }
        .ask()
        .expect_err("no answer");
        assert!(error.contains("no answer"), "{error}");
        assert!(started.elapsed() < ANSWER_LIMIT * 2);
        assert!(Probe::Ssh { address }.ask().is_err());
        assert!(listens_on(
            std::process::id(),
            listener.local_addr().expect("address").port()
        ));
        assert!(!listens_on(std::process::id(), 1));
    }

    /// A child process killed when the test ends, pass or fail.
    struct Child(std::process::Child);

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn send(child: &Child, signal: rustix::process::Signal) {
        let pid = i32::try_from(child.0.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("a process id");
        rustix::process::kill_process(pid, signal).expect("signal the registry");
    }

    const REGISTRY: &str = "/usr/bin/docker-registry";

    /// The lab's registry program with `config`, stopped when dropped.
    fn serve_registry(config: &Path) -> Child {
        assert!(
            Path::new(REGISTRY).exists(),
            "{REGISTRY} is missing: run scripts/install-deps first"
        );
        Child(
            std::process::Command::new(REGISTRY)
                .arg("serve")
                .arg(config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start the registry"),
        )
    }

    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    }

    fn until_ready(probe: &Probe) -> Result<(), String> {
        let started = std::time::Instant::now();
        loop {
            match probe.ask() {
                Err(why) if started.elapsed() < Duration::from_secs(10) => {
                    let _ = why;
                    std::thread::sleep(Duration::from_millis(50));
                }
                done => return done,
            }
        }
    }

    /// The lab's own registry program, over HTTP and over TLS: serving, then
    /// stopped with SIGSTOP (alive, port open, silent: not serving), then
    /// continued (serving again).
    #[test]
    fn a_stopped_registry_is_not_serving_and_a_continued_one_is() {
        use rustix::process::Signal;
        let dir = tempfile::tempdir().expect("temporary folder");
        let (key, certificate) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let made = std::process::Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "1", "-newkey", "ec"])
            .args([
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate)
            .output()
            .expect("openssl runs");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        for tls in [false, true] {
            let address = format!("127.0.0.1:{}", free_port());
            let files = tls.then_some((certificate.as_path(), key.as_path()));
            let config = dir.path().join(format!("registry-{tls}.yml"));
            fs_err::write(
                &config,
                super::super::config::registry_config(
                    &dir.path().join("data"),
                    &address,
                    files,
                    None,
                ),
            )
            .expect("write the config");
            let registry = serve_registry(&config);
            let probe = if tls {
                Probe::TlsRegistry { address }
            } else {
                Probe::Registry { address }
            };
            until_ready(&probe).unwrap_or_else(|why| panic!("{probe:?} never served: {why}"));
            let port = probe.tcp_port().expect("a TCP port");
            assert!(listens_on(registry.0.id(), port));
            assert!(
                !listens_on(std::process::id(), port),
                "not this process's port"
            );

            send(&registry, Signal::STOP);
            wait_until_stopped(registry.0.id());
            let started = std::time::Instant::now();
            let why = probe.ask().expect_err("a stopped registry does not answer");
            assert!(why.contains("no answer"), "{why}");
            assert!(started.elapsed() < ANSWER_LIMIT * 2);
            send(&registry, Signal::CONT);
            probe
                .ask()
                .unwrap_or_else(|why| panic!("continued, it serves again: {why}"));
        }
    }

    /// The lab's registry with credentials, from the files `lab up` writes:
    /// the probe sees its Basic challenge (the open registry's probe does
    /// not pass), and the user and password of the Docker config it wrote
    /// are the ones the htpasswd file admits.
    #[tokio::test]
    async fn the_registry_with_credentials_admits_the_user_it_was_made_with() {
        use crate::backend::credentials::CredentialLookup;
        use crate::backend::registry::{ImageRef, RegistryClient, RegistryError};
        let dir = tempfile::tempdir().expect("temporary folder");
        let address = format!("127.0.0.1:{}", free_port());
        super::super::config::auth_registry_user(
            dir.path(),
            "lab-user",
            std::slice::from_ref(&address),
        )
        .expect("user files");
        let config = dir.path().join("registry-auth.yml");
        fs_err::write(
            &config,
            super::super::config::registry_config(
                &dir.path().join("data"),
                &address,
                None,
                Some(&dir.path().join(super::super::config::HTPASSWD)),
            ),
        )
        .expect("write the config");
        let _registry = serve_registry(&config);
        let probe = Probe::AuthRegistry {
            address: address.clone(),
        };
        until_ready(&probe).unwrap_or_else(|why| panic!("{probe:?} never served: {why}"));
        let open = Probe::Registry {
            address: address.clone(),
        };
        assert!(open.ask().is_err(), "it wants credentials");

        let lookup = CredentialLookup {
            docker_config: Some(dir.path().join("docker/config.json")),
            ..CredentialLookup::default()
        };
        let credentials = lookup.resolve(&address).expect("readable").expect("found");
        assert_eq!(credentials.username, "lab-user");
        let image = ImageRef::parse(&format!("{address}/none/such:tag")).expect("reference");
        // Admitted: the registry says the image is not there.
        let error = RegistryClient::with_credentials(Some(credentials))
            .manifest(&image)
            .await
            .expect_err("no such image");
        assert!(
            matches!(&error, RegistryError::Request { message, .. } if message.contains("404")),
            "{error}"
        );
        for file in ["htpasswd", "docker/config.json"] {
            let mode = fs_err::metadata(dir.path().join(file))
                .expect("written")
                .permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077,
                0,
                "{file} is its owner's only"
            );
        }
    }

    fn wait_until_stopped(pid: u32) {
        // The stop lands when the kernel next schedules the process.
        let stat = format!("/proc/{pid}/stat");
        while !fs_err::read_to_string(&stat).is_ok_and(|text| {
            text.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T'))
        }) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// containerd as the lab runs it (the prefix's, else the machine's),
    /// on a socket in a temporary folder: its version answers; stopped, the
    /// probe gives up within the bound; continued, it answers again.
    #[test]
    fn a_stopped_containerd_is_not_serving_and_a_continued_one_is() {
        use rustix::process::Signal;
        let prefix = std::env::var_os("PIPELINE_DEPS")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|home| std::path::PathBuf::from(home).join(".cache/pipeline/deps"))
            });
        let program = prefix
            .map(|prefix| prefix.join("bin/containerd"))
            .filter(|path| path.exists())
            .unwrap_or_else(|| "containerd".into());
        let dir = tempfile::tempdir().expect("temporary folder");
        let socket = dir.path().join("c.sock");
        let config = dir.path().join("config.toml");
        fs_err::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{socket}\"\n[ttrpc]\n  address = \"{socket}.ttrpc\"\n",
                root = dir.path().join("root").display(),
                state = dir.path().join("state").display(),
                socket = socket.display(),
            ),
        )
        .expect("write the config");
        let containerd = Child(
            std::process::Command::new(&program)
                .arg("--config")
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|error| {
                    panic!(
                        "{} does not start (scripts/install-deps): {error}",
                        program.display()
                    )
                }),
        );
        let probe = Probe::Containerd {
            socket: socket.display().to_string(),
        };
        until_ready(&probe).unwrap_or_else(|why| panic!("containerd never served: {why}"));

        send(&containerd, Signal::STOP);
        wait_until_stopped(containerd.0.id());
        let started = std::time::Instant::now();
        let why = probe
            .ask()
            .expect_err("a stopped containerd does not answer");
        assert!(why.contains("no version within"), "{why}");
        assert!(started.elapsed() < ANSWER_LIMIT * 2);
        send(&containerd, Signal::CONT);
        probe
            .ask()
            .unwrap_or_else(|why| panic!("continued, it serves again: {why}"));
    }

    /// dockerd's `_ping` and sshd's banner, from stand-ins that answer as
    /// they do, and from ones that accept and stay silent.
    #[test]
    fn docker_ping_and_ssh_banner_want_their_answers() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let socket = dir.path().join("docker.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let answering = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = [0_u8; 64];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nApi-Version: 1.45\r\n\r\nOK");
            // Then a second connection that is never answered.
            let silent = listener.accept().expect("accept");
            std::thread::sleep(ANSWER_LIMIT + Duration::from_millis(500));
            drop(silent);
        });
        let docker = Probe::Docker {
            socket: socket.display().to_string(),
        };
        assert_eq!(docker.ask(), Ok(()));
        let why = docker.ask().expect_err("silent");
        assert!(why.contains("no answer"), "{why}");
        answering.join().expect("stand-in");

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = tcp.local_addr().expect("address").to_string();
        let greeting = std::thread::spawn(move || {
            for banner in [
                &b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n"[..],
                b"HTTP/1.1 400\r\n",
            ] {
                let (mut stream, _) = tcp.accept().expect("accept");
                let _ = stream.write_all(banner);
            }
        });
        let ssh = Probe::Ssh { address };
        assert_eq!(ssh.ask(), Ok(()));
        let why = ssh.ask().expect_err("not ssh");
        assert!(why.contains("not an SSH banner"), "{why}");
        greeting.join().expect("stand-in");
    }
}

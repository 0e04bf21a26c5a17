//! The registry client against registries that want credentials, without the
//! lab: distribution's own registry with htpasswd auth on a free local port
//! (HTTP Basic), and a small token service in this process (the Docker
//! token flow, as Docker Hub-style registries answer).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipeline::backend::credentials::{RegistryCredentials, Secret};
use pipeline::backend::oci::{ImageFile, push_image};
use pipeline::backend::registry::{
    ImageRef, IndexEntry, OCI_MANIFEST, RegistryClient, RegistryError,
};

const REGISTRY: &str = "/usr/bin/docker-registry";
const USER: &str = "alice";
const PASSWORD: &str = "correct-horse-battery-staple";
const WRONG: &str = "wrong-password-do-not-print";

/// The registry process, stopped when the test ends however it ends.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// distribution with one htpasswd user, on a port of its own; its `host:port`.
fn registry_with_htpasswd(dir: &Path) -> (Served, String) {
    assert!(
        Path::new(REGISTRY).exists(),
        "{REGISTRY} is missing: run scripts/install-deps first"
    );
    let address = format!("127.0.0.1:{}", free_port());
    let htpasswd = dir.join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    fs_err::write(&htpasswd, format!("{USER}:{hash}\n")).expect("htpasswd");
    let config = dir.join("config.yml");
    fs_err::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {address}\nauth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            dir.join("data").display(),
            htpasswd.display()
        ),
    )
    .expect("config");
    let served = Served(
        Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the registry"),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the registry never listened on {address}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (served, address)
}

fn client(password: &str) -> RegistryClient {
    RegistryClient::with_credentials(Some(RegistryCredentials {
        username: USER.into(),
        password: Secret::new(password),
    }))
}

async fn push(client: &RegistryClient, image: &ImageRef) -> Result<String, RegistryError> {
    let files = [ImageFile {
        path: "/hello.txt".into(),
        contents: b"hello\n".to_vec(),
        mode: 0o644,
    }];
    push_image(client, image, "linux", "amd64", &files, &["/hello.txt"])
        .await
        .map(|pushed| pushed.digest)
}

/// The error says which registry refused, and never the password.
fn assert_refusal(error: &RegistryError, registry: &str, wanted: &str) {
    let shown = format!("{error} {error:?}");
    assert!(
        matches!(error, RegistryError::Unauthorized { .. }),
        "{shown}"
    );
    assert!(!error.is_retryable(), "{shown}");
    assert!(shown.contains(registry), "{shown}");
    assert!(shown.contains(wanted), "{shown}");
    for secret in [PASSWORD, WRONG] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[tokio::test]
async fn htpasswd_registry_takes_the_right_credentials_only() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let (_registry, address) = registry_with_htpasswd(dir.path());
    let image = ImageRef::parse(&format!("{address}/creds/hello:amd64")).expect("reference");

    let right = client(PASSWORD);
    let digest = push(&right, &image).await.expect("push with credentials");
    let manifest = right.manifest(&image).await.expect("read back");
    assert_eq!(manifest.digest, digest);
    let index = ImageRef::parse(&format!("{address}/creds/hello:all")).expect("reference");
    let entry = IndexEntry {
        digest: digest.clone(),
        size: manifest.bytes.len() as u64,
        media_type: OCI_MANIFEST.into(),
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    right.put_index(&index, &[entry]).await.expect("index");
    let authorization = right
        .pull_authorization(&image)
        .await
        .expect("authorization")
        .expect("a header for the engines");
    assert!(authorization.expose().starts_with("Basic "));
    assert_eq!(format!("{authorization:?}"), "<redacted>");

    let wrong = client(WRONG);
    let error = wrong.manifest(&image).await.expect_err("wrong password");
    assert_refusal(&error, &address, "refused the credentials of user `alice`");
    let error = push(&wrong, &image).await.expect_err("wrong password");
    assert_refusal(&error, &address, "refused the credentials");

    let anonymous = RegistryClient::new();
    let error = anonymous
        .manifest(&image)
        .await
        .expect_err("no credentials");
    assert_refusal(&error, &address, "PIPELINE_REGISTRY_USERNAME");
    assert!(
        error.to_string().contains("requires credentials"),
        "{error}"
    );
    assert!(
        anonymous
            .pull_authorization(&image)
            .await
            .expect("nothing to ask")
            .is_none()
    );
}

/// Answers the token flow: the registry path wants `Bearer <token>`, the
/// token path hands it out for the right Basic credentials. Serves until
/// the test's runtime ends.
fn token_registry() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let realm = format!("http://{address}/token");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut authorization = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    authorization = value.trim().to_string();
                }
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or_default();
            let basic = RegistryCredentials {
                username: USER.into(),
                password: Secret::new(PASSWORD),
            }
            .basic_authorization();
            let (status, headers, body) = if path.starts_with("/token?") {
                let asked_scope = path.contains("scope=repository%3Atok%2Fhello%3Apull");
                if authorization == basic.expose() && asked_scope {
                    (
                        "200 OK",
                        String::new(),
                        r#"{"token":"tok-123"}"#.to_string(),
                    )
                } else {
                    ("401 Unauthorized", String::new(), "{}".to_string())
                }
            } else if authorization == "Bearer tok-123" {
                (
                    "200 OK",
                    format!("Content-Type: {OCI_MANIFEST}\r\n"),
                    r#"{"schemaVersion":2,"config":{"size":1},"layers":[]}"#.to_string(),
                )
            } else {
                (
                    "401 Unauthorized",
                    format!(
                        "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\",scope=\"repository:tok/hello:pull\"\r\n"
                    ),
                    "{}".to_string(),
                )
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

#[tokio::test]
async fn token_registries_get_a_bearer_token_for_the_user() {
    let address = token_registry();
    let image = ImageRef::parse(&format!("{address}/tok/hello:1")).expect("reference");
    let right = client(PASSWORD);
    let manifest = right
        .manifest(&image)
        .await
        .expect("manifest through a token");
    assert_eq!(manifest.compressed_size(), 1);
    let header = right
        .pull_authorization(&image)
        .await
        .expect("authorization")
        .expect("a token");
    assert_eq!(header.expose(), "Bearer tok-123");

    let wrong = client(WRONG);
    let error = wrong.manifest(&image).await.expect_err("wrong password");
    assert_refusal(&error, &address, "refused the credentials of user `alice`");
    let anonymous = RegistryClient::new();
    let error = anonymous
        .manifest(&image)
        .await
        .expect_err("no credentials");
    assert_refusal(&error, &address, "requires credentials (token auth)");
}

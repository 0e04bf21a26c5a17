//! The shared local lab for tests that need real hosts, and tiny test images.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pipeline::backend::oci::{ImageFile, push_image};
use pipeline::backend::registry::{ImageRef, IndexEntry, OCI_MANIFEST, RegistryClient};
use pipeline::lab::{LabLayout, LabState};

pub fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `pipeline lab up` as the tests run it: the riscv64 host on containerd 1.7
/// and the others on the default 2.x, so every lab test exercises both releases.
pub const LAB_UP: [&str; 4] = ["lab", "up", "--containerd", "lab-riscv64=1.7"];

/// Brings the lab up once per test binary (idempotent across binaries too).
/// A failure is kept, so every test that needs the lab reports the first
/// error rather than whatever a retry on a half-made lab says.
pub fn lab() -> &'static LabState {
    static STATE: OnceLock<Result<LabState, String>> = OnceLock::new();
    let state = STATE.get_or_init(|| {
        let output = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(LAB_UP)
            .current_dir(repository())
            .output()
            .map_err(|error| format!("pipeline lab up does not run: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "pipeline lab up failed (run scripts/install-deps first):\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        LabState::load(&layout()).ok_or_else(|| "the lab recorded no state".to_string())
    });
    match state {
        Ok(state) => state,
        Err(message) => panic!("{message}"),
    }
}

pub fn layout() -> LabLayout {
    LabLayout::new(repository().join(".lab"), PathBuf::new())
}

/// A lab host's Docker socket, reached through its namespace from here.
pub fn docker_socket(host: &str) -> String {
    format!("{}/run/docker.sock", host_root(host))
}

/// A lab host's private root, seen through its anchor process.
fn host_root(name: &str) -> String {
    let host = lab()
        .hosts
        .iter()
        .find(|h| h.host.name == name)
        .expect("lab host");
    format!("/proc/{}/root", host.anchor.pid)
}

/// The lab registry's `host:port`, as the runner reaches it.
pub fn registry_address() -> String {
    format!(
        "{}.1:{}",
        pipeline::lab::SUBNET,
        pipeline::lab::REGISTRY_PORT
    )
}

/// A lab host's containerd socket, reached through its namespace from here.
pub fn containerd_socket(host: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/run/containerd/containerd.sock",
        host_root(host)
    ))
}

/// Makes the image fresh and pulls it: every blob is transferred, and a
/// second pull transfers nothing. Returns the fresh pull.
pub async fn fresh_pull(
    engine: &impl pipeline::backend::Engine,
    image: &str,
    platform: &str,
) -> pipeline::backend::PullReport {
    engine.make_fresh(image, platform).await.unwrap();
    assert!(!engine.has_image(image).await.unwrap());
    let pull = engine.pull(image, platform).await.unwrap();
    assert!(
        pull.bytes_transferred > 0,
        "a fresh pull transfers blobs: {pull:?}"
    );
    assert!(engine.has_image(image).await.unwrap());
    let again = engine.pull(image, platform).await.unwrap();
    assert_eq!(again.bytes_transferred, 0, "{again:?}");
    pull
}

/// The wasmtime shim `pipeline lab up` puts on the hosts' PATH. Tests that run
/// wasm need it, and fail (not skip) when it was not built.
pub fn require_shim() {
    // `lab up` installs it; a test that asks first on a fresh machine must
    // not find it missing only because no other test brought the lab up.
    lab();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repository().join("target"), PathBuf::from);
    let built = target.join("release/containerd-shim-wasmtime-v1");
    assert!(
        built.is_file(),
        "{} is missing: build the wasmtime shim first with \
         `cargo build --release --locked -p containerd-shim-wasmtime` (scripts/test does)",
        built.display()
    );
    let installed = repository().join(".lab/hosts/lab-amd64/bin/containerd-shim-wasmtime-v1");
    assert!(
        installed.is_file(),
        "{} is missing although the shim is built: `pipeline lab up` did not install it",
        installed.display()
    );
}

/// Compiles tests/programs/wasi_files.c into a WASI preview 1 command module.
pub fn wasi_files_module() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let output = dir.path().join("files.wasm");
    let status = Command::new("clang")
        .args([
            "--target=wasm32-wasi",
            "--sysroot=/usr",
            "-O2",
            "-Wl,--strip-all",
            "-o",
        ])
        .arg(&output)
        .arg(repository().join("tests/programs/wasi_files.c"))
        .status()
        .unwrap_or_else(|error| panic!("clang runs: {error}"));
    assert!(
        status.success(),
        "clang --target=wasm32-wasi failed (scripts/install-deps installs wasi-libc)"
    );
    std::fs::read(output).expect("module")
}

/// Compiles tests/programs/hello.c statically with the given C compiler.
pub fn hello_binary(compiler: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let output = dir.path().join("hello");
    let status = Command::new(compiler)
        .args(["-static", "-O2", "-o"])
        .arg(&output)
        .arg(repository().join("tests/programs/hello.c"))
        .status()
        .unwrap_or_else(|error| panic!("{compiler} runs: {error}"));
    assert!(status.success(), "{compiler} failed");
    std::fs::read(output).expect("binary")
}

/// Pushes `hello` for amd64, arm64 and riscv64 under `repository:tag` with a multi-platform index.
pub async fn push_hello(repository: &str, tag: &str) -> String {
    push_images(repository, tag, false).await
}

/// Like `push_hello`, with a `wasi/wasm` image of tests/programs/wasi_files.c
/// (entrypoint `/files.wasm`, `/data/input.txt` holding `lab-data`) in the index.
pub async fn push_hello_and_wasm(repository: &str, tag: &str) -> String {
    push_images(repository, tag, true).await
}

async fn push_images(repository: &str, tag: &str, wasm: bool) -> String {
    let registry = format!(
        "{}:{}",
        pipeline::lab::SUBNET.to_string() + ".1",
        pipeline::lab::REGISTRY_PORT
    );
    let client = RegistryClient::new();
    let mut entries = Vec::new();
    for (architecture, compiler) in [
        ("amd64", "gcc"),
        ("arm64", "aarch64-linux-gnu-gcc"),
        ("riscv64", "riscv64-linux-gnu-gcc"),
    ] {
        let image = ImageRef::parse(&format!("{registry}/{repository}:{tag}-{architecture}"))
            .expect("reference");
        let files = [ImageFile {
            path: "/hello".into(),
            contents: hello_binary(compiler),
            mode: 0o755,
        }];
        let pushed = push_image(&client, &image, "linux", architecture, &files, &["/hello"])
            .await
            .expect("push");
        entries.push(IndexEntry {
            digest: pushed.digest,
            size: pushed.size,
            media_type: OCI_MANIFEST.into(),
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        });
    }
    if wasm {
        let image =
            ImageRef::parse(&format!("{registry}/{repository}:{tag}-wasm")).expect("reference");
        let files = [
            ImageFile {
                path: "/files.wasm".into(),
                contents: wasi_files_module(),
                mode: 0o755,
            },
            ImageFile {
                path: "/data/input.txt".into(),
                contents: b"lab-data\n".to_vec(),
                mode: 0o644,
            },
        ];
        let pushed = push_image(&client, &image, "wasi", "wasm", &files, &["/files.wasm"])
            .await
            .expect("push");
        entries.push(IndexEntry {
            digest: pushed.digest,
            size: pushed.size,
            media_type: OCI_MANIFEST.into(),
            os: "wasi".into(),
            architecture: "wasm".into(),
            variant: None,
        });
    }
    let index = ImageRef::parse(&format!("{registry}/{repository}:{tag}")).expect("reference");
    client.put_index(&index, &entries).await.expect("index");
    index.to_string()
}

/// Two images with the same layer under different names: a fresh pull of
/// one must fetch that layer again, so removing one removes the other too,
/// and a cached copy of the other does not shorten the fresh pull.
pub async fn fresh_pull_is_not_shortened_by_a_sharing_image(
    engine: &impl pipeline::backend::Engine,
    prefix: &str,
) {
    // The marker keeps this layer apart from other tests' hello images,
    // which the removal would otherwise take away from under them.
    let files = [
        ImageFile {
            path: "/hello".into(),
            contents: hello_binary("gcc"),
            mode: 0o755,
        },
        ImageFile {
            path: "/share-test".into(),
            contents: prefix.as_bytes().to_vec(),
            mode: 0o644,
        },
    ];
    let client = RegistryClient::new();
    let mut names = Vec::new();
    for name in ["share-a", "share-b"] {
        let image = ImageRef::parse(&format!("{}/tests/{prefix}-{name}:t", registry_address()))
            .expect("reference");
        push_image(&client, &image, "linux", "amd64", &files, &["/hello"])
            .await
            .expect("push");
        names.push(image.to_string());
    }
    let (first, second) = (names[0].clone(), names[1].clone());
    let layers = pipeline::backend::registry::layer_sizes(&client, &first, "linux/amd64")
        .await
        .expect("layers");
    let other_layers = pipeline::backend::registry::layer_sizes(&client, &second, "linux/amd64")
        .await
        .expect("layers");
    assert_eq!(layers, other_layers, "the two images share their layer");
    let layer_bytes: u64 = layers.iter().map(|(_, size)| size).sum();

    engine.pull(&first, "linux/amd64").await.expect("pull");
    engine.pull(&second, "linux/amd64").await.expect("pull");
    engine.remove_image(&first).await.expect("remove");
    assert!(!engine.has_image(&first).await.unwrap());
    assert!(
        !engine.has_image(&second).await.unwrap(),
        "an image sharing a layer goes with it"
    );
    let fresh = engine.pull(&first, "linux/amd64").await.expect("pull");
    assert!(
        fresh.bytes_transferred >= layer_bytes,
        "the fresh pull fetched every layer ({layer_bytes} bytes): {fresh:?}"
    );
    engine.remove_image(&first).await.expect("remove");
}

/// The lab as recorded now. `lab()` keeps what it read first; after a lab
/// daemon was stopped and `pipeline lab up` ran again, processes (and so the
/// host sockets seen through their anchors) have new ids.
pub fn current_state() -> LabState {
    lab();
    LabState::load(&layout()).expect("the lab recorded its state")
}

/// `pipeline lab up` again, which starts whatever part of the lab is down.
pub fn up_again() -> Result<LabState, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(LAB_UP)
        .current_dir(repository())
        .output()
        .map_err(|error| format!("pipeline lab up does not run: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "pipeline lab up failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    LabState::load(&layout()).ok_or_else(|| "the lab recorded no state".to_string())
}

fn current_host_root(name: &str) -> String {
    let state = current_state();
    let host = state
        .hosts
        .iter()
        .find(|h| h.host.name == name)
        .expect("lab host");
    format!("/proc/{}/root", host.anchor.pid)
}

/// A lab host's Docker socket per the current state.
pub fn current_docker_socket(host: &str) -> String {
    format!("{}/run/docker.sock", current_host_root(host))
}

/// A lab host's containerd socket per the current state.
pub fn current_containerd_socket(host: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/run/containerd/containerd.sock",
        current_host_root(host)
    ))
}

/// Parts of the project (`templates`, `workloads`) with a fixture's tree on
/// top, in a temporary folder that lives as long as this value.
pub struct Tree {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Tree {
    pub fn copy(parts: &[&str], fixture: &str) -> Tree {
        let dir = tempfile::tempdir().expect("temporary folder");
        let root = dir.path().to_path_buf();
        for part in parts {
            copy_dir(&repository().join(part), &root.join(part));
        }
        copy_dir(&repository().join(fixture), &root);
        Tree { _dir: dir, root }
    }
}

/// Copies a folder's contents into `to`, keeping modes and links.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("folder");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .expect("cp runs");
    assert!(status.success(), "copying {}", from.display());
}

/// The last `lines` lines of the log of every stage an apply's stderr
/// reports as failed (`log: <path>`): the temporary tree goes away with
/// the test, so a failure message keeps them.
pub fn failed_stage_logs(stderr: &str, lines: usize) -> String {
    let mut logs = String::new();
    for line in stderr.lines() {
        if let Some(path) = line.trim().strip_prefix("log: ") {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            logs.push_str("--- ");
            logs.push_str(path);
            logs.push('\n');
            for line in tail.into_iter().rev() {
                logs.push_str(line);
                logs.push('\n');
            }
        }
    }
    logs
}

/// A finished `pipeline` command for a failure message: exit, output, and
/// the logs of the stages that failed.
pub fn describe_output(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{stderr}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        failed_stage_logs(&stderr, 30)
    )
}

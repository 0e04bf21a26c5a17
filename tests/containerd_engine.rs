//! containerd 2.x and 1.7 on real lab hosts (the tests' lab runs lab-riscv64 on
//! 1.7): pulls through the transfer service (from the lab registry's TLS
//! endpoint), runs with runc for native images (amd64 natively, arm64 and
//! riscv64 under qemu) and with the wasmtime shim (`io.containerd.wasmtime.v1`)
//! for a WASI module; and the same wasm image through the host's Docker.

#[path = "common/lab.rs"]
mod lab;

use std::time::Duration;

use pipeline::backend::containerd::ContainerdEngine;
use pipeline::backend::docker::DockerEngine;
use pipeline::backend::measure::{OutputCheck, record};
use pipeline::backend::{Engine, RunRequest};
use pipeline::events::RunRecord;
use pipeline::lab::ContainerdRelease;
use pipeline::spec::TimeUnit;
use regex::Regex;

const RUNC: &str = "io.containerd.runc.v2";
const WASMTIME: &str = "io.containerd.wasmtime.v1";

fn check() -> OutputCheck {
    OutputCheck {
        marker: Regex::new(r"PIPELINE_MAIN_START_NS=(?P<ts>\d+)").unwrap(),
        marker_unit: TimeUnit::Ns,
        result: Some(Regex::new("^PIPELINE_RESULT status=ok").unwrap()),
    }
}

/// containerd on `host`, in a namespace of the test's own, pulling the lab
/// registry's images through its TLS endpoint.
async fn containerd(host: &str, namespace: &str) -> ContainerdEngine {
    let registry = format!(
        "{}.1:{}",
        pipeline::lab::SUBNET,
        pipeline::lab::REGISTRY_PORT
    );
    let endpoint = format!(
        "{}.1:{}",
        pipeline::lab::SUBNET,
        pipeline::lab::REGISTRY_TLS_PORT
    );
    let engine = ContainerdEngine::connect(&lab::containerd_socket(host), namespace)
        .await
        .expect("connect to containerd")
        .with_pull_endpoint(&registry, &endpoint);
    let release = lab::lab()
        .hosts
        .iter()
        .find(|state| state.host.name == host)
        .map(|state| state.host.containerd)
        .expect("a lab host");
    let version = engine.version().await.unwrap();
    let expected = match release {
        ContainerdRelease::V2 => "2.",
        ContainerdRelease::V1_7 => "1.7.",
    };
    assert!(
        version.starts_with(expected),
        "{host} runs containerd {version}, not {}",
        release.as_str()
    );
    engine
}

fn request(host: &str, image: &str, platform: &str, runtime: &str, name: &str) -> RunRequest {
    RunRequest {
        image_ref: image.to_string(),
        platform: platform.to_string(),
        runtime: runtime.to_string(),
        name: name.to_string(),
        args: None,
        timeout: Duration::from_secs(60),
        cgroup_parent: Some(format!("/plab-{host}")),
        env: Vec::new(),
    }
}

/// Fresh pull (every blob transferred, unpacked), a second pull that transfers
/// nothing, one measured run and one failing run. Returns the measured run.
async fn fresh_pull_and_run(engine: &impl Engine, request: &RunRequest) -> (RunRecord, String) {
    let image = request.image_ref.as_str();
    let platform = request.platform.as_str();
    let pull = lab::fresh_pull(engine, image, platform).await;

    let run = engine.run(request).await.unwrap();
    let measured = record(image, &pull.digest, Some(&pull), &run, &check());
    assert!(
        measured.ok,
        "{measured:?}\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let to_main = measured.to_main_ms.unwrap();
    let run_ms = measured.run_ms.unwrap();
    assert!(
        to_main > 0.0 && to_main < run_ms && run_ms < 30_000.0,
        "to_main {to_main} ms, run {run_ms} ms: {measured:?}"
    );
    eprintln!(
        "{} {platform} {}: pull {:.0} ms, {} bytes; to_main {to_main:.1} ms, run {run_ms:.1} ms",
        request.name,
        request.runtime,
        measured.pull_ms.unwrap(),
        pull.bytes_transferred
    );

    // A failing workload is measured and reported, not lost.
    let failing = RunRequest {
        args: Some(vec!["x".into()]),
        ..request.clone()
    };
    let failed = engine.run(&failing).await.unwrap();
    assert_eq!(failed.exit_code, 3, "{failed:?}");
    assert!(!record(image, &pull.digest, None, &failed, &check()).ok);
    (measured, run.stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_pulls_and_runs_native_and_emulated_images_with_runc() {
    lab::lab();
    let image = lab::push_hello("tests/hello-containerd-runc", "containerd-runc").await;
    for (host, platform) in [
        ("lab-amd64", "linux/amd64"),
        ("lab-arm64", "linux/arm64"),
        ("lab-riscv64", "linux/riscv64"),
    ] {
        let engine = containerd(host, "pipeline-test-runc").await;
        let request = request(host, &image, platform, RUNC, &format!("runc-{host}"));
        let (_, stdout) = fresh_pull_and_run(&engine, &request).await;
        assert!(
            stdout.contains("PIPELINE_RESULT status=ok args=0"),
            "{stdout}"
        );
        engine.remove_image(&image).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_runs_wasm_with_the_wasmtime_shim() {
    lab::lab();
    lab::require_shim();
    let image = lab::push_hello_and_wasm("tests/hello-containerd-wasm", "containerd-wasm").await;
    let engine = containerd("lab-amd64", "pipeline-test-wasm").await;
    let platforms = engine.runtime_platforms().await.unwrap();
    assert!(platforms.iter().any(|p| p == "wasi/wasm"), "{platforms:?}");

    let request = request(
        "lab-amd64",
        &image,
        "wasi/wasm",
        WASMTIME,
        "wasm-containerd",
    );
    let (_, stdout) = fresh_pull_and_run(&engine, &request).await;
    // The module read a file of the image, wrote one and read it back.
    assert!(
        stdout.contains("input=lab-data written=lab-data+0 args=0 first=-"),
        "{stdout}"
    );
    // Arguments replace the image's command and reach the module after argv[0].
    let with_args = RunRequest {
        args: Some(vec!["one".into(), "two".into()]),
        ..request.clone()
    };
    let run = engine.run(&with_args).await.unwrap();
    assert_eq!(run.exit_code, 0, "{run:?}");
    assert!(
        run.stdout.contains("written=lab-data+2 args=2 first=one"),
        "{run:?}"
    );
    engine.remove_image(&image).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_runs_wasm_with_the_wasmtime_shim() {
    lab::lab();
    lab::require_shim();
    let image = lab::push_hello_and_wasm("tests/hello-docker-wasm", "docker-wasm").await;
    let engine = DockerEngine::connect(&lab::docker_socket("lab-amd64")).expect("connect");
    let request = request("lab-amd64", &image, "wasi/wasm", WASMTIME, "wasm-docker");
    let (_, stdout) = fresh_pull_and_run(&engine, &request).await;
    assert!(
        stdout.contains("input=lab-data written=lab-data+0 args=0 first=-"),
        "{stdout}"
    );
    engine.remove_image(&image).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_fresh_pull_is_not_shortened_by_a_sharing_image() {
    lab::lab();
    let engine = containerd("lab-amd64", "pipeline-test-share").await;
    lab::fresh_pull_is_not_shortened_by_a_sharing_image(&engine, "containerd").await;
}

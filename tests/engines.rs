//! The engines against real lab hosts: Docker 26 with the containerd image
//! store on an amd64 host and on an emulated arm64 host.

#[path = "common/lab.rs"]
mod lab;

use std::time::Duration;

use pipeline::backend::docker::DockerEngine;
use pipeline::backend::measure::{OutputCheck, record};
use pipeline::backend::{Engine, RunRequest};
use pipeline::spec::TimeUnit;
use regex::Regex;

fn check() -> OutputCheck {
    OutputCheck {
        marker: Regex::new(r"PIPELINE_MAIN_START_NS=(?P<ts>\d+)").unwrap(),
        marker_unit: TimeUnit::Ns,
        result: Some(Regex::new("^PIPELINE_RESULT status=ok").unwrap()),
    }
}

async fn fresh_pull_and_run(host: &str, platform: &str, image: &str) {
    let engine = DockerEngine::connect(&lab::docker_socket(host)).expect("connect");
    assert!(engine.version().await.unwrap().starts_with("26."));
    let pull = lab::fresh_pull(&engine, image, platform).await;

    let request = RunRequest {
        image_ref: image.to_string(),
        platform: platform.to_string(),
        runtime: "io.containerd.runc.v2".into(),
        name: format!("engine-test-{host}"),
        args: None,
        timeout: Duration::from_secs(60),
        cgroup_parent: None,
        env: Vec::new(),
    };
    let run = engine.run(&request).await.unwrap();
    let measured = record(image, &pull.digest, Some(&pull), &run, &check());
    assert!(measured.ok, "{measured:?}\n{}", run.stderr);
    let to_main = measured.to_main_ms.unwrap();
    assert!(
        to_main > 0.0 && to_main < measured.run_ms.unwrap(),
        "{measured:?}"
    );

    // A failing workload is measured and reported, not lost.
    let failing = RunRequest {
        args: Some(vec!["x".into()]),
        ..request
    };
    let run = engine.run(&failing).await.unwrap();
    assert_eq!(run.exit_code, 3);
    assert!(!record(image, &pull.digest, None, &run, &check()).ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_pulls_and_runs_native_and_emulated_images() {
    lab::lab();
    let image = lab::push_hello("tests/hello-engines", "engines").await;
    fresh_pull_and_run("lab-amd64", "linux/amd64", &image).await;
    fresh_pull_and_run("lab-arm64", "linux/arm64", &image).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_fresh_pull_is_not_shortened_by_a_sharing_image() {
    lab::lab();
    let engine = DockerEngine::connect(&lab::docker_socket("lab-amd64")).expect("connect");
    lab::fresh_pull_is_not_shortened_by_a_sharing_image(&engine, "docker").await;
}

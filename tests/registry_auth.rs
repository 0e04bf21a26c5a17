//! `pipeline apply` on the lab against its registry that wants credentials
//! (`.lab/inventory-auth.yaml`, the user and password in the Docker config
//! `lab up` writes under `.lab/registry-auth/docker`): bases pushed through
//! the builder engine, images pushed and indexed by the registry client,
//! pulled and run by Docker and containerd on a lab host. Then the password
//! is looked for in every file the experiment wrote and in everything the
//! commands printed; and applies without credentials must fail saying so.

#[path = "common/apply.rs"]
mod apply;
#[path = "common/lab.rs"]
mod lab;
#[path = "common/python.rs"]
mod python;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::Value;

use apply::{Experiment, Shape, Tree, lab_turn};
use pipeline::backend::credentials::{PASSWORD_VARIABLE, USERNAME_VARIABLE};

fn auth_inventory() -> PathBuf {
    lab::repository().join(".lab/inventory-auth.yaml")
}

fn auth_registry() -> String {
    format!(
        "{}.1:{}",
        pipeline::lab::SUBNET,
        pipeline::lab::AUTH_REGISTRY_PORT
    )
}

/// What must never be written or printed: the password, and the `auth`
/// value of the Docker config that carries it.
fn secrets() -> Vec<String> {
    let path = lab::repository().join(".lab/registry-auth/docker/config.json");
    let config: Value = serde_json::from_str(
        &fs_err::read_to_string(&path).expect("`lab up` writes the Docker config"),
    )
    .expect("the Docker config is JSON");
    let auth = config["auths"][auth_registry()]["auth"]
        .as_str()
        .expect("an auth for the registry")
        .to_string();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&auth)
        .expect("base64");
    let decoded = String::from_utf8(decoded).expect("text");
    let (user, password) = decoded.split_once(':').expect("user:password");
    assert_eq!(user, pipeline::lab::AUTH_REGISTRY_USER);
    assert!(password.len() >= 16, "a real password");
    vec![password.to_string(), auth]
}

/// Where the command finds credentials.
enum Credentials<'a> {
    /// The lab's Docker config.
    Lab,
    /// An empty Docker config folder, and no override variables.
    None(&'a Path),
}

fn pipeline(experiment: &Experiment, args: &[&str], credentials: &Credentials<'_>) -> Output {
    let mut command: Command = experiment.command_on(args, &auth_inventory());
    command
        .env_remove(USERNAME_VARIABLE)
        .env_remove(PASSWORD_VARIABLE);
    match credentials {
        Credentials::Lab => command.env(
            "DOCKER_CONFIG",
            lab::repository().join(".lab/registry-auth/docker"),
        ),
        Credentials::None(empty) => command.env("DOCKER_CONFIG", empty),
    };
    command.output().expect("pipeline runs")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        lab::failed_stage_logs(&String::from_utf8_lossy(&output.stderr), 15)
    )
}

/// Every file under `dir` that holds one of `secrets`, as bytes: logs,
/// journal, Parquet tables, rendered Dockerfiles alike.
fn files_holding(dir: &Path, secrets: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in fs_err::read_dir(&folder).expect("read the folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if let Ok(bytes) = fs_err::read(&path)
                && secrets
                    .iter()
                    .any(|secret| contains(&bytes, secret.as_bytes()))
            {
                found.push(path);
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn assert_no_secret(what: &str, output: &Output, secrets: &[String]) {
    for secret in secrets {
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            assert!(
                !contains(bytes, secret.as_bytes()),
                "{what} printed a secret on {stream}"
            );
        }
    }
}

/// One amd64 image, measured fresh and cached via Docker and containerd.
fn shape(name: &str) -> Shape {
    Shape {
        targets: vec!["linux/amd64"],
        hosts: vec!["lab-amd64"],
        engines: vec!["docker", "containerd"],
        scenarios: vec!["fresh", "cached"],
        repetitions: 1,
        warmup: 0,
        ..Shape::hello(name)
    }
}

#[test]
fn apply_with_credentials_records_none_and_fails_clearly_without() {
    lab::lab();
    let _turn = lab_turn();
    let secrets = secrets();
    let tree = Tree::new();
    let experiment = tree.experiment(&shape("auth-hello"));
    let empty = tempfile::tempdir().expect("an empty Docker config folder");

    let applied = pipeline(&experiment, &["apply"], &Credentials::Lab);
    assert!(applied.status.success(), "{}", describe(&applied));
    assert_eq!(
        experiment.table_rows("results"),
        Some(4),
        "two engines, fresh and cached, one run each"
    );
    assert_no_secret("apply", &applied, &secrets);
    for args in [
        &["plan"][..],
        &["plan", "--format", "json"],
        &["status"],
        &["status", "--format", "json"],
    ] {
        let output = pipeline(&experiment, args, &Credentials::Lab);
        assert!(output.status.success(), "{args:?}: {}", describe(&output));
        assert_no_secret(&args.join(" "), &output, &secrets);
    }
    let leaked = files_holding(&experiment.dir(), &secrets);
    assert!(
        leaked.is_empty(),
        "files under {} hold the registry password: {leaked:?}",
        experiment.dir().display()
    );

    // The images are in the registry; the hosts cannot pull them without
    // credentials, through either engine.
    let runs = pipeline(
        &experiment,
        &["apply", "--from", "run"],
        &Credentials::None(empty.path()),
    );
    assert_eq!(runs.status.code(), Some(1), "{}", describe(&runs));
    let stderr = String::from_utf8_lossy(&runs.stderr).to_ascii_lowercase();
    for engine in ["docker", "containerd"] {
        assert!(
            stderr
                .lines()
                .any(|line| line.contains("failed run/") && line.contains(&format!("/{engine}/"))),
            "no {engine} run failed: {}",
            describe(&runs)
        );
    }
    assert!(stderr.contains("auth"), "{}", describe(&runs));

    // A new experiment cannot push: the message names the registry and
    // says where credentials come from.
    let unpushed = tree.experiment(&shape("auth-none"));
    let pushes = pipeline(
        &unpushed,
        &["apply", "--only", "index"],
        &Credentials::None(empty.path()),
    );
    assert_eq!(pushes.status.code(), Some(1), "{}", describe(&pushes));
    let stderr = String::from_utf8_lossy(&pushes.stderr);
    assert!(
        stderr.contains(&auth_registry()) && stderr.contains(USERNAME_VARIABLE),
        "{}",
        describe(&pushes)
    );
    let leaked = files_holding(&unpushed.dir(), &secrets);
    assert!(leaked.is_empty(), "{leaked:?}");
}

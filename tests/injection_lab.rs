//! Shell syntax in values that travel to a lab host: a workload's argument
//! and environment value each try to create a canary file, through the
//! runner's build and the host's SSH session, agent and engines. The program
//! must receive them verbatim, and the canary must appear nowhere: not on
//! the runner, not on the host.

#[path = "common/lab.rs"]
mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every place a canary could be made: the runner's and each lab host's
/// /tmp and /, and the current folder of the commands (the repository).
fn canary_places(name: &str) -> Vec<PathBuf> {
    let mut places = vec![
        Path::new("/tmp").join(name),
        Path::new("/").join(name),
        lab::repository().join(name),
    ];
    for host in &lab::lab().hosts {
        let root = PathBuf::from(format!("/proc/{}/root", host.anchor.pid));
        places.push(root.join("tmp").join(name));
        places.push(root.join(name));
    }
    places
}

#[test]
fn hostile_arguments_and_environment_reach_the_program_verbatim_and_run_nothing() {
    lab::lab();
    let canary = format!("pipeline-canary-{}", std::process::id());
    let touch = format!("touch /tmp/{canary}");
    // Quotes, command substitution, backticks, separators and a Dockerfile
    // instruction: whatever interpolated one of them into a shell would run `touch`.
    let argument = format!("'; {touch}; echo '\" $({touch}) `{touch}` && {touch} #");
    let environment = format!("\"; RUN {touch}; echo \"$({touch}) | {touch} ${{HOME}}");

    let dir = tempfile::tempdir().expect("temporary folder");
    let root = dir.path();
    for part in ["templates", "workloads"] {
        lab::copy_dir(&lab::repository().join(part), &root.join(part));
    }
    lab::copy_dir(&lab::repository().join("tests/fixtures/language-c"), root);
    lab::copy_dir(&lab::repository().join("tests/fixtures/injection"), root);
    let workload = format!(
        "description: Echoes its argument and INJECTED\nbinary: echo\nargs: [{}]\nenv:\n  INJECTED: {}\n",
        serde_json::to_string(&argument).expect("json"),
        serde_json::to_string(&environment).expect("json"),
    );
    std::fs::write(root.join("workloads/echo/workload.yaml"), workload).expect("workload.yaml");

    let out = root.join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .arg("apply")
        .arg(root.join("experiments/injection.yaml"))
        .arg("-i")
        .arg(lab::repository().join(".lab/inventory.yaml"))
        .arg("--out")
        .arg(&out)
        .current_dir(lab::repository())
        .output()
        .expect("pipeline runs");
    assert!(output.status.success(), "{}", lab::describe_output(&output));

    let found: Vec<PathBuf> = canary_places(&canary)
        .into_iter()
        .filter(|place| place.exists())
        .collect();
    assert!(found.is_empty(), "the canary was made: {found:?}");

    // The program printed what it received; the run stages' logs hold its output.
    let logs = out.join("injection/logs");
    let mut runs = 0;
    for entry in std::fs::read_dir(&logs).expect("logs") {
        let path = entry.expect("log entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("run__") {
            continue;
        }
        runs += 1;
        let log = std::fs::read_to_string(&path).expect("log");
        assert!(
            log.contains(&format!("stdout| arg=[{argument}]")),
            "{name}: the argument changed on its way:\n{log}"
        );
        assert!(
            log.contains(&format!("stdout| env=[{environment}]")),
            "{name}: the environment value changed on its way:\n{log}"
        );
    }
    assert_eq!(runs, 2, "one run per engine in {}", logs.display());
}

//! The command line as users see it: outputs pinned by snapshots, exit codes, help.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Project, SPEC};

fn pipeline(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .output()
        .expect("the pipeline binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The repository itself, for the shipped experiments.
fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const CACHED_SPEC: &str = "\
experiment: demo
description: a small plan for snapshots
workloads:
  - name: hello
    languages: [alpha]
targets: [linux/amd64, wasm]
runs:
  - hosts: [all]
    engines: [docker]
    scenarios: [fresh, cached]
measure:
  repetitions: 2
  warmup: 1
";

#[test]
fn plan_table_json_and_dot() {
    let project = Project::new();
    project.write("experiments/demo.yaml", CACHED_SPEC);
    for (format, extension) in [("table", "txt"), ("json", "json"), ("dot", "dot")] {
        let output = pipeline(
            project.dir.path(),
            &["plan", "experiments/demo.yaml", "--format", format],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        insta::assert_snapshot!(format!("plan_{format}.{extension}"), stdout(&output));
    }
}

#[test]
fn plan_json_has_the_documented_shape() {
    let output = pipeline(
        repository(),
        &[
            "plan",
            "experiments/face-detection.yaml",
            "--format",
            "json",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("valid json");
    assert_eq!(plan["experiment"], "face-detection");
    let stages = plan["stages"].as_array().expect("stages");
    for stage in stages {
        for key in ["id", "kind", "needs", "fingerprint"] {
            assert!(stage.get(key).is_some(), "stage without {key}: {stage}");
        }
    }
    let ids: Vec<&str> = stages
        .iter()
        .filter_map(|stage| stage["id"].as_str())
        .collect();
    assert!(ids.contains(&"build/face-detection/cpp/optimized/linux-arm64"));
    // Every need names a stage of the same plan.
    for stage in stages {
        for need in stage["needs"].as_array().expect("needs") {
            assert!(
                ids.contains(&need.as_str().expect("id")),
                "dangling need {need}"
            );
        }
    }
}

#[test]
fn shipped_experiments_validate_and_plan() {
    for name in [
        "face-detection",
        "matrix-multiplication",
        "sorting",
        "sorting-large",
        "unoptimized",
    ] {
        let spec = format!("experiments/{name}.yaml");
        let output = pipeline(repository(), &["validate", &spec]);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        let output = pipeline(repository(), &["plan", &spec]);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        // Fingerprints follow the workloads' sources, so they are redacted here;
        // the fixture snapshot above pins them.
        insta::with_settings!({filters => vec![(r"\b[0-9a-f]{16}\b", "[fingerprint]")]}, {
            insta::assert_snapshot!(format!("plan_{name}"), stdout(&output));
        });
    }
}

#[test]
fn invalid_input_exits_2_with_a_located_message() {
    let project = Project::new();
    project.write(
        "experiments/demo.yaml",
        &SPEC.replace("hosts: [all]", "hosts: [all, gpu]"),
    );
    let output = pipeline(project.dir.path(), &["validate", "experiments/demo.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty());
    insta::with_settings!({filters => vec![(r"/tmp/[^ ]*/inventory.yaml", "[inventory]")]}, {
        insta::assert_snapshot!("unknown_host", stderr(&output));
    });
}

#[test]
fn missing_spec_file_exits_2() {
    let project = Project::new();
    let output = pipeline(project.dir.path(), &["plan", "experiments/nope.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("error: failed to read experiments/nope.yaml: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_errors_exit_2() {
    let output = pipeline(repository(), &["plan"]);
    assert_eq!(output.status.code(), Some(2));
    let output = pipeline(
        repository(),
        &[
            "plan",
            "experiments/face-detection.yaml",
            "--format",
            "yaml",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn every_subcommand_has_help() {
    let output = pipeline(repository(), &["--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    assert!(help.contains(
        "Exit codes: 0 all done, 1 some stages failed, 2 invalid input or usage, 130 interrupted"
    ));
    for command in ["validate", "plan", "render", "inventory"] {
        assert!(help.contains(command), "--help does not list {command}");
        let output = pipeline(repository(), &[command, "--help"]);
        assert!(output.status.success(), "{command} --help failed");
        assert!(
            stdout(&output).contains("Usage: pipeline"),
            "{command} --help"
        );
    }
}

#[test]
fn color_only_when_asked_and_never_with_no_color() {
    let project = Project::new();
    project.write("experiments/demo.yaml", "experiment: [\n");
    let plain = pipeline(project.dir.path(), &["validate", "experiments/demo.yaml"]);
    assert!(
        !stderr(&plain).contains('\u{1b}'),
        "piped output has no colour"
    );
    let forced = pipeline(
        project.dir.path(),
        &["--color", "always", "validate", "experiments/demo.yaml"],
    );
    assert!(
        stderr(&forced).contains("\u{1b}[1;31merror"),
        "{}",
        stderr(&forced)
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    let no_color = command
        .args(["--color", "auto", "validate", "experiments/demo.yaml"])
        .current_dir(project.dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    assert!(!stderr(&no_color).contains('\u{1b}'));
}

#[test]
fn render_prints_one_stage() {
    let output = pipeline(
        repository(),
        &[
            "render",
            "experiments/face-detection.yaml",
            "--stage",
            "render/face-detection/cpp/optimized/linux-arm64",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("# render/face-detection/cpp/optimized/linux-arm64\n"));
    assert!(text.contains("FROM scratch"));
    assert_eq!(text.matches("# render/").count(), 1);
}

#[test]
fn quiet_validate_prints_nothing() {
    let output = pipeline(
        repository(),
        &["--quiet", "validate", "experiments/sorting.yaml"],
    );
    assert!(output.status.success());
    assert!(stdout(&output).is_empty());
}

/// `pipeline agent` answers on stdout whatever it is sent, with a typed
/// error when it cannot serve the request; the agent-only build shares this
/// code (scripts/test runs the same check on it).
#[test]
fn agent_answers_what_it_cannot_serve_with_a_typed_error() {
    use std::io::Write;

    use pipeline::agent::wire::{AGENT_PROTOCOL, AgentError, AgentReply};

    let ask = |line: &str| -> AgentReply {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .arg("agent")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the pipeline binary runs");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(line.as_bytes())
            .expect("the agent reads stdin");
        drop(stdin);
        let output = child.wait_with_output().expect("the agent exits");
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_slice(&output.stdout).expect("one reply line")
    };

    let reply = ask("not a request\n");
    assert_eq!(reply.protocol, AGENT_PROTOCOL);
    assert!(
        matches!(reply.outcome, Err(AgentError::Request { .. })),
        "{:?}",
        reply.outcome
    );

    let older = format!(
        "{{\"protocol\":{},\"request\":{{\"request\":\"facts\",\"engines\":[]}}}}\n",
        AGENT_PROTOCOL - 1
    );
    assert_eq!(
        ask(&older).outcome,
        Err(AgentError::Protocol {
            agent: AGENT_PROTOCOL,
            runner: AGENT_PROTOCOL - 1
        })
    );
}

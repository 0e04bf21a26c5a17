//! The shipped templates write a workload's data placements, environment
//! and working directory into every Dockerfile, and no value can start an
//! instruction of its own.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::path::Path;

use common::Project;
use pipeline::plan::{Plan, PlanOptions, load_plan};
use pipeline::render::{Toolchain, render_dockerfile};

/// Every Dockerfile of the plan, by render stage id.
fn dockerfiles(root: &Path, plan: &Plan) -> Vec<(String, String)> {
    plan.graph
        .stages()
        .filter_map(|(_, stage)| {
            let image = &plan.experiment.images[stage.work.image()?];
            (stage.kind == pipeline::plan::StageKind::Render).then(|| {
                let text = render_dockerfile(
                    root,
                    &plan.experiment.name,
                    image,
                    stage.fingerprint,
                    &Toolchain::new(),
                )
                .unwrap_or_else(|error| panic!("{}: {error}", stage.id));
                (stage.id.to_string(), text)
            })
        })
        .collect()
}

/// The lines of the final stage: what the image holds and starts with.
fn final_stage(dockerfile: &str) -> Vec<&str> {
    let lines: Vec<&str> = dockerfile.lines().collect();
    let last_from = lines
        .iter()
        .rposition(|line| line.starts_with("FROM "))
        .expect("a FROM line");
    lines[last_from..].to_vec()
}

const LANGUAGES: [&str; 4] = ["cpp", "rust", "go", "tinygo"];

/// The shipped templates, and a workload in every shipped language that
/// places one input file, sets two variables and works in `/srv/app`.
fn project_with_inputs() -> Project {
    let project = Project::new();
    lab::copy_dir(
        &lab::repository().join("templates"),
        &project.path("templates"),
    );
    project.write(
        "workloads/reader/workload.yaml",
        "binary: reader\n\
         workdir: /srv/app\n\
         data:\n  - {from: data/input.txt, to: input.txt}\n  - {from: data/sets, to: /sets}\n\
         env:\n  MODE: fast\n  LABEL: 'say \"hi\" to $USER\\'\n",
    );
    project.write("workloads/reader/data/input.txt", "one two\n");
    project.write("workloads/reader/data/sets/a.txt", "a\n");
    for language in LANGUAGES {
        project.write(&format!("workloads/reader/{language}/main.src"), "\n");
    }
    project
}

const NATIVE_SPEC: &str = "\
experiment: inputs
workloads:
  - name: reader
    languages: [cpp, rust, go, tinygo]
variants:
  optimized:
  unoptimized:
targets: [linux/amd64, linux/arm64]
runs:
  - hosts: [all]
    engines: [docker]
";

#[test]
fn every_shipped_template_places_data_sets_env_and_the_workdir() {
    let project = project_with_inputs();
    let plan = project.plan(NATIVE_SPEC).expect("plan");
    let dockerfiles = dockerfiles(project.dir.path(), &plan);
    assert_eq!(dockerfiles.len(), LANGUAGES.len() * 2 * 2);
    for (id, dockerfile) in &dockerfiles {
        let last = final_stage(dockerfile);
        for expected in [
            r#"COPY ["data/input.txt","/srv/app/input.txt"]"#,
            r#"COPY ["data/sets/","/sets/"]"#,
            r#"ENV MODE="fast""#,
            r#"ENV LABEL="say \"hi\" to \$USER\\""#,
        ] {
            assert!(
                last.contains(&expected),
                "{id}: no `{expected}` in\n{dockerfile}"
            );
        }
        let workdir = last.iter().rfind(|line| line.starts_with("WORKDIR "));
        assert_eq!(workdir, Some(&"WORKDIR /srv/app"), "{id}:\n{dockerfile}");
        // The old fixed placement is gone.
        assert!(!dockerfile.contains("COPY data/ /data/"), "{id}");
    }
}

#[test]
fn a_workload_without_inputs_keeps_data_at_slash_data() {
    let project = project_with_inputs();
    project.write(
        "workloads/reader/workload.yaml",
        "binary: reader\nargs: [/data/input.txt]\n",
    );
    let plan = project.plan(NATIVE_SPEC).expect("plan");
    for (id, dockerfile) in dockerfiles(project.dir.path(), &plan) {
        let last = final_stage(&dockerfile);
        assert!(
            last.contains(&r#"COPY ["data/","/data/"]"#),
            "{id}:\n{dockerfile}"
        );
        assert!(!last.iter().any(|line| line.starts_with("ENV ")), "{id}");
        assert_eq!(
            last.iter().rfind(|line| line.starts_with("WORKDIR ")),
            Some(&"WORKDIR /"),
            "{id}"
        );
        assert!(
            last.contains(&r#"CMD ["/data/input.txt"]"#),
            "{id}:\n{dockerfile}"
        );
    }
}

/// A tree with the shipped templates and the fixture of a third-party
/// program with separate native and wasm sources.
fn wordcount_tree() -> (tempfile::TempDir, Plan) {
    let dir = tempfile::tempdir().expect("temporary folder");
    lab::copy_dir(
        &lab::repository().join("templates"),
        &dir.path().join("templates"),
    );
    lab::copy_dir(&lab::repository().join("tests/fixtures/inputs"), dir.path());
    let plan = load_plan(
        &dir.path().join("experiments/wordcount.yaml"),
        &PlanOptions {
            inventory: Some(lab::repository().join("inventory.yaml")),
            ..PlanOptions::default()
        },
    )
    .expect("the fixture plans");
    (dir, plan)
}

#[test]
fn the_wordcount_fixture_renders_its_inputs() {
    let (dir, plan) = wordcount_tree();
    let dockerfiles = dockerfiles(dir.path(), &plan);
    let ids: Vec<&str> = dockerfiles.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "render/wordcount/cpp/optimized/linux-amd64",
            "render/wordcount/cpp/optimized/linux-arm64",
            "render/wordcount/rust/optimized/linux-amd64",
            "render/wordcount/rust/optimized/linux-arm64",
            "render/wordcount/go/optimized/linux-amd64",
            "render/wordcount/go/optimized/linux-arm64",
            "render/wordcount-wasm/cpp/optimized/wasm",
            "render/wordcount-wasm/rust/optimized/wasm",
            "render/wordcount-wasm/go/optimized/wasm",
        ]
    );
    let dockerfile = |id: &str| {
        &dockerfiles
            .iter()
            .find(|(stage, _)| stage == id)
            .expect("rendered")
            .1
    };
    // Fingerprints and base tags follow the templates; the rest is pinned.
    let filters = vec![
        (r"[0-9a-f]{64}", "[fingerprint]"),
        (r":[0-9a-f]{16}\b", ":[tag]"),
    ];
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("wordcount_native_arm64", dockerfile("render/wordcount/cpp/optimized/linux-arm64"));
        insta::assert_snapshot!("wordcount_wasm", dockerfile("render/wordcount-wasm/cpp/optimized/wasm"));
        // Built from the vendor stage's tree, offline.
        insta::assert_snapshot!("wordcount_rust_vendored_arm64", dockerfile("render/wordcount/rust/optimized/linux-arm64"));
        insta::assert_snapshot!("wordcount_go_vendored_wasm", dockerfile("render/wordcount-wasm/go/optimized/wasm"));
    });
}

/// Values that validate but carry Dockerfile and shell syntax: each stays
/// inside the one instruction it belongs to and reads back unchanged.
#[test]
fn hostile_values_stay_inside_their_instruction() {
    const CANARY: &str = "touch /canary";
    let env_value = format!("\"; RUN {CANARY}; echo \"$(id) `id` \\");
    let argument = format!("\"]\nRUN {CANARY} #");
    let project = project_with_inputs();
    project.write(
        "workloads/reader/workload.yaml",
        &format!(
            "binary: reader\nworkdir: /srv/my app\nenv:\n  EVIL: {}\nargs: [{}]\n",
            serde_json::to_string(&env_value).expect("json"),
            serde_json::to_string(&argument).expect("json"),
        ),
    );
    let plan = project.plan(NATIVE_SPEC).expect("plan");
    for (id, dockerfile) in dockerfiles(project.dir.path(), &plan) {
        let mut instructions: Vec<String> = Vec::new();
        let mut continued = false;
        for line in dockerfile.lines() {
            if continued {
                if let Some(last) = instructions.last_mut() {
                    last.push_str(line);
                }
            } else if !line.trim().is_empty() && !line.starts_with('#') {
                instructions.push(line.to_string());
            }
            continued = line.ends_with('\\');
        }
        for instruction in &instructions {
            if !instruction.contains("canary") {
                continue;
            }
            if let Some(quoted) = instruction.strip_prefix("ENV EVIL=") {
                let inner = &quoted[1..quoted.len() - 1];
                let mut read_back = String::new();
                let mut chars = inner.chars();
                while let Some(c) = chars.next() {
                    read_back.push(if c == '\\' {
                        chars.next().expect("escaped")
                    } else {
                        c
                    });
                }
                assert_eq!(read_back, env_value, "{id}:\n{dockerfile}");
            } else if let Some(json) = instruction.strip_prefix("CMD ") {
                let args: Vec<String> = serde_json::from_str(json).expect("CMD is JSON");
                assert_eq!(args, std::slice::from_ref(&argument), "{id}:\n{dockerfile}");
            } else {
                panic!("{id}: the canary escaped into `{instruction}`:\n{dockerfile}");
            }
        }
        assert!(
            instructions.iter().any(|i| i == "WORKDIR /srv/my app"),
            "{id}:\n{dockerfile}"
        );
    }
}

/// Each shipped language builds its wasm module as its wasm template does,
/// then compiles it ahead of time for the target's architecture.
#[test]
fn the_precompiled_templates_ship_a_module_compiled_for_the_platform() {
    let project = project_with_inputs();
    project.write(
        "workloads/reader/workload.yaml",
        "binary: reader\nargs: [/data/input.txt]\n",
    );
    let spec = "\
experiment: inputs
workloads:
  - name: reader
    languages: [cpp, rust, go, tinygo]
variants:
  precompiled:
    runtime: wasm
targets: [linux/amd64, linux/arm64]
runs:
  - hosts: [all]
    engines: [docker]
";
    let plan = project.plan(spec).expect("plan");
    let dockerfiles = dockerfiles(project.dir.path(), &plan);
    assert_eq!(dockerfiles.len(), LANGUAGES.len() * 2);
    for (id, dockerfile) in &dockerfiles {
        let triple = if id.ends_with("linux-arm64") {
            "aarch64-unknown-linux-gnu"
        } else {
            "x86_64-unknown-linux-gnu"
        };
        let precompile =
            format!("RUN wasm-precompile --target {triple} /reader.wasm /reader.cwasm");
        assert!(
            dockerfile.lines().any(|line| line == precompile),
            "{id}: no `{precompile}` in\n{dockerfile}"
        );
        let last = final_stage(dockerfile);
        assert_eq!(last[0], "FROM scratch", "{id}");
        assert!(
            last.contains(&"COPY --from=build /reader.cwasm /reader.cwasm")
                && last.contains(&r#"ENTRYPOINT ["/reader.cwasm"]"#),
            "{id}:\n{dockerfile}"
        );
    }
    let dockerfile = |id: &str| {
        &dockerfiles
            .iter()
            .find(|(stage, _)| stage == id)
            .expect("rendered")
            .1
    };
    let filters = vec![(r"[0-9a-f]{64}", "[fingerprint]")];
    insta::with_settings!({filters => filters}, {
        insta::assert_snapshot!("precompiled_rust_arm64", dockerfile("render/reader/rust/precompiled/linux-arm64"));
        insta::assert_snapshot!("precompiled_cpp_amd64", dockerfile("render/reader/cpp/precompiled/linux-amd64"));
    });
}

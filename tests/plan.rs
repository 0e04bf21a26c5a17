//! Expansion, dependencies and fingerprints on small graphs.

mod common;

use std::collections::BTreeMap;

use common::{Project, SPEC};
use pipeline::plan::{Plan, StageKind, StageWork};

fn fingerprints(plan: &Plan) -> BTreeMap<String, String> {
    plan.graph
        .stages()
        .map(|(_, stage)| (stage.id.to_string(), stage.fingerprint.to_hex()))
        .collect()
}

fn needs(plan: &Plan, id: &str) -> Vec<String> {
    let node = plan
        .graph
        .stages()
        .find(|(_, stage)| stage.id.as_str() == id)
        .map(|(node, _)| node);
    let node = node.unwrap_or_else(|| panic!("no stage {id}"));
    plan.graph
        .needs(node)
        .into_iter()
        .map(ToString::to_string)
        .collect()
}

/// Ids whose fingerprint differs between two plans of the same shape.
fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    before
        .iter()
        .filter(|(id, fp)| after[*id] != **fp)
        .map(|(id, _)| id.clone())
        .collect()
}

const TWO_WORKLOADS: &str = "\
experiment: demo
workloads:
  - name: hello
    languages: [alpha, beta]
  - name: other
    languages: [alpha]
targets: [linux/amd64, linux/arm64, wasm]
runs:
  - hosts: [all]
    engines: [docker]
    scenarios: [fresh, cached]
measure:
  repetitions: 2
";

#[test]
fn expands_the_matrix_into_stages() {
    let plan = Project::new().plan(SPEC).unwrap();
    let ids: Vec<String> = plan
        .graph
        .stages()
        .map(|(_, stage)| stage.id.to_string())
        .collect();
    assert_eq!(
        ids,
        [
            "render/hello/alpha/optimized/linux-amd64",
            "build/hello/alpha/optimized/linux-amd64",
            "push/hello/alpha/optimized/linux-amd64",
            "render/hello/alpha/optimized/wasm",
            "build/hello/alpha/optimized/wasm",
            "push/hello/alpha/optimized/wasm",
            "index/hello/alpha/optimized",
            "prepare-host/amd",
            "prepare-host/arm",
            "run/hello/alpha/optimized/linux-amd64/amd/docker/fresh/0",
            "run/hello/alpha/optimized/wasm/amd/docker/fresh/0",
            "run/hello/alpha/optimized/wasm/arm/docker/fresh/0",
            "aggregate",
        ]
    );
    assert_eq!(
        needs(&plan, "index/hello/alpha/optimized"),
        [
            "push/hello/alpha/optimized/linux-amd64",
            "push/hello/alpha/optimized/wasm"
        ]
    );
}

#[test]
fn a_hosts_runs_wait_for_its_own_images_only() {
    let plan = Project::new().plan(TWO_WORKLOADS).unwrap();
    assert_eq!(
        needs(
            &plan,
            "run/hello/beta/optimized/linux-arm64/arm/docker/fresh/1"
        ),
        ["prepare-host/arm", "push/hello/beta/optimized/linux-arm64"]
    );
    assert_eq!(
        needs(&plan, "run/other/alpha/optimized/wasm/amd/docker/cached/0"),
        [
            "prepare-host/amd",
            "pull/other/alpha/optimized/wasm/amd/docker",
            "push/other/alpha/optimized/wasm"
        ]
    );
    assert_eq!(
        needs(&plan, "pull/other/alpha/optimized/wasm/amd/docker"),
        ["prepare-host/amd", "push/other/alpha/optimized/wasm"]
    );
    let counts = plan.graph.count_by_kind();
    // 3 images per (workload, language) pair, 3 pairs.
    assert_eq!(counts[StageKind::Build.index()], 9);
    assert_eq!(counts[StageKind::Index.index()], 3);
    // Native images run on their own host, wasm on both: 4 cells per pair, 2 scenarios, 2 repetitions.
    assert_eq!(counts[StageKind::Run.index()], 3 * 4 * 2 * 2);
    // One pull per cached (image, host, engine).
    assert_eq!(counts[StageKind::Pull.index()], 3 * 4);
    assert!(plan.graph.topological_order().is_ok());
}

#[test]
fn fingerprints_are_stable() {
    let project = Project::new();
    let first = fingerprints(&project.plan(TWO_WORKLOADS).unwrap());
    let second = fingerprints(&project.plan(TWO_WORKLOADS).unwrap());
    assert_eq!(first, second);
}

#[test]
fn a_source_change_changes_only_what_is_downstream_of_it() {
    let project = Project::new();
    let before = fingerprints(&project.plan(TWO_WORKLOADS).unwrap());
    project.write("workloads/hello/beta/main.src", "hello in beta, faster\n");
    let after = fingerprints(&project.plan(TWO_WORKLOADS).unwrap());
    let changed = changed(&before, &after);
    assert!(!changed.is_empty());
    for id in &changed {
        let downstream = id.contains("/hello/beta/") || id == "aggregate";
        assert!(
            downstream,
            "{id} changed although it does not depend on hello/beta"
        );
        assert!(
            !id.starts_with("render/"),
            "{id}: rendering does not read the sources"
        );
    }
    for kind in ["build", "push", "run"] {
        assert!(
            changed
                .iter()
                .any(|id| id.starts_with(&format!("{kind}/hello/beta/"))),
            "no {kind} stage changed"
        );
    }
    assert!(changed.contains(&"index/hello/beta/optimized".to_string()));
    assert!(!changed.iter().any(|id| id.starts_with("prepare-host/")));
}

#[test]
fn shared_data_changes_every_language_of_the_workload() {
    let project = Project::new();
    let before = fingerprints(&project.plan(TWO_WORKLOADS).unwrap());
    project.write("workloads/hello/data/in.txt", "other input\n");
    let changed = changed(
        &before,
        &fingerprints(&project.plan(TWO_WORKLOADS).unwrap()),
    );
    assert!(
        changed
            .iter()
            .any(|id| id.starts_with("build/hello/alpha/"))
    );
    assert!(changed.iter().any(|id| id.starts_with("build/hello/beta/")));
    assert!(!changed.iter().any(|id| id.contains("/other/")));
}

#[test]
fn a_template_change_starts_at_render() {
    let project = Project::new();
    let before = fingerprints(&project.plan(TWO_WORKLOADS).unwrap());
    project.write("templates/beta/wasm.Dockerfile.j2", "FROM scratch\n");
    let changed = changed(
        &before,
        &fingerprints(&project.plan(TWO_WORKLOADS).unwrap()),
    );
    assert!(changed.contains(&"render/hello/beta/optimized/wasm".to_string()));
    // The whole language folder is hashed, since templates may include each other.
    assert!(changed.contains(&"render/hello/beta/optimized/linux-amd64".to_string()));
    assert!(!changed.iter().any(|id| id.contains("/alpha/")));
}

#[test]
fn a_host_change_touches_only_that_host() {
    let project = Project::new();
    let before = fingerprints(&project.plan(TWO_WORKLOADS).unwrap());
    project.write(
        "inventory.yaml",
        &common::INVENTORY.replace("10.0.0.2", "10.0.0.3"),
    );
    let changed = changed(
        &before,
        &fingerprints(&project.plan(TWO_WORKLOADS).unwrap()),
    );
    assert!(changed.contains(&"prepare-host/arm".to_string()));
    for id in &changed {
        assert!(id.contains("/arm") || id == "aggregate", "{id} changed");
    }
}

fn run_order(plan: &Plan, host: &str) -> Vec<String> {
    let mut runs: Vec<(u32, String)> = plan
        .graph
        .stages()
        .filter_map(|(_, stage)| match &stage.work {
            StageWork::Run(run)
                if plan.experiment.hosts[plan.experiment.cells[run.cell].host].name == host =>
            {
                Some((run.sequence, stage.id.to_string()))
            }
            _ => None,
        })
        .collect();
    runs.sort();
    runs.into_iter().map(|(_, id)| id).collect()
}

#[test]
fn interleaved_order_runs_every_cell_once_per_round() {
    let spec = format!("{SPEC}measure:\n  repetitions: 2\n  warmup: 1\n");
    let plan = Project::new().plan(&spec).unwrap();
    let order = run_order(&plan, "amd");
    let rounds: Vec<&str> = order
        .iter()
        .map(|id| id.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(rounds, ["warmup-0", "warmup-0", "0", "0", "1", "1"]);
}

#[test]
fn shuffled_order_follows_the_seed() {
    let project = Project::new();
    let spec = |seed: u64| {
        TWO_WORKLOADS.replace(
            "  repetitions: 2\n",
            &format!("  repetitions: 5\n  order: shuffled\n  seed: {seed}\n"),
        )
    };
    let first = run_order(&project.plan(&spec(7)).unwrap(), "amd");
    let again = run_order(&project.plan(&spec(7)).unwrap(), "amd");
    let other = run_order(&project.plan(&spec(8)).unwrap(), "amd");
    assert_eq!(first, again);
    assert_ne!(first, other);
    let mut sorted_first = first.clone();
    let mut sorted_other = other.clone();
    sorted_first.sort();
    sorted_other.sort();
    assert_eq!(
        sorted_first, sorted_other,
        "a shuffle reorders the same runs"
    );
    let interleaved = run_order(
        &project
            .plan(&spec(7).replace("order: shuffled", "order: interleaved"))
            .unwrap(),
        "amd",
    );
    assert_ne!(first, interleaved);
}

#[test]
fn base_images_precede_the_builds_that_use_them() {
    let spec = format!(
        "{SPEC}bases:\n  os:\n    debootstrap: {{suite: trixie}}\n  tools:\n    from: os\n    packages: [gcc]\nlanguages:\n  alpha:\n    vars:\n      builder_image: {{base: tools}}\n"
    );
    let plan = Project::new().plan(&spec).unwrap();
    assert_eq!(needs(&plan, "base/tools"), ["base/os"]);
    assert_eq!(
        needs(&plan, "build/hello/alpha/optimized/wasm"),
        ["base/tools", "render/hello/alpha/optimized/wasm"]
    );
    let image = &plan.experiment.images[0];
    let reference = image.vars["builder_image"].as_str().unwrap();
    assert!(
        reference.starts_with("registry.test:5000/pipeline-base/tools:"),
        "{reference}"
    );
}

#[test]
fn variables_override_from_defaults_to_language_variant() {
    let spec = format!(
        "{SPEC}vars:\n  flags: experiment\n  level: experiment\nvariants:\n  optimized:\n    vars: {{flags: variant}}\nlanguages:\n  alpha:\n    vars: {{level: language}}\n    variants:\n      optimized:\n        vars: {{flags: language-variant}}\n"
    );
    let plan = Project::new().plan(&spec).unwrap();
    let vars = &plan.experiment.images[0].vars;
    assert_eq!(
        vars["builder_image"], "scratch",
        "from templates/alpha/defaults.yaml"
    );
    assert_eq!(vars["flags"], "language-variant");
    assert_eq!(vars["level"], "language");
}

#[test]
fn restricting_to_stages_keeps_everything_they_need_and_nothing_else() {
    let project = Project::new();
    let plan = project.plan(SPEC).expect("plan");
    let only_index = plan
        .graph
        .with_needs_of(|stage| stage.kind == StageKind::Index);
    let counts = only_index.count_by_kind();
    assert_eq!(counts[StageKind::Index.index()], 1);
    for kind in [
        StageKind::PrepareHost,
        StageKind::Pull,
        StageKind::Run,
        StageKind::Aggregate,
    ] {
        assert_eq!(counts[kind.index()], 0, "{kind}");
    }
    assert_eq!(
        counts[StageKind::Push.index()],
        plan.graph.count_by_kind()[StageKind::Push.index()]
    );
    // Needs survive the restriction, so the walker still orders the stages.
    for (node, stage) in only_index.stages() {
        if stage.kind == StageKind::Push {
            assert_eq!(only_index.needs(node).len(), 1, "{}", stage.id);
        }
    }
    // One run keeps its host's prepare stage, its image chain, and no other run.
    let (_, first_run) = plan
        .graph
        .stages()
        .find(|(_, stage)| stage.kind == StageKind::Run)
        .expect("a run");
    let one_run = plan.graph.with_needs_of(|stage| stage.id == first_run.id);
    let counts = one_run.count_by_kind();
    assert_eq!(counts[StageKind::Run.index()], 1);
    assert_eq!(counts[StageKind::PrepareHost.index()], 1);
    assert_eq!(counts[StageKind::Build.index()], 1);
    assert_eq!(counts[StageKind::Aggregate.index()], 0);
}

fn ids_of(graph: &pipeline::plan::StageGraph, kind: StageKind) -> Vec<String> {
    graph
        .stages()
        .filter(|(_, stage)| stage.kind == kind)
        .map(|(_, stage)| stage.id.to_string())
        .collect()
}

/// `hello` is measured on native targets only; no run block selects `other`.
const NATIVE_RUNS_ONLY: &str = "\
experiment: demo
workloads:
  - name: hello
    languages: [alpha, beta]
  - name: other
    languages: [alpha]
targets: [linux/amd64, linux/arm64, wasm]
runs:
  - hosts: [all]
    engines: [docker]
    workloads: [hello]
    targets: [linux/amd64, linux/arm64]
";

#[test]
fn images_no_run_needs_are_not_planned() {
    let plan = Project::new().plan(NATIVE_RUNS_ONLY).unwrap();
    assert_eq!(
        ids_of(&plan.graph, StageKind::Build),
        [
            "build/hello/alpha/optimized/linux-amd64",
            "build/hello/alpha/optimized/linux-arm64",
            "build/hello/beta/optimized/linux-amd64",
            "build/hello/beta/optimized/linux-arm64",
            // No run block measures `other`: its images are built for the images table.
            "build/other/alpha/optimized/linux-amd64",
            "build/other/alpha/optimized/linux-arm64",
            "build/other/alpha/optimized/wasm",
        ]
    );
    assert_eq!(
        needs(&plan, "index/hello/alpha/optimized"),
        [
            "push/hello/alpha/optimized/linux-amd64",
            "push/hello/alpha/optimized/linux-arm64"
        ]
    );
    let summaries: Vec<(&str, usize, usize, Vec<&str>)> = plan
        .experiment
        .workload_images
        .iter()
        .map(|summary| {
            (
                summary.workload.as_str(),
                summary.run,
                summary.unrun,
                summary.not_planned.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        summaries,
        [
            (
                "hello",
                4,
                0,
                vec!["hello/alpha/optimized/wasm", "hello/beta/optimized/wasm"]
            ),
            ("other", 0, 3, vec![]),
        ]
    );
    // Every cell still points at the image it runs.
    for cell in &plan.experiment.cells {
        let image = &plan.experiment.images[cell.image];
        assert_eq!(image.workload, "hello");
        assert_eq!(
            image.target.to_string(),
            plan.experiment.hosts[cell.host].platform.to_string()
        );
    }
    // `--only index` builds everything a run or the images table needs, and nothing else.
    let only_index = plan
        .graph
        .with_needs_of(|stage| stage.kind == StageKind::Index);
    assert_eq!(
        ids_of(&only_index, StageKind::Build),
        ids_of(&plan.graph, StageKind::Build)
    );
    assert_eq!(
        ids_of(&only_index, StageKind::Index),
        [
            "index/hello/alpha/optimized",
            "index/hello/beta/optimized",
            "index/other/alpha/optimized"
        ]
    );
}

#[test]
fn plan_output_says_how_many_images_each_workload_has_and_why() {
    let plan = Project::new().plan(NATIVE_RUNS_ONLY).unwrap();
    let table = pipeline::plan::output::to_table(&plan);
    let lines: Vec<&str> = table
        .lines()
        .skip_while(|line| !line.starts_with("images "))
        .take(2)
        .collect();
    assert_eq!(
        lines,
        [
            "images      hello  4 images: every one runs; 2 left out, no run needs them: alpha/optimized/wasm, beta/optimized/wasm",
            "            other  3 images: none runs: no run block measures other, so they are built for the images table",
        ]
    );
    let json = pipeline::plan::output::to_json(&plan);
    assert_eq!(json["images"][0]["workload"], "hello");
    assert_eq!(json["images"][0]["planned"], 4);
    assert_eq!(
        json["images"][0]["not_planned"],
        serde_json::json!(["hello/alpha/optimized/wasm", "hello/beta/optimized/wasm"])
    );
    assert_eq!(json["images"][1]["unrun"], 3);
    assert!(
        json["images"][1]["why"]
            .as_str()
            .unwrap()
            .contains("no run block measures other")
    );
}

#[test]
fn workload_and_language_targets_narrow_the_experiments() {
    let spec = "\
experiment: demo
workloads:
  - name: hello
    languages: [alpha, beta]
    targets: [linux/amd64, wasm]
  - name: other
    languages: [alpha, beta]
targets: [linux/amd64, linux/arm64, wasm]
languages:
  beta:
    targets: [wasm, linux/aarch64]
runs:
  - hosts: [all]
    engines: [docker]
";
    let plan = Project::new().plan(spec).unwrap();
    assert_eq!(
        ids_of(&plan.graph, StageKind::Build),
        [
            "build/hello/alpha/optimized/linux-amd64",
            "build/hello/alpha/optimized/wasm",
            // Both narrowings apply: the workload's and the language's.
            "build/hello/beta/optimized/wasm",
            "build/other/alpha/optimized/linux-amd64",
            "build/other/alpha/optimized/linux-arm64",
            "build/other/alpha/optimized/wasm",
            "build/other/beta/optimized/linux-arm64",
            "build/other/beta/optimized/wasm",
        ]
    );
    assert!(
        plan.experiment
            .workload_images
            .iter()
            .all(|summary| summary.unrun == 0 && summary.not_planned.is_empty())
    );
}

#[test]
fn separate_native_and_wasm_workloads_need_no_host_for_the_other_kind() {
    // The wasm-only workload runs on the arm64 host alone, which cannot run
    // amd64 images; the block selects none, so that is no error.
    let spec = "\
experiment: demo
workloads:
  - name: hello
    languages: [alpha]
    targets: [linux/amd64]
  - name: other
    languages: [alpha]
    targets: [wasm]
targets: [linux/amd64, wasm]
runs:
  - hosts: [amd]
    engines: [docker]
    workloads: [hello]
  - hosts: [arm]
    engines: [docker]
    workloads: [other]
";
    let plan = Project::new().plan(spec).unwrap();
    assert_eq!(
        ids_of(&plan.graph, StageKind::Build),
        [
            "build/hello/alpha/optimized/linux-amd64",
            "build/other/alpha/optimized/wasm",
        ]
    );
    assert_eq!(
        ids_of(&plan.graph, StageKind::Run),
        [
            "run/hello/alpha/optimized/linux-amd64/amd/docker/fresh/0",
            "run/other/alpha/optimized/wasm/arm/docker/fresh/0",
        ]
    );
}

#[test]
fn inputs_come_from_the_workload_with_the_experiments_overrides() {
    let project = Project::new();
    project.write(
        "workloads/hello/workload.yaml",
        "binary: hello\nresult: '^ok'\nworkdir: /app\ndata:\n  - {from: data/in.txt, to: input.txt}\n  - {from: data, to: /srv/all}\nenv:\n  MODE: fast\n  NAME: \"say \\\"hi\\\" to $USER\"\n",
    );
    // A working directory other than `/` is for native images only.
    let native = SPEC.replace(
        "    languages: [alpha]\n",
        "    languages: [alpha]\n    targets: [linux/amd64]\n",
    );
    let plan = project.plan(&native).unwrap();
    let inputs = plan.experiment.images[0].template_inputs("demo");
    assert_eq!(inputs["workload"]["workdir"], "/app");
    assert_eq!(
        inputs["workload"]["data"],
        serde_json::json!([
            {"from": "data/in.txt", "to": "/app/input.txt"},
            {"from": "data/", "to": "/srv/all/"},
        ])
    );
    assert_eq!(
        inputs["workload"]["env"],
        serde_json::json!([
            {"name": "MODE", "value": "fast"},
            {"name": "NAME", "value": "say \"hi\" to $USER"},
        ])
    );
    assert_eq!(
        plan.experiment.images[0].run.result_pattern.as_deref(),
        Some("^ok")
    );

    // The experiment replaces workdir and data, and adds to env by name.
    let spec = native.replace(
        "    languages: [alpha]\n",
        "    languages: [alpha]\n    workdir: /job\n    data: [{from: data/in.txt, to: in.txt}]\n    env: {MODE: slow, EXTRA: x}\n",
    );
    let plan = project.plan(&spec).unwrap();
    let inputs = plan.experiment.images[0].template_inputs("demo");
    assert_eq!(inputs["workload"]["workdir"], "/job");
    assert_eq!(
        inputs["workload"]["data"],
        serde_json::json!([{"from": "data/in.txt", "to": "/job/in.txt"}])
    );
    let env: Vec<(String, String)> = plan.experiment.images[0]
        .run
        .env
        .iter()
        .map(|var| (var.name.clone(), var.value.clone()))
        .collect();
    assert_eq!(
        env,
        [
            ("MODE".into(), "slow".into()),
            ("NAME".into(), "say \"hi\" to $USER".into()),
            ("EXTRA".into(), "x".into()),
        ]
    );
}

#[test]
fn without_inputs_data_lands_in_slash_data_as_before() {
    let plan = Project::new().plan(SPEC).unwrap();
    let inputs = plan.experiment.images[0].template_inputs("demo");
    assert_eq!(inputs["workload"]["workdir"], "/");
    assert_eq!(
        inputs["workload"]["data"],
        serde_json::json!([{"from": "data/", "to": "/data/"}])
    );
    assert_eq!(inputs["workload"]["env"], serde_json::json!([]));
    // An empty list opts out of the default placement.
    let spec = SPEC.replace(
        "    languages: [alpha]\n",
        "    languages: [alpha]\n    data: []\n",
    );
    let plan = Project::new().plan(&spec).unwrap();
    let inputs = plan.experiment.images[0].template_inputs("demo");
    assert_eq!(inputs["workload"]["data"], serde_json::json!([]));
    assert_eq!(inputs["workload"]["has_data"], true);
}

#[test]
fn inputs_and_the_result_check_reach_the_fingerprints() {
    let project = Project::new();
    let manifest = |extra: &str| {
        project.write(
            "workloads/hello/workload.yaml",
            &format!("binary: hello\nargs: [\"/data/in.txt\"]\n{extra}"),
        );
        fingerprints(&project.plan(SPEC).unwrap())
    };
    let checked = manifest("result: '^PIPELINE_RESULT status=ok'\n");
    let with_env = manifest("result: '^PIPELINE_RESULT status=ok'\nenv: {MODE: fast}\n");
    // The image's environment is part of what the template sees.
    let changed_by_env = changed(&checked, &with_env);
    assert!(
        changed_by_env
            .iter()
            .any(|id| id.starts_with("render/hello/")),
        "{changed_by_env:?}"
    );
    // The result pattern is what a run checks; templates never see it.
    let unchecked = manifest("env: {MODE: fast}\n");
    let changed_by_result = changed(&with_env, &unchecked);
    assert!(
        changed_by_result
            .iter()
            .any(|id| id.starts_with("run/hello/")),
        "{changed_by_result:?}"
    );
    assert!(
        !changed_by_result.iter().any(|id| id.starts_with("render/")),
        "{changed_by_result:?}"
    );
}

const PRECOMPILED: &str = "\
experiment: demo
workloads:
  - name: hello
    languages: [alpha]
variants:
  optimized:
  precompiled:
    runtime: wasm
    targets: [linux/amd64, linux/arm64]
targets: [linux/amd64, linux/arm64, wasm]
runs:
  - hosts: [all]
    engines: [docker]
";

fn precompiled_project() -> Project {
    let project = Project::new();
    project.write(
        "templates/alpha/precompiled.Dockerfile.j2",
        "FROM scratch\n# alpha precompiled for {{ target.platform }}\n",
    );
    project
}

/// `(image path, host, runtime)` of every cell.
fn cells(plan: &Plan) -> Vec<(String, String, String)> {
    let experiment = &plan.experiment;
    experiment
        .cells
        .iter()
        .map(|cell| {
            (
                experiment.images[cell.image].path(),
                experiment.hosts[cell.host].name.clone(),
                cell.runtime.clone(),
            )
        })
        .collect()
}

#[test]
fn a_variant_with_the_wasm_runtime_runs_per_platform_on_it() {
    let plan = precompiled_project().plan(PRECOMPILED).unwrap();
    let cells = cells(&plan);
    let expect = |path: &str, host: &str, runtime: &str| {
        (path.to_string(), host.to_string(), runtime.to_string())
    };
    for cell in [
        expect("hello/alpha/optimized/linux-amd64", "amd", "runc"),
        expect("hello/alpha/optimized/wasm", "arm", "wasmtime"),
        // Pulled for its own platform, on hosts of that platform only, but
        // started by the wasm runtime.
        expect("hello/alpha/precompiled/linux-amd64", "amd", "wasmtime"),
        expect("hello/alpha/precompiled/linux-arm64", "arm", "wasmtime"),
    ] {
        assert!(cells.contains(&cell), "no {cell:?} in {cells:#?}");
    }
    assert!(
        !cells
            .iter()
            .any(|(path, host, _)| path == "hello/alpha/precompiled/linux-amd64" && host == "arm"),
        "{cells:#?}"
    );
    // The variant's `targets` leave out its wasm image: the plain module is
    // the other variant's.
    assert!(
        !ids_of(&plan.graph, StageKind::Build)
            .contains(&"build/hello/alpha/precompiled/wasm".to_string())
    );
    // One index over the variant's native platforms.
    assert_eq!(
        needs(&plan, "index/hello/alpha/precompiled"),
        [
            "push/hello/alpha/precompiled/linux-amd64",
            "push/hello/alpha/precompiled/linux-arm64",
        ]
    );
    let precompiled = plan
        .experiment
        .images
        .iter()
        .filter(|image| image.needs_precompiler())
        .map(pipeline::plan::Image::path)
        .collect::<Vec<_>>();
    assert_eq!(
        precompiled,
        [
            "hello/alpha/precompiled/linux-amd64",
            "hello/alpha/precompiled/linux-arm64"
        ]
    );
}

#[test]
fn a_variant_with_the_wasm_runtime_needs_hosts_of_its_platforms_with_that_runtime() {
    let spec = PRECOMPILED.replace(
        "    engines: [docker]\n",
        "    engines: [docker]\n    runtimes: {wasm: wasmedge}\n    variants: [precompiled]\n",
    );
    let errors = precompiled_project().errors(&spec);
    assert!(
        errors.iter().any(|error| error.ends_with(
            "no selected host can run target `linux/amd64`: it needs a host with `pipeline_platform: linux/amd64` and the `wasmedge` runtime"
        )),
        "{errors:#?}"
    );
}

#[test]
fn the_precompiler_is_part_of_the_builds_that_run_it_only() {
    let project = precompiled_project();
    // Missing: the plan is valid; the builds that need it fail and say where it was looked for.
    let missing = fingerprints(&project.plan(PRECOMPILED).unwrap());
    project.write("target/release/wasm-precompile", "one build\n");
    let first = fingerprints(&project.plan(PRECOMPILED).unwrap());
    project.write("target/release/wasm-precompile", "another build\n");
    let second = fingerprints(&project.plan(PRECOMPILED).unwrap());
    for (before, after) in [(&missing, &first), (&first, &second)] {
        let changed = changed(before, after);
        assert!(changed.contains(&"build/hello/alpha/precompiled/linux-arm64".to_string()));
        assert!(
            changed
                .iter()
                .all(|id| id.contains("/alpha/precompiled") || id == "aggregate"),
            "{changed:#?}"
        );
    }
}

#[test]
fn a_module_run_by_the_wasm_runtime_starts_in_slash() {
    let project = precompiled_project();
    project.write(
        "workloads/hello/workload.yaml",
        "binary: hello\nworkdir: /app\n",
    );
    let spec = PRECOMPILED.replace("linux/arm64, wasm]", "linux/arm64]");
    let errors = project.errors(&spec);
    assert!(
        errors
            .iter()
            .any(|error| error.contains("is built for wasm, where a module always starts in `/`")),
        "{errors:#?}"
    );
}

#[test]
fn until_plans_every_run_up_to_repetitions_and_shows_the_target() {
    let spec = format!(
        "{SPEC}measure:\n  repetitions: 12\n  until: {{ci_width: 0.05, min: 8, metric: run_ms}}\n"
    );
    let plan = Project::new().plan(&spec).unwrap();
    assert_eq!(run_order(&plan, "amd").len(), 2 * 12);
    let table = pipeline::plan::output::to_table(&plan);
    assert!(
        table.contains(
            "            until the 95 % interval of the median run_ms is within 5 % of it, after 8 to 12 runs\n"
        ),
        "{table}"
    );
    let json = pipeline::plan::output::to_json(&plan);
    assert_eq!(
        json["measure"]["until"],
        serde_json::json!({"metric": "run_ms", "ci_width": 0.05, "min": 8})
    );
}

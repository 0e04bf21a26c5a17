//! Every kind of bad input is reported at its exact line and column, and nothing runs.

mod common;

use common::{Project, SPEC};

/// The spec with `from` replaced by `to` (which must occur exactly once).
fn edit(from: &str, to: &str) -> String {
    assert_eq!(
        SPEC.matches(from).count(),
        1,
        "`{from}` must occur once in the base spec"
    );
    SPEC.replace(from, to)
}

fn assert_error(spec: &str, expected: &str) {
    let project = Project::new();
    let errors = project.errors(spec);
    assert!(
        errors.iter().any(|error| error.starts_with(expected)),
        "expected an error starting with\n  {expected}\ngot\n  {}",
        errors.join("\n  ")
    );
}

#[test]
fn the_base_spec_is_valid() {
    assert_eq!(Project::new().errors(SPEC), Vec::<String>::new());
}

#[test]
fn yaml_syntax_error() {
    assert_error(
        &edit(
            "targets: [linux/amd64, wasm]",
            "targets: [linux/amd64, wasm",
        ),
        "experiments/demo.yaml:6:5: illegal placement",
    );
}

#[test]
fn unknown_key() {
    assert_error(
        &format!("{SPEC}repetitons: 3\n"),
        "experiments/demo.yaml:9:1: unknown field `repetitons`",
    );
}

#[test]
fn wrong_type() {
    assert_error(
        &edit("targets: [linux/amd64, wasm]", "targets: linux/amd64"),
        "experiments/demo.yaml:5:10: ",
    );
}

#[test]
fn unknown_engine() {
    assert_error(
        &edit("engines: [docker]", "engines: [podman]"),
        "experiments/demo.yaml:8:15: unknown variant `podman`",
    );
}

#[test]
fn duplicate_key() {
    assert_error(
        &format!("{SPEC}experiment: again\n"),
        "experiments/demo.yaml:9:1: duplicate mapping key",
    );
}

#[test]
fn missing_required_key() {
    let spec = SPEC.lines().take(5).collect::<Vec<_>>().join("\n") + "\n";
    assert_error(&spec, "experiments/demo.yaml:");
    let errors = Project::new().errors(&spec);
    assert!(errors[0].contains("missing field `runs`"), "{errors:?}");
}

#[test]
fn unknown_host_or_group() {
    assert_error(
        &edit("hosts: [all]", "hosts: [all, gpu]"),
        "experiments/demo.yaml:7:18: unknown host or group `gpu`",
    );
}

#[test]
fn language_without_templates() {
    assert_error(
        &edit("languages: [alpha]", "languages: [alpha, cobol]"),
        "experiments/demo.yaml:4:24: language `cobol` has no templates",
    );
}

#[test]
fn workload_without_sources_for_a_language() {
    let project = Project::new();
    std::fs::remove_dir_all(project.path("workloads/hello/beta")).unwrap();
    let errors = project.errors(&edit("languages: [alpha]", "languages: [alpha, beta]"));
    assert_eq!(
        errors,
        [
            "experiments/demo.yaml:4:24: workload `hello` has no beta sources: there is no folder workloads/hello/beta/"
        ]
    );
}

#[test]
fn unknown_workload() {
    assert_error(
        &edit("name: hello", "name: goodbye"),
        "experiments/demo.yaml:3:11: unknown workload `goodbye`",
    );
}

#[test]
fn duplicate_workload() {
    let spec = edit(
        "targets:",
        "  - name: hello\n    languages: [beta]\ntargets:",
    );
    assert_error(
        &spec,
        "experiments/demo.yaml:5:11: duplicate workload `hello`",
    );
}

#[test]
fn duplicate_target() {
    assert_error(
        &edit("[linux/amd64, wasm]", "[linux/amd64, wasm, linux/x86_64]"),
        "experiments/demo.yaml:5:30: duplicate target `linux/amd64`",
    );
}

#[test]
fn invalid_platform() {
    assert_error(
        &edit("[linux/amd64, wasm]", "[linux/amd64, arm64]"),
        "experiments/demo.yaml:5:24: `arm64` is not an OCI platform",
    );
}

#[test]
fn platform_no_selected_host_can_run() {
    let spec = edit("[linux/amd64, wasm]", "[linux/amd64, linux/riscv64]");
    assert_error(
        &spec,
        "experiments/demo.yaml:5:24: no selected host can run target `linux/riscv64`",
    );
    // Selecting only the arm64 host leaves amd64 without a host.
    let spec = edit("hosts: [all]", "hosts: [edge]");
    assert_error(
        &spec,
        "experiments/demo.yaml:5:11: no selected host can run target `linux/amd64`",
    );
}

#[test]
fn empty_matrix() {
    assert_error(
        &edit("[linux/amd64, wasm]", "[]"),
        "experiments/demo.yaml:5:10: `targets` is empty",
    );
    assert_error(
        &edit("languages: [alpha]", "languages: []"),
        "experiments/demo.yaml:4:16: workload `hello` has no languages",
    );
}

#[test]
fn engine_missing_on_a_selected_host() {
    assert_error(
        &edit("engines: [docker]", "engines: [docker, containerd]"),
        "experiments/demo.yaml:8:23: host `arm` (from `all`) has no containerd engine",
    );
}

#[test]
fn unknown_base_reference() {
    let spec = format!("{SPEC}vars:\n  builder_image: {{base: rust-builder}}\n");
    assert_error(
        &spec,
        "experiments/demo.yaml:10:18: variable `builder_image` names unknown base `rust-builder`",
    );
}

#[test]
fn base_cycle_names_the_stages() {
    let spec = format!("{SPEC}bases:\n  a:\n    from: b\n  b:\n    from: a\n");
    let errors = Project::new().errors(&spec);
    assert_eq!(
        errors,
        ["experiments/demo.yaml:10:3: base images form a cycle: base/a -> base/b -> base/a"]
    );
}

#[test]
fn base_from_unknown_base() {
    let spec = format!("{SPEC}bases:\n  tools:\n    from: debian\n");
    assert_error(
        &spec,
        "experiments/demo.yaml:11:11: base `tools` is built from unknown base `debian`",
    );
}

#[test]
fn bad_duration() {
    let spec = format!("{SPEC}timeouts:\n  build: 10 parsecs\n");
    assert_error(
        &spec,
        "experiments/demo.yaml:10:10: `10 parsecs` is not a duration",
    );
}

#[test]
fn unknown_stage_kind_in_retries() {
    let spec = format!("{SPEC}retries:\n  compile: 2\n");
    assert_error(&spec, "experiments/demo.yaml:10:3: unknown field `compile`");
}

#[test]
fn zero_repetitions() {
    let spec = format!("{SPEC}measure:\n  repetitions: 0\n");
    assert_error(
        &spec,
        "experiments/demo.yaml:10:16: `repetitions` must be at least 1",
    );
}

#[test]
fn until_width_is_a_fraction_of_the_median() {
    for width in ["0", "5", "-0.1", ".nan"] {
        let spec = format!("{SPEC}measure:\n  repetitions: 20\n  until:\n    ci_width: {width}\n");
        assert_error(
            &spec,
            &format!(
                "experiments/demo.yaml:12:15: `ci_width` is {}, not a fraction above 0 and at most 1",
                width.replace(".nan", "NaN")
            ),
        );
    }
}

#[test]
fn until_min_needs_six_runs_and_at_most_repetitions() {
    let spec = format!("{SPEC}measure:\n  repetitions: 20\n  until: {{ci_width: 0.05, min: 5}}\n");
    assert_error(
        &spec,
        "experiments/demo.yaml:11:32: `min` is 5, fewer than the 6 runs a 95 % interval of the median needs",
    );
    let spec = format!("{SPEC}measure:\n  repetitions: 8\n  until: {{ci_width: 0.05, min: 9}}\n");
    assert_error(
        &spec,
        "experiments/demo.yaml:11:32: `min` is 9, more than `repetitions` (8), the most a cell gets",
    );
    // The default `min` is pointed at through `until` itself.
    let spec = format!("{SPEC}measure:\n  repetitions: 4\n  until: {{ci_width: 0.05}}\n");
    assert_error(
        &spec,
        "experiments/demo.yaml:11:10: `until` needs at least 6 runs per cell (its default `min`), more than `repetitions` (4)",
    );
}

#[test]
fn until_metric_is_a_results_column() {
    let spec = format!(
        "{SPEC}measure:\n  repetitions: 20\n  until: {{ci_width: 0.05, metric: boot_ms}}\n"
    );
    assert_error(
        &spec,
        "experiments/demo.yaml:11:35: unknown variant `boot_ms`",
    );
}

#[test]
fn a_valid_until_is_accepted() {
    let spec = format!(
        "{SPEC}measure:\n  repetitions: 20\n  until: {{ci_width: 0.05, min: 6, metric: run_ms}}\n"
    );
    assert_eq!(Project::new().errors(&spec), Vec::<String>::new());
}

#[test]
fn run_filter_names_something_not_built() {
    let spec = edit(
        "engines: [docker]",
        "engines: [docker]\n    languages: [beta]",
    );
    assert_error(
        &spec,
        "experiments/demo.yaml:9:17: this run block names language `beta`, which the experiment does not build",
    );
}

#[test]
fn settings_for_an_unused_language() {
    let spec = format!("{SPEC}languages:\n  beta:\n    vars: {{x: 1}}\n");
    assert_error(
        &spec,
        "experiments/demo.yaml:10:3: settings for language `beta`, which no workload uses",
    );
}

#[test]
fn marker_without_timestamp_capture() {
    let spec = edit(
        "    languages: [alpha]",
        "    languages: [alpha]\n    marker: {pattern: 'started', unit: ms}",
    );
    assert_error(
        &spec,
        "experiments/demo.yaml:5:13: marker `pattern` needs a named capture `ts`",
    );
}

#[test]
fn unknown_registry_placeholder() {
    let spec = format!("{SPEC}registry:\n  repository: '{{project}}/{{workload}}'\n");
    assert_error(
        &spec,
        "experiments/demo.yaml:10:15: unknown placeholder `{project}`",
    );
}

#[test]
fn variant_without_its_template() {
    let spec = format!("{SPEC}variants:\n  optimized:\n  debug:\n");
    assert_error(
        &spec,
        "experiments/demo.yaml:11:3: language `alpha` has no native template for variant `debug`",
    );
}

#[test]
fn duplicate_run_name() {
    let spec = edit(
        "  - hosts: [all]\n    engines: [docker]\n",
        "  - name: a\n    hosts: [all]\n    engines: [docker]\n  - name: a\n    hosts: [cloud]\n    engines: [containerd]\n",
    );
    assert_error(&spec, "experiments/demo.yaml:10:11: duplicate run name `a`");
}

#[test]
fn host_without_platform_points_into_the_inventory() {
    let project = Project::new();
    project.write(
        "inventory.yaml",
        &common::INVENTORY.replace("          pipeline_platform: linux/arm64\n", ""),
    );
    let errors = project.errors(SPEC);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("inventory.yaml:"), "{errors:?}");
    assert!(
        errors[0].contains("host `arm` has no `pipeline_platform` variable"),
        "{errors:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let spec =
        edit("hosts: [all]", "hosts: [gpu]").replace("languages: [alpha]", "languages: [cobol]");
    let errors = Project::new().errors(&spec);
    assert_eq!(errors.len(), 2, "{errors:?}");
}

/// The workload `hello` of the project, with this workload.yaml.
fn errors_with_manifest(spec: &str, manifest: &str) -> Vec<String> {
    let project = Project::new();
    project.write("workloads/hello/workload.yaml", manifest);
    project.errors(spec)
}

/// The base spec with `hello` built for linux/amd64 only, so any working directory is allowed.
fn native_spec(extra: &str) -> String {
    edit(
        "    languages: [alpha]\n",
        &format!("    languages: [alpha]\n    targets: [linux/amd64]\n{extra}"),
    )
}

#[test]
fn workload_target_outside_the_experiments() {
    assert_error(
        &edit(
            "    languages: [alpha]",
            "    languages: [alpha]\n    targets: [linux/arm64]",
        ),
        "experiments/demo.yaml:5:15: workload `hello` names target `linux/arm64`, which is not among the experiment's `targets`",
    );
    assert_error(
        &edit(
            "    languages: [alpha]",
            "    languages: [alpha]\n    targets: []",
        ),
        "experiments/demo.yaml:5:14: `targets` of workload `hello` is empty",
    );
}

#[test]
fn language_target_that_is_no_platform() {
    assert_error(
        &format!("{SPEC}languages:\n  alpha:\n    targets: [wasm, arm64]\n"),
        "experiments/demo.yaml:11:21: `arm64` is not an OCI platform",
    );
}

#[test]
fn workload_and_language_targets_that_share_none() {
    let spec = format!(
        "{}languages:\n  alpha:\n    targets: [linux/amd64]\n",
        edit(
            "    languages: [alpha]",
            "    languages: [alpha]\n    targets: [wasm]"
        )
    );
    assert_eq!(
        Project::new().errors(&spec),
        ["experiments/demo.yaml:5:14: workload `hello` has no targets left in language `alpha`"]
    );
}

#[test]
fn relative_workdir_in_the_spec() {
    assert_error(
        &native_spec("    workdir: app\n"),
        "experiments/demo.yaml:6:14: `workdir` `app` must be an absolute path",
    );
}

#[test]
fn a_line_break_in_workdir_cannot_start_an_instruction() {
    let errors = errors_with_manifest(
        &native_spec(""),
        "binary: hello\nresult: ok\nworkdir: \"/app\\nRUN rm -rf /\"\n",
    );
    assert_eq!(
        errors,
        [
            "workloads/hello/workload.yaml:3:10: `workdir` holds the control character '\\n': a line break would start a new Dockerfile instruction"
        ]
    );
}

#[test]
fn data_placements_are_checked_where_they_are_written() {
    let errors = errors_with_manifest(
        &native_spec(""),
        "binary: hello\nresult: ok\ndata:\n  - {from: alpha/main.src, to: /main.src}\n  - {from: data/missing.txt, to: in.txt}\n  - {from: data/in.txt, to: /in$HOME}\n",
    );
    assert_eq!(
        errors,
        [
            "workloads/hello/workload.yaml:4:12: `from` `alpha/main.src` must be `data/` or a path inside it: the image is built from the workload's data/ folder and its sources only",
            "workloads/hello/workload.yaml:5:12: `from` `data/missing.txt` does not exist: there is no workloads/hello/data/missing.txt",
            "workloads/hello/workload.yaml:6:29: `to` `/in$HOME` holds `$`, which a Dockerfile reads as quoting or a variable; paths may not hold `\"`, `\\` or `$`",
        ]
    );
}

#[test]
fn environment_names_and_values() {
    assert_error(
        &native_spec("    env: {1ST: x}\n"),
        "experiments/demo.yaml:6:11: environment variable name `1ST` must be letters, digits and `_`",
    );
    let errors = errors_with_manifest(
        &native_spec(""),
        "binary: hello\nresult: ok\nenv:\n  GREETING: \"hi\\nRUN rm -rf /\"\n",
    );
    assert_eq!(
        errors,
        [
            "workloads/hello/workload.yaml:4:13: the value of `GREETING` holds the control character '\\n': a line break would start a new Dockerfile instruction"
        ]
    );
}

#[test]
fn a_working_directory_for_wasm_images() {
    let errors = errors_with_manifest(SPEC, "binary: hello\nresult: ok\nworkdir: /app\n");
    assert_eq!(
        errors,
        [
            "workloads/hello/workload.yaml:3:10: workload `hello` is built for wasm, where a module always starts in `/`: WASI preview 1 has no working directory"
        ]
    );
}

#[test]
fn binary_that_is_no_file_name() {
    let errors = errors_with_manifest(SPEC, "binary: 'hel\"lo'\nresult: ok\n");
    assert_eq!(
        errors,
        [
            "workloads/hello/workload.yaml:1:9: `binary` `hel\"lo` must be a file name of letters, digits, `-`, `_`, `+` or `.`, not starting with `.` or `-`"
        ]
    );
}

#[test]
fn a_line_break_in_a_template_variable() {
    assert_error(
        &format!("{SPEC}vars:\n  cflags: \"-O2\\nRUN rm -rf /\"\n"),
        "experiments/demo.yaml:10:11: variable `cflags` holds a line break",
    );
}

//! Every limit of docs/spec.md ("Limits") and every file that is not a
//! regular file is refused with its location, quickly, and exits with 2.
//!
//! Each hostile case is timed; the bound asserted is generous so a loaded
//! machine does not make it flaky (they finish well under 2 s).

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Project, SPEC};
use pipeline::inventory::HostDirectory;
use pipeline::plan::{PlanError, plan_from_parts};
use serde_json::{Map, Value, json};

const TIME_BOUND: Duration = Duration::from_secs(10);

/// Runs `check` and asserts it finished within [`TIME_BOUND`].
fn timed<T>(what: &str, check: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let result = check();
    let elapsed = start.elapsed();
    eprintln!("{what}: {elapsed:?}");
    assert!(elapsed < TIME_BOUND, "{what} took {elapsed:?}");
    result
}

/// `path:line:col: message` of every problem, paths relative to the project.
fn errors(project: &Project, spec: &str) -> Vec<String> {
    let root = format!("{}/", project.dir.path().display());
    project
        .errors(spec)
        .into_iter()
        .map(|error| error.replace(&root, ""))
        .collect()
}

fn validate(project: &Project) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["validate", "experiments/demo.yaml", "--color", "never"])
        .current_dir(project.dir.path())
        .output()
        .expect("the pipeline binary runs")
}

/// Validates through the command line: exit 2, and stderr's first line.
fn validate_fails(project: &Project, spec: &str, what: &str) -> String {
    project.write("experiments/demo.yaml", spec);
    let output = timed(what, || validate(project));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
    let root = format!("{}/", project.dir.path().display());
    stderr.lines().next().unwrap_or_default().replace(&root, "")
}

#[cfg(unix)]
fn make_fifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create folder");
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
    // SAFETY: `name` is a valid NUL-terminated path that outlives the call.
    let status = unsafe { libc::mkfifo(name.as_ptr(), 0o644) };
    assert_eq!(status, 0, "mkfifo {}", path.display());
}

#[cfg(unix)]
fn symlink_to_dev_zero(path: &Path) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create folder");
    std::os::unix::fs::symlink("/dev/zero", path).expect("symlink");
}

#[test]
fn repetitions_over_the_limit_exit_2() {
    let project = Project::new();
    let first = validate_fails(
        &project,
        &format!("{SPEC}measure:\n  repetitions: 4294967295\n"),
        "repetitions 4294967295",
    );
    assert_eq!(
        first,
        "experiments/demo.yaml:10:16: error: `repetitions` is 4294967295, more than the limit of 10000"
    );
}

#[test]
fn repetitions_at_the_limit_are_accepted() {
    let project = Project::new();
    let plan = timed("repetitions 10000", || {
        project.plan(&format!("{SPEC}measure:\n  repetitions: 10000\n"))
    });
    assert!(plan.is_ok(), "{:?}", plan.err());
}

#[test]
fn warmup_over_the_limit() {
    let project = Project::new();
    assert_eq!(
        errors(&project, &format!("{SPEC}measure:\n  warmup: 10001\n")),
        ["experiments/demo.yaml:10:11: `warmup` is 10001, more than the limit of 10000"]
    );
}

#[test]
fn retries_over_the_limit() {
    let project = Project::new();
    assert_eq!(
        errors(&project, &format!("{SPEC}retries:\n  pull: 21\n")),
        ["experiments/demo.yaml:10:9: 21 retries is more than the limit of 20"]
    );
}

#[test]
fn timeouts_over_the_limit_exit_2() {
    let project = Project::new();
    let first = validate_fails(
        &project,
        &format!("{SPEC}timeouts:\n  build: 25h\n"),
        "timeout 25h",
    );
    assert_eq!(
        first,
        "experiments/demo.yaml:10:10: error: timeout `25h` is longer than the limit of 24h"
    );
    assert_eq!(
        errors(&project, &format!("{SPEC}timeouts:\n  build: 24h\n")),
        Vec::<String>::new()
    );
}

#[test]
fn stages_over_the_limit_are_counted_before_expansion() {
    let project = Project::new();
    project.write(
        "inventory.yaml",
        "all:\n  vars:\n    pipeline_registry: registry.test:5000\n    pipeline_runtimes: [runc, wasmtime]\n    pipeline_platform: linux/amd64\n  hosts:\n    h[0:99]:\n",
    );
    // 100 hosts × 2 images × 20,000 runs: 4,000,000 run stages.
    let spec = format!("{SPEC}measure:\n  repetitions: 10000\n  warmup: 10000\n");
    let found = timed("4,000,000 stages", || errors(&project, &spec));
    assert_eq!(
        found,
        [
            "experiments/demo.yaml:10:16: the plan has more than 1000000 stages, the limit: 200 cells × 20000 runs each"
        ]
    );
}

/// A host set too large to write as an inventory quickly: every host is an
/// amd64 machine with both engines and both runtimes.
struct ManyHosts {
    names: Vec<String>,
    vars: Map<String, Value>,
}

impl HostDirectory for ManyHosts {
    fn source_path(&self) -> &Path {
        Path::new("hosts.yaml")
    }

    fn expand(&self, pattern: &str) -> Option<Vec<String>> {
        (pattern == "all").then(|| self.names.clone())
    }

    fn host_vars(&self, _host: &str) -> Option<&Map<String, Value>> {
        Some(&self.vars)
    }

    fn host_location(&self, _host: &str) -> Option<(usize, usize)> {
        Some((1, 1))
    }
}

#[test]
fn cells_over_the_limit() {
    let project = Project::new();
    let spec_text = SPEC
        .replace(
            "    languages: [alpha]\n",
            "    languages: [alpha, beta]\n  - name: other\n    languages: [alpha, beta]\n",
        )
        .replace("engines: [docker]", "engines: [docker, containerd]")
        .replace(
            "    engines: [docker, containerd]\n",
            "    engines: [docker, containerd]\n    scenarios: [fresh, cached]\n",
        );
    project.write("experiments/demo.yaml", &spec_text);
    let spec = pipeline::spec::parse_spec(&spec_text, &project.spec_path()).expect("spec");
    let Value::Object(vars) = json!({
        "pipeline_registry": "registry.test:5000",
        "pipeline_platform": "linux/amd64",
        "pipeline_engines": ["docker", "containerd"],
        "pipeline_runtimes": ["runc", "wasmtime"],
    }) else {
        unreachable!()
    };
    // 8 images (2 workloads × 2 languages × 2 targets) × 2 engines × 2
    // scenarios = 32 cells a host.
    let hosts = ManyHosts {
        names: (0..32_000).map(|index| format!("h{index}")).collect(),
        vars,
    };
    let result = timed("1,024,000 cells", || {
        plan_from_parts(&spec, &project.spec_path(), project.dir.path(), &hosts)
    });
    let Err(PlanError::Invalid(diagnostics)) = result else {
        panic!("expected the cell limit, got {:?}", result.map(|_| ()));
    };
    let messages: Vec<String> = diagnostics
        .iter()
        .map(|diagnostic| {
            let location = diagnostic.location.as_ref().expect("located");
            format!(
                "{}:{}: {}",
                location.line, location.column, diagnostic.message
            )
        })
        .collect();
    assert_eq!(
        messages,
        ["9:12: the plan has more than 1000000 cells, the limit"]
    );
}

#[test]
fn nested_host_ranges_over_the_limit_exit_2() {
    let project = Project::new();
    project.write(
        "inventory.yaml",
        "all:\n  vars:\n    pipeline_registry: registry.test:5000\n  hosts:\n    h[0:9999][0:9999]:\n",
    );
    let first = validate_fails(&project, SPEC, "h[0:9999][0:9999]");
    assert_eq!(
        first,
        "./inventory.yaml:5:5: error: invalid host pattern `h[0:9999][0:9999]`: expands to more than 10000 hosts, the limit"
    );
}

#[test]
fn one_host_range_over_the_limit() {
    let project = Project::new();
    project.write("inventory.yaml", "all:\n  hosts:\n    web-[00001:10001]:\n");
    assert_eq!(
        timed("web-[00001:10001]", || errors(&project, SPEC)),
        [
            "inventory.yaml:3:5: invalid host pattern `web-[00001:10001]`: expands to more than 10000 hosts, the limit"
        ]
    );
}

#[test]
fn alias_bytes_over_the_limit_exit_2() {
    let project = Project::new();
    // 1 MiB aliased 65 times: few nodes, 65 MiB of text.
    let big = "x".repeat(1024 * 1024);
    let copies = vec!["*big"; 65].join(", ");
    project.write(
        "inventory.yaml",
        &format!("all:\n  vars:\n    big: &big \"{big}\"\n    copies: [{copies}]\n"),
    );
    let first = validate_fails(&project, SPEC, "65 MiB of aliases");
    // The 65th alias passes the budget: 13 columns of `    copies: [`, 6 per alias.
    assert_eq!(
        first,
        format!(
            "./inventory.yaml:4:{}: error: invalid yaml: aliases expand to more than 64 MiB of text, the limit",
            14 + 64 * 6
        )
    );
}

#[test]
fn a_spec_over_the_size_limit() {
    let project = Project::new();
    let padding = format!("# {}\n", "x".repeat(16 * 1024 * 1024));
    let found = timed("17 MiB spec", || {
        errors(&project, &format!("{SPEC}{padding}"))
    });
    assert_eq!(
        found,
        [
            "failed to read experiments/demo.yaml: the file is larger than 16 MiB, the limit for any file read"
        ]
    );
}

#[test]
fn a_workload_manifest_over_the_size_limit() {
    let project = Project::new();
    project.write(
        "workloads/hello/workload.yaml",
        &format!("binary: hello\n# {}\n", "x".repeat(16 * 1024 * 1024)),
    );
    assert_eq!(
        timed("17 MiB workload.yaml", || errors(&project, SPEC)),
        [
            "experiments/demo.yaml:3:11: failed to read workloads/hello/workload.yaml: the file is larger than 16 MiB, the limit for any file read"
        ]
    );
}

#[test]
fn template_defaults_over_the_size_limit() {
    let project = Project::new();
    project.write(
        "templates/alpha/defaults.yaml",
        &format!(
            "builder_image: scratch\n# {}\n",
            "x".repeat(16 * 1024 * 1024)
        ),
    );
    assert_eq!(
        timed("17 MiB defaults.yaml", || errors(&project, SPEC)),
        [
            "experiments/demo.yaml:4:17: failed to read templates/alpha/defaults.yaml: the file is larger than 16 MiB, the limit for any file read"
        ]
    );
}

#[test]
fn group_vars_over_the_size_limit() {
    let project = Project::new();
    project.write(
        "group_vars/all.yml",
        &format!("a: 1\n# {}\n", "x".repeat(16 * 1024 * 1024)),
    );
    assert_eq!(
        timed("17 MiB group_vars", || errors(&project, SPEC)),
        [
            "cannot read `group_vars/all.yml`: the file is larger than 16 MiB, the limit for any file read"
        ]
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_among_group_vars_exits_2_without_blocking() {
    let project = Project::new();
    make_fifo(&project.path("group_vars/all"));
    let first = validate_fails(&project, SPEC, "FIFO group_vars/all");
    assert_eq!(
        first,
        "./group_vars/all:1:1: error: cannot read: not a regular file but a FIFO"
    );
}

#[cfg(unix)]
#[test]
fn host_vars_linked_to_dev_zero_exit_2_without_reading() {
    let project = Project::new();
    symlink_to_dev_zero(&project.path("host_vars/amd.yml"));
    let first = validate_fails(&project, SPEC, "host_vars -> /dev/zero");
    assert_eq!(
        first,
        "./host_vars/amd.yml:1:1: error: cannot read: not a regular file but a device"
    );
}

#[cfg(unix)]
#[test]
fn a_spec_that_is_a_fifo() {
    let project = Project::new();
    make_fifo(&project.path("experiments/demo.yaml"));
    let output = timed("FIFO spec", || validate(&project));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().next(),
        Some("experiments/demo.yaml:1:1: error: cannot read: not a regular file but a FIFO")
    );
}

#[cfg(unix)]
#[test]
fn an_inventory_linked_to_dev_zero() {
    let project = Project::new();
    std::fs::remove_file(project.path("inventory.yaml")).expect("remove");
    symlink_to_dev_zero(&project.path("inventory.yaml"));
    assert_eq!(
        timed("inventory -> /dev/zero", || errors(&project, SPEC)),
        ["cannot read `inventory.yaml`: not a regular file but a device"]
    );
}

#[cfg(unix)]
#[test]
fn a_workload_manifest_linked_to_dev_zero() {
    let project = Project::new();
    std::fs::remove_file(project.path("workloads/hello/workload.yaml")).expect("remove");
    symlink_to_dev_zero(&project.path("workloads/hello/workload.yaml"));
    assert_eq!(
        timed("workload.yaml -> /dev/zero", || errors(&project, SPEC)),
        [
            "experiments/demo.yaml:3:11: failed to read workloads/hello/workload.yaml: not a regular file but a device"
        ]
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_in_a_workloads_sources_exits_2_without_blocking() {
    let project = Project::new();
    make_fifo(&project.path("workloads/hello/alpha/pipe"));
    let first = validate_fails(&project, SPEC, "FIFO in sources");
    assert_eq!(
        first,
        "experiments/demo.yaml:4:17: error: failed to read ./workloads/hello/alpha: ./workloads/hello/alpha/pipe: not a regular file but a FIFO"
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_in_data_is_refused_by_the_walk_and_the_hash_alike() {
    let project = Project::new();
    let data = project.path("workloads/hello/data");
    make_fifo(&data.join("pipe"));
    let walked = timed("tree::entries over a FIFO", || {
        pipeline::tree::entries(&data)
    });
    let hashed = timed("hash_tree over a FIFO", || {
        pipeline::plan::fingerprint::hash_tree(&data)
    });
    let walk_error = walked.expect_err("the walk refuses a FIFO").to_string();
    let hash_error = hashed.expect_err("the hash refuses a FIFO").to_string();
    assert!(
        walk_error.ends_with("workloads/hello/data/pipe: not a regular file but a FIFO"),
        "{walk_error}"
    );
    assert!(hash_error.ends_with(&walk_error), "{hash_error}");
}

#[test]
fn inventory_hosts_over_the_limit() {
    let project = Project::new();
    // Eleven patterns of 10,000 hosts each, every one within its own limit.
    let patterns: Vec<String> = (0..11)
        .map(|group| format!("    g{group}-[1:10000]:\n"))
        .collect();
    let patterns = patterns.concat();
    project.write("inventory.yaml", &format!("all:\n  hosts:\n{patterns}"));
    assert_eq!(
        timed("110,000 inventory hosts", || errors(&project, SPEC)),
        [
            "inventory.yaml:13:5: invalid host pattern `g10-[1:10000]`: the inventory has more than 100000 hosts, the limit"
        ]
    );
}

#[cfg(unix)]
#[test]
fn a_template_include_linked_to_dev_zero_fails_the_render() {
    let project = Project::new();
    project.write(
        "templates/alpha/optimized.Dockerfile.j2",
        "FROM scratch\n{% include \"shared/zero.j2\" %}\n",
    );
    symlink_to_dev_zero(&project.path("templates/shared/zero.j2"));
    let plan = project.plan(SPEC).expect("a link is hashed, not followed");
    let image = plan
        .experiment
        .images
        .iter()
        .find(|image| image.template.ends_with("optimized.Dockerfile.j2"))
        .expect("a native image");
    let rendered = timed("include -> /dev/zero", || {
        pipeline::render::render_dockerfile(
            project.dir.path(),
            &plan.experiment.name,
            image,
            pipeline::plan::fingerprint::FingerprintBuilder::new("test").finish(),
            &pipeline::render::Toolchain::new(),
        )
    });
    let error = rendered.expect_err("the include is refused").to_string();
    assert!(
        error.contains("cannot read template shared/zero.j2: not a regular file but a device"),
        "{error}"
    );
}

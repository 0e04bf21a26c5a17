//! Which stages a resumed apply redoes after one edit. Each case edits one
//! input of a fresh copy of a small project, plans it, and compares every
//! stage's fingerprint with a plan of the unedited project: the stages
//! that moved must be exactly the ones the case names. Every case also
//! checks that a rendered Dockerfile never changes without its render
//! fingerprint, and a build context never without its build fingerprint.
#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use common::Project;
use pipeline::plan::fingerprint::hash_tree;
use pipeline::plan::{Experiment, Image, StageKind, StageWork};
use pipeline::render::{Toolchain, render_dockerfile};
use pipeline::tree::entries;

/// Three workload/language pairs in two variants and three targets, bases
/// that only alpha uses (and one nobody uses), variables at every level,
/// and a spec-level marker for hello.
const SPEC: &str = r#"experiment: demo
vars:
  flags: "-O2"
  level: "3"
bases:
  os:
    debootstrap: {suite: trixie}
  tools:
    from: os
    packages: [gcc]
  spare:
    from: os
    packages: [make]
variants:
  optimized:
    vars: {strip: "yes"}
  unoptimized:
    vars: {strip: "no"}
languages:
  alpha:
    vars:
      builder_image: {base: tools}
      level: "2"
    variants:
      optimized:
        vars: {lto: fat}
  beta:
    vars: {extra: one}
workloads:
  - name: hello
    languages: [alpha, beta]
    marker: {pattern: 'HELLO_START=(?P<ts>\d+)', unit: ns}
  - name: other
    languages: [alpha]
targets: [linux/amd64, linux/arm64, wasm]
runs:
  - hosts: [all]
    engines: [docker]
    scenarios: [fresh, cached]
measure:
  repetitions: 2
"#;

/// Prints everything a template can see, so that any input the render
/// fingerprint misses shows up as a changed Dockerfile.
const TEMPLATE: &str = r#"{% include "shared.j2" %}INCLUDEFROM {{ vars.builder_image }}
# LANGUAGE TEMPLATE for {{ target.platform }} ({{ target.slug }}, {{ target.kind }})
# {{ experiment }} {{ language }} {{ variant }}
# workload {{ workload | tojson }}
# vars {{ vars | tojson }}
"#;

/// The common project plus what the cases edit: templates that include a
/// shared file beside the language folders (and, for alpha, one in a
/// sub-folder), a symlink and a script among hello/alpha's sources, a
/// marker in other's workload.yaml, and no `data/` for other.
fn fresh_project() -> Project {
    let project = Project::new();
    for language in ["alpha", "beta"] {
        let include = if language == "alpha" {
            r#"{% include "common/labels.j2" %}"#
        } else {
            ""
        };
        for template in ["optimized", "unoptimized", "wasm"] {
            project.write(
                &format!("templates/{language}/{template}.Dockerfile.j2"),
                &TEMPLATE
                    .replace("INCLUDE", include)
                    .replace("LANGUAGE", language)
                    .replace("TEMPLATE", template),
            );
        }
    }
    project.write("templates/shared.j2", "# shared\n");
    project.write("templates/common/labels.j2", "LABEL origin=common\n");
    project.write("workloads/hello/alpha/other.src", "more hello in alpha\n");
    project.write("workloads/hello/alpha/build.sh", "#!/bin/sh\n");
    symlink("main.src", project.path("workloads/hello/alpha/current")).expect("symlink");
    // Explicit modes, so the fixture does not depend on the umask.
    set_mode(&project, "workloads/hello/alpha/main.src", 0o644);
    set_mode(&project, "workloads/hello/alpha/build.sh", 0o644);
    project.write(
        "workloads/other/workload.yaml",
        "binary: other\nargs: []\nresult: '^PIPELINE_RESULT status=ok'\nmarker: {pattern: 'OTHER_START=(?P<ts>\\d+)', unit: ns}\n",
    );
    std::fs::remove_dir_all(project.path("workloads/other/data")).expect("remove data");
    project
}

/// The parts of an image a case selects by.
#[derive(Debug, Clone)]
struct ImageKey {
    workload: String,
    language: String,
    variant: String,
    target: String,
}

impl ImageKey {
    fn of(image: &Image) -> ImageKey {
        ImageKey {
            workload: image.workload.clone(),
            language: image.language.clone(),
            variant: image.variant.clone(),
            target: image.target.slug(),
        }
    }
}

/// One stage of a plan, described by names rather than indexes, so stages
/// of two plans compare.
#[derive(Debug)]
struct StageFacts {
    kind: StageKind,
    fingerprint: String,
    images: Vec<ImageKey>,
    host: Option<String>,
    base: Option<String>,
    round: Option<String>,
}

/// One entry of a build context as the builder's tar carries it: names,
/// contents, link targets and whether the owner may execute; the tar's
/// deterministic headers leave out owners, times and other permission bits.
#[derive(Debug, PartialEq, Eq)]
enum ContextEntry {
    Folder,
    Link { target: String },
    File { executable: bool, contents: Vec<u8> },
}

/// What one plan decides and produces without an engine: fingerprints,
/// Dockerfiles and build contexts, by stage id and image path.
struct Snapshot {
    stages: BTreeMap<String, StageFacts>,
    dockerfiles: BTreeMap<String, String>,
    contexts: BTreeMap<String, BTreeMap<String, ContextEntry>>,
}

fn snapshot(project: &Project, spec: &str) -> Snapshot {
    let plan = project.plan(spec).unwrap_or_else(|error| {
        panic!(
            "plan failed: {:?}",
            common::describe(&error, project.dir.path())
        )
    });
    let experiment = &plan.experiment;
    let mut stages = BTreeMap::new();
    let mut dockerfiles = BTreeMap::new();
    for (_, stage) in plan.graph.stages() {
        let image = |index: usize| ImageKey::of(&experiment.images[index]);
        let host = |index: usize| Some(experiment.hosts[index].name.clone());
        let (images, host, base, round) = match &stage.work {
            StageWork::Base { base } => (
                Vec::new(),
                None,
                Some(experiment.bases[*base].name.clone()),
                None,
            ),
            StageWork::Render { image: index } => {
                let text = render_dockerfile(
                    &experiment.project_root,
                    &experiment.name,
                    &experiment.images[*index],
                    stage.fingerprint,
                    &Toolchain::new(),
                )
                .unwrap_or_else(|error| panic!("{}: {error}", stage.id));
                dockerfiles.insert(experiment.images[*index].path(), text);
                (vec![image(*index)], None, None, None)
            }
            StageWork::Vendor { image: index }
            | StageWork::Build { image: index }
            | StageWork::Push { image: index } => (vec![image(*index)], None, None, None),
            StageWork::Index { images } => {
                (images.iter().map(|&i| image(i)).collect(), None, None, None)
            }
            StageWork::PrepareHost { host: index } => (Vec::new(), host(*index), None, None),
            StageWork::Pull {
                image: index,
                host: host_index,
                ..
            } => (vec![image(*index)], host(*host_index), None, None),
            StageWork::Run(run) => {
                let cell = &experiment.cells[run.cell];
                let round = if run.warmup {
                    format!("warmup-{}", run.iteration)
                } else {
                    run.iteration.to_string()
                };
                (vec![image(cell.image)], host(cell.host), None, Some(round))
            }
            StageWork::Aggregate => (Vec::new(), None, None, None),
        };
        stages.insert(
            stage.id.to_string(),
            StageFacts {
                kind: stage.kind,
                fingerprint: stage.fingerprint.to_hex(),
                images,
                host,
                base,
                round,
            },
        );
    }
    let contexts = experiment
        .images
        .iter()
        .map(|image| (image.path(), build_context(experiment, image)))
        .collect();
    Snapshot {
        stages,
        dockerfiles,
        contexts,
    }
}

/// The build context as the build stage assembles it: the language's
/// sources under `src/`, `data/` when the image has it, each folder walked
/// with `pipeline::tree::entries`, symbolic links not followed.
fn build_context(experiment: &Experiment, image: &Image) -> BTreeMap<String, ContextEntry> {
    let workload = experiment
        .project_root
        .join("workloads")
        .join(&image.workload);
    let mut folders = vec![("src", workload.join(&image.language))];
    if image.has_data {
        folders.push(("data", workload.join("data")));
    }
    let mut context = BTreeMap::new();
    for (name, folder) in folders {
        context.insert(name.to_string(), describe_entry(&folder));
        for entry in entries(&folder).expect("walk sources") {
            let inside = Path::new(name).join(&entry.relative);
            context.insert(
                inside.to_string_lossy().into_owned(),
                describe_entry(&folder.join(&entry.relative)),
            );
        }
    }
    context
}

fn describe_entry(path: &Path) -> ContextEntry {
    let metadata = std::fs::symlink_metadata(path).expect("metadata");
    let executable = metadata.permissions().mode() & 0o100 != 0;
    if metadata.file_type().is_symlink() {
        let target = std::fs::read_link(path).expect("read link");
        ContextEntry::Link {
            target: target.to_string_lossy().into_owned(),
        }
    } else if metadata.is_dir() {
        ContextEntry::Folder
    } else {
        ContextEntry::File {
            executable,
            contents: std::fs::read(path).expect("read file"),
        }
    }
}

type Matcher = Box<dyn Fn(&StageFacts) -> bool>;

fn nothing() -> Matcher {
    Box::new(|_| false)
}

/// The stage kinds whose fingerprints contain a `from` fingerprint of the same image.
fn downstream(from: StageKind) -> &'static [StageKind] {
    use StageKind::{Aggregate, Build, Index, Pull, Push, Render, Run};
    match from {
        Render => &[Render, Build, Push, Index, Pull, Run, Aggregate],
        Build => &[Build, Push, Index, Pull, Run, Aggregate],
        Push => &[Push, Index, Pull, Run, Aggregate],
        Run => &[Run, Aggregate],
        other => panic!("no image chain starts at {other}"),
    }
}

/// `from` and everything after it for the images `select` picks, and the aggregate.
fn image_chain(from: StageKind, select: impl Fn(&ImageKey) -> bool + 'static) -> Matcher {
    let kinds = downstream(from);
    Box::new(move |stage| {
        kinds.contains(&stage.kind)
            && (stage.kind == StageKind::Aggregate || stage.images.iter().any(&select))
    })
}

/// A host's prepare stage, its pulls and runs, and the aggregate.
fn host(name: &'static str) -> Matcher {
    Box::new(move |stage| match stage.kind {
        StageKind::PrepareHost | StageKind::Pull | StageKind::Run => {
            stage.host.as_deref() == Some(name)
        }
        StageKind::Aggregate => true,
        _ => false,
    })
}

fn bases(names: &'static [&'static str]) -> Matcher {
    Box::new(move |stage| {
        stage.kind == StageKind::Base && stage.base.as_deref().is_some_and(|b| names.contains(&b))
    })
}

fn aggregate() -> Matcher {
    Box::new(|stage| stage.kind == StageKind::Aggregate)
}

fn any_of(matchers: Vec<Matcher>) -> Matcher {
    Box::new(move |stage| matchers.iter().any(|matcher| matcher(stage)))
}

fn runs_of_round(round: &'static str) -> Matcher {
    Box::new(move |stage| stage.kind == StageKind::Run && stage.round.as_deref() == Some(round))
}

struct Case {
    name: &'static str,
    /// Edits the fresh project's files and the spec text.
    change: fn(&Project, &mut String),
    /// Stages present in both plans whose fingerprint must move.
    moves: Matcher,
    /// Stages that only the edited plan has.
    appears: Matcher,
}

fn case(name: &'static str, change: fn(&Project, &mut String), moves: Matcher) -> Case {
    Case {
        name,
        change,
        moves,
        appears: nothing(),
    }
}

/// Replaces the one occurrence of `from`, so an edit cannot silently miss
/// when the fixture changes.
fn edit(text: &mut String, from: &str, to: &str) {
    assert_eq!(text.matches(from).count(), 1, "`{from}` in {text}");
    *text = text.replacen(from, to, 1);
}

fn edit_file(project: &Project, relative: &str, from: &str, to: &str) {
    let mut text = std::fs::read_to_string(project.path(relative)).expect("read");
    edit(&mut text, from, to);
    project.write(relative, &text);
}

fn set_mode(project: &Project, relative: &str, mode: u32) {
    std::fs::set_permissions(
        project.path(relative),
        std::fs::Permissions::from_mode(mode),
    )
    .expect("chmod");
}

/// Host variables of `arm` and `amd` in the shared inventory end with these lines.
const ARM_LAST: &str = "pipeline_engines: [docker]\n";
const AMD_LAST: &str = "pipeline_engines: [docker, containerd]\n";

fn add_host_var(project: &Project, last: &str, line: &str) {
    edit_file(
        project,
        "inventory.yaml",
        last,
        &format!("{last}          {line}\n"),
    );
}

fn cases() -> Vec<Case> {
    use StageKind::{Build, Push, Render, Run};
    vec![
        case("nothing changes", |_, _| {}, nothing()),
        // Templates.
        case(
            "a template of beta",
            |p, _| {
                edit_file(
                    p,
                    "templates/beta/wasm.Dockerfile.j2",
                    "# workload",
                    "# more\n# workload",
                );
            },
            image_chain(Render, |i| i.language == "beta"),
        ),
        case(
            "a new file in beta's template folder",
            |p, _| p.write("templates/beta/README.md", "notes\n"),
            image_chain(Render, |i| i.language == "beta"),
        ),
        case(
            "a shared include beside the language folders",
            |p, _| p.write("templates/shared.j2", "# shared, edited\n"),
            image_chain(Render, |_| true),
        ),
        // The template loader reads all of templates/, not only the language's
        // folder; which language includes a shared folder is not known without
        // parsing every template, so it counts for all of them.
        case(
            "an include in a sub-folder of templates/ that alpha's templates use",
            |p, _| p.write("templates/common/labels.j2", "LABEL origin=edited\n"),
            image_chain(Render, |_| true),
        ),
        case(
            "defaults.yaml of beta",
            |p, _| p.write("templates/beta/defaults.yaml", "builder_image: busybox\n"),
            image_chain(Render, |i| i.language == "beta"),
        ),
        case(
            "the native template of a variant",
            |_, s| {
                edit(
                    s,
                    "    vars: {strip: \"no\"}\n",
                    "    vars: {strip: \"no\"}\n    templates: {native: optimized.Dockerfile.j2}\n",
                );
            },
            image_chain(Render, |i| i.variant == "unoptimized" && i.target != "wasm"),
        ),
        // Template variables, at every level.
        case(
            "a spec-level variable",
            |_, s| edit(s, "flags: \"-O2\"", "flags: \"-O3\""),
            image_chain(Render, |_| true),
        ),
        case(
            "a spec-level variable that alpha overrides",
            |_, s| edit(s, "level: \"3\"", "level: \"4\""),
            image_chain(Render, |i| i.language == "beta"),
        ),
        case(
            "a language variable of beta",
            |_, s| edit(s, "extra: one", "extra: two"),
            image_chain(Render, |i| i.language == "beta"),
        ),
        case(
            "a variant variable",
            |_, s| edit(s, "strip: \"no\"", "strip: \"partly\""),
            image_chain(Render, |i| i.variant == "unoptimized"),
        ),
        case(
            "a language-variant variable of alpha/optimized",
            |_, s| edit(s, "lto: fat", "lto: thin"),
            image_chain(Render, |i| {
                i.language == "alpha" && i.variant == "optimized"
            }),
        ),
        // The workload manifest and the spec's workload entries.
        case(
            "args in hello's workload.yaml",
            |p, _| {
                edit_file(
                    p,
                    "workloads/hello/workload.yaml",
                    "[\"/data/in.txt\"]",
                    "[\"/data/in.txt\", \"-v\"]",
                );
            },
            image_chain(Render, |i| i.workload == "hello"),
        ),
        case(
            "args given for other in the spec",
            |_, s| {
                edit(
                    s,
                    "  - name: other\n",
                    "  - name: other\n    args: [--fast]\n",
                );
            },
            image_chain(Render, |i| i.workload == "other"),
        ),
        case(
            "the binary in other's workload.yaml",
            |p, _| {
                edit_file(
                    p,
                    "workloads/other/workload.yaml",
                    "binary: other",
                    "binary: other2",
                );
            },
            image_chain(Render, |i| i.workload == "other"),
        ),
        // Only runs check the result; the build context does not carry workload.yaml.
        case(
            "the result pattern in hello's workload.yaml",
            |p, _| {
                edit_file(
                    p,
                    "workloads/hello/workload.yaml",
                    "status=ok",
                    "status=(ok|fine)",
                );
            },
            image_chain(Run, |i| i.workload == "hello"),
        ),
        case(
            "the marker in other's workload.yaml",
            |p, _| {
                edit_file(
                    p,
                    "workloads/other/workload.yaml",
                    "OTHER_START",
                    "OTHER_BEGIN",
                );
            },
            image_chain(Run, |i| i.workload == "other"),
        ),
        // No stage reads the description.
        case(
            "a description added to hello's workload.yaml",
            |p, _| {
                edit_file(
                    p,
                    "workloads/hello/workload.yaml",
                    "binary:",
                    "description: says hello\nbinary:",
                );
            },
            nothing(),
        ),
        case(
            "the marker pattern of hello in the spec",
            |_, s| edit(s, "HELLO_START", "HELLO_BEGIN"),
            image_chain(Run, |i| i.workload == "hello"),
        ),
        // The run converts the marker's timestamp with this unit.
        case(
            "the marker unit of hello in the spec",
            |_, s| edit(s, "unit: ns", "unit: us"),
            image_chain(Run, |i| i.workload == "hello"),
        ),
        // data/.
        case(
            "a file in hello's data/",
            |p, _| p.write("workloads/hello/data/in.txt", "other input\n"),
            image_chain(Build, |i| i.workload == "hello"),
        ),
        case(
            "a new file in hello's data/",
            |p, _| p.write("workloads/hello/data/more.txt", "more input\n"),
            image_chain(Build, |i| i.workload == "hello"),
        ),
        case(
            "data/ appears in other",
            |p, _| p.write("workloads/other/data/in.txt", "input\n"),
            image_chain(Render, |i| i.workload == "other"),
        ),
        case(
            "data/ disappears from hello",
            |p, _| std::fs::remove_dir_all(p.path("workloads/hello/data")).expect("remove"),
            image_chain(Render, |i| i.workload == "hello"),
        ),
        case(
            "a target/ folder with junk in hello's data/",
            |p, _| p.write("workloads/hello/data/target/cache.bin", "junk\n"),
            nothing(),
        ),
        // Sources.
        case(
            "a source file of hello/beta",
            |p, _| p.write("workloads/hello/beta/main.src", "hello in beta, faster\n"),
            image_chain(Build, |i| i.workload == "hello" && i.language == "beta"),
        ),
        case(
            "a new source file in hello/beta",
            |p, _| p.write("workloads/hello/beta/extra.src", "extra\n"),
            image_chain(Build, |i| i.workload == "hello" && i.language == "beta"),
        ),
        case(
            "a source file of hello/alpha renamed",
            |p, _| {
                std::fs::rename(
                    p.path("workloads/hello/alpha/other.src"),
                    p.path("workloads/hello/alpha/renamed.src"),
                )
                .expect("rename");
            },
            image_chain(Build, |i| i.workload == "hello" && i.language == "alpha"),
        ),
        case(
            "a target/ folder with junk in hello/alpha's sources",
            |p, _| p.write("workloads/hello/alpha/target/debug/hello", "junk\n"),
            nothing(),
        ),
        case(
            "a .git/ folder with junk in hello/alpha's sources",
            |p, _| p.write("workloads/hello/alpha/.git/HEAD", "ref: refs/heads/main\n"),
            nothing(),
        ),
        case(
            "a symlink's target in hello/alpha's sources",
            |p, _| {
                let link = p.path("workloads/hello/alpha/current");
                std::fs::remove_file(&link).expect("remove link");
                symlink("other.src", link).expect("symlink");
            },
            image_chain(Build, |i| i.workload == "hello" && i.language == "alpha"),
        ),
        case(
            "the executable bit of a source file",
            |p, _| set_mode(p, "workloads/hello/alpha/build.sh", 0o755),
            image_chain(Build, |i| i.workload == "hello" && i.language == "alpha"),
        ),
        // The builder's tar keeps only the owner's executable bit.
        case(
            "a source file's permissions other than the executable bit",
            |p, _| set_mode(p, "workloads/hello/alpha/main.src", 0o600),
            nothing(),
        ),
        // The builder's tar carries folders, empty ones too.
        case(
            "an empty folder in hello/alpha's sources",
            |p, _| std::fs::create_dir(p.path("workloads/hello/alpha/empty")).expect("mkdir"),
            image_chain(Build, |i| i.workload == "hello" && i.language == "alpha"),
        ),
        // Inventory.
        case(
            "the cgroup parent of arm",
            |p, _| add_host_var(p, ARM_LAST, "pipeline_cgroup_parent: bench.slice"),
            host("arm"),
        ),
        case(
            "the docker socket of amd",
            |p, _| {
                add_host_var(
                    p,
                    AMD_LAST,
                    "pipeline_docker_socket: /run/other-docker.sock",
                );
            },
            host("amd"),
        ),
        case(
            "the containerd pull endpoint of amd",
            |p, _| {
                add_host_var(
                    p,
                    AMD_LAST,
                    "pipeline_containerd_pull_endpoint: registry.test:5443",
                );
            },
            host("amd"),
        ),
        case(
            "the address of arm",
            |p, _| edit_file(p, "inventory.yaml", "10.0.0.2", "10.0.0.3"),
            host("arm"),
        ),
        case(
            "the parallelism of amd",
            |p, _| add_host_var(p, AMD_LAST, "pipeline_max_parallel: 2"),
            nothing(),
        ),
        case(
            "the ssh user of arm",
            |p, _| add_host_var(p, ARM_LAST, "ansible_user: bench"),
            nothing(),
        ),
        // Registry.
        case(
            "the registry address",
            |p, _| {
                edit_file(
                    p,
                    "inventory.yaml",
                    "registry.test:5000",
                    "registry.test:5001",
                );
            },
            // Bases are tagged and pushed under the registry; alpha's vars name a base by that ref.
            any_of(vec![
                bases(&["os", "tools", "spare"]),
                image_chain(Render, |i| i.language == "alpha"),
                image_chain(Push, |_| true),
            ]),
        ),
        case(
            "the registry tag pattern",
            |_, s| s.push_str("registry:\n  tag: \"{variant}-v2\"\n"),
            image_chain(Push, |_| true),
        ),
        // Bases.
        case(
            "the packages of base tools",
            |_, s| edit(s, "packages: [gcc]", "packages: [gcc, g++]"),
            any_of(vec![
                bases(&["tools"]),
                image_chain(Render, |i| i.language == "alpha"),
            ]),
        ),
        case(
            "the suite of base os",
            |_, s| edit(s, "suite: trixie", "suite: bookworm"),
            any_of(vec![
                bases(&["os", "tools", "spare"]),
                image_chain(Render, |i| i.language == "alpha"),
            ]),
        ),
        case(
            "the packages of a base no image uses",
            |_, s| edit(s, "packages: [make]", "packages: [make, cmake]"),
            bases(&["spare"]),
        ),
        // Measurement.
        Case {
            appears: runs_of_round("2"),
            ..case(
                "one more repetition",
                |_, s| edit(s, "repetitions: 2", "repetitions: 3"),
                aggregate(),
            )
        },
        Case {
            appears: runs_of_round("warmup-0"),
            ..case(
                "a warm-up round",
                |_, s| s.push_str("  warmup: 1\n"),
                aggregate(),
            )
        },
        case(
            "shuffled run order",
            |_, s| s.push_str("  order: shuffled\n  seed: 7\n"),
            // The same runs with the same fingerprints; only their order differs.
            nothing(),
        ),
        // Settings that do not change what any stage produces.
        case(
            "the experiment's description",
            |_, s| s.push_str("description: a demo\n"),
            nothing(),
        ),
        case(
            "a timeout for runs",
            |_, s| s.push_str("timeouts:\n  run: 10m\n"),
            nothing(),
        ),
    ]
}

/// `build ×6 (build/a, build/b, …)` per kind, so a failure reads at a glance.
fn summarise(ids: &BTreeSet<&String>, stages: &BTreeMap<String, StageFacts>) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    let mut by_kind: BTreeMap<StageKind, Vec<&str>> = BTreeMap::new();
    for id in ids {
        by_kind.entry(stages[*id].kind).or_default().push(id);
    }
    by_kind
        .iter()
        .map(|(kind, ids)| {
            let shown: Vec<&str> = ids.iter().take(3).copied().collect();
            let more = if ids.len() > shown.len() { ", …" } else { "" };
            format!("{kind} ×{} ({}{more})", ids.len(), shown.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every way the edited plan differs from what the case expects.
fn problems(case: &Case, before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut problems = Vec::new();
    let common: Vec<&String> = before
        .stages
        .keys()
        .filter(|id| after.stages.contains_key(*id))
        .collect();
    let moved: BTreeSet<&String> = common
        .iter()
        .copied()
        .filter(|id| before.stages[*id].fingerprint != after.stages[*id].fingerprint)
        .collect();
    let expected: BTreeSet<&String> = common
        .iter()
        .copied()
        .filter(|id| (case.moves)(&before.stages[*id]))
        .collect();
    let unexpected: BTreeSet<&String> = moved.difference(&expected).copied().collect();
    let still: BTreeSet<&String> = expected.difference(&moved).copied().collect();
    if !unexpected.is_empty() {
        problems.push(format!(
            "moved, not expected: {}",
            summarise(&unexpected, &before.stages)
        ));
    }
    if !still.is_empty() {
        problems.push(format!(
            "expected to move, did not: {}",
            summarise(&still, &before.stages)
        ));
    }
    let appeared: BTreeSet<&String> = after
        .stages
        .keys()
        .filter(|id| !before.stages.contains_key(*id))
        .collect();
    let expected_new: BTreeSet<&String> = after
        .stages
        .iter()
        .filter(|(_, stage)| (case.appears)(stage))
        .map(|(id, _)| id)
        .collect();
    if appeared != expected_new {
        let extra: BTreeSet<&String> = appeared.difference(&expected_new).copied().collect();
        let absent: BTreeSet<&String> = expected_new.difference(&appeared).copied().collect();
        problems.push(format!(
            "new stages differ: unexpected {}; missing {}",
            summarise(&extra, &after.stages),
            summarise(&absent, &after.stages)
        ));
    }
    let gone: BTreeSet<&String> = before
        .stages
        .keys()
        .filter(|id| !after.stages.contains_key(*id))
        .collect();
    if !gone.is_empty() {
        problems.push(format!(
            "stages disappeared: {}",
            summarise(&gone, &before.stages)
        ));
    }
    // What the stages produce must not change unless their fingerprint does.
    let unchanged = |id: &str| {
        before
            .stages
            .get(id)
            .zip(after.stages.get(id))
            .is_some_and(|(old, new)| old.fingerprint == new.fingerprint)
    };
    for (path, text) in &before.dockerfiles {
        if after.dockerfiles.get(path) != Some(text) && unchanged(&format!("render/{path}")) {
            problems.push(format!(
                "the Dockerfile of {path} changed, its render fingerprint did not"
            ));
        }
    }
    for (path, context) in &before.contexts {
        if after.contexts.get(path) != Some(context) && unchanged(&format!("build/{path}")) {
            problems.push(format!(
                "the build context of {path} changed, its build fingerprint did not"
            ));
        }
    }
    problems
}

#[test]
fn each_input_moves_exactly_the_stages_that_depend_on_it() {
    let before = snapshot(&fresh_project(), SPEC);
    let mut failures = Vec::new();
    for case in cases() {
        let project = fresh_project();
        let mut spec = SPEC.to_string();
        (case.change)(&project, &mut spec);
        let after = snapshot(&project, &spec);
        let problems = problems(&case, &before, &after);
        if !problems.is_empty() {
            failures.push(format!("{}:\n  {}", case.name, problems.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) moved the wrong stages:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The build context and the source fingerprint both come from
/// `pipeline::tree::entries`: target/ and .git/ are left out of both, at
/// any depth, and every file the context sends is hashed.
#[test]
fn the_build_context_sends_exactly_what_the_source_hash_covers() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let root = dir.path();
    let write = |relative: &str, text: &str| {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create folder");
        std::fs::write(path, text).expect("write");
    };
    write("main.src", "main\n");
    write("lib/util.src", "util\n");
    let clean = hash_tree(root).expect("hash");
    for junk in [
        "target/debug/app",
        ".git/HEAD",
        "lib/target/util.o",
        "lib/.git/config",
    ] {
        write(junk, "junk\n");
    }
    let sent = entries(root).expect("entries");
    let listed: Vec<String> = sent
        .iter()
        .map(|entry| entry.relative.to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, ["lib", "lib/util.src", "main.src"]);
    assert_eq!(
        hash_tree(root).expect("hash"),
        clean,
        "junk under target/ or .git/ moved the hash"
    );
    for entry in sent.iter().filter(|entry| !entry.is_dir) {
        let path = root.join(&entry.relative);
        let original = std::fs::read(&path).expect("read");
        std::fs::write(&path, "edited\n").expect("write");
        assert_ne!(
            hash_tree(root).expect("hash"),
            clean,
            "{} is sent but not hashed",
            entry.relative.display()
        );
        std::fs::write(&path, original).expect("restore");
    }
    assert_eq!(hash_tree(root).expect("hash"), clean);
}

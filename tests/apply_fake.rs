//! `apply` end to end on fake backends (tests/common/fakes.rs): the walker,
//! the stage handlers, the journal and the Parquet tables together, with
//! failures that are hard to produce on the lab — a registry answering 503,
//! a dropped SSH session, a hung container, a panic — and interrupts,
//! resumes and `--only`. tests/apply_lab.rs runs the real backends.

mod common;
#[path = "common/fakes.rs"]
mod fakes;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use common::Project;
use fakes::{BuildFault, CallMatch, Fakes, HostFault};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipeline::apply::{ApplyRun, OutputLayout, PipelineWorker, run_plan};
use pipeline::events::{EventBody, EventSink, SinkError, StageEvent};
use pipeline::exec::{ApplySummary, Backoff};
use pipeline::journal::read_journal;
use pipeline::plan::{Plan, StageKind, StageWork};
use pipeline::spec::{Engine, Scenario};
use tokio::sync::Notify;

/// Two languages on three targets, on an amd64 host (Docker and
/// containerd) and an arm64 host (Docker); fresh and cached cells, so
/// there are pull stages as well as runs.
const SPEC: &str = "\
experiment: demo
workloads:
  - name: hello
    languages: [alpha, beta]
targets: [linux/amd64, linux/arm64, wasm]
runs:
  - hosts: [all]
    engines: [docker]
    scenarios: [fresh, cached]
  - hosts: [amd]
    engines: [containerd]
    scenarios: [fresh]
    targets: [linux/amd64, wasm]
measure:
  repetitions: 2
  warmup: 1
";

/// Retries wait milliseconds, not the default second.
const QUICK_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(10),
    max: Duration::from_millis(50),
};

fn plan(project: &Project, spec: &str) -> Arc<Plan> {
    Arc::new(project.plan(spec).expect("valid plan"))
}

fn image_ref(plan: &Plan, path: &str) -> String {
    plan.experiment
        .images
        .iter()
        .find(|image| image.path() == path)
        .unwrap_or_else(|| panic!("no image {path}"))
        .image_ref()
}

/// Keeps every event; can fire `trip` once `after` measured runs succeeded.
#[derive(Default)]
struct Recorder {
    events: Vec<StageEvent>,
    trip: Option<Trip>,
}

struct Trip {
    plan: Arc<Plan>,
    after: usize,
    seen: usize,
    notify: Arc<Notify>,
}

impl Recorder {
    fn interrupting(plan: &Arc<Plan>, after: usize, notify: &Arc<Notify>) -> Recorder {
        Recorder {
            events: Vec::new(),
            trip: Some(Trip {
                plan: Arc::clone(plan),
                after,
                seen: 0,
                notify: Arc::clone(notify),
            }),
        }
    }

    fn of_stage(&self, stage: &str) -> impl Iterator<Item = &EventBody> {
        self.events
            .iter()
            .filter(move |event| event.stage.as_str() == stage)
            .map(|event| &event.body)
    }

    fn retry_errors(&self, stage: &str) -> Vec<String> {
        self.of_stage(stage)
            .filter_map(|body| match body {
                EventBody::Retrying { error, .. } => Some(error.clone()),
                _ => None,
            })
            .collect()
    }

    /// The stages that were retried after an error containing `error_part`.
    fn retried_stages(&self, error_part: &str) -> Vec<&str> {
        self.events
            .iter()
            .filter(|event| {
                matches!(&event.body, EventBody::Retrying { error, .. } if error.contains(error_part))
            })
            .map(|event| event.stage.as_str())
            .collect()
    }

    fn succeeded(&self, stage: &str) -> bool {
        self.of_stage(stage)
            .any(|body| matches!(body, EventBody::Succeeded { .. }))
    }

    fn count(&self, kind: StageKind, body: impl Fn(&EventBody) -> bool) -> usize {
        self.events
            .iter()
            .filter(|event| event.kind == kind && body(&event.body))
            .count()
    }
}

impl EventSink for Recorder {
    fn on_event(&mut self, event: &StageEvent) -> Result<(), SinkError> {
        if let Some(trip) = &mut self.trip
            && matches!(event.body, EventBody::Succeeded { .. })
            && let Some(node) = trip.plan.graph.node(&event.stage)
            && matches!(&trip.plan.graph.stage(node).work, StageWork::Run(run) if !run.warmup)
        {
            trip.seen += 1;
            if trip.seen == trip.after {
                trip.notify.notify_one();
            }
        }
        self.events.push(event.clone());
        Ok(())
    }
}

/// One `pipeline apply` as src/main.rs runs it, with the fakes as backends.
async fn apply(
    plan: &Arc<Plan>,
    experiment_plan: &Arc<Plan>,
    fakes: &Fakes,
    out_root: &Path,
    recorder: &mut Recorder,
    interrupt: impl Future<Output = ()>,
) -> ApplySummary {
    let layout = OutputLayout::new(out_root, &experiment_plan.experiment.name);
    let worker = Arc::new(PipelineWorker::new(
        plan,
        fakes.backends(),
        layout.dir.clone(),
    ));
    let run = ApplyRun {
        plan: Arc::clone(plan),
        experiment_plan: Arc::clone(experiment_plan),
        layout: &layout,
        worker,
        forced: Vec::new(),
        backoff: QUICK_BACKOFF,
    };
    run_plan(run, recorder, interrupt).await.expect("apply")
}

async fn apply_all(plan: &Arc<Plan>, fakes: &Fakes, out_root: &Path) -> (ApplySummary, Recorder) {
    apply_recording(
        plan,
        fakes,
        out_root,
        Recorder::default(),
        std::future::pending(),
    )
    .await
}

/// An apply interrupted once `runs` measured runs have succeeded.
async fn apply_interrupted(
    plan: &Arc<Plan>,
    fakes: &Fakes,
    out_root: &Path,
    runs: usize,
) -> (ApplySummary, Recorder) {
    let notify = Arc::new(Notify::new());
    let recorder = Recorder::interrupting(plan, runs, &notify);
    apply_recording(plan, fakes, out_root, recorder, notify.notified()).await
}

/// The whole plan applied, its events into `recorder`.
async fn apply_recording(
    plan: &Arc<Plan>,
    fakes: &Fakes,
    out_root: &Path,
    mut recorder: Recorder,
    interrupt: impl Future<Output = ()>,
) -> (ApplySummary, Recorder) {
    let summary = apply(plan, plan, fakes, out_root, &mut recorder, interrupt).await;
    (summary, recorder)
}

/// The rows of a Parquet table, each as its `columns` joined with `|`.
fn table_keys(path: &Path, columns: &[&str]) -> Vec<String> {
    if !path.exists() {
        return Vec::new();
    }
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(ParquetRecordBatchReaderBuilder::build)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut keys = Vec::new();
    for batch in &batches {
        let arrays: Vec<_> = columns
            .iter()
            .map(|name| {
                batch
                    .column_by_name(name)
                    .unwrap_or_else(|| panic!("{} has no column {name}", path.display()))
            })
            .collect();
        for row in 0..batch.num_rows() {
            let values: Vec<String> = arrays
                .iter()
                .map(|array| {
                    arrow::util::display::array_value_to_string(array, row).expect("a value")
                })
                .collect();
            keys.push(values.join("|"));
        }
    }
    keys.sort();
    keys
}

const RESULT_KEY: [&str; 8] = [
    "host",
    "engine",
    "workload",
    "target",
    "scenario",
    "iteration",
    "language",
    "variant",
];
const IMAGE_KEY: [&str; 4] = ["workload", "language", "variant", "target"];
const HOST_KEY: [&str; 1] = ["host"];
const SUMMARY_KEY: [&str; 9] = [
    "host", "engine", "workload", "target", "scenario", "language", "variant", "runtime", "metric",
];
const EFFECT_KEY: [&str; 9] = [
    "host",
    "engine",
    "workload",
    "scenario",
    "language",
    "variant",
    "native_target",
    "wasm_target",
    "metric",
];

/// The keys of every table of an experiment's output folder.
#[derive(Debug, PartialEq)]
struct Tables {
    results: Vec<String>,
    images: Vec<String>,
    hosts: Vec<String>,
    summary: Vec<String>,
    effects: Vec<String>,
}

impl Tables {
    fn read(dir: &Path) -> Tables {
        Tables {
            results: table_keys(&dir.join("results.parquet"), &RESULT_KEY),
            images: table_keys(&dir.join("images.parquet"), &IMAGE_KEY),
            hosts: table_keys(&dir.join("hosts.parquet"), &HOST_KEY),
            summary: table_keys(&dir.join("summary.parquet"), &SUMMARY_KEY),
            effects: table_keys(&dir.join("effects.parquet"), &EFFECT_KEY),
        }
    }
}

/// The `results.parquet` key of every measured run of the plan, from the
/// plan alone; `skip` leaves out runs a test expects to be missing.
fn planned_result_keys(plan: &Plan, skip: impl Fn(&str) -> bool) -> Vec<String> {
    let experiment = &plan.experiment;
    let mut keys: Vec<String> = plan
        .graph
        .stages()
        .filter(|(_, stage)| !skip(stage.id.as_str()))
        .filter_map(|(_, stage)| match &stage.work {
            StageWork::Run(run) if !run.warmup => {
                let cell = &experiment.cells[run.cell];
                let image = &experiment.images[cell.image];
                Some(
                    [
                        experiment.hosts[cell.host].name.clone(),
                        cell.engine.as_str().to_string(),
                        image.workload.clone(),
                        image.target.to_string(),
                        cell.scenario.as_str().to_string(),
                        run.iteration.to_string(),
                        image.language.clone(),
                        image.variant.clone(),
                    ]
                    .join("|"),
                )
            }
            _ => None,
        })
        .collect();
    keys.sort();
    keys
}

fn stage_count(plan: &Plan, kind: StageKind) -> usize {
    plan.graph.count_by_kind()[kind.index()]
}

fn out_dir(out_root: &Path) -> PathBuf {
    out_root.join("demo")
}

/// `SPEC` applied whole on fakes without faults, in a project of its own
/// (returned, so its folder lives on); the experiment's output folder.
async fn clean_apply() -> (Project, Arc<Plan>, PathBuf) {
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let out_root = project.path("out");
    let (summary, _) = apply_all(&plan, &Fakes::new(), &out_root).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.succeeded, plan.graph.len());
    (project, plan, out_dir(&out_root))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_apply_resumes_to_the_rows_of_a_clean_one() {
    let (_clean_project, clean_plan, clean_dir) = clean_apply().await;
    let clean = Tables::read(&clean_dir);
    assert_eq!(clean.results, planned_result_keys(&clean_plan, |_| false));
    // Each language's native cell against its wasm cell: on both hosts with
    // Docker, fresh and cached, and on amd with containerd, fresh.
    let pairs: BTreeSet<String> = clean
        .effects
        .iter()
        .map(|key| {
            key.rsplit_once('|')
                .map_or(key.as_str(), |(pair, _)| pair)
                .to_string()
        })
        .collect();
    assert_eq!(pairs.len(), 2 * (2 * 2 + 1), "{pairs:#?}");
    assert!(
        pairs.iter().all(|pair| pair.ends_with("|wasm")),
        "{pairs:#?}"
    );
    // Every estimate lies in its interval, where the samples allow one.
    let dir = &clean_dir;
    let mut checked = 0;
    for (table, columns) in [
        ("summary", ["median_ci95_low", "median", "median_ci95_high"]),
        (
            "effects",
            ["hl_shift_ci95_low", "hl_shift", "hl_shift_ci95_high"],
        ),
        (
            "effects",
            [
                "cliffs_delta_ci95_low",
                "cliffs_delta",
                "cliffs_delta_ci95_high",
            ],
        ),
    ] {
        for row in table_keys(&dir.join(format!("{table}.parquet")), &columns) {
            let values: Vec<f64> = row.split('|').filter_map(|v| v.parse().ok()).collect();
            if let [low, estimate, high] = values[..] {
                assert!(low <= estimate && estimate <= high, "{table}: {row}");
                checked += 1;
            }
        }
    }
    assert!(checked > 0);

    let project = Project::new();
    let plan = plan(&project, SPEC);
    let out_root = project.path("out");
    let fakes = Fakes::new();
    // Slow enough that most runs are still to come when the interrupt lands.
    fakes.hosts.set_measure_delay(Duration::from_millis(20));
    let (summary, recorder) = apply_interrupted(&plan, &fakes, &out_root, 5).await;
    assert!(summary.interrupted);
    let partial = Tables::read(&out_dir(&out_root)).results;
    assert!(
        partial.len() >= 5 && partial.len() < clean.results.len(),
        "{} of {} rows after the interrupt",
        partial.len(),
        clean.results.len()
    );
    let runs_done = recorder.count(StageKind::Run, |body| {
        matches!(body, EventBody::Succeeded { .. })
    });
    let journal = read_journal(&out_dir(&out_root).join("journal.jsonl")).expect("journal");
    let journaled = journal
        .completed()
        .filter(|(id, _)| id.as_str().starts_with("run/"))
        .count();
    assert_eq!(journaled, runs_done, "every finished run is in the journal");
    let measures_before = fakes.hosts.count(&CallMatch::measure());

    let (summary, _) = apply_all(&plan, &fakes, &out_root).await;
    assert!(!summary.interrupted);
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.up_to_date + summary.succeeded, plan.graph.len());
    // Only what the interrupted apply left undone was measured again.
    assert_eq!(
        fakes.hosts.count(&CallMatch::measure()) - measures_before,
        stage_count(&plan, StageKind::Run) - runs_done
    );
    assert_eq!(Tables::read(&out_dir(&out_root)), clean);
}

/// The phases of a run, in the order they happen.
const PHASES: [&str; 5] = [
    "create_ms",
    "start_ms",
    "to_main_ms",
    "exit_ms",
    "remove_ms",
];

#[tokio::test]
async fn every_phase_is_a_results_column_and_a_summary_metric() {
    let (_project, plan, dir) = clean_apply().await;
    let rows = table_keys(&dir.join("results.parquet"), &PHASES);
    assert_eq!(rows.len(), planned_result_keys(&plan, |_| false).len());
    for row in &rows {
        let phases: Vec<f64> = row
            .split('|')
            .map(|value| value.parse().unwrap_or_else(|_| panic!("a phase: {row}")))
            .collect();
        assert!(phases.is_sorted(), "{row}");
    }
    let metrics: BTreeSet<String> = table_keys(&dir.join("summary.parquet"), &["metric"])
        .into_iter()
        .collect();
    for phase in PHASES {
        assert!(metrics.contains(phase), "{phase}: {metrics:?}");
    }
}

#[tokio::test]
async fn an_apply_restricted_with_only_keeps_every_row_of_every_table() {
    let project = Project::new();
    let full = plan(&project, SPEC);
    let out_root = project.path("out");
    let fakes = Fakes::new();
    // One cell's container fails in the first apply, so the tables lack its rows.
    let broken_cell = "run/hello/beta/optimized/wasm/arm/docker/fresh/";
    fakes.hosts.inject(
        CallMatch::measure()
            .on("arm")
            .image(&image_ref(&full, "hello/beta/optimized/wasm"))
            .scenario(Scenario::Fresh),
        u32::MAX,
        HostFault::ContainerFails,
    );
    let (summary, _) = apply_all(&full, &fakes, &out_root).await;
    assert!(
        !summary.failed.is_empty()
            && summary
                .failed
                .iter()
                .all(|(id, _)| id.as_str().starts_with(broken_cell)),
        "{:?}",
        summary.failed
    );
    let before = Tables::read(&out_dir(&out_root));
    assert_eq!(
        before.results,
        planned_result_keys(&full, |id| id.starts_with(broken_cell))
    );

    // `apply --only <that cell>` once the host works again.
    fakes.hosts.clear_faults();
    let only = Arc::new(Plan {
        experiment: full.experiment.clone(),
        graph: full
            .graph
            .with_needs_of(|stage| stage.id.as_str().starts_with(broken_cell)),
    });
    assert!(only.graph.len() < full.graph.len());
    let mut recorder = Recorder::default();
    let summary = apply(
        &only,
        &full,
        &fakes,
        &out_root,
        &mut recorder,
        std::future::pending(),
    )
    .await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert!(summary.succeeded > 0, "the cell's runs were redone");

    let after = Tables::read(&out_dir(&out_root));
    assert_eq!(after.results, planned_result_keys(&full, |_| false));
    let (_clean_project, _, clean_dir) = clean_apply().await;
    let clean = Tables::read(&clean_dir);
    assert_eq!(after, clean);
    assert_eq!(after.images.len(), full.experiment.images.len());
    assert_eq!(after.hosts.len(), full.experiment.hosts.len());
    // The summary had no rows for the broken cell; now it has them all.
    assert!(after.summary.len() > before.summary.len());
}

#[tokio::test]
async fn a_503_during_a_host_pull_is_retried_until_the_pull_succeeds() {
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let fakes = Fakes::new();
    let pull_stage = "pull/hello/alpha/optimized/wasm/arm/docker";
    let retries = plan
        .graph
        .stages()
        .find(|(_, stage)| stage.id.as_str() == pull_stage)
        .expect("the pull stage")
        .1
        .limit
        .retries;
    assert_eq!(retries, 2, "pulls retry twice by default");
    let pull = CallMatch::ensure_image()
        .on("arm")
        .image(&image_ref(&plan, "hello/alpha/optimized/wasm"));
    fakes
        .hosts
        .inject(pull.clone(), retries, HostFault::RegistryUnavailable);
    // The registry itself refuses the index once, too.
    let index_ref = plan
        .experiment
        .images
        .iter()
        .find(|image| image.group_path() == "hello/alpha/optimized")
        .expect("an alpha image")
        .index_ref();
    fakes.registry.unavailable_for(&index_ref, 1);

    let (summary, recorder) = apply_all(&plan, &fakes, &project.path("out")).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let errors = recorder.retry_errors(pull_stage);
    assert_eq!(errors.len(), retries as usize, "{errors:?}");
    assert!(errors.iter().all(|e| e.contains("503")), "{errors:?}");
    assert_eq!(fakes.hosts.count(&pull), retries as usize + 1);
    assert!(recorder.succeeded(pull_stage));

    let index_stage = "index/hello/alpha/optimized";
    assert_eq!(recorder.retry_errors(index_stage).len(), 1);
    assert_eq!(fakes.registry.refused(&index_ref), 1);
    assert!(recorder.succeeded(index_stage));
}

#[tokio::test]
async fn a_failed_container_is_not_retried() {
    let project = Project::new();
    let plan = plan(&project, &format!("{SPEC}retries:\n  run: 2\n"));
    let fakes = Fakes::new();
    let cell = CallMatch::measure()
        .on("arm")
        .image(&image_ref(&plan, "hello/beta/optimized/wasm"))
        .scenario(Scenario::Fresh);
    fakes
        .hosts
        .inject(cell.clone(), 1, HostFault::ContainerFails);

    let (summary, recorder) = apply_all(&plan, &fakes, &project.path("out")).await;
    assert_eq!(summary.failed.len(), 1, "{:?}", summary.failed);
    let (stage, message) = &summary.failed[0];
    assert!(
        stage
            .as_str()
            .starts_with("run/hello/beta/optimized/wasm/arm/docker/fresh/"),
        "{stage}"
    );
    assert!(message.contains("exec format error"), "{message}");
    let node = plan.graph.node(stage).expect("a planned stage");
    assert_eq!(plan.graph.stage(node).limit.retries, 2, "it could retry");
    let retried = recorder.count(StageKind::Run, |body| {
        matches!(body, EventBody::Retrying { .. })
    });
    assert_eq!(retried, 0);
    // One call per run stage of the cell: the failed one was not repeated.
    let rounds = plan.experiment.measure.repetitions + plan.experiment.measure.warmup;
    assert_eq!(fakes.hosts.count(&cell), rounds as usize);
}

#[tokio::test]
async fn a_build_is_retried_after_a_registry_503_but_not_after_a_compile_error() {
    let project = Project::new();
    let plan = plan(&project, &format!("{SPEC}retries:\n  build: 2\n"));
    let fakes = Fakes::new();
    let unlucky = image_ref(&plan, "hello/alpha/optimized/wasm");
    let broken = image_ref(&plan, "hello/beta/optimized/wasm");
    fakes.builder.fail_build(&unlucky, 1, BuildFault::Retryable);
    fakes.builder.fail_build(&broken, 1, BuildFault::Fatal);

    let (summary, recorder) = apply_all(&plan, &fakes, &project.path("out")).await;
    assert_eq!(fakes.builder.build_attempts(&unlucky), 2);
    assert!(recorder.succeeded("build/hello/alpha/optimized/wasm"));
    let failed: Vec<&str> = summary.failed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(failed, ["build/hello/beta/optimized/wasm"]);
    assert_eq!(fakes.builder.build_attempts(&broken), 1);
    assert!(
        recorder
            .retry_errors("build/hello/beta/optimized/wasm")
            .is_empty()
    );
}

#[tokio::test]
async fn a_dropped_session_reconnects_and_the_stage_succeeds_on_retry() {
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let fakes = Fakes::new();
    fakes.hosts.inject(
        CallMatch::ensure_image().on("arm"),
        1,
        HostFault::DropSession,
    );

    let (summary, recorder) = apply_all(&plan, &fakes, &project.path("out")).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(fakes.hosts.connects("arm"), 2);
    assert_eq!(fakes.hosts.connects("amd"), 1);
    let dropped = recorder.retried_stages("lost the connection");
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    let stage = dropped[0];
    assert!(
        stage.starts_with("pull/") && stage.ends_with("/arm/docker"),
        "{stage}"
    );
    assert!(recorder.succeeded(stage));
    // Every call after the drop went over the new session.
    let sessions: Vec<usize> = fakes
        .hosts
        .host_calls()
        .iter()
        .filter(|call| call.host == "arm")
        .map(|call| call.session)
        .collect();
    let first_on_new = sessions.iter().position(|&session| session == 2);
    assert_eq!(
        first_on_new,
        Some(2),
        "facts and the dropped pull on the first: {sessions:?}"
    );
    assert!(
        sessions[2..].iter().all(|&session| session == 2),
        "{sessions:?}"
    );
}

#[tokio::test]
async fn a_hanging_run_times_out_is_cleaned_up_and_the_other_runs_complete() {
    let project = Project::new();
    // No warm-up, so the hung run is a measured one.
    let spec = format!(
        "{}timeouts:\n  run: 1s\n",
        SPEC.replace("  warmup: 1\n", "")
    );
    let plan = plan(&project, &spec);
    let fakes = Fakes::new();
    fakes.hosts.inject(
        CallMatch::measure()
            .on("amd")
            .image(&image_ref(&plan, "hello/alpha/optimized/wasm"))
            .engine(Engine::Docker)
            .scenario(Scenario::Fresh),
        1,
        HostFault::Hang,
    );

    let started = Instant::now();
    let (summary, recorder) = apply_all(&plan, &fakes, &project.path("out")).await;
    // The walker waited for the clean-up, not for its grace period.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(summary.failed.len(), 1, "{:?}", summary.failed);
    let (stage, message) = &summary.failed[0];
    assert!(
        stage
            .as_str()
            .starts_with("run/hello/alpha/optimized/wasm/amd/docker/fresh/"),
        "{stage}"
    );
    assert_eq!(message, "timed out after 1s");
    let hung = fakes.hosts.hung();
    assert_eq!(hung.len(), 1);
    assert_eq!(hung[0].0, "amd");
    assert_eq!(
        fakes.hosts.cleaned_up(),
        hung,
        "the hung container was removed"
    );
    let hung_call = fakes
        .hosts
        .host_calls()
        .into_iter()
        .find(|call| call.container.as_ref() == Some(&hung[0].1))
        .expect("the hung call");
    assert_eq!(
        hung_call.timeout_s,
        Some(1),
        "the agent got the stage's timeout"
    );

    let runs = stage_count(&plan, StageKind::Run);
    let ran = recorder.count(StageKind::Run, |body| {
        matches!(body, EventBody::Succeeded { .. })
    });
    assert_eq!(ran, runs - 1);
    let blocked: Vec<&str> = recorder
        .events
        .iter()
        .filter(|event| matches!(event.body, EventBody::Blocked { .. }))
        .map(|event| event.stage.as_str())
        .collect();
    assert_eq!(blocked, ["aggregate"]);
    assert_eq!(
        Tables::read(&out_dir(&project.path("out"))).results,
        planned_result_keys(&plan, |id| id == stage.as_str())
    );
}

#[tokio::test]
async fn a_panic_in_a_backend_fails_that_stage_with_its_message() {
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let out_root = project.path("out");
    let fakes = Fakes::new();
    let image = image_ref(&plan, "hello/alpha/optimized/wasm");
    fakes.builder.fail_build(
        &image,
        1,
        BuildFault::Panic("the fake builder fell over".into()),
    );

    let (summary, recorder) = apply_all(&plan, &fakes, &out_root).await;
    assert_eq!(summary.failed.len(), 1, "{:?}", summary.failed);
    let (stage, message) = &summary.failed[0];
    assert_eq!(stage.as_str(), "build/hello/alpha/optimized/wasm");
    assert!(
        message.contains("panicked") && message.contains("the fake builder fell over"),
        "{message}"
    );
    let blocked: BTreeSet<&str> = recorder
        .events
        .iter()
        .filter(|event| matches!(event.body, EventBody::Blocked { .. }))
        .map(|event| event.stage.as_str())
        .collect();
    for downstream in [
        "push/hello/alpha/optimized/wasm",
        "index/hello/alpha/optimized",
        "pull/hello/alpha/optimized/wasm/arm/docker",
        "aggregate",
    ] {
        assert!(
            blocked.contains(downstream),
            "{downstream} not in {blocked:?}"
        );
    }
    assert_eq!(fakes.hosts.count(&CallMatch::measure().image(&image)), 0);
    let journal = read_journal(&out_dir(&out_root).join("journal.jsonl")).expect("journal");
    assert_eq!(journal.failure(stage), Some(message.as_str()));
    // Every other image was measured all the same.
    let alpha_wasm = "/hello/alpha/optimized/wasm/";
    assert_eq!(
        Tables::read(&out_dir(&out_root)).results,
        planned_result_keys(&plan, |id| id.contains(alpha_wasm))
    );

    // The next apply builds it and completes the experiment.
    let (summary, _) = apply_all(&plan, &fakes, &out_root).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(fakes.builder.build_attempts(&image), 2);
    assert_eq!(
        Tables::read(&out_dir(&out_root)).results,
        planned_result_keys(&plan, |_| false)
    );
}

#[tokio::test]
async fn the_agent_never_gets_less_time_than_the_run_stage() {
    let project = Project::new();
    let plan = plan(&project, &format!("{SPEC}timeouts:\n  run: 500ms\n"));
    let fakes = Fakes::new();
    apply_all(&plan, &fakes, &project.path("out")).await;
    let timeouts: BTreeSet<Option<u64>> = fakes
        .hosts
        .host_calls()
        .iter()
        .filter(|call| call.kind == fakes::RequestKind::Measure)
        .map(|call| call.timeout_s)
        .collect();
    assert!(
        timeouts
            .iter()
            .all(|timeout| timeout.is_some_and(|s| s >= 1)),
        "{timeouts:?}"
    );
}

#[tokio::test]
async fn a_no_op_apply_after_only_index_writes_no_table() {
    use std::os::unix::fs::MetadataExt as _;
    let project = Project::new();
    let full = plan(&project, SPEC);
    let out_root = project.path("out");
    let fakes = Fakes::new();
    let only = Arc::new(Plan {
        experiment: full.experiment.clone(),
        graph: full
            .graph
            .with_needs_of(|stage| stage.kind == StageKind::Index),
    });
    let images = out_dir(&out_root).join("images.parquet");
    let mut inodes = Vec::new();
    for apply_number in 0..2 {
        let summary = apply(
            &only,
            &full,
            &fakes,
            &out_root,
            &mut Recorder::default(),
            std::future::pending(),
        )
        .await;
        assert!(summary.failed.is_empty(), "{:?}", summary.failed);
        if apply_number == 1 {
            assert_eq!(
                summary.up_to_date,
                only.graph.len(),
                "the second apply is a no-op"
            );
        }
        inodes.push(std::fs::metadata(&images).expect("images.parquet").ino());
    }
    assert_eq!(inodes[0], inodes[1], "images.parquet was written again");
}

#[tokio::test]
async fn a_second_apply_of_a_finished_experiment_runs_nothing_and_writes_no_table() {
    use std::os::unix::fs::MetadataExt as _;
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let out_root = project.path("out");
    let fakes = Fakes::new();
    let (summary, _) = apply_all(&plan, &fakes, &out_root).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let inodes = || -> Vec<u64> {
        ["images", "hosts", "results", "summary"]
            .iter()
            .map(|table| {
                let path = out_dir(&out_root).join(format!("{table}.parquet"));
                std::fs::metadata(&path).expect("a table").ino()
            })
            .collect()
    };
    let tables = inodes();
    let calls = fakes.calls();

    let (summary, recorder) = apply_all(&plan, &fakes, &out_root).await;
    let started: Vec<&str> = recorder
        .events
        .iter()
        .filter(|event| matches!(event.body, EventBody::Started { .. }))
        .map(|event| event.stage.as_str())
        .collect();
    assert_eq!(started, Vec::<&str>::new());
    assert_eq!(summary.up_to_date, plan.graph.len());
    assert_eq!(fakes.calls(), calls);
    assert_eq!(inodes(), tables, "a table was written again");
}

/// One steady and one noisy cell (amd64 and wasm on amd, Docker, fresh),
/// measured until the median's interval is within 5 % of it.
fn until_spec() -> String {
    format!(
        "{}measure:\n  repetitions: 20\n  warmup: 1\n  until: {{ci_width: 0.05, min: 6}}\n",
        common::SPEC.replace("hosts: [all]", "hosts: [amd]")
    )
}

const STEADY_IMAGE: &str = "hello/alpha/optimized/linux-amd64";
const NOISY_IMAGE: &str = "hello/alpha/optimized/wasm";

/// Per target, `until_met|runs_to_target|stopped_early` of the to_main_ms row.
fn until_columns(dir: &Path) -> Vec<String> {
    table_keys(
        &dir.join("summary.parquet"),
        &[
            "target",
            "metric",
            "until_met",
            "runs_to_target",
            "stopped_early",
        ],
    )
    .into_iter()
    .filter(|row| row.contains("|to_main_ms|"))
    .collect()
}

/// A project with `until_spec`, whose amd64 image measures steadily.
fn until_project() -> (Project, Arc<Plan>, PathBuf, Fakes) {
    let project = Project::new();
    let plan = plan(&project, &until_spec());
    let out_root = project.path("out");
    let fakes = Fakes::new();
    fakes.hosts.steady(&image_ref(&plan, STEADY_IMAGE));
    (project, plan, out_root, fakes)
}

/// The steady cell stopped after 6 runs, the noisy one ran all 20.
fn assert_until_outcome(dir: &Path) {
    assert_eq!(rows_of(dir, "linux/amd64"), 6);
    assert_eq!(rows_of(dir, "wasm"), 20);
    assert_eq!(
        until_columns(dir),
        [
            "linux/amd64|to_main_ms|true|6|true",
            "wasm|to_main_ms|false||false"
        ]
    );
}

/// Measured rows of results.parquet per target.
fn rows_of(dir: &Path, target: &str) -> usize {
    table_keys(&dir.join("results.parquet"), &["target"])
        .iter()
        .filter(|row| *row == target)
        .count()
}

#[tokio::test]
async fn a_steady_cell_stops_at_min_and_a_noisy_one_runs_to_the_maximum() {
    let (_project, plan, out_root, fakes) = until_project();
    let (summary, _) = apply_all(&plan, &fakes, &out_root).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.not_needed, 14);
    let measures = |image: &str| {
        fakes
            .hosts
            .count(&CallMatch::measure().image(&image_ref(&plan, image)))
    };
    // One warm-up each, then 6 measured runs of the steady cell and all 20 of the noisy one.
    assert_eq!(measures(STEADY_IMAGE), 7);
    assert_eq!(measures(NOISY_IMAGE), 21);
    let dir = out_dir(&out_root);
    assert_until_outcome(&dir);
    // Every stage counts as done, left-out runs included.
    let journal = read_journal(&dir.join("journal.jsonl")).expect("journal");
    let states = pipeline::status::stage_states(&plan, &journal);
    assert!(
        states
            .iter()
            .all(|status| status.state == pipeline::status::StageState::Done),
        "{states:#?}"
    );

    // The same decision again: nothing runs and nothing is news.
    let calls = fakes.calls();
    let (summary, _) = apply_all(&plan, &fakes, &out_root).await;
    assert_eq!(summary.up_to_date, plan.graph.len());
    assert_eq!((summary.succeeded, summary.not_needed), (0, 0));
    assert_eq!(fakes.calls(), calls);

    // Without `until`, the runs it left out are what the next apply runs.
    let without = Project::new()
        .plan(&until_spec().replace("  until: {ci_width: 0.05, min: 6}\n", ""))
        .expect("valid plan");
    let states = pipeline::status::stage_states(&without, &journal);
    let pending = states
        .iter()
        .filter(|status| status.state == pipeline::status::StageState::Pending)
        .count();
    assert_eq!(pending, 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_apply_counts_journaled_runs_toward_until() {
    let (_project, plan, out_root, fakes) = until_project();
    fakes.hosts.set_measure_delay(Duration::from_millis(20));
    // Interleaved: after 4 measured runs the steady cell has about 2 of its 6.
    let (summary, _) = apply_interrupted(&plan, &fakes, &out_root, 4).await;
    assert!(summary.interrupted);
    let dir = out_dir(&out_root);
    let steady_before = rows_of(&dir, "linux/amd64");
    assert!((1..6).contains(&steady_before), "{steady_before}");

    let (summary, _) = apply_all(&plan, &fakes, &out_root).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.not_needed, 14);
    // The runs journaled before the interrupt count: 6 in all, not 6 more.
    assert_until_outcome(&dir);
}

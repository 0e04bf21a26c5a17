//! The DAG walker on small plans: order, per-host sequencing, failures,
//! retries, timeouts, resume and interrupts. The worker here records what it
//! is asked to do; the real backends have their own tests.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Project;
use pipeline::events::{EventBody, EventSink, SinkError, StageEvent, StageOutput};
use pipeline::exec::{BoxFuture, Job, StageFailure, StageWorker, Walker};
use pipeline::journal::{JournalState, JournalWriter, read_journal};
use pipeline::plan::{Plan, StageKind};

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
measure:
  repetitions: 2
  warmup: 1
timeouts:
  run: 1s
retries:
  build: 1
";

#[derive(Default)]
struct RecordingWorker {
    started: Mutex<Vec<String>>,
    /// Stage id prefix → how many attempts fail before one succeeds (`u32::MAX`: always).
    failures: Mutex<HashMap<String, u32>>,
    slow: HashSet<String>,
    panics: HashSet<String>,
}

impl RecordingWorker {
    fn failing(prefix: &str, times: u32) -> Self {
        let worker = RecordingWorker::default();
        worker
            .failures
            .lock()
            .unwrap()
            .insert(prefix.to_string(), times);
        worker
    }
}

impl StageWorker for RecordingWorker {
    fn run(&self, job: Job) -> BoxFuture<Result<StageOutput, StageFailure>> {
        let id = job.stage().id.to_string();
        self.started.lock().unwrap().push(id.clone());
        // Every input a stage needs must have arrived.
        let needs = job.plan.graph.needs(job.node).len();
        assert_eq!(job.inputs.len(), needs, "{id} started without all inputs");
        let mut failures = self.failures.lock().unwrap();
        let fail = failures
            .iter_mut()
            .find(|(prefix, _)| id.starts_with(prefix.as_str()))
            .and_then(|(_, left)| {
                (*left > 0).then(|| {
                    *left = left.saturating_sub(u32::from(*left != u32::MAX));
                })
            });
        let slow = self
            .slow
            .iter()
            .any(|prefix| id.starts_with(prefix.as_str()));
        job.log.line(format!("working on {id}"));
        let panics = self
            .panics
            .iter()
            .any(|prefix| id.starts_with(prefix.as_str()));
        let cancel = job.cancel.clone();
        Box::pin(async move {
            assert!(!panics, "{id} fell over");
            if slow {
                // Like the real handlers: a cancel stops the work.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                    () = cancel.cancelled() => return Err(StageFailure::cancelled("cancelled")),
                }
            }
            match fail {
                Some(()) => Err(StageFailure::retryable(format!("{id} broke"))),
                None => Ok(StageOutput::Rendered { dockerfile: id }),
            }
        })
    }
}

#[derive(Default)]
struct Collected(Vec<StageEvent>);

impl EventSink for Collected {
    fn on_event(&mut self, event: &StageEvent) -> Result<(), SinkError> {
        self.0.push(event.clone());
        Ok(())
    }
}

fn plan(project: &Project, spec: &str) -> Arc<Plan> {
    Arc::new(project.plan(spec).expect("valid plan"))
}

async fn walk(
    plan: &Arc<Plan>,
    worker: Arc<RecordingWorker>,
    journal: JournalState,
    sink: &mut dyn EventSink,
) -> pipeline::exec::ApplySummary {
    Walker::new(Arc::clone(plan), worker, journal)
        .sink(sink)
        .run(std::future::pending())
        .await
        .expect("walk")
}

#[tokio::test]
async fn runs_every_stage_after_its_needs_and_host_runs_in_sequence() {
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let worker = Arc::new(RecordingWorker::default());
    let mut events = Collected::default();
    let summary = walk(
        &plan,
        Arc::clone(&worker),
        JournalState::default(),
        &mut events,
    )
    .await;
    assert_eq!(summary.succeeded, plan.graph.len());
    assert!(summary.failed.is_empty());
    let started = worker.started.lock().unwrap().clone();
    assert_eq!(started.len(), plan.graph.len(), "each stage runs once");
    let position: HashMap<&str, usize> = started
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    for (node, stage) in plan.graph.stages() {
        for need in plan.graph.needs(node) {
            assert!(
                position[need.as_str()] < position[stage.id.as_str()],
                "{} before {need}",
                stage.id
            );
        }
    }
    // A host's runs start in their planned sequence.
    for host in ["amd", "arm"] {
        let runs: Vec<u32> = started
            .iter()
            .filter(|id| id.starts_with("run/") && id.contains(&format!("/{host}/")))
            .map(|id| {
                let node = plan
                    .graph
                    .node(
                        &plan
                            .graph
                            .stages()
                            .find(|(_, s)| s.id.as_str() == id)
                            .unwrap()
                            .1
                            .id,
                    )
                    .unwrap();
                match &plan.graph.stage(node).work {
                    pipeline::plan::StageWork::Run(run) => run.sequence,
                    _ => unreachable!(),
                }
            })
            .collect();
        let mut sorted = runs.clone();
        sorted.sort_unstable();
        assert_eq!(runs, sorted, "runs on {host} out of sequence");
    }
    // Log lines of a stage arrive between its start and its end.
    let id = "build/hello/alpha/optimized/wasm";
    let kinds: Vec<&str> = events
        .0
        .iter()
        .filter(|event| event.stage.as_str() == id)
        .map(|event| match &event.body {
            EventBody::Started { .. } => "started",
            EventBody::Log { .. } => "log",
            EventBody::Succeeded { .. } => "succeeded",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["started", "log", "succeeded"]);
}

#[tokio::test]
async fn a_failure_blocks_only_what_depends_on_it() {
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let worker = Arc::new(RecordingWorker::failing(
        "build/hello/beta/optimized/linux-arm64",
        u32::MAX,
    ));
    let mut events = Collected::default();
    let summary = walk(
        &plan,
        Arc::clone(&worker),
        JournalState::default(),
        &mut events,
    )
    .await;
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(
        summary.failed[0].0.as_str(),
        "build/hello/beta/optimized/linux-arm64"
    );
    let started = worker.started.lock().unwrap().clone();
    // Two attempts: the build kind has one retry.
    assert_eq!(
        started
            .iter()
            .filter(|id| id.as_str() == "build/hello/beta/optimized/linux-arm64")
            .count(),
        2
    );
    assert!(
        !started
            .iter()
            .any(|id| id.starts_with("push/hello/beta/optimized/linux-arm64"))
    );
    assert!(
        !started
            .iter()
            .any(|id| id.starts_with("run/hello/beta/optimized/linux-arm64"))
    );
    assert!(!started.iter().any(|id| id == "aggregate"));
    // Everything else still ran, other arm64 images included.
    assert!(
        started
            .iter()
            .any(|id| id.starts_with("run/hello/alpha/optimized/linux-arm64/arm/"))
    );
    assert!(
        started
            .iter()
            .any(|id| id.starts_with("run/hello/beta/optimized/wasm/arm/"))
    );
    let blocked = events
        .0
        .iter()
        .filter(|event| matches!(event.body, EventBody::Blocked { .. }))
        .count();
    assert_eq!(blocked, summary.blocked);
    assert!(blocked > 0);
}

#[tokio::test]
async fn a_retryable_failure_is_retried() {
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let worker = Arc::new(RecordingWorker::failing(
        "build/hello/alpha/optimized/wasm",
        1,
    ));
    let mut events = Collected::default();
    let summary = walk(
        &plan,
        Arc::clone(&worker),
        JournalState::default(),
        &mut events,
    )
    .await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert!(
        events
            .0
            .iter()
            .any(|event| matches!(&event.body, EventBody::Retrying { attempt: 1, .. }))
    );
}

#[tokio::test]
async fn a_stage_over_its_timeout_fails() {
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let worker = Arc::new(RecordingWorker {
        slow: HashSet::from(["run/hello/alpha/optimized/wasm/amd/docker/fresh/0".to_string()]),
        ..RecordingWorker::default()
    });
    let mut events = Collected::default();
    let summary = walk(&plan, worker, JournalState::default(), &mut events).await;
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].1, "timed out after 1s");
}

#[tokio::test]
async fn resume_redoes_only_what_failed_or_changed() {
    let project = Project::new();
    let journal_path = project.path("out/demo/journal.jsonl");

    // First apply: one build fails for good.
    let first = plan(&project, SPEC);
    let mut journal = JournalWriter::open(&journal_path).unwrap();
    let worker = Arc::new(RecordingWorker::failing(
        "build/hello/beta/optimized/linux-arm64",
        u32::MAX,
    ));
    let summary = walk(
        &first,
        worker,
        read_journal(&journal_path).unwrap(),
        &mut journal,
    )
    .await;
    assert_eq!(summary.failed.len(), 1);
    drop(journal);

    // Second apply: nothing changed but the failure is gone.
    let mut journal = JournalWriter::open(&journal_path).unwrap();
    let worker = Arc::new(RecordingWorker::default());
    let summary = walk(
        &first,
        Arc::clone(&worker),
        read_journal(&journal_path).unwrap(),
        &mut journal,
    )
    .await;
    drop(journal);
    assert!(summary.failed.is_empty());
    let started = worker.started.lock().unwrap().clone();
    assert!(!started.is_empty());
    for id in &started {
        assert!(
            id.contains("/hello/beta/optimized/linux-arm64")
                || id == "index/hello/beta/optimized"
                || id == "aggregate",
            "{id} ran again although it had succeeded"
        );
    }
    assert_eq!(summary.up_to_date + summary.succeeded, first.graph.len());

    // Third apply after a source change: only that language's stages run.
    project.write("workloads/hello/alpha/main.src", "changed\n");
    let changed = plan(&project, SPEC);
    let worker = Arc::new(RecordingWorker::default());
    let mut journal = JournalWriter::open(&journal_path).unwrap();
    walk(
        &changed,
        Arc::clone(&worker),
        read_journal(&journal_path).unwrap(),
        &mut journal,
    )
    .await;
    let started = worker.started.lock().unwrap().clone();
    assert!(
        started
            .iter()
            .any(|id| id.starts_with("build/hello/alpha/"))
    );
    for id in &started {
        assert!(
            id.contains("/hello/alpha/") || id == "aggregate",
            "{id} ran although it does not depend on alpha"
        );
    }
}

#[tokio::test]
async fn an_interrupt_stops_the_walk_and_keeps_what_finished() {
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let journal_path = project.path("out/demo/journal.jsonl");
    let worker = Arc::new(RecordingWorker {
        slow: HashSet::from(["run/".to_string()]),
        ..RecordingWorker::default()
    });
    let mut journal = JournalWriter::open(&journal_path).unwrap();
    let summary = Walker::new(Arc::clone(&plan), worker, JournalState::default())
        .sink(&mut journal)
        .run(tokio::time::sleep(Duration::from_millis(300)))
        .await
        .unwrap();
    drop(journal);
    assert!(summary.interrupted);
    let state = read_journal(&journal_path).unwrap();
    let done: Vec<String> = state.completed().map(|(id, _)| id.to_string()).collect();
    assert!(done.iter().any(|id| id.starts_with("push/")), "{done:?}");
    assert!(!done.iter().any(|id| id.starts_with("run/")), "{done:?}");
    let text = std::fs::read_to_string(&journal_path).unwrap();
    assert!(text.contains("\"event\":\"cancelled\""));
    assert!(plan.graph.stages().any(|(_, s)| s.kind == StageKind::Run));
}

#[tokio::test]
async fn a_panicking_stage_fails_with_its_message_and_blocks_its_dependents() {
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let worker = Arc::new(RecordingWorker {
        panics: HashSet::from(["build/hello/alpha/optimized/wasm".to_string()]),
        ..RecordingWorker::default()
    });
    let mut events = Collected::default();
    let summary = walk(&plan, worker, JournalState::default(), &mut events).await;
    assert_eq!(summary.failed.len(), 1, "{:?}", summary.failed);
    let (stage, message) = &summary.failed[0];
    assert_eq!(stage.as_str(), "build/hello/alpha/optimized/wasm");
    assert!(
        message.contains("panicked") && message.contains("fell over"),
        "{message}"
    );
    assert!(summary.blocked > 0);
    assert!(events.0.iter().any(|event| {
        event.stage.as_str() == "push/hello/alpha/optimized/wasm"
            && matches!(event.body, EventBody::Blocked { .. })
    }));
}

#[tokio::test]
async fn retries_back_off_and_give_up_at_the_stages_deadline() {
    let project = Project::new();
    // Three retries of a build within 2 s: waits of 0.4-0.8 s, 0.8-1.6 s
    // and 1.6-3.2 s cannot all fit, so it gives up before the third.
    let spec = SPEC
        .replace("  run: 1s\n", "  run: 1s\n  build: 2s\n")
        .replace("  build: 1\n", "  build: 3\n");
    let plan = plan(&project, &spec);
    let worker = Arc::new(RecordingWorker::failing(
        "build/hello/alpha/optimized/wasm",
        u32::MAX,
    ));
    let mut events = Collected::default();
    let started = std::time::Instant::now();
    let summary = Walker::new(Arc::clone(&plan), worker, JournalState::default())
        .backoff(pipeline::exec::Backoff {
            first: Duration::from_millis(800),
            max: Duration::from_secs(10),
        })
        .sink(&mut events)
        .run(std::future::pending())
        .await
        .unwrap();
    let delays: Vec<u64> = events
        .0
        .iter()
        .filter_map(|event| match &event.body {
            EventBody::Retrying { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .collect();
    assert!(
        (1..=2).contains(&delays.len()),
        "not every retry fits in the deadline: {delays:?}"
    );
    for (attempt, delay) in delays.iter().enumerate() {
        let full = 800 << attempt;
        assert!(
            (full / 2..=full).contains(delay),
            "wait {attempt} doubles, with jitter: {delays:?}"
        );
    }
    assert_eq!(summary.failed.len(), 1);
    assert!(
        summary.failed[0].1.contains("no time left"),
        "{:?}",
        summary.failed
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn forced_stages_run_again_with_everything_downstream() {
    let project = Project::new();
    let plan = plan(&project, SPEC);
    let journal_path = project.path("out/demo/journal.jsonl");
    let mut journal = JournalWriter::open(&journal_path).unwrap();
    walk(
        &plan,
        Arc::new(RecordingWorker::default()),
        JournalState::default(),
        &mut journal,
    )
    .await;
    drop(journal);
    let forced = plan
        .graph
        .node(&pipeline::plan::StageId::new(
            StageKind::Push,
            "hello/beta/optimized/wasm",
        ))
        .unwrap();
    let ids = plan.graph.downstream_of([forced]);
    let nodes: Vec<_> = plan
        .graph
        .stages()
        .filter(|(_, stage)| ids.contains(&stage.id))
        .map(|(node, _)| node)
        .collect();
    let worker = Arc::new(RecordingWorker::default());
    let mut events = Collected::default();
    let summary = Walker::new(
        Arc::clone(&plan),
        Arc::clone(&worker) as Arc<dyn StageWorker>,
        read_journal(&journal_path).unwrap(),
    )
    .force(nodes)
    .sink(&mut events)
    .run(std::future::pending())
    .await
    .unwrap();
    let mut started = worker.started.lock().unwrap().clone();
    started.sort();
    let mut expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(started, expected);
    assert_eq!(summary.up_to_date + summary.succeeded, plan.graph.len());
}

/// Counts how many runs are in progress at once.
#[derive(Default)]
struct OverlapWorker {
    running: Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::atomic::AtomicUsize,
}

impl StageWorker for OverlapWorker {
    fn run(&self, job: Job) -> BoxFuture<Result<StageOutput, StageFailure>> {
        use std::sync::atomic::Ordering;
        let is_run = job.stage().kind == StageKind::Run;
        if is_run {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
        }
        let running = Arc::clone(&self.running);
        let id = job.stage().id.to_string();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if is_run {
                running.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(StageOutput::Rendered { dockerfile: id })
        })
    }
}

#[tokio::test]
async fn hosts_on_one_machine_measure_one_at_a_time() {
    use std::sync::atomic::Ordering;
    for (shared, expected_most) in [(false, 2), (true, 1)] {
        let project = Project::new();
        if shared {
            let inventory = std::fs::read_to_string(project.path("inventory.yaml")).unwrap();
            project.write(
                "inventory.yaml",
                &inventory.replace(
                    "pipeline_platform: linux/",
                    "pipeline_machine: bench-server\n          pipeline_platform: linux/",
                ),
            );
        }
        let plan = plan(&project, SPEC);
        let worker = Arc::new(OverlapWorker::default());
        let summary = Walker::new(
            Arc::clone(&plan),
            Arc::clone(&worker) as Arc<dyn StageWorker>,
            JournalState::default(),
        )
        .run(std::future::pending())
        .await
        .unwrap();
        assert!(summary.failed.is_empty());
        assert_eq!(
            worker.most.load(Ordering::SeqCst),
            expected_most,
            "most runs at once with shared machine {shared}"
        );
    }
}

#[tokio::test]
async fn an_interrupt_ends_a_backoff_at_once() {
    let project = Project::new();
    let spec = SPEC.replace("  build: 1\n", "  build: 3\n");
    let plan = plan(&project, &spec);
    let worker = Arc::new(RecordingWorker::failing(
        "build/hello/alpha/optimized/wasm",
        u32::MAX,
    ));
    let mut events = Collected::default();
    let started = std::time::Instant::now();
    let summary = Walker::new(Arc::clone(&plan), worker, JournalState::default())
        .backoff(pipeline::exec::Backoff {
            first: Duration::from_secs(20),
            max: Duration::from_secs(20),
        })
        .sink(&mut events)
        .run(tokio::time::sleep(Duration::from_millis(500)))
        .await
        .unwrap();
    assert!(summary.interrupted);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the walk waited out a 10-20 s backoff: {:?}",
        started.elapsed()
    );
    assert!(events.0.iter().any(|event| {
        event.stage.as_str() == "build/hello/alpha/optimized/wasm"
            && matches!(event.body, EventBody::Cancelled)
    }));
}

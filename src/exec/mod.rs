//! Walks the stage DAG: starts a stage when every stage it needs is done,
//! within per-kind and per-host limits, with timeouts, retries that back
//! off, and cancellation that reaches the work. It does no work itself: a
//! [`StageWorker`] does, and every state change goes out as a
//! [`StageEvent`] to the sinks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use petgraph::graph::NodeIndex;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::events::{EventBody, EventSink, SinkError, StageEvent, StageOutput, now_ms};
use crate::journal::JournalState;
use crate::plan::fingerprint::FingerprintBuilder;
use crate::plan::{Plan, StageId, StageKind, StageWork};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How long cancelled work gets to clean up (an agent removing its
/// container) before the walker stops waiting for it.
pub const CANCEL_GRACE: Duration = Duration::from_secs(35);

/// Does the work of one stage.
pub trait StageWorker: Send + Sync + 'static {
    fn run(&self, job: Job) -> BoxFuture<Result<StageOutput, StageFailure>>;
}

/// One attempt at one stage, with the outputs of the stages it needs.
pub struct Job {
    pub plan: Arc<Plan>,
    pub node: NodeIndex,
    pub attempt: u32,
    pub inputs: StageInputs,
    pub log: StageLog,
    /// Fires on a timeout or an interrupt: stop, clean up, return.
    pub cancel: CancellationToken,
}

impl Job {
    pub fn stage(&self) -> &crate::plan::Stage {
        self.plan.graph.stage(self.node)
    }
}

/// The outputs of the stages a stage needs, by their kind.
#[derive(Debug, Clone, Default)]
pub struct StageInputs(Vec<(StageKind, StageId, StageOutput)>);

impl StageInputs {
    pub fn new(inputs: Vec<(StageKind, StageId, StageOutput)>) -> StageInputs {
        StageInputs(inputs)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The outputs of every needed stage of `kind`.
    pub fn of_kind(&self, kind: StageKind) -> impl Iterator<Item = (&StageId, &StageOutput)> {
        self.0
            .iter()
            .filter(move |(input_kind, _, _)| *input_kind == kind)
            .map(|(_, id, output)| (id, output))
    }

    /// The output of the one needed stage of `kind`.
    pub fn one(&self, kind: StageKind) -> Option<&StageOutput> {
        self.of_kind(kind).next().map(|(_, output)| output)
    }

    /// A digest of every input, recorded with the stage's output: a resume
    /// reuses that output only while the inputs are still the same.
    pub fn digest(&self) -> String {
        let mut sorted: Vec<&(StageKind, StageId, StageOutput)> = self.0.iter().collect();
        sorted.sort_by(|a, b| a.1.cmp(&b.1));
        let mut builder = FingerprintBuilder::new("inputs");
        for (_, id, output) in sorted {
            builder.str("stage", id.as_str());
            builder.str("output", &serde_json::to_string(output).unwrap_or_default());
        }
        builder.finish().to_hex()
    }
}

/// Lets a running stage send log lines and progress into the event stream.
#[derive(Clone)]
pub struct StageLog {
    stage: StageId,
    kind: StageKind,
    fingerprint: String,
    sender: mpsc::UnboundedSender<StageEvent>,
}

impl StageLog {
    pub fn line(&self, line: impl Into<String>) {
        self.send(EventBody::Log { line: line.into() });
    }

    pub fn progress(&self, done: u64, total: Option<u64>) {
        self.send(EventBody::Progress { done, total });
    }

    fn send(&self, body: EventBody) {
        // The walker outlives every job, so a closed channel only happens at shutdown.
        let _ = self.sender.send(StageEvent {
            stage: self.stage.clone(),
            kind: self.kind,
            fingerprint: self.fingerprint.clone(),
            at_ms: now_ms(),
            body,
        });
    }
}

impl crate::backend::WorkLog for StageLog {
    fn line(&self, line: String) {
        StageLog::line(self, line);
    }

    fn progress(&self, done: u64, total: Option<u64>) {
        StageLog::progress(self, done, total);
    }
}

/// Why an attempt failed; `retryable` failures are tried again while
/// retries and the stage's time last.
#[derive(Debug, Clone, PartialEq)]
pub struct StageFailure {
    pub message: String,
    pub retryable: bool,
    /// Stopped by a cancel (interrupt), not failed: the stage stays pending.
    pub cancelled: bool,
    /// What the stage measured before failing, kept in the results.
    pub partial: Option<Box<StageOutput>>,
}

impl StageFailure {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            cancelled: false,
            partial: None,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            cancelled: false,
            partial: None,
        }
    }

    pub fn cancelled(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            cancelled: true,
            partial: None,
        }
    }

    #[must_use]
    pub fn with_partial(mut self, output: StageOutput) -> Self {
        self.partial = Some(Box::new(output));
        self
    }
}

/// How many stages of a kind may run at once, across all hosts.
#[derive(Debug, Clone)]
pub struct Concurrency {
    pub per_kind: [usize; StageKind::ALL.len()],
}

impl Default for Concurrency {
    fn default() -> Self {
        let mut per_kind = [usize::MAX; StageKind::ALL.len()];
        // Base and image builds use every core; two at once keep both busy.
        per_kind[StageKind::Base.index()] = 1;
        per_kind[StageKind::Build.index()] = 2;
        per_kind[StageKind::Push.index()] = 4;
        per_kind[StageKind::Index.index()] = 4;
        Concurrency { per_kind }
    }
}

/// Waits between attempts: doubling from `first`, at most `max`, each
/// drawn between half and all of that (jitter keeps retries of many
/// stages from hitting a recovering registry at the same moment).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait after failed attempt `attempt` (from 1); `salt` varies the jitter.
    pub fn delay(&self, attempt: u32, salt: u64) -> Duration {
        let doubled = self
            .first
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        let mut mix = salt ^ now_ms().wrapping_mul(0x9e37_79b9_7f4a_7c15);
        mix = (mix ^ (mix >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let fraction = 0.5 + (mix >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
        doubled.mul_f64(fraction)
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplySummary {
    pub succeeded: usize,
    /// Measured runs left out because their cell met `measure.until`.
    pub not_needed: usize,
    pub up_to_date: usize,
    pub failed: Vec<(StageId, String)>,
    pub blocked: usize,
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("the stage graph has a cycle: {0}")]
    Graph(#[from] crate::plan::GraphError),
}

#[derive(Debug, Clone)]
enum NodeState {
    Waiting,
    Ready,
    Running,
    /// Failed an attempt and waits out its backoff.
    BackingOff,
    Done(Box<StageOutput>),
    Failed,
    Blocked,
}

/// Which queue a ready stage waits in: its machine's (prepare, pull, run
/// on any host of that physical machine) or its kind's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    Kind(StageKind),
    /// Index of the machine's first host in the experiment.
    Machine(usize),
}

/// What a spawned task reports back.
enum TaskReport {
    Attempt {
        node: NodeIndex,
        attempt: u32,
        duration_ms: u64,
        result: Box<Result<StageOutput, StageFailure>>,
    },
    /// A backoff has passed: the stage goes back into its queue.
    RetryDue(NodeIndex),
}

pub struct Walker<'s> {
    plan: Arc<Plan>,
    worker: Arc<dyn StageWorker>,
    journal: JournalState,
    concurrency: Concurrency,
    backoff: Backoff,
    /// Stages to run again even if the journal has them (`apply --from`).
    forced: Vec<bool>,
    sinks: Vec<&'s mut dyn EventSink>,
}

impl<'s> Walker<'s> {
    pub fn new(plan: Arc<Plan>, worker: Arc<dyn StageWorker>, journal: JournalState) -> Self {
        let count = plan.graph.len();
        Walker {
            plan,
            worker,
            journal,
            concurrency: Concurrency::default(),
            backoff: Backoff::default(),
            forced: vec![false; count],
            sinks: Vec::new(),
        }
    }

    #[must_use]
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Runs these stages again whatever the journal says; what depends on
    /// them follows, since their outputs are new.
    #[must_use]
    pub fn force(mut self, nodes: impl IntoIterator<Item = NodeIndex>) -> Self {
        for node in nodes {
            if let Some(flag) = self.forced.get_mut(node.index()) {
                *flag = true;
            }
        }
        self
    }

    #[must_use]
    pub fn sink(mut self, sink: &'s mut dyn EventSink) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Runs the plan until every stage is done, failed or blocked, or until
    /// `interrupt` resolves. On an interrupt, running work is cancelled and
    /// waited for (within [`CANCEL_GRACE`]), so what finished is kept.
    pub async fn run(
        mut self,
        interrupt: impl Future<Output = ()>,
    ) -> Result<ApplySummary, ExecError> {
        let plan = Arc::clone(&self.plan);
        let graph = &plan.graph;
        graph.topological_order()?;
        let count = graph.len();
        let mut node_states = vec![NodeState::Waiting; count];
        let mut remaining: Vec<usize> = (0..count)
            .map(|i| graph.needs(NodeIndex::new(i)).len())
            .collect();
        let mut queues: HashMap<Lane, BTreeMap<(u32, usize), NodeIndex>> = HashMap::new();
        let mut running_per_lane: HashMap<Lane, usize> = HashMap::new();
        let mut summary = ApplySummary::default();
        let (sender, mut receiver) = mpsc::unbounded_channel::<StageEvent>();
        let mut tasks: JoinSet<TaskReport> = JoinSet::new();
        let mut attempts = vec![0u32; count];
        let mut deadlines: Vec<Option<Instant>> = vec![None; count];
        let mut input_digests: Vec<String> = vec![String::new(); count];
        let root_cancel = CancellationToken::new();
        let mut interrupted = false;
        let cell_runs = measured_runs_by_cell(&plan);

        // Stages with no needs are ready at once; readiness then spreads as stages finish.
        let mut newly_ready: VecDeque<NodeIndex> = (0..count)
            .map(NodeIndex::new)
            .filter(|node| remaining[node.index()] == 0)
            .collect();
        tokio::pin!(interrupt);

        loop {
            // Settle readiness: reuse journal outputs whose fingerprint and inputs are unchanged.
            while let Some(node) = newly_ready.pop_front() {
                let stage = graph.stage(node);
                let inputs = self.inputs_of(node, &node_states);
                let digest = inputs.digest();
                let reusable = if self.forced[node.index()] {
                    None
                } else {
                    self.journal
                        .reusable(&stage.id, &stage.fingerprint.to_hex(), &digest)
                        // Whether a run is needed depends on its cell's other
                        // runs and the target, so it is decided afresh.
                        .filter(|output| !matches!(output, StageOutput::NotNeeded { .. }))
                        .cloned()
                };
                input_digests[node.index()] = digest;
                if let Some(output) = reusable {
                    self.emit(&StageEvent::new(
                        stage,
                        EventBody::UpToDate {
                            output: output.clone(),
                        },
                    ))?;
                    summary.up_to_date += 1;
                    node_states[node.index()] = NodeState::Done(Box::new(output));
                    release(graph, node, &mut remaining, &mut newly_ready);
                } else {
                    node_states[node.index()] = NodeState::Ready;
                    let lane = lane_of(&plan, node);
                    queues
                        .entry(lane)
                        .or_default()
                        .insert(priority(&plan, node), node);
                }
            }

            // Start what the limits allow, lowest sequence first within a lane.
            for (lane, queue) in &mut queues {
                if interrupted {
                    break;
                }
                let limit = lane_limit(&plan, *lane, &self.concurrency);
                let running = running_per_lane.entry(*lane).or_default();
                while *running < limit {
                    let Some((_, node)) = queue.pop_first() else {
                        break;
                    };
                    if let Some(runs) = until_met(&plan, &cell_runs, node, &node_states) {
                        let output = StageOutput::NotNeeded { runs };
                        let stage = graph.stage(node);
                        let digest = &input_digests[node.index()];
                        // The same decision as last time is no news: a no-op apply stays one.
                        let body =
                            if self
                                .journal
                                .reusable(&stage.id, &stage.fingerprint.to_hex(), digest)
                                == Some(&output)
                            {
                                summary.up_to_date += 1;
                                EventBody::UpToDate {
                                    output: output.clone(),
                                }
                            } else {
                                summary.not_needed += 1;
                                EventBody::Succeeded {
                                    output: output.clone(),
                                    duration_ms: 0,
                                    inputs: Some(digest.clone()),
                                }
                            };
                        for sink in &mut self.sinks {
                            sink.on_event(&StageEvent::new(stage, body.clone()))?;
                        }
                        node_states[node.index()] = NodeState::Done(Box::new(output));
                        release(graph, node, &mut remaining, &mut newly_ready);
                        continue;
                    }
                    *running += 1;
                    node_states[node.index()] = NodeState::Running;
                    attempts[node.index()] += 1;
                    let attempt = attempts[node.index()];
                    let stage = graph.stage(node);
                    let timeout = stage.limit.timeout;
                    let deadline = *deadlines[node.index()].get_or_insert_with(|| {
                        timeout.map_or(far_future(), |t| Instant::now() + t)
                    });
                    for sink in &mut self.sinks {
                        sink.on_event(&StageEvent::new(stage, EventBody::Started { attempt }))?;
                    }
                    let cancel = root_cancel.child_token();
                    let job = Job {
                        plan: Arc::clone(&plan),
                        node,
                        attempt,
                        inputs: self.inputs_of(node, &node_states),
                        log: StageLog {
                            stage: stage.id.clone(),
                            kind: stage.kind,
                            fingerprint: stage.fingerprint.to_hex(),
                            sender: sender.clone(),
                        },
                        cancel: cancel.clone(),
                    };
                    let work = self.worker.run(job);
                    tasks.spawn(attempt_task(node, attempt, work, deadline, timeout, cancel));
                }
            }

            if tasks.is_empty() {
                // Runs left out may have made the aggregate ready.
                if newly_ready.is_empty() {
                    break;
                }
                continue;
            }

            tokio::select! {
                // Log lines before completions, so a stage's log precedes its end.
                biased;
                Some(event) = receiver.recv() => self.emit(&event)?,
                Some(joined) = tasks.join_next() => {
                    let Ok(report) = joined else { continue };
                    while let Ok(event) = receiver.try_recv() {
                        self.emit(&event)?;
                    }
                    let (node, attempt, duration_ms, result) = match report {
                        TaskReport::RetryDue(node) => {
                            let stage = graph.stage(node);
                            if interrupted {
                                self.emit(&StageEvent::new(stage, EventBody::Cancelled))?;
                            } else {
                                node_states[node.index()] = NodeState::Ready;
                                queues.entry(lane_of(&plan, node)).or_default().insert(priority(&plan, node), node);
                            }
                            continue;
                        }
                        TaskReport::Attempt { node, attempt, duration_ms, result } => (node, attempt, duration_ms, *result),
                    };
                    let lane = lane_of(&plan, node);
                    if let Some(running) = running_per_lane.get_mut(&lane) {
                        *running -= 1;
                    }
                    let stage = graph.stage(node);
                    match result {
                        Ok(output) => {
                            self.emit(&StageEvent::new(stage, EventBody::Succeeded {
                                output: output.clone(),
                                duration_ms,
                                inputs: Some(input_digests[node.index()].clone()),
                            }))?;
                            summary.succeeded += 1;
                            node_states[node.index()] = NodeState::Done(Box::new(output));
                            release(graph, node, &mut remaining, &mut newly_ready);
                        }
                        Err(failure) if failure.cancelled || (interrupted && failure.retryable) => {
                            self.emit(&StageEvent::new(stage, EventBody::Cancelled))?;
                            node_states[node.index()] = NodeState::Waiting;
                        }
                        Err(failure) if failure.retryable && attempt <= stage.limit.retries => {
                            let delay = self.backoff.delay(attempt, node.index() as u64);
                            let left = deadlines[node.index()]
                                .map_or(Duration::MAX, |deadline| deadline.saturating_duration_since(Instant::now()));
                            if delay >= left {
                                let message = format!("{} (no time left for another attempt within the stage's timeout)", failure.message);
                                self.fail(node, message, failure.partial, duration_ms, &mut node_states, &mut summary)?;
                                continue;
                            }
                            self.emit(&StageEvent::new(stage, EventBody::Retrying {
                                attempt,
                                error: failure.message,
                                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            }))?;
                            node_states[node.index()] = NodeState::BackingOff;
                            // An interrupt ends the wait at once.
                            let interrupted = root_cancel.clone();
                            tasks.spawn(async move {
                                tokio::select! {
                                    () = tokio::time::sleep(delay) => {}
                                    () = interrupted.cancelled() => {}
                                }
                                TaskReport::RetryDue(node)
                            });
                        }
                        Err(failure) => {
                            self.fail(node, failure.message, failure.partial, duration_ms, &mut node_states, &mut summary)?;
                        }
                    }
                }
                () = &mut interrupt, if !interrupted => {
                    interrupted = true;
                    summary.interrupted = true;
                    // Running work is told to stop and clean up; what
                    // finishes meanwhile is still recorded below.
                    root_cancel.cancel();
                    queues.clear();
                }
            }
        }
        while let Ok(event) = receiver.try_recv() {
            self.emit(&event)?;
        }
        for sink in &mut self.sinks {
            sink.finish()?;
        }
        Ok(summary)
    }

    /// The outputs of the stages `node` needs, as far as they are done.
    fn inputs_of(&self, node: NodeIndex, node_states: &[NodeState]) -> StageInputs {
        let graph = &self.plan.graph;
        StageInputs::new(
            graph
                .needs(node)
                .into_iter()
                .filter_map(|need| {
                    let index = graph.node(need)?;
                    match &node_states[index.index()] {
                        NodeState::Done(output) => Some((
                            graph.stage(index).kind,
                            need.clone(),
                            output.as_ref().clone(),
                        )),
                        _ => None,
                    }
                })
                .collect(),
        )
    }

    fn fail(
        &mut self,
        node: NodeIndex,
        message: String,
        partial: Option<Box<StageOutput>>,
        duration_ms: u64,
        node_states: &mut [NodeState],
        summary: &mut ApplySummary,
    ) -> Result<(), SinkError> {
        let plan = Arc::clone(&self.plan);
        let stage = plan.graph.stage(node);
        self.emit(&StageEvent::new(
            stage,
            EventBody::Failed {
                error: message.clone(),
                duration_ms,
                output: partial.map(|output| *output),
            },
        ))?;
        summary.failed.push((stage.id.clone(), message));
        node_states[node.index()] = NodeState::Failed;
        summary.blocked += self.block_dependents(node, node_states)?;
        Ok(())
    }

    fn emit(&mut self, event: &StageEvent) -> Result<(), SinkError> {
        for sink in &mut self.sinks {
            sink.on_event(event)?;
        }
        Ok(())
    }

    /// Marks everything downstream of a failed stage as blocked; returns how many.
    fn block_dependents(
        &mut self,
        failed: NodeIndex,
        node_states: &mut [NodeState],
    ) -> Result<usize, SinkError> {
        let plan = Arc::clone(&self.plan);
        let graph = &plan.graph;
        let by = graph.stage(failed).id.clone();
        let mut pending: Vec<NodeIndex> = graph.dependents(failed).collect();
        let mut blocked = 0;
        while let Some(node) = pending.pop() {
            if !matches!(node_states[node.index()], NodeState::Waiting) {
                continue;
            }
            node_states[node.index()] = NodeState::Blocked;
            blocked += 1;
            self.emit(&StageEvent::new(
                graph.stage(node),
                EventBody::Blocked { by: by.clone() },
            ))?;
            pending.extend(graph.dependents(node));
        }
        Ok(blocked)
    }
}

impl StageEvent {
    pub fn new(stage: &crate::plan::Stage, body: EventBody) -> StageEvent {
        StageEvent {
            stage: stage.id.clone(),
            kind: stage.kind,
            fingerprint: stage.fingerprint.to_hex(),
            at_ms: now_ms(),
            body,
        }
    }
}

fn release(
    graph: &crate::plan::StageGraph,
    node: NodeIndex,
    remaining: &mut [usize],
    ready: &mut VecDeque<NodeIndex>,
) {
    for dependent in graph.dependents(node) {
        remaining[dependent.index()] -= 1;
        if remaining[dependent.index()] == 0 {
            ready.push_back(dependent);
        }
    }
}

/// Host-bound stages share their machine's lane, so measurements on one
/// physical machine never overlap, whichever of its hosts they are on.
fn lane_of(plan: &Plan, node: NodeIndex) -> Lane {
    let stage = plan.graph.stage(node);
    let host = match &stage.work {
        StageWork::PrepareHost { host } | StageWork::Pull { host, .. } => *host,
        StageWork::Run(run) => plan.experiment.cells[run.cell].host,
        _ => return Lane::Kind(stage.kind),
    };
    let hosts = &plan.experiment.hosts;
    let machine = &hosts[host].machine;
    Lane::Machine(
        hosts
            .iter()
            .position(|other| &other.machine == machine)
            .unwrap_or(host),
    )
}

/// A machine runs as many stages at once as the strictest of its hosts allows.
fn lane_limit(plan: &Plan, lane: Lane, concurrency: &Concurrency) -> usize {
    match lane {
        Lane::Kind(kind) => concurrency.per_kind[kind.index()],
        Lane::Machine(first) => {
            let hosts = &plan.experiment.hosts;
            let machine = &hosts[first].machine;
            hosts
                .iter()
                .filter(|host| &host.machine == machine)
                .map(|host| host.max_parallel as usize)
                .min()
                .unwrap_or(1)
        }
    }
}

/// Within a lane: prepare, then pulls, then runs in their planned sequence;
/// ties go to the earlier stage in the plan.
fn priority(plan: &Plan, node: NodeIndex) -> (u32, usize) {
    let order = match &plan.graph.stage(node).work {
        StageWork::Pull { .. } => 1,
        StageWork::Run(run) => run.sequence.saturating_add(2),
        _ => 0,
    };
    (order, node.index())
}

/// Each cell's measured run stages, when the plan has `measure.until`.
fn measured_runs_by_cell(plan: &Plan) -> Vec<Vec<NodeIndex>> {
    let experiment = &plan.experiment;
    if experiment.measure.until.is_none() {
        return Vec::new();
    }
    let mut by_cell = vec![Vec::new(); experiment.cells.len()];
    for (node, stage) in plan.graph.stages() {
        if let StageWork::Run(run) = &stage.work
            && !run.warmup
        {
            by_cell[run.cell].push(node);
        }
    }
    by_cell
}

/// How many ok runs met the target of `measure.until`, if `node` is a
/// measured run whose cell has met it. Runs still in flight do not count,
/// so with several at once a cell may get a few more than it needed.
fn until_met(
    plan: &Plan,
    cell_runs: &[Vec<NodeIndex>],
    node: NodeIndex,
    node_states: &[NodeState],
) -> Option<u32> {
    let until = plan.experiment.measure.until?;
    let StageWork::Run(run) = &plan.graph.stage(node).work else {
        return None;
    };
    if run.warmup {
        return None;
    }
    let values: Vec<f64> = cell_runs
        .get(run.cell)?
        .iter()
        .filter_map(|other| match &node_states[other.index()] {
            NodeState::Done(output) => match output.as_ref() {
                StageOutput::Run(record) if record.ok => record.metric(until.metric),
                _ => None,
            },
            _ => None,
        })
        .collect();
    until
        .met(&values)
        .then(|| u32::try_from(values.len()).unwrap_or(u32::MAX))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// One attempt, bounded by the stage's deadline: a timeout or an interrupt
/// cancels the work and gives it [`CANCEL_GRACE`] to clean up; a panic
/// fails the stage with its message.
async fn attempt_task(
    node: NodeIndex,
    attempt: u32,
    work: BoxFuture<Result<StageOutput, StageFailure>>,
    deadline: Instant,
    timeout: Option<Duration>,
    cancel: CancellationToken,
) -> TaskReport {
    let started = Instant::now();
    let work = AssertUnwindSafe(work).catch_unwind();
    tokio::pin!(work);
    let caught = tokio::select! {
        caught = &mut work => Some(caught),
        () = tokio::time::sleep_until(deadline.into()) => None,
        () = cancel.cancelled() => None,
    };
    let result = match caught {
        Some(Ok(result)) => result,
        Some(Err(panic)) => Err(StageFailure::fatal(format!(
            "the stage panicked: {}",
            panic_message(panic.as_ref())
        ))),
        None => {
            let timed_out = !cancel.is_cancelled();
            cancel.cancel();
            let cleanup = tokio::time::timeout(CANCEL_GRACE, &mut work).await;
            match cleanup {
                // It finished while stopping: what it made is kept.
                Ok(Ok(Ok(output))) => Ok(output),
                Ok(Err(panic)) => Err(StageFailure::fatal(format!(
                    "the stage panicked while stopping: {}",
                    panic_message(panic.as_ref())
                ))),
                Ok(Ok(Err(_))) | Err(_) => {
                    let unfinished = if cleanup.is_ok() {
                        ""
                    } else {
                        "; its work did not stop within the grace period"
                    };
                    if timed_out {
                        let limit = timeout.map_or_else(String::new, |limit| {
                            humantime::format_duration(limit).to_string()
                        });
                        Err(StageFailure::fatal(format!(
                            "timed out after {limit}{unfinished}"
                        )))
                    } else {
                        Err(StageFailure::cancelled(format!("cancelled{unfinished}")))
                    }
                }
            }
        }
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    TaskReport::Attempt {
        node,
        attempt,
        duration_ms,
        result: Box::new(result),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

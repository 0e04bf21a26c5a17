//! Walks the stage DAG: starts a stage when every stage it needs is done,
//! within per-kind and per-host limits, with timeouts, retries and
//! cancellation. It does no work itself: a [`StageWorker`] does, and every
//! state change goes out as a [`StageEvent`] to the sinks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use petgraph::graph::NodeIndex;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::events::{EventBody, EventSink, SinkError, StageEvent, StageOutput, now_ms};
use crate::journal::JournalState;
use crate::plan::{Plan, StageId, StageKind, Subject};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Does the work of one stage.
pub trait StageWorker: Send + Sync + 'static {
    fn run(&self, job: Job) -> BoxFuture<Result<StageOutput, StageFailure>>;
}

/// One attempt at one stage, with the outputs of the stages it needs.
pub struct Job {
    pub plan: Arc<Plan>,
    pub node: NodeIndex,
    pub attempt: u32,
    pub inputs: HashMap<StageId, StageOutput>,
    pub log: StageLog,
}

impl Job {
    pub fn stage(&self) -> &crate::plan::Stage {
        self.plan.graph.stage(self.node)
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

/// Why an attempt failed; `retryable` failures are tried again while retries last.
#[derive(Debug, Clone, PartialEq)]
pub struct StageFailure {
    pub message: String,
    pub retryable: bool,
    /// What the stage measured before failing, kept in the results.
    pub partial: Option<StageOutput>,
}

impl StageFailure {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            partial: None,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            partial: None,
        }
    }

    #[must_use]
    pub fn with_partial(mut self, output: StageOutput) -> Self {
        self.partial = Some(output);
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

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplySummary {
    pub succeeded: usize,
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
    /// Done; `fresh` when executed in this apply rather than reused.
    Done {
        output: StageOutput,
        fresh: bool,
    },
    Failed,
    Blocked,
}

/// Which queue a ready stage waits in: a host's (prepare, pull, run) or its kind's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    Kind(StageKind),
    Host(usize),
}

pub struct Walker<'s> {
    plan: Arc<Plan>,
    worker: Arc<dyn StageWorker>,
    journal: JournalState,
    concurrency: Concurrency,
    sinks: Vec<&'s mut dyn EventSink>,
}

impl<'s> Walker<'s> {
    pub fn new(plan: Arc<Plan>, worker: Arc<dyn StageWorker>, journal: JournalState) -> Self {
        Walker {
            plan,
            worker,
            journal,
            concurrency: Concurrency::default(),
            sinks: Vec::new(),
        }
    }

    #[must_use]
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    #[must_use]
    pub fn sink(mut self, sink: &'s mut dyn EventSink) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Runs the plan until every stage is done, failed or blocked, or until
    /// `interrupt` resolves.
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
        let mut tasks: JoinSet<(NodeIndex, u32, u64, Result<StageOutput, StageFailure>)> =
            JoinSet::new();
        let mut attempts = vec![0u32; count];

        // Stages with no needs are ready at once; readiness then spreads as stages finish.
        let mut newly_ready: VecDeque<NodeIndex> = (0..count)
            .map(NodeIndex::new)
            .filter(|node| remaining[node.index()] == 0)
            .collect();
        tokio::pin!(interrupt);

        loop {
            // Settle readiness: reuse journal outputs where nothing upstream changed.
            while let Some(node) = newly_ready.pop_front() {
                let stage = graph.stage(node);
                let fingerprint = stage.fingerprint.to_hex();
                let upstream_fresh = graph.needs(node).iter().any(|need| {
                    graph.node(need).is_some_and(|n| {
                        matches!(node_states[n.index()], NodeState::Done { fresh: true, .. })
                    })
                });
                let reusable = if upstream_fresh {
                    None
                } else {
                    self.journal.reusable(&stage.id, &fingerprint).cloned()
                };
                if let Some(output) = reusable {
                    self.emit(&StageEvent::new(
                        stage,
                        EventBody::UpToDate {
                            output: output.clone(),
                        },
                    ))?;
                    summary.up_to_date += 1;
                    node_states[node.index()] = NodeState::Done {
                        output,
                        fresh: false,
                    };
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
                let limit = lane_limit(&plan, *lane, &self.concurrency);
                let running = running_per_lane.entry(*lane).or_default();
                while *running < limit {
                    let Some((_, node)) = queue.pop_first() else {
                        break;
                    };
                    *running += 1;
                    node_states[node.index()] = NodeState::Running;
                    attempts[node.index()] += 1;
                    let attempt = attempts[node.index()];
                    let stage = graph.stage(node);
                    self.emit(&StageEvent::new(stage, EventBody::Started { attempt }))?;
                    let inputs = graph
                        .needs(node)
                        .into_iter()
                        .filter_map(|need| {
                            let index = graph.node(need)?.index();
                            match &node_states[index] {
                                NodeState::Done { output, .. } => {
                                    Some((need.clone(), output.clone()))
                                }
                                _ => None,
                            }
                        })
                        .collect();
                    let job = Job {
                        plan: Arc::clone(&plan),
                        node,
                        attempt,
                        inputs,
                        log: StageLog {
                            stage: stage.id.clone(),
                            kind: stage.kind,
                            fingerprint: stage.fingerprint.to_hex(),
                            sender: sender.clone(),
                        },
                    };
                    let work = self.worker.run(job);
                    let timeout = stage.limit.timeout;
                    tasks.spawn(async move {
                        let started = Instant::now();
                        let result = match timeout {
                            Some(limit) => match tokio::time::timeout(limit, work).await {
                                Ok(result) => result,
                                Err(_) => Err(StageFailure::retryable(format!(
                                    "timed out after {}",
                                    humantime::format_duration(limit)
                                ))),
                            },
                            None => work.await,
                        };
                        let elapsed =
                            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        (node, attempt, elapsed, result)
                    });
                }
            }

            if tasks.is_empty() {
                break;
            }

            tokio::select! {
                // Log lines before completions, so a stage's log precedes its end.
                biased;
                Some(event) = receiver.recv() => self.emit(&event)?,
                Some(joined) = tasks.join_next() => {
                    let Ok((node, attempt, duration_ms, result)) = joined else { continue };
                    while let Ok(event) = receiver.try_recv() {
                        self.emit(&event)?;
                    }
                    let lane = lane_of(&plan, node);
                    if let Some(running) = running_per_lane.get_mut(&lane) {
                        *running -= 1;
                    }
                    let stage = graph.stage(node);
                    match result {
                        Ok(output) => {
                            self.emit(&StageEvent::new(stage, EventBody::Succeeded { output: output.clone(), duration_ms }))?;
                            summary.succeeded += 1;
                            node_states[node.index()] = NodeState::Done { output, fresh: true };
                            release(graph, node, &mut remaining, &mut newly_ready);
                        }
                        Err(failure) if failure.retryable && attempt <= stage.limit.retries => {
                            self.emit(&StageEvent::new(stage, EventBody::Retrying { attempt, error: failure.message }))?;
                            node_states[node.index()] = NodeState::Ready;
                            queues.entry(lane).or_default().insert(priority(&plan, node), node);
                        }
                        Err(failure) => {
                            self.emit(&StageEvent::new(stage, EventBody::Failed { error: failure.message.clone(), duration_ms, output: failure.partial.clone() }))?;
                            summary.failed.push((stage.id.clone(), failure.message));
                            node_states[node.index()] = NodeState::Failed;
                            summary.blocked += self.block_dependents(node, &mut node_states)?;
                        }
                    }
                }
                () = &mut interrupt => {
                    summary.interrupted = true;
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    while let Ok(event) = receiver.try_recv() {
                        self.emit(&event)?;
                    }
                    for (index, node_state) in node_states.iter().enumerate() {
                        if matches!(node_state, NodeState::Running) {
                            self.emit(&StageEvent::new(graph.stage(NodeIndex::new(index)), EventBody::Cancelled))?;
                        }
                    }
                    break;
                }
            }
        }
        for sink in &mut self.sinks {
            sink.finish()?;
        }
        Ok(summary)
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

/// Host-bound stages share their host's lane, so measurements never overlap.
fn lane_of(plan: &Plan, node: NodeIndex) -> Lane {
    let stage = plan.graph.stage(node);
    match &stage.subject {
        Subject::Host { host } | Subject::Pull { host, .. } => Lane::Host(*host),
        Subject::Run(run) => Lane::Host(plan.experiment.cells[run.cell].host),
        _ => Lane::Kind(stage.kind),
    }
}

fn lane_limit(plan: &Plan, lane: Lane, concurrency: &Concurrency) -> usize {
    match lane {
        Lane::Kind(kind) => concurrency.per_kind[kind.index()],
        Lane::Host(host) => plan.experiment.hosts[host].max_parallel as usize,
    }
}

/// Within a lane: prepare, then pulls, then runs in their planned sequence;
/// ties go to the earlier stage in the plan.
fn priority(plan: &Plan, node: NodeIndex) -> (u32, usize) {
    let order = match &plan.graph.stage(node).subject {
        Subject::Pull { .. } => 1,
        Subject::Run(run) => run.sequence.saturating_add(2),
        _ => 0,
    };
    (order, node.index())
}

//! How far an experiment has come, from its journal: every stage's state
//! and what the next apply would do.

use serde::Serialize;

use crate::events::StageOutput;
use crate::journal::{JournalState, Outcome};
use crate::plan::{Plan, StageId, StageKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageState {
    /// Done with the current fingerprint.
    Done,
    /// Its latest attempt with the current fingerprint failed.
    Failed,
    /// Done or failed before, but its inputs have changed since.
    Stale,
    /// Never run.
    Pending,
}

impl StageState {
    pub fn as_str(self) -> &'static str {
        match self {
            StageState::Done => "done",
            StageState::Failed => "failed",
            StageState::Stale => "stale",
            StageState::Pending => "pending",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageStatus {
    pub id: StageId,
    pub kind: StageKind,
    pub state: StageState,
    /// The first line of the error, for a failed stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `pipeline apply` would do next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NextApply {
    /// Stages that would run: failed, stale and pending ones.
    pub runs: usize,
    /// Done stages it would reuse as they are.
    pub reuses: usize,
    /// Done stages downstream of one that runs: they run again if what
    /// they consume comes out different.
    pub may_rerun: usize,
}

pub fn stage_states(plan: &Plan, journal: &JournalState) -> Vec<StageStatus> {
    plan.graph
        .stages()
        .map(|(_, stage)| {
            let fingerprint = stage.fingerprint.to_hex();
            let (state, error) = match journal.outcome(&stage.id) {
                // A run left out by a `measure.until` the spec no longer has will run.
                Some(Outcome::Done(done))
                    if matches!(done.output, StageOutput::NotNeeded { .. })
                        && plan.experiment.measure.until.is_none() =>
                {
                    (StageState::Pending, None)
                }
                Some(Outcome::Done(done)) if done.fingerprint == fingerprint => {
                    (StageState::Done, None)
                }
                Some(Outcome::Failed {
                    fingerprint: failed,
                    error,
                    ..
                }) if *failed == fingerprint => (
                    StageState::Failed,
                    Some(error.lines().next().unwrap_or_default().to_string()),
                ),
                Some(_) => (StageState::Stale, None),
                None => (StageState::Pending, None),
            };
            StageStatus {
                id: stage.id.clone(),
                kind: stage.kind,
                state,
                error,
            }
        })
        .collect()
}

pub fn next_apply(plan: &Plan, states: &[StageStatus]) -> NextApply {
    let to_run: Vec<petgraph::graph::NodeIndex> = plan
        .graph
        .stages()
        .zip(states)
        .filter(|(_, status)| status.state != StageState::Done)
        .map(|((node, _), _)| node)
        .collect();
    let runs = to_run.len();
    let downstream = plan.graph.downstream_of(to_run);
    let may_rerun = states
        .iter()
        .filter(|status| status.state == StageState::Done && downstream.contains(&status.id))
        .count();
    NextApply {
        runs,
        reuses: states.len() - runs - may_rerun,
        may_rerun,
    }
}

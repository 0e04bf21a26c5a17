//! The stage DAG: stages as nodes, "needs" as edges from a dependency to its dependent.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use petgraph::Direction;
use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
use super::model::StageLimit;
use crate::spec::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    Base,
    Vendor,
    Render,
    Build,
    Push,
    Index,
    PrepareHost,
    Pull,
    Run,
    Aggregate,
}

impl StageKind {
    pub const ALL: [StageKind; 10] = [
        StageKind::Base,
        StageKind::Vendor,
        StageKind::Render,
        StageKind::Build,
        StageKind::Push,
        StageKind::Index,
        StageKind::PrepareHost,
        StageKind::Pull,
        StageKind::Run,
        StageKind::Aggregate,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Base => "base",
            StageKind::Vendor => "vendor",
            StageKind::Render => "render",
            StageKind::Build => "build",
            StageKind::Push => "push",
            StageKind::Index => "index",
            StageKind::PrepareHost => "prepare-host",
            StageKind::Pull => "pull",
            StageKind::Run => "run",
            StageKind::Aggregate => "aggregate",
        }
    }

    pub fn parse(text: &str) -> Option<StageKind> {
        StageKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }

    /// Generous defaults: a stuck stage fails instead of hanging the apply.
    pub fn default_timeout(self) -> Option<Duration> {
        let minutes = match self {
            StageKind::Base => 60,
            StageKind::Build => 30,
            StageKind::Vendor => 15,
            StageKind::Push | StageKind::Index | StageKind::Pull => 10,
            StageKind::Render | StageKind::Aggregate | StageKind::PrepareHost | StageKind::Run => 5,
        };
        Some(Duration::from_secs(minutes * 60))
    }

    /// Network stages retry by default; measured runs never do unless asked,
    /// since a retried run is a different measurement.
    pub fn default_retries(self) -> u32 {
        match self {
            StageKind::Vendor => 1,
            StageKind::Push | StageKind::Index | StageKind::Pull | StageKind::PrepareHost => 2,
            _ => 0,
        }
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage id reads as a path: `build/face-detection/cpp/optimized/linux-arm64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageId(String);

impl StageId {
    pub fn new(kind: StageKind, path: &str) -> StageId {
        if path.is_empty() {
            StageId(kind.as_str().to_string())
        } else {
            StageId(format!("{}/{path}", kind.as_str()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a stage does, and to what, as indexes into the resolved
/// experiment: one variant per stage kind, so a handler never has to
/// guess which combination it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageWork {
    Base {
        base: usize,
    },
    /// Fetches the dependencies of the sources `image` is built from, shared
    /// by every image of its workload and language.
    Vendor {
        image: usize,
    },
    Render {
        image: usize,
    },
    Build {
        image: usize,
    },
    Push {
        image: usize,
    },
    Index {
        images: Vec<usize>,
    },
    PrepareHost {
        host: usize,
    },
    Pull {
        image: usize,
        host: usize,
        engine: Engine,
    },
    Run(RunSubject),
    Aggregate,
}

impl StageWork {
    pub fn kind(&self) -> StageKind {
        match self {
            StageWork::Base { .. } => StageKind::Base,
            StageWork::Vendor { .. } => StageKind::Vendor,
            StageWork::Render { .. } => StageKind::Render,
            StageWork::Build { .. } => StageKind::Build,
            StageWork::Push { .. } => StageKind::Push,
            StageWork::Index { .. } => StageKind::Index,
            StageWork::PrepareHost { .. } => StageKind::PrepareHost,
            StageWork::Pull { .. } => StageKind::Pull,
            StageWork::Run(_) => StageKind::Run,
            StageWork::Aggregate => StageKind::Aggregate,
        }
    }

    /// The image a render, build or push stage works on.
    pub fn image(&self) -> Option<usize> {
        match self {
            StageWork::Render { image }
            | StageWork::Build { image }
            | StageWork::Push { image } => Some(*image),
            _ => None,
        }
    }
}

/// One measured (or warm-up) container run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSubject {
    pub cell: usize,
    /// Counts measured runs from 0; warm-up runs count separately.
    pub iteration: u32,
    pub warmup: bool,
    /// Position among the runs of the same host, in execution order.
    pub sequence: u32,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub id: StageId,
    pub kind: StageKind,
    pub fingerprint: Fingerprint,
    pub work: StageWork,
    pub limit: StageLimit,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("duplicate stage `{0}`")]
    Duplicate(StageId),
    #[error("stage `{stage}` needs `{missing}`, which is not in the plan")]
    Dangling { stage: StageId, missing: StageId },
    #[error("stages form a cycle: {}", .0.iter().map(StageId::as_str).collect::<Vec<_>>().join(" -> "))]
    Cycle(Vec<StageId>),
}

#[derive(Debug, Default, Clone)]
pub struct StageGraph {
    graph: DiGraph<Stage, ()>,
    by_id: HashMap<StageId, NodeIndex>,
}

impl StageGraph {
    pub fn with_capacity(stages: usize, needs: usize) -> StageGraph {
        StageGraph {
            graph: DiGraph::with_capacity(stages, needs),
            by_id: HashMap::with_capacity(stages),
        }
    }

    pub fn add(&mut self, stage: Stage) -> Result<NodeIndex, GraphError> {
        if self.by_id.contains_key(&stage.id) {
            return Err(GraphError::Duplicate(stage.id));
        }
        let id = stage.id.clone();
        let node = self.graph.add_node(stage);
        self.by_id.insert(id, node);
        Ok(node)
    }

    /// Records that `stage` needs the output of `dependency`. Callers add each
    /// need once: checking for an existing edge would scan every dependent of
    /// a hub such as a host's prepare stage, which is quadratic.
    pub fn need(&mut self, stage: NodeIndex, dependency: NodeIndex) {
        self.graph.add_edge(dependency, stage, ());
    }

    /// Like [`Self::need`], by id; an unknown id is a dangling reference.
    pub fn need_id(&mut self, stage: NodeIndex, dependency: &StageId) -> Result<(), GraphError> {
        let Some(&node) = self.by_id.get(dependency) else {
            return Err(GraphError::Dangling {
                stage: self.graph[stage].id.clone(),
                missing: dependency.clone(),
            });
        };
        self.need(stage, node);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    pub fn node(&self, id: &StageId) -> Option<NodeIndex> {
        self.by_id.get(id).copied()
    }

    pub fn stage(&self, node: NodeIndex) -> &Stage {
        &self.graph[node]
    }

    /// Stages in insertion order, which expansion keeps readable (by kind, then path).
    pub fn stages(&self) -> impl Iterator<Item = (NodeIndex, &Stage)> {
        self.graph
            .node_indices()
            .map(|node| (node, &self.graph[node]))
    }

    /// The stages `node` needs, sorted by id for stable output.
    pub fn needs(&self, node: NodeIndex) -> Vec<&StageId> {
        let mut needs: Vec<&StageId> = self
            .graph
            .neighbors_directed(node, Direction::Incoming)
            .map(|dependency| &self.graph[dependency].id)
            .collect();
        needs.sort();
        needs
    }

    pub fn dependents(&self, node: NodeIndex) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.neighbors_directed(node, Direction::Outgoing)
    }

    /// Dependencies before dependents; a cycle is reported with the stages on it.
    pub fn topological_order(&self) -> Result<Vec<NodeIndex>, GraphError> {
        toposort(&self.graph, None)
            .map_err(|cycle| GraphError::Cycle(self.cycle_through(cycle.node_id())))
    }

    /// Follows needs from a node known to be on a cycle until it comes back.
    fn cycle_through(&self, start: NodeIndex) -> Vec<StageId> {
        let sccs = petgraph::algo::kosaraju_scc(&self.graph);
        let component = sccs
            .into_iter()
            .find(|scc| scc.contains(&start))
            .unwrap_or_default();
        let mut path = vec![start];
        let mut current = start;
        while let Some(next) = self
            .graph
            .neighbors_directed(current, Direction::Outgoing)
            .find(|next| component.contains(next))
        {
            if let Some(position) = path.iter().position(|node| *node == next) {
                let mut cycle: Vec<StageId> = path[position..]
                    .iter()
                    .map(|node| self.graph[*node].id.clone())
                    .collect();
                cycle.push(self.graph[next].id.clone());
                return cycle;
            }
            path.push(next);
            current = next;
        }
        vec![self.graph[start].id.clone()]
    }

    /// The stages `select` picks and every stage they need, directly or not,
    /// with the needs between them: what an apply limited to them must run.
    #[must_use]
    pub fn with_needs_of(&self, select: impl Fn(&Stage) -> bool) -> StageGraph {
        let mut keep = vec![false; self.len()];
        let mut pending: Vec<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|node| select(&self.graph[*node]))
            .collect();
        while let Some(node) = pending.pop() {
            if std::mem::replace(&mut keep[node.index()], true) {
                continue;
            }
            pending.extend(self.graph.neighbors_directed(node, Direction::Incoming));
        }
        let graph = self.graph.filter_map(
            |node, stage| keep[node.index()].then(|| stage.clone()),
            |_, ()| Some(()),
        );
        let by_id = graph
            .node_indices()
            .map(|node| (graph[node].id.clone(), node))
            .collect();
        StageGraph { graph, by_id }
    }

    /// The ids of `start` and of every stage that depends on them, directly or not.
    pub fn downstream_of(
        &self,
        start: impl IntoIterator<Item = NodeIndex>,
    ) -> std::collections::HashSet<StageId> {
        let mut seen = vec![false; self.len()];
        let mut pending: Vec<NodeIndex> = start.into_iter().collect();
        let mut ids = std::collections::HashSet::new();
        while let Some(node) = pending.pop() {
            if std::mem::replace(&mut seen[node.index()], true) {
                continue;
            }
            ids.insert(self.graph[node].id.clone());
            pending.extend(self.graph.neighbors_directed(node, Direction::Outgoing));
        }
        ids
    }

    pub fn count_by_kind(&self) -> [usize; StageKind::ALL.len()] {
        let mut counts = [0; StageKind::ALL.len()];
        for stage in self.graph.node_weights() {
            counts[stage.kind.index()] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fingerprint::FingerprintBuilder;

    fn stage(kind: StageKind, path: &str) -> Stage {
        Stage {
            id: StageId::new(kind, path),
            kind,
            fingerprint: FingerprintBuilder::new(path).finish(),
            work: StageWork::Aggregate,
            limit: StageLimit::default(),
        }
    }

    #[test]
    fn reports_cycles_with_their_stages() {
        let mut graph = StageGraph::default();
        let a = graph.add(stage(StageKind::Base, "a")).unwrap();
        let b = graph.add(stage(StageKind::Base, "b")).unwrap();
        let c = graph.add(stage(StageKind::Build, "c")).unwrap();
        graph.need(b, a);
        graph.need(c, b);
        assert!(graph.topological_order().is_ok());
        graph.need(a, b);
        let GraphError::Cycle(cycle) = graph.topological_order().unwrap_err() else {
            panic!("expected a cycle");
        };
        let names: Vec<&str> = cycle.iter().map(StageId::as_str).collect();
        assert!(
            names == ["base/a", "base/b", "base/a"] || names == ["base/b", "base/a", "base/b"],
            "{names:?}"
        );
    }

    #[test]
    fn rejects_dangling_needs_and_duplicates() {
        let mut graph = StageGraph::default();
        let a = graph.add(stage(StageKind::Render, "x")).unwrap();
        assert_eq!(
            graph.need_id(a, &StageId::new(StageKind::Base, "nope")),
            Err(GraphError::Dangling {
                stage: StageId::new(StageKind::Render, "x"),
                missing: StageId::new(StageKind::Base, "nope")
            })
        );
        assert!(matches!(
            graph.add(stage(StageKind::Render, "x")),
            Err(GraphError::Duplicate(_))
        ));
    }
}

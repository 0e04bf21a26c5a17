//! The plan: a validated, resolved experiment and the DAG of its stages.
//!
//! Knows the file system (templates, workloads, inventory) but nothing of
//! engines, SSH or terminals.

pub mod expand;
pub mod fingerprint;
pub mod graph;
mod inputs;
pub mod model;
pub mod names;
pub mod output;
pub mod resolve;
pub mod target;

use std::path::{Path, PathBuf};

pub use graph::{GraphError, RunSubject, Stage, StageGraph, StageId, StageKind, StageWork};
pub use model::{Cell, Experiment, Image};

use crate::diagnostic::{Diagnostic, Diagnostics, SourceLocation};
use crate::inventory::{Inventory, InventoryError};
use crate::spec::{ExperimentSpec, SpecError, load_spec};

#[derive(Debug)]
pub struct Plan {
    pub experiment: Experiment,
    pub graph: StageGraph,
}

#[derive(Debug, Default, Clone)]
pub struct PlanOptions {
    /// Overrides the spec's `inventory`.
    pub inventory: Option<PathBuf>,
    /// `wasm-precompile`, for images of variants the wasm runtime runs on
    /// native platforms; default `target/release/wasm-precompile` in the project.
    pub precompiler: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

impl From<Diagnostics> for PlanError {
    fn from(diagnostics: Diagnostics) -> Self {
        PlanError::Invalid(diagnostics)
    }
}

/// Loads the spec and its inventory, validates both against the project tree
/// and expands the stage graph.
pub fn load_plan(spec_path: &Path, options: &PlanOptions) -> Result<Plan, PlanError> {
    let spec = load_spec(spec_path)?;
    let project_root = project_root(&spec, spec_path)?;
    let inventory_path = match &options.inventory {
        Some(path) => path.clone(),
        None => inventory_path(&spec, spec_path, &project_root)?,
    };
    let inventory = Inventory::load(&inventory_path)?;
    let sources = resolve::Sources {
        spec_path,
        project_root: &project_root,
        hosts: &inventory,
        precompiler: options.precompiler.as_deref(),
    };
    plan_from_sources(&spec, &sources)
}

/// The pure part of [`load_plan`], for callers that already hold the pieces.
pub fn plan_from_parts(
    spec: &ExperimentSpec,
    spec_path: &Path,
    project_root: &Path,
    hosts: &dyn crate::inventory::HostDirectory,
) -> Result<Plan, PlanError> {
    let sources = resolve::Sources {
        spec_path,
        project_root,
        hosts,
        precompiler: None,
    };
    plan_from_sources(spec, &sources)
}

fn plan_from_sources(
    spec: &ExperimentSpec,
    sources: &resolve::Sources<'_>,
) -> Result<Plan, PlanError> {
    let experiment = resolve::resolve(spec, sources)?;
    let graph = expand::expand(&experiment)?;
    graph.topological_order()?;
    Ok(Plan { experiment, graph })
}

fn spec_dir(spec_path: &Path) -> PathBuf {
    match spec_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The spec's `project_root`, or the nearest ancestor holding `templates/` and `workloads/`.
pub fn project_root(spec: &ExperimentSpec, spec_path: &Path) -> Result<PathBuf, Diagnostics> {
    let dir = spec_dir(spec_path);
    if let Some(root) = &spec.project_root {
        let path = dir.join(&root.value);
        if path.join("templates").is_dir() && path.join("workloads").is_dir() {
            return Ok(path);
        }
        return Err(Diagnostics(vec![Diagnostic::at(
            SourceLocation::from_yaml(spec_path, root.referenced),
            format!(
                "project root {} has no templates/ and workloads/ folders",
                path.display()
            ),
        )]));
    }
    let holds_tree =
        |path: &Path| path.join("templates").is_dir() && path.join("workloads").is_dir();
    // Relative ancestors first, so diagnostics keep the paths the user typed.
    for ancestor in dir.ancestors() {
        let path = if ancestor.as_os_str().is_empty() {
            Path::new(".")
        } else {
            ancestor
        };
        if holds_tree(path) {
            return Ok(path.to_path_buf());
        }
    }
    // Absolute walk as a fallback, so `pipeline plan /abs/path/spec.yaml` works anywhere.
    if let Ok(absolute) = dir.canonicalize() {
        for ancestor in absolute.ancestors() {
            if holds_tree(ancestor) {
                return Ok(ancestor.to_path_buf());
            }
        }
    }
    Err(Diagnostics(vec![
        Diagnostic::at(
            SourceLocation::from_yaml(spec_path, spec.experiment.referenced),
            "no project root: no folder above the spec holds both templates/ and workloads/",
        )
        .with_help("set `project_root` in the spec"),
    ]))
}

/// The spec's `inventory`, which must lie inside the project: an error about
/// a file elsewhere could quote it. `--inventory` may name any file.
fn inventory_path(
    spec: &ExperimentSpec,
    spec_path: &Path,
    project_root: &Path,
) -> Result<PathBuf, Diagnostics> {
    let Some(located) = &spec.inventory else {
        return Ok(project_root.join("inventory.yaml"));
    };
    let path = spec_dir(spec_path).join(&located.value);
    let outside = Path::new(&located.value).is_absolute()
        || located.value.chars().any(char::is_control)
        || (path.exists() && !crate::limits::resolves_inside(&path, project_root));
    if outside {
        return Err(Diagnostics(vec![
            Diagnostic::at(
                SourceLocation::from_yaml(spec_path, located.referenced),
                format!(
                    "inventory `{}` lies outside the project (the folder of templates/ and workloads/)",
                    located.value
                ),
            )
            .with_help(
                "name a file inside the project, relative to the spec, or pass `--inventory FILE`",
            ),
        ]));
    }
    Ok(path)
}

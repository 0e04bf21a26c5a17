//! Reading YAML files into spec types, with every error pointing into the file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::ExperimentSpec;
use crate::diagnostic::{Diagnostic, Diagnostics, SourceLocation};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl From<Diagnostics> for SpecError {
    fn from(diagnostics: Diagnostics) -> Self {
        SpecError::Invalid(diagnostics)
    }
}

pub fn load_spec(path: &Path) -> Result<ExperimentSpec, SpecError> {
    let text = read_text(path)?;
    Ok(parse_spec(&text, path)?)
}

/// A read error as a diagnostic: located when the file is not UTF-8 text.
pub fn read_diagnostic(path: &Path, error: &std::io::Error) -> Diagnostic {
    match crate::limits::NotUtf8::of(error) {
        Some(position) => Diagnostic::at(
            SourceLocation::new(path, position.line, position.column),
            position.to_string(),
        ),
        None => Diagnostic::unlocated(format!("failed to read {}: {error}", path.display())),
    }
}

pub fn parse_spec(text: &str, path: &Path) -> Result<ExperimentSpec, Diagnostics> {
    parse_yaml(text, path)
}

pub(crate) fn read_text(path: &Path) -> Result<String, SpecError> {
    crate::limits::read_regular_file(path).map_err(|source| {
        if crate::limits::NotUtf8::of(&source).is_some() {
            SpecError::Invalid(Diagnostics(vec![read_diagnostic(path, &source)]))
        } else {
            SpecError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Deserializes one YAML document; syntax and type errors become a located diagnostic.
pub(crate) fn parse_yaml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, Diagnostics> {
    serde_saphyr::from_str_with_options::<T>(text, yaml_options())
        .map_err(|error| Diagnostics(vec![yaml_diagnostic(&error, path)]))
}

/// serde-saphyr's budget, tightened to what a hand-written spec needs, so
/// aliases cannot copy a string into gigabytes or nest a billion nodes.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = crate::limits::MAX_YAML_NODES;
    budget.max_total_scalar_bytes = crate::limits::MAX_ALIAS_BYTES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

fn yaml_diagnostic(error: &serde_saphyr::Error, path: &Path) -> Diagnostic {
    let message = yaml_message(error);
    match error.location() {
        Some(location) if location != serde_saphyr::Location::UNKNOWN => {
            Diagnostic::at(SourceLocation::from_yaml(path, location), message)
        }
        _ => Diagnostic::at(SourceLocation::new(path, 1, 1), message),
    }
}

/// serde-saphyr's own text repeats the position and a snippet; keep only the
/// message, since the diagnostic prints both itself.
fn yaml_message(error: &serde_saphyr::Error) -> String {
    let plain = error.without_snippet().to_string();
    let first = plain.lines().next().unwrap_or("invalid yaml").trim();
    let trimmed = match first.rfind(" at line ") {
        Some(index) => &first[..index],
        None => first,
    };
    let mut message = trimmed.trim_start_matches("error: ").to_string();
    if let Some(breach) = message.strip_prefix("budget breached: ") {
        let breach = breach.split(" (").next().unwrap_or(breach);
        message = format!(
            "the YAML is too large once its aliases are expanded: {breach}, over the limit in docs/spec.md"
        );
    }
    if let Some(first_char) = message.get(..1) {
        let lower = first_char.to_lowercase();
        message.replace_range(..1, &lower);
    }
    message
}

/// `workloads/<name>/workload.yaml`.
pub fn parse_workload_manifest(
    text: &str,
    path: &Path,
) -> Result<super::WorkloadManifest, Diagnostics> {
    parse_yaml(text, path)
}

/// `templates/<language>/defaults.yaml`: default template variables.
pub fn parse_template_defaults(
    text: &str,
    path: &Path,
) -> Result<serde_json::Map<String, serde_json::Value>, Diagnostics> {
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    parse_yaml(text, path)
}

/// `templates/<language>/vendor.yaml`: how the language vendors its dependencies.
pub fn parse_vendor_spec(text: &str, path: &Path) -> Result<super::VendorSpec, Diagnostics> {
    parse_yaml(text, path)
}

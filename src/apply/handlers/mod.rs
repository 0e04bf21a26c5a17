//! One handler per stage kind. Each takes the typed outputs of the stages
//! its stage needs and returns its own.

pub mod aggregate;
pub mod base;
pub mod build;
pub mod index;
pub mod prepare_host;
pub mod pull;
pub mod push;
pub mod render;
pub mod run;
pub mod vendor;

use crate::agent::wire::EngineAddress;
use crate::backend::builder::BuildError;
use crate::backend::credentials::RegistryCredentials;
use crate::backend::host::HostError;
use crate::backend::registry::RegistryError;
use crate::exec::StageFailure;
use crate::plan::Plan;

pub(super) fn build_failure(error: &BuildError) -> StageFailure {
    failure(error.to_string(), error.is_retryable())
}

pub(super) fn registry_failure(error: &RegistryError) -> StageFailure {
    failure(error.to_string(), error.is_retryable())
}

pub(super) fn host_failure(error: &HostError) -> StageFailure {
    match error {
        HostError::Cancelled { .. }
        | HostError::Agent {
            error: crate::agent::wire::AgentError::Cancelled { .. },
            ..
        } => StageFailure::cancelled(error.to_string()),
        _ => failure(error.to_string(), error.is_retryable()),
    }
}

fn failure(message: String, retryable: bool) -> StageFailure {
    if retryable {
        StageFailure::retryable(message)
    } else {
        StageFailure::fatal(message)
    }
}

/// Which engine of a host a request goes to, and how it reaches the
/// registry: `credentials` for requests that pull.
pub(super) fn engine_address(
    plan: &Plan,
    host: usize,
    engine: crate::spec::Engine,
    credentials: Option<&RegistryCredentials>,
) -> EngineAddress {
    let settings = &plan.experiment.hosts[host];
    EngineAddress {
        engine,
        socket: match engine {
            crate::spec::Engine::Docker => settings.docker_socket.clone(),
            crate::spec::Engine::Containerd => settings.containerd_socket.clone(),
        },
        namespace: settings.containerd_namespace.clone(),
        pull_endpoint: settings.containerd_pull_endpoint.clone(),
        registry: plan.experiment.registry.clone(),
        credentials: credentials.cloned(),
    }
}

pub(super) fn unexpected(what: &str, answer: &impl std::fmt::Debug) -> StageFailure {
    StageFailure::fatal(format!(
        "the agent answered a {what} request with {answer:?}"
    ))
}

//! The few words of a spec that reach the measured host: which engine, which
//! scenario, the unit of a workload's timestamps. They sit apart from the
//! spec's YAML types so the agent, built without the YAML loader, has them;
//! [`crate::spec`] names them too.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Ns,
    Us,
    Ms,
    S,
}

impl TimeUnit {
    pub fn nanos(self) -> u64 {
        match self {
            TimeUnit::Ns => 1,
            TimeUnit::Us => 1_000,
            TimeUnit::Ms => 1_000_000,
            TimeUnit::S => 1_000_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Docker,
    Containerd,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Containerd => "containerd",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Fresh,
    Cached,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Fresh => "fresh",
            Scenario::Cached => "cached",
        }
    }
}

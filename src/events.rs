//! The one stream every consumer reads: progress display, log files, the
//! journal and the results writers all see the same stage events, so they
//! can never tell different stories.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::plan::{StageId, StageKind};

/// Something that happened to one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEvent {
    pub stage: StageId,
    pub kind: StageKind,
    /// The stage's plan fingerprint, so a journal line stands on its own.
    pub fingerprint: String,
    /// Milliseconds since the Unix epoch on the runner's clock.
    pub at_ms: u64,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventBody {
    /// Done in an earlier apply with the same fingerprint; its output is reused.
    UpToDate {
        output: StageOutput,
    },
    Started {
        attempt: u32,
    },
    /// Byte-level progress of a build, push or pull.
    Progress {
        done: u64,
        total: Option<u64>,
    },
    /// One line of the stage's own output, for its log file.
    Log {
        line: String,
    },
    /// An attempt failed and another follows.
    Retrying {
        attempt: u32,
        error: String,
    },
    Succeeded {
        output: StageOutput,
        duration_ms: u64,
    },
    /// `output` keeps what was measured before the failure, such as a run
    /// whose result line was wrong.
    Failed {
        error: String,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<StageOutput>,
    },
    /// Not run because a stage it needs failed.
    Blocked {
        by: StageId,
    },
    /// Stopped by an interrupt.
    Cancelled,
}

impl EventBody {
    /// Whether the journal keeps this event; logs and progress go elsewhere.
    pub fn is_durable(&self) -> bool {
        !matches!(self, EventBody::Progress { .. } | EventBody::Log { .. })
    }
}

/// What a stage produced, as later stages and the results need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum StageOutput {
    Nothing,
    Rendered {
        dockerfile: String,
    },
    Image(ImageRecord),
    Index {
        image_ref: String,
        digest: String,
        platforms: Vec<String>,
    },
    Host(HostFacts),
    Pulled {
        image_ref: String,
        digest: String,
    },
    Run(RunRecord),
    Aggregated {
        cells: usize,
        runs: usize,
    },
}

/// A built, pushed or base image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub image_ref: String,
    /// Content digest of the image manifest in the registry (empty before push).
    pub digest: String,
    pub platform: String,
    /// Uncompressed size as the building engine reports it.
    pub host_size_bytes: u64,
    /// Compressed size in the registry: config plus layers (0 before push).
    pub oci_size_bytes: u64,
    /// Toolchain versions found in a base image, by package.
    #[serde(default)]
    pub toolchain: std::collections::BTreeMap<String, String>,
}

/// What a prepare stage learned about a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HostFacts {
    pub host: String,
    pub architecture: String,
    pub cpu_model: String,
    pub cores: u32,
    pub kernel: String,
    pub docker_version: Option<String>,
    pub containerd_version: Option<String>,
    pub shims: Vec<String>,
}

/// One container run's measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunRecord {
    pub image_ref: String,
    pub image_digest: String,
    /// Pull time in ms; `None` when the scenario skipped the pull.
    pub pull_ms: Option<f64>,
    pub pulled_bytes: Option<u64>,
    /// From the create request to the workload's main, both on the host's clock.
    pub to_main_ms: Option<f64>,
    /// Whole container run, to exit.
    pub run_ms: Option<f64>,
    pub exit_code: Option<i64>,
    /// The result line matched the workload's pattern and the exit code was 0.
    pub ok: bool,
    /// Start of the run, ms since the epoch on the host's clock.
    pub started_at_ms: Option<u64>,
    pub error: Option<String>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A consumer of the event stream. An error stops the apply: a journal
/// that cannot be written would lose measurements.
pub trait EventSink: Send {
    fn on_event(&mut self, event: &StageEvent) -> Result<(), SinkError>;

    /// Called once after the last event, to flush files.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("failed to write {}: {source}", path.display())]
pub struct SinkError {
    pub path: std::path::PathBuf,
    #[source]
    pub source: std::io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json() {
        let event = StageEvent {
            stage: StageId::new(StageKind::Run, "w/l/v/wasm/h/docker/fresh/0"),
            kind: StageKind::Run,
            fingerprint: "ab".into(),
            at_ms: 1,
            body: EventBody::Succeeded {
                output: StageOutput::Run(RunRecord {
                    to_main_ms: Some(12.5),
                    ok: true,
                    ..RunRecord::default()
                }),
                duration_ms: 40,
            },
        };
        let line = serde_json::to_string(&event).unwrap();
        assert!(line.contains("\"event\":\"succeeded\""), "{line}");
        assert_eq!(serde_json::from_str::<StageEvent>(&line).unwrap(), event);
    }
}

//! The one stream every consumer reads: progress display, log files, the
//! journal and the results writers all see the same stage events, so they
//! can never tell different stories.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::plan::{StageId, StageKind};
pub use crate::records::{HostFacts, ImageRecord, RunRecord};

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
        /// How long the walker waits before the next attempt.
        #[serde(default)]
        delay_ms: u64,
    },
    Succeeded {
        output: StageOutput,
        duration_ms: u64,
        /// Digest of the outputs of the stages it needed, so a resume can
        /// tell whether what it consumed is still what it would consume.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<String>,
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
    /// Whether the journal keeps this event. Logs and progress go
    /// elsewhere, and a reused stage adds nothing the journal does not hold.
    pub fn is_durable(&self) -> bool {
        !matches!(
            self,
            EventBody::Progress { .. } | EventBody::Log { .. } | EventBody::UpToDate { .. }
        )
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
    Vendored(crate::records::VendorRecord),
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
    /// A measured run left out: its cell met `measure.until` after `runs`
    /// ok runs. Decided again by every apply, never reused as it is.
    NotNeeded {
        runs: u32,
    },
    Aggregated {
        cells: usize,
        runs: usize,
    },
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
                inputs: None,
            },
        };
        let line = serde_json::to_string(&event).unwrap();
        assert!(line.contains("\"event\":\"succeeded\""), "{line}");
        assert_eq!(serde_json::from_str::<StageEvent>(&line).unwrap(), event);
    }
}

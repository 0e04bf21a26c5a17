//! The durable record of an apply: one JSON line per stage event that
//! matters, appended as it happens. Resume reads it back.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::events::{EventBody, EventSink, SinkError, StageEvent, StageOutput};
use crate::plan::{StageId, StageKind};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The latest outcome of every stage the journal has seen: what a resume
/// reuses, and what the results tables are derived from.
#[derive(Debug, Default, Clone)]
pub struct JournalState {
    latest: HashMap<StageId, Outcome>,
    /// Lines read, superseded ones included: how much compaction would save.
    pub lines: usize,
    /// Lines that could not be read, such as one cut off by a crash.
    pub unreadable_lines: usize,
}

/// How a stage last ended, with the fingerprint it had then.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(Completed),
    Failed {
        fingerprint: String,
        error: String,
        /// What a failed run measured before it failed.
        output: Option<StageOutput>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub fingerprint: String,
    /// Digest of the outputs of the stages it consumed; `None` in journals
    /// written before it was recorded.
    pub inputs: Option<String>,
    pub output: StageOutput,
}

impl JournalState {
    /// The error of `stage` if its latest attempt failed.
    pub fn failure(&self, stage: &StageId) -> Option<&str> {
        match self.latest.get(stage) {
            Some(Outcome::Failed { error, .. }) => Some(error),
            _ => None,
        }
    }

    /// The output of `stage` if it last succeeded with this fingerprint and
    /// these inputs.
    pub fn reusable(
        &self,
        stage: &StageId,
        fingerprint: &str,
        inputs: &str,
    ) -> Option<&StageOutput> {
        self.completion(stage)
            .filter(|done| {
                done.fingerprint == fingerprint
                    && done
                        .inputs
                        .as_deref()
                        .is_none_or(|recorded| recorded == inputs)
            })
            .map(|done| &done.output)
    }

    pub fn completion(&self, stage: &StageId) -> Option<&Completed> {
        match self.latest.get(stage) {
            Some(Outcome::Done(done)) => Some(done),
            _ => None,
        }
    }

    /// Every stage whose latest attempt succeeded, with its output.
    pub fn completed(&self) -> impl Iterator<Item = (&StageId, &Completed)> {
        self.latest
            .iter()
            .filter_map(|(stage, outcome)| match outcome {
                Outcome::Done(done) => Some((stage, done)),
                Outcome::Failed { .. } => None,
            })
    }

    pub fn outcome(&self, stage: &StageId) -> Option<&Outcome> {
        self.latest.get(stage)
    }

    /// How many stages have an outcome.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Takes one event into account; returns whether an outcome changed.
    pub fn record(&mut self, event: &StageEvent) -> bool {
        let outcome = match &event.body {
            EventBody::Succeeded { output, inputs, .. } => Outcome::Done(Completed {
                fingerprint: event.fingerprint.clone(),
                inputs: inputs.clone(),
                output: output.clone(),
            }),
            // A later failure of a stage that had succeeded means its inputs
            // changed and it was redone: the old output is gone.
            EventBody::Failed { error, output, .. } => Outcome::Failed {
                fingerprint: event.fingerprint.clone(),
                error: error.clone(),
                output: output.clone(),
            },
            _ => return false,
        };
        self.latest.insert(event.stage.clone(), outcome);
        true
    }

    /// One event per stage that recreates this state when read back.
    fn events(&self) -> impl Iterator<Item = StageEvent> + '_ {
        let mut stages: Vec<&StageId> = self.latest.keys().collect();
        stages.sort();
        stages.into_iter().map(|stage| {
            let kind = StageKind::parse(stage.as_str().split('/').next().unwrap_or_default())
                .unwrap_or(StageKind::Run);
            let (fingerprint, body) = match &self.latest[stage] {
                Outcome::Done(done) => (
                    done.fingerprint.clone(),
                    EventBody::Succeeded {
                        output: done.output.clone(),
                        duration_ms: 0,
                        inputs: done.inputs.clone(),
                    },
                ),
                Outcome::Failed {
                    fingerprint,
                    error,
                    output,
                } => (
                    fingerprint.clone(),
                    EventBody::Failed {
                        error: error.clone(),
                        duration_ms: 0,
                        output: output.clone(),
                    },
                ),
            };
            StageEvent {
                stage: stage.clone(),
                kind,
                fingerprint,
                at_ms: 0,
                body,
            }
        })
    }
}

/// Rewrites the journal with one line per stage when superseded lines make
/// up most of it, atomically: a crash leaves the old file or the new one.
pub fn compact(path: &Path, state: &JournalState) -> Result<bool, JournalError> {
    if state.lines < 1000 || state.lines < state.len() * 2 {
        return Ok(false);
    }
    let error = |source| JournalError::Open {
        path: path.to_path_buf(),
        source,
    };
    let temporary = path.with_extension("jsonl.tmp");
    let mut file = BufWriter::new(File::create(&temporary).map_err(error)?);
    for event in state.events() {
        let line = serde_json::to_string(&event).map_err(|e| error(std::io::Error::other(e)))?;
        writeln!(file, "{line}").map_err(error)?;
    }
    let file = file.into_inner().map_err(|e| error(e.into_error()))?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&temporary, path).map_err(error)?;
    Ok(true)
}

/// Moves the journal aside (for `apply --fresh`); returns where it went.
pub fn set_aside(path: &Path) -> Result<Option<PathBuf>, JournalError> {
    if !path.exists() {
        return Ok(None);
    }
    let stamp = crate::events::now_ms();
    let aside = path.with_file_name(format!("journal-{stamp}.jsonl"));
    std::fs::rename(path, &aside).map_err(|source| JournalError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Some(aside))
}

/// Reads a journal; a missing file is an empty journal.
pub fn read_journal(path: &Path) -> Result<JournalState, JournalError> {
    let mut state = JournalState::default();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(state),
        Err(source) => {
            return Err(JournalError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|source| JournalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        state.lines += 1;
        match serde_json::from_str::<StageEvent>(&line) {
            Ok(event) => {
                state.record(&event);
            }
            Err(_) => state.unreadable_lines += 1,
        }
    }
    Ok(state)
}

/// Appends durable events to the journal file.
pub struct JournalWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl JournalWriter {
    pub fn open(path: &Path) -> Result<JournalWriter, JournalError> {
        let open_error = |source| JournalError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(open_error)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(open_error)?;
        Ok(JournalWriter {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
        })
    }
}

impl EventSink for JournalWriter {
    fn on_event(&mut self, event: &StageEvent) -> Result<(), SinkError> {
        if !event.body.is_durable() {
            return Ok(());
        }
        let error = |source| SinkError {
            path: self.path.clone(),
            source,
        };
        let line = serde_json::to_string(event)
            .map_err(|error| std::io::Error::other(error.to_string()))
            .map_err(error)?;
        writeln!(self.file, "{line}").map_err(error)?;
        self.file.flush().map_err(error)?;
        // A measurement is not repeatable as it was: make it reach the disk.
        if event.kind == StageKind::Run && matches!(event.body, EventBody::Succeeded { .. }) {
            self.file.get_ref().sync_data().map_err(error)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        let path = self.path.clone();
        self.file
            .flush()
            .and_then(|()| self.file.get_ref().sync_all())
            .map_err(|source| SinkError { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RunRecord;

    fn event(stage: &str, fingerprint: &str, body: EventBody) -> StageEvent {
        StageEvent {
            stage: StageId::new(StageKind::Run, stage),
            kind: StageKind::Run,
            fingerprint: fingerprint.into(),
            at_ms: 0,
            body,
        }
    }

    #[test]
    fn reads_back_what_was_written_and_survives_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/x/journal.jsonl");
        let mut writer = JournalWriter::open(&path).unwrap();
        let output = StageOutput::Run(RunRecord {
            ok: true,
            ..RunRecord::default()
        });
        writer
            .on_event(&event("a", "f1", EventBody::Started { attempt: 1 }))
            .unwrap();
        writer
            .on_event(&event(
                "a",
                "f1",
                EventBody::Log {
                    line: "not kept".into(),
                },
            ))
            .unwrap();
        writer
            .on_event(&event(
                "a",
                "f1",
                EventBody::Succeeded {
                    output: output.clone(),
                    duration_ms: 3,
                    inputs: Some("i1".into()),
                },
            ))
            .unwrap();
        writer
            .on_event(&event(
                "b",
                "f2",
                EventBody::Failed {
                    error: "x".into(),
                    duration_ms: 1,
                    output: None,
                },
            ))
            .unwrap();
        writer.finish().unwrap();
        drop(writer);
        // A crash in the middle of a line leaves half a record behind.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        write!(file, "{{\"stage\":\"run/c\",\"ki").unwrap();
        let state = read_journal(&path).unwrap();
        assert_eq!(
            state.reusable(&StageId::new(StageKind::Run, "a"), "f1", "i1"),
            Some(&output)
        );
        assert_eq!(
            state.reusable(&StageId::new(StageKind::Run, "a"), "changed", "i1"),
            None
        );
        assert_eq!(
            state.reusable(&StageId::new(StageKind::Run, "b"), "f2", "i1"),
            None
        );
        assert_eq!(
            state.reusable(&StageId::new(StageKind::Run, "a"), "f1", "other inputs"),
            None
        );
        assert_eq!(state.unreadable_lines, 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("not kept"));
    }
}

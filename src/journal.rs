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

/// What earlier applies finished, by stage.
#[derive(Debug, Default, Clone)]
pub struct JournalState {
    completed: HashMap<StageId, Completed>,
    /// The last error of stages whose latest attempt failed.
    failed: HashMap<StageId, String>,
    /// Lines that could not be read, such as one cut off by a crash.
    pub unreadable_lines: usize,
}

#[derive(Debug, Clone)]
pub struct Completed {
    pub fingerprint: String,
    pub output: StageOutput,
}

impl JournalState {
    /// The error of `stage` if its latest attempt failed.
    pub fn failure(&self, stage: &StageId) -> Option<&str> {
        self.failed.get(stage).map(String::as_str)
    }

    /// The output of `stage` if it last succeeded with this fingerprint.
    pub fn reusable(&self, stage: &StageId, fingerprint: &str) -> Option<&StageOutput> {
        self.completed
            .get(stage)
            .filter(|completed| completed.fingerprint == fingerprint)
            .map(|completed| &completed.output)
    }

    pub fn completion(&self, stage: &StageId) -> Option<&Completed> {
        self.completed.get(stage)
    }

    pub fn completed(&self) -> impl Iterator<Item = (&StageId, &Completed)> {
        self.completed.iter()
    }

    fn record(&mut self, event: StageEvent) {
        match event.body {
            EventBody::Succeeded { output, .. } | EventBody::UpToDate { output } => {
                self.failed.remove(&event.stage);
                self.completed.insert(
                    event.stage,
                    Completed {
                        fingerprint: event.fingerprint,
                        output,
                    },
                );
            }
            // A later failure of a stage that had succeeded means its inputs
            // changed and it was redone: the old output is gone.
            EventBody::Failed { error, .. } => {
                self.completed.remove(&event.stage);
                self.failed.insert(event.stage, error);
            }
            _ => {}
        }
    }
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
        match serde_json::from_str::<StageEvent>(&line) {
            Ok(event) => state.record(event),
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
            state.reusable(&StageId::new(StageKind::Run, "a"), "f1"),
            Some(&output)
        );
        assert_eq!(
            state.reusable(&StageId::new(StageKind::Run, "a"), "changed"),
            None
        );
        assert_eq!(
            state.reusable(&StageId::new(StageKind::Run, "b"), "f2"),
            None
        );
        assert_eq!(state.unreadable_lines, 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("not kept"));
    }
}

//! Consumers of the event stream that people read: a log file per stage,
//! and the progress display (bars on a terminal, plain lines otherwise).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{EventBody, EventSink, SinkError, StageEvent, StageOutput};
use crate::plan::{StageId, StageKind};

/// `out/<experiment>/logs/<stage id with / as __>.log`, one per stage.
pub struct StageLogFiles {
    dir: PathBuf,
    open: HashMap<StageId, BufWriter<File>>,
}

impl StageLogFiles {
    pub fn new(dir: PathBuf) -> StageLogFiles {
        StageLogFiles {
            dir,
            open: HashMap::new(),
        }
    }

    pub fn path_of(&self, stage: &StageId) -> PathBuf {
        self.dir
            .join(format!("{}.log", stage.as_str().replace('/', "__")))
    }

    fn file(&mut self, stage: &StageId) -> Result<&mut BufWriter<File>, SinkError> {
        if !self.open.contains_key(stage) {
            let path = self.path_of(stage);
            let error = |source| SinkError {
                path: path.clone(),
                source,
            };
            std::fs::create_dir_all(&self.dir).map_err(error)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(error)?;
            self.open.insert(stage.clone(), BufWriter::new(file));
        }
        Ok(self.open.get_mut(stage).expect("inserted above"))
    }
}

impl EventSink for StageLogFiles {
    fn on_event(&mut self, event: &StageEvent) -> Result<(), SinkError> {
        let line = match &event.body {
            EventBody::Log { line } => line.clone(),
            EventBody::Started { attempt } => {
                format!("== started (attempt {attempt}) at {} ms", event.at_ms)
            }
            EventBody::Retrying {
                attempt,
                error,
                delay_ms,
            } => {
                format!("== attempt {attempt} failed: {error}; next attempt in {delay_ms} ms")
            }
            EventBody::Succeeded {
                output: StageOutput::NotNeeded { runs },
                ..
            } => format!("== not run: its cell met `measure.until` after {runs} runs"),
            EventBody::Succeeded { duration_ms, .. } => format!("== succeeded in {duration_ms} ms"),
            EventBody::Failed {
                error, duration_ms, ..
            } => format!("== failed after {duration_ms} ms: {error}"),
            EventBody::Cancelled => "== cancelled".to_string(),
            EventBody::UpToDate { .. } | EventBody::Blocked { .. } | EventBody::Progress { .. } => {
                return Ok(());
            }
        };
        let path = self.path_of(&event.stage);
        let file = self.file(&event.stage)?;
        let line = crate::diagnostic::escape_control_lines(&line);
        writeln!(file, "{line}").map_err(|source| SinkError { path, source })?;
        if !matches!(event.body, EventBody::Log { .. }) {
            // Stage boundaries reach the disk at once, so a crash leaves a readable log.
            let path = self.path_of(&event.stage);
            self.file(&event.stage)?
                .flush()
                .map_err(|source| SinkError { path, source })?;
        }
        if matches!(
            event.body,
            EventBody::Succeeded { .. } | EventBody::Failed { .. } | EventBody::Cancelled
        ) {
            self.open.remove(&event.stage);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        for (stage, mut file) in self.open.drain() {
            let path = self
                .dir
                .join(format!("{}.log", stage.as_str().replace('/', "__")));
            file.flush().map_err(|source| SinkError { path, source })?;
        }
        Ok(())
    }
}

/// How much the display says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// One overall bar with counts per kind and an ETA, and a line per running
/// stage on a terminal; plain lines on anything else.
pub struct ProgressDisplay {
    verbosity: Verbosity,
    bars: Option<(MultiProgress, ProgressBar)>,
    active: HashMap<StageId, ProgressBar>,
    done: [usize; StageKind::ALL.len()],
    total: [usize; StageKind::ALL.len()],
    failed: usize,
}

impl ProgressDisplay {
    pub fn new(
        total: [usize; StageKind::ALL.len()],
        verbosity: Verbosity,
        terminal: bool,
    ) -> ProgressDisplay {
        let bars = (terminal && verbosity != Verbosity::Quiet).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total.iter().sum::<usize>() as u64));
            overall.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} stages, eta {eta}  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            (multi, overall)
        });
        ProgressDisplay {
            verbosity,
            bars,
            active: HashMap::new(),
            done: [0; StageKind::ALL.len()],
            total,
            failed: 0,
        }
    }

    fn counts(&self) -> String {
        let mut text = String::new();
        for kind in StageKind::ALL {
            let total = self.total[kind.index()];
            if total > 0 {
                let _ = write!(text, "{kind} {}/{total}  ", self.done[kind.index()]);
            }
        }
        if self.failed > 0 {
            let _ = write!(text, "failed {}", self.failed);
        }
        text.trim_end().to_string()
    }

    fn finished(&mut self, event: &StageEvent) {
        self.done[event.kind.index()] += 1;
        if let Some((_, overall)) = &self.bars {
            overall.inc(1);
        }
        if let Some(bar) = self.active.remove(&event.stage) {
            bar.finish_and_clear();
        }
        let counts = self.counts();
        if let Some((_, overall)) = &self.bars {
            overall.set_message(counts);
        }
    }

    fn say(&self, line: &str) {
        // Log lines and errors come from builds and remote hosts.
        let line = crate::diagnostic::escape_control_lines(line);
        let line = line.as_ref();
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

impl EventSink for ProgressDisplay {
    fn on_event(&mut self, event: &StageEvent) -> Result<(), SinkError> {
        let id = &event.stage;
        match &event.body {
            EventBody::Started { attempt } => {
                if let Some((multi, _)) = &self.bars {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar.set_message(id.to_string());
                    self.active.insert(id.clone(), bar);
                } else if self.verbosity == Verbosity::Verbose
                    || (self.verbosity == Verbosity::Normal && *attempt == 1)
                {
                    self.say(&format!("start  {id}"));
                }
            }
            EventBody::Progress { done, total } => {
                if let Some(bar) = self.active.get(id) {
                    let amount = match total {
                        Some(total) => format!(
                            "{} of {}",
                            indicatif::HumanBytes(*done),
                            indicatif::HumanBytes(*total)
                        ),
                        None => indicatif::HumanBytes(*done).to_string(),
                    };
                    bar.set_message(format!("{id} {amount}"));
                }
            }
            EventBody::Log { line } => {
                if self.verbosity == Verbosity::Verbose {
                    self.say(&format!("  {id}: {line}"));
                }
            }
            EventBody::Succeeded {
                output: StageOutput::NotNeeded { runs },
                ..
            } => {
                if self.verbosity == Verbosity::Verbose {
                    self.say(&format!(
                        "enough {id}: its cell met `measure.until` after {runs} runs"
                    ));
                }
                self.finished(event);
            }
            EventBody::Succeeded { duration_ms, .. } => {
                if self.verbosity != Verbosity::Quiet
                    && (self.bars.is_none() || self.verbosity == Verbosity::Verbose)
                {
                    self.say(&format!("done   {id} ({:.1} s)", *duration_ms as f64 / 1e3));
                }
                self.finished(event);
            }
            EventBody::UpToDate { .. } => {
                if self.verbosity == Verbosity::Verbose {
                    self.say(&format!("up to date {id}"));
                }
                self.finished(event);
            }
            EventBody::Retrying {
                attempt,
                error,
                delay_ms,
            } => {
                self.say(&format!(
                    "retry  {id} in {:.1} s after attempt {attempt}: {error}",
                    *delay_ms as f64 / 1000.0
                ));
            }
            EventBody::Failed { error, .. } => {
                self.failed += 1;
                self.say(&format!("FAILED {id}: {error}"));
                self.finished(event);
            }
            EventBody::Blocked { by } => {
                if self.verbosity == Verbosity::Verbose {
                    self.say(&format!("skip   {id}: needs {by}, which failed"));
                }
                self.finished(event);
            }
            EventBody::Cancelled => self.say(&format!("cancelled {id}")),
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        for (_, bar) in self.active.drain() {
            bar.finish_and_clear();
        }
        if let Some((_, overall)) = &self.bars {
            overall.finish_with_message(self.counts());
        }
        Ok(())
    }
}

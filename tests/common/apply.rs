//! `pipeline apply` on the lab from a test: a copy of the project's templates
//! and workloads plus the plain-C fixture in a folder of the test's own,
//! experiment specs of a chosen shape, and applies that are either waited
//! for or left running so that a test can signal them mid-way. The journal
//! and the Parquet tables are read back the way a user would.
//!
//! Needs `mod lab;` and `mod python;` (tests/common/lab.rs, python.rs) beside it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{lab, python};

/// One test at a time drives the lab: applies share the hosts' image stores
/// (a fresh pull removes an image another run may be measuring), and some
/// tests stop and restart lab daemons.
pub fn lab_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A project tree: the repository's templates and workloads plus fixtures.
pub struct Tree {
    _dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
}

impl Tree {
    /// In a temporary folder that goes away with the tree.
    pub fn new() -> Tree {
        let dir = tempfile::tempdir().expect("temporary folder");
        let root = dir.path().to_path_buf();
        Tree::fill(&root);
        Tree {
            _dir: Some(dir),
            root,
        }
    }

    /// In `root`, emptied first; for a tree that outlives one test.
    pub fn at(root: &Path) -> Tree {
        let _ = std::fs::remove_dir_all(root);
        Tree::fill(root);
        Tree {
            _dir: None,
            root: root.to_path_buf(),
        }
    }

    fn fill(root: &Path) {
        for part in ["templates", "workloads"] {
            lab::copy_dir(&lab::repository().join(part), &root.join(part));
        }
        lab::copy_dir(&lab::repository().join("tests/fixtures/language-c"), root);
    }

    /// Adds `tests/fixtures/<name>/` (its `workloads/`, `templates/`) to the tree.
    pub fn add_fixture(&self, name: &str) {
        lab::copy_dir(
            &lab::repository().join("tests/fixtures").join(name),
            &self.root,
        );
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative))
            .unwrap_or_else(|error| panic!("reading {relative}: {error}"))
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
        std::fs::write(&path, text).expect("write");
    }

    /// Writes the spec of `shape` and returns the experiment, with its
    /// results under `out/` of the tree.
    pub fn experiment(&self, shape: &Shape) -> Experiment {
        let spec = self.path(&format!("experiments/{}.yaml", shape.name));
        self.write(
            &format!("experiments/{}.yaml", shape.name),
            &shape.spec_text(),
        );
        Experiment {
            name: shape.name.clone(),
            spec,
            out: self.path("out"),
            logs: self.path("apply-logs"),
        }
    }
}

/// What an experiment builds and measures. Its bases and the C language's
/// settings are the fixture's (tests/fixtures/language-c/experiments/hello-c.yaml).
#[derive(Debug, Clone)]
pub struct Shape {
    pub name: String,
    pub workloads: Vec<&'static str>,
    pub targets: Vec<&'static str>,
    pub hosts: Vec<&'static str>,
    pub engines: Vec<&'static str>,
    pub scenarios: Vec<&'static str>,
    pub repetitions: u32,
    pub warmup: u32,
    /// Per stage kind, as the spec's `timeouts:` takes them (`run`, `5s`).
    pub timeouts: Vec<(&'static str, &'static str)>,
}

impl Shape {
    /// The fixture's experiment: amd64, arm64 and wasm images measured on
    /// lab-amd64 and lab-arm64 via Docker and containerd, fresh and cached,
    /// two repetitions after one warm-up run.
    pub fn hello(name: &str) -> Shape {
        Shape {
            name: name.to_string(),
            workloads: vec!["hello"],
            targets: vec!["linux/amd64", "linux/arm64", "wasm"],
            hosts: vec!["lab-amd64", "lab-arm64"],
            engines: vec!["docker", "containerd"],
            scenarios: vec!["fresh", "cached"],
            repetitions: 2,
            warmup: 1,
            timeouts: Vec::new(),
        }
    }

    pub fn spec_text(&self) -> String {
        let fixture = std::fs::read_to_string(
            lab::repository().join("tests/fixtures/language-c/experiments/hello-c.yaml"),
        )
        .expect("the C fixture's experiment");
        // The fixture's `languages:` and `bases:` sections, verbatim.
        let start = fixture
            .find("\nlanguages:")
            .expect("the fixture has languages");
        let end = fixture.find("\nruns:").expect("the fixture has runs");
        let toolchain = fixture[start..end].trim();
        let list = |items: &[&str]| items.join(", ");
        let mut text = format!("experiment: {}\nworkloads:\n", self.name);
        for workload in &self.workloads {
            let _ = writeln!(text, "  - name: {workload}\n    languages: [c]");
        }
        let _ = write!(
            text,
            "\nvariants:\n  optimized:\n\ntargets: [{}]\n\n{toolchain}\n\n\
             runs:\n  - name: measured\n    hosts: [{}]\n    engines: [{}]\n    scenarios: [{}]\n\n\
             measure:\n  repetitions: {}\n  warmup: {}\n  order: interleaved\n\n\
             retries:\n  pull: 1\n",
            list(&self.targets),
            list(&self.hosts),
            list(&self.engines),
            list(&self.scenarios),
            self.repetitions,
            self.warmup,
        );
        if !self.timeouts.is_empty() {
            text.push_str("\ntimeouts:\n");
            for (kind, limit) in &self.timeouts {
                let _ = writeln!(text, "  {kind}: {limit}");
            }
        }
        text
    }
}

/// The lab's inventory, as `pipeline lab up` writes it.
pub fn inventory() -> PathBuf {
    lab::repository().join(".lab/inventory.yaml")
}

/// One measured run as results.parquet keys it: a cell and an iteration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey {
    pub workload: String,
    pub host: String,
    pub engine: String,
    pub target: String,
    pub scenario: String,
    pub iteration: i64,
}

impl std::fmt::Display for RowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}/{}",
            self.workload, self.target, self.host, self.engine, self.scenario, self.iteration
        )
    }
}

pub struct Experiment {
    pub name: String,
    pub spec: PathBuf,
    /// `--out`: the experiment's files are in `out/<name>/`.
    pub out: PathBuf,
    /// Where background applies write their stdout and stderr.
    pub logs: PathBuf,
}

impl Experiment {
    pub fn dir(&self) -> PathBuf {
        self.out.join(&self.name)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir().join("journal.jsonl")
    }

    pub fn table(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.parquet"))
    }

    /// `pipeline <args> <spec> -i <lab inventory>`, plus `--out` for the
    /// commands that take it.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_on(args, &inventory())
    }

    /// [`Experiment::command`] with another of the lab's inventories.
    pub fn command_on(&self, args: &[&str], inventory: &Path) -> Command {
        lab::lab();
        let mut command = Command::new(env!("CARGO_BIN_EXE_pipeline"));
        command
            .args(args)
            .arg(&self.spec)
            .arg("-i")
            .arg(inventory)
            .current_dir(lab::repository())
            .stdin(Stdio::null());
        if matches!(args.first(), Some(&"apply" | &"status")) {
            command.arg("--out").arg(&self.out);
        }
        if args.first() == Some(&"apply") {
            // Named outright: with part of the lab down, apply would fall
            // back to the machine's own Docker for building.
            let builder = lab::current_state()
                .builder_socket()
                .expect("the lab records its builder engine");
            command.arg("--builder-socket").arg(builder);
        }
        command
    }

    /// Runs the command to its end.
    pub fn run(&self, args: &[&str]) -> Finished {
        self.spawn(args).wait()
    }

    /// Starts the command with its output in files (an apply killed with
    /// SIGKILL leaves SSH processes behind that would hold a pipe open).
    pub fn spawn(&self, args: &[&str]) -> Running {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let number = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::create_dir_all(&self.logs).expect("log folder");
        let stdout = self.logs.join(format!("{}-{number}.out", self.name));
        let stderr = self.logs.join(format!("{}-{number}.err", self.name));
        let child = self
            .command(args)
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("pipeline starts");
        Running {
            pid: child.id(),
            child,
            started: Instant::now(),
            stdout,
            stderr,
        }
    }

    /// `pipeline plan --format json`.
    pub fn plan(&self) -> Value {
        let output = self.command(&["plan", "--format", "json"]).output();
        let output = output.expect("pipeline plan runs");
        assert!(
            output.status.success(),
            "pipeline plan failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("the plan is JSON")
    }

    /// The measured (not warm-up) runs the plan has, as results rows key them.
    pub fn planned_rows(&self) -> Vec<RowKey> {
        let plan = self.plan();
        let mut keys: Vec<RowKey> = plan["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .filter(|stage| stage["kind"] == "run" && stage["warmup"] == false)
            .map(|stage| RowKey {
                workload: text(&stage["workload"]),
                host: text(&stage["host"]),
                engine: text(&stage["engine"]),
                target: text(&stage["target"]),
                scenario: text(&stage["scenario"]),
                iteration: stage["iteration"].as_i64().expect("iteration"),
            })
            .collect();
        keys.sort();
        keys
    }

    /// Every row of results.parquet: its key and whether the run was ok.
    /// Empty when the table does not exist.
    pub fn result_rows(&self) -> Vec<(RowKey, bool)> {
        let path = self.table("results");
        if !path.is_file() {
            return Vec::new();
        }
        let rows = python::query_parquet(
            &path,
            "SELECT workload, host, engine, target, scenario, iteration, ok FROM t ORDER BY ALL",
        );
        rows.as_array()
            .expect("rows")
            .iter()
            .map(|row| {
                (
                    RowKey {
                        workload: text(&row[0]),
                        host: text(&row[1]),
                        engine: text(&row[2]),
                        target: text(&row[3]),
                        scenario: text(&row[4]),
                        iteration: row[5].as_i64().expect("iteration"),
                    },
                    row[6] == true,
                )
            })
            .collect()
    }

    /// Rows of `<table>.parquet`, or None when the file does not exist.
    pub fn table_rows(&self, table: &str) -> Option<u64> {
        let path = self.table(table);
        path.is_file().then(|| {
            python::query_parquet(&path, "SELECT count(*) FROM t")[0][0]
                .as_u64()
                .expect("a count")
        })
    }

    pub fn journal(&self) -> Vec<JournalEvent> {
        let mut tail = JournalTail::new(&self.journal_path());
        tail.poll();
        tail.events
    }

    pub fn journal_lines(&self) -> usize {
        std::fs::read_to_string(self.journal_path()).map_or(0, |text| text.lines().count())
    }
}

fn text(value: &Value) -> String {
    value.as_str().map(str::to_string).unwrap_or_default()
}

/// Checks that results.parquet holds every planned run exactly once, each ok.
pub fn assert_complete(experiment: &Experiment, expected: &[RowKey]) {
    let rows = experiment.result_rows();
    let mut seen = BTreeMap::new();
    for (key, _) in &rows {
        *seen.entry(key.clone()).or_insert(0) += 1;
    }
    let duplicated: Vec<String> = seen
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(key, count)| format!("{key} x{count}"))
        .collect();
    let expected_set: BTreeSet<&RowKey> = expected.iter().collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|key| !seen.contains_key(*key))
        .map(ToString::to_string)
        .collect();
    let unexpected: Vec<String> = seen
        .keys()
        .filter(|key| !expected_set.contains(key))
        .map(ToString::to_string)
        .collect();
    let not_ok: Vec<String> = rows
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(key, _)| key.to_string())
        .collect();
    assert!(
        duplicated.is_empty() && missing.is_empty() && unexpected.is_empty() && not_ok.is_empty(),
        "{}: {} rows for {} planned runs\nduplicated: {duplicated:?}\nmissing: {missing:?}\n\
         unexpected: {unexpected:?}\nnot ok: {not_ok:?}",
        experiment.table("results").display(),
        rows.len(),
        expected.len()
    );
}

/// A command started in the background.
pub struct Running {
    child: Child,
    pub pid: u32,
    pub started: Instant,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    /// Sends `signal` to this process only.
    pub fn signal(&self, signal: i32) {
        send_signal(self.pid, signal);
    }

    /// The exit status if it has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("waiting for pipeline")
    }

    pub fn wait(mut self) -> Finished {
        let status = self.child.wait().expect("waiting for pipeline");
        self.finished(status)
    }

    /// Waits at most `limit`; on timeout the process is killed and the test fails.
    pub fn wait_at_most(mut self, limit: Duration, what: &str) -> Finished {
        while self.started.elapsed() < limit {
            if let Some(status) = self.try_wait() {
                return self.finished(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal(libc::SIGKILL);
        let finished = self.wait();
        panic!(
            "{what} did not end within {} s; killed it\n{}",
            limit.as_secs(),
            finished.describe()
        );
    }

    fn finished(&self, status: ExitStatus) -> Finished {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        Finished {
            status,
            elapsed: self.started.elapsed(),
            stdout: read(&self.stdout),
            stderr: read(&self.stderr),
            pid: self.pid,
        }
    }
}

/// A test that fails half way does not leave its apply running into the next test.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            send_signal(self.pid, libc::SIGKILL);
            let _ = self.child.wait();
            close_leftover_ssh_masters(self.pid);
        }
    }
}

pub fn send_signal(pid: u32, signal: i32) {
    let pid = libc::pid_t::try_from(pid).expect("a process id");
    // SAFETY: kill(2) with a process id and a signal number has no memory effects.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        result,
        0,
        "kill -{signal} {pid}: {}",
        std::io::Error::last_os_error()
    );
}

pub struct Finished {
    pub status: ExitStatus,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
    pub pid: u32,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn signal(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(&self.status)
    }

    /// Exit status, output, and the end of the log of every stage that
    /// failed (the temporary tree goes away with the test).
    pub fn describe(&self) -> String {
        let logs = lab::failed_stage_logs(&self.stderr, 15);
        format!(
            "exit {:?} (signal {:?}) after {:.1} s\nstdout:\n{}\nstderr:\n{}\n{logs}",
            self.code(),
            self.signal(),
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr,
        )
    }
}

/// One journal line: a durable event of a stage.
#[derive(Debug, Clone)]
pub struct JournalEvent {
    pub stage: String,
    pub kind: String,
    /// `started`, `succeeded`, `up-to-date`, `retrying`, `failed`, ...
    pub event: String,
    pub at_ms: u64,
    pub attempt: Option<u64>,
    pub error: Option<String>,
}

/// Reads a journal as it grows; a line still being written is left for later.
pub struct JournalTail {
    path: PathBuf,
    offset: u64,
    pending: String,
    pub events: Vec<JournalEvent>,
    /// Complete lines that were not a journal event.
    pub unreadable: usize,
}

impl JournalTail {
    pub fn new(path: &Path) -> JournalTail {
        JournalTail {
            path: path.to_path_buf(),
            offset: 0,
            pending: String::new(),
            events: Vec::new(),
            unreadable: 0,
        }
    }

    /// Every event in the file now.
    pub fn read(path: &Path) -> Vec<JournalEvent> {
        let mut tail = JournalTail::new(path);
        tail.poll();
        tail.events
    }

    /// Reads what was appended since the last call; returns how many events.
    pub fn poll(&mut self) -> usize {
        let Ok(mut file) = File::open(&self.path) else {
            return 0;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return 0;
        }
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_err() {
            return 0;
        }
        self.offset += bytes.len() as u64;
        self.pending.push_str(&String::from_utf8_lossy(&bytes));
        let mut added = 0;
        while let Some(end) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=end).collect();
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(value) => {
                    self.events.push(JournalEvent {
                        stage: text(&value["stage"]),
                        kind: text(&value["kind"]),
                        event: text(&value["event"]),
                        at_ms: value["at_ms"].as_u64().unwrap_or(0),
                        attempt: value["attempt"].as_u64(),
                        error: value["error"].as_str().map(str::to_string),
                    });
                    added += 1;
                }
                Err(_) => self.unreadable += 1,
            }
        }
        added
    }

    /// Stages that have succeeded at least once.
    pub fn succeeded(&self) -> BTreeSet<&str> {
        self.events
            .iter()
            .filter(|event| event.event == "succeeded")
            .map(|event| event.stage.as_str())
            .collect()
    }
}

/// Stages started but not yet ended among `events`, with their kinds.
pub fn in_flight(events: &[JournalEvent]) -> BTreeMap<String, String> {
    let mut running = BTreeMap::new();
    for event in events {
        match event.event.as_str() {
            "started" => {
                running.insert(event.stage.clone(), event.kind.clone());
            }
            "succeeded" | "failed" | "retrying" | "cancelled" | "blocked" | "up-to-date" => {
                running.remove(&event.stage);
            }
            _ => {}
        }
    }
    running
}

/// An SSH master connection an apply opened (they live in
/// `pipeline-ssh-<pid>/` under the temporary folder).
#[derive(Debug)]
pub struct SshMaster {
    pub socket: PathBuf,
    pub pid: Option<u32>,
    pub command_line: Vec<String>,
}

pub fn ssh_masters(apply_pid: u32) -> Vec<SshMaster> {
    let dir = std::env::temp_dir().join(format!("pipeline-ssh-{apply_pid}"));
    let mut sockets = Vec::new();
    collect_sockets(&dir, &mut sockets);
    sockets
        .into_iter()
        .map(|socket| {
            let output = ssh_control(&socket, "check");
            let answer = String::from_utf8_lossy(&output.stderr).to_string();
            let pid = answer
                .split("pid=")
                .nth(1)
                .and_then(|rest| rest.split(')').next())
                .and_then(|pid| pid.trim().parse::<u32>().ok());
            let command_line = pid
                .and_then(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
                .map(|bytes| {
                    bytes
                        .split(|byte| *byte == 0)
                        .filter(|part| !part.is_empty())
                        .map(|part| String::from_utf8_lossy(part).to_string())
                        .collect()
                })
                .unwrap_or_default();
            SshMaster {
                socket,
                pid,
                command_line,
            }
        })
        .collect()
}

fn collect_sockets(dir: &Path, sockets: &mut Vec<PathBuf>) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect_sockets(&entry.path(), sockets);
        } else if kind.is_socket() {
            sockets.push(entry.path());
        }
    }
}

/// `ssh -O <command>` on a master's control socket.
fn ssh_control(socket: &Path, command: &str) -> Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-S"])
        .arg(socket)
        .args(["-O", command, "lab-host"])
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs")
}

/// Asks the master to close its connection: what the apply sees when the
/// host's sshd goes away with its sessions.
pub fn close_ssh_master(master: &SshMaster) -> bool {
    ssh_control(&master.socket, "exit").status.success()
}

/// Closes the SSH masters an apply that was killed left behind, and removes
/// their folder; returns how many there were.
pub fn close_leftover_ssh_masters(apply_pid: u32) -> usize {
    let masters = ssh_masters(apply_pid);
    for master in &masters {
        close_ssh_master(master);
    }
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("pipeline-ssh-{apply_pid}")));
    masters.len()
}

/// SplitMix64, written out so a printed seed gives the same moments anywhere.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0), by rejection so no value is favoured.
    pub fn below(&mut self, bound: usize) -> usize {
        let bound = bound as u64;
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let value = self.next_u64();
            if value < zone {
                return usize::try_from(value % bound).expect("fits");
            }
        }
    }
}

/// Polls `ready` every 10 ms for at most `limit`.
pub fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ready()
}

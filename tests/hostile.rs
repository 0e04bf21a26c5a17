//! The hostile corpus: malformed and malicious specs, inventories and
//! project trees (tests/hostile/<case>/), each refused by `validate`, `plan`,
//! `render` and `apply` alike with exit 2, the same diagnostics, its expected
//! message at its exact `file:line:col`, within 2 s and 200 MiB.
//!
//! A case is `case.yaml` (what it is, the message, the location, text that
//! must not appear, setup steps run at test time) and `files/`, laid over the
//! valid project in tests/hostile/base/. FIFOs, links to devices, sparse and
//! generated files are made by the setup steps, since git cannot hold them.
//! Time and memory are the child's own: wall clock around the process and
//! its peak resident set from `wait4`.

#![cfg(target_os = "linux")]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

const TIME_LIMIT: Duration = Duration::from_secs(2);
const MEMORY_LIMIT_KIB: i64 = 200 * 1024;
/// A run this long is stuck; it is killed so the test reports it.
const KILL_AFTER: Duration = Duration::from_secs(30);
/// Every command that loads a spec must refuse a case the same way.
const COMMANDS: [&str; 4] = ["validate", "plan", "render", "apply"];
/// What every case may hold outside its project, to prove it is never quoted.
const SECRET: &str = "root:x:0:0:SECRET:/root:/bin/sh\n";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    what: String,
    /// A substring of the first diagnostic's message.
    message: String,
    /// `path:line:col` of the first diagnostic, relative to the project.
    location: String,
    /// Text stderr must not hold, such as a line of a file outside the project.
    #[serde(default)]
    absent: Option<String>,
    #[serde(default)]
    setup: Vec<Setup>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Setup {
    Fifo(String),
    /// `to` may start with `{outside}`, the folder that holds the project.
    Symlink {
        path: String,
        to: String,
    },
    /// A file of this many bytes, holes only.
    Sparse {
        path: String,
        bytes: u64,
    },
    /// A file written from pieces, each repeated `times`.
    Write {
        path: String,
        pieces: Vec<Piece>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Piece {
    text: String,
    #[serde(default = "once")]
    times: usize,
}

fn once() -> usize {
    1
}

/// One finished child: its exit code, stderr, wall time and peak memory.
struct Measured {
    code: Option<i32>,
    stderr: String,
    wall: Duration,
    max_rss_kib: i64,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read corpus folder") {
        let entry = entry.expect("corpus entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("create folder");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy corpus file");
        }
    }
}

fn parent_created(path: &Path) -> &Path {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create folder");
    path
}

fn make_fifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    let _ = std::fs::remove_file(parent_created(path));
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in path");
    // SAFETY: `name` is a valid NUL-terminated path that outlives the call.
    let status = unsafe { libc::mkfifo(name.as_ptr(), 0o644) };
    assert_eq!(status, 0, "mkfifo {}", path.display());
}

fn apply_setup(step: &Setup, project: &Path, outside: &Path) {
    match step {
        Setup::Fifo(path) => make_fifo(&project.join(path)),
        Setup::Symlink { path, to } => {
            let link = project.join(path);
            let _ = std::fs::remove_file(parent_created(&link));
            let target = to.replace("{outside}", &outside.display().to_string());
            std::os::unix::fs::symlink(target, &link).expect("symlink");
        }
        Setup::Sparse { path, bytes } => {
            let file = std::fs::File::create(parent_created(&project.join(path))).expect("create");
            file.set_len(*bytes).expect("set length");
        }
        Setup::Write { path, pieces } => {
            let text: String = pieces
                .iter()
                .map(|piece| piece.text.repeat(piece.times))
                .collect();
            std::fs::write(parent_created(&project.join(path)), text).expect("write");
        }
    }
}

/// Runs the command to its end, measuring the child alone.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which also reports its peak memory"
)]
fn run_measured(command: &mut Command) -> Measured {
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the pipeline binary starts");
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut bytes);
        bytes
    });
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child; status and usage are valid for writes.
        let reaped = unsafe { libc::wait4(pid, &raw mut status, libc::WNOHANG, &raw mut usage) };
        if reaped == pid {
            break;
        }
        assert!(reaped == 0, "wait4 failed");
        if start.elapsed() > KILL_AFTER {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = start.elapsed();
    let stderr = String::from_utf8_lossy(&reader.join().expect("reader")).into_owned();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Measured {
        code,
        stderr,
        wall,
        max_rss_kib: usage.ru_maxrss,
    }
}

fn pipeline(project: &Path, outside: &Path, subcommand: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    command
        .current_dir(project)
        .args([subcommand, "experiments/demo.yaml", "--color", "never"]);
    if subcommand == "apply" {
        // Should a case ever pass validation, apply must still touch nothing.
        command
            .arg("--out")
            .arg(outside.join("out"))
            .arg("--lab-dir")
            .arg(outside.join("lab"))
            .arg("--builder-socket")
            .arg(outside.join("no-engine.sock"));
    }
    command
}

/// Runs one case; returns a description of each way it failed.
fn check_case(name: &str) -> Vec<String> {
    let dir = corpus_dir().join(name);
    let text = std::fs::read_to_string(dir.join("case.yaml")).expect("case.yaml");
    let case: Case = serde_saphyr::from_str(&text).expect("a valid case.yaml");
    let temp = tempfile::tempdir().expect("temporary folder");
    let outside = temp.path();
    let project = outside.join("project");
    std::fs::create_dir_all(&project).expect("project folder");
    copy_tree(&corpus_dir().join("base"), &project);
    if dir.join("files").is_dir() {
        copy_tree(&dir.join("files"), &project);
    }
    std::fs::write(outside.join("secret.txt"), SECRET).expect("secret");
    std::fs::write(outside.join("secret.yaml"), SECRET).expect("secret");
    for step in &case.setup {
        apply_setup(step, &project, outside);
    }
    let mut problems = Vec::new();
    let mut first_stderr: Option<String> = None;
    for subcommand in COMMANDS {
        let measured = run_measured(&mut pipeline(&project, outside, subcommand));
        let stderr = measured
            .stderr
            .replace(&format!("{}/", project.display()), "");
        let label = format!("{name} ({}), {subcommand}", case.what);
        if measured.code != Some(2) {
            problems.push(format!(
                "{label}: exit {:?}, not 2: {stderr}",
                measured.code
            ));
            continue;
        }
        if measured.wall >= TIME_LIMIT {
            problems.push(format!("{label}: took {:?}", measured.wall));
        }
        if measured.max_rss_kib >= MEMORY_LIMIT_KIB {
            problems.push(format!(
                "{label}: peak memory {} MiB",
                measured.max_rss_kib / 1024
            ));
        }
        let first = stderr.lines().next().unwrap_or_default();
        let first = first.strip_prefix("./").unwrap_or(first);
        let expected_start = format!("{}: error: ", case.location);
        if !first.starts_with(&expected_start) || !first.contains(&case.message) {
            problems.push(format!(
                "{label}: expected `{expected_start}...{}...`, got: {stderr}",
                case.message
            ));
        }
        if stderr.contains('\u{1b}') {
            problems.push(format!("{label}: a raw escape reached stderr: {stderr:?}"));
        }
        if let Some(absent) = &case.absent
            && stderr.contains(absent.as_str())
        {
            problems.push(format!("{label}: stderr holds `{absent}`: {stderr}"));
        }
        match &first_stderr {
            None => first_stderr = Some(stderr),
            Some(validate) if *validate != stderr => problems.push(format!(
                "{label}: diagnostics differ from validate's:\n{validate}\n---\n{stderr}"
            )),
            Some(_) => {}
        }
        eprintln!(
            "{name} {subcommand}: {:?}, {} MiB",
            measured.wall,
            measured.max_rss_kib / 1024
        );
    }
    problems
}

fn case_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("corpus")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name != "base")
        .collect();
    names.sort();
    names
}

#[test]
fn the_base_project_is_valid() {
    let temp = tempfile::tempdir().expect("temporary folder");
    copy_tree(&corpus_dir().join("base"), temp.path());
    let measured = run_measured(&mut pipeline(temp.path(), temp.path(), "validate"));
    assert_eq!(measured.code, Some(0), "{}", measured.stderr);
}

#[test]
fn every_hostile_case_is_refused_quickly_with_its_location() {
    let names = case_names();
    assert!(names.len() >= 40, "the corpus has {} cases", names.len());
    let problems: Vec<String> = names.iter().flat_map(|name| check_case(name)).collect();
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

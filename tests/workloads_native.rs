//! Builds every benchmark workload under `workloads/` natively with the host toolchains and
//! checks the output contract each program keeps (see `workloads/README.md`):
//! a `PIPELINE_MAIN_START_NS=<n>` first line, a result line matching the workload's
//! `workload.yaml` `result:` regex, and identical results across Rust, C++ and Go.
//!
//! Needs cargo, a C++17 compiler (`c++`, or `PIPELINE_CXX`) and Go >= 1.21 (`PIPELINE_GO`,
//! else `go` on PATH). A missing toolchain is a test failure, never a skip.
//! Self-contained on purpose: std only, no crate of this package.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

const EXPECTED_FACE: (i64, i64, i64, i64) = (177, 66, 95, 95);
/// Each of x, y, w, h may differ from `EXPECTED_FACE` by at most 15% of the face size (14 px):
/// a correct detector's grouped box moves by a pyramid step or two, while any other image
/// structure is much further away.
const FACE_TOLERANCE_PX: i64 = 14;

// ---------------------------------------------------------------------------------------
// Paths and scratch space
// ---------------------------------------------------------------------------------------

fn workloads_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads")
}

fn workload_dir(name: &str) -> PathBuf {
    workloads_dir().join(name)
}

/// Build caches shared by all runs (cargo and go lock them themselves).
fn cache_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("pipeline-workloads-native")
        .join(name);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A directory private to this process and test, removed when dropped.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path = std::env::temp_dir()
            .join("pipeline-workloads-native")
            .join(format!("run-{}", std::process::id()))
            .join(test);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// A fresh, empty subdirectory.
    fn sub(&self, name: &str) -> PathBuf {
        let dir = self.path.join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        dir
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        if let Some(parent) = self.path.parent() {
            let _ = fs::remove_dir(parent); // only succeeds once every test of this run is done
        }
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_nanos()
}

// ---------------------------------------------------------------------------------------
// Toolchains
// ---------------------------------------------------------------------------------------

fn run_build(mut cmd: Command, what: &str, missing_hint: &str) {
    let shown = format!("{cmd:?}");
    let output = match cmd.stdin(Stdio::null()).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "toolchain missing for {what}: {shown} could not be started ({e}). {missing_hint}"
            )
        }
        Err(e) => panic!("cannot run {shown}: {e}"),
    };
    assert!(
        output.status.success(),
        "building {what} failed ({}): {shown}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn build_rust(workload: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let target_dir = cache_dir(&format!("cargo-{workload}"));
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--offline",
        "--quiet",
        "--manifest-path",
    ])
    .arg(workload_dir(workload).join("rust").join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir)
    // The outer `cargo test` may export these; they must not redirect this build.
    .env_remove("CARGO_TARGET_DIR")
    .env_remove("CARGO_BUILD_TARGET_DIR")
    .env_remove("CARGO_BUILD_TARGET");
    run_build(
        cmd,
        &format!("{workload} (Rust)"),
        "Install Rust with rustup so `cargo` is on PATH.",
    );
    let bin = target_dir.join("release").join(workload);
    assert!(bin.is_file(), "cargo did not produce {}", bin.display());
    bin
}

fn build_cpp(workload: &str, tmp: &TempDir) -> PathBuf {
    let cxx = std::env::var_os("PIPELINE_CXX").unwrap_or_else(|| OsString::from("c++"));
    let src_dir = workload_dir(workload).join("cpp");
    let mut sources: Vec<PathBuf> = fs::read_dir(&src_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", src_dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cpp"))
        .collect();
    sources.sort();
    assert!(
        !sources.is_empty(),
        "no .cpp files in {}",
        src_dir.display()
    );
    let bin = tmp.sub(&format!("cpp-{workload}")).join(workload);
    let mut cmd = Command::new(cxx);
    cmd.args(["-std=c++17", "-O3"])
        .args(&sources)
        .arg("-o")
        .arg(&bin);
    run_build(
        cmd,
        &format!("{workload} (C++)"),
        "Install a C++17 compiler (Debian: `apt-get install g++`) or point PIPELINE_CXX at one.",
    );
    bin
}

const GO_HINT: &str = "Go >= 1.21 is needed (GOOS=wasip1 support). Set PIPELINE_GO to the go binary or put \
     `go` on PATH. On Debian bookworm (golang 1.19 only): download golang-1.24-go and golang-1.24-src \
     from Debian trixie with `apt-get download` using a private sources list, `dpkg -x` both into a \
     prefix, and use <prefix>/usr/lib/go-1.24/bin/go (see workloads/README.md).";

fn go_binary() -> OsString {
    let go = std::env::var_os("PIPELINE_GO").unwrap_or_else(|| OsString::from("go"));
    let out = match Command::new(&go)
        .arg("version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "toolchain missing: `{} version` failed ({}). {GO_HINT}",
            go.to_string_lossy(),
            o.status
        ),
        Err(e) => panic!(
            "toolchain missing: Go not found as `{}` ({e}). {GO_HINT}",
            go.to_string_lossy()
        ),
    };
    // "go version go1.24.4 linux/amd64"
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let version = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("go1."))
        .unwrap_or("");
    let minor: u32 = version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("")
        .parse()
        .unwrap_or(0);
    assert!(
        minor >= 21,
        "toolchain too old: `{}` reports {:?}. {GO_HINT}",
        go.to_string_lossy(),
        text.trim()
    );
    go
}

fn build_go(workload: &str, tmp: &TempDir) -> PathBuf {
    let go = go_binary();
    let bin = tmp.sub(&format!("go-{workload}")).join(workload);
    let mut cmd = Command::new(go);
    cmd.args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(workload_dir(workload).join("go"))
        // Std-only modules: never look for another toolchain or the module proxy.
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0");
    if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
        cmd.env("GOCACHE", cache_dir("gocache"));
    }
    run_build(cmd, &format!("{workload} (Go)"), GO_HINT);
    bin
}

fn build_all(workload: &str, tmp: &TempDir) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("rust", build_rust(workload)),
        ("cpp", build_cpp(workload, tmp)),
        ("go", build_go(workload, tmp)),
    ]
}

// ---------------------------------------------------------------------------------------
// workload.yaml (only the three flat keys this test needs)
// ---------------------------------------------------------------------------------------

struct WorkloadSpec {
    binary: String,
    args: Vec<String>,
    result: String,
}

fn yaml_scalar(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        inner.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        // Plain scalar: drop a trailing comment.
        raw.split(" #").next().unwrap_or("").trim().to_string()
    }
}

/// Parses a one-line flow sequence such as `["/data/a", "/out"]` (no commas inside items).
fn yaml_flow_list(raw: &str) -> Vec<String> {
    let raw = raw.trim();
    let inner = raw
        .strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .unwrap_or_else(|| panic!("args must be a one-line flow sequence, got {raw:?}"));
    inner
        .split(',')
        .map(yaml_scalar)
        .filter(|s| !s.is_empty())
        .collect()
}

fn load_spec(workload: &str) -> WorkloadSpec {
    let path = workload_dir(workload).join("workload.yaml");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let field = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
            .unwrap_or_else(|| panic!("{}: no top-level `{key}:` line", path.display()))
            .to_string()
    };
    WorkloadSpec {
        binary: yaml_scalar(&field("binary")),
        args: yaml_flow_list(&field("args")),
        result: yaml_scalar(&field("result")),
    }
}

/// Maps container paths to host paths: /data/... -> workload data dir, /out -> `out`.
fn host_args(workload: &str, args: &[String], out: &Path) -> Vec<OsString> {
    let data = workload_dir(workload).join("data");
    args.iter()
        .map(|a| {
            if let Some(rest) = a.strip_prefix("/data/") {
                data.join(rest).into_os_string()
            } else if a == "/out" {
                out.as_os_str().to_owned()
            } else {
                OsString::from(a)
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Running a workload and checking the contract
// ---------------------------------------------------------------------------------------

struct Run {
    lines: Vec<String>,
    result: String,
    success: bool,
}

fn run_program(label: &str, bin: &Path, args: &[OsString]) -> Run {
    let before = now_ns();
    let output = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{label}: cannot run {}: {e}", bin.display()));
    let after = now_ns();
    let stdout = String::from_utf8(output.stdout)
        .unwrap_or_else(|e| panic!("{label}: stdout is not UTF-8: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<String> = stdout.lines().map(str::to_string).collect();

    let first = lines
        .first()
        .unwrap_or_else(|| panic!("{label}: no output; stderr:\n{stderr}"));
    let digits = first
        .strip_prefix("PIPELINE_MAIN_START_NS=")
        .unwrap_or_else(|| {
            panic!("{label}: first stdout line is not PIPELINE_MAIN_START_NS=...: {first:?}")
        });
    assert!(
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        "{label}: bad start timestamp {first:?}"
    );
    let start: u128 = digits
        .parse()
        .unwrap_or_else(|e| panic!("{label}: bad start timestamp {first:?}: {e}"));
    let slack = 2_000_000_000u128; // clock granularity and rounding only; same machine, same clock
    assert!(
        start + slack >= before && start <= after + slack,
        "{label}: start timestamp {start} is not between spawn ({before}) and exit ({after})"
    );

    let results: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("PIPELINE_RESULT "))
        .collect();
    assert_eq!(
        results.len(),
        1,
        "{label}: expected exactly one PIPELINE_RESULT line, stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    Run {
        result: results[0].clone(),
        lines,
        success: output.status.success(),
    }
}

/// Runs a workload with its workload.yaml args and asserts a successful, matching result.
fn run_spec(workload: &str, label: &str, bin: &Path, spec: &WorkloadSpec, out: &Path) -> Run {
    assert_eq!(
        bin.file_name().and_then(|n| n.to_str()),
        Some(spec.binary.as_str()),
        "{label}: binary name"
    );
    let run = run_program(label, bin, &host_args(workload, &spec.args, out));
    assert!(
        run.success,
        "{label}: exited non-zero; result: {}",
        run.result
    );
    let re = Regex::new(&spec.result)
        .unwrap_or_else(|e| panic!("{workload}/workload.yaml result regex: {e}"));
    assert!(
        re.is_match(&run.result),
        "{label}: result line {:?} does not match {:?}",
        run.result,
        spec.result
    );
    run
}

/// Value of `key=` in a result line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    line.split(' ')
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn matrix_multiplication_identical_across_languages() {
    let wl = "matrix-multiplication";
    let spec = load_spec(wl);
    let tmp = TempDir::new(wl);
    let out = tmp.sub("out");
    let mut sums = Vec::new();
    for (lang, bin) in build_all(wl, &tmp) {
        let run = run_spec(wl, &format!("{wl}/{lang}"), &bin, &spec, &out);
        sums.push((lang, field(&run.result, "sum").to_string()));
    }
    assert!(
        sums.iter().all(|(_, s)| *s == sums[0].1),
        "matrix sums differ across languages: {sums:?}"
    );
}

fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    if data.is_empty() {
        return Vec::new();
    }
    data.strip_suffix(b"\n")
        .unwrap_or(data)
        .split(|&b| b == b'\n')
        .collect()
}

/// Expected outputs computed here, independently of the workload programs.
fn expected_sorting(input: &Path) -> (Vec<u8>, Vec<u8>) {
    let data = fs::read(input).expect("read sorting input");
    let lines = split_lines(&data);
    let mut sorted = lines.clone();
    sorted.sort();
    let mut by_line = Vec::new();
    for l in sorted {
        by_line.extend_from_slice(l);
        by_line.push(b'\n');
    }
    let mut by_char = Vec::new();
    for l in lines {
        let mut bytes = l.to_vec();
        bytes.sort_unstable();
        by_char.extend_from_slice(&bytes);
        by_char.push(b'\n');
    }
    (by_line, by_char)
}

#[test]
fn sorting_outputs_identical_across_languages() {
    let wl = "sorting";
    let spec = load_spec(wl);
    let tmp = TempDir::new(wl);
    let bins = build_all(wl, &tmp);
    let tiny = WorkloadSpec {
        binary: spec.binary.clone(),
        args: vec!["/data/tiny.txt".into(), "/out".into()],
        result: "^PIPELINE_RESULT status=ok lines=6 ".into(),
    };
    for (input_name, s) in [("default", &spec), ("tiny", &tiny)] {
        let input = host_args(wl, &s.args[..1], Path::new("/"))[0].clone();
        let (want_lines, want_chars) = expected_sorting(Path::new(&input));
        let mut results = HashSet::new();
        for (lang, bin) in &bins {
            let label = format!("{wl}/{lang}/{input_name}");
            let out = tmp.sub(&format!("out-{lang}-{input_name}"));
            let run = run_spec(wl, &label, bin, s, &out);
            let got_lines = fs::read(out.join("sorted-lines.txt")).expect("sorted-lines.txt");
            let got_chars = fs::read(out.join("sorted-chars.txt")).expect("sorted-chars.txt");
            // Byte-for-byte equality with the reference implies equality across languages.
            assert!(
                got_lines == want_lines,
                "{label}: sorted-lines.txt differs from the expected output"
            );
            assert!(
                got_chars == want_chars,
                "{label}: sorted-chars.txt differs from the expected output"
            );
            assert_eq!(
                field(&run.result, "bytes"),
                want_lines.len().to_string(),
                "{label}: bytes="
            );
            results.insert(run.result);
        }
        assert_eq!(
            results.len(),
            1,
            "result lines differ across languages for {input_name}: {results:?}"
        );
    }

    // A missing output directory is a clear failure, not a crash or a silent success.
    let missing = tmp.sub("missing").join("does-not-exist");
    let input = workload_dir(wl).join("data").join("tiny.txt");
    for (lang, bin) in &bins {
        let run = run_program(
            &format!("{wl}/{lang}/missing-outdir"),
            bin,
            &[input.clone().into(), missing.clone().into()],
        );
        assert!(
            !run.success,
            "{lang}: must exit non-zero when the output dir is missing"
        );
        assert!(
            run.result
                .starts_with("PIPELINE_RESULT status=fail reason="),
            "{lang}: {}",
            run.result
        );
    }
}

fn parse_boxes(result: &str) -> Vec<(i64, i64, i64, i64)> {
    let boxes = field(result, "boxes");
    boxes
        .split(';')
        .filter(|b| !b.is_empty())
        .map(|b| {
            let v: Vec<i64> = b
                .split(',')
                .map(|n| n.parse().unwrap_or_else(|e| panic!("bad box {b:?}: {e}")))
                .collect();
            assert_eq!(v.len(), 4, "bad box {b:?}");
            (v[0], v[1], v[2], v[3])
        })
        .collect()
}

#[test]
fn face_detection_finds_the_astronaut_face() {
    let wl = "face-detection";
    let spec = load_spec(wl);
    let tmp = TempDir::new(wl);
    let bin = build_cpp(wl, &tmp);
    let out = tmp.sub("out");

    let run = run_spec(wl, "face-detection/cpp", &bin, &spec, &out);
    assert_eq!(
        field(&run.result, "faces"),
        "1",
        "astronaut: {}",
        run.result
    );
    let boxes = parse_boxes(&run.result);
    assert_eq!(boxes.len(), 1, "astronaut: {}", run.result);
    let (x, y, w, h) = boxes[0];
    let (ex, ey, ew, eh) = EXPECTED_FACE;
    for (name, got, want) in [("x", x, ex), ("y", y, ey), ("w", w, ew), ("h", h, eh)] {
        assert!(
            (got - want).abs() <= FACE_TOLERANCE_PX,
            "astronaut face {name}={got}, expected {want} +/- {FACE_TOLERANCE_PX}: {}",
            run.result
        );
    }
    let face_lines: Vec<&String> = run
        .lines
        .iter()
        .filter(|l| l.starts_with("face "))
        .collect();
    assert_eq!(
        face_lines,
        [&format!("face x={x} y={y} w={w} h={h}")],
        "per-face lines"
    );

    let data = workload_dir(wl).join("data");
    let cascade: OsString = data.join("haarcascade_frontalface_default.xml").into();
    let no_face = run_program(
        "face-detection/no-face",
        &bin,
        &[
            cascade.clone(),
            data.join("no-face.pgm").into(),
            "--expect-faces".into(),
            "0".into(),
        ],
    );
    assert!(no_face.success, "no-face: {}", no_face.result);
    assert!(
        no_face
            .result
            .starts_with("PIPELINE_RESULT status=ok faces=0 "),
        "no-face: {}",
        no_face.result
    );

    let wrong = run_program(
        "face-detection/wrong-expectation",
        &bin,
        &[
            cascade,
            data.join("astronaut.pgm").into(),
            "--expect-faces".into(),
            "2".into(),
        ],
    );
    assert!(!wrong.success, "--expect-faces 2 must fail on astronaut");
    assert!(
        wrong.result.starts_with("PIPELINE_RESULT status=fail "),
        "{}",
        wrong.result
    );
}

#[test]
fn workload_yaml_files_are_complete() {
    for wl in ["matrix-multiplication", "sorting", "face-detection"] {
        let spec = load_spec(wl);
        assert_eq!(spec.binary, wl, "{wl}: binary must equal the workload name");
        Regex::new(&spec.result).unwrap_or_else(|e| panic!("{wl}: result regex: {e}"));
        for a in spec.args.iter().filter(|a| a.starts_with("/data/")) {
            let host = workload_dir(wl).join("data").join(&a["/data/".len()..]);
            assert!(
                host.is_file(),
                "{wl}: argument {a} has no file {}",
                host.display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// A tiny backtracking regex engine for the `result:` patterns (no regex crate here).
// Supports: literals, `.`, `\d \w \s` and escaped punctuation, classes `[a-z0-9]` / `[^...]`,
// groups with `|`, quantifiers `* + ? {n} {n,} {n,m}`, anchors `^ $`. Unanchored search.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class(Vec<(char, char)>, bool),
    Start,
    End,
    Group(Vec<Vec<Node>>),
    Repeat(Box<Node>, usize, Option<usize>),
}

struct Regex {
    alternatives: Vec<Vec<Node>>,
}

impl Regex {
    fn new(pattern: &str) -> Result<Regex, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut pos = 0;
        let alternatives = parse_alternatives(&chars, &mut pos)?;
        if pos != chars.len() {
            return Err(format!("unbalanced ')' at {pos} in {pattern:?}"));
        }
        Ok(Regex { alternatives })
    }

    fn is_match(&self, text: &str) -> bool {
        let s: Vec<char> = text.chars().collect();
        let root = Node::Group(self.alternatives.clone());
        (0..=s.len()).any(|i| match_node(&root, &s, i, &|_| true))
    }
}

fn class_escape(c: char) -> Option<Vec<(char, char)>> {
    match c {
        'd' => Some(vec![('0', '9')]),
        'w' => Some(vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')]),
        's' => Some(vec![(' ', ' '), ('\t', '\t'), ('\n', '\n'), ('\r', '\r')]),
        _ => None,
    }
}

fn parse_alternatives(p: &[char], pos: &mut usize) -> Result<Vec<Vec<Node>>, String> {
    let mut alts = vec![Vec::new()];
    while *pos < p.len() {
        let c = p[*pos];
        *pos += 1;
        let atom = match c {
            ')' => {
                *pos -= 1;
                return Ok(alts);
            }
            '|' => {
                alts.push(Vec::new());
                continue;
            }
            '(' => {
                if p.get(*pos) == Some(&'?') && p.get(*pos + 1) == Some(&':') {
                    *pos += 2;
                }
                let inner = parse_alternatives(p, pos)?;
                if p.get(*pos) != Some(&')') {
                    return Err("missing ')'".into());
                }
                *pos += 1;
                Node::Group(inner)
            }
            '^' => Node::Start,
            '$' => Node::End,
            '.' => Node::Any,
            '\\' => {
                let e = *p.get(*pos).ok_or("trailing backslash")?;
                *pos += 1;
                match class_escape(e) {
                    Some(ranges) => Node::Class(ranges, false),
                    None if e.is_ascii_alphanumeric() => {
                        return Err(format!("unsupported escape \\{e}"));
                    }
                    None => Node::Char(e),
                }
            }
            '[' => {
                let negated = p.get(*pos) == Some(&'^');
                if negated {
                    *pos += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let c = *p.get(*pos).ok_or("unterminated '['")?;
                    *pos += 1;
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        let e = *p.get(*pos).ok_or("unterminated '['")?;
                        *pos += 1;
                        if let Some(r) = class_escape(e) {
                            ranges.extend(r);
                            continue;
                        }
                        e
                    } else {
                        c
                    };
                    if p.get(*pos) == Some(&'-') && p.get(*pos + 1).is_some_and(|&n| n != ']') {
                        ranges.push((lo, p[*pos + 1]));
                        *pos += 2;
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                Node::Class(ranges, negated)
            }
            '*' | '+' | '?' | '{' => return Err(format!("quantifier {c:?} without operand")),
            c => Node::Char(c),
        };
        let atom = parse_quantifier(p, pos, atom)?;
        alts.last_mut().expect("one alternative").push(atom);
    }
    Ok(alts)
}

fn parse_quantifier(p: &[char], pos: &mut usize, atom: Node) -> Result<Node, String> {
    let (min, max) = match p.get(*pos) {
        Some('*') => (0, None),
        Some('+') => (1, None),
        Some('?') => (0, Some(1)),
        Some('{') => {
            let close = p[*pos..]
                .iter()
                .position(|&c| c == '}')
                .ok_or("unterminated '{'")?
                + *pos;
            let body: String = p[*pos + 1..close].iter().collect();
            let num = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("bad repetition {{{body}}}"))
            };
            let range = match body.split_once(',') {
                None => (num(&body)?, Some(num(&body)?)),
                Some((a, b)) if b.trim().is_empty() => (num(a)?, None),
                Some((a, b)) => (num(a)?, Some(num(b)?)),
            };
            *pos = close;
            range
        }
        _ => return Ok(atom),
    };
    *pos += 1;
    if matches!(atom, Node::Start | Node::End) {
        return Err("quantified anchor".into());
    }
    Ok(Node::Repeat(Box::new(atom), min, max))
}

fn match_seq(seq: &[Node], s: &[char], i: usize, k: &dyn Fn(usize) -> bool) -> bool {
    match seq.split_first() {
        None => k(i),
        Some((node, rest)) => match_node(node, s, i, &|j| match_seq(rest, s, j, k)),
    }
}

fn match_node(node: &Node, s: &[char], i: usize, k: &dyn Fn(usize) -> bool) -> bool {
    match node {
        Node::Char(c) => i < s.len() && s[i] == *c && k(i + 1),
        Node::Any => i < s.len() && s[i] != '\n' && k(i + 1),
        Node::Class(ranges, negated) => {
            i < s.len()
                && ranges.iter().any(|&(lo, hi)| lo <= s[i] && s[i] <= hi) != *negated
                && k(i + 1)
        }
        Node::Start => i == 0 && k(i),
        Node::End => i == s.len() && k(i),
        Node::Group(alts) => alts.iter().any(|alt| match_seq(alt, s, i, k)),
        Node::Repeat(inner, min, max) => match_repeat(inner, *min, *max, 0, s, i, k),
    }
}

/// Greedy repetition; an iteration that consumes nothing ends the loop.
fn match_repeat(
    inner: &Node,
    min: usize,
    max: Option<usize>,
    count: usize,
    s: &[char],
    i: usize,
    k: &dyn Fn(usize) -> bool,
) -> bool {
    if max.is_none_or(|m| count < m)
        && match_node(inner, s, i, &|j| {
            j > i && match_repeat(inner, min, max, count + 1, s, j, k)
        })
    {
        return true;
    }
    count >= min && k(i)
}

#[test]
fn regex_subset_behaves() {
    let ok = |p: &str, t: &str| Regex::new(p).unwrap().is_match(t);
    assert!(ok(
        "^PIPELINE_RESULT status=ok( |$)",
        "PIPELINE_RESULT status=ok"
    ));
    assert!(ok(
        "^PIPELINE_RESULT status=ok( |$)",
        "PIPELINE_RESULT status=ok sum=1"
    ));
    assert!(!ok(
        "^PIPELINE_RESULT status=ok( |$)",
        "PIPELINE_RESULT status=okay"
    ));
    assert!(!ok(
        "^PIPELINE_RESULT status=ok( |$)",
        "x PIPELINE_RESULT status=ok"
    ));
    assert!(ok(
        r"sum=3841600274\.047( |$)",
        "a sum=3841600274.047 n=100"
    ));
    assert!(!ok(r"sum=3841600274\.047( |$)", "a sum=3841600274x047"));
    assert!(ok(r"^checksum=[0-9a-f]{16}$", "checksum=e2ed7439671d5e3a"));
    assert!(!ok(r"^checksum=[0-9a-f]{16}$", "checksum=e2ed7439671d5e3"));
    assert!(ok(r"^a\d+b?c*$", "a123"));
    assert!(ok(r"^(x|yz)+$", "xyzx"));
    assert!(!ok(r"^(x|yz)+$", "xyx z"));
    assert!(ok(r"^[^ ]+ \w+$", "k=v word_1"));
    assert!(ok("faces=1 boxes=.*$", "faces=1 boxes=1,2,3,4"));
    assert!(Regex::new("(ab").is_err());
    assert!(Regex::new("ab)").is_err());
    assert!(Regex::new("*a").is_err());
}

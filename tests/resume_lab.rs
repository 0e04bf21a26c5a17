//! `pipeline apply` on the lab when things go wrong half way: the apply is
//! killed with SIGKILL at seeded moments and resumed, interrupted with ^C,
//! loses a host's sshd or the registry; a workload hangs; a long experiment
//! must leave nothing behind in the hosts' engines; and `--only` must not
//! drop rows from the tables. Every test drives the real binary against the
//! real lab, like tests/apply_lab.rs, with the plain-C fixture
//! (tests/fixtures/language-c) in a tree of its own.
//!
//! The moments of the kill chain come from SplitMix64 with a fixed seed,
//! printed with the moments; `RESUME_LAB_SEED` (decimal or 0x-hex) picks
//! another. Kill points, what was in flight and row counts go to stderr:
//! run with `--nocapture` to see them.

#[path = "common/apply.rs"]
mod apply;
#[path = "common/lab.rs"]
mod lab;
#[path = "common/python.rs"]
mod python;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use apply::{
    Experiment, JournalEvent, JournalTail, RowKey, Shape, SplitMix64, Tree, assert_complete,
    close_leftover_ssh_masters, in_flight, lab_turn, send_signal, wait_for,
};

const DEFAULT_SEED: u64 = 0x5EED_C0DE_2024_0009;

/// Generous limits: an apply that takes longer has hung.
const APPLY_LIMIT: Duration = Duration::from_secs(900);

/// The fixture's experiment applied once without interruption: the rows a
/// resumed apply must end with.
struct CleanRun {
    _tree: Tree,
    experiment: Experiment,
    rows: Vec<RowKey>,
}

fn clean_run() -> &'static CleanRun {
    static CLEAN: OnceLock<Result<CleanRun, String>> = OnceLock::new();
    let clean = CLEAN.get_or_init(|| {
        // Outlives the test that makes it, so it lives in cargo's folder for
        // test files rather than in a temporary folder.
        let tree = Tree::at(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("resume-lab-clean"));
        let experiment = tree.experiment(&Shape::hello("resume-clean"));
        let _turn = lab_turn();
        let finished = experiment
            .spawn(&["apply"])
            .wait_at_most(APPLY_LIMIT, "the clean apply");
        eprintln!(
            "clean apply: exit {:?} in {:.1} s",
            finished.code(),
            finished.elapsed.as_secs_f64()
        );
        if finished.code() != Some(0) {
            return Err(format!("the clean apply failed:\n{}", finished.describe()));
        }
        let rows: Vec<RowKey> = experiment
            .result_rows()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        Ok(CleanRun {
            _tree: tree,
            experiment,
            rows,
        })
    });
    match clean {
        Ok(clean) => clean,
        Err(message) => panic!("{message}"),
    }
}

/// Brings the lab back up when a test that stopped part of it ends, also
/// when it fails half way, so the tests after it find a whole lab.
struct RestoreLab;

impl Drop for RestoreLab {
    fn drop(&mut self) {
        if !lab::current_state().all_alive()
            && let Err(error) = lab::up_again()
        {
            eprintln!("{error}");
        }
    }
}

fn seed() -> u64 {
    let Ok(text) = std::env::var("RESUME_LAB_SEED") else {
        return DEFAULT_SEED;
    };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|error| panic!("RESUME_LAB_SEED={text}: {error}"))
}

/// Kill moments as "this many stages have succeeded", from 1 to one short
/// of all, drawn from the seed and the plan's stage counts alone. Stages
/// finish roughly kind after kind, so each kind's stages span a band of
/// that count; one moment is drawn in the band of each phase named below,
/// the rest anywhere, which puts most of them among the runs, where most
/// of the time goes.
fn kill_points(counts: &Value, random: &mut SplitMix64, count: usize) -> Vec<usize> {
    let order = [
        "base",
        "prepare-host",
        "render",
        "build",
        "push",
        "index",
        "pull",
        "run",
        "aggregate",
    ];
    let mut bands = BTreeMap::new();
    let mut total = 0;
    for kind in order {
        let stages = usize::try_from(counts[kind].as_u64().unwrap_or(0)).expect("a count");
        bands.insert(kind, (total, stages));
        total += stages;
    }
    assert!(total > count, "the plan has {total} stages");
    let mut points = BTreeSet::new();
    for phase in ["prepare-host", "build", "push", "index", "pull", "run"] {
        let (start, stages) = bands[phase];
        if stages > 0 {
            points.insert((start + random.below(stages)).clamp(1, total - 1));
        }
    }
    while points.len() < count {
        points.insert(1 + random.below(total - 1));
    }
    points.into_iter().collect()
}

struct Kill {
    point: usize,
    landed: bool,
    exit: String,
    seconds: f64,
    in_flight: BTreeMap<String, String>,
    rows_after: Option<u64>,
}

#[test]
fn sigkill_at_seeded_moments_then_apply_again_ends_with_the_clean_runs_rows() {
    let clean = clean_run();
    assert_eq!(
        clean.rows,
        clean.experiment.planned_rows(),
        "the clean apply measured every planned run"
    );
    let _turn = lab_turn();
    let tree = Tree::new();
    let experiment = tree.experiment(&Shape::hello("resume-kill"));
    let seed = seed();
    let mut random = SplitMix64(seed);
    let counts = experiment.plan()["counts"].clone();
    let points = kill_points(&counts, &mut random, 12);
    eprintln!(
        "kill chain: seed {seed:#x} (RESUME_LAB_SEED), stages by kind {counts}, \
         kill when this many have succeeded: {points:?}"
    );

    let hosts = ["lab-amd64", "lab-arm64"];
    let before: Vec<HostContents> = hosts.iter().map(|host| HostContents::read(host)).collect();
    let chain_started = Instant::now();
    let mut tail = JournalTail::new(&experiment.journal_path());
    let mut kills = Vec::new();
    for &point in &points {
        tail.poll();
        // A kill lands a little after its moment; never before this apply did anything.
        let target = point.max(tail.succeeded().len() + 1);
        let first_event = tail.events.len();
        let mut running = experiment.spawn(&["apply"]);
        let mut landed = false;
        loop {
            if running.try_wait().is_some() {
                break;
            }
            tail.poll();
            if tail.succeeded().len() >= target {
                running.signal(libc::SIGKILL);
                landed = true;
                break;
            }
            assert!(
                running.started.elapsed() < APPLY_LIMIT,
                "apply {} ran for {} s without reaching {target} stages",
                running.pid,
                APPLY_LIMIT.as_secs()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let finished = running.wait();
        tail.poll();
        let kill = Kill {
            point: target,
            landed: landed && finished.signal() == Some(libc::SIGKILL),
            exit: format!("exit {:?} signal {:?}", finished.code(), finished.signal()),
            seconds: finished.elapsed.as_secs_f64(),
            in_flight: in_flight(&tail.events[first_event..]),
            rows_after: experiment.table_rows("results"),
        };
        let masters = close_leftover_ssh_masters(finished.pid);
        eprintln!(
            "kill at {} stages done: {} after {:.1} s; in flight: {:?}; results.parquet rows \
             before resume: {:?}; journal {} lines ({} unreadable); {masters} SSH masters left",
            kill.point,
            kill.exit,
            kill.seconds,
            kill.in_flight.keys().collect::<Vec<_>>(),
            kill.rows_after,
            experiment.journal_lines(),
            tail.unreadable,
        );
        if !kill.landed && finished.code() != Some(0) {
            let failures: Vec<&str> = finished
                .stderr
                .lines()
                .filter(|line| line.trim_start().starts_with("failed "))
                .take(5)
                .collect();
            eprintln!("apply ended on its own before its kill: {failures:#?}");
        }
        kills.push(kill);
    }

    let rows_before = experiment.table_rows("results");
    let last = experiment
        .spawn(&["apply"])
        .wait_at_most(APPLY_LIMIT, "the final apply");
    let rows_after = experiment.table_rows("results");
    eprintln!(
        "final apply: exit {:?} in {:.1} s; results.parquet rows {rows_before:?} -> {rows_after:?} \
         (clean run: {}); whole chain {:.0} s",
        last.code(),
        last.elapsed.as_secs_f64(),
        clean.rows.len(),
        chain_started.elapsed().as_secs_f64()
    );
    // A killed apply's work on the hosts (a pull, a container) was cut
    // off mid-way; once resumed, nothing of it may be left there.
    let mut left_behind = Vec::new();
    for (host, before) in hosts.iter().zip(&before) {
        let after = HostContents::read(host);
        eprintln!(
            "{host} before the chain: {}\n{host} after it: {}",
            before.counts(),
            after.counts()
        );
        left_behind.extend(
            after
                .new_since(before)
                .into_iter()
                .map(|item| format!("{host}: {item}")),
        );
        // A lease left by a cut-off pull pins its blobs for a day, and every
        // later fresh pull of an image sharing them would transfer nothing:
        // reported above, then removed so the tests after this one measure.
        after.remove_leases_not_in(host, before);
    }
    assert_eq!(last.code(), Some(0), "{}", last.describe());
    assert_complete(&experiment, &clean.rows);
    assert!(
        left_behind.is_empty(),
        "the killed applies left behind: {left_behind:#?}"
    );

    let landed = kills.iter().filter(|kill| kill.landed).count();
    let phases: BTreeSet<&str> = kills
        .iter()
        .filter(|kill| kill.landed)
        .flat_map(|kill| kill.in_flight.values().map(String::as_str))
        .collect();
    eprintln!("{landed} kills landed; kinds in flight at them: {phases:?}");
    let summary: Vec<String> = kills
        .iter()
        .map(|kill| format!("{}: {} ({:.1} s)", kill.point, kill.exit, kill.seconds))
        .collect();
    assert!(
        landed >= 10,
        "only {landed} of {} applies were still running at their kill moment: {summary:#?}",
        kills.len()
    );
    assert!(
        phases.contains("run") && phases.len() >= 4,
        "the kills should land in several phases, not only in {phases:?}"
    );
}

#[test]
fn interrupt_mid_run_exits_130_and_apply_again_completes() {
    let _turn = lab_turn();
    let tree = Tree::new();
    let experiment = tree.experiment(&Shape {
        targets: vec!["linux/amd64", "linux/arm64"],
        scenarios: vec!["fresh"],
        repetitions: 3,
        warmup: 0,
        ..Shape::hello("resume-interrupt")
    });
    let expected = experiment.planned_rows();
    let mut tail = JournalTail::new(&experiment.journal_path());
    let mut running = experiment.spawn(&["apply"]);
    let reached = wait_for(APPLY_LIMIT, || {
        tail.poll();
        running.try_wait().is_some()
            || tail
                .succeeded()
                .iter()
                .filter(|stage| stage.starts_with("run/"))
                .count()
                >= 4
    });
    assert!(
        reached && running.try_wait().is_none(),
        "the apply ended before its runs"
    );
    let interrupted_at = Instant::now();
    running.signal(libc::SIGINT);
    let finished = running.wait_at_most(APPLY_LIMIT, "the interrupted apply");
    let stop_seconds = interrupted_at.elapsed().as_secs_f64();
    let rows_before = experiment.table_rows("results");
    eprintln!(
        "^C after 4 runs: exit {:?} {stop_seconds:.1} s after SIGINT; results.parquet rows \
         before resume: {rows_before:?} of {}",
        finished.code(),
        expected.len()
    );
    assert_eq!(finished.code(), Some(130), "{}", finished.describe());
    assert!(
        stop_seconds < 60.0,
        "^C took {stop_seconds:.0} s to stop the apply"
    );
    // docs/results.md: an interrupted apply still leaves every measurement it made.
    assert!(
        rows_before.unwrap_or(0) >= 4,
        "results.parquet after ^C holds {rows_before:?} rows; 4 runs had succeeded"
    );

    let again = experiment
        .spawn(&["apply"])
        .wait_at_most(APPLY_LIMIT, "the resumed apply");
    eprintln!(
        "resume: exit {:?} in {:.1} s; results.parquet rows {rows_before:?} -> {:?}",
        again.code(),
        again.elapsed.as_secs_f64(),
        experiment.table_rows("results")
    );
    assert_eq!(again.code(), Some(0), "{}", again.describe());
    assert_complete(&experiment, &expected);
}

/// What a host's sshd going away looks like to an apply: no new connection
/// is accepted, and the connection the apply holds is closed. The listener
/// is the lab's process (`hosts[i].sshd` in .lab/state.json); killing it
/// alone leaves established sessions alive, so the apply's own SSH master
/// to that host is asked to exit as well.
#[test]
fn a_hosts_sshd_stopped_mid_run_fails_only_that_host_and_resumes_after_lab_up() {
    const HOST: &str = "lab-arm64";
    let _turn = lab_turn();
    let _restore = RestoreLab;
    let tree = Tree::new();
    let experiment = tree.experiment(&Shape {
        targets: vec!["linux/amd64", "linux/arm64"],
        warmup: 0,
        ..Shape::hello("resume-sshd")
    });
    let expected = experiment.planned_rows();
    let mut tail = JournalTail::new(&experiment.journal_path());
    let mut running = experiment.spawn(&["apply"]);
    let host_runs_done = |tail: &JournalTail| {
        tail.succeeded()
            .iter()
            .filter(|stage| stage.starts_with("run/") && stage.contains(&format!("/{HOST}/")))
            .count()
    };
    let reached = wait_for(APPLY_LIMIT, || {
        tail.poll();
        running.try_wait().is_some() || host_runs_done(&tail) >= 2
    });
    assert!(
        reached && running.try_wait().is_none(),
        "the apply ended before two runs on {HOST}"
    );
    let state = lab::current_state();
    let host = state
        .hosts
        .iter()
        .find(|host| host.host.name == HOST)
        .expect("the lab has the host");
    send_signal(host.sshd.pid, libc::SIGKILL);
    let masters = apply::ssh_masters(running.pid);
    let mut closed = 0;
    for master in &masters {
        if master
            .command_line
            .iter()
            .any(|arg| arg == &host.host.address)
        {
            assert!(
                apply::close_ssh_master(master),
                "closing {}",
                master.socket.display()
            );
            closed += 1;
        }
    }
    eprintln!(
        "stopped sshd {} of {HOST} after {} of its runs; closed {closed} of the apply's {} SSH \
         masters (those to {})",
        host.sshd.pid,
        host_runs_done(&tail),
        masters.len(),
        host.host.address
    );
    let first_event = tail.events.len();
    let finished = running.wait_at_most(APPLY_LIMIT, "the apply without sshd");
    tail.poll();
    let events = &tail.events[first_event..];
    eprintln!(
        "apply without {HOST}'s sshd: exit {:?} in {:.1} s; results.parquet rows {:?}",
        finished.code(),
        finished.elapsed.as_secs_f64(),
        experiment.table_rows("results")
    );
    assert_eq!(finished.code(), Some(1), "{}", finished.describe());

    let all_events = experiment.journal();
    let failed: BTreeMap<&str, &str> = all_events
        .iter()
        .filter(|event| event.event == "failed")
        .map(|event| (event.stage.as_str(), event.error.as_deref().unwrap_or("")))
        .collect();
    assert!(!failed.is_empty(), "no stage failed: {events:#?}");
    let messages: BTreeSet<&str> = failed.values().copied().collect();
    eprintln!("errors of {HOST}'s stages: {messages:#?}");
    let elsewhere: Vec<&&str> = failed
        .keys()
        .filter(|stage| !stage.contains(HOST))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "only {HOST}'s stages may fail, but so did {elsewhere:?}"
    );
    for (stage, error) in &failed {
        let lower = error.to_lowercase();
        assert!(
            error.contains(HOST)
                && ["ssh", "connect", "refused", "closed", "unreachable"]
                    .iter()
                    .any(|cause| lower.contains(cause)),
            "the error of {stage} should name {HOST} and the lost connection: {error}"
        );
    }
    let first_error = failed
        .values()
        .next()
        .and_then(|error| error.lines().next())
        .unwrap_or_default();
    assert!(
        finished.stderr.contains(first_error),
        "the apply reports the failure: {}",
        finished.stderr
    );
    let other_runs: Vec<&RowKey> = expected.iter().filter(|key| key.host != HOST).collect();
    let other_rows: Vec<(RowKey, bool)> = experiment
        .result_rows()
        .into_iter()
        .filter(|(key, _)| key.host != HOST)
        .collect();
    assert!(
        other_rows.len() == other_runs.len() && other_rows.iter().all(|(_, ok)| *ok),
        "the other host measured all its runs: {other_rows:?}"
    );

    let restarted = Instant::now();
    let state = lab::up_again().unwrap_or_else(|error| panic!("{error}"));
    assert!(state.all_alive(), "lab up left part of the lab down");
    eprintln!(
        "pipeline lab up brought {HOST}'s sshd back in {:.1} s (sshd {})",
        restarted.elapsed().as_secs_f64(),
        state
            .hosts
            .iter()
            .find(|h| h.host.name == HOST)
            .map_or(0, |h| h.sshd.pid)
    );
    let again = experiment
        .spawn(&["apply"])
        .wait_at_most(APPLY_LIMIT, "the resumed apply");
    eprintln!(
        "resume: exit {:?} in {:.1} s; results.parquet rows {:?} of {}",
        again.code(),
        again.elapsed.as_secs_f64(),
        experiment.table_rows("results"),
        expected.len()
    );
    assert_eq!(again.code(), Some(0), "{}", again.describe());
    assert_complete(&experiment, &expected);
}

#[test]
fn the_registry_stopped_during_pushes_fails_after_retries_with_backoff_and_resumes() {
    let _turn = lab_turn();
    let _restore = RestoreLab;
    let tree = Tree::new();
    // New content, so this apply builds and pushes whatever the registry holds.
    let source = tree.read("workloads/hello/c/main.c");
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos()
    );
    tree.write(
        "workloads/hello/c/main.c",
        &source.replacen(
            "\nint main",
            &format!(
                "\n__attribute__((used)) const char pipeline_test_build[] = \"{nonce}\";\n\nint main"
            ),
            1,
        ),
    );
    let experiment = tree.experiment(&Shape {
        targets: vec!["linux/amd64"],
        hosts: vec!["lab-amd64"],
        engines: vec!["docker"],
        scenarios: vec!["fresh"],
        repetitions: 1,
        warmup: 0,
        ..Shape::hello("resume-registry")
    });
    let expected = experiment.planned_rows();
    let registry = lab::registry_address();
    let mut tail = JournalTail::new(&experiment.journal_path());
    let mut running = experiment.spawn(&["apply"]);
    // Builds need no registry; every push after them does.
    let reached = wait_for(APPLY_LIMIT, || {
        tail.poll();
        running.try_wait().is_some()
            || tail
                .events
                .iter()
                .any(|event| event.kind == "build" && event.event == "started")
    });
    assert!(
        reached && running.try_wait().is_none(),
        "the apply ended before its build"
    );
    let pid = lab::current_state()
        .registry
        .expect("the lab records its registry")
        .pid;
    send_signal(pid, libc::SIGKILL);
    eprintln!("stopped the registry ({pid}, {registry}) when the build started");
    let finished = running.wait_at_most(APPLY_LIMIT, "the apply without registry");
    eprintln!(
        "apply without registry: exit {:?} in {:.1} s",
        finished.code(),
        finished.elapsed.as_secs_f64()
    );
    assert_eq!(finished.code(), Some(1), "{}", finished.describe());

    let events = experiment.journal();
    let failed: BTreeMap<&str, (&str, &str)> = events
        .iter()
        .filter(|event| event.event == "failed")
        .map(|event| {
            (
                event.stage.as_str(),
                (event.kind.as_str(), event.error.as_deref().unwrap_or("")),
            )
        })
        .collect();
    assert!(
        failed.values().any(|(kind, _)| *kind == "push")
            && failed
                .values()
                .all(|(kind, _)| ["push", "index"].contains(kind)),
        "the pushes fail, and nothing before them: {failed:#?}"
    );
    assert!(
        finished.stderr.contains(&registry),
        "the error names the registry {registry}: {}",
        finished.stderr
    );
    for (stage, (kind, _)) in failed.iter().filter(|(_, (kind, _))| *kind == "push") {
        let own: Vec<&JournalEvent> = events.iter().filter(|e| e.stage == *stage).collect();
        let starts: Vec<u64> = own
            .iter()
            .filter(|e| e.event == "started")
            .map(|e| e.at_ms)
            .collect();
        let ends: Vec<u64> = own
            .iter()
            .filter(|e| e.event == "retrying" || e.event == "failed")
            .map(|e| e.at_ms)
            .collect();
        // The wait before each further attempt, or, when attempts are not
        // journaled one by one, the whole time the stage kept trying.
        let waits: Vec<u64> = if starts.len() > 1 {
            starts[1..]
                .iter()
                .zip(&ends)
                .map(|(start, end)| start.saturating_sub(*end))
                .collect()
        } else {
            vec![ends.last().copied().unwrap_or(0).saturating_sub(starts[0])]
        };
        eprintln!(
            "{stage} ({kind}): {} attempts, waits before retrying {waits:?} ms",
            starts.len()
        );
        assert!(
            starts.len() <= 3,
            "{stage}: {} attempts, more than the 2 retries a push has",
            starts.len()
        );
        assert!(
            waits.iter().all(|wait| *wait >= 250),
            "{stage} was retried without backing off: waits of {waits:?} ms"
        );
    }

    let restarted = Instant::now();
    let state = lab::up_again().unwrap_or_else(|error| panic!("{error}"));
    assert!(state.all_alive(), "lab up left part of the lab down");
    eprintln!(
        "pipeline lab up brought the registry back in {:.1} s",
        restarted.elapsed().as_secs_f64()
    );
    let again = experiment
        .spawn(&["apply"])
        .wait_at_most(APPLY_LIMIT, "the resumed apply");
    eprintln!(
        "resume: exit {:?} in {:.1} s",
        again.code(),
        again.elapsed.as_secs_f64()
    );
    assert_eq!(again.code(), Some(0), "{}", again.describe());
    assert_complete(&experiment, &expected);
    assert_eq!(experiment.table_rows("images"), Some(1));
}

#[test]
fn a_hanging_run_times_out_is_removed_from_the_host_and_the_others_complete() {
    const HOST: &str = "lab-amd64";
    lab::require_shim();
    let _turn = lab_turn();
    let tree = Tree::new();
    tree.add_fixture("workload-hang");
    let experiment = tree.experiment(&Shape {
        workloads: vec!["hello", "hang"],
        targets: vec!["linux/amd64", "wasm"],
        hosts: vec![HOST],
        scenarios: vec!["cached"],
        repetitions: 1,
        warmup: 0,
        timeouts: vec![("run", "5s")],
        ..Shape::hello("resume-hang")
    });
    let plan = experiment.plan();
    let hang_runs: BTreeSet<String> = plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter(|stage| stage["kind"] == "run" && stage["workload"] == "hang")
        .map(|stage| stage["id"].as_str().expect("an id").to_string())
        .collect();
    assert_eq!(hang_runs.len(), 4, "{hang_runs:?}");
    let repository = format!("{}/resume-hang/", lab::registry_address());
    let before = HostContents::read(HOST);

    let finished = experiment
        .spawn(&["apply"])
        .wait_at_most(APPLY_LIMIT, "the apply with a hanging workload");
    eprintln!(
        "apply with hanging runs: exit {:?} in {:.1} s",
        finished.code(),
        finished.elapsed.as_secs_f64()
    );
    assert_eq!(finished.code(), Some(1), "{}", finished.describe());
    let events = experiment.journal();
    let failed: BTreeSet<String> = events
        .iter()
        .filter(|event| event.event == "failed")
        .map(|event| event.stage.clone())
        .collect();
    assert_eq!(failed, hang_runs, "exactly the hanging runs fail");
    for stage in &hang_runs {
        let started = events
            .iter()
            .find(|e| &e.stage == stage && e.event == "started")
            .expect("the run started");
        let ended = events
            .iter()
            .rfind(|e| &e.stage == stage && e.event == "failed")
            .expect("the run failed");
        let error = ended.error.clone().unwrap_or_default();
        let seconds = ended.at_ms.saturating_sub(started.at_ms) as f64 / 1e3;
        eprintln!("{stage}: failed after {seconds:.1} s: {error}");
        assert!(
            error.to_lowercase().contains("time") || error.contains("did not exit"),
            "{stage} failed for its timeout: {error}"
        );
        assert!(
            (4.5..60.0).contains(&seconds),
            "{stage} should end at its 5 s timeout, not after {seconds:.1} s"
        );
    }
    let hello: Vec<(RowKey, bool)> = experiment
        .result_rows()
        .into_iter()
        .filter(|(key, _)| key.workload == "hello")
        .collect();
    assert!(
        hello.len() == 4 && hello.iter().all(|(_, ok)| *ok),
        "the hello runs complete: {hello:?}"
    );

    // Removed on the host: no container or task of the experiment in
    // either engine, and nothing new anywhere.
    let waited = Instant::now();
    let mut after = HostContents::read(HOST);
    while waited.elapsed() < Duration::from_secs(20)
        && (!after.of_repository(&repository).is_empty() || !after.new_since(&before).is_empty())
    {
        std::thread::sleep(Duration::from_millis(500));
        after = HostContents::read(HOST);
    }
    eprintln!(
        "{HOST} before: {}\n{HOST} after ({:.1} s after the apply): {}",
        before.counts(),
        waited.elapsed().as_secs_f64(),
        after.counts()
    );
    let left = after.of_repository(&repository);
    assert!(
        left.is_empty(),
        "the timed-out containers are still on {HOST}: {left:#?}"
    );
    let new = after.new_since(&before);
    assert!(new.is_empty(), "left on {HOST}: {new:#?}");
}

#[test]
fn five_hundred_runs_leave_no_container_task_snapshot_lease_or_alias() {
    lab::require_shim();
    let _turn = lab_turn();
    let tree = Tree::new();
    // 16 cells (two hosts, native and wasm, two engines, fresh and cached).
    let experiment = tree.experiment(&Shape {
        repetitions: 32,
        warmup: 0,
        ..Shape::hello("resume-leak")
    });
    let expected = experiment.planned_rows();
    assert!(expected.len() >= 500, "{} runs", expected.len());
    let hosts = ["lab-amd64", "lab-arm64"];
    let before: Vec<HostContents> = hosts.iter().map(|host| HostContents::read(host)).collect();
    let finished = experiment
        .spawn(&["apply"])
        .wait_at_most(Duration::from_secs(1800), "the long apply");
    let seconds = finished.elapsed.as_secs_f64();
    eprintln!(
        "{} runs in {seconds:.0} s ({:.2} s a run, two hosts at once): exit {:?}",
        expected.len(),
        seconds / expected.len() as f64,
        finished.code()
    );
    assert_eq!(finished.code(), Some(0), "{}", finished.describe());
    assert_complete(&experiment, &expected);
    let mut problems = Vec::new();
    for (host, before) in hosts.iter().zip(&before) {
        let after = HostContents::read(host);
        eprintln!(
            "{host} before: {}\n{host} after: {}",
            before.counts(),
            after.counts()
        );
        let new = after.new_since(before);
        if !new.is_empty() {
            problems.push(format!("{host}: {new:#?}"));
        }
    }
    assert!(problems.is_empty(), "left behind: {problems:#?}");
}

#[test]
fn apply_only_one_run_keeps_every_row_of_every_table() {
    let clean = clean_run();
    let _turn = lab_turn();
    // A copy, so the clean run's own tables stay as they are for other tests.
    let copy = tempfile::tempdir().expect("temporary folder");
    lab::copy_dir(&clean.experiment.out, copy.path());
    let experiment = Experiment {
        name: clean.experiment.name.clone(),
        spec: clean.experiment.spec.clone(),
        out: copy.path().to_path_buf(),
        logs: copy.path().join("apply-logs"),
    };
    let tables = ["results", "images", "hosts", "summary"];
    let count = |experiment: &Experiment| -> Vec<Option<u64>> {
        tables
            .iter()
            .map(|table| experiment.table_rows(table))
            .collect()
    };
    let before = count(&experiment);
    let plan = experiment.plan();
    let run = plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|stage| stage["kind"] == "run" && stage["warmup"] == false)
        .and_then(|stage| stage["id"].as_str())
        .expect("a measured run")
        .to_string();
    let finished = experiment
        .spawn(&["apply", "--only", &run])
        .wait_at_most(APPLY_LIMIT, "apply --only");
    let after = count(&experiment);
    eprintln!(
        "apply --only {run}: exit {:?}; rows of {tables:?}: {before:?} -> {after:?}",
        finished.code()
    );
    assert_eq!(finished.code(), Some(0), "{}", finished.describe());
    assert!(
        before.iter().all(Option::is_some),
        "the clean run wrote every table: {before:?}"
    );
    assert_eq!(
        after, before,
        "rows of {tables:?} before and after apply --only {run}"
    );
    assert_complete(&experiment, &clean.rows);
}

// ------------------------------------------------------------ engines ----

/// What a lab host's engines hold, as their own clients list it: Docker's
/// containers (through its API) and, per containerd namespace (Docker's
/// `moby` included), containers, tasks, leases, image records and
/// snapshots that back no image.
#[derive(Debug, Default)]
struct HostContents {
    docker_containers: BTreeSet<String>,
    namespaces: BTreeMap<String, NamespaceContents>,
}

#[derive(Debug, Default)]
struct NamespaceContents {
    /// `id image`
    containers: BTreeSet<String>,
    /// `id status`
    tasks: BTreeSet<String>,
    leases: BTreeSet<String>,
    images: BTreeSet<String>,
    snapshots: usize,
    /// Snapshots neither an image's unpacked layers nor their parents.
    loose_snapshots: BTreeSet<String>,
}

impl HostContents {
    fn read(host: &str) -> HostContents {
        let socket = lab::current_containerd_socket(host);
        let mut contents = HostContents {
            docker_containers: docker_containers(&lab::current_docker_socket(host)),
            ..HostContents::default()
        };
        for namespace in ctr(&socket, None, &["namespaces", "ls", "-q"]).lines() {
            let namespace = namespace.trim();
            if !namespace.is_empty() {
                contents.namespaces.insert(
                    namespace.to_string(),
                    NamespaceContents::read(&socket, namespace),
                );
            }
        }
        contents
    }

    fn counts(&self) -> String {
        let mut text = format!("docker containers {}", self.docker_containers.len());
        for (name, ns) in &self.namespaces {
            let aliases = ns.images.iter().filter(|name| name.contains('@')).count();
            let _ = write!(
                text,
                "; containerd {name}: containers {}, tasks {}, leases {}, images {} \
                 ({aliases} aliases), snapshots {} ({} backing no image)",
                ns.containers.len(),
                ns.tasks.len(),
                ns.leases.len(),
                ns.images.len(),
                ns.snapshots,
                ns.loose_snapshots.len()
            );
        }
        text
    }

    /// Containers (either engine) whose image is in `repository`, and the tasks of those.
    fn of_repository(&self, repository: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .docker_containers
            .iter()
            .filter(|line| line.contains(repository))
            .map(|line| format!("docker container {line}"))
            .collect();
        for (name, ns) in &self.namespaces {
            let ids: BTreeSet<&str> = ns
                .containers
                .iter()
                .filter(|line| line.contains(repository))
                .filter_map(|line| line.split_whitespace().next())
                .collect();
            for line in &ns.containers {
                if line.contains(repository) {
                    found.push(format!("containerd {name} container {line}"));
                }
            }
            for line in &ns.tasks {
                if line
                    .split_whitespace()
                    .next()
                    .is_some_and(|id| ids.contains(id))
                {
                    found.push(format!("containerd {name} task {line}"));
                }
            }
        }
        found
    }

    /// What is here and was not in `before`: containers, tasks, leases,
    /// image aliases (image records named `<ref>@<digest>`) and snapshots
    /// backing no image.
    fn new_since(&self, before: &HostContents) -> Vec<String> {
        let mut new: Vec<String> = self
            .docker_containers
            .difference(&before.docker_containers)
            .map(|line| format!("docker container {line}"))
            .collect();
        let empty = NamespaceContents::default();
        for (name, ns) in &self.namespaces {
            let old = before.namespaces.get(name).unwrap_or(&empty);
            let mut added = |what: &str, now: &BTreeSet<String>, then: &BTreeSet<String>| {
                for item in now.difference(then) {
                    new.push(format!("containerd {name} {what} {item}"));
                }
            };
            added("container", &ns.containers, &old.containers);
            added("task", &ns.tasks, &old.tasks);
            added("lease", &ns.leases, &old.leases);
            added("snapshot", &ns.loose_snapshots, &old.loose_snapshots);
            let aliases = |images: &BTreeSet<String>| -> BTreeSet<String> {
                images
                    .iter()
                    .filter(|name| name.contains('@'))
                    .cloned()
                    .collect()
            };
            added("image alias", &aliases(&ns.images), &aliases(&old.images));
        }
        new
    }
}

impl HostContents {
    fn remove_leases_not_in(&self, host: &str, before: &HostContents) {
        let socket = lab::current_containerd_socket(host);
        for (name, ns) in &self.namespaces {
            for lease in &ns.leases {
                if !before
                    .namespaces
                    .get(name)
                    .is_some_and(|old| old.leases.contains(lease))
                {
                    ctr(&socket, Some(name), &["leases", "rm", lease]);
                }
            }
        }
    }
}

impl NamespaceContents {
    fn read(socket: &Path, namespace: &str) -> NamespaceContents {
        let ns = Some(namespace);
        let rows = |args: &[&str]| -> Vec<Vec<String>> {
            ctr(socket, ns, args)
                .lines()
                .skip(1)
                .map(|line| line.split_whitespace().map(str::to_string).collect())
                .filter(|fields: &Vec<String>| !fields.is_empty())
                .collect()
        };
        let containers = rows(&["containers", "ls"])
            .into_iter()
            .map(|fields| fields[..fields.len().min(2)].join(" "))
            .collect();
        let tasks = rows(&["tasks", "ls"])
            .into_iter()
            .map(|fields| format!("{} {}", fields[0], fields.last().expect("a status")))
            .collect();
        let leases = ctr(socket, ns, &["leases", "ls", "-q"])
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect();
        let images = ctr(socket, ns, &["images", "ls", "-q"])
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect();
        // Unpacked layers are referenced from the image config's content
        // labels; their parents come with them.
        let mut backing: Vec<String> = ctr(socket, ns, &["content", "ls"])
            .lines()
            .skip(1)
            .flat_map(|line| {
                line.split([' ', '\t', ','])
                    .filter_map(|part| {
                        part.strip_prefix("containerd.io/gc.ref.snapshot.overlayfs=")
                            .map(str::to_string)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let parents: BTreeMap<String, Option<String>> =
            rows(&["snapshots", "--snapshotter", "overlayfs", "ls"])
                .into_iter()
                .map(|fields| {
                    let parent = (fields.len() == 3).then(|| fields[1].clone());
                    (fields[0].clone(), parent)
                })
                .collect();
        let mut backed = BTreeSet::new();
        while let Some(key) = backing.pop() {
            if backed.insert(key.clone())
                && let Some(Some(parent)) = parents.get(&key)
            {
                backing.push(parent.clone());
            }
        }
        NamespaceContents {
            containers,
            tasks,
            leases,
            images,
            snapshots: parents.len(),
            loose_snapshots: parents
                .keys()
                .filter(|key| !backed.contains(*key))
                .cloned()
                .collect(),
        }
    }
}

/// `ctr` of the deps prefix (scripts/test exports PIPELINE_CTR), else the one on PATH.
fn ctr(socket: &Path, namespace: Option<&str>, args: &[&str]) -> String {
    let program: PathBuf =
        std::env::var_os("PIPELINE_CTR").map_or_else(|| "ctr".into(), Into::into);
    let mut command = Command::new(&program);
    command.arg("--address").arg(socket);
    if let Some(namespace) = namespace {
        command.args(["--namespace", namespace]);
    }
    let output = command
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{} runs: {error}", program.display()));
    assert!(
        output.status.success(),
        "ctr {args:?} in {namespace:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Docker's containers, stopped ones included, as `name image`.
fn docker_containers(socket: &str) -> BTreeSet<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let engine = pipeline::backend::docker::DockerEngine::connect(socket).expect("docker");
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        };
        engine
            .client()
            .list_containers(Some(options))
            .await
            .expect("docker lists its containers")
            .into_iter()
            .map(|container| {
                format!(
                    "{} {}",
                    container.names.unwrap_or_default().join(","),
                    container.image.unwrap_or_default()
                )
            })
            .collect()
    })
}

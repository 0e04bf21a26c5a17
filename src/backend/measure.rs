//! Turning what an engine reports into a measurement: timestamps, the
//! marker the workload printed, and its result line.

use regex::Regex;

use super::{PullReport, RunReport};
use crate::records::RunRecord;
use crate::terms::TimeUnit;

/// The checks a run's output must pass.
#[derive(Debug, Clone)]
pub struct OutputCheck {
    pub marker: Regex,
    pub marker_unit: TimeUnit,
    /// `None`: no line has to match; the exit code alone decides.
    pub result: Option<Regex>,
}

/// Builds the record of one run. `to_main` is the workload's main-start
/// timestamp minus the create request's, both read on the host's clock; the
/// other phases are offsets from the same create request.
pub fn record(
    image_ref: &str,
    image_digest: &str,
    pull: Option<&PullReport>,
    run: &RunReport,
    check: &OutputCheck,
) -> RunRecord {
    let main_ns = check
        .marker
        .captures(&run.stdout)
        .and_then(|captures| captures.name("ts"))
        .and_then(|value| value.as_str().parse::<u64>().ok())
        .map(|value| value.saturating_mul(check.marker_unit.nanos()));
    let result_ok = check
        .result
        .as_ref()
        .is_none_or(|result| run.stdout.lines().any(|line| result.is_match(line)));
    let mut problems = Vec::new();
    if run.exit_code != 0 {
        problems.push(format!("exit code {}", run.exit_code));
    }
    if main_ns.is_none() {
        problems.push("no main-start marker in the output".to_string());
    }
    if let Some(result) = check.result.as_ref().filter(|_| !result_ok) {
        problems.push(format!(
            "no output line matches the result pattern `{}`",
            result.as_str()
        ));
    }
    if !problems.is_empty() && !run.stderr.trim().is_empty() {
        let tail: Vec<&str> = run.stderr.lines().rev().take(3).collect();
        problems.push(format!(
            "stderr: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    // Signed: a clock step between two readings must show, not wrap.
    let since_create =
        |ns: u64| (i128::from(ns) - i128::from(run.create_requested_ns)) as f64 / 1e6;
    RunRecord {
        image_ref: image_ref.to_string(),
        image_digest: image_digest.to_string(),
        pull_ms: pull.map(|pull| pull.duration.as_secs_f64() * 1e3),
        pulled_bytes: pull.map(|pull| pull.bytes_transferred),
        create_ms: run.created_ns.map(since_create),
        start_ms: run.started_ns.map(since_create),
        to_main_ms: main_ns.map(since_create),
        exit_ms: run.task_exited_ns.map(since_create),
        remove_ms: run.removed_ns.map(since_create),
        run_ms: Some(since_create(run.exited_ns)),
        exit_code: Some(run.exit_code),
        ok: problems.is_empty(),
        started_at_ms: Some(run.create_requested_ns / 1_000_000),
        error: (!problems.is_empty()).then(|| problems.join("; ")),
        stderr_tail: last_line(&run.stderr),
        output: crate::records::ProgramOutput::new(&run.stdout, &run.stderr),
    }
}

/// The last line with anything but white space on it.
fn last_line(output: &str) -> Option<String> {
    output
        .lines()
        .rev()
        .map(str::trim_end)
        .find(|line| !line.trim().is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> OutputCheck {
        OutputCheck {
            marker: Regex::new(r"PIPELINE_MAIN_START_NS=(?P<ts>\d+)").unwrap(),
            marker_unit: TimeUnit::Ns,
            result: Some(Regex::new("^PIPELINE_RESULT status=ok").unwrap()),
        }
    }

    /// A run that exited 0 with nothing on stderr and no phases.
    fn report(create_requested_ns: u64, exited_ns: u64, stdout: &str) -> RunReport {
        RunReport {
            create_requested_ns,
            created_ns: None,
            started_ns: None,
            exited_ns,
            task_exited_ns: None,
            removed_ns: None,
            exit_code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn to_main_is_marker_minus_create_on_one_clock() {
        let run = report(
            1_000_000_000,
            1_250_000_000,
            "PIPELINE_MAIN_START_NS=1120000000\nPIPELINE_RESULT status=ok sum=1\n",
        );
        let record = record("r", "d", None, &run, &check());
        assert!(record.ok, "{:?}", record.error);
        assert!((record.to_main_ms.unwrap() - 120.0).abs() < 1e-9);
        assert!((record.run_ms.unwrap() - 250.0).abs() < 1e-9);
        assert_eq!(record.pull_ms, None);
    }

    #[test]
    fn phases_are_offsets_from_the_create_request_in_order() {
        let run = RunReport {
            created_ns: Some(1_030_000_000),
            started_ns: Some(1_045_500_000),
            task_exited_ns: Some(1_200_000_000),
            removed_ns: Some(1_260_250_000),
            ..report(
                1_000_000_000,
                1_201_000_000,
                "PIPELINE_MAIN_START_NS=1120000000\nPIPELINE_RESULT status=ok\n",
            )
        };
        let record = record("r", "d", None, &run, &check());
        let phases = [
            record.create_ms,
            record.start_ms,
            record.to_main_ms,
            record.exit_ms,
            record.remove_ms,
        ]
        .map(Option::unwrap);
        let expected = [30.0, 45.5, 120.0, 200.0, 260.25];
        for (phase, expected) in phases.iter().zip(expected) {
            assert!((phase - expected).abs() < 1e-9, "{phases:?}");
        }
        assert!(phases.is_sorted(), "{phases:?}");
        // run_ms still ends where the agent learned of the exit.
        assert!((record.run_ms.unwrap() - 201.0).abs() < 1e-9);
    }

    #[test]
    fn a_phase_the_engine_did_not_give_stays_empty() {
        let run = RunReport {
            created_ns: Some(1_030_000_000),
            task_exited_ns: Some(1_200_000_000),
            ..report(
                1_000_000_000,
                1_200_000_000,
                "PIPELINE_MAIN_START_NS=1120000000\nPIPELINE_RESULT status=ok\n",
            )
        };
        let record = record("r", "d", None, &run, &check());
        assert!(record.ok, "{:?}", record.error);
        assert_eq!((record.start_ms, record.remove_ms), (None, None));
        assert!((record.create_ms.unwrap() - 30.0).abs() < 1e-9);
        assert!((record.exit_ms.unwrap() - 200.0).abs() < 1e-9);
    }

    #[test]
    fn a_phase_stamped_before_the_create_request_is_negative() {
        let run = RunReport {
            started_ns: Some(999_000_000),
            ..report(
                1_000_000_000,
                1_100_000_000,
                "PIPELINE_MAIN_START_NS=1050000000\n",
            )
        };
        assert!((record("r", "d", None, &run, &check()).start_ms.unwrap() + 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_wrong_result_or_exit_code_is_not_ok_but_kept() {
        let run = RunReport {
            exit_code: 1,
            stderr: "boom\n".into(),
            ..report(
                0,
                1,
                "PIPELINE_MAIN_START_NS=5\nPIPELINE_RESULT status=fail\n",
            )
        };
        let record = record("r", "d", None, &run, &check());
        assert!(!record.ok);
        let error = record.error.unwrap();
        assert!(
            error.contains("exit code 1")
                && error.contains("result pattern")
                && error.contains("boom"),
            "{error}"
        );
        assert!(record.to_main_ms.is_some());
    }

    #[test]
    fn without_a_result_pattern_the_exit_code_decides_and_stderr_is_kept() {
        let mut check = check();
        check.result = None;
        let mut run = RunReport {
            stderr: "warming up\nerror: cannot open input.txt  \n\n".into(),
            ..report(0, 1, "PIPELINE_MAIN_START_NS=5\nno result line here\n")
        };
        let measured = record("r", "d", None, &run, &check);
        assert!(measured.ok, "{:?}", measured.error);
        assert_eq!(
            measured.stderr_tail.as_deref(),
            Some("error: cannot open input.txt")
        );
        run.exit_code = 2;
        let measured = record("r", "d", None, &run, &check);
        assert!(!measured.ok);
        let error = measured.error.unwrap();
        assert!(!error.contains("result pattern"), "{error}");
        run.stderr = String::new();
        assert_eq!(record("r", "d", None, &run, &check).stderr_tail, None);
    }

    #[test]
    fn millisecond_markers_like_the_papers_programs() {
        let mut check = check();
        check.marker = Regex::new(r"Main function started at: (?P<ts>\d+) ms").unwrap();
        check.marker_unit = TimeUnit::Ms;
        let run = report(
            1_000_000_000,
            2_000_000_000,
            "Main function started at: 1300 ms\nPIPELINE_RESULT status=ok\n",
        );
        assert!((record("r", "d", None, &run, &check).to_main_ms.unwrap() - 300.0).abs() < 1e-9);
    }
}

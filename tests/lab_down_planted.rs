//! `pipeline lab down` on a lab folder whose state names processes that are
//! not the lab's: a PID reused by another program, one in the runner's own
//! mount namespace, PID 1, and an anchor that is not the recorded one (with
//! another process in its namespace). No lab is needed: the state is
//! planted, its processes are `sleep`s this test owns, and its host name
//! exists nowhere, so the machine's real lab (if any) is not touched.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pipeline::lab::{ContainerdRelease, EngineSet, HostState, LabHost, LabState, ProcessIdentity};

/// A `sleep` killed when the test ends, whatever `lab down` did to it.
struct Sleeper(Child);

impl Sleeper {
    /// A sleep in the test's own namespaces.
    fn plain() -> Sleeper {
        Sleeper::spawn(Command::new("sleep").arg("300"))
    }

    /// A sleep in a mount namespace of its own, as the lab's processes are.
    fn in_own_mount_namespace() -> Sleeper {
        let sleeper = Sleeper::spawn(Command::new("unshare").args([
            "--mount",
            "--propagation",
            "slave",
            "sleep",
            "300",
        ]));
        let own = mount_namespace("self");
        sleeper.wait_for(|| mount_namespace(&sleeper.pid().to_string()) != own);
        sleeper
    }

    /// A sleep that joins the mount namespace of `other`.
    fn beside(other: &Sleeper) -> Sleeper {
        let target = other.pid().to_string();
        let sleeper = Sleeper::spawn(
            Command::new("nsenter").args(["--target", &target, "--mount", "--", "sleep", "300"]),
        );
        sleeper
            .wait_for(|| mount_namespace(&sleeper.pid().to_string()) == mount_namespace(&target));
        sleeper
    }

    fn spawn(command: &mut Command) -> Sleeper {
        Sleeper(
            command
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| panic!("start {command:?}: {error}")),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn wait_for(&self, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "process {} did not settle in its namespace",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn identity(&self) -> ProcessIdentity {
        ProcessIdentity::observe(self.pid()).expect("identity of a running sleep")
    }

    /// Running (not exited, not a zombie awaiting this test's wait).
    fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mount_namespace(process: &str) -> String {
    std::fs::read_link(format!("/proc/{process}/ns/mnt"))
        .map(|target| target.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn lab_down(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["lab", "down", "--dir"])
        .arg(dir)
        .output()
        .expect("pipeline lab down runs")
}

#[test]
fn lab_down_spares_every_process_it_cannot_prove_its_own() {
    // Recorded with a start time one tick off: the PID was "reused".
    let reused = Sleeper::plain();
    let mut reused_record = reused.identity();
    reused_record.start_ticks += 1;
    // Every fact right, but in the runner's own mount namespace.
    let in_runner_namespace = Sleeper::plain();
    // An anchor that is not the one recorded, and a process beside it.
    let foreign_anchor = Sleeper::in_own_mount_namespace();
    let mut foreign_anchor_record = foreign_anchor.identity();
    foreign_anchor_record.start_ticks += 1;
    let beside_foreign_anchor = Sleeper::beside(&foreign_anchor);
    // The control: a process the planted lab really started would be
    // recorded like this one, and `down` stops it.
    let lab_like = Sleeper::in_own_mount_namespace();
    // PID 1 with facts borrowed from the control: the PID alone must rule it out.
    let pid_1 = ProcessIdentity {
        pid: 1,
        ..lab_like.identity()
    };

    let state = LabState {
        hosts: vec![HostState {
            host: LabHost {
                // No such namespace or cgroup exists: `plab-` names nothing real.
                name: format!("planted{}", std::process::id()),
                address: "192.0.2.1".into(),
                platform: "linux/amd64".into(),
                containerd: ContainerdRelease::default(),
            },
            anchor: foreign_anchor_record.clone(),
            sshd: in_runner_namespace.identity(),
            engines: EngineSet {
                anchor: foreign_anchor_record,
                containerd: pid_1.clone(),
                dockerd: lab_like.identity(),
            },
        }],
        registry: Some(reused_record),
        registry_tls: Some(pid_1),
        registry_auth: None,
        registry_auth_tls: None,
        builder: None,
        config: String::new(),
    };
    let dir = tempfile::tempdir().expect("temporary folder");
    let lab = dir.path().join("lab");
    std::fs::create_dir_all(&lab).expect("lab folder");
    std::fs::write(
        lab.join("state.json"),
        serde_json::to_string_pretty(&state).expect("state as JSON"),
    )
    .expect("plant the state");

    let registered_before = std::fs::read_to_string(pipeline::lab::MACHINE_REGISTRATION).ok();
    let output = lab_down(&lab);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "lab down failed: {stderr}");
    assert_eq!(
        std::fs::read_to_string(pipeline::lab::MACHINE_REGISTRATION).ok(),
        registered_before,
        "a lab down from an unregistered folder leaves the machine's registration as it was"
    );

    let mut sleepers = [
        ("the reused PID", reused),
        ("the process in the runner's namespace", in_runner_namespace),
        ("the foreign anchor", foreign_anchor),
        (
            "the process beside the foreign anchor",
            beside_foreign_anchor,
        ),
    ];
    for (what, sleeper) in &mut sleepers {
        assert!(sleeper.running(), "lab down killed {what}:\n{stderr}");
    }
    let [reused, in_runner_namespace, foreign_anchor, _] = &sleepers.map(|(_, s)| s.pid());
    for expected in [
        format!("spared PID {reused} (recorded as registry): it started at tick"),
        format!(
            "spared PID {in_runner_namespace} (recorded as sshd of planted{}): it shares this runner's mount namespace",
            std::process::id()
        ),
        format!("left alone the processes in the mount namespace of PID {foreign_anchor}"),
        format!("spared PID {foreign_anchor} (recorded as anchor of planted"),
        "spared PID 1 (recorded as registry-tls): PID 1 is never the lab's".to_string(),
        "network namespaces and cgroups are left alone".to_string(),
    ] {
        assert!(
            stderr.contains(&expected),
            "lab down should say {expected:?}:\n{stderr}"
        );
    }

    let mut lab_like = lab_like;
    let started = Instant::now();
    while lab_like.running() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !lab_like.running(),
        "lab down stops a process whose every recorded fact matches:\n{stderr}"
    );
    assert!(
        !lab.join("state.json").exists(),
        "the planted state is removed once handled"
    );
    eprintln!("{stderr}");
}

#[test]
fn lab_down_leaves_an_unreadable_state_file_and_its_processes_alone() {
    let mut sleeper = Sleeper::in_own_mount_namespace();
    let dir = tempfile::tempdir().expect("temporary folder");
    // The shape an older pipeline wrote: bare PIDs, nothing to prove them by.
    let old = format!(
        r#"{{"hosts": [], "registry": {}, "builder": null, "config": ""}}"#,
        sleeper.pid()
    );
    std::fs::write(dir.path().join("state.json"), old).expect("plant the state");
    let output = lab_down(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "lab down failed: {stderr}");
    assert!(sleeper.running(), "lab down killed a bare PID:\n{stderr}");
    assert!(
        stderr.contains("is not a state file this version can read"),
        "{stderr}"
    );
    assert!(dir.path().join("state.json").exists());
}

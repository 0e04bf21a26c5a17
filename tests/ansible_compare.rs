//! Compares the inventory module with the real `ansible-inventory`.
//!
//! ansible-core is installed into a virtualenv the first time it is needed:
//! `$PIPELINE_ANSIBLE_VENV`, or `pipeline-ansible-venv` in the system temp
//! directory. An existing working install is reused; the pip requirement
//! can be changed with `$PIPELINE_ANSIBLE_CORE` (default below). If Python
//! or ansible-core cannot be installed, the tests fail rather than skip.
//!
//! Fixtures live in `tests/fixtures/inventory/`: every `*.yaml`/`*.json` file
//! there, `vars_dirs/inventory.yaml` and the shipped `inventory.yaml` must give exactly Ansible's `--list`
//! output and host order; every file under `bad/` (and `bad/*/inventory.yaml`)
//! must be rejected by Ansible and by us, with the error its first line names:
//! `# expect: LINE:COLUMN: MESSAGE` or `# expect: FILE:LINE:COLUMN: MESSAGE`
//! for an error in another file (relative to the inventory's directory).

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pipeline::inventory::{Inventory, InventoryError};
use serde_json::Value;

/// The version the module's behaviour was checked against.
const DEFAULT_ANSIBLE_CORE: &str = "ansible-core==2.19.14";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory")
}

/// A working ansible-core install plus a scratch directory to run it in.
struct Ansible {
    bin: PathBuf,
    workdir: PathBuf,
}

fn ansible() -> &'static Ansible {
    // A failed install is remembered so the other tests fail fast with it.
    static ANSIBLE: OnceLock<Result<Ansible, String>> = OnceLock::new();
    match ANSIBLE.get_or_init(install_ansible) {
        Ok(ansible) => ansible,
        Err(message) => panic!("{message}"),
    }
}

fn install_ansible() -> Result<Ansible, String> {
    let venv = env::var_os("PIPELINE_ANSIBLE_VENV").map_or_else(
        || env::temp_dir().join("pipeline-ansible-venv"),
        PathBuf::from,
    );
    let bin = venv.join("bin");
    if !runs(&bin.join("ansible-inventory")) {
        if !bin.join("python").exists() {
            let python = env::var("PIPELINE_PYTHON").unwrap_or_else(|_| "python3".to_string());
            run_checked(
                Command::new(&python).arg("-m").arg("venv").arg(&venv),
                "create the ansible virtualenv",
            )?;
        }
        let requirement =
            env::var("PIPELINE_ANSIBLE_CORE").unwrap_or_else(|_| DEFAULT_ANSIBLE_CORE.to_string());
        run_checked(
            Command::new(bin.join("python")).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &requirement,
            ]),
            "install ansible-core",
        )?;
        if !runs(&bin.join("ansible-inventory")) {
            return Err(format!(
                "ansible-inventory does not run after installing it into {}",
                venv.display()
            ));
        }
    }
    // Run Ansible in an empty directory with an empty config so that no
    // ansible.cfg, group_vars/ or environment setting of the caller applies.
    let workdir = env::temp_dir().join("pipeline-ansible-work");
    fs::create_dir_all(&workdir)
        .and_then(|()| fs::write(workdir.join("ansible.cfg"), ""))
        .map_err(|error| format!("cannot prepare {}: {error}", workdir.display()))?;
    Ok(Ansible { bin, workdir })
}

fn runs(program: &Path) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

fn run_checked(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|error| format!("cannot {what}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "cannot {what}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

impl Ansible {
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        for (name, _) in env::vars_os() {
            if name.to_string_lossy().starts_with("ANSIBLE_") {
                command.env_remove(name);
            }
        }
        command
            .current_dir(&self.workdir)
            .env("ANSIBLE_CONFIG", self.workdir.join("ansible.cfg"))
            .env("ANSIBLE_HOME", self.workdir.join("home"))
            .env("ANSIBLE_NOCOLOR", "1")
            // Only the yaml plugin, and fail instead of warning when it
            // rejects a file, so "rejected" is a non-zero exit.
            .env("ANSIBLE_INVENTORY_ENABLED", "yaml")
            .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "1");
        command
    }

    /// `ansible-inventory -i FILE --list`, or Ansible's error output.
    fn list(&self, inventory: &Path) -> Result<Value, String> {
        let output = self
            .command("ansible-inventory")
            .arg("-i")
            .arg(inventory)
            .arg("--list")
            .output()
            .expect("run ansible-inventory");
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(serde_json::from_str(&quote_python_constants(&text))
            .expect("ansible-inventory prints JSON"))
    }

    /// Ansible's `groups` variable: every group's hosts in Ansible's order.
    fn groups(&self, inventory: &Path) -> Value {
        let output = self
            .command("ansible")
            .args(["localhost", "-m", "debug", "-a", "var=groups", "-i"])
            .arg(inventory)
            .output()
            .expect("run ansible");
        let text = String::from_utf8_lossy(&output.stdout);
        let json = text.split_once("=>").map_or_else(
            || {
                panic!(
                    "unexpected output from ansible: {text}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            },
            |(_, json)| json,
        );
        let result: Value = serde_json::from_str(json).expect("ansible debug prints JSON");
        result["groups"].clone()
    }
}

/// Python's `json.dumps` writes non-finite floats as bare `Infinity`,
/// `-Infinity` and `NaN`; the module spells them as strings.
fn quote_python_constants(text: &str) -> String {
    let mut result = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(character) = rest.chars().next() {
        if in_string {
            in_string = character != '"' || escaped;
            escaped = character == '\\' && !escaped;
        } else if character == '"' {
            in_string = true;
        } else if let Some(word) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|word| rest.starts_with(word))
        {
            result.push('"');
            result.push_str(word);
            result.push('"');
            rest = &rest[word.len()..];
            continue;
        }
        result.push(character);
        rest = &rest[character.len_utf8()..];
    }
    result
}

/// The inventories that Ansible accepts.
fn good_fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(fixtures())
        .expect("fixtures directory")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|extension| extension == "yaml" || extension == "json")
        })
        .collect();
    files.push(fixtures().join("vars_dirs/inventory.yaml"));
    // The inventory the project ships is checked like any fixture.
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory.yaml"));
    files.sort();
    assert!(
        files.len() >= 6,
        "expected at least six fixtures, found {files:?}"
    );
    files
}

/// The inventories that Ansible rejects.
fn bad_fixtures() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(fixtures().join("bad")).expect("bad fixtures directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.push(path.join("inventory.yaml"));
        } else if path
            .extension()
            .is_some_and(|extension| extension == "yaml")
        {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `Value` equality ignores key order; `serde_json` keeps insertion order
/// here, so comparing the text also checks Ansible's (sorted) key order.
fn same_including_key_order(a: &Value, b: &Value) -> bool {
    serde_json::to_string(a).ok() == serde_json::to_string(b).ok()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[test]
fn list_output_matches_ansible_inventory() {
    let ansible = ansible();
    let mut failures = Vec::new();
    for fixture in good_fixtures() {
        let ours = match Inventory::load(&fixture) {
            Ok(inventory) => inventory.to_ansible_list(),
            Err(error) => {
                failures.push(format!("{}: we reject it: {error}", fixture.display()));
                continue;
            }
        };
        match ansible.list(&fixture) {
            Ok(theirs) if same_including_key_order(&theirs, &ours) => {}
            Ok(theirs) => failures.push(format!(
                "{}: output differs\n--- ansible-inventory --list\n{}\n--- to_ansible_list()\n{}",
                fixture.display(),
                pretty(&theirs),
                pretty(&ours)
            )),
            Err(stderr) => failures.push(format!(
                "{}: ansible rejects it:\n{stderr}",
                fixture.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn host_order_matches_ansible_groups() {
    let ansible = ansible();
    let mut failures = Vec::new();
    for fixture in good_fixtures() {
        let inventory = Inventory::load(&fixture).unwrap_or_else(|error| panic!("{error}"));
        let groups = ansible.groups(&fixture);
        let Value::Object(groups) = groups else {
            panic!("{}: ansible printed no groups", fixture.display());
        };
        let theirs: BTreeSet<&str> = groups.keys().map(String::as_str).collect();
        let ours: BTreeSet<&str> = inventory.group_names().into_iter().collect();
        if theirs != ours {
            failures.push(format!(
                "{}: groups differ: ansible {theirs:?}, ours {ours:?}",
                fixture.display()
            ));
        }
        for (group, hosts) in &groups {
            let expected: Vec<&str> = hosts
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let actual = inventory.resolve(group).unwrap_or_default();
            if expected != actual {
                failures.push(format!(
                    "{}: hosts of `{group}`: ansible {expected:?}, ours {actual:?}",
                    fixture.display()
                ));
            }
        }
        let all: Vec<&str> = groups["all"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if inventory.host_names() != all {
            failures.push(format!(
                "{}: host_names() {:?}, ansible {all:?}",
                fixture.display(),
                inventory.host_names()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `(file relative to the inventory's directory, line, column, message)`.
fn expected_error(fixture: &Path) -> (PathBuf, usize, usize, String) {
    let source = fs::read_to_string(fixture).expect("read bad fixture");
    let expectation = source
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", fixture.display()));
    let mut parts = expectation.splitn(4, ':');
    let first = parts.next().unwrap_or_default();
    let (file, line, column) = if first.chars().all(|c| c.is_ascii_digit()) {
        (
            fixture.file_name().map(PathBuf::from).unwrap_or_default(),
            first,
            parts.next().unwrap_or_default(),
        )
    } else {
        (
            PathBuf::from(first),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        )
    };
    let message = parts.collect::<Vec<_>>().join(":");
    let parse = |number: &str| {
        number
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{}: bad expectation", fixture.display()))
    };
    (file, parse(line), parse(column), message.trim().to_string())
}

#[test]
fn bad_inventories_are_rejected_like_ansible() {
    let ansible = ansible();
    let mut failures = Vec::new();
    let fixtures = bad_fixtures();
    assert!(
        fixtures.len() >= 10,
        "expected bad fixtures, found {fixtures:?}"
    );
    for fixture in fixtures {
        let (file, line, column, message) = expected_error(&fixture);
        let directory = fixture.parent().unwrap_or(Path::new("."));
        match Inventory::load(&fixture) {
            Ok(_) => failures.push(format!(
                "{}: accepted, expected `{message}`",
                fixture.display()
            )),
            Err(error) => {
                let actual = (
                    error.path().to_path_buf(),
                    error.location(),
                    error.message(),
                );
                let expected = (directory.join(&file), Some((line, column)), message.clone());
                if actual != expected {
                    failures.push(format!(
                        "{}: expected {expected:?}\n  got {actual:?}",
                        fixture.display()
                    ));
                }
                assert!(!matches!(error, InventoryError::Io { .. }), "{error}");
            }
        }
        if let Ok(listed) = ansible.list(&fixture) {
            failures.push(format!(
                "{}: ansible accepts it:\n{}",
                fixture.display(),
                pretty(&listed)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

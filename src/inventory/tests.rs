//! Unit tests for the inventory module. The behaviour they pin down was
//! observed with `ansible-inventory` (ansible-core 2.19); the comparison
//! against a real Ansible install lives in `tests/ansible_compare.rs`.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Inventory, InventoryError};

fn parse(source: &str) -> Inventory {
    Inventory::parse(source, Path::new("inventory.yaml")).unwrap_or_else(|error| panic!("{error}"))
}

fn parse_error(source: &str) -> InventoryError {
    match Inventory::parse(source, Path::new("inventory.yaml")) {
        Ok(inventory) => panic!("expected an error, got {:?}", inventory.to_ansible_list()),
        Err(error) => error,
    }
}

/// `(line, column, message)` of an error.
fn located(error: &InventoryError) -> (usize, usize, String) {
    let (line, column) = error.location().unwrap_or((0, 0));
    (line, column, error.message())
}

fn vars(inventory: &Inventory, host: &str) -> Value {
    Value::Object(
        inventory
            .host_vars(host)
            .cloned()
            .unwrap_or_else(|| panic!("no host {host}")),
    )
}

const LAB: &str = "\
all:
  vars:
    ansible_user: bench
    pipeline_engines: [docker, containerd]
  hosts:
    localhost:
      ansible_connection: local
  children:
    arm:
      vars:
        pipeline_platform: linux/arm64
      hosts:
        pi5:
          ansible_host: 192.168.50.21
          ansible_port: 2222
        orin:
    x86:
      hosts:
        nuc:
          ansible_user: root
";

#[test]
fn parses_groups_hosts_and_vars() {
    let inventory = parse(LAB);
    assert_eq!(inventory.host_names(), ["localhost", "pi5", "orin", "nuc"]);
    assert_eq!(inventory.group_names(), ["all", "ungrouped", "arm", "x86"]);
    assert!(inventory.is_group("arm") && inventory.is_group("ungrouped"));
    assert!(inventory.is_host("pi5") && !inventory.is_host("arm"));
    assert_eq!(
        vars(&inventory, "pi5"),
        json!({
            "ansible_user": "bench",
            "ansible_host": "192.168.50.21",
            "ansible_port": 2222,
            "pipeline_engines": ["docker", "containerd"],
            "pipeline_platform": "linux/arm64",
        })
    );
    assert_eq!(vars(&inventory, "nuc")["ansible_user"], json!("root"));
    assert_eq!(inventory.host_groups("pi5"), Some(vec!["arm"]));
    assert_eq!(inventory.host_groups("localhost"), Some(vec!["ungrouped"]));
}

#[test]
fn resolves_groups_recursively_and_single_hosts() {
    let inventory = parse(
        "all:\n  children:\n    dc:\n      hosts:\n        d1:\n      children:\n        rack:\n          hosts:\n            r1:\n            d1:\n",
    );
    assert_eq!(inventory.resolve("dc"), Some(vec!["d1", "r1"]));
    assert_eq!(inventory.resolve("rack"), Some(vec!["r1", "d1"]));
    assert_eq!(inventory.resolve("r1"), Some(vec!["r1"]));
    assert_eq!(inventory.resolve("all"), Some(vec!["d1", "r1"]));
    assert_eq!(inventory.resolve("ungrouped"), Some(vec![]));
    assert_eq!(inventory.resolve("nope"), None);
    assert_eq!(
        inventory.resolve("localhost"),
        None,
        "no implicit localhost"
    );
}

#[test]
fn a_group_wins_over_a_host_with_the_same_name() {
    let inventory = parse("web:\n  hosts:\n    web:\n      x: 1\n    h2:\n");
    assert_eq!(inventory.resolve("web"), Some(vec!["web", "h2"]));
    // Ansible sets vars on the group when a host shares its name.
    assert_eq!(vars(&inventory, "h2"), json!({"x": 1}));
    assert!(
        inventory
            .warnings()
            .iter()
            .any(|warning| warning.message.contains("both group and host"))
    );
}

#[test]
fn list_output_has_ansible_shape() {
    let inventory = parse(
        "all:\n  hosts:\n    lone:\n  children:\n    web:\n      hosts:\n        w1:\n          a: 1\n    empty:\n",
    );
    assert_eq!(
        inventory.to_ansible_list(),
        json!({
            "_meta": {"hostvars": {"w1": {"a": 1}}, "profile": "inventory_legacy"},
            "all": {"children": ["ungrouped", "web", "empty"]},
            "ungrouped": {"hosts": ["lone"]},
            "web": {"hosts": ["w1"]},
        })
    );
}

#[test]
fn output_keys_are_sorted_like_ansible() {
    let inventory = parse(
        "zeta:\n  hosts:\n    b:\n      z: 1\n      a: {y: 1, x: 2}\nalpha:\n  hosts:\n    a:\n      k: 1\n",
    );
    let list = inventory.to_ansible_list();
    let keys = |value: &Value| {
        value
            .as_object()
            .map(|map| map.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(keys(&list), ["_meta", "all", "alpha", "zeta"]);
    assert_eq!(keys(&list["_meta"]["hostvars"]), ["a", "b"]);
    assert_eq!(keys(&list["_meta"]["hostvars"]["b"]), ["a", "z"]);
    assert_eq!(keys(&list["_meta"]["hostvars"]["b"]["a"]), ["x", "y"]);
    let vars = inventory
        .host_vars("b")
        .map(|vars| vars.keys().cloned().collect::<Vec<_>>());
    assert_eq!(vars, Some(vec!["a".to_string(), "z".to_string()]));
}

#[test]
fn ungrouped_follows_reconcile_rules() {
    let inventory = parse(
        "zfirst:\n  hosts:\n    z1:\nall:\n  hosts:\n    lone:\n    a1:\n  children:\n    web:\n      hosts:\n        a1:\nungrouped:\n  hosts:\n    a1:\n    u2:\nmid:\n  children:\n    web:\n",
    );
    let list = inventory.to_ansible_list();
    // Explicitly ungrouped hosts stay, hosts with another group leave, hosts
    // only in `all` join at the end.
    assert_eq!(list["ungrouped"], json!({"hosts": ["u2", "lone"]}));
    // Groups join `all` when first used as its child, parentless ones last.
    assert_eq!(
        list["all"],
        json!({"children": ["ungrouped", "web", "zfirst", "mid"]})
    );
}

#[test]
fn string_shorthands_and_null_sections() {
    let inventory =
        parse("all:\n  hosts: web1\n  vars: flag\n  children: kids\nkids:\n  hosts:\n  vars:\n");
    assert_eq!(inventory.resolve("ungrouped"), Some(vec!["web1"]));
    assert_eq!(vars(&inventory, "web1"), json!({"flag": null}));
    assert!(inventory.is_group("kids"));
}

#[test]
fn duplicate_keys_keep_the_last_definition() {
    let inventory = parse(
        "all:\n  children:\n    g1:\n      hosts:\n        h1:\n    g1:\n      hosts:\n        h2:\n",
    );
    assert_eq!(inventory.resolve("g1"), Some(vec!["h2"]));
    assert!(!inventory.is_host("h1"));
    assert_eq!(inventory.warnings()[0].line, 6);
}

#[test]
fn unknown_group_keys_are_warnings() {
    let inventory = parse("all:\n  hosts:\n    a:\n  foo:\n    x: 1\n  bar: 3\n");
    let messages: Vec<(usize, usize, &str)> = inventory
        .warnings()
        .iter()
        .map(|warning| (warning.line, warning.column, warning.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        [
            (
                4,
                3,
                "skipping unexpected key `foo` in group `all`; only `vars`, `children` and `hosts` are valid"
            ),
            (
                6,
                3,
                "skipping key `bar` in group `all` as it is not a mapping (an integer)"
            ),
        ]
    );
}

#[test]
fn host_ranges_expand_with_ports() {
    let inventory = parse(
        "all:\n  hosts:\n    web[01:03]:\n      role: web\n    db-[a:c]:2222:\n    s[1:10:3]:\n    \"[fe80::[1:2]]:22\":\n",
    );
    assert_eq!(
        inventory.host_names(),
        [
            "web01", "web02", "web03", "db-a", "db-b", "db-c", "s1", "s4", "s7", "s10", "fe80::1",
            "fe80::2"
        ]
    );
    assert_eq!(vars(&inventory, "web02"), json!({"role": "web"}));
    assert_eq!(vars(&inventory, "db-b"), json!({"ansible_port": 2222}));
    assert_eq!(inventory.host_location("web03"), Some((3, 5)));
}

#[test]
fn group_vars_apply_by_depth_then_priority_then_name() {
    let inventory = parse(
        "\
all:
  vars: {level: all}
  children:
    parent:
      vars: {level: parent}
      children:
        child:
          vars: {level: child}
          hosts:
            deep:
            own:
              level: host
    high:
      vars: {level: high, ansible_group_priority: 5}
      hosts: {deep: , tie: , prio: }
    low:
      vars: {level: low}
      hosts: {prio: }
    zulu:
      vars: {level: zulu}
      hosts: {tie: }
    alpha:
      vars: {level: alpha}
      hosts: {tie: }
",
    );
    assert_eq!(
        vars(&inventory, "deep")["level"],
        json!("child"),
        "deeper group wins"
    );
    assert_eq!(
        vars(&inventory, "own")["level"],
        json!("host"),
        "host vars win"
    );
    assert_eq!(
        vars(&inventory, "prio")["level"],
        json!("high"),
        "higher priority wins at equal depth"
    );
    assert_eq!(vars(&inventory, "tie")["level"], json!("high"));
    let inventory = parse(
        "zulu:\n  vars: {level: zulu}\n  hosts: {tie: }\nalpha:\n  vars: {level: alpha}\n  hosts: {tie: }\n",
    );
    assert_eq!(
        vars(&inventory, "tie")["level"],
        json!("zulu"),
        "name sorting last wins"
    );
    assert!(
        !vars(&inventory, "tie")
            .as_object()
            .is_some_and(|vars| vars.contains_key("ansible_group_priority"))
    );
}

#[test]
fn later_definitions_replace_whole_values() {
    let inventory = parse(
        "all:\n  vars:\n    settings: {a: 1, b: 2}\n  hosts:\n    h:\n      x: 1\n      nested: {k: 1, j: 2}\n  children:\n    g:\n      vars:\n        settings: {c: 3}\n      hosts:\n        h:\n          x: 2\n          nested: {k: 3}\n",
    );
    assert_eq!(
        vars(&inventory, "h"),
        json!({"settings": {"c": 3}, "x": 2, "nested": {"k": 3}})
    );
}

#[test]
fn locations_point_at_first_definition() {
    let inventory = parse(LAB);
    assert_eq!(inventory.host_location("localhost"), Some((6, 5)));
    assert_eq!(inventory.host_location("pi5"), Some((13, 9)));
    assert_eq!(inventory.group_location("arm"), Some((9, 5)));
    assert_eq!(inventory.group_location("all"), Some((1, 1)));
    assert_eq!(inventory.group_location("ungrouped"), None);
    assert_eq!(inventory.host_location("missing"), None);
}

#[test]
fn structural_errors_carry_line_and_column() {
    let cases: &[(&str, (usize, usize, &str))] = &[
        (
            "all:\n  hosts:\n    - a\n",
            (
                2,
                3,
                "group `all` has `hosts` as a list; expected a mapping of host names",
            ),
        ),
        (
            "all:\n  children:\n    web:\n      vars: [1]\n",
            (
                4,
                7,
                "group `web` has `vars` as a list; expected a mapping of variable names",
            ),
        ),
        (
            "all:\n  children: [web]\n",
            (
                2,
                3,
                "group `all` has `children` as a list; expected a mapping of group names",
            ),
        ),
        (
            "all:\n  hosts:\n    a: [1, 2]\n",
            (
                3,
                8,
                "host `a` has vars as a list; expected a mapping of variable names",
            ),
        ),
        (
            "all:\n  hosts:\n    1.5:\n",
            (
                3,
                5,
                "host pattern `1.5` must be a string, found a float; quote integers and floats",
            ),
        ),
        (
            "123:\n  hosts:\n",
            (1, 1, "group name `123` must be a string, found an integer"),
        ),
        (
            "all:\n  children:\n    web: 3\n",
            (3, 5, "`web` is not a known host nor group"),
        ),
        (
            "a:\n  children:\n    a:\n",
            (3, 5, "group `a` cannot be a child of itself"),
        ),
        (
            "plugin: aws_ec2\n",
            (
                1,
                1,
                "this is an inventory plugin configuration (it has a `plugin` key), not a yaml inventory",
            ),
        ),
        (
            "- a\n",
            (
                1,
                1,
                "an inventory must be a mapping of group names, found a list",
            ),
        ),
        ("{}\n", (1, 1, "the inventory file is empty")),
        (
            "g:\n  vars:\n    ansible_group_priority: ~\n",
            (
                3,
                29,
                "`ansible_group_priority` of group `g` must be an integer, found null `null`",
            ),
        ),
        (
            "all:\n  hosts:\n    web[1:3:0]:\n",
            (
                3,
                5,
                "invalid host pattern `web[1:3:0]`: range() arg 3 must not be zero",
            ),
        ),
        (
            "all:\n  hosts:\n    h:\n      v: !!int abc\n",
            (4, 10, "invalid yaml: invalid literal for an integer: `abc`"),
        ),
        (
            "all:\n  hosts:\n    h:\n      v: =\n",
            (
                4,
                10,
                "invalid yaml: could not determine a constructor for the tag `tag:yaml.org,2002:value`",
            ),
        ),
        (
            "all:\n  hosts:\n    h: {a: [}\n",
            (3, 12, "invalid yaml: mismatched bracket '[' closed by '}'"),
        ),
    ];
    for (source, (line, column, message)) in cases {
        let error = parse_error(source);
        assert_eq!(
            located(&error),
            (*line, *column, message.to_string()),
            "{source:?}"
        );
        assert_eq!(error.path(), Path::new("inventory.yaml"));
        assert_eq!(
            error.to_string(),
            format!("inventory.yaml:{line}:{column}: {message}")
        );
    }
}

#[test]
fn accepted_oddities() {
    // Ansible reads a file without any YAML document with its ini plugin, as
    // an empty inventory.
    let inventory = parse("# nothing here\n");
    assert_eq!(
        inventory.to_ansible_list()["all"],
        json!({"children": ["ungrouped"]})
    );
    // A definition that is not a mapping is skipped with a warning.
    let inventory = parse("web: 3\nall:\n  hosts:\n    a:\n");
    assert!(!inventory.is_group("web"));
    // Numeric priorities are truncated like Python's int().
    let inventory = parse("g:\n  vars:\n    ansible_group_priority: \"2\"\n  hosts:\n    h:\n");
    assert!(
        inventory
            .host_vars("h")
            .is_some_and(serde_json::Map::is_empty)
    );
    // Falsy host vars count as none.
    let inventory = parse("all:\n  hosts:\n    a: \"\"\n    b: 0\n    c: []\n");
    assert_eq!(inventory.host_names(), ["a", "b", "c"]);
}

/// A scratch directory with the given files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, files: &[(&str, &str)]) -> Scratch {
        let root =
            std::env::temp_dir().join(format!("inventory-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (path, content) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap_or(&root)).expect("create scratch directory");
            fs::write(&path, content).expect("write scratch file");
        }
        Scratch(root)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn load_reads_group_vars_and_host_vars() {
    let scratch = Scratch::new(
        "vars",
        &[
            (
                "inventory.yaml",
                "all:\n  vars: {v: inv_all, w: inv_all}\n  children:\n    web:\n      vars: {v: inv_web, x: inv_web}\n      hosts:\n        web1:\n          h: inv_host\n        web2:\n",
            ),
            ("group_vars/all.yml", "v: file_all\n"),
            ("group_vars/web", "x: file_web_noext\n"),
            ("group_vars/web.yml", "x: ignored\n"),
            ("host_vars/web1/a.yml", "h: dir_a\nz: a\n"),
            ("host_vars/web1/b.yaml", "z: b\n"),
            ("host_vars/web1/c.txt", "z: c\n"),
            ("host_vars/web1/sub/d", "z: d\n"),
            ("host_vars/web2.json", "{\"n\": 1e2}\n"),
        ],
    );
    let inventory = Inventory::load(&scratch.0.join("inventory.yaml"))
        .unwrap_or_else(|error| panic!("{error}"));
    // group_vars/all overrides the inventory's `web` vars: all inventory
    // group vars come before any group_vars file.
    assert_eq!(
        vars(&inventory, "web1"),
        json!({"v": "file_all", "w": "inv_all", "x": "file_web_noext", "h": "dir_a", "z": "d"})
    );
    assert_eq!(vars(&inventory, "web2")["n"], json!(100.0));
    // parse() ignores vars directories.
    let source = fs::read_to_string(scratch.0.join("inventory.yaml")).unwrap_or_default();
    let parsed = Inventory::parse(&source, &scratch.0.join("inventory.yaml"))
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(vars(&parsed, "web1")["v"], json!("inv_web"));
}

#[test]
fn load_reports_bad_vars_files_and_missing_inventories() {
    let scratch = Scratch::new(
        "badvars",
        &[
            ("inventory.yaml", "all:\n  hosts:\n    h1:\n"),
            ("host_vars/h1.yml", "a: 1\n  b: [\n"),
        ],
    );
    let error = Inventory::load(&scratch.0.join("inventory.yaml"))
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert_eq!(error.path(), scratch.0.join("host_vars/h1.yml"));
    assert!(
        matches!(error, InventoryError::Yaml { line: 2, .. }),
        "{error}"
    );

    let missing = scratch.0.join("missing.yaml");
    let error = Inventory::load(&missing)
        .err()
        .unwrap_or_else(|| panic!("expected an error"));
    assert!(matches!(&error, InventoryError::Io { path, .. } if path == &missing));
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read `{}`", missing.display()))
    );
}

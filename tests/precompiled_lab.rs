//! The precompiled variant on the lab: the C hello module (from
//! tests/fixtures/language-c) compiled ahead of time for amd64 and arm64 by
//! target/release/wasm-precompile, pushed per platform in one index, and run
//! by the wasmtime shim via Docker and containerd beside the rootfs `.wasm`.
//! lab-arm64 loads the aarch64 module in the wasmtime runner of its own
//! architecture, under qemu. (A module of another architecture is refused
//! with a reason: shim/src/engine.rs's tests.)

#[path = "common/lab.rs"]
mod lab;
#[path = "common/pushed.rs"]
mod pushed;
#[path = "common/python.rs"]
mod python;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use pushed::{elf_machine, image_files, names, skopeo_raw};

const EXPERIMENT: &str = "hello-precompiled";

/// The project's templates and workloads plus the C language, in a temporary tree.
fn tree() -> &'static lab::Tree {
    static TREE: OnceLock<lab::Tree> = OnceLock::new();
    TREE.get_or_init(|| lab::Tree::copy(&["templates", "workloads"], "tests/fixtures/language-c"))
}

fn precompiler() -> PathBuf {
    let path = lab::repository().join("target/release/wasm-precompile");
    assert!(
        path.is_file(),
        "no {}: build it with `cargo build --release --locked -p containerd-shim-wasmtime \
         --features precompiler --bin wasm-precompile` (scripts/test does)",
        path.display()
    );
    path
}

fn pipeline(args: &[&str]) -> Output {
    lab::lab();
    let tree = tree();
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args)
        .arg(tree.root.join(format!("experiments/{EXPERIMENT}.yaml")))
        .arg("-i")
        .arg(lab::repository().join(".lab/inventory.yaml"))
        .arg("--out")
        .arg(tree.root.join("out"))
        .arg("--precompiler")
        .arg(precompiler())
        .current_dir(lab::repository())
        .output()
        .expect("pipeline runs")
}

fn out_dir() -> PathBuf {
    tree().root.join("out").join(EXPERIMENT)
}

/// Builds and pushes once for every test of this file.
fn images_applied() {
    static OUTPUT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = OUTPUT.get_or_init(|| {
        let output = pipeline(&["apply", "--only", "index"]);
        if output.status.success() {
            Ok(())
        } else {
            Err(lab::describe_output(&output))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// The whole experiment.
fn measured() {
    static OUTPUT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = OUTPUT.get_or_init(|| {
        images_applied();
        let output = pipeline(&["apply"]);
        if output.status.success() {
            Ok(())
        } else {
            Err(lab::describe_output(&output))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

#[test]
fn the_index_has_a_precompiled_module_per_platform() {
    images_applied();
    let registry = lab::registry_address();
    let index = skopeo_raw(&format!("{registry}/{EXPERIMENT}/hello-c:precompiled"));
    let mut platforms: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|entry| {
            format!(
                "{}/{}",
                entry["platform"]["os"].as_str().unwrap(),
                entry["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{index}");
    for (slug, machine) in [("linux-amd64", 0x3e_u16), ("linux-arm64", 0xb7)] {
        let reference = format!("{registry}/{EXPERIMENT}/hello-c:precompiled-{slug}");
        let files = image_files(&reference);
        // FROM scratch: the compiled module is all there is.
        assert_eq!(names(&files), ["hello.cwasm"], "{reference}");
        let module = &files[0];
        assert_eq!(elf_machine(&module.bytes), Some(machine), "{reference}");
        // An executable ELF would be started as a Linux process, not by wasmtime.
        assert_eq!(
            module.mode & 0o111,
            0,
            "{reference}: mode {:o}",
            module.mode
        );
    }
}

#[test]
fn each_host_runs_the_module_precompiled_for_its_architecture() {
    measured();
    let rows = python::query_parquet(
        &out_dir().join("results.parquet"),
        "SELECT variant, target, host, engine, scenario, runtime, count(*), bool_and(ok), \
         max(stderr_tail), min(to_main_ms) FROM t GROUP BY ALL ORDER BY ALL",
    );
    let rows = rows.as_array().expect("rows");
    // rootfs wasm: 2 engines; precompiled: 2 hosts × 2 engines × 2 scenarios.
    assert_eq!(rows.len(), 2 + 8, "{rows:#?}");
    for row in rows {
        assert_eq!(row[5], "wasmtime", "{row}");
        assert_eq!(row[6], 2, "two measured repetitions: {row}");
        assert_eq!(row[7], true, "every run ok: {row}");
        assert!(row[9].as_f64().unwrap() > 0.0, "{row}");
        if row[0] == "precompiled" {
            let platform = if row[2] == "lab-arm64" {
                "linux/arm64"
            } else {
                "linux/amd64"
            };
            assert_eq!(row[1], platform, "{row}");
        }
    }
}

/// Where the two kinds of module start, for the record (`--nocapture`).
#[test]
fn prints_rootfs_and_precompiled_start_up() {
    measured();
    let summary = python::query_parquet(
        &out_dir().join("results.parquet"),
        "SELECT variant, engine, scenario, median(to_main_ms), median(run_ms) FROM t \
         WHERE ok GROUP BY ALL ORDER BY ALL",
    );
    println!("{summary:#}");
}

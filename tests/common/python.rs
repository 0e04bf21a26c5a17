//! pyarrow and DuckDB, from PyPI, as independent readers of the Parquet
//! tables. They are installed once into a virtualenv:
//! `$PIPELINE_PARQUET_VENV`, or `pipeline-parquet-venv` in the temp folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const REQUIREMENTS: [&str; 2] = ["pyarrow==21.0.0", "duckdb==1.4.1"];

fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = std::env::var_os("PIPELINE_PARQUET_VENV").map_or_else(
            || std::env::temp_dir().join("pipeline-parquet-venv"),
            PathBuf::from,
        );
        let python = venv.join("bin/python");
        let ready = |python: &Path| {
            Command::new(python)
                .args(["-c", "import pyarrow, duckdb"])
                .output()
                .is_ok_and(|output| output.status.success())
        };
        if !ready(&python) {
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 runs");
            assert!(status.success(), "creating {}", venv.display());
            let output = Command::new(&python)
                .args(["-m", "pip", "install", "--quiet"])
                .args(REQUIREMENTS)
                .output()
                .expect("pip runs");
            assert!(
                output.status.success(),
                "pip install {:?} failed:\n{}",
                REQUIREMENTS,
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(ready(&python), "pyarrow and duckdb import after install");
        }
        python
    })
}

fn run(script: &str, args: &[&str]) -> Value {
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python prints JSON")
}

/// Rows of `sql` run by DuckDB over the file as table `t`, as JSON arrays.
pub fn query_parquet(path: &Path, sql: &str) -> Value {
    run(
        "import sys, json, duckdb\n\
         con = duckdb.connect()\n\
         path = sys.argv[1].replace(\"'\", \"''\")\n\
         con.execute(f\"CREATE VIEW t AS SELECT * FROM read_parquet('{path}')\")\n\
         rows = con.execute(sys.argv[2]).fetchall()\n\
         print(json.dumps([list(row) for row in rows], default=str))",
        &[&path.to_string_lossy(), sql],
    )
}

/// Column name to pyarrow type name, as pyarrow reads the file's schema.
pub fn parquet_types(path: &Path) -> Value {
    run(
        "import sys, json, pyarrow.parquet as pq\n\
         schema = pq.read_schema(sys.argv[1])\n\
         print(json.dumps({field.name: str(field.type) for field in schema}))",
        &[&path.to_string_lossy()],
    )
}

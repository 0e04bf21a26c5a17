//! A small project tree in a temporary folder: two languages, two workloads,
//! an inventory with an amd64 and an arm64 host.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pipeline::plan::{Plan, PlanError, PlanOptions, load_plan};

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub const INVENTORY: &str = "\
all:
  vars:
    pipeline_registry: registry.test:5000
    pipeline_runtimes: [runc, wasmtime]
  children:
    cloud:
      hosts:
        amd:
          pipeline_platform: linux/amd64
          pipeline_engines: [docker, containerd]
    edge:
      hosts:
        arm:
          ansible_host: 10.0.0.2
          pipeline_platform: linux/arm64
          pipeline_engines: [docker]
";

/// A valid spec; tests edit it line by line so positions stay easy to read.
pub const SPEC: &str = "\
experiment: demo
workloads:
  - name: hello
    languages: [alpha]
targets: [linux/amd64, wasm]
runs:
  - hosts: [all]
    engines: [docker]
";

impl Project {
    pub fn new() -> Project {
        let project = Project {
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        for language in ["alpha", "beta"] {
            for template in ["optimized", "unoptimized", "wasm"] {
                project.write(
                    &format!("templates/{language}/{template}.Dockerfile.j2"),
                    &format!("FROM {{{{ vars.builder_image }}}}\n# {language} {template} for {{{{ target.platform }}}}\n"),
                );
            }
            project.write(
                &format!("templates/{language}/defaults.yaml"),
                "builder_image: scratch\n",
            );
        }
        for workload in ["hello", "other"] {
            project.write(
                &format!("workloads/{workload}/workload.yaml"),
                &format!("binary: {workload}\nargs: [\"/data/in.txt\"]\nresult: '^PIPELINE_RESULT status=ok'\n"),
            );
            project.write(&format!("workloads/{workload}/data/in.txt"), "input\n");
            for language in ["alpha", "beta"] {
                project.write(
                    &format!("workloads/{workload}/{language}/main.src"),
                    &format!("{workload} in {language}\n"),
                );
            }
        }
        project.write("inventory.yaml", INVENTORY);
        project
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create folder");
        std::fs::write(path, text).expect("write file");
    }

    pub fn spec_path(&self) -> PathBuf {
        self.path("experiments/demo.yaml")
    }

    pub fn plan(&self, spec: &str) -> Result<Plan, PlanError> {
        self.write("experiments/demo.yaml", spec);
        load_plan(&self.spec_path(), &PlanOptions::default())
    }

    /// `line:col: message` of every diagnostic, for exact assertions.
    pub fn errors(&self, spec: &str) -> Vec<String> {
        match self.plan(spec) {
            Ok(_) => Vec::new(),
            Err(error) => describe(&error, self.dir.path()),
        }
    }
}

pub fn describe(error: &PlanError, root: &Path) -> Vec<String> {
    let diagnostics = match error {
        PlanError::Invalid(diagnostics)
        | PlanError::Spec(pipeline::spec::SpecError::Invalid(diagnostics)) => diagnostics,
        other => return vec![other.to_string()],
    };
    diagnostics
        .iter()
        .map(|diagnostic| match &diagnostic.location {
            Some(location) => {
                let file = location.path.strip_prefix(root).unwrap_or(&location.path);
                format!(
                    "{}:{}:{}: {}",
                    file.display(),
                    location.line,
                    location.column,
                    diagnostic.message
                )
            }
            None => diagnostic.message.clone(),
        })
        .collect()
}

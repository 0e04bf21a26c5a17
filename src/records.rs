//! What the pipeline learns about images, hosts and runs: plain records that
//! the backends produce, the events carry and the tables are written from.

use serde::{Deserialize, Serialize};

/// A built, pushed or base image.
#[cfg(feature = "runner")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub image_ref: String,
    /// Content digest of the image manifest in the registry (empty before push).
    pub digest: String,
    pub platform: String,
    /// Uncompressed size as the building engine reports it.
    pub host_size_bytes: u64,
    /// Compressed size in the registry: config plus layers (0 before push).
    pub oci_size_bytes: u64,
    /// Toolchain versions found in a base image, by package.
    #[serde(default)]
    pub toolchain: std::collections::BTreeMap<String, String>,
}

/// A workload's dependencies, fetched for its offline builds.
#[cfg(feature = "runner")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorRecord {
    /// The cached tree, named by the vendor stage's fingerprint.
    pub dir: std::path::PathBuf,
    pub files: u64,
    pub bytes: u64,
    /// Found in the cache: no registry was asked.
    pub reused: bool,
}

/// What a prepare stage learned about a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HostFacts {
    pub host: String,
    pub architecture: String,
    pub cpu_model: String,
    pub cores: u32,
    pub kernel: String,
    pub docker_version: Option<String>,
    pub containerd_version: Option<String>,
    pub shims: Vec<String>,
    /// `<shim> <version>` of every shim but runc's that answered.
    #[serde(default)]
    pub shim_versions: Vec<String>,
    /// `<shim> <machine>`: the architecture each shim but runc's was built
    /// for, from its ELF header (`aarch64` on an emulated arm64 host that
    /// runs the shim built for it).
    #[serde(default)]
    pub shim_machines: Vec<String>,
    /// The machine wasm modules are compiled for and run on there: that of
    /// the `wasmtime-runner` beside the wasmtime shim (on the lab's emulated
    /// hosts: run under qemu), else of the shim itself; `None` without one.
    #[serde(default)]
    pub wasm_machine: Option<String>,
    /// The target triple of the agent that ran there.
    #[serde(default)]
    pub agent_target: String,
    /// The host's CPU is emulated (the lab's arm64 and riscv64 hosts).
    #[serde(default)]
    pub emulated: bool,
    /// The CPU model qemu emulates there.
    #[serde(default)]
    pub emulated_cpu: Option<String>,
}

/// One container run's measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunRecord {
    pub image_ref: String,
    pub image_digest: String,
    /// Pull time in ms; `None` when the scenario skipped the pull.
    pub pull_ms: Option<f64>,
    pub pulled_bytes: Option<u64>,
    /// The create request answered. This and the other phases (`start_ms`,
    /// `exit_ms`, `remove_ms`) are ms from the same origin as `to_main_ms`, on
    /// the host's clock; `None` where the engine could not tell, and in
    /// records written before phases were measured.
    #[serde(default)]
    pub create_ms: Option<f64>,
    /// The task started.
    #[serde(default)]
    pub start_ms: Option<f64>,
    /// From the create request to the workload's main, both on the host's clock.
    pub to_main_ms: Option<f64>,
    /// The task exited.
    #[serde(default)]
    pub exit_ms: Option<f64>,
    /// The container and its task were removed.
    #[serde(default)]
    pub remove_ms: Option<f64>,
    /// Whole container run, to exit.
    pub run_ms: Option<f64>,
    pub exit_code: Option<i64>,
    /// The result line matched the workload's pattern and the exit code was 0.
    pub ok: bool,
    /// Start of the run, ms since the epoch on the host's clock.
    pub started_at_ms: Option<u64>,
    pub error: Option<String>,
    /// The last line the program wrote to stderr, so that a program that
    /// exits 0 after printing an error shows in the tables.
    #[serde(default)]
    pub stderr_tail: Option<String>,
    /// What the program printed, for the stage log. The runner takes it out
    /// before the record reaches the journal, so the tables never hold it.
    #[serde(default, skip_serializing_if = "ProgramOutput::is_empty")]
    pub output: ProgramOutput,
}

#[cfg(feature = "runner")]
impl RunRecord {
    /// The value of one measured phase.
    pub fn metric(&self, metric: crate::spec::RunMetric) -> Option<f64> {
        use crate::spec::RunMetric;
        match metric {
            RunMetric::PullMs => self.pull_ms,
            RunMetric::CreateMs => self.create_ms,
            RunMetric::StartMs => self.start_ms,
            RunMetric::ToMainMs => self.to_main_ms,
            RunMetric::ExitMs => self.exit_ms,
            RunMetric::RemoveMs => self.remove_ms,
            RunMetric::RunMs => self.run_ms,
        }
    }
}

/// A program's output, each stream cut to its last
/// [`ProgramOutput::MAX_BYTES`] bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramOutput {
    pub stdout: String,
    pub stderr: String,
}

impl ProgramOutput {
    /// Enough for any report a benchmark prints, small enough for the wire.
    pub const MAX_BYTES: usize = 64 * 1024;

    pub fn new(stdout: &str, stderr: &str) -> ProgramOutput {
        ProgramOutput {
            stdout: last_bytes(stdout, Self::MAX_BYTES).to_string(),
            stderr: last_bytes(stderr, Self::MAX_BYTES).to_string(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stdout.is_empty() && self.stderr.is_empty()
    }
}

/// The end of `text`, at most `max` bytes, cut at a character boundary.
fn last_bytes(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_recorded_before_phases_were_measured_reads_without_them() {
        let journaled = r#"{"image_ref":"r","image_digest":"d","pull_ms":null,
            "pulled_bytes":null,"to_main_ms":12.5,"run_ms":20.0,"exit_code":0,
            "ok":true,"started_at_ms":1,"error":null}"#;
        let record: RunRecord = serde_json::from_str(journaled).unwrap();
        assert_eq!(record.to_main_ms, Some(12.5));
        assert_eq!(
            [
                record.create_ms,
                record.start_ms,
                record.exit_ms,
                record.remove_ms
            ],
            [None; 4]
        );
    }
}

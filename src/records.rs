//! What the pipeline learns about images, hosts and runs: plain records that
//! the backends produce, the events carry and the tables are written from.

use serde::{Deserialize, Serialize};

/// A built, pushed or base image.
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
    /// From the create request to the workload's main, both on the host's clock.
    pub to_main_ms: Option<f64>,
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

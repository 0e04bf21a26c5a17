//! The resolved experiment: validated, with every default applied and every
//! name looked up. The stage graph is expanded from this.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::fingerprint::Fingerprint;
use super::target::Target;
use crate::inventory::HostSettings;
use crate::results::stats;
use crate::spec::{Engine, MarkerSpec, RunMetric, RunOrder, RuntimeKind, Scenario};

#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub description: Option<String>,
    pub spec_path: PathBuf,
    pub project_root: PathBuf,
    pub inventory_path: PathBuf,
    pub registry: String,
    /// In dependency order: a base comes after the base it is built from.
    pub bases: Vec<BaseImage>,
    pub images: Vec<Image>,
    pub hosts: Vec<HostSettings>,
    /// Fingerprint of each host's resolved variables, by index in `hosts`.
    pub host_fingerprints: Vec<Fingerprint>,
    pub cells: Vec<Cell>,
    /// Per workload, in spec order: its images in the plan and the ones left out.
    pub workload_images: Vec<WorkloadImages>,
    pub measure: Measure,
    pub limits: StageLimits,
    /// The wasm precompiler the builds of [`Image::needs_precompiler`] run.
    pub precompiler: Precompiler,
}

/// `wasm-precompile`, built from the shim's crate, so the code it makes is
/// what the hosts' shim loads. Its contents are part of the build
/// fingerprint of every image that runs it.
#[derive(Debug, Clone)]
pub struct Precompiler {
    pub path: PathBuf,
    /// `None` when no file is there (or no image needs it): such a build fails.
    pub digest: Option<Fingerprint>,
}

impl Precompiler {
    /// Where `cargo build --release -p containerd-shim-wasmtime --features
    /// precompiler` leaves it, inside the project.
    pub const DEFAULT_PATH: &'static str = "target/release/wasm-precompile";
}

/// A base image the pipeline builds from Debian packages.
#[derive(Debug, Clone, Serialize)]
pub struct BaseImage {
    pub name: String,
    pub platform: super::target::Platform,
    pub from: Option<String>,
    pub debootstrap: Option<Debootstrap>,
    pub packages: Vec<String>,
    pub run: Vec<String>,
    pub image_ref: String,
    pub fingerprint: Fingerprint,
}

#[derive(Debug, Clone, Serialize)]
pub struct Debootstrap {
    pub suite: String,
    pub variant: Option<String>,
    pub mirror: Option<String>,
}

/// How one workload runs and how its output is checked.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadRun {
    pub binary: String,
    pub args: Vec<String>,
    /// `None`: the exit code alone decides whether a run is ok.
    pub result_pattern: Option<String>,
    pub marker: MarkerSpec,
    /// Absolute and normalised: `/`, `/app`.
    pub workdir: String,
    pub data: Vec<DataCopy>,
    pub env: Vec<EnvVar>,
}

/// Part of the workload's `data/` copied into the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataCopy {
    /// Path in the build context: `data/` or inside it; a folder ends with `/`.
    pub from: String,
    /// Absolute path in the image; a folder ends with `/`.
    pub to: String,
}

/// An environment variable set in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// How many images one workload has in the plan, and why.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadImages {
    pub workload: String,
    /// Planned because some cell runs them.
    pub run: usize,
    /// Planned although nothing runs them: no run block measures the
    /// workload, so its images are built for the images table alone.
    pub unrun: usize,
    /// Paths (`<workload>/<language>/<variant>/<target>`) of the images of
    /// its languages, variants and targets that no run needs, left out.
    pub not_planned: Vec<String>,
}

impl WorkloadImages {
    pub fn planned(&self) -> usize {
        self.run + self.unrun
    }
}

/// One container image: a workload in a language and variant, for one target.
#[derive(Debug, Clone)]
pub struct Image {
    pub workload: String,
    pub language: String,
    pub variant: String,
    pub target: Target,
    /// Which of a run block's runtimes runs it: always `Wasm` for the `wasm`
    /// target; the variant's `runtime` for native targets.
    pub runtime: RuntimeKind,
    /// Template path relative to the project root.
    pub template: PathBuf,
    /// Template variables after every override, base references replaced by image refs.
    pub vars: Map<String, Value>,
    /// Names of the bases the build needs present.
    pub bases: Vec<String>,
    pub run: WorkloadRun,
    /// `registry/repository`, without tag.
    pub repository: String,
    /// Tag of the multi-platform index this image belongs to.
    pub index_tag: String,
    /// Hash of `templates/<language>/`.
    pub template_tree: Fingerprint,
    /// Hash of the workload's sources for this language, its data and its manifest.
    pub source_tree: Fingerprint,
    /// The workload has a `data/` folder, which the build context carries.
    pub has_data: bool,
    /// How the sources' dependencies are fetched before the build; `None`
    /// when the language does not vendor or the sources have no lockfile.
    pub vendor: Option<VendorSource>,
}

/// The dependencies of one workload's sources in one language, fetched on
/// the runner into a tree the offline build reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VendorSource {
    /// Program and arguments, from `templates/<language>/vendor.yaml`.
    pub command: Vec<String>,
    /// The folder the command leaves in the sources.
    pub output: String,
    /// The sources, relative to the project root: `workloads/<name>/<language>`.
    pub sources: PathBuf,
    /// Hash of the command, the output folder and the key files' names and
    /// contents: the vendored tree is cached under it.
    pub key: Fingerprint,
}

impl Image {
    /// A native-platform image run by the wasm runtime holds a module compiled
    /// ahead of time for that platform, by the precompiler in its build context.
    pub fn needs_precompiler(&self) -> bool {
        self.runtime == RuntimeKind::Wasm && !self.target.is_wasm()
    }

    /// `<workload>/<language>/<variant>`: the part of stage ids an index shares.
    pub fn group_path(&self) -> String {
        format!("{}/{}/{}", self.workload, self.language, self.variant)
    }

    pub fn path(&self) -> String {
        format!("{}/{}", self.group_path(), self.target.slug())
    }

    /// The per-platform tag, so each platform image can be pulled on its own.
    pub fn image_ref(&self) -> String {
        format!(
            "{}:{}-{}",
            self.repository,
            self.index_tag,
            self.target.slug()
        )
    }

    pub fn index_ref(&self) -> String {
        format!("{}:{}", self.repository, self.index_tag)
    }

    /// What the Dockerfile template sees of this image, except the facts
    /// only a run knows (the render fingerprint, toolchain versions). The
    /// render fingerprint hashes exactly this, so any change to what a
    /// template can print changes it.
    pub fn template_inputs(&self, experiment: &str) -> Value {
        let platform = self.target.oci_platform();
        serde_json::json!({
            "experiment": experiment,
            "workload": {
                "name": self.workload,
                "binary": self.run.binary,
                "args": self.run.args,
                "has_data": self.has_data,
                "vendored": self.vendor.is_some(),
                "workdir": self.run.workdir,
                "data": self.run.data,
                "env": self.run.env,
            },
            "language": self.language,
            "variant": self.variant,
            "target": {
                "platform": platform.to_string(),
                "os": platform.os,
                "arch": platform.architecture,
                "arch_variant": platform.variant,
                "slug": self.target.slug(),
                "kind": self.target.kind(),
                "wasm": self.target.is_wasm(),
            },
            "vars": Value::Object(self.vars.clone()),
        })
    }
}

/// One measured combination, repeated `measure.repetitions` times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub image: usize,
    pub host: usize,
    pub engine: Engine,
    pub runtime: String,
    pub scenario: Scenario,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Measure {
    /// Measured runs per cell; with `until`, the most a cell gets.
    pub repetitions: u32,
    pub warmup: u32,
    pub order: RunOrder,
    pub seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Until>,
}

/// When a cell has been measured often enough: once the distribution-free
/// 95% interval of the median of `metric` (order statistics, see
/// [`stats::median_order_interval`]) is narrower than `ci_width` times the
/// median, after at least `min` ok runs. It depends on the values alone, not
/// on their order, so a resume that finds the same runs decides the same.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Until {
    pub metric: RunMetric,
    /// A fraction of the median: 0.05 is 5%.
    pub ci_width: f64,
    pub min: u32,
}

impl Until {
    /// Whether these values (of `metric`, from a cell's ok runs) meet the target.
    pub fn met(&self, values: &[f64]) -> bool {
        let finite = values.iter().filter(|v| v.is_finite()).count();
        finite >= self.min as usize
            && self.narrow_enough(stats::median(values), stats::median_order_interval(values))
    }

    /// How many of these values, taken in the order they were measured,
    /// first met the target; `None` if they never did.
    pub fn runs_to_target(&self, values: &[f64]) -> Option<usize> {
        let mut sorted: Vec<f64> = Vec::with_capacity(values.len());
        for (index, value) in values.iter().enumerate() {
            if value.is_finite() {
                let at = sorted.partition_point(|seen| seen.total_cmp(value).is_lt());
                sorted.insert(at, *value);
            }
            if self.met_sorted(&sorted) {
                return Some(index + 1);
            }
        }
        None
    }

    fn met_sorted(&self, sorted: &[f64]) -> bool {
        sorted.len() >= self.min as usize
            && self.narrow_enough(
                stats::median(sorted),
                stats::median_order_interval_of_sorted(sorted),
            )
    }

    fn narrow_enough(&self, median: Option<f64>, interval: Option<stats::Interval>) -> bool {
        match (median, interval) {
            // A width relative to a median of zero or below means nothing.
            (Some(median), Some((low, high))) => {
                median > 0.0 && high - low <= self.ci_width * median
            }
            _ => false,
        }
    }
}

/// Timeout and retry count of one stage kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageLimit {
    pub timeout: Option<Duration>,
    pub retries: u32,
}

/// Limits for every stage kind, indexed by [`super::StageKind::index`].
#[derive(Debug, Clone, Default)]
pub struct StageLimits(pub [StageLimit; super::StageKind::ALL.len()]);

impl StageLimits {
    pub fn get(&self, kind: super::StageKind) -> StageLimit {
        self.0[kind.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTIL: Until = Until {
        metric: RunMetric::ToMainMs,
        ci_width: 0.05,
        min: 6,
    };

    #[test]
    fn until_is_met_once_the_order_interval_is_narrow_enough() {
        // Six values: the interval is the smallest to the largest, 99 to
        // 102, 3 wide against a median of 100.5, under 5 % of it (5.025).
        let close = [100.0, 101.0, 99.0, 102.0, 100.0, 101.0];
        assert!(UNTIL.met(&close));
        assert!(!UNTIL.met(&close[..5]), "fewer than `min` runs");
        // 99 to 106: 7 wide, over 5 % of the median (5.025).
        assert!(!UNTIL.met(&[100.0, 101.0, 99.0, 106.0, 100.0, 101.0]));
        assert!(
            !UNTIL.met(&[0.0; 8]),
            "a median of zero has no relative width"
        );
    }

    #[test]
    fn runs_to_target_counts_in_the_order_measured() {
        // Up to eight runs the interval is the smallest to the largest value,
        // the outlier; from nine on it is the 2nd to the 8th, without it.
        let mut values = vec![100.0, 300.0, 101.0, 99.0, 100.0, 101.0, 100.0, 101.0];
        assert_eq!(UNTIL.runs_to_target(&values), None);
        values.extend([100.0, 100.0]);
        assert_eq!(UNTIL.runs_to_target(&values), Some(9));
        assert!(UNTIL.met(&values));
        let min = Until { min: 8, ..UNTIL };
        assert_eq!(min.runs_to_target(&[100.0; 12]), Some(8));
    }
}

//! The experiment spec: serde types that mirror the YAML, with source spans.
//!
//! Nothing here has behaviour beyond loading; resolution and validation live
//! in [`crate::plan`]. Every key is documented in docs/spec.md.

mod load;

use indexmap::IndexMap;
use serde::Deserialize;
pub use serde_saphyr::Spanned;

pub use crate::terms::{Engine, Scenario, TimeUnit};

pub use load::{
    SpecError, load_spec, parse_spec, parse_template_defaults, parse_vendor_spec,
    parse_workload_manifest, read_diagnostic,
};

/// A value with the place in the file it came from.
pub type Located<T> = Spanned<T>;

/// One `experiments/<name>.yaml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Names the experiment's results folder `out/<experiment>/`.
    pub experiment: Located<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Folder holding `templates/` and `workloads/`, relative to the spec file;
    /// by default the nearest ancestor of the spec file that has both.
    #[serde(default)]
    pub project_root: Option<Located<String>>,
    /// Inventory file, relative to the spec file; default `inventory.yaml` at the project root.
    #[serde(default)]
    pub inventory: Option<Located<String>>,
    #[serde(default)]
    pub registry: RegistrySpec,
    pub workloads: Located<Vec<WorkloadSpec>>,
    /// Build variants by name; a null value takes every default.
    #[serde(default)]
    pub variants: Option<Located<IndexMap<Located<String>, Option<VariantSpec>>>>,
    /// OCI platform strings (`os/arch[/variant]`) and `wasm`.
    pub targets: Located<Vec<Located<String>>>,
    /// Template variables for every language and variant.
    #[serde(default)]
    pub vars: VarMap,
    /// Per-language settings; languages themselves come from `workloads`.
    #[serde(default)]
    pub languages: IndexMap<Located<String>, Option<LanguageSpec>>,
    /// Base images the pipeline builds itself, by name.
    #[serde(default)]
    pub bases: IndexMap<Located<String>, BaseSpec>,
    pub runs: Located<Vec<RunSpec>>,
    #[serde(default)]
    pub measure: MeasureSpec,
    #[serde(default)]
    pub timeouts: PerStageKind<Located<String>>,
    #[serde(default)]
    pub retries: PerStageKind<Located<u32>>,
}

/// Template variables: arbitrary YAML values by name.
pub type VarMap = IndexMap<Located<String>, Located<serde_json::Value>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySpec {
    /// `host:port` the runner pushes to and hosts pull from; by default the
    /// inventory's `pipeline_registry` variable.
    #[serde(default)]
    pub address: Option<Located<String>>,
    /// Repository path; `{experiment}`, `{workload}`, `{language}` and `{variant}` are replaced.
    #[serde(default)]
    pub repository: Option<Located<String>>,
    /// Tag of the multi-platform index; the same placeholders apply.
    #[serde(default)]
    pub tag: Option<Located<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub name: Located<String>,
    pub languages: Located<Vec<Located<String>>>,
    /// Arguments after the binary; default from `workloads/<name>/workload.yaml`.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// Replaces `result` of `workload.yaml`: other arguments or data give
    /// another result line.
    #[serde(default)]
    pub result: Option<Located<String>>,
    #[serde(default)]
    pub marker: Option<Located<MarkerSpec>>,
    /// Narrows the experiment's `targets` for this workload.
    #[serde(default)]
    pub targets: Option<Located<Vec<Located<String>>>>,
    /// Overrides `workdir` of `workload.yaml`.
    #[serde(default)]
    pub workdir: Option<Located<String>>,
    /// Overrides `data` of `workload.yaml` as a whole.
    #[serde(default)]
    pub data: Option<Located<Vec<DataPlacement>>>,
    /// Added to `env` of `workload.yaml`; a variable named in both takes this value.
    #[serde(default)]
    pub env: EnvMap,
}

/// Environment variables by name, in the order written.
pub type EnvMap = IndexMap<Located<String>, Located<String>>;

/// One file or folder of the workload's `data/`, and where it lands in the image.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPlacement {
    /// Relative to the workload's folder: `data/` or a path inside it.
    pub from: Located<String>,
    /// Absolute, or relative to the working directory.
    pub to: Located<String>,
}

/// How to find the workload's main-start timestamp in its output.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MarkerSpec {
    /// A regex with a named capture `ts`.
    pub pattern: String,
    pub unit: TimeUnit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    #[serde(default)]
    pub vars: VarMap,
    #[serde(default)]
    pub templates: TemplateNames,
    /// Which of a run block's `runtimes` runs this variant's images of
    /// native targets; default `native`.
    #[serde(default)]
    pub runtime: Option<Located<RuntimeKind>>,
    /// Narrows the experiment's `targets` for this variant.
    #[serde(default)]
    pub targets: Option<Located<Vec<Located<String>>>>,
}

/// Which kind of runtime runs an image: the run block's `runtimes.native`
/// (runc) or `runtimes.wasm` (the wasmtime shim).
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    #[default]
    Native,
    Wasm,
}

/// Template file names inside `templates/<language>/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateNames {
    /// Default `<variant>.Dockerfile.j2`.
    #[serde(default)]
    pub native: Option<Located<String>>,
    /// Default `wasm.Dockerfile.j2`.
    #[serde(default)]
    pub wasm: Option<Located<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageSpec {
    #[serde(default)]
    pub vars: VarMap,
    /// Per-variant overrides for this language only.
    #[serde(default)]
    pub variants: IndexMap<Located<String>, LanguageVariantSpec>,
    #[serde(default)]
    pub marker: Option<Located<MarkerSpec>>,
    /// Narrows the experiment's `targets` for this language, in every workload.
    #[serde(default)]
    pub targets: Option<Located<Vec<Located<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageVariantSpec {
    #[serde(default)]
    pub vars: VarMap,
}

/// A base image built from Debian packages, either a fresh root file system
/// or another base with more packages on top.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseSpec {
    /// The platform of the root file system; default `linux/amd64`.
    #[serde(default)]
    pub platform: Option<Located<String>>,
    #[serde(default)]
    pub from: Option<Located<String>>,
    #[serde(default)]
    pub debootstrap: Option<Located<DebootstrapSpec>>,
    /// Debian packages, `name[:arch][=version]`; apt gets them as arguments.
    #[serde(default)]
    pub packages: Vec<Located<String>>,
    /// Shell commands run in the image after the packages are installed:
    /// the user's own shell, run as written.
    #[serde(default)]
    pub run: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebootstrapSpec {
    pub suite: Located<String>,
    #[serde(default)]
    pub variant: Option<Located<String>>,
    /// Mirror URL; default the one the runner's apt uses.
    #[serde(default)]
    pub mirror: Option<Located<String>>,
}

/// One block of cells: which hosts run which images, how.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    #[serde(default)]
    pub name: Option<Located<String>>,
    /// Inventory host or group names.
    pub hosts: Located<Vec<Located<String>>>,
    pub engines: Located<Vec<Located<Engine>>>,
    #[serde(default)]
    pub scenarios: Option<Located<Vec<Located<Scenario>>>>,
    /// Restrict this block to some targets, workloads, languages or variants.
    #[serde(default)]
    pub targets: Option<Vec<Located<String>>>,
    #[serde(default)]
    pub workloads: Option<Vec<Located<String>>>,
    #[serde(default)]
    pub languages: Option<Vec<Located<String>>>,
    #[serde(default)]
    pub variants: Option<Vec<Located<String>>>,
    #[serde(default)]
    pub runtimes: RuntimeChoice,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeChoice {
    /// Default `runc`.
    #[serde(default)]
    pub native: Option<Located<String>>,
    /// Default `wasmtime`.
    #[serde(default)]
    pub wasm: Option<Located<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    #[serde(default)]
    pub repetitions: Option<Located<u32>>,
    #[serde(default)]
    pub warmup: Option<Located<u32>>,
    #[serde(default)]
    pub order: Option<RunOrder>,
    /// Seed for `shuffled`; default derived from the experiment name.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop repeating a cell once its measurements are precise enough;
    /// `repetitions` is then the most a cell gets.
    #[serde(default)]
    pub until: Option<Located<UntilSpec>>,
}

/// `measure.until`: how narrow a cell's interval of the median must get.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UntilSpec {
    /// Width of the 95% interval of the median, as a fraction of the median.
    pub ci_width: Located<f64>,
    /// Measured runs before the width is looked at.
    #[serde(default)]
    pub min: Option<Located<u32>>,
    /// Default `to_main_ms`.
    #[serde(default)]
    pub metric: Option<RunMetric>,
}

/// A measured phase of a run, as named in the results tables.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunMetric {
    PullMs,
    CreateMs,
    StartMs,
    ToMainMs,
    ExitMs,
    RemoveMs,
    RunMs,
}

impl RunMetric {
    /// In the order the phases happen.
    pub const ALL: [RunMetric; 7] = [
        RunMetric::PullMs,
        RunMetric::CreateMs,
        RunMetric::StartMs,
        RunMetric::ToMainMs,
        RunMetric::ExitMs,
        RunMetric::RemoveMs,
        RunMetric::RunMs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunMetric::PullMs => "pull_ms",
            RunMetric::CreateMs => "create_ms",
            RunMetric::StartMs => "start_ms",
            RunMetric::ToMainMs => "to_main_ms",
            RunMetric::ExitMs => "exit_ms",
            RunMetric::RemoveMs => "remove_ms",
            RunMetric::RunMs => "run_ms",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOrder {
    /// Repetition-major: every cell's first run, then every cell's second, ...
    Interleaved,
    /// A seeded permutation of all runs on a host.
    Shuffled,
}

/// A setting per stage kind; unknown kinds are rejected by serde.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "T: Deserialize<'de>"))]
pub struct PerStageKind<T> {
    #[serde(default)]
    pub base: Option<T>,
    #[serde(default)]
    pub vendor: Option<T>,
    #[serde(default)]
    pub render: Option<T>,
    #[serde(default)]
    pub build: Option<T>,
    #[serde(default)]
    pub push: Option<T>,
    #[serde(default)]
    pub index: Option<T>,
    #[serde(default, rename = "prepare-host")]
    pub prepare_host: Option<T>,
    #[serde(default)]
    pub pull: Option<T>,
    #[serde(default)]
    pub run: Option<T>,
    #[serde(default)]
    pub aggregate: Option<T>,
}

impl<T> Default for PerStageKind<T> {
    fn default() -> Self {
        Self {
            base: None,
            vendor: None,
            render: None,
            build: None,
            push: None,
            index: None,
            prepare_host: None,
            pull: None,
            run: None,
            aggregate: None,
        }
    }
}

/// `workloads/<name>/workload.yaml`: how a workload runs, whatever the language.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadManifest {
    #[serde(default)]
    pub description: Option<String>,
    /// The executable every language builds.
    pub binary: Located<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Regex some line of the output must match; without it the exit code alone decides.
    #[serde(default)]
    pub result: Option<Located<String>>,
    #[serde(default)]
    pub marker: Option<Located<MarkerSpec>>,
    /// The program's working directory in the image; default `/`.
    #[serde(default)]
    pub workdir: Option<Located<String>>,
    /// Where `data/` or parts of it land; default `data/` at `/data`.
    #[serde(default)]
    pub data: Option<Located<Vec<DataPlacement>>>,
    /// Environment variables set in the image.
    #[serde(default)]
    pub env: EnvMap,
}

/// `templates/<language>/vendor.yaml`: how a language's dependencies are
/// fetched on the runner, which reaches the package registries, so that its
/// builds stay offline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorSpec {
    /// Program and arguments, run in a scratch copy of the workload's sources.
    pub command: Located<Vec<String>>,
    /// Files of the sources the vendored tree depends on. A workload that
    /// lacks any of them (no lockfile: nothing to fetch) is not vendored.
    pub keys: Located<Vec<String>>,
    /// The folder the command leaves in the sources; the build context
    /// carries it as `vendor/`.
    pub output: Located<String>,
}

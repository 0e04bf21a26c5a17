//! Command-line definitions only; `main.rs` carries them out.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run container benchmarking experiments declaratively: native
/// multi-platform images against WebAssembly, via Docker and containerd.
#[derive(Debug, Parser)]
#[command(
    name = "pipeline",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Exit codes: 0 all done, 1 some stages failed, 2 invalid input or usage, 130 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail about what is done.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// When to colour output; `NO_COLOR` in the environment means never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an experiment and its inventory; print every problem found.
    Validate(SpecArgs),
    /// Show the stages an apply would run, with their dependencies and fingerprints.
    Plan(PlanArgs),
    /// Print the Dockerfiles the plan's render stages produce.
    Render(RenderArgs),
    /// Run an experiment: bases, builds, pushes, hosts, measured runs and
    /// the aggregate. A second apply resumes: what is done and unchanged is
    /// reused, what failed or changed runs again.
    Apply(ApplyArgs),
    /// Show how far the applies of an experiment have come, from its journal.
    Status(StatusArgs),
    /// Write the paper's figures and tables from an experiment's results:
    /// out/<experiment>/report/ with index.html, SVG and PNG figures, CSV and
    /// Markdown tables.
    Report(ReportArgs),
    /// Show an Ansible inventory as this tool resolves it.
    Inventory(InventoryArgs),
    /// The local lab: hosts in network namespaces with their own engines, and a registry.
    Lab(LabArgs),
    /// Runs on a measured host: one JSON request on stdin, one JSON answer on stdout.
    #[command(hide = true)]
    Agent,
}

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: LabAction,
    /// The lab's folder.
    #[arg(long, global = true, env = "PIPELINE_LAB_DIR", default_value = ".lab")]
    pub dir: PathBuf,
    /// Where scripts/install-deps put docker 26 and containerd 1.7 (default ~/.cache/pipeline/deps).
    #[arg(long, global = true, env = "PIPELINE_DEPS")]
    pub deps: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Create the hosts and the registry; does nothing if they are already up.
    Up {
        /// How many hosts; the first three are amd64, arm64 (emulated) and riscv64 (emulated).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=30))]
        hosts: u8,
        /// The wasmtime containerd shim to put on every host's PATH.
        #[arg(long, default_value = "target/release/containerd-shim-wasmtime-v1")]
        shim: PathBuf,
        /// The wasmtime runners of the emulated hosts, `ARCH/wasmtime-runner`
        /// (`scripts/build-shims --runner` builds them): with them, wasm on
        /// those hosts is compiled and run under qemu, as on their boards.
        #[arg(long, default_value = "target/shims")]
        wasm_runners: PathBuf,
        /// The containerd release the hosts run: `2` (forky's 2.1, the
        /// default) or `1.7` (trixie's), for every host, or `HOST=RELEASE`
        /// for one. Repeatable; a host's own setting wins.
        #[arg(long, value_name = "[HOST=]RELEASE")]
        containerd: Vec<String>,
    },
    /// Stop everything the lab started and remove its namespaces.
    Down,
    /// Show what is running.
    Status,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Only stages whose id starts with this, such as
    /// `render/face-detection/cpp/optimized/linux-arm64` or `build/sorting/rust`.
    #[arg(long, value_name = "ID")]
    pub stage: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Run only the stages whose id starts with PREFIX, or whose kind is
    /// PREFIX, and the stages they need (`--only index` builds and pushes
    /// every image without measuring). Repeatable.
    #[arg(long, value_name = "PREFIX")]
    pub only: Vec<String>,
    /// Run only what failed in earlier applies, what that blocked, and what
    /// they need.
    #[arg(long)]
    pub retry_failed: bool,
    /// Run the stages whose id starts with PREFIX again even if they are
    /// done, and everything that depends on them. Repeatable.
    #[arg(long, value_name = "PREFIX")]
    pub from: Vec<String>,
    /// Start over: set the journal aside (as journal-<ms>.jsonl beside it)
    /// and run everything again.
    #[arg(long, conflicts_with_all = ["retry_failed", "from"])]
    pub fresh: bool,
    #[command(flatten)]
    pub out: OutArgs,
    /// Docker socket of the engine that builds images; default the lab's
    /// builder engine when the lab is up, else /var/run/docker.sock.
    #[arg(long, env = "PIPELINE_BUILDER_SOCKET", value_name = "PATH")]
    pub builder_socket: Option<PathBuf>,
    /// The lab's folder, where the builder engine is looked up.
    #[arg(long, env = "PIPELINE_LAB_DIR", default_value = ".lab")]
    pub lab_dir: PathBuf,
    /// Agents for other architectures, as DIR/<uname -m>/pipeline
    /// (scripts/build-agents); default `agents/` beside the folder holding
    /// this program (target/agents for target/release/pipeline).
    #[arg(long, env = "PIPELINE_AGENTS", value_name = "DIR")]
    pub agents: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct OutArgs {
    /// Results, logs and the journal go under OUT/<experiment>/; default the
    /// project's `out` folder.
    #[arg(long, value_name = "OUT")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub out: OutArgs,
    /// Output format: counts per kind, or every stage's state as JSON.
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    pub format: StatusFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// Counts per stage kind, the failures, and what the next apply would do.
    Table,
    /// `{"experiment": ..., "next_apply": {...}, "stages": [{"id", "kind", "state", "error"?}]}`.
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The experiment file (its results are under OUT/<experiment>/), or
    /// an out/<experiment> folder.
    #[arg(value_name = "SPEC_OR_OUT_DIR")]
    pub target: PathBuf,
    /// With a spec: use this inventory instead of the one the experiment names.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// `wasm-precompile`, which builds of variants with `runtime: wasm` put
    /// in their context (default target/release/wasm-precompile in the project).
    #[arg(long, value_name = "FILE", env = "PIPELINE_PRECOMPILER")]
    pub precompiler: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutArgs,
    /// Another run's out/<experiment> folder: show both side by side, with
    /// each cell's ratio and whether the difference is significant.
    #[arg(long, value_name = "OTHER_OUT")]
    pub compare: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// The experiment file, such as experiments/face-detection.yaml.
    pub spec: PathBuf,
    /// Use this inventory instead of the one the experiment names.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// `wasm-precompile`, which builds of variants with `runtime: wasm` put
    /// in their context (default target/release/wasm-precompile in the project).
    #[arg(long, value_name = "FILE", env = "PIPELINE_PRECOMPILER")]
    pub precompiler: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
    pub format: PlanFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// A readable table grouped by stage kind.
    Table,
    /// `{"experiment": ..., "stages": [...]}` for other programs.
    Json,
    /// Graphviz: `pipeline plan X --format dot | dot -Tsvg > plan.svg`.
    Dot,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("mode").required(true))]
pub struct InventoryArgs {
    /// Print every group and host with resolved variables, as `ansible-inventory --list` does.
    #[arg(long, group = "mode")]
    pub list: bool,
    /// Print one host's resolved variables.
    #[arg(long, value_name = "HOST", group = "mode")]
    pub host: Option<String>,
    /// The inventory file.
    #[arg(
        short = 'i',
        long = "inventory",
        value_name = "FILE",
        default_value = "inventory.yaml"
    )]
    pub file: PathBuf,
}

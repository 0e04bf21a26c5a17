//! The runner's commands: parses the command line, runs the command and
//! maps errors to exit codes.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{self, Cli, ColorChoice, Command, PlanFormat};
use pipeline::diagnostic::{Diagnostic, escape_control, escape_control_lines};
use pipeline::inventory::{Inventory, InventoryError};
use pipeline::plan::{self, Plan, PlanError, PlanOptions, StageKind, output};
use pipeline::render;
use pipeline::{apply, lab, progress};

/// Exit codes, as documented in `--help`.
const EXIT_FAILED: u8 = 1;
const EXIT_INVALID: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let style = Style::new(cli.output.color);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Exit(code)) => ExitCode::from(code),
        Err(failure) => {
            let quotable = QuotableFiles::of(&cli.command);
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(failure.render(style, &quotable).as_bytes());
            ExitCode::from(failure.exit_code())
        }
    }
}

/// The files a diagnostic may quote a line of: those named on the command
/// line and those inside the experiment's project. A line of any other file
/// (`/etc/passwd` reached through a link, say) could be a secret.
struct QuotableFiles {
    files: Vec<std::path::PathBuf>,
    folders: Vec<std::path::PathBuf>,
}

impl QuotableFiles {
    fn of(command: &Command) -> QuotableFiles {
        let (spec, inventory) = match command {
            Command::Validate(args) => (Some(&args.spec), args.inventory.as_ref()),
            Command::Plan(cli::PlanArgs { spec, .. })
            | Command::Render(cli::RenderArgs { spec, .. })
            | Command::Apply(cli::ApplyArgs { spec, .. })
            | Command::Status(cli::StatusArgs { spec, .. }) => {
                (Some(&spec.spec), spec.inventory.as_ref())
            }
            Command::Report(args) => (Some(&args.target), args.inventory.as_ref()),
            Command::Inventory(args) => (None, Some(&args.file)),
            Command::Lab(_) | Command::Agent => (None, None),
        };
        let canonical = |path: &std::path::Path| std::fs::canonicalize(path).ok();
        let files = spec
            .into_iter()
            .chain(inventory)
            .filter_map(|path| canonical(path))
            .collect();
        // The project root the plan would have found; the spec is read again
        // only here, after a failure.
        let folders = spec
            .and_then(|path| {
                let loaded = pipeline::spec::load_spec(path).ok()?;
                plan::project_root(&loaded, path).ok()
            })
            .and_then(|root| canonical(&root))
            .into_iter()
            .collect();
        QuotableFiles { files, folders }
    }

    fn source_of(&self, path: &std::path::Path) -> Option<String> {
        let real = std::fs::canonicalize(path).ok()?;
        let allowed = self.files.contains(&real)
            || self.folders.iter().any(|folder| real.starts_with(folder));
        allowed
            .then(|| pipeline::limits::read_regular_file(path).ok())
            .flatten()
    }
}

/// What went wrong, kept until the edge so it is rendered once.
enum Failure {
    Plan(PlanError),
    Inventory(InventoryError),
    /// Templates that do not render, one diagnostic each.
    Render(Vec<Diagnostic>),
    /// Input or usage that is wrong: exit 2.
    Invalid(String),
    /// Something failed while running: exit 1.
    Runtime(String),
    /// Already reported; exit with this code.
    Exit(u8),
}

fn run(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Validate(args) => {
            let plan = load(
                &args.spec,
                &plan_options(args.inventory.as_ref(), args.precompiler.as_ref()),
            )?;
            if !cli.output.quiet {
                let spec = args.spec.display().to_string();
                println!("{}: valid: {}", escape_control(&spec), summary(&plan));
            }
            Ok(())
        }
        Command::Plan(args) => {
            let plan = load(
                &args.spec.spec,
                &plan_options(args.spec.inventory.as_ref(), args.spec.precompiler.as_ref()),
            )?;
            let text = match args.format {
                PlanFormat::Table => output::to_table(&plan),
                PlanFormat::Json => {
                    let mut text =
                        serde_json::to_string_pretty(&output::to_json(&plan)).map_err(|error| {
                            Failure::Runtime(format!("failed to write the plan as json: {error}"))
                        })?;
                    text.push('\n');
                    text
                }
                PlanFormat::Dot => output::to_dot(&plan),
            };
            print_stdout(&text)
        }
        Command::Render(args) => {
            let plan = load(
                &args.spec.spec,
                &plan_options(args.spec.inventory.as_ref(), args.spec.precompiler.as_ref()),
            )?;
            let wanted = args
                .stage
                .as_deref()
                .map(|prefix| prefix.replacen("build/", "render/", 1));
            let mut text = String::new();
            for (_, stage) in plan
                .graph
                .stages()
                .filter(|(_, stage)| stage.kind == StageKind::Render)
            {
                if wanted
                    .as_deref()
                    .is_some_and(|prefix| !stage.id.as_str().starts_with(prefix))
                {
                    continue;
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                let _ = writeln!(text, "# {}", stage.id);
                text.push_str(&render_stage(&plan, stage)?);
            }
            if text.is_empty() {
                return Err(Failure::Invalid(format!(
                    "no render stage matches `{}`; `pipeline plan` lists the stages",
                    args.stage.as_deref().unwrap_or_default()
                )));
            }
            print_stdout(&text)
        }
        Command::Apply(args) => run_apply(args, &cli.output),
        Command::Status(args) => run_status(args),
        Command::Report(args) => run_report(args, cli.output.quiet),
        Command::Lab(args) => run_lab(args, cli.output.quiet),
        Command::Agent => run_agent(),
        Command::Inventory(args) => {
            let inventory = Inventory::load(&args.file).map_err(Failure::Inventory)?;
            let value = match &args.host {
                Some(host) => inventory
                    .host_vars(host)
                    .map(|vars| serde_json::Value::Object(vars.clone()))
                    .ok_or_else(|| {
                        Failure::Invalid(format!("no host `{host}` in {}", args.file.display()))
                    })?,
                None => inventory.to_ansible_list(),
            };
            let mut text = serde_json::to_string_pretty(&value).map_err(|error| {
                Failure::Runtime(format!("failed to write the inventory as json: {error}"))
            })?;
            text.push('\n');
            print_stdout(&text)
        }
    }
}

/// `out/` of the experiment's project unless the user names another.
fn out_root(plan: &Plan, out: &cli::OutArgs) -> std::path::PathBuf {
    out.out
        .clone()
        .unwrap_or_else(|| plan.experiment.project_root.join("out"))
}

fn run_apply(args: &cli::ApplyArgs, output: &cli::OutputArgs) -> Result<(), Failure> {
    let experiment_plan = std::sync::Arc::new(load(
        &args.spec.spec,
        &plan_options(args.spec.inventory.as_ref(), args.spec.precompiler.as_ref()),
    )?);
    let layout = apply::OutputLayout::new(
        &out_root(&experiment_plan, &args.out),
        &experiment_plan.experiment.name,
    );
    if args.fresh
        && let Some(aside) = pipeline::journal::set_aside(&layout.journal())
            .map_err(|error| Failure::Runtime(error.to_string()))?
    {
        eprintln!("the earlier journal is kept as {}", aside.display());
    }
    let mut graph = experiment_plan.graph.clone();
    if !args.only.is_empty() {
        graph = graph.with_needs_of(|stage| matches_prefix(stage, &args.only));
        if graph.is_empty() {
            return Err(Failure::Invalid(format!(
                "no stage matches --only {}; `pipeline plan` lists the stages",
                args.only.join(", ")
            )));
        }
    }
    if args.retry_failed {
        let journal = pipeline::journal::read_journal(&layout.journal())
            .map_err(|error| Failure::Runtime(error.to_string()))?;
        let failed: Vec<petgraph::graph::NodeIndex> = graph
            .stages()
            .filter(|(_, stage)| journal.failure(&stage.id).is_some())
            .map(|(node, _)| node)
            .collect();
        if failed.is_empty() {
            if !output.quiet {
                eprintln!(
                    "{}: nothing failed; nothing to retry",
                    experiment_plan.experiment.name
                );
            }
            return Ok(());
        }
        let retried = graph.downstream_of(failed);
        graph = graph.with_needs_of(|stage| retried.contains(&stage.id));
    }
    let forced = if args.from.is_empty() {
        Vec::new()
    } else {
        let matching: Vec<petgraph::graph::NodeIndex> = graph
            .stages()
            .filter(|(_, stage)| matches_prefix(stage, &args.from))
            .map(|(node, _)| node)
            .collect();
        if matching.is_empty() {
            return Err(Failure::Invalid(format!(
                "no stage matches --from {}; `pipeline plan` lists the stages",
                args.from.join(", ")
            )));
        }
        let ids = graph.downstream_of(matching);
        graph
            .stages()
            .filter(|(_, stage)| ids.contains(&stage.id))
            .map(|(node, _)| node)
            .collect()
    };
    let plan = std::sync::Arc::new(Plan {
        experiment: experiment_plan.experiment.clone(),
        graph,
    });
    let builder_socket = match &args.builder_socket {
        Some(socket) => socket.clone(),
        // A lab that is partly down must not send builds to the machine's
        // own engine without a word.
        // A state file that cannot be read is an error too, not "no lab".
        None => match lab::LabState::read(&lab_layout(&args.lab_dir, None)?)
            .map_err(|error| Failure::Runtime(error.to_string()))?
        {
            Some(state) if state.all_alive() => state.builder_socket().ok_or_else(|| {
                Failure::Runtime("the lab recorded no builder engine; `pipeline lab up`".into())
            })?,
            Some(_) => {
                return Err(Failure::Runtime(format!(
                    "part of the lab in {} is down; `pipeline lab up` restarts it, or \
                     --builder-socket names another engine",
                    args.lab_dir.display()
                )));
            }
            None => pipeline::inventory::DEFAULT_DOCKER_SOCKET.into(),
        },
    };
    let credentials = registry_credentials(&plan.experiment.registry)?;
    let runner = std::env::current_exe()
        .map_err(|error| Failure::Runtime(format!("cannot find this program: {error}")))?;
    let agent_dir = args.agents.clone().or_else(|| {
        runner
            .parent()
            .and_then(std::path::Path::parent)
            .map(|dir| dir.join("agents"))
    });
    let agents = pipeline::backend::host::AgentBinaries::find(&runner, agent_dir.as_deref());
    pipeline::backend::host::end_stale_masters(&std::env::temp_dir());
    let control_dir = std::env::temp_dir().join(format!("pipeline-ssh-{}", std::process::id()));
    let connector = pipeline::backend::host::SshConnector {
        inventory_dir: plan
            .experiment
            .inventory_path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
        control_dir: control_dir.clone(),
        agents,
    };
    let verbosity = if output.quiet {
        progress::Verbosity::Quiet
    } else if output.verbose {
        progress::Verbosity::Verbose
    } else {
        progress::Verbosity::Normal
    };
    let mut display = progress::ProgressDisplay::new(
        plan.graph.count_by_kind(),
        verbosity,
        std::io::stderr().is_terminal(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::Runtime(format!("failed to start the runtime: {error}")))?;
    let summary = runtime.block_on(async {
        let builder =
            pipeline::backend::builder::EngineBuilder::connect(&builder_socket, cache_dir())
                .map_err(|error| Failure::Runtime(error.to_string()))?
                .with_credentials(credentials.clone());
        let backends = pipeline::backend::Backends {
            builder: std::sync::Arc::new(builder),
            registry: std::sync::Arc::new(
                pipeline::backend::registry::RegistryClient::with_credentials(credentials.clone()),
            ),
            hosts: std::sync::Arc::new(connector),
            vendor: std::sync::Arc::new(pipeline::backend::vendor::LocalVendor::default()),
            registry_credentials: credentials,
        };
        let worker = std::sync::Arc::new(apply::PipelineWorker::new(
            &plan,
            backends,
            layout.dir.clone(),
        ));
        let interrupt = async {
            let _ = tokio::signal::ctrl_c().await;
            // The first ^C cancels running work and keeps what finished; a
            // second one does not wait for that.
            tokio::spawn(async {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("interrupted again; exiting without waiting");
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            });
        };
        let run = apply::ApplyRun {
            plan: std::sync::Arc::clone(&plan),
            experiment_plan: std::sync::Arc::clone(&experiment_plan),
            layout: &layout,
            worker,
            forced,
            backoff: pipeline::exec::Backoff::default(),
        };
        apply::run_plan(run, &mut display, interrupt)
            .await
            .map_err(|error| Failure::Runtime(error.to_string()))
    });
    drop(runtime);
    let _ = std::fs::remove_dir_all(&control_dir);
    let summary = summary?;
    if !output.quiet || !summary.failed.is_empty() {
        // Only experiments with `measure.until` leave runs out.
        let not_needed = if summary.not_needed > 0 {
            format!(", {} runs not needed", summary.not_needed)
        } else {
            String::new()
        };
        let mut text = format!(
            "{}: {} done, {} up to date, {} failed, {} blocked{not_needed}; results in {}\n",
            plan.experiment.name,
            summary.succeeded,
            summary.up_to_date,
            summary.failed.len(),
            summary.blocked,
            layout.dir.display()
        );
        for (stage, error) in summary.failed.iter().take(20) {
            let log = progress::StageLogFiles::new(layout.logs()).path_of(stage);
            let first = error.lines().next().unwrap_or_default();
            let _ = writeln!(
                text,
                "  failed {stage}: {first}\n    log: {}",
                log.display()
            );
        }
        if summary.failed.len() > 20 {
            let _ = writeln!(text, "  ... and {} more", summary.failed.len() - 20);
        }
        // Errors may carry a remote program's output.
        eprint!("{}", escape_control_lines(&text));
    }
    if summary.interrupted {
        eprintln!("interrupted; `pipeline apply` again resumes where this one stopped");
        Err(Failure::Exit(EXIT_INTERRUPTED))
    } else if !summary.failed.is_empty() {
        Err(Failure::Exit(EXIT_FAILED))
    } else {
        Ok(())
    }
}

/// The experiment registry's credentials, from the environment or the
/// Docker config; `None` for a registry that needs none.
fn registry_credentials(
    registry: &str,
) -> Result<Option<pipeline::backend::credentials::RegistryCredentials>, Failure> {
    use pipeline::backend::credentials::{CredentialLookup, CredentialsError};
    CredentialLookup::from_environment()
        .resolve(registry)
        .map_err(|error| match error {
            CredentialsError::Helper { .. } => Failure::Runtime(error.to_string()),
            CredentialsError::HalfSet { .. }
            | CredentialsError::Config { .. }
            | CredentialsError::Auth { .. } => Failure::Invalid(error.to_string()),
        })
}

/// A stage matches a prefix of its id, or the name of its kind.
fn matches_prefix(stage: &pipeline::plan::Stage, prefixes: &[String]) -> bool {
    prefixes.iter().any(|prefix| {
        stage.id.as_str().starts_with(prefix.as_str()) || stage.kind.as_str() == prefix
    })
}

fn cache_dir() -> std::path::PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("pipeline")
}

fn run_status(args: &cli::StatusArgs) -> Result<(), Failure> {
    use pipeline::status::StageState;
    let plan = load(
        &args.spec.spec,
        &plan_options(args.spec.inventory.as_ref(), args.spec.precompiler.as_ref()),
    )?;
    let layout = apply::OutputLayout::new(&out_root(&plan, &args.out), &plan.experiment.name);
    let journal = pipeline::journal::read_journal(&layout.journal())
        .map_err(|error| Failure::Runtime(error.to_string()))?;
    let states = pipeline::status::stage_states(&plan, &journal);
    let next = pipeline::status::next_apply(&plan, &states);
    if args.format == cli::StatusFormat::Json {
        let value = serde_json::json!({
            "experiment": plan.experiment.name,
            "journal": layout.journal(),
            "next_apply": next,
            "stages": states,
        });
        let mut text = serde_json::to_string_pretty(&value)
            .map_err(|error| Failure::Runtime(format!("failed to write the status: {error}")))?;
        text.push('\n');
        return print_stdout(&text);
    }
    let columns = [
        StageState::Done,
        StageState::Stale,
        StageState::Failed,
        StageState::Pending,
    ];
    let mut counts = [[0usize; 4]; StageKind::ALL.len()];
    for status in &states {
        if let Some(column) = columns.iter().position(|state| *state == status.state) {
            counts[status.kind.index()][column] += 1;
        }
    }
    let mut text = format!(
        "{} ({})\n{:<14}{:>8}{:>9}{:>8}{:>9}\n",
        plan.experiment.name,
        layout.journal().display(),
        "kind",
        "done",
        "stale",
        "failed",
        "pending"
    );
    for kind in StageKind::ALL {
        let [done, stale, failed, pending] = counts[kind.index()];
        if done + stale + failed + pending > 0 {
            let _ = writeln!(
                text,
                "{:<14}{done:>8}{stale:>9}{failed:>8}{pending:>9}",
                kind.as_str()
            );
        }
    }
    for status in states
        .iter()
        .filter(|status| status.state == StageState::Failed)
        .take(20)
    {
        // The error may carry a remote program's output.
        let _ = writeln!(
            text,
            "failed {}: {}",
            status.id,
            escape_control_lines(status.error.as_deref().unwrap_or_default())
        );
    }
    let _ = writeln!(
        text,
        "next apply: runs {} stages, reuses {}; {} more run again if what they consume changes",
        next.runs, next.reuses, next.may_rerun
    );
    print_stdout(&text)
}

fn run_report(args: &cli::ReportArgs, quiet: bool) -> Result<(), Failure> {
    let mut options = if args.target.is_dir() {
        pipeline::report::ReportOptions::new(args.target.clone())
    } else if args.target.is_file() {
        let plan = load(
            &args.target,
            &plan_options(args.inventory.as_ref(), args.precompiler.as_ref()),
        )?;
        let mut options = pipeline::report::ReportOptions::new(
            out_root(&plan, &args.out).join(&plan.experiment.name),
        );
        options.plan_fingerprint = plan
            .graph
            .stages()
            .find(|(_, stage)| stage.kind == StageKind::Aggregate)
            .map(|(_, stage)| stage.fingerprint.to_hex());
        options
    } else {
        return Err(Failure::Invalid(format!(
            "{}: no such experiment file or out folder",
            args.target.display()
        )));
    };
    options.compare.clone_from(&args.compare);
    let outcome = pipeline::report::generate(&options).map_err(|error| {
        if error.is_invalid_input() {
            Failure::Invalid(error.to_string())
        } else {
            Failure::Runtime(error.to_string())
        }
    })?;
    if quiet {
        return Ok(());
    }
    let mut text = outcome.summary.join("\n");
    let _ = writeln!(
        text,
        "\nreport: {} ({} figures as SVG and PNG, {} tables as CSV and Markdown)",
        outcome.index.display(),
        outcome.figures,
        outcome.tables
    );
    print_stdout(&text)
}

fn lab_layout(
    dir: &std::path::Path,
    deps: Option<std::path::PathBuf>,
) -> Result<lab::LabLayout, Failure> {
    // install-deps' default prefix.
    let deps = deps.unwrap_or_else(|| cache_dir().join("deps"));
    // Daemons run in other mount namespaces, where a relative path means nothing.
    let root = std::path::absolute(dir).map_err(|error| {
        Failure::Runtime(format!("failed to resolve {}: {error}", dir.display()))
    })?;
    Ok(lab::LabLayout::new(root, deps))
}

fn run_agent() -> Result<(), Failure> {
    pipeline::agent::run_on_stdio().map_err(|error| Failure::Runtime(error.to_string()))
}

fn run_lab(args: &cli::LabArgs, quiet: bool) -> Result<(), Failure> {
    let mut layout = lab_layout(&args.dir, args.deps.clone())?;
    let mut report = |line: &str| {
        if !quiet {
            eprintln!("lab: {}", escape_control_lines(line));
        }
    };
    let failure = |error: lab::LabError| Failure::Runtime(error.to_string());
    match &args.action {
        cli::LabAction::Up {
            hosts,
            shim,
            wasm_runners,
            containerd,
        } => {
            layout.foreign_runners = std::path::absolute(wasm_runners).ok();
            if shim.is_file() {
                layout.shim = std::path::absolute(shim).ok();
            } else {
                report(&format!(
                    "no wasmtime shim at {}: hosts will run native images only (build it with `cargo build --release -p containerd-shim-wasmtime`)",
                    shim.display()
                ));
            }
            let mut hosts = lab::default_hosts(usize::from(*hosts));
            lab::choose_containerd(&mut hosts, containerd).map_err(Failure::Invalid)?;
            lab::up(&layout, &hosts, &mut report).map_err(failure)?;
            for (file, authenticated) in [("inventory.yaml", false), ("inventory-auth.yaml", true)]
            {
                let inventory = lab::inventory_yaml(&layout, &hosts, authenticated);
                let path = layout.root.join(file);
                lab::write_file(&path, &inventory).map_err(failure)?;
                report(&format!("inventory written to {}", path.display()));
            }
            Ok(())
        }
        cli::LabAction::Down => lab::down(&layout, &mut report).map_err(failure),
        cli::LabAction::Status => {
            let lines = lab::status(&layout);
            if lines.is_empty() {
                print_stdout("the lab is down\n")
            } else {
                let width = lines
                    .iter()
                    .map(|(name, _, _)| name.len())
                    .max()
                    .unwrap_or(0);
                let mut text = String::new();
                for (name, detail, up) in &lines {
                    let state = if *up { "up  " } else { "DOWN" };
                    let _ = writeln!(text, "{name:width$}  {state}  {detail}");
                }
                print_stdout(&text)?;
                if lines.iter().all(|(_, _, up)| *up) {
                    Ok(())
                } else {
                    Err(Failure::Runtime(
                        "part of the lab is down; `pipeline lab up` restarts it".into(),
                    ))
                }
            }
        }
    }
}

fn render_stage(plan: &Plan, stage: &pipeline::plan::Stage) -> Result<String, Failure> {
    let Some(image) = stage.work.image() else {
        return Err(Failure::Invalid(format!(
            "stage `{}` renders no image",
            stage.id
        )));
    };
    let experiment = &plan.experiment;
    render::render_dockerfile(
        &experiment.project_root,
        &experiment.name,
        &experiment.images[image],
        stage.fingerprint,
        &render::Toolchain::new(),
    )
    .map_err(|error| Failure::Render(vec![render_diagnostic(&error, &experiment.project_root)]))
}

fn render_diagnostic(error: &render::RenderError, project_root: &std::path::Path) -> Diagnostic {
    let render::RenderError::Template {
        template,
        line,
        message,
    } = error;
    Diagnostic::at(
        pipeline::diagnostic::SourceLocation::new(
            project_root.join(template),
            line.unwrap_or(1),
            1,
        ),
        format!("template error: {message}"),
    )
}

fn plan_options(
    inventory: Option<&std::path::PathBuf>,
    precompiler: Option<&std::path::PathBuf>,
) -> PlanOptions {
    PlanOptions {
        inventory: inventory.cloned(),
        precompiler: precompiler.cloned(),
    }
}

/// The one validation every command runs: the spec and inventory against
/// the project, then every template rendered, so `plan`, `render`, `apply`
/// and `status` refuse exactly what `validate` refuses.
fn load(spec: &std::path::Path, options: &PlanOptions) -> Result<Plan, Failure> {
    let plan = plan::load_plan(spec, options).map_err(Failure::Plan)?;
    let mut problems = Vec::new();
    for (_, stage) in plan
        .graph
        .stages()
        .filter(|(_, stage)| stage.kind == StageKind::Render)
    {
        match render_stage(&plan, stage) {
            Ok(_) => {}
            Err(Failure::Render(diagnostics)) => {
                for diagnostic in diagnostics {
                    if !problems.contains(&diagnostic) {
                        problems.push(diagnostic);
                    }
                }
            }
            Err(other) => return Err(other),
        }
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(Failure::Render(problems))
    }
}

/// A closed pipe (`pipeline plan x | head`) is not an error worth a message.
fn print_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Runtime(
            format!("failed to write to stdout: {error}"),
        )),
        _ => Ok(()),
    }
}

fn summary(plan: &Plan) -> String {
    let experiment = &plan.experiment;
    let counts = plan.graph.count_by_kind();
    let by_kind: Vec<String> = StageKind::ALL
        .iter()
        .filter(|kind| counts[kind.index()] > 0)
        .map(|kind| format!("{} {}", kind, counts[kind.index()]))
        .collect();
    format!(
        "{} images, {} hosts, {} cells, {} stages ({})",
        experiment.images.len(),
        experiment.hosts.len(),
        experiment.cells.len(),
        plan.graph.len(),
        by_kind.join(", ")
    )
}

#[derive(Clone, Copy)]
struct Style {
    color: bool,
}

impl Style {
    fn new(choice: ColorChoice) -> Style {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
                    && std::io::stderr().is_terminal()
            }
        };
        Style { color }
    }

    fn paint(self, text: &str) -> String {
        // Only the word "error" is coloured, so piped logs stay readable.
        if self.color {
            text.replace(": error: ", ": \u{1b}[1;31merror\u{1b}[0m: ")
                .replacen(
                    "error: ",
                    "\u{1b}[1;31merror\u{1b}[0m: ",
                    usize::from(text.starts_with("error: ")),
                )
        } else {
            text.to_string()
        }
    }
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Plan(_) | Failure::Inventory(_) | Failure::Render(_) | Failure::Invalid(_) => {
                EXIT_INVALID
            }
            Failure::Runtime(_) => EXIT_FAILED,
            Failure::Exit(code) => *code,
        }
    }

    fn render(&self, style: Style, quotable: &QuotableFiles) -> String {
        let diagnostics: Vec<Diagnostic> = match self {
            Failure::Plan(PlanError::Invalid(diagnostics)) => diagnostics.0.clone(),
            Failure::Plan(PlanError::Spec(pipeline::spec::SpecError::Invalid(diagnostics))) => {
                diagnostics.0.clone()
            }
            Failure::Plan(PlanError::Inventory(error)) | Failure::Inventory(error) => {
                vec![inventory_diagnostic(error)]
            }
            // A file that exists but cannot be read is pointed at as a whole.
            Failure::Plan(PlanError::Spec(pipeline::spec::SpecError::Read { path, source }))
                if source.kind() != std::io::ErrorKind::NotFound =>
            {
                vec![Diagnostic::at(
                    pipeline::diagnostic::SourceLocation::new(path, 1, 1),
                    format!("cannot read: {source}"),
                )]
            }
            Failure::Plan(other) => vec![Diagnostic::unlocated(other.to_string())],
            Failure::Render(diagnostics) => diagnostics.clone(),
            Failure::Invalid(message) | Failure::Runtime(message) => {
                vec![Diagnostic::unlocated(message.clone())]
            }
            Failure::Exit(_) => Vec::new(),
        };
        let mut out = String::new();
        for diagnostic in &diagnostics {
            let source = diagnostic
                .location
                .as_ref()
                .and_then(|location| quotable.source_of(&location.path));
            out.push_str(&style.paint(&diagnostic.render(source.as_deref())));
        }
        if diagnostics.len() > 1 {
            out.push_str(&style.paint(&format!("error: {} problems found\n", diagnostics.len())));
        }
        out
    }
}

fn inventory_diagnostic(error: &InventoryError) -> Diagnostic {
    match error.location() {
        Some((line, column)) => Diagnostic::at(
            pipeline::diagnostic::SourceLocation::new(error.path(), line, column),
            error.message(),
        ),
        None => Diagnostic::unlocated(error.to_string()),
    }
}

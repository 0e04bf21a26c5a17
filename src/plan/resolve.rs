//! Spec × inventory × project tree → [`Experiment`], reporting every problem
//! with the place in the file that caused it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::StageKind;
use super::fingerprint::{Fingerprint, FingerprintBuilder, hash_tree};
use super::inputs;
use super::model::{
    BaseImage, Cell, DataCopy, Debootstrap, EnvVar, Experiment, Image, Measure, Precompiler,
    StageLimit, StageLimits, Until, VendorSource, WorkloadImages, WorkloadRun,
};
use super::names;
use super::target::Target;
use crate::diagnostic::{Diagnostic, Diagnostics, SourceLocation};
use crate::inventory::{Connection, HostDirectory, HostSettings};
use crate::limits::{MAX_CELLS, MAX_REPETITIONS, MAX_RETRIES, MAX_STAGES, MAX_TIMEOUT, MAX_WARMUP};
use crate::results::stats;
use crate::spec::{
    ExperimentSpec, Located, MarkerSpec, PerStageKind, RunMetric, RunOrder, RuntimeKind, Scenario,
    TimeUnit, UntilSpec, VarMap, WorkloadManifest,
};

/// The marker the shipped workloads print first thing in `main`.
pub const DEFAULT_MARKER_PATTERN: &str = r"PIPELINE_MAIN_START_NS=(?P<ts>\d+)";
const DEFAULT_REPOSITORY: &str = "{experiment}/{workload}-{language}";
const DEFAULT_TAG: &str = "{variant}";
/// Runs of a cell before `measure.until` is looked at, unless `min` says:
/// the fewest with a distribution-free 95 % interval of the median.
const UNTIL_MIN_DEFAULT: u32 = 6;
const PLACEHOLDERS: [&str; 4] = ["experiment", "workload", "language", "variant"];

/// Where the spec's relative paths lead.
pub struct Sources<'a> {
    pub spec_path: &'a Path,
    pub project_root: &'a Path,
    pub hosts: &'a dyn HostDirectory,
    /// `wasm-precompile`; default [`Precompiler::DEFAULT_PATH`] in the project.
    pub precompiler: Option<&'a Path>,
}

pub fn resolve(spec: &ExperimentSpec, sources: &Sources<'_>) -> Result<Experiment, Diagnostics> {
    let mut resolver = Resolver {
        spec,
        sources,
        diagnostics: Diagnostics::default(),
        tree_hashes: HashMap::new(),
    };
    let experiment = resolver.run();
    resolver.diagnostics.into_result()?;
    // Every error path above pushes a diagnostic, so a missing value here is a bug.
    experiment.ok_or_else(|| Diagnostics(vec![Diagnostic::unlocated("the experiment is empty")]))
}

struct Resolver<'a> {
    spec: &'a ExperimentSpec,
    sources: &'a Sources<'a>,
    diagnostics: Diagnostics,
    tree_hashes: HashMap<PathBuf, Fingerprint>,
}

/// A workload's working directory, data placements and environment, resolved.
struct Setup {
    workdir: String,
    data: Vec<DataCopy>,
    env: Vec<EnvVar>,
}

/// A variant after defaults: its vars and template names.
struct ResolvedVariant<'a> {
    name: &'a Located<String>,
    vars: Option<&'a VarMap>,
    native_template: String,
    wasm_template: String,
    native_template_at: Option<&'a Located<String>>,
    wasm_template_at: Option<&'a Located<String>>,
    /// Which runtime runs its images of native targets.
    runtime: RuntimeKind,
    /// The experiment's targets it keeps; `None`: all of them.
    targets: Option<HashSet<Target>>,
}

impl<'a> Resolver<'a> {
    fn at<T>(&self, located: &Located<T>) -> SourceLocation {
        SourceLocation::from_yaml(self.sources.spec_path, located.referenced)
    }

    fn error<T>(&mut self, located: &Located<T>, message: impl Into<String>) {
        let location = self.at(located);
        self.diagnostics.push(Diagnostic::at(location, message));
    }

    fn error_with_help<T>(
        &mut self,
        located: &Located<T>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let location = self.at(located);
        self.diagnostics
            .push(Diagnostic::at(location, message).with_help(help));
    }

    fn run(&mut self) -> Option<Experiment> {
        let spec = self.spec;
        let name = spec.experiment.value.clone();
        if let Err(message) = names::check_name("experiment", &name) {
            self.error(&spec.experiment, message);
        }
        let targets = self.targets();
        let variants = self.variants(&targets);
        let measure = self.measure();
        let limits = self.limits();
        let registry = self.registry_address();
        let bases = self.bases();
        let base_refs: HashMap<&str, &BaseImage> = bases
            .iter()
            .map(|base| (base.name.as_str(), base))
            .collect();
        let language_targets = self.language_targets(&targets);
        let images = self.images(&targets, &language_targets, &variants, &base_refs);
        self.check_language_settings(&variants);
        self.check_vars();
        let (hosts, cells) = self.cells(&images, &targets, &variants);
        let host_fingerprints = hosts.iter().map(host_fingerprint).collect();
        if self.diagnostics.is_empty() && cells.is_empty() && !images.is_empty() {
            self.error(
                &spec.runs,
                "the experiment has no cells: no run block selects a host that can run any image",
            );
        }
        let (images, cells, workload_images) = needed_images(images, cells);
        let stages = stage_count(bases.len(), &images, hosts.len(), &cells, &measure);
        // Too many cells is already reported, and is the cause.
        if stages > MAX_STAGES && self.diagnostics.is_empty() {
            let runs = u64::from(measure.repetitions) + u64::from(measure.warmup);
            let message = format!(
                "the plan has more than {MAX_STAGES} stages, the limit: {} cells × {runs} runs each",
                cells.len()
            );
            match &spec.measure.repetitions {
                Some(repetitions) => self.error(repetitions, message),
                None => self.error(&spec.runs, message),
            }
            return None;
        }
        let registry = registry?;
        let precompiler = self.precompiler(&images);
        let images = images
            .into_iter()
            .map(|mut image| {
                complete_registry(&mut image.vars, &registry);
                image.repository = format!("{registry}/{}", image.repository);
                image
            })
            .collect();
        let bases = bases
            .into_iter()
            .map(|base| BaseImage {
                image_ref: format!("{registry}/{}", base.image_ref),
                ..base
            })
            .collect();
        Some(Experiment {
            name,
            description: spec.description.clone(),
            spec_path: self.sources.spec_path.to_path_buf(),
            project_root: self.sources.project_root.to_path_buf(),
            inventory_path: self.sources.hosts.source_path().to_path_buf(),
            registry,
            bases,
            images,
            hosts,
            host_fingerprints,
            cells,
            workload_images,
            measure,
            limits,
            precompiler,
        })
    }

    /// The precompiler and, when some image runs it, a hash of its contents.
    /// A missing one is not an error here: `validate` and `plan` work without
    /// it, and the builds that need it say where it was looked for.
    fn precompiler(&self, images: &[Image]) -> Precompiler {
        let path = self.sources.precompiler.map_or_else(
            || self.sources.project_root.join(Precompiler::DEFAULT_PATH),
            Path::to_path_buf,
        );
        let digest = images
            .iter()
            .any(Image::needs_precompiler)
            .then(|| fs_err::read(&path).ok())
            .flatten()
            .map(|contents| {
                FingerprintBuilder::new("precompiler")
                    .bytes("contents", &contents)
                    .finish()
            });
        Precompiler { path, digest }
    }

    fn targets(&mut self) -> Vec<(Target, &'a Located<String>)> {
        let spec = self.spec;
        if spec.targets.value.is_empty() {
            self.error(
                &spec.targets,
                "`targets` is empty: name at least one platform or `wasm`",
            );
        }
        let mut seen = HashSet::new();
        let mut targets = Vec::new();
        for entry in &spec.targets.value {
            match Target::parse(&entry.value) {
                Ok(target) => {
                    if seen.insert(target.clone()) {
                        targets.push((target, entry));
                    } else {
                        self.error(entry, format!("duplicate target `{target}`"));
                    }
                }
                Err(error) => self.error(entry, error.to_string()),
            }
        }
        targets
    }

    fn variants(&mut self, targets: &[(Target, &'a Located<String>)]) -> Vec<ResolvedVariant<'a>> {
        let Some(variants) = &self.spec.variants else {
            return vec![ResolvedVariant {
                name: &DEFAULT_VARIANT,
                vars: None,
                native_template: "optimized.Dockerfile.j2".into(),
                wasm_template: "wasm.Dockerfile.j2".into(),
                native_template_at: None,
                wasm_template_at: None,
                runtime: RuntimeKind::Native,
                targets: None,
            }];
        };
        if variants.value.is_empty() {
            self.error(
                variants,
                "`variants` is empty: name at least one, such as `optimized`",
            );
        }
        let mut resolved = Vec::new();
        for (name, settings) in &variants.value {
            if let Err(message) = names::check_name("variant", &name.value) {
                self.error(name, message);
            }
            let templates = settings.as_ref().map(|settings| &settings.templates);
            let native_at = templates.and_then(|templates| templates.native.as_ref());
            let wasm_at = templates.and_then(|templates| templates.wasm.as_ref());
            for template in [native_at, wasm_at].into_iter().flatten() {
                if let Err(message) = names::check_relative_file("template", &template.value) {
                    self.error_with_help(
                        template,
                        message,
                        "templates are files inside templates/<language>/",
                    );
                }
            }
            resolved.push(ResolvedVariant {
                name,
                vars: settings.as_ref().map(|settings| &settings.vars),
                native_template: native_at.map_or_else(
                    || format!("{}.Dockerfile.j2", name.value),
                    |t| t.value.clone(),
                ),
                wasm_template: wasm_at
                    .map_or_else(|| "wasm.Dockerfile.j2".into(), |t| t.value.clone()),
                native_template_at: native_at,
                wasm_template_at: wasm_at,
                runtime: settings
                    .as_ref()
                    .and_then(|settings| settings.runtime.as_ref())
                    .map_or(RuntimeKind::Native, |runtime| runtime.value),
                targets: settings
                    .as_ref()
                    .and_then(|settings| settings.targets.as_ref())
                    .and_then(|list| {
                        self.narrowing(list, targets, &format!("variant `{}`", name.value))
                    }),
            });
        }
        resolved
    }

    fn measure(&mut self) -> Measure {
        let measure = &self.spec.measure;
        let repetitions = match &measure.repetitions {
            Some(located) if located.value == 0 => {
                self.error(located, "`repetitions` must be at least 1");
                1
            }
            Some(located) if located.value > MAX_REPETITIONS => {
                self.error(
                    located,
                    format!(
                        "`repetitions` is {}, more than the limit of {MAX_REPETITIONS}",
                        located.value
                    ),
                );
                1
            }
            Some(located) => located.value,
            None => 1,
        };
        let warmup = match &measure.warmup {
            Some(located) if located.value > MAX_WARMUP => {
                self.error(
                    located,
                    format!(
                        "`warmup` is {}, more than the limit of {MAX_WARMUP}",
                        located.value
                    ),
                );
                0
            }
            Some(located) => located.value,
            None => 0,
        };
        let seed = measure.seed.unwrap_or_else(|| {
            // A recorded default: the same experiment always shuffles the same way.
            FingerprintBuilder::new("seed")
                .str("experiment", &self.spec.experiment.value)
                .finish()
                .to_u64()
        });
        let until = measure
            .until
            .as_ref()
            .and_then(|until| self.until(until, repetitions));
        Measure {
            repetitions,
            warmup,
            order: measure.order.unwrap_or(RunOrder::Interleaved),
            seed,
            until,
        }
    }

    fn until(&mut self, until: &Located<UntilSpec>, repetitions: u32) -> Option<Until> {
        let spec = &until.value;
        let ci_width = spec.ci_width.value;
        let mut valid = true;
        if !(ci_width > 0.0 && ci_width <= 1.0) {
            self.error_with_help(
                &spec.ci_width,
                format!("`ci_width` is {ci_width}, not a fraction above 0 and at most 1"),
                "it is relative to the median: 0.05 stops a cell once its interval is narrower than 5 % of its median",
            );
            valid = false;
        }
        let min = spec.min.as_ref().map_or(UNTIL_MIN_DEFAULT, |min| min.value);
        // Where a problem with `min` shows: its value, or `until` when it is the default.
        let min_at = match &spec.min {
            Some(min) => self.at(min),
            None => self.at(until),
        };
        if (min as usize) < stats::MEDIAN_ORDER_INTERVAL_MIN {
            self.diagnostics.push(
                Diagnostic::at(
                    min_at,
                    format!(
                        "`min` is {min}, fewer than the {} runs a 95 % interval of the median needs",
                        stats::MEDIAN_ORDER_INTERVAL_MIN
                    ),
                )
                .with_help(
                    "of five runs, even the fastest and the slowest enclose the median only 93.75 % of the time",
                ),
            );
            valid = false;
        } else if min > repetitions {
            let message = if spec.min.is_some() {
                format!(
                    "`min` is {min}, more than `repetitions` ({repetitions}), the most a cell gets"
                )
            } else {
                format!(
                    "`until` needs at least {min} runs per cell (its default `min`), more than `repetitions` ({repetitions})"
                )
            };
            self.diagnostics.push(Diagnostic::at(min_at, message));
            valid = false;
        }
        valid.then(|| Until {
            metric: spec.metric.unwrap_or(RunMetric::ToMainMs),
            ci_width,
            min,
        })
    }

    fn limits(&mut self) -> StageLimits {
        let mut limits = StageLimits::default();
        for kind in StageKind::ALL {
            let timeout = match per_kind(&self.spec.timeouts, kind) {
                Some(text) => match humantime::parse_duration(text.value.trim()) {
                    Ok(duration) if duration.is_zero() => {
                        self.error(text, "a timeout must be longer than zero");
                        None
                    }
                    Ok(duration) if duration > MAX_TIMEOUT => {
                        self.error(
                            text,
                            format!(
                                "timeout `{}` is longer than the limit of {}h",
                                text.value,
                                MAX_TIMEOUT.as_secs() / 3600
                            ),
                        );
                        None
                    }
                    Ok(duration) => Some(duration),
                    Err(error) => {
                        self.error_with_help(
                            text,
                            format!("`{}` is not a duration: {error}", text.value),
                            "write durations such as `90s`, `5m` or `1h 30m`",
                        );
                        None
                    }
                },
                None => kind.default_timeout(),
            };
            let retries = match per_kind(&self.spec.retries, kind) {
                Some(count) if count.value > MAX_RETRIES => {
                    self.error(
                        count,
                        format!(
                            "{} retries is more than the limit of {MAX_RETRIES}",
                            count.value
                        ),
                    );
                    kind.default_retries()
                }
                Some(count) => count.value,
                None => kind.default_retries(),
            };
            limits.0[kind.index()] = StageLimit { timeout, retries };
        }
        limits
    }

    fn registry_address(&mut self) -> Option<String> {
        let registry = &self.spec.registry;
        for pattern in [&registry.repository, &registry.tag].into_iter().flatten() {
            if let Err(message) = check_placeholders(&pattern.value) {
                self.error(pattern, message);
            }
        }
        if let Some(address) = &registry.address {
            let value = address.value.trim_end_matches('/');
            if let Err(message) = names::check_registry_address(value) {
                self.error(address, message);
            }
            return Some(value.to_string());
        }
        // Fall back to the inventory, where `pipeline lab up` writes its registry.
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut any_host = false;
        for run in &self.spec.runs.value {
            for pattern in &run.hosts.value {
                for host in self
                    .sources
                    .hosts
                    .expand(&pattern.value)
                    .unwrap_or_default()
                {
                    any_host = true;
                    if let Some(Value::String(address)) = self
                        .sources
                        .hosts
                        .host_vars(&host)
                        .and_then(|vars| vars.get("pipeline_registry"))
                    {
                        found.insert(address.clone());
                    }
                }
            }
        }
        match found.len() {
            1 => {
                let address = found.into_iter().next()?;
                if let Err(message) = names::check_registry_address(&address) {
                    self.error_with_help(
                        &self.spec.experiment,
                        format!("the inventory's `pipeline_registry`: {message}"),
                        "set `registry: {address: host:port}` in the spec or fix `pipeline_registry` in the inventory",
                    );
                }
                Some(address)
            }
            // Without any host the unknown names are the problem, reported elsewhere.
            0 if !any_host => None,
            0 => {
                self.error_with_help(
                    &self.spec.experiment,
                    "no registry address: the spec has no `registry.address` and no selected host has `pipeline_registry`",
                    "set `registry: {address: host:port}` in the spec or `pipeline_registry` in the inventory's `all` vars",
                );
                None
            }
            _ => {
                let list = found.into_iter().collect::<Vec<_>>().join(", ");
                self.error(&self.spec.experiment, format!("hosts disagree on `pipeline_registry` ({list}); set `registry.address` in the spec"));
                None
            }
        }
    }

    /// Bases in dependency order, after checking references and cycles.
    fn bases(&mut self) -> Vec<BaseImage> {
        let spec = self.spec;
        let by_name: HashMap<&str, (&Located<String>, &crate::spec::BaseSpec)> = spec
            .bases
            .iter()
            .map(|(name, base)| (name.value.as_str(), (name, base)))
            .collect();
        let mut ok = true;
        for (name, base) in &spec.bases {
            if let Some(platform) = &base.platform
                && let Err(error) = super::target::Platform::parse(&platform.value)
            {
                self.error(platform, error.to_string());
                ok = false;
            }
            if let Err(message) = names::check_name("base", &name.value) {
                self.error(name, message);
                ok = false;
            }
            if !self.check_base_words(base) {
                ok = false;
            }
            match (&base.from, &base.debootstrap) {
                (Some(from), None) => {
                    if !by_name.contains_key(from.value.as_str()) {
                        self.error(
                            from,
                            format!(
                                "base `{}` is built from unknown base `{}`",
                                name.value, from.value
                            ),
                        );
                        ok = false;
                    }
                }
                (None, Some(_)) => {}
                (Some(from), Some(_)) => {
                    self.error(
                        from,
                        format!(
                            "base `{}` has both `from` and `debootstrap`; choose one",
                            name.value
                        ),
                    );
                    ok = false;
                }
                (None, None) => {
                    self.error(name, format!("base `{}` needs either `from: <base>` or `debootstrap: {{suite: ...}}`", name.value));
                    ok = false;
                }
            }
        }
        if !ok {
            return Vec::new();
        }
        // Depth-first over `from` links; a name met again on the current path is a cycle.
        let mut ordered: Vec<BaseImage> = Vec::new();
        let mut done: HashMap<&str, Fingerprint> = HashMap::new();
        for (name, _) in &spec.bases {
            let mut path: Vec<&str> = Vec::new();
            let mut current = name.value.as_str();
            // Walk up to the root, then build back down.
            loop {
                if done.contains_key(current) {
                    break;
                }
                if let Some(position) = path.iter().position(|seen| *seen == current) {
                    let mut cycle: Vec<String> = path[position..]
                        .iter()
                        .map(|name| format!("base/{name}"))
                        .collect();
                    cycle.push(format!("base/{current}"));
                    let (located, _) = by_name[current];
                    self.error(
                        located,
                        format!("base images form a cycle: {}", cycle.join(" -> ")),
                    );
                    return Vec::new();
                }
                path.push(current);
                match &by_name[current].1.from {
                    Some(from) => current = from.value.as_str(),
                    None => break,
                }
            }
            for &base_name in path.iter().rev() {
                if done.contains_key(base_name) {
                    continue;
                }
                let (_, base) = by_name[base_name];
                let mut builder = FingerprintBuilder::new("base");
                builder.str("name", base_name);
                if let Some(from) = &base.from {
                    builder.fingerprint("from", done[from.value.as_str()]);
                }
                let platform = base
                    .platform
                    .as_ref()
                    .map_or("linux/amd64", |p| p.value.as_str());
                builder.str("platform", platform);
                let text = |word: Option<&Located<String>>| {
                    word.map_or_else(String::new, |word| word.value.clone())
                };
                if let Some(debootstrap) = &base.debootstrap {
                    builder
                        .str("suite", &debootstrap.value.suite.value)
                        .str("variant", &text(debootstrap.value.variant.as_ref()))
                        .str("mirror", &text(debootstrap.value.mirror.as_ref()));
                }
                for package in &base.packages {
                    builder.str("package", &package.value);
                }
                for command in &base.run {
                    builder.str("run", command);
                }
                let fingerprint = builder.finish();
                done.insert(base_name, fingerprint);
                ordered.push(BaseImage {
                    name: base_name.to_string(),
                    platform: base
                        .platform
                        .as_ref()
                        .and_then(|p| super::target::Platform::parse(&p.value).ok())
                        .unwrap_or_else(super::target::Platform::runner_default),
                    from: base.from.as_ref().map(|from| from.value.clone()),
                    debootstrap: base.debootstrap.as_ref().map(|d| Debootstrap {
                        suite: d.value.suite.value.clone(),
                        variant: d.value.variant.as_ref().map(|v| v.value.clone()),
                        mirror: d.value.mirror.as_ref().map(|m| m.value.clone()),
                    }),
                    packages: base
                        .packages
                        .iter()
                        .map(|package| package.value.clone())
                        .collect(),
                    run: base.run.clone(),
                    image_ref: format!("pipeline-base/{base_name}:{}", fingerprint.short()),
                    fingerprint,
                });
            }
        }
        ordered
    }

    /// Packages, suite, variant and mirror reach apt-get and debootstrap as
    /// arguments; their grammars keep any of them from reading as an option.
    fn check_base_words(&mut self, base: &crate::spec::BaseSpec) -> bool {
        let errors_before = self.diagnostics.0.len();
        for package in &base.packages {
            if let Err(message) = names::check_package(&package.value) {
                self.error(package, message);
            }
        }
        if let Some(debootstrap) = &base.debootstrap {
            let debootstrap = &debootstrap.value;
            for (what, word) in [
                ("suite", Some(&debootstrap.suite)),
                ("variant", debootstrap.variant.as_ref()),
            ] {
                if let Some(word) = word
                    && let Err(message) = names::check_debian_word(&word.value)
                {
                    self.error(word, format!("debootstrap {what} {message}"));
                }
            }
            if let Some(mirror) = &debootstrap.mirror
                && let Err(message) = names::check_mirror(&mirror.value)
            {
                self.error(mirror, message);
            }
        }
        self.diagnostics.0.len() == errors_before
    }

    fn tree_hash(&mut self, path: &Path, blame: &Located<String>) -> Option<Fingerprint> {
        if let Some(hash) = self.tree_hashes.get(path) {
            return Some(*hash);
        }
        match hash_tree(path) {
            Ok(hash) => {
                self.tree_hashes.insert(path.to_path_buf(), hash);
                Some(hash)
            }
            Err(error) => {
                self.error(blame, error.to_string());
                None
            }
        }
    }

    fn images(
        &mut self,
        targets: &[(Target, &'a Located<String>)],
        language_targets: &HashMap<&str, HashSet<Target>>,
        variants: &[ResolvedVariant<'a>],
        bases: &HashMap<&str, &BaseImage>,
    ) -> Vec<Image> {
        let spec = self.spec;
        let root = self.sources.project_root;
        if spec.workloads.value.is_empty() {
            self.error(
                &spec.workloads,
                "`workloads` is empty: name at least one workload",
            );
        }
        let mut images = Vec::new();
        let mut seen_workloads = HashSet::new();
        for workload in &spec.workloads.value {
            let workload_name = &workload.name.value;
            if !seen_workloads.insert(workload_name.as_str()) {
                self.error(
                    &workload.name,
                    format!("duplicate workload `{workload_name}`"),
                );
                continue;
            }
            if let Err(message) = names::check_name("workload", workload_name) {
                self.error(&workload.name, message);
                continue;
            }
            let workload_dir = root.join("workloads").join(workload_name);
            let manifest_path = workload_dir.join("workload.yaml");
            if !workload_dir.is_dir() {
                self.error_with_help(
                    &workload.name,
                    format!("unknown workload `{workload_name}`: there is no folder workloads/{workload_name}/"),
                    "a workload is a folder workloads/<name>/ with a workload.yaml and one folder per language",
                );
                continue;
            }
            let Some(manifest) = self.manifest(&manifest_path, &workload.name) else {
                continue;
            };
            // Checked once here; every language's run uses it.
            if let Some(result) = &workload.result
                && let Err(message) = compile_regex("`result`", &result.value)
            {
                self.error(result, message);
            }
            let workload_targets = workload.targets.as_ref().and_then(|list| {
                self.narrowing(list, targets, &format!("workload `{workload_name}`"))
            });
            let Some(setup) = self.setup(&manifest, &manifest_path, workload, &workload_dir) else {
                continue;
            };
            let mut builds_wasm = false;
            if workload.languages.value.is_empty() {
                self.error(
                    &workload.languages,
                    format!("workload `{workload_name}` has no languages"),
                );
            }
            let mut seen_languages = HashSet::new();
            for language in &workload.languages.value {
                let language_name = &language.value;
                if !seen_languages.insert(language_name.as_str()) {
                    self.error(
                        language,
                        format!(
                            "duplicate language `{language_name}` in workload `{workload_name}`"
                        ),
                    );
                    continue;
                }
                if let Err(message) = names::check_name("language", language_name) {
                    self.error(language, message);
                    continue;
                }
                let template_dir = root.join("templates").join(language_name);
                if !template_dir.is_dir() {
                    self.error_with_help(
                        language,
                        format!("language `{language_name}` has no templates: there is no folder templates/{language_name}/"),
                        "a language is a folder templates/<language>/ of Dockerfile templates",
                    );
                    continue;
                }
                let source_dir = workload_dir.join(language_name);
                if !source_dir.is_dir() {
                    self.error(
                        language,
                        format!("workload `{workload_name}` has no {language_name} sources: there is no folder workloads/{workload_name}/{language_name}/"),
                    );
                    continue;
                }
                let language_settings = spec
                    .languages
                    .iter()
                    .find(|(name, _)| name.value == *language_name)
                    .and_then(|(_, settings)| settings.as_ref());
                // The experiment's targets, narrowed by the workload's and the language's.
                let image_targets: Vec<&(Target, &Located<String>)> = targets
                    .iter()
                    .filter(|(target, _)| {
                        workload_targets
                            .as_ref()
                            .is_none_or(|set| set.contains(target))
                            && language_targets
                                .get(language_name.as_str())
                                .is_none_or(|set| set.contains(target))
                    })
                    .collect();
                if image_targets.is_empty() && !targets.is_empty() {
                    let location = workload
                        .targets
                        .as_ref()
                        .map_or_else(|| self.at(language), |list| self.at(list));
                    self.diagnostics.push(Diagnostic::at(
                        location,
                        format!("workload `{workload_name}` has no targets left in language `{language_name}`"),
                    ).with_help("the workload's `targets` and the language's `languages.<language>.targets` narrow the experiment's `targets`; they share none here"));
                    continue;
                }
                let run = self.workload_run(&manifest, workload, language_settings, &setup);
                let Some(template_tree) = self.template_tree(&template_dir, language) else {
                    continue;
                };
                let source_tree = self.source_tree(&workload_dir, language_name, language);
                let Some(source_tree) = source_tree else {
                    continue;
                };
                let Ok(vendor) =
                    self.vendor_source(&template_dir, workload_name, language_name, language)
                else {
                    continue;
                };
                let defaults = self.template_defaults(&template_dir, language);
                for variant in variants {
                    for &(target, target_at) in &image_targets {
                        if variant
                            .targets
                            .as_ref()
                            .is_some_and(|kept| !kept.contains(target))
                        {
                            continue;
                        }
                        let runtime = if target.is_wasm() {
                            RuntimeKind::Wasm
                        } else {
                            variant.runtime
                        };
                        // Precompiled or not, a module starts in `/`.
                        builds_wasm |= runtime == RuntimeKind::Wasm;
                        let (template_name, template_at) = if target.is_wasm() {
                            (&variant.wasm_template, variant.wasm_template_at)
                        } else {
                            (&variant.native_template, variant.native_template_at)
                        };
                        let template = PathBuf::from("templates")
                            .join(language_name)
                            .join(template_name);
                        if !root.join(&template).is_file() {
                            let blame = template_at.unwrap_or(
                                if variant.name.referenced == DEFAULT_VARIANT.referenced {
                                    target_at
                                } else {
                                    variant.name
                                },
                            );
                            self.error(
                                blame,
                                format!(
                                    "language `{language_name}` has no {} template for variant `{}`: {} is missing",
                                    target.kind(),
                                    variant.name.value,
                                    template.display()
                                ),
                            );
                            continue;
                        }
                        if !crate::limits::resolves_inside(&root.join(&template), &template_dir) {
                            self.error(
                                template_at.unwrap_or(language),
                                format!(
                                    "{} leads outside templates/{language_name}/ through a symbolic link",
                                    template.display()
                                ),
                            );
                            continue;
                        }
                        let language_variant_vars = language_settings.and_then(|settings| {
                            settings
                                .variants
                                .iter()
                                .find(|(name, _)| name.value == variant.name.value)
                                .map(|(_, settings)| &settings.vars)
                        });
                        let layers = [
                            Some(&spec.vars),
                            variant.vars,
                            language_settings.map(|settings| &settings.vars),
                            language_variant_vars,
                        ];
                        let (vars, used_bases) = self.merge_vars(&defaults, &layers, bases);
                        let context = |pattern: &str| {
                            pattern
                                .replace("{experiment}", &spec.experiment.value)
                                .replace("{workload}", workload_name)
                                .replace("{language}", language_name)
                                .replace("{variant}", &variant.name.value)
                        };
                        let repository = context(
                            spec.registry
                                .repository
                                .as_ref()
                                .map_or(DEFAULT_REPOSITORY, |r| r.value.as_str()),
                        );
                        let index_tag = context(
                            spec.registry
                                .tag
                                .as_ref()
                                .map_or(DEFAULT_TAG, |t| t.value.as_str()),
                        );
                        self.check_reference(&repository, &index_tag, target, workload);
                        images.push(Image {
                            workload: workload_name.clone(),
                            language: language_name.clone(),
                            variant: variant.name.value.clone(),
                            target: target.clone(),
                            runtime,
                            template,
                            vars,
                            bases: used_bases,
                            run: run.clone(),
                            repository,
                            index_tag,
                            template_tree,
                            source_tree,
                            has_data: self
                                .sources
                                .project_root
                                .join("workloads")
                                .join(workload_name)
                                .join("data")
                                .is_dir(),
                            vendor: vendor.clone(),
                        });
                    }
                }
            }
            if builds_wasm && setup.workdir != "/" {
                self.wasm_workdir_error(workload, &manifest, &manifest_path);
            }
        }
        images
    }

    /// An image's repository, its index tag and its per-platform tag must
    /// follow the OCI reference grammar; a problem is blamed on the
    /// `registry` pattern that made it, or on the workload's name.
    fn check_reference(
        &mut self,
        repository: &str,
        index_tag: &str,
        target: &Target,
        workload: &crate::spec::WorkloadSpec,
    ) {
        // A bad name is reported where it is written; its reference would only repeat it.
        let spec = self.spec;
        let names_valid = [
            ("experiment", &spec.experiment.value),
            ("workload", &workload.name.value),
        ]
        .iter()
        .all(|(what, name)| names::check_name(what, name).is_ok())
            && spec.variants.as_ref().is_none_or(|variants| {
                variants
                    .value
                    .keys()
                    .all(|name| names::check_name("variant", &name.value).is_ok())
            });
        if !names_valid {
            return;
        }
        let registry = &self.spec.registry;
        if let Err(message) = names::check_repository(repository) {
            self.error(
                registry.repository.as_ref().unwrap_or(&workload.name),
                message,
            );
        }
        let platform_tag = format!("{index_tag}-{}", target.slug());
        for tag in [index_tag, platform_tag.as_str()] {
            if let Err(message) = names::check_tag(tag) {
                self.error(registry.tag.as_ref().unwrap_or(&workload.name), message);
                break;
            }
        }
    }

    /// The wasmtime shim runs a module with `/` preopened as `/` and no other
    /// directory; wasi-libc starts every program in `/`, so a WORKDIR would
    /// be in the image config but never in effect.
    fn wasm_workdir_error(
        &mut self,
        workload: &crate::spec::WorkloadSpec,
        manifest: &WorkloadManifest,
        manifest_path: &Path,
    ) {
        let location = match (&workload.workdir, &manifest.workdir) {
            (Some(located), _) => self.at(located),
            (None, Some(located)) => SourceLocation::from_yaml(manifest_path, located.referenced),
            (None, None) => return,
        };
        self.diagnostics.push(
            Diagnostic::at(
                location,
                format!(
                    "workload `{}` is built for wasm, where a module always starts in `/`: WASI preview 1 has no working directory",
                    workload.name.value
                ),
            )
            .with_help("keep the default `workdir: /` and place files relative to `/`, or give the workload native `targets` only"),
        );
    }

    /// Validates a `targets` list that narrows the experiment's, returning the targets it keeps.
    fn narrowing(
        &mut self,
        list: &Located<Vec<Located<String>>>,
        experiment_targets: &[(Target, &Located<String>)],
        owner: &str,
    ) -> Option<HashSet<Target>> {
        if list.value.is_empty() {
            self.error(list, format!("`targets` of {owner} is empty: name at least one of the experiment's targets, or leave it out"));
            return None;
        }
        let mut kept = HashSet::new();
        let errors_before = self.diagnostics.0.len();
        for entry in &list.value {
            match Target::parse(&entry.value) {
                Ok(target) if !experiment_targets.iter().any(|(known, _)| *known == target) => {
                    let known: Vec<String> = experiment_targets
                        .iter()
                        .map(|(known, _)| known.to_string())
                        .collect();
                    self.error_with_help(
                        entry,
                        format!("{owner} names target `{target}`, which is not among the experiment's `targets`"),
                        format!("`targets` here narrows the experiment's: {}", known.join(", ")),
                    );
                }
                Ok(target) => {
                    if !kept.insert(target.clone()) {
                        self.error(entry, format!("duplicate target `{target}`"));
                    }
                }
                Err(error) => self.error(entry, error.to_string()),
            }
        }
        // A list with a bad entry narrows nothing, so it causes no errors of its own further on.
        (self.diagnostics.0.len() == errors_before).then_some(kept)
    }

    /// `languages.<language>.targets`, validated once per language.
    fn language_targets(
        &mut self,
        targets: &[(Target, &Located<String>)],
    ) -> HashMap<&'a str, HashSet<Target>> {
        let spec = self.spec;
        let mut narrowed = HashMap::new();
        for (name, settings) in &spec.languages {
            if let Some(list) = settings
                .as_ref()
                .and_then(|settings| settings.targets.as_ref())
                && let Some(kept) =
                    self.narrowing(list, targets, &format!("language `{}`", name.value))
            {
                narrowed.insert(name.value.as_str(), kept);
            }
        }
        narrowed
    }

    /// Working directory, data placements and environment: `workload.yaml`'s,
    /// with the experiment's overrides.
    fn setup(
        &mut self,
        manifest: &WorkloadManifest,
        manifest_path: &Path,
        workload: &crate::spec::WorkloadSpec,
        workload_dir: &Path,
    ) -> Option<Setup> {
        let spec_path = self.sources.spec_path;
        let errors_before = self.diagnostics.0.len();
        let locate =
            |path: &Path, located: serde_saphyr::Location| SourceLocation::from_yaml(path, located);
        let (workdir_at, workdir_file) = match (&workload.workdir, &manifest.workdir) {
            (Some(located), _) => (Some(located), spec_path),
            (None, Some(located)) => (Some(located), manifest_path),
            (None, None) => (None, manifest_path),
        };
        let workdir = match workdir_at {
            Some(located) => match inputs::workdir(&located.value) {
                Ok(workdir) => workdir,
                Err(message) => {
                    self.diagnostics.push(Diagnostic::at(
                        locate(workdir_file, located.referenced),
                        message,
                    ));
                    "/".to_string()
                }
            },
            None => "/".to_string(),
        };
        let (placements, placements_file) = match (&workload.data, &manifest.data) {
            (Some(list), _) => (Some(list), spec_path),
            (None, Some(list)) => (Some(list), manifest_path),
            (None, None) => (None, manifest_path),
        };
        let data = match placements {
            Some(list) => {
                let mut data: Vec<DataCopy> = Vec::new();
                for placement in &list.value {
                    match inputs::data_copy(
                        &placement.from.value,
                        &placement.to.value,
                        &workdir,
                        workload_dir,
                        &workload.name.value,
                    ) {
                        Ok(copy) => data.push(copy),
                        Err((side, message)) => {
                            let at = match side {
                                inputs::Side::From => &placement.from,
                                inputs::Side::To => &placement.to,
                            };
                            self.diagnostics.push(Diagnostic::at(
                                locate(placements_file, at.referenced),
                                message,
                            ));
                        }
                    }
                }
                data
            }
            None => inputs::default_data(workload_dir.join("data").is_dir()),
        };
        // The experiment's variables replace workload.yaml's of the same name, in place.
        let mut env: Vec<EnvVar> = Vec::new();
        for (entries, file) in [(&manifest.env, manifest_path), (&workload.env, spec_path)] {
            for (name, value) in entries {
                let checked = inputs::env_name(&name.value)
                    .map_err(|message| (name.referenced, message))
                    .and_then(|()| {
                        inputs::env_value(&name.value, &value.value)
                            .map_err(|message| (value.referenced, message))
                    });
                match checked {
                    Ok(variable) => {
                        match env.iter_mut().find(|known| known.name == variable.name) {
                            Some(known) => known.value = variable.value,
                            None => env.push(variable),
                        }
                    }
                    Err((at, message)) => {
                        self.diagnostics
                            .push(Diagnostic::at(locate(file, at), message));
                    }
                }
            }
        }
        (self.diagnostics.0.len() == errors_before).then_some(Setup { workdir, data, env })
    }

    /// The language's templates and the shared includes beside the language folders.
    fn template_tree(
        &mut self,
        template_dir: &Path,
        blame: &Located<String>,
    ) -> Option<Fingerprint> {
        let mut builder = FingerprintBuilder::new("templates");
        builder.fingerprint("language", self.tree_hash(template_dir, blame)?);
        let templates = self.sources.project_root.join("templates");
        // A template may include anything under templates/: files beside the
        // language folders and folders of shared includes. Other languages'
        // folders (those with Dockerfile templates) are theirs.
        let is_language = |dir: &Path| {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries.flatten().any(|entry| {
                    entry
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".Dockerfile.j2")
                })
            })
        };
        let mut shared: Vec<PathBuf> = std::fs::read_dir(&templates)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| path.is_file() || (path.is_dir() && !is_language(path)))
                    .collect()
            })
            .unwrap_or_default();
        shared.sort();
        for path in shared {
            builder.str(
                "shared",
                &path.file_name().unwrap_or_default().to_string_lossy(),
            );
            builder.fingerprint("contents", self.tree_hash(&path, blame)?);
        }
        Some(builder.finish())
    }

    /// A file of the project tree; a failure to read it is blamed on the spec
    /// entry that led to it, or located in the file when it is not UTF-8.
    fn read_project_file(&mut self, path: &Path, blame: &Located<String>) -> Option<String> {
        match crate::limits::read_regular_file(path) {
            Ok(text) => Some(text),
            Err(error) if crate::limits::NotUtf8::of(&error).is_some() => {
                self.diagnostics
                    .push(crate::spec::read_diagnostic(path, &error));
                None
            }
            Err(error) => {
                self.error(blame, format!("failed to read {}: {error}", path.display()));
                None
            }
        }
    }

    fn manifest(&mut self, path: &Path, blame: &Located<String>) -> Option<WorkloadManifest> {
        let text = self.read_project_file(path, blame)?;
        match crate::spec::parse_workload_manifest(&text, path) {
            Ok(manifest) => {
                let mut valid = true;
                if let Some(result) = &manifest.result
                    && let Err(message) = compile_regex("`result`", &result.value)
                {
                    let location = SourceLocation::from_yaml(path, result.referenced);
                    self.diagnostics.push(Diagnostic::at(location, message));
                    valid = false;
                }
                // Templates write it into paths and JSON strings of the Dockerfile.
                if let Err(message) = names::check_file_name("`binary`", &manifest.binary.value) {
                    let location = SourceLocation::from_yaml(path, manifest.binary.referenced);
                    self.diagnostics.push(Diagnostic::at(location, message));
                    valid = false;
                }
                if let Some(marker) = &manifest.marker
                    && let Err(message) = check_marker(&marker.value)
                {
                    let location = SourceLocation::from_yaml(path, marker.referenced);
                    self.diagnostics.push(Diagnostic::at(location, message));
                    valid = false;
                }
                valid.then_some(manifest)
            }
            Err(diagnostics) => {
                self.diagnostics.0.extend(diagnostics.0);
                None
            }
        }
    }

    fn workload_run(
        &mut self,
        manifest: &WorkloadManifest,
        workload: &crate::spec::WorkloadSpec,
        language: Option<&crate::spec::LanguageSpec>,
        setup: &Setup,
    ) -> WorkloadRun {
        // The most specific marker wins: language, then workload entry, then workload.yaml.
        let spec_marker = language
            .and_then(|language| language.marker.as_ref())
            .or(workload.marker.as_ref());
        if let Some(marker) = spec_marker
            && let Err(message) = check_marker(&marker.value)
        {
            self.error(marker, message);
        }
        let marker = spec_marker.or(manifest.marker.as_ref()).map_or_else(
            || MarkerSpec {
                pattern: DEFAULT_MARKER_PATTERN.to_string(),
                unit: TimeUnit::Ns,
            },
            |marker| marker.value.clone(),
        );
        let result = workload.result.as_ref().or(manifest.result.as_ref());
        WorkloadRun {
            binary: manifest.binary.value.clone(),
            args: workload
                .args
                .clone()
                .unwrap_or_else(|| manifest.args.clone()),
            result_pattern: result.map(|result| result.value.clone()),
            marker,
            workdir: setup.workdir.clone(),
            data: setup.data.clone(),
            env: setup.env.clone(),
        }
    }

    /// The language's sources, the workload's shared data and its manifest.
    fn source_tree(
        &mut self,
        workload_dir: &Path,
        language: &str,
        blame: &Located<String>,
    ) -> Option<Fingerprint> {
        let mut builder = FingerprintBuilder::new("sources");
        builder.fingerprint(
            "language",
            self.tree_hash(&workload_dir.join(language), blame)?,
        );
        // workload.yaml is not in the build context: what of it a build
        // sees reaches it through the template's inputs.
        let data = workload_dir.join("data");
        if data.is_dir() {
            builder.fingerprint("data", self.tree_hash(&data, blame)?);
        }
        Some(builder.finish())
    }

    /// The language's `vendor.yaml`, applied to one workload's sources:
    /// `Some(None)` when the language does not vendor or the sources lack a
    /// key file, `None` after a diagnostic.
    fn vendor_source(
        &mut self,
        template_dir: &Path,
        workload: &str,
        language: &str,
        blame: &Located<String>,
    ) -> Result<Option<VendorSource>, Reported> {
        let path = template_dir.join("vendor.yaml");
        if !path.exists() {
            return Ok(None);
        }
        let text = self.read_project_file(&path, blame).ok_or(Reported)?;
        let spec = match crate::spec::parse_vendor_spec(&text, &path) {
            Ok(spec) => spec,
            Err(diagnostics) => {
                self.diagnostics.0.extend(diagnostics.0);
                return Err(Reported);
            }
        };
        let errors_before = self.diagnostics.0.len();
        let mut located_error = |at: serde_saphyr::Location, message: String| {
            self.diagnostics.push(Diagnostic::at(
                SourceLocation::from_yaml(&path, at),
                message,
            ));
        };
        if spec.command.value.first().is_none_or(String::is_empty) {
            located_error(
                spec.command.referenced,
                "`command` must name a program, then its arguments".into(),
            );
        }
        if spec.keys.value.is_empty() {
            located_error(
                spec.keys.referenced,
                "`keys` must name at least one file, such as the lockfile".into(),
            );
        }
        // Both are names inside the sources folder, joined to paths on the runner.
        for name in &spec.keys.value {
            if let Err(message) = super::names::check_file_name("key", name) {
                located_error(spec.keys.referenced, message);
            }
        }
        if let Err(message) = super::names::check_file_name("`output`", &spec.output.value) {
            located_error(spec.output.referenced, message);
        }
        if self.diagnostics.0.len() != errors_before {
            return Err(Reported);
        }
        let sources = PathBuf::from("workloads").join(workload).join(language);
        let source_dir = self.sources.project_root.join(&sources);
        let mut key = FingerprintBuilder::new("vendor");
        for argument in &spec.command.value {
            key.str("argument", argument);
        }
        key.str("output", &spec.output.value);
        for name in &spec.keys.value {
            let file = source_dir.join(name);
            if !file.exists() {
                return Ok(None);
            }
            let contents = self.read_project_file(&file, blame).ok_or(Reported)?;
            key.str(name, &contents);
        }
        Ok(Some(VendorSource {
            command: spec.command.value,
            output: spec.output.value,
            sources,
            key: key.finish(),
        }))
    }

    fn template_defaults(
        &mut self,
        template_dir: &Path,
        blame: &Located<String>,
    ) -> Map<String, Value> {
        let path = template_dir.join("defaults.yaml");
        if !path.is_file() {
            return Map::new();
        }
        let Some(text) = self.read_project_file(&path, blame) else {
            return Map::new();
        };
        match crate::spec::parse_template_defaults(&text, &path) {
            Ok(defaults) => defaults,
            Err(diagnostics) => {
                self.diagnostics.0.extend(diagnostics.0);
                Map::new()
            }
        }
    }

    /// Later layers override earlier ones key by key; `{base: name}` values
    /// become that base's image ref and make the build depend on it.
    fn merge_vars(
        &mut self,
        defaults: &Map<String, Value>,
        layers: &[Option<&VarMap>],
        bases: &HashMap<&str, &BaseImage>,
    ) -> (Map<String, Value>, Vec<String>) {
        let mut merged = defaults.clone();
        let mut used_bases = Vec::new();
        for layer in layers.iter().flatten() {
            for (key, value) in *layer {
                let mut resolved = value.value.clone();
                let mut unknown = Vec::new();
                replace_base_refs(&mut resolved, &mut |base_name| {
                    if let Some(base) = bases.get(base_name) {
                        if !used_bases.iter().any(|used| used == base_name) {
                            used_bases.push(base_name.to_string());
                        }
                        // Completed with the registry address once it is known.
                        Some(format!("{{registry}}/{}", base.image_ref))
                    } else {
                        unknown.push(base_name.to_string());
                        None
                    }
                });
                if !unknown.is_empty() {
                    for base_name in unknown {
                        self.error(
                            value,
                            format!("variable `{}` names unknown base `{base_name}`", key.value),
                        );
                    }
                    continue;
                }
                merged.insert(key.value.clone(), resolved);
            }
        }
        (merged, used_bases)
    }

    /// Every template variable the spec sets, once, wherever it is set.
    fn check_vars(&mut self) {
        let spec = self.spec;
        let mut layers: Vec<&VarMap> = vec![&spec.vars];
        if let Some(variants) = &spec.variants {
            layers.extend(
                variants
                    .value
                    .values()
                    .flatten()
                    .map(|variant| &variant.vars),
            );
        }
        for settings in spec.languages.values().flatten() {
            layers.push(&settings.vars);
            layers.extend(settings.variants.values().map(|variant| &variant.vars));
        }
        for layer in layers {
            for (name, value) in layer {
                if let Err(message) = inputs::var_value(&name.value, &value.value) {
                    self.error(value, message);
                }
            }
        }
    }

    /// Settings under `languages:` that no workload uses are almost always typos.
    fn check_language_settings(&mut self, variants: &[ResolvedVariant<'_>]) {
        let spec = self.spec;
        let used: HashSet<&str> = spec
            .workloads
            .value
            .iter()
            .flat_map(|workload| {
                workload
                    .languages
                    .value
                    .iter()
                    .map(|language| language.value.as_str())
            })
            .collect();
        for (name, settings) in &spec.languages {
            if !used.contains(name.value.as_str()) {
                self.error(
                    name,
                    format!(
                        "settings for language `{}`, which no workload uses",
                        name.value
                    ),
                );
            }
            for (variant, _) in settings
                .iter()
                .flat_map(|settings| settings.variants.iter())
            {
                if !variants
                    .iter()
                    .any(|known| known.name.value == variant.value)
                {
                    self.error(variant, format!("unknown variant `{}`", variant.value));
                }
            }
        }
    }

    fn cells(
        &mut self,
        images: &[Image],
        targets: &[(Target, &'a Located<String>)],
        variants: &[ResolvedVariant<'_>],
    ) -> (Vec<HostSettings>, Vec<Cell>) {
        let spec = self.spec;
        let directory = self.sources.hosts;
        if spec.runs.value.is_empty() {
            self.error(
                &spec.runs,
                "`runs` is empty: say which hosts run the images",
            );
        }
        let mut hosts: Vec<HostSettings> = Vec::new();
        let mut host_index: HashMap<String, usize> = HashMap::new();
        let mut cells = Vec::new();
        let mut seen_cells = HashSet::new();
        let mut run_names = HashSet::new();
        for run in &spec.runs.value {
            if let Some(name) = &run.name
                && !run_names.insert(name.value.as_str())
            {
                self.error(name, format!("duplicate run name `{}`", name.value));
            }
            // Which images this block covers.
            let target_filter = self.filter(run.targets.as_deref(), "target", |text| {
                Target::parse(text)
                    .ok()
                    .filter(|target| targets.iter().any(|(known, _)| known == target))
                    .map(|target| target.slug())
            });
            let workload_filter = self.filter(run.workloads.as_deref(), "workload", |text| {
                spec.workloads
                    .value
                    .iter()
                    .any(|w| w.name.value == text)
                    .then(|| text.to_string())
            });
            let language_filter = self.filter(run.languages.as_deref(), "language", |text| {
                spec.workloads
                    .value
                    .iter()
                    .any(|w| w.languages.value.iter().any(|l| l.value == text))
                    .then(|| text.to_string())
            });
            let variant_filter = self.filter(run.variants.as_deref(), "variant", |text| {
                variants
                    .iter()
                    .any(|v| v.name.value == text)
                    .then(|| text.to_string())
            });
            let selected_images: Vec<usize> = (0..images.len())
                .filter(|&index| {
                    let image = &images[index];
                    allows(target_filter.as_ref(), &image.target.slug())
                        && allows(workload_filter.as_ref(), &image.workload)
                        && allows(language_filter.as_ref(), &image.language)
                        && allows(variant_filter.as_ref(), &image.variant)
                })
                .collect();

            // Which hosts.
            if run.hosts.value.is_empty() {
                self.error(
                    &run.hosts,
                    "`hosts` is empty: name inventory hosts or groups",
                );
            }
            let mut run_hosts: Vec<(usize, &Located<String>)> = Vec::new();
            // A set, not a scan of `run_hosts`: a block may select many thousands of hosts.
            let mut run_host_seen: HashSet<usize> = HashSet::new();
            for pattern in &run.hosts.value {
                let Some(names) = directory.expand(&pattern.value) else {
                    self.error_with_help(
                        pattern,
                        format!("unknown host or group `{}` in {}", pattern.value, directory.source_path().display()),
                        "`pipeline inventory --list` shows the hosts and groups the inventory defines",
                    );
                    continue;
                };
                if names.is_empty() {
                    self.error(pattern, format!("group `{}` has no hosts", pattern.value));
                }
                for name in names {
                    let index = if let Some(index) = host_index.get(&name) {
                        *index
                    } else {
                        let vars = directory.host_vars(&name).cloned().unwrap_or_default();
                        let settings = names::check_host_name(&name)
                            .and_then(|()| HostSettings::from_vars(&name, &vars));
                        match settings {
                            Ok(settings) => {
                                hosts.push(settings);
                                host_index.insert(name.clone(), hosts.len() - 1);
                                hosts.len() - 1
                            }
                            Err(message) => {
                                let location = directory.host_location(&name).map_or_else(
                                    || self.at(pattern),
                                    |(line, column)| {
                                        SourceLocation::new(directory.source_path(), line, column)
                                    },
                                );
                                self.diagnostics.push(Diagnostic::at(location, message));
                                continue;
                            }
                        }
                    };
                    if run_host_seen.insert(index) {
                        run_hosts.push((index, pattern));
                    }
                }
            }

            if run.engines.value.is_empty() {
                self.error(
                    &run.engines,
                    "`engines` is empty: choose docker, containerd or both",
                );
            }
            for engine in &run.engines.value {
                for (host, pattern) in &run_hosts {
                    if !hosts[*host].has_engine(engine.value.as_str()) {
                        self.error_with_help(
                            engine,
                            format!(
                                "host `{}` (from `{}`) has no {} engine",
                                hosts[*host].name,
                                pattern.value,
                                engine.value.as_str()
                            ),
                            "list it in the host's `pipeline_engines`, or select other hosts",
                        );
                    }
                }
            }
            let scenarios: Vec<Scenario> = match &run.scenarios {
                Some(list) if list.value.is_empty() => {
                    self.error(list, "`scenarios` is empty: choose fresh, cached or both");
                    Vec::new()
                }
                Some(list) => {
                    let mut unique = Vec::new();
                    for scenario in &list.value {
                        if unique.contains(&scenario.value) {
                            self.error(
                                scenario,
                                format!("duplicate scenario `{}`", scenario.value.as_str()),
                            );
                        } else {
                            unique.push(scenario.value);
                        }
                    }
                    unique
                }
                None => vec![Scenario::Fresh],
            };
            let native_runtime = run
                .runtimes
                .native
                .as_ref()
                .map_or("runc", |r| r.value.as_str());
            let wasm_runtime = run
                .runtimes
                .wasm
                .as_ref()
                .map_or("wasmtime", |r| r.value.as_str());

            // Every target of an image this block selects must have a host that
            // can run it, with each kind of runtime its images need.
            let kinds = [RuntimeKind::Native, RuntimeKind::Wasm];
            for ((target, target_at), kind) in targets
                .iter()
                .flat_map(|target| kinds.iter().map(move |kind| (target, *kind)))
            {
                if !selected_images
                    .iter()
                    .any(|&index| images[index].target == *target && images[index].runtime == kind)
                {
                    continue;
                }
                let runtime = match kind {
                    RuntimeKind::Native => native_runtime,
                    RuntimeKind::Wasm => wasm_runtime,
                };
                let can_run = run_hosts
                    .iter()
                    .any(|(host, _)| host_runs(&hosts[*host], target, runtime));
                if !can_run && !run_hosts.is_empty() {
                    let blame = run
                        .targets
                        .as_ref()
                        .and_then(|list| {
                            list.iter()
                                .find(|t| Target::parse(&t.value).ok().as_ref() == Some(target))
                        })
                        .unwrap_or(target_at);
                    let needs = if target.is_wasm() {
                        format!("a host with the `{runtime}` runtime in `pipeline_runtimes`")
                    } else {
                        format!(
                            "a host with `pipeline_platform: {target}` and the `{runtime}` runtime"
                        )
                    };
                    let selected: Vec<String> = run_hosts
                        .iter()
                        .map(|(host, _)| {
                            format!("{} ({})", hosts[*host].name, hosts[*host].platform)
                        })
                        .collect();
                    self.error_with_help(
                        blame,
                        format!("no selected host can run target `{target}`: it needs {needs}"),
                        format!("selected hosts: {}", selected.join(", ")),
                    );
                }
            }

            for &image_index in &selected_images {
                let image = &images[image_index];
                let runtime = match image.runtime {
                    RuntimeKind::Native => native_runtime,
                    RuntimeKind::Wasm => wasm_runtime,
                };
                for (host, _) in &run_hosts {
                    if !host_runs(&hosts[*host], &image.target, runtime) {
                        continue;
                    }
                    for engine in &run.engines.value {
                        if !hosts[*host].has_engine(engine.value.as_str()) {
                            continue;
                        }
                        for scenario in &scenarios {
                            let cell = Cell {
                                image: image_index,
                                host: *host,
                                engine: engine.value,
                                runtime: runtime.to_string(),
                                scenario: *scenario,
                            };
                            // Two blocks may select the same cell; measure it once.
                            if seen_cells.insert((image_index, *host, engine.value, *scenario)) {
                                cells.push(cell);
                            }
                            // Stop before the cells themselves exhaust memory.
                            if cells.len() > MAX_CELLS {
                                self.error(
                                    &run.hosts,
                                    format!("the plan has more than {MAX_CELLS} cells, the limit"),
                                );
                                return (hosts, cells);
                            }
                        }
                    }
                }
            }
        }
        (hosts, cells)
    }

    /// Validates a run block's filter list, returning the normalised allowed values.
    fn filter(
        &mut self,
        list: Option<&[Located<String>]>,
        what: &str,
        known: impl Fn(&str) -> Option<String>,
    ) -> Option<HashSet<String>> {
        let list = list?;
        let mut allowed = HashSet::new();
        for entry in list {
            match known(&entry.value) {
                Some(value) => {
                    allowed.insert(value);
                }
                None => self.error(
                    entry,
                    format!(
                        "this run block names {what} `{}`, which the experiment does not build",
                        entry.value
                    ),
                ),
            }
        }
        Some(allowed)
    }
}

static DEFAULT_VARIANT: std::sync::LazyLock<Located<String>> = std::sync::LazyLock::new(|| {
    Located::new(
        "optimized".to_string(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
});

/// How many stages [`super::expand::expand`] makes, computed without making
/// them; an index per image is the most there can be.
fn stage_count(
    bases: usize,
    images: &[Image],
    hosts: usize,
    cells: &[Cell],
    measure: &Measure,
) -> usize {
    let runs_per_cell = measure.repetitions as usize + measure.warmup as usize;
    let pulls = cells
        .iter()
        .filter(|cell| cell.scenario == Scenario::Cached)
        .count();
    bases
        .saturating_add(images.len().saturating_mul(4))
        .saturating_add(hosts)
        .saturating_add(pulls)
        .saturating_add(cells.len().saturating_mul(runs_per_cell))
}

/// Keeps the images some cell runs, and every image of a workload that no
/// cell runs (built for the images table alone); renumbers the cells' images.
fn needed_images(
    images: Vec<Image>,
    mut cells: Vec<Cell>,
) -> (Vec<Image>, Vec<Cell>, Vec<WorkloadImages>) {
    let mut runs = vec![false; images.len()];
    for cell in &cells {
        runs[cell.image] = true;
    }
    let measured: HashSet<&str> = cells
        .iter()
        .map(|cell| images[cell.image].workload.as_str())
        .collect();
    let mut summaries: Vec<WorkloadImages> = Vec::new();
    let mut keep = vec![false; images.len()];
    for (index, image) in images.iter().enumerate() {
        let position = summaries
            .iter()
            .position(|summary| summary.workload == image.workload)
            .unwrap_or_else(|| {
                summaries.push(WorkloadImages {
                    workload: image.workload.clone(),
                    run: 0,
                    unrun: 0,
                    not_planned: Vec::new(),
                });
                summaries.len() - 1
            });
        let summary = &mut summaries[position];
        if runs[index] {
            summary.run += 1;
            keep[index] = true;
        } else if !measured.contains(image.workload.as_str()) {
            summary.unrun += 1;
            keep[index] = true;
        } else {
            summary.not_planned.push(image.path());
        }
    }
    let mut new_index = vec![usize::MAX; images.len()];
    let mut kept = Vec::with_capacity(images.len());
    for (index, image) in images.into_iter().enumerate() {
        if keep[index] {
            new_index[index] = kept.len();
            kept.push(image);
        }
    }
    for cell in &mut cells {
        cell.image = new_index[cell.image];
    }
    (kept, cells, summaries)
}

fn allows(filter: Option<&HashSet<String>>, value: &str) -> bool {
    filter.is_none_or(|allowed| allowed.contains(value))
}

/// A native image, even one the wasm runtime runs (a module compiled ahead
/// of time for the platform), needs a host of its platform.
fn host_runs(host: &HostSettings, target: &Target, runtime: &str) -> bool {
    match target {
        Target::Native(platform) => host.platform == *platform && host.has_runtime(runtime),
        Target::Wasm => host.has_runtime(runtime),
    }
}

/// Covers what decides where and how a host measures; credentials, key
/// files and concurrency do not change a measurement, so editing them (or
/// cloning the project elsewhere) keeps every result valid.
fn host_fingerprint(host: &HostSettings) -> Fingerprint {
    let mut builder = FingerprintBuilder::new("host");
    builder
        .str("name", &host.name)
        .str("platform", &host.platform.to_string())
        .str("engines", &host.engines.join(","))
        .str("runtimes", &host.runtimes.join(","))
        .str("docker_socket", &host.docker_socket)
        .str("containerd_socket", &host.containerd_socket)
        .str("containerd_namespace", &host.containerd_namespace)
        .str("cgroup_parent", host.cgroup_parent.as_deref().unwrap_or(""));
    // Only when set, so hosts without one keep their fingerprints.
    if let Some(endpoint) = &host.containerd_pull_endpoint {
        builder.str("containerd_pull_endpoint", endpoint);
    }
    match &host.connection {
        Connection::Local => builder.str("connection", "local"),
        Connection::Ssh { address, port, .. } => builder
            .str("connection", "ssh")
            .str("address", address)
            .str("port", &port.to_string()),
    };
    builder.finish()
}

/// A problem was added to the diagnostics; the caller skips what it was making.
struct Reported;

fn per_kind<T>(settings: &PerStageKind<T>, kind: StageKind) -> Option<&T> {
    match kind {
        StageKind::Base => settings.base.as_ref(),
        StageKind::Vendor => settings.vendor.as_ref(),
        StageKind::Render => settings.render.as_ref(),
        StageKind::Build => settings.build.as_ref(),
        StageKind::Push => settings.push.as_ref(),
        StageKind::Index => settings.index.as_ref(),
        StageKind::PrepareHost => settings.prepare_host.as_ref(),
        StageKind::Pull => settings.pull.as_ref(),
        StageKind::Run => settings.run.as_ref(),
        StageKind::Aggregate => settings.aggregate.as_ref(),
    }
}

/// Replaces every `{base: name}` object inside `value` with the image ref
/// `lookup` gives; `None` from `lookup` leaves the object as it is.
fn replace_base_refs(value: &mut Value, lookup: &mut dyn FnMut(&str) -> Option<String>) {
    match value {
        Value::Object(map) if map.len() == 1 && map.get("base").is_some_and(Value::is_string) => {
            let name = map
                .get("base")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(image_ref) = lookup(&name) {
                *value = Value::String(image_ref);
            }
        }
        Value::Object(map) => map
            .values_mut()
            .for_each(|item| replace_base_refs(item, lookup)),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| replace_base_refs(item, lookup)),
        _ => {}
    }
}

/// regex's message draws the pattern over several lines with a caret; the
/// diagnostic already points at the pattern, so only the reason is kept.
fn compile_regex(what: &str, pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|error| {
        let text = error.to_string();
        let reason = text.lines().last().unwrap_or_default();
        format!(
            "{what} is not a valid regex: {}",
            reason.trim_start_matches("error: ")
        )
    })
}

fn check_marker(marker: &MarkerSpec) -> Result<(), String> {
    let regex = compile_regex("marker `pattern`", &marker.pattern)?;
    if regex.capture_names().flatten().any(|name| name == "ts") {
        Ok(())
    } else {
        Err("marker `pattern` needs a named capture `ts` for the timestamp, as in `START=(?P<ts>\\d+)`".into())
    }
}

fn check_placeholders(pattern: &str) -> Result<(), String> {
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("unclosed `{{` in `{pattern}`"));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}`; known: {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Base image refs in vars carry `{registry}` until the address is known.
fn complete_registry(vars: &mut Map<String, Value>, registry: &str) {
    fn complete(value: &mut Value, registry: &str) {
        match value {
            Value::String(text) => {
                if let Some(rest) = text.strip_prefix("{registry}/") {
                    *text = format!("{registry}/{rest}");
                }
            }
            Value::Object(map) => map.values_mut().for_each(|item| complete(item, registry)),
            Value::Array(items) => items.iter_mut().for_each(|item| complete(item, registry)),
            _ => {}
        }
    }
    vars.values_mut()
        .for_each(|value| complete(value, registry));
}

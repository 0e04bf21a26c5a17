//! Backends without engines: a builder, a registry and hosts that answer at
//! once with made-up but deterministic values, and that can be told to fail
//! the ways the real ones do (a registry's 503, a dropped SSH session, a
//! container that fails or hangs, a panic). They exist to test the walker,
//! the handlers, the journal and the tables, and failures that are hard to
//! produce on the lab; the lab tests cover the real backends.
//!
//! The three share one world: the builder pushes into the registry, and the
//! hosts pull only what the registry holds, so a stage that ran before the
//! stages it needs fails as it would for real.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pipeline::agent::wire::{AgentCall, AgentError, AgentRequest, AgentResponse, MeasureRequest};
use pipeline::backend::builder::{BaseRecipe, BuildContext, BuildError};
use pipeline::backend::host::{BoxFuture, HostConnector, HostError, HostSession};
use pipeline::backend::registry::{
    ImageRef, IndexEntry, Manifest, OCI_INDEX, OCI_MANIFEST, RegistryError, sha256_digest,
};
use pipeline::backend::{Backends, EngineError, ImageBuilder, Registry, WorkLog};
use pipeline::events::{HostFacts, ImageRecord, RunRecord};
use pipeline::inventory::HostSettings;
use pipeline::plan::target::Platform;
use pipeline::spec::{Engine, Scenario};
use tokio_util::sync::CancellationToken;

/// A hung call that nobody cancels gives up after this, so a broken cancel
/// path fails its test instead of hanging it.
const HANG_LIMIT: Duration = Duration::from_secs(60);

/// The builder, registry and hosts of one fake world.
pub struct Fakes {
    pub builder: Arc<FakeBuilder>,
    pub registry: Arc<FakeRegistry>,
    pub hosts: Arc<FakeHosts>,
}

impl Fakes {
    pub fn new() -> Fakes {
        let registry = Arc::new(FakeRegistry::default());
        Fakes {
            builder: Arc::new(FakeBuilder::new(Arc::clone(&registry))),
            hosts: Arc::new(FakeHosts::new(Arc::clone(&registry))),
            registry,
        }
    }

    pub fn backends(&self) -> Backends {
        Backends {
            builder: Arc::clone(&self.builder) as Arc<dyn ImageBuilder>,
            registry: Arc::clone(&self.registry) as Arc<dyn Registry>,
            hosts: Arc::clone(&self.hosts) as Arc<dyn HostConnector>,
            // Runs on the runner itself, as in a real apply.
            vendor: Arc::new(pipeline::backend::vendor::LocalVendor::default()),
            registry_credentials: None,
        }
    }

    /// Every call any of the three has answered, connects included.
    pub fn calls(&self) -> usize {
        self.builder.calls() + self.registry.calls() + self.hosts.calls()
    }
}

impl Default for Fakes {
    fn default() -> Self {
        Fakes::new()
    }
}

/// A panicking fake call must not poison the state other calls read.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// FNV-1a over labelled parts: stable across runs and platforms, so the
/// made-up sizes and timings are the same every time.
fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// A failure injected into the next `times` calls a matcher accepts
/// (`u32::MAX`: every call).
struct Fault<M, K> {
    matcher: M,
    times: u32,
    kind: K,
}

/// Takes one use of the first fault whose matcher accepts the call.
fn take_fault<M, K: Clone>(
    faults: &Mutex<Vec<Fault<M, K>>>,
    accepts: impl Fn(&M) -> bool,
) -> Option<K> {
    let mut faults = lock(faults);
    let fault = faults
        .iter_mut()
        .find(|fault| fault.times > 0 && accepts(&fault.matcher))?;
    if fault.times != u32::MAX {
        fault.times -= 1;
    }
    Some(fault.kind.clone())
}

fn unavailable(action: &'static str, target: String) -> RegistryError {
    RegistryError::Request {
        action,
        target,
        message: "HTTP 503 Service Unavailable".into(),
    }
}

// ---------------------------------------------------------------- builder

/// How an injected build fails.
#[derive(Debug, Clone)]
pub enum BuildFault {
    /// The registry the build pulls its bases from answered 503.
    Retryable,
    /// The Dockerfile does not build.
    Fatal,
    /// The builder itself falls over with this message.
    Panic(String),
}

/// Builds nothing: an image record per build, with a digest and a size
/// derived from the image, its platform and its Dockerfile.
pub struct FakeBuilder {
    registry: Arc<FakeRegistry>,
    faults: Mutex<Vec<Fault<String, BuildFault>>>,
    /// Image ref → the record of its latest build.
    built: Mutex<HashMap<String, ImageRecord>>,
    /// Image refs of every build attempt, in order.
    attempts: Mutex<Vec<String>>,
    calls: AtomicUsize,
}

impl FakeBuilder {
    pub fn new(registry: Arc<FakeRegistry>) -> FakeBuilder {
        FakeBuilder {
            registry,
            faults: Mutex::new(Vec::new()),
            built: Mutex::new(HashMap::new()),
            attempts: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
        }
    }

    /// Makes the next `times` builds of `image_ref` fail with `fault`.
    pub fn fail_build(&self, image_ref: &str, times: u32, fault: BuildFault) {
        lock(&self.faults).push(Fault {
            matcher: image_ref.to_string(),
            times,
            kind: fault,
        });
    }

    /// How many times `image_ref` was built (attempts that failed included).
    pub fn build_attempts(&self, image_ref: &str) -> usize {
        lock(&self.attempts)
            .iter()
            .filter(|built| *built == image_ref)
            .count()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

impl ImageBuilder for FakeBuilder {
    fn base<'a>(
        &'a self,
        recipe: &'a BaseRecipe,
        _parent: Option<&'a BaseRecipe>,
        log: &'a dyn WorkLog,
    ) -> BoxFuture<'a, Result<ImageRecord, BuildError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let platform = recipe.platform.to_string();
            let hash = stable_hash(&[&recipe.image_ref, &platform, &recipe.cache_key]);
            let toolchain: BTreeMap<String, String> = recipe
                .packages
                .iter()
                .map(|package| (package.clone(), format!("1.{}", hash % 10)))
                .collect();
            log.line(format!("made base {} for {platform}", recipe.image_ref));
            let record = ImageRecord {
                image_ref: recipe.image_ref.clone(),
                digest: sha256_digest(format!("base {hash}").as_bytes()),
                platform,
                host_size_bytes: 50_000_000 + hash % 10_000_000,
                oci_size_bytes: 0,
                toolchain,
            };
            lock(&self.built).insert(record.image_ref.clone(), record.clone());
            Ok(record)
        })
    }

    fn build<'a>(
        &'a self,
        image_ref: &'a str,
        platform: &'a Platform,
        context: &'a BuildContext<'a>,
        log: &'a dyn WorkLog,
    ) -> BoxFuture<'a, Result<ImageRecord, BuildError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::Relaxed);
            lock(&self.attempts).push(image_ref.to_string());
            match take_fault(&self.faults, |matcher| matcher == image_ref) {
                Some(BuildFault::Retryable) => {
                    return Err(BuildError::Registry(unavailable(
                        "pull base of",
                        image_ref.to_string(),
                    )));
                }
                Some(BuildFault::Fatal) => {
                    return Err(BuildError::Build {
                        image: image_ref.to_string(),
                        message: "the command '/bin/sh -c make' returned a non-zero code: 2".into(),
                    });
                }
                Some(BuildFault::Panic(message)) => panic!("{message}"),
                None => {}
            }
            let platform = platform.to_string();
            let hash = stable_hash(&[image_ref, &platform, context.dockerfile]);
            log.line(format!("built {image_ref} for {platform}"));
            let record = ImageRecord {
                image_ref: image_ref.to_string(),
                digest: String::new(),
                platform,
                host_size_bytes: 1_000_000 + hash % 4_000_000,
                oci_size_bytes: 0,
                toolchain: BTreeMap::new(),
            };
            lock(&self.built).insert(image_ref.to_string(), record.clone());
            Ok(record)
        })
    }

    fn push<'a>(
        &'a self,
        image_ref: &'a str,
        platform: Option<&'a Platform>,
        log: &'a dyn WorkLog,
    ) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let Some(built) = lock(&self.built).get(image_ref).cloned() else {
                return Err(BuildError::Export {
                    image: image_ref.to_string(),
                    message: "no such image".into(),
                });
            };
            let platform = platform.map_or(built.platform.clone(), ToString::to_string);
            self.registry
                .store_image(image_ref, &platform, built.host_size_bytes);
            log.line(format!("pushed {image_ref} as {platform}"));
            Ok(())
        })
    }
}

// --------------------------------------------------------------- registry

/// Holds what was pushed as OCI manifests and indexes; can answer 503.
#[derive(Default)]
pub struct FakeRegistry {
    /// Image ref → manifest (single-platform or index).
    manifests: Mutex<HashMap<String, Manifest>>,
    /// Image refs whose next requests answer 503, and how many times.
    unavailable: Mutex<Vec<Fault<String, ()>>>,
    /// Image refs of every request answered 503.
    refused: Mutex<Vec<String>>,
    calls: AtomicUsize,
}

impl FakeRegistry {
    /// Makes the next `times` requests about `image_ref` answer 503.
    pub fn unavailable_for(&self, image_ref: &str, times: u32) {
        lock(&self.unavailable).push(Fault {
            matcher: image_ref.to_string(),
            times,
            kind: (),
        });
    }

    /// How many requests about `image_ref` were answered 503.
    pub fn refused(&self, image_ref: &str) -> usize {
        lock(&self.refused)
            .iter()
            .filter(|refused| *refused == image_ref)
            .count()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// The manifest pushed as `image_ref`, if any.
    pub fn manifest_of(&self, image_ref: &str) -> Option<Manifest> {
        lock(&self.manifests).get(image_ref).cloned()
    }

    /// Records a pushed single-platform image of about `size` bytes.
    fn store_image(&self, image_ref: &str, platform: &str, size: u64) {
        let hash = stable_hash(&[image_ref, platform]);
        let config_size = 500 + hash % 1000;
        // Compressed layers are smaller than the files they hold.
        let layer_size = size * 2 / 5;
        let json = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(format!("config {image_ref} {platform}").as_bytes()),
                "size": config_size,
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256_digest(format!("layer {image_ref} {platform}").as_bytes()),
                "size": layer_size,
            }],
            "annotations": {"dev.pipeline.platform": platform},
        });
        let bytes = serde_json::to_vec(&json).unwrap_or_default();
        let manifest = Manifest {
            digest: sha256_digest(&bytes),
            media_type: OCI_MANIFEST.into(),
            bytes,
            json,
        };
        lock(&self.manifests).insert(image_ref.to_string(), manifest);
    }

    fn refuse(&self, image_ref: &str) -> bool {
        let refused = take_fault(&self.unavailable, |matcher| matcher == image_ref).is_some();
        if refused {
            lock(&self.refused).push(image_ref.to_string());
        }
        refused
    }
}

impl Registry for FakeRegistry {
    fn manifest<'a>(
        &'a self,
        image: &'a ImageRef,
    ) -> BoxFuture<'a, Result<Manifest, RegistryError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let target = image.to_string();
            if self.refuse(&target) {
                return Err(unavailable("get manifest", target));
            }
            lock(&self.manifests)
                .get(&target)
                .cloned()
                .ok_or_else(|| RegistryError::Request {
                    action: "get manifest",
                    target,
                    message: "HTTP 404 Not Found: manifest unknown".into(),
                })
        })
    }

    fn put_index<'a>(
        &'a self,
        image: &'a ImageRef,
        entries: &'a [IndexEntry],
    ) -> BoxFuture<'a, Result<(String, u64), RegistryError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let target = image.to_string();
            if self.refuse(&target) {
                return Err(unavailable("put index", target));
            }
            let mut manifests = lock(&self.manifests);
            // A registry refuses an index over manifests it does not hold.
            let known: HashSet<&str> = manifests.values().map(|m| m.digest.as_str()).collect();
            if let Some(unknown) = entries.iter().find(|e| !known.contains(e.digest.as_str())) {
                return Err(RegistryError::Request {
                    action: "put index",
                    target,
                    message: format!("HTTP 400 Bad Request: manifest {} unknown", unknown.digest),
                });
            }
            let json = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": entries.iter().map(|entry| serde_json::json!({
                    "mediaType": entry.media_type,
                    "digest": entry.digest,
                    "size": entry.size,
                    "platform": {
                        "os": entry.os,
                        "architecture": entry.architecture,
                        "variant": entry.variant,
                    },
                })).collect::<Vec<_>>(),
            });
            let bytes = serde_json::to_vec(&json).unwrap_or_default();
            let digest = sha256_digest(&bytes);
            let size = bytes.len() as u64;
            manifests.insert(
                target,
                Manifest {
                    digest: digest.clone(),
                    media_type: OCI_INDEX.into(),
                    bytes,
                    json,
                },
            );
            Ok((digest, size))
        })
    }
}

// ------------------------------------------------------------------ hosts

/// The kind of an agent request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Facts,
    EnsureImage,
    Measure,
}

/// Which agent calls a fault applies to; unset fields match anything.
#[derive(Debug, Clone)]
pub struct CallMatch {
    pub kind: RequestKind,
    pub host: Option<String>,
    pub image_ref: Option<String>,
    pub engine: Option<Engine>,
    pub scenario: Option<Scenario>,
}

impl CallMatch {
    pub fn facts() -> CallMatch {
        CallMatch::of(RequestKind::Facts)
    }

    pub fn ensure_image() -> CallMatch {
        CallMatch::of(RequestKind::EnsureImage)
    }

    pub fn measure() -> CallMatch {
        CallMatch::of(RequestKind::Measure)
    }

    fn of(kind: RequestKind) -> CallMatch {
        CallMatch {
            kind,
            host: None,
            image_ref: None,
            engine: None,
            scenario: None,
        }
    }

    #[must_use]
    pub fn on(mut self, host: &str) -> CallMatch {
        self.host = Some(host.to_string());
        self
    }

    #[must_use]
    pub fn image(mut self, image_ref: &str) -> CallMatch {
        self.image_ref = Some(image_ref.to_string());
        self
    }

    #[must_use]
    pub fn engine(mut self, engine: Engine) -> CallMatch {
        self.engine = Some(engine);
        self
    }

    #[must_use]
    pub fn scenario(mut self, scenario: Scenario) -> CallMatch {
        self.scenario = Some(scenario);
        self
    }

    pub fn accepts(&self, call: &HostCall) -> bool {
        self.kind == call.kind
            && self.host.as_ref().is_none_or(|host| *host == call.host)
            && self
                .image_ref
                .as_ref()
                .is_none_or(|image| call.image_ref.as_ref() == Some(image))
            && self.engine.is_none_or(|engine| call.engine == Some(engine))
            && self
                .scenario
                .is_none_or(|scenario| call.scenario == Some(scenario))
    }
}

/// How an injected agent call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFault {
    /// The SSH session drops during the call; the session stays dead.
    DropSession,
    /// The host's engine got a 503 from the registry while pulling.
    RegistryUnavailable,
    /// The container fails to start.
    ContainerFails,
    /// The call never answers until it is cancelled, then cleans up its
    /// container.
    Hang,
}

/// One agent call as a fake host saw it.
#[derive(Debug, Clone)]
pub struct HostCall {
    pub host: String,
    /// Which connection to the host carried it: 1 for the first, and so on.
    pub session: usize,
    pub kind: RequestKind,
    pub image_ref: Option<String>,
    pub engine: Option<Engine>,
    pub scenario: Option<Scenario>,
    /// The container name of a measure.
    pub container: Option<String>,
    /// The container timeout a measure asked for.
    pub timeout_s: Option<u64>,
}

impl HostCall {
    fn of(host: &str, session: usize, request: &AgentRequest) -> HostCall {
        let mut call = HostCall {
            host: host.to_string(),
            session,
            kind: RequestKind::Facts,
            image_ref: None,
            engine: None,
            scenario: None,
            container: None,
            timeout_s: None,
        };
        match request {
            AgentRequest::Facts { .. } => {}
            AgentRequest::EnsureImage {
                engine, image_ref, ..
            } => {
                call.kind = RequestKind::EnsureImage;
                call.image_ref = Some(image_ref.clone());
                call.engine = Some(engine.engine);
            }
            AgentRequest::Measure(measure) => {
                call.kind = RequestKind::Measure;
                call.image_ref = Some(measure.image_ref.clone());
                call.engine = Some(measure.engine.engine);
                call.scenario = Some(measure.scenario);
                call.container = Some(measure.name.clone());
                call.timeout_s = Some(measure.timeout_s);
            }
        }
        call
    }
}

#[derive(Default)]
struct HostsState {
    faults: Mutex<Vec<Fault<CallMatch, HostFault>>>,
    connects: Mutex<BTreeMap<String, usize>>,
    calls: Mutex<Vec<HostCall>>,
    /// (host, container) of every measure that hung.
    hung: Mutex<Vec<(String, String)>>,
    /// (host, container) of every run cleaned up after a cancel.
    cleaned_up: Mutex<Vec<(String, String)>>,
    measure_delay: Mutex<Duration>,
    /// Images whose runs measure nearly the same every time.
    steady: Mutex<Vec<String>>,
}

/// Hosts whose agents answer Facts, EnsureImage and Measure calls with
/// plausible values; a connect opens a new session each time.
pub struct FakeHosts {
    registry: Arc<FakeRegistry>,
    state: Arc<HostsState>,
}

impl FakeHosts {
    pub fn new(registry: Arc<FakeRegistry>) -> FakeHosts {
        FakeHosts {
            registry,
            state: Arc::new(HostsState::default()),
        }
    }

    /// Makes the next `times` calls that `matcher` accepts fail with `fault`.
    pub fn inject(&self, matcher: CallMatch, times: u32, fault: HostFault) {
        lock(&self.state.faults).push(Fault {
            matcher,
            times,
            kind: fault,
        });
    }

    /// Removes every fault not yet used up, as when a host recovers.
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Makes every measure take this long (cut short by a cancel).
    pub fn set_measure_delay(&self, delay: Duration) {
        *lock(&self.state.measure_delay) = delay;
    }

    /// Makes every run of `image_ref` measure within 0.05 % of the same
    /// time; other images' runs spread over 20 to 40 ms.
    pub fn steady(&self, image_ref: &str) {
        lock(&self.state.steady).push(image_ref.to_string());
    }

    /// How many sessions were opened to `host`.
    pub fn connects(&self, host: &str) -> usize {
        lock(&self.state.connects).get(host).copied().unwrap_or(0)
    }

    pub fn host_calls(&self) -> Vec<HostCall> {
        lock(&self.state.calls).clone()
    }

    pub fn count(&self, matcher: &CallMatch) -> usize {
        lock(&self.state.calls)
            .iter()
            .filter(|call| matcher.accepts(call))
            .count()
    }

    pub fn hung(&self) -> Vec<(String, String)> {
        lock(&self.state.hung).clone()
    }

    pub fn cleaned_up(&self) -> Vec<(String, String)> {
        lock(&self.state.cleaned_up).clone()
    }

    /// Agent calls and connects.
    pub fn calls(&self) -> usize {
        lock(&self.state.calls).len() + lock(&self.state.connects).values().sum::<usize>()
    }
}

impl HostConnector for FakeHosts {
    fn connect<'a>(
        &'a self,
        host: &'a HostSettings,
    ) -> BoxFuture<'a, Result<Arc<dyn HostSession>, HostError>> {
        Box::pin(async move {
            let session = {
                let mut connects = lock(&self.state.connects);
                let count = connects.entry(host.name.clone()).or_default();
                *count += 1;
                *count
            };
            let session: Arc<dyn HostSession> = Arc::new(FakeSession {
                settings: host.clone(),
                number: session,
                dead: AtomicBool::new(false),
                registry: Arc::clone(&self.registry),
                state: Arc::clone(&self.state),
            });
            Ok(session)
        })
    }
}

struct FakeSession {
    settings: HostSettings,
    number: usize,
    /// Set once the session dropped: every later call on it fails too.
    dead: AtomicBool,
    registry: Arc<FakeRegistry>,
    state: Arc<HostsState>,
}

impl FakeSession {
    fn host_error(&self, error: impl Into<AgentError>) -> HostError {
        HostError::Agent {
            host: self.settings.name.clone(),
            error: error.into(),
        }
    }

    fn lost(&self, message: &str) -> HostError {
        HostError::Connection {
            host: self.settings.name.clone(),
            message: message.into(),
        }
    }

    fn facts(&self) -> HostFacts {
        let engines = &self.settings.engines;
        HostFacts {
            host: self.settings.name.clone(),
            architecture: self.settings.platform.architecture.clone(),
            cpu_model: "Fake CPU @ 2.0GHz".into(),
            cores: 4,
            kernel: "6.1.0-fake".into(),
            docker_version: engines
                .iter()
                .any(|e| e == "docker")
                .then(|| "26.1.5".into()),
            containerd_version: engines
                .iter()
                .any(|e| e == "containerd")
                .then(|| "1.7.24".into()),
            shims: vec![
                "containerd-shim-runc-v2".into(),
                "containerd-shim-wasmtime-v1".into(),
            ],
            ..HostFacts::default()
        }
    }

    /// The pushed manifest of `image_ref`, as a pull would find it.
    fn pull(&self, image_ref: &str) -> Result<Manifest, HostError> {
        self.registry.manifest_of(image_ref).ok_or_else(|| {
            self.host_error(EngineError::image(
                "pull",
                image_ref,
                "manifest unknown: manifest unknown",
            ))
        })
    }

    fn measured(&self, measure: &MeasureRequest) -> Result<RunRecord, HostError> {
        let manifest = self.pull(&measure.image_ref)?;
        let hash = stable_hash(&[&self.settings.name, &measure.name]);
        // Milliseconds computed as the agent computes them: from host clock
        // nanoseconds, and from the pull's `Duration`.
        let ms = |ns: u64| ns as f64 / 1e6;
        let pull_ms = |ns: u64| Duration::from_nanos(ns).as_secs_f64() * 1e3;
        let steady = lock(&self.state.steady).contains(&measure.image_ref);
        let to_main_ns = if steady {
            30_000_000 + hash % 15_000
        } else {
            20_000_000 + hash % 20_000_000
        };
        let exit_ns = to_main_ns + 5_000_000 + hash % 3_000_000;
        let fresh = measure.scenario == Scenario::Fresh;
        Ok(RunRecord {
            image_ref: measure.image_ref.clone(),
            image_digest: manifest.digest.clone(),
            pull_ms: fresh.then(|| pull_ms(100_000_000 + hash % 500_000_000)),
            pulled_bytes: fresh.then(|| manifest.compressed_size()),
            create_ms: Some(ms(to_main_ns / 4)),
            start_ms: Some(ms(to_main_ns / 2)),
            to_main_ms: Some(ms(to_main_ns)),
            exit_ms: Some(ms(exit_ns)),
            remove_ms: Some(ms(exit_ns + 9_000_000)),
            run_ms: Some(ms(exit_ns)),
            exit_code: Some(0),
            ok: true,
            started_at_ms: Some(pipeline::events::now_ms()),
            error: None,
            // Fields the fakes have no opinion on keep their defaults.
            ..RunRecord::default()
        })
    }

    /// Waits `delay` unless cancelled first; a cancelled run removes its container.
    async fn wait_or_clean_up(
        &self,
        delay: Duration,
        container: &str,
        cancel: &CancellationToken,
    ) -> Result<(), HostError> {
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = cancel.cancelled() => {
                lock(&self.state.cleaned_up)
                    .push((self.settings.name.clone(), container.to_string()));
                Err(HostError::Cancelled { host: self.settings.name.clone() })
            }
        }
    }
}

impl HostSession for FakeSession {
    fn call<'a>(
        &'a self,
        call: &'a AgentCall,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<AgentResponse, HostError>> {
        Box::pin(async move {
            let seen = HostCall::of(&self.settings.name, self.number, &call.request);
            lock(&self.state.calls).push(seen.clone());
            if self.dead.load(Ordering::Relaxed) {
                return Err(self.lost("the session was closed earlier"));
            }
            let fault = take_fault(&self.state.faults, |matcher| matcher.accepts(&seen));
            let image = seen.image_ref.clone().unwrap_or_default();
            let container = seen.container.clone().unwrap_or_default();
            match fault {
                Some(HostFault::DropSession) => {
                    self.dead.store(true, Ordering::Relaxed);
                    return Err(self.lost("Connection to host closed by remote host."));
                }
                Some(HostFault::RegistryUnavailable) => {
                    return Err(self.host_error(EngineError::image(
                        "pull",
                        &image,
                        "received unexpected HTTP status: 503 Service Unavailable",
                    )));
                }
                Some(HostFault::ContainerFails) => {
                    return Err(self.host_error(EngineError::Container {
                        name: container,
                        message: "start task: exec format error".into(),
                    }));
                }
                Some(HostFault::Hang) => {
                    lock(&self.state.hung).push((self.settings.name.clone(), container.clone()));
                    self.wait_or_clean_up(HANG_LIMIT, &container, cancel)
                        .await?;
                    return Err(self.host_error(EngineError::Timeout {
                        name: container,
                        seconds: HANG_LIMIT.as_secs(),
                    }));
                }
                None => {}
            }
            match &call.request {
                AgentRequest::Facts { .. } => Ok(AgentResponse::Facts(self.facts())),
                AgentRequest::EnsureImage { image_ref, .. } => {
                    let manifest = self.pull(image_ref)?;
                    Ok(AgentResponse::Image {
                        digest: manifest.digest.clone(),
                        pulled_bytes: manifest.compressed_size(),
                        pull_ms: 150.0,
                    })
                }
                AgentRequest::Measure(measure) => {
                    let delay = *lock(&self.state.measure_delay);
                    if !delay.is_zero() {
                        self.wait_or_clean_up(delay, &measure.name, cancel).await?;
                    }
                    self.measured(measure).map(AgentResponse::Measured)
                }
            }
        })
    }
}

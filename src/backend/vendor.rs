//! Dependencies fetched on the runner, which reaches the package registries,
//! into a tree that the offline builds read. A language says how in its
//! `vendor.yaml` (a command and the files it keys on); this runs it in a
//! scratch copy of the sources and keeps the result in a cache by that key.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::WorkLog;
use super::host::BoxFuture;
use crate::records::VendorRecord;

/// What to vendor, and where the result is kept.
pub struct VendorRequest<'a> {
    /// Program and arguments.
    pub command: &'a [String],
    /// The workload's sources in its language.
    pub sources: &'a Path,
    /// The folder the command leaves in the sources.
    pub output: &'a str,
    /// Where the vendored tree is kept: its name is the request's key, so
    /// a folder that exists holds exactly this request's result.
    pub cache_dir: PathBuf,
}

/// Fetches dependencies; tests may count or refuse calls.
pub trait DependencyVendor: Send + Sync {
    fn vendor<'a>(
        &'a self,
        request: &'a VendorRequest<'a>,
        log: &'a dyn WorkLog,
    ) -> BoxFuture<'a, Result<VendorRecord, VendorError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("failed to start `{program}`: {source} (is it installed on the runner?)")]
    Start {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {tail}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        /// The command's last lines: the registry's or resolver's message.
        tail: String,
    },
    #[error("failed to prepare the vendored tree: {0}")]
    Io(#[from] std::io::Error),
}

impl VendorError {
    /// A registry that did not answer may answer next time; a lockfile
    /// that does not resolve will not, but telling the two apart needs the
    /// tool's own words, so a failed command counts as retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, VendorError::Failed { .. })
    }
}

/// Lines of the command's output kept for the error message.
const TAIL_LINES: usize = 12;

/// Runs the language's command as a child of the runner.
#[derive(Default)]
pub struct LocalVendor {
    /// One lock per cache entry: two workloads with the same lockfile share
    /// a tree, and the second waits for the first instead of fetching again.
    entries: std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl DependencyVendor for LocalVendor {
    fn vendor<'a>(
        &'a self,
        request: &'a VendorRequest<'a>,
        log: &'a dyn WorkLog,
    ) -> BoxFuture<'a, Result<VendorRecord, VendorError>> {
        Box::pin(async move {
            let entry = self
                .entries
                .lock()
                .map(|mut entries| {
                    Arc::clone(entries.entry(request.cache_dir.clone()).or_default())
                })
                .map_err(|_| std::io::Error::other("the vendor cache lock is poisoned"))?;
            let _guard = entry.lock().await;
            vendor(request, log).await
        })
    }
}

async fn vendor(
    request: &VendorRequest<'_>,
    log: &dyn WorkLog,
) -> Result<VendorRecord, VendorError> {
    let dir = request.cache_dir.clone();
    if dir.is_dir() {
        let (files, bytes) = tree_size(&dir)?;
        log.line(format!(
            "reusing the vendored tree {} ({files} files, {bytes} bytes)",
            dir.display()
        ));
        return Ok(VendorRecord {
            dir,
            files,
            bytes,
            reused: true,
        });
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent)?;
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    // The copy runs outside the project: cargo would take a project's own
    // Cargo.toml above it for the workspace the sources belong to.
    let scratch = Scratch::new(
        std::env::temp_dir().join(format!("pipeline-vendor-{name}-{}", std::process::id())),
    )?;
    let work_dir = scratch.0.join("sources");
    copy_tree(request.sources, &work_dir)?;
    let (program, arguments) = request
        .command
        .split_first()
        .ok_or_else(|| std::io::Error::other("the vendor command is empty"))?;
    let command_line = request.command.join(" ");
    log.line(format!("$ {command_line}"));
    let mut child = tokio::process::Command::new(program)
        .args(arguments)
        .current_dir(&work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A cancelled stage drops this future; the command must end with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| VendorError::Start {
            program: program.clone(),
            source,
        })?;
    let tail = std::sync::Mutex::new(VecDeque::with_capacity(TAIL_LINES));
    let forward = |line: String| {
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        log.line(line);
    };
    let ((), (), status) = tokio::join!(
        forward_lines(child.stdout.take(), &forward),
        forward_lines(child.stderr.take(), &forward),
        child.wait()
    );
    let status = status?;
    if !status.success() {
        let tail = tail
            .lock()
            .map(|tail| Vec::from(tail.clone()).join("\n"))
            .unwrap_or_default();
        return Err(VendorError::Failed {
            command: command_line,
            status,
            tail,
        });
    }
    let output = work_dir.join(request.output);
    if output.is_dir() {
        // Staged beside the cache entry, so the tree moves into place with
        // one rename and a cut-off run leaves no half tree under the key.
        let staged = Scratch::new(parent.join(format!(".partial-{name}-{}", std::process::id())))?;
        let staged_tree = staged.0.join("tree");
        if let Err(error) = std::fs::rename(&output, &staged_tree) {
            if error.kind() != std::io::ErrorKind::CrossesDevices {
                return Err(error.into());
            }
            copy_tree(&output, &staged_tree)?;
        }
        if let Err(error) = fs_err::rename(&staged_tree, &dir) {
            // Another apply on the same output folder got there first with
            // the same key, so the same tree.
            if !dir.is_dir() {
                return Err(error.into());
            }
        }
    } else {
        // Nothing to vendor (a lockfile without dependencies): the build
        // still gets an empty tree, so templates need no second case.
        log.line(format!("no {} folder: nothing to vendor", request.output));
        fs_err::create_dir_all(&dir)?;
    }
    let (files, bytes) = tree_size(&dir)?;
    log.line(format!(
        "vendored {files} files, {bytes} bytes into {}",
        dir.display()
    ));
    Ok(VendorRecord {
        dir,
        files,
        bytes,
        reused: false,
    })
}

async fn forward_lines(
    reader: Option<impl tokio::io::AsyncRead + Unpin>,
    forward: &impl Fn(String),
) {
    if let Some(reader) = reader {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            forward(line);
        }
    }
}

/// A folder removed when dropped, whether the command succeeded, failed or
/// was cancelled.
struct Scratch(PathBuf);

impl Scratch {
    fn new(path: PathBuf) -> std::io::Result<Scratch> {
        // Left by an apply that was killed before it could clean up.
        if path.exists() {
            fs_err::remove_dir_all(&path)?;
        }
        fs_err::create_dir_all(&path)?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The files a build of the sources sees, copied with their exec bits;
/// links stay links.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs_err::create_dir_all(to)?;
    for entry in crate::tree::entries(from)? {
        let source = from.join(&entry.relative);
        let target = to.join(&entry.relative);
        if entry.is_dir {
            fs_err::create_dir_all(&target)?;
        } else if source.is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(&source)?, &target)?;
        } else {
            fs_err::copy(&source, &target)?;
        }
    }
    Ok(())
}

fn tree_size(dir: &Path) -> std::io::Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    for entry in crate::tree::entries(dir)? {
        if !entry.is_dir {
            files += 1;
            bytes += fs_err::symlink_metadata(dir.join(&entry.relative))?.len();
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lines(std::sync::Mutex<Vec<String>>);

    impl WorkLog for Lines {
        fn line(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
    }

    fn shell(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    fn run(
        command: &[String],
        sources: &Path,
        cache_dir: PathBuf,
    ) -> (Result<VendorRecord, VendorError>, Vec<String>) {
        let log = Lines(std::sync::Mutex::new(Vec::new()));
        let request = VendorRequest {
            command,
            sources,
            output: "vendor",
            cache_dir,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(LocalVendor::default().vendor(&request, &log));
        (result, log.0.into_inner().unwrap())
    }

    #[test]
    fn runs_in_a_copy_caches_by_key_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let sources = dir.path().join("sources");
        std::fs::create_dir(&sources).unwrap();
        std::fs::write(sources.join("lock"), "a = 1\n").unwrap();
        let cache = dir.path().join("cache/rust-0123");
        // The command sees the sources and leaves its tree in them.
        let command = shell("mkdir -p vendor/dep && cp lock vendor/dep/ && echo fetched dep");
        let (record, lines) = run(&command, &sources, cache.clone());
        let record = record.unwrap();
        assert!(!record.reused);
        assert_eq!((record.files, record.bytes), (1, 6));
        assert!(lines.iter().any(|line| line == "fetched dep"), "{lines:?}");
        assert_eq!(
            std::fs::read_to_string(cache.join("dep/lock")).unwrap(),
            "a = 1\n"
        );
        // The workload's own folder is untouched, and no scratch is left.
        assert!(!sources.join("vendor").exists());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .collect();
        assert_eq!(left.len(), 1);

        // The same key again: the command is not run (it would fail).
        let (record, lines) = run(&shell("exit 7"), &sources, cache.clone());
        let record = record.unwrap();
        assert!(record.reused, "{lines:?}");
        assert_eq!(record.files, 1);
    }

    #[test]
    fn a_failed_command_reports_its_last_lines_and_caches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sources = dir.path().join("sources");
        std::fs::create_dir(&sources).unwrap();
        let cache = dir.path().join("cache/go-4567");
        let command = shell(
            "echo 'resolving deps'; echo 'error: no matching package named `rand` found' >&2; exit 101",
        );
        let (result, _) = run(&command, &sources, cache.clone());
        let error = result.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("exit status: 101"), "{message}");
        assert!(
            message.contains("no matching package named `rand` found"),
            "{message}"
        );
        assert!(error.is_retryable());
        assert!(!cache.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
            0
        );
    }

    #[test]
    fn nothing_to_vendor_gives_an_empty_tree_and_a_missing_program_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let sources = dir.path().join("sources");
        std::fs::create_dir(&sources).unwrap();
        let cache = dir.path().join("cache/rust-89ab");
        let (record, _) = run(&shell("true"), &sources, cache.clone());
        assert_eq!(record.unwrap().files, 0);
        assert!(cache.is_dir());

        let missing = vec!["no-such-vendor-tool".to_string()];
        let (result, _) = run(&missing, &sources, dir.path().join("cache/other"));
        let message = result.unwrap_err().to_string();
        assert!(
            message.contains("failed to start `no-such-vendor-tool`"),
            "{message}"
        );
    }
}

//! Content fingerprints: a stage is redone exactly when one of these changes.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A blake3 content hash, printed as lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn to_hex(self) -> String {
        let mut hex = String::with_capacity(64);
        for byte in self.0 {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }

    /// The first 16 hex digits: enough to tell versions apart in tags and tables.
    pub fn short(self) -> String {
        self.to_hex()[..16].to_string()
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

/// Builds a fingerprint from labelled parts; labels and lengths are hashed
/// too, so `("a", "bc")` and `("ab", "c")` never collide.
pub struct FingerprintBuilder(blake3::Hasher);

impl FingerprintBuilder {
    pub fn new(domain: &str) -> Self {
        let mut builder = Self(blake3::Hasher::new());
        builder.str("domain", domain);
        builder
    }

    pub fn bytes(&mut self, label: &str, value: &[u8]) -> &mut Self {
        self.0.update(&(label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update(&(value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }

    pub fn str(&mut self, label: &str, value: &str) -> &mut Self {
        self.bytes(label, value.as_bytes())
    }

    pub fn fingerprint(&mut self, label: &str, value: Fingerprint) -> &mut Self {
        self.bytes(label, value.as_bytes())
    }

    pub fn finish(&self) -> Fingerprint {
        Fingerprint(*self.0.finalize().as_bytes())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("failed to read {}: {source}", path.display())]
pub struct TreeHashError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Hashes a file or a directory tree: relative paths, file contents and the
/// executable bit, in sorted order so the result does not depend on the file system.
pub fn hash_tree(root: &Path) -> Result<Fingerprint, TreeHashError> {
    let mut builder = FingerprintBuilder::new("tree");
    let mut files = Vec::new();
    collect_files(root, root, &mut files)?;
    files.sort();
    for relative in files {
        let path = if relative.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(&relative)
        };
        let contents = std::fs::read(&path).map_err(|source| TreeHashError {
            path: path.clone(),
            source,
        })?;
        builder.str("path", &relative.to_string_lossy());
        builder.str("mode", if is_executable(&path) { "x" } else { "-" });
        builder.bytes("contents", &contents);
    }
    Ok(builder.finish())
}

fn collect_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), TreeHashError> {
    let error = |source| TreeHashError {
        path: dir.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(dir).map_err(error)?;
    if metadata.is_file() {
        // A single file hashes under an empty relative path, so renaming it is not a change.
        files.push(PathBuf::new());
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let entry = entry.map_err(error)?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(error)?;
        // Build outputs that a developer left behind must not change the hash.
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        if file_type.is_dir() {
            collect_files(root, &path, files)?;
        } else {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            files.push(relative);
        }
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|metadata| metadata.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_separate_parts() {
        let a = FingerprintBuilder::new("t")
            .str("x", "ab")
            .str("y", "c")
            .finish();
        let b = FingerprintBuilder::new("t")
            .str("x", "a")
            .str("y", "bc")
            .finish();
        assert_ne!(a, b);
    }

    #[test]
    fn tree_hash_follows_contents_and_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "one").unwrap();
        let first = hash_tree(dir.path()).unwrap();
        assert_eq!(first, hash_tree(dir.path()).unwrap());
        std::fs::write(dir.path().join("a.txt"), "two").unwrap();
        let second = hash_tree(dir.path()).unwrap();
        assert_ne!(first, second);
        std::fs::create_dir(dir.path().join("target")).unwrap();
        std::fs::write(dir.path().join("target/junk"), "x").unwrap();
        assert_eq!(second, hash_tree(dir.path()).unwrap());
    }
}

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

    /// The first eight bytes, little-endian: a seed that follows the hashed parts.
    pub fn to_u64(self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(bytes)
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

/// Hashes a file or a directory tree: relative paths, file contents, link
/// targets and the executable bit, in sorted order so the result does not
/// depend on the file system. It covers exactly the files a build context
/// sends ([`crate::tree::entries`]).
pub fn hash_tree(root: &Path) -> Result<Fingerprint, TreeHashError> {
    let mut builder = FingerprintBuilder::new("tree");
    let error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TreeHashError { path, source }
    };
    let metadata = std::fs::metadata(root).map_err(error(root))?;
    if metadata.is_file() {
        // A single file hashes under an empty relative path, so renaming it is not a change.
        let contents = std::fs::read(root).map_err(error(root))?;
        builder.str("path", "");
        builder.str("mode", if is_executable(root) { "x" } else { "-" });
        builder.bytes("contents", &contents);
        return Ok(builder.finish());
    }
    for entry in crate::tree::entries(root).map_err(error(root))? {
        let path = root.join(&entry.relative);
        if entry.is_dir {
            // The context carries empty folders too.
            builder.str("dir", &entry.relative.to_string_lossy());
            continue;
        }
        builder.str("path", &entry.relative.to_string_lossy());
        let link = std::fs::symlink_metadata(&path)
            .map_err(error(&path))?
            .file_type()
            .is_symlink();
        if link {
            let target = std::fs::read_link(&path).map_err(error(&path))?;
            builder.str("link", &target.to_string_lossy());
        } else {
            let contents = std::fs::read(&path).map_err(error(&path))?;
            builder.str("mode", if is_executable(&path) { "x" } else { "-" });
            builder.bytes("contents", &contents);
        }
    }
    Ok(builder.finish())
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    // The owner's bit, as the build context's tar headers record it.
    std::fs::metadata(path).is_ok_and(|metadata| metadata.permissions().mode() & 0o100 != 0)
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

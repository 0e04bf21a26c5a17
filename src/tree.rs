//! Which files of a source folder belong to it: the build context sends
//! exactly these, and the fingerprints hash exactly these.

use std::path::{Path, PathBuf};

/// Build outputs and version control that a developer leaves in a source
/// folder; they are neither sent to the engine nor hashed.
pub fn is_skipped(name: &std::ffi::OsStr) -> bool {
    name == "target" || name == ".git"
}

/// One entry of a source tree, relative to its root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TreeEntry {
    pub relative: PathBuf,
    pub is_dir: bool,
}

/// Every entry below `root` that [`is_skipped`] keeps, parents before
/// children, in sorted order. Symbolic links are listed, not followed.
///
/// A FIFO, socket or device is an error naming it: reading one would block
/// or never end, and a build context cannot carry it.
pub fn entries(root: &Path) -> std::io::Result<Vec<TreeEntry>> {
    let mut found = Vec::new();
    walk(root, Path::new(""), &mut found)?;
    Ok(found)
}

fn walk(root: &Path, relative: &Path, found: &mut Vec<TreeEntry>) -> std::io::Result<()> {
    let dir = root.join(relative);
    let mut children: Vec<std::fs::DirEntry> = std::fs::read_dir(&dir)
        .map_err(|error| std::io::Error::new(error.kind(), format!("{}: {error}", dir.display())))?
        .collect::<Result<_, _>>()?;
    children.sort_by_key(std::fs::DirEntry::file_name);
    for child in children {
        let name = child.file_name();
        if is_skipped(&name) {
            continue;
        }
        let path = relative.join(&name);
        let file_type = child.file_type()?;
        let is_dir = file_type.is_dir();
        if !is_dir && !file_type.is_symlink() {
            crate::limits::check_regular(file_type).map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("{}: {error}", root.join(&path).display()),
                )
            })?;
        }
        found.push(TreeEntry {
            relative: path.clone(),
            is_dir,
        });
        if is_dir {
            walk(root, &path, found)?;
        }
    }
    Ok(())
}

//! `group_vars/` and `host_vars/` beside the inventory file, found and read
//! the way Ansible's `host_group_vars` vars plugin does it.
//!
//! For an entity `NAME` the first existing one of `NAME`, `NAME.yml`,
//! `NAME.yaml`, `NAME.json` is used. A directory contributes every file in
//! it (sorted by name, recursing into sub-directories without an extension)
//! whose extension is `.yml`, `.yaml`, `.json` or none; hidden files and
//! names ending in `~` are skipped. Later files override earlier ones.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::{InventoryError, InventoryWarning};
use super::yaml::{self, Data};

const EXTENSIONS: [&str; 3] = [".yml", ".yaml", ".json"];

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Entity {
    Group,
    Host,
}

impl Entity {
    fn directory(self) -> &'static str {
        match self {
            Entity::Group => "group_vars",
            Entity::Host => "host_vars",
        }
    }
}

/// Reads vars files on demand, each entity at most once.
pub(crate) struct VarsFiles {
    base: PathBuf,
    cache: HashMap<(Entity, String), Map<String, Value>>,
    warned_not_directory: Vec<PathBuf>,
    pub(crate) warnings: Vec<InventoryWarning>,
}

impl VarsFiles {
    /// `inventory_dir` is the directory containing the inventory file.
    pub(crate) fn new(inventory_dir: &Path) -> VarsFiles {
        // Ansible looks in the real path of this directory; the files found are
        // the same, and messages keep the path as the caller wrote it.
        let base = inventory_dir.to_path_buf();
        VarsFiles {
            base,
            cache: HashMap::new(),
            warned_not_directory: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Vars from the files for one group or host (empty if there are none).
    pub(crate) fn vars(
        &mut self,
        entity: Entity,
        name: &str,
    ) -> Result<Map<String, Value>, InventoryError> {
        let key = (entity, name.to_string());
        if let Some(vars) = self.cache.get(&key) {
            return Ok(vars.clone());
        }
        let vars = self.read(entity, name)?;
        self.cache.insert(key, vars.clone());
        Ok(vars)
    }

    fn read(&mut self, entity: Entity, name: &str) -> Result<Map<String, Value>, InventoryError> {
        let mut vars = Map::new();
        // Ansible skips names like chroot paths that start with the separator.
        if name.starts_with('/') {
            return Ok(vars);
        }
        let directory = self.base.join(entity.directory());
        if !directory.is_dir() {
            if directory.exists() && !self.warned_not_directory.contains(&directory) {
                self.warned_not_directory.push(directory.clone());
                self.warnings.push(InventoryWarning {
                    path: directory.clone(),
                    line: 1,
                    column: 1,
                    message: format!(
                        "found `{}` that is not a directory, skipping it",
                        entity.directory()
                    ),
                });
            }
            return Ok(vars);
        }
        for file in find_vars_files(&directory, name)? {
            // A host named `../x`, or a link, must not make the tool read
            // (and quote) a file from elsewhere.
            let source = crate::limits::read_regular_file_inside(
                &file,
                &self.base,
                "the inventory's folder",
            )
            .map_err(|source| InventoryError::read(&file, source))?;
            let document = yaml::load(&source, &file)?;
            self.warnings.extend(document.warnings);
            let Some(root) = document.root else { continue };
            // Empty files (and other false-y documents) are ignored.
            if root.data.is_falsy() {
                continue;
            }
            let Data::Map(entries) = root.data else {
                return Err(InventoryError::Structure {
                    path: file,
                    line: root.line,
                    column: root.column,
                    message: format!(
                        "could not process vars file: expected a mapping of variables, found {}",
                        root.data.type_name()
                    ),
                });
            };
            for (key, value) in entries {
                vars.insert(key.data.key_string(), value.data.to_json());
            }
        }
        Ok(vars)
    }
}

fn find_vars_files(directory: &Path, name: &str) -> Result<Vec<PathBuf>, InventoryError> {
    let stem = directory.join(name);
    for extension in std::iter::once("").chain(EXTENSIONS) {
        let mut candidate = stem.clone().into_os_string();
        candidate.push(extension);
        let candidate = PathBuf::from(candidate);
        if candidate.is_dir() {
            return files_in_directory(&candidate);
        }
        if candidate.exists() {
            return Ok(vec![candidate]);
        }
    }
    Ok(Vec::new())
}

fn files_in_directory(directory: &Path) -> Result<Vec<PathBuf>, InventoryError> {
    let io_error = |source| InventoryError::Io {
        path: directory.to_path_buf(),
        source,
    };
    let mut names: Vec<String> = Vec::new();
    for entry in fs::read_dir(directory).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let mut found = Vec::new();
    for name in names {
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let path = directory.join(&name);
        let extension = name.rfind('.').map(|dot| &name[dot..]);
        if path.is_dir() {
            if extension.is_none() {
                found.extend(files_in_directory(&path)?);
            }
        } else if path.is_file()
            && extension.is_none_or(|extension| EXTENSIONS.contains(&extension))
        {
            found.push(path);
        }
    }
    Ok(found)
}

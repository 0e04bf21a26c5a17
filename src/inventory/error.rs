//! Errors and warnings produced while loading an inventory.

use std::fmt;
use std::path::PathBuf;

/// Why an inventory could not be loaded.
///
/// Every variant that concerns a place in a file carries the file's `path` and
/// a 1-based `line` and `column`; messages are lowercase and name the offending
/// group, host or key.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The inventory file or a `group_vars`/`host_vars` file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not valid YAML, or a YAML value cannot be constructed the
    /// way Ansible (`PyYAML`) would construct it (unknown tag, bad `!!int`, ...).
    #[error("{}:{line}:{column}: invalid yaml: {message}", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// The YAML is valid but Ansible's `yaml` inventory plugin rejects its
    /// structure (e.g. `hosts` given as a list).
    #[error("{}:{line}:{column}: {message}", path.display())]
    Structure {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A host pattern such as `web[01:3]` cannot be expanded.
    #[error("{}:{line}:{column}: invalid host pattern `{pattern}`: {message}", path.display())]
    HostPattern {
        path: PathBuf,
        line: usize,
        column: usize,
        pattern: String,
        message: String,
    },
}

impl InventoryError {
    /// A failed read of `path`; a file that is not UTF-8 is located.
    pub(crate) fn read(path: &std::path::Path, source: std::io::Error) -> InventoryError {
        match crate::limits::NotUtf8::of(&source) {
            Some(position) => InventoryError::Structure {
                path: path.to_path_buf(),
                line: position.line,
                column: position.column,
                message: position.to_string(),
            },
            None => InventoryError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            InventoryError::Io { path, .. }
            | InventoryError::Yaml { path, .. }
            | InventoryError::Structure { path, .. }
            | InventoryError::HostPattern { path, .. } => path,
        }
    }

    /// The message without the `path:line:column:` prefix.
    pub fn message(&self) -> String {
        match self {
            InventoryError::Io { source, .. } => format!("cannot read: {source}"),
            InventoryError::Yaml { message, .. } => format!("invalid yaml: {message}"),
            InventoryError::Structure { message, .. } => message.clone(),
            InventoryError::HostPattern {
                pattern, message, ..
            } => format!("invalid host pattern `{pattern}`: {message}"),
        }
    }

    /// 1-based line and column, for errors that point into a file; a file
    /// that exists but cannot be read is pointed at as a whole, at its start.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            InventoryError::Io { source, .. } => {
                (source.kind() != std::io::ErrorKind::NotFound).then_some((1, 1))
            }
            InventoryError::Yaml { line, column, .. }
            | InventoryError::Structure { line, column, .. }
            | InventoryError::HostPattern { line, column, .. } => Some((*line, *column)),
        }
    }
}

/// Something Ansible only warns about (and then ignores or accepts), such as an
/// unknown key in a group definition. Kept so callers can show the same
/// warnings `ansible-inventory` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryWarning {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for InventoryWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

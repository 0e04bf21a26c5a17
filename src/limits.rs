//! Upper bounds on what one input may ask for, so a hostile or mistaken spec
//! or inventory fails with a diagnostic instead of exhausting memory or time.
//! docs/spec.md ("Limits") gives the value of each and why it was chosen.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

/// Measured runs per cell (`measure.repetitions`).
pub const MAX_REPETITIONS: u32 = 10_000;
/// Unmeasured runs per cell (`measure.warmup`).
pub const MAX_WARMUP: u32 = 10_000;
/// Hosts one inventory host pattern such as `web[1:100]` may expand to.
pub const MAX_HOSTS_PER_PATTERN: usize = 10_000;
/// Hosts of one inventory, all patterns together.
pub const MAX_INVENTORY_HOSTS: usize = 100_000;
/// Cells (image × host × engine × scenario) of one plan.
pub const MAX_CELLS: usize = 1_000_000;
/// Stages of one plan, counted before the graph is built.
pub const MAX_STAGES: usize = 1_000_000;
/// Retries of one stage kind.
pub const MAX_RETRIES: u32 = 20;
/// Timeout of one stage kind.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// String bytes that YAML aliases in an inventory or vars file may copy.
pub const MAX_ALIAS_BYTES: usize = 64 * 1024 * 1024;
/// YAML nodes of a spec or workload.yaml, aliases expanded.
pub const MAX_YAML_NODES: usize = 20_000;
/// Size of any file the spec or inventory makes the tool read, and of a
/// rendered Dockerfile.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Template instructions one render may execute (minijinja's fuel).
pub const MAX_TEMPLATE_FUEL: u64 = 1_000_000;

/// Reads a regular file of at most [`MAX_FILE_BYTES`] as UTF-8 text.
///
/// The type is checked after following symbolic links and before opening, so
/// a FIFO cannot block the read and a device cannot feed it forever. Errors
/// do not repeat the path: every caller's error names it.
pub fn read_regular_file(path: &Path) -> std::io::Result<String> {
    let metadata = std::fs::metadata(path)?;
    check_regular(metadata.file_type())?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // The file may grow between the check and the read.
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    decode_text(bytes)
        .map_err(|position| std::io::Error::new(std::io::ErrorKind::InvalidData, position))
}

/// The bytes of a file as text, or where they stop being UTF-8.
pub fn decode_text(bytes: Vec<u8>) -> Result<String, NotUtf8> {
    String::from_utf8(bytes)
        .map_err(|error| NotUtf8::at(error.as_bytes(), error.utf8_error().valid_up_to()))
}

/// Where a file stops being UTF-8 text: 1-based line and column (in
/// characters), carried inside the `io::Error` of [`read_regular_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the file is not UTF-8 text: byte {byte:#04x} at line {line}, column {column}")]
pub struct NotUtf8 {
    pub line: usize,
    pub column: usize,
    pub byte: u8,
}

impl NotUtf8 {
    fn at(bytes: &[u8], valid_up_to: usize) -> NotUtf8 {
        let valid = &bytes[..valid_up_to];
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // The prefix is valid UTF-8, so counting non-continuation bytes counts characters.
        let column = valid[line_start..]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count()
            + 1;
        NotUtf8 {
            line: valid.split(|&b| b == b'\n').count(),
            column,
            byte: bytes.get(valid_up_to).copied().unwrap_or_default(),
        }
    }

    /// The position, when `error` came from reading a file that is not UTF-8.
    pub fn of(error: &std::io::Error) -> Option<NotUtf8> {
        error.get_ref()?.downcast_ref::<NotUtf8>().copied()
    }
}

/// As [`read_regular_file`], for a file that must lie inside `folder` once
/// symbolic links are followed: a link out of it is refused unread.
/// `folder_name` says which folder in the error.
pub fn read_regular_file_inside(
    path: &Path,
    folder: &Path,
    folder_name: &str,
) -> std::io::Result<String> {
    check_regular(std::fs::metadata(path)?.file_type())?;
    if !resolves_inside(path, folder) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it leads outside {folder_name} through a symbolic link"),
        ));
    }
    read_regular_file(path)
}

/// Whether `path`, with every symbolic link followed, lies inside `folder`
/// (itself resolved). False when either cannot be resolved.
pub fn resolves_inside(path: &Path, folder: &Path) -> bool {
    match (std::fs::canonicalize(path), std::fs::canonicalize(folder)) {
        (Ok(path), Ok(folder)) => path.starts_with(folder),
        _ => false,
    }
}

/// An error unless the type is a regular file; says what it is instead.
pub fn check_regular(file_type: std::fs::FileType) -> std::io::Result<()> {
    if file_type.is_file() {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("not a regular file but {}", describe_type(file_type)),
    ))
}

fn describe_type(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

fn too_large() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "the file is larger than {} MiB, the limit for any file read",
            MAX_FILE_BYTES / (1024 * 1024)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_located_by_line_and_character() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.yaml");
        std::fs::write(&path, b"a: 1\nb: \xc3\xa9\xff\n").unwrap();
        let error = read_regular_file(&path).unwrap_err();
        assert_eq!(
            NotUtf8::of(&error),
            Some(NotUtf8 {
                line: 2,
                column: 5,
                byte: 0xff
            })
        );
    }
}

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
/// Size of any file the spec or inventory makes the tool read.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

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
    let mut text = String::new();
    // The file may grow between the check and the read.
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(text)
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

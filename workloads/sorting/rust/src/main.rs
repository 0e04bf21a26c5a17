use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

const LINES_FILE: &str = "sorted-lines.txt";
const CHARS_FILE: &str = "sorted-chars.txt";

/// Splits on '\n'; a trailing newline does not start an extra empty line.
fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    if data.is_empty() {
        return Vec::new();
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    body.split(|&b| b == b'\n').collect()
}

fn join_lines<'a>(lines: impl Iterator<Item = &'a [u8]>, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    for line in lines {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

/// Counting sort of the bytes of one line (bytes compare as unsigned values).
fn sort_bytes(line: &[u8], out: &mut Vec<u8>) {
    let mut counts = [0usize; 256];
    for &b in line {
        counts[b as usize] += 1;
    }
    for (value, &count) in counts.iter().enumerate() {
        out.extend(std::iter::repeat_n(value as u8, count));
    }
}

fn histogram(lines: &[&[u8]]) -> [u64; 256] {
    let mut h = [0u64; 256];
    for line in lines {
        for &b in *line {
            h[b as usize] += 1;
        }
    }
    h
}

fn fnv1a64(data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn run(input: &str, outdir: &str) -> Result<String, String> {
    if !Path::new(outdir).is_dir() {
        return Err(format!("output-dir-missing path={outdir}"));
    }
    let data =
        std::fs::read(input).map_err(|e| format!("cannot-read-input path={input} error={e}"))?;
    let lines = split_lines(&data);

    // Phase 1: sort all lines at once, byte-wise lexicographic.
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    let lines_path = Path::new(outdir).join(LINES_FILE);
    std::fs::write(
        &lines_path,
        join_lines(sorted.iter().copied(), data.len() + 1),
    )
    .map_err(|e| format!("cannot-write path={} error={e}", lines_path.display()))?;
    drop(sorted);

    // Phase 2: one line at a time, sort the bytes of each line (original line order).
    let mut chars = Vec::with_capacity(data.len() + 1);
    for line in &lines {
        sort_bytes(line, &mut chars);
        chars.push(b'\n');
    }
    let chars_path = Path::new(outdir).join(CHARS_FILE);
    std::fs::write(&chars_path, &chars)
        .map_err(|e| format!("cannot-write path={} error={e}", chars_path.display()))?;
    drop(chars);

    // Check what actually landed on disk.
    let input_hist = histogram(&lines);
    let lines_out =
        std::fs::read(&lines_path).map_err(|e| format!("cannot-read-back error={e}"))?;
    let back = split_lines(&lines_out);
    if back.len() != lines.len() {
        return Err(format!(
            "line-count-mismatch expected={} got={}",
            lines.len(),
            back.len()
        ));
    }
    if let Some(i) = back.windows(2).position(|w| w[0] > w[1]) {
        return Err(format!("lines-not-sorted at={}", i + 1));
    }
    if histogram(&back) != input_hist {
        return Err("lines-byte-multiset-differs".to_string());
    }

    let chars_out =
        std::fs::read(&chars_path).map_err(|e| format!("cannot-read-back error={e}"))?;
    let back_chars = split_lines(&chars_out);
    if back_chars.len() != lines.len() {
        return Err(format!(
            "chars-line-count-mismatch expected={} got={}",
            lines.len(),
            back_chars.len()
        ));
    }
    for (i, (got, orig)) in back_chars.iter().zip(&lines).enumerate() {
        if got.len() != orig.len() || got.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("chars-not-sorted line={}", i + 1));
        }
    }
    if histogram(&back_chars) != input_hist {
        return Err("chars-byte-multiset-differs".to_string());
    }

    Ok(format!(
        "lines={} bytes={} checksum={:016x}",
        lines.len(),
        lines_out.len(),
        fnv1a64(&lines_out)
    ))
}

fn main() -> ExitCode {
    let start_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "PIPELINE_MAIN_START_NS={start_ns}");
    let _ = out.flush();

    let args: Vec<String> = std::env::args().collect();
    let result = if args.len() != 3 {
        Err("usage=sorting-INPUT-OUTDIR".to_string())
    } else {
        run(&args[1], &args[2])
    };
    let code = match result {
        Ok(details) => {
            let _ = writeln!(out, "PIPELINE_RESULT status=ok {details}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            let _ = writeln!(out, "PIPELINE_RESULT status=fail reason={reason}");
            ExitCode::FAILURE
        }
    };
    let _ = out.flush();
    code
}

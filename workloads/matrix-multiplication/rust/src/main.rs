use std::io::Write;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

const N: usize = 100;
const SEED: u64 = 0x5EED;

/// splitmix64: the same generator in every language, in wrapping u64 arithmetic.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn main() -> ExitCode {
    let start_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut out = std::io::stdout();
    let _ = writeln!(out, "PIPELINE_MAIN_START_NS={start_ns}");
    let _ = out.flush();

    // Entries are k/8 with k in 0..1000: every product is a multiple of 1/64 and every
    // partial sum stays far below 2^47, so all arithmetic is exact in f64. The sum is
    // therefore bit-identical across languages and architectures, FMA contraction or not.
    let mut rng = SplitMix64(SEED);
    let mut a = vec![0.0f64; N * N];
    let mut b = vec![0.0f64; N * N];
    for v in a.iter_mut() {
        *v = (rng.next() % 1000) as f64 / 8.0;
    }
    for v in b.iter_mut() {
        *v = (rng.next() % 1000) as f64 / 8.0;
    }

    let mut c = vec![0.0f64; N * N];
    for i in 0..N {
        for j in 0..N {
            let mut acc = 0.0f64;
            for k in 0..N {
                acc += a[i * N + k] * b[k * N + j];
            }
            c[i * N + j] = acc;
        }
    }
    let sum: f64 = c.iter().sum();

    // Independent check: sum(A*B) = sum_k colsum_A[k] * rowsum_B[k].
    let mut check = 0.0f64;
    for k in 0..N {
        let col_a: f64 = (0..N).map(|i| a[i * N + k]).sum();
        let row_b: f64 = (0..N).map(|j| b[k * N + j]).sum();
        check += col_a * row_b;
    }

    if sum != check {
        let _ = writeln!(
            out,
            "PIPELINE_RESULT status=fail reason=checksum-mismatch sum={sum:.3} check={check:.3}"
        );
        let _ = out.flush();
        return ExitCode::FAILURE;
    }
    let _ = writeln!(out, "PIPELINE_RESULT status=ok sum={sum:.3} n={N}");
    let _ = out.flush();
    ExitCode::SUCCESS
}

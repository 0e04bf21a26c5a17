//! Per-cell statistics of repeated measurements.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single value.
    pub std_dev: f64,
    /// 95% confidence interval of the mean, from Student's t.
    pub ci95_low: f64,
    pub ci95_high: f64,
}

/// Summarises the values; `None` when there are none.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = values
        .iter()
        .copied()
        .filter(|value| value.is_finite())
        .collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])
    };
    let count = n as f64;
    let mean = sorted.iter().sum::<f64>() / count;
    let std_dev = if n > 1 {
        (sorted
            .iter()
            .map(|value| (value - mean).powi(2))
            .sum::<f64>()
            / (count - 1.0))
            .sqrt()
    } else {
        0.0
    };
    let half_width = if n > 1 {
        t_critical_95(n - 1) * std_dev / count.sqrt()
    } else {
        0.0
    };
    Some(Summary {
        n,
        median,
        mean,
        std_dev,
        ci95_low: mean - half_width,
        ci95_high: mean + half_width,
    })
}

/// Two-sided 95% critical value of Student's t with `df` degrees of freedom.
fn t_critical_95(df: usize) -> f64 {
    // Exact to three decimals for small samples, where it matters most.
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        31..=40 => 2.021,
        41..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_a_small_sample() {
        let summary = summarize(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(summary.n, 8);
        assert!((summary.mean - 5.0).abs() < 1e-12);
        assert!((summary.median - 4.5).abs() < 1e-12);
        assert!((summary.std_dev - 2.138_089_935).abs() < 1e-6);
        // t(7) = 2.365: half width 2.365 * 2.138 / sqrt(8) = 1.7877
        assert!((summary.ci95_high - 6.787_7).abs() < 1e-3, "{summary:?}");
        assert!((summary.ci95_low - 3.212_3).abs() < 1e-3, "{summary:?}");
    }

    #[test]
    fn one_value_and_none() {
        let one = summarize(&[3.0]).unwrap();
        assert_eq!(
            (one.median, one.std_dev, one.ci95_low, one.ci95_high),
            (3.0, 0.0, 3.0, 3.0)
        );
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[f64::NAN]).is_none());
    }
}

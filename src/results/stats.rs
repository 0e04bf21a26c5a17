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

/// The median of the finite values; `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    Some(if n % 2 == 1 {
        sorted[n / 2]
    } else {
        f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])
    })
}

/// The outcome of a two-sided Mann–Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankTest {
    /// The smaller of the two U statistics.
    pub u: f64,
    pub p_value: f64,
    /// Whether `p_value` is exact (no ties, small samples) or from the
    /// normal approximation with tie and continuity correction.
    pub exact: bool,
}

/// Largest combined sample for which the exact null distribution is
/// counted; the counts stay exact in an f64 up to there.
const EXACT_RANK_TEST_LIMIT: usize = 50;

/// Two-sided Mann–Whitney U test of whether `a` and `b` come from the same
/// distribution. It assumes nothing about the shape of either, which suits
/// timings: skewed, with the odd slow outlier. `None` if a side is empty.
pub fn mann_whitney_u(first: &[f64], second: &[f64]) -> Option<RankTest> {
    let first: Vec<f64> = first.iter().copied().filter(|v| v.is_finite()).collect();
    let second: Vec<f64> = second.iter().copied().filter(|v| v.is_finite()).collect();
    if first.is_empty() || second.is_empty() {
        return None;
    }
    let mut pooled: Vec<(f64, bool)> = first
        .iter()
        .map(|&v| (v, true))
        .chain(second.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Average ranks over ties; the tie sizes correct the variance.
    let mut rank_sum_first = 0.0;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < pooled.len() {
        let mut end = start + 1;
        while end < pooled.len() && pooled[end].0.total_cmp(&pooled[start].0).is_eq() {
            end += 1;
        }
        let average_rank = (start + end + 1) as f64 / 2.0;
        let tied = (end - start) as f64;
        tie_term += tied.powi(3) - tied;
        let from_first = pooled[start..end]
            .iter()
            .filter(|(_, in_first)| *in_first)
            .count();
        rank_sum_first += average_rank * from_first as f64;
        start = end;
    }
    let (size_first, size_second) = (first.len() as f64, second.len() as f64);
    let pairs = size_first * size_second;
    let u_first = rank_sum_first - size_first * (size_first + 1.0) / 2.0;
    let u_statistic = u_first.min(pairs - u_first);
    if tie_term == 0.0 && first.len() + second.len() <= EXACT_RANK_TEST_LIMIT {
        let distribution = u_distribution(first.len(), second.len());
        let total: f64 = distribution.iter().sum();
        // Without ties U is a whole number.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "U is a non-negative whole number at most n1 * n2"
        )]
        let at_most = distribution[..=(u_statistic.round() as usize)]
            .iter()
            .sum::<f64>();
        return Some(RankTest {
            u: u_statistic,
            p_value: (2.0 * at_most / total).min(1.0),
            exact: true,
        });
    }
    let size = size_first + size_second;
    let variance = pairs / 12.0 * ((size + 1.0) - tie_term / (size * (size - 1.0)));
    if variance <= 0.0 {
        // Every value is the same: nothing tells the samples apart.
        return Some(RankTest {
            u: u_statistic,
            p_value: 1.0,
            exact: false,
        });
    }
    let z_score = ((pairs / 2.0 - u_statistic).abs() - 0.5).max(0.0) / variance.sqrt();
    Some(RankTest {
        u: u_statistic,
        p_value: erfc(z_score / std::f64::consts::SQRT_2).min(1.0),
        exact: false,
    })
}

/// How many of the arrangements of `m` and `n` distinct values give each U,
/// from U = 0 to m·n (the recurrence of Mann and Whitney, 1947).
fn u_distribution(m: usize, n: usize) -> Vec<f64> {
    // counts[i][j] is the distribution for samples of i and j values.
    let mut counts: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); n + 1]; m + 1];
    for i in 0..=m {
        for j in 0..=n {
            counts[i][j] = if i == 0 || j == 0 {
                vec![1.0]
            } else {
                // The largest value is in the first sample (adding j to U) or in the second.
                let mut here = vec![0.0; i * j + 1];
                for (u, count) in counts[i - 1][j].iter().enumerate() {
                    here[u + j] += count;
                }
                for (u, count) in counts[i][j - 1].iter().enumerate() {
                    here[u] += count;
                }
                here
            };
        }
    }
    std::mem::take(&mut counts[m][n])
}

/// The complementary error function, with a relative error below 1.2e-7
/// (the Chebyshev fit in Numerical Recipes, `erfcc`).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * poly.exp();
    if x >= 0.0 { value } else { 2.0 - value }
}

/// Holm's step-down adjustment of p-values for testing many cells at once:
/// flagging adjusted p < α keeps the chance of any false flag below α.
pub fn holm_adjust(p_values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p_values.len()).collect();
    order.sort_by(|&x, &y| p_values[x].total_cmp(&p_values[y]));
    let tests = p_values.len() as f64;
    let mut adjusted = vec![1.0; p_values.len()];
    let mut running_max: f64 = 0.0;
    for (position, &index) in order.iter().enumerate() {
        let value = ((tests - position as f64) * p_values[index]).min(1.0);
        running_max = running_max.max(value);
        adjusted[index] = running_max;
    }
    adjusted
}

/// The splitmix64 generator: tiny, seeded, and the same on every platform
/// and version, so a report's bootstrap intervals are reproducible.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index below `len`; the modulo bias is below len / 2^64.
    pub fn below(&mut self, len: usize) -> usize {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the remainder is below len, a usize"
        )]
        let index = (self.next_u64() % len as u64) as usize;
        index
    }
}

/// Percentile bootstrap 95% interval of median(numerator) / median(denominator):
/// each side is resampled with replacement, `resamples` times, from `seed`.
/// `None` if a side is empty or the interval is undefined (zero medians).
pub fn bootstrap_ratio_of_medians(
    numerator: &[f64],
    denominator: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    let numerator: Vec<f64> = numerator
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let denominator: Vec<f64> = denominator
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if numerator.is_empty() || denominator.is_empty() || resamples == 0 {
        return None;
    }
    let mut random = SplitMix64::new(seed);
    let mut resample = |values: &[f64], into: &mut Vec<f64>| {
        into.clear();
        into.extend((0..values.len()).map(|_| values[random.below(values.len())]));
        median(into)
    };
    let (mut top, mut bottom) = (Vec::new(), Vec::new());
    let mut ratios = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        if let (Some(up), Some(down)) = (
            resample(&numerator, &mut top),
            resample(&denominator, &mut bottom),
        ) && down != 0.0
        {
            ratios.push(up / down);
        }
    }
    if ratios.len() < resamples / 2 {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    Some((
        quantile_sorted(&ratios, 0.025),
        quantile_sorted(&ratios, 0.975),
    ))
}

/// The `q` quantile of sorted values, interpolating linearly between ranks.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "position is between 0 and len - 1"
    )]
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_test_exact_for_separated_samples() {
        // Complete separation of 5 and 5: only 1 of C(10,5) = 252 arrangements
        // gives U = 0 on each side, so p = 2/252.
        let test = mann_whitney_u(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert!(test.exact);
        assert!(test.u.abs() < 1e-12);
        assert!((test.p_value - 2.0 / 252.0).abs() < 1e-12, "{test:?}");
    }

    #[test]
    fn rank_test_matches_published_values() {
        // U = 3 for samples of 4 and 5 (no ties): U <= 3 in 1 + 1 + 2 + 3 of the
        // C(9,4) = 126 arrangements, so two-sided p = 14/126.
        let test = mann_whitney_u(&[1.0, 3.0, 5.0, 7.0], &[4.0, 6.0, 8.0, 9.0, 10.0]).unwrap();
        assert!((test.u - 3.0).abs() < 1e-12);
        assert!((test.p_value - 14.0 / 126.0).abs() < 1e-12, "{test:?}");
    }

    #[test]
    fn rank_test_identical_and_tied_samples_are_not_significant() {
        let same = [5.0, 5.0, 6.0, 7.0, 7.0, 8.0];
        let test = mann_whitney_u(&same, &same).unwrap();
        assert!(!test.exact);
        assert!(test.p_value > 0.9, "{test:?}");
        let constant = mann_whitney_u(&[3.0; 4], &[3.0; 6]).unwrap();
        assert!((constant.p_value - 1.0).abs() < 1e-12);
        assert!(mann_whitney_u(&[], &[1.0]).is_none());
    }

    #[test]
    fn rank_test_normal_approximation_for_large_tied_samples() {
        // 30 against 30 with ties, the second shifted by a lot: tiny p.
        let a: Vec<f64> = (0..30).map(|i| f64::from(i / 2)).collect();
        let b: Vec<f64> = (0..30).map(|i| f64::from(i / 2) + 100.0).collect();
        let test = mann_whitney_u(&a, &b).unwrap();
        assert!(!test.exact);
        assert!(test.p_value < 1e-9, "{test:?}");
    }

    #[test]
    fn erfc_matches_known_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207).abs() < 1e-7);
        assert!((erfc(-1.0) - 1.842_700_793).abs() < 1e-7);
    }

    #[test]
    fn holm_keeps_order_and_caps_at_one() {
        let adjusted = holm_adjust(&[0.01, 0.04, 0.03, 0.5]);
        // Sorted: 0.01*4 = 0.04, 0.03*3 = 0.09, 0.04*2 = 0.08 -> 0.09 (monotone), 0.5*1.
        assert_eq!(adjusted.len(), 4);
        assert!((adjusted[0] - 0.04).abs() < 1e-12);
        assert!((adjusted[2] - 0.09).abs() < 1e-12);
        assert!((adjusted[1] - 0.09).abs() < 1e-12);
        assert!((adjusted[3] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_interval_brackets_the_ratio_and_is_seeded() {
        let slow: Vec<f64> = (0..20).map(|i| 200.0 + f64::from(i % 5)).collect();
        let fast: Vec<f64> = (0..20).map(|i| 100.0 + f64::from(i % 5)).collect();
        let (low, high) = bootstrap_ratio_of_medians(&slow, &fast, 2000, 7).unwrap();
        assert!(
            low <= 202.0 / 102.0 && high >= 202.0 / 102.0,
            "{low} {high}"
        );
        assert!(low > 1.9 && high < 2.1, "{low} {high}");
        assert_eq!(
            bootstrap_ratio_of_medians(&slow, &fast, 2000, 7),
            Some((low, high))
        );
        assert!(bootstrap_ratio_of_medians(&slow, &[], 10, 1).is_none());
        assert!(bootstrap_ratio_of_medians(&slow, &[0.0, 0.0], 10, 1).is_none());
    }

    #[test]
    fn median_and_quantiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert!((quantile_sorted(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5) - 3.0).abs() < 1e-12);
        assert!((quantile_sorted(&[1.0, 2.0], 0.25) - 1.25).abs() < 1e-12);
    }

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

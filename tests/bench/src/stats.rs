//! Latency samples → percentiles, and the median across rounds.

use serde::Serialize;

/// Percentiles of one set of latency samples, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

/// The nearest-rank percentile (`p` in 0..=100) of sorted samples; 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied().unwrap_or(0)
}

/// Summarises samples given in nanoseconds.
pub fn summarize(samples_ns: &[u64]) -> Summary {
    let mut sorted = samples_ns.to_vec();
    sorted.sort_unstable();
    let us = |ns: u64| ns as f64 / 1_000.0;
    let mean =
        if sorted.is_empty() { 0.0 } else { sorted.iter().map(|&v| v as f64).sum::<f64>() / sorted.len() as f64 };
    Summary {
        count: sorted.len(),
        p50_us: us(percentile(&sorted, 50.0)),
        p90_us: us(percentile(&sorted, 90.0)),
        p99_us: us(percentile(&sorted, 99.0)),
        max_us: us(sorted.last().copied().unwrap_or(0)),
        mean_us: mean / 1_000.0,
    }
}

/// The median of per-round figures (mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match (sorted.get(mid.wrapping_sub(1)), sorted.get(mid)) {
        (Some(a), Some(b)) if sorted.len().is_multiple_of(2) => (a + b) / 2.0,
        (_, Some(b)) => *b,
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), 50);
        assert_eq!(percentile(&samples, 99.0), 99);
        assert_eq!(percentile(&samples, 100.0), 100);
        assert_eq!(percentile(&samples, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        // 1,000 samples: p99 is the 990th value, not the maximum.
        let many: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&many, 99.0), 990);
    }

    #[test]
    fn summary_in_microseconds_regardless_of_order() {
        let samples = [3_000u64, 1_000, 2_000, 100_000];
        let s = summarize(&samples);
        assert_eq!(s.count, 4);
        assert_eq!(s.p50_us, 2.0);
        assert_eq!(s.p99_us, 100.0);
        assert_eq!(s.max_us, 100.0);
        assert_eq!(s.mean_us, 26.5);
        assert_eq!(summarize(&[]), Summary::default());
    }

    #[test]
    fn median_of_rounds() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[5.0]), 5.0);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[f64::NAN, 1.0, 3.0]), 2.0);
    }
}

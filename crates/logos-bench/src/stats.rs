//! Order statistics over measured samples: median, p99, min, mean.
//!
//! Owns the arithmetic only, so every row computes its figures the same way. Never measures
//! anything and never prints.

use serde::Serialize;

/// Order statistics of one set of samples, in the unit the samples were taken in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// The 50th percentile.
    pub median: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The smallest sample.
    pub min: f64,
    /// The arithmetic mean.
    pub mean: f64,
}

/// Sorts `samples` and summarises them; all zero for no samples.
pub fn summarize(samples: &mut [f64]) -> Summary {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n == 0 {
        return Summary {
            n,
            median: 0.0,
            p99: 0.0,
            min: 0.0,
            mean: 0.0,
        };
    }
    Summary {
        n,
        median: percentile(samples, 0.5),
        p99: percentile(samples, 0.99),
        min: samples[0],
        mean: samples.iter().sum::<f64>() / n as f64,
    }
}

/// The `q` quantile (0..=1) of sorted, non-empty `sorted`, nearest rank.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let last = sorted.len() - 1;
    let at = ((last as f64) * q).round() as usize;
    sorted[at.min(last)]
}

/// The median of `values` (not required to be sorted); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    summarize(&mut v).median
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = summarize(&mut v);
        assert_eq!(s.n, 100);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.median, 51.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.mean, 50.5);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(summarize(&mut []).n, 0);
    }
}

//! TCP health from the kernel's counters and log-linear RTT buckets: percentiles through
//! HdrHistogram, and Prometheus histogram buckets on exact bucket boundaries.
use capture_common::tcp::{rtt_bucket_floor, RTT_BUCKETS};
use hdrhistogram::Histogram;

/// Percentiles of one RTT histogram, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RttSummary {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

/// Folds kernel buckets into an HdrHistogram (each bucket at its midpoint, so the error
/// is at most an eighth of the value) and reads the percentiles.
pub fn summarize(buckets: &[u64; RTT_BUCKETS as usize]) -> RttSummary {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 1 << 45, 3).expect("valid bounds");
    for (bucket, &count) in buckets.iter().enumerate() {
        if count > 0 {
            let low = rtt_bucket_floor(bucket as u32);
            let high = if bucket + 1 < buckets.len() { rtt_bucket_floor(bucket as u32 + 1) } else { low * 2 };
            let _ = histogram.record_n((low + (high - low) / 2).clamp(1, 1 << 45), count);
        }
    }
    if histogram.is_empty() {
        return RttSummary::default();
    }
    RttSummary {
        count: histogram.len(),
        p50_ns: histogram.value_at_quantile(0.50),
        p90_ns: histogram.value_at_quantile(0.90),
        p99_ns: histogram.value_at_quantile(0.99),
        max_ns: histogram.max(),
    }
}

/// Upper bounds of the Prometheus buckets: powers of two of nanoseconds (4 µs to 17 s),
/// which are kernel bucket boundaries, so every count is exact.
pub fn prometheus_bounds_ns() -> impl Iterator<Item = u64> {
    (12..=34).step_by(2).map(|power| 1u64 << power)
}

/// Observations at or below `bound_ns` (a bucket boundary).
pub fn count_at_most(buckets: &[u64; RTT_BUCKETS as usize], bound_ns: u64) -> u64 {
    buckets
        .iter()
        .enumerate()
        .filter(|(bucket, _)| {
            let next = *bucket as u32 + 1;
            next < RTT_BUCKETS && rtt_bucket_floor(next) <= bound_ns
        })
        .map(|(_, count)| count)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use capture_common::tcp::rtt_bucket;

    #[test]
    fn percentiles_and_cumulative_counts() {
        let mut buckets = [0u64; RTT_BUCKETS as usize];
        for ns in [100_000u64, 200_000, 300_000, 400_000, 5_000_000] {
            buckets[rtt_bucket(ns) as usize] += 1;
        }
        let summary = summarize(&buckets);
        assert_eq!(summary.count, 5);
        let near = |a: u64, b: u64| a.abs_diff(b) * 8 <= b;
        assert!(near(summary.p50_ns, 300_000), "{summary:?}");
        assert!(near(summary.max_ns, 5_000_000), "{summary:?}");
        assert_eq!(count_at_most(&buckets, 1 << 18), 2); // 262 µs
        assert_eq!(count_at_most(&buckets, 1 << 22), 4); // 4.2 ms
        assert_eq!(count_at_most(&buckets, 1 << 34), 5);
    }
}

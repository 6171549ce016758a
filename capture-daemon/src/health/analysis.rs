//! TCP health from the kernel's counters and log-linear RTT buckets: percentiles through
//! HdrHistogram, and Prometheus histogram buckets on exact bucket boundaries.
use capture_common::tcp::{rtt_bucket_floor, RTT_BUCKETS};
use capture_common::Counter;
use hdrhistogram::Histogram;

/// One of the kernel's RTT histograms and how it is shown.
#[derive(Clone, Copy, Debug)]
pub struct RttKind {
    /// Index in the kernel's RTT array.
    pub index: usize,
    /// Key in JSON (stats, snapshots).
    pub key: &'static str,
    /// Prometheus histogram family and this histogram's label (name, value) in it.
    pub metric: &'static str,
    pub label: (&'static str, &'static str),
    /// The kernel counter holding the sum of the samples.
    pub sum: Counter,
    /// What it measures, for people.
    pub what: &'static str,
}

/// The kernel's RTT histograms, in index order.
pub const RTT_KINDS: [RttKind; 4] = [
    RttKind {
        index: 0,
        key: "handshake_rtt_server",
        metric: "ringcap_tcp_handshake_rtt_seconds",
        label: ("side", "server"),
        sum: Counter::TcpRttServerNs,
        what: "handshake, server side (SYN to SYN-ACK)",
    },
    RttKind {
        index: 1,
        key: "handshake_rtt_client",
        metric: "ringcap_tcp_handshake_rtt_seconds",
        label: ("side", "client"),
        sum: Counter::TcpRttClientNs,
        what: "handshake, client side (SYN-ACK to ACK)",
    },
    RttKind {
        index: 2,
        key: "timestamp_rtt",
        metric: "ringcap_tcp_rtt_seconds",
        label: ("method", "timestamp"),
        sum: Counter::TcpRttTimestampNs,
        what: "TCP timestamps (TSval to its TSecr)",
    },
    RttKind {
        index: 3,
        key: "data_rtt",
        metric: "ringcap_tcp_rtt_seconds",
        label: ("method", "data"),
        sum: Counter::TcpRttDataNs,
        what: "data to its ACK (Karn's rule)",
    },
];

/// Wireshark's TCP analysis counters (`tcp.analysis.*`), with their Prometheus label.
pub const TCP_ANALYSIS: [(Counter, &str); 10] = [
    (Counter::TcpRetransmission, "retransmission"),
    (Counter::TcpFastRetransmission, "fast_retransmission"),
    (Counter::TcpSpuriousRetransmission, "spurious_retransmission"),
    (Counter::TcpOutOfOrder, "out_of_order"),
    (Counter::TcpDuplicateAck, "duplicate_ack"),
    (Counter::TcpKeepAlive, "keep_alive"),
    (Counter::TcpLostSegment, "lost_segment"),
    (Counter::TcpWindowFull, "window_full"),
    (Counter::TcpZeroWindow, "zero_window"),
    (Counter::TcpReusedPorts, "reused_ports"),
];

/// Percentiles of one RTT histogram, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RttSummary {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

/// Folds kernel buckets into an HdrHistogram (each bucket at its midpoint, so the error
/// is at most an eighth of the value) and reads the percentiles.
pub fn rtt_summary(buckets: &[u64; RTT_BUCKETS as usize]) -> RttSummary {
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
        let summary = rtt_summary(&buckets);
        assert_eq!(summary.count, 5);
        let near = |a: u64, b: u64| a.abs_diff(b) * 8 <= b;
        assert!(near(summary.p50_ns, 300_000), "{summary:?}");
        assert!(near(summary.max_ns, 5_000_000), "{summary:?}");
        assert_eq!(count_at_most(&buckets, 1 << 18), 2); // 262 µs
        assert_eq!(count_at_most(&buckets, 1 << 22), 4); // 4.2 ms
        assert_eq!(count_at_most(&buckets, 1 << 34), 5);
    }
}

//! The RTT histograms' layout: log-linear buckets of nanoseconds, by kind.

/// Buckets per RTT histogram: log-linear, four sub-buckets per power of two of nanoseconds.
pub const RTT_BUCKETS: u32 = 256;

/// Histograms in the kernel's RTT array, per slot: the handshake's server and client
/// sides, TCP timestamps, data to ACK.
pub const RTT_KINDS: u32 = 4;

pub const RTT_SERVER: u32 = 0;

pub const RTT_CLIENT: u32 = 1;

pub const RTT_TIMESTAMP: u32 = 2;

pub const RTT_DATA: u32 = 3;

/// The bucket of a value in nanoseconds.
#[inline(always)]
pub fn rtt_bucket(ns: u64) -> u32 {
    if ns < 4 {
        return ns as u32;
    }
    let log = 63 - ns.leading_zeros();
    let sub = ((ns >> (log - 2)) & 3) as u32;
    4 * (log - 1) + sub
}

/// The smallest value of a bucket.
pub fn rtt_bucket_floor(bucket: u32) -> u64 {
    if bucket < 4 {
        return u64::from(bucket);
    }
    let log = bucket / 4 + 1;
    (4 + u64::from(bucket % 4)) << (log - 2)
}

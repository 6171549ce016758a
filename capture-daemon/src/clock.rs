//! Conversion of kernel CLOCK_MONOTONIC timestamps to wall-clock (UTC) time.
//!
//! The kernel stamps records with `bpf_ktime_get_ns` (CLOCK_MONOTONIC). The offset
//! between CLOCK_REALTIME and CLOCK_MONOTONIC changes when NTP steps or slews the
//! clock, so it is re-sampled regularly; each sample reads MONOTONIC, REALTIME,
//! MONOTONIC and keeps the tightest of a few tries, bounding the error by the gap.
use std::time::Duration;

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Kernel monotonic time now, in nanoseconds (the clock of `bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// Maps monotonic kernel timestamps to time since the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// REALTIME minus MONOTONIC, in nanoseconds.
    offset_ns: i128,
    /// Uncertainty of the offset: the gap between the two monotonic reads.
    error_ns: i128,
}

impl WallClock {
    /// Samples the REALTIME - MONOTONIC offset, keeping the tightest of several tries.
    pub fn sample() -> Self {
        let mut best = WallClock { offset_ns: 0, error_ns: i128::MAX };
        for _ in 0..5 {
            let before = clock_ns(libc::CLOCK_MONOTONIC);
            let real = clock_ns(libc::CLOCK_REALTIME);
            let after = clock_ns(libc::CLOCK_MONOTONIC);
            let gap = after - before;
            if gap < best.error_ns {
                best = WallClock { offset_ns: real - (before + gap / 2), error_ns: gap };
            }
        }
        best
    }

    /// Time since the Unix epoch of a kernel monotonic timestamp.
    pub fn to_unix(&self, monotonic_ns: u64) -> Duration {
        // 64-bit arithmetic: this runs once per packet (i128 division is a libcall).
        let ns = (monotonic_ns as i64).saturating_add(self.offset_ns as i64).max(0) as u64;
        Duration::new(ns / 1_000_000_000, (ns % 1_000_000_000) as u32)
    }

    /// Upper bound of the conversion error of this sample, in nanoseconds.
    pub fn error_ns(&self) -> u64 {
        self.error_ns as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn monotonic_now_converts_to_system_time_now() {
        let clock = WallClock::sample();
        let before = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
        let converted = clock.to_unix(monotonic_ns());
        let after = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
        let slack = Duration::from_micros(50);
        assert!(
            converted + slack >= before && converted <= after + slack,
            "{before:?} <= {converted:?} <= {after:?}"
        );
        assert!(clock.error_ns() < 50_000, "offset sampled with a {} ns gap", clock.error_ns());
    }
}

//! Conversion of kernel CLOCK_MONOTONIC timestamps to wall-clock (UTC) time.
//!
//! The kernel stamps records with `bpf_ktime_get_ns` (CLOCK_MONOTONIC). The offset
//! between CLOCK_REALTIME and CLOCK_MONOTONIC changes when NTP steps or slews the
//! clock, so it is re-sampled regularly; each sample reads MONOTONIC, REALTIME,
//! MONOTONIC and keeps the tightest of a few tries, bounding the error by the gap.
//!
//! One mapping serves the whole process ([`shared`]), and it moves only when the clocks
//! have drifted apart by more than [`STEP_NS`]: then the time between two stored packets
//! is the time between them in the kernel, to the nanosecond, whichever reader stored
//! them. The TCP analysis judges by those kernel times (out-of-order windows, the fast
//! retransmission window), so a tool reading the files judges the same packets alike.
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

/// How far the clocks may drift apart before the mapping follows (NTP slews at most
/// 500 ppm: 0.2 s at the fastest, minutes usually).
pub const STEP_NS: i64 = 100_000;

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

/// The process's wall-clock mapping, shared by every reader.
pub struct SharedClock {
    offset_ns: AtomicI64,
}

/// The process's one mapping.
pub fn shared() -> &'static SharedClock {
    static CLOCK: LazyLock<SharedClock> =
        LazyLock::new(|| SharedClock { offset_ns: AtomicI64::new(WallClock::sample().offset_ns as i64) });
    &CLOCK
}

impl SharedClock {
    /// The mapping in force.
    pub fn current(&self) -> WallClock {
        // The mapping follows the clocks only past STEP_NS of drift: that bounds its error
        // (beside the sub-microsecond gap of the sample it came from).
        WallClock {
            offset_ns: i128::from(self.offset_ns.load(Ordering::Relaxed)),
            error_ns: i128::from(STEP_NS),
        }
    }

    /// Samples the clocks and follows them if they drifted more than [`STEP_NS`] from the
    /// mapping in force.
    pub fn refresh(&self) {
        let sample = WallClock::sample();
        if sample.error_ns > i128::from(STEP_NS / 10) {
            // Preempted between the reads: an imprecise sample is no reason to move.
            return;
        }
        let sampled = sample.offset_ns as i64;
        let current = self.offset_ns.load(Ordering::Relaxed);
        if (sampled - current).abs() > STEP_NS {
            self.offset_ns.store(sampled, Ordering::Relaxed);
        }
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

    #[test]
    fn the_shared_mapping_holds_still_while_the_clocks_agree() {
        let before = shared().current().to_unix(1_000_000_000);
        shared().refresh();
        // Within STEP_NS of each other, the clocks leave the mapping where it was.
        assert_eq!(shared().current().to_unix(1_000_000_000), before);
    }
}

//! Times as ringcap reads the clock and shows them: RFC 3339 in UTC with nanoseconds, by
//! the `time` crate.
use std::time::{Duration, SystemTime};

use time::{macros::format_description, OffsetDateTime};

/// Now, as Unix time (the epoch itself on a clock set before it).
pub fn unix_now() -> Duration {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()
}

/// Now, in nanoseconds of Unix time.
pub fn unix_now_ns() -> u64 {
    unix_now().as_nanos() as u64
}

/// RFC 3339 with nanoseconds, UTC: `2026-11-24T10:00:00.123456789Z`.
pub fn rfc3339(ns: u64) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("{ns} ns after the epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_nanoseconds_in_utc() {
        assert_eq!(rfc3339(1_795_514_400_123_456_789), "2026-11-24T10:00:00.123456789Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400_000_000_005), "2000-02-29T00:00:00.000000005Z");
    }
}

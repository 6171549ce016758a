//! Time windows for retrieval: `--last 10m`, `--since 2026-11-24T10:00:00Z`,
//! `--since 10:15 --until 10:20` (UTC, today). A window holds the packets with
//! `since <= timestamp < until`.
use std::time::Duration;

use time::{Date, Month};

/// Why a window or a time cannot be read; each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("use either --last or --since, not both")]
    LastAndSince,
    #[error("say which packets: --last DURATION or --since TIME")]
    NoWindow,
    #[error("--until goes with --since, not --last")]
    UntilWithLast,
    #[error("the window is empty: --until must be after --since")]
    Empty,
    #[error("{0:?} is not a duration: use 90s, 10m, 2h, 1d or combinations like 1h30m")]
    BadDuration(String),
    #[error("{0:?} is not a time: use RFC 3339 (2026-11-24T10:15:00Z) or HH:MM[:SS] (UTC, today)")]
    BadTime(String),
}

/// Nanoseconds since the epoch, `since` inclusive, `until` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub since_ns: u64,
    pub until_ns: u64,
}

impl Window {
    pub fn contains(&self, ns: u64) -> bool {
        self.since_ns <= ns && ns < self.until_ns
    }

    pub fn overlaps(&self, earliest_ns: u64, latest_ns: u64) -> bool {
        earliest_ns < self.until_ns && latest_ns >= self.since_ns
    }

    /// The window from `--last`, or `--since`/`--until`, relative to `now`.
    pub fn from_args(
        last: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
        now: Duration,
    ) -> Result<Window, WindowError> {
        let now_ns = now.as_nanos() as u64;
        let window = match (last, since) {
            (Some(_), Some(_)) => return Err(WindowError::LastAndSince),
            (None, None) => return Err(WindowError::NoWindow),
            (Some(last), None) => {
                if until.is_some() {
                    return Err(WindowError::UntilWithLast);
                }
                let span = parse_duration(last)?;
                // A hair past now, so a packet stamped this very nanosecond is in.
                let span = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
                Window { since_ns: now_ns.saturating_sub(span), until_ns: now_ns + 1 }
            }
            (None, Some(since)) => Window {
                since_ns: parse_time(since, now)?,
                until_ns: until.map(|u| parse_time(u, now)).transpose()?.unwrap_or(u64::MAX),
            },
        };
        if window.until_ns <= window.since_ns {
            return Err(WindowError::Empty);
        }
        Ok(window)
    }
}

/// `90s`, `10m`, `2h`, `1d`, `500ms`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, WindowError> {
    let bad = || WindowError::BadDuration(text.to_string());
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        let part = Duration::try_from_secs_f64(value * seconds).map_err(|_| bad())?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// RFC 3339 (`2026-11-24T10:15:00Z`, `2026-11-24 10:15:00.5+01:00`) or `HH:MM[:SS]` today, UTC.
pub fn parse_time(text: &str, now: Duration) -> Result<u64, WindowError> {
    let bad = || WindowError::BadTime(text.to_string());
    let text = text.trim();
    let (date_days, clock) = match text.split_once(['T', 't', ' ']) {
        Some((date, clock)) => {
            let parts: Vec<&str> = date.split('-').collect();
            let [y, m, d] = parts[..] else { return Err(bad()) };
            let (y, m, d): (i32, u8, u8) =
                (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
            // The calendar's own checks: month, and day within that month of that year.
            let date =
                Month::try_from(m).and_then(|m| Date::from_calendar_date(y, m, d)).map_err(|_| bad())?;
            (i64::from(date.to_julian_day() - time::OffsetDateTime::UNIX_EPOCH.date().to_julian_day()), clock)
        }
        None => ((now.as_secs() / 86_400) as i64, text),
    };
    // Split off the zone: Z, +HH:MM or -HH:MM.
    let (clock, offset_secs) = if let Some(c) = clock.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else if let Some(at) = clock.rfind(['+', '-']) {
        let (c, zone) = clock.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').ok_or_else(bad)?;
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(0..24).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        (c, sign * (h * 3600 + m * 60))
    } else {
        (clock, 0)
    };
    let fields: Vec<&str> = clock.split(':').collect();
    let (h, m, s) = match fields[..] {
        [h, m] => (h, m, "0"),
        [h, m, s] => (h, m, s),
        _ => return Err(bad()),
    };
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let s: f64 = s.parse().map_err(|_| bad())?;
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0.0..61.0).contains(&s) {
        return Err(bad());
    }
    let secs = date_days
        .checked_mul(86_400)
        .and_then(|d| d.checked_add(h * 3600 + m * 60 - offset_secs))
        .filter(|&secs| secs >= 0)
        .ok_or_else(bad)?;
    // Whole seconds exactly, the fraction to the nanosecond; a time past what nanoseconds
    // since the epoch can hold (the year 2554) is refused.
    (secs as u64)
        .checked_add(s.trunc() as u64)
        .and_then(|whole| whole.checked_mul(1_000_000_000))
        .and_then(|ns| ns.checked_add((s.fract() * 1e9).round() as u64))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(1_795_514_400); // 2026-11-24T10:00:00Z

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "10", "m", "10x", "-5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    /// Numbers too large for any duration or time are refused, never a panic or a wrap.
    #[test]
    fn overflowing_numbers_are_refused() {
        for text in
            ["10000000000000000000s10000000000000000000s", "1e400s", "99999999999999999999d1s", "0.5s"]
        {
            let parsed = parse_duration(text);
            assert_eq!(parsed.is_ok(), text == "0.5s", "{text}: {parsed:?}");
        }
        for text in
            ["9999-12-31T23:59:59Z", "2026-11-24T10:00:00+99999999999999999:00", "2026-11-24T10:00:00+24:00"]
        {
            assert!(parse_time(text, NOW).is_err(), "{text}");
        }
        let w = Window::from_args(Some("5000000000d"), None, None, NOW).unwrap();
        assert_eq!(w.since_ns, 0, "a window longer than the epoch starts at the epoch");
    }

    #[test]
    fn times() {
        let at = |t| parse_time(t, NOW).unwrap();
        assert_eq!(at("2026-11-24T10:00:00Z"), 1_795_514_400_000_000_000);
        assert_eq!(at("2026-11-24T11:00:00+01:00"), 1_795_514_400_000_000_000);
        assert_eq!(at("2026-11-24 10:00:00.123456789Z"), 1_795_514_400_123_456_789);
        assert_eq!(at("09:30"), 1_795_512_600_000_000_000);
        assert_eq!(at("09:30:15"), 1_795_512_615_000_000_000);
        for bad in ["yesterday", "25:00", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "10:61"] {
            assert!(parse_time(bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows() {
        let w = Window::from_args(Some("10m"), None, None, NOW).unwrap();
        assert_eq!(w.until_ns - w.since_ns, 600_000_000_001);
        let w = Window::from_args(None, Some("09:00"), Some("09:30"), NOW).unwrap();
        assert!(w.contains(w.since_ns) && !w.contains(w.until_ns));
        assert!(Window::from_args(None, Some("09:30"), Some("09:00"), NOW).is_err());
        assert!(Window::from_args(None, None, None, NOW).is_err());
    }
}

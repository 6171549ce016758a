//! `pull --with-stats`: the TCP health and capture counters of a window, from the
//! snapshots the daemon stores while it writes each file (`STEM.snapshots.jsonl`, at most
//! one per frame interval) and when the file closes (`STEM.stats.json`), cumulative since
//! the daemon started. The window's statistics are the difference between the last
//! snapshot at or before its start (or the daemon's start) and the first at or after its
//! end, so they cover the window to within a frame interval; the span is reported. Rings
//! written before the periodic snapshots have the closing ones only: whole files then.
use std::collections::BTreeMap;
use std::path::Path;

use capture_common::tcp::RTT_BUCKETS;
use serde_json::{json, Value};

use super::window::Window;
use crate::health::analysis::{rtt_summary, RTT_KINDS};
use crate::records::{StatsSnapshot, TimelinePoint};
use crate::storage::index::{snapshots_path, stats_path};
use crate::storage::manifest::ring_files;
use crate::storage::nofollow;
use crate::timefmt::rfc3339;

/// The most a file's periodic snapshots may hold (one a frame interval, a few KiB each:
/// an hour's file at one a second is under 16 MiB).
const MAX_SNAPSHOTS_BYTES: u64 = 64 << 20;
/// The most a file's closing snapshot may hold.
const MAX_STATS_BYTES: u64 = 4 << 20;

/// A sidecar's text, or nothing when it is missing, not a regular file reached without a
/// symlink (a FIFO or a link to a device planted in the ring never blocks or bombs a
/// pull or a pin) or larger than `limit`.
fn sidecar_text(path: &Path, limit: u64) -> String {
    match nofollow::read_bounded(path, limit) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            eprintln!("ringcap: warning: {} skipped: {e}", path.display());
            String::new()
        }
    }
}

/// Why a window has no statistics.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("no statistics snapshot in the ring yet (the daemon stores one a frame interval)")]
    NoSnapshot,
    #[error("none of the {0} statistics snapshots stored beside the ring's files could be read")]
    Unreadable(usize),
    #[error(transparent)]
    Ring(#[from] std::io::Error),
}

/// Every snapshot stored beside the ring's files that reads, oldest first; and how many
/// were stored but do not read (a line cut by a crash, a damaged file).
fn snapshots(dir: &Path) -> Result<(Vec<StatsSnapshot>, usize), StatsError> {
    let (mut all, mut unreadable) = (Vec::new(), 0);
    let mut read = |text: &str| match serde_json::from_str::<StatsSnapshot>(text) {
        Ok(snapshot) => all.push(snapshot),
        Err(_) => unreadable += 1,
    };
    for data in ring_files(dir)? {
        sidecar_text(&snapshots_path(&data), MAX_SNAPSHOTS_BYTES).lines().for_each(&mut read);
        let closing = sidecar_text(&stats_path(&data), MAX_STATS_BYTES);
        if !closing.is_empty() {
            read(&closing);
        }
    }
    all.sort_by_key(|s| s.time_ns);
    Ok((all, unreadable))
}

/// What a window's statistics count, said in them: the daemon's counters, not the
/// packets a filter picked.
pub const SCOPE: &str = "everything the capture saw during the covered span, on every interface and direction; a filter given to pull or pin does not narrow these counts";

/// The statistics of `window`, or why they cannot be given.
pub fn window_stats(dir: &Path, window: Window) -> Result<Value, StatsError> {
    let (all, unreadable) = snapshots(dir)?;
    // The first snapshot at or after the window's end (the latest one if the window
    // reaches into what is still being written)...
    let Some(end) = all.iter().find(|s| s.time_ns >= window.until_ns).or(all.last()) else {
        return Err(if unreadable > 0 { StatsError::Unreadable(unreadable) } else { StatsError::NoSnapshot });
    };
    if end.time_ns < window.since_ns {
        return Ok(json!({ "note": "no statistics after the window's start yet" }));
    }
    // ...and the last one at or before its start, from the same run of the daemon. None:
    // the run started inside the window and counts from zero; or the snapshots before it
    // are gone with their files, and the first one left starts the span.
    let same_run = |s: &&StatsSnapshot| s.started_ns == end.started_ns;
    let start = all
        .iter()
        .rev()
        .filter(same_run)
        .find(|s| s.time_ns <= window.since_ns)
        .or_else(|| (end.started_ns < window.since_ns).then(|| all.iter().find(same_run)).flatten());
    let since = |counts: fn(&StatsSnapshot) -> &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        counts(end)
            .iter()
            .map(|(name, &count)| {
                let before = start.and_then(|s| counts(s).get(name)).copied().unwrap_or(0);
                (name.clone(), count.saturating_sub(before))
            })
            .collect()
    };
    let seen = |mut counts: BTreeMap<String, u64>| {
        counts.retain(|_, count| *count > 0);
        counts
    };
    let rtt = |key: &str| {
        let end_buckets = end.rtt_buckets(key, RTT_BUCKETS as usize);
        let start_buckets = start.map(|s| s.rtt_buckets(key, RTT_BUCKETS as usize));
        let mut window_buckets = [0u64; RTT_BUCKETS as usize];
        for (i, slot) in window_buckets.iter_mut().enumerate() {
            *slot = end_buckets[i].saturating_sub(start_buckets.as_ref().map_or(0, |b| b[i]));
        }
        rtt_summary(&window_buckets)
    };
    let from_ns = start.map_or(end.started_ns, |s| s.time_ns);
    Ok(json!({
        "window": { "since": rfc3339(window.since_ns), "until": if window.until_ns == u64::MAX { Value::Null } else { rfc3339(window.until_ns).into() } },
        "covered": { "from": rfc3339(from_ns), "to": rfc3339(end.time_ns) },
        "scope": SCOPE,
        "counters": since(|s| &s.kernel),
        "tcp": RTT_KINDS.iter().map(|kind| (kind.key.to_string(), json!(rtt(kind.key)))).collect::<serde_json::Map<_, _>>(),
        "icmp": { "messages": seen(since(|s| &s.icmp)), "path_mtu": seen(since(|s| &s.path_mtu)) },
        "dns": { "response_time": rtt("dns_response") },
        "tls": { "handshake_time": rtt("tls_handshake"), "alerts": seen(since(|s| &s.tls_alerts)) },
        "http": { "response_time": rtt("http_response") },
    }))
}

/// The most points a timeline has: longer windows add up several snapshots a point.
const MAX_TIMELINE_POINTS: usize = 600;

/// The window's counters second by second (a point per stored snapshot, at most
/// [`MAX_TIMELINE_POINTS`]): each point is the time it ends and the kernel counters that
/// moved since the point before, by how much. A restart of the daemon starts its counts
/// from zero.
pub fn window_timeline(dir: &Path, window: Window) -> Result<Vec<TimelinePoint>, StatsError> {
    let (all, _) = snapshots(dir)?;
    // The last snapshot before the window is the first point's base.
    let first = all.iter().rposition(|s| s.time_ns < window.since_ns).unwrap_or(0);
    let within: Vec<&StatsSnapshot> =
        all[first..].iter().take_while(|s| s.time_ns < window.until_ns.saturating_add(1)).collect();
    let step = within.len().div_ceil(MAX_TIMELINE_POINTS).max(1);
    let mut points = Vec::new();
    let mut base = within.first().copied();
    for snapshot in within.iter().skip(1).step_by(step) {
        let counters = snapshot
            .kernel
            .iter()
            .filter_map(|(name, &count)| {
                let before = base
                    .filter(|b| b.started_ns == snapshot.started_ns)
                    .and_then(|b| b.kernel.get(name))
                    .copied()
                    .unwrap_or(0);
                let added = if count >= before { count - before } else { count };
                (added > 0).then(|| (name.clone(), added))
            })
            .collect();
        points.push(TimelinePoint { time: rfc3339(snapshot.time_ns), counters });
        base = Some(snapshot);
    }
    Ok(points)
}

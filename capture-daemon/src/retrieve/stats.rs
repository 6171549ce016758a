//! `pull --with-stats`: the TCP health and capture counters of a window, from the
//! snapshots the daemon stores beside each file when it closes (`STEM.stats.json`,
//! cumulative since the daemon started). The window's statistics are the difference
//! between the snapshot that closed the last file of the window and the one that closed
//! the file before its first, so they cover whole files: the span is reported.
use std::path::Path;

use capture_common::tcp::RTT_BUCKETS;
use serde_json::{json, Value};

use super::pull::ring_files;
use super::window::Window;
use crate::health::analysis::{summarize, RTT_KINDS};
use crate::storage::frames::DataFile;
use crate::storage::index::stats_path;
use crate::timefmt::rfc3339;

fn read_snapshot(data: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(stats_path(data)).ok()?).ok()
}

fn buckets(snapshot: Option<&Value>, key: &str) -> [u64; RTT_BUCKETS as usize] {
    let mut dense = [0u64; RTT_BUCKETS as usize];
    for pair in snapshot.and_then(|s| s["rtt"][key].as_array()).into_iter().flatten() {
        if let (Some(bucket), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) {
            if let Some(slot) = dense.get_mut(bucket as usize) {
                *slot = count;
            }
        }
    }
    dense
}

/// The statistics of `window`, or why they cannot be given.
pub fn window_stats(dir: &Path, window: Window) -> Result<Value, String> {
    let mut files: Vec<_> = ring_files(dir)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|path| Some((DataFile::open(&path).ok()?.time_range()?, path)))
        .collect();
    files.sort_by_key(|(range, _)| *range);
    let Some(last) = files.iter().rposition(|((first, last), _)| window.overlaps(*first, *last)) else {
        return Ok(json!({ "note": "no packets in the window" }));
    };
    let first = files.iter().position(|((f, l), _)| window.overlaps(*f, *l)).expect("one overlaps");
    let end = read_snapshot(&files[last].1).ok_or_else(|| {
        format!(
            "{} is still being written: its statistics are stored when it closes (SIGHUP closes it now)",
            files[last].1.display()
        )
    })?;
    // The snapshot closing the file before the window, from the same run of the daemon.
    let start = first
        .checked_sub(1)
        .and_then(|before| read_snapshot(&files[before].1))
        .filter(|s| s["started_ns"] == end["started_ns"]);
    let delta = |key: &str, name: &str| {
        let at = |s: &Value| s[key][name].as_u64().unwrap_or(0);
        at(&end).saturating_sub(start.as_ref().map_or(0, at))
    };
    let counters: serde_json::Map<String, Value> = end["kernel"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, _)| (name.clone(), json!(delta("kernel", name))))
        .collect();
    let rtt = |key: &str| {
        let (end_buckets, start_buckets) = (buckets(Some(&end), key), buckets(start.as_ref(), key));
        let mut window_buckets = [0u64; RTT_BUCKETS as usize];
        for (i, slot) in window_buckets.iter_mut().enumerate() {
            *slot = end_buckets[i].saturating_sub(start_buckets[i]);
        }
        summarize(&window_buckets)
    };
    let from_ns = start.as_ref().or(Some(&end)).map_or(0, |s| {
        if start.is_some() {
            s["time_ns"].as_u64().unwrap_or(0)
        } else {
            s["started_ns"].as_u64().unwrap_or(0)
        }
    });
    Ok(json!({
        "window": { "since": rfc3339(window.since_ns), "until": if window.until_ns == u64::MAX { Value::Null } else { rfc3339(window.until_ns).into() } },
        "covered": { "from": rfc3339(from_ns), "to": rfc3339(end["time_ns"].as_u64().unwrap_or(0)) },
        "counters": counters,
        "tcp": RTT_KINDS.iter().map(|kind| (kind.key.to_string(), json!(rtt(kind.key)))).collect::<serde_json::Map<_, _>>(),
    }))
}

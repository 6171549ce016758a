//! The JSON bodies: the ring's files, and the daemon's statistics (counters, TCP health by
//! interface and direction, the last minute).
use std::sync::atomic::{AtomicU64, Ordering};

use capture_common::Counter;
use serde_json::json;

use super::Sources;
use crate::health::analysis::{rtt_summary, RttSummary, RTT_KINDS, TCP_ANALYSIS};
use crate::health::locked;
use crate::kernel::{KernelCounters, RttBuckets};
use crate::storage::frames::DataFile;
use crate::storage::manifest::ring_files;
use crate::timefmt::rfc3339;

pub fn files_json(dir: &std::path::Path) -> serde_json::Value {
    let files: Vec<_> = ring_files(dir)
        .unwrap_or_default()
        .iter()
        .map(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
            match DataFile::open(path) {
                Ok(file) => {
                    let range = file.time_range();
                    json!({
                        "name": name, "bytes": bytes, "frames": file.frames.len(),
                        "packets": file.frames.iter().map(|f| u64::from(f.packets)).sum::<u64>(),
                        "first": range.map(|r| rfc3339(r.0)), "last": range.map(|r| rfc3339(r.1)),
                        "damaged_bytes": file.damaged_bytes,
                    })
                }
                Err(e) => json!({ "name": name, "bytes": bytes, "error": e.to_string() }),
            }
        })
        .collect();
    json!({ "files": files })
}

pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

pub fn stats_json(sources: &Sources) -> serde_json::Value {
    let kernel = *locked(&sources.live.kernel);
    let kernel: serde_json::Map<String, serde_json::Value> =
        Counter::ALL.iter().map(|c| (c.name().to_string(), json!(kernel.get(*c)))).collect();
    let rtt = locked(&sources.live.rtt).clone();
    let since_start = tcp_json(&locked(&sources.live.kernel), rtt.as_deref());
    let last_minute = sources.live.last_minute().map(|(span, kernel, rtt)| {
        let mut tcp = tcp_json(&kernel, Some(&rtt));
        tcp["seconds"] = json!(span.as_secs_f64());
        tcp
    });
    let age = locked(&sources.live.history).back().map(|(at, _, _)| at.elapsed().as_secs_f64());
    json!({
        "kernel_counters_age_seconds": age,
        "tcp": since_start,
        "tcp_last_minute": last_minute,
        "tcp_by_interface": by_interface(sources),
        "icmp_by_interface": sources.live.icmp_health(),
        "dns_by_interface": sources.live.dns_health(),
        "tls_by_interface": sources.live.tls_health(),
        "http_by_interface": sources.live.http_health(),
        "flows": *locked(&sources.live.flows),
        "kernel": kernel,
        "reader": sources.live.reader.totals(),
        "xsk": *locked(&sources.live.xsk),
        "storage": sources.storage.totals(),
        "pins": sources.pins.list().iter().map(|p| p.to_json()).collect::<Vec<_>>(),
        "archive": sources.archive.as_ref().map(|a| a.to_json()),
    })
}

/// The TCP health of each slot (interface and direction) since start.
fn by_interface(sources: &Sources) -> serde_json::Value {
    let kernel = *locked(&sources.live.kernel);
    let rtt = locked(&sources.live.rtt_by_slot).clone();
    let slots = locked(&sources.live.slots).clone();
    slots
        .iter()
        .map(|label| {
            json!({
                "interface": label.interface,
                "direction": label.direction,
                "tcp": tcp_json(&kernel.only(label.slot), rtt.as_ref().map(|b| &b[label.slot])),
            })
        })
        .collect()
}

/// TCP health from kernel counters and RTT buckets (cumulative, or the difference of two
/// snapshots): RTT percentiles of each kind and Wireshark's analysis counts.
pub fn tcp_json(kernel: &KernelCounters, rtt: Option<&RttBuckets>) -> serde_json::Value {
    let mut tcp: serde_json::Map<String, serde_json::Value> = RTT_KINDS
        .iter()
        .map(|kind| {
            (
                kind.key.to_string(),
                json!(rtt.map_or_else(RttSummary::default, |b| rtt_summary(&b[kind.index]))),
            )
        })
        .collect();
    let analysis: serde_json::Map<String, serde_json::Value> = TCP_ANALYSIS
        .iter()
        .map(|(counter, label)| (label.to_string(), json!(kernel.get(*counter))))
        .collect();
    tcp.insert("analysis".into(), analysis.into());
    for counter in [
        Counter::TcpSyn,
        Counter::TcpSynAck,
        Counter::TcpFin,
        Counter::TcpRst,
        Counter::TcpHandshakes,
        Counter::TcpSynRefused,
        Counter::TcpSynRetransmission,
        Counter::TcpSegments,
        Counter::TcpPayloadBytes,
        Counter::TcpRetransmittedSegments,
    ] {
        tcp.insert(counter.name().into(), json!(kernel.get(counter)));
    }
    tcp.into()
}

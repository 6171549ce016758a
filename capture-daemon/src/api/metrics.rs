//! `/metrics`: the Prometheus text exposition of the daemon's counters.
use std::fmt::Write as _;

use capture_common::Counter;

use super::json::get;
use super::Sources;
use crate::health::analysis::{count_at_most, prometheus_bounds_ns, RTT_KINDS, TCP_ANALYSIS};
use crate::health::locked;

/// Prometheus text exposition: counters only, fixed label sets.
pub fn metrics_text(sources: &Sources) -> String {
    let kernel = *locked(&sources.live.kernel);
    let flows = *locked(&sources.live.flows);
    let xsk = *locked(&sources.live.xsk);
    let reader = &sources.live.reader;
    let s = &sources.storage;
    let mut out = String::new();
    let mut family = |name: &str, help: &str, series: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, value) in series {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    family(
        "ringcap_packets_seen_total",
        "Packets the kernel programs ran on.",
        &[("", kernel.get(Counter::Seen))],
    );
    family("ringcap_packets_captured_total", "Packets handed to the writer.", &[("", get(&reader.packets))]);
    family(
        "ringcap_packets_dropped_total",
        "Packets lost by the capture path, by reason.",
        &[
            ("{reason=\"ring_full\"}", kernel.get(Counter::RingFull)),
            ("{reason=\"copy_failed\"}", kernel.get(Counter::CopyFailed)),
            ("{reason=\"queue_full\"}", get(&reader.queue_dropped)),
            ("{reason=\"write_error\"}", get(&s.packets_lost)),
            ("{reason=\"xsk_no_socket\"}", kernel.get(Counter::XskNoSocket)),
            ("{reason=\"xsk_no_free_frame\"}", xsk.rx_dropped),
            ("{reason=\"xsk_ring_full\"}", xsk.rx_ring_full),
        ],
    );
    family(
        "ringcap_packets_not_selected_total",
        "Packets left out on purpose, by reason.",
        &[
            ("{reason=\"filter\"}", kernel.get(Counter::Filtered)),
            ("{reason=\"sampling\"}", kernel.get(Counter::SampledOut)),
            ("{reason=\"rate_limit\"}", kernel.get(Counter::RateLimited)),
        ],
    );
    // TCP health by interface and direction: a fixed set of series per slot in use.
    let slots = locked(&sources.live.slots).clone();
    let per_slot = |labels: &dyn Fn(&str) -> Vec<(String, Counter)>| -> Vec<(String, u64)> {
        slots
            .iter()
            .flat_map(|slot| {
                let kernel = kernel.only(slot.slot);
                let prefix = format!("interface=\"{}\",direction=\"{}\"", slot.interface, slot.direction);
                labels(&prefix).into_iter().map(move |(labels, counter)| (labels, kernel.get(counter)))
            })
            .collect()
    };
    let flags = per_slot(&|prefix| {
        [
            ("syn", Counter::TcpSyn),
            ("syn_ack", Counter::TcpSynAck),
            ("fin", Counter::TcpFin),
            ("rst", Counter::TcpRst),
            ("ece", Counter::TcpEce),
            ("cwr", Counter::TcpCwr),
        ]
        .into_iter()
        .map(|(flag, counter)| (format!("{{{prefix},flag=\"{flag}\"}}"), counter))
        .collect()
    });
    let analysis = per_slot(&|prefix| {
        TCP_ANALYSIS
            .iter()
            .map(|(counter, event)| (format!("{{{prefix},event=\"{event}\"}}"), *counter))
            .collect()
    });
    let handshakes = per_slot(&|prefix| vec![(format!("{{{prefix}}}"), Counter::TcpHandshakes)]);
    for (name, help, series) in [
        ("ringcap_tcp_segments_total", "TCP segments seen (selected or not), by flag.", &flags),
        (
            "ringcap_tcp_analysis_segments_total",
            "TCP segments flagged by Wireshark's analysis rules (tcp.analysis.*), by event.",
            &analysis,
        ),
        ("ringcap_tcp_handshakes_total", "TCP three-way handshakes seen to completion.", &handshakes),
    ] {
        let series: Vec<(&str, u64)> =
            series.iter().map(|(labels, value)| (labels.as_str(), *value)).collect();
        family(name, help, &series);
    }
    family(
        "ringcap_tcp_flows_total",
        "TCP flows of the analysis's flow table, by event.",
        &[
            ("{event=\"inserted\"}", kernel.get(Counter::TcpFlowsInserted)),
            ("{event=\"mid_stream\"}", kernel.get(Counter::TcpFlowsMidStream)),
            ("{event=\"insert_failed\"}", kernel.get(Counter::TcpFlowInsertFailed)),
            ("{event=\"evicted\"}", flows.evicted),
        ],
    );
    family(
        "ringcap_tcp_syn_unanswered_total",
        "TCP connection attempts whose SYN got no SYN-ACK within --syn-timeout.",
        &[("", flows.syn_unanswered)],
    );
    family(
        "ringcap_storage_bytes_written_total",
        "Bytes of frames written to the ring.",
        &[("", get(&s.bytes_written))],
    );
    family(
        "ringcap_storage_frames_written_total",
        "Frames written to the ring.",
        &[("", get(&s.frames_written))],
    );
    family(
        "ringcap_storage_files_created_total",
        "Files created in the ring.",
        &[("", get(&s.files_created))],
    );
    family(
        "ringcap_storage_files_removed_total",
        "Files removed from the ring, by reason.",
        &[
            ("{reason=\"retention\"}", get(&s.files_removed)),
            ("{reason=\"free_space\"}", get(&s.files_removed_for_space)),
        ],
    );
    family(
        "ringcap_storage_disk_full_events_total",
        "Writes that found the disk full.",
        &[("", get(&s.disk_full_events))],
    );
    family(
        "ringcap_storage_write_errors_total",
        "Frames that could not be written.",
        &[("", get(&s.write_errors))],
    );
    if let Some(buckets) = locked(&sources.live.rtt_by_slot).as_ref() {
        for (i, kind) in RTT_KINDS.iter().enumerate() {
            let name = kind.metric;
            if i == 0 || RTT_KINDS[i - 1].metric != name {
                let help = if name == "ringcap_tcp_handshake_rtt_seconds" {
                    "TCP handshake RTT at the capture point: server side SYN to SYN-ACK, client side SYN-ACK to ACK."
                } else {
                    "TCP RTT from the capture point to the data's receiver and back, by method: timestamps (TSval to TSecr) or data to ACK."
                };
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            }
            for slot in &slots {
                let label = format!(
                    "interface=\"{}\",direction=\"{}\",{}",
                    slot.interface, slot.direction, kind.label
                );
                let histogram = &buckets[slot.slot][kind.index];
                for bound in prometheus_bounds_ns() {
                    let le = bound as f64 / 1e9;
                    let count = count_at_most(histogram, bound);
                    let _ = writeln!(out, "{name}_bucket{{{label},le=\"{le}\"}} {count}");
                }
                let total: u64 = histogram.iter().sum();
                let sum = kernel.only(slot.slot).get(kind.sum) as f64 / 1e9;
                let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {total}");
                let _ = writeln!(out, "{name}_sum{{{label}}} {sum}");
                let _ = writeln!(out, "{name}_count{{{label}}} {total}");
            }
        }
    }
    out
}

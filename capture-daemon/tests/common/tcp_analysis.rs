//! The daemon's TCP analysis against tshark's, on what a ring stored.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::{scratch, tshark_fields, OutputWithin, RINGCAP};

/// What a live scenario's ring holds once stopped: the final statistics snapshot (stored
/// when its one file closed, after the programs were detached: kernel counters and RTT
/// buckets) and a pcap of every packet it stored.
pub fn final_snapshot_and_pcap(dir: &Path, name: &str) -> (serde_json::Value, std::path::PathBuf) {
    let snapshots: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".stats.json"))
        .collect();
    assert_eq!(snapshots.len(), 1, "one file (-G 0), one snapshot: {snapshots:?}");
    let snapshot: serde_json::Value = serde_json::from_slice(&std::fs::read(&snapshots[0]).unwrap()).unwrap();
    let pcap = scratch(name);
    let out = Command::new(RINGCAP)
        .args([
            "pull",
            "--dir",
            dir.to_str().unwrap(),
            "--last",
            "1h",
            "--format",
            "pcap",
            "-w",
            pcap.to_str().unwrap(),
        ])
        .output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (snapshot, pcap)
}

/// Every packet the programs analysed is in `pcap`, and ringcap's flag counts and
/// Wireshark analysis counts equal tshark's on it, kind by kind (Wireshark also marks a
/// fast or spurious retransmission as a retransmission; a plain one is marked only so).
pub fn assert_counts_equal_tshark(kernel: &serde_json::Value, pcap: &Path) {
    let ours = |key: &str| kernel[key].as_u64().unwrap_or_else(|| panic!("{key} in {kernel}"));
    let stored = ringcap_tools::harness::read_pcap(pcap).unwrap().len() as u64;
    assert_eq!(ours("ring_full") + ours("copy_failed"), 0, "the capture lost packets: {kernel}");
    assert_eq!(stored, ours("captured"), "every captured packet is stored");
    assert_eq!(ours("captured"), ours("seen"), "every analysed packet is captured");
    let frames = (1..=stored as usize).collect();
    let theirs = tshark_tcp_counts(pcap, &frames);
    let plain = theirs["retransmission (all kinds)"]
        - theirs["tcp_fast_retransmission"]
        - theirs["tcp_spurious_retransmission"];
    let mut differ = Vec::new();
    for (key, &expected) in theirs.iter().filter(|(k, _)| **k != "retransmission (all kinds)") {
        if ours(key) != expected {
            differ.push(format!("{key}: ringcap {}, tshark {expected}", ours(key)));
        }
    }
    if ours("tcp_retransmission") != plain {
        differ.push(format!("tcp_retransmission: ringcap {}, tshark {plain}", ours("tcp_retransmission")));
    }
    assert!(differ.is_empty(), "counts differ from tshark's on {}:\n{}", pcap.display(), differ.join("\n"));
}

/// tshark's flag and analysis counts over the given frames (1-based numbers) of a file.
pub fn tshark_tcp_counts(
    path: &std::path::Path,
    frames: &std::collections::BTreeSet<usize>,
) -> BTreeMap<&'static str, u64> {
    let rows = tshark_fields(path, "", &["frame.number", "tcp.flags", "_ws.expert.message"]);
    let mut counts = BTreeMap::new();
    for row in &rows {
        let mut fields = row.iter().map(String::as_str);
        let frame: usize = fields.next().unwrap_or_default().parse().unwrap_or(0);
        if !frames.contains(&frame) {
            continue;
        }
        let flags = fields.next().unwrap_or_default().split(',').next().unwrap_or_default();
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap_or(0);
        let messages = fields.next().unwrap_or_default();
        let mut add = |key: &'static str, yes: bool| *counts.entry(key).or_insert(0) += u64::from(yes);
        add("tcp_syn", flags & 0x12 == 0x02);
        add("tcp_syn_ack", flags & 0x12 == 0x12);
        add("tcp_fin", flags & 0x01 != 0);
        add("tcp_rst", flags & 0x04 != 0);
        let has = |text: &str| messages.split(',').any(|m| m == text);
        add("retransmission (all kinds)", has("This frame is a (suspected) retransmission"));
        add("tcp_fast_retransmission", has("This frame is a (suspected) fast retransmission"));
        add("tcp_spurious_retransmission", has("This frame is a (suspected) spurious retransmission"));
        add("tcp_out_of_order", has("This frame is a (suspected) out-of-order segment"));
        add("tcp_duplicate_ack", messages.split(',').any(|m| m.starts_with("Duplicate ACK (#")));
        add("tcp_keep_alive", has("TCP keep-alive segment"));
        add("tcp_lost_segment", has("Previous segment(s) not captured (common at capture start)"));
        add("tcp_window_full", has("TCP window specified by the receiver is now completely full"));
        add("tcp_zero_window", has("TCP Zero Window segment"));
        add(
            "tcp_reused_ports",
            has("A new tcp session is started with the same ports as an earlier session in this trace"),
        );
    }
    counts
}

//! Hostile and odd input (#30): every Ethernet capture of tcpdump's test suite (malformed
//! DNS, truncated and tunnelled packets, every ICMP there is) runs through the real XDP
//! program with the L7 health on; its ICMP and DNS counts equal tshark's on the same
//! packets, file by file, wherever the two read the same thing, and no packet breaks the
//! program.
mod common;

use std::collections::{BTreeMap, BTreeSet};

use capture_common::Counter;

/// The first value of a field tshark lists (an ICMP error quotes the packet that caused
/// it, a tunnel carries another: their fields come after the outer packet's).
fn first(field: &str) -> &str {
    field.split(',').next().unwrap_or_default()
}

/// What tshark counts of `frames` (frame numbers) of the capture at `path`, as the kernel
/// reads it: in IPv4 and IPv6 packets (after up to two VLAN tags; not in MACsec or
/// tunnels), ICMP messages of the outer packet whose type tshark could read (IPv4 not
/// fragmented or a first fragment, ICMPv6 right after the fixed header), and DNS over UDP
/// and TCP port 53 (a query to it, a response from it) by rcode and truncation.
fn tshark_counts(path: &std::path::Path, frames: &BTreeSet<usize>) -> BTreeMap<&'static str, u64> {
    let fields = [
        "frame.number",
        "ip.proto",
        "ip.frag_offset",
        "ipv6.nxt",
        "udp.srcport",
        "udp.dstport",
        "dns.flags.response",
        "dns.flags.rcode",
        "dns.flags.truncated",
        "tcp.srcport",
        "tcp.dstport",
        "eth.type",
        "vlan.etype",
        "icmp.type",
        "icmpv6.type",
    ];
    let mut counts = BTreeMap::new();
    for row in common::tshark_fields(path, "", &fields) {
        let field = |i: usize| row.get(i).map_or("", |f| first(f));
        if !frames.contains(&field(0).parse().unwrap_or(0)) {
            continue;
        }
        // The network layer: after the Ethernet header or its VLAN tags.
        let vlans = row.get(12).map_or("", String::as_str);
        let network = if vlans.is_empty() { field(11) } else { vlans.rsplit(',').next().unwrap_or_default() };
        if network != "0x0800" && network != "0x86dd" {
            continue;
        }
        let protocol = if field(1).is_empty() { field(3) } else { field(1) };
        let mut add = |key: &'static str| *counts.entry(key).or_insert(0) += 1;
        let ports = if protocol == "6" { (field(9), field(10)) } else { (field(4), field(5)) };
        match protocol {
            "1" if field(2) == "0" && !field(13).is_empty() => add("icmp_messages"),
            "58" if field(1).is_empty() && !field(14).is_empty() => add("icmp_messages"),
            "17" | "6" if !field(6).is_empty() => {
                let truthy = |f: &str| f == "1" || f == "True";
                let response = truthy(field(6));
                if response && ports.0 == "53" {
                    add(match field(7) {
                        "0" => "dns_noerror",
                        "2" => "dns_servfail",
                        "3" => "dns_nxdomain",
                        "5" => "dns_refused",
                        _ => "dns_other_rcode",
                    });
                    if truthy(field(8)) {
                        add("dns_truncated");
                    }
                } else if !response && ports.1 == "53" {
                    add("dns_queries");
                }
            }
            _ => {}
        }
    }
    counts
}

#[test]
fn the_corpus_icmp_and_dns_through_the_kernel_agree_with_tshark() {
    let mut program = common::corpus_program();
    let keys = [
        "icmp_messages",
        "dns_queries",
        "dns_noerror",
        "dns_nxdomain",
        "dns_servfail",
        "dns_refused",
        "dns_other_rcode",
        "dns_truncated",
    ];
    let (mut compared, mut totals, mut mismatches) = (0, BTreeMap::new(), Vec::new());
    for capture in common::corpus_captures() {
        if capture.linktype != 1 {
            continue;
        }
        program.forget_flows();
        let before = program.counters();
        let mut frames = BTreeSet::new();
        for (i, data) in capture.packets.iter().enumerate() {
            if (14..=3000).contains(&data.len()) {
                program
                    .test_run(data, 1)
                    .unwrap_or_else(|e| panic!("{}: packet {}: {e}", capture.name, i + 1));
                frames.insert(i + 1);
            }
        }
        let delta = program.counters().since(&before);
        let ours: BTreeMap<&str, u64> = keys
            .iter()
            .map(|key| (*key, Counter::ALL.iter().find(|c| c.name() == *key).map_or(0, |c| delta.get(*c))))
            .filter(|(_, n)| *n > 0)
            .collect();
        let theirs = tshark_counts(&capture.path, &frames);
        if ours.is_empty() && theirs.is_empty() {
            continue;
        }
        compared += 1;
        for (key, n) in &theirs {
            *totals.entry(*key).or_insert(0) += n;
        }
        if ours != theirs {
            mismatches.push(format!("{}: ringcap {ours:?}, tshark {theirs:?}", capture.name));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} captures differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // What the comparison covers (the README says so): a change in either is a change in
    // the parsers or in tshark.
    let covered = BTreeMap::from([
        ("dns_noerror", 29),
        ("dns_nxdomain", 1),
        ("dns_queries", 41),
        ("icmp_messages", 78),
    ]);
    assert_eq!((compared, totals), (35, covered), "captures compared, and the messages in them");
}

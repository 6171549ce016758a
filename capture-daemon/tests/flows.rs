//! The per-flow view (`/v1/flows`, `ringcap top`) and the counters behind it, on real TCP
//! between the bed's namespaces: a lossy connection beside a clean one (nftables drops
//! every 16th data segment to one port), connections refused by a closed port, and
//! attempts whose SYNs nftables drops. Every number is checked against tshark's reading
//! of the stored file or the sending host's own counters.
mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use common::tcp_analysis::tshark_tcp_counts;
use common::{
    bed, get, nftables, scratch, serve, start_health_daemon, tshark_fields, wait_until, OutputWithin,
    RINGCAP, WAIT,
};
use ringcap_tools::testbed::{TestBed, RX_IP};

const LOSSY: u16 = 5001;
const CLEAN: u16 = 5002;
/// Nothing listens there: the host answers each SYN with a RST.
const CLOSED: u16 = 5003;
/// nftables drops every packet to it: SYNs go unanswered.
const BLACK_HOLE: u16 = 5004;
const BYTES: usize = 1 << 20;
const REFUSED: usize = 3;
const UNANSWERED: usize = 2;

/// The receiving namespace's input rules: every 16th data segment to LOSSY is lost after
/// the capture point (XDP runs before netfilter), every packet to BLACK_HOLE too.
const RULES: &str = "table inet ringcap_test {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 5001 tcp flags & (syn | fin | rst) == 0 meta length > 100 numgen inc mod 16 == 0 drop
        tcp dport 5004 drop
    }
}
";

/// The host's own count of TCP segments it sent (`OutSegs` of /proc/net/snmp, in the
/// receiving namespace; retransmissions included, a GSO packet counted as its segments).
fn out_segments(bed: &TestBed) -> u64 {
    let out = bed.rx("cat").arg("/proc/net/snmp").output_within_deadline();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let at = names.split_whitespace().position(|n| n == "OutSegs").unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

fn flows(bed: &TestBed, addr: &str, query: &str) -> serde_json::Value {
    let response = get(bed, addr, &format!("/v1/flows?{query}"), None);
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    serde_json::from_slice(&response.body).unwrap()
}

/// Frame numbers of `pcap` that `filter` selects.
fn frames(pcap: &std::path::Path, filter: &str) -> BTreeSet<usize> {
    tshark_fields(pcap, filter, &["frame.number"]).iter().map(|row| row[0].parse().unwrap()).collect()
}

#[test]
fn the_flow_view_names_the_lossy_connection_the_refusing_and_the_silent_servers() {
    let bed = bed();
    nftables(&bed, RULES);
    let dir = scratch("flows-ring");
    let addr = "127.0.0.1:18093";
    let ring = start_health_daemon(&bed, &dir, addr);
    let sent_before = out_segments(&bed);
    let servers: Vec<_> = [LOSSY, CLEAN]
        .into_iter()
        .map(|port| {
            serve(&bed, port, |listener| {
                let (mut stream, _) = listener.accept().unwrap();
                let mut received = Vec::new();
                stream.read_to_end(&mut received).unwrap();
                assert_eq!(received.len(), BYTES);
            })
        })
        .collect();
    TestBed::in_namespace(&bed.tx_ns, || {
        let bulk: Vec<_> = [LOSSY, CLEAN]
            .into_iter()
            .map(|port| {
                std::thread::spawn(move || {
                    let mut stream = TcpStream::connect((RX_IP, port)).unwrap();
                    stream.write_all(&vec![7u8; BYTES]).unwrap();
                    stream.shutdown(Shutdown::Write).unwrap();
                    let mut rest = Vec::new();
                    stream.read_to_end(&mut rest).unwrap();
                })
            })
            .collect();
        for _ in 0..REFUSED {
            let refused = TcpStream::connect((RX_IP, CLOSED)).unwrap_err();
            assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        let silent = SocketAddr::from(([10, 77, 0, 2], BLACK_HOLE));
        for _ in 0..UNANSWERED {
            assert!(TcpStream::connect_timeout(&silent, Duration::from_millis(1200)).is_err());
        }
        bulk.into_iter().for_each(|b| b.join().unwrap());
    })
    .join()
    .unwrap()
    .unwrap();
    servers.into_iter().for_each(|s| s.join().unwrap().unwrap());
    // Every SYN is now over --syn-timeout old; the host's count is read before any API
    // request (which is TCP on the loopback interface of the same namespace).
    std::thread::sleep(Duration::from_millis(1100));
    let sent = out_segments(&bed) - sent_before;
    let first = flows(&bed, addr, "")["swept_at"].clone();
    wait_until("a sweep after the traffic", WAIT, || flows(&bed, addr, "")["swept_at"] != first);

    let answer = flows(&bed, addr, "sort=retransmission&limit=20");
    let top = &answer["flows"][0];
    assert_eq!(top["server"], format!("{RX_IP}:{LOSSY}"), "the lossy connection comes first: {answer:#}");
    assert_eq!(top["state"], "closed", "both sides sent their FIN");
    let lossy_retransmissions = top["retransmissions"].as_u64().unwrap();
    assert!(lossy_retransmissions > 0, "{top}");
    let clean = answer["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["server"] == format!("{RX_IP}:{CLEAN}"))
        .unwrap_or_else(|| panic!("the clean connection is listed: {answer:#}"))
        .clone();
    assert_eq!(clean["retransmissions"], 0, "{clean}");
    assert_eq!(clean["to_server"]["payload_bytes"], BYTES as u64, "{clean}");
    assert_eq!(
        answer["refused"],
        serde_json::json!([{ "server": format!("{RX_IP}:{CLOSED}"), "attempts": REFUSED, "syn_retransmissions": 0 }])
    );
    let unanswered = &answer["unanswered"];
    assert_eq!(unanswered.as_array().unwrap().len(), 1, "{unanswered}");
    assert_eq!(unanswered[0]["server"], format!("{RX_IP}:{BLACK_HOLE}"));
    assert_eq!(unanswered[0]["attempts"], UNANSWERED as u64);
    assert!(unanswered[0]["syn_retransmissions"].as_u64().unwrap() >= UNANSWERED as u64, "{unanswered}");
    assert_eq!(answer["rst_senders"][0]["address"], RX_IP, "{answer:#}");

    let stats: serde_json::Value = serde_json::from_slice(&get(&bed, addr, "/v1/stats", None).body).unwrap();
    assert_eq!(stats["tcp"]["tcp_syn_refused"], REFUSED as u64, "{}", stats["tcp"]);
    assert_eq!(stats["flows"]["syn_unanswered"], UNANSWERED as u64, "refused ones are not unanswered");
    let slot = |direction: &str| {
        stats["tcp_by_interface"].as_array().unwrap().iter().find(|s| s["direction"] == direction).unwrap()
            ["tcp"]
            .clone()
    };
    assert_eq!(slot("out")["tcp_segments"], sent, "the host's OutSegs: GSO packets count as their segments");

    // `ringcap top --once` prints the same first connection; a bad sort key is refused.
    let printed = bed.rx(RINGCAP).args(["top", "--http", addr, "--once", "-n", "3"]).output_within_deadline();
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let printed = String::from_utf8_lossy(&printed.stdout);
    let first_row =
        printed.lines().find(|l| l.contains(" -> ") && !l.starts_with("CLIENT")).unwrap_or_default();
    assert!(first_row.contains(&format!("{RX_IP}:{LOSSY}")), "{printed}");
    assert!(printed.contains(&format!("{RX_IP}:{CLOSED}")) && printed.contains("3 attempts"), "{printed}");
    let refused = bed.rx(RINGCAP).args(["top", "--http", addr, "-o", "loudness"]).output_within_deadline();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("use one of retransmission, rtt"));
    assert_eq!(get(&bed, addr, "/v1/flows?limit=0", None).status, 400);
    assert_eq!(get(&bed, addr, "/v1/flows?colour=red", None).status, 400);
    assert_eq!(get(&bed, addr, "/v1/flows?limit=1&limit=500000", None).status, 400, "a key given twice");
    assert_eq!(get(&bed, addr, "/v1/flows?limit=%2B3", None).status, 400);

    common::stop(ring);
    // A ring of both directions is pulled as pcapng unless told: nothing is dropped unsaid.
    let pull = |format: &[&str], name: &str| {
        let file = scratch(name);
        let out = bed
            .rx(RINGCAP)
            .args(["pull", "--dir", dir.to_str().unwrap(), "--last", "1h", "-w"])
            .arg(&file)
            .args(format)
            .output_within_deadline();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (file, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (pcap, _) = pull(&[], "flows.pcapng");
    assert_eq!(std::fs::read(&pcap).unwrap()[..4], [0x0a, 0x0d, 0x0d, 0x0a], "a pcapng section");
    let (_, said) = pull(&["--format", "pcap"], "flows.pcap");
    assert!(said.contains("without their direction and interface"), "{said}");

    // The lossy connection's events are tshark's for its frames.
    let theirs = tshark_tcp_counts(&pcap, &frames(&pcap, &format!("tcp.port == {LOSSY}")));
    assert_eq!(lossy_retransmissions, theirs["retransmission (all kinds)"], "{theirs:?}");
    // Inbound frames are wire segments (no GSO at XDP): one retransmitted segment each.
    let retransmitted_segments = top["to_server"]["retransmitted_segments"].as_u64().unwrap()
        + top["to_client"]["retransmitted_segments"].as_u64().unwrap();
    assert_eq!(retransmitted_segments, lossy_retransmissions, "{top}");
    let dup_acks = top["to_client"]["duplicate_acks"].as_u64().unwrap()
        + top["to_server"]["duplicate_acks"].as_u64().unwrap();
    assert_eq!(dup_acks, theirs["tcp_duplicate_ack"], "{theirs:?}");
    let upstream = tshark_fields(&pcap, &format!("tcp.dstport == {LOSSY}"), &["tcp.len"]);
    assert_eq!(top["to_server"]["segments"], upstream.len() as u64, "{top}");
    let bytes: u64 = upstream.iter().map(|row| row[0].parse::<u64>().unwrap()).sum();
    assert_eq!(top["to_server"]["payload_bytes"], bytes, "retransmitted bytes count again: {top}");
    let theirs = tshark_tcp_counts(&pcap, &frames(&pcap, &format!("tcp.port == {CLEAN}")));
    assert_eq!(theirs["retransmission (all kinds)"], 0);
    // SYN retransmissions are the retransmitted SYNs tshark sees; RSTs came from the server.
    let syn_retransmissions = frames(&pcap, "tcp.flags.syn == 1 && tcp.analysis.retransmission").len() as u64;
    assert_eq!(stats["tcp"]["tcp_syn_retransmission"], syn_retransmissions);
    let resets = frames(&pcap, &format!("tcp.flags.reset == 1 && ip.src == {RX_IP}")).len() as u64;
    assert_eq!(answer["rst_senders"][0]["resets"], resets);
    // Inbound segments are the file's inbound TCP frames, with their payload bytes.
    let inbound = tshark_fields(&pcap, "tcp && frame.packet_flags_direction == 1", &["tcp.len"]);
    assert_eq!(slot("in")["tcp_segments"], inbound.len() as u64);
    let payload: u64 = inbound.iter().map(|row| row[0].parse::<u64>().unwrap()).sum();
    assert_eq!(slot("in")["tcp_payload_bytes"], payload);
}

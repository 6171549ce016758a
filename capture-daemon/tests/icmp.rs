//! ICMP health (#30) on a real three-namespace path: a client, a router (the captured
//! interface) and a server behind a link of a smaller MTU. Pings with DF set larger than
//! that link make the router's kernel answer fragmentation needed (ICMP) and packet too
//! big (ICMPv6); the daemon's counts by family, type and code, and by announced MTU, equal
//! tshark's on the packets it stored.
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use common::{get, scratch, start_ringcap, tshark_fields, OutputWithin, RINGCAP};
use ringcap_tools::testbed::{run, TestBed, TestBedOptions, RX_IF, TX_IF};

/// The server's namespace and the router's link to it; deleted on drop.
struct Server {
    ns: String,
}

impl Server {
    /// A namespace behind the bed's receiving one (the router), joined by a link of
    /// `mtu`, with IPv4 and IPv6 routes both ways.
    fn behind(bed: &TestBed, mtu: u32) -> Server {
        let server = Server { ns: format!("{}-srv", bed.rx_ns) };
        let (tx, rx, srv) = (bed.tx_ns.as_str(), bed.rx_ns.as_str(), server.ns.as_str());
        let mtu = mtu.to_string();
        run(&["ip", "netns", "add", srv]).unwrap();
        run(&[
            "ip", "-n", rx, "link", "add", "veth-r2", "type", "veth", "peer", "name", "veth-s", "netns", srv,
        ])
        .unwrap();
        for (ns, dev, v4, v6) in [
            (rx, "veth-r2", "10.79.0.1/24", "fd00:79::1/64"),
            (srv, "veth-s", "10.79.0.2/24", "fd00:79::2/64"),
        ] {
            run(&["ip", "-n", ns, "link", "set", dev, "mtu", &mtu, "up"]).unwrap();
            run(&["ip", "-n", ns, "addr", "add", v4, "dev", dev]).unwrap();
            run(&["ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad"]).unwrap();
        }
        run(&["ip", "-n", tx, "addr", "add", "fd00:77::1/64", "dev", TX_IF, "nodad"]).unwrap();
        run(&["ip", "-n", rx, "addr", "add", "fd00:77::2/64", "dev", RX_IF, "nodad"]).unwrap();
        for (ns, conf) in [(rx, "net.ipv4.ip_forward=1"), (rx, "net.ipv6.conf.all.forwarding=1")] {
            run(&["ip", "netns", "exec", ns, "sysctl", "-qw", conf]).unwrap();
        }
        run(&["ip", "-n", tx, "route", "add", "10.79.0.0/24", "via", "10.77.0.2"]).unwrap();
        run(&["ip", "-n", tx, "-6", "route", "add", "fd00:79::/64", "via", "fd00:77::2"]).unwrap();
        run(&["ip", "-n", srv, "route", "add", "10.77.0.0/24", "via", "10.79.0.1"]).unwrap();
        run(&["ip", "-n", srv, "-6", "route", "add", "fd00:77::/64", "via", "fd00:79::1"]).unwrap();
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

/// `ping` from the client: `count` echoes of `size` bytes with DF set (`-M do`); the
/// exit status is not checked, since pings beyond the path MTU fail by design.
fn ping(bed: &TestBed, target: &str, size: u32, count: u32) {
    let family = if target.contains(':') { "-6" } else { "-4" };
    let out = bed
        .tx("ping")
        .args([family, "-M", "do", "-c", &count.to_string(), "-i", "0.2", "-W", "1"])
        .args(["-s", &size.to_string(), target])
        .output_within_deadline();
    assert!(out.status.code().is_some(), "ping was killed: {out:?}");
}

/// ICMP types of the traffic the test makes (echo, echo reply, destination unreachable,
/// packet too big): neighbour discovery and MLD, which the kernel sends when it likes,
/// are left out of the comparison.
const COMPARED: [(&str, u8); 6] =
    [("ipv4", 0), ("ipv4", 8), ("ipv4", 3), ("ipv6", 128), ("ipv6", 129), ("ipv6", 2)];

#[test]
fn icmp_messages_and_path_mtu_signals_agree_with_tshark_on_a_three_namespace_path() {
    TestBed::remove_stale();
    let bed = TestBed::with_options(TestBedOptions { ipv6: true, ..TestBedOptions::default() }).unwrap();
    let _server = Server::behind(&bed, 1280);
    let dir = scratch("icmp");
    let addr = "127.0.0.1:9461";
    let dir_arg = dir.to_str().unwrap();
    let daemon = common::start_health_daemon(&bed, &dir, addr);

    ping(&bed, "10.79.0.2", 56, 3);
    ping(&bed, "10.79.0.2", 1400, 2);
    ping(&bed, "fd00:79::2", 56, 3);
    ping(&bed, "fd00:79::2", 1400, 2);
    let stats = common::stats_refreshed_after(&bed, addr, Instant::now());
    let metrics = String::from_utf8(get(&bed, addr, "/metrics", None).body).unwrap();
    let text = bed.rx(RINGCAP).args(["stats", "--http", addr]).output_within_deadline();
    assert!(text.status.success(), "{text:?}");
    let text = String::from_utf8(text.stdout).unwrap();
    common::stop(daemon);

    // What the daemon counted, summed over directions, and by direction for path MTU.
    let mut ours: BTreeMap<(String, u8, u8), u64> = BTreeMap::new();
    let mut our_mtus: BTreeMap<(String, String, u32), u64> = BTreeMap::new();
    let mut path_mtu_messages = 0;
    for slot in stats["icmp_by_interface"].as_array().unwrap() {
        assert_eq!(slot["interface"], RX_IF);
        for m in slot["messages"].as_array().unwrap() {
            let key = (
                m["family"].as_str().unwrap().to_string(),
                m["type"].as_u64().unwrap() as u8,
                m["code"].as_u64().unwrap() as u8,
            );
            *ours.entry(key).or_default() += m["count"].as_u64().unwrap();
        }
        for p in slot["path_mtu"].as_array().unwrap() {
            let key = (
                slot["direction"].as_str().unwrap().to_string(),
                p["family"].as_str().unwrap().to_string(),
                p["mtu"].as_u64().unwrap() as u32,
            );
            *our_mtus.entry(key).or_default() += p["count"].as_u64().unwrap();
        }
        path_mtu_messages += slot["path_mtu_messages"].as_u64().unwrap();
    }
    ours.retain(|(family, kind, _), _| COMPARED.contains(&(family.as_str(), *kind)));

    // What tshark reads in the stored packets (the first value of a field: an ICMP error
    // quotes the packet that caused it, whose own ICMP header tshark lists second).
    let pcap = scratch("icmp.pcapng");
    let out = Command::new(RINGCAP)
        .args(["pull", "--dir", dir_arg, "--last", "1h", "--with-stats", "-w", pcap.to_str().unwrap()])
        .output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fields = [
        "icmp.type",
        "icmp.code",
        "icmp.mtu",
        "icmpv6.type",
        "icmpv6.code",
        "icmpv6.mtu",
        "frame.packet_flags_direction",
    ];
    let first = |value: &str| value.split(',').next().unwrap_or_default().to_string();
    let mut theirs: BTreeMap<(String, u8, u8), u64> = BTreeMap::new();
    let mut their_mtus: BTreeMap<(String, String, u32), u64> = BTreeMap::new();
    for row in tshark_fields(&pcap, "icmp || icmpv6", &fields) {
        let row: Vec<String> = row.iter().map(|v| first(v)).collect();
        let (family, kind, code, mtu) = if row[0].is_empty() {
            ("ipv6", &row[3], &row[4], &row[5])
        } else {
            ("ipv4", &row[0], &row[1], &row[2])
        };
        let (kind, code): (u8, u8) = (kind.parse().unwrap(), code.parse().unwrap());
        if COMPARED.contains(&(family, kind)) {
            *theirs.entry((family.to_string(), kind, code)).or_default() += 1;
        }
        if (family, kind, code) == ("ipv4", 3, 4) || (family, kind) == ("ipv6", 2) {
            // pcapng's direction flag: 1 inbound, 2 outbound (tshark prints it in hex).
            let direction = if row[6].ends_with('2') { "out" } else { "in" };
            *their_mtus
                .entry((direction.to_string(), family.to_string(), mtu.parse().unwrap()))
                .or_default() += 1;
        }
    }
    assert_eq!(ours, theirs, "ICMP messages by family, type and code");
    assert_eq!(our_mtus, their_mtus, "path-MTU messages by direction, family and MTU");
    // The router refused the big echoes and announced its next hop's MTU, out of the
    // captured interface, in both families; the small pings were answered.
    assert_eq!(
        their_mtus.get(&("out".into(), "ipv4".into(), 1280)).copied().unwrap_or(0),
        1,
        "{their_mtus:?}"
    );
    assert!(
        their_mtus.get(&("out".into(), "ipv6".into(), 1280)).copied().unwrap_or(0) >= 1,
        "{their_mtus:?}"
    );
    assert_eq!(path_mtu_messages, their_mtus.values().sum::<u64>());
    assert_eq!(theirs.get(&("ipv4".into(), 0, 0)), Some(&3));
    assert_eq!(theirs.get(&("ipv6".into(), 129, 0)), Some(&3));
    // The window's statistics (`pull --with-stats`, what a pin keeps) count them too.
    let window: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.stats.json", pcap.display())).unwrap()).unwrap();
    assert_eq!(window["icmp"]["path_mtu"]["ipv4 1280"], 1, "{window}");
    assert_eq!(window["icmp"]["messages"]["ipv4 3 4"], 1, "{window}");
    assert_eq!(window["icmp"]["messages"]["ipv4 0 0"], 3, "{window}");
    assert_eq!(window["counters"]["icmp_path_mtu"].as_u64(), Some(path_mtu_messages), "{window}");
    // `ringcap stats` names them.
    let out_line = text
        .lines()
        .skip_while(|l| !l.starts_with("ICMP by interface"))
        .find(|l| l.starts_with(&format!("  {RX_IF} out:")))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(out_line.contains("ipv4 fragmentation needed 1"), "{out_line}");
    assert!(out_line.contains("ipv4 MTU 1280: 1"), "{out_line}");
    assert!(out_line.contains("ipv6 packet too big"), "{out_line}");
    // /metrics says the same, in Prometheus' names (whole lines: "1" must not pass for "10").
    for line in [
        format!("ringcap_icmp_path_mtu_announced_bytes_count{{interface=\"{RX_IF}\",direction=\"out\",family=\"ipv4\"}} 1"),
        format!("ringcap_icmp_path_mtu_announced_bytes_bucket{{le=\"1280.0\",interface=\"{RX_IF}\",direction=\"out\",family=\"ipv4\"}} 1"),
        format!("ringcap_icmp_path_mtu_announced_bytes_bucket{{le=\"576.0\",interface=\"{RX_IF}\",direction=\"out\",family=\"ipv4\"}} 0"),
        format!("ringcap_icmp_messages_total{{interface=\"{RX_IF}\",direction=\"in\",family=\"ipv4\",type=\"8\",code=\"0\"}} {}", theirs[&("ipv4".to_string(), 8, 0)]),
        format!("ringcap_icmp_messages_total{{interface=\"{RX_IF}\",direction=\"out\",family=\"ipv4\",type=\"3\",code=\"4\"}} 1"),
        format!("ringcap_icmp_path_mtu_messages_total{{interface=\"{RX_IF}\",direction=\"out\"}} {}", path_mtu_messages),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

/// `--no-l7-analysis` counts nothing of ICMP.
#[test]
fn no_l7_analysis_counts_no_icmp() {
    TestBed::remove_stale();
    let bed = TestBed::with_options(TestBedOptions::default()).unwrap();
    let dir = scratch("icmp-off");
    let addr = "127.0.0.1:9462";
    let args =
        ["--dir", dir.to_str().unwrap(), "-G", "0", "--http", addr, "--http-no-auth", "--no-l7-analysis"];
    let daemon = start_ringcap(&bed, "run", &args);
    let out = bed.tx("ping").args(["-c", "3", "-i", "0.2", "-W", "1", "10.77.0.2"]).output_within_deadline();
    assert!(out.status.success(), "{out:?}");
    let stats = common::stats_refreshed_after(&bed, addr, Instant::now());
    common::stop(daemon);
    assert_eq!(stats["kernel"]["icmp_messages"], 0, "{stats}");
    assert!(stats["icmp_by_interface"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["messages"].as_array().unwrap().is_empty()));
}

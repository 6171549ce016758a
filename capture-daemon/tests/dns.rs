//! DNS health (#30): a real resolver (dnsmasq, Debian's) in the captured namespace
//! answers names, NXDOMAIN and REFUSED, over UDP and TCP, and a responder on another port (`--dns-port`)
//! answers SERVFAIL, truncated; a third port is not read; the daemon's counts of queries and of responses by
//! rcode and truncation equal tshark's on the packets it stored.
mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{scratch, OutputWithin, Running, RINGCAP};
use ringcap_tools::testbed::{TestBed, RX_IF};

/// dnsmasq on the receiving end, port 53: `ok.test` has an address, `nx.test` does not
/// exist, and with no upstream anything else is refused.
fn dnsmasq(bed: &TestBed) -> Running {
    let child = bed
        .rx("dnsmasq")
        .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", "--user=root"])
        .args(["--listen-address=10.77.0.2", "--address=/ok.test/10.1.2.3", "--address=/nx.test/"])
        .args(["--pid-file=", "--log-facility=-"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (Debian's dnsmasq-base) runs");
    Running(child)
}

/// A responder on `port` answering every query with `flags` (QR set by the caller).
fn responder(bed: &TestBed, port: u16, flags: u16) -> Running {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('10.77.0.2', {port}))\n\
         while True:\n    q, a = s.recvfrom(512)\n    s.sendto(q[:2] + ({flags}).to_bytes(2, 'big') + q[4:], a)\n"
    );
    Running(bed.rx("python3").args(["-c", &script]).spawn().unwrap())
}

/// Sends a query for `name` to `port` and waits up to 2 s for an answer; returns the rcode.
const CLIENT: &str = r#"
import socket, struct, sys
name, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
for i in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(struct.pack(">HHHHHH", 0x1000 + i, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1), ("10.77.0.2", port))
    answer = s.recv(512)
    print(answer[3] & 0xf)
"#;

/// [`CLIENT`] over TCP: one connection, each query and response behind its length.
const TCP_CLIENT: &str = r#"
import socket, struct, sys
name, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
s = socket.create_connection(("10.77.0.2", port), timeout=2)
for i in range(count):
    query = struct.pack(">HHHHHH", 0x5000 + i, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    s.sendall(struct.pack(">H", len(query)) + query)
    length = struct.unpack(">H", s.recv(2, socket.MSG_WAITALL))[0]
    answer = s.recv(length, socket.MSG_WAITALL)
    print(answer[3] & 0xf)
"#;

fn ask(bed: &TestBed, name: &str, port: u16, count: u32) -> Vec<u8> {
    ask_with(bed, CLIENT, name, port, count)
}

fn ask_with(bed: &TestBed, client: &str, name: &str, port: u16, count: u32) -> Vec<u8> {
    let out = bed
        .tx("python3")
        .args(["-c", client, name, &port.to_string(), &count.to_string()])
        .output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.parse().unwrap()).collect()
}

#[test]
fn dns_queries_and_responses_by_rcode_agree_with_tshark() {
    let bed = common::bed();
    let _resolver = dnsmasq(&bed);
    // SERVFAIL, truncated (TC); and on a port that is not DNS's here, NOERROR.
    let _servfail = responder(&bed, 5354, 0x8382);
    let _elsewhere = responder(&bed, 5355, 0x8180);
    let dir = scratch("dns");
    let addr = "127.0.0.1:9463";
    let dir_arg = dir.to_str().unwrap();
    let daemon = common::start_health_daemon_with(&bed, &dir, addr, &["--dns-port", "5354"]);
    // dnsmasq may take a moment to listen: ask until it answers.
    common::wait_until("dnsmasq answers", Duration::from_secs(10), || {
        bed.tx("python3").args(["-c", CLIENT, "ok.test", "53", "1"]).output_within_deadline().status.success()
    });
    assert_eq!(ask(&bed, "ok.test", 53, 3), [0, 0, 0]);
    assert_eq!(ask(&bed, "nx.test", 53, 2), [3, 3]);
    assert_eq!(ask(&bed, "elsewhere.example", 53, 1), [5]);
    assert_eq!(ask(&bed, "any.test", 5354, 2), [2, 2]);
    // Port 5355 is not a DNS port here: not counted, though DNS.
    assert_eq!(ask(&bed, "any.test", 5355, 1), [0]);
    // Over TCP, on one connection.
    assert_eq!(ask_with(&bed, TCP_CLIENT, "ok.test", 53, 2), [0, 0]);
    assert_eq!(ask_with(&bed, TCP_CLIENT, "nx.test", 53, 1), [3]);
    let common::HealthReading { stats, metrics, text } = common::read_health_and_stop(&bed, addr, daemon);

    let pcap = scratch("dns.pcapng");
    let out = Command::new(RINGCAP)
        .args(["pull", "--dir", dir_arg, "--last", "1h", "-w", pcap.to_str().unwrap()])
        .output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", "udp.port==5354,dns", "-Y", "dns && !(udp.port == 5355)", "-T", "fields"])
        .args(["-e", "frame.packet_flags_direction", "-e", "dns.flags.response", "-e", "dns.flags.rcode"])
        .args(["-e", "dns.flags.truncated"])
        .output_within_deadline();
    assert!(tshark.status.success(), "{}", String::from_utf8_lossy(&tshark.stderr));
    // (direction, what) -> count, what being "query", an rcode's label, or "truncated".
    let mut theirs: BTreeMap<(String, String), u64> = BTreeMap::new();
    for line in String::from_utf8(tshark.stdout).unwrap().lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let direction = if fields[0].ends_with('2') { "out" } else { "in" };
        let mut add = |what: &str| *theirs.entry((direction.into(), what.into())).or_default() += 1;
        if fields[1] == "0" || fields[1] == "False" {
            add("query");
            continue;
        }
        add(match fields[2] {
            "0" => "noerror",
            "2" => "servfail",
            "3" => "nxdomain",
            "5" => "refused",
            _ => "other",
        });
        if fields[3] == "1" || fields[3] == "True" {
            add("truncated");
        }
    }
    let mut ours: BTreeMap<(String, String), u64> = BTreeMap::new();
    for slot in stats["dns_by_interface"].as_array().unwrap() {
        assert_eq!(slot["interface"], RX_IF);
        let direction = slot["direction"].as_str().unwrap().to_string();
        let mut add = |what: &str, n: u64| {
            if n > 0 {
                *ours.entry((direction.clone(), what.into())).or_default() += n;
            }
        };
        add("query", slot["queries"].as_u64().unwrap());
        add("truncated", slot["truncated"].as_u64().unwrap());
        for (rcode, n) in slot["responses"].as_object().unwrap() {
            add(rcode, n.as_u64().unwrap());
        }
    }
    assert_eq!(ours, theirs, "DNS counts by direction: ours (left), tshark's (right)");
    // Queries arrive at the resolver (in), responses leave it (out); the wait's queries too.
    assert!(theirs[&("in".to_string(), "query".to_string())] >= 8);
    assert_eq!(theirs[&("out".to_string(), "nxdomain".to_string())], 3, "two over UDP, one over TCP");
    assert_eq!(theirs[&("out".to_string(), "refused".to_string())], 1);
    assert_eq!(theirs[&("out".to_string(), "servfail".to_string())], 2);
    assert_eq!(theirs[&("out".to_string(), "truncated".to_string())], 2);
    let line = format!(
        "ringcap_dns_responses_total{{interface=\"{RX_IF}\",direction=\"out\",rcode=\"nxdomain\"}} 3"
    );
    assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    assert!(text.contains("nxdomain 3, servfail 2"), "{text}");
}

/// A responder that answers late (300 ms), once per query however often it is sent
/// again, and never a query for a name starting with "silent".
const LATE_RESPONDER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.77.0.2", int(sys.argv[1])))
seen = set()
while True:
    q, a = s.recvfrom(512)
    if (a, q[:2]) in seen or b"silent" in q:
        continue
    seen.add((a, q[:2]))
    time.sleep(0.3)
    s.sendto(q[:2] + b"\x81\x80" + q[4:], a)
"#;

/// Three answered queries, one sent twice before its answer (same port and ID), one
/// never answered.
const TIMED_CLIENT: &str = r#"
import socket, struct, sys, time
port = int(sys.argv[1])
def query(name, id):
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", id, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
for i in range(3):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(query("late.test", 0x2000 + i), ("10.77.0.2", port))
    s.recv(512)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(query("again.test", 0x3000), ("10.77.0.2", port))
time.sleep(0.1)
s.sendto(query("again.test", 0x3000), ("10.77.0.2", port))
s.recv(512)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(query("silent.test", 0x4000), ("10.77.0.2", port))
"#;

/// Response times (query to response, matched by conversation and ID), retransmitted
/// queries and unanswered ones equal tshark's `dns.time`, `dns.retransmission` and
/// requests without `dns.response_in`: the response-time summary is computed from
/// tshark's samples in the kernel's buckets and must be the same, percentile by percentile.
#[test]
fn dns_response_times_retransmissions_and_unanswered_queries_agree_with_tshark() {
    let bed = common::bed();
    let _responder = Running(bed.rx("python3").args(["-c", LATE_RESPONDER, "5356"]).spawn().unwrap());
    let dir = scratch("dns-times");
    let addr = "127.0.0.1:9464";
    let daemon =
        common::start_health_daemon_with(&bed, &dir, addr, &["--dns-port", "5356", "--dns-timeout", "1"]);
    // The responder may take a moment to bind: its first answer opens the test.
    common::wait_until("the responder answers", Duration::from_secs(10), || {
        bed.tx("python3")
            .args(["-c", CLIENT, "ready.test", "5356", "1"])
            .output_within_deadline()
            .status
            .success()
    });
    let out = bed.tx("python3").args(["-c", TIMED_CLIENT, "5356"]).output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The silent query expires after --dns-timeout (1 s) at a sweep, once a second.
    std::thread::sleep(Duration::from_millis(2500));
    let common::HealthReading { stats, text, .. } = common::read_health_and_stop(&bed, addr, daemon);

    let pcap = scratch("dns-times.pcapng");
    let out = Command::new(RINGCAP)
        .args(["pull", "--dir", dir.to_str().unwrap(), "--last", "1h", "-w", pcap.to_str().unwrap()])
        .output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        // Two passes: a request learns its response (dns.response_in) in the second.
        .args(["-2", "-d", "udp.port==5356,dns", "-R", "dns", "-T", "fields"])
        .args([
            "-e",
            "dns.flags.response",
            "-e",
            "dns.time",
            "-e",
            "dns.retransmission",
            "-e",
            "dns.response_in",
        ])
        .output_within_deadline();
    assert!(tshark.status.success(), "{}", String::from_utf8_lossy(&tshark.stderr));
    let (mut buckets, mut retransmissions, mut unanswered) = ([0u64; 256], 0, 0);
    let truthy = |field: &str| field == "1" || field == "True";
    for line in String::from_utf8(tshark.stdout).unwrap().lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if truthy(fields[0]) {
            if !fields[1].is_empty() {
                let ns = (fields[1].parse::<f64>().unwrap() * 1e9).round() as u64;
                buckets[capture_common::tcp::rtt_bucket(ns) as usize] += 1;
            }
        } else if truthy(fields[2]) {
            retransmissions += 1;
        } else if fields[3].is_empty() {
            unanswered += 1;
        }
    }
    let theirs = capture_daemon::health::analysis::rtt_summary(&buckets);
    assert_eq!((theirs.count, retransmissions, unanswered), (5, 1, 1), "the traffic: {theirs:?}");
    let slot = |direction: &str| {
        let slots = stats["dns_by_interface"].as_array().unwrap();
        let slot = slots.iter().find(|s| s["direction"] == direction).unwrap_or_else(|| panic!("{stats}"));
        serde_json::from_value::<capture_daemon::records::DnsHealth>(slot.clone()).unwrap()
    };
    let (asked, answered) = (slot("in"), slot("out"));
    assert_eq!(answered.response_time, theirs, "response times: ours, then tshark's");
    assert!(theirs.p50_ns >= 300_000_000, "the responder answers late: {theirs:?}");
    assert_eq!(
        (asked.retransmissions, asked.unanswered, answered.unmatched),
        (1, 1, 0),
        "{asked:?} {answered:?}"
    );
    assert!(text.contains("(1 retransmitted, 1 unanswered)"), "{text}");
}

//! TLS handshakes (#30): Debian's `openssl s_server` and `s_client` in the test bed's
//! namespaces shake hands in TLS 1.3 and 1.2, and fail on a version mismatch (an alert);
//! a client sends its ClientHello to a server that never answers and then resets, closes,
//! or waits past `--tls-timeout`. The daemon's ClientHellos, ServerHellos by version,
//! alerts by description and handshake times equal tshark's on the packets it stored;
//! the failures before a ServerHello are exactly the ones made.
mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{scratch, OutputWithin, Running};
use ringcap_tools::testbed::{TestBed, RX_IF, RX_IP};

/// A self-signed key and certificate for the servers.
fn certificate() -> (String, String) {
    let (key, cert) = (scratch("key.pem"), scratch("cert.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-subj", "/CN=ringcap.test", "-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (key.to_str().unwrap().to_string(), cert.to_str().unwrap().to_string())
}

/// `openssl s_server` on `port` of the receiving end, with `versions` (say `-tls1_3`).
fn server(bed: &TestBed, port: u16, (key, cert): &(String, String), versions: &[&str]) -> Running {
    let child = bed
        .rx("openssl")
        .args(["s_server", "-quiet", "-key", key, "-cert", cert, "-accept", &format!("{RX_IP}:{port}")])
        .args(versions)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl (Debian's) runs");
    Running(child)
}

/// `openssl s_client` to `port` with `versions`; whether the handshake succeeded.
fn client(bed: &TestBed, port: u16, versions: &[&str]) -> bool {
    bed.tx("openssl")
        .args(["s_client", "-connect", &format!("{RX_IP}:{port}")])
        .args(versions)
        .stdin(Stdio::null())
        .output_within_deadline()
        .status
        .success()
}

/// A server that accepts and never answers.
const SILENT_SERVER: &str = r#"
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
held = []
while True:
    held.append(s.accept()[0])
"#;

/// Sends a minimal ClientHello to the silent server, then ends as `how` says: "reset"
/// (SO_LINGER 0), "fin" (a close), or "wait" (holds the connection for 2.5 s first).
const HELLO_CLIENT: &str = r#"
import socket, struct, sys, time
host, port, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + b"\x00\x00"
hello = b"\x01" + len(body).to_bytes(3, "big") + body
s = socket.create_connection((host, port))
s.sendall(b"\x16\x03\x01" + len(hello).to_bytes(2, "big") + hello)
time.sleep(0.2)
if how == "reset":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
elif how == "wait":
    time.sleep(2.5)
s.close()
"#;

#[test]
fn tls_handshakes_alerts_and_failures_agree_with_tshark() {
    let bed = common::bed();
    let keys = certificate();
    let _any = server(&bed, 443, &keys, &[]);
    let _tls13 = server(&bed, 4443, &keys, &["-tls1_3"]);
    let _silent = Running(bed.rx("python3").args(["-c", SILENT_SERVER, RX_IP, "4444"]).spawn().unwrap());
    let dir = scratch("tls");
    let addr = "127.0.0.1:9465";
    let daemon = common::start_health_daemon_with(&bed, &dir, addr, &["--tls-timeout", "1"]);
    // The servers may take a moment to listen; a first handshake opens the test.
    common::wait_until("s_server answers", Duration::from_secs(10), || client(&bed, 443, &["-tls1_3"]));
    common::wait_until("the TLS 1.3 server answers", Duration::from_secs(10), || {
        client(&bed, 4443, &["-tls1_3"])
    });
    let hello = |how: &str| {
        let out = bed.tx("python3").args(["-c", HELLO_CLIENT, RX_IP, "4444", how]).output_within_deadline();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    hello("reset");
    hello("fin");
    assert!(client(&bed, 443, &["-tls1_2"]), "a TLS 1.2 handshake");
    assert!(!client(&bed, 4443, &["-tls1_2"]), "TLS 1.2 offered to a TLS 1.3 server fails");
    // Held past --tls-timeout (1 s) and a sweep (once a second): expired.
    hello("wait");
    let common::HealthReading { stats, metrics, text } = common::read_health_and_stop(&bed, addr, daemon);

    let (rows, window) = common::tshark_rows(
        &dir,
        &["-d", "tcp.port==4443,tls", "-d", "tcp.port==4444,tls", "-Y", "tls"],
        &[
            "frame.packet_flags_direction",
            "frame.time_epoch",
            "tcp.stream",
            "tls.handshake.type",
            "tls.handshake.version",
            "tls.handshake.extensions.supported_version",
            "tls.alert_message.desc",
        ],
    );
    // (direction, what) -> count; what: "client_hello", "server_hello VERSION", an alert's label.
    let mut theirs: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut hellos: BTreeMap<String, f64> = BTreeMap::new();
    let mut buckets = [0u64; 256];
    for fields in &rows {
        let direction = if fields[0].ends_with('2') { "out" } else { "in" };
        let mut add = |what: String| *theirs.entry((direction.into(), what)).or_default() += 1;
        let time: f64 = fields[1].parse().unwrap();
        let types: Vec<&str> = fields[3].split(',').collect();
        if types.contains(&"1") {
            add("client_hello".into());
            hellos.insert(fields[2].clone(), time);
        }
        if types.contains(&"2") {
            let version = if fields[5].is_empty() { &fields[4] } else { &fields[5] };
            let version = u16::from_str_radix(version.trim_start_matches("0x"), 16).unwrap();
            add(format!("server_hello {}", capture_common::tls::version_label(version)));
            if let Some(asked) = hellos.get(&fields[2]) {
                let ns = ((time - asked) * 1e9).round() as u64;
                buckets[capture_common::tcp::rtt_bucket(ns) as usize] += 1;
            }
        }
        for description in fields[6].split(',').filter(|d| !d.is_empty()) {
            add(capture_common::tls::alert_label(description.parse().unwrap()).to_string());
        }
    }
    let mut ours: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut failed = BTreeMap::new();
    for slot in stats["tls_by_interface"].as_array().unwrap() {
        let slot: capture_daemon::records::TlsHealth = serde_json::from_value(slot.clone()).unwrap();
        assert_eq!(slot.interface, RX_IF);
        let mut add = |what: String, n: u64| {
            if n > 0 {
                *ours.entry((slot.direction.clone(), what)).or_default() += n;
            }
        };
        add("client_hello".into(), slot.client_hellos);
        for (version, n) in &slot.server_hellos {
            add(format!("server_hello {version}"), *n);
        }
        for (alert, n) in &slot.alerts {
            add(alert.clone(), *n);
        }
        for (how, n) in &slot.failed {
            *failed.entry(how.clone()).or_insert(0) += n;
        }
        if slot.direction == "out" {
            let theirs = capture_daemon::health::analysis::rtt_summary(&buckets);
            assert_eq!(slot.handshake_time, theirs, "handshake times: ours, then tshark's");
            assert_eq!(slot.handshakes, theirs.count);
        }
    }
    assert_eq!(ours, theirs, "TLS counts by direction: ours (left), tshark's (right)");
    // The traffic made: 2 handshakes in TLS 1.3 (at least: the waits may take more), one
    // in 1.2, one refused with a protocol_version alert, and 3 ClientHellos to the silent
    // server.
    let count =
        |direction: &str, what: &str| theirs.get(&(direction.into(), what.into())).copied().unwrap_or(0);
    assert!(count("out", "server_hello 1.3") >= 2, "{theirs:?}");
    assert_eq!((count("out", "server_hello 1.2"), count("out", "protocol_version")), (1, 1), "{theirs:?}");
    assert_eq!(count("in", "client_hello"), count("out", "server_hello 1.3") + 1 + 1 + 3, "{theirs:?}");
    let expected: BTreeMap<String, u64> =
        [("alert", 1), ("fin", 1), ("reset", 1), ("timeout", 1)].map(|(h, n)| (h.to_string(), n)).into();
    assert_eq!(failed, expected, "handshakes that failed, by how");
    // The window's statistics (`pull --with-stats`, a pin's) count and time them too.
    let times = capture_daemon::health::analysis::rtt_summary(&buckets);
    assert_eq!(window["tls"]["handshake_time"], serde_json::to_value(times).unwrap(), "{window}");
    assert_eq!(window["tls"]["alerts"]["protocol_version"], 1, "{window}");
    assert_eq!(window["counters"]["tls_failed_reset"], 1, "{window}");
    let line = format!(
        "ringcap_tls_alerts_total{{interface=\"{RX_IF}\",direction=\"out\",description=\"protocol_version\"}} 1"
    );
    assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    assert!(metrics.contains("ringcap_tls_handshake_time_seconds_bucket{"), "{metrics}");
    // The client's RST, FIN and silence pass in; the server's alert out.
    assert!(text.contains("failed before the ServerHello: alert 0, reset 1, fin 1, timeout 1"), "{text}");
    assert!(
        text.contains(
            "failed before the ServerHello: alert 1, reset 0, fin 0, timeout 0; alerts: protocol_version 1"
        ),
        "{text}"
    );
}

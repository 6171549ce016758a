//! TCP health against tshark: real TCP stacks in two namespaces, ringcap's in-kernel
//! flag counts, handshakes and handshake RTTs compared with tshark's analysis of the
//! packets ringcap itself stored.
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{bed, get, scratch, start_ringcap, RINGCAP, WAIT};
use ringcap_tools::testbed::{TestBed, RX_IP};

const CONNECTIONS: usize = 10;

fn tshark_count(file: &str, filter: &str) -> u64 {
    let out = Command::new("tshark").args(["-r", file, "-Y", filter]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().count() as u64
}

#[test]
fn flags_handshakes_and_handshake_rtt_agree_with_tshark() {
    let bed = bed();
    let dir = scratch("tcp-ring");
    let d = dir.to_str().unwrap();
    let addr = "127.0.0.1:18090";
    let ring = start_ringcap(&bed, "run", &["--dir", d, "-G", "0", "--direction", "both", "--http", addr]);
    let server = TestBed::in_namespace(&bed.rx_ns, || {
        let listener = TcpListener::bind((RX_IP, 8080)).unwrap();
        for _ in 0..CONNECTIONS {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            stream.read_to_end(&mut request).unwrap();
            stream.write_all(&request[..100]).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    TestBed::in_namespace(&bed.tx_ns, || {
        for _ in 0..CONNECTIONS {
            let mut stream = TcpStream::connect((RX_IP, 8080)).unwrap();
            stream.write_all(&[7u8; 3000]).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).unwrap();
            assert_eq!(reply.len(), 100);
        }
        // A closed port answers with a reset.
        assert!(TcpStream::connect((RX_IP, 9)).is_err());
    })
    .join()
    .unwrap()
    .unwrap();
    server.join().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(1600));

    let stats: serde_json::Value = serde_json::from_slice(&get(&bed, addr, "/v1/stats", None).body).unwrap();
    let pcap = scratch("tcp.pcap");
    let out = Command::new(RINGCAP)
        .args(["pull", "--dir", d, "--last", "1m", "-w", pcap.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = pcap.to_str().unwrap();
    let k = &stats["kernel"];
    let ours = |key: &str| k[key].as_u64().unwrap();
    for (key, filter) in [
        ("tcp_syn", "tcp.flags.syn == 1 && tcp.flags.ack == 0"),
        ("tcp_syn_ack", "tcp.flags.syn == 1 && tcp.flags.ack == 1"),
        ("tcp_fin", "tcp.flags.fin == 1"),
        ("tcp_rst", "tcp.flags.reset == 1"),
        ("tcp_ece", "tcp.flags.ece == 1"),
        ("tcp_cwr", "tcp.flags.cwr == 1"),
        ("tcp_zero_window", "tcp.analysis.zero_window"),
    ] {
        assert_eq!(ours(key), tshark_count(file, filter), "{key} vs tshark {filter:?}");
    }
    assert_eq!(ours("tcp_syn"), CONNECTIONS as u64 + 1);
    assert_eq!(ours("tcp_rst"), 1);

    // tshark's initial RTT of each stream is SYN to the ACK of the SYN-ACK: at the capture
    // point that is ringcap's server side plus client side, so the sums agree.
    let out = Command::new("tshark")
        .args(["-r", file, "-Y", "tcp.analysis.initial_rtt && tcp.port == 8080", "-T", "fields"])
        .args(["-e", "tcp.stream", "-e", "tcp.analysis.initial_rtt"])
        .output()
        .unwrap();
    let mut streams = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (stream, rtt) = line.split_once('\t').unwrap();
        streams.entry(stream.to_string()).or_insert(rtt.parse::<f64>().unwrap());
    }
    assert_eq!(streams.len(), CONNECTIONS);
    assert_eq!(ours("tcp_handshakes"), CONNECTIONS as u64);
    let tshark_ns: f64 = streams.values().sum::<f64>() * 1e9;
    let ringcap_ns = (ours("tcp_rtt_server_ns_sum") + ours("tcp_rtt_client_ns_sum")) as f64;
    assert!(
        (tshark_ns - ringcap_ns).abs() < 1_000.0 * CONNECTIONS as f64,
        "tshark {tshark_ns} ns, ringcap {ringcap_ns} ns"
    );
    for side in ["handshake_rtt_server", "handshake_rtt_client"] {
        assert_eq!(stats["tcp"][side]["count"], CONNECTIONS as u64, "{side}");
        assert!(stats["tcp"][side]["p50_ns"].as_u64().unwrap() > 0);
    }

    // The same, from the command line.
    let printed = bed.rx(RINGCAP).args(["stats", "--http", addr]).output().unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains(&format!("TCP, since start: {CONNECTIONS} handshakes completed")), "{printed}");
    assert!(printed.contains("RTT handshake, server side"), "{printed}");

    // --with-stats: the open file has no snapshot yet; once the daemon closes it, the
    // window's statistics are stored beside the pulled capture.
    let pulled = scratch("with-stats.pcap");
    let with_stats = |pulled: &std::path::Path| {
        let out = Command::new(RINGCAP)
            .args(["pull", "--dir", d, "--last", "1m", "--with-stats", "-w", pulled.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(with_stats(&pulled).contains("still being written"));
    ring.signal(libc::SIGINT);
    assert!(ring.finish(WAIT).0.success());
    let stderr = with_stats(&pulled);
    let stats_file = format!("{}.stats.json", pulled.display());
    let window: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&stats_file).unwrap_or_else(|e| panic!("{e}: {stderr}")),
    )
    .unwrap();
    assert_eq!(window["counters"]["tcp_handshakes"], CONNECTIONS as u64, "{window}");
    assert_eq!(window["counters"]["tcp_syn"], CONNECTIONS as u64 + 1);
    assert_eq!(window["tcp"]["handshake_rtt_client"]["count"], CONNECTIONS as u64);
}

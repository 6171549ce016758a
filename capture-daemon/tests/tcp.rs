//! TCP health against tshark: real TCP stacks in two namespaces, ringcap's in-kernel
//! flag counts, handshakes and handshake RTTs compared with tshark's analysis of the
//! packets ringcap itself stored.
mod common;

use common::OutputWithin;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::tcp_analysis::{assert_counts_equal_tshark, final_snapshot_and_pcap, tshark_tcp_counts};
use common::{bed, get, scratch, serve, start_health_daemon, start_ringcap, tshark_fields, RINGCAP, WAIT};
use ringcap_tools::frames::TcpSegment;
use ringcap_tools::testbed::{TestBed, RX_IP};

const CONNECTIONS: usize = 10;

fn tshark_count(file: &str, filter: &str) -> u64 {
    tshark_fields(Path::new(file), filter, &["frame.number"]).len() as u64
}

#[test]
fn flags_handshakes_and_handshake_rtt_agree_with_tshark() {
    let bed = bed();
    let dir = scratch("tcp-ring");
    let d = dir.to_str().unwrap();
    let addr = "127.0.0.1:18090";
    let ring = start_ringcap(
        &bed,
        "run",
        &["--dir", d, "-G", "0", "--direction", "both", "--http", addr, "--http-no-auth"],
    );
    let server = serve(&bed, 8080, |listener| {
        for _ in 0..CONNECTIONS {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            stream.read_to_end(&mut request).unwrap();
            stream.write_all(&request[..100]).unwrap();
        }
    });
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
        .output_within_deadline();
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
    // By interface and direction: the client's SYNs arrive at veth-rx, the server's
    // SYN-ACKs and the reset leave it.
    let slots = stats["tcp_by_interface"].as_array().unwrap();
    let slot = |direction: &str| slots.iter().find(|s| s["direction"] == direction).unwrap()["tcp"].clone();
    assert_eq!(slots.len(), 2, "{slots:?}");
    assert_eq!(slot("in")["tcp_syn"], CONNECTIONS as u64 + 1);
    assert_eq!(slot("in")["tcp_syn_ack"], 0);
    assert_eq!(slot("out")["tcp_syn_ack"], CONNECTIONS as u64);
    assert_eq!(slot("out")["tcp_rst"], 1);
    let metrics = String::from_utf8(get(&bed, addr, "/metrics", None).body).unwrap();
    assert!(
        metrics.contains(&format!(
            "ringcap_tcp_segments_total{{interface=\"veth-rx\",direction=\"out\",flag=\"syn_ack\"}} {CONNECTIONS}"
        )),
        "{metrics}"
    );

    // tshark's initial RTT of each stream is SYN to the ACK of the SYN-ACK: at the capture
    // point that is ringcap's server side plus client side, so the sums agree.
    let rows = tshark_fields(
        Path::new(file),
        "tcp.analysis.initial_rtt && tcp.port == 8080",
        &["tcp.stream", "tcp.analysis.initial_rtt"],
    );
    let mut streams = std::collections::BTreeMap::new();
    for row in rows {
        streams.entry(row[0].clone()).or_insert(row[1].parse::<f64>().unwrap());
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
    let printed = bed.rx(RINGCAP).args(["stats", "--http", addr]).output_within_deadline();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains(&format!("TCP, since start: {CONNECTIONS} handshakes completed")), "{printed}");
    assert!(printed.contains("RTT handshake, server side"), "{printed}");

    // --with-stats: the window's statistics beside the pulled capture, from the snapshots
    // stored while the file is written (the counters settle within a frame interval), and
    // the same once the daemon has closed it.
    let pulled = scratch("with-stats.pcap");
    let with_stats = |pulled: &std::path::Path| -> serde_json::Value {
        let out = Command::new(RINGCAP)
            .args(["pull", "--dir", d, "--last", "1m", "--with-stats", "-w", pulled.to_str().unwrap()])
            .output_within_deadline();
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stats_file = format!("{}.stats.json", pulled.display());
        serde_json::from_str(
            &std::fs::read_to_string(&stats_file).unwrap_or_else(|e| panic!("{e}: {stderr}")),
        )
        .unwrap()
    };
    let settled = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        with_stats(&pulled)["counters"]["tcp_handshakes"] == CONNECTIONS as u64
    });
    assert!(settled, "while the file is written: {}", with_stats(&pulled));
    ring.signal(libc::SIGINT);
    assert!(ring.finish(WAIT).0.success());
    let window = with_stats(&pulled);
    assert_eq!(window["counters"]["tcp_handshakes"], CONNECTIONS as u64, "{window}");
    assert_eq!(window["counters"]["tcp_syn"], CONNECTIONS as u64 + 1);
    assert_eq!(window["tcp"]["handshake_rtt_client"]["count"], CONNECTIONS as u64);
}

/// Nanoseconds since the epoch from tshark's `frame.time_epoch` (printed with 9 decimals;
/// parsed exactly, not through an f64).
fn epoch_ns(text: &str) -> u64 {
    let (secs, frac) = text.split_once('.').unwrap_or((text, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<u64>().unwrap() * 1_000_000_000 + frac[..9].parse::<u64>().unwrap()
}

/// One side of a connection in [`timestamp_samples`]: the waiting sample (TSval and
/// time) and the last TSval sampled.
type Side = (Option<(u32, u64)>, Option<u32>);

/// The timestamp RTT samples ringcap's rules (ePPing's) take from these packets,
/// computed independently from tshark's dissection: in each direction, the first data
/// (or SYN/FIN) packet with a TSval newer than the last one sampled starts a sample when
/// none is waiting; the first ACK the other way whose TSecr echoes it completes it.
fn timestamp_samples(file: &str) -> Vec<u64> {
    let fields = [
        "tcp.stream",
        "tcp.srcport",
        "frame.time_epoch",
        "tcp.len",
        "tcp.flags.syn",
        "tcp.flags.fin",
        "tcp.flags.ack",
        "tcp.options.timestamp.tsval",
        "tcp.options.timestamp.tsecr",
    ];
    // (stream, source port) -> that side's waiting sample and last TSval sampled
    let mut sides: std::collections::HashMap<(String, String), Side> = Default::default();
    let mut samples = Vec::new();
    for row in tshark_fields(Path::new(file), "tcp", &fields) {
        let f: Vec<&str> = row.iter().map(String::as_str).collect();
        let (stream, port, time, len) = (f[0], f[1], epoch_ns(f[2]), f[3].parse::<u32>().unwrap_or(0));
        let flag = |i: usize| f[i] == "1" || f[i] == "True";
        let (Ok(value), Ok(echo)) = (f[7].parse::<u32>(), f[8].parse::<u32>()) else { continue };
        let me = sides.entry((stream.to_string(), port.to_string())).or_default();
        let newer = me.1.is_none_or(|last| (value.wrapping_sub(last) as i32) > 0);
        if (len > 0 || flag(4) || flag(5)) && me.0.is_none() && newer {
            *me = (Some((value, time)), Some(value));
        }
        if flag(6) {
            let other = sides.iter_mut().find(|((s, p), _)| s == stream && p != port).map(|(_, side)| side);
            if let Some((waiting, _)) = other {
                if let Some((tsval, since)) = *waiting {
                    if tsval == echo {
                        samples.push(time - since);
                        *waiting = None;
                    }
                }
            }
        }
    }
    samples
}

/// Real loss on the path (every 32nd large packet dropped at the receiver's TC ingress,
/// after ringcap's XDP program saw it) and a receiver that stops reading: the receiver's
/// duplicate ACKs, the sender's fast and plain retransmissions, out-of-order segments,
/// full and zero windows, counted by ringcap in the kernel and by tshark's analysis of
/// the same packets.
#[test]
fn wireshark_analysis_and_rtts_agree_with_tshark_under_real_loss() {
    let bed = bed();
    let dir = scratch("tcp-loss");
    let d = dir.to_str().unwrap();
    let addr = "127.0.0.1:18091";
    let ring = start_ringcap(
        &bed,
        "run",
        &["--dir", d, "-G", "0", "--direction", "both", "--http", addr, "--http-no-auth"],
    );
    let injector = TestBed::in_namespace(&bed.rx_ns, || {
        let ifindex = capture_daemon::kernel::interface_index(ringcap_tools::testbed::RX_IF).unwrap();
        ringcap_tools::bpf::LossInjector::attach(ifindex, 32, 200).unwrap()
    })
    .join()
    .unwrap()
    .unwrap();
    let server = serve(&bed, 8081, |listener| {
        for i in 0..4 {
            let (mut stream, _) = listener.accept().unwrap();
            if i == 3 {
                // A receiver with a small buffer that does not read for a while: its
                // window fills, then closes.
                let size: libc::c_int = 4096;
                // SAFETY: setsockopt on an open socket with a valid int.
                unsafe {
                    use std::os::fd::AsRawFd;
                    libc::setsockopt(
                        stream.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVBUF,
                        (&size as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            let mut received = Vec::new();
            stream.read_to_end(&mut received).unwrap();
            assert_eq!(received.len(), 2_000_000);
            stream.write_all(&[1u8; 100]).unwrap();
        }
    });
    TestBed::in_namespace(&bed.tx_ns, || {
        for _ in 0..4 {
            let mut stream = TcpStream::connect((RX_IP, 8081)).unwrap();
            stream.write_all(&vec![7u8; 2_000_000]).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).unwrap();
        }
    })
    .join()
    .unwrap()
    .unwrap();
    server.join().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    assert!(injector.seen().unwrap() >= 32, "the dropper saw the traffic");
    drop(injector);

    let stats: serde_json::Value = serde_json::from_slice(&get(&bed, addr, "/v1/stats", None).body).unwrap();
    ring.signal(libc::SIGINT);
    assert!(ring.finish(WAIT).0.success());
    let (snapshot, pcap) = final_snapshot_and_pcap(&dir, "tcp-loss.pcap");
    let kernel = &snapshot["kernel"];
    let file = pcap.to_str().unwrap();
    let ours = |key: &str| kernel[key].as_u64().unwrap();
    assert_counts_equal_tshark(kernel, &pcap);
    assert!(
        ours("tcp_duplicate_ack") > 0 && ours("tcp_fast_retransmission") > 0,
        "the loss showed: {kernel}"
    );
    assert!(ours("tcp_zero_window") > 0 && ours("tcp_window_full") > 0, "the stalled reader showed");
    assert_eq!(ours("tcp_handshakes"), 4);

    // Timestamp RTT: the same samples as the rules give on tshark's dissection; the pcap's
    // times are the kernel's under one fixed offset, so only rounding may differ.
    let expected = timestamp_samples(file);
    let count: u64 = snapshot["rtt"]["timestamp_rtt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket[1].as_u64().unwrap())
        .sum();
    assert_eq!(count, expected.len() as u64, "timestamp RTT samples");
    let sum: u64 = expected.iter().sum();
    let ours_sum = ours("tcp_rtt_timestamp_ns_sum");
    assert!(
        sum.abs_diff(ours_sum) <= 10_000 * count,
        "timestamp RTT sums: tshark-derived {sum} ns, ringcap {ours_sum} ns"
    );

    // Data RTT (one segment timed at a time, Karn's rule): each sample is an ACK's delay
    // after a data segment, so the median lies among tshark's ACK RTTs.
    let ack_rtts: Vec<f64> =
        tshark_fields(Path::new(file), "tcp.analysis.ack_rtt", &["tcp.analysis.ack_rtt"])
            .iter()
            .map(|row| row[0].parse::<f64>().unwrap() * 1e9)
            .collect();
    let (low, high) = ack_rtts.iter().fold((f64::MAX, 0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let data = &stats["tcp"]["data_rtt"];
    assert!(data["count"].as_u64().unwrap() > 0);
    let p50 = data["p50_ns"].as_u64().unwrap() as f64;
    assert!(
        p50 >= low * 0.85 && p50 <= high * 1.15,
        "data RTT p50 {p50} outside tshark's ack_rtt {low}..{high}"
    );
}

/// Many connections at once, with random loss (SYNs, ACKs and FINs too) in both
/// directions after the capture point: ingress and egress of one flow are analysed on
/// two CPUs, retransmitted SYNs move the iRTT, and every count equals tshark's.
#[test]
fn wireshark_analysis_agrees_with_tshark_on_parallel_connections_under_random_loss() {
    const PARALLEL: usize = 16;
    const BYTES: usize = 300_000;
    let bed = bed();
    let dir = scratch("tcp-random-loss");
    let ring =
        start_ringcap(&bed, "run", &["--dir", dir.to_str().unwrap(), "-G", "0", "--direction", "both"]);
    let random_loss = |ns: &str, iface: &'static str| {
        TestBed::in_namespace(ns, move || {
            let ifindex = capture_daemon::kernel::interface_index(iface).unwrap();
            ringcap_tools::bpf::LossInjector::attach_random(ifindex, 20).unwrap()
        })
        .join()
        .unwrap()
        .unwrap()
    };
    let losses = [
        random_loss(&bed.rx_ns, ringcap_tools::testbed::RX_IF),
        random_loss(&bed.tx_ns, ringcap_tools::testbed::TX_IF),
    ];
    let server = serve(&bed, 8082, |listener| {
        let handlers: Vec<_> = (0..PARALLEL)
            .map(|_| {
                let (mut stream, _) = listener.accept().unwrap();
                std::thread::spawn(move || {
                    let mut received = Vec::new();
                    stream.read_to_end(&mut received).unwrap();
                    assert_eq!(received.len(), BYTES);
                    stream.write_all(&[1u8; 1000]).unwrap();
                })
            })
            .collect();
        handlers.into_iter().for_each(|h| h.join().unwrap());
    });
    TestBed::in_namespace(&bed.tx_ns, || {
        let clients: Vec<_> = (0..PARALLEL)
            .map(|_| {
                std::thread::spawn(|| {
                    let mut stream = TcpStream::connect((RX_IP, 8082)).unwrap();
                    stream.write_all(&vec![7u8; BYTES]).unwrap();
                    stream.shutdown(Shutdown::Write).unwrap();
                    let mut reply = Vec::new();
                    stream.read_to_end(&mut reply).unwrap();
                    assert_eq!(reply.len(), 1000);
                })
            })
            .collect();
        clients.into_iter().for_each(|c| c.join().unwrap());
    })
    .join()
    .unwrap()
    .unwrap();
    server.join().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let dropped: u64 = losses.iter().map(|l| l.seen().unwrap()).sum();
    assert!(dropped > 1000, "the droppers saw the traffic ({dropped} packets)");
    drop(losses);
    ring.signal(libc::SIGINT);
    let (status, stderr) = ring.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    let (snapshot, pcap) = final_snapshot_and_pcap(&dir, "tcp-random-loss.pcap");
    let kernel = &snapshot["kernel"];
    assert_counts_equal_tshark(kernel, &pcap);
    let ours = |key: &str| kernel[key].as_u64().unwrap();
    assert!(ours("tcp_retransmission") + ours("tcp_fast_retransmission") > 0, "the loss showed: {kernel}");
    assert!(ours("tcp_duplicate_ack") > 0, "the loss showed: {kernel}");
}

/// Every capture of tcpdump's test suite through the real XDP program with
/// `BPF_PROG_TEST_RUN`: no verifier or runtime failure on any of them, and on each
/// Ethernet capture with TCP, the kernel's flag and analysis counts equal tshark's on the
/// same packets. The test runs all packets of a file within microseconds, so the rules
/// that depend on time (fast retransmission: 20 ms; out-of-order: the iRTT) can sort a
/// retransmission differently from tshark, which uses the capture's times: for those the
/// test compares the total of the retransmission family, which does not depend on time.
#[test]
fn the_corpus_through_the_kernel_agrees_with_tshark() {
    use capture_common::packet::SlicePacket;
    use capture_daemon::kernel::{CaptureProgram, KernelConfig, Selection};
    let mut program = CaptureProgram::load(KernelConfig::test_run(65536)).unwrap();
    // Analysis sees every packet; sampling at 1 in 2^32 keeps the ring empty.
    program
        .select(&Selection {
            tcp_analysis: true,
            l7_analysis: true,
            sample_every: u32::MAX,
            ..Selection::default()
        })
        .unwrap();
    let (mut files, mut compared, mut mismatches) = (0, 0, Vec::new());
    for capture in common::corpus_captures() {
        files += 1;
        program.forget_flows();
        let before = program.counters();
        let mut tcp_frames = std::collections::BTreeSet::new();
        let mut skipped_tcp = false;
        for (i, data) in capture.packets.iter().enumerate() {
            let is_tcp = capture.linktype == 1
                && capture_common::tcp::parse(&SlicePacket { data, wire_len: data.len() as u32 }).is_some();
            if !(14..=3000).contains(&data.len()) {
                skipped_tcp |= is_tcp;
                continue;
            }
            program.test_run(data, 1).unwrap_or_else(|e| panic!("{}: packet {}: {e}", capture.name, i + 1));
            if is_tcp {
                tcp_frames.insert(i + 1);
            }
        }
        if tcp_frames.is_empty() || skipped_tcp {
            continue;
        }
        compared += 1;
        let delta = program.counters().since(&before);
        let ours = |name: &str| {
            capture_common::Counter::ALL.iter().find(|c| c.name() == name).map_or(0, |c| delta.get(*c))
        };
        let theirs = tshark_tcp_counts(&capture.path, &tcp_frames);
        let mut differ = Vec::new();
        for (key, &expected) in &theirs {
            let got = match *key {
                "retransmission (all kinds)" => {
                    ours("tcp_retransmission")
                        + ours("tcp_fast_retransmission")
                        + ours("tcp_spurious_retransmission")
                        + ours("tcp_out_of_order")
                }
                "tcp_fast_retransmission" | "tcp_out_of_order" => continue,
                key => ours(key),
            };
            let expected = if *key == "retransmission (all kinds)" {
                expected + theirs["tcp_out_of_order"]
            } else {
                expected
            };
            if got != expected {
                differ.push(format!("{key}: ringcap {got}, tshark {expected}"));
            }
        }
        if !differ.is_empty() {
            mismatches.push(format!(
                "{} ({} TCP packets): {}",
                capture.name,
                tcp_frames.len(),
                differ.join("; ")
            ));
        }
    }
    assert_eq!((files, compared), (447, 55), "corpus files, and TCP captures compared (the README says 55)");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} TCP captures differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Connection attempts nobody answers (their SYNs are lost after the capture point) are
/// counted once each, however often their SYN is retransmitted.
#[test]
fn unanswered_connection_attempts_are_counted_once_each() {
    let bed = bed();
    let dir = scratch("tcp-unanswered");
    let addr = "127.0.0.1:18092";
    let ring = start_health_daemon(&bed, &dir, addr);
    // One answered connection first (it also resolves the neighbours).
    let server = serve(&bed, 8082, |listener| {
        drop(listener.accept().unwrap());
    });
    TestBed::in_namespace(&bed.tx_ns, || drop(TcpStream::connect((RX_IP, 8082)).unwrap()))
        .join()
        .unwrap()
        .unwrap();
    server.join().unwrap().unwrap();
    // Then every IPv4 packet arriving at veth-rx is lost (ARP, shorter, still passes).
    let injector = TestBed::in_namespace(&bed.rx_ns, || {
        let ifindex = capture_daemon::kernel::interface_index(ringcap_tools::testbed::RX_IF).unwrap();
        ringcap_tools::bpf::LossInjector::attach(ifindex, 1, 60).unwrap()
    })
    .join()
    .unwrap()
    .unwrap();
    TestBed::in_namespace(&bed.tx_ns, || {
        for port in 7001..7005 {
            let target = std::net::SocketAddr::from(([10, 77, 0, 2], port));
            assert!(TcpStream::connect_timeout(&target, Duration::from_millis(1200)).is_err());
        }
    })
    .join()
    .unwrap()
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    drop(injector);
    let stats: serde_json::Value = serde_json::from_slice(&get(&bed, addr, "/v1/stats", None).body).unwrap();
    assert_eq!(stats["flows"]["syn_unanswered"], 4, "{}", stats["flows"]);
    assert!(
        stats["kernel"]["tcp_syn"].as_u64().unwrap() > 5,
        "the SYNs were retransmitted: {}",
        stats["kernel"]
    );
    assert_eq!(stats["kernel"]["tcp_handshakes"], 1);
    let printed = bed.rx(RINGCAP).args(["stats", "--http", addr]).output_within_deadline();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("connection attempts: 4 unanswered, 0 refused"), "{printed}");
    ring.signal(libc::SIGINT);
    assert!(ring.finish(WAIT).0.success());
}

/// Wireshark's `tcp.analysis.reused_ports`: a client that connects three times in a row
/// from one source port (each connection reset by the client, so no TIME_WAIT holds the
/// port) starts two new connections on the ports of an earlier one; the kernel counts
/// them as tshark flags them on the stored packets, with every other count equal too.
#[test]
fn port_reuse_agrees_with_tshark() {
    let bed = bed();
    let dir = scratch("tcp-reuse");
    let ring = start_health_daemon(&bed, &dir, "127.0.0.1:18096");
    let server = serve(&bed, 8083, |listener| {
        for _ in 0..3 {
            let (mut stream, _) = listener.accept().unwrap();
            let mut hello = [0u8; 5];
            stream.read_exact(&mut hello).unwrap();
            stream.write_all(&hello).unwrap();
            // Until the client's reset.
            let _ = stream.read(&mut hello);
        }
    });
    let client = r#"
import socket, struct
for _ in range(3):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.77.0.1", 40123))
    s.connect(("10.77.0.2", 8083))
    s.sendall(b"hello")
    assert s.recv(5) == b"hello"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
"#;
    let out = bed.tx("python3").args(["-c", client]).output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.join().unwrap().unwrap();
    ring.signal(libc::SIGINT);
    assert!(ring.finish(WAIT).0.success());
    let (snapshot, pcap) = final_snapshot_and_pcap(&dir, "tcp-reuse.pcap");
    let kernel = &snapshot["kernel"];
    assert_counts_equal_tshark(kernel, &pcap);
    assert_eq!(kernel["tcp_reused_ports"], 2, "{kernel}");
    assert_eq!(kernel["tcp_handshakes"], 3, "{kernel}");
}

/// The flow table when full, through the real XDP program with `BPF_PROG_TEST_RUN`:
/// 16384 connections into a table of 1024 flows (every insertion counted, no flow listed
/// twice, no more than its capacity), and a flow that keeps sending survives them all
/// with every one of its segments counted: a new flow evicts the least recently seen.
#[test]
fn a_full_flow_table_evicts_the_least_recently_seen_flows() {
    use capture_common::Counter;
    use capture_daemon::kernel::{CaptureProgram, KernelConfig, Selection};
    let mut program = CaptureProgram::load(KernelConfig::test_run(1024)).unwrap();
    program
        .select(&Selection { tcp_analysis: true, sample_every: u32::MAX, ..Selection::default() })
        .unwrap();
    let before = program.counters();
    let server = (RX_IP.parse::<std::net::Ipv4Addr>().unwrap().octets(), 443);
    let busy = ([10, 9, 9, 9], 40000u16);
    let segment = |src, flags, seq, payload| {
        TcpSegment { src, dst: server, flags, seq, ack: 0, window: 65535, options: &[], payload }.frame()
    };
    let (mut busy_segments, mut seq) = (0u64, 1u32);
    for n in 0..16384u32 {
        let client = ((0x0a10_0000 + n).to_be_bytes(), 1024 + (n % 50000) as u16);
        program.test_run(&segment(client, 0x02, 1, 0), 1).unwrap();
        if n % 16 == 0 {
            program.test_run(&segment(busy, 0x10, seq, 100), 1).unwrap();
            busy_segments += 1;
            seq = seq.wrapping_add(100);
        }
    }
    let delta = program.counters().since(&before);
    assert_eq!(delta.get(Counter::TcpFlowsInserted), 16384 + 1);
    assert_eq!(delta.get(Counter::TcpFlowInsertFailed), 0);
    assert_eq!(delta.get(Counter::FlowLockBusy), 0);
    let flows = program.flows();
    // The kernel's LRU starts evicting a little before it is full (each CPU keeps free
    // elements of its own): at most the capacity, never the exact figure.
    assert!(flows.len() <= 1024, "a full table holds at most its capacity: {}", flows.len());
    let keys: std::collections::HashSet<_> = flows.iter().map(|(key, _)| *key).collect();
    assert_eq!(keys.len(), flows.len(), "no flow is listed twice");
    let busy_port = busy.1;
    let survivor = flows.iter().find(|(key, _)| key.lo_port == busy_port || key.hi_port == busy_port);
    let (_, state) = survivor.expect("the busy flow was evicted");
    let sent: u64 = state.halves.iter().map(|half| half.segments).sum();
    assert_eq!(sent, busy_segments, "every segment of the busy flow is counted in its state");
    assert_eq!(program.forget_flows(), flows.len());
    assert!(program.flows().is_empty());
}

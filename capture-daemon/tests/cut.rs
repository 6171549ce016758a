//! Per-flow cutting (`--flow-bytes`, `--flow-packets`, `--cut-encrypted`) in the real
//! kernel: real TCP connections and real TLS (Debian's openssl) between the bed's
//! namespaces, generated UDP and QUIC datagrams in both capture modes; what is stored
//! is checked byte for byte against what was sent, and every cut is counted.
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use common::tcp_analysis::{assert_counts_equal_tshark, final_snapshot_and_pcap};
use common::{bed, scratch, send, serve, start_capture, start_ringcap, tshark_fields, OutputWithin, WAIT};
use ringcap_tools::frames::{FrameTemplate, HEADERS_LEN};
use ringcap_tools::harness::{read_pcap, ReadPacket};
use ringcap_tools::testbed::{TestBed, RX_IF, RX_IP, SINK_MAC, TX_MAC};

/// The headers of an Ethernet/IPv4/TCP frame: (IP total length, IP header length, TCP
/// header length, flags, source port, destination port, sequence number).
struct Tcp {
    ip_len: usize,
    headers: usize,
    flags: u8,
    ports: (u16, u16),
    seq: u32,
}

fn tcp_headers(frame: &[u8]) -> Option<Tcp> {
    if frame.get(12..14)? != [0x08, 0x00] || *frame.get(23)? != 6 {
        return None;
    }
    let ihl = 4 * usize::from(frame[14] & 0xf);
    let tcp = 14 + ihl;
    let half = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    Some(Tcp {
        ip_len: usize::from(half(16)),
        headers: 14 + ihl + 4 * usize::from(frame[tcp + 12] >> 4),
        flags: frame[tcp + 13],
        ports: (half(tcp), half(tcp + 2)),
        seq: u32::from_be_bytes(frame[tcp + 4..tcp + 8].try_into().unwrap()),
    })
}

/// A bed whose captured interface sends one wire packet per skb: what leaves is stored
/// as the wire carries it (TC egress sees packets before GSO splits them, and a GSO
/// packet is longer than the largest record).
fn wire_packets_bed() -> TestBed {
    let bed = bed();
    let out = bed.rx("ip").args(["link", "set", "dev", RX_IF, "gso_max_segs", "1"]).output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    bed
}

const FLOW_BYTES: usize = 64 * 1024;
const SYN: u8 = 0x02;
const CONTROL: u8 = 0x01 | 0x02 | 0x04;

/// The byte at `offset` of what the client (`from_client`) or server sent on a
/// connection: a pattern that differs by position and direction.
fn sent_byte(from_client: bool, offset: usize) -> u8 {
    if from_client {
        (offset % 251) as u8
    } else {
        (offset % 241) as u8 ^ 0x5a
    }
}

fn pattern(from_client: bool, len: usize) -> Vec<u8> {
    (0..len).map(|i| sent_byte(from_client, i)).collect()
}

/// `--flow-bytes 64k` on 16 bulk connections and 4 small ones, both directions
/// captured: every handshake, every FIN and RST, and the first 64 KiB of each
/// direction are stored whole (byte for byte what was sent); every other segment is
/// stored with its headers and its wire length; the counters say exactly what was cut,
/// and tshark's analysis of the stored file equals the live counters.
#[test]
fn flow_bytes_keeps_each_directions_first_bytes_whole_and_the_headers_of_the_rest() {
    const BULK: usize = 16;
    const SMALL: usize = 4;
    const UP: usize = 300_000;
    const DOWN: usize = 200_000;
    const LITTLE: usize = 2_000;
    let bed = wire_packets_bed();
    let dir = scratch("cut-flow-bytes");
    let ring = start_ringcap(
        &bed,
        "run",
        &["--dir", dir.to_str().unwrap(), "-G", "0", "--direction", "both", "--flow-bytes", "64k"],
    );
    let server = serve(&bed, 8090, |listener| {
        let handlers: Vec<_> = (0..BULK + SMALL)
            .map(|_| {
                let (mut stream, _) = listener.accept().unwrap();
                std::thread::spawn(move || {
                    let mut request = Vec::new();
                    stream.read_to_end(&mut request).unwrap();
                    assert_eq!(request, pattern(true, request.len()));
                    let reply = if request.len() == UP { DOWN } else { LITTLE };
                    stream.write_all(&pattern(false, reply)).unwrap();
                })
            })
            .collect();
        handlers.into_iter().for_each(|h| h.join().unwrap());
    });
    TestBed::in_namespace(&bed.tx_ns, || {
        let clients: Vec<_> = (0..BULK + SMALL)
            .map(|i| {
                std::thread::spawn(move || {
                    let (up, down) = if i < BULK { (UP, DOWN) } else { (LITTLE, LITTLE) };
                    let mut stream = TcpStream::connect((RX_IP, 8090)).unwrap();
                    stream.write_all(&pattern(true, up)).unwrap();
                    stream.shutdown(Shutdown::Write).unwrap();
                    let mut reply = Vec::new();
                    stream.read_to_end(&mut reply).unwrap();
                    assert_eq!(reply.len(), down);
                })
            })
            .collect();
        clients.into_iter().for_each(|c| c.join().unwrap());
    })
    .join()
    .unwrap()
    .unwrap();
    server.join().unwrap().unwrap();
    let stderr = common::stop(ring);
    let (snapshot, pcap) = final_snapshot_and_pcap(&dir, "cut-flow-bytes.pcap");
    let kernel = &snapshot["kernel"];
    assert_counts_equal_tshark(kernel, &pcap);

    // Each direction of each connection, by (client port, from the client): its first
    // payload byte's sequence number, and what its whole segments stored of its first
    // FLOW_BYTES.
    let packets = read_pcap(&pcap).unwrap();
    let mut base = BTreeMap::new();
    let mut stored: BTreeMap<(u16, bool), Vec<Option<u8>>> = BTreeMap::new();
    let (mut cut, mut not_stored) = (0u64, 0u64);
    for ReadPacket { orig_len, data, .. } in &packets {
        let Some(tcp) = tcp_headers(data) else { continue };
        let from_client = tcp.ports.1 == 8090;
        let key = (if from_client { tcp.ports.0 } else { tcp.ports.1 }, from_client);
        assert_eq!(*orig_len as usize, 14 + tcp.ip_len, "every packet keeps its wire length");
        if tcp.flags & SYN != 0 {
            base.insert(key, tcp.seq.wrapping_add(1));
        }
        let start = tcp.seq.wrapping_sub(base[&key]) as usize;
        let payload = 14 + tcp.ip_len - tcp.headers;
        let whole = data.len() == *orig_len as usize;
        let early = start < FLOW_BYTES;
        if tcp.flags & CONTROL != 0 || early || payload == 0 {
            assert!(whole, "{key:?}: a segment at {start} with flags {:#x} is whole", tcp.flags);
        } else {
            assert_eq!(data.len(), tcp.headers, "{key:?}: a segment at {start} keeps its headers only");
            cut += 1;
            not_stored += payload as u64;
        }
        if whole && early {
            let first = stored.entry(key).or_insert_with(|| vec![None; FLOW_BYTES]);
            for (i, byte) in data[tcp.headers..].iter().enumerate().filter(|(i, _)| start + i < FLOW_BYTES) {
                first[start + i] = Some(*byte);
            }
        }
    }
    assert_eq!(stored.len(), 2 * (BULK + SMALL), "both directions of every connection");
    let mut small = 0;
    for ((port, from_client), first) in &stored {
        // A small connection sent LITTLE bytes each way; a bulk one more than FLOW_BYTES.
        let sent = if first[LITTLE..].iter().all(Option::is_none) { LITTLE } else { FLOW_BYTES };
        small += usize::from(sent == LITTLE);
        for (offset, byte) in first.iter().enumerate().take(sent) {
            assert_eq!(
                *byte,
                Some(sent_byte(*from_client, offset)),
                "port {port}, {from_client}: byte {offset}"
            );
        }
    }
    assert_eq!(small, 2 * SMALL, "only the small connections' directions ended early");
    let ours = |key: &str| kernel[key].as_u64().unwrap();
    assert!(cut > 1000, "bulk data past 64 KiB was cut ({cut} segments)");
    assert_eq!(ours("cut_flow_bytes"), cut, "{kernel}");
    assert_eq!(ours("cut_flow_bytes_bytes"), not_stored, "{kernel}");
    assert_eq!(ours("cut_flow_packets") + ours("cut_encrypted"), 0, "{kernel}");
    let line = format!("{cut} packets cut to their headers: {cut} past --flow-bytes, 0 past --flow-packets, 0 encrypted; {not_stored} bytes not stored");
    assert!(stderr.contains(&line), "the summary says it: {stderr:?}");
}

/// The cut's counts in a `capture` summary: (flow bytes, flow packets, encrypted, bytes
/// not stored).
fn summary_cuts(stderr: &[String]) -> Option<[u64; 4]> {
    let line = stderr.iter().find(|l| l.contains("packets cut to their headers"))?;
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    Some([numbers[1], numbers[2], numbers[3], numbers[4]])
}

/// What a datagram of the UDP test is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Datagram {
    Bulk,
    Quic,
    /// 4 bytes of payload in a frame padded to 60 bytes.
    Padded,
}

/// UDP flows in both capture modes: each direction keeps its first 2000 payload bytes
/// and 3 packets whole; a QUIC flow past its long-header packets keeps headers only;
/// counts exact, cut frames keep their wire length, padding too (AF_XDP mode cuts in
/// its readers, with the same rules and counts).
#[test]
fn udp_and_quic_flows_are_cut_the_same_in_both_capture_modes() {
    const FLOWS: u16 = 3;
    const PER_FLOW: u64 = 20;
    const LEN: usize = 500;
    const QUIC_LEN: usize = 600;
    let template = FrameTemplate { src_mac: TX_MAC, dst_mac: SINK_MAC, ..FrameTemplate::default() };
    let mut frames = Vec::new();
    // (its index in its flow, what it is), frame by frame
    let mut expected = Vec::new();
    for i in 0..PER_FLOW {
        for flow in 0..FLOWS {
            frames.push(template.udp(LEN, flow, i * 10 + u64::from(flow)));
            expected.push((i, Datagram::Bulk));
        }
        if i < 12 {
            let mut quic = template.udp_ports(QUIC_LEN, 40000, 443, 1000 + i);
            let header: [u8; 8] =
                if i < 2 { [0xc3, 0, 0, 0, 1, 8, 0xaa, 0xbb] } else { [0x43, 0xaa, 0xbb, 1, 2, 3, 4, 5] };
            quic[HEADERS_LEN..HEADERS_LEN + 8].copy_from_slice(&header);
            frames.push(quic);
            expected.push((i, Datagram::Quic));
        }
        if i < 6 {
            let mut padded = template.udp_ports(60, 40001, 7, 2000 + i);
            padded[16..18].copy_from_slice(&(20u16 + 8 + 4).to_be_bytes());
            padded[38..40].copy_from_slice(&12u16.to_be_bytes());
            frames.push(padded);
            expected.push((i, Datagram::Padded));
        }
    }
    let count = frames.len().to_string();
    for mode in ["ring", "afxdp"] {
        let bed = bed();
        let file = scratch(&format!("cut-udp-{mode}.pcap"));
        let mut args = vec!["-w", file.to_str().unwrap(), "-c", count.as_str(), "--mode", mode, "--force"];
        args.extend(["--flow-bytes", "2000", "--flow-packets", "3", "--cut-encrypted", "udp"]);
        let capture = start_capture(&bed, &args);
        send(&bed, frames.clone());
        let (status, stderr) = capture.finish(WAIT);
        assert!(status.success(), "{mode}: {stderr:?}");
        let packets = read_pcap(&file).unwrap();
        assert_eq!(packets.len(), frames.len(), "{mode}");
        let (mut by_bytes, mut by_packets, mut encrypted, mut not_stored) = (0, 0, 0, 0);
        for ((packet, frame), (index, kind)) in packets.iter().zip(&frames).zip(&expected) {
            assert_eq!(packet.orig_len as usize, frame.len(), "{mode}: the wire length is kept");
            // 458 payload bytes a bulk datagram: the first five start within 2000 bytes.
            let cut = match (kind, index) {
                (Datagram::Quic, 0..2) | (Datagram::Bulk | Datagram::Padded, 0..3) => false,
                (Datagram::Quic, _) => {
                    encrypted += 1;
                    true
                }
                (Datagram::Bulk | Datagram::Padded, 3..5) | (Datagram::Padded, _) => {
                    by_packets += 1;
                    true
                }
                (Datagram::Bulk, _) => {
                    by_bytes += 1;
                    true
                }
            };
            let kept = if cut { HEADERS_LEN } else { frame.len() };
            not_stored += (frame.len() - kept) as u64;
            assert_eq!(packet.data, frame[..kept], "{mode}: datagram {index} of its flow ({kind:?})");
        }
        assert_eq!((by_bytes, by_packets, encrypted), (45, 9, 10));
        assert_eq!(
            summary_cuts(&stderr),
            Some([by_bytes, by_packets, encrypted, not_stored]),
            "{mode}: {stderr:?}"
        );
    }
}

/// A self-signed certificate and key for the TLS test, made fresh (an EC key: fast).
fn certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-subj", "/CN=ringcap-test", "-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned())
}

/// `--cut-encrypted` with real TLS 1.2 (openssl s_server and s_client): the ClientHello,
/// ServerHello and Certificate records are stored whole, no application data is; a
/// cleartext flow whose data merely starts like a TLS record is never cut.
#[test]
fn cut_encrypted_keeps_tls_handshakes_and_cuts_application_data_but_not_cleartext() {
    const CONNECTIONS: usize = 3;
    let bed = wire_packets_bed();
    let dir = scratch("cut-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = certificate(&dir);
    let ring = start_ringcap(
        &bed,
        "run",
        &["--dir", dir.join("ring").to_str().unwrap(), "-G", "0", "--direction", "both", "--cut-encrypted"],
    );
    let mut server = bed
        .rx("openssl")
        .args(["s_server", "-accept", "8443", "-cert", &cert, "-key", &key, "-tls1_2", "-rev"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // s_server says ACCEPT once it listens.
    let mut said = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("ACCEPT") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut said, &mut line).unwrap() > 0, "s_server ended");
    }
    for _ in 0..CONNECTIONS {
        let lines: String =
            (0..300).map(|i| format!("line {i} of application data, reversed by s_server\n")).collect();
        let mut client = bed
            .tx("openssl")
            .args(["s_client", "-connect", &format!("{RX_IP}:8443"), "-tls1_2", "-quiet", "-no_ign_eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = client.stdin.take().unwrap();
        stdin.write_all(lines.as_bytes()).unwrap();
        let mut stdout = client.stdout.take().unwrap();
        // Every line reversed came back before the client closes.
        let mut echoed = Vec::new();
        let mut chunk = [0u8; 4096];
        while echoed.iter().filter(|&&b| b == b'\n').count() < 300 {
            let n = stdout.read(&mut chunk).unwrap();
            assert!(n > 0, "s_client ended early");
            echoed.extend_from_slice(&chunk[..n]);
        }
        drop(stdin);
        assert!(common::wait_with_deadline(&mut client, WAIT).success());
    }
    server.kill().unwrap();
    server.wait().unwrap();
    // Cleartext that starts like a TLS application-data record, on the next port.
    let cleartext = serve(&bed, 8444, |listener| {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        stream.read_to_end(&mut request).unwrap();
        stream.write_all(&request).unwrap();
    });
    TestBed::in_namespace(&bed.tx_ns, || {
        let mut stream = TcpStream::connect((RX_IP, 8444)).unwrap();
        for _ in 0..100 {
            stream.write_all(&[0x17, 3, 3, 0, 200]).unwrap();
            stream.write_all(&[b'x'; 995]).unwrap();
        }
        stream.shutdown(Shutdown::Write).unwrap();
        std::io::copy(&mut stream, &mut std::io::sink()).unwrap();
    })
    .join()
    .unwrap()
    .unwrap();
    cleartext.join().unwrap().unwrap();
    common::stop(ring);
    let (snapshot, pcap) = final_snapshot_and_pcap(&dir.join("ring"), "cut-tls.pcap");
    let kernel = &snapshot["kernel"];
    let rows = |filter: &str| tshark_fields(&pcap, filter, &["frame.number"]).len() as u64;
    let tls_rows = |filter: &str| {
        let rows = Command::new("tshark")
            .args(["-r", pcap.to_str().unwrap(), "-d", "tcp.port==8443,tls", "-Y", filter, "-T", "fields"])
            .args(["-e", "frame.number", "-e", "tcp.srcport", "-e", "tcp.seq", "-e", "tcp.len"])
            .args(["-e", "frame.cap_len", "-e", "tls.record.content_type"])
            .output_within_deadline();
        String::from_utf8_lossy(&rows.stdout).into_owned()
    };
    let tls = |filter: &str| tls_rows(filter).lines().count() as u64;
    for (handshake, name) in [(1, "ClientHello"), (2, "ServerHello"), (11, "Certificate")] {
        assert_eq!(
            tls(&format!("tls.handshake.type == {handshake} && frame.cap_len == frame.len")),
            CONNECTIONS as u64,
            "every {name} is stored whole"
        );
    }
    assert_eq!(
        tls("tcp.port == 8443 && tls.record.content_type == 23"),
        0,
        "no application data is stored:\n{}",
        tls_rows("tcp.port == 8443")
    );
    let cut_frames = rows("tcp.port == 8443 && frame.cap_len < frame.len");
    assert!(cut_frames >= 2 * CONNECTIONS as u64, "application data was cut ({cut_frames} frames)");
    assert_eq!(kernel["cut_encrypted"].as_u64(), Some(cut_frames), "{kernel}");
    assert_eq!(rows("frame.cap_len < frame.len && !(tcp.port == 8443)"), 0, "nothing else is cut");
    assert!(rows("tcp.port == 8444 && tcp.len > 0") > 100, "the cleartext flow is stored");
    assert_counts_equal_tshark(kernel, &pcap);
}

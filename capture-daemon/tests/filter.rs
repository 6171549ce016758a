//! Filter semantics against tcpdump, the reference: every packet of the tcpdump test
//! corpus, through a suite of expressions, selected by (1) `tcpdump -r`, (2) ringcap's
//! XDP program with the expression spliced in as native eBPF, run by the kernel with
//! BPF_PROG_TEST_RUN, (3) ringcap's user-space evaluator. Any disagreement fails, naming
//! the expression and the packets.
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use capture_common::{Counter, RECORD_HEADER_LEN};
use capture_daemon::capture::ringbuf::PacketRing;
use capture_daemon::filter::Filter;
use capture_daemon::kernel::{CaptureProgram, KernelConfig, ProgramSet, Selection};
use capture_daemon::pcap::{write_file_header, write_record};
use common::{bed, corpus_captures, scratch, send, start_capture, stop};
use ringcap_tools::frames::FrameTemplate;
use ringcap_tools::harness::read_pcap;

/// At least 60 expressions: every primitive, negations, nesting, IPv6, VLAN, flags.
const EXPRESSIONS: &[&str] = &[
    "ip",
    "ip6",
    "arp",
    "rarp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "not ip",
    "!tcp",
    "host 10.0.0.1",
    "host 192.168.1.1",
    "src host 10.0.0.1",
    "dst host 10.0.0.2",
    "host fe80::1",
    "host 2001:db8::1",
    "src host ::1",
    "net 10.0.0.0/8",
    "net 192.168.0.0/16",
    "src net 172.16.0.0/12",
    "dst net 224.0.0.0/4",
    "net 10",
    "net 192.168",
    "net fe80::/10",
    "net 2001:db8::/32",
    "dst net ff00::/8",
    "port 80",
    "port 53",
    "src port 53",
    "dst port 443",
    "tcp port 80",
    "udp port 53",
    "tcp src port 80",
    "udp dst port 67 or udp dst port 68",
    "portrange 1-1023",
    "tcp portrange 6000-6010",
    "udp portrange 500-600",
    "port 80 or 443",
    "host 10.0.0.1 or 10.0.0.2",
    "vlan",
    "vlan 100",
    "vlan and ip",
    "vlan and tcp",
    "vlan 1 and vlan",
    "vlan and vlan and ip",
    "ether host ff:ff:ff:ff:ff:ff",
    "ether src 00:00:0c:07:ac:01",
    "ether dst 01:80:c2:00:00:00",
    "less 64",
    "greater 1000",
    "less 100 and tcp",
    "tcp[tcpflags] & (tcp-syn|tcp-rst) != 0",
    "tcp[tcpflags] == tcp-syn",
    "tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack != 0",
    "tcp[tcpflags] & (tcp-fin|tcp-push) == tcp-push",
    "tcp[13] & 0x12 = 0x12",
    "tcp[0:2] > 1023 and tcp[2:2] < 1024",
    "udp[0:2] = 53 or udp[2:2] = 53",
    "icmp[icmptype] == icmp-echo or icmp[icmptype] == icmp-echoreply",
    "icmp[0] = 3",
    "icmp6[icmp6type] == icmp6-neighborsolicit",
    "ip[9] = 17",
    "ip[2:2] > 576",
    "ip[6:2] & 0x1fff != 0",
    "ip[0] & 0xf > 5",
    "ip6[6] = 58",
    "ether[12:2] = 0x0806",
    "ether[0] & 1 != 0",
    "arp[6:2] = 1",
    "len - 14 > 100",
    "len >= 60 and len <= 100",
    "ip[2:2] - ((ip[0] & 0xf) * 4) > 100",
    "(tcp or udp) and not port 53",
    "tcp or udp and port 53",
    "not (host 10.0.0.1 or host 10.0.0.2)",
    "ip and not net 10.0.0.0/8 and not net 192.168.0.0/16",
    "(ip6 and udp) or (ip and icmp)",
    "not tcp port 80 and not arp",
    "tcp && (port 80 || port 8080) && !host 10.0.0.1",
    "udp and (src port 123 or dst port 123)",
    "ip6 and tcp and not port 22",
    "(tcp[tcpflags] & tcp-rst != 0) or icmp",
    // What tcpdump accepts and ringcap's own parser once refused.
    "ip proto 47",
    "proto gre",
    "ip6 proto 58",
    "ether proto 0x88cc",
    "ether broadcast",
    "ether multicast",
    "ip multicast",
    "ip6 multicast",
    "net 10.0.0.0 mask 255.0.0.0",
    "src or dst host 10.0.0.1",
    "src and dst net 10.0.0.0/8",
    "mpls",
    "pppoes",
    "pppoed",
    "geneve",
    "llc",
    "stp",
    "vlan and mpls",
    "ip[ip[0] & 0xf] = 0x45",
    "tcp[((tcp[12] & 0xf0) >> 2):4] = 0x47455420",
    "len % 7 = 3 or len / 100 = 5",
    "ip and ip[8] * 2 > 100 and ip[8] - 1 < 60 and (ip[8] ^ 0xff) != 0 and ip[8] << 1 > 2",
];

struct CorpusPacket {
    origin: String,
    data: Vec<u8>,
}

/// Every corpus packet the kernel's test runner accepts (14..=3000 bytes captured),
/// written into one pcap whose packet i has timestamp i seconds and orig_len = captured
/// length, so all three evaluators see the same bytes and the same `len`.
fn normalized_corpus() -> (Vec<CorpusPacket>, PathBuf) {
    let mut packets = Vec::new();
    for capture in corpus_captures() {
        for data in capture.packets {
            if (14..=3000).contains(&data.len()) {
                packets.push(CorpusPacket { origin: capture.name.clone(), data });
            }
        }
    }
    assert!(packets.len() > 5000, "only {} corpus packets", packets.len());
    packets.extend(crafted_packets().into_iter().map(|data| CorpusPacket { origin: "crafted".into(), data }));
    let mut pcap = Vec::new();
    write_file_header(&mut pcap, 262_144).unwrap();
    for (i, packet) in packets.iter().enumerate() {
        write_record(
            &mut pcap,
            Duration::from_secs(i as u64),
            packet.data.len() as u32,
            &packet.data,
            262_144,
        )
        .unwrap();
    }
    let path = scratch("corpus.pcap");
    std::fs::write(&path, pcap).unwrap();
    (packets, path)
}

/// Packets the tcpdump corpus lacks, for expressions that would otherwise select nothing:
/// TCP over IPv6 to 2001:db8::1 port 443, TCP to port 6005, a double-tagged (VLAN 1, then
/// VLAN 20) IPv4 UDP packet and MPLS inside a VLAN.
fn crafted_packets() -> Vec<Vec<u8>> {
    let ether =
        |ethertype: u16| [&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1][..], &ethertype.to_be_bytes()].concat();
    let vlan = |vid: u16, inner: u16| [(vid).to_be_bytes(), inner.to_be_bytes()].concat();
    let tcp = |sport: u16, dport: u16| {
        [
            &sport.to_be_bytes()[..],
            &dport.to_be_bytes(),
            &[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0],
        ]
        .concat()
    };
    let ipv4 = |proto: u8, payload: &[u8]| {
        let len = (20 + payload.len()) as u16;
        let header =
            [&[0x45, 0][..], &len.to_be_bytes(), &[0, 1, 0, 0, 64, proto, 0, 0, 10, 1, 1, 1, 10, 1, 1, 2]];
        [&header.concat()[..], payload].concat()
    };
    let udp = [0x9c, 0x40, 0, 53, 0, 12, 0, 0, b'p', b'i', b'n', b'g'];
    let mut ipv6_tcp = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
    ipv6_tcp.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    ipv6_tcp.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ipv6_tcp.extend(tcp(40000, 443));
    // One MPLS label (16, bottom of stack, TTL 64) over IPv4.
    let mpls = [0x00, 0x01, 0x01, 0x40];
    vec![
        [ether(0x86dd), ipv6_tcp].concat(),
        [ether(0x0800), ipv4(6, &tcp(40000, 6005))].concat(),
        [ether(0x8100), vlan(1, 0x8100), vlan(20, 0x0800), ipv4(17, &udp)].concat(),
        [ether(0x8100), vlan(5, 0x8847), mpls.to_vec(), ipv4(17, &udp)].concat(),
    ]
}

/// Indexes of the packets `tcpdump -r corpus EXPR` selects.
fn tcpdump_selects(corpus: &Path, expression: &str) -> BTreeSet<usize> {
    let out = scratch("tcpdump-selected.pcap");
    let status = Command::new("tcpdump")
        .args(["-r", corpus.to_str().unwrap(), "-w", out.to_str().unwrap(), expression])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "tcpdump rejected {expression:?}");
    read_pcap(&out).unwrap().iter().map(|p| p.timestamp.as_secs() as usize).collect()
}

fn describe(packets: &[CorpusPacket], indexes: &BTreeSet<usize>) -> String {
    indexes
        .iter()
        .take(5)
        .map(|&i| format!("#{i} ({}, {} bytes)", packets[i].origin, packets[i].data.len()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn kernel_and_user_space_select_exactly_what_libpcap_selects() {
    let (packets, corpus) = normalized_corpus();
    let mut failures = Vec::new();
    for expression in EXPRESSIONS {
        let reference = tcpdump_selects(&corpus, expression);
        // Agreeing on an expression that selects nothing, or everything, proves nothing.
        if reference.is_empty() || reference.len() == packets.len() {
            failures.push(format!("{expression:?}: tcpdump selects {} of the corpus", reference.len()));
        }
        let filter = Filter::compile(expression).unwrap_or_else(|e| panic!("{e}"));
        let user: BTreeSet<usize> = packets
            .iter()
            .enumerate()
            .filter(|(_, p)| filter.matches(&p.data, p.data.len() as u32))
            .map(|(i, _)| i)
            .collect();
        let mut program = CaptureProgram::load(KernelConfig {
            filter: Some(filter),
            snaplen: 64,
            ring_bytes: 1 << 22,
            tcp_flows: 1024,
            programs: ProgramSet::XDP,
        })
        .unwrap_or_else(|e| panic!("{expression:?}: {e}"));
        let mut rings = program.take_rings();
        program.select(&Selection::default()).unwrap();
        let mut kernel = BTreeSet::new();
        for (i, packet) in packets.iter().enumerate() {
            program.test_run(&packet.data, 1).unwrap();
            if let Some(record) = next_record(&mut rings) {
                let cap = packet.data.len().min(64);
                assert_eq!(&record[RECORD_HEADER_LEN..RECORD_HEADER_LEN + cap], &packet.data[..cap]);
                kernel.insert(i);
            }
        }
        for (who, selected) in [("kernel", &kernel), ("user space", &user)] {
            if *selected != reference {
                let extra: BTreeSet<usize> = selected.difference(&reference).copied().collect();
                let missing: BTreeSet<usize> = reference.difference(selected).copied().collect();
                failures.push(format!(
                    "{expression:?}: {who} selects {} packets, tcpdump {}; extra: [{}] missing: [{}]",
                    selected.len(),
                    reference.len(),
                    describe(&packets, &extra),
                    describe(&packets, &missing)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} disagreements with libpcap:\n{}", failures.len(), failures.join("\n"));
}

/// Loads the capture program with `selection` and runs `frames` through it once each;
/// returns the frames recorded, in order, and the kernel counters.
fn run_frames(
    filter: Option<Filter>,
    selection: Selection,
    frames: &[Vec<u8>],
) -> (Vec<Vec<u8>>, capture_daemon::kernel::KernelCounters) {
    let mut program = CaptureProgram::load(KernelConfig {
        filter,
        snaplen: 2048,
        ring_bytes: 1 << 24,
        tcp_flows: 1024,
        programs: ProgramSet::XDP,
    })
    .unwrap();
    let mut rings = program.take_rings();
    program.select(&selection).unwrap();
    let mut recorded = Vec::new();
    for frame in frames {
        program.test_run(frame, 1).unwrap();
        while let Some(record) = next_record(&mut rings) {
            recorded.push(record[RECORD_HEADER_LEN..RECORD_HEADER_LEN + frame.len()].to_vec());
        }
    }
    (recorded, program.counters())
}

/// The next record of any CPU's ring (a test run records on whichever CPU it ran): its
/// header and packet bytes.
fn next_record(rings: &mut [PacketRing]) -> Option<Vec<u8>> {
    rings.iter_mut().find_map(|ring| {
        let (header, data) = ring.peek()?;
        // SAFETY: RecordHeader is plain data; the bytes are those of the kernel's record.
        let header: [u8; RECORD_HEADER_LEN] = unsafe { std::mem::transmute(header) };
        let record = [&header[..], data].concat();
        ring.advance();
        ring.release();
        Some(record)
    })
}

fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    FrameTemplate { src_ip: src, dst_ip: dst, ..FrameTemplate::default() }.udp_ports(60, sport, dport, 0)
}

/// Every packet is either recorded or counted under exactly one reason.
fn assert_every_packet_accounted(counters: &capture_daemon::kernel::KernelCounters, total: u64) {
    let c = |k| counters.get(k);
    assert_eq!(c(Counter::Seen), total);
    assert_eq!(
        c(Counter::Captured)
            + c(Counter::Filtered)
            + c(Counter::SampledOut)
            + c(Counter::RateLimited)
            + counters.dropped(),
        total,
        "{counters:?}"
    );
}

/// The native filter counts exactly what it leaves out, and what it keeps is recorded
/// byte for byte, with the sampling after it.
#[test]
fn the_native_filter_counts_every_packet_it_leaves_out() {
    let frames: Vec<_> = (0..3000u16)
        .map(|i| udp_frame([10, 0, 0, 1], [10, 0, 0, 2], 1000 + i, if i % 3 == 0 { 53 } else { 123 }))
        .collect();
    let filter = Filter::compile("udp dst port 53 and src host 10.0.0.1").unwrap();
    let (recorded, counters) = run_frames(Some(filter), Selection::default(), &frames);
    let expected: Vec<Vec<u8>> = frames.iter().step_by(3).cloned().collect();
    assert_eq!(recorded, expected);
    assert_eq!(counters.get(Counter::Filtered), 2000);
    assert_every_packet_accounted(&counters, 3000);
}

#[test]
fn packet_sampling_keeps_one_in_n_within_statistical_bounds() {
    let frames: Vec<_> =
        (0..100_000u32).map(|i| udp_frame([10, 0, 0, 1], [10, 0, 0, 2], (i % 60000) as u16, 53)).collect();
    let (recorded, counters) =
        run_frames(None, Selection { sample_every: 10, ..Selection::default() }, &frames);
    // Binomial(100000, 0.1): mean 10000, sd 95; 6 sd either side.
    assert!((9430..=10570).contains(&recorded.len()), "{} of 100000 kept at 1/10", recorded.len());
    assert_eq!(counters.get(Counter::SampledOut), 100_000 - recorded.len() as u64);
    assert_every_packet_accounted(&counters, 100_000);
}

#[test]
fn flow_sampling_keeps_both_directions_of_a_flow_together() {
    let mut frames = Vec::new();
    for flow in 0..4000u16 {
        let (a, b) = ([10, 1, (flow >> 8) as u8, flow as u8], [192, 168, 7, 7]);
        frames.push(udp_frame(a, b, 20000 + flow, 443));
        frames.push(udp_frame(b, a, 443, 20000 + flow));
        frames.push(udp_frame(a, b, 20000 + flow, 443));
    }
    let (recorded, counters) =
        run_frames(None, Selection { flow_sample_every: 4, ..Selection::default() }, &frames);
    let kept: BTreeSet<Vec<u8>> = recorded.into_iter().collect();
    let mut flows_kept = 0;
    for flow in frames.chunks(3) {
        let seen: Vec<bool> = flow.iter().map(|f| kept.contains(f)).collect();
        assert!(seen.iter().all(|&s| s == seen[0]), "a flow was split: {seen:?}");
        flows_kept += usize::from(seen[0]);
    }
    // Binomial(4000, 0.25): mean 1000, sd 27; 6 sd either side.
    assert!((838..=1162).contains(&flows_kept), "{flows_kept} of 4000 flows kept at 1/4");
    assert_every_packet_accounted(&counters, frames.len() as u64);
}

#[test]
fn max_pps_limits_the_rate_and_counts_the_rest() {
    let frames: Vec<_> =
        (0..50_000u32).map(|i| udp_frame([10, 0, 0, 1], [10, 0, 0, 2], i as u16, 53)).collect();
    // Test runs execute on the calling thread's CPU: keep it on one, so one bucket is used.
    // SAFETY: a CPU set for the calling thread (pid 0), initialised by CPU_ZERO/CPU_SET.
    unsafe {
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut one);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one), 0);
    }
    let started = std::time::Instant::now();
    let (recorded, counters) = run_frames(None, Selection { max_pps: 1000, ..Selection::default() }, &frames);
    let elapsed = started.elapsed().as_secs_f64();
    // CPU 0 runs the test: its bucket refills at 1000/ncpus per second and holds 100 ms.
    let per_cpu = 1000f64 / aya::util::nr_cpus().unwrap() as f64;
    let ceiling = (per_cpu * (elapsed + 0.1)).ceil() as usize + 1;
    assert!(
        !recorded.is_empty() && recorded.len() <= ceiling,
        "{} recorded, at most {ceiling}",
        recorded.len()
    );
    assert_eq!(counters.get(Counter::RateLimited), 50_000 - recorded.len() as u64);
    assert_every_packet_accounted(&counters, 50_000);
}

#[test]
fn live_traffic_through_the_test_bed_is_filtered_like_tcpdump() {
    let (packets, _) = normalized_corpus();
    // A spread of corpus packets, sent as they are through the veth pair.
    // Frames longer than the veth MTU allows never arrive, so they are left out.
    let sample: Vec<Vec<u8>> = packets
        .iter()
        .filter(|p| p.data.len() <= 1514)
        .step_by(4)
        .take(2000)
        .map(|p| p.data.clone())
        .collect();
    let mut file = Vec::new();
    write_file_header(&mut file, 262_144).unwrap();
    for (i, frame) in sample.iter().enumerate() {
        write_record(&mut file, Duration::from_secs(i as u64), frame.len() as u32, frame, 262_144).unwrap();
    }
    let sent = scratch("live-sent.pcap");
    std::fs::write(&sent, file).unwrap();
    let bed = bed();
    for expression in
        ["tcp", "udp and port 53", "not ip", "vlan", "host 192.168.1.1", "tcp[tcpflags] & tcp-syn != 0"]
    {
        let out = scratch("live.pcap");
        let capture = start_capture(&bed, &["-w", out.to_str().unwrap(), expression]);
        send(&bed, sample.clone());
        stop(capture);
        let mut captured: Vec<Vec<u8>> = read_pcap(&out).unwrap().into_iter().map(|p| p.data).collect();
        let mut expected: Vec<Vec<u8>> =
            tcpdump_selects(&sent, expression).into_iter().map(|i| sample[i].clone()).collect();
        captured.sort();
        expected.sort();
        assert_eq!(captured.len(), expected.len(), "{expression:?}: ringcap live vs tcpdump");
        assert!(captured == expected, "{expression:?}: different packets");
    }
}

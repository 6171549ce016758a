//! Tests of `ringcap pull`: window edges across rotations, filtered pulls against
//! `zstdcat | tcpdump`, damaged files, and a file still being written.
mod common;

use common::OutputWithin;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use capture_daemon::capture::Batch;
use capture_daemon::output::Sink;
use capture_daemon::pcap::{write_file_header, write_record};
use capture_daemon::storage::budget::DiskLimit;
use capture_daemon::storage::naming::NameTemplate;
use capture_daemon::storage::ring::{RingConfig, RingWriter, StorageCounters};
use capture_daemon::storage::Compression;
use common::{
    bed, known_frame, mixed_frames, scratch, send, seqs, stamp, start_ringcap, synthetic_ring, RINGCAP, WAIT,
};
use ringcap_tools::frames::sequence_of;
use ringcap_tools::harness::{read_pcap, read_pcap_bytes, summary_count};

fn ringcap_pull(dir: &Path, args: &[&str]) -> (Vec<u8>, String) {
    let out = Command::new(RINGCAP)
        .args(["pull", "--dir", dir.to_str().unwrap()])
        .args(args)
        .output_within_deadline();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ringcap pull {args:?}: {stderr}");
    (out.stdout, stderr)
}

#[test]
fn window_edges_are_inclusive_at_since_exclusive_at_until_across_rotations() {
    let dir = scratch("edges");
    synthetic_ring(&dir, 1000, 6_000);
    let files = capture_daemon::retrieve::pull::ring_files(&dir).unwrap();
    assert!(files.len() >= 5, "{} files", files.len());
    // Packet 100 is at 10:00:01 exactly, packet 300 at 10:00:03.
    let (pcap, stderr) =
        ringcap_pull(&dir, &["--since", "2026-11-24T10:00:01Z", "--until", "2026-11-24T10:00:03Z"]);
    assert_eq!(seqs(&pcap), (100..300).collect::<Vec<_>>(), "{stderr}");
    for packet in read_pcap_bytes(&pcap).unwrap() {
        let seq = sequence_of(&packet.data).unwrap();
        assert_eq!(packet.data, known_frame(seq));
        assert_eq!(packet.timestamp, stamp(seq));
    }
    // One nanosecond later excludes packet 100; HH:MM:SS means today, and the synthetic
    // ring is not from today, so that window is empty.
    let (pcap, _) = ringcap_pull(
        &dir,
        &["--since", "2026-11-24T10:00:01.000000001Z", "--until", "2026-11-24T10:00:01.02Z"],
    );
    assert_eq!(seqs(&pcap), vec![101]);
    // The same window as pcapng, read by tshark.
    let out = scratch("edges.pcapng");
    ringcap_pull(
        &dir,
        &[
            "--since",
            "2026-11-24T10:00:01Z",
            "--until",
            "2026-11-24T10:00:03Z",
            "--format",
            "pcapng",
            "-w",
            out.to_str().unwrap(),
        ],
    );
    let tshark = Command::new("tshark")
        .args(["-r", out.to_str().unwrap(), "-T", "fields", "-e", "frame.time_epoch"])
        .output_within_deadline();
    let times: Vec<String> = String::from_utf8_lossy(&tshark.stdout).lines().map(str::to_string).collect();
    assert_eq!(times.len(), 200);
    assert_eq!(times[0], "1795514401.000000000");
    // Limits stop a pull and say so.
    let (pcap, stderr) = ringcap_pull(&dir, &["--since", "2026-11-24T10:00:00Z", "--max-packets", "7"]);
    assert_eq!(seqs(&pcap).len(), 7);
    assert!(stderr.contains("limit of 7 packets"), "{stderr}");
}

#[test]
fn bad_pull_arguments_give_clear_errors() {
    let dir = scratch("bad-pull");
    synthetic_ring(&dir, 10, 40_000);
    for (args, message) in [
        (vec!["--last", "10x"], "is not a duration"),
        (vec!["--since", "yesterday"], "is not a time"),
        (vec!["--last", "5m", "--since", "10:00"], "either --last or --since"),
        (vec!["--since", "10:00", "--until", "09:00"], "--until must be after --since"),
        (vec![], "--last DURATION or --since TIME"),
        (vec!["--last", "5m", "hots", "1.2.3.4"], "bad filter expression"),
    ] {
        let out = Command::new(RINGCAP)
            .args(["pull", "--dir", dir.to_str().unwrap()])
            .args(&args)
            .output_within_deadline();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(message), "{args:?}: {stderr}");
    }
    let out = Command::new(RINGCAP)
        .args(["pull", "--dir", "/nonexistent", "--last", "1m"])
        .output_within_deadline();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
}

#[test]
fn damaged_files_are_skipped_with_warnings_and_the_rest_is_delivered() {
    let dir = scratch("damaged");
    synthetic_ring(&dir, 1000, 6_000);
    let files = capture_daemon::retrieve::pull::ring_files(&dir).unwrap();
    let (all, _) = ringcap_pull(&dir, &["--since", "2026-11-24T10:00:00Z"]);
    assert_eq!(seqs(&all).len(), 1000);
    // Corrupt a byte in the middle of the second file, cut the third mid-frame, and
    // garble the fourth one's index.
    let mut second = std::fs::read(&files[1]).unwrap();
    let middle = second.len() / 2;
    second[middle] ^= 0xff;
    std::fs::write(&files[1], second).unwrap();
    let third = std::fs::OpenOptions::new().write(true).open(&files[2]).unwrap();
    let third_len = third.metadata().unwrap().len();
    third.set_len(third_len - 100).unwrap();
    let index = capture_daemon::storage::index::index_path(&files[3]);
    let mut garbled = std::fs::read(&index).unwrap();
    let at = garbled.len() / 2;
    garbled[at] ^= 0x55;
    std::fs::write(&index, garbled).unwrap();

    let (pcap, stderr) = ringcap_pull(&dir, &["--since", "2026-11-24T10:00:00Z"]);
    let got = seqs(&pcap);
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("frame") && stderr.contains("skipped"), "{stderr}");
    assert!(got.len() < 1000 && got.len() > 700, "{} packets delivered: {stderr}", got.len());
    assert!(got.windows(2).all(|w| w[0] < w[1]), "order");
    for packet in read_pcap_bytes(&pcap).unwrap() {
        assert_eq!(packet.data, known_frame(sequence_of(&packet.data).unwrap()));
    }
    // Everything in the untouched files and in the file whose index was garbled is there.
    let intact: Vec<u64> = [&files[0], &files[3], &files[4]]
        .iter()
        .flat_map(|f| {
            let file = capture_daemon::storage::frames::DataFile::open(f).unwrap();
            let (first, last) = file.time_range().unwrap();
            (0..1000).filter(move |&i| {
                let ns = stamp(i).as_nanos() as u64;
                first <= ns && ns <= last
            })
        })
        .collect();
    assert!(intact.iter().all(|s| got.contains(s)), "packets of intact files are missing");
}

#[test]
fn filtered_pulls_agree_with_zstdcat_and_tcpdump_and_see_the_file_being_written() {
    let bed = bed();
    let dir = scratch("live-ring");
    let ring = start_ringcap(&bed, "run", &["--dir", dir.to_str().unwrap(), "-G", "1"]);
    send(&bed, mixed_frames(3000));
    // Two seconds later the packets are in the files being written, complete frames only.
    std::thread::sleep(Duration::from_secs(2));
    let (pcap, stderr) = ringcap_pull(&dir, &["--last", "1m"]);
    assert_eq!(seqs(&pcap), (0..3000).collect::<Vec<_>>(), "{stderr}");
    for expression in ["udp and greater 1000", "udp src port 10003 or udp src port 10005", "less 100"] {
        let (ours, _) = ringcap_pull(&dir, &["--last", "1m", expression]);
        let ours: Vec<_> =
            read_pcap_bytes(&ours).unwrap().into_iter().map(|p| (p.timestamp, p.data)).collect();
        let theirs = tcpdump_over_ring(&dir, expression);
        assert!(!ours.is_empty());
        assert_eq!(ours.len(), theirs.len(), "{expression:?}");
        assert!(ours == theirs, "{expression:?}: different packets");
    }
    ring.signal(libc::SIGINT);
    let (status, stderr) = ring.finish(WAIT);
    assert!(status.success());
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(3000));
    let _ = read_pcap;
}

/// The tcpdump corpus (Ethernet captures), file by file: each file's packets stay
/// together, so hosts and ports cluster in frames as a real link's conversations do.
fn corpus_packets() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/tcpdump-tests");
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let mut packets = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        let Some(format) = capture_daemon::pcap::RecordFormat::from_file_header(&bytes) else { continue };
        for record in format.records(&bytes[capture_daemon::pcap::FILE_HEADER_LEN..]).map_while(Result::ok) {
            packets.push(record.data.to_vec());
        }
    }
    packets
}

/// Writes `packets` (packet i at stamp(i)) into a ring in small frames.
fn corpus_ring(dir: &Path, packets: &[Vec<u8>]) {
    let config = RingConfig {
        rotate_bytes: Some(1 << 20),
        min_free: Some(DiskLimit::Bytes(0)),
        frame_bytes: 8 << 10,
        compress_threads: 1,
        ..RingConfig::single_file(dir, NameTemplate::parse("corpus-%s").unwrap(), Compression::Zstd(1))
    };
    let mut ring = RingWriter::open(config, Arc::new(StorageCounters::default())).unwrap();
    for (n, chunk) in packets.chunks(16).enumerate() {
        let mut batch = Batch::empty(Vec::new());
        for (k, packet) in chunk.iter().enumerate() {
            let i = (n * 16 + k) as u64;
            write_record(&mut batch.records, stamp(i), packet.len() as u32, packet, 262_144).unwrap();
            batch.count(stamp(i).as_nanos() as u64);
        }
        ring.write(&mut batch).unwrap();
    }
    ring.finish().unwrap();
}

/// tcpdump's reading of the whole ring, decompressed, with `expression`.
fn tcpdump_over_ring(dir: &Path, expression: &str) -> Vec<(Duration, Vec<u8>)> {
    let mut merged = Vec::new();
    write_file_header(&mut merged, 262_144).unwrap();
    for file in capture_daemon::retrieve::pull::ring_files(dir).unwrap() {
        let plain = Command::new("zstd").args(["-q", "-dc"]).arg(&file).output_within_deadline();
        merged.extend_from_slice(plain.stdout.get(24..).unwrap_or_default());
    }
    let mut tcpdump = Command::new("tcpdump")
        .args(["--time-stamp-precision=nano", "-n", "-r", "-", "-w", "-", expression])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = tcpdump.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &merged));
    let theirs = tcpdump.wait_with_output().unwrap().stdout;
    writer.join().unwrap().unwrap();
    read_pcap_bytes(&theirs).unwrap().into_iter().map(|p| (p.timestamp, p.data)).collect()
}

/// "N skipped by their summaries" in pull's closing line.
fn skipped(stderr: &str) -> u64 {
    let line = stderr.lines().find(|l| l.contains("skipped by their summaries")).unwrap();
    let before = line.split(" skipped by their summaries").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Rewrites every index of the ring as rings before summaries had them (RCAPIDX1,
/// entries alone).
fn strip_summaries(dir: &Path) {
    use capture_daemon::storage::index::{index_path, read_index, INDEX_MAGIC_V1};
    for file in capture_daemon::retrieve::pull::ring_files(dir).unwrap() {
        let entries = read_index(&index_path(&file)).unwrap();
        let mut old = INDEX_MAGIC_V1.to_vec();
        for (entry, _) in entries {
            old.extend_from_slice(&entry.encode());
        }
        std::fs::write(index_path(&file), old).unwrap();
    }
}

#[test]
fn summaries_skip_frames_that_cannot_match_and_pulls_still_equal_tcpdump() {
    let dir = scratch("summaries");
    let packets = corpus_packets();
    assert!(packets.len() > 1000, "the corpus: {} packets", packets.len());
    corpus_ring(&dir, &packets);
    let window = ["--since", "2026-11-24T09:00:00Z", "--until", "2026-11-25T00:00:00Z"];
    // Decided by the summaries (some frames skipped), and not (all read): both equal tcpdump.
    let decided = [
        "host 192.168.1.1",
        "net 10.0.0.0/8 and udp",
        "port 53",
        "tcp port 80 or 443",
        "ip6 and host fe80::1",
        "vlan",
        "arp or icmp",
        "host 192.168.1.1 and not port 53",
    ];
    let undecided = ["len > 500", "not ip", "ether broadcast", "tcp[13] & 2 != 0"];
    let mut pulled = Vec::new();
    for expression in decided.iter().chain(&undecided) {
        let mut args = window.to_vec();
        args.push(expression);
        let (ours, stderr) = ringcap_pull(&dir, &args);
        let ours: Vec<_> =
            read_pcap_bytes(&ours).unwrap().into_iter().map(|p| (p.timestamp, p.data)).collect();
        let theirs = tcpdump_over_ring(&dir, expression);
        assert_eq!(ours.len(), theirs.len(), "{expression:?}: {stderr}");
        assert!(ours == theirs, "{expression:?}: different packets");
        let skipped = skipped(&stderr);
        if undecided.contains(expression) {
            assert_eq!(skipped, 0, "{expression:?} cannot be decided by a summary");
        }
        pulled.push((expression.to_string(), ours, skipped));
    }
    assert!(
        pulled.iter().filter(|(e, _, skipped)| decided.contains(&e.as_str()) && *skipped > 0).count() >= 5,
        "selective expressions skip frames: {:?}",
        pulled.iter().map(|(e, p, s)| (e, p.len(), s)).collect::<Vec<_>>()
    );

    // The false-positive rate: addresses in no frame, asked of every frame's summary.
    let files: Vec<_> = capture_daemon::retrieve::pull::ring_files(&dir)
        .unwrap()
        .iter()
        .map(|p| capture_daemon::storage::frames::DataFile::open(p).unwrap())
        .collect();
    let summaries: Vec<_> = files.iter().flat_map(|f| f.summaries.iter().flatten()).collect();
    assert!(summaries.len() > 100, "{} frames with summaries", summaries.len());
    let (mut asked, mut false_positives) = (0u64, 0u64);
    for n in 0..200u32 {
        let absent = [203, 0, (n >> 8) as u8, n as u8]; // TEST-NET-3, in no capture
        for summary in &summaries {
            asked += 1;
            false_positives +=
                u64::from(summary.may_contain(capture_daemon::storage::summary::KeyKind::Ipv4, &absent));
        }
    }
    let rate = false_positives as f64 / asked as f64;
    assert!(rate < 0.01, "false-positive rate {rate} ({false_positives} of {asked}), documented under 1%");

    // A ring from before summaries pulls the same packets, reading every frame.
    strip_summaries(&dir);
    for (expression, before, _) in &pulled {
        let mut args = window.to_vec();
        args.push(expression);
        let (ours, stderr) = ringcap_pull(&dir, &args);
        let ours: Vec<_> =
            read_pcap_bytes(&ours).unwrap().into_iter().map(|p| (p.timestamp, p.data)).collect();
        assert!(&ours == before, "{expression:?} without summaries");
        assert_eq!(skipped(&stderr), 0);
    }
}

#[test]
fn with_stats_counts_exactly_the_window_not_the_whole_file() {
    let bed = bed();
    let dir = scratch("window-stats");
    let ring =
        start_ringcap(&bed, "run", &["--dir", dir.to_str().unwrap(), "-G", "0", "--frame-interval", "0.2"]);
    // Before the window: 500 packets, then quiet until their counters are stored.
    send(&bed, mixed_frames(500));
    std::thread::sleep(Duration::from_millis(2500));
    let since = capture_daemon::retrieve::window::now().as_nanos() as u64;
    std::thread::sleep(Duration::from_millis(300));
    // In it: 300 more, in the same file.
    send(&bed, (500..800).map(known_frame).collect());
    std::thread::sleep(Duration::from_millis(2500));
    let pulled = scratch("window-stats.pcap");
    let since = capture_daemon::timefmt::rfc3339(since);
    let out = Command::new(RINGCAP)
        .args([
            "pull",
            "--dir",
            dir.to_str().unwrap(),
            "--since",
            &since,
            "--with-stats",
            "-w",
            pulled.to_str().unwrap(),
        ])
        .output_within_deadline();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(seqs(&std::fs::read(&pulled).unwrap()), (500..800).collect::<Vec<_>>());
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.stats.json", pulled.display())).unwrap()).unwrap();
    assert_eq!(stats["counters"]["seen"], 300, "the window's packets only: {stats}");
    assert_eq!(stats["counters"]["captured"], 300, "{stats}");
    ring.signal(libc::SIGINT);
    assert!(ring.finish(WAIT).0.success());
}

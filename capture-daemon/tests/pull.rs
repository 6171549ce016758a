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
    bed, known_frame, mixed_frames, scratch, send, seqs, stamp, start_ringcap, synthetic_ring, wait_until,
    RINGCAP, WAIT,
};
use ringcap_tools::frames::sequence_of;
use ringcap_tools::harness::{read_pcap_bytes, summary_count};

fn ringcap_pull(dir: &Path, args: &[&str]) -> (Vec<u8>, String) {
    Command::new(RINGCAP).args(["pull", "--dir", dir.to_str().unwrap()]).args(args).succeed()
}

#[test]
fn window_edges_are_inclusive_at_since_exclusive_at_until_across_rotations() {
    let dir = scratch("edges");
    synthetic_ring(&dir, 1000, 6_000);
    let files = capture_daemon::storage::manifest::ring_files(&dir).unwrap();
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
    // --max-bytes counts decoded frames: the pull ends with the frame that reaches it,
    // delivering exactly the packets of the frames read up to there.
    let frames: Vec<_> = capture_daemon::storage::manifest::ring_files(&dir)
        .unwrap()
        .iter()
        .flat_map(|f| capture_daemon::storage::frames::DataFile::open(f).unwrap().frames)
        .filter(|frame| frame.packets > 0)
        .collect();
    let (mut bytes, mut packets) = (0u64, 0u64);
    for frame in &frames {
        if bytes >= 40_000 {
            break;
        }
        bytes += u64::from(frame.raw_len);
        packets += u64::from(frame.packets);
    }
    let (pcap, stderr) = ringcap_pull(&dir, &["--since", "2026-11-24T10:00:00Z", "--max-bytes", "40000"]);
    assert_eq!(seqs(&pcap), (0..packets).collect::<Vec<_>>(), "{stderr}");
    assert!(stderr.contains("limit of 40000 bytes read"), "{stderr}");
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

/// The numbers of pull's closing line, in order: packets, files, frames read, frames skipped
/// by their summaries, damaged frames, damaged bytes, unreadable files.
fn pull_counts(stderr: &str) -> [u64; 7] {
    let line = stderr.lines().find(|l| l.starts_with("ringcap: pulled ")).expect("a closing line");
    let numbers: Vec<u64> = line.split([' ', '(']).filter_map(|word| word.parse().ok()).collect();
    numbers.try_into().unwrap_or_else(|n| panic!("seven counts in {line:?}: {n:?}"))
}

/// The sequence numbers of the synthetic packets `frame` holds (packet i is stamped `stamp(i)`).
fn frame_seqs(frame: &capture_daemon::storage::index::FrameEntry, count: u64) -> Vec<u64> {
    (0..count)
        .filter(|&i| (frame.earliest_ns..=frame.latest_ns).contains(&(stamp(i).as_nanos() as u64)))
        .collect()
}

/// Three kinds of damage, each costing exactly what it touched: a byte flipped in a frame
/// loses that frame, a file cut mid-frame loses its last frame (the cut frame's bytes counted),
/// a garbled index costs nothing (the file is scanned past it). Every other packet is
/// delivered, and the closing line counts each loss.
#[test]
fn damaged_files_are_skipped_with_warnings_and_the_rest_is_delivered() {
    let dir = scratch("damaged");
    synthetic_ring(&dir, 1000, 6_000);
    let files = capture_daemon::storage::manifest::ring_files(&dir).unwrap();
    assert!(files.len() >= 5, "{} files", files.len());
    let (all, _) = ringcap_pull(&dir, &["--since", "2026-11-24T10:00:00Z"]);
    assert_eq!(seqs(&all), (0..1000).collect::<Vec<_>>());
    let frames_of = |path: &Path| capture_daemon::storage::frames::DataFile::open(path).unwrap().frames;
    // A byte in the middle of the second file: the frame holding it is lost.
    let mut second = std::fs::read(&files[1]).unwrap();
    let middle = second.len() / 2;
    let hit = frames_of(&files[1])
        .into_iter()
        .find(|f| (f.offset..f.offset + f.len).contains(&(middle as u64)))
        .expect("a frame holds the middle byte");
    second[middle] ^= 0xff;
    std::fs::write(&files[1], second).unwrap();
    // The third file cut 100 bytes short: its last frame is lost.
    let cut = frames_of(&files[2]).pop().unwrap();
    assert!(cut.len > 100);
    let third = std::fs::OpenOptions::new().write(true).open(&files[2]).unwrap();
    third.set_len(cut.offset + cut.len - 100).unwrap();
    // The fourth file's index garbled: nothing is lost.
    let index = capture_daemon::storage::index::index_path(&files[3]);
    let mut garbled = std::fs::read(&index).unwrap();
    let at = garbled.len() / 2;
    garbled[at] ^= 0x55;
    std::fs::write(&index, garbled).unwrap();

    let (pcap, stderr) = ringcap_pull(&dir, &["--since", "2026-11-24T10:00:00Z"]);
    let lost: Vec<u64> = [frame_seqs(&hit, 1000), frame_seqs(&cut, 1000)].concat();
    let expected: Vec<u64> = (0..1000).filter(|i| !lost.contains(i)).collect();
    assert!(!frame_seqs(&hit, 1000).is_empty() && !frame_seqs(&cut, 1000).is_empty());
    assert_eq!(seqs(&pcap), expected, "{stderr}");
    for packet in read_pcap_bytes(&pcap).unwrap() {
        assert_eq!(packet.data, known_frame(sequence_of(&packet.data).unwrap()));
    }
    let [packets, _files, _read, _skipped, damaged_frames, damaged_bytes, unreadable] = pull_counts(&stderr);
    assert_eq!(packets, expected.len() as u64, "{stderr}");
    assert_eq!(damaged_frames, 1, "the flipped byte's frame: {stderr}");
    assert_eq!(damaged_bytes, cut.len - 100, "what is left of the cut frame: {stderr}");
    assert_eq!(unreadable, 0, "{stderr}");
    let name = |n: usize| files[n].file_name().unwrap().to_string_lossy().into_owned();
    let warned =
        |n: usize| stderr.lines().any(|l| l.starts_with("ringcap: warning: ") && l.contains(&name(n)));
    assert!(warned(1) && warned(2), "a warning names each file that lost packets: {stderr}");
    // A garbled index entry ends the index there, as a torn one of the file being written
    // does: the file is scanned from it on, silently, since nothing is lost.
    assert!(!warned(0) && !warned(3) && !warned(4), "and no other: {stderr}");
}

/// The newest file without its header yet is one rotation is starting (created, the header
/// not written): a pull skips it silently, as it holds no packet. Any other file without a
/// readable header is damage: skipped, counted and named. (A pull that opened a file in
/// that instant counted it unreadable, one run in a few of the fast-rotation test.)
#[test]
fn a_file_being_started_is_no_damage_but_an_older_empty_one_is() {
    let dir = scratch("starting");
    synthetic_ring(&dir, 1000, 6_000);
    let files = capture_daemon::storage::manifest::ring_files(&dir).unwrap();
    let frames_of = |path: &Path| capture_daemon::storage::frames::DataFile::open(path).unwrap().frames;
    let newest = files.last().unwrap();
    let lost: Vec<u64> = frames_of(newest).iter().flat_map(|f| frame_seqs(f, 1000)).collect();
    std::fs::OpenOptions::new().write(true).open(newest).unwrap().set_len(0).unwrap();
    let (pcap, stderr) = ringcap_pull(&dir, &["--since", "2026-11-24T10:00:00Z"]);
    let expected: Vec<u64> = (0..1000).filter(|i| !lost.contains(i)).collect();
    assert_eq!(seqs(&pcap), expected, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(pull_counts(&stderr)[6], 0, "{stderr}");
    // The oldest file emptied the same way is damage.
    let oldest = &files[0];
    std::fs::OpenOptions::new().write(true).open(oldest).unwrap().set_len(0).unwrap();
    let (_, stderr) = ringcap_pull(&dir, &["--since", "2026-11-24T10:00:00Z"]);
    assert_eq!(pull_counts(&stderr)[6], 1, "{stderr}");
    let name = oldest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(stderr.lines().any(|l| l.contains("warning") && l.contains(&name)), "{stderr}");
}

/// Pulls of the file still being written (one file, `-G 0`, the daemon running) give the
/// packets so far, and filtered ones the same packets as zstdcat | tcpdump over the ring.
#[test]
fn filtered_pulls_agree_with_zstdcat_and_tcpdump_and_see_the_file_being_written() {
    let bed = bed();
    let dir = scratch("live-ring");
    let mut ring =
        start_ringcap(&bed, "run", &["--dir", dir.to_str().unwrap(), "-G", "0", "--frame-interval", "0.1"]);
    send(&bed, mixed_frames(3000));
    wait_until("the 3000 packets are stored", WAIT, || {
        seqs(&ringcap_pull(&dir, &["--last", "1m"]).0).len() >= 3000
    });
    let (pcap, stderr) = ringcap_pull(&dir, &["--last", "1m"]);
    assert_eq!(seqs(&pcap), (0..3000).collect::<Vec<_>>(), "{stderr}");
    let files = capture_daemon::storage::manifest::ring_files(&dir).unwrap();
    assert_eq!(files.len(), 1, "one file, still being written: {files:?}");
    for expression in ["udp and greater 1000", "udp src port 10003 or udp src port 10005", "less 100"] {
        let (ours, _) = ringcap_pull(&dir, &["--last", "1m", expression]);
        let ours: Vec<_> =
            read_pcap_bytes(&ours).unwrap().into_iter().map(|p| (p.timestamp, p.data)).collect();
        let theirs = tcpdump_over_ring(&dir, expression);
        assert!(!ours.is_empty());
        assert_eq!(ours.len(), theirs.len(), "{expression:?}");
        assert!(ours == theirs, "{expression:?}: different packets");
    }
    assert!(ring.child.try_wait().unwrap().is_none(), "the daemon was still writing the file");
    ring.signal(libc::SIGINT);
    let (status, stderr) = ring.finish(WAIT);
    assert!(status.success());
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(3000));
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
    for file in capture_daemon::storage::manifest::ring_files(dir).unwrap() {
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

/// Rewrites every index of the ring as rings before summaries had them (RCAPIDX1,
/// entries alone).
fn strip_summaries(dir: &Path) {
    use capture_daemon::storage::index::{index_path, read_index, INDEX_MAGIC_V1};
    for file in capture_daemon::storage::manifest::ring_files(dir).unwrap() {
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
        let skipped = pull_counts(&stderr)[3];
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
    let files: Vec<_> = capture_daemon::storage::manifest::ring_files(&dir)
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
        assert_eq!(pull_counts(&stderr)[3], 0);
    }
}

/// Waits until a statistics snapshot stored beside the ring's files counts `seen` packets.
fn wait_snapshot_seeing(dir: &Path, seen: u64) {
    wait_until(&format!("a snapshot counts {seen} packets"), WAIT, || {
        capture_daemon::storage::manifest::ring_files(dir).unwrap().iter().any(|data| {
            let path = capture_daemon::storage::index::snapshots_path(data);
            std::fs::read_to_string(path).unwrap_or_default().lines().any(|line| {
                serde_json::from_str::<serde_json::Value>(line).is_ok_and(|s| s["kernel"]["seen"] == seen)
            })
        })
    });
}

#[test]
fn with_stats_counts_exactly_the_window_not_the_whole_file() {
    let bed = bed();
    let dir = scratch("window-stats");
    let ring =
        start_ringcap(&bed, "run", &["--dir", dir.to_str().unwrap(), "-G", "0", "--frame-interval", "0.2"]);
    // Before the window: 500 packets, then quiet until their counters are stored.
    send(&bed, mixed_frames(500));
    wait_snapshot_seeing(&dir, 500);
    let since = capture_daemon::timefmt::unix_now_ns();
    std::thread::sleep(Duration::from_millis(300));
    // In it: 300 more, in the same file.
    send(&bed, (500..800).map(known_frame).collect());
    wait_snapshot_seeing(&dir, 800);
    let pulled = scratch("window-stats.pcap");
    let since = capture_daemon::timefmt::rfc3339(since);
    Command::new(RINGCAP)
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
        .succeed();
    assert_eq!(seqs(&std::fs::read(&pulled).unwrap()), (500..800).collect::<Vec<_>>());
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.stats.json", pulled.display())).unwrap()).unwrap();
    assert_eq!(stats["counters"]["seen"], 300, "the window's packets only: {stats}");
    assert_eq!(stats["counters"]["captured"], 300, "{stats}");
    ring.signal(libc::SIGINT);
    assert!(ring.finish(WAIT).0.success());
}

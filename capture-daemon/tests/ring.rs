//! Kernel tests of `ringcap run`: the rotated, compressed, crash-safe pcap ring, read back
//! by ringcap's own reader and by zstd, tcpdump and tshark.
mod common;

use common::OutputWithin;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capture_daemon::storage::frames::DataFile;
use capture_daemon::storage::is_data_file;
use common::{
    bed, known_frame, mixed_frames, scratch, send, send_paced, start_ringcap, stop, tree_bytes, wait_until,
    FaultyFs, RINGCAP, WAIT,
};
use ringcap_tools::frames::sequence_of;
use ringcap_tools::generator::{transmit, Plan};
use ringcap_tools::harness::{read_pcap_bytes, summary_count, CaptureProcess, ReadPacket};
use ringcap_tools::testbed::{TestBed, RX_IF, TX_IF};

/// The ring's data files in creation order.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_data_file))
        .collect();
    files.sort();
    files
}

/// Every packet of the complete frames of a file, read with ringcap's reader.
fn read_frames(path: &Path) -> (DataFile, Vec<ReadPacket>) {
    let file = DataFile::open(path).unwrap();
    let mut packets = Vec::new();
    for i in 0..file.frames.len() {
        let content = file.content(i).unwrap();
        for record in file.format.records(file.records_of(i, &content)) {
            let record = record.expect("complete frames hold whole records");
            packets.push(ReadPacket {
                timestamp: record.timestamp,
                orig_len: record.orig_len,
                data: record.data.to_vec(),
            });
        }
    }
    (file, packets)
}

/// Each packet is a known frame, byte-exact, and their numbers only grow (gaps allowed);
/// returns the last one.
fn assert_known_and_increasing(packets: &[ReadPacket]) -> Option<u64> {
    let mut last = None;
    for packet in packets {
        let seq = sequence_of(&packet.data).unwrap();
        assert_eq!(packet.data, known_frame(seq), "bytes of packet {seq}");
        assert!(last.is_none_or(|l| seq > l), "packet {seq} after {last:?}");
        last = Some(seq);
    }
    last
}

/// Every packet of these files, in order.
fn packets_of(files: &[PathBuf]) -> Vec<ReadPacket> {
    files.iter().flat_map(|f| read_frames(f).1).collect()
}

/// Decompresses `files` with zstd's own tool, has tcpdump read each one and tshark all of
/// them at once (merged by mergecap, which reads each with Wireshark's own library): any
/// warning fails. Returns the pcap bytes of each file.
fn check_with_tools(files: &[PathBuf]) -> Vec<Vec<u8>> {
    let plains: Vec<PathBuf> = files
        .iter()
        .map(|path| {
            if path.extension().is_none_or(|e| e != "zst") {
                return path.clone();
            }
            let out = Command::new("zstd").args(["-q", "-dc"]).arg(path).output_within_deadline();
            assert!(
                out.status.success(),
                "zstd -dc {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let copy = path.with_extension("check");
            std::fs::write(&copy, &out.stdout).unwrap();
            copy
        })
        .collect();
    let quiet = |tool: &str, out: std::process::Output, what: &Path| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let warnings: Vec<_> = stderr
            .lines()
            .filter(|l| !l.starts_with("reading from file") && !l.contains("Running as user \"root\""))
            .collect();
        assert!(out.status.success() && warnings.is_empty(), "{tool} on {}: {warnings:?}", what.display());
    };
    for plain in &plains {
        quiet(
            "tcpdump",
            Command::new("tcpdump").args(["-nn", "-r"]).arg(plain).output_within_deadline(),
            plain,
        );
    }
    if let Some(first) = files.first() {
        // Beside the test's other scratch files: the ring may be on a small filesystem.
        let merged = scratch("merged.pcapng");
        quiet(
            "mergecap",
            Command::new("mergecap").arg("-w").arg(&merged).args(&plains).output_within_deadline(),
            first,
        );
        quiet(
            "tshark",
            Command::new("tshark").args(["-n", "-r"]).arg(&merged).output_within_deadline(),
            &merged,
        );
        std::fs::remove_file(merged).unwrap();
    }
    plains
        .into_iter()
        .zip(files)
        .map(|(plain, path)| {
            let bytes = std::fs::read(&plain).unwrap();
            if plain != *path {
                std::fs::remove_file(plain).unwrap();
            }
            bytes
        })
        .collect()
}

/// Starts `ringcap run --dir DIR ARGS` (ARGS separated by spaces).
fn start_run(bed: &TestBed, dir: &Path, args: &str) -> CaptureProcess {
    let mut all = vec!["--dir", dir.to_str().unwrap()];
    all.extend(args.split_whitespace());
    start_ringcap(bed, "run", &all)
}

/// Sends `frames` and stops the daemon cleanly.
fn send_and_stop(bed: &TestBed, ring: CaptureProcess, frames: Vec<Vec<u8>>) -> Vec<String> {
    send(bed, frames);
    stop(ring)
}

/// Packets are exactly `expected` sequence numbers, in order, byte-exact, timestamps ascending.
fn assert_exact(packets: &[ReadPacket], expected: impl IntoIterator<Item = u64>) {
    let expected: Vec<u64> = expected.into_iter().collect();
    let seqs: Vec<u64> = packets.iter().map(|p| sequence_of(&p.data).unwrap()).collect();
    assert_eq!(seqs.len(), expected.len(), "packet count");
    assert_eq!(seqs, expected, "sequence numbers (duplicates, gaps or order)");
    for packet in packets {
        let seq = sequence_of(&packet.data).unwrap();
        assert_eq!(packet.data, known_frame(seq), "bytes of packet {seq}");
        assert_eq!(packet.orig_len as usize, packet.data.len());
    }
    assert!(packets.windows(2).all(|w| w[0].timestamp <= w[1].timestamp), "timestamps not ascending");
}

#[test]
fn time_rotation_splits_every_packet_exactly_once_across_files() {
    let bed = bed();
    let dir = scratch("rotation");
    let ring = start_run(&bed, &dir, "-G 1 --name ring-%s");
    send_paced(&bed, mixed_frames(3000), Some(1000.0));
    let stderr = stop(ring);
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(3000), "{stderr:?}");
    // The only packets allowed outside their second's file are those the reader counted.
    let out_of_order = summary_count(&stderr, "packets written out of time order").unwrap_or(0);
    let files = data_files(&dir);
    assert!(files.len() >= 3, "{} files for 3 s at -G 1", files.len());
    let mut all = Vec::new();
    let mut outside_their_second = 0u64;
    for (file, plain) in files.iter().zip(check_with_tools(&files)) {
        let (data, packets) = read_frames(file);
        // ring-SECOND.pcap.zst, or ring-SECOND_NNN... for a file started in the same second.
        let name = file.file_name().unwrap().to_str().unwrap();
        let second: u64 = name["ring-".len()..].split(['.', '_']).next().unwrap().parse().unwrap();
        outside_their_second += packets.iter().filter(|p| p.timestamp.as_secs() != second).count() as u64;
        assert_eq!(data.damaged_tail, 0);
        assert_eq!(data.recovered_frames, 0, "every frame is indexed after a clean stop");
        assert_eq!(read_pcap_bytes(&plain).unwrap(), packets, "zstd+pcap and ringcap's reader agree");
        all.extend(packets);
    }
    assert_exact(&all, 0..3000);
    assert!(
        outside_their_second <= out_of_order,
        "{outside_their_second} packets outside their second's file"
    );
}

#[test]
fn size_rotation_and_file_count_limit_keep_the_newest_packets() {
    let bed = bed();
    let dir = scratch("count-limit");
    let ring = start_run(&bed, &dir, "-G 0 -C 0.1 -W 3 --no-compress --frame-bytes 20000");
    let stderr = send_and_stop(&bed, ring, mixed_frames(3000));
    let files = data_files(&dir);
    assert_eq!(files.len(), 3, "-W 3");
    let idx = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "idx"))
        .count();
    assert_eq!(idx, 3, "index files go with their data files");
    check_with_tools(&files);
    let mut kept = Vec::new();
    for file in &files {
        assert!(std::fs::metadata(file).unwrap().len() < 100_000 + 20_000 + 16 + 1514, "-C 0.1 holds");
        kept.extend(read_frames(file).1);
    }
    let first = sequence_of(&kept[0].data).unwrap();
    assert_exact(&kept, first..3000);
    assert!(summary_count(&stderr, "removed by -W/--max-disk").unwrap() > 0, "{stderr:?}");
}

#[test]
fn max_disk_keeps_the_ring_under_its_budget() {
    let bed = bed();
    let dir = scratch("budget");
    let ring = start_run(&bed, &dir, "--no-compress --frame-bytes 65536 --max-disk 1M");
    send_and_stop(&bed, ring, mixed_frames(6000));
    let total: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(total <= 1 << 20, "ring holds {total} bytes over a 1 MiB budget");
    let files = data_files(&dir);
    assert!(files.len() >= 3);
    let kept = packets_of(&files);
    let first = sequence_of(&kept[0].data).unwrap();
    assert_exact(&kept, first..6000);
}

#[test]
fn quiet_link_still_rotates_and_recent_packets_are_readable_while_writing() {
    let bed = bed();
    let dir = scratch("quiet");
    let mut ring = start_run(&bed, &dir, "-G 1");
    std::thread::sleep(Duration::from_millis(2600));
    let quiet_files = data_files(&dir);
    assert!(quiet_files.len() >= 3, "{} files after 2.6 quiet seconds at -G 1", quiet_files.len());
    for plain in check_with_tools(&quiet_files) {
        assert!(read_pcap_bytes(&plain).unwrap().is_empty());
    }
    send(&bed, mixed_frames(10));
    // Readable while the daemon writes on (the file still being written is pull's test).
    wait_until("the 10 packets are stored", WAIT, || packets_of(&data_files(&dir)).len() >= 10);
    assert_exact(&packets_of(&data_files(&dir)), 0..10);
    assert!(ring.child.try_wait().unwrap().is_none(), "the daemon still runs");
    check_with_tools(&data_files(&dir));
    stop(ring);
}

#[test]
fn sighup_rotates_now_and_a_restart_adopts_the_ring() {
    let bed = bed();
    let dir = scratch("hup");
    // Two lives of the daemon, each writing two files (the second one started by SIGHUP).
    for life in 0..2u64 {
        let ring = start_run(&bed, &dir, "-G 0 -W 4");
        send(&bed, (life * 200..life * 200 + 100).map(known_frame).collect());
        std::thread::sleep(Duration::from_millis(300));
        ring.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(300));
        send_and_stop(&bed, ring, (life * 200 + 100..life * 200 + 200).map(known_frame).collect());
        let files = data_files(&dir);
        assert_eq!(files.len() as u64, 2 * (life + 1), "SIGHUP started a new file");
        let start = life * 200;
        assert_exact(&read_frames(&files[files.len() - 2]).1, start..start + 100);
        assert_exact(&read_frames(&files[files.len() - 1]).1, start + 100..start + 200);
    }
    let files = data_files(&dir);
    assert_eq!(files.len(), 4, "-W 4 counts the adopted files");
    let kept = packets_of(&files);
    assert_exact(&kept, 0..400);
}

#[test]
fn kill_9_under_load_loses_at_most_the_frame_being_written() {
    let bed = bed();
    let dir = scratch("crash");
    // A sender that keeps numbering frames across all the daemon's lives.
    let running = Arc::new(AtomicBool::new(true));
    let next_seq = Arc::new(AtomicU64::new(0));
    let sender = {
        let (running, next_seq) = (Arc::clone(&running), Arc::clone(&next_seq));
        TestBed::in_namespace(&bed.tx_ns, move || {
            let ifindex = capture_daemon::kernel::interface_index(TX_IF).unwrap();
            while running.load(Ordering::Relaxed) {
                let first = next_seq.load(Ordering::Relaxed);
                let frames: Vec<_> = (first..first + 200).map(known_frame).collect();
                transmit(ifindex, &Plan { frames, count: 200, chunk: 1, rate: Some(20_000.0), until: None })
                    .unwrap();
                next_seq.store(first + 200, Ordering::Relaxed);
            }
        })
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    const KILLS: usize = 20;
    for _ in 0..KILLS {
        let ring = start_run(&bed, &dir, "-G 1 --frame-bytes 32768 --frame-interval 0.2");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 600));
        ring.signal(libc::SIGKILL);
        let (status, _) = ring.finish(WAIT);
        assert!(!status.success());
    }
    running.store(false, Ordering::Relaxed);
    sender.join().unwrap().unwrap();

    let files = data_files(&dir);
    let newest = files.last().cloned().unwrap();
    // Older files were repaired when the next run adopted the ring.
    let older = &files[..files.len() - 1];
    let mut all = Vec::new();
    for file in &files {
        if *file == newest && DataFile::open(file).is_err() {
            // The last kill came between creating a file and writing its header: it holds
            // nothing (the next start would remove it).
            assert!(std::fs::metadata(file).unwrap().len() < 1024, "{} is damaged", file.display());
            continue;
        }
        let (data, packets) = read_frames(file);
        if *file != newest {
            assert_eq!(data.damaged_tail, 0, "{} has a torn tail", file.display());
        }
        all.extend(packets);
    }
    for (file, plain) in older.iter().zip(check_with_tools(older)) {
        assert_eq!(read_pcap_bytes(&plain).unwrap(), read_frames(file).1);
    }
    // Packets captured between kills are whole, byte-exact, unique and in order; the ones
    // sent while no daemon ran, or still unflushed at a kill, are simply absent.
    assert!(all.len() > 1000, "only {} packets survived", all.len());
    let mut last = None;
    let mut gaps = 0;
    for packet in &all {
        let seq = sequence_of(&packet.data).unwrap();
        assert_eq!(packet.data, known_frame(seq), "bytes of packet {seq}");
        assert!(last.is_none_or(|l| seq > l), "packet {seq} after {last:?}");
        gaps += usize::from(last.is_some_and(|l| seq > l + 1));
        last = Some(seq);
    }
    // Within a life the packets are contiguous: a gap only where a kill came (its
    // unflushed frame and the restart), so at most one per kill.
    assert!(gaps <= KILLS, "{gaps} gaps in the sequence for {KILLS} kills");
}

/// A tmpfs mounted on `dir` with these options, unmounted when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &Path, options: &str) -> Unmount {
    std::fs::create_dir_all(dir).unwrap();
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(dir).status().unwrap();
    assert!(mounted.success());
    Unmount(dir.to_path_buf())
}

#[test]
fn a_full_disk_removes_the_oldest_files_and_capture_goes_on() {
    let bed = bed();
    let dir = scratch("full");
    let _unmount = mount_tmpfs(&dir, "size=3m");
    // A user's file on the same filesystem: it takes space, and it is never removed for it.
    let evidence = dir.join("evidence.pcap");
    std::fs::write(&evidence, vec![0xa5u8; 500_000]).unwrap();
    let ring = start_run(&bed, &dir, "-G 0 -C 0.5 --no-compress --min-free 0 --frame-bytes 65536");
    let stderr = send_and_stop(&bed, ring, mixed_frames(12_000));
    assert_eq!(std::fs::read(&evidence).unwrap(), vec![0xa5u8; 500_000], "the user's file was touched");
    let disk_full = stderr.iter().find(|l| l.contains("disk-full events")).unwrap();
    assert!(!disk_full.starts_with("0 "), "the disk never filled: {stderr:?}");
    assert!(summary_count(&stderr, "removed for free space").unwrap() > 0, "{stderr:?}");
    let written = summary_count(&stderr, "packets written to the ring").unwrap();
    let lost = summary_count(&stderr, "packets lost to write errors").unwrap();
    assert_eq!(written + lost, 12_000, "every packet is written or counted as lost");
    let files = own_files(&dir);
    check_with_tools(&files);
    let kept: Vec<_> = files
        .iter()
        .flat_map(|f| {
            let (data, packets) = read_frames(f);
            assert_eq!(data.damaged_tail, 0, "{} ends in a partial frame", f.display());
            packets
        })
        .collect();
    assert!(!kept.is_empty());
    let last = assert_known_and_increasing(&kept);
    assert_eq!(last, Some(11_999), "the newest packets are kept");
}

/// `--min-free` keeps that much of the filesystem free (the file being written can eat
/// into it until the next rotation: at most -C and a frame), and `--max-disk` as a
/// percentage is of the filesystem's size; both by removing the oldest files, keeping
/// the newest packets.
#[test]
fn min_free_and_a_percentage_of_max_disk_hold_on_a_small_filesystem() {
    let bed = bed();
    for (limit, holds) in [("--min-free 4M", "free"), ("--max-disk 25%", "ring")] {
        let dir = scratch("small-fs");
        let _unmount = mount_tmpfs(&dir, "size=8m");
        let args = format!("-G 0 -C 0.5 --no-compress --frame-bytes 65536 {limit}");
        let ring = start_run(&bed, &dir, &args);
        let stderr = send_and_stop(&bed, ring, mixed_frames(15_000));
        let space = capture_daemon::storage::budget::fs_space(&dir).unwrap();
        let slack = 500_000 + 65_536 + 16_384;
        match holds {
            "free" => {
                assert!(
                    space.available + slack >= 4 << 20,
                    "{} bytes free under --min-free 4M",
                    space.available
                );
                assert!(summary_count(&stderr, "removed for free space").unwrap() > 0, "{stderr:?}");
            }
            _ => {
                let ring_bytes = tree_bytes(&dir);
                assert!(ring_bytes <= space.total / 4, "{ring_bytes} bytes over 25% of {}", space.total);
                assert!(summary_count(&stderr, "removed by -W/--max-disk").unwrap() > 0, "{stderr:?}");
            }
        }
        assert_eq!(
            summary_count(&stderr, "packets written to the ring"),
            Some(15_000),
            "{limit}: {stderr:?}"
        );
        let kept = packets_of(&data_files(&dir));
        let first = sequence_of(&kept[0].data).unwrap();
        assert!(first > 0, "{limit}: old files were removed");
        assert_exact(&kept, first..15_000);
    }
}

/// `ringcap run -i RX_IF ARGS` in `bed` fails, saying `message`.
fn expect_failure(bed: &TestBed, args: &[&str], message: &str) {
    common::expect_failure(bed.rx(RINGCAP).args(["run", "-i", RX_IF]).args(args), message);
}

#[test]
fn bad_ring_settings_give_clear_errors() {
    let bed = bed();
    let dir = scratch("bad");
    let d = dir.to_str().unwrap();
    // An API address that cannot be bound refuses the start before the ring is made (before,
    // the directory and its pins were made first), saying the system's reason once.
    let token = common::token_file("t0ken");
    let args = ["run", "-i", RX_IF, "--dir", d, "--http", "10.255.0.1:9", "--http-token-file"];
    let refused = bed.rx(RINGCAP).args(args).arg(&token).output_within_deadline();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("cannot listen on 10.255.0.1:9"), "{stderr}");
    assert_eq!(stderr.matches("os error").count(), 1, "{stderr}");
    assert!(!dir.exists(), "nothing was made");
    // A symlink or a file where the ring should be: refused, saying which. (Before: a
    // symlink was refused for its pins' directory, a file with the system's error twice.)
    let target = scratch("bad-target");
    std::fs::create_dir_all(&target).unwrap();
    let link = scratch("bad-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    expect_failure(&bed, &["--dir", link.to_str().unwrap()], "is a symbolic link");
    let file = scratch("bad-file");
    std::fs::write(&file, b"evidence").unwrap();
    expect_failure(&bed, &["--dir", file.to_str().unwrap()], "is not a directory");
    assert_eq!(std::fs::read(&file).unwrap(), b"evidence");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "nothing made behind the link");
    expect_failure(&bed, &["--dir", "/proc/ringcap"], "cannot use /proc/ringcap for the capture ring");
    expect_failure(&bed, &["--dir", d, "--name", "a/%Y"], "without '/'");
    expect_failure(&bed, &["--dir", d, "--name", "x%Q"], "%Q is not supported");
    expect_failure(&bed, &["--dir", d, "-W", "0"], "-W 0 would keep no files");
    expect_failure(&bed, &["--dir", d, "-C", "0"], "out of range");
    expect_failure(&bed, &["--dir", d, "-C", "1e12"], "out of range");
    expect_failure(&bed, &["--dir", d, "--max-disk", "150%"], "not a percentage");
    expect_failure(&bed, &["--dir", d, "--max-disk", "10K"], "too small");
    expect_failure(&bed, &["--dir", d, "--zstd-level", "30"], "30");
    expect_failure(&bed, &["--dir", d, "--frame-interval", "0"], "--frame-interval 0 is out of range");
    expect_failure(&bed, &["--dir", d, "-G", "99999999"], "99999999");
    // (--max-disk 10K needs the filesystem's size: the directory is made to read it.)
    let _ = std::fs::remove_dir_all(&dir);
    expect_failure(&bed, &["--dir", d, "--name", "x%Q"], "%Q is not supported");
    // Options refused after the ring was made used to leave DIR and DIR/pins behind.
    expect_failure(&bed, &["--dir", d, "--syn-timeout", "0"], "--syn-timeout 0 is not a positive number");
    expect_failure(&bed, &["--dir", d, "--http", "127.0.0.1:0", "--http-max-window", "x"], "not a duration");
    expect_failure(&bed, &["--dir", d, "--http", "127.0.0.1:0"], "needs a bearer token");
    expect_failure(&bed, &["--dir", d, "--http", "0.0.0.0:0", "--http-no-auth"], "0.0.0.0:0");
    expect_failure(&bed, &["--dir", d, "--max-disk", "1"], "too small");
    expect_failure(
        &bed,
        &["--dir", d, "--archive", "s3://bucket/p", "--archive-credentials", "/nonexistent"],
        "/nonexistent",
    );
    expect_failure(&bed, &["--dir", d, "--archive", "ftp://x"], "s3://");
    assert!(!dir.exists(), "a refused start created {d}");
    // A config file: only run's own options, and values that look like options stay values.
    let config = scratch("bad.toml");
    let c = config.to_str().unwrap();
    for (text, message) in [
        ("help = true\n", "unknown key \"help\""),
        ("\"dir=/x\" = true\n", "unknown key \"dir=/x\""),
        ("\"\" = 1\n", "unknown key \"\""),
        ("max_disk = \"-5\"\n", "in the options of"),
        ("max_disk = \"-5\"\n", "invalid value '-5' for '--max-disk"),
    ] {
        std::fs::write(&config, format!("dir = \"{d}\"\n{text}")).unwrap();
        expect_failure(&bed, &["--config", c], message);
        assert!(!dir.exists(), "{text}: a refused start created {d}");
    }
    // A config that is no file is refused at once, never read forever.
    std::fs::remove_file(&config).unwrap();
    common::mkfifo(&config);
    expect_failure(&bed, &["--config", c], "not a regular file");
    expect_failure(&bed, &["--config", "/dev/zero"], "not a regular file");
}

#[test]
fn a_toml_config_file_sets_the_ring_and_the_command_line_overrides_it() {
    let bed = bed();
    let dir = scratch("config-ring");
    let config = scratch("ringcap.toml");
    std::fs::write(
        &config,
        format!(
            "interface = \"{RX_IF}\"\ndir = \"{}\"\nrotate_seconds = 0\nzstd_level = 3\nfilter = \"udp src port 10003\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut command = bed.rx(RINGCAP);
    command.args(["run", "--config", config.to_str().unwrap(), "--zstd-level", "0"]);
    let mut ring = ringcap_tools::harness::CaptureProcess::spawn(command).unwrap();
    assert!(ring.wait_listening(), "{:?}", ring.stderr);
    send(&bed, mixed_frames(700));
    std::thread::sleep(Duration::from_millis(300));
    stop(ring);
    // The command line's --zstd-level 0 won over the file's 3: plain pcap files.
    let files = data_files(&dir);
    assert!(files.iter().all(|f| f.extension().is_some_and(|e| e == "pcap")), "{files:?}");
    let kept = packets_of(&files);
    assert_exact(&kept, (0..700).filter(|seq| seq % 7 == 3));
}

/// tshark's (interface name, direction flags) of every packet of a capture file.
fn tshark_interfaces(path: &Path) -> Vec<(String, String)> {
    common::tshark_fields(path, "", &["frame.interface_name", "frame.packet_flags_direction"])
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect()
}

#[test]
fn a_ring_of_two_interfaces_is_pcapng_and_pulls_keep_interfaces_and_directions() {
    let bed = common::two_pair_bed();
    let dir = scratch("ring-pcapng");
    let mut ring = start_ringcap(
        &bed,
        "run",
        &["-i", ringcap_tools::testbed::RX2_IF, "--dir", dir.to_str().unwrap(), "--direction", "both", "udp"],
    );
    assert!(ring.wait_for("listening on veth-rx2", Duration::from_secs(10)), "{:?}", ring.stderr);
    common::send_alternating(&bed, &mixed_frames(200), 20);
    let stderr = common::stop(ring);
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(200), "{stderr:?}");

    let files = data_files(&dir);
    assert_eq!(files.len(), 1);
    let plain = check_with_tools(&files[..1]).remove(0);
    assert_eq!(&plain[..4], &[0x0a, 0x0d, 0x0d, 0x0a], "the ring holds pcapng");
    let (file, packets) = read_frames(&files[0]);
    assert_eq!(file.interfaces, [RX_IF, "veth-rx2"]);
    assert_eq!(packets.len(), 200);

    for format in ["pcapng", "pcap"] {
        let out = scratch(&format!("pulled.{format}"));
        let pulled = Command::new(RINGCAP)
            .args(["pull", "--dir", dir.to_str().unwrap(), "--last", "1h", "--format", format, "-w"])
            .arg(&out)
            .output_within_deadline();
        assert!(pulled.status.success(), "{}", String::from_utf8_lossy(&pulled.stderr));
        let rows = tshark_interfaces(&out);
        assert_eq!(rows.len(), 200, "{format}");
        if format == "pcapng" {
            for (round, rows) in rows.chunks(20).enumerate() {
                let iface = if round % 2 == 0 { RX_IF } else { "veth-rx2" };
                assert!(
                    rows.iter().all(|(name, direction)| name == iface && direction == "0x00000001"),
                    "{rows:?}"
                );
            }
        }
    }
}

/// Every file of a directory with its bytes: what must survive untouched.
fn snapshot_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// Capture files of a user or another program, old and new, placed in a ring directory.
fn place_foreign_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::create_dir_all(dir).unwrap();
    let mut evidence = Vec::new();
    capture_daemon::pcap::write_file_header(&mut evidence, 65535).unwrap();
    capture_daemon::pcap::write_record(&mut evidence, Duration::from_secs(1), 60, &known_frame(0), 65535)
        .unwrap();
    let files = [
        ("evidence.pcap", "2001-01-01"),
        ("ringcap-20000101-000000.pcap.zst", "2000-01-01"),
        ("other-tool.pcapng", "2030-01-01"),
        ("other-tool.idx", "2030-01-01"),
        ("incident.pcap.zst", "now"),
    ];
    files
        .iter()
        .map(|(name, time)| {
            let path = dir.join(name);
            std::fs::write(&path, &evidence).unwrap();
            assert!(Command::new("touch").arg("-d").arg(time).arg(&path).status().unwrap().success());
            (path, evidence.clone())
        })
        .collect()
}

fn assert_foreign_files_intact(foreign: &[(PathBuf, Vec<u8>)]) {
    for (path, bytes) in foreign {
        assert_eq!(&std::fs::read(path).unwrap_or_default(), bytes, "{} was touched", path.display());
    }
}

/// The ring's own data files, as its manifest lists them.
fn own_files(dir: &Path) -> Vec<PathBuf> {
    let mut own = capture_daemon::storage::manifest::list(dir).unwrap().0.own;
    own.sort();
    own
}

#[test]
fn foreign_capture_files_survive_rotation_file_limits_and_restarts() {
    let bed = bed();
    let dir = scratch("foreign");
    let foreign = place_foreign_files(&dir);
    // Three lives of -G 1 -W 2 (rotation every second, the oldest file removed each time).
    let mut next = 0u64;
    for life in 0..3 {
        let ring = start_run(&bed, &dir, "-G 1 -W 2 --max-disk 4M");
        send_paced(&bed, (next..next + 1500).map(known_frame).collect(), Some(1000.0));
        next += 1500;
        let stderr = stop(ring);
        let warnings: Vec<_> = stderr.iter().filter(|l| l.contains("were not written by ringcap")).collect();
        assert_eq!(warnings.len(), 1, "life {life}: {stderr:?}");
        for (path, _) in &foreign {
            let name = path.file_name().unwrap().to_str().unwrap();
            if name.ends_with(".idx") {
                continue;
            }
            assert!(warnings[0].contains(name), "{name} not named: {}", warnings[0]);
        }
        assert_foreign_files_intact(&foreign);
        assert_eq!(own_files(&dir).len(), 2, "life {life}: -W 2 counts only ringcap's files");
    }
    let kept = packets_of(&own_files(&dir));
    let first = sequence_of(&kept[0].data).unwrap();
    assert_exact(&kept, first..next);
    // A pull reads the ring, not the foreign files.
    let out = scratch("foreign-pull.pcap");
    let pulled = Command::new(RINGCAP)
        .args(["pull", "--dir", dir.to_str().unwrap(), "--last", "1h", "-w"])
        .arg(&out)
        .output_within_deadline();
    assert!(pulled.status.success(), "{}", String::from_utf8_lossy(&pulled.stderr));
    assert_eq!(ringcap_tools::harness::read_pcap(&out).unwrap().len(), kept.len());
}

#[test]
fn a_ring_from_before_the_manifest_is_adopted_and_its_neighbours_are_not() {
    let bed = bed();
    let dir = scratch("legacy");
    // An older ring: two files of ringcap's (each with its time index), no manifest.
    let ring = start_run(&bed, &dir, "-G 0");
    send(&bed, (0..100).map(known_frame).collect());
    std::thread::sleep(Duration::from_millis(300));
    ring.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    send_and_stop(&bed, ring, (100..200).map(known_frame).collect());
    std::fs::remove_file(dir.join(capture_daemon::storage::manifest::MANIFEST_NAME)).unwrap();
    let old_ring = data_files(&dir);
    assert_eq!(old_ring.len(), 2);
    let mut foreign = place_foreign_files(&dir);
    // A name with a newline, a real ringcap file and index under it, beside a foreign file
    // named as its second line: neither is adopted (a manifest holds a name a line).
    let index_of = capture_daemon::storage::index::index_path;
    for (name, from) in [("x\nvictim.pcap.zst", &old_ring[0]), ("x\nvictim.idx", &index_of(&old_ring[0]))] {
        std::fs::copy(from, dir.join(name)).unwrap();
        foreign.push((dir.join(name), std::fs::read(from).unwrap()));
    }
    std::fs::write(dir.join("victim.pcap.zst"), b"someone's").unwrap();
    foreign.push((dir.join("victim.pcap.zst"), b"someone's".to_vec()));

    let ring = start_run(&bed, &dir, "-G 0 -W 2");
    send(&bed, (200..300).map(known_frame).collect());
    std::thread::sleep(Duration::from_millis(300));
    let stderr = stop(ring);
    assert!(stderr.iter().any(|l| l.contains("2 files adopted")), "{stderr:?}");
    assert_foreign_files_intact(&foreign);
    let own = own_files(&dir);
    assert_eq!(own.len(), 2, "-W 2 removed the oldest adopted file");
    assert_eq!(own[0], old_ring[1]);
    let kept = packets_of(&own);
    assert_exact(&kept, 100..300);
    // A second start with -W 1 removes only what the manifest lists.
    let ring = start_run(&bed, &dir, "-G 0 -W 1");
    send_and_stop(&bed, ring, (300..310).map(known_frame).collect());
    assert_foreign_files_intact(&foreign);
    assert_exact(&packets_of(&own_files(&dir)), 300..310);
}

#[test]
fn a_start_that_fails_leaves_the_ring_as_it_was() {
    let bed = bed();
    let dir = scratch("failed-start");
    let ring = start_run(&bed, &dir, "-G 0");
    send_and_stop(&bed, ring, (0..100).map(known_frame).collect());
    let before = snapshot_files(&dir);
    // Another XDP program holds the interface: each start fails at attach.
    let holder = common::start_capture(&bed, &["-w", "/dev/null"]);
    for _ in 0..3 {
        let output = bed
            .rx(RINGCAP)
            .args(["run", "-i", RX_IF, "--dir", dir.to_str().unwrap(), "-W", "1"])
            .output_within_deadline();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("XDP") || stderr.contains("attach"), "{stderr}");
        assert_eq!(snapshot_files(&dir), before, "a failed start changed the ring: {stderr}");
    }
    // A new ring whose start fails the same way leaves nothing (before: DIR and DIR/pins).
    let fresh = scratch("failed-new");
    let output =
        bed.rx(RINGCAP).args(["run", "-i", RX_IF, "--dir", fresh.to_str().unwrap()]).output_within_deadline();
    assert!(!output.status.success());
    assert!(!fresh.exists(), "{}", String::from_utf8_lossy(&output.stderr));
    common::stop(holder);
    let kept = packets_of(&data_files(&dir));
    assert_exact(&kept, 0..100);
}

#[test]
fn a_second_run_on_the_same_directory_is_refused_and_the_first_goes_on() {
    let bed = bed();
    let dir = scratch("locked");
    let ring = start_run(&bed, &dir, "-G 0");
    send(&bed, (0..100).map(known_frame).collect());
    let output = bed
        .rx(RINGCAP)
        .args(["run", "-i", RX_IF, "--dir", dir.to_str().unwrap(), "-W", "1"])
        .output_within_deadline();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("another ringcap run is writing"), "{stderr}");
    let stderr = send_and_stop(&bed, ring, (100..200).map(known_frame).collect());
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(200), "{stderr:?}");
    let kept = packets_of(&data_files(&dir));
    assert_exact(&kept, 0..200);
}

/// No file can be created for a while (here the manifest, which lists a file before it
/// exists, cannot be replaced: its temporary name is taken by a directory that is not
/// empty; a disk or inodes full with nothing of the ring's left to free does the same).
/// The packets meanwhile are counted as lost, rotation (SIGHUP too) retries on every tick,
/// and capture goes on once files can be made again.
#[test]
fn files_that_cannot_be_created_lose_only_counted_packets_and_sighup_keeps_capturing() {
    let bed = bed();
    let dir = scratch("uncreatable");
    let ring = start_run(&bed, &dir, "-G 1 --frame-interval 0.1");
    let sender = {
        let frames = mixed_frames(5000);
        let tx_ns = bed.tx_ns.clone();
        TestBed::in_namespace(&tx_ns, move || {
            let ifindex = capture_daemon::kernel::interface_index(TX_IF).unwrap();
            transmit(
                ifindex,
                &Plan { count: frames.len() as u64, frames, chunk: 1, rate: Some(1000.0), until: None },
            )
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    let blocker = dir.join(format!(".{}.tmp", capture_daemon::storage::manifest::MANIFEST_NAME));
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    ring.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(1200));
    std::fs::remove_dir_all(&blocker).unwrap();
    sender.join().unwrap().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let stderr = stop(ring);
    let captured = summary_count(&stderr, "packets captured").unwrap();
    let written = summary_count(&stderr, "packets written to the ring").unwrap();
    let lost = summary_count(&stderr, "packets lost to write errors").unwrap();
    assert_eq!(captured, 5000, "{stderr:?}");
    assert_eq!(written + lost, captured, "every captured packet is written or counted: {stderr:?}");
    assert!(lost > 0, "a file could be made all along: {stderr:?}");
    let files = data_files(&dir);
    check_with_tools(&files);
    let mut kept = Vec::new();
    for file in &files {
        let (data, packets) = read_frames(file);
        assert_eq!(data.damaged_tail, 0);
        kept.extend(packets);
    }
    assert_eq!(kept.len() as u64, written);
    let last = assert_known_and_increasing(&kept);
    assert_eq!(last, Some(4999), "capture went on after the files could be made again");
}

#[test]
fn frames_whose_fsync_fails_are_cut_off_and_counted_lost() {
    let bed = bed();
    let fs = FaultyFs::mount("fsync", None);
    let ring = start_run(&bed, &fs.mountpoint, "-G 0 --no-compress --frame-interval 0.1");
    send_paced(&bed, (0..300).map(known_frame).collect(), Some(2000.0));
    std::thread::sleep(Duration::from_millis(400));
    // The disk starts failing: frames written now cannot be trusted to be on it.
    fs.fail(true);
    send_paced(&bed, (300..600).map(known_frame).collect(), Some(2000.0));
    std::thread::sleep(Duration::from_millis(400));
    fs.fail(false);
    let stderr = send_and_stop(&bed, ring, (600..900).map(known_frame).collect());
    let captured = summary_count(&stderr, "packets captured").unwrap();
    let written = summary_count(&stderr, "packets written to the ring").unwrap();
    let lost = summary_count(&stderr, "packets lost to write errors").unwrap();
    assert_eq!(captured, 900, "{stderr:?}");
    assert_eq!(written + lost, captured, "every captured packet is written or counted: {stderr:?}");
    assert!(lost >= 1, "{stderr:?}");
    let failed_fsyncs = stderr
        .iter()
        .find_map(|l| l.split(" write errors (").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .unwrap();
    assert!(failed_fsyncs >= 1, "{stderr:?}");
    let files = data_files(&fs.mountpoint);
    assert_eq!(files.len(), 1);
    let (data, kept) = read_frames(&files[0]);
    assert_eq!(data.damaged_tail, 0, "failed frames are cut off");
    check_with_tools(&files[..1]);
    assert_eq!(kept.len() as u64, written);
    let last = assert_known_and_increasing(&kept);
    assert_eq!(last, Some(899), "capture went on after the disk recovered");
}

/// One field of a /proc status file, split on whitespace.
fn status_field(status: &str, name: &str) -> Vec<String> {
    let line =
        status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {status}"));
    line.split_whitespace().skip(1).map(str::to_string).collect()
}

/// Every thread of `pid` is `user` in every id, holds no capability and cannot gain one.
fn assert_unprivileged(pid: u32, user: &capture_daemon::privileges::User) {
    let (uid, gid) = (user.uid.to_string(), user.gid.to_string());
    let tasks: Vec<_> =
        std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(tasks.len() > 1, "the daemon's threads are all checked");
    for task in tasks {
        let Ok(status) = std::fs::read_to_string(task.join("status")) else { continue };
        let name = status_field(&status, "Name:").join(" ");
        assert_eq!(
            status_field(&status, "Uid:"),
            vec![uid.clone(); 4],
            "{name}: real, effective, saved, fs uid"
        );
        assert_eq!(status_field(&status, "Gid:"), vec![gid.clone(); 4], "{name}");
        let groups = status_field(&status, "Groups:");
        assert!(groups.iter().all(|g| *g == gid), "{name}: supplementary groups {groups:?}");
        for set in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
            assert_eq!(status_field(&status, set), ["0000000000000000"], "{name}: {set}");
        }
        assert_eq!(status_field(&status, "NoNewPrivs:"), ["1"], "{name}");
    }
}

/// `-Z nobody`: once capture is up the daemon is nobody, in every id, with no capability
/// and no way back; the ring a root run left is handed over, every file of the ring
/// (data, index, manifest, the one a SIGHUP starts) is nobody's, and not a packet is lost.
#[test]
fn run_drops_to_an_unprivileged_user_and_captures_every_packet() {
    use std::os::unix::fs::MetadataExt;
    let nobody = capture_daemon::privileges::User::lookup("nobody").unwrap();
    let bed = bed();
    let dir = scratch("user");
    let as_root = start_run(&bed, &dir, "-G 0");
    send_and_stop(&bed, as_root, (0..100).map(known_frame).collect());
    std::os::unix::fs::chown(&dir, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let mut ring = start_run(&bed, &dir, "-G 0 -Z nobody");
    assert!(ring.wait_for("running as nobody", WAIT), "{:?}", ring.stderr);
    assert_unprivileged(ring.child.id(), &nobody);
    send(&bed, (100..300).map(known_frame).collect());
    std::thread::sleep(Duration::from_millis(300));
    ring.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    send_and_stop(&bed, ring, (300..600).map(known_frame).collect());
    let files = data_files(&dir);
    assert_eq!(files.len(), 3, "root's file, then nobody's two (SIGHUP started the second)");
    for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
        let owner = entry.metadata().unwrap().uid();
        assert_eq!(owner, nobody.uid, "{} belongs to uid {owner}", entry.path().display());
    }
    assert_exact(&packets_of(&files), 0..600);
    // A new ring under parents that do not exist yet: they are made searchable, so that
    // nobody gets through them; the ring itself is private and nobody's.
    let nested = scratch("user-new").join("a/b/ring");
    let ring = start_run(&bed, &nested, "-G 0 -Z nobody");
    send_and_stop(&bed, ring, (0..50).map(known_frame).collect());
    assert_exact(&packets_of(&data_files(&nested)), 0..50);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().mode() & 0o7777;
    assert_eq!((mode(nested.parent().unwrap()), mode(&nested)), (0o755, 0o700));
    assert_eq!(std::fs::metadata(&nested).unwrap().uid(), nobody.uid);
}

#[test]
fn a_user_that_cannot_run_the_ring_is_refused_before_anything_is_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let nobody = capture_daemon::privileges::User::lookup("nobody").unwrap();
    let bed = bed();
    let dir = scratch("user-refused");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    expect_failure(&bed, &["--dir", d, "-Z", "no-such-user-ringcap"], "no such user");
    expect_failure(&bed, &["--dir", d, "-Z", "nobody"], "is not writable by nobody");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing was created");
    // A ring nobody could write, behind a directory it may not enter (before, the start
    // went on and every packet was lost to write errors): refused, nothing made.
    let locked = scratch("user-locked");
    std::fs::create_dir_all(locked.join("ring")).unwrap();
    std::os::unix::fs::chown(locked.join("ring"), Some(nobody.uid), Some(nobody.gid)).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    for ring in [locked.join("ring"), locked.join("new/ring")] {
        let message =
            format!("nobody cannot reach {}: it may not enter {}", ring.display(), locked.display());
        expect_failure(&bed, &["--dir", ring.to_str().unwrap(), "-Z", "nobody"], &message);
    }
    assert!(!locked.join("new").exists(), "nothing was made");
}

/// What systemd's `User=` and `AmbientCapabilities=` of the shipped unit give the daemon
/// (reproduced with setpriv): enough to capture, and `-Z` drops even those, in every
/// thread (the API's too).
#[test]
fn the_units_capabilities_suffice_for_a_plain_user_and_are_dropped_after_start() {
    let nobody = capture_daemon::privileges::User::lookup("nobody").unwrap();
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/ringcap.service")).unwrap();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the unit names its capabilities")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let caps = caps.join(",");
    let bed = bed();
    let dir = scratch("user-ambient");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let mut command = bed.rx("setpriv");
    let (uid, gid) = (nobody.uid.to_string(), nobody.gid.to_string());
    command
        .args([
            "--reuid",
            &uid,
            "--regid",
            &gid,
            "--clear-groups",
            "--inh-caps",
            &caps,
            "--ambient-caps",
            &caps,
        ])
        .args([RINGCAP, "run", "-i", RX_IF, "--dir", dir.to_str().unwrap(), "-G", "0", "-Z", "nobody"])
        .args(["--http", "127.0.0.1:18090", "--http-no-auth"]);
    let mut ring = CaptureProcess::spawn(command).unwrap();
    assert!(ring.wait_for("running as nobody", WAIT), "{:?}", ring.stderr);
    assert_unprivileged(ring.child.id(), &nobody);
    send_and_stop(&bed, ring, (0..200).map(known_frame).collect());
    assert_exact(&packets_of(&data_files(&dir)), 0..200);
}

/// Someone else removes the file being written, then truncates the next, then puts their
/// own file under the next one's name. Each time the daemon says so, counts it, and
/// starts a new file: the packets that follow are all there, behind a header, and the
/// other's file is left as they put it. (Before, packets went on into the unlinked file,
/// gone, and nothing said so.)
#[test]
fn a_file_taken_from_the_ring_while_written_is_counted_and_capture_goes_on() {
    let bed = bed();
    let dir = scratch("taken");
    let ring = start_run(&bed, &dir, "-G 0 --no-compress --frame-interval 0.1");
    let settle = || std::thread::sleep(Duration::from_millis(600));
    let only_new_file = |before: &[PathBuf]| {
        let files: Vec<PathBuf> = data_files(&dir).into_iter().filter(|f| !before.contains(f)).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    };
    send(&bed, (0..500).map(known_frame).collect());
    settle();
    let removed = data_files(&dir).remove(0);
    std::fs::remove_file(&removed).unwrap();
    send(&bed, (500..1000).map(known_frame).collect());
    settle();
    let second = only_new_file(&[]);
    assert_exact(&read_frames(&second).1, 500..1000);
    // Cut back to its header: the frames written are gone.
    std::fs::OpenOptions::new().write(true).open(&second).unwrap().set_len(24).unwrap();
    send(&bed, (1000..1500).map(known_frame).collect());
    settle();
    let third = only_new_file(std::slice::from_ref(&second));
    assert_exact(&read_frames(&third).1, 1000..1500);
    let foreign = dir.join("theirs");
    std::fs::write(&foreign, b"not ringcap's").unwrap();
    std::fs::rename(&foreign, &third).unwrap();
    let stderr = send_and_stop(&bed, ring, (1500..2000).map(known_frame).collect());
    let fourth = only_new_file(&[second.clone(), third.clone()]);
    assert_exact(&read_frames(&fourth).1, 1500..2000);
    assert_eq!(std::fs::read(&third).unwrap(), b"not ringcap's", "the other's file was touched");
    assert_eq!(summary_count(&stderr, "lost to others"), Some(3), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(2000), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets lost to write errors"), Some(0), "{stderr:?}");
    for (file, why) in [(&removed, "removed"), (&second, "truncated"), (&third, "replaced")] {
        let said = format!("{} was {why} while being written", file.display());
        assert!(stderr.iter().any(|l| l.contains(&said)), "{said}: {stderr:?}");
    }
}

/// `rm -rf` of the ring directory under a running daemon: it stops by itself, non-zero,
/// saying what happened and what to do, and a restart makes the directory again.
#[test]
fn a_removed_ring_directory_stops_the_daemon_and_a_restart_makes_it_again() {
    let bed = bed();
    let dir = scratch("removed-dir");
    let ring = start_run(&bed, &dir, "-G 0 --frame-interval 0.1");
    send(&bed, (0..100).map(known_frame).collect());
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_dir_all(&dir).unwrap();
    // No signal: the daemon notices on its next tick.
    let (status, stderr) = ring.finish(WAIT);
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    assert!(stderr.iter().any(|l| l.contains("was removed: restart ringcap")), "{stderr:?}");
    let ring = start_run(&bed, &dir, "-G 0 --frame-interval 0.1");
    let stderr = send_and_stop(&bed, ring, (100..200).map(known_frame).collect());
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(100), "{stderr:?}");
    assert_exact(&packets_of(&data_files(&dir)), 100..200);
}

/// Another process fills the disk to its last byte while the ring is quiet; then SIGHUP
/// starts a new file. ringcap frees its own oldest files to start it (never the other's)
/// and capture goes on, losing nothing. (Before, the new file could not be listed or
/// created, no file was freed, and every packet after was lost.)
#[test]
fn a_disk_full_when_a_file_starts_frees_the_oldest_files_and_loses_nothing() {
    use std::io::Write;
    let bed = bed();
    let dir = scratch("full-at-start");
    let _unmount = mount_tmpfs(&dir, "size=16m");
    let ring = start_run(&bed, &dir, "-G 0 -C 1 --no-compress --min-free 0 --frame-interval 0.1");
    send(&bed, (0..8000).map(known_frame).collect());
    std::thread::sleep(Duration::from_millis(600));
    let before = own_files(&dir);
    assert!(before.len() >= 3, "{before:?}");
    let filler = dir.join("other.bin");
    let mut file = std::fs::File::create(&filler).unwrap();
    while file.write_all(&[0x5a; 4096]).is_ok() {}
    drop(file);
    let filled = std::fs::read(&filler).unwrap();
    ring.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    let stderr = send_and_stop(&bed, ring, (8000..10_000).map(known_frame).collect());
    assert_eq!(std::fs::read(&filler).unwrap(), filled, "the other's file was touched");
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(10_000), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets lost to write errors"), Some(0), "{stderr:?}");
    assert!(summary_count(&stderr, "removed for free space").unwrap() > 0, "{stderr:?}");
    assert!(summary_count(&stderr, "disk-full events").unwrap() > 0, "{stderr:?}");
    assert!(!own_files(&dir).contains(&before[0]), "the oldest file made room");
    let kept: Vec<u64> = packets_of(&own_files(&dir))
        .iter()
        .map(|p| sequence_of(&p.data).unwrap())
        .filter(|&s| s >= 8000)
        .collect();
    assert_eq!(kept, (8000..10_000).collect::<Vec<_>>(), "every packet after the disk filled is kept");
}

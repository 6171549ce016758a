//! End-to-end tests of `ringcap capture`: the real eBPF programs in the real kernel,
//! real frames through a veth pair between two network namespaces, and the files
//! read back by ringcap's tests, tcpdump and tshark.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

mod common;

use common::OutputWithin;

use common::{
    bed, expect_failure, mixed_frames, scratch, send, send_alternating, serve, start_capture, stop, RINGCAP,
    WAIT,
};
use ringcap_tools::frames::sequence_of;
use ringcap_tools::harness::{read_pcap, summary_count, CaptureProcess};
use ringcap_tools::testbed::{TestBed, TestBedOptions, RX_IF, RX_IP};

fn run_reader(program: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(program).args(args).output_within_deadline();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// tcpdump and tshark both read the file without a warning and count `expected` packets.
fn assert_readers_agree(path: &Path, expected: usize) {
    let file = path.to_str().unwrap();
    let (ok, stdout, stderr) = run_reader("tcpdump", &["-nn", "-r", file]);
    assert!(ok, "tcpdump failed: {stderr}");
    let warnings: Vec<_> = stderr.lines().filter(|l| !l.starts_with("reading from file")).collect();
    assert!(warnings.is_empty(), "tcpdump warned: {warnings:?}");
    assert_eq!(stdout.lines().count(), expected, "tcpdump's packet count");
    let (ok, stdout, stderr) = run_reader("tshark", &["-n", "-r", file]);
    assert!(ok, "tshark failed: {stderr}");
    let warnings: Vec<_> = stderr.lines().filter(|l| !l.contains("Running as user \"root\"")).collect();
    assert!(warnings.is_empty(), "tshark warned: {warnings:?}");
    assert_eq!(stdout.lines().count(), expected, "tshark's packet count");
}

#[test]
fn known_frames_are_captured_byte_exact_with_wall_clock_timestamps() {
    let bed = bed();
    let file = scratch("known.pcap");
    let frames = mixed_frames(1000);
    let capture = start_capture(&bed, &["-w", file.to_str().unwrap(), "-c", "1000"]);
    let before = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
    send(&bed, frames.clone());
    let after = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let (status, stderr) = capture.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets captured"), Some(1000), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets dropped by kernel"), Some(0), "{stderr:?}");

    let packets = read_pcap(&file).unwrap();
    assert_eq!(packets.len(), frames.len());
    for (packet, frame) in packets.iter().zip(&frames) {
        assert_eq!(sequence_of(&packet.data), sequence_of(frame), "packets out of order");
        assert_eq!(packet.data, *frame, "bytes differ for frame {:?}", sequence_of(frame));
        assert_eq!(packet.orig_len as usize, frame.len());
        assert!(
            packet.timestamp >= before && packet.timestamp <= after,
            "timestamp {:?} outside [{before:?}, {after:?}]",
            packet.timestamp
        );
    }
    assert!(packets.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert_readers_agree(&file, frames.len());
}

#[test]
fn snaplen_truncates_and_keeps_the_original_length() {
    let bed = bed();
    let file = scratch("snaplen.pcap");
    let frames = mixed_frames(100);
    let capture = start_capture(&bed, &["-w", file.to_str().unwrap(), "-s", "100", "-c", "100"]);
    send(&bed, frames.clone());
    let (status, stderr) = capture.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    let packets = read_pcap(&file).unwrap();
    assert_eq!(packets.len(), 100);
    for (packet, frame) in packets.iter().zip(&frames) {
        let kept = frame.len().min(100);
        assert_eq!(packet.data, frame[..kept]);
        assert_eq!(packet.orig_len as usize, frame.len());
    }
    assert_readers_agree(&file, 100);
}

#[test]
fn count_stops_after_exactly_count_packets() {
    let bed = bed();
    let file = scratch("count.pcap");
    let capture = start_capture(&bed, &["-w", file.to_str().unwrap(), "-c", "10"]);
    send(&bed, mixed_frames(50));
    let (status, stderr) = capture.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    assert_eq!(read_pcap(&file).unwrap().len(), 10);
    assert_eq!(summary_count(&stderr, "packets captured"), Some(10));
}

#[test]
fn duration_stops_on_a_quiet_link() {
    let bed = bed();
    let file = scratch("duration.pcap");
    let started = std::time::Instant::now();
    let capture = start_capture(&bed, &["-w", file.to_str().unwrap(), "--duration", "1"]);
    let (status, stderr) = capture.finish(WAIT);
    let took = started.elapsed();
    assert!(status.success(), "{stderr:?}");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(read_pcap(&file).unwrap().len(), 0);
    assert_readers_agree(&file, 0);
}

#[test]
fn sigint_and_sigterm_flush_every_captured_packet() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let bed = bed();
        let file = scratch(&format!("signal{signal}.pcap"));
        let capture = start_capture(&bed, &["-w", file.to_str().unwrap()]);
        send(&bed, mixed_frames(700));
        capture.signal(signal);
        let (status, stderr) = capture.finish(WAIT);
        assert!(status.success(), "{stderr:?}");
        assert_eq!(read_pcap(&file).unwrap().len(), 700, "{stderr:?}");
        assert_eq!(summary_count(&stderr, "packets captured"), Some(700));
    }
}

#[test]
fn stdout_output_is_a_pcap_stream() {
    let bed = bed();
    let mut command = bed.rx(RINGCAP);
    command.args(["capture", "-i", RX_IF, "-w", "-", "-c", "200"]).stdout(Stdio::piped());
    let mut capture = CaptureProcess::spawn(command).unwrap();
    assert!(capture.wait_listening());
    let mut stdout = capture.child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).unwrap();
        bytes
    });
    send(&bed, mixed_frames(200));
    let (status, stderr) = capture.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    let bytes = reader.join().unwrap();
    assert_eq!(ringcap_tools::harness::read_pcap_bytes(&bytes).unwrap().len(), 200);
    let mut tcpdump = Command::new("tcpdump")
        .args(["-nn", "-r", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tcpdump.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = tcpdump.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 200);
}

#[test]
fn real_tcp_and_icmp_traffic_is_captured_and_decoded() {
    let bed = bed();
    let file = scratch("tcp.pcap");
    let capture = start_capture(&bed, &["-w", file.to_str().unwrap()]);
    let server = serve(&bed, 8080, |listener| {
        let (mut stream, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        received
    });
    TestBed::in_namespace(&bed.tx_ns, || {
        let mut stream = TcpStream::connect((RX_IP, 8080)).unwrap();
        stream.write_all(b"hello through the flight recorder").unwrap();
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(server.join().unwrap().unwrap(), b"hello through the flight recorder");
    let ping = bed.tx("ping").args(["-c", "3", "-i", "0.2", RX_IP]).output_within_deadline();
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stderr));
    stop(capture);

    // XDP sees what arrives at veth-rx: the client's side of the connection and the echo requests.
    let fields = |filter: &str, field: &str| {
        let (ok, stdout, stderr) = run_reader(
            "tshark",
            &["-n", "-r", file.to_str().unwrap(), "-Y", filter, "-T", "fields", "-e", field],
        );
        assert!(ok, "{stderr}");
        stdout.lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(
        fields("tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == 8080", "tcp.srcport").len(),
        1
    );
    let payload = fields("tcp.len > 0", "tcp.payload");
    assert_eq!(payload, vec![hex(b"hello through the flight recorder")]);
    assert_eq!(fields("tcp.flags.fin == 1", "tcp.dstport"), vec!["8080"]);
    assert_eq!(fields("icmp.type == 8", "icmp.seq").len(), 3);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn auto_mode_falls_back_to_generic_when_native_xdp_is_refused() {
    // veth refuses native XDP when its peer's MTU does not fit in a page.
    let bed = TestBed::with_options(TestBedOptions { mtu: 9000, ..TestBedOptions::default() }).unwrap();
    let file = scratch("generic.pcap");
    let mut command = bed.rx(RINGCAP);
    command.args(["capture", "-i", RX_IF, "-w", file.to_str().unwrap()]);
    let mut capture = CaptureProcess::spawn(command).unwrap();
    assert!(capture.wait_listening(), "{:?}", capture.stderr);
    assert!(capture.stderr.iter().any(|l| l.contains("XDP generic mode")), "{:?}", capture.stderr);
    let ping = bed.tx("ping").args(["-c", "2", "-i", "0.2", "-s", "5000", RX_IP]).output_within_deadline();
    assert!(ping.status.success());
    capture.signal(libc::SIGINT);
    let (status, stderr) = capture.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    let packets = read_pcap(&file).unwrap();
    assert!(packets.iter().any(|p| p.orig_len == 5042), "jumbo echo request missing");
}

#[test]
fn bad_input_gives_clear_errors_and_a_failing_exit_code() {
    let bed = bed();
    let file = scratch("errors.pcap");
    let file = file.to_str().unwrap();
    expect_failure(
        bed.rx(RINGCAP).args(["capture", "-i", "nosuch0", "-w", file]),
        "interface nosuch0 not found",
    );
    expect_failure(
        bed.rx(RINGCAP).args(["capture", "-i", RX_IF, "-w", file, "-s", "300000"]),
        "snaplen 300000 is too large",
    );
    expect_failure(
        bed.rx(RINGCAP).args(["capture", "-i", RX_IF, "-w", file, "-s", "big"]),
        "is not a number of bytes",
    );
    expect_failure(
        bed.rx(RINGCAP).args(["capture", "-i", "lo", "-w", file, "--xdp-mode", "native"]),
        "refused XDP in native mode",
    );
    expect_failure(
        bed.rx("setpriv").args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            RINGCAP,
            "capture",
            "-i",
            RX_IF,
            "-w",
            "/tmp/ringcap-nobody.pcap",
        ]),
        "permission denied",
    );
    expect_failure(
        bed.rx(RINGCAP).args(["capture", "-i", RX_IF, "-w", "/nonexistent/dir/x.pcap"]),
        "cannot create /nonexistent/dir/x.pcap",
    );

    let first = start_capture(&bed, &["-w", file]);
    let second = scratch("second.pcap");
    expect_failure(
        bed.rx(RINGCAP).args(["capture", "-i", RX_IF, "-w", second.to_str().unwrap()]),
        "already attached to veth-rx",
    );
    first.signal(libc::SIGINT);
    let (status, stderr) = first.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
}

/// A TCP conversation across the bed, captured at `veth-rx` with `--direction`.
fn capture_conversation(direction: &str, extra: &[&str]) -> (std::path::PathBuf, Vec<String>) {
    let bed = bed();
    let file = scratch(&format!("direction-{direction}.pcap"));
    let mut args = vec!["-w", file.to_str().unwrap(), "--direction", direction];
    args.extend_from_slice(extra);
    let capture = start_capture(&bed, &args);
    let server = serve(&bed, 8080, |listener| {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"reply from the server").unwrap();
    });
    TestBed::in_namespace(&bed.tx_ns, || {
        let mut stream = TcpStream::connect((RX_IP, 8080)).unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"reply from the server");
    })
    .join()
    .unwrap()
    .unwrap();
    server.join().unwrap().unwrap();
    let stderr = stop(capture);
    (file, stderr)
}

/// (direction: 1 inbound, 2 outbound; tcp flags) of every TCP packet, as tshark reads the file.
fn tshark_directions(file: &Path) -> Vec<(u32, String)> {
    let (ok, stdout, stderr) = run_reader(
        "tshark",
        &[
            "-r",
            file.to_str().unwrap(),
            "-Y",
            "tcp",
            "-T",
            "fields",
            "-e",
            "frame.packet_flags_direction",
            "-e",
            "tcp.flags.str",
        ],
    );
    assert!(ok, "{stderr}");
    stdout
        .lines()
        .map(|l| {
            let (direction, flags) = l.split_once('\t').unwrap();
            (u32::from_str_radix(direction.trim_start_matches("0x"), 16).unwrap(), flags.trim().to_string())
        })
        .collect()
}

#[test]
fn both_directions_are_captured_and_pcapng_says_which_way() {
    let (file, stderr) = capture_conversation("both", &[]);
    assert!(stderr.iter().any(|l| l.contains("XDP native mode, TC egress")), "{stderr:?}");
    assert_eq!(&std::fs::read(&file).unwrap()[..4], &[0x0a, 0x0d, 0x0d, 0x0a], "pcapng");
    let packets = tshark_directions(&file);
    // Inbound at veth-rx: the client's SYN; outbound: the server's SYN-ACK and its data.
    assert!(packets.iter().any(|(d, f)| *d == 1 && f.contains('S') && !f.contains('A')), "{packets:?}");
    assert!(packets.iter().any(|(d, f)| *d == 2 && f.contains('S') && f.contains('A')), "{packets:?}");
    assert!(packets.iter().all(|(d, _)| *d == 1 || *d == 2), "{packets:?}");
    let (ok, _, warnings) = run_reader("tcpdump", &["-r", file.to_str().unwrap()]);
    assert!(ok, "{warnings}");
}

#[test]
fn direction_out_captures_only_what_the_host_sends() {
    let (file, stderr) = capture_conversation("out", &["--format", "pcapng"]);
    assert!(stderr.iter().any(|l| l.contains("(TC egress)")), "{stderr:?}");
    let packets = tshark_directions(&file);
    assert!(!packets.is_empty());
    assert!(packets.iter().all(|(d, _)| *d == 2), "{packets:?}");
    assert!(packets.iter().any(|(_, f)| f.contains('S') && f.contains('A')), "{packets:?}");
    assert!(
        !packets.iter().any(|(_, f)| f.contains('S') && !f.contains('A')),
        "the client's SYN arrives, it is not sent"
    );
}

#[test]
fn after_sigkill_no_program_stays_attached_and_capture_restarts() {
    let bed = bed();
    let file = scratch("killed.pcap");
    let capture = start_capture(&bed, &["-w", file.to_str().unwrap(), "--direction", "both"]);
    let link = |bed: &TestBed| {
        String::from_utf8(bed.rx("ip").args(["-d", "link", "show", RX_IF]).output_within_deadline().stdout)
            .unwrap()
    };
    assert!(link(&bed).contains("prog/xdp"), "the XDP program is attached while ringcap runs");
    capture.signal(libc::SIGKILL);
    let (status, _) = capture.finish(WAIT);
    assert!(!status.success());
    // Links die with their process: nothing of ringcap's stays on the interface.
    assert!(!link(&bed).contains("prog/xdp"), "{}", link(&bed));
    let again = start_capture(&bed, &["-w", file.to_str().unwrap(), "--direction", "both", "-c", "5"]);
    send(&bed, mixed_frames(5));
    let (status, stderr) = again.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets captured"), Some(5));
}

#[test]
fn two_interfaces_in_one_capture_are_tagged_in_pcapng() {
    let bed = common::two_pair_bed();
    let file = scratch("two.pcapng");
    let mut capture =
        start_capture(&bed, &["-w", file.to_str().unwrap(), "-i", ringcap_tools::testbed::RX2_IF]);
    assert!(capture.wait_for("listening on veth-rx2", Duration::from_secs(10)), "{:?}", capture.stderr);
    send_alternating(&bed, &mixed_frames(500), 50);
    stop(capture);
    let (ok, stdout, err) = run_reader(
        "tshark",
        &[
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.time_epoch",
        ],
    );
    assert!(ok, "{err}");
    let rows: Vec<(String, f64)> = stdout
        .lines()
        .map(|l| {
            let (name, time) = l.split_once('\t').unwrap();
            (name.to_string(), time.parse().unwrap())
        })
        .collect();
    assert_eq!(rows.iter().filter(|(n, _)| n == RX_IF).count(), 250, "{rows:?}");
    assert_eq!(rows.iter().filter(|(n, _)| n == "veth-rx2").count(), 250);
    assert!(rows.windows(2).all(|w| w[0].1 <= w[1].1), "packets out of time order");
}

//! The other capture paths, end to end in the real kernel: AF_XDP sockets (`--mode
//! afxdp`) with their loss counters and the merge of several sockets, and TC ingress.
use std::process::Command;
use std::time::{Duration, SystemTime};

mod common;

use common::OutputWithin;

use common::{
    bed, mixed_frames, scratch, send, send_alternating, start_capture, stop, tshark_fields, RINGCAP, WAIT,
};
use ringcap_tools::frames::{sequence_of, FrameTemplate};
use ringcap_tools::harness::{read_pcap, summary_count, CaptureProcess};
use ringcap_tools::testbed::{TestBed, RX2_IF, RX_IF, SINK_MAC, TX2_IF, TX_MAC};

#[test]
fn afxdp_captures_every_frame_byte_exact_with_kernel_timestamps() {
    let bed = bed();
    let file = scratch("afxdp.pcap");
    let frames = mixed_frames(2000);
    let capture = start_capture(
        &bed,
        &["--mode", "afxdp", "--force", "-w", file.to_str().unwrap(), "-c", "2000", "udp"],
    );
    let before = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
    send(&bed, frames.clone());
    let after = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let (status, stderr) = capture.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    assert!(stderr.iter().any(|l| l.contains("to AF_XDP sockets (1 queues, copy mode)")), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets captured"), Some(2000), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets dropped by kernel"), Some(0), "{stderr:?}");
    // The kernel stamps every frame, unless it refuses the program the metadata helper
    // (said at load): then user space stamps every one, and says how many.
    let refused = stderr.iter().any(|l| l.contains("refuses bpf_xdp_adjust_meta"));
    let stamped_by_us =
        summary_count(&stderr, "packets timestamped on arrival in user space (no kernel timestamp)");
    assert_eq!(stamped_by_us, refused.then_some(2000), "{stderr:?}");
    assert!(!stderr.iter().any(|l| l.contains("AF_XDP sockets:")), "no socket counted a loss: {stderr:?}");

    let packets = read_pcap(&file).unwrap();
    assert_eq!(packets.len(), frames.len());
    for (packet, frame) in packets.iter().zip(&frames) {
        assert_eq!(packet.data, *frame, "bytes differ for frame {:?}", sequence_of(frame));
        assert!(packet.timestamp >= before && packet.timestamp <= after, "{:?}", packet.timestamp);
    }
    assert!(packets.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    let rows = tshark_fields(&file, "", &["frame.len"]);
    assert_eq!(rows.len(), frames.len(), "tshark reads every packet");
}

#[test]
fn afxdp_refuses_an_interface_that_carries_the_hosts_traffic() {
    let bed = bed();
    let output = bed
        .rx(RINGCAP)
        .args(["capture", "-i", RX_IF, "--mode", "afxdp", "-w", "/dev/null"])
        .output_within_deadline();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("has IP addresses (10.77.0.2") && stderr.contains("--force"), "{stderr}");
    let output = bed
        .rx(RINGCAP)
        .args([
            "capture",
            "-i",
            RX_IF,
            "--mode",
            "afxdp",
            "--ingress-hook",
            "tc",
            "--force",
            "-w",
            "/dev/null",
        ])
        .output_within_deadline();
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot be combined with --ingress-hook tc"));
}

/// A writer that cannot keep up (its output pipe is not read for seconds): packets are
/// lost, and every one of them is in a counter.
#[test]
fn afxdp_losses_behind_a_stalled_writer_are_all_counted() {
    let bed = bed();
    let file = scratch("stalled.pcap");
    let pipeline = format!(
        "{RINGCAP} capture -i {RX_IF} --mode afxdp --force -B 4096 -w - udp | (sleep 6; cat > {})",
        file.display()
    );
    let mut shell = bed.rx("sh");
    shell.args(["-c", &pipeline]);
    let mut capture = CaptureProcess::spawn(shell).unwrap();
    assert!(capture.wait_listening(), "{:?}", capture.stderr);
    let template = FrameTemplate { src_mac: TX_MAC, dst_mac: SINK_MAC, ..FrameTemplate::default() };
    let frames: Vec<Vec<u8>> = (0..100_000).map(|seq| template.udp(1514, 0, seq)).collect();
    send(&bed, frames);
    std::thread::sleep(Duration::from_millis(500));
    // SIGINT to this shell's ringcap only: not the other tests' captures (a pattern alone
    // matched them), nor the shell's reader, a subshell whose command line also names
    // ringcap (hence the anchor on the binary's path); it must still drain the pipe.
    let shell = capture.child.id().to_string();
    let signalled =
        Command::new("pkill").args(["-INT", "-P", &shell, "-f", "^/.*ringcap capture"]).status().unwrap();
    assert!(signalled.success(), "no ringcap under the shell {shell}");
    let (_, stderr) = capture.finish(Duration::from_secs(60));
    let count = |what| summary_count(&stderr, what).unwrap_or_else(|| panic!("no {what:?} in {stderr:?}"));
    let captured = count("packets captured");
    let kernel = count("packets dropped by kernel");
    let queue = count("packets dropped by ringcap (writer queue full)");
    assert!(queue + kernel > 0, "the stalled writer lost nothing? {stderr:?}");
    assert_eq!(captured + kernel + queue, 100_000, "every frame captured or counted: {stderr:?}");
    assert_eq!(
        read_pcap(&file).unwrap().len() as u64,
        captured,
        "the file has every packet counted as captured"
    );
}

#[test]
fn afxdp_sockets_of_two_interfaces_are_merged_in_time_order() {
    let bed = common::two_pair_bed();
    let file = scratch("afxdp-two.pcapng");
    let mut capture = start_capture(
        &bed,
        &["--mode", "afxdp", "--force", "-w", file.to_str().unwrap(), "-i", RX2_IF, "udp"],
    );
    assert!(capture.wait_for("listening on veth-rx2", Duration::from_secs(10)), "{:?}", capture.stderr);
    send_alternating(&bed, &mixed_frames(600), 20);
    let stderr = stop(capture);
    assert_eq!(summary_count(&stderr, "packets captured"), Some(600), "{stderr:?}");
    assert!(!stderr.iter().any(|l| l.contains("out of time order")), "{stderr:?}");
    let rows = tshark_fields(&file, "", &["frame.interface_name", "udp.srcport", "frame.time_epoch"]);
    assert_eq!(rows.len(), 600);
    for iface in [RX_IF, RX2_IF] {
        assert_eq!(rows.iter().filter(|r| r[0] == iface).count(), 300, "{iface}");
    }
    // Rounds come out as they were sent only by the kernel's arrival stamps: a kernel that
    // refuses the metadata helper (said at load) leaves the stamps, and so the merge, to
    // when each socket's reader took its frames.
    if !stderr.iter().any(|l| l.contains("refuses bpf_xdp_adjust_meta")) {
        for (round, rows) in rows.chunks(20).enumerate() {
            let iface = if round % 2 == 0 { RX_IF } else { RX2_IF };
            assert!(rows.iter().all(|r| r[0] == iface), "round {round} should come from {iface}: {rows:?}");
        }
    }
    let times: Vec<f64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "packets out of time order");
}

#[test]
fn tc_ingress_hook_captures_what_the_host_stack_receives() {
    let bed = bed();
    let file = scratch("tc-ingress.pcapng");
    let capture = start_capture(
        &bed,
        &["--ingress-hook", "tc", "--format", "pcapng", "-w", file.to_str().unwrap(), "udp port 9999"],
    );
    assert!(capture.stderr.iter().any(|l| l.contains("(TC ingress)")), "{:?}", capture.stderr);
    // Real datagrams from the sending namespace's stack (TC needs no XDP on the path).
    let sizes: Vec<usize> = (0..300).map(|i| 1 + i * 4).collect();
    let payloads = sizes.clone();
    TestBed::in_namespace(&bed.tx_ns, move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for size in payloads {
            socket.send_to(&vec![0x5a; size], (ringcap_tools::testbed::RX_IP, 9999)).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    })
    .join()
    .unwrap()
    .unwrap();
    let stderr = stop(capture);
    assert_eq!(summary_count(&stderr, "packets captured"), Some(300), "{stderr:?}");
    let rows = tshark_fields(&file, "", &["frame.packet_flags_direction", "udp.length"]);
    assert_eq!(rows.len(), 300);
    assert!(rows.iter().all(|r| r[0] == "0x00000001"), "all inbound: {rows:?}");
    let lengths: Vec<usize> = rows.iter().map(|r| r[1].parse::<usize>().unwrap() - 8).collect();
    assert_eq!(lengths, sizes);
}

/// `ringcap_interface_up{interface=NAME}` in /metrics.
fn interface_up(bed: &TestBed, addr: &str, name: &str) -> Option<u64> {
    common::metric(bed, addr, "t0ken", &format!("ringcap_interface_up{{interface=\"{name}\"}}"))
}

/// One of two interfaces is deleted under capture: said, shown down in /metrics, and
/// capture goes on on the other. When an interface of that name is there again, run ends
/// non-zero so that a new start (the service manager's restart) captures it; the new start
/// does. (Before, a deleted interface went unnoticed and a re-created one was never
/// captured, with the daemon idle and exiting 0 once none was left.)
#[test]
fn an_interface_deleted_under_capture_is_reported_and_a_returning_one_ends_the_run() {
    let bed = common::two_pair_bed();
    let dir = scratch("links-ring");
    let token = common::token_file("t0ken");
    let addr = "127.0.0.1:18116";
    let args = |dir: &std::path::Path| {
        let base = ["--dir", dir.to_str().unwrap(), "-G", "0", "--frame-interval", "0.1", "-i", RX2_IF];
        let api = ["--http", addr, "--http-token-file", token.to_str().unwrap()];
        [&base[..], &api[..]].concat().iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run_args = args(&dir);
    let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    let mut ring = common::start_ringcap(&bed, "run", &run_args);
    assert!(ring.wait_for("listening on veth-rx2", WAIT), "{:?}", ring.stderr);
    assert_eq!(interface_up(&bed, addr, RX2_IF), Some(1));
    let ip = |ns: &str, args: &[&str]| {
        assert!(Command::new("ip").arg("-n").arg(ns).args(args).status().unwrap().success(), "ip {args:?}");
    };
    ip(&bed.rx_ns, &["link", "del", RX2_IF]);
    assert!(ring.wait_for("interface veth-rx2 is gone", WAIT), "{:?}", ring.stderr);
    assert_eq!(interface_up(&bed, addr, RX2_IF), Some(0));
    assert_eq!(interface_up(&bed, addr, RX_IF), Some(1));
    send(&bed, mixed_frames(300));
    // The pair again: the run ends by itself, non-zero, saying why.
    ip(&bed.tx_ns, &["link", "add", TX2_IF, "type", "veth", "peer", "name", RX2_IF, "netns", &bed.rx_ns]);
    ip(&bed.tx_ns, &["link", "set", TX2_IF, "up"]);
    ip(&bed.rx_ns, &["link", "set", RX2_IF, "up"]);
    let (status, stderr) = ring.finish(WAIT);
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    assert!(stderr.iter().any(|l| l.contains("veth-rx2 is back after it went")), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(300), "{stderr:?}");
    // A new start captures the new interface.
    let mut ring = common::start_ringcap(&bed, "run", &run_args);
    assert!(ring.wait_for("listening on veth-rx2", WAIT), "{:?}", ring.stderr);
    assert_eq!(interface_up(&bed, addr, RX2_IF), Some(1));
    stop(ring);
}

/// The only interface is deleted: run ends by itself, non-zero, and says so.
#[test]
fn a_run_whose_every_interface_is_gone_ends_non_zero() {
    let bed = bed();
    let dir = scratch("links-gone");
    let ring = common::start_ringcap(&bed, "run", &["--dir", dir.to_str().unwrap(), "-G", "0"]);
    assert!(Command::new("ip").args(["-n", &bed.rx_ns, "link", "del", RX_IF]).status().unwrap().success());
    let (status, stderr) = ring.finish(WAIT);
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    assert!(stderr.iter().any(|l| l.contains("no interface left to capture")), "{stderr:?}");
}

//! `ringcap bench`: the self-test's report adds up and matches its trials' counters, the
//! HTML opens in a real browser with every plot drawn, an external generator is followed
//! on a real (veth) interface, and bad input gets a clear error, a slow disk a verdict.
mod common;

use common::OutputWithin;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{bed, scratch, FaultyFs, RINGCAP};
use ringcap_tools::frames::FrameTemplate;
use ringcap_tools::generator::{transmit, Plan};
use ringcap_tools::testbed::{TestBed, RX_IF, SINK_MAC, TX_IF, TX_MAC};
use serde_json::Value;

/// A short search: what CI can afford, with every part of the report exercised.
const SHORT: &[&str] = &["--trial", "0.5", "--trials", "1", "--confirm", "1", "--tolerance", "0.25"];

fn run_bench(args: &[&str], dir: &Path, out: &Path) -> (Value, String) {
    let output = Command::new(RINGCAP)
        .arg("bench")
        .args(args)
        .args(SHORT)
        .args(["--dir", dir.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .output_within_deadline();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    (report, stdout)
}

/// Every trial's ledger adds up to what was offered, and says what the trial's own
/// statistics snapshot (kept beside the report) said.
fn assert_ledgers_add_up(report: &Value, out: &Path) {
    let trials = report["trials"].as_array().unwrap();
    assert!(!trials.is_empty());
    for trial in trials {
        let l = &trial["ledger"];
        let n = |k: &str| l[k].as_u64().unwrap_or_else(|| panic!("{k} in {l}"));
        assert_eq!(l["unaccounted"].as_i64(), Some(0), "trial {}: {l}", trial["number"]);
        let lines = [
            "nic_dropped",
            "not_selected",
            "kernel_dropped",
            "xsk_dropped",
            "reader_queue_dropped",
            "writer_lost",
            "captured",
        ];
        assert_eq!(lines.iter().map(|k| n(k)).sum::<u64>(), n("offered"), "trial {}: {l}", trial["number"]);
        // Each line is its own counter: the interface's drops are the interface's counters.
        let interface = &trial["interface"];
        let counted = ["rx_dropped", "rx_missed_errors", "rx_fifo_errors", "peer_tx_dropped"]
            .iter()
            .map(|k| interface[k].as_u64().unwrap_or_else(|| panic!("{k} in {interface}")))
            .sum::<u64>();
        assert_eq!(n("nic_dropped"), counted, "trial {}: {l} {interface}", trial["number"]);
        assert_eq!(n("seen") + n("nic_dropped"), n("offered"), "the bed drops nothing unseen: {l}");
        if trial["mode"] != "tcpdump" {
            let file = trial["stats_file"]
                .as_str()
                .unwrap_or_else(|| panic!("a ringcap trial keeps its stats: {trial}"));
            let stats: Value = serde_json::from_slice(&std::fs::read(out.join(file)).unwrap()).unwrap();
            assert_eq!(stats["kernel"]["seen"].as_u64(), Some(n("seen")), "{file}");
            assert_eq!(stats["kernel"]["ring_full"].as_u64(), Some(n("kernel_dropped")), "{file}");
            assert_eq!(stats["reader"]["queue_dropped"].as_u64(), Some(n("reader_queue_dropped")), "{file}");
            assert_eq!(stats["storage"]["packets_written"].as_u64(), Some(n("captured")), "{file}");
            assert_eq!(stats["storage"]["packets_lost"].as_u64(), Some(n("writer_lost")), "{file}");
        }
        assert!(!trial["cores"].as_array().unwrap().is_empty(), "CPU per core: {trial}");
    }
}

#[test]
fn the_self_test_report_adds_up_and_renders_in_a_browser() {
    let dir = scratch("bench-dir");
    std::fs::create_dir_all(&dir).unwrap();
    // Someone else's file in --dir: the bench writes beside it and leaves it alone.
    std::fs::write(dir.join("evidence.pcap"), b"not ringcap's").unwrap();
    let out = scratch("bench-out");
    let (report, stdout) =
        run_bench(&["--self-test", "--sizes", "64,imix", "--modes", "ring", "--max-disk", "1G"], &dir, &out);
    assert_eq!(report["schema"], "ringcap-bench/1");
    assert_eq!(report["environment"]["driver"], "veth");
    assert_ledgers_add_up(&report, &out);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one result per frame size: {results:?}");
    for (result, size) in results.iter().zip(["64 B", "IMIX"]) {
        assert_eq!(result["size"], size);
        assert_eq!(result["mode"], "ring");
        // A rate was found, or the report says where the capture lost first.
        assert!(result["zero_loss_pps"].is_f64() || result["limited_by"].is_string(), "{result}");
        if let Some(trial) = result["at_trial"].as_u64() {
            let trial = report["trials"].as_array().unwrap().iter().find(|t| t["number"] == trial).unwrap();
            assert_eq!(
                trial["ledger"]["captured"], trial["ledger"]["offered"],
                "the rate's trial lost nothing"
            );
            let days = result["retention_days"].as_f64().unwrap();
            let per_second =
                result["zero_loss_pps"].as_f64().unwrap() * result["disk_bytes_per_frame"].as_f64().unwrap();
            assert!(
                (days - (1u64 << 30) as f64 / per_second / 86_400.0).abs() < 1e-6 * days.max(1.0),
                "{result}"
            );
        }
    }
    // The terminal had a line per trial and the table.
    let trials = report["trials"].as_array().unwrap().len();
    assert_eq!(stdout.lines().filter(|l| l.starts_with('[')).count(), trials, "{stdout}");
    assert!(stdout.contains("| frames |") && stdout.contains("report.html"), "{stdout}");
    // Nothing of the bench's is left in --dir; what was there before still is.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["evidence.pcap"]);
    assert_eq!(std::fs::read(dir.join("evidence.pcap")).unwrap(), b"not ringcap's");

    // A real browser renders the page: three plots, the tables, and pixels.
    let html = out.join("report.html");
    let url = format!("file://{}", html.display());
    let dom = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", &url])
        .output_within_deadline();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for id in ["plot-rates", "plot-loss", "plot-cpu", "results", "ledger", "environment"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id} missing from the rendered page");
    }
    assert_eq!(dom.matches("<svg").count(), 3, "every plot is an SVG");
    let shot = out.join("shot.png");
    let status = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,2400"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let colors: std::collections::HashSet<&[u8]> =
        pixels[..frame.buffer_size()].chunks(frame.color_type.samples()).collect();
    assert!(colors.len() > 50, "the screenshot is blank or nearly: {} colours", colors.len());
}

#[test]
fn an_external_generator_is_followed_rate_by_rate_on_a_real_interface() {
    let bed = bed();
    let (dir, out) = (scratch("bench-ext-dir"), scratch("bench-ext-out"));
    std::fs::create_dir_all(&dir).unwrap();
    // ringcap bench runs where the interface is; the test is the external generator.
    let mut bench = bed
        .rx(RINGCAP)
        .args(["bench", "-i", RX_IF, "--rates", "20000,40000", "--sizes", "64", "--modes", "ring"])
        .args(["--trial", "0.5", "--trials", "1", "--flow-packets", "1"])
        .args(["--dir", dir.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(bench.stdout.take().unwrap());
    let mut sent = Vec::new();
    for line in stdout.lines().map_while(Result::ok) {
        let Some(rate) =
            line.split(" at ").nth(1).and_then(|r| r.split(' ').next()).and_then(|r| r.parse::<f64>().ok())
        else {
            continue;
        };
        assert!(line.contains("send 64 B frames to veth-rx"), "{line}");
        // 0.8 s at the rate asked: longer than the trial, then the generator stops.
        let count = (rate * 0.8) as u64;
        let template = FrameTemplate { src_mac: TX_MAC, dst_mac: SINK_MAC, ..FrameTemplate::default() };
        let frames = vec![template.udp(60, 1, 0)];
        TestBed::in_namespace(&bed.tx_ns, move || {
            let ifindex = capture_daemon::kernel::interface_index(TX_IF).unwrap();
            transmit(ifindex, &Plan { frames, count, chunk: 4096, rate: Some(rate), until: None }).unwrap()
        })
        .join()
        .unwrap()
        .unwrap();
        sent.push(count);
    }
    let status = bench.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(bench.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(sent.len(), 2, "one prompt per rate");
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_ledgers_add_up(&report, &out);
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), sent.len(), "a trial per rate");
    for (trial, count) in trials.iter().zip(&sent) {
        // Offered is what the interface counted: exactly what the test sent.
        assert_eq!(trial["ledger"]["offered"].as_u64(), Some(*count), "{trial}");
        assert_eq!(trial["ledger"]["captured"].as_u64(), Some(*count), "{trial}");
        // One flow: with --flow-packets 1 each trial (a run of its own) keeps its first
        // frame whole and cuts the others' 18 bytes of payload.
        assert_eq!(trial["ledger"]["cut"].as_u64(), Some(count - 1), "{trial}");
        assert_eq!(trial["ledger"]["cut_bytes"].as_u64(), Some((count - 1) * 18), "{trial}");
        assert_eq!(trial["generator_cpu_seconds"], Value::Null);
    }
    let result = &report["results"][0];
    let rate = result["zero_loss_pps"].as_f64().unwrap();
    assert!(rate > 20_000.0, "the faster rate lost nothing either: {result}");
    assert_eq!(report["environment"]["interface"], RX_IF);
}

#[test]
fn bad_input_gets_a_clear_error_and_a_slow_disk_a_verdict() {
    let out = scratch("bench-bad");
    let refused = |args: &[&str], expect: &str| {
        let output = Command::new(RINGCAP)
            .arg("bench")
            .args(args)
            .args(["-o", out.to_str().unwrap()])
            .output_within_deadline();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    };
    refused(&["-i", "nosuch0"], "nosuch0");
    refused(&[], "--self-test");
    refused(&["--self-test", "port", "99999"], "port");
    refused(&["--self-test", "--sizes", "40"], "outside 64..=1518");
    refused(&["--self-test", "--dir", "/nonexistent/ringcap"], "/nonexistent/ringcap");
    // Not root: said plainly, nothing built.
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", RINGCAP, "bench", "--self-test"])
        .output_within_deadline();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("run it as root"));

    // A disk far slower than the capture: the bench finishes and says the writer lost first.
    let fs = FaultyFs::mount("bench-slow", Some(0.2));
    let slow_out = scratch("bench-slow-out");
    let args = ["--self-test", "--sizes", "1518", "--modes", "ring", "--no-compress"];
    let (report, _) = run_bench(&args, &fs.mountpoint, &slow_out);
    assert_ledgers_add_up(&report, &slow_out);
    let result = &report["results"][0];
    assert!(
        result["limited_by"].as_str().unwrap().starts_with("writer"),
        "a slow disk limits the writer: {result}"
    );
    let lost_to_writer: u64 = report["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ledger"]["reader_queue_dropped"].as_u64().unwrap())
        .sum();
    assert!(lost_to_writer > 0);
}

/// The children of process `pid`.
fn children(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    tasks
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// A bench stopped by SIGTERM alone (as a service manager or `timeout` stops it, without
/// the terminal's signal to its children) leaves nothing behind: its `ringcap run` child
/// is stopped, its trials' directory and its two namespaces are removed. (Before, all
/// three stayed, the child capturing on.)
#[test]
fn a_bench_stopped_by_sigterm_leaves_nothing_behind() {
    let (dir, out) = (scratch("bench-term"), scratch("bench-term-out"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bench = Command::new(RINGCAP)
        .args(["bench", "--self-test", "--sizes", "64", "--modes", "ring", "--trial", "30", "--trials", "1"])
        .args(["--dir", dir.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = bench.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let capture = loop {
        let running: Vec<u32> = children(pid)
            .into_iter()
            .filter(|c| {
                std::fs::read_to_string(format!("/proc/{c}/cmdline")).is_ok_and(|l| l.contains("run\0"))
            })
            .collect();
        if let Some(&capture) = running.first() {
            break capture;
        }
        assert!(std::time::Instant::now() < deadline, "no trial started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    std::thread::sleep(std::time::Duration::from_secs(1));
    let identify =
        Command::new("ip").args(["netns", "identify", &capture.to_string()]).output_within_deadline();
    let rx_ns = String::from_utf8_lossy(&identify.stdout).trim().to_string();
    let tx_ns = rx_ns.strip_suffix("-rx").map(|id| format!("{id}-tx")).unwrap_or_default();
    assert!(!tx_ns.is_empty(), "the capture runs in the bench's namespace: {rx_ns:?}");
    let work = dir.join(format!("ringcap-bench-{pid}"));
    assert!(work.exists());
    // SAFETY: signals our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = common::wait_with_deadline(&mut bench, std::time::Duration::from_secs(30));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        None,
        "it exited by itself: {status:?}"
    );
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{capture}")).exists() {
        assert!(std::time::Instant::now() < deadline, "the trial's ringcap run still runs");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!work.exists(), "the trials' directory is removed");
    let namespaces =
        String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output_within_deadline().stdout)
            .into_owned();
    for ns in [&rx_ns, &tx_ns] {
        assert!(
            !namespaces.lines().any(|l| l.split_whitespace().next() == Some(ns)),
            "{ns} is left: {namespaces}"
        );
    }
}

//! `bench capture` and `bench paths`: the highest rate at which each tool captures
//! every packet — ringcap's ring buffer path against tcpdump, and (`paths`) ringcap's
//! AF_XDP path too.
//!
//! The generator (`ringcap-gen`, BPF live frames) is paced by the receiver, so a run
//! at full speed measures the most the receiving side takes; when a tool loses packets
//! at that speed, paced runs at falling fractions of it find the highest rate with
//! zero loss. Loss is what reached the receiving interface (its rx counter) minus what
//! was written to the file; frames the veth pair itself dropped in a burst never reach
//! either tool and are reported apart as test-bed drops.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ringcap_tools::harness::{summary_count, CaptureProcess};
use ringcap_tools::testbed::{TestBed, RX_IF, TX_IF};
use serde::Serialize;
use serde_json::json;

use crate::report;

#[derive(clap::Args)]
pub struct Options {
    /// Frames per run for 64-byte frames (1514-byte runs send a quarter of it).
    #[arg(long, default_value_t = 2_000_000)]
    packets: u64,
    /// Frame sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "64,1514")]
    sizes: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Tool {
    /// `ringcap capture` through the BPF ring buffer.
    Ringcap,
    /// `ringcap capture --mode afxdp`.
    RingcapAfxdp,
    Tcpdump,
}

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::Ringcap => "ringcap ring buffer",
            Tool::RingcapAfxdp => "ringcap AF_XDP",
            Tool::Tcpdump => "tcpdump -w",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
struct Run {
    tool: Tool,
    frame_bytes: usize,
    target_pps: Option<f64>,
    sent: u64,
    /// Frames that reached the receiving interface.
    delivered: u64,
    /// Frames the veth pair dropped before any capture tool could see them.
    bed_dropped: u64,
    captured: u64,
    lost: u64,
    offered_pps: f64,
    seconds: f64,
    capture_cpu_seconds: f64,
}

impl Run {
    /// The rate at which frames reached the capture tool.
    fn delivered_pps(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(1e-9)
    }
}

fn release_dir() -> PathBuf {
    std::env::current_exe().expect("own path").parent().expect("in target/release").to_path_buf()
}

fn scratch_file() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    dir.join(format!("ringcap-bench-{}.pcap", std::process::id()))
}

fn run_once(tool: Tool, frame_bytes: usize, count: u64, target_pps: Option<f64>) -> Result<Run> {
    let bed = TestBed::new()?;
    let release = release_dir();
    let output = scratch_file();
    // tcpdump has no XDP program of its own; veth needs one on the receiver to accept live frames.
    let mut holder = None;
    let mut command = match tool {
        Tool::Ringcap | Tool::RingcapAfxdp => {
            let mut c = bed.rx(release.join("ringcap").to_str().expect("utf-8"));
            c.args(["capture", "-i", RX_IF, "-B", "65536", "-w", output.to_str().expect("utf-8")]);
            if tool == Tool::RingcapAfxdp {
                c.args(["--mode", "afxdp", "--force"]);
            }
            c
        }
        Tool::Tcpdump => {
            holder = Some(bed.hold_pass(release.join("ringcap-gen").to_str().expect("utf-8"))?);
            let mut c = bed.rx("tcpdump");
            c.args(["-i", RX_IF, "-n", "-s", "262144", "-B", "65536", "-w", output.to_str().expect("utf-8")]);
            c
        }
    };
    command.stdout(Stdio::null());
    let mut capture = CaptureProcess::spawn(command)?;
    if !capture.wait_listening() {
        bail!("{tool:?} did not start: {:?}", capture.stderr);
    }
    let chunk = match target_pps {
        None => count,
        Some(rate) => ((rate * 0.05) as u64).clamp(1000, count),
    };
    let mut generator = bed.tx(release.join("ringcap-gen").to_str().expect("utf-8"));
    generator.args([
        "send",
        "-i",
        TX_IF,
        "-c",
        &count.to_string(),
        "--sizes",
        &frame_bytes.to_string(),
        "--flows",
        "16",
        "--chunk",
        &chunk.to_string(),
    ]);
    if let Some(rate) = target_pps {
        generator.args(["--rate", &format!("{rate:.0}")]);
    }
    let rx_before = bed.rx_packets()?;
    let generated = generator.output().context("running ringcap-gen")?;
    if !generated.status.success() {
        bail!("ringcap-gen failed: {}", String::from_utf8_lossy(&generated.stderr));
    }
    let report: serde_json::Value = serde_json::from_slice(&generated.stdout)?;
    std::thread::sleep(Duration::from_millis(500));
    let delivered = bed.rx_packets()? - rx_before;
    capture.signal(libc::SIGINT);
    let finished = capture.finish_measured(Duration::from_secs(60));
    // tcpdump's XDP_PASS holder, if any, goes with the capture.
    drop(holder);
    let _ = std::fs::remove_file(&output);
    let captured = summary_count(&finished.stderr, "packets captured")
        .with_context(|| format!("no summary from {tool:?}: {:?}", finished.stderr))?;
    let sent = report["sent"].as_u64().unwrap_or(0);
    Ok(Run {
        tool,
        frame_bytes,
        target_pps,
        sent,
        delivered,
        bed_dropped: sent.saturating_sub(delivered),
        captured,
        lost: delivered.saturating_sub(captured),
        offered_pps: report["pps"].as_f64().unwrap_or(0.0),
        seconds: report["seconds"].as_f64().unwrap_or(0.0),
        capture_cpu_seconds: finished.cpu.as_secs_f64(),
    })
}

/// Full speed first; if anything is lost, paced runs at falling fractions of that speed.
fn zero_loss_rate(tool: Tool, frame_bytes: usize, count: u64, runs: &mut Vec<Run>) -> Result<Option<f64>> {
    let full = run_once(tool, frame_bytes, count, None)?;
    println!(
        "  {tool:?} {frame_bytes} B full speed: {:.0} pps offered, {} of {} delivered lost ({} dropped by veth)",
        full.offered_pps, full.lost, full.delivered, full.bed_dropped
    );
    let ceiling = full.offered_pps;
    let lossless = (full.lost == 0).then_some(full.delivered_pps());
    runs.push(full);
    if lossless.is_some() {
        return Ok(lossless);
    }
    for fraction in [0.8, 0.6, 0.45, 0.3, 0.2, 0.1] {
        let run = run_once(tool, frame_bytes, count, Some(ceiling * fraction))?;
        println!(
            "  {tool:?} {frame_bytes} B paced at {:.0} pps: {:.0} pps offered, {} of {} delivered lost ({} dropped by veth)",
            ceiling * fraction,
            run.offered_pps,
            run.lost,
            run.delivered,
            run.bed_dropped
        );
        let found = (run.lost == 0).then_some(run.delivered_pps());
        runs.push(run);
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// `bench capture`: the ring buffer path against tcpdump.
pub fn run(options: &Options) -> Result<()> {
    compare("capture", &[Tool::Ringcap, Tool::Tcpdump], options)
}

/// `bench paths`: the ring buffer and AF_XDP paths against tcpdump.
pub fn run_paths(options: &Options) -> Result<()> {
    compare("paths", &[Tool::Ringcap, Tool::RingcapAfxdp, Tool::Tcpdump], options)
}

/// Zero-loss rates of `tools` at each frame size, with ratios to tcpdump (the last tool).
fn compare(name: &str, tools: &[Tool], options: &Options) -> Result<()> {
    TestBed::remove_stale();
    let mut runs = Vec::new();
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for &size in &options.sizes {
        let count = if size > 512 { options.packets / 4 } else { options.packets };
        let mut rates = Vec::new();
        for &tool in tools {
            rates.push((tool, zero_loss_rate(tool, size, count, &mut runs)?));
        }
        let tcpdump = rates.iter().find(|(t, _)| *t == Tool::Tcpdump).and_then(|(_, r)| *r);
        let cpu = |tool: Tool| {
            runs.iter()
                .filter(|r| r.tool == tool && r.frame_bytes == size)
                .map(|r| r.capture_cpu_seconds / r.captured.max(1) as f64 * 1e9)
                .next()
                .unwrap_or(0.0)
        };
        for &(tool, rate) in &rates {
            let ratio = match (rate, tcpdump) {
                (Some(r), Some(t)) if t > 0.0 => Some(r / t),
                _ => None,
            };
            rows.push(vec![
                format!("{size} B"),
                tool.label().to_string(),
                rate.map_or("none found".into(), |r| format!("{:.3} Mpps", r / 1e6)),
                ratio.map_or("-".into(), |r| format!("{r:.2}x")),
                format!("{:.0}", cpu(tool)),
            ]);
            summary.push(json!({
                "frame_bytes": size,
                "tool": tool,
                "zero_loss_pps": rate,
                "ratio_to_tcpdump": ratio,
                "cpu_ns_per_packet": cpu(tool),
            }));
        }
    }
    println!();
    println!("zero-loss capture rate on the veth test bed (generator and capture share 2 cores)");
    report::print_table(&["frame", "tool", "zero-loss rate", "vs tcpdump", "CPU ns/pkt"], &rows);
    report::save_json(name, &json!({ "benchmark": name, "summary": summary, "runs": runs }))
}

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
//!
//! Each run also says what it cost: the kernel's own statistics of the XDP program on the
//! receiving interface (ns per packet; for tcpdump that program is the bare `XDP_PASS`
//! that veth needs, the floor, measured in the same bench run), and the machine's busy
//! CPU during the run (softirq included) minus the generator's own, per delivered packet.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ringcap_tools::harness::{summary_count, CaptureProcess};
use ringcap_tools::testbed::{TestBed, RX_IF, TX_IF};
use serde::Serialize;
use serde_json::json;

use crate::{kernel_stats, report};

#[derive(clap::Args)]
pub struct Options {
    /// Frames per run for 64-byte frames (1514-byte runs send a quarter of it).
    #[arg(long, default_value_t = 2_000_000)]
    packets: u64,
    /// Frame sizes to measure (`imix`: 64, 576 and 1514 bytes in 7:4:1).
    #[arg(long, value_delimiter = ',', default_value = "64,1514,imix")]
    sizes: Vec<FrameMix>,
}

/// The frames of a run: one size, or the simple IMIX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameMix {
    Bytes(usize),
    Imix,
}

impl std::str::FromStr for FrameMix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "imix" | "IMIX" => Ok(FrameMix::Imix),
            n => {
                n.parse().map(FrameMix::Bytes).map_err(|_| format!("{n:?} is neither a frame size nor imix"))
            }
        }
    }
}

impl FrameMix {
    /// The generator's `--sizes`, used in turn.
    fn sizes(self) -> String {
        match self {
            FrameMix::Bytes(n) => n.to_string(),
            FrameMix::Imix => [vec!["64"; 7], vec!["576"; 4], vec!["1514"]].concat().join(","),
        }
    }

    fn mean_bytes(self) -> usize {
        match self {
            FrameMix::Bytes(n) => n,
            FrameMix::Imix => (7 * 64 + 4 * 576 + 1514) / 12,
        }
    }

    fn label(self) -> String {
        match self {
            FrameMix::Bytes(n) => format!("{n} B"),
            FrameMix::Imix => "IMIX".into(),
        }
    }
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
    frames: FrameMix,
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
    /// CPU time of the capture process alone.
    capture_cpu_seconds: f64,
    /// The machine's busy CPU during the run minus the generator's: the capture process,
    /// the receive path and the XDP program (softirq).
    capture_all_cpu_seconds: f64,
    /// The kernel's run statistics of the XDP program on the receiving interface
    /// (for tcpdump: the bare XDP_PASS program veth needs).
    kernel_ns_per_packet: Option<f64>,
}

impl Run {
    /// The rate at which frames reached the capture tool.
    fn delivered_pps(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(1e-9)
    }

    fn cpu_ns_per_packet(&self) -> f64 {
        self.capture_all_cpu_seconds * 1e9 / self.delivered.max(1) as f64
    }
}

pub(crate) fn release_dir() -> PathBuf {
    std::env::current_exe().expect("own path").parent().expect("in target/release").to_path_buf()
}

fn scratch_file() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    dir.join(format!("ringcap-bench-{}.pcap", std::process::id()))
}

fn run_once(tool: Tool, frames: FrameMix, count: u64, target_pps: Option<f64>) -> Result<Run> {
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
        &frames.sizes(),
        "--flows",
        "16",
        "--chunk",
        &chunk.to_string(),
    ]);
    if let Some(rate) = target_pps {
        generator.args(["--rate", &format!("{rate:.0}")]);
    }
    let rx_before = bed.rx_packets()?;
    let kernel_before = kernel_stats::xdp_program_stats(&bed, RX_IF)?;
    let (busy_before, generator_before) = (kernel_stats::machine_busy()?, kernel_stats::children_cpu());
    let generated = generator.output().context("running ringcap-gen")?;
    if !generated.status.success() {
        bail!("ringcap-gen failed: {}", String::from_utf8_lossy(&generated.stderr));
    }
    let report: serde_json::Value = serde_json::from_slice(&generated.stdout)?;
    std::thread::sleep(Duration::from_millis(500));
    let delivered = bed.rx_packets()? - rx_before;
    let kernel_ns_per_packet = kernel_stats::xdp_program_stats(&bed, RX_IF)?.ns_per_run_since(&kernel_before);
    let all_cpu = (kernel_stats::machine_busy()? - busy_before)
        .saturating_sub(kernel_stats::children_cpu() - generator_before);
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
        frames,
        target_pps,
        sent,
        delivered,
        bed_dropped: sent.saturating_sub(delivered),
        captured,
        lost: delivered.saturating_sub(captured),
        offered_pps: report["pps"].as_f64().unwrap_or(0.0),
        seconds: report["seconds"].as_f64().unwrap_or(0.0),
        capture_cpu_seconds: finished.cpu.as_secs_f64(),
        capture_all_cpu_seconds: all_cpu.as_secs_f64(),
        kernel_ns_per_packet,
    })
}

/// Full speed first; if anything is lost, paced runs at falling fractions of that speed.
/// Returns the zero-loss rate, if one was found, and the run it was found in (or the last).
fn zero_loss_rate(
    tool: Tool,
    frames: FrameMix,
    count: u64,
    runs: &mut Vec<Run>,
) -> Result<(Option<f64>, Run)> {
    let show = |run: &Run, how: String| {
        println!(
            "  {tool:?} {} {how}: {:.0} pps offered, {} of {} delivered lost ({} dropped by veth), \
             {:.0} CPU ns/pkt, kernel {} ns/pkt",
            frames.label(),
            run.offered_pps,
            run.lost,
            run.delivered,
            run.bed_dropped,
            run.cpu_ns_per_packet(),
            run.kernel_ns_per_packet.map_or("-".into(), |k| format!("{k:.0}")),
        )
    };
    let full = run_once(tool, frames, count, None)?;
    show(&full, "full speed".into());
    let ceiling = full.offered_pps;
    runs.push(full.clone());
    if full.lost == 0 {
        return Ok((Some(full.delivered_pps()), full));
    }
    let mut last = full;
    for fraction in [0.8, 0.6, 0.45, 0.3, 0.2, 0.1] {
        let run = run_once(tool, frames, count, Some(ceiling * fraction))?;
        show(&run, format!("paced at {:.0} pps", ceiling * fraction));
        runs.push(run.clone());
        if run.lost == 0 {
            return Ok((Some(run.delivered_pps()), run));
        }
        last = run;
    }
    Ok((None, last))
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
    let _stats = kernel_stats::StatsEnabled::new()?;
    let mut runs = Vec::new();
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for &frames in &options.sizes {
        // Runs of about the same length: fewer frames as they grow.
        let count = match frames.mean_bytes() {
            0..=128 => options.packets,
            129..=512 => options.packets / 2,
            _ => options.packets / 4,
        };
        let mut found = Vec::new();
        for &tool in tools {
            found.push((tool, zero_loss_rate(tool, frames, count, &mut runs)?));
        }
        let tcpdump = found.iter().find(|(t, _)| *t == Tool::Tcpdump).map(|(_, f)| f);
        let floor = tcpdump.and_then(|(_, run)| run.kernel_ns_per_packet);
        for (tool, (rate, run)) in &found {
            let ratio = match (rate, tcpdump.and_then(|(r, _)| *r)) {
                (Some(r), Some(t)) if t > 0.0 => Some(r / t),
                _ => None,
            };
            let cpu_ratio = tcpdump.map(|(_, t)| run.cpu_ns_per_packet() / t.cpu_ns_per_packet().max(1e-9));
            let kernel = run.kernel_ns_per_packet;
            let kernel_ratio = match (kernel, floor) {
                (Some(k), Some(f)) if *tool != Tool::Tcpdump && f > 0.0 => Some(k / f),
                _ => None,
            };
            rows.push(vec![
                frames.label(),
                tool.label().to_string(),
                rate.map_or("none found".into(), |r| format!("{:.3} Mpps", r / 1e6)),
                ratio.map_or("-".into(), |r| format!("{r:.2}x")),
                format!("{:.0}", run.cpu_ns_per_packet()),
                cpu_ratio.map_or("-".into(), |r| format!("{r:.2}x")),
                match (*tool, kernel) {
                    (Tool::Tcpdump, Some(k)) => format!("{k:.0} (XDP_PASS floor)"),
                    (_, Some(k)) => format!("{k:.0}"),
                    (_, None) => "-".into(),
                },
                kernel_ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            ]);
            summary.push(json!({
                "frames": frames,
                "tool": tool,
                "zero_loss_pps": rate,
                "ratio_to_tcpdump": ratio,
                "cpu_ns_per_packet": run.cpu_ns_per_packet(),
                "cpu_ratio_to_tcpdump": cpu_ratio,
                "kernel_ns_per_packet": kernel,
                "kernel_ratio_to_xdp_pass": kernel_ratio,
            }));
        }
    }
    println!();
    println!("zero-loss capture rate on the veth test bed (generator and capture share 2 cores);");
    println!("CPU: the machine's busy time (softirq included) minus the generator's, per delivered packet,");
    println!("at the zero-loss rate; kernel: run_time_ns / run_cnt of the XDP program on the receiver");
    report::print_table(
        &[
            "frames",
            "tool",
            "zero-loss rate",
            "vs tcpdump",
            "CPU ns/pkt",
            "vs tcpdump",
            "kernel ns/pkt",
            "vs XDP_PASS",
        ],
        &rows,
    );
    report::save_json(name, &json!({ "benchmark": name, "summary": summary, "runs": runs }))
}

//! `bench flows`: what the flow table costs and what the per-flow cut buys, on real TCP
//! as users run it: bulk and small connections between the test bed's namespaces,
//! captured by `ringcap run --direction both`, in four configurations taken in turn in
//! the same run: no analysis (`--no-tcp-analysis --no-l7-analysis`, the baseline), the
//! TCP analysis alone (`--no-l7-analysis`: the difference to the next is what the ICMP
//! health costs on bulk TCP), the analysis (the default), and the analysis with
//! `--flow-bytes 64k`. For each: the kernel's own
//! run-time statistics of the XDP and TC egress programs (bpftool, as an operator reads
//! them), the bytes the ring stored, and the transfer's rate.
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringcap_tools::harness::CaptureProcess;
use ringcap_tools::testbed::{TestBed, RX_IF, RX_IP};
use serde::Serialize;
use serde_json::json;

use crate::kernel_stats::{self, ProgramStats};
use crate::report;

#[derive(clap::Args)]
pub struct Options {
    /// Bulk connections, each sending --bulk-bytes each way.
    #[arg(long, default_value_t = 16)]
    bulk: usize,
    /// Bytes each bulk connection sends each way.
    #[arg(long, default_value_t = 8 << 20)]
    bulk_bytes: usize,
    /// Small connections (2 KB each way), started alongside.
    #[arg(long, default_value_t = 16)]
    small: usize,
    /// Rounds: each runs every configuration once, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// The configurations compared: a label and the extra `run` options.
const CONFIGURATIONS: [(&str, &[&str]); 4] = [
    ("no analysis", &["--no-tcp-analysis", "--no-l7-analysis"]),
    ("TCP analysis alone (--no-l7-analysis)", &["--no-l7-analysis"]),
    ("analysis", &[]),
    ("analysis + --flow-bytes 64k", &["--flow-bytes", "64k"]),
];

const PORT: u16 = 8095;
const SMALL_BYTES: usize = 2000;

#[derive(Clone, Debug, Serialize)]
struct Measured {
    configuration: &'static str,
    round: usize,
    /// Kernel ns per run of the XDP program (arriving packets) and the TC egress program.
    xdp_ns_per_packet: Option<f64>,
    xdp_packets: u64,
    tc_ns_per_packet: Option<f64>,
    tc_packets: u64,
    /// Bytes of the ring's files (zstd-compressed pcap, as stored by default).
    ring_bytes: u64,
    /// Bytes the transfers moved (both directions) and how fast.
    transferred: u64,
    mbit_per_second: f64,
}

/// The statistics of the program named `name` (its BTF name; the kernel's own is cut to
/// 15 bytes): the TC programs are attached with TCX, which this bpftool does not list per device.
fn program_named(name: &str) -> Result<ProgramStats> {
    let out = Command::new("bpftool").args(["-j", "prog", "show"]).output().context("running bpftool")?;
    let programs: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let short = &name[..name.len().min(15)];
    let program = programs
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name || p["name"] == short))
        .with_context(|| format!("no program named {short} is loaded"))?;
    Ok(ProgramStats {
        run_time_ns: program["run_time_ns"].as_u64().unwrap_or(0),
        run_cnt: program["run_cnt"].as_u64().unwrap_or(0),
    })
}

/// `len` bytes no compressor can shrink, as the encrypted bulk of a real link.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ len as u64;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Runs the bulk and small connections to completion; returns the bytes moved.
fn transfer(bed: &TestBed, options: &Options) -> Result<u64> {
    let connections = options.bulk + options.small;
    let listener = TestBed::in_namespace(&bed.rx_ns, || TcpListener::bind((RX_IP, PORT)))
        .join()
        .expect("bind thread")??;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let handlers: Vec<_> = (0..connections)
            .map(|_| {
                let (mut stream, _) = listener.accept()?;
                Ok(std::thread::spawn(move || -> std::io::Result<()> {
                    let mut request = Vec::new();
                    stream.read_to_end(&mut request)?;
                    stream.write_all(&pattern(request.len()))
                }))
            })
            .collect::<std::io::Result<_>>()?;
        for handler in handlers {
            handler.join().expect("server thread")?;
        }
        Ok(())
    });
    let bulk_bytes = options.bulk_bytes;
    let bulk = options.bulk;
    let moved = TestBed::in_namespace(&bed.tx_ns, move || -> std::io::Result<u64> {
        let clients: Vec<_> = (0..connections)
            .map(|i| {
                std::thread::spawn(move || -> std::io::Result<u64> {
                    let bytes = if i < bulk { bulk_bytes } else { SMALL_BYTES };
                    let mut stream = TcpStream::connect((RX_IP, PORT))?;
                    stream.write_all(&pattern(bytes))?;
                    stream.shutdown(Shutdown::Write)?;
                    let mut reply = Vec::new();
                    stream.read_to_end(&mut reply)?;
                    Ok((bytes + reply.len()) as u64)
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().expect("client thread")).sum()
    })
    .join()
    .expect("client namespace thread")??;
    server.join().expect("server thread")?;
    Ok(moved)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

fn measure(
    bed: &TestBed,
    configuration: (&'static str, &[&str]),
    round: usize,
    options: &Options,
) -> Result<Measured> {
    let dir = std::env::temp_dir().join(format!("ringcap-bench-flows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ringcap = crate::capture::release_dir().join("ringcap");
    let mut command = bed.rx(ringcap.to_str().expect("utf-8"));
    command.args([
        "run",
        "-i",
        RX_IF,
        "--dir",
        dir.to_str().expect("utf-8"),
        "-G",
        "0",
        "--direction",
        "both",
    ]);
    command.args(configuration.1).stdout(Stdio::null());
    let mut capture = CaptureProcess::spawn(command)?;
    if !capture.wait_listening() {
        bail!("ringcap did not start: {:?}", capture.stderr);
    }
    let (xdp_before, tc_before) =
        (kernel_stats::xdp_program_stats(bed, RX_IF)?, program_named(capture_common::TC_EGRESS_PROGRAM)?);
    let started = Instant::now();
    let transferred = transfer(bed, options)?;
    let seconds = started.elapsed().as_secs_f64();
    let (xdp, tc) =
        (kernel_stats::xdp_program_stats(bed, RX_IF)?, program_named(capture_common::TC_EGRESS_PROGRAM)?);
    capture.signal(libc::SIGINT);
    let finished = capture.finish_measured(Duration::from_secs(60));
    if !finished.status.success() {
        bail!("ringcap failed: {:?}", finished.stderr);
    }
    let ring_bytes = dir_bytes(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Measured {
        configuration: configuration.0,
        round,
        xdp_ns_per_packet: xdp.ns_per_run_since(&xdp_before),
        xdp_packets: xdp.run_cnt - xdp_before.run_cnt,
        tc_ns_per_packet: tc.ns_per_run_since(&tc_before),
        tc_packets: tc.run_cnt - tc_before.run_cnt,
        ring_bytes,
        transferred,
        mbit_per_second: transferred as f64 * 8.0 / seconds / 1e6,
    })
}

/// The lowest and highest of `values`, as "a-b" (or "a" when they agree).
fn range(values: impl Iterator<Item = f64>, digits: usize) -> String {
    let values: Vec<f64> = values.collect();
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if values.is_empty() {
        "-".into()
    } else if format!("{lo:.digits$}") == format!("{hi:.digits$}") {
        format!("{lo:.digits$}")
    } else {
        format!("{lo:.digits$}-{hi:.digits$}")
    }
}

pub fn run(options: &Options) -> Result<()> {
    TestBed::remove_stale();
    let _stats = kernel_stats::StatsEnabled::new()?;
    let bed = TestBed::new()?;
    let mut measured = Vec::new();
    for round in 1..=options.rounds {
        for configuration in CONFIGURATIONS {
            let m = measure(&bed, configuration, round, options)?;
            println!(
                "  round {round}, {}: XDP {:.0} ns x {}, TC egress {:.0} ns x {}, ring {} bytes, {:.0} Mbit/s",
                m.configuration,
                m.xdp_ns_per_packet.unwrap_or(0.0),
                m.xdp_packets,
                m.tc_ns_per_packet.unwrap_or(0.0),
                m.tc_packets,
                m.ring_bytes,
                m.mbit_per_second
            );
            measured.push(m);
        }
    }
    // Ratios within each round (the same machine moment), then their ranges.
    let of = |name: &'static str| measured.iter().filter(move |m| m.configuration == name);
    let baseline: Vec<&Measured> = of(CONFIGURATIONS[0].0).collect();
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    for (name, _) in CONFIGURATIONS {
        let runs: Vec<&Measured> = of(name).collect();
        let added = |pick: fn(&Measured) -> Option<f64>| {
            range(runs.iter().zip(&baseline).filter_map(|(m, b)| Some(pick(m)? - pick(b)?)), 0)
        };
        let smaller = range(
            runs.iter().zip(&baseline).map(|(m, b)| b.ring_bytes as f64 / m.ring_bytes.max(1) as f64),
            1,
        );
        rows.push(vec![
            name.to_string(),
            range(runs.iter().filter_map(|m| m.xdp_ns_per_packet), 0),
            added(|m| m.xdp_ns_per_packet),
            range(runs.iter().filter_map(|m| m.tc_ns_per_packet), 0),
            added(|m| m.tc_ns_per_packet),
            range(runs.iter().map(|m| m.ring_bytes as f64 / 1e6), 1),
            format!("{smaller}x"),
            range(runs.iter().map(|m| m.mbit_per_second), 0),
        ]);
        figures.push(json!({ "configuration": name, "runs": runs }));
    }
    println!();
    println!(
        "real TCP through the test bed ({} bulk connections of {} MiB each way, {} small), \
         `ringcap run --direction both`, {} rounds; kernel ns per packet from bpftool \
         (run_time_ns / run_cnt), added: against --no-tcp-analysis --no-l7-analysis in the same \
         round (target: under 100 ns for the TCP analysis, under 10 ns more for the L7 health); ring: bytes stored (target with --flow-bytes 64k: 10x fewer)",
        options.bulk,
        options.bulk_bytes >> 20,
        options.small,
        options.rounds
    );
    report::print_table(
        &[
            "configuration",
            "XDP ns/pkt",
            "added",
            "TC egress ns/pkt",
            "added",
            "ring MB",
            "fewer bytes",
            "Mbit/s",
        ],
        &rows,
    );
    report::save_json("flows", &json!({ "benchmark": "flows", "results": figures }))
}

//! The `ringcap` command line: a thin layer over the library.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use capture_common::Counter;
use capture_daemon::capture::ReaderConfig;
use capture_daemon::kernel::{KernelConfig, XdpModeChoice};
use capture_daemon::output::PcapStream;
use capture_daemon::pcap::DEFAULT_SNAPLEN;
use capture_daemon::session::{run_capture, CaptureOptions, CaptureSummary};
use clap::{Args, Parser, Subcommand};

/// ringcap: an always-on packet capture appliance, a network flight recorder.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture packets from an interface into one pcap file, like `tcpdump -w`.
    Capture(CaptureArgs),
}

/// Kernel-side options shared by every capturing command.
#[derive(Args, Clone)]
struct KernelArgs {
    /// Interface to capture on.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    interface: String,
    /// Bytes to keep of each packet; 0 means 262144 (the kernel copies at most 16384).
    #[arg(short = 's', long = "snapshot-length", value_name = "SNAPLEN", default_value_t = DEFAULT_SNAPLEN,
          value_parser = parse_snaplen)]
    snaplen: u32,
    /// Kernel ring buffer size in KiB (rounded up to a power of two).
    #[arg(short = 'B', long = "buffer-size", value_name = "KIB", default_value_t = 65536,
          value_parser = clap::value_parser!(u32).range(4..=4 * 1024 * 1024))]
    buffer_kib: u32,
    /// XDP attach mode: auto tries native, then generic, and says which it got.
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    xdp_mode: XdpModeChoice,
}

#[derive(Args)]
struct CaptureArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    /// Write packets to this pcap file; `-` writes to standard output.
    #[arg(short = 'w', value_name = "FILE")]
    write: PathBuf,
    /// Stop after this many packets.
    #[arg(short = 'c', value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
}

fn parse_snaplen(text: &str) -> Result<u32, String> {
    let value: u64 = text.parse().map_err(|_| format!("snaplen {text:?} is not a number of bytes"))?;
    match value {
        0 => Ok(DEFAULT_SNAPLEN),
        1..=262_144 => Ok(value as u32),
        _ => Err(format!("snaplen {value} is too large: use 0 or 1..=262144 bytes")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Capture(args) => capture(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ringcap: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

impl KernelArgs {
    fn capture_options(&self, reader: ReaderConfig, duration: Option<Duration>) -> CaptureOptions {
        CaptureOptions {
            interfaces: vec![self.interface.clone()],
            xdp_mode: self.xdp_mode,
            kernel: KernelConfig {
                snaplen: self.snaplen,
                ring_bytes: (self.buffer_kib * 1024).next_power_of_two(),
            },
            reader,
            duration,
            queue_batches: 256,
        }
    }
}

fn parse_duration(seconds: Option<f64>) -> anyhow::Result<Option<Duration>> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| anyhow::anyhow!("--duration {s} is not a valid number of seconds"))
        })
        .transpose()
}

fn capture(args: CaptureArgs) -> anyhow::Result<ExitCode> {
    let duration = parse_duration(args.duration)?;
    let snaplen = args.kernel.snaplen;
    let reader = ReaderConfig { snaplen, max_packets: args.count, ..ReaderConfig::default() };
    let options = args.kernel.capture_options(reader, duration);
    // Check the interface before creating the output file, so a typo leaves no empty file.
    capture_daemon::kernel::interface_index(&args.kernel.interface)?;
    let sink = PcapStream::create(&args.write, snaplen)
        .with_context(|| format!("cannot create {}", args.write.display()))?;
    let summary = run_capture(&options, Box::new(sink), |attached| {
        for (iface, mode) in attached {
            eprintln!(
                "ringcap: listening on {iface} (XDP {mode} mode), link-type EN10MB (Ethernet), snapshot length {snaplen} bytes"
            );
        }
    })?;
    print_summary(&summary);
    Ok(match summary.write_error {
        Some(error) => {
            eprintln!("ringcap: error: writing {} failed: {error}", args.write.display());
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    })
}

/// tcpdump's closing lines, plus every other place a packet can be lost.
fn print_summary(summary: &CaptureSummary) {
    eprintln!("{} packets captured", summary.captured);
    eprintln!("{} packets received by filter", summary.kernel.get(Counter::Seen));
    eprintln!("{} packets dropped by kernel", summary.kernel.dropped());
    eprintln!("{} packets dropped by ringcap (writer queue full)", summary.queue_dropped);
    if summary.write_dropped > 0 {
        eprintln!("{} packets dropped by ringcap (write errors)", summary.write_dropped);
    }
}

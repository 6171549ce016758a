//! `ringcap capture`: one pcap or pcapng file, like `tcpdump -w`.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use capture_common::Counter;
use capture_daemon::output::PcapStream;
use capture_daemon::retrieve::out::Format;
use capture_daemon::session::{run_capture, CaptureSummary};
use clap::Args;

use super::choices::choice;

use super::args::{KernelArgs, StopArgs};

#[derive(Args)]
pub(crate) struct CaptureArgs {
    #[command(flatten)]
    pub(crate) kernel: KernelArgs,
    #[command(flatten)]
    pub(crate) stop: StopArgs,
    /// Write packets to this pcap file; `-` writes to standard output.
    #[arg(short = 'w', value_name = "FILE")]
    pub(crate) write: PathBuf,
    /// File format; pcapng (with each packet's direction) is the default for --direction both.
    #[arg(long, value_parser = choice::<Format>())]
    pub(crate) format: Option<Format>,
}

/// Says, as tcpdump does, where capture listens.
pub(crate) fn announce(attached: &[(String, Vec<String>)], snaplen: u32) {
    for (iface, hooks) in attached {
        eprintln!(
            "ringcap: listening on {iface} ({}), link-type EN10MB (Ethernet), snapshot length {snaplen} bytes",
            hooks.join(", ")
        );
    }
}

pub(crate) fn capture(args: CaptureArgs) -> anyhow::Result<ExitCode> {
    args.stop.duration()?;
    // Check before creating the output file, so a typo leaves no empty file.
    let checked = args.kernel.check()?;
    let pcapng = args.kernel.pcapng(args.format);
    let names: Vec<&str> = args.kernel.interface.iter().map(String::as_str).collect();
    let sink = PcapStream::create(&args.write, args.kernel.snaplen, pcapng.then_some(&names[..]))
        .with_context(|| format!("cannot create {}", args.write.display()))?;
    let options = args.kernel.capture_options(checked, &args.stop, pcapng)?;
    let snaplen = args.kernel.snaplen;
    let summary = run_capture(&options, Box::new(sink), |attached| announce(attached, snaplen))?;
    print_summary(&summary);
    Ok(session_end(summary, &args.write.display()))
}

/// How a capture session ended, for the exit status: failure after a write error (`written`
/// names what was being written) or when its interfaces ended it, so that a service
/// manager starts it again.
pub(crate) fn session_end(summary: CaptureSummary, written: &dyn std::fmt::Display) -> ExitCode {
    match (summary.write_error, summary.links_end) {
        (Some(error), _) => {
            eprintln!("ringcap: error: writing {written} failed: {error}");
            ExitCode::FAILURE
        }
        (None, Some(end)) => {
            eprintln!("ringcap: error: {end}");
            ExitCode::FAILURE
        }
        (None, None) => ExitCode::SUCCESS,
    }
}

/// tcpdump's closing lines, plus every other place a packet can be lost.
pub(crate) fn print_summary(summary: &CaptureSummary) {
    eprintln!("{} packets captured", summary.captured);
    eprintln!("{} packets received by filter", summary.kernel.get(Counter::Seen));
    eprintln!("{} packets dropped by kernel", summary.kernel.dropped() + summary.xsk.dropped());
    if summary.xsk != Default::default() {
        eprintln!(
            "AF_XDP sockets: {} dropped (no free frame or too long), {} dropped (receive ring full), \
             fill ring found empty {} times",
            summary.xsk.rx_dropped, summary.xsk.rx_ring_full, summary.xsk.fill_ring_empty
        );
    }
    if summary.kernel.get(Counter::XskNoSocket) > 0 {
        eprintln!(
            "{} packets dropped: no AF_XDP socket on their queue",
            summary.kernel.get(Counter::XskNoSocket)
        );
    }
    eprintln!(
        "{} packets not selected: {} by the filter, {} by sampling, {} by --max-pps",
        summary.kernel.get(Counter::Filtered)
            + summary.kernel.get(Counter::SampledOut)
            + summary.kernel.get(Counter::RateLimited),
        summary.kernel.get(Counter::Filtered),
        summary.kernel.get(Counter::SampledOut),
        summary.kernel.get(Counter::RateLimited)
    );
    let cut = |counter| summary.kernel.get(counter);
    let cut_packets = cut(Counter::CutFlowBytes) + cut(Counter::CutFlowPackets) + cut(Counter::CutEncrypted);
    if cut_packets > 0 {
        eprintln!(
            "{cut_packets} packets cut to their headers: {} past --flow-bytes, {} past --flow-packets, \
             {} encrypted; {} bytes not stored",
            cut(Counter::CutFlowBytes),
            cut(Counter::CutFlowPackets),
            cut(Counter::CutEncrypted),
            cut(Counter::CutFlowBytesBytes)
                + cut(Counter::CutFlowPacketsBytes)
                + cut(Counter::CutEncryptedBytes)
        );
    }
    eprintln!("{} packets dropped by ringcap (writer queue full)", summary.queue_dropped);
    if summary.write_dropped > 0 {
        eprintln!("{} packets dropped by ringcap (write errors)", summary.write_dropped);
    }
    if summary.reorder_window_exceeded > 0 {
        eprintln!(
            "{} packets written out of time order (later than --reorder-window)",
            summary.reorder_window_exceeded
        );
    }
    if summary.unstamped > 0 {
        eprintln!("{} packets timestamped on arrival in user space (no kernel timestamp)", summary.unstamped);
    }
}

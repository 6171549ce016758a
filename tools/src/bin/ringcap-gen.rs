//! `ringcap-gen`: line-rate traffic out of a veth end, for tests, the demo and benchmarks.
//! Run it in the namespace of the sending interface (`ip netns exec NS ringcap-gen ...`).
use std::ffi::CString;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ringcap_tools::bpf::{ConstantXdp, LossInjector, XdpVerdict};
use ringcap_tools::frames::FrameTemplate;
use ringcap_tools::generator::{transmit, Plan};
use ringcap_tools::testbed::{SINK_MAC, TX_MAC};

#[derive(Parser)]
#[command(about = "Generate traffic through a veth pair with BPF_PROG_TEST_RUN live frames")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Transmit UDP frames out of IFACE; prints a JSON report on stdout.
    Send {
        #[arg(short = 'i', long)]
        iface: String,
        /// Frames to send in total.
        #[arg(short = 'c', long)]
        count: u64,
        /// Frame sizes in bytes (comma list), used in turn.
        #[arg(long, value_delimiter = ',', default_value = "64")]
        sizes: Vec<usize>,
        /// Distinct UDP flows (source ports), used in turn.
        #[arg(long, default_value_t = 1)]
        flows: u16,
        /// Copies of each frame per syscall; 1 makes every frame distinct (sequence numbers).
        #[arg(long, default_value_t = 64)]
        chunk: u32,
        /// Target rate in frames per second (default: as fast as the receiver takes them).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Attach an XDP_PASS program to IFACE until killed, so veth accepts XDP frames
    /// when nothing else (like a tcpdump-only receiver) has an XDP program on it.
    HoldPass {
        #[arg(short = 'i', long)]
        iface: String,
    },
    /// Drop every N-th (a power of two) packet longer than --min-len arriving on IFACE
    /// (at TC ingress, after XDP), until killed: loss for real TCP traffic (netem is not
    /// available here).
    Lose {
        #[arg(short = 'i', long)]
        iface: String,
        #[arg(long, default_value_t = 16)]
        one_in: u32,
        #[arg(long, default_value_t = 200)]
        min_len: u32,
    },
}

fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c = CString::new(name)?;
    // SAFETY: NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => bail!("interface {name} not found in this network namespace"),
        i => Ok(i),
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Send { iface, count, sizes, flows, chunk, rate } => {
            let template = FrameTemplate { src_mac: TX_MAC, dst_mac: SINK_MAC, ..FrameTemplate::default() };
            let distinct =
                if chunk == 1 { count.min(1 << 20) as usize } else { sizes.len() * flows as usize };
            let frames = (0..distinct.max(1))
                .map(|i| template.udp(sizes[i % sizes.len()], (i % flows.max(1) as usize) as u16, i as u64))
                .collect();
            let plan = Plan { frames, count, chunk, rate, until: None };
            let report = transmit(ifindex(&iface)?, &plan).context("transmitting live frames")?;
            println!(
                "{{\"sent\":{},\"seconds\":{:.6},\"pps\":{:.0}}}",
                report.sent,
                report.elapsed.as_secs_f64(),
                report.pps()
            );
        }
        Cmd::Lose { iface, one_in, min_len } => {
            let injector =
                LossInjector::attach(ifindex(&iface)?, one_in, min_len).context("attaching the dropper")?;
            println!("ready");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                eprintln!("ringcap-gen: {} packets seen, every {one_in}th dropped", injector.seen()?);
            }
        }
        Cmd::HoldPass { iface } => {
            let program = ConstantXdp::load(XdpVerdict::Pass)?;
            let _link = program.attach(ifindex(&iface)?).context("attaching XDP_PASS")?;
            println!("ready");
            loop {
                std::thread::park();
            }
        }
    }
    Ok(())
}

//! `ringcap-bench`: ringcap's benchmarks. Each measures ringcap next to its peers
//! (tcpdump, ...) in the same run, prints a table and writes its figures as JSON under
//! `target/bench/`. Speed is measured here, never asserted in tests.
mod capture;
mod filter;
mod flows;
mod kernel_stats;
mod l7;
mod pull;
mod report;
mod storage;
mod tcp;
mod triggers;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "ringcap benchmarks")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Zero-loss capture rate of ringcap and `tcpdump -w` on the veth test bed.
    Capture(capture::Options),
    /// Zero-loss capture rate of the ring buffer and AF_XDP paths and `tcpdump -w`.
    Paths(capture::Options),
    /// Kernel ns per packet of the in-kernel filter at 1, 5 and 20 primitives, vs libpcap's BPF.
    Filter(filter::Options),
    /// A filtered 5-minute window out of a multi-gigabyte ring vs zstdcat | tcpdump.
    Pull(pull::Options),
    /// Kernel ns per packet of the TCP analysis at 1, 10k and 1M flows, off and on.
    Tcp(tcp::Options),
    /// Real TCP: what the flow table costs per packet (kernel statistics, against
    /// --no-tcp-analysis) and what --flow-bytes 64k saves in ring bytes.
    Flows(flows::Options),
    /// The ring writer alone at zstd levels 0, 1, 3, and the whole path against tcpdump + zstd.
    Storage(storage::Options),
    /// Kernel ns per packet of the ICMP, DNS, TLS and HTTP health on bulk TCP, DNS, HTTP and
    /// ICMP, off and on.
    L7(l7::Options),
    /// 100 trigger rules: a round's cost in process (against the scrape alone) and the
    /// zero-loss rate with and without them.
    Triggers(triggers::Options),
}

fn main() -> Result<()> {
    match Cli::parse().bench {
        Bench::Capture(options) => capture::run(&options),
        Bench::Paths(options) => capture::run_paths(&options),
        Bench::Storage(options) => storage::run(&options),
        Bench::Filter(options) => filter::run(&options),
        Bench::Pull(options) => pull::run(&options),
        Bench::Tcp(options) => tcp::run(&options),
        Bench::Flows(options) => flows::run(&options),
        Bench::Triggers(options) => triggers::run(&options),
        Bench::L7(options) => l7::run(&options),
    }
}

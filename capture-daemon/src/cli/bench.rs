//! `ringcap bench`: a capture throughput report for the NIC and box at hand.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use capture_daemon::bench::search::SearchSettings;
use capture_daemon::bench::trial::Traffic;
use capture_daemon::bench::{self, BenchConfig, FrameSize, Mode};
use capture_daemon::filter::Filter;
use capture_daemon::kernel::Direction;
use capture_daemon::storage::budget::DiskLimit;
use clap::Args;

use super::choices::{choice, Choice};
use ringcap_tools::testbed::TestBed;

use super::args::{parse_disk_limit, parse_flow_bytes, parse_snaplen};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["self_test", "interface"]))]
pub(crate) struct BenchArgs {
    /// Build a veth test bed in two network namespaces and feed it with ringcap's own
    /// generator (both removed afterwards): no hardware or other tool needed.
    #[arg(long)]
    self_test: bool,
    /// Measure a real interface fed by an external generator (TRex, pktgen, a mirror
    /// port): each trial says what to send; offered frames are read from the
    /// interface's own counters.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    interface: Option<String>,
    /// Frame sizes in bytes with FCS (64..1518) and `imix` (64/594/1518 in 7:4:1).
    #[arg(long, value_delimiter = ',', value_parser = FrameSize::parse,
          default_value = "64,128,256,512,1024,1280,1518,imix")]
    sizes: Vec<FrameSize>,
    /// Capture modes to search: `ring` (BPF ring buffer), `afxdp` (AF_XDP sockets).
    #[arg(long, value_parser = choice::<Mode>(), value_delimiter = ',', default_value = "ring,afxdp")]
    modes: Vec<Mode>,
    /// Also search `tcpdump -w` with the same snap length and filter, as the peer.
    #[arg(long)]
    tcpdump: bool,
    /// Seconds of traffic in each search trial.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    trial: f64,
    /// Trials at each rate; a rate passes only if none of them loses a frame.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    trials: u32,
    /// Seconds of the confirmation run at the rate found.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    confirm: f64,
    /// The search stops when the lossless and lossy rates are this close, as a fraction
    /// of the fastest rate offered.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.05)]
    tolerance: f64,
    /// With -i: the rates to follow (frames/s), in order, instead of a search.
    #[arg(long, value_name = "PPS", value_delimiter = ',')]
    rates: Option<Vec<f64>>,
    /// Where the trials' rings are written: the disk whose speed and retention count.
    #[arg(long, value_name = "DIR", default_value = "/var/tmp")]
    dir: PathBuf,
    /// The ring's disk budget for the retention figures (default: the filesystem of --dir).
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_limit)]
    max_disk: Option<DiskLimit>,
    /// Directory for report.json, report.html and each trial's statistics
    /// (default: ./ringcap-bench-DATE-TIME).
    #[arg(short = 'o', long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Bytes to keep of each packet, as for `run`.
    #[arg(short = 's', long = "snapshot-length", value_name = "SNAPLEN", value_parser = parse_snaplen)]
    snaplen: Option<u32>,
    /// zstd level of the trials' rings, as for `run` (0: plain pcap).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..=19))]
    zstd_level: Option<i32>,
    /// Plain pcap rings, as for `run`.
    #[arg(long)]
    no_compress: bool,
    /// Compression threads, as for `run`.
    #[arg(long, value_name = "N")]
    compress_threads: Option<u16>,
    /// Kernel ring buffer size in KiB, as for `run`.
    #[arg(short = 'B', long = "buffer-size", value_name = "KIB")]
    buffer_kib: Option<u32>,
    /// Directions to capture, as for `run`.
    #[arg(long, value_parser = choice::<Direction>())]
    direction: Option<Direction>,
    /// Turn off the in-kernel TCP analysis, as for `run`.
    #[arg(long)]
    no_tcp_analysis: bool,
    /// Turn off the in-kernel health of other protocols, as for `run`.
    #[arg(long)]
    no_l7_analysis: bool,
    /// Per-flow cutting by bytes, as for `run` (the retention figures show what it buys).
    #[arg(long, value_name = "SIZE", value_parser = parse_flow_bytes)]
    flow_bytes: Option<u32>,
    /// Per-flow cutting by packets, as for `run`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    flow_packets: Option<u32>,
    /// Cut TLS and QUIC flows past their handshakes, as for `run`.
    #[arg(long)]
    cut_encrypted: bool,
    /// With -i and afxdp: capture even though the interface has addresses (see `run --force`).
    #[arg(long)]
    force: bool,
    /// Trigger rules, as for `run` (what evaluating them costs capture shows in the rates).
    #[arg(long, value_name = "RULE", value_parser = capture_daemon::triggers::Rule::parse)]
    trigger: Vec<capture_daemon::triggers::Rule>,
    /// Filter expression in tcpdump syntax, applied in every trial.
    /// Options may come before or after it, as with tcpdump (`--` ends them).
    #[arg(value_name = "EXPRESSION")]
    pub(crate) expression: Vec<String>,
}

pub(crate) fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let seconds = |value: f64, what: &str| {
        Duration::try_from_secs_f64(value)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("--{what} {value} is not a positive number of seconds"))
    };
    let search = SearchSettings {
        trial: seconds(args.trial, "trial")?,
        trials: args.trials,
        tolerance: args.tolerance,
        confirm: seconds(args.confirm, "confirm")?,
    };
    if !(0.001..=0.5).contains(&args.tolerance) {
        bail!("--tolerance {} must be a fraction between 0.001 and 0.5", args.tolerance);
    }
    if args.rates.is_some() && args.self_test {
        bail!("--rates is for an external generator (-i IFACE); the self-test searches by itself");
    }
    let expression = args.expression.join(" ");
    // Refused here, before anything is built, with libpcap's own words and where.
    Filter::compile(&expression)?;
    std::fs::metadata(&args.dir).with_context(|| {
        format!("--dir {}: the trials' rings go there; create it first", args.dir.display())
    })?;
    let mut run_options = Vec::new();
    let mut push = |flag: &str, value: Option<String>| {
        if let Some(value) = value {
            run_options.extend([flag.to_string(), value]);
        }
    };
    push("-s", args.snaplen.map(|s| s.to_string()));
    push("--zstd-level", args.zstd_level.map(|l| l.to_string()));
    push("--compress-threads", args.compress_threads.map(|t| t.to_string()));
    push("-B", args.buffer_kib.map(|b| b.to_string()));
    push("--direction", args.direction.map(|d| d.name().to_string()));
    push("--flow-bytes", args.flow_bytes.map(|b| b.to_string()));
    push("--flow-packets", args.flow_packets.map(|n| n.to_string()));
    for rule in &args.trigger {
        run_options.extend(["--trigger".to_string(), rule.text.clone()]);
    }
    for (flag, on) in [
        ("--no-compress", args.no_compress),
        ("--no-tcp-analysis", args.no_tcp_analysis),
        ("--no-l7-analysis", args.no_l7_analysis),
        ("--cut-encrypted", args.cut_encrypted),
        ("--force", args.force),
    ] {
        if on {
            run_options.push(flag.into());
        }
    }
    let options_text = {
        let mut text = run_options.clone();
        text.extend(args.expression.iter().cloned());
        text
    };
    let mut tcpdump_options =
        vec!["-s".to_string(), args.snaplen.unwrap_or(262_144).to_string(), "--".to_string()];
    tcpdump_options.extend(args.expression.iter().cloned());
    if !args.expression.is_empty() {
        run_options.push("--".into());
        run_options.extend(args.expression.iter().cloned());
    }
    let mut modes = args.modes.clone();
    modes.dedup();
    modes.retain(|&m| m != Mode::Tcpdump);
    if args.tcpdump {
        modes.push(Mode::Tcpdump);
    }
    let traffic = match &args.interface {
        Some(iface) => {
            capture_daemon::kernel::interface_index(iface)?;
            Traffic::Interface { iface: iface.clone() }
        }
        None => {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                bail!("the self-test builds network namespaces and loads eBPF programs: run it as root");
            }
            TestBed::remove_stale();
            Traffic::SelfTest(
                TestBed::new().context("building the veth test bed (needs `ip` from iproute2)")?,
            )
        }
    };
    let namespaces = match &traffic {
        Traffic::SelfTest(bed) => vec![bed.tx_ns.clone(), bed.rx_ns.clone()],
        Traffic::Interface { .. } => Vec::new(),
    };
    clean_up_on_signal(bench::work_dir(&args.dir), namespaces)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let now = capture_daemon::timefmt::unix_now();
        let stamp = capture_daemon::timefmt::rfc3339(now.as_nanos() as u64);
        PathBuf::from(format!(
            "ringcap-bench-{}",
            stamp.replace([':', '-'], "").chars().take(15).collect::<String>()
        ))
    });
    println!(
        "ringcap bench: {} sizes x {} modes, trials of {} s ({} per rate), confirmation {} s; report in {}",
        args.sizes.len(),
        modes.len(),
        args.trial,
        args.trials,
        args.confirm,
        out.display()
    );
    let config = BenchConfig {
        traffic,
        sizes: args.sizes.clone(),
        modes,
        search,
        rates: args.rates.clone(),
        dir: args.dir.clone(),
        max_disk: args.max_disk,
        run_options,
        tcpdump_options,
        out: out.clone(),
        options_text,
    };
    let report = bench::run(config, |trial| println!("{}", bench::report::trial_line(trial)))?;
    let json = serde_json::to_vec_pretty(&report)?;
    std::fs::write(out.join("report.json"), json).with_context(|| format!("writing {}", out.display()))?;
    let html = report.html().map_err(anyhow::Error::msg)?;
    std::fs::write(out.join("report.html"), html).with_context(|| format!("writing {}", out.display()))?;
    println!("\n{}", report.table());
    println!("report: {}/report.html and report.json", out.display());
    Ok(ExitCode::SUCCESS)
}

/// A bench stopped by SIGTERM (a service manager, `timeout`), SIGINT or SIGHUP leaves
/// nothing behind: a thread of its own stops the `ringcap run` (or tcpdump) of the trial
/// under way, removes the trials' directory and the test bed's namespaces, then exits.
fn clean_up_on_signal(work_dir: PathBuf, namespaces: Vec<String>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing the bench's signal handlers")?;
    std::thread::Builder::new().name("bench-signals".into()).spawn(move || {
        let Some(signal) = signals.forever().next() else { return };
        eprintln!("ringcap bench: stopped by signal {signal}: cleaning up");
        stop_children();
        let _ = std::fs::remove_dir_all(&work_dir);
        for ns in &namespaces {
            let _ = std::process::Command::new("ip").args(["netns", "del", ns]).status();
        }
        std::process::exit(128 + signal);
    })?;
    Ok(())
}

/// Stops this process's children: SIGTERM (a capture then detaches its programs and
/// exits), SIGKILL for any still there after 5 s.
fn stop_children() {
    let children = || -> Vec<i32> {
        let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten();
        tasks
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|list| list.split_whitespace().filter_map(|pid| pid.parse().ok()).collect::<Vec<i32>>())
            .collect()
    };
    for (signal, wait) in [(libc::SIGTERM, Duration::from_secs(5)), (libc::SIGKILL, Duration::from_secs(5))] {
        let pids = children();
        if pids.is_empty() {
            return;
        }
        for &pid in &pids {
            // SAFETY: signals a child of this process.
            unsafe { libc::kill(pid, signal) };
        }
        let deadline = std::time::Instant::now() + wait;
        for pid in pids {
            while std::time::Instant::now() < deadline {
                // SAFETY: reaps the child if it has ended (WNOHANG: never blocks).
                if unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } != 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

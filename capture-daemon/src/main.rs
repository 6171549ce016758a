//! The `ringcap` command line: a thin layer over the library.
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use capture_common::Counter;
use capture_daemon::api::{self, ApiConfig, ApiLimits, Sources};
use capture_daemon::capture::ReaderConfig;
use capture_daemon::filter::Filter;
use capture_daemon::health::LiveCounters;
use capture_daemon::kernel::{Direction, KernelConfig, ProgramSet, Selection, XdpModeChoice};
use capture_daemon::output::{PcapStream, Sink};
use capture_daemon::pcap::DEFAULT_SNAPLEN;
use capture_daemon::privileges::User;
use capture_daemon::retrieve::window::parse_duration;
use capture_daemon::retrieve::{
    self,
    out::{Format, Stream},
    pull::PullLimits,
    window::{self, Window},
};
use capture_daemon::session::{run_capture, CaptureMode, CaptureOptions, CaptureSummary, IngressHook};
use capture_daemon::storage::budget::DiskLimit;
use capture_daemon::storage::naming::NameTemplate;
use capture_daemon::storage::ring::{RingConfig, RingWriter, Snapshot, StorageCounters};
use capture_daemon::storage::Compression;
use clap::{Args, CommandFactory, Parser, Subcommand};

/// ringcap: an always-on packet capture appliance, a network flight recorder.
#[derive(Parser)]
#[command(name = "ringcap", version, about, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture packets from an interface into one pcap file, like `tcpdump -w`.
    Capture(CaptureArgs),
    /// Capture continuously into a ring of rotated, zstd-compressed pcap files, like
    /// `tcpdump -G 3600 -W 24 -w FILE`, within a file count and disk budget.
    Run(Box<RunArgs>),
    /// Pull the packets of a time window out of a ring, filtered, while capture goes on.
    Pull(PullArgs),
    /// Print a running daemon's TCP health and counters (from its `--http` API).
    Stats(StatsArgs),
    /// Check whether this machine can run ringcap well, and say what to do when not.
    Doctor(DoctorArgs),
    /// Print a shell completion script: `ringcap completions bash > /etc/bash_completion.d/ringcap`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ringcap.1, ringcap-run.1, ...) into DIR (used by packaging).
    #[command(hide = true)]
    Manpages { dir: PathBuf },
}

#[derive(Args)]
struct DoctorArgs {
    /// An interface to check (XDP support is tried); repeat for several.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    interface: Vec<String>,
    /// The ring's directory: free space and write speed.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print the checks as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StatsArgs {
    /// The daemon's API address (`ringcap run --http ADDR:PORT`).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9090")]
    http: std::net::SocketAddr,
    /// File holding the daemon's bearer token (or set RINGCAP_HTTP_TOKEN).
    #[arg(long, value_name = "FILE")]
    http_token_file: Option<PathBuf>,
}

#[derive(Args)]
struct PullArgs {
    /// Directory of the ring (as given to `ringcap run --dir`).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The last DURATION up to now: 90s, 10m, 2h, 1h30m.
    #[arg(long, value_name = "DURATION")]
    last: Option<String>,
    /// Start of the window (included): RFC 3339 or HH:MM[:SS] today, UTC.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// End of the window (excluded); default: now and on.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Output file; `-` (the default) streams to standard output.
    #[arg(short = 'w', value_name = "FILE", default_value = "-")]
    write: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Pcap)]
    format: Format,
    /// Stop after this many packets.
    #[arg(long, value_name = "N")]
    max_packets: Option<u64>,
    /// Stop after reading this many bytes of pcap from the ring (e.g. 2G).
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_limit)]
    max_bytes: Option<DiskLimit>,
    /// Also write the window's TCP statistics and counters to FILE.stats.json.
    #[arg(long)]
    with_stats: bool,
    /// Filter expression in tcpdump syntax.
    #[arg(value_name = "EXPRESSION", trailing_var_arg = true)]
    expression: Vec<String>,
}

/// Kernel-side options shared by every capturing command.
#[derive(Args, Clone)]
struct KernelArgs {
    /// Interface to capture on.
    #[arg(short = 'i', long = "interface", value_name = "IFACE", value_delimiter = ',', required = true)]
    interface: Vec<String>,
    /// Once the programs are attached and the sockets open, run as USER with no
    /// capabilities left (as tcpdump -Z); the ring directory must be writable by USER.
    #[arg(short = 'Z', long = "user", value_name = "USER")]
    user: Option<String>,
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
    /// Packets to capture: arriving (XDP), sent (TC egress), or both.
    #[arg(long, value_enum, default_value_t = Direction::In)]
    direction: Direction,
    /// How packets reach ringcap. `afxdp` redirects them into AF_XDP sockets: the fastest
    /// path, but packets then NEVER REACH THE HOST STACK. Use it only on dedicated mirror
    /// (SPAN/TAP) ports; ringcap refuses interfaces with an IP address unless --force.
    #[arg(long, value_enum, default_value_t = CaptureMode::Ring)]
    mode: CaptureMode,
    /// Capture with --mode afxdp even on an interface with an IP address, cutting the
    /// host off from the traffic arriving on it.
    #[arg(long)]
    force: bool,
    /// Where arriving packets are captured: XDP (in the driver), or TC ingress (after GRO,
    /// as the host stack sees them; works where XDP does not).
    #[arg(long, value_enum, default_value_t = IngressHook::Xdp)]
    ingress_hook: IngressHook,
    /// How long the writer waits for a lagging ring or socket reader before writing newer
    /// packets of the others (milliseconds); later arrivals are written out of order and counted.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    reorder_window: u64,
    /// Keep one packet in N, at random: `1/N`.
    #[arg(long, value_name = "1/N", value_parser = parse_fraction)]
    sample: Option<u32>,
    /// Keep one flow in N, both directions of each kept flow: `1/N`.
    #[arg(long, value_name = "1/N", value_parser = parse_fraction)]
    flow_sample: Option<u32>,
    /// Turn off the in-kernel TCP analysis (flags, handshakes, RTT) of every packet.
    #[arg(long)]
    no_tcp_analysis: bool,
    /// A connection attempt is counted unanswered when its SYN gets no SYN-ACK this long.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    syn_timeout: f64,
    /// TCP flows the analysis tracks at once; the least recently seen are evicted.
    #[arg(long, value_name = "N", default_value_t = 65536, value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    tcp_flows: u32,
    /// Record at most RATE packets per second (a token bucket per CPU, RATE split evenly).
    #[arg(long, value_name = "RATE", value_parser = clap::value_parser!(u64).range(1..))]
    max_pps: Option<u64>,
    /// Filter expression, as an option (a trailing EXPRESSION takes precedence).
    #[arg(long, value_name = "EXPRESSION")]
    filter: Option<String>,
    /// Filter expression in tcpdump syntax (`man pcap-filter`), evaluated in the kernel.
    #[arg(value_name = "EXPRESSION", trailing_var_arg = true)]
    expression: Vec<String>,
}

fn parse_fraction(text: &str) -> Result<u32, String> {
    let n = text.strip_prefix("1/").unwrap_or(text);
    match n.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?} is not a sampling fraction: use 1/N with N >= 1")),
    }
}

/// When to stop, shared by every capturing command.
#[derive(Args, Clone)]
struct StopArgs {
    /// Stop after this many packets.
    #[arg(short = 'c', value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
}

#[derive(Args)]
struct CaptureArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    stop: StopArgs,
    /// Write packets to this pcap file; `-` writes to standard output.
    #[arg(short = 'w', value_name = "FILE")]
    write: PathBuf,
    /// File format; pcapng (with each packet's direction) is the default for --direction both.
    #[arg(long, value_enum)]
    format: Option<Format>,
}

#[derive(Args)]
struct RunArgs {
    /// Read settings from a TOML file (keys are the long options with `_`, plus `filter`);
    /// options on the command line override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    stop: StopArgs,
    /// Directory of the ring; files already there are adopted, never overwritten.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Start a new file every SECS seconds, aligned to the wall clock; 0 turns it off.
    #[arg(short = 'G', value_name = "SECS", default_value_t = 3600)]
    rotate_seconds: u64,
    /// Keep at most this many files; the oldest go first.
    #[arg(short = 'W', value_name = "FILES", value_parser = parse_file_count)]
    max_files: Option<usize>,
    /// Start a new file once the current one holds this many millions of bytes.
    #[arg(short = 'C', value_name = "MBYTES", value_parser = parse_megabytes)]
    rotate_megabytes: Option<u64>,
    /// Keep the ring under this size: bytes (500M, 10G) or a percentage of the filesystem.
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_limit)]
    max_disk: Option<DiskLimit>,
    /// Keep at least this much of the filesystem free, removing the oldest files.
    #[arg(long, value_name = "SIZE", default_value = "5%", value_parser = parse_disk_limit)]
    min_free: DiskLimit,
    /// zstd compression level (1-19); 0 writes plain pcap.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(i32).range(0..=19))]
    zstd_level: i32,
    /// Write plain pcap files (same as --zstd-level 0).
    #[arg(long)]
    no_compress: bool,
    /// Threads compressing frames beside the writer, which stores them in order (0: the
    /// writer compresses them itself). Default: the cores left after the capture readers,
    /// at least one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=256))]
    compress_threads: Option<u16>,
    /// File name template with strftime fields (UTC): %Y %m %d %H %M %S %j %s %%.
    #[arg(long, value_name = "TEMPLATE", default_value = "ringcap-%Y%m%d-%H%M%S")]
    name: String,
    /// Write a frame once it holds this many bytes of pcap.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(4096..=64 << 20))]
    frame_bytes: u64,
    /// Write a frame at least this often (seconds), so recent packets are soon readable.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    frame_interval: f64,
    /// File format of the ring; pcapng (with each packet's interface and direction) is
    /// the default for several interfaces or --direction both.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Serve the HTTP API (/v1/pcap, /v1/files, /v1/stats, /metrics) on ADDR:PORT.
    #[arg(long, visible_alias = "metrics", value_name = "ADDR:PORT")]
    http: Option<std::net::SocketAddr>,
    /// File holding the bearer token every API request must present (first line; the file
    /// must not be readable by everyone). RINGCAP_HTTP_TOKEN in the environment works too;
    /// a token is never taken from the command line, where every local user can read it.
    #[arg(long, value_name = "FILE")]
    http_token_file: Option<PathBuf>,
    /// Serve the API without a token: then every local user can pull all traffic. Only on
    /// a loopback address.
    #[arg(long)]
    http_no_auth: bool,
    /// Longest window one API request may pull.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    http_max_window: String,
    /// Most packets one API request may pull.
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    http_max_packets: u64,
    /// Most pcap bytes one API request may read from the ring.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_disk_limit)]
    http_max_bytes: DiskLimit,
}

fn parse_file_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("-W 0 would keep no files: use 1 or more".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a number of files")),
    }
}

fn parse_megabytes(text: &str) -> Result<u64, String> {
    let value: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of megabytes"))?;
    if !(0.01..=1_000_000.0).contains(&value) {
        return Err(format!("-C {value} is out of range: use 0.01 to 1000000 (millions of bytes)"));
    }
    Ok((value * 1_000_000.0) as u64)
}

fn parse_disk_limit(text: &str) -> Result<DiskLimit, String> {
    DiskLimit::parse(text).map_err(|e| e.to_string())
}

fn parse_snaplen(text: &str) -> Result<u32, String> {
    let value: u64 = text.parse().map_err(|_| format!("snaplen {text:?} is not a number of bytes"))?;
    match value {
        0 => Ok(DEFAULT_SNAPLEN),
        1..=262_144 => Ok(value as u32),
        _ => Err(format!("snaplen {value} is too large: use 0 or 1..=262144 bytes")),
    }
}

/// The command line, with `run --config FILE` expanded in place (the file's settings
/// first, so options given on the command line override them).
fn arguments() -> Result<Vec<String>, capture_daemon::config::ConfigError> {
    let mut args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("run") {
        if let Some(at) = args.iter().position(|a| a == "--config" || a.starts_with("--config=")) {
            let path = match args[at].strip_prefix("--config=") {
                Some(path) => {
                    let path = path.to_string();
                    args.remove(at);
                    path
                }
                None if at + 1 < args.len() => {
                    let path = args.remove(at + 1);
                    args.remove(at);
                    path
                }
                None => return Ok(args),
            };
            let from_file = capture_daemon::config::arguments(Path::new(&path))?;
            // The file's options go right after `run`, so later ones from the command line win.
            args.splice(2..2, from_file);
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match arguments() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("ringcap: error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Capture(args) => capture(args),
        Command::Run(args) => run(*args),
        Command::Pull(args) => pull(args),
        Command::Stats(args) => stats(args),
        Command::Doctor(args) => doctor(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ringcap", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpages { dir } => manpages(&dir),
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
    /// The interfaces' indexes, or a clear error for the first that does not exist.
    fn interface_indexes(&self) -> anyhow::Result<Vec<u32>> {
        let indexes = self.interface.iter().map(|i| capture_daemon::kernel::interface_index(i));
        Ok(indexes.collect::<Result<_, _>>()?)
    }

    /// The user to become once capture is up, looked up now so a wrong name is refused
    /// before anything is loaded.
    fn run_as(&self) -> anyhow::Result<Option<User>> {
        Ok(self.user.as_deref().map(User::lookup).transpose()?)
    }

    /// Refuses what cannot work before anything is loaded or created.
    fn check(&self) -> anyhow::Result<()> {
        self.interface_indexes()?;
        self.filter()?;
        self.run_as()?;
        if self.mode == CaptureMode::Afxdp {
            if self.ingress_hook == IngressHook::Tc {
                anyhow::bail!("--mode afxdp receives at XDP: it cannot be combined with --ingress-hook tc");
            }
            for iface in &self.interface {
                let addresses = capture_daemon::kernel::host_addresses(iface);
                if !addresses.is_empty() && !self.force {
                    anyhow::bail!(
                        "{iface} has IP addresses ({}): --mode afxdp would take every arriving packet away from \
                         the host. Use it on a dedicated mirror port, or give --force if that is what you want",
                        addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    );
                }
            }
        }
        Ok(())
    }

    /// pcapng when asked for, or by default when packets come from several interfaces or
    /// directions, which classic pcap cannot tell apart.
    fn pcapng(&self, format: Option<Format>) -> bool {
        let several = self.direction == Direction::Both || self.interface.len() > 1;
        let pcapng = format.map_or(several, |f| f == Format::Pcapng);
        if several && !pcapng {
            eprintln!(
                "ringcap: warning: classic pcap cannot say which interface or direction a packet has; use pcapng"
            );
        }
        pcapng
    }

    /// Compiles the expression: a bad one is refused before anything is loaded.
    fn filter(&self) -> anyhow::Result<Filter> {
        let expression = match (&self.filter, self.expression.is_empty()) {
            (Some(option), true) => option.clone(),
            _ => self.expression.join(" "),
        };
        Ok(Filter::compile(&expression)?)
    }

    fn selection(&self) -> Selection {
        Selection {
            sample_every: self.sample.unwrap_or(1),
            flow_sample_every: self.flow_sample.unwrap_or(1),
            max_pps: self.max_pps.unwrap_or(0),
            tcp_analysis: !self.no_tcp_analysis,
        }
    }

    fn capture_options(
        &self,
        reader: ReaderConfig,
        duration: Option<Duration>,
        live: Arc<LiveCounters>,
    ) -> anyhow::Result<CaptureOptions> {
        let buffer_bytes = (self.buffer_kib * 1024).next_power_of_two();
        Ok(CaptureOptions {
            interfaces: self.interface.clone(),
            mode: self.mode,
            ingress_hook: self.ingress_hook,
            xdp_mode: self.xdp_mode,
            direction: self.direction,
            xsk_frames: (buffer_bytes / capture_daemon::capture::xsk::FRAME_SIZE).max(512),
            reorder_window: Duration::from_millis(self.reorder_window),
            syn_timeout: Duration::try_from_secs_f64(self.syn_timeout)
                .ok()
                .filter(|t| !t.is_zero())
                .ok_or_else(|| {
                    anyhow::anyhow!("--syn-timeout {} is not a positive number of seconds", self.syn_timeout)
                })?,
            kernel: KernelConfig {
                filter: Some(self.filter()?),
                snaplen: self.snaplen,
                ring_bytes: buffer_bytes,
                tcp_flows: self.tcp_flows,
                programs: ProgramSet::default(),
            },
            selection: self.selection(),
            reader,
            duration,
            queue_batches: 256,
            live,
            run_as: self.run_as()?,
        })
    }
}

impl StopArgs {
    fn reader_config(&self, snaplen: u32) -> ReaderConfig {
        ReaderConfig { snaplen, max_packets: self.count, ..ReaderConfig::default() }
    }

    fn duration(&self) -> anyhow::Result<Option<Duration>> {
        self.duration
            .map(|s| {
                Duration::try_from_secs_f64(s)
                    .map_err(|_| anyhow::anyhow!("--duration {s} is not a valid number of seconds"))
            })
            .transpose()
    }
}

/// Runs a session into `sink`, announcing each interface as tcpdump does.
fn capture_into(
    kernel: &KernelArgs,
    stop: &StopArgs,
    sink: Box<dyn Sink>,
    live: Arc<LiveCounters>,
    pcapng_interfaces: Vec<u32>,
) -> anyhow::Result<CaptureSummary> {
    let snaplen = kernel.snaplen;
    let reader = ReaderConfig { pcapng_interfaces, ..stop.reader_config(snaplen) };
    let options = kernel.capture_options(reader, stop.duration()?, live)?;
    let summary = run_capture(&options, sink, |attached| {
        for (iface, hooks) in attached {
            eprintln!(
                "ringcap: listening on {iface} ({}), link-type EN10MB (Ethernet), snapshot length {snaplen} bytes",
                hooks.join(", ")
            );
        }
    })?;
    Ok(summary)
}

fn capture(args: CaptureArgs) -> anyhow::Result<ExitCode> {
    args.stop.duration()?;
    // Check before creating the output file, so a typo leaves no empty file.
    args.kernel.check()?;
    let ifindexes = args.kernel.interface_indexes()?;
    let pcapng = args.kernel.pcapng(args.format);
    let names: Vec<&str> = args.kernel.interface.iter().map(String::as_str).collect();
    let sink = PcapStream::create(&args.write, args.kernel.snaplen, pcapng.then_some(&names[..]))
        .with_context(|| format!("cannot create {}", args.write.display()))?;
    let interfaces = if pcapng { ifindexes } else { Vec::new() };
    let summary = capture_into(&args.kernel, &args.stop, Box::new(sink), Arc::default(), interfaces)?;
    print_summary(&summary);
    Ok(match summary.write_error {
        Some(error) => {
            eprintln!("ringcap: error: writing {} failed: {error}", args.write.display());
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    })
}

/// Cores left after the capture's readers (one per CPU ring, or one per AF_XDP socket),
/// at least one.
fn default_compress_threads(kernel: &KernelArgs) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let readers = match kernel.mode {
        CaptureMode::Ring => cores,
        CaptureMode::Afxdp => {
            kernel.interface.iter().map(|i| capture_daemon::capture::xsk::receive_queues(i) as usize).sum()
        }
    };
    cores.saturating_sub(readers).max(1)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    args.stop.duration()?;
    args.kernel.check()?;
    let ifindexes = args.kernel.interface_indexes()?;
    let pcapng = args.kernel.pcapng(args.format);
    if !(0.05..=60.0).contains(&args.frame_interval) {
        anyhow::bail!("--frame-interval {} is out of range: use 0.05 to 60 seconds", args.frame_interval);
    }
    if let Some(user) = args.kernel.run_as()? {
        if !args.dir.exists() {
            // A new ring directory belongs to the user who writes it.
            std::fs::create_dir_all(&args.dir)?;
            std::os::unix::fs::chown(&args.dir, Some(user.uid), Some(user.gid))?;
        }
        user.check_writable(&args.dir)?;
    }
    let name = capture_daemon::storage::data_stem(&args.name).unwrap_or(&args.name);
    let live = Arc::new(LiveCounters::default());
    let compression = match (args.no_compress, args.zstd_level) {
        (true, _) | (false, 0) => Compression::None,
        (false, level) => Compression::Zstd(level),
    };
    let config = RingConfig {
        dir: args.dir.clone(),
        template: NameTemplate::parse(name)?,
        compression,
        snaplen: args.kernel.snaplen,
        pcapng_interfaces: pcapng.then(|| args.kernel.interface.clone()),
        rotate_every: (args.rotate_seconds > 0).then(|| Duration::from_secs(args.rotate_seconds)),
        rotate_bytes: args.rotate_megabytes,
        max_files: args.max_files,
        max_disk: args.max_disk,
        min_free: Some(args.min_free),
        frame_bytes: args.frame_bytes as usize,
        frame_age: Duration::from_secs_f64(args.frame_interval),
        sync: true,
        compress_threads: args
            .compress_threads
            .map_or_else(|| default_compress_threads(&args.kernel), usize::from),
        snapshot: {
            let live = Arc::clone(&live);
            let started = window::now().as_nanos() as u64;
            Some(Snapshot(Arc::new(move || live.snapshot(started))))
        },
    };
    let counters = Arc::new(StorageCounters::default());
    let ring = RingWriter::open(config, Arc::clone(&counters))?;
    if let Some(user) = args.kernel.run_as()? {
        ring.hand_over(user.uid, user.gid)
            .with_context(|| format!("giving the ring's files in {} to {}", args.dir.display(), user.name))?;
    }
    eprintln!(
        "ringcap: writing the ring in {} ({} files adopted from earlier runs)",
        args.dir.display(),
        ring.adopted().count()
    );
    if !ring.foreign_files().is_empty() {
        let names: Vec<String> = ring
            .foreign_files()
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        eprintln!(
            "ringcap: warning: {} capture files in {} were not written by ringcap and are left alone \
             (not counted by -W or --max-disk, never removed): {}",
            names.len(),
            args.dir.display(),
            names.join(", ")
        );
    }
    if let Some(addr) = args.http {
        let limits = ApiLimits {
            max_window: parse_duration(&args.http_max_window).map_err(anyhow::Error::msg)?,
            max_packets: args.http_max_packets,
            max_bytes: match args.http_max_bytes {
                DiskLimit::Bytes(b) => b,
                DiskLimit::Percent(_) => anyhow::bail!("--http-max-bytes takes a size (like 4G)"),
            },
        };
        let token = match (api_token(args.http_token_file.as_deref())?, args.http_no_auth) {
            (Some(_), true) => anyhow::bail!("--http-no-auth and a token exclude each other: choose one"),
            (Some(token), false) => Some(token),
            (None, true) => None,
            (None, false) => anyhow::bail!(
                "the HTTP API needs a bearer token, or anyone on this machine could pull all traffic: \
                 give --http-token-file FILE (not readable by everyone) or set RINGCAP_HTTP_TOKEN; \
                 --http-no-auth serves without one (loopback only)"
            ),
        };
        let config = ApiConfig { addr, token, ring_dir: args.dir.clone(), limits };
        let sources = Sources { live: Arc::clone(&live), storage: Arc::clone(&counters) };
        let bound = api::serve(config, sources)?;
        eprintln!("ringcap: HTTP API on http://{bound}/ (/v1/pcap, /v1/files, /v1/stats, /metrics)");
    }
    let interfaces = if pcapng { ifindexes } else { Vec::new() };
    let summary = capture_into(&args.kernel, &args.stop, Box::new(ring), live, interfaces)?;
    print_summary(&summary);
    print_storage_summary(&counters);
    Ok(match summary.write_error {
        // Non-zero, so a service manager restarts the capture.
        Some(error) => {
            eprintln!("ringcap: error: writing the ring in {} failed: {error}", args.dir.display());
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    })
}

fn pull(args: PullArgs) -> anyhow::Result<ExitCode> {
    let window =
        Window::from_args(args.last.as_deref(), args.since.as_deref(), args.until.as_deref(), window::now())
            .map_err(anyhow::Error::msg)?;
    let filter = Filter::compile(&args.expression.join(" "))?;
    if args.with_stats && args.write == Path::new("-") {
        anyhow::bail!("--with-stats writes FILE.stats.json beside the capture: give -w FILE");
    }
    if !args.dir.is_dir() {
        anyhow::bail!("{} is not a directory: give the --dir of `ringcap run`", args.dir.display());
    }
    let limits = PullLimits {
        max_packets: args.max_packets.unwrap_or(u64::MAX),
        max_bytes: match args.max_bytes {
            Some(DiskLimit::Bytes(b)) => b,
            Some(DiskLimit::Percent(_)) => {
                anyhow::bail!("--max-bytes takes a size (like 2G), not a percentage")
            }
            None => u64::MAX,
        },
    };
    let sink: Box<dyn std::io::Write> = if args.write == Path::new("-") {
        if std::io::stdout().is_terminal() {
            anyhow::bail!(
                "refusing to write a capture to a terminal: use -w FILE or a pipe (| wireshark -k -i -)"
            );
        }
        Box::new(std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?))
    } else {
        Box::new(
            std::fs::File::create(&args.write)
                .with_context(|| format!("cannot create {}", args.write.display()))?,
        )
    };
    let mut out =
        Stream::new(std::io::BufWriter::with_capacity(1 << 20, sink), args.format, DEFAULT_SNAPLEN)?;
    let report = retrieve::pull::pull(&args.dir, window, &filter, limits, &mut out)
        .context("writing the pulled packets")?;
    for warning in &report.warnings {
        eprintln!("ringcap: warning: {warning}");
    }
    if args.with_stats {
        let stats_file = PathBuf::from(format!("{}.stats.json", args.write.display()));
        match retrieve::stats::window_stats(&args.dir, window) {
            Ok(stats) => {
                std::fs::write(&stats_file, serde_json::to_string_pretty(&stats)?)
                    .with_context(|| format!("cannot write {}", stats_file.display()))?;
                eprintln!("ringcap: statistics of the window in {}", stats_file.display());
            }
            Err(why) => eprintln!("ringcap: warning: no statistics for this window: {why}"),
        }
    }
    eprintln!(
        "ringcap: pulled {} packets from {} files ({} frames read, {} damaged frames and {} damaged bytes skipped, {} unreadable files)",
        report.packets,
        report.files_read,
        report.frames_read,
        report.frames_damaged,
        report.bytes_damaged,
        report.files_unreadable
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs every check; exits non-zero when one says capture cannot work.
/// One page for ringcap and one for each subcommand (`ringcap-run.1`, ...), from the
/// same definitions that parse the command line, so the pages never fall behind.
fn manpages(dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn doctor(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    use capture_daemon::doctor::Status;
    let checks = capture_daemon::doctor::run(&args.interface, args.dir.as_deref());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "checks": checks }))?);
    } else {
        for check in &checks {
            let status = match check.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{status}  {}: {}", check.name, check.found);
            if let Some(advice) = &check.advice {
                println!("      -> {advice}");
            }
        }
    }
    let blocked = checks.iter().filter(|c| c.status == Status::Fail).count();
    if blocked > 0 && !args.json {
        eprintln!("ringcap: {blocked} check(s) failed: capture cannot work until they are fixed");
    }
    Ok(if blocked > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The API's bearer token: the first line of `file`, else RINGCAP_HTTP_TOKEN. A token file
/// everyone may read protects nothing, so it is refused.
fn api_token(file: Option<&Path>) -> anyhow::Result<Option<String>> {
    use std::os::unix::fs::PermissionsExt;
    let token = match file {
        Some(path) => {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            if meta.permissions().mode() & 0o004 != 0 {
                anyhow::bail!(
                    "the token file {} is readable by every user: chmod o-r {} (or 600)",
                    path.display(),
                    path.display()
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            text.lines().next().unwrap_or_default().trim().to_string()
        }
        None => match std::env::var("RINGCAP_HTTP_TOKEN") {
            Ok(token) => token.trim().to_string(),
            Err(_) => return Ok(None),
        },
    };
    if token.is_empty() {
        anyhow::bail!("the API token is empty: put a long random string in the token file");
    }
    Ok(Some(token))
}

fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(args.http).with_context(|| {
        format!("cannot reach ringcap's API at {}: is `ringcap run --http {}` running?", args.http, args.http)
    })?;
    let auth = api_token(args.http_token_file.as_deref())?
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(stream, "GET /v1/stats HTTP/1.1\r\nHost: ringcap\r\n{auth}\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").context("the API sent no response")?;
    if !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!("the API answered {}: {}", head.lines().next().unwrap_or_default(), body.trim());
    }
    let stats: serde_json::Value = serde_json::from_str(body)?;
    let k = &stats["kernel"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    print_tcp("since start", &stats["tcp"]);
    if !stats["tcp_last_minute"].is_null() {
        let seconds = stats["tcp_last_minute"]["seconds"].as_f64().unwrap_or(0.0);
        print_tcp(&format!("last {seconds:.0} s"), &stats["tcp_last_minute"]);
    }
    let slots = stats["tcp_by_interface"].as_array().cloned().unwrap_or_default();
    if !slots.is_empty() {
        println!("TCP by interface and direction, since start:");
    }
    for slot in &slots {
        let (tcp, analysis) = (&slot["tcp"], &slot["tcp"]["analysis"]);
        let retransmissions = ["retransmission", "fast_retransmission", "spurious_retransmission"]
            .iter()
            .map(|key| n(&analysis[*key]))
            .sum::<u64>();
        println!(
            "  {} {}: {} handshakes, {} SYN, {} RST, {} retransmissions, {} duplicate ACKs, {} zero windows; timestamp RTT p50 {:.3} ms",
            slot["interface"].as_str().unwrap_or_default(),
            slot["direction"].as_str().unwrap_or_default(),
            n(&tcp["tcp_handshakes"]),
            n(&tcp["tcp_syn"]),
            n(&tcp["tcp_rst"]),
            retransmissions,
            n(&analysis["duplicate_ack"]),
            n(&analysis["zero_window"]),
            n(&tcp["timestamp_rtt"]["p50_ns"]) as f64 / 1e6
        );
    }
    let f = &stats["flows"];
    println!(
        "TCP flows: {} in the table (of {}), {} evicted, {} connection attempts unanswered",
        n(&f["live"]),
        n(&f["capacity"]),
        n(&f["evicted"]),
        n(&f["syn_unanswered"])
    );
    let r = &stats["reader"];
    println!(
        "capture since start: {} seen, {} captured; lost: {} ring full, {} copy failed, {} queue full; not selected: {} filter, {} sampling, {} rate limit",
        n(&k["seen"]), n(&r["packets"]), n(&k["ring_full"]), n(&k["copy_failed"]), n(&r["queue_dropped"]),
        n(&k["filtered"]), n(&k["sampled_out"]), n(&k["rate_limited"])
    );
    let st = &stats["storage"];
    println!(
        "ring: {} packets written, {} lost to write errors, {} files created, {} removed",
        n(&st["packets_written"]),
        n(&st["packets_lost"]),
        n(&st["files_created"]),
        n(&st["files_removed"]) + n(&st["files_removed_for_space"])
    );
    Ok(ExitCode::SUCCESS)
}

/// One block of `ringcap stats`: TCP counts, Wireshark's analysis and RTT percentiles.
fn print_tcp(span: &str, tcp: &serde_json::Value) {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    println!(
        "TCP, {span}: {} handshakes completed; SYN {}, SYN-ACK {}, FIN {}, RST {}",
        n(&tcp["tcp_handshakes"]),
        n(&tcp["tcp_syn"]),
        n(&tcp["tcp_syn_ack"]),
        n(&tcp["tcp_fin"]),
        n(&tcp["tcp_rst"])
    );
    let analysis: Vec<String> = capture_daemon::health::analysis::TCP_ANALYSIS
        .iter()
        .map(|(_, label)| format!("{} {}", label.replace('_', " "), n(&tcp["analysis"][*label])))
        .collect();
    println!("  analysis: {}", analysis.join(", "));
    for kind in capture_daemon::health::analysis::RTT_KINDS {
        let h = &tcp[kind.key];
        let ms = |v: &serde_json::Value| n(v) as f64 / 1e6;
        println!(
            "  RTT {}: {} samples, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            kind.what,
            n(&h["count"]),
            ms(&h["p50_ns"]),
            ms(&h["p90_ns"]),
            ms(&h["p99_ns"]),
            ms(&h["max_ns"])
        );
    }
}

/// What the ring writer did, including every packet it could not store.
fn print_storage_summary(counters: &StorageCounters) {
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{} packets written to the ring", get(&counters.packets_written));
    eprintln!("{} packets lost to write errors", get(&counters.packets_lost));
    eprintln!("{} frames written, {} bytes", get(&counters.frames_written), get(&counters.bytes_written));
    eprintln!(
        "{} files created, {} removed by -W/--max-disk, {} removed for free space",
        get(&counters.files_created),
        get(&counters.files_removed),
        get(&counters.files_removed_for_space)
    );
    eprintln!(
        "{} disk-full events, {} write errors ({} failed fsyncs), {} index errors, {} manifest errors, \
         {} files repaired at start",
        get(&counters.disk_full_events),
        get(&counters.write_errors),
        get(&counters.sync_errors),
        get(&counters.index_errors),
        get(&counters.manifest_errors),
        get(&counters.files_repaired)
    );
}

/// tcpdump's closing lines, plus every other place a packet can be lost.
fn print_summary(summary: &CaptureSummary) {
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

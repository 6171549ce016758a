//! `ringcap run`: the always-on ring, with the API.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use capture_daemon::api::{ApiConfig, ApiError, ApiLimits};
use capture_daemon::archive::gateway_name;
use capture_daemon::daemon::{self, ArchiveSetup, DaemonConfig};
use capture_daemon::privileges::Group;
use capture_daemon::retrieve::out::Format;
use capture_daemon::retrieve::window::parse_duration;
use capture_daemon::storage::budget::DiskLimit;
use capture_daemon::storage::naming::NameTemplate;
use capture_daemon::storage::ring::{RingConfig, StorageCounters};
use capture_daemon::storage::Compression;
use capture_daemon::triggers::Rule;
use clap::Args;

use super::choices::choice;

use super::args::{
    api_token, parse_disk_limit, parse_file_count, parse_megabytes, ArchiveArgs, KernelArgs, StopArgs,
};
use super::capture::{announce, print_summary, session_end};

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Read settings from a TOML file (keys are the long options with `_`, plus `filter`);
    /// options on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) kernel: KernelArgs,
    #[command(flatten)]
    pub(crate) stop: StopArgs,
    /// Directory of the ring; files already there are adopted, never overwritten. It and
    /// every file ringcap writes in it are readable by the daemon's user alone (0700/0600),
    /// whatever the umask.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// Let this group read the ring (and no one else): the directory becomes the group's,
    /// setgid, mode 2750, and every file written there 0640.
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: Option<String>,
    /// Start a new file every SECS seconds (at most a year), aligned to the wall clock;
    /// each file holds the packets stamped in its period. 0 turns it off.
    #[arg(short = 'G', value_name = "SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(0..=366 * 86_400))]
    pub(crate) rotate_seconds: u64,
    /// Keep at most this many files; the oldest go first.
    #[arg(short = 'W', value_name = "FILES", value_parser = parse_file_count)]
    pub(crate) max_files: Option<usize>,
    /// Start a new file once the current one holds this many millions of bytes.
    #[arg(short = 'C', value_name = "MBYTES", value_parser = parse_megabytes)]
    pub(crate) rotate_megabytes: Option<u64>,
    /// Keep the ring under this size: bytes (500M, 10G) or a percentage of the filesystem.
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_limit)]
    pub(crate) max_disk: Option<DiskLimit>,
    /// Keep at least this much of the filesystem free, removing the oldest files.
    #[arg(long, value_name = "SIZE", default_value = "5%", value_parser = parse_disk_limit)]
    pub(crate) min_free: DiskLimit,
    /// zstd compression level (1-19); 0 writes plain pcap.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub(crate) zstd_level: i32,
    /// Write plain pcap files (same as --zstd-level 0).
    #[arg(long)]
    pub(crate) no_compress: bool,
    /// Threads compressing frames beside the writer, which stores them in order (0: the
    /// writer compresses them itself). Default: the cores left after the capture's reader,
    /// at least one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=256))]
    pub(crate) compress_threads: Option<u16>,
    /// File name template with strftime fields (UTC): %Y %m %d %H %M %S %j %s %%.
    #[arg(long, value_name = "TEMPLATE", default_value = "ringcap-%Y%m%d-%H%M%S")]
    pub(crate) name: String,
    /// Write a frame once it holds this many bytes of pcap.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(4096..=64 << 20))]
    pub(crate) frame_bytes: u64,
    /// Write a frame at least this often (seconds), so recent packets are soon readable.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub(crate) frame_interval: f64,
    /// File format of the ring; pcapng (with each packet's interface and direction) is
    /// the default for several interfaces or --direction both.
    #[arg(long, value_parser = choice::<Format>())]
    pub(crate) format: Option<Format>,
    /// Serve the HTTP API (/v1/pcap, /v1/files, /v1/stats, /metrics) on ADDR:PORT.
    #[arg(long, visible_alias = "metrics", value_name = "ADDR:PORT")]
    pub(crate) http: Option<std::net::SocketAddr>,
    /// File holding the bearer token every API request must present (first line; the file
    /// must not be readable by everyone). RINGCAP_HTTP_TOKEN in the environment works too;
    /// a token is never taken from the command line, where every local user can read it.
    #[arg(long, value_name = "FILE")]
    pub(crate) http_token_file: Option<PathBuf>,
    /// Serve the API without a token: then every local user can pull all traffic. Only on
    /// a loopback address.
    #[arg(long)]
    pub(crate) http_no_auth: bool,
    /// Longest window one API request may pull.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub(crate) http_max_window: String,
    /// Most packets one API request may pull.
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    pub(crate) http_max_packets: u64,
    /// Seconds a pull's client may take no data before the pull is cut off (counted).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub(crate) http_client_timeout: f64,
    /// Most pcap bytes one API request may read from the ring.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_disk_limit)]
    pub(crate) http_max_bytes: DiskLimit,
    /// Most bytes pinned windows (`ringcap pin`) may hold together, within --max-disk:
    /// a size or a percentage of the filesystem. Default: half of --max-disk.
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_limit)]
    pub(crate) max_pinned: Option<DiskLimit>,
    /// Upload each pinned window (and with --archive-ring each closed ring file) to an
    /// S3-compatible object store: s3://BUCKET/PREFIX.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub(crate) archive: Option<String>,
    #[command(flatten)]
    pub(crate) archive_access: ArchiveArgs,
    /// Also upload every ring file once it closes.
    #[arg(long, requires = "archive")]
    pub(crate) archive_ring: bool,
    /// The name this gateway's objects are kept under in the archive (default: the host
    /// name, or the machine id where the host name says nothing, like `localhost`). A name
    /// that another machine claimed in the archive is refused.
    #[arg(long, value_name = "NAME", requires = "archive")]
    pub(crate) archive_host: Option<String>,
    /// Upload at most this many bytes per second (e.g. 20M).
    #[arg(long, value_name = "SIZE", requires = "archive", value_parser = parse_disk_limit)]
    pub(crate) archive_rate: Option<DiskLimit>,
    /// A trigger rule, 'NAME: CONDITION [for DURATION] [with KEY=VALUE ...]': when the
    /// condition holds, the window around it is pinned as NAME-YYYYmmddTHHMMSSZ (5 minutes
    /// before, 1 after, unless `with before=... after=...`). Repeat for more rules; the
    /// README's "Triggers" section has the language and examples.
    #[arg(long, value_name = "RULE", value_parser = parse_trigger)]
    pub(crate) trigger: Vec<Rule>,
    /// Seconds between evaluations of the trigger rules.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = parse_trigger_interval)]
    pub(crate) trigger_interval: f64,
}

fn parse_trigger(text: &str) -> Result<Rule, String> {
    Rule::parse(text)
}

fn parse_trigger_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (0.1..=3600.0).contains(&seconds) => Ok(seconds),
        _ => Err(format!("{text:?}: use 0.1 to 3600 seconds")),
    }
}

/// Cores left after the capture's reader (one thread reads every ring and socket), at least one.
pub(crate) fn default_compress_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).max(1)
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    args.stop.duration()?;
    let checked = args.kernel.check()?;
    let pcapng = args.kernel.pcapng(args.format);
    if !(0.05..=60.0).contains(&args.frame_interval) {
        anyhow::bail!("--frame-interval {} is out of range: use 0.05 to 60 seconds", args.frame_interval);
    }
    if !(0.1..=3600.0).contains(&args.http_client_timeout) {
        anyhow::bail!(
            "--http-client-timeout {} is out of range: use 0.1 to 3600 seconds",
            args.http_client_timeout
        );
    }
    let group = args.group.as_deref().map(Group::lookup).transpose()?;
    let host = gateway_name(args.archive_host.as_deref())?;
    let api_limits = api_limits(&args)?;
    let token = match args.http {
        Some(addr) => http_token(&args, addr)?,
        None => None,
    };
    // The archive's address and credentials, read (not contacted) before anything is made.
    let archive = args.archive.as_deref().map(|url| args.archive_access.connect(url)).transpose()?;
    let archive_rate = match args.archive_rate {
        Some(DiskLimit::Bytes(b)) => Some(b),
        Some(DiskLimit::Percent(_)) => anyhow::bail!("--archive-rate takes bytes per second (like 20M)"),
        None => None,
    };
    let name = capture_daemon::storage::data_stem(&args.name).unwrap_or(&args.name);
    let template = NameTemplate::parse(name)?;
    let compression = match (args.no_compress, args.zstd_level) {
        (true, _) | (false, 0) => Compression::None,
        (false, level) => Compression::Zstd(level),
    };
    let ring = RingConfig {
        dir: args.dir.clone(),
        template,
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
        compress_threads: args.compress_threads.map_or_else(default_compress_threads, usize::from),
        // The daemon's to fill.
        snapshot: None,
        pinned_bytes: None,
    };
    let api = args.http.map(|addr| ApiConfig {
        addr,
        client_timeout: Duration::from_secs_f64(args.http_client_timeout),
        token,
        ring_dir: args.dir.clone(),
        limits: api_limits,
    });
    let archive =
        archive.map(|archive| ArchiveSetup { archive, rate: archive_rate, ring_files: args.archive_ring });
    let capture = args.kernel.capture_options(checked, &args.stop, pcapng)?;
    let config = DaemonConfig {
        capture,
        ring,
        group,
        max_pinned: args.max_pinned,
        host,
        api,
        archive,
        triggers: args.trigger.clone(),
        trigger_interval: Duration::from_secs_f64(args.trigger_interval),
    };
    let outcome = daemon::run(config, |attached| announce(attached, args.kernel.snaplen))?;
    print_summary(&outcome.summary);
    print_storage_summary(&outcome.storage);
    Ok(session_end(outcome.summary, &format_args!("the ring in {}", args.dir.display())))
}

/// The API's bearer token, or none with --http-no-auth; read before anything is created.
fn http_token(args: &RunArgs, addr: std::net::SocketAddr) -> anyhow::Result<Option<String>> {
    match (api_token(args.http_token_file.as_deref())?, args.http_no_auth) {
        (Some(_), true) => anyhow::bail!("--http-no-auth and a token exclude each other: choose one"),
        (Some(token), false) => Ok(Some(token)),
        (None, true) if !addr.ip().is_loopback() => Err(ApiError::NoAuthOffLoopback(addr).into()),
        (None, true) => Ok(None),
        (None, false) => anyhow::bail!(
            "the HTTP API needs a bearer token, or anyone on this machine could pull all traffic: \
             give --http-token-file FILE (not readable by everyone) or set RINGCAP_HTTP_TOKEN; \
             --http-no-auth serves without one (loopback only)"
        ),
    }
}

/// What one API request may ask for, checked before anything is created.
fn api_limits(args: &RunArgs) -> anyhow::Result<ApiLimits> {
    Ok(ApiLimits {
        max_window: parse_duration(&args.http_max_window)?,
        max_packets: args.http_max_packets,
        max_bytes: match args.http_max_bytes {
            DiskLimit::Bytes(b) => b,
            DiskLimit::Percent(_) => anyhow::bail!("--http-max-bytes takes a size (like 4G)"),
        },
    })
}

/// What the ring writer did, including every packet it could not store.
pub(crate) fn print_storage_summary(counters: &StorageCounters) {
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{} packets written to the ring", get(&counters.packets_written));
    eprintln!("{} packets lost to write errors", get(&counters.packets_lost));
    eprintln!("{} frames written, {} bytes", get(&counters.frames_written), get(&counters.bytes_written));
    eprintln!(
        "{} files created, {} removed by -W/--max-disk, {} removed for free space, {} lost to others",
        get(&counters.files_created),
        get(&counters.files_removed),
        get(&counters.files_removed_for_space),
        get(&counters.files_lost)
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

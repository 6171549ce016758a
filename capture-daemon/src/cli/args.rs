//! What several subcommands take: the capture options (`-i`, `-s`, the filter, `-Z`, ...),
//! the stop conditions, value parsers, the API token.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use capture_daemon::capture::ReaderConfig;
use capture_daemon::filter::Filter;
use capture_daemon::kernel::{Direction, FlowCut, KernelConfig, ProgramSet, Selection, XdpModeChoice};
use capture_daemon::pcap::DEFAULT_SNAPLEN;
use capture_daemon::privileges::User;
use capture_daemon::retrieve::out::Format;
use capture_daemon::session::{AnswerTimeouts, CaptureMode, CaptureOptions, IngressHook};
use capture_daemon::storage::budget::DiskLimit;
use clap::Args;

use super::choices::choice;

/// Kernel-side options shared by every capturing command.
#[derive(Args, Clone)]
pub(crate) struct KernelArgs {
    /// Interface to capture on.
    #[arg(short = 'i', long = "interface", value_name = "IFACE", value_delimiter = ',', required = true)]
    pub(crate) interface: Vec<String>,
    /// Once the programs are attached and the sockets open, run as USER with no
    /// capabilities left (as tcpdump -Z); the ring directory must be writable by USER.
    #[arg(short = 'Z', long = "user", value_name = "USER")]
    pub(crate) user: Option<String>,
    /// Bytes to keep of each packet; 0 means 262144 (the kernel copies at most 16384).
    #[arg(short = 's', long = "snapshot-length", value_name = "SNAPLEN", default_value_t = DEFAULT_SNAPLEN,
          value_parser = parse_snaplen)]
    pub(crate) snaplen: u32,
    /// Kernel ring buffer size in KiB (rounded up to a power of two).
    #[arg(short = 'B', long = "buffer-size", value_name = "KIB", default_value_t = 65536,
          value_parser = clap::value_parser!(u32).range(4..=4 * 1024 * 1024))]
    pub(crate) buffer_kib: u32,
    /// XDP attach mode: auto tries native, then generic, and says which it got.
    #[arg(long, value_parser = choice::<XdpModeChoice>(), default_value = "auto")]
    pub(crate) xdp_mode: XdpModeChoice,
    /// Packets to capture: arriving (XDP), sent (TC egress), or both.
    #[arg(long, value_parser = choice::<Direction>(), default_value = "in")]
    pub(crate) direction: Direction,
    /// How packets reach ringcap. `afxdp` redirects them into AF_XDP sockets: the fastest
    /// path, but packets then NEVER REACH THE HOST STACK. Use it only on dedicated mirror
    /// (SPAN/TAP) ports; ringcap refuses interfaces with an IP address unless --force.
    #[arg(long, value_parser = choice::<CaptureMode>(), default_value = "ring")]
    pub(crate) mode: CaptureMode,
    /// Capture with --mode afxdp even on an interface with an IP address, cutting the
    /// host off from the traffic arriving on it.
    #[arg(long)]
    pub(crate) force: bool,
    /// Where arriving packets are captured: XDP (in the driver), or TC ingress (after GRO,
    /// as the host stack sees them; works where XDP does not).
    #[arg(long, value_parser = choice::<IngressHook>(), default_value = "xdp")]
    pub(crate) ingress_hook: IngressHook,
    /// How long a packet may take from its time stamp to its CPU's ring or its queue's
    /// socket (milliseconds): packets are merged in time order, each written once nothing
    /// older can still arrive; later arrivals are written out of order and counted.
    #[arg(long, value_name = "MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) reorder_window: u64,
    /// Keep one packet in N, at random: `1/N`.
    #[arg(long, value_name = "1/N", value_parser = parse_fraction)]
    pub(crate) sample: Option<u32>,
    /// Keep one flow in N, both directions of each kept flow: `1/N`.
    #[arg(long, value_name = "1/N", value_parser = parse_fraction)]
    pub(crate) flow_sample: Option<u32>,
    /// Turn off the in-kernel TCP analysis (flags, handshakes, RTT) of every packet.
    #[arg(long)]
    pub(crate) no_tcp_analysis: bool,
    /// Turn off the in-kernel health of other protocols than TCP (ICMP and ICMPv6 by
    /// type and code, path-MTU messages; DNS queries and responses by rcode) on every packet.
    #[arg(long)]
    pub(crate) no_l7_analysis: bool,
    /// Also read DNS on this UDP port, beside 53.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) dns_port: Option<u16>,
    /// Per-flow cutting: each direction of each TCP and UDP flow keeps its first SIZE bytes
    /// of payload whole (64k, 1M; at most 1G); past that its packets are stored with their
    /// headers only (through the TCP/UDP header) and their wire length. SYN, FIN and RST
    /// segments are always whole.
    #[arg(long, value_name = "SIZE", value_parser = parse_flow_bytes)]
    pub(crate) flow_bytes: Option<u32>,
    /// Per-flow cutting by count: each direction of a flow keeps its first N packets whole
    /// (TCP: every segment counts; UDP: every datagram recorded).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) flow_packets: Option<u32>,
    /// Per-flow cutting of what cannot be read anyway: a direction of a TLS flow past its
    /// handshake (from its first application-data record) and of a QUIC flow past its
    /// long-header packets keep headers only.
    #[arg(long)]
    pub(crate) cut_encrypted: bool,
    /// A connection attempt is counted unanswered when its SYN gets no SYN-ACK this long.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub(crate) syn_timeout: f64,
    /// A DNS query is counted unanswered when it gets no response this long.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub(crate) dns_timeout: f64,
    /// A TLS handshake is counted timed out when its ClientHello gets no ServerHello
    /// (nor alert, RST or FIN) this long.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) tls_timeout: f64,
    /// An HTTP request is counted unanswered when it gets no final response this long.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub(crate) http_timeout: f64,
    /// TCP flows the analysis tracks at once; the least recently seen are evicted.
    #[arg(long, value_name = "N", default_value_t = 65536, value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    pub(crate) tcp_flows: u32,
    /// Record at most RATE packets per second (a token bucket per CPU, RATE split evenly).
    #[arg(long, value_name = "RATE", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_pps: Option<u64>,
    /// Filter expression, as an option (a trailing EXPRESSION takes precedence).
    #[arg(long, value_name = "EXPRESSION")]
    pub(crate) filter: Option<String>,
    /// Filter expression in tcpdump syntax (`man pcap-filter`), evaluated in the kernel.
    /// Options may come before or after it, as with tcpdump (`--` ends them).
    #[arg(value_name = "EXPRESSION")]
    pub(crate) expression: Vec<String>,
}

pub(crate) fn parse_fraction(text: &str) -> Result<u32, String> {
    let n = text.strip_prefix("1/").unwrap_or(text);
    match n.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?} is not a sampling fraction: use 1/N with N >= 1")),
    }
}

/// When to stop, shared by every capturing command.
#[derive(Args, Clone)]
pub(crate) struct StopArgs {
    /// Stop after this many packets.
    #[arg(short = 'c', value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,
}

/// `value` seconds of option `flag` as a duration, or why it is none.
fn positive_seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| anyhow::anyhow!("{flag} {value} is not a positive number of seconds"))
}

pub(crate) fn parse_flow_bytes(text: &str) -> Result<u32, String> {
    let max = capture_common::cut::FLOW_BYTES_MAX;
    let fraction_of_a_byte = text.contains('.') && !text.trim().ends_with(|c: char| c.is_ascii_alphabetic());
    match DiskLimit::parse(text) {
        _ if fraction_of_a_byte => Err(format!("{text:?} is not a whole number of bytes (64k, 1M)")),
        Ok(DiskLimit::Bytes(bytes)) if (1..=u64::from(max)).contains(&bytes) => Ok(bytes as u32),
        _ => Err(format!("{text:?} is not a flow size: use bytes from 1 to 1G (64k, 1M)")),
    }
}

pub(crate) fn parse_file_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("-W 0 would keep no files: use 1 or more".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a number of files")),
    }
}

pub(crate) fn parse_megabytes(text: &str) -> Result<u64, String> {
    let value: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of megabytes"))?;
    if !(0.01..=1_000_000.0).contains(&value) {
        return Err(format!("-C {value} is out of range: use 0.01 to 1000000 (millions of bytes)"));
    }
    Ok((value * 1_000_000.0) as u64)
}

pub(crate) fn parse_disk_limit(text: &str) -> Result<DiskLimit, String> {
    DiskLimit::parse(text).map_err(|e| e.to_string())
}

pub(crate) fn parse_snaplen(text: &str) -> Result<u32, String> {
    let value: u64 = text.parse().map_err(|_| format!("snaplen {text:?} is not a number of bytes"))?;
    match value {
        0 => Ok(DEFAULT_SNAPLEN),
        1..=262_144 => Ok(value as u32),
        _ => Err(format!("snaplen {value} is too large: use 0 or 1..=262144 bytes")),
    }
}

/// What [`KernelArgs::check`] resolved: the interfaces' indexes, the compiled filter and
/// the user to become.
pub(crate) struct Checked {
    pub(crate) ifindexes: Vec<u32>,
    pub(crate) filter: Filter,
    pub(crate) run_as: Option<User>,
}

impl KernelArgs {
    /// The interfaces' indexes, or a clear error for the first that does not exist.
    pub(crate) fn interface_indexes(&self) -> anyhow::Result<Vec<u32>> {
        let indexes = self.interface.iter().map(|i| capture_daemon::kernel::interface_index(i));
        Ok(indexes.collect::<Result<_, _>>()?)
    }

    /// The user to become once capture is up, looked up now so a wrong name is refused
    /// before anything is loaded.
    pub(crate) fn run_as(&self) -> anyhow::Result<Option<User>> {
        Ok(self.user.as_deref().map(User::lookup).transpose()?)
    }

    /// `--syn-timeout` as a duration, or why it is none.
    fn syn_timeout(&self) -> anyhow::Result<Duration> {
        positive_seconds("--syn-timeout", self.syn_timeout)
    }

    /// `--dns-timeout`, `--tls-timeout` and `--http-timeout` as durations, or why one is
    /// none.
    fn answer_timeouts(&self) -> anyhow::Result<AnswerTimeouts> {
        Ok(AnswerTimeouts {
            dns: positive_seconds("--dns-timeout", self.dns_timeout)?,
            tls: positive_seconds("--tls-timeout", self.tls_timeout)?,
            http: positive_seconds("--http-timeout", self.http_timeout)?,
        })
    }

    /// Refuses what cannot work before anything is loaded or created; returns what it
    /// resolved, for the capture to use as it is.
    pub(crate) fn check(&self) -> anyhow::Result<Checked> {
        self.syn_timeout()?;
        self.answer_timeouts()?;
        let checked =
            Checked { ifindexes: self.interface_indexes()?, filter: self.filter()?, run_as: self.run_as()? };
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
        Ok(checked)
    }

    /// pcapng when asked for, or by default when packets come from several interfaces or
    /// directions, which classic pcap cannot tell apart.
    pub(crate) fn pcapng(&self, format: Option<Format>) -> bool {
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
    pub(crate) fn filter(&self) -> anyhow::Result<Filter> {
        let expression = match (&self.filter, self.expression.is_empty()) {
            (Some(option), true) => option.clone(),
            _ => self.expression.join(" "),
        };
        Ok(Filter::compile(&expression)?)
    }

    pub(crate) fn selection(&self) -> Selection {
        Selection {
            sample_every: self.sample.unwrap_or(1),
            flow_sample_every: self.flow_sample.unwrap_or(1),
            max_pps: self.max_pps.unwrap_or(0),
            tcp_analysis: !self.no_tcp_analysis,
            l7_analysis: !self.no_l7_analysis,
            dns_port: self.dns_port.unwrap_or(0),
            cut: FlowCut {
                bytes: self.flow_bytes.unwrap_or(0),
                packets: self.flow_packets.unwrap_or(0),
                encrypted: self.cut_encrypted,
            },
        }
    }

    /// The session's options: the kernel side's from these options, the reader's and the
    /// duration from `stop`; with `pcapng`, records name the interfaces `checked` resolved.
    pub(crate) fn capture_options(
        &self,
        checked: Checked,
        stop: &StopArgs,
        pcapng: bool,
    ) -> anyhow::Result<CaptureOptions> {
        let buffer_bytes = (self.buffer_kib * 1024).next_power_of_two();
        let pcapng_interfaces = if pcapng { checked.ifindexes } else { Vec::new() };
        Ok(CaptureOptions {
            interfaces: self.interface.clone(),
            mode: self.mode,
            ingress_hook: self.ingress_hook,
            xdp_mode: self.xdp_mode,
            direction: self.direction,
            xsk_frames: (buffer_bytes / capture_daemon::capture::xsk::FRAME_SIZE).max(512),
            syn_timeout: self.syn_timeout()?,
            answer_timeouts: self.answer_timeouts()?,
            kernel: KernelConfig {
                filter: Some(checked.filter),
                snaplen: self.snaplen,
                ring_bytes: buffer_bytes,
                tcp_flows: self.tcp_flows,
                programs: ProgramSet::default(),
            },
            selection: self.selection(),
            reader: ReaderConfig {
                snaplen: self.snaplen,
                max_packets: stop.count,
                pcapng_interfaces,
                in_flight: Duration::from_millis(self.reorder_window),
                ..ReaderConfig::default()
            },
            duration: stop.duration()?,
            queue_batches: 256,
            live: Arc::default(),
            run_as: checked.run_as,
        })
    }
}

impl StopArgs {
    pub(crate) fn duration(&self) -> anyhow::Result<Option<Duration>> {
        self.duration
            .map(|s| {
                Duration::try_from_secs_f64(s)
                    .map_err(|_| anyhow::anyhow!("--duration {s} is not a valid number of seconds"))
            })
            .transpose()
    }
}

/// The API's bearer token: the first line of `file`, else RINGCAP_HTTP_TOKEN. A token file
/// everyone may read protects nothing, so it is refused.
pub(crate) fn api_token(file: Option<&Path>) -> anyhow::Result<Option<String>> {
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

/// How to reach an S3-compatible archive, shared by `run --archive` and `pull --from`.
/// What is not given comes from the usual AWS environment variables.
#[derive(Args, Clone, Default)]
pub(crate) struct ArchiveArgs {
    /// The object store's URL, e.g. http://127.0.0.1:3900 (default: AWS_ENDPOINT_URL, else AWS S3).
    #[arg(long, value_name = "URL")]
    pub(crate) archive_endpoint: Option<String>,
    /// The store's region (default: AWS_REGION or AWS_DEFAULT_REGION, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub(crate) archive_region: Option<String>,
    /// An AWS shared-credentials file, used when AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY are not set (profile: AWS_PROFILE, else default).
    #[arg(long, value_name = "FILE")]
    pub(crate) archive_credentials: Option<PathBuf>,
}

impl ArchiveArgs {
    /// Connects to the archive at `url` (`s3://BUCKET/PREFIX`); sends nothing yet.
    pub(crate) fn connect(&self, url: &str) -> anyhow::Result<capture_daemon::archive::store::Archive> {
        use capture_daemon::archive::store::{Archive, ArchiveSettings, ArchiveTarget};
        let settings = ArchiveSettings {
            target: ArchiveTarget::parse(url)?,
            endpoint: self.archive_endpoint.clone(),
            region: self.archive_region.clone(),
            credentials_file: self.archive_credentials.clone(),
        };
        Ok(Archive::connect(&settings)?)
    }
}

/// A running daemon's API, as the commands that talk to it (`stats`, `pin`) reach it.
#[derive(Args)]
pub(crate) struct ApiArgs {
    /// The daemon's API address (`ringcap run --http ADDR:PORT`).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9090")]
    pub(crate) http: std::net::SocketAddr,
    /// File holding the daemon's bearer token (or set RINGCAP_HTTP_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub(crate) http_token_file: Option<PathBuf>,
}

impl ApiArgs {
    /// An API request's status and JSON body.
    pub(crate) fn call(&self, method: &str, target: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        // A daemon that accepts but never answers is given up on, with the reason.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        let url = format!("http://{}{target}", self.http);
        let token = api_token(self.http_token_file.as_deref())?.map(|t| format!("Bearer {t}"));
        let unreachable = || {
            format!(
                "cannot reach ringcap's API at {}: is `ringcap run --http {}` running?",
                self.http, self.http
            )
        };
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = &token {
            request = request.header("Authorization", token);
        }
        let request = request.body(()).context("building the request")?;
        let mut response = agent.run(request).with_context(unreachable)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().context("reading the API's answer")?;
        let value =
            serde_json::from_str(&body).unwrap_or_else(|_| serde_json::json!({ "error": body.trim() }));
        Ok((status, value))
    }
}

/// The pause between two refreshes of `stats --watch` and `top -d`: 0.1 s to an hour.
pub(crate) fn parse_refresh_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if (0.1..=3600.0).contains(&seconds) => Ok(seconds),
        _ => Err(format!("{text:?} is not a number of seconds from 0.1 to 3600")),
    }
}

/// The error of an API answer other than success.
pub(crate) fn answer_error(status: u16, body: &serde_json::Value) -> anyhow::Error {
    anyhow::anyhow!("the API answered {status}: {}", body["error"].as_str().unwrap_or("(no reason given)"))
}

/// A time window, as `pull` and `pin` take it.
#[derive(Args)]
pub(crate) struct WindowArgs {
    /// The last DURATION up to now: 90s, 10m, 2h, 1h30m.
    #[arg(long, value_name = "DURATION")]
    pub(crate) last: Option<String>,
    /// Start of the window (included): RFC 3339 or HH:MM[:SS] today, UTC.
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
    /// End of the window (excluded); default: now and on.
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
}

//! The daemon's HTTP API (tokio): pcap of a window, the ring's files, counters, and
//! Prometheus metrics. Every request needs the bearer token (compared in constant time)
//! unless the operator chose `--http-no-auth`, which only a loopback address allows.
//! Pulls stream from the blocking pool, so a slow or vanishing client never touches the
//! capture threads. No request can stop the API or the capture: connections are limited
//! ([`MAX_CONNECTIONS`], the next one gets 503), a request head is bounded in size and
//! time, accept errors (EMFILE) are waited out, and a panic ends only its own request.
use std::fmt::Write as _;
use std::io::BufWriter;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capture_common::Counter;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::filter::Filter;
use crate::health::analysis::{
    count_at_most, prometheus_bounds_ns, summarize, RttSummary, RTT_KINDS, TCP_ANALYSIS,
};
use crate::health::{locked, LiveCounters};
use crate::kernel::{KernelCounters, RttBuckets};
use crate::pcap::DEFAULT_SNAPLEN;
use crate::retrieve::out::{Format, Stream};
use crate::retrieve::pull::{pull, ring_files, PullLimits};
use crate::retrieve::window::{self, Window};
use crate::storage::frames::DataFile;
use crate::storage::ring::StorageCounters;
use crate::timefmt::rfc3339;

/// The most connections served at once; one more is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// The largest request head (request line and headers, so the query string too).
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("--http-no-auth would let anyone who reaches {0} pull all traffic: it is allowed on loopback addresses only")]
    NoAuthOffLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Bounds on what one request may read.
#[derive(Clone, Copy, Debug)]
pub struct ApiLimits {
    pub max_window: Duration,
    pub max_packets: u64,
    pub max_bytes: u64,
}

pub struct ApiConfig {
    pub addr: SocketAddr,
    /// The bearer token every request must present; `None` only with `--http-no-auth`.
    pub token: Option<String>,
    pub ring_dir: PathBuf,
    pub limits: ApiLimits,
}

/// What the metrics and stats endpoints read.
pub struct Sources {
    pub live: Arc<LiveCounters>,
    pub storage: Arc<StorageCounters>,
}

struct Context {
    config: ApiConfig,
    sources: Sources,
}

/// Binds now (so a bad address fails before capture starts) and serves on a thread.
pub fn serve(config: ApiConfig, sources: Sources) -> Result<SocketAddr, ApiError> {
    if !config.addr.ip().is_loopback() && config.token.is_none() {
        return Err(ApiError::NoAuthOffLoopback(config.addr));
    }
    let addr = config.addr;
    let listener = StdListener::bind(addr).map_err(|source| ApiError::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| ApiError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ApiError::Bind { addr, source })?;
    let context = Arc::new(Context { config, sources });
    std::thread::Builder::new()
        .name("http-api".into())
        .spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(accept_loop(listener, context));
        })
        .expect("spawning a thread");
    Ok(bound)
}

/// Accepts connections for as long as the daemon runs. An accept error (out of file
/// descriptors, say) is waited out, never the end of the API.
async fn accept_loop(listener: StdListener, context: Arc<Context>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a nonblocking listener");
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // Over the limit: a short answer straight into the empty send buffer, no task.
            let _ = stream.try_write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
            );
            continue;
        };
        // A task per connection: a panic in it ends that request only.
        let context = Arc::clone(&context);
        tokio::spawn(async move {
            handle(stream, context).await;
            drop(permit);
        });
    }
}

/// A response with a body held in memory.
async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
}

/// Closes after an answer given before the request was read whole: reads on (a bounded
/// amount, for a bounded time) so that the unread rest does not reset the connection and
/// take the answer with it.
async fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 16 << 10];
    let mut drained = 0usize;
    let drain = async {
        while drained < 4 << 20 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

async fn error(stream: &mut TcpStream, status: &str, message: &str) {
    respond(stream, status, "text/plain; charset=utf-8", format!("{message}\n").as_bytes()).await;
}

/// Decodes `%XX` and `+` in a query component.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `presented` (an Authorization header's value) carries `token`, compared in
/// constant time so the comparison's duration tells nothing about the token.
fn authorized(presented: Option<&str>, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(bearer) = presented.and_then(|v| v.strip_prefix("Bearer ")) else { return false };
    bool::from(bearer.trim().as_bytes().ct_eq(token.as_bytes()))
}

async fn handle(mut stream: TcpStream, context: Arc<Context>) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_HEAD_BYTES {
                return Some(false);
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => head.extend_from_slice(&buffer[..n]),
            }
        }
        Some(true)
    };
    match tokio::time::timeout(HEAD_TIMEOUT, read_head).await {
        Ok(Some(true)) => {}
        Ok(Some(false)) => {
            let message = format!("the request head is over {MAX_HEAD_BYTES} bytes");
            error(&mut stream, "431 Request Header Fields Too Large", &message).await;
            return linger_close(stream).await;
        }
        Ok(None) => return,
        Err(_) => return error(&mut stream, "408 Request Timeout", "the request head took too long").await,
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if !version.starts_with("HTTP/1.") || parts.next().is_some() || !target.starts_with('/') {
        return error(&mut stream, "400 Bad Request", "expected a request line: GET /PATH HTTP/1.1").await;
    }
    if let Some(token) = &context.config.token {
        let presented = lines.find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("authorization").then(|| value.trim().to_string())
        });
        if !authorized(presented.as_deref(), token) {
            return error(
                &mut stream,
                "401 Unauthorized",
                "a bearer token is required: Authorization: Bearer TOKEN",
            )
            .await;
        }
    }
    if method != "GET" {
        return error(&mut stream, "405 Method Not Allowed", "only GET is served").await;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    match path {
        "/v1/pcap" => pcap(stream, &context, &params).await,
        "/v1/files" => {
            let body = files_json(&context.config.ring_dir);
            respond(&mut stream, "200 OK", "application/json", body.to_string().as_bytes()).await
        }
        "/v1/stats" => {
            let body = stats_json(&context.sources);
            respond(&mut stream, "200 OK", "application/json", body.to_string().as_bytes()).await
        }
        "/metrics" => {
            let body = metrics_text(&context.sources);
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4", body.as_bytes()).await
        }
        _ => error(&mut stream, "404 Not Found", "endpoints: /v1/pcap, /v1/files, /v1/stats, /metrics").await,
    }
}

async fn pcap(mut stream: TcpStream, context: &Context, params: &[(String, String)]) {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    for (key, _) in params {
        if !matches!(key.as_str(), "last" | "since" | "until" | "filter" | "format") {
            return error(
                &mut stream,
                "400 Bad Request",
                &format!("unknown parameter {key:?}: use last, since, until, filter, format"),
            )
            .await;
        }
    }
    let now = window::now();
    let window = match Window::from_args(get("last"), get("since"), get("until"), now) {
        Ok(w) => w,
        Err(message) => return error(&mut stream, "400 Bad Request", &message).await,
    };
    let limits = context.config.limits;
    let end = window.until_ns.min(now.as_nanos() as u64);
    if end.saturating_sub(window.since_ns) > limits.max_window.as_nanos() as u64 {
        let message =
            format!("the window is longer than this server's limit of {} s", limits.max_window.as_secs());
        return error(&mut stream, "400 Bad Request", &message).await;
    }
    let filter = match Filter::compile(get("filter").unwrap_or_default()) {
        Ok(f) => f,
        Err(e) => return error(&mut stream, "400 Bad Request", &e.to_string()).await,
    };
    let format = match get("format").unwrap_or("pcap") {
        "pcap" => Format::Pcap,
        "pcapng" => Format::Pcapng,
        other => {
            return error(&mut stream, "400 Bad Request", &format!("format {other:?}: use pcap or pcapng"))
                .await
        }
    };
    let content_type =
        if format == Format::Pcap { "application/vnd.tcpdump.pcap" } else { "application/x-pcapng" };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nX-Ringcap-Limits: max-packets={}, max-bytes={}\r\nConnection: close\r\n\r\n",
        limits.max_packets, limits.max_bytes
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let Ok(stream) = stream.into_std() else { return };
    let dir = context.config.ring_dir.clone();
    let _ = tokio::task::spawn_blocking(move || {
        stream.set_nonblocking(false)?;
        let mut out = Stream::new(BufWriter::with_capacity(1 << 20, stream), format, DEFAULT_SNAPLEN)?;
        let limits = PullLimits { max_packets: limits.max_packets, max_bytes: limits.max_bytes };
        pull(&dir, window, &filter, limits, &mut out).map(drop)
    })
    .await;
}

fn files_json(dir: &std::path::Path) -> serde_json::Value {
    let files: Vec<_> = ring_files(dir)
        .unwrap_or_default()
        .iter()
        .map(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
            match DataFile::open(path) {
                Ok(file) => {
                    let range = file.time_range();
                    json!({
                        "name": name, "bytes": bytes, "frames": file.frames.len(),
                        "packets": file.frames.iter().map(|f| u64::from(f.packets)).sum::<u64>(),
                        "first": range.map(|r| rfc3339(r.0)), "last": range.map(|r| rfc3339(r.1)),
                        "damaged_bytes": file.damaged_bytes,
                    })
                }
                Err(e) => json!({ "name": name, "bytes": bytes, "error": e.to_string() }),
            }
        })
        .collect();
    json!({ "files": files })
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn stats_json(sources: &Sources) -> serde_json::Value {
    let kernel = *locked(&sources.live.kernel);
    let kernel: serde_json::Map<String, serde_json::Value> =
        Counter::ALL.iter().map(|c| (c.name().to_string(), json!(kernel.get(*c)))).collect();
    let reader = &sources.live.reader;
    let s = &sources.storage;
    let rtt = locked(&sources.live.rtt).clone();
    let since_start = tcp_json(&locked(&sources.live.kernel), rtt.as_deref());
    let last_minute = sources.live.last_minute().map(|(span, kernel, rtt)| {
        let mut tcp = tcp_json(&kernel, Some(&rtt));
        tcp["seconds"] = json!(span.as_secs_f64());
        tcp
    });
    json!({
        "tcp": since_start,
        "tcp_last_minute": last_minute,
        "tcp_by_interface": by_interface(sources),
        "flows": *locked(&sources.live.flows),
        "kernel": kernel,
        "reader": {
            "packets": get(&reader.packets), "queue_dropped": get(&reader.queue_dropped), "malformed": get(&reader.malformed),
            "reorder_window_exceeded": get(&reader.reorder_window_exceeded), "unstamped": get(&reader.unstamped),
        },
        "xsk": *locked(&sources.live.xsk),
        "storage": {
            "packets_written": get(&s.packets_written), "packets_lost": get(&s.packets_lost),
            "frames_written": get(&s.frames_written), "bytes_written": get(&s.bytes_written),
            "files_created": get(&s.files_created), "files_removed": get(&s.files_removed),
            "files_removed_for_space": get(&s.files_removed_for_space), "disk_full_events": get(&s.disk_full_events),
            "write_errors": get(&s.write_errors), "index_errors": get(&s.index_errors),
        },
    })
}

/// The TCP health of each slot (interface and direction) since start.
fn by_interface(sources: &Sources) -> serde_json::Value {
    let kernel = *locked(&sources.live.kernel);
    let rtt = locked(&sources.live.rtt_by_slot).clone();
    let slots = locked(&sources.live.slots).clone();
    slots
        .iter()
        .map(|label| {
            json!({
                "interface": label.interface,
                "direction": label.direction,
                "tcp": tcp_json(&kernel.only(label.slot), rtt.as_ref().map(|b| &b[label.slot])),
            })
        })
        .collect()
}

/// TCP health from kernel counters and RTT buckets (cumulative, or the difference of two
/// snapshots): RTT percentiles of each kind and Wireshark's analysis counts.
fn tcp_json(kernel: &KernelCounters, rtt: Option<&RttBuckets>) -> serde_json::Value {
    let mut tcp: serde_json::Map<String, serde_json::Value> = RTT_KINDS
        .iter()
        .map(|kind| {
            (kind.key.to_string(), json!(rtt.map_or_else(RttSummary::default, |b| summarize(&b[kind.index]))))
        })
        .collect();
    let analysis: serde_json::Map<String, serde_json::Value> = TCP_ANALYSIS
        .iter()
        .map(|(counter, label)| (label.to_string(), json!(kernel.get(*counter))))
        .collect();
    tcp.insert("analysis".into(), analysis.into());
    for counter in
        [Counter::TcpSyn, Counter::TcpSynAck, Counter::TcpFin, Counter::TcpRst, Counter::TcpHandshakes]
    {
        tcp.insert(counter.name().into(), json!(kernel.get(counter)));
    }
    tcp.into()
}

/// Prometheus text exposition: counters only, fixed label sets.
fn metrics_text(sources: &Sources) -> String {
    let kernel = *locked(&sources.live.kernel);
    let flows = *locked(&sources.live.flows);
    let xsk = *locked(&sources.live.xsk);
    let reader = &sources.live.reader;
    let s = &sources.storage;
    let mut out = String::new();
    let mut family = |name: &str, help: &str, series: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, value) in series {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    family(
        "ringcap_packets_seen_total",
        "Packets the kernel programs ran on.",
        &[("", kernel.get(Counter::Seen))],
    );
    family("ringcap_packets_captured_total", "Packets handed to the writer.", &[("", get(&reader.packets))]);
    family(
        "ringcap_packets_dropped_total",
        "Packets lost by the capture path, by reason.",
        &[
            ("{reason=\"ring_full\"}", kernel.get(Counter::RingFull)),
            ("{reason=\"copy_failed\"}", kernel.get(Counter::CopyFailed)),
            ("{reason=\"queue_full\"}", get(&reader.queue_dropped)),
            ("{reason=\"write_error\"}", get(&s.packets_lost)),
            ("{reason=\"xsk_no_socket\"}", kernel.get(Counter::XskNoSocket)),
            ("{reason=\"xsk_no_free_frame\"}", xsk.rx_dropped),
            ("{reason=\"xsk_ring_full\"}", xsk.rx_ring_full),
        ],
    );
    family(
        "ringcap_packets_not_selected_total",
        "Packets left out on purpose, by reason.",
        &[
            ("{reason=\"filter\"}", kernel.get(Counter::Filtered)),
            ("{reason=\"sampling\"}", kernel.get(Counter::SampledOut)),
            ("{reason=\"rate_limit\"}", kernel.get(Counter::RateLimited)),
        ],
    );
    // TCP health by interface and direction: a fixed set of series per slot in use.
    let slots = locked(&sources.live.slots).clone();
    let per_slot = |labels: &dyn Fn(&str) -> Vec<(String, Counter)>| -> Vec<(String, u64)> {
        slots
            .iter()
            .flat_map(|slot| {
                let kernel = kernel.only(slot.slot);
                let prefix = format!("interface=\"{}\",direction=\"{}\"", slot.interface, slot.direction);
                labels(&prefix).into_iter().map(move |(labels, counter)| (labels, kernel.get(counter)))
            })
            .collect()
    };
    let flags = per_slot(&|prefix| {
        [
            ("syn", Counter::TcpSyn),
            ("syn_ack", Counter::TcpSynAck),
            ("fin", Counter::TcpFin),
            ("rst", Counter::TcpRst),
            ("ece", Counter::TcpEce),
            ("cwr", Counter::TcpCwr),
        ]
        .into_iter()
        .map(|(flag, counter)| (format!("{{{prefix},flag=\"{flag}\"}}"), counter))
        .collect()
    });
    let analysis = per_slot(&|prefix| {
        TCP_ANALYSIS
            .iter()
            .map(|(counter, event)| (format!("{{{prefix},event=\"{event}\"}}"), *counter))
            .collect()
    });
    let handshakes = per_slot(&|prefix| vec![(format!("{{{prefix}}}"), Counter::TcpHandshakes)]);
    for (name, help, series) in [
        ("ringcap_tcp_segments_total", "TCP segments seen (selected or not), by flag.", &flags),
        (
            "ringcap_tcp_analysis_segments_total",
            "TCP segments flagged by Wireshark's analysis rules (tcp.analysis.*), by event.",
            &analysis,
        ),
        ("ringcap_tcp_handshakes_total", "TCP three-way handshakes seen to completion.", &handshakes),
    ] {
        let series: Vec<(&str, u64)> =
            series.iter().map(|(labels, value)| (labels.as_str(), *value)).collect();
        family(name, help, &series);
    }
    family(
        "ringcap_tcp_flows_total",
        "TCP flows of the analysis's flow table, by event.",
        &[
            ("{event=\"inserted\"}", kernel.get(Counter::TcpFlowsInserted)),
            ("{event=\"mid_stream\"}", kernel.get(Counter::TcpFlowsMidStream)),
            ("{event=\"insert_failed\"}", kernel.get(Counter::TcpFlowInsertFailed)),
            ("{event=\"evicted\"}", flows.evicted),
        ],
    );
    family(
        "ringcap_tcp_syn_unanswered_total",
        "TCP connection attempts whose SYN got no SYN-ACK within --syn-timeout.",
        &[("", flows.syn_unanswered)],
    );
    family(
        "ringcap_storage_bytes_written_total",
        "Bytes of frames written to the ring.",
        &[("", get(&s.bytes_written))],
    );
    family(
        "ringcap_storage_frames_written_total",
        "Frames written to the ring.",
        &[("", get(&s.frames_written))],
    );
    family(
        "ringcap_storage_files_created_total",
        "Files created in the ring.",
        &[("", get(&s.files_created))],
    );
    family(
        "ringcap_storage_files_removed_total",
        "Files removed from the ring, by reason.",
        &[
            ("{reason=\"retention\"}", get(&s.files_removed)),
            ("{reason=\"free_space\"}", get(&s.files_removed_for_space)),
        ],
    );
    family(
        "ringcap_storage_disk_full_events_total",
        "Writes that found the disk full.",
        &[("", get(&s.disk_full_events))],
    );
    family(
        "ringcap_storage_write_errors_total",
        "Frames that could not be written.",
        &[("", get(&s.write_errors))],
    );
    if let Some(buckets) = locked(&sources.live.rtt_by_slot).as_ref() {
        for (i, kind) in RTT_KINDS.iter().enumerate() {
            let name = kind.metric;
            if i == 0 || RTT_KINDS[i - 1].metric != name {
                let help = if name == "ringcap_tcp_handshake_rtt_seconds" {
                    "TCP handshake RTT at the capture point: server side SYN to SYN-ACK, client side SYN-ACK to ACK."
                } else {
                    "TCP RTT from the capture point to the data's receiver and back, by method: timestamps (TSval to TSecr) or data to ACK."
                };
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            }
            for slot in &slots {
                let label = format!(
                    "interface=\"{}\",direction=\"{}\",{}",
                    slot.interface, slot.direction, kind.label
                );
                let histogram = &buckets[slot.slot][kind.index];
                for bound in prometheus_bounds_ns() {
                    let le = bound as f64 / 1e9;
                    let count = count_at_most(histogram, bound);
                    let _ = writeln!(out, "{name}_bucket{{{label},le=\"{le}\"}} {count}");
                }
                let total: u64 = histogram.iter().sum();
                let sum = kernel.only(slot.slot).get(kind.sum) as f64 / 1e9;
                let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {total}");
                let _ = writeln!(out, "{name}_sum{{{label}}} {sum}");
                let _ = writeln!(out, "{name}_count{{{label}}} {total}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_whole() {
        assert!(authorized(Some("Bearer s3cret"), "s3cret"));
        for wrong in
            [None, Some("Bearer s3cre"), Some("Bearer s3cret2"), Some("s3cret"), Some("Basic s3cret")]
        {
            assert!(!authorized(wrong, "s3cret"), "{wrong:?}");
        }
    }

    #[test]
    fn decodes_query_components() {
        assert_eq!(percent_decode("host%2010.0.0.1+and+port%20443"), "host 10.0.0.1 and port 443");
        assert_eq!(percent_decode("100%"), "100%");
    }
}

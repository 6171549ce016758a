//! The daemon's HTTP API (tokio): pcap of a window, the ring's files, counters, and
//! Prometheus metrics. Every request needs the bearer token (compared in constant time)
//! unless the operator chose `--http-no-auth`, which only a loopback address allows.
//! Pulls stream from the blocking pool, so a slow or vanishing client never touches the
//! capture threads. No request can stop the API or the capture: connections are limited
//! ([`MAX_CONNECTIONS`], the next one gets 503), a request head is bounded in size and
//! time, accept errors (EMFILE) are waited out, and a panic ends only its own request.
mod json;
mod metrics;

use json::{files_json, stats_json};
use metrics::metrics_text;

use std::io::BufWriter;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::filter::Filter;
use crate::health::LiveCounters;
use crate::pcap::DEFAULT_SNAPLEN;
use crate::retrieve::out::{Format, Stream};
use crate::retrieve::pull::{pull, PullLimits};
use crate::retrieve::window::{self, Window};
use crate::storage::ring::StorageCounters;

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

//! The daemon's HTTP API, served by hyper and axum with tower middleware: pcap of a
//! window, the ring's files, counters, and Prometheus metrics. Every request needs the
//! bearer token (compared in constant time) unless the operator chose `--http-no-auth`,
//! which only a loopback address allows. Pulls stream from the blocking pool, so a slow or
//! vanishing client never touches the capture threads. No request can stop the API or the
//! capture: connections are limited ([`MAX_CONNECTIONS`], the next one gets 503), a request
//! head is bounded in size ([`MAX_HEAD_BYTES`]: 431) and time (408), requests at once are
//! limited (503 past [`MAX_REQUESTS`]) and must start their answer within 30 s (503),
//! accept errors (EMFILE) are waited out, and a panic ends only its own connection.
//! A pull holds one of [`MAX_PULLS`] permits until its body is sent (the next one gets
//! 503), and a client that reads nothing of it for `--http-client-timeout` is cut off
//! and counted, so stalled clients can hold neither threads nor memory: a pull buffers at
//! most [`PULL_BUFFERED_CHUNKS`] chunks of [`PULL_CHUNK_BYTES`] for its client, beside the
//! frames its workers decode (a few per worker).
mod json;
pub mod metrics;
mod triggers;

use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::mpsc;
use tower::ServiceBuilder;

use crate::archive::upload::ArchiveCounters;
use crate::filter::Filter;
use crate::health::flows::SortKey;
use crate::health::{locked, LiveCounters};
use crate::pcap::DEFAULT_SNAPLEN;
use crate::pins::{PinError, PinRequest, PinStore};
use crate::retrieve::out::{Format, Stream};
use crate::retrieve::pull::{pull, PullLimits};
use crate::retrieve::window::{Window, WindowError};
use crate::storage::ring::StorageCounters;
use crate::timefmt::{unix_now, unix_now_ns};
use json::{files_json, stats_json};
use metrics::metrics_text;

/// The most connections open at once; one more is answered 503 and closed. Idle ones
/// cost a few kilobytes each and go after [`HEAD_TIMEOUT`].
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections the kernel queues for accepting (it caps this at net.core.somaxconn).
const LISTEN_BACKLOG: libc::c_int = 2 * MAX_CONNECTIONS as libc::c_int;
/// The most requests served at once (pulls included); one more is answered 503.
pub const MAX_REQUESTS: usize = 64;
/// The most pulls streaming at once; one more is answered 503.
pub const MAX_PULLS: usize = 8;
/// A pull's output is cut in chunks of this size...
pub const PULL_CHUNK_BYTES: usize = 1 << 20;
/// ...and at most this many wait for a client that reads slowly.
pub const PULL_BUFFERED_CHUNKS: usize = 4;
/// The largest request head (request line and headers, so the query string too).
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// How long a client may take to send a request head, first or next.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a response may take to start (a pull's body then streams for as long as it
/// needs): past it, 503.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("--http-no-auth would let anyone who reaches {0} pull all traffic: it is allowed on loopback addresses only")]
    NoAuthOffLoopback(SocketAddr),
    #[error("cannot listen on {addr}")]
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
    /// How long a pull waits for its client to take the next chunk before it is cut off.
    pub client_timeout: Duration,
    /// The bearer token every request must present; `None` only with `--http-no-auth`.
    pub token: Option<String>,
    pub ring_dir: PathBuf,
    pub limits: ApiLimits,
}

/// What the metrics and stats endpoints read, and the pins the pin endpoints manage.
pub struct Sources {
    pub live: Arc<LiveCounters>,
    pub storage: Arc<StorageCounters>,
    pub pins: Arc<PinStore>,
    /// The uploader's counters, with `--archive`.
    pub archive: Option<Arc<ArchiveCounters>>,
    /// What the API refused or cut off.
    pub api: Arc<ApiCounters>,
    /// The trigger rules' and alerts' states.
    pub triggers: Arc<crate::triggers::Triggers>,
}

impl Sources {
    /// The sources of a daemon whose capture has counted nothing yet: `slots` in use, RTT
    /// histograms empty, no archive. What trigger rules are checked against (and what
    /// tests and benches evaluate them on).
    pub fn idle(
        pins: Arc<PinStore>,
        slots: Vec<crate::health::SlotLabel>,
        triggers: Arc<crate::triggers::Triggers>,
    ) -> Self {
        let live = LiveCounters::default();
        *locked(&live.slots) = slots;
        *locked(&live.rtt_by_slot) = Some(crate::kernel::empty_slot_rtt());
        Sources {
            live: Arc::new(live),
            storage: Arc::default(),
            pins,
            archive: None,
            api: Arc::default(),
            triggers,
        }
    }
}

/// Pulls the API did not serve to the end, by reason (`/metrics`).
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// Refused: [`MAX_PULLS`] were streaming.
    pub pulls_refused_busy: std::sync::atomic::AtomicU64,
    /// Cut off: the client read nothing for `--http-client-timeout`.
    pub pulls_cut_stalled: std::sync::atomic::AtomicU64,
}

struct Context {
    config: ApiConfig,
    sources: Arc<Sources>,
    /// One per pull streaming.
    pulls: Arc<tokio::sync::Semaphore>,
}

/// The API's socket, bound and listening: taken before anything else is made, so a bad
/// or busy address refuses the start and leaves nothing behind.
pub struct Listener {
    listener: StdListener,
    pub addr: SocketAddr,
}

/// Binds `config`'s address (refused off loopback without a token).
pub fn bind(config: &ApiConfig) -> Result<Listener, ApiError> {
    if !config.addr.ip().is_loopback() && config.token.is_none() {
        return Err(ApiError::NoAuthOffLoopback(config.addr));
    }
    let addr = config.addr;
    let listener = StdListener::bind(addr).map_err(|source| ApiError::Bind { addr, source })?;
    // std listens with a backlog of 128: a burst of more connections than that would
    // overflow the accept queue (their clients think they are connected; the server drops
    // their ACKs), so every one of MAX_CONNECTIONS could not be taken in turn.
    // SAFETY: listen(2) on our own bound socket; a second call only sets the backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(ApiError::Bind { addr, source: std::io::Error::last_os_error() });
    }
    listener.set_nonblocking(true).map_err(|source| ApiError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ApiError::Bind { addr, source })?;
    Ok(Listener { listener, addr: bound })
}

/// Serves the API on `listener`, on a thread of its own.
pub fn serve(listener: Listener, config: ApiConfig, sources: Arc<Sources>) {
    let Listener { listener, .. } = listener;
    let context =
        Arc::new(Context { config, sources, pulls: Arc::new(tokio::sync::Semaphore::new(MAX_PULLS)) });
    raise_open_files_limit();
    std::thread::Builder::new()
        .name("http-api".into())
        .spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(accept_loop(listener, context));
        })
        .expect("spawning a thread");
}

/// Lets the process hold [`MAX_CONNECTIONS`] sockets beside its own files: the soft limit
/// on open files goes up to the hard one (a default soft limit of 1024 would not do).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The routes, behind the token check and the limit on requests at once.
fn router(context: Arc<Context>) -> Router {
    let refused = |error: BoxError| async move {
        let message = if error.is::<tower::timeout::error::Elapsed>() {
            format!("the answer took over {} s", RESPONSE_TIMEOUT.as_secs())
        } else {
            "too many requests at once".to_string()
        };
        (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], format!("{message}\n"))
    };
    Router::new()
        .route("/v1/pcap", get(pcap))
        .route("/v1/files", get(list_files))
        .route(
            "/v1/stats",
            get(|State(c): State<Arc<Context>>| async move { json_response(stats_json(&c.sources)) }),
        )
        .route("/v1/flows", get(list_flows))
        .route("/v1/pins", get(list_pins).post(create_pin))
        .route("/v1/pins/{name}", get(show_pin).delete(remove_pin))
        .route("/v1/triggers", get(triggers::list))
        .route(
            "/v1/alerts",
            axum::routing::post(triggers::receive_alerts)
                .layer(axum::extract::DefaultBodyLimit::max(crate::triggers::alerts::MAX_PAYLOAD_BYTES)),
        )
        .route(
            "/metrics",
            get(|State(c): State<Arc<Context>>| async move {
                ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics_text(&c.sources))
            }),
        )
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "endpoints: /v1/pcap, /v1/files, /v1/stats, /v1/flows, /v1/pins, /v1/triggers, /v1/alerts, /metrics",
            )
        })
        .method_not_allowed_fallback(|| async {
            text(
                StatusCode::METHOD_NOT_ALLOWED,
                "GET everywhere; POST /v1/pins pins, DELETE /v1/pins/NAME unpins, POST /v1/alerts takes Alertmanager's webhook",
            )
        })
        .layer(middleware::from_fn_with_state(Arc::clone(&context), require_token))
        .layer(
            ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(refused))
                .load_shed()
                .concurrency_limit(MAX_REQUESTS)
                .timeout(RESPONSE_TIMEOUT),
        )
        .with_state(context)
}

/// Accepts connections for as long as the daemon runs. An accept error (out of file
/// descriptors, say) is waited out, never the end of the API.
async fn accept_loop(listener: StdListener, context: Arc<Context>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a nonblocking listener");
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let app = router(context);
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
        let service = TowerToHyperService::new(app.clone());
        // A task per connection: a panic in it ends that connection only.
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
            drop(permit);
        });
    }
}

fn text(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
}

fn json_response(body: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Whether `presented` (an Authorization header's value) carries `token`, compared in
/// constant time so the comparison's duration tells nothing about the token.
fn authorized(presented: Option<&str>, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(bearer) = presented.and_then(|v| v.strip_prefix("Bearer ")) else { return false };
    bool::from(bearer.trim().as_bytes().ct_eq(token.as_bytes()))
}

/// Every route (and every unknown path) is behind the token, when there is one.
async fn require_token(State(context): State<Arc<Context>>, request: Request, next: Next) -> Response {
    if let Some(token) = &context.config.token {
        let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if !authorized(presented, token) {
            return text(StatusCode::UNAUTHORIZED, "a bearer token is required: Authorization: Bearer TOKEN");
        }
    }
    next.run(request).await
}

/// What a pull streams through: the blocking writer's chunks, into the response body. A
/// client that takes no chunk for `timeout` is cut off (counted), so it cannot hold the
/// pull's thread, memory and permit forever.
struct BodyWriter {
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
    counters: Arc<ApiCounters>,
    /// Why the client was let go, once it was: every later write (the buffer's last
    /// flush among them) fails at once, so a stalled client is waited for and counted once.
    cut_off: Option<std::io::ErrorKind>,
}

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::io::ErrorKind;
        if let Some(kind) = self.cut_off {
            return Err(std::io::Error::new(kind, "the pull's client was let go"));
        }
        let chunk = Ok(Bytes::copy_from_slice(buf));
        let sent = self.runtime.block_on(tokio::time::timeout(self.timeout, self.sender.send(chunk)));
        let (kind, why) = match sent {
            Ok(Ok(())) => return Ok(buf.len()),
            Ok(Err(_)) => (ErrorKind::BrokenPipe, "the client went away"),
            Err(_) => {
                self.counters.pulls_cut_stalled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                eprintln!(
                    "ringcap: a pull's client read nothing for {} s: cut off",
                    self.timeout.as_secs_f64()
                );
                (ErrorKind::TimedOut, "the client stopped reading")
            }
        };
        self.cut_off = Some(kind);
        Err(std::io::Error::new(kind, why))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type QueryParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Why a request is refused with 400; the message is the response's body.
#[derive(Debug, thiserror::Error)]
enum BadRequest {
    #[error("the query string is not valid UTF-8 form encoding")]
    NotForm,
    #[error("unknown parameter {0:?}: use {1}")]
    UnknownParameter(String, String),
    #[error("parameter {0:?} is given more than once")]
    Repeated(String),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error("the window is longer than this server's limit of {0} s (--http-max-window)")]
    TooLong(u64),
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        text(StatusCode::BAD_REQUEST, &self.to_string())
    }
}

/// A request's query parameters, each one of `known`, and the window they name.
struct WindowQuery {
    params: Vec<(String, String)>,
    window: Window,
}

/// The parameters of `query`, each one of `known` and given once; or why not.
fn checked_params(query: QueryParams, known: &[&str]) -> Result<Vec<(String, String)>, BadRequest> {
    let Ok(Query(params)) = query else {
        return Err(BadRequest::NotForm);
    };
    if let Some((key, _)) = params.iter().find(|(key, _)| !known.contains(&key.as_str())) {
        return Err(BadRequest::UnknownParameter(key.clone(), known.join(", ")));
    }
    for (i, (key, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(earlier, _)| earlier == key) {
            return Err(BadRequest::Repeated(key.clone()));
        }
    }
    Ok(params)
}

impl WindowQuery {
    /// The parameters and window of `query`; or why not (the body of a 400).
    fn parse(query: QueryParams, known: &[&str]) -> Result<Self, BadRequest> {
        let params = checked_params(query, known)?;
        let get = |name: &str| lookup(&params, name);
        let window = Window::from_args(get("last"), get("since"), get("until"), unix_now())?;
        Ok(WindowQuery { params, window })
    }

    fn get(&self, name: &str) -> Option<&str> {
        lookup(&self.params, name)
    }
}

fn lookup<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

async fn pcap(State(context): State<Arc<Context>>, query: QueryParams) -> Response {
    let query = match WindowQuery::parse(query, &["last", "since", "until", "filter", "format"]) {
        Ok(parsed) => parsed,
        Err(refused) => return refused.into_response(),
    };
    let (window, get) = (query.window, |name: &str| query.get(name));
    let bad = |message: &str| text(StatusCode::BAD_REQUEST, message);
    let limits = context.config.limits;
    if let Err(message) = within_max_window(window, limits) {
        return message.into_response();
    }
    let filter = match Filter::compile(get("filter").unwrap_or_default()) {
        Ok(f) => f,
        Err(e) => return bad(&e.to_string()),
    };
    let format = match get("format").unwrap_or("") {
        "" => Format::of_ring(&context.config.ring_dir),
        "pcap" => Format::Pcap,
        "pcapng" => Format::Pcapng,
        other => return bad(&format!("format {other:?}: use pcap or pcapng")),
    };
    let content_type =
        if format == Format::Pcap { "application/vnd.tcpdump.pcap" } else { "application/x-pcapng" };
    let Ok(permit) = Arc::clone(&context.pulls).try_acquire_owned() else {
        context.sources.api.pulls_refused_busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            format!("{MAX_PULLS} pulls are streaming already: retry in a few seconds\n"),
        )
            .into_response();
    };
    let (sender, receiver) = mpsc::channel(PULL_BUFFERED_CHUNKS);
    let dir = context.config.ring_dir.clone();
    let body = BodyWriter {
        sender: sender.clone(),
        runtime: tokio::runtime::Handle::current(),
        timeout: context.config.client_timeout,
        counters: Arc::clone(&context.sources.api),
        cut_off: None,
    };
    // How the pull ended, set before the body's last sender goes: the body ends cleanly
    // only after a pull that succeeded.
    let outcome = Arc::new(std::sync::OnceLock::<Result<(), String>>::new());
    let ended = Arc::clone(&outcome);
    tokio::task::spawn_blocking(move || {
        // Held until the body is sent, or the pull cut off.
        let _permit = permit;
        let pulled = Stream::new(BufWriter::with_capacity(PULL_CHUNK_BYTES, body), format, DEFAULT_SNAPLEN)
            .and_then(|mut out| {
                let limits = PullLimits { max_packets: limits.max_packets, max_bytes: limits.max_bytes };
                pull(&dir, window, &filter, limits, &mut out).map(drop)
            });
        let _ = ended.set(pulled.map_err(|e| e.to_string()));
        drop(sender);
    });
    // The status is gone by the time a pull fails: its body is cut short with an error
    // (never a clean end), so the client knows the pcap is incomplete. Never a wait on
    // a client that reads nothing, as sending the error down its full channel would be.
    let ending = std::iter::once_with(move || match outcome.get() {
        Some(Ok(())) => None,
        Some(Err(why)) => Some(Err(std::io::Error::other(why.clone()))),
        None => Some(Err(std::io::Error::other("the pull stopped before its end"))),
    })
    .flatten();
    let chunks = tokio_stream::StreamExt::chain(
        tokio_stream::wrappers::ReceiverStream::new(receiver),
        tokio_stream::iter(ending),
    );
    let limits_header = format!("max-packets={}, max-bytes={}", limits.max_packets, limits.max_bytes);
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&limits_header) {
        headers.insert("x-ringcap-limits", value);
    }
    response
}

/// Refuses a window longer than `--http-max-window` (a `last` window ends a nanosecond
/// past now, so that a packet stamped now is in: that nanosecond is not held against it).
fn within_max_window(window: Window, limits: ApiLimits) -> Result<(), BadRequest> {
    let end = window.until_ns.min(unix_now_ns() + 1);
    let length = end.saturating_sub(window.since_ns).saturating_sub(1);
    if u128::from(length) > limits.max_window.as_nanos() {
        return Err(BadRequest::TooLong(limits.max_window.as_secs()));
    }
    Ok(())
}

fn pin_error(error: PinError) -> Response {
    let status = match error {
        PinError::BadRequest(_) => StatusCode::BAD_REQUEST,
        PinError::NotFound(_) => StatusCode::NOT_FOUND,
        PinError::Exists(_) | PinError::Busy(_) => StatusCode::CONFLICT,
        PinError::TooMany(_) => StatusCode::SERVICE_UNAVAILABLE,
        PinError::NoRoom(_) => StatusCode::INSUFFICIENT_STORAGE,
        PinError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": error.to_string() }).to_string(),
    )
        .into_response()
}

/// Flows `/v1/flows` lists at most (an answer of about 0.8 MB).
const MAX_FLOWS_LISTED: usize = 1_000;

/// `GET /v1/flows?sort=retransmission&limit=20`: the TCP connections of the last sweep
/// of the flow table, the largest by `sort` first, and the servers and hosts behind
/// unanswered attempts, refusals and resets.
async fn list_flows(State(context): State<Arc<Context>>, query: QueryParams) -> Response {
    let params = match checked_params(query, &["sort", "limit"]) {
        Ok(params) => params,
        Err(refused) => return refused.into_response(),
    };
    let sort_name = lookup(&params, "sort").unwrap_or("retransmission").to_string();
    let sort = match sort_name.parse::<SortKey>() {
        Ok(sort) => sort,
        Err(message) => return text(StatusCode::BAD_REQUEST, &message),
    };
    let limit = match lookup(&params, "limit") {
        None => 20,
        Some(digits) => match digits.parse::<usize>() {
            Ok(limit)
                if digits.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_FLOWS_LISTED).contains(&limit) =>
            {
                limit
            }
            _ => {
                let message = format!("limit must be a whole number from 1 to {MAX_FLOWS_LISTED}");
                return text(StatusCode::BAD_REQUEST, &message);
            }
        },
    };
    let list = Arc::clone(&locked(&context.sources.live.flow_list));
    // Off the API's thread: ranking a large table takes milliseconds.
    let answer =
        tokio::task::spawn_blocking(move || serde_json::to_vec(&list.answer(sort, &sort_name, limit)));
    match answer.await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn list_pins(State(context): State<Arc<Context>>) -> Response {
    let pins: Vec<serde_json::Value> = context.sources.pins.list().iter().map(|p| p.to_json()).collect();
    json_response(serde_json::json!({ "pins": pins }))
}

async fn show_pin(State(context): State<Arc<Context>>, Path(name): Path<String>) -> Response {
    match context.sources.pins.get(&name) {
        Some(pin) => json_response(pin.to_json()),
        None => pin_error(PinError::NotFound(name)),
    }
}

/// `POST /v1/pins?last=10m&filter=...&name=NAME`: 202 and the pin, copying; its state is
/// then read at `/v1/pins/NAME`.
async fn create_pin(State(context): State<Arc<Context>>, query: QueryParams) -> Response {
    let query = match WindowQuery::parse(query, &["last", "since", "until", "filter", "name"]) {
        Ok(parsed) => parsed,
        Err(refused) => return refused.into_response(),
    };
    if let Err(message) = within_max_window(query.window, context.config.limits) {
        return message.into_response();
    }
    let request = PinRequest {
        name: query.get("name").map(str::to_string),
        window: query.window,
        expression: query.get("filter").unwrap_or_default().to_string(),
        trigger: None,
        max_bytes: None,
    };
    let pins = Arc::clone(&context.sources.pins);
    match tokio::task::spawn_blocking(move || pins.pin(request)).await {
        Ok(Ok(pin)) => {
            (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], pin.to_json().to_string())
                .into_response()
        }
        Ok(Err(error)) => pin_error(error),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the pin could not be started"),
    }
}

/// The ring's files, read on the blocking pool: a file that is slow to read (a sparse
/// giant, a stuck disk) holds that request only, up to the response timeout, never the
/// runtime that answers `/v1/pcap`, `/v1/stats` and `/metrics`.
async fn list_files(State(context): State<Arc<Context>>) -> Response {
    let dir = context.config.ring_dir.clone();
    match tokio::task::spawn_blocking(move || files_json(&dir)).await {
        Ok(files) => json_response(files),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the ring's files could not be listed"),
    }
}

async fn remove_pin(State(context): State<Arc<Context>>, Path(name): Path<String>) -> Response {
    let pins = Arc::clone(&context.sources.pins);
    match tokio::task::spawn_blocking(move || pins.unpin(&name)).await {
        Ok(Ok(pin)) => json_response(pin.to_json()),
        Ok(Err(error)) => pin_error(error),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "the pin could not be removed"),
    }
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
}

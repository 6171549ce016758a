//! A capture session: loads and attaches the programs, runs the reader and writer
//! threads, publishes the live counters ([`crate::health`]), stops on count, duration or
//! signal, and detaches cleanly.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use capture_common::MAX_INTERFACES;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use crate::capture::cut::{CutCounts, FlowCutter};
use crate::capture::links::{Links, LinksEnd};
use crate::capture::xsk::{XskConfig, XskError, XskSocket, XskSource};
use crate::capture::{Batch, BufferPool, Delivery, Reader, ReaderConfig, ReaderControl, RecordSource};
use crate::health::sweeper::Sweeper;
use crate::health::{locked, slot_labels, LiveCounters};
use crate::kernel::{
    Attach, CaptureProgram, Direction, KernelConfig, KernelCounters, KernelError, ProgramSet, Selection,
    XdpModeChoice,
};
use crate::output::Sink;
use crate::privileges::{PrivilegeError, User};
use crate::records::XskStatistics;

/// How packets travel from the kernel to ringcap (`--mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaptureMode {
    /// Copy each packet into a BPF ring buffer; packets continue to the host as usual.
    #[default]
    Ring,
    /// Redirect packets into AF_XDP sockets, one per receive queue. Packets do NOT
    /// continue to the host stack: for dedicated mirror (SPAN/TAP) ports only.
    Afxdp,
}

/// Where arriving packets are captured (`--ingress-hook`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IngressHook {
    /// XDP: in the driver, before the kernel builds an skb (fastest).
    #[default]
    Xdp,
    /// TC ingress: as the host stack receives them, after GRO (works without XDP).
    Tc,
}

/// What to capture and how.
/// How long a request waits for its answer before it counts unanswered, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerTimeouts {
    pub dns: Duration,
    pub tls: Duration,
    pub http: Duration,
}

impl AnswerTimeouts {
    /// When each kind's requests must have started to be still waiting now, on the
    /// kernel's monotonic clock (by `capture_common::exchange` kind).
    fn started_before_ns(&self) -> [u64; capture_common::exchange::KINDS as usize] {
        let now = crate::capture::clock::monotonic_ns();
        let before = |timeout: Duration| now.saturating_sub(timeout.as_nanos() as u64);
        [before(self.dns), before(self.tls), before(self.http), 0]
    }
}

#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub interfaces: Vec<String>,
    pub mode: CaptureMode,
    pub ingress_hook: IngressHook,
    pub xdp_mode: XdpModeChoice,
    pub direction: Direction,
    /// Frames of each AF_XDP socket's UMEM (`--mode afxdp`).
    pub xsk_frames: u32,
    /// A SYN without SYN-ACK this long is a connection attempt that went unanswered.
    pub syn_timeout: Duration,
    /// How long a request waits for its answer before it counts unanswered.
    pub answer_timeouts: AnswerTimeouts,
    pub kernel: KernelConfig,
    /// Filter and sampling, installed before any program is attached.
    pub selection: Selection,
    pub reader: ReaderConfig,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Batches the queue between reader and writer holds.
    pub queue_batches: usize,
    /// Where the session publishes its counters while it runs.
    pub live: Arc<LiveCounters>,
    /// The user to become once the programs are attached and the sockets open (`-Z`).
    pub run_as: Option<User>,
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Socket(#[from] XskError),
    #[error("could not install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
}

/// Everything a session counted; printed on exit like tcpdump's summary.
#[derive(Clone, Debug, Default)]
pub struct CaptureSummary {
    /// Packets delivered to the sink.
    pub captured: u64,
    pub kernel: KernelCounters,
    /// Packets lost in AF_XDP sockets (and the kernel's other counts of them).
    pub xsk: XskStatistics,
    /// Packets lost because the writer fell behind.
    pub queue_dropped: u64,
    /// Packets written out of time order, later than the reorder window.
    pub reorder_window_exceeded: u64,
    /// AF_XDP packets without the kernel's timestamp, stamped on arrival in user space.
    pub unstamped: u64,
    /// Packets lost to write errors.
    pub write_dropped: u64,
    /// The write error that ended the session early, if any.
    pub write_error: Option<String>,
    /// Why the capture's interfaces ended the session, if they did.
    pub links_end: Option<LinksEnd>,
}

impl CaptureOptions {
    /// The programs to attach to each interface.
    fn attach_points(&self) -> Vec<Attach> {
        let mut points = Vec::new();
        if self.direction != Direction::Out {
            points.push(match (self.mode, self.ingress_hook) {
                (CaptureMode::Afxdp, _) => Attach::XdpToSockets,
                (CaptureMode::Ring, IngressHook::Xdp) => Attach::Xdp,
                (CaptureMode::Ring, IngressHook::Tc) => Attach::TcIngress,
            });
        }
        if self.direction != Direction::In {
            points.push(Attach::TcEgress);
        }
        points
    }
}

/// Runs a capture session until count, duration, SIGINT or SIGTERM.
/// `on_attached` is told where each interface is captured, before traffic flows to the sink.
pub fn run_capture(
    options: &CaptureOptions,
    sink: Box<dyn Sink>,
    on_attached: impl FnOnce(&[(String, Vec<String>)]),
) -> Result<CaptureSummary, SessionError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(SessionError::Signals)?;
    }
    let control = Arc::new(ReaderControl::default());
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&control.rotate))
        .map_err(SessionError::Signals)?;
    let points = options.attach_points();
    let programs = points.iter().fold(ProgramSet::default(), |set, &point| set.with(point));
    let mut program = CaptureProgram::load(KernelConfig { programs, ..options.kernel.clone() })?;
    program.select(&options.selection)?;
    let ifindexes = options
        .interfaces
        .iter()
        .map(|iface| crate::kernel::interface_index(iface))
        .collect::<Result<Vec<_>, _>>()?;
    program.set_interfaces(&ifindexes)?;
    *locked(&options.live.slots) = slot_labels(&options.interfaces, options.direction);

    // The AF_XDP sockets exist before their program is attached, so no packet finds its queue empty.
    let mut sockets = Vec::new();
    if points.contains(&Attach::XdpToSockets) {
        for iface in &options.interfaces {
            let ifindex = crate::kernel::interface_index(iface)?;
            let config = XskConfig { frames: options.xsk_frames };
            let queues = (0..crate::capture::xsk::receive_queues(iface))
                .map(|queue| XskSocket::open(iface, ifindex, queue, config))
                .collect::<Result<Vec<_>, _>>()?;
            program.register_sockets(ifindex, &queues)?;
            sockets.extend(queues.into_iter().map(|socket| (iface.clone(), ifindex, socket)));
        }
    }
    let mut attached = Vec::new();
    for iface in &options.interfaces {
        let mut hooks = Vec::new();
        for &point in &points {
            let mut hook = program.attach(iface, point, options.xdp_mode)?.to_string();
            if point == Attach::XdpToSockets {
                let mine: Vec<_> = sockets.iter().filter(|(name, ..)| name == iface).collect();
                let mode = mine.first().map(|(.., s)| s.mode().to_string()).unwrap_or_default();
                hook.push_str(&format!(" ({} queues, {mode} mode)", mine.len()));
            }
            hooks.push(hook);
        }
        attached.push((iface.clone(), hooks));
    }
    on_attached(&attached);
    if let Some(user) = &options.run_as {
        // Before any reader or writer starts: every file of the ring is created as the user.
        user.become_it()?;
        eprintln!(
            "ringcap: running as {} (uid {}, gid {}) with no capabilities",
            user.name, user.uid, user.gid
        );
    }

    let mut sources: Vec<Box<dyn RecordSource>> = Vec::new();
    if points.iter().any(|&p| p != Attach::XdpToSockets) {
        sources.extend(program.take_rings().into_iter().map(|ring| Box::new(ring) as Box<dyn RecordSource>));
    }
    let reader_counters = Arc::clone(&options.live.reader);
    let mut statistics = Vec::new();
    // AF_XDP frames are cut by their readers (see `capture::cut`), counted with the kernel's cuts.
    let cut_counts = CutCounts::new();
    for (iface, ifindex, socket) in sockets {
        statistics.push(
            socket.statistics_handle().map_err(|source| XskError::Setup { what: "statistics", source })?,
        );
        let interface = options.interfaces.iter().position(|i| *i == iface).unwrap_or(usize::MAX);
        let slot = interface.min(MAX_INTERFACES as usize) * 2;
        let cutter = FlowCutter::new(
            &options.selection.cut,
            options.kernel.snaplen,
            slot,
            options.kernel.tcp_flows,
            Arc::clone(&cut_counts),
        );
        sources.push(Box::new(XskSource { socket, ifindex, counters: Arc::clone(&reader_counters), cutter }));
    }
    let counters = |program: &CaptureProgram| {
        let mut kernel = program.counters();
        cut_counts.add_to(&mut kernel);
        kernel
    };
    // Batches as large and as old as the sink's frames, so it stores each as it comes.
    let limits = sink.batch_limits();
    let reader_config = ReaderConfig {
        batch_bytes: limits.map_or(options.reader.batch_bytes, |l| l.bytes),
        batch_age: limits.map_or(options.reader.batch_age, |l| l.age),
        batch_period: limits.and_then(|l| l.period),
        ..options.reader.clone()
    };
    // The queue to the writer holds about QUEUE_BYTES, whatever the batch size.
    let queue_batches = (QUEUE_BYTES / reader_config.batch_bytes.max(1)).clamp(4, options.queue_batches);
    let (sender, receiver) = bounded::<Delivery>(queue_batches);
    let pool = BufferPool::new(reader_config.batch_bytes + 64 * 1024, queue_batches);
    // Held until the final counters are published: the writer ends (and stores the last
    // file's statistics snapshot) only once every sender is gone.
    let writer_hold = sender.clone();
    let reader = Reader::new(
        sources,
        reader_config,
        Arc::clone(&reader_counters),
        Arc::clone(&control),
        sender,
        pool.clone(),
    );
    let reader = spawn("ringcap-reader".into(), move || reader.run());
    let writer_failed = Arc::new(AtomicBool::new(false));
    let writer = {
        let writer_failed = Arc::clone(&writer_failed);
        spawn("writer".into(), move || write_batches(receiver, sink, &pool, &writer_failed))
    };

    let publish = |program: &CaptureProgram| {
        options.live.publish(counters(program), program.rtt_buckets());
        *locked(&options.live.icmp) = program.icmp_counts();
        *locked(&options.live.exchange_times) = Some(program.exchange_times());
        *locked(&options.live.tls_alerts) = program.tls_alerts();
        *locked(&options.live.xsk) = XskStatistics::sum(&statistics);
    };
    let mut links =
        Links::new(options.interfaces.iter().cloned().zip(ifindexes).collect(), &options.live.interfaces_up);
    let mut links_end = None;
    let deadline = options.duration.map(|d| Instant::now() + d);
    let mut published = Instant::now();
    let mut sweeper = Sweeper::new(options.kernel.tcp_flows, options.syn_timeout);
    while !stop.load(Ordering::Acquire)
        && !control.count_reached.load(Ordering::Acquire)
        && !writer_failed.load(Ordering::Acquire)
        && links_end.is_none()
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        thread::sleep(Duration::from_millis(10));
        if published.elapsed() >= Duration::from_secs(1) {
            publish(&program);
            published = Instant::now();
            links_end = links.check(&options.live.interfaces_up);
            if options.selection.tcp_analysis {
                sweeper.maybe_sweep(&program, &options.live);
            }
            if options.selection.l7_analysis {
                let expired = program.expire_exchanges(options.answer_timeouts.started_before_ns());
                let mut unanswered = locked(&options.live.unanswered);
                for (total, more) in unanswered.iter_mut().flatten().zip(expired.iter().flatten()) {
                    *total += more;
                }
            }
        }
    }
    // Detach first, so that draining the ring afterwards gets every captured packet.
    program.detach_all();
    control.drain_and_stop.store(true, Ordering::Release);
    reader.join().expect("the reader does not panic");
    // Final counters, before the writer closes its files and snapshots them.
    publish(&program);
    drop(writer_hold);
    let written = writer.join().expect("the writer does not panic");
    publish(&program);
    Ok(CaptureSummary {
        captured: reader_counters.packets.load(Ordering::Relaxed) - written.lost_packets,
        kernel: counters(&program),
        xsk: XskStatistics::sum(&statistics),
        queue_dropped: reader_counters.queue_dropped.load(Ordering::Relaxed),
        reorder_window_exceeded: reader_counters.reorder_window_exceeded.load(Ordering::Relaxed),
        unstamped: reader_counters.unstamped.load(Ordering::Relaxed),
        write_dropped: written.lost_packets,
        write_error: written.error,
        links_end,
    })
}

/// Bytes of batches the queue from the reader to the writer holds at most: what absorbs
/// a slow disk or a busy compressor for a moment.
const QUEUE_BYTES: usize = 64 << 20;

fn spawn<T: Send + 'static>(
    name: String,
    work: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::Builder::new().name(name).spawn(work).expect("spawning a thread")
}

/// What the writer thread reports when it ends.
struct WriterOutcome {
    lost_packets: u64,
    error: Option<String>,
}

/// The writer thread: feeds batches to the sink, ticks it on a timer and rotates it when
/// the reader says (SIGHUP). After a write error the sink gets nothing more; the packets
/// that reach it then are counted as lost.
fn write_batches(
    receiver: Receiver<Delivery>,
    sink: Box<dyn Sink>,
    pool: &BufferPool,
    failed: &AtomicBool,
) -> WriterOutcome {
    let mut writer = Writer { sink, pool, failed, outcome: WriterOutcome { lost_packets: 0, error: None } };
    let tick = Duration::from_millis(100);
    let mut next_tick = Instant::now() + tick;
    loop {
        match receiver.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(Delivery::Batch(batch)) => writer.write(batch),
            Ok(Delivery::Rotate) => writer.run(|sink| sink.rotate()),
            Ok(Delivery::PeriodStarted(period)) => writer.run(|sink| sink.period_started(period)),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + tick;
            writer.run(|sink| sink.tick());
        }
    }
    writer.run(|sink| sink.finish());
    writer.outcome
}

/// The sink and what happened to it.
struct Writer<'a> {
    sink: Box<dyn Sink>,
    pool: &'a BufferPool,
    failed: &'a AtomicBool,
    outcome: WriterOutcome,
}

impl Writer<'_> {
    fn write(&mut self, mut batch: Batch) {
        if self.outcome.error.is_some() {
            self.outcome.lost_packets += batch.packets;
        } else if let Err(e) = self.sink.write(&mut batch) {
            self.outcome.lost_packets += batch.packets;
            self.fail(e);
        }
        self.pool.give(batch.records);
    }

    /// Runs a sink operation unless the sink already failed.
    fn run(&mut self, operation: impl FnOnce(&mut dyn Sink) -> std::io::Result<()>) {
        if self.outcome.error.is_none() {
            if let Err(e) = operation(self.sink.as_mut()) {
                self.fail(e);
            }
        }
    }

    fn fail(&mut self, error: std::io::Error) {
        self.outcome.error.get_or_insert(error.to_string());
        self.failed.store(true, Ordering::Release);
    }
}

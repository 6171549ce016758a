//! A capture session: loads and attaches the programs, runs the reader and writer
//! threads, publishes the live counters ([`crate::health`]), stops on count, duration or
//! signal, and detaches cleanly.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use crate::capture::merge::{Merger, Watermarks};
use crate::capture::xsk::{XskConfig, XskError, XskSocket, XskSource, XskStatistics};
use crate::capture::{Batch, BufferPool, Reader, ReaderConfig, ReaderControl, RingSource};
use crate::health::sweeper::Sweeper;
use crate::health::{locked, slot_labels, LiveCounters};
use crate::kernel::{
    Attach, CaptureProgram, Direction, KernelConfig, KernelCounters, KernelError, ProgramSet, Selection,
    XdpModeChoice,
};
use crate::output::Sink;
use crate::privileges::{PrivilegeError, User};

/// How packets travel from the kernel to ringcap (`--mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CaptureMode {
    /// Copy each packet into a BPF ring buffer; packets continue to the host as usual.
    #[default]
    Ring,
    /// Redirect packets into AF_XDP sockets, one per receive queue. Packets do NOT
    /// continue to the host stack: for dedicated mirror (SPAN/TAP) ports only.
    Afxdp,
}

/// Where arriving packets are captured (`--ingress-hook`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IngressHook {
    /// XDP: in the driver, before the kernel builds an skb (fastest).
    #[default]
    Xdp,
    /// TC ingress: as the host stack receives them, after GRO (works without XDP).
    Tc,
}

/// What to capture and how.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub interfaces: Vec<String>,
    pub mode: CaptureMode,
    pub ingress_hook: IngressHook,
    pub xdp_mode: XdpModeChoice,
    pub direction: Direction,
    /// Frames of each AF_XDP socket's UMEM (`--mode afxdp`).
    pub xsk_frames: u32,
    /// How long the writer waits for a quiet reader before writing newer records of the others.
    pub reorder_window: Duration,
    /// A SYN without SYN-ACK this long is a connection attempt that went unanswered.
    pub syn_timeout: Duration,
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
    let rotate = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&rotate))
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

    let rings =
        if points.iter().any(|&p| p != Attach::XdpToSockets) { program.take_rings() } else { Vec::new() };
    let source_count = rings.len() + sockets.len();
    // With several readers, the merger waits (up to its reorder window after a batch
    // arrives) for every reader's watermark: a reader's batches must reach it well within
    // that window, and so must the records in flight the watermark allows for.
    let merging = source_count > 1;
    let reader_config = ReaderConfig {
        stamp_records: merging,
        batch_age: if merging {
            options.reader.batch_age.min(options.reorder_window / 5)
        } else {
            options.reader.batch_age
        },
        in_flight: options.reader.in_flight.min(options.reorder_window / 2),
        ..options.reader.clone()
    };
    let (sender, receiver) = bounded::<Batch>(options.queue_batches);
    let reader_counters = Arc::clone(&options.live.reader);
    let control = Arc::new(ReaderControl::default());
    let pool = BufferPool::new(options.reader.batch_bytes + 64 * 1024, options.queue_batches);
    let reader = |source_id| {
        (
            reader_config.clone(),
            Arc::clone(&reader_counters),
            Arc::clone(&control),
            sender.clone(),
            pool.clone(),
            source_id,
        )
    };
    let watermarks = Arc::new(Watermarks::new(source_count));
    let mut readers = Vec::new();
    for (cpu, ring) in rings.into_iter().enumerate() {
        let (config, counters, control, sender, pool, id) = reader(readers.len());
        let source = RingSource { ring, counters: Arc::clone(&counters) };
        let reader = Reader::new(source, id, config, counters, control, sender, pool)
            .with_watermarks(Arc::clone(&watermarks));
        readers.push(spawn(format!("ring-reader-{cpu}"), move || reader.run()));
    }
    let mut statistics = Vec::new();
    for (iface, ifindex, socket) in sockets {
        let (config, counters, control, sender, pool, id) = reader(readers.len());
        statistics.push(
            socket.statistics_handle().map_err(|source| XskError::Setup { what: "statistics", source })?,
        );
        let source = XskSource { socket, ifindex, counters: Arc::clone(&counters) };
        let reader = Reader::new(source, id, config, counters, control, sender, pool)
            .with_watermarks(Arc::clone(&watermarks));
        readers.push(spawn(format!("xsk-{iface}"), move || reader.run()));
    }
    // Held until the final counters are published: the writer ends (and stores the last
    // file's statistics snapshot) only once every sender is gone.
    let writer_hold = sender;
    let merger = (source_count > 1).then(|| {
        Merger::new(
            source_count,
            options.reorder_window,
            pool.clone(),
            options.reader.batch_bytes,
            Arc::clone(&reader_counters),
        )
    });
    let writer_failed = Arc::new(AtomicBool::new(false));
    let writer = {
        let writer_failed = Arc::clone(&writer_failed);
        let pool = pool.clone();
        let merge = merger.map(|merger| (merger, watermarks));
        spawn("writer".into(), move || write_batches(receiver, sink, merge, &pool, &rotate, &writer_failed))
    };

    let publish = |program: &CaptureProgram| {
        options.live.publish(program.counters(), program.rtt_buckets());
        *locked(&options.live.xsk) = XskStatistics::sum(&statistics);
    };
    let deadline = options.duration.map(|d| Instant::now() + d);
    let mut published = Instant::now();
    let mut sweeper = Sweeper::new(options.kernel.tcp_flows, options.syn_timeout);
    while !stop.load(Ordering::Acquire)
        && !control.count_reached.load(Ordering::Acquire)
        && !writer_failed.load(Ordering::Acquire)
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        thread::sleep(Duration::from_millis(10));
        if published.elapsed() >= Duration::from_secs(1) {
            publish(&program);
            published = Instant::now();
            if options.selection.tcp_analysis {
                sweeper.maybe_sweep(&mut program, &options.live);
            }
        }
    }
    // Detach first, so that draining the ring afterwards gets every captured packet.
    program.detach_all();
    control.drain_and_stop.store(true, Ordering::Release);
    for reader in readers {
        reader.join().expect("the readers do not panic");
    }
    // Final counters, before the writer closes its files and snapshots them.
    publish(&program);
    drop(writer_hold);
    let written = writer.join().expect("the writer does not panic");
    publish(&program);
    Ok(CaptureSummary {
        captured: reader_counters.packets.load(Ordering::Relaxed) - written.lost_packets,
        kernel: program.counters(),
        xsk: XskStatistics::sum(&statistics),
        queue_dropped: reader_counters.queue_dropped.load(Ordering::Relaxed),
        reorder_window_exceeded: reader_counters.reorder_window_exceeded.load(Ordering::Relaxed),
        unstamped: reader_counters.unstamped.load(Ordering::Relaxed),
        write_dropped: written.lost_packets,
        write_error: written.error,
    })
}

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

/// The writer thread: feeds batches (merged in time order when several readers feed it)
/// to the sink, ticks it on a timer and rotates it on SIGHUP. After a write error the sink
/// gets nothing more; the packets that reach it then are counted as lost.
fn write_batches(
    receiver: Receiver<Batch>,
    sink: Box<dyn Sink>,
    mut merge: Option<(Merger, Arc<Watermarks>)>,
    pool: &BufferPool,
    rotate: &AtomicBool,
    failed: &AtomicBool,
) -> WriterOutcome {
    let mut writer = Writer { sink, pool, failed, outcome: WriterOutcome { lost_packets: 0, error: None } };
    let tick = Duration::from_millis(100);
    let mut next_tick = Instant::now() + tick;
    loop {
        // Merging wants a shorter wait: watermarks move without batches arriving.
        let wait = next_tick.saturating_duration_since(Instant::now());
        let wait = if merge.is_some() { wait.min(Duration::from_millis(10)) } else { wait };
        let received = receiver.recv_timeout(wait);
        let now = Instant::now();
        match (received, merge.as_mut()) {
            (Ok(batch), None) => writer.write(batch),
            (Err(RecvTimeoutError::Disconnected), _) => break,
            (Err(RecvTimeoutError::Timeout), None) => {}
            (received, Some((merger, watermarks))) => {
                // The watermarks first, then every batch already sent: a reader publishes
                // its watermark after sending, so the batches it covers are all taken in.
                let low = watermarks.low();
                for batch in received.ok().into_iter().chain(receiver.try_iter()) {
                    merger.push(batch, now);
                }
                while let Some(batch) = merger.pop(now, low, false) {
                    writer.write(batch);
                }
            }
        }
        if rotate.swap(false, Ordering::AcqRel) {
            writer.run(|sink| sink.rotate());
        }
        if now >= next_tick {
            next_tick = now + tick;
            writer.run(|sink| sink.tick());
        }
    }
    if let Some((merger, _)) = merge.as_mut() {
        while let Some(batch) = merger.pop(Instant::now(), u64::MAX, true) {
            writer.write(batch);
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
    fn write(&mut self, batch: Batch) {
        if self.outcome.error.is_some() {
            self.outcome.lost_packets += batch.packets;
        } else if let Err(e) = self.sink.write(&batch) {
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

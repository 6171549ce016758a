//! A capture session: loads and attaches the programs, runs the reader and writer
//! threads, stops on count, duration or signal, and detaches cleanly.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use crate::capture::{Batch, BufferPool, ReaderConfig, ReaderControl, ReaderCounters, RingReader};
use crate::kernel::{
    AttachMode, CaptureProgram, Direction, KernelConfig, KernelCounters, KernelError, RttBuckets, Selection,
    XdpModeChoice,
};
use crate::output::Sink;

/// Counters of a running session, readable from other threads (API, metrics): the
/// reader's own atomics, and the kernel's per-CPU sums refreshed every second.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub reader: Arc<ReaderCounters>,
    pub kernel: Mutex<KernelCounters>,
    /// The kernel's TCP handshake RTT histograms (empty until the first refresh).
    pub rtt: Mutex<Option<Box<RttBuckets>>>,
}

impl LiveCounters {
    /// A statistics snapshot (JSON): kernel counters and non-empty RTT buckets.
    pub fn snapshot(&self, started_ns: u64) -> serde_json::Value {
        let kernel = *self.kernel.lock().expect("not poisoned");
        let counters: serde_json::Map<String, serde_json::Value> = capture_common::Counter::ALL
            .iter()
            .map(|c| (c.name().to_string(), kernel.get(*c).into()))
            .collect();
        let rtt = self.rtt.lock().expect("not poisoned").clone();
        let sparse = |kind: usize| -> Vec<(usize, u64)> {
            rtt.as_ref().map_or_else(Vec::new, |b| {
                b[kind].iter().copied().enumerate().filter(|(_, c)| *c > 0).collect()
            })
        };
        serde_json::json!({
            "started_ns": started_ns,
            "time_ns": crate::retrieve::window::now().as_nanos() as u64,
            "kernel": counters,
            "rtt_server": sparse(0),
            "rtt_client": sparse(1),
        })
    }
}

/// What to capture and how.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpModeChoice,
    pub direction: Direction,
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
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("could not install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Everything a session counted; printed on exit like tcpdump's summary.
#[derive(Clone, Debug, Default)]
pub struct CaptureSummary {
    /// Packets delivered to the sink.
    pub captured: u64,
    pub kernel: KernelCounters,
    /// Packets lost because the writer fell behind.
    pub queue_dropped: u64,
    /// Packets lost to write errors.
    pub write_dropped: u64,
    /// The write error that ended the session early, if any.
    pub write_error: Option<String>,
}

/// Where a program was attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Xdp(AttachMode),
    TcEgress,
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::Xdp(mode) => write!(f, "XDP {mode} mode"),
            Hook::TcEgress => f.write_str("TC egress"),
        }
    }
}

/// Runs a capture session until count, duration, SIGINT or SIGTERM.
/// `on_attached` is told the hooks of each interface, before traffic flows to the sink.
pub fn run_capture(
    options: &CaptureOptions,
    sink: Box<dyn Sink>,
    on_attached: impl FnOnce(&[(String, Vec<Hook>)]),
) -> Result<CaptureSummary, SessionError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(SessionError::Signals)?;
    }
    let rotate = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&rotate))
        .map_err(SessionError::Signals)?;
    let mut program = CaptureProgram::load(options.kernel)?;
    program.select(&options.selection)?;
    let mut attached = Vec::new();
    for iface in &options.interfaces {
        let mut hooks = Vec::new();
        if options.direction != Direction::Out {
            hooks.push(Hook::Xdp(program.attach_xdp(iface, options.xdp_mode)?));
        }
        if options.direction != Direction::In {
            program.attach_tc_egress(iface)?;
            hooks.push(Hook::TcEgress);
        }
        attached.push((iface.clone(), hooks));
    }
    on_attached(&attached);

    let (sender, receiver) = bounded::<Batch>(options.queue_batches);
    let reader_counters = Arc::clone(&options.live.reader);
    let control = Arc::new(ReaderControl::default());
    let pool = BufferPool::new(options.reader.batch_bytes + 64 * 1024, options.queue_batches);
    let reader = RingReader::new(
        program.take_ring(),
        options.reader.clone(),
        Arc::clone(&reader_counters),
        Arc::clone(&control),
        sender,
        pool.clone(),
    );
    let reader = thread::Builder::new()
        .name("ring-reader".into())
        .spawn(move || reader.run())
        .expect("spawning a thread");
    let writer_failed = Arc::new(AtomicBool::new(false));
    let writer = {
        let writer_failed = Arc::clone(&writer_failed);
        thread::Builder::new()
            .name("writer".into())
            .spawn(move || write_batches(receiver, sink, &pool, &rotate, &writer_failed))
            .expect("spawning a thread")
    };

    let deadline = options.duration.map(|d| Instant::now() + d);
    let mut published = Instant::now();
    while !stop.load(Ordering::Acquire)
        && !control.count_reached.load(Ordering::Acquire)
        && !writer_failed.load(Ordering::Acquire)
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        thread::sleep(Duration::from_millis(10));
        if published.elapsed() >= Duration::from_secs(1) {
            *options.live.kernel.lock().expect("not poisoned") = program.counters();
            *options.live.rtt.lock().expect("not poisoned") = Some(program.rtt_buckets());
            published = Instant::now();
        }
    }
    // Detach first, so that draining the ring afterwards gets every captured packet.
    program.detach_all();
    // Final counters for whoever reads them while the writer closes its files.
    *options.live.kernel.lock().expect("not poisoned") = program.counters();
    *options.live.rtt.lock().expect("not poisoned") = Some(program.rtt_buckets());
    control.drain_and_stop.store(true, Ordering::Release);
    reader.join().expect("the reader does not panic");
    let written = writer.join().expect("the writer does not panic");
    let kernel = program.counters();
    *options.live.kernel.lock().expect("not poisoned") = kernel;
    Ok(CaptureSummary {
        captured: reader_counters.packets.load(Ordering::Relaxed) - written.lost_packets,
        kernel,
        queue_dropped: reader_counters.queue_dropped.load(Ordering::Relaxed),
        write_dropped: written.lost_packets,
        write_error: written.error,
    })
}

/// What the writer thread reports when it ends.
struct WriterOutcome {
    lost_packets: u64,
    error: Option<String>,
}

/// The writer thread: feeds batches to the sink, ticks it on a timer and rotates it on SIGHUP. After a write
/// error the sink gets nothing more; the packets that reach it then are counted as lost.
fn write_batches(
    receiver: Receiver<Batch>,
    mut sink: Box<dyn Sink>,
    pool: &BufferPool,
    rotate: &AtomicBool,
    failed: &AtomicBool,
) -> WriterOutcome {
    let mut outcome = WriterOutcome { lost_packets: 0, error: None };
    let tick = Duration::from_millis(100);
    let mut next_tick = Instant::now() + tick;
    loop {
        let result = match receiver.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(batch) => {
                let result = if outcome.error.is_some() {
                    outcome.lost_packets += batch.packets;
                    Ok(())
                } else {
                    sink.write(&batch).inspect_err(|_| outcome.lost_packets += batch.packets)
                };
                pool.give(batch.records);
                result
            }
            Err(RecvTimeoutError::Timeout) => Ok(()),
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let result = result.and_then(|()| {
            if outcome.error.is_some() {
                return Ok(());
            }
            if rotate.swap(false, Ordering::AcqRel) {
                sink.rotate()?;
            }
            if Instant::now() < next_tick {
                return Ok(());
            }
            next_tick = Instant::now() + tick;
            sink.tick()
        });
        if let Err(e) = result {
            outcome.error.get_or_insert(e.to_string());
            failed.store(true, Ordering::Release);
        }
    }
    if outcome.error.is_none() {
        if let Err(e) = sink.finish() {
            outcome.error = Some(e.to_string());
        }
    }
    outcome
}

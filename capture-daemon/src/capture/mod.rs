//! The capture path, from the kernel to the writer: the reader (here), which merges the
//! records of every source in time order and turns them into batches of pcap records;
//! the per-CPU BPF ring buffers, read in place ([`ringbuf`]); AF_XDP sockets ([`xsk`]);
//! the kernel-to-wall clock ([`clock`]); and the shared memory the kernel and user space
//! both map ([`mmap`]).
//!
//! Each packet is copied once in user space: from where the kernel put it (a ring buffer
//! record or a UMEM frame) straight into the pcap bytes of a [`Batch`], which the writer
//! then stores as a frame of the file as it is (compressed, or written) without copying
//! it again. The record's space goes back to the kernel right after the copy. Batches go
//! to the writer through a bounded queue and the reader never blocks on it: when it is
//! full the batch is dropped and counted, so compression or a slow disk can never stall
//! the rings (which would turn into kernel drops).
pub mod clock;
pub mod cut;
pub mod links;
pub mod mmap;
pub mod ringbuf;
pub mod xsk;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capture_common::{RecordFlags, RecordHeader};
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::capture::ringbuf::PacketRing;
use crate::pcap::{self, PacketDirection};
use crate::records::ReaderTotals;

/// Pcap records of consecutive packets, in time order: a frame of the file to come.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Pcap record headers and packet bytes, ready to append to a pcap file.
    pub records: Vec<u8>,
    /// Number of packets in `records`.
    pub packets: u64,
    /// The earliest and latest packet times (ns since the epoch): a record that came
    /// later than the reorder window is written after later ones, and a pull must not
    /// skip a frame that holds it.
    pub earliest_ns: u64,
    pub latest_ns: u64,
    /// When the first record was put in (how old the batch is).
    pub started: Instant,
}

impl Batch {
    /// A batch with no records yet, filling `records` (cleared).
    pub fn empty(mut records: Vec<u8>) -> Self {
        records.clear();
        Batch { records, packets: 0, earliest_ns: 0, latest_ns: 0, started: Instant::now() }
    }

    /// Counts a packet of time `unix_ns` whose record was just appended to `records`.
    pub fn count(&mut self, unix_ns: u64) {
        if self.packets == 0 {
            self.earliest_ns = unix_ns;
            self.latest_ns = unix_ns;
            self.started = Instant::now();
        }
        self.earliest_ns = self.earliest_ns.min(unix_ns);
        self.latest_ns = self.latest_ns.max(unix_ns);
        self.packets += 1;
    }
}

/// Batch buffers travel back from the writer to the reader for reuse: allocating a
/// fresh quarter-megabyte buffer per batch costs page faults on every batch.
#[derive(Clone, Debug)]
pub struct BufferPool {
    returned: Sender<Vec<u8>>,
    available: Receiver<Vec<u8>>,
    capacity: usize,
}

impl BufferPool {
    /// A pool of buffers of `capacity` bytes, keeping at most `keep` idle ones.
    pub fn new(capacity: usize, keep: usize) -> Self {
        let (returned, available) = crossbeam_channel::bounded(keep);
        BufferPool { returned, available, capacity }
    }

    /// An empty buffer, reused when one is available.
    pub fn take(&self) -> Vec<u8> {
        self.available.try_recv().unwrap_or_else(|_| Vec::with_capacity(self.capacity))
    }

    /// Gives a buffer back (dropped if the pool is full).
    pub fn give(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        let _ = self.returned.try_send(buffer);
    }
}

/// Counters of the user-space side of the capture path, shared with the session.
#[derive(Debug, Default)]
pub struct ReaderCounters {
    /// Packets handed to the sinks.
    pub packets: AtomicU64,
    /// Packets dropped because the queue to the sinks was full.
    pub queue_dropped: AtomicU64,
    /// Records that were too short to hold their header (should never happen).
    pub malformed: AtomicU64,
    /// AF_XDP frames without the kernel's timestamp, stamped on arrival instead.
    pub unstamped: AtomicU64,
    /// Records written out of time order because they reached their ring or socket later
    /// than the reorder window after their time stamp.
    pub reorder_window_exceeded: AtomicU64,
}

impl ReaderCounters {
    /// The counters now (`/v1/stats` and the files' statistics snapshots).
    pub fn totals(&self) -> ReaderTotals {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ReaderTotals {
            packets: get(&self.packets),
            queue_dropped: get(&self.queue_dropped),
            malformed: get(&self.malformed),
            reorder_window_exceeded: get(&self.reorder_window_exceeded),
            unstamped: get(&self.unstamped),
        }
    }
}

/// Settings of the reader.
#[derive(Clone, Debug)]
pub struct ReaderConfig {
    /// Snap length written in the pcap records (bounds `incl_len`).
    pub snaplen: u32,
    /// Stop after this many packets.
    pub max_packets: Option<u64>,
    /// When not empty, records are encoded as pcapng Enhanced Packet Blocks, with their
    /// direction and the position of their ifindex in this list as interface id, instead
    /// of classic pcap records.
    pub pcapng_interfaces: Vec<u32>,
    /// A batch is sent once it holds this many bytes...
    pub batch_bytes: usize,
    /// ...or once its first packet is this old...
    pub batch_age: Duration,
    /// ...and never holds records of two periods of this many seconds (the files' -G,
    /// by the records' own time stamps). Once every record stamped before a period began
    /// has been sent, the reader says so ([`Delivery::PeriodStarted`]): the records of a
    /// file are exactly those of its period.
    pub batch_period: Option<u64>,
    /// A record is stamped when its program starts and enters its ring when it ends: one
    /// stamped this long ago is surely in its ring, so nothing older can still come from
    /// any source, and the merge writes it (see [`IN_FLIGHT`]).
    pub in_flight: Duration,
}

/// How long a record may take from its stamp to its ring. Programs take microseconds,
/// but a program can stall for milliseconds: a virtual CPU descheduled by its host, or
/// a packet waiting for its flow's lock held by such a CPU. The reader waits this long
/// for such records before writing later ones of other sources, so files stay in time order.
pub const IN_FLIGHT: Duration = Duration::from_millis(50);

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            snaplen: pcap::DEFAULT_SNAPLEN,
            max_packets: None,
            pcapng_interfaces: Vec::new(),
            batch_bytes: 256 * 1024,
            batch_age: Duration::from_millis(100),
            batch_period: None,
            in_flight: IN_FLIGHT,
        }
    }
}

/// Flags the session uses to steer the reader.
#[derive(Debug, Default)]
pub struct ReaderControl {
    /// Set by the session once the programs are detached: drain what is left, then stop.
    pub drain_and_stop: AtomicBool,
    /// Set by the reader when `max_packets` is reached.
    pub count_reached: AtomicBool,
    /// Set on SIGHUP: the reader sends the batch it holds, then tells the writer to start
    /// a new file, so every packet read before the signal is in the old one.
    pub rotate: Arc<AtomicBool>,
}

/// What the reader sends the writer, in order.
#[derive(Debug)]
pub enum Delivery {
    Batch(Batch),
    /// Start a new file now (SIGHUP), after the batches sent before.
    Rotate,
    /// Every record stamped before -G period `n` began has been sent (only with
    /// [`ReaderConfig::batch_period`]); a record stamped earlier that comes later still
    /// is counted in `reorder_window_exceeded`.
    PeriodStarted(u64),
}

/// Where the reader gets kernel records from: a BPF ring buffer, or an AF_XDP socket.
/// Records are read in place: `peek` shows the oldest, `advance` moves past it, and
/// `release` hands the space of every record moved past back to the kernel.
pub trait RecordSource: Send {
    /// The oldest waiting record: its header and packet bytes, left where they are.
    fn peek(&mut self) -> Option<(RecordHeader, &[u8])>;
    /// Moves past the record `peek` returned.
    fn advance(&mut self);
    /// Gives the records moved past back to the kernel.
    fn release(&mut self);
    /// The descriptor that becomes readable when records arrive.
    fn fd(&self) -> RawFd;
    /// The earliest time stamp a record that `peek` does not show yet can have, asked
    /// before peeking, at monotonic time `now`: without better knowledge, records take at
    /// most `in_flight` ns from their stamp to the source.
    fn unseen_from(&self, now: u64, in_flight: u64) -> u64 {
        now.saturating_sub(in_flight)
    }
}

impl RecordSource for PacketRing {
    fn peek(&mut self) -> Option<(RecordHeader, &[u8])> {
        PacketRing::peek(self)
    }

    fn advance(&mut self) {
        PacketRing::advance(self)
    }

    fn release(&mut self) {
        PacketRing::release(self)
    }

    fn fd(&self) -> RawFd {
        PacketRing::fd(self)
    }

    fn unseen_from(&self, now: u64, in_flight: u64) -> u64 {
        PacketRing::unseen_from(self, now, in_flight)
    }
}

/// Waits up to `timeout` for any of `fds` to become readable.
pub fn poll_readable(fds: &[RawFd], timeout: Duration) {
    let mut polled: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: valid pollfds, as many as given.
    unsafe {
        libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, timeout.as_millis() as libc::c_int)
    };
}

/// Records taken between hand-backs of their space to the kernel.
const RELEASE_EVERY: usize = 64;

/// Reads every source until told to drain and stop (or the packet count is reached),
/// merging their records in time order into batches for the writer.
///
/// Each source is in time order (a CPU's ring, a queue's socket), so the oldest head of
/// all sources goes next; but a source without a record now may still get one stamped
/// earlier (its program is running). The oldest head is written once no source without
/// a head can still get an earlier record: a CPU's ring knows from the CPU's in-flight
/// stamp (at once), a socket from [`ReaderConfig::in_flight`] (anything stamped longer
/// ago is in its socket by then). A record that took longer is written anyway, out of
/// order, and counted in `reorder_window_exceeded`.
pub struct Reader {
    sources: Vec<Box<dyn RecordSource>>,
    config: ReaderConfig,
    counters: Arc<ReaderCounters>,
    control: Arc<ReaderControl>,
    output: Sender<Delivery>,
    pool: BufferPool,
}

impl Reader {
    pub fn new(
        sources: Vec<Box<dyn RecordSource>>,
        config: ReaderConfig,
        counters: Arc<ReaderCounters>,
        control: Arc<ReaderControl>,
        output: Sender<Delivery>,
        pool: BufferPool,
    ) -> Self {
        Reader { sources, config, counters, control, output, pool }
    }

    /// The reader loop; returns when drained after a stop or when the count is reached.
    pub fn run(mut self) {
        let shared = crate::capture::clock::shared();
        let mut clock = shared.current();
        let mut clock_sampled = Instant::now();
        let mut batch = BatchBuilder::new(self.pool.clone());
        let limit = self.config.max_packets.unwrap_or(u64::MAX);
        let in_flight = self.config.in_flight.as_nanos() as u64;
        let fds: Vec<RawFd> = self.sources.iter().map(|source| source.fd()).collect();
        let mut heads: Vec<Option<u64>> = vec![None; self.sources.len()];
        let mut unseen_from: Vec<u64> = vec![0; self.sources.len()];
        let mut taken_total = 0u64;
        let mut rotate_pending = false;
        // The first period is announced at once: the writer may have opened in the one before.
        let mut period_announced = None;
        loop {
            let stopping = self.control.drain_and_stop.load(Ordering::Acquire);
            if clock_sampled.elapsed() >= Duration::from_secs(1) {
                shared.refresh();
                clock = shared.current();
                clock_sampled = Instant::now();
            }
            // Asked before the heads are read: see `RecordSource::unseen_from`.
            let now = crate::capture::clock::monotonic_ns();
            for (from, source) in unseen_from.iter_mut().zip(&self.sources) {
                *from = source.unseen_from(now, in_flight);
            }
            for (head, source) in heads.iter_mut().zip(&mut self.sources) {
                *head = source.peek().map(|(header, _)| header.timestamp_ns);
            }
            let mut taken = 0;
            let mut limit_reached = false;
            while let Some((next, time)) = oldest(&heads) {
                let settled =
                    heads.iter().zip(&unseen_from).all(|(head, &from)| head.is_some() || time <= from);
                if !(stopping || settled) {
                    break;
                }
                if taken_total == limit {
                    limit_reached = true;
                    break;
                }
                taken_total += 1;
                let last = taken_total == limit;
                let timestamp = clock.to_unix(time);
                if batch.would_cross_period(timestamp, &self.config) {
                    self.send(batch.take());
                }
                let source = &mut self.sources[next];
                let (header, data) = source.peek().expect("the head seen above is still there");
                batch.push(timestamp, &header, data, &self.config, &self.counters);
                source.advance();
                heads[next] = source.peek().map(|(header, _)| header.timestamp_ns);
                taken += 1;
                if taken % RELEASE_EVERY == 0 {
                    self.sources.iter_mut().for_each(|source| source.release());
                }
                if batch.bytes() >= self.config.batch_bytes {
                    self.send(batch.take());
                }
                if last {
                    limit_reached = true;
                    break;
                }
            }
            self.sources.iter_mut().for_each(|source| source.release());
            if limit_reached || self.control.count_reached.load(Ordering::Acquire) {
                self.control.count_reached.store(true, Ordering::Release);
                self.send(batch.take());
                return;
            }
            if let Some(seconds) = self.config.batch_period {
                // The earliest time a record still to be read can have.
                let unread = heads.iter().zip(&unseen_from).map(|(head, &from)| head.unwrap_or(from)).min();
                let period = unread.map_or(0, |ns| period_of(clock.to_unix(ns), seconds));
                // Announced when it changes: forward as time goes, back when the clock is set back.
                if period_announced != Some(period) {
                    self.send(batch.take());
                    // Tried again on the next round while the queue is full.
                    if self.output.try_send(Delivery::PeriodStarted(period)).is_ok() {
                        period_announced = Some(period);
                    }
                }
            }
            rotate_pending |= self.control.rotate.swap(false, Ordering::AcqRel);
            if stopping || rotate_pending || batch.due(&self.config) {
                self.send(batch.take());
            }
            // Tried again on the next round while the queue is full: never lost.
            if rotate_pending && self.output.try_send(Delivery::Rotate).is_ok() {
                rotate_pending = false;
            }
            if stopping && taken == 0 {
                return;
            }
            if taken == 0 {
                if heads.iter().any(Option::is_some) {
                    // A head waits for a source that may still get an earlier record.
                    std::thread::sleep(Duration::from_micros(200));
                } else {
                    // The kernel wakes us only when a ring fills up; otherwise poll every
                    // millisecond, which bounds the latency and batches the wakeups.
                    poll_readable(&fds, Duration::from_millis(1));
                }
            }
        }
    }

    fn send(&self, batch: Option<Batch>) {
        let Some(batch) = batch else { return };
        let packets = batch.packets;
        match self.output.try_send(Delivery::Batch(batch)) {
            Ok(()) => {
                self.counters.packets.fetch_add(packets, Ordering::Relaxed);
            }
            Err(TrySendError::Full(delivery)) | Err(TrySendError::Disconnected(delivery)) => {
                self.counters.queue_dropped.fetch_add(packets, Ordering::Relaxed);
                if let Delivery::Batch(batch) = delivery {
                    self.pool.give(batch.records);
                }
            }
        }
    }
}

/// The source with the oldest head, and that head's time.
fn oldest(heads: &[Option<u64>]) -> Option<(usize, u64)> {
    heads.iter().enumerate().filter_map(|(i, head)| head.map(|time| (i, time))).min_by_key(|&(_, time)| time)
}

/// Accumulates pcap records into one buffer.
struct BatchBuilder {
    pool: BufferPool,
    batch: Batch,
    /// The -G period of the records in the batch.
    period: u64,
    /// The latest time written so far, to count records written out of order.
    latest_written_ns: u64,
}

impl BatchBuilder {
    fn new(pool: BufferPool) -> Self {
        BatchBuilder { batch: Batch::empty(pool.take()), pool, period: 0, latest_written_ns: 0 }
    }

    /// Whether a record stamped `timestamp` belongs to another -G period than the batch's.
    fn would_cross_period(&self, timestamp: Duration, config: &ReaderConfig) -> bool {
        self.batch.packets > 0
            && config.batch_period.is_some_and(|seconds| period_of(timestamp, seconds) != self.period)
    }

    /// Appends a kernel record stamped `timestamp` (Unix time).
    fn push(
        &mut self,
        timestamp: Duration,
        header: &RecordHeader,
        data: &[u8],
        config: &ReaderConfig,
        counters: &ReaderCounters,
    ) {
        if self.batch.packets == 0 {
            self.period = config.batch_period.map_or(0, |seconds| period_of(timestamp, seconds));
        }
        let data = &data[..data.len().min(config.snaplen as usize)];
        let orig_len = header.orig_len.max(data.len() as u32);
        let records = &mut self.batch.records;
        let written = if !config.pcapng_interfaces.is_empty() {
            let interface = config.pcapng_interfaces.iter().position(|&i| i == header.ifindex).unwrap_or(0);
            let direction = if header.flags & RecordFlags::EGRESS != 0 {
                PacketDirection::Outbound
            } else {
                PacketDirection::Inbound
            };
            pcap::write_enhanced_packet(records, interface as u32, timestamp, orig_len, data, Some(direction))
        } else {
            pcap::write_record(records, timestamp, orig_len, data, config.snaplen)
        };
        written.expect("writing into memory cannot fail");
        let unix_ns = timestamp.as_nanos() as u64;
        if unix_ns < self.latest_written_ns {
            counters.reorder_window_exceeded.fetch_add(1, Ordering::Relaxed);
        }
        self.latest_written_ns = self.latest_written_ns.max(unix_ns);
        self.batch.count(unix_ns);
    }

    fn bytes(&self) -> usize {
        self.batch.records.len()
    }

    /// Whether the batch is old enough to be sent as it is.
    fn due(&self, config: &ReaderConfig) -> bool {
        self.batch.packets > 0 && self.batch.started.elapsed() >= config.batch_age
    }

    fn take(&mut self) -> Option<Batch> {
        if self.batch.packets == 0 {
            return None;
        }
        Some(std::mem::replace(&mut self.batch, Batch::empty(self.pool.take())))
    }
}

/// The number of the `seconds`-long period (aligned to the epoch, as -G is) that Unix
/// time `unix` falls in.
pub fn period_of(unix: Duration, seconds: u64) -> u64 {
    unix.as_secs() / seconds.max(1)
}

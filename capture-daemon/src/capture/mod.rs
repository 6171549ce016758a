//! The capture path, from the kernel to the writer: the ring-buffer reader (here), which
//! turns kernel records into batches of pcap records; AF_XDP sockets ([`xsk`]); the merge
//! of several readers' batches in time order ([`merge`]); the kernel-to-wall clock
//! ([`clock`]); and the shared memory the kernel and user space both map ([`mmap`]).
//!
//! Each record is copied exactly once, from the ring straight into the pcap bytes of a
//! [`Batch`]; batches go to the sinks through a bounded queue. The reader never blocks on
//! the queue: when it is full the batch is dropped and counted, so compression or a slow
//! disk can never stall the ring (which would turn into uncounted kernel drops).
pub mod clock;
pub mod merge;
pub mod mmap;
pub mod xsk;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use capture_common::{RecordFlags, RecordHeader, RECORD_HEADER_LEN};
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::capture::clock::WallClock;
use crate::pcap::{self, PacketDirection};

/// Pcap records of consecutive packets, in capture order.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Pcap record headers and packet bytes, ready to append to a pcap file.
    pub records: Vec<u8>,
    /// Number of packets in `records`.
    pub packets: u64,
    /// Wall-clock time of the first and last packet.
    pub first: Duration,
    pub last: Duration,
    /// The reader (ring or socket) the batch came from.
    pub source: usize,
    /// Where each record ends and its time, when [`ReaderConfig::stamp_records`] is set:
    /// what the writer needs to merge the batches of several readers in time order.
    pub stamps: Vec<RecordStamp>,
}

impl Batch {
    /// A batch with no records yet, filling `records` (cleared), timed at `at`.
    pub fn empty(mut records: Vec<u8>, at: Duration) -> Self {
        records.clear();
        Batch { records, packets: 0, first: at, last: at, source: 0, stamps: Vec::new() }
    }
}

/// The time of one record of a [`Batch`] and the offset just past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordStamp {
    pub unix_ns: u64,
    pub end: usize,
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
    /// Records written out of time order because they came later than the reorder window.
    pub reorder_window_exceeded: AtomicU64,
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
    /// ...or once its first packet is this old.
    pub batch_age: Duration,
    /// Note each record's time and end in [`Batch::stamps`] (several readers feed the writer).
    pub stamp_records: bool,
    /// A record is stamped when its program starts and enters the ring when it ends; one
    /// stamped this long ago is surely in the ring (see [`IN_FLIGHT`]).
    pub in_flight: Duration,
}

/// How long a record may take from its stamp to the ring. Programs take microseconds,
/// but a program can stall for milliseconds: a virtual CPU descheduled by its host, or
/// a packet waiting for its flow's lock held by such a CPU. The merger waits this long
/// for such records (well within the reorder window), so files stay in time order.
pub const IN_FLIGHT: Duration = Duration::from_millis(50);

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            snaplen: pcap::DEFAULT_SNAPLEN,
            max_packets: None,
            pcapng_interfaces: Vec::new(),
            batch_bytes: 256 * 1024,
            batch_age: Duration::from_millis(100),
            stamp_records: false,
            in_flight: IN_FLIGHT,
        }
    }
}

/// Flags the session uses to steer the readers.
#[derive(Debug, Default)]
pub struct ReaderControl {
    /// Set by the session once the programs are detached: drain what is left, then stop.
    pub drain_and_stop: AtomicBool,
    /// Set by a reader when `max_packets` is reached.
    pub count_reached: AtomicBool,
    /// Packets all readers have taken so far, against `max_packets`.
    taken: AtomicU64,
}

impl ReaderControl {
    /// Claims one packet of the `max_packets` budget: None once it is spent, otherwise
    /// whether this was the last one.
    fn claim(&self, limit: u64) -> Option<bool> {
        let taken = self.taken.fetch_add(1, Ordering::Relaxed);
        (taken < limit).then_some(taken + 1 == limit)
    }
}

/// Where a reader gets kernel records from: the BPF ring buffer, or an AF_XDP socket.
pub trait RecordSource: Send {
    /// Passes up to `max` waiting records to `each`, releasing their space afterwards,
    /// and returns how many there were.
    fn read(&mut self, max: usize, each: &mut dyn FnMut(&RecordHeader, &[u8])) -> usize;
    /// Waits up to `timeout` for records to arrive.
    fn wait(&self, timeout: Duration);
}

/// The BPF ring buffer as a record source.
pub struct RingSource {
    pub ring: RingBuf<MapData>,
    pub counters: Arc<ReaderCounters>,
}

impl RecordSource for RingSource {
    fn read(&mut self, max: usize, each: &mut dyn FnMut(&RecordHeader, &[u8])) -> usize {
        let mut count = 0;
        while count < max {
            let Some(item) = self.ring.next() else { break };
            count += 1;
            match split_record(&item) {
                Some((header, data)) => each(&header, data),
                None => {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Dropping the item releases its ring space.
        }
        count
    }

    fn wait(&self, timeout: Duration) {
        poll_readable(self.ring.as_raw_fd(), timeout);
    }
}

/// A record's header and packet bytes, or None when it is too short for them.
fn split_record(record: &[u8]) -> Option<(RecordHeader, &[u8])> {
    if record.len() < RECORD_HEADER_LEN {
        return None;
    }
    // SAFETY: the length was checked; the header is plain data written by the kernel.
    let header: RecordHeader = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let data = record.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + header.cap_len as usize)?;
    Some((header, data))
}

/// Waits up to `timeout` for `fd` to become readable.
pub fn poll_readable(fd: std::os::fd::RawFd, timeout: Duration) {
    let mut fds = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut fds, 1, timeout.as_millis() as libc::c_int) };
}

/// Records the reader takes from its source between checks of its batch.
const READ_CHUNK: usize = 256;

/// Reads one source until told to drain and stop (or the packet count is reached),
/// sending its batches, tagged with its source number, to the writer.
pub struct Reader<S> {
    source: S,
    source_id: usize,
    /// Where the reader publishes how far it has sent (several readers only).
    watermarks: Option<Arc<crate::capture::merge::Watermarks>>,
    config: ReaderConfig,
    counters: Arc<ReaderCounters>,
    control: Arc<ReaderControl>,
    output: Sender<Batch>,
    pool: BufferPool,
}

impl<S: RecordSource> Reader<S> {
    pub fn new(
        source: S,
        source_id: usize,
        config: ReaderConfig,
        counters: Arc<ReaderCounters>,
        control: Arc<ReaderControl>,
        output: Sender<Batch>,
        pool: BufferPool,
    ) -> Self {
        Reader { source, source_id, watermarks: None, config, counters, control, output, pool }
    }

    /// Publishes this reader's progress in `watermarks`, for a merger of several readers.
    pub fn with_watermarks(mut self, watermarks: Arc<crate::capture::merge::Watermarks>) -> Self {
        self.watermarks = Some(watermarks);
        self
    }

    /// The reader loop; returns when drained after a stop or when the count is reached.
    pub fn run(mut self) {
        let shared = crate::capture::clock::shared();
        let mut clock = shared.current();
        let mut clock_sampled = Instant::now();
        let mut batch = BatchBuilder::new(self.pool.clone(), self.source_id);
        let limit = self.config.max_packets.unwrap_or(u64::MAX);
        loop {
            let stopping = self.control.drain_and_stop.load(Ordering::Acquire);
            if clock_sampled.elapsed() >= Duration::from_secs(1) {
                shared.refresh();
                clock = shared.current();
                clock_sampled = Instant::now();
            }
            let mut read_any = false;
            let mut limit_reached = false;
            // Records are stamped before they enter the ring: once it is drained, nothing
            // older than this is left to read.
            let in_flight = self.config.in_flight.as_nanos() as u64;
            let drained_from = clock.to_unix(crate::capture::clock::monotonic_ns().saturating_sub(in_flight));
            loop {
                let read = self.source.read(READ_CHUNK, &mut |header, data| {
                    if limit_reached {
                        return;
                    }
                    match self.control.claim(limit) {
                        Some(last) => {
                            batch.push(header, data, &clock, &self.config);
                            limit_reached = last;
                        }
                        None => limit_reached = true,
                    }
                });
                read_any |= read > 0;
                if batch.bytes() >= self.config.batch_bytes {
                    self.send(batch.take());
                }
                if read < READ_CHUNK || limit_reached {
                    break;
                }
            }
            if limit_reached || self.control.count_reached.load(Ordering::Acquire) {
                self.control.count_reached.store(true, Ordering::Release);
                self.send(batch.take());
                return;
            }
            if batch.age().is_some_and(|age| age >= self.config.batch_age) || stopping {
                self.send(batch.take());
            }
            if let Some(watermarks) = &self.watermarks {
                let sent_before = batch.first().map_or(drained_from, |first| first.min(drained_from));
                watermarks.advance(self.source_id, sent_before.as_nanos() as u64);
            }
            if stopping && !read_any {
                return;
            }
            if !read_any {
                // The kernel wakes us only when the ring fills up; otherwise poll every
                // millisecond, which bounds the latency and batches the wakeups.
                self.source.wait(Duration::from_millis(1));
            }
        }
    }

    fn send(&self, batch: Option<Batch>) {
        let Some(batch) = batch else { return };
        let packets = batch.packets;
        match self.output.try_send(batch) {
            Ok(()) => {
                self.counters.packets.fetch_add(packets, Ordering::Relaxed);
            }
            Err(TrySendError::Full(batch)) | Err(TrySendError::Disconnected(batch)) => {
                self.counters.queue_dropped.fetch_add(packets, Ordering::Relaxed);
                self.pool.give(batch.records);
            }
        }
    }
}

/// Accumulates pcap records into one buffer.
struct BatchBuilder {
    pool: BufferPool,
    source: usize,
    buffer: Vec<u8>,
    stamps: Vec<RecordStamp>,
    packets: u64,
    first: Duration,
    last: Duration,
    started: Option<Instant>,
}

impl BatchBuilder {
    fn new(pool: BufferPool, source: usize) -> Self {
        BatchBuilder {
            buffer: pool.take(),
            pool,
            source,
            stamps: Vec::new(),
            packets: 0,
            first: Duration::ZERO,
            last: Duration::ZERO,
            started: None,
        }
    }

    /// Appends a kernel record.
    fn push(&mut self, header: &RecordHeader, data: &[u8], clock: &WallClock, config: &ReaderConfig) {
        let timestamp = clock.to_unix(header.timestamp_ns);
        if self.packets == 0 {
            self.first = timestamp;
            self.started = Some(Instant::now());
        }
        self.last = timestamp;
        self.packets += 1;
        let data = &data[..data.len().min(config.snaplen as usize)];
        let orig_len = header.orig_len.max(data.len() as u32);
        let written = if !config.pcapng_interfaces.is_empty() {
            let interface = config.pcapng_interfaces.iter().position(|&i| i == header.ifindex).unwrap_or(0);
            let direction = if header.flags & RecordFlags::EGRESS != 0 {
                PacketDirection::Outbound
            } else {
                PacketDirection::Inbound
            };
            pcap::write_enhanced_packet(
                &mut self.buffer,
                interface as u32,
                timestamp,
                orig_len,
                data,
                Some(direction),
            )
        } else {
            pcap::write_record(&mut self.buffer, timestamp, orig_len, data, config.snaplen)
        };
        written.expect("writing into memory cannot fail");
        if config.stamp_records {
            self.stamps.push(RecordStamp { unix_ns: timestamp.as_nanos() as u64, end: self.buffer.len() });
        }
    }

    fn bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Time of the first packet waiting in the batch.
    fn first(&self) -> Option<Duration> {
        (self.packets > 0).then_some(self.first)
    }

    fn age(&self) -> Option<Duration> {
        self.started.map(|started| started.elapsed())
    }

    fn take(&mut self) -> Option<Batch> {
        if self.packets == 0 {
            return None;
        }
        let batch = Batch {
            records: std::mem::replace(&mut self.buffer, self.pool.take()),
            packets: self.packets,
            first: self.first,
            last: self.last,
            source: self.source,
            stamps: std::mem::take(&mut self.stamps),
        };
        self.packets = 0;
        self.started = None;
        Some(batch)
    }
}

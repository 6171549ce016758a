//! AF_XDP sockets for `--mode afxdp`: one socket per receive queue, each with its own
//! UMEM, fill and receive rings (the completion ring exists because the kernel requires
//! it; nothing is transmitted).
//!
//! Frames are recycled from the receive ring straight back to the fill ring after their
//! bytes are copied out, so the path allocates nothing per packet. The kernel counts
//! what it could not deliver (`XDP_STATISTICS`); [`XskStatistics`] carries those counts.
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use capture_common::{RecordFlags, RecordHeader, XskMeta};

use crate::capture::cut::FlowCutter;
use crate::capture::mmap::Mapping;
use crate::capture::{ReaderCounters, RecordSource};
use crate::records::XskStatistics;

/// Size of one UMEM frame: a page, which holds any frame veth or a 1500-MTU NIC delivers.
pub const FRAME_SIZE: u32 = 4096;

/// Why an AF_XDP socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("cannot create an AF_XDP socket: {0} (the kernel needs CONFIG_XDP_SOCKETS, ringcap needs root)")]
    Socket(io::Error),
    #[error("cannot set up the AF_XDP socket's {what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot bind an AF_XDP socket to queue {queue} of {iface}: {source}")]
    Bind {
        iface: String,
        queue: u32,
        #[source]
        source: io::Error,
    },
}

/// How the kernel moves frames into the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XskMode {
    /// The driver receives straight into our UMEM.
    ZeroCopy,
    /// The kernel copies each frame into our UMEM (drivers without AF_XDP support, veth).
    Copy,
}

impl std::fmt::Display for XskMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XskMode::ZeroCopy => "zero-copy",
            XskMode::Copy => "copy",
        })
    }
}

impl XskStatistics {
    /// The statistics of several sockets, summed.
    pub fn sum(sockets: &[OwnedFd]) -> XskStatistics {
        let mut total = XskStatistics::default();
        for socket in sockets {
            if let Ok(stats) = statistics(socket.as_fd()) {
                total += stats;
            }
        }
        total
    }
}

/// The kernel's counters of one socket.
fn statistics(socket: BorrowedFd<'_>) -> io::Result<XskStatistics> {
    // SAFETY: plain-data struct, zero is a valid value.
    let mut raw: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    getsockopt(socket.as_raw_fd(), libc::XDP_STATISTICS, &mut raw)?;
    Ok(XskStatistics {
        rx_dropped: raw.rx_dropped,
        rx_ring_full: raw.rx_ring_full,
        fill_ring_empty: raw.rx_fill_ring_empty_descs,
        rx_invalid_descs: raw.rx_invalid_descs,
    })
}

/// A single-producer single-consumer ring shared with the kernel.
struct Ring<T> {
    _map: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    descs: *mut T,
    mask: u32,
}

// SAFETY: the ring is used by one thread at a time (the socket's reader).
unsafe impl<T> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    fn map(fd: RawFd, offsets: &libc::xdp_ring_offset, size: u32, page_offset: u64) -> io::Result<Self> {
        let map =
            Mapping::shared(fd, offsets.desc as usize + size as usize * size_of::<T>(), page_offset, true)?;
        Ok(Ring {
            producer: map.at(offsets.producer),
            consumer: map.at(offsets.consumer),
            descs: map.at(offsets.desc),
            mask: size - 1,
            _map: map,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping, at an aligned u32 the kernel updates atomically.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }

    fn get(&self, index: u32) -> T {
        // SAFETY: masked into the ring's descriptor array.
        unsafe { std::ptr::read_volatile(self.descs.add((index & self.mask) as usize)) }
    }

    fn set(&self, index: u32, value: T) {
        // SAFETY: as above; this side owns the slot until it publishes the producer index.
        unsafe { std::ptr::write_volatile(self.descs.add((index & self.mask) as usize), value) }
    }
}

/// Sizes of one socket's UMEM and rings.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Frames in the UMEM, a power of two; the fill and receive rings hold as many.
    pub frames: u32,
}

/// One AF_XDP socket bound to one receive queue, receiving only.
pub struct XskSocket {
    fd: OwnedFd,
    umem: Mapping,
    fill: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    /// Kept mapped for the socket's lifetime, as the kernel requires a completion ring.
    _completion: Ring<u64>,
    mode: XskMode,
    /// The next receive descriptor to look at, and the next fill slot to give a frame to.
    rx_cursor: u32,
    fill_cursor: u32,
    /// The receive ring's producer index last read.
    rx_end: u32,
    /// The frame `head` found at `rx_cursor`.
    head: Option<Received>,
}

/// Where a received frame is in the UMEM, and when it arrived.
#[derive(Clone, Copy, Debug)]
struct Received {
    start: usize,
    end: usize,
    timestamp: Option<u64>,
    /// Bytes to store, once the cut decided (once per frame: it counts).
    keep: Option<usize>,
}

impl XskSocket {
    /// Opens a socket on queue `queue` of `iface`: zero-copy when the driver supports
    /// it, copy mode otherwise.
    pub fn open(iface: &str, ifindex: u32, queue: u32, config: XskConfig) -> Result<Self, XskError> {
        match Self::open_in(ifindex, queue, config, XskMode::ZeroCopy) {
            Ok(socket) => Ok(socket),
            Err(XskError::Bind { .. }) => {
                Self::open_in(ifindex, queue, config, XskMode::Copy).map_err(|e| match e {
                    XskError::Bind { source, .. } => {
                        XskError::Bind { iface: iface.to_string(), queue, source }
                    }
                    other => other,
                })
            }
            Err(other) => Err(other),
        }
    }

    fn open_in(ifindex: u32, queue: u32, config: XskConfig, mode: XskMode) -> Result<Self, XskError> {
        let frames = config.frames.next_power_of_two();
        let setup = |what| move |source| XskError::Setup { what, source };
        // SAFETY: plain socket call.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(XskError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Mapping::anonymous(frames as usize * FRAME_SIZE as usize).map_err(setup("UMEM"))?;
        let registration = libc::xdp_umem_reg {
            addr: umem.base.as_ptr() as u64,
            len: umem.len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &registration).map_err(setup("UMEM registration"))?;
        setsockopt(raw, libc::XDP_UMEM_FILL_RING, &frames).map_err(setup("fill ring"))?;
        setsockopt(raw, libc::XDP_UMEM_COMPLETION_RING, &frames).map_err(setup("completion ring"))?;
        setsockopt(raw, libc::XDP_RX_RING, &frames).map_err(setup("receive ring"))?;
        // SAFETY: plain-data struct, zero is a valid value.
        let mut offsets: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        getsockopt(raw, libc::XDP_MMAP_OFFSETS, &mut offsets).map_err(setup("ring offsets"))?;
        let fill = Ring::map(raw, &offsets.fr, frames, libc::XDP_UMEM_PGOFF_FILL_RING)
            .map_err(setup("fill ring"))?;
        let completion = Ring::map(raw, &offsets.cr, frames, libc::XDP_UMEM_PGOFF_COMPLETION_RING)
            .map_err(setup("completion ring"))?;
        let rx = Ring::map(raw, &offsets.rx, frames, libc::XDP_PGOFF_RX_RING as u64)
            .map_err(setup("receive ring"))?;
        // Every frame starts out in the fill ring, ready for the kernel.
        for frame in 0..frames {
            fill.set(frame, u64::from(frame) * u64::from(FRAME_SIZE));
        }
        fill.producer().store(frames, Ordering::Release);
        let address = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: match mode {
                XskMode::ZeroCopy => libc::XDP_ZEROCOPY,
                XskMode::Copy => libc::XDP_COPY,
            },
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: a valid sockaddr_xdp of the size given.
        let bound = unsafe {
            libc::bind(
                raw,
                (&address as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            return Err(XskError::Bind { iface: String::new(), queue, source: io::Error::last_os_error() });
        }
        Ok(XskSocket {
            fd,
            umem,
            fill,
            rx,
            _completion: completion,
            mode,
            rx_cursor: 0,
            fill_cursor: frames,
            rx_end: 0,
            head: None,
        })
    }

    /// Whether the driver took zero-copy mode.
    pub fn mode(&self) -> XskMode {
        self.mode
    }

    /// A second descriptor of the socket, for reading its statistics from another thread.
    pub fn statistics_handle(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// The oldest received frame, left in the UMEM until [`Self::advance`] and
    /// [`Self::release`]: where its bytes are and the kernel's arrival time, when the
    /// program could stamp it. Descriptors outside the UMEM are skipped (and recycled).
    fn head(&mut self) -> Option<Received> {
        while self.head.is_none() {
            if self.rx_cursor == self.rx_end {
                self.rx_end = self.rx.producer().load(Ordering::Acquire);
                if self.rx_cursor == self.rx_end {
                    return None;
                }
            }
            let desc = self.rx.get(self.rx_cursor);
            let start = desc.addr as usize;
            let end = start + desc.len as usize;
            if end <= self.umem.len {
                let timestamp = start.checked_sub(XskMeta::LEN).and_then(|at| self.take_meta(at));
                self.head = Some(Received { start, end, timestamp, keep: None });
            } else {
                self.recycle();
            }
        }
        self.head
    }

    /// The bytes of a frame [`Self::head`] returned.
    fn bytes(&self, frame: &Received) -> &[u8] {
        // SAFETY: within the UMEM (checked by `head`); the kernel wrote the frame before
        // publishing its descriptor and does not touch it until it is back in the fill ring.
        unsafe {
            std::slice::from_raw_parts(self.umem.base.as_ptr().add(frame.start), frame.end - frame.start)
        }
    }

    /// Moves past the frame `head` returned; it goes back to the kernel on `release`.
    fn advance(&mut self) {
        if self.head.take().is_some() {
            self.recycle();
        }
    }

    /// Queues the frame of the descriptor at the cursor for the fill ring and moves on.
    fn recycle(&mut self) {
        let desc = self.rx.get(self.rx_cursor);
        self.fill.set(self.fill_cursor, desc.addr - desc.addr % u64::from(FRAME_SIZE));
        self.fill_cursor = self.fill_cursor.wrapping_add(1);
        self.rx_cursor = self.rx_cursor.wrapping_add(1);
    }

    /// Hands the frames moved past back to the kernel, then their descriptors.
    fn release(&mut self) {
        self.fill.producer().store(self.fill_cursor, Ordering::Release);
        self.rx.consumer().store(self.rx_cursor, Ordering::Release);
    }

    /// The arrival time in the metadata in front of a frame, consumed so that a later
    /// frame in the same buffer cannot pass it off as its own.
    fn take_meta(&self, at: usize) -> Option<u64> {
        let meta: *mut XskMeta = self.umem.at(at as u64);
        // SAFETY: within the UMEM (checked by the caller); any bytes are a valid XskMeta.
        let value = unsafe { std::ptr::read_unaligned(meta) };
        if value.magic != XskMeta::MAGIC {
            return None;
        }
        // SAFETY: as above.
        unsafe { std::ptr::write_unaligned(meta, XskMeta::default()) };
        Some(value.timestamp_ns)
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A socket as a source of records for the reader.
pub struct XskSource {
    pub socket: XskSocket,
    pub ifindex: u32,
    /// Where frames that arrived without the program's timestamp are counted.
    pub counters: Arc<ReaderCounters>,
    /// The per-flow cut of this socket's frames, when flows are cut.
    pub cutter: Option<FlowCutter>,
}

impl RecordSource for XskSource {
    fn peek(&mut self) -> Option<(RecordHeader, &[u8])> {
        let mut frame = self.socket.head()?;
        if frame.timestamp.is_none() {
            // Stamped on arrival here, once: the stamp stays with the frame until `advance`.
            self.counters.unstamped.fetch_add(1, Ordering::Relaxed);
            frame.timestamp = Some(crate::capture::clock::monotonic_ns());
        }
        if frame.keep.is_none() {
            let len = frame.end - frame.start;
            frame.keep = Some(match &mut self.cutter {
                Some(cutter) => cutter.keep(self.socket.bytes(&frame)),
                None => len,
            });
        }
        self.socket.head = Some(frame);
        let bytes = self.socket.bytes(&frame);
        let orig_len = bytes.len() as u32;
        let bytes = &bytes[..frame.keep.unwrap_or(bytes.len()).min(bytes.len())];
        let header = RecordHeader {
            timestamp_ns: frame.timestamp.unwrap_or_default(),
            orig_len,
            cap_len: bytes.len() as u32,
            ifindex: self.ifindex,
            flags: RecordFlags::INGRESS,
        };
        Some((header, bytes))
    }

    fn advance(&mut self) {
        self.socket.advance();
    }

    fn release(&mut self) {
        self.socket.release();
    }

    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// The receive queues of an interface (`/sys/class/net/IFACE/queues/rx-*`), at least one.
pub fn receive_queues(iface: &str) -> u32 {
    let count = std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1);
    count.max(1) as u32
}

fn setsockopt<T>(fd: RawFd, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is valid for its size.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            option,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt<T>(fd: RawFd, option: libc::c_int, value: &mut T) -> io::Result<()> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is valid for `len` bytes.
    let result = unsafe { libc::getsockopt(fd, libc::SOL_XDP, option, (value as *mut T).cast(), &mut len) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

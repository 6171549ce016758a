//! A traffic generator: transmits frames out of a veth end at millions of frames per
//! second with `BPF_PROG_TEST_RUN` live frames (an `XDP_TX` program run in a loop by
//! the kernel). The peer accepts them only while it has an XDP program attached.
//!
//! A kernel may refuse live frames to the process (some sandboxed kernels answer EPERM
//! to root): the generator then sends through an `AF_PACKET` socket, one frame a
//! `send`, which the peer's XDP program sees the same way, at a few hundred thousand
//! frames a second instead of millions. It says so once.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::bpf::{ConstantXdp, XdpVerdict};

/// Set once the kernel refused live frames: every later plan goes by `AF_PACKET` at once.
static LIVE_REFUSED: AtomicBool = AtomicBool::new(false);

/// How frames leave the interface.
enum Sender {
    Live(ConstantXdp),
    Packet(OwnedFd),
}

impl Sender {
    fn open(ifindex: u32) -> io::Result<Sender> {
        if !LIVE_REFUSED.load(Ordering::Relaxed) {
            let program = ConstantXdp::load(XdpVerdict::Tx)?;
            // A probe on the namespace's loopback (ingress 0), which has no XDP transmit:
            // refused as a real run would be, and when allowed the frame goes nowhere.
            match program.run_live(0, &[0u8; 60], 1, 1) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    if !LIVE_REFUSED.swap(true, Ordering::Relaxed) {
                        eprintln!(
                            "generator: this kernel refuses XDP live frames (EPERM): sending with AF_PACKET, a frame a send"
                        );
                    }
                }
                _ => return Ok(Sender::Live(program)),
            }
        }
        packet_socket(ifindex).map(Sender::Packet)
    }

    /// Sends `repeat` copies of `frame`.
    fn send(&self, ifindex: u32, frame: &[u8], repeat: u32) -> io::Result<()> {
        match self {
            Sender::Live(program) => program.run_live(ifindex, frame, repeat, repeat.min(64)),
            Sender::Packet(socket) => {
                for _ in 0..repeat {
                    send_frame(socket, frame)?;
                }
                Ok(())
            }
        }
    }
}

/// An `AF_PACKET` socket that sends on `ifindex` and receives nothing (protocol 0).
fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor returned is ours.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_ifindex = ifindex as i32;
    // SAFETY: bind with the address and its size.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if bound < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Sends one frame; a full transmit queue (ENOBUFS) is waited out, never a lost frame.
fn send_frame(socket: &OwnedFd, frame: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: send(2) of a valid buffer of its length.
        let sent = unsafe { libc::send(socket.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if sent >= 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::ENOBUFS) | Some(libc::EAGAIN) => std::thread::sleep(Duration::from_micros(50)),
            Some(libc::EINTR) => {}
            _ => return Err(error),
        }
    }
}

/// What to send.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Frames sent in turn; each turn sends `chunk` copies of one frame.
    pub frames: Vec<Vec<u8>>,
    /// Total frames to send.
    pub count: u64,
    /// Copies of a frame per syscall (1 sends every frame of `frames` once per turn).
    pub chunk: u32,
    /// Target rate in frames per second; `None` sends as fast as the receiver takes them.
    pub rate: Option<f64>,
    /// Stop after this long, even if fewer than `count` frames went out.
    pub until: Option<Duration>,
}

/// What was sent.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    pub sent: u64,
    pub elapsed: Duration,
}

impl Report {
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Transmits `plan` out of interface `ifindex` (in the caller's network namespace).
pub fn transmit(ifindex: u32, plan: &Plan) -> io::Result<Report> {
    let sender = Sender::open(ifindex)?;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut turn = 0usize;
    while sent < plan.count && !plan.frames.is_empty() && plan.until.is_none_or(|t| start.elapsed() < t) {
        let frame = &plan.frames[turn % plan.frames.len()];
        turn += 1;
        let repeat = u64::from(plan.chunk.max(1)).min(plan.count - sent) as u32;
        sender.send(ifindex, frame, repeat)?;
        sent += u64::from(repeat);
        if let Some(rate) = plan.rate {
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    Ok(Report { sent, elapsed: start.elapsed() })
}

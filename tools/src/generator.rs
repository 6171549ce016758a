//! A traffic generator: transmits frames out of a veth end at millions of frames per
//! second with `BPF_PROG_TEST_RUN` live frames (an `XDP_TX` program run in a loop by
//! the kernel). The peer accepts them only while it has an XDP program attached.
use std::io;
use std::time::{Duration, Instant};

use crate::bpf::{ConstantXdp, XdpVerdict};

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
    let program = ConstantXdp::load(XdpVerdict::Tx)?;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut turn = 0usize;
    while sent < plan.count && !plan.frames.is_empty() && plan.until.is_none_or(|t| start.elapsed() < t) {
        let frame = &plan.frames[turn % plan.frames.len()];
        turn += 1;
        let repeat = u64::from(plan.chunk.max(1)).min(plan.count - sent) as u32;
        program.run_live(ifindex, frame, repeat, repeat.min(64))?;
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

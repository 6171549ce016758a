//! Per-flow cutting of AF_XDP frames, in user space. The ring buffer path cuts in the
//! kernel, before the copy; a frame redirected to a socket arrives whole, and the kernel
//! has no way to tell user space which frames it would have shortened (no metadata on a
//! kernel that refuses `bpf_xdp_adjust_meta`, and a frame's own bytes can lie). So the
//! reader of each socket decides with the same rules (`capture_common::cut`) on a table
//! of its own: the rules look at one direction of a flow at a time, and every packet of
//! a direction reaches the same receive queue (RSS hashes its 5-tuple), so the verdicts
//! are the kernel's.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use capture_common::cut::{self, CutHalf, Transport};
use capture_common::packet::SlicePacket;
use capture_common::tcp::{self, FlowKey};
use capture_common::{CaptureConfig, Counter, MAX_SLOTS};

use crate::kernel::{FlowCut, KernelCounters};

/// The cuts the readers made, by counter slot, as the kernel counts its own: added to
/// the kernel's counters wherever they are shown.
#[derive(Default)]
pub struct CutCounts {
    /// slot * 6 + [packets, bytes not stored] of each reason.
    values: Vec<AtomicU64>,
}

/// The counters a cut for `reason` adds to.
const REASONS: [u32; 3] = [cut::CUT_FLOW_BYTES, cut::CUT_FLOW_PACKETS, cut::CUT_ENCRYPTED_DATA];

impl CutCounts {
    pub fn new() -> Arc<Self> {
        Arc::new(CutCounts { values: (0..MAX_SLOTS * 6).map(|_| AtomicU64::new(0)).collect() })
    }

    fn add(&self, slot: usize, reason: u32, saved: u64) {
        let at = slot * 6 + 2 * REASONS.iter().position(|&r| r == reason).unwrap_or(2);
        self.values[at].fetch_add(1, Ordering::Relaxed);
        self.values[at + 1].fetch_add(saved, Ordering::Relaxed);
    }

    /// Adds the readers' cuts to `kernel`'s counters.
    pub fn add_to(&self, kernel: &mut KernelCounters) {
        for (slot, values) in kernel.values.iter_mut().enumerate() {
            for (i, &reason) in REASONS.iter().enumerate() {
                let (packets, bytes) = Counter::cut(reason);
                values[packets as usize] += self.values[slot * 6 + 2 * i].load(Ordering::Relaxed);
                values[bytes as usize] += self.values[slot * 6 + 2 * i + 1].load(Ordering::Relaxed);
            }
        }
    }
}

/// One direction of a flow in a reader's table.
#[derive(Clone, Copy, Default)]
struct Entry {
    key: FlowKey,
    from_lo: bool,
    used: bool,
    half: CutHalf,
}

/// A socket reader's cut: the rules, the snap length (a cut saves only bytes that would
/// have been stored), the counter slot of its interface, and a direct-mapped table of
/// directions (a direction that loses its entry to another starts again, as a flow
/// evicted from the kernel's table does).
pub struct FlowCutter {
    config: CaptureConfig,
    snaplen: u32,
    slot: usize,
    table: Vec<Entry>,
    counts: Arc<CutCounts>,
}

impl FlowCutter {
    /// The cutter of a socket whose frames count in `slot`; `None` when cutting is off.
    /// `capacity`: directions the table holds (rounded up to a power of two).
    pub fn new(
        cut: &FlowCut,
        snaplen: u32,
        slot: usize,
        capacity: u32,
        counts: Arc<CutCounts>,
    ) -> Option<Self> {
        let config = CaptureConfig {
            flow_bytes: cut.bytes,
            flow_packets: cut.packets,
            cut_encrypted: u32::from(cut.encrypted),
            ..CaptureConfig::default()
        };
        cut.enabled().then(|| FlowCutter {
            config,
            snaplen,
            slot: slot.min(MAX_SLOTS as usize - 1),
            table: vec![Entry::default(); capacity.next_power_of_two() as usize],
            counts,
        })
    }

    /// Accounts `frame` to its direction and returns how many of its bytes to store.
    pub fn keep(&mut self, frame: &[u8]) -> usize {
        let len = frame.len() as u32;
        let view = SlicePacket { data: frame, wire_len: len };
        let mut key = FlowKey::default();
        let mut transport = Transport::default();
        let from_lo = match tcp::parse(&view) {
            Some(segment) => {
                key = segment.key;
                transport = Transport::of_segment(&segment);
                segment.from_lo
            }
            None => match cut::parse_udp(&view, &mut key, &mut transport) {
                Some(from_lo) => from_lo,
                None => return frame.len(),
            },
        };
        transport.read_head(&view);
        let index = self.index(&key, from_lo);
        let entry = &mut self.table[index];
        if !entry.used || entry.key != key || entry.from_lo != from_lo {
            *entry = Entry { key, from_lo, used: true, half: CutHalf::default() };
        }
        let reason = cut::decide(&mut entry.half, &transport, &self.config);
        let stored = len.min(self.snaplen);
        if reason == 0 || transport.payload_at >= stored {
            return frame.len();
        }
        self.counts.add(self.slot, reason, u64::from(stored - transport.payload_at));
        transport.payload_at as usize
    }

    /// The table slot of a direction: a multiplicative hash of its key.
    fn index(&self, key: &FlowKey, from_lo: bool) -> usize {
        let mut hash = u64::from(key.lo_port) << 32 | u64::from(key.hi_port) << 16 | u64::from(key.protocol);
        hash = (hash ^ u64::from(from_lo)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for (lo, hi) in key.lo_addr.iter().zip(&key.hi_addr) {
            hash = (hash ^ (u64::from(*lo) << 32 | u64::from(*hi))).wrapping_mul(0xff51_afd7_ed55_8ccd);
        }
        (hash ^ hash >> 32) as usize & (self.table.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(sport: u16, len: usize) -> Vec<u8> {
        let template = ringcap_tools::frames::FrameTemplate::default();
        template.udp_ports(len, sport, 53, 0)
    }

    #[test]
    fn each_direction_keeps_its_first_packets_and_is_counted_in_its_slot() {
        let counts = CutCounts::new();
        let cut = FlowCut { bytes: 0, packets: 2, encrypted: false };
        let mut cutter = FlowCutter::new(&cut, 262_144, 3, 1024, Arc::clone(&counts)).unwrap();
        let kept: Vec<usize> = (0..4).map(|_| cutter.keep(&udp(4000, 500))).collect();
        assert_eq!(kept, [500, 500, 42, 42]);
        assert_eq!(cutter.keep(&udp(4001, 500)), 500, "another flow starts whole");
        let mut kernel = KernelCounters::default();
        counts.add_to(&mut kernel);
        assert_eq!(kernel.only(3).get(Counter::CutFlowPackets), 2);
        assert_eq!(kernel.only(3).get(Counter::CutFlowPacketsBytes), 2 * 458);
        // A snap length under the headers leaves nothing to cut.
        let mut short = FlowCutter::new(&cut, 40, 0, 1024, CutCounts::new()).unwrap();
        assert!((0..4).all(|_| short.keep(&udp(4000, 500)) == 500));
        assert!(FlowCutter::new(&FlowCut::default(), 100, 0, 1024, CutCounts::new()).is_none());
    }
}

//! Per-flow work on the flow table: TCP health for every packet, selected or not (flag
//! counts, and the analysis shared with user space, `capture_common::tcp`: handshake,
//! Wireshark's sequence rules, RTT samples, into per-CPU counters and log-linear RTT
//! histograms), and the per-flow cut of TCP and UDP flows (`capture_common::cut`).
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, PerCpuArray},
};
use capture_common::{
    cut::{self, Cut, Transport},
    packet::PacketView,
    tcp::{self, FlowState, Observer, OptionScan, Segment, MAX_OPTIONS, RTT_BUCKETS, RTT_KINDS},
    CaptureConfig, Counter, MAX_SLOTS, PACKET_WINDOW,
};

use crate::direct::Direct;
use crate::flows::{find_or_insert, lock, unlock, Found};
use crate::packet::{add_one, count_by, count_raw, current_slot, PacketBytes};
use crate::select::config;

/// RTT histograms: (slot * RTT_KINDS + kind) * RTT_BUCKETS + bucket. One array for all
/// CPUs, updated with atomic adds (samples are rare next to packets), that user space
/// maps into its memory: reading every bucket of every slot costs no syscall.
#[map]
static RTT: Array<u64> = Array::with_max_entries(MAX_SLOTS * RTT_KINDS * RTT_BUCKETS, BPF_F_MMAPABLE);

/// The packet being worked on and what its analysis and cut found, per CPU: how the
/// inline entries and the global functions share them.
struct Scratch {
    segment: Segment,
    findings: Findings,
    /// What the cut reads of the packet (TCP or UDP), and its verdict.
    transport: Transport,
    cut: Cut,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// What the TCP entry does with a segment: [`ANALYSE`] and/or [`CUT`].
const ANALYSE: u32 = 1;
const CUT: u32 = 2;

/// Finds (or starts) the flow of the segment in the scratch and, under the flow's lock,
/// runs the shared analysis on its state in place (`work` has [`ANALYSE`]) and decides
/// its cut (`work` has [`CUT`]); returns the packet's time, made later than the flow's
/// last one if another CPU worked on a packet of it in between. A global function of
/// its own, so the verifier checks its many branches once, apart from its caller's.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ringcap_tcp_flow(now: u64, work: u32) -> u64 {
    let (Some(scratch), Some(config)) = (SCRATCH.get_ptr_mut(0), config()) else { return now };
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    let scratch = unsafe { &mut *scratch };
    scratch.findings = Findings::default();
    scratch.cut = Cut::default();
    let segment = &scratch.segment;
    let state = match find_or_insert(&segment.key, |fresh| {
        fresh.lock = 0;
        fresh.last_ns = 0;
        tcp::start_flow(fresh, segment, now);
    }) {
        Found::Existing(state) => state,
        Found::Inserted(state) => {
            scratch.findings.count(Counter::TcpFlowsInserted);
            if segment.flags & tcp::SYN == 0 {
                scratch.findings.count(Counter::TcpFlowsMidStream);
            }
            state
        }
        Found::InsertFailed => {
            scratch.findings.count(Counter::TcpFlowInsertFailed);
            return now;
        }
    };
    if !lock(state) {
        crate::packet::count(Counter::FlowLockBusy);
        return now;
    }
    // SAFETY: a live map value, this CPU's alone while it holds the flow's lock.
    let stamp = unsafe {
        let state = &mut *state;
        let now = if now > state.last_ns { now } else { state.last_ns + 1 };
        state.last_ns = now;
        if work & ANALYSE != 0 {
            tcp::analyse(state, segment, now, &mut scratch.findings);
        }
        if work & CUT != 0 {
            // The verifier must see the index in 0..2; LLVM, knowing a bool is 0 or 1,
            // would drop a mask: a volatile read hides that knowledge.
            let from_lo = core::ptr::read_volatile((&raw const segment.from_lo).cast::<u8>());
            let half = &mut state.halves[usize::from(!from_lo & 1)].cut;
            scratch.cut.reason = cut::decide(half, &scratch.transport, config);
            scratch.cut.keep = scratch.transport.payload_at;
        }
        now
    };
    unlock(state);
    stamp
}

/// Decides the cut of the UDP datagram in the scratch: its flow joins the table (only
/// while flows are cut). A global function, as [`ringcap_tcp_flow`].
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ringcap_udp_flow(from_lo: u32) -> u32 {
    let (Some(scratch), Some(config)) = (SCRATCH.get_ptr_mut(0), config()) else { return 0 };
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    let scratch = unsafe { &mut *scratch };
    scratch.cut = Cut::default();
    let key = &scratch.segment.key;
    let state = match find_or_insert(key, |fresh| *fresh = FlowState::default()) {
        Found::Existing(state) => state,
        Found::Inserted(state) => {
            crate::packet::count(Counter::UdpFlowsInserted);
            state
        }
        Found::InsertFailed => return 0,
    };
    if !lock(state) {
        crate::packet::count(Counter::FlowLockBusy);
        return 0;
    }
    // SAFETY: as in `ringcap_tcp_flow`.
    let half = unsafe { &mut (*state).halves[(from_lo & 1) as usize ^ 1].cut };
    scratch.cut.reason = cut::decide(half, &scratch.transport, config);
    scratch.cut.keep = scratch.transport.payload_at;
    unlock(state);
    0
}

/// Collects what the analysis of one segment found; [`Findings::flush`] reports it. The
/// analysis itself only sets bits and fields: with a map update inside each of its
/// branches, the verifier's paths multiplied past its budget.
#[derive(Default)]
struct Findings {
    /// Bit `c` set: counter `c` (< 64: the analysis counts none of the higher ones) is
    /// to be incremented.
    counters: u64,
    /// RTT samples: (kind, ns); at most three per segment (handshake, timestamp, data).
    rtt: [(u32, u64); 3],
    samples: u32,
}

impl Observer for Findings {
    #[inline(always)]
    fn count(&mut self, counter: Counter) {
        self.counters |= 1 << (counter as u32);
    }

    #[inline(always)]
    fn rtt(&mut self, kind: u32, ns: u64) {
        if let Some(slot) = self.rtt.get_mut(self.samples as usize) {
            *slot = (kind, ns);
            self.samples += 1;
        }
    }
}

impl Findings {
    /// Adds the findings to the per-CPU counters and RTT histograms.
    #[inline(always)]
    fn flush(&self) {
        if self.counters == 0 && self.samples == 0 {
            return;
        }
        let mut bit = Counter::TcpSyn as u32;
        while bit < 64 {
            if self.counters & (1 << bit) != 0 {
                count_raw(bit, 1);
            }
            bit += 1;
        }
        let mut i = 0;
        while i < 3 {
            if i < self.samples {
                let (kind, ns) = self.rtt[i as usize];
                record_rtt(kind, ns);
            }
            i += 1;
        }
    }
}

/// Adds a sample to its histogram and its kind's sum.
#[inline(always)]
fn record_rtt(kind: u32, ns: u64) {
    let sum = match kind {
        tcp::RTT_SERVER => Counter::TcpRttServerNs,
        tcp::RTT_CLIENT => Counter::TcpRttClientNs,
        tcp::RTT_TIMESTAMP => Counter::TcpRttTimestampNs,
        _ => Counter::TcpRttDataNs,
    };
    count_by(sum, ns);
    let histogram = current_slot() * RTT_KINDS + (kind & (RTT_KINDS - 1));
    let index = (histogram * RTT_BUCKETS + tcp::rtt_bucket(ns)) & (MAX_SLOTS * RTT_KINDS * RTT_BUCKETS - 1);
    add_one(&RTT, index);
}

/// The first bytes of the packet whose options are scanned (or whose TLS or HTTP is
/// read), per CPU (too large for the stack). Twice the bytes ever copied: where LLVM
/// knows an offset's constant part cannot carry out of the mask, it adds that part after
/// masking (`(a & mask) + c`), and the verifier must find that inside the value too.
#[map]
static WINDOW: PerCpuArray<[u8; 2 * PACKET_WINDOW as usize]> = PerCpuArray::with_max_entries(1, 0);

/// The copied window of a packet, as the TCP option scan reads it.
struct Window {
    bytes: *const [u8; 2 * PACKET_WINDOW as usize],
    copied: u32,
    wire_len: u32,
}

impl PacketView for Window {
    #[inline(always)]
    fn wire_len(&self) -> u32 {
        self.wire_len
    }

    #[inline(always)]
    fn byte(&self, offset: u32) -> Option<u8> {
        if offset >= self.copied {
            return None;
        }
        // SAFETY: the window is a live per-CPU map value; the index is masked into it.
        Some(unsafe { (*self.bytes)[(offset & (PACKET_WINDOW - 1)) as usize] })
    }
}

/// The copied window of the packet, as a packet view.
#[inline(always)]
pub(crate) fn window(copied: u32, wire_len: u32) -> Option<impl PacketView> {
    // The window's reads mask each offset into it, which is the bound the verifier needs;
    // were `copied` known to be at most PACKET_WINDOW, LLVM would drop the mask after the
    // `offset < copied` check. A volatile reload hides that knowledge.
    // SAFETY: reads a local.
    let copied = unsafe { core::ptr::read_volatile(&copied) };
    WINDOW.get_ptr(0).map(|bytes| Window { bytes, copied, wire_len })
}

/// Copies the packet's first bytes (at most [`PACKET_WINDOW`]) into this CPU's window, for
/// what reads them from there; returns how many, `None` if the copy failed.
#[inline(always)]
pub(crate) fn copy_window<P: PacketBytes>(packet: &P, wire_len: u32) -> Option<u32> {
    let bytes = WINDOW.get_ptr_mut(0)?;
    let mut copied = if wire_len > PACKET_WINDOW { PACKET_WINDOW } else { wire_len };
    if copied > 0 {
        // A length the verifier can see is in 1..=PACKET_WINDOW.
        copied = ((copied - 1) & (PACKET_WINDOW - 1)) + 1;
        // SAFETY: the window holds PACKET_WINDOW bytes and copied <= PACKET_WINDOW.
        if !unsafe { packet.load(bytes.cast(), copied) } {
            return None;
        }
    }
    Some(copied)
}

/// Reads the options of the segment in the scratch (timestamps, window scale). A global
/// function: checked by the verifier on its own, its loop does not multiply the paths of
/// the rest of the analysis.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ringcap_tcp_options(copied: u32) -> u32 {
    let (Some(scratch), Some(window)) = (SCRATCH.get_ptr_mut(0), window(copied, 0)) else {
        return 0;
    };
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    let segment = unsafe { &mut (*scratch).segment };
    let mut scan = OptionScan::new(segment);
    let mut options = 0;
    while options < MAX_OPTIONS && scan.step(&window) {
        options += 1;
    }
    scan.apply(segment);
    0
}

/// Analyses the TCP segment seen at `now`, `wire_len` bytes long on the wire, and decides
/// its cut, as `config` asks; returns the time to record it with (see
/// [`ringcap_tcp_flow`]) and its cut, `None` for a packet that is not a TCP segment. The
/// headers are read where they lie; only options other than Linux's usual NOP NOP
/// TIMESTAMPS (a SYN's, SACK blocks) are read from a copy of the first bytes, by a scan
/// of their own.
#[inline(always)]
pub fn tcp_segment<P: PacketBytes>(
    packet: &P,
    wire_len: u32,
    now: u64,
    config: &CaptureConfig,
) -> Option<(u64, Cut)> {
    let scratch = SCRATCH.get_ptr_mut(0)?;
    let (data, end) = packet.direct();
    let direct = Direct { data, end, wire_len };
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    let scratch = unsafe { &mut *scratch };
    if !tcp::parse_into(&direct, &mut scratch.segment) {
        return None;
    }
    scratch.segment.wire_segments = packet.wire_segments();
    let mut work = 0;
    if config.tcp_analysis != 0 {
        work |= ANALYSE;
        if !tcp::common_options(&direct, &mut scratch.segment) {
            let copied = copy_window(packet, wire_len)?;
            ringcap_tcp_options(copied);
        }
    }
    if cut::enabled(config) {
        work |= CUT;
        scratch.transport = Transport::of_segment(&scratch.segment);
        scratch.transport.read_head(&direct);
    }
    let stamp = ringcap_tcp_segment(now, work);
    Some((stamp, scratch.cut))
}

/// The cut of a UDP datagram, `None` for a packet that is not one.
#[inline(always)]
pub fn udp_cut<P: PacketBytes>(packet: &P, wire_len: u32) -> Option<Cut> {
    let scratch = SCRATCH.get_ptr_mut(0)?;
    let (data, end) = packet.direct();
    let direct = Direct { data, end, wire_len };
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    let scratch = unsafe { &mut *scratch };
    let from_lo = cut::parse_udp(&direct, &mut scratch.segment.key, &mut scratch.transport)?;
    scratch.transport.read_head(&direct);
    ringcap_udp_flow(u32::from(from_lo));
    Some(scratch.cut)
}

/// Counts the flags of the segment in the scratch, runs the flow analysis and reports
/// what it found. A global function with a scalar argument: the verifier checks it once,
/// on its own, instead of once for every path of each program that calls it.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ringcap_tcp_segment(now: u64, work: u32) -> u64 {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return now };
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    let scratch = unsafe { &mut *scratch };

    // Flags are rare: note them in the findings, which `flush` turns into counter updates.
    let flags = scratch.segment.flags;
    let mut noted = 0u64;
    if flags & tcp::FIN != 0 {
        noted |= 1 << Counter::TcpFin as u32;
    }
    if flags & tcp::RST != 0 {
        noted |= 1 << Counter::TcpRst as u32;
    }
    if flags & tcp::ECE != 0 {
        noted |= 1 << Counter::TcpEce as u32;
    }
    if flags & tcp::CWR != 0 {
        noted |= 1 << Counter::TcpCwr as u32;
    }
    match flags & (tcp::SYN | tcp::ACK) {
        tcp::SYN => noted |= 1 << Counter::TcpSyn as u32,
        f if f == tcp::SYN | tcp::ACK => noted |= 1 << Counter::TcpSynAck as u32,
        _ => {}
    }
    let stamp = ringcap_tcp_flow(now, work);
    if work & ANALYSE != 0 {
        scratch.findings.counters |= noted;
        let segments = u64::from(scratch.segment.wire_segments);
        count_by(Counter::TcpSegments, segments);
        count_by(Counter::TcpPayloadBytes, u64::from(scratch.segment.len));
        const RETRANSMISSIONS: u64 = (1 << Counter::TcpRetransmission as u32)
            | (1 << Counter::TcpFastRetransmission as u32)
            | (1 << Counter::TcpSpuriousRetransmission as u32);
        if scratch.findings.counters & RETRANSMISSIONS != 0 {
            count_by(Counter::TcpRetransmittedSegments, segments);
        }
    }
    scratch.findings.flush();
    stamp
}

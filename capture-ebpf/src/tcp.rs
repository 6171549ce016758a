//! TCP health for every packet, selected or not: flag counts, and the analysis shared
//! with user space (`capture_common::tcp`: handshake, Wireshark's sequence rules, RTT
//! samples) run on the flow's state in an LRU hash, into per-CPU counters and log-linear
//! RTT histograms.
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_NOEXIST},
    btf_maps,
    helpers::{bpf_spin_lock, bpf_spin_unlock},
    macros::{btf_map, map},
    maps::{Array, LruHashMap, PerCpuArray},
};
use capture_common::{
    packet::PacketView,
    tcp::{
        self, FlowKey, FlowLock, FlowState, Observer, OptionScan, Segment, FLOW_LOCKS, MAX_OPTIONS,
        RTT_BUCKETS, RTT_KINDS,
    },
    Counter, MAX_SLOTS, PACKET_WINDOW,
};

use crate::direct::Direct;
use crate::packet::{count_by, count_raw, current_slot, PacketBytes};

/// Analysis state by connection (both directions share a key); sized by the loader.
#[map]
static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(65536, 0);

/// The flows' locks (see [`FlowLock`]). A BTF map: the verifier finds the spin lock in
/// the value's BTF.
#[btf_map]
static FLOW_LOCK: btf_maps::Array<FlowLock, { FLOW_LOCKS as usize }> = btf_maps::Array::new();

/// Where a new flow's state is built before it is inserted (too large for the stack).
#[map]
static NEW_FLOW: PerCpuArray<FlowState> = PerCpuArray::with_max_entries(1, 0);

/// RTT histograms: (slot * RTT_KINDS + kind) * RTT_BUCKETS + bucket. One array for all
/// CPUs, updated with atomic adds (samples are rare next to packets), that user space
/// maps into its memory: reading every bucket of every slot costs no syscall.
#[map]
static RTT: Array<u64> = Array::with_max_entries(MAX_SLOTS * RTT_KINDS * RTT_BUCKETS, BPF_F_MMAPABLE);

/// The segment being analysed and what its analysis found, per CPU: how the analysis
/// entry and its global functions share them.
struct Scratch {
    segment: Segment,
    findings: Findings,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Finds (or starts) the flow of the segment in the scratch and runs the shared analysis
/// on its state, in place, under the flow's lock; returns the packet's time, made later
/// than the flow's last one if another CPU analysed a packet of it in between. A global
/// function of its own, so the verifier checks its many branches once, apart from its
/// caller's.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ringcap_tcp_flow(now: u64) -> u64 {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return now };
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    let scratch = unsafe { &mut *scratch };
    scratch.findings = Findings::default();
    let segment = &scratch.segment;
    let state = match FLOWS.get_ptr_mut(segment.key) {
        Some(state) => state,
        None => {
            let Some(fresh) = NEW_FLOW.get_ptr_mut(0) else { return now };
            // SAFETY: per-CPU scratch value, only this CPU uses it while the program runs.
            let fresh = unsafe { &mut *fresh };
            fresh.last_ns = 0;
            tcp::start_flow(fresh, segment, now);
            // NOEXIST: a flow another CPU inserted meanwhile is joined, never replaced.
            match FLOWS.insert(segment.key, fresh, u64::from(BPF_NOEXIST)) {
                Ok(()) => {
                    scratch.findings.count(Counter::TcpFlowsInserted);
                    if segment.flags & tcp::SYN == 0 {
                        scratch.findings.count(Counter::TcpFlowsMidStream);
                    }
                }
                Err(EEXIST) => {}
                Err(_) => {
                    scratch.findings.count(Counter::TcpFlowInsertFailed);
                    return now;
                }
            }
            let Some(state) = FLOWS.get_ptr_mut(segment.key) else { return now };
            state
        }
    };
    let Some(lock) = FLOW_LOCK.get_ptr_mut(segment.key.lock_index()) else { return now };
    // SAFETY: live map values; nothing between lock and unlock calls a helper or returns.
    unsafe {
        let lock = core::ptr::addr_of_mut!((*lock).lock).cast();
        bpf_spin_lock(lock);
        let state = &mut *state;
        let now = if now > state.last_ns { now } else { state.last_ns + 1 };
        state.last_ns = now;
        tcp::analyse(state, segment, now, &mut scratch.findings);
        bpf_spin_unlock(lock);
        now
    }
}

/// `-EEXIST` from a map update.
const EEXIST: i32 = -17;

/// Collects what the analysis of one segment found; [`Findings::flush`] reports it. The
/// analysis itself only sets bits and fields: with a map update inside each of its
/// branches, the verifier's paths multiplied past its budget.
#[derive(Default)]
struct Findings {
    /// Bit `c` set: counter `c` (< 64) is to be incremented.
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
        while bit < Counter::COUNT {
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
    if let Some(bucket) = RTT.get_ptr_mut(index) {
        // SAFETY: a live map value shared by all CPUs, updated atomically (BPF_ATOMIC add;
        // the BPF target's core has no AtomicU64::fetch_add).
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                bucket, 1,
            )
        };
    }
}

/// The first bytes of the packet whose options are scanned, per CPU (too large for the stack).
#[map]
static WINDOW: PerCpuArray<[u8; PACKET_WINDOW as usize]> = PerCpuArray::with_max_entries(1, 0);

/// The copied window of a packet, as the TCP option scan reads it.
struct Window {
    bytes: *const [u8; PACKET_WINDOW as usize],
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
fn window(copied: u32, wire_len: u32) -> Option<impl PacketView> {
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
fn copy_window<P: PacketBytes>(packet: &P, wire_len: u32) -> Option<u32> {
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

/// Analyses the packet seen at `now`, `wire_len` bytes long on the wire; returns the time
/// to record it with (see [`ringcap_tcp_flow`]). The headers are read where they lie;
/// only options other than Linux's usual NOP NOP TIMESTAMPS (a SYN's, SACK blocks) are
/// read from a copy of the first bytes, by a scan of their own.
#[inline(always)]
pub fn analyse<P: PacketBytes>(packet: &P, wire_len: u32, now: u64) -> u64 {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return now };
    let (data, end) = packet.direct();
    let direct = Direct { data, end, wire_len };
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    let segment = unsafe { &mut (*scratch).segment };
    if !tcp::parse_into(&direct, segment) {
        return now;
    }
    if !tcp::common_options(&direct, segment) {
        let Some(copied) = copy_window(packet, wire_len) else { return now };
        ringcap_tcp_options(copied);
    }
    ringcap_tcp_segment(now)
}

/// Counts the flags of the segment in the scratch, runs the flow analysis and reports
/// what it found. A global function with a scalar argument: the verifier checks it once,
/// on its own, instead of once for every path of each program that calls it.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ringcap_tcp_segment(now: u64) -> u64 {
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
    if scratch.segment.window == 0 && flags & (tcp::SYN | tcp::FIN | tcp::RST) == 0 {
        noted |= 1 << Counter::TcpZeroWindow as u32;
    }
    let stamp = ringcap_tcp_flow(now);
    scratch.findings.counters |= noted;
    scratch.findings.flush();
    stamp
}

//! Which packets are recorded: the native filter (spliced in at load time), then
//! sampling and the rate limit, configured through a map so user space changes them
//! without reloading anything.
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    helpers::{bpf_get_prandom_u32, bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, PerCpuArray},
    Global,
};
use capture_common::{
    cut::{self, Cut},
    flow::{flow_hash, ip_payload, TCP},
    CaptureConfig, Counter, InFlight, MAX_CPUS,
};

use crate::direct::Direct;
use crate::packet::{count, enter_slot, PacketBytes};

/// Non-zero when the loader spliced a filter into `filter::packet_filter`. A read-only
/// global: the verifier knows its value and removes the call when there is no filter.
#[unsafe(no_mangle)]
static FILTER_ACTIVE: Global<u32> = Global::new(0);

/// Settings, entry 0.
#[map]
static CONFIG: Array<CaptureConfig> = Array::with_max_entries(1, 0);

/// The settings user space installed.
#[inline(always)]
pub fn config() -> Option<&'static CaptureConfig> {
    CONFIG.get(0)
}

/// A packet to record: its time, and its cut (see `capture_common::cut`).
pub struct Selected {
    pub stamp: u64,
    pub cut: Cut,
}

/// Token bucket per CPU: `[nano-tokens, last refill time]`.
#[map]
static BUCKET: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// The kernel's monotonic clock, the time of every record.
/// Per CPU, the time stamp of the packet its program is working on (see [`InFlight`]).
#[map]
static IN_FLIGHT: Array<InFlight> = Array::with_max_entries(MAX_CPUS, BPF_F_MMAPABLE);

#[inline(always)]
fn in_flight() -> Option<*mut u64> {
    // SAFETY: helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    IN_FLIGHT.get_ptr_mut(cpu).map(|entry| entry.cast::<u64>())
}

/// Reads the clock for a packet's time stamp, telling the reader first that this CPU is
/// about to, then which time it read: a record this CPU adds to its ring from now on is
/// stamped no earlier (the TCP analysis only moves stamps later).
#[inline(always)]
pub(crate) fn clock() -> u64 {
    let entry = in_flight();
    if let Some(entry) = entry {
        // SAFETY: this CPU's entry of a live array; the reader only reads it.
        unsafe { core::ptr::write_volatile(entry, InFlight::READING_CLOCK) };
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(entry) = entry {
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(entry, now) };
    }
    now
}

/// The program is done with its packet (its record, if any, is in the ring).
#[inline(always)]
pub fn leave() {
    if let Some(entry) = in_flight() {
        // SAFETY: as in `clock`.
        unsafe { core::ptr::write_volatile(entry, InFlight::IDLE) };
    }
}

/// Decides whether a packet is recorded, with which time and how cut: the time is read
/// when the TCP analysis or cut needs it (which may move it later, see
/// `tcp::ringcap_tcp_flow`), else only once the packet is kept (reading the clock costs
/// tens of ns in a VM); `Err` names the counter of a packet left out. A TCP segment's cut
/// is decided with its analysis (every segment moves its flow's state); a UDP
/// datagram's only once it is selected.
#[inline(always)]
pub fn select<P: PacketBytes>(packet: &P, wire_len: u32, may_cut: bool) -> Result<Selected, Counter> {
    let Some(config) = config() else { return Ok(Selected { stamp: clock(), cut: Cut::default() }) };
    let cutting = may_cut && cut::enabled(config);
    // (the stamp, if the clock was read; the TCP segment's cut, if it is one)
    let mut early = (None, None);
    if config.tcp_analysis != 0 || cutting {
        let now = clock();
        early = match crate::tcp::tcp_segment(packet, wire_len, now, config) {
            Some((stamp, cut)) => (Some(stamp), Some(cut)),
            None => (Some(now), None),
        };
    }
    if config.l7_analysis != 0 {
        let (data, end) = packet.direct();
        let mut now = observe_l7(data, end, wire_len, config.dns_port, early.0.unwrap_or(0));
        if now == READ_PAYLOAD {
            now = match crate::tcp::copy_window(packet, wire_len) {
                Some(copied) => {
                    crate::payload::ringcap_tcp_payload(copied, config.dns_port, early.0.unwrap_or(0))
                }
                None => 0,
            };
        }
        if now != 0 {
            early.0 = Some(now);
        }
    }
    if FILTER_ACTIVE.load() != 0 {
        let (data, data_end) = packet.direct();
        // The spliced filter reads only `data..data_end`, checking every load against
        // `data_end` (and the verifier checks that it does).
        if crate::filter::packet_filter(data, data_end, u64::from(wire_len)) == 0 {
            return Err(Counter::Filtered);
        }
    }
    // SAFETY: helper without arguments.
    if config.sample_every > 1 && !unsafe { bpf_get_prandom_u32() }.is_multiple_of(config.sample_every) {
        return Err(Counter::SampledOut);
    }
    if config.flow_sample_every > 1 {
        let (data, end) = packet.direct();
        if !flow_hash(&Direct { data, end, wire_len }).unwrap_or(0).is_multiple_of(config.flow_sample_every) {
            return Err(Counter::SampledOut);
        }
    }
    let (stamp, tcp_cut) = early;
    let stamp = stamp.unwrap_or_else(clock);
    if config.max_pps_per_cpu > 0 && !take_token(config.max_pps_per_cpu, stamp) {
        return Err(Counter::RateLimited);
    }
    let cut = match tcp_cut {
        Some(cut) => cut,
        None if cutting => crate::tcp::udp_cut(packet, wire_len).unwrap_or_default(),
        None => Cut::default(),
    };
    Ok(Selected { stamp, cut })
}

/// [`observe_l7`]'s answer for a TCP segment to copy (no clock reads it).
const READ_PAYLOAD: u64 = u64::MAX;

/// The health of ICMP and DNS over UDP on the packet `data..end`, seen at `now` (0: not
/// read yet); returns its time if it was read, or [`READ_PAYLOAD`] for a TCP segment that
/// `crate::payload` reads from a copy. A BPF subprogram of its own:
/// inlined, its parsing moved LLVM's register choices in the rest of `select` into forms
/// the verifier refuses (a bitwise AND on a packet pointer, in the AF_XDP program).
#[inline(never)]
fn observe_l7(data: usize, end: usize, wire_len: u32, dns_port: u32, now: u64) -> u64 {
    let packet = Direct { data, end, wire_len };
    let Some(ip) = ip_payload(&packet) else { return now };
    match ip.protocol {
        1 | 58 => {
            crate::icmp::observe(&packet, &ip);
            now
        }
        17 => crate::dns::observe(&packet, &ip, dns_port, now),
        TCP if crate::payload::worth_reading(&packet, &ip, dns_port) => READ_PAYLOAD,
        _ => now,
    }
}

/// One token of a per-CPU bucket refilled at `rate` per second, holding 100 ms of tokens.
#[inline(always)]
fn take_token(rate: u64, now: u64) -> bool {
    const TOKEN: u64 = 1_000_000_000;
    let Some(bucket) = BUCKET.get_ptr_mut(0) else { return true };
    // SAFETY: per-CPU value, only this CPU touches it while the program runs.
    let bucket = unsafe { &mut *bucket };
    let elapsed = now.saturating_sub(bucket[1]).min(TOKEN);
    let capacity = (rate * TOKEN / 10).max(TOKEN);
    bucket[0] = (bucket[0] + elapsed * rate).min(capacity);
    bucket[1] = now;
    if bucket[0] >= TOKEN {
        bucket[0] -= TOKEN;
        true
    } else {
        false
    }
}

/// Counts the packet as seen and decides whether it is recorded; returns its time and
/// cut, or counts a packet left out by the reason. `egress`: the packet is leaving (its
/// counts' slot); `may_cut`: the caller stores what the per-flow cut decides (the
/// AF_XDP path leaves the cut to its readers, see `capture-daemon/src/capture/cut.rs`).
#[inline(always)]
pub fn selected<P: PacketBytes>(packet: &P, wire_len: u32, egress: bool, may_cut: bool) -> Option<Selected> {
    enter_slot(packet.ifindex(), egress);
    count(Counter::Seen);
    match select(packet, wire_len, may_cut) {
        Ok(selected) => Some(selected),
        Err(left_out) => {
            count(left_out);
            None
        }
    }
}

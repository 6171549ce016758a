//! TCP health for every packet, selected or not: flag counts, three-way handshakes and
//! their RTT split at the capture point (SYN to SYN-ACK is the server side, SYN-ACK to
//! the handshake's ACK the client side), in per-CPU counters and log-linear histograms.
use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use capture_common::{
    filter::PacketView,
    tcp::{self, FlowKey, RTT_BUCKETS, RTT_KINDS},
    Counter,
};

use crate::record::count_by;

/// Handshake state of a flow: [first SYN time, first SYN-ACK time, flags].
#[map]
static FLOWS: LruHashMap<FlowKey, [u64; 3]> = LruHashMap::with_max_entries(65536, 0);

/// RTT histograms: kind * RTT_BUCKETS + bucket.
#[map]
static RTT: PerCpuArray<u64> = PerCpuArray::with_max_entries(RTT_KINDS * RTT_BUCKETS, 0);

const SAW_SYN: u64 = 1;
const SAW_SYN_ACK: u64 = 2;
const ESTABLISHED: u64 = 4;
/// The SYN went from the key's lower endpoint.
const SYN_FROM_LO: u64 = 8;

#[inline(always)]
fn record_rtt(kind: u32, counter: Counter, ns: u64) {
    count_by(counter, ns);
    let index = (kind * RTT_BUCKETS + tcp::rtt_bucket(ns)) & (RTT_KINDS * RTT_BUCKETS - 1);
    if let Some(bucket) = RTT.get_ptr_mut(index) {
        // SAFETY: per-CPU value, only this CPU writes it while the program runs.
        unsafe { *bucket += 1 };
    }
}

/// Analyses the packet in `window` seen at `now` (the record's own timestamp).
#[inline(always)]
pub fn analyse<P: PacketView>(window: &P, now: u64) {
    let Some(segment) = tcp::parse(window) else { return };
    let flags = segment.flags;
    let syn = flags & tcp::SYN != 0;
    let ack = flags & tcp::ACK != 0;
    for (bit, counter) in [
        (tcp::FIN, Counter::TcpFin),
        (tcp::RST, Counter::TcpRst),
        (tcp::ECE, Counter::TcpEce),
        (tcp::CWR, Counter::TcpCwr),
    ] {
        if flags & bit != 0 {
            count_by(counter, 1);
        }
    }
    if segment.window == 0 && flags & (tcp::SYN | tcp::FIN | tcp::RST) == 0 {
        count_by(Counter::TcpZeroWindow, 1);
    }
    let from_lo = if segment.from_lo { SYN_FROM_LO } else { 0 };
    if syn && !ack {
        count_by(Counter::TcpSyn, 1);
        // The first SYN times the handshake; a retransmitted one does not (Karn).
        // SAFETY: the value is copied out at once.
        let fresh = unsafe { FLOWS.get(segment.key) }.is_none_or(|state| state[2] & SAW_SYN_ACK != 0);
        if fresh && FLOWS.insert(segment.key, [now, 0, SAW_SYN | from_lo], 0).is_err() {
            count_by(Counter::TcpFlowInsertFailed, 1);
        }
        return;
    }
    let Some(state) = FLOWS.get_ptr_mut(segment.key) else { return };
    // SAFETY: a live map value; a concurrent update of one flow races benignly.
    let state = unsafe { &mut *state };
    let syn_was_from_lo = state[2] & SYN_FROM_LO != 0;
    if syn && ack {
        count_by(Counter::TcpSynAck, 1);
        if state[2] & (SAW_SYN | SAW_SYN_ACK) == SAW_SYN && syn_was_from_lo != segment.from_lo {
            record_rtt(0, Counter::TcpRttServerNs, now.saturating_sub(state[0]));
            state[1] = now;
            state[2] |= SAW_SYN_ACK;
        }
    } else if ack
        && state[2] & (SAW_SYN_ACK | ESTABLISHED) == SAW_SYN_ACK
        && syn_was_from_lo == segment.from_lo
    {
        record_rtt(1, Counter::TcpRttClientNs, now.saturating_sub(state[1]));
        count_by(Counter::TcpHandshakes, 1);
        state[2] |= ESTABLISHED;
    }
}

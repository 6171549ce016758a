//! DNS health on every packet, selected or not (`capture_common::dns`): queries,
//! responses by rcode and truncation, and each query's response time, matched by
//! conversation and ID in a table of pending queries.
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use capture_common::{
    dns::{self, Pending, Transaction, PENDING_QUERIES},
    flow::IpPayload,
    tcp::{rtt_bucket, RTT_BUCKETS},
    Counter, MAX_SLOTS,
};

use crate::direct::Direct;
use crate::packet::{count, count_by, current_slot};

/// The transaction of the message at hand, per CPU (too large for the stack).
#[map]
static DNS_SCRATCH: PerCpuArray<Transaction> = PerCpuArray::with_max_entries(1, 0);

/// Queries waiting for their response.
#[map]
static DNS_PENDING: LruHashMap<Transaction, Pending> = LruHashMap::with_max_entries(PENDING_QUERIES, 0);

/// Response-time histograms: slot * RTT_BUCKETS + bucket, updated atomically, mapped by
/// user space.
#[map]
static DNS_TIMES: Array<u64> = Array::with_max_entries(MAX_SLOTS * RTT_BUCKETS, BPF_F_MMAPABLE);

/// Counts the packet if it is a DNS query or response over UDP; `now` is the packet's
/// time, 0 if not read yet, when it is read here (a response's time must be the one its
/// record gets); returns the time read, 0 if none.
#[inline(always)]
pub fn observe(packet: &Direct, ip: &IpPayload, other_port: u32, now: u64) -> u64 {
    let Some(transaction) = DNS_SCRATCH.get_ptr_mut(0) else { return now };
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    let Some(message) = dns::parse_into(packet, ip, other_port, unsafe { &mut *transaction }) else {
        return now;
    };
    let now = if now == 0 { crate::select::clock() } else { now };
    let rcode = if message.response { u32::from(message.rcode) } else { NOT_A_RESPONSE };
    ringcap_dns(rcode, u32::from(message.truncated), now);
    now
}

/// [`ringcap_dns`]'s `rcode` of a query.
const NOT_A_RESPONSE: u32 = u32::MAX;

/// Counts one query (`rcode` [`NOT_A_RESPONSE`]) or response of the transaction in the
/// scratch, seen at `now`, and matches them. A global function: the verifier checks the
/// counting once, apart from the programs' paths.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ringcap_dns(rcode: u32, truncated: u32, now: u64) -> u32 {
    let counter = match rcode {
        NOT_A_RESPONSE => Counter::DnsQueries,
        0 => Counter::DnsNoError,
        2 => Counter::DnsServFail,
        3 => Counter::DnsNxDomain,
        5 => Counter::DnsRefused,
        _ => Counter::DnsOtherRcode,
    };
    count(counter);
    if truncated != 0 {
        count(Counter::DnsTruncated);
    }
    let Some(transaction) = DNS_SCRATCH.get_ptr(0) else { return 0 };
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    let transaction = unsafe { &*transaction };
    if rcode == NOT_A_RESPONSE {
        match DNS_PENDING.get_ptr_mut(transaction) {
            Some(pending) => {
                // SAFETY: a live map value; a lost increment under a race only
                // undercounts what user space reports of it.
                unsafe { (*pending).retransmissions += 1 };
                count(Counter::DnsRetransmissions);
            }
            None => {
                let pending = Pending { query_ns: now, slot: current_slot(), retransmissions: 0 };
                let _ = DNS_PENDING.insert(transaction, pending, 0);
            }
        }
        return 0;
    }
    // SAFETY: a live map value, read before it is removed.
    let Some(query_ns) = DNS_PENDING.get_ptr(transaction).map(|pending| unsafe { (*pending).query_ns })
    else {
        count(Counter::DnsUnmatched);
        return 0;
    };
    let _ = DNS_PENDING.remove(transaction);
    let ns = now.saturating_sub(query_ns);
    count(Counter::DnsAnswered);
    count_by(Counter::DnsResponseTimeNs, ns);
    let index = (current_slot() * RTT_BUCKETS + rtt_bucket(ns)) & (MAX_SLOTS * RTT_BUCKETS - 1);
    if let Some(bucket) = DNS_TIMES.get_ptr_mut(index) {
        // SAFETY: a live map value shared by all CPUs, updated atomically.
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                bucket, 1,
            )
        };
    }
    0
}

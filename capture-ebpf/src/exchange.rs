//! The table of requests waiting for their answer (`capture_common::exchange`), shared
//! by DNS, TLS and HTTP: a request starts an exchange, its answer ends it with a time
//! sample in the kind's histogram; user space sweeps out what waited too long.
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use capture_common::{
    exchange::{times_index, Exchange, Pending, PENDING_EXCHANGES, TIMES},
    tcp::rtt_bucket,
};

use crate::packet::{add_one, current_slot};

/// The exchange of the packet at hand, per CPU (too large for the stack).
#[map]
static EXCHANGE_SCRATCH: PerCpuArray<Exchange> = PerCpuArray::with_max_entries(1, 0);

/// Requests waiting for their answer.
#[map]
static EXCHANGES: LruHashMap<Exchange, Pending> = LruHashMap::with_max_entries(PENDING_EXCHANGES, 0);

/// Answer-time histograms by kind and slot, updated atomically, mapped by user space.
#[map]
static EXCHANGE_TIMES: Array<u64> = Array::with_max_entries(TIMES, BPF_F_MMAPABLE);

/// This CPU's exchange at hand.
#[inline(always)]
pub fn scratch() -> Option<&'static mut Exchange> {
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    EXCHANGE_SCRATCH.get_ptr_mut(0).map(|exchange| unsafe { &mut *exchange })
}

/// Starts `exchange` at `now`, unless it waits already: then the request is a
/// retransmission, counted on the pending exchange; returns whether it started.
#[inline(always)]
pub fn start(exchange: &Exchange, now: u64) -> bool {
    match EXCHANGES.get_ptr_mut(exchange) {
        Some(pending) => {
            // SAFETY: a live map value; a lost increment under a race only undercounts
            // what user space reports of it.
            unsafe { (*pending).retransmissions += 1 };
            false
        }
        None => {
            let pending = Pending { started_ns: now, slot: current_slot(), retransmissions: 0 };
            let _ = EXCHANGES.insert(exchange, pending, 0);
            true
        }
    }
}

/// Ends `exchange` with its answer at `now`: the time since its request goes into the
/// kind's histogram of the current slot; returns it, `None` if no request waited.
#[inline(always)]
pub fn answer(exchange: &Exchange, now: u64) -> Option<u64> {
    // SAFETY: a live map value, read before it is removed.
    let started = EXCHANGES.get_ptr(exchange).map(|pending| unsafe { (*pending).started_ns })?;
    let _ = EXCHANGES.remove(exchange);
    let ns = now.saturating_sub(started);
    add_one(&EXCHANGE_TIMES, times_index(u32::from(exchange.kind), current_slot(), rtt_bucket(ns)));
    Some(ns)
}

/// Ends `exchange` without an answer; returns whether it waited.
#[inline(always)]
pub fn abandon(exchange: &Exchange) -> bool {
    EXCHANGES.remove(exchange).is_ok()
}

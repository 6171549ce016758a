//! The flow table the TCP analysis and the per-flow cut share: one LRU hash of flows
//! (both directions share a key), each with the lock that serialises the work on it.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use capture_common::tcp::{FlowKey, FlowState};

/// State by flow; sized by the loader.
#[map]
static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(65536, 0);

/// Where a new flow's state is built before it is inserted (too large for the stack).
#[map]
static NEW_FLOW: PerCpuArray<FlowState> = PerCpuArray::with_max_entries(1, 0);

/// A flow's state in the table.
pub enum Found {
    /// It was there already (or another CPU inserted it meanwhile).
    Existing(*mut FlowState),
    /// This packet inserted it.
    Inserted(*mut FlowState),
    /// The table refused the insert.
    InsertFailed,
}

/// Finds the flow of `key`, or inserts one that `start` sets up (in place: the kernel's
/// stack has no room for a state).
#[inline(always)]
pub fn find_or_insert(key: &FlowKey, start: impl FnOnce(&mut FlowState)) -> Found {
    if let Some(state) = FLOWS.get_ptr_mut(key) {
        return Found::Existing(state);
    }
    let Some(fresh) = NEW_FLOW.get_ptr_mut(0) else { return Found::InsertFailed };
    // SAFETY: per-CPU scratch value, only this CPU uses it while the program runs.
    let fresh = unsafe { &mut *fresh };
    start(fresh);
    // NOEXIST: a flow another CPU inserted meanwhile is joined, never replaced.
    let inserted = match FLOWS.insert(key, fresh, u64::from(BPF_NOEXIST)) {
        Ok(()) => true,
        Err(EEXIST) => false,
        Err(_) => return Found::InsertFailed,
    };
    match (FLOWS.get_ptr_mut(key), inserted) {
        (Some(state), true) => Found::Inserted(state),
        (Some(state), false) => Found::Existing(state),
        (None, _) => Found::InsertFailed,
    }
}

/// `-EEXIST` from a map update.
const EEXIST: i32 = -17;

/// Attempts a flow's lock ([`FlowState::lock`]) gets before its packet is given up
/// (counted): the holder works on a packet for well under a microsecond and cannot be
/// preempted, so the bound is never reached in practice.
const LOCK_TRIES: u32 = 1 << 12;

/// Takes the lock of the flow at `state`; false when another CPU held it past the bound.
/// An atomic compare-and-exchange (a full barrier) on the flow's own word: about the cost
/// of one locked instruction, where `bpf_spin_lock` and its unlock were two helper calls
/// with interrupts masked and a separate table of locks.
#[inline(always)]
pub fn lock(state: *mut FlowState) -> bool {
    // SAFETY: `state` is a live map value; the word is only ever used atomically.
    let word = unsafe { core::ptr::addr_of_mut!((*state).lock) };
    let mut tries = 0;
    while tries < LOCK_TRIES {
        let previous: u64;
        // SAFETY: BPF_ATOMIC | BPF_CMPXCHG on a map value the verifier checks: r0 holds
        // the value expected (0, free) and receives the value found.
        unsafe {
            core::arch::asm!(
                "r0 = cmpxchg_64(r1 + 0, r0, r2)",
                inlateout("r0") 0u64 => previous,
                in("r1") word,
                in("r2") 1u64,
            );
        }
        if previous == 0 {
            return true;
        }
        tries += 1;
    }
    false
}

/// Releases the lock [`lock`] took: an atomic exchange, a full barrier, so every change
/// to the state is seen by the next CPU to take it.
#[inline(always)]
pub fn unlock(state: *mut FlowState) {
    // SAFETY: as in `lock`; BPF_ATOMIC | BPF_XCHG stores 0 and returns the old value.
    unsafe {
        let word = core::ptr::addr_of_mut!((*state).lock);
        core::arch::asm!(
            "r2 = xchg_64(r1 + 0, r2)",
            in("r1") word,
            inlateout("r2") 0u64 => _,
        );
    }
}

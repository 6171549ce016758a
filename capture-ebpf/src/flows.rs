//! The flow table the TCP analysis and the per-flow cut share: one LRU hash of flows
//! (both directions share a key), and the locks that serialise the work on a flow.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    btf_maps,
    macros::{btf_map, map},
    maps::{LruHashMap, PerCpuArray},
};
use capture_common::tcp::{FlowKey, FlowLock, FlowState, FLOW_LOCKS};

/// State by flow; sized by the loader.
#[map]
static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(65536, 0);

/// The flows' locks (see [`FlowLock`]). A BTF map: the verifier finds the spin lock in
/// the value's BTF.
#[btf_map]
static FLOW_LOCK: btf_maps::Array<FlowLock, { FLOW_LOCKS as usize }> = btf_maps::Array::new();

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

/// The lock of the flow of `key`: taken around every change to its state.
#[inline(always)]
pub fn lock_of(key: &FlowKey) -> Option<*mut aya_ebpf::bindings::bpf_spin_lock> {
    let lock = FLOW_LOCK.get_ptr_mut(key.lock_index())?;
    // SAFETY: a live map value; only the address of its field is taken.
    Some(unsafe { core::ptr::addr_of_mut!((*lock).lock).cast() })
}

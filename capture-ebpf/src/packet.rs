//! What every program shares about the packet at hand: how to read it ([`PacketBytes`]),
//! its slot (interface and direction, where its counts and RTT samples land) and the
//! per-CPU counters.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use capture_common::{Counter, MAX_INTERFACES, MAX_SLOTS};

/// What a capture point must provide to have its packets recorded.
pub trait PacketBytes {
    /// Length of the packet on the wire.
    fn len(&self) -> u32;
    /// Interface the packet was seen on.
    fn ifindex(&self) -> u32;
    /// Wire packets this one stands for: a GSO packet's segment count, else 1.
    fn wire_segments(&self) -> u32;
    /// The part of the packet the program may read directly (`data..data_end`), what the
    /// native filter reads.
    fn direct(&self) -> (usize, usize);
    /// Copies the first `len` bytes of the packet to `dst`; false on failure.
    ///
    /// # Safety
    /// `dst` must be valid for `len` bytes.
    unsafe fn load(&self, dst: *mut u8, len: u32) -> bool;
}

/// Per-CPU counters: slot * COUNT + [`Counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_SLOTS * Counter::COUNT, 0);

/// Interface index (`-i` order) by ifindex, filled by the loader.
#[map]
static INTERFACES: HashMap<u32, u32> = HashMap::with_max_entries(MAX_INTERFACES, 0);

/// What this CPU knows of the packet it is working on: its slot, set when the packet
/// comes in (every count and RTT sample of the packet lands in its interface's and
/// direction's slot), and the last interface it looked up, with its index: a CPU mostly
/// serves one interface, so the hash lookup is mostly skipped.
#[repr(C)]
#[derive(Clone, Copy)]
struct CpuSlot {
    slot: u32,
    /// ifindex + 1 of the cached lookup (0: none yet).
    cached_ifindex: u32,
    cached_interface: u32,
}

#[map]
static SLOT: PerCpuArray<CpuSlot> = PerCpuArray::with_max_entries(1, 0);

/// Sets the slot of the packet on `ifindex` going the way `egress` says.
#[inline(always)]
pub fn enter_slot(ifindex: u32, egress: bool) {
    let Some(cpu) = SLOT.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    let cpu = unsafe { &mut *cpu };
    if cpu.cached_ifindex != ifindex.wrapping_add(1) {
        // SAFETY: the value is a plain u32 the loader wrote before attaching (and never
        // changes while attached, so the cache stays right).
        cpu.cached_interface = unsafe { INTERFACES.get(ifindex) }.copied().unwrap_or(MAX_INTERFACES);
        cpu.cached_ifindex = ifindex.wrapping_add(1);
    }
    cpu.slot = (cpu.cached_interface.min(MAX_INTERFACES) * 2 + u32::from(egress)) & (MAX_SLOTS - 1);
}

/// The slot of the packet this CPU is working on.
#[inline(always)]
pub fn current_slot() -> u32 {
    SLOT.get(0).map_or(0, |cpu| cpu.slot) & (MAX_SLOTS - 1)
}

#[inline(always)]
pub fn count(counter: Counter) {
    count_by(counter, 1);
}

/// Adds to a per-CPU counter.
#[inline(always)]
pub fn count_by(counter: Counter, by: u64) {
    count_raw(counter as u32, by);
}

/// Adds to the per-CPU counter of index `counter` in the current packet's slot.
#[inline(always)]
pub fn count_raw(counter: u32, by: u64) {
    if counter >= Counter::COUNT {
        return;
    }
    if let Some(value) = COUNTERS.get_ptr_mut(current_slot() * Counter::COUNT + counter) {
        // SAFETY: per-CPU value, only this CPU writes it while the program runs.
        unsafe { *value += by };
    }
}

/// Adds one to the `index`th value of an array shared by all CPUs, atomically (BPF_ATOMIC
/// add; the BPF target's core has no AtomicU64::fetch_add).
#[inline(always)]
pub fn add_one(array: &Array<u64>, index: u32) {
    if let Some(value) = array.get_ptr_mut(index) {
        // SAFETY: a live map value; every writer adds atomically.
        unsafe { atomic_add(value) };
    }
}

/// Adds one to a map value atomically.
///
/// # Safety
/// `value` must be a live map value.
#[inline(always)]
pub unsafe fn atomic_add(value: *mut u64) {
    // SAFETY: the caller's.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(value, 1)
    };
}

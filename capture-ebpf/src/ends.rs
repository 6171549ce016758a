//! The bounded tables of ends (DNS servers, TCP destinations): the first ends seen have
//! an entry each, the rest share `Endpoint::OTHER`'s, which user space puts in at load.
//! Keys and fresh values come from map values rather than the stack: the programs' call
//! chains are near the verifier's 512 bytes.
use aya_ebpf::{bindings::BPF_NOEXIST, macros::map, maps::HashMap, maps::PerCpuArray};
use capture_common::flow::Endpoint;

/// This CPU's key at hand (0), and the shared entry's (1: all zero, never written).
#[map]
static END_KEYS: PerCpuArray<Endpoint> = PerCpuArray::with_max_entries(2, 0);

/// This CPU's key, to fill in.
#[inline(always)]
pub fn key() -> Option<&'static mut Endpoint> {
    // SAFETY: per-CPU value, only this CPU uses it while the program runs.
    END_KEYS.get_ptr_mut(0).map(|key| unsafe { &mut *key })
}

/// The entry of the key [`key`] holds in `table`, made from `fresh` if it is new and
/// there is room, else the shared entry.
#[inline(always)]
pub fn entry<V>(table: &HashMap<Endpoint, V>, fresh: &V) -> Option<*mut V> {
    // SAFETY: per-CPU values, only this CPU uses them while the program runs.
    let (key, other) = unsafe { (&*END_KEYS.get_ptr(0)?, &*END_KEYS.get_ptr(1)?) };
    if table.get_ptr_mut(key).is_none() {
        // NOEXIST: an entry another CPU made meanwhile is added to, never reset.
        let _ = table.insert(key, fresh, u64::from(BPF_NOEXIST));
    }
    table.get_ptr_mut(key).or_else(|| table.get_ptr_mut(other))
}

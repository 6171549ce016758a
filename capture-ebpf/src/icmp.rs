//! ICMP health on every packet, selected or not (`capture_common::icmp`): messages by
//! family, type and code, and path-MTU messages by the MTU they announce.
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_NOEXIST},
    macros::map,
    maps::{Array, HashMap},
};
use capture_common::{
    flow::IpPayload,
    icmp::{self, MtuKey, COUNTS_PER_SLOT, MTU_KEYS},
    Counter, MAX_SLOTS,
};

use crate::direct::Direct;
use crate::packet::{add_one, atomic_add, count, current_slot};

/// Message counts: slot * COUNTS_PER_SLOT + message index. One array for all CPUs,
/// updated with atomic adds (ICMP is rare next to other packets), mapped by user space.
#[map]
static ICMP: Array<u64> = Array::with_max_entries(MAX_SLOTS * COUNTS_PER_SLOT, BPF_F_MMAPABLE);

/// Path-MTU messages by slot, family and announced MTU.
#[map]
static ICMP_MTU: HashMap<MtuKey, u64> = HashMap::with_max_entries(MTU_KEYS, 0);

/// Counts the packet if it is an ICMP or ICMPv6 message.
#[inline(always)]
pub fn observe(packet: &Direct, ip: &IpPayload) {
    let Some(message) = icmp::parse_payload(packet, ip) else { return };
    let path_mtu = match message.path_mtu {
        None => NOT_PATH_MTU,
        Some(None) => MTU_CUT_OFF,
        Some(Some(mtu)) => u64::from(mtu),
    };
    ringcap_icmp(message.index(), message.family, path_mtu);
}

/// [`ringcap_icmp`]'s `mtu` of a message that is no path-MTU message...
const NOT_PATH_MTU: u64 = u64::MAX;
/// ...and of one cut before the MTU it announces.
const MTU_CUT_OFF: u64 = u64::MAX - 1;

/// Adds one message at `index` of the current slot's counts; `mtu` is the announced
/// MTU of a path-MTU message, or one of the two markers above. A global function: the
/// verifier checks the map updates once, apart from the programs' paths.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ringcap_icmp(index: u32, family: u32, mtu: u64) -> u32 {
    count(Counter::IcmpMessages);
    let slot = current_slot();
    add_one(&ICMP, (slot * COUNTS_PER_SLOT + index) & (MAX_SLOTS * COUNTS_PER_SLOT - 1));
    if mtu == NOT_PATH_MTU {
        return 0;
    }
    count(Counter::IcmpPathMtu);
    if mtu == MTU_CUT_OFF {
        return 0;
    }
    let key = MtuKey { slot: slot as u16, family: family as u16, mtu: mtu as u32 };
    if ICMP_MTU.get_ptr_mut(key).is_none() {
        // NOEXIST: a key another CPU inserted meanwhile is added to, never reset; a full
        // table refuses, and the lookup below counts the message untracked.
        let _ = ICMP_MTU.insert(key, 0, u64::from(BPF_NOEXIST));
    }
    match ICMP_MTU.get_ptr_mut(key) {
        // SAFETY: a live map value shared by all CPUs, updated atomically.
        Some(value) => unsafe { atomic_add(value) },
        None => count(Counter::IcmpMtuUntracked),
    }
    0
}

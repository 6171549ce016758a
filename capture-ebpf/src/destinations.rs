//! TCP connection attempts by destination (address and port): the first SYN of each
//! connection (not its retransmissions), counted in a bounded table of the first
//! destinations seen, then one shared entry. Many attempts a second to one destination
//! from few sources is how ephemeral port exhaustion starts.
use aya_ebpf::{macros::map, maps::HashMap};
use capture_common::{flow::Endpoint, tcp::Segment, MAX_DESTINATIONS};

use crate::ends;
use crate::packet::atomic_add;

/// Attempts by destination: the first MAX_DESTINATIONS seen, then Endpoint::OTHER.
#[map]
static TCP_DESTINATIONS: HashMap<Endpoint, u64> = HashMap::with_max_entries(MAX_DESTINATIONS + 1, 0);

/// Counts a connection attempt, the SYN `segment`, at its destination.
#[inline(always)]
pub fn count_attempt(segment: &Segment) {
    let Some(destination) = ends::key() else { return };
    let key = &segment.key;
    let (addr, port) = if segment.from_lo { (key.hi_addr, key.hi_port) } else { (key.lo_addr, key.lo_port) };
    *destination = Endpoint { addr, port, family: key.family, _pad: 0 };
    if let Some(count) = ends::entry(&TCP_DESTINATIONS, &0) {
        // SAFETY: a live map value shared by all CPUs, added to atomically.
        unsafe { atomic_add(count) };
    }
}

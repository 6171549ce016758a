//! The programs' counters and RTT histograms, as read from their maps.
use super::*;

/// Sums over CPUs of the capture programs' counters, by slot (interface and direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelCounters {
    pub values: [[u64; Counter::COUNT as usize]; MAX_SLOTS as usize],
}

impl Default for KernelCounters {
    fn default() -> Self {
        KernelCounters { values: [[0; Counter::COUNT as usize]; MAX_SLOTS as usize] }
    }
}

impl KernelCounters {
    /// A counter, summed over slots.
    pub fn get(&self, counter: Counter) -> u64 {
        self.values.iter().map(|slot| slot[counter as usize]).sum()
    }

    /// The counters of one slot alone.
    pub fn only(&self, slot: usize) -> KernelCounters {
        let mut one = KernelCounters::default();
        if let Some(values) = self.values.get(slot) {
            one.values[slot] = *values;
        }
        one
    }

    /// The counts since `earlier` (a snapshot of the same counters).
    pub fn since(&self, earlier: &KernelCounters) -> KernelCounters {
        let mut delta = *self;
        for (slot, before) in delta.values.iter_mut().zip(earlier.values) {
            for (value, before) in slot.iter_mut().zip(before) {
                *value = value.saturating_sub(before);
            }
        }
        delta
    }

    /// Packets the kernel side lost before they reached user space.
    pub fn dropped(&self) -> u64 {
        self.get(Counter::RingFull) + self.get(Counter::CopyFailed) + self.get(Counter::XskNoSocket)
    }
}

/// The kernel's RTT histograms of one slot (or summed over slots), by kind.
pub type RttBuckets = [[u64; RTT_BUCKETS as usize]; RTT_KINDS as usize];

/// The answer-time histograms of DNS, TLS and HTTP (by `capture_common::exchange` kind),
/// of every slot.
pub type ExchangeTimes = [[[u64; RTT_BUCKETS as usize]; MAX_SLOTS as usize]; KINDS as usize];

/// Requests found without an answer after their timeout, by kind and slot.
pub type Unanswered = [[u64; MAX_SLOTS as usize]; KINDS as usize];

/// The kernel's RTT histograms of every slot.
pub type SlotRttBuckets = [RttBuckets; MAX_SLOTS as usize];

/// Every slot's histograms, empty.
pub fn empty_slot_rtt() -> Box<SlotRttBuckets> {
    Box::new([[[0u64; RTT_BUCKETS as usize]; RTT_KINDS as usize]; MAX_SLOTS as usize])
}

/// The histograms of all slots summed.
pub fn rtt_total(slots: &SlotRttBuckets) -> Box<RttBuckets> {
    let mut total = Box::new([[0u64; RTT_BUCKETS as usize]; RTT_KINDS as usize]);
    for slot in slots {
        for (kind, histogram) in total.iter_mut().zip(slot) {
            for (bucket, count) in kind.iter_mut().zip(histogram) {
                *bucket += count;
            }
        }
    }
    total
}

/// The kernel's ICMP and ICMPv6 counts (`capture_common::icmp`), the non-zero ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IcmpCounts {
    /// Messages by slot, family, type and code.
    pub messages: Vec<IcmpCount>,
    /// Path-MTU messages by slot, family and the MTU they announce.
    pub path_mtu: Vec<(MtuKey, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpCount {
    pub slot: usize,
    /// `icmp::FAMILY_IPV4` or `icmp::FAMILY_IPV6`.
    pub family: u32,
    pub kind: u8,
    pub code: u8,
    pub count: u64,
}

/// "ipv4" or "ipv6", as labels and JSON name a family.
pub fn family_name(family: u32) -> &'static str {
    if family == capture_common::icmp::FAMILY_IPV6 {
        "ipv6"
    } else {
        "ipv4"
    }
}

//! DNS health as the API, Prometheus and `ringcap stats` give it: the kernel's counts of
//! queries and of responses by rcode, response times, retransmitted and unanswered
//! queries, by interface and direction.
use capture_common::tcp::RTT_BUCKETS;
use capture_common::Counter;

use super::analysis::rtt_summary;
use crate::kernel::KernelCounters;
use crate::records::DnsHealth;

/// What the daemon knows of one slot's DNS.
pub struct Slot<'a> {
    pub kernel: &'a KernelCounters,
    pub times: Option<&'a [u64; RTT_BUCKETS as usize]>,
    pub unanswered: u64,
}

/// The response counters by the rcode label they carry.
pub const RCODES: [(Counter, &str); 5] = [
    (Counter::DnsNoError, "noerror"),
    (Counter::DnsNxDomain, "nxdomain"),
    (Counter::DnsServFail, "servfail"),
    (Counter::DnsRefused, "refused"),
    (Counter::DnsOtherRcode, "other"),
];

/// The DNS health of one slot.
pub fn health(interface: &str, direction: &str, slot: &Slot) -> DnsHealth {
    let kernel = slot.kernel;
    DnsHealth {
        interface: interface.to_string(),
        direction: direction.to_string(),
        queries: kernel.get(Counter::DnsQueries),
        responses: RCODES.iter().map(|(counter, rcode)| (rcode.to_string(), kernel.get(*counter))).collect(),
        truncated: kernel.get(Counter::DnsTruncated),
        retransmissions: kernel.get(Counter::DnsRetransmissions),
        unanswered: slot.unanswered,
        unmatched: kernel.get(Counter::DnsUnmatched),
        response_time: slot.times.map(rtt_summary).unwrap_or_default(),
    }
}

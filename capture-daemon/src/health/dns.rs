//! DNS health as the API, Prometheus and `ringcap stats` give it: the kernel's counts of
//! queries and of responses by rcode, response times, retransmitted and unanswered
//! queries, by interface and direction.
use capture_common::Counter;

use super::ExchangeSlot;
use crate::records::DnsHealth;

/// The response counters by the rcode label they carry.
pub const RCODES: [(Counter, &str); 5] = [
    (Counter::DnsNoError, "noerror"),
    (Counter::DnsNxDomain, "nxdomain"),
    (Counter::DnsServFail, "servfail"),
    (Counter::DnsRefused, "refused"),
    (Counter::DnsOtherRcode, "other"),
];

/// The DNS health of one slot.
pub fn health(interface: &str, direction: &str, slot: &ExchangeSlot) -> DnsHealth {
    let kernel = &slot.kernel;
    DnsHealth {
        interface: interface.to_string(),
        direction: direction.to_string(),
        queries: kernel.get(Counter::DnsQueries),
        responses: RCODES.iter().map(|(counter, rcode)| (rcode.to_string(), kernel.get(*counter))).collect(),
        truncated: kernel.get(Counter::DnsTruncated),
        retransmissions: kernel.get(Counter::DnsRetransmissions),
        unanswered: slot.unanswered,
        unmatched: kernel.get(Counter::DnsUnmatched),
        response_time: slot.times(),
    }
}

//! DNS health as the API, Prometheus and `ringcap stats` give it: the kernel's counts of
//! queries and of responses by rcode, response times, retransmitted and unanswered
//! queries, by interface and direction.
use capture_common::dns::{self, ServerCounts};
use capture_common::flow::Endpoint;
use capture_common::Counter;

use super::ExchangeSlot;
use crate::records::{DnsHealth, DnsServer};

/// The response counters by the rcode label they carry.
pub const RCODES: [(Counter, &str); 5] = [
    (Counter::DnsNoError, dns::RCODES[0]),
    (Counter::DnsNxDomain, dns::RCODES[1]),
    (Counter::DnsServFail, dns::RCODES[2]),
    (Counter::DnsRefused, dns::RCODES[3]),
    (Counter::DnsOtherRcode, dns::RCODES[4]),
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

/// What each DNS server was asked and answered, as the kernel counted it (the shared
/// entry last).
pub fn servers(counts: &[(Endpoint, ServerCounts)]) -> Vec<DnsServer> {
    let mut servers: Vec<DnsServer> = counts
        .iter()
        .map(|(server, counts)| DnsServer {
            server: super::flows::endpoint_label(server),
            queries: counts.queries,
            responses: dns::RCODES.iter().zip(counts.responses).map(|(r, n)| (r.to_string(), n)).collect(),
            truncated: counts.truncated,
            answered: counts.answered,
            response_time_ns_sum: counts.response_time_ns,
        })
        .collect();
    servers.sort_by_key(|s| (s.server == "other", s.server.clone()));
    servers
}

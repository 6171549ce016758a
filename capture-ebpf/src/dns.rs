//! DNS health on every packet, selected or not (`capture_common::dns`): queries, and
//! responses by rcode and truncation.
use capture_common::{dns, Counter};

use crate::direct::Direct;
use crate::packet::{count, PacketBytes};

/// Counts the packet if it is a DNS query or response over UDP.
#[inline(always)]
pub fn observe<P: PacketBytes>(packet: &P, wire_len: u32, other_port: u32) {
    let (data, end) = packet.direct();
    if let Some(message) = dns::parse(&Direct { data, end, wire_len }, other_port) {
        let rcode = if message.response { u32::from(message.rcode) } else { NOT_A_RESPONSE };
        ringcap_dns(rcode, u32::from(message.truncated));
    }
}

/// [`ringcap_dns`]'s `rcode` of a query.
const NOT_A_RESPONSE: u32 = u32::MAX;

/// Counts one query (`rcode` [`NOT_A_RESPONSE`]) or a response. A global function: the
/// verifier checks the counting once, apart from the programs' paths.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ringcap_dns(rcode: u32, truncated: u32) -> u32 {
    let counter = match rcode {
        NOT_A_RESPONSE => Counter::DnsQueries,
        0 => Counter::DnsNoError,
        2 => Counter::DnsServFail,
        3 => Counter::DnsNxDomain,
        5 => Counter::DnsRefused,
        _ => Counter::DnsOtherRcode,
    };
    count(counter);
    if truncated != 0 {
        count(Counter::DnsTruncated);
    }
    0
}

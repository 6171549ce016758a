//! DNS health on every packet, selected or not (`capture_common::dns`), over UDP and TCP: queries,
//! responses by rcode and truncation, and each query's response time, matched by
//! conversation and ID in the table of pending exchanges.
use capture_common::{
    dns,
    flow::{IpPayload, TcpPayload},
    packet::PacketView,
    Counter,
};

use crate::direct::Direct;
use crate::exchange;
use crate::packet::{count, count_by};

/// Counts the packet if it is a DNS query or response over UDP; `now` is the packet's
/// time, 0 if not read yet, when it is read here (a response's time must be the one its
/// record gets); returns the time read, 0 if none.
#[inline(always)]
pub fn observe(packet: &Direct, ip: &IpPayload, other_port: u32, now: u64) -> u64 {
    let Some(exchange) = exchange::scratch() else { return now };
    let Some(message) = dns::parse_into(packet, ip, other_port, exchange) else { return now };
    count_message(&message, now)
}

/// Counts the TCP segment if it starts a DNS message; `now` as in [`observe`].
#[inline(always)]
pub fn observe_tcp<P: PacketView>(
    packet: &P,
    ip: &IpPayload,
    segment: &TcpPayload,
    other_port: u32,
    now: u64,
) -> u64 {
    let Some(exchange) = exchange::scratch() else { return now };
    let Some(message) = dns::parse_tcp_into(packet, ip, segment, other_port, exchange) else { return now };
    count_message(&message, now)
}

/// Counts the message whose exchange is in the scratch; returns its time.
#[inline(always)]
fn count_message(message: &dns::Message, now: u64) -> u64 {
    let now = if now == 0 { crate::select::clock() } else { now };
    let rcode = if message.response { u32::from(message.rcode) } else { NOT_A_RESPONSE };
    ringcap_dns(rcode, u32::from(message.truncated), now);
    now
}

/// [`ringcap_dns`]'s `rcode` of a query.
const NOT_A_RESPONSE: u32 = u32::MAX;

/// Counts one query (`rcode` [`NOT_A_RESPONSE`]) or response of the exchange in the
/// scratch, seen at `now`, and matches them. A global function: the verifier checks the
/// counting once, apart from the programs' paths.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ringcap_dns(rcode: u32, truncated: u32, now: u64) -> u32 {
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
    let Some(exchange) = exchange::scratch() else { return 0 };
    if rcode == NOT_A_RESPONSE {
        if !exchange::start(exchange, now) {
            count(Counter::DnsRetransmissions);
        }
        return 0;
    }
    match exchange::answer(exchange, now) {
        Some(ns) => {
            count(Counter::DnsAnswered);
            count_by(Counter::DnsResponseTimeNs, ns);
        }
        None => count(Counter::DnsUnmatched),
    }
    0
}

//! HTTP/1.x on every TCP segment, selected or not (`capture_common::http`): requests,
//! responses by status class, and the time from a request to its final response,
//! matched in the table of pending exchanges (one request at a time per connection).
use capture_common::{
    exchange as common,
    flow::{IpPayload, TcpPayload},
    http::{self, Message},
    packet::PacketView,
    Counter,
};

use crate::exchange;
use crate::packet::{count, count_by};

/// [`count_message`]'s `status` of a request.
const REQUEST: u32 = 0;

/// Counts the segment if it starts an HTTP request or response; `now` as in
/// `crate::dns::observe`.
#[inline(always)]
pub fn observe<P: PacketView>(packet: &P, ip: &IpPayload, segment: &TcpPayload, now: u64) -> u64 {
    let Some(message) = http::parse(packet, segment.at, segment.end) else { return now };
    let Some(exchange) = exchange::scratch() else { return now };
    let (from_client, status) = match message {
        Message::Request => (true, REQUEST),
        Message::Response { status } => (false, u32::from(status)),
    };
    if common::fill(packet, ip, segment.ports, from_client, exchange).is_none() {
        return now;
    }
    exchange.id = 0;
    exchange.kind = common::KIND_HTTP;
    let now = if now == 0 { crate::select::clock() } else { now };
    count_message(status, now);
    now
}

/// Counts a request ([`REQUEST`]) or a response of `status` for the exchange in the
/// scratch, seen at `now`.
#[inline(always)]
fn count_message(status: u32, now: u64) {
    let Some(exchange) = exchange::scratch() else { return };
    if status == REQUEST {
        count(Counter::HttpRequests);
        exchange::start(exchange, now);
        return;
    }
    count(match status / 100 {
        1 => Counter::Http1xx,
        2 => Counter::Http2xx,
        3 => Counter::Http3xx,
        4 => Counter::Http4xx,
        5 => Counter::Http5xx,
        _ => Counter::HttpOtherStatus,
    });
    // An interim response (100 Continue) leaves the request waiting for its final one.
    if status >= 200 {
        if let Some(ns) = exchange::answer(exchange, now) {
            count(Counter::HttpAnswered);
            count_by(Counter::HttpResponseTimeNs, ns);
        }
    }
}

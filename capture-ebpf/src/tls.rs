//! TLS handshakes on every TCP segment, selected or not (`capture_common::tls`):
//! ClientHellos, ServerHellos by the version chosen, alerts in the clear by description,
//! handshakes that end before their ServerHello (in an alert, a RST or a FIN), and the
//! time from a ClientHello to its ServerHello, matched in the table of pending exchanges.
use aya_ebpf::{bindings::BPF_F_MMAPABLE, macros::map, maps::Array};
use capture_common::{
    exchange::{self as common, Exchange},
    flow::{IpPayload, TcpPayload},
    packet::PacketView,
    tls::{self, Record, ALERTS_PER_SLOT},
    Counter, MAX_SLOTS,
};

use crate::exchange;
use crate::packet::{add_one, count, count_by, current_slot};

/// Alert counts: slot * ALERTS_PER_SLOT + description, updated atomically, mapped by
/// user space.
#[map]
static TLS_ALERTS: Array<u64> = Array::with_max_entries(MAX_SLOTS * ALERTS_PER_SLOT, BPF_F_MMAPABLE);

/// [`ringcap_tls`]'s events.
const CLIENT_HELLO: u32 = 0;
const SERVER_HELLO: u32 = 1;
const ALERT: u32 = 2;
const RESET: u32 = 3;
const FIN: u32 = 4;

/// Counts the segment if it starts a TLS handshake message or an alert, or closes a
/// connection (which may end a handshake); `now` as in `crate::dns::observe`.
#[inline(always)]
pub fn observe<P: PacketView>(packet: &P, ip: &IpPayload, segment: &TcpPayload, now: u64) -> u64 {
    let (event, detail) = match tls::parse(packet, segment.at, segment.end) {
        Some(Record::ClientHello) => (CLIENT_HELLO, 0),
        Some(Record::ServerHello { version }) => (SERVER_HELLO, u32::from(version)),
        Some(Record::Alert { description }) => (ALERT, u32::from(description)),
        None if segment.flags & 0x04 != 0 => (RESET, 0),
        None if segment.flags & 0x01 != 0 => (FIN, 0),
        None => return now,
    };
    let Some(exchange) = exchange::scratch() else { return now };
    // Which side sent a closing segment or an alert is not known: the sender is taken
    // for the client first, then for the server.
    if common::fill(packet, ip, segment.ports, event != SERVER_HELLO, exchange).is_none() {
        return now;
    }
    exchange.id = 0;
    exchange.kind = common::KIND_TLS;
    let now = if now == 0 { crate::select::clock() } else { now };
    count_event(event, detail, now);
    now
}

/// Counts one event of the handshake in the exchange scratch, seen at `now`.
#[inline(always)]
fn count_event(event: u32, detail: u32, now: u64) {
    let Some(exchange) = exchange::scratch() else { return };
    match event {
        CLIENT_HELLO => {
            count(Counter::TlsClientHellos);
            exchange::start(exchange, now);
        }
        SERVER_HELLO => {
            count(match detail {
                0x0301 => Counter::TlsServerHello10,
                0x0302 => Counter::TlsServerHello11,
                0x0303 => Counter::TlsServerHello12,
                0x0304 => Counter::TlsServerHello13,
                _ => Counter::TlsServerHelloOther,
            });
            if let Some(ns) = exchange::answer(exchange, now) {
                count(Counter::TlsHandshakes);
                count_by(Counter::TlsHandshakeTimeNs, ns);
            }
        }
        _ => {
            if event == ALERT {
                count(Counter::TlsAlerts);
                add_one(
                    &TLS_ALERTS,
                    (current_slot() * ALERTS_PER_SLOT + (detail & 0xff)) & (MAX_SLOTS * ALERTS_PER_SLOT - 1),
                );
            }
            if abandon_either_way(exchange) {
                count(match event {
                    ALERT => Counter::TlsFailedAlert,
                    RESET => Counter::TlsFailedReset,
                    _ => Counter::TlsFailedFin,
                });
            }
        }
    }
}

/// Ends the handshake of the exchange's connection, whichever side it was sent from;
/// returns whether one waited for its ServerHello.
#[inline(always)]
fn abandon_either_way(exchange: &mut Exchange) -> bool {
    if exchange::abandon(exchange) {
        return true;
    }
    common::turn(exchange);
    exchange::abandon(exchange)
}

//! DNS, TLS handshakes and HTTP/1.x on the TCP segments that may carry them (their
//! ports or first bytes say so) or end them (FIN, RST): read from a copy of the packet's first bytes by
//! a global function, which the verifier checks once, apart from the programs' paths
//! (read in place, the ServerHello's walk through its extensions multiplied them past
//! the verifier's budget).
use capture_common::{
    dns,
    flow::{ip_payload, tcp_payload, IpPayload},
    http,
    packet::PacketView,
    tls,
};

use crate::direct::Direct;

/// Whether the TCP segment in `ip` is worth copying for [`ringcap_tcp_payload`]
/// (`dns_port` as `--dns-port` gives it, 0: none).
#[inline(always)]
pub fn worth_reading(packet: &Direct, ip: &IpPayload, dns_port: u32) -> bool {
    let Some(segment) = tcp_payload(packet, ip) else { return false };
    // FIN or RST.
    if segment.flags & 0x05 != 0 || segment.at < segment.end && dns::involves_port(segment.ports, dns_port) {
        return true;
    }
    if segment.at + 4 > segment.end {
        return false;
    }
    packet.word(segment.at).is_some_and(|first| tls::may_start(first) || http::may_start(first))
}

/// Reads the TCP segment in the copied window (`copied` bytes) for DNS (on port 53 or
/// `dns_port`), TLS and HTTP, seen at `now` (0: not read yet); returns its time if it was
/// read, else 0.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ringcap_tcp_payload(copied: u32, dns_port: u32, now: u64) -> u64 {
    let Some(window) = crate::tcp::window(copied, 0) else { return now };
    let Some(ip) = ip_payload(&window) else { return now };
    let Some(segment) = tcp_payload(&window, &ip) else { return now };
    if dns::involves_port(segment.ports, dns_port) {
        return crate::dns::observe_tcp(&window, &ip, &segment, dns_port, now);
    }
    let now = crate::tls::observe(&window, &ip, &segment, now);
    crate::http::observe(&window, &ip, &segment, now)
}

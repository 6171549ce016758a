//! DNS health, shared by the kernel (which counts every packet, selected or not) and
//! user space: queries and responses over UDP and TCP to and from port 53 (or
//! `--dns-port`), the responses by rcode and truncation, read from the fixed 12-byte header.
use crate::exchange::{self, Exchange};
use crate::flow::{ip_payload, IpPayload, TcpPayload};
use crate::packet::PacketView;

/// The DNS port.
pub const PORT: u32 = 53;
/// IP protocol number of UDP.
const UDP: u8 = 17;

/// A DNS message's header, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// A response (QR set), sent from the DNS port; else a query, sent to it.
    pub response: bool,
    /// RCODE (the header's low four bits).
    pub rcode: u8,
    /// TC: the answer did not fit (the client retries over TCP).
    pub truncated: bool,
}

/// The DNS message of a UDP datagram from or to port 53 or `other_port` (0: none), with
/// its whole 12-byte header; a message that claims neither direction rightly (a query
/// from the port, a response to it) is not one.
#[inline(always)]
pub fn parse<P: PacketView>(p: &P, other_port: u32) -> Option<Message> {
    parse_into(p, &ip_payload(p)?, other_port, &mut Exchange::default())
}

/// [`parse`] of a packet whose IP payload was found already, which also fills in the
/// message's exchange, matched as Wireshark matches a query and its response: the
/// conversation and the transaction ID (in place: the kernel's stack has no room for one).
#[inline(always)]
pub fn parse_into<P: PacketView>(
    p: &P,
    ip: &IpPayload,
    other_port: u32,
    exchange: &mut Exchange,
) -> Option<Message> {
    if ip.protocol != UDP || ip.l4 + 8 + 12 > ip.end {
        return None;
    }
    message_at(p, ip, p.word(ip.l4)?, ip.l4 + 8, other_port, exchange)
}

/// The DNS message a TCP segment from or to port 53 or `other_port` starts (its two-byte
/// length, then the header), as [`parse_into`] reads a datagram's. A segment that goes on
/// with a longer message is no message of its own; to tell one from the other, a message
/// here must be a standard query or its response (opcode 0) for one question.
#[inline(always)]
pub fn parse_tcp_into<P: PacketView>(
    p: &P,
    ip: &IpPayload,
    segment: &TcpPayload,
    other_port: u32,
    exchange: &mut Exchange,
) -> Option<Message> {
    let at = segment.at + 2;
    if at + 12 > segment.end || p.word(at)? & 0x7800 != 0 || p.word(at + 4)? >> 16 != 1 {
        return None;
    }
    message_at(p, ip, segment.ports, at, other_port, exchange)
}

/// The message whose header is at `at`, in a packet from and to `ports`.
#[inline(always)]
fn message_at<P: PacketView>(
    p: &P,
    ip: &IpPayload,
    ports: u32,
    at: u32,
    other_port: u32,
    exchange: &mut Exchange,
) -> Option<Message> {
    let (source, destination) = (ports >> 16, ports & 0xffff);
    let dns_port = |port: u32| is_dns_port(port, other_port);
    // ID, flags; QDCOUNT..ARCOUNT must be there too.
    let head = p.word(at)?;
    p.word(at + 8)?;
    let response = head & 0x8000 != 0;
    if response != dns_port(source) || !response && !dns_port(destination) {
        return None;
    }
    exchange::fill(p, ip, ports, !response, exchange)?;
    exchange.id = (head >> 16) as u16;
    exchange.kind = exchange::KIND_DNS;
    Some(Message { response, rcode: (head & 0xf) as u8, truncated: head & 0x0200 != 0 })
}

/// Whether `port` is 53 or `other_port` (0: none).
#[inline(always)]
fn is_dns_port(port: u32, other_port: u32) -> bool {
    port == PORT || (other_port != 0 && port == other_port)
}

/// Whether a packet from and to `ports` involves port 53 or `other_port`.
#[inline(always)]
pub fn involves_port(ports: u32, other_port: u32) -> bool {
    is_dns_port(ports >> 16, other_port) || is_dns_port(ports & 0xffff, other_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::SlicePacket;

    fn datagram(sport: u16, dport: u16, flags: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8 + 12];
        f[12] = 0x08;
        f[14] = 0x45;
        f[17] = 40;
        f[23] = 17;
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f[42..44].copy_from_slice(&0x1234u16.to_be_bytes());
        f[44..46].copy_from_slice(&flags.to_be_bytes());
        f
    }

    fn message(frame: &[u8], other: u32) -> Option<Message> {
        parse(&SlicePacket { data: frame, wire_len: frame.len() as u32 }, other)
    }

    #[test]
    fn queries_and_responses_by_rcode_and_truncation() {
        assert_eq!(
            message(&datagram(40000, 53, 0x0100), 0),
            Some(Message { response: false, rcode: 0, truncated: false })
        );
        let nxdomain = message(&datagram(53, 40000, 0x8183), 0).unwrap();
        assert_eq!((nxdomain.response, nxdomain.rcode, nxdomain.truncated), (true, 3, false));
        assert!(message(&datagram(53, 40000, 0x8380), 0).unwrap().truncated);
        assert_eq!(message(&datagram(5353, 40000, 0x8180), 5353).map(|m| m.response), Some(true));
    }

    #[test]
    fn a_query_and_its_response_are_one_transaction() {
        let mut query = datagram(40000, 53, 0x0100);
        query[26..30].copy_from_slice(&[10, 0, 0, 1]);
        query[30..34].copy_from_slice(&[10, 0, 0, 53]);
        let mut response = datagram(53, 40000, 0x8180);
        response[26..30].copy_from_slice(&[10, 0, 0, 53]);
        response[30..34].copy_from_slice(&[10, 0, 0, 1]);
        let transaction = |frame: &[u8]| {
            let (mut t, p) = (Exchange::default(), SlicePacket { data: frame, wire_len: frame.len() as u32 });
            parse_into(&p, &ip_payload(&p).unwrap(), 0, &mut t).unwrap();
            t
        };
        let (asked, answered) = (transaction(&query), transaction(&response));
        assert_eq!(asked, answered);
        assert_eq!(
            (asked.client[0], asked.server[0], asked.client_port, asked.server_port, asked.id),
            (0x0a00_0001, 0x0a00_0035, 40000, 53, 0x1234)
        );
    }

    #[test]
    fn a_tcp_segment_that_starts_a_message_is_one() {
        let segment = |payload: &[u8]| {
            let mut f = vec![0u8; 14 + 20 + 20];
            f[12] = 0x08;
            f[14] = 0x45;
            f[16..18].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
            f[23] = 6;
            f[34..36].copy_from_slice(&53u16.to_be_bytes());
            f[36..38].copy_from_slice(&40000u16.to_be_bytes());
            f[46] = 0x50;
            f.extend(payload);
            f
        };
        let message = |frame: &[u8]| {
            let p = SlicePacket { data: frame, wire_len: frame.len() as u32 };
            let ip = ip_payload(&p).unwrap();
            let tcp = crate::flow::tcp_payload(&p, &ip).unwrap();
            parse_tcp_into(&p, &ip, &tcp, 0, &mut Exchange::default())
        };
        let response = [0, 30, 0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            message(&segment(&response)),
            Some(Message { response: true, rcode: 3, truncated: false })
        );
        let mut continued = response;
        continued[7] = 7;
        assert_eq!(message(&segment(&continued)), None, "seven questions: the rest of a longer message");
        assert_eq!(message(&segment(&response[..13])), None);
        assert!(involves_port(53 << 16 | 40000, 0) && involves_port(40000 << 16 | 5353, 5353));
        assert!(!involves_port(40000 << 16 | 5353, 0));
    }

    #[test]
    fn other_ports_wrong_directions_and_short_headers_are_not_messages() {
        assert_eq!(message(&datagram(40000, 5353, 0x0100), 0), None);
        assert_eq!(message(&datagram(53, 40000, 0x0100), 0), None, "a query from the DNS port");
        assert_eq!(message(&datagram(40000, 53, 0x8180), 0), None, "a response to the DNS port");
        assert_eq!(message(&datagram(40000, 53, 0x0100)[..50], 0), None);
    }
}

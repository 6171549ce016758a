//! DNS health, shared by the kernel (which counts every packet, selected or not) and
//! user space: queries and responses over UDP to and from port 53 (or `--dns-port`), the
//! responses by rcode and truncation, read from the fixed 12-byte header.
use crate::flow::{ip_payload, IpPayload};
use crate::packet::PacketView;

/// A query and its response, matched as Wireshark matches them: the conversation (the
/// client's and the server's address and port) and the transaction ID.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Transaction {
    pub client: [u32; 4],
    pub server: [u32; 4],
    pub client_port: u16,
    pub server_port: u16,
    pub id: u16,
    /// 4 or 6.
    pub family: u8,
    pub _pad: u8,
}

/// A query waiting for its response, in the kernel's table of pending queries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// When the first query of the transaction passed (a retransmission keeps it).
    pub query_ns: u64,
    /// The slot (interface and direction) the query was seen on.
    pub slot: u32,
    /// Retransmissions of the query seen so far.
    pub retransmissions: u32,
}

#[cfg(feature = "user")]
// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for Transaction {}
#[cfg(feature = "user")]
// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for Pending {}

/// Name of the LRU hash of pending queries ([`Transaction`] -> [`Pending`]).
pub const PENDING_MAP: &str = "DNS_PENDING";
/// Queries the kernel waits for at once; past them the oldest are forgotten (their
/// responses then count as unmatched).
pub const PENDING_QUERIES: u32 = 16384;
/// Name of the array of response-time histograms: slot * RTT_BUCKETS + bucket (the
/// RTT histograms' log-linear buckets), mapped by user space.
pub const TIMES_MAP: &str = "DNS_TIMES";

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
    parse_into(p, &ip_payload(p)?, other_port, &mut Transaction::default())
}

/// [`parse`] of a packet whose IP payload was found already, which also fills in the
/// message's transaction (in place: the kernel's stack has no room for one).
#[inline(always)]
pub fn parse_into<P: PacketView>(
    p: &P,
    ip: &IpPayload,
    other_port: u32,
    transaction: &mut Transaction,
) -> Option<Message> {
    let (family, l4, end) = (ip.family, ip.l4, ip.end);
    if ip.protocol != UDP || l4 + 8 + 12 > end {
        return None;
    }
    let ports = p.word(l4)?;
    let (source, destination) = (ports >> 16, ports & 0xffff);
    let dns_port = |port: u32| port == PORT || (other_port != 0 && port == other_port);
    // ID, flags; QDCOUNT..ARCOUNT must be there too.
    let head = p.word(l4 + 8)?;
    p.word(l4 + 8 + 8)?;
    let response = head & 0x8000 != 0;
    if response != dns_port(source) || !response && !dns_port(destination) {
        return None;
    }
    let l3 = ip.l3;
    let (source_at, destination_at, words) =
        if family == 0 { (l3 + 12, l3 + 16, 1) } else { (l3 + 8, l3 + 24, 4) };
    let (client_at, server_at) =
        if response { (destination_at, source_at) } else { (source_at, destination_at) };
    let mut i = 0;
    while i < 4 {
        transaction.client[i as usize] = if i < words { p.word(client_at + 4 * i)? } else { 0 };
        transaction.server[i as usize] = if i < words { p.word(server_at + 4 * i)? } else { 0 };
        i += 1;
    }
    let (client_port, server_port) = if response { (destination, source) } else { (source, destination) };
    transaction.client_port = client_port as u16;
    transaction.server_port = server_port as u16;
    transaction.id = (head >> 16) as u16;
    transaction.family = if family == 0 { 4 } else { 6 };
    Some(Message { response, rcode: (head & 0xf) as u8, truncated: head & 0x0200 != 0 })
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
            let (mut t, p) =
                (Transaction::default(), SlicePacket { data: frame, wire_len: frame.len() as u32 });
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
    fn other_ports_wrong_directions_and_short_headers_are_not_messages() {
        assert_eq!(message(&datagram(40000, 5353, 0x0100), 0), None);
        assert_eq!(message(&datagram(53, 40000, 0x0100), 0), None, "a query from the DNS port");
        assert_eq!(message(&datagram(40000, 53, 0x8180), 0), None, "a response to the DNS port");
        assert_eq!(message(&datagram(40000, 53, 0x0100)[..50], 0), None);
    }
}

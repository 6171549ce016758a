//! DNS health, shared by the kernel (which counts every packet, selected or not) and
//! user space: queries and responses over UDP to and from port 53 (or `--dns-port`), the
//! responses by rcode and truncation, read from the fixed 12-byte header.
use crate::flow::ip_payload;
use crate::packet::PacketView;

/// The DNS port.
pub const PORT: u32 = 53;

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
    let (_, l4) = ip_payload(p, 17, 17)?;
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
    fn other_ports_wrong_directions_and_short_headers_are_not_messages() {
        assert_eq!(message(&datagram(40000, 5353, 0x0100), 0), None);
        assert_eq!(message(&datagram(53, 40000, 0x0100), 0), None, "a query from the DNS port");
        assert_eq!(message(&datagram(40000, 53, 0x8180), 0), None, "a response to the DNS port");
        assert_eq!(message(&datagram(40000, 53, 0x0100)[..50], 0), None);
    }
}

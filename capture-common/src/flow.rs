//! A symmetric flow hash: both directions of a connection hash alike, so flow sampling
//! keeps or drops whole conversations. Shared by the kernel and the tests.
use crate::packet::PacketView;

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;

#[inline(always)]
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^ (h >> 16)
}

#[inline(always)]
pub(crate) fn word<P: PacketView>(p: &P, at: u32) -> Option<u32> {
    p.word(at)
}

#[inline(always)]
pub(crate) fn half<P: PacketView>(p: &P, at: u32) -> Option<u32> {
    p.half(at)
}

/// Hash of one endpoint: address words and port.
#[inline(always)]
fn endpoint<P: PacketView>(p: &P, addr: u32, words: u32, port: Option<u32>) -> Option<u32> {
    let mut h = 0x9e37_79b9u32;
    let mut i = 0;
    while i < words {
        h = mix(h ^ word(p, addr + 4 * i)?);
        i += 1;
    }
    Some(mix(h ^ port.unwrap_or(0)))
}

/// The ethertype and offset of the network header, after up to two VLAN tags.
#[inline(always)]
pub(crate) fn network_layer<P: PacketView>(p: &P) -> Option<(u32, u32)> {
    let mut l3 = 14u32;
    let mut ethertype = half(p, 12)?;
    let mut tags = 0;
    while tags < 2 && matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        ethertype = half(p, l3 + 2)?;
        l3 += 4;
        tags += 1;
    }
    Some((ethertype, l3))
}

/// Where an IP packet's payload lies, for the parsers of what it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPayload {
    /// 0 IPv4, 1 IPv6.
    pub family: u32,
    /// IPv4's protocol, IPv6's next header after the fixed header.
    pub protocol: u8,
    /// Where the IP header starts...
    pub l3: u32,
    /// ...where the payload starts...
    pub l4: u32,
    /// ...and where the IP packet ends by its own length (not the frame's: padding and
    /// trailers are no payload).
    pub end: u32,
}

/// The payload of an IPv4 first fragment or of an IPv6 packet (what follows its fixed
/// header), after up to two VLAN tags; `None` for anything else.
#[inline(always)]
pub fn ip_payload<P: PacketView>(p: &P) -> Option<IpPayload> {
    let (ethertype, l3) = network_layer(p)?;
    match ethertype {
        ETH_P_IP => {
            let version_ihl = p.byte(l3)?;
            if version_ihl >> 4 != 4 || version_ihl & 0xf < 5 || half(p, l3 + 6)? & 0x1fff != 0 {
                return None;
            }
            let l4 = l3 + 4 * u32::from(version_ihl & 0xf);
            Some(IpPayload { family: 0, protocol: p.byte(l3 + 9)?, l3, l4, end: l3 + half(p, l3 + 2)? })
        }
        ETH_P_IPV6 => {
            if p.byte(l3)? >> 4 != 6 {
                return None;
            }
            let end = l3 + 40 + half(p, l3 + 4)?;
            Some(IpPayload { family: 1, protocol: p.byte(l3 + 6)?, l3, l4: l3 + 40, end })
        }
        _ => None,
    }
}

/// IP protocol number of TCP.
pub const TCP: u8 = 6;

/// Where a TCP segment's payload lies, for the parsers of what it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpPayload {
    /// The source and destination ports, as one word.
    pub ports: u32,
    /// The TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    pub flags: u8,
    /// Where the payload starts and where it ends.
    pub at: u32,
    pub end: u32,
}

/// The payload of the TCP segment in `ip`, if it is one with a whole header.
#[inline(always)]
pub fn tcp_payload<P: PacketView>(p: &P, ip: &IpPayload) -> Option<TcpPayload> {
    if ip.protocol != TCP {
        return None;
    }
    let ports = word(p, ip.l4)?;
    let offset_flags = half(p, ip.l4 + 12)?;
    let at = ip.l4 + 4 * (offset_flags >> 12);
    if offset_flags >> 12 < 5 || at > ip.end {
        return None;
    }
    Some(TcpPayload { ports, flags: offset_flags as u8, at, end: ip.end })
}

/// The symmetric hash of a packet's flow: addresses and ports of IPv4/IPv6 TCP, UDP and
/// SCTP (after up to two VLAN tags); addresses only for other IP protocols and
/// fragments; MAC addresses for everything else.
#[inline(always)]
pub fn flow_hash<P: PacketView>(p: &P) -> Option<u32> {
    let (ethertype, l3) = network_layer(p)?;
    let (a, b, proto) = match ethertype {
        ETH_P_IP => {
            let ihl = 4 * (u32::from(p.byte(l3)?) & 0xf);
            let proto = u32::from(p.byte(l3 + 9)?);
            let first_fragment = half(p, l3 + 6)? & 0x1fff == 0;
            let ports = first_fragment && matches!(proto, 6 | 17 | 132);
            let (sp, dp) =
                if ports { (Some(half(p, l3 + ihl)?), Some(half(p, l3 + ihl + 2)?)) } else { (None, None) };
            (endpoint(p, l3 + 12, 1, sp)?, endpoint(p, l3 + 16, 1, dp)?, proto)
        }
        ETH_P_IPV6 => {
            let proto = u32::from(p.byte(l3 + 6)?);
            let ports = matches!(proto, 6 | 17 | 132);
            let (sp, dp) =
                if ports { (Some(half(p, l3 + 40)?), Some(half(p, l3 + 42)?)) } else { (None, None) };
            (endpoint(p, l3 + 8, 4, sp)?, endpoint(p, l3 + 24, 4, dp)?, proto)
        }
        _ => (endpoint(p, 6, 1, Some(half(p, 10)?))?, endpoint(p, 0, 1, Some(half(p, 4)?))?, ethertype),
    };
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    Some(mix(mix(low ^ proto) ^ high))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::SlicePacket;

    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> [u8; 42] {
        let mut f = [0u8; 42];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 17;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn both_directions_hash_alike_and_flows_differ() {
        let hash = |f: &[u8]| flow_hash(&SlicePacket { data: f, wire_len: f.len() as u32 }).unwrap();
        let there = hash(&udp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 53));
        let back = hash(&udp([10, 0, 0, 2], [10, 0, 0, 1], 53, 1234));
        let other = hash(&udp([10, 0, 0, 1], [10, 0, 0, 2], 1235, 53));
        assert_eq!(there, back);
        assert_ne!(there, other);
    }
}

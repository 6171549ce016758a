//! ICMP and ICMPv6 health, shared by the kernel (which counts every packet, selected or
//! not) and user space (unit tests, window statistics of stored packets): a message's
//! family, type and code, and the path MTU that a fragmentation-needed (ICMP type 3 code
//! 4) or packet-too-big (ICMPv6 type 2) message announces.
use crate::flow::{ip_payload, IpPayload};
use crate::packet::PacketView;

/// Families, in the order of the count layout.
pub const FAMILY_IPV4: u32 = 0;
pub const FAMILY_IPV6: u32 = 1;
pub const FAMILIES: u32 = 2;
/// Codes counted apart; a higher code counts with [`CODES`] - 1, which user space reports
/// as "31 and higher" (no message in use has such a code).
pub const CODES: u32 = 32;
pub const TYPES: u32 = 256;
/// Counts of one slot (interface and direction): family, type and code.
pub const COUNTS_PER_SLOT: u32 = FAMILIES * TYPES * CODES;

/// Distinct (slot, family, MTU) announced that are counted apart; past them, counted
/// as `icmp_mtu_untracked` (a path announces one or two MTUs, a flood of forged ones many).
pub const MTU_KEYS: u32 = 1024;

/// Key of the path-MTU counts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MtuKey {
    pub slot: u16,
    pub family: u16,
    pub mtu: u32,
}

#[cfg(feature = "user")]
// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for MtuKey {}

/// One ICMP or ICMPv6 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u32,
    pub kind: u8,
    pub code: u8,
    /// Whether the message is a fragmentation-needed or packet-too-big one, and the
    /// next-hop MTU it announces: `None` inside when the message is cut before it (0 is an
    /// old router's "unknown", RFC 1191).
    pub path_mtu: Option<Option<u32>>,
}

impl Message {
    /// The index of the message's count in a slot's counts.
    #[inline(always)]
    pub fn index(&self) -> u32 {
        let code = if u32::from(self.code) < CODES { u32::from(self.code) } else { CODES - 1 };
        (self.family & 1) * TYPES * CODES + u32::from(self.kind) * CODES + code
    }
}

/// The family, type and code of the count at `index` of a slot's counts.
pub fn at_index(index: u32) -> (u32, u8, u8) {
    (index / (TYPES * CODES), ((index / CODES) % TYPES) as u8, (index % CODES) as u8)
}

/// The ICMP or ICMPv6 message of a packet (after up to two VLAN tags); IPv4 fragments
/// other than the first, ICMPv6 behind extension headers (as the TCP analysis reads
/// TCP) and messages of fewer than four bytes are not read.
#[inline(always)]
pub fn parse<P: PacketView>(p: &P) -> Option<Message> {
    parse_payload(p, &ip_payload(p)?)
}

/// [`parse`] of a packet whose IP payload was found already.
#[inline(always)]
pub fn parse_payload<P: PacketView>(p: &P, ip: &IpPayload) -> Option<Message> {
    let (family, l4, end) = (ip.family, ip.l4, ip.end);
    if ip.protocol != if family == FAMILY_IPV4 { 1 } else { 58 } || l4 + 4 > end {
        return None;
    }
    let second = if l4 + 8 <= end { p.word(l4 + 4) } else { None };
    Some(Message::of_header(family, p.word(l4)?, second))
}

impl Message {
    /// The message of `family` whose ICMP header starts with the big-endian words
    /// `first` (type, code, checksum) and `second` (`None` when not captured). Pure
    /// arithmetic on the two words: the kernel reads them where they lie, one bounds
    /// check each, and nothing of the packet's address enters the computation.
    #[inline(always)]
    pub fn of_header(family: u32, first: u32, second: Option<u32>) -> Message {
        let kind = (first >> 24) as u8;
        let code = (first >> 16) as u8;
        let path_mtu = match (family, kind, code) {
            // RFC 1191: the next-hop MTU in the low half of the second word.
            (FAMILY_IPV4, 3, 4) => Some(second.map(|word| word & 0xffff)),
            // RFC 4443: the MTU is the whole second word.
            (FAMILY_IPV6, 2, _) => Some(second),
            _ => None,
        };
        Message { family, kind, code, path_mtu }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::SlicePacket;

    fn ipv4_icmp(kind: u8, code: u8, rest: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12] = 0x08;
        f[14] = 0x45;
        f[17] = 28;
        f[23] = 1;
        f[34] = kind;
        f[35] = code;
        f[38..42].copy_from_slice(&rest);
        f
    }

    fn message(frame: &[u8]) -> Option<Message> {
        parse(&SlicePacket { data: frame, wire_len: frame.len() as u32 })
    }

    #[test]
    fn fragmentation_needed_and_packet_too_big_announce_their_mtu() {
        let needed = message(&ipv4_icmp(3, 4, [0, 0, 0x05, 0x00])).unwrap();
        assert_eq!(needed, Message { family: FAMILY_IPV4, kind: 3, code: 4, path_mtu: Some(Some(1280)) });
        let unreachable = message(&ipv4_icmp(3, 1, [0, 0, 0x05, 0x00])).unwrap();
        assert_eq!(unreachable.path_mtu, None);

        let mut v6 = vec![0u8; 14 + 40 + 8];
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        v6[14] = 0x60;
        v6[19] = 8;
        v6[20] = 58;
        v6[54] = 2;
        v6[58..62].copy_from_slice(&1400u32.to_be_bytes());
        assert_eq!(
            message(&v6),
            Some(Message { family: FAMILY_IPV6, kind: 2, code: 0, path_mtu: Some(Some(1400)) })
        );
    }

    #[test]
    fn other_packets_fragments_and_truncated_headers_are_not_messages() {
        let mut udp = ipv4_icmp(8, 0, [0; 4]);
        udp[23] = 17;
        assert_eq!(message(&udp), None);
        let mut later_fragment = ipv4_icmp(8, 0, [0; 4]);
        later_fragment[21] = 1;
        assert_eq!(message(&later_fragment), None);
        assert_eq!(message(&ipv4_icmp(0, 0, [0; 4])[..37]), None);
        // A fragmentation-needed message cut before its MTU still counts, announcing none.
        assert_eq!(message(&ipv4_icmp(3, 4, [0, 0, 5, 0])[..40]).unwrap().path_mtu, Some(None));
        // What follows the IP packet (Ethernet padding, a trailer) is not its payload.
        let mut no_icmp = ipv4_icmp(0, 0, [0; 4]);
        no_icmp[17] = 20;
        assert_eq!(message(&no_icmp), None);
        let mut short = ipv4_icmp(3, 4, [0, 0, 5, 0xdc]);
        short[17] = 24;
        assert_eq!(message(&short).unwrap().path_mtu, Some(None), "the MTU lies in the padding");
    }

    #[test]
    fn indexes_round_trip_and_high_codes_share_the_last() {
        for (family, kind, code) in [(0, 3, 4), (1, 2, 0), (1, 255, 31), (0, 0, 0)] {
            let m = Message { family, kind, code, path_mtu: None };
            assert!(m.index() < COUNTS_PER_SLOT);
            assert_eq!(at_index(m.index()), (family, kind, code));
        }
        assert_eq!(Message { family: 0, kind: 3, code: 200, path_mtu: None }.index(), 3 * CODES + CODES - 1);
    }
}

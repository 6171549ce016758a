//! TCP segment parsing and the RTT histogram layout, shared by the kernel's TCP analysis
//! and user space (tests, folding histograms).
use crate::filter::PacketView;
use crate::flow::{half, network_layer, word};

/// Both directions of a connection map to one key: the lower endpoint first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    pub lo_addr: [u32; 4],
    pub hi_addr: [u32; 4],
    pub lo_port: u16,
    pub hi_port: u16,
    /// 4 or 6.
    pub family: u32,
}

/// What the analysis needs of a TCP segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub key: FlowKey,
    /// The segment goes from the key's lower endpoint to its higher one.
    pub from_lo: bool,
    pub flags: u8,
    pub window: u16,
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

#[inline(always)]
fn byte<P: PacketView>(p: &P, at: u32) -> Option<u32> {
    p.byte(at).map(u32::from)
}

/// The TCP segment in an Ethernet frame (after up to two VLAN tags; IPv4 first
/// fragments, IPv6 without extension headers), if there is one.
#[inline(always)]
pub fn parse<P: PacketView>(p: &P) -> Option<Segment> {
    let (ethertype, l3) = network_layer(p)?;
    let mut src = [0u32; 4];
    let mut dst = [0u32; 4];
    let (l4, family) = match ethertype {
        0x0800 => {
            if byte(p, l3 + 9)? != 6 || half(p, l3 + 6)? & 0x1fff != 0 {
                return None;
            }
            src[0] = word(p, l3 + 12)?;
            dst[0] = word(p, l3 + 16)?;
            (l3 + 4 * (byte(p, l3)? & 0xf), 4)
        }
        0x86dd => {
            if byte(p, l3 + 6)? != 6 {
                return None;
            }
            let mut i = 0;
            while i < 4 {
                src[i as usize] = word(p, l3 + 8 + 4 * i)?;
                dst[i as usize] = word(p, l3 + 24 + 4 * i)?;
                i += 1;
            }
            (l3 + 40, 6)
        }
        _ => return None,
    };
    let (sport, dport) = (half(p, l4)? as u16, half(p, l4 + 2)? as u16);
    let flags = byte(p, l4 + 13)? as u8;
    let window = half(p, l4 + 14)? as u16;
    let from_lo = (src, sport) <= (dst, dport);
    let (lo, hi) = if from_lo { ((src, sport), (dst, dport)) } else { ((dst, dport), (src, sport)) };
    let key = FlowKey { lo_addr: lo.0, hi_addr: hi.0, lo_port: lo.1, hi_port: hi.1, family };
    Some(Segment { key, from_lo, flags, window })
}

/// Buckets per RTT histogram: log-linear, four sub-buckets per power of two of nanoseconds.
pub const RTT_BUCKETS: u32 = 256;
/// Histograms in the kernel's RTT array: [server side, client side] of the handshake.
pub const RTT_KINDS: u32 = 2;

/// The bucket of a value in nanoseconds.
#[inline(always)]
pub fn rtt_bucket(ns: u64) -> u32 {
    if ns < 4 {
        return ns as u32;
    }
    let log = 63 - ns.leading_zeros();
    let sub = ((ns >> (log - 2)) & 3) as u32;
    4 * (log - 1) + sub
}

/// The smallest value of a bucket.
pub fn rtt_bucket_floor(bucket: u32) -> u64 {
    if bucket < 4 {
        return u64::from(bucket);
    }
    let log = bucket / 4 + 1;
    (4 + u64::from(bucket % 4)) << (log - 2)
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::SlicePacket;

    #[test]
    fn buckets_are_monotonic_and_invertible() {
        let mut last = 0;
        for ns in [0u64, 1, 3, 4, 5, 7, 8, 1000, 1_000_000, 123_456_789, 1 << 61] {
            let b = rtt_bucket(ns);
            assert!(b >= last && b < RTT_BUCKETS, "{ns} -> {b}");
            assert!(
                rtt_bucket_floor(b) <= ns && (b + 1 >= RTT_BUCKETS || rtt_bucket_floor(b + 1) > ns),
                "{ns}"
            );
            last = b;
        }
    }

    #[test]
    fn both_directions_share_a_key() {
        let mut f = [0u8; 54];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 9]);
        f[30..34].copy_from_slice(&[10, 0, 0, 1]);
        f[34..36].copy_from_slice(&5555u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[47] = SYN;
        let there = parse(&SlicePacket { data: &f, wire_len: 54 }).unwrap();
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 9]);
        f[34..36].copy_from_slice(&80u16.to_be_bytes());
        f[36..38].copy_from_slice(&5555u16.to_be_bytes());
        f[47] = SYN | ACK;
        let back = parse(&SlicePacket { data: &f, wire_len: 54 }).unwrap();
        assert_eq!(there.key, back.key);
        assert_ne!(there.from_lo, back.from_lo);
        assert_eq!(back.flags, SYN | ACK);
    }
}

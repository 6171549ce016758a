//! Frame summaries: what occurs in a frame (addresses, ports, IP protocols, EtherTypes,
//! VLAN IDs), as a Bloom filter written into the time index beside the frame's entry, so
//! that a filtered pull skips a frame that cannot hold a match without reading it.
//!
//! The filter is sized for the frame: 10 bits per distinct key and 7 hash functions, a
//! false-positive rate of about 0.8% per key asked (measured in the tests). What goes in is
//! a superset of what libpcap's filters can match on: both addresses of IPv4, IPv6 and ARP
//! packets (and their /8, /16, /24 and /32, /48, /64 prefixes, for `net`), TCP, UDP and
//! SCTP ports, IP protocols and IPv6 next headers, EtherTypes and VLAN IDs, inside VLAN
//! tags too. A key that is absent means no packet of the frame has it.

/// What a key is about; part of its hash, so equal values of different kinds differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum KeyKind {
    Ipv4 = 1,
    Ipv6 = 2,
    /// An IPv4 prefix: (length, network).
    Ipv4Net = 3,
    Ipv6Net = 4,
    Port = 5,
    IpProto = 6,
    EtherType = 7,
    Vlan = 8,
    /// The frame holds VLAN-tagged packets.
    AnyVlan = 9,
}

/// Bits per distinct key, and hash functions: about 0.8% false positives.
const BITS_PER_KEY: usize = 10;
const HASHES: u8 = 7;
/// The smallest filter, in 64-bit words.
const MIN_WORDS: usize = 8;

/// A Bloom filter of one frame's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    words: Vec<u64>,
    hashes: u8,
}

fn key_hash(kind: KeyKind, value: &[u8]) -> (u64, u64) {
    // FNV-1a 64 over the kind and the value, then a second, mixed hash for double hashing.
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in std::iter::once(&(kind as u8)).chain(value) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut g = h ^ (h >> 33);
    g = g.wrapping_mul(0xff51_afd7_ed55_8ccd);
    g ^= g >> 33;
    (h, g | 1)
}

impl Summary {
    /// A filter for the distinct keys of `keys`.
    pub fn of_keys(keys: &KeySet) -> Self {
        let bits = (keys.len() * BITS_PER_KEY).next_power_of_two().max(MIN_WORDS * 64);
        let mut summary = Summary { words: vec![0; bits / 64], hashes: HASHES };
        for &(h, g) in keys.hashes() {
            summary.insert(h, g);
        }
        summary
    }

    fn bit_positions(&self, h: u64, g: u64) -> impl Iterator<Item = usize> + '_ {
        let mask = (self.words.len() * 64 - 1) as u64;
        (0..u64::from(self.hashes)).map(move |i| (h.wrapping_add(i.wrapping_mul(g)) & mask) as usize)
    }

    fn insert(&mut self, h: u64, g: u64) {
        let positions: Vec<usize> = self.bit_positions(h, g).collect();
        for bit in positions {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// False if no packet of the frame has this key; true if one may.
    pub fn may_contain(&self, kind: KeyKind, value: &[u8]) -> bool {
        let (h, g) = key_hash(kind, value);
        self.bit_positions(h, g).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// The encoded filter: hash count, word count (u32 LE), words (LE).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.words.len() * 8);
        out.push(self.hashes);
        out.extend_from_slice(&(self.words.len() as u32).to_le_bytes());
        for word in &self.words {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let hashes = *bytes.first()?;
        let count = u32::from_le_bytes(bytes.get(1..5)?.try_into().ok()?) as usize;
        let body = bytes.get(5..5 + count * 8)?;
        if hashes == 0 || !count.is_power_of_two() || body.len() != bytes.len() - 5 {
            return None;
        }
        let words =
            body.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))).collect();
        Some(Summary { words, hashes })
    }
}

/// The distinct keys of a frame, as hashes.
#[derive(Debug, Default)]
pub struct KeySet(std::collections::HashSet<(u64, u64)>);

impl KeySet {
    pub fn add(&mut self, kind: KeyKind, value: &[u8]) {
        self.0.insert(key_hash(kind, value));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn hashes(&self) -> impl Iterator<Item = &(u64, u64)> {
        self.0.iter()
    }

    /// Adds the keys of one Ethernet frame (as captured: possibly cut by the snap length).
    pub fn add_packet(&mut self, frame: &[u8]) {
        let Some(mut ethertype) = be16(frame, 12) else { return };
        let mut at = 14;
        // VLAN tags (802.1Q, 802.1ad, and the old 0x9100), any depth the frame holds.
        while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
            let Some(tci) = be16(frame, at) else { return };
            self.add(KeyKind::AnyVlan, &[]);
            self.add(KeyKind::Vlan, &(tci & 0x0fff).to_be_bytes());
            self.add(KeyKind::EtherType, &ethertype.to_be_bytes());
            let Some(inner) = be16(frame, at + 2) else { return };
            ethertype = inner;
            at += 4;
        }
        self.add(KeyKind::EtherType, &ethertype.to_be_bytes());
        let l3 = &frame[at.min(frame.len())..];
        match ethertype {
            0x0800 => self.add_ipv4(l3),
            0x86dd => self.add_ipv6(l3),
            // ARP and RARP over Ethernet/IPv4: `host` matches their sender and target.
            0x0806 | 0x8035 => {
                for offset in [14, 24] {
                    if let Some(address) = l3.get(offset..offset + 4) {
                        self.add_v4_address(address);
                    }
                }
            }
            _ => {}
        }
    }

    fn add_v4_address(&mut self, address: &[u8]) {
        self.add(KeyKind::Ipv4, address);
        for len in [8u8, 16, 24] {
            self.add(KeyKind::Ipv4Net, &v4_prefix(address, len));
        }
    }

    fn add_ipv4(&mut self, packet: &[u8]) {
        let Some(&version_ihl) = packet.first() else { return };
        let header_len = usize::from(version_ihl & 0x0f) * 4;
        for address in [packet.get(12..16), packet.get(16..20)].into_iter().flatten() {
            self.add_v4_address(address);
        }
        let Some(&protocol) = packet.get(9) else { return };
        self.add(KeyKind::IpProto, &[protocol]);
        // Only the first fragment carries the ports.
        let first_fragment = be16(packet, 6).is_some_and(|f| f & 0x1fff == 0);
        if first_fragment && header_len >= 20 {
            self.add_ports(protocol, packet.get(header_len..).unwrap_or_default());
        }
    }

    fn add_ipv6(&mut self, packet: &[u8]) {
        for address in [packet.get(8..24), packet.get(24..40)].into_iter().flatten() {
            self.add(KeyKind::Ipv6, address);
            for len in [32u8, 48, 64] {
                self.add(KeyKind::Ipv6Net, &v6_prefix(address, len));
            }
        }
        let Some(&mut_next) = packet.get(6) else { return };
        let (mut next, mut at) = (mut_next, 40);
        // Through the extension headers (more than libpcap's `port` looks at: a superset).
        for _ in 0..8 {
            self.add(KeyKind::IpProto, &[next]);
            match next {
                0 | 43 | 60 => {
                    let (Some(&following), Some(&len)) = (packet.get(at), packet.get(at + 1)) else { return };
                    next = following;
                    at += (usize::from(len) + 1) * 8;
                }
                44 => {
                    let (Some(&following), Some(offset)) = (packet.get(at), be16(packet, at + 2)) else {
                        return;
                    };
                    if offset & 0xfff8 != 0 {
                        return;
                    }
                    next = following;
                    at += 8;
                }
                _ => break,
            }
        }
        self.add_ports(next, packet.get(at..).unwrap_or_default());
    }

    fn add_ports(&mut self, protocol: u8, transport: &[u8]) {
        if matches!(protocol, 6 | 17 | 132) {
            for port in [be16(transport, 0), be16(transport, 2)].into_iter().flatten() {
                self.add(KeyKind::Port, &port.to_be_bytes());
            }
        }
    }
}

/// The summary of a frame's content (pcap or pcapng records); None without packets.
pub fn summarize(format: crate::pcap::RecordFormat, content: &[u8]) -> Option<Summary> {
    let mut keys = KeySet::default();
    let mut packets = 0;
    for record in format.records(content).map_while(Result::ok) {
        keys.add_packet(record.data);
        packets += 1;
    }
    (packets > 0).then(|| Summary::of_keys(&keys))
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// The prefix key of an IPv4 address: the length, then the masked address.
pub fn v4_prefix(address: &[u8], len: u8) -> [u8; 5] {
    let value = u32::from_be_bytes(address[..4].try_into().expect("4 bytes"));
    let masked = if len == 0 { 0 } else { value & (u32::MAX << (32 - u32::from(len))) };
    let mut key = [len, 0, 0, 0, 0];
    key[1..].copy_from_slice(&masked.to_be_bytes());
    key
}

/// The prefix key of an IPv6 address: the length, then the masked address.
pub fn v6_prefix(address: &[u8], len: u8) -> [u8; 17] {
    let value = u128::from_be_bytes(address[..16].try_into().expect("16 bytes"));
    let masked = if len == 0 { 0 } else { value & (u128::MAX << (128 - u32::from(len))) };
    let mut key = [0u8; 17];
    key[0] = len;
    key[1..].copy_from_slice(&masked.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_false_positive_rate_is_what_the_sizing_promises() {
        // 2000 distinct addresses in, 100000 others asked.
        let mut keys = KeySet::default();
        for i in 0u32..2000 {
            keys.add(KeyKind::Ipv4, &i.to_be_bytes());
        }
        let summary = Summary::of_keys(&keys);
        assert!(
            (0u32..2000).all(|i| summary.may_contain(KeyKind::Ipv4, &i.to_be_bytes())),
            "no false negative"
        );
        let false_positives = (1_000_000u32..1_100_000)
            .filter(|i| summary.may_contain(KeyKind::Ipv4, &i.to_be_bytes()))
            .count();
        let rate = false_positives as f64 / 100_000.0;
        // 10 bits a key rounded up to a power of two (32768 bits for 2000 keys) and 7 hashes.
        assert!(rate < 0.01, "false positives {rate}");
        assert_eq!(Summary::decode(&summary.encode()), Some(summary));
    }

    #[test]
    fn keys_of_a_vlan_tagged_udp_packet() {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x08, 0x00]); // VLAN 100, IPv4
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 1, 5, 192, 168, 1, 1];
        ip.extend_from_slice(&[0x01, 0xbb, 0x00, 0x35, 0, 8, 0, 0]); // 443 -> 53
        frame.extend_from_slice(&ip);
        let mut keys = KeySet::default();
        keys.add_packet(&frame);
        let s = Summary::of_keys(&keys);
        assert!(s.may_contain(KeyKind::Vlan, &100u16.to_be_bytes()));
        assert!(
            s.may_contain(KeyKind::Ipv4, &[10, 0, 1, 5]) && s.may_contain(KeyKind::Ipv4, &[192, 168, 1, 1])
        );
        assert!(s.may_contain(KeyKind::Ipv4Net, &v4_prefix(&[10, 0, 1, 5], 16)));
        assert!(
            s.may_contain(KeyKind::Port, &443u16.to_be_bytes())
                && s.may_contain(KeyKind::Port, &53u16.to_be_bytes())
        );
        assert!(s.may_contain(KeyKind::IpProto, &[17]));
        assert!(
            !s.may_contain(KeyKind::Ipv4, &[10, 0, 1, 6])
                || !s.may_contain(KeyKind::Port, &80u16.to_be_bytes())
        );
    }
}

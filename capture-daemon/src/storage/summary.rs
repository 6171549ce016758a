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

/// splitmix64's finalizer: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The key's hash: the value (at most 17 bytes) read as two little-endian words (the
/// 17th byte, a prefix length, goes with the kind), mixed with the kind. Never 0 (the
/// key set's empty slot).
fn key_hash(kind: KeyKind, value: &[u8]) -> u64 {
    let (extra, value) = if value.len() > 16 { (u64::from(value[0]), &value[1..]) } else { (0, value) };
    let mut words = [0u8; 16];
    words[..value.len()].copy_from_slice(value);
    let lo = u64::from_le_bytes(words[..8].try_into().expect("8 bytes"));
    let hi = u64::from_le_bytes(words[8..].try_into().expect("8 bytes"));
    let tag = (kind as u64) << 56 | extra << 48 | value.len() as u64;
    mix(mix(lo ^ tag) ^ hi).max(1)
}

/// The second hash of double hashing, odd so that it walks every bit.
fn step(h: u64) -> u64 {
    mix(h ^ 0x9e37_79b9_7f4a_7c15) | 1
}

impl Summary {
    /// A filter for the distinct keys of `keys`.
    pub fn of_keys(keys: &KeySet) -> Self {
        let bits = (keys.len() * BITS_PER_KEY).next_power_of_two().max(MIN_WORDS * 64);
        let mut summary = Summary { words: vec![0; bits / 64], hashes: HASHES };
        for h in keys.hashes() {
            summary.insert(h);
        }
        summary
    }

    fn bit_positions(&self, h: u64) -> impl Iterator<Item = usize> {
        let (mask, g) = ((self.words.len() * 64 - 1) as u64, step(h));
        (0..u64::from(self.hashes)).map(move |i| (h.wrapping_add(i.wrapping_mul(g)) & mask) as usize)
    }

    fn insert(&mut self, h: u64) {
        for bit in self.bit_positions(h) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// False if no packet of the frame has this key; true if one may.
    pub fn may_contain(&self, kind: KeyKind, value: &[u8]) -> bool {
        let h = key_hash(kind, value);
        self.bit_positions(h).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
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

/// The distinct keys of a frame, as hashes: an open-addressing table keyed by the hash
/// itself (already mixed: a general-purpose hash map would hash it again, per key of every
/// packet of every frame).
#[derive(Debug)]
pub struct KeySet {
    slots: Vec<u64>,
    len: usize,
    /// Signatures of recent conversations (the header fields keys come from): a packet of
    /// one of them adds nothing new, and most packets are.
    recent: [u128; 64],
}

impl Default for KeySet {
    fn default() -> Self {
        KeySet { slots: vec![0; 1024], len: 0, recent: [0; 64] }
    }
}

/// The header fields an IP packet's keys come from (tags and EtherTypes, protocol,
/// addresses, ports), hashed to 128 bits (two independent chains: two conversations never
/// pass for one); None when its keys depend on more (extension headers, fragments, short
/// packets).
fn conversation(frame: &[u8], at: usize, ethertype: u16) -> Option<u128> {
    let l3 = frame.get(at..)?;
    let parts: [&[u8]; 4] = match ethertype {
        0x0800 => {
            let header_len = usize::from(*l3.first()? & 0x0f) * 4;
            let fragment = be16(l3, 6)? & 0x1fff != 0;
            if header_len < 20 || fragment {
                return None;
            }
            [&frame[12..at], l3.get(9..10)?, l3.get(12..20)?, l3.get(header_len..header_len + 4)?]
        }
        0x86dd if matches!(l3.get(6), Some(6 | 17 | 132)) => {
            [&frame[12..at], l3.get(6..7)?, l3.get(8..40)?, l3.get(40..44)?]
        }
        _ => return None,
    };
    let (mut a, mut b) = (mix(at as u64), mix(!(at as u64)));
    for part in parts {
        for chunk in part.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            let word = u64::from_le_bytes(word) ^ (chunk.len() as u64) << 59;
            a = mix(a ^ word);
            b = mix(b.rotate_left(17) ^ word ^ 0x9e37_79b9_7f4a_7c15);
        }
    }
    Some((u128::from(a) << 64 | u128::from(b)).max(1))
}

impl KeySet {
    pub fn add(&mut self, kind: KeyKind, value: &[u8]) {
        self.insert(key_hash(kind, value));
    }

    fn insert(&mut self, h: u64) {
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        loop {
            match self.slots[at] {
                0 => break,
                existing if existing == h => return,
                _ => at = (at + 1) & mask,
            }
        }
        self.slots[at] = h;
        self.len += 1;
        if self.len * 2 > self.slots.len() {
            let grown = vec![0; self.slots.len() * 2];
            let old = std::mem::replace(&mut self.slots, grown);
            self.len = 0;
            for h in old.into_iter().filter(|&h| h != 0) {
                self.insert(h);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn hashes(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().copied().filter(|&h| h != 0)
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
        let signature = conversation(frame, at, ethertype);
        if let Some(signature) = signature {
            let slot = &mut self.recent[signature as usize % 64];
            if *slot == signature {
                return;
            }
            *slot = signature;
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
pub fn summarize_frame(format: crate::pcap::RecordFormat, content: &[u8]) -> Option<Summary> {
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
    fn a_conversation_seen_again_adds_nothing_and_a_new_one_its_keys() {
        let udp = |id: u8, ttl: u8, sport: u16| {
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, id, 0, 0, ttl, 17, id, ttl]);
            frame.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
            frame.extend_from_slice(&sport.to_be_bytes());
            frame.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
            frame
        };
        let mut once = KeySet::default();
        once.add_packet(&udp(1, 64, 1000));
        let mut repeated = KeySet::default();
        for i in 0..50 {
            repeated.add_packet(&udp(i, 64 - i, 1000));
        }
        assert_eq!(Summary::of_keys(&once), Summary::of_keys(&repeated));
        repeated.add_packet(&udp(51, 64, 2000));
        let summary = Summary::of_keys(&repeated);
        assert!(summary.may_contain(KeyKind::Port, &2000u16.to_be_bytes()));
        assert_eq!(repeated.len(), once.len() + 1, "one new key: the new port");
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

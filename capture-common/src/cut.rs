//! Per-flow cutting (`--flow-bytes`, `--flow-packets`, `--cut-encrypted`): each
//! direction of a flow keeps its first bytes or packets whole, and its packets past that
//! (or past a TLS or QUIC handshake) are stored with their headers only, through the
//! TCP or UDP header, with their wire length. What an engineer reads (handshakes,
//! requests, certificates, every header) is kept; the bulk middle of a flow is not.
//! Shared by the kernel, which decides for every packet of a flow in its flow table,
//! and the unit tests.
use crate::flow::{half, network_layer, word};
use crate::packet::PacketView;
use crate::tcp::{FlowKey, FIN, RST, SYN};
use crate::CaptureConfig;

/// What one direction of a flow has sent, as the cut counts it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutHalf {
    /// TCP: the sequence number of this direction's first payload byte (its SYN's plus
    /// one, or the first segment's when the flow was picked up mid-stream).
    pub base_seq: u32,
    /// `CUT_*` bits.
    pub flags: u32,
    /// Packets of this direction so far (saturating).
    pub packets: u32,
    pub _pad: u32,
    /// UDP: payload bytes of this direction so far (UDP has no sequence numbers).
    pub bytes: u64,
}

/// `base_seq` holds a value.
pub const CUT_BASE: u32 = 1;
/// The direction went past [`FLOW_BYTES_MAX`]: sequence positions no longer tell the
/// first bytes from later ones (they wrap at 4 GiB), so no segment is early any more.
pub const CUT_FAR: u32 = 2;
/// The direction's first payload was seen (and classified).
pub const CUT_SAW_DATA: u32 = 4;
/// The direction's first payload was a TLS handshake record.
pub const CUT_TLS: u32 = 8;
/// The direction's first payload was a QUIC long-header packet.
pub const CUT_QUIC: u32 = 16;
/// The direction is past its handshake: TLS application data, or QUIC short headers.
pub const CUT_ENCRYPTED: u32 = 32;

/// The largest `--flow-bytes`: positions in a TCP stream are told apart up to here.
pub const FLOW_BYTES_MAX: u32 = 1 << 30;

/// Why a packet was cut ([`Cut::reason`]); 0 is "kept whole".
pub const CUT_FLOW_BYTES: u32 = 1;
pub const CUT_FLOW_PACKETS: u32 = 2;
pub const CUT_ENCRYPTED_DATA: u32 = 3;

/// The cut of one packet: `reason` 0 keeps it whole, otherwise only its first `keep`
/// bytes (through the transport header) are stored.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cut {
    pub reason: u32,
    pub keep: u32,
}

/// What the cut needs of a packet's transport layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transport {
    pub tcp: bool,
    /// TCP flags (0 for UDP).
    pub flags: u8,
    /// TCP sequence number.
    pub seq: u32,
    pub payload_len: u32,
    /// The payload's first eight bytes, big-endian, and how many of them are valid.
    pub head: u64,
    pub head_len: u32,
    /// Offset of the payload in the frame: what a cut packet keeps.
    pub payload_at: u32,
}

impl Transport {
    /// What the cut needs of a TCP segment (payload head not read yet).
    #[inline(always)]
    pub fn of_segment(segment: &crate::tcp::Segment) -> Self {
        Transport {
            tcp: true,
            flags: segment.flags,
            seq: segment.seq,
            payload_len: segment.len,
            // Never into the fixed header, whatever a malformed data offset says.
            payload_at: segment.options_end.max(segment.options_at),
            ..Transport::default()
        }
    }

    /// Reads the payload's first bytes at `payload_at` into `head`.
    #[inline(always)]
    pub fn read_head<P: PacketView>(&mut self, p: &P) {
        let at = self.payload_at;
        if self.payload_len >= 8 {
            if let (Some(a), Some(b)) = (word(p, at), word(p, at + 4)) {
                self.head = u64::from(a) << 32 | u64::from(b);
                self.head_len = 8;
            }
        } else if self.payload_len >= 4 {
            if let Some(a) = word(p, at) {
                self.head = u64::from(a) << 32;
                self.head_len = 4;
            }
        }
    }

    /// The payload's byte `i` (< 8), if read.
    #[inline(always)]
    fn head_byte(&self, i: u32) -> Option<u8> {
        (i < self.head_len).then(|| (self.head >> (56 - 8 * i)) as u8)
    }
}

/// Cutting is on in `config`.
#[inline(always)]
pub fn enabled(config: &CaptureConfig) -> bool {
    config.flow_bytes != 0 || config.flow_packets != 0 || config.cut_encrypted != 0
}

/// A TLS record header of `content_type`, versions SSL 3.0 to TLS 1.3 (RFC 8446 5.1).
#[inline(always)]
fn tls_record(t: &Transport, content_type: u8) -> bool {
    t.head_byte(0) == Some(content_type) && t.head_byte(1) == Some(3) && matches!(t.head_byte(2), Some(0..=4))
}

/// A QUIC long-header packet of a known version (RFC 9000 17.2: v1; RFC 9369: v2; the
/// drafts deployed, 29 to 34), with a connection ID length QUIC allows: a UDP payload
/// whose first byte merely looks like one is not taken for QUIC (a DNS query's ID, flags
/// and question count would have to spell a version: 0xffff 0x0000 0x0001 reads
/// 0xff000000, no version).
#[inline(always)]
fn quic_long_header(t: &Transport) -> bool {
    if t.head_len < 8 || t.head >> 62 != 0b11 {
        return false;
    }
    let version = (t.head >> 24) as u32;
    let dcid_len = (t.head >> 16) as u8;
    (version == 1 || version == 0x6b33_43cf || (0xff00_001d..=0xff00_0022).contains(&version))
        && dcid_len <= 20
}

/// A QUIC short-header (1-RTT) packet: header form 0, fixed bit 1.
#[inline(always)]
fn quic_short_header(t: &Transport) -> bool {
    t.head_len > 0 && t.head >> 62 == 0b01
}

/// Accounts one packet of the direction `half` and decides its cut under `config`
/// (0: kept whole, else the reason). SYN, FIN and RST segments are always whole.
#[inline(always)]
pub fn decide(half: &mut CutHalf, t: &Transport, config: &CaptureConfig) -> u32 {
    let control = t.tcp && t.flags & (SYN | FIN | RST) != 0;
    if t.tcp && t.flags & SYN != 0 {
        // A SYN (or SYN-ACK) starts this direction afresh: a new connection on the same
        // ports inherits nothing of the last one, whether or not the analysis saw its SYN.
        *half = CutHalf { base_seq: t.seq.wrapping_add(1), flags: CUT_BASE, ..CutHalf::default() };
    } else if t.tcp && half.flags & CUT_BASE == 0 {
        half.base_seq = t.seq;
        half.flags |= CUT_BASE;
    }
    half.packets = half.packets.saturating_add(1);
    if t.payload_len > 0 && half.flags & CUT_SAW_DATA == 0 {
        half.flags |= CUT_SAW_DATA;
        if t.tcp && tls_record(t, 0x16) {
            half.flags |= CUT_TLS;
        } else if !t.tcp && quic_long_header(t) {
            half.flags |= CUT_QUIC;
        }
    }
    if config.cut_encrypted != 0 && t.payload_len > 0 {
        let encrypted = if t.tcp {
            half.flags & CUT_TLS != 0 && tls_record(t, 0x17)
        } else {
            half.flags & CUT_QUIC != 0 && quic_short_header(t)
        };
        if encrypted {
            half.flags |= CUT_ENCRYPTED;
        }
    }
    let past_bytes = if t.tcp {
        let position = t.seq.wrapping_sub(half.base_seq);
        if !control && (FLOW_BYTES_MAX..1 << 31).contains(&position) {
            half.flags |= CUT_FAR;
        }
        half.flags & CUT_FAR != 0 || position >= config.flow_bytes
    } else {
        let before = half.bytes;
        half.bytes += u64::from(t.payload_len);
        before >= u64::from(config.flow_bytes)
    };
    // A segment without payload is all headers (and padding): there is nothing to cut.
    if control || t.payload_len == 0 {
        0
    } else if config.cut_encrypted != 0 && half.flags & CUT_ENCRYPTED != 0 {
        CUT_ENCRYPTED_DATA
    } else if config.flow_bytes != 0 && past_bytes {
        CUT_FLOW_BYTES
    } else if config.flow_packets != 0 && half.packets > config.flow_packets {
        CUT_FLOW_PACKETS
    } else {
        0
    }
}

/// The UDP datagram in an Ethernet frame (IPv4 first fragments, IPv6 without extension
/// headers, after up to two VLAN tags): its flow key, whether it goes from the key's
/// lower endpoint, and its transport fields (payload head not read yet).
#[inline(always)]
pub fn parse_udp<P: PacketView>(p: &P, key: &mut FlowKey, t: &mut Transport) -> Option<bool> {
    const UDP: u32 = 17;
    let (ethertype, l3) = network_layer(p)?;
    let mut src = [0u32; 4];
    let mut dst = [0u32; 4];
    let (l4, family, ip_end) = match ethertype {
        0x0800 => {
            let version_ihl = u32::from(p.byte(l3)?);
            if version_ihl >> 4 != 4
                || version_ihl & 0xf < 5
                || u32::from(p.byte(l3 + 9)?) != UDP
                || half(p, l3 + 6)? & 0x1fff != 0
            {
                return None;
            }
            src[0] = word(p, l3 + 12)?;
            dst[0] = word(p, l3 + 16)?;
            (l3 + 4 * (version_ihl & 0xf), 4, l3 + half(p, l3 + 2)?)
        }
        0x86dd => {
            if u32::from(p.byte(l3)?) >> 4 != 6 || u32::from(p.byte(l3 + 6)?) != UDP {
                return None;
            }
            let mut i = 0;
            while i < 4 {
                src[i as usize] = word(p, l3 + 8 + 4 * i)?;
                dst[i as usize] = word(p, l3 + 24 + 4 * i)?;
                i += 1;
            }
            (l3 + 40, 6, l3 + 40 + half(p, l3 + 4)?)
        }
        _ => return None,
    };
    let (sport, dport) = (half(p, l4)? as u16, half(p, l4 + 2)? as u16);
    let ip_end = ip_end.min(p.wire_len());
    let from_lo = (src, sport) <= (dst, dport);
    let (lo, hi) = if from_lo { ((src, sport), (dst, dport)) } else { ((dst, dport), (src, sport)) };
    *key = FlowKey::new(lo, hi, family, UDP as u8);
    *t = Transport { payload_len: ip_end.saturating_sub(l4 + 8), payload_at: l4 + 8, ..Transport::default() };
    Some(from_lo)
}

#[cfg(test)]
mod tests;

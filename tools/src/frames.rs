//! Ethernet/IPv4/UDP frames with a sequence number, and TCP segments, for tests and benchmarks.

/// Ethernet header + IPv4 header + UDP header.
pub const HEADERS_LEN: usize = 14 + 20 + 8;
/// Smallest frame the builder makes: headers and an 8-byte sequence number... padded to 60.
pub const MIN_FRAME: usize = 60;

/// Addresses of generated frames.
#[derive(Clone, Copy, Debug)]
pub struct FrameTemplate {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub dst_port: u16,
}

impl Default for FrameTemplate {
    fn default() -> Self {
        FrameTemplate {
            src_mac: [0x02, 0, 0, 0, 0, 1],
            dst_mac: [0x02, 0, 0, 0, 0, 2],
            src_ip: [10, 77, 0, 1],
            dst_ip: [10, 77, 0, 2],
            dst_port: 9,
        }
    }
}

impl FrameTemplate {
    /// A UDP frame of `len` bytes (at least [`MIN_FRAME`]) from source port
    /// `10000 + flow`, whose payload starts with `seq` and is filled with a pattern
    /// derived from it, so every byte of a capture can be checked.
    pub fn udp(&self, len: usize, flow: u16, seq: u64) -> Vec<u8> {
        self.udp_ports(len, 10000u16.wrapping_add(flow), self.dst_port, seq)
    }

    /// Like [`FrameTemplate::udp`], with both ports given.
    pub fn udp_ports(&self, len: usize, src_port: u16, dst_port: u16, seq: u64) -> Vec<u8> {
        let len = len.max(MIN_FRAME);
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&self.dst_mac);
        f[6..12].copy_from_slice(&self.src_mac);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip_len = (len - 14) as u16;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&self.src_ip);
        ip[16..20].copy_from_slice(&self.dst_ip);
        let checksum = ipv4_checksum(ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        let udp = &mut f[34..42];
        udp[0..2].copy_from_slice(&src_port.to_be_bytes());
        udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
        udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
        f[42..50].copy_from_slice(&seq.to_be_bytes());
        for (i, byte) in f[50..].iter_mut().enumerate() {
            *byte = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
        }
        f
    }
}

/// The sequence number a frame made by [`FrameTemplate::udp`] carries.
pub fn sequence_of(frame: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(frame.get(42..50)?.try_into().ok()?))
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_requested_size_and_valid_checksum() {
        let t = FrameTemplate::default();
        for len in [10, 60, 61, 1514] {
            let f = t.udp(len, 3, 42);
            assert_eq!(f.len(), len.max(MIN_FRAME));
            assert_eq!(ipv4_checksum(&f[14..34]), 0);
            assert_eq!(sequence_of(&f), Some(42));
        }
    }
}

/// A TCP segment in an Ethernet/IPv4 frame, as the flow analysis reads one.
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    pub src: ([u8; 4], u16),
    pub dst: ([u8; 4], u16),
    /// TCP flag bits (0x02 SYN, 0x10 ACK, ...).
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    /// Options, padded by the caller to a multiple of 4 bytes.
    pub options: &'a [u8],
    /// Payload bytes (zeros).
    pub payload: usize,
}

impl TcpSegment<'_> {
    /// The frame (checksums left zero: nothing the programs check).
    pub fn frame(&self) -> Vec<u8> {
        let tcp_len = 20 + self.options.len();
        let mut frame = vec![0u8; 14 + 20 + tcp_len + self.payload];
        frame[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut frame[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + tcp_len + self.payload) as u16).to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&self.src.0);
        ip[16..20].copy_from_slice(&self.dst.0);
        let tcp = &mut frame[34..34 + tcp_len];
        tcp[0..2].copy_from_slice(&self.src.1.to_be_bytes());
        tcp[2..4].copy_from_slice(&self.dst.1.to_be_bytes());
        tcp[4..8].copy_from_slice(&self.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&self.ack.to_be_bytes());
        tcp[12] = ((tcp_len / 4) as u8) << 4;
        tcp[13] = self.flags;
        tcp[14..16].copy_from_slice(&self.window.to_be_bytes());
        tcp[20..].copy_from_slice(self.options);
        frame
    }
}

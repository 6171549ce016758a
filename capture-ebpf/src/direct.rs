//! Reading a packet where it lies (direct packet access): one bounds check against the
//! end of the packet and one load per field, no copy. Only in a program's own context:
//! global functions cannot be given packet pointers.
use capture_common::packet::PacketView;

/// Offsets beyond this are outside any header the programs parse; the bound also lets
/// the verifier prove `data + offset` stays a sane packet pointer.
const MAX_OFFSET: u32 = 1023;

/// The packet bytes `data..end` of a packet `wire_len` long on the wire.
pub struct Direct {
    pub data: usize,
    pub end: usize,
    pub wire_len: u32,
}

impl Direct {
    #[inline(always)]
    fn at<const N: usize>(&self, offset: u32) -> Option<[u8; N]> {
        if offset > MAX_OFFSET {
            return None;
        }
        let start = self.data + offset as usize;
        if start + N > self.end {
            return None;
        }
        // SAFETY: start..start+N lies inside the packet (checked just above).
        Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) })
    }
}

impl PacketView for Direct {
    #[inline(always)]
    fn wire_len(&self) -> u32 {
        self.wire_len
    }

    #[inline(always)]
    fn byte(&self, offset: u32) -> Option<u8> {
        self.at::<1>(offset).map(|[b]| b)
    }

    #[inline(always)]
    fn half(&self, offset: u32) -> Option<u32> {
        self.at::<2>(offset).map(|b| u32::from(u16::from_be_bytes(b)))
    }

    #[inline(always)]
    fn word(&self, offset: u32) -> Option<u32> {
        self.at::<4>(offset).map(u32::from_be_bytes)
    }
}

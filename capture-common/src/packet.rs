//! Packet bytes as the kernel's flow hashing and TCP analysis read them, so that one
//! parser serves the kernel (a copied window) and user space (stored packets).

/// Packet bytes, read with a bounds check each: bytes, and big-endian 16- and 32-bit
/// fields (a view over packet memory reads those with one check and one load).
pub trait PacketView {
    /// Length of the packet on the wire.
    fn wire_len(&self) -> u32;
    /// The byte at `offset`, if it was captured.
    fn byte(&self, offset: u32) -> Option<u8>;

    /// The big-endian 16-bit field at `offset`.
    #[inline(always)]
    fn half(&self, offset: u32) -> Option<u32> {
        Some((u32::from(self.byte(offset)?) << 8) | u32::from(self.byte(offset + 1)?))
    }

    /// The big-endian 32-bit field at `offset`.
    #[inline(always)]
    fn word(&self, offset: u32) -> Option<u32> {
        Some((self.half(offset)? << 16) | self.half(offset + 2)?)
    }
}

/// A packet held in a byte slice, with its length on the wire.
pub struct SlicePacket<'a> {
    pub data: &'a [u8],
    pub wire_len: u32,
}

impl PacketView for SlicePacket<'_> {
    fn wire_len(&self) -> u32 {
        self.wire_len
    }
    fn byte(&self, offset: u32) -> Option<u8> {
        self.data.get(offset as usize).copied()
    }
}

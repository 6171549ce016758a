//! Packet bytes as the kernel's flow hashing and TCP analysis read them, so that one
//! parser serves the kernel (a copied window) and user space (stored packets).

/// Packet bytes, read one at a time with a bounds check.
pub trait PacketView {
    /// Length of the packet on the wire.
    fn wire_len(&self) -> u32;
    /// The byte at `offset`, if it was captured.
    fn byte(&self, offset: u32) -> Option<u8>;
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

//! The eBPF object as the loader hands it to aya: aligned, and with the native filter
//! written into its placeholder.
use capture_common::{FILTER_MAGIC, FILTER_SLOTS};

use super::KernelError;
use crate::filter::EbpfInsn;

/// An eBPF object in an 8-byte aligned buffer, as ELF parsing wants it.
pub struct Object {
    words: Vec<u64>,
    len: usize,
}

impl Object {
    pub fn new(bytes: &[u8]) -> Self {
        let mut object = Object { words: vec![0; bytes.len().div_ceil(8)], len: bytes.len() };
        object.bytes_mut().copy_from_slice(bytes);
        object
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the buffer holds at least `len` initialised bytes; u8 has no alignment.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.len) }
    }

    /// Writes the native filter into the placeholder of `packet_filter` (found by its
    /// magic): no-ops first, the filter's last instruction on the placeholder's last slot,
    /// right before the subprogram's `exit`, so every offset and relocation in the object
    /// stays put.
    pub fn splice_filter(&mut self, native: &[EbpfInsn]) -> Result<(), KernelError> {
        let broken =
            |why: &str| KernelError::Load(format!("the filter placeholder of the eBPF object {why}"));
        if native.len() > FILTER_SLOTS {
            return Err(KernelError::Load(format!(
                "the filter has {} instructions; the programs hold {FILTER_SLOTS}",
                native.len()
            )));
        }
        let mut magic = [0u8; 16];
        magic[0] = 0x18; // lddw r0, imm64
        magic[4..8].copy_from_slice(&(FILTER_MAGIC as u32).to_le_bytes());
        magic[12..16].copy_from_slice(&((FILTER_MAGIC >> 32) as u32).to_le_bytes());
        let bytes = self.bytes_mut();
        let mut found = bytes.windows(magic.len()).enumerate().filter(|(_, w)| *w == magic).map(|(at, _)| at);
        let (Some(start), None) = (found.next(), found.next()) else {
            return Err(broken("is missing or not unique"));
        };
        let end = start + FILTER_SLOTS * 8;
        if end + 8 > bytes.len() || bytes[end] != 0x95 {
            return Err(broken("is not followed by exit"));
        }
        let nop = EbpfInsn { code: 0x05, dst: 0, src: 0, off: 0, imm: 0 };
        let padding = std::iter::repeat_n(nop, FILTER_SLOTS - native.len());
        for (slot, insn) in bytes[start..end].chunks_exact_mut(8).zip(padding.chain(native.iter().copied())) {
            slot.copy_from_slice(&insn.to_bytes());
        }
        Ok(())
    }
}

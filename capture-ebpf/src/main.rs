//! ringcap's kernel programs.
//!
//! `ringcap_xdp` copies up to SNAPLEN bytes of every packet into the `PACKETS` ring buffer
//! and always returns `XDP_PASS`: capture never takes a packet away from the host. Every
//! packet that does not reach the ring is counted in `COUNTERS`.
#![no_std]
#![no_main]

mod record;
mod select;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use capture_common::RecordFlags;

use record::PacketBytes;

/// Attached to an interface: records the packet, then lets it continue untouched.
#[xdp]
pub fn ringcap_xdp(ctx: XdpContext) -> u32 {
    record::capture(&XdpPacket(&ctx), RecordFlags::INGRESS);
    xdp_action::XDP_PASS
}

/// Packet bytes of an XDP frame, including non-linear (multi-buffer) parts.
struct XdpPacket<'a>(&'a XdpContext);

impl PacketBytes for XdpPacket<'_> {
    #[inline(always)]
    fn len(&self) -> u32 {
        // SAFETY: the context pointer comes from the kernel for this invocation.
        unsafe { aya_ebpf::helpers::bpf_xdp_get_buff_len(self.0.ctx) as u32 }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.0.ingress_ifindex() as u32
    }

    #[inline(always)]
    unsafe fn load(&self, dst: *mut u8, len: u32) -> bool {
        // SAFETY: the caller guarantees `dst` has room for `len` bytes.
        unsafe { aya_ebpf::helpers::bpf_xdp_load_bytes(self.0.ctx, 0, dst.cast(), len) == 0 }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

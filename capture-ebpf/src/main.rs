//! ringcap's kernel programs.
//!
//! `ringcap_xdp` copies up to SNAPLEN bytes of every arriving packet into the `PACKETS`
//! ring buffer and always returns `XDP_PASS`; `ringcap_tc_ingress` and `ringcap_tc_egress`
//! do the same at TC for interfaces without XDP and for what the host sends, and always
//! return `TC_ACT_OK`. Capture never takes a packet away from the host. Every packet that
//! does not reach the ring is counted in `COUNTERS`.
#![no_std]
#![no_main]

mod record;
mod select;
mod tcp;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
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

/// Attached at TC ingress (TCX): packets as the stack receives them, after GRO.
#[classifier]
pub fn ringcap_tc_ingress(ctx: TcContext) -> i32 {
    let packet = TcPacket(&ctx);
    record::capture(&packet, RecordFlags::INGRESS | RecordFlags::TC | packet.gso_flag());
    TC_ACT_OK
}

/// Attached at TC egress (TCX): packets the host sends, before GSO splits them.
#[classifier]
pub fn ringcap_tc_egress(ctx: TcContext) -> i32 {
    let packet = TcPacket(&ctx);
    record::capture(&packet, RecordFlags::EGRESS | RecordFlags::TC | packet.gso_flag());
    TC_ACT_OK
}

/// Packet bytes of an skb at TC.
struct TcPacket<'a>(&'a TcContext);

impl TcPacket<'_> {
    /// `GSO` when the skb stands for several wire packets.
    #[inline(always)]
    fn gso_flag(&self) -> u32 {
        // SAFETY: the skb pointer comes from the kernel for this invocation.
        let segments = unsafe { (*self.0.skb.skb).gso_segs };
        if segments > 1 {
            RecordFlags::GSO
        } else {
            0
        }
    }
}

impl PacketBytes for TcPacket<'_> {
    #[inline(always)]
    fn len(&self) -> u32 {
        self.0.len()
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (*self.0.skb.skb).ifindex }
    }

    #[inline(always)]
    unsafe fn load(&self, dst: *mut u8, len: u32) -> bool {
        // SAFETY: the caller guarantees `dst` has room for `len` bytes.
        unsafe { aya_ebpf::helpers::bpf_skb_load_bytes(self.0.skb.skb.cast(), 0, dst.cast(), len) == 0 }
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

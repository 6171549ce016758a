//! ringcap's kernel programs.
//!
//! `ringcap_xdp` copies up to SNAPLEN bytes of every arriving packet into the `PACKETS`
//! ring buffer and always returns `XDP_PASS`; `ringcap_tc_ingress` and `ringcap_tc_egress`
//! do the same at TC for interfaces without XDP and for what the host sends, and always
//! return `TC_ACT_OK`. Capture never takes a packet away from the host, except in AF_XDP
//! mode: `ringcap_xsk`, for mirror ports, redirects selected packets to AF_XDP sockets and
//! drops the rest. Every packet that does not reach user space is counted in `COUNTERS`.
#![no_std]
#![no_main]
// Atomic adds on shared map values (the BPF target's core lacks AtomicU64::fetch_add).
#![feature(core_intrinsics)]
#![allow(internal_features)]
// The filter placeholder is BPF assembly.
#![feature(asm_experimental_arch)]

mod direct;
mod dns;
mod exchange;
mod filter;
mod flows;
mod http;
mod icmp;
mod packet;
mod payload;
mod record;
mod select;
mod tcp;
mod tls;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK},
    helpers::bpf_xdp_adjust_meta,
    macros::{classifier, map, xdp},
    maps::{HashMap, XskMap},
    programs::{TcContext, XdpContext},
    Global,
};
use capture_common::{Counter, RecordFlags, XskMeta, MAX_XSK_SOCKETS, PACKET_WINDOW};

use packet::PacketBytes;

/// Attached to an interface: records the packet, then lets it continue untouched.
#[xdp]
pub fn ringcap_xdp(ctx: XdpContext) -> u32 {
    record::capture(&XdpPacket(&ctx), RecordFlags::INGRESS);
    select::leave();
    xdp_action::XDP_PASS
}

/// AF_XDP sockets, filled by user space (`--mode afxdp`): one per queue of each interface.
#[map]
static XSKS: XskMap = XskMap::with_max_entries(MAX_XSK_SOCKETS, 0);

/// The first `XSKS` slot of each interface, by ifindex. A socket only takes frames of
/// the interface and queue it is bound to: anything else would be lost uncounted.
#[map]
static XSK_SLOTS: HashMap<u32, u32> = HashMap::with_max_entries(64, 0);

/// AF_XDP mode: a selected packet goes, stamped with its arrival time, to the socket of
/// its receive queue; everything else is dropped. Nothing reaches the host stack.
#[xdp]
pub fn ringcap_xsk(ctx: XdpContext) -> u32 {
    let action = redirect_to_socket(&ctx);
    select::leave();
    action
}

#[inline(always)]
fn redirect_to_socket(ctx: &XdpContext) -> u32 {
    let packet = XdpPacket(ctx);
    let Some(selected) = select::selected(&packet, packet.len(), false, false) else {
        return xdp_action::XDP_DROP;
    };
    stamp(ctx, selected.stamp);
    // SAFETY: the value is a plain u32 that user space never removes while attached.
    let Some(first) = (unsafe { XSK_SLOTS.get(ctx.ingress_ifindex() as u32) }) else {
        packet::count(Counter::XskNoSocket);
        return xdp_action::XDP_DROP;
    };
    match XSKS.redirect(first + ctx.rx_queue_index(), u64::from(xdp_action::XDP_DROP)) {
        Ok(action) => {
            packet::count(Counter::Captured);
            action
        }
        Err(action) => {
            packet::count(Counter::XskNoSocket);
            action
        }
    }
}

/// Non-zero when the kernel lets XDP programs grow the metadata area: a read-only global,
/// so with zero the verifier never visits the helper call a refusing kernel would reject.
#[unsafe(no_mangle)]
static XSK_KERNEL_STAMP: Global<u32> = Global::new(1);

/// Puts the arrival time in the metadata area in front of the frame (AF_XDP copies it
/// along); without room for it, user space stamps the frame on arrival instead.
#[inline(always)]
fn stamp(ctx: &XdpContext, now: u64) {
    if XSK_KERNEL_STAMP.load() == 0 {
        return;
    }
    // SAFETY: grows the metadata area of this frame; the pointers are re-read afterwards.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(XskMeta::LEN as i32)) } != 0 {
        return;
    }
    let meta = ctx.metadata();
    if meta + XskMeta::LEN > ctx.metadata_end() {
        return;
    }
    // SAFETY: the bounds check above is the one the verifier needs.
    unsafe { *(meta as *mut XskMeta) = XskMeta { timestamp_ns: now, magic: XskMeta::MAGIC, reserved: 0 } };
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
    fn wire_segments(&self) -> u32 {
        1
    }

    /// The first (or only) buffer of the frame: headers are always in it.
    #[inline(always)]
    fn direct(&self) -> (usize, usize) {
        (self.0.data(), self.0.data_end())
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
    select::leave();
    TC_ACT_OK
}

/// Attached at TC egress (TCX): packets the host sends, before GSO splits them.
#[classifier]
pub fn ringcap_tc_egress(ctx: TcContext) -> i32 {
    let packet = TcPacket(&ctx);
    record::capture(&packet, RecordFlags::EGRESS | RecordFlags::TC | packet.gso_flag());
    select::leave();
    TC_ACT_OK
}

/// Packet bytes of an skb at TC.
struct TcPacket<'a>(&'a TcContext);

impl TcPacket<'_> {
    /// `GSO` when the skb stands for several wire packets.
    #[inline(always)]
    fn gso_flag(&self) -> u32 {
        if self.wire_segments() > 1 {
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
    fn wire_segments(&self) -> u32 {
        // SAFETY: the skb pointer comes from the kernel for this invocation.
        unsafe { (*self.0.skb.skb).gso_segs }.max(1)
    }

    /// The linear part of the skb, first made to hold at least the first
    /// [`PACKET_WINDOW`] bytes (where every header is) when it holds less.
    #[inline(always)]
    fn direct(&self) -> (usize, usize) {
        let len = self.0.len();
        let linear = self.0.data_end().saturating_sub(self.0.data()) as u32;
        if linear < len && linear < PACKET_WINDOW {
            // A failed pull leaves the skb as it was: the filter then sees less of it.
            let _ = self.0.pull_data(len.min(PACKET_WINDOW));
        }
        (self.0.data(), self.0.data_end())
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

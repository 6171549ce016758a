//! Writing packet records into the ring buffer, shared by every attach point.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    btf_maps::{ArrayOfMaps, RingBuf},
    helpers::{bpf_get_smp_processor_id, bpf_ringbuf_query},
    macros::btf_map,
    Global,
};
use capture_common::{cut::Cut, Counter, RecordFlags, RecordHeader, MAX_CAPTURE_BYTES, MAX_CPUS};

use crate::packet::{count, count_by, PacketBytes};
use crate::select::selected;

/// Bytes copied per packet, set by the loader (`-s SNAPLEN`).
#[unsafe(no_mangle)]
static SNAPLEN: Global<u32> = Global::new(MAX_CAPTURE_BYTES);

/// Ring fill level above which a submit wakes the reader, set by the loader. Below it
/// records go in without a wakeup (a wakeup per record costs more than the record)
/// and the reader finds them on its next timed poll.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: Global<u64> = Global::new(1 << 20);

/// One ring buffer per CPU: CPUs never contend for a ring, and user space reads each with
/// its own thread. The loader creates the rings (sized from `-B`) and fills the array;
/// the inner definition here is only the template the kernel checks them against.
#[btf_map]
static PACKET_RINGS: ArrayOfMaps<RingBuf<u8, 4096>, { MAX_CPUS as usize }> = ArrayOfMaps::new();

/// One ring buffer record: a header and a payload area of a power-of-two size class.
/// The ring buffer needs a reservation size known to the verifier, so the size class
/// is picked by branching on the length, each branch reserving a constant size.
#[repr(C)]
struct Slot<const N: usize> {
    header: RecordHeader,
    data: [u8; N],
}

/// Records the packet (up to SNAPLEN bytes) if it is selected, and counts the outcome.
#[inline(always)]
pub fn capture<P: PacketBytes>(packet: &P, flags: u32) {
    let orig_len = packet.len();
    let Some(selected) = selected(packet, orig_len, flags & RecordFlags::EGRESS != 0, true) else { return };
    let mut cap_len = orig_len;
    let snaplen = SNAPLEN.load();
    if cap_len > snaplen {
        cap_len = snaplen;
    }
    if cap_len > MAX_CAPTURE_BYTES {
        cap_len = MAX_CAPTURE_BYTES;
    }
    let keep = cut_to(cap_len, &selected.cut);
    let saved = cap_len - keep;
    cap_len = keep;
    let header =
        RecordHeader { timestamp_ns: selected.stamp, orig_len, cap_len, ifindex: packet.ifindex(), flags };
    let outcome = match cap_len {
        0 => return,
        1..=64 => emit::<64, P>(packet, header),
        65..=128 => emit::<128, P>(packet, header),
        129..=256 => emit::<256, P>(packet, header),
        257..=512 => emit::<512, P>(packet, header),
        513..=1024 => emit::<1024, P>(packet, header),
        1025..=2048 => emit::<2048, P>(packet, header),
        2049..=4096 => emit::<4096, P>(packet, header),
        4097..=8192 => emit::<8192, P>(packet, header),
        _ => emit::<16384, P>(packet, header),
    };
    match outcome {
        Ok(()) => {
            count(Counter::Captured);
            // Counted once stored: a packet lost on the way is counted as lost, not cut.
            if saved > 0 {
                count_cut(selected.cut.reason, saved);
            }
        }
        Err(lost) => count(lost),
    }
}

/// The bytes of a packet of `cap_len` to store under `cut`: through its transport
/// header when it is cut.
#[inline(always)]
fn cut_to(cap_len: u32, cut: &Cut) -> u32 {
    if cut.reason == 0 || cut.keep == 0 || cut.keep >= cap_len {
        cap_len
    } else {
        cut.keep
    }
}

/// Counts a packet cut for `reason` and the bytes it saved.
#[inline(always)]
fn count_cut(reason: u32, saved: u32) {
    let (packets, bytes) = Counter::cut(reason);
    count(packets);
    count_by(bytes, u64::from(saved));
}

#[inline(always)]
fn emit<const N: usize, P: PacketBytes>(packet: &P, header: RecordHeader) -> Result<(), Counter> {
    // SAFETY: helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let ring = PACKET_RINGS.get(cpu).ok_or(Counter::RingFull)?;
    let mut entry = ring.reserve_untyped::<Slot<N>>(0).ok_or(Counter::RingFull)?;
    let slot = entry.as_mut_ptr();
    // The verifier must see a length in 1..=N: for cap_len in that range this is the
    // identity, and the mask makes the bound provable (a plain comparison gets optimised away).
    let len = ((header.cap_len.wrapping_sub(1)) & (N as u32 - 1)) + 1;
    // SAFETY: `slot` points to a reserved record of `size_of::<Slot<N>>()` bytes and
    // `len <= N`, the size of its data area.
    let loaded = unsafe { packet.load((*slot).data.as_mut_ptr(), len) };
    if !loaded {
        entry.discard(0);
        return Err(Counter::CopyFailed);
    }
    // SAFETY: as above; the header is plain data.
    unsafe { (*slot).header = RecordHeader { cap_len: len, ..header } };
    // Wake the reader once, when this record takes the fill level across the threshold:
    // a forced wakeup per record while the ring stays full would cost an IPI each.
    // SAFETY: `ring` is the map the kernel's lookup returned (a reference to a map is its pointer).
    let filled =
        unsafe { bpf_ringbuf_query(ring as *const RingBuf<u8, 4096> as *mut _, BPF_RB_AVAIL_DATA.into()) };
    let threshold = WAKEUP_BYTES.load();
    let record = core::mem::size_of::<Slot<N>>() as u64 + 8;
    let wakeup = if filled >= threshold && filled < threshold + record {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(wakeup.into());
    Ok(())
}

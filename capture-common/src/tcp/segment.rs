//! TCP segments: parsed out of Ethernet frames, options scanned within the verifier's
//! bounds.
use super::*;

/// What the analysis needs of a TCP segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub key: FlowKey,
    /// The segment goes from the key's lower endpoint to its higher one.
    pub from_lo: bool,
    pub flags: u8,
    /// The raw (unscaled) window field.
    pub window: u16,
    pub seq: u32,
    pub ack: u32,
    /// Payload bytes (from the IP length; a GSO/GRO super-packet counts all its segments).
    pub len: u32,
    /// Where the options are in the packet (offsets).
    pub options_at: u32,
    pub options_end: u32,
    /// TCP timestamp option: TSval and TSecr, when present (after [`scan_options`]).
    pub timestamps: Option<(u32, u32)>,
    /// Window scale option (SYN and SYN-ACK only), when present.
    pub window_scale: Option<u8>,
    /// Wire segments the packet stands for: 1, or a GSO packet's `gso_segs`.
    pub wire_segments: u32,
}

pub const FIN: u8 = 0x01;

pub const SYN: u8 = 0x02;

pub const RST: u8 = 0x04;

pub const ACK: u8 = 0x10;

pub const ECE: u8 = 0x40;

pub const CWR: u8 = 0x80;

#[inline(always)]
pub(super) fn byte<P: PacketView>(p: &P, at: u32) -> Option<u32> {
    p.byte(at).map(u32::from)
}

/// The TCP segment in an Ethernet frame (after up to two VLAN tags; IPv4 first
/// fragments, IPv6 without extension headers), if there is one; its options are read
/// by [`scan_options`] (or an [`OptionScan`]).
#[inline(always)]
pub fn parse<P: PacketView>(p: &P) -> Option<Segment> {
    let mut segment = Segment::default();
    parse_into(p, &mut segment).then_some(segment)
}

/// [`parse`] into `out` (the kernel's stack has no room for a returned segment); false
/// when the packet holds no TCP segment.
#[inline(always)]
pub fn parse_into<P: PacketView>(p: &P, out: &mut Segment) -> bool {
    match parse_fields(p, out) {
        Some(()) => true,
        None => false,
    }
}

/// The options of most segments after the handshake, as Linux sends them: none, or
/// NOP NOP TIMESTAMPS, read with three loads. False when the options are anything else
/// (a SYN's, SACK blocks): an [`OptionScan`] reads those, with the same result.
#[inline(always)]
pub fn common_options<P: PacketView>(p: &P, segment: &mut Segment) -> bool {
    let at = segment.options_at;
    if segment.options_end <= at {
        return true;
    }
    if segment.options_end - at != 12 {
        return false;
    }
    // One load after the other, each returning early: as a tuple of three options, LLVM
    // merged their bounds checks with bitwise operations on the packet's address, which
    // the verifier refuses.
    if p.word(at) != Some(0x0101_080a) {
        return false;
    }
    let Some(value) = p.word(at + 4) else { return false };
    let Some(echo) = p.word(at + 8) else { return false };
    segment.timestamps = Some((value, echo));
    true
}

/// Options a segment's scan looks at, at most (as ePPing does).
pub const MAX_OPTIONS: u32 = 10;

/// A scan of a segment's options for timestamps and the window scale, one option per
/// [`OptionScan::step`], at most [`MAX_OPTIONS`]: the kernel runs the bounded loop in a
/// global function of its own (unrolled in the programs, it would multiply the verifier's
/// states by every later branch), and only for options [`common_options`] does not read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionScan {
    pub at: u32,
    pub end: u32,
    pub ts_value: u32,
    pub ts_echo: u32,
    /// `1` timestamps found, `2` window scale found.
    pub found: u32,
    pub scale: u32,
}

impl OptionScan {
    /// A scan of `segment`'s options.
    pub fn new(segment: &Segment) -> Self {
        OptionScan { at: segment.options_at, end: segment.options_end, ..OptionScan::default() }
    }

    /// Looks at the next option; false when the scan is over.
    #[inline(always)]
    pub fn step<P: PacketView>(&mut self, p: &P) -> bool {
        const NOP: u32 = 1;
        const WINDOW_SCALE: u32 = 3;
        const TIMESTAMPS: u32 = 8;
        if self.at >= self.end {
            return false;
        }
        let Some(kind) = byte(p, self.at) else { return false };
        if kind == NOP {
            self.at += 1;
            return true;
        }
        let Some(len) = byte(p, self.at + 1) else { return false };
        if kind == 0 || len < 2 {
            return false;
        }
        if kind == TIMESTAMPS && len == 10 {
            if let (Some(value), Some(echo)) = (word(p, self.at + 2), word(p, self.at + 6)) {
                (self.ts_value, self.ts_echo) = (value, echo);
                self.found |= 1;
            }
        } else if kind == WINDOW_SCALE && len == 3 {
            if let Some(scale) = byte(p, self.at + 2) {
                self.scale = scale.min(14);
                self.found |= 2;
            }
        }
        self.at += len;
        true
    }

    /// Puts what the scan found into `segment`.
    #[inline(always)]
    pub fn apply(&self, segment: &mut Segment) {
        segment.timestamps = (self.found & 1 != 0).then_some((self.ts_value, self.ts_echo));
        segment.window_scale = (self.found & 2 != 0).then_some(self.scale as u8);
    }
}

/// Fills in `segment`'s timestamps and window scale from its options.
pub fn scan_options<P: PacketView>(p: &P, segment: &mut Segment) {
    let mut scan = OptionScan::new(segment);
    let mut options = 0;
    while options < MAX_OPTIONS && scan.step(p) {
        options += 1;
    }
    scan.apply(segment);
}

//! TCP analysis shared by the kernel (which runs it on every packet) and user space
//! (unit tests, folding histograms): segment parsing, the per-flow state, Wireshark's
//! sequence analysis rules, handshake, timestamp and data RTT samples, and the RTT
//! histogram layout.
use crate::flow::{half, network_layer, word};
use crate::packet::PacketView;
use crate::Counter;

/// Both directions of a connection map to one key: the lower endpoint first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo_addr: [u32; 4],
    pub hi_addr: [u32; 4],
    pub lo_port: u16,
    pub hi_port: u16,
    /// 4 or 6.
    pub family: u32,
}

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
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

#[inline(always)]
fn byte<P: PacketView>(p: &P, at: u32) -> Option<u32> {
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

#[inline(always)]
fn parse_fields<P: PacketView>(p: &P, out: &mut Segment) -> Option<()> {
    let (ethertype, l3) = network_layer(p)?;
    let mut src = [0u32; 4];
    let mut dst = [0u32; 4];
    let (l4, family) = match ethertype {
        0x0800 => {
            let version_ihl = byte(p, l3)?;
            if version_ihl >> 4 != 4
                || version_ihl & 0xf < 5
                || byte(p, l3 + 9)? != 6
                || half(p, l3 + 6)? & 0x1fff != 0
            {
                return None;
            }
            src[0] = word(p, l3 + 12)?;
            dst[0] = word(p, l3 + 16)?;
            (l3 + 4 * (byte(p, l3)? & 0xf), 4)
        }
        0x86dd => {
            if byte(p, l3)? >> 4 != 6 || byte(p, l3 + 6)? != 6 {
                return None;
            }
            let mut i = 0;
            while i < 4 {
                src[i as usize] = word(p, l3 + 8 + 4 * i)?;
                dst[i as usize] = word(p, l3 + 24 + 4 * i)?;
                i += 1;
            }
            (l3 + 40, 6)
        }
        _ => return None,
    };
    // The IP length, but no more than the packet holds (as Wireshark takes it).
    let ip_len = if family == 4 { half(p, l3 + 2)? } else { 40 + half(p, l3 + 4)? };
    let ip_len = ip_len.min(p.wire_len().saturating_sub(l3));
    let (sport, dport) = (half(p, l4)? as u16, half(p, l4 + 2)? as u16);
    let seq = word(p, l4 + 4)?;
    let ack = word(p, l4 + 8)?;
    let header_len = 4 * (byte(p, l4 + 12)? >> 4);
    let flags = byte(p, l4 + 13)? as u8;
    let window = half(p, l4 + 14)? as u16;
    let len = ip_len.saturating_sub(l4 - l3 + header_len);
    let from_lo = (src, sport) <= (dst, dport);
    let (lo, hi) = if from_lo { ((src, sport), (dst, dport)) } else { ((dst, dport), (src, sport)) };
    let key = FlowKey { lo_addr: lo.0, hi_addr: hi.0, lo_port: lo.1, hi_port: hi.1, family };
    *out = Segment {
        key,
        from_lo,
        flags,
        window,
        seq,
        ack,
        len,
        options_at: l4 + 20,
        options_end: l4 + header_len,
        timestamps: None,
        window_scale: None,
    };
    Some(())
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
    match (p.word(at), p.word(at + 4), p.word(at + 8)) {
        (Some(0x0101_080a), Some(value), Some(echo)) => {
            segment.timestamps = Some((value, echo));
            true
        }
        _ => false,
    }
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

/// `a` comes before `b` in sequence space (RFC 1982 serial arithmetic).
#[inline(always)]
pub fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// What one direction of a flow has shown so far.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HalfFlow {
    /// Highest seq + len seen (SYN and FIN count one).
    pub next_seq: u32,
    /// Last acknowledgement number sent.
    pub last_ack: u32,
    /// When `next_seq` last advanced / this side last sent a segment.
    pub next_seq_ns: u64,
    pub last_ack_ns: u64,
    /// Timestamp RTT sample: the TSval waiting for its echo, and when it passed.
    pub ts_value: u32,
    /// Data RTT sample: the sequence number an ACK must reach, and when the data passed.
    pub data_end: u32,
    pub ts_ns: u64,
    pub data_ns: u64,
    /// Last raw window.
    pub window: u16,
    /// Duplicate ACKs sent in a row.
    pub dup_acks: u8,
    /// Window scale option of this side's SYN, [`NO_SCALE`] without one,
    /// [`SCALE_UNKNOWN`] when the SYN was not seen.
    pub window_scale: u8,
    /// `HALF_*` bits.
    pub flags: u32,
}

/// [`HalfFlow::window_scale`] of a side whose SYN was not seen (flow picked up mid-stream).
pub const SCALE_UNKNOWN: u8 = 0xff;
/// [`HalfFlow::window_scale`] of a side whose SYN had no window scale option.
pub const NO_SCALE: u8 = 0xfe;
/// `next_seq` holds a value.
pub const HALF_SEQ: u32 = 1;
/// `last_ack` and `window` hold values.
pub const HALF_ACK: u32 = 2;
/// `ts_value` holds the last TSval sampled.
pub const HALF_TS: u32 = 4;
/// This side's last segment was a keep-alive (Wireshark's `lastsegmentflags`): the other
/// side's answer to it is a keep-alive ACK, not a duplicate ACK.
pub const HALF_KEEP_ALIVE: u32 = 8;

/// The kernel's `struct bpf_spin_lock`: the verifier knows it by this name in the map
/// value's BTF.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct bpf_spin_lock {
    pub val: u32,
}

/// One of the locks that serialise the analysis of a flow: the ingress and egress
/// programs (or two receive queues) on two CPUs see a flow in turn, never at once. The
/// kernel allows no spin lock in an LRU map's values, so flows share [`FLOW_LOCKS`]
/// locks in an array, by [`FlowKey::lock_index`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowLock {
    pub lock: bpf_spin_lock,
}

/// Locks for the flows (a power of two): unrelated flows rarely share one.
pub const FLOW_LOCKS: u32 = 4096;

impl FlowKey {
    /// The lock of this flow's analysis, in `0..FLOW_LOCKS`.
    #[inline(always)]
    pub fn lock_index(&self) -> u32 {
        let mut hash = (u32::from(self.lo_port) << 16 | u32::from(self.hi_port)).wrapping_mul(0x9e37_79b1);
        let mut i = 0;
        while i < 4 {
            hash = (hash ^ self.lo_addr[i]).wrapping_mul(0x85eb_ca6b);
            hash = (hash ^ self.hi_addr[i]).wrapping_mul(0xc2b2_ae35);
            i += 1;
        }
        (hash ^ (hash >> 16)) & (FLOW_LOCKS - 1)
    }
}

/// The analysis state of one connection (both directions), the value of the kernel's
/// flow table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    /// The time of the last packet analysed. Under the flow's lock (a [`FlowLock`]) a
    /// packet's time is made later than it, so the order of the packets' times is the
    /// order they were analysed in, and the files show a reader the sequence the
    /// analysis judged.
    pub last_ns: u64,
    /// Time of the first SYN and of the first SYN-ACK after it.
    pub syn_ns: u64,
    pub syn_ack_ns: u64,
    /// Time of the most recent SYN (Wireshark's `ts_mru_syn`): a retransmitted SYN moves it.
    pub mru_syn_ns: u64,
    /// Sequence number of the SYN: a SYN with another one starts a new connection on the
    /// same ports, one with the same is a retransmission (as Wireshark tells them apart).
    pub syn_seq: u32,
    pub _pad: u32,
    /// Wireshark's iRTT: from the most recent SYN to the first segment with ACK and
    /// without SYN, in either direction; 0 until then (and if that took 0 ns, as there).
    pub initial_rtt_ns: u64,
    /// `FLOW_*` bits.
    pub flags: u64,
    /// [from the lower endpoint, from the higher endpoint].
    pub halves: [HalfFlow; 2],
}

pub const FLOW_SAW_SYN: u64 = 1;
pub const FLOW_SAW_SYN_ACK: u64 = 2;
pub const FLOW_ESTABLISHED: u64 = 4;
/// The SYN went from the key's lower endpoint.
pub const FLOW_SYN_FROM_LO: u64 = 8;

/// A timestamp RTT sample waits at most this long for its echo (ePPing's default).
pub const TS_SAMPLE_TIMEOUT_NS: u64 = 10_000_000_000;
/// Wireshark's out-of-order window when the iRTT is unknown, and its fast
/// retransmission window.
pub const OUT_OF_ORDER_NS: u64 = 3_000_000;
pub const FAST_RETRANSMISSION_NS: u64 = 20_000_000;

/// Where the analysis reports what it found.
pub trait Observer {
    fn count(&mut self, counter: Counter);
    /// An RTT sample of `kind` ([`RTT_SERVER`], ...), in nanoseconds.
    fn rtt(&mut self, kind: u32, ns: u64);
}

/// Sets `state` to that of a flow first seen with `segment` at `now` (in place: the
/// kernel has no stack room for a second state).
#[inline(always)]
pub fn start_flow(state: &mut FlowState, segment: &Segment, now: u64) {
    state.syn_ns = 0;
    state.syn_ack_ns = 0;
    state.mru_syn_ns = 0;
    state.initial_rtt_ns = 0;
    state.flags = 0;
    state.syn_seq = 0;
    if segment.flags & (SYN | ACK) == SYN {
        state.syn_ns = now;
        state.mru_syn_ns = now;
        state.syn_seq = segment.seq;
        state.flags = FLOW_SAW_SYN | if segment.from_lo { FLOW_SYN_FROM_LO } else { 0 };
    }
    for half in state.halves.iter_mut() {
        *half = HalfFlow { window_scale: SCALE_UNKNOWN, ..HalfFlow::default() };
    }
}

/// Analyses one segment of the flow `state` seen at `now` (flag counts are the caller's):
/// the handshake, Wireshark's sequence and ACK analysis, and RTT samples.
#[inline(always)]
pub fn analyse<O: Observer>(state: &mut FlowState, segment: &Segment, now: u64, out: &mut O) {
    handshake(state, segment, now, out);
    let out_of_order_ns = if state.initial_rtt_ns > 0 { state.initial_rtt_ns } else { OUT_OF_ORDER_NS };
    let (lo, hi) = state.halves.split_at_mut(1);
    let (half, rev) = if segment.from_lo { (&mut lo[0], &mut hi[0]) } else { (&mut hi[0], &mut lo[0]) };
    // Every rule looks at the state before this segment, as Wireshark's do.
    let before =
        AckState { flags: half.flags, last_ack: half.last_ack, next_seq: half.next_seq, window: half.window };
    let advanced = sequence(half, rev, segment, now, out_of_order_ns, out);
    samples(half, segment, now, advanced);
    let answers_keep_alive = rev.flags & HALF_KEEP_ALIVE != 0;
    acknowledgement(half, &before, answers_keep_alive, segment, now, out);
    if segment.flags & ACK != 0 {
        rtt_on_ack(rev, segment, now, out);
    }
}

/// What the duplicate-ACK rule needs of the sending side's state before the segment.
struct AckState {
    flags: u32,
    last_ack: u32,
    next_seq: u32,
    window: u16,
}

/// The three-way handshake: split RTT and completions (first SYN and SYN-ACK only: Karn),
/// and Wireshark's iRTT, which bounds its out-of-order window.
#[inline(always)]
fn handshake<O: Observer>(state: &mut FlowState, segment: &Segment, now: u64, out: &mut O) {
    let (syn, ack) = (segment.flags & SYN != 0, segment.flags & ACK != 0);
    let syn_from_lo = state.flags & FLOW_SYN_FROM_LO != 0;
    if syn && !ack {
        // A SYN with a new initial sequence number starts a new connection (port reuse);
        // the same SYN again is a retransmission of it.
        if state.flags & FLOW_SAW_SYN == 0 || segment.seq != state.syn_seq || syn_from_lo != segment.from_lo {
            start_flow(state, segment, now);
        }
        state.mru_syn_ns = now;
        return;
    }
    if ack && !syn && state.mru_syn_ns != 0 && state.initial_rtt_ns == 0 {
        state.initial_rtt_ns = now.saturating_sub(state.mru_syn_ns);
    }
    if syn {
        if state.flags & (FLOW_SAW_SYN | FLOW_SAW_SYN_ACK) == FLOW_SAW_SYN && syn_from_lo != segment.from_lo {
            out.rtt(RTT_SERVER, now.saturating_sub(state.syn_ns));
            state.syn_ack_ns = now;
            state.flags |= FLOW_SAW_SYN_ACK;
        }
    } else if ack
        && state.flags & (FLOW_SAW_SYN_ACK | FLOW_ESTABLISHED) == FLOW_SAW_SYN_ACK
        && syn_from_lo == segment.from_lo
    {
        out.rtt(RTT_CLIENT, now.saturating_sub(state.syn_ack_ns));
        out.count(Counter::TcpHandshakes);
        state.flags |= FLOW_ESTABLISHED;
    }
}

/// The window scale that applies to `rev`'s window, if known (scaling is on only when
/// both SYNs carried the option).
#[inline(always)]
fn effective_scale(half: &HalfFlow, rev: &HalfFlow) -> Option<u32> {
    match (half.window_scale, rev.window_scale) {
        (SCALE_UNKNOWN, _) | (_, SCALE_UNKNOWN) => None,
        (NO_SCALE, _) | (_, NO_SCALE) => Some(0),
        (_, scale) => Some(u32::from(scale)),
    }
}

/// Wireshark's sequence analysis of the sending side, then its `next_seq`; true when
/// the segment carried new data (advanced `next_seq`).
#[inline(always)]
fn sequence<O: Observer>(
    half: &mut HalfFlow,
    rev: &HalfFlow,
    segment: &Segment,
    now: u64,
    out_of_order_ns: u64,
    out: &mut O,
) -> bool {
    let flags = segment.flags;
    let syn_fin_rst = flags & (SYN | FIN | RST) != 0;
    let syn_or_fin = u32::from(flags & (SYN | FIN) != 0);
    let data_end = segment.seq.wrapping_add(segment.len);
    let seq_end = data_end.wrapping_add(syn_or_fin);
    if flags & SYN != 0 {
        half.window_scale = segment.window_scale.unwrap_or(NO_SCALE);
    }
    let mut zero_window_probe = false;
    if half.flags & HALF_SEQ != 0 {
        let next = half.next_seq;
        let rev_acked = rev.flags & HALF_ACK != 0;
        zero_window_probe = segment.len == 1 && segment.seq == next && rev_acked && rev.window == 0;
        if seq_before(next, segment.seq) && flags & RST == 0 {
            out.count(Counter::TcpLostSegment);
        }
        let keep_alive = segment.len <= 1 && !syn_fin_rst && segment.seq == next.wrapping_sub(1);
        if keep_alive {
            out.count(Counter::TcpKeepAlive);
            half.flags |= HALF_KEEP_ALIVE;
        } else {
            half.flags &= !HALF_KEEP_ALIVE;
        }
        if let Some(scale) = effective_scale(half, rev) {
            if segment.len > 0
                && !syn_fin_rst
                && rev_acked
                && data_end == rev.last_ack.wrapping_add(u32::from(rev.window) << scale)
            {
                out.count(Counter::TcpWindowFull);
            }
        }
        if !keep_alive && (segment.len > 0 || syn_or_fin != 0) {
            // Wireshark: a segment of more than a byte starting one before `next` brings
            // new data (after a zero window probe); it can still be spurious.
            let not_advanced =
                seq_before(segment.seq, next) && !(segment.len > 1 && segment.seq == next.wrapping_sub(1));
            let kind = if segment.len > 0 && rev.last_ack != 0 && !seq_before(rev.last_ack, data_end) {
                Some(Counter::TcpSpuriousRetransmission)
            } else if not_advanced
                && rev.dup_acks >= 2
                && rev.last_ack == segment.seq
                && now.saturating_sub(rev.last_ack_ns) < FAST_RETRANSMISSION_NS
            {
                Some(Counter::TcpFastRetransmission)
            } else if not_advanced
                && now.saturating_sub(half.next_seq_ns) < out_of_order_ns
                && next != seq_end
            {
                Some(Counter::TcpOutOfOrder)
            } else if not_advanced {
                Some(Counter::TcpRetransmission)
            } else {
                None
            };
            if let Some(kind) = kind {
                out.count(kind);
                // Karn: a retransmission of the timed data voids the data RTT sample.
                if half.data_ns != 0 && seq_before(segment.seq, half.data_end) {
                    half.data_ns = 0;
                }
            }
        }
    }
    let advances = half.flags & HALF_SEQ == 0 || seq_before(half.next_seq, seq_end);
    if advances && !zero_window_probe {
        half.next_seq = seq_end;
        half.next_seq_ns = now;
        half.flags |= HALF_SEQ;
    }
    advances && !zero_window_probe
}

/// RTT samples this segment starts: a timestamp (ePPing's rules: data or SYN/FIN only,
/// never pure ACKs; only a TSval newer than the last one sampled; one sample waiting at a
/// time, dropped after [`TS_SAMPLE_TIMEOUT_NS`]) and a data sample (new payload only, one
/// at a time, voided by a retransmission: Karn; the handshake has its own samples).
#[inline(always)]
fn samples(half: &mut HalfFlow, segment: &Segment, now: u64, advanced: bool) {
    if segment.len == 0 && segment.flags & (SYN | FIN) == 0 {
        return;
    }
    if let Some((value, _)) = segment.timestamps {
        let free = half.ts_ns == 0 || now.saturating_sub(half.ts_ns) > TS_SAMPLE_TIMEOUT_NS;
        let newer = half.flags & HALF_TS == 0 || seq_before(half.ts_value, value);
        if free && newer {
            half.ts_value = value;
            half.ts_ns = now;
            half.flags |= HALF_TS;
        }
    }
    if advanced && segment.len > 0 && half.data_ns == 0 {
        half.data_end = half.next_seq;
        half.data_ns = now;
    }
}

/// Duplicate ACKs of the sending side (Wireshark's rule, on the state `before` this
/// segment; the same ACK answering a keep-alive is Wireshark's keep-alive ACK instead),
/// then its `last_ack`, window and the time of both: as in Wireshark, every
/// segment sets them (a SYN without ACK too), and the time moves even when the
/// acknowledgement number does not (the fast retransmission window runs from it).
#[inline(always)]
fn acknowledgement<O: Observer>(
    half: &mut HalfFlow,
    before: &AckState,
    answers_keep_alive: bool,
    segment: &Segment,
    now: u64,
    out: &mut O,
) {
    let ack_changed = before.flags & HALF_ACK == 0 || segment.ack != before.last_ack;
    if !ack_changed
        && segment.len == 0
        && segment.flags & (SYN | FIN | RST) == 0
        && segment.window != 0
        && segment.window == before.window
        && before.flags & HALF_SEQ != 0
        && segment.seq == before.next_seq
        && !answers_keep_alive
    {
        half.dup_acks = half.dup_acks.saturating_add(1);
        out.count(Counter::TcpDuplicateAck);
    }
    if ack_changed {
        half.dup_acks = 0;
    }
    half.last_ack = segment.ack;
    half.last_ack_ns = now;
    half.window = segment.window;
    half.flags |= HALF_ACK;
}

/// Completes the other side's waiting RTT samples that this ACK answers.
#[inline(always)]
fn rtt_on_ack<O: Observer>(other: &mut HalfFlow, segment: &Segment, now: u64, out: &mut O) {
    if let Some((_, echo)) = segment.timestamps {
        if other.ts_ns != 0 && echo == other.ts_value {
            out.rtt(RTT_TIMESTAMP, now.saturating_sub(other.ts_ns));
            other.ts_ns = 0;
        }
    }
    if other.data_ns != 0 && !seq_before(segment.ack, other.data_end) {
        out.rtt(RTT_DATA, now.saturating_sub(other.data_ns));
        other.data_ns = 0;
    }
}

/// Buckets per RTT histogram: log-linear, four sub-buckets per power of two of nanoseconds.
pub const RTT_BUCKETS: u32 = 256;
/// Histograms in the kernel's RTT array, per slot: the handshake's server and client
/// sides, TCP timestamps, data to ACK.
pub const RTT_KINDS: u32 = 4;
pub const RTT_SERVER: u32 = 0;
pub const RTT_CLIENT: u32 = 1;
pub const RTT_TIMESTAMP: u32 = 2;
pub const RTT_DATA: u32 = 3;

/// The bucket of a value in nanoseconds.
#[inline(always)]
pub fn rtt_bucket(ns: u64) -> u32 {
    if ns < 4 {
        return ns as u32;
    }
    let log = 63 - ns.leading_zeros();
    let sub = ((ns >> (log - 2)) & 3) as u32;
    4 * (log - 1) + sub
}

/// The smallest value of a bucket.
pub fn rtt_bucket_floor(bucket: u32) -> u64 {
    if bucket < 4 {
        return u64::from(bucket);
    }
    let log = bucket / 4 + 1;
    (4 + u64::from(bucket % 4)) << (log - 2)
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowState {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::SlicePacket;

    /// The common-options fast path agrees with the full scan wherever it answers.
    #[test]
    fn common_options_agree_with_the_scan() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let linux = [1u8, 1, 8, 10, 0, 0, 1, 2, 0, 0, 3, 4];
        let mut answered = 0;
        for case in 0..20_000 {
            let mut options: Vec<u8> = match case % 3 {
                0 => linux.to_vec(),
                1 => linux.iter().map(|&b| if next() % 8 == 0 { next() as u8 } else { b }).collect(),
                _ => {
                    (0..(next() % 11) * 4).map(|_| [0u8, 1, 2, 3, 4, 5, 8, 10][next() as usize % 8]).collect()
                }
            };
            options.truncate(40);
            let mut frame = vec![0u8; 54];
            frame[12..14].copy_from_slice(&[0x08, 0x00]);
            frame[14] = 0x45;
            frame[23] = 6;
            frame[46] = ((5 + options.len() / 4) as u8) << 4;
            frame.extend_from_slice(&options);
            let total = (frame.len() - 14) as u16;
            frame[16..18].copy_from_slice(&total.to_be_bytes());
            let packet = SlicePacket { data: &frame, wire_len: frame.len() as u32 };
            let parsed = parse(&packet).unwrap();
            let mut scanned = parsed;
            scan_options(&packet, &mut scanned);
            let mut fast = parsed;
            if common_options(&packet, &mut fast) {
                answered += 1;
                assert_eq!(fast, scanned, "{options:?}");
            }
        }
        assert!(answered > 6_000, "the fast path answers the common cases ({answered})");
    }

    #[test]
    fn buckets_are_monotonic_and_invertible() {
        let mut last = 0;
        for ns in [0u64, 1, 3, 4, 5, 7, 8, 1000, 1_000_000, 123_456_789, 1 << 61] {
            let b = rtt_bucket(ns);
            assert!(b >= last && b < RTT_BUCKETS, "{ns} -> {b}");
            assert!(
                rtt_bucket_floor(b) <= ns && (b + 1 >= RTT_BUCKETS || rtt_bucket_floor(b + 1) > ns),
                "{ns}"
            );
            last = b;
        }
    }

    /// Counts and RTT samples an analysis reports.
    #[derive(Default)]
    struct Seen {
        counts: std::collections::HashMap<&'static str, u32>,
        rtts: Vec<(u32, u64)>,
    }

    impl Observer for Seen {
        fn count(&mut self, counter: Counter) {
            *self.counts.entry(counter.name()).or_default() += 1;
        }
        fn rtt(&mut self, kind: u32, ns: u64) {
            self.rtts.push((kind, ns));
        }
    }

    /// A connection between a client (the key's lower endpoint) and a server, fed
    /// segment by segment at given times.
    struct Conversation {
        state: FlowState,
        seen: Seen,
        timestamps: Option<(u32, u32)>,
    }

    impl Conversation {
        fn new() -> Self {
            Conversation { state: FlowState::default(), seen: Seen::default(), timestamps: None }
        }

        /// The next segment carries TCP timestamps (TSval, TSecr).
        fn stamped(&mut self, value: u32, echo: u32) -> &mut Self {
            self.timestamps = Some((value, echo));
            self
        }

        #[allow(clippy::too_many_arguments)]
        fn segment(
            &mut self,
            at_ms: u64,
            from_client: bool,
            flags: u8,
            seq: u32,
            ack: u32,
            len: u32,
            window: u16,
        ) {
            let timestamps = self.timestamps.take();
            let segment = Segment {
                from_lo: from_client,
                flags,
                seq,
                ack,
                len,
                window,
                timestamps,
                window_scale: (flags & SYN != 0).then_some(0),
                ..Segment::default()
            };
            // Monotonic time is never 0 (0 marks an unset time in the state).
            let now = (1000 + at_ms) * 1_000_000;
            if self.state.flags == 0 && self.state.halves[0].window_scale == 0 {
                start_flow(&mut self.state, &segment, now);
            }
            analyse(&mut self.state, &segment, now, &mut self.seen);
        }

        fn count(&self, name: &str) -> u32 {
            self.seen.counts.get(name).copied().unwrap_or(0)
        }
    }

    /// Handshake (client ISN 100, server ISN 500) and one 1000-byte segment acked.
    fn established() -> Conversation {
        let mut c = Conversation::new();
        c.segment(0, true, SYN, 100, 0, 0, 1000);
        c.segment(10, false, SYN | ACK, 500, 101, 0, 1000);
        c.segment(20, true, ACK, 101, 501, 0, 1000);
        c
    }

    #[test]
    fn handshake_rtt_is_split_at_the_capture_point() {
        let c = established();
        assert_eq!(c.count("tcp_handshakes"), 1);
        assert_eq!(c.seen.rtts, [(RTT_SERVER, 10_000_000), (RTT_CLIENT, 10_000_000)]);
        assert_eq!(c.state.initial_rtt_ns, 20_000_000);
    }

    #[test]
    fn duplicate_acks_then_a_fast_retransmission() {
        let mut c = established();
        c.segment(30, true, ACK, 101, 501, 100, 1000); // 101..201
        c.segment(31, true, ACK, 301, 501, 100, 1000); // 201..301 not captured
        assert_eq!(c.count("tcp_lost_segment"), 1);
        for ms in [32, 33, 34] {
            c.segment(ms, false, ACK, 501, 201, 0, 1000);
        }
        assert_eq!(c.count("tcp_duplicate_ack"), 2, "the first ACK of 201 is not a duplicate");
        c.segment(35, true, ACK, 201, 501, 100, 1000);
        assert_eq!(c.count("tcp_fast_retransmission"), 1);
        assert_eq!(c.count("tcp_retransmission"), 0);
    }

    #[test]
    fn retransmission_kinds_follow_wiresharks_order() {
        let mut c = established();
        c.segment(30, true, ACK, 101, 501, 100, 1000);
        c.segment(31, false, ACK, 501, 201, 0, 1000);
        // Already acknowledged: spurious.
        c.segment(40, true, ACK, 101, 501, 100, 1000);
        assert_eq!(c.count("tcp_spurious_retransmission"), 1);
        c.segment(100, true, ACK, 201, 501, 100, 1000);
        c.segment(101, true, ACK, 301, 501, 100, 1000);
        // Within the iRTT (20 ms) of the last advance and not its repeat: out of order.
        c.segment(105, true, ACK, 201, 501, 100, 1000);
        assert_eq!(c.count("tcp_out_of_order"), 1);
        // Long after: a plain retransmission.
        c.segment(500, true, ACK, 301, 501, 100, 1000);
        assert_eq!(c.count("tcp_retransmission"), 1);
    }

    #[test]
    fn keep_alives_window_full_and_sequence_wrap() {
        let mut c = Conversation::new();
        let isn = u32::MAX - 50; // the data crosses 2^32
        c.segment(0, true, SYN, isn, 0, 0, 1000);
        c.segment(1, false, SYN | ACK, 500, isn.wrapping_add(1), 0, 100);
        c.segment(2, true, ACK, isn.wrapping_add(1), 501, 0, 1000);
        // The server's window is 100 bytes from its last ACK: 100 bytes fill it.
        c.segment(3, true, ACK, isn.wrapping_add(1), 501, 100, 1000);
        assert_eq!(c.count("tcp_window_full"), 1);
        assert_eq!(c.count("tcp_lost_segment") + c.count("tcp_retransmission"), 0, "wrap-aware");
        c.segment(4, false, ACK, 501, isn.wrapping_add(101), 0, 100);
        c.segment(5000, true, ACK, isn.wrapping_add(100), 501, 0, 1000);
        assert_eq!(c.count("tcp_keep_alive"), 1);
        assert_eq!(c.count("tcp_retransmission"), 0, "a keep-alive is not a retransmission");
        // The same ACK again, answering the keep-alive: Wireshark's keep-alive ACK.
        c.segment(5001, false, ACK, 501, isn.wrapping_add(101), 0, 100);
        assert_eq!(c.count("tcp_duplicate_ack"), 0, "an ACK to a keep-alive is not a duplicate ACK");
        // Until the client sends again, every repeat answers its keep-alive.
        c.segment(5002, false, ACK, 501, isn.wrapping_add(101), 0, 100);
        assert_eq!(c.count("tcp_duplicate_ack"), 0);
    }

    #[test]
    fn timestamp_and_data_rtt_samples() {
        let mut c = established();
        c.stamped(7, 1).segment(30, true, ACK, 101, 501, 100, 1000);
        // A retransmission of the timed data voids the data sample (Karn).
        c.stamped(7, 1).segment(31, true, ACK, 101, 501, 100, 1000);
        c.stamped(40, 7).segment(35, false, ACK, 501, 201, 0, 1000);
        let samples: Vec<_> = c.seen.rtts.iter().filter(|(kind, _)| *kind >= RTT_TIMESTAMP).collect();
        assert_eq!(samples, [&(RTT_TIMESTAMP, 5_000_000)]);
        c.segment(40, true, ACK, 201, 501, 100, 1000);
        c.segment(46, false, ACK, 501, 301, 0, 1000);
        assert_eq!(c.seen.rtts.last(), Some(&(RTT_DATA, 6_000_000)));
    }

    #[test]
    fn both_directions_share_a_key() {
        let mut f = [0u8; 54];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 9]);
        f[30..34].copy_from_slice(&[10, 0, 0, 1]);
        f[34..36].copy_from_slice(&5555u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[47] = SYN;
        let there = parse(&SlicePacket { data: &f, wire_len: 54 }).unwrap();
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 9]);
        f[34..36].copy_from_slice(&80u16.to_be_bytes());
        f[36..38].copy_from_slice(&5555u16.to_be_bytes());
        f[47] = SYN | ACK;
        let back = parse(&SlicePacket { data: &f, wire_len: 54 }).unwrap();
        assert_eq!(there.key, back.key);
        assert_ne!(there.from_lo, back.from_lo);
        assert_eq!(back.flags, SYN | ACK);
    }
}

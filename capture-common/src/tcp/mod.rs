//! TCP analysis shared by the kernel (which runs it on every packet) and user space
//! (unit tests, folding histograms): segment parsing, the per-flow state, Wireshark's
//! sequence analysis rules, handshake, timestamp and data RTT samples, and the RTT
//! histogram layout.
use crate::flow::{half, network_layer, word};
use crate::packet::PacketView;
use crate::Counter;

mod rtt;
mod segment;
#[cfg(test)]
mod tests;

pub use rtt::*;
pub use segment::*;

/// Both directions of a connection map to one key: the lower endpoint first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo_addr: [u32; 4],
    pub hi_addr: [u32; 4],
    pub lo_port: u16,
    pub hi_port: u16,
    /// 4 or 6.
    pub family: u8,
    /// The IP protocol: TCP, or UDP (in the table only while flows are cut).
    pub protocol: u8,
    pub _pad: u16,
}

impl FlowKey {
    /// The key of the flow between endpoints `lo` and `hi` (address words and port, the
    /// lower endpoint first).
    #[inline(always)]
    pub fn new(lo: ([u32; 4], u16), hi: ([u32; 4], u16), family: u8, protocol: u8) -> Self {
        FlowKey { lo_addr: lo.0, hi_addr: hi.0, lo_port: lo.1, hi_port: hi.1, family, protocol, _pad: 0 }
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
    let key = FlowKey::new(lo, hi, family, 6);
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
        wire_segments: 1,
    };
    Some(())
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
    /// What the per-flow cut has counted of this direction.
    pub cut: crate::cut::CutHalf,
    /// Wire segments this side sent (a GSO packet counts as the segments it stands for)
    /// and their payload bytes.
    pub segments: u64,
    pub payload_bytes: u64,
}

/// What one side of a connection did that an operator looks for (`ringcap top`,
/// `/v1/flows`): Wireshark's events on the segments it sent, and the RTT samples its
/// segments completed, which measure the path from the capture point to this side and
/// back. Kept apart from [`HalfFlow`]: most packets touch none of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
pub struct FlowEvents {
    /// `tcp.analysis.retransmission`, SYNs and SYN-ACKs included...
    pub retransmissions: u32,
    /// ...of which SYNs and SYN-ACKs (any retransmission kind).
    pub syn_retransmissions: u32,
    pub fast_retransmissions: u32,
    pub spurious_retransmissions: u32,
    pub out_of_order: u32,
    pub lost_segments: u32,
    pub duplicate_acks: u32,
    pub zero_windows: u32,
    pub resets: u32,
    pub fins: u32,
    /// Wire segments of the retransmissions above (a GSO packet retransmitted counts as
    /// its segments), the numerator of a retransmission rate over `segments`.
    pub retransmitted_segments: u32,
    pub rtt_samples: u32,
    pub min_rtt_ns: u64,
    pub last_rtt_ns: u64,
}

impl FlowEvents {
    /// Counts an analysis event (the events kept per flow; others are not).
    #[inline(always)]
    fn count(&mut self, counter: Counter) {
        let field = match counter {
            Counter::TcpRetransmission => &mut self.retransmissions,
            Counter::TcpSynRetransmission => &mut self.syn_retransmissions,
            Counter::TcpFastRetransmission => &mut self.fast_retransmissions,
            Counter::TcpSpuriousRetransmission => &mut self.spurious_retransmissions,
            Counter::TcpOutOfOrder => &mut self.out_of_order,
            Counter::TcpLostSegment => &mut self.lost_segments,
            Counter::TcpDuplicateAck => &mut self.duplicate_acks,
            Counter::TcpZeroWindow => &mut self.zero_windows,
            _ => return,
        };
        *field = field.saturating_add(1);
    }

    #[inline(always)]
    fn rtt(&mut self, ns: u64) {
        self.rtt_samples = self.rtt_samples.saturating_add(1);
        self.last_rtt_ns = ns;
        if self.min_rtt_ns == 0 || ns < self.min_rtt_ns {
            self.min_rtt_ns = ns;
        }
    }
}

/// Reports to the caller's observer and keeps the flow's own count of the sending side.
struct FlowObserver<'a, O> {
    events: &'a mut FlowEvents,
    out: &'a mut O,
    /// The segment's wire segments.
    wire_segments: u32,
}

impl<O: Observer> Observer for FlowObserver<'_, O> {
    #[inline(always)]
    fn count(&mut self, counter: Counter) {
        self.events.count(counter);
        if counter.is_retransmission() {
            let e = &mut *self.events;
            e.retransmitted_segments = e.retransmitted_segments.saturating_add(self.wire_segments);
        }
        self.out.count(counter);
    }

    #[inline(always)]
    fn rtt(&mut self, kind: u32, ns: u64) {
        self.events.rtt(ns);
        self.out.rtt(kind, ns);
    }
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

/// The analysis state of one connection (both directions), the value of the kernel's
/// flow table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    /// Non-zero while a CPU works on the flow: the lock that serialises the packets of
    /// a flow seen on two CPUs (ingress and egress programs, two receive queues). A word
    /// of the flow's own, taken with an atomic compare-and-exchange: no helper call, no
    /// lock table (the kernel allows no `bpf_spin_lock` in an LRU map's values).
    pub lock: u64,
    /// The time of the last packet analysed. Under the flow's lock a
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
    /// Time of the flow's first packet (of its latest connection on these ports).
    pub first_ns: u64,
    /// Like `halves`.
    pub events: [FlowEvents; 2],
}

pub const FLOW_SAW_SYN: u64 = 1;
pub const FLOW_SAW_SYN_ACK: u64 = 2;
pub const FLOW_ESTABLISHED: u64 = 4;
/// The SYN went from the key's lower endpoint.
pub const FLOW_SYN_FROM_LO: u64 = 8;
/// The SYN's target answered it with a RST: the connection was refused.
pub const FLOW_REFUSED: u64 = 16;

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
    state.first_ns = now;
    state.events = [FlowEvents::default(); 2];
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
    // A branch, not an index: the verifier sees a constant offset either way.
    let events = if segment.from_lo { &mut state.events[0] } else { &mut state.events[1] };
    let out = &mut FlowObserver { events, out, wire_segments: segment.wire_segments };
    half.segments += u64::from(segment.wire_segments);
    half.payload_bytes += u64::from(segment.len);
    if segment.flags & RST != 0 {
        out.events.resets = out.events.resets.saturating_add(1);
    }
    if segment.flags & FIN != 0 {
        out.events.fins = out.events.fins.saturating_add(1);
    }
    if segment.window == 0 && segment.flags & (SYN | FIN | RST) == 0 {
        out.count(Counter::TcpZeroWindow);
    }
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
        let retransmitted =
            state.flags & FLOW_SAW_SYN != 0 && segment.seq == state.syn_seq && syn_from_lo == segment.from_lo;
        if !retransmitted {
            // Wireshark flags the reuse when the SYN's sender sent on the flow before.
            let sender = if segment.from_lo { &state.halves[0] } else { &state.halves[1] };
            if sender.flags & HALF_SEQ != 0 {
                out.count(Counter::TcpReusedPorts);
            }
            start_flow(state, segment, now);
        }
        state.mru_syn_ns = now;
        return;
    }
    // Refused: a RST from the SYN's target that acknowledges the SYN (RFC 9293: in
    // SYN-SENT only such a RST is acceptable), before any SYN-ACK.
    if segment.flags & (RST | ACK) == RST | ACK
        && segment.ack == state.syn_seq.wrapping_add(1)
        && state.flags & (FLOW_SAW_SYN | FLOW_SAW_SYN_ACK | FLOW_REFUSED) == FLOW_SAW_SYN
        && syn_from_lo != segment.from_lo
    {
        out.count(Counter::TcpSynRefused);
        state.flags |= FLOW_REFUSED;
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
                if flags & SYN != 0 {
                    out.count(Counter::TcpSynRetransmission);
                }
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

#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowState {}

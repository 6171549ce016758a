//! The analysis against hand-made segments (Wireshark's verdicts on the same captures are
//! checked by the daemon's tests).
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
            _ => (0..(next() % 11) * 4).map(|_| [0u8, 1, 2, 3, 4, 5, 8, 10][next() as usize % 8]).collect(),
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
        assert!(rtt_bucket_floor(b) <= ns && (b + 1 >= RTT_BUCKETS || rtt_bucket_floor(b + 1) > ns), "{ns}");
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

//! The TCP connections of the kernel's flow table as an operator reads them (`ringcap
//! top`, `/v1/flows`): who talks to whom, in which state, what each side sent and what
//! went wrong on the way, sorted by what is asked; and the servers behind unanswered and
//! refused connection attempts, and who sends resets. Built at each sweep from the
//! table's per-flow counts; a flow the table evicted is no longer listed.
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Instant;

use capture_common::tcp::{
    FlowEvents, FlowKey, FlowState, FLOW_ESTABLISHED, FLOW_REFUSED, FLOW_SAW_SYN, FLOW_SAW_SYN_ACK,
    FLOW_SYN_FROM_LO,
};
use serde::Serialize;

use crate::capture::clock::WallClock;
use crate::timefmt::rfc3339;

/// Where a connection stands, as far as the capture point saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// A SYN waits for its answer (for less than `--syn-timeout`).
    Connecting,
    /// A SYN got no answer within `--syn-timeout`: the client sent nothing but SYNs.
    Unanswered,
    /// The server answered the SYN with a RST.
    Refused,
    /// The server sent its SYN-ACK, the client never went on (a half-open connection,
    /// what a SYN flood leaves).
    HalfOpen,
    /// A side sent a RST (the client giving up on its SYN included).
    Reset,
    /// The connection is up: the handshake was seen, or the client went on after its
    /// SYN (the answer passed elsewhere, or in the direction not captured).
    Established,
    /// Both sides sent their FIN.
    Closed,
    /// Picked up mid-stream (no SYN seen).
    MidStream,
}

/// The index in [`FlowState::halves`] of the side that sent the SYN.
fn client_index(state: &FlowState) -> usize {
    if state.flags & FLOW_SYN_FROM_LO != 0 {
        0
    } else {
        1
    }
}

/// The connection attempt still waits for its answer: a SYN, neither a SYN-ACK nor a
/// refusal seen, and the client sent nothing but its SYN and retransmissions of it (an
/// ACK or data from it means it was answered, maybe unseen; a RST, that it gave up).
pub fn waiting_for_answer(state: &FlowState) -> bool {
    let client = client_index(state);
    let sent_only_syns =
        state.halves[client].segments <= 1 + u64::from(state.events[client].syn_retransmissions);
    state.flags & (FLOW_SAW_SYN | FLOW_SAW_SYN_ACK | FLOW_REFUSED) == FLOW_SAW_SYN && sent_only_syns
}

/// What one direction of a connection carried and met: its wire segments (a GSO
/// packet counts as its segments) and payload bytes, and the events and RTT samples of
/// its segments as the kernel keeps them ([`FlowEvents`]; an RTT sample measures the path
/// from the capture point to this direction's sender and back).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct DirectionCounts {
    pub segments: u64,
    pub payload_bytes: u64,
    #[serde(flatten)]
    pub events: FlowEvents,
}

impl DirectionCounts {
    /// Every retransmission event: plain, fast and spurious.
    fn all_retransmissions(&self) -> u64 {
        let e = &self.events;
        u64::from(e.retransmissions)
            + u64::from(e.fast_retransmissions)
            + u64::from(e.spurious_retransmissions)
    }

    /// The last RTT sample, in milliseconds.
    fn last_rtt_ms(&self) -> Option<f64> {
        (self.events.last_rtt_ns > 0).then(|| self.events.last_rtt_ns as f64 / 1e6)
    }
}

/// One TCP connection of the flow table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRecord {
    /// The SYN's sender and its target; for a connection picked up mid-stream, the
    /// endpoint with the lower port is taken for the server (`roles_from_syn` false).
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub roles_from_syn: bool,
    pub state: ConnectionState,
    /// The connection's first and last packet (Unix time, RFC 3339 in JSON).
    #[serde(serialize_with = "as_rfc3339")]
    pub first_seen: u64,
    #[serde(serialize_with = "as_rfc3339")]
    pub last_seen: u64,
    pub to_server: DirectionCounts,
    pub to_client: DirectionCounts,
    /// Both directions' retransmissions of every kind.
    pub retransmissions: u64,
    /// Both sides' last RTT samples added (client side + server side: the connection's
    /// RTT as its ends see it); one side's when only it has a sample.
    pub rtt_ms: Option<f64>,
}

/// Unix nanoseconds as RFC 3339 text: records hold numbers, answers show times.
fn as_rfc3339<S: serde::Serializer>(ns: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(*ns))
}

/// The endpoint of a flow key: (address, port), lower first.
fn endpoints(key: &FlowKey) -> (SocketAddr, SocketAddr) {
    let address = |words: [u32; 4]| -> IpAddr {
        if key.family == 4 {
            IpAddr::V4(Ipv4Addr::from(words[0]))
        } else {
            let mut bytes = [0u8; 16];
            for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
                chunk.copy_from_slice(&word.to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
    };
    (SocketAddr::new(address(key.lo_addr), key.lo_port), SocketAddr::new(address(key.hi_addr), key.hi_port))
}

impl FlowRecord {
    /// The record of a TCP flow seen at `now_ns` (CLOCK_MONOTONIC, as the flow's times);
    /// `syn_timeout_ns`: when a waiting SYN counts as unanswered.
    pub fn new(
        key: &FlowKey,
        state: &FlowState,
        now_ns: u64,
        syn_timeout_ns: u64,
        clock: &WallClock,
    ) -> Self {
        let (lo, hi) = endpoints(key);
        let roles_from_syn = state.flags & FLOW_SAW_SYN != 0;
        let client_is_lo =
            if roles_from_syn { state.flags & FLOW_SYN_FROM_LO != 0 } else { key.lo_port > key.hi_port };
        let side = |index: usize| {
            let half = &state.halves[index];
            DirectionCounts {
                segments: half.segments,
                payload_bytes: half.payload_bytes,
                events: state.events[index],
            }
        };
        let (from_lo, from_hi) = (side(0), side(1));
        let (client, server, to_server, to_client) =
            if client_is_lo { (lo, hi, from_lo, from_hi) } else { (hi, lo, from_hi, from_lo) };
        let client_went_on = to_server.segments > 1 + u64::from(to_server.events.syn_retransmissions);
        let flow_state = if state.flags & FLOW_REFUSED != 0 {
            ConnectionState::Refused
        } else if to_server.events.resets + to_client.events.resets > 0 {
            ConnectionState::Reset
        } else if waiting_for_answer(state) {
            if now_ns.saturating_sub(state.syn_ns) >= syn_timeout_ns {
                ConnectionState::Unanswered
            } else {
                ConnectionState::Connecting
            }
        } else if roles_from_syn && state.flags & FLOW_ESTABLISHED == 0 && !client_went_on {
            ConnectionState::HalfOpen
        } else if to_server.events.fins > 0 && to_client.events.fins > 0 {
            ConnectionState::Closed
        } else if roles_from_syn {
            ConnectionState::Established
        } else {
            ConnectionState::MidStream
        };
        let rtt_ms = match (to_server.last_rtt_ms(), to_client.last_rtt_ms()) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        }
        // To the microsecond: the samples' own precision, without float noise.
        .map(|ms| (ms * 1000.0).round() / 1000.0);
        let wall = |ns: u64| clock.to_unix(ns).as_nanos() as u64;
        FlowRecord {
            client,
            server,
            roles_from_syn,
            state: flow_state,
            first_seen: wall(state.first_ns),
            last_seen: wall(state.last_ns),
            retransmissions: to_server.all_retransmissions() + to_client.all_retransmissions(),
            rtt_ms,
            to_server,
            to_client,
        }
    }

    fn both(&self, pick: impl Fn(&DirectionCounts) -> u64) -> u64 {
        pick(&self.to_server) + pick(&self.to_client)
    }
}

/// What the flows are sorted by, largest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Retransmissions,
    Rtt,
    Bytes,
    Segments,
    Resets,
    DuplicateAcks,
    ZeroWindows,
    /// Most recently active first.
    Recent,
}

impl SortKey {
    pub const NAMES: &'static str =
        "retransmission, rtt, bytes, segments, resets, duplicate_ack, zero_window, recent";

    fn value(self, flow: &FlowRecord) -> f64 {
        let sum = |pick: fn(&DirectionCounts) -> u64| flow.both(pick) as f64;
        match self {
            SortKey::Retransmissions => flow.retransmissions as f64,
            SortKey::Rtt => flow.rtt_ms.unwrap_or(-1.0),
            SortKey::Bytes => sum(|d| d.payload_bytes),
            SortKey::Segments => sum(|d| d.segments),
            SortKey::Resets => sum(|d| u64::from(d.events.resets)),
            SortKey::DuplicateAcks => sum(|d| u64::from(d.events.duplicate_acks)),
            SortKey::ZeroWindows => sum(|d| u64::from(d.events.zero_windows)),
            SortKey::Recent => flow.last_seen as f64,
        }
    }
}

impl FromStr for SortKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "retransmission" | "retransmissions" => SortKey::Retransmissions,
            "rtt" => SortKey::Rtt,
            "bytes" => SortKey::Bytes,
            "segments" | "packets" => SortKey::Segments,
            "resets" | "rst" => SortKey::Resets,
            "duplicate_ack" | "duplicate_acks" => SortKey::DuplicateAcks,
            "zero_window" | "zero_windows" => SortKey::ZeroWindows,
            "recent" => SortKey::Recent,
            _ => return Err(format!("unknown sort key {s:?}: use one of {}", Self::NAMES)),
        })
    }
}

/// The flows of the last sweep.
#[derive(Clone, Debug, Default)]
pub struct FlowList {
    /// When the sweep read the table; `None` before the first.
    pub swept_at: Option<(String, Instant)>,
    pub flows: Vec<FlowRecord>,
}

/// A server that connection attempts went to, and how many.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttemptsTo {
    pub server: SocketAddr,
    pub attempts: u64,
    /// SYNs sent again to it (the clients' retries).
    pub syn_retransmissions: u64,
}

/// A host that sent resets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResetSender {
    pub address: IpAddr,
    pub resets: u64,
    /// Connections it reset (refused ones included).
    pub connections: u64,
}

/// The answer of `/v1/flows`.
#[derive(Clone, Debug, Serialize)]
pub struct FlowsAnswer {
    /// When the sweep these come from read the table (RFC 3339), and how long ago.
    pub swept_at: Option<String>,
    pub swept_seconds_ago: Option<f64>,
    /// TCP connections in the flow table at the sweep.
    pub connections: usize,
    pub sort: String,
    pub flows: Vec<FlowRecord>,
    /// Servers whose SYNs went unanswered, most attempts first (connections in the table).
    pub unanswered: Vec<AttemptsTo>,
    /// Servers that refused connections with a RST, most first.
    pub refused: Vec<AttemptsTo>,
    /// Hosts that sent resets, most first.
    pub rst_senders: Vec<ResetSender>,
}

impl FlowList {
    /// The first `limit` flows by `sort`, and the top `limit` of each list of culprits.
    pub fn answer(&self, sort: SortKey, sort_name: &str, limit: usize) -> FlowsAnswer {
        let mut flows: Vec<&FlowRecord> = self.flows.iter().collect();
        let largest_first = |a: &&FlowRecord, b: &&FlowRecord| sort.value(b).total_cmp(&sort.value(a));
        // The first `limit` in order, without sorting the whole table.
        if limit < flows.len() {
            flows.select_nth_unstable_by(limit, largest_first);
            flows.truncate(limit);
        }
        flows.sort_by(largest_first);
        FlowsAnswer {
            swept_at: self.swept_at.as_ref().map(|(at, _)| at.clone()),
            swept_seconds_ago: self.swept_at.as_ref().map(|(_, when)| when.elapsed().as_secs_f64()),
            connections: self.flows.len(),
            sort: sort_name.to_string(),
            flows: flows.into_iter().take(limit).cloned().collect(),
            unanswered: self.attempts(ConnectionState::Unanswered, limit),
            refused: self.attempts(ConnectionState::Refused, limit),
            rst_senders: self.reset_senders(limit),
        }
    }

    fn attempts(&self, state: ConnectionState, limit: usize) -> Vec<AttemptsTo> {
        let mut by_server: HashMap<SocketAddr, (u64, u64)> = HashMap::new();
        for flow in self.flows.iter().filter(|f| f.state == state) {
            let entry = by_server.entry(flow.server).or_default();
            entry.0 += 1;
            entry.1 += u64::from(flow.to_server.events.syn_retransmissions);
        }
        let mut list: Vec<AttemptsTo> = by_server
            .into_iter()
            .map(|(server, (attempts, syn_retransmissions))| AttemptsTo {
                server,
                attempts,
                syn_retransmissions,
            })
            .collect();
        list.sort_by(|a, b| b.attempts.cmp(&a.attempts).then(a.server.cmp(&b.server)));
        list.truncate(limit);
        list
    }

    fn reset_senders(&self, limit: usize) -> Vec<ResetSender> {
        let mut by_host: HashMap<IpAddr, (u64, u64)> = HashMap::new();
        for flow in &self.flows {
            for (sender, direction) in [(flow.client, &flow.to_server), (flow.server, &flow.to_client)] {
                if direction.events.resets > 0 {
                    let entry = by_host.entry(sender.ip()).or_default();
                    entry.0 += u64::from(direction.events.resets);
                    entry.1 += 1;
                }
            }
        }
        let mut list: Vec<ResetSender> = by_host
            .into_iter()
            .map(|(address, (resets, connections))| ResetSender { address, resets, connections })
            .collect();
        list.sort_by(|a, b| b.resets.cmp(&a.resets).then(a.address.cmp(&b.address)));
        list.truncate(limit);
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capture_common::tcp::{analyse, parse, start_flow, Observer};
    use capture_common::Counter;

    struct Ignore;
    impl Observer for Ignore {
        fn count(&mut self, _: Counter) {}
        fn rtt(&mut self, _: u32, _: u64) {}
    }

    /// An Ethernet + IPv4 + TCP frame.
    fn segment(src: ([u8; 4], u16), dst: ([u8; 4], u16), flags: u8, seq: u32, ack: u32, len: u16) -> Vec<u8> {
        let mut f = vec![0u8; 54 + len as usize];
        f[12] = 0x08;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&(40 + len).to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&src.0);
        f[30..34].copy_from_slice(&dst.0);
        f[34..36].copy_from_slice(&src.1.to_be_bytes());
        f[36..38].copy_from_slice(&dst.1.to_be_bytes());
        f[38..42].copy_from_slice(&seq.to_be_bytes());
        f[42..46].copy_from_slice(&ack.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = flags;
        f[48..50].copy_from_slice(&1000u16.to_be_bytes());
        f
    }

    fn feed(frames: &[(u64, Vec<u8>)]) -> (FlowKey, FlowState) {
        let mut state = FlowState::default();
        let mut key = FlowKey::default();
        for (i, (now, frame)) in frames.iter().enumerate() {
            let packet = capture_common::packet::SlicePacket { data: frame, wire_len: frame.len() as u32 };
            let segment = parse(&packet).expect("a TCP segment");
            if i == 0 {
                start_flow(&mut state, &segment, *now);
                key = segment.key;
            }
            state.last_ns = *now;
            analyse(&mut state, &segment, *now, &mut Ignore);
        }
        (key, state)
    }

    const CLIENT: ([u8; 4], u16) = ([10, 0, 0, 9], 40000);
    const SERVER: ([u8; 4], u16) = ([10, 0, 0, 1], 443);
    const SYN: u8 = 0x02;
    const RST_ACK: u8 = 0x14;

    #[test]
    fn a_refused_attempt_names_its_server_and_the_reset_sender() {
        let ms = 1_000_000;
        let (key, state) = feed(&[
            (ms, segment(CLIENT, SERVER, SYN, 100, 0, 0)),
            (2 * ms, segment(SERVER, CLIENT, RST_ACK, 0, 101, 0)),
        ]);
        let clock = WallClock::sample();
        let record = FlowRecord::new(&key, &state, 10 * ms, 5_000 * ms, &clock);
        assert_eq!(record.state, ConnectionState::Refused);
        assert_eq!(record.client, "10.0.0.9:40000".parse().unwrap());
        assert_eq!(record.server, "10.0.0.1:443".parse().unwrap());
        assert_eq!(record.to_client.events.resets, 1);
        let list = FlowList { swept_at: None, flows: vec![record] };
        let answer = list.answer(SortKey::Resets, "resets", 10);
        assert_eq!(answer.refused.len(), 1);
        assert_eq!(answer.refused[0].server, "10.0.0.1:443".parse().unwrap());
        assert!(answer.unanswered.is_empty());
        assert_eq!(answer.rst_senders[0].address, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_attempt_is_unanswered_only_past_the_timeout_and_its_retries_are_counted() {
        let s = 1_000_000_000;
        let (key, state) = feed(&[
            (s, segment(CLIENT, SERVER, SYN, 100, 0, 0)),
            (2 * s, segment(CLIENT, SERVER, SYN, 100, 0, 0)),
        ]);
        let clock = WallClock::sample();
        let early = FlowRecord::new(&key, &state, 3 * s, 5 * s, &clock);
        assert_eq!(early.state, ConnectionState::Connecting);
        let late = FlowRecord::new(&key, &state, 7 * s, 5 * s, &clock);
        assert_eq!(late.state, ConnectionState::Unanswered);
        assert_eq!(late.to_server.events.syn_retransmissions, 1);
        assert_eq!(late.to_server.events.retransmissions, 1);
        let list = FlowList { swept_at: None, flows: vec![late] };
        let answer = list.answer(SortKey::Retransmissions, "retransmission", 10);
        assert_eq!(answer.unanswered[0].attempts, 1);
        assert_eq!(answer.unanswered[0].syn_retransmissions, 1);
        assert!(answer.refused.is_empty());
    }

    const ACK: u8 = 0x10;
    const SYN_ACK: u8 = 0x12;
    const RST: u8 = 0x04;

    #[test]
    fn only_a_reset_that_acknowledges_the_syn_refuses_it() {
        let clock = WallClock::sample();
        let (key, state) = feed(&[
            (1, segment(CLIENT, SERVER, SYN, 4000, 0, 0)),
            (2, segment(SERVER, CLIENT, RST_ACK, 0, 12345, 0)),
            (3, segment(SERVER, CLIENT, SYN_ACK, 9000, 4001, 0)),
            (4, segment(CLIENT, SERVER, ACK, 4001, 9001, 0)),
        ]);
        let record = FlowRecord::new(&key, &state, 5, 1 << 40, &clock);
        assert_ne!(record.state, ConnectionState::Refused, "a RST with another ACK number is not acceptable");
    }

    #[test]
    fn the_answer_of_a_syn_is_known_from_the_client_alone_and_a_client_giving_up_is_no_unanswered_attempt() {
        let clock = WallClock::sample();
        let s = 1_000_000_000;
        // One direction captured: the SYN, then the client's ACK and data.
        let (key, state) = feed(&[
            (s, segment(CLIENT, SERVER, SYN, 100, 0, 0)),
            (s + 1, segment(CLIENT, SERVER, ACK, 101, 1, 0)),
            (s + 2, segment(CLIENT, SERVER, ACK, 101, 1, 50)),
        ]);
        assert!(!waiting_for_answer(&state));
        assert_eq!(FlowRecord::new(&key, &state, 10 * s, s, &clock).state, ConnectionState::Established);
        // The client gives up with a RST of its own.
        let (key, state) = feed(&[
            (s, segment(CLIENT, SERVER, SYN, 100, 0, 0)),
            (s + 1, segment(CLIENT, SERVER, RST, 101, 0, 0)),
        ]);
        assert!(!waiting_for_answer(&state));
        assert_eq!(FlowRecord::new(&key, &state, 10 * s, s, &clock).state, ConnectionState::Reset);
        // The server answers, the client never goes on: half-open.
        let (key, state) = feed(&[
            (s, segment(CLIENT, SERVER, SYN, 100, 0, 0)),
            (s + 1, segment(SERVER, CLIENT, SYN_ACK, 9000, 101, 0)),
            (2 * s, segment(SERVER, CLIENT, SYN_ACK, 9000, 101, 0)),
        ]);
        assert!(!waiting_for_answer(&state));
        let record = FlowRecord::new(&key, &state, 10 * s, s, &clock);
        assert_eq!(record.state, ConnectionState::HalfOpen);
        assert_eq!(record.to_client.events.syn_retransmissions, 1);
    }

    #[test]
    fn flows_sort_largest_first_and_mid_stream_roles_follow_the_ports() {
        let clock = WallClock::sample();
        let record = |bytes: u16| {
            let (key, state) = feed(&[(1, segment(SERVER, CLIENT, 0x10, 1, 1, bytes))]);
            FlowRecord::new(&key, &state, 2, 5, &clock)
        };
        let list = FlowList { swept_at: None, flows: vec![record(10), record(300), record(20)] };
        let answer = list.answer(SortKey::Bytes, "bytes", 2);
        let bytes: Vec<u64> = answer.flows.iter().map(|f| f.to_client.payload_bytes).collect();
        assert_eq!(bytes, [300, 20]);
        assert_eq!(answer.flows[0].state, ConnectionState::MidStream);
        assert_eq!(answer.flows[0].server.port(), 443);
        assert!(!answer.flows[0].roles_from_syn);
        assert_eq!("zero_window".parse::<SortKey>(), Ok(SortKey::ZeroWindows));
        assert!("nonsense".parse::<SortKey>().unwrap_err().contains("rtt"));
    }
}

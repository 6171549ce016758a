//! Records and map layouts shared by ringcap's kernel programs and its daemon.
//!
//! Everything here is `#[repr(C)]` with explicit padding so that both sides of the
//! kernel boundary agree on every byte. The crate is `no_std` on the BPF target; the
//! `user` feature adds the `aya::Pod` impls the daemon needs to read maps.
#![cfg_attr(target_arch = "bpf", no_std)]

pub mod cut;
pub mod dns;
pub mod exchange;
pub mod flow;
pub mod http;
pub mod icmp;
pub mod packet;
pub mod tcp;
pub mod tls;

/// Name of the array of per-CPU BPF ring buffers that carry packet records to user
/// space: entry N is the ring of CPU N, created and inserted by the loader.
pub const RING_MAP: &str = "PACKET_RINGS";
/// Most CPUs the per-CPU rings serve (CPUs beyond it count their packets as `ring_full`).
pub const MAX_CPUS: u32 = 1024;
/// Name of the per-CPU array of [`Counter`]s.
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Name of the load-time global holding the snap length (bytes copied per packet).
pub const SNAPLEN_GLOBAL: &str = "SNAPLEN";
/// Name of the load-time global holding the ring fill level (bytes) above which the
/// kernel wakes the reader; below it records are submitted without a wakeup.
pub const WAKEUP_GLOBAL: &str = "WAKEUP_BYTES";
/// Name of the load-time global that is non-zero when the AF_XDP program stamps frames
/// in their metadata (`bpf_xdp_adjust_meta`); zero on a kernel that refuses the helper to
/// XDP programs, and user space stamps them on arrival.
pub const XSK_KERNEL_STAMP_GLOBAL: &str = "XSK_KERNEL_STAMP";
/// Name of the load-time global that is non-zero when a filter was spliced into the
/// programs (without one, the filter subprogram is never called).
pub const FILTER_ACTIVE_GLOBAL: &str = "FILTER_ACTIVE";
/// Instruction slots of the filter placeholder (`packet_filter` in `capture-ebpf`): the
/// longest translated filter the programs can hold.
pub const FILTER_SLOTS: usize = 4096;
/// The 64-bit immediate the placeholder starts with (`lddw r0, FILTER_MAGIC`), by which
/// the loader finds it in the object: "ringcap" and a format byte.
pub const FILTER_MAGIC: u64 = u64::from_be_bytes(*b"ringcap\x01");
/// Name of the one-entry array map holding the [`CaptureConfig`].
pub const CONFIG_MAP: &str = "CONFIG";
/// Bytes of each packet the kernel copies for the TCP analysis and flow sampling to read;
/// loads beyond them count as outside the packet.
pub const PACKET_WINDOW: u32 = 256;

/// Settings user space may change while programs run (map `CONFIG`, entry 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Keep one packet in N at random (0 or 1: all).
    pub sample_every: u32,
    /// Keep the flows whose symmetric hash is 0 modulo N (0 or 1: all).
    pub flow_sample_every: u32,
    /// Non-zero: analyse every TCP segment (flags, handshakes, RTT) before selection.
    pub tcp_analysis: u32,
    /// Per-flow cutting (see [`cut`]): each direction of a flow keeps this many packets
    /// whole (0: no limit)...
    pub flow_packets: u32,
    /// Token-bucket rate per CPU in packets per second (0: unlimited).
    pub max_pps_per_cpu: u64,
    /// ...and this many bytes of payload (0: no limit, at most [`cut::FLOW_BYTES_MAX`])...
    pub flow_bytes: u32,
    /// ...and, when non-zero, nothing past a TLS or QUIC handshake.
    pub cut_encrypted: u32,
    /// Non-zero: count the health of other protocols than TCP (ICMP, DNS) on every packet.
    pub l7_analysis: u32,
    /// A port DNS is also read on, beside 53 (0: none).
    pub dns_port: u32,
}

/// Names of the TC capture programs (clsact/TCX ingress and egress).
pub const TC_INGRESS_PROGRAM: &str = "ringcap_tc_ingress";
pub const TC_EGRESS_PROGRAM: &str = "ringcap_tc_egress";
/// Name of the LRU hash of TCP flows the analysis tracks (sized by the loader).
pub const FLOWS_MAP: &str = "FLOWS";
/// Name of the array, by CPU, of the time stamp of the packet each CPU's program is
/// working on ([`InFlight`]): what lets the reader merge the per-CPU rings in time order
/// without waiting out a worst case.
pub const IN_FLIGHT_MAP: &str = "IN_FLIGHT";
/// Name of the array of ICMP message counts: slot * [`icmp::COUNTS_PER_SLOT`] +
/// [`icmp::Message::index`], updated atomically and mapped by user space.
pub const ICMP_MAP: &str = "ICMP";
/// Name of the hash of path-MTU messages by slot, family and announced MTU
/// ([`icmp::MtuKey`]); sized [`icmp::MTU_KEYS`].
pub const ICMP_MTU_MAP: &str = "ICMP_MTU";

/// One CPU's entry of [`IN_FLIGHT_MAP`], a cache line of its own. `stamp` is
/// [`InFlight::IDLE`] while no program runs on the CPU, [`InFlight::READING_CLOCK`] just
/// before a program reads the clock, then the time it read until the program returns:
/// any record the CPU still adds to its ring is stamped no earlier than that.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlight {
    pub stamp: u64,
    pub reserved: [u64; 7],
}

impl InFlight {
    pub const IDLE: u64 = 0;
    pub const READING_CLOCK: u64 = u64::MAX;
}

/// Name of the per-CPU array of RTT histogram buckets ([`tcp::RTT_KINDS`] x [`tcp::RTT_BUCKETS`]).
pub const RTT_MAP: &str = "RTT";
/// Interfaces whose counters and histograms are kept apart, in `-i` order; packets of
/// any other interface share one more slot ("other").
pub const MAX_INTERFACES: u32 = 7;
/// Counter and histogram slots: (interface index) x 2 + (1 for egress).
pub const MAX_SLOTS: u32 = 2 * (MAX_INTERFACES + 1);
/// Name of the hash map ifindex -> interface index (`-i` order) the loader fills.
pub const INTERFACES_MAP: &str = "INTERFACES";

/// Name of the XDP capture program in the eBPF object.
pub const XDP_PROGRAM: &str = "ringcap_xdp";
/// Name of the XDP program of AF_XDP mode, which redirects selected packets to sockets.
pub const XSK_PROGRAM: &str = "ringcap_xsk";
/// Name of the XSKMAP of AF_XDP mode: slot -> AF_XDP socket, where the slot of a
/// packet is its interface's first slot plus its receive queue index.
pub const XSKS_MAP: &str = "XSKS";
/// Name of the hash map of AF_XDP mode: ifindex -> the interface's first slot in `XSKS`.
pub const XSK_SLOTS_MAP: &str = "XSK_SLOTS";
/// AF_XDP sockets one capture can have, over all its interfaces and queues.
pub const MAX_XSK_SOCKETS: u32 = 1024;

/// What the AF_XDP program writes in the metadata area in front of each redirected frame:
/// the kernel's receive time, which the frame itself does not carry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskMeta {
    /// Kernel CLOCK_MONOTONIC time in nanoseconds (`bpf_ktime_get_ns`).
    pub timestamp_ns: u64,
    /// [`XskMeta::MAGIC`] when the rest is valid.
    pub magic: u32,
    pub reserved: u32,
}

impl XskMeta {
    pub const MAGIC: u32 = u32::from_be_bytes(*b"RCAP");
    pub const LEN: usize = core::mem::size_of::<XskMeta>();
}

/// Largest number of packet bytes the kernel side copies into one record.
///
/// Records are reserved in power-of-two size classes (the ring buffer needs a
/// constant reservation size); the largest class covers 9000-byte jumbo frames.
pub const MAX_CAPTURE_BYTES: u32 = 16384;
/// Smallest size class: a 64-byte frame fits, so minimum-size traffic wastes little ring space.
pub const MIN_CAPTURE_CLASS: u32 = 64;

/// Header of every packet record in the ring buffer; `cap_len` packet bytes follow it.
///
/// The record is reserved in a size class at least `cap_len` long, so the bytes after
/// `cap_len` are undefined and must be ignored.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// Kernel CLOCK_MONOTONIC time in nanoseconds (`bpf_ktime_get_ns`).
    pub timestamp_ns: u64,
    /// Length of the packet on the wire.
    pub orig_len: u32,
    /// Number of packet bytes captured after this header.
    pub cap_len: u32,
    /// Interface the packet was seen on.
    pub ifindex: u32,
    /// [`RecordFlags`] bits.
    pub flags: u32,
}

/// Size of [`RecordHeader`] in bytes.
pub const RECORD_HEADER_LEN: usize = core::mem::size_of::<RecordHeader>();

/// Bits of [`RecordHeader::flags`].
pub struct RecordFlags;
impl RecordFlags {
    /// Seen on ingress (XDP or TC ingress).
    pub const INGRESS: u32 = 1 << 0;
    /// Seen on egress (TC egress).
    pub const EGRESS: u32 = 1 << 1;
    /// Seen by a TC program (an skb, after GRO on ingress, before GSO on egress).
    pub const TC: u32 = 1 << 2;
    /// A GSO/GRO super-packet: several wire packets in one record.
    pub const GSO: u32 = 1 << 3;
}

/// Indexes of the per-CPU counter array (within each slot: the array holds
/// [`MAX_SLOTS`] x [`Counter::COUNT`] counters). Every way a packet can leave the capture
/// path without reaching user space has its own counter: nothing is lost silently.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Packets the program ran on.
    Seen = 0,
    /// Records successfully submitted to the ring buffer (in AF_XDP mode: packets
    /// redirected to a socket, which counts its own losses in `XDP_STATISTICS`).
    Captured = 1,
    /// Records lost because the CPU's ring buffer had no room (`bpf_ringbuf_reserve`
    /// failed) or the CPU had no ring.
    RingFull = 2,
    /// Records lost because the packet bytes could not be read (`bpf_xdp_load_bytes` failed).
    CopyFailed = 3,
    /// Packets the filter expression did not select.
    Filtered = 4,
    /// Packets left out by `--sample` or `--flow-sample`.
    SampledOut = 5,
    /// Packets over `--max-pps`.
    RateLimited = 6,
    /// TCP analysis (every packet, selected or not): segments with these flags...
    TcpSyn = 7,
    TcpSynAck = 8,
    TcpFin = 9,
    TcpRst = 10,
    TcpEce = 11,
    TcpCwr = 12,
    /// ...window 0 without SYN/FIN/RST (Wireshark's zero_window)...
    TcpZeroWindow = 13,
    /// ...three-way handshakes seen to completion...
    TcpHandshakes = 14,
    /// ...and the sums of their RTTs in nanoseconds (SYN to SYN-ACK, SYN-ACK to ACK).
    TcpRttServerNs = 15,
    TcpRttClientNs = 16,
    /// Flows the analysis could not track (flow table insert failed).
    TcpFlowInsertFailed = 17,
    /// AF_XDP mode: selected packets whose receive queue had no socket (dropped).
    XskNoSocket = 18,
    /// Wireshark's TCP analysis (`tcp.analysis.*`), every packet: retransmissions...
    TcpRetransmission = 19,
    TcpFastRetransmission = 20,
    TcpSpuriousRetransmission = 21,
    TcpOutOfOrder = 22,
    TcpDuplicateAck = 23,
    TcpKeepAlive = 24,
    /// ...a gap before the segment (`lost_segment`: previous segment not captured)...
    TcpLostSegment = 25,
    TcpWindowFull = 26,
    /// ...and the sums of the timestamp and data RTT samples in nanoseconds.
    TcpRttTimestampNs = 27,
    TcpRttDataNs = 28,
    /// Flows the analysis started tracking (with a SYN or picked up mid-stream).
    TcpFlowsInserted = 29,
    /// Flows first seen after their handshake (their window scale is unknown).
    TcpFlowsMidStream = 30,
    /// UDP flows the flow table started tracking (only while flows are cut).
    UdpFlowsInserted = 31,
    /// Per-flow cutting: packets stored with their headers only, by reason...
    CutFlowBytes = 32,
    CutFlowPackets = 33,
    CutEncrypted = 34,
    /// ...and the packet bytes that were not stored, by reason.
    CutFlowBytesBytes = 35,
    CutFlowPacketsBytes = 36,
    CutEncryptedBytes = 37,
    /// Packets of a flow whose lock another CPU held past the wait's bound: not analysed
    /// nor cut (kept whole). Never expected: a flow's work takes well under a microsecond.
    FlowLockBusy = 38,
    /// TCP connection attempts whose SYN its target answered with a RST (refused; not
    /// counted as unanswered).
    TcpSynRefused = 39,
    /// Retransmissions (any kind) of SYN and SYN-ACK segments, a part of the
    /// retransmission counts above: attempts to connect apart from lost data.
    TcpSynRetransmission = 40,
    /// TCP segments on the wire (a GSO packet counts as its `gso_segs`) and their
    /// payload bytes, the denominators of the analysis counts. Every TCP packet analysed.
    TcpSegments = 41,
    TcpPayloadBytes = 42,
    /// Wire segments of the retransmissions (any kind): a GSO packet retransmitted counts
    /// as its segments, as `RetransSegs` counts them; the numerator over `TcpSegments`.
    TcpRetransmittedSegments = 43,
    /// ICMP health (every packet, selected or not, unless `--no-l7-analysis`): ICMP and
    /// ICMPv6 messages (by type and code in their own counts, `ICMP_MAP`)...
    IcmpMessages = 44,
    /// ...of which fragmentation needed and packet too big (path MTU discovery)...
    IcmpPathMtu = 45,
    /// ...and those whose announced MTU found no room in the table of MTUs (counted
    /// here and in the messages, not by MTU).
    IcmpMtuUntracked = 46,
    /// Wireshark's `tcp.analysis.reused_ports`: a SYN (without ACK) from a side that sent
    /// on the flow before, with another sequence number than its first (a new connection
    /// on the ports of an earlier one), every packet.
    TcpReusedPorts = 47,
    /// DNS health (UDP, port 53 or `--dns-port`; unless `--no-l7-analysis`): queries...
    DnsQueries = 48,
    /// ...responses, by rcode...
    DnsNoError = 49,
    DnsNxDomain = 50,
    DnsServFail = 51,
    DnsRefused = 52,
    DnsOtherRcode = 53,
    /// ...and truncated ones (TC).
    DnsTruncated = 54,
    /// Queries sent again before their response (same conversation and ID), Wireshark's
    /// `dns.retransmission` on queries...
    DnsRetransmissions = 55,
    /// ...responses matched to their query, and the sum of their response times...
    DnsAnswered = 56,
    DnsResponseTimeNs = 57,
    /// ...and responses to no query seen (before capture, forgotten, or answered already).
    DnsUnmatched = 58,
    /// TLS handshakes (any TCP port; unless `--no-l7-analysis`): ClientHellos...
    TlsClientHellos = 59,
    /// ...ServerHellos by the version the server chose (1.0, 1.1, 1.2, 1.3, other)...
    TlsServerHello10 = 60,
    TlsServerHello11 = 61,
    TlsServerHello12 = 62,
    TlsServerHello13 = 63,
    TlsServerHelloOther = 64,
    /// ...alerts in the clear (by description in their own array)...
    TlsAlerts = 65,
    /// ...handshakes that ended before the ServerHello: in an alert, a RST, a FIN...
    TlsFailedAlert = 66,
    TlsFailedReset = 67,
    TlsFailedFin = 68,
    /// ...ServerHellos matched to their ClientHello, and the sum of the handshake times.
    TlsHandshakes = 69,
    TlsHandshakeTimeNs = 70,
    /// HTTP/1.x (any TCP port; unless `--no-l7-analysis`): segments that start a request...
    HttpRequests = 71,
    /// ...or a response, by status class...
    Http1xx = 72,
    Http2xx = 73,
    Http3xx = 74,
    Http4xx = 75,
    Http5xx = 76,
    HttpOtherStatus = 77,
    /// ...final responses matched to their request, and the sum of the response times.
    HttpAnswered = 78,
    HttpResponseTimeNs = 79,
}

impl Counter {
    /// The counters of packets cut for `reason` ([`cut::CUT_FLOW_BYTES`], ...): (packets,
    /// bytes not stored).
    #[inline(always)]
    pub const fn cut(reason: u32) -> (Counter, Counter) {
        match reason {
            cut::CUT_FLOW_BYTES => (Counter::CutFlowBytes, Counter::CutFlowBytesBytes),
            cut::CUT_FLOW_PACKETS => (Counter::CutFlowPackets, Counter::CutFlowPacketsBytes),
            _ => (Counter::CutEncrypted, Counter::CutEncryptedBytes),
        }
    }

    /// A retransmission of any kind (Wireshark's plain, fast or spurious).
    #[inline(always)]
    pub const fn is_retransmission(self) -> bool {
        matches!(
            self,
            Counter::TcpRetransmission | Counter::TcpFastRetransmission | Counter::TcpSpuriousRetransmission
        )
    }

    /// Number of counters, the size of the per-CPU array.
    pub const COUNT: u32 = 80;
    /// All counters, in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Seen,
        Counter::Captured,
        Counter::RingFull,
        Counter::CopyFailed,
        Counter::Filtered,
        Counter::SampledOut,
        Counter::RateLimited,
        Counter::TcpSyn,
        Counter::TcpSynAck,
        Counter::TcpFin,
        Counter::TcpRst,
        Counter::TcpEce,
        Counter::TcpCwr,
        Counter::TcpZeroWindow,
        Counter::TcpHandshakes,
        Counter::TcpRttServerNs,
        Counter::TcpRttClientNs,
        Counter::TcpFlowInsertFailed,
        Counter::XskNoSocket,
        Counter::TcpRetransmission,
        Counter::TcpFastRetransmission,
        Counter::TcpSpuriousRetransmission,
        Counter::TcpOutOfOrder,
        Counter::TcpDuplicateAck,
        Counter::TcpKeepAlive,
        Counter::TcpLostSegment,
        Counter::TcpWindowFull,
        Counter::TcpRttTimestampNs,
        Counter::TcpRttDataNs,
        Counter::TcpFlowsInserted,
        Counter::TcpFlowsMidStream,
        Counter::UdpFlowsInserted,
        Counter::CutFlowBytes,
        Counter::CutFlowPackets,
        Counter::CutEncrypted,
        Counter::CutFlowBytesBytes,
        Counter::CutFlowPacketsBytes,
        Counter::CutEncryptedBytes,
        Counter::FlowLockBusy,
        Counter::TcpSynRefused,
        Counter::TcpSynRetransmission,
        Counter::TcpSegments,
        Counter::TcpPayloadBytes,
        Counter::TcpRetransmittedSegments,
        Counter::IcmpMessages,
        Counter::IcmpPathMtu,
        Counter::IcmpMtuUntracked,
        Counter::TcpReusedPorts,
        Counter::DnsQueries,
        Counter::DnsNoError,
        Counter::DnsNxDomain,
        Counter::DnsServFail,
        Counter::DnsRefused,
        Counter::DnsOtherRcode,
        Counter::DnsTruncated,
        Counter::DnsRetransmissions,
        Counter::DnsAnswered,
        Counter::DnsResponseTimeNs,
        Counter::DnsUnmatched,
        Counter::TlsClientHellos,
        Counter::TlsServerHello10,
        Counter::TlsServerHello11,
        Counter::TlsServerHello12,
        Counter::TlsServerHello13,
        Counter::TlsServerHelloOther,
        Counter::TlsAlerts,
        Counter::TlsFailedAlert,
        Counter::TlsFailedReset,
        Counter::TlsFailedFin,
        Counter::TlsHandshakes,
        Counter::TlsHandshakeTimeNs,
        Counter::HttpRequests,
        Counter::Http1xx,
        Counter::Http2xx,
        Counter::Http3xx,
        Counter::Http4xx,
        Counter::Http5xx,
        Counter::HttpOtherStatus,
        Counter::HttpAnswered,
        Counter::HttpResponseTimeNs,
    ];

    /// Prometheus-style name of the counter.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::Captured => "captured",
            Counter::RingFull => "ring_full",
            Counter::CopyFailed => "copy_failed",
            Counter::Filtered => "filtered",
            Counter::SampledOut => "sampled_out",
            Counter::RateLimited => "rate_limited",
            Counter::TcpSyn => "tcp_syn",
            Counter::TcpSynAck => "tcp_syn_ack",
            Counter::TcpFin => "tcp_fin",
            Counter::TcpRst => "tcp_rst",
            Counter::TcpEce => "tcp_ece",
            Counter::TcpCwr => "tcp_cwr",
            Counter::TcpZeroWindow => "tcp_zero_window",
            Counter::TcpHandshakes => "tcp_handshakes",
            Counter::TcpRttServerNs => "tcp_rtt_server_ns_sum",
            Counter::TcpRttClientNs => "tcp_rtt_client_ns_sum",
            Counter::TcpFlowInsertFailed => "tcp_flow_insert_failed",
            Counter::XskNoSocket => "xsk_no_socket",
            Counter::TcpRetransmission => "tcp_retransmission",
            Counter::TcpFastRetransmission => "tcp_fast_retransmission",
            Counter::TcpSpuriousRetransmission => "tcp_spurious_retransmission",
            Counter::TcpOutOfOrder => "tcp_out_of_order",
            Counter::TcpDuplicateAck => "tcp_duplicate_ack",
            Counter::TcpKeepAlive => "tcp_keep_alive",
            Counter::TcpLostSegment => "tcp_lost_segment",
            Counter::TcpWindowFull => "tcp_window_full",
            Counter::TcpRttTimestampNs => "tcp_rtt_timestamp_ns_sum",
            Counter::TcpRttDataNs => "tcp_rtt_data_ns_sum",
            Counter::TcpFlowsInserted => "tcp_flows_inserted",
            Counter::TcpFlowsMidStream => "tcp_flows_mid_stream",
            Counter::UdpFlowsInserted => "udp_flows_inserted",
            Counter::CutFlowBytes => "cut_flow_bytes",
            Counter::CutFlowPackets => "cut_flow_packets",
            Counter::CutEncrypted => "cut_encrypted",
            Counter::CutFlowBytesBytes => "cut_flow_bytes_bytes",
            Counter::CutFlowPacketsBytes => "cut_flow_packets_bytes",
            Counter::CutEncryptedBytes => "cut_encrypted_bytes",
            Counter::FlowLockBusy => "flow_lock_busy",
            Counter::TcpSynRefused => "tcp_syn_refused",
            Counter::TcpSynRetransmission => "tcp_syn_retransmission",
            Counter::TcpSegments => "tcp_segments",
            Counter::TcpPayloadBytes => "tcp_payload_bytes",
            Counter::TcpRetransmittedSegments => "tcp_retransmitted_segments",
            Counter::IcmpMessages => "icmp_messages",
            Counter::IcmpPathMtu => "icmp_path_mtu",
            Counter::IcmpMtuUntracked => "icmp_mtu_untracked",
            Counter::TcpReusedPorts => "tcp_reused_ports",
            Counter::DnsQueries => "dns_queries",
            Counter::DnsNoError => "dns_noerror",
            Counter::DnsNxDomain => "dns_nxdomain",
            Counter::DnsServFail => "dns_servfail",
            Counter::DnsRefused => "dns_refused",
            Counter::DnsOtherRcode => "dns_other_rcode",
            Counter::DnsTruncated => "dns_truncated",
            Counter::DnsRetransmissions => "dns_retransmissions",
            Counter::DnsAnswered => "dns_answered",
            Counter::DnsResponseTimeNs => "dns_response_time_ns",
            Counter::DnsUnmatched => "dns_unmatched",
            Counter::TlsClientHellos => "tls_client_hellos",
            Counter::TlsServerHello10 => "tls_server_hello_1_0",
            Counter::TlsServerHello11 => "tls_server_hello_1_1",
            Counter::TlsServerHello12 => "tls_server_hello_1_2",
            Counter::TlsServerHello13 => "tls_server_hello_1_3",
            Counter::TlsServerHelloOther => "tls_server_hello_other",
            Counter::TlsAlerts => "tls_alerts",
            Counter::TlsFailedAlert => "tls_failed_alert",
            Counter::TlsFailedReset => "tls_failed_reset",
            Counter::TlsFailedFin => "tls_failed_fin",
            Counter::TlsHandshakes => "tls_handshakes",
            Counter::TlsHandshakeTimeNs => "tls_handshake_time_ns",
            Counter::HttpRequests => "http_requests",
            Counter::Http1xx => "http_1xx",
            Counter::Http2xx => "http_2xx",
            Counter::Http3xx => "http_3xx",
            Counter::Http4xx => "http_4xx",
            Counter::Http5xx => "http_5xx",
            Counter::HttpOtherStatus => "http_other_status",
            Counter::HttpAnswered => "http_answered",
            Counter::HttpResponseTimeNs => "http_response_time_ns",
        }
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for RecordHeader {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for CaptureConfig {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_header_has_no_implicit_padding() {
        assert_eq!(RECORD_HEADER_LEN, 8 + 4 * 4);
        assert_eq!(core::mem::align_of::<RecordHeader>(), 8);
    }

    #[test]
    fn counter_indexes_are_dense() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}

//! What a capture asks of the kernel side: which programs, attached where and how, with
//! which filter and sampling.
use super::*;

/// How the XDP program is attached (`--xdp-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpModeChoice {
    /// Native, falling back to generic when the driver has no XDP support.
    Auto,
    /// In the driver (fast; needs driver support).
    Native,
    /// In the kernel stack after the skb is built (works everywhere).
    Generic,
}

/// Which packets of an interface are captured (`--direction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// What arrives (XDP, or TC ingress with --ingress-hook tc).
    #[default]
    In,
    /// What the host sends (TC egress).
    Out,
    /// Both.
    Both,
}

/// The places a capture program can be attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// XDP, recording into the ring buffer (packets continue to the host).
    Xdp,
    /// XDP, redirecting into AF_XDP sockets (packets end there).
    XdpToSockets,
    /// TC ingress: packets as the host stack receives them, after GRO.
    TcIngress,
    /// TC egress: packets the host sends, before GSO.
    TcEgress,
}

impl Attach {
    pub(super) fn program(self) -> &'static str {
        match self {
            Attach::Xdp => XDP_PROGRAM,
            Attach::XdpToSockets => XSK_PROGRAM,
            Attach::TcIngress => TC_INGRESS_PROGRAM,
            Attach::TcEgress => TC_EGRESS_PROGRAM,
        }
    }

    pub(super) const ALL: [Attach; 4] =
        [Attach::Xdp, Attach::XdpToSockets, Attach::TcIngress, Attach::TcEgress];
}

/// Where a program got attached, as reported to the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Xdp(AttachMode),
    XdpToSockets(AttachMode),
    TcIngress,
    TcEgress,
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::Xdp(mode) => write!(f, "XDP {mode} mode"),
            Hook::XdpToSockets(mode) => write!(f, "XDP {mode} mode to AF_XDP sockets"),
            Hook::TcIngress => f.write_str("TC ingress"),
            Hook::TcEgress => f.write_str("TC egress"),
        }
    }
}

/// The XDP mode an interface actually got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        })
    }
}

/// Load-time settings of the kernel programs.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    /// The filter, spliced into the programs as native code (`None`: every packet).
    pub filter: Option<Filter>,
    /// Bytes copied per packet; at most [`MAX_CAPTURE_BYTES`].
    pub snaplen: u32,
    /// Size of all packet ring buffers together in bytes (a power of two multiple of the
    /// page size), split evenly into one ring per CPU.
    pub ring_bytes: u32,
    /// Flows the TCP analysis tracks at once (least recently seen ones are evicted).
    pub tcp_flows: u32,
    /// The programs to load: verifying each costs the kernel most of a second, so only
    /// those the session attaches are loaded. `test_run` needs [`Attach::Xdp`].
    pub programs: ProgramSet,
}

impl KernelConfig {
    /// The XDP program alone, unfiltered, copying 64 bytes into a 1 MiB ring: what runs
    /// packets under `BPF_PROG_TEST_RUN` (benchmarks and tests of the kernel's analysis).
    pub fn test_run(tcp_flows: u32) -> KernelConfig {
        KernelConfig { filter: None, snaplen: 64, ring_bytes: 1 << 20, tcp_flows, programs: ProgramSet::XDP }
    }
}

/// A set of [`Attach`] points whose programs are loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramSet(u8);

impl ProgramSet {
    /// The XDP capture program alone (what `test_run` needs).
    pub const XDP: ProgramSet = ProgramSet(1 << Attach::Xdp as u8);

    pub fn with(self, attach: Attach) -> Self {
        ProgramSet(self.0 | 1 << attach as u8)
    }

    pub fn contains(self, attach: Attach) -> bool {
        self.0 & 1 << attach as u8 != 0
    }
}

/// Which of the packets the filter selects the kernel records: the sampling settings.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Keep one packet in N at random (`--sample 1/N`).
    pub sample_every: u32,
    /// Keep whole flows, one in N (`--flow-sample 1/N`).
    pub flow_sample_every: u32,
    /// At most this many packets per second in all (`--max-pps`), split across CPUs.
    pub max_pps: u64,
    /// Analyse every TCP segment in the kernel (flags, handshakes, RTT).
    pub tcp_analysis: bool,
    /// Count the health of other protocols on every packet in the kernel (ICMP, DNS).
    pub l7_analysis: bool,
    /// A port DNS is also read on, beside 53 (0: none).
    pub dns_port: u16,
    /// Per-flow cutting.
    pub cut: FlowCut,
}

/// Per-flow cutting (`capture_common::cut`): each direction of a flow keeps its first
/// `bytes` of payload and `packets` whole (0: no limit), and with `encrypted` nothing past
/// a TLS or QUIC handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCut {
    pub bytes: u32,
    pub packets: u32,
    pub encrypted: bool,
}

impl FlowCut {
    pub fn enabled(&self) -> bool {
        *self != FlowCut::default()
    }
}

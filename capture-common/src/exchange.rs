//! Requests and their answers, matched in the kernel's one table of pending exchanges:
//! a DNS query and its response, a TLS ClientHello and its ServerHello, an HTTP request
//! and its response. Shared by the kernel and user space (which sweeps out what waited
//! too long and reads the times).
use crate::flow::IpPayload;
use crate::packet::PacketView;
use crate::tcp::RTT_BUCKETS;
use crate::MAX_SLOTS;

/// What an exchange is, the `kind` of its key and its histograms' rank.
pub const KIND_DNS: u8 = 0;
pub const KIND_TLS: u8 = 1;
pub const KIND_HTTP: u8 = 2;
/// Kinds the times array has room for (a power of two: the kernel masks its index).
pub const KINDS: u32 = 4;

/// An exchange as the table keys it: the client's and the server's address and port, the
/// kind, and for DNS the transaction ID (Wireshark's matching), 0 for the others (one
/// exchange at a time per connection).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Exchange {
    pub client: [u32; 4],
    pub server: [u32; 4],
    pub client_port: u16,
    pub server_port: u16,
    pub id: u16,
    /// 4 or 6.
    pub family: u8,
    pub kind: u8,
}

/// A request waiting for its answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// When the first request of the exchange passed (a retransmission keeps it).
    pub started_ns: u64,
    /// The slot (interface and direction) the request was seen on.
    pub slot: u32,
    /// Retransmissions of the request seen so far.
    pub retransmissions: u32,
}

#[cfg(feature = "user")]
// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for Exchange {}
#[cfg(feature = "user")]
// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for Pending {}

/// Name of the LRU hash of pending exchanges ([`Exchange`] -> [`Pending`]).
pub const PENDING_MAP: &str = "EXCHANGES";
/// Exchanges the kernel waits for at once; past them the oldest are forgotten (their
/// answers then count as unmatched).
pub const PENDING_EXCHANGES: u32 = 65536;
/// Name of the array of answer-time histograms (the RTT histograms' log-linear buckets),
/// [`times_index`], mapped by user space.
pub const TIMES_MAP: &str = "EXCHANGE_TIMES";
/// Buckets of the times array.
pub const TIMES: u32 = KINDS * MAX_SLOTS * RTT_BUCKETS;

/// Where the times array counts an answer of `kind` on `slot` in `bucket`.
#[inline(always)]
pub const fn times_index(kind: u32, slot: u32, bucket: u32) -> u32 {
    ((kind * MAX_SLOTS + slot) * RTT_BUCKETS + bucket) & (TIMES - 1)
}

/// Fills in the conversation of `exchange` (addresses, ports, family) from the packet
/// `ip` and its transport header's first word, the `ports` (read by the caller: read
/// again here, LLVM would merge the bounds checks in ways the verifier cannot follow);
/// `from_client`: the packet is the request (else the answer, which travels the other way).
#[inline(always)]
pub fn fill<P: PacketView>(
    p: &P,
    ip: &IpPayload,
    ports: u32,
    from_client: bool,
    exchange: &mut Exchange,
) -> Option<()> {
    let l3 = ip.l3;
    let (source_at, destination_at, words) =
        if ip.family == 0 { (l3 + 12, l3 + 16, 1) } else { (l3 + 8, l3 + 24, 4) };
    let (client_at, server_at) =
        if from_client { (source_at, destination_at) } else { (destination_at, source_at) };
    let mut i = 0;
    while i < 4 {
        exchange.client[i as usize] = if i < words { p.word(client_at + 4 * i)? } else { 0 };
        exchange.server[i as usize] = if i < words { p.word(server_at + 4 * i)? } else { 0 };
        i += 1;
    }
    let (source, destination) = ((ports >> 16) as u16, ports as u16);
    (exchange.client_port, exchange.server_port) =
        if from_client { (source, destination) } else { (destination, source) };
    exchange.family = if ip.family == 0 { 4 } else { 6 };
    Some(())
}

/// Turns `exchange` around: the client becomes the server (for a packet whose direction
/// is not known, looked up both ways).
#[inline(always)]
pub fn turn(exchange: &mut Exchange) {
    core::mem::swap(&mut exchange.client, &mut exchange.server);
    core::mem::swap(&mut exchange.client_port, &mut exchange.server_port);
}

//! What filter primitives mean, as conditions over packet loads, following libpcap's
//! code generation so that ringcap selects exactly what tcpdump selects.
use std::net::{Ipv4Addr, Ipv6Addr};

/// A boolean condition over a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    True,
    Rel(Relation),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
}

/// `lhs op rhs` over 32-bit unsigned values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub lhs: Arith,
    pub op: RelOp,
    pub rhs: Arith,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

/// An arithmetic expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arith {
    Const(u32),
    /// The packet's length on the wire.
    Len,
    Load(Load),
    Bin(BinOp, Box<Arith>, Box<Arith>),
}

/// A big-endian load of 1, 2 or 4 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub base: Base,
    pub offset: u32,
    pub size: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// From the first byte of the frame.
    Frame,
    /// From the IPv4 payload whose header starts at this frame offset (its length read
    /// from the header).
    Ipv4Payload(u32),
}

impl Cond {
    /// The depth of the tree (a leaf is 1). Recursive: only for trees the parser bounds.
    pub fn depth(&self) -> usize {
        match self {
            Cond::True | Cond::Rel(_) => 1,
            Cond::Not(inner) => inner.depth() + 1,
            Cond::And(parts) | Cond::Or(parts) => 1 + parts.iter().map(Cond::depth).max().unwrap_or(0),
        }
    }
}

pub fn and(conds: Vec<Cond>) -> Cond {
    Cond::And(conds)
}

pub fn or(conds: Vec<Cond>) -> Cond {
    Cond::Or(conds)
}

pub fn not(cond: Cond) -> Cond {
    Cond::Not(Box::new(cond))
}

pub fn load(offset: u32, size: u8) -> Arith {
    Arith::Load(Load { base: Base::Frame, offset, size })
}

pub fn rel(lhs: Arith, op: RelOp, rhs: u32) -> Cond {
    Cond::Rel(Relation { lhs, op, rhs: Arith::Const(rhs) })
}

pub fn eq(lhs: Arith, value: u32) -> Cond {
    rel(lhs, RelOp::Eq, value)
}

pub fn masked(lhs: Arith, mask: u32) -> Arith {
    Arith::Bin(BinOp::And, Box::new(lhs), Box::new(Arith::Const(mask)))
}

pub const ETHERTYPE_IP: u32 = 0x0800;
pub const ETHERTYPE_IPV6: u32 = 0x86dd;
pub const ETHERTYPE_ARP: u32 = 0x0806;
pub const ETHERTYPE_RARP: u32 = 0x8035;
pub const VLAN_ETHERTYPES: [u32; 3] = [0x8100, 0x88a8, 0x9100];
const IPPROTO_FRAGMENT: u32 = 44;

/// Packet layout as far as the parser knows it: where the network header starts.
/// Every `vlan` in an expression moves it 4 bytes on for what follows, as in libpcap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub network: u32,
}

impl Default for Layout {
    fn default() -> Self {
        Layout { network: 14 }
    }
}

/// Source, destination, or either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
    Either,
}

impl Dir {
    fn pick(self, src: Cond, dst: Cond) -> Cond {
        match self {
            Dir::Src => src,
            Dir::Dst => dst,
            Dir::Either => or(vec![src, dst]),
        }
    }
}

impl Layout {
    pub fn ethertype(&self, value: u32) -> Cond {
        eq(load(self.network - 2, 2), value)
    }

    /// IPv4 with this protocol number.
    pub fn ipv4_proto(&self, proto: u32) -> Cond {
        and(vec![self.ethertype(ETHERTYPE_IP), eq(load(self.network + 9, 1), proto)])
    }

    /// IPv6 whose next header, or the next header after a fragment header, is `proto`.
    pub fn ipv6_proto(&self, proto: u32) -> Cond {
        let nh = || load(self.network + 6, 1);
        let after_fragment = and(vec![eq(nh(), IPPROTO_FRAGMENT), eq(load(self.network + 40, 1), proto)]);
        and(vec![self.ethertype(ETHERTYPE_IPV6), or(vec![eq(nh(), proto), after_fragment])])
    }

    /// `tcp`, `udp`, `sctp`: IPv4 or IPv6.
    pub fn transport(&self, proto: u32) -> Cond {
        or(vec![self.ipv4_proto(proto), self.ipv6_proto(proto)])
    }

    /// Not a non-first IPv4 fragment.
    pub fn ipv4_first_fragment(&self) -> Cond {
        rel(masked(load(self.network + 6, 2), 0x1fff), RelOp::Eq, 0)
    }

    /// `[proto] [src|dst] port` / `portrange`: ports of TCP, UDP and SCTP (or only `protos`).
    pub fn port(&self, protos: &[u32], dir: Dir, low: u32, high: u32) -> Cond {
        let matches = |value: Arith| {
            if low == high {
                eq(value, low)
            } else {
                and(vec![rel(value.clone(), RelOp::Ge, low), rel(value, RelOp::Le, high)])
            }
        };
        let v4_port =
            |at: u32| Arith::Load(Load { base: Base::Ipv4Payload(self.network), offset: at, size: 2 });
        let ipv6 = and(vec![
            self.ethertype(ETHERTYPE_IPV6),
            or(protos.iter().map(|&p| eq(load(self.network + 6, 1), p)).collect()),
            dir.pick(matches(load(self.network + 40, 2)), matches(load(self.network + 42, 2))),
        ]);
        let ipv4 = and(vec![
            self.ethertype(ETHERTYPE_IP),
            or(protos.iter().map(|&p| eq(load(self.network + 9, 1), p)).collect()),
            self.ipv4_first_fragment(),
            dir.pick(matches(v4_port(0)), matches(v4_port(2))),
        ]);
        or(vec![ipv6, ipv4])
    }

    /// `[src|dst] host|net` for IPv4: the IPv4 header, and ARP/RARP sender and target
    /// (unless `ip_only`, as for `ip host`).
    pub fn ipv4_net(&self, dir: Dir, addr: Ipv4Addr, prefix: u32, ip_only: bool) -> Cond {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        let value = u32::from(addr) & mask;
        let word = |at: u32| {
            if mask == u32::MAX {
                eq(load(at, 4), value)
            } else {
                eq(masked(load(at, 4), mask), value)
            }
        };
        let n = self.network;
        let ipv4 = and(vec![self.ethertype(ETHERTYPE_IP), dir.pick(word(n + 12), word(n + 16))]);
        if ip_only {
            return ipv4;
        }
        let arp = and(vec![
            or(vec![self.ethertype(ETHERTYPE_ARP), self.ethertype(ETHERTYPE_RARP)]),
            dir.pick(word(n + 14), word(n + 24)),
        ]);
        or(vec![ipv4, arp])
    }

    /// `[src|dst] host|net` for IPv6.
    pub fn ipv6_net(&self, dir: Dir, addr: Ipv6Addr, prefix: u32) -> Cond {
        let octets = addr.octets();
        let address_at = |at: u32| {
            let mut words = Vec::new();
            for i in 0..4u32 {
                let bits = prefix.saturating_sub(32 * i).min(32);
                if bits == 0 {
                    break;
                }
                let mask = u32::MAX << (32 - bits);
                let chunk: [u8; 4] = octets[4 * i as usize..4 * i as usize + 4].try_into().expect("4 bytes");
                let value = u32::from_be_bytes(chunk) & mask;
                let word = load(at + 4 * i, 4);
                words.push(if mask == u32::MAX { eq(word, value) } else { eq(masked(word, mask), value) });
            }
            and(words)
        };
        let n = self.network;
        and(vec![self.ethertype(ETHERTYPE_IPV6), dir.pick(address_at(n + 8), address_at(n + 24))])
    }

    /// `vlan [id]`: a VLAN tag (802.1Q, 802.1ad or the old QinQ type) here, with this
    /// id if given. The caller moves the layout on by 4 bytes afterwards.
    pub fn vlan(&self, id: Option<u32>) -> Cond {
        let tpid = or(VLAN_ETHERTYPES.iter().map(|&t| self.ethertype(t)).collect());
        match id {
            None => tpid,
            Some(id) => and(vec![tpid, eq(masked(load(self.network, 2), 0x0fff), id)]),
        }
    }
}

/// `ether [src|dst|host] MAC`: frame addresses, which no VLAN tag moves.
pub fn ether_host(dir: Dir, mac: [u8; 6]) -> Cond {
    let at = |offset: u32| {
        and(vec![
            eq(load(offset + 2, 4), u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]])),
            eq(load(offset, 2), u32::from(u16::from_be_bytes([mac[0], mac[1]]))),
        ])
    };
    dir.pick(at(6), at(0))
}

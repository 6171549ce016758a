//! pcap-filter syntax (`man pcap-filter`) to [`Cond`], with tcpdump's precedence:
//! `not` binds tightest, `and` and `or` are equal and associate to the left.
use std::net::{Ipv4Addr, Ipv6Addr};

use super::cond::*;
use super::lexer::{Token, TokenKind};

/// A parse failure: where, and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseFailure {
    pub at: usize,
    pub len: usize,
    pub message: String,
}

type Parsed<T> = Result<T, ParseFailure>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Ether,
    Ip,
    Ip6,
    Arp,
    Rarp,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Host,
    Net,
    Port,
    PortRange,
}

/// The qualifiers of the last primitive: a bare address after `or` reuses them
/// (`host 10.0.0.1 or 10.0.0.2`).
#[derive(Clone, Copy, Debug)]
struct Qualifiers {
    proto: Option<Proto>,
    dir: Dir,
    kind: Kind,
}

pub struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    end: usize,
    layout: Layout,
    last: Option<Qualifiers>,
    /// Parentheses, `not` and unary minus open around the current token: bounds the
    /// parser's recursion.
    nesting: usize,
    /// Arithmetic operators so far: bounds the depth of arithmetic trees.
    arith_ops: usize,
}

impl Nested {
    /// A primitive or comparison: a tree of a few levels, measured.
    fn small(cond: Cond) -> Self {
        let depth = cond.depth();
        Nested { cond, depth }
    }
}

/// The deepest nesting of parentheses, `not` and unary minus an expression may have.
pub const MAX_NESTING: usize = 100;
/// The deepest condition tree (alternating `and`/`or` chains nest too).
pub const MAX_DEPTH: usize = 256;
/// The most arithmetic operators in one expression.
pub const MAX_ARITH_OPS: usize = 256;

/// A condition and the depth of its tree.
struct Nested {
    cond: Cond,
    depth: usize,
}

const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const IPPROTO_SCTP: u32 = 132;
const IPPROTO_ICMP: u32 = 1;
const IPPROTO_ICMPV6: u32 = 58;

fn proto_of(word: &str) -> Option<Proto> {
    Some(match word {
        "ether" => Proto::Ether,
        "ip" => Proto::Ip,
        "ip6" => Proto::Ip6,
        "arp" => Proto::Arp,
        "rarp" => Proto::Rarp,
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "sctp" => Proto::Sctp,
        "icmp" => Proto::Icmp,
        "icmp6" => Proto::Icmp6,
        _ => return None,
    })
}

/// Named constants of pcap-filter, usable in arithmetic.
fn named_constant(word: &str) -> Option<u32> {
    Some(match word {
        "tcpflags" => 13,
        "tcp-fin" => 0x01,
        "tcp-syn" => 0x02,
        "tcp-rst" => 0x04,
        "tcp-push" => 0x08,
        "tcp-ack" => 0x10,
        "tcp-urg" => 0x20,
        "tcp-ece" => 0x40,
        "tcp-cwr" => 0x80,
        "icmptype" | "icmp6type" => 0,
        "icmpcode" | "icmp6code" => 1,
        "icmp-echoreply" => 0,
        "icmp-unreach" => 3,
        "icmp-sourcequench" => 4,
        "icmp-redirect" => 5,
        "icmp-echo" => 8,
        "icmp-routeradvert" => 9,
        "icmp-routersolicit" => 10,
        "icmp-timxceed" => 11,
        "icmp-paramprob" => 12,
        "icmp-tstamp" => 13,
        "icmp-tstampreply" => 14,
        "icmp-ireq" => 15,
        "icmp-ireqreply" => 16,
        "icmp-maskreq" => 17,
        "icmp-maskreply" => 18,
        "icmp6-echo" => 128,
        "icmp6-echoreply" => 129,
        "icmp6-routersolicit" => 133,
        "icmp6-routeradvert" => 134,
        "icmp6-neighborsolicit" => 135,
        "icmp6-neighboradvert" => 136,
        _ => return None,
    })
}

/// Well-known service names for ports (tcpdump reads /etc/services; these are the usual ones).
fn service_port(word: &str) -> Option<u32> {
    Some(match word {
        "ftp-data" => 20,
        "ftp" => 21,
        "ssh" => 22,
        "telnet" => 23,
        "smtp" => 25,
        "domain" => 53,
        "bootps" => 67,
        "bootpc" => 68,
        "tftp" => 69,
        "http" | "www" => 80,
        "pop3" => 110,
        "ntp" => 123,
        "imap" => 143,
        "snmp" => 161,
        "bgp" => 179,
        "ldap" => 389,
        "https" => 443,
        "syslog" => 514,
        _ => return None,
    })
}

fn parse_number(text: &str) -> Option<u32> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') && text.bytes().all(|b| b.is_ascii_digit()) {
        u32::from_str_radix(&text[1..], 8).ok()
    } else {
        text.parse().ok()
    }
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-', '.']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

/// What a network/host word names.
enum Address {
    V4(Ipv4Addr, u32),
    V6(Ipv6Addr, u32),
}

/// `a.b.c.d`, `a.b.c.d/len`, `a`, `a.b`, `a.b.c` (as `net`), IPv6 with optional `/len`.
fn parse_address(text: &str, as_net: bool) -> Option<Address> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u32>().ok()?)),
        None => (text, None),
    };
    if addr.contains(':') {
        let ip: Ipv6Addr = addr.parse().ok()?;
        let prefix = prefix.unwrap_or(128);
        return (prefix <= 128).then_some(Address::V6(ip, prefix));
    }
    let octets: Vec<&str> = addr.split('.').collect();
    if octets.is_empty() || octets.len() > 4 || octets.iter().any(|o| o.is_empty() || o.len() > 3) {
        return None;
    }
    if octets.len() < 4 && (!as_net || prefix.is_some()) {
        return None;
    }
    let mut bytes = [0u8; 4];
    for (byte, octet) in bytes.iter_mut().zip(&octets) {
        *byte = octet.parse().ok()?;
    }
    let prefix = prefix.unwrap_or(8 * octets.len() as u32);
    (prefix <= 32).then_some(Address::V4(Ipv4Addr::from(bytes), prefix))
}

pub const SUPPORTED: &str = "[src|dst] host ADDR, ether [src|dst|host] MAC, [src|dst] net CIDR, \
[tcp|udp|sctp] [src|dst] port N, [tcp|udp|sctp] [src|dst] portrange N-M, ip, ip6, arp, rarp, tcp, udp, \
sctp, icmp, icmp6, vlan [ID], less N, greater N, PROTO[OFFSET:SIZE] comparisons (ether, ip, ip6, arp, \
tcp, udp, icmp, icmp6) with len, tcpflags, tcp-syn..., and/or/not, &&/||/!, parentheses";

impl Parser {
    pub fn new(tokens: Vec<Token>, text_len: usize) -> Self {
        Parser {
            tokens,
            pos: 0,
            end: text_len,
            layout: Layout::default(),
            last: None,
            nesting: 0,
            arith_ops: 0,
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_text(&self) -> Option<&str> {
        self.peek().map(|t| t.text.as_str())
    }

    fn fail<T>(&self, message: impl Into<String>) -> Parsed<T> {
        let (at, len) = self.peek().map_or((self.end, 1), |t| (t.at, t.text.len()));
        Err(ParseFailure { at, len, message: message.into() })
    }

    fn fail_at<T>(&self, token: &Token, message: impl Into<String>) -> Parsed<T> {
        Err(ParseFailure { at: token.at, len: token.text.len(), message: message.into() })
    }

    fn next_token(&mut self) -> Parsed<Token> {
        match self.tokens.get(self.pos).cloned() {
            Some(token) => {
                self.pos += 1;
                Ok(token)
            }
            None => self.fail("the expression ends too early"),
        }
    }

    fn expect(&mut self, text: &str) -> Parsed<()> {
        if self.peek_text() == Some(text) {
            self.pos += 1;
            Ok(())
        } else {
            let found = self.peek_text().map_or("the end".to_string(), |t| format!("{t:?}"));
            self.fail(format!("expected {text:?}, found {found}"))
        }
    }

    /// The whole expression.
    pub fn parse(mut self) -> Parsed<Cond> {
        if self.tokens.is_empty() {
            return Ok(Cond::True);
        }
        let cond = self.expr()?.cond;
        if self.peek().is_some() {
            return self.fail("expected `and` or `or` here");
        }
        Ok(cond)
    }

    /// Terms joined by `and` and `or` (equal precedence, left to right). A run of the same
    /// operator is one flat node, so only alternations and parentheses deepen the tree.
    fn expr(&mut self) -> Parsed<Nested> {
        let Nested { cond: mut left, mut depth } = self.term()?;
        loop {
            let is_and = match self.peek_text() {
                Some("and" | "&&") => true,
                Some("or" | "||") => false,
                _ => return Ok(Nested { cond: left, depth }),
            };
            let operator = self.peek().cloned().expect("peeked");
            self.pos += 1;
            let right = self.term()?;
            left = match left {
                Cond::And(mut parts) if is_and => {
                    parts.push(right.cond);
                    depth = depth.max(right.depth + 1);
                    Cond::And(parts)
                }
                Cond::Or(mut parts) if !is_and => {
                    parts.push(right.cond);
                    depth = depth.max(right.depth + 1);
                    Cond::Or(parts)
                }
                left => {
                    depth = depth.max(right.depth) + 1;
                    if is_and {
                        and(vec![left, right.cond])
                    } else {
                        or(vec![left, right.cond])
                    }
                }
            };
            if depth > MAX_DEPTH {
                return self.fail_at(
                    &operator,
                    format!("the expression nests deeper than {MAX_DEPTH} levels; use parentheses to group"),
                );
            }
        }
    }

    /// Runs `parse` one nesting level deeper, refusing past [`MAX_NESTING`].
    fn nested<T>(&mut self, opener: &Token, parse: impl FnOnce(&mut Self) -> Parsed<T>) -> Parsed<T> {
        if self.nesting >= MAX_NESTING {
            return self.fail_at(
                opener,
                format!("parentheses, `not` and `-` nest deeper than {MAX_NESTING} levels here"),
            );
        }
        self.nesting += 1;
        let parsed = parse(self);
        self.nesting -= 1;
        parsed
    }

    fn term(&mut self) -> Parsed<Nested> {
        match self.peek_text() {
            Some("not" | "!") => {
                let opener = self.peek().cloned().expect("peeked");
                self.pos += 1;
                let inner = self.nested(&opener, Self::term)?;
                Ok(Nested { cond: not(inner.cond), depth: inner.depth + 1 })
            }
            None => self.fail("expected a primitive (host, port, tcp, ...)"),
            _ => {
                let (pos, layout) = (self.pos, self.layout);
                let first = self.peek_text().unwrap_or_default();
                let second = self.tokens.get(self.pos + 1).map(|t| t.text.as_str());
                let operator_follows = second.is_some_and(|t| {
                    Self::binop(t).is_some() || matches!(t, "=" | "==" | "!=" | "<" | "<=" | ">" | ">=")
                });
                let surely_arithmetic = second == Some("[")
                    || first == "len"
                    || (parse_number(first).is_some() && operator_follows);
                let arith_ops = self.arith_ops;
                let relation = self.relation();
                if relation.is_ok() || surely_arithmetic {
                    return relation.map(Nested::small);
                }
                let relation_error = relation.unwrap_err();
                self.pos = pos;
                self.layout = layout;
                self.arith_ops = arith_ops;
                let other = if self.peek_text() == Some("(") {
                    let opener = self.peek().cloned().expect("peeked");
                    self.pos += 1;
                    self.nested(&opener, |p| p.expr().and_then(|c| p.expect(")").map(|()| c)))
                } else {
                    self.primitive().map(Nested::small)
                };
                // Report whichever attempt got further into the expression.
                other.map_err(|e| if relation_error.at > e.at { relation_error } else { e })
            }
        }
    }

    // --- comparisons: arith relop arith ---

    fn relation(&mut self) -> Parsed<Cond> {
        let mut guards = Vec::new();
        let lhs = self.arith(0, &mut guards)?;
        let op = match self.peek_text() {
            Some("=" | "==") => RelOp::Eq,
            Some("!=") => RelOp::Ne,
            Some("<") => RelOp::Lt,
            Some("<=") => RelOp::Le,
            Some(">") => RelOp::Gt,
            Some(">=") => RelOp::Ge,
            _ => return self.fail("expected a comparison (==, !=, <, <=, >, >=)"),
        };
        self.pos += 1;
        let rhs = self.arith(0, &mut guards)?;
        guards.push(Cond::Rel(Relation { lhs, op, rhs }));
        Ok(if guards.len() == 1 { guards.pop().expect("one") } else { and(guards) })
    }

    fn binop(text: &str) -> Option<(BinOp, u8)> {
        Some(match text {
            "|" => (BinOp::Or, 1),
            "^" => (BinOp::Xor, 1),
            "&" => (BinOp::And, 2),
            "<<" => (BinOp::Shl, 3),
            ">>" => (BinOp::Shr, 3),
            "+" => (BinOp::Add, 4),
            "-" => (BinOp::Sub, 4),
            "*" => (BinOp::Mul, 5),
            "/" => (BinOp::Div, 5),
            "%" => (BinOp::Mod, 5),
            _ => return None,
        })
    }

    fn arith(&mut self, min_level: u8, guards: &mut Vec<Cond>) -> Parsed<Arith> {
        let mut left = self.arith_atom(guards)?;
        while let Some((op, level)) = self.peek_text().and_then(Self::binop) {
            if level <= min_level {
                break;
            }
            let operator = self.next_token()?;
            self.arith_ops += 1;
            if self.arith_ops > MAX_ARITH_OPS {
                return self.fail_at(&operator, format!("more than {MAX_ARITH_OPS} arithmetic operators"));
            }
            let right = self.arith(level, guards)?;
            left = Arith::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn arith_atom(&mut self, guards: &mut Vec<Cond>) -> Parsed<Arith> {
        let token = self.next_token()?;
        match token.text.as_str() {
            "(" => self.nested(&token, |p| {
                let inner = p.arith(0, guards)?;
                p.expect(")")?;
                Ok(inner)
            }),
            "-" => {
                let inner = self.nested(&token, |p| p.arith_atom(guards))?;
                Ok(Arith::Bin(BinOp::Sub, Box::new(Arith::Const(0)), Box::new(inner)))
            }
            "len" => Ok(Arith::Len),
            word if self.peek_text() == Some("[") && proto_of(word).is_some() => {
                let proto = proto_of(word).expect("checked");
                self.packet_load(&token, proto, guards)
            }
            word => match parse_number(word).or_else(|| named_constant(word)) {
                Some(value) if token.kind == TokenKind::Word => Ok(Arith::Const(value)),
                _ => {
                    self.fail_at(&token, format!("expected a number, `len` or PROTO[OFFSET], found {word:?}"))
                }
            },
        }
    }

    /// `proto[offset]`, `proto[offset:size]`: a load guarded by the protocol's presence.
    fn packet_load(&mut self, token: &Token, proto: Proto, guards: &mut Vec<Cond>) -> Parsed<Arith> {
        self.expect("[")?;
        let offset_at = self.peek().cloned();
        let mut inner_guards = Vec::new();
        let offset = self.arith(0, &mut inner_guards)?;
        let Some(offset) = fold(&offset).filter(|_| inner_guards.is_empty()) else {
            let at = offset_at.expect("an offset was parsed");
            return self.fail_at(&at, "the offset in PROTO[...] must be a constant");
        };
        let size = if self.peek_text() == Some(":") {
            self.pos += 1;
            let size_token = self.next_token()?;
            match parse_number(&size_token.text) {
                Some(s @ (1 | 2 | 4)) => s as u8,
                _ => return self.fail_at(&size_token, "the size in PROTO[OFFSET:SIZE] must be 1, 2 or 4"),
            }
        } else {
            1
        };
        self.expect("]")?;
        let l = self.layout;
        let n = l.network;
        let (guard, base, start) = match proto {
            Proto::Ether => (None, Base::Frame, 0),
            Proto::Ip => (Some(l.ethertype(ETHERTYPE_IP)), Base::Frame, n),
            Proto::Ip6 => (Some(l.ethertype(ETHERTYPE_IPV6)), Base::Frame, n),
            Proto::Arp => (Some(l.ethertype(ETHERTYPE_ARP)), Base::Frame, n),
            Proto::Rarp => (Some(l.ethertype(ETHERTYPE_RARP)), Base::Frame, n),
            Proto::Tcp | Proto::Udp | Proto::Sctp | Proto::Icmp => {
                let number = match proto {
                    Proto::Tcp => IPPROTO_TCP,
                    Proto::Udp => IPPROTO_UDP,
                    Proto::Sctp => IPPROTO_SCTP,
                    _ => IPPROTO_ICMP,
                };
                let guard = and(vec![l.ipv4_proto(number), l.ipv4_first_fragment()]);
                (Some(guard), Base::Ipv4Payload(n), 0)
            }
            Proto::Icmp6 => {
                let guard = and(vec![l.ethertype(ETHERTYPE_IPV6), eq(load(n + 6, 1), IPPROTO_ICMPV6)]);
                (Some(guard), Base::Frame, n + 40)
            }
        };
        let Some(offset) = offset.checked_add(start) else {
            return self.fail_at(token, "offset too large");
        };
        guards.extend(guard);
        Ok(Arith::Load(Load { base, offset, size }))
    }

    // --- primitives ---

    fn number_word(&mut self, what: &str) -> Parsed<u32> {
        let token = self.next_token()?;
        parse_number(&token.text)
            .ok_or(())
            .or_else(|()| self.fail_at(&token, format!("expected {what}, found {:?}", token.text)))
    }

    fn primitive(&mut self) -> Parsed<Cond> {
        let token = self.peek().cloned().expect("checked by term");
        let word = token.text.as_str();
        match word {
            "vlan" => {
                self.pos += 1;
                let id = match self.peek_text().and_then(parse_number) {
                    Some(id) if id <= 4095 => {
                        self.pos += 1;
                        Some(id)
                    }
                    Some(_) => return self.fail("a VLAN id is 0..=4095"),
                    None => None,
                };
                let cond = self.layout.vlan(id);
                self.layout.network += 4;
                Ok(cond)
            }
            "less" | "greater" => {
                self.pos += 1;
                let n = self.number_word("a length in bytes")?;
                Ok(rel(Arith::Len, if word == "less" { RelOp::Le } else { RelOp::Ge }, n))
            }
            _ => self.qualified(),
        }
    }

    /// `[proto] [dir] [kind] ID`, a protocol alone, or a bare ID continuing the last qualifiers.
    fn qualified(&mut self) -> Parsed<Cond> {
        let first = self.peek().cloned().expect("checked by term");
        let mut proto = None;
        let mut dir = None;
        let mut kind = None;
        if let Some(p) = proto_of(&first.text) {
            proto = Some(p);
            self.pos += 1;
        }
        if let Some(d) = match self.peek_text() {
            Some("src") => Some(Dir::Src),
            Some("dst") => Some(Dir::Dst),
            _ => None,
        } {
            dir = Some(d);
            self.pos += 1;
        }
        if let Some(k) = match self.peek_text() {
            Some("host") => Some(Kind::Host),
            Some("net") => Some(Kind::Net),
            Some("port") => Some(Kind::Port),
            Some("portrange") => Some(Kind::PortRange),
            _ => None,
        } {
            kind = Some(k);
            self.pos += 1;
        }
        if let (Some(p), None, None) = (proto, dir, kind) {
            return self.protocol(p, &first);
        }
        let qualifiers = if proto.is_none() && dir.is_none() && kind.is_none() {
            match self.last {
                Some(last) => last,
                None => {
                    return self.fail(format!("unknown primitive {:?}; supported: {SUPPORTED}", first.text))
                }
            }
        } else {
            let kind = kind.unwrap_or(Kind::Host);
            Qualifiers { proto, dir: dir.unwrap_or(Dir::Either), kind }
        };
        let id = self.next_token()?;
        if id.kind != TokenKind::Word {
            return self.fail_at(&id, "expected an address, network or port here");
        }
        let cond = self.with_id(qualifiers, &id)?;
        self.last = Some(qualifiers);
        Ok(cond)
    }

    fn protocol(&self, proto: Proto, token: &Token) -> Parsed<Cond> {
        let l = self.layout;
        Ok(match proto {
            Proto::Ip => l.ethertype(ETHERTYPE_IP),
            Proto::Ip6 => l.ethertype(ETHERTYPE_IPV6),
            Proto::Arp => l.ethertype(ETHERTYPE_ARP),
            Proto::Rarp => l.ethertype(ETHERTYPE_RARP),
            Proto::Tcp => l.transport(IPPROTO_TCP),
            Proto::Udp => l.transport(IPPROTO_UDP),
            Proto::Sctp => l.transport(IPPROTO_SCTP),
            Proto::Icmp => l.ipv4_proto(IPPROTO_ICMP),
            Proto::Icmp6 => l.ipv6_proto(IPPROTO_ICMPV6),
            Proto::Ether => {
                return self.fail_at(token, "`ether` needs `host`, `src` or `dst` and a MAC address")
            }
        })
    }

    fn with_id(&self, q: Qualifiers, id: &Token) -> Parsed<Cond> {
        let l = self.layout;
        let text = id.text.as_str();
        match (q.proto, q.kind) {
            (Some(Proto::Ether), Kind::Host) => match parse_mac(text) {
                Some(mac) => Ok(ether_host(q.dir, mac)),
                None => self.fail_at(id, format!("{text:?} is not a MAC address (like 00:11:22:33:44:55)")),
            },
            (Some(Proto::Ether), _) => self.fail_at(id, "`ether` takes host, src or dst with a MAC address"),
            (proto, Kind::Host | Kind::Net) => {
                let as_net = q.kind == Kind::Net;
                match (parse_address(text, as_net), proto) {
                    (
                        Some(Address::V4(addr, prefix)),
                        None | Some(Proto::Ip) | Some(Proto::Arp) | Some(Proto::Rarp),
                    ) => {
                        if q.kind == Kind::Host && prefix != 32 {
                            return self.fail_at(id, "a host is a single address: use `net` for a prefix");
                        }
                        Ok(match proto {
                            Some(Proto::Ip) => l.ipv4_net(q.dir, addr, prefix, true),
                            _ => l.ipv4_net(q.dir, addr, prefix, false),
                        })
                    }
                    (Some(Address::V6(addr, prefix)), None | Some(Proto::Ip6)) => {
                        if q.kind == Kind::Host && prefix != 128 {
                            return self.fail_at(id, "a host is a single address: use `net` for a prefix");
                        }
                        Ok(l.ipv6_net(q.dir, addr, prefix))
                    }
                    (Some(_), _) => self.fail_at(id, "this address does not fit the protocol qualifier"),
                    (None, _) if parse_mac(text).is_some() => {
                        self.fail_at(id, "a MAC address needs `ether host`")
                    }
                    (None, _) => self.fail_at(
                        id,
                        format!("{text:?} is not an IPv4 or IPv6 address (names are not resolved)"),
                    ),
                }
            }
            (proto, Kind::Port | Kind::PortRange) => {
                let protos: &[u32] = match proto {
                    None => &[IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP],
                    Some(Proto::Tcp) => &[IPPROTO_TCP],
                    Some(Proto::Udp) => &[IPPROTO_UDP],
                    Some(Proto::Sctp) => &[IPPROTO_SCTP],
                    Some(_) => return self.fail_at(id, "ports belong to tcp, udp or sctp"),
                };
                let port = |t: &str| parse_number(t).or_else(|| service_port(t)).filter(|p| *p <= 65535);
                let (low, high) = if q.kind == Kind::Port {
                    match port(text) {
                        Some(p) => (p, p),
                        None => {
                            return self.fail_at(id, format!("{text:?} is not a port number (0..=65535)"))
                        }
                    }
                } else {
                    match text.split_once('-').and_then(|(a, b)| Some((port(a)?, port(b)?))) {
                        Some((a, b)) => (a.min(b), a.max(b)),
                        None => {
                            return self.fail_at(id, format!("{text:?} is not a port range (like 1024-2047)"))
                        }
                    }
                };
                Ok(l.port(protos, q.dir, low, high))
            }
        }
    }
}

/// The value of a constant arithmetic expression.
pub fn fold(arith: &Arith) -> Option<u32> {
    match arith {
        Arith::Const(v) => Some(*v),
        Arith::Bin(op, l, r) => {
            let (l, r) = (fold(l)?, fold(r)?);
            Some(match op {
                BinOp::Add => l.wrapping_add(r),
                BinOp::Sub => l.wrapping_sub(r),
                BinOp::Mul => l.wrapping_mul(r),
                BinOp::Div => l.checked_div(r)?,
                BinOp::Mod => l.checked_rem(r)?,
                BinOp::And => l & r,
                BinOp::Or => l | r,
                BinOp::Xor => l ^ r,
                BinOp::Shl => l.checked_shl(r).unwrap_or(0),
                BinOp::Shr => l.checked_shr(r).unwrap_or(0),
            })
        }
        _ => None,
    }
}

//! A conservative predicate over frame summaries, from a pcap-filter expression: false
//! only when no packet of a frame can match (the frame is then never read), true
//! whenever the summary cannot tell.
//!
//! `host`, `net`, `port`, `portrange`, protocols (`tcp`, `udp`, `ip6`, `arp`, `ip proto 47`,
//! ...) and `vlan [ID]` primitives under `and` and `or` are decided by the summary; `not`
//! (a frame may hold other packets), names to resolve, byte tests and everything else mean
//! "may match". Expressions that look into encapsulations the summary does not index
//! (`mpls`, `pppoes`, `geneve`, ...) get no predicate at all: every frame is read.
use super::lexer::{tokenize, Token};
use crate::storage::summary::{v4_prefix, v6_prefix, KeyKind, Summary};

/// What a frame must (maybe) hold for the expression to match one of its packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prefilter {
    /// The summary cannot tell.
    Maybe,
    /// A packet of the frame has this key.
    Key(KeyKind, Vec<u8>),
    And(Box<Prefilter>, Box<Prefilter>),
    Or(Box<Prefilter>, Box<Prefilter>),
}

impl Prefilter {
    /// The predicate of `expression`; None when summaries cannot decide anything of it.
    pub fn of_expression(expression: &str) -> Option<Prefilter> {
        let tokens = tokenize(expression).ok()?;
        if tokens.is_empty() || tokens.iter().any(|t| UNINDEXED.contains(&t.text.as_str())) {
            return None;
        }
        let mut parser = Parser { tokens: &tokens, at: 0, last: None };
        let predicate = parser.or().ok()?;
        (parser.at == tokens.len() && predicate != Prefilter::Maybe).then_some(predicate)
    }

    /// False if no packet summarized by `summary` can match.
    pub fn may_match(&self, summary: &Summary) -> bool {
        match self {
            Prefilter::Maybe => true,
            Prefilter::Key(kind, value) => summary.may_contain(*kind, value),
            Prefilter::And(a, b) => a.may_match(summary) && b.may_match(summary),
            Prefilter::Or(a, b) => a.may_match(summary) || b.may_match(summary),
        }
    }

    fn and(self, other: Prefilter) -> Prefilter {
        match (self, other) {
            (Prefilter::Maybe, p) | (p, Prefilter::Maybe) => p,
            (a, b) => Prefilter::And(Box::new(a), Box::new(b)),
        }
    }

    fn or(self, other: Prefilter) -> Prefilter {
        match (self, other) {
            (Prefilter::Maybe, _) | (_, Prefilter::Maybe) => Prefilter::Maybe,
            (a, b) => Prefilter::Or(Box::new(a), Box::new(b)),
        }
    }

    fn any_of(keys: impl IntoIterator<Item = Prefilter>) -> Prefilter {
        keys.into_iter().reduce(Prefilter::or).unwrap_or(Prefilter::Maybe)
    }
}

/// Keywords after which libpcap reads inside encapsulations the summary does not open.
const UNINDEXED: [&str; 7] = ["mpls", "pppoes", "pppoed", "geneve", "vxlan", "llc", "protochain"];

/// What a bare value after `and` / `or` stands for: libpcap repeats the last qualifiers.
#[derive(Clone, Copy, Debug)]
enum Last {
    Host,
    Net,
    Port(Option<u8>),
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    last: Option<Last>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(|t| t.text.as_str())
    }

    fn next(&mut self) -> Option<&str> {
        let token = self.tokens.get(self.at).map(|t| t.text.as_str());
        self.at += 1;
        token
    }

    fn or(&mut self) -> Result<Prefilter, ()> {
        let mut left = self.and()?;
        while matches!(self.peek(), Some("or" | "||")) {
            self.at += 1;
            left = left.or(self.and()?);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Prefilter, ()> {
        let mut left = self.unary()?;
        while matches!(self.peek(), Some("and" | "&&")) {
            self.at += 1;
            left = left.and(self.unary()?);
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Prefilter, ()> {
        match self.peek() {
            Some("not" | "!") => {
                self.at += 1;
                // Other packets of the frame may match a negation: nothing to decide.
                self.unary()?;
                Ok(Prefilter::Maybe)
            }
            Some("(") => {
                self.at += 1;
                let inner = self.or()?;
                if self.next() != Some(")") {
                    return Err(());
                }
                // `(tcp[13] & 2) != 0`: the group was arithmetic.
                if !self.at_boundary() {
                    self.skip_primitive();
                    return Ok(Prefilter::Maybe);
                }
                Ok(inner)
            }
            Some(_) => self.primitive(),
            None => Err(()),
        }
    }

    /// At the end of a primitive: `and`, `or`, `)` or the end.
    fn at_boundary(&self) -> bool {
        matches!(self.peek(), None | Some("and" | "or" | "&&" | "||" | ")"))
    }

    /// Skips what the summary cannot decide, to the end of its primitive.
    fn skip_primitive(&mut self) {
        let mut depth = 0usize;
        while let Some(token) = self.peek() {
            match token {
                "(" | "[" => depth += 1,
                ")" | "]" if depth > 0 => depth -= 1,
                ")" => return,
                "and" | "or" | "&&" | "||" if depth == 0 => return,
                _ => {}
            }
            self.at += 1;
        }
    }

    fn primitive(&mut self) -> Result<Prefilter, ()> {
        let start = self.at;
        let mut protocol = None;
        if let Some(p @ ("ip" | "ip6" | "arp" | "rarp" | "tcp" | "udp" | "sctp")) = self.peek() {
            protocol = Some(p.to_string());
            self.at += 1;
        }
        // Direction does not matter to a summary of both addresses and ports.
        match self.peek() {
            Some("src" | "dst") => {
                self.at += 1;
                if matches!(self.peek(), Some("or" | "and"))
                    && matches!(self.tokens.get(self.at + 1).map(|t| t.text.as_str()), Some("src" | "dst"))
                {
                    self.at += 2;
                }
            }
            Some("inbound" | "outbound") => {}
            _ => {}
        }
        let transport = protocol.as_deref().and_then(ip_protocol).filter(|p| matches!(p, 6 | 17 | 132));
        let found = match self.peek() {
            Some("host") => {
                self.at += 1;
                self.last = Some(Last::Host);
                self.value(Last::Host)
            }
            Some("net") => {
                self.at += 1;
                self.last = Some(Last::Net);
                self.value(Last::Net)
            }
            Some("port") => {
                self.at += 1;
                self.last = Some(Last::Port(transport));
                self.value(Last::Port(transport))
            }
            Some("portrange") => {
                self.at += 1;
                let range = self.next().unwrap_or_default().to_string();
                let ports = range
                    .split_once('-')
                    .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)));
                match ports {
                    Some((a, b)) if a <= b && b - a < 1024 => Prefilter::any_of(
                        (a..=b).map(|p| Prefilter::Key(KeyKind::Port, p.to_be_bytes().to_vec())),
                    )
                    .and(transport_key(transport)),
                    _ => Prefilter::Maybe,
                }
            }
            Some("proto") => {
                self.at += 1;
                let number = self.next().and_then(|p| p.parse::<u8>().ok().or_else(|| ip_protocol(p)));
                number.map_or(Prefilter::Maybe, |n| Prefilter::Key(KeyKind::IpProto, vec![n]))
            }
            Some("vlan") if protocol.is_none() => {
                self.at += 1;
                match self.peek().and_then(|id| id.parse::<u16>().ok()) {
                    Some(id) => {
                        self.at += 1;
                        Prefilter::Key(KeyKind::Vlan, id.to_be_bytes().to_vec())
                    }
                    None => Prefilter::Key(KeyKind::AnyVlan, Vec::new()),
                }
            }
            // A protocol alone: `tcp`, `ip6`, `arp`, also `icmp`, `igmp`...
            _ if self.at_boundary() && protocol.is_some() => {
                protocol_key(protocol.as_deref().unwrap_or_default())
            }
            Some(word @ ("icmp" | "icmp6" | "igmp" | "gre" | "esp" | "ah" | "pim" | "vrrp"))
                if protocol.is_none() =>
            {
                let key = protocol_key(word);
                self.at += 1;
                key
            }
            // A bare value after `and` / `or` repeats the last qualifiers (`port 80 or 443`).
            Some(_) if self.at == start => match self.last {
                Some(last) if self.bare_value_follows() => self.value(last),
                _ => {
                    self.skip_primitive();
                    Prefilter::Maybe
                }
            },
            _ => {
                self.skip_primitive();
                Prefilter::Maybe
            }
        };
        if !self.at_boundary() {
            // More than the summary understood: `ip host x` fine, `len > 100` etc. not.
            self.skip_primitive();
            return Ok(Prefilter::Maybe);
        }
        Ok(found.and(match protocol.as_deref() {
            Some(p) if transport.is_none() => protocol_key(p),
            _ => Prefilter::Maybe,
        }))
    }

    fn bare_value_follows(&self) -> bool {
        self.peek().is_some_and(|t| t.chars().next().is_some_and(|c| c.is_ascii_hexdigit() || c == ':'))
    }

    /// The key of the value of a `host`, `net` or `port` primitive.
    fn value(&mut self, kind: Last) -> Prefilter {
        let Some(text) = self.next().map(str::to_string) else { return Prefilter::Maybe };
        match kind {
            Last::Host => host_key(&text),
            Last::Net => {
                let masked = if self.peek() == Some("mask") {
                    self.at += 1;
                    let mask = self.next().and_then(|m| m.parse::<std::net::Ipv4Addr>().ok());
                    mask.map(|m| format!("{text}/{}", u32::from(m).leading_ones()))
                } else {
                    Some(text)
                };
                masked.map_or(Prefilter::Maybe, |net| net_key(&net))
            }
            Last::Port(transport) => match text.parse::<u16>() {
                Ok(port) => {
                    Prefilter::Key(KeyKind::Port, port.to_be_bytes().to_vec()).and(transport_key(transport))
                }
                Err(_) => Prefilter::Maybe,
            },
        }
    }
}

fn transport_key(transport: Option<u8>) -> Prefilter {
    transport.map_or(Prefilter::Maybe, |p| Prefilter::Key(KeyKind::IpProto, vec![p]))
}

fn ip_protocol(name: &str) -> Option<u8> {
    Some(match name {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmp6" => 58,
        "pim" => 103,
        "vrrp" => 112,
        "sctp" => 132,
        _ => return None,
    })
}

/// A protocol word alone.
fn protocol_key(word: &str) -> Prefilter {
    let ethertype = |t: u16| Prefilter::Key(KeyKind::EtherType, t.to_be_bytes().to_vec());
    match word {
        "ip" => ethertype(0x0800),
        "ip6" => ethertype(0x86dd),
        "arp" => ethertype(0x0806),
        "rarp" => ethertype(0x8035),
        other => ip_protocol(other).map_or(Prefilter::Maybe, |p| Prefilter::Key(KeyKind::IpProto, vec![p])),
    }
}

fn host_key(text: &str) -> Prefilter {
    match text.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => Prefilter::Key(KeyKind::Ipv4, a.octets().to_vec()),
        Ok(std::net::IpAddr::V6(a)) => Prefilter::Key(KeyKind::Ipv6, a.octets().to_vec()),
        // A name libpcap resolves, or a MAC address: undecided.
        Err(_) => Prefilter::Maybe,
    }
}

/// `net` with the longest prefix the summary holds that covers it (/8, /16, /24 and
/// the address itself for IPv4; /32, /48, /64 and the address for IPv6).
fn net_key(text: &str) -> Prefilter {
    let (address, len) = match text.split_once('/') {
        Some((a, l)) => (a.to_string(), l.parse::<u8>().ok()),
        None => (text.to_string(), None),
    };
    if let Ok(v4) = address.parse::<std::net::Ipv4Addr>() {
        let len = len.unwrap_or(32);
        return match [32u8, 24, 16, 8].into_iter().find(|&held| held <= len) {
            Some(32) => Prefilter::Key(KeyKind::Ipv4, v4.octets().to_vec()),
            Some(held) => Prefilter::Key(KeyKind::Ipv4Net, v4_prefix(&v4.octets(), held).to_vec()),
            None => Prefilter::Maybe,
        };
    }
    // `net 10` and `net 10.1`: libpcap's classful shorthand.
    let parts: Vec<&str> = address.split('.').collect();
    if len.is_none() && (1..=3).contains(&parts.len()) {
        let octets: Option<Vec<u8>> = parts.iter().map(|p| p.parse().ok()).collect();
        if let Some(octets) = octets {
            let mut address = [0u8; 4];
            address[..octets.len()].copy_from_slice(&octets);
            return Prefilter::Key(KeyKind::Ipv4Net, v4_prefix(&address, 8 * octets.len() as u8).to_vec());
        }
    }
    if let Ok(v6) = address.parse::<std::net::Ipv6Addr>() {
        let len = len.unwrap_or(128);
        return match [128u8, 64, 48, 32].into_iter().find(|&held| held <= len) {
            Some(128) => Prefilter::Key(KeyKind::Ipv6, v6.octets().to_vec()),
            Some(held) => Prefilter::Key(KeyKind::Ipv6Net, v6_prefix(&v6.octets(), held).to_vec()),
            None => Prefilter::Maybe,
        };
    }
    Prefilter::Maybe
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::summary::KeySet;

    fn summary_of(keys: &[(KeyKind, Vec<u8>)]) -> Summary {
        let mut set = KeySet::default();
        for (kind, value) in keys {
            set.add(*kind, value);
        }
        Summary::of_keys(&set)
    }

    #[test]
    fn decides_what_the_summary_holds_and_says_maybe_otherwise() {
        let frame = summary_of(&[
            (KeyKind::Ipv4, vec![10, 0, 1, 5]),
            (KeyKind::Ipv4Net, v4_prefix(&[10, 0, 1, 5], 16).to_vec()),
            (KeyKind::Port, 443u16.to_be_bytes().to_vec()),
            (KeyKind::IpProto, vec![6]),
            (KeyKind::EtherType, 0x0800u16.to_be_bytes().to_vec()),
        ]);
        let may = |e: &str| Prefilter::of_expression(e).is_none_or(|p| p.may_match(&frame));
        assert!(may("host 10.0.1.5 and port 443"));
        assert!(!may("host 10.0.1.6"));
        assert!(!may("host 10.0.1.5 and udp"));
        assert!(!may("tcp port 80"));
        assert!(may("tcp port 80 or 443"), "the bare 443 is a port too");
        assert!(may("net 10.0.0.0/16") && !may("net 10.9.0.0/16") && may("net 10.0.0.0 mask 255.255.0.0"));
        assert!(!may("ip6") && may("ip") && !may("arp") && !may("vlan 100"));
        assert!(may("not host 10.0.1.6"), "other packets may match a negation");
        assert!(may("host example.com"), "names are libpcap's to resolve");
        assert!(may("tcp[13] & 2 != 0") && may("len > 100") && may("(tcp[13] & 2) != 0"));
        assert!(!may("(host 10.0.1.6 or host 10.0.1.7) and port 443"));
        assert!(may("src or dst host 10.0.1.5") && !may("dst host 10.0.1.7"));
        assert!(!may("portrange 1-100") && may("portrange 400-450"));
        assert!(Prefilter::of_expression("mpls and host 10.0.1.6").is_none(), "encapsulations are read");
        assert!(Prefilter::of_expression("").is_none() && Prefilter::of_expression("len > 1").is_none());
    }
}

//! Where in an expression libpcap's complaint is about. libpcap reports no positions
//! ("syntax error", "unknown host 'x'", "VLAN tag 5000 greater than maximum 4095"), so
//! the culprit is found from the tokens: the quoted or numbered token of the message,
//! an unbalanced parenthesis, a dangling operator, or a word that is no keyword.
use super::lexer::{Token, TokenKind};

/// A position (byte offset and length) in the expression, and a hint to add.
pub struct Culprit {
    pub at: usize,
    pub len: usize,
    pub hint: Option<&'static str>,
}

/// Words of the pcap-filter language (libpcap 1.10's scanner), used to tell a misspelt
/// primitive from a keyword.
const KEYWORDS: &[&str] = &[
    "dst",
    "src",
    "host",
    "gateway",
    "net",
    "mask",
    "port",
    "portrange",
    "proto",
    "protochain",
    "ip",
    "ip6",
    "arp",
    "rarp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "igmp",
    "igrp",
    "pim",
    "vrrp",
    "carp",
    "sctp",
    "decnet",
    "lat",
    "sca",
    "moprc",
    "mopdl",
    "iso",
    "esis",
    "es-is",
    "isis",
    "is-is",
    "l1",
    "l2",
    "iih",
    "lsp",
    "snp",
    "csnp",
    "psnp",
    "clnp",
    "stp",
    "ipx",
    "netbeui",
    "link",
    "ether",
    "ppp",
    "slip",
    "fddi",
    "tr",
    "wlan",
    "radio",
    "atalk",
    "aarp",
    "ah",
    "esp",
    "broadcast",
    "multicast",
    "less",
    "greater",
    "len",
    "inbound",
    "outbound",
    "ifindex",
    "vlan",
    "mpls",
    "pppoed",
    "pppoes",
    "geneve",
    "lane",
    "llc",
    "metac",
    "bcc",
    "oam",
    "oamf4",
    "oamf4ec",
    "oamf4sc",
    "sc",
    "ilmisc",
    "connectmsg",
    "metaconnect",
    "vpi",
    "vci",
    "on",
    "ifname",
    "rnr",
    "rulenum",
    "reason",
    "rset",
    "ruleset",
    "srnr",
    "subrulenum",
    "action",
    "type",
    "subtype",
    "direction",
    "dir",
    "addr1",
    "addr2",
    "addr3",
    "addr4",
    "ra",
    "ta",
    "and",
    "or",
    "not",
    "byte",
    "fisu",
    "lssu",
    "lsu",
    "sio",
    "opc",
    "dpc",
    "sls",
    "hfisu",
    "hlssu",
    "hsio",
    "hopc",
    "hdpc",
    "hsls",
    "tcpflags",
    "icmptype",
    "icmpcode",
    "icmp6type",
    "icmp6code",
];

/// Keywords after which a word names something (a host, a service, a protocol), so that
/// an unknown word there is no misspelt primitive.
const TAKES_NAME: &[&str] = &[
    "host",
    "gateway",
    "net",
    "port",
    "portrange",
    "proto",
    "protochain",
    "src",
    "dst",
    "ether",
    "type",
    "subtype",
    "dir",
    "on",
    "ifname",
    "reason",
    "action",
];

fn is_value(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_digit())
        || word.contains(['.', ':', '/'])
        || word.contains('-') && KEYWORDS.iter().all(|k| *k != word)
}

fn at_token(token: &Token, hint: Option<&'static str>) -> Culprit {
    Culprit { at: token.at, len: token.text.len(), hint }
}

/// The text libpcap quotes in `message` ('x' or "x"), if any.
fn quoted(message: &str) -> Option<&str> {
    for quote in ['\'', '"'] {
        let mut parts = message.split(quote);
        if let (Some(_), Some(inner), Some(_)) = (parts.next(), parts.next(), parts.next()) {
            return Some(inner);
        }
    }
    None
}

/// Finds what libpcap's `message` is about in `text` (tokenized as `tokens`).
pub fn culprit(text: &str, tokens: &[Token], message: &str) -> Culprit {
    let end = Culprit { at: text.len(), len: 1, hint: None };
    let whole = Culprit { at: 0, len: text.len(), hint: None };
    if let Some(inner) = quoted(message) {
        if let Some(token) = tokens
            .iter()
            .find(|t| t.text == inner || inner.contains(t.text.as_str()) && t.kind == TokenKind::Word)
        {
            return at_token(token, None);
        }
    }
    if message.contains("size") {
        // `[offset:size]` with a size other than 1, 2 or 4.
        if let Some(pair) =
            tokens.windows(2).find(|w| w[0].text == ":" && !matches!(w[1].text.as_str(), "1" | "2" | "4"))
        {
            return at_token(&pair[1], None);
        }
    }
    if message.to_ascii_lowercase().contains("mask") {
        if let Some(token) = tokens.iter().find(|t| t.text.contains('/') || t.text == "mask") {
            return at_token(token, None);
        }
    }
    if message.contains("link layer address") || message.contains("ethernet address") {
        if let Some(token) = tokens.iter().skip_while(|t| t.text != "ether").find(|t| is_value(&t.text)) {
            return at_token(token, None);
        }
    }
    let numbers: Vec<&str> = message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    if let Some(token) = tokens.iter().find(|t| numbers.contains(&t.text.as_str())) {
        return at_token(token, None);
    }
    if !message.contains("syntax error") {
        return whole;
    }
    let mut open = Vec::new();
    for token in tokens {
        match token.text.as_str() {
            "(" => open.push(token),
            ")" if open.pop().is_none() => return at_token(token, Some("no \"(\" opens it")),
            _ => {}
        }
    }
    if !open.is_empty() {
        return Culprit { hint: Some("expected \")\""), ..end };
    }
    if let Some(last) = tokens.last() {
        if matches!(last.text.as_str(), "and" | "or" | "not" | "&&" | "||" | "!") {
            return Culprit { hint: Some("expected a primitive after it"), ..end };
        }
    }
    let mut previous: Option<&Token> = None;
    for token in tokens {
        let word = token.text.as_str();
        let names = previous.is_some_and(|p| TAKES_NAME.contains(&p.text.as_str()));
        if token.kind == TokenKind::Word && !names && !is_value(word) && !KEYWORDS.contains(&word) {
            return at_token(token, Some("not a primitive of the pcap-filter language"));
        }
        previous = Some(token);
    }
    whole
}

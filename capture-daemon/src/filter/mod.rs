//! tcpdump filter expressions, compiled by libpcap itself ([`libpcap`]): the whole
//! pcap-filter language with tcpdump's meaning and its optimiser, by construction. The
//! kernel runs the classic program translated to native eBPF ([`ebpf`]), spliced into
//! its capture programs at load time; user space runs the classic program with libpcap's
//! own interpreter on stored packets. Errors point at the culprit ([`locate`]).
mod ebpf;
mod lexer;
mod libpcap;
mod locate;
pub mod prefilter;

pub use ebpf::{EbpfInsn, TranslateError};
pub use libpcap::BpfInsn;

use capture_common::FILTER_SLOTS;

/// The longest expression accepted, in bytes (it bounds the work an API request can ask for).
pub const MAX_EXPRESSION_BYTES: usize = 64 * 1024;
/// Most parentheses and negations nested in one another.
pub const MAX_NESTING: usize = 100;
/// Most `and`/`or` operators: libpcap's optimiser takes time that grows steeply with
/// them (200 alternatives take over a second, 500 several).
pub const MAX_BOOLEAN_OPERATORS: usize = 128;
/// Most arithmetic operators.
pub const MAX_ARITH_OPS: usize = 256;
/// Expressions our tokenizer cannot read are left to libpcap up to this length.
const MAX_UNTOKENIZED_BYTES: usize = 1024;

/// A filter expression that could not be compiled, with a pointer at the culprit.
#[derive(Debug, thiserror::Error)]
#[error("bad filter expression: {message}\n  {excerpt}\n  {caret}\nthe language is tcpdump's: see `man 7 pcap-filter`")]
pub struct FilterError {
    pub message: String,
    pub expression: String,
    /// The part of the expression around the culprit (a long expression is cut).
    pub excerpt: String,
    pub caret: String,
    pub at: usize,
}

/// How much of the expression an error shows on each side of the culprit.
const EXCERPT_CONTEXT: usize = 60;

/// The excerpt of `expression` around `at..at+len`, and the caret line under it.
fn excerpt(expression: &str, at: usize, len: usize) -> (String, String) {
    let floor = |mut i: usize| {
        i = i.min(expression.len());
        while !expression.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = floor(at.saturating_sub(EXCERPT_CONTEXT));
    let end = floor(at.saturating_add(len.min(EXCERPT_CONTEXT)).saturating_add(EXCERPT_CONTEXT));
    let (before, after) =
        (if start > 0 { "..." } else { "" }, if end < expression.len() { "..." } else { "" });
    // Control characters would garble the terminal: show them escaped, one column each.
    let shown: String =
        expression[start..end].chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    let column = before.len() + expression[start..floor(at)].chars().count();
    let width = expression[floor(at)..floor(at + len)].chars().count().clamp(1, EXCERPT_CONTEXT);
    (format!("{before}{shown}{after}"), format!("{}{}", " ".repeat(column), "^".repeat(width)))
}

/// A compiled filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub expression: String,
    /// libpcap's classic BPF program (empty for the empty expression).
    pub classic: Vec<BpfInsn>,
    /// The classic program as eBPF, the body of the kernel's filter subprogram.
    pub native: Vec<EbpfInsn>,
}

/// How deeply parentheses and negations nest, and how many boolean and arithmetic
/// operators there are: what bounds libpcap's work.
fn complexity(tokens: &[lexer::Token]) -> (usize, usize, usize) {
    let (mut depth, mut deepest, mut negations, mut boolean, mut arith) = (0usize, 0, 0, 0, 0);
    let mut brackets = 0usize;
    for token in tokens {
        match token.text.as_str() {
            "(" => depth += 1,
            ")" => depth = depth.saturating_sub(1),
            "[" => brackets += 1,
            "]" => brackets = brackets.saturating_sub(1),
            "not" | "!" => negations += 1,
            "and" | "or" | "&&" | "||" => boolean += 1,
            "+" | "-" | "*" | "/" | "%" | "&" | "|" | "^" | "<<" | ">>" => arith += 1,
            _ => {}
        }
        if !matches!(token.text.as_str(), "not" | "!" | "(") {
            negations = 0;
        }
        deepest = deepest.max(depth + negations + brackets);
    }
    (deepest, boolean, arith)
}

impl Filter {
    /// Compiles `expression` (empty: every packet).
    pub fn compile(expression: &str) -> Result<Self, FilterError> {
        let error = |at: usize, len: usize, message: String| {
            let (excerpt, caret) = excerpt(expression, at, len);
            FilterError { excerpt, caret, expression: expression.to_string(), message, at }
        };
        if expression.len() > MAX_EXPRESSION_BYTES {
            return Err(error(
                MAX_EXPRESSION_BYTES,
                1,
                format!(
                    "the expression is {} bytes long; the limit is {MAX_EXPRESSION_BYTES}",
                    expression.len()
                ),
            ));
        }
        if expression.trim().is_empty() {
            return Ok(Filter {
                expression: expression.to_string(),
                classic: Vec::new(),
                native: Vec::new(),
            });
        }
        let tokens = lexer::tokenize(expression);
        if let Err((at, message)) = &tokens {
            if expression.len() > MAX_UNTOKENIZED_BYTES {
                return Err(error(*at, 1, message.clone()));
            }
        }
        if let Ok(tokens) = &tokens {
            let (nesting, boolean, arith) = complexity(tokens);
            let too =
                |what: String| error(0, expression.len(), format!("the expression is too complex: {what}"));
            if nesting > MAX_NESTING {
                return Err(too(format!(
                    "parentheses, brackets and negations nest deeper than {MAX_NESTING}"
                )));
            }
            if boolean > MAX_BOOLEAN_OPERATORS {
                return Err(too(format!("{boolean} and/or operators, the limit is {MAX_BOOLEAN_OPERATORS}")));
            }
            if arith > MAX_ARITH_OPS {
                return Err(too(format!("{arith} arithmetic operators, the limit is {MAX_ARITH_OPS}")));
            }
        }
        let classic = libpcap::compile(expression).map_err(|message| {
            let culprit = match &tokens {
                Ok(tokens) => locate::culprit(expression, tokens, &message),
                Err((at, _)) => locate::Culprit { at: *at, len: 1, hint: Some("unexpected character") },
            };
            let message = match culprit.hint {
                Some(hint) => format!("{message} ({hint})"),
                None => message,
            };
            error(culprit.at, culprit.len, message)
        })?;
        let native = ebpf::translate(&classic).map_err(|e| {
            error(0, expression.len(), format!("libpcap's program cannot be translated: {e}"))
        })?;
        if native.len() > FILTER_SLOTS {
            return Err(error(
                0,
                expression.len(),
                format!(
                    "the expression is too complex: {} eBPF instructions, the kernel programs hold {FILTER_SLOTS}",
                    native.len()
                ),
            ));
        }
        Ok(Filter { expression: expression.to_string(), classic, native })
    }

    /// Whether the filter selects every packet.
    pub fn is_empty(&self) -> bool {
        self.classic.is_empty()
    }

    /// Whether a packet (captured bytes, length on the wire) is selected.
    pub fn matches(&self, data: &[u8], wire_len: u32) -> bool {
        self.is_empty() || libpcap::run(&self.classic, data, wire_len) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_syn_to(port: u16) -> Vec<u8> {
        let mut f = vec![0u8; 54];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[36..38].copy_from_slice(&port.to_be_bytes());
        f[47] = 0x02;
        f
    }

    #[test]
    fn selects_by_host_port_and_flags() {
        let packet = tcp_syn_to(443);
        for (expr, expected) in [
            ("", true),
            ("tcp", true),
            ("udp", false),
            ("host 10.0.0.2 and port 443", true),
            ("host 10.0.0.3 or 10.0.0.2", true),
            ("src host 10.0.0.2", false),
            ("net 10.0.0.0/8 && dst port https", true),
            ("tcp[tcpflags] & (tcp-syn|tcp-rst) != 0", true),
            ("tcp[tcpflags] == tcp-syn", true),
            ("tcp[tcpflags] & tcp-ack != 0", false),
            ("not port 443 or udp", false),
            ("portrange 400-500", true),
            ("port 22 or 443", true),
            ("tcp dst port 22 or 23", false),
            ("less 54 and greater 54", true),
            ("ip[9] = 6 and len - 14 == 40", true),
        ] {
            let filter = Filter::compile(expr).unwrap();
            assert_eq!(filter.matches(&packet, packet.len() as u32), expected, "{expr}");
        }
    }

    #[test]
    fn and_or_have_equal_precedence_left_to_right() {
        let packet = tcp_syn_to(80);
        // (udp or tcp) and port 22: false; udp or (tcp and port 22) would be false too, so
        // use one where the readings differ: (tcp or udp) and port 22 vs tcp or (udp and port 22).
        let filter = Filter::compile("tcp or udp and port 22").unwrap();
        assert!(!filter.matches(&packet, 54));
    }

    #[test]
    fn errors_point_at_the_token() {
        for (expr, at, message) in [
            ("hots 10.0.0.1", 0, "not a primitive"),
            ("host 10.0.0.1 and", 17, "expected a primitive"),
            ("port 70000", 5, "illegal port number"),
            ("host 10.0.0.0/8", 5, "Mask syntax"),
            ("tcp[13:3] != 0", 7, "data size"),
            ("host nonexistent.invalid", 5, "unknown host"),
            ("tcp and udp port foo", 17, "unknown port"),
            ("net 10.0.0.1/8", 4, "non-network bits"),
            ("(tcp", 4, "expected \")\""),
            ("tcp)", 3, "no \"(\" opens it"),
            ("tcp $ udp", 4, "unexpected character"),
            ("ether host 10.0.0.1", 11, "illegal link layer address"),
            ("vlan 5000", 5, "VLAN tag 5000"),
        ] {
            let error = Filter::compile(expr).unwrap_err();
            assert_eq!(error.at, at, "{expr}: {error}");
            assert!(error.message.contains(message), "{expr}: {error}");
            assert!(error.to_string().contains("pcap-filter"));
        }
    }

    /// What tcpdump 4.99 accepts and ringcap's own parser once refused.
    #[test]
    fn the_whole_pcap_filter_language_compiles() {
        for expr in [
            "ip proto 47",
            "proto gre",
            "ip6 proto 58",
            "ether proto 0x88cc",
            "ether broadcast",
            "ip multicast",
            "net 10.0.0.0 mask 255.0.0.0",
            "src or dst host 10.0.0.1",
            "mpls",
            "pppoes",
            "geneve",
            "llc",
            "vlan 100 and mpls 20",
            "icmp6 and ip6[40] == 128",
        ] {
            let filter = Filter::compile(expr).unwrap_or_else(|e| panic!("{e}"));
            assert!(!filter.native.is_empty() && filter.native.len() <= FILTER_SLOTS, "{expr}");
        }
        // The one construct libpcap compiles to a loop, which Linux refuses too.
        let error = Filter::compile("ip6 protochain 6").unwrap_err();
        assert!(error.message.contains("protochain"), "{error}");
    }

    /// Hostile expressions: each is refused with a caret error, quickly, on a small stack
    /// (what an API request thread has), and libpcap is never given unbounded work.
    #[test]
    fn hostile_expressions_are_refused_quickly_on_a_small_stack() {
        let deep = |open: &str, n: usize, close: &str| format!("{}tcp{}", open.repeat(n), close.repeat(n));
        let hostile = vec![
            (deep("(", 20_000, ")"), "nest deeper than"),
            (deep("(", MAX_NESTING + 1, ")"), "nest deeper than"),
            (deep("not ", 10_000, ""), "nest deeper than"),
            (deep("! ", 20_000, ""), "nest deeper than"),
            (format!("{}1 > 0", "(".repeat(5000)), "nest deeper than"),
            (format!("len > {}1", "-".repeat(20_000)), "arithmetic operators"),
            (format!("len > 1{}", " + 1".repeat(10_000)), "arithmetic operators"),
            (format!("tcp{}", " and udp or tcp".repeat(2000)), "and/or operators"),
            (format!("tcp{}", " or udp".repeat(200_000)), "bytes long"),
            ("x".repeat(1 << 20), "bytes long"),
        ];
        // At the limits, libpcap's work stays well under a second of CPU.
        let ports: Vec<String> = (0..=MAX_BOOLEAN_OPERATORS).map(|p| format!("port {p}")).collect();
        let at_limit = [ports.join(" or "), format!("len > 1{}", " + 1".repeat(MAX_ARITH_OPS))];
        // Every one-character string doubled, in the middle of an expression.
        let odd: Vec<String> = (0u32..=255)
            .filter_map(char::from_u32)
            .filter(|&c| !c.is_ascii_whitespace())
            .map(|c| format!("tcp and {c}{c} port 80"))
            .collect();
        let results = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                // CPU time, which a loaded machine does not stretch as it does the wall clock.
                let cpu_time = || {
                    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                    // SAFETY: clock_gettime writes the timespec given.
                    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
                    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
                };
                let timed = |expression: &str| {
                    let started = cpu_time();
                    (Filter::compile(expression), cpu_time() - started)
                };
                let refused: Vec<_> =
                    hostile.iter().map(|(e, message)| (e.len(), *message, timed(e))).collect();
                let limits: Vec<_> = at_limit.iter().map(|e| timed(e)).collect();
                let odd: Vec<_> = odd.iter().map(|e| (e.clone(), timed(e))).collect();
                (refused, limits, odd)
            })
            .unwrap()
            .join()
            .expect("no stack overflow, no panic");
        let second = std::time::Duration::from_secs(1);
        for (len, message, (result, took)) in results.0 {
            let error = result.expect_err(&format!("{len} bytes {message:?} refused"));
            assert!(error.message.contains(message), "{len} bytes: {error}");
            assert!(error.excerpt.len() < 200, "the error shows an excerpt, not the whole expression");
            assert!(error.to_string().contains('^'));
            assert!(took < second, "{len} bytes took {took:?}");
        }
        for (result, took) in results.1 {
            assert!(result.is_ok() && took < second, "{took:?}");
        }
        for (expression, (result, took)) in results.2 {
            assert!(took < second, "{expression:?} took {took:?}");
            if let Err(error) = result {
                assert!(error.to_string().contains('^'), "{expression:?}");
            }
        }
    }

    #[test]
    fn long_runs_of_one_operator_stay_flat_and_compile() {
        let hosts: Vec<String> = (0..12).map(|i| format!("host 10.0.{}.{}", i / 250, i % 250)).collect();
        let filter = Filter::compile(&hosts.join(" or ")).unwrap();
        assert!(filter.matches(&tcp_syn_to(80), 54), "10.0.0.1 and 10.0.0.2 are in the list");
        let error = Filter::compile(&format!("{}tcp{}", "(".repeat(60), ")".repeat(61))).unwrap_err();
        assert_eq!(error.at, 60 + 3 + 60, "{error}");
        assert!(error.caret.ends_with('^'));
    }
}

//! tcpdump filter expressions: parsed ([`parser`]) into conditions whose meaning follows
//! libpcap ([`cond`]), compiled ([`codegen`]) into a program for the filter machine of
//! `capture_common::filter`, which the kernel runs from a map and user space runs on
//! stored packets. One compiler, one machine: capture and retrieval cannot disagree.
mod codegen;
mod cond;
mod lexer;
mod parser;

use capture_common::filter::{run, FilterInsn, SlicePacket};

pub use parser::SUPPORTED;

/// The longest expression accepted, in bytes (far beyond what the 512-instruction
/// program can hold; it bounds the work an API request can ask for).
pub const MAX_EXPRESSION_BYTES: usize = 64 * 1024;

/// A filter expression that could not be compiled, with a pointer at the culprit.
#[derive(Debug, thiserror::Error)]
#[error("bad filter expression: {message}\n  {excerpt}\n  {caret}\nsupported: {supported}")]
pub struct FilterError {
    pub message: String,
    pub expression: String,
    /// The part of the expression around the culprit (a long expression is cut).
    pub excerpt: String,
    pub caret: String,
    pub at: usize,
    supported: &'static str,
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
    pub program: Vec<FilterInsn>,
}

impl Filter {
    /// Compiles `expression` (empty: every packet).
    pub fn compile(expression: &str) -> Result<Self, FilterError> {
        let error = |at: usize, len: usize, message: String| {
            let (excerpt, caret) = excerpt(expression, at, len);
            FilterError {
                excerpt,
                caret,
                expression: expression.to_string(),
                message,
                at,
                supported: SUPPORTED,
            }
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
        let tokens = lexer::tokenize(expression).map_err(|(at, message)| error(at, 1, message))?;
        let cond = parser::Parser::new(tokens, expression.len())
            .parse()
            .map_err(|failure| error(failure.at, failure.len, failure.message))?;
        let program = codegen::compile(&cond)
            .map_err(|too| error(0, expression.len(), format!("the expression is too complex: {}", too.0)))?;
        Ok(Filter { expression: expression.to_string(), program })
    }

    /// Whether the filter selects every packet.
    pub fn is_empty(&self) -> bool {
        self.expression.trim().is_empty()
    }

    /// Whether a packet (captured bytes, length on the wire) is selected.
    pub fn matches(&self, data: &[u8], wire_len: u32) -> bool {
        self.is_empty() || run(&self.program, &SlicePacket { data, wire_len })
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
            ("hots 10.0.0.1", 0, "unknown primitive"),
            ("host 10.0.0.1 and", 17, "expected a primitive"),
            ("port 70000", 5, "not a port number"),
            ("host 10.0.0.0/8", 5, "use `net`"),
            ("tcp[13:3] != 0", 7, "must be 1, 2 or 4"),
            ("host example.com", 5, "names are not resolved"),
            ("(tcp", 4, "expected \")\""),
            ("tcp $ udp", 4, "unexpected character"),
            ("ether host 10.0.0.1", 11, "not a MAC address"),
            ("vlan 5000", 5, "0..=4095"),
        ] {
            let error = Filter::compile(expr).unwrap_err();
            assert_eq!(error.at, at, "{expr}: {error}");
            assert!(error.message.contains(message), "{expr}: {error}");
            assert!(error.to_string().contains("supported:"));
        }
    }

    /// Hostile expressions: each is refused with a caret error, quickly, on a small stack
    /// (what an API request thread has), and nothing recurses without a bound.
    #[test]
    fn hostile_expressions_are_refused_without_exhausting_the_stack() {
        let deep = |open: &str, n: usize, close: &str| format!("{}tcp{}", open.repeat(n), close.repeat(n));
        let mut hostile = vec![
            (deep("(", 20_000, ")"), "nest deeper than"),
            (deep("(", parser::MAX_NESTING + 1, ")"), "nest deeper than"),
            (deep("not ", 10_000, ""), "nest deeper than"),
            (deep("! ", 20_000, ""), "nest deeper than"),
            (format!("{}1 > 0", "(".repeat(5000)), "nest deeper than"),
            (format!("len > {}1", "-".repeat(20_000)), "nest deeper than"),
            (format!("len > 1{}", " + 1".repeat(10_000)), "arithmetic operators"),
            (format!("tcp{}", " and udp or tcp".repeat(2000)), "nests deeper than"),
            (format!("tcp{}", " or udp".repeat(200_000)), "bytes long"),
            ("x".repeat(1 << 20), "bytes long"),
        ];
        // Every byte value that makes a one-character string (and the rest as characters),
        // where tcpdump would refuse it: whitespace and `!` are part of the language.
        for c in (0u32..=255).filter_map(char::from_u32).filter(|&c| !c.is_ascii_whitespace() && c != '!') {
            hostile.push((format!("tcp and {c}{c} port 80"), ""));
        }
        let results = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                hostile
                    .into_iter()
                    .map(|(expression, message)| {
                        let started = std::time::Instant::now();
                        let result = Filter::compile(&expression);
                        (expression.len(), message, result.map(|f| f.program.len()), started.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap()
            .join()
            .expect("no stack overflow, no panic");
        for (len, message, result, took) in results {
            let error = result.expect_err(&format!("{len} bytes {message:?} refused"));
            assert!(error.message.contains(message), "{len} bytes: {error}");
            assert!(error.excerpt.len() < 200, "the error shows an excerpt, not the whole expression");
            assert!(error.to_string().contains('^'));
            assert!(took < std::time::Duration::from_secs(1), "{len} bytes took {took:?}");
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

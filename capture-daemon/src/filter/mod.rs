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

/// A filter expression that could not be compiled, with a pointer at the culprit.
#[derive(Debug, thiserror::Error)]
#[error("bad filter expression: {message}\n  {expression}\n  {caret}\nsupported: {supported}")]
pub struct FilterError {
    pub message: String,
    pub expression: String,
    pub caret: String,
    pub at: usize,
    supported: &'static str,
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
        let error = |at: usize, len: usize, message: String| FilterError {
            caret: format!("{}{}", " ".repeat(at), "^".repeat(len.max(1))),
            expression: expression.to_string(),
            message,
            at,
            supported: SUPPORTED,
        };
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
}

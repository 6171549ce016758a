//! Tokens of pcap-filter expressions, each with its position for error messages.

/// A token and where it starts in the expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub at: usize,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A word: keyword, number, address, named constant.
    Word,
    /// Punctuation or an operator: ( ) [ ] : ! && || & | ^ + - * / % << >> = == != < <= > >=
    Op,
}

const OPS: [&str; 25] = [
    "&&", "||", "<<", ">>", "==", "!=", "<=", ">=", "(", ")", "[", "]", ":", "!", "&", "|", "^", "+", "-",
    "*", "/", "%", "=", "<", ">",
];

/// Splits an expression into tokens. Outside brackets a word may contain `.`, `:`, `/`
/// and `-` (addresses, CIDR prefixes, port ranges, `tcp-syn`); inside brackets those are
/// operators, so `tcp[13:1]` and `ip[2:2] - 20` read as expected.
pub fn tokenize(text: &str) -> Result<Vec<Token>, (usize, String)> {
    let mut tokens = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let in_brackets = depth > 0;
        let word_char = |c: char| {
            c.is_ascii_alphanumeric() || c == '_' || (!in_brackets && matches!(c, '.' | ':' | '/' | '-'))
        };
        if c.is_ascii_alphanumeric() || c == '_' || (!in_brackets && c == ':') {
            let start = i;
            while i < bytes.len() && word_char(bytes[i] as char) {
                i += 1;
            }
            tokens.push(Token { kind: TokenKind::Word, at: start, text: text[start..i].to_string() });
            continue;
        }
        let Some(op) = OPS.iter().find(|op| text[i..].starts_with(*op)) else {
            let c = text[i..].chars().next().unwrap_or(c);
            return Err((i, format!("unexpected character {c:?}")));
        };
        match *op {
            "[" => depth += 1,
            "]" => depth = depth.saturating_sub(1),
            _ => {}
        }
        tokens.push(Token { kind: TokenKind::Op, at: i, text: op.to_string() });
        i += op.len();
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(expr: &str) -> Vec<String> {
        tokenize(expr).unwrap().into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn words_and_operators() {
        assert_eq!(texts("host 10.0.0.1 and port 80"), ["host", "10.0.0.1", "and", "port", "80"]);
        assert_eq!(
            texts("tcp[13:1] & (tcp-syn|tcp-rst) != 0"),
            ["tcp", "[", "13", ":", "1", "]", "&", "(", "tcp-syn", "|", "tcp-rst", ")", "!=", "0"]
        );
        assert_eq!(texts("net fe80::/10 || !arp"), ["net", "fe80::/10", "||", "!", "arp"]);
        assert_eq!(texts("ether host 00:11:22:33:44:55"), ["ether", "host", "00:11:22:33:44:55"]);
        assert_eq!(texts("ip[2:2]-20>100"), ["ip", "[", "2", ":", "2", "]", "-", "20", ">", "100"]);
    }
}

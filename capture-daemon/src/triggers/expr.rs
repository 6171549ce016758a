//! The condition language of trigger rules: PromQL's shape over the daemon's own series.
//!
//! ```text
//! condition := comparison (("and" | "or") comparison)*      "and" binds tighter
//! comparison := "(" condition ")" | value OP value           OP: > >= < <= == !=
//! value     := term (("+" | "-") term)*
//! term      := factor (("*" | "/") factor)*
//! factor    := NUMBER | "(" value ")" | "-" factor
//!            | ("rate" | "increase") "(" selector ")"
//!            | "quantile" "(" NUMBER "," selector ")"
//!            | selector
//! selector  := NAME ["{" KEY ("=" | "!=") "VALUE" ("," ...)* "}"] ["[" DURATION "]"]
//! ```
//! Numbers take units: `200/s`, `12000/m`, `3%`, `200ms`, `1.5s`, `2m`, `1h`. Every node
//! keeps where it was written, so a rule that does not make sense is refused with a caret
//! under the place.
use std::time::Duration;

use crate::retrieve::window::parse_duration;

/// Where in the rule's text something was written (byte offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// A rule that cannot be read or makes no sense: the message and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub at: Span,
}

impl SyntaxError {
    pub fn new(message: impl Into<String>, at: Span) -> Self {
        SyntaxError { message: message.into(), at }
    }

    /// The message, the text, and a caret line under the place.
    pub fn show(&self, text: &str) -> String {
        let start = self.at.start.min(text.len());
        let end = self.at.end.clamp(start, text.len());
        let width = text.get(start..end).map_or(1, |t| t.chars().count()).max(1);
        let pad = text.get(..start).map_or(0, |t| t.chars().count());
        format!("{}\n    {text}\n    {}{}", self.message, " ".repeat(pad), "^".repeat(width))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    Name(String),
    Number(f64),
    Text(String),
    /// Punctuation and operators: ( ) { } [ ] , = != > >= < <= == + - * / :
    Symbol(&'static str),
}

/// The tokens of `text` from `offset` on, with their places.
pub fn tokens(text: &str, offset: usize) -> Result<Vec<(Token, Span)>, SyntaxError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = offset;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b':')) {
                i += 1;
            }
            out.push((Token::Name(text[start..i].to_string()), Span { start, end: i }));
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            // An exponent: 1e6, 2.5E-3.
            if matches!(bytes.get(i), Some(b'e' | b'E')) {
                let sign = usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
                if bytes.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
                    i += 1 + sign;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let digits = &text[start..i];
            let value: f64 = digits.parse().ok().filter(|v: &f64| v.is_finite()).ok_or_else(|| {
                SyntaxError::new(
                    format!("{digits:?} is not a number ringcap can compare"),
                    Span { start, end: i },
                )
            })?;
            let (scale, unit_len) = number_unit(&text[i..]);
            i += unit_len;
            out.push((Token::Number(value * scale), Span { start, end: i }));
            continue;
        }
        if c == b'"' {
            let mut value = String::new();
            i += 1;
            loop {
                let Some(&next) = bytes.get(i) else {
                    return Err(SyntaxError::new("this string has no closing \"", Span { start, end: i }));
                };
                match next {
                    b'"' => break,
                    b'\\' if matches!(bytes.get(i + 1), Some(b'"' | b'\\')) => {
                        value.push(bytes[i + 1] as char);
                        i += 2;
                    }
                    _ => {
                        let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
                        value.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            i += 1;
            out.push((Token::Text(value), Span { start, end: i }));
            continue;
        }
        const SYMBOLS: [&str; 19] = [
            "!=", ">=", "<=", "==", "(", ")", "{", "}", "[", "]", ",", "=", ">", "<", "+", "-", "*", "/", ":",
        ];
        let Some(symbol) = SYMBOLS.iter().find(|s| text[i..].starts_with(**s)) else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(SyntaxError::new(
                format!("unexpected {ch:?}"),
                Span { start, end: i + ch.len_utf8() },
            ));
        };
        i += symbol.len();
        out.push((Token::Symbol(symbol), Span { start, end: i }));
    }
    Ok(out)
}

/// The scale of a number's unit at the start of `rest`, and its length: rates in per
/// second, percentages as fractions, times in seconds (Prometheus' base units).
fn number_unit(rest: &str) -> (f64, usize) {
    // Longest first: "ms" before "m", "/s" before "/".
    const UNITS: [(&str, f64); 11] = [
        ("/s", 1.0),
        ("/m", 1.0 / 60.0),
        ("/h", 1.0 / 3600.0),
        ("%", 0.01),
        ("ms", 1e-3),
        ("us", 1e-6),
        ("ns", 1e-9),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
        ("d", 86_400.0),
    ];
    for (unit, scale) in UNITS {
        if let Some(after) = rest.strip_prefix(unit) {
            // A unit ends the number: `5s` is five seconds, `5sx` is not a number.
            if !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                return (scale, unit.len());
            }
        }
    }
    (1.0, 0)
}

/// A label matcher: `key="value"` or `key!="value"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    pub key: String,
    pub value: String,
    pub negated: bool,
    pub at: Span,
}

/// A series as written: a name, matchers, and a range.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    pub name: String,
    pub matchers: Vec<Matcher>,
    /// `[5m]`: the span a rate, increase or quantile covers (default: since the last
    /// evaluation).
    pub range: Option<Duration>,
    pub at: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// Per second over the range.
    Rate,
    /// Added over the range.
    Increase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    Add,
    Subtract,
    Multiply,
    Divide,
}

/// A value of a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    /// The series' current value (summed over the series it matches).
    Current(Selector),
    Counter(Function, Selector),
    /// The `q` quantile of a histogram's observations over the range.
    Quantile(f64, Selector),
    Negate(Box<Value>),
    Binary(Box<Value>, Arithmetic, Box<Value>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    Equal,
    NotEqual,
}

impl Comparison {
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Comparison::Greater => left > right,
            Comparison::GreaterOrEqual => left >= right,
            Comparison::Less => left < right,
            Comparison::LessOrEqual => left <= right,
            Comparison::Equal => left == right,
            Comparison::NotEqual => left != right,
        }
    }
}

/// `left OP right`, with the text of each side (what a firing reports).
#[derive(Clone, Debug, PartialEq)]
pub struct Compare {
    pub left: Value,
    pub op: Comparison,
    pub right: Value,
    pub left_text: Span,
    pub right_text: Span,
}

/// A rule's condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Compare(Box<Compare>),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
}

/// The most tokens a rule may have, and the deepest its parentheses and signs may nest:
/// far beyond any rule a person writes, and well within the stack of the threads that
/// parse, check and evaluate it.
pub const MAX_TOKENS: usize = 512;
pub const MAX_DEPTH: usize = 32;

/// Parses a condition out of `tokens`, stopping before a `for` or `with` keyword; returns
/// the condition and how many tokens it took.
pub fn parse_condition(tokens: &[(Token, Span)], text_end: usize) -> Result<(Condition, usize), SyntaxError> {
    if let Some((_, at)) = tokens.get(MAX_TOKENS) {
        return Err(SyntaxError::new(format!("a rule has at most {MAX_TOKENS} words and symbols"), *at));
    }
    let mut parser = Parser { tokens, at: 0, text_end, depth: 0 };
    let condition = parser.or()?;
    Ok((condition, parser.at))
}

struct Parser<'a> {
    tokens: &'a [(Token, Span)],
    at: usize,
    text_end: usize,
    /// Parentheses and signs open around the place.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn span(&self) -> Span {
        self.tokens.get(self.at).map_or(Span { start: self.text_end, end: self.text_end + 1 }, |(_, s)| *s)
    }

    /// The end of the last token taken.
    fn last_end(&self) -> usize {
        self.at.checked_sub(1).map_or(0, |i| self.tokens[i].1.end)
    }

    /// One level deeper, refused past [`MAX_DEPTH`].
    fn deeper(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError::new(format!("nested more than {MAX_DEPTH} deep"), self.span()));
        }
        Ok(())
    }

    fn is_symbol(&self, symbol: &str) -> bool {
        matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol)
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Name(n)) if n == word)
    }

    fn expect(&mut self, symbol: &str, what: &str) -> Result<Span, SyntaxError> {
        if self.is_symbol(symbol) {
            self.at += 1;
            Ok(self.tokens[self.at - 1].1)
        } else {
            Err(SyntaxError::new(format!("expected {what}"), self.span()))
        }
    }

    fn or(&mut self) -> Result<Condition, SyntaxError> {
        let mut left = self.and()?;
        while self.is_keyword("or") {
            self.at += 1;
            let right = self.and()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, SyntaxError> {
        let mut left = self.comparison()?;
        while self.is_keyword("and") {
            self.at += 1;
            let right = self.comparison()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Condition, SyntaxError> {
        // A parenthesised condition, unless the parentheses hold a value (`(a + b) > 1`).
        if self.is_symbol("(") {
            let saved = (self.at, self.depth);
            self.deeper()?;
            self.at += 1;
            if let Ok(inner) = self.or() {
                if self.is_symbol(")") {
                    self.at += 1;
                    if !self.at_comparison_operator() {
                        self.depth = saved.1;
                        return Ok(inner);
                    }
                }
            }
            (self.at, self.depth) = saved;
        }
        let left_start = self.span().start;
        let left = self.value()?;
        let left_text = Span { start: left_start, end: self.last_end() };
        let op = match self.peek() {
            Some(Token::Symbol(">")) => Comparison::Greater,
            Some(Token::Symbol(">=")) => Comparison::GreaterOrEqual,
            Some(Token::Symbol("<")) => Comparison::Less,
            Some(Token::Symbol("<=")) => Comparison::LessOrEqual,
            Some(Token::Symbol("==")) => Comparison::Equal,
            Some(Token::Symbol("!=")) => Comparison::NotEqual,
            _ => {
                return Err(SyntaxError::new(
                    "expected a comparison (>, >=, <, <=, == or !=): a condition compares two values",
                    self.span(),
                ))
            }
        };
        self.at += 1;
        let right_start = self.span().start;
        let right = self.value()?;
        let right_text = Span { start: right_start, end: self.last_end() };
        Ok(Condition::Compare(Box::new(Compare { left, op, right, left_text, right_text })))
    }

    fn at_comparison_operator(&self) -> bool {
        matches!(
            self.peek(),
            Some(Token::Symbol(">" | ">=" | "<" | "<=" | "==" | "!=" | "+" | "-" | "*" | "/"))
        )
    }

    fn value(&mut self) -> Result<Value, SyntaxError> {
        let mut left = self.term()?;
        loop {
            let op = match self.peek() {
                Some(Token::Symbol("+")) => Arithmetic::Add,
                Some(Token::Symbol("-")) => Arithmetic::Subtract,
                _ => return Ok(left),
            };
            self.at += 1;
            let right = self.term()?;
            left = Value::Binary(Box::new(left), op, Box::new(right));
        }
    }

    fn term(&mut self) -> Result<Value, SyntaxError> {
        let mut left = self.factor()?;
        loop {
            let op = match self.peek() {
                Some(Token::Symbol("*")) => Arithmetic::Multiply,
                Some(Token::Symbol("/")) => Arithmetic::Divide,
                _ => return Ok(left),
            };
            self.at += 1;
            let right = self.factor()?;
            left = Value::Binary(Box::new(left), op, Box::new(right));
        }
    }

    fn factor(&mut self) -> Result<Value, SyntaxError> {
        let span = self.span();
        match self.peek().cloned() {
            Some(Token::Number(n)) => {
                self.at += 1;
                Ok(Value::Number(n))
            }
            Some(Token::Symbol("-")) => {
                self.deeper()?;
                self.at += 1;
                let inner = self.factor()?;
                self.depth -= 1;
                Ok(Value::Negate(Box::new(inner)))
            }
            Some(Token::Symbol("(")) => {
                self.deeper()?;
                self.at += 1;
                let inner = self.value()?;
                self.expect(")", "a closing )")?;
                self.depth -= 1;
                Ok(inner)
            }
            Some(Token::Name(name)) if matches!(name.as_str(), "rate" | "increase") => {
                self.at += 1;
                self.expect("(", &format!("( after {name}"))?;
                let selector = self.selector()?;
                self.expect(")", "a closing )")?;
                let function = if name == "rate" { Function::Rate } else { Function::Increase };
                Ok(Value::Counter(function, selector))
            }
            Some(Token::Name(name)) if name == "quantile" => {
                self.at += 1;
                self.expect("(", "( after quantile")?;
                let q_span = self.span();
                let Some(Token::Number(q)) = self.peek().cloned() else {
                    return Err(SyntaxError::new("expected the quantile, 0 to 1 (0.99)", q_span));
                };
                if !(0.0..=1.0).contains(&q) {
                    return Err(SyntaxError::new("a quantile is from 0 to 1 (0.99 for the 99th percentile)", q_span));
                }
                self.at += 1;
                self.expect(",", "a comma after the quantile")?;
                let selector = self.selector()?;
                self.expect(")", "a closing )")?;
                Ok(Value::Quantile(q, selector))
            }
            Some(Token::Name(name)) if matches!(name.as_str(), "and" | "or" | "for" | "with") => {
                Err(SyntaxError::new(format!("expected a value before {name:?}"), span))
            }
            Some(Token::Name(_)) => {
                let selector = self.selector()?;
                // `rtt_p99{...}`: the 99th percentile of the RTT histograms.
                if let Some(q) = rtt_percentile(&selector.name) {
                    return Ok(Value::Quantile(q, selector));
                }
                Ok(Value::Current(selector))
            }
            _ => Err(SyntaxError::new(
                "expected a value: a number, a series (tcp_segments{flag=\"rst\"}), rate(...), increase(...) or quantile(...)",
                span,
            )),
        }
    }

    fn selector(&mut self) -> Result<Selector, SyntaxError> {
        let start = self.span();
        let Some(Token::Name(name)) = self.peek().cloned() else {
            return Err(SyntaxError::new("expected a series name (as in /metrics)", start));
        };
        self.at += 1;
        let mut matchers = Vec::new();
        if self.is_symbol("{") {
            self.at += 1;
            while !self.is_symbol("}") {
                let key_at = self.span();
                let Some(Token::Name(key)) = self.peek().cloned() else {
                    return Err(SyntaxError::new("expected a label name", key_at));
                };
                self.at += 1;
                let negated = match self.peek() {
                    Some(Token::Symbol("=")) => false,
                    Some(Token::Symbol("!=")) => true,
                    _ => return Err(SyntaxError::new("expected = or != after the label name", self.span())),
                };
                self.at += 1;
                let value_at = self.span();
                let Some(Token::Text(value)) = self.peek().cloned() else {
                    return Err(SyntaxError::new("expected the label's value in double quotes", value_at));
                };
                self.at += 1;
                matchers.push(Matcher {
                    key,
                    value,
                    negated,
                    at: Span { start: key_at.start, end: value_at.end },
                });
                if self.is_symbol(",") {
                    self.at += 1;
                } else if !self.is_symbol("}") {
                    return Err(SyntaxError::new("expected , or } after a label matcher", self.span()));
                }
            }
            self.at += 1;
        }
        let mut range = None;
        if self.is_symbol("[") {
            self.at += 1;
            let at = self.span();
            // The lexer read `5m` as 300 (seconds): a range is a duration.
            let Some(Token::Number(seconds)) = self.peek().cloned() else {
                return Err(SyntaxError::new("expected a range such as [1m]", at));
            };
            if !(seconds > 0.0 && seconds <= MAX_RANGE.as_secs_f64()) {
                return Err(SyntaxError::new(
                    format!("a range is more than 0 and at most {}s", MAX_RANGE.as_secs()),
                    at,
                ));
            }
            self.at += 1;
            self.expect("]", "a closing ]")?;
            range = Some(Duration::from_secs_f64(seconds));
        }
        Ok(Selector { name, matchers, range, at: Span { start: start.start, end: self.last_end() } })
    }
}

/// The longest range a rule may look back over.
pub const MAX_RANGE: Duration = Duration::from_secs(3600);

/// `rtt_p50`, `rtt_p90`, `rtt_p95`, `rtt_p99`, `rtt_p999`: the quantile they stand for.
pub fn rtt_percentile(name: &str) -> Option<f64> {
    let digits = name.strip_prefix("rtt_p")?;
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: f64 = digits.parse().ok()?;
    Some(value / 10f64.powi(digits.len() as i32))
}

/// A duration written in a rule (`for 30s`, `before=5m`).
pub fn duration(text: &str, at: Span) -> Result<Duration, SyntaxError> {
    parse_duration(text).map_err(|e| SyntaxError::new(e.to_string(), at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Condition, SyntaxError> {
        let tokens = tokens(text, 0)?;
        let (condition, taken) = parse_condition(&tokens, text.len())?;
        assert_eq!(taken, tokens.len(), "{text}: tokens left");
        Ok(condition)
    }

    #[test]
    fn numbers_take_units() {
        let numbers: Vec<f64> = tokens("200/s 12000/m 3% 200ms 1.5s 2m 1h 7 2.5e3 1d", 0)
            .unwrap()
            .into_iter()
            .map(|(t, _)| match t {
                Token::Number(n) => n,
                other => panic!("{other:?}"),
            })
            .collect();
        let expected = [200.0, 200.0, 0.03, 0.2, 1.5, 120.0, 3600.0, 7.0, 2500.0, 86_400.0];
        for (got, want) in numbers.iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{numbers:?}");
        }
    }

    #[test]
    fn conditions_parse_with_precedence() {
        let c = parse("rate(tcp_segments{flag=\"rst\"}) > 200/s").unwrap();
        let Condition::Compare(compare) = c else { panic!() };
        let Compare { left: Value::Counter(Function::Rate, s), op: Comparison::Greater, right, .. } =
            *compare
        else {
            panic!()
        };
        assert_eq!(s.name, "tcp_segments");
        assert_eq!(s.matchers[0].value, "rst");
        assert_eq!(right, Value::Number(200.0));
        let c = parse("a > 1 or b > 2 and c > 3").unwrap();
        assert!(matches!(c, Condition::Or(_, ref right) if matches!(**right, Condition::And(..))), "{c:?}");
        let c = parse("(a > 1 or b > 2) and (c + d) / 2 > 3").unwrap();
        assert!(matches!(c, Condition::And(ref left, _) if matches!(**left, Condition::Or(..))), "{c:?}");
        let c = parse("rtt_p99{method=\"handshake\",side=\"server\"}[5m] > 200ms").unwrap();
        let Condition::Compare(compare) = c else { panic!() };
        let Compare { left: Value::Quantile(q, s), .. } = *compare else { panic!() };
        assert!((q - 0.99).abs() < 1e-12);
        assert_eq!(s.range, Some(Duration::from_secs(300)));
        assert!(parse("quantile(0.5, tcp_rtt_seconds) < 1ms").is_ok());
    }

    #[test]
    fn errors_point_at_the_place() {
        let text = "rate(tcp_segments{flag=rst}) > 1";
        let error = parse(text).unwrap_err();
        assert_eq!(&text[error.at.start..error.at.end], "rst");
        assert!(error.show(text).contains("^^^"), "{}", error.show(text));
        let error = parse("rate(x) 5").unwrap_err();
        assert!(error.message.contains("comparison"), "{error:?}");
        assert!(parse("x > ").is_err());
        assert!(parse("\"open").is_err());
        assert!(parse("quantile(2, x) > 1").is_err());
        assert!(parse("rate(x[0s]) > 1").is_err());
        assert!(parse("x > 1 $").is_err());
        // Bounded: no rule can take the stack.
        let deep = format!("{}x{} > 1", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
        assert!(parse(&format!("{}x > 1", "-".repeat(40))).unwrap_err().message.contains("nested"));
        let long = format!("{} > 1", vec!["x"; 400].join(" + "));
        assert!(parse(&long).unwrap_err().message.contains("at most"));
        assert!(parse(&format!("{}x{} > 1e6", "(".repeat(10), ")".repeat(10))).is_ok());
        assert!(parse("x > 1e999").unwrap_err().message.contains("not a number"));
        let text = "é > x{";
        assert!(parse(text).unwrap_err().show(text).lines().last().unwrap().trim() == "^");
    }
}

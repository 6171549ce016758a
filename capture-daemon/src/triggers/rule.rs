//! A trigger rule as written: `NAME: CONDITION [for DURATION] [with KEY=VALUE ...]`, on the
//! command line (`--trigger`) and, built from a `[[trigger]]` table, in the TOML file.
use std::time::Duration;

use super::expr::{self, parse_condition, tokens, Condition, Span, SyntaxError, Token};
use crate::filter::Filter;
use crate::storage::budget::DiskLimit;

/// What a firing pins and how often a rule may fire.
#[derive(Clone, Debug, PartialEq)]
pub struct FiringSettings {
    /// The window pinned reaches this far before the firing...
    pub before: Duration,
    /// ...and this far after it (the pin grows with capture until then).
    pub after: Duration,
    /// After a firing, the rule may not fire again for this long (counted as suppressed).
    pub cooldown: Duration,
    /// Firings a rule may make in any hour; more are suppressed.
    pub max_per_hour: u32,
    /// Bytes the rule's pins may hold together; a firing past it is suppressed.
    pub max_bytes: Option<u64>,
    /// What the pin keeps (a capture filter; empty: everything).
    pub filter: String,
}

impl Default for FiringSettings {
    fn default() -> Self {
        FiringSettings {
            before: Duration::from_secs(300),
            after: Duration::from_secs(60),
            cooldown: Duration::from_secs(600),
            max_per_hour: 6,
            max_bytes: None,
            filter: String::new(),
        }
    }
}

/// The longest window before or after a firing.
pub const MAX_PIN_SPAN: Duration = Duration::from_secs(24 * 3600);

/// A rule, parsed (its series are checked against the daemon's by `eval::compile`).
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    /// The whole text, as given.
    pub text: String,
    pub condition: Condition,
    /// Where the condition is in `text`.
    pub condition_at: Span,
    /// How long the condition must hold before the rule fires.
    pub hold: Duration,
    pub settings: FiringSettings,
}

/// The longest rule name: the pin's name adds `-YYYYmmddTHHMMSSZ` (17) within 64.
pub const MAX_NAME: usize = 40;

/// Whether `name` may name a rule (and so start a pin's name).
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

impl Rule {
    /// Parses a rule; the error shows the text with a caret under the place.
    pub fn parse(text: &str) -> Result<Rule, String> {
        Self::parse_at(text).map_err(|e| format!("trigger {:?}: {}", text, e.show(text)))
    }

    fn parse_at(text: &str) -> Result<Rule, SyntaxError> {
        let colon = text.find(':').ok_or_else(|| {
            SyntaxError::new(
                "a rule is NAME: CONDITION [for DURATION] [with KEY=VALUE ...]",
                Span { start: 0, end: text.len() },
            )
        })?;
        let name = text[..colon].trim();
        let name_at = Span { start: 0, end: colon };
        if !valid_name(name) {
            return Err(SyntaxError::new(
                format!("a rule's name is 1-{MAX_NAME} letters, digits, '_' or '-', starting with a letter"),
                name_at,
            ));
        }
        let all = tokens(text, colon + 1)?;
        let (condition, taken) = parse_condition(&all, text.len())?;
        let condition_at = Span {
            start: all.first().map_or(colon + 1, |(_, s)| s.start),
            end: taken.checked_sub(1).map_or(text.len(), |i| all[i].1.end),
        };
        let mut rest = &all[taken..];
        let mut hold = Duration::ZERO;
        if let Some((Token::Name(word), _)) = rest.first() {
            if word == "for" {
                let Some((Token::Number(seconds), at)) = rest.get(1) else {
                    let at = rest.get(1).map_or(Span { start: text.len(), end: text.len() + 1 }, |(_, s)| *s);
                    return Err(SyntaxError::new("expected a duration after for (30s, 5m)", at));
                };
                if !(*seconds >= 0.0 && *seconds <= MAX_PIN_SPAN.as_secs_f64()) {
                    return Err(SyntaxError::new("for takes 0s to 24h", *at));
                }
                hold = Duration::from_secs_f64(*seconds);
                rest = &rest[2..];
            }
        }
        let mut settings = FiringSettings::default();
        if let Some((Token::Name(word), with_at)) = rest.first() {
            if word == "with" {
                rest = &rest[1..];
                if rest.is_empty() {
                    return Err(SyntaxError::new("expected KEY=VALUE after with", *with_at));
                }
                let mut seen = Vec::new();
                while !rest.is_empty() {
                    if let (Token::Name(key), at) = &rest[0] {
                        if seen.contains(key) {
                            return Err(SyntaxError::new(format!("{key} is given twice"), *at));
                        }
                        seen.push(key.clone());
                    }
                    rest = setting(text, rest, &mut settings)?;
                }
                if settings.before + settings.after > MAX_PIN_SPAN {
                    return Err(SyntaxError::new("before and after add up to at most 24h", *with_at));
                }
            }
        }
        if let Some((_, at)) = rest.first() {
            return Err(SyntaxError::new(
                "unexpected text: after the condition come only `for DURATION` and `with KEY=VALUE ...`",
                *at,
            ));
        }
        Ok(Rule { name: name.to_string(), text: text.to_string(), condition, condition_at, hold, settings })
    }
}

/// Reads one `KEY=VALUE` of a rule's `with` part into `settings`; returns what follows.
fn setting<'t>(
    text: &str,
    tokens: &'t [(Token, Span)],
    settings: &mut FiringSettings,
) -> Result<&'t [(Token, Span)], SyntaxError> {
    let (Token::Name(key), key_at) = &tokens[0] else {
        return Err(SyntaxError::new(
            "expected KEY=VALUE (before, after, cooldown, max_per_hour, max_bytes, filter)",
            tokens[0].1,
        ));
    };
    if !matches!(tokens.get(1), Some((Token::Symbol("="), _))) {
        return Err(SyntaxError::new(format!("expected = after {key}"), *key_at));
    }
    // The value is one token, or (for sizes like 2G) a number glued to a name.
    let Some((value, value_at)) = tokens.get(2) else {
        return Err(SyntaxError::new(format!("expected a value for {key}"), *key_at));
    };
    let mut end = value_at.end;
    let mut taken = 3;
    if let (Token::Number(_), Some((Token::Name(_), unit_at))) = (value, tokens.get(3)) {
        if unit_at.start == end {
            end = unit_at.end;
            taken = 4;
        }
    }
    let raw = &text[value_at.start..end];
    let at = Span { start: value_at.start, end };
    let span = |d: Duration| {
        if d > MAX_PIN_SPAN {
            Err(SyntaxError::new("at most 24h", at))
        } else {
            Ok(d)
        }
    };
    match key.as_str() {
        "before" => settings.before = span(expr::duration(raw, at)?)?,
        "after" => settings.after = span(expr::duration(raw, at)?)?,
        "cooldown" => settings.cooldown = span(expr::duration(raw, at)?)?,
        "max_per_hour" => {
            settings.max_per_hour = raw
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| SyntaxError::new("max_per_hour is a whole number of at least 1", at))?;
        }
        "max_bytes" => {
            settings.max_bytes = match DiskLimit::parse(raw) {
                Ok(DiskLimit::Bytes(bytes)) if bytes > 0 => Some(bytes),
                _ => return Err(SyntaxError::new("max_bytes is a size such as 500M or 2G", at)),
            }
        }
        "filter" => {
            let Token::Text(filter) = value else {
                return Err(SyntaxError::new(
                    "the filter goes in double quotes: filter=\"host 10.0.1.5\"",
                    at,
                ));
            };
            // Checked now, not at the first firing.
            Filter::compile(filter)
                .map_err(|e| SyntaxError::new(format!("the filter does not compile: {e}"), at))?;
            settings.filter = filter.clone();
        }
        _ => {
            return Err(SyntaxError::new(
                format!(
                    "unknown setting {key:?}: use before, after, cooldown, max_per_hour, max_bytes or filter"
                ),
                *key_at,
            ))
        }
    }
    Ok(&tokens[taken..])
}

/// The rule a `[[trigger]]` table of the TOML file stands for, as `--trigger` text: keys
/// `name`, `condition`, and optionally `for`, `before`, `after`, `cooldown`,
/// `max_per_hour`, `max_bytes`, `filter`.
pub fn from_table(table: &toml::Table) -> Result<String, String> {
    let text = |key: &str| -> Result<Option<String>, String> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(toml::Value::Integer(i)) if key == "max_per_hour" || key == "max_bytes" => {
                Ok(Some(i.to_string()))
            }
            Some(other) => Err(format!("[[trigger]] {key} = {other}: expected a string")),
        }
    };
    for key in table.keys() {
        if !["name", "condition", "for", "before", "after", "cooldown", "max_per_hour", "max_bytes", "filter"]
            .contains(&key.as_str())
        {
            return Err(format!(
                "[[trigger]]: unknown key {key:?}: use name, condition, for, before, after, cooldown, max_per_hour, max_bytes, filter"
            ));
        }
    }
    let name = text("name")?.ok_or("[[trigger]] needs a name")?;
    let condition = text("condition")?.ok_or_else(|| format!("[[trigger]] {name} needs a condition"))?;
    let mut rule = format!("{name}: {condition}");
    if let Some(hold) = text("for")? {
        rule.push_str(&format!(" for {hold}"));
    }
    let mut with = Vec::new();
    for key in ["before", "after", "cooldown", "max_per_hour", "max_bytes"] {
        if let Some(value) = text(key)? {
            with.push(format!("{key}={value}"));
        }
    }
    if let Some(filter) = text("filter")? {
        with.push(format!("filter=\"{}\"", filter.replace('\\', "\\\\").replace('"', "\\\"")));
    }
    if !with.is_empty() {
        rule.push_str(" with ");
        rule.push_str(&with.join(" "));
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_name_condition_hold_and_settings() {
        let rule = Rule::parse(
            "rst_storm: rate(tcp_segments{flag=\"rst\"}) > 200/s for 10s with before=2m after=30s cooldown=5m max_per_hour=3 max_bytes=2G filter=\"tcp[13] & 4 != 0\"",
        )
        .unwrap();
        assert_eq!(rule.name, "rst_storm");
        assert_eq!(rule.hold, Duration::from_secs(10));
        assert_eq!(
            &rule.text[rule.condition_at.start..rule.condition_at.end],
            "rate(tcp_segments{flag=\"rst\"}) > 200/s"
        );
        let s = &rule.settings;
        assert_eq!(
            (s.before, s.after, s.cooldown),
            (Duration::from_secs(120), Duration::from_secs(30), Duration::from_secs(300))
        );
        assert_eq!((s.max_per_hour, s.max_bytes), (3, Some(2 << 30)));
        assert_eq!(s.filter, "tcp[13] & 4 != 0");
        let plain = Rule::parse("loss: increase(packets_dropped) > 0").unwrap();
        assert_eq!(plain.hold, Duration::ZERO);
        assert_eq!(plain.settings, FiringSettings::default());
    }

    #[test]
    fn bad_rules_say_where() {
        for (text, needle) in [
            ("no colon here", "NAME: CONDITION"),
            ("1bad: x > 1", "name"),
            ("r: x > 1 for", "duration after for"),
            ("r: x > 1 with colour=red", "unknown setting"),
            ("r: x > 1 with before=5", "not a duration"),
            ("r: x > 1 with filter=tcp", "double quotes"),
            ("r: x > 1 with max_per_hour=0", "at least 1"),
            ("r: x > 1 with before=48h", "at most 24h"),
            ("r: x > 1 extra", "unexpected text"),
            ("r: x > 1 with", "after with"),
            ("r: x > 1 with before=5m before=1m", "twice"),
            ("r: x > 1 with before=20h after=5h", "add up"),
            ("r: x > 1 with filter=\"host\"", "does not compile"),
        ] {
            let error = Rule::parse(text).unwrap_err();
            assert!(error.contains(needle) && error.contains('^'), "{text}: {error}");
        }
    }

    #[test]
    fn tables_become_rules() {
        let table: toml::Table = toml::from_str(
            "name = \"slow\"\ncondition = 'rtt_p99{method=\"handshake\",side=\"server\"} > 200ms'\nfor = \"1m\"\nafter = \"2m\"\nmax_per_hour = 2\nfilter = 'port 443 and tcp[13] & 2 != 0'\n",
        )
        .unwrap();
        let text = from_table(&table).unwrap();
        let rule = Rule::parse(&text).unwrap();
        assert_eq!(rule.name, "slow");
        assert_eq!(rule.hold, Duration::from_secs(60));
        assert_eq!(rule.settings.after, Duration::from_secs(120));
        assert_eq!(rule.settings.max_per_hour, 2);
        assert_eq!(rule.settings.filter, "port 443 and tcp[13] & 2 != 0");
        let mut bad = table.clone();
        bad.insert("colour".into(), toml::Value::String("red".into()));
        assert!(from_table(&bad).unwrap_err().contains("unknown key"));
    }
}

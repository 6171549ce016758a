//! File names from a strftime-style template, as tcpdump's `-w` takes with `-G`.
//! Times are UTC: a gateway's files should not jump when its time zone changes.
use std::time::Duration;

use time::OffsetDateTime;

use super::StorageError;

/// The strftime fields a template may use.
const FIELDS: &str = "%Y %m %d %H %M %S %j %s %%";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(char),
}

/// A parsed `--name` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTemplate {
    parts: Vec<Part>,
}

impl NameTemplate {
    /// Parses a template; it must name a file (no `/`) and use only known fields.
    pub fn parse(text: &str) -> Result<Self, StorageError> {
        let bad = |why: String| StorageError::BadTemplate { template: text.to_string(), why };
        if text.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if text.chars().any(char::is_control) {
            return Err(bad(
                "it holds a control character (a newline, a tab): use printable characters".into()
            ));
        }
        if text.contains('/') || text == "." || text == ".." {
            return Err(bad("it must be a file name without '/': files go in --dir".into()));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => literal.push('%'),
                Some(f @ ('Y' | 'm' | 'd' | 'H' | 'M' | 'S' | 'j' | 's')) => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(f));
                }
                Some(f) => return Err(bad(format!("%{f} is not supported; use {FIELDS}"))),
                None => return Err(bad(format!("it ends with a lone %; use {FIELDS}"))),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(NameTemplate { parts })
    }

    /// The name for a file opened at `unix` (time since the epoch, UTC).
    pub fn render(&self, unix: Duration) -> String {
        let secs = unix.as_secs();
        let utc = i64::try_from(secs)
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut name = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => name.push_str(text),
                Part::Field(field) => {
                    let value = match field {
                        'Y' => format!("{:04}", utc.year()),
                        'm' => format!("{:02}", u8::from(utc.month())),
                        'd' => format!("{:02}", utc.day()),
                        'H' => format!("{:02}", utc.hour()),
                        'M' => format!("{:02}", utc.minute()),
                        'S' => format!("{:02}", utc.second()),
                        'j' => format!("{:03}", utc.ordinal()),
                        's' => secs.to_string(),
                        _ => unreachable!("checked when parsing"),
                    };
                    name.push_str(&value);
                }
            }
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_utc_fields_like_strftime() {
        let t = NameTemplate::parse("cap_%Y%m%d_%H%M%S-%j-%s%%").unwrap();
        // 2024-02-29 13:05:09 UTC
        assert_eq!(t.render(Duration::from_secs(1_709_211_909)), "cap_20240229_130509-060-1709211909%");
        assert_eq!(t.render(Duration::from_secs(0)), "cap_19700101_000000-001-0%");
        let t = NameTemplate::parse("%Y-%m-%d").unwrap();
        assert_eq!(t.render(Duration::from_secs(4_102_444_799)), "2099-12-31");
    }

    #[test]
    fn rejects_bad_templates_with_the_reason() {
        for (text, why) in
            [("a/b", "without '/'"), ("x%Q", "%Q is not supported"), ("x%", "lone %"), ("", "empty")]
        {
            let error = NameTemplate::parse(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}

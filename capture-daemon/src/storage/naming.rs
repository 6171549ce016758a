//! File names from a strftime-style template, as tcpdump's `-w` takes with `-G`.
//! Times are UTC: a gateway's files should not jump when its time zone changes.
use std::time::Duration;

use super::StorageError;
use crate::civil::civil_from_days;

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
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let day_secs = secs % 86_400;
        let mut name = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => name.push_str(text),
                Part::Field(field) => {
                    let value = match field {
                        'Y' => format!("{year:04}"),
                        'm' => format!("{month:02}"),
                        'd' => format!("{day:02}"),
                        'H' => format!("{:02}", day_secs / 3600),
                        'M' => format!("{:02}", day_secs / 60 % 60),
                        'S' => format!("{:02}", day_secs % 60),
                        'j' => format!("{:03}", day_of_year(year, month, day)),
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

fn day_of_year(year: i64, month: u32, day: u32) -> u32 {
    const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    BEFORE[month as usize - 1] + day + u32::from(leap && month > 2)
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

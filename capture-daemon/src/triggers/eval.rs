//! Rules checked against the daemon's series and evaluated on each tick's scrape.
//!
//! A rule is compiled against the families a running daemon shows in `/metrics` (names
//! with or without `ringcap_` and `_total`, label names and values): a name or label that
//! does not exist refuses the start. Each series a rule reads keeps its own short history
//! (as long as its range), so a rate or a quantile covers exactly its range, and
//! evaluation reads nothing but the scrape it is given: it never touches the capture path.
//!
//! A rule over series that carry `interface` and `direction` is evaluated once per
//! interface and direction the capture has (unless its matchers pick one): a storm on one
//! link is not diluted by the quiet others.
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::expr::{
    rtt_percentile, Arithmetic, Comparison, Condition, Function, Matcher, Selector, Span, SyntaxError, Value,
};
use super::rule::Rule;
use crate::api::metrics::{Family, Series};
use crate::records::Reading;

/// The labels a rule is split by, when its series have them.
pub const GROUP_KEYS: [&str; 2] = ["interface", "direction"];

/// One interface and direction of the capture (or, for rules over series without them,
/// the whole capture: no labels).
pub type Group = Vec<(String, String)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A selector bound to the families it reads.
#[derive(Debug)]
struct Bound {
    /// Each family's name and the matchers that apply to it.
    families: Vec<(String, Vec<Matcher>)>,
    kind: Kind,
    /// The group keys its series carry that no matcher fixes.
    grouped: Vec<&'static str>,
}

/// A value read from the scrape for one group.
#[derive(Clone, Debug)]
enum Raw {
    Number(f64),
    /// Per-bucket counts by upper bound (not cumulative), +Inf as `f64::MAX`.
    Buckets(Vec<(f64, u64)>),
}

/// A reading of a term and when it was taken.
type Stamped = (Instant, Raw);

/// A series a rule reads, and its recent values by group.
#[derive(Debug)]
struct Term {
    bound: Bound,
    /// What a rate, increase or quantile covers (zero until compiled: not written).
    range: Duration,
    history: Vec<VecDeque<Stamped>>,
}

/// How often the daemon refreshes the kernel's counters: a change over less than this
/// would be a burst or nothing, so it is the shortest range.
pub const COUNTER_REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug)]
enum Node {
    Number(f64),
    Current(usize),
    Counter(Function, usize),
    Quantile(f64, usize),
    Negate(Box<Node>),
    Binary(Box<Node>, Arithmetic, Box<Node>),
}

#[derive(Debug)]
enum Check {
    Compare { left: Node, op: Comparison, right: Node, left_text: String, right_text: String },
    And(Box<Check>, Box<Check>),
    Or(Box<Check>, Box<Check>),
}

/// A rule ready to evaluate.
#[derive(Debug)]
pub struct Compiled {
    pub rule: Rule,
    check: Check,
    terms: Vec<Term>,
    /// The groups it is evaluated in.
    pub groups: Vec<Group>,
}

/// What one evaluation found for each group: whether the condition holds, and the
/// readings of its comparisons.
pub type Outcome = Vec<(bool, Vec<Reading>)>;

/// The short name of a family or a written series: without `ringcap_` and `_total`.
fn short(name: &str) -> &str {
    let name = name.strip_prefix("ringcap_").unwrap_or(name);
    name.strip_suffix("_total").unwrap_or(name)
}

fn kind_of(family: &Family) -> Kind {
    match family.series {
        Series::Counters(_) => Kind::Counter,
        Series::Gauge(_) | Series::Gauges(_) => Kind::Gauge,
        Series::Histograms(_) => Kind::Histogram,
    }
}

/// The label sets of a family's series.
fn label_sets(family: &Family) -> Vec<&[(String, String)]> {
    match &family.series {
        Series::Counters(s) | Series::Gauges(s) => s.iter().map(|(l, _)| l.as_slice()).collect(),
        Series::Gauge(_) => vec![&[]],
        Series::Histograms(s) => s.iter().map(|(l, ..)| l.as_slice()).collect(),
    }
}

/// Compiles `rule` against `catalog` (the families of a running daemon) for the capture's
/// `groups`, to be evaluated every `interval`; the error shows the rule with a caret
/// under the place. A range is at least the longer of `interval` and [`COUNTER_REFRESH`],
/// and one not written is twice that, as Prometheus advises a range of two scrapes: a
/// burst the refresh happens to split then reads as one change, not two incidents.
pub fn compile(
    rule: Rule,
    catalog: &[Family],
    groups: &[Group],
    interval: Duration,
) -> Result<Compiled, String> {
    let mut terms = Vec::new();
    let check = check(&rule.condition, &rule.text, catalog, &mut terms)
        .map_err(|e| format!("trigger {:?}: {}", rule.name, e.show(&rule.text)))?;
    let shortest = interval.max(COUNTER_REFRESH);
    for term in &mut terms {
        term.range = if term.range.is_zero() { shortest * 2 } else { term.range.max(shortest) };
    }
    let grouped = terms.iter().any(|t| !t.bound.grouped.is_empty());
    let groups: Vec<Group> = if grouped && !groups.is_empty() { groups.to_vec() } else { vec![Vec::new()] };
    for term in &mut terms {
        term.history = vec![VecDeque::new(); groups.len()];
    }
    Ok(Compiled { rule, check, terms, groups })
}

fn check(
    condition: &Condition,
    text: &str,
    catalog: &[Family],
    terms: &mut Vec<Term>,
) -> Result<Check, SyntaxError> {
    Ok(match condition {
        Condition::Compare(compare) => Check::Compare {
            left: node(&compare.left, catalog, terms)?,
            op: compare.op,
            right: node(&compare.right, catalog, terms)?,
            left_text: text[compare.left_text.start..compare.left_text.end].to_string(),
            right_text: text[compare.right_text.start..compare.right_text.end].to_string(),
        },
        Condition::And(a, b) => {
            Check::And(Box::new(check(a, text, catalog, terms)?), Box::new(check(b, text, catalog, terms)?))
        }
        Condition::Or(a, b) => {
            Check::Or(Box::new(check(a, text, catalog, terms)?), Box::new(check(b, text, catalog, terms)?))
        }
    })
}

fn node(value: &Value, catalog: &[Family], terms: &mut Vec<Term>) -> Result<Node, SyntaxError> {
    let mut term = |selector: &Selector, wanted: &[Kind], what: &str| -> Result<usize, SyntaxError> {
        let bound = bind(selector, catalog)?;
        if !wanted.contains(&bound.kind) {
            let kind = match bound.kind {
                Kind::Counter => "a counter",
                Kind::Gauge => "a gauge",
                Kind::Histogram => "a histogram",
            };
            return Err(SyntaxError::new(format!("{} is {kind}: {what}", selector.name), selector.at));
        }
        terms.push(Term { bound, range: selector.range.unwrap_or_default(), history: Vec::new() });
        Ok(terms.len() - 1)
    };
    Ok(match value {
        Value::Number(n) => Node::Number(*n),
        Value::Current(s) => {
            if s.range.is_some() {
                return Err(SyntaxError::new(
                    "a range goes with rate(), increase() or a quantile: rate(x[5m])",
                    s.at,
                ));
            }
            Node::Current(term(
                s,
                &[Kind::Counter, Kind::Gauge],
                "use rtt_p99{...} or quantile(0.99, ...) for a histogram",
            )?)
        }
        Value::Counter(function, s) => {
            Node::Counter(*function, term(s, &[Kind::Counter], "rate() and increase() take a counter")?)
        }
        Value::Quantile(q, s) => {
            Node::Quantile(*q, term(s, &[Kind::Histogram], "a quantile takes a histogram")?)
        }
        Value::Negate(inner) => Node::Negate(Box::new(node(inner, catalog, terms)?)),
        Value::Binary(a, op, b) => {
            Node::Binary(Box::new(node(a, catalog, terms)?), *op, Box::new(node(b, catalog, terms)?))
        }
    })
}

/// The RTT histograms `rtt_pNN{method=...}` reads: by method, the family and the matcher
/// that stays.
fn rtt_families(selector: &Selector, catalog: &[Family]) -> Result<Vec<(String, Vec<Matcher>)>, SyntaxError> {
    let method = selector.matchers.iter().find(|m| m.key == "method");
    let others: Vec<Matcher> = selector.matchers.iter().filter(|m| m.key != "method").cloned().collect();
    let handshake = ("ringcap_tcp_handshake_rtt_seconds".to_string(), others.clone());
    let data = |matcher: Option<&Matcher>| {
        let mut matchers = others.iter().filter(|m| m.key != "side").cloned().collect::<Vec<_>>();
        matchers.extend(matcher.cloned());
        ("ringcap_tcp_rtt_seconds".to_string(), matchers)
    };
    let families = match method {
        None => vec![handshake, data(None)],
        Some(m) if m.value == "handshake" && !m.negated => vec![handshake],
        Some(m) if m.value == "handshake" => vec![data(None)],
        Some(m) => {
            if others.iter().any(|o| o.key == "side") {
                let side = others.iter().find(|o| o.key == "side").map_or(m.at, |o| o.at);
                return Err(SyntaxError::new("side goes with method=\"handshake\" only", side));
            }
            vec![data(Some(m))]
        }
    };
    // The daemon shows both only once RTT is measured; their labels are checked like any.
    for (name, matchers) in &families {
        if let Some(family) = catalog.iter().find(|f| f.name == *name) {
            check_labels(family, matchers)?;
        }
    }
    Ok(families)
}

fn bind(selector: &Selector, catalog: &[Family]) -> Result<Bound, SyntaxError> {
    if rtt_percentile(&selector.name).is_some() {
        let families = rtt_families(selector, catalog)?;
        let fixed: BTreeSet<&str> = selector.matchers.iter().map(|m| m.key.as_str()).collect();
        let grouped = GROUP_KEYS.into_iter().filter(|k| !fixed.contains(k)).collect();
        return Ok(Bound { families, kind: Kind::Histogram, grouped });
    }
    let wanted = short(&selector.name);
    let Some(family) = catalog.iter().find(|f| short(&f.name) == wanted) else {
        let mut names: Vec<&str> = catalog.iter().map(|f| short(&f.name)).collect();
        names.sort_unstable();
        names.dedup();
        return Err(SyntaxError::new(
            format!(
                "no series named {:?}: ringcap's are {}, and rtt_p50/p90/p95/p99/p999 (names as in /metrics; ringcap_ and _total may be left out)",
                selector.name,
                names.join(", ")
            ),
            Span { start: selector.at.start, end: selector.at.start + selector.name.len() },
        ));
    };
    check_labels(family, &selector.matchers)?;
    let keys: BTreeSet<&str> = label_sets(family).into_iter().flatten().map(|(k, _)| k.as_str()).collect();
    let fixed: BTreeSet<&str> = selector.matchers.iter().map(|m| m.key.as_str()).collect();
    let grouped = GROUP_KEYS.into_iter().filter(|k| keys.contains(k) && !fixed.contains(k)).collect();
    Ok(Bound {
        families: vec![(family.name.clone(), selector.matchers.clone())],
        kind: kind_of(family),
        grouped,
    })
}

/// Refuses a matcher on a label the family does not have, or (for labels with a fixed set
/// of values, all but the interface) a value it never takes.
fn check_labels(family: &Family, matchers: &[Matcher]) -> Result<(), SyntaxError> {
    let sets = label_sets(family);
    for matcher in matchers {
        let values: BTreeSet<&str> = sets
            .iter()
            .flat_map(|s| s.iter())
            .filter(|(k, _)| *k == matcher.key)
            .map(|(_, v)| v.as_str())
            .collect();
        if values.is_empty() {
            let keys: BTreeSet<&str> = sets.iter().flat_map(|s| s.iter()).map(|(k, _)| k.as_str()).collect();
            let has = if keys.is_empty() {
                "no labels".to_string()
            } else {
                format!("the labels {}", keys.into_iter().collect::<Vec<_>>().join(", "))
            };
            return Err(SyntaxError::new(
                format!("{} has {has}, not {:?}", short(&family.name), matcher.key),
                matcher.at,
            ));
        }
        if matcher.key != "interface" && !values.contains(matcher.value.as_str()) {
            return Err(SyntaxError::new(
                format!(
                    "{}{{{}}} is one of {}",
                    short(&family.name),
                    matcher.key,
                    values.into_iter().collect::<Vec<_>>().join(", ")
                ),
                matcher.at,
            ));
        }
    }
    Ok(())
}

/// Whether a series' labels pass the matchers and belong to the group (for the keys the
/// term is split by). A label the series lacks reads as "".
fn selects(labels: &[(String, String)], matchers: &[Matcher], group: &Group, grouped: &[&str]) -> bool {
    let get = |key: &str| labels.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str());
    matchers.iter().all(|m| (get(&m.key) == m.value) != m.negated)
        && group.iter().filter(|(k, _)| grouped.contains(&k.as_str())).all(|(k, v)| get(k) == v)
}

/// A scrape, by family name.
pub type Scrape<'a> = HashMap<&'a str, &'a Family>;

/// Indexes a scrape's families by name.
pub fn index(families: &[Family]) -> Scrape<'_> {
    families.iter().map(|f| (f.name.as_str(), f)).collect()
}

impl Term {
    /// The term's value in `group` now: the sum of the series it selects.
    fn read(&self, scrape: &Scrape<'_>, group: &Group) -> Raw {
        let mut sum = 0.0;
        let mut buckets: Vec<(f64, u64)> = Vec::new();
        for (name, matchers) in &self.bound.families {
            let Some(family) = scrape.get(name.as_str()) else { continue };
            let ok = |labels: &[(String, String)]| selects(labels, matchers, group, &self.bound.grouped);
            match &family.series {
                Series::Counters(s) | Series::Gauges(s) => {
                    sum += s.iter().filter(|(l, _)| ok(l)).map(|(_, v)| *v as f64).sum::<f64>();
                }
                Series::Gauge(v) => {
                    if ok(&[]) {
                        sum += *v as f64;
                    }
                }
                Series::Histograms(s) => {
                    for (_, _, _, counts) in s.iter().filter(|(l, ..)| ok(l)) {
                        if buckets.is_empty() {
                            buckets = counts.clone();
                        } else {
                            for (mine, (_, c)) in buckets.iter_mut().zip(counts) {
                                mine.1 += c;
                            }
                        }
                    }
                }
            }
        }
        if self.bound.kind == Kind::Histogram {
            Raw::Buckets(buckets)
        } else {
            Raw::Number(sum)
        }
    }

    /// The reading to measure a change from: the newest at least the range before the
    /// latest (half a tick of slack), else the oldest kept.
    fn base(&self, group: usize, tick: Duration) -> Option<(&Stamped, &Stamped)> {
        let history = &self.history[group];
        let latest = history.back()?;
        if history.len() < 2 {
            return None;
        }
        let reach = latest.0.checked_sub(self.range.saturating_sub(tick / 2));
        let base = history
            .iter()
            .rev()
            .skip(1)
            .find(|(at, _)| reach.is_some_and(|r| *at <= r))
            .unwrap_or(&history[0]);
        Some((base, latest))
    }

    fn counter(&self, function: Function, group: usize, tick: Duration) -> Option<f64> {
        let ((then, a), (now, b)) = self.base(group, tick)?;
        let (Raw::Number(a), Raw::Number(b)) = (a, b) else { return None };
        // A counter that went down was reset (a restart): it counts from zero.
        let added = if b >= a { b - a } else { *b };
        match function {
            Function::Increase => Some(added),
            Function::Rate => {
                let seconds = now.duration_since(*then).as_secs_f64();
                (seconds > 0.0).then(|| added / seconds)
            }
        }
    }

    /// The `q` quantile of the observations over the range, interpolated within its bucket
    /// as Prometheus' histogram_quantile does; none without observations.
    fn quantile(&self, q: f64, group: usize, tick: Duration) -> Option<f64> {
        let ((_, a), (_, b)) = self.base(group, tick)?;
        let (Raw::Buckets(a), Raw::Buckets(b)) = (a, b) else { return None };
        let counts: Vec<(f64, u64)> = b
            .iter()
            .enumerate()
            .map(|(i, (bound, count))| (*bound, count.saturating_sub(a.get(i).map_or(0, |x| x.1))))
            .collect();
        let total: u64 = counts.iter().map(|(_, c)| c).sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for (bound, count) in counts {
            if (below + count) as f64 >= rank && count > 0 {
                if bound == f64::MAX {
                    return Some(lower);
                }
                return Some(lower + (bound - lower) * (rank - below as f64) / count as f64);
            }
            below += count;
            if bound != f64::MAX {
                lower = bound;
            }
        }
        Some(lower)
    }
}

/// How long a term keeps readings: its range and two ticks more.
fn keep_for(range: Duration, tick: Duration) -> Duration {
    range + tick * 2
}

impl Compiled {
    /// Reads the scrape into every term's history, then evaluates the condition in each
    /// group.
    pub fn evaluate(&mut self, scrape: &Scrape<'_>, now: Instant, tick: Duration) -> Outcome {
        for term in &mut self.terms {
            for (g, group) in self.groups.iter().enumerate() {
                let raw = term.read(scrape, group);
                let history = &mut term.history[g];
                history.push_back((now, raw));
                let keep = keep_for(term.range, tick);
                while history.len() > 2
                    && history.front().is_some_and(|(at, _)| now.duration_since(*at) > keep)
                {
                    history.pop_front();
                }
            }
        }
        (0..self.groups.len())
            .map(|g| {
                let mut readings = Vec::new();
                let held = self.holds(&self.check, g, tick, &mut readings);
                (held, readings)
            })
            .collect()
    }

    fn holds(&self, check: &Check, group: usize, tick: Duration, readings: &mut Vec<Reading>) -> bool {
        match check {
            Check::Compare { left, op, right, left_text, right_text } => {
                let (l, r) = (self.value(left, group, tick), self.value(right, group, tick));
                readings.push(Reading {
                    expression: left_text.clone(),
                    value: l,
                    threshold: right_text.clone(),
                    threshold_value: r,
                });
                matches!((l, r), (Some(l), Some(r)) if op.holds(l, r))
            }
            // Both sides always, so every reading is reported.
            Check::And(a, b) => {
                let a = self.holds(a, group, tick, readings);
                self.holds(b, group, tick, readings) && a
            }
            Check::Or(a, b) => {
                let a = self.holds(a, group, tick, readings);
                self.holds(b, group, tick, readings) || a
            }
        }
    }

    /// A value in `group`; none while there is no data for it (no readings yet, no
    /// observations, a division by zero).
    fn value(&self, node: &Node, group: usize, tick: Duration) -> Option<f64> {
        let value = match node {
            Node::Number(n) => *n,
            Node::Current(t) => match self.terms[*t].history[group].back()? {
                (_, Raw::Number(n)) => *n,
                _ => return None,
            },
            Node::Counter(function, t) => self.terms[*t].counter(*function, group, tick)?,
            Node::Quantile(q, t) => self.terms[*t].quantile(*q, group, tick)?,
            Node::Negate(inner) => -self.value(inner, group, tick)?,
            Node::Binary(a, op, b) => {
                let (a, b) = (self.value(a, group, tick)?, self.value(b, group, tick)?);
                match op {
                    Arithmetic::Add => a + b,
                    Arithmetic::Subtract => a - b,
                    Arithmetic::Multiply => a * b,
                    Arithmetic::Divide if b == 0.0 => return None,
                    Arithmetic::Divide => a / b,
                }
            }
        };
        value.is_finite().then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A scrape of two interfaces' RST counts, drops, and a handshake RTT histogram.
    fn scrape(rst_a: u64, rst_b: u64, dropped: u64, rtt: [u64; 3]) -> Vec<Family> {
        let family = |name: &str, series| Family { name: name.into(), help: String::new(), series };
        vec![
            family(
                "ringcap_tcp_segments",
                Series::Counters(vec![
                    (labels(&[("interface", "a"), ("direction", "in"), ("flag", "rst")]), rst_a),
                    (labels(&[("interface", "a"), ("direction", "in"), ("flag", "syn")]), 1000),
                    (labels(&[("interface", "b"), ("direction", "in"), ("flag", "rst")]), rst_b),
                    (labels(&[("interface", "b"), ("direction", "in"), ("flag", "syn")]), 1000),
                ]),
            ),
            family(
                "ringcap_packets_dropped",
                Series::Counters(vec![
                    (labels(&[("reason", "ring_full")]), dropped),
                    (labels(&[("reason", "queue_full")]), 0),
                ]),
            ),
            family("ringcap_pins", Series::Gauge(2)),
            family(
                "ringcap_tcp_handshake_rtt_seconds",
                Series::Histograms(vec![(
                    labels(&[("interface", "a"), ("direction", "in"), ("side", "server")]),
                    0.0,
                    rtt.iter().sum(),
                    vec![(0.001, rtt[0]), (0.1, rtt[1]), (f64::MAX, rtt[2])],
                )]),
            ),
            family("ringcap_tcp_rtt_seconds", Series::Histograms(Vec::new())),
        ]
    }

    fn groups() -> Vec<Group> {
        ["a", "b"].iter().map(|i| labels(&[("interface", i), ("direction", "in")])).collect()
    }

    fn compiled(text: &str) -> Result<Compiled, String> {
        compile(Rule::parse(text)?, &scrape(0, 0, 0, [0; 3]), &groups(), TICK)
    }

    const TICK: Duration = Duration::from_secs(1);

    #[test]
    fn rates_are_per_group_and_need_two_readings() {
        let mut rule = compiled("rst: rate(tcp_segments{flag=\"rst\"}) > 200/s").unwrap();
        assert_eq!(rule.groups.len(), 2);
        let start = Instant::now();
        let first = rule.evaluate(&index(&scrape(0, 0, 0, [0; 3])), start, TICK);
        assert_eq!(first[0].1[0].value, None, "one reading is no rate");
        let later = rule.evaluate(&index(&scrape(500, 100, 0, [0; 3])), start + TICK * 2, TICK);
        assert!(later[0].0 && !later[1].0, "{later:?}");
        assert_eq!(later[0].1[0].value, Some(250.0));
        assert_eq!(later[1].1[0].value, Some(50.0));
        assert_eq!(later[0].1[0].threshold_value, Some(200.0));
    }

    #[test]
    fn ranges_reach_back_and_counters_reset() {
        let mut rule = compiled("loss: increase(packets_dropped[5s]) > 0").unwrap();
        assert_eq!(rule.groups.len(), 1, "packets_dropped has no interface");
        let start = Instant::now();
        for (second, dropped) in
            [(0u32, 10u64), (1, 10), (2, 12), (3, 12), (4, 12), (5, 12), (6, 12), (7, 12), (8, 3)]
        {
            let outcome = rule.evaluate(&index(&scrape(0, 0, dropped, [0; 3])), start + TICK * second, TICK);
            let value = outcome[0].1[0].value;
            match second {
                0 => assert_eq!(value, None),
                1 => assert_eq!(value, Some(0.0)),
                2..=6 => assert_eq!(value, Some(2.0), "second {second}"),
                7 => assert_eq!(value, Some(0.0)),
                // Reset: 12 -> 3 counts as 3 new.
                _ => assert_eq!(value, Some(3.0)),
            }
        }
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut rule = compiled("slow: rtt_p50{method=\"handshake\",side=\"server\"} > 50ms").unwrap();
        let start = Instant::now();
        rule.evaluate(&index(&scrape(0, 0, 0, [0; 3])), start, TICK);
        let outcome = rule.evaluate(&index(&scrape(0, 0, 0, [0, 10, 0])), start + TICK, TICK);
        // Ten observations in (1 ms, 100 ms]: the median interpolates to 50.5 ms.
        let value = outcome[0].1[0].value.unwrap();
        assert!((value - 0.0505).abs() < 1e-9, "{value}");
        assert!(outcome[0].0);
        assert_eq!(outcome[1].1[0].value, None, "interface b measured nothing");
        // Past the last finite bound: that bound.
        let outcome = rule.evaluate(&index(&scrape(0, 0, 0, [0, 10, 10])), start + TICK * 2, TICK);
        assert_eq!(outcome[0].1[0].value, Some(0.1));
    }

    #[test]
    fn ratios_and_logic() {
        let mut rule =
            compiled("mix: increase(tcp_segments{flag=\"rst\"}) / increase(tcp_segments{flag=\"syn\"}) > 10% and pins >= 2")
                .unwrap();
        let start = Instant::now();
        rule.evaluate(&index(&scrape(0, 0, 0, [0; 3])), start, TICK);
        // No SYN added: a division by zero is no value, and the condition does not hold.
        let outcome = rule.evaluate(&index(&scrape(50, 0, 0, [0; 3])), start + TICK, TICK);
        assert!(!outcome[0].0);
        assert_eq!(outcome[0].1.len(), 2);
        assert_eq!(outcome[0].1[1].value, Some(2.0));
    }

    #[test]
    fn unknown_series_labels_and_kinds_are_refused() {
        for (text, needle) in [
            ("r: rate(tcp_segmentz) > 1", "no series named \"tcp_segmentz\""),
            ("r: rate(tcp_segments{flg=\"rst\"}) > 1", "not \"flg\""),
            ("r: rate(tcp_segments{flag=\"rts\"}) > 1", "is one of"),
            ("r: rate(pins) > 1", "is a gauge"),
            ("r: tcp_handshake_rtt_seconds > 1", "is a histogram"),
            ("r: quantile(0.9, packets_dropped) > 1", "is a counter"),
            ("r: packets_dropped[5m] > 1", "a range goes with"),
            ("r: rtt_p99{method=\"data\",side=\"server\"} > 1", "side goes with"),
        ] {
            let error = compiled(text).unwrap_err();
            assert!(error.contains(needle) && error.contains('^'), "{text}: {error}");
        }
        // Names as in /metrics, with or without the prefix and suffix.
        for text in ["r: rate(ringcap_tcp_segments_total) > 1", "r: rate(tcp_segments_total) > 1"] {
            compiled(text).unwrap();
        }
    }
}

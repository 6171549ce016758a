//! Incident triggers: the recorder keeps the evidence by itself.
//!
//! Rules (`--trigger 'NAME: CONDITION [for DURATION] [with ...]'`, `[[trigger]]` in the
//! TOML file) are evaluated every `--trigger-interval` on a scrape of the daemon's own
//! series, the same families `/metrics` shows, on a thread of their own: evaluation never
//! touches the capture path. A rule that holds (for its `for`) fires once per incident: it
//! pins `[fire - before, fire + after]` as `NAME-YYYYmmddTHHMMSSZ`, a pin that grows with
//! capture until its end. It fires again only after its condition has stopped holding,
//! and then only past its cooldown and within its hourly and byte caps; a firing that is
//! not pinned is counted by reason ([`SUPPRESSED_REASONS`]) and said on stderr.
//! Alertmanager's webhook ([`alerts`]) pins the same way from alerts raised elsewhere.
pub mod alerts;
mod eval;
mod expr;
mod rule;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use eval::{compile, index, Compiled, Group};
pub use rule::{from_table, FiringSettings, Rule};

use crate::api::metrics::{families, Family};
use crate::api::Sources;
use crate::health::locked;
use crate::pins::{stamped_name, PinError, PinRequest, PinStore};
use crate::records::{PinTrigger, Reading};
use crate::retrieve::window::Window;
use crate::storage::frames::duration_ns;
use crate::timefmt::{rfc3339, unix_now_ns};

/// Why a firing made no pin, as `ringcap_trigger_suppressed_total{reason}` says it.
pub const SUPPRESSED_REASONS: [&str; 6] = ["cooldown", "hourly_cap", "bytes_cap", "no_room", "busy", "error"];

/// Alert names kept apart in `/v1/triggers` and the metrics; later ones are counted
/// together under [`OTHER_ALERTS`].
pub const MAX_ALERT_NAMES: usize = 100;
/// The status the alerts past [`MAX_ALERT_NAMES`] names share (no alert name can be it:
/// names are made of letters, digits, '_' and '-').
pub const OTHER_ALERTS: &str = "(other alerts)";

/// A rule's or an alert's state, as `GET /v1/triggers` and `ringcap triggers` show it.
#[derive(Clone, Debug, Serialize)]
pub struct TriggerStatus {
    pub name: String,
    /// `rule` (the daemon's own) or `alertmanager` (alerts posted to `/v1/alerts`).
    pub source: &'static str,
    /// The rule as written.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rule: String,
    /// idle, pending (holding, not yet for its `for`), firing (holding, fired), cooling_down.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooling_down_until: Option<String>,
    /// The comparisons' values at the last evaluation, where the condition held (or in
    /// the first group).
    pub readings: Vec<Reading>,
    /// The interface and direction of those readings (empty: the whole capture).
    pub group: Vec<(String, String)>,
    /// Pins made.
    pub firings: u64,
    /// Firings not pinned, by reason.
    pub suppressed: BTreeMap<&'static str, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pin: Option<String>,
    /// Why the last firing made no pin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_suppressed: Option<String>,
    /// Alerts: notifications received (repeats of one alert make one pin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<u64>,
}

impl TriggerStatus {
    fn new(name: &str, source: &'static str, rule: &str) -> Self {
        TriggerStatus {
            name: name.to_string(),
            source,
            rule: rule.to_string(),
            state: "idle",
            pending_since: None,
            fired_at: None,
            cooling_down_until: None,
            readings: Vec::new(),
            group: Vec::new(),
            firings: 0,
            suppressed: SUPPRESSED_REASONS.iter().map(|r| (*r, 0)).collect(),
            last_pin: None,
            last_suppressed: None,
            notifications: (source == "alertmanager").then_some(0),
        }
    }

    /// Counts a firing that made no pin, and says why on stderr.
    fn suppress(&mut self, reason: &'static str, why: String) {
        *self.suppressed.entry(reason).or_default() += 1;
        eprintln!("ringcap: trigger {} fired but pinned nothing ({reason}): {why}", self.name);
        self.last_suppressed = Some(format!("{reason}: {why}"));
    }
}

/// The triggers' shared state: what the API, the metrics and the CLI read.
#[derive(Debug)]
pub struct Triggers {
    /// Rules first (in the order given), then alerts by first arrival.
    statuses: Mutex<Vec<TriggerStatus>>,
    /// Seconds between evaluations.
    pub interval: Duration,
    stopped: AtomicBool,
    /// The pins alerts made, by name, with the identity of their alert (see `alerts`).
    alert_pins: Mutex<BTreeMap<String, String>>,
}

impl Triggers {
    pub fn new(rules: &[Rule], interval: Duration) -> Arc<Self> {
        Arc::new(Triggers {
            statuses: Mutex::new(
                rules.iter().map(|r| TriggerStatus::new(&r.name, "rule", &r.text)).collect(),
            ),
            interval,
            stopped: AtomicBool::new(false),
            alert_pins: Mutex::default(),
        })
    }

    pub fn list(&self) -> Vec<TriggerStatus> {
        locked(&self.statuses).clone()
    }

    /// Capture has stopped: nothing fires any more.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Runs `f` on the status of `name` (of `source`), made if new. Alerts past
    /// [`MAX_ALERT_NAMES`] names share one status, [`OTHER_ALERTS`]: what a client posts
    /// can never grow the list or the metrics' series without bound.
    fn with_status<T>(&self, name: &str, source: &'static str, f: impl FnOnce(&mut TriggerStatus) -> T) -> T {
        let mut statuses = locked(&self.statuses);
        let find = |statuses: &[TriggerStatus], name: &str| {
            statuses.iter().position(|s| s.name == name && s.source == source)
        };
        let known = statuses.iter().filter(|s| s.source == source).count();
        let name =
            if find(&statuses, name).is_none() && known >= MAX_ALERT_NAMES { OTHER_ALERTS } else { name };
        let at = match find(&statuses, name) {
            Some(at) => at,
            None => {
                statuses.push(TriggerStatus::new(name, source, ""));
                statuses.len() - 1
            }
        };
        f(&mut statuses[at])
    }
}

/// The families a running daemon of these interfaces shows: what rules are checked
/// against (every series exists, RTT histograms included, before any is measured).
pub fn catalog(sources: &Sources) -> Vec<Family> {
    let slots = locked(&sources.live.slots).clone();
    let idle = Sources {
        archive: sources.archive.clone(),
        ..Sources::idle(Arc::clone(&sources.pins), slots, Arc::clone(&sources.triggers))
    };
    families(&idle)
}

/// The groups a capture's rules are evaluated in: each interface and direction.
pub fn groups(sources: &Sources) -> Vec<Group> {
    locked(&sources.live.slots)
        .iter()
        .map(|s| {
            vec![
                ("interface".to_string(), s.interface.clone()),
                ("direction".to_string(), s.direction.to_string()),
            ]
        })
        .collect()
}

/// Compiles the rules of a daemon against its series ([`catalog`]) for its groups; the
/// error names the first rule that does not make sense, or a name given twice (a rule's
/// name names its pins and its series).
pub fn compile_all(rules: Vec<Rule>, sources: &Sources, interval: Duration) -> Result<Vec<Compiled>, String> {
    let mut names = std::collections::BTreeSet::new();
    for rule in &rules {
        if !names.insert(rule.name.as_str()) {
            return Err(format!(
                "trigger {:?} is given twice: a rule's name names its pins and its series, so each rule needs its own",
                rule.name
            ));
        }
    }
    let (catalog, groups) = (catalog(sources), groups(sources));
    rules.into_iter().map(|rule| compile(rule, &catalog, &groups, interval)).collect()
}

/// A rule's own bookkeeping between ticks (its shared status is in [`Triggers`]).
struct RuleState {
    compiled: Compiled,
    /// Since when the condition has held, by group.
    pending: Vec<Option<(Instant, u64)>>,
    /// The condition held (for its `for`) at the last tick: this incident has fired (or
    /// been suppressed) already.
    active: bool,
    /// No firing before this.
    cooling_until: Option<(Instant, u64)>,
    /// Firings of the last hour.
    recent: VecDeque<Instant>,
}

/// Starts evaluating `rules` (compiled against the daemon's series) every
/// `triggers.interval` on a thread of its own, until [`Triggers::stop`].
pub fn start(rules: Vec<Compiled>, sources: Arc<Sources>) -> std::io::Result<()> {
    if rules.is_empty() {
        return Ok(());
    }
    let mut states: Vec<RuleState> = rules
        .into_iter()
        .map(|compiled| RuleState {
            pending: vec![None; compiled.groups.len()],
            compiled,
            active: false,
            cooling_until: None,
            recent: VecDeque::new(),
        })
        .collect();
    std::thread::Builder::new().name("triggers".into()).spawn(move || {
        let triggers = Arc::clone(&sources.triggers);
        let tick = triggers.interval;
        let mut next = Instant::now();
        while !triggers.stopped.load(Ordering::Relaxed) {
            let families = families(&sources);
            let scrape = index(&families);
            let now = Instant::now();
            for (i, state) in states.iter_mut().enumerate() {
                let outcome = state.compiled.evaluate(&scrape, now, tick);
                step(state, i, outcome, now, &sources.triggers, &sources.pins);
            }
            // A fixed schedule: a slow tick is not added to the next.
            next += tick;
            let wait = next.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                next = Instant::now();
            }
            std::thread::sleep(wait);
        }
    })?;
    Ok(())
}

/// One tick of one rule: its pending groups, and a firing when it has held for its `for`
/// and this incident has not fired yet.
fn step(
    state: &mut RuleState,
    index: usize,
    outcome: eval::Outcome,
    now: Instant,
    triggers: &Triggers,
    pins: &Arc<PinStore>,
) {
    let wall = unix_now_ns();
    let hold = state.compiled.rule.hold;
    for (pending, (held, _)) in state.pending.iter_mut().zip(&outcome) {
        if !*held {
            *pending = None;
        } else if pending.is_none() {
            *pending = Some((now, wall));
        }
    }
    let ready =
        state.pending.iter().position(|p| p.is_some_and(|(since, _)| now.duration_since(since) >= hold));
    let shown = ready.or_else(|| state.pending.iter().position(Option::is_some)).unwrap_or(0);
    let mut statuses = locked(&triggers.statuses);
    let status = &mut statuses[index];
    status.readings = outcome.get(shown).map(|(_, r)| r.clone()).unwrap_or_default();
    status.group = state.compiled.groups.get(shown).cloned().unwrap_or_default();
    match ready {
        Some(group) if !state.active => {
            state.active = true;
            fire(state, group, wall, now, status, pins);
        }
        Some(_) => {}
        None if state.pending.iter().all(Option::is_none) => state.active = false,
        None => {}
    }
    let cooling = state.cooling_until.filter(|(until, _)| *until > now);
    status.pending_since =
        state.pending.iter().flatten().map(|(_, ns)| *ns).min().filter(|_| !state.active).map(rfc3339);
    status.cooling_down_until = cooling.map(|(_, ns)| rfc3339(ns));
    status.state = if state.active {
        "firing"
    } else if status.pending_since.is_some() {
        "pending"
    } else if cooling.is_some() {
        "cooling_down"
    } else {
        "idle"
    };
}

/// Pins the window of a firing, unless its cooldown or caps forbid it (counted).
fn fire(
    state: &mut RuleState,
    group: usize,
    wall: u64,
    now: Instant,
    status: &mut TriggerStatus,
    pins: &Arc<PinStore>,
) {
    let rule = &state.compiled.rule;
    let settings = &rule.settings;
    if let Some((_, until)) = state.cooling_until.filter(|(until, _)| *until > now) {
        return status.suppress(
            "cooldown",
            format!(
                "it fired at {} and cools down until {}",
                status.fired_at.clone().unwrap_or_default(),
                rfc3339(until)
            ),
        );
    }
    while state.recent.front().is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(3600)) {
        state.recent.pop_front();
    }
    if state.recent.len() >= settings.max_per_hour as usize {
        return status.suppress(
            "hourly_cap",
            format!("it fired {} times in the last hour (max_per_hour)", state.recent.len()),
        );
    }
    // What the rule's pins hold already; the new one may take the rest.
    let held = pins.bytes_named(&rule.name);
    if let Some(limit) = settings.max_bytes {
        if held >= limit {
            return status.suppress(
                "bytes_cap",
                format!("its pins hold {held} bytes of the {limit} it may (max_bytes)"),
            );
        }
    }
    let trigger = PinTrigger {
        source: "rule".into(),
        name: rule.name.clone(),
        rule: rule.text.clone(),
        fired_at: rfc3339(wall),
        fired_at_ns: wall,
        group: state.compiled.groups[group].clone(),
        readings: status.readings.clone(),
        labels: BTreeMap::new(),
    };
    let window = Window {
        since_ns: wall.saturating_sub(duration_ns(settings.before)),
        until_ns: wall.saturating_add(duration_ns(settings.after)),
    };
    let name = stamped_name(&rule.name, wall);
    let request = PinRequest {
        name: Some(name.clone()),
        window,
        expression: settings.filter.clone(),
        trigger: Some(trigger),
        max_bytes: settings.max_bytes.map(|limit| limit - held),
    };
    match pins.pin(request) {
        Ok(_) => {
            state.recent.push_back(now);
            state.cooling_until =
                Some((now + settings.cooldown, wall.saturating_add(duration_ns(settings.cooldown))));
            status.firings += 1;
            status.fired_at = Some(rfc3339(wall));
            status.last_pin = Some(name.clone());
            let on = describe_group(&state.compiled.groups[group]);
            let readings: Vec<String> = status.readings.iter().map(ToString::to_string).collect();
            eprintln!(
                "ringcap: trigger {} fired{on}: {}; pinning {} to {} as {name}",
                rule.name,
                readings.join(", "),
                rfc3339(window.since_ns),
                rfc3339(window.until_ns)
            );
        }
        Err(error) => {
            let reason = suppressed_reason(&error);
            status.suppress(reason, error.to_string());
        }
    }
}

/// ` on eth0 in`, or nothing for the whole capture.
fn describe_group(group: &Group) -> String {
    if group.is_empty() {
        String::new()
    } else {
        format!(" on {}", group.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" "))
    }
}

/// The suppression reason of a pin the store refused.
fn suppressed_reason(error: &PinError) -> &'static str {
    match error {
        PinError::NoRoom(_) => "no_room",
        PinError::TooMany(_) => "busy",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::slot_labels;
    use crate::kernel::Direction;

    /// The sources of a daemon capturing eth0 both ways, its pins in a scratch directory.
    fn sources(name: &str) -> (Sources, std::path::PathBuf) {
        let (pins, dir) = PinStore::scratch(name);
        let slots = slot_labels(&["eth0".to_string()], Direction::Both);
        (Sources::idle(pins, slots, Triggers::new(&[], Duration::from_secs(1))), dir)
    }

    /// Every rule the README shows (`--trigger '...'` and `[[trigger]]` tables) compiles
    /// against a daemon's series.
    #[test]
    fn the_readme_rules_compile_against_a_daemon() {
        let readme = include_str!("../../../README.md");
        let mut rules: Vec<String> = readme
            .split("--trigger '")
            .skip(1)
            .map(|rest| rest.split('\'').next().unwrap().to_string())
            .collect();
        for table in readme.split("[[trigger]]\n").skip(1) {
            let text: String = table
                .lines()
                .take_while(|l| !l.is_empty() && !l.starts_with("```"))
                .collect::<Vec<_>>()
                .join("\n");
            rules.push(from_table(&toml::from_str(&text).unwrap()).unwrap());
        }
        assert!(rules.len() >= 8, "{rules:?}");
        let (sources, dir) = sources("readme");
        let (catalog, groups) = (catalog(&sources), groups(&sources));
        assert_eq!(groups.len(), 2, "eth0 in and out");
        for text in rules {
            let rule = Rule::parse(&text).unwrap();
            compile(rule, &catalog, &groups, Duration::from_secs(1)).unwrap();
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pin_store_refusals_map_to_reasons() {
        assert_eq!(suppressed_reason(&PinError::NoRoom("full".into())), "no_room");
        assert_eq!(suppressed_reason(&PinError::TooMany(2)), "busy");
        assert_eq!(suppressed_reason(&PinError::Io("x".into())), "error");
        assert!(SUPPRESSED_REASONS.contains(&"cooldown"));
        assert_eq!(describe_group(&Vec::new()), "");
        assert_eq!(
            describe_group(&vec![("interface".into(), "eth0".into()), ("direction".into(), "in".into())]),
            " on eth0 in"
        );
    }
}

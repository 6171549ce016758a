//! Alerts from outside pin too: `POST /v1/alerts` takes Prometheus Alertmanager's webhook
//! payload (version 4). Each firing alert pins `[startsAt - before, startsAt + after]` as
//! `ALERTNAME-YYYYmmddTHHMMSSZ` (from its start, so every repeat of one alert names the
//! same pin and makes no second one). `ringcap_before`, `ringcap_after` and
//! `ringcap_filter`, as labels or annotations, set the window and the filter. A payload is
//! checked whole before anything is pinned: one bad alert refuses all of it.
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::rule::{FiringSettings, MAX_PIN_SPAN};
use super::Triggers;
use crate::filter::Filter;
use crate::health::locked;
use crate::pins::{stamped_name, PinError, PinRequest, PinStore};
use crate::records::PinTrigger;
use crate::retrieve::window::{parse_duration, parse_time, Window};
use crate::storage::frames::duration_ns;
use crate::timefmt::{rfc3339, unix_now, unix_now_ns};

/// The largest payload taken (Alertmanager groups alerts; a thousand fit easily).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// The most alerts one payload may carry.
const MAX_ALERTS: usize = 1000;
/// The longest alert name kept in a pin's name (the stamp takes the rest of 64).
const MAX_ALERT_NAME: usize = 40;

/// The webhook's payload, the parts ringcap reads (others are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    version: String,
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    /// Alertmanager's identity of the alert (its label set).
    #[serde(default)]
    fingerprint: String,
}

/// What became of one alert of a payload.
#[derive(Debug, serde::Serialize)]
pub struct AlertOutcome {
    pub alert: String,
    pub pin: String,
    /// `pinned`, `exists` (a repeat: its pin was made already) or `refused`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A firing alert, checked: its pin's request.
struct Checked {
    alert: String,
    /// What tells this alert from another of its name: its fingerprint, else its labels.
    identity: String,
    request: PinRequest,
}

/// Reads a payload; the error says what is wrong with it (answered 400, nothing pinned).
fn check(body: &[u8], now_ns: u64) -> Result<Vec<Checked>, String> {
    let payload: Payload = serde_json::from_slice(body)
        .map_err(|e| format!("not an Alertmanager webhook payload (version 4): {e}"))?;
    if payload.version != "4" {
        return Err(format!("webhook payload version {:?}: ringcap reads version \"4\"", payload.version));
    }
    if payload.alerts.len() > MAX_ALERTS {
        return Err(format!("{} alerts in one payload: at most {MAX_ALERTS}", payload.alerts.len()));
    }
    let defaults = FiringSettings::default();
    let mut checked = Vec::new();
    for (i, alert) in payload.alerts.into_iter().enumerate() {
        let bad = |why: String| format!("alert {i}: {why}");
        match alert.status.as_str() {
            "firing" => {}
            "resolved" => continue,
            other => return Err(bad(format!("status {other:?}: expected \"firing\" or \"resolved\""))),
        }
        let raw_name = alert.labels.get("alertname").cloned().unwrap_or_else(|| "alert".into());
        let name: String = raw_name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
            .take(MAX_ALERT_NAME)
            .collect();
        let name =
            if name.starts_with(|c: char| c.is_ascii_alphanumeric()) { name } else { format!("alert{name}") };
        let setting = |key: &str| alert.labels.get(key).or_else(|| alert.annotations.get(key));
        let span = |key: &str, default: Duration| -> Result<Duration, String> {
            let Some(text) = setting(key) else { return Ok(default) };
            let value = parse_duration(text).map_err(|e| bad(format!("{key}: {e}")))?;
            if value > MAX_PIN_SPAN {
                return Err(bad(format!("{key} {text}: at most 24h")));
            }
            Ok(value)
        };
        let before = span("ringcap_before", defaults.before)?;
        let after = span("ringcap_after", defaults.after)?;
        if before + after > MAX_PIN_SPAN {
            return Err(bad("ringcap_before and ringcap_after add up to at most 24h".into()));
        }
        let filter = setting("ringcap_filter").cloned().unwrap_or_default();
        Filter::compile(&filter).map_err(|e| bad(format!("ringcap_filter: {e}")))?;
        let starts = parse_time(&alert.starts_at, Duration::from_nanos(now_ns))
            .map_err(|e| bad(format!("startsAt: {e}")))?;
        // An alert from the future is a clock gone wrong, or a forgery.
        if starts > now_ns + duration_ns(Duration::from_secs(300)) {
            return Err(bad(format!("startsAt {} is in the future", alert.starts_at)));
        }
        let identity = if alert.fingerprint.is_empty() {
            alert.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(",")
        } else {
            alert.fingerprint.clone()
        };
        let mut labels = alert.labels;
        labels.extend(alert.annotations.into_iter().map(|(k, v)| (format!("annotation:{k}"), v)));
        let trigger = PinTrigger {
            source: "alertmanager".into(),
            name: raw_name,
            fired_at: rfc3339(starts),
            fired_at_ns: starts,
            labels,
            ..PinTrigger::default()
        };
        let window = Window {
            since_ns: starts.saturating_sub(duration_ns(before)),
            until_ns: starts.saturating_add(duration_ns(after)).max(starts + 1),
        };
        let request = PinRequest {
            name: Some(stamped_name(&name, starts)),
            window,
            expression: filter,
            trigger: Some(trigger),
            max_bytes: None,
        };
        checked.push(Checked { alert: name, identity, request });
    }
    Ok(checked)
}

/// Six hex digits of the SHA-256 of `text`: the same in every run and every release, as
/// the names of pins must be.
fn short_hash(text: &str) -> String {
    use sha2::Digest;
    crate::pins::hex(&sha2::Sha256::digest(text.as_bytes())[..3])
}

/// Alert pins remembered (their alert's identity) so that repeats make none: the oldest
/// are forgotten past this many.
const REMEMBERED_ALERT_PINS: usize = 10_000;

impl Triggers {
    fn remember_alert_pin(&self, pin: &str, identity: String) {
        let mut made = locked(&self.alert_pins);
        if made.len() >= REMEMBERED_ALERT_PINS && !made.contains_key(pin) {
            // Names end in their time stamp: the first in order is about the oldest.
            if let Some(oldest) = made.keys().next().cloned() {
                made.remove(&oldest);
            }
        }
        made.insert(pin.to_string(), identity);
    }

    /// Pins the window of each firing alert of an Alertmanager payload; `Err`: the payload
    /// is refused whole (400), nothing pinned.
    pub fn receive_alerts(
        &self,
        body: &[u8],
        pins: &std::sync::Arc<PinStore>,
    ) -> Result<Vec<AlertOutcome>, String> {
        let now = unix_now();
        let checked = check(body, now.as_nanos() as u64)?;
        let mut outcomes = Vec::new();
        for Checked { alert, identity, mut request } in checked {
            // Every notification of one alert names one pin, made once (an unpinned one
            // is not made again); another alert of the same name and start gets its own.
            let stamped = request.name.clone().unwrap_or_default();
            let (pin, repeat) = {
                let made = locked(&self.alert_pins);
                match made.get(&stamped) {
                    None => (stamped, false),
                    Some(known) if *known == identity => (stamped, true),
                    Some(_) => {
                        let own = format!("{stamped}-{}", short_hash(&identity));
                        let repeat = made.get(&own) == Some(&identity);
                        (own, repeat)
                    }
                }
            };
            request.name = Some(pin.clone());
            let result = if repeat { Err(PinError::Exists(pin.clone())) } else { pins.pin(request) };
            if matches!(result, Ok(_) | Err(PinError::Exists(_))) {
                self.remember_alert_pin(&pin, identity);
            }
            let outcome = self.with_status(&alert, "alertmanager", |status| {
                *status.notifications.get_or_insert(0) += 1;
                match result {
                    Ok(_) => {
                        status.firings += 1;
                        status.fired_at = Some(rfc3339(unix_now_ns()));
                        status.last_pin = Some(pin.clone());
                        eprintln!("ringcap: alert {alert} fired: pinning its window as {pin}");
                        AlertOutcome { alert: alert.clone(), pin, outcome: "pinned", reason: None }
                    }
                    // A repeat of an alert already pinned.
                    Err(PinError::Exists(_)) => {
                        AlertOutcome { alert: alert.clone(), pin, outcome: "exists", reason: None }
                    }
                    Err(error) => {
                        let reason = super::suppressed_reason(&error);
                        status.suppress(reason, error.to_string());
                        AlertOutcome {
                            alert: alert.clone(),
                            pin,
                            outcome: "refused",
                            reason: Some(error.to_string()),
                        }
                    }
                }
            });
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30T09:00:00Z.
    const NOW: u64 = 1_796_029_200_000_000_000;

    fn payload(alerts: &str) -> String {
        format!(
            r#"{{"version":"4","status":"firing","receiver":"ringcap","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","groupKey":"{{}}","alerts":[{alerts}]}}"#
        )
    }

    #[test]
    fn firing_alerts_become_pin_requests() {
        let alert = r#"{"status":"firing","labels":{"alertname":"RstStorm x","ringcap_before":"2m"},"annotations":{"ringcap_filter":"tcp","summary":"rst"},"startsAt":"2026-11-30T08:13:20.5Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"ab"}"#;
        let resolved =
            r#"{"status":"resolved","labels":{"alertname":"Old"},"startsAt":"2026-11-30T08:00:00Z"}"#;
        let checked = check(payload(&format!("{alert},{resolved}")).as_bytes(), NOW).unwrap();
        assert_eq!(checked.len(), 1);
        let request = &checked[0].request;
        assert_eq!(request.name.as_deref(), Some("RstStorm_x-20261130T081320Z"));
        assert_eq!(request.expression, "tcp");
        assert_eq!(request.window.until_ns - request.window.since_ns, 180_000_000_000);
        let trigger = request.trigger.as_ref().unwrap();
        assert_eq!(trigger.source, "alertmanager");
        assert_eq!(trigger.labels["annotation:summary"], "rst");
    }

    /// A client posting ever new alert names cannot grow the triggers' list (nor the
    /// metrics' series) without bound.
    #[test]
    fn alert_names_are_bounded() {
        let (pins, dir) = crate::pins::PinStore::scratch("alert-names");
        let triggers = Triggers::new(&[], Duration::from_secs(1));
        let alerts: Vec<String> = (0..super::super::MAX_ALERT_NAMES + 50)
            .map(|i| format!(r#"{{"status":"firing","labels":{{"alertname":"A{i}"}},"startsAt":"2026-11-30T08:13:20Z"}}"#))
            .collect();
        // The ring is empty: every pin is refused, and counted.
        let outcomes = triggers.receive_alerts(payload(&alerts.join(",")).as_bytes(), &pins).unwrap();
        assert!(outcomes.iter().all(|o| o.outcome == "refused"));
        let listed = triggers.list();
        assert_eq!(listed.len(), super::super::MAX_ALERT_NAMES + 1);
        let other = listed.iter().find(|s| s.name == super::super::OTHER_ALERTS).unwrap();
        assert_eq!(other.notifications, Some(50));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_payloads_are_refused_whole() {
        let ok = r#"{"status":"firing","labels":{"alertname":"A"},"startsAt":"2026-11-30T08:13:20Z"}"#;
        for (body, needle) in [
            ("not json".to_string(), "not an Alertmanager"),
            (payload(ok).replace("\"4\"", "\"3\""), "version"),
            (payload(&format!("{ok},{}", ok.replace("08:13:20Z", "yesterday"))), "startsAt"),
            (payload(&ok.replace("\"A\"}", "\"A\",\"ringcap_filter\":\"port\"}")), "ringcap_filter"),
            (payload(&ok.replace("\"A\"}", "\"A\",\"ringcap_after\":\"100d\"}")), "at most 24h"),
            (
                payload(&ok.replace("\"A\"}", "\"A\",\"ringcap_before\":\"24h\",\"ringcap_after\":\"1s\"}")),
                "add up",
            ),
            (payload(&ok.replace("2026-11-30", "2036-11-30")), "future"),
            (payload(&ok.replace("firing", "burning")), "status"),
            (payload(&vec![ok; MAX_ALERTS + 1].join(",")), "at most"),
        ] {
            let error = check(body.as_bytes(), NOW).err().unwrap_or_default();
            assert!(error.contains(needle), "{needle}: {error}");
        }
    }
}

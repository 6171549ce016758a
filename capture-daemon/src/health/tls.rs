//! TLS handshakes as the API, Prometheus and `ringcap stats` give them: the kernel's
//! counts of ClientHellos, ServerHellos by version, alerts by description, handshakes
//! that failed before their ServerHello and how, and handshake times, by interface and
//! direction.
use capture_common::{tls, Counter};

use super::ExchangeSlot;
use crate::records::TlsHealth;

/// The ServerHello counters by the version label they carry.
pub const VERSIONS: [(Counter, &str); 5] = [
    (Counter::TlsServerHello10, "1.0"),
    (Counter::TlsServerHello11, "1.1"),
    (Counter::TlsServerHello12, "1.2"),
    (Counter::TlsServerHello13, "1.3"),
    (Counter::TlsServerHelloOther, "other"),
];

/// How a handshake failed before its ServerHello, by the counter of each way (the
/// timeout is user space's).
pub const FAILURES: [(Option<Counter>, &str); 4] = [
    (Some(Counter::TlsFailedAlert), "alert"),
    (Some(Counter::TlsFailedReset), "reset"),
    (Some(Counter::TlsFailedFin), "fin"),
    (None, "timeout"),
];

/// The alert labels, in the order the metrics give them: each description counted
/// apart, then "other".
pub fn alert_labels() -> impl Iterator<Item = &'static str> {
    tls::ALERTS.iter().map(|(_, label)| *label).chain(["other"])
}

/// The alerts of `slot` by label (every label, 0 if none), from the kernel's counts
/// `(slot, description, count)`.
pub fn alerts_by_label(alerts: &[(usize, u8, u64)], slot: usize) -> Vec<(&'static str, u64)> {
    alert_labels()
        .map(|label| {
            let count = alerts
                .iter()
                .filter(|(s, description, _)| *s == slot && tls::alert_label(*description) == label)
                .map(|(_, _, count)| count)
                .sum();
            (label, count)
        })
        .collect()
}

/// The TLS handshakes of one slot; `alerts` as [`alerts_by_label`] takes them.
pub fn health(
    interface: &str,
    direction: &str,
    slot: &ExchangeSlot,
    alerts: &[(usize, u8, u64)],
) -> TlsHealth {
    let kernel = &slot.kernel;
    TlsHealth {
        interface: interface.to_string(),
        direction: direction.to_string(),
        client_hellos: kernel.get(Counter::TlsClientHellos),
        server_hellos: VERSIONS
            .iter()
            .map(|(counter, version)| (version.to_string(), kernel.get(*counter)))
            .collect(),
        alerts: alerts_by_label(alerts, slot.slot)
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(label, count)| (label.to_string(), count))
            .collect(),
        failed: FAILURES
            .iter()
            .map(|(counter, how)| (how.to_string(), counter.map_or(slot.unanswered, |c| kernel.get(c))))
            .collect(),
        handshakes: kernel.get(Counter::TlsHandshakes),
        handshake_time: slot.times(),
    }
}

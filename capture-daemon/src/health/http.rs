//! HTTP/1.x as the API, Prometheus and `ringcap stats` give it: the kernel's counts of
//! requests and of responses by status class, response times, and requests without a
//! response, by interface and direction.
use capture_common::Counter;

use super::ExchangeSlot;
use crate::records::HttpHealth;

/// The response counters by the status-class label they carry.
pub const CLASSES: [(Counter, &str); 6] = [
    (Counter::Http1xx, "1xx"),
    (Counter::Http2xx, "2xx"),
    (Counter::Http3xx, "3xx"),
    (Counter::Http4xx, "4xx"),
    (Counter::Http5xx, "5xx"),
    (Counter::HttpOtherStatus, "other"),
];

/// The HTTP exchanges of one slot.
pub fn health(interface: &str, direction: &str, slot: &ExchangeSlot) -> HttpHealth {
    let kernel = &slot.kernel;
    HttpHealth {
        interface: interface.to_string(),
        direction: direction.to_string(),
        requests: kernel.get(Counter::HttpRequests),
        responses: CLASSES.iter().map(|(counter, class)| (class.to_string(), kernel.get(*counter))).collect(),
        answered: kernel.get(Counter::HttpAnswered),
        unanswered: slot.unanswered,
        response_time: slot.times(),
    }
}

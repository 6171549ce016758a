//! TCP health and counters in user space, as the API, the metrics and the statistics
//! snapshots read them: the live counters a session publishes every second, with the last
//! minute of history; the slots' labels; the flow table's sweep ([`sweeper`]) and its
//! connections ([`flows`]); and RTT
//! percentiles and the analysis events' names ([`analysis`]).
pub mod analysis;
pub mod dns;
pub mod flows;
pub mod http;
pub mod icmp;
pub mod sweeper;
pub mod tls;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capture_common::tcp::RTT_BUCKETS;
use capture_common::{exchange, MAX_INTERFACES};

use crate::capture::ReaderCounters;
use crate::kernel::{
    family_name, rtt_total, Direction, ExchangeTimes, IcmpCounts, KernelCounters, RttBuckets, SlotRttBuckets,
    Unanswered,
};
use crate::records::{FlowTable, StatsSnapshot, XskStatistics, STATS_SNAPSHOT_VERSION};
use analysis::RTT_KINDS;

/// Locks one of the live counters' mutexes. Each holds plain values that are replaced
/// whole, so a panic while one was held (in an API request, say) leaves nothing
/// half-written: the lock is taken anyway and capture goes on.
pub fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counters of a running session, readable from other threads (API, metrics): the
/// reader's own atomics, and the kernel's per-CPU sums refreshed every second.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub reader: Arc<ReaderCounters>,
    pub kernel: Mutex<KernelCounters>,
    /// The kernel's RTT histograms summed over slots (empty until the first refresh)...
    pub rtt: Mutex<Option<Box<RttBuckets>>>,
    /// ...and by slot.
    pub rtt_by_slot: Mutex<Option<Box<SlotRttBuckets>>>,
    /// The kernel's ICMP and ICMPv6 counts.
    pub icmp: Mutex<IcmpCounts>,
    /// The kernel's answer-time histograms of DNS, TLS and HTTP by slot (empty until the
    /// first refresh), and the requests found unanswered after their timeout.
    pub exchange_times: Mutex<Option<Box<ExchangeTimes>>>,
    pub unanswered: Mutex<Box<Unanswered>>,
    /// The kernel's TLS alert counts: (slot, description, count).
    pub tls_alerts: Mutex<Vec<(usize, u8, u64)>>,
    /// The interface and direction of each slot in use.
    pub slots: Mutex<Vec<SlotLabel>>,
    /// Each interface given to -i, and whether it is still there (see `capture::links`).
    pub interfaces_up: Mutex<Vec<(String, bool)>>,
    /// The kernel's loss counters of the AF_XDP sockets, summed.
    pub xsk: Mutex<XskStatistics>,
    /// What the last sweep of the TCP flow table found...
    pub flows: Mutex<FlowTable>,
    /// ...and its TCP connections.
    pub flow_list: Mutex<Arc<flows::FlowList>>,
    /// The kernel counters and RTT buckets of the last minute, one entry a second,
    /// oldest first: what "the last minute" is measured against.
    pub history: Mutex<VecDeque<(Instant, KernelCounters, Box<RttBuckets>)>>,
}

/// The answer-time histograms a statistics snapshot keeps beside the RTT ones, summed
/// over interfaces and directions: exchange kind and key.
pub const ANSWER_TIMES: [(u8, &str); 3] = [
    (exchange::KIND_DNS, "dns_response"),
    (exchange::KIND_TLS, "tls_handshake"),
    (exchange::KIND_HTTP, "http_response"),
];

/// What the daemon knows of one slot's exchanges of one kind (DNS, TLS or HTTP).
pub struct ExchangeSlot<'a> {
    pub slot: usize,
    /// The slot's kernel counters alone.
    pub kernel: KernelCounters,
    /// The answer times (empty until the first refresh).
    pub times: Option<&'a [u64; RTT_BUCKETS as usize]>,
    /// Requests without an answer after their timeout.
    pub unanswered: u64,
}

impl ExchangeSlot<'_> {
    /// The answer times' percentiles.
    pub fn times(&self) -> analysis::RttSummary {
        self.times.map(analysis::rtt_summary).unwrap_or_default()
    }
}

/// What one slot of the kernel's counters and histograms stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotLabel {
    pub slot: usize,
    pub interface: String,
    /// "in" or "out".
    pub direction: &'static str,
}

/// The slots of a capture of `interfaces` in `direction`: each of the first
/// [`MAX_INTERFACES`] has its own, the rest share "other".
pub fn slot_labels(interfaces: &[String], direction: Direction) -> Vec<SlotLabel> {
    let mut names: Vec<&str> = interfaces.iter().take(MAX_INTERFACES as usize).map(String::as_str).collect();
    if interfaces.len() > MAX_INTERFACES as usize {
        names.push("other");
    }
    let mut labels = Vec::new();
    for (index, name) in names.into_iter().enumerate() {
        for (egress, label) in [(false, "in"), (true, "out")] {
            let wanted = match direction {
                Direction::In => !egress,
                Direction::Out => egress,
                Direction::Both => true,
            };
            if wanted {
                let slot =
                    if name == "other" { MAX_INTERFACES as usize } else { index } * 2 + usize::from(egress);
                labels.push(SlotLabel { slot, interface: name.to_string(), direction: label });
            }
        }
    }
    labels
}

/// Seconds of history [`LiveCounters::history`] keeps.
const HISTORY_SECONDS: usize = 61;

impl LiveCounters {
    /// Publishes the kernel's current counters and histograms.
    pub(crate) fn publish(&self, kernel: KernelCounters, by_slot: Box<SlotRttBuckets>) {
        let rtt = rtt_total(&by_slot);
        *locked(&self.kernel) = kernel;
        *locked(&self.rtt) = Some(rtt.clone());
        *locked(&self.rtt_by_slot) = Some(by_slot);
        let mut history = locked(&self.history);
        if history.len() == HISTORY_SECONDS {
            history.pop_front();
        }
        history.push_back((Instant::now(), kernel, rtt));
    }

    /// What each slot in use knows of the exchanges of `kind` (`capture_common::exchange`),
    /// made into a health record by `health`.
    fn exchange_health<T>(&self, kind: u8, health: impl Fn(&SlotLabel, &ExchangeSlot) -> T) -> Vec<T> {
        let kernel = *locked(&self.kernel);
        let times = locked(&self.exchange_times).clone();
        let unanswered = locked(&self.unanswered)[usize::from(kind)];
        locked(&self.slots)
            .iter()
            .map(|label| {
                let slot = ExchangeSlot {
                    slot: label.slot,
                    kernel: kernel.only(label.slot),
                    times: times.as_ref().map(|t| &t[usize::from(kind)][label.slot]),
                    unanswered: unanswered.get(label.slot).copied().unwrap_or(0),
                };
                health(label, &slot)
            })
            .collect()
    }

    /// The DNS health of each slot in use.
    pub fn dns_health(&self) -> Vec<crate::records::DnsHealth> {
        self.exchange_health(exchange::KIND_DNS, |label, slot| {
            dns::health(&label.interface, label.direction, slot)
        })
    }

    /// The TLS handshakes of each slot in use.
    pub fn tls_health(&self) -> Vec<crate::records::TlsHealth> {
        let alerts = locked(&self.tls_alerts).clone();
        self.exchange_health(exchange::KIND_TLS, |label, slot| {
            tls::health(&label.interface, label.direction, slot, &alerts)
        })
    }

    /// The HTTP exchanges of each slot in use.
    pub fn http_health(&self) -> Vec<crate::records::HttpHealth> {
        self.exchange_health(exchange::KIND_HTTP, |label, slot| {
            http::health(&label.interface, label.direction, slot)
        })
    }

    /// The ICMP health of each slot in use.
    pub fn icmp_health(&self) -> Vec<crate::records::IcmpHealth> {
        let counts = locked(&self.icmp).clone();
        let kernel = *locked(&self.kernel);
        locked(&self.slots)
            .iter()
            .map(|label| crate::records::IcmpHealth {
                interface: label.interface.clone(),
                direction: label.direction.to_string(),
                messages: counts
                    .messages
                    .iter()
                    .filter(|m| m.slot == label.slot)
                    .map(|m| crate::records::IcmpMessages {
                        family: family_name(m.family).to_string(),
                        kind: m.kind,
                        code: m.code,
                        and_higher: u32::from(m.code) == capture_common::icmp::CODES - 1,
                        count: m.count,
                    })
                    .collect(),
                path_mtu_messages: kernel.only(label.slot).get(capture_common::Counter::IcmpPathMtu),
                path_mtu: counts
                    .path_mtu
                    .iter()
                    .filter(|(key, _)| usize::from(key.slot) == label.slot)
                    .map(|(key, count)| crate::records::PathMtu {
                        family: family_name(u32::from(key.family)).to_string(),
                        mtu: key.mtu,
                        count: *count,
                    })
                    .collect(),
            })
            .collect()
    }

    /// The counters and histograms of about the last minute (since the oldest entry of
    /// the history) and how long that is; `None` before the first publication.
    pub fn last_minute(&self) -> Option<(Duration, KernelCounters, Box<RttBuckets>)> {
        let history = locked(&self.history);
        let (first, last) = (history.front()?, history.back()?);
        let mut rtt = last.2.clone();
        for (kind, earlier) in rtt.iter_mut().zip(first.2.iter()) {
            for (bucket, before) in kind.iter_mut().zip(earlier) {
                *bucket = bucket.saturating_sub(*before);
            }
        }
        Some((last.0.duration_since(first.0), last.1.since(&first.1), rtt))
    }

    /// A statistics snapshot: kernel counters and non-empty RTT buckets (the writer adds
    /// its own counters).
    pub fn snapshot(&self, started_ns: u64) -> StatsSnapshot {
        let kernel = *locked(&self.kernel);
        let rtt = locked(&self.rtt).clone();
        let (mut icmp, mut path_mtu) = (BTreeMap::new(), BTreeMap::new());
        let counts = locked(&self.icmp).clone();
        for m in &counts.messages {
            let or_higher = if u32::from(m.code) == capture_common::icmp::CODES - 1 { "+" } else { "" };
            let key = format!("{} {} {}{or_higher}", family_name(m.family), m.kind, m.code);
            *icmp.entry(key).or_default() += m.count;
        }
        for (key, count) in &counts.path_mtu {
            *path_mtu.entry(format!("{} {}", family_name(u32::from(key.family)), key.mtu)).or_default() +=
                count;
        }
        let sparse = |kind: usize| -> Vec<(usize, u64)> {
            rtt.as_ref().map_or_else(Vec::new, |b| {
                b[kind].iter().copied().enumerate().filter(|(_, c)| *c > 0).collect()
            })
        };
        let times = locked(&self.exchange_times).clone();
        let mut rtt: BTreeMap<String, Vec<(usize, u64)>> =
            RTT_KINDS.iter().map(|kind| (kind.key.to_string(), sparse(kind.index))).collect();
        for (kind, key) in ANSWER_TIMES {
            let summed = times.as_ref().map_or([0; RTT_BUCKETS as usize], |t| {
                let mut summed = [0; RTT_BUCKETS as usize];
                for slot in &t[usize::from(kind)] {
                    summed.iter_mut().zip(slot).for_each(|(sum, count)| *sum += count);
                }
                summed
            });
            rtt.insert(key.to_string(), summed.into_iter().enumerate().filter(|(_, c)| *c > 0).collect());
        }
        let mut tls_alerts = BTreeMap::new();
        for (_, description, count) in locked(&self.tls_alerts).iter() {
            *tls_alerts.entry(capture_common::tls::alert_label(*description).to_string()).or_default() +=
                count;
        }
        StatsSnapshot {
            version: STATS_SNAPSHOT_VERSION,
            started_ns,
            time_ns: crate::timefmt::unix_now_ns(),
            kernel: capture_common::Counter::ALL
                .iter()
                .map(|c| (c.name().to_string(), kernel.get(*c)))
                .collect(),
            reader: self.reader.totals(),
            xsk: *locked(&self.xsk),
            flows: *locked(&self.flows),
            rtt,
            icmp,
            path_mtu,
            tls_alerts,
            storage: None,
        }
    }
}

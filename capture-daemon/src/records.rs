//! The records ringcap writes for itself and reads back, each one a type defined once:
//! a ring file's statistics snapshots ([`StatsSnapshot`], in `STEM.snapshots.jsonl` and
//! `STEM.stats.json`) and a pin's manifest ([`PinManifest`], `manifest.json`, locally and
//! in the archive). Both carry a version; what earlier versions wrote still reads. Plain
//! data only: the modules that fill and read them depend on this one, never the reverse.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version of the statistics snapshots written now. Snapshots written before versions
/// (no `version` field) read as version 1: the same fields.
pub const STATS_SNAPSHOT_VERSION: u32 = 2;

/// The daemon's counters and TCP histograms at one moment, cumulative since `started_ns`:
/// what `pull --with-stats` subtracts to give a window's statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    #[serde(default = "first_stats_version")]
    pub version: u32,
    /// When the daemon started (snapshots of one run share it), ns of Unix time.
    pub started_ns: u64,
    /// When the snapshot was taken, ns of Unix time.
    pub time_ns: u64,
    /// The kernel's counters by name (`capture_common::Counter::name`).
    #[serde(default)]
    pub kernel: BTreeMap<String, u64>,
    #[serde(default)]
    pub reader: ReaderTotals,
    #[serde(default)]
    pub xsk: XskStatistics,
    #[serde(default)]
    pub flows: FlowTable,
    /// The RTT histograms by kind (`health::analysis::RTT_KINDS`), and the answer times of
    /// DNS, TLS and HTTP by `health::ANSWER_TIMES` key (absent before ringcap timed them):
    /// `[bucket, count]` pairs of the non-empty buckets.
    #[serde(default)]
    pub rtt: BTreeMap<String, Vec<(usize, u64)>>,
    /// ICMP and ICMPv6 messages by `FAMILY TYPE CODE` ("ipv4 3 4"), and path-MTU messages
    /// by `FAMILY MTU` ("ipv6 1280"), summed over interfaces and directions, those seen
    /// (absent from snapshots written before ringcap counted ICMP).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub icmp: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub path_mtu: BTreeMap<String, u64>,
    /// TLS alerts in the clear by description (`capture_common::tls::alert_label`), those
    /// seen.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tls_alerts: BTreeMap<String, u64>,
    /// What the ring writer did (absent where no ring writer was asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageTotals>,
}

fn first_stats_version() -> u32 {
    1
}

impl StatsSnapshot {
    /// The dense histogram of RTT kind `key`, `buckets` long (buckets beyond are ignored).
    pub fn rtt_buckets(&self, key: &str, buckets: usize) -> Vec<u64> {
        let mut dense = vec![0u64; buckets];
        for &(bucket, count) in self.rtt.get(key).into_iter().flatten() {
            if let Some(slot) = dense.get_mut(bucket) {
                *slot = count;
            }
        }
        dense
    }
}

/// The reader's counters (see `capture::ReaderCounters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReaderTotals {
    pub packets: u64,
    pub queue_dropped: u64,
    pub malformed: u64,
    pub reorder_window_exceeded: u64,
    pub unstamped: u64,
}

/// The ring writer's counters (see `storage::ring::StorageCounters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageTotals {
    pub packets_written: u64,
    pub packets_lost: u64,
    pub frames_written: u64,
    pub bytes_written: u64,
    pub files_created: u64,
    pub files_removed: u64,
    pub files_removed_for_space: u64,
    pub disk_full_events: u64,
    pub write_errors: u64,
    pub index_errors: u64,
    pub files_lost: u64,
}

/// The kernel's loss counters of AF_XDP sockets (`XDP_STATISTICS`), summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct XskStatistics {
    /// Frames dropped for want of a free frame (fill ring empty) or because they did not fit.
    pub rx_dropped: u64,
    /// Frames dropped because the receive ring was full (the reader fell behind).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty (in copy mode also in `rx_dropped`).
    pub fill_ring_empty: u64,
    /// Descriptors the kernel rejected (should stay 0).
    pub rx_invalid_descs: u64,
}

impl XskStatistics {
    /// Frames lost in the sockets.
    pub fn dropped(&self) -> u64 {
        self.rx_dropped + self.rx_ring_full
    }
}

impl std::ops::AddAssign for XskStatistics {
    fn add_assign(&mut self, other: XskStatistics) {
        self.rx_dropped += other.rx_dropped;
        self.rx_ring_full += other.rx_ring_full;
        self.fill_ring_empty += other.fill_ring_empty;
        self.rx_invalid_descs += other.rx_invalid_descs;
    }
}

/// The TCP flow table as the periodic sweep sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlowTable {
    /// Flows in the table at the last sweep.
    pub live: u64,
    /// Flows the table holds at most (`--tcp-flows`).
    pub capacity: u64,
    /// Connection attempts whose SYN got no SYN-ACK within `--syn-timeout`.
    pub syn_unanswered: u64,
    /// Flows the table evicted to make room (inserted minus live).
    pub evicted: u64,
}

/// The manifest format of pins written now: 2 keeps files under a generation in the
/// archive. Format 1 (no generation) still reads.
pub const PIN_FORMAT: &str = "ringcap-pin/2";

/// What a pin holds, where it came from and how to check it: written when the pin is
/// made, uploaded last (a manifest in the archive says the pin is whole).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PinManifest {
    /// `ringcap-pin/N`.
    pub format: String,
    pub name: String,
    /// The archive keeps the pin's files under it, so a later pin of this name never
    /// mixes with this one's objects (absent in format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    /// The gateway the pin was made on (the archive's key for it).
    pub host: String,
    pub interfaces: Vec<String>,
    /// When the pin was made (RFC 3339).
    pub created: String,
    pub window: PinWindow,
    /// The filter expression the pin was made with (empty: every packet).
    pub filter: String,
    pub packets: u64,
    pub first_packet: String,
    pub last_packet: String,
    pub first_packet_ns: u64,
    pub last_packet_ns: u64,
    /// The name of the pin's data file.
    pub data: String,
    /// The pin's files (data, index, statistics), in that order, with their digests.
    pub files: Vec<PinFile>,
    /// What reading the window for the pin met.
    pub pull: PinPull,
    /// Why the pin was made, when a trigger rule or an alert made it (its statistics file
    /// holds the counters' timeline over the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<PinTrigger>,
}

/// One comparison of a trigger rule as evaluated: what a firing reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reading {
    /// The comparison's left side as written, and its value (absent: no data yet).
    pub expression: String,
    pub value: Option<f64>,
    /// The right side as written, and its value.
    pub threshold: String,
    pub threshold_value: Option<f64>,
}

/// `EXPRESSION = VALUE (vs THRESHOLD)`, as stderr and `ringcap triggers` say it.
impl std::fmt::Display for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.value {
            Some(value) => write!(f, "{} = {value:.6} (vs {})", self.expression, self.threshold),
            None => write!(f, "{} = no data (vs {})", self.expression, self.threshold),
        }
    }
}

/// One point of a window's counters timeline: when it ends, and the kernel counters that
/// moved since the point before, by how much.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub time: String,
    pub counters: std::collections::BTreeMap<String, u64>,
}

/// What fired a pin: a rule of the daemon's own, or an alert posted to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PinTrigger {
    /// `rule` or `alertmanager`.
    pub source: String,
    /// The rule's name, or the alert's `alertname`.
    pub name: String,
    /// The rule as written (empty for an alert).
    pub rule: String,
    /// When it fired: RFC 3339 and ns of Unix time.
    pub fired_at: String,
    pub fired_at_ns: u64,
    /// The interface and direction the condition held on (empty: the whole capture).
    pub group: Vec<(String, String)>,
    /// The values of the rule's comparisons when it fired.
    pub readings: Vec<Reading>,
    /// The alert's labels and annotations.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Where an archived pin went, written beside its manifest once the archive holds it whole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    /// `s3://BUCKET/KEY/`.
    pub location: String,
    /// When the archive was found to hold it (RFC 3339).
    pub archived_at: String,
}

/// The window a pin was asked for: RFC 3339 and ns of Unix time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinWindow {
    pub since: String,
    pub until: String,
    pub since_ns: u64,
    pub until_ns: u64,
}

/// One file of a pin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinFile {
    pub name: String,
    pub bytes: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// The pull that copied a pin's window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PinPull {
    pub files_read: u64,
    pub frames_read: u64,
    pub frames_skipped: u64,
    pub frames_damaged: u64,
    pub files_unreadable: u64,
    pub warnings: Vec<String>,
}

impl PinManifest {
    /// The generation the pin's files are archived under: the manifest's, or for a pin
    /// made before generations, the start of its data file's SHA-256. A generation that
    /// is not plain letters and digits (a hostile manifest) is treated as absent.
    pub fn archive_generation(&self) -> String {
        match self
            .generation
            .as_deref()
            .filter(|g| !g.is_empty() && g.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            Some(generation) => generation.to_string(),
            None => {
                let sha = self.files.first().map_or("0", |f| f.sha256.as_str());
                let sha = sha.get(..sha.len().min(16)).unwrap_or("0");
                format!("sha-{sha}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_written_before_versions_reads_as_version_1() {
        let line = r#"{"started_ns":5,"time_ns":9,"kernel":{"seen":3},"reader":{"packets":3,"queue_dropped":0,"malformed":0,"reorder_window_exceeded":0,"unstamped":0},"xsk":{"rx_dropped":0,"rx_ring_full":0,"fill_ring_empty":0,"rx_invalid_descs":0},"flows":{"live":1,"capacity":8,"syn_unanswered":0,"evicted":0},"rtt":{"handshake":[[4,2]]},"storage":{"packets_written":3}}"#;
        let snapshot: StatsSnapshot = serde_json::from_str(line).unwrap();
        assert_eq!(snapshot.version, 1);
        assert_eq!((snapshot.started_ns, snapshot.time_ns, snapshot.kernel["seen"]), (5, 9, 3));
        assert_eq!(snapshot.rtt_buckets("handshake", 6), vec![0, 0, 0, 0, 2, 0]);
        assert_eq!(snapshot.storage.unwrap().packets_written, 3);
        assert_eq!(snapshot.flows.capacity, 8);
    }

    #[test]
    fn a_snapshot_round_trips_with_its_version() {
        let snapshot = StatsSnapshot {
            version: STATS_SNAPSHOT_VERSION,
            started_ns: 1,
            time_ns: 2,
            ..Default::default()
        };
        let text = serde_json::to_string(&snapshot).unwrap();
        assert!(text.starts_with(r#"{"version":2,"#), "{text}");
        assert_eq!(serde_json::from_str::<StatsSnapshot>(&text).unwrap(), snapshot);
    }

    /// A manifest as the first pins wrote it: no generation.
    const FORMAT_1: &str = r#"{"format":"ringcap-pin/1","name":"old","host":"gw","interfaces":["eth0"],
        "created":"2026-11-30T10:00:00.000000000Z",
        "window":{"since":"a","until":"b","since_ns":1,"until_ns":2},"filter":"","packets":7,
        "first_packet":"c","last_packet":"d","first_packet_ns":3,"last_packet_ns":4,
        "data":"old.pcap.zst","files":[{"name":"old.pcap.zst","bytes":10,"sha256":"0123456789abcdef0123"}],
        "pull":{"files_read":1,"frames_read":2,"frames_skipped":0,"frames_damaged":0,"files_unreadable":0,"warnings":[]}}"#;

    #[test]
    fn a_format_1_manifest_reads_and_is_archived_under_its_digest() {
        let manifest: PinManifest = serde_json::from_str(FORMAT_1).unwrap();
        assert_eq!(
            (manifest.name.as_str(), manifest.packets, manifest.generation.as_deref()),
            ("old", 7, None)
        );
        assert_eq!(manifest.archive_generation(), "sha-0123456789abcdef");
    }

    #[test]
    fn a_generation_that_is_not_alphanumeric_is_not_used_as_a_key() {
        let mut manifest: PinManifest = serde_json::from_str(FORMAT_1).unwrap();
        manifest.generation = Some("../../etc".into());
        assert_eq!(manifest.archive_generation(), "sha-0123456789abcdef");
        manifest.generation = Some("1796000000000000000".into());
        assert_eq!(manifest.archive_generation(), "1796000000000000000");
    }

    #[test]
    fn what_is_not_a_manifest_is_refused() {
        assert!(serde_json::from_str::<PinManifest>("{ not a manifest").is_err());
        assert!(serde_json::from_str::<PinManifest>(r#"{"format":"ringcap-pin/2"}"#).is_err());
    }
}

/// ICMP and ICMPv6 health of one interface and direction, as `/v1/stats` gives it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IcmpHealth {
    pub interface: String,
    /// "in" or "out".
    pub direction: String,
    /// Messages by family, type and code (those seen).
    pub messages: Vec<IcmpMessages>,
    /// Fragmentation-needed and packet-too-big messages (path MTU discovery)...
    pub path_mtu_messages: u64,
    /// ...by the MTU they announce.
    pub path_mtu: Vec<PathMtu>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IcmpMessages {
    /// "ipv4" (ICMP) or "ipv6" (ICMPv6).
    pub family: String,
    #[serde(rename = "type")]
    pub kind: u8,
    pub code: u8,
    /// The count holds this code and every higher one (the kernel counts codes from 31
    /// up together; no message in use has one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub and_higher: bool,
    pub count: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PathMtu {
    pub family: String,
    pub mtu: u32,
    pub count: u64,
}

/// TLS handshakes of one interface and direction, as `/v1/stats` gives them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TlsHealth {
    pub interface: String,
    /// "in" or "out".
    pub direction: String,
    pub client_hellos: u64,
    /// ServerHellos by the version the server chose: 1.0, 1.1, 1.2, 1.3, other.
    pub server_hellos: BTreeMap<String, u64>,
    /// Alerts in the clear by description (those seen).
    pub alerts: BTreeMap<String, u64>,
    /// Handshakes that ended before their ServerHello, by how: alert, reset, fin, and
    /// timeout (nothing within `--tls-timeout`).
    pub failed: BTreeMap<String, u64>,
    /// ServerHellos matched to their ClientHello (where the ServerHellos pass), and the
    /// time between them.
    pub handshakes: u64,
    pub handshake_time: crate::health::analysis::RttSummary,
}

/// HTTP/1.x exchanges of one interface and direction, as `/v1/stats` gives them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpHealth {
    pub interface: String,
    /// "in" or "out".
    pub direction: String,
    pub requests: u64,
    /// Responses by status class: 1xx..5xx, other.
    pub responses: BTreeMap<String, u64>,
    /// Requests with a final response (where the responses pass), and the time from
    /// each request to its response...
    pub answered: u64,
    pub response_time: crate::health::analysis::RttSummary,
    /// ...and requests without one after `--http-timeout` (where the requests pass).
    pub unanswered: u64,
}

/// DNS health of one interface and direction, as `/v1/stats` gives it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsHealth {
    pub interface: String,
    /// "in" or "out".
    pub direction: String,
    pub queries: u64,
    /// Responses by rcode: noerror, nxdomain, servfail, refused, other.
    pub responses: BTreeMap<String, u64>,
    /// Responses with TC set.
    pub truncated: u64,
    /// Queries sent again before their response (counted where the queries pass)...
    pub retransmissions: u64,
    /// ...queries without a response after `--dns-timeout`...
    pub unanswered: u64,
    /// ...responses to no query seen...
    pub unmatched: u64,
    /// ...and the time from each answered query to its response (where the responses pass).
    pub response_time: crate::health::analysis::RttSummary,
}

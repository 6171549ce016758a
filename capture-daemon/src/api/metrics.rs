//! `/metrics`: the daemon's counters and RTT histograms, exposed by prometheus-client
//! (the OpenMetrics text format; Prometheus scrapes it as it is) from a snapshot taken
//! for each scrape.
use capture_common::tcp::RTT_BUCKETS;
use capture_common::{exchange, Counter};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::json::get;
use super::Sources;
use crate::health::analysis::{count_at_most, prometheus_bounds_ns, RTT_KINDS, TCP_ANALYSIS};
use crate::health::{locked, SlotLabel};

/// The content type of [`metrics_text`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn with(base: &Labels, key: &str, value: &str) -> Labels {
    let mut all = base.clone();
    all.push((key.to_string(), value.to_string()));
    all
}

/// One metric family of a scrape (what trigger rules read too).
#[derive(Debug)]
pub struct Family {
    /// Without `_total` for counters: the encoder adds it to each sample.
    pub name: String,
    pub help: String,
    pub series: Series,
}

/// One histogram series: labels, sum, count, and per-bucket counts by upper bound (+Inf
/// as `f64::MAX`).
pub type HistogramSeries = (Labels, f64, u64, Vec<(f64, u64)>);

#[derive(Debug)]
pub enum Series {
    Counters(Vec<(Labels, u64)>),
    /// One gauge without labels.
    Gauge(u64),
    /// Gauges by label set.
    Gauges(Vec<(Labels, u64)>),
    Histograms(Vec<HistogramSeries>),
}

/// A scrape's snapshot, as a collector of constant metrics.
#[derive(Debug)]
struct ScrapeFamilies(Vec<Family>);

impl Collector for ScrapeFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let kind = match family.series {
                Series::Counters(_) => MetricType::Counter,
                Series::Gauge(_) | Series::Gauges(_) => MetricType::Gauge,
                Series::Histograms(_) => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(&family.name, &family.help, None, kind)?;
            match &family.series {
                // One series without labels: no label set, not even `{}`.
                Series::Gauge(value) => ConstGauge::new(*value as i64).encode(metric)?,
                Series::Gauges(series) => {
                    for (labels, value) in series {
                        ConstGauge::new(*value as i64).encode(metric.encode_family(labels)?)?;
                    }
                }
                Series::Counters(series) if series.len() == 1 && series[0].0.is_empty() => {
                    ConstCounter::new(series[0].1).encode(metric)?;
                }
                Series::Counters(series) => {
                    for (labels, value) in series {
                        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
                    }
                }
                Series::Histograms(series) => {
                    for (labels, sum, count, buckets) in series {
                        metric
                            .encode_family(labels)?
                            .encode_histogram::<Labels>(*sum, *count, buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The OpenMetrics text of the daemon's counters and histograms now.
pub fn metrics_text(sources: &Sources) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ScrapeFamilies(families(sources))));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String");
    out
}

/// The per-flow cut's reasons, as labelled.
const CUT_REASONS: [(u32, &str); 3] = [
    (capture_common::cut::CUT_FLOW_BYTES, "flow_bytes"),
    (capture_common::cut::CUT_FLOW_PACKETS, "flow_packets"),
    (capture_common::cut::CUT_ENCRYPTED_DATA, "encrypted"),
];

/// A counter family (named with `_total`, which the encoder adds back to each sample).
/// The answer-time histograms: kind, name, the counter of their sum, help.
const ANSWER_TIMES: [(u8, &str, Counter, &str); 3] = [
    (
        exchange::KIND_DNS,
        "ringcap_dns_response_time_seconds",
        Counter::DnsResponseTimeNs,
        "DNS response time, from a query to its response (matched by conversation and ID), where the responses pass.",
    ),
    (
        exchange::KIND_TLS,
        "ringcap_tls_handshake_time_seconds",
        Counter::TlsHandshakeTimeNs,
        "TLS handshake time, from a ClientHello to its ServerHello (on the same connection), where the ServerHellos pass.",
    ),
    (
        exchange::KIND_HTTP,
        "ringcap_http_response_time_seconds",
        Counter::HttpResponseTimeNs,
        "HTTP/1.x response time, from the start of a request to the start of its final response (on the same connection), where the responses pass.",
    ),
];

fn counters(name: &str, help: &str, series: &[(Labels, u64)]) -> Family {
    let name = name.strip_suffix("_total").expect("counter names end in _total").to_string();
    Family { name, help: help.to_string(), series: Series::Counters(series.to_vec()) }
}

/// A histogram of the RTT buckets' scheme in Prometheus' seconds: its total, and the
/// count of each bucket (the encoder adds them up), +Inf last.
fn seconds_buckets(histogram: &[u64; RTT_BUCKETS as usize]) -> (u64, Vec<(f64, u64)>) {
    let total: u64 = histogram.iter().sum();
    let mut below = 0;
    let mut counts: Vec<(f64, u64)> = prometheus_bounds_ns()
        .map(|bound| {
            let at_most = count_at_most(histogram, bound);
            let count = at_most - below;
            below = at_most;
            (bound as f64 / 1e9, count)
        })
        .collect();
    counts.push((f64::MAX, total - below));
    (total, counts)
}

/// The families of one scrape: counters and RTT histograms, fixed label sets.
pub fn families(sources: &Sources) -> Vec<Family> {
    let kernel = *locked(&sources.live.kernel);
    let flows = *locked(&sources.live.flows);
    let xsk = *locked(&sources.live.xsk);
    let reader = &sources.live.reader;
    let s = &sources.storage;
    let mut out = Vec::new();
    let mut family =
        |name: &str, help: &str, series: &[(Labels, u64)]| out.push(counters(name, help, series));
    family(
        "ringcap_packets_seen_total",
        "Packets the kernel programs ran on.",
        &[(Vec::new(), kernel.get(Counter::Seen))],
    );
    family(
        "ringcap_packets_captured_total",
        "Packets handed to the writer.",
        &[(Vec::new(), get(&reader.packets))],
    );
    family(
        "ringcap_packets_dropped_total",
        "Packets lost by the capture path, by reason.",
        &[
            (labels(&[("reason", "ring_full")]), kernel.get(Counter::RingFull)),
            (labels(&[("reason", "copy_failed")]), kernel.get(Counter::CopyFailed)),
            (labels(&[("reason", "queue_full")]), get(&reader.queue_dropped)),
            (labels(&[("reason", "write_error")]), get(&s.packets_lost)),
            (labels(&[("reason", "xsk_no_socket")]), kernel.get(Counter::XskNoSocket)),
            (labels(&[("reason", "xsk_no_free_frame")]), xsk.rx_dropped),
            (labels(&[("reason", "xsk_ring_full")]), xsk.rx_ring_full),
        ],
    );
    family(
        "ringcap_packets_not_selected_total",
        "Packets left out on purpose, by reason.",
        &[
            (labels(&[("reason", "filter")]), kernel.get(Counter::Filtered)),
            (labels(&[("reason", "sampling")]), kernel.get(Counter::SampledOut)),
            (labels(&[("reason", "rate_limit")]), kernel.get(Counter::RateLimited)),
        ],
    );
    let cut_reasons = |pick: fn((Counter, Counter)) -> Counter| -> Vec<(Labels, u64)> {
        CUT_REASONS
            .iter()
            .map(|(reason, name)| (labels(&[("reason", name)]), kernel.get(pick(Counter::cut(*reason)))))
            .collect()
    };
    family(
        "ringcap_packets_cut_total",
        "Packets stored with their headers only by the per-flow cut (--flow-bytes, --flow-packets, --cut-encrypted), by reason.",
        &cut_reasons(|(packets, _)| packets),
    );
    family(
        "ringcap_packet_bytes_cut_total",
        "Packet bytes the per-flow cut did not store, by reason.",
        &cut_reasons(|(_, bytes)| bytes),
    );
    // TCP health by interface and direction: a fixed set of series per slot in use.
    let slots = locked(&sources.live.slots).clone();
    let slot_labels =
        |slot: &SlotLabel| labels(&[("interface", &slot.interface), ("direction", slot.direction)]);
    let per_slot = |series: &dyn Fn(&Labels) -> Vec<(Labels, Counter)>| -> Vec<(Labels, u64)> {
        slots
            .iter()
            .flat_map(|slot| {
                let kernel = kernel.only(slot.slot);
                series(&slot_labels(slot))
                    .into_iter()
                    .map(move |(labels, counter)| (labels, kernel.get(counter)))
            })
            .collect()
    };
    let flags = per_slot(&|prefix| {
        [
            ("syn", Counter::TcpSyn),
            ("syn_ack", Counter::TcpSynAck),
            ("fin", Counter::TcpFin),
            ("rst", Counter::TcpRst),
            ("ece", Counter::TcpEce),
            ("cwr", Counter::TcpCwr),
        ]
        .into_iter()
        .map(|(flag, counter)| (with(prefix, "flag", flag), counter))
        .collect()
    });
    let analysis = per_slot(&|prefix| {
        TCP_ANALYSIS.iter().map(|(counter, event)| (with(prefix, "event", event), *counter)).collect()
    });
    let handshakes = per_slot(&|prefix| vec![(prefix.clone(), Counter::TcpHandshakes)]);
    let wire_segments = per_slot(&|prefix| vec![(prefix.clone(), Counter::TcpSegments)]);
    let payload_bytes = per_slot(&|prefix| vec![(prefix.clone(), Counter::TcpPayloadBytes)]);
    let retransmitted_segments =
        per_slot(&|prefix| vec![(prefix.clone(), Counter::TcpRetransmittedSegments)]);
    let syn_retransmissions = per_slot(&|prefix| vec![(prefix.clone(), Counter::TcpSynRetransmission)]);
    let refused = per_slot(&|prefix| vec![(prefix.clone(), Counter::TcpSynRefused)]);
    for (name, help, series) in [
        ("ringcap_tcp_segments_total", "TCP segments seen (selected or not), by flag.", &flags),
        (
            "ringcap_tcp_wire_segments_total",
            "TCP segments on the wire (a GSO packet at TC egress counts as the segments it stands for), the denominator of the analysis counts.",
            &wire_segments,
        ),
        ("ringcap_tcp_payload_bytes_total", "TCP payload bytes of those segments.", &payload_bytes),
        (
            "ringcap_tcp_retransmitted_segments_total",
            "Wire segments of TCP retransmissions of any kind (a GSO packet counts as its segments), for a rate over ringcap_tcp_wire_segments_total.",
            &retransmitted_segments,
        ),
        (
            "ringcap_tcp_syn_retransmissions_total",
            "Retransmitted SYN and SYN-ACK segments (also counted as retransmission events): connection attempts, apart from lost data.",
            &syn_retransmissions,
        ),
        (
            "ringcap_tcp_syn_refused_total",
            "TCP connection attempts refused: the SYN's target answered it with a RST.",
            &refused,
        ),
        (
            "ringcap_tcp_analysis_segments_total",
            "TCP segments flagged by Wireshark's analysis rules (tcp.analysis.*), by event.",
            &analysis,
        ),
        ("ringcap_tcp_handshakes_total", "TCP three-way handshakes seen to completion.", &handshakes),
    ] {
        family(name, help, series);
    }
    family(
        "ringcap_dns_queries_total",
        "DNS queries over UDP (to port 53 or --dns-port), every packet, selected or not.",
        &per_slot(&|prefix| vec![(prefix.clone(), Counter::DnsQueries)]),
    );
    family(
        "ringcap_dns_responses_total",
        "DNS responses over UDP, by rcode (noerror, nxdomain, servfail, refused, other).",
        &per_slot(&|prefix| {
            crate::health::dns::RCODES
                .iter()
                .map(|(counter, rcode)| (with(prefix, "rcode", rcode), *counter))
                .collect()
        }),
    );
    family(
        "ringcap_dns_query_retransmissions_total",
        "DNS queries sent again before their response (same conversation and ID), where the queries pass.",
        &per_slot(&|prefix| vec![(prefix.clone(), Counter::DnsRetransmissions)]),
    );
    family(
        "ringcap_dns_unmatched_responses_total",
        "DNS responses to no query seen (sent before capture started, forgotten, or answered already).",
        &per_slot(&|prefix| vec![(prefix.clone(), Counter::DnsUnmatched)]),
    );
    let unanswered = locked(&sources.live.unanswered).clone();
    let unanswered_of = |kind: u8| {
        slots
            .iter()
            .map(|slot| (slot_labels(slot), unanswered[usize::from(kind)][slot.slot]))
            .collect::<Vec<_>>()
    };
    family(
        "ringcap_dns_unanswered_queries_total",
        "DNS queries without a response after --dns-timeout, where the queries pass.",
        &unanswered_of(exchange::KIND_DNS),
    );
    family(
        "ringcap_dns_truncated_responses_total",
        "DNS responses with TC set: the answer did not fit, the client retries over TCP.",
        &per_slot(&|prefix| vec![(prefix.clone(), Counter::DnsTruncated)]),
    );
    family(
        "ringcap_tls_client_hellos_total",
        "TLS ClientHellos (any TCP port), every packet, selected or not.",
        &per_slot(&|prefix| vec![(prefix.clone(), Counter::TlsClientHellos)]),
    );
    family(
        "ringcap_tls_server_hellos_total",
        "TLS ServerHellos by the version the server chose (1.0, 1.1, 1.2, 1.3, other).",
        &per_slot(&|prefix| {
            crate::health::tls::VERSIONS
                .iter()
                .map(|(counter, version)| (with(prefix, "version", version), *counter))
                .collect()
        }),
    );
    let tls_alerts = locked(&sources.live.tls_alerts).clone();
    family(
        "ringcap_tls_alerts_total",
        "TLS alerts sent in the clear (during handshakes), by description as RFC 8446 names it; \"other\" for the rest.",
        &slots
            .iter()
            .flat_map(|slot| {
                crate::health::tls::alerts_by_label(&tls_alerts, slot.slot)
                    .into_iter()
                    .map(|(label, count)| (with(&slot_labels(slot), "description", label), count))
            })
            .collect::<Vec<_>>(),
    );
    let tls_timeouts = unanswered_of(exchange::KIND_TLS);
    family(
        "ringcap_tls_handshake_failures_total",
        "TLS handshakes that ended before their ServerHello, by how: an alert, a RST, a FIN, or nothing within --tls-timeout.",
        &per_slot(&|prefix| {
            crate::health::tls::FAILURES
                .iter()
                .filter_map(|(counter, how)| counter.map(|counter| (with(prefix, "how", how), counter)))
                .collect()
        })
        .into_iter()
        .chain(tls_timeouts.into_iter().map(|(labels, count)| (with(&labels, "how", "timeout"), count)))
        .collect::<Vec<_>>(),
    );
    family(
        "ringcap_http_requests_total",
        "HTTP/1.x requests (segments that start one, any TCP port), every packet, selected or not.",
        &per_slot(&|prefix| vec![(prefix.clone(), Counter::HttpRequests)]),
    );
    family(
        "ringcap_http_responses_total",
        "HTTP/1.x responses by status class (1xx..5xx, other).",
        &per_slot(&|prefix| {
            crate::health::http::CLASSES
                .iter()
                .map(|(counter, class)| (with(prefix, "class", class), *counter))
                .collect()
        }),
    );
    family(
        "ringcap_http_unanswered_requests_total",
        "HTTP/1.x requests without a final response after --http-timeout, where the requests pass.",
        &unanswered_of(exchange::KIND_HTTP),
    );
    let path_mtu_messages = per_slot(&|prefix| vec![(prefix.clone(), Counter::IcmpPathMtu)]);
    family(
        "ringcap_icmp_path_mtu_messages_total",
        "ICMP fragmentation-needed and ICMPv6 packet-too-big messages (path MTU discovery), every packet, selected or not.",
        &path_mtu_messages,
    );
    let health = sources.live.icmp_health();
    let by_slot = |health: &crate::records::IcmpHealth| {
        labels(&[("interface", &health.interface), ("direction", &health.direction)])
    };
    family(
        "ringcap_icmp_messages_total",
        "ICMP and ICMPv6 messages seen (selected or not), by family, type and code: one series for each code of the messages an engineer looks for, the rest of a family as type and code \"other\".",
        &health
            .iter()
            .flat_map(|h| {
                crate::health::icmp::messages(h).into_iter().map(move |(family, message, count)| {
                    let (kind, code) = message.map_or(("other".into(), "other".into()), |(kind, code)| {
                        (kind.to_string(), code.to_string())
                    });
                    let mut labels = with(&by_slot(h), "family", family);
                    labels.push(("type".into(), kind));
                    labels.push(("code".into(), code));
                    (labels, count)
                })
            })
            .collect::<Vec<_>>(),
    );
    family(
        "ringcap_icmp_mtu_untracked_total",
        "Path-MTU messages whose announced MTU found no room in the kernel's table of MTUs (counted in the messages, not by MTU).",
        &[(Vec::new(), kernel.get(Counter::IcmpMtuUntracked))],
    );
    family(
        "ringcap_tcp_flows_total",
        "Flows of the flow table (TCP; evicted: UDP too while flows are cut), by event.",
        &[
            (labels(&[("event", "inserted")]), kernel.get(Counter::TcpFlowsInserted)),
            (labels(&[("event", "mid_stream")]), kernel.get(Counter::TcpFlowsMidStream)),
            (labels(&[("event", "insert_failed")]), kernel.get(Counter::TcpFlowInsertFailed)),
            (labels(&[("event", "evicted")]), flows.evicted),
        ],
    );
    family(
        "ringcap_flow_lock_busy_total",
        "Packets neither analysed nor cut: another CPU held their flow's lock past the wait's bound.",
        &[(Vec::new(), kernel.get(Counter::FlowLockBusy))],
    );
    family(
        "ringcap_udp_flows_total",
        "UDP flows of the flow table (tracked only while flows are cut; evictions count with TCP's), by event.",
        &[(labels(&[("event", "inserted")]), kernel.get(Counter::UdpFlowsInserted))],
    );
    family(
        "ringcap_tcp_syn_unanswered_total",
        "TCP connection attempts whose SYN got neither a SYN-ACK nor a RST within --syn-timeout.",
        &[(Vec::new(), flows.syn_unanswered)],
    );
    family(
        "ringcap_storage_bytes_written_total",
        "Bytes of frames written to the ring.",
        &[(Vec::new(), get(&s.bytes_written))],
    );
    family(
        "ringcap_storage_frames_written_total",
        "Frames written to the ring.",
        &[(Vec::new(), get(&s.frames_written))],
    );
    family(
        "ringcap_storage_files_created_total",
        "Files created in the ring.",
        &[(Vec::new(), get(&s.files_created))],
    );
    family(
        "ringcap_storage_files_removed_total",
        "Files removed from the ring, by reason.",
        &[
            (labels(&[("reason", "retention")]), get(&s.files_removed)),
            (labels(&[("reason", "free_space")]), get(&s.files_removed_for_space)),
        ],
    );
    family(
        "ringcap_storage_files_lost_total",
        "Files of the ring removed, replaced, truncated or overwritten by someone else while being written.",
        &[(Vec::new(), get(&s.files_lost))],
    );
    family(
        "ringcap_storage_disk_full_events_total",
        "Writes that found the disk full.",
        &[(Vec::new(), get(&s.disk_full_events))],
    );
    family(
        "ringcap_storage_write_errors_total",
        "Frames that could not be written.",
        &[(Vec::new(), get(&s.write_errors))],
    );
    let pins = sources.pins.list();
    out.push(counters(
        "ringcap_http_pulls_not_served_total",
        "Pulls refused because MAX_PULLS were streaming (busy), or cut off because the client read nothing for --http-client-timeout (stalled).",
        &[
            (labels(&[("reason", "busy")]), get(&sources.api.pulls_refused_busy)),
            (labels(&[("reason", "stalled")]), get(&sources.api.pulls_cut_stalled)),
        ],
    ));
    let interfaces = locked(&sources.live.interfaces_up).clone();
    out.push(Family {
        name: "ringcap_interface_up".into(),
        help: "Whether each interface given to -i is there and captured (0: gone since start).".into(),
        series: Series::Gauges(
            interfaces.iter().map(|(name, up)| (labels(&[("interface", name)]), u64::from(*up))).collect(),
        ),
    });
    let mut gauge = |name: &str, help: &str, value: u64| {
        out.push(Family { name: name.to_string(), help: help.to_string(), series: Series::Gauge(value) });
    };
    gauge(
        "ringcap_pins",
        "Pinned windows held on local disk.",
        pins.iter().filter(|p| p.bytes > 0).count() as u64,
    );
    gauge(
        "ringcap_pinned_bytes",
        "Bytes pinned windows hold (or reserve while copying), within --max-disk.",
        pins.iter().map(|p| p.bytes).sum(),
    );
    if let Some(a) = &sources.archive {
        gauge("ringcap_archive_pending", "Pins and ring files waiting for their upload.", get(&a.pending));
        let mut family =
            |name: &str, help: &str, series: &[(Labels, u64)]| out.push(counters(name, help, series));
        family(
            "ringcap_archive_uploaded_total",
            "Pins and ring files uploaded whole to the archive, by kind.",
            &[
                (labels(&[("kind", "pin")]), get(&a.pins_archived)),
                (labels(&[("kind", "ring_file")]), get(&a.ring_files_archived)),
            ],
        );
        family(
            "ringcap_archive_objects_total",
            "Objects put in the archive.",
            &[(Vec::new(), get(&a.objects_uploaded))],
        );
        family(
            "ringcap_archive_bytes_total",
            "Bytes sent to the archive.",
            &[(Vec::new(), get(&a.bytes_uploaded))],
        );
        family(
            "ringcap_archive_upload_failures_total",
            "Failed upload attempts (each is retried), by kind.",
            &[
                (labels(&[("kind", "auth")]), get(&a.failures_auth)),
                (labels(&[("kind", "network")]), get(&a.failures_network)),
                (labels(&[("kind", "bucket")]), get(&a.failures_bucket)),
                (labels(&[("kind", "other")]), get(&a.failures_other)),
            ],
        );
        family(
            "ringcap_archive_ring_files_missed_total",
            "Ring files that rotation removed before their upload (--archive-ring within --archive-rate).",
            &[(Vec::new(), get(&a.ring_files_missed))],
        );
    }
    let triggers = sources.triggers.list();
    let source_labels =
        |t: &crate::triggers::TriggerStatus| labels(&[("rule", &t.name), ("source", t.source)]);
    out.push(counters(
        "ringcap_trigger_firings_total",
        "Pins made by trigger rules (source rule) and Alertmanager alerts (source alertmanager).",
        &triggers.iter().map(|t| (source_labels(t), t.firings)).collect::<Vec<_>>(),
    ));
    out.push(counters(
        "ringcap_trigger_suppressed_total",
        "Firings that made no pin, by reason: cooldown, hourly_cap, bytes_cap, no_room (the pins' budget), busy (pins being copied), error.",
        &triggers
            .iter()
            .flat_map(|t| {
                t.suppressed.iter().map(move |(reason, count)| (with(&source_labels(t), "reason", reason), *count))
            })
            .collect::<Vec<_>>(),
    ));
    out.push(Family {
        name: "ringcap_icmp_path_mtu_announced_bytes".into(),
        help: "MTUs announced by ICMP fragmentation-needed and ICMPv6 packet-too-big messages (every value in /v1/stats).".into(),
        series: Series::Histograms(
            health
                .iter()
                .flat_map(|h| {
                    [capture_common::icmp::FAMILY_IPV4, capture_common::icmp::FAMILY_IPV6].map(|family| {
                        let (sum, count, buckets) = crate::health::icmp::mtu_histogram(h, family);
                        let labels = with(&by_slot(h), "family", crate::kernel::family_name(family));
                        let buckets = buckets
                            .into_iter()
                            .map(|(bound, n)| (if bound == u32::MAX { f64::MAX } else { f64::from(bound) }, n))
                            .collect();
                        (labels, sum, count, buckets)
                    })
                })
                .collect(),
        ),
    });
    if let Some(times) = locked(&sources.live.exchange_times).as_ref() {
        for (kind, name, sum, help) in ANSWER_TIMES {
            let series = slots
                .iter()
                .map(|slot| {
                    let (total, counts) = seconds_buckets(&times[usize::from(kind)][slot.slot]);
                    let sum = kernel.only(slot.slot).get(sum) as f64 / 1e9;
                    (slot_labels(slot), sum, total, counts)
                })
                .collect();
            out.push(Family { name: name.into(), help: help.into(), series: Series::Histograms(series) });
        }
    }
    if let Some(buckets) = locked(&sources.live.rtt_by_slot).as_ref() {
        for (i, kind) in RTT_KINDS.iter().enumerate() {
            let name = kind.metric;
            let series = slots.iter().map(|slot| {
                let (key, value) = kind.label;
                let labels = with(&slot_labels(slot), key, value);
                let (total, counts) = seconds_buckets(&buckets[slot.slot][kind.index]);
                let sum = kernel.only(slot.slot).get(kind.sum) as f64 / 1e9;
                (labels, sum, total, counts)
            });
            let series: Vec<_> = series.collect();
            if i > 0 && RTT_KINDS[i - 1].metric == name {
                if let Some(Family { series: Series::Histograms(more), .. }) = out.last_mut() {
                    more.extend(series);
                }
                continue;
            }
            let help = if name == "ringcap_tcp_handshake_rtt_seconds" {
                "TCP handshake RTT at the capture point: server side SYN to SYN-ACK, client side SYN-ACK to ACK."
            } else {
                "TCP RTT from the capture point to the data's receiver and back, by method: timestamps (TSval to TSecr) or data to ACK."
            };
            out.push(Family {
                name: name.to_string(),
                help: help.to_string(),
                series: Series::Histograms(series),
            });
        }
    }
    out
}

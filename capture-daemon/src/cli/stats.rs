//! `ringcap stats`: a running daemon's TCP health and counters, from its API.
use std::process::ExitCode;

use clap::Args;

use super::args::{answer_error, parse_refresh_seconds, ApiArgs};

#[derive(Args)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    /// Print the API's JSON answer (`/v1/stats`) instead of the text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Print again every SECONDS, like watch(1), until interrupted.
    #[arg(long, value_name = "SECONDS", value_parser = parse_refresh_seconds)]
    pub(crate) watch: Option<f64>,
}

pub(crate) fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    loop {
        let (status, stats) = args.api.call("GET", "/v1/stats")?;
        if status != 200 {
            return Err(answer_error(status, &stats));
        }
        if args.json {
            println!("{stats:#}");
        } else {
            print_stats(&stats);
        }
        let Some(seconds) = args.watch else { return Ok(ExitCode::SUCCESS) };
        std::thread::sleep(std::time::Duration::from_secs_f64(seconds));
        println!();
    }
}

fn print_stats(stats: &serde_json::Value) {
    if let Some(age) = stats["kernel_counters_age_seconds"].as_f64() {
        println!("kernel counters as of {age:.1} s ago (the daemon reads them every second)");
    }
    let k = &stats["kernel"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    print_tcp("since start", &stats["tcp"]);
    if !stats["tcp_last_minute"].is_null() {
        let seconds = stats["tcp_last_minute"]["seconds"].as_f64().unwrap_or(0.0);
        print_tcp(&format!("last {seconds:.0} s"), &stats["tcp_last_minute"]);
    }
    let slots = stats["tcp_by_interface"].as_array().cloned().unwrap_or_default();
    if !slots.is_empty() {
        println!("TCP by interface and direction, since start:");
    }
    for slot in &slots {
        let (tcp, analysis) = (&slot["tcp"], &slot["tcp"]["analysis"]);
        let retransmissions = ["retransmission", "fast_retransmission", "spurious_retransmission"]
            .iter()
            .map(|key| n(&analysis[*key]))
            .sum::<u64>();
        println!(
            "  {} {}: {} handshakes, {} SYN, {} RST, {} retransmissions, {} duplicate ACKs, {} zero windows; timestamp RTT p50 {:.3} ms",
            slot["interface"].as_str().unwrap_or_default(),
            slot["direction"].as_str().unwrap_or_default(),
            n(&tcp["tcp_handshakes"]),
            n(&tcp["tcp_syn"]),
            n(&tcp["tcp_rst"]),
            retransmissions,
            n(&analysis["duplicate_ack"]),
            n(&analysis["zero_window"]),
            n(&tcp["timestamp_rtt"]["p50_ns"]) as f64 / 1e6
        );
    }
    print_dns(&stats["dns_by_interface"]);
    print_tls(&stats["tls_by_interface"]);
    print_http(&stats["http_by_interface"]);
    print_icmp(&stats["icmp_by_interface"]);
    let f = &stats["flows"];
    println!(
        "TCP flows: {} in the table (of {}), {} evicted; connection attempts: {} unanswered, {} refused (`ringcap top` names them)",
        n(&f["live"]),
        n(&f["capacity"]),
        n(&f["evicted"]),
        n(&f["syn_unanswered"]),
        n(&stats["tcp"]["tcp_syn_refused"])
    );
    let r = &stats["reader"];
    println!(
        "capture since start: {} seen, {} captured; lost: {} ring full, {} copy failed, {} queue full; not selected: {} filter, {} sampling, {} rate limit",
        n(&k["seen"]), n(&r["packets"]), n(&k["ring_full"]), n(&k["copy_failed"]), n(&r["queue_dropped"]),
        n(&k["filtered"]), n(&k["sampled_out"]), n(&k["rate_limited"])
    );
    let st = &stats["storage"];
    println!(
        "ring: {} packets written, {} lost to write errors, {} files created, {} removed",
        n(&st["packets_written"]),
        n(&st["packets_lost"]),
        n(&st["files_created"]),
        n(&st["files_removed"]) + n(&st["files_removed_for_space"])
    );
}

/// DNS by interface and direction: queries, responses by rcode, truncated.
fn print_dns(dns: &serde_json::Value) {
    let slots: Vec<capture_daemon::records::DnsHealth> =
        serde_json::from_value(dns.clone()).unwrap_or_default();
    let seen: Vec<_> =
        slots.iter().filter(|slot| slot.queries > 0 || slot.responses.values().any(|&n| n > 0)).collect();
    if seen.is_empty() {
        println!("DNS: no queries or responses since start");
        return;
    }
    println!("DNS by interface and direction, since start:");
    for slot in seen {
        let responses =
            by_label(&slot.responses, capture_daemon::health::dns::RCODES.iter().map(|(_, r)| *r));
        let time = &slot.response_time;
        println!(
            "  {} {}: {} queries ({} retransmitted, {} unanswered); responses: {}; {} truncated, {} unmatched; \
             response time p50 {:.3} ms, p99 {:.3} ms ({} answered)",
            slot.interface,
            slot.direction,
            slot.queries,
            slot.retransmissions,
            slot.unanswered,
            responses,
            slot.truncated,
            slot.unmatched,
            time.p50_ns as f64 / 1e6,
            time.p99_ns as f64 / 1e6,
            time.count
        );
    }
}

/// "label n, label n" of the counts, in the order of `labels`.
fn by_label(
    counts: &std::collections::BTreeMap<String, u64>,
    labels: impl Iterator<Item = &'static str>,
) -> String {
    labels
        .map(|label| format!("{label} {}", counts.get(label).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// TLS handshakes by interface and direction: hellos, versions chosen, failures and
/// alerts, handshake times.
fn print_tls(tls: &serde_json::Value) {
    let slots: Vec<capture_daemon::records::TlsHealth> =
        serde_json::from_value(tls.clone()).unwrap_or_default();
    let seen: Vec<_> = slots
        .iter()
        .filter(|slot| {
            slot.client_hellos > 0 || slot.server_hellos.values().any(|&n| n > 0) || !slot.alerts.is_empty()
        })
        .collect();
    if seen.is_empty() {
        println!("TLS: no handshakes since start");
        return;
    }
    println!("TLS handshakes by interface and direction, since start:");
    for slot in seen {
        let alerts: Vec<String> = slot.alerts.iter().map(|(alert, n)| format!("{alert} {n}")).collect();
        let time = &slot.handshake_time;
        println!(
            "  {} {}: {} ClientHellos; ServerHellos: {}; failed before the ServerHello: {}; alerts: {}; \
             handshake time p50 {:.3} ms, p99 {:.3} ms ({} timed)",
            slot.interface,
            slot.direction,
            slot.client_hellos,
            by_label(&slot.server_hellos, capture_daemon::health::tls::VERSIONS.iter().map(|(_, v)| *v)),
            by_label(&slot.failed, capture_daemon::health::tls::FAILURES.iter().map(|(_, how)| *how)),
            if alerts.is_empty() { "none".to_string() } else { alerts.join(", ") },
            time.p50_ns as f64 / 1e6,
            time.p99_ns as f64 / 1e6,
            time.count
        );
    }
}

/// HTTP/1.x by interface and direction: requests, responses by status class, response
/// times.
fn print_http(http: &serde_json::Value) {
    let slots: Vec<capture_daemon::records::HttpHealth> =
        serde_json::from_value(http.clone()).unwrap_or_default();
    let seen: Vec<_> =
        slots.iter().filter(|slot| slot.requests > 0 || slot.responses.values().any(|&n| n > 0)).collect();
    if seen.is_empty() {
        println!("HTTP: no requests or responses since start");
        return;
    }
    println!("HTTP/1.x by interface and direction, since start:");
    for slot in seen {
        let time = &slot.response_time;
        println!(
            "  {} {}: {} requests ({} unanswered); responses: {}; response time p50 {:.3} ms, p99 {:.3} ms ({} answered)",
            slot.interface,
            slot.direction,
            slot.requests,
            slot.unanswered,
            by_label(&slot.responses, capture_daemon::health::http::CLASSES.iter().map(|(_, c)| *c)),
            time.p50_ns as f64 / 1e6,
            time.p99_ns as f64 / 1e6,
            time.count
        );
    }
}

/// Kinds of ICMP message `ringcap stats` lists for an interface and direction.
const MESSAGES_LISTED: usize = 8;

/// ICMP and ICMPv6 by interface and direction: the messages seen, most frequent first,
/// and the path MTUs announced.
fn print_icmp(icmp: &serde_json::Value) {
    let slots: Vec<capture_daemon::records::IcmpHealth> =
        serde_json::from_value(icmp.clone()).unwrap_or_default();
    let seen: Vec<_> = slots.iter().filter(|slot| !slot.messages.is_empty()).collect();
    if seen.is_empty() {
        println!("ICMP: no messages since start");
        return;
    }
    println!("ICMP by interface and direction, since start:");
    for slot in seen {
        let mut messages = slot.messages.clone();
        messages.sort_by_key(|m| std::cmp::Reverse(m.count));
        let mut listed: Vec<String> = messages
            .iter()
            .take(MESSAGES_LISTED)
            .map(|m| format!("{} {}", capture_daemon::health::icmp::message_name(m), m.count))
            .collect();
        if messages.len() > MESSAGES_LISTED {
            listed.push(format!("{} more kinds (stats --json lists them)", messages.len() - MESSAGES_LISTED));
        }
        let mtus: Vec<String> =
            slot.path_mtu.iter().map(|p| format!("{} MTU {}: {}", p.family, p.mtu, p.count)).collect();
        println!(
            "  {} {}: {}; path MTU messages {}{}",
            slot.interface,
            slot.direction,
            listed.join(", "),
            slot.path_mtu_messages,
            if mtus.is_empty() { String::new() } else { format!(" ({})", mtus.join(", ")) }
        );
    }
}

/// One block of `ringcap stats`: TCP counts, Wireshark's analysis and RTT percentiles.
pub(crate) fn print_tcp(span: &str, tcp: &serde_json::Value) {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    println!(
        "TCP, {span}: {} handshakes completed; SYN {}, SYN-ACK {}, FIN {}, RST {}",
        n(&tcp["tcp_handshakes"]),
        n(&tcp["tcp_syn"]),
        n(&tcp["tcp_syn_ack"]),
        n(&tcp["tcp_fin"]),
        n(&tcp["tcp_rst"])
    );
    let analysis: Vec<String> = capture_daemon::health::analysis::TCP_ANALYSIS
        .iter()
        .map(|(_, label)| format!("{} {}", label.replace('_', " "), n(&tcp["analysis"][*label])))
        .collect();
    println!("  analysis: {}", analysis.join(", "));
    let segments = n(&tcp["tcp_segments"]);
    let retransmitted = n(&tcp["tcp_retransmitted_segments"]);
    let rate = if segments > 0 {
        format!("{:.3}%", 100.0 * retransmitted as f64 / segments as f64)
    } else {
        "-".into()
    };
    println!(
        "  {segments} segments on the wire, {} payload bytes; {retransmitted} segments retransmitted ({rate}); {} SYN or SYN-ACK retransmissions",
        n(&tcp["tcp_payload_bytes"]),
        n(&tcp["tcp_syn_retransmission"])
    );
    for kind in capture_daemon::health::analysis::RTT_KINDS {
        let h = &tcp[kind.key];
        let ms = |v: &serde_json::Value| n(v) as f64 / 1e6;
        println!(
            "  RTT {}: {} samples, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            kind.what,
            n(&h["count"]),
            ms(&h["p50_ns"]),
            ms(&h["p90_ns"]),
            ms(&h["p99_ns"]),
            ms(&h["max_ns"])
        );
    }
}

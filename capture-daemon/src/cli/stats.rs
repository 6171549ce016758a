//! `ringcap stats`: a running daemon's TCP health and counters, from its API.
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::args::{api_token, ApiArgs};

#[derive(Args)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    pub(crate) api: ApiArgs,
}

pub(crate) fn stats(StatsArgs { api: args }: StatsArgs) -> anyhow::Result<ExitCode> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.get(format!("http://{}/v1/stats", args.http));
    if let Some(token) = api_token(args.http_token_file.as_deref())? {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().with_context(|| {
        format!("cannot reach ringcap's API at {}: is `ringcap run --http {}` running?", args.http, args.http)
    })?;
    let body = response.body_mut().read_to_string().context("reading the API's answer")?;
    if response.status() != 200 {
        anyhow::bail!("the API answered {}: {}", response.status(), body.trim());
    }
    let stats: serde_json::Value = serde_json::from_str(&body)?;
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
    let f = &stats["flows"];
    println!(
        "TCP flows: {} in the table (of {}), {} evicted, {} connection attempts unanswered",
        n(&f["live"]),
        n(&f["capacity"]),
        n(&f["evicted"]),
        n(&f["syn_unanswered"])
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
    Ok(ExitCode::SUCCESS)
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

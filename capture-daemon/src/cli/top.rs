//! `ringcap top`: a running daemon's TCP connections, the worst first, refreshed like
//! top(1) and iftop; and who is behind unanswered attempts, refusals and resets. Reads
//! `/v1/flows`, which the daemon fills at each sweep of its flow table.
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use capture_daemon::health::flows::SortKey;
use clap::Args;
use serde_json::Value;

use super::args::{answer_error, parse_refresh_seconds, ApiArgs};

#[derive(Args)]
pub(crate) struct TopArgs {
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    /// Sort by: retransmission, rtt, bytes, segments, resets, duplicate_ack, zero_window
    /// or recent (largest first).
    #[arg(short = 'o', long, value_name = "KEY", default_value = "retransmission", value_parser = parse_sort)]
    pub(crate) sort: String,
    /// Connections shown (and servers and hosts in each list below them).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) limit: u64,
    /// Print once and exit (for scripts), instead of refreshing.
    #[arg(long)]
    pub(crate) once: bool,
    /// Seconds between refreshes.
    #[arg(short = 'd', long, value_name = "SECONDS", default_value_t = 2.0, value_parser = parse_refresh_seconds)]
    pub(crate) delay: f64,
    /// Print the API's JSON answer instead of the table (implies --once).
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_sort(text: &str) -> Result<String, String> {
    text.parse::<SortKey>().map(|_| text.to_string())
}

pub(crate) fn top(args: TopArgs) -> anyhow::Result<ExitCode> {
    let target = format!("/v1/flows?sort={}&limit={}", args.sort, args.limit);
    let refresh = !args.once && !args.json;
    let clear = refresh && std::io::stdout().is_terminal();
    loop {
        let (status, answer) = args.api.call("GET", &target)?;
        if status != 200 {
            return Err(answer_error(status, &answer));
        }
        let text = if args.json { format!("{answer:#}\n") } else { render(&answer) };
        let mut out = std::io::stdout().lock();
        if clear {
            // Home and clear, as top(1) redraws.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        if !refresh {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs_f64(args.delay));
    }
}

fn n(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

fn ms(value: &Value) -> String {
    value.as_f64().map_or_else(|| "-".into(), |ms| format!("{ms:.2}"))
}

/// Bytes with a binary unit, as iftop prints them.
fn bytes(count: u64) -> String {
    let mut value = count as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if value < 1024.0 {
            return if unit == "B" { format!("{count}B") } else { format!("{value:.1}{unit}") };
        }
        value /= 1024.0;
    }
    format!("{value:.1}TiB")
}

/// `count` and its noun, in the singular for one.
fn counted(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// The table `ringcap top` prints for an answer of `/v1/flows`.
pub(crate) fn render(answer: &Value) -> String {
    let mut out = String::new();
    let swept = match (answer["swept_at"].as_str(), answer["swept_seconds_ago"].as_f64()) {
        (Some(at), Some(ago)) => format!("swept {ago:.0} s ago ({at})"),
        _ => "not swept yet (the first sweep comes a second after start)".to_string(),
    };
    out.push_str(&format!(
        "ringcap top: {} in the flow table, {swept}; sorted by {}\n\n",
        counted(n(&answer["connections"]), "TCP connection"),
        answer["sort"].as_str().unwrap_or_default()
    ));
    let flows = answer["flows"].as_array().cloned().unwrap_or_default();
    let pairs: Vec<String> = flows
        .iter()
        .map(|flow| {
            format!(
                "{} -> {}{}",
                flow["client"].as_str().unwrap_or_default(),
                flow["server"].as_str().unwrap_or_default(),
                if flow["roles_from_syn"].as_bool() == Some(false) { "?" } else { "" }
            )
        })
        .collect();
    let width = pairs.iter().map(String::len).max().unwrap_or(0).max(16);
    out.push_str(&format!(
        "{:<width$} {:<11} {:>9} {:>9} {:>7} {:>6} {:>6} {:>6} {:>5} {:>4} {:>9}\n",
        "CLIENT -> SERVER",
        "STATE",
        "SEGMENTS",
        "BYTES",
        "RETRANS",
        "RT%",
        "SYN-RT",
        "DUPACK",
        "ZWIN",
        "RST",
        "RTT ms"
    ));
    for (flow, pair) in flows.iter().zip(&pairs) {
        let (up, down) = (&flow["to_server"], &flow["to_client"]);
        let sum = |key: &str| n(&up[key]) + n(&down[key]);
        let segments = sum("segments");
        // Retransmitted wire segments of all wire segments (a GSO packet counts as its segments).
        let rate = if segments > 0 {
            format!("{:.2}", 100.0 * sum("retransmitted_segments") as f64 / segments as f64)
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{:<width$} {:<11} {:>9} {:>9} {:>7} {:>6} {:>6} {:>6} {:>5} {:>4} {:>9}\n",
            pair,
            flow["state"].as_str().unwrap_or_default(),
            segments,
            bytes(sum("payload_bytes")),
            n(&flow["retransmissions"]),
            rate,
            sum("syn_retransmissions"),
            sum("duplicate_acks"),
            sum("zero_windows"),
            sum("resets"),
            ms(&flow["rtt_ms"]),
        ));
    }
    let list = |title: &str, key: &str, line: &dyn Fn(&Value) -> String| -> String {
        let entries = answer[key].as_array().cloned().unwrap_or_default();
        if entries.is_empty() {
            return format!("\n{title}: none\n");
        }
        let lines: Vec<String> = entries.iter().map(|e| format!("  {}", line(e))).collect();
        format!("\n{title}:\n{}\n", lines.join("\n"))
    };
    let attempts = |e: &Value| {
        format!(
            "{:<45} {}, {}",
            e["server"].as_str().unwrap_or_default(),
            counted(n(&e["attempts"]), "attempt"),
            counted(n(&e["syn_retransmissions"]), "SYN retransmission")
        )
    };
    out.push_str(&list("Unanswered connection attempts, by server", "unanswered", &attempts));
    out.push_str(&list("Refused connection attempts (RST to the SYN), by server", "refused", &attempts));
    out.push_str(&list("Hosts sending resets", "rst_senders", &|e| {
        format!(
            "{:<45} {} on {}",
            e["address"].as_str().unwrap_or_default(),
            counted(n(&e["resets"]), "reset"),
            counted(n(&e["connections"]), "connection")
        )
    }));
    out.push_str(
        "\n(?: roles guessed from the ports, the handshake was not seen. RETRANS: Wireshark's retransmission\n\
         events. RT%: retransmitted wire segments of all. RTT: both sides' last samples added.)\n",
    );
    out
}

//! `bench triggers`: what 100 trigger rules cost.
//!
//! In process: 100 rules (the README's seed scenarios, at varied thresholds) compiled
//! against the series of a daemon capturing 4 interfaces both ways, and evaluated on its
//! scrape as the daemon's trigger thread does every `--trigger-interval`: the time of a
//! round, and the share of a core that makes at one round a second, beside the scrape
//! alone (what every `/metrics` request costs too: the floor).
//!
//! Live: `ringcap bench --self-test` at 64-byte frames, ring mode, without rules and with
//! the 100, in turn in the same run: the zero-loss rate and CPU per packet of each.
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use capture_daemon::api::metrics::families;
use capture_daemon::api::Sources;
use capture_daemon::health::slot_labels;
use capture_daemon::kernel::Direction;
use capture_daemon::pins::{PinLimits, PinStore};
use capture_daemon::storage::Compression;
use capture_daemon::triggers::{self, Rule, Triggers};
use serde_json::json;

use crate::{capture::release_dir, report};

#[derive(clap::Args)]
pub struct Options {
    /// Rules evaluated.
    #[arg(long, default_value_t = 100)]
    rules: usize,
    /// Evaluation rounds timed in process.
    #[arg(long, default_value_t = 2000)]
    rounds: usize,
    /// Skip the live zero-loss comparison (in-process figures only).
    #[arg(long)]
    no_live: bool,
}

/// The seed scenarios, `{}` taking a threshold that varies from rule to rule.
const TEMPLATES: [&str; 10] = [
    "rate(tcp_segments{{flag=\"rst\"}}) > {}/s for 10s",
    "rate(tcp_segments{{flag=\"syn\"}}) > {}/s and rate(tcp_handshakes) < 100/s for 5s",
    "increase(tcp_retransmitted_segments[30s]) / increase(tcp_wire_segments[30s]) > {}% for 30s",
    "rate(tcp_analysis_segments{{event=\"zero_window\"}}) > {}/s for 15s",
    "rtt_p99{{method=\"handshake\",side=\"server\"}}[1m] > {}ms for 1m",
    "increase(tcp_syn_unanswered[1m]) > {}",
    "increase(packets_dropped) > {}",
    "rate(packets_seen[10s]) == 0 and increase(packets_seen[5m]) > {}",
    "rtt_p90{{method=\"timestamp\"}}[30s] > {}ms",
    "rate(tcp_payload_bytes{{direction=\"in\"}}) > {}000000/s for 1m",
];

/// `count` rules, the templates in turn.
fn rules(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let template = TEMPLATES[i % TEMPLATES.len()];
            format!(
                "r{i}: {}",
                template.replacen("{}", &(i + 1).to_string(), 1).replace("{{", "{").replace("}}", "}")
            )
        })
        .collect()
}

/// Mean microseconds of `f` over `rounds` runs (after a tenth of them as warm-up).
fn timed(rounds: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..rounds / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..rounds {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / rounds as f64
}

/// (µs a round of the scrape alone, µs a round of the scrape and every rule).
fn in_process(options: &Options) -> Result<(f64, f64)> {
    let dir = std::env::temp_dir().join(format!("ringcap-bench-triggers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pins = PinStore::open(
        &dir,
        PinLimits::default(),
        Vec::new(),
        "bench".into(),
        Compression::None,
        Arc::default(),
    )?;
    let interfaces: Vec<String> = (0..4).map(|i| format!("eth{i}")).collect();
    let tick = Duration::from_secs(1);
    let parsed: Vec<Rule> = rules(options.rules)
        .iter()
        .map(|text| Rule::parse(text).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let sources =
        Sources::idle(pins, slot_labels(&interfaces, Direction::Both), Triggers::new(&parsed, tick));
    let (catalog, groups) = (triggers::catalog(&sources), triggers::groups(&sources));
    let mut compiled = parsed
        .into_iter()
        .map(|rule| triggers::compile(rule, &catalog, &groups, tick))
        .collect::<Result<Vec<_>, String>>()
        .map_err(anyhow::Error::msg)?;
    let scrape_only = timed(options.rounds, || {
        std::hint::black_box(families(&sources));
    });
    // Readings a second apart, as the daemon takes them (the rules' histories fill).
    let mut now = Instant::now();
    let with_rules = timed(options.rounds, || {
        let families = families(&sources);
        let scrape = triggers::index(&families);
        now += tick;
        for rule in &mut compiled {
            std::hint::black_box(rule.evaluate(&scrape, now, tick));
        }
    });
    std::fs::remove_dir_all(&dir)?;
    Ok((scrape_only, with_rules))
}

/// `ringcap bench --self-test` at 64 B in ring mode with `extra` options: the zero-loss
/// rate (frames/s) and CPU ns per packet.
fn live(label: &str, extra: &[String]) -> Result<(Option<f64>, Option<f64>)> {
    let out = std::env::temp_dir().join(format!("ringcap-bench-triggers-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(release_dir().join("ringcap"))
        .args(["bench", "--self-test", "--sizes", "64", "--modes", "ring", "--trial", "2", "--trials", "1"])
        .args(["--confirm", "5", "--max-disk", "1G", "-o"])
        .arg(&out)
        .args(extra)
        .status()
        .context("running ringcap bench")?;
    if !status.success() {
        bail!("ringcap bench ({label}) failed");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json"))?)?;
    let result = &report["results"][0];
    let figures = (result["zero_loss_pps"].as_f64(), result["cpu_ns_per_packet"].as_f64());
    let _ = std::fs::remove_dir_all(Path::new(&out));
    Ok(figures)
}

pub fn run(options: &Options) -> Result<()> {
    let (scrape_us, rules_us) = in_process(options)?;
    let share = |us: f64| us / 1e6 * 100.0;
    println!(
        "\n{} trigger rules over a daemon of 4 interfaces x 2 directions, one round a second ({} rounds timed):",
        options.rules, options.rounds
    );
    report::print_table(
        &["round", "µs a round", "% of a core at 1/s", "vs the scrape alone"],
        &[
            vec![
                "scrape alone (/metrics' floor)".into(),
                format!("{scrape_us:.1}"),
                format!("{:.4}", share(scrape_us)),
                "1.00x".into(),
            ],
            vec![
                format!("scrape + {} rules", options.rules),
                format!("{rules_us:.1}"),
                format!("{:.4}", share(rules_us)),
                format!("{:.2}x", rules_us / scrape_us),
            ],
        ],
    );
    println!("target: under 0.5% of a core");
    let mut figures = json!({
        "rules": options.rules,
        "rounds": options.rounds,
        "scrape_us": scrape_us,
        "scrape_and_rules_us": rules_us,
        "core_percent_at_1_per_second": share(rules_us),
    });
    if !options.no_live {
        let with: Vec<String> =
            rules(options.rules).into_iter().flat_map(|r| ["--trigger".to_string(), r]).collect();
        let (without_pps, without_cpu) = live("without", &[])?;
        let (with_pps, with_cpu) = live("with", &with)?;
        let show = |v: Option<f64>, scale: f64, digits: usize| {
            v.map_or("-".into(), |v| format!("{:.digits$}", v / scale))
        };
        println!("\nringcap bench --self-test, 64 B, ring mode, in turn:");
        report::print_table(
            &["run", "zero-loss rate (Mpps)", "vs without", "CPU ns/pkt"],
            &[
                vec!["no rules".into(), show(without_pps, 1e6, 3), "1.00x".into(), show(without_cpu, 1.0, 0)],
                vec![
                    format!("{} rules", options.rules),
                    show(with_pps, 1e6, 3),
                    with_pps.zip(without_pps).map_or("-".into(), |(w, o)| format!("{:.2}x", w / o)),
                    show(with_cpu, 1.0, 0),
                ],
            ],
        );
        figures["live"] = json!({
            "without": { "zero_loss_pps": without_pps, "cpu_ns_per_packet": without_cpu },
            "with": { "zero_loss_pps": with_pps, "cpu_ns_per_packet": with_cpu },
        });
    }
    report::save_json("triggers", &figures)
}

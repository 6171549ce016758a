//! What ships beside the binary, checked against the real thing: the systemd unit passes
//! `systemd-analyze verify`, and every series the Grafana dashboard queries is served by a
//! running daemon's `/metrics`, with the label values it selects.
mod common;

use common::OutputWithin;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{bed, get, scratch, start_ringcap, WAIT};

const DIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dist");

#[test]
fn the_systemd_unit_verifies() {
    // The unit names the installed binary: point it at the one just built.
    let unit = std::fs::read_to_string(Path::new(DIST).join("ringcap.service"))
        .unwrap()
        .replace("/usr/bin/ringcap", common::RINGCAP);
    let path = scratch("ringcap.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output_within_deadline();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

/// Every `name{label="value"}` the dashboard's queries name: the metric names, and the
/// exact label matchers beside them.
fn dashboard_series() -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(DIST).join("grafana/ringcap.json")).unwrap())
            .unwrap();
    let mut names = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("ringcap_") {
                let name: String =
                    rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                rest = &rest[at + name.len()..];
                if let Some(matchers) = rest.strip_prefix('{').and_then(|r| r.split_once('}')).map(|(m, _)| m)
                {
                    for matcher in matchers.split(',') {
                        if let Some((label, value)) = matcher.split_once("=\"") {
                            labels
                                .insert((label.trim().to_string(), value.trim_end_matches('"').to_string()));
                        }
                    }
                }
                names.insert(name);
            }
        }
    }
    (names, labels)
}

#[test]
fn every_metric_the_dashboard_queries_is_served() {
    let bed = bed();
    let dir = scratch("dist-ring");
    let addr = "127.0.0.1:18095";
    let ring = start_ringcap(
        &bed,
        "run",
        &["--dir", dir.to_str().unwrap(), "-G", "0", "--direction", "both", "--http", addr, "--http-no-auth"],
    );
    // The histograms appear with the first publication of the counters (after a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let metrics = loop {
        let metrics = String::from_utf8(get(&bed, addr, "/metrics", None).body).unwrap();
        if metrics.contains("_bucket{") {
            break metrics;
        }
        assert!(std::time::Instant::now() < deadline, "no histograms in /metrics: {metrics}");
        std::thread::sleep(Duration::from_millis(100));
    };
    ring.signal(libc::SIGINT);
    assert!(ring.finish(WAIT).0.success());
    let served: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let (names, labels) = dashboard_series();
    assert!(names.len() > 10, "{names:?}");
    for name in &names {
        assert!(served.contains(name.as_str()), "the dashboard queries {name}, which /metrics lacks");
    }
    for (label, value) in &labels {
        if label == "instance" {
            continue; // added by Prometheus when it scrapes
        }
        let matcher = format!("{label}=\"{value}\"");
        assert!(metrics.contains(&matcher), "the dashboard selects {matcher}, which no series has");
    }
}

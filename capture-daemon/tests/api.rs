//! The daemon's HTTP API against the CLI: same packets, token rules, bad parameters,
//! Prometheus text format, and clients vanishing mid-stream without disturbing capture.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{bed, get, known_frame, scratch, send, seqs, start_ringcap, RINGCAP, WAIT};
use ringcap_tools::harness::summary_count;
use ringcap_tools::testbed::{TestBed, RX_IF, RX_IP};

fn cli_pull(dir: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(RINGCAP).args(["pull", "--dir", dir]).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn the_api_serves_what_the_cli_pulls_and_survives_vanishing_clients() {
    let bed = bed();
    let dir = scratch("api-ring");
    let d = dir.to_str().unwrap();
    let addr = "127.0.0.1:18080";
    let ring = start_ringcap(&bed, "run", &["--dir", d, "-G", "1", "--http", addr]);
    send(&bed, (0..500).map(known_frame).collect());
    std::thread::sleep(Duration::from_secs(2));

    let all = get(&bed, addr, "/v1/pcap?last=1m", None);
    assert_eq!(all.status, 200);
    assert_eq!(seqs(&all.body), (0..500).collect::<Vec<_>>());
    assert_eq!(seqs(&all.body), seqs(&cli_pull(d, &["--last", "1m"])));
    let filtered = get(&bed, addr, "/v1/pcap?last=1m&filter=udp+src+port+10003%20or%20greater%201400", None);
    assert_eq!(filtered.status, 200);
    let cli = cli_pull(d, &["--last", "1m", "udp src port 10003 or greater 1400"]);
    assert!(!seqs(&cli).is_empty());
    assert_eq!(seqs(&filtered.body), seqs(&cli));
    let pcapng = get(&bed, addr, "/v1/pcap?last=1m&format=pcapng", None);
    assert_eq!(&pcapng.body[..4], &[0x0a, 0x0d, 0x0d, 0x0a]);

    for (target, message) in [
        ("/v1/pcap?last=10x", "is not a duration"),
        ("/v1/pcap?bogus=1", "unknown parameter"),
        ("/v1/pcap?last=1m&filter=hots%201.2.3.4", "bad filter expression"),
        ("/v1/pcap?since=2020-01-01T00:00:00Z", "longer than this server's limit"),
        ("/v1/pcap?last=1m&format=json", "use pcap or pcapng"),
    ] {
        let response = get(&bed, addr, target, None);
        let body = String::from_utf8_lossy(&response.body);
        assert_eq!(response.status, 400, "{target}: {body}");
        assert!(body.contains(message), "{target}: {body}");
    }
    assert_eq!(get(&bed, addr, "/nope", None).status, 404);

    let files = get(&bed, addr, "/v1/files", None);
    let files: serde_json::Value = serde_json::from_slice(&files.body).unwrap();
    let listed: u64 = files["files"].as_array().unwrap().iter().map(|f| f["packets"].as_u64().unwrap()).sum();
    assert_eq!(listed, 500);
    std::thread::sleep(Duration::from_millis(1100));
    let stats: serde_json::Value = serde_json::from_slice(&get(&bed, addr, "/v1/stats", None).body).unwrap();
    assert_eq!(stats["kernel"]["captured"], 500);
    assert_eq!(stats["storage"]["packets_written"], 500);

    // Prometheus text format: HELP/TYPE comments, `name{labels} value` lines, few series.
    let metrics = String::from_utf8(get(&bed, addr, "/metrics", None).body).unwrap();
    let mut series = 0;
    for line in metrics.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(comment.starts_with("HELP ringcap_") || comment.starts_with("TYPE ringcap_"), "{line}");
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap();
        value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        let metric = name.split('{').next().unwrap();
        assert!(metric.starts_with("ringcap_"), "{line}");
        assert!(metric.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{line}");
        let counter = metric.ends_with("_total");
        let histogram =
            ["_bucket", "_sum", "_count"].iter().any(|s| metric.ends_with(s)) && metric.contains("_seconds");
        assert!(counter || histogram, "{line}");
        let labels = name.strip_prefix(metric).unwrap();
        assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "{line}");
        series += 1;
    }
    // Fixed label sets: per interface and direction (one here), four RTT histograms of 15
    // series each and 16 TCP counters; about 25 other counter series.
    assert!((10..=130).contains(&series), "{series} series");
    assert!(metrics.contains("ringcap_packets_captured_total 500"), "{metrics}");

    // A client that reads a little and hangs up must not disturb capture.
    TestBed::in_namespace(&bed.rx_ns, move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(b"GET /v1/pcap?last=1m HTTP/1.1\r\n\r\n").unwrap();
        let mut some = [0u8; 100];
        stream.read_exact(&mut some).unwrap();
    })
    .join()
    .unwrap()
    .unwrap();
    send(&bed, (500..700).map(known_frame).collect());
    std::thread::sleep(Duration::from_millis(1500));
    ring.signal(libc::SIGINT);
    let (status, stderr) = ring.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(700), "{stderr:?}");
}

#[test]
fn an_api_on_a_non_loopback_address_requires_a_token() {
    let bed = bed();
    let dir = scratch("api-token");
    let d = dir.to_str().unwrap();
    let addr = format!("{RX_IP}:18081");
    let refused = bed.rx(RINGCAP).args(["run", "-i", RX_IF, "--dir", d, "--http", &addr]).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("--http-token"), "{stderr}");

    let ring = start_ringcap(&bed, "run", &["--dir", d, "--http", &addr, "--http-token", "s3cret"]);
    assert_eq!(get(&bed, &addr, "/v1/stats", None).status, 401);
    assert_eq!(get(&bed, &addr, "/v1/stats", Some("wrong")).status, 401);
    assert_eq!(get(&bed, &addr, "/v1/stats", Some("s3cret")).status, 200);
    ring.signal(libc::SIGINT);
    assert!(ring.finish(WAIT).0.success());
}

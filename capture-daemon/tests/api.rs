//! The daemon's HTTP API against the CLI: same packets, token rules, bad parameters,
//! Prometheus text format, and clients vanishing mid-stream without disturbing capture.
mod common;

use common::OutputWithin;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{
    bed, get, known_frame, raw_request, scratch, send, seqs, start_ringcap, token_file, wait_until, RINGCAP,
    WAIT,
};
use ringcap_tools::harness::{summary_count, CaptureProcess};
use ringcap_tools::testbed::{TestBed, RX_IF, RX_IP};

fn cli_pull(dir: &str, args: &[&str]) -> Vec<u8> {
    Command::new(RINGCAP).args(["pull", "--dir", dir]).args(args).succeed().0
}

#[test]
fn the_api_serves_what_the_cli_pulls_and_survives_vanishing_clients() {
    let bed = bed();
    let dir = scratch("api-ring");
    let d = dir.to_str().unwrap();
    let addr = "127.0.0.1:18080";
    let ring = start_ringcap(&bed, "run", &["--dir", d, "-G", "1", "--http", addr, "--http-no-auth"]);
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

    // OpenMetrics text, read by the Prometheus project's own parser (python3-prometheus-client,
    // strict: HELP and TYPE, _total counters, cumulative buckets, the closing # EOF).
    let metrics = String::from_utf8(get(&bed, addr, "/metrics", None).body).unwrap();
    let families = openmetrics_families(&metrics);
    // Fixed label sets, nothing that grows with traffic: one series per family (one
    // interface, one direction here) but for these, labelled by a fixed list of reasons,
    // kinds or directions.
    let labelled = std::collections::BTreeMap::from([
        ("ringcap_packets_dropped", 7),
        ("ringcap_packets_not_selected", 3),
        ("ringcap_tcp_segments", 6),
        ("ringcap_tcp_analysis_segments", 10),
        ("ringcap_tcp_flows", 4),
        ("ringcap_packets_cut", 3),
        ("ringcap_packet_bytes_cut", 3),
        ("ringcap_storage_files_removed", 2),
        ("ringcap_http_pulls_not_served", 2),
        ("ringcap_tcp_handshake_rtt_seconds", 2),
        ("ringcap_tcp_rtt_seconds", 2),
        // A fixed list of ICMP and ICMPv6 types and codes, and "other" for each family.
        ("ringcap_icmp_messages", 53),
        ("ringcap_dns_responses", 5),
        // TLS versions, alert descriptions (24 and "other"), ways to fail; HTTP classes.
        ("ringcap_tls_server_hellos", 5),
        ("ringcap_tls_alerts", 25),
        ("ringcap_tls_handshake_failures", 4),
        ("ringcap_http_responses", 6),
        ("ringcap_icmp_path_mtu_announced_bytes", 2),
        // One series per trigger rule (and reason), given at start: none here.
        ("ringcap_trigger_firings", 0),
        ("ringcap_trigger_suppressed", 0),
    ]);
    assert!(families.len() > 20, "{families:?}");
    for (name, kind, series) in &families {
        assert!(name.starts_with("ringcap_"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
        let histogram = kind == "histogram" && (name.ends_with("_seconds") || name.ends_with("_bytes"));
        assert!(kind == "counter" || kind == "gauge" || histogram, "{name}: {kind}");
        assert_eq!(*series, labelled.get(name.as_str()).copied().unwrap_or(1), "series of {name}");
    }
    for name in labelled.keys() {
        assert!(families.iter().any(|(n, _, _)| n == name), "{name} is served");
    }
    // The whole line: "... 500" must not pass for 5000.
    assert!(metrics.lines().any(|l| l == "ringcap_packets_captured_total 500"), "{metrics}");

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
fn the_api_requires_a_token_by_default_even_on_loopback() {
    let bed = bed();
    let dir = scratch("api-token");
    let d = dir.to_str().unwrap();
    // No token: refused with what to do, on loopback too.
    for addr in ["127.0.0.1:18081".to_string(), format!("{RX_IP}:18081")] {
        let refused =
            bed.rx(RINGCAP).args(["run", "-i", RX_IF, "--dir", d, "--http", &addr]).output_within_deadline();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && stderr.contains("--http-token-file"), "{stderr}");
    }
    let refused = bed
        .rx(RINGCAP)
        .args(["run", "-i", RX_IF, "--dir", d, "--http", &format!("{RX_IP}:18081"), "--http-no-auth"])
        .output_within_deadline();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("loopback addresses only"));
    // A token file everyone can read protects nothing.
    let open = token_file("s3cret");
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let refused = bed
        .rx(RINGCAP)
        .args(["run", "-i", RX_IF, "--dir", d, "--http", "127.0.0.1:18081", "--http-token-file"])
        .arg(&open)
        .output_within_deadline();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("readable by every user"));

    let token = token_file("s3cret");
    let addr = "127.0.0.1:18081";
    let ring = start_ringcap(
        &bed,
        "run",
        &["--dir", d, "--http", addr, "--http-token-file", token.to_str().unwrap()],
    );
    // Every route and verb, unknown ones too: no token, a wrong one, a prefix of the right one.
    let routes = [
        ("GET", "/metrics"),
        ("GET", "/v1/stats"),
        ("GET", "/v1/files"),
        ("GET", "/v1/pcap?last=1m"),
        ("GET", "/v1/pins"),
        ("POST", "/v1/pins?last=1m&name=x"),
        ("GET", "/v1/pins/x"),
        ("DELETE", "/v1/pins/x"),
        ("GET", "/nope"),
        ("PUT", "/v1/stats"),
    ];
    for (method, route) in routes {
        for token in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
            let response = common::request(&bed, method, addr, route, token);
            assert_eq!(response.status, 401, "{method} {route} with {token:?}");
        }
    }
    assert_eq!(get(&bed, addr, "/v1/stats", Some("s3cret")).status, 200);
    assert_eq!(get(&bed, addr, "/metrics", Some("s3cret")).status, 200);
    assert_eq!(get(&bed, addr, "/v1/files", Some("s3cret")).status, 200);
    // The pin and unpin commands with a wrong token: a clear error, nothing pinned.
    let wrong = token_file("wrong");
    for args in [&["pin", "--last", "1m", "--name", "x"][..], &["unpin", "x"]] {
        let out = common::api_client(&bed, addr, &wrong, args).output_within_deadline();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("401"), "{args:?}: {stderr}");
    }
    assert!(!dir.join("pins/x").exists());
    // `ringcap stats` takes the token from a file or the environment, never from argv.
    bed.rx(RINGCAP).args(["stats", "--http", addr, "--http-token-file"]).arg(&token).succeed();
    bed.rx(RINGCAP).args(["stats", "--http", addr]).env("RINGCAP_HTTP_TOKEN", "s3cret").succeed();
    let stats = bed.rx(RINGCAP).args(["stats", "--http", addr]).output_within_deadline();
    assert!(String::from_utf8_lossy(&stats.stderr).contains("401"));
    ring.signal(libc::SIGINT);
    assert!(ring.finish(WAIT).0.success());

    // `run` takes its token from the environment too, and its API serves after -Z.
    let nobody = capture_daemon::privileges::User::lookup("nobody").unwrap();
    std::os::unix::fs::chown(&dir, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let mut command = bed.rx(RINGCAP);
    command.args(["run", "-i", RX_IF, "--dir", d, "--http", addr, "-Z", "nobody"]);
    command.env("RINGCAP_HTTP_TOKEN", "from-env");
    let mut ring = CaptureProcess::spawn(command).unwrap();
    assert!(ring.wait_for("running as nobody", WAIT), "{:?}", ring.stderr);
    assert_eq!(get(&bed, addr, "/v1/stats", Some("s3cret")).status, 401);
    for route in ["/v1/stats", "/metrics", "/v1/files", "/v1/pcap?last=1m", "/v1/pins"] {
        assert_eq!(get(&bed, addr, route, Some("from-env")).status, 200, "{route} after -Z");
    }
    // A pin after -Z: its files written by the unprivileged daemon.
    send(&bed, (0..50).map(known_frame).collect());
    wait_until("the 50 frames are stored", WAIT, || {
        seqs(&get(&bed, addr, "/v1/pcap?last=1h", Some("from-env")).body).len() >= 50
    });
    let pinned = common::post(&bed, addr, "/v1/pins?last=1h&name=after-z", Some("from-env"));
    assert_eq!(pinned.status, 202, "{}", String::from_utf8_lossy(&pinned.body));
    let pin = || -> serde_json::Value {
        serde_json::from_slice(&get(&bed, addr, "/v1/pins/after-z", Some("from-env")).body).unwrap()
    };
    wait_until("the pin is complete", WAIT, || pin()["state"] == "pinned");
    assert_eq!(pin()["manifest"]["packets"], 50, "{}", pin());
    ring.signal(libc::SIGINT);
    assert!(ring.finish(WAIT).0.success());
}

/// The families of an OpenMetrics exposition as the Prometheus project's parser reads it:
/// name, type and number of series (a histogram's buckets, sum and count are one series).
fn openmetrics_families(text: &str) -> Vec<(String, String, usize)> {
    let script = "import sys, json\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
        families = list(parse(sys.stdin.read()))\n\
        def series(f):\n\
        \x20   keys = {tuple(sorted((k, v) for k, v in s.labels.items() if k != 'le')) for s in f.samples}\n\
        \x20   return len(keys)\n\
        print(json.dumps([[f.name, f.type, series(f)] for f in families]))\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (apt install python3-prometheus-client)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `ringcap run` into a new ring with its API on `addr`, token `t0ken`, frames every 0.1 s.
fn start_with_token(bed: &TestBed, name: &str, addr: &str) -> (std::path::PathBuf, CaptureProcess) {
    let dir = scratch(name);
    let ring = common::start_api_daemon(bed, &dir, addr, &token_file("t0ken"), &[]);
    (dir, ring)
}

/// `/metrics` answers, and capture still writes every packet sent.
fn assert_alive(bed: &TestBed, addr: &str, token: &str, next: &mut u64) {
    let metrics = get(bed, addr, "/metrics", Some(token));
    assert_eq!(metrics.status, 200);
    send(bed, (*next..*next + 50).map(known_frame).collect());
    *next += 50;
    // The statistics are published each second: poll until they count the 50.
    let sent = *next;
    wait_until(&format!("the statistics count {sent} packets written"), WAIT, || {
        let stats: serde_json::Value =
            serde_json::from_slice(&get(bed, addr, "/v1/stats", Some(token)).body).unwrap();
        let written = stats["storage"]["packets_written"].as_u64().unwrap();
        assert!(written <= sent, "{written} packets written, {sent} sent");
        written == sent
    });
}

#[test]
fn hostile_requests_and_expressions_stop_neither_the_api_nor_the_capture() {
    let bed = bed();
    let (dir, ring) = start_with_token(&bed, "api-hostile", "127.0.0.1:18082");
    let d = dir.to_str().unwrap();
    let addr = "127.0.0.1:18082";
    let mut next = 0;
    assert_alive(&bed, addr, "t0ken", &mut next);
    // Percent-encodes what a query cannot hold as it is; parentheses stay as they are.
    let encode = |expression: &str| -> String {
        expression
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'(' | b')' | b'!' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    // Hostile filters: deep nesting (what once overflowed the stack), long, every byte value.
    let mut filters = vec![
        format!("{}tcp{}", "(".repeat(5000), ")".repeat(5000)),
        format!("{}tcp", "!".repeat(10_000)),
        format!("tcp{}", " and udp or tcp".repeat(400)),
        format!("{}tcp{}", "(".repeat(20_000), ")".repeat(20_000)),
    ];
    filters.extend((0u8..=255).map(|b| format!("tcp and {}{} port 1", b as char, b as char)));
    for filter in &filters {
        let target = format!("/v1/pcap?last=1m&filter={}", encode(filter));
        if target.len() > capture_daemon::api::MAX_HEAD_BYTES {
            let request = format!("GET {target} HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\n");
            assert_eq!(raw_request(&bed, addr, request.into_bytes()), Some(431));
            continue;
        }
        // Refused exactly when the filter compiler refuses it (`tcp and !! port 1` is fine).
        let response = get(&bed, addr, &target, Some("t0ken"));
        let body = String::from_utf8_lossy(&response.body);
        match capture_daemon::filter::Filter::compile(filter) {
            Ok(_) => assert_eq!(response.status, 200, "{filter:?}: {body}"),
            Err(_) => {
                assert_eq!(response.status, 400, "{filter:?}: {body}");
                assert!(body.contains("bad filter expression"), "{body}");
            }
        }
    }
    // Invalid UTF-8 in the filter.
    assert_eq!(get(&bed, addr, "/v1/pcap?last=1m&filter=%FF%FE%80", Some("t0ken")).status, 400);
    assert_alive(&bed, addr, "t0ken", &mut next);
    // Hostile heads: huge, malformed, binary, no end.
    let long_filter = format!("GET /v1/pcap?last=1m&filter={} HTTP/1.1\r\n\r\n", "(".repeat(1 << 20));
    assert_eq!(raw_request(&bed, addr, long_filter.into_bytes()), Some(431));
    let huge_header = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100_000));
    assert_eq!(raw_request(&bed, addr, huge_header.into_bytes()), Some(431));
    for garbage in [&b"\x00\x01\x02\xff\r\n\r\n"[..], b"GET\r\n\r\n", b"GET /metrics\r\n\r\n"] {
        assert_eq!(raw_request(&bed, addr, garbage.to_vec()), Some(400), "{garbage:?}");
    }
    // Empty lines before a request line are skipped (RFC 9112, 2.2): the head never comes.
    let empty = raw_request(&bed, addr, b"\r\n\r\n".to_vec());
    assert!(matches!(empty, None | Some(408)), "{empty:?}");
    let all_bytes: Vec<u8> = (0u8..=255).cycle().take(10_000).collect();
    assert_eq!(raw_request(&bed, addr, all_bytes), Some(400), "binary garbage");
    // A head that never ends: the connection is closed once its time is up.
    let unfinished = b"GET /metrics HTTP/1.1\r\nX-Slow: still typing".to_vec();
    let started = std::time::Instant::now();
    assert_eq!(raw_request(&bed, addr, unfinished), None, "no answer to half a head");
    let took = started.elapsed();
    assert!((Duration::from_secs(4)..Duration::from_secs(10)).contains(&took), "closed after {took:?}");
    assert_alive(&bed, addr, "t0ken", &mut next);

    // More idle connections than the server takes at once: the surplus gets 503, and once
    // they go, the API answers again.
    let idle = TestBed::in_namespace(&bed.rx_ns, move || {
        (0..capture_daemon::api::MAX_CONNECTIONS + 10)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(raw_request(&bed, addr, b"GET /metrics HTTP/1.1\r\n\r\n".to_vec()), Some(503));
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    assert_alive(&bed, addr, "t0ken", &mut next);

    // The CLI refuses the same expressions with an error, not a crash.
    for filter in &filters[..4] {
        let out =
            Command::new(RINGCAP).args(["pull", "--dir", d, "--last", "1m", filter]).output_within_deadline();
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("bad filter expression"));
    }
    let out = Command::new(RINGCAP)
        .args(["pull", "--dir", d, "--last", "1m", &"x".repeat(100_000)])
        .output_within_deadline();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bytes long"));

    ring.signal(libc::SIGINT);
    let (status, stderr) = ring.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(next), "{stderr:?}");
}

#[test]
fn running_out_of_file_descriptors_pauses_the_api_and_does_not_end_it() {
    let bed = bed();
    let (_ring_dir, ring) = start_with_token(&bed, "api-emfile", "127.0.0.1:18083");
    let addr = "127.0.0.1:18083";
    let mut next = 0;
    assert_alive(&bed, addr, "t0ken", &mut next);
    // Leave the daemon a few descriptors, then hold more connections than that.
    let pid = ring.child.id();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    // The soft limit only: its restoring needs no privilege.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_string();
    let limit = format!("--nofile={}:", open + 4);
    assert!(Command::new("prlimit").args(["--pid", &pid.to_string(), &limit]).status().unwrap().success());
    let idle = TestBed::in_namespace(&bed.rx_ns, move || {
        (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect::<Vec<_>>()
    })
    .join()
    .unwrap()
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(idle);
    let restored = format!("--nofile={soft}:");
    assert!(Command::new("prlimit").args(["--pid", &pid.to_string(), &restored]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    assert_alive(&bed, addr, "t0ken", &mut next);
    ring.signal(libc::SIGINT);
    let (status, stderr) = ring.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(next), "{stderr:?}");
}

/// 500 idle connections and a stream of malformed requests, while traffic flows: every
/// `/metrics` scrape is answered within a second, and capture loses nothing.
#[test]
fn idle_connections_and_malformed_requests_leave_metrics_answering_and_capture_lossless() {
    let bed = bed();
    let addr = "127.0.0.1:18085";
    let (_dir, ring) = start_with_token(&bed, "api-idle", addr);
    let idle = TestBed::in_namespace(&bed.rx_ns, move || {
        (0..500).map(|_| TcpStream::connect(addr).unwrap()).collect::<Vec<_>>()
    })
    .join()
    .unwrap()
    .unwrap();
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let malformed = {
        let running = std::sync::Arc::clone(&running);
        TestBed::in_namespace(&bed.rx_ns, move || {
            let mut sent = 0u64;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                let garbage: &[u8] = match sent % 3 {
                    0 => b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
                    1 => b"GET /metrics HTTP/9.9\r\n\r\n",
                    _ => b"GET /v1/pcap?last=1m&filter=%ZZ HTTP/1.1\r\nConnection: close\r\n\r\n",
                };
                if let Ok(mut stream) = TcpStream::connect(addr) {
                    let _ = stream.write_all(garbage);
                    let _ = stream.read_to_end(&mut Vec::new());
                }
                sent += 1;
            }
            sent
        })
    };
    let sender = {
        let bed_tx = bed.tx_ns.clone();
        let frames: Vec<Vec<u8>> = (0..3000).map(known_frame).collect();
        TestBed::in_namespace(&bed_tx, move || {
            let ifindex = capture_daemon::kernel::interface_index(ringcap_tools::testbed::TX_IF).unwrap();
            let plan = ringcap_tools::generator::Plan {
                frames,
                count: 3000,
                chunk: 1,
                rate: Some(1000.0),
                until: None,
            };
            ringcap_tools::generator::transmit(ifindex, &plan).unwrap().sent
        })
    };
    for _ in 0..10 {
        let started = std::time::Instant::now();
        let metrics = get(&bed, addr, "/metrics", Some("t0ken"));
        let took = started.elapsed();
        assert_eq!(metrics.status, 200);
        // What a scraper needs: an answer within Prometheus' default scrape timeout.
        assert!(took < Duration::from_secs(10), "/metrics took {took:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sender.join().unwrap().unwrap(), 3000);
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(malformed.join().unwrap().unwrap() > 10, "malformed requests kept coming");
    drop(idle);
    std::thread::sleep(Duration::from_millis(1200));
    ring.signal(libc::SIGINT);
    let (status, stderr) = ring.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(3000), "{stderr:?}");
}

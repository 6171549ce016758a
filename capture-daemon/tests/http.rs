//! HTTP/1.x health (#30): Python's http.server in the receiving namespace answers 200,
//! 404, 500, late (300 ms), and never; the daemon's requests, responses by status class
//! and response times equal tshark's (`http.request`, `http.response.code`, `http.time`)
//! on the packets it stored, and the request never answered counts once, after
//! `--http-timeout`.
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{scratch, OutputWithin, Running};
use ringcap_tools::testbed::{RX_IF, RX_IP};

/// A server answering by path: /missing 404, /error 500, /late 200 after 300 ms, /hang
/// never, anything else 200.
const SERVER: &str = r#"
import http.server, sys, time
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/hang":
            time.sleep(60)
        if self.path == "/late":
            time.sleep(0.3)
        code = {"/missing": 404, "/error": 500}.get(self.path, 200)
        body = b"ringcap test\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], 8080), Handler).serve_forever()
"#;

/// Requests each path given, one connection each; a request that gets no answer within
/// 2.5 s is given up.
const CLIENT: &str = r#"
import http.client, sys
for path in sys.argv[2:]:
    c = http.client.HTTPConnection(sys.argv[1], 8080, timeout=2.5)
    try:
        c.request("GET", path)
        print(path, c.getresponse().status)
    except TimeoutError:
        print(path, "timeout")
    c.close()
"#;

#[test]
fn http_responses_by_class_and_response_times_agree_with_tshark() {
    let bed = common::bed();
    let _server = Running(bed.rx("python3").args(["-c", SERVER, RX_IP]).spawn().unwrap());
    let dir = scratch("http");
    let addr = "127.0.0.1:9466";
    let daemon = common::start_health_daemon_with(&bed, &dir, addr, &["--http-timeout", "1"]);
    let ask = |paths: &[&str]| {
        let out = bed.tx("python3").args(["-c", CLIENT, RX_IP]).args(paths).output_within_deadline();
        String::from_utf8(out.stdout).unwrap()
    };
    // The server may take a moment to listen: its first answer opens the test.
    common::wait_until("the server answers", Duration::from_secs(10), || ask(&["/"]).contains("/ 200"));
    let answers = ask(&["/", "/missing", "/error", "/error", "/late", "/late", "/hang"]);
    assert_eq!(
        answers, "/ 200\n/missing 404\n/error 500\n/error 500\n/late 200\n/late 200\n/hang timeout\n",
        "the server's answers"
    );
    let common::HealthReading { stats, metrics, text } = common::read_health_and_stop(&bed, addr, daemon);

    let (rows, window) = common::tshark_rows(
        &dir,
        // Responses where they start (request start to response start), not where their
        // bodies end.
        &["-o", "http.desegment_body:FALSE", "-Y", "http"],
        &["frame.packet_flags_direction", "http.request", "http.response.code", "http.time"],
    );
    // (direction, what) -> count; what: "request" or a status class.
    let mut theirs: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut buckets = [0u64; 256];
    for fields in &rows {
        let direction = if fields[0].ends_with('2') { "out" } else { "in" };
        let mut add = |what: &str| *theirs.entry((direction.into(), what.into())).or_default() += 1;
        if !fields[1].is_empty() {
            add("request");
        }
        if let Ok(code) = fields[2].parse::<u16>() {
            add(capture_common::http::class_label(code));
            let ns = (fields[3].parse::<f64>().unwrap() * 1e9).round() as u64;
            buckets[capture_common::tcp::rtt_bucket(ns) as usize] += 1;
        }
    }
    let mut ours: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut unanswered = 0;
    for slot in stats["http_by_interface"].as_array().unwrap() {
        let slot: capture_daemon::records::HttpHealth = serde_json::from_value(slot.clone()).unwrap();
        assert_eq!(slot.interface, RX_IF);
        let mut add = |what: &str, n: u64| {
            if n > 0 {
                *ours.entry((slot.direction.clone(), what.into())).or_default() += n;
            }
        };
        add("request", slot.requests);
        for (class, n) in &slot.responses {
            add(class, *n);
        }
        unanswered += slot.unanswered;
        if slot.direction == "out" {
            let theirs = capture_daemon::health::analysis::rtt_summary(&buckets);
            assert_eq!(slot.response_time, theirs, "response times: ours, then tshark's");
            assert_eq!(slot.answered, theirs.count);
            assert!(theirs.p99_ns >= 300_000_000, "the late answers: {theirs:?}");
        }
    }
    assert_eq!(ours, theirs, "HTTP counts by direction: ours (left), tshark's (right)");
    let count = |what: &str| theirs.get(&("out".to_string(), what.to_string())).copied().unwrap_or(0);
    assert_eq!((count("4xx"), count("5xx")), (1, 2), "{theirs:?}");
    assert_eq!(unanswered, 1, "the request to /hang");
    // The window's statistics (`pull --with-stats`, a pin's) count and time them too.
    let times = capture_daemon::health::analysis::rtt_summary(&buckets);
    assert_eq!(window["http"]["response_time"], serde_json::to_value(times).unwrap(), "{window}");
    assert_eq!(window["counters"]["http_5xx"], 2, "{window}");
    let line =
        format!("ringcap_http_responses_total{{interface=\"{RX_IF}\",direction=\"out\",class=\"5xx\"}} 2");
    assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    let line = format!("ringcap_http_unanswered_requests_total{{interface=\"{RX_IF}\",direction=\"in\"}} 1");
    assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    assert!(text.contains("(1 unanswered); responses: 1xx 0, 2xx"), "{text}");
}

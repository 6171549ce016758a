//! Incident triggers on real TCP between the bed's namespaces: rules over the daemon's own
//! series pin the window around an incident by themselves (an RST storm from a closed
//! port, loss that nftables injects after the capture point), flapping rules and a full
//! budget are counted and never lose capture, and the real Prometheus and Alertmanager
//! pin through `POST /v1/alerts`. Every pin is checked against a pull of the same window.
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    bed, get, metric, nftables, request_with_body, scratch, serve, start_ringcap, stop, token_file,
    tshark_fields, wait_until, OutputWithin, RINGCAP, WAIT,
};
use ringcap_tools::harness::CaptureProcess;
use ringcap_tools::testbed::{TestBed, RX_IF, RX_IP};

const LOSSY: u16 = 5001;
const CLEAN: u16 = 5002;
/// Nothing listens there: the host answers each SYN with a RST.
const CLOSED: u16 = 5003;

/// `ringcap run` of both directions into `dir`, its API on `addr` (no token unless `extra`
/// gives one), a frame every 0.2 s, rules evaluated every 0.2 s.
fn start_trigger_daemon(
    bed: &TestBed,
    dir: &Path,
    addr: &str,
    rules: &[&str],
    extra: &[&str],
) -> CaptureProcess {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["--dir", dir, "-G", "0", "--direction", "both", "--http", addr];
    args.extend(["--frame-interval", "0.2", "--trigger-interval", "0.2"]);
    if !extra.contains(&"--http-token-file") {
        args.push("--http-no-auth");
    }
    for rule in rules {
        args.extend(["--trigger", rule]);
    }
    args.extend(extra);
    start_ringcap(bed, "run", &args)
}

/// `count` connection attempts to the closed port, from the sending namespace: each is
/// one SYN in and one RST out.
fn refused_connections(bed: &TestBed, count: usize) {
    TestBed::in_namespace(&bed.tx_ns, move || {
        for _ in 0..count {
            let refused = TcpStream::connect((RX_IP, CLOSED)).unwrap_err();
            assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        }
    })
    .join()
    .unwrap()
    .unwrap();
}

/// Sends `bytes` to `port` over one TCP connection and waits until the server read them all.
fn transfer(bed: &TestBed, port: u16, bytes: usize) {
    let server = serve(bed, port, move |listener| {
        let (mut stream, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        assert_eq!(received.len(), bytes);
    });
    TestBed::in_namespace(&bed.tx_ns, move || {
        let mut stream = TcpStream::connect((RX_IP, port)).unwrap();
        stream.write_all(&vec![7u8; bytes]).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
    })
    .join()
    .unwrap()
    .unwrap();
    server.join().unwrap().unwrap();
}

fn json(bed: &TestBed, addr: &str, target: &str, token: Option<&str>) -> serde_json::Value {
    let response = get(bed, addr, target, token);
    assert_eq!(response.status, 200, "{target}: {}", String::from_utf8_lossy(&response.body));
    serde_json::from_slice(&response.body).unwrap()
}

/// The trigger named `name` (of `source`) as `/v1/triggers` shows it.
fn trigger(bed: &TestBed, addr: &str, token: Option<&str>, name: &str) -> serde_json::Value {
    let all = json(bed, addr, "/v1/triggers", token);
    all["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until the pin `name` is whole; its listing.
fn whole_pin(bed: &TestBed, addr: &str, token: Option<&str>, name: &str) -> serde_json::Value {
    let mut pin = serde_json::Value::Null;
    wait_until(&format!("pin {name} is whole"), WAIT, || {
        pin = json(bed, addr, &format!("/v1/pins/{name}"), token);
        assert_ne!(pin["state"], "failed", "{pin:#}");
        pin["state"] == "pinned"
    });
    pin
}

/// Each packet of a capture file: time, length and an MD5 of its bytes (tshark's reading).
fn packets(file: &Path) -> Vec<Vec<String>> {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-o", "frame.generate_md5_hash:TRUE", "-T", "fields"])
        .args(["-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.md5_hash"])
        .output_within_deadline();
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// `ringcap pull --dir DIR --since .. --until ..` of a pin's window into a file.
fn pull_window(dir: &Path, window: &serde_json::Value, name: &str) -> PathBuf {
    let out_file = scratch(name);
    let out = std::process::Command::new(RINGCAP)
        .args(["pull", "--dir"])
        .arg(dir)
        .args([
            "--since",
            window["since"].as_str().unwrap(),
            "--until",
            window["until"].as_str().unwrap(),
            "-w",
        ])
        .arg(&out_file)
        .output_within_deadline();
    assert!(out.status.success(), "pull: {}", String::from_utf8_lossy(&out.stderr));
    out_file
}

/// The pin holds exactly what a pull of its window out of the ring gives; the pulled file.
fn assert_pin_equals_pull(ring: &Path, pin: &serde_json::Value) -> PathBuf {
    let name = pin["name"].as_str().unwrap();
    let window = &pin["manifest"]["window"];
    let from_ring = pull_window(ring, window, &format!("{name}-ring.pcapng"));
    let from_pin = pull_window(&ring.join("pins").join(name), window, &format!("{name}-pin.pcapng"));
    let (ring_packets, pin_packets) = (packets(&from_ring), packets(&from_pin));
    assert!(!ring_packets.is_empty());
    assert_eq!(pin_packets.len(), ring_packets.len(), "the pin holds what a pull of its window gives");
    assert!(pin_packets == ring_packets, "the same packets, in the same order");
    assert_eq!(pin["manifest"]["packets"], ring_packets.len() as u64);
    from_pin
}

/// Frames of `file` that `filter` selects.
fn count(file: &Path, filter: &str) -> usize {
    tshark_fields(file, filter, &["frame.number"]).len()
}

fn no_loss(bed: &TestBed, addr: &str, token: &str) {
    let text = String::from_utf8_lossy(&get(bed, addr, "/metrics", Some(token)).body).into_owned();
    let dropped: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ringcap_packets_dropped_total") && !l.ends_with(" 0"))
        .collect();
    assert!(dropped.is_empty(), "capture lost packets: {dropped:?}");
}

#[test]
fn an_rst_storm_pins_the_minutes_before_it_and_a_retransmission_rule_stays_idle() {
    let bed = bed();
    let dir = scratch("storm-ring");
    let addr = "127.0.0.1:18101";
    let rules = [
        "rst_storm: rate(tcp_segments{flag=\"rst\"}) > 50/s with before=30s after=2s",
        "retransmissions: increase(tcp_retransmitted_segments) > 0 with before=30s after=2s",
    ];
    let ring = start_trigger_daemon(&bed, &dir, addr, &rules, &[]);
    // What came before the incident: one clean connection.
    transfer(&bed, CLEAN, 64 << 10);
    std::thread::sleep(Duration::from_secs(2));
    const ATTEMPTS: usize = 200;
    refused_connections(&bed, ATTEMPTS);
    let mut storm = serde_json::Value::Null;
    wait_until("the RST rule fires", WAIT, || {
        storm = trigger(&bed, addr, None, "rst_storm");
        storm["firings"] == 1
    });
    let name = storm["last_pin"].as_str().unwrap().to_string();
    assert!(name.starts_with("rst_storm-2") && name.ends_with('Z'), "{name}");
    assert_eq!(storm["group"], serde_json::json!([["interface", RX_IF], ["direction", "out"]]), "{storm:#}");
    let pin = whole_pin(&bed, addr, None, &name);
    let manifest = &pin["manifest"];
    assert_eq!(manifest["trigger"]["source"], "rule");
    assert_eq!(manifest["trigger"]["name"], "rst_storm");
    let fired = manifest["trigger"]["fired_at_ns"].as_u64().unwrap();
    assert_eq!(manifest["window"]["since_ns"].as_u64().unwrap(), fired - 30_000_000_000);
    assert_eq!(manifest["window"]["until_ns"].as_u64().unwrap(), fired + 2_000_000_000);
    let reading = &manifest["trigger"]["readings"][0];
    assert_eq!(reading["expression"], "rate(tcp_segments{flag=\"rst\"})");
    assert!(reading["value"].as_f64().unwrap() > 50.0, "{reading}");

    let pulled = assert_pin_equals_pull(&dir, &pin);
    // The minutes before: the clean connection, whole; the storm, every RST of it.
    assert_eq!(count(&pulled, &format!("tcp.dstport == {CLEAN} && tcp.flags.syn == 1")), 1);
    assert_eq!(count(&pulled, &format!("tcp.srcport == {CLEAN} && tcp.flags.fin == 1")), 1);
    assert_eq!(count(&pulled, &format!("tcp.srcport == {CLOSED} && tcp.flags.reset == 1")), ATTEMPTS);
    // Its statistics hold the counters' timeline over the window.
    let stats_name = manifest["files"][2]["name"].as_str().unwrap();
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pins").join(&name).join(stats_name)).unwrap())
            .unwrap();
    let rsts: u64 = stats["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|point| point["counters"]["tcp_rst"].as_u64())
        .sum();
    assert_eq!(rsts, ATTEMPTS as u64, "the timeline counts the storm: {:#}", stats["timeline"]);

    let quiet = trigger(&bed, addr, None, "retransmissions");
    assert_eq!(quiet["firings"], 0, "{quiet:#}");
    assert_eq!(quiet["state"], "idle", "{quiet:#}");
    let firings = |rule: &str| {
        metric(&bed, addr, "", &format!("ringcap_trigger_firings_total{{rule=\"{rule}\",source=\"rule\"}}"))
    };
    assert_eq!(firings("rst_storm"), Some(1));
    assert_eq!(firings("retransmissions"), Some(0));
    let cli = bed.rx(RINGCAP).args(["triggers", "--http", addr]).output_within_deadline();
    let shown = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success() && shown.contains("rst_storm [rule]") && shown.contains("1 firings"),
        "{shown}"
    );
    assert!(shown.contains(&format!("last pin {name} (pinned)")), "{shown}");
    no_loss(&bed, addr, "");
    let said = stop(ring).join("\n");
    assert!(said.contains(&format!("ringcap: trigger rst_storm fired on {RX_IF} out")), "{said}");
}

/// The receiving namespace's input rules: every 16th data segment to LOSSY is lost after
/// the capture point (XDP runs before netfilter).
const LOSS: &str = "table inet ringcap_triggers {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 5001 tcp flags & (syn | fin | rst) == 0 meta length > 100 numgen inc mod 16 == 0 drop
    }
}
";

#[test]
fn loss_after_the_capture_point_fires_the_retransmission_ratio_and_nothing_else() {
    let bed = bed();
    nftables(&bed, LOSS);
    let dir = scratch("loss-ring");
    let addr = "127.0.0.1:18102";
    let rules = [
        "retrans_ratio: increase(tcp_retransmitted_segments[3s]) / increase(tcp_wire_segments[3s]) > 1% with before=10s after=1s",
        "rst_storm: rate(tcp_segments{flag=\"rst\"}) > 50/s",
        // Holds while data flows, but never for an hour.
        "sustained: rate(tcp_wire_segments) > 0 for 1h",
    ];
    let ring = start_trigger_daemon(&bed, &dir, addr, &rules, &[]);
    transfer(&bed, LOSSY, 4 << 20);
    let mut ratio = serde_json::Value::Null;
    wait_until("the retransmission ratio rule fires", WAIT, || {
        ratio = trigger(&bed, addr, None, "retrans_ratio");
        ratio["firings"] == 1
    });
    // The data comes in: its retransmissions are on the way in.
    assert_eq!(ratio["group"], serde_json::json!([["interface", RX_IF], ["direction", "in"]]), "{ratio:#}");
    let pin = whole_pin(&bed, addr, None, ratio["last_pin"].as_str().unwrap());
    let reading = &pin["manifest"]["trigger"]["readings"][0];
    assert!(reading["value"].as_f64().unwrap() > 0.01, "{reading}");
    let pulled = assert_pin_equals_pull(&dir, &pin);
    assert!(count(&pulled, "tcp.analysis.retransmission") > 0);
    for quiet in ["rst_storm", "sustained"] {
        let status = trigger(&bed, addr, None, quiet);
        assert_eq!(status["firings"], 0, "{status:#}");
        assert!(status["suppressed"].as_object().unwrap().values().all(|n| n == 0), "{status:#}");
    }
    no_loss(&bed, addr, "");
    stop(ring);
}

#[test]
fn a_flapping_rule_pins_once_and_counts_the_rest() {
    let bed = bed();
    let dir = scratch("flap-ring");
    let addr = "127.0.0.1:18103";
    let rules = [
        "flap: increase(tcp_segments{flag=\"syn\"}) > 0 with before=5s after=1s cooldown=1h",
        "capped: increase(tcp_segments{flag=\"syn\"}) > 0 with before=5s after=1s cooldown=0s max_per_hour=2",
    ];
    let ring = start_trigger_daemon(&bed, &dir, addr, &rules, &[]);
    const BURSTS: u64 = 4;
    for burst in 0..BURSTS {
        refused_connections(&bed, 5);
        // Seen, and then quiet for longer than the rules' one-second range: the condition
        // stops holding before the next burst.
        wait_until("the burst is seen and has passed", WAIT, || {
            let flap = trigger(&bed, addr, None, "flap");
            flap["state"] != "firing"
                && flap["firings"].as_u64().unwrap() + flap["suppressed"]["cooldown"].as_u64().unwrap()
                    == burst + 1
        });
        std::thread::sleep(Duration::from_secs(1));
    }
    let flap = trigger(&bed, addr, None, "flap");
    assert_eq!(flap["firings"], 1, "{flap:#}");
    assert_eq!(flap["suppressed"]["cooldown"], BURSTS - 1, "{flap:#}");
    wait_until("the capped rule is done", WAIT, || {
        let capped = trigger(&bed, addr, None, "capped");
        capped["firings"].as_u64().unwrap() + capped["suppressed"]["hourly_cap"].as_u64().unwrap() == BURSTS
    });
    let capped = trigger(&bed, addr, None, "capped");
    assert_eq!(capped["firings"], 2, "{capped:#}");
    assert_eq!(capped["suppressed"]["hourly_cap"], BURSTS - 2, "{capped:#}");
    assert_eq!(
        metric(
            &bed,
            addr,
            "",
            "ringcap_trigger_suppressed_total{rule=\"flap\",source=\"rule\",reason=\"cooldown\"}"
        ),
        Some(BURSTS - 1)
    );
    let pins = json(&bed, addr, "/v1/pins", None);
    let names: Vec<&str> =
        pins["pins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("flap-")).count(), 1, "{names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("capped-")).count(), 2, "{names:?}");
    no_loss(&bed, addr, "");
    let said = stop(ring).join("\n");
    assert!(said.contains("ringcap: trigger flap fired but pinned nothing (cooldown)"), "{said}");
}

#[test]
fn a_firing_with_the_budget_full_is_refused_with_the_reason_and_capture_goes_on() {
    let bed = bed();
    let dir = scratch("full-ring");
    let addr = "127.0.0.1:18104";
    let rules = ["storm: increase(tcp_segments{flag=\"rst\"}) > 0 with before=30s after=1s"];
    let ring = start_trigger_daemon(&bed, &dir, addr, &rules, &["--max-disk", "64M", "--max-pinned", "1K"]);
    // More than 1 KiB of the window is stored before the incident.
    transfer(&bed, CLEAN, 256 << 10);
    std::thread::sleep(Duration::from_secs(1));
    const ATTEMPTS: usize = 10;
    refused_connections(&bed, ATTEMPTS);
    let mut storm = serde_json::Value::Null;
    wait_until("the firing is refused", WAIT, || {
        storm = trigger(&bed, addr, None, "storm");
        storm["suppressed"]["no_room"] == 1
    });
    assert_eq!(storm["firings"], 0, "{storm:#}");
    assert!(storm["last_suppressed"].as_str().unwrap().contains("--max-pinned"), "{storm:#}");
    assert_eq!(json(&bed, addr, "/v1/pins", None)["pins"], serde_json::json!([]));
    no_loss(&bed, addr, "");
    stop(ring);
    // Capture went on: every RST is in the ring.
    let all = serde_json::json!({ "since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z" });
    let pulled = pull_window(&dir, &all, "full-all.pcapng");
    assert_eq!(count(&pulled, &format!("tcp.srcport == {CLOSED} && tcp.flags.reset == 1")), ATTEMPTS);
}

#[test]
fn a_growing_pin_keeps_what_fits_and_can_be_unpinned() {
    let bed = bed();
    let dir = scratch("room-ring");
    let addr = "127.0.0.1:18106";
    const ROOM: u64 = 64 << 10;
    let rules = [
        "room: increase(tcp_segments{flag=\"syn\"}) > 0 with before=5s after=4s max_bytes=64k",
        "long: increase(tcp_segments{flag=\"syn\"}) > 0 with before=5s after=1h",
    ];
    let ring = start_trigger_daemon(&bed, &dir, addr, &rules, &[]);
    refused_connections(&bed, 1);
    let fired = |rule: &str| trigger(&bed, addr, None, rule)["firings"] == 1;
    wait_until("both rules fire", WAIT, || fired("room") && fired("long"));
    // Within the window after the firing: far more than the rule's room.
    transfer(&bed, CLEAN, 1 << 20);
    let name = trigger(&bed, addr, None, "room")["last_pin"].as_str().unwrap().to_string();
    let pin = whole_pin(&bed, addr, None, &name);
    assert!(pin["bytes"].as_u64().unwrap() <= ROOM, "{pin:#}");
    let warnings = pin["manifest"]["pull"]["warnings"].to_string();
    assert!(warnings.contains("ends early") && warnings.contains("max_bytes"), "{pin:#}");
    // What it kept is the window's start, in order: the SYN that fired it comes first.
    let kept = pull_window(&dir.join("pins").join(&name), &pin["manifest"]["window"], "room.pcapng");
    assert_eq!(count(&kept, &format!("tcp.dstport == {CLOSED} && tcp.flags.syn == 1")), 1);

    // A pin growing for an hour is unpinned: it stops and goes.
    let long = trigger(&bed, addr, None, "long")["last_pin"].as_str().unwrap().to_string();
    let growing = json(&bed, addr, &format!("/v1/pins/{long}"), None);
    assert_eq!(growing["state"], "copying", "{growing:#}");
    assert!(growing["growing_until"].is_string(), "{growing:#}");
    let unpin = bed.rx(RINGCAP).args(["unpin", "--http", addr, &long]).output_within_deadline();
    assert!(unpin.status.success(), "{}", String::from_utf8_lossy(&unpin.stderr));
    wait_until("the unpinned pin is gone", WAIT, || {
        get(&bed, addr, &format!("/v1/pins/{long}"), None).status == 404
    });
    assert!(
        !dir.join("pins").join(&long).exists() && !dir.join("pins").join(format!(".{long}.partial")).exists()
    );
    no_loss(&bed, addr, "");
    stop(ring);
}

/// A process of the test's own (Prometheus, Alertmanager), killed when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(bed: &TestBed, program: &str, args: &[String], log: &Path) -> Server {
    let log = std::fs::File::create(log).unwrap();
    let child = bed
        .rx(program)
        .args(args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    Server(child)
}

#[test]
fn prometheus_and_alertmanager_pin_through_the_webhook() {
    let bed = bed();
    let dir = scratch("alert-ring");
    let addr = "127.0.0.1:18105";
    let token = "alert-token-1234";
    let token_path = token_file(token);
    let ring =
        start_trigger_daemon(&bed, &dir, addr, &[], &["--http-token-file", token_path.to_str().unwrap()]);
    let work = scratch("alerting");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("rules.yml"),
        "groups:\n- name: ringcap\n  interval: 1s\n  rules:\n  - alert: RstStorm\n    expr: rate(ringcap_tcp_segments_total{flag=\"rst\"}[10s]) > 1\n    labels:\n      ringcap_before: 30s\n      ringcap_after: 2s\n    annotations:\n      summary: connections refused\n",
    )
    .unwrap();
    std::fs::write(
        work.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{rules}]\nscrape_configs:\n- job_name: ringcap\n  authorization:\n    credentials: {token}\n  static_configs:\n  - targets: ['{addr}']\nalerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:19093']\n",
            rules = work.join("rules.yml").display()
        ),
    )
    .unwrap();
    std::fs::write(
        work.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: ringcap\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n- name: ringcap\n  webhook_configs:\n  - url: http://{addr}/v1/alerts\n    send_resolved: true\n    http_config:\n      authorization:\n        credentials: {token}\n"
        ),
    )
    .unwrap();
    let path = |name: &str| work.join(name).display().to_string();
    let _alertmanager = start_server(
        &bed,
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", path("alertmanager.yml")),
            format!("--storage.path={}", path("am-data")),
            "--web.listen-address=127.0.0.1:19093".into(),
            "--cluster.listen-address=".into(),
        ],
        &work.join("alertmanager.log"),
    );
    let _prometheus = start_server(
        &bed,
        "prometheus",
        &[
            format!("--config.file={}", path("prometheus.yml")),
            format!("--storage.tsdb.path={}", path("prom-data")),
            "--web.listen-address=127.0.0.1:19090".into(),
        ],
        &work.join("prometheus.log"),
    );
    let up = |target: &'static str| {
        let listening = TestBed::in_namespace(&bed.rx_ns, move || TcpStream::connect(target).is_ok())
            .join()
            .unwrap()
            .unwrap();
        listening && get(&bed, target, "/-/ready", None).status == 200
    };
    wait_until("Prometheus and Alertmanager are ready", WAIT, || {
        up("127.0.0.1:19093") && up("127.0.0.1:19090")
    });
    // Prometheus scrapes ringcap (behind its token) before the incident.
    wait_until("Prometheus scrapes ringcap", WAIT, || {
        let answer = get(&bed, "127.0.0.1:19090", "/api/v1/query?query=up%7Bjob%3D%22ringcap%22%7D", None);
        String::from_utf8_lossy(&answer.body).contains("\"value\":[")
            && String::from_utf8_lossy(&answer.body).contains(",\"1\"]")
    });
    const ATTEMPTS: usize = 100;
    refused_connections(&bed, ATTEMPTS);
    let mut alert = serde_json::Value::Null;
    wait_until("Alertmanager's webhook pins the window", Duration::from_secs(90), || {
        alert = trigger(&bed, addr, Some(token), "RstStorm");
        alert["firings"] == 1
    });
    assert_eq!(alert["source"], "alertmanager");
    let name = alert["last_pin"].as_str().unwrap().to_string();
    let pin = whole_pin(&bed, addr, Some(token), &name);
    let manifest = &pin["manifest"];
    // The window is the alert's start, as Alertmanager holds it, 30 s before and 2 s after.
    let alerts = get(&bed, "127.0.0.1:19093", "/api/v2/alerts", None);
    let alerts: serde_json::Value = serde_json::from_slice(&alerts.body).unwrap();
    let starts_at = alerts[0]["startsAt"].as_str().unwrap().to_string();
    let fingerprint = alerts[0]["fingerprint"].as_str().unwrap().to_string();
    let starts_ns =
        capture_daemon::retrieve::window::parse_time(&starts_at, capture_daemon::timefmt::unix_now())
            .unwrap();
    // (Alertmanager's API gives the time to the millisecond, its webhook to the nanosecond.)
    let fired = manifest["trigger"]["fired_at_ns"].as_u64().unwrap();
    assert!(fired.abs_diff(starts_ns) < 1_000_000, "{starts_at} vs {manifest:#}");
    assert_eq!(manifest["window"]["since_ns"].as_u64(), Some(fired - 30_000_000_000));
    assert_eq!(manifest["window"]["until_ns"].as_u64(), Some(fired + 2_000_000_000));
    assert_eq!(manifest["trigger"]["labels"]["annotation:summary"], "connections refused");
    assert_eq!(name, capture_daemon::pins::stamped_name("RstStorm", fired));
    let pulled = assert_pin_equals_pull(&dir, &pin);
    assert_eq!(count(&pulled, &format!("tcp.srcport == {CLOSED} && tcp.flags.reset == 1")), ATTEMPTS);

    // A repeat of the same alert makes no second pin.
    let repeat = serde_json::json!({
        "version": "4", "status": "firing", "receiver": "ringcap", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://am", "groupKey": "{}:{alertname=\"RstStorm\"}",
        "alerts": [{ "status": "firing", "labels": { "alertname": "RstStorm", "ringcap_before": "30s", "ringcap_after": "2s" },
                     "annotations": {}, "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint }]
    });
    let post =
        |body: Vec<u8>, token: Option<&str>| request_with_body(&bed, "POST", addr, "/v1/alerts", token, body);
    let answer = post(repeat.to_string().into_bytes(), Some(token));
    assert_eq!(answer.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(answer["alerts"][0]["outcome"], "exists", "{answer:#}");
    // Another alert of the same name and start (another label set) gets a pin of its own.
    let mut sibling = repeat.clone();
    sibling["alerts"][0]["fingerprint"] = "other-instance".into();
    sibling["alerts"][0]["labels"]["instance"] = "b".into();
    let answer: serde_json::Value =
        serde_json::from_slice(&post(sibling.to_string().into_bytes(), Some(token)).body).unwrap();
    assert_eq!(answer["alerts"][0]["outcome"], "pinned", "{answer:#}");
    let sibling_pin = answer["alerts"][0]["pin"].as_str().unwrap().to_string();
    assert!(sibling_pin.starts_with(&format!("{name}-")), "{sibling_pin}");
    whole_pin(&bed, addr, Some(token), &sibling_pin);
    // An operator's unpin holds: the next repeat does not pin it again.
    let unpinned =
        request_with_body(&bed, "DELETE", addr, &format!("/v1/pins/{sibling_pin}"), Some(token), Vec::new());
    assert_eq!(unpinned.status, 200);
    let answer: serde_json::Value =
        serde_json::from_slice(&post(sibling.to_string().into_bytes(), Some(token)).body).unwrap();
    assert_eq!(answer["alerts"][0]["outcome"], "exists", "{answer:#}");
    // Malformed and hostile payloads: refused, nothing pinned.
    let mut old_version = repeat.clone();
    old_version["version"] = "3".into();
    let mut bad_filter = repeat.clone();
    bad_filter["alerts"][0]["labels"]["ringcap_filter"] = "port".into();
    let mut other_name = repeat.clone();
    other_name["alerts"][0]["labels"]["alertname"] = "../../etc".into();
    other_name["alerts"][0]["startsAt"] = "yesterday".into();
    for body in [
        b"{not json".to_vec(),
        old_version.to_string().into_bytes(),
        bad_filter.to_string().into_bytes(),
        other_name.to_string().into_bytes(),
    ] {
        assert_eq!(post(body, Some(token)).status, 400);
    }
    assert_eq!(post(vec![b' '; 2 << 20], Some(token)).status, 413, "a payload over 1 MiB");
    assert_eq!(post(repeat.to_string().into_bytes(), None).status, 401, "behind the token");
    let pins = json(&bed, addr, "/v1/pins", Some(token));
    assert_eq!(pins["pins"].as_array().unwrap().len(), 1, "{pins:#}");
    no_loss(&bed, addr, token);
    stop(ring);
}

#[test]
fn bad_rules_refuse_the_start_and_say_where() {
    let bed = bed();
    let dir = scratch("bad-rules-ring");
    for (rule, message) in [
        ("storm: rate(tcp_segmentz{flag=\"rst\"}) > 1", "no series named \"tcp_segmentz\""),
        (
            "storm: rate(tcp_segments{flag=\"rts\"}) > 1",
            "tcp_segments{flag} is one of cwr, ece, fin, rst, syn, syn_ack",
        ),
        ("storm: rate(tcp_segments{flag=\"rst\"}) 200", "expected a comparison"),
        ("storm rate(x) > 1", "NAME: CONDITION"),
    ] {
        let out = bed
            .rx(RINGCAP)
            .args(["run", "-i", RX_IF, "--dir", dir.to_str().unwrap(), "--trigger", rule])
            .output_within_deadline();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{rule}: started");
        assert!(said.contains(message) && said.contains('^'), "{rule}: {said}");
        assert!(!dir.exists(), "{rule}: a refused start made {}", dir.display());
    }
    // Two rules of one name: a rule's name names its pins and series.
    let out = bed
        .rx(RINGCAP)
        .args(["run", "-i", RX_IF, "--dir", dir.to_str().unwrap()])
        .args(["--trigger", "a: packets_seen > 1", "--trigger", "a: packets_seen > 2"])
        .output_within_deadline();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("\"a\" is given twice"), "{said}");
    assert!(!dir.exists());
    // The same from a [[trigger]] table of the config file.
    let config = scratch("triggers.toml");
    std::fs::write(
        &config,
        format!(
            "interface = \"{RX_IF}\"\ndir = \"{}\"\n[[trigger]]\nname = \"slow\"\ncondition = 'rtt_p99{{method=\"handshake\",side=\"serve\"}} > 200ms'\n",
            dir.display()
        ),
    )
    .unwrap();
    let out = bed.rx(RINGCAP).args(["run", "--config", config.to_str().unwrap()]).output_within_deadline();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("tcp_handshake_rtt_seconds{side} is one of client, server"),
        "{said}"
    );
    assert!(!dir.exists());
}

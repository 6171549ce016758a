//! What ships beside the binary, checked against the real thing: the systemd unit passes
//! `systemd-analyze verify`, its system call filter allows every call a traced daemon makes
//! (capture in both modes, rotation, pins, the archive, the API), and every series the
//! Grafana dashboard queries is served by a running daemon's `/metrics`, with the label
//! values it selects.
mod common;

use common::OutputWithin;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    bed, get, known_frame, scratch, send, start_ringcap, token_file, wait_until, Garage, RINGCAP, WAIT,
};
use ringcap_tools::harness::CaptureProcess;
use ringcap_tools::testbed::{TestBed, RX_IF};

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

/// The system calls the unit's `SystemCallFilter=` lines allow, as systemd reads them: an
/// allow list, then `~` lines taking calls away, groups expanded by `systemd-analyze`.
fn unit_allowed_syscalls() -> BTreeSet<String> {
    let listing =
        Command::new("systemd-analyze").args(["syscall-filter", "--no-pager"]).output_within_deadline();
    assert!(listing.status.success());
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut group = None;
    for line in String::from_utf8(listing.stdout).unwrap().lines() {
        let item = line.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            group = Some(item.to_string());
            groups.entry(item.to_string()).or_default();
        } else if let Some(group) = &group {
            groups.get_mut(group).unwrap().push(item.to_string());
        }
    }
    fn expand(
        name: &str,
        groups: &std::collections::BTreeMap<String, Vec<String>>,
        into: &mut BTreeSet<String>,
    ) {
        match groups.get(name) {
            Some(members) => members.iter().for_each(|member| expand(member, groups, into)),
            None => {
                assert!(!name.starts_with('@'), "systemd knows no group {name}");
                into.insert(name.to_string());
            }
        }
    }
    let unit = std::fs::read_to_string(Path::new(DIST).join("ringcap.service")).unwrap();
    let mut allowed = BTreeSet::new();
    let mut lines = 0;
    for value in unit.lines().filter_map(|line| line.strip_prefix("SystemCallFilter=")) {
        lines += 1;
        let (deny, names) = match value.strip_prefix('~') {
            Some(names) => (true, names),
            None => (false, value),
        };
        let mut named = BTreeSet::new();
        names.split_whitespace().for_each(|name| expand(name, &groups, &mut named));
        if deny {
            allowed.retain(|call| !named.contains(call));
        } else {
            allowed.extend(named);
        }
    }
    assert!(lines > 0, "the unit has no SystemCallFilter=");
    allowed
}

/// Every system call in an `strace -f` log, by name (a call resumed is the same call).
fn traced_syscalls(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|line| {
            let call = line.split_once(' ')?.1.trim_start();
            let call = call.strip_prefix("<... ").unwrap_or(call);
            let name: String = call.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// `ringcap run ARGS` under `strace -f`, writing the calls it makes to `log`.
fn start_traced(bed: &TestBed, log: &Path, args: &[&str]) -> CaptureProcess {
    let mut command = bed.rx("strace");
    command.args(["-f", "-qq", "-o"]).arg(log).args([RINGCAP, "run", "-i", RX_IF]).args(args);
    let mut process = CaptureProcess::spawn(command).unwrap();
    assert!(process.wait_listening(), "ringcap did not start under strace: {:?}", process.stderr);
    process
}

/// Sends `signal` to the traced daemon: strace itself blocks the signals it would forward.
fn signal_traced(traced: &CaptureProcess, signal: libc::c_int) {
    let strace = traced.child.id();
    let children = std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children")).unwrap();
    let daemon: libc::pid_t =
        children.split_whitespace().next().expect("strace runs ringcap").parse().unwrap();
    // SAFETY: kill(2) on the process our child started.
    unsafe { libc::kill(daemon, signal) };
}

/// Stops the traced daemon with SIGINT and waits for it and strace.
fn stop_traced(traced: CaptureProcess) {
    signal_traced(&traced, libc::SIGINT);
    let (status, stderr) = traced.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
}

/// The unit's `SystemCallFilter=` would not kill or fail the daemon: every call `run` makes
/// under strace, through what a gateway's daemon does (capture in both modes, `-Z`,
/// compression, rotation and removal, SIGHUP, a pin archived to a real S3 server, every
/// API route), is one the filter allows. (No systemd runs here to apply the filter itself;
/// this is the same check `strace -c` beside `systemd-analyze syscall-filter` would be.)
#[test]
fn the_units_system_call_filter_allows_every_call_the_daemon_makes() {
    let allowed = unit_allowed_syscalls();
    let bed = bed();
    let garage = Garage::start(&bed);
    let dir = scratch("filtered-ring");
    let token = token_file("filtered");
    let addr = "127.0.0.1:18097";
    let archive = garage.ringcap_args("archive");
    let ringcap = |args: &[&str]| {
        common::api_client(&bed, addr, &token, args).succeed();
    };
    let mut made = BTreeSet::new();
    for (mode, seqs) in [("ring", 0..4000), ("afxdp", 4000..8000)] {
        let log = scratch(&format!("strace-{mode}.log"));
        let mut args = vec!["--dir", dir.to_str().unwrap(), "-C", "1", "-W", "3", "--frame-interval", "0.1"];
        args.extend(["--mode", mode, "-Z", "nobody", "--http", addr, "--http-token-file"]);
        args.push(token.to_str().unwrap());
        args.extend(archive.iter().map(String::as_str));
        if mode == "afxdp" {
            args.push("--force"); // the bed's veth has an address; the API is on loopback
        }
        let traced = start_traced(&bed, &log, &args);
        let last = seqs.end - 1;
        send(&bed, seqs.map(known_frame).collect());
        // Slowed by strace, the daemon writes the last frame a while after it came.
        wait_until(&format!("frame {last} is stored"), WAIT, || {
            common::seqs(&get(&bed, addr, "/v1/pcap?last=1h", Some("filtered")).body).contains(&last)
        });
        let name = format!("traced-{mode}");
        ringcap(&["pin", "--last", "1h", "--name", &name]);
        wait_until(&format!("the pin {name} is archived"), Duration::from_secs(90), || {
            let pin = get(&bed, addr, &format!("/v1/pins/{name}"), Some("filtered"));
            serde_json::from_slice::<serde_json::Value>(&pin.body).unwrap()["state"] == "archived"
        });
        ringcap(&["unpin", &name]);
        // Both in another ring file: SIGHUP starts one, the rest fill it.
        signal_traced(&traced, libc::SIGHUP);
        for route in ["/v1/pcap?last=1h&filter=udp", "/v1/files", "/v1/stats", "/v1/pins", "/metrics"] {
            assert_eq!(get(&bed, addr, route, Some("filtered")).status, 200, "{route}");
        }
        stop_traced(traced);
        made.extend(traced_syscalls(&std::fs::read_to_string(&log).unwrap()));
    }
    assert!(
        made.contains("bpf") && made.contains("setresuid"),
        "the trace holds the daemon's calls: {made:?}"
    );
    let refused: Vec<&String> = made.iter().filter(|call| !allowed.contains(*call)).collect();
    assert!(refused.is_empty(), "the unit's SystemCallFilter= refuses calls the daemon makes: {refused:?}");
}

/// Every `name{label="value"}` the dashboard's queries name: the metric names, and the
/// exact label matchers beside them.
fn dashboard_series() -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(DIST).join("grafana/ringcap.json")).unwrap())
            .unwrap();
    let mut names = BTreeSet::new();
    let mut labels = BTreeSet::new();
    // The panels' queries, and the annotations' (trigger firings).
    let panels =
        dashboard["panels"].as_array().unwrap().iter().flat_map(|p| p["targets"].as_array().unwrap());
    for target in panels.chain(dashboard["annotations"]["list"].as_array().unwrap()) {
        let expr = target["expr"].as_str().unwrap();
        let mut rest = expr;
        while let Some(at) = rest.find("ringcap_") {
            let name: String =
                rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            rest = &rest[at + name.len()..];
            if let Some(matchers) = rest.strip_prefix('{').and_then(|r| r.split_once('}')).map(|(m, _)| m) {
                for matcher in matchers.split(',') {
                    if let Some((label, value)) = matcher.split_once("=\"") {
                        labels.insert((label.trim().to_string(), value.trim_end_matches('"').to_string()));
                    }
                }
            }
            names.insert(name);
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
        &[
            "--dir",
            dir.to_str().unwrap(),
            "-G",
            "0",
            "--direction",
            "both",
            "--http",
            addr,
            "--http-no-auth",
            // A rule, so the trigger series (the dashboard's annotations) have samples.
            "--trigger",
            "quiet: rate(packets_dropped) > 1000000/s",
        ],
    );
    // The RTT histograms appear with the first publication of the counters (after a second).
    let scrape = || String::from_utf8(get(&bed, addr, "/metrics", None).body).unwrap();
    wait_until("/metrics has the RTT histograms", Duration::from_secs(15), || {
        scrape().contains("ringcap_tcp_rtt_seconds_bucket{")
    });
    let metrics = scrape();
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
        // On a series of a metric the dashboard queries, not anywhere in the text.
        let matcher = format!("{label}=\"{value}\"");
        let selected = metrics.lines().filter(|l| !l.starts_with('#')).any(|line| {
            let (name, rest) = line.split_once('{').unwrap_or((line, ""));
            let labels = rest.split_once('}').map_or("", |(labels, _)| labels);
            names.contains(name) && labels.split(',').any(|pair| pair == matcher)
        });
        assert!(selected, "the dashboard selects {matcher}, which no series it queries has");
    }
}

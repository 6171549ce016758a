//! Pins and the archive, against a real Garage server (S3-compatible object storage)
//! started in the test bed: a pin survives rotation and arrives whole after a restart,
//! an upload cut by the server's death resumes with nothing lost or doubled, wrong
//! credentials are a clear error while capture goes on, and `pull --from` gives exactly
//! what a local pull of the same window gives.
mod common;

use common::OutputWithin;

use std::collections::BTreeMap;
use std::time::Duration;

use capture_daemon::timefmt::{rfc3339, unix_now_ns};
use common::{bed, get, known_frame, scratch, send, seqs, stop, token_file, tree_bytes, Garage, RINGCAP};
use ringcap_tools::frames::sequence_of;
use ringcap_tools::harness::{read_pcap_bytes, summary_count};
use ringcap_tools::testbed::TestBed;
use sha2::Digest;

const TOKEN: &str = "s3cret";

/// The daemon's counter or gauge `series` (name with labels, as /metrics prints it).
fn metric(bed: &TestBed, addr: &str, series: &str) -> u64 {
    let response = get(bed, addr, "/metrics", Some(TOKEN));
    let text = String::from_utf8_lossy(&response.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

/// Polls until `done` holds (or fails the test after 90 s, saying `what`): uploads take a while.
fn wait_until(what: &str, done: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(90), done);
}

fn pin_state(bed: &TestBed, addr: &str, name: &str) -> serde_json::Value {
    let response = get(bed, addr, &format!("/v1/pins/{name}"), Some(TOKEN));
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    serde_json::from_slice(&response.body).unwrap()
}

/// `ringcap ARGS` in the receiving namespace, which must succeed; its stdout.
fn ringcap(bed: &TestBed, args: &[&str]) -> Vec<u8> {
    bed.rx(RINGCAP).args(args).succeed().0
}

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that the archive holds pin `name` whole: exactly its four objects, each with the
/// size and SHA-256 its manifest gives. Returns the manifest.
fn assert_archived_whole(objects: &BTreeMap<String, Vec<u8>>, name: &str) -> serde_json::Value {
    let prefix = format!("fleet/{}/pins/{name}/", Garage::HOST);
    let pin_objects: BTreeMap<&str, &Vec<u8>> =
        objects.iter().filter_map(|(key, bytes)| Some((key.strip_prefix(&prefix)?, bytes))).collect();
    let manifest: serde_json::Value = serde_json::from_slice(pin_objects["manifest.json"]).unwrap();
    let generation = manifest["generation"].as_str().expect("a generation").to_string();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(pin_objects.len(), files.len() + 1, "the pin's objects, once each: {:?}", pin_objects.keys());
    for file in files {
        let stored = pin_objects[format!("{generation}/{}", file["name"].as_str().unwrap()).as_str()];
        assert_eq!(stored.len() as u64, file["bytes"].as_u64().unwrap(), "{file}");
        assert_eq!(sha256(stored), file["sha256"].as_str().unwrap(), "{file}");
    }
    manifest
}

/// Garage's count of multipart uploads begun and neither completed nor aborted, from
/// `garage bucket info`.
fn unfinished_multipart_uploads(info: &str) -> u64 {
    // "Unfinished uploads:\tN multipart uploads", shown only when there are some.
    info.lines()
        .filter_map(|line| line.strip_prefix("Unfinished uploads:"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A daemon under test: its ring, token and API address, in the bed's receiving namespace.
struct Daemon {
    dir: std::path::PathBuf,
    token: std::path::PathBuf,
    addr: String,
}

impl Daemon {
    fn new(port: u16) -> Self {
        Daemon { dir: scratch("ring"), token: token_file(TOKEN), addr: format!("127.0.0.1:{port}") }
    }

    fn d(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    fn t(&self) -> &str {
        self.token.to_str().unwrap()
    }

    /// `run` on this ring with the API, `--frame-interval 0.1` and `extra`.
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        common::api_daemon_args(self.d(), &self.addr, self.t(), extra)
    }

    fn start(&self, bed: &TestBed, extra: &[&str]) -> ringcap_tools::harness::CaptureProcess {
        common::start_api_daemon(bed, &self.dir, &self.addr, &self.token, extra)
    }

    fn pin(&self, bed: &TestBed, args: &[&str]) -> String {
        let (stdout, _) =
            common::api_client(bed, &self.addr, &self.token, &[&["pin"], args].concat()).succeed();
        String::from_utf8_lossy(&stdout).into_owned()
    }

    fn metric(&self, bed: &TestBed, series: &str) -> u64 {
        metric(bed, &self.addr, series)
    }

    fn pin_state(&self, bed: &TestBed, name: &str) -> serde_json::Value {
        pin_state(bed, &self.addr, name)
    }
}

/// Sends frames `seqs` and returns the `--since`/`--until` window that holds exactly them.
fn send_window(bed: &TestBed, daemon: &Daemon, seqs: std::ops::Range<u64>) -> [String; 4] {
    window_around(bed, daemon, seqs.clone(), || send(bed, seqs.map(known_frame).collect()))
}

/// Runs `send`, which sends frames `seqs`, and returns the `--since`/`--until` window that
/// holds exactly them: it opens once every frame sent before is stored and closes once
/// these are, so no frame sent before or after falls in it.
fn window_around(
    bed: &TestBed,
    daemon: &Daemon,
    seqs: std::ops::Range<u64>,
    send: impl FnOnce(),
) -> [String; 4] {
    if seqs.start > 0 {
        wait_stored(bed, daemon, seqs.start - 1);
    }
    let since = rfc3339(unix_now_ns());
    send();
    wait_stored(bed, daemon, seqs.end - 1);
    ["--since".into(), since, "--until".into(), rfc3339(unix_now_ns())]
}

/// Waits until the newest test frame the ring holds is frame `last` (frames are sent in order).
fn wait_stored(bed: &TestBed, daemon: &Daemon, last: u64) {
    wait_until(&format!("frame {last} is stored"), || {
        let pcap = ringcap(bed, &["pull", "--dir", daemon.d(), "--last", "10m", "--format", "pcap"]);
        let packets = read_pcap_bytes(&pcap).unwrap();
        packets.iter().filter_map(|p| sequence_of(&p.data)).next_back() == Some(last)
    });
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `pull --from` the archive equals `pull --dir` of the ring, for each filter.
fn assert_pull_from_equals_local(
    bed: &TestBed,
    daemon: &Daemon,
    garage: &Garage,
    window: &[&str],
    filters: &[&[&str]],
) {
    let from = garage.ringcap_args("from");
    for filter in filters {
        let local = ringcap(bed, &[&["pull", "--dir", daemon.d()], window, filter].concat());
        let archived = ringcap(bed, &[&["pull"], &strs(&from)[..], window, filter].concat());
        assert!(!seqs(&local).is_empty(), "{filter:?}");
        assert_eq!(archived, local, "pull --from equals the local pull ({filter:?})");
    }
}

/// A pin taken with `-W` about to rotate its window away survives the rotation; the daemon
/// started again with `--archive` uploads it, whole, and releases the local copy.
#[test]
fn a_pinned_window_survives_rotation_and_is_archived_whole_after_a_restart() {
    let bed = bed();
    let garage = Garage::start(&bed);
    let daemon = Daemon::new(18090);
    let rotating = ["-C", "1", "-W", "3", "--no-compress"];
    let ring = daemon.start(&bed, &rotating);
    let window = send_window(&bed, &daemon, 0..3000);
    let window = strs(&window);
    let said = daemon.pin(&bed, &[&window[..], &["--name", "incident"]].concat());
    assert!(said.contains("incident pinned") && said.contains("3000 packets"), "{said}");
    // Far more than three 1 MB files hold: the window's files rotate out of the ring.
    send(&bed, (3000..20_000).map(known_frame).collect());
    wait_stored(&bed, &daemon, 19_999);
    let from_ring = ringcap(&bed, &[&["pull", "--dir", daemon.d()], &window[..]].concat());
    assert_eq!(seqs(&from_ring), Vec::<u64>::new(), "rotation removed the window from the ring");
    let pin_dir = daemon.dir.join("pins/incident");
    let from_pin = ringcap(&bed, &[&["pull", "--dir", pin_dir.to_str().unwrap()], &window[..]].concat());
    assert_eq!(seqs(&from_pin), (0..3000).collect::<Vec<_>>(), "the pin holds the whole window");
    let stderr = stop(ring);
    assert!(summary_count(&stderr, "removed by -W/--max-disk").unwrap() > 0, "{stderr:?}");

    let archive = garage.ringcap_args("archive");
    let ring = daemon.start(&bed, &[&rotating[..], &strs(&archive)[..]].concat());
    wait_until("the pin is archived", || daemon.pin_state(&bed, "incident")["state"] == "archived");
    assert_eq!(
        file_names(&pin_dir),
        ["archived.json", "manifest.json"],
        "the local copy is released once the archive holds it; its manifest stays"
    );
    let location = "s3://ringcap/fleet/".to_string() + Garage::HOST + "/pins/incident/";
    assert_eq!(daemon.pin_state(&bed, "incident")["archive"], location.as_str());
    assert_eq!(daemon.metric(&bed, "ringcap_archive_uploaded_total{kind=\"pin\"}"), 1);
    let manifest = assert_archived_whole(&garage.objects("fleet"), "incident");
    assert_eq!(manifest["packets"], 3000);
    // Made before the daemon archived (or knew its --archive-host): the machine's name.
    assert_eq!(manifest["host"], capture_daemon::archive::gateway_name(None).unwrap());
    let from = garage.ringcap_args("from");
    let from_archive = ringcap(&bed, &[&["pull"], &strs(&from)[..], &window[..]].concat());
    assert_eq!(from_archive, from_pin, "the archive gives the pin's packets, byte for byte");
    stop(ring);
    // A restart without the archive still lists the pin as archived, with its manifest.
    let ring = daemon.start(&bed, &rotating);
    let pin = daemon.pin_state(&bed, "incident");
    assert_eq!((&pin["state"], &pin["archive"]), (&"archived".into(), &location.as_str().into()), "{pin}");
    assert_eq!(pin["manifest"]["packets"], 3000);
    assert_eq!(
        daemon.metric(&bed, "ringcap_pinned_bytes"),
        pin["bytes"].as_u64().unwrap(),
        "the manifest's bytes"
    );
    ringcap(&bed, &["unpin", "--http", &daemon.addr, "--http-token-file", daemon.t(), "incident"]);
    assert!(!pin_dir.exists(), "unpinning an archived pin removes what was left of it");
    stop(ring);
}

fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// The server dies while a pin's data file goes up in parts: the failures are counted,
/// the upload resumes once the server is back, and the bucket ends with each object once,
/// whole, and no unfinished multipart upload. `pull --from` then equals a local pull of the
/// same window, filtered or not.
#[test]
fn an_upload_cut_by_the_server_resumes_and_pull_from_equals_a_local_pull() {
    let bed = bed();
    let mut garage = Garage::start(&bed);
    let daemon = Daemon::new(18091);
    let archive = garage.ringcap_args("archive");
    let ring =
        daemon.start(&bed, &[&["--no-compress", "--archive-rate", "2M"][..], &strs(&archive)[..]].concat());
    // About 11 MB of pcap: the data file goes up in three parts, 2.5 s apart at 2 MB/s.
    let window = send_window(&bed, &daemon, 0..20_000);
    let window = strs(&window);
    daemon.pin(&bed, &[&window[..], &["--name", "cut"]].concat());
    wait_until("the first part is sent", || daemon.metric(&bed, "ringcap_archive_bytes_total") >= 5 << 20);
    garage.kill();
    wait_until("the failure is counted", || {
        daemon.metric(&bed, "ringcap_archive_upload_failures_total{kind=\"network\"}") >= 1
    });
    assert_eq!(daemon.pin_state(&bed, "cut")["state"], "pinned", "not archived while the server is down");
    garage.resume();
    wait_until("the pin is archived", || daemon.pin_state(&bed, "cut")["state"] == "archived");
    let mut objects = garage.objects("fleet");
    let owner = format!("fleet/{}/owner.json", Garage::HOST);
    assert!(objects.remove(&owner).is_some(), "the daemon claimed its host name");
    assert_eq!(objects.len(), 4, "each object once, nothing else: {:?}", objects.keys());
    let manifest = assert_archived_whole(&objects, "cut");
    assert_eq!(manifest["packets"], 20_000);
    let info = garage.cli(&["bucket", "info", Garage::BUCKET]);
    assert_eq!(unfinished_multipart_uploads(&info), 0, "{info}");
    assert_eq!(daemon.metric(&bed, "ringcap_archive_upload_failures_total{kind=\"auth\"}"), 0);
    assert_pull_from_equals_local(
        &bed,
        &daemon,
        &garage,
        &window,
        &[&[], &["udp", "and", "greater", "1000"]],
    );
    let all = ringcap(&bed, &[&["pull", "--dir", daemon.d()], &window[..]].concat());
    assert_eq!(seqs(&all), (0..20_000).collect::<Vec<_>>());
    stop(ring);
}

/// Credentials the server refuses: said at start in words that name the fix, counted in
/// /metrics on every attempt, and capture and pinning go on locally without loss.
#[test]
fn wrong_credentials_are_a_clear_error_and_capture_goes_on() {
    let bed = bed();
    let garage = Garage::start(&bed);
    let daemon = Daemon::new(18092);
    let wrong = garage.credentials_file(&"f".repeat(64));
    let access = [
        "--archive-endpoint",
        &garage.endpoint,
        "--archive-region",
        Garage::REGION,
        "--archive-credentials",
        wrong.to_str().unwrap(),
    ];
    let mut command = bed.rx(RINGCAP);
    command.args(["run", "-i", ringcap_tools::testbed::RX_IF]);
    command.args(daemon.args(&[&["--archive", "s3://ringcap/fleet"], &access[..]].concat()));
    let mut ring = ringcap_tools::harness::CaptureProcess::spawn(command).unwrap();
    assert!(ring.wait_for("refused the credentials", Duration::from_secs(20)), "{:?}", ring.stderr);
    assert!(ring.stderr.iter().any(|l| l.contains("AWS_ACCESS_KEY_ID") && l.contains("capture goes on")));
    assert!(ring.wait_listening(), "{:?}", ring.stderr);
    let window = send_window(&bed, &daemon, 0..1000);
    let window = strs(&window);
    let said = daemon.pin(&bed, &[&window[..], &["--name", "kept", "udp"]].concat());
    assert!(said.contains("1000 packets"), "{said}");
    wait_until("the refusal is counted", || {
        daemon.metric(&bed, "ringcap_archive_upload_failures_total{kind=\"auth\"}") >= 1
    });
    assert_eq!(daemon.pin_state(&bed, "kept")["state"], "pinned", "kept locally");
    let pulled = ringcap(&bed, &[&["pull", "--dir", daemon.d()], &window[..]].concat());
    assert_eq!(seqs(&pulled), (0..1000).collect::<Vec<_>>(), "capture went on without loss");
    assert!(garage.objects("fleet").is_empty(), "nothing reached the bucket");
    // The reader of the archive is told the same.
    let refused_pcap = scratch("refused.pcap");
    let pull = [
        &["pull", "--from", "s3://ringcap/fleet", "-w", refused_pcap.to_str().unwrap()],
        &access[..],
        &window[..],
    ];
    let output = bed.rx(RINGCAP).args(pull.concat()).output_within_deadline();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("refused the credentials"), "{stderr}");
    stop(ring);
}

/// With `--archive-ring`, each ring file goes up once it closes, and `pull --from` reads
/// the archived files with their indexes: the same packets as the local ring.
#[test]
fn archived_ring_files_pull_like_the_ring() {
    let bed = bed();
    let garage = Garage::start(&bed);
    let daemon = Daemon::new(18093);
    let archive = garage.ringcap_args("archive");
    let extra = ["-C", "1", "--no-compress", "--archive-ring", "--frame-bytes", "65536"];
    let ring = daemon.start(&bed, &[&extra[..], &strs(&archive)[..]].concat());
    let window = send_window(&bed, &daemon, 0..6000);
    let window = strs(&window);
    // More traffic closes the files that hold the window.
    send(&bed, (6000..30_000).map(known_frame).collect());
    wait_stored(&bed, &daemon, 29_999);
    let closed = capture_daemon::storage::manifest::ring_files(&daemon.dir).unwrap().len() as u64 - 1;
    assert!(closed >= 2, "{closed} closed files");
    wait_until("the closed files are archived", || {
        daemon.metric(&bed, "ringcap_archive_uploaded_total{kind=\"ring_file\"}") >= closed
    });
    assert_eq!(daemon.metric(&bed, "ringcap_archive_ring_files_missed_total"), 0);
    assert_pull_from_equals_local(&bed, &daemon, &garage, &window, &[&[], &["udp", "and", "less", "200"]]);
    let from = garage.ringcap_args("from");
    let all = ringcap(&bed, &[&["pull"], &strs(&from)[..], &window[..]].concat());
    assert_eq!(seqs(&all), (0..6000).collect::<Vec<_>>());
    stop(ring);
}

/// A host's archive holds the same packets more than once: pins (one filtered, inside
/// another) copied from ring files that are archived too, and a pin of packets whose ring
/// file is still open and not archived. `pull --from` gives every packet once: the same
/// packets as the local ring, none missed, none twice.
#[test]
fn pins_and_ring_files_of_a_host_pull_each_packet_once() {
    let bed = bed();
    let garage = Garage::start(&bed);
    let daemon = Daemon::new(18096);
    let archive = garage.ringcap_args("archive");
    let extra = ["-C", "1", "--no-compress", "--archive-ring", "--frame-bytes", "65536"];
    let ring = daemon.start(&bed, &[&extra[..], &strs(&archive)[..]].concat());
    let early = send_window(&bed, &daemon, 0..6000);
    let early = strs(&early);
    daemon.pin(&bed, &[&early[..], &["--name", "early"]].concat());
    daemon.pin(&bed, &[&early[..], &["--name", "early-small", "udp", "and", "less", "200"]].concat());
    // More traffic closes the files that hold the early window.
    send(&bed, (6000..30_000).map(known_frame).collect());
    let late = send_window(&bed, &daemon, 30_000..31_000);
    let late = strs(&late);
    daemon.pin(&bed, &[&late[..], &["--name", "late"]].concat());
    for pin in ["early", "early-small", "late"] {
        wait_until("the pins are archived", || daemon.pin_state(&bed, pin)["state"] == "archived");
    }
    let files = capture_daemon::storage::manifest::ring_files(&daemon.dir).unwrap();
    let closed = files.len() as u64 - 1;
    wait_until("the closed files are archived", || {
        daemon.metric(&bed, "ringcap_archive_uploaded_total{kind=\"ring_file\"}") >= closed
    });
    let open = files.last().unwrap().file_name().unwrap().to_str().unwrap().to_string();
    let objects = garage.objects("fleet");
    assert!(
        !objects.keys().any(|key| key.ends_with(&format!("/ring/{open}"))),
        "the newest packets are in the archive only as the late pin: {:?}",
        objects.keys()
    );
    let window = ["--since", early[1], "--until", late[3]];
    let local = ringcap(&bed, &[&["pull", "--dir", daemon.d()], &window[..]].concat());
    let from = garage.ringcap_args("from");
    let archived = ringcap(&bed, &[&["pull"], &strs(&from)[..], &window[..]].concat());
    let sorted = |pcap: &[u8]| {
        let mut seqs = seqs(pcap);
        seqs.sort_unstable();
        seqs
    };
    assert_same_packets(
        &sorted(&local),
        &(0..31_000).collect::<Vec<_>>(),
        "the local ring holds every packet",
    );
    assert_same_packets(&sorted(&archived), &sorted(&local), "each packet once from the archive");
    let filter = ["udp", "and", "less", "200"];
    let local = ringcap(&bed, &[&["pull", "--dir", daemon.d()], &early[..], &filter[..]].concat());
    let archived = ringcap(&bed, &[&["pull"], &strs(&from)[..], &early[..], &filter[..]].concat());
    assert!(!seqs(&local).is_empty());
    assert_same_packets(&sorted(&archived), &sorted(&local), "filtered, each packet once");
    stop(ring);
}

/// Equal lists of sequence numbers (sorted); if not, how many and the first that differ.
fn assert_same_packets(got: &[u64], expected: &[u64], what: &str) {
    if got != expected {
        let differ: Vec<_> = got.iter().zip(expected).filter(|(g, e)| g != e).take(5).collect();
        panic!(
            "{what}: {} packets where {} were expected; first that differ (got, expected): {differ:?}",
            got.len(),
            expected.len()
        );
    }
}

/// Pins count against the budget: one that would pass `--max-pinned` is refused with the
/// reason (and the API's 507), one that fits is held and counted, and an unpin gives its
/// bytes back. Bad pin requests are 400s that name the problem.
#[test]
fn a_pin_over_the_budget_is_refused_with_the_reason() {
    let bed = bed();
    let daemon = Daemon::new(18094);
    let ring = daemon.start(&bed, &["--no-compress", "--max-disk", "40M", "--max-pinned", "1M"]);
    let window = send_window(&bed, &daemon, 0..5000);
    let window = strs(&window);
    let pin =
        [&["pin", "--http", &daemon.addr, "--http-token-file", daemon.t(), "--name", "big"], &window[..]];
    let refused = bed.rx(RINGCAP).args(pin.concat()).output_within_deadline();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("507") && stderr.contains("--max-pinned"),
        "{stderr}"
    );
    // The 60- and 61-byte frames fit.
    let said = daemon.pin(&bed, &[&window[..], &["--name", "small", "udp", "and", "less", "61"]].concat());
    let small = (0..5000u64).filter(|&seq| known_frame(seq).len() <= 61).count();
    assert!(said.contains(&format!("{small} packets")), "{said}");
    let pinned = daemon.metric(&bed, "ringcap_pinned_bytes");
    assert!(pinned > 0 && pinned < 1 << 20, "{pinned}");
    assert_eq!(daemon.metric(&bed, "ringcap_pins"), 1);
    // A bad request is 400; a name already taken, 409 (Conflict).
    for (target, status, why) in [
        ("/v1/pins?last=10m&name=../x", 400, "pin name"),
        ("/v1/pins?last=10m&name=small", 409, "exists"),
        ("/v1/pins?last=10m&filter=port%20banana", 400, "port"),
        ("/v1/pins?name=x", 400, "--last"),
        ("/v1/pins?last=10m&bogus=1", 400, "unknown parameter"),
    ] {
        let response = common::post(&bed, &daemon.addr, target, Some(TOKEN));
        let body = String::from_utf8_lossy(&response.body);
        assert_eq!(response.status, status, "{target}: {body}");
        assert!(body.contains(why), "{target}: {body}");
    }
    ringcap(&bed, &["unpin", "--http", &daemon.addr, "--http-token-file", daemon.t(), "small"]);
    assert_eq!(daemon.metric(&bed, "ringcap_pinned_bytes"), 0);
    assert!(!daemon.dir.join("pins/small").exists());
    stop(ring);
}

/// A pin's bytes count against `--max-disk`: the ring shrinks to make room for it, the
/// pin itself is never removed, and ring and pin together stay under the budget.
#[test]
fn the_ring_shrinks_for_pinned_bytes_and_the_pin_survives() {
    let bed = bed();
    let daemon = Daemon::new(18096);
    let ring =
        daemon.start(&bed, &["--no-compress", "-C", "0.25", "--frame-bytes", "65536", "--max-disk", "2M"]);
    let window = send_window(&bed, &daemon, 0..1500);
    let window = strs(&window);
    let said = daemon.pin(&bed, &[&window[..], &["--name", "kept"]].concat());
    assert!(said.contains("1500 packets"), "{said}");
    let pinned = daemon.metric(&bed, "ringcap_pinned_bytes");
    let pin_dir = daemon.dir.join("pins/kept");
    assert_eq!(pinned, tree_bytes(&pin_dir), "ringcap_pinned_bytes is what the pin holds");
    assert!(pinned > 800_000, "{pinned} bytes pinned");
    // Three times the budget of traffic after the pin.
    send(&bed, (1500..12_000).map(known_frame).collect());
    let stderr = stop(ring);
    let total = tree_bytes(&daemon.dir);
    assert!(total <= 2 << 20, "ring and pin hold {total} bytes over a 2 MiB budget");
    assert!(summary_count(&stderr, "removed by -W/--max-disk").unwrap() > 0, "{stderr:?}");
    let from_pin = ringcap(&bed, &[&["pull", "--dir", pin_dir.to_str().unwrap()], &window[..]].concat());
    assert_eq!(seqs(&from_pin), (0..1500).collect::<Vec<_>>(), "the pin holds its whole window");
    let from_ring = ringcap(&bed, &["pull", "--dir", daemon.d(), "--last", "1h"]);
    let kept = seqs(&from_ring);
    assert_eq!(kept.last(), Some(&11_999), "the ring keeps the newest packets");
    assert_eq!(kept, (kept[0]..12_000).collect::<Vec<_>>(), "and drops only the oldest");

    // What a crash in the middle of a copy leaves: removed at the next start, never listed.
    let partial = daemon.dir.join("pins/.crashed.partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("crashed-0.pcap"), vec![0u8; 4096]).unwrap();
    // A pin whose manifest no longer reads: listed without it, with a warning, its bytes
    // counted, and unpinned like any other. (Before, it vanished from the list unsaid.)
    let garbled = daemon.dir.join("pins/garbled");
    std::fs::create_dir_all(&garbled).unwrap();
    std::fs::write(garbled.join("garbled.pcap"), vec![0u8; 1000]).unwrap();
    std::fs::write(garbled.join("manifest.json"), b"{ not a manifest").unwrap();
    let garbled_bytes = tree_bytes(&garbled);
    let ring =
        daemon.start(&bed, &["--no-compress", "-C", "0.25", "--frame-bytes", "65536", "--max-disk", "2M"]);
    assert!(!partial.exists(), "the partial copy is removed at start");
    let warned = ring.stderr.iter().any(|l| l.contains("pin garbled: its manifest.json cannot be read"));
    assert!(warned, "{:?}", ring.stderr);
    let listed = get(&bed, &daemon.addr, "/v1/pins", Some(TOKEN));
    let listed: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    let names: Vec<&str> =
        listed["pins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["garbled", "kept"], "{listed}");
    assert_eq!(
        (&listed["pins"][0]["state"], &listed["pins"][0]["manifest"]),
        (&"pinned".into(), &serde_json::Value::Null)
    );
    assert_eq!(listed["pins"][1]["state"], "pinned");
    let both = pinned + garbled_bytes;
    assert_eq!(daemon.metric(&bed, "ringcap_pinned_bytes"), both, "the same pins, the same bytes");
    common::api_client(&bed, &daemon.addr, &daemon.token, &["unpin", "garbled"]).succeed();
    assert!(!garbled.exists(), "unpinned");
    assert_eq!(daemon.metric(&bed, "ringcap_pinned_bytes"), pinned);
    stop(ring);
}

/// Pin `name` of `window` (filtered by `filter`), waits until it is archived; its
/// manifest as the daemon lists it.
fn pin_and_archive(
    bed: &TestBed,
    daemon: &Daemon,
    window: &[&str],
    name: &str,
    filter: &[&str],
) -> serde_json::Value {
    daemon.pin(bed, &[window, &["--name", name], filter].concat());
    wait_until("the pin is archived", || daemon.pin_state(bed, name)["state"] == "archived");
    daemon.pin_state(bed, name)["manifest"].clone()
}

/// A pin unpinned after its upload and pinned again under the same name, over packets of
/// the same sizes but other bytes: the archive never mixes the two. Each generation's files
/// are apart, the old ones go once the new manifest is in, and `pull --from` gives the new
/// pin byte for byte as the local ring does. (Before, objects of the old pin with the sizes
/// the new manifest named were kept and the local copy released: damaged bytes.)
#[test]
fn a_new_pin_of_an_archived_name_never_mixes_with_the_old_one() {
    let bed = bed();
    let garage = Garage::start(&bed);
    let daemon = Daemon::new(18097);
    let archive = garage.ringcap_args("archive");
    let ring = daemon.start(&bed, &[&["--no-compress"][..], &strs(&archive)[..]].concat());
    // Sizes cycle every 17 frames: these two windows hold the same sizes, other bytes.
    let first = send_window(&bed, &daemon, 0..1700);
    let first = strs(&first);
    let old = pin_and_archive(&bed, &daemon, &first, "incident", &[]);
    ringcap(&bed, &["unpin", "--http", &daemon.addr, "--http-token-file", daemon.t(), "incident"]);
    let second = send_window(&bed, &daemon, 1700..3400);
    let second = strs(&second);
    let new = pin_and_archive(&bed, &daemon, &second, "incident", &[]);
    assert_eq!(old["files"][0]["bytes"], new["files"][0]["bytes"], "the same sizes: {old} {new}");
    assert_ne!(old["files"][0]["sha256"], new["files"][0]["sha256"]);
    assert_ne!(old["generation"], new["generation"]);
    let objects = garage.objects("fleet");
    let manifest = assert_archived_whole(&objects, "incident");
    assert_eq!(manifest["generation"], new["generation"], "the old generation's objects are gone");
    let from = garage.ringcap_args("from");
    let local = ringcap(&bed, &[&["pull", "--dir", daemon.d()], &second[..]].concat());
    let archived = ringcap(&bed, &[&["pull"], &strs(&from)[..], &second[..]].concat());
    assert_eq!(seqs(&local), (1700..3400).collect::<Vec<_>>());
    assert_eq!(archived, local, "the new pin, byte for byte");
    let archived = ringcap(&bed, &[&["pull"], &strs(&from)[..], &first[..]].concat());
    assert_eq!(seqs(&archived), Vec::<u64>::new(), "nothing of the old pin is read");
    stop(ring);
}

/// A pcapng ring (two interfaces, both directions): its pins are pcapng too and keep each
/// packet's interface and direction, so `pull --from` over archived ring files and a pin
/// of the same packets gives each packet once, equal byte for byte to the local pull.
/// (Before, the pin was classic pcap without interfaces: every packet came twice.)
#[test]
fn pins_of_a_pcapng_ring_keep_interfaces_and_pull_once_from_the_archive() {
    let bed = common::two_pair_bed();
    let garage = Garage::start(&bed);
    let daemon = Daemon::new(18098);
    let archive = garage.ringcap_args("archive");
    let extra = ["-i", ringcap_tools::testbed::RX2_IF, "--direction", "both", "-C", "1", "--no-compress"];
    let ring = daemon.start(&bed, &[&extra[..], &["--archive-ring"], &strs(&archive)[..]].concat());
    let window = window_around(&bed, &daemon, 0..4000, || {
        common::send_alternating(&bed, &(0..4000).map(known_frame).collect::<Vec<_>>(), 20)
    });
    let window = strs(&window);
    let manifest = pin_and_archive(&bed, &daemon, &window, "both-ways", &[]);
    assert!(manifest["data"].as_str().unwrap().ends_with(".pcapng"), "{manifest}");
    // More traffic closes the files that hold the window; they are archived too.
    common::send_alternating(&bed, &(4000..12_000).map(known_frame).collect::<Vec<_>>(), 20);
    let files = capture_daemon::storage::manifest::ring_files(&daemon.dir).unwrap();
    let closed = files.len() as u64 - 1;
    wait_until("the closed files are archived", || {
        daemon.metric(&bed, "ringcap_archive_uploaded_total{kind=\"ring_file\"}") >= closed
    });
    let from = garage.ringcap_args("from");
    // Without --format, both pulls write pcapng: the files hold it.
    for format in [&["--format", "pcap"][..], &["--format", "pcapng"], &[]] {
        let local = ringcap(&bed, &[&["pull", "--dir", daemon.d()], &window[..], format].concat());
        let archived = ringcap(&bed, &[&["pull"], &strs(&from)[..], &window[..], format].concat());
        if format.contains(&"pcap") {
            assert_eq!(seqs(&local), (0..4000).collect::<Vec<_>>());
            assert_eq!(seqs(&archived), (0..4000).collect::<Vec<_>>(), "each packet once");
        } else {
            assert_eq!(archived[..4], [0x0a, 0x0d, 0x0d, 0x0a], "{format:?}: a pcapng section");
        }
        assert_eq!(archived, local, "{format:?}: each packet once, with its interface and direction");
    }
    stop(ring);
}

/// A pin whose data changed on disk fails its upload; it moves aside (its reason listed
/// with it, the failure counted) and the pin behind it is archived. (Before, the first
/// failing pin was retried forever at the head of the queue and nothing else went up.)
#[test]
fn a_poisoned_pin_moves_aside_and_the_others_are_archived() {
    let bed = bed();
    let garage = Garage::start(&bed);
    let daemon = Daemon::new(18099);
    let ring = daemon.start(&bed, &["--no-compress"]);
    let first = send_window(&bed, &daemon, 0..500);
    daemon.pin(&bed, &[&strs(&first)[..], &["--name", "a-poisoned"]].concat());
    let second = send_window(&bed, &daemon, 500..1000);
    daemon.pin(&bed, &[&strs(&second)[..], &["--name", "b-good"]].concat());
    stop(ring);
    // One byte of a packet changes; the size stays.
    let data = daemon.dir.join("pins/a-poisoned/a-poisoned.pcap");
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let archive = garage.ringcap_args("archive");
    let ring = daemon.start(&bed, &[&["--no-compress"][..], &strs(&archive)[..]].concat());
    wait_until("the good pin is archived", || daemon.pin_state(&bed, "b-good")["state"] == "archived");
    let poisoned = daemon.pin_state(&bed, "a-poisoned");
    assert_eq!(poisoned["state"], "pinned", "{poisoned}");
    let why = poisoned["upload_error"].as_str().unwrap_or_default();
    assert!(why.contains("changed on disk"), "{poisoned}");
    assert!(daemon.metric(&bed, "ringcap_archive_upload_failures_total{kind=\"other\"}") >= 1);
    let listed = String::from_utf8_lossy(&ringcap(
        &bed,
        &["pins", "--http", &daemon.addr, "--http-token-file", daemon.t()],
    ))
    .into_owned();
    assert!(listed.contains("changed on disk"), "`ringcap pins` names the reason: {listed}");
    assert!(!garage
        .objects("fleet")
        .keys()
        .any(|k| k.contains("/a-poisoned/") && k.ends_with("manifest.json")));
    stop(ring);
}

/// A zstd frame of `len` zero bytes: small, and large once decoded.
fn zeros_frame(len: usize) -> Vec<u8> {
    zstd::bulk::compress(&vec![0u8; len], 19).unwrap()
}

/// A damaged or hostile archive: a decompression bomb posing as a ring file (with an
/// index whose entries agree with it), a manifest that is not one, and a pin named `ring`.
/// `pull --from` warns about each and goes on, memory bounded, delivering exactly what the
/// local ring has; and a host name another machine claimed refuses the daemon's start.
#[test]
fn a_hostile_archive_is_skipped_with_warnings_and_the_rest_delivered() {
    use capture_daemon::storage::index::FrameEntry;
    let bed = bed();
    let garage = Garage::start(&bed);
    let daemon = Daemon::new(18100);
    let archive = garage.ringcap_args("archive");
    let ring = daemon.start(&bed, &[&["--no-compress"][..], &strs(&archive)[..]].concat());
    // send_window waits 300 ms before its window starts, and 500 ms after the frames.
    let window = send_window(&bed, &daemon, 0..2000);
    let window = strs(&window);
    // The time of the window's first packet: the bomb's frame is indexed there.
    let first = read_pcap_bytes(&ringcap(&bed, &[&["pull", "--dir", daemon.d()], &window[..]].concat()))
        .unwrap()[0]
        .timestamp
        .as_nanos() as u64;
    pin_and_archive(&bed, &daemon, &window, "ring", &[]);
    stop(ring);
    // The bomb: a pcap header frame, then a frame of a GiB of zeros, indexed as a small one.
    let mut header = Vec::new();
    capture_daemon::pcap::write_file_header(&mut header, 65535).unwrap();
    let (head, bomb) = (zstd::bulk::compress(&header, 1).unwrap(), zeros_frame(1 << 30));
    let entries = [
        FrameEntry {
            offset: 0,
            len: head.len() as u64,
            raw_len: header.len() as u32,
            ..FrameEntry::default()
        },
        FrameEntry {
            offset: head.len() as u64,
            len: bomb.len() as u64,
            raw_offset: header.len() as u64,
            raw_len: 4096,
            packets: 3,
            earliest_ns: first,
            latest_ns: first,
        },
    ];
    let mut index = capture_daemon::storage::index::INDEX_MAGIC_V1.to_vec();
    for entry in entries {
        index.extend_from_slice(&entry.encode());
    }
    let host = format!("fleet/{}", Garage::HOST);
    garage.put(&format!("{host}/ring/bomb.pcap.zst"), [head.clone(), bomb.clone()].concat());
    garage.put(&format!("{host}/ring/bomb.idx"), index);
    // Without an index, the scan meets the bomb too.
    garage.put(&format!("{host}/ring/bare.pcap.zst"), [head, bomb].concat());
    garage.put(&format!("{host}/pins/junk/manifest.json"), b"{ not a manifest".to_vec());
    let from = garage.ringcap_args("from");
    let mut command = bed.rx(RINGCAP);
    command.args([&["pull"], &strs(&from)[..], &window[..]].concat());
    let (status, pulled, stderr, max_rss_kib) = common::run_measured(command);
    assert!(status.success(), "{stderr}");
    assert_eq!(seqs(&pulled), (0..2000).collect::<Vec<_>>(), "the pin named ring, whole: {stderr}");
    for named in ["bomb.pcap.zst", "bare.pcap.zst", "junk"] {
        assert!(stderr.contains(named), "a warning names {named}: {stderr}");
    }
    assert!(max_rss_kib < 400 << 10, "the pull held {max_rss_kib} KiB: decompression is bounded");
    // Another machine's claim on the host name refuses the start, naming the way out.
    garage
        .put(&format!("{host}/owner.json"), br#"{"host":"test-gw","machine_id":"another-machine"}"#.to_vec());
    let mut command = bed.rx(RINGCAP);
    command.args(["run", "-i", ringcap_tools::testbed::RX_IF]).args(daemon.args(&strs(&archive)));
    let (status, _, stderr, _) = common::run_measured(command);
    assert!(
        !status.success() && stderr.contains("another machine") && stderr.contains("--archive-host"),
        "{stderr}"
    );
}

//! The recorder is never the way into the host, never destroys history it was not asked
//! to, and is never stopped or filled by one client: symlinks planted by the daemon's
//! user, umasks, filtered pins against the budget, stalled pulls, crafted indexes, pulls
//! racing rotation and numbers too large for anything.
mod common;

use common::OutputWithin;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use capture_daemon::privileges::User;
use common::{
    bed, get, known_frame, scratch, send, seqs, start_api_daemon, start_ringcap, stop, synthetic_ring,
    token_file, tree, wait_until, RINGCAP, WAIT,
};
use ringcap_tools::harness::{summary_count, CaptureProcess};
use ringcap_tools::testbed::{TestBed, RX_IF};

const TOKEN: &str = "s3cret";

/// `ringcap ARGS` in the bed's receiving namespace, with a deadline; its output.
fn ringcap(bed: &TestBed, args: &[&str]) -> std::process::Output {
    let mut command = bed.rx(RINGCAP);
    command.args(args);
    let (status, stdout, stderr, _) = common::run_measured(command);
    std::process::Output { status, stdout, stderr: stderr.into_bytes() }
}

/// Waits until the ring holds `count` packets (written and readable): a loaded machine
/// may take longer than a frame interval.
fn wait_stored(bed: &TestBed, addr: &str, count: usize) {
    wait_until(&format!("the ring holds {count} packets"), WAIT, || {
        seqs(&get(bed, addr, "/v1/pcap?last=1h", Some(TOKEN)).body).len() >= count
    });
}

/// `ringcap pin` of the last hour as NAME, through the daemon's API; it must succeed.
fn pin_last_hour(bed: &TestBed, addr: &str, token: &Path, name: &str) {
    let token = token.to_str().unwrap();
    let pinned =
        ringcap(bed, &["pin", "--http", addr, "--http-token-file", token, "--last", "1h", "--name", name]);
    assert!(pinned.status.success(), "{}", String::from_utf8_lossy(&pinned.stderr));
}

fn owner(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().uid()
}

/// The daemon's user (here nobody, as an attacker who took it over through the API)
/// plants symlinks where ringcap's own files were, and a symlinked pin; the next root start
/// with `-Z nobody` hands over ringcap's files and nothing they point to. A symlinked
/// `pins` refuses the start, with what to do. (Before, chown followed every link: root's
/// files outside the ring became nobody's.)
#[test]
fn a_root_start_never_follows_a_symlink_the_daemons_user_planted() {
    let nobody = User::lookup("nobody").unwrap();
    let bed = bed();
    let dir = scratch("planted");
    let token = token_file(TOKEN);
    let addr = "127.0.0.1:18110";
    let ring = start_api_daemon(&bed, &dir, addr, &token, &[]);
    send(&bed, (0..300).map(known_frame).collect());
    wait_stored(&bed, addr, 300);
    pin_last_hour(&bed, addr, &token, "kept");
    stop(ring);
    // Root's files outside the ring.
    let victims = scratch("victims");
    std::fs::create_dir_all(victims.join("dir")).unwrap();
    for name in ["index", "list", "stats", "extra", "linked", "dir/file"] {
        std::fs::write(victims.join(name), b"root's").unwrap();
    }
    for path in tree(&dir) {
        std::os::unix::fs::lchown(&path, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let data = capture_daemon::storage::manifest::ring_files(&dir).unwrap().remove(0);
    let index = capture_daemon::storage::index::index_path(&data);
    let plant = |target: &str, link: &Path| {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(victims.join(target), link).unwrap();
    };
    plant("index", &index);
    plant("list", &dir.join("ringcap.archived"));
    plant("stats", &dir.join("pins/kept/kept.stats.json"));
    plant("extra", &dir.join("pins/kept/evil.pcap"));
    plant("dir", &dir.join("pins/linked"));
    // A hard link is no symlink, but it is root's file all the same.
    let snapshots = capture_daemon::storage::index::snapshots_path(&data);
    let _ = std::fs::remove_file(&snapshots);
    std::fs::hard_link(victims.join("linked"), &snapshots).unwrap();
    let mut ring = start_api_daemon(&bed, &dir, addr, &token, &["-Z", "nobody"]);
    assert!(ring.wait_for("running as nobody", WAIT), "{:?}", ring.stderr);
    stop(ring);
    for victim in tree(&victims) {
        assert_eq!(owner(&victim), 0, "{} was handed over through a symlink", victim.display());
    }
    assert_eq!(owner(&data), nobody.uid, "ringcap's own files are handed over");
    assert_eq!(owner(&dir.join("pins/kept/manifest.json")), nobody.uid);
    // A symlinked pins directory: refused, nothing handed over.
    std::fs::rename(dir.join("pins"), dir.join("old-pins")).unwrap();
    std::os::unix::fs::symlink(victims.join("dir"), dir.join("pins")).unwrap();
    let refused =
        ringcap(&bed, &["run", "-i", RX_IF, "--dir", dir.to_str().unwrap(), "-G", "0", "-Z", "nobody"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("symbolic link"), "{stderr}");
    for victim in tree(&victims) {
        assert_eq!(owner(&victim), 0, "{}", victim.display());
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Packets are secrets: under the usual umask 022 a root start makes the ring directory
/// 0700 and every file in it (data, index, manifest, snapshots, pins) 0600; with
/// `--group` the directory is the group's, setgid, 2750, and files 0640. `doctor` warns
/// about a ring others can read, and a credentials file everyone can read is refused.
#[test]
fn what_ringcap_writes_is_private_whatever_the_umask() {
    let bed = bed();
    let token = token_file(TOKEN);
    let nogroup = 65534;
    for (name, group, dir_mode, file_mode) in
        [("private", None, 0o700, 0o600), ("grouped", Some("nogroup"), 0o2750, 0o640)]
    {
        let dir = scratch(name);
        let addr = "127.0.0.1:18111";
        let mut command = bed.rx("sh");
        command.args(["-c", "umask 022; exec \"$0\" \"$@\"", RINGCAP, "run", "-i", RX_IF]);
        command.args(["--dir", dir.to_str().unwrap(), "-G", "0", "--frame-interval", "0.1", "--http", addr]);
        command.args(["--http-token-file", token.to_str().unwrap()]);
        command.args(group.map(|g| ["--group", g]).into_iter().flatten());
        let mut ring = CaptureProcess::spawn(command).unwrap();
        assert!(ring.wait_listening(), "{:?}", ring.stderr);
        send(&bed, (0..300).map(known_frame).collect());
        wait_stored(&bed, addr, 300);
        let pinned = ringcap(
            &bed,
            &["pin", "--http", addr, "--http-token-file", token.to_str().unwrap(), "--last", "1h"],
        );
        assert!(pinned.status.success(), "{}", String::from_utf8_lossy(&pinned.stderr));
        ring.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(300));
        stop(ring);
        let paths = tree(&dir);
        assert!(paths.len() > 8, "data, index, snapshots, manifest, a pin: {paths:?}");
        for path in paths {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let expected = if meta.is_dir() { dir_mode } else { file_mode };
            assert_eq!(mode(&path), expected, "{}: {:o}", path.display(), mode(&path));
            if group.is_some() {
                assert_eq!(meta.gid(), nogroup, "{} is the group's", path.display());
            }
        }
        let doctor =
            Command::new(RINGCAP).args(["doctor", "--dir", dir.to_str().unwrap()]).output_within_deadline();
        assert!(!String::from_utf8_lossy(&doctor.stdout).contains("every local user"));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let doctor =
            Command::new(RINGCAP).args(["doctor", "--dir", dir.to_str().unwrap()]).output_within_deadline();
        let said = String::from_utf8_lossy(&doctor.stdout);
        assert!(said.contains("every local user") && said.contains("chmod o-rwx"), "{said}");
    }
    let credentials = scratch("aws-credentials");
    std::fs::write(&credentials, "[default]\naws_access_key_id = a\naws_secret_access_key = b\n").unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pull = Command::new(RINGCAP)
        .args(["pull", "--from", "s3://bucket/x", "--archive-endpoint", "http://127.0.0.1:9", "--last", "1m"])
        .arg("--archive-credentials")
        .arg(&credentials)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output_within_deadline();
    let stderr = String::from_utf8_lossy(&pull.stderr);
    assert!(!pull.status.success() && stderr.contains("readable by every user"), "{stderr}");
}

/// A filtered pin that matches nothing keeps nothing and costs the ring nothing: every
/// ring file is still there after it (and after more traffic makes the ring enforce its
/// budget). Before, the pin reserved the unfiltered size of the window and the ring
/// removed its oldest files to make that room.
#[test]
fn a_filtered_pin_that_matches_nothing_leaves_every_ring_file() {
    let bed = bed();
    let dir = scratch("pin-nothing");
    let token = token_file(TOKEN);
    let addr = "127.0.0.1:18112";
    let ring = start_api_daemon(&bed, &dir, addr, &token, &["-C", "1", "--no-compress", "--max-disk", "30M"]);
    common::send_paced(&bed, (0..32_000).map(known_frame).collect(), Some(200_000.0));
    std::thread::sleep(Duration::from_millis(500));
    let before = capture_daemon::storage::manifest::ring_files(&dir).unwrap();
    assert!(before.len() >= 15, "{before:?}");
    let t = token.to_str().unwrap();
    let pin = ringcap(
        &bed,
        &[
            "pin",
            "--http",
            addr,
            "--http-token-file",
            t,
            "--last",
            "1h",
            "--name",
            "none",
            "host",
            "203.0.113.9",
        ],
    );
    let stderr = String::from_utf8_lossy(&pin.stderr);
    assert!(!pin.status.success() && stderr.contains("no packet that the filter selects"), "{stderr}");
    // More traffic: the ring enforces its budget after each frame it stores.
    send(&bed, (32_000..32_200).map(known_frame).collect());
    let pinned = get(&bed, addr, "/metrics", Some(TOKEN));
    assert!(String::from_utf8_lossy(&pinned.body).contains("ringcap_pinned_bytes 0\n"));
    let stderr = stop(ring);
    let after = capture_daemon::storage::manifest::ring_files(&dir).unwrap();
    let gone: Vec<_> = before.iter().filter(|f| !after.contains(f)).collect();
    assert!(gone.is_empty(), "the pin cost the ring {} files: {gone:?}", gone.len());
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(32_200), "{stderr:?}");
}

/// One of the daemon's figures in /proc/PID/status (kB for sizes).
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A counter of /metrics (name with labels, as printed).
fn metric(bed: &TestBed, addr: &str, series: &str) -> u64 {
    common::metric(bed, addr, TOKEN, series).unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// 100 clients ask for a pull of the whole ring and never read a byte. At most
/// `MAX_PULLS` (8) pulls run, each holding its permit until it is cut off after
/// `--http-client-timeout` (counted); the rest get 503 at once (counted). Threads and
/// memory stay within the documented bounds, and capture loses nothing. (Before, 80 such
/// clients took the daemon from 174 MB to 2.1 GB and from 5 threads to 85.)
#[test]
fn stalled_pull_clients_cannot_exhaust_the_daemon() {
    use std::io::Write;
    let bed = bed();
    let dir = scratch("stalled");
    let token = token_file(TOKEN);
    let addr = "127.0.0.1:18113";
    let ring = start_api_daemon(&bed, &dir, addr, &token, &["--no-compress", "--http-client-timeout", "3"]);
    common::send_paced(&bed, (0..30_000).map(known_frame).collect(), Some(200_000.0));
    std::thread::sleep(Duration::from_millis(500));
    let pid = ring.child.id();
    let (threads_before, rss_before) = (proc_status(pid, "Threads:"), proc_status(pid, "VmRSS:"));
    let target = addr.to_string();
    let streams = TestBed::in_namespace(&bed.rx_ns, move || {
        (0..100)
            .map(|_| {
                let mut stream = std::net::TcpStream::connect(&target).unwrap();
                let request = format!(
                    "GET /v1/pcap?last=1h HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).unwrap();
                stream
            })
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let (threads, rss) = (proc_status(pid, "Threads:"), proc_status(pid, "VmRSS:"));
    let workers = std::thread::available_parallelism().unwrap().get() as u64;
    let pulls = capture_daemon::api::MAX_PULLS as u64;
    assert!(threads <= threads_before + pulls * (1 + workers) + 4, "{threads_before} -> {threads} threads");
    assert!(rss <= rss_before + pulls * (24 << 10), "{rss_before} -> {rss} kB");
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&bed, addr, "ringcap_http_pulls_not_served_total{reason=\"stalled\"}") < pulls {
        assert!(Instant::now() < deadline, "the stalled pulls were not cut off");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each is cut off once: not again when its last buffered bytes are flushed.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(metric(&bed, addr, "ringcap_http_pulls_not_served_total{reason=\"stalled\"}"), pulls);
    assert_eq!(metric(&bed, addr, "ringcap_http_pulls_not_served_total{reason=\"busy\"}"), 100 - pulls);
    drop(streams);
    // Served again once they are gone, and capture lost nothing meanwhile.
    let pulled = get(&bed, addr, "/v1/pcap?last=1h&filter=udp", Some(TOKEN));
    assert_eq!(pulled.status, 200);
    assert_eq!(seqs(&pulled.body).len(), 30_000);
    send(&bed, (30_000..31_000).map(known_frame).collect());
    let stderr = stop(ring);
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(31_000), "{stderr:?}");
}

/// An index whose entries carry valid checksums but offsets and lengths that wrap around
/// (as anyone who can write the ring could craft): a pull answers at once with every
/// packet (the file is scanned from the first entry that does not add up), and `run`
/// starts on the ring, repairing nothing it should not. Before, a worker panicked and the
/// pull waited forever.
#[test]
fn a_crafted_index_gives_an_answer_never_a_hang() {
    use capture_daemon::storage::index::{index_path, read_index, FrameEntry, INDEX_MAGIC_V1};
    let dir = scratch("crafted-index");
    synthetic_ring(&dir, 2000, u64::MAX);
    let data = capture_daemon::storage::manifest::ring_files(&dir).unwrap().remove(0);
    let real: Vec<FrameEntry> = read_index(&index_path(&data)).unwrap().into_iter().map(|(e, _)| e).collect();
    assert!(real.len() > 3);
    for (name, crafted) in [
        ("wrapping length", FrameEntry { len: u64::MAX - real[1].offset + 2, ..real[1] }),
        ("huge length", FrameEntry { len: u64::MAX / 2, raw_len: u32::MAX, ..real[1] }),
        ("wrapping raw offset", FrameEntry { raw_offset: u64::MAX, ..real[1] }),
    ] {
        let mut index = INDEX_MAGIC_V1.to_vec();
        for entry in [real[0], crafted].into_iter().chain(real[2..].iter().copied()) {
            index.extend_from_slice(&entry.encode());
        }
        std::fs::write(index_path(&data), index).unwrap();
        let mut command = Command::new(RINGCAP);
        command.args(["pull", "--dir", dir.to_str().unwrap(), "--last", "100000d"]);
        let started = Instant::now();
        let (status, pulled, stderr, _) = common::run_measured(command);
        assert!(status.success(), "{name}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(20), "{name}");
        assert_eq!(seqs(&pulled), (0..2000).collect::<Vec<_>>(), "{name}: {stderr}");
    }
    let len = std::fs::metadata(&data).unwrap().len();
    let bed = bed();
    let ring = start_ringcap(&bed, "run", &["--dir", dir.to_str().unwrap(), "-G", "0"]);
    send(&bed, (5000..5010).map(known_frame).collect());
    stop(ring);
    assert_eq!(std::fs::metadata(&data).unwrap().len(), len, "the file was not cut");
    let (status, pulled, stderr, _) = {
        let mut command = Command::new(RINGCAP);
        command.args(["pull", "--dir", dir.to_str().unwrap(), "--last", "100000d"]);
        common::run_measured(command)
    };
    assert!(status.success(), "{stderr}");
    assert_eq!(seqs(&pulled).len(), 2010, "{stderr}");
}

/// Pulls while rotation starts a file every few tens of milliseconds and `-W` removes the
/// oldest: a file that leaves between the listing and its opening has left the window,
/// so no pull fails or warns. (Before, 4 of 150 such pulls failed.)
#[test]
fn pulls_during_fast_rotation_never_fail() {
    let bed = bed();
    let dir = scratch("fast-rotation");
    let ring = start_ringcap(
        &bed,
        "run",
        &[
            "--dir",
            dir.to_str().unwrap(),
            "-G",
            "0",
            "-C",
            "0.02",
            "-W",
            "4",
            "--no-compress",
            "--frame-bytes",
            "4096",
        ],
    );
    let sender = {
        let tx_ns = bed.tx_ns.clone();
        std::thread::spawn(move || {
            // About 20 files a second (30 frames each) for the pulls below.
            let frames: Vec<Vec<u8>> = (0..1700).map(known_frame).collect();
            TestBed::in_namespace(&tx_ns, move || {
                let ifindex = capture_daemon::kernel::interface_index(ringcap_tools::testbed::TX_IF).unwrap();
                let until = Some(Duration::from_secs(22));
                let plan = ringcap_tools::generator::Plan {
                    frames,
                    count: u64::MAX,
                    chunk: 1,
                    rate: Some(600.0),
                    until,
                };
                ringcap_tools::generator::transmit(ifindex, &plan).unwrap();
            })
            .join()
            .unwrap()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pulls = 0;
    while Instant::now() < deadline && pulls < 150 {
        let out = Command::new(RINGCAP)
            .args(["pull", "--dir", dir.to_str().unwrap(), "--last", "1h"])
            .output_within_deadline();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "pull {pulls}: {stderr}");
        assert!(!stderr.contains("skipped:"), "pull {pulls} counted a rotated file as unreadable: {stderr}");
        // What it gives is one run of the sender's frames (numbered round 0..1700), no gap.
        let got = seqs(&out.stdout);
        let gaps = got.windows(2).filter(|w| w[1] != (w[0] + 1) % 1700).count();
        assert_eq!(gaps, 0, "pull {pulls} has gaps: {got:?}");
        pulls += 1;
    }
    assert!(pulls >= 50, "{pulls} pulls");
    sender.join().unwrap().unwrap();
    let stderr = stop(ring);
    let line = stderr.iter().find(|l| l.contains("files created")).unwrap();
    let removed: u64 = line.split(", ").nth(1).and_then(|p| p.split(' ').next()?.parse().ok()).unwrap();
    assert!(removed >= 100, "rotation removed {removed} files meanwhile: {line}");
}

/// Numbers too large for any duration are refused with the usual message by the CLI and
/// the API, never a panic; a `last=1h` pull fits the default `--http-max-window 1h`.
#[test]
fn durations_too_large_are_refused_and_the_default_window_fits() {
    let huge = "10000000000000000000s10000000000000000000s";
    let out = Command::new(RINGCAP)
        .args(["pull", "--dir", "/nonexistent", "--last", huge])
        .output_within_deadline();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.status.code() != Some(101), "{stderr}");
    assert!(stderr.contains("is not a duration") && !stderr.contains("panicked"), "{stderr}");
    let bed = bed();
    let dir = scratch("window");
    let token = token_file(TOKEN);
    let addr = "127.0.0.1:18114";
    let ring = start_api_daemon(&bed, &dir, addr, &token, &[]);
    send(&bed, (0..100).map(known_frame).collect());
    wait_stored(&bed, addr, 100);
    let response = get(&bed, addr, &format!("/v1/pcap?last={huge}"), Some(TOKEN));
    assert_eq!(response.status, 400, "{}", String::from_utf8_lossy(&response.body));
    let response = get(&bed, addr, "/v1/pcap?last=1h", Some(TOKEN));
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
    assert_eq!(seqs(&response.body), (0..100).collect::<Vec<_>>());
    let response = get(&bed, addr, "/v1/pcap?last=61m", Some(TOKEN));
    assert_eq!(response.status, 400);
    stop(ring);
}

/// The daemon's user plants a FIFO where the current file's snapshots are read, and a
/// symlink to /dev/zero for its closing statistics. `pull --with-stats` and a pin answer
/// at once with every packet, say what they skipped, and the pin is kept. (Before, both
/// blocked on the FIFO forever: the pin stayed "copying" and held its slot.)
#[test]
fn planted_statistics_sidecars_never_hang_a_pull_or_a_pin() {
    use capture_daemon::storage::index::{snapshots_path, stats_path};
    let bed = bed();
    let dir = scratch("sidecars");
    let token = token_file(TOKEN);
    let addr = "127.0.0.1:18115";
    let ring = start_api_daemon(&bed, &dir, addr, &token, &[]);
    send(&bed, (0..300).map(known_frame).collect());
    wait_stored(&bed, addr, 300);
    let data = capture_daemon::storage::manifest::ring_files(&dir).unwrap().remove(0);
    let fifo = snapshots_path(&data);
    std::fs::remove_file(&fifo).unwrap();
    common::mkfifo(&fifo);
    std::os::unix::fs::symlink("/dev/zero", stats_path(&data)).unwrap();
    let out = scratch("sidecars.pcap");
    let pulled = ringcap(
        &bed,
        &[
            "pull",
            "--dir",
            dir.to_str().unwrap(),
            "--last",
            "1h",
            "--with-stats",
            "-w",
            out.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&pulled.stderr);
    assert!(pulled.status.success(), "{stderr}");
    assert_eq!(seqs(&std::fs::read(&out).unwrap()), (0..300).collect::<Vec<_>>());
    assert!(stderr.contains("is not a regular file"), "the FIFO skipped, said: {stderr}");
    assert!(stderr.contains("symbolic link"), "the symlink skipped, said: {stderr}");
    pin_last_hour(&bed, addr, &token, "sidecars");
    let pin_dir = dir.join("pins/sidecars");
    let from_pin = ringcap(&bed, &["pull", "--dir", pin_dir.to_str().unwrap(), "--last", "100000d"]);
    assert_eq!(seqs(&from_pin.stdout), (0..300).collect::<Vec<_>>(), "the pin holds the window");
    // The manifest too: readers fall back to the files that have ringcap's index, saying so.
    let manifest = dir.join(capture_daemon::storage::manifest::MANIFEST_NAME);
    std::fs::remove_file(&manifest).unwrap();
    common::mkfifo(&manifest);
    let pulled = ringcap(&bed, &["pull", "--dir", dir.to_str().unwrap(), "--last", "1h"]);
    let said = String::from_utf8_lossy(&pulled.stderr);
    assert!(pulled.status.success(), "{said}");
    assert_eq!(seqs(&pulled.stdout), (0..300).collect::<Vec<_>>(), "{said}");
    assert!(said.contains("cannot be read") && said.contains("ringcap's index instead"), "{said}");
    assert_eq!(seqs(&get(&bed, addr, "/v1/pcap?last=1h", Some(TOKEN)).body).len(), 300);
    let stderr = stop(ring);
    // The closing statistics were not written through the link either.
    assert!(std::fs::symlink_metadata(stats_path(&data)).unwrap().file_type().is_symlink());
    assert_eq!(summary_count(&stderr, "packets written to the ring"), Some(300), "{stderr:?}");
    // Snapshots stored but none readable: said so, not "none stored yet"; packets pulled.
    std::fs::remove_file(&fifo).unwrap();
    std::fs::write(&fifo, "{\"time_ns\": \"x\"}\n[1, 2]\n").unwrap();
    let d = dir.to_str().unwrap();
    let pulled =
        ringcap(&bed, &["pull", "--dir", d, "--last", "1h", "--with-stats", "-w", out.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&pulled.stderr);
    assert!(pulled.status.success(), "{said}");
    assert!(
        said.contains("none of the 2 statistics snapshots stored beside the ring's files could be read"),
        "{said}"
    );
    assert_eq!(seqs(&std::fs::read(&out).unwrap()), (0..300).collect::<Vec<_>>());
}

/// A ring file made sparse by whoever can write the ring: its index gone and a terabyte
/// of hole after its frames. A pull skips the hole without reading it, answers within
/// seconds with every packet, and counts the hole as damage. (Before, the scan read the
/// hole window by window, for half an hour.)
#[test]
fn a_sparse_giant_in_the_ring_is_skipped_not_scanned() {
    use capture_daemon::storage::index::index_path;
    let dir = scratch("sparse");
    synthetic_ring(&dir, 2000, u64::MAX);
    let data = capture_daemon::storage::manifest::ring_files(&dir).unwrap().remove(0);
    std::fs::remove_file(index_path(&data)).unwrap();
    let len = std::fs::metadata(&data).unwrap().len();
    const HOLE: u64 = 1 << 40;
    std::fs::OpenOptions::new().write(true).open(&data).unwrap().set_len(len + HOLE).unwrap();
    let mut command = Command::new(RINGCAP);
    command.args(["pull", "--dir", dir.to_str().unwrap(), "--last", "100000d"]);
    let started = Instant::now();
    let (status, pulled, stderr, _) = common::run_measured(command);
    assert!(status.success(), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert_eq!(seqs(&pulled), (0..2000).collect::<Vec<_>>(), "{stderr}");
    let lines: Vec<String> = stderr.lines().map(str::to_string).collect();
    assert_eq!(summary_count(&lines, "damaged bytes skipped"), Some(HOLE), "{stderr}");
}

//! Helpers shared by the kernel tests: test beds, ringcap processes, known frames.
#![allow(dead_code)] // each test binary uses its own subset

pub mod tcp_analysis;

use std::path::PathBuf;
use std::time::Duration;

use ringcap_tools::frames::FrameTemplate;
use ringcap_tools::generator::{transmit, Plan};
use ringcap_tools::harness::CaptureProcess;
use ringcap_tools::testbed::{TestBed, RX_IF, SINK_MAC, TX_IF, TX_MAC};

pub const RINGCAP: &str = env!("CARGO_BIN_EXE_ringcap");
pub const WAIT: Duration = Duration::from_secs(30);

pub fn bed() -> TestBed {
    TestBed::remove_stale();
    TestBed::new().expect("creating the test bed (needs root)")
}

/// A process of the test bed (a server, a client), killed on drop.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh path in this test process's scratch directory, unique even when tests
/// running in parallel ask for the same name.
pub fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!("ringcap-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{n}-{name}"));
    let _ = std::fs::remove_dir_all(&path);
    let _ = std::fs::remove_file(&path);
    path
}

/// Starts `ringcap SUBCOMMAND -i veth-rx ARGS` in the receiving namespace and waits until it listens.
pub fn start_ringcap(bed: &TestBed, subcommand: &str, args: &[&str]) -> CaptureProcess {
    let mut command = bed.rx(RINGCAP);
    command.args([subcommand, "-i", RX_IF]).args(args);
    let mut process = CaptureProcess::spawn(command).unwrap();
    assert!(process.wait_listening(), "ringcap did not start: {:?}", process.stderr);
    process
}

/// The arguments of `ringcap run` on ring `dir` with its API on `addr` behind the token
/// in `token`, a frame every 0.1 s, without -G, and `extra`.
pub fn api_daemon_args<'a>(dir: &'a str, addr: &'a str, token: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args =
        vec!["--dir", dir, "-G", "0", "--frame-interval", "0.1", "--http", addr, "--http-token-file", token];
    args.extend(extra);
    args
}

/// `ringcap run` with [`api_daemon_args`], started and listening.
pub fn start_api_daemon(
    bed: &TestBed,
    dir: &std::path::Path,
    addr: &str,
    token: &std::path::Path,
    extra: &[&str],
) -> CaptureProcess {
    let args = api_daemon_args(dir.to_str().unwrap(), addr, token.to_str().unwrap(), extra);
    start_ringcap(bed, "run", &args)
}

/// `ringcap run` of both directions into `dir` with its API on `addr` (no token) and a
/// SYN unanswered after 1 s: the daemon of the TCP health and flow view tests.
pub fn start_health_daemon(bed: &TestBed, dir: &std::path::Path, addr: &str) -> CaptureProcess {
    start_health_daemon_with(bed, dir, addr, &[])
}

/// [`start_health_daemon`] with `extra` options.
pub fn start_health_daemon_with(
    bed: &TestBed,
    dir: &std::path::Path,
    addr: &str,
    extra: &[&str],
) -> CaptureProcess {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "--dir",
        dir,
        "-G",
        "0",
        "--direction",
        "both",
        "--http",
        addr,
        "--http-no-auth",
        "--syn-timeout",
        "1",
    ];
    args.extend(extra);
    start_ringcap(bed, "run", &args)
}

/// `/v1/stats` of the daemon at `addr` (no token) once it has refreshed the kernel's
/// counts after `done`: every packet sent before `done` has passed the programs.
pub fn stats_refreshed_after(bed: &TestBed, addr: &str, done: std::time::Instant) -> serde_json::Value {
    let mut stats = serde_json::Value::Null;
    wait_until("a refresh of the kernel's counts", Duration::from_secs(10), || {
        // Measured before the request: a refresh younger than this came after `done`.
        let since_done = done.elapsed().as_secs_f64();
        stats = serde_json::from_slice(&get(bed, addr, "/v1/stats", None).body).unwrap();
        stats["kernel_counters_age_seconds"].as_f64().is_some_and(|age| age < since_done)
    });
    stats
}

/// What a health daemon says once every packet sent so far has passed its programs:
/// `/v1/stats`, `/metrics` and `ringcap stats`.
pub struct HealthReading {
    pub stats: serde_json::Value,
    pub metrics: String,
    pub text: String,
}

/// Reads the health daemon at `addr` (see [`HealthReading`]), then stops it.
pub fn read_health_and_stop(bed: &TestBed, addr: &str, daemon: CaptureProcess) -> HealthReading {
    let stats = stats_refreshed_after(bed, addr, std::time::Instant::now());
    let metrics = String::from_utf8(get(bed, addr, "/metrics", None).body).unwrap();
    let text = bed.rx(RINGCAP).args(["stats", "--http", addr]).output_within_deadline();
    stop(daemon);
    HealthReading { stats, metrics, text: String::from_utf8(text.stdout).unwrap() }
}

/// A test bed of two veth pairs (for captures of two interfaces).
pub fn two_pair_bed() -> TestBed {
    TestBed::remove_stale();
    TestBed::with_options(ringcap_tools::testbed::TestBedOptions { pairs: 2, ..Default::default() })
        .expect("creating the test bed (needs root)")
}

pub fn start_capture(bed: &TestBed, args: &[&str]) -> CaptureProcess {
    start_ringcap(bed, "capture", args)
}

/// The frame with sequence number `seq`: sizes cycle through 60..=1514 bytes.
pub fn known_frame(seq: u64) -> Vec<u8> {
    const SIZES: [usize; 17] =
        [60, 61, 64, 100, 127, 128, 129, 256, 300, 512, 513, 1000, 1024, 1025, 1400, 1513, 1514];
    let template = FrameTemplate { src_mac: TX_MAC, dst_mac: SINK_MAC, ..FrameTemplate::default() };
    template.udp(SIZES[seq as usize % SIZES.len()], (seq % 7) as u16, seq)
}

/// Frames 0..count.
pub fn mixed_frames(count: usize) -> Vec<Vec<u8>> {
    (0..count as u64).map(known_frame).collect()
}

/// Sends every frame once, in order, out of the sending end of the bed.
pub fn send(bed: &TestBed, frames: Vec<Vec<u8>>) {
    send_paced(bed, frames, None);
}

/// Polls `done` every 100 ms until it holds, failing the test saying `what` after `within`
/// (a loaded machine may take longer than any fixed sleep; a sleep long enough wastes time).
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out after {within:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every path under `dir` (itself included), without following symlinks.
pub fn tree(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    let mut at = 0;
    while at < found.len() {
        let path = found[at].clone();
        at += 1;
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            for entry in std::fs::read_dir(&path).unwrap() {
                found.push(entry.unwrap().path());
            }
        }
    }
    found
}

/// Bytes of every file under `dir`, at any depth.
pub fn tree_bytes(dir: &std::path::Path) -> u64 {
    tree(dir)
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// `ringcap COMMAND --http ADDR --http-token-file TOKEN REST` (`args` is COMMAND and REST)
/// in the bed's receiving namespace: a client of a daemon's API (pin, unpin, stats). The
/// options go before the rest, which may end in a filter expression.
pub fn api_client(
    bed: &TestBed,
    addr: &str,
    token: &std::path::Path,
    args: &[&str],
) -> std::process::Command {
    let (command, rest) = args.split_first().expect("a subcommand");
    let mut client = bed.rx(RINGCAP);
    client.arg(command).args(["--http", addr, "--http-token-file"]).arg(token).args(rest);
    client
}

/// Runs `command`, which must fail (within the deadline) saying `message` on stderr.
pub fn expect_failure(command: &mut std::process::Command, message: &str) {
    let output = command.output_within_deadline();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{command:?} succeeded: {stderr}");
    assert!(stderr.contains(message), "expected {message:?} in {stderr}");
}

/// A TCP server on `RX_IP:port` in the bed's receiving namespace, bound before this returns
/// (a client started next never finds the port closed), then given to `serve` on a thread.
pub fn serve<T: Send + 'static>(
    bed: &TestBed,
    port: u16,
    serve: impl FnOnce(std::net::TcpListener) -> T + Send + 'static,
) -> std::thread::JoinHandle<std::io::Result<T>> {
    let bind = move || std::net::TcpListener::bind((ringcap_tools::testbed::RX_IP, port));
    let listener = TestBed::in_namespace(&bed.rx_ns, bind).join().unwrap().unwrap().unwrap();
    std::thread::spawn(move || Ok(serve(listener)))
}

/// Sends every frame once, in order, at `rate` frames per second if given, and checks that
/// the veth pair delivered them all: the generator counts frames it handed to the kernel,
/// and a receiver outrun drops some before any capture could see them.
pub fn send_paced(bed: &TestBed, frames: Vec<Vec<u8>>, rate: Option<f64>) {
    let count = frames.len() as u64;
    let drops_before = bed.pair_drops().unwrap();
    let report = TestBed::in_namespace(&bed.tx_ns, move || {
        let ifindex = capture_daemon::kernel::interface_index(TX_IF).unwrap();
        transmit(ifindex, &Plan { frames, count, chunk: 1, rate, until: None })
    })
    .join()
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(report.sent, count);
    let dropped = bed.pair_drops().unwrap() - drops_before;
    assert_eq!(dropped, 0, "the veth pair dropped {dropped} of {count} frames sent: pace them");
}

/// Sends the frames in order, `chunk` at a time, alternately out of `veth-tx` and
/// `veth-tx2` (a bed with two pairs).
pub fn send_alternating(bed: &TestBed, frames: &[Vec<u8>], chunk: usize) {
    for (round, frames) in frames.chunks(chunk).enumerate() {
        let iface = if round % 2 == 0 { TX_IF } else { ringcap_tools::testbed::TX2_IF };
        let frames = frames.to_vec();
        TestBed::in_namespace(&bed.tx_ns, move || {
            let ifindex = capture_daemon::kernel::interface_index(iface).unwrap();
            let count = frames.len() as u64;
            transmit(ifindex, &Plan { frames, count, chunk: 1, rate: None, until: None }).unwrap();
        })
        .join()
        .unwrap()
        .unwrap();
    }
}

/// Lets the last packets arrive, stops the capture with SIGINT and returns its stderr,
/// checking that it exited cleanly.
pub fn stop(capture: CaptureProcess) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(300));
    capture.signal(libc::SIGINT);
    let (status, stderr) = capture.finish(WAIT);
    assert!(status.success(), "{stderr:?}");
    stderr
}

/// One capture of tcpdump's test suite (`testdata/tcpdump-tests`, a copy kept in the repository).
pub struct CorpusCapture {
    pub name: String,
    pub path: PathBuf,
    /// The link type (1: Ethernet).
    pub linktype: u32,
    /// Captured bytes of each packet, in file order.
    pub packets: Vec<Vec<u8>>,
}

/// Every pcap and pcapng capture of the corpus ringcap's reader understands, by name.
pub fn corpus_captures() -> Vec<CorpusCapture> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/tcpdump-tests");
    assert!(
        dir.is_dir(),
        "the tcpdump corpus is missing at {}: the differential tests need it",
        dir.display()
    );
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let mut captures = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        let Some(format) = capture_daemon::pcap::RecordFormat::from_file_header(&bytes) else { continue };
        let records = format.records(&bytes[format.header_len.min(bytes.len())..]);
        let packets = records.map_while(Result::ok).map(|r| r.data.to_vec()).collect();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        captures.push(CorpusCapture { name, path, linktype: format.linktype, packets });
    }
    captures
}

/// tshark's `-T fields` dissection of `file`: for each packet `filter` selects (every
/// packet when it is empty), the values of `fields`, in order.
pub fn tshark_fields(file: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut command = std::process::Command::new("tshark");
    command.arg("-r").arg(file).args(["-T", "fields"]);
    if !filter.is_empty() {
        command.args(["-Y", filter]);
    }
    for field in fields {
        command.args(["-e", field]);
    }
    let out = command.output_within_deadline();
    assert!(out.status.success(), "tshark on {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// A token file readable by root only, holding `token`.
pub fn token_file(token: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = scratch("api.token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Sends raw bytes as a request from inside the receiving namespace; the response's
/// status, or `None` if the server closed without answering.
pub fn raw_request(bed: &TestBed, addr: &str, request: Vec<u8>) -> Option<u16> {
    use std::io::{Read, Write};
    let addr = addr.to_string();
    TestBed::in_namespace(&bed.rx_ns, move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // The server may answer (and close) before it has read everything.
        let _ = stream.write_all(&request);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let head = String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
        head.split(' ').nth(1).and_then(|s| s.parse().ok())
    })
    .join()
    .unwrap()
    .unwrap()
}

/// An HTTP response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A GET from inside the bed's receiving namespace, where the daemon listens (ureq, a
/// real HTTP/1.1 client: keep-alive, chunked bodies).
pub fn get(bed: &TestBed, addr: &str, target: &str, token: Option<&str>) -> Response {
    request(bed, "GET", addr, target, token)
}

/// A POST without a body, as [`get`].
pub fn post(bed: &TestBed, addr: &str, target: &str, token: Option<&str>) -> Response {
    request(bed, "POST", addr, target, token)
}

/// A request of any method without a body, as [`get`].
pub fn request(
    bed: &TestBed,
    method: &'static str,
    addr: &str,
    target: &str,
    token: Option<&str>,
) -> Response {
    request_with_body(bed, method, addr, target, token, Vec::new())
}

/// A request with a body, as [`get`].
pub fn request_with_body(
    bed: &TestBed,
    method: &'static str,
    addr: &str,
    target: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let (url, token) = (format!("http://{addr}{target}"), token.map(str::to_string));
    TestBed::in_namespace(&bed.rx_ns, move || {
        // A deadline for every request: a server that never answers fails the test, not CI.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = agent.run(request.body(body).unwrap()).expect("an HTTP response");
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(u64::MAX).read_to_vec().expect("the whole body");
        Response { status, body }
    })
    .join()
    .unwrap()
    .unwrap()
}

/// The sequence numbers of the known frames in pcap bytes, in file order.
pub fn seqs(pcap: &[u8]) -> Vec<u64> {
    ringcap_tools::harness::read_pcap_bytes(pcap)
        .unwrap()
        .iter()
        .map(|p| ringcap_tools::frames::sequence_of(&p.data).unwrap())
        .collect()
}

/// A FUSE passthrough filesystem (`tests/fixtures/failing_fsync_fs.py`) mounted for one
/// test, whose fsync of capture files fails while [`FaultyFs::fail`] says so, and whose
/// writes of capture files take `write_delay_ms` each when given (a slow disk).
pub struct FaultyFs {
    process: std::process::Child,
    pub mountpoint: PathBuf,
    switch: PathBuf,
}

impl FaultyFs {
    pub fn mount(name: &str, write_delay_ms: Option<f64>) -> Self {
        let base = scratch(name);
        let (backing, mountpoint, switch) = (base.join("backing"), base.join("mnt"), base.join("fail"));
        std::fs::create_dir_all(&backing).unwrap();
        std::fs::create_dir_all(&mountpoint).unwrap();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/failing_fsync_fs.py");
        let process = std::process::Command::new("/usr/bin/python3")
            .arg(script)
            .args([&backing, &mountpoint, &switch])
            .args(write_delay_ms.map(|ms| ms.to_string()))
            .spawn()
            .expect("python3 with fusepy (cargo xtask bootstrap installs it)");
        let fs = FaultyFs { process, mountpoint, switch };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string("/proc/mounts").unwrap().contains(fs.mountpoint.to_str().unwrap()) {
            assert!(std::time::Instant::now() < deadline, "the FUSE filesystem did not mount");
            std::thread::sleep(Duration::from_millis(20));
        }
        fs
    }

    pub fn fail(&self, on: bool) {
        if on {
            std::fs::write(&self.switch, b"").unwrap();
        } else {
            std::fs::remove_file(&self.switch).unwrap();
        }
    }
}

impl Drop for FaultyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.mountpoint).status();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A real Garage server (S3-compatible object storage) in the bed's receiving namespace,
/// where the daemon runs: one node, one bucket (`ringcap`), one key allowed on it.
pub struct Garage {
    dir: PathBuf,
    ns: String,
    server: Option<std::process::Child>,
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
}

impl Garage {
    /// The bucket every test archives into.
    pub const BUCKET: &'static str = "ringcap";
    pub const REGION: &'static str = "garage";

    pub fn start(bed: &TestBed) -> Self {
        let dir = scratch("garage");
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"lmdb\"\nreplication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:3901\"\nrpc_public_addr = \"127.0.0.1:3901\"\n\
             rpc_secret = \"{secret}\"\n[s3_api]\ns3_region = \"{region}\"\napi_bind_addr = \"127.0.0.1:3900\"\n\
             root_domain = \".s3.garage.localhost\"\n",
            d = dir.display(),
            secret = "5f0ea6b0b0c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f405162738495a6b",
            region = Self::REGION,
        );
        std::fs::write(dir.join("garage.toml"), config).unwrap();
        let mut garage = Garage {
            dir,
            ns: bed.rx_ns.clone(),
            server: None,
            endpoint: "http://127.0.0.1:3900".into(),
            key_id: "GK0123456789abcdef01234567".into(),
            secret: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        };
        garage.resume();
        let node = garage.cli(&["node", "id", "-q"]);
        let node = node.trim().split('@').next().unwrap().to_string();
        garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        garage.cli(&["layout", "apply", "--version", "1"]);
        let (id, secret) = (garage.key_id.clone(), garage.secret.clone());
        garage.cli(&["key", "import", "--yes", "-n", "ringcap-test", &id, &secret]);
        garage.cli(&["bucket", "create", Self::BUCKET]);
        garage.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            Self::BUCKET,
            "--key",
            "ringcap-test",
        ]);
        garage
    }

    /// Runs `garage ARGS` against this server; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = TestBed::command_in(&self.ns, "garage")
            .arg("-c")
            .arg(self.dir.join("garage.toml"))
            .args(args)
            .output_within_deadline();
        assert!(output.status.success(), "garage {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Kills the server (as a crash or a power cut would).
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// Starts the server on its data and waits until it answers S3 requests.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let server = TestBed::command_in(&self.ns, "garage")
            .arg("-c")
            .arg(self.dir.join("garage.toml"))
            .arg("server")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("garage is installed (cargo xtask bootstrap)");
        self.server = Some(server);
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let answering = TestBed::in_namespace(&self.ns, || {
                std::net::TcpStream::connect_timeout(
                    &"127.0.0.1:3900".parse().unwrap(),
                    Duration::from_secs(1),
                )
                .is_ok()
            })
            .join()
            .unwrap()
            .unwrap();
            let status = TestBed::command_in(&self.ns, "garage")
                .arg("-c")
                .arg(self.dir.join("garage.toml"))
                .arg("status")
                .output_within_deadline()
                .status
                .success();
            if answering && status {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "garage did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The name the daemons of the tests archive under (`--archive-host`).
    pub const HOST: &'static str = "test-gw";

    /// The options that point ringcap at this server, credentials in a file (and, for
    /// `archive`, the daemon's name in it).
    pub fn ringcap_args(&self, prefix: &str) -> Vec<String> {
        let credentials = self.credentials_file(&self.secret);
        let mut args = vec![
            "--archive-endpoint".into(),
            self.endpoint.clone(),
            "--archive-region".into(),
            Self::REGION.into(),
            "--archive-credentials".into(),
            credentials.display().to_string(),
            format!("--{prefix}"),
            format!("s3://{}/fleet", Self::BUCKET),
        ];
        if prefix == "archive" {
            args.extend(["--archive-host".into(), Self::HOST.into()]);
        }
        args
    }

    /// Puts `bytes` at `key` with ringcap's own client (a real S3 PUT).
    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        use object_store::ObjectStoreExt;
        let archive = self.client();
        let key = object_store::path::Path::from(key);
        TestBed::in_namespace(&self.ns, move || {
            archive.block_on(archive.store.put(&key, object_store::PutPayload::from(bytes))).unwrap();
        })
        .join()
        .unwrap()
        .unwrap();
    }

    fn client(&self) -> std::sync::Arc<capture_daemon::archive::store::Archive> {
        use capture_daemon::archive::store::{Archive, ArchiveSettings, ArchiveTarget};
        let settings = ArchiveSettings {
            target: ArchiveTarget::parse(&format!("s3://{}/", Self::BUCKET)).unwrap(),
            endpoint: Some(self.endpoint.clone()),
            region: Some(Self::REGION.into()),
            credentials_file: Some(self.credentials_file(&self.secret)),
        };
        TestBed::in_namespace(&self.ns, move || std::sync::Arc::new(Archive::connect(&settings).unwrap()))
            .join()
            .unwrap()
            .unwrap()
    }

    /// An AWS shared-credentials file with this server's key and `secret`.
    pub fn credentials_file(&self, secret: &str) -> PathBuf {
        let path = scratch("aws-credentials");
        std::fs::write(
            &path,
            format!("[default]\naws_access_key_id = {}\naws_secret_access_key = {secret}\n", self.key_id),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Every object under `prefix` and its bytes, read in the namespace with ringcap's
    /// own client (a real S3 conversation with the server).
    pub fn objects(&self, prefix: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
        use capture_daemon::archive::store::{Archive, ArchiveSettings, ArchiveTarget};
        use futures_util::StreamExt;
        use object_store::ObjectStoreExt;
        let settings = ArchiveSettings {
            target: ArchiveTarget::parse(&format!("s3://{}/{prefix}", Self::BUCKET)).unwrap(),
            endpoint: Some(self.endpoint.clone()),
            region: Some(Self::REGION.into()),
            credentials_file: Some(self.credentials_file(&self.secret)),
        };
        TestBed::in_namespace(&self.ns, move || {
            let archive = Archive::connect(&settings).unwrap();
            archive.block_on(async {
                let listed: Vec<_> =
                    archive.store.list(archive.target.prefix_path().as_ref()).collect::<Vec<_>>().await;
                let mut objects = std::collections::BTreeMap::new();
                for meta in listed {
                    let meta = meta.unwrap();
                    let bytes = archive.store.get(&meta.location).await.unwrap().bytes().await.unwrap();
                    objects.insert(meta.location.to_string(), bytes.to_vec());
                }
                objects
            })
        })
        .join()
        .unwrap()
        .unwrap()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `command` to its end with its output in files; its exit status, stdout, stderr
/// and the most memory it held (resident set, KiB), as the kernel counted it. The child is
/// reaped by wait4(2), which reports its resource usage (std's `wait` would not).
#[allow(clippy::zombie_processes)]
pub fn run_measured(mut command: std::process::Command) -> (std::process::ExitStatus, Vec<u8>, String, u64) {
    use std::os::unix::process::ExitStatusExt;
    let (out, err) = (scratch("measured.out"), scratch("measured.err"));
    command.stdout(std::fs::File::create(&out).unwrap()).stderr(std::fs::File::create(&err).unwrap());
    let mut child = command.spawn().unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data filled by wait4, which reaps our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        // SAFETY: as above; WNOHANG never blocks.
        let done = unsafe { libc::wait4(child.id() as i32, &mut status, libc::WNOHANG, &mut usage) };
        if done > 0 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{command:?} did not end within 2 minutes (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    (std::process::ExitStatus::from_raw(status), std::fs::read(&out).unwrap(), stderr, usage.ru_maxrss as u64)
}

/// 2026-11-24T10:00:00Z
pub const BASE_SECS: u64 = 1_795_514_400;

/// Packet i of the synthetic ring: known frame i at BASE + i * 10 ms.
pub fn stamp(i: u64) -> Duration {
    Duration::from_secs(BASE_SECS) + Duration::from_millis(10 * i)
}

/// Writes packets 0..count into a ring in `dir` with the real ring writer, rotating
/// every `file_bytes` so the window spans several files.
pub fn synthetic_ring(dir: &std::path::Path, count: u64, file_bytes: u64) {
    use capture_daemon::output::Sink;
    use capture_daemon::storage::ring::{RingConfig, RingWriter, StorageCounters};
    let config = RingConfig {
        rotate_bytes: Some(file_bytes),
        min_free: Some(capture_daemon::storage::budget::DiskLimit::Bytes(0)),
        frame_bytes: 16 << 10,
        ..RingConfig::single_file(
            dir,
            capture_daemon::storage::naming::NameTemplate::parse("synthetic-%s").unwrap(),
            capture_daemon::storage::Compression::Zstd(1),
        )
    };
    let mut ring = RingWriter::open(config, std::sync::Arc::new(StorageCounters::default())).unwrap();
    for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
        let mut batch = capture_daemon::capture::Batch::empty(Vec::new());
        for &i in chunk {
            let frame = known_frame(i);
            capture_daemon::pcap::write_record(
                &mut batch.records,
                stamp(i),
                frame.len() as u32,
                &frame,
                262_144,
            )
            .unwrap();
            batch.count(stamp(i).as_nanos() as u64);
        }
        ring.write(&mut batch).unwrap();
    }
    ring.finish().unwrap();
}

/// Waits for `child` to end, failing the test (and killing it) past `deadline`.
pub fn wait_with_deadline(child: &mut std::process::Child, deadline: Duration) -> std::process::ExitStatus {
    let until = std::time::Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() >= until {
            let _ = child.kill();
            panic!("the process did not end within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long any command a test runs may take: past it, it is killed and the test fails
/// saying which command hung (a refusal that starts capturing instead would otherwise
/// hang the suite, not fail it).
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

/// [`std::process::Command::output`] with [`COMMAND_DEADLINE`].
pub trait OutputWithin {
    fn output_within_deadline(&mut self) -> std::process::Output;

    /// Runs the command within the deadline and fails the test, naming the command and
    /// showing its stderr, unless it succeeds; its stdout and stderr.
    fn succeed(&mut self) -> (Vec<u8>, String);
}

impl OutputWithin for std::process::Command {
    fn output_within_deadline(&mut self) -> std::process::Output {
        use std::io::Read;
        use std::process::Stdio;
        let described = format!("{self:?}");
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("piped")));
        let stderr = drain(Box::new(child.stderr.take().expect("piped")));
        let deadline = std::time::Instant::now() + COMMAND_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for a child") {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{described} did not end within {} s", COMMAND_DEADLINE.as_secs());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        std::process::Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
    }

    fn succeed(&mut self) -> (Vec<u8>, String) {
        let out = self.output_within_deadline();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{self:?} failed ({}): {stderr}", out.status);
        (out.stdout, stderr)
    }
}

/// Loads nftables `rules` in the receiving namespace (after the capture point: XDP runs
/// before netfilter).
pub fn nftables(bed: &TestBed, rules: &str) {
    let file = scratch("rules.nft");
    std::fs::write(&file, rules).unwrap();
    let out = bed.rx("nft").arg("-f").arg(&file).output_within_deadline();
    assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
}

/// Makes a FIFO at `path` (what a hostile user plants where a file should be).
pub fn mkfifo(path: &std::path::Path) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// The value of `series` (a name with its labels, as /metrics prints it) on the daemon's
/// API at `addr`, if it has one.
pub fn metric(bed: &TestBed, addr: &str, token: &str, series: &str) -> Option<u64> {
    let text = String::from_utf8_lossy(&get(bed, addr, "/metrics", Some(token)).body).into_owned();
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The ring in `dir` pulled whole with its window's statistics (`--with-stats`, what a
/// pin keeps), read by tshark with `args` (decode-as rules, a filter) and `fields`: one
/// row of fields per packet shown, and the statistics.
pub fn tshark_rows(
    dir: &std::path::Path,
    args: &[&str],
    fields: &[&str],
) -> (Vec<Vec<String>>, serde_json::Value) {
    let pcap = scratch("rows.pcapng");
    let out = std::process::Command::new(RINGCAP)
        .args(["pull", "--last", "1h", "--with-stats", "--dir"])
        .arg(dir)
        .arg("-w")
        .arg(&pcap)
        .output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut tshark = std::process::Command::new("tshark");
    tshark.arg("-r").arg(&pcap).args(args).args(["-T", "fields"]);
    for field in fields {
        tshark.args(["-e", field]);
    }
    let out = tshark.output_within_deadline();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect();
    let stats = std::fs::read(format!("{}.stats.json", pcap.display())).unwrap();
    (rows, serde_json::from_slice(&stats).unwrap())
}

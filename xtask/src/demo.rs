//! The built-in demo: a two-namespace test bed, a million generated frames plus real TCP
//! and ICMP traffic, captured by `ringcap run` into a ring of compressed files, a filtered
//! pull of the last minute while capture goes on, and the daemon's counters.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ringcap_tools::harness::CaptureProcess;
use ringcap_tools::testbed::{TestBed, RX_IF, RX_IP, TX_IF};

/// SIGINT, as typed at a terminal: ringcap flushes and prints its summary.
const SIGINT: i32 = 2;

pub fn run(root: &Path) -> Result<()> {
    let release = root.join("target/release");
    let ringcap = release.join("ringcap");
    let ringcap = ringcap.to_str().expect("utf-8 path");
    let out_dir = root.join("target/demo");
    let ring_dir = out_dir.join("ring");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir)?;
    TestBed::remove_stale();
    let bed = TestBed::new().context("creating the test bed (the demo needs root)")?;
    println!("== test bed: namespaces {} ({TX_IF}) <-> {} ({RX_IF})", bed.tx_ns, bed.rx_ns);

    println!(
        "== ringcap run: a ring of 1-second zstd files, HTTP API on 127.0.0.1:9090 (inside the namespace)"
    );
    let mut command = bed.rx(ringcap);
    command.args([
        "run",
        "-i",
        RX_IF,
        "--dir",
        ring_dir.to_str().expect("utf-8 path"),
        "-G",
        "1",
        "-W",
        "30",
    ]);
    // The API's bearer token, readable by root only, as the unit makes it.
    let token_file = ring_dir.with_extension("token");
    std::fs::write(&token_file, "demo-token\n")?;
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let token_path = token_file.to_str().expect("utf-8 path");
    command.args(["--http", "127.0.0.1:9090", "--http-token-file", token_path, "--direction", "both"]);
    let mut capture = CaptureProcess::spawn(command)?;
    if !capture.wait_listening() {
        bail!("ringcap did not start: {:?}", capture.stderr);
    }
    for line in &capture.stderr {
        println!("   {line}");
    }

    println!(
        "== generating 1,000,000 64-byte UDP frames in 16 flows (BPF_PROG_TEST_RUN live frames, or AF_PACKET where the kernel refuses them)"
    );
    let generator = bed
        .tx(release.join("ringcap-gen").to_str().expect("utf-8 path"))
        .args(["send", "-i", TX_IF, "-c", "1000000", "--sizes", "64", "--flows", "16", "--chunk", "62500"])
        .output()?;
    println!("   generator: {}", String::from_utf8_lossy(&generator.stdout).trim());

    println!("== real traffic: a TCP connection and three pings");
    let server = TestBed::in_namespace(&bed.rx_ns, || -> std::io::Result<usize> {
        let listener = TcpListener::bind((RX_IP, 8080))?;
        let (mut stream, _) = listener.accept()?;
        let mut received = Vec::new();
        stream.read_to_end(&mut received)?;
        Ok(received.len())
    });
    std::thread::sleep(Duration::from_millis(200));
    TestBed::in_namespace(&bed.tx_ns, || -> std::io::Result<()> {
        TcpStream::connect((RX_IP, 8080))?.write_all(&vec![b'x'; 100_000])
    })
    .join()
    .expect("client thread")??;
    let received = server.join().expect("server thread")??;
    println!("   TCP: {received} bytes transferred");
    crate::run(bed.tx("ping").args(["-q", "-c", "3", "-i", "0.2", RX_IP]))?;

    std::thread::sleep(Duration::from_millis(1500));
    let pcap = out_dir.join("incident.pcap");
    println!(
        "== while capture goes on: ringcap pull --last 1m 'tcp port 8080 or icmp' -w {}",
        pcap.display()
    );
    let pulled = Command::new(ringcap)
        .args(["pull", "--dir", ring_dir.to_str().expect("utf-8 path"), "--last", "1m"])
        .args(["-w", pcap.to_str().expect("utf-8 path"), "tcp port 8080 or icmp"])
        .output()?;
    print!("   {}", String::from_utf8_lossy(&pulled.stderr));
    let tcpdump = Command::new("tcpdump").args(["-nn", "-r"]).arg(&pcap).args(["-c", "6"]).output()?;
    for line in String::from_utf8_lossy(&tcpdump.stdout).lines() {
        println!("   {line}");
    }

    println!("== ringcap stats (TCP health from the kernel, via the API):");
    let stats = bed
        .rx(ringcap)
        .args(["stats", "--http", "127.0.0.1:9090", "--http-token-file", token_path])
        .output()?;
    for line in String::from_utf8_lossy(&stats.stdout).lines() {
        println!("   {line}");
    }

    println!("== ringcap pin --last 1m 'tcp port 8080 or icmp' --name demo-incident (kept out of rotation):");
    let pinned = bed
        .rx(ringcap)
        .args(["pin", "--http", "127.0.0.1:9090", "--http-token-file", token_path, "--last", "1m"])
        .args(["--name", "demo-incident", "tcp port 8080 or icmp"])
        .output()?;
    print!("   {}{}", String::from_utf8_lossy(&pinned.stdout), String::from_utf8_lossy(&pinned.stderr));
    println!(
        "   in {}; with `run --archive s3://BUCKET/PREFIX` it is uploaded, and `pull --from` reads it",
        ring_dir.join("pins/demo-incident").display()
    );

    println!("== GET /metrics (loss and selection counters):");
    let metrics = bed
        .rx("curl")
        .args(["-s", "-H", "Authorization: Bearer demo-token", "http://127.0.0.1:9090/metrics"])
        .output();
    match metrics {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .take(9)
            .for_each(|l| println!("   {l}")),
        Err(_) => println!("   (curl is not installed; `ringcap run --http` serves /metrics)"),
    }

    capture.signal(SIGINT);
    let (status, stderr) = capture.finish(Duration::from_secs(30));
    println!("== ringcap stopped ({status}):");
    for line in stderr
        .iter()
        .filter(|l| !l.contains("listening on") && !l.contains("HTTP API") && !l.contains("writing the ring"))
    {
        println!("   {line}");
    }
    let files = std::fs::read_dir(&ring_dir)?
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "zst")))
        .count();
    println!("== {files} files in {}; `zstdcat FILE | tcpdump -r -` reads any of them", ring_dir.display());
    if !status.success() {
        bail!("ringcap failed");
    }

    let report_dir = root.join("target/demo-bench");
    let _ = std::fs::remove_dir_all(&report_dir);
    println!("== ringcap bench --self-test: zero-loss rates on its own veth test bed (short trials):");
    let bench = Command::new(ringcap)
        .args(["bench", "--self-test", "--sizes", "64,1518,imix", "--modes", "ring,afxdp", "--tcpdump"])
        .args(["--trial", "1", "--trials", "1", "--confirm", "2", "--tolerance", "0.25", "--dir", "/var/tmp"])
        .arg("-o")
        .arg(&report_dir)
        .status()?;
    if !bench.success() {
        bail!("ringcap bench failed");
    }
    println!("== the report: {}/report.html (open it in a browser) and report.json", report_dir.display());
    Ok(())
}

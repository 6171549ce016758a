//! The built-in demo: a two-namespace test bed, a million generated frames plus real TCP
//! and ICMP traffic, captured by ringcap into a pcap that tcpdump then reads.
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
    let out_dir = root.join("target/demo");
    std::fs::create_dir_all(&out_dir)?;
    let pcap = out_dir.join("demo.pcap");
    TestBed::remove_stale();
    let bed = TestBed::new().context("creating the test bed (the demo needs root)")?;
    println!("== test bed: namespaces {} ({TX_IF}) <-> {} ({RX_IF})", bed.tx_ns, bed.rx_ns);

    let mut command = bed.rx(release.join("ringcap").to_str().expect("utf-8 path"));
    command.args(["capture", "-i", RX_IF, "-w", pcap.to_str().expect("utf-8 path")]);
    let mut capture = CaptureProcess::spawn(command)?;
    if !capture.wait_listening() {
        bail!("ringcap did not start: {:?}", capture.stderr);
    }
    println!("== {}", capture.stderr.join("\n"));

    println!("== generating 1,000,000 64-byte UDP frames in 16 flows (BPF_PROG_TEST_RUN live frames)");
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

    std::thread::sleep(Duration::from_millis(300));
    capture.signal(SIGINT);
    let (status, stderr) = capture.finish(Duration::from_secs(30));
    println!("== ringcap stopped ({status}):");
    for line in stderr.iter().filter(|l| !l.contains("listening on")) {
        println!("   {line}");
    }
    println!("== {} as tcpdump reads it (TCP and ICMP packets):", pcap.display());
    let tcpdump =
        Command::new("tcpdump").args(["-nn", "-r"]).arg(&pcap).args(["-c", "8", "tcp or icmp"]).output()?;
    print!("{}", String::from_utf8_lossy(&tcpdump.stdout));
    if !status.success() {
        bail!("ringcap failed");
    }
    Ok(())
}

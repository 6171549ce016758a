//! `bench storage`: the ring writer alone, and the whole path against tcpdump + zstd.
//!
//! Writer alone: the pcap records of the tcpdump test corpus, repeated with rising
//! timestamps, fed in reader-sized batches to `RingWriter` writing into tmpfs, at zstd
//! levels 0, 1 and 3, and at level 1 with 0 (the writer compresses), 1, 2, ...
//! compression threads; throughput per core is input bytes over the CPU time of the
//! whole process (writer and compression threads), wall throughput over elapsed time.
//! Next to it, the zstd library alone compressing the same 1 MiB frames on one thread.
//! The compressed size is compared with `zstd -1` on the same pcap.
//! Whole path: the same generated traffic through the veth test bed into `ringcap run`
//! and into `tcpdump -G 1 -w ... -z zstd-1`, with loss and CPU (children included).
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use capture_daemon::capture::Batch;
use capture_daemon::output::Sink;
use capture_daemon::pcap::{write_file_header, write_record, RecordFormat, DEFAULT_SNAPLEN, FILE_HEADER_LEN};
use capture_daemon::storage::budget::DiskLimit;
use capture_daemon::storage::naming::NameTemplate;
use capture_daemon::storage::ring::{RingConfig, RingWriter, StorageCounters};
use capture_daemon::storage::Compression;
use ringcap_tools::harness::{summary_count, CaptureProcess};
use ringcap_tools::testbed::{TestBed, RX_IF, TX_IF};
use serde_json::json;

use crate::report;

#[derive(clap::Args)]
pub struct Options {
    /// Megabytes of pcap fed to the writer per level.
    #[arg(long, default_value_t = 1024)]
    megabytes: usize,
    /// The tcpdump test corpus (pcap files).
    #[arg(long, default_value = "testdata/tcpdump-tests")]
    corpus: PathBuf,
    /// Frames sent through the test bed for the whole-path comparison.
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// Compression thread counts to measure the writer with at zstd 1 (comma list).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    threads: Vec<usize>,
}

/// The corpus's records re-encoded as ringcap writes them (native order, ns timestamps).
pub fn corpus_records(dir: &Path) -> Result<Vec<(u32, Vec<u8>)>> {
    let mut records = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("the corpus {} is missing", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.sort();
    for path in paths {
        let bytes = std::fs::read(&path)?;
        let Some(format) = RecordFormat::from_file_header(&bytes) else { continue };
        for record in format.records(&bytes[FILE_HEADER_LEN..]).map_while(Result::ok) {
            records.push((record.orig_len.max(record.data.len() as u32), record.data.to_vec()));
        }
    }
    if records.is_empty() {
        bail!("no packets in {}", dir.display());
    }
    Ok(records)
}

/// The ring writer's frame size (`--frame-bytes` default).
const FRAME_BYTES: usize = 1 << 20;

/// Batches as the reader cuts them for the ring writer (one 1 MiB frame each) of at least
/// `total` bytes, packets `spacing` apart.
pub fn batches(records: &[(u32, Vec<u8>)], total: usize, spacing: Duration) -> Vec<Batch> {
    let mut batches = Vec::new();
    let mut bytes = 0;
    let mut ts = Duration::from_secs(1_800_000_000);
    let mut cycle = records.iter().cycle();
    while bytes < total {
        let mut batch = Batch::empty(Vec::with_capacity(FRAME_BYTES + (64 << 10)));
        while batch.records.len() < FRAME_BYTES {
            let (orig, data) = cycle.next().expect("non-empty");
            write_record(&mut batch.records, ts, *orig, data, DEFAULT_SNAPLEN).expect("in memory");
            batch.count(ts.as_nanos() as u64);
            ts += spacing;
        }
        bytes += batch.records.len();
        batches.push(batch);
    }
    batches
}

/// CPU time of the whole process: the writer and its compression threads.
fn process_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = base.join(format!("ringcap-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub fn dir_bytes(dir: &Path, extension: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(extension))
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

struct WriterResult {
    level: i32,
    threads: usize,
    input_bytes: u64,
    packets: u64,
    cpu: Duration,
    wall: Duration,
    output_bytes: u64,
}

fn writer_alone(level: i32, threads: usize, batches: &[Batch]) -> Result<WriterResult> {
    let dir = scratch_dir(&format!("writer{level}-{threads}"));
    let compression = if level == 0 { Compression::None } else { Compression::Zstd(level) };
    let config = RingConfig {
        dir: dir.clone(),
        template: NameTemplate::parse("bench-%s")?,
        compression,
        pcapng_interfaces: None,
        snaplen: DEFAULT_SNAPLEN,
        rotate_every: None,
        rotate_bytes: None,
        max_files: None,
        max_disk: None,
        min_free: Some(DiskLimit::Bytes(0)),
        frame_bytes: FRAME_BYTES,
        frame_age: Duration::from_secs(1),
        sync: true,
        compress_threads: threads,
        snapshot: None,
        pinned_bytes: None,
    };
    let mut ring = RingWriter::open(config, Arc::new(StorageCounters::default()))?;
    // The writer takes each batch's buffer as its frame, as it does the reader's.
    let input_bytes = batches.iter().map(|b| b.records.len() as u64).sum();
    let mut batches = batches.to_vec();
    let (cpu0, wall0) = (process_cpu(), Instant::now());
    for batch in &mut batches {
        ring.write(batch)?;
    }
    ring.finish()?;
    let (cpu, wall) = (process_cpu() - cpu0, wall0.elapsed());
    drop(ring);
    let output_bytes = dir_bytes(&dir, if level == 0 { ".pcap" } else { ".zst" });
    std::fs::remove_dir_all(&dir)?;
    Ok(WriterResult {
        level,
        threads,
        input_bytes,
        packets: batches.iter().map(|b| b.packets).sum(),
        cpu,
        wall,
        output_bytes,
    })
}

/// The zstd library alone at level 1 on one thread, over the same content cut into the
/// writer's 1 MiB frames: input bytes per CPU second.
fn zstd_library_speed(batches: &[Batch]) -> Result<f64> {
    let content: Vec<u8> = batches.iter().flat_map(|b| b.records.iter().copied()).collect();
    let mut zstd = zstd::bulk::Compressor::new(1)?;
    zstd.include_checksum(true)?;
    zstd.include_contentsize(true)?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(1 << 20));
    let cpu0 = process_cpu();
    for frame in content.chunks(FRAME_BYTES) {
        out.clear();
        zstd.compress_to_buffer(frame, &mut out)?;
    }
    Ok(content.len() as f64 / (process_cpu() - cpu0).as_secs_f64())
}

/// Size of the same pcap compressed by `zstd -1` as one stream.
fn zstd_cli_size(batches: &[Batch]) -> Result<u64> {
    let dir = scratch_dir("zstd-cli");
    std::fs::create_dir_all(&dir)?;
    let pcap = dir.join("input.pcap");
    let mut bytes = Vec::new();
    write_file_header(&mut bytes, DEFAULT_SNAPLEN)?;
    for batch in batches {
        bytes.extend_from_slice(&batch.records);
    }
    std::fs::write(&pcap, &bytes)?;
    let out =
        Command::new("zstd").args(["-1", "-q", "-c", "-T1"]).arg(&pcap).stderr(Stdio::null()).output()?;
    std::fs::remove_dir_all(&dir)?;
    if !out.status.success() {
        bail!("zstd -1 failed");
    }
    Ok(out.stdout.len() as u64)
}

struct PathResult {
    tool: &'static str,
    delivered: u64,
    captured: u64,
    cpu: Duration,
    output_bytes: u64,
}

/// Sends `count` mixed-size frames at full speed through a fresh bed into `tool`.
fn whole_path(tool: &'static str, count: u64) -> Result<PathResult> {
    let bed = TestBed::new()?;
    let release = std::env::current_exe()?.parent().context("in target/release")?.to_path_buf();
    let dir = scratch_dir(tool);
    std::fs::create_dir_all(&dir)?;
    let mut holder = None;
    let command = if tool == "ringcap" {
        let mut c = bed.rx(release.join("ringcap").to_str().context("utf-8")?);
        c.args(["run", "-i", RX_IF, "--dir", dir.to_str().context("utf-8")?, "-G", "1", "--zstd-level", "1"]);
        c
    } else {
        holder = Some(bed.hold_pass(release.join("ringcap-gen").to_str().context("utf-8")?)?);
        let script = dir.join("zstd-1.sh");
        std::fs::write(&script, "#!/bin/sh\nexec zstd -1 -q --rm \"$1\"\n")?;
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let mut c = bed.rx("tcpdump");
        let pattern = dir.join("tcpdump-%s.pcap");
        c.args(["-i", RX_IF, "-n", "-Z", "root", "-s", "262144", "-B", "65536", "-G", "1", "-W", "1000000"])
            .args(["-w", pattern.to_str().context("utf-8")?, "-z", script.to_str().context("utf-8")?]);
        c
    };
    let mut capture = CaptureProcess::spawn(command)?;
    if !capture.wait_listening() {
        bail!("{tool} did not start: {:?}", capture.stderr);
    }
    let before = bed.rx_packets()?;
    let sent = bed
        .tx(release.join("ringcap-gen").to_str().context("utf-8")?)
        .args(["send", "-i", TX_IF, "-c", &count.to_string(), "--sizes", "64,128,576,1514", "--flows", "64"])
        .args(["--chunk", &(count / 8).to_string()])
        .output()?;
    if !sent.status.success() {
        bail!("ringcap-gen failed");
    }
    std::thread::sleep(Duration::from_millis(1500));
    let delivered = bed.rx_packets()? - before;
    capture.signal(libc::SIGINT);
    let finished = capture.finish_measured(Duration::from_secs(60));
    // tcpdump's XDP_PASS holder, if any, goes with the capture.
    drop(holder);
    let mut cpu = finished.cpu;
    // tcpdump compresses a file only when it rotates away from it: compress the last one too.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    for leftover in leftovers {
        let mut zstd = Command::new("zstd");
        zstd.args(["-1", "-q", "--rm"]).arg(&leftover);
        cpu += CaptureProcess::spawn(zstd)?.finish_measured(Duration::from_secs(60)).cpu;
    }
    let captured = summary_count(&finished.stderr, "packets captured")
        .with_context(|| format!("no summary from {tool}: {:?}", finished.stderr))?;
    let output_bytes = dir_bytes(&dir, ".zst");
    std::fs::remove_dir_all(&dir)?;
    Ok(PathResult { tool, delivered, captured, cpu, output_bytes })
}

pub fn run(options: &Options) -> Result<()> {
    let records = corpus_records(&options.corpus)?;
    let batches = batches(&records, options.megabytes << 20, Duration::from_micros(1));
    println!(
        "writer alone: {} MiB of pcap from {} corpus packets, repeated",
        options.megabytes,
        records.len()
    );
    let mut writer_rows = Vec::new();
    let mut writer_json = Vec::new();
    let zstd_cli = zstd_cli_size(&batches)?;
    let library = zstd_library_speed(&batches)?;
    let runs: Vec<(i32, usize)> =
        [(0, 0)].into_iter().chain(options.threads.iter().map(|&t| (1, t))).chain([(3, 0)]).collect();
    for (level, threads) in runs {
        let r = writer_alone(level, threads, &batches)?;
        let per_core = r.input_bytes as f64 / r.cpu.as_secs_f64();
        let wall = r.input_bytes as f64 / r.wall.as_secs_f64();
        let ratio = r.input_bytes as f64 / r.output_bytes.max(1) as f64;
        writer_rows.push(vec![
            if level == 0 { "none (pcap)".into() } else { format!("zstd {level}") },
            if level == 0 { "-".into() } else { threads.to_string() },
            format!("{:.0}", per_core / 1e6),
            format!("{:.0}", wall / 1e6),
            if level == 1 { format!("{:.2}x", per_core / library) } else { "-".into() },
            if level == 1 { format!("{:.2}x", wall / library) } else { "-".into() },
            format!("{ratio:.2}"),
            if level == 1 { format!("{:.3}", r.output_bytes as f64 / zstd_cli as f64) } else { "-".into() },
        ]);
        writer_json.push(json!({
            "level": r.level, "compress_threads": r.threads, "input_bytes": r.input_bytes, "packets": r.packets,
            "cpu_seconds": r.cpu.as_secs_f64(), "wall_seconds": r.wall.as_secs_f64(),
            "output_bytes": r.output_bytes, "bytes_per_cpu_second": per_core, "bytes_per_second": wall,
            "compression_ratio": ratio,
        }));
    }
    println!("zstd library alone, level 1, one thread, 1 MiB frames: {:.0} MB/s", library / 1e6);
    report::print_table(
        &[
            "compression",
            "threads",
            "MB/s per core",
            "MB/s wall",
            "per core vs library",
            "wall vs library",
            "ratio",
            "size vs zstd -1",
        ],
        &writer_rows,
    );

    println!();
    println!(
        "whole path: {} mixed-size frames (64-1514 B) through the veth test bed, -G 1, zstd -1",
        options.packets
    );
    TestBed::remove_stale();
    let mut path_rows = Vec::new();
    let mut path_json = Vec::new();
    for tool in ["ringcap", "tcpdump"] {
        let r = whole_path(tool, options.packets)?;
        let lost = r.delivered.saturating_sub(r.captured);
        path_rows.push(vec![
            if tool == "ringcap" { "ringcap run".into() } else { "tcpdump -G -z zstd".into() },
            r.delivered.to_string(),
            r.captured.to_string(),
            lost.to_string(),
            format!("{:.2}", r.cpu.as_secs_f64()),
            format!("{:.0}", r.cpu.as_secs_f64() * 1e9 / r.captured.max(1) as f64),
            format!("{:.1}", r.output_bytes as f64 / 1e6),
        ]);
        path_json.push(json!({
            "tool": r.tool, "delivered": r.delivered, "captured": r.captured, "lost": lost,
            "cpu_seconds": r.cpu.as_secs_f64(), "output_bytes": r.output_bytes,
        }));
    }
    report::print_table(
        &["path", "delivered", "captured", "lost", "CPU s", "CPU ns/pkt", "MB on disk"],
        &path_rows,
    );
    report::save_json(
        "storage",
        &json!({
            "benchmark": "storage", "zstd_cli_level1_bytes": zstd_cli, "zstd_library_bytes_per_cpu_second": library,
            "writer": writer_json, "whole_path": path_json,
        }),
    )
}

//! `bench pull`: a filtered 5-minute window out of a multi-gigabyte ring, against the
//! baseline `zstdcat FILES | tcpdump -r - -w OUT EXPR` over the files that overlap the
//! window (what a careful user picks by file name), in one run.
//!
//! The ring is written by the real ring writer from the tcpdump corpus, repeated with
//! timestamps spread evenly over an hour. A 1 Gbps capture holds 37.5 GB of pcap in five
//! minutes, more than a benchmark should write; the table also projects each tool's time
//! for such a window from its measured throughput over the window's bytes.
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use capture_daemon::output::Sink;
use capture_daemon::storage::budget::DiskLimit;
use capture_daemon::storage::frames::DataFile;
use capture_daemon::storage::naming::NameTemplate;
use capture_daemon::storage::ring::{RingConfig, RingWriter, StorageCounters};
use capture_daemon::storage::Compression;
use serde_json::json;

use crate::report;
use crate::storage::{batches, corpus_records, dir_bytes, scratch_dir};

#[derive(clap::Args)]
pub struct Options {
    /// Megabytes of pcap in the ring.
    #[arg(long, default_value_t = 4096)]
    megabytes: usize,
    /// Filter for both tools.
    #[arg(long, default_value = "host 192.168.1.1 and udp")]
    filter: String,
    #[arg(long, default_value = "testdata/tcpdump-tests")]
    corpus: PathBuf,
}

const RING_SPAN_SECS: u64 = 3600;
const WINDOW_SECS: u64 = 300;
const GBPS_WINDOW_BYTES: f64 = 1e9 / 8.0 * WINDOW_SECS as f64;

pub fn run(options: &Options) -> Result<()> {
    let records = corpus_records(&options.corpus)?;
    let total = options.megabytes << 20;
    let average = records.iter().map(|(_, d)| d.len() + 16).sum::<usize>() / records.len();
    let packets = total / average;
    let spacing = Duration::from_nanos(RING_SPAN_SECS * 1_000_000_000 / packets as u64);
    let dir = scratch_dir("pull-ring");
    let config = RingConfig {
        dir: dir.clone(),
        template: NameTemplate::parse("bench-%s")?,
        compression: Compression::Zstd(1),
        pcapng_interfaces: None,
        snaplen: 262_144,
        rotate_every: None,
        rotate_bytes: Some(16 << 20),
        max_files: None,
        max_disk: None,
        min_free: Some(DiskLimit::Bytes(0)),
        frame_bytes: 1 << 20,
        frame_age: Duration::from_secs(3600),
        sync: false,
        compress_threads: 0,
        snapshot: None,
    };
    println!(
        "writing a {} MiB ring spanning {RING_SPAN_SECS} s into {} ...",
        options.megabytes,
        dir.display()
    );
    let mut ring = RingWriter::open(config, Arc::new(StorageCounters::default()))?;
    // Written in slices so the whole ring never sits in memory at once.
    let slice = 256 << 20;
    let mut start = Duration::from_secs(1_800_000_000);
    for _ in 0..total.div_ceil(slice) {
        let mut part = batches(&records, slice.min(total), spacing);
        for batch in &mut part {
            shift(batch, start - Duration::from_secs(1_800_000_000));
        }
        start = part.last().map_or(start, |b| Duration::from_nanos(b.latest_ns) + spacing);
        for batch in &mut part {
            ring.write(batch)?;
        }
    }
    ring.finish()?;
    drop(ring);
    let ring_bytes = dir_bytes(&dir, ".zst");

    // The window: 5 minutes from the middle of the ring.
    let since = 1_800_000_000 + RING_SPAN_SECS / 2;
    let (since_text, until_text) = (rfc(since), rfc(since + WINDOW_SECS));
    let outputs = scratch_dir("pull-out");
    std::fs::create_dir_all(&outputs)?;
    let out = outputs.join("pulled.pcap");
    let started = Instant::now();
    let status = Command::new(std::env::current_exe()?.with_file_name("ringcap"))
        .args([
            "pull",
            "--dir",
            dir.to_str().unwrap_or_default(),
            "--since",
            &since_text,
            "--until",
            &until_text,
        ])
        .args(["-w", out.to_str().unwrap_or_default(), &options.filter])
        .stderr(Stdio::null())
        .status()?;
    let ours = started.elapsed();
    if !status.success() {
        bail!("ringcap pull failed");
    }
    let ours_bytes = std::fs::metadata(&out)?.len();

    let window_ns = (since * 1_000_000_000, (since + WINDOW_SECS) * 1_000_000_000);
    let mut overlapping = Vec::new();
    for file in capture_daemon::retrieve::pull::ring_files(&dir)? {
        let data = DataFile::open(&file)?;
        if data.time_range().is_some_and(|(f, l)| f < window_ns.1 && l >= window_ns.0) {
            overlapping.push(file);
        }
    }
    let baseline_out = outputs.join("baseline.pcap");
    // zstdcat of several files repeats the pcap header: keep the first, cut the others.
    let mut parts = Vec::new();
    for (i, file) in overlapping.iter().enumerate() {
        let cut = if i == 0 { "" } else { " | tail -c +25" };
        parts.push(format!("zstdcat {}{cut}", file.display()));
    }
    let script =
        format!("({}) | tcpdump -r - -w {} '{}'", parts.join("; "), baseline_out.display(), options.filter);
    let started = Instant::now();
    let status = Command::new("sh").args(["-c", &script]).stderr(Stdio::null()).status()?;
    let theirs = started.elapsed();
    if !status.success() {
        bail!("the baseline failed: {script}");
    }
    let window_pcap_bytes = (WINDOW_SECS as f64 / RING_SPAN_SECS as f64) * total as f64;
    let project = |t: Duration| t.as_secs_f64() * GBPS_WINDOW_BYTES / window_pcap_bytes;
    report::print_table(
        &["tool", "seconds", "output MB", "files read", "projected s, 1 Gbps window"],
        &[
            vec![
                "ringcap pull".into(),
                format!("{:.3}", ours.as_secs_f64()),
                format!("{:.1}", ours_bytes as f64 / 1e6),
                "index".into(),
                format!("{:.1}", project(ours)),
            ],
            vec![
                "zstdcat | tcpdump".into(),
                format!("{:.3}", theirs.as_secs_f64()),
                format!("{:.1}", std::fs::metadata(&baseline_out)?.len() as f64 / 1e6),
                overlapping.len().to_string(),
                format!("{:.1}", project(theirs)),
            ],
        ],
    );
    println!(
        "ring: {:.0} MB compressed ({} MiB pcap, {RING_SPAN_SECS} s); window: {WINDOW_SECS} s, {:.0} MB of pcap; ringcap is {:.1}x faster",
        ring_bytes as f64 / 1e6,
        options.megabytes,
        window_pcap_bytes / 1e6,
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
    let figures = json!({
        "benchmark": "pull", "ring_pcap_bytes": total, "ring_compressed_bytes": ring_bytes,
        "window_seconds": WINDOW_SECS, "window_pcap_bytes": window_pcap_bytes, "filter": options.filter,
        "ringcap_seconds": ours.as_secs_f64(), "baseline_seconds": theirs.as_secs_f64(),
        "speedup": theirs.as_secs_f64() / ours.as_secs_f64(), "baseline_files": overlapping.len(),
        "ringcap_projected_seconds_1gbps": project(ours), "baseline_projected_seconds_1gbps": project(theirs),
    });
    std::fs::remove_dir_all(&dir)?;
    std::fs::remove_dir_all(&outputs)?;
    report::save_json("pull", &figures)
}

fn shift(batch: &mut capture_daemon::capture::Batch, by: Duration) {
    if by.is_zero() {
        return;
    }
    // Rewrite each record's timestamp (ns pcap, native order) by `by`.
    let mut at = 0;
    while at + 16 <= batch.records.len() {
        let secs = u32::from_ne_bytes(batch.records[at..at + 4].try_into().expect("4 bytes"));
        let nanos = u32::from_ne_bytes(batch.records[at + 4..at + 8].try_into().expect("4 bytes"));
        let incl = u32::from_ne_bytes(batch.records[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        let t = Duration::new(u64::from(secs), nanos) + by;
        batch.records[at..at + 4].copy_from_slice(&(t.as_secs() as u32).to_ne_bytes());
        batch.records[at + 4..at + 8].copy_from_slice(&t.subsec_nanos().to_ne_bytes());
        at += 16 + incl;
    }
    batch.earliest_ns += by.as_nanos() as u64;
    batch.latest_ns += by.as_nanos() as u64;
}

fn rfc(secs: u64) -> String {
    capture_daemon::timefmt::rfc3339(secs * 1_000_000_000)
}

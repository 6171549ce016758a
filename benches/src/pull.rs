//! `bench pull`: a filtered 5-minute window out of a multi-gigabyte ring, against the
//! baseline `zstdcat FILES | tcpdump -r - -w OUT EXPR` over the files that overlap the
//! window (what a careful user picks by file name), in one run.
//!
//! The ring is written by the real ring writer from the tcpdump corpus, repeated with
//! timestamps spread evenly over an hour, each pass of the corpus with IPv4 hosts of its
//! own. Two queries: one host among thousands (selective: the frame summaries rule most
//! of the window out) and a protocol (broad: most frames are read). A 1 Gbps capture holds 37.5 GB of pcap in five
//! minutes, more than a benchmark should write; the table also projects each tool's time
//! for such a window (and a 10 Gbps one) from its measured throughput over the window's bytes.
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use capture_daemon::capture::Batch;
use capture_daemon::output::Sink;
use capture_daemon::pcap::write_record;
use capture_daemon::storage::budget::DiskLimit;
use capture_daemon::storage::frames::DataFile;
use capture_daemon::storage::naming::NameTemplate;
use capture_daemon::storage::ring::{RingConfig, RingWriter, StorageCounters};
use capture_daemon::storage::Compression;
use serde_json::json;

use crate::report;
use crate::storage::{corpus_records, dir_bytes, scratch_dir};

#[derive(clap::Args)]
pub struct Options {
    /// Megabytes of pcap in the ring.
    #[arg(long, default_value_t = 4096)]
    megabytes: usize,
    #[arg(long, default_value = "testdata/tcpdump-tests")]
    corpus: PathBuf,
}

const RING_SPAN_SECS: u64 = 3600;
const WINDOW_SECS: u64 = 300;
const GBPS_WINDOW_BYTES: f64 = 1e9 / 8.0 * WINDOW_SECS as f64;
/// The ring writer's frame size (`--frame-bytes` default).
const FRAME_BYTES: usize = 1 << 20;

/// Corpus packet `data` as pass `pass` of the corpus sends it: its IPv4 addresses moved
/// to a.P1.P2.d (P = the pass), so that each pass talks with hosts of its own and one
/// host is one among thousands, as on a gateway.
fn of_pass(data: &[u8], pass: u32) -> Vec<u8> {
    let mut data = data.to_vec();
    if data.len() >= 34 && data[12..14] == [0x08, 0x00] {
        for at in [27, 31] {
            data[at] = (pass >> 8) as u8;
            data[at + 1] = pass as u8;
        }
    }
    data
}

/// An IPv4 host of pass `pass`, if the corpus has one.
fn host_of_pass(records: &[(u32, Vec<u8>)], pass: u32) -> Option<String> {
    let data =
        records.iter().map(|(_, d)| of_pass(d, pass)).find(|d| d.len() >= 34 && d[12..14] == [0x08, 0x00])?;
    Some(format!("{}.{}.{}.{}", data[26], data[27], data[28], data[29]))
}

/// One query, timed for ringcap and for the baseline.
struct Timed {
    query: String,
    ours: Duration,
    theirs: Duration,
    ours_bytes: u64,
    theirs_bytes: u64,
    skipped: u64,
}

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
        frame_bytes: FRAME_BYTES,
        frame_age: Duration::from_secs(3600),
        sync: false,
        compress_threads: 1,
        snapshot: None,
        pinned_bytes: None,
    };
    println!(
        "writing a {} MiB ring spanning {RING_SPAN_SECS} s into {} ...",
        options.megabytes,
        dir.display()
    );
    let mut ring = RingWriter::open(config, Arc::new(StorageCounters::default()))?;
    let mut ts = Duration::from_secs(1_800_000_000);
    let (mut written, mut pass) = (0usize, 0u32);
    let mut batch = Batch::empty(Vec::with_capacity(FRAME_BYTES + (64 << 10)));
    while written < total {
        for (orig, data) in &records {
            write_record(&mut batch.records, ts, *orig, &of_pass(data, pass), 262_144)?;
            batch.count(ts.as_nanos() as u64);
            ts += spacing;
            if batch.records.len() >= FRAME_BYTES {
                written += batch.records.len();
                ring.write(&mut batch)?;
                batch = Batch::empty(Vec::with_capacity(FRAME_BYTES + (64 << 10)));
            }
        }
        pass += 1;
    }
    ring.write(&mut batch)?;
    ring.finish()?;
    drop(ring);
    let ring_bytes = dir_bytes(&dir, ".zst");
    let passes = pass;

    // The window: 5 minutes from the middle of the ring.
    let since = 1_800_000_000 + RING_SPAN_SECS / 2;
    let (since_text, until_text) = (rfc(since), rfc(since + WINDOW_SECS));
    let window_ns = (since * 1_000_000_000, (since + WINDOW_SECS) * 1_000_000_000);
    let mut overlapping = Vec::new();
    for file in capture_daemon::storage::manifest::ring_files(&dir)? {
        let data = DataFile::open(&file)?;
        if data.time_range().is_some_and(|(f, l)| f < window_ns.1 && l >= window_ns.0) {
            overlapping.push(file);
        }
    }
    // One host among thousands: one of the pass in the middle of the window.
    let middle_pass =
        (passes as f64 * (RING_SPAN_SECS / 2 + WINDOW_SECS / 2) as f64 / RING_SPAN_SECS as f64) as u32;
    let host = host_of_pass(&records, middle_pass).context("the corpus has no IPv4 packet")?;
    let outputs = scratch_dir("pull-out");
    std::fs::create_dir_all(&outputs)?;
    let mut timed = Vec::new();
    for query in [format!("host {host}"), "udp".to_string()] {
        let out = outputs.join("pulled.pcap");
        let started = Instant::now();
        let pulled = Command::new(std::env::current_exe()?.with_file_name("ringcap"))
            .args([
                "pull",
                "--dir",
                dir.to_str().unwrap_or_default(),
                "--since",
                &since_text,
                "--until",
                &until_text,
            ])
            .args(["-w", out.to_str().unwrap_or_default(), &query])
            .output()?;
        let ours = started.elapsed();
        if !pulled.status.success() {
            bail!("ringcap pull failed: {}", String::from_utf8_lossy(&pulled.stderr));
        }
        let stderr = String::from_utf8_lossy(&pulled.stderr);
        let skipped = stderr
            .split(" skipped by their summaries")
            .next()
            .and_then(|before| before.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let baseline_out = outputs.join("baseline.pcap");
        // zstdcat of several files repeats the pcap header: keep the first, cut the others.
        let mut parts = Vec::new();
        for (i, file) in overlapping.iter().enumerate() {
            let cut = if i == 0 { "" } else { " | tail -c +25" };
            parts.push(format!("zstdcat {}{cut}", file.display()));
        }
        let script = format!("({}) | tcpdump -r - -w {} '{query}'", parts.join("; "), baseline_out.display());
        let started = Instant::now();
        let status = Command::new("sh").args(["-c", &script]).stderr(Stdio::null()).status()?;
        let theirs = started.elapsed();
        if !status.success() {
            bail!("the baseline failed: {script}");
        }
        timed.push(Timed {
            query,
            ours,
            theirs,
            ours_bytes: std::fs::metadata(&out)?.len(),
            theirs_bytes: std::fs::metadata(&baseline_out)?.len(),
            skipped,
        });
    }
    let window_pcap_bytes = (WINDOW_SECS as f64 / RING_SPAN_SECS as f64) * total as f64;
    let project = |t: Duration, gbps: f64| t.as_secs_f64() * gbps * GBPS_WINDOW_BYTES / window_pcap_bytes;
    let mut rows = Vec::new();
    for t in &timed {
        for (tool, seconds, bytes, skipped) in [
            ("ringcap pull", t.ours, t.ours_bytes, t.skipped.to_string()),
            ("zstdcat | tcpdump", t.theirs, t.theirs_bytes, "-".into()),
        ] {
            rows.push(vec![
                t.query.clone(),
                tool.into(),
                format!("{:.3}", seconds.as_secs_f64()),
                format!("{:.1}", bytes as f64 / 1e6),
                skipped,
                format!("{:.1}", project(seconds, 1.0)),
                format!("{:.1}", project(seconds, 10.0)),
                format!("{:.1}x", t.theirs.as_secs_f64() / seconds.as_secs_f64()),
            ]);
        }
    }
    report::print_table(
        &[
            "query",
            "tool",
            "seconds",
            "output MB",
            "frames skipped",
            "projected s, 1 Gbps",
            "projected s, 10 Gbps",
            "vs baseline",
        ],
        &rows,
    );
    println!(
        "ring: {:.0} MB compressed ({} MiB pcap, {RING_SPAN_SECS} s, {passes} passes of the corpus, each with hosts of its own); \
         window: {WINDOW_SECS} s, {:.0} MB of pcap in {} files",
        ring_bytes as f64 / 1e6,
        options.megabytes,
        window_pcap_bytes / 1e6,
        overlapping.len()
    );
    let queries: Vec<_> = timed
        .iter()
        .map(|t| {
            json!({
                "query": t.query, "ringcap_seconds": t.ours.as_secs_f64(), "baseline_seconds": t.theirs.as_secs_f64(),
                "speedup": t.theirs.as_secs_f64() / t.ours.as_secs_f64(), "frames_skipped": t.skipped,
                "ringcap_output_bytes": t.ours_bytes, "baseline_output_bytes": t.theirs_bytes,
                "ringcap_projected_seconds_1gbps": project(t.ours, 1.0), "ringcap_projected_seconds_10gbps": project(t.ours, 10.0),
                "baseline_projected_seconds_1gbps": project(t.theirs, 1.0),
            })
        })
        .collect();
    let figures = json!({
        "benchmark": "pull", "ring_pcap_bytes": total, "ring_compressed_bytes": ring_bytes,
        "window_seconds": WINDOW_SECS, "window_pcap_bytes": window_pcap_bytes, "baseline_files": overlapping.len(),
        "queries": queries,
    });
    std::fs::remove_dir_all(&dir)?;
    std::fs::remove_dir_all(&outputs)?;
    report::save_json("pull", &figures)
}

fn rfc(secs: u64) -> String {
    capture_daemon::timefmt::rfc3339(secs * 1_000_000_000)
}

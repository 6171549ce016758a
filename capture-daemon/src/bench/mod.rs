//! `ringcap bench`: how fast this box captures without losing a packet, with the user's
//! filter, snap length, compression and disk; where it loses first; what CPU it takes;
//! and how many days the disk holds at that rate.
//!
//! For each frame size and mode it runs a zero-loss search ([`search`], RFC 2544's
//! throughput test) of trials ([`trial`]): each starts `ringcap run` as the user would,
//! offers traffic (ringcap's own generator on a veth test bed, or an external generator
//! on a real interface), and accounts for every frame ([`ledger`]) from the counters of
//! the interface, the kernel programs, the sockets, the reader and the writer, with
//! the machine's CPU per core ([`system`]). The report ([`report`]) is a terminal table,
//! `report.json` (`docs/bench-report.md`) and a self-contained `report.html`.
pub mod ledger;
pub mod report;
pub mod search;
pub mod system;
pub mod trial;

use std::path::PathBuf;

use serde::Serialize;

use crate::storage::budget::{fs_space, DiskLimit};
use report::{Report, SizeResult};
use search::{zero_loss, SearchSettings, TrialKind};
use trial::{Traffic, Trial, TrialContext};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("the {mode} capture failed; it said:\n{stderr}")]
    Capture { mode: Mode, stderr: String },
}

impl BenchError {
    pub fn io(what: String, source: std::io::Error) -> Self {
        BenchError::Io { what, source }
    }
}

/// A frame size of the search. Sizes count the 4-byte FCS, as RFC 2544's do: the frames
/// generated (and captured) are 4 bytes shorter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSize {
    Bytes(u32),
    /// 64, 594 and 1518 bytes in 7:4:1 (the simple IMIX).
    Imix,
}

impl FrameSize {
    /// The sizes of RFC 2544 and IMIX: the default search.
    pub const STANDARD: [FrameSize; 8] = [
        FrameSize::Bytes(64),
        FrameSize::Bytes(128),
        FrameSize::Bytes(256),
        FrameSize::Bytes(512),
        FrameSize::Bytes(1024),
        FrameSize::Bytes(1280),
        FrameSize::Bytes(1518),
        FrameSize::Imix,
    ];

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("imix") {
            return Ok(FrameSize::Imix);
        }
        match text.trim_end_matches(['B', 'b']).trim().parse::<u32>() {
            Ok(n) if (64..=1518).contains(&n) => Ok(FrameSize::Bytes(n)),
            Ok(n) => Err(format!("frame size {n} is outside 64..=1518 bytes (RFC 2544's range)")),
            Err(_) => Err(format!("{text:?} is not a frame size: use 64..1518 or imix")),
        }
    }

    pub fn label(&self) -> String {
        match self {
            FrameSize::Bytes(n) => format!("{n} B"),
            FrameSize::Imix => "IMIX".into(),
        }
    }

    /// Lengths of the frames as generated, without FCS, used in turn.
    pub fn wire_lengths(&self) -> Vec<usize> {
        match self {
            FrameSize::Bytes(n) => vec![*n as usize - 4],
            FrameSize::Imix => [60; 7].into_iter().chain([590; 4]).chain([1514]).collect(),
        }
    }

    /// Mean size with FCS: what line rates are counted in.
    pub fn mean_bytes(&self) -> f64 {
        let lengths = self.wire_lengths();
        lengths.iter().map(|&l| (l + 4) as f64).sum::<f64>() / lengths.len() as f64
    }

    /// The layer-1 bit rate of `pps` frames a second (preamble and gap: 20 bytes a frame).
    pub fn gbps(&self, pps: f64) -> f64 {
        pps * (self.mean_bytes() + 20.0) * 8.0 / 1e9
    }
}

/// A way of capturing that the bench measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// ringcap through the BPF ring buffer (`--mode ring`).
    Ring,
    /// ringcap through AF_XDP sockets (`--mode afxdp`).
    Afxdp,
    /// `tcpdump -w`, the peer.
    Tcpdump,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Ring => "ringcap ring buffer",
            Mode::Afxdp => "ringcap AF_XDP",
            Mode::Tcpdump => "tcpdump -w",
        })
    }
}

/// What to measure and how.
pub struct BenchConfig {
    pub traffic: Traffic,
    pub sizes: Vec<FrameSize>,
    pub modes: Vec<Mode>,
    pub search: SearchSettings,
    /// External source: follow these rates (frames/s) instead of searching.
    pub rates: Option<Vec<f64>>,
    /// Under which the trials' rings are written.
    pub dir: PathBuf,
    /// The retention budget (`--max-disk`; the whole filesystem of `dir` without it).
    pub max_disk: Option<DiskLimit>,
    pub run_options: Vec<String>,
    pub tcpdump_options: Vec<String>,
    /// Where report.json, report.html and the trials' statistics go.
    pub out: PathBuf,
    /// The user's options as given, for the report.
    pub options_text: Vec<String>,
}

/// Where the trials' rings are written under `--dir`: a directory of this process's own.
pub fn work_dir(dir: &std::path::Path) -> PathBuf {
    dir.join(format!("ringcap-bench-{}", std::process::id()))
}

/// Runs every search, telling `progress` of each trial as it ends; returns the report.
pub fn run(config: BenchConfig, mut progress: impl FnMut(&Trial)) -> Result<Report, BenchError> {
    let started = std::time::SystemTime::now();
    let evidence = config.out.join("trials");
    std::fs::create_dir_all(&evidence)
        .map_err(|e| BenchError::io(format!("creating {}", evidence.display()), e))?;
    let work_dir = work_dir(&config.dir);
    std::fs::create_dir(&work_dir).map_err(|e| {
        BenchError::io(format!("creating {} (--dir must be a writable directory)", work_dir.display()), e)
    })?;
    // The kernel's own statistics of the capture programs, on for the bench's duration.
    let _bpf_stats = system::BpfStatsEnabled::new();
    let (ns, iface) = config.traffic.capture_point();
    let mut environment = system::Environment::probe(ns, iface);
    // Retention at the rate the interface carries now (a real interface only).
    let (current_pps, notes) = match &config.traffic {
        Traffic::Interface { iface } => (current_rate(iface), Vec::new()),
        Traffic::SelfTest(_) => (None, SELF_TEST_NOTES.map(String::from).to_vec()),
    };
    let mut context = TrialContext {
        traffic: config.traffic,
        ringcap: std::env::current_exe()
            .map_err(|e| BenchError::io("finding ringcap's own binary".into(), e))?,
        work_dir: work_dir.clone(),
        evidence_dir: evidence,
        run_options: config.run_options.clone(),
        tcpdump_options: config.tcpdump_options.clone(),
        trials: 0,
    };
    let mut results = Vec::new();
    let mut trials = Vec::new();
    let outcome = (|| {
        for &mode in &config.modes {
            for &size in &config.sizes {
                let mut run_trial = |rate, length, kind| {
                    let trial = context.run(mode, size, rate, length, kind)?;
                    progress(&trial);
                    Ok::<_, BenchError>(trial)
                };
                let found = match &config.rates {
                    Some(rates) => follow_rates(rates, &config.search, &mut run_trial)?,
                    None => zero_loss(&config.search, &mut run_trial)?,
                };
                results.push(SizeResult::new(mode, size, &found));
                trials.extend(found.trials);
            }
        }
        Ok::<_, BenchError>(())
    })();
    let _ = std::fs::remove_dir_all(&work_dir);
    outcome?;
    for trial in &trials {
        if !trial.attached.is_empty() && !environment.attached.contains(&trial.attached) {
            environment.attached.push(trial.attached.clone());
        }
    }
    let space =
        fs_space(&config.dir).map_err(|e| BenchError::io(format!("statvfs {}", config.dir.display()), e))?;
    let budget = config.max_disk.map_or(space.total, |limit| limit.bytes(space.total));
    Ok(Report::new(report::Inputs {
        started,
        environment,
        search: config.search,
        sizes: config.sizes,
        options: config.options_text,
        dir: config.dir,
        budget_bytes: budget,
        budget_from_max_disk: config.max_disk.is_some(),
        current_pps,
        results,
        trials,
        notes,
    }))
}

/// What the self-test's figures are not.
const SELF_TEST_NOTES: [&str; 2] = [
    "the self-test's generator sends copies of a few frames, which compress far better than real \
     traffic: its compression and retention figures describe the method, not a link (use -i on real traffic)",
    "the generator sends 50 ms of frames at a time at its full speed: a trial's rate is an average over such bursts, \
     and on veth the receive path runs on the generator's CPU",
];

/// An external source at the user's rates: `trials` trials at each, in order; the
/// zero-loss rate is the fastest rate all of whose trials lost nothing.
fn follow_rates<E>(
    rates: &[f64],
    settings: &SearchSettings,
    trial: &mut impl FnMut(Option<f64>, std::time::Duration, TrialKind) -> Result<Trial, E>,
) -> Result<search::Found<Trial>, E> {
    let mut found =
        search::Found { zero_loss_pps: None, confirmed: true, source_limited: false, trials: Vec::new() };
    for &rate in rates {
        let mut held = true;
        let mut offered = f64::MAX;
        for _ in 0..settings.trials.max(1) {
            let outcome = trial(Some(rate), settings.trial, TrialKind::Search)?;
            held &= search::TrialOutcome::lossless(&outcome);
            offered = offered.min(outcome.offered_pps);
            found.trials.push(outcome);
        }
        if held && found.zero_loss_pps.is_none_or(|best| offered > best) {
            found.zero_loss_pps = Some(offered);
        }
    }
    Ok(found)
}

/// Frames a second arriving on `iface` now (one second's sample), if any.
fn current_rate(iface: &str) -> Option<f64> {
    let count = || system::InterfaceCounters::read(None, iface).ok().map(|c| c.rx_packets + c.dropped());
    let before = count()?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let rate = count()?.saturating_sub(before) as f64;
    (rate > 0.0).then_some(rate)
}

//! One trial: a capture (`ringcap run` as the user would start it, or `tcpdump -w`), a
//! burst of traffic at one rate, and what every counter said about it.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringcap_tools::bpf::{ConstantXdp, XdpVerdict};
use ringcap_tools::frames::FrameTemplate;
use ringcap_tools::generator::{transmit, Plan};
use ringcap_tools::harness::CaptureProcess;
use ringcap_tools::testbed::{TestBed, RX_IF, SINK_MAC, TX_IF, TX_MAC};
use serde::Serialize;

use super::ledger::Ledger;
use super::search::{TrialKind, TrialOutcome};
use super::system::{
    capture_program_runs, newest_program_id, process_cpu_seconds, CoreUse, CpuTimes, InterfaceCounters,
    ProgramRuns,
};
use super::{BenchError, FrameSize, Mode};
use crate::storage::frames::DataFile;

/// Where the traffic comes from.
pub enum Traffic {
    /// A veth test bed and ringcap's own generator, built for the bench and removed after.
    SelfTest(TestBed),
    /// A real interface fed by an external generator; with `prompt`, each trial tells
    /// the user what to send and waits for it.
    Interface { iface: String },
}

impl Traffic {
    /// The captured interface, and the namespace it is in.
    pub fn capture_point(&self) -> (Option<&str>, &str) {
        match self {
            Traffic::SelfTest(bed) => (Some(bed.rx_ns.as_str()), RX_IF),
            Traffic::Interface { iface } => (None, iface.as_str()),
        }
    }

    /// The capture point's counters; on the self-test's veth pair, with the sending end's
    /// drops (veth counts a full receive queue there).
    fn counters(&self) -> Result<InterfaceCounters, BenchError> {
        let (ns, iface) = self.capture_point();
        let error = |e| BenchError::io(format!("reading the counters of {iface}"), e);
        let counters = InterfaceCounters::read(ns, iface).map_err(error)?;
        match self {
            Traffic::SelfTest(bed) => counters.with_peer(&bed.tx_ns, TX_IF).map_err(error),
            Traffic::Interface { .. } => Ok(counters),
        }
    }
}

/// What every trial shares.
pub struct TrialContext {
    pub traffic: Traffic,
    /// The `ringcap` binary to run.
    pub ringcap: PathBuf,
    /// Under which each trial's ring is written: the disk being measured.
    pub work_dir: PathBuf,
    /// Where each trial's raw statistics are kept, beside the report.
    pub evidence_dir: PathBuf,
    /// The user's `run` options, passed to every ringcap trial.
    pub run_options: Vec<String>,
    /// The same capture for tcpdump: snap length and filter.
    pub tcpdump_options: Vec<String>,
    /// Trials run so far.
    pub trials: usize,
}

/// Disk use of a trial.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct DiskUse {
    /// Bytes written to the files (compressed, indexes included).
    pub bytes_written: u64,
    /// Bytes of pcap they hold.
    pub content_bytes: u64,
    pub write_mb_per_s: f64,
    pub compression_ratio: f64,
}

/// One trial and everything measured in it.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    pub number: usize,
    pub mode: Mode,
    pub size: String,
    pub kind: TrialKind,
    /// The rate asked for (None: full speed).
    pub target_pps: Option<f64>,
    /// The rate offered: frames offered over the time they took.
    pub offered_pps: f64,
    pub seconds: f64,
    pub ledger: Ledger,
    /// The captured interface's counters over the trial.
    pub interface: InterfaceCounters,
    pub cores: Vec<CoreUse>,
    /// CPU of the capture process (every thread) while traffic flowed.
    pub capture_cpu_seconds: f64,
    /// CPU of the whole machine (softirq included) while traffic flowed.
    pub machine_busy_seconds: f64,
    /// CPU of ringcap's own generator (self-test), which shares the machine.
    pub generator_cpu_seconds: Option<f64>,
    /// CPU of the capture per offered frame: its process (every thread) and its kernel
    /// programs (the kernel's BPF run-time statistics). tcpdump's in-kernel work (the
    /// packet socket's copy) is not in it.
    pub cpu_ns_per_packet: f64,
    /// The capture programs' run time per run (ringcap's; the kernel's own statistics).
    pub kernel_ns_per_packet: Option<f64>,
    pub disk: DiskUse,
    /// How the capture attached ("XDP native mode", "copy mode", ...).
    pub attached: String,
    /// The trial's raw statistics snapshot, beside the report.
    pub stats_file: Option<String>,
}

impl TrialOutcome for Trial {
    fn offered_pps(&self) -> f64 {
        self.offered_pps
    }

    fn lossless(&self) -> bool {
        self.ledger.lost() == 0 && self.ledger.offered > 0
    }
}

/// What one trial is to do.
struct TrialSpec {
    number: usize,
    mode: Mode,
    size: FrameSize,
    rate: Option<f64>,
    length: Duration,
    kind: TrialKind,
}

/// What the traffic source reports.
struct Offered {
    frames: u64,
    seconds: f64,
    generator_cpu: Option<f64>,
}

impl TrialContext {
    /// Runs one trial of `mode` with frames of `size` at `rate` (None: full speed) for `length`.
    pub fn run(
        &mut self,
        mode: Mode,
        size: FrameSize,
        rate: Option<f64>,
        length: Duration,
        kind: TrialKind,
    ) -> Result<Trial, BenchError> {
        self.trials += 1;
        let number = self.trials;
        let dir = self.work_dir.join(format!("trial-{number:03}"));
        std::fs::create_dir(&dir).map_err(|e| BenchError::io(format!("creating {}", dir.display()), e))?;
        let spec = TrialSpec { number, mode, size, rate, length, kind };
        let result = self.run_in(&dir, spec);
        // The trial's directory is ours alone: created above, removed whole.
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn run_in(&mut self, dir: &Path, spec: TrialSpec) -> Result<Trial, BenchError> {
        let TrialSpec { number, mode, size, rate, length, kind } = spec;
        let (ns, iface) = self.traffic.capture_point();
        let (ns, iface) = (ns.map(str::to_string), iface.to_string());
        // veth accepts generated frames only while the receiver has an XDP program;
        // tcpdump has none of its own.
        let _holder = match (&self.traffic, mode) {
            (Traffic::SelfTest(bed), Mode::Tcpdump) => Some(hold_xdp_pass(bed)?),
            _ => None,
        };
        let programs_before = newest_program_id();
        let capture = self.start_capture(ns.as_deref(), &iface, dir, mode)?;
        let attached =
            capture.stderr.iter().find(|l| l.contains("listening on")).cloned().unwrap_or_default();
        let pid = capture.child.id();
        std::thread::sleep(Duration::from_millis(200));
        let counters_before = self.traffic.counters()?;
        let (cpu_before, process_before) = (CpuTimes::now().unwrap_or_default(), process_cpu_seconds(pid));
        let runs_before = capture_program_runs(programs_before);
        let offered = match &self.traffic {
            Traffic::SelfTest(bed) => generate(bed, size, rate, length)?,
            Traffic::Interface { iface } => follow_external(iface, size, rate, length, number)?,
        };
        // Let the last frames reach the rings and the reader (tcpdump hands a block of
        // its ring over only once it fills or its 1 s timeout passes).
        std::thread::sleep(Duration::from_millis(if mode == Mode::Tcpdump { 1500 } else { 300 }));
        let counters = self.traffic.counters()?.since(&counters_before);
        let cpu_after = CpuTimes::now().unwrap_or_default();
        let runs = capture_program_runs(programs_before);
        let kernel = ProgramRuns {
            run_time_ns: runs.run_time_ns.saturating_sub(runs_before.run_time_ns),
            runs: runs.runs.saturating_sub(runs_before.runs),
        };
        let capture_cpu = process_cpu_seconds(pid).zip(process_before).map_or(0.0, |(a, b)| a - b);
        capture.signal(libc::SIGINT);
        let finished = capture.finish_measured(Duration::from_secs(60));
        if !finished.status.success() {
            return Err(BenchError::Capture { mode, stderr: finished.stderr.join("\n") });
        }
        // Offered: what the generator sent, or what the interface counted (external).
        let offered_frames = match offered.frames {
            0 => counters.rx_packets + counters.dropped(),
            n => n,
        };
        let (ledger, disk, stats_file) = match mode {
            Mode::Tcpdump => {
                let bytes = std::fs::metadata(dir.join("trial.pcap")).map_or(0, |m| m.len());
                let disk = DiskUse { bytes_written: bytes, content_bytes: bytes, ..DiskUse::default() };
                (Ledger::from_tcpdump(&finished.stderr, offered_frames, &counters), disk, None)
            }
            Mode::Ring | Mode::Afxdp => {
                let (stats, path) = read_snapshot(dir)?;
                let kept = self.evidence_dir.join(format!("trial-{number:03}.stats.json"));
                let _ = std::fs::copy(&path, &kept);
                let ledger = Ledger::from_ringcap(&stats, offered_frames, &counters);
                (ledger, ring_disk_use(dir, &stats), Some(format!("trials/trial-{number:03}.stats.json")))
            }
        };
        let seconds = offered.seconds.max(1e-6);
        let disk = DiskUse {
            write_mb_per_s: disk.bytes_written as f64 / seconds / 1e6,
            compression_ratio: if disk.bytes_written > 0 {
                disk.content_bytes as f64 / disk.bytes_written as f64
            } else {
                0.0
            },
            ..disk
        };
        let machine_busy = cpu_after.busy_seconds_since(&cpu_before);
        let kernel_ns_per_packet = (kernel.runs > 0).then(|| kernel.run_time_ns as f64 / kernel.runs as f64);
        let capture_cpu_ns = capture_cpu * 1e9 + kernel.run_time_ns as f64;
        Ok(Trial {
            number,
            mode,
            size: size.label(),
            kind,
            target_pps: rate,
            offered_pps: offered_frames as f64 / seconds,
            seconds,
            cpu_ns_per_packet: capture_cpu_ns / offered_frames.max(1) as f64,
            kernel_ns_per_packet,
            ledger,
            interface: counters,
            cores: cpu_after.since(&cpu_before),
            capture_cpu_seconds: capture_cpu,
            machine_busy_seconds: machine_busy,
            generator_cpu_seconds: offered.generator_cpu,
            disk,
            attached,
            stats_file,
        })
    }

    /// Starts the capture of `mode` on `iface` (in `ns`) writing into `dir`, and waits
    /// until it listens.
    fn start_capture(
        &self,
        ns: Option<&str>,
        iface: &str,
        dir: &Path,
        mode: Mode,
    ) -> Result<CaptureProcess, BenchError> {
        let (program, mut args): (String, Vec<String>) = match mode {
            Mode::Ring | Mode::Afxdp => {
                let mut args: Vec<String> = ["run", "-i", iface, "--dir"].map(String::from).into();
                args.push(dir.to_string_lossy().into_owned());
                args.extend(["-G", "0"].map(String::from));
                if mode == Mode::Afxdp {
                    args.extend(["--mode", "afxdp"].map(String::from));
                    if matches!(self.traffic, Traffic::SelfTest(_)) {
                        // The bed's veth has an address; nothing but the bench uses it.
                        args.push("--force".into());
                    }
                }
                (self.ringcap.to_string_lossy().into_owned(), args)
            }
            Mode::Tcpdump => {
                let file = dir.join("trial.pcap").to_string_lossy().into_owned();
                ("tcpdump".into(), ["-i", iface, "-n", "-B", "65536", "-w", &file].map(String::from).into())
            }
        };
        match mode {
            Mode::Tcpdump => {
                // tcpdump's options go before its filter expression.
                let at =
                    self.tcpdump_options.iter().position(|o| o == "--").unwrap_or(self.tcpdump_options.len());
                let (options, expression) = self.tcpdump_options.split_at(at);
                args.extend(options.iter().cloned());
                args.extend(expression.iter().skip(1).cloned());
            }
            _ => args.extend(self.run_options.iter().cloned()),
        }
        let mut command = match ns {
            Some(ns) => TestBed::command_in(ns, &program),
            None => Command::new(&program),
        };
        command.args(&args).stdout(Stdio::null()).stdin(Stdio::null());
        let mut capture = CaptureProcess::spawn(command)
            .map_err(|e| BenchError::io(format!("starting {program} (is it installed?)"), e))?;
        if !capture.wait_listening() {
            let finished = capture.finish_measured(Duration::from_secs(5));
            return Err(BenchError::Capture { mode, stderr: finished.stderr.join("\n") });
        }
        Ok(capture)
    }
}

/// The frames of `size` the generator sends in turn, 16 UDP flows.
fn frames(size: FrameSize) -> Vec<Vec<u8>> {
    let template = FrameTemplate { src_mac: TX_MAC, dst_mac: SINK_MAC, ..FrameTemplate::default() };
    let lengths = size.wire_lengths();
    (0..lengths.len() * 16)
        .map(|i| template.udp(lengths[i % lengths.len()], (i % 16) as u16, i as u64))
        .collect()
}

/// Runs ringcap's generator in the bed's sending namespace for `length` at `rate`.
fn generate(
    bed: &TestBed,
    size: FrameSize,
    rate: Option<f64>,
    length: Duration,
) -> Result<Offered, BenchError> {
    let frames = frames(size);
    let sent = TestBed::in_namespace(&bed.tx_ns, move || {
        let ifindex =
            crate::kernel::interface_index(TX_IF).map_err(|e| std::io::Error::other(e.to_string()))?;
        // Each chunk is one BPF_PROG_TEST_RUN call, which costs about 25 ms whatever its
        // size: 50 ms of frames at a time, sent at full speed, the rate kept between
        // chunks (the rate of a trial is an average over such bursts).
        let chunk = rate.map_or(1 << 20, |r| (r / 20.0).clamp(4096.0, (1 << 20) as f64) as u32);
        let plan = Plan { frames, count: u64::MAX, chunk, rate, until: Some(length) };
        let report = transmit(ifindex, &plan)?;
        Ok::<_, std::io::Error>((report, thread_cpu_seconds()))
    })
    .join()
    .map_err(|_| BenchError::Setup("the generator thread panicked".into()))?
    .and_then(|sent| sent)
    .map_err(|e| BenchError::io("generating traffic".into(), e))?;
    let (report, cpu) = sent;
    Ok(Offered { frames: report.sent, seconds: report.elapsed.as_secs_f64(), generator_cpu: Some(cpu) })
}

/// Asks the user to send `size` frames at `rate` into `iface`, waits until they flow,
/// measures `length`, asks them to stop and waits until the interface is quiet again.
fn follow_external(
    iface: &str,
    size: FrameSize,
    rate: Option<f64>,
    length: Duration,
    number: usize,
) -> Result<Offered, BenchError> {
    let rate_text =
        rate.map_or_else(|| "as fast as your generator goes".to_string(), |r| format!("at {r:.0} frames/s"));
    println!("trial {number}: send {} frames to {iface} {rate_text} now (waiting for them)", size.label());
    let read = || InterfaceCounters::read(None, iface).map(|c| c.rx_packets + c.dropped());
    let io = |e| BenchError::io(format!("reading the counters of {iface}"), e);
    let idle = read().map_err(io)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while read().map_err(io)? == idle {
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!("no traffic arrived on {iface} within 5 minutes")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    std::thread::sleep(length);
    println!("trial {number}: measured {:.1} s; stop sending now", length.as_secs_f64());
    // Quiet for half a second: the burst is over (its frames still count).
    let mut last = read().map_err(io)?;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(50));
        let now = read().map_err(io)?;
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
        if started.elapsed() > length + Duration::from_secs(300) {
            return Err(BenchError::Setup(format!(
                "traffic on {iface} did not stop within 5 minutes of asking"
            )));
        }
    }
    let seconds = (quiet_since - started).as_secs_f64();
    Ok(Offered { frames: 0, seconds, generator_cpu: None })
}

/// CPU time of the calling thread.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    ringcap_tools::harness::rusage_cpu(&usage).as_secs_f64()
}

/// An XDP_PASS program on the bed's receiving end, attached until dropped.
fn hold_xdp_pass(bed: &TestBed) -> Result<(ConstantXdp, std::os::fd::OwnedFd), BenchError> {
    TestBed::in_namespace(&bed.rx_ns, || {
        let program = ConstantXdp::load(XdpVerdict::Pass)?;
        let ifindex =
            crate::kernel::interface_index(RX_IF).map_err(|e| std::io::Error::other(e.to_string()))?;
        let link = program.attach(ifindex)?;
        Ok::<_, std::io::Error>((program, link))
    })
    .join()
    .map_err(|_| BenchError::Setup("attaching XDP_PASS panicked".into()))?
    .and_then(|held| held)
    .map_err(|e| BenchError::io("attaching XDP_PASS for tcpdump's trial".into(), e))
}

/// The statistics snapshot the ring's last file got when it closed.
fn read_snapshot(dir: &Path) -> Result<(serde_json::Value, PathBuf), BenchError> {
    let snapshot = std::fs::read_dir(dir)
        .map_err(|e| BenchError::io(format!("listing {}", dir.display()), e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".stats.json"))
        .max()
        .ok_or_else(|| {
            BenchError::Setup(format!("the trial left no statistics snapshot in {}", dir.display()))
        })?;
    let text =
        std::fs::read(&snapshot).map_err(|e| BenchError::io(format!("reading {}", snapshot.display()), e))?;
    let stats = serde_json::from_slice(&text)
        .map_err(|e| BenchError::Setup(format!("{} is not JSON: {e}", snapshot.display())))?;
    Ok((stats, snapshot))
}

/// Bytes on disk and of pcap content of the ring's files.
fn ring_disk_use(dir: &Path, stats: &serde_json::Value) -> DiskUse {
    let content = crate::storage::manifest::ring_files(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|path| DataFile::open(path).ok())
        .map(|file| file.frames.iter().map(|f| u64::from(f.raw_len)).sum::<u64>())
        .sum();
    DiskUse {
        bytes_written: stats["storage"]["bytes_written"].as_u64().unwrap_or(0),
        content_bytes: content,
        ..DiskUse::default()
    }
}

//! What a run cost, as users would measure it: the kernel's own run-time statistics of
//! the XDP program attached to an interface (`kernel.bpf_stats_enabled`, read with
//! bpftool as an operator would), and the whole machine's busy CPU from `/proc/stat`
//! (user, system, irq and softirq: where XDP and the veth receive path run).
use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ringcap_tools::testbed::TestBed;
use serde::Serialize;

/// Keeps the kernel's run-time statistics on while alive (BPF_ENABLE_STATS).
pub struct StatsEnabled {
    _fd: OwnedFd,
}

impl StatsEnabled {
    pub fn new() -> Result<Self> {
        let fd =
            aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enabling BPF run-time statistics")?;
        Ok(StatsEnabled { _fd: fd })
    }
}

/// Run time and run count of one program.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProgramStats {
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

impl ProgramStats {
    /// Nanoseconds per run since `before`.
    pub fn ns_per_run_since(&self, before: &ProgramStats) -> Option<f64> {
        let runs = self.run_cnt.checked_sub(before.run_cnt)?;
        (runs > 0).then(|| (self.run_time_ns - before.run_time_ns) as f64 / runs as f64)
    }
}

fn bpftool(command: &mut Command) -> Result<serde_json::Value> {
    let out = command.output().context("running bpftool (apt install bpftool)")?;
    if !out.status.success() {
        bail!("bpftool: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The statistics of the XDP program attached to `iface` in the test bed's receiving
/// namespace, found the way an operator would: `bpftool net show`, then `bpftool prog show`.
pub fn xdp_program_stats(bed: &TestBed, iface: &str) -> Result<ProgramStats> {
    let net = bpftool(bed.rx("bpftool").args(["-j", "net", "show", "dev", iface]))?;
    let id = net
        .as_array()
        .and_then(|a| a.first())
        .and_then(|n| n["xdp"].as_array())
        .and_then(|x| x.first())
        .and_then(|x| x["id"].as_u64())
        .with_context(|| format!("no XDP program on {iface}: {net}"))?;
    let prog = bpftool(Command::new("bpftool").args(["-j", "prog", "show", "id", &id.to_string()]))?;
    Ok(ProgramStats {
        run_time_ns: prog["run_time_ns"].as_u64().unwrap_or(0),
        run_cnt: prog["run_cnt"].as_u64().unwrap_or(0),
    })
}

/// Busy time of all CPUs so far (user, nice, system, irq, softirq, steal), from /proc/stat.
pub fn machine_busy() -> Result<Duration> {
    let times = capture_daemon::bench::system::CpuTimes::now().context("reading /proc/stat")?;
    Ok(Duration::from_secs_f64(times.busy_seconds()))
}

/// CPU time of the children waited for so far (the generator, once it has exited).
pub fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    ringcap_tools::harness::rusage_cpu(&usage)
}

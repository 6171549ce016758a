//! What the machine says about a trial: CPU time per core from `/proc/stat` (softirq,
//! where XDP and the receive path run, included), an interface's own counters, a
//! process's CPU time, and the environment block of the report.
use std::process::Command;

use serde::Serialize;

/// Clock ticks a second (`_SC_CLK_TCK`), the unit of `/proc/stat` and `/proc/PID/stat`.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// Cumulative CPU time of each core, in ticks.
#[derive(Clone, Debug, Default)]
pub struct CpuTimes(Vec<CoreTimes>);

#[derive(Clone, Copy, Debug, Default)]
struct CoreTimes {
    /// user + nice + system + irq + softirq + steal
    busy: u64,
    softirq: u64,
    total: u64,
}

/// One core's use over a trial.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CoreUse {
    pub core: usize,
    /// Share of the time the core was busy (softirq included), in percent.
    pub busy_percent: f64,
    /// Share of the time spent in softirq (XDP, the receive path), in percent.
    pub softirq_percent: f64,
}

impl CpuTimes {
    pub fn now() -> std::io::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        Ok(CpuTimes(parse_proc_stat(&stat)))
    }

    /// Each core's use between `before` and `self`.
    pub fn since(&self, before: &CpuTimes) -> Vec<CoreUse> {
        self.0
            .iter()
            .zip(&before.0)
            .enumerate()
            .map(|(core, (after, before))| {
                let total = after.total.saturating_sub(before.total).max(1) as f64;
                CoreUse {
                    core,
                    busy_percent: 100.0 * after.busy.saturating_sub(before.busy) as f64 / total,
                    softirq_percent: 100.0 * after.softirq.saturating_sub(before.softirq) as f64 / total,
                }
            })
            .collect()
    }

    /// Busy seconds of all cores between `before` and `self`.
    pub fn busy_seconds_since(&self, before: &CpuTimes) -> f64 {
        self.busy_seconds() - before.busy_seconds()
    }

    /// Busy seconds of all cores since boot.
    pub fn busy_seconds(&self) -> f64 {
        self.0.iter().map(|core| core.busy).sum::<u64>() as f64 / ticks_per_second()
    }
}

/// The `cpuN` lines of `/proc/stat`: user nice system idle iowait irq softirq steal ...
fn parse_proc_stat(stat: &str) -> Vec<CoreTimes> {
    stat.lines()
        .filter(|line| line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|line| {
            let f: Vec<u64> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
            let get = |i: usize| f.get(i).copied().unwrap_or(0);
            let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
            CoreTimes { busy, softirq: get(6), total: busy + get(3) + get(4) }
        })
        .collect()
}

/// CPU seconds a process used so far, all threads (`/proc/PID/stat` utime + stime).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_second())
}

/// Keeps the kernel's run-time statistics of BPF programs on while alive (what
/// `sysctl kernel.bpf_stats_enabled=1` does, undone when the bench ends).
pub struct BpfStatsEnabled(#[allow(dead_code)] std::os::fd::OwnedFd);

impl BpfStatsEnabled {
    pub fn new() -> Option<Self> {
        aya::sys::enable_stats(aya::sys::Stats::RunTime).ok().map(BpfStatsEnabled)
    }
}

/// Run time and runs of programs, from the kernel's statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgramRuns {
    pub run_time_ns: u64,
    pub runs: u64,
}

/// The highest id of a loaded BPF program: programs loaded later have higher ids.
pub fn newest_program_id() -> u32 {
    aya::programs::loaded_programs().filter_map(Result::ok).map(|p| p.id()).max().unwrap_or(0)
}

/// The statistics of ringcap's capture programs loaded after program `newer_than`.
pub fn capture_program_runs(newer_than: u32) -> ProgramRuns {
    use capture_common::{TC_EGRESS_PROGRAM, TC_INGRESS_PROGRAM, XDP_PROGRAM, XSK_PROGRAM};
    let names = [XDP_PROGRAM, XSK_PROGRAM, TC_INGRESS_PROGRAM, TC_EGRESS_PROGRAM];
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.id() > newer_than && p.name_as_str().is_some_and(|n| names.contains(&n)))
        .fold(ProgramRuns::default(), |sum, p| ProgramRuns {
            run_time_ns: sum.run_time_ns + p.run_time().as_nanos() as u64,
            runs: sum.runs + p.run_count(),
        })
}

/// The receive counters of an interface, as its driver keeps them.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct InterfaceCounters {
    pub rx_packets: u64,
    /// Dropped by the driver or the stack (no buffer, ring full).
    pub rx_dropped: u64,
    /// Missed by the NIC (its FIFO overflowed before the driver took the frame).
    pub rx_missed_errors: u64,
    pub rx_fifo_errors: u64,
    /// The self-test's sending end of the veth pair: frames it dropped because the
    /// receiver's queue was full (veth counts those at the sender, not the receiver).
    pub peer_tx_dropped: u64,
}

impl InterfaceCounters {
    /// Reads `/sys/class/net/IFACE/statistics` in network namespace `ns` (this one if None).
    pub fn read(ns: Option<&str>, iface: &str) -> std::io::Result<Self> {
        let names = ["rx_packets", "rx_dropped", "rx_missed_errors", "rx_fifo_errors"];
        let script =
            names.iter().map(|n| format!("cat /sys/class/net/{iface}/statistics/{n}")).collect::<Vec<_>>();
        let text = in_namespace(ns, &script.join(" && ")).ok_or_else(|| {
            std::io::Error::other(format!("cannot read the counters of {iface}: is it there?"))
        })?;
        let values: Vec<u64> = text.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
        let get = |i: usize| values.get(i).copied().unwrap_or(0);
        Ok(InterfaceCounters {
            rx_packets: get(0),
            rx_dropped: get(1),
            rx_missed_errors: get(2),
            rx_fifo_errors: get(3),
            peer_tx_dropped: 0,
        })
    }

    /// These counters with `peer_tx_dropped` read from the sending end of a veth pair,
    /// `peer` in namespace `ns`.
    pub fn with_peer(mut self, ns: &str, peer: &str) -> std::io::Result<Self> {
        let text = in_namespace(Some(ns), &format!("cat /sys/class/net/{peer}/statistics/tx_dropped"))
            .ok_or_else(|| std::io::Error::other(format!("cannot read the counters of {peer}")))?;
        self.peer_tx_dropped = text.trim().parse().map_err(std::io::Error::other)?;
        Ok(self)
    }

    /// What was counted between `before` and `self`.
    pub fn since(&self, before: &InterfaceCounters) -> InterfaceCounters {
        InterfaceCounters {
            rx_packets: self.rx_packets.saturating_sub(before.rx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(before.rx_dropped),
            rx_missed_errors: self.rx_missed_errors.saturating_sub(before.rx_missed_errors),
            rx_fifo_errors: self.rx_fifo_errors.saturating_sub(before.rx_fifo_errors),
            peer_tx_dropped: self.peer_tx_dropped.saturating_sub(before.peer_tx_dropped),
        }
    }

    /// Frames the interface (and a veth's sending end) lost before any program saw them.
    pub fn dropped(&self) -> u64 {
        self.rx_dropped + self.rx_missed_errors + self.rx_fifo_errors + self.peer_tx_dropped
    }
}

/// Where the report was made: what a reader needs to compare it with another.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Environment {
    pub hostname: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cores: usize,
    pub interface: String,
    pub driver: String,
    pub receive_queues: u32,
    /// Link speed in Mbit/s, when the driver says.
    pub link_speed_mbps: Option<u64>,
    pub ringcap_version: String,
    pub command_line: String,
    /// How each mode attached, as the capture said ("XDP native mode", "copy mode", ...).
    pub attached: Vec<String>,
}

impl Environment {
    /// The machine and `iface` (in network namespace `ns`, if any).
    pub fn probe(ns: Option<&str>, iface: &str) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
            .map_or_else(|| "unknown".into(), |m| m.trim().to_string());
        let net = format!("/sys/class/net/{iface}");
        let driver = in_namespace(ns, &format!("basename \"$(readlink -f {net}/device/driver)\""))
            .filter(|d| !d.is_empty() && d != "driver")
            .unwrap_or_else(|| if ns.is_some() { "veth".into() } else { "virtual (no device)".into() });
        let receive_queues = in_namespace(ns, &format!("ls -d {net}/queues/rx-* | wc -l"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let link_speed_mbps = in_namespace(ns, &format!("cat {net}/speed"))
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|&s| s > 0);
        // SAFETY: zeroed utsname is a valid out-parameter.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer.
        unsafe { libc::uname(&mut uts) };
        let field = |f: &[libc::c_char]| {
            // SAFETY: uname NUL-terminates its fields.
            unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }.to_string_lossy().into_owned()
        };
        Environment {
            hostname: field(&uts.nodename),
            kernel: format!("{} {}", field(&uts.sysname), field(&uts.release)),
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            interface: iface.to_string(),
            driver,
            receive_queues,
            link_speed_mbps: link_speed_mbps.map(|s| s as u64),
            ringcap_version: env!("CARGO_PKG_VERSION").to_string(),
            command_line: std::env::args().collect::<Vec<_>>().join(" "),
            attached: Vec::new(),
        }
    }
}

/// The output of a shell snippet run in network namespace `ns` (here if None), which
/// sees that namespace's /sys; None if it fails.
fn in_namespace(ns: Option<&str>, script: &str) -> Option<String> {
    let mut command = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "sh", "-c", script]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        }
    };
    let out = command.stderr(std::process::Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_busy_and_softirq_time_per_core() {
        let stat =
            "cpu  10 0 10 100 0 0 5 0 0 0\ncpu0 4 1 5 50 2 1 3 0 0 0\ncpu1 6 0 5 50 0 0 2 1 0 0\nintr 1\n";
        let cores = parse_proc_stat(stat);
        assert_eq!(cores.len(), 2, "the all-CPU line is not a core");
        assert_eq!((cores[0].busy, cores[0].softirq, cores[0].total), (4 + 1 + 5 + 1 + 3, 3, 14 + 50 + 2));
        let before = CpuTimes(vec![CoreTimes::default(); 2]);
        let usage = CpuTimes(cores).since(&before);
        assert!((usage[1].busy_percent - 100.0 * 14.0 / 64.0).abs() < 1e-9);
    }
}

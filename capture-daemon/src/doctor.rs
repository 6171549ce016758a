//! `ringcap doctor`: whether this machine can run ringcap well, and what to do when not.
//! Each check says what it found and, when that falls short, what to do; XDP support is
//! found by trying (load and attach the real program, then detach), the ring's disk by
//! writing to it.
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::kernel::{Attach, AttachMode, CaptureProgram, Hook, KernelConfig, ProgramSet, XdpModeChoice};

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Capture works, but not as well as it could.
    Warn,
    /// Capture cannot work (or not on that interface or directory) until this is fixed.
    Fail,
}

/// One check: what was looked at, what was found, and what to do about it.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub found: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

impl Check {
    fn new(name: impl Into<String>, status: Status, found: impl Into<String>, advice: Option<&str>) -> Self {
        Check { name: name.into(), status, found: found.into(), advice: advice.map(str::to_string) }
    }
}

/// Bytes written to measure the ring directory's write speed.
const WRITE_PROBE_BYTES: usize = 64 << 20;

/// Every check, for these interfaces and this ring directory; `af_xdp`: the capture is
/// to run with `--mode afxdp` (its sockets and locked memory are checked too).
pub fn run(interfaces: &[String], dir: Option<&Path>, af_xdp: bool) -> Vec<Check> {
    let mut checks = vec![kernel_version(), btf(), jit(), privileges(), open_files(), clock_source()];
    for iface in interfaces {
        checks.extend(interface(iface, af_xdp));
    }
    if let Some(dir) = dir {
        checks.extend(ring_dir(dir));
    }
    checks
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn kernel_version() -> Check {
    let release = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let (status, advice) = if version >= (6, 6) {
        (Status::Ok, None)
    } else if version >= (5, 8) {
        (Status::Warn, Some("TC egress capture (--direction out|both) needs TCX links: Linux 6.6 or later"))
    } else {
        (Status::Fail, Some("ringcap needs the BPF ring buffer: Linux 5.8 or later (6.6 for TC egress)"))
    };
    Check::new("kernel", status, format!("Linux {release}"), advice)
}

fn btf() -> Check {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        Check::new("btf", Status::Ok, "/sys/kernel/btf/vmlinux present", None)
    } else {
        Check::new(
            "btf",
            Status::Warn,
            "no kernel BTF",
            Some("a kernel built with CONFIG_DEBUG_INFO_BTF=y lets tools inspect ringcap's programs"),
        )
    }
}

fn jit() -> Check {
    match read_trimmed("/proc/sys/net/core/bpf_jit_enable").as_deref() {
        Some("1") | Some("2") => Check::new("bpf_jit", Status::Ok, "the BPF JIT is on", None),
        Some(other) => Check::new(
            "bpf_jit",
            Status::Warn,
            format!("bpf_jit_enable = {other}: programs run interpreted, several times slower"),
            Some("sysctl net.core.bpf_jit_enable=1"),
        ),
        None => Check::new("bpf_jit", Status::Ok, "the BPF JIT is always on", None),
    }
}

/// The effective capabilities of this process (CapEff in /proc/self/status).
fn effective_capabilities() -> u64 {
    read_trimmed("/proc/self/status")
        .and_then(|status| {
            status.lines().find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        })
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .unwrap_or(0)
}

fn privileges() -> Check {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let caps = effective_capabilities();
    let has = |cap: u32| caps & (1 << cap) != 0;
    let bpf = has(CAP_BPF) || has(CAP_SYS_ADMIN);
    let perfmon = has(CAP_PERFMON) || has(CAP_SYS_ADMIN);
    if bpf && perfmon && has(CAP_NET_ADMIN) {
        Check::new("privileges", Status::Ok, "CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN held", None)
    } else {
        Check::new(
            "privileges",
            Status::Fail,
            format!("effective capabilities {caps:#x} lack CAP_BPF, CAP_PERFMON or CAP_NET_ADMIN"),
            Some("run as root, or with those capabilities (the systemd unit grants them)"),
        )
    }
}

/// The open-files limit: the API's connections and the ring's files share it (the daemon
/// raises its soft limit to the hard one at start).
fn open_files() -> Check {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let needed = crate::api::MAX_CONNECTIONS as u64 + 256;
    let found = format!("soft limit {}, hard limit {}", limit.rlim_cur, limit.rlim_max);
    if limit.rlim_max < needed {
        let advice = Some("raise the hard limit (LimitNOFILE= in the unit, or /etc/security/limits.conf)");
        Check::new(
            "open_files",
            Status::Warn,
            format!("{found}: under {needed}, the API takes fewer connections"),
            advice,
        )
    } else {
        Check::new("open_files", Status::Ok, found, None)
    }
}

fn clock_source() -> Check {
    let source = read_trimmed("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .unwrap_or_else(|| "unknown".into());
    match source.as_str() {
        "tsc" | "kvm-clock" | "arch_sys_counter" | "hyperv_clocksource_tsc_page" => {
            Check::new("clock_source", Status::Ok, format!("{source}: cheap timestamps"), None)
        }
        _ => Check::new(
            "clock_source",
            Status::Warn,
            format!("{source}: every timestamp read is slow"),
            Some("use a TSC clock source (clocksource=tsc on the kernel command line) if the CPU has one"),
        ),
    }
}

/// The interface exists, takes the capture program in the driver (tried), and its queues.
fn interface(iface: &str, af_xdp_mode: bool) -> Vec<Check> {
    let name = format!("interface {iface}");
    if crate::kernel::interface_index(iface).is_err() {
        let advice = Some("check the name with `ip link`");
        return vec![Check::new(name, Status::Fail, "no such interface", advice)];
    }
    let queue_count = crate::capture::xsk::receive_queues(iface);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let queues = if queue_count < cpus.min(2) || queue_count * 2 < cpus {
        Check::new(
            format!("{name} queues"),
            Status::Warn,
            format!("{queue_count} receive queue(s) for {cpus} CPUs: RSS spreads the traffic over {queue_count} CPU(s) only"),
            Some("enable more queues (ethtool -L IFACE combined N), or RPS (/sys/class/net/IFACE/queues/rx-*/rps_cpus)"),
        )
    } else {
        Check::new(
            format!("{name} queues"),
            Status::Ok,
            format!("{queue_count} receive queue(s) for {cpus} CPUs: one ring reader per CPU, one AF_XDP socket per queue"),
            None,
        )
    };
    let config = KernelConfig {
        filter: None,
        snaplen: 128,
        ring_bytes: 1 << 20,
        tcp_flows: 1024,
        programs: ProgramSet::default().with(Attach::Xdp),
    };
    let xdp = match CaptureProgram::load(config) {
        Err(e) => {
            Check::new(format!("{name} xdp"), Status::Fail, format!("the programs do not load: {e}"), None)
        }
        Ok(mut program) => {
            let tried = program.attach(iface, Attach::Xdp, XdpModeChoice::Auto);
            program.detach_all();
            match tried {
                Ok(Hook::Xdp(AttachMode::Native)) => {
                    Check::new(format!("{name} xdp"), Status::Ok, "native XDP (in the driver)", None)
                }
                Ok(hook) => Check::new(
                    format!("{name} xdp"),
                    Status::Warn,
                    format!("{hook}: the driver has no native XDP, capture runs after the skb is built"),
                    Some("a NIC whose driver supports XDP captures several times faster"),
                ),
                Err(e) => Check::new(format!("{name} xdp"), Status::Fail, e.to_string(), None),
            }
        }
    };
    let mut checks = vec![xdp, queues];
    if af_xdp_mode {
        checks.push(af_xdp(iface, queue_count));
    }
    checks
}

/// UMEM frames of one AF_XDP socket as `ringcap run` sizes them by default (-B 65536).
const DEFAULT_XSK_FRAMES: u32 = 65536 * 1024 / crate::capture::xsk::FRAME_SIZE;

/// Whether `--mode afxdp` gets zero-copy on queue 0 (by binding a socket, then closing it),
/// and whether the locked-memory limit holds the UMEMs of every queue.
fn af_xdp(iface: &str, queues: u32) -> Check {
    let name = format!("interface {iface} af_xdp");
    let Ok(ifindex) = crate::kernel::interface_index(iface) else {
        return Check::new(name, Status::Fail, "no such interface", None);
    };
    let config = crate::capture::xsk::XskConfig { frames: DEFAULT_XSK_FRAMES };
    let mode = match crate::capture::xsk::XskSocket::open(iface, ifindex, 0, config) {
        Ok(socket) => socket.mode(),
        Err(e) => {
            let advice =
                Some("--mode ring works without AF_XDP; AF_XDP needs CAP_NET_RAW and driver support");
            return Check::new(name, Status::Warn, format!("no AF_XDP socket: {e}"), advice);
        }
    };
    let umem_bytes =
        u64::from(DEFAULT_XSK_FRAMES) * u64::from(crate::capture::xsk::FRAME_SIZE) * u64::from(queues.max(1));
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    let lock_exempt = effective_capabilities() & (1 << CAP_IPC_LOCK) != 0;
    let memlock = if limit.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        format!("{} MiB", limit.rlim_cur >> 20)
    };
    let found = format!(
        "{mode} mode on queue 0; the UMEMs of {queues} queue(s) pin {} MiB, locked-memory limit {memlock}",
        umem_bytes >> 20
    );
    if !lock_exempt && limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < umem_bytes {
        let advice =
            Some("raise it (ulimit -l, LimitMEMLOCK= in the unit) or use a smaller -B with --mode afxdp");
        return Check::new(name, Status::Warn, found, advice);
    }
    match mode {
        crate::capture::xsk::XskMode::ZeroCopy => Check::new(name, Status::Ok, found, None),
        crate::capture::xsk::XskMode::Copy => Check::new(
            name,
            Status::Warn,
            found,
            Some("the driver copies each frame into the UMEM; a NIC with AF_XDP zero-copy support avoids it"),
        ),
    }
}

/// `CAP_IPC_LOCK`: locked memory without the limit.
const CAP_IPC_LOCK: u32 = 14;

/// Free space and write speed (with fdatasync) of the ring's filesystem. A directory
/// that does not exist yet is what `ringcap run` creates: its nearest existing parent is
/// checked in its place (nothing is created here).
fn ring_dir(dir: &Path) -> Vec<Check> {
    let name = format!("ring {}", dir.display());
    let mut checks = Vec::new();
    let existing = match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => dir.to_path_buf(),
        Ok(meta) => {
            let (found, advice) = if meta.file_type().is_symlink() {
                ("a symbolic link, which `ringcap run` refuses", "give the directory it points to")
            } else {
                ("not a directory", "give a directory as --dir (ringcap run creates a missing one)")
            };
            return vec![Check::new(name, Status::Fail, found, Some(advice))];
        }
        Err(_) => {
            // The nearest path that exists (`.` for a relative one) must be a directory,
            // as `run` would make the rest under it.
            let nearest = dir
                .ancestors()
                .skip(1)
                .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
                .find(|p| std::fs::symlink_metadata(p).is_ok());
            let Some(parent) = nearest.filter(|p| p.is_dir()) else {
                let found = match nearest {
                    Some(p) => format!("cannot be created: {} is not a directory", p.display()),
                    None => "cannot be created: no part of the path exists".to_string(),
                };
                return vec![Check::new(name, Status::Fail, found, Some("give a --dir under a directory"))];
            };
            checks.push(Check::new(
                name.clone(),
                Status::Ok,
                format!("does not exist yet: `ringcap run` creates it in {}", parent.display()),
                None,
            ));
            parent.to_path_buf()
        }
    };
    let dir = existing.as_path();
    let space = match crate::storage::budget::fs_space(dir) {
        Ok(space) => space,
        Err(e) => {
            let advice = Some("give a --dir on a writable filesystem");
            checks.push(Check::new(name, Status::Fail, format!("not usable: {e}"), advice));
            return checks;
        }
    };
    let gib = |bytes: u64| bytes as f64 / (1u64 << 30) as f64;
    let free = Check::new(
        format!("{name} space"),
        if space.available < 1 << 30 { Status::Warn } else { Status::Ok },
        format!("{:.1} GiB free of {:.1} GiB", gib(space.available), gib(space.total)),
        (space.available < 1 << 30).then_some("a ring of less than a GiB holds minutes of a busy link"),
    );
    let speed = match write_speed(dir) {
        Ok(bytes_per_s) => Check::new(
            format!("{name} write speed"),
            Status::Ok,
            format!(
                "{:.0} MB/s with fdatasync ({:.1} Gbit/s of capture before compression)",
                bytes_per_s / 1e6,
                bytes_per_s * 8.0 / 1e9
            ),
            None,
        ),
        Err(e) => Check::new(format!("{name} write speed"), Status::Fail, format!("cannot write: {e}"), None),
    };
    checks.extend([free, speed]);
    if checks.len() == 2 {
        // The ring's own mode: a directory `run` makes is 0700.
        checks.push(ring_dir_access(&name, dir));
    }
    checks
}

/// Captured packets are secrets: a ring directory every local user can read or enter
/// hands them all the traffic.
fn ring_dir_access(name: &str, dir: &Path) -> Check {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).map_or(0, |m| m.permissions().mode() & 0o7777);
    let open = mode & 0o005 != 0;
    Check::new(
        format!("{name} access"),
        if open { Status::Warn } else { Status::Ok },
        format!(
            "mode {mode:04o}{}",
            if open { ": every local user can read the captured traffic" } else { "" }
        ),
        open.then_some("chmod o-rwx the directory (ringcap run creates it 0700, or 2750 with --group)"),
    )
}

/// Writes [`WRITE_PROBE_BYTES`] to a scratch file of its own in `dir` (removed after),
/// fdatasync'ed in 1 MiB writes as the ring writes frames; bytes per second.
fn write_speed(dir: &Path) -> std::io::Result<f64> {
    let path: PathBuf = dir.join(format!(".ringcap-doctor-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        let block = vec![0x5au8; 1 << 20];
        let started = Instant::now();
        for _ in 0..WRITE_PROBE_BYTES / block.len() {
            file.write_all(&block)?;
            file.sync_data()?;
        }
        Ok(WRITE_PROBE_BYTES as f64 / started.elapsed().max(Duration::from_micros(1)).as_secs_f64())
    })();
    let _ = std::fs::remove_file(&path);
    result
}

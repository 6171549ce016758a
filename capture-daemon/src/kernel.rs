//! Loading ringcap's eBPF object, attaching its programs, and reading its counters.
use std::ffi::CString;
use std::io;

use std::time::Duration;

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::{SchedClassifier, TcAttachType, TestRun, TestRunOptions, Xdp, XdpMode};
use capture_common::filter::FilterInsn;
use capture_common::tcp::{RTT_BUCKETS, RTT_KINDS};
use capture_common::{CaptureConfig, CONFIG_MAP, FILTER_MAP, FLOWS_MAP, RTT_MAP, TC_EGRESS_PROGRAM};

use crate::filter::Filter;
use aya::{Ebpf, EbpfLoader};
use capture_common::{
    Counter, COUNTERS_MAP, MAX_CAPTURE_BYTES, RING_MAP, SNAPLEN_GLOBAL, WAKEUP_GLOBAL, XDP_PROGRAM,
};

/// The eBPF object built by `build.rs`, embedded so binary and programs never drift apart.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ringcap-programs"));

/// Why the kernel side could not be set up; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("interface {0} not found; `ip link` lists the interfaces")]
    NoSuchInterface(String),
    #[error(
        "permission denied loading eBPF programs: run ringcap as root \
         (or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
    )]
    PermissionDenied,
    #[error(
        "another XDP program is already attached to {0}; stop the tool that owns it \
         (`ip link show dev {0}` shows it, `ip link set dev {0} xdp off` removes it)"
    )]
    AlreadyAttached(String),
    #[error("the driver of {iface} refused XDP in {mode} mode: {source}; try --xdp-mode generic")]
    XdpRefused {
        iface: String,
        mode: AttachMode,
        #[source]
        source: io::Error,
    },
    #[error("cannot attach the TC program to {iface}: {reason}")]
    TcRefused { iface: String, reason: String },
    #[error("ring buffer size {0} bytes is invalid: it must be a power of two of at least one page")]
    BadRingSize(u32),
    #[error("loading ringcap's eBPF programs failed: {0}")]
    Load(String),
    #[error("cannot update the kernel's {map} map: {reason}")]
    MapUpdate { map: &'static str, reason: String },
}

/// How the XDP program is attached (`--xdp-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeChoice {
    /// Native, falling back to generic when the driver has no XDP support.
    Auto,
    /// In the driver (fast; needs driver support).
    Native,
    /// In the kernel stack after the skb is built (works everywhere).
    Generic,
}

/// Which packets of an interface are captured (`--direction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// What arrives (XDP).
    #[default]
    In,
    /// What the host sends (TC egress).
    Out,
    /// Both (XDP for arrivals, TC egress for departures).
    Both,
}

/// The XDP mode an interface actually got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        })
    }
}

/// Load-time settings of the kernel programs.
#[derive(Clone, Copy, Debug)]
pub struct KernelConfig {
    /// Bytes copied per packet; at most [`MAX_CAPTURE_BYTES`].
    pub snaplen: u32,
    /// Size of the packet ring buffer in bytes (a power of two multiple of the page size).
    pub ring_bytes: u32,
    /// Flows the TCP analysis tracks at once (least recently seen ones are evicted).
    pub tcp_flows: u32,
}

/// Which packets the kernel records: the filter and the sampling settings.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub filter: Option<Filter>,
    /// Keep one packet in N at random (`--sample 1/N`).
    pub sample_every: u32,
    /// Keep whole flows, one in N (`--flow-sample 1/N`).
    pub flow_sample_every: u32,
    /// At most this many packets per second in all (`--max-pps`), split across CPUs.
    pub max_pps: u64,
    /// Analyse every TCP segment in the kernel (flags, handshakes, RTT).
    pub tcp_analysis: bool,
}

/// Sums of the per-CPU counters of the capture programs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub values: [u64; Counter::COUNT as usize],
}

impl KernelCounters {
    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize]
    }

    /// Packets the kernel side lost before they reached user space.
    pub fn dropped(&self) -> u64 {
        self.get(Counter::RingFull) + self.get(Counter::CopyFailed)
    }
}

/// The loaded capture programs. Dropping it detaches every program it attached.
pub struct CaptureProgram {
    ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
    ring: Option<RingBuf<MapData>>,
    filter: Array<MapData, FilterInsn>,
    config: Array<MapData, CaptureConfig>,
    rtt: PerCpuArray<MapData, u64>,
}

/// The kernel's RTT histograms summed over CPUs: [server side, client side] buckets.
pub type RttBuckets = [[u64; RTT_BUCKETS as usize]; RTT_KINDS as usize];

impl CaptureProgram {
    /// Loads the programs into the kernel (nothing is attached yet).
    pub fn load(config: KernelConfig) -> Result<Self, KernelError> {
        let page = page_size();
        if !config.ring_bytes.is_power_of_two() || config.ring_bytes < page {
            return Err(KernelError::BadRingSize(config.ring_bytes));
        }
        let snaplen = config.snaplen.min(MAX_CAPTURE_BYTES);
        // Wake the reader early once a sixteenth of the ring is filled; otherwise it polls.
        let wakeup_bytes = u64::from(config.ring_bytes / 16);
        let mut ebpf = EbpfLoader::new()
            .override_global(SNAPLEN_GLOBAL, &snaplen, true)
            .override_global(WAKEUP_GLOBAL, &wakeup_bytes, true)
            .map_max_entries(RING_MAP, config.ring_bytes)
            .map_max_entries(FLOWS_MAP, config.tcp_flows.max(1))
            .load(EBPF_OBJECT)
            .map_err(|e| classify_load_error(&e))?;
        program_mut::<Xdp>(&mut ebpf, XDP_PROGRAM)?.load().map_err(|e| classify_load_error(&e))?;
        // Verifying a program takes the kernel most of a second: the TC ingress program,
        // which no option attaches yet, is left unloaded.
        program_mut::<SchedClassifier>(&mut ebpf, TC_EGRESS_PROGRAM)?
            .load()
            .map_err(|e| classify_load_error(&e))?;
        let counters = take_map(&mut ebpf, COUNTERS_MAP)?;
        let counters = PerCpuArray::try_from(counters).map_err(|e| KernelError::Load(e.to_string()))?;
        let ring = take_map(&mut ebpf, RING_MAP)?;
        let ring = RingBuf::try_from(ring).map_err(|e| KernelError::Load(e.to_string()))?;
        let filter = Array::try_from(take_map(&mut ebpf, FILTER_MAP)?)
            .map_err(|e| KernelError::Load(e.to_string()))?;
        let config = Array::try_from(take_map(&mut ebpf, CONFIG_MAP)?)
            .map_err(|e| KernelError::Load(e.to_string()))?;
        let rtt = PerCpuArray::try_from(take_map(&mut ebpf, RTT_MAP)?)
            .map_err(|e| KernelError::Load(e.to_string()))?;
        Ok(CaptureProgram { ebpf, counters, ring: Some(ring), filter, config, rtt })
    }

    /// Installs a filter and sampling settings; takes effect for the next packet.
    pub fn select(&mut self, selection: &Selection) -> Result<(), KernelError> {
        let update_error =
            |map, e: aya::maps::MapError| KernelError::MapUpdate { map, reason: e.to_string() };
        let program = selection.filter.as_ref().filter(|f| !f.is_empty()).map_or(&[][..], |f| &f.program[..]);
        // Disable the filter while its instructions change, then enable the new one.
        let mut config = CaptureConfig {
            sample_every: selection.sample_every,
            flow_sample_every: selection.flow_sample_every,
            max_pps_per_cpu: selection.max_pps.div_ceil(possible_cpus() as u64),
            tcp_analysis: u32::from(selection.tcp_analysis),
            ..CaptureConfig::default()
        };
        self.config.set(0, config, 0).map_err(|e| update_error(CONFIG_MAP, e))?;
        for (i, insn) in program.iter().enumerate() {
            self.filter.set(i as u32, *insn, 0).map_err(|e| update_error(FILTER_MAP, e))?;
        }
        config.filter_len = program.len() as u32;
        self.config.set(0, config, 0).map_err(|e| update_error(CONFIG_MAP, e))
    }

    /// Runs the XDP program once on `frame` with `BPF_PROG_TEST_RUN` (no interface
    /// needed): tests and benchmarks use it to push exact packets through the real program.
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<Duration, KernelError> {
        let program: &Xdp =
            self.ebpf.program(XDP_PROGRAM).expect("checked at load").try_into().expect("checked at load");
        let options = TestRunOptions { data_in: Some(frame), repeat, ..TestRunOptions::new() };
        program.test_run(options).map(|r| r.duration).map_err(|e| KernelError::Load(error_chain(&e)))
    }

    /// Attaches the XDP capture program to `iface` and returns the mode it got.
    pub fn attach_xdp(&mut self, iface: &str, choice: XdpModeChoice) -> Result<AttachMode, KernelError> {
        let ifindex = interface_index(iface)?;
        let program: &mut Xdp =
            self.ebpf.program_mut(XDP_PROGRAM).expect("checked at load").try_into().expect("checked at load");
        let tries: &[AttachMode] = match choice {
            XdpModeChoice::Auto => &[AttachMode::Native, AttachMode::Generic],
            XdpModeChoice::Native => &[AttachMode::Native],
            XdpModeChoice::Generic => &[AttachMode::Generic],
        };
        let mut last_error = None;
        for &mode in tries {
            let flags = match mode {
                AttachMode::Native => XdpMode::Driver,
                AttachMode::Generic => XdpMode::Skb,
            };
            match program.attach_to_if_index(ifindex, flags) {
                Ok(_) => return Ok(mode),
                Err(e) => {
                    let errno = os_error(&e).and_then(|e| e.raw_os_error());
                    match errno {
                        Some(libc::EBUSY) | Some(libc::EEXIST) => {
                            return Err(KernelError::AlreadyAttached(iface.to_string()))
                        }
                        Some(libc::EPERM) | Some(libc::EACCES) => return Err(KernelError::PermissionDenied),
                        _ => {}
                    }
                    let source = os_error(&e).map(|e| io::Error::new(e.kind(), e.to_string()));
                    last_error = Some(KernelError::XdpRefused {
                        iface: iface.to_string(),
                        mode,
                        source: source.unwrap_or_else(|| io::Error::other(e.to_string())),
                    });
                }
            }
        }
        Err(last_error.expect("at least one mode was tried"))
    }

    /// Attaches the TC egress program to `iface` (a TCX link, detached when ringcap exits
    /// however it exits).
    pub fn attach_tc_egress(&mut self, iface: &str) -> Result<(), KernelError> {
        interface_index(iface)?;
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(TC_EGRESS_PROGRAM)
            .expect("checked at load")
            .try_into()
            .expect("checked at load");
        program.attach(iface, TcAttachType::Egress).map(drop).map_err(|e| {
            match os_error(&e).and_then(|e| e.raw_os_error()) {
                Some(libc::EPERM) | Some(libc::EACCES) => KernelError::PermissionDenied,
                _ => KernelError::TcRefused { iface: iface.to_string(), reason: error_chain(&e) },
            }
        })
    }

    /// Hands the packet ring to its reader (once).
    pub fn take_ring(&mut self) -> RingBuf<MapData> {
        self.ring.take().expect("the ring is taken once")
    }

    /// Detaches every attached program; capture stops, records already in the ring stay.
    pub fn detach_all(&mut self) {
        // Unloading drops every link; the ring and counters are separate maps and stay.
        if let Some(Ok(program)) = self.ebpf.program_mut(XDP_PROGRAM).map(<&mut Xdp>::try_from) {
            let _ = program.unload();
        }
        if let Some(Ok(program)) =
            self.ebpf.program_mut(TC_EGRESS_PROGRAM).map(<&mut SchedClassifier>::try_from)
        {
            let _ = program.unload();
        }
    }

    /// Current RTT histogram buckets, summed over CPUs.
    pub fn rtt_buckets(&self) -> Box<RttBuckets> {
        let mut buckets = Box::new([[0u64; RTT_BUCKETS as usize]; RTT_KINDS as usize]);
        for (kind, histogram) in buckets.iter_mut().enumerate() {
            for (bucket, slot) in histogram.iter_mut().enumerate() {
                let index = kind as u32 * RTT_BUCKETS + bucket as u32;
                if let Ok(values) = self.rtt.get(&index, 0) {
                    *slot = values.iter().sum();
                }
            }
        }
        buckets
    }

    /// Current sums of the per-CPU counters.
    pub fn counters(&self) -> KernelCounters {
        let mut sums = KernelCounters::default();
        for counter in Counter::ALL {
            if let Ok(values) = self.counters.get(&(counter as u32), 0) {
                sums.values[counter as usize] = values.iter().sum();
            }
        }
        sums
    }
}

fn possible_cpus() -> usize {
    aya::util::nr_cpus().unwrap_or(1).max(1)
}

/// A program of the object, as its type.
fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, KernelError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| KernelError::Load(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| KernelError::Load(e.to_string()))
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, KernelError> {
    ebpf.take_map(name).ok_or_else(|| KernelError::Load(format!("map {name} missing from the object")))
}

/// The index of a network interface, or a clear error.
pub fn interface_index(iface: &str) -> Result<u32, KernelError> {
    let name = CString::new(iface).map_err(|_| KernelError::NoSuchInterface(iface.to_string()))?;
    // SAFETY: NUL-terminated string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(KernelError::NoSuchInterface(iface.to_string())),
        index => Ok(index),
    }
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u32 }
}

/// The first OS error in an error's source chain.
fn os_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.raw_os_error().is_some() {
                return Some(io);
            }
        }
        current = e.source();
    }
    None
}

fn classify_load_error(error: &(dyn std::error::Error + 'static)) -> KernelError {
    match os_error(error).and_then(|e| e.raw_os_error()) {
        Some(libc::EPERM) | Some(libc::EACCES) => KernelError::PermissionDenied,
        _ => KernelError::Load(error_chain(error)),
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        text.push_str(": ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}

//! Loading ringcap's eBPF object (with the filter spliced in, [`object`]), attaching its
//! programs, and reading its counters.
mod counters;
mod errors;
mod interfaces;
mod object;
mod options;

pub use counters::{
    empty_slot_rtt, family_name, rtt_total, ExchangeTimes, IcmpCount, IcmpCounts, KernelCounters, RttBuckets,
    SlotRttBuckets, Unanswered,
};
pub use errors::KernelError;
use errors::{classify_load_error, error_chain, os_error};
pub use interfaces::{host_addresses, interface_index};
pub use options::{
    Attach, AttachMode, Direction, FlowCut, Hook, KernelConfig, ProgramSet, Selection, XdpModeChoice,
};
use std::ffi::CString;
use std::io;

use std::time::Duration;

use aya::maps::{Array, ArrayOfMaps, HashMap, Map, MapData, PerCpuArray, XskMap};
use aya::programs::{SchedClassifier, TcAttachType, TestRun, TestRunOptions, Xdp, XdpMode};
use capture_common::exchange::{self, Exchange, Pending, KINDS};
use capture_common::icmp::{self, MtuKey};
use capture_common::tcp::{FlowKey, FlowState, RTT_BUCKETS, RTT_KINDS};
use capture_common::tls;
use capture_common::{
    CaptureConfig, CONFIG_MAP, FILTER_ACTIVE_GLOBAL, FLOWS_MAP, ICMP_MAP, ICMP_MTU_MAP, IN_FLIGHT_MAP,
    MAX_XSK_SOCKETS, RTT_MAP, TC_EGRESS_PROGRAM, TC_INGRESS_PROGRAM, XSKS_MAP, XSK_PROGRAM, XSK_SLOTS_MAP,
};

use crate::capture::mmap::Mapping;
use crate::capture::ringbuf::PacketRing;
use crate::filter::Filter;
use aya::{Ebpf, EbpfLoader};
use capture_common::{
    Counter, COUNTERS_MAP, INTERFACES_MAP, MAX_CAPTURE_BYTES, MAX_CPUS, MAX_INTERFACES, MAX_SLOTS, RING_MAP,
    SNAPLEN_GLOBAL, WAKEUP_GLOBAL, XDP_PROGRAM, XSK_KERNEL_STAMP_GLOBAL,
};
use object::Object;
use std::os::fd::{AsFd, AsRawFd};

/// The eBPF object built by `build.rs`, embedded so binary and programs never drift apart.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ringcap-programs"));

/// The loaded capture programs. Dropping it detaches every program it attached.
pub struct CaptureProgram {
    ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
    rings: Vec<PacketRing>,
    config: Array<MapData, CaptureConfig>,
    /// The RTT histograms of every slot, mapped into our memory.
    rtt: Mapping,
    /// Keeps the RTT map (and so the mapping) alive.
    _rtt_map: MapData,
    /// The ICMP message counts, mapped likewise.
    icmp: Mapping,
    _icmp_map: MapData,
    icmp_mtu: HashMap<MapData, MtuKey, u64>,
    /// The answer-time histograms of DNS, TLS and HTTP, mapped likewise, and the
    /// requests waiting for their answer.
    exchange_times: Mapping,
    _exchange_times_map: MapData,
    exchanges: HashMap<MapData, Exchange, Pending>,
    /// The TLS alert counts, mapped likewise.
    tls_alerts: Mapping,
    _tls_alerts_map: MapData,
    interfaces: HashMap<MapData, u32, u32>,
    sockets: XskMap<MapData>,
    socket_slots: HashMap<MapData, u32, u32>,
    flows: HashMap<MapData, FlowKey, FlowState>,
    /// The next free slot of `sockets`.
    next_socket_slot: u32,
    loaded: ProgramSet,
}

impl CaptureProgram {
    /// Loads the programs into the kernel (nothing is attached yet).
    pub fn load(config: KernelConfig) -> Result<Self, KernelError> {
        let programs = config.programs;
        let page = page_size();
        if !config.ring_bytes.is_power_of_two() || config.ring_bytes < page {
            return Err(KernelError::BadRingSize(config.ring_bytes));
        }
        let snaplen = config.snaplen.min(MAX_CAPTURE_BYTES);
        let cpus = possible_cpus().min(MAX_CPUS as usize) as u32;
        let ring_bytes = prev_power_of_two(config.ring_bytes / cpus).max(page);
        // Wake a reader early once a sixteenth of its ring is filled; otherwise it polls.
        let wakeup_bytes = u64::from(ring_bytes / 16);
        let native = config.filter.as_ref().filter(|f| !f.is_empty()).map(|f| &f.native[..]);
        let mut object = Object::new(EBPF_OBJECT);
        if let Some(native) = native {
            object.splice_filter(native)?;
        }
        let load = |kernel_stamp: bool| -> Result<Ebpf, KernelError> {
            let mut ebpf = EbpfLoader::new()
                .override_global(SNAPLEN_GLOBAL, &snaplen, true)
                .override_global(WAKEUP_GLOBAL, &wakeup_bytes, true)
                .override_global(FILTER_ACTIVE_GLOBAL, &u32::from(native.is_some()), true)
                .override_global(XSK_KERNEL_STAMP_GLOBAL, &u32::from(kernel_stamp), true)
                .map_max_entries(FLOWS_MAP, config.tcp_flows.max(1))
                .load(object.bytes())
                .map_err(|e| classify_load_error(&e))?;
            for attach in Attach::ALL.into_iter().filter(|&a| config.programs.contains(a)) {
                let loaded = match attach {
                    Attach::Xdp | Attach::XdpToSockets => {
                        program_mut::<Xdp>(&mut ebpf, attach.program())?.load()
                    }
                    Attach::TcIngress | Attach::TcEgress => {
                        program_mut::<SchedClassifier>(&mut ebpf, attach.program())?.load()
                    }
                };
                loaded.map_err(|e| classify_load_error(&e))?;
            }
            Ok(ebpf)
        };
        let mut ebpf = match load(true) {
            // Some kernels refuse bpf_xdp_adjust_meta to XDP programs: the AF_XDP program
            // then leaves the stamp to user space (each frame counted as stamped on arrival).
            Err(KernelError::Load(log)) if log.contains("cannot use helper bpf_xdp_adjust_meta") => {
                eprintln!(
                    "ringcap: warning: this kernel refuses bpf_xdp_adjust_meta to XDP programs: \
                     AF_XDP frames are timestamped on arrival in user space"
                );
                load(false)?
            }
            other => other?,
        };
        let counters = take_map(&mut ebpf, COUNTERS_MAP)?;
        let counters = PerCpuArray::try_from(counters).map_err(|e| KernelError::Load(e.to_string()))?;
        let Map::Array(in_flight) = take_map(&mut ebpf, IN_FLIGHT_MAP)? else {
            return Err(KernelError::Load(format!("map {IN_FLIGHT_MAP} is not an array")));
        };
        let rings = create_rings(take_map(&mut ebpf, RING_MAP)?, &in_flight, cpus, ring_bytes)?;
        let config = Array::try_from(take_map(&mut ebpf, CONFIG_MAP)?)
            .map_err(|e| KernelError::Load(e.to_string()))?;
        let rtt_bytes = (MAX_SLOTS * RTT_KINDS * RTT_BUCKETS) as usize * 8;
        let (rtt, rtt_map) = map_array(take_map(&mut ebpf, RTT_MAP)?, RTT_MAP, rtt_bytes)?;
        let icmp_bytes = (MAX_SLOTS * icmp::COUNTS_PER_SLOT) as usize * 8;
        let (icmp, icmp_map) = map_array(take_map(&mut ebpf, ICMP_MAP)?, ICMP_MAP, icmp_bytes)?;
        let icmp_mtu = HashMap::try_from(take_map(&mut ebpf, ICMP_MTU_MAP)?)
            .map_err(|e| KernelError::Load(e.to_string()))?;
        let (exchange_times, exchange_times_map) = map_array(
            take_map(&mut ebpf, exchange::TIMES_MAP)?,
            exchange::TIMES_MAP,
            exchange::TIMES as usize * 8,
        )?;
        let exchanges = HashMap::try_from(take_map(&mut ebpf, exchange::PENDING_MAP)?)
            .map_err(|e| KernelError::Load(e.to_string()))?;
        let alerts_bytes = (MAX_SLOTS * tls::ALERTS_PER_SLOT) as usize * 8;
        let (tls_alerts, tls_alerts_map) =
            map_array(take_map(&mut ebpf, tls::ALERTS_MAP)?, tls::ALERTS_MAP, alerts_bytes)?;
        let interfaces = HashMap::try_from(take_map(&mut ebpf, INTERFACES_MAP)?)
            .map_err(|e| KernelError::Load(e.to_string()))?;
        let sockets =
            XskMap::try_from(take_map(&mut ebpf, XSKS_MAP)?).map_err(|e| KernelError::Load(e.to_string()))?;
        let socket_slots = HashMap::try_from(take_map(&mut ebpf, XSK_SLOTS_MAP)?)
            .map_err(|e| KernelError::Load(e.to_string()))?;
        let flows = HashMap::try_from(take_map(&mut ebpf, FLOWS_MAP)?)
            .map_err(|e| KernelError::Load(e.to_string()))?;
        Ok(CaptureProgram {
            socket_slots,
            flows,
            next_socket_slot: 0,
            ebpf,
            counters,
            rings,
            config,
            rtt,
            _rtt_map: rtt_map,
            icmp,
            _icmp_map: icmp_map,
            icmp_mtu,
            exchange_times,
            _exchange_times_map: exchange_times_map,
            exchanges,
            tls_alerts,
            _tls_alerts_map: tls_alerts_map,
            interfaces,
            sockets,
            loaded: programs,
        })
    }

    /// Installs sampling settings; takes effect for the next packet.
    pub fn select(&mut self, selection: &Selection) -> Result<(), KernelError> {
        let config = CaptureConfig {
            sample_every: selection.sample_every,
            flow_sample_every: selection.flow_sample_every,
            max_pps_per_cpu: selection.max_pps.div_ceil(possible_cpus() as u64),
            tcp_analysis: u32::from(selection.tcp_analysis),
            flow_bytes: selection.cut.bytes,
            flow_packets: selection.cut.packets,
            cut_encrypted: u32::from(selection.cut.encrypted),
            l7_analysis: u32::from(selection.l7_analysis),
            dns_port: u32::from(selection.dns_port),
        };
        self.config
            .set(0, config, 0)
            .map_err(|e| KernelError::MapUpdate { map: CONFIG_MAP, reason: e.to_string() })
    }

    /// Runs the XDP program once on `frame` with `BPF_PROG_TEST_RUN` (no interface
    /// needed): tests and benchmarks use it to push exact packets through the real program.
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<Duration, KernelError> {
        let program: &Xdp =
            self.ebpf.program(XDP_PROGRAM).expect("checked at load").try_into().expect("checked at load");
        let options = TestRunOptions { data_in: Some(frame), repeat, ..TestRunOptions::new() };
        program.test_run(options).map(|r| r.duration).map_err(|e| KernelError::Load(error_chain(&e)))
    }

    /// Attaches a loaded program to `iface` and says where it got.
    pub fn attach(
        &mut self,
        iface: &str,
        attach: Attach,
        choice: XdpModeChoice,
    ) -> Result<Hook, KernelError> {
        if !self.loaded.contains(attach) {
            return Err(KernelError::Load(format!("program {} was not loaded", attach.program())));
        }
        match attach {
            Attach::Xdp => self.attach_xdp(iface, attach, choice).map(Hook::Xdp),
            Attach::XdpToSockets => self.attach_xdp(iface, attach, choice).map(Hook::XdpToSockets),
            Attach::TcIngress => {
                self.attach_tc(iface, attach, TcAttachType::Ingress).map(|()| Hook::TcIngress)
            }
            Attach::TcEgress => self.attach_tc(iface, attach, TcAttachType::Egress).map(|()| Hook::TcEgress),
        }
    }

    /// Attaches an XDP program to `iface` and returns the mode it got.
    fn attach_xdp(
        &mut self,
        iface: &str,
        attach: Attach,
        choice: XdpModeChoice,
    ) -> Result<AttachMode, KernelError> {
        let ifindex = interface_index(iface)?;
        let program = program_mut::<Xdp>(&mut self.ebpf, attach.program())?;
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

    /// Attaches a TC program to `iface` (a TCX link, detached when ringcap exits however
    /// it exits, so nothing is left behind to clean up).
    fn attach_tc(&mut self, iface: &str, attach: Attach, point: TcAttachType) -> Result<(), KernelError> {
        interface_index(iface)?;
        let program = program_mut::<SchedClassifier>(&mut self.ebpf, attach.program())?;
        program.attach(iface, point).map(drop).map_err(|e| {
            match os_error(&e).and_then(|e| e.raw_os_error()) {
                Some(libc::EPERM) | Some(libc::EACCES) => KernelError::PermissionDenied,
                _ => KernelError::TcRefused { iface: iface.to_string(), reason: error_chain(&e) },
            }
        })
    }

    /// Sends the packets arriving on `ifindex` to `sockets`, one per receive queue in
    /// queue order.
    pub fn register_sockets(
        &mut self,
        ifindex: u32,
        sockets: &[impl std::os::fd::AsRawFd],
    ) -> Result<(), KernelError> {
        let first = self.next_socket_slot;
        if first as usize + sockets.len() > MAX_XSK_SOCKETS as usize {
            return Err(KernelError::MapUpdate {
                map: XSKS_MAP,
                reason: format!("more than {MAX_XSK_SOCKETS} AF_XDP sockets (queues of all interfaces)"),
            });
        }
        for (queue, socket) in sockets.iter().enumerate() {
            self.sockets
                .set(first + queue as u32, socket.as_raw_fd(), 0)
                .map_err(|e| KernelError::MapUpdate { map: XSKS_MAP, reason: e.to_string() })?;
        }
        self.socket_slots
            .insert(ifindex, first, 0)
            .map_err(|e| KernelError::MapUpdate { map: XSK_SLOTS_MAP, reason: e.to_string() })?;
        self.next_socket_slot += sockets.len() as u32;
        Ok(())
    }

    /// Hands the per-CPU packet rings to their readers (the first call takes them all).
    pub fn take_rings(&mut self) -> Vec<PacketRing> {
        std::mem::take(&mut self.rings)
    }

    /// Detaches every attached program; capture stops, records already in the ring stay.
    pub fn detach_all(&mut self) {
        // Unloading drops every link; the ring and counters are separate maps and stay.
        for attach in Attach::ALL.into_iter().filter(|&a| self.loaded.contains(a)) {
            let _ = match attach {
                Attach::Xdp | Attach::XdpToSockets => {
                    program_mut::<Xdp>(&mut self.ebpf, attach.program()).map(|p| p.unload())
                }
                Attach::TcIngress | Attach::TcEgress => {
                    program_mut::<SchedClassifier>(&mut self.ebpf, attach.program()).map(|p| p.unload())
                }
            };
        }
    }

    /// Forgets every flow of the TCP analysis (tests feed unrelated captures one after
    /// the other); returns how many there were.
    pub fn forget_flows(&mut self) -> usize {
        let keys: Vec<FlowKey> = self.flows.keys().filter_map(Result::ok).collect();
        for key in &keys {
            let _ = self.flows.remove(key);
        }
        keys.len()
    }

    /// Every flow of the flow table now (it reads the table only, two syscalls a flow).
    pub fn flows(&self) -> Vec<(FlowKey, FlowState)> {
        self.flows.iter().filter_map(Result::ok).collect()
    }

    /// Gives the interfaces, in `-i` order, their own counter and histogram slots (the
    /// first [`MAX_INTERFACES`]; the others share one).
    pub fn set_interfaces(&mut self, ifindexes: &[u32]) -> Result<(), KernelError> {
        for (index, ifindex) in ifindexes.iter().take(MAX_INTERFACES as usize).enumerate() {
            self.interfaces
                .insert(ifindex, index as u32, 0)
                .map_err(|e| KernelError::MapUpdate { map: INTERFACES_MAP, reason: e.to_string() })?;
        }
        Ok(())
    }

    /// The ICMP and ICMPv6 counts now, non-zero ones (reads the mapped counts, and the
    /// few path-MTU entries with two syscalls each).
    pub fn icmp_counts(&self) -> IcmpCounts {
        let values: *const u64 = self.icmp.at(0);
        let mut messages = Vec::new();
        for slot in 0..MAX_SLOTS {
            for index in 0..icmp::COUNTS_PER_SLOT {
                // SAFETY: the mapping holds MAX_SLOTS * COUNTS_PER_SLOT u64s, which the
                // kernel updates atomically.
                let count = unsafe {
                    std::ptr::read_volatile(values.add((slot * icmp::COUNTS_PER_SLOT + index) as usize))
                };
                if count > 0 {
                    let (family, kind, code) = icmp::at_index(index);
                    messages.push(IcmpCount { slot: slot as usize, family, kind, code, count });
                }
            }
        }
        let mut path_mtu: Vec<(MtuKey, u64)> = self.icmp_mtu.iter().filter_map(Result::ok).collect();
        path_mtu.sort();
        IcmpCounts { messages, path_mtu }
    }

    /// The answer-time histograms of every kind and slot now (the RTT histograms'
    /// buckets).
    pub fn exchange_times(&self) -> Box<ExchangeTimes> {
        let mut times = Box::new([[[0u64; RTT_BUCKETS as usize]; MAX_SLOTS as usize]; KINDS as usize]);
        let values: *const u64 = self.exchange_times.at(0);
        for (i, bucket) in times.iter_mut().flatten().flatten().enumerate() {
            // SAFETY: the mapping holds exchange::TIMES u64s in this order, updated atomically.
            *bucket = unsafe { std::ptr::read_volatile(values.add(i)) };
        }
        times
    }

    /// The TLS alerts counted so far: (slot, description, count), those above 0.
    pub fn tls_alerts(&self) -> Vec<(usize, u8, u64)> {
        let values: *const u64 = self.tls_alerts.at(0);
        let mut alerts = Vec::new();
        for slot in 0..MAX_SLOTS {
            for description in 0..tls::ALERTS_PER_SLOT {
                // SAFETY: the mapping holds MAX_SLOTS * ALERTS_PER_SLOT u64s, updated atomically.
                let count = unsafe {
                    std::ptr::read_volatile(values.add((slot * tls::ALERTS_PER_SLOT + description) as usize))
                };
                if count > 0 {
                    alerts.push((slot as usize, description as u8, count));
                }
            }
        }
        alerts
    }

    /// Forgets the requests of each kind that waited for their answer since before
    /// `started_before_ns[kind]` (the kernel's monotonic clock; 0: none); returns how
    /// many, by kind and the slot they were seen on. An answer that comes later finds
    /// no request.
    pub fn expire_exchanges(&mut self, started_before_ns: [u64; KINDS as usize]) -> Box<Unanswered> {
        let mut expired = Box::new([[0u64; MAX_SLOTS as usize]; KINDS as usize]);
        let old: Vec<(Exchange, Pending)> = self
            .exchanges
            .iter()
            .filter_map(Result::ok)
            .filter(|(exchange, pending)| {
                started_before_ns
                    .get(usize::from(exchange.kind))
                    .is_some_and(|before| pending.started_ns < *before)
            })
            .collect();
        for (exchange, pending) in old {
            // Removed by the kernel meanwhile: answered after all.
            if self.exchanges.remove(&exchange).is_ok() {
                expired[usize::from(exchange.kind) % KINDS as usize][(pending.slot % MAX_SLOTS) as usize] +=
                    1;
            }
        }
        expired
    }

    /// Current RTT histogram buckets of every slot.
    pub fn rtt_buckets(&self) -> Box<SlotRttBuckets> {
        let mut buckets = empty_slot_rtt();
        let values: *const u64 = self.rtt.at(0);
        for (i, bucket) in buckets.iter_mut().flatten().flatten().enumerate() {
            // SAFETY: the mapping holds MAX_SLOTS * RTT_KINDS * RTT_BUCKETS u64s, which the
            // kernel updates atomically.
            *bucket = unsafe { std::ptr::read_volatile(values.add(i)) };
        }
        buckets
    }

    /// Current sums of the per-CPU counters, by slot.
    pub fn counters(&self) -> KernelCounters {
        let mut sums = KernelCounters::default();
        for (slot, values) in sums.values.iter_mut().enumerate() {
            for counter in Counter::ALL {
                let index = slot as u32 * Counter::COUNT + counter as u32;
                if let Ok(per_cpu) = self.counters.get(&index, 0) {
                    values[counter as usize] = per_cpu.iter().sum();
                }
            }
        }
        sums
    }
}

/// Maps the first `bytes` of an array created `BPF_F_MMAPABLE` (the RTT histograms, the
/// ICMP counts) into our memory.
fn map_array(map: Map, name: &str, bytes: usize) -> Result<(Mapping, MapData), KernelError> {
    let Map::Array(data) = map else {
        return Err(KernelError::Load(format!("map {name} is not an array")));
    };
    let len = bytes.div_ceil(page_size() as usize) * page_size() as usize;
    let mapping = Mapping::shared(data.fd().as_fd().as_raw_fd(), len, 0, true)
        .map_err(|e| KernelError::Load(format!("mapping {name}: {e}")))?;
    Ok((mapping, data))
}

/// Creates one ring buffer of `bytes` per CPU and puts it in the program's array of rings.
/// One ring per CPU, each read with its CPU's entry of the in-flight stamps.
fn create_rings(
    outer: Map,
    in_flight: &MapData,
    cpus: u32,
    bytes: u32,
) -> Result<Vec<PacketRing>, KernelError> {
    let fail = |e: &dyn std::error::Error| KernelError::Load(format!("creating the per-CPU rings: {e}"));
    let mut outer: ArrayOfMaps<MapData, MapData> = ArrayOfMaps::try_from(outer).map_err(|e| fail(&e))?;
    let ring_type = aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF as u32;
    let mut rings = Vec::with_capacity(cpus as usize);
    for cpu in 0..cpus {
        let definition = aya_obj::Map::new_from_params(ring_type, 0, 0, bytes, 0);
        let ring = MapData::create(definition, &format!("ringcap_cpu{cpu}"), None).map_err(|e| fail(&e))?;
        outer.set(cpu, &ring, 0).map_err(|e| fail(&e))?;
        rings.push(PacketRing::new(ring, bytes, in_flight, cpu).map_err(|e| fail(&e))?);
    }
    Ok(rings)
}

/// The largest power of two not above `n` (0 for 0).
fn prev_power_of_two(n: u32) -> u32 {
    if n == 0 {
        0
    } else {
        1 << (31 - n.leading_zeros())
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

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u32 }
}

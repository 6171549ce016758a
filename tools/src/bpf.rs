//! Just enough of the bpf(2) syscall to load a few hand-assembled programs (a constant
//! XDP verdict for the generator, a packet dropper for the TCP tests), run and attach
//! them: the test tools need no ELF object and no build step.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_XDP: u32 = 37;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// XDP verdicts the generator's programs return.
#[derive(Clone, Copy, Debug)]
pub enum XdpVerdict {
    Pass = 2,
    Tx = 3,
}

/// `union bpf_attr`, as raw bytes with fields written at their ABI offsets.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32(&mut self, offset: usize, value: u32) -> &mut Self {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }
    fn u64(&mut self, offset: usize, value: u64) -> &mut Self {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }
    fn read_u32(&self, offset: usize) -> u32 {
        u32::from_ne_bytes(self.0[offset..offset + 4].try_into().expect("4 bytes"))
    }
    fn call(&mut self, cmd: libc::c_long) -> io::Result<libc::c_long> {
        // SAFETY: the attribute buffer is valid for its whole size, which is passed along.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, self.0.as_mut_ptr(), self.0.len()) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }
}

/// Loads `insns` (raw eBPF instructions, 8 bytes each) as a program of `prog_type`.
fn load_program(prog_type: u32, insns: &[u64], expected_attach: u32, name: &[u8]) -> io::Result<OwnedFd> {
    let license = b"GPL\0";
    let mut log = vec![0u8; 1 << 16];
    let mut attr = Attr::new();
    attr.u32(0, prog_type)
        .u32(4, insns.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(24, 1)
        .u32(28, log.len() as u32)
        .u64(32, log.as_mut_ptr() as u64)
        .u32(68, expected_attach);
    let n = name.len().min(15);
    attr.0[48..48 + n].copy_from_slice(&name[..n]);
    let fd = attr.call(BPF_PROG_LOAD).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        io::Error::new(e.kind(), format!("{e}: {}", String::from_utf8_lossy(&log[..end])))
    })?;
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A socket-filter program, for timing filters with `BPF_PROG_TEST_RUN`.
pub struct SocketFilter {
    fd: OwnedFd,
}

impl SocketFilter {
    pub fn load(insns: &[u64]) -> io::Result<Self> {
        Ok(SocketFilter { fd: load_program(BPF_PROG_TYPE_SOCKET_FILTER, insns, 0, b"ringcap_bench")? })
    }

    /// Runs the program `repeat` times on `data`; the kernel's mean time per run.
    pub fn time(&self, data: &[u8], repeat: u32) -> io::Result<std::time::Duration> {
        let mut attr = Attr::new();
        attr.u32(0, self.fd.as_raw_fd() as u32)
            .u32(8, data.len() as u32)
            .u64(16, data.as_ptr() as u64)
            .u32(32, repeat);
        attr.call(BPF_PROG_TEST_RUN)?;
        Ok(std::time::Duration::from_nanos(u64::from(attr.read_u32(36))))
    }
}

/// A loaded XDP program that returns a constant verdict.
pub struct ConstantXdp {
    fd: OwnedFd,
}

impl ConstantXdp {
    /// Loads `r0 = verdict; exit`.
    pub fn load(verdict: XdpVerdict) -> io::Result<Self> {
        // BPF_ALU64|BPF_MOV|BPF_K r0, imm ; BPF_JMP|BPF_EXIT
        let insns = [0xb7 | (u64::from(verdict as u32) << 32), 0x95];
        Ok(ConstantXdp { fd: load_program(BPF_PROG_TYPE_XDP, &insns, BPF_XDP, b"ringcap_gen")? })
    }

    /// Runs the program on `frame` `repeat` times as live frames entering `ifindex`:
    /// with an `XDP_TX` program each run transmits the frame out of that interface.
    pub fn run_live(&self, ifindex: u32, frame: &[u8], repeat: u32, batch: u32) -> io::Result<()> {
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }
        let mut ctx = [0u32; 6];
        ctx[1] = frame.len() as u32;
        ctx[3] = ifindex;
        let mut attr = Attr::new();
        attr.u32(0, self.fd.as_raw_fd() as u32)
            .u32(8, frame.len() as u32)
            .u64(16, frame.as_ptr() as u64)
            .u32(32, repeat)
            .u32(40, std::mem::size_of_val(&ctx) as u32)
            .u64(48, ctx.as_ptr() as u64)
            .u32(64, BPF_F_TEST_XDP_LIVE_FRAMES)
            .u32(72, batch);
        attr.call(BPF_PROG_TEST_RUN)?;
        let _retval = attr.read_u32(4);
        Ok(())
    }

    /// Attaches the program to `ifindex` in native mode; detached when the link is dropped.
    pub fn attach(&self, ifindex: u32) -> io::Result<OwnedFd> {
        let mut attr = Attr::new();
        attr.u32(0, self.fd.as_raw_fd() as u32).u32(4, ifindex).u32(8, BPF_XDP).u32(12, XDP_FLAGS_DRV_MODE);
        let fd = attr.call(BPF_LINK_CREATE)?;
        // SAFETY: the kernel returned a new file descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// One instruction: opcode, registers, offset and immediate.
fn insn(opcode: u64, dst: u64, src: u64, off: i16, imm: i32) -> u64 {
    opcode | dst << 8 | src << 12 | u64::from(off as u16) << 16 | u64::from(imm as u32) << 32
}

/// Adds one to the counter in `map`, leaving it in r1; without the counter, jumps
/// `if_missing` instructions past the end.
fn count_packet(map: &OwnedFd, if_missing: i16) -> [u64; 10] {
    [
        insn(0x62, 10, 0, -4, 0),             // *(u32 *)(r10 - 4) = 0
        insn(0x18, 1, 1, 0, map.as_raw_fd()), // r1 = the counter map
        0,                                    //   (second half of the 64-bit load)
        insn(0xbf, 2, 10, 0, 0),              // r2 = r10
        insn(0x07, 2, 0, 0, -4),              // r2 -= 4
        insn(0x85, 0, 0, 0, 1),               // r0 = bpf_map_lookup_elem(r1, r2)
        insn(0x15, 0, 0, if_missing + 3, 0),  // if r0 == NULL goto (end + if_missing)
        insn(0x79, 1, 0, 0, 0),               // r1 = *r0
        insn(0x07, 1, 0, 0, 1),               // r1 += 1
        insn(0x7b, 0, 1, 0, 0),               // *r0 = r1
    ]
}

/// An array of one u64: a loss injector's count of the packets it saw.
fn counter_map() -> io::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.u32(0, BPF_MAP_TYPE_ARRAY).u32(4, 4).u32(8, 8).u32(12, 1);
    let fd = attr.call(BPF_MAP_CREATE)?;
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A TC ingress program that drops every N-th packet longer than a threshold arriving
/// on an interface (N a power of two, counted in an array map): real, repeatable loss for
/// real TCP stacks (netem is not available here). It runs after XDP, so a capture there
/// still sees the packets the receiver loses. (At egress the sending stack would learn
/// of the drop at once and send again, so nothing would look lost.) Detached when dropped.
pub struct LossInjector {
    map: OwnedFd,
    _program: OwnedFd,
    _link: OwnedFd,
}

impl LossInjector {
    /// Drops every `one_in`-th (a power of two) packet of more than `min_len` bytes
    /// arriving on `ifindex` (in the calling thread's network namespace).
    pub fn attach(ifindex: u32, one_in: u32, min_len: u32) -> io::Result<Self> {
        if !one_in.is_power_of_two() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "one_in must be a power of two"));
        }
        let map = counter_map()?;
        let mut insns = vec![
            insn(0x61, 2, 1, 0, 0),                   // r2 = skb->len
            insn(0xa5, 2, 0, 14, min_len as i32 + 1), // if r2 < min_len + 1 goto pass
        ];
        insns.extend(count_packet(&map, 4)); // no counter: goto pass
        insns.extend([
            insn(0x57, 1, 0, 0, one_in as i32 - 1), // r1 &= one_in - 1
            insn(0x55, 1, 0, 2, 0),                 // if r1 != 0 goto pass
            insn(0xb7, 0, 0, 0, 2),                 // r0 = TCX_DROP
            insn(0x95, 0, 0, 0, 0),                 // exit
            insn(0xb7, 0, 0, 0, 0),                 // pass: r0 = TCX_PASS
            insn(0x95, 0, 0, 0, 0),                 // exit
        ]);
        Self::attach_program(ifindex, map, &insns)
    }

    /// Drops each packet arriving on `ifindex` with probability `per_mille` / 1000, at
    /// random (`bpf_get_prandom_u32`): SYNs, ACKs and FINs too.
    pub fn attach_random(ifindex: u32, per_mille: u32) -> io::Result<Self> {
        let threshold = (per_mille.min(1000) * 65536 / 1000) as i32;
        let map = counter_map()?;
        let mut insns = count_packet(&map, 0).to_vec(); // no counter: goto draw
        insns.extend([
            insn(0x85, 0, 0, 0, 7),         // draw: r0 = bpf_get_prandom_u32()
            insn(0x57, 0, 0, 0, 0xffff),    // r0 &= 0xffff
            insn(0x35, 0, 0, 2, threshold), // if r0 >= threshold goto pass
            insn(0xb7, 0, 0, 0, 2),         // r0 = TCX_DROP
            insn(0x95, 0, 0, 0, 0),         // exit
            insn(0xb7, 0, 0, 0, 0),         // pass: r0 = TCX_PASS
            insn(0x95, 0, 0, 0, 0),         // exit
        ]);
        Self::attach_program(ifindex, map, &insns)
    }

    /// Loads `insns` (which count packets in `map`) and attaches them at TCX ingress.
    fn attach_program(ifindex: u32, map: OwnedFd, insns: &[u64]) -> io::Result<Self> {
        let program = load_program(BPF_PROG_TYPE_SCHED_CLS, insns, 0, b"ringcap_loss")?;
        let mut attr = Attr::new();
        attr.u32(0, program.as_raw_fd() as u32).u32(4, ifindex).u32(8, BPF_TCX_INGRESS);
        let fd = attr.call(BPF_LINK_CREATE)?;
        // SAFETY: the kernel returned a new file descriptor that nothing else owns.
        let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(LossInjector { map, _program: program, _link: link })
    }

    /// Packets the program has counted so far (over the length threshold, or all).
    pub fn seen(&self) -> io::Result<u64> {
        let key = 0u32;
        let mut value = 0u64;
        let mut attr = Attr::new();
        attr.u32(0, self.map.as_raw_fd() as u32)
            .u64(8, &key as *const u32 as u64)
            .u64(16, &mut value as *mut u64 as u64);
        attr.call(BPF_MAP_LOOKUP_ELEM)?;
        Ok(value)
    }
}

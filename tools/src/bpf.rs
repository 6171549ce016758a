//! Just enough of the bpf(2) syscall to load a two-instruction XDP program, run it on
//! live frames and attach it: the generator needs no ELF object and no build step.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
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

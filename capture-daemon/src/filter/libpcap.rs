//! libpcap's filter compiler and interpreter, bound directly: `pcap_compile` on a dead
//! Ethernet handle (with its optimiser) gives the classic BPF program tcpdump would run,
//! and `bpf_filter` runs one on a stored packet. (The `pcap` crate hides the instruction
//! fields and its `filter` takes the captured length for the length on the wire, which
//! `len`, `less` and `greater` on sliced packets need apart.)
use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::sync::Mutex;

/// One classic BPF instruction, as libpcap and Linux lay it out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

#[repr(C)]
struct BpfProgram {
    len: c_uint,
    insns: *mut BpfInsn,
}

#[repr(C)]
struct Pcap {
    _opaque: [u8; 0],
}

/// `DLT_EN10MB`: every capture point ringcap has sees Ethernet frames.
const LINKTYPE_ETHERNET: c_int = 1;
/// libpcap's largest snap length: a `ret` of the compiled program accepts whole packets.
const SNAPLEN: c_int = 262_144;
/// `PCAP_NETMASK_UNKNOWN`: `ip broadcast` needs a netmask and is refused without one.
const NETMASK_UNKNOWN: u32 = 0xffff_ffff;

#[link(name = "pcap")]
unsafe extern "C" {
    fn pcap_open_dead(linktype: c_int, snaplen: c_int) -> *mut Pcap;
    fn pcap_compile(
        p: *mut Pcap,
        fp: *mut BpfProgram,
        expr: *const c_char,
        optimize: c_int,
        mask: u32,
    ) -> c_int;
    fn pcap_geterr(p: *mut Pcap) -> *const c_char;
    fn pcap_freecode(fp: *mut BpfProgram);
    fn pcap_close(p: *mut Pcap);
    fn bpf_filter(pc: *const BpfInsn, pkt: *const u8, wirelen: c_uint, buflen: c_uint) -> c_uint;
}

/// Older libpcaps compile with global state; one compilation at a time is cheap insurance.
static COMPILER: Mutex<()> = Mutex::new(());

/// Compiles `expression` as `tcpdump -O` would (optimised); the error is libpcap's message.
pub fn compile(expression: &str) -> Result<Vec<BpfInsn>, String> {
    let text = CString::new(expression).map_err(|_| "the expression contains a NUL byte".to_string())?;
    let _one_at_a_time = COMPILER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // SAFETY: plain constructor; checked for NULL below.
    let handle = unsafe { pcap_open_dead(LINKTYPE_ETHERNET, SNAPLEN) };
    if handle.is_null() {
        return Err("libpcap could not allocate a compiler handle".into());
    }
    let mut program = BpfProgram { len: 0, insns: std::ptr::null_mut() };
    // SAFETY: a live handle, a NUL-terminated string and a program struct to fill.
    let result = if unsafe { pcap_compile(handle, &mut program, text.as_ptr(), 1, NETMASK_UNKNOWN) } == 0 {
        // SAFETY: on success libpcap allocated `len` instructions at `insns`.
        let insns = unsafe { std::slice::from_raw_parts(program.insns, program.len as usize) }.to_vec();
        // SAFETY: frees what pcap_compile allocated, once.
        unsafe { pcap_freecode(&mut program) };
        Ok(insns)
    } else {
        // SAFETY: the handle's error buffer is a NUL-terminated string it owns.
        Err(unsafe { CStr::from_ptr(pcap_geterr(handle)) }.to_string_lossy().into_owned())
    };
    // SAFETY: the handle is not used again.
    unsafe { pcap_close(handle) };
    result
}

/// Runs `program` (from [`compile`]) on `data`, captured from a packet `wire_len` long;
/// returns what its `ret` said (0: rejected).
pub fn run(program: &[BpfInsn], data: &[u8], wire_len: u32) -> u32 {
    if program.is_empty() {
        return 0;
    }
    // SAFETY: `program` is a complete program from pcap_compile (bpf_filter trusts its
    // jumps, which libpcap's compiler keeps inside the program) and reads at most
    // `data.len()` bytes of `data`.
    unsafe { bpf_filter(program.as_ptr(), data.as_ptr(), wire_len, data.len() as c_uint) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_runs_as_tcpdump_would() {
        let program = compile("ether proto 0x88cc").unwrap();
        // tcpdump -d: ldh [12]; jeq #0x88cc jt 2 jf 3; ret #262144; ret #0
        assert_eq!(program.len(), 4);
        assert_eq!(program[0], BpfInsn { code: 0x28, jt: 0, jf: 0, k: 12 });
        let mut frame = [0u8; 60];
        frame[12..14].copy_from_slice(&[0x88, 0xcc]);
        assert_eq!(run(&program, &frame, 60), 262_144);
        assert_eq!(run(&program, &frame[..13], 60), 0, "a load past the captured bytes rejects");
        let greater = compile("greater 100").unwrap();
        assert_eq!(run(&greater, &frame, 60), 0);
        assert_ne!(run(&greater, &frame, 1500), 0, "the length on the wire, not the captured one");
        assert!(compile("hots 10.0.0.1").unwrap_err().contains("syntax error"));
    }
}

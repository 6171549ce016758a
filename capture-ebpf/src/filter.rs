//! The native packet filter: a placeholder subprogram that the loader overwrites, before
//! the object reaches the kernel, with the user's expression compiled by libpcap and
//! translated to eBPF (`capture-daemon/src/filter/ebpf.rs`).
//!
//! Being a static subprogram, it is verified in its caller's context, so the packet
//! pointers it gets stay packet pointers and the filter reads the packet directly: no
//! copy, no interpreter, JIT-compiled like the rest of the program. An ordinary function
//! (not a naked one) so that it has the BTF function record every subprogram needs.
use capture_common::{FILTER_MAGIC, FILTER_SLOTS};

/// Returns non-zero when the packet in `data..data_end`, `wire_len` bytes long on the
/// wire, is selected. Unspliced, it selects everything.
///
/// The placeholder is the magic (one two-slot `lddw`) and `ja +0` no-ops, [`FILTER_SLOTS`]
/// slots in all, followed by the function's `exit`. A translation is written over the
/// end of it, after no-ops that fall through to it (the verifier removes them), and ends
/// by falling through to that `exit`. It may use r0-r5 and the stack; r6-r9 stay as
/// they were, so the compiler has nothing to save around it.
#[inline(never)]
pub fn packet_filter(data: usize, data_end: usize, wire_len: u64) -> u64 {
    let verdict: u64;
    // SAFETY: unspliced, the block only sets r0; spliced, it reads the packet within
    // data..data_end (the verifier checks every access) and clobbers what is declared.
    unsafe {
        core::arch::asm!(
            "r0 = {magic} ll",
            ".rept {nops}",
            "goto +0",
            ".endr",
            magic = const FILTER_MAGIC,
            nops = const FILTER_SLOTS - 2,
            inlateout("r1") data => _,
            inlateout("r2") data_end => _,
            inlateout("r3") wire_len => _,
            lateout("r0") verdict,
            lateout("r4") _,
            lateout("r5") _,
        );
    }
    verdict
}

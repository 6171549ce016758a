//! Which packets are recorded: the filter program, sampling and the rate limit, all
//! configured through maps so user space changes them without reloading anything.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_loop},
    macros::map,
    maps::{Array, PerCpuArray},
};
use capture_common::{
    filter::MAX_FILTER_INSNS,
    filter::{self, FilterInsn, FilterState, PacketView},
    flow::flow_hash,
    CaptureConfig, Counter, FILTER_WINDOW,
};

use crate::record::PacketBytes;

/// The filter program written by user space; `CONFIG.filter_len` says how much of it.
#[map]
static FILTER: Array<FilterInsn> = Array::with_max_entries(MAX_FILTER_INSNS, 0);

/// Settings, entry 0.
#[map]
static CONFIG: Array<CaptureConfig> = Array::with_max_entries(1, 0);

/// The first bytes of the packet being decided on, per CPU (too large for the stack).
#[map]
static WINDOW: PerCpuArray<[u8; FILTER_WINDOW as usize]> = PerCpuArray::with_max_entries(1, 0);

/// Token bucket per CPU: `[nano-tokens, last refill time]`.
#[map]
static BUCKET: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// The copied window of a packet, as the filter machine reads it.
struct Window {
    bytes: *const [u8; FILTER_WINDOW as usize],
    copied: u32,
    wire_len: u32,
}

impl PacketView for Window {
    #[inline(always)]
    fn wire_len(&self) -> u32 {
        self.wire_len
    }

    #[inline(always)]
    fn byte(&self, offset: u32) -> Option<u8> {
        if offset >= self.copied {
            return None;
        }
        // SAFETY: the window is a live per-CPU map value; the index is masked into it.
        Some(unsafe { (*self.bytes)[(offset & (FILTER_WINDOW - 1)) as usize] })
    }
}

/// The filter window of the packet being decided on, as a packet view.
#[inline(always)]
pub fn window(copied: u32, wire_len: u32) -> Option<impl PacketView> {
    // The window's reads mask each offset into it, which is the bound the verifier needs;
    // were `copied` known to be at most FILTER_WINDOW, LLVM would drop the mask after the
    // `offset < copied` check. A volatile reload hides that knowledge.
    // SAFETY: reads a local.
    let copied = unsafe { core::ptr::read_volatile(&copied) };
    WINDOW.get_ptr(0).map(|bytes| Window { bytes, copied, wire_len })
}

/// What the filter loop carries between iterations (bpf_loop's context).
#[repr(C)]
struct FilterRun {
    state: FilterState,
    copied: u32,
    wire_len: u32,
}

/// One filter instruction per bpf_loop iteration. (Running several per call makes the
/// verifier explore every combination of instruction kinds and exceed its budget.)
extern "C" fn filter_step(_index: u64, context: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer given to it: a FilterRun on our stack.
    let run = unsafe { &mut *(context as *mut FilterRun) };
    let (Some(insn), Some(bytes)) = (FILTER.get(run.state.pc), WINDOW.get_ptr(0)) else {
        run.state.verdict = filter::REJECT;
        return 1;
    };
    let window = Window { bytes, copied: run.copied, wire_len: run.wire_len };
    filter::step(insn, &mut run.state, &window);
    i64::from(run.state.verdict != 0)
}

/// Decides whether a packet seen at `now` is recorded, and with which time (the TCP
/// analysis may move it later, see `tcp::ringcap_tcp_flow`); `Err` names the counter of
/// a packet left out.
#[inline(always)]
pub fn select<P: PacketBytes>(packet: &P, wire_len: u32, mut now: u64) -> Result<u64, Counter> {
    let Some(config) = CONFIG.get(0) else { return Ok(now) };
    let config = *config;
    let needs_window = config.filter_len > 0 || config.flow_sample_every > 1 || config.tcp_analysis != 0;
    let mut copied = 0;
    if needs_window {
        let Some(bytes) = WINDOW.get_ptr_mut(0) else { return Err(Counter::CopyFailed) };
        copied = if wire_len > FILTER_WINDOW { FILTER_WINDOW } else { wire_len };
        if copied > 0 {
            // A length the verifier can see is in 1..=FILTER_WINDOW.
            copied = ((copied - 1) & (FILTER_WINDOW - 1)) + 1;
            // SAFETY: the window holds FILTER_WINDOW bytes and copied <= FILTER_WINDOW.
            if !unsafe { packet.load(bytes.cast(), copied) } {
                return Err(Counter::CopyFailed);
            }
        }
        if config.tcp_analysis != 0 {
            now = crate::tcp::ringcap_tcp_analysis(copied, wire_len, now);
        }
        if config.filter_len > 0 {
            let mut run = FilterRun { state: FilterState::default(), copied, wire_len };
            let steps =
                if config.filter_len > MAX_FILTER_INSNS { MAX_FILTER_INSNS } else { config.filter_len };
            // SAFETY: the callback and its context follow bpf_loop's contract.
            unsafe {
                bpf_loop(steps, filter_step as *mut c_void, (&mut run as *mut FilterRun).cast(), 0);
            }
            if run.state.verdict != filter::ACCEPT {
                return Err(Counter::Filtered);
            }
        }
    }
    // SAFETY: helper without arguments.
    if config.sample_every > 1 && !unsafe { bpf_get_prandom_u32() }.is_multiple_of(config.sample_every) {
        return Err(Counter::SampledOut);
    }
    if config.flow_sample_every > 1 {
        let Some(bytes) = WINDOW.get_ptr(0) else { return Err(Counter::CopyFailed) };
        let window = Window { bytes, copied, wire_len };
        if !flow_hash(&window).unwrap_or(0).is_multiple_of(config.flow_sample_every) {
            return Err(Counter::SampledOut);
        }
    }
    if config.max_pps_per_cpu > 0 && !take_token(config.max_pps_per_cpu) {
        return Err(Counter::RateLimited);
    }
    Ok(now)
}

/// One token of a per-CPU bucket refilled at `rate` per second, holding 100 ms of tokens.
#[inline(always)]
fn take_token(rate: u64) -> bool {
    const TOKEN: u64 = 1_000_000_000;
    let Some(bucket) = BUCKET.get_ptr_mut(0) else { return true };
    // SAFETY: per-CPU value, only this CPU touches it while the program runs.
    let bucket = unsafe { &mut *bucket };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let elapsed = now.saturating_sub(bucket[1]).min(TOKEN);
    let capacity = (rate * TOKEN / 10).max(TOKEN);
    bucket[0] = (bucket[0] + elapsed * rate).min(capacity);
    bucket[1] = now;
    if bucket[0] >= TOKEN {
        bucket[0] -= TOKEN;
        true
    } else {
        false
    }
}

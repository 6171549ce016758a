//! `bench filter`: kernel nanoseconds per packet of ringcap's in-kernel filter at 1, 5
//! and 20 primitives, next to libpcap's classic BPF for the same expressions.
//!
//! ringcap: the real XDP program, the expression compiled by libpcap and spliced in as
//! native eBPF, under BPF_PROG_TEST_RUN on a packet every primitive accepts (so the whole
//! filter runs), minus the same program without a filter: the added cost. Sampling
//! after the filter keeps the ring buffer out of it (its cost and its variance), and the
//! programs are timed in turn, round after round, so drift falls on all alike. libpcap: `tcpdump -ddd EXPR`, translated
//! instruction by instruction into an eBPF socket filter (what the kernel does when a
//! classic filter is attached to a socket; the kernel has no test run for classic
//! filters), timed the same way, minus an accept-all program.
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use capture_daemon::filter::Filter;
use capture_daemon::kernel::{CaptureProgram, KernelConfig, ProgramSet, Selection};
use ringcap_tools::bpf::SocketFilter;
use serde_json::json;

use crate::report;

#[derive(clap::Args)]
pub struct Options {
    /// Test runs per measurement.
    #[arg(long, default_value_t = 100_000)]
    repeat: u32,
    /// Measurements per filter; the median is reported.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
}

const FILTERS: [(usize, &str); 4] = [
    (0, ""),
    (1, "tcp"),
    (5, "ip and tcp and dst port 443 and src net 10.0.0.0/8 and tcp[tcpflags] & tcp-syn != 0"),
    (
        20,
        "ip and tcp and dst port 443 and src net 10.0.0.0/8 and tcp[tcpflags] & tcp-syn != 0 \
         and not udp and not arp and not icmp and dst host 10.0.0.2 and src host 10.0.0.1 \
         and less 1500 and greater 40 and not port 22 and not port 80 and portrange 400-500 \
         and not ip6 and ip[8] > 0 and tcp[14:2] > 0 and net 10.0.0.0/16 and not vlan",
    ),
];

/// A TCP SYN from 10.0.0.1:40000 to 10.0.0.2:443 that every filter above accepts.
fn syn_packet() -> Vec<u8> {
    let mut f = vec![0u8; 74];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&60u16.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&443u16.to_be_bytes());
    f[46] = 0xa0;
    f[47] = 0x02;
    f[48..50].copy_from_slice(&64240u16.to_be_bytes());
    f
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_nanos() as f64
}

/// The capture program with `expr` spliced in, and its filter's eBPF instructions.
fn ringcap_program(expr: &str) -> Result<(CaptureProgram, usize)> {
    let filter = Filter::compile(expr)?;
    let instructions = filter.native.len();
    let mut program = CaptureProgram::load(KernelConfig {
        filter: Some(filter),
        snaplen: 128,
        ring_bytes: 1 << 20,
        tcp_flows: 1024,
        programs: ProgramSet::XDP,
    })?;
    program.select(&Selection { sample_every: u32::MAX, tcp_analysis: false, ..Selection::default() })?;
    Ok((program, instructions))
}

/// Median ns per packet of each program, timed in turn round after round.
fn ringcap_ns(programs: &[CaptureProgram], packet: &[u8], options: &Options) -> Result<Vec<f64>> {
    let mut samples = vec![Vec::new(); programs.len()];
    for _ in 0..options.rounds {
        for (program, samples) in programs.iter().zip(&mut samples) {
            samples.push(program.test_run(packet, options.repeat)?);
        }
    }
    Ok(samples.into_iter().map(median).collect())
}

/// Classic BPF from `tcpdump -ddd` (libpcap's optimiser included).
fn libpcap_program(expr: &str) -> Result<Vec<(u16, u8, u8, u32)>> {
    let out = Command::new("tcpdump").args(["-y", "EN10MB", "-ddd", expr]).output()?;
    if !out.status.success() {
        bail!("tcpdump -ddd {expr:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .skip(1)
        .map(|line| {
            let n: Vec<u32> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
            Ok((n[0] as u16, n[1] as u8, n[2] as u8, n[3]))
        })
        .collect()
}

fn ebpf(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst | (src << 4)) << 8)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// Classic BPF to an eBPF socket filter: A in r0, X in r7, the context in r6, M[] on the stack.
fn translate(classic: &[(u16, u8, u8, u32)]) -> Result<Vec<u64>> {
    const R0: u8 = 0;
    const R6: u8 = 6;
    const R7: u8 = 7;
    const R8: u8 = 8;
    const R10: u8 = 10;
    let mov32 = |dst: u8, imm: u32| ebpf(0xb4, dst, 0, 0, imm as i32);
    let mov32_reg = |dst: u8, src: u8| ebpf(0xbc, dst, src, 0, 0);
    let slot = |k: u32| -(4 * (k as i16 + 1));
    // Each classic instruction becomes a fixed number of eBPF ones: lay them out first.
    let width = |code: u16| match code {
        0xb1 => 6,
        0x06 => 2,
        c if c & 0x07 == 0x05 && c != 0x05 => 2,
        _ => 1,
    };
    let prologue = 3usize;
    let mut start = vec![0usize; classic.len() + 1];
    for (i, &(code, ..)) in classic.iter().enumerate() {
        start[i + 1] = start[i] + width(code);
    }
    let mut out = vec![ebpf(0xbf, R6, 1, 0, 0), mov32(R7, 0), mov32(R0, 0)];
    for (i, &(code, jt, jf, k)) in classic.iter().enumerate() {
        let target = |skip: u8| (start[i + 1 + skip as usize] as isize) + prologue as isize;
        let here = |n: usize| (prologue + start[i] + n) as isize;
        match code {
            0x20 | 0x28 | 0x30 => out.push(ebpf(code as u8, 0, 0, 0, k as i32)),
            0x40 | 0x48 | 0x50 => out.push(ebpf(code as u8, 0, R7, 0, k as i32)),
            0x80 => out.push(ebpf(0x61, R0, R6, 0, 0)), // r0 = skb->len
            0x00 => out.push(mov32(R0, k)),
            0x01 => out.push(mov32(R7, k)),
            0x60 => out.push(ebpf(0x61, R0, R10, slot(k), 0)),
            0x61 => out.push(ebpf(0x61, R7, R10, slot(k), 0)),
            0x02 => out.push(ebpf(0x63, R10, R0, slot(k), 0)),
            0x03 => out.push(ebpf(0x63, R10, R7, slot(k), 0)),
            0x07 => out.push(mov32_reg(R7, R0)),
            0x87 => out.push(mov32_reg(R0, R7)),
            0xb1 => out.extend([
                mov32_reg(R8, R0),
                ebpf(0x30, 0, 0, 0, k as i32),
                ebpf(0x54, R0, 0, 0, 0xf),
                ebpf(0x64, R0, 0, 0, 2),
                mov32_reg(R7, R0),
                mov32_reg(R0, R8),
            ]),
            0x06 => out.extend([mov32(R0, k), ebpf(0x95, 0, 0, 0, 0)]),
            0x16 => out.push(ebpf(0x95, 0, 0, 0, 0)),
            0x05 => out.push(ebpf(0x05, 0, 0, (target(k as u8) - here(1)) as i16, 0)),
            c if c & 0x07 == 0x04 => {
                let (src, imm) = if c & 0x08 != 0 { (R7, 0) } else { (0, k as i32) };
                out.push(ebpf(c as u8, R0, src, 0, imm));
            }
            c if c & 0x07 == 0x05 => {
                let (src, imm) = if c & 0x08 != 0 { (R7, 0) } else { (0, k as i32) };
                out.push(ebpf(c as u8, R0, src, (target(jt) - here(1)) as i16, imm));
                out.push(ebpf(0x05, 0, 0, (target(jf) - here(2)) as i16, 0));
            }
            other => bail!("classic BPF opcode {other:#x} is not translated"),
        }
    }
    Ok(out)
}

fn libpcap_ns(expr: &str, packet: &[u8], options: &Options) -> Result<(f64, usize)> {
    let classic = if expr.is_empty() { vec![(0x06, 0, 0, 262_144)] } else { libpcap_program(expr)? };
    let program =
        SocketFilter::load(&translate(&classic)?).context("loading the translated libpcap filter")?;
    // The socket-filter test run strips an Ethernet header first: give it one to strip,
    // so the filter sees the frame from its Ethernet header on, as on a packet socket.
    let mut skb = packet[..14].to_vec();
    skb.extend_from_slice(packet);
    let samples = (0..options.rounds)
        .map(|_| program.time(&skb, options.repeat))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok((median(samples), classic.len()))
}

pub fn run(options: &Options) -> Result<()> {
    let packet = syn_packet();
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    let (programs, insns): (Vec<_>, Vec<_>) = FILTERS
        .iter()
        .map(|(_, expr)| ringcap_program(expr))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let ours_all = ringcap_ns(&programs, &packet, options)?;
    let ours_base = ours_all[0];
    let (theirs_base, _) = libpcap_ns("", &packet, options)?;
    for (i, (primitives, expr)) in FILTERS.into_iter().enumerate() {
        let (ours, our_insns) = (ours_all[i], insns[i]);
        let (theirs, their_insns) = libpcap_ns(expr, &packet, options)?;
        let (ours_added, theirs_added) = (ours - ours_base, theirs - theirs_base);
        rows.push(vec![
            primitives.to_string(),
            format!("{ours:.0}"),
            format!("{ours_added:.0}"),
            our_insns.to_string(),
            format!("{theirs:.0}"),
            format!("{theirs_added:.0}"),
            their_insns.to_string(),
        ]);
        figures.push(json!({
            "primitives": primitives, "expression": expr,
            "ringcap_ns_per_packet": ours, "ringcap_added_ns": ours_added, "ringcap_instructions": our_insns,
            "libpcap_ns_per_packet": theirs, "libpcap_added_ns": theirs_added, "libpcap_instructions": their_insns,
        }));
    }
    println!(
        "kernel ns per packet, BPF_PROG_TEST_RUN x {} (median of {}), a 74-byte TCP SYN every filter accepts",
        options.repeat, options.rounds
    );
    println!(
        "ringcap: the whole XDP capture program (native filter, then sampled out: no record), eBPF \
         instructions of the filter; libpcap: its classic BPF as a socket filter, classic instructions"
    );
    report::print_table(
        &[
            "primitives",
            "ringcap ns",
            "ringcap added",
            "ringcap insns",
            "libpcap ns",
            "libpcap added",
            "libpcap insns",
        ],
        &rows,
    );
    report::save_json("filter", &json!({ "benchmark": "filter", "filters": figures }))
}

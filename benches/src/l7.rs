//! `bench l7`: what the health of ICMP, DNS, TLS and HTTP costs per packet:
//! the real XDP program under `BPF_PROG_TEST_RUN`, `--no-l7-analysis` and the default in
//! turn, on four mixes: bulk TCP data segments (the L7 parsing only looks and leaves),
//! DNS queries and their responses (each query enters the kernel's table of pending
//! exchanges, each response leaves it with a response-time sample), HTTP requests and
//! their responses (read from a copy by a global function, through the same table), and
//! ICMP echoes.
use std::time::Instant;

use anyhow::Result;
use capture_daemon::kernel::{CaptureProgram, KernelConfig, Selection};
use ringcap_tools::frames::TcpSegment;
use serde_json::json;

use crate::report;

#[derive(clap::Args)]
pub struct Options {
    /// Packets timed per measurement.
    #[arg(long, default_value_t = 200_000)]
    packets: u32,
    /// Rounds: each times every mix with the L7 health off and on, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [192, 0, 2, 53];

/// An Ethernet/IPv4/UDP DNS message for `name` between the client's `port` and the
/// server's 53, a query or its response, with transaction `id`.
fn dns(port: u16, id: u16, response: bool) -> Vec<u8> {
    let question: &[u8] = b"\x07example\x03com\x00\x00\x01\x00\x01";
    let udp_len = 8 + 12 + question.len();
    let mut f = vec![0u8; 14 + 20 + udp_len];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    let (src, dst, sport, dport) =
        if response { (SERVER, CLIENT, 53, port) } else { (CLIENT, SERVER, port, 53) };
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
    f[42..44].copy_from_slice(&id.to_be_bytes());
    f[44..46].copy_from_slice(&(if response { 0x8180u16 } else { 0x0100 }).to_be_bytes());
    f[46..48].copy_from_slice(&1u16.to_be_bytes());
    f[54..].copy_from_slice(question);
    f
}

/// An ICMP echo request or reply.
fn echo(seq: u16, reply: bool) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + 56];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&(20u16 + 8 + 56).to_be_bytes());
    f[22] = 64;
    f[23] = 1;
    let (src, dst) = if reply { (SERVER, CLIENT) } else { (CLIENT, SERVER) };
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f[34] = if reply { 0 } else { 8 };
    f[40..42].copy_from_slice(&seq.to_be_bytes());
    f
}

/// An HTTP/1.1 request from the client's `port` to the server's 80, or its response.
fn http(port: u16, response: bool) -> Vec<u8> {
    let message: &[u8] = if response {
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    } else {
        b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"
    };
    let (src, dst) = if response { ((SERVER, 80), (CLIENT, port)) } else { ((CLIENT, port), (SERVER, 80)) };
    let mut frame = TcpSegment {
        src,
        dst,
        flags: 0x18,
        seq: 1,
        ack: 1,
        window: 512,
        options: &[],
        payload: message.len(),
    }
    .frame();
    let at = frame.len() - message.len();
    frame[at..].copy_from_slice(message);
    frame
}

/// The `i`th packet of `mix`.
fn packet(mix: &str, i: u32) -> Vec<u8> {
    let turn = (i / 2) as u16;
    match mix {
        "bulk TCP" => TcpSegment {
            src: (CLIENT, 40000),
            dst: (SERVER, 443),
            flags: 0x10,
            seq: i.wrapping_mul(1448),
            ack: 1,
            window: 512,
            options: &[],
            payload: 1448,
        }
        .frame(),
        // Queries from 1024 client ports in turn, each answered by the next packet.
        "DNS" => dns(1024 + turn % 1024, turn, i % 2 == 1),
        // Requests on 1024 connections in turn, each answered by the next packet.
        "HTTP" => http(1024 + turn % 1024, i % 2 == 1),
        _ => echo(turn, i % 2 == 1),
    }
}

/// Mean kernel ns per packet of `packets` packets of `mix`.
fn ns_per_packet(program: &CaptureProgram, mix: &str, packets: u32) -> Result<f64> {
    let mut sum = 0u64;
    for i in 0..packets {
        sum += program.test_run(&packet(mix, i), 1)?.as_nanos() as u64;
    }
    Ok(sum as f64 / f64::from(packets))
}

pub fn run(options: &Options) -> Result<()> {
    let started = Instant::now();
    let mut program = CaptureProgram::load(KernelConfig::test_run(1024))?;
    const MIXES: [&str; 4] = ["bulk TCP", "DNS", "HTTP", "ICMP echo"];
    // (mix, off, on) per round.
    let mut measured: Vec<(&str, f64, f64)> = Vec::new();
    for round in 1..=options.rounds {
        for mix in MIXES {
            let mut timed = |l7_analysis: bool| -> Result<f64> {
                // Every packet analysed (TCP too, as by default), none recorded.
                let selection = Selection {
                    tcp_analysis: true,
                    l7_analysis,
                    sample_every: u32::MAX,
                    ..Selection::default()
                };
                program.select(&selection)?;
                ns_per_packet(&program, mix, options.packets)
            };
            let off = timed(false)?;
            let on = timed(true)?;
            println!(
                "  round {round}, {mix}: off {off:.0} ns, on {on:.0} ns ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            measured.push((mix, off, on));
        }
    }
    let range = |values: Vec<f64>| {
        let (low, high) = values.iter().fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        format!("{low:.0}-{high:.0}")
    };
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    for mix in MIXES {
        let runs: Vec<_> = measured.iter().filter(|(m, _, _)| *m == mix).collect();
        rows.push(vec![
            mix.to_string(),
            range(runs.iter().map(|r| r.1).collect()),
            range(runs.iter().map(|r| r.2).collect()),
            range(runs.iter().map(|r| r.2 - r.1).collect()),
        ]);
        figures.push(json!({
            "mix": mix,
            "runs": runs.iter().map(|r| json!({ "l7_off_ns": r.1, "l7_on_ns": r.2, "added_ns": r.2 - r.1 })).collect::<Vec<_>>(),
        }));
    }
    println!();
    println!(
        "kernel ns per packet, BPF_PROG_TEST_RUN of the XDP program (TCP analysis on, nothing recorded), \
         --no-l7-analysis then the default in turn, {} rounds of {} packets (targets: under 10 ns added on \
         bulk TCP, under 100 ns a DNS packet); real traffic: `cargo xtask bench flows` (kernel statistics)",
        options.rounds, options.packets
    );
    report::print_table(&["mix", "L7 health off", "on", "added"], &rows);
    report::save_json("l7", &json!({ "benchmark": "l7", "packets": options.packets, "results": figures }))
}

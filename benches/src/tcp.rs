//! `bench tcp`: what the in-kernel TCP analysis costs per packet, at 1, 10k and 1M
//! concurrent flows: the real XDP program under `BPF_PROG_TEST_RUN`, with the analysis
//! off and on, on in-order data segments (with TCP timestamps) of flows taken in turn.
//! Sampling keeps the ring out of it, so the difference is the analysis alone: parsing,
//! the flow-table lookup, Wireshark's rules and the RTT samples.
use std::time::Instant;

use anyhow::Result;
use capture_daemon::kernel::{CaptureProgram, KernelConfig, Selection};
use ringcap_tools::frames::TcpSegment;
use serde_json::json;

use crate::report;

#[derive(clap::Args)]
pub struct Options {
    /// Concurrent flows to measure at (comma list).
    #[arg(long, value_delimiter = ',', default_value = "1,10000,1000000")]
    flows: Vec<u32>,
    /// Packets timed per measurement (at least one per flow).
    #[arg(long, default_value_t = 300_000)]
    packets: u32,
}

/// Payload bytes of each data segment.
const PAYLOAD: u32 = 100;

/// An Ethernet/IPv4/TCP data segment of flow `flow` with sequence number `seq`, with a
/// timestamp option (NOP, NOP, TS), as Linux sends them.
fn segment(flow: u32, seq: u32) -> Vec<u8> {
    let mut timestamps = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
    timestamps[4..8].copy_from_slice(&seq.to_be_bytes());
    TcpSegment {
        src: ([10, (flow >> 16) as u8, (flow >> 8) as u8, flow as u8], 1024 + (flow % 60_000) as u16),
        dst: ([192, 0, 2, 1], 443),
        flags: 0x18,
        seq,
        ack: 1,
        window: 512,
        options: &timestamps,
        payload: PAYLOAD as usize,
    }
    .frame()
}

/// Mean kernel ns per packet over `packets` segments of `flows` flows taken in turn,
/// each flow's data in order (after one warm-up round that puts every flow in the table).
fn ns_per_packet(program: &CaptureProgram, flows: u32, packets: u32) -> Result<f64> {
    let mut seq = vec![1u32; flows as usize];
    let mut run = |flow: u32| -> Result<u64> {
        let s = &mut seq[flow as usize];
        let duration = program.test_run(&segment(flow, *s), 1)?;
        *s = s.wrapping_add(PAYLOAD);
        Ok(duration.as_nanos() as u64)
    };
    for flow in 0..flows {
        run(flow)?;
    }
    let total = packets.max(flows);
    let mut sum = 0u64;
    for i in 0..total {
        sum += run(i % flows)?;
    }
    Ok(sum as f64 / f64::from(total))
}

pub fn run(options: &Options) -> Result<()> {
    let mut rows = Vec::new();
    let mut figures = Vec::new();
    for &flows in &options.flows {
        let started = Instant::now();
        let mut program = CaptureProgram::load(KernelConfig::test_run((flows * 2).max(1024)))?;
        let mut timed = |analysis: bool| -> Result<f64> {
            program.forget_flows();
            program.select(&Selection {
                tcp_analysis: analysis,
                sample_every: u32::MAX,
                ..Selection::default()
            })?;
            ns_per_packet(&program, flows, options.packets)
        };
        let off = timed(false)?;
        let on = timed(true)?;
        println!(
            "  {flows} flows: off {off:.0} ns, on {on:.0} ns ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        rows.push(vec![
            flows.to_string(),
            format!("{off:.0}"),
            format!("{on:.0}"),
            format!("{:.0}", on - off),
        ]);
        figures.push(json!({
            "flows": flows,
            "analysis_off_ns_per_packet": off,
            "analysis_on_ns_per_packet": on,
            "analysis_added_ns_per_packet": on - off,
        }));
    }
    println!();
    println!(
        "kernel ns per packet, BPF_PROG_TEST_RUN of the XDP program on in-order 166-byte data segments, \
         flows in turn (target: under 100 ns added at 10k flows; ePPing, the published reference, costs 125-360 ns)"
    );
    report::print_table(&["flows", "analysis off", "analysis on", "added by the analysis"], &rows);
    report::save_json("tcp", &json!({ "benchmark": "tcp", "packets": options.packets, "results": figures }))
}

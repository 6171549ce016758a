//! The periodic sweep of the kernel's TCP flow table.
use std::time::{Duration, Instant};

use capture_common::Counter;

use super::{locked, LiveCounters};
use crate::kernel::CaptureProgram;
use crate::records::FlowTable;

/// Sweeps the TCP flow table now and then: live flows, evictions, unanswered SYNs. A
/// sweep reads every flow (two syscalls each), so sweeps are spaced to take at most 2%
/// of a core.
pub struct Sweeper {
    next: Instant,
    table: FlowTable,
    syn_timeout: Duration,
}

impl Sweeper {
    pub fn new(capacity: u32, syn_timeout: Duration) -> Self {
        let table = FlowTable { capacity: u64::from(capacity), ..FlowTable::default() };
        Sweeper { next: Instant::now() + Duration::from_secs(1), table, syn_timeout }
    }

    pub fn maybe_sweep(&mut self, program: &mut CaptureProgram, live: &LiveCounters) {
        if Instant::now() < self.next {
            return;
        }
        let started = Instant::now();
        let (flows, unanswered) =
            program.sweep_flows(crate::capture::clock::monotonic_ns(), self.syn_timeout);
        // The counters published just now, rather than reading the kernel's again.
        let kernel = locked(&live.kernel);
        let inserted = kernel.get(Counter::TcpFlowsInserted) + kernel.get(Counter::UdpFlowsInserted);
        drop(kernel);
        self.table.live = flows;
        self.table.syn_unanswered += unanswered;
        self.table.evicted = inserted.saturating_sub(flows);
        *locked(&live.flows) = self.table;
        self.next = Instant::now() + (started.elapsed() * 50).max(Duration::from_secs(1));
    }
}

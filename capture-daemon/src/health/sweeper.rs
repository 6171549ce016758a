//! The periodic sweep of the kernel's flow table.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capture_common::tcp::{FlowKey, FlowState};
use capture_common::Counter;

use super::flows::{waiting_for_answer, FlowList, FlowRecord};
use super::{locked, LiveCounters};
use crate::capture::clock;
use crate::kernel::CaptureProgram;
use crate::records::FlowTable;

/// IP protocol number of TCP.
const TCP: u8 = 6;

/// Sweeps the flow table now and then: live flows, evictions, unanswered SYNs, and the
/// list of TCP connections with their counts. A sweep reads every flow (two syscalls
/// each), so sweeps are spaced to take at most 2% of a core.
pub struct Sweeper {
    next: Instant,
    table: FlowTable,
    syn_timeout: Duration,
    /// Connection attempts already counted unanswered, by flow and SYN time: kept here,
    /// so that user space never writes a flow the kernel may be updating.
    unanswered: HashMap<FlowKey, u64>,
}

impl Sweeper {
    pub fn new(capacity: u32, syn_timeout: Duration) -> Self {
        let table = FlowTable { capacity: u64::from(capacity), ..FlowTable::default() };
        Sweeper {
            next: Instant::now() + Duration::from_secs(1),
            table,
            syn_timeout,
            unanswered: HashMap::new(),
        }
    }

    pub fn maybe_sweep(&mut self, program: &CaptureProgram, live: &LiveCounters) {
        if Instant::now() < self.next {
            return;
        }
        let started = Instant::now();
        let entries = program.flows();
        let now_ns = clock::monotonic_ns();
        let newly_unanswered = self.count_unanswered(&entries, now_ns);
        let timeout_ns = self.syn_timeout.as_nanos() as u64;
        let wall = clock::shared().current();
        let flows = entries
            .iter()
            .filter(|(key, _)| key.protocol == TCP)
            .map(|(key, state)| FlowRecord::new(key, state, now_ns, timeout_ns, &wall))
            .collect();
        let swept_at = Some((crate::timefmt::rfc3339(crate::timefmt::unix_now_ns()), Instant::now()));
        *locked(&live.flow_list) = Arc::new(FlowList { swept_at, flows });
        // The counters published just now, rather than reading the kernel's again.
        let kernel = locked(&live.kernel);
        let inserted = kernel.get(Counter::TcpFlowsInserted) + kernel.get(Counter::UdpFlowsInserted);
        drop(kernel);
        let live_flows = entries.len() as u64;
        self.table.live = live_flows;
        self.table.syn_unanswered += newly_unanswered;
        self.table.evicted = inserted.saturating_sub(live_flows);
        *locked(&live.flows) = self.table;
        self.next = Instant::now() + (started.elapsed() * 50).max(Duration::from_secs(1));
    }

    /// Connection attempts newly found unanswered at `now_ns` (waiting for an answer for
    /// `syn_timeout`, see [`waiting_for_answer`]), each counted once.
    fn count_unanswered(&mut self, entries: &[(FlowKey, FlowState)], now_ns: u64) -> u64 {
        let timeout = self.syn_timeout.as_nanos() as u64;
        let mut newly = 0;
        let mut still_waiting = HashMap::new();
        for (key, state) in entries {
            if waiting_for_answer(state) && now_ns.saturating_sub(state.syn_ns) >= timeout {
                if self.unanswered.get(key) != Some(&state.syn_ns) {
                    newly += 1;
                }
                still_waiting.insert(*key, state.syn_ns);
            }
        }
        // Attempts answered, evicted or replaced since are forgotten: memory stays bounded
        // by the table.
        self.unanswered = still_waiting;
        newly
    }
}

//! The drop ledger of a trial: where every offered frame went, each line a counter of
//! the interface, the kernel programs, the AF_XDP sockets, the reader or the writer.
//! Each line is read from its own counter, none derived from the others, so the lines
//! add up to what was offered only when every frame is explained; whatever is not is
//! shown as `unaccounted`, never hidden (on the self-test's veth bed it is zero in every
//! trial).
use serde::Serialize;

use super::system::InterfaceCounters;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ledger {
    /// Frames offered: sent by the generator (self-test), or counted by the interface
    /// (received plus its drops) with an external source.
    pub offered: u64,
    /// Lost before any program saw them: the interface's own drop counters (a veth drops
    /// what its peer sends faster than its receive ring drains, and counts it at the peer).
    pub nic_dropped: u64,
    /// Seen by the capture program.
    pub seen: u64,
    /// Left out on purpose: the filter, sampling, --max-pps.
    pub not_selected: u64,
    /// The kernel ring buffer was full, or the copy into it failed; AF_XDP: no socket.
    pub kernel_dropped: u64,
    /// AF_XDP: the socket's receive ring full or no free frame in its fill ring.
    pub xsk_dropped: u64,
    /// The reader's queue to the writer was full (the writer or the disk fell behind).
    pub reader_queue_dropped: u64,
    /// The writer could not store them (write errors, no file).
    pub writer_lost: u64,
    /// Stored in the ring's files.
    pub captured: u64,
    /// Of those, stored with their headers only by the per-flow cut (`--flow-bytes`,
    /// `--flow-packets`, `--cut-encrypted`), and the bytes the cut did not store: not
    /// losses, what the cut bought.
    pub cut: u64,
    pub cut_bytes: u64,
    /// Offered minus every line above: frames no counter explains.
    pub unaccounted: i64,
}

impl Ledger {
    /// From a `ringcap run` statistics snapshot (`STEM.stats.json`, the same body as
    /// `/v1/stats`), what the generator sent (or the interface counted) and the interface.
    pub fn from_ringcap(stats: &serde_json::Value, offered: u64, interface: &InterfaceCounters) -> Self {
        let n = |section: &str, key: &str| stats[section][key].as_u64().unwrap_or(0);
        let xsk = ["rx_dropped", "rx_ring_full", "fill_ring_empty", "rx_invalid_descs"]
            .iter()
            .map(|k| n("xsk", k))
            .sum();
        Ledger {
            offered,
            nic_dropped: interface.dropped(),
            seen: n("kernel", "seen"),
            not_selected: n("kernel", "filtered") + n("kernel", "sampled_out") + n("kernel", "rate_limited"),
            kernel_dropped: n("kernel", "ring_full")
                + n("kernel", "copy_failed")
                + n("kernel", "xsk_no_socket"),
            xsk_dropped: xsk,
            reader_queue_dropped: n("reader", "queue_dropped"),
            writer_lost: n("storage", "packets_lost"),
            captured: n("storage", "packets_written"),
            cut: ["cut_flow_bytes", "cut_flow_packets", "cut_encrypted"].iter().map(|k| n("kernel", k)).sum(),
            cut_bytes: ["cut_flow_bytes_bytes", "cut_flow_packets_bytes", "cut_encrypted_bytes"]
                .iter()
                .map(|k| n("kernel", k))
                .sum(),
            unaccounted: 0,
        }
        .balanced()
    }

    /// From tcpdump's exit summary: "N packets captured", "N packets received by
    /// filter", "N packets dropped by kernel".
    pub fn from_tcpdump(summary: &[String], offered: u64, interface: &InterfaceCounters) -> Self {
        let count = |what: &str| ringcap_tools::harness::summary_count(summary, what).unwrap_or(0);
        let (captured, received, dropped) = (
            count("packets captured"),
            count("packets received by filter"),
            count("packets dropped by kernel"),
        );
        Ledger {
            offered,
            nic_dropped: interface.dropped(),
            seen: interface.rx_packets,
            not_selected: interface.rx_packets.saturating_sub(received),
            kernel_dropped: dropped,
            captured,
            ..Ledger::default()
        }
        .balanced()
    }

    /// Sets `unaccounted` to what the lines leave over.
    fn balanced(mut self) -> Self {
        let explained = self.nic_dropped
            + self.not_selected
            + self.kernel_dropped
            + self.xsk_dropped
            + self.reader_queue_dropped
            + self.writer_lost
            + self.captured;
        self.unaccounted = self.offered as i64 - explained as i64;
        self
    }

    /// Frames lost anywhere between the wire and the disk.
    pub fn lost(&self) -> u64 {
        self.nic_dropped
            + self.kernel_dropped
            + self.xsk_dropped
            + self.reader_queue_dropped
            + self.writer_lost
            + self.unaccounted.unsigned_abs()
    }

    /// Where the trial lost the most frames: what limits the rate. On a shared machine a
    /// busy moment can drop a handful at the interface while a slow disk drops thousands
    /// at the writer; the bottleneck is the writer. Ties go to the earlier place in the
    /// path's order.
    pub fn main_loss(&self) -> Option<&'static str> {
        [
            (self.nic_dropped, "interface (NIC or veth receive ring)"),
            (self.kernel_dropped, "kernel ring buffer (the reader fell behind)"),
            (self.xsk_dropped, "AF_XDP socket rings (the reader fell behind)"),
            (self.reader_queue_dropped, "writer (disk or compression too slow)"),
            (self.writer_lost, "disk (write errors)"),
            (self.unaccounted.unsigned_abs(), "unaccounted"),
        ]
        .into_iter()
        .filter(|&(count, _)| count > 0)
        .rev()
        .max_by_key(|&(count, _)| count)
        .map(|(_, place)| place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_ringcap_ledger_adds_up_to_what_was_offered() {
        let stats = json!({
            "kernel": {"seen": 990, "filtered": 100, "sampled_out": 0, "rate_limited": 0, "ring_full": 40, "copy_failed": 0, "xsk_no_socket": 0},
            "reader": {"queue_dropped": 50},
            "storage": {"packets_lost": 0, "packets_written": 800},
            "xsk": {"rx_dropped": 0, "rx_ring_full": 0, "fill_ring_empty": 0, "rx_invalid_descs": 0},
        });
        let interface =
            InterfaceCounters { rx_packets: 990, rx_dropped: 4, peer_tx_dropped: 6, ..Default::default() };
        let ledger = Ledger::from_ringcap(&stats, 1000, &interface);
        assert_eq!(ledger.nic_dropped, 10);
        assert_eq!(ledger.unaccounted, 0);
        assert_eq!(ledger.lost(), 10 + 40 + 50);
        assert_eq!(ledger.main_loss(), Some("writer (disk or compression too slow)"));
        // Frames the program never saw and no interface counted are not the interface's.
        let unseen = InterfaceCounters { rx_packets: 990, ..Default::default() };
        let ledger = Ledger::from_ringcap(&stats, 1000, &unseen);
        assert_eq!((ledger.nic_dropped, ledger.unaccounted), (0, 10));
        // A packet the writer reports it never got shows up, not hidden.
        let short = json!({"kernel": {"seen": 1000}, "storage": {"packets_written": 999}});
        let ledger = Ledger::from_ringcap(&short, 1000, &InterfaceCounters::default());
        assert_eq!((ledger.unaccounted, ledger.lost()), (1, 1));
    }

    #[test]
    fn the_verdict_is_where_most_frames_were_lost() {
        // A slow disk on a busy machine: a few frames dropped at the interface, most at
        // the writer's queue. The writer limits the rate.
        let ledger = Ledger {
            offered: 108_340,
            nic_dropped: 12,
            reader_queue_dropped: 60_356,
            captured: 47_972,
            ..Ledger::default()
        };
        assert_eq!(ledger.main_loss(), Some("writer (disk or compression too slow)"));
        // Equal losses: the earlier place in the path.
        let tie = Ledger { nic_dropped: 5, kernel_dropped: 5, ..Ledger::default() };
        assert_eq!(tie.main_loss(), Some("interface (NIC or veth receive ring)"));
        assert_eq!(Ledger::default().main_loss(), None);
    }
}

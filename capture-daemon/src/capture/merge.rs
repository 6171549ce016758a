//! Merging the batches of several readers (AF_XDP queues, the ring buffer) into one
//! stream in time order, as a file reader expects.
//!
//! Each reader's records are in time order, so a k-way merge suffices; but another
//! reader may still hold an older record. Each reader publishes a watermark, the time
//! before which it will send nothing more; a record is written once every reader's
//! watermark has passed it. A reader that falls behind holds the others back for at most
//! the reorder window: a record older than what was already written is written anyway
//! (it is never dropped) and counted in `reorder_window_exceeded`.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::{Batch, BufferPool, ReaderCounters};

/// Per reader, the wall-clock time (ns) before which it will send no more records.
#[derive(Debug)]
pub struct Watermarks(Vec<AtomicU64>);

impl Watermarks {
    pub fn new(readers: usize) -> Self {
        Watermarks((0..readers).map(|_| AtomicU64::new(0)).collect())
    }

    /// Reader `reader` has sent every record before `ns` (published after the send).
    pub fn advance(&self, reader: usize, ns: u64) {
        if let Some(mark) = self.0.get(reader) {
            mark.fetch_max(ns, Ordering::Release);
        }
    }

    /// The time before which no reader will send anything more.
    pub fn low(&self) -> u64 {
        self.0.iter().map(|mark| mark.load(Ordering::Acquire)).min().unwrap_or(0)
    }
}

/// A batch waiting to be merged, and how far it has been consumed.
struct Pending {
    batch: Batch,
    /// Index of the next record in `batch.stamps`.
    next: usize,
    arrived: Instant,
}

impl Pending {
    fn head_ns(&self) -> u64 {
        self.batch.stamps[self.next].unix_ns
    }

    /// The next record's bytes.
    fn head_bytes(&self) -> &[u8] {
        let start = if self.next == 0 { 0 } else { self.batch.stamps[self.next - 1].end };
        &self.batch.records[start..self.batch.stamps[self.next].end]
    }
}

/// Merges the batches of `sources` readers in time order within a reorder window.
pub struct Merger {
    sources: Vec<VecDeque<Pending>>,
    window: Duration,
    pool: BufferPool,
    batch_bytes: usize,
    last_written_ns: u64,
    counters: Arc<ReaderCounters>,
}

impl Merger {
    pub fn new(
        sources: usize,
        window: Duration,
        pool: BufferPool,
        batch_bytes: usize,
        counters: Arc<ReaderCounters>,
    ) -> Self {
        Merger {
            sources: (0..sources).map(|_| VecDeque::new()).collect(),
            window,
            pool,
            batch_bytes,
            last_written_ns: 0,
            counters,
        }
    }

    /// Takes a reader's batch (its records must carry stamps).
    pub fn push(&mut self, batch: Batch, now: Instant) {
        if batch.stamps.is_empty() {
            self.pool.give(batch.records);
            return;
        }
        let source = batch.source.min(self.sources.len() - 1);
        self.sources[source].push_back(Pending { batch, next: 0, arrived: now });
    }

    /// The records that no reader can precede any more, oldest first: a record is
    /// written once it is older than `low` (the readers' lowest watermark, read before
    /// the batches that watermark covers were taken in), or once it has waited the
    /// window, or when `flush` says no more batches come.
    pub fn pop(&mut self, now: Instant, low: u64, flush: bool) -> Option<Batch> {
        let mut out = Batch::empty(self.pool.take(), Duration::ZERO);
        while out.records.len() < self.batch_bytes {
            let Some(source) = (0..self.sources.len())
                .filter(|&s| !self.sources[s].is_empty())
                .min_by_key(|&s| self.sources[s][0].head_ns())
            else {
                break;
            };
            let head = &self.sources[source][0];
            if !(flush || head.head_ns() < low || now.duration_since(head.arrived) >= self.window) {
                break;
            }
            let ns = head.head_ns();
            if ns < self.last_written_ns {
                self.counters.reorder_window_exceeded.fetch_add(1, Ordering::Relaxed);
            }
            self.last_written_ns = self.last_written_ns.max(ns);
            out.records.extend_from_slice(head.head_bytes());
            let time = Duration::from_nanos(ns);
            if out.packets == 0 {
                out.first = time;
            }
            out.last = time;
            out.packets += 1;
            let queue = &mut self.sources[source];
            queue[0].next += 1;
            if queue[0].next == queue[0].batch.stamps.len() {
                let done = queue.pop_front().expect("the head exists");
                self.pool.give(done.batch.records);
            }
        }
        if out.packets == 0 {
            self.pool.give(out.records);
            return None;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::RecordStamp;

    /// A batch of one-byte records whose byte is the record's time.
    fn batch(source: usize, times: &[u64]) -> Batch {
        Batch {
            records: times.iter().map(|&t| t as u8).collect(),
            packets: times.len() as u64,
            first: Duration::ZERO,
            last: Duration::ZERO,
            source,
            stamps: times.iter().enumerate().map(|(i, &t)| RecordStamp { unix_ns: t, end: i + 1 }).collect(),
        }
    }

    fn merger(sources: usize) -> (Merger, Arc<ReaderCounters>) {
        let counters = Arc::new(ReaderCounters::default());
        let pool = BufferPool::new(1024, 4);
        (Merger::new(sources, Duration::from_millis(100), pool, 1 << 20, Arc::clone(&counters)), counters)
    }

    #[test]
    fn interleaves_sources_in_time_order() {
        let (mut merger, counters) = merger(2);
        let now = Instant::now();
        merger.push(batch(0, &[1, 4, 6]), now);
        merger.push(batch(1, &[2, 3, 7]), now);
        // The readers have sent everything before 7: 7 waits, a reader might still send 6.5.
        assert_eq!(merger.pop(now, 7, false).unwrap().records, vec![1, 2, 3, 4, 6]);
        assert_eq!(merger.pop(now, 7, true).unwrap().records, vec![7]);
        assert_eq!(counters.reorder_window_exceeded.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn watermarks_are_the_lowest_reader_and_only_advance() {
        let marks = Watermarks::new(2);
        marks.advance(0, 10);
        assert_eq!(marks.low(), 0);
        marks.advance(1, 7);
        marks.advance(1, 5);
        assert_eq!(marks.low(), 7);
    }

    #[test]
    fn a_reader_behind_holds_records_back_for_the_window_only() {
        let (mut merger, _) = merger(2);
        let now = Instant::now();
        merger.push(batch(0, &[5, 6]), now);
        assert!(merger.pop(now, 3, false).is_none());
        let later = now + Duration::from_millis(100);
        assert_eq!(merger.pop(later, 3, false).unwrap().records, vec![5, 6]);
    }

    #[test]
    fn late_records_are_written_and_counted() {
        let (mut merger, counters) = merger(2);
        let now = Instant::now();
        merger.push(batch(0, &[5, 6]), now);
        let later = now + Duration::from_millis(150);
        assert_eq!(merger.pop(later, 0, false).unwrap().records, vec![5, 6]);
        merger.push(batch(1, &[3, 4]), later);
        assert_eq!(merger.pop(later, 0, true).unwrap().records, vec![3, 4]);
        assert_eq!(counters.reorder_window_exceeded.load(Ordering::Relaxed), 2);
    }
}

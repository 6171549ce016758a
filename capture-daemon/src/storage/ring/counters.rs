//! What the ring writer did, counted as it goes.
use std::sync::atomic::{AtomicU64, Ordering};

use crate::records::StorageTotals;

/// What the ring writer did, readable while it runs (metrics, summary).
#[derive(Debug, Default)]
pub struct StorageCounters {
    pub packets_written: AtomicU64,
    pub frames_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub files_created: AtomicU64,
    /// Files removed to honour -W and --max-disk.
    pub files_removed: AtomicU64,
    /// Files removed because the disk filled up or fell below --min-free.
    pub files_removed_for_space: AtomicU64,
    /// Writes that failed with ENOSPC or EDQUOT.
    pub disk_full_events: AtomicU64,
    /// Frames that could not be written at all.
    pub write_errors: AtomicU64,
    /// Packets in those frames.
    pub packets_lost: AtomicU64,
    /// Index entries that could not be written (the data stays readable by scanning).
    pub index_errors: AtomicU64,
    /// Adopted files whose torn last frame was cut off at start.
    pub files_repaired: AtomicU64,
    /// Frames whose fdatasync failed: cut off again and counted in `write_errors` and
    /// `packets_lost`, since the kernel may have dropped their pages.
    pub sync_errors: AtomicU64,
    /// Manifest updates that failed (the files stay; a later update retries).
    pub manifest_errors: AtomicU64,
    /// Files of the ring removed, replaced, truncated or overwritten by someone else while
    /// written: a new file is started for the packets that follow.
    pub files_lost: AtomicU64,
}

impl StorageCounters {
    /// The counters now (`/v1/stats` and the files' statistics snapshots).
    pub fn totals(&self) -> StorageTotals {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StorageTotals {
            packets_written: get(&self.packets_written),
            packets_lost: get(&self.packets_lost),
            frames_written: get(&self.frames_written),
            bytes_written: get(&self.bytes_written),
            files_created: get(&self.files_created),
            files_removed: get(&self.files_removed),
            files_removed_for_space: get(&self.files_removed_for_space),
            disk_full_events: get(&self.disk_full_events),
            write_errors: get(&self.write_errors),
            index_errors: get(&self.index_errors),
            files_lost: get(&self.files_lost),
        }
    }
}

pub(super) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

//! The statistics snapshots stored beside each file while it is written and when it closes.
use super::*;

impl RingWriter {
    /// Appends the daemon's counters to the current file's snapshots, at most once per
    /// frame interval: after a frame is stored, and on ticks while the counters move
    /// without frames (their last change lands too). Best effort: a pull without them
    /// covers whole files instead.
    pub(super) fn append_snapshot(&mut self, only_if_changed: bool) {
        let Some(SnapshotSource(snapshot)) = &self.config.snapshot else { return };
        let Some(current) = self.current.as_mut() else { return };
        if current.last_snapshot.is_some_and(|at| at.elapsed() < self.config.frame_age) {
            return;
        }
        let mut line = snapshot();
        if only_if_changed && current.last_kernel.as_ref() == Some(&line.kernel) {
            return;
        }
        current.last_snapshot = Some(Instant::now());
        current.last_kernel = Some(line.kernel.clone());
        if current.snapshots.is_none() {
            current.snapshots =
                nofollow::open_for_writing(&snapshots_path(&current.data), nofollow::Write::Append).ok();
        }
        line.storage = Some(self.counters.totals());
        let mut line = serde_json::to_string(&line).expect("a snapshot serializes");
        line.push('\n');
        match current.snapshots.as_mut().map(|file| std::io::Write::write_all(file, line.as_bytes())) {
            Some(Ok(())) => current.snapshot_bytes += line.len() as u64,
            _ => bump(&self.counters.index_errors, 1),
        }
    }

    /// Stores the statistics snapshot of a file that is closing.
    pub(super) fn write_snapshot(&self, data: &Path) {
        if let Some(SnapshotSource(snapshot)) = &self.config.snapshot {
            // What the writer did so far goes with what the programs and the reader did.
            let mut snapshot = snapshot();
            snapshot.storage = Some(self.counters.totals());
            let text = serde_json::to_string(&snapshot).expect("a snapshot serializes");
            let written = nofollow::open_for_writing(&stats_path(data), nofollow::Write::Replace)
                .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()));
            if written.is_err() {
                bump(&self.counters.index_errors, 1);
            }
        }
    }
}

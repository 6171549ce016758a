//! The ring's files stay ringcap's: a file taken, replaced, truncated or overwritten while
//! written is let go and counted, a removed directory stops the writer, and a torn newest
//! file of an earlier run is repaired.
use super::*;

/// How the file being written was lost (see [`RingWriter::abandon_current`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lost {
    Removed,
    Replaced,
    Truncated,
    Overwritten,
}

impl Lost {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Lost::Removed => "removed",
            Lost::Replaced => "replaced",
            Lost::Truncated => "truncated",
            Lost::Overwritten => "overwritten",
        }
    }
}

/// The largest a file's header frame can be: a torn newest file this short holds nothing.
pub(super) const HEADER_FRAME_MAX: u64 = 1024;

impl RingWriter {
    /// Why the file being written is no longer the one in the directory, if it is not:
    /// unlinked, replaced (another file under its name), truncated below what was written,
    /// or written by someone else (longer than ringcap made it, or modified after).
    pub(super) fn current_file_lost(&self) -> Option<Lost> {
        use std::os::unix::fs::MetadataExt;
        let current = self.current.as_ref()?;
        let held = current.file.metadata().ok()?;
        match std::fs::symlink_metadata(&current.data) {
            // Gone from the directory (unlinked, or renamed away).
            Err(_) => Some(Lost::Removed),
            Ok(named) if (named.dev(), named.ino()) != (held.dev(), held.ino()) => Some(Lost::Replaced),
            Ok(_) if held.nlink() == 0 => Some(Lost::Removed),
            Ok(_) if held.len() < current.offset => Some(Lost::Truncated),
            Ok(_)
                if held.len() > current.offset
                    || held.modified().is_ok_and(|at| at > current.last_own_change) =>
            {
                Some(Lost::Overwritten)
            }
            Ok(_) => None,
        }
    }

    /// Lets go of the current file that someone else removed, replaced, truncated or
    /// overwrote (said and counted). A truncated or overwritten file is still ringcap's
    /// and joins the closed files; the name of a removed or replaced one leaves the
    /// manifest, so a file put in its place is never taken for ringcap's.
    pub(super) fn abandon_current(&mut self, why: Lost) {
        let Some(current) = self.current.take() else { return };
        bump(&self.counters.files_lost, 1);
        eprintln!(
            "ringcap: warning: {} was {} while being written (not by ringcap): the packets that follow go to a new file",
            current.data.display(),
            why.as_str()
        );
        if matches!(why, Lost::Truncated | Lost::Overwritten) {
            let bytes =
                file_len(&current.data) + file_len(&index_path(&current.data)) + current.snapshot_bytes;
            self.retention.push(ClosedFile { data: current.data, bytes });
            return;
        }
        for sidecar in sidecars(&current.data) {
            let _ = std::fs::remove_file(sidecar);
        }
        if let Some(name) = current.data.file_name().and_then(|n| n.to_str()) {
            self.manifest.remove(name);
            let _ = self.save_manifest();
        }
    }

    /// Checks, before each batch and tick, that the file being written is still the one in
    /// the directory (or starts another), and fails once the ring's directory was removed:
    /// nothing written from then on would land anywhere, so the daemon stops (non-zero)
    /// and a restart makes the directory again.
    pub(super) fn check_dir(&mut self) -> io::Result<()> {
        if let Some(why) = self.current_file_lost() {
            // Frames on their way to it are counted as lost; the packets that follow go to
            // a new file, behind its header.
            self.abandon_current(why);
            self.rotate_counting_errors();
        }
        if self._lock.removed() {
            // The frame on its way has nowhere to go: counted, like the batch in hand.
            self.drop_pending();
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the ring directory {} was removed: restart ringcap to create it again",
                    self.config.dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// The newest adopted file may have been cut short by a crash: its torn last frame is
    /// cut off so every tool reads it cleanly, or, killed between creating the file and
    /// finishing its header frame (at most a kilobyte even for pcapng with many
    /// interfaces), it holds no packet and is removed. Also writes the manifest, which an
    /// older ring did not have.
    pub(super) fn repair_newest(&mut self) -> io::Result<()> {
        if let Some(newest) = self.retention.newest().map(Path::to_path_buf) {
            match DataFile::open(&newest) {
                Ok(file) if file.damaged_tail > 0 => {
                    OpenOptions::new().write(true).open(&newest)?.set_len(file.complete_len())?;
                    bump(&self.counters.files_repaired, 1);
                }
                Ok(_) => {}
                Err(_) if file_len(&newest) < HEADER_FRAME_MAX => {
                    self.retention.take_newest();
                    std::fs::remove_file(&newest)?;
                    for sidecar in sidecars(&newest) {
                        let _ = std::fs::remove_file(sidecar);
                    }
                    if let Some(name) = newest.file_name().and_then(|n| n.to_str()) {
                        self.manifest.remove(name);
                    }
                    bump(&self.counters.files_repaired, 1);
                }
                Err(_) => {}
            }
        }
        self.save_manifest()
    }
}

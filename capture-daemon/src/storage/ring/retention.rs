//! What the ring keeps: its closed files, oldest first, and the rules that say which go
//! (`-W`, `--max-disk` less the pinned bytes, `--min-free`). Only the policy: the writer
//! removes the files this picks and counts them (Stenographer keeps its clean-up apart
//! from writing too).
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A closed file of the ring and the bytes it occupies (data and sidecars).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ClosedFile {
    pub data: PathBuf,
    pub bytes: u64,
}

/// Why the oldest file goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Removal {
    /// -W or --max-disk.
    Limit,
    /// The filesystem is full, or below --min-free.
    Space,
}

/// The ring's closed files and its limits.
#[derive(Debug)]
pub(super) struct Retention {
    closed: VecDeque<ClosedFile>,
    /// Most files, the one being written included (`-W`).
    max_files: Option<usize>,
    /// Most bytes of the ring, pinned windows included (`--max-disk`).
    max_disk: Option<u64>,
    /// Least free bytes on the filesystem (`--min-free`).
    min_free: Option<u64>,
    /// Bytes held beside the ring within the same budget (pinned windows).
    pinned: Option<Arc<AtomicU64>>,
}

impl Retention {
    pub fn new(
        closed: impl IntoIterator<Item = ClosedFile>,
        max_files: Option<usize>,
        max_disk: Option<u64>,
        min_free: Option<u64>,
        pinned: Option<Arc<AtomicU64>>,
    ) -> Self {
        Retention { closed: closed.into_iter().collect(), max_files, max_disk, min_free, pinned }
    }

    pub fn is_empty(&self) -> bool {
        self.closed.is_empty()
    }

    /// The closed files, oldest first.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.closed.iter().map(|f| f.data.as_path())
    }

    /// A file just closed joins the ring.
    pub fn push(&mut self, file: ClosedFile) {
        self.closed.push_back(file);
    }

    pub fn newest(&self) -> Option<&Path> {
        self.closed.back().map(|f| f.data.as_path())
    }

    /// The newest file leaves the ring without being removed (it is being written again).
    pub fn take_newest(&mut self) -> Option<ClosedFile> {
        self.closed.pop_back()
    }

    /// The oldest file, which the caller removes.
    pub fn take_oldest(&mut self) -> Option<ClosedFile> {
        self.closed.pop_front()
    }

    /// The ring's bytes on disk: the closed files, `other` (the file being written and the
    /// manifest) and the pinned windows.
    pub fn bytes(&self, other: u64) -> u64 {
        let pinned = self.pinned.as_ref().map_or(0, |p| p.load(Ordering::Relaxed));
        self.closed.iter().map(|f| f.bytes).sum::<u64>() + other + pinned
    }

    /// Whether the oldest file must go now, and why: -W counts the file being written too,
    /// --max-disk the `other` bytes, --min-free the `available` bytes of the filesystem
    /// (asked only when it matters). The file being written never goes.
    pub fn next_removal(&self, other: u64, available: impl FnOnce() -> Option<u64>) -> Option<Removal> {
        if self.closed.is_empty() {
            return None;
        }
        if self.max_files.is_some_and(|max| self.closed.len() + 1 > max)
            || self.max_disk.is_some_and(|budget| self.bytes(other) > budget)
        {
            return Some(Removal::Limit);
        }
        let floor = self.min_free?;
        available().is_some_and(|free| free < floor).then_some(Removal::Space)
    }

    /// Whether the oldest file must go to make room for `needed` bytes after the disk
    /// filled up: until `needed` and --min-free fit in the `available` bytes.
    pub fn needs_room(&self, needed: u64, available: impl FnOnce() -> Option<u64>) -> bool {
        let floor = needed + self.min_free.unwrap_or(0);
        !self.closed.is_empty() && available().is_none_or(|free| free < floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sizes: &[u64]) -> Vec<ClosedFile> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| ClosedFile { data: format!("f{i}").into(), bytes })
            .collect()
    }

    /// Removes what `next_removal` asks for, as the writer does; the reasons given.
    fn drain(
        retention: &mut Retention,
        other: u64,
        mut available: impl FnMut(&Retention) -> Option<u64>,
    ) -> Vec<Removal> {
        let mut removed = Vec::new();
        while let Some(why) = retention.next_removal(other, || available(retention)) {
            retention.take_oldest();
            removed.push(why);
        }
        removed
    }

    #[test]
    fn w_counts_the_file_being_written() {
        let mut retention = Retention::new(files(&[1, 1, 1, 1]), Some(3), None, None, None);
        assert_eq!(drain(&mut retention, 0, |_| None), vec![Removal::Limit; 2]);
        assert_eq!(retention.files().collect::<Vec<_>>(), vec![Path::new("f2"), Path::new("f3")]);
    }

    #[test]
    fn max_disk_counts_the_current_file_the_manifest_and_the_pins() {
        let pinned = Arc::new(AtomicU64::new(30));
        let mut retention =
            Retention::new(files(&[10, 10, 10, 10]), None, Some(60), None, Some(Arc::clone(&pinned)));
        // 40 closed + 5 other + 30 pinned = 75 > 60: two go (55).
        assert_eq!(drain(&mut retention, 5, |_| None), vec![Removal::Limit; 2]);
        assert_eq!(retention.bytes(5), 55);
        pinned.store(60, Ordering::Relaxed);
        // The pins alone fill the budget: every closed file goes, never the current one.
        assert_eq!(drain(&mut retention, 5, |_| None), vec![Removal::Limit; 2]);
        assert!(retention.is_empty());
        assert_eq!(retention.next_removal(5, || None), None);
    }

    #[test]
    fn min_free_removes_until_the_filesystem_has_room() {
        let mut retention = Retention::new(files(&[10, 10, 10]), None, None, Some(25), None);
        // 10 free; each removal frees its bytes.
        let removed = drain(&mut retention, 0, |r| Some(10 + 30 - r.bytes(0)));
        assert_eq!(removed, vec![Removal::Space; 2]);
        // The free space is asked only with --min-free.
        let retention = Retention::new(files(&[10]), None, None, None, None);
        assert_eq!(retention.next_removal(0, || panic!("asked")), None);
        // Unknown free space removes nothing.
        let retention = Retention::new(files(&[10]), None, None, Some(25), None);
        assert_eq!(retention.next_removal(0, || None), None);
    }

    #[test]
    fn a_full_disk_makes_room_for_the_frame_and_min_free() {
        let retention = Retention::new(files(&[10]), None, None, Some(5), None);
        assert!(retention.needs_room(8, || Some(12)));
        assert!(!retention.needs_room(7, || Some(12)));
        assert!(retention.needs_room(1, || None), "unknown free space: make room");
        let empty = Retention::new(Vec::new(), None, None, Some(5), None);
        assert!(!empty.needs_room(8, || Some(0)), "nothing left to remove");
    }
}

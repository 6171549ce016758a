//! Which files of a directory belong to the ring, and who may write it.
//!
//! ringcap removes only files it created. It recognises them by the ring manifest,
//! `ringcap.manifest` in `--dir`: a text file naming, one per line, every data file ringcap
//! created there. A name is added before its file is created and dropped after the file is
//! removed, and the manifest is replaced atomically (write, fsync, rename, fsync the
//! directory), so a crash at any point leaves no ringcap file unlisted. A capture file that
//! is not listed (a user's `evidence.pcap`, another program's captures) is foreign: it is
//! never removed, renamed or written, and it is not counted against `-W` or `--max-disk`.
//!
//! Upgrade path: a directory without a manifest was written, if by ringcap at all, by a
//! version before the manifest. Such a version gave every data file a time index beside it
//! (`STEM.idx` starting with `RCAPIDX1`), so exactly those files are adopted and written into
//! a new manifest; any other capture file is foreign.
//!
//! One writer per directory: [`DirLock`] holds an exclusive `flock` on the directory itself
//! (no lock file is created), so a second `ringcap run` on the same `--dir` is refused.
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::index::{index_path, INDEX_MAGIC, INDEX_MAGIC_V1};
use super::is_data_file;

/// The manifest's file name in the ring directory.
pub const MANIFEST_NAME: &str = "ringcap.manifest";

/// The ring manifest: the data files ringcap created in the directory.
pub const RING_MANIFEST: ListFile = ListFile {
    name: MANIFEST_NAME,
    header: "# ringcap ring manifest v1: files created by ringcap in this directory, oldest first.\n\
             # Only these are removed by -W, --max-disk and --min-free; any other file is left alone.\n",
};

/// The largest list read: a name a line, for far more files than a ring keeps.
const MAX_LIST_BYTES: u64 = 64 << 20;

/// The data files of a directory, split by owner.
#[derive(Debug, Default)]
pub struct DirListing {
    /// The ring's own files (listed in the manifest, or adopted from an older ring).
    pub own: Vec<PathBuf>,
    /// Capture files ringcap did not write: never touched.
    pub foreign: Vec<PathBuf>,
    /// Whether the directory had a manifest (false: an older ring, or a new directory).
    pub had_manifest: bool,
}

/// A file of a ring directory that lists data files by name: its name and the comment
/// it starts with.
#[derive(Debug)]
pub struct ListFile {
    pub name: &'static str,
    pub header: &'static str,
}

/// A set of data file names kept in a [`ListFile`] of a directory: the ring manifest, the
/// archive's list of uploaded files.
#[derive(Debug)]
pub struct NameList {
    dir: PathBuf,
    file: &'static ListFile,
    names: BTreeSet<String>,
}

impl NameList {
    /// Reads `file` in `dir`; `None` if there is none.
    pub fn read(dir: &Path, file: &'static ListFile) -> io::Result<Option<Self>> {
        let text = match super::nofollow::read_bounded(&dir.join(file.name), MAX_LIST_BYTES) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let names = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            // Only plain names of data files count: a hand-edited line cannot reach outside
            // the directory or name an index, lock or other file.
            .filter(|name| !name.contains('/') && is_data_file(name))
            .map(str::to_string)
            .collect();
        Ok(Some(NameList { dir: dir.to_path_buf(), file, names }))
    }

    /// An empty list for `dir` (not written until [`NameList::save`]).
    pub fn empty(dir: &Path, file: &'static ListFile) -> Self {
        NameList { dir: dir.to_path_buf(), file, names: BTreeSet::new() }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    pub fn insert(&mut self, name: &str) {
        self.names.insert(name.to_string());
    }

    pub fn remove(&mut self, name: &str) {
        self.names.remove(name);
    }

    /// Keeps only the names `keep` accepts.
    pub fn retain(&mut self, keep: impl FnMut(&String) -> bool) {
        self.names.retain(keep);
    }

    /// Replaces the file on disk atomically (write, fsync, rename, fsync the directory):
    /// a crash leaves the old list or the new one. Returns its length in bytes.
    pub fn save(&self) -> io::Result<u64> {
        let path = self.dir.join(self.file.name);
        let temporary = self.dir.join(format!(".{}.tmp", self.file.name));
        let mut text = String::from(self.file.header);
        for name in &self.names {
            text.push_str(name);
            text.push('\n');
        }
        // Whatever holds the temporary name (a crash's leftover, or a symlink planted
        // there) goes first; the new file is created, never opened through a link.
        match std::fs::remove_file(&temporary) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(text.len() as u64)
    }
}

/// Sorts the capture files of `dir` into the ring's own and foreign ones (see the module
/// doc), oldest first by modification time. Changes nothing on disk.
pub fn list(dir: &Path) -> io::Result<(DirListing, NameList)> {
    list_with(dir, NameList::read(dir, &RING_MANIFEST)?)
}

/// As [`list`], by the files' indexes alone, as for a ring from before the manifest: how
/// a reader still finds the ring's files when the manifest cannot be read (something
/// other than a regular file, or too large, planted in its place).
pub fn list_by_index(dir: &Path) -> io::Result<DirListing> {
    list_with(dir, None).map(|(listing, _)| listing)
}

fn list_with(dir: &Path, manifest: Option<NameList>) -> io::Result<(DirListing, NameList)> {
    let had_manifest = manifest.is_some();
    let mut manifest = manifest.unwrap_or_else(|| NameList::empty(dir, &RING_MANIFEST));
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        if !is_data_file(&name) {
            continue;
        }
        // A file that rotation removed since the listing has left the window: not an error.
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_file() {
            found.push((meta.modified().unwrap_or(std::time::UNIX_EPOCH), name, entry.path()));
        }
    }
    found.sort();
    let mut listing = DirListing { had_manifest, ..DirListing::default() };
    for (_, name, path) in found {
        let own = if had_manifest { manifest.contains(&name) } else { has_ringcap_index(&path) };
        if own {
            manifest.insert(&name);
            listing.own.push(path);
        } else {
            listing.foreign.push(path);
        }
    }
    // Names whose file is gone (removed before a crash let the manifest say so) are dropped.
    let present: BTreeSet<String> =
        listing.own.iter().filter_map(|p| p.file_name()?.to_str().map(str::to_string)).collect();
    manifest.retain(|name| present.contains(name));
    Ok((listing, manifest))
}

/// Whether `data` has the time index an older ringcap wrote beside each of its files.
fn has_ringcap_index(data: &Path) -> bool {
    let mut magic = [0u8; 8];
    super::nofollow::open_regular(&index_path(data)).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && (&magic == INDEX_MAGIC || &magic == INDEX_MAGIC_V1)
}

/// An exclusive lock on a ring directory, held while the ring is written.
#[derive(Debug)]
pub struct DirLock {
    _dir: File,
}

impl DirLock {
    /// Locks `dir`; fails with `WouldBlock` if another process holds it.
    pub fn acquire(dir: &Path) -> io::Result<Self> {
        let file = File::open(dir)?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirLock { _dir: file })
    }

    /// Whether the locked directory was removed (its last link is gone): the ring has
    /// nowhere to go, and the daemon must stop so that a restart makes it again.
    pub fn removed(&self) -> bool {
        self._dir.metadata().is_ok_and(|m| std::os::unix::fs::MetadataExt::nlink(&m) == 0)
    }
}

/// The ring's own data files in `dir`, by name (names sort like creation). Other capture
/// files in the directory are not part of the ring (see [`list`]).
pub fn ring_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::io::ErrorKind;
    let mut files = match list(dir) {
        Ok((listing, _)) => listing.own,
        // A manifest that cannot be read (a FIFO, a link or a giant where it should be):
        // the files with ringcap's index are read, so the evidence stays reachable.
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::InvalidData) => {
            eprintln!(
                "ringcap: warning: {} cannot be read ({e}): reading the files that have ringcap's index instead",
                dir.join(MANIFEST_NAME).display()
            );
            list_by_index(dir)?.own
        }
        Err(e) => return Err(e),
    };
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringcap-manifest-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn without_a_manifest_only_files_with_a_ringcap_index_are_adopted() {
        let dir = scratch("legacy");
        std::fs::write(dir.join("ringcap-1.pcap.zst"), b"x").unwrap();
        std::fs::write(dir.join("ringcap-1.idx"), INDEX_MAGIC).unwrap();
        std::fs::write(dir.join("evidence.pcap"), b"x").unwrap();
        std::fs::write(dir.join("other.pcap.zst"), b"x").unwrap();
        std::fs::write(dir.join("other.idx"), b"NOTRCAP!").unwrap();
        let (listing, manifest) = list(&dir).unwrap();
        assert!(!listing.had_manifest);
        assert_eq!(listing.own, vec![dir.join("ringcap-1.pcap.zst")]);
        let mut foreign = listing.foreign.clone();
        foreign.sort();
        assert_eq!(foreign, vec![dir.join("evidence.pcap"), dir.join("other.pcap.zst")]);
        assert!(manifest.contains("ringcap-1.pcap.zst"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn with_a_manifest_only_listed_files_are_own_and_gone_names_are_dropped() {
        let dir = scratch("listed");
        let mut manifest = NameList::empty(&dir, &RING_MANIFEST);
        manifest.insert("a.pcap");
        manifest.insert("gone.pcap");
        manifest.save().unwrap();
        std::fs::write(dir.join("a.pcap"), b"x").unwrap();
        // Has a ringcap-looking index, but the manifest decides.
        std::fs::write(dir.join("b.pcap"), b"x").unwrap();
        std::fs::write(dir.join("b.idx"), INDEX_MAGIC).unwrap();
        let mut text = std::fs::read_to_string(dir.join(MANIFEST_NAME)).unwrap();
        text.push_str("../escape.pcap\nnot-a-capture.txt\n");
        std::fs::write(dir.join(MANIFEST_NAME), text).unwrap();
        let (listing, manifest) = list(&dir).unwrap();
        assert!(listing.had_manifest);
        assert_eq!(listing.own, vec![dir.join("a.pcap")]);
        assert_eq!(listing.foreign, vec![dir.join("b.pcap")]);
        assert!(!manifest.contains("gone.pcap"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_is_locked_once() {
        let dir = scratch("lock");
        let first = DirLock::acquire(&dir).unwrap();
        assert_eq!(DirLock::acquire(&dir).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(first);
        DirLock::acquire(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

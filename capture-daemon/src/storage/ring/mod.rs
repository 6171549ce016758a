//! The ring writer: a sink that keeps the last hours of traffic in rotated files within
//! a file count and disk budget ([`retention`]), and never leaves a partial frame behind a
//! good one.
mod assembly;
mod counters;
mod integrity;
mod retention;
mod snapshots;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::capture::{period_of, Batch};
use crate::output::{BatchLimits, Sink};
use crate::pcap::{self, RecordFormat};
use crate::records::StatsSnapshot;
use crate::storage::budget::{fs_space, DiskLimit};
use crate::storage::compress::{CompressPool, Compressed};
use crate::storage::frames::{duration_ns, DataFile, Encoded, FrameEncoder};
use crate::storage::index::{index_path, sidecars, snapshots_path, stats_path, FrameEntry, IndexWriter};
use crate::storage::manifest::{self, DirLock, NameList};
use crate::storage::naming::NameTemplate;
use crate::storage::nofollow::{self, Dir};
use crate::storage::summary::{summarize_frame, Summary};
use crate::storage::{Compression, StorageError};
use crate::timefmt::unix_now;
use assembly::{Collect, PendingFrame};
use counters::bump;
pub use counters::StorageCounters;
use retention::{ClosedFile, Removal, Retention};

/// How the ring is written and bounded.
#[derive(Clone, Debug)]
pub struct RingConfig {
    pub dir: PathBuf,
    pub template: NameTemplate,
    pub compression: Compression,
    pub snaplen: u32,
    /// Write pcapng with these interfaces (the batches must hold Enhanced Packet Blocks
    /// with these interface ids); classic pcap when `None`.
    pub pcapng_interfaces: Option<Vec<String>>,
    /// Start a new file for each period of this length (`-G`, aligned to the epoch): a
    /// file holds the packets stamped in its period (see [`Sink::period_started`]).
    pub rotate_every: Option<Duration>,
    /// Start a new file once the current one holds this many bytes (`-C`).
    pub rotate_bytes: Option<u64>,
    /// Keep at most this many files (`-W`).
    pub max_files: Option<usize>,
    /// Keep the ring's files under this size (`--max-disk`).
    pub max_disk: Option<DiskLimit>,
    /// Keep at least this much free space on the filesystem (`--min-free`).
    pub min_free: Option<DiskLimit>,
    /// A frame is written once it holds this many bytes...
    pub frame_bytes: usize,
    /// ...or once its first packet is this old.
    pub frame_age: Duration,
    /// fdatasync each frame, so a power cut loses at most the frame being written.
    pub sync: bool,
    /// Threads compressing frames beside the writer (`--compress-threads`; 0: the writer
    /// compresses them itself). Frames are stored in order whatever the number.
    pub compress_threads: usize,
    /// Called when a file closes; what it returns is stored beside the file as
    /// `STEM.stats.json`, so a pull can report the statistics of its window.
    pub snapshot: Option<SnapshotSource>,
    /// Bytes held beside the ring within the same --max-disk (pinned windows): the ring
    /// keeps itself under the budget less these.
    pub pinned_bytes: Option<Arc<AtomicU64>>,
}

impl RingConfig {
    /// The `--max-disk` budget on a filesystem of `fs_total` bytes, or why it cannot hold
    /// a ring. (Callers check it before making the directory, on the filesystem it will
    /// be on.)
    pub fn max_disk_bytes(&self, fs_total: u64) -> Result<Option<u64>, StorageError> {
        let Some(budget) = self.max_disk.map(|l| l.bytes(fs_total)) else { return Ok(None) };
        let floor = 4 * self.frame_bytes as u64;
        if budget < floor {
            return Err(StorageError::BadLimit(format!(
                "--max-disk of {budget} bytes is too small: the ring needs at least {floor} bytes"
            )));
        }
        Ok(Some(budget))
    }

    /// One file that grows until closed: no rotation, no removal, no snapshots, classic
    /// pcap at the full snaplen, 64 KiB frames sealed after a second, no fsync. The
    /// starting point of a pin's copy and of tests; `run` sets every field itself.
    pub fn single_file(dir: &Path, template: NameTemplate, compression: Compression) -> Self {
        RingConfig {
            dir: dir.to_path_buf(),
            template,
            compression,
            snaplen: pcap::DEFAULT_SNAPLEN,
            pcapng_interfaces: None,
            rotate_every: None,
            rotate_bytes: None,
            max_files: None,
            max_disk: None,
            min_free: None,
            frame_bytes: 64 << 10,
            frame_age: Duration::from_secs(1),
            sync: false,
            compress_threads: 0,
            snapshot: None,
            pinned_bytes: None,
        }
    }
}

/// Where the writer gets the statistics snapshots it stores beside each file.
#[derive(Clone)]
pub struct SnapshotSource(pub Arc<dyn Fn() -> StatsSnapshot + Send + Sync>);

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotSource")
    }
}

/// The file being written.
struct OpenFile {
    data: PathBuf,
    file: File,
    index: Option<IndexWriter>,
    /// Bytes of complete frames in the data file.
    offset: u64,
    /// Bytes of decoded content before the next frame.
    raw_offset: u64,
    frames: u64,
    /// Bytes of the index so far.
    index_bytes: u64,
    /// The snapshots appended while the file is written, and when the last one was.
    snapshots: Option<File>,
    snapshot_bytes: u64,
    last_snapshot: Option<Instant>,
    /// The kernel counters of the last snapshot: a tick adds one only when they moved.
    last_kernel: Option<std::collections::BTreeMap<String, u64>>,
    /// Just after ringcap last wrote or cut the data file: a modification time later than
    /// this is someone else's write.
    last_own_change: SystemTime,
}

pub struct RingWriter {
    config: RingConfig,
    counters: Arc<StorageCounters>,
    /// The closed files and what the ring may keep of them.
    retention: Retention,
    current: Option<OpenFile>,
    /// Compresses on the writer's thread: every frame without a pool, headers always.
    encoder: FrameEncoder,
    /// Compresses frames on other threads, when there are any.
    pool: Option<CompressPool<PendingFrame>>,
    pending: PendingFrame,
    rotate_bytes: Option<u64>,
    /// The last name's stem and suffix number: names made in the same second continue
    /// the sequence, so a name freed by removing an old file is never reused out of order.
    last_name: (String, u32),
    /// The -G period being written: the latest one a batch was stamped in or the reader
    /// said has begun.
    period: u64,
    /// When the writer was opened: the first file is named for it, in its period.
    opened: Duration,
    /// The files ringcap created here; only these are ever removed.
    manifest: NameList,
    /// Whether the first file was started: until then nothing in the directory is
    /// created, repaired or removed, so a start that fails (say, the interface is taken)
    /// leaves the ring as it was.
    started: bool,
    /// Capture files in the directory that ringcap did not write: left alone.
    foreign: Vec<PathBuf>,
    /// The manifest's size: ringcap's file, so part of the ring's disk use.
    manifest_bytes: u64,
    _lock: DirLock,
}

impl RingWriter {
    /// Opens the ring in `config.dir`: locks the directory and lists its files, changing
    /// nothing. The first file is started (and a torn file of the last run repaired, and the
    /// limits enforced) by the first write or tick, once capture is up.
    pub fn open(config: RingConfig, counters: Arc<StorageCounters>) -> Result<Self, StorageError> {
        let dir = config.dir.clone();
        let dir_error = |error| StorageError::Dir { dir: dir.clone(), error };
        std::fs::create_dir_all(&config.dir).map_err(dir_error)?;
        let lock = DirLock::acquire(&config.dir).map_err(|source| match source.kind() {
            io::ErrorKind::WouldBlock => StorageError::Busy { dir: dir.clone() },
            _ => dir_error(source),
        })?;
        let space = fs_space(&config.dir).map_err(dir_error)?;
        let max_disk_bytes = config.max_disk_bytes(space.total)?;
        let min_free_bytes = config.min_free.map(|l| l.bytes(space.total));
        // Keep several files within the budget, so removing the oldest frees room in steps.
        let rotate_bytes = match (config.rotate_bytes, max_disk_bytes) {
            (Some(c), Some(budget)) => Some(c.min(budget / 4)),
            (c, budget) => c.or(budget.map(|b| b / 4)),
        };
        let encoder = FrameEncoder::new(config.compression).map_err(dir_error)?;
        let pool = match config.compression {
            Compression::Zstd(level) if config.compress_threads > 0 => {
                let format = if config.pcapng_interfaces.is_some() {
                    RecordFormat::NATIVE_PCAPNG
                } else {
                    RecordFormat::NATIVE
                };
                Some(CompressPool::new(config.compress_threads, level, format).map_err(dir_error)?)
            }
            _ => None,
        };
        let (listing, manifest) = manifest::list(&config.dir).map_err(dir_error)?;
        let closed = listing.own.into_iter().map(|data| ClosedFile {
            bytes: file_len(&data) + file_len(&index_path(&data)) + file_len(&snapshots_path(&data)),
            data,
        });
        let retention = Retention::new(
            closed,
            config.max_files,
            max_disk_bytes,
            min_free_bytes,
            config.pinned_bytes.clone(),
        );
        let opened = unix_now();
        let period = config.rotate_every.map_or(0, |g| period_of(opened, g.as_secs()));
        Ok(RingWriter {
            retention,
            config,
            counters,
            current: None,
            encoder,
            pool,
            pending: PendingFrame::default(),
            rotate_bytes,
            last_name: (String::new(), 0),
            period,
            opened,
            manifest,
            started: false,
            foreign: listing.foreign,
            manifest_bytes: 0,
            _lock: lock,
        })
    }

    /// The file being written.
    pub fn current_path(&self) -> Option<&Path> {
        self.current.as_ref().map(|f| f.data.as_path())
    }

    /// Files adopted from an earlier run, oldest first.
    pub fn adopted(&self) -> impl Iterator<Item = &Path> {
        self.retention.files()
    }

    /// Gives ringcap's own files here (adopted data files, their indexes and statistics,
    /// the manifest and the archive's list) to the user the daemon is about to become
    /// (`-Z`), so that it can repair, extend and remove them. Foreign files are left as
    /// they are; so is anything that is not a regular file (a symlink planted in a file's
    /// place is neither followed nor handed over): the directory is walked by descriptor.
    pub fn hand_over(&self, uid: u32, gid: u32, extra: &[&str]) -> io::Result<()> {
        let dir = Dir::open(&self.config.dir)?;
        let own = self.retention.files().flat_map(|f| std::iter::once(f.to_path_buf()).chain(sidecars(f)));
        let names: Vec<String> =
            own.filter_map(|path| Some(path.file_name()?.to_str()?.to_string())).collect();
        for name in
            names.iter().map(String::as_str).chain([manifest::MANIFEST_NAME]).chain(extra.iter().copied())
        {
            dir.chown_file(name, uid, gid)?;
        }
        Ok(())
    }

    /// Capture files in the directory that ringcap did not write and will never touch.
    pub fn foreign_files(&self) -> &[PathBuf] {
        &self.foreign
    }

    /// Saves the manifest, counting a failure (the next change retries).
    fn save_manifest(&mut self) -> io::Result<()> {
        let len = self.manifest.save().inspect_err(|_| bump(&self.counters.manifest_errors, 1))?;
        self.manifest_bytes = len;
        Ok(())
    }

    /// Creates the next file, named for Unix time `name_time`, and writes its first frame:
    /// the pcap file header.
    fn start_file(&mut self, name_time: Duration) -> io::Result<()> {
        if !self.started {
            self.repair_newest()?;
            self.started = true;
        }
        let stem = self.config.template.render(name_time);
        let extension = self.config.compression.extension(self.config.pcapng_interfaces.is_some());
        let mut n = if self.last_name.0 == stem { self.last_name.1 + 1 } else { 0 };
        let (data, file) = loop {
            let data = match n {
                0 => self.config.dir.join(format!("{stem}{extension}")),
                // `_NNN` sorts after the plain name and in order, so names sort like creation.
                n => self.config.dir.join(format!("{stem}_{n:03}{extension}")),
            };
            n += 1;
            if index_path(&data).exists() || data.exists() {
                continue;
            }
            // Listed before it exists: a crash right after creation leaves no unlisted file.
            let name = data.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            self.manifest.insert(&name);
            if let Err(e) = self.save_manifest() {
                self.manifest.remove(&name);
                return Err(e);
            }
            match OpenOptions::new().write(true).create_new(true).open(&data) {
                Ok(file) => break (data, file),
                Err(e) => {
                    self.manifest.remove(&name);
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        let _ = self.save_manifest();
                        return Err(e);
                    }
                }
            }
        };
        let n = n - 1;
        self.last_name = (stem, n);
        let index = IndexWriter::create(&index_path(&data))
            .inspect_err(|_| bump(&self.counters.index_errors, 1))
            .ok();
        bump(&self.counters.files_created, 1);
        self.current = Some(OpenFile {
            data,
            file,
            index,
            offset: 0,
            raw_offset: 0,
            frames: 0,
            index_bytes: 8,
            snapshots: None,
            snapshot_bytes: 0,
            last_snapshot: None,
            last_kernel: None,
            last_own_change: SystemTime::now(),
        });
        // The header leads the file: nothing kept from a time without a file goes before it.
        self.drop_pending();
        write_file_header(&self.config, &mut self.pending.content)?;
        self.pending.header = true;
        self.write_frame();
        Ok(())
    }

    /// Closes the current file and starts the next one, named for Unix time `name_time`.
    fn rotate(&mut self, name_time: Duration) -> io::Result<()> {
        self.write_frame();
        self.collect(Collect::All);
        if let Some(current) = self.current.take() {
            let _ = current.file.sync_all();
            if let Some(index) = &current.index {
                let _ = index.sync();
            }
            self.write_snapshot(&current.data);
            let bytes = current.offset + file_len(&index_path(&current.data)) + current.snapshot_bytes;
            self.retention.push(ClosedFile { data: current.data, bytes });
        }
        match self.start_file(name_time) {
            // A full disk (or no inode left) when a file starts: the oldest files make room,
            // as for a frame that does not fit.
            Err(e) if is_disk_full(&e) && !self.retention.is_empty() => {
                bump(&self.counters.disk_full_events, 1);
                self.free_space_for(self.config.frame_bytes as u64);
                self.start_file(name_time)?;
            }
            other => other?,
        }
        self.enforce_limits();
        Ok(())
    }

    /// Moves on to -G period `period` if it is later than the one being written, or more
    /// than one period earlier (the clock was set back: the files follow it); its file is
    /// named for the period's start. A batch of the period just before is late (counted by
    /// the reader) and goes into the file being written. (Without -G every period is 0.)
    fn enter_period(&mut self, period: u64) {
        let set_back = period.saturating_add(1) < self.period;
        if period > self.period || set_back {
            self.period = period;
            let seconds = self.config.rotate_every.map_or(0, |g| g.as_secs().max(1));
            self.rotate_named_counting_errors(Duration::from_secs(period * seconds));
        }
    }

    /// Starts a file if there is none (the first one, or one that could not be made).
    fn ensure_file(&mut self) {
        if self.current.is_none() {
            let name_time = if self.started { unix_now() } else { self.opened };
            self.rotate_named_counting_errors(name_time);
        }
    }

    /// Rotates now (SIGHUP, -C, a file lost): the next file is named for now.
    fn rotate_counting_errors(&mut self) {
        self.rotate_named_counting_errors(unix_now());
    }

    fn rotate_named_counting_errors(&mut self, name_time: Duration) {
        if self.rotate(name_time).is_err() {
            // No new file could be made (disk full, directory gone): count it and retry on
            // the next tick; packets arriving meanwhile are counted as lost by write_frame.
            bump(&self.counters.write_errors, 1);
        }
    }

    /// Removes the oldest files until -W, --max-disk and --min-free hold (the current
    /// file is never removed).
    fn enforce_limits(&mut self) {
        let dir = self.config.dir.clone();
        while let Some(why) = self.retention.next_removal(self.own_bytes(), || available(&dir)) {
            self.remove_oldest(why);
        }
    }

    /// Makes room for `needed` bytes after a disk-full error: the oldest file goes
    /// whatever the free space reads (the write failed), and more until it fits.
    fn free_space_for(&mut self, needed: u64) {
        let dir = self.config.dir.clone();
        loop {
            self.remove_oldest(Removal::Space);
            if !self.retention.needs_room(needed, || available(&dir)) {
                break;
            }
        }
    }

    /// The ring's bytes besides its closed files: the file being written and the manifest.
    fn own_bytes(&self) -> u64 {
        let current = self.current.as_ref().map_or(0, |c| c.offset + c.index_bytes + c.snapshot_bytes);
        current + self.manifest_bytes
    }

    /// Removes the oldest of the ring's own files (foreign files are never in the ring).
    fn remove_oldest(&mut self, why: Removal) {
        let Some(oldest) = self.retention.take_oldest() else { return };
        let _ = std::fs::remove_file(&oldest.data);
        for sidecar in sidecars(&oldest.data) {
            let _ = std::fs::remove_file(sidecar);
        }
        if let Some(name) = oldest.data.file_name().and_then(|n| n.to_str()) {
            self.manifest.remove(name);
            let _ = self.save_manifest();
        }
        bump(
            match why {
                Removal::Limit => &self.counters.files_removed,
                Removal::Space => &self.counters.files_removed_for_space,
            },
            1,
        );
    }
}

/// The free bytes of the filesystem of `dir`, if it can be read.
fn available(dir: &Path) -> Option<u64> {
    fs_space(dir).ok().map(|s| s.available)
}

impl Sink for RingWriter {
    /// The reader cuts batches as the frames are cut, so that each batch becomes a frame
    /// as it is: its bytes are compressed or written where the reader put them.
    fn batch_limits(&self) -> Option<BatchLimits> {
        Some(BatchLimits {
            bytes: self.config.frame_bytes,
            age: self.config.frame_age,
            period: self.config.rotate_every.map(|g| g.as_secs().max(1)),
        })
    }

    fn write(&mut self, batch: &mut Batch) -> io::Result<()> {
        self.check_dir()?;
        // A batch holds the records of one period. One of a period already over (stamped
        // before the reader said the next began, and read after: counted by the reader as
        // out of time order) goes into the file being written.
        if let Some(g) = self.config.rotate_every {
            self.enter_period(period_of(Duration::from_nanos(batch.earliest_ns), g.as_secs()));
        }
        self.ensure_file();
        if self.current.is_some() && self.pending.content.is_empty() {
            // The batch becomes the pending frame: its buffer is taken, not copied.
            std::mem::swap(&mut self.pending.content, &mut batch.records);
            self.pending.packets = batch.packets;
            self.pending.earliest_ns = batch.earliest_ns;
            self.pending.latest_ns = batch.latest_ns;
            self.pending.started = Some(batch.started);
            self.seal_if_due();
        } else {
            self.append(&batch.records);
        }
        Ok(())
    }

    fn tick(&mut self) -> io::Result<()> {
        self.check_dir()?;
        self.ensure_file();
        let frames = self.counters.frames_written.load(Ordering::Relaxed);
        if self.pending.started.is_some_and(|s| s.elapsed() >= self.config.frame_age) {
            self.write_frame();
        }
        self.collect(Collect::Ready);
        self.append_snapshot(true);
        // Only a frame stored (here, or handed back by the compression threads) grows the ring.
        if self.counters.frames_written.load(Ordering::Relaxed) != frames {
            self.enforce_limits();
        }
        Ok(())
    }

    /// SIGHUP: a file that cannot be created now is counted and retried on the next
    /// tick; capture goes on.
    fn rotate(&mut self) -> io::Result<()> {
        self.check_dir()?;
        self.rotate_counting_errors();
        Ok(())
    }

    /// The next -G period's file starts once the reader has delivered every record of the
    /// periods before it, so a quiet link rotates too and no record lands a file late.
    fn period_started(&mut self, period: u64) -> io::Result<()> {
        self.check_dir()?;
        self.enter_period(period);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.write_frame();
        self.collect(Collect::All);
        self.enforce_limits();
        if let Some(current) = &self.current {
            self.write_snapshot(&current.data);
            current.file.sync_all()?;
            if let Some(index) = &current.index {
                index.sync()?;
            }
        }
        Ok(())
    }
}

/// Appends the file header (pcap, or pcapng's section and interface blocks) to `content`.
fn write_file_header(config: &RingConfig, content: &mut Vec<u8>) -> io::Result<()> {
    match &config.pcapng_interfaces {
        None => pcap::write_file_header(content, config.snaplen),
        Some(names) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            pcap::write_pcapng_header(content, config.snaplen, &names)
        }
    }
}

fn is_disk_full(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

impl RingWriter {
    fn record_format(&self) -> RecordFormat {
        if self.config.pcapng_interfaces.is_some() {
            RecordFormat::NATIVE_PCAPNG
        } else {
            RecordFormat::NATIVE
        }
    }
}

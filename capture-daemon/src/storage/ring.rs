//! The ring writer: a sink that keeps the last hours of traffic in rotated files within
//! a file count and disk budget, and never leaves a partial frame behind a good one.
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::budget::{fs_space, DiskLimit};
use super::compress::{CompressPool, Compressed};
use super::frames::{duration_ns, DataFile, Encoded, FrameEncoder};
use super::index::{index_path, sidecars, snapshots_path, stats_path, FrameEntry, IndexWriter};
use super::manifest::{self, DirLock, NameList};
use super::naming::NameTemplate;
use super::nofollow::{self, Dir};
use super::summary::{summarize, Summary};
use super::{Compression, StorageError};
use crate::capture::{period_of, Batch};
use crate::output::{BatchLimits, Sink};
use crate::pcap::{self, RecordFormat};
use crate::records::{StatsSnapshot, StorageTotals};
use crate::timefmt::unix_now;

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

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A closed file of the ring and the bytes it occupies (data and index).
struct ClosedFile {
    data: PathBuf,
    bytes: u64,
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

/// The frame being filled.
#[derive(Default)]
struct PendingFrame {
    content: Vec<u8>,
    packets: u64,
    /// The earliest and latest packet times: the reader may write a late record after
    /// later ones, and a pull must not skip a frame that holds it.
    earliest_ns: u64,
    latest_ns: u64,
    started: Option<Instant>,
    /// The frame is the file header (it must lead the file).
    header: bool,
    /// What occurs in the frame, for filtered pulls (see `storage::summary`).
    summary: Option<Summary>,
}

impl PendingFrame {
    fn add_packet(&mut self, timestamp_ns: u64) {
        if self.packets == 0 {
            self.earliest_ns = timestamp_ns;
            self.latest_ns = timestamp_ns;
            self.started = Some(Instant::now());
        }
        self.earliest_ns = self.earliest_ns.min(timestamp_ns);
        self.latest_ns = self.latest_ns.max(timestamp_ns);
        self.packets += 1;
    }
}

pub struct RingWriter {
    config: RingConfig,
    counters: Arc<StorageCounters>,
    closed: VecDeque<ClosedFile>,
    current: Option<OpenFile>,
    /// Compresses on the writer's thread: every frame without a pool, headers always.
    encoder: FrameEncoder,
    /// Compresses frames on other threads, when there are any.
    pool: Option<CompressPool<PendingFrame>>,
    pending: PendingFrame,
    max_disk_bytes: Option<u64>,
    min_free_bytes: Option<u64>,
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
        let dir_error = |source| StorageError::Dir { dir: dir.clone(), source };
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
        let closed = listing
            .own
            .into_iter()
            .map(|data| ClosedFile {
                bytes: file_len(&data) + file_len(&index_path(&data)) + file_len(&snapshots_path(&data)),
                data,
            })
            .collect();
        let opened = unix_now();
        let period = config.rotate_every.map_or(0, |g| period_of(opened, g.as_secs()));
        Ok(RingWriter {
            closed,
            config,
            counters,
            current: None,
            encoder,
            pool,
            pending: PendingFrame::default(),
            max_disk_bytes,
            min_free_bytes,
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
        self.closed.iter().map(|f| f.data.as_path())
    }

    /// Gives ringcap's own files here (adopted data files, their indexes and statistics,
    /// the manifest and the archive's list) to the user the daemon is about to become
    /// (`-Z`), so that it can repair, extend and remove them. Foreign files are left as
    /// they are; so is anything that is not a regular file (a symlink planted in a file's
    /// place is neither followed nor handed over): the directory is walked by descriptor.
    pub fn hand_over(&self, uid: u32, gid: u32, extra: &[&str]) -> io::Result<()> {
        let dir = Dir::open(&self.config.dir)?;
        let own = self.closed.iter().flat_map(|f| std::iter::once(f.data.clone()).chain(sidecars(&f.data)));
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

    /// Seals the pending frame (if it holds anything) for the current file: compressed here
    /// and stored, or given to the compression threads and stored once they hand it back,
    /// in order. Without a current file (it could not be created) the frame's packets are
    /// counted as lost.
    fn write_frame(&mut self) {
        if self.current.is_none() {
            self.drop_pending();
            return;
        }
        if self.pending.content.is_empty() {
            return;
        }
        let mut frame = std::mem::take(&mut self.pending);
        if frame.header || self.pool.is_none() {
            // A header is a few bytes: not worth a trip to another thread, but it must
            // not overtake the frames given before it.
            self.collect(Collect::All);
            if !frame.header {
                frame.summary = summarize(self.record_format(), &frame.content);
            }
            let encoded = self.encoder.encode(&frame.content);
            self.store(frame, encoded);
            return;
        }
        self.collect(Collect::Room);
        let content = std::mem::take(&mut frame.content);
        self.pool.as_mut().expect("checked above").submit(content, frame);
        self.collect(Collect::Ready);
    }

    /// Stores the frames the compression threads have handed back, in order.
    fn collect(&mut self, how: Collect) {
        loop {
            let Some(pool) = self.pool.as_mut() else { return };
            let wait = match how {
                Collect::Ready => false,
                Collect::Room => !pool.has_room(),
                Collect::All => !pool.is_empty(),
            };
            let Some(Compressed { content, along: mut frame, bytes, summary }) = pool.next(wait) else {
                return;
            };
            frame.content = content;
            frame.summary = summary;
            self.store(frame, bytes.map(Encoded::Zstd));
        }
    }

    /// Appends an encoded frame to the current file, fdatasyncs it and indexes it; on
    /// a full disk, removes the oldest files and tries once more. A frame that cannot be
    /// stored is counted as lost and cut off, so the file ends at a frame boundary.
    fn store(&mut self, frame: PendingFrame, encoded: io::Result<Encoded>) {
        let Some(current) = self.current.as_ref() else {
            bump(&self.counters.packets_lost, frame.packets);
            return;
        };
        if current.raw_offset == 0 && !frame.header {
            // The file's header frame was lost: it goes first, again.
            let mut header = PendingFrame { header: true, ..PendingFrame::default() };
            if write_file_header(&self.config, &mut header.content).is_ok() {
                let encoded = self.encoder.encode(&header.content);
                self.store(header, encoded);
            }
            if self.current.as_ref().is_some_and(|c| c.raw_offset == 0) {
                bump(&self.counters.write_errors, 1);
                bump(&self.counters.packets_lost, frame.packets);
                self.keep_buffer(frame);
                return;
            }
        }
        let current = self.current.as_mut().expect("checked above");
        let write = |current: &mut OpenFile, encoded: &io::Result<Encoded>| match encoded {
            Ok(encoded) => {
                let bytes = encoded.bytes(&frame.content);
                current.file.write_all_at(bytes, current.offset).map(|()| bytes.len() as u64)
            }
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let mut written = write(current, &encoded);
        if matches!(&written, Err(e) if is_disk_full(e)) {
            bump(&self.counters.disk_full_events, 1);
            let _ = current.file.set_len(current.offset);
            self.free_space_for(frame.content.len() as u64);
            written = write(self.current.as_mut().expect("checked above"), &encoded);
        }
        let current = self.current.as_mut().expect("checked above");
        match written {
            Ok(len) => {
                let entry = FrameEntry {
                    offset: current.offset,
                    len,
                    raw_offset: current.raw_offset,
                    raw_len: frame.content.len() as u32,
                    packets: frame.packets as u32,
                    earliest_ns: frame.earliest_ns,
                    latest_ns: frame.latest_ns,
                };
                if self.config.sync && current.file.sync_data().is_err() {
                    // After a failed fsync the kernel may have dropped the frame's pages
                    // while reporting them clean: the frame is not trusted as written.
                    bump(&self.counters.sync_errors, 1);
                    self.frame_lost(&frame);
                    self.keep_buffer(frame);
                    return;
                }
                if let Some(index) = current.index.as_mut() {
                    match index.append(&entry, frame.summary.as_ref()) {
                        Ok(bytes) => current.index_bytes += bytes,
                        Err(_) => {
                            bump(&self.counters.index_errors, 1);
                            current.index = None;
                        }
                    }
                }
                current.offset += len;
                current.raw_offset += u64::from(entry.raw_len);
                current.frames += 1;
                bump(&self.counters.frames_written, 1);
                bump(&self.counters.bytes_written, len);
                bump(&self.counters.packets_written, frame.packets);
                self.append_snapshot(false);
            }
            Err(_) => self.frame_lost(&frame),
        }
        if let Some(current) = self.current.as_mut() {
            current.last_own_change = SystemTime::now();
        }
        self.keep_buffer(frame);
    }

    /// Why the file being written is no longer the one in the directory, if it is not:
    /// unlinked, replaced (another file under its name), truncated below what was written,
    /// or written by someone else (longer than ringcap made it, or modified after).
    fn current_file_lost(&self) -> Option<Lost> {
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
    fn abandon_current(&mut self, why: Lost) {
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
            self.closed.push_back(ClosedFile { data: current.data, bytes });
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

    /// Appends the daemon's counters to the current file's snapshots, at most once per
    /// frame interval: after a frame is stored, and on ticks while the counters move
    /// without frames (their last change lands too). Best effort: a pull without them
    /// covers whole files instead.
    fn append_snapshot(&mut self, only_if_changed: bool) {
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

    /// Counts a frame that could not be stored and cuts off whatever part of it made it,
    /// so the file ends at a frame boundary. (A lost header is written again before the
    /// next frame, see [`Self::store`].)
    fn frame_lost(&mut self, frame: &PendingFrame) {
        let current = self.current.as_mut().expect("a frame is written to a file");
        let _ = current.file.set_len(current.offset);
        current.last_own_change = SystemTime::now();
        bump(&self.counters.write_errors, 1);
        bump(&self.counters.packets_lost, frame.packets);
    }

    /// Counts the pending packets as lost when no file could be created to hold them.
    fn drop_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if pending.packets > 0 {
            bump(&self.counters.packets_lost, pending.packets);
        }
        self.keep_buffer(pending);
    }

    /// Reuses a written frame's allocation for the pending frame, if that has none yet.
    fn keep_buffer(&mut self, frame: PendingFrame) {
        if self.pending.content.capacity() == 0 {
            let mut buffer = frame.content;
            buffer.clear();
            self.pending.content = buffer;
        }
    }

    /// Stores the statistics snapshot of a file that is closing.
    fn write_snapshot(&self, data: &Path) {
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
            self.closed.push_back(ClosedFile { data: current.data, bytes });
        }
        match self.start_file(name_time) {
            // A full disk (or no inode left) when a file starts: the oldest files make room,
            // as for a frame that does not fit.
            Err(e) if is_disk_full(&e) && !self.closed.is_empty() => {
                bump(&self.counters.disk_full_events, 1);
                self.free_space_for(self.config.frame_bytes as u64);
                self.start_file(name_time)?;
            }
            other => other?,
        }
        self.enforce_limits();
        Ok(())
    }

    /// Checks, before each batch and tick, that the file being written is still the one in
    /// the directory (or starts another), and fails once the ring's directory was removed:
    /// nothing written from then on would land anywhere, so the daemon stops (non-zero)
    /// and a restart makes the directory again.
    fn check_dir(&mut self) -> io::Result<()> {
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

    /// Moves on to -G period `period` if it is later than the one being written: its file
    /// is named for the period's start. (Without -G every period is 0.)
    fn enter_period(&mut self, period: u64) {
        if period > self.period {
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
        while self.config.max_files.is_some_and(|max| self.closed.len() + 1 > max) {
            self.remove_oldest(false);
        }
        if let Some(budget) = self.max_disk_bytes {
            while self.ring_bytes() > budget && !self.closed.is_empty() {
                self.remove_oldest(false);
            }
        }
        if let Some(floor) = self.min_free_bytes {
            while !self.closed.is_empty() && fs_space(&self.config.dir).is_ok_and(|s| s.available < floor) {
                self.remove_oldest(true);
            }
        }
    }

    /// Makes room for `needed` bytes after a disk-full error.
    fn free_space_for(&mut self, needed: u64) {
        let floor = needed + self.min_free_bytes.unwrap_or(0);
        while !self.closed.is_empty() {
            self.remove_oldest(true);
            if fs_space(&self.config.dir).is_ok_and(|s| s.available >= floor) {
                break;
            }
        }
    }

    fn ring_bytes(&self) -> u64 {
        let current = self.current.as_ref().map_or(0, |c| c.offset + c.index_bytes + c.snapshot_bytes);
        let pinned = self.config.pinned_bytes.as_ref().map_or(0, |p| p.load(Ordering::Relaxed));
        self.closed.iter().map(|f| f.bytes).sum::<u64>() + current + self.manifest_bytes + pinned
    }

    /// Removes the oldest of the ring's own files (foreign files are never in `closed`).
    fn remove_oldest(&mut self, for_space: bool) {
        let Some(oldest) = self.closed.pop_front() else { return };
        let _ = std::fs::remove_file(&oldest.data);
        for sidecar in sidecars(&oldest.data) {
            let _ = std::fs::remove_file(sidecar);
        }
        if let Some(name) = oldest.data.file_name().and_then(|n| n.to_str()) {
            self.manifest.remove(name);
            let _ = self.save_manifest();
        }
        bump(
            if for_space { &self.counters.files_removed_for_space } else { &self.counters.files_removed },
            1,
        );
    }
}

impl RingWriter {
    /// Appends pcap records to the pending frame, cut at record boundaries so that frames
    /// stay close to --frame-bytes (a copy: used only when a batch cannot be the frame).
    fn append(&mut self, mut rest: &[u8]) {
        while !rest.is_empty() {
            if self.current.is_none() {
                // No file could be created: these packets have nowhere to go.
                bump(&self.counters.packets_lost, self.record_format().records(rest).count() as u64);
                break;
            }
            let room = self.config.frame_bytes.saturating_sub(self.pending.content.len());
            let mut take = 0;
            let mut records = self.record_format().records(rest);
            for record in records.by_ref() {
                let Ok(record) = record else {
                    take = rest.len();
                    break;
                };
                if take > 0 && take + record.raw.len() > room {
                    break;
                }
                take += record.raw.len();
                self.pending.add_packet(duration_ns(record.timestamp));
            }
            self.pending.content.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            self.seal_if_due();
        }
    }

    /// Writes the pending frame once it is full or old enough, then rotates on -C and
    /// enforces the limits.
    fn seal_if_due(&mut self) {
        let full = self.pending.content.len() >= self.config.frame_bytes;
        let old = self.pending.started.is_some_and(|s| s.elapsed() >= self.config.frame_age);
        if !(full || old) {
            return;
        }
        self.write_frame();
        if let (Some(limit), Some(current)) = (self.rotate_bytes, &self.current) {
            if current.offset >= limit {
                self.rotate_counting_errors();
            }
        }
        self.enforce_limits();
    }
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

/// How the file being written was lost (see [`RingWriter::abandon_current`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lost {
    Removed,
    Replaced,
    Truncated,
    Overwritten,
}

impl Lost {
    fn as_str(self) -> &'static str {
        match self {
            Lost::Removed => "removed",
            Lost::Replaced => "replaced",
            Lost::Truncated => "truncated",
            Lost::Overwritten => "overwritten",
        }
    }
}

/// How many of the compressed frames [`RingWriter::collect`] waits for.
#[derive(Clone, Copy)]
enum Collect {
    /// None: only those already done.
    Ready,
    /// Until another frame may be given.
    Room,
    /// Every one.
    All,
}

fn is_disk_full(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The largest a file's header frame can be: a torn newest file this short holds nothing.
const HEADER_FRAME_MAX: u64 = 1024;

impl RingWriter {
    fn record_format(&self) -> RecordFormat {
        if self.config.pcapng_interfaces.is_some() {
            RecordFormat::NATIVE_PCAPNG
        } else {
            RecordFormat::NATIVE
        }
    }

    /// The newest adopted file may have been cut short by a crash: its torn last frame is
    /// cut off so every tool reads it cleanly, or, killed between creating the file and
    /// finishing its header frame (at most a kilobyte even for pcapng with many
    /// interfaces), it holds no packet and is removed. Also writes the manifest, which an
    /// older ring did not have.
    fn repair_newest(&mut self) -> io::Result<()> {
        if let Some(newest) = self.closed.back().map(|f| f.data.clone()) {
            match DataFile::open(&newest) {
                Ok(file) if file.damaged_tail > 0 => {
                    OpenOptions::new().write(true).open(&newest)?.set_len(file.complete_len())?;
                    bump(&self.counters.files_repaired, 1);
                }
                Ok(_) => {}
                Err(_) if file_len(&newest) < HEADER_FRAME_MAX => {
                    self.closed.pop_back();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::write_record;

    fn config(dir: &Path, compression: Compression) -> RingConfig {
        RingConfig {
            snaplen: 2000,
            frame_age: Duration::from_secs(60),
            ..RingConfig::single_file(dir, NameTemplate::parse("t-%s").unwrap(), compression)
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringcap-ring-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A batch of 100-byte packets stamped at these nanoseconds.
    fn batch(times_ns: &[u64]) -> Batch {
        let mut batch = Batch::empty(Vec::new());
        for (i, &ns) in times_ns.iter().enumerate() {
            write_record(&mut batch.records, Duration::from_nanos(ns), 100, &[i as u8; 100], 2000).unwrap();
            batch.count(ns);
        }
        batch
    }

    #[test]
    fn the_index_keeps_the_earliest_and_latest_time_of_a_frame() {
        let dir = scratch("earliest");
        let mut ring = RingWriter::open(config(&dir, Compression::Zstd(1)), Arc::default()).unwrap();
        assert!(ring.current_path().is_none(), "nothing is created before the first write");
        // A late record (the reader writes those) after later ones.
        ring.write(&mut batch(&[5_000, 9_000, 2_000, 7_000])).unwrap();
        ring.finish().unwrap();
        let file = DataFile::open(ring.current_path().unwrap()).unwrap();
        let packet_frame = file.frames.iter().find(|f| f.packets > 0).unwrap();
        assert_eq!((packet_frame.earliest_ns, packet_frame.latest_ns), (2_000, 9_000));
        assert_eq!(file.time_range(), Some((2_000, 9_000)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A batch cut as the reader cuts them (at --frame-bytes) is stored as one frame with
    /// the bytes the reader wrote: the writer takes its buffer instead of copying it.
    #[test]
    fn a_batch_becomes_its_frame_without_a_copy() {
        let dir = scratch("one-copy");
        let config = RingConfig { frame_bytes: 4096, ..config(&dir, Compression::None) };
        let mut ring = RingWriter::open(config, Arc::default()).unwrap();
        let mut frame = batch(&(1..=40).collect::<Vec<_>>());
        assert!(frame.records.len() >= 4096);
        let (content, reader_buffer) = (frame.records.clone(), frame.records.as_ptr());
        ring.write(&mut frame).unwrap();
        assert_ne!(frame.records.as_ptr(), reader_buffer, "the writer took the reader's buffer");
        ring.finish().unwrap();
        let file = DataFile::open(ring.current_path().unwrap()).unwrap();
        let stored: Vec<_> = file.frames.iter().filter(|f| f.packets > 0).collect();
        assert_eq!(stored.len(), 1, "one batch, one frame");
        assert_eq!((stored[0].packets, stored[0].raw_len as usize), (40, content.len()));
        let bytes = std::fs::read(ring.current_path().unwrap()).unwrap();
        assert_eq!(&bytes[stored[0].offset as usize..], &content[..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Frames compressed on a pool of threads are stored in order: the data file and its
    /// index are byte for byte what the writer makes compressing them itself.
    #[test]
    fn frames_compressed_on_threads_are_stored_in_order() {
        let mut outputs = Vec::new();
        for threads in [0, 1, 3] {
            let dir = scratch(&format!("pool-{threads}"));
            let config = RingConfig {
                frame_bytes: 4096,
                compress_threads: threads,
                ..config(&dir, Compression::Zstd(1))
            };
            let counters = Arc::new(StorageCounters::default());
            let mut ring = RingWriter::open(config, Arc::clone(&counters)).unwrap();
            for b in 0..50u64 {
                ring.write(&mut batch(&(0..40).map(|i| 1_000 + b * 40 + i).collect::<Vec<_>>())).unwrap();
                ring.tick().unwrap();
            }
            ring.finish().unwrap();
            let data = ring.current_path().unwrap().to_path_buf();
            let file = DataFile::open(&data).unwrap();
            assert_eq!(file.recovered_frames, 0, "every frame is indexed");
            assert!(file.frames.len() > 50, "{} frames", file.frames.len());
            let times: Vec<u64> =
                file.frames.iter().flat_map(|f| [f.earliest_ns, f.latest_ns]).filter(|&t| t > 0).collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "frames in time order");
            assert_eq!(counters.packets_written.load(Ordering::Relaxed), 2000);
            assert_eq!(counters.packets_lost.load(Ordering::Relaxed), 0);
            outputs.push((std::fs::read(&data).unwrap(), std::fs::read(index_path(&data)).unwrap()));
            drop(ring);
            std::fs::remove_dir_all(&dir).unwrap();
        }
        assert!(outputs.windows(2).all(|w| w[0] == w[1]), "the same bytes whatever the threads");
    }

    #[test]
    fn a_file_without_its_index_is_scanned_in_windows_and_read_whole() {
        for compression in [Compression::None, Compression::Zstd(1)] {
            let dir = scratch(&format!("scan-{compression:?}"));
            let mut ring = RingWriter::open(config(&dir, compression), Arc::default()).unwrap();
            // About 12 MiB of records: several scan windows.
            let times: Vec<u64> = (0..110_000).collect();
            for chunk in times.chunks(1000) {
                ring.write(&mut batch(chunk)).unwrap();
            }
            ring.finish().unwrap();
            let data = ring.current_path().unwrap().to_path_buf();
            let indexed = DataFile::open(&data).unwrap();
            std::fs::remove_file(index_path(&data)).unwrap();
            let scanned = DataFile::open(&data).unwrap();
            assert!(scanned.index_problem.is_some());
            assert_eq!(scanned.damaged_bytes, 0, "{compression:?}");
            let packets = |file: &DataFile| file.frames.iter().map(|f| u64::from(f.packets)).sum::<u64>();
            assert_eq!(packets(&scanned), 110_000, "{compression:?}");
            assert_eq!(packets(&indexed), 110_000);
            assert_eq!(scanned.complete_len(), std::fs::metadata(&data).unwrap().len());
            assert!(scanned.frames.iter().all(|f| f.raw_len as u64 <= (4 << 20)));
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn without_a_file_packets_are_counted_lost_and_the_header_still_leads_the_next_file() {
        let dir = scratch("no-file");
        let counters = Arc::new(StorageCounters::default());
        let mut ring = RingWriter::open(config(&dir, Compression::None), Arc::clone(&counters)).unwrap();
        ring.write(&mut batch(&[1, 2, 3])).unwrap();
        let first = ring.current_path().unwrap().to_path_buf();
        // No file can be started now: the manifest (listed before a file is made) cannot
        // be saved, its temporary name taken by a directory that is not empty.
        let blocker = dir.join(format!(".{}.tmp", manifest::MANIFEST_NAME));
        std::fs::create_dir_all(blocker.join("x")).unwrap();
        Sink::rotate(&mut ring).unwrap();
        assert!(ring.current_path().is_none());
        ring.write(&mut batch(&[4, 5])).unwrap();
        ring.tick().unwrap();
        assert_eq!(counters.packets_lost.load(Ordering::Relaxed), 2);
        std::fs::remove_dir_all(&blocker).unwrap();
        ring.write(&mut batch(&[6, 7, 8, 9])).unwrap();
        ring.finish().unwrap();
        let next = ring.current_path().unwrap().to_path_buf();
        assert_ne!(first, next);
        assert_eq!(records_in(&next), 4, "the header leads the next file, then its packets");
        // written + lost = every packet given to the ring
        let written = counters.packets_written.load(Ordering::Relaxed);
        assert_eq!(written + counters.packets_lost.load(Ordering::Relaxed), 9);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The packet records of an uncompressed ring file, behind its header.
    fn records_in(data: &Path) -> usize {
        let bytes = std::fs::read(data).unwrap();
        let format = RecordFormat::from_file_header(&bytes).expect("the file starts with its header");
        format.records(&bytes[format.header_len..]).count()
    }

    #[test]
    fn a_file_removed_replaced_truncated_or_overwritten_by_someone_else_is_counted_and_another_started() {
        let dir = scratch("lost-file");
        let counters = Arc::new(StorageCounters::default());
        let mut ring = RingWriter::open(config(&dir, Compression::None), Arc::clone(&counters)).unwrap();
        let name = |path: &Path| path.file_name().unwrap().to_str().unwrap().to_string();
        let listed = |dir: &Path| std::fs::read_to_string(dir.join(manifest::MANIFEST_NAME)).unwrap();
        let mut given = 0;
        let mut give = |ring: &mut RingWriter, times: &[u64]| {
            given += times.len() as u64;
            ring.write(&mut batch(times)).unwrap();
            ring.tick().unwrap();
        };
        give(&mut ring, &[1, 2]);
        let removed = ring.current_path().unwrap().to_path_buf();
        std::fs::remove_file(&removed).unwrap();
        give(&mut ring, &[3, 4, 5]);
        let replaced = ring.current_path().unwrap().to_path_buf();
        assert_ne!(replaced, removed);
        assert!(!listed(&dir).contains(&name(&removed)), "a removed file's name leaves the manifest");
        assert_eq!(counters.files_lost.load(Ordering::Relaxed), 1);
        // Someone else's file under the name: never taken for ringcap's, never removed.
        ring.finish().unwrap();
        std::fs::rename(&replaced, dir.join("aside")).unwrap();
        std::fs::write(&replaced, b"not ringcap's").unwrap();
        give(&mut ring, &[6]);
        assert_eq!(counters.files_lost.load(Ordering::Relaxed), 2);
        assert!(!listed(&dir).contains(&name(&replaced)));
        assert_eq!(std::fs::read(&replaced).unwrap(), b"not ringcap's");
        ring.finish().unwrap();
        let truncated = ring.current_path().unwrap().to_path_buf();
        std::fs::OpenOptions::new().write(true).open(&truncated).unwrap().set_len(10).unwrap();
        give(&mut ring, &[7, 8, 9, 10]);
        assert_eq!(counters.files_lost.load(Ordering::Relaxed), 3);
        assert!(listed(&dir).contains(&name(&truncated)), "a truncated file is still ringcap's");
        ring.finish().unwrap();
        let last = ring.current_path().unwrap().to_path_buf();
        assert_eq!(records_in(&last), 4, "the packets after a loss land in a new file, behind its header");
        // Written over in place, its length unchanged (as `cp` of a file of that size):
        // told by its modification time.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::OpenOptions::new().write(true).open(&last).unwrap().write_all_at(b"theirs", 0).unwrap();
        give(&mut ring, &[11]);
        assert_eq!(counters.files_lost.load(Ordering::Relaxed), 4, "an overwritten file");
        // ...and longer than ringcap made it.
        ring.finish().unwrap();
        let longer = ring.current_path().unwrap().to_path_buf();
        let len = std::fs::metadata(&longer).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&longer).unwrap().write_all_at(b"more", len).unwrap();
        give(&mut ring, &[12]);
        assert_eq!(counters.files_lost.load(Ordering::Relaxed), 5, "a file grown by someone else");
        ring.finish().unwrap();
        let written = counters.packets_written.load(Ordering::Relaxed);
        assert_eq!(written + counters.packets_lost.load(Ordering::Relaxed), given);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_removed_ring_directory_stops_the_writer_with_the_way_out() {
        let dir = scratch("dir-gone");
        let counters = Arc::new(StorageCounters::default());
        let mut ring = RingWriter::open(config(&dir, Compression::None), Arc::clone(&counters)).unwrap();
        ring.write(&mut batch(&[1, 2, 3])).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let error = ring.write(&mut batch(&[4])).unwrap_err();
        assert!(error.to_string().contains("restart ringcap"), "{error}");
        assert_eq!(counters.packets_lost.load(Ordering::Relaxed), 3, "the frame on its way is counted");
        assert!(ring.tick().is_err());
    }
}

//! The uploader: one thread, off the capture path, that puts pins (and with `--archive-ring`
//! closed ring files) into the archive.
//!
//! Every object has a fixed key, so an upload repeated after a failure or a restart
//! replaces the same object and never adds a second copy; an object already there with
//! the right size was put whole by an earlier attempt (a PUT and a completed multipart
//! upload are atomic) and is not sent again. A pin's manifest goes last, so a manifest in
//! the bucket says the pin is whole; then the local copy is released. Files are read
//! through descriptors opened before the upload, so a ring file that rotation removes
//! meanwhile still arrives whole; one removed before its turn came is counted as missed.
//! A multipart upload cut short is aborted, at once or before the next attempt, so its
//! parts do not linger (after a restart, the bucket's lifecycle rule for incomplete
//! uploads, or `garage bucket cleanup-incomplete-uploads`, clears what was left).
//! Failures are counted by kind, retried with exponential backoff (1 s to 1 min), and said
//! once on standard error each time the kind of failure changes.
use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use sha2::Digest;

use super::pins::{hex, read_manifest, PinStore};
use super::store::Archive;
use super::{ArchiveError, PIN_MANIFEST};
use crate::retrieve::pull::ring_files;
use crate::storage::index::{index_path, stats_path};
use crate::storage::manifest::{ListFile, NameList};

/// Objects larger than this go up in parts of this size (S3's smallest part is 5 MiB).
pub const PART_BYTES: usize = 5 << 20;
/// Names of the ring files already archived, in the ring directory (ringcap's own file).
pub const ARCHIVED_LIST: ListFile =
    ListFile { name: "ringcap.archived", header: "# ring files of this directory already in the archive\n" };
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the uploader did, for `/metrics` and `/v1/stats`.
#[derive(Debug, Default)]
pub struct ArchiveCounters {
    pub pins_archived: AtomicU64,
    pub ring_files_archived: AtomicU64,
    pub objects_uploaded: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    /// Failed attempts, by kind (see [`ArchiveError::kind`]).
    pub failures_auth: AtomicU64,
    pub failures_network: AtomicU64,
    pub failures_bucket: AtomicU64,
    pub failures_other: AtomicU64,
    /// Ring files that rotation removed before their upload (with `--archive-ring`).
    pub ring_files_missed: AtomicU64,
    /// Pins and ring files waiting (a gauge).
    pub pending: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl ArchiveCounters {
    fn failed(&self, error: &ArchiveError) {
        let counter = match error.kind() {
            "auth" => &self.failures_auth,
            "network" => &self.failures_network,
            "bucket" => &self.failures_bucket,
            _ => &self.failures_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().expect("counters") = Some(error.to_string());
    }

    pub fn to_json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "pins_archived": get(&self.pins_archived), "ring_files_archived": get(&self.ring_files_archived),
            "objects_uploaded": get(&self.objects_uploaded), "bytes_uploaded": get(&self.bytes_uploaded),
            "failures": {
                "auth": get(&self.failures_auth), "network": get(&self.failures_network),
                "bucket": get(&self.failures_bucket), "other": get(&self.failures_other),
            },
            "ring_files_missed": get(&self.ring_files_missed), "pending": get(&self.pending),
            "last_error": *self.last_error.lock().expect("counters"),
        })
    }
}

/// What the uploader works on.
pub struct UploadConfig {
    pub archive: Arc<Archive>,
    pub host: String,
    pub ring_dir: PathBuf,
    pub pins: Arc<PinStore>,
    /// Also upload every closed ring file (`--archive-ring`).
    pub ring_files: bool,
    /// Bytes per second at most (`--archive-rate`).
    pub rate: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Job {
    Pin(String),
    RingFile(PathBuf),
}

/// Starts the uploader thread; it runs as long as the daemon.
pub fn start(config: UploadConfig, counters: Arc<ArchiveCounters>) -> std::io::Result<()> {
    let (sender, whole_pins) = crossbeam_channel::unbounded();
    config.pins.notify(sender);
    std::thread::Builder::new().name("archive".into()).spawn(move || {
        Uploader {
            throttle: Throttle::new(config.rate),
            archived_ring: read_archived_list(&config.ring_dir),
            config,
            counters,
            unfinished: Vec::new(),
        }
        .run(whole_pins)
    })?;
    Ok(())
}

struct Uploader {
    config: UploadConfig,
    counters: Arc<ArchiveCounters>,
    throttle: Throttle,
    /// Ring files archived (names), as in [`ARCHIVED_LIST`].
    archived_ring: NameList,
    /// Multipart uploads that failed and could not be aborted then (the server was
    /// gone): aborted before the next attempt, so their parts do not linger in the bucket.
    unfinished: Vec<Box<dyn MultipartUpload>>,
}

impl Uploader {
    fn run(mut self, whole_pins: crossbeam_channel::Receiver<String>) {
        let mut queue: VecDeque<Job> = VecDeque::new();
        let mut backoff = FIRST_BACKOFF;
        let mut last_kind: Option<&'static str> = None;
        let mut next_scan = Instant::now();
        loop {
            while let Ok(name) = whole_pins.try_recv() {
                let job = Job::Pin(name);
                if !queue.contains(&job) {
                    // Pins go before ring files: they are what someone asked to keep.
                    let at = queue.iter().position(|j| matches!(j, Job::RingFile(_))).unwrap_or(queue.len());
                    queue.insert(at, job);
                }
            }
            if self.config.ring_files && Instant::now() >= next_scan {
                self.scan_ring(&mut queue);
                next_scan = Instant::now() + Duration::from_secs(1);
            }
            self.counters.pending.store(queue.len() as u64, Ordering::Relaxed);
            let Some(job) = queue.front().cloned() else {
                if let Ok(name) = whole_pins.recv_timeout(Duration::from_secs(1)) {
                    queue.push_back(Job::Pin(name));
                }
                continue;
            };
            self.abort_unfinished();
            let done = match &job {
                Job::Pin(name) => self.upload_pin(name),
                Job::RingFile(path) => self.upload_ring_file(path),
            };
            match done {
                Ok(()) => {
                    queue.pop_front();
                    backoff = FIRST_BACKOFF;
                    if last_kind.take().is_some() {
                        eprintln!("ringcap: archive {}: uploading again", self.config.archive.target);
                    }
                }
                Err(error) => {
                    self.counters.failed(&error);
                    if last_kind != Some(error.kind()) {
                        eprintln!(
                            "ringcap: warning: archive: {error}; capture goes on, the upload is retried"
                        );
                        last_kind = Some(error.kind());
                    }
                    // Waits out the backoff, still taking in new pins.
                    if let Ok(name) = whole_pins.recv_timeout(backoff) {
                        let job = Job::Pin(name);
                        if !queue.contains(&job) {
                            queue.push_back(job);
                        }
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            self.counters.pending.store(queue.len() as u64, Ordering::Relaxed);
        }
    }

    /// Queues closed ring files not yet archived; counts those rotation took first.
    fn scan_ring(&mut self, queue: &mut VecDeque<Job>) {
        let Ok(mut files) = ring_files(&self.config.ring_dir) else { return };
        // The newest file is the one being written.
        files.pop();
        let present: BTreeSet<PathBuf> = files.iter().cloned().collect();
        queue.retain(|job| match job {
            Job::RingFile(path) if !present.contains(path) => {
                self.counters.ring_files_missed.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => true,
        });
        for path in files {
            let name = file_name(&path);
            let job = Job::RingFile(path);
            if !self.archived_ring.contains(&name) && !queue.contains(&job) {
                queue.push_back(job);
            }
        }
        // Names of files gone from the ring are dropped from the list as it is next saved.
        let names: BTreeSet<String> = present.iter().map(|p| file_name(p)).collect();
        self.archived_ring.retain(|name| names.contains(name));
    }

    fn upload_pin(&mut self, name: &str) -> Result<(), ArchiveError> {
        let archive = Arc::clone(&self.config.archive);
        let target = &archive.target;
        let pin_dir = self.config.pins.pin_dir(name);
        let Ok(manifest) = read_manifest(&pin_dir) else {
            // Unpinned meanwhile: nothing to do.
            return Ok(());
        };
        let host = self.config.host.clone();
        let key = |file: &str| target.key(&[&host, "pins", name, file]);
        for entry in manifest["files"].as_array().into_iter().flatten() {
            let (Some(file), Some(bytes), Some(sha256)) =
                (entry["name"].as_str(), entry["bytes"].as_u64(), entry["sha256"].as_str())
            else {
                continue;
            };
            let Ok(opened) = File::open(pin_dir.join(file)) else { return Ok(()) };
            if self.already_there(&key(file), bytes)? {
                continue;
            }
            let sent = self.put_file(&key(file), opened, bytes)?;
            if sent != sha256 {
                return Err(ArchiveError::Other {
                    target: target.to_string(),
                    why: format!("pin {name}: {file} changed on disk since it was pinned (SHA-256 {sent}, manifest {sha256})"),
                });
            }
        }
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        let manifest_key = key(PIN_MANIFEST);
        let len = manifest_bytes.len() as u64;
        self.throttle.wait(len);
        archive
            .block_on(archive.store.put(&manifest_key, PutPayload::from(manifest_bytes)))
            .map_err(|e| ArchiveError::from_store(target, e))?;
        self.sent(len);
        let location = format!("s3://{}/{}/", target.bucket, target.key(&[&host, "pins", name]));
        self.config.pins.archived(name, &location);
        self.counters.pins_archived.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn upload_ring_file(&mut self, data: &Path) -> Result<(), ArchiveError> {
        let archive = Arc::clone(&self.config.archive);
        // Opened first: rotation may remove them now, the upload reads them whole.
        let mut files = Vec::new();
        for path in [data.to_path_buf(), index_path(data), stats_path(data)] {
            if let Ok(file) = File::open(&path) {
                let len = file.metadata().map_or(0, |m| m.len());
                files.push((file_name(&path), file, len));
            }
        }
        if files.first().is_none_or(|(name, _, _)| *name != file_name(data)) {
            self.counters.ring_files_missed.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        for (name, file, len) in files {
            let key = archive.target.key(&[&self.config.host, "ring", &name]);
            if !self.already_there(&key, len)? {
                self.put_file(&key, file, len)?;
            }
        }
        self.archived_ring.insert(&file_name(data));
        if let Err(e) = self.archived_ring.save() {
            eprintln!(
                "ringcap: warning: cannot save {}: {e}",
                self.config.ring_dir.join(ARCHIVED_LIST.name).display()
            );
        }
        self.counters.ring_files_archived.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether `key` holds an object of `len` bytes (put whole by an earlier attempt).
    fn already_there(&self, key: &ObjectPath, len: u64) -> Result<bool, ArchiveError> {
        let archive = &self.config.archive;
        match archive.block_on(archive.store.head(key)) {
            Ok(meta) => Ok(meta.size == len),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(ArchiveError::from_store(&archive.target, e)),
        }
    }

    /// Uploads `len` bytes of `file` to `key` (in parts past [`PART_BYTES`]) within the
    /// rate; returns the SHA-256 of what was sent. A failed multipart upload is aborted,
    /// so no parts linger in the bucket.
    fn put_file(&mut self, key: &ObjectPath, mut file: File, len: u64) -> Result<String, ArchiveError> {
        let archive = Arc::clone(&self.config.archive);
        let target = &archive.target;
        let store_error = |e| ArchiveError::from_store(target, e);
        let read_error =
            |e: std::io::Error| ArchiveError::Other { target: target.to_string(), why: e.to_string() };
        let mut hasher = sha2::Sha256::new();
        let mut read_part = |hasher: &mut sha2::Sha256| -> Result<Vec<u8>, ArchiveError> {
            let mut part = Vec::with_capacity(PART_BYTES);
            (&mut file).take(PART_BYTES as u64).read_to_end(&mut part).map_err(read_error)?;
            hasher.update(&part);
            Ok(part)
        };
        if len <= PART_BYTES as u64 {
            let whole = read_part(&mut hasher)?;
            self.throttle.wait(whole.len() as u64);
            let sent = whole.len() as u64;
            archive.block_on(archive.store.put(key, PutPayload::from(whole))).map_err(store_error)?;
            self.sent(sent);
            return Ok(hex(&hasher.finalize()));
        }
        let mut upload = archive.block_on(archive.store.put_multipart(key)).map_err(store_error)?;
        let outcome = (|| -> Result<(), ArchiveError> {
            loop {
                let part = read_part(&mut hasher)?;
                if part.is_empty() {
                    break;
                }
                self.throttle.wait(part.len() as u64);
                let sent = part.len() as u64;
                archive.block_on(upload.put_part(PutPayload::from(part))).map_err(store_error)?;
                self.counters.bytes_uploaded.fetch_add(sent, Ordering::Relaxed);
            }
            archive.block_on(upload.complete()).map_err(store_error)?;
            Ok(())
        })();
        if let Err(error) = outcome {
            if archive.block_on(upload.abort()).is_err() {
                self.unfinished.push(upload);
            }
            return Err(error);
        }
        self.counters.objects_uploaded.fetch_add(1, Ordering::Relaxed);
        Ok(hex(&hasher.finalize()))
    }

    fn abort_unfinished(&mut self) {
        let archive = Arc::clone(&self.config.archive);
        let mut still = Vec::new();
        for mut upload in self.unfinished.drain(..) {
            if archive.block_on(upload.abort()).is_err() {
                still.push(upload);
            }
        }
        self.unfinished = still;
    }

    fn sent(&self, bytes: u64) {
        self.counters.objects_uploaded.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string()
}

/// The ring files already archived: none when the list is missing, or unreadable (said).
fn read_archived_list(dir: &Path) -> NameList {
    let read = NameList::read(dir, &ARCHIVED_LIST).unwrap_or_else(|e| {
        eprintln!("ringcap: warning: cannot read {}: {e}", dir.join(ARCHIVED_LIST.name).display());
        None
    });
    read.unwrap_or_else(|| NameList::empty(dir, &ARCHIVED_LIST))
}

/// Keeps uploads under a rate: each chunk waits until the bytes before it are paid for.
struct Throttle {
    rate: Option<u64>,
    next: Instant,
}

impl Throttle {
    fn new(rate: Option<u64>) -> Self {
        Throttle { rate, next: Instant::now() }
    }

    fn wait(&mut self, bytes: u64) {
        let Some(rate) = self.rate.filter(|&r| r > 0) else { return };
        let now = Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
        }
        self.next = self.next.max(now) + Duration::from_secs_f64(bytes as f64 / rate as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_keeps_the_rate() {
        let mut throttle = Throttle::new(Some(10 << 20));
        let started = Instant::now();
        for _ in 0..4 {
            throttle.wait(1 << 20);
        }
        // Four MiB at 10 MiB/s: the fourth waits for the first three, 0.3 s.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(290), "{took:?}");
        let mut free = Throttle::new(None);
        let started = Instant::now();
        free.wait(u64::MAX);
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}

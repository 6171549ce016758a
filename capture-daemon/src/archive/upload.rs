//! The uploader: one thread, off the capture path, that puts pins (and with `--archive-ring`
//! closed ring files) into the archive.
//!
//! Every object has a fixed key, so an upload repeated after a failure or a restart
//! replaces the same object and never adds a second copy. A pin's files go under its
//! generation (`HOST/pins/NAME/GENERATION/FILE`), which no other pin of that name shares:
//! an object already there with the right size was put whole by an earlier attempt of this
//! pin (a PUT and a completed multipart upload are atomic) and is not sent again, once the
//! local file is checked against its manifest's SHA-256. The manifest goes last, so a
//! manifest in the bucket says the pin is whole; then objects of earlier generations of
//! the name are removed and the local copy released. Files are read
//! through descriptors opened before the upload, so a ring file that rotation removes
//! meanwhile still arrives whole; one removed before its turn came is counted as missed.
//! A multipart upload cut short is aborted, at once or before the next attempt, so its
//! parts do not linger (after a restart, the bucket's lifecycle rule for incomplete
//! uploads, or `garage bucket cleanup-incomplete-uploads`, clears what was left).
//! Failures are counted by kind, and said once on standard error each time the kind of
//! failure changes; the failing job moves aside, retried with a backoff of its own (1 s to
//! 1 min), its reason shown with the pin, while the others go on.
//!
//! Before its first upload the uploader claims its host's keys (`HOST/owner.json`, naming
//! this machine's id): a gateway never writes under a host name another machine owns.
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

use super::store::Archive;
use super::ArchiveError;
use crate::pins::{digest, hex, read_manifest, PinStore, PIN_MANIFEST};
use crate::storage::index::{index_path, stats_path};
use crate::storage::manifest::ring_files;
use crate::storage::manifest::{ListFile, NameList};
use crate::storage::nofollow::open_regular;

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
        *crate::health::locked(&self.last_error) = Some(error.to_string());
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
            "last_error": *crate::health::locked(&self.last_error),
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

/// A job in the queue, and when it may be tried again after failures.
struct Queued {
    job: Job,
    next_try: Instant,
    backoff: Duration,
}

impl Queued {
    fn new(job: Job) -> Self {
        Queued { job, next_try: Instant::now(), backoff: FIRST_BACKOFF }
    }
}

/// The object that says which machine a host's keys belong to.
pub const OWNER_OBJECT: &str = "owner.json";

/// This machine's id (`/etc/machine-id`), or its host name where there is none.
pub fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(super::host_name)
}

/// Claims `host`'s keys in the archive for this machine: fails if another machine's id is
/// there, writes ours if none is.
pub fn claim_host(archive: &Archive, host: &str) -> Result<(), ArchiveError> {
    let key = archive.target.key(&[host, OWNER_OBJECT]);
    let ours = machine_id();
    let theirs = archive.block_on(async {
        match archive.store.get(&key).await {
            Ok(found) => found.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    });
    match theirs.map_err(|e| ArchiveError::from_store(&archive.target, e))? {
        Some(bytes) => {
            let owner: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            match owner["machine_id"].as_str() {
                Some(id) if id == ours => Ok(()),
                other => Err(ArchiveError::Other {
                    target: archive.target.to_string(),
                    why: format!(
                        "the archive's keys of host {host:?} belong to another machine (machine id {}): give \
                         this gateway a name of its own with --archive-host NAME",
                        other.unwrap_or("unreadable")
                    ),
                }),
            }
        }
        None => {
            let owner = serde_json::json!({ "host": host, "machine_id": ours });
            archive
                .block_on(archive.store.put(&key, PutPayload::from(owner.to_string().into_bytes())))
                .map(drop)
                .map_err(|e| ArchiveError::from_store(&archive.target, e))
        }
    }
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
            claimed: false,
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
    /// Whether the host's keys are claimed for this machine (see [`claim_host`]).
    claimed: bool,
}

impl Uploader {
    fn run(mut self, whole_pins: crossbeam_channel::Receiver<String>) {
        let mut queue: VecDeque<Queued> = VecDeque::new();
        let mut last_kind: Option<&'static str> = None;
        let mut next_scan = Instant::now();
        let mut wait = Duration::ZERO;
        loop {
            if let Ok(name) = whole_pins.recv_timeout(wait) {
                queue_pin(&mut queue, name);
            }
            while let Ok(name) = whole_pins.try_recv() {
                queue_pin(&mut queue, name);
            }
            if self.config.ring_files && Instant::now() >= next_scan {
                self.scan_ring(&mut queue);
                next_scan = Instant::now() + Duration::from_secs(1);
            }
            self.counters.pending.store(queue.len() as u64, Ordering::Relaxed);
            // The first job due: a failing one waits out its backoff aside.
            let now = Instant::now();
            let Some(at) = queue.iter().position(|q| q.next_try <= now) else {
                let due = queue.iter().map(|q| q.next_try).min();
                wait = due
                    .map_or(Duration::from_secs(1), |due| due.saturating_duration_since(now))
                    .min(Duration::from_secs(1));
                continue;
            };
            wait = Duration::ZERO;
            self.abort_unfinished();
            let job = queue[at].job.clone();
            let done = self.claim().and_then(|()| match &job {
                Job::Pin(name) => self.upload_pin(name),
                Job::RingFile(path) => self.upload_ring_file(path),
            });
            match done {
                Ok(()) => {
                    queue.remove(at);
                    if let Job::Pin(name) = &job {
                        self.config.pins.upload_failed(name, None);
                    }
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
                    if let Job::Pin(name) = &job {
                        self.config.pins.upload_failed(name, Some(error.to_string()));
                    }
                    // Aside, behind the others, until its own backoff has passed.
                    let mut failed = queue.remove(at).expect("the job was in the queue");
                    failed.next_try = Instant::now() + failed.backoff;
                    failed.backoff = (failed.backoff * 2).min(MAX_BACKOFF);
                    queue.push_back(failed);
                }
            }
            self.counters.pending.store(queue.len() as u64, Ordering::Relaxed);
        }
    }

    /// Claims the host's keys once (a refusal fails every upload, with the reason).
    fn claim(&mut self) -> Result<(), ArchiveError> {
        if !self.claimed {
            claim_host(&self.config.archive, &self.config.host)?;
            self.claimed = true;
        }
        Ok(())
    }

    /// Queues closed ring files not yet archived; counts those rotation took first.
    fn scan_ring(&mut self, queue: &mut VecDeque<Queued>) {
        let Ok(mut files) = ring_files(&self.config.ring_dir) else { return };
        // The newest file is the one being written.
        files.pop();
        let present: BTreeSet<PathBuf> = files.iter().cloned().collect();
        queue.retain(|queued| match &queued.job {
            Job::RingFile(path) if !present.contains(path) => {
                self.counters.ring_files_missed.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => true,
        });
        for path in files {
            let name = file_name(&path);
            let job = Job::RingFile(path);
            if !self.archived_ring.contains(&name) && !queue.iter().any(|q| q.job == job) {
                queue.push_back(Queued::new(job));
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
        let generation = manifest.archive_generation();
        let key = |file: &str| target.key(&[&host, "pins", name, &generation, file]);
        let changed = |file: &str, found: &str, named: &str| ArchiveError::Other {
            target: target.to_string(),
            why: format!(
                "pin {name}: {file} changed on disk since it was pinned (SHA-256 {found}, manifest {named}): \
                 unpin it and pin the window again"
            ),
        };
        for entry in &manifest.files {
            let (file, bytes, sha256) = (entry.name.as_str(), entry.bytes, entry.sha256.as_str());
            let Ok(opened) = open_regular(&pin_dir.join(file)) else { return Ok(()) };
            if self.already_there(&key(file), bytes)? {
                // Put by an earlier attempt of this generation; skipped only if the file
                // it came from is still the one the manifest names.
                let local = opened.try_clone().and_then(digest).map_err(|e| ArchiveError::Other {
                    target: target.to_string(),
                    why: format!("pin {name}: {file}: {e}"),
                })?;
                if local.1 != sha256 {
                    return Err(changed(file, &local.1, sha256));
                }
                continue;
            }
            let sent = self.put_file(&key(file), opened, bytes)?;
            if sent != sha256 {
                return Err(changed(file, &sent, sha256));
            }
        }
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        let manifest_key = target.key(&[&host, "pins", name, PIN_MANIFEST]);
        let len = manifest_bytes.len() as u64;
        self.throttle.wait(len);
        archive
            .block_on(archive.store.put(&manifest_key, PutPayload::from(manifest_bytes)))
            .map_err(|e| ArchiveError::from_store(target, e))?;
        self.sent(len);
        self.remove_other_generations(name, &generation);
        let location = format!("s3://{}/{}/", target.bucket, target.key(&[&host, "pins", name]));
        self.config.pins.archived(name, &location);
        self.counters.pins_archived.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes the objects of earlier pins of this name (other generations, or files of
    /// the layout before generations): the manifest now names this one. Best effort: what
    /// is left is never read, since the manifest names its generation.
    fn remove_other_generations(&self, name: &str, generation: &str) {
        let archive = &self.config.archive;
        let pin_prefix = archive.target.key(&[&self.config.host, "pins", name]);
        let keep = [archive.target.key(&[&self.config.host, "pins", name, PIN_MANIFEST])];
        let mine = archive.target.key(&[&self.config.host, "pins", name, generation]).to_string() + "/";
        let listed: Vec<ObjectPath> = archive.block_on(async {
            use futures_util::StreamExt;
            let mut listing = archive.store.list(Some(&pin_prefix));
            let mut found = Vec::new();
            while let Some(Ok(object)) = listing.next().await {
                found.push(object.location);
            }
            found
        });
        for key in listed {
            if keep.contains(&key) || key.as_ref().starts_with(&mine) {
                continue;
            }
            if let Err(e) = archive.block_on(archive.store.delete(&key)) {
                eprintln!("ringcap: warning: archive: cannot remove {key} of an earlier pin {name}: {e}");
            }
        }
    }

    fn upload_ring_file(&mut self, data: &Path) -> Result<(), ArchiveError> {
        let archive = Arc::clone(&self.config.archive);
        // Opened first: rotation may remove them now, the upload reads them whole.
        let mut files = Vec::new();
        for path in [data.to_path_buf(), index_path(data), stats_path(data)] {
            if let Ok(file) = open_regular(&path) {
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

/// Puts a whole pin in the queue, before the ring files: pins are what someone asked to keep.
fn queue_pin(queue: &mut VecDeque<Queued>, name: String) {
    let job = Job::Pin(name);
    if !queue.iter().any(|q| q.job == job) {
        let at = queue.iter().position(|q| matches!(q.job, Job::RingFile(_))).unwrap_or(queue.len());
        queue.insert(at, Queued::new(job));
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

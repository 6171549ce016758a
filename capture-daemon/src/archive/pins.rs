//! Pinned windows: a window of the ring, filtered or not, kept out of rotation.
//!
//! A pin is a copy, made by the ring's own pull into a ring writer of its own: the
//! directory `DIR/pins/NAME/` holds `NAME.pcap.zst` with its time index and frame summaries
//! (so a pin is pulled, locally or from the archive, like any ring file), `NAME.stats.json`
//! (the window's TCP statistics and counters) and `manifest.json` (what, when, where from,
//! how many packets, and the SHA-256 of each file). The copy is made in `.NAME.partial/` and
//! renamed into place once whole, so a crash never leaves a half pin that looks whole; a
//! partial one is removed at the next start. Copying reads files the ring may remove
//! meanwhile: they stay readable through the descriptors the pull holds.
//!
//! Pins count against the ring's budget: the ring writer adds the bytes pins hold
//! (`RingConfig::pinned_bytes`, kept by the store) to its own size, so `--max-disk` covers
//! both, and pins together may hold at most `--max-pinned` (half of `--max-disk` by
//! default). A copy counts what it has written so far, never more: the ring gives up its
//! oldest files only for room a pin really takes. An unfiltered pin whose size (the
//! stored bytes of the window's frames) would pass the limit, or leave less than
//! `--min-free`, is refused at once; a filtered one fails, saying why, if it outgrows it.
//! At most [`MAX_COPYING`] pins are copied at once; a failed pin stays listed, with its
//! reason, for [`FAILED_PIN_KEEP`].
//!
//! A pin keeps the ring's format: from a pcapng ring, each packet keeps its interface and
//! direction. Its manifest names a generation (the time it was made), under which the
//! archive keeps its files, so a new pin of an old name never mixes with the old one's.
//!
//! The pins' directory is walked by descriptor, never through a symlink: a root start
//! tidies and hands over what the daemon's user may have planted there.
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::Digest;

use super::PIN_MANIFEST;
use crate::capture::Batch;
use crate::filter::Filter;
use crate::output::Sink;
use crate::pcap::{self, RecordRef, DEFAULT_SNAPLEN};
use crate::records::{ArchiveRecord, PinFile, PinManifest, PinPull, PinWindow, PIN_FORMAT};
use crate::retrieve::out::PacketOut;
use crate::retrieve::pull::{pull_files, ring_files, PullLimits, PullReport};
use crate::retrieve::stats::window_stats;
use crate::retrieve::window::Window;
use crate::storage::budget::fs_space;
use crate::storage::frames::{duration_ns, DataFile};
use crate::storage::naming::NameTemplate;
use crate::storage::nofollow::{self, Dir, Kind};
use crate::storage::ring::{RingConfig, RingWriter, StorageCounters};
use crate::storage::Compression;
use crate::timefmt::rfc3339;

/// The pins' directory inside the ring's.
pub const PINS_DIR: &str = "pins";
/// Frames of a pin: as the ring's default.
const PIN_FRAME_BYTES: usize = 1 << 20;
/// Pins copied at once at most; one more is refused until one is done.
pub const MAX_COPYING: usize = 2;
/// How long a failed pin stays listed with its reason...
pub const FAILED_PIN_KEEP: Duration = Duration::from_secs(600);
/// ...and how many failed pins are listed at most (the newest).
const MAX_FAILED_LISTED: usize = 16;
/// The largest manifest or archive record read.
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Why a pin was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a pin named {0:?} exists: choose another --name, or unpin it first")]
    Exists(String),
    #[error("no pin named {0:?}")]
    NotFound(String),
    #[error("pin {0:?} is still being copied: unpin it once it is done")]
    Busy(String),
    #[error("{0} pins are being copied already: retry once one is done")]
    TooMany(usize),
    #[error("{0}")]
    NoRoom(String),
    #[error("{0}")]
    Io(String),
}

/// Where a pin is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinState {
    /// Being copied out of the ring.
    Copying,
    /// Whole on local disk; waiting for (or without) the archive.
    Pinned,
    /// Uploaded whole and checked; the local copy is gone but for its manifest and the
    /// record of where it went ([`ARCHIVED_RECORD`]), so it is still listed after a restart.
    Archived,
    /// The copy failed (the reason); nothing of it is kept.
    Failed(String),
}

impl PinState {
    fn label(&self) -> &'static str {
        match self {
            PinState::Copying => "copying",
            PinState::Pinned => "pinned",
            PinState::Archived => "archived",
            PinState::Failed(_) => "failed",
        }
    }
}

/// A pin as listed by the API.
#[derive(Clone, Debug)]
pub struct PinInfo {
    pub name: String,
    pub state: PinState,
    /// Bytes on local disk (so far, while copying).
    pub bytes: u64,
    /// The manifest once the pin is whole.
    pub manifest: Option<PinManifest>,
    /// Where the archive holds it (`s3://BUCKET/KEY/`), once archived.
    pub archive: Option<String>,
    /// Why its last upload failed (it is retried), while it is not archived.
    pub upload_error: Option<String>,
    /// When it failed (failed pins are listed for [`FAILED_PIN_KEEP`]).
    failed_at: Option<Instant>,
}

impl PinInfo {
    fn new(name: &str, state: PinState, bytes: u64, manifest: Option<PinManifest>) -> Self {
        let failed_at = matches!(state, PinState::Failed(_)).then(Instant::now);
        PinInfo {
            name: name.to_string(),
            state,
            bytes,
            manifest,
            archive: None,
            upload_error: None,
            failed_at,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut value = json!({ "name": self.name, "state": self.state.label(), "bytes": self.bytes });
        if let PinState::Failed(why) = &self.state {
            value["error"] = json!(why);
        }
        if let Some(why) = &self.upload_error {
            value["upload_error"] = json!(why);
        }
        if let Some(manifest) = &self.manifest {
            value["manifest"] = json!(manifest);
        }
        if let Some(location) = &self.archive {
            value["archive"] = json!(location);
        }
        value
    }
}

/// What to pin.
#[derive(Clone, Debug)]
pub struct PinRequest {
    pub name: Option<String>,
    pub window: Window,
    pub expression: String,
}

/// How much pins may hold.
#[derive(Clone, Copy, Debug, Default)]
pub struct PinLimits {
    /// Bytes all pins together may hold (`--max-pinned`).
    pub max_pinned: Option<u64>,
    /// Free space a pin must leave on the filesystem (`--min-free`).
    pub min_free: u64,
}

/// The pins of a ring.
pub struct PinStore {
    ring_dir: PathBuf,
    dir: PathBuf,
    limits: PinLimits,
    /// The capture's interfaces, for the manifests.
    interfaces: Vec<String>,
    /// The host the manifests name (the archive's key for this gateway).
    host: String,
    compression: Compression,
    pinned_bytes: Arc<AtomicU64>,
    pins: Mutex<BTreeMap<String, PinInfo>>,
    /// Told the name of each pin once it is whole (the uploader listens).
    whole: Mutex<Option<crossbeam_channel::Sender<String>>>,
}

/// Whether `name` may name a pin: a plain file name, as S3 keys and shells take it.
fn check_name(name: &str) -> Result<(), PinError> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(PinError::BadRequest(format!(
            "pin name {name:?}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

impl PinStore {
    /// The pins of the ring in `ring_dir`: whole ones are listed and counted, partial
    /// ones (a copy cut by a crash) removed.
    /// `pinned_bytes` is the ring writer's count of them, set here.
    pub fn open(
        ring_dir: &Path,
        limits: PinLimits,
        interfaces: Vec<String>,
        host: String,
        compression: Compression,
        pinned_bytes: Arc<AtomicU64>,
    ) -> std::io::Result<Arc<Self>> {
        let dir = ring_dir.join(PINS_DIR);
        let pins_dir = open_pins_dir(ring_dir)?;
        let mut pins = BTreeMap::new();
        for name in pins_dir.names()? {
            if pins_dir.kind(&name)? != Some(Kind::Dir) {
                continue;
            }
            if let Some(partial) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".partial")) {
                if check_name(partial).is_ok() {
                    remove_pin_dir(&pins_dir, &name)?;
                }
                continue;
            }
            if check_name(&name).is_err() {
                continue;
            }
            let Ok(pin) = pins_dir.child(&name) else { continue };
            let Ok(manifest) = read_record::<PinManifest>(&pin, PIN_MANIFEST) else { continue };
            let archive = read_record::<ArchiveRecord>(&pin, ARCHIVED_RECORD).ok().map(|r| r.location);
            if archive.is_some() {
                // Archived: a release cut by a crash is finished.
                release_local_copy(&pin)?;
            }
            let state = if archive.is_some() { PinState::Archived } else { PinState::Pinned };
            let mut info = PinInfo::new(&name, state, pin.files_bytes(), Some(manifest));
            info.archive = archive;
            pins.insert(name, info);
        }
        pinned_bytes.store(pins.values().map(|p| p.bytes).sum(), Ordering::Relaxed);
        Ok(Arc::new(PinStore {
            ring_dir: ring_dir.to_path_buf(),
            dir,
            limits,
            interfaces,
            host,
            compression,
            pinned_bytes,
            pins: Mutex::new(pins),
            whole: Mutex::new(None),
        }))
    }

    /// Gives the pins' directory, its pin directories and their regular files to the user
    /// the daemon is about to become (`-Z`), by descriptor: a symlink planted anywhere in
    /// it is neither followed nor handed over.
    pub fn hand_over(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        let pins = open_pins_dir(&self.ring_dir)?;
        pins.chown(uid, gid)?;
        for name in pins.names()? {
            if pins.kind(&name)? != Some(Kind::Dir) {
                continue;
            }
            let Ok(pin) = pins.child(&name) else { continue };
            pin.chown(uid, gid)?;
            for file in pin.names()? {
                pin.chown_file(&file, uid, gid)?;
            }
        }
        Ok(())
    }

    /// The pins' map, with failed pins past [`FAILED_PIN_KEEP`] (or beyond the newest
    /// [`MAX_FAILED_LISTED`]) forgotten.
    fn pins(&self) -> MutexGuard<'_, BTreeMap<String, PinInfo>> {
        let mut pins = self.pins.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pins.retain(|_, p| p.failed_at.is_none_or(|at| at.elapsed() < FAILED_PIN_KEEP));
        let mut failed: Vec<(Instant, String)> =
            pins.values().filter_map(|p| Some((p.failed_at?, p.name.clone()))).collect();
        if failed.len() > MAX_FAILED_LISTED {
            failed.sort();
            for (_, name) in &failed[..failed.len() - MAX_FAILED_LISTED] {
                pins.remove(name);
            }
        }
        pins
    }

    /// Records why the upload of pin `name` failed (`None`: it went through).
    pub fn upload_failed(&self, name: &str, why: Option<String>) {
        if let Some(info) = self.pins().get_mut(name) {
            info.upload_error = why;
        }
    }

    /// Where the pin `name` is on local disk.
    pub fn pin_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Sends the name of every pin that is (or becomes) whole to `sender`, starting with
    /// those already on disk.
    pub fn notify(&self, sender: crossbeam_channel::Sender<String>) {
        for (name, pin) in self.pins().iter() {
            if pin.state == PinState::Pinned {
                let _ = sender.send(name.clone());
            }
        }
        *self.whole.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sender);
    }

    pub fn list(&self) -> Vec<PinInfo> {
        self.pins().values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<PinInfo> {
        self.pins().get(name).cloned()
    }

    /// Checks a pin against the limits and starts copying it on a thread of its own;
    /// returns at once with the pin in state `copying`.
    pub fn pin(self: &Arc<Self>, mut request: PinRequest) -> Result<PinInfo, PinError> {
        let filter = Filter::compile(&request.expression).map_err(|e| PinError::BadRequest(e.to_string()))?;
        // A pin holds what is captured already: a window open at its end stops now.
        let now = crate::timefmt::unix_now_ns();
        request.window.until_ns = request.window.until_ns.min(now + 1);
        let name = request.name.clone().unwrap_or_else(|| default_name(request.window));
        check_name(&name)?;
        let copying = self.pins().values().filter(|p| p.state == PinState::Copying).count();
        if copying >= MAX_COPYING {
            return Err(PinError::TooMany(copying));
        }
        // Opened now: the copy reads these even if rotation removes them meanwhile.
        let (files, opened) = self.open_window(request.window).map_err(|e| PinError::Io(e.to_string()))?;
        let estimate: u64 = files
            .iter()
            .flat_map(|file| &file.frames)
            .filter(|f| f.packets > 0 && request.window.overlaps(f.earliest_ns, f.latest_ns))
            .map(|f| f.len)
            .sum();
        if estimate == 0 {
            return Err(PinError::BadRequest(format!(
                "the ring holds no packets from {} to {}: nothing to pin",
                rfc3339(request.window.since_ns),
                rfc3339(request.window.until_ns)
            )));
        }
        // Unfiltered, the estimate is what the copy takes, and is checked now; filtered, it
        // is only an upper bound: the copy counts what it writes and stops at the limit.
        let unfiltered = request.expression.trim().is_empty();
        let info = {
            let mut pins = self.pins();
            if pins.get(&name).is_some_and(|p| !matches!(p.state, PinState::Failed(_))) {
                return Err(PinError::Exists(name));
            }
            if pins.values().filter(|p| p.state == PinState::Copying).count() >= MAX_COPYING {
                return Err(PinError::TooMany(MAX_COPYING));
            }
            let pinned = self.pinned_bytes.load(Ordering::Relaxed);
            let room = self.limits.max_pinned.map_or(u64::MAX, |limit| limit.saturating_sub(pinned));
            if unfiltered && estimate > room {
                return Err(PinError::NoRoom(format!(
                    "pinning this window takes {estimate} bytes and pins hold {pinned} of the {} they may \
                     (--max-pinned, half of --max-disk unless given): unpin or archive older pins, or narrow the \
                     window or add a filter",
                    self.limits.max_pinned.unwrap_or_default()
                )));
            }
            let needed = if unfiltered { estimate } else { 0 };
            let available = fs_space(&self.dir).map_err(|e| PinError::Io(e.to_string()))?.available;
            if available < needed.saturating_add(self.limits.min_free) {
                return Err(PinError::NoRoom(format!(
                    "pinning this window takes {needed} bytes and the filesystem has {available} free, \
                     of which {} must stay free (--min-free): free space, or narrow the window or the filter",
                    self.limits.min_free
                )));
            }
            let info = PinInfo::new(&name, PinState::Copying, 0, None);
            pins.insert(name.clone(), info.clone());
            info
        };
        let store = Arc::clone(self);
        let counted = Arc::new(AtomicU64::new(0));
        let spawned = std::thread::Builder::new().name("pin".into()).spawn({
            let counted = Arc::clone(&counted);
            move || {
                let outcome = store.copy(&name, &request, &filter, (files, opened), &counted);
                store.copied(&name, counted.load(Ordering::Relaxed), outcome);
            }
        });
        if let Err(e) = spawned {
            self.pins().remove(&info.name);
            return Err(PinError::Io(e.to_string()));
        }
        Ok(info)
    }

    /// The ring's files that hold packets of `window`, opened; what could not be opened is
    /// in the report (a file rotation removed meanwhile has left the window: not counted).
    fn open_window(&self, window: Window) -> std::io::Result<(Vec<DataFile>, PullReport)> {
        let mut report = PullReport::default();
        let mut files = Vec::new();
        for path in ring_files(&self.ring_dir)? {
            match DataFile::open(&path) {
                Ok(file) if file.time_range().is_some_and(|(f, l)| window.overlaps(f, l)) => files.push(file),
                Ok(_) => {}
                Err(e) if e.is_gone() => {}
                Err(e) => report.unreadable(&path.display(), &e),
            }
        }
        Ok((files, report))
    }

    /// Copies the window into `.NAME.partial/`, writes its statistics and manifest, and
    /// renames it into place; returns the pin's manifest and size. What the copy writes is
    /// added to `counted` (and to the pins' bytes) as it goes; a copy that takes pins past
    /// `--max-pinned` stops and fails with the reason. Nothing of a failed copy is left.
    fn copy(
        &self,
        name: &str,
        request: &PinRequest,
        filter: &Filter,
        (files, opened): (Vec<DataFile>, PullReport),
        counted: &Arc<AtomicU64>,
    ) -> Result<(PinManifest, u64), String> {
        let partial_name = format!(".{name}.partial");
        let partial = self.dir.join(&partial_name);
        let pins_dir = open_pins_dir(&self.ring_dir).map_err(|e| e.to_string())?;
        let _ = remove_pin_dir(&pins_dir, &partial_name);
        // A pcapng ring's pin is pcapng too, with every interface its packets were seen on.
        let mut interfaces: Vec<String> = Vec::new();
        for file in files.iter().filter(|f| f.format.pcapng) {
            for interface in &file.interfaces {
                if !interfaces.contains(interface) {
                    interfaces.push(interface.clone());
                }
            }
        }
        let pcapng = files.iter().any(|f| f.format.pcapng);
        let made = (|| -> Result<(PinManifest, u64), String> {
            let template = NameTemplate::parse(name).map_err(|e| e.to_string())?;
            let config = RingConfig {
                frame_bytes: PIN_FRAME_BYTES,
                frame_age: Duration::from_secs(3600),
                compress_threads: 1,
                pcapng_interfaces: pcapng.then(|| interfaces.clone()),
                ..RingConfig::single_file(&partial, template, self.compression)
            };
            let counters = Arc::new(StorageCounters::default());
            let ring = RingWriter::open(config, Arc::clone(&counters)).map_err(|e| e.to_string())?;
            let mut out = RingOut {
                ring,
                batch: Batch::empty(Vec::with_capacity(PIN_FRAME_BYTES + 65_536)),
                counters: Arc::clone(&counters),
                interfaces: pcapng.then_some(interfaces),
                counted: Arc::clone(counted),
                pinned: Arc::clone(&self.pinned_bytes),
                max_pinned: self.limits.max_pinned,
            };
            let report = pull_files(files, opened, request.window, filter, PullLimits::default(), &mut out)
                .map_err(|e| e.to_string())?;
            let data = out.ring.current_path().map(Path::to_path_buf);
            drop(out);
            let lost = counters.packets_lost.load(Ordering::Relaxed);
            if lost > 0 {
                return Err(format!("{lost} packets could not be written to the pin (disk full?)"));
            }
            let (Some(data), true) = (data, report.packets > 0) else {
                return Err("the window holds no packet that the filter selects".into());
            };
            let stats_file = partial.join(format!("{name}.stats.json"));
            let stats =
                window_stats(&self.ring_dir, request.window).unwrap_or_else(|why| json!({ "error": why }));
            write_synced(&stats_file, &serde_json::to_vec_pretty(&stats).unwrap_or_default())
                .map_err(|e| e.to_string())?;
            let index = crate::storage::index::index_path(&data);
            let mut files = Vec::new();
            for path in [&data, &index, &stats_file] {
                let (bytes, sha256) = file_digest(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                files.push(PinFile { name: file_name.to_string(), bytes, sha256 });
            }
            let opened = DataFile::open(&data).map_err(|e| e.to_string())?;
            let (first, last) = opened.time_range().unwrap_or_default();
            let created = crate::timefmt::unix_now_ns();
            let manifest = PinManifest {
                format: PIN_FORMAT.to_string(),
                name: name.to_string(),
                generation: Some(created.to_string()),
                host: self.host.clone(),
                interfaces: self.interfaces.clone(),
                created: rfc3339(created),
                window: PinWindow {
                    since: rfc3339(request.window.since_ns),
                    until: rfc3339(request.window.until_ns),
                    since_ns: request.window.since_ns,
                    until_ns: request.window.until_ns,
                },
                filter: request.expression.clone(),
                packets: report.packets,
                first_packet: rfc3339(first),
                last_packet: rfc3339(last),
                first_packet_ns: first,
                last_packet_ns: last,
                data: data.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string(),
                files,
                pull: PinPull {
                    files_read: report.files_read,
                    frames_read: report.frames_read,
                    frames_skipped: report.frames_skipped,
                    frames_damaged: report.frames_damaged,
                    files_unreadable: report.files_unreadable,
                    warnings: report.warnings,
                },
            };
            write_synced(
                &partial.join(PIN_MANIFEST),
                &serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
            )
            .map_err(|e| e.to_string())?;
            // The files' names too, before the directory is renamed into place.
            Dir::open(&partial).and_then(|d| d.sync()).map_err(|e| e.to_string())?;
            let bytes = Dir::open(&partial).map(|d| d.files_bytes()).unwrap_or(0);
            std::fs::rename(&partial, self.pin_dir(name))
                .map_err(|e| format!("renaming the pin into place: {e}"))?;
            let _ = pins_dir.sync();
            Ok((manifest, bytes))
        })();
        if made.is_err() {
            let _ = remove_pin_dir(&pins_dir, &partial_name);
        }
        made
    }

    /// Records the end of a copy: what it counted while copying becomes the pin's real size.
    fn copied(&self, name: &str, counted: u64, outcome: Result<(PinManifest, u64), String>) {
        let mut pins = self.pins();
        self.pinned_bytes.fetch_sub(counted, Ordering::Relaxed);
        let info = match outcome {
            Ok((manifest, bytes)) => {
                self.pinned_bytes.fetch_add(bytes, Ordering::Relaxed);
                PinInfo::new(name, PinState::Pinned, bytes, Some(manifest))
            }
            Err(why) => {
                eprintln!("ringcap: warning: pin {name:?} failed: {why}");
                PinInfo::new(name, PinState::Failed(why), 0, None)
            }
        };
        let whole = info.state == PinState::Pinned;
        pins.insert(name.to_string(), info);
        drop(pins);
        if whole {
            if let Some(sender) =
                self.whole.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
            {
                let _ = sender.send(name.to_string());
            }
        }
    }

    /// Removes a pin's local copy (its files go back to rotation's budget).
    pub fn unpin(&self, name: &str) -> Result<PinInfo, PinError> {
        let mut pins = self.pins();
        let info = pins.get(name).cloned().ok_or_else(|| PinError::NotFound(name.to_string()))?;
        match info.state {
            PinState::Copying => return Err(PinError::Busy(name.to_string())),
            PinState::Pinned | PinState::Archived => {
                let pins_dir = open_pins_dir(&self.ring_dir).map_err(|e| PinError::Io(e.to_string()))?;
                remove_pin_dir(&pins_dir, name).map_err(|e| PinError::Io(e.to_string()))?;
                self.pinned_bytes.fetch_sub(info.bytes, Ordering::Relaxed);
            }
            PinState::Failed(_) => {}
        }
        pins.remove(name);
        Ok(info)
    }

    /// The archive holds the pin whole at `location`: that is recorded beside the pin's
    /// manifest (synced first, so a crash cannot lose it), then the local copy is released.
    pub fn archived(&self, name: &str, location: &str) {
        let mut pins = self.pins();
        let Some(info) = pins.get_mut(name) else { return };
        if info.state != PinState::Pinned {
            return;
        }
        let Ok(pin) = open_pins_dir(&self.ring_dir).and_then(|d| d.child(name)) else { return };
        let record = ArchiveRecord {
            location: location.to_string(),
            archived_at: rfc3339(crate::timefmt::unix_now_ns()),
        };
        let record = serde_json::to_vec(&record).expect("a record serializes");
        let released = write_synced(&self.pin_dir(name).join(ARCHIVED_RECORD), &record)
            .and_then(|()| release_local_copy(&pin));
        if let Err(e) = released {
            eprintln!("ringcap: warning: pin {name} is archived, but its local copy was not released: {e}");
        }
        let left = pin.files_bytes();
        self.pinned_bytes.fetch_sub(info.bytes.saturating_sub(left), Ordering::Relaxed);
        info.bytes = left;
        info.upload_error = None;
        if read_record::<ArchiveRecord>(&pin, ARCHIVED_RECORD).is_ok() {
            info.state = PinState::Archived;
            info.archive = Some(location.to_string());
        }
    }
}

/// The pins' directory of the ring in `ring_dir`, created if missing, opened without
/// following a symlink (one planted there is refused, with what to do).
fn open_pins_dir(ring_dir: &Path) -> std::io::Result<Dir> {
    let ring = Dir::open(ring_dir)?;
    match ring.kind(PINS_DIR)? {
        Some(Kind::Dir) => {}
        None => match std::fs::create_dir(ring_dir.join(PINS_DIR)) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        },
        Some(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a directory (a symbolic link?): ringcap never follows one; remove it",
                    ring_dir.join(PINS_DIR).display()
                ),
            ))
        }
    }
    ring.child(PINS_DIR)
}

/// `pin-20261202T101500Z`: the window's start.
fn default_name(window: Window) -> String {
    let stamp = rfc3339(window.since_ns);
    let compact: String = stamp.chars().take(19).filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("pin-{compact}Z")
}

/// A pin's manifest.
pub fn read_manifest(pin_dir: &Path) -> Result<PinManifest, String> {
    let bytes =
        nofollow::read_bounded(&pin_dir.join(PIN_MANIFEST), MAX_RECORD_BYTES).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// A record of a pin's directory (its manifest, its archive record).
fn read_record<T: serde::de::DeserializeOwned>(pin: &Dir, name: &str) -> Result<T, String> {
    let bytes = pin.read_bounded(name, MAX_RECORD_BYTES).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// The file of a pin's [`ArchiveRecord`].
pub const ARCHIVED_RECORD: &str = "archived.json";

/// Removes the pin directory `name` of `pins`: only the files ringcap writes there, then
/// the directory if that empties it. Never follows a symlink.
fn remove_pin_dir(pins: &Dir, name: &str) -> std::io::Result<()> {
    match pins.child(name) {
        Ok(pin) => remove_pin_files(&pin, &[])?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        // A symlink or a file posing as a pin: not ringcap's, left alone.
        Err(_) => return Ok(()),
    }
    pins.remove_dir(name)
}

/// Removes an archived pin's data, keeping its manifest and the record of the archive.
fn release_local_copy(pin: &Dir) -> std::io::Result<()> {
    remove_pin_files(pin, &[PIN_MANIFEST, ARCHIVED_RECORD])
}

/// Removes the files ringcap writes in a pin's directory (the data files its manifest
/// lists, their sidecars, the pin manifest, the archive record) but those in `keep`.
fn remove_pin_files(pin: &Dir, keep: &[&str]) -> std::io::Result<()> {
    let ours = |name: &str| {
        crate::storage::is_data_file(name)
            || crate::storage::index::SIDECAR_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
            || name == PIN_MANIFEST
            || name == ARCHIVED_RECORD
            || name == crate::storage::manifest::MANIFEST_NAME
            || name == format!(".{}.tmp", crate::storage::manifest::MANIFEST_NAME)
    };
    for name in pin.names()? {
        if ours(&name) && !keep.contains(&name.as_str()) && pin.kind(&name)? == Some(Kind::File) {
            pin.remove_file(&name)?;
        }
    }
    Ok(())
}

/// A file's length and SHA-256 (hex).
pub fn file_digest(path: &Path) -> std::io::Result<(u64, String)> {
    digest(nofollow::open_regular(path)?)
}

/// The length and SHA-256 (hex) of what `file` holds from where it is read on.
pub fn digest(mut file: std::fs::File) -> std::io::Result<(u64, String)> {
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((total, hex(&hasher.finalize())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    // A symlink planted in the pin's place is refused, never written through.
    let mut file = nofollow::open_for_writing(path, nofollow::Write::Replace)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Pulled packets into a ring writer: the pin's data file, framed and indexed like the
/// ring's, in the ring's format.
struct RingOut {
    ring: RingWriter,
    batch: Batch,
    counters: Arc<StorageCounters>,
    /// pcapng: the pin's interfaces, by interface id (classic pcap when `None`).
    interfaces: Option<Vec<String>>,
    /// Bytes this copy has written and added to `pinned` so far.
    counted: Arc<AtomicU64>,
    /// The bytes all pins hold, which the ring keeps room for.
    pinned: Arc<AtomicU64>,
    /// `--max-pinned`.
    max_pinned: Option<u64>,
}

impl RingOut {
    /// Stores the batch and counts the bytes it took, at once, in the pins' total: the
    /// ring makes room for them, and for nothing the pin does not take.
    fn write_batch(&mut self) -> std::io::Result<()> {
        self.ring.write(&mut self.batch)?;
        self.batch = Batch::empty(std::mem::take(&mut self.batch.records));
        let written = self.counters.bytes_written.load(Ordering::Relaxed);
        let new = written.saturating_sub(self.counted.load(Ordering::Relaxed));
        self.counted.fetch_add(new, Ordering::Relaxed);
        let pinned = self.pinned.fetch_add(new, Ordering::Relaxed) + new;
        if let Some(limit) = self.max_pinned.filter(|&limit| pinned > limit) {
            return Err(std::io::Error::other(format!(
                "the pin took pins past the {limit} bytes they may hold (--max-pinned, half of --max-disk unless \
                 given): unpin or archive older pins, or narrow the window or the filter"
            )));
        }
        Ok(())
    }
}

impl PacketOut for RingOut {
    fn packet(&mut self, record: &RecordRef<'_>, interface: &str) -> std::io::Result<()> {
        let data = &record.data[..record.data.len().min(DEFAULT_SNAPLEN as usize)];
        match &self.interfaces {
            Some(interfaces) => {
                let id = interfaces.iter().position(|known| known == interface).unwrap_or(0);
                pcap::write_enhanced_packet(
                    &mut self.batch.records,
                    id as u32,
                    record.timestamp,
                    record.orig_len,
                    data,
                    record.direction,
                )?;
            }
            None => pcap::write_record(
                &mut self.batch.records,
                record.timestamp,
                record.orig_len.max(data.len() as u32),
                data,
                DEFAULT_SNAPLEN,
            )?,
        }
        self.batch.count(duration_ns(record.timestamp));
        if self.batch.records.len() >= PIN_FRAME_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if self.batch.packets > 0 {
            self.write_batch()?;
        }
        self.ring.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failed pins stay listed with their reason for a while, then go; and only the newest
    /// few are kept, so failures cannot fill the list.
    #[test]
    fn failed_pins_expire_from_the_list() {
        let dir = std::env::temp_dir().join(format!("ringcap-pins-expire-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = PinStore::open(
            &dir,
            PinLimits::default(),
            Vec::new(),
            "gw".into(),
            Compression::None,
            Arc::default(),
        )
        .unwrap();
        {
            let mut pins = store.pins.lock().unwrap();
            for i in 0..MAX_FAILED_LISTED + 4 {
                let mut info = PinInfo::new(&format!("f{i:02}"), PinState::Failed("no room".into()), 0, None);
                info.failed_at = Instant::now().checked_sub(Duration::from_secs(i as u64));
                pins.insert(info.name.clone(), info);
            }
            let mut old = PinInfo::new("old", PinState::Failed("no room".into()), 0, None);
            old.failed_at = Instant::now().checked_sub(FAILED_PIN_KEEP + Duration::from_secs(1));
            pins.insert("old".into(), old);
        }
        let listed: Vec<String> = store.list().into_iter().map(|p| p.name).collect();
        let newest: Vec<String> = (0..MAX_FAILED_LISTED).map(|i| format!("f{i:02}")).collect();
        assert_eq!(listed, newest);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

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
//! (`RingConfig::pinned_bytes`, kept by the store) to its own size, so `--max-disk` covers both, and pins together may hold at most
//! `--max-pinned` (half of `--max-disk` by default). An unfiltered pin whose size (the
//! stored bytes of the window's frames) would pass that, or leave less than `--min-free`,
//! is refused at once; a filtered one is copied within the room left and fails, saying
//! why, if it outgrows it.
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::Digest;

use super::{host_name, PIN_MANIFEST};
use crate::capture::Batch;
use crate::filter::Filter;
use crate::output::Sink;
use crate::pcap::{self, RecordRef, DEFAULT_SNAPLEN};
use crate::retrieve::out::PacketOut;
use crate::retrieve::pull::{pull_files, ring_files, PullLimits, PullReport};
use crate::retrieve::stats::window_stats;
use crate::retrieve::window::Window;
use crate::storage::budget::fs_space;
use crate::storage::frames::{duration_ns, DataFile};
use crate::storage::naming::NameTemplate;
use crate::storage::ring::{RingConfig, RingWriter, StorageCounters};
use crate::storage::Compression;
use crate::timefmt::rfc3339;

/// The pins' directory inside the ring's.
pub const PINS_DIR: &str = "pins";
/// Frames of a pin: as the ring's default.
const PIN_FRAME_BYTES: usize = 1 << 20;

/// Why a pin was refused or could not be made; the API answers with the status given.
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
    #[error("{0}")]
    NoRoom(String),
    #[error("{0}")]
    Io(String),
}

impl PinError {
    pub fn status(&self) -> u16 {
        match self {
            PinError::BadRequest(_) => 400,
            PinError::NotFound(_) => 404,
            PinError::Exists(_) | PinError::Busy(_) => 409,
            PinError::NoRoom(_) => 507,
            PinError::Io(_) => 500,
        }
    }
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
    /// Bytes on local disk (the estimate while copying).
    pub bytes: u64,
    /// The manifest once the pin is whole.
    pub manifest: Option<Value>,
    /// Where the archive holds it (`s3://BUCKET/KEY/`), once archived.
    pub archive: Option<String>,
}

impl PinInfo {
    pub fn to_json(&self) -> Value {
        let mut value = json!({ "name": self.name, "state": self.state.label(), "bytes": self.bytes });
        if let PinState::Failed(why) = &self.state {
            value["error"] = json!(why);
        }
        if let Some(manifest) = &self.manifest {
            value["manifest"] = manifest.clone();
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
        compression: Compression,
        pinned_bytes: Arc<AtomicU64>,
    ) -> std::io::Result<Arc<Self>> {
        let dir = ring_dir.join(PINS_DIR);
        std::fs::create_dir_all(&dir)?;
        let mut pins = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Some(partial) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".partial")) {
                if check_name(partial).is_ok() {
                    remove_pin_dir(&entry.path())?;
                }
                continue;
            }
            if check_name(&name).is_err() {
                continue;
            }
            let path = entry.path();
            let Ok(manifest) = read_manifest(&path) else { continue };
            let archive = read_archived_record(&path);
            if archive.is_some() {
                // Archived: a release cut by a crash is finished.
                release_local_copy(&path)?;
            }
            let state = if archive.is_some() { PinState::Archived } else { PinState::Pinned };
            let bytes = dir_bytes(&path);
            pins.insert(name.clone(), PinInfo { name, state, bytes, manifest: Some(manifest), archive });
        }
        pinned_bytes.store(pins.values().map(|p| p.bytes).sum(), Ordering::Relaxed);
        Ok(Arc::new(PinStore {
            ring_dir: ring_dir.to_path_buf(),
            dir,
            limits,
            interfaces,
            compression,
            pinned_bytes,
            pins: Mutex::new(pins),
            whole: Mutex::new(None),
        }))
    }

    /// Gives the pins' directory and files to the user the daemon is about to become (`-Z`).
    pub fn hand_over(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::chown(&self.dir, Some(uid), Some(gid))?;
        for pin in std::fs::read_dir(&self.dir)?.flatten() {
            std::os::unix::fs::chown(pin.path(), Some(uid), Some(gid))?;
            for file in std::fs::read_dir(pin.path()).into_iter().flatten().flatten() {
                std::os::unix::fs::chown(file.path(), Some(uid), Some(gid))?;
            }
        }
        Ok(())
    }

    /// Where the pin `name` is on local disk.
    pub fn pin_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Sends the name of every pin that is (or becomes) whole to `sender`, starting with
    /// those already on disk.
    pub fn notify(&self, sender: crossbeam_channel::Sender<String>) {
        for (name, pin) in self.pins.lock().expect("pins").iter() {
            if pin.state == PinState::Pinned {
                let _ = sender.send(name.clone());
            }
        }
        *self.whole.lock().expect("pins") = Some(sender);
    }

    pub fn list(&self) -> Vec<PinInfo> {
        self.pins.lock().expect("pins").values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<PinInfo> {
        self.pins.lock().expect("pins").get(name).cloned()
    }

    /// Checks a pin against the limits and starts copying it on a thread of its own;
    /// returns at once with the pin in state `copying`.
    pub fn pin(self: &Arc<Self>, mut request: PinRequest) -> Result<PinInfo, PinError> {
        let filter = Filter::compile(&request.expression).map_err(|e| PinError::BadRequest(e.to_string()))?;
        // A pin holds what is captured already: a window open at its end stops now.
        let now = crate::retrieve::window::now().as_nanos() as u64;
        request.window.until_ns = request.window.until_ns.min(now + 1);
        let name = request.name.clone().unwrap_or_else(|| default_name(request.window));
        check_name(&name)?;
        // Opened now, before the reservation lets the ring remove old files: the copy reads
        // these even if rotation removes them meanwhile.
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
        let (info, reserve, room) = {
            let mut pins = self.pins.lock().expect("pins");
            if pins.get(&name).is_some_and(|p| !matches!(p.state, PinState::Failed(_))) {
                return Err(PinError::Exists(name));
            }
            let pinned = self.pinned_bytes.load(Ordering::Relaxed);
            let room = self.limits.max_pinned.map_or(u64::MAX, |limit| limit.saturating_sub(pinned));
            // Unfiltered, the estimate is what the copy takes; filtered, it is an upper bound
            // and the copy itself stops at the room left.
            if estimate > room && request.expression.trim().is_empty() {
                return Err(PinError::NoRoom(format!(
                    "pinning this window takes {estimate} bytes and pins hold {pinned} of the {} they may \
                     (--max-pinned, half of --max-disk unless given): unpin or archive older pins, or narrow the \
                     window or add a filter",
                    self.limits.max_pinned.unwrap_or_default()
                )));
            }
            let reserve = estimate.min(room);
            let available = fs_space(&self.dir).map_err(|e| PinError::Io(e.to_string()))?.available;
            if available < reserve + self.limits.min_free {
                return Err(PinError::NoRoom(format!(
                    "pinning this window takes up to {reserve} bytes and the filesystem has {available} free, \
                     of which {} must stay free (--min-free): free space, or narrow the window or the filter",
                    self.limits.min_free
                )));
            }
            // Reserved now, so the ring makes room and a second pin sees this one.
            self.pinned_bytes.fetch_add(reserve, Ordering::Relaxed);
            let info = PinInfo {
                name: name.clone(),
                state: PinState::Copying,
                bytes: reserve,
                manifest: None,
                archive: None,
            };
            pins.insert(name.clone(), info.clone());
            (info, reserve, room)
        };
        let store = Arc::clone(self);
        std::thread::Builder::new()
            .name("pin".into())
            .spawn(move || {
                // A recompressed copy may come out a little larger than the frames it is from.
                let cap = room.min(reserve.saturating_add(reserve / 8 + (1 << 20)));
                let outcome = store.copy(&name, &request, &filter, (files, opened), cap);
                store.copied(&name, reserve, outcome);
            })
            .map_err(|e| PinError::Io(e.to_string()))?;
        Ok(info)
    }

    /// The ring's files that hold packets of `window`, opened; what could not be opened is
    /// in the report.
    fn open_window(&self, window: Window) -> std::io::Result<(Vec<DataFile>, PullReport)> {
        let mut report = PullReport::default();
        let mut files = Vec::new();
        for path in ring_files(&self.ring_dir)? {
            match DataFile::open(&path) {
                Ok(file) if file.time_range().is_some_and(|(f, l)| window.overlaps(f, l)) => files.push(file),
                Ok(_) => {}
                Err(e) => report.unreadable(&path.display(), &e),
            }
        }
        Ok((files, report))
    }

    /// Copies the window into `.NAME.partial/`, writes its statistics and manifest, and
    /// renames it into place; returns the pin's manifest and size. A copy that outgrows
    /// `room` (the bytes reserved for it) stops and fails with the reason.
    fn copy(
        &self,
        name: &str,
        request: &PinRequest,
        filter: &Filter,
        (files, opened): (Vec<DataFile>, PullReport),
        room: u64,
    ) -> Result<(Value, u64), String> {
        let partial = self.dir.join(format!(".{name}.partial"));
        let _ = remove_pin_dir(&partial);
        let made = (|| -> Result<(Value, u64), String> {
            let template = NameTemplate::parse(name).map_err(|e| e.to_string())?;
            let config = RingConfig {
                frame_bytes: PIN_FRAME_BYTES,
                frame_age: Duration::from_secs(3600),
                compress_threads: 1,
                ..RingConfig::single_file(&partial, template, self.compression)
            };
            let counters = Arc::new(StorageCounters::default());
            let ring = RingWriter::open(config, Arc::clone(&counters)).map_err(|e| e.to_string())?;
            let mut out = RingOut {
                ring,
                batch: Batch::empty(Vec::with_capacity(PIN_FRAME_BYTES + 65_536)),
                counters: Arc::clone(&counters),
                room,
            };
            let report = pull_files(files, opened, request.window, filter, PullLimits::default(), &mut out)
                .map_err(|e| e.to_string())?;
            let data = out.ring.current_path().map(Path::to_path_buf);
            drop(out);
            let lost = counters.packets_lost.load(Ordering::Relaxed);
            if lost > 0 {
                return Err(format!("{lost} packets could not be written to the pin (disk full?)"));
            }
            let Some(data) = data else {
                return Err("the window holds no packet that the filter selects".into());
            };
            if report.packets == 0 {
                return Err("the window holds no packet that the filter selects".into());
            }
            let stats_file = partial.join(format!("{name}.stats.json"));
            let stats =
                window_stats(&self.ring_dir, request.window).unwrap_or_else(|why| json!({ "error": why }));
            std::fs::write(&stats_file, serde_json::to_vec_pretty(&stats).unwrap_or_default())
                .map_err(|e| e.to_string())?;
            let index = crate::storage::index::index_path(&data);
            let mut files = Vec::new();
            for path in [&data, &index, &stats_file] {
                let (bytes, sha256) = file_digest(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                files.push(json!({ "name": file_name, "bytes": bytes, "sha256": sha256 }));
            }
            let opened = DataFile::open(&data).map_err(|e| e.to_string())?;
            let (first, last) = opened.time_range().unwrap_or_default();
            let manifest = json!({
                "format": "ringcap-pin/1",
                "name": name,
                "host": host_name(),
                "interfaces": self.interfaces,
                "created": rfc3339(crate::retrieve::window::now().as_nanos() as u64),
                "window": {
                    "since": rfc3339(request.window.since_ns), "until": rfc3339(request.window.until_ns),
                    "since_ns": request.window.since_ns, "until_ns": request.window.until_ns,
                },
                "filter": request.expression,
                "packets": report.packets,
                "first_packet": rfc3339(first), "last_packet": rfc3339(last),
                "first_packet_ns": first, "last_packet_ns": last,
                "data": data.file_name().and_then(|n| n.to_str()),
                "files": files,
                "pull": {
                    "files_read": report.files_read, "frames_read": report.frames_read,
                    "frames_skipped": report.frames_skipped, "frames_damaged": report.frames_damaged,
                    "files_unreadable": report.files_unreadable, "warnings": report.warnings,
                },
            });
            write_synced(
                &partial.join(PIN_MANIFEST),
                &serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
            )
            .map_err(|e| e.to_string())?;
            // The files' names too, before the directory is renamed into place.
            std::fs::File::open(&partial).and_then(|d| d.sync_all()).map_err(|e| e.to_string())?;
            let bytes = dir_bytes(&partial);
            Ok((manifest, bytes))
        })();
        match made {
            Ok(made) => {
                let target = self.pin_dir(name);
                std::fs::rename(&partial, &target)
                    .map_err(|e| format!("renaming the pin into place: {e}"))?;
                let _ = std::fs::File::open(&self.dir).and_then(|d| d.sync_all());
                Ok(made)
            }
            Err(why) => {
                let _ = remove_pin_dir(&partial);
                Err(why)
            }
        }
    }

    /// Records the end of a copy: the reservation becomes the pin's real size.
    fn copied(&self, name: &str, reserved: u64, outcome: Result<(Value, u64), String>) {
        let mut pins = self.pins.lock().expect("pins");
        self.pinned_bytes.fetch_sub(reserved, Ordering::Relaxed);
        let info = match outcome {
            Ok((manifest, bytes)) => {
                self.pinned_bytes.fetch_add(bytes, Ordering::Relaxed);
                PinInfo {
                    name: name.to_string(),
                    state: PinState::Pinned,
                    bytes,
                    manifest: Some(manifest),
                    archive: None,
                }
            }
            Err(why) => {
                eprintln!("ringcap: warning: pin {name:?} failed: {why}");
                PinInfo {
                    name: name.to_string(),
                    state: PinState::Failed(why),
                    bytes: 0,
                    manifest: None,
                    archive: None,
                }
            }
        };
        let whole = info.state == PinState::Pinned;
        pins.insert(name.to_string(), info);
        drop(pins);
        if whole {
            if let Some(sender) = self.whole.lock().expect("pins").as_ref() {
                let _ = sender.send(name.to_string());
            }
        }
    }

    /// Removes a pin's local copy (its files go back to rotation's budget).
    pub fn unpin(&self, name: &str) -> Result<PinInfo, PinError> {
        let mut pins = self.pins.lock().expect("pins");
        let info = pins.get(name).cloned().ok_or_else(|| PinError::NotFound(name.to_string()))?;
        match info.state {
            PinState::Copying => return Err(PinError::Busy(name.to_string())),
            PinState::Pinned | PinState::Archived => {
                remove_pin_dir(&self.pin_dir(name)).map_err(|e| PinError::Io(e.to_string()))?;
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
        let mut pins = self.pins.lock().expect("pins");
        let Some(info) = pins.get_mut(name) else { return };
        if info.state != PinState::Pinned {
            return;
        }
        let dir = self.pin_dir(name);
        let record = json!({ "location": location, "archived_at": rfc3339(crate::retrieve::window::now().as_nanos() as u64) });
        let released = write_synced(&dir.join(ARCHIVED_RECORD), record.to_string().as_bytes())
            .and_then(|()| release_local_copy(&dir));
        if let Err(e) = released {
            eprintln!("ringcap: warning: pin {name} is archived, but its local copy was not released: {e}");
        }
        let left = dir_bytes(&dir);
        self.pinned_bytes.fetch_sub(info.bytes.saturating_sub(left), Ordering::Relaxed);
        info.bytes = left;
        if read_archived_record(&dir).is_some() {
            info.state = PinState::Archived;
            info.archive = Some(location.to_string());
        }
    }
}

/// `pin-20261202T101500Z`: the window's start.
fn default_name(window: Window) -> String {
    let stamp = rfc3339(window.since_ns);
    let compact: String = stamp.chars().take(19).filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("pin-{compact}Z")
}

/// A pin's manifest.
pub fn read_manifest(pin_dir: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(pin_dir.join(PIN_MANIFEST)).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// Where an archived pin went, written beside its manifest once the archive holds it.
pub const ARCHIVED_RECORD: &str = "archived.json";

/// The location in an archived pin's record; `None` for a pin not archived.
fn read_archived_record(pin_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(pin_dir.join(ARCHIVED_RECORD)).ok()?;
    let record: Value = serde_json::from_str(&text).ok()?;
    record["location"].as_str().map(str::to_string)
}

/// Removes a pin's directory: only the files ringcap writes there, then the directory if
/// that empties it.
fn remove_pin_dir(dir: &Path) -> std::io::Result<()> {
    remove_pin_files(dir, &[])?;
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound && e.raw_os_error() != Some(libc::ENOTEMPTY) => {
            Err(e)
        }
        _ => Ok(()),
    }
}

/// Removes an archived pin's data, keeping its manifest and the record of the archive.
fn release_local_copy(dir: &Path) -> std::io::Result<()> {
    remove_pin_files(dir, &[PIN_MANIFEST, ARCHIVED_RECORD])
}

/// Removes the files ringcap writes in a pin's directory (the data files its manifest
/// lists, their sidecars, the pin manifest, the archive record) but those in `keep`.
fn remove_pin_files(dir: &Path, keep: &[&str]) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let ours = |name: &str| {
        crate::storage::is_data_file(name)
            || name.ends_with(".idx")
            || name.ends_with(".stats.json")
            || name.ends_with(".snapshots.jsonl")
            || name == PIN_MANIFEST
            || name == ARCHIVED_RECORD
            || name == crate::storage::manifest::MANIFEST_NAME
            || name == format!(".{}.tmp", crate::storage::manifest::MANIFEST_NAME)
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        if ours(&name) && !keep.contains(&name.as_str()) && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// A file's length and SHA-256 (hex).
pub fn file_digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
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
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Pulled packets into a ring writer: the pin's data file, framed and indexed like the ring's.
struct RingOut {
    ring: RingWriter,
    batch: Batch,
    counters: Arc<StorageCounters>,
    /// The most bytes the pin may write.
    room: u64,
}

impl RingOut {
    fn write_batch(&mut self) -> std::io::Result<()> {
        self.ring.write(&mut self.batch)?;
        self.batch = Batch::empty(std::mem::take(&mut self.batch.records));
        let written = self.counters.bytes_written.load(Ordering::Relaxed);
        if written > self.room {
            return Err(std::io::Error::other(format!(
                "the pin outgrew the {} bytes left for pins (--max-pinned, half of --max-disk unless given): \
                 unpin or archive older pins, or narrow the window or the filter",
                self.room
            )));
        }
        Ok(())
    }
}

impl PacketOut for RingOut {
    fn packet(&mut self, record: &RecordRef<'_>, _interface: &str) -> std::io::Result<()> {
        let data = &record.data[..record.data.len().min(DEFAULT_SNAPLEN as usize)];
        pcap::write_record(
            &mut self.batch.records,
            record.timestamp,
            record.orig_len.max(data.len() as u32),
            data,
            DEFAULT_SNAPLEN,
        )?;
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

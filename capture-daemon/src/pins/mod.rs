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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::filter::Filter;
use crate::pcap;
use crate::records::{ArchiveRecord, PinManifest, PinTrigger};
use crate::retrieve::window::Window;
use crate::storage::budget::fs_space;
use crate::storage::nofollow::{self, Dir, Kind};
use crate::storage::ring::RingConfig;
use crate::storage::Compression;
use crate::timefmt::rfc3339;

mod copy;
mod files;

pub use files::{digest, file_digest, hex, read_manifest, ARCHIVED_RECORD};
use files::{open_pins_dir, read_record, release_local_copy, remove_pin_dir, write_synced};

/// The name of a pin's manifest, locally and in the archive: written last, so its presence
/// says the pin is whole.
pub const PIN_MANIFEST: &str = "manifest.json";
/// The pins' directory inside the ring's.
pub const PINS_DIR: &str = "pins";
/// Frames of a pin: as the ring's default.
const PIN_FRAME_BYTES: usize = 1 << 20;
/// Pins copied at once at most; one more is refused until one is done.
pub const MAX_COPYING: usize = 2;
/// Pins growing with capture (a trigger's window reaching into the future) at once at most.
pub const MAX_GROWING: usize = 64;
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
    pub fn label(&self) -> &'static str {
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
    /// While a pin whose window ends in the future is copied: that end (ns of Unix time).
    pub growing_until: Option<u64>,
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
            growing_until: None,
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
        if let (PinState::Copying, Some(until)) = (&self.state, self.growing_until) {
            value["growing_until"] = json!(rfc3339(until));
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
    /// What fired the pin (a trigger rule or an alert). Such a pin's window may end in the
    /// future: the pin grows with capture until then; past its room (`--max-pinned`,
    /// `max_bytes`) it ends early, keeping what fits.
    pub trigger: Option<PinTrigger>,
    /// The most this pin may take (what its rule's `max_bytes` leaves).
    pub max_bytes: Option<u64>,
}

/// How much pins may hold.
#[derive(Clone, Copy, Debug, Default)]
pub struct PinLimits {
    /// Bytes all pins together may hold (`--max-pinned`).
    pub max_pinned: Option<u64>,
    /// Free space a pin must leave on the filesystem (`--min-free`).
    pub min_free: u64,
    /// How long after its time stamp a packet is surely in the ring's files (frame
    /// interval and reorder window, and a margin): a growing pin copies no closer to now.
    pub settle: Duration,
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
    /// Capture has stopped: growing pins end now, with all that was captured.
    closing: AtomicBool,
    /// Growing pins unpinned: they stop, and go.
    unpinned: Mutex<std::collections::BTreeSet<String>>,
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
                    eprintln!(
                        "ringcap: warning: pin {partial} was still being copied when ringcap last stopped: its partial \
                         copy is removed; the ring holds its window until rotation takes it, so pin it again"
                    );
                    remove_pin_dir(&pins_dir, &name)?;
                }
                continue;
            }
            if check_name(&name).is_err() {
                continue;
            }
            let Ok(pin) = pins_dir.child(&name) else { continue };
            let manifest = match read_record::<PinManifest>(&pin, PIN_MANIFEST) {
                Ok(manifest) => Some(manifest),
                // No manifest: not a pin (a crash before the rename leaves `.NAME.partial`).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    eprintln!(
                        "ringcap: warning: pin {name}: its {PIN_MANIFEST} cannot be read ({e}): listed without \
                         it and never uploaded; unpin it to remove what ringcap wrote there"
                    );
                    None
                }
            };
            let archive = read_record::<ArchiveRecord>(&pin, ARCHIVED_RECORD).ok().map(|r| r.location);
            if archive.is_some() {
                // Archived: a release cut by a crash is finished.
                release_local_copy(&pin)?;
            }
            let state = if archive.is_some() { PinState::Archived } else { PinState::Pinned };
            let mut info = PinInfo::new(&name, state, pin.files_bytes(), manifest);
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
            closing: AtomicBool::new(false),
            unpinned: Mutex::default(),
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
        // A pin holds what is captured already: a window open at its end stops now, unless
        // a trigger asked for the minutes after it too (the pin then grows until its end).
        let now = crate::timefmt::unix_now_ns();
        let grows = request.trigger.is_some()
            && request.window.until_ns > now
            && !self.closing.load(Ordering::Relaxed);
        if !grows {
            request.window.until_ns = request.window.until_ns.min(now + 1);
        }
        let name = request.name.clone().unwrap_or_else(|| default_name(request.window));
        check_name(&name)?;
        admit(&self.pins(), &name, grows)?;
        // Opened now: the copy reads these even if rotation removes them meanwhile.
        let opened_ns = crate::timefmt::unix_now_ns();
        let (files, opened) = self.open_window(request.window).map_err(|e| PinError::Io(e.to_string()))?;
        let estimate: u64 = files
            .iter()
            .flat_map(|file| &file.frames)
            .filter(|f| f.packets > 0 && request.window.overlaps(f.earliest_ns, f.latest_ns))
            .map(|f| f.len)
            .sum();
        if estimate == 0 && !grows {
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
            admit(&pins, &name, grows)?;
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
            let mut info = PinInfo::new(&name, PinState::Copying, 0, None);
            info.growing_until = grows.then_some(request.window.until_ns);
            pins.insert(name.clone(), info.clone());
            info
        };
        let store = Arc::clone(self);
        let counted = Arc::new(AtomicU64::new(0));
        let spawned = std::thread::Builder::new().name("pin".into()).spawn({
            let counted = Arc::clone(&counted);
            move || {
                let outcome = store.copy(&name, &request, &filter, (files, opened, opened_ns), &counted);
                store.copied(&name, counted.load(Ordering::Relaxed), outcome);
            }
        });
        if let Err(e) = spawned {
            self.pins().remove(&info.name);
            return Err(PinError::Io(e.to_string()));
        }
        Ok(info)
    }

    /// Whether the growing pin `name` was unpinned.
    fn cancelled(&self, name: &Option<String>) -> bool {
        let unpinned = self.unpinned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        name.as_ref().is_some_and(|name| unpinned.contains(name))
    }

    /// Records the end of a copy: what it counted while copying becomes the pin's real size.
    fn copied(&self, name: &str, counted: u64, outcome: Result<(PinManifest, u64), String>) {
        let mut pins = self.pins();
        self.pinned_bytes.fetch_sub(counted, Ordering::Relaxed);
        let unpinned = self.unpinned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name);
        if unpinned {
            // Unpinned while it grew: nothing of it is kept (a failed copy removed its
            // files; a whole one goes now).
            if outcome.is_ok() {
                if let Ok(pins_dir) = open_pins_dir(&self.ring_dir) {
                    let _ = remove_pin_dir(&pins_dir, name);
                }
            }
            pins.remove(name);
            return;
        }
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

    /// Capture has stopped: pins still growing end with what was captured, and this waits
    /// (up to `wait`) for every copy to be done, so none is cut by the exit.
    pub fn close(&self, wait: Duration) {
        self.closing.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + wait;
        while self.pins().values().any(|p| p.state == PinState::Copying) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The bytes held by the pins named `PREFIX-STAMP` (a trigger rule's).
    pub fn bytes_named(&self, prefix: &str) -> u64 {
        self.pins().values().filter(|p| stamped_by(&p.name, prefix)).map(|p| p.bytes).sum()
    }

    /// Removes a pin's local copy (its files go back to rotation's budget).
    pub fn unpin(&self, name: &str) -> Result<PinInfo, PinError> {
        let mut pins = self.pins();
        let info = pins.get(name).cloned().ok_or_else(|| PinError::NotFound(name.to_string()))?;
        match info.state {
            // A growing pin stops at its next piece, and goes.
            PinState::Copying if info.growing_until.is_some() => {
                self.unpinned
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(name.to_string());
                return Ok(info);
            }
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

/// Whether a pin named `name` may start now: no other of that name, and fewer than
/// [`MAX_COPYING`] copies at once; a growing pin waits for capture most of the time, so
/// those count apart, up to [`MAX_GROWING`].
fn admit(pins: &BTreeMap<String, PinInfo>, name: &str, grows: bool) -> Result<(), PinError> {
    if pins.get(name).is_some_and(|p| !matches!(p.state, PinState::Failed(_))) {
        return Err(PinError::Exists(name.to_string()));
    }
    let limit = if grows { MAX_GROWING } else { MAX_COPYING };
    let at_once =
        pins.values().filter(|p| p.state == PinState::Copying && p.growing_until.is_some() == grows).count();
    if at_once >= limit {
        return Err(PinError::TooMany(at_once));
    }
    Ok(())
}

/// `pin-20261202T101500Z`: the window's start.
fn default_name(window: Window) -> String {
    stamped_name("pin", window.since_ns)
}

/// Whether `name` is `PREFIX-STAMP` as [`stamped_name`] makes it (rule `a`'s pins are not
/// rule `a-b`'s).
fn stamped_by(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-')).is_some_and(|stamp| {
        stamp.len() == 16
            && stamp.char_indices().all(|(i, c)| match i {
                8 => c == 'T',
                15 => c == 'Z',
                _ => c.is_ascii_digit(),
            })
    })
}

/// `PREFIX-20261202T101500Z`: a pin named for a time (to the second, UTC).
pub fn stamped_name(prefix: &str, ns: u64) -> String {
    let stamp = rfc3339(ns);
    let compact: String = stamp.chars().take(19).filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("{prefix}-{compact}Z")
}

#[cfg(test)]
impl PinStore {
    /// A store without limits in a scratch directory of its own, `name` telling tests apart.
    pub(crate) fn scratch(name: &str) -> (Arc<Self>, PathBuf) {
        let dir = std::env::temp_dir().join(format!("ringcap-pins-{name}-{}", std::process::id()));
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
        (store, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rules_pins_are_named_by_its_name_and_a_stamp() {
        let name = stamped_name("a", 1_795_514_400_123_456_789);
        assert_eq!(name, "a-20261124T100000Z");
        assert!(stamped_by(&name, "a"));
        assert!(!stamped_by(&stamped_name("a-b", 0), "a"));
        assert!(!stamped_by("a-2026", "a"));
    }

    /// Failed pins stay listed with their reason for a while, then go; and only the newest
    /// few are kept, so failures cannot fill the list.
    #[test]
    fn failed_pins_expire_from_the_list() {
        let (store, dir) = PinStore::scratch("expire");
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

//! The always-on recorder (`ringcap run`) assembled from its parts: the ring directory made
//! private, the ring writer, the pins, the uploader and the API around one capture
//! session. The command line only parses and checks options into a [`DaemonConfig`]; tests
//! and benches can start a daemon in process the same way.
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, ApiConfig, ApiError, Sources};
use crate::archive::store::Archive;
use crate::archive::upload::{self, ArchiveCounters, UploadConfig, ARCHIVED_LIST};
use crate::archive::ArchiveError;
use crate::pins::{PinLimits, PinStore, PINS_DIR};
use crate::privileges::{Group, PrivilegeError};
use crate::session::{run_capture, CaptureOptions, CaptureSummary, SessionError};
use crate::storage::budget::{fs_space, DiskLimit};
use crate::storage::nofollow::Dir;
use crate::storage::ring::{RingConfig, RingWriter, SnapshotSource, StorageCounters};
use crate::storage::StorageError;
use crate::timefmt::unix_now_ns;
use crate::triggers::{self, Rule, Triggers};

/// Everything `ringcap run` needs, checked.
pub struct DaemonConfig {
    /// The capture session; its live counters feed the files' snapshots and the API.
    pub capture: CaptureOptions,
    /// The ring (its snapshot source and pinned bytes are the daemon's to fill).
    pub ring: RingConfig,
    /// The group that may read the ring (`--group`).
    pub group: Option<Group>,
    /// Most bytes the pins may hold together (`--max-pinned`; half of `--max-disk` if not
    /// given).
    pub max_pinned: Option<DiskLimit>,
    /// The name this gateway's pins and archived objects go under.
    pub host: String,
    pub api: Option<ApiConfig>,
    pub archive: Option<ArchiveSetup>,
    /// Trigger rules (`--trigger`, `[[trigger]]`), checked for syntax only: their series
    /// are checked against the daemon's before capture starts.
    pub triggers: Vec<Rule>,
    /// How often they are evaluated (`--trigger-interval`).
    pub trigger_interval: Duration,
}

/// How long the end of a run waits for pins still being copied (growing ones end with
/// what was captured).
const PIN_CLOSE_WAIT: Duration = Duration::from_secs(60);

/// Where and how pins (and with `ring_files`, closed ring files) are uploaded.
pub struct ArchiveSetup {
    pub archive: Archive,
    /// Bytes per second at most.
    pub rate: Option<u64>,
    /// Upload every closed ring file too (`--archive-ring`).
    pub ring_files: bool,
}

/// How a daemon ended: the session's summary and what the ring writer did.
pub struct DaemonOutcome {
    pub summary: CaptureSummary,
    pub storage: Arc<StorageCounters>,
}

/// Why the daemon could not start or run; each message says what failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("reading the size of {path}")]
    Space {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path}")]
    Dir {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the pins in {path}")]
    Pins {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("giving {what} to {user}")]
    HandOver {
        what: String,
        user: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--dir {0} is a symbolic link: ringcap never follows one into a ring; give the directory it points to"
    )]
    SymlinkedDir(PathBuf),
    #[error("--dir {0} is not a directory: pick a directory (it is made if missing)")]
    NotADirectory(PathBuf),
    #[error("starting the uploader")]
    Uploader(#[source] std::io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("{0}")]
    Trigger(String),
}

/// Runs the recorder until the session ends (a signal, -c, the interfaces gone).
/// `on_attached` hears which hooks each interface got once capture is up.
pub fn run(
    config: DaemonConfig,
    on_attached: impl FnOnce(&[(String, Vec<String>)]),
) -> Result<DaemonOutcome, DaemonError> {
    let DaemonConfig { capture, mut ring, group, max_pinned, host, api, archive, triggers, trigger_interval } =
        config;
    let dir = ring.dir.clone();
    let live = Arc::clone(&capture.live);
    let pinned = Arc::new(AtomicU64::new(0));
    let started = unix_now_ns();
    let snapshots = Arc::clone(&live);
    ring.snapshot = Some(SnapshotSource(Arc::new(move || snapshots.snapshot(started))));
    ring.pinned_bytes = Some(Arc::clone(&pinned));
    // The API's address first, then the budget against the filesystem the ring will be on,
    // read where the directory (or its nearest existing parent) is: a refused start makes
    // nothing.
    let listener = api.as_ref().map(api::bind).transpose()?;
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let space =
        fs_space(existing).map_err(|source| DaemonError::Space { path: existing.to_path_buf(), source })?;
    let mut pin_limits =
        pin_limits(max_pinned, ring.max_disk_bytes(space.total)?, ring.min_free, space.total)?;
    // A packet is in the ring's files once its reader has passed it on (the reorder
    // window) and its frame is written (a frame interval, or two when the tick falls badly).
    pin_limits.settle = ring.frame_age * 2 + capture.reader.in_flight + Duration::from_secs(1);
    let made_dir = !dir.exists();
    let made_pins = !dir.join(PINS_DIR).exists();
    prepare_dir(&dir, group.as_ref(), capture.run_as.as_ref())?;
    let compression = ring.compression;
    let counters = Arc::new(StorageCounters::default());
    let writer = RingWriter::open(ring, Arc::clone(&counters))?;
    // The directory is locked now: the pins in it are this run's to tidy.
    let pins =
        PinStore::open(&dir, pin_limits, capture.interfaces.clone(), host.clone(), compression, pinned)
            .map_err(|source| DaemonError::Pins { path: dir.join(PINS_DIR), source })?;
    if let Some(user) = &capture.run_as {
        let gid = group.as_ref().map_or(user.gid, |g| g.gid);
        let hand_over =
            |what: String, source| DaemonError::HandOver { what, user: user.name.clone(), source };
        writer
            .hand_over(user.uid, gid, &[ARCHIVED_LIST.name])
            .map_err(|e| hand_over(format!("the ring's files in {}", dir.display()), e))?;
        pins.hand_over(user.uid, gid).map_err(|e| hand_over("the pins".into(), e))?;
    }
    let archive_counters = match archive {
        Some(setup) => Some(start_archive(setup, &dir, host, Arc::clone(&pins))?),
        None => None,
    };
    if !writer.foreign_files().is_empty() {
        let names: Vec<String> = writer
            .foreign_files()
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        eprintln!(
            "ringcap: warning: {} capture files in {} were not written by ringcap and are left alone \
             (not counted by -W or --max-disk, never removed): {}",
            names.len(),
            dir.display(),
            names.join(", ")
        );
    }
    *crate::health::locked(&live.slots) = crate::health::slot_labels(&capture.interfaces, capture.direction);
    let sources = Arc::new(Sources {
        live,
        storage: Arc::clone(&counters),
        pins: Arc::clone(&pins),
        archive: archive_counters,
        api: Arc::default(),
        triggers: Triggers::new(&triggers, trigger_interval),
    });
    // Capture never started: the directories this start made go again, if nothing was
    // put in them.
    let undo_start = || {
        if made_pins {
            let _ = std::fs::remove_dir(dir.join(PINS_DIR));
        }
        if made_dir {
            let _ = std::fs::remove_dir(&dir);
        }
    };
    let compiled = triggers::compile_all(triggers, &sources, trigger_interval).map_err(|e| {
        undo_start();
        DaemonError::Trigger(e)
    })?;
    eprintln!(
        "ringcap: writing the ring in {} ({} files adopted from earlier runs)",
        dir.display(),
        writer.adopted().count()
    );
    if let (Some(config), Some(listener)) = (api, listener) {
        let bound = listener.addr;
        api::serve(listener, config, Arc::clone(&sources));
        eprintln!(
            "ringcap: HTTP API on http://{bound}/ (/v1/pcap, /v1/files, /v1/stats, /v1/flows, /v1/pins, /v1/triggers, /v1/alerts, /metrics)"
        );
    }
    if !compiled.is_empty() {
        eprintln!(
            "ringcap: {} trigger rules, evaluated every {:?}",
            compiled.len(),
            sources.triggers.interval
        );
    }
    // Rules read what capture counts: they start once it is attached.
    let evaluate = Arc::clone(&sources);
    let attached = move |hooks: &[(String, Vec<String>)]| {
        on_attached(hooks);
        if let Err(e) = triggers::start(compiled, evaluate) {
            eprintln!(
                "ringcap: warning: the trigger rules could not start ({e}): capture goes on without them"
            );
        }
    };
    // (The programs could not be loaded or attached.)
    let summary = run_capture(&capture, Box::new(writer), attached).inspect_err(|_| undo_start());
    sources.triggers.stop();
    pins.close(PIN_CLOSE_WAIT);
    Ok(DaemonOutcome { summary: summary?, storage: counters })
}

/// How much pins may hold, on a filesystem of `total` bytes: `max_pinned`, or half of the
/// ring's budget; and the free space they must leave (`--min-free`).
fn pin_limits(
    max_pinned: Option<DiskLimit>,
    max_disk: Option<u64>,
    min_free: Option<DiskLimit>,
    total: u64,
) -> Result<PinLimits, StorageError> {
    let max_pinned = max_pinned.map(|l| l.bytes(total)).or(max_disk.map(|b| b / 2));
    if let (Some(pinned), Some(disk)) = (max_pinned, max_disk) {
        if pinned >= disk {
            return Err(StorageError::BadLimit(format!(
                "--max-pinned ({pinned} bytes) must be less than --max-disk ({disk} bytes): the ring needs room too"
            )));
        }
    }
    Ok(PinLimits { max_pinned, min_free: min_free.map_or(0, |l| l.bytes(total)), settle: Duration::ZERO })
}

/// Makes the ring directory private: packets are secrets, so whatever the umask, what
/// ringcap writes is the daemon's user's (and with `group`, readable by that group). A new
/// directory belongs to the user who writes it.
fn prepare_dir(
    dir: &Path,
    group: Option<&Group>,
    run_as: Option<&crate::privileges::User>,
) -> Result<(), DaemonError> {
    let failed = |what, source| DaemonError::Dir { what, path: dir.to_path_buf(), source };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(DaemonError::SymlinkedDir(dir.to_path_buf()))
        }
        Ok(meta) if !meta.is_dir() => return Err(DaemonError::NotADirectory(dir.to_path_buf())),
        _ => {}
    }
    if let Some(user) = run_as {
        // Before anything is made: the user must get through the directories that exist.
        user.check_reachable(dir)?;
    }
    // SAFETY: umask(2) cannot fail.
    unsafe { libc::umask(if group.is_some() { 0o027 } else { 0o077 }) };
    if !dir.exists() {
        if let (Some(parent), Some(_)) = (dir.parent(), run_as) {
            // Parents made for the ring are searchable, so the daemon's user gets through
            // them (the ring's own directory stays private).
            make_searchable_parents(parent).map_err(|e| failed("making the parents of", e))?;
        }
        std::fs::create_dir_all(dir).map_err(|error| StorageError::Dir { dir: dir.to_path_buf(), error })?;
        let opened = Dir::open(dir).map_err(|e| failed("opening", e))?;
        opened.chmod(0o700).map_err(|e| failed("making private", e))?;
        if let Some(user) = run_as {
            opened.chown(user.uid, user.gid).map_err(|e| failed("handing over", e))?;
        }
    }
    if let Some(group) = group {
        let opened = Dir::open(dir).map_err(|e| failed("opening", e))?;
        opened.chown(u32::MAX, group.gid).map_err(|e| DaemonError::HandOver {
            what: dir.display().to_string(),
            user: format!("group {}", group.name),
            source: e,
        })?;
        opened.chmod(0o2750).map_err(|e| failed("making group-readable", e))?;
    }
    if let Some(user) = run_as {
        user.check_writable(dir)?;
    }
    Ok(())
}

/// Says at once whether the archive takes the credentials (a refusal is a warning: capture
/// goes on, uploads are retried and counted), and starts the uploader.
fn start_archive(
    setup: ArchiveSetup,
    ring_dir: &Path,
    host: String,
    pins: Arc<PinStore>,
) -> Result<Arc<ArchiveCounters>, DaemonError> {
    let archive = Arc::new(setup.archive);
    match archive.check() {
        Ok(()) => {
            // Another machine's keys are never written: refused now, while someone watches.
            upload::claim_host(&archive, &host)?;
            eprintln!("ringcap: archiving pins to {} as host {host}", archive.target);
        }
        Err(error) => eprintln!("ringcap: warning: archive: {error}; capture goes on, uploads are retried"),
    }
    let counters = Arc::new(ArchiveCounters::default());
    let config = UploadConfig {
        archive,
        host,
        ring_dir: ring_dir.to_path_buf(),
        pins,
        ring_files: setup.ring_files,
        rate: setup.rate,
    };
    upload::start(config, Arc::clone(&counters)).map_err(DaemonError::Uploader)?;
    Ok(counters)
}

/// Makes the missing directories of `path` (`mkdir -p`), each 0755 (set through the
/// directory itself, never through a symlink put in its place).
fn make_searchable_parents(path: &Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() || path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        make_searchable_parents(parent)?;
    }
    match std::fs::create_dir(path) {
        // Only a directory made here is opened up.
        Ok(()) => Dir::open(path)?.chmod(0o755),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

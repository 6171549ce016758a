//! A pin's copy: the window pulled out of the ring into a ring writer of its own, in
//! `.NAME.partial/`, then its statistics and manifest, then renamed into place.
use super::*;
use crate::capture::Batch;
use crate::output::Sink;
use crate::pcap::{RecordRef, DEFAULT_SNAPLEN};
use crate::records::{PinFile, PinPull, PinWindow, PIN_FORMAT};
use crate::retrieve::out::PacketOut;
use crate::retrieve::pull::{open_ring, pull_files, PullLimits, PullReport};
use crate::retrieve::stats::{window_stats, window_timeline};
use crate::storage::frames::{duration_ns, DataFile};
use crate::storage::naming::NameTemplate;
use crate::storage::ring::{RingWriter, StorageCounters};

impl PinStore {
    /// The ring's files that hold packets of `window`, opened; what could not be opened is
    /// in the report (see [`open_ring`]).
    pub(super) fn open_window(&self, window: Window) -> std::io::Result<(Vec<DataFile>, PullReport)> {
        let (mut files, report) = open_ring(&self.ring_dir)?;
        files.retain(|file| file.time_range().is_some_and(|(f, l)| window.overlaps(f, l)));
        Ok((files, report))
    }

    /// Pulls the window into `out`, the files opened at the request first. A window that
    /// ends in the future is pulled in pieces as capture stores it ([`PinLimits::settle`]
    /// behind now), each piece a time range of its own, so no packet is taken twice or
    /// missed; once capture stops ([`PinStore::close`]) the last piece ends at what was
    /// captured, and the pull says so.
    fn pull_window(
        &self,
        request: &PinRequest,
        filter: &Filter,
        opened_at_request: OpenedWindow,
        out: &mut RingOut,
    ) -> std::io::Result<PullReport> {
        let window = request.window;
        let mut first = Some(opened_at_request);
        let mut cursor = window.since_ns;
        let mut total = PullReport::default();
        loop {
            let closing = self.closing.load(Ordering::Relaxed);
            let now = crate::timefmt::unix_now_ns();
            // Once capture has stopped, everything it captured is stored.
            let stored = if closing { now } else { now.saturating_sub(duration_ns(self.limits.settle)) };
            let end = window.until_ns.min(stored);
            // The files opened at the request hold what was stored then: only the first
            // piece reads them, and only what was surely stored when they were opened.
            let opened = first.take();
            let end = match &opened {
                Some((_, _, opened_ns)) if !closing => {
                    end.min(opened_ns.saturating_sub(duration_ns(self.limits.settle)))
                }
                _ => end,
            };
            if end > cursor {
                let piece = Window { since_ns: cursor, until_ns: end };
                let (files, report) = match opened {
                    Some((files, report, _)) => (files, report),
                    None => self.open_window(piece)?,
                };
                match pull_files(files, report, piece, filter, PullLimits::default(), &mut Piece(out)) {
                    Ok(report) => total.add(report),
                    // A trigger's pin reached its room: it keeps what fits, and says so.
                    Err(_) if out.cut_short.is_some() => {
                        let why = out.cut_short.clone().unwrap_or_default();
                        total.warnings.push(format!("the pin ends early, at the room it had: {why}"));
                        break;
                    }
                    Err(e) => return Err(e),
                }
                cursor = end;
            }
            if self.cancelled(&request.name) {
                return Err(std::io::Error::other("unpinned while it grew"));
            }
            if cursor >= window.until_ns {
                break;
            }
            if closing {
                total.warnings.push(format!(
                    "capture stopped at {}: the pin ends there, before the {} it asked for",
                    rfc3339(cursor),
                    rfc3339(window.until_ns)
                ));
                break;
            }
            // The next piece, or the last one as soon as it is stored.
            let last = window.until_ns.saturating_add(duration_ns(self.limits.settle)).saturating_sub(now);
            std::thread::sleep(GROW_PIECE.min(Duration::from_nanos(last).max(Duration::from_millis(50))));
        }
        out.finish()?;
        Ok(total)
    }

    /// Copies the window into `.NAME.partial/`, writes its statistics and manifest, and
    /// renames it into place; returns the pin's manifest and size. What the copy writes is
    /// added to `counted` (and to the pins' bytes) as it goes; a copy that takes pins past
    /// `--max-pinned` stops and fails with the reason. Nothing of a failed copy is left.
    pub(super) fn copy(
        &self,
        name: &str,
        request: &PinRequest,
        filter: &Filter,
        (files, opened, opened_ns): OpenedWindow,
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
                keep_what_fits: request.trigger.is_some(),
                max_bytes: request.max_bytes,
                cut_short: None,
            };
            let report = self
                .pull_window(request, filter, (files, opened, opened_ns), &mut out)
                .map_err(|e| e.to_string())?;
            let data = out.ring.current_path().map(Path::to_path_buf);
            drop(out);
            let lost = counters.packets_lost.load(Ordering::Relaxed);
            if lost > 0 {
                return Err(format!("{lost} packets could not be written to the pin (disk full?)"));
            }
            let packets = counters.packets_written.load(Ordering::Relaxed);
            let (Some(data), true) = (data, packets > 0) else {
                return Err(if request.expression.trim().is_empty() {
                    "the ring holds no packet of the window".into()
                } else {
                    "the window holds no packet that the filter selects".into()
                });
            };
            let stats_file = crate::storage::index::stats_path(&data);
            let mut stats = window_stats(&self.ring_dir, request.window)
                .unwrap_or_else(|why| json!({ "error": why.to_string() }));
            if request.trigger.is_some() {
                // What led up to the firing and followed it, second by second.
                stats["timeline"] = match window_timeline(&self.ring_dir, request.window) {
                    Ok(points) => json!(points),
                    Err(why) => json!({ "error": why.to_string() }),
                };
            }
            if !request.expression.is_empty() {
                // The counts are the whole capture's (see `SCOPE`): the filter is named
                // so that nobody reads them as the pin's own.
                stats["filter_not_applied"] = json!(request.expression);
            }
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
                packets,
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
                trigger: request.trigger.clone(),
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
}

/// Pulled packets into a ring writer: the pin's data file, framed and indexed like the
/// ring's, in the ring's format.
pub(super) struct RingOut {
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
    /// A trigger's pin: past its room it ends early, keeping what fits, instead of failing.
    keep_what_fits: bool,
    /// The most this pin may take besides (what its rule's `max_bytes` leaves).
    max_bytes: Option<u64>,
    /// Why a pin that keeps what fits ended early.
    cut_short: Option<String>,
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

/// The ring's files that hold a window, opened, what could not be opened, and when (ns
/// of Unix time).
pub(super) type OpenedWindow = (Vec<DataFile>, PullReport, u64);

/// How often a growing pin takes the next piece of its window.
const GROW_PIECE: Duration = Duration::from_secs(1);

/// One piece of a growing pin: its end writes out what is batched, the pin's file stays open.
struct Piece<'a>(&'a mut RingOut);

impl PacketOut for Piece<'_> {
    fn packet(&mut self, record: &RecordRef<'_>, interface: &str) -> std::io::Result<()> {
        self.0.packet(record, interface)
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if self.0.batch.packets > 0 {
            self.0.write_batch()?;
        }
        Ok(())
    }
}

impl RingOut {
    /// A trigger's pin: why `record` would take it past its room, if it would. Counted by
    /// the bytes before compression, batched ones included, so the pin never takes more.
    fn past_room(&self, record: &RecordRef<'_>) -> Option<String> {
        const RECORD_HEADER: u64 = 32;
        let coming = self.batch.records.len() as u64 + record.data.len() as u64 + RECORD_HEADER;
        let pinned = self.pinned.load(Ordering::Relaxed);
        let counted = self.counted.load(Ordering::Relaxed);
        match (self.max_pinned, self.max_bytes) {
            (Some(limit), _) if pinned + coming > limit => {
                Some(format!("pins may hold {limit} bytes (--max-pinned, half of --max-disk unless given)"))
            }
            (_, Some(limit)) if counted + coming > limit => {
                Some(format!("its rule's pins may hold {limit} bytes more (max_bytes)"))
            }
            _ => None,
        }
    }
}

impl PacketOut for RingOut {
    fn packet(&mut self, record: &RecordRef<'_>, interface: &str) -> std::io::Result<()> {
        if self.keep_what_fits && self.cut_short.is_none() {
            if let Some(why) = self.past_room(record) {
                // What is batched fits: it goes in, and the pin ends there.
                if self.batch.packets > 0 {
                    self.write_batch()?;
                }
                self.cut_short = Some(why);
            }
        }
        if let Some(why) = &self.cut_short {
            return Err(std::io::Error::other(why.clone()));
        }
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

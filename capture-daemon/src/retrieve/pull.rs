//! Pulling a time window out of the ring: files -> index -> frames -> filtered packets.
//!
//! Only frames whose index entry overlaps the window are read and decoded; files wholly
//! outside it are skipped by their index alone. Damage never aborts a pull: a file or
//! frame that cannot be read is skipped with a warning and counted, the rest delivered.
use std::path::{Path, PathBuf};

use super::out::PacketOut;
use super::window::Window;
use crate::filter::prefilter::Prefilter;
use crate::filter::Filter;
use crate::storage::frames::{duration_ns, DataFile};
use crate::storage::manifest;

/// What a pull did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullReport {
    pub packets: u64,
    pub files_read: u64,
    pub frames_read: u64,
    /// Frames in the window left unread because their summary says no packet can match.
    pub frames_skipped: u64,
    /// Frames listed (by index or scan) that could not be decoded.
    pub frames_damaged: u64,
    /// Bytes skipped while scanning files: damaged frames, torn tails.
    pub bytes_damaged: u64,
    /// Files that could not be opened at all.
    pub files_unreadable: u64,
    pub warnings: Vec<String>,
}

/// Limits that keep one request from reading the whole disk.
#[derive(Clone, Copy, Debug)]
pub struct PullLimits {
    /// Stop after this many packets.
    pub max_packets: u64,
    /// Stop after decoding this many bytes of pcap.
    pub max_bytes: u64,
}

impl Default for PullLimits {
    fn default() -> Self {
        PullLimits { max_packets: u64::MAX, max_bytes: u64::MAX }
    }
}

/// The ring's own data files in `dir`, by name (names sort like creation). Other capture
/// files in the directory are not part of the ring (see `storage::manifest`).
pub fn ring_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = manifest::list(dir)?.0.own;
    files.sort();
    Ok(files)
}

/// Threads decompressing and filtering frames at most.
const MAX_WORKERS: usize = 16;

/// A frame decoded by a worker: its content and which of its records are to go out.
struct ReadFrame {
    content: Vec<u8>,
    /// Indexes of the records in the window that the filter selects, ascending.
    matches: Vec<usize>,
    /// The frame ends in a damaged record (those before it count).
    damaged: bool,
}

/// Decompresses frame `i` of `file` and filters its records (on a worker thread).
fn read_frame(file: &DataFile, i: usize, window: &Window, filter: &Filter) -> Result<ReadFrame, String> {
    let content = file.content(i).map_err(|e| e.to_string())?;
    let mut matches = Vec::new();
    let mut damaged = false;
    for (k, record) in file.format.records(file.records_of(i, &content)).enumerate() {
        let Ok(record) = record else {
            damaged = true;
            break;
        };
        if window.contains(duration_ns(record.timestamp)) && filter.matches(record.data, record.orig_len) {
            matches.push(k);
        }
    }
    Ok(ReadFrame { content, matches, damaged })
}

impl PullReport {
    /// Counts a file that could not be opened, with the reason.
    pub fn unreadable(&mut self, name: &dyn std::fmt::Display, why: &dyn std::fmt::Display) {
        self.files_unreadable += 1;
        self.warnings.push(format!("{name}: skipped: {why}"));
    }
}

/// Writes the packets of `window` selected by `filter`, in time order, to `out`: the
/// frames are decompressed and filtered on every core, and written in order.
/// Returns `Err` only when writing to `out` fails (e.g. the client went away).
pub fn pull(
    dir: &Path,
    window: Window,
    filter: &Filter,
    limits: PullLimits,
    out: &mut dyn PacketOut,
) -> std::io::Result<PullReport> {
    let mut report = PullReport::default();
    let mut files = Vec::new();
    for path in ring_files(dir)? {
        match DataFile::open(&path) {
            Ok(file) => files.push(file),
            Err(e) => report.unreadable(&path.display(), &e),
        }
    }
    pull_files(files, report, window, filter, limits, out)
}

/// [`pull`] over data files opened by the caller (the ring's, or the archive's), adding
/// to `report` (which may already count files that could not be opened).
pub fn pull_files(
    opened: Vec<DataFile>,
    mut report: PullReport,
    window: Window,
    filter: &Filter,
    limits: PullLimits,
    out: &mut dyn PacketOut,
) -> std::io::Result<PullReport> {
    let mut files = Vec::new();
    for file in opened {
        let path = file.path.display();
        if let Some(problem) = &file.index_problem {
            report.warnings.push(format!("{path}: {problem}"));
        }
        if file.damaged_bytes > 0 {
            report.bytes_damaged += file.damaged_bytes;
            report.warnings.push(format!(
                "{path}: {} damaged bytes skipped ({} at the end)",
                file.damaged_bytes, file.damaged_tail
            ));
        }
        if let Some((first, last)) = file.time_range().filter(|&(f, l)| window.overlaps(f, l)) {
            files.push((first, last, file));
        }
    }
    files.sort_by_key(|(first, last, _)| (*first, *last));
    let prefilter = Prefilter::of_expression(&filter.expression);
    // The frames to read, in output order: in the window, and not ruled out by their summary.
    let mut jobs = Vec::new();
    for (f, (_, _, file)) in files.iter().enumerate() {
        report.files_read += 1;
        for (i, frame) in file.frames.iter().enumerate() {
            if frame.packets == 0 || !window.overlaps(frame.earliest_ns, frame.latest_ns) {
                continue;
            }
            let summary = file.summaries.get(i).and_then(Option::as_ref);
            if let (Some(prefilter), Some(summary)) = (&prefilter, summary) {
                if !prefilter.may_match(summary) {
                    report.frames_skipped += 1;
                    continue;
                }
            }
            jobs.push((f, i));
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_WORKERS);
    let files: Vec<&DataFile> = files.iter().map(|(_, _, file)| file).collect();
    std::thread::scope(|scope| -> std::io::Result<()> {
        let (job_sender, job_receiver) = crossbeam_channel::unbounded::<(usize, usize, usize)>();
        let (done_sender, done_receiver) =
            crossbeam_channel::unbounded::<(usize, Result<ReadFrame, String>)>();
        for _ in 0..workers {
            let (jobs, done, files) = (job_receiver.clone(), done_sender.clone(), &files);
            scope.spawn(move || {
                for (n, f, i) in jobs {
                    if done.send((n, read_frame(files[f], i, &window, filter))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_sender);
        // At most a few frames per worker in flight: memory stays bounded, output in order.
        let ahead = 4 * workers;
        let mut given = 0;
        let mut waiting = std::collections::BTreeMap::new();
        let mut decoded_bytes = 0u64;
        let mut stopped = false;
        for next in 0..jobs.len() {
            while given < jobs.len() && given < next + ahead {
                let (f, i) = jobs[given];
                job_sender.send((given, f, i)).expect("the workers outlive the jobs");
                given += 1;
            }
            let result = loop {
                if let Some(result) = waiting.remove(&next) {
                    break result;
                }
                let (n, result) = done_receiver.recv().expect("every job is answered");
                waiting.insert(n, result);
            };
            let (f, i) = jobs[next];
            let file = files[f];
            match result {
                Err(e) => {
                    report.frames_damaged += 1;
                    report.warnings.push(format!("{}: frame {i} skipped: {e}", file.path.display()));
                }
                Ok(read) => {
                    report.frames_read += 1;
                    decoded_bytes += read.content.len() as u64;
                    if read.damaged {
                        report.frames_damaged += 1;
                        report
                            .warnings
                            .push(format!("{}: frame {i} ends in a damaged record", file.path.display()));
                    }
                    let records =
                        file.format.records(file.records_of(i, &read.content)).map_while(Result::ok);
                    let mut matches = read.matches.iter().peekable();
                    for (k, record) in records.enumerate() {
                        if matches.next_if_eq(&&k).is_none() {
                            continue;
                        }
                        let interface =
                            file.interfaces.get(record.interface as usize).map_or("", String::as_str);
                        out.packet(&record, interface)?;
                        report.packets += 1;
                        if report.packets >= limits.max_packets {
                            report
                                .warnings
                                .push(format!("stopped at the limit of {} packets", limits.max_packets));
                            stopped = true;
                            break;
                        }
                    }
                }
            }
            if !stopped && decoded_bytes >= limits.max_bytes {
                report.warnings.push(format!("stopped at the limit of {} bytes read", limits.max_bytes));
                stopped = true;
            }
            if stopped {
                break;
            }
        }
        drop(job_sender);
        Ok(())
    })?;
    out.finish()?;
    Ok(report)
}

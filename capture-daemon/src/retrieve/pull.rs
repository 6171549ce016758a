//! Pulling a time window out of the ring: files -> index -> frames -> filtered packets.
//!
//! Only frames whose index entry overlaps the window are read and decoded; files wholly
//! outside it are skipped by their index alone. Damage never aborts a pull: a file or
//! frame that cannot be read is skipped with a warning and counted, the rest delivered.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::out::PacketOut;
use super::window::Window;
use crate::filter::prefilter::Prefilter;
use crate::filter::Filter;
use crate::pcap::RecordRef;
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
    /// Packets held by more than one file of one origin, delivered once.
    pub duplicates: u64,
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
    use std::io::ErrorKind;
    let mut files = match manifest::list(dir) {
        Ok((listing, _)) => listing.own,
        // A manifest that cannot be read (a FIFO, a link or a giant where it should be):
        // the files with ringcap's index are read, so the evidence stays reachable.
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::InvalidData) => {
            eprintln!(
                "ringcap: warning: {} cannot be read ({e}): reading the files that have ringcap's index instead",
                dir.join(manifest::MANIFEST_NAME).display()
            );
            manifest::list_by_index(dir)?.own
        }
        Err(e) => return Err(e),
    };
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

/// Where each frame's packets go, from the frames' time spans and files in the order they
/// are read (by earliest packet). A frame that no other file's frames meet in time goes
/// straight out in its file's order (a ring's files follow one another); the packets of
/// frames of files that overlap are merged in time order, and a packet goes out once
/// every frame that could hold an earlier one is read.
struct MergeOrder {
    alone: Vec<bool>,
    /// The earliest packet of the next frame: packets before it can go out.
    bound: Vec<u64>,
}

impl MergeOrder {
    /// `frames`: (earliest, latest, file) of each frame, by earliest.
    fn of(frames: &[(u64, u64, usize)]) -> Self {
        // The first frame after each one that is of another file (the earliest of them).
        let mut next_other = vec![None; frames.len()];
        for k in (0..frames.len().saturating_sub(1)).rev() {
            next_other[k] = if frames[k + 1].2 != frames[k].2 { Some(k + 1) } else { next_other[k + 1] };
        }
        let mut alone = Vec::with_capacity(frames.len());
        // The latest packet of the frames so far, as (latest, file): the latest of all, and
        // the latest of the files other than that one's.
        let (mut top, mut other_top) = (None::<(u64, usize)>, None::<(u64, usize)>);
        for (k, &(earliest, latest, file)) in frames.iter().enumerate() {
            let before = match top {
                Some((_, f)) if f == file => other_top,
                _ => top,
            };
            let after_others = before.is_none_or(|(before, _)| before < earliest);
            let before_others = next_other[k].is_none_or(|n| latest < frames[n].0);
            alone.push(after_others && before_others);
            match top {
                Some((t, f)) if f == file => top = Some((t.max(latest), file)),
                Some((t, f)) if latest > t => (top, other_top) = (Some((latest, file)), Some((t, f))),
                Some(_) if other_top.is_none_or(|(o, _)| latest > o) => other_top = Some((latest, file)),
                Some(_) => {}
                None => top = Some((latest, file)),
            }
        }
        let bound = (0..frames.len()).map(|k| frames.get(k + 1).map_or(u64::MAX, |next| next.0)).collect();
        MergeOrder { alone, bound }
    }
}

/// What makes two records the same packet: its time, origin, length, and a digest of
/// its bytes (copies of one packet in two files of one origin agree on all, whether they
/// were stored as pcap, without the interface, or as pcapng). The interface is left out:
/// one packet seen on two interfaces at the same nanosecond is two records of one file,
/// and a file's own repeats all go out (see [`Merge`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Identity {
    ns: u64,
    origin: usize,
    orig_len: u32,
    digest: u64,
}

impl Identity {
    fn of(file: &DataFile, record: &RecordRef<'_>) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        record.data.hash(&mut hasher);
        Identity {
            ns: duration_ns(record.timestamp),
            origin: file.origin,
            orig_len: record.orig_len,
            digest: hasher.finish(),
        }
    }
}

/// A packet delivered from the merge, how many copies of it each file gave (by file
/// number), and how many went out.
type LastDelivered = (Identity, Vec<(usize, u64)>, u64);

/// A record of an overlapping frame waiting for its turn: where it is in a held frame.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    identity: Identity,
    job: usize,
    offset: usize,
}

/// The records of overlapping frames, ordered by time (then by identity, so the copies
/// of one packet come out one after another and all but one are dropped).
#[derive(Default)]
struct Merge {
    pending: BinaryHeap<Reverse<Pending>>,
    /// The content of each frame with records pending, by job, with how many.
    held: HashMap<usize, (Vec<u8>, usize)>,
    /// The packet delivered last from the merge, how many copies each file gave of it,
    /// and how many went out (the most any one file holds: a file's own repeats are packets).
    last: Option<LastDelivered>,
    duplicates: u64,
}

impl Merge {
    /// Keeps the selected records of job `job` (frame `i` of `file`) for the merge.
    fn hold(&mut self, job: usize, file: &DataFile, i: usize, read: ReadFrame) {
        let records = file.format.records(file.records_of(i, &read.content)).map_while(Result::ok);
        let mut matches = read.matches.iter().peekable();
        let mut held = 0;
        for (k, record) in records.enumerate() {
            if matches.next_if_eq(&&k).is_none() {
                continue;
            }
            let offset = record.raw.as_ptr() as usize - read.content.as_ptr() as usize;
            self.pending.push(Reverse(Pending { identity: Identity::of(file, &record), job, offset }));
            held += 1;
        }
        if held > 0 {
            self.held.insert(job, (read.content, held));
        }
    }

    /// Delivers, in order, the pending records from before `bound`.
    fn deliver_before(
        &mut self,
        bound: u64,
        jobs: &[(usize, usize)],
        files: &[&DataFile],
        output: &mut PullOutput<'_>,
    ) -> std::io::Result<()> {
        while self.pending.peek().is_some_and(|Reverse(p)| p.identity.ns < bound) && !output.stopped {
            let Reverse(next) = self.pending.pop().expect("peeked");
            let f = jobs[next.job].0;
            let deliver = match &mut self.last {
                Some((identity, per_file, delivered)) if *identity == next.identity => {
                    let copies = match per_file.iter_mut().find(|(file, _)| *file == f) {
                        Some((_, n)) => {
                            *n += 1;
                            *n
                        }
                        None => {
                            per_file.push((f, 1));
                            1
                        }
                    };
                    let more = copies > *delivered;
                    *delivered = (*delivered).max(copies);
                    more
                }
                _ => {
                    self.last = Some((next.identity, vec![(f, 1)], 1));
                    true
                }
            };
            let (content, left) = self.held.get_mut(&next.job).expect("a pending record's frame is held");
            if deliver {
                let record = files[f]
                    .format
                    .records(&content[next.offset..])
                    .next()
                    .and_then(Result::ok)
                    .expect("a held record parsed before");
                output.packet(files[f], &record)?;
            } else {
                self.duplicates += 1;
            }
            *left -= 1;
            if *left == 0 {
                self.held.remove(&next.job);
            }
        }
        Ok(())
    }
}

/// The output end of a pull: counts what goes out and stops at the limits.
struct PullOutput<'a> {
    out: &'a mut dyn PacketOut,
    report: &'a mut PullReport,
    limits: PullLimits,
    stopped: bool,
}

impl PullOutput<'_> {
    fn packet(&mut self, file: &DataFile, record: &RecordRef<'_>) -> std::io::Result<()> {
        self.out.packet(record, interface_name(file, record))?;
        self.report.packets += 1;
        if self.report.packets >= self.limits.max_packets {
            self.report.warnings.push(format!("stopped at the limit of {} packets", self.limits.max_packets));
            self.stopped = true;
        }
        Ok(())
    }

    /// The selected records of a frame alone in time, in the frame's order.
    fn frame(&mut self, file: &DataFile, i: usize, read: &ReadFrame) -> std::io::Result<()> {
        let records = file.format.records(file.records_of(i, &read.content)).map_while(Result::ok);
        let mut matches = read.matches.iter().peekable();
        for (k, record) in records.enumerate() {
            if matches.next_if_eq(&&k).is_some() {
                self.packet(file, &record)?;
                if self.stopped {
                    break;
                }
            }
        }
        Ok(())
    }
}

fn interface_name<'f>(file: &'f DataFile, record: &RecordRef<'_>) -> &'f str {
    file.interfaces.get(record.interface as usize).map_or("", String::as_str)
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
            // Removed by rotation since the listing: it left the window.
            Err(e) if e.is_gone() => {}
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
    // The frames to read: in the window, and not ruled out by their summary; in the order
    // of their earliest packet, which is the order their packets go out in.
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
    let files: Vec<&DataFile> = files.iter().map(|(_, _, file)| file).collect();
    let span = |&(f, i): &(usize, usize)| (files[f].frames[i].earliest_ns, files[f].frames[i].latest_ns, f);
    jobs.sort_by_key(|job| span(job).0);
    let order = MergeOrder::of(&jobs.iter().map(span).collect::<Vec<_>>());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_WORKERS);
    std::thread::scope(|scope| -> std::io::Result<()> {
        let (job_sender, job_receiver) = crossbeam_channel::unbounded::<(usize, usize, usize)>();
        let (done_sender, done_receiver) =
            crossbeam_channel::unbounded::<(usize, Result<ReadFrame, String>)>();
        for _ in 0..workers {
            let (jobs, done, files) = (job_receiver.clone(), done_sender.clone(), &files);
            scope.spawn(move || {
                for (n, f, i) in jobs {
                    // A frame that makes the worker fail is one damaged frame, never a pull
                    // that waits forever for its answer.
                    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        read_frame(files[f], i, &window, filter)
                    }))
                    .unwrap_or_else(|_| Err("the frame could not be decoded".into()));
                    if done.send((n, read)).is_err() {
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
        let mut output = PullOutput { out, report: &mut report, limits, stopped: false };
        let mut merge = Merge::default();
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
                let (n, result) = done_receiver.recv().map_err(|_| {
                    std::io::Error::other("the pull's workers ended before every frame was read")
                })?;
                waiting.insert(n, result);
            };
            let (f, i) = jobs[next];
            let file = files[f];
            match result {
                Err(e) => {
                    output.report.frames_damaged += 1;
                    output.report.warnings.push(format!("{}: frame {i} skipped: {e}", file.path.display()));
                }
                Ok(read) => {
                    output.report.frames_read += 1;
                    decoded_bytes += read.content.len() as u64;
                    if read.damaged {
                        output.report.frames_damaged += 1;
                        output
                            .report
                            .warnings
                            .push(format!("{}: frame {i} ends in a damaged record", file.path.display()));
                    }
                    // (With packets of its own file's earlier frames waiting, a frame joins them.)
                    if order.alone[next] && merge.pending.is_empty() {
                        output.frame(file, i, &read)?;
                    } else {
                        merge.hold(next, file, i, read);
                    }
                }
            }
            if !output.stopped {
                merge.deliver_before(order.bound[next], &jobs, &files, &mut output)?;
            }
            if !output.stopped && decoded_bytes >= limits.max_bytes {
                output
                    .report
                    .warnings
                    .push(format!("stopped at the limit of {} bytes read", limits.max_bytes));
                output.stopped = true;
            }
            if output.stopped {
                break;
            }
        }
        drop(job_sender);
        if merge.duplicates > 0 {
            report.duplicates = merge.duplicates;
            report.warnings.push(format!(
                "{} packets held by more than one file of the same capture (a pin and the ring file it was copied from, or overlapping pins) were delivered once",
                merge.duplicates
            ));
        }
        Ok(())
    })?;
    out.finish()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::capture::Batch;
    use crate::output::Sink;
    use crate::pcap::write_record;
    use crate::storage::naming::NameTemplate;
    use crate::storage::ring::{RingConfig, RingWriter};
    use crate::storage::Compression;

    /// A data file whose frames hold these packets: (time in ns, the byte they are made of).
    fn data_file(name: &str, frames: &[&[(u64, u8)]]) -> DataFile {
        let dir = std::env::temp_dir().join(format!("ringcap-pull-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = RingConfig {
            frame_bytes: 256,
            frame_age: Duration::from_secs(60),
            ..RingConfig::single_file(&dir, NameTemplate::parse("t-%s").unwrap(), Compression::Zstd(1))
        };
        let mut ring = RingWriter::open(config, Arc::default()).unwrap();
        for packets in frames {
            let mut batch = Batch::empty(Vec::new());
            for &(ns, byte) in *packets {
                write_record(&mut batch.records, Duration::from_nanos(ns), 100, &[byte; 100], 2000).unwrap();
                batch.count(ns);
            }
            ring.write(&mut batch).unwrap();
        }
        ring.finish().unwrap();
        let file = DataFile::open(ring.current_path().unwrap()).unwrap();
        assert_eq!(file.frames.iter().filter(|f| f.packets > 0).count(), frames.len(), "a batch a frame");
        std::fs::remove_dir_all(&dir).unwrap();
        file
    }

    #[derive(Default)]
    struct Collect(Vec<(u64, u8)>);

    impl PacketOut for Collect {
        fn packet(&mut self, record: &RecordRef<'_>, _interface: &str) -> std::io::Result<()> {
            self.0.push((duration_ns(record.timestamp), record.data[0]));
            Ok(())
        }
        fn finish(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn pull_all(files: Vec<DataFile>, limits: PullLimits) -> (Vec<(u64, u8)>, PullReport) {
        let mut out = Collect::default();
        let everything = Window { since_ns: 0, until_ns: u64::MAX };
        let filter = Filter::compile("").unwrap();
        let report = pull_files(files, PullReport::default(), everything, &filter, limits, &mut out).unwrap();
        (out.0, report)
    }

    #[test]
    fn frames_alone_in_time_go_out_as_stored_and_overlapping_ones_are_merged() {
        // (earliest, latest, file): file 0's frames overlap each other, which is no matter.
        let frames = [(0, 9, 0), (5, 12, 0), (10, 20, 1), (15, 30, 2), (31, 40, 2), (41, 50, 3), (45, 46, 4)];
        let order = MergeOrder::of(&frames);
        assert_eq!(order.alone, [true, false, false, false, true, false, false]);
        assert_eq!(order.bound, [5, 10, 15, 31, 41, 45, u64::MAX]);
        let one_file = MergeOrder::of(&[(0, 9, 0), (5, 12, 0), (10, 20, 0)]);
        assert_eq!(one_file.alone, [true, true, true], "a file's own frames are never merged");
    }

    /// A ring file and a pin copied from it, with a packet the ring file never got (the
    /// ring file being written when the pin was made): every packet once, in time order.
    #[test]
    fn copies_of_a_packet_in_files_of_one_origin_go_out_once_in_time_order() {
        let ring = data_file("ring", &[&[(100, 1), (200, 2), (300, 3)], &[(400, 4), (500, 5), (600, 6)]]);
        let pin = data_file("pin", &[&[(300, 3), (400, 4), (500, 5)], &[(600, 6), (700, 7), (800, 8)]]);
        let (packets, report) = pull_all(vec![pin, ring], PullLimits::default());
        let expected: Vec<(u64, u8)> = (1..=8).map(|k| (k * 100, k as u8)).collect();
        assert_eq!(packets, expected);
        assert_eq!((report.packets, report.duplicates), (8, 4));
        // A limit counts the packets that go out, not the copies left behind.
        let ring = data_file("ring-limit", &[&[(100, 1), (200, 2), (300, 3)]]);
        let pin = data_file("pin-limit", &[&[(100, 1), (200, 2), (300, 3)]]);
        let (packets, report) =
            pull_all(vec![ring, pin], PullLimits { max_packets: 2, ..PullLimits::default() });
        assert_eq!(packets, [(100, 1), (200, 2)]);
        assert_eq!(report.packets, 2);
    }

    /// Equal packets from two captures (two hosts) are two packets, and so are a file's own
    /// repeats (a frame seen twice at the same nanosecond), whatever another file holds.
    #[test]
    fn equal_packets_of_other_origins_and_a_files_own_repeats_all_go_out() {
        let a = data_file("host-a", &[&[(100, 1), (200, 2), (200, 2), (300, 3)]]);
        let mut b = data_file("host-b", &[&[(150, 9), (200, 2), (250, 9)]]);
        b.origin = 1;
        let copy = data_file("host-a-pin", &[&[(200, 2), (300, 3), (400, 4)]]);
        let (packets, report) = pull_all(vec![a, b, copy], PullLimits::default());
        assert_eq!(
            packets,
            [(100, 1), (150, 9), (200, 2), (200, 2), (200, 2), (250, 9), (300, 3), (400, 4)],
            "host a's two copies at 200, host b's one, in time order"
        );
        assert_eq!(report.duplicates, 2, "the pin's copies of 200 and 300");
    }
}

//! Pulling a time window out of the ring: files -> index -> frames -> filtered packets.
//!
//! Only frames whose index entry overlaps the window are read and decoded; files wholly
//! outside it are skipped by their index alone. Damage never aborts a pull: a file or
//! frame that cannot be read is skipped with a warning and counted, the rest delivered.
use std::path::Path;

use crate::filter::Filter;
use crate::pcap::RecordRef;
use crate::retrieve::out::PacketOut;
use crate::retrieve::window::Window;
use crate::storage::frames::{duration_ns, DataFile};
use crate::storage::manifest::ring_files;
use crate::storage::StorageError;
use merge::{Identity, Merge, MergeOrder};
use plan::{Plan, ReadFrame, Workers};

mod merge;
mod plan;

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

/// A packet delivered from the merge, how many copies of it each file gave (by file
/// number), and how many went out.
type LastDelivered = (Identity, Vec<(usize, u64)>, u64);

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
    /// Adds what another pull (a later piece of the same window) did.
    pub fn add(&mut self, other: PullReport) {
        self.packets += other.packets;
        self.files_read += other.files_read;
        self.frames_read += other.frames_read;
        self.frames_skipped += other.frames_skipped;
        self.frames_damaged += other.frames_damaged;
        self.bytes_damaged += other.bytes_damaged;
        self.files_unreadable += other.files_unreadable;
        self.duplicates += other.duplicates;
        self.warnings.extend(other.warnings);
    }

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
    let (files, report) = open_ring(dir)?;
    pull_files(files, report, window, filter, limits, out)
}

/// The ring's data files, opened, and a report counting those that could not be (a file
/// rotation removed since the listing has left the window, and one it is starting holds
/// no packet yet: neither is counted).
pub fn open_ring(dir: &Path) -> std::io::Result<(Vec<DataFile>, PullReport)> {
    let mut report = PullReport::default();
    let mut files = Vec::new();
    let paths = ring_files(dir)?;
    let newest = paths.len().checked_sub(1);
    for (i, path) in paths.iter().enumerate() {
        match DataFile::open(path) {
            Ok(file) => files.push(file),
            Err(e) if e.is_gone() => {}
            // Being started by rotation: created, its header not written yet. Any other
            // file without a readable header is damage, and said.
            Err(StorageError::NotPcap { .. }) if Some(i) == newest => {}
            Err(e) => report.unreadable(&path.display(), &e),
        }
    }
    Ok((files, report))
}

/// [`pull`] over data files opened by the caller (the ring's, or the archive's), adding
/// to `report` (which may already count files that could not be opened): the frames the
/// plan picks are read by the workers and their packets merged in time order.
pub fn pull_files(
    opened: Vec<DataFile>,
    mut report: PullReport,
    window: Window,
    filter: &Filter,
    limits: PullLimits,
    out: &mut dyn PacketOut,
) -> std::io::Result<PullReport> {
    let plan = Plan::new(&opened, &mut report, &window, filter);
    let (files, jobs, order) = (&plan.files, &plan.jobs, &plan.order);
    std::thread::scope(|scope| -> std::io::Result<()> {
        let mut workers = Workers::start(scope, &plan, &window, filter);
        let mut decoded_bytes = 0u64;
        let mut output = PullOutput { out, report: &mut report, limits, stopped: false };
        let mut merge = Merge::default();
        for next in 0..jobs.len() {
            let result = workers.read(next)?;
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
                merge.deliver_before(order.bound[next], jobs, files, &mut output)?;
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
        workers.stop();
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

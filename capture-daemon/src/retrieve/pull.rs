//! Pulling a time window out of the ring: files -> index -> frames -> filtered packets.
//!
//! Only frames whose index entry overlaps the window are read and decoded; files wholly
//! outside it are skipped by their index alone. Damage never aborts a pull: a file or
//! frame that cannot be read is skipped with a warning and counted, the rest delivered.
use std::path::{Path, PathBuf};

use super::out::PacketOut;
use super::window::Window;
use crate::filter::Filter;
use crate::storage::frames::{duration_ns, DataFile};
use crate::storage::manifest;

/// What a pull did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullReport {
    pub packets: u64,
    pub files_read: u64,
    pub frames_read: u64,
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

/// Writes the packets of `window` selected by `filter`, in time order, to `out`.
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
            Ok(file) => {
                if let Some(problem) = &file.index_problem {
                    report.warnings.push(format!("{}: {problem}", path.display()));
                }
                if file.damaged_bytes > 0 {
                    report.bytes_damaged += file.damaged_bytes;
                    report.warnings.push(format!(
                        "{}: {} damaged bytes skipped ({} at the end)",
                        path.display(),
                        file.damaged_bytes,
                        file.damaged_tail
                    ));
                }
                if let Some((first, last)) = file.time_range().filter(|&(f, l)| window.overlaps(f, l)) {
                    files.push((first, last, file));
                }
            }
            Err(e) => {
                report.files_unreadable += 1;
                report.warnings.push(format!("{}: skipped: {e}", path.display()));
            }
        }
    }
    files.sort_by_key(|(first, last, _)| (*first, *last));
    let mut decoded_bytes = 0u64;
    'files: for (_, _, file) in &files {
        report.files_read += 1;
        for (i, frame) in file.frames.iter().enumerate() {
            if frame.packets == 0 || !window.overlaps(frame.earliest_ns, frame.latest_ns) {
                continue;
            }
            let content = match file.content(i) {
                Ok(content) => content,
                Err(e) => {
                    report.frames_damaged += 1;
                    report.warnings.push(format!("{}: frame {i} skipped: {e}", file.path.display()));
                    continue;
                }
            };
            report.frames_read += 1;
            decoded_bytes += content.len() as u64;
            for record in file.format.records(file.records_of(i, &content)) {
                let Ok(record) = record else {
                    report.frames_damaged += 1;
                    report
                        .warnings
                        .push(format!("{}: frame {i} ends in a damaged record", file.path.display()));
                    break;
                };
                if window.contains(duration_ns(record.timestamp))
                    && filter.matches(record.data, record.orig_len)
                {
                    let interface = file.interfaces.get(record.interface as usize).map_or("", String::as_str);
                    out.packet(&record, interface)?;
                    report.packets += 1;
                    if report.packets >= limits.max_packets {
                        report
                            .warnings
                            .push(format!("stopped at the limit of {} packets", limits.max_packets));
                        break 'files;
                    }
                }
            }
            if decoded_bytes >= limits.max_bytes {
                report.warnings.push(format!("stopped at the limit of {} bytes read", limits.max_bytes));
                break 'files;
            }
        }
    }
    out.finish()?;
    Ok(report)
}

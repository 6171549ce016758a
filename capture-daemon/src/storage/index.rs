//! The time index: one fixed-size entry per frame of a data file, in a sidecar file.
//!
//! `NAME.idx` beside `NAME.pcap.zst` (or `NAME.pcap`) starts with the 8-byte magic
//! `RCAPIDX2`, then per frame a 56-byte little-endian entry and the frame's summary (see
//! [`super::summary`]), appended after the frame itself is written (see
//! `capture-daemon/docs/storage-format.md`). Rings written before summaries have
//! `RCAPIDX1` and entries alone: still read, every frame then read to filter it. Each
//! entry and summary carries a checksum, so a torn or damaged one ends the usable index;
//! the data file is then scanned from the last good entry on. The index only speeds
//! retrieval up: a file without one is still fully readable.
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::summary::Summary;

/// The magic of the indexes written now: entries with summaries.
pub const INDEX_MAGIC: &[u8; 8] = b"RCAPIDX2";
/// The magic of indexes without summaries (rings written before them).
pub const INDEX_MAGIC_V1: &[u8; 8] = b"RCAPIDX1";
pub const ENTRY_LEN: usize = 56;

/// Where one frame sits in a data file and what it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameEntry {
    /// Byte offset of the frame in the data file.
    pub offset: u64,
    /// Length of the frame in the data file (compressed length for zstd files).
    pub len: u64,
    /// Offset of the frame's content in the file's decompressed pcap stream.
    pub raw_offset: u64,
    /// Length of the frame's decompressed content.
    pub raw_len: u32,
    /// Packets in the frame.
    pub packets: u32,
    /// Timestamps of the earliest and latest packet, nanoseconds since the epoch (0 if
    /// none). Rings written before these were kept took the first and last packet's.
    pub earliest_ns: u64,
    pub latest_ns: u64,
}

impl FrameEntry {
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[0..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..16].copy_from_slice(&self.len.to_le_bytes());
        out[16..24].copy_from_slice(&self.raw_offset.to_le_bytes());
        out[24..28].copy_from_slice(&self.raw_len.to_le_bytes());
        out[28..32].copy_from_slice(&self.packets.to_le_bytes());
        out[32..40].copy_from_slice(&self.earliest_ns.to_le_bytes());
        out[40..48].copy_from_slice(&self.latest_ns.to_le_bytes());
        let sum = checksum(&out[0..48]);
        out[48..52].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decodes an entry; `None` if its checksum does not match.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; ENTRY_LEN] = bytes.try_into().ok()?;
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        if u32_at(48) != checksum(&bytes[0..48]) {
            return None;
        }
        Some(FrameEntry {
            offset: u64_at(0),
            len: u64_at(8),
            raw_offset: u64_at(16),
            raw_len: u32_at(24),
            packets: u32_at(28),
            earliest_ns: u64_at(32),
            latest_ns: u64_at(40),
        })
    }
}

/// FNV-1a: catches torn and corrupted entries; not a defence against tampering.
fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, &b| (hash ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The index file of a data file.
pub fn index_path(data: &Path) -> PathBuf {
    let name = data.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let stem = super::data_stem(name).unwrap_or(name);
    data.with_file_name(format!("{stem}.idx"))
}

/// The statistics snapshot of a data file: the daemon's counters when the file closed.
pub fn stats_path(data: &Path) -> PathBuf {
    index_path(data).with_extension("stats.json")
}

/// The snapshots a running daemon appends while it writes a data file, one JSON object a
/// line, at most one per frame interval: what lets a pull give the statistics of exactly
/// its window (to within that interval).
pub fn snapshots_path(data: &Path) -> PathBuf {
    index_path(data).with_extension("snapshots.jsonl")
}

/// How the names of the files ringcap keeps beside a data file end.
pub const SIDECAR_SUFFIXES: [&str; 3] = [".idx", ".stats.json", ".snapshots.jsonl"];

/// Every file ringcap keeps beside a data file (index, closing snapshot, snapshots).
pub fn sidecars(data: &Path) -> [PathBuf; 3] {
    [index_path(data), stats_path(data), snapshots_path(data)]
}

/// Appends entries to a new index file.
pub struct IndexWriter {
    file: File,
}

impl IndexWriter {
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
        file.write_all(INDEX_MAGIC)?;
        Ok(IndexWriter { file })
    }

    /// Appends a frame's entry and its summary (in one write, so a crash tears at most
    /// this one); returns the bytes written.
    pub fn append(&mut self, entry: &FrameEntry, summary: Option<&Summary>) -> io::Result<u64> {
        let encoded = summary.map(Summary::encode).unwrap_or_default();
        let mut record = Vec::with_capacity(ENTRY_LEN + 8 + encoded.len());
        record.extend_from_slice(&entry.encode());
        record.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        record.extend_from_slice(&encoded);
        record.extend_from_slice(&checksum(&record[ENTRY_LEN..]).to_le_bytes());
        self.file.write_all(&record)?;
        Ok(record.len() as u64)
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// The good prefix of an index: entries up to the first torn or damaged one, each with its
/// summary (None in indexes from before summaries).
pub type IndexEntries = Vec<(FrameEntry, Option<Summary>)>;

/// Reads the good prefix of an index.
pub fn read_index(path: &Path) -> io::Result<IndexEntries> {
    parse_index(&super::nofollow::read_bounded(path, MAX_INDEX_BYTES)?)
}

/// The largest index read: a frame's entry and summary take at most a few kilobytes, and a
/// data file holds at most some thousands of frames.
pub const MAX_INDEX_BYTES: u64 = 256 << 20;

/// The good prefix of an index read into memory (from a file or the archive).
pub fn parse_index(bytes: &[u8]) -> io::Result<IndexEntries> {
    match bytes.get(..8) {
        Some(magic) if magic == INDEX_MAGIC_V1 => {
            Ok(bytes[8..].chunks_exact(ENTRY_LEN).map_while(FrameEntry::decode).map(|e| (e, None)).collect())
        }
        Some(magic) if magic == INDEX_MAGIC => {
            let mut entries = Vec::new();
            let mut rest = &bytes[8..];
            while let Some((entry, summary, len)) = decode_with_summary(rest) {
                entries.push((entry, summary));
                rest = &rest[len..];
            }
            Ok(entries)
        }
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "not a ringcap index (bad magic)")),
    }
}

/// An entry, its summary and the bytes they took; None if torn or damaged.
fn decode_with_summary(bytes: &[u8]) -> Option<(FrameEntry, Option<Summary>, usize)> {
    let entry = FrameEntry::decode(bytes.get(..ENTRY_LEN)?)?;
    let len = u32::from_le_bytes(bytes.get(ENTRY_LEN..ENTRY_LEN + 4)?.try_into().ok()?) as usize;
    let end = ENTRY_LEN + 4 + len;
    let sum = u32::from_le_bytes(bytes.get(end..end + 4)?.try_into().ok()?);
    if sum != checksum(&bytes[ENTRY_LEN..end]) {
        return None;
    }
    let summary = if len == 0 { None } else { Some(Summary::decode(&bytes[ENTRY_LEN + 4..end])?) };
    Some((entry, summary, end + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let entry = FrameEntry {
            offset: 1,
            len: 2,
            raw_offset: 3,
            raw_len: 4,
            packets: 5,
            earliest_ns: 6,
            latest_ns: u64::MAX,
        };
        let mut bytes = entry.encode();
        assert_eq!(FrameEntry::decode(&bytes), Some(entry));
        bytes[10] ^= 1;
        assert_eq!(FrameEntry::decode(&bytes), None);
    }

    #[test]
    fn index_path_replaces_the_pcap_extensions() {
        assert_eq!(index_path(Path::new("/d/a.pcap.zst")), Path::new("/d/a.idx"));
        assert_eq!(index_path(Path::new("/d/a.pcap")), Path::new("/d/a.idx"));
    }
}

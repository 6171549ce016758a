//! Frames: the unit of writing, flushing and reading a data file.
//!
//! A zstd data file is a sequence of independent zstd frames (content size and checksum
//! included); a plain data file is a pcap stream whose frames are byte ranges. Frame 0
//! holds the pcap file header, every frame holds whole records, so a reader can start
//! at any frame and a crash can only cut the frame being written.
use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::index::{index_path, read_index, FrameEntry};
use super::{Compression, StorageError};
use crate::pcap::{RecordFormat, FILE_HEADER_LEN};

/// Turns a frame's pcap bytes into what is written to the file.
pub struct FrameEncoder {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    out: Vec<u8>,
}

impl FrameEncoder {
    pub fn new(compression: Compression) -> io::Result<Self> {
        let compressor = match compression {
            Compression::None => None,
            Compression::Zstd(level) => {
                let mut c = zstd::bulk::Compressor::new(level)?;
                c.include_checksum(true)?;
                c.include_contentsize(true)?;
                Some(c)
            }
        };
        Ok(FrameEncoder { compressor, out: Vec::new() })
    }

    /// The bytes to append for a frame with content `raw`.
    pub fn encode<'a>(&'a mut self, raw: &'a [u8]) -> io::Result<&'a [u8]> {
        match &mut self.compressor {
            None => Ok(raw),
            Some(compressor) => {
                self.out.clear();
                self.out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
                compressor.compress_to_buffer(raw, &mut self.out)?;
                Ok(&self.out)
            }
        }
    }
}

/// A data file opened for reading: its complete frames and its record format.
pub struct DataFile {
    pub path: PathBuf,
    bytes: Vec<u8>,
    compressed: bool,
    /// Complete frames, in file order.
    pub frames: Vec<FrameEntry>,
    /// Frames found by scanning because the index lacked them (crash, damage, no index).
    pub recovered_frames: usize,
    /// Bytes after the last complete frame: a frame cut short by a crash, or damage.
    pub damaged_tail: u64,
    /// Why the index was not used in full, if it was not.
    pub index_problem: Option<String>,
    pub format: RecordFormat,
}

impl DataFile {
    /// Reads a data file, trusting its index as far as the index agrees with the file.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let read_error = |source| StorageError::Read { path: path.to_path_buf(), source };
        let bytes = std::fs::read(path).map_err(read_error)?;
        let compressed = path.to_string_lossy().ends_with(".zst");
        let format = file_format(&bytes, compressed).ok_or_else(|| StorageError::NotPcap {
            path: path.to_path_buf(),
            why: "its first frame is missing, incomplete or holds no pcap file header".into(),
        })?;
        let (mut frames, mut index_problem) = match read_index(&index_path(path)) {
            Ok(entries) => (entries, None),
            Err(e) => (Vec::new(), Some(format!("index unusable ({e}); scanned the file instead"))),
        };
        let valid = valid_prefix(&frames, bytes.len() as u64);
        if valid < frames.len() {
            index_problem =
                Some(format!("index entries {valid}.. do not match the file; scanned from there"));
            frames.truncate(valid);
        }
        let mut file = DataFile {
            path: path.to_path_buf(),
            bytes,
            compressed,
            frames,
            recovered_frames: 0,
            damaged_tail: 0,
            index_problem,
            format,
        };
        file.scan_unindexed();
        Ok(file)
    }

    /// Finds complete frames after the last indexed one.
    fn scan_unindexed(&mut self) {
        let (mut offset, mut raw_offset) =
            self.frames.last().map_or((0, 0), |f| (f.offset + f.len, f.raw_offset + u64::from(f.raw_len)));
        let total = self.bytes.len() as u64;
        while offset < total {
            let rest = &self.bytes[offset as usize..];
            let (len, content) = if self.compressed {
                match next_zstd_frame(rest) {
                    Some((len, content)) => (len, Cow::Owned(content)),
                    None => break,
                }
            } else {
                let header = if raw_offset == 0 { FILE_HEADER_LEN.min(rest.len()) } else { 0 };
                let mut records = self.format.records(&rest[header..]);
                records.by_ref().take_while(Result::is_ok).for_each(drop);
                let len = rest.len() - records.rest().len();
                if len == 0 || (raw_offset == 0 && len < FILE_HEADER_LEN) {
                    break;
                }
                (len, Cow::Borrowed(&rest[..len]))
            };
            let Some(entry) = describe_frame(&self.format, &content, offset, len as u64, raw_offset) else {
                break;
            };
            raw_offset += u64::from(entry.raw_len);
            offset += len as u64;
            self.frames.push(entry);
            self.recovered_frames += 1;
        }
        self.damaged_tail = total - offset;
    }

    /// The decoded content (pcap bytes) of frame `i`.
    pub fn content(&self, i: usize) -> Result<Cow<'_, [u8]>, StorageError> {
        let frame = self.frames[i];
        let stored = &self.bytes[frame.offset as usize..(frame.offset + frame.len) as usize];
        if !self.compressed {
            return Ok(Cow::Borrowed(stored));
        }
        zstd::stream::decode_all(stored)
            .map(Cow::Owned)
            .map_err(|source| StorageError::Read { path: self.path.clone(), source })
    }

    /// The records part of a frame's content (frame 0 starts with the file header).
    pub fn records_of<'a>(&self, i: usize, content: &'a [u8]) -> &'a [u8] {
        if self.frames[i].raw_offset == 0 {
            content.get(FILE_HEADER_LEN..).unwrap_or_default()
        } else {
            content
        }
    }

    /// Length of the file up to the end of its last complete frame.
    pub fn complete_len(&self) -> u64 {
        self.frames.last().map_or(0, |f| f.offset + f.len)
    }
}

/// The first complete zstd frame of `bytes`: its stored length and content.
fn next_zstd_frame(bytes: &[u8]) -> Option<(usize, Vec<u8>)> {
    let len = zstd::zstd_safe::find_frame_compressed_size(bytes).ok()?;
    if len == 0 || len > bytes.len() {
        return None;
    }
    Some((len, zstd::stream::decode_all(&bytes[..len]).ok()?))
}

/// The record format from the pcap header at the start of the file's first frame.
fn file_format(bytes: &[u8], compressed: bool) -> Option<RecordFormat> {
    if compressed {
        RecordFormat::from_file_header(&next_zstd_frame(bytes)?.1)
    } else {
        RecordFormat::from_file_header(bytes)
    }
}

/// How many leading index entries are consistent with each other and with the file.
fn valid_prefix(entries: &[FrameEntry], file_len: u64) -> usize {
    let (mut offset, mut raw_offset) = (0u64, 0u64);
    entries
        .iter()
        .take_while(|e| {
            let ok = e.offset == offset && e.raw_offset == raw_offset && e.offset + e.len <= file_len;
            offset = e.offset + e.len;
            raw_offset = e.raw_offset + u64::from(e.raw_len);
            ok
        })
        .count()
}

/// An index entry for a frame found by scanning; `None` if its content is not whole records.
fn describe_frame(
    format: &RecordFormat,
    content: &[u8],
    offset: u64,
    len: u64,
    raw_offset: u64,
) -> Option<FrameEntry> {
    let records = if raw_offset == 0 { content.get(FILE_HEADER_LEN..)? } else { content };
    let mut entry =
        FrameEntry { offset, len, raw_offset, raw_len: content.len() as u32, ..FrameEntry::default() };
    for record in format.records(records) {
        let ns = duration_ns(record.ok()?.timestamp);
        if entry.packets == 0 {
            entry.first_ns = ns;
        }
        entry.last_ns = ns;
        entry.packets += 1;
    }
    Some(entry)
}

/// Nanoseconds since the epoch.
pub fn duration_ns(d: Duration) -> u64 {
    d.as_secs() * 1_000_000_000 + u64::from(d.subsec_nanos())
}

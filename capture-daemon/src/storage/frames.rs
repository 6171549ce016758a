//! Frames: the unit of writing, flushing and reading a data file.
//!
//! A zstd data file is a sequence of independent zstd frames (content size and checksum
//! included); a plain data file is a pcap stream whose frames are byte ranges. Frame 0
//! holds the pcap file header, every frame holds whole records, so a reader can start
//! at any frame and a crash can only cut the frame being written.
use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::index::{index_path, read_index, FrameEntry, IndexEntries};
use super::summary::Summary;
use super::{Compression, StorageError};
use crate::pcap::RecordFormat;

/// What is written to the file for a frame.
pub enum Encoded {
    /// The frame's content as it is (plain pcap).
    Raw,
    /// A zstd frame.
    Zstd(Vec<u8>),
}

impl Encoded {
    /// The bytes to append for a frame with content `raw`.
    pub fn bytes<'a>(&'a self, raw: &'a [u8]) -> &'a [u8] {
        match self {
            Encoded::Raw => raw,
            Encoded::Zstd(bytes) => bytes,
        }
    }
}

/// Turns a frame's pcap bytes into what is written to the file, on the calling thread.
pub struct FrameEncoder {
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl FrameEncoder {
    pub fn new(compression: Compression) -> io::Result<Self> {
        let compressor = match compression {
            Compression::None => None,
            Compression::Zstd(level) => Some(zstd_compressor(level)?),
        };
        Ok(FrameEncoder { compressor })
    }

    pub fn encode(&mut self, raw: &[u8]) -> io::Result<Encoded> {
        match &mut self.compressor {
            None => Ok(Encoded::Raw),
            Some(compressor) => {
                let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
                compressor.compress_to_buffer(raw, &mut out)?;
                Ok(Encoded::Zstd(out))
            }
        }
    }
}

/// A compressor for the ring's frames: with checksum and content size, so each frame is
/// decodable and verifiable alone.
pub fn zstd_compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    compressor.include_checksum(true)?;
    compressor.include_contentsize(true)?;
    Ok(compressor)
}

/// Where a data file's bytes are read from: a local file, or an object in the archive
/// (ranged reads over the network). Reads are positioned, so workers share one source.
pub trait ByteSource: Send + Sync {
    /// The bytes `offset..offset + len`, exactly.
    fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>>;

    /// Where data starts again at or after `offset`, past a hole; `None` when only a hole
    /// follows. A source without holes says `offset`.
    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        Ok(Some(offset))
    }
}

impl ByteSource for File {
    fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut buffer = vec![0u8; len as usize];
        self.read_exact_at(&mut buffer, offset)?;
        Ok(buffer)
    }

    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        use std::os::fd::AsRawFd;
        let Ok(offset) = libc::off_t::try_from(offset) else { return Ok(None) };
        // SAFETY: lseek on our own descriptor; reads go by pread, so the position it
        // moves is never used.
        match unsafe { libc::lseek(self.as_raw_fd(), offset, libc::SEEK_DATA) } {
            at if at >= 0 => Ok(Some(at as u64)),
            _ => match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
                // A filesystem that cannot tell: all data.
                e if e.raw_os_error() == Some(libc::EINVAL) => Ok(Some(offset as u64)),
                e => Err(e),
            },
        }
    }
}

/// A data file opened for reading: its complete frames and its record format. Frames
/// are read on demand with positioned reads, so retrieval touches only the frames it
/// needs, and a file that is still being written is read up to its last complete frame.
pub struct DataFile {
    /// Where the file is (a path, or an archive URL), for messages.
    pub path: PathBuf,
    source: Box<dyn ByteSource>,
    compressed: bool,
    /// Complete frames, in file order.
    pub frames: Vec<FrameEntry>,
    /// The summaries of the indexed frames (the first ones; frames found by scanning and
    /// those of rings from before summaries have none).
    pub summaries: Vec<Option<Summary>>,
    /// Frames found by scanning because the index lacked them (crash, damage, no index).
    pub recovered_frames: usize,
    /// Bytes skipped while scanning: damaged frames, or a frame cut short at the end.
    pub damaged_bytes: u64,
    /// Bytes after the last complete frame (a frame cut short by a crash, or damage).
    pub damaged_tail: u64,
    /// Why the index was not used in full, if it was not.
    pub index_problem: Option<String>,
    pub format: RecordFormat,
    /// pcapng: the names of the file's interfaces, by interface id.
    pub interfaces: Vec<String>,
    /// The capture the packets are from (0 unless the caller says): files of one origin,
    /// such as a host's archived ring files and pins, may hold copies of the same packets,
    /// which a pull delivers once.
    pub origin: usize,
}

/// zstd's frame magic number, for finding the next frame after a damaged one.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The most read to find the pcap header in the first frame of a file without a usable index.
const HEAD_BYTES: u64 = 4 << 20;
/// How much of a file is read at a time when scanning it for frames.
const SCAN_WINDOW: u64 = 4 << 20;
/// The longest frame a scan looks for (frames are written at `--frame-bytes`, at most 64 MiB).
const SCAN_WINDOW_MAX: u64 = 128 << 20;

impl DataFile {
    /// Opens a data file, trusting its index as far as the index agrees with the file.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let read_error = |source| StorageError::Read { path: path.to_path_buf(), source };
        let file = super::nofollow::open_regular(path).map_err(read_error)?;
        let len = file.metadata().map_err(read_error)?.len();
        Self::from_source(path, Box::new(file), len, read_index(&index_path(path)))
    }

    /// A data file of `len` bytes read from `source`, with its index as read (or why it
    /// could not be); `path` names it (a `.zst` name is compressed).
    pub fn from_source(
        path: &Path,
        source: Box<dyn ByteSource>,
        len: u64,
        index: io::Result<IndexEntries>,
    ) -> Result<Self, StorageError> {
        let read_error = |source| StorageError::Read { path: path.to_path_buf(), source };
        let compressed = path.to_string_lossy().ends_with(".zst");
        let (entries, mut index_problem) = match index {
            Ok(entries) => (entries, None),
            Err(e) => (Vec::new(), Some(format!("index unusable ({e}); scanned the file instead"))),
        };
        let (mut frames, mut summaries): (Vec<FrameEntry>, Vec<Option<Summary>>) =
            entries.into_iter().unzip();
        let valid = valid_prefix(&frames, len);
        if valid < frames.len() {
            index_problem =
                Some(format!("index entries {valid}.. do not match the file; scanned from there"));
            frames.truncate(valid);
            summaries.truncate(valid);
        }
        // The first frame holds the file header: read just it when the index says where it ends.
        let head_len = frames.first().map_or(len.min(HEAD_BYTES), |first| first.len);
        let head = source.read_at(0, head_len).map_err(read_error)?;
        let (format, interfaces) = file_format(&head, compressed).ok_or_else(|| StorageError::NotPcap {
            path: path.to_path_buf(),
            why: "its first frame is missing, incomplete or holds no pcap or pcapng header".into(),
        })?;
        let mut data = DataFile {
            path: path.to_path_buf(),
            source,
            compressed,
            frames,
            summaries,
            recovered_frames: 0,
            damaged_bytes: 0,
            damaged_tail: 0,
            index_problem,
            format,
            interfaces,
            origin: 0,
        };
        data.scan_unindexed(len).map_err(read_error)?;
        Ok(data)
    }

    /// Finds complete frames after the last indexed one, skipping damaged zstd frames.
    /// Reads a window of the file at a time, so a file without its index is never read
    /// into memory whole: a window grows only while it holds no complete zstd frame nor the
    /// start of another, up to [`SCAN_WINDOW_MAX`]; an uncompressed file is cut into
    /// frames of at most [`SCAN_WINDOW`] bytes.
    fn scan_unindexed(&mut self, len: u64) -> io::Result<()> {
        let (mut at, mut raw_offset) =
            self.frames.last().map_or((0, 0), |f| (f.offset + f.len, f.raw_offset + u64::from(f.raw_len)));
        let mut window_len = SCAN_WINDOW;
        while at < len {
            // A hole (a file made sparse by whoever can write the ring) is damage known
            // without reading it: a terabyte of it is skipped at once, never scanned.
            // (An uncompressed file stops at its first damage anyway.)
            let data_at =
                if self.compressed { self.source.next_data(at)?.unwrap_or(len).min(len) } else { at };
            if data_at > at {
                self.damaged_bytes += data_at - at;
                if data_at == len {
                    self.damaged_tail = len - at;
                    break;
                }
                at = data_at;
            }
            let window = self.source.read_at(at, (len - at).min(window_len))?;
            let reaches_end = at + window.len() as u64 == len;
            let found = if self.compressed {
                next_zstd_frame(&window).map(|(len, content)| (len, Cow::Owned(content)))
            } else {
                let header_len = self.format.header_len;
                let header = if raw_offset == 0 { header_len.min(window.len()) } else { 0 };
                let mut records = self.format.records(&window[header..]);
                records.by_ref().take_while(Result::is_ok).for_each(drop);
                let len = window.len() - records.rest().len();
                (len > 0 && !(raw_offset == 0 && len < header_len))
                    .then(|| (len, Cow::Borrowed(&window[..len])))
            };
            let entry = found.and_then(|(len, content)| {
                describe_frame(&self.format, &content, at, len as u64, raw_offset)
            });
            let next_magic = || window[1..].windows(4).position(|w| w == ZSTD_MAGIC).map(|p| p as u64 + 1);
            if entry.is_none()
                && self.compressed
                && !reaches_end
                && window_len < SCAN_WINDOW_MAX
                && next_magic().is_none()
            {
                // Perhaps a frame longer than the window: look further before calling it damage.
                window_len *= 2;
                continue;
            }
            window_len = SCAN_WINDOW;
            match entry {
                Some(entry) => {
                    raw_offset += u64::from(entry.raw_len);
                    at += entry.len;
                    self.frames.push(entry);
                    self.recovered_frames += 1;
                }
                None if self.compressed => {
                    // Damaged or cut short: resume at the next frame that decodes, if any.
                    let skip = match next_magic() {
                        Some(skip) => skip,
                        None if reaches_end => {
                            self.damaged_tail = window.len() as u64;
                            window.len() as u64
                        }
                        // No frame start in the window: skip it, keeping its last bytes in
                        // case a magic number straddles the edge.
                        None => window.len() as u64 - 3,
                    };
                    self.damaged_bytes += skip;
                    at += skip;
                }
                None => {
                    self.damaged_tail = len - at;
                    self.damaged_bytes += len - at;
                    break;
                }
            }
        }
        Ok(())
    }

    /// The decoded content (pcap bytes) of frame `i`.
    pub fn content(&self, i: usize) -> Result<Vec<u8>, StorageError> {
        let frame = self.frames[i];
        let read_error = |source| StorageError::Read { path: self.path.clone(), source };
        let stored = self.source.read_at(frame.offset, frame.len).map_err(read_error)?;
        if !self.compressed {
            return Ok(stored);
        }
        let content = decode_bounded(&stored, u64::from(frame.raw_len)).map_err(read_error)?;
        if content.len() != frame.raw_len as usize {
            return Err(read_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the frame decodes to {} bytes, its index says {}", content.len(), frame.raw_len),
            )));
        }
        Ok(content)
    }

    /// The records part of a frame's content (frame 0 starts with the file header).
    pub fn records_of<'a>(&self, i: usize, content: &'a [u8]) -> &'a [u8] {
        if self.frames[i].raw_offset == 0 {
            content.get(self.format.header_len..).unwrap_or_default()
        } else {
            content
        }
    }

    /// Length of the file up to the end of its last complete frame.
    pub fn complete_len(&self) -> u64 {
        self.frames.last().map_or(0, |f| f.offset + f.len)
    }

    /// Time of the earliest and latest packet in the file, if it holds any.
    pub fn time_range(&self) -> Option<(u64, u64)> {
        let with_packets = || self.frames.iter().filter(|f| f.packets > 0);
        Some((with_packets().map(|f| f.earliest_ns).min()?, with_packets().map(|f| f.latest_ns).max()?))
    }
}

/// The first complete zstd frame of `bytes`: its stored length and content.
fn next_zstd_frame(bytes: &[u8]) -> Option<(usize, Vec<u8>)> {
    let len = zstd::zstd_safe::find_frame_compressed_size(bytes).ok()?;
    if len == 0 || len > bytes.len() {
        return None;
    }
    Some((len, decode_bounded(&bytes[..len], MAX_FRAME_BYTES).ok()?))
}

/// The record format and (pcapng) interface names from the header at the start of the
/// file's first frame.
fn file_format(bytes: &[u8], compressed: bool) -> Option<(RecordFormat, Vec<String>)> {
    let content = if compressed { Cow::Owned(next_zstd_frame(bytes)?.1) } else { Cow::Borrowed(bytes) };
    let format = RecordFormat::from_file_header(&content)?;
    Some((format, format.interface_names(&content)))
}

/// How many leading index entries are consistent with each other and with the file.
/// Every sum is checked and every length bounded by what a frame can be: the values come
/// from a file anyone who can write the ring may have crafted.
fn valid_prefix(entries: &[FrameEntry], file_len: u64) -> usize {
    let (mut offset, mut raw_offset) = (0u64, 0u64);
    entries
        .iter()
        .take_while(|e| {
            let end = e.offset.checked_add(e.len);
            let raw_end = e.raw_offset.checked_add(u64::from(e.raw_len));
            let ok = e.offset == offset
                && e.raw_offset == raw_offset
                && e.len <= MAX_FRAME_BYTES
                && u64::from(e.raw_len) <= MAX_FRAME_BYTES
                && end.is_some_and(|end| end <= file_len);
            if let (true, Some(end), Some(raw_end)) = (ok, end, raw_end) {
                (offset, raw_offset) = (end, raw_end);
                true
            } else {
                false
            }
        })
        .count()
}

/// The most a frame can hold, stored or decoded: frames are cut at `--frame-bytes` (at most
/// 64 MiB) plus one batch's last packets; a scan looks no further either.
pub const MAX_FRAME_BYTES: u64 = SCAN_WINDOW_MAX;

/// Decodes one zstd frame into at most `limit` bytes: a frame that claims or makes more
/// (a decompression bomb, a damaged frame) is an error, never an allocation of its size.
fn decode_bounded(stored: &[u8], limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut decoder = zstd::stream::read::Decoder::with_buffer(stored)?.single_frame();
    let mut content = Vec::new();
    (&mut decoder).take(limit + 1).read_to_end(&mut content)?;
    if content.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the frame decodes to more than the {limit} bytes it may hold"),
        ));
    }
    Ok(content)
}

/// An index entry for a frame found by scanning; `None` if its content is not whole records.
fn describe_frame(
    format: &RecordFormat,
    content: &[u8],
    offset: u64,
    len: u64,
    raw_offset: u64,
) -> Option<FrameEntry> {
    let records = if raw_offset == 0 { content.get(format.header_len..)? } else { content };
    let mut entry =
        FrameEntry { offset, len, raw_offset, raw_len: content.len() as u32, ..FrameEntry::default() };
    for record in format.records(records) {
        let ns = duration_ns(record.ok()?.timestamp);
        if entry.packets == 0 {
            (entry.earliest_ns, entry.latest_ns) = (ns, ns);
        }
        entry.earliest_ns = entry.earliest_ns.min(ns);
        entry.latest_ns = entry.latest_ns.max(ns);
        entry.packets += 1;
    }
    Some(entry)
}

/// Nanoseconds since the epoch.
pub fn duration_ns(d: Duration) -> u64 {
    d.as_secs() * 1_000_000_000 + u64::from(d.subsec_nanos())
}

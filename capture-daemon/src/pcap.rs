//! The classic pcap format as libpcap writes it: nanosecond timestamps, Ethernet link type.
use std::io::Write;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket};
use pcap_file::{DataLink, Endianness, TsResolution};

/// Bytes copied per packet when `-s 0` is given, as in tcpdump.
pub const DEFAULT_SNAPLEN: u32 = 262_144;
/// Size of the pcap file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Size of a pcap record header.
pub const RECORD_HEADER_LEN: usize = 16;

/// The file header of every pcap ringcap writes.
pub fn file_header(snaplen: u32) -> PcapHeader {
    PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        endianness: Endianness::native(),
    }
}

/// Writes the file header.
pub fn write_file_header<W: Write>(out: &mut W, snaplen: u32) -> std::io::Result<()> {
    file_header(snaplen).write_to(out).map(|_| ()).map_err(std::io::Error::other)
}

/// Appends one packet record (header and bytes) in native byte order.
pub fn write_record<W: Write>(
    out: &mut W,
    timestamp: Duration,
    orig_len: u32,
    data: &[u8],
    snaplen: u32,
) -> std::io::Result<()> {
    PcapPacket::new(timestamp, orig_len, data)
        .write_to::<_, byteorder_slice::byteorder::NativeEndian>(out, TsResolution::NanoSecond, snaplen)
        .map(|_| ())
        .map_err(std::io::Error::other)
}

/// Direction of a packet, as pcapng's `epb_flags` records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketDirection {
    Inbound = 1,
    Outbound = 2,
}

/// A pcapng section: Section Header Block and one Interface Description Block per
/// interface (Ethernet, `if_name`, nanosecond `if_tsresol`), as libpcap writes them.
pub fn write_pcapng_header<W: Write>(out: &mut W, snaplen: u32, interfaces: &[&str]) -> std::io::Result<()> {
    let mut block = Vec::with_capacity(28);
    block.extend_from_slice(&0x0a0d_0d0au32.to_le_bytes());
    block.extend_from_slice(&28u32.to_le_bytes());
    block.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    block.extend_from_slice(&1u16.to_le_bytes());
    block.extend_from_slice(&0u16.to_le_bytes());
    block.extend_from_slice(&(-1i64).to_le_bytes());
    block.extend_from_slice(&28u32.to_le_bytes());
    out.write_all(&block)?;
    for name in interfaces {
        let mut options = Vec::new();
        if !name.is_empty() {
            push_option(&mut options, 2, name.as_bytes());
        }
        push_option(&mut options, 9, &[9]);
        options.extend_from_slice(&[0, 0, 0, 0]);
        let total = (20 + options.len()) as u32;
        let mut block = Vec::with_capacity(total as usize);
        block.extend_from_slice(&1u32.to_le_bytes());
        block.extend_from_slice(&total.to_le_bytes());
        block.extend_from_slice(&1u16.to_le_bytes());
        block.extend_from_slice(&0u16.to_le_bytes());
        block.extend_from_slice(&snaplen.to_le_bytes());
        block.extend_from_slice(&options);
        block.extend_from_slice(&total.to_le_bytes());
        out.write_all(&block)?;
    }
    Ok(())
}

/// A pcapng option: code, length, value padded to 32 bits.
fn push_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + (4 - value.len() % 4) % 4, 0);
}

/// An Enhanced Packet Block (nanosecond timestamp) with the direction in `epb_flags`.
pub fn write_enhanced_packet<W: Write>(
    out: &mut W,
    interface: u32,
    timestamp: Duration,
    orig_len: u32,
    data: &[u8],
    direction: Option<PacketDirection>,
) -> std::io::Result<()> {
    let padded = data.len().div_ceil(4) * 4;
    let options_len = if direction.is_some() { 12 } else { 0 };
    let total = (32 + padded + options_len) as u32;
    let ns = timestamp.as_nanos() as u64;
    let mut head = [0u8; 28];
    head[0..4].copy_from_slice(&6u32.to_le_bytes());
    head[4..8].copy_from_slice(&total.to_le_bytes());
    head[8..12].copy_from_slice(&interface.to_le_bytes());
    head[12..16].copy_from_slice(&((ns >> 32) as u32).to_le_bytes());
    head[16..20].copy_from_slice(&(ns as u32).to_le_bytes());
    head[20..24].copy_from_slice(&(data.len() as u32).to_le_bytes());
    head[24..28].copy_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
    out.write_all(&head)?;
    out.write_all(data)?;
    out.write_all(&[0u8; 3][..padded - data.len()])?;
    if let Some(direction) = direction {
        let mut options = Vec::with_capacity(12);
        push_option(&mut options, 2, &(direction as u32).to_le_bytes());
        options.extend_from_slice(&[0, 0, 0, 0]);
        out.write_all(&options)?;
    }
    out.write_all(&total.to_le_bytes())
}

/// How the records of a pcap stream are laid out, from its file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordFormat {
    pub big_endian: bool,
    pub nanoseconds: bool,
    pub snaplen: u32,
    pub linktype: u32,
}

impl RecordFormat {
    /// The format ringcap writes: native byte order, nanosecond timestamps, Ethernet.
    pub const NATIVE: RecordFormat = RecordFormat {
        big_endian: cfg!(target_endian = "big"),
        nanoseconds: true,
        snaplen: DEFAULT_SNAPLEN,
        linktype: 1,
    };

    /// Reads a pcap file header; `None` if the magic is not pcap's.
    pub fn from_file_header(header: &[u8]) -> Option<Self> {
        let magic: [u8; 4] = header.get(0..4)?.try_into().ok()?;
        let (big_endian, nanoseconds) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            _ => return None,
        };
        let format = RecordFormat { big_endian, nanoseconds, snaplen: 0, linktype: 0 };
        let snaplen = format.u32_at(header, 16)?;
        let linktype = format.u32_at(header, 20)?;
        Some(RecordFormat { snaplen, linktype, ..format })
    }

    fn u32_at(&self, bytes: &[u8], at: usize) -> Option<u32> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian { u32::from_be_bytes(raw) } else { u32::from_le_bytes(raw) })
    }

    /// Iterates over the records in `bytes` (which must start at a record boundary).
    pub fn records<'a>(&self, bytes: &'a [u8]) -> Records<'a> {
        Records { format: *self, bytes }
    }
}

/// A record borrowed from a pcap stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Time since the epoch.
    pub timestamp: Duration,
    pub orig_len: u32,
    pub data: &'a [u8],
    /// The whole record (header and data), for copying it verbatim.
    pub raw: &'a [u8],
}

/// The records of a pcap stream; ends with `Err(offset)` at a truncated or malformed record.
pub struct Records<'a> {
    format: RecordFormat,
    bytes: &'a [u8],
}

impl<'a> Records<'a> {
    /// The bytes not consumed yet.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordRef<'a>, usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() {
            return None;
        }
        let f = self.format;
        let field = |at| f.u32_at(self.bytes, at);
        let (Some(secs), Some(frac), Some(incl), Some(orig)) = (field(0), field(4), field(8), field(12))
        else {
            return Some(Err(self.bytes.len()));
        };
        let end = RECORD_HEADER_LEN + incl as usize;
        let nanos = if f.nanoseconds { frac } else { frac.saturating_mul(1000) };
        if incl > MAX_RECORD_LEN || nanos >= 1_000_000_000 || self.bytes.len() < end {
            return Some(Err(self.bytes.len()));
        }
        let (raw, rest) = self.bytes.split_at(end);
        self.bytes = rest;
        Some(Ok(RecordRef {
            timestamp: Duration::new(u64::from(secs), nanos),
            orig_len: orig,
            data: &raw[RECORD_HEADER_LEN..],
            raw,
        }))
    }
}

/// Largest record length a reader accepts before calling the stream corrupt (libpcap's limit).
const MAX_RECORD_LEN: u32 = 262_144;

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapReader;

    #[test]
    fn written_records_read_back_with_nanoseconds() {
        let mut buf = Vec::new();
        write_file_header(&mut buf, 128).unwrap();
        assert_eq!(buf.len(), FILE_HEADER_LEN);
        let ts = Duration::new(1_700_000_000, 123_456_789);
        write_record(&mut buf, ts, 1514, &[0xab; 128], 128).unwrap();
        assert_eq!(buf.len(), FILE_HEADER_LEN + RECORD_HEADER_LEN + 128);
        let mut reader = PcapReader::new(&buf[..]).unwrap();
        assert_eq!(reader.header().ts_resolution, TsResolution::NanoSecond);
        let packet = reader.next_raw_packet().unwrap().unwrap();
        assert_eq!((packet.ts_sec, packet.ts_frac), (1_700_000_000, 123_456_789));
        assert_eq!(packet.orig_len, 1514);
        assert_eq!(packet.data.len(), 128);

        let format = RecordFormat::from_file_header(&buf).unwrap();
        assert!(format.nanoseconds);
        let records: Vec<_> = format.records(&buf[FILE_HEADER_LEN..]).collect();
        assert_eq!(records.len(), 1);
        let record = records[0].unwrap();
        assert_eq!((record.timestamp, record.orig_len, record.data.len()), (ts, 1514, 128));
        let truncated = &buf[FILE_HEADER_LEN..buf.len() - 1];
        assert!(matches!(format.records(truncated).next(), Some(Err(_))));
    }
}

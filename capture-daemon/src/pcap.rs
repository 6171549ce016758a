//! The capture file formats as libpcap writes them: classic pcap (nanosecond
//! timestamps, Ethernet) and pcapng (one Interface Description Block per interface,
//! Enhanced Packet Blocks with the direction), and reading their records back.
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
    block.extend_from_slice(&SHB_TYPE.to_le_bytes());
    block.extend_from_slice(&28u32.to_le_bytes());
    block.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    block.extend_from_slice(&1u16.to_le_bytes());
    block.extend_from_slice(&0u16.to_le_bytes());
    block.extend_from_slice(&(-1i64).to_le_bytes());
    block.extend_from_slice(&28u32.to_le_bytes());
    out.write_all(&block)?;
    for name in interfaces {
        write_interface_block(out, snaplen, name)?;
    }
    Ok(())
}

/// An Interface Description Block: Ethernet, `if_name` (when not empty), nanosecond timestamps.
pub fn write_interface_block<W: Write>(out: &mut W, snaplen: u32, name: &str) -> std::io::Result<()> {
    let mut options = Vec::new();
    if !name.is_empty() {
        push_option(&mut options, IF_NAME, name.as_bytes());
    }
    push_option(&mut options, IF_TSRESOL, &[9]);
    options.extend_from_slice(&[0, 0, 0, 0]);
    let total = (20 + options.len()) as u32;
    let mut block = Vec::with_capacity(total as usize);
    block.extend_from_slice(&IDB_TYPE.to_le_bytes());
    block.extend_from_slice(&total.to_le_bytes());
    block.extend_from_slice(&1u16.to_le_bytes());
    block.extend_from_slice(&0u16.to_le_bytes());
    block.extend_from_slice(&snaplen.to_le_bytes());
    block.extend_from_slice(&options);
    block.extend_from_slice(&total.to_le_bytes());
    out.write_all(&block)
}

const SHB_TYPE: u32 = 0x0a0d_0d0a;
const IDB_TYPE: u32 = 1;
const EPB_TYPE: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;

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
    head[0..4].copy_from_slice(&EPB_TYPE.to_le_bytes());
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
        push_option(&mut options, EPB_FLAGS, &(direction as u32).to_le_bytes());
        options.extend_from_slice(&[0, 0, 0, 0]);
        out.write_all(&options)?;
    }
    out.write_all(&total.to_le_bytes())
}

/// How the records of a capture file are laid out, from its file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordFormat {
    /// pcapng blocks rather than classic pcap records.
    pub pcapng: bool,
    pub big_endian: bool,
    pub nanoseconds: bool,
    pub snaplen: u32,
    pub linktype: u32,
    /// Bytes before the first record: the pcap file header, or pcapng's section and
    /// interface blocks.
    pub header_len: usize,
}

impl RecordFormat {
    /// The classic pcap ringcap writes: native byte order, nanosecond timestamps, Ethernet.
    pub const NATIVE: RecordFormat = RecordFormat {
        pcapng: false,
        big_endian: cfg!(target_endian = "big"),
        nanoseconds: true,
        snaplen: DEFAULT_SNAPLEN,
        linktype: 1,
        header_len: FILE_HEADER_LEN,
    };

    /// The records of the pcapng ringcap writes (the header length depends on its interfaces).
    pub const NATIVE_PCAPNG: RecordFormat =
        RecordFormat { pcapng: true, big_endian: false, header_len: 0, ..RecordFormat::NATIVE };

    /// Reads a pcap file header or a pcapng section header with its interface blocks;
    /// `None` if neither starts `header` (or a pcapng interface uses a time resolution
    /// other than microseconds or nanoseconds).
    pub fn from_file_header(header: &[u8]) -> Option<Self> {
        let magic: [u8; 4] = header.get(0..4)?.try_into().ok()?;
        let (big_endian, nanoseconds) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            [0x0a, 0x0d, 0x0d, 0x0a] => return Self::from_pcapng_header(header),
            _ => return None,
        };
        let format = RecordFormat {
            pcapng: false,
            big_endian,
            nanoseconds,
            snaplen: 0,
            linktype: 0,
            header_len: FILE_HEADER_LEN,
        };
        let snaplen = format.u32_at(header, 16)?;
        let linktype = format.u32_at(header, 20)?;
        Some(RecordFormat { snaplen, linktype, ..format })
    }

    fn from_pcapng_header(header: &[u8]) -> Option<Self> {
        let big_endian = match header.get(8..12)? {
            [0x4d, 0x3c, 0x2b, 0x1a] => false,
            [0x1a, 0x2b, 0x3c, 0x4d] => true,
            _ => return None,
        };
        let mut format = RecordFormat {
            pcapng: true,
            big_endian,
            nanoseconds: false,
            snaplen: 0,
            linktype: 0,
            header_len: 0,
        };
        format.header_len = format.u32_at(header, 4)? as usize;
        let mut first = true;
        for (kind, body) in format.blocks(header) {
            if kind != IDB_TYPE {
                break;
            }
            if first {
                format.linktype = u32::from(format.u16_at(body, 0)?);
                format.snaplen = format.u32_at(body, 4)?;
                format.nanoseconds =
                    match format.option(body.get(8..)?, IF_TSRESOL).map(|v| v.first().copied()) {
                        None => false,
                        Some(Some(6)) => false,
                        Some(Some(9)) => true,
                        Some(_) => return None,
                    };
                first = false;
            }
            format.header_len += body.len() + 12;
        }
        Some(format)
    }

    /// The `if_name` of each interface block in a pcapng header (empty when unnamed).
    pub fn interface_names(&self, header: &[u8]) -> Vec<String> {
        if !self.pcapng {
            return Vec::new();
        }
        let blocks = self.blocks(header.get(..self.header_len).unwrap_or(header));
        blocks
            .filter(|(kind, _)| *kind == IDB_TYPE)
            .map(|(_, body)| {
                let name =
                    body.get(8..).and_then(|options| self.option(options, IF_NAME)).unwrap_or_default();
                String::from_utf8_lossy(name).trim_end_matches('\0').to_string()
            })
            .collect()
    }

    /// The pcapng blocks of `bytes` after the section header: (type, body without the
    /// type and length fields and the trailing length), up to the first incomplete one.
    fn blocks<'a>(&self, bytes: &'a [u8]) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
        let format = *self;
        let mut at = format.u32_at(bytes, 4).unwrap_or(u32::MAX) as usize;
        std::iter::from_fn(move || {
            let kind = format.u32_at(bytes, at)?;
            let total = format.u32_at(bytes, at + 4)? as usize;
            if total < 12 || at + total > bytes.len() {
                return None;
            }
            let body = &bytes[at + 8..at + total - 4];
            at += total;
            Some((kind, body))
        })
    }

    /// The value of the first option `code` in a pcapng options area.
    fn option<'a>(&self, mut options: &'a [u8], code: u16) -> Option<&'a [u8]> {
        while options.len() >= 4 {
            let (this, len) = (self.u16_at(options, 0)?, self.u16_at(options, 2)? as usize);
            if this == 0 {
                return None;
            }
            let value = options.get(4..4 + len)?;
            if this == code {
                return Some(value);
            }
            options = options.get(4 + len.div_ceil(4) * 4..)?;
        }
        None
    }

    fn u32_at(&self, bytes: &[u8], at: usize) -> Option<u32> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian { u32::from_be_bytes(raw) } else { u32::from_le_bytes(raw) })
    }

    fn u16_at(&self, bytes: &[u8], at: usize) -> Option<u16> {
        let raw: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian { u16::from_be_bytes(raw) } else { u16::from_le_bytes(raw) })
    }

    /// Iterates over the records in `bytes` (which must start at a record boundary).
    pub fn records<'a>(&self, bytes: &'a [u8]) -> Records<'a> {
        Records { format: *self, bytes }
    }
}

/// A record borrowed from a pcap or pcapng stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Time since the epoch.
    pub timestamp: Duration,
    pub orig_len: u32,
    pub data: &'a [u8],
    /// The whole record or block, for copying it verbatim.
    pub raw: &'a [u8],
    /// pcapng: the interface (index of its Interface Description Block); pcap: 0.
    pub interface: u32,
    /// pcapng: the direction in `epb_flags`, when recorded.
    pub direction: Option<PacketDirection>,
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
        if self.format.pcapng {
            return self.next_block();
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
            interface: 0,
            direction: None,
        }))
    }
}

impl<'a> Records<'a> {
    /// The next Enhanced Packet Block, skipping blocks of other types.
    fn next_block(&mut self) -> Option<Result<RecordRef<'a>, usize>> {
        let f = self.format;
        while !self.bytes.is_empty() {
            let corrupt = Some(Err(self.bytes.len()));
            let (Some(kind), Some(total)) = (f.u32_at(self.bytes, 0), f.u32_at(self.bytes, 4)) else {
                return corrupt;
            };
            let total = total as usize;
            if total < 12 || !total.is_multiple_of(4) || total > self.bytes.len() {
                return corrupt;
            }
            let (raw, rest) = self.bytes.split_at(total);
            self.bytes = rest;
            if kind != EPB_TYPE {
                continue;
            }
            let field = |at| f.u32_at(raw, at);
            let (Some(interface), Some(high), Some(low), Some(incl), Some(orig)) =
                (field(8), field(12), field(16), field(20), field(24))
            else {
                return corrupt;
            };
            let data_end = 28 + incl as usize;
            if incl > MAX_RECORD_LEN || data_end.div_ceil(4) * 4 > total - 4 {
                return corrupt;
            }
            let units = u64::from(high) << 32 | u64::from(low);
            let nanos = if f.nanoseconds { units } else { units.saturating_mul(1000) };
            let options = &raw[data_end.div_ceil(4) * 4..total - 4];
            let direction =
                f.option(options, EPB_FLAGS).and_then(|v| f.u32_at(v, 0)).and_then(|flags| match flags & 3 {
                    1 => Some(PacketDirection::Inbound),
                    2 => Some(PacketDirection::Outbound),
                    _ => None,
                });
            return Some(Ok(RecordRef {
                timestamp: Duration::from_nanos(nanos),
                orig_len: orig,
                data: &raw[28..data_end],
                raw,
                interface,
                direction,
            }));
        }
        None
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

    #[test]
    fn pcapng_blocks_read_back_with_interfaces_and_directions() {
        let mut buf = Vec::new();
        write_pcapng_header(&mut buf, 256, &["eth0", "eth1"]).unwrap();
        let header_len = buf.len();
        let ts = Duration::new(1_700_000_000, 123_456_789);
        write_enhanced_packet(&mut buf, 1, ts, 1514, &[0xab; 61], Some(PacketDirection::Outbound)).unwrap();
        write_enhanced_packet(&mut buf, 0, ts, 60, &[0xcd; 60], None).unwrap();

        let format = RecordFormat::from_file_header(&buf).unwrap();
        assert!(format.pcapng && format.nanoseconds);
        assert_eq!((format.header_len, format.snaplen, format.linktype), (header_len, 256, 1));
        assert_eq!(format.interface_names(&buf), ["eth0", "eth1"]);
        let records: Vec<_> = format.records(&buf[header_len..]).map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].interface, records[0].direction), (1, Some(PacketDirection::Outbound)));
        assert_eq!((records[0].timestamp, records[0].orig_len, records[0].data), (ts, 1514, &[0xab; 61][..]));
        assert_eq!((records[1].interface, records[1].direction, records[1].data.len()), (0, None, 60));
        let truncated = &buf[header_len..buf.len() - 4];
        assert!(matches!(format.records(truncated).nth(1), Some(Err(_))));
        // A section without pcapng's byte-order magic is refused.
        assert!(RecordFormat::from_file_header(&[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0, 0, 0, 0]).is_none());
    }
}

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
    }
}

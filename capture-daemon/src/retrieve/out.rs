//! Retrieval output: classic pcap (nanosecond timestamps) or pcapng, as libpcap writes them.
use std::io::{self, Write};
use std::time::Duration;

use crate::pcap;

/// The file format of a pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Pcap,
    Pcapng,
}

/// Where pulled packets go.
pub trait PacketOut {
    fn packet(&mut self, timestamp: Duration, orig_len: u32, data: &[u8]) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
}

/// A pcap or pcapng stream over any writer.
pub struct Stream<W: Write> {
    out: W,
    format: Format,
    snaplen: u32,
}

impl<W: Write> Stream<W> {
    /// Writes the file header (pcap) or section and interface blocks (pcapng).
    pub fn new(mut out: W, format: Format, snaplen: u32) -> io::Result<Self> {
        match format {
            Format::Pcap => pcap::write_file_header(&mut out, snaplen)?,
            Format::Pcapng => pcap::write_pcapng_header(&mut out, snaplen, &[""])?,
        }
        Ok(Stream { out, format, snaplen })
    }
}

impl<W: Write> PacketOut for Stream<W> {
    fn packet(&mut self, timestamp: Duration, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let data = &data[..data.len().min(self.snaplen as usize)];
        match self.format {
            Format::Pcap => pcap::write_record(
                &mut self.out,
                timestamp,
                orig_len.max(data.len() as u32),
                data,
                self.snaplen,
            ),
            Format::Pcapng => pcap::write_enhanced_packet(&mut self.out, 0, timestamp, orig_len, data, None),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

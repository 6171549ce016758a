//! Retrieval output: classic pcap (nanosecond timestamps) or pcapng, as libpcap writes them.
use std::io::{self, Write};

use crate::pcap::{self, RecordRef};

/// The file format of a pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    Pcapng,
}

/// Where pulled packets go.
pub trait PacketOut {
    /// One packet, seen on the interface named `interface` (empty when unknown).
    fn packet(&mut self, record: &RecordRef<'_>, interface: &str) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
}

/// A pcap or pcapng stream over any writer. pcapng keeps each packet's interface and
/// direction: an interface's description block is written before its first packet.
pub struct Stream<W: Write> {
    out: W,
    format: Format,
    snaplen: u32,
    /// pcapng: the interfaces described so far, by interface id.
    interfaces: Vec<String>,
}

impl<W: Write> Stream<W> {
    /// Writes the file header (pcap) or section header (pcapng).
    pub fn new(mut out: W, format: Format, snaplen: u32) -> io::Result<Self> {
        match format {
            Format::Pcap => pcap::write_file_header(&mut out, snaplen)?,
            Format::Pcapng => pcap::write_pcapng_header(&mut out, snaplen, &[])?,
        }
        Ok(Stream { out, format, snaplen, interfaces: Vec::new() })
    }

    /// The pcapng interface id of `name`, describing the interface first if it is new.
    fn interface_id(&mut self, name: &str) -> io::Result<u32> {
        if let Some(id) = self.interfaces.iter().position(|known| known == name) {
            return Ok(id as u32);
        }
        pcap::write_interface_block(&mut self.out, self.snaplen, name)?;
        self.interfaces.push(name.to_string());
        Ok(self.interfaces.len() as u32 - 1)
    }
}

impl<W: Write> PacketOut for Stream<W> {
    fn packet(&mut self, record: &RecordRef<'_>, interface: &str) -> io::Result<()> {
        let data = &record.data[..record.data.len().min(self.snaplen as usize)];
        match self.format {
            Format::Pcap => pcap::write_record(
                &mut self.out,
                record.timestamp,
                record.orig_len.max(data.len() as u32),
                data,
                self.snaplen,
            ),
            Format::Pcapng => {
                let id = self.interface_id(interface)?;
                pcap::write_enhanced_packet(
                    &mut self.out,
                    id,
                    record.timestamp,
                    record.orig_len,
                    data,
                    record.direction,
                )
            }
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

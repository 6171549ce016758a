//! Retrieval output: classic pcap (nanosecond timestamps) or pcapng, as libpcap writes them.
use std::io::{self, Write};
use std::path::Path;

use crate::pcap::{self, RecordRef};
use crate::storage::manifest::ring_files;

/// The file format of a pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    Pcapng,
}

impl Format {
    /// What a pull of the ring in `dir` writes unless told: pcapng when the ring holds
    /// pcapng (`--direction both`, several interfaces), so every packet keeps its
    /// direction and interface; classic pcap, as tcpdump writes it, otherwise.
    pub fn of_ring(dir: &Path) -> Format {
        let files = ring_files(dir).unwrap_or_default();
        let pcapng = |path: &std::path::PathBuf| {
            let name = path.to_string_lossy();
            name.ends_with(".pcapng") || name.ends_with(".pcapng.zst")
        };
        if files.iter().any(pcapng) {
            Format::Pcapng
        } else {
            Format::Pcap
        }
    }
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
    /// pcap: packets written without the direction their source recorded.
    directions_dropped: u64,
}

impl<W: Write> Stream<W> {
    /// Writes the file header (pcap) or section header (pcapng).
    pub fn new(mut out: W, format: Format, snaplen: u32) -> io::Result<Self> {
        match format {
            Format::Pcap => pcap::write_file_header(&mut out, snaplen)?,
            Format::Pcapng => pcap::write_pcapng_header(&mut out, snaplen, &[])?,
        }
        Ok(Stream { out, format, snaplen, interfaces: Vec::new(), directions_dropped: 0 })
    }

    /// Packets written as classic pcap, which has no field for the direction (and
    /// interface) their source recorded.
    pub fn directions_dropped(&self) -> u64 {
        self.directions_dropped
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
            Format::Pcap => {
                self.directions_dropped += u64::from(record.direction.is_some());
                pcap::write_record(
                    &mut self.out,
                    record.timestamp,
                    record.orig_len.max(data.len() as u32),
                    data,
                    self.snaplen,
                )
            }
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
